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
# # Lesson 3 · DDIM: the same model, 20 steps instead of 1,000
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/notebooks/03_ddim.ipynb)
#
# DDPM sampling costs T = 1,000 network calls per image. DDIM (Song et al., 2021) reuses the
# *same trained network* with a different sampler: it can skip timesteps, and with η = 0 it is
# deterministic, so the same starting noise x_T always gives the same image. Training and
# sampling are decoupled: you pick the sampler after training.
#
# In this lesson, on lesson 1's model:
# 1. the DDIM update in a few lines;
# 2. same-seed grids of DDPM-1000, DDIM-1000, DDIM-20, and DDIM-20 with fresh noise (η = 1);
# 3. what "almost identical" means, measured per sample and as distributions (recorded at n = 5,000);
# 4. what steps and η cost in quality;
# 5. the measured wall-clock speed-up.
#
# Exercise: `exercises/03_ddim.ipynb` (the DDIM step and sampler, checked).

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
ctx = setup_lesson("03")

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from academy_diffusion.device import time_interleaved
from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import course_model
from academy_diffusion.samplers import GUIDANCE_W
from academy_diffusion.data import balanced_labels, load_mnist
from academy_diffusion.metrics import (
    class_metrics,
    extract_features,
    fid_interval,
    legible_share,
    precision_recall,
    real_baseline,
)
from academy_diffusion.plotting import plain_log_axis, show_rows
from academy_diffusion.course.claims import lesson_03
from academy_diffusion.course.pretrain import SAMPLER_SETTINGS, read_manifest
from academy_diffusion.course.reporting import report, save_figure
from academy_diffusion.samplers import ddim_step, ddim_timesteps, initial_noise, sample

# %% [markdown]
# ## 1. The DDIM update
#
# From x_t, DDIM first estimates the clean image the network "sees", then re-noises that estimate
# to the *earlier* level t_prev, pointing along the predicted noise:
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon}{\sqrt{\bar\alpha_t}},\qquad
# x_{t_\text{prev}} = \sqrt{\bar\alpha_{t_\text{prev}}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t_\text{prev}}-\sigma^2}\,\hat\varepsilon + \sigma z$$
#
# with σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev). With η = 0 there is no fresh noise at all:
# the sampler is a deterministic map from x_T to x_0 (it follows an ODE), so skipping steps only
# changes how finely that map is discretised. `t_prev` can be any earlier timestep: with 20 steps
# we use timesteps 999, 946, …, 0 (evenly spaced, both ends included).

# %%
import inspect
print(inspect.getsource(ddim_step).split('"""')[-1])  # the update, as the package writes it
print("DDIM-20 timesteps:", ddim_timesteps(1000, 20))

# %% [markdown]
# ## 2. Same seed, three samplers
#
# All three start from exactly the same x_T (drawn on the CPU from one seed).

# %%
ckpt = course_model("linear", ctx.profile, ctx.device)
model, schedule = ckpt.model, ckpt.schedule
n = ctx.profile.compare_samples
x_T = initial_noise(n, seed=0)
ddpm = sample(model, schedule, n, sampler="ddpm", x_T=x_T, seed=0)
ddim_1000 = sample(model, schedule, n, sampler="ddim", steps=1000, x_T=x_T)
ddim_20 = sample(model, schedule, n, sampler="ddim", steps=ctx.profile.ddim_steps, x_T=x_T)
ddim_20_eta1 = sample(model, schedule, n, sampler="ddim", steps=ctx.profile.ddim_steps, eta=1.0, x_T=x_T, seed=0)
show = 12
fig = show_rows({"x_T": x_T[:show], "DDPM-1000": ddpm.images[:show], "DDIM-1000": ddim_1000.images[:show],
                 f"DDIM-{ctx.profile.ddim_steps}": ddim_20.images[:show],
                 f"DDIM-{ctx.profile.ddim_steps}, η = 1": ddim_20_eta1.images[:show]},
                title="One x_T per column, four samplers")
save_figure(fig, "03_same_seed_grids")
plt.show()

# %% [markdown]
# DDIM-20 and DDIM-1000 draw *the same digit*, stroke for stroke, from the same noise. DDPM does
# not: it adds fresh noise at every one of its 1,000 steps, so its x_T does not determine its
# output, and the column's DDPM digit is simply another sample. The last row is DDIM-20 with η = 1:
# twenty steps, each with DDPM's kind of fresh noise. Count the legible digits in each row before
# reading on.
#
# ## 3. What "almost identical" means
#
# Two different questions, two different measurements:
#
# * **Per sample** (only meaningful for deterministic samplers): the RMS pixel distance between
#   DDIM-20 and DDIM-1000 from the same x_T. For scale, the same distance between DDPM and
#   DDIM-1000 from the same x_T, and between DDIM-1000 samples paired at random (two unrelated
#   digits).
# * **As distributions** (the right question for DDPM, which is stochastic): the Fréchet distance
#   between the feature statistics of the DDPM and the DDIM sets, next to the real-vs-real
#   baseline at the same n (two sets of real digits). With n this small, both are dominated by
#   small-sample bias: compare them with each other, not with published FIDs.

