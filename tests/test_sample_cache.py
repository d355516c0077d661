"""``course.cached_sample``: lessons 4, 5 and 8 share their guidance sweeps through it.

The oracle is the plain sampler: a cached result must be bitwise what ``sample`` returns for the
same call, and any change to what the samples depend on must draw afresh.
"""

import pytest
import torch

from academy_diffusion.course import lessons as course
from academy_diffusion.models import UNet
from academy_diffusion.samplers import initial_noise, sample
from academy_diffusion.schedules import make_schedule

N = 6


@pytest.fixture
def setting(tmp_path, monkeypatch):
    """A small random conditional U-Net, its schedule, a fresh cache, and a counter of real samplings."""
    monkeypatch.setenv("ACADEMY_CACHE_DIR", str(tmp_path))
    calls = []

    def counting_sample(*args, **kwargs):
        calls.append(kwargs)
        return sample(*args, **kwargs)

    monkeypatch.setattr(course, "sample", counting_sample)
    torch.manual_seed(0)
    model = UNet(channels=(8, 8, 8), emb_dim=16, num_classes=10)
    kwargs = {"sampler": "ddim", "steps": 3, "labels": torch.arange(N), "w": 2.0, "x_T": initial_noise(N, seed=0)}
    return model, make_schedule("linear", 1000), kwargs, calls, tmp_path


def test_a_hit_returns_what_sampling_returns_without_sampling(setting, capsys):
    model, schedule, kwargs, calls, cache = setting
    first = course.cached_sample(model, schedule, N, progress=False, **kwargs)
    assert len(calls) == 1 and len(list((cache / "samples").glob("*.pt"))) == 1
    again = course.cached_sample(model, schedule, N, progress=True, **kwargs)  # a progress bar changes nothing
    assert len(calls) == 1, "the second identical call sampled again"
    assert "reused 6 samples" in capsys.readouterr().out
    oracle = sample(model, schedule, N, progress=False, **kwargs).images
    assert torch.equal(first.images, oracle) and torch.equal(again.images, oracle)
    assert again.seconds == first.seconds


def test_every_input_of_the_samples_is_in_the_key(setting, monkeypatch):
    model, schedule, kwargs, calls, _ = setting
    course.cached_sample(model, schedule, N, progress=False, **kwargs)
    x_T = kwargs["x_T"].clone()
    x_T[N // 2, 0, 14, 14] += 1.0  # one value in the middle, which repr(tensor) leaves out of its summary
    changes = [
        {"w": 3.0},
        {"x_T": x_T},
        {"labels": torch.arange(N).flip(0)},
        {"steps": 4},
        {"eta": 1.0},
    ]
    for change in changes:
        before = len(calls)
        out = course.cached_sample(model, schedule, N, progress=False, **{**kwargs, **change})
        assert len(calls) == before + 1, f"{change} reused samples drawn for other settings"
        assert torch.equal(out.images, sample(model, schedule, N, progress=False, **{**kwargs, **change}).images)
    before = len(calls)
    with torch.no_grad():
        model.stem.weight[0, 0, 0, 0] += 1e-3  # other weights
    course.cached_sample(model, schedule, N, progress=False, **kwargs)
    monkeypatch.setattr(course, "_sampling_code", lambda: "edited sampler")  # other code
    course.cached_sample(model, schedule, N, progress=False, **kwargs)
    assert len(calls) == before + 2


def test_stochastic_samples_are_keyed_by_their_seed(setting):
    model, schedule, kwargs, calls, _ = setting
    noisy = {**kwargs, "eta": 1.0}
    a = course.cached_sample(model, schedule, N, seed=5, progress=False, **noisy)
    b = course.cached_sample(model, schedule, N, seed=5, progress=False, **noisy)
    c = course.cached_sample(model, schedule, N, seed=6, progress=False, **noisy)
    assert len(calls) == 2
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert torch.equal(a.images, sample(model, schedule, N, seed=5, progress=False, **noisy).images)


def test_trajectories_are_not_cached(setting):
    model, schedule, kwargs, _, cache = setting
    with pytest.raises(ValueError, match="capture"):
        course.cached_sample(model, schedule, N, capture=[500], **kwargs)
    assert not (cache / "samples").exists()


def test_an_argument_written_at_its_default_is_the_same_call(setting):
    model, schedule, kwargs, calls, _ = setting
    course.cached_sample(model, schedule, N, progress=False, **kwargs)
    course.cached_sample(model, schedule, N, progress=False, eta=0.0, seed=0, clip_x0=True, **kwargs)
    assert len(calls) == 1


def test_a_cache_that_cannot_be_written_costs_the_reuse_not_the_samples(setting, monkeypatch, capsys):
    model, schedule, kwargs, calls, cache = setting
    blocked = cache / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("ACADEMY_CACHE_DIR", str(blocked))
    out = course.cached_sample(model, schedule, N, progress=False, **kwargs)
    assert torch.equal(out.images, sample(model, schedule, N, progress=False, **kwargs).images)
    assert "could not be stored for reuse" in capsys.readouterr().out
    assert blocked.read_text() == "not a folder"
