"""Measuring generated samples: FID in the classifier's feature space, class metrics, elbows,
and a health check for the timestep embedding.

Every FID in the course is reported with its sample count n (and guidance w where there is
one) and next to the real-vs-real baseline at the same n: FID is biased upwards at small n,
so a number without its n and its baseline has no scale.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import scipy.stats
import torch
from torch import nn

from .data import load_mnist

FID_MIN_RELIABLE_N = 5000


class SmallSampleWarning(UserWarning):
    """An FID measured on fewer than ``FID_MIN_RELIABLE_N`` samples (see :func:`warn_if_small`)."""


_warned = {"small_n": False}  # warn_if_small speaks once per process


# --- Frechet distance --------------------------------------------------------------------------

def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between two Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^{1/2})

    Args: means ``[D]`` and covariances ``[D, D]`` (NumPy or torch; computed in float64).

    The trace of the matrix square root is computed without one: with S = sigma1^{1/2}, the
    product sigma1 sigma2 has the same eigenvalues as the symmetric positive semi-definite
    S sigma2 S, so Tr((sigma1 sigma2)^{1/2}) = sum_i sqrt(lambda_i(S sigma2 S)). Symmetric
    eigendecompositions are real by construction, so there is no imaginary part to judge and
    no ridge to add: the result is right at any scale, and for rank-deficient covariances
    (fewer samples than dimensions, dead ReLU units) too.
    """
    mu1, mu2 = np.atleast_1d(_np(mu1)), np.atleast_1d(_np(mu2))
    sigma1, sigma2 = np.atleast_2d(_np(sigma1)), np.atleast_2d(_np(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shapes do not match: mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance (negative round-off eigenvalues set to 0)."""
    vals, vecs = np.linalg.eigh((sigma + sigma.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((sigma1 sigma2)^{1/2}) for covariances ``[D, D]``, through S sigma2 S with S = sigma1^{1/2}."""
    s = _psd_sqrt(sigma1)
    inner = s @ sigma2 @ s
    vals = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(vals, 0, None)).sum())


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` of ``features [N, D]`` (float64)."""
    f = _np(features)
    return f.mean(axis=0), np.cov(f, rowvar=False)


# --- features and FID --------------------------------------------------------------------------

@torch.no_grad()
def extract_features(classifier: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Penultimate-layer features of ``images [N, 1, 28, 28]`` in [-1, 1]: ``[N, 128]`` on the CPU."""
    device = next(classifier.parameters()).device
    classifier.eval()
    return torch.cat([classifier.features(images[i : i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(images), batch_size)])


@dataclass
class FID:
    """An FID together with what it needs to be read: the sample count n, the guidance w, and
    the real-vs-real baseline at the same n (None if not computed)."""

    value: float
    n: int
    w: float | None = None
    baseline: float | None = None

    def __str__(self) -> str:
        s = f"FID {self.value:.2f} (n={self.n}"
        s += f", w={self.w:g}" if self.w is not None else ""
        s += f"; real-vs-real at n={self.n}: {self.baseline:.2f})" if self.baseline is not None else ")"
        return s


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # classifier -> {key: value}


def reference_stats(classifier: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Feature statistics of the whole MNIST test set (10,000 images), cached per classifier."""
    cache = _CACHE.setdefault(classifier, {})
    if "reference" not in cache:
        images, _ = load_mnist("test")
        cache["reference"] = feature_stats(extract_features(classifier, images))
    return cache["reference"]


def real_baseline(classifier: nn.Module, n: int, seed: int = 0) -> float:
    """Real-vs-real FID: ``n`` MNIST *training* images against the test set (cached per n and seed).

    Both sides are real digits, so this is the floor a perfect generator would reach at this n:
    it is not 0, because a finite sample's statistics are noisy (the bias FID has at small n).
    """
    cache = _CACHE.setdefault(classifier, {})
    if ("baseline", n, seed) not in cache:
        stats = feature_stats(extract_features(classifier, baseline_images(n, seed)))
        cache["baseline", n, seed] = frechet_distance(*stats, *reference_stats(classifier))
    return cache["baseline", n, seed]


def baseline_images(n: int, seed: int = 0) -> torch.Tensor:
    """The ``n`` MNIST training digits that :func:`real_baseline` scores, ``[n, 1, 28, 28]`` in [-1, 1] (CPU)."""
    images, _ = load_mnist("train")
    if not 1 <= n <= len(images):
        raise ValueError(f"n must be between 1 and {len(images):,}, got {n}")
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def warn_if_small(n: int) -> None:
    """Warn (:class:`SmallSampleWarning`) the first time in this process that an FID rests on n < 5,000.

    Once, not at every FID: a lesson (one kernel) compares many FIDs at small n, each at equal n and beside
    the real-vs-real baseline, and a warning at every one would bury the output. (Python's own "once"
    filter is not enough: notebooks reset it whenever a library touches the warning filters.)
    """
    if n < FID_MIN_RELIABLE_N and not _warned["small_n"]:
        _warned["small_n"] = True
        warnings.warn(f"an FID on fewer than {FID_MIN_RELIABLE_N:,} samples is mostly small-sample bias: compare it "
                      "only with FIDs (and the real-vs-real baseline) at the same n; this warning is shown once",
                      SmallSampleWarning, stacklevel=3)


def fid(samples: torch.Tensor, classifier: nn.Module, w: float | None = None, baseline: bool = True,
        warn: bool = True) -> FID:
    """FID of ``samples [n, 1, 28, 28]`` (in [-1, 1]) against the MNIST test set, in the classifier's features.

    Returns an :class:`FID` carrying n, w and (with ``baseline=True``) the real-vs-real FID at the
    same n. Warns when n < 5,000: below that FID is dominated by its small-sample bias.
    """
    n = len(samples)
    if n < 2:
        raise ValueError("FID needs at least 2 samples")
    if warn:
        warn_if_small(n)
    value = frechet_distance(*feature_stats(extract_features(classifier, samples)), *reference_stats(classifier))
    return FID(value, n, w, real_baseline(classifier, n) if baseline else None)


def fid_bootstrap(samples: torch.Tensor, classifier: nn.Module, n_boot: int = 50, seed: int = 0) -> np.ndarray:
    """FIDs of ``n_boot`` bootstrap resamples of ``samples`` (drawn with replacement, same n).

    Their spread is the measurement's own noise at this n: two FIDs whose bootstrap intervals
    overlap are not told apart by this sample. Returns ``[n_boot]`` FIDs (the features are
    extracted once; each resample costs one covariance and two small eigendecompositions).
    """
    feats = _np(extract_features(classifier, samples))
    ref = reference_stats(classifier)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        pick = feats[rng.integers(0, len(feats), len(feats))]
        out.append(frechet_distance(pick.mean(0), np.cov(pick, rowvar=False), *ref))
    return np.array(out)


def fid_interval(samples: torch.Tensor, classifier: nn.Module, n_boot: int = 40, level: float = 0.9,
                 seed: int = 0, warn: bool = True) -> tuple[float, float, float]:
    """FID of ``samples`` and an approximate ``level`` interval: ``(value, low, high)``.

    The interval is value ± z · (standard deviation of the bootstrap FIDs), z = 1.645 for 90 %.
    (The bootstrap FIDs themselves sit above the value, since resampling with replacement
    duplicates samples and FID is biased upwards at a fixed n; their spread is the part to use.)
    """
    if warn:
        warn_if_small(len(samples))
    value = fid(samples, classifier, baseline=False, warn=False).value
    spread = float(np.std(fid_bootstrap(samples, classifier, n_boot, seed)))
    z = float(scipy.stats.norm.ppf(0.5 + level / 2))
    return value, value - z * spread, value + z * spread


def fid_difference(a: torch.Tensor, b: torch.Tensor, classifier: nn.Module, n_boot: int = 40, level: float = 0.9,
                   seed: int = 0) -> tuple[float, float, float]:
    """FID(b) − FID(a) for two *paired* sets (``b[i]`` is ``a[i]`` changed: stamped, recoloured, ...), with an
    approximate ``level`` interval ``(value, low, high)`` from a paired bootstrap: each resample draws the
    same indices from both sets, so the noise the two FIDs share (which samples were drawn) cancels and
    the interval measures the change alone. Much narrower than the two sets' own :func:`fid_interval` intervals."""
    if len(a) != len(b):
        raise ValueError(f"fid_difference compares paired sets of one size, got {len(a)} and {len(b)}")
    fa, fb = _np(extract_features(classifier, a)), _np(extract_features(classifier, b))
    ref = reference_stats(classifier)
    dist = lambda f: frechet_distance(*feature_stats(f), *ref)  # noqa: E731
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(fa), len(fa))
        boots.append(dist(fb[pick]) - dist(fa[pick]))
    value = dist(fb) - dist(fa)
    spread = float(np.std(boots)) * float(scipy.stats.norm.ppf(0.5 + level / 2))
    return value, value - spread, value + spread


def compare_fids(samples: dict, classifier: nn.Module, w: float | None = None) -> dict:
    """FID of each named sample set (``{"name": images}``), printed one per line with n, w and the
    real-vs-real baseline at the same n. Returns ``{"name": FID}``."""
    out = {name: fid(images, classifier, w=w, warn=False) for name, images in samples.items()}
    width = max(len(name) for name in out)
    for name, value in out.items():
        print(f"{name:>{width}}: {value}")
    return out


# --- class metrics -----------------------------------------------------------------------------

@torch.no_grad()
def class_probabilities(classifier: nn.Module, images: torch.Tensor, batch_size: int = 2500) -> torch.Tensor:
    """The classifier's probability of each digit for ``images [N, 1, 28, 28]``: ``[N, 10]`` on the CPU."""
    device = next(classifier.parameters()).device
    return torch.cat([classifier(images[i : i + batch_size].to(device)).float().softmax(dim=1).cpu()
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def class_metrics(classifier: nn.Module, samples: torch.Tensor, labels: torch.Tensor | None = None,
                  num_classes: int = 10) -> dict:
    """How well samples carry their class, and how many classes they cover.

    Returns a dict with
      accuracy: fraction whose predicted digit equals the conditioning label (needs ``labels``);
      confidence: mean probability the classifier gives its predicted digit;
      histogram: ``[num_classes]`` fraction of samples predicted as each digit;
      coverage_entropy: entropy of that histogram over log(num_classes): 1 = all digits
        equally often, 0 = a single digit (mode collapse).
    """
    conf, pred = class_probabilities(classifier, samples).max(dim=1)
    hist = torch.bincount(pred, minlength=num_classes).double() / len(pred)
    nz = hist[hist > 0]
    out = {
        "confidence": conf.mean().item(),
        "histogram": hist.tolist(),
        "coverage_entropy": float(-(nz * nz.log()).sum() / np.log(num_classes)),
    }
    if labels is not None:
        out["accuracy"] = (pred == labels.cpu()).double().mean().item()
    return out


@torch.no_grad()
def legible_share(classifier: nn.Module, images: torch.Tensor, threshold: float = 0.9) -> float:
    """The share of ``images [N, 1, 28, 28]`` the classifier reads as *some* digit with probability at least
    ``threshold``: a stand-in for "legible digits in a grid". Not a verdict on its own (a classifier can be
    sure of odd shapes): compare it with the same share on real digits and between samplers."""
    return (class_probabilities(classifier, images).max(dim=1).values >= threshold).double().mean().item()


def within_class_spread(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Diversity inside classes: mean squared distance of each feature ``[N, D]`` to its class mean.

    Averaged over the classes present in ``labels [N]``. Smaller means the samples of a class
    look more alike (the diversity that strong guidance takes away).
    """
    features, labels = features.double().cpu(), labels.cpu()
    spreads = [(features[labels == c] - features[labels == c].mean(0)).pow(2).sum(1).mean()
               for c in labels.unique() if (labels == c).sum() > 1]
    if not spreads:
        raise ValueError("within_class_spread needs at least two samples of some class")
    return torch.stack(spreads).mean().item()


# --- KID: an unbiased alternative to FID -------------------------------------------------------

def kid(fake: torch.Tensor, real) -> float:
    """Kernel Inception Distance (Bińkowski et al., 2018) of ``fake [M, D]`` against ``real [N, D]`` features.

    The squared maximum mean discrepancy with the cubic polynomial kernel k(x, y) = (x·y / D + 1)³,
    estimated without bias (the U-statistic: each set's own pairs exclude i = j):

        KID = mean_{i≠j} k(f_i, f_j) + mean_{i≠j} k(r_i, r_j) − 2 mean_{i,j} k(f_i, r_j).

    Unlike FID, its expected value does not depend on M or N: two sets drawn from one distribution
    score 0 on average at any size (single draws scatter around 0, and can be negative). Reported
    ×1000 by convention. Both sets are first divided by the real features' root-mean-square value, so
    that x·y / D is of order 1 as it is for the Inception features KID was defined on (the course
    classifier's ReLU features are larger, and a cubic kernel would let a few big products dominate).
    ``real`` is the features or a :class:`KIDReference` made from them. Computed in float64 on the CPU.
    """
    ref = real if isinstance(real, KIDReference) else kid_reference(real)
    if len(fake) < 2:
        raise ValueError("KID needs at least 2 points in each set")
    x = fake.cpu().double() / ref.scale
    kxx, kxy = _cubic_kernel(x, x), _cubic_kernel(x, ref.features)
    m = len(x)
    return ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + ref.self_term - 2 * kxy.mean()).item()


def _cubic_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b.T / a.shape[1] + 1) ** 3


@dataclass
class KIDReference:
    """The real side of KID, computed once for many sets: the real features divided by their root-mean-square
    entry ``scale``, and their own kernel term mean_{i≠j} k(r_i, r_j) (:func:`kid_reference`)."""

    features: torch.Tensor
    scale: float
    self_term: float


def kid_reference(real: torch.Tensor) -> KIDReference:
    """Prepare ``real [N, D]`` features for :func:`kid`: pass the result instead of the features to score
    many sets against the same real digits without recomputing the N × N kernel each time."""
    if len(real) < 2:
        raise ValueError("KID needs at least 2 points in each set")
    scale = real.cpu().double().pow(2).mean().sqrt().item()
    y = real.cpu().double() / scale
    kyy = _cubic_kernel(y, y)
    n = len(y)
    return KIDReference(y, scale, ((kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))).item())


def kid_interval(fake: torch.Tensor, real: torch.Tensor, n_boot: int = 40, level: float = 0.9,
                 seed: int = 0) -> tuple[float, float, float]:
    """KID of ``fake`` against ``real`` features with an approximate ``level`` interval ``(value, low, high)``:
    value ± z · the standard deviation of KID over bootstrap resamples of ``fake`` (as :func:`fid_interval`)."""
    real = real if isinstance(real, KIDReference) else kid_reference(real)
    value = kid(fake, real)
    gen = torch.Generator().manual_seed(seed)
    # a resample repeats points, which biases its KID upwards (a repeated pair counts as i ≠ j): as in
    # fid_interval, only the resamples' spread is used, around the unbiased value
    boots = [kid(fake[torch.randint(len(fake), (len(fake),), generator=gen)], real) for _ in range(n_boot)]
    z = float(scipy.stats.norm.ppf(0.5 + level / 2))
    spread = float(np.std(boots))
    return value, value - z * spread, value + z * spread


# --- precision and recall in feature space ---------------------------------------------------------

def _knn_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``feats [N, D]`` to its k-th nearest other row: ``[N]``."""
    d = torch.cdist(feats, feats)
    return d.kthvalue(k + 1, dim=1).values  # the 1st nearest is the point itself (distance 0)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict:
    """Improved precision and recall (Kynkaanniemi et al., 2019) of ``fake`` against ``real`` features.

    Each set's manifold is the union of balls around its points, each ball reaching the point's
    k-th nearest neighbour in the same set.

    * precision: the share of fake samples inside the real manifold (are samples realistic?);
    * recall: the share of real samples inside the fake manifold (is all of the data covered?).

    FID mixes the two failures into one number; these separate "unrealistic samples" from
    "missing modes". Inputs ``[N, D]`` and ``[M, D]``; returns ``{"precision", "recall"}`` in [0, 1].
    """
    real, fake = real.double().cpu(), fake.double().cpu()
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision_recall needs more than k={k} points in each set")
    r_real, r_fake = _knn_radii(real, k), _knn_radii(fake, k)
    d = torch.cdist(fake, real)  # [M, N]
    precision = (d <= r_real[None, :]).any(dim=1).double().mean().item()
    recall = (d.T <= r_fake[None, :]).any(dim=1).double().mean().item()
    return {"precision": precision, "recall": recall}


# --- mode coverage by clustering ----------------------------------------------------------------

def kmeans(features: torch.Tensor, k: int = 10, iters: int = 50, seed: int = 0) -> torch.Tensor:
    """Centres ``[k, D]`` of Lloyd's k-means on ``features [N, D]`` (k-means++ start, seeded)."""
    x = features.double().cpu()
    gen = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=gen)]
    while len(centres) < k:  # k-means++: the next centre far from those chosen
        d2 = torch.cdist(x, centres).min(dim=1).values ** 2
        centres = torch.cat([centres, x[torch.multinomial(d2 / d2.sum(), 1, generator=gen)]])
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(dim=1)
        new = torch.stack([x[assign == c].mean(0) if (assign == c).any() else centres[c] for c in range(k)])
        if torch.allclose(new, centres):
            break
        centres = new
    return centres


def cluster_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 10, min_share: float = 0.2,
                     seed: int = 0, centres: torch.Tensor | None = None) -> dict:
    """Mode coverage: cluster the *real* features ``[N, D]`` with k-means, assign both sets to the clusters.

    Returns ``real_shares`` and ``fake_shares`` (``[k]`` lists) and ``covered``: the number of
    clusters whose share among the samples is at least ``min_share`` times their share among
    real digits. A collapsed generator leaves clusters empty even when its samples look fine.
    ``centres``: the clusters, when already fitted (``kmeans(real, k, seed=seed)``) for several sets.
    """
    centres = kmeans(real, k, seed=seed) if centres is None else centres.cpu().double()
    share = lambda f: torch.bincount(torch.cdist(f.double().cpu(), centres).argmin(1), minlength=k).double() / len(f)
    r, f = share(real), share(fake)
    return {"real_shares": r.tolist(), "fake_shares": f.tolist(), "covered": int((f >= min_share * r).sum())}


# --- elbow -------------------------------------------------------------------------------------

def find_elbow(x, y) -> int:
    """Index of the elbow of the curve ``y(x)``: the point farthest from the chord.

    The chord joins the first and the last point; the elbow is the point with the largest
    perpendicular distance to it (the "Kneedle" idea), measured after scaling both axes to
    [0, 1] (scaling either axis does not change which point is farthest, so the answer does
    not depend on units). It is where the curve bends most: before it, moving along x changes
    y a lot; after it, little. Needs at least 3 points; ``x`` must be strictly increasing.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or len(x) < 3:
        raise ValueError("find_elbow needs x and y of the same length, at least 3 points")
    if np.any(np.diff(x) <= 0):
        raise ValueError("x must be strictly increasing")
    xs = (x - x[0]) / (x[-1] - x[0])
    span = y.max() - y.min()
    ys = (y - y.min()) / span if span > 0 else np.zeros_like(y)
    dx, dy = xs[-1] - xs[0], ys[-1] - ys[0]
    dist = np.abs(dy * (xs - xs[0]) - dx * (ys - ys[0])) / np.hypot(dx, dy)
    return int(np.argmax(dist))


# --- timestep-embedding health -----------------------------------------------------------------

@torch.no_grad()
def timestep_sensitivity(model: nn.Module, x: torch.Tensor, timesteps=(0, 250, 500, 750, 999), y=None) -> float:
    """How much the model's output depends on t, for fixed inputs ``x [B, C, H, W]``.

    Runs the model at each timestep on the same ``x`` and returns the fraction of the output's
    energy that varies with t:  mean_t ||eps(x,t) - mean_t' eps(x,t')||^2 / mean_t ||eps(x,t)||^2.
    A healthy model gives a clearly positive number (it must remove more noise at high t than
    at low t); a dead timestep embedding gives 0 (up to round-off).
    """
    device = next(model.parameters()).device
    x = x.to(device)
    outs = torch.stack([model(x, torch.full((len(x),), int(t), device=device), y).float() for t in timesteps])
    centred = outs - outs.mean(dim=0, keepdim=True)
    return (centred.pow(2).mean() / outs.pow(2).mean().clamp_min(1e-12)).item()
