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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/main/exercises/05_fid_and_elbow.ipynb)
#
# Goes with lesson 5.
#
# 1. `frechet_distance(mu1, sigma1, mu2, sigma2)`: the distance between two Gaussians,
#    d² = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½). NumPy arrays: means `[D]`, covariances `[D, D]`.
#    (Σ1 Σ2)^½ is a *matrix* square root: `scipy.linalg.sqrtm`; keep its real part.
# 2. `find_elbow(x, y)`: the index of the point of the curve farthest from the chord that joins
#    its first and last points (x strictly increasing, at least 3 points).

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
ctx = setup_lesson("exercise 5")

# %%
import matplotlib.pyplot as plt
import numpy as np
import scipy.linalg
import torch

from academy_diffusion import checks
from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import course_model
from academy_diffusion.metrics import extract_features, feature_stats, reference_stats
from academy_diffusion.samplers import sample

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
    dx, dy = x[-1] - x[0], y[-1] - y[0]
    return int(np.argmax(np.abs(dy * (x - x[0]) - dx * (y - y[0]))))
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_find_elbow(find_elbow)

# %% [markdown]
# ## Your FID against w, on lesson 4's model
#
# A small sweep (n = 200 per w, so every value is mostly small-sample bias: compare them with each
# other only). Features come from the course's MNIST classifier; the distance is yours.

# %% tags=["needs-solution"]
ckpt = course_model("cfg", ctx.profile, ctx.device)
classifier, _ = load_classifier(ctx.device)
mu_r, sigma_r = reference_stats(classifier)
labels = torch.arange(10).repeat_interleave(20)
ws = [0.0, 1.0, 3.0, 7.0]
fids = []
for w in ws:
    images = sample(ckpt.model, ckpt.schedule, len(labels), sampler="ddim", steps=10, labels=labels, w=w,
                    progress=False).images
    fids.append(frechet_distance(*feature_stats(extract_features(classifier, images)), mu_r, sigma_r))
    print(f"w = {w:g}: your FID {fids[-1]:.1f} (n = {len(labels)})")
elbow = find_elbow(ws, fids)
plt.plot(ws, fids, "o-")
plt.plot([ws[elbow]], [fids[elbow]], "r*", ms=14)
plt.xlabel("w")
plt.ylabel(f"FID (n = {len(labels)})")
plt.show()
print(f"elbow at w = {ws[elbow]:g}")
