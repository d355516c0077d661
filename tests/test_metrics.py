import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from academy_diffusion.classifier import MNISTClassifier, accuracy, train_classifier
from academy_diffusion.data import load_mnist
from academy_diffusion.metrics import (
    FID,
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

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a random 1,000 (MNIST's first 5,000 test digits come from other writers than the last 5,000)
        pick = torch.randperm(10_000, generator=torch.Generator().manual_seed(0))[:1000]
        real = fid(test_x[pick], clf)
        noise = fid(torch.rand(1000, 1, 28, 28) * 2 - 1, clf, w=1.0)
    assert any("n=1000" in str(c.message) for c in caught), "small n must warn"
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
