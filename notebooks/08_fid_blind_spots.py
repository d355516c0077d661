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
# # Lesson 8 · FID is a hint, not a verdict
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/notebooks/08_fid_blind_spots.ipynb)
#
# The page's "evaluation blind spots": FID compares two Gaussians fitted to features, so it
# cannot see what the features do not encode, and it mixes two different failures (unrealistic
# samples, missing modes) into one number. Its characteristic failure is "looks good on FID, ugly
# to humans", which only human evaluation catches. In this lesson, on lesson 4's guided model:
# 1. four cases, measured: one model with and without an artefact; that artefact against lost
#    variety; strong against no extra guidance; real digits against real digits;
# 2. a small human evaluation: you judge pairs, and see how often you agree with FID;
# 3. KID beside FID: a distance whose value does not drift with the sample count;
# 4. mode coverage, by clustering samples in feature space, against real digits' own;
# 5. precision and recall (Kynkäänniemi et al., 2019) next to FID: they separate the failures.
#
# Exercise: `exercises/08_precision_recall.ipynb` (precision and recall in feature space, checked).

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
ctx = setup_lesson("08")

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import cached_sample, course_model
from academy_diffusion.samplers import GUIDANCE_W
from academy_diffusion.data import balanced_labels, load_mnist
from academy_diffusion.metrics import (
    baseline_images,
    class_metrics,
    cluster_coverage,
    extract_features,
    feature_stats,
    fid_difference,
    fid_interval,
    frechet_distance,
    kid,
    kid_interval,
    kid_reference,
    kmeans,
    precision_recall,
    real_baseline,
    reference_stats,
)
from academy_diffusion.plotting import plain_log_axis, show_rows
from academy_diffusion.course.claims import lesson_08, se
from academy_diffusion.course.reporting import report, save_figure
from academy_diffusion.samplers import initial_noise
from academy_diffusion.widgets import PairwiseStudy

# %% [markdown]
# ## 1. Four cases
#
# Sets of the guided model's samples, from the x_T and labels of lessons 4 and 5 (the very sets they
# scored, reused from disk when those lessons ran first), and sets of real digits:
#
# * **w = 1** and **w = 3**: plain conditional sampling, which FID liked best in lesson 5, and the
#   scale the eye picked in lesson 4 (clean, confident digits, less varied than real handwriting);
# * **w = 1, stamped**: the same w = 1 samples, each with a small white square in its top-left
#   corner, the kind of repeated artefact a buggy pipeline leaves (a watermark, a stuck pixel block,
#   a padding error). A person sees it at once;
# * **w = 0** and **w = 10**: no label at all, and strong guidance;
# * **real**: five sets of n real training digits, each drawn at random (what a perfect model
#   scores), and the *first* n training digits, one contiguous block of the file, as a careless
#   evaluation might take them.
#
# Every FID has its 90 % interval. The stamp's effect is measured on the *same* samples with and
# without it, so it gets a paired interval (`fid_difference`: each bootstrap resample draws the same
# samples from both sets, so the noise they share cancels).

# %%
ckpt = course_model("cfg", ctx.profile, ctx.device)
classifier, _ = load_classifier(ctx.device)
n = ctx.profile.sweep_samples
labels = balanced_labels(n)
x_T = initial_noise(len(labels), seed=1)  # the x_T and labels of lessons 4 and 5: the sets they scored
draw = lambda w: cached_sample(ckpt.model, ckpt.schedule, len(labels), sampler="ddim", steps=ctx.profile.ddim_steps,
                               labels=labels, w=float(w), x_T=x_T).images


STAMP = 2  # pixels


def stamp(images, size=STAMP):
    """A white size x size square near the top-left corner of every image."""
    out = images.clone()
    out[..., 1:1 + size, 1:1 + size] = 1.0
    return out

