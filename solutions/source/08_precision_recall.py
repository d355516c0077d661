# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 8 · Precision and recall in feature space
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/08_precision_recall.ipynb)
#
# Goes with lesson 8. FID mixes two failures into one number; Kynkäänniemi et al. (2019) split them:
#
# * each set's *manifold* is the union of balls around its points, each ball reaching the point's
#   k-th nearest neighbour **in the same set** (the point itself, at distance 0, does not count);
# * **precision**: the share of fake points inside the real manifold (are the samples realistic?);
# * **recall**: the share of real points inside the fake manifold (is all of the data covered?).
#
# Write `precision_recall(real, fake, k)` for features `real` `[N, D]` and `fake` `[M, D]`; return the
# pair `(precision, recall)` as floats. `torch.cdist(a, b)` gives all pairwise distances `[len(a), len(b)]`,
# and `d.kthvalue(j, dim=1)` the j-th smallest in each row.

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
ctx = setup_lesson("exercise 8")

# %%
import torch

from academy_diffusion.course import checks
from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import course_model
from academy_diffusion.data import load_mnist
from academy_diffusion.metrics import extract_features
from academy_diffusion.samplers import sample

# %% tags=["solution"]
def precision_recall(real, fake, k=3):
    """(precision, recall) of fake [M, D] against real [N, D] features, k-NN radii within each set."""
    ### BEGIN SOLUTION
    r_real = torch.cdist(real, real).kthvalue(k + 1, dim=1).values
    r_fake = torch.cdist(fake, fake).kthvalue(k + 1, dim=1).values
    d = torch.cdist(fake, real)
    precision = (d <= r_real[None, :]).any(dim=1).float().mean().item()
    recall = (d.T <= r_fake[None, :]).any(dim=1).float().mean().item()
    return precision, recall
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_precision_recall(precision_recall)

# %% [markdown]
# ## Your metric on guided samples
#
# 300 samples of lesson 4's model at w = 1 and at w = 10, against 600 real test digits, in the
# classifier's features. Strong guidance should keep precision and lose recall.

# %% tags=["needs-solution"]
ckpt = course_model("cfg", ctx.profile, ctx.device)
classifier, _ = load_classifier(ctx.device, verbose=False)
real = extract_features(classifier, load_mnist("test")[0][:600])
labels = torch.arange(10).repeat_interleave(30)
for w in (1.0, 10.0):
    images = sample(ckpt.model, ckpt.schedule, len(labels), sampler="ddim", steps=20, labels=labels, w=w,
                    progress=False).images
    p, r = precision_recall(real, extract_features(classifier, images))
    print(f"w = {w:g}: precision {p:.3f}, recall {r:.3f} (n = {len(labels)})")
