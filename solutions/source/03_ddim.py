# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 3 · DDIM
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/03_ddim.ipynb)
#
# Goes with lesson 3. Write one DDIM step, then a DDIM sampling loop.
#
# **`ddim_jump(x_t, eps, abar_t, abar_prev, eta, noise)`** goes from level t to an earlier t_prev:
#
# * x̂0 = (x_t − √(1 − ᾱ_t) · ε) / √ᾱ_t
# * σ = η · √((1 − ᾱ_prev)/(1 − ᾱ_t)) · √(1 − ᾱ_t/ᾱ_prev)
# * x_prev = √ᾱ_prev · x̂0 + √(1 − ᾱ_prev − σ²) · ε + σ · noise
#
# `x_t`, `eps`, `noise`: `[B, 1, 28, 28]`; `abar_t`, `abar_prev`: 0-d tensors (ᾱ_prev = 1 for the
# final step to the clean image); `eta`: a float (0 = deterministic).
#
# **`ddim_sample(model, x_T, alpha_bars, timesteps)`** runs deterministic DDIM (η = 0) from `x_T`
# over `timesteps` (a decreasing list of code indices, e.g. 999, 946, …, 0): at each t, ask
# `model(x, t_batch)` for ε and step to the next timestep in the list (to ᾱ = 1 after the last).

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
ctx = setup_lesson("exercise 3")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion.course import checks
from academy_diffusion.course import course_model
from academy_diffusion.plotting import show_rows
from academy_diffusion.samplers import ddim_timesteps, initial_noise, sample

# %% tags=["solution"]
def ddim_jump(x_t, eps, abar_t, abar_prev, eta, noise):
    """One DDIM step from level t to t_prev; returns x_prev, shaped like x_t."""
    ### BEGIN SOLUTION
    x0 = (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
    return abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps + sigma * noise
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_ddim_step(ddim_jump)

# %% tags=["solution"]
@torch.no_grad()
def ddim_sample(model, x_T, alpha_bars, timesteps):
    """Deterministic DDIM (eta = 0) from x_T over the decreasing code indices in timesteps."""
    ### BEGIN SOLUTION
    x = x_T
    for i, t in enumerate(timesteps):
        abar_prev = alpha_bars[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.ones_like(alpha_bars[t])
        eps = model(x, torch.full((len(x),), t, device=x.device))
        x = ddim_jump(x, eps, alpha_bars[t], abar_prev, 0.0, torch.zeros_like(x))
    return x
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_ddim_sample(ddim_sample)

# %% [markdown]
# ## Your sampler on lesson 1's model
#
# Twenty steps of your DDIM against the package's DDIM-1000 from the same noise (the package's
# sampler also clamps its x̂0 to [-1, 1]; yours does not, so small differences are expected).

# %% tags=["needs-solution"]
ckpt = course_model("linear", ctx.profile, ctx.device)
x_T = initial_noise(8, seed=0)
steps = ddim_timesteps(1000, 20)
yours = ddim_sample(ckpt.model, x_T.to(ctx.device), ckpt.schedule.alpha_bars, steps).cpu()
reference = sample(ckpt.model, ckpt.schedule, 8, sampler="ddim", steps=1000, x_T=x_T).images
show_rows({"your DDIM-20": yours.clamp(-1, 1), "DDIM-1000": reference})
plt.show()
rms = (yours.clamp(-1, 1) - reference).pow(2).mean().sqrt().item()
print(f"RMS distance per pixel between your DDIM-20 and DDIM-1000: {rms:.3f} (unrelated digits: ~0.6-0.7)")
assert rms < 0.35
