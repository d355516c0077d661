"""Apple GPUs (MPS) have no float64: emulate that rule on the CPU and run the device path under it.

On MPS, PyTorch raises "Cannot convert a MPS Tensor to float64 dtype" the moment device data becomes
float64 (a ``.double()``, a float64 factory, an op whose result is float64). The CPU has float64, so
the package may compute in it on the host, and it does so in exactly one place: the schedules'
tables (``schedules._tables`` and the beta functions), which run on the CPU before anything moves
to the device. :class:`NoFloat64` raises PyTorch's MPS error for any torch call whose result is
float64 anywhere else. Under it run every sampler (guided and unguided), a few training steps,
checkpoint loading and the metrics the lessons call on device tensors.

What this cannot emulate (stated in the README): ops without an MPS kernel, MPS's own numerics,
and its memory limits. Those need a real Apple GPU.
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from torch.overrides import TorchFunctionMode

from academy_diffusion import schedules
from academy_diffusion.checkpoints import load_checkpoint, save_checkpoint
from academy_diffusion.samplers import SAMPLERS, sample
from academy_diffusion.schedules import make_schedule
from academy_diffusion.training import loss_by_timestep, train

# Host-side code that computes in float64 on the CPU (never on the device): the schedules' tables.
HOST_FLOAT64 = {f.__code__ for f in (getattr(schedules, "_tables", None), *schedules._BETA_FNS.values()) if f}


def _float64_in(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dtype == torch.float64
    if isinstance(value, (list, tuple)):
        return any(_float64_in(v) for v in value)
    return False


class NoFloat64(TorchFunctionMode):
    """Raise as MPS would when a torch call outside :data:`HOST_FLOAT64` produces a float64 tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if _float64_in(out):
            frame = sys._getframe(1)
            while frame is not None and frame.f_code not in HOST_FLOAT64:
                frame = frame.f_back
            if frame is None:
                raise TypeError(f"Cannot convert a MPS Tensor to float64 dtype (emulated MPS rule; from {func})")
        return out


def test_the_emulation_raises_where_mps_would_and_only_there():
    x = torch.ones(3)
    with NoFloat64():
        for make64 in (x.double, lambda: x.to(torch.float64), lambda: torch.zeros(2, dtype=torch.float64),
                       lambda: torch.tensor([0.5], dtype=torch.float64)):
            with pytest.raises(TypeError, match="float64"):
                make64()
        make_schedule("cosine", 50)  # the host tables in float64, then float32 to the device


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("w", [None, 3.0])
def test_every_sampler_runs_without_float64(tiny_model, tiny_cond_model, sampler, w):
    model = tiny_cond_model if w is not None else tiny_model
    labels = torch.arange(4) % 10 if w is not None else None
    steps = {"ddpm": None, "ddim": 5, "dpm++2m": 5}[sampler]
    with NoFloat64():
        schedule = make_schedule("linear", 1000 if sampler != "ddpm" else 20)
        out = sample(model, schedule, 4, sampler=sampler, steps=steps, labels=labels, w=w, eta=0.5,
                     capture=[schedule.T, 0], progress=False, allow_schedule_mismatch=True)
    assert out.images.dtype == torch.float32 and torch.isfinite(out.images).all()


def test_training_and_loading_run_without_float64(tmp_path, tiny_cond_model):
    images, labels = torch.rand(32, 1, 28, 28) * 2 - 1, torch.arange(32) % 10
    with NoFloat64():
        schedule = make_schedule("cosine", 1000)
        result = train(tiny_cond_model, images, schedule, labels, steps=3, batch_size=8, progress=False)
        loss_by_timestep(result.ema, schedule, images[:8], [0, 500, 999], labels[:8])
    path = save_checkpoint(tmp_path / "m.pt", tiny_cond_model, result.ema, schedule, {"steps": 3})
    with NoFloat64():
        ckpt = load_checkpoint(path)
        sample(ckpt.model, ckpt.schedule, 2, sampler="dpm++2m", steps=3, labels=torch.tensor([1, 2]), w=2.0,
               progress=False)
    assert ckpt.schedule.alpha_bars.dtype == torch.float32


