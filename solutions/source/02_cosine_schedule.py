# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 2 · The cosine schedule
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/02_cosine_schedule.ipynb)
#
# Goes with lesson 2. Write `cosine_betas(T, s=0.008, max_beta=0.999)`, Nichol & Dhariwal's
# schedule, returning a float64 tensor of shape `[T]`:
#
# * ᾱ(u) = cos²((u + s)/(1 + s) · π/2) for u ∈ [0, 1] (so ᾱ(0) = 1 up to the offset);
# * β_t = 1 − ᾱ((t+1)/T) / ᾱ(t/T) for code index t = 0 … T−1;
# * each β capped at `max_beta`, so that the last step stays finite.
#
# Then `alpha_bars = cumprod(1 − betas)` gives back ᾱ((t+1)/T)/ᾱ(0): the check looks at ᾱ at t = 0
# first, where an off-by-one shows most clearly.

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
ctx = setup_lesson("exercise 2")

# %%
import math

import matplotlib.pyplot as plt
import torch

from academy_diffusion.course import checks
from academy_diffusion.schedules import Schedule, make_schedule

# %% tags=["solution"]
def cosine_betas(T, s=0.008, max_beta=0.999):
    """Cosine-schedule betas, float64 tensor of shape [T]."""
    ### BEGIN SOLUTION
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_cosine_betas(cosine_betas)

# %% [markdown]
# ## Your schedule against the linear one
#
# `Schedule` turns any betas into everything the package needs (ᾱ, log-SNR, …). How many of the
# 1,000 steps keep less than 1 % of the signal (ᾱ < 0.01), i.e. are spent on near-pure noise?

# %% tags=["needs-solution"]
mine = Schedule("cosine (yours)", cosine_betas(1000))
linear = make_schedule("linear", 1000)
fig, ax = plt.subplots(figsize=(6, 3.5))
for sched in (linear, mine):
    ax.plot(range(1, 1001), sched.alpha_bars, label=sched.name)
    print(f"{sched.name:>15}: {(sched.alpha_bars < 0.01).float().mean():.1%} of the steps keep < 1 % of the signal")
ax.set(xlabel="level k", ylabel="ᾱ")
ax.legend()
plt.show()
assert (mine.alpha_bars < 0.01).float().mean() < (linear.alpha_bars < 0.01).float().mean()
