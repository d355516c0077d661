# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 1 · A tiny DDPM on MNIST
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/main/notebooks/01_tiny_ddpm.ipynb)
#
# A diffusion model learns to generate images by learning to **undo noise**. We take a clean
# digit, bury it under Gaussian noise a little at a time until nothing is left, and train a
# network to predict the noise that was added. Generating is then running the process
# backwards: start from pure noise and remove a little of it, T times.
#
# In this lesson you will
# 1. see the forward (noising) process as pictures and as one line of code;
# 2. train a small U-Net with the "simple" loss: predict the noise;
# 3. read the loss curve;
# 4. sample 1,000 steps from pure noise, and watch the samples at t ∈ {T, 3T/4, T/2, T/4, 0}.

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
ctx = setup_lesson("01")

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from academy_diffusion.course import course_model
from academy_diffusion.data import load_mnist
from academy_diffusion.plotting import plot_losses, show_rows
from academy_diffusion.reporting import report, save_figure
from academy_diffusion.samplers import sample
from academy_diffusion.schedules import make_schedule
from academy_diffusion.training import diffusion_loss
from academy_diffusion.widgets import trajectory_slider

# %% [markdown]
# ## 1. The forward process: noise, added in one jump
#
# A schedule of small noise increments β_1 … β_T (here T = 1000, β rising linearly from 1e-4 to
# 0.02) defines a chain q(x_t | x_{t-1}) = N(√(1−β_t) x_{t-1}, β_t I). With α_t = 1 − β_t and
# ᾱ_t = Π_{s≤t} α_s, the whole chain collapses into a single jump:
#
# $$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\qquad \varepsilon\sim\mathcal N(0, I)$$
#
# This is load-bearing: training never simulates the chain, it draws one t and jumps there.
#
# **Convention.** In code, timesteps run `t = 0 … T-1`; code index `t` is the page's step `t + 1`
# (so `schedule.alpha_bars[t]` is ᾱ_{t+1}). Pictures are labelled by the page's level k = 0 … T,
# where k = 0 is the clean image and k = T pure noise. Images live in [-1, 1].

# %%
images, labels = load_mnist("train", device=ctx.device, subset=ctx.profile.train_images)
schedule = make_schedule("linear", T=1000, device=ctx.device)
x0 = images[:8]
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(ctx.device)
rows = {"k=0  (x_0)": x0}
for k in (50, 150, 300, 500, 750, 1000):
    t = torch.full((len(x0),), k - 1, device=ctx.device)  # level k = code index k - 1
    rows[f"k={k}  ᾱ={schedule.alpha_bars[k - 1].item():.3f}"] = schedule.q_sample(x0, t, noise)
fig = show_rows(rows, title="The forward process: the same digits and the same ε at growing noise levels")
save_figure(fig, "01_forward_process")
plt.show()

# %% [markdown]
# By k = 500 the digits are hard to see, and well before k = 1000 nothing is left
# (ᾱ_T ≈ 4e-5). Lesson 2 asks whether spending so many steps on near-pure noise is wise.
#
# ## 2. The loss: predict the noise
#
# Pick a random t, noise a clean image to x_t in one jump, and ask the network ε_θ(x_t, t) which
# noise was added. The loss is a plain mean-squared error:
#
# $$L_\text{simple} = \mathbb E_{t, x_0, \varepsilon}\,\lVert \varepsilon - \varepsilon_\theta(x_t, t)\rVert^2$$
#
# Why does predicting the noise work? Knowing ε at x_t is knowing x_0 (undo the jump), and the
# mean of the reverse step p(x_{t-1} | x_t) is pure algebra on x_t and ε. One training step,
# written out by hand, next to the package's `diffusion_loss` (which the training loop calls):

# %%
from academy_diffusion.models import UNet

torch.manual_seed(0)
net = UNet(channels=ctx.profile.channels).to(ctx.device)
x0 = images[:64]
t = torch.randint(0, schedule.T, (64,), device=ctx.device)   # one random timestep per image
eps = torch.randn_like(x0)                                    # the noise to predict
a_bar = schedule.alpha_bars[t].view(-1, 1, 1, 1)
x_t = a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * eps            # the one-line jump
by_hand = ((eps - net(x_t, t)) ** 2).mean()
print(f"L_simple by hand: {by_hand.item():.4f}   package: {diffusion_loss(net, schedule, x0, t, eps).item():.4f}")
assert torch.allclose(by_hand, diffusion_loss(net, schedule, x0, t, eps), atol=1e-5)

# %% [markdown]
# Before training the network outputs roughly nothing, so the loss starts near E[ε²] = 1.
#
# ## 3. Train
#
# The package's `train` runs exactly that step in a loop, with AdamW, a warm-up and cosine
# learning rate, and an exponential moving average (EMA) of the weights, which we sample with.
# The data already sits on the device, so there is no DataLoader and the loop never waits on the
# GPU. `course_model` gives the lesson's model: in the `full` profile it trains it here (or
# loads it from the cache, if an identical model was trained before); in the `quick` profile it
# loads the course's shipped checkpoint, and we train a fresh copy for a few hundred steps right
# here so that you see training happen on your machine.

# %%
from academy_diffusion.training import train

