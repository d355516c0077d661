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
# # Lesson 10 · Latent diffusion: the same diffusion in a small autoencoder's code
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/notebooks/10_latent_diffusion.ipynb)
#
# The course page names latent diffusion twice: as a fast-sampling technique ("run the diffusion in the
# compressed latent space of a pretrained autoencoder instead of pixel space; quality improves and compute
# drops 8–64×") and in its common mistakes ("training on pixel space for too-large images instead of using
# a latent autoencoder"). It also says that VAEs "survive as encoders inside latent diffusion". This lesson
# builds the whole chain on MNIST and measures what it saves and what it costs:
#
# 1. the autoencoder: 1×28×28 digits ↔ 4×7×7 codes, its reconstructions, and the **floor** they set;
# 2. the latent scale, and one training step in the latent space;
# 3. latent samples beside the pixel model's, at equal network calls;
# 4. **the compute saving on your device**: FLOPs, training and sampling images/s, and FID at equal
#    training time;
# 5. the common mistake: decoding with the wrong scale;
# 6. what this says about Stable Diffusion.
#
# Only the space changes: the denoiser is lesson 1's U-Net (same widths, 4 input channels, a 7×7 grid),
# trained by the same `train` with the same linear schedule, and sampled by the same `sample`.
#
# Exercise: `exercises/10_latent_diffusion.ipynb` (the encode → scale → decode round trip and the latent
# training step, checked).

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
ctx = setup_lesson("10")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import cached_sample, check_latent_pair, course_autoencoder, course_model
from academy_diffusion.course.lessons import train_for, training_rates
from academy_diffusion.course.pretrain import read_manifest
from academy_diffusion.course.claims import lesson_10
from academy_diffusion.course.reporting import report, save_figure
from academy_diffusion.data import load_mnist
from academy_diffusion.device import time_interleaved
from academy_diffusion.latent import (
    decode_all,
    encode_all,
    from_latent,
    latent_diffusion_loss,
    sample_latent,
    to_latent,
)
from academy_diffusion.metrics import baseline_images, fid_interval, real_baseline
from academy_diffusion.models import UNet, count_parameters, forward_flops
from academy_diffusion.plotting import show_rows
from academy_diffusion.samplers import initial_noise, sample
from academy_diffusion.schedules import make_schedule

# %% [markdown]
# ## 1. The autoencoder, and the floor it sets
#
# A small VAE (`academy_diffusion/latent.py`): two stride-2 convolutions take a digit from 28×28 to a
# 7×7 grid of 4 channels, and the decoder mirrors them. That is 16× fewer grid positions for the
# denoiser's convolutions and 4× fewer numbers (196 against 784). The encoder outputs a mean and a
# variance; training decodes a *sample* from them and adds a small KL penalty towards N(0, I), as Stable
# Diffusion's autoencoder does, so that the decoder draws a clean digit from a whole neighbourhood of each
# code: a latent model's samples never land exactly on the codes the encoder produced.
#
# The autoencoder is trained once, before and apart from the diffusion model, and then frozen.
#
# A latent model can only produce what the decoder can draw. Its **reconstruction FID** (real digits,
# encoded and decoded, against the test set) is therefore the floor of every latent model's FID. We score
# the same real digits that the real-vs-real baseline scores, so the gap between the two is the
# autoencoder's alone.

# %%
autoencoder, scale, ae_meta = course_autoencoder(ctx.profile, ctx.device)
classifier, _ = load_classifier(ctx.device)
n = ctx.profile.fid_samples
real = baseline_images(n)
reconstructed = decode_all(autoencoder, encode_all(autoencoder, real.to(ctx.device)))
floor, floor_lo, floor_hi = fid_interval(reconstructed, classifier)
baseline = real_baseline(classifier, n)
print(f"autoencoder: {count_parameters(autoencoder):,} parameters, trained {ae_meta['epochs']:g} epochs in "
      f"{ae_meta['seconds']:.0f} s on {ae_meta['device']}")
