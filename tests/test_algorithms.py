"""The code that puts the building blocks together, checked with stand-in models and closed forms:
train() (loss target, timesteps, learning rate, EMA warm-up, label dropout), sample() (variance,
eta, guidance), the timestep embedding's frequencies, and the metrics' plumbing."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from academy_diffusion import metrics, training
from academy_diffusion.models import sinusoidal_embedding
from academy_diffusion.samplers import initial_noise, sample
from academy_diffusion.schedules import make_schedule
from academy_diffusion.training import train


class Recorder(nn.Module):
    """A stand-in noise predictor: ``scale * x_t`` (scale starts at 0.3), recording every call."""

    def __init__(self, num_classes=None):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.3))
        self.num_classes = num_classes
        self.calls = []

    @property
    def null_class(self):
        return self.num_classes

    def forward(self, x, t, y=None):
        self.calls.append((x.detach().clone(), t.clone(), None if y is None else y.clone()))
        return self.scale * x


def _constant_images(value=0.5, n=64):
    return torch.full((n, 1, 28, 28), value)


# --- train() --------------------------------------------------------------------------------------

def test_the_loss_target_is_the_noise():
    """With x0 known (every image the same), eps follows from each recorded x_t and t; the recorded loss
    must be the MSE against that eps (an x0 target, or any other, gives another number)."""
    schedule = make_schedule("linear", 1000)
    model = Recorder()
    result = train(model, _constant_images(), schedule, steps=3, batch_size=16, warmup_steps=1, progress=False)
    x_t, t, _ = model.calls[0]  # the first step, when the output was still 0.3 * x_t
    a = schedule.alpha_bars[t].view(-1, 1, 1, 1)
    eps = (x_t - a.sqrt() * 0.5) / (1 - a).sqrt()
    expected = ((0.3 * x_t - eps) ** 2).mean().item()
    assert result.losses[0].item() == pytest.approx(expected, rel=1e-5)
    x0_target = ((0.3 * x_t - 0.5) ** 2).mean().item()
    assert abs(expected - x0_target) > 0.05, "the test must tell a noise target from an x0 target"


def test_timesteps_cover_0_to_T_minus_1_uniformly():
    schedule = make_schedule("linear", 50)
    model = Recorder()
    train(model, _constant_images(), schedule, steps=200, batch_size=16, progress=False)
    t = torch.cat([c[1] for c in model.calls])
    assert t.min().item() == 0 and t.max().item() == 49, "code indices run 0..T-1"
    counts = torch.bincount(t, minlength=50).float()
    assert counts.std() / counts.mean() < 0.25, "uniform over the timesteps"


def test_learning_rate_warms_up_then_decays_along_a_cosine(monkeypatch):
    """lr factor: (k+1)/warmup for k < warmup, then 0.1 + 0.45 (1 + cos(pi (k - warmup) / (total - warmup)))."""
    seen = []

    class RecordingAdamW(torch.optim.AdamW):
        def step(self, *args, **kwargs):
            seen.append(self.param_groups[0]["lr"])
            return super().step(*args, **kwargs)

    monkeypatch.setattr(training.torch.optim, "AdamW", RecordingAdamW)
    train(Recorder(), _constant_images(), make_schedule("linear", 100), steps=12, batch_size=16, lr=1.0,
          warmup_steps=4, progress=False)
    expected = {0: 0.25, 1: 0.5, 2: 0.75, 3: 1.0, 4: 1.0, 8: 0.55, 11: 0.1 + 0.45 * (1 + math.cos(7 * math.pi / 8))}
    for step, lr in expected.items():
        assert seen[step] == pytest.approx(lr, rel=1e-9), (step, seen)


def test_ema_decay_warms_up(monkeypatch):
    """decay_k = min(ema_decay, (1 + k) / (10 + k)): the average follows the raw weights closely at first."""
    decays = []
    real = training.ema_update
    monkeypatch.setattr(training, "ema_update", lambda ema, model, decay: (decays.append(decay), real(ema, model,
                                                                                                        decay)))
    train(Recorder(), _constant_images(), make_schedule("linear", 100), steps=100, batch_size=16, ema_decay=0.9,
          progress=False)
    assert decays[0] == pytest.approx(0.1) and decays[1] == pytest.approx(2 / 11)
    assert decays[50] == pytest.approx(51 / 60) and decays[79] == pytest.approx(80 / 89)
    assert decays[80] == decays[99] == 0.9, "capped at ema_decay from k = 80 on"


def test_ema_weights_are_the_average_not_the_last_step():
    model = Recorder()
    result = train(model, _constant_images(), make_schedule("linear", 100), steps=30, batch_size=16, lr=0.05,
                   ema_decay=0.5, progress=False)
    assert result.ema.scale.item() != pytest.approx(model.scale.item(), abs=1e-6)


@pytest.mark.parametrize("p_uncond", [0.0, 0.3])
def test_labels_are_dropped_inside_train(p_uncond):
    model = Recorder(num_classes=10)
    labels = torch.full((64,), 3)
    train(model, _constant_images(), make_schedule("linear", 100), labels, steps=60, batch_size=16,
          p_uncond=p_uncond, progress=False)
    y = torch.cat([c[2] for c in model.calls])
    assert set(y.unique().tolist()) <= {3, 10}
    assert (y == 10).float().mean().item() == pytest.approx(p_uncond, abs=0.06)


# --- sample() -------------------------------------------------------------------------------------

class ConstantEps(nn.Module):
    """eps = ``value`` everywhere (per class when conditional: value + label)."""

    def __init__(self, value=0.1, num_classes=None):
        super().__init__()
        self.value, self.num_classes = value, num_classes
        self.dummy = nn.Parameter(torch.zeros(()))
        self.in_channels, self.sample_shape = 1, (1, 28, 28)

    @property
    def null_class(self):
        return self.num_classes

    def forward(self, x, t, y=None):
        out = torch.full_like(x, self.value)
        if y is not None:
            out = out + y.float().view(-1, 1, 1, 1) / 10
        return out


def _ddpm_by_hand(schedule, x, eps_value, variance, seed, clip=True):
    """DDPM written out from the page's formulas, drawing noise as sample() documents (seed + 1)."""
    gen = torch.Generator().manual_seed(seed + 1)
    b, a, ab = schedule.betas.double(), 1 - schedule.betas.double(), schedule.alpha_bars.double()
    x = x.double()
    for t in range(schedule.T - 1, -1, -1):
        noise = torch.randn(x.shape, generator=gen).double()
        x0 = ((x - (1 - ab[t]).sqrt() * eps_value) / ab[t].sqrt()).clamp(-1, 1) if clip else None
        ab_prev = ab[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64)
        mean = ab_prev.sqrt() * b[t] / (1 - ab[t]) * x0 + a[t].sqrt() * (1 - ab_prev) / (1 - ab[t]) * x
        var = b[t] if variance == "beta" else (1 - ab_prev) / (1 - ab[t]) * b[t]
        x = mean + var.sqrt() * noise if t > 0 else mean
    return x.float()


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ddpm_uses_the_variance_it_is_given(variance):
    schedule = make_schedule("linear", 20)
    out = sample(ConstantEps(), schedule, 3, sampler="ddpm", variance=variance, seed=4, progress=False).images
    expected = _ddpm_by_hand(schedule, initial_noise(3, 4), 0.1, variance, seed=4)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    other = "beta_tilde" if variance == "beta" else "beta"
    assert not torch.allclose(out, _ddpm_by_hand(schedule, initial_noise(3, 4), 0.1, other, seed=4), atol=1e-3)


