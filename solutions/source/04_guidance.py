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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/main/exercises/04_guidance.ipynb)
#
# Goes with lesson 4. Two small functions carry all of CFG:
#
# 1. `drop_condition(labels, null_class, p, generator)`: during training, replace each label by the
#    null class (10) with probability p, independently, and keep the others. `labels`: `[B]` long.
# 2. `cfg(eps_cond, eps_uncond, w)`: at sampling time, ε̂ = ε_uncond + w · (ε_cond − ε_uncond), so
#    that w = 0 is unconditional and w = 1 plain conditional.

# %% tags=["setup"]
# Setup: works in JupyterLab from the repository, in CI, and on Colab (installs the package, never torch).
import importlib
import os
import subprocess
import sys
PACKAGE = os.environ.get("ACADEMY_PACKAGE", "git+https://github.com/academy-diffusion/academy-diffusion@main")
if os.path.isdir("../academy_diffusion"):
    sys.path.insert(0, os.path.abspath(".."))
try:
    import academy_diffusion
except ImportError:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True)
    importlib.invalidate_caches()
from academy_diffusion.course import setup_lesson
ctx = setup_lesson("exercise 4")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion import checks
from academy_diffusion.course import course_model
from academy_diffusion.plotting import show_rows
from academy_diffusion.samplers import ddim_step, ddim_timesteps, initial_noise

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
# ## Your guidance on lesson 4's model
#
# A 20-step DDIM loop that calls the model twice per step (with the digit and with the null
# label) and combines the two with *your* `cfg`. Each row is one w; each column keeps its noise.

# %% tags=["needs-solution"]
ckpt = course_model("cfg", ctx.profile, ctx.device)
model, ab = ckpt.model, ckpt.schedule.alpha_bars
digits = torch.arange(10, device=ctx.device)
null = torch.full_like(digits, model.null_class)
steps = ddim_timesteps(1000, 20)
rows = {}
with torch.no_grad():
    for w in (0.0, 1.0, 3.0):
        x = initial_noise(10, seed=0).to(ctx.device)
        for i, t in enumerate(steps):
            tt = torch.full((10,), t, device=ctx.device)
            eps = cfg(model(x, tt, digits), model(x, tt, null), w)
            x = ddim_step(ckpt.schedule, x, t, steps[i + 1] if i + 1 < len(steps) else -1, eps, clip_x0=True)
        rows[f"w={w:g}"] = x.cpu()
show_rows(rows)
plt.show()