print(f"reconstruction FID {floor:.1f} (90 % interval {floor_lo:.1f}-{floor_hi:.1f}; n = {n:,}); real-vs-real at "
      f"this n {baseline:.1f}; mean |error| per pixel {(reconstructed - real).abs().mean():.3f} (pixels span 2)")
recorded_ae = read_manifest().get("autoencoder", {}).get("metrics") if ctx.profile.pretrained else None
if recorded_ae:
    print(f"recorded at n = {recorded_ae['n']:,}: reconstruction FID {recorded_ae['reconstruction_fid']:.1f}, "
          f"real-vs-real {recorded_ae['fid_real_vs_real_same_n']:.1f}")
fig = show_rows({"real": real[:12], "encoded, decoded": reconstructed[:12]},
                title="The autoencoder's round trip (each column one digit)")
save_figure(fig, "10_reconstructions")
plt.show()
report("10_latent_diffusion", n_fid=n, reconstruction_fid=floor, fid_real_vs_real=baseline,
       autoencoder_seconds=ae_meta["seconds"])

# %% [markdown]
# The reconstructions keep each digit's identity and shape. In the classifier's features they are nearly
# as good as real digits: the reconstruction FID sits just above the real-vs-real value at the same n (the
# numbers above). The floor is low: whatever a latent model loses below, it does not lose in the decoder.
#
# ## 2. The latent scale, and one training step in the latent space
#
# The noise schedule assumes data of about unit variance: at t = T, √ᾱ_T x_0 must be negligible beside
# the noise. Nothing in the autoencoder's loss fixes the codes' scale precisely, so we measure it: the
# **latent scale** is 1 / (standard deviation of the codes over the training digits), stored with the
# autoencoder. The diffusion model trains on `scale · encode(x)` and its samples are decoded with
# `decode(z / scale)`.

# %%
codes = encode_all(autoencoder, real.to(ctx.device)).cpu()
print(f"codes of {len(codes):,} digits: shape {list(codes.shape[1:])}, mean {codes.mean():.3f}, "
      f"std {codes.std():.3f}; per channel std " + ", ".join(f"{s:.2f}" for s in codes.std(dim=(0, 2, 3))))
print(f"stored latent scale {scale:.4f} (= 1 / std on the training digits); scaled codes: std "
      f"{(scale * codes).std():.3f}")
fig, axes = plt.subplots(1, 5, figsize=(8, 1.9))
axes[0].imshow(real[0, 0], cmap="gray", vmin=-1, vmax=1)
axes[0].set_title("digit", fontsize=8)
for c in range(4):
    axes[c + 1].imshow(scale * codes[0, c], cmap="RdBu_r", vmin=-3, vmax=3)
    axes[c + 1].set_title(f"code channel {c}", fontsize=8)
for ax in axes:
    ax.axis("off")
fig.suptitle("One digit and its 4×7×7 code (scaled; red > 0 > blue)", fontsize=9)
save_figure(fig, "10_code")
plt.show()

# %% [markdown]
# One training step is L_simple on the scaled codes, written out below and compared with the package's
# `latent_diffusion_loss`. The encoder runs without gradients: it is frozen, and only the denoiser learns.

# %%
schedule = make_schedule("linear", 1000, ctx.device)
torch.manual_seed(0)
denoiser = UNet(in_channels=4, channels=ctx.profile.channels, image_size=7).to(ctx.device)
x0 = real[:64].to(ctx.device)
t = torch.randint(0, 1000, (64,), device=ctx.device)
noise = torch.randn(64, 4, 7, 7, device=ctx.device)             # the noise lives in the latent space
with torch.no_grad():
    z0 = scale * autoencoder.encode(x0)                          # digits -> scaled codes, no gradient