def test_eta_zero_is_deterministic_and_eta_one_is_not(tiny_model):
    schedule = make_schedule("linear", 50)
    x_T = initial_noise(3, 0)
    kw = dict(sampler="ddim", steps=5, x_T=x_T, progress=False)
    a, b = (sample(tiny_model, schedule, 3, eta=0.0, seed=s, **kw).images for s in (1, 2))
    torch.testing.assert_close(a, b)  # eta = 0: the per-step noise is never used
    c, d = (sample(tiny_model, schedule, 3, eta=1.0, seed=s, **kw).images for s in (1, 2))
    assert not torch.allclose(c, d, atol=1e-3) and not torch.allclose(a, c, atol=1e-3)


def test_guidance_through_sample_uses_the_course_convention():
    """eps = eps_u + w (eps_c - eps_u): sampling a guided ConstantEps equals sampling a model whose
    eps is that combination, computed by hand."""
    schedule = make_schedule("linear", 30)
    labels = torch.tensor([2, 7, 5])
    x_T = initial_noise(3, 0)
    for w in (0.0, 1.0, 3.0):
        guided = sample(ConstantEps(0.1, num_classes=10), schedule, 3, sampler="ddim", steps=6, labels=labels,
                        w=w, x_T=x_T, progress=False).images
        eps_c, eps_u = 0.1 + labels.float() / 10, 0.1 + 10 / 10
        combined = eps_u + w * (eps_c - eps_u)

        class Fixed(ConstantEps):
            def forward(self, x, t, y=None, eps=combined):
                return eps.view(-1, 1, 1, 1).expand_as(x).clone()

        expected = sample(Fixed(), schedule, 3, sampler="ddim", steps=6, x_T=x_T, progress=False).images
        torch.testing.assert_close(guided, expected, rtol=1e-5, atol=1e-5)


