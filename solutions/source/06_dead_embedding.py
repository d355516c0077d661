# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 6 · Timestep-embedding health, and the dead-embedding experiment
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/06_dead_embedding.ipynb)
#
# Goes with lesson 6. Write `timestep_sensitivity(model, x, timesteps)`: run the model on the same
# inputs `x` (`[B, 1, 28, 28]`) at every t in `timesteps` and return the share of the output's
# energy that varies with t, as a float:
#
# mean over t of ‖ε(x, t) − mean_t′ ε(x, t′)‖² divided by mean over t of ‖ε(x, t)‖²
#
# (means over every element). A healthy model reads clearly above 0, a dead embedding 0.
# Then run the experiment: train a healthy and a dead model side by side and compare.

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
ctx = setup_lesson("exercise 6")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion.course import checks
from academy_diffusion.data import load_mnist
from academy_diffusion.models import UNet
from academy_diffusion.plotting import plot_losses
from academy_diffusion.schedules import make_schedule
from academy_diffusion.training import train

# %% tags=["solution"]
@torch.no_grad()
def timestep_sensitivity(model, x, timesteps=(0, 250, 500, 750, 999)):
    """Share of the model's output energy that changes with t, for fixed inputs x."""
    ### BEGIN SOLUTION
    outs = torch.stack([model(x, torch.full((len(x),), int(t), device=x.device)) for t in timesteps])
    centred = outs - outs.mean(dim=0, keepdim=True)
    return (centred.pow(2).mean() / outs.pow(2).mean()).item()
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_timestep_sensitivity(timestep_sensitivity)

# %% [markdown]
# ## The experiment
#
# Two small models, identical but for `dead_time_embedding`, trained for 300 steps on the same
# 3,000 digits with the same seed. Watch both losses fall, then ask your health check.

# %%
images, _ = load_mnist("train", device=ctx.device, subset=3000)
schedule = make_schedule("linear", 1000, device=ctx.device)
runs = {}
for name, dead in (("healthy", False), ("dead", True)):
    torch.manual_seed(0)
    model = UNet(channels=(8, 16, 32), emb_dim=32, dead_time_embedding=dead)
    runs[name] = train(model, images, schedule, steps=300, batch_size=32, progress=False)
plot_losses({name: r.losses for name, r in runs.items()}, window=30)
plt.show()

# %% tags=["needs-solution"]
probe = schedule.q_sample(images[:32], torch.full((32,), 500, device=ctx.device), torch.randn_like(images[:32]))
for name, r in runs.items():
    print(f"{name:>8}: loss first 20 {r.losses[:20].mean():.3f} -> last 50 {r.losses[-50:].mean():.3f};"
          f" timestep sensitivity {timestep_sensitivity(r.ema, probe):.4f}")
assert runs["dead"].losses[-50:].mean() < 0.5 * runs["dead"].losses[:20].mean(), "the dead model's loss falls too"
assert timestep_sensitivity(runs["dead"].ema, probe) < 1e-8 < timestep_sensitivity(runs["healthy"].ema, probe)
