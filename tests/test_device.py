"""Device choice, bf16 decisions and sampling chunk sizes, tested without a GPU by patching what the
machine reports (CUDA, MPS, compute capability, CPU flags)."""

import contextlib

import pytest
import torch

from academy_diffusion import device as dev
from academy_diffusion.course.profiles import PROFILES, get_profile
from academy_diffusion.device import (
    autocast,
    autocast_dtype,
    describe_device,
    describe_precision,
    get_device,
    precision,
    sample_batch_size,
    seed_everything,
)


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with the given accelerators, GPU compute capability and CPU flags."""
    monkeypatch.delenv("ACADEMY_DEVICE", raising=False)
    monkeypatch.delenv("ACADEMY_PRECISION", raising=False)

    def configure(cuda=False, mps=False, capability=(8, 0), flags=()):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(dev, "cpu_flags", lambda: set(flags))

    return configure


@pytest.mark.parametrize("cuda,mps,expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_device_preference_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert get_device().type == expected


def test_forced_device_wins(machine, monkeypatch):
    machine(cuda=True, mps=True)
    monkeypatch.setenv("ACADEMY_DEVICE", "cpu")
    assert get_device().type == "cpu"


@pytest.mark.parametrize("capability,expected", [((7, 5), None), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_bf16_on_cuda_from_compute_capability_8(machine, capability, expected):
    """A T4 (7.5) runs fp32; an A100 (8.0) and an H100 (9.0) autocast to bf16."""
    machine(cuda=True, capability=capability)
    assert autocast_dtype("cuda") is expected


@pytest.mark.parametrize("flags,expected", [((), None), (("avx2", "avx512f"), None),
                                            (("avx512f", "avx512_bf16"), torch.bfloat16),
                                            (("amx_tile", "amx_bf16"), torch.bfloat16)])
def test_bf16_on_cpus_that_compute_it_natively(machine, flags, expected):
    machine(flags=flags)
    assert autocast_dtype("cpu") is expected
    assert describe_precision("cpu") == ("fp32" if expected is None else "bf16 autocast")
    assert autocast_dtype("mps") is None, "MPS stays in fp32"


def test_fp32_can_be_forced(machine, monkeypatch):
    machine(cuda=True, capability=(9, 0), flags=("avx512_bf16",))
    monkeypatch.setenv("ACADEMY_PRECISION", "fp32")
    assert autocast_dtype("cpu") is None and autocast_dtype("cuda") is None
    assert isinstance(autocast("cpu"), contextlib.nullcontext)


def test_precision_context_restores_the_setting(machine, monkeypatch):
    machine(flags=("avx512_bf16",))
    assert autocast_dtype("cpu") is torch.bfloat16
    with precision("fp32"):
        assert autocast_dtype("cpu") is None
    assert autocast_dtype("cpu") is torch.bfloat16
    monkeypatch.setenv("ACADEMY_PRECISION", "fp32")
    with precision("auto"):
        assert autocast_dtype("cpu") is torch.bfloat16
    assert autocast_dtype("cpu") is None


def test_bf16_autocast_really_runs_the_model_in_bf16(machine):
    machine(flags=("avx512_bf16",))
    layer = torch.nn.Conv2d(1, 2, 3)
    with autocast("cpu"):
        assert layer(torch.randn(1, 1, 5, 5)).dtype == torch.bfloat16
    machine(flags=())
    with autocast("cpu"):
        assert layer(torch.randn(1, 1, 5, 5)).dtype == torch.float32


def test_cpu_flags_are_read_from_proc_cpuinfo(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(fake if p == "/proc/cpuinfo" else p, *a, **k))
    assert dev.cpu_flags() == {"fpu", "avx512f", "avx512_bf16", "amx_tile"}
    assert dev.cpu_has_native_bf16()


def test_sampling_chunk_by_device():
    """A CPU samples 64 images a forward pass (fastest per image there), a GPU thousands; guidance's
    pass holds both halves, so it takes half as many images."""
    assert sample_batch_size("cpu") == 64 and sample_batch_size("cpu", guided=True) == 32
    gpu = sample_batch_size("cuda")
    assert gpu >= 1024 and sample_batch_size("cuda", guided=True) == gpu // 2


def test_describe_device_names_threads_on_cpu():
    assert describe_device("cpu") == f"cpu ({torch.get_num_threads()} threads)"


def test_seed_everything_repeats():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_profiles(monkeypatch):
    monkeypatch.setenv("ACADEMY_PROFILE", "quick")
    assert get_profile().name == "quick"
    assert get_profile("full").train_images is None and get_profile("full").epochs == 20
    assert not get_profile("smoke").pretrained and not get_profile("smoke").checks_claims
    monkeypatch.setenv("ACADEMY_PROFILE", "huge")
    with pytest.raises(ValueError, match="huge"):
        get_profile()
    assert set(PROFILES) == {"full", "quick", "smoke"}
    monkeypatch.delenv("ACADEMY_PROFILE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_profile().name == "full", "every CUDA machine (Colab included) runs the full profile by default"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile().name == "quick"


def test_quick_banner_does_not_claim_training_sizes_it_does_not_use():
    text = get_profile("quick").describe()
    assert "shipped checkpoints" in text and "train_images" not in text and "epochs" not in text
    assert "train_images=None" in get_profile("full").describe()


def test_the_tests_run_the_lessons_in_the_quick_profile_even_where_cuda_is_visible(monkeypatch):
    """``make test`` on a GPU machine must not train the full profile under nbval: the suite sets the
    profile its notebook kernels inherit (conftest) unless ACADEMY_PROFILE was given."""
    from lesson_plugin import test_profile

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    environ = {}  # a machine where nobody set ACADEMY_PROFILE
    monkeypatch.delenv("ACADEMY_PROFILE", raising=False)
    assert get_profile().name == "full", "left to itself, the package picks full on CUDA"
    assert test_profile(environ) == "quick" and environ == {"ACADEMY_PROFILE": "quick"}
    monkeypatch.setenv("ACADEMY_PROFILE", environ["ACADEMY_PROFILE"])
    assert get_profile().name == "quick"
    assert test_profile({"ACADEMY_PROFILE": "smoke"}) == "smoke", "a profile someone set is kept"
