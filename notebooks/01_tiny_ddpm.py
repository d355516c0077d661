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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/notebooks/01_tiny_ddpm.ipynb)
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
# 4. sample 1,000 steps from pure noise, and watch the samples at t ∈ {T, 3T/4, T/2, T/4, 0};
# 5. see why the network's answer is an *average*, and why that forces sampling to be iterative.
#
# Exercise: `exercises/01_q_sample_and_loss.ipynb` (the forward jump, L_simple, the reverse step and the training step, checked).

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
ctx = setup_lesson("01")

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from academy_diffusion.classifier import load_classifier, predict
from academy_diffusion.course import course_model
from academy_diffusion.data import load_mnist
from academy_diffusion.metrics import class_metrics, extract_features, precision_recall
from academy_diffusion.plotting import plot_losses, show_rows
from academy_diffusion.course.claims import lesson_01
from academy_diffusion.course.pretrain import read_manifest
from academy_diffusion.course.reporting import report, save_figure
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
# Why does predicting the noise work? Given x_t, the noise is not determined: many clean digits
# x_0, each with its own ε, lead to the same x_t. A network trained with a mean-squared error
# learns the *average* answer, the conditional expectation
#
# $$\varepsilon_\theta(x_t, t) \approx \mathbb E[\varepsilon \mid x_t],\qquad
# \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta}{\sqrt{\bar\alpha_t}} \approx \mathbb E[x_0 \mid x_t].$$
#
# At low noise the average is sharp (only one digit fits x_t). At high noise it is a grey blend
# of every digit that could still be hiding there, which is why one jump from x_T cannot give a
# sample, and sampling must go step by step: each small step commits to a little more detail,
# and the network's next average is taken over fewer candidates. One training step, written out
# by hand, next to the package's `diffusion_loss` (which the training loop calls):

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
    raw = UNet(channels=ctx.profile.channels).to(ctx.device)  # train() updates it in place: the raw weights
    demo = train(raw, images, schedule, steps=ctx.profile.demo_steps, batch_size=ctx.profile.batch_size)
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
# ### Why sample with the EMA?
#
# The page calls the moving average of the weights "load-bearing". The run we just watched kept both:
# the raw weights after its last step, and their EMA (decay 0.999, warmed up as min(0.999,
# (1+k)/(10+k)), so over a short run it averages the last few dozen steps). Same sampler (DDIM-20 with
# η = 1, the course's choice for unconditional models, see lessons 2 and 3), same x_T, FID with its
# 90 % interval.

# %%
if ctx.profile.demo_steps:
    from academy_diffusion.metrics import fid_interval, real_baseline
    from academy_diffusion.samplers import initial_noise

    classifier, _ = load_classifier(ctx.device, verbose=False)
    m = ctx.profile.fast_samples
    x_ema = initial_noise(m, seed=5)
    weights = {"raw weights": raw, "EMA weights": demo.ema}
    drawn = {name: sample(net, schedule, m, sampler="ddim", steps=ctx.profile.ddim_steps, eta=1.0, x_T=x_ema,
                          seed=5, progress=False).images for name, net in weights.items()}
    ema_fid = {name: fid_interval(x, classifier) for name, x in drawn.items()}
    fig = show_rows({f"{name}: FID {ema_fid[name][0]:.0f}": x[:12] for name, x in drawn.items()},
                    title=f"The same {demo.steps}-step run, sampled from its raw and its averaged weights")
    save_figure(fig, "01_raw_vs_ema")
    plt.show()
    for name, (value, lo, hi) in ema_fid.items():
        print(f"{name:>12}: FID {value:.1f} ({lo:.1f}-{hi:.1f}; n = {m}, real-vs-real {real_baseline(classifier, m):.1f})")
    report("01_tiny_ddpm", **{f"fid_demo_{name.split()[0]}": v[0] for name, v in ema_fid.items()})
    recorded = read_manifest().get("linear", {}).get("ema_check") if ctx.profile.pretrained else None
    if recorded:  # the same comparison on a longer run, measured when the course was built
        print(f"recorded: {recorded['epochs']:g} epochs ({recorded['steps']:,} steps) of this recipe, n = "
              f"{recorded['n']:,}, {recorded['sampler']}:")
        for name in ("raw", "ema"):
            r = recorded[name]
            print(f"  {name:>3} weights: FID {r['fid']:.1f} ({r['lo']:.1f}-{r['hi']:.1f}), legible {r['legible_share']:.3f}")
