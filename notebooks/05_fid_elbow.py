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
# # Lesson 5 · FID against w: the minimum, the elbow, and what FID sees
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/notebooks/05_fid_elbow.ipynb)
#
# FID (Fréchet Inception Distance) fits a Gaussian to the features of real images and one to the
# features of generated images, and measures the distance between the two Gaussians:
#
# $$d^2 = \lVert\mu_r - \mu_g\rVert^2 + \operatorname{Tr}\big(\Sigma_r + \Sigma_g - 2(\Sigma_r\Sigma_g)^{1/2}\big)$$
#
# Inception-v3 knows nothing useful about 28×28 digits, so the course uses the 128-dimensional
# penultimate layer of its own small MNIST classifier instead. The formula and its blind spots
# stay the same. In this lesson, on lesson 4's guided model:
# 1. FID against the guidance scale w, with error bars: a V with a minimum;
# 2. the minimum against the elbow, and the knee of a curve that has one;
# 3. the samples FID prefers, next to strong guidance;
# 4. FID against the sample count n: the bias below 5,000;
# 5. the accuracy-against-FID trade-off.
#
# Rules the page insists on, and every number here follows: **report w and n next to every FID**,
# and give the real-vs-real baseline at the same n so the number has a scale.
#
# Exercise: `exercises/05_fid_and_elbow.ipynb` (feature statistics, the Fréchet distance and the elbow, checked).

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
ctx = setup_lesson("05")

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import cached_sample, course_model
from academy_diffusion.data import balanced_labels
from academy_diffusion.metrics import class_metrics, fid, fid_interval, find_elbow, real_baseline
from academy_diffusion.plotting import plain_log_axis, show_rows
from academy_diffusion.course.claims import lesson_05
from academy_diffusion.course.reporting import report, save_figure
from academy_diffusion.samplers import GUIDANCE_W, initial_noise

# %% [markdown]
# ## 1. FID against w, with its own noise
#
# For each w: n samples, n/10 of each digit, all from the same starting noise, DDIM-20: the very
# samples lesson 4 scored for accuracy (same x_T, labels and settings; if lesson 4 ran first,
# `cached_sample` reads them from disk instead of drawing them again). One FID is one draw: the
# bars are 90 % intervals from the bootstrap (the samples resampled with
# replacement; ± 1.645 standard deviations of the resampled FIDs), the spread a different set of
# n samples would show.

# %%
ckpt = course_model("cfg", ctx.profile, ctx.device)
classifier, clf_meta = load_classifier(ctx.device)
W_SWEEP = [0, 1, 2, 3, 5, 7, 10]
n = ctx.profile.sweep_samples
labels = balanced_labels(n)
x_T = initial_noise(len(labels), seed=1)  # lesson 4's x_T and labels: its samples are reused
samples, fids, accs, lo, hi = {}, {}, {}, {}, {}
for w in W_SWEEP:
    samples[w] = cached_sample(ckpt.model, ckpt.schedule, len(labels), sampler="ddim", steps=ctx.profile.ddim_steps,
                               labels=labels, w=float(w), x_T=x_T).images
    fids[w] = fid(samples[w], classifier, w=float(w), baseline=(w == W_SWEEP[0]))
    _, lo[w], hi[w] = fid_interval(samples[w], classifier, seed=w)
    accs[w] = class_metrics(classifier, samples[w], labels)["accuracy"]
baseline = fids[W_SWEEP[0]].baseline
for w in W_SWEEP:
    print(f"w={w:>2}: FID {fids[w].value:8.2f} ({lo[w]:.1f}-{hi[w]:.1f})   class accuracy {accs[w]:.3f}   "
          f"(n={fids[w].n})")
print(f"real-vs-real baseline at n={n}: {baseline:.2f}")

fid_curve = np.array([fids[w].value for w in W_SWEEP])
best_w = W_SWEEP[int(fid_curve.argmin())]
ties = [w for w in W_SWEEP if w != best_w and lo[w] < hi[best_w]]  # intervals that overlap the lowest one
best_label = f"lowest FID: w = {best_w}" + (f" (not told apart from w = {', '.join(map(str, ties))})" if ties else
                                             " (interval apart from every other w)")
print(best_label)
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.errorbar(W_SWEEP, fid_curve, yerr=[fid_curve - [lo[w] for w in W_SWEEP], [hi[w] for w in W_SWEEP] - fid_curve],
            fmt="o-", capsize=3, label=f"generated (n = {n} per w, 90% intervals)")