# %%
def rms(a, b):
    return (a - b).pow(2).flatten(1).mean(1).sqrt()

derangement = torch.roll(torch.arange(n), 1)  # pairs each sample with the next x_T's: never with itself
d_20_1000 = rms(ddim_20.images, ddim_1000.images)
d_ddpm_1000 = rms(ddpm.images, ddim_1000.images)
d_unrelated = rms(ddim_1000.images[derangement], ddim_1000.images)
fig, ax = plt.subplots(figsize=(7, 3.2))
bins = torch.linspace(0, max(d_unrelated.max(), d_ddpm_1000.max()).item(), 30)
for d, name in [(d_20_1000, f"DDIM-{ctx.profile.ddim_steps} vs DDIM-1000"), (d_ddpm_1000, "DDPM vs DDIM-1000"),
                (d_unrelated, "unrelated pairs")]:
    ax.hist(d.numpy(), bins=bins.numpy(), alpha=0.6, label=f"{name}: mean {d.mean():.3f}")
ax.set_xlabel(f"per-sample RMS pixel distance (same x_T, n = {n})")
ax.set_ylabel("samples")
ax.legend(fontsize=9)
save_figure(fig, "03_per_sample_distance")
plt.show()

classifier, _ = load_classifier(ctx.device)
real_feats = extract_features(classifier, load_mnist("test")[0][:1000])
inside = {name: precision_recall(real_feats, extract_features(classifier, x))["precision"]
          for name, x in (("DDPM-1000", ddpm.images), ("DDIM-1000", ddim_1000.images),
                          (f"DDIM-{ctx.profile.ddim_steps}", ddim_20.images))}
for name, share in inside.items():
    print(f"{name:>10}: {share:.0%} of the {n} samples fall among real digits (inside the real manifold)")
report("03_ddim", n_compared=n, rms_ddim20_vs_ddim1000=d_20_1000.mean().item(),
       rms_ddpm_vs_ddim1000=d_ddpm_1000.mean().item(), rms_unrelated=d_unrelated.mean().item(),
       **{f"share_real_looking_{name}": v for name, v in inside.items()})

# %% [markdown]
# DDIM-20 reproduces DDIM-1000 image by image: the per-sample metric says "equal". It says nothing
# about whether either is *good*, and on this unconditional model the eye disagrees with the
# deterministic pair: the DDPM-1000 and η = 1 rows hold more legible digits. Is that real, or 12
# lucky columns? The shares above cannot tell at n = 64 (their standard errors are printed below).
# The course measured the question as distributions, at n = 5,000 per sampler, offline
# (`python -m academy_diffusion.course.pretrain --compare-samplers linear`, and `cfg` for the guided
# model at w = 2): FID with its 90 % interval, the share the classifier reads confidently as some
# digit ("legible", against real digits' share), precision and recall.

# %%
se = lambda p, m: (p * (1 - p) / m) ** 0.5  # noqa: E731
live = {"DDPM-1000": ddpm.images, f"DDIM-{ctx.profile.ddim_steps}": ddim_20.images,
        f"DDIM-{ctx.profile.ddim_steps}, η = 1": ddim_20_eta1.images}
for name, x in live.items():
    share = legible_share(classifier, x)
    print(f"live, n = {n}: {name:>16}: legible {share:.2f} ± {se(share, n):.2f} (one standard error)")
recorded = {kind: read_manifest().get(kind, {}).get("samplers") for kind in ("linear", "cfg")}
recorded = {k: v for k, v in recorded.items() if v and "ddpm-1000" in v} if ctx.profile.pretrained else {}
for kind, r in recorded.items():
    guidance = "unguided" if r["w"] is None else f"w = {r['w']:g}"
    print(f"\nrecorded, shipped '{kind}' model ({guidance}), n = "
          f"{r['n']:,} per sampler, one x_T; real-vs-real FID {r['fid_real_vs_real_same_n']:.2f}, real digits "
          f"legible {r['real_legible_share']:.3f}:")
    for name in SAMPLER_SETTINGS:
        m = r[name]
        acc = f", accuracy {m['accuracy']:.4f}" if "accuracy" in m else ""
        print(f"  {name:>13}: FID {m['fid']:6.2f} ({m['lo']:.2f}-{m['hi']:.2f}), legible {m['legible_share']:.3f}, "
              f"precision {m['precision']:.3f}, recall {m['recall']:.3f}{acc}")
if not recorded:
    print("no recorded comparison for these models (they were trained in this run)")