def test_sampled_trajectory_starts_at_x_T_and_ends_at_the_images(tiny_model):
    schedule = make_schedule("linear", 50)
    out = sample(tiny_model, schedule, 2, sampler="ddim", steps=5, seed=3, capture=[50, 0], clip_x0=False,
                 progress=False)
    torch.testing.assert_close(out.trajectory[50], initial_noise(2, 3))
    assert out.trajectory[0] is not out.images and torch.equal(out.trajectory[0], out.images)
    assert not torch.allclose(out.images, initial_noise(2, 3), atol=1e-2), "sampling moved the state"


# --- the timestep embedding ----------------------------------------------------------------------

def test_sinusoidal_embedding_frequencies_at_t_1_and_500():
    """dim 4: frequencies 1 and 10000^(-1/2) = 0.01, so t=1 -> sin 1, sin 0.01, cos 1, cos 0.01."""
    emb = sinusoidal_embedding(torch.tensor([1, 500]), 4).double()
    expected = torch.tensor([[math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)],
                             [math.sin(500), math.sin(5), math.cos(500), math.cos(5)]], dtype=torch.float64)
    torch.testing.assert_close(emb, expected, rtol=1e-4, atol=1e-4)
    emb8 = sinusoidal_embedding(torch.tensor([500]), 8).double()[0]
    freqs = [1, 10 ** -1, 10 ** -2, 10 ** -3]  # 10000^(-k/4)
    torch.testing.assert_close(emb8, torch.tensor([math.sin(500 * f) for f in freqs] +
                                                  [math.cos(500 * f) for f in freqs], dtype=torch.float64),
                               rtol=1e-4, atol=1e-4)


# --- metrics plumbing ------------------------------------------------------------------------------

class FlatFeatures(nn.Module):
    """A stand-in classifier whose features are 6 fixed pixels (and logits the first 10 of 12)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def features(self, x):
        return x.flatten(1)[:, [0, 100, 200, 300, 400, 500]]

    def forward(self, x):
        return x.flatten(1)[:, 300:310] * 10


@pytest.fixture
def fake_mnist(monkeypatch):
    """Synthetic train/test sets; counts how often each split is loaded (the caches must avoid reloads)."""
    gen = torch.Generator().manual_seed(0)
    splits = {"train": torch.rand(300, 1, 28, 28, generator=gen), "test": torch.rand(200, 1, 28, 28, generator=gen)}
    loads = {"train": 0, "test": 0}

    def load(split="train", device="cpu", subset=None, seed=0):
        loads[split] += 1
        return splits[split], torch.zeros(len(splits[split]), dtype=torch.long)

    monkeypatch.setattr(metrics, "load_mnist", load)
    return splits, loads


def _fd_reference(a, b):
    a, b = a.double().numpy(), b.double().numpy()
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))


def test_real_baseline_and_reference_cache(fake_mnist):
    (splits, loads), clf = fake_mnist, FlatFeatures()
    value = metrics.real_baseline(clf, 50, seed=1)
    pick = torch.randperm(300, generator=torch.Generator().manual_seed(1))[:50]
    assert value == pytest.approx(_fd_reference(clf.features(splits["train"][pick]), clf.features(splits["test"])),
                                  rel=1e-6)
    assert metrics.real_baseline(clf, 50, seed=1) == value and loads == {"train": 1, "test": 1}, "cached"
    assert metrics.real_baseline(clf, 50, seed=2) != value and loads["test"] == 1
    assert metrics.real_baseline(FlatFeatures(), 50, seed=1) == pytest.approx(value) and loads["test"] == 2, \
        "a new classifier gets its own cache"


def test_fid_and_compare_fids(fake_mnist, capsys):
    (splits, _), clf = fake_mnist, FlatFeatures()
    samples = {"bright": splits["test"][:40] * 0.5 + 0.5, "same": splits["train"][:40]}
    out = metrics.compare_fids(samples, clf, w=3.0)
    for name, images in samples.items():
        assert out[name].value == pytest.approx(_fd_reference(clf.features(images), clf.features(splits["test"])),
                                                rel=1e-6)
        assert out[name].n == 40 and out[name].w == 3.0 and out[name].baseline == metrics.real_baseline(clf, 40)
    printed = capsys.readouterr().out
    assert "bright: FID" in printed and "n=40, w=3" in printed and "real-vs-real at n=40" in printed
    assert out["bright"].value > out["same"].value


def test_within_class_spread_by_hand():
    f = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 0.0], [0.0, 4.0], [9.0, 9.0]])
    y = torch.tensor([0, 0, 1, 1, 2])  # class 2 has one sample: skipped
    # class 0: mean (1, 0), squared distances 1, 1 -> 1; class 1: mean (0, 2), distances 4, 4 -> 4
    assert metrics.within_class_spread(f, y) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="two samples"):
        metrics.within_class_spread(f[:1], y[:1])


def test_precision_recall_on_synthetic_features_with_a_known_answer():
    """Real: two well-separated clusters. A fake set covering one cluster only has full precision and
    half the recall; a fake set of outliers has no precision; the real set itself has both near 1."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 4, generator=gen), torch.randn(200, 4, generator=gen) + 50
    real = torch.cat([a, b])
    one_mode = torch.randn(200, 4, generator=gen)  # cluster a only
    pr = metrics.precision_recall(real, one_mode, k=3)
    assert pr["precision"] > 0.9 and 0.35 <= pr["recall"] <= 0.5, pr  # cluster b (half the data) is missed
    outliers = torch.randn(100, 4, generator=gen) + 25  # half-way between the clusters
    assert metrics.precision_recall(real, outliers, k=3)["precision"] == 0.0
    same = metrics.precision_recall(real, torch.cat([torch.randn(200, 4, generator=gen),
                                                     torch.randn(200, 4, generator=gen) + 50]), k=3)
    assert same["precision"] > 0.85 and same["recall"] > 0.85, same
    with pytest.raises(ValueError, match="more than k"):
        metrics.precision_recall(real, one_mode[:3], k=3)