g = f"w={GUIDANCE_W:g}"
sets = {"w=1": draw(1), g: draw(GUIDANCE_W), "w=3": draw(3), "w=0": draw(0), "w=10": draw(10)}
sets["w=1, stamped"] = stamp(sets["w=1"])
fids = {name: fid_interval(x, classifier) for name, x in sets.items()}
stamp_cost = fid_difference(sets["w=1"], sets["w=1, stamped"], classifier)
REAL_SEEDS = range(1, 6)
real_fids = [real_baseline(classifier, n, seed=k) for k in REAL_SEEDS]
block = fid_interval(load_mnist("train")[0][:n], classifier)
for name, (value, lo, hi) in fids.items():
    print(f"{name:>13}: FID {value:6.1f} ({lo:.1f}-{hi:.1f}), n = {n}")
print(f"the stamp's cost on the same samples: {stamp_cost[0]:+.1f} (paired 90 % interval {stamp_cost[1]:+.1f} to "
      f"{stamp_cost[2]:+.1f})")
print(f"{'real':>13}: FID {min(real_fids):.1f} to {max(real_fids):.1f} over {len(real_fids)} random sets of {n} "
      f"training digits; the first {n} training digits: {block[0]:.1f} ({block[1]:.1f}-{block[2]:.1f})")
show = torch.cat([torch.nonzero(labels == d)[:1, 0] for d in range(10)])
fig = show_rows({f"{name}: FID {fids[name][0]:.1f}": sets[name][show] for name in ("w=1", "w=1, stamped", "w=3", "w=10")},
                title=f"One sample of each digit per set (n = {n} each; FID in the classifier's features)")
save_figure(fig, "08_blind_spot")
plt.show()
report("08_fid_blind_spots", n=n, stamp_size=STAMP, **{f"fid_{k}": v[0] for k, v in fids.items()},
       fid_stamp_cost=stamp_cost[0], fid_real_min=min(real_fids), fid_real_max=max(real_fids),
       fid_first_training_digits=block[0])

# %% [markdown]
# Read the four cases off the printout:
#
# 1. **The same model, with and without the artefact** (w = 1 against w = 1, stamped). FID *does*
#    see the stamp: the paired difference is well clear of 0 (the two separate intervals overlap,
#    because each carries the noise of which samples were drawn, which the pairing cancels). A stamp
#    of a few pixels is small next to a digit, but it sits where real digits never have ink, and the
#    classifier's features respond to it.
# 2. **The artefact against lost variety** (w = 1, stamped, against w = 3). FID still ranks the
#    stamped set *better*, by more than its noise. Not because it misses the stamp (case 1), but
#    because it charges lost variety more: the w = 3 set is too uniform (lesson 5's V), and that
#    costs more than a stamp on every image. Which failure matters more is a decision FID makes for
#    you, silently.
# 3. **No artefacts at all** (w = 1 against w = 10): FID prefers w = 1 by far, although several of
#    its samples are misread (lesson 4's accuracy), and w = 10 draws every digit right, bold and
#    alike. For a reader who needs legible digits, FID's ranking is the wrong one.
# 4. **Real against real**: random sets of real digits spread over a few points at this n (the
#    interval of one FID is about as wide), but the first n digits of the training file, real
#    handwriting every one, score worse than every random set, close to the w = 1 model: they come
#    from fewer writers, and FID charges that lost variety exactly as it charges a model's. How a set
#    was drawn moves FID as much as what drew it.
#
# ## 2. You against FID
#
# Click the set that looks more like real handwriting in each pair. At the end the widget counts
# how often you agreed with FID's ranking. In CI a scripted rater clicks, who judges the way a
# careful reader would, with no knowledge of the stamp: first, ink where real handwriting never
# has any (pixels that fewer than 1 in 1,000 real training digits ink) rules a set out; then it
# prefers the set whose digits the classifier reads as the requested ones more often.

# %%
pairs = [("w=1, stamped", sets["w=1, stamped"][show], "w=3", sets["w=3"][show]),
         (g, sets[g][show], "w=10", sets["w=10"][show]),
         ("w=0", sets["w=0"][show], g, sets[g][show])]
fid_values = {name: f[0] for name, f in fids.items()}
display(PairwiseStudy(pairs, fid_values).widget(nrow=10))

train_images = load_mnist("train")[0]
never_inked = (train_images > 0).float().mean(0) < 1e-3  # [1, 28, 28]: pixels real digits (almost) never ink


