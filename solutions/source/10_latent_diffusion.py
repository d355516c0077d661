# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 10 · Latent diffusion: the round trip and the training step
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/10_latent_diffusion.ipynb)
#
# Goes with lesson 10. You write the three pieces that put a diffusion model into an autoencoder's code,
# then use them with the course's shipped autoencoder and latent model.
#
# The autoencoder has `autoencoder.encode(x)` (`[B, 1, 28, 28]` digits in [−1, 1] → `[B, 4, 7, 7]` codes)
# and `autoencoder.decode(z)` (the reverse). `scale` is the latent scale factor, 1 / std of the codes over
# the training digits: the diffusion runs on `scale · code`, whose standard deviation is 1.
#
# 1. **`to_latent(autoencoder, x, scale)`**: digits → the scaled codes the diffusion model sees. The
#    autoencoder is frozen: no gradient may flow into it.
# 2. **`from_latent(autoencoder, z, scale)`**: scaled codes (what a latent sampler returns) → digits.
# 3. **`latent_training_loss(model, autoencoder, scale, x0, t, noise, alpha_bars)`**: L_simple of lesson 1 on
#    the scaled codes of `x0`: z_0 = scale · code, z_t = √ᾱ_t z_0 + √(1 − ᾱ_t) ε, loss = mean((model(z_t, t) − ε)²).
#    `noise` has the codes' shape `[B, 4, 7, 7]`, `t` is `[B]` code indices, `alpha_bars` is `[T]`.

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
ctx = setup_lesson("exercise 10")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion.course import checks, course_autoencoder, course_model
from academy_diffusion.data import load_mnist
from academy_diffusion.plotting import show_rows
from academy_diffusion.samplers import sample

# %% tags=["solution"]
def to_latent(autoencoder, x, scale):
    """Digits [B, 1, 28, 28] -> scaled codes [B, 4, 7, 7]: scale * autoencoder.encode(x), without gradients."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        return scale * autoencoder.encode(x)
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_to_latent(to_latent)

# %% tags=["solution"]
def from_latent(autoencoder, z, scale):
    """Scaled codes [B, 4, 7, 7] -> digits [B, 1, 28, 28]: undo the scale, then decode."""
    ### BEGIN SOLUTION
    return autoencoder.decode(z / scale)
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_from_latent(from_latent)

# %% tags=["solution"]
def latent_training_loss(model, autoencoder, scale, x0, t, noise, alpha_bars):
    """L_simple on the scaled codes of x0 (encoder frozen); noise is [B, 4, 7, 7]."""
    ### BEGIN SOLUTION
    z0 = to_latent(autoencoder, x0, scale)
    a = alpha_bars[t].view(-1, 1, 1, 1)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
    return ((model(z_t, t) - noise) ** 2).mean()
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_latent_training_loss(latent_training_loss)

# %% [markdown]
# ## Your functions on the course's autoencoder and latent model
#
# Top: real digits, and your round trip through the code. Bottom: the latent model's samples (DDIM-20 in the
# code space), decoded with your `from_latent`. Last, your loss on a batch of real digits.

# %% tags=["needs-solution"]
autoencoder, scale, _ = course_autoencoder(ctx.profile, ctx.device)
latent = course_model("latent", ctx.profile, ctx.device)
x, _ = load_mnist("test")
x = x[:10].to(ctx.device)
z = sample(latent.model, latent.schedule, 10, sampler="ddim", steps=20, clip_x0=False, progress=False).images
with torch.no_grad():
    rows = {"real": x.cpu(), "your round trip": from_latent(autoencoder, to_latent(autoencoder, x, scale), scale).cpu(),
            "latent samples": from_latent(autoencoder, z.to(ctx.device), scale).cpu()}
show_rows(rows, title=f"Your to_latent / from_latent with the course's autoencoder (scale {scale:.3f})")
plt.show()
t = torch.randint(0, 1000, (10,), device=ctx.device)
noise = torch.randn(10, 4, 7, 7, device=ctx.device)
loss = latent_training_loss(latent.model, autoencoder, scale, x, t, noise, latent.schedule.alpha_bars)
print(f"your latent loss on 10 real digits with the trained model: {loss.item():.4f} (an untrained model scores about 1)")