def test_kmeans_and_cluster_coverage_find_a_missing_mode():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    real = torch.cat([c + torch.randn(100, 2, generator=gen) for c in centres])
    found = metrics.kmeans(real, 4, seed=1)
    assert torch.cdist(found.float(), centres).min(dim=1).values.max() < 1.0, "k-means finds the four blobs"
    healthy = torch.cat([c + torch.randn(50, 2, generator=gen) for c in centres])
    collapsed = torch.cat([c + torch.randn(50, 2, generator=gen) for c in centres[:3]])  # one mode missing
    assert metrics.cluster_coverage(real, healthy, k=4)["covered"] == 4
    cov = metrics.cluster_coverage(real, collapsed, k=4)
    assert cov["covered"] == 3 and sorted(cov["fake_shares"])[0] == 0.0 and sum(cov["real_shares"]) == 1.0
    # the true centres, given: the same verdict without fitting
    assert metrics.cluster_coverage(real, collapsed, k=4, centres=centres)["covered"] == 3


def test_pairwise_study_tallies_agreement_with_fid():
    from academy_diffusion.widgets import PairwiseStudy

    img = torch.zeros(2, 1, 28, 28)
    study = PairwiseStudy([("good", img, "bad", img), ("stamped", img, "clean", img), ("x", img, "y", img)],
                          {"good": 5.0, "bad": 50.0, "stamped": 10.0, "clean": 30.0, "x": 1.0, "y": 2.0})
    assert np.isnan(study.agreement())
    answers = iter(["a", "b", "b"])  # agrees, disagrees (prefers the clean set FID ranks worse), disagrees
    assert study.run(lambda a, b: next(answers)) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="already"):
        study.record("a")
    box = PairwiseStudy(study.pairs, study.fid).widget()
    assert "pair 1 of 3" in box.children[0].value


def test_fid_interval_is_centred_on_the_value_and_narrows_with_n(fake_mnist):
    (splits, _), clf = fake_mnist, FlatFeatures()
    value, lo, hi = metrics.fid_interval(splits["train"][:40], clf, n_boot=30)
    assert value == pytest.approx(metrics.fid(splits["train"][:40], clf, baseline=False, warn=False).value)
    assert lo < value < hi and (hi - value) == pytest.approx(value - lo)
    wide = hi - lo
    _, lo2, hi2 = metrics.fid_interval(splits["train"][:300], clf, n_boot=30)
    assert hi2 - lo2 < wide, "more samples, a narrower interval"