def stray_ink(images):
    """Share of images with ink (> 0) on a pixel that real handwriting never inks."""
    return ((images > 0) & never_inked).flatten(1).any(1).float().mean().item()


def careful_rater(a, b):
    """Rules out a set with stray ink; otherwise prefers the set read as the requested digit more often."""
    stray = [stray_ink(x) for x in (a, b)]
    if abs(stray[0] - stray[1]) > 0.5:
        return "b" if stray[0] > stray[1] else "a"
    digits = torch.arange(10)
    acc = [class_metrics(classifier, x, digits)["accuracy"] for x in (a, b)]
    return "a" if acc[0] >= acc[1] else "b"

scripted = PairwiseStudy(pairs, fid_values)
agreement = scripted.run(careful_rater)
for i, (name_a, _, name_b, _) in enumerate(pairs):
    print(f"{name_a} vs {name_b}: the rater picks {[name_a, name_b][scripted.choices[i] == 'b']}, FID picks "
          f"{[name_a, name_b][scripted.fid_prefers(i) == 'b']}")
stray = {name: stray_ink(x) for name, x in sets.items()}
print("share of samples with stray ink:", {k: round(v, 3) for k, v in stray.items()},
      f"real digits: {stray_ink(train_images[:n]):.3f}")
report("08_fid_blind_spots", scripted_agreement=agreement, **{f"stray_ink_{k}": v for k, v in stray.items()})

# %% [markdown]
# ## 3. KID: a distance that does not drift with n
#
# FID is biased: at small n it is large even for real digits, and its expected value depends on n
# (lesson 5). Comparing FIDs is only fair at equal n. The *Kernel Inception Distance* (Bińkowski et
# al., 2018) measures the same kind of gap, the squared maximum mean discrepancy between the two
# feature distributions under a cubic polynomial kernel, with an *unbiased* estimator: its average
# over many draws is the same at every n (`metrics.kid`, reported ×1000 as usual, against 2,000
# real test digits). To see the two estimators themselves, we score real training digits, 40 random
# sets at each n, and average: what is left is each estimator's behaviour, not a model's.

# %%
real_feats = extract_features(classifier, load_mnist("test")[0][:2000])
kid_real = kid_reference(real_feats)  # the real side of KID, prepared once for every set scored against it
feats = {name: extract_features(classifier, x) for name, x in sets.items()}
train_feats = extract_features(classifier, baseline_images(n, seed=1))
NS, REPEATS = (100, 250, 500, 1000), 40
pool = baseline_images(max(NS) * 2, seed=7)
pool_feats = extract_features(classifier, pool)
gen = torch.Generator().manual_seed(0)
by_n = {}
for k in NS:
    draws = [torch.randperm(len(pool), generator=gen)[:k] for _ in range(REPEATS)]
    f = np.array([frechet_distance(*feature_stats(pool_feats[d]), *reference_stats(classifier)) for d in draws])
    kd = np.array([kid(pool_feats[d], kid_real) for d in draws])
    by_n[k] = {"fid": (f.mean(), f.std(ddof=1) / REPEATS ** 0.5), "kid": (kd.mean(), kd.std(ddof=1) / REPEATS ** 0.5)}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, metric, scale, title in ((axes[0], "fid", 1, "FID drifts with n"), (axes[1], "kid", 1000, "KID does not")):
    v = np.array([by_n[k][metric] for k in NS]) * scale
    ax.errorbar(NS, v[:, 0], yerr=2 * v[:, 1], fmt="o-", capsize=3, label=f"real digits, mean of {REPEATS} sets ±2 SE")
    ax.set(xlabel="sample count n", ylabel=f"{metric.upper()}{' × 1000' if scale > 1 else ''}", title=title)
    plain_log_axis(ax, "x", NS)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
