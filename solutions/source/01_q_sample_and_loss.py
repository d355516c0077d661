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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/01_q_sample_and_loss.ipynb)
#
# Goes with lesson 1. You write the functions that *are* DDPM, training and sampling:
#
# 1. `q_sample(x0, t, noise, alpha_bars)`: jump from clean images to noise level t in one step,
#    x_t = √ᾱ_t · x0 + √(1 − ᾱ_t) · ε.
# 2. `l_simple(model, x0, t, noise, alpha_bars)`: the loss of one batch, the mean squared error
#    between the noise ε and the network's guess ε_θ(x_t, t).
# 3. `reverse_step(...)`: one step of the reverse process, with both of DDPM's variances.
# 4. `train_step(...)` and `ema_update(...)`: one optimiser step, and the moving average of the
#    weights that we sample with. The last cells train a small model with *your* step.
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
ctx = setup_lesson("exercise 1")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion.course import checks
from academy_diffusion.data import load_mnist
from academy_diffusion.models import UNet
from academy_diffusion.plotting import plot_losses, show_grid
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
# ## The reverse step
#
# Given x_t and the predicted noise ε, the reverse step samples x_{t−1} from a Gaussian with mean
#
# $$\mu = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon\Big)$$
#
# and one of two variances: β_t (`variance="beta"`, DDPM's choice) or the true posterior's
# β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t (`variance="beta_tilde"`), with ᾱ_{−1} = 1. So
# x_{t−1} = μ + √variance · z with z = `noise`, except at the last step, t = 0, which returns μ.
#
# Shapes: `x_t`, `eps`, `noise`: `[B, 1, 28, 28]`; `t`: a Python int (the same step for the whole
# batch); `betas`, `alpha_bars`: `[T]`. α_t = 1 − β_t.

# %% tags=["solution"]
def reverse_step(x_t, eps, t, betas, alpha_bars, noise, variance="beta"):
    """x_{t-1} from x_t: the posterior mean plus sqrt(variance) * noise (no noise at t = 0)."""
    ### BEGIN SOLUTION
    beta, abar = betas[t], alpha_bars[t]
    abar_prev = alpha_bars[t - 1] if t > 0 else torch.ones_like(abar)
    mean = (x_t - beta / (1 - abar).sqrt() * eps) / (1 - beta).sqrt()
    if t == 0:
        return mean
    var = beta if variance == "beta" else (1 - abar_prev) / (1 - abar) * beta
    return mean + var.sqrt() * noise
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_ddpm_step(reverse_step)

# %% [markdown]
# ## The training step and the EMA
#
# One optimiser step of L_simple on a batch `x0` `[B, 1, 28, 28]`:
#
# 1. draw one timestep per image, t ~ U{0, …, T−1}, with `torch.randint(0, T, (B,), generator=generator)`;
# 2. then the noise, `torch.randn(x0.shape, generator=generator)` (this order, so that the check can
#    reproduce your draws);
# 3. the loss, your `l_simple`;
# 4. `optimizer.zero_grad()`, `loss.backward()`, `optimizer.step()`;
# 5. return the loss as a Python float (`loss.item()`).
#
# The weights we sample with are an exponential moving average of the trained ones: after each
# step, every EMA parameter becomes decay · p_ema + (1 − decay) · p_model, *in place* (the EMA
# model is used later, so its parameters must change, not a local name).

# %% tags=["solution"]
def train_step(model, optimizer, x0, alpha_bars, generator):
    """One optimiser step of L_simple; returns the batch loss as a float."""
    ### BEGIN SOLUTION
    t = torch.randint(0, len(alpha_bars), (len(x0),), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    loss = l_simple(model, x0, t, noise, alpha_bars)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION


@torch.no_grad()
def ema_update(ema, model, decay):
    """Every EMA parameter <- decay * ema + (1 - decay) * model, in place."""
    ### BEGIN SOLUTION
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.mul_(decay).add_(p, alpha=1 - decay)
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_train_step(train_step)
checks.check_ema_update(ema_update)

# %% [markdown]
# ## Your functions, in a real training run
#
# A small U-Net, 2,000 real digits, 150 steps of AdamW with *your* `train_step` (so *your*
# `l_simple` and `q_sample`) and *your* EMA. The loss starts near 1 (the untrained network
# predicts ≈ 0 noise) and should fall well below half of that. Then 16 samples with *your*
# `reverse_step`, from the EMA weights: after 150 steps they are blobs, not yet digits (lesson 1's
# model trains for 20 epochs), but they must no longer be the noise they started from.

# %% tags=["needs-solution"]
import copy

images, _ = load_mnist("train", device=ctx.device, subset=2000)
schedule = make_schedule("linear", 1000, device=ctx.device)
torch.manual_seed(0)
model = UNet(channels=(8, 16, 32), emb_dim=32).to(ctx.device)
ema = copy.deepcopy(model).requires_grad_(False)
opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
gen = torch.Generator(device=ctx.device).manual_seed(0)
losses = []
for step in range(150):
    x0 = images[torch.randint(0, len(images), (32,), device=ctx.device, generator=gen)]
    losses.append(train_step(model, opt, x0, schedule.alpha_bars, gen))
    ema_update(ema, model, min(0.99, (1 + step) / (10 + step)))
losses = torch.tensor(losses)
plot_losses({"your train_step": losses}, window=20)
plt.show()
print(f"first 10 steps: {losses[:10].mean():.3f}   last 30 steps: {losses[-30:].mean():.3f}")
assert losses[-30:].mean() < 0.5 * losses[:10].mean(), "the loss should fall to under half its start"

x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1)).to(ctx.device)
x_T = x.clone()
noise_gen = torch.Generator().manual_seed(2)
with torch.no_grad():
    for t in range(schedule.T - 1, -1, -1):
        eps = ema(x, torch.full((16,), t, device=ctx.device))
        z = torch.randn(x.shape, generator=noise_gen).to(ctx.device)
        x = reverse_step(x, eps, t, schedule.betas, schedule.alpha_bars, z).clamp(-3, 3)
show_grid(x.cpu(), nrow=16, title="16 samples with your reverse_step (150 training steps)")
plt.show()
print(f"RMS change from x_T: {(x - x_T).pow(2).mean().sqrt():.2f}")
