import contextlib

import torch

from academy_diffusion.device import autocast, autocast_dtype, describe_device, get_device, seed_everything
from academy_diffusion.profiles import PROFILES, get_profile


def test_cpu_device_runs_in_fp32(monkeypatch):
    monkeypatch.setenv("ACADEMY_DEVICE", "cpu")
    device = get_device(verbose=True)
    assert device.type == "cpu"
    assert autocast_dtype(device) is None
    assert isinstance(autocast(device), contextlib.nullcontext)
    assert describe_device(device).startswith("cpu")


def test_seed_everything_repeats():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_profiles(monkeypatch):
    monkeypatch.setenv("ACADEMY_PROFILE", "quick")
    assert get_profile().name == "quick"
    assert get_profile("full").train_images is None and get_profile("full").epochs == 20
    monkeypatch.setenv("ACADEMY_PROFILE", "huge")
    try:
        get_profile()
    except ValueError as err:
        assert "huge" in str(err)
    else:
        raise AssertionError("an unknown profile must be refused")
    assert set(PROFILES) == {"full", "quick"}