def test_schedule_tables_are_float32_and_moving_them_recomputes_nothing():
    s = make_schedule("cosine", 1000)
    assert all(v.dtype == torch.float32 for v in vars(s).values() if isinstance(v, torch.Tensor))
    with NoFloat64():
        moved = s.to("cpu")
    assert moved is not s and torch.equal(moved.alpha_bars, s.alpha_bars)
    # computed in float64 from the float64 betas: abar_T of the cosine schedule from float32 betas would differ
    betas64 = schedules.cosine_betas(1000)
    assert s.alpha_bars_host[-1] == torch.cumprod(1 - betas64, 0)[-1].item()


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_flow_matching_trains_and_samples_without_float64(sampler, tiny_cond_model):
    from academy_diffusion.flow_matching import FlowPath, sample_flow

    images, labels = torch.rand(16, 1, 28, 28) * 2 - 1, torch.arange(16) % 10
    with NoFloat64():
        result = train(tiny_cond_model, images, FlowPath(), labels, steps=2, batch_size=8, progress=False)
        out = sample_flow(result.ema, 2, sampler=sampler, steps=3, labels=torch.tensor([3, 4]), w=2.0,
                          capture=True, progress=False)
    assert torch.isfinite(out.images).all()


def test_latent_diffusion_trains_and_samples_without_float64(tmp_path):
    """Lesson 10's chain: the autoencoder's training and scale, the latent model, its sampler, save/load."""
    from academy_diffusion.checkpoints import load_autoencoder, save_autoencoder
    from academy_diffusion.latent import Autoencoder, encode_all, sample_latent, train_autoencoder
    from academy_diffusion.models import UNet

    images = torch.rand(16, 1, 28, 28) * 2 - 1
    s = make_schedule("linear", 50)
    with NoFloat64():
        ae = Autoencoder((8, 8))
        scale = train_autoencoder(ae, images, epochs=1, batch_size=8, progress=False).scale
        codes = scale * encode_all(ae, images)
        result = train(UNet(in_channels=4, channels=(8, 8, 8), emb_dim=16, image_size=7), codes, s, steps=2,
                       batch_size=8, progress=False)
        out = sample_latent(result.ema, s, ae, scale, 2, sampler="ddim", steps=3, progress=False)
        save_autoencoder(tmp_path / "ae.pt", ae, scale)
        load_autoencoder(tmp_path / "ae.pt")
    assert out.images.shape == (2, 1, 28, 28) and torch.isfinite(out.images).all()


def test_distillation_rounds_and_students_run_without_float64(tiny_cond_model):
    """Lesson 11's guidance round, a progressive round and the student sampled on its own grid."""
    from academy_diffusion.distillation import VPrediction, distill, student_timesteps

    images, labels = torch.rand(16, 1, 28, 28) * 2 - 1, torch.arange(16) % 10
    s = make_schedule("linear", 1000)
    tiny_cond_model.schedule_config = s.config()
    student = VPrediction(copy.deepcopy(tiny_cond_model).requires_grad_(True), s)
    with NoFloat64():
        first = distill(student, tiny_cond_model, s, images, labels, student_steps=None,
                        w=2.0, train_steps=2, batch_size=8, progress=False)
        second = distill(VPrediction(first.ema.requires_grad_(True), s), VPrediction(first.ema, s), s, images,
                         labels, student_steps=2, train_steps=2, batch_size=8, progress=False)
        out = sample(VPrediction(second.ema, s), s, 2, sampler="ddim", timesteps=student_timesteps(1000, 2),
                     labels=torch.tensor([1, 7]), progress=False)
    assert torch.isfinite(out.images).all()