ax.axhline(baseline, color="gray", ls="--", label=f"real vs real (n = {n})")
ax.plot([best_w], [fids[best_w].value], "r*", ms=16, label=best_label)
ax.set(xlabel="guidance scale w", ylabel="FID (MNIST-classifier features)", title="FID is a curve in w, not a point")
plain_log_axis(ax, "y")
ax.grid(alpha=0.3)
ax.legend(fontsize=9)
save_figure(fig, "05_fid_vs_w")
plt.show()
report("05_fid_elbow", n_per_w=n, lowest_fid_w=best_w, fid_real_vs_real_same_n=baseline,
       **{f"fid_w{w}": fids[w].value for w in W_SWEEP}, **{f"accuracy_w{w}": accs[w] for w in W_SWEEP})

# %% [markdown]
# **Why FID falls, then rises.** FID compares the mean and the covariance of the samples'
# features with those of real digits. At w = 0 and 1, many samples are malformed or read as the
# wrong digit: the feature mean is off, and the covariance is inflated by in-between shapes.
# Guidance pulls each sample towards what its class looks like, so both move towards the real
# statistics and FID falls. Past the minimum, guidance keeps pulling: the samples of a class
# crowd around one prototype, thick-stroked and alike, and the covariance shrinks *below* that
# of real handwriting. The trace term of FID counts the missing variety, and FID rises again.
# The curve is a V, and what to report is its minimum, with n, w and the interval.
#
# ## 2. Minimum, elbow, knee
#
# An *elbow* (or knee) is where a curve that keeps improving starts to improve slowly: the point
# farthest from the chord between its ends. `find_elbow` finds it. On a V-shaped curve like FID
# against w the chord method is the wrong tool: the farthest point from the chord is simply the
# bottom of the V, the minimum. The knee belongs on a curve that saturates, such as class
# accuracy against w: it marks the w after which more guidance buys little accuracy.

# %%
knee_w = W_SWEEP[find_elbow(W_SWEEP, [accs[w] for w in W_SWEEP])]
fig, ax = plt.subplots(figsize=(6.5, 3.4))
ax.plot(W_SWEEP, [accs[w] for w in W_SWEEP], "o-", label="class accuracy")
ax.plot([W_SWEEP[0], W_SWEEP[-1]], [accs[W_SWEEP[0]], accs[W_SWEEP[-1]]], ":", color="gray", label="chord")
ax.plot([knee_w], [accs[knee_w]], "r*", ms=16, label=f"knee: w = {knee_w}")
ax.set(xlabel="guidance scale w", ylabel="class accuracy", title=f"Accuracy saturates (n = {n} per w)")
ax.grid(alpha=0.3)
ax.legend()
save_figure(fig, "05_accuracy_knee")
plt.show()
report("05_fid_elbow", accuracy_knee_w=knee_w)

# %% [markdown]
# ## 3. What FID's choice looks like
#
# Samples at the FID minimum and at w = 10, the same eight noises, digit by digit.

# %%
show = torch.cat([torch.nonzero(labels == d)[:1, 0] for d in range(10)])
fig = show_rows({f"w={best_w} (lowest FID)": samples[best_w][show], "w=10": samples[10][show]},
                title="One sample of each digit at the FID minimum and at w = 10 (same x_T per column)")
save_figure(fig, "05_samples_min_and_w10")
plt.show()

# %% [markdown]
# What the shipped model shows here (run on the course's CPU): FID's lowest value is at **w = 1**
# (at this n not told apart from w = 2: see the plot's legend), plain conditional sampling, where
# some samples are read as the wrong digit (1 − the accuracy printed above) and the strokes are thin
# and varied, like real handwriting. At w = 10 every digit
# is right, thick and bold, and FID is several times worse. The eye, in lesson 4, picked **w = 3**:
# it rejects malformed digits at once and barely notices that the samples have become alike.
# FID is the opposite: it forgives a few malformed digits, as long as the feature statistics
# (including their spread) match real handwriting, and it punishes lost variety. Neither is wrong;
# they answer different questions, which is why the page insists on looking at samples and why
# lesson 8 builds a case where FID's preference is plainly the wrong one. The course samples at
# w = 2, the smallest w in this sweep at which the classifier reads at least 98 % of the samples
# as the requested digit.
#
# The sweep's grid is coarse, and the V is narrow. The shipped model was also measured between
# w = 1 and 2 at n = 10,000 before it was shipped (printed below when this run loaded it): the
# bottom of the V lies between the whole numbers, where FID comes closest to real-vs-real while the
# accuracy is about at the 98 % bar. This sweep's n per w gives the accuracy a standard error
# (printed below) too large to place w that finely against that bar; that is why the course keeps
# w = 2, and why a reported FID always names its w.

