# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 1 · The forward jump and the L_simple step
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/main/exercises/01_q_sample_and_loss.ipynb)
#
# Goes with lesson 1. You write the two functions that *are* DDPM training:
#
# 1. `q_sample(x0, t, noise, alpha_bars)`: jump from clean images to noise level t in one step,
#    x_t = √ᾱ_t · x0 + √(1 − ᾱ_t) · ε.
# 2. `l_simple(model, x0, t, noise, alpha_bars)`: the loss of one batch, the mean squared error
#    between the noise ε and the network's guess ε_θ(x_t, t).
#
# **Shapes and conventions.** `x0` and `noise`: `[B, 1, 28, 28]`, images in [-1, 1]; `t`: `[B]`
# integer timesteps in 0 … T−1 (code index t is the page's step t + 1); `alpha_bars`: `[T]`, where
# `alpha_bars[t]` = Π_{s ≤ t} (1 − β_s). `model(x_t, t)` returns a tensor shaped like `x_t`.
#
# How to work: fill in each cell marked `# YOUR CODE HERE`, run it, then run the check cell below
# it. A check either prints ✓ or tells you what is wrong. When both pass, the last cells train a
# small model with *your* functions.

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
ctx = setup_lesson("exercise 1")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion import checks
from academy_diffusion.data import load_mnist
from academy_diffusion.models import UNet
from academy_diffusion.plotting import plot_losses
from academy_diffusion.schedules import make_schedule

# %% tags=["solution"]
def q_sample(x0, t, noise, alpha_bars):
    """x_t = sqrt(alpha_bars[t]) * x0 + sqrt(1 - alpha_bars[t]) * noise, one t per image."""
    ### BEGIN SOLUTION
    a = alpha_bars[t].view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1] to broadcast over the pixels
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_q_sample(q_sample)

# %% tags=["solution"]
def l_simple(model, x0, t, noise, alpha_bars):
    """The L_simple loss of one batch: mean of (noise - model(x_t, t))**2, as a 0-d tensor."""
    ### BEGIN SOLUTION
    x_t = q_sample(x0, t, noise, alpha_bars)
    return ((noise - model(x_t, t)) ** 2).mean()
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_l_simple(l_simple)

# %% [markdown]
# ## Your functions, in a real training run
#
# A small U-Net, 2,000 real digits, 150 steps of AdamW with *your* `l_simple` (so *your*
# `q_sample`). The loss starts near 1 (the untrained network predicts ≈ 0 noise) and should fall
# well below half of that.

# %% tags=["needs-solution"]
images, _ = load_mnist("train", device=ctx.device, subset=2000)
schedule = make_schedule("linear", 1000, device=ctx.device)
torch.manual_seed(0)
model = UNet(channels=(8, 16, 32), emb_dim=32).to(ctx.device)
opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
gen = torch.Generator(device=ctx.device).manual_seed(0)
losses = []
for _ in range(150):
    x0 = images[torch.randint(0, len(images), (32,), device=ctx.device, generator=gen)]
    t = torch.randint(0, schedule.T, (32,), device=ctx.device, generator=gen)
    loss = l_simple(model, x0, t, torch.randn(x0.shape, device=ctx.device, generator=gen), schedule.alpha_bars)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.detach())
losses = torch.stack(losses).cpu()
plot_losses({"your l_simple": losses}, window=20)
plt.show()
print(f"first 10 steps: {losses[:10].mean():.3f}   last 30 steps: {losses[-30:].mean():.3f}")
assert losses[-30:].mean() < 0.5 * losses[:10].mean(), "the loss should fall to under half its start"
