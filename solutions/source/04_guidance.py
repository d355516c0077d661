# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 4 · Classifier-free guidance
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/04_guidance.ipynb)
#
# Goes with lesson 4. Two small functions carry all of CFG:
#
# 1. `drop_condition(labels, null_class, p, generator)`: during training, replace each label by the
#    null class (10) with probability p, independently, and keep the others. `labels`: `[B]` long.
# 2. `cfg(eps_cond, eps_uncond, w)`: at sampling time, ε̂ = ε_uncond + w · (ε_cond − ε_uncond), so
#    that w = 0 is unconditional and w = 1 plain conditional.
# 3. `guided_sample(...)`: the guided DDIM loop, with both halves in one batched forward pass.

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
ctx = setup_lesson("exercise 4")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion.course import checks
from academy_diffusion.course import course_model
from academy_diffusion.plotting import show_rows
from academy_diffusion.samplers import ddim_timesteps, initial_noise

# %% tags=["solution"]
def drop_condition(labels, null_class, p, generator=None):
    """Each label replaced by null_class with probability p: [B] -> [B]."""
    ### BEGIN SOLUTION
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p
    return torch.where(drop, torch.full_like(labels, null_class), labels)
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_drop_condition(drop_condition)

# %% tags=["solution"]
def cfg(eps_cond, eps_uncond, w):
    """Classifier-free guidance: eps_uncond + w * (eps_cond - eps_uncond)."""
    ### BEGIN SOLUTION
    return eps_uncond + w * (eps_cond - eps_uncond)
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_cfg(cfg)

# %% [markdown]
# ## The guided sampling loop
#
# Deterministic DDIM (η = 0) over decreasing code indices `timesteps`, with guidance. At each step t
# (and t_prev the next index, or −1 after the last, where ᾱ_prev = 1):
#
# 1. **one** forward pass of 2B images: `x` twice, `t` twice, and the labels followed by B copies
#    of the null class `model.null_class`; split the output `[2B, 1, 28, 28]` into ε_cond (first B)
#    and ε_uncond (last B). One batched pass costs about half of two separate ones on a GPU;
# 2. ε̂ = your `cfg(ε_cond, ε_uncond, w)`;
# 3. x̂0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t and x_{t_prev} = √ᾱ_prev x̂0 + √(1 − ᾱ_prev) ε̂.
#
# Shapes: `x_T` `[B, 1, 28, 28]`, `labels` `[B]` long, `alpha_bars` `[T]`; return x_0 `[B, 1, 28, 28]`.

# %% tags=["solution"]
def guided_sample(model, x_T, labels, w, alpha_bars, timesteps):
    """Guided DDIM (eta = 0): one forward pass of 2B images per step; returns x_0."""
    ### BEGIN SOLUTION
    x = x_T
    null = torch.full_like(labels, model.null_class)
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        tt = torch.full((2 * len(x),), t, device=x.device)
        eps_cond, eps_uncond = model(torch.cat([x, x]), tt, torch.cat([labels, null])).chunk(2)
        eps = cfg(eps_cond, eps_uncond, w)
        abar = alpha_bars[t]
        abar_prev = alpha_bars[t_prev] if t_prev >= 0 else torch.ones_like(abar)
        x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
        x = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
    return x
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_guided_sample(guided_sample)

# %% [markdown]
# ## Your guidance on lesson 4's model
#
# *Your* loop and *your* `cfg` on the course's guided model, 20 steps. Each row is one w; each
# column keeps its noise and its digit.

# %% tags=["needs-solution"]
ckpt = course_model("cfg", ctx.profile, ctx.device)
model, ab = ckpt.model, ckpt.schedule.alpha_bars
digits = torch.arange(10, device=ctx.device)
rows = {}
with torch.no_grad():
    for w in (0.0, 1.0, 3.0):
        x_T = initial_noise(10, seed=0).to(ctx.device)
        rows[f"w={w:g}"] = guided_sample(model, x_T, digits, w, ab, ddim_timesteps(1000, 20)).clamp(-1, 1).cpu()
show_rows(rows)
plt.show()