# %%
print(f"standard error of an accuracy near 98 % at n = {n} per w: {100 * (0.98 * 0.02 / n) ** 0.5:.2f} points")
measured = ckpt.meta.get("metrics", {})  # recorded when the model was shipped; none if trained in this run
for key in sorted(measured, key=lambda k: float(k[1:])):
    r = measured[key]
    print(f"w={key[1:]:>4}: FID {r['fid']:6.2f} ({r['fid'] / r['fid_real_vs_real_same_n']:.1f}x real-vs-real)   "
          f"class accuracy {r['accuracy']:.3f}   (n={r['n']:,}, {r['sampler']})")
if not measured:
    print("this run trained its own model, so there is no finer measurement to show")

# %% [markdown]
# ## 4. FID against the sample count
#
# FID is biased: a finite sample's covariance is noisy, and the noise adds to the distance. The
# real-vs-real baseline (two sets of *real* digits) shows the bias alone: it is nowhere near 0 at
# small n. The generated curve uses the samples at the FID minimum, subsampled; it stops at the
# n this profile draws (the `full` profile goes to 10,000).

# %%
ns_real = [100, 250, 500, 1000, 2000, 5000, 10_000]
ns = [k for k in ns_real if k <= n]
gen = torch.Generator().manual_seed(0)
gen_at_n = {}
for k in ns:
    pick = torch.randperm(n, generator=gen)[:k]
    gen_at_n[k] = fid(samples[best_w][pick], classifier, w=float(best_w), baseline=False).value
real_at_n = {k: real_baseline(classifier, k) for k in ns_real}
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(ns, [gen_at_n[k] for k in ns], "o-", label=f"generated, w = {best_w}")
ax.plot(ns_real, [real_at_n[k] for k in ns_real], "s--", color="gray", label="real vs real")
ax.axvline(5000, color="r", lw=1, ls=":", label="n = 5,000 (below it, compare only at equal n)")
ax.set(xlabel="sample count n", ylabel="FID", title="FID depends on n")
plain_log_axis(ax, "x", ns_real)
plain_log_axis(ax, "y")
ax.grid(alpha=0.3)
ax.legend(fontsize=9)
save_figure(fig, "05_fid_vs_n")
plt.show()
for k in ns_real:
    shown = f"{gen_at_n[k]:8.2f} (w={best_w})" if k in gen_at_n else "       –"
    print(f"n={k:>6}: FID {shown}   real-vs-real {real_at_n[k]:6.2f}")
report("05_fid_elbow", **{f"fid_at_n{k}": gen_at_n[k] for k in ns},
       **{f"real_vs_real_at_n{k}": real_at_n[k] for k in ns_real})

# %% [markdown]
# ## 5. Accuracy against FID
#
# Each point is one w. Left is better FID, up is better accuracy; the curve shows what you trade.

# %%
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot([fids[w].value for w in W_SWEEP], [accs[w] for w in W_SWEEP], "o-")
for i, w in enumerate(W_SWEEP):  # labels alternate below and above the points, which crowd at accuracy 1
    ax.annotate(f"w={w}", (fids[w].value, accs[w]), textcoords="offset points", xytext=(-4, -14 if i % 2 else 7),
                fontsize=9)
ax.set(xlabel=f"FID (n = {n})", ylabel="class accuracy", title="The guidance trade-off", ylim=(0, 1.1))
plain_log_axis(ax, "x")
ax.grid(alpha=0.3)
save_figure(fig, "05_accuracy_vs_fid")
plt.show()

# %% [markdown]
# ## 6. Check the claims on numbers
#
# * FID falls, then rises: the upper end of the interval at the minimum lies below the lower end
#   of the intervals at w = 0 and at w = 10. A single "FID of the model" hides this.
# * FID's favourite is not the reader's: at the FID minimum the classifier misreads clearly more
#   digits than at the course's w (by more than twice the standard error of the difference).
#
# FID's bias at small n (section 4) is a property of the estimator, not a finding about this model:
# the real-vs-real column shows it on real digits alone, so it is printed, not checked.
#
# And the blind spot the numbers cannot show: FID compares feature statistics, so a model can
# match them while drawing ugly strokes. Look at the samples before trusting a curve (lesson 8
# builds such a case on purpose).

# %%
lesson_05({w: (fids[w].value, lo[w], hi[w]) for w in W_SWEEP}, best_w, accuracy=accs, n=n, guided_w=GUIDANCE_W)