z_t = schedule.q_sample(z0, t, noise)                            # the forward process, unchanged
by_hand = (denoiser(z_t, t) - noise).pow(2).mean()               # L_simple, unchanged
package = latent_diffusion_loss(denoiser, schedule, autoencoder, scale, x0, t, noise)
print(f"latent L_simple by hand {by_hand.item():.4f}, package {package.item():.4f}")
assert torch.allclose(by_hand, package, atol=1e-5)

# %% [markdown]
# ## 3. Latent samples beside pixel samples, at equal network calls
#
# The course's `latent` model is this U-Net trained with `linear`'s recipe (20 epochs of all 60,000
# digits, batch 64, same widths) on the autoencoder's scaled codes. Both models sample with DDIM-20
# at η = 1, the course's sampler for unconditional models (lessons 2 and 3 measured it against η = 0,
# and the recorded comparison below does for this latent model): 20 network calls each, plus one decoder pass for the latent model. One difference in the
# sampler: the pixel model clamps each step's x̂0 to [−1, 1], the pixel range; a code has no such range,
# so the latent sampler does not clamp.

# %%
latent = course_model("latent", ctx.profile, ctx.device)
check_latent_pair(latent, autoencoder, scale)
linear = course_model("linear", ctx.profile, ctx.device)
steps = ctx.profile.ddim_steps
draws = {
    "latent": sample_latent(latent.model, latent.schedule, autoencoder, scale, n, sampler="ddim", steps=steps, eta=1.0,
                            seed=0, progress=False),
    "pixel": cached_sample(linear.model, linear.schedule, n, sampler="ddim", steps=steps, eta=1.0,
                           x_T=initial_noise(n, 0)),  # lesson 2's η = 1 set, reused when lesson 2 ran first
}
fig = show_rows({f"{name}, DDIM-{steps}, η = 1": d.images[:12] for name, d in draws.items()},
                title="Latent and pixel models, 20 network calls each (different x_T: the spaces differ)")
save_figure(fig, "10_samples")
plt.show()
sample_fid = {name: fid_interval(d.images, classifier) for name, d in draws.items()}
for name, (value, lo, hi) in sample_fid.items():
    print(f"{name:>6} model, DDIM-{steps}, η = 1: FID {value:.1f} (90 % interval {lo:.1f}-{hi:.1f}; n = {n:,}, "
          "unguided)")
print(f"reconstruction floor {floor:.1f} [{floor_lo:.1f}-{floor_hi:.1f}], real-vs-real {baseline:.1f} (same n)")
manifest = read_manifest() if ctx.profile.pretrained else {}
recorded = {k: manifest[k]["metrics"] for k in ("latent", "linear") if "metrics" in manifest.get(k, {})}
for name, r in recorded.items():
    print(f"recorded {name}: FID {r['fid']:.1f} (n = {r['fid_n']:,}, {r['fid_sampler']}, η = 0; real-vs-real "
          f"{r['fid_real_vs_real_same_n']:.1f}; trained in {manifest[name]['train_seconds']:.0f} s on "
          f"{manifest[name]['device']})")
    by_sampler = manifest[name].get("samplers", {})
    if "ddim-20-eta1" in by_sampler:
        eta0, eta1 = by_sampler["ddim-20"], by_sampler["ddim-20-eta1"]
        print(f"    and at n = {by_sampler['n']:,}: DDIM-20 η = 0 {eta0['fid']:.1f} ({eta0['lo']:.1f}-{eta0['hi']:.1f}), "
              f"η = 1 {eta1['fid']:.1f} ({eta1['lo']:.1f}-{eta1['hi']:.1f})")
report("10_latent_diffusion", **{f"fid_{k}": v[0] for k, v in sample_fid.items()})

