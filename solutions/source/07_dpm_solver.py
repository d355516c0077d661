# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 7 · A DPM-Solver++(2M) step
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/07_dpm_solver.ipynb)
#
# Goes with lesson 7. You write the step of the second-order multistep solver, then sample lesson
# 4's model with it in 10 steps, next to DDIM.
#
# With α = √ᾱ, σ = √(1 − ᾱ) and λ = log(α/σ) = ½ log(ᾱ/(1 − ᾱ)), one step from code index t to
# t_next (h = λ_next − λ_t > 0) is
#
# $$x_\text{next} = \frac{\sigma_\text{next}}{\sigma_t}\,x_t - \alpha_\text{next}\,(e^{-h} - 1)\,D,$$
#
# with D = x̂0 on the first step (`previous` is None), and afterwards, with `previous = (x̂0_prev,
# t_prev)` the estimate one step earlier and r = (λ_t − λ_prev)/h,
# D = (1 + 1/(2r))·x̂0 − 1/(2r)·x̂0_prev. The last step, to the clean image (`t_next = −1`), returns x̂0.
#
# Shapes: `x_t`, `x0_hat`, `x0_prev`: `[B, 1, 28, 28]`; `t`, `t_next`, `t_prev`: Python ints;
# `alpha_bars`: `[T]`.

# %% tags=["setup"]
# Setup: works in JupyterLab from the repository, in CI, and on Colab (installs the package, never torch).
import glob
import importlib
import os
import subprocess
import sys
PACKAGE = "git+https://github.com/academy-diffusion/academy-diffusion@v0.2.0"  # the release of this notebook
if os.path.isdir("../academy_diffusion"):
    sys.path.insert(0, os.path.abspath(".."))
try:
    import academy_diffusion
except ImportError:  # Colab: an uploaded bundle (`make colab`) first, else this notebook's release
    routes = sorted(glob.glob("academy_diffusion-*.whl"))[-1:] + [os.environ.get("ACADEMY_PACKAGE", PACKAGE)]
    if not any(subprocess.run([sys.executable, "-m", "pip", "install", "-q", r]).returncode == 0 for r in routes):
        raise RuntimeError(
            "Could not install the course's package. Either upload the bundle academy_diffusion-*.whl (built by "
            "`make colab` in the course's repository) into this notebook's folder (on Colab: the Files pane), "
            f"or publish the repository so that pip can install {PACKAGE}; then run this cell again.") from None
    importlib.invalidate_caches()
from academy_diffusion.course import setup_lesson
ctx = setup_lesson("exercise 7")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion.course import checks
from academy_diffusion.course import course_model
from academy_diffusion.samplers import GUIDANCE_W
from academy_diffusion.plotting import show_rows
from academy_diffusion.samplers import dpm_timesteps, initial_noise, predict_noise, predict_x0, sample

# %% tags=["solution"]
def dpm_solver_step(x_t, x0_hat, previous, t, t_next, alpha_bars):
    """One DPM-Solver++(2M) step from code index t to t_next (-1: the clean image)."""
    ### BEGIN SOLUTION
    if t_next < 0:
        return x0_hat
    ab = alpha_bars.double()
    lam = 0.5 * torch.log(ab / (1 - ab))
    h = lam[t_next] - lam[t]
    d = x0_hat
    if previous is not None:
        x0_prev, t_prev = previous
        r = (lam[t] - lam[t_prev]) / h
        d = (1 + 1 / (2 * r)) * x0_hat - 1 / (2 * r) * x0_prev
    return ((1 - ab[t_next]).sqrt() / (1 - ab[t]).sqrt() * x_t - ab[t_next].sqrt() * torch.expm1(-h) * d).float()
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_dpm_solver_step(dpm_solver_step)

# %% [markdown]
# ## Your solver on lesson 4's model
#
# Ten network evaluations with *your* step, against the package's DDIM with ten and with fifty.
# Same x_T, same digits, guidance at the course's w.

# %% tags=["needs-solution"]
ckpt = course_model("cfg", ctx.profile, ctx.device)
model, schedule = ckpt.model, ckpt.schedule
digits = torch.arange(10)
x_T = initial_noise(10, seed=0)
steps = dpm_timesteps(1000, 10)
x, previous = x_T.to(ctx.device), None
with torch.no_grad():
    for i, t in enumerate(steps):
        t_next = steps[i + 1] if i + 1 < len(steps) else -1
        eps = predict_noise(model, x, torch.full((10,), t, device=ctx.device), digits.to(ctx.device), GUIDANCE_W)
        x0_hat = predict_x0(schedule, x, t, eps, clip=True)
        x, previous = dpm_solver_step(x, x0_hat, previous, t, t_next, schedule.alpha_bars), (x0_hat, t)
rows = {"your DPM-Solver++, 10": x.cpu()}
for k in (10, 50):
    rows[f"DDIM, {k}"] = sample(model, schedule, 10, sampler="ddim", steps=k, labels=digits, w=GUIDANCE_W, x_T=x_T,
                                progress=False).images
show_rows(rows, title=f"The same x_T per column, w = {GUIDANCE_W:g}")
plt.show()