else:
    print("this profile trains no demonstration run next to the lesson's model, so there are no raw weights to "
          "compare (the lesson's model keeps only its EMA)")

# %% [markdown]
# Read the intervals. After a few hundred steps both sets are far from digits, and on the course's
# CPU the two live intervals overlapped: this run is too short to show what the EMA is for. The
# recorded run (printed under "recorded" when the course's shipped models are loaded) is longer, the
# same recipe for two epochs, scored on 5,000 samples each: there the EMA's FID is lower with the
# intervals apart (checked at the end of the lesson), while the share of confidently legible digits
# barely moves. The average did not make single digits more legible; it made the *set* closer to
# real handwriting. The lesson's model and every shipped one are EMA weights, as in DDPM and its
# successors.
#
# ## 4. Sample: the same network, asked T times
#
# Training asks the network one question at a random t. Sampling asks it 1,000 questions in a
# row, from t = T down to 1, each time feeding its own output back in:
#
# $$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t,t)\Big) + \sqrt{\beta_t}\,z,\qquad z\sim\mathcal N(0,I)$$
#
# (no z on the last step). Where does this step come from? If we knew x_0, the forward process
# would tell us exactly where x_{t-1} lies given x_t: the posterior
#
# $$q(x_{t-1}\mid x_t, x_0) = \mathcal N\Big(\tfrac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0
#   + \tfrac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,\; \tilde\beta_t I\Big),
#   \qquad \tilde\beta_t = \tfrac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t,$$
#
# a Gaussian between the two. The reverse step imitates it with the network's x̂0 in place of
# the unknown x_0: substituted, the mean is exactly the formula above, and DDPM uses β_t
# (or β̃_t; both work) as its variance. The package's sampler also clamps its running estimate
# of x_0 to the data range [-1, 1] at each step, as DDPM's reference code does. We keep every
# intermediate state of 32 samples, and the network's estimate of the clean image at each.