# %% [markdown]
# **At equal epochs the latent model is clearly worse** (the intervals above are far apart, and the
# recorded n = 10,000 values, drawn with η = 0, say the same). Its strokes are as clean as real ones, because the decoder
# draws them, but many shapes are not digits. The decoder is not the reason: the floor is far below, so
# the loss is in the denoiser, which learned this space less well in the same 20 epochs. The page's
# "quality improves" is a statement about Stable Diffusion's large images; for this autoencoder on MNIST
# at equal epochs it does not hold. What the latent model did get is speed: it trained in a fraction of
# the pixel model's time (printed above, both on one thread of the same kind of CPU). Section 4 asks
# whether that speed buys quality.
#
# ## 4. What the latent space saves, measured on this device
#
# **FLOPs.** PyTorch's FLOP counter on one forward pass of each network, for one image:

# %%
z1 = torch.zeros(1, 4, 7, 7, device=ctx.device)
x1 = torch.zeros(1, 1, 28, 28, device=ctx.device)
t1 = torch.zeros(1, dtype=torch.long, device=ctx.device)
flops = {"pixel U-Net (one step)": forward_flops(linear.model, x1, t1),
         "latent U-Net (one step)": forward_flops(latent.model, z1, t1),
         "encoder (once per digit)": forward_flops(autoencoder.encoder, x1),
         "decoder (once per sample)": forward_flops(autoencoder.decoder, z1)}
params = {"pixel U-Net (one step)": count_parameters(linear.model), "latent U-Net (one step)":
          count_parameters(latent.model), "encoder (once per digit)": count_parameters(autoencoder.encoder),
          "decoder (once per sample)": count_parameters(autoencoder.decoder)}
for name, f in flops.items():
    print(f"{name:>26}: {f / 1e6:6.1f} MFLOPs, {params[name]:>9,} parameters")
step_ratio = flops["pixel U-Net (one step)"] / flops["latent U-Net (one step)"]
sample_ratio = (steps * flops["pixel U-Net (one step)"]) / (
    steps * flops["latent U-Net (one step)"] + flops["decoder (once per sample)"])
print(f"per network call: {step_ratio:.1f}x fewer FLOPs in the latent space; per DDIM-{steps} sample, "
      f"decoder included: {sample_ratio:.1f}x")

# %% [markdown]
# Same widths, nearly the same parameter count: the saving is the grid, 7×7 against 28×28, and it shrinks
# less than 16× because the U-Net's deepest levels are small grids in both spaces. The decoder costs about
# as much as a few denoiser steps, once per sample.
#
# **Wall-clock.** FLOPs are not seconds: small convolutions use a device less well than large ones. Below,
# each model trains a few steps (batch 64) and samples 64 images with DDIM-20, the two spaces timed in
# alternation so that both see the same machine load (the median of 3 rounds).

# %%
pixels, _ = load_mnist("train", device=ctx.device, subset=ctx.profile.train_images)
scaled_codes = scale * encode_all(autoencoder, pixels)  # encoded once; the latent model trains on these
batch = ctx.profile.batch_size
fresh = {"pixel": lambda: UNet(channels=ctx.profile.channels),
         "latent": lambda: UNet(in_channels=4, channels=ctx.profile.channels, image_size=7)}
data = {"pixel": pixels, "latent": scaled_codes}
rate = {f"train {k}": r for k, r in training_rates({k: (fresh[k], data[k]) for k in fresh}, schedule, batch,
                                                   3 if ctx.profile.name == "smoke" else 10, ctx.device).items()}
timing = time_interleaved({
    "sample pixel": lambda: sample(linear.model, linear.schedule, 64, sampler="ddim", steps=steps, progress=False),
    "sample latent": lambda: sample_latent(latent.model, latent.schedule, autoencoder, scale, 64, sampler="ddim",
                                           steps=steps, progress=False),
}, device=ctx.device)
rate.update({k: 64 / s for k, s in timing.items()})
for k, r in rate.items():
    print(f"{k:>14}: {r:8,.0f} images/s")