axes[1].set_ylim(bottom=0)
save_figure(fig, "08_kid_vs_fid")
plt.show()
for k in NS:
    (f, f_se), (kd, kd_se) = by_n[k]["fid"], by_n[k]["kid"]
    print(f"real digits, n = {k:>4}: FID {f:6.2f} ± {f_se:.2f}, KID×1000 {1000 * kd:6.2f} ± {1000 * kd_se:.2f} "
          f"(mean ± SE over {REPEATS} sets)")
kid_sets = {name: kid_interval(feats[name], kid_real) for name in ("w=1", "w=1, stamped", g, "w=3", "w=10")}
for name, (v, lo, hi) in kid_sets.items():
    print(f"{name:>13}: KID×1000 {1000 * v:6.2f} ({1000 * lo:.2f}-{1000 * hi:.2f}), FID {fids[name][0]:.1f}, n = {n}")
report("08_fid_blind_spots", **{f"{m}_real_mean_n{k}": by_n[k][m][0] for k in NS for m in ("fid", "kid")},
       **{f"kid_{name}": v[0] for name, v in kid_sets.items()})

# %% [markdown]
# FID's average falls several-fold from n = 100 to 1,000 on real digits alone: part of every FID at
# small n is the bias, which is why the course always prints the real-vs-real baseline at the same n.
# KID's average stays put within its standard errors. It is not 0 here, because training and test
# digits come from different writers, and KID measures that real difference without adding a bias
# of its own; so KIDs at different n can be compared, and what n buys is a narrower interval. The
# price shows in the per-set lines: at n = 500 a single KID's interval is wide, often wider relative
# to its value than FID's. KID is the better tool for *comparing* sets of different sizes, not a way
# around sampling enough.
#
# ## 4. Mode coverage: cluster the samples
#
# Balanced labels guarantee that every *digit* is drawn, so the page's "check mode coverage by
# clustering samples in feature space" has to look finer: we cluster 2,000 real test digits into
# k = 40 groups in the classifier's feature space (styles within digits: slanted 1s, open and
# closed 4s, ...) and count the groups that receive at least a fifth of their real share of
# samples. The baseline: the same count for the five random sets of real training digits, which
# also shows how much the count moves by chance at this n.

# %%
centres = kmeans(real_feats, 40)  # the 40 clusters, fitted once for every set
coverage = {name: cluster_coverage(real_feats, f, k=40, centres=centres) for name, f in feats.items()}
real_covered = [cluster_coverage(real_feats, extract_features(classifier, baseline_images(n, seed=k)), k=40,
                                 centres=centres)["covered"] for k in REAL_SEEDS]
fig, ax = plt.subplots(figsize=(9, 3.2))
order_c = np.argsort(coverage["w=0"]["real_shares"])[::-1]
ax.plot(np.array(coverage["w=0"]["real_shares"])[order_c], "k--", label="real test digits (the clusters' own)")
for name in (g, "w=10"):
    ax.plot(np.array(coverage[name]["fake_shares"])[order_c], "o-", ms=3,
            label=f"{name}: {coverage[name]['covered']} of 40 clusters covered")
ax.set(xlabel="cluster of real digits (most common first)", ylabel="share of the set",
       title=f"Mode coverage in feature space (k-means, k = 40; n = {n} per set; real sets cover "
             f"{min(real_covered)}-{max(real_covered)})")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
save_figure(fig, "08_cluster_coverage")
plt.show()
for name, c in coverage.items():
    print(f"{name:>13}: {c['covered']} of 40 clusters covered")
print(f"{'real':>13}: {min(real_covered)} to {max(real_covered)} over {len(real_covered)} random sets of {n}")
report("08_fid_blind_spots", **{f"clusters_covered_{k}": v["covered"] for k, v in coverage.items()},
       clusters_covered_real_min=min(real_covered), clusters_covered_real_max=max(real_covered))

# %% [markdown]
# ## 5. Precision and recall next to FID
#
# *Precision* is the share of samples that fall inside the real data's manifold in feature space
# (the union of balls around real digits, each reaching its 3rd-nearest real neighbour): are the
# samples realistic? *Recall* is the share of real digits inside the samples' manifold: is all of
# the data covered? FID mixes both into one number. Each comes with a 90 % interval (binomial: a
# share of n samples, or of the 2n real digits) and a real-data baseline: a set of real training
# digits scored the same way.

