import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from academy_diffusion.classifier import MNISTClassifier, accuracy, train_classifier
from academy_diffusion.data import load_mnist
from academy_diffusion.metrics import (
    FID,
    SmallSampleWarning,
    class_metrics,
    extract_features,
    feature_stats,
    fid,
    find_elbow,
    frechet_distance,
    timestep_sensitivity,
)
from academy_diffusion.models import UNet


def _reference_fd(mu1, s1, mu2, s2):
    """The textbook formula, written independently with scipy.linalg.sqrtm."""
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))


def _random_psd(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d


@pytest.mark.parametrize("d", [1, 5, 64])
def test_frechet_distance_matches_reference(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_psd(rng, d), _random_psd(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_reference_fd(mu1, s1, mu2, s2), rel=1e-6, abs=1e-8)


def test_frechet_distance_identities():
    rng = np.random.default_rng(0)
    d = 32
    mu, s1, s2 = rng.standard_normal(d), _random_psd(rng, d), _random_psd(rng, d)
    assert abs(frechet_distance(mu, s1, mu, s1)) < 1e-6, "a distribution against itself"
    assert frechet_distance(mu, s1, mu + 1, s2) == pytest.approx(frechet_distance(mu + 1, s2, mu, s1), rel=1e-6)
    shift = rng.standard_normal(d)
    base = frechet_distance(mu, s1, mu, s2)
    assert frechet_distance(mu, s1, mu + shift, s2) == pytest.approx(base + shift @ shift, rel=1e-6)
    # torch inputs work as well
    assert frechet_distance(torch.tensor(mu), torch.tensor(s1), torch.tensor(mu), torch.tensor(s1)) < 1e-6


def test_frechet_distance_singular_covariances():
    """Rank-deficient covariances (fewer samples than dimensions) still give a finite, real answer."""
    rng = np.random.default_rng(1)
    d = 40
    s1, s2 = _random_psd(rng, d, rank=5), _random_psd(rng, d, rank=5)
    value = frechet_distance(np.zeros(d), s1, np.ones(d), s2)
    assert np.isfinite(value) and value > d - 1e-6  # at least the squared mean shift
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_feature_stats():
    f = torch.randn(500, 3, dtype=torch.float64)
    mu, sigma = feature_stats(f)
    np.testing.assert_allclose(mu, f.mean(0).numpy())
    np.testing.assert_allclose(sigma, np.cov(f.numpy(), rowvar=False))


@pytest.mark.parametrize("kink", [2, 5, 8])
def test_find_elbow_on_piecewise_linear(kink):
    x = np.arange(12)
    y = np.where(x <= kink, 10 - 3 * x, 10 - 3 * kink - 0.1 * (x - kink))
    assert find_elbow(x, y) == kink
    assert find_elbow(x, -y) == kink, "the elbow does not depend on the curve's direction"
    assert find_elbow(x, 5 + 2 * y) == kink, "nor on its scale"


def test_find_elbow_on_saturating_curves():
    w = np.array([0, 1, 2, 3, 5, 7, 10])
    acc = np.array([0.10, 0.90, 0.97, 0.985, 0.99, 0.992, 0.993])
    assert w[find_elbow(w, acc)] == 1
    x = np.linspace(0, 10, 101)
    assert abs(x[find_elbow(x, 1 - np.exp(-x))] - 2.0) < 0.7  # the bend of 1 - e^-x on [0, 10]
    with pytest.raises(ValueError):
        find_elbow([0, 1], [1, 2])
    with pytest.raises(ValueError):
        find_elbow([0, 2, 1], [1, 2, 3])


def test_timestep_sensitivity_reads_zero_for_a_dead_embedding():
    torch.manual_seed(0)
    healthy = UNet(channels=(8, 16, 16), emb_dim=32).eval()
    torch.manual_seed(0)
    dead = UNet(channels=(8, 16, 16), emb_dim=32, dead_time_embedding=True).eval()
    x = torch.randn(8, 1, 28, 28)
    assert timestep_sensitivity(dead, x) < 1e-10
    assert timestep_sensitivity(healthy, x) > 1e-4


def test_class_metrics_with_a_fixed_classifier():
    class Oracle(torch.nn.Module):  # predicts the digit written in the top-left pixel
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 10).float() * 20

    samples = torch.zeros(100, 1, 28, 28)
    samples[:, 0, 0, 0] = torch.arange(100) % 10
    labels = torch.arange(100) % 10
    labels[:20] = (labels[:20] + 1) % 10  # 20 wrong
    m = class_metrics(Oracle(), samples, labels)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["coverage_entropy"] == pytest.approx(1.0)
    assert m["confidence"] > 0.99
    collapsed = torch.zeros(50, 1, 28, 28)
    m = class_metrics(Oracle(), collapsed)
    assert m["coverage_entropy"] == pytest.approx(0.0) and m["histogram"][0] == 1.0 and "accuracy" not in m


def test_fid_result_formatting():
    s = str(FID(12.345, 1000, w=3.0, baseline=1.5))
    assert "n=1000" in s and "w=3" in s and "1.50" in s


@pytest.mark.slow
def test_classifier_training_and_fid_on_real_data(needs_mnist):
    """A real classifier trained on 6,000 digits for one epoch on the CPU.

    A LeNet-sized CNN reaches about 94% on the test set after one epoch of 6,000 images (the
    cached course classifier, on all 60,000, gets over 99%); 90% leaves room for seeds and
    machines while still failing anything broken.
    """
    images, labels = load_mnist("train", subset=6000)
    test_x, test_y = load_mnist("test")
    clf = train_classifier(images, labels, epochs=1, progress=False)
    acc = accuracy(clf, test_x[:5000], test_y[:5000])
    assert acc > 0.90, f"accuracy {acc:.3f}"
    feats = extract_features(clf, test_x[:100])
    assert feats.shape == (100, 128)

    import academy_diffusion.metrics as metrics_module

    metrics_module._warned["small_n"] = False  # whatever ran before in this process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a random 1,000 (MNIST's first 5,000 test digits come from other writers than the last 5,000)
        pick = torch.randperm(10_000, generator=torch.Generator().manual_seed(0))[:1000]
        real = fid(test_x[pick], clf)
        noise = fid(torch.rand(1000, 1, 28, 28) * 2 - 1, clf, w=1.0)
    assert any(issubclass(c.category, SmallSampleWarning) for c in caught), "small n must warn"
    assert real.n == 1000 and noise.w == 1.0
    assert real.value < real.baseline * 1.5 + 1.0
    assert noise.value > 10 * real.baseline, "uniform noise is nothing like digits"
    m = class_metrics(clf, test_x[:1000], test_y[:1000])
    assert m["accuracy"] > 0.9 and m["coverage_entropy"] > 0.95


def test_classifier_shapes():
    clf = MNISTClassifier().eval()
    x = torch.randn(4, 1, 28, 28)
    assert clf(x).shape == (4, 10) and clf.features(x).shape == (4, 128)


@pytest.mark.slow
def test_course_classifier_clears_99_percent(needs_mnist):
    """The cached course classifier (3 epochs on all 60,000 digits) must clear 99% on the test set."""
    from academy_diffusion.classifier import load_classifier

    clf, meta = load_classifier(verbose=False)
    assert meta["test_accuracy"] >= 0.99, meta
    test_x, test_y = load_mnist("test")
    assert accuracy(clf, test_x, test_y) == pytest.approx(meta["test_accuracy"], abs=1e-9)
    again, meta_again = load_classifier(verbose=False)  # second call: from the cache, same weights
    assert meta_again == meta


# --- KID -------------------------------------------------------------------------------------------

def _kid_by_loops(x, y):
    """The unbiased MMD² with the cubic polynomial kernel, written out pair by pair, on features divided by
    the real set's root-mean-square entry."""
    scale = float((y ** 2).mean()) ** 0.5
    x, y = x / scale, y / scale
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_the_pairwise_formula():
    from academy_diffusion.metrics import kid

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 5, generator=gen), torch.randn(9, 5, generator=gen) + 0.3
    assert kid(x, y) == pytest.approx(_kid_by_loops(x.double(), y.double()), rel=1e-10)
    from academy_diffusion.metrics import kid_reference

    assert kid(x, kid_reference(y)) == pytest.approx(kid(x, y), rel=1e-12)  # the real side, prepared once
    with pytest.raises(ValueError, match="at least 2"):
        kid(x[:1], y)