# %%
T = schedule.T
run = sample(ckpt.model, ckpt.schedule, 32, sampler="ddpm", seed=0, capture="all")
levels = [T, 3 * T // 4, T // 2, T // 4, 0]
fig = show_rows({f"x_{k}": run.trajectory[k][:16] for k in levels},
                title="DDPM sampling: the state x_k at k = T, 3T/4, T/2, T/4, 0 (one column per sample)")
save_figure(fig, "01_samples_over_time")
plt.show()
fig = show_rows({f"x̂0 at k={k}": run.predicted_x0[k][:16] for k in levels[1:]},
                title="What the network believes the finished image is, at the same moments")
save_figure(fig, "01_predicted_x0_over_time")
plt.show()

classifier, _ = load_classifier(ctx.device, verbose=False)
final_digit = predict(classifier, run.images)
agree = {k: (predict(classifier, run.predicted_x0[k]) == final_digit).float().mean().item() for k in levels[1:-1]}
grey = {k: ((run.predicted_x0[k].abs() < 0.8).float().mean().item()) for k in levels[1:]}
for k in levels[1:-1]:
    print(f"k={k:>4}: x̂0 already reads as the final digit for {agree[k]:.0%} of the 32 samples; "
          f"grey pixels in x̂0 (|x| < 0.8): {grey[k]:.1%}")
print(f"k=   0: grey pixels in the finished samples: {grey[0]:.1%}")
report("01_tiny_ddpm", ddpm_1000_seconds_for_32=run.seconds,
       **{f"x0_hat_agrees_with_final_digit_k{k}": agree[k] for k in agree},
       **{f"x0_hat_grey_share_k{k}": grey[k] for k in grey})

# %% [markdown]
# Compare the two figures. In the states x_k, the middle rows (k = 3T/4, T/2) still look like
# noise: the linear schedule keeps only ᾱ ≈ 0.08 of the signal at T/2, so *any* x_{T/2} is
# mostly noise. The second figure shows the network's running estimate of the clean image,
# x̂0 = (x_k − √(1−ᾱ) ε_θ) / √ᾱ, the conditional average E[x_0 | x_k]. At k = 3T/4 it is a grey
# blur: many digits are still possible, and their average is no digit (count the grey pixels
# above). By T/2 a shape has emerged, but it is not final: the classifier reads the final digit
# in x̂0 for only part of the samples at T/2 (printed above), and some columns change identity
# between T/2 and T/4. The last quarter of the steps mostly sharpens strokes. That is how to
# read the page's advice to inspect samples at middle timesteps: x̂0 should become digit-like as
# k falls; if it stayed formless until the very end, the network would not have learned its
# middle regime.
#
# Scrub through all 1,000 states of the same run with the slider:

# %%
display(trajectory_slider(run.trajectory))

# %% [markdown]
# ## 5. Check the claims on numbers
#
# A lesson's pictures are only as good as the numbers behind them. The course's MNIST classifier
# (over 99 % accurate on real test digits) is our stand-in for a reader:
#
# * **the samples look like real digits to it**: in the classifier's feature space, most samples
#   fall among real digits, inside the "real manifold" (the balls around 1,000 real test digits
#   that reach each one's 3rd-nearest real neighbour; lesson 8 calls this share *precision*),
#   nearly as many as of 1,000 real training digits (within four standard errors of a share
#   measured on 32 images), and no pure-noise image does. (The classifier's *confidence* would not
#   do: it is just as sure of pure noise, a classic failure of classifiers far from their training
#   data.)
# * **x̂0 is an average that sharpens**: at k = 3T/4 it has more grey pixels than the finished
#   samples, and it agrees with the final digit more often at T/4 than at 3T/4;
# * **training keeps improving after the steep start**: the model we sample from averages a lower
#   loss over its last tenth of steps than over its second tenth (a learning rate that is too
#   high, or a broken schedule, makes the curve flatten early or swing back up);
# * **the EMA earns its place** (recorded, when the shipped models are loaded): on the longer run, the
#   averaged weights' FID interval lies below the raw weights'.

# %%
real_feats = extract_features(classifier, load_mnist("test")[0][:1000])
inside = {name: precision_recall(real_feats, extract_features(classifier, x))["precision"]
          for name, x in (("noise", run.trajectory[T]), ("samples", run.images),
                          ("real", load_mnist("train")[0][:1000]))}
conf = {"noise": class_metrics(classifier, run.trajectory[T])["confidence"],
        "samples": class_metrics(classifier, run.images)["confidence"]}
losses = torch.as_tensor(ckpt.meta["losses"])
tenth = len(losses) // 10
second_tenth, last_tenth = losses[tenth:2 * tenth].mean().item(), losses[-tenth:].mean().item()
report("01_tiny_ddpm", share_inside_real_manifold_samples=inside["samples"],
       share_inside_real_manifold_real_train_digits=inside["real"],
       share_inside_real_manifold_noise=inside["noise"], classifier_confidence_samples=conf["samples"],
       classifier_confidence_noise=conf["noise"], loss_second_tenth=second_tenth, loss_last_tenth=last_tenth)
lesson_01(inside, n=len(run.images), grey=grey, agree=agree, T=T, loss_second_tenth=second_tenth,
          loss_last_tenth=last_tenth,
          ema_recorded=read_manifest().get("linear", {}).get("ema_check") if ctx.profile.pretrained else None)

# %% [markdown]
# **Takeaways.** The forward process is a fixed, one-line jump; the network only ever learns to
# predict noise; and sampling re-uses that one network 1,000 times. That is why DDPM sampling is
# slow (1,000 forward passes per batch): lesson 3 cuts it to 20 with DDIM, on this very model.