ckpt = course_model("linear", ctx.profile, ctx.device)
curves = {f"the model we sample from ({ckpt.meta['steps']} steps)": ckpt.meta["losses"]}
if ctx.profile.demo_steps:
    torch.manual_seed(0)
    demo = train(UNet(channels=ctx.profile.channels).to(ctx.device), images, schedule,
                 steps=ctx.profile.demo_steps, batch_size=ctx.profile.batch_size)
    curves[f"trained here, now ({demo.steps} steps)"] = demo.losses
    report("01_tiny_ddpm", demo_steps=demo.steps, demo_seconds=demo.seconds,
           demo_images_per_second=demo.images_per_second)
fig = plot_losses(curves)
fig.axes[0].set_title(f"Training loss (profile {ctx.profile.name})")
save_figure(fig, "01_loss_curve")
plt.show()
report("01_tiny_ddpm", train_steps=ckpt.meta["steps"], train_seconds=ckpt.meta["seconds"],
       train_images_per_second=ckpt.meta["images_per_second"], trained_on=ckpt.meta["device"])

# %% [markdown]
# **Reading the curve.** A healthy L_simple curve drops steeply in the first few hundred steps
# (from ≈ 1 to well under 0.1) and then flattens, with a lot of step-to-step jitter: each batch
# draws different timesteps, and small-t batches are much harder than large-t ones. The
# moving average should keep creeping down and never swing upwards; large swings usually mean
# a learning rate or schedule problem. Note what the curve does *not* tell you: whether samples
# look like digits. Lesson 6 shows a broken model whose loss falls just as nicely.
#
# ## 4. Sample: the same network, asked T times
#
# Training asks the network one question at a random t. Sampling asks it 1,000 questions in a
# row, from t = T down to 1, each time feeding its own output back in:
#
# $$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t,t)\Big) + \sqrt{\beta_t}\,z,\qquad z\sim\mathcal N(0,I)$$
#
# (no z on the last step). The package's sampler also clamps its running estimate of x_0 to the
# data range [-1, 1] at each step, as DDPM's reference code does. We keep every intermediate
# state of 16 samples, and the network's estimate of the clean image at each, to look at them.

# %%
T = schedule.T
run = sample(ckpt.model, ckpt.schedule, 16, sampler="ddpm", seed=0, capture="all")
levels = [T, 3 * T // 4, T // 2, T // 4, 0]
fig = show_rows({f"x_{k}": run.trajectory[k] for k in levels},
                title="DDPM sampling: the state x_k at k = T, 3T/4, T/2, T/4, 0 (one column per sample)")
save_figure(fig, "01_samples_over_time")
plt.show()
fig = show_rows({f"x̂0 at k={k}": run.predicted_x0[k] for k in levels[1:]},
                title="What the network believes the finished image is, at the same moments")
save_figure(fig, "01_predicted_x0_over_time")
plt.show()
report("01_tiny_ddpm", ddpm_1000_seconds_for_16=run.seconds)

# %% [markdown]
# Compare the two figures. In the states x_k, the middle rows (k = 3T/4, T/2) still look like
# noise: the linear schedule keeps only ᾱ ≈ 0.08 of the signal at T/2, so *any* x_{T/2} is
# mostly noise. The second figure shows the network's running estimate of the clean image,
# x̂0 = (x_k − √(1−ᾱ) ε_θ) / √ᾱ: by k = T/2 the digit is already decided, and the remaining steps
# sharpen it. That is how to read the page's advice to inspect samples at middle timesteps: if
# x̂0 were still formless at T/2, the network would not have learned its middle regime.
#
# Scrub through all 1,000 states of the same run with the slider:

# %%
display(trajectory_slider(run.trajectory))

# %% [markdown]
# ## 5. Check the claims on numbers
#
# A lesson's pictures are only as good as the numbers behind them:
#
# * the loss fell, in every run on the plot: the last 100 steps average well under half the
#   first 20 (it starts near 1);
# * the samples look like MNIST in a way a number can see: MNIST images are mostly black
#   background (≈ 82 % of pixels below -0.8), pure noise is not (≈ 22 %). Samples should be
#   close to MNIST's share, far from the noise's.

# %%
def background_share(x):
    return (x < -0.8).float().mean().item()

share_real = background_share(images[:1000].cpu())
share_noise, share_samples = background_share(run.trajectory[T]), background_share(run.images)
report("01_tiny_ddpm", background_share_mnist=share_real, background_share_noise=share_noise,
       background_share_samples=share_samples)
for name, curve in curves.items():
    first, last = torch.as_tensor(curve[:20]).mean().item(), torch.as_tensor(curve[-100:]).mean().item()
    report("01_tiny_ddpm", **{f"loss_first_20 [{name}]": first, f"loss_last_100 [{name}]": last})
    assert last < 0.5 * first, f"{name}: the loss should fall to under half its start: {first:.3f} -> {last:.3f}"
# within 0.15 of MNIST's share, i.e. far closer to MNIST (0.82) than to noise (0.22)
assert abs(share_samples - share_real) < 0.15, (share_samples, share_real)

# %% [markdown]
# **Takeaways.** The forward process is a fixed, one-line jump; the network only ever learns to
# predict noise; and sampling re-uses that one network 1,000 times. That is why DDPM sampling is
# slow (1,000 forward passes per batch): lesson 3 cuts it to 20 with DDIM, on this very model.