def test_kid_is_unbiased_where_fid_is_not():
    """Pairs of sets from one distribution: KID averages 0 at any size (its mean over 200 pairs lies within
    3 standard errors of 0 at n = 20 and n = 200), and it separates shifted distributions; the Fréchet
    distance of the same pairs is positive and shrinks with n (its bias)."""
    from academy_diffusion.metrics import kid

    rng = torch.Generator().manual_seed(1)
    for n in (20, 200):
        kids = torch.tensor([kid(torch.randn(n, 8, generator=rng), torch.randn(n, 8, generator=rng))
                             for _ in range(200)])
        assert abs(kids.mean()) < 3 * kids.std() / 200 ** 0.5, (n, kids.mean(), kids.std())
    shifted = kid(torch.randn(200, 8, generator=rng) + 0.5, torch.randn(200, 8, generator=rng))
    assert shifted > 10 * kids.std()
    fds = {n: np.mean([frechet_distance(*feature_stats(torch.randn(n, 8, generator=rng)),
                                        *feature_stats(torch.randn(n, 8, generator=rng))) for _ in range(50)])
           for n in (20, 200)}
    assert fds[20] > 3 * fds[200] > 0


def test_kid_interval_brackets_the_value_and_narrows_with_n():
    from academy_diffusion.metrics import kid_interval

    rng = torch.Generator().manual_seed(2)
    real = torch.randn(400, 8, generator=rng)
    widths = []
    for n in (50, 400):
        value, lo, hi = kid_interval(torch.randn(n, 8, generator=rng) + 0.2, real, n_boot=30)
        assert lo < value < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0]