train_speedup = rate["train latent"] / rate["train pixel"]
sample_speedup = rate["sample latent"] / rate["sample pixel"]
print(f"latent/pixel: training {train_speedup:.1f}x, sampling {sample_speedup:.1f}x (decoder included) on "
      f"{ctx.device.type}; FLOPs said {step_ratio:.1f}x and {sample_ratio:.1f}x")
report("10_latent_diffusion", flops_ratio_step=step_ratio, flops_ratio_sample=sample_ratio,
       train_speedup=train_speedup, sample_speedup=sample_speedup, **{f"rate_{k.replace(' ', '_')}": r
                                                                     for k, r in rate.items()})

# %% [markdown]
# **FID at equal training time.** Faster steps matter only if they buy a better model for the same
# budget. Two fresh models, one per space, each train for the same number of seconds on this device (the
# step counts come from the rates just measured), then sample with DDIM-20. A lesson can afford only a
# few seconds, where neither model draws digits yet; the course also ran the same race offline, at the
# latent model's whole training time, and prints it below. The autoencoder's own training
# time is *not* in the race: it is paid once and reused by every latent model, as Stable Diffusion's VAE is
# (this one took the time printed in section 1).

# %%
budget = ctx.profile.race_seconds
n_race = ctx.profile.fast_samples
race = {}
for space in ("pixel", "latent"):
    result = train_for(budget, rate[f"train {space}"], fresh[space](), data[space], schedule, batch)
    k = result.steps
    if space == "latent":
        images = sample_latent(result.ema, schedule, autoencoder, scale, n_race, sampler="ddim", steps=steps, eta=1.0,
                               seed=2, progress=False).images
    else:
        images = sample(result.ema, schedule, n_race, sampler="ddim", steps=steps, eta=1.0, seed=2,
                        progress=False).images
    race[space] = {"steps": k, "seconds": result.seconds, "images": images, "fid": fid_interval(images, classifier)}
    f, lo, hi = race[space]["fid"]
    print(f"{space:>6}: {k:5,} steps in {result.seconds:5.1f} s -> FID {f:.1f} ({lo:.1f}-{hi:.1f}; n = {n_race}, "
          f"DDIM-{steps}, η = 1)")
print(f"real-vs-real at n = {n_race}: {real_baseline(classifier, n_race):.1f}")
fig = show_rows({f"{s}, {race[s]['seconds']:.0f} s of training": race[s]["images"][:12] for s in race},
                title=f"Equal training time ({budget:g} s each, this device)")
save_figure(fig, "10_equal_time")
plt.show()
recorded_race = manifest.get("latent", {}).get("equal_time")
if recorded_race:
    print(f"recorded, {recorded_race['seconds_each']:.0f} s each on {recorded_race['measured_on']} (n = "
          f"{recorded_race['n']:,}, DDIM-20; real-vs-real {recorded_race['fid_real_vs_real_same_n']:.1f}):")
    for space in ("pixel", "latent"):
        r = recorded_race[space]
        print(f"  {space:>6}: {r['steps']:,} steps in {r['train_seconds']:.0f} s -> FID {r['fid']:.1f} "
              f"({r['lo']:.1f}-{r['hi']:.1f})")
report("10_latent_diffusion", race_seconds=budget, n_race=n_race,
       **{f"race_fid_{s}": r["fid"][0] for s, r in race.items()}, **{f"race_steps_{s}": r["steps"]
                                                                       for s, r in race.items()})

# %% [markdown]
# ## 5. The common mistake: the scale factor
#
# Forgetting to divide by the scale before decoding, or copying Stable Diffusion's 0.18215 into a model
# whose codes have another spread, hands the decoder codes of the wrong size. The latent model's samples
# from section 3, decoded three ways:

# %%
z = sample(latent.model, latent.schedule, n, sampler="ddim", steps=steps, eta=1.0, seed=0, clip_x0=False,
           progress=False).images  # the scaled codes behind section 3's latent samples