# %% [markdown]
# **Reading the recorded comparison.** It answers the page's question per model, and the answers
# differ. On the unconditional `linear` model the distributions agree with the eye and go further:
# DDPM-1000 scores the lowest FID, DDIM-20 with η = 1 the next, DDIM-20 with η = 0 the highest, each
# pair with its intervals apart, and the legible shares fall in the same order. There "20-step DDIM is
# almost identical to 1000-step DDPM" is false as distributions, although per sample DDIM-20 is
# almost identical to DDIM-1000: the per-sample metric said "equal", and both deterministic samplers
# are the worse ones. On the guided `cfg` model at w = 2 the order flips: DDIM-20 with η = 0 has the
# lowest FID of the three, below DDPM-1000's with the intervals apart, at the same accuracy. So the
# page's claim holds for the guided model (20 steps lose nothing, they even gain) and fails for the
# unconditional one, which is why section 6 checks both.
#
# A note on comparing *sets* at this lesson's n: a Fréchet distance between two sets of n = 64
# samples in the classifier's 128-dimensional feature space rests on a singular covariance (rank
# ≤ 63), so it is mostly noise. The recorded n = 5,000 above is what it takes.
#
# ## 4. Steps and η: what the fast sampler costs
#
# On the class-conditional model of lesson 4 at its chosen guidance scale w (see lesson 5), we
# sweep the number of DDIM steps and η (0 = deterministic, 1 = DDPM's amount of fresh noise), and
# measure FID (with a bootstrap interval) and class accuracy, all from the same x_T.

# %%
cfg = course_model("cfg", ctx.profile, ctx.device)
n_sweep = ctx.profile.sweep_samples // 2
labels = balanced_labels(n_sweep)
x_T_sweep = initial_noise(len(labels), seed=3)
STEPS, ETAS = [10, 20, 50], [0.0, 1.0]
sweep = {}
for eta in ETAS:
    for k in STEPS:
        out = sample(cfg.model, cfg.schedule, len(labels), sampler="ddim", steps=k, eta=eta, labels=labels,
                     w=GUIDANCE_W, x_T=x_T_sweep, seed=4, progress=False).images
        value, lo, hi = fid_interval(out, classifier, n_boot=30)
        sweep[eta, k] = {"fid": value, "lo": lo, "hi": hi, "accuracy": class_metrics(classifier, out, labels)["accuracy"]}
baseline_sweep = real_baseline(classifier, len(labels))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for eta in ETAS:
    f = [sweep[eta, k]["fid"] for k in STEPS]
    err = [[sweep[eta, k]["fid"] - sweep[eta, k]["lo"] for k in STEPS], [sweep[eta, k]["hi"] - sweep[eta, k]["fid"] for k in STEPS]]
    axes[0].errorbar(STEPS, f, yerr=err, marker="o", capsize=3, label=f"η = {eta:g}")
    axes[1].plot(STEPS, [sweep[eta, k]["accuracy"] for k in STEPS], "o-", label=f"η = {eta:g}")
axes[0].axhline(baseline_sweep, color="gray", ls="--", label=f"real vs real (n = {len(labels)})")
axes[0].set(xlabel="DDIM steps (network evaluations × 2 for guidance)", ylabel="FID",
            title=f"FID, n = {len(labels)}, w = {GUIDANCE_W:g} (90% intervals)")
axes[1].set(xlabel="DDIM steps", ylabel="class accuracy", title="Class accuracy")
for ax in axes:
    plain_log_axis(ax, "x", STEPS)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
save_figure(fig, "03_steps_eta_sweep")
plt.show()
for (eta, k), r in sweep.items():
    print(f"η={eta:g}, {k:>2} steps: FID {r['fid']:6.2f} ({r['lo']:.1f}-{r['hi']:.1f})  accuracy {r['accuracy']:.3f}  "
          f"(n={len(labels)}, w={GUIDANCE_W:g})")
best = min(sweep, key=lambda key: sweep[key]["fid"])
ties = [key for key in sweep if key != best and sweep[key]["lo"] <= sweep[best]["hi"]]
print(f"lowest measured FID: η = {best[0]:g}, {best[1]} steps; not told apart from it at n = {len(labels)}: "
      + (", ".join(f"η = {e:g}/{k}" for e, k in ties) if ties else "none (every other interval lies above)"))
report("03_ddim", n_sweep=len(labels), w_sweep=GUIDANCE_W, fid_real_vs_real_sweep=baseline_sweep,
       best_eta=best[0], best_steps=best[1],
       **{f"fid_eta{eta:g}_steps{k}": r["fid"] for (eta, k), r in sweep.items()},
       **{f"accuracy_eta{eta:g}_steps{k}": r["accuracy"] for (eta, k), r in sweep.items()})

