# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 9 · Flow matching: the loss and the Euler sampler
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/09_flow_matching.ipynb)
#
# Goes with lesson 9. You write the two pieces that make a flow-matching model: its training loss and
# its sampler, then sample the course's shipped flow-matching model with *your* sampler.
#
# **The path** (t ∈ [0, 1]; t = 0 is the digit, t = 1 the noise): x_t = (1 − t) x_0 + t ε.
#
# 1. **`flow_matching_loss(model, x0, t, noise)`**: build x_t, ask the network for the velocity with
#    `model(x_t, t * 1000)` (the U-Net sees t on the 0..1000 scale it was trained with), and return the
#    mean squared difference from the true velocity dx_t/dt = ε − x_0, a scalar tensor.
#    Shapes: `x0`, `noise`: `[B, 1, H, W]`; `t`: `[B]`.
# 2. **`euler_sample(model, x_T, steps)`**: integrate dx/dt = v(x, t) from t = 1 down to t = 0 on the grid
#    1, 1 − 1/steps, …, 0 with Euler's method, x ← x + (t_next − t)·v, where v = `model(x, t * 1000)` with
#    one time per image (a `[B]` tensor). Return the final x, shaped like `x_T`.

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
ctx = setup_lesson("exercise 9")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion.course import checks, course_model
from academy_diffusion.flow_matching import sample_flow
from academy_diffusion.plotting import show_rows
from academy_diffusion.samplers import initial_noise

# %% tags=["solution"]
def flow_matching_loss(model, x0, t, noise):
    """The flow-matching loss of one batch: mean((model(x_t, t * 1000) - (noise - x0))**2)."""
    ### BEGIN SOLUTION
    tt = t.view(-1, 1, 1, 1)
    x_t = (1 - tt) * x0 + tt * noise
    return ((model(x_t, t * 1000) - (noise - x0)) ** 2).mean()
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_flow_matching_loss(flow_matching_loss)

# %% tags=["solution"]
def euler_sample(model, x_T, steps):
    """Euler's method on dx/dt = model(x, t * 1000) from t = 1 (x_T) to t = 0; returns x at t = 0."""
    ### BEGIN SOLUTION
    x = x_T
    for i in range(steps):
        t, t_next = 1 - i / steps, 1 - (i + 1) / steps
        v = model(x, torch.full((len(x),), t * 1000, device=x.device))
        x = x + (t_next - t) * v
    return x
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_euler_sample(euler_sample)

# %% [markdown]
# ## Your sampler on the course's flow-matching model
#
# The same x_T per column: your Euler sampler at 4 and 16 steps, next to the package's with 16.

# %% tags=["needs-solution"]
flow = course_model("flow", ctx.profile, ctx.device)
x_T = initial_noise(10, seed=0)
with torch.no_grad():
    rows = {f"your Euler, {k}": euler_sample(flow.model, x_T.to(ctx.device), k).float().cpu() for k in (4, 16)}
rows["package, 16"] = sample_flow(flow.model, 10, steps=16, x_T=x_T, progress=False).images
show_rows(rows, title="The same x_T per column: your sampler against the package's")
plt.show()
print(f"largest difference at 16 steps: {(rows['your Euler, 16'] - rows['package, 16']).abs().max():.2e} "
      "(bf16 autocast in the package explains differences around 1e-2 on CPUs and GPUs that have it)")
