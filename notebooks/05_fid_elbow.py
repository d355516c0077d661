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
# # Lesson 5 · FID against w: find the elbow
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/main/notebooks/05_fid_elbow.ipynb)
#
# FID (Fréchet Inception Distance) fits a Gaussian to the features of real images and one to the
# features of generated images, and measures the distance between the two Gaussians:
#
# $$d^2 = \lVert\mu_r - \mu_g\rVert^2 + \operatorname{Tr}\big(\Sigma_r + \Sigma_g - 2(\Sigma_r\Sigma_g)^{1/2}\big)$$
#
# Inception-v3 knows nothing useful about 28×28 digits, so the course uses the 128-dimensional
# penultimate layer of its own small MNIST classifier instead. The formula and its blind spots
# stay the same. In this lesson, on lesson 4's guided model:
# 1. FID against the guidance scale w, with the elbow found and marked;
# 2. FID against the sample count n: the bias below 5,000;
# 3. the accuracy-against-FID trade-off.
#
# Rules the page insists on, and every number here follows: **report w and n next to every FID**,
# and give the real-vs-real baseline at the same n so the number has a scale.

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
ctx = setup_lesson("05")

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import course_model
from academy_diffusion.metrics import class_metrics, fid, find_elbow, real_baseline
from academy_diffusion.reporting import report, save_figure
from academy_diffusion.samplers import initial_noise, sample

# %% [markdown]
# ## 1. FID against w
#
# For each w: n samples, n/10 of each digit, all from the same starting noise, DDIM-20.

# %%
ckpt = course_model("cfg", ctx.profile, ctx.device)
classifier, clf_meta = load_classifier(ctx.device)
W_SWEEP = [0, 1, 2, 3, 5, 7, 10]
n = ctx.profile.sweep_samples
labels = torch.arange(10).repeat_interleave(n // 10)
x_T = initial_noise(len(labels), seed=2)
samples, fids, accs = {}, {}, {}
for w in W_SWEEP:
    samples[w] = sample(ckpt.model, ckpt.schedule, len(labels), sampler="ddim", steps=ctx.profile.ddim_steps,
                        labels=labels, w=float(w), x_T=x_T).images
    fids[w] = fid(samples[w], classifier, w=float(w), baseline=(w == W_SWEEP[0]), warn=False)
    accs[w] = class_metrics(classifier, samples[w], labels)["accuracy"]
baseline = fids[W_SWEEP[0]].baseline
for w in W_SWEEP:
    print(f"w={w:>2}: FID {fids[w].value:8.2f}   class accuracy {accs[w]:.3f}   (n={fids[w].n})")
print(f"real-vs-real baseline at n={n}: {baseline:.2f}")

fid_curve = np.array([fids[w].value for w in W_SWEEP])
elbow_w = W_SWEEP[find_elbow(W_SWEEP, fid_curve)]
best_w = W_SWEEP[int(fid_curve.argmin())]
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.plot(W_SWEEP, fid_curve, "o-", label=f"generated (n = {n} per w)")
ax.axhline(baseline, color="gray", ls="--", label=f"real vs real (n = {n})")
ax.plot([elbow_w], [fids[elbow_w].value], "r*", ms=16, label=f"elbow: w = {elbow_w}")
ax.set(xlabel="guidance scale w", ylabel="FID (MNIST-classifier features)", yscale="log",
       title="FID is a curve in w, not a point")
ax.grid(alpha=0.3)
ax.legend()
save_figure(fig, "05_fid_vs_w")
plt.show()
report("05_fid_elbow", n_per_w=n, elbow_w=elbow_w, lowest_fid_w=best_w, fid_real_vs_real_same_n=baseline,
       **{f"fid_w{w}": fids[w].value for w in W_SWEEP}, **{f"accuracy_w{w}": accs[w] for w in W_SWEEP})

# %% [markdown]
# **How the elbow is found.** `find_elbow` scales both axes to [0, 1], draws the chord from the
# first point of the curve to the last, and picks the point farthest from it: where the curve
# bends most. On this curve it marks where adding guidance stops improving FID and starts
# costing it: to the left, w buys a lot; to the right, it spends diversity for little.
#
# ## 2. FID against the sample count
#
# FID is biased: a finite sample's covariance is noisy, and the noise adds to the distance. The
# real-vs-real baseline (two sets of *real* digits) shows the bias alone: it is nowhere near 0 at
# small n. Same samples (at the elbow w), subsampled:

# %%
ns = [k for k in (100, 250, 500, 1000, 2000, 5000, 10_000) if k <= n]
gen = torch.Generator().manual_seed(0)
at_n = {}
for k in ns:
    pick = torch.randperm(n, generator=gen)[:k]
    at_n[k] = (fid(samples[elbow_w][pick], classifier, w=float(elbow_w), baseline=False, warn=False).value,
               real_baseline(classifier, k))
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(ns, [at_n[k][0] for k in ns], "o-", label=f"generated, w = {elbow_w}")
ax.plot(ns, [at_n[k][1] for k in ns], "s--", color="gray", label="real vs real")
ax.axvline(5000, color="r", lw=1, ls=":", label="n = 5,000")
ax.set(xscale="log", yscale="log", xlabel="sample count n", ylabel="FID", title="FID depends on n")
ax.grid(alpha=0.3)
ax.legend()
save_figure(fig, "05_fid_vs_n")
plt.show()
for k in ns:
    print(f"n={k:>6}: FID {at_n[k][0]:8.2f} (w={elbow_w})   real-vs-real {at_n[k][1]:6.2f}")
report("05_fid_elbow", **{f"fid_at_n{k}": at_n[k][0] for k in ns}, **{f"real_vs_real_at_n{k}": at_n[k][1] for k in ns})

# %% [markdown]
# ## 3. Accuracy against FID
#
# Each point is one w. Up and to the left is better on both; the curve shows what you trade.

# %%
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot([fids[w].value for w in W_SWEEP], [accs[w] for w in W_SWEEP], "o-")
for w in W_SWEEP:
    ax.annotate(f"w={w}", (fids[w].value, accs[w]), textcoords="offset points", xytext=(5, -10), fontsize=9)
ax.set(xscale="log", xlabel=f"FID (n = {n})", ylabel="class accuracy", title="The guidance trade-off")
ax.grid(alpha=0.3)
save_figure(fig, "05_accuracy_vs_fid")
plt.show()

# %% [markdown]
# ## 4. Check the claims on numbers
#
# * FID is a curve in w: its largest value over the sweep is at least 1.5 times its smallest
#   (a single "FID of the model" would hide that).
# * The elbow is inside the sweep, not at w = 0 or at w = 10.
# * FID is biased at small n: the real-vs-real baseline at the smallest n is more than twice that
#   at the largest n (both sets are real digits: the whole difference is sample-size bias).
#
# And the blind spot the numbers cannot show: FID compares feature statistics, so a model can
# match them while drawing ugly strokes. Look at the samples of lesson 4 before trusting a curve.

# %%
assert fid_curve.max() > 1.5 * fid_curve.min(), fid_curve
assert W_SWEEP[0] < elbow_w < W_SWEEP[-1], elbow_w
assert at_n[ns[0]][1] > 2 * at_n[ns[-1]][1], at_n
