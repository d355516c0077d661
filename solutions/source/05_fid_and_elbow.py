# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 5 · The Fréchet distance and the elbow
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/05_fid_and_elbow.ipynb)
#
# Goes with lesson 5.
#
# 0. `feature_stats(features)`: the Gaussian FID fits to a set of features `[N, D]` (N samples,
#    D feature dimensions): the mean μ over the samples, `[D]`, and the covariance
#    Σ = (F − μ)ᵀ (F − μ) / (N − 1), `[D, D]` (what `np.cov(F, rowvar=False)` computes).
# 1. `frechet_distance(mu1, sigma1, mu2, sigma2)`: the distance between two Gaussians,
#    d² = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½). NumPy arrays: means `[D]`, covariances `[D, D]`.
#    (Σ1 Σ2)^½ is a *matrix* square root: `scipy.linalg.sqrtm`; keep its real part.
# 2. `find_elbow(x, y)`: the index of the point of the curve farthest from the chord that joins
#    its first and last points (x strictly increasing, at least 3 points), measured after scaling
#    x and y to [0, 1] with their own values. Return the *index*, not the x value.
#
# **Elbow or minimum?** An elbow (knee) belongs to a curve that keeps improving ever more slowly,
# such as class accuracy against w: it marks where more guidance stops paying. FID against w is
# not such a curve: it falls, then rises again (a U or a V, see lesson 5), and the w to report is
# its *minimum*. On a U the chord method is the wrong tool: it picks wherever the curve is
# farthest from the line between its ends, which need not be the bottom. The last cell asks for
# both, each on the curve it fits.

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
ctx = setup_lesson("exercise 5")

# %%
import matplotlib.pyplot as plt
import numpy as np
import scipy.linalg
import torch

from academy_diffusion.course import checks
from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import course_model
from academy_diffusion.metrics import extract_features, reference_stats
from academy_diffusion.samplers import sample

# %% tags=["solution"]
def feature_stats(features):
    """(mu [D], sigma [D, D]) of features [N, D]: the mean over samples and the (N - 1) covariance."""
    ### BEGIN SOLUTION
    f = torch.as_tensor(features).double()
    mu = f.mean(dim=0)
    centred = f - mu
    return mu.numpy(), (centred.T @ centred / (len(f) - 1)).numpy()
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_feature_stats(feature_stats)

# %% tags=["solution"]
def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), as a float."""
    ### BEGIN SOLUTION
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(diff @ diff + np.trace(sigma1 + sigma2 - 2 * covmean))
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_frechet_distance(frechet_distance)

# %% tags=["solution"]
def find_elbow(x, y):
    """Index of the point farthest from the chord between the first and last points."""
    ### BEGIN SOLUTION
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    xs, ys = (x - x[0]) / (x[-1] - x[0]), (y - y.min()) / (y.max() - y.min())
    dx, dy = xs[-1] - xs[0], ys[-1] - ys[0]
    return int(np.argmax(np.abs(dy * (xs - xs[0]) - dx * (ys - ys[0]))))
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_find_elbow(find_elbow)

# %% [markdown]
# ## Your FID against w, on lesson 4's model
#
# A small sweep (n = 200 per w, so every value is mostly small-sample bias: compare them with each
# other only). Features come from the course's MNIST classifier; the statistics and the distance
# are yours. Report the w of lowest FID, and the knee of the accuracy curve.

# %% tags=["needs-solution"]
from academy_diffusion.metrics import class_metrics

ckpt = course_model("cfg", ctx.profile, ctx.device)
classifier, _ = load_classifier(ctx.device)
mu_r, sigma_r = reference_stats(classifier)
labels = torch.arange(10).repeat_interleave(20)
ws = [0.0, 1.0, 2.0, 3.0, 5.0, 7.0]
fids, accs = [], []
for w in ws:
    images = sample(ckpt.model, ckpt.schedule, len(labels), sampler="ddim", steps=10, labels=labels, w=w,
                    progress=False).images
    fids.append(frechet_distance(*feature_stats(extract_features(classifier, images)), mu_r, sigma_r))
    accs.append(class_metrics(classifier, images, labels)["accuracy"])
    print(f"w = {w:g}: your FID {fids[-1]:.1f}, accuracy {accs[-1]:.3f} (n = {len(labels)})")
best, knee = int(np.argmin(fids)), find_elbow(ws, accs)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(ws, fids, "o-")
axes[0].plot([ws[best]], [fids[best]], "r*", ms=14)
axes[0].set(xlabel="w", ylabel=f"FID (n = {len(labels)})", title=f"minimum at w = {ws[best]:g}")
axes[1].plot(ws, accs, "o-")
axes[1].plot([ws[knee]], [accs[knee]], "r*", ms=14)
axes[1].set(xlabel="w", ylabel="class accuracy", title=f"knee at w = {ws[knee]:g}")
plt.show()
print(f"lowest FID at w = {ws[best]:g}; accuracy stops paying at w = {ws[knee]:g}")