# %%
pr = {name: precision_recall(real_feats[:n * 2], f) for name, f in feats.items()}
pr["real (train digits)"] = precision_recall(real_feats[:n * 2], train_feats)
z = 1.645
band = lambda p, m: (p - z * se(p, m), p + z * se(p, m))  # noqa: E731
pr_int = {name: {"precision": band(v["precision"], n), "recall": band(v["recall"], 2 * n)} for name, v in pr.items()}
print(f"{'set':>20}  precision (90 %)       recall (90 %)      (n={n}; recall over {2 * n} real digits)")
for name, v in pr.items():
    (p_lo, p_hi), (r_lo, r_hi) = pr_int[name]["precision"], pr_int[name]["recall"]
    print(f"{name:>20}  {v['precision']:.3f} ({p_lo:.3f}-{p_hi:.3f})  {v['recall']:.3f} ({r_lo:.3f}-{r_hi:.3f})")
fig, ax = plt.subplots(figsize=(6, 4.2))
for name, v in pr.items():
    (p_lo, p_hi), (r_lo, r_hi) = pr_int[name]["precision"], pr_int[name]["recall"]
    ax.errorbar(v["recall"], v["precision"], xerr=[[v["recall"] - r_lo], [r_hi - v["recall"]]],
                yerr=[[v["precision"] - p_lo], [p_hi - v["precision"]]], fmt="o", capsize=2, label=name)
ax.set(xlim=(0, 1.05), ylim=(0, 1.05), xlabel="recall (data covered)", ylabel="precision (samples realistic)",
       title="Two failures, two axes (90 % intervals)")
ax.grid(alpha=0.3)
ax.legend(fontsize=7, loc="lower left")
save_figure(fig, "08_precision_recall")
plt.show()
report("08_fid_blind_spots", **{f"precision_{k}": v["precision"] for k, v in pr.items()},
       **{f"recall_{k}": v["recall"] for k, v in pr.items()})

# %% [markdown]
# Read the table by rows, against the real digits' row. Strong guidance (w = 10) loses some
# precision (its bold strokes are not quite real handwriting), but its recall collapses far more:
# whole regions of real handwriting are never produced.
# No guidance (w = 0) covers the data and loses precision: many implausible samples. The stamp
# costs precision (case 1 again: the features see it). FID ranks w = 0 and w = 10 far behind the
# course's w, but only the two axes say *why*.
#
# ## 6. Check the claims on numbers
#
# * FID sees the artefact: stamping the w = 1 set raises its FID, the paired interval clear of 0.
# * Yet FID prefers the stamped set to the clean w = 3 set (intervals apart), and it is variety
#   that it rewards: the stamped set's recall is above the w = 3 set's (intervals apart).
# * The careful rater, who never heard of the stamp, rejects the stamped set: it disagrees with FID
#   on that pair.
# * Real against real: the first n training digits score a higher FID than every random set of n
#   real digits.
# * KID does not drift where FID does: on real digits, FID's average at n = 100 is more than ten
#   standard errors above its average at n = 1,000, while KID's two averages agree within three.
# * Strong guidance loses modes: at w = 10 fewer clusters are covered than by any of the real sets.
# * Precision and recall separate the failures: w = 10's recall and w = 0's precision are below the
#   course's w's, intervals apart.

# %%
lesson_08(fids=fids, stamp_cost=stamp_cost, real_fids=real_fids, block=block, pr=pr_int,
          rater_agrees=scripted.choices[0] == scripted.fid_prefers(0), kid_by_n=by_n, coverage={k: v["covered"] for k, v in coverage.items()}, real_covered=real_covered,
          guided=g)

# %% [markdown]
# **Takeaways.** FID is a hint: a useful, cheap summary that goes with n, w and an interval, that
# weighs failures in its own way (here: lost variety over a visible artefact), and that moves by
# several points between equally real sets at small n. Look at the samples; ask people when it
# matters; use KID to compare sets of different sizes; and split the one number into precision
# (realism) and recall (coverage) when you need to know *what* went wrong.