mistakes = {f"decode(z / {scale:.3f}), right": decode_all(autoencoder, z / scale),
            "decode(z), scale forgotten": decode_all(autoencoder, z),
            "decode(z / 0.18215), Stable Diffusion's factor": decode_all(autoencoder, z / 0.18215)}
mistake_fid = {name: fid_interval(x, classifier) for name, x in mistakes.items()}
for name, (value, lo, hi) in mistake_fid.items():
    print(f"{name:>48}: FID {value:7.1f} ({lo:.1f}-{hi:.1f}; n = {n:,})")
assert torch.allclose(mistakes[f"decode(z / {scale:.3f}), right"], draws["latent"].images, atol=1e-4)
fig = show_rows({name.split(",")[1].strip(): x[:12] for name, x in mistakes.items()},
                title="The same latent samples, decoded with the right and two wrong scales")
save_figure(fig, "10_scale_mistake")
plt.show()
report("10_latent_diffusion", **{f"fid_decode_{i}": v[0] for i, v in enumerate(mistake_fid.values())})

# %% [markdown]
# How much forgetting the factor hurts depends on how far it is from 1: this autoencoder's codes already
# have a spread near 1 (section 2), so the mistake costs little here. Stable Diffusion's codes have a
# standard deviation near 1 / 0.18215 ≈ 5.5: forgetting the factor there hands the decoder codes 5.5×
# too large, the same kind of error as the third row here. The same mistake at training time (a denoiser
# trained on unscaled codes) changes the schedule's signal-to-noise ratio at every t; exercise 10's checks
# catch it.
#
# ## 6. Where MNIST sits on the page's 8–64×, and what Stable Diffusion does
#
# * **Stable Diffusion** (Rombach et al. 2022, *High-Resolution Image Synthesis with Latent Diffusion
#   Models*, arXiv:2112.10752; the v1.5 autoencoder's `vae/config.json` on the Hugging Face Hub) encodes
#   a 512×512×3 image into a 4×64×64 code: 8× fewer positions per side, 64× per image, and 48× fewer
#   numbers. Its `scaling_factor` is 0.18215, measured as 1 / std of the codes, the step of section 2.
# * **Here** the code has 16× fewer positions and 4× fewer numbers. The measured saving per network call
#   is the FLOP ratio printed in section 4, and the wall-clock ratio is smaller still on a CPU, because a
#   7×7 grid leaves little work per convolution. MNIST sits at the bottom of the page's range for a
#   plain reason: at 28×28 there is little to compress. The page's 64× is a 512×512 image, whose pixels
#   are mostly redundant detail that an autoencoder can summarise.
# * **Quality.** A latent model is bounded by its decoder, and here the bound is loose: the floor is
#   close to real-vs-real, the latent model far above it. At equal epochs it loses to the pixel model;
#   at equal training time it wins, in the lesson's few seconds and in the recorded race of about 8
#   minutes each (the checks below). Neither is a good model at that budget: the pixel model reaches the
#   FID printed in section 3 only after its full 20 epochs (its training time is printed there too).
# * **The page's "Autoencoders and VAEs".** The VAE here is not a generator: its samples from N(0, I)
#   would be blurry, the page's complaint about VAEs. It is a compressor whose code is smooth enough for
#   a diffusion model to learn, which is the role the page gives it: "VAEs survive as encoders inside
#   latent diffusion".

# %%
lesson_10(n, floor=(floor, floor_lo, floor_hi), baseline=baseline, latent=sample_fid["latent"],
          pixel=sample_fid["pixel"], train_speedup=train_speedup, sample_speedup=sample_speedup, flop_ratio=step_ratio,
          race={"budget": budget, "n": n_race, "pixel": race["pixel"]["fid"], "latent": race["latent"]["fid"]},
          recorded_race=recorded_race, scale=scale, scale_mistakes=mistake_fid)