# %% [markdown]
# **How to read the sweep** (the last printed line sums it up). Where the intervals overlap, the
# settings are not told apart at this n, and at 250 samples per setting most of them do: the sweep
# is a quick look, not the evidence. The evidence is the recorded n = 5,000 comparison of section 3,
# and it splits by model: on the guided model at w = 2 the deterministic DDIM-20 is the better
# 20-step sampler, on the unconditional models the stochastic one is (lesson 2 saw the same on both
# schedules). So the course samples the guided model with DDIM-20 at η = 0, and its unconditional
# models with DDIM-20 at η = 1 where it needs many samples, with DDPM-1000 beside it where a small
# grid can afford the 1,000 steps (lesson 6). Why would they differ? The recorded precision and
# recall (section 3) show one trade: fresh noise at every step (η = 1) makes the samples less varied
# (recall down, on both models) and, on the unconditional model, more realistic (precision up; on the
# guided one it barely moves). The unconditional model's
# η = 0 samples are often not digits at all, so realism is what it lacks and FID rewards the trade;
# the guided model's samples are already realistic, so the variety it loses is what FID charges.
# Which way the trade goes is a property of *the* model, so measure it again when the model changes.
#
# ## 5. The speed-up, measured honestly
#
# The cost of sampling is the number of network evaluations (NFE): 1,000 for DDPM, 20 for
# DDIM-20, a ratio of 50. A DDPM step and a DDIM step each cost one network evaluation plus a
# little arithmetic, so the wall-clock ratio should land near the NFE ratio, above or below it
# depending on those extras and on what else the machine is doing. To compare fairly, both
# samplers are timed in one interleaved run on the same 8 images: five DDIM runs back to back,
# then DDPM, then five more DDIM runs. One DDIM run lasts a fraction of a second and would catch a
# single moment's load; bracketing DDPM's run, DDIM's ten runs see the load it saw.

# %%
few = x_T[:8]
REPEATS = 5  # DDIM runs timed back to back on each side of the DDPM run
ddim = lambda: [sample(model, schedule, 8, sampler="ddim", steps=ctx.profile.ddim_steps, x_T=few, progress=False)
                for _ in range(REPEATS)]
timings = time_interleaved({
    "ddim before": ddim,
    "ddpm": lambda: sample(model, schedule, 8, sampler="ddpm", x_T=few, progress=False),
    "ddim after": ddim,
}, rounds=1)
ddim_seconds = (timings["ddim before"] + timings["ddim after"]) / (2 * REPEATS)
nfe_ratio = schedule.T / ctx.profile.ddim_steps
wall_ratio = timings["ddpm"] / ddim_seconds
print(f"network evaluations: {schedule.T} vs {ctx.profile.ddim_steps}, ratio {nfe_ratio:.0f}x; "
      f"wall clock (interleaved): {timings['ddpm']:.2f} s vs {ddim_seconds:.3f} s "
      f"(mean of {2 * REPEATS} DDIM runs around it), ratio {wall_ratio:.0f}x")
report("03_ddim", nfe_ratio=nfe_ratio, wall_clock_ratio_interleaved=wall_ratio,
       ddpm1000_seconds_8_images=timings["ddpm"], ddim_seconds_8_images=ddim_seconds)

# %% [markdown]
# ## 6. Check the claims on numbers
#
# * Per sample, DDIM-20 is far closer to DDIM-1000 than DDPM is: both DDIMs discretise the same
#   deterministic map (less than half the DDPM distance), while DDPM-vs-DDIM is about as far as
#   unrelated digits (within 25 %).
# * The wall-clock speed-up follows the NFE ratio: within a factor of two either way, i.e. a
#   DDPM step and a DDIM step cost about the same, and the step count is what you pay for.
# * Recorded at n = 5,000 (when the shipped models are loaded): on the unconditional model the
#   samplers rank DDPM-1000, DDIM-20 with η = 1, DDIM-20 with η = 0, intervals apart; on the guided
#   model DDIM-20 with η = 0 beats both DDPM-1000 and DDIM-20 with η = 1, intervals apart.
# * The mechanism: with η = 1 recall falls on both models (beyond two standard errors), and the
#   unconditional model's precision rises.

# %%
lesson_03(rms={"ddim20": d_20_1000.mean().item(), "ddpm": d_ddpm_1000.mean().item(),
               "unrelated": d_unrelated.mean().item()},
          recorded=recorded, nfe_ratio=nfe_ratio, wall_ratio=wall_ratio)

# %% [markdown]
# **Takeaways.** "Almost identical" has a precise meaning only for deterministic samplers run
# from the same noise: DDIM-20 ≈ DDIM-1000 image by image. Whether 20 steps are *good enough* is
# a measurement of the distribution, with an interval and an n that can separate the candidates, on
# *your* model: here 20 deterministic steps are the best choice for the guided model, and the
# unconditional model still gains from fresh noise and from all 1,000 steps.