def test_the_small_n_warning_shows_once_per_process(needs_mnist, monkeypatch):
    """Three FIDs at small n (two sizes, through fid and fid_interval) warn once, pointing at the caller, even
    when the warning filters are reset in between (as notebooks do); n >= 5,000 never warns."""
    from academy_diffusion import metrics

    monkeypatch.setitem(metrics._warned, "small_n", False)
    clf = MNISTClassifier().eval()
    images = torch.rand(30, 1, 28, 28) * 2 - 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fid(images, clf, baseline=False)
        warnings.resetwarnings()
        warnings.simplefilter("always")
        metrics.fid_interval(images[:20], clf, n_boot=3)
        fid(images, clf, baseline=False)
    small = [w for w in caught if issubclass(w.category, SmallSampleWarning)]
    assert len(small) == 1 and "5,000" in str(small[0].message)
    assert small[0].filename == __file__  # it points at the caller, not at the package
    monkeypatch.setitem(metrics._warned, "small_n", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics.warn_if_small(5000)
        fid(images, clf, baseline=False, warn=False)
    assert not caught and not metrics._warned["small_n"]


def test_fid_difference_of_paired_sets(needs_mnist):
    """The paired difference equals the difference of the two FIDs, and its interval is narrower than
    either set's own interval (the shared sampling noise cancels); a change that moves nothing gives 0."""
    from academy_diffusion.metrics import fid_difference, fid_interval

    clf = MNISTClassifier().eval()
    x, _ = load_mnist("test", subset=300)
    y = x.clone()
    y[..., 1:4, 1:4] = 1.0
    value, lo, hi = fid_difference(x, y, clf, n_boot=20)
    f_x = fid(x, clf, baseline=False, warn=False).value
    f_y = fid(y, clf, baseline=False, warn=False).value
    assert value == pytest.approx(f_y - f_x, rel=1e-6)
    assert lo < value < hi
    _, lo_x, hi_x = fid_interval(x, clf, n_boot=20, warn=False)
    assert hi - lo < hi_x - lo_x
    assert fid_difference(x, x.clone(), clf, n_boot=5) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="paired"):
        fid_difference(x, y[:10], clf)


def test_legible_share_counts_confident_readings():
    """A stand-in classifier that is sure (p ≈ 1) of bright images and undecided (p = 0.1) about dark ones:
    the legible share is the share of bright images, whatever the threshold between 0.1 and 1."""
    from academy_diffusion.metrics import legible_share

    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(50.0))

        def forward(self, x):
            bright = (x.flatten(1).mean(1) > 0).float()
            return torch.nn.functional.pad((self.scale * bright)[:, None], (0, 9))

    images = torch.cat([torch.ones(3, 1, 28, 28), -torch.ones(7, 1, 28, 28)])
    assert legible_share(StandIn(), images) == pytest.approx(0.3)
    assert legible_share(StandIn(), images, threshold=0.05) == pytest.approx(1.0)
