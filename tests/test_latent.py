"""Latent diffusion (academy_diffusion/latent.py) against closed forms and stand-ins."""

import math

import pytest
import torch
import torch.nn.functional as F

from academy_diffusion.checkpoints import CheckpointError, load_autoencoder, save_autoencoder
from academy_diffusion.course import check_latent_pair
from academy_diffusion.course.lessons import _fingerprint
from academy_diffusion.latent import (
    Autoencoder,
    decode_all,
    encode_all,
    from_latent,
    latent_diffusion_loss,
    latent_scale,
    sample_latent,
    to_latent,
    train_autoencoder,
    vae_loss,
)
from academy_diffusion.models import UNet, forward_flops
from academy_diffusion.samplers import sample
from academy_diffusion.schedules import make_schedule


@pytest.fixture
def tiny_ae():
    torch.manual_seed(0)
    return Autoencoder((8, 8)).eval()


def test_shapes_and_bad_inputs(tiny_ae):
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    mean, logvar = tiny_ae.posterior(x)
    assert mean.shape == logvar.shape == (3, 4, 7, 7) and tiny_ae.latent_shape == (4, 7, 7)
    with torch.no_grad():
        out = tiny_ae.decode(tiny_ae.encode(x))
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
        tiny_ae.encode(torch.zeros(3, 28, 28))
    with pytest.raises(ValueError, match=r"\[B, 4, 7, 7\]"):
        tiny_ae.decode(torch.zeros(3, 4, 8, 8))


def test_vae_loss_is_l1_plus_the_closed_form_kl(tiny_ae):
    """With the decoder and the posterior replaced by known functions, the loss is the textbook formula:
    KL(N(m, s²) || N(0, 1)) = (m² + s² − 1 − log s²) / 2 per number."""
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    m = torch.full((2, 4, 7, 7), 0.5)
    logvar = torch.full((2, 4, 7, 7), math.log(0.25))
    tiny_ae.posterior = lambda x_: (m, logvar)

    class Zero(torch.nn.Module):
        def forward(self, z):
            return torch.zeros(len(z), 1, 28, 28)

    tiny_ae.decoder = Zero()
    loss, rec, kl = vae_loss(tiny_ae, x, kl_weight=0.1)
    per_number = (0.25 + 0.25 - 1 - math.log(0.25)) / 2
    assert kl.item() == pytest.approx(per_number * 196 / 784, rel=1e-5)
    assert rec.item() == pytest.approx(x.abs().mean().item(), rel=1e-6)
    assert loss.item() == pytest.approx(rec.item() + 0.1 * kl.item(), rel=1e-6)


def test_latent_scale_gives_unit_std():
    z = 3.7 * torch.randn(500, 4, 7, 7, generator=torch.Generator().manual_seed(0)) + 0.2
    s = latent_scale(z)
    assert s == pytest.approx(1 / 3.7, rel=0.02)
    assert (s * z).std().item() == pytest.approx(1.0, rel=1e-5)


class _Linear(torch.nn.Module):
    """A stand-in autoencoder whose codes are 3 x the 4x4-pooled digit and whose decoder inverts that."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.ones(()))

    def encode(self, x):
        return 3 * self.p * F.avg_pool2d(x, 4).repeat(1, 4, 1, 1)

    def decode(self, z):
        return F.interpolate(z.mean(1, keepdim=True) / 3, scale_factor=4)


def test_to_and_from_latent_scale_and_invert():
    ae, x = _Linear(), torch.rand(2, 1, 28, 28)
    z = to_latent(ae, x, 0.5)
    torch.testing.assert_close(z, 1.5 * F.avg_pool2d(x, 4).repeat(1, 4, 1, 1))
    assert not z.requires_grad  # the frozen encoder gets no gradient
    torch.testing.assert_close(from_latent(ae, z, 0.5), F.interpolate(F.avg_pool2d(x, 4), scale_factor=4))


def test_latent_loss_is_l_simple_on_scaled_codes():
    ae, s = _Linear(), make_schedule("linear", 100)
    x0, t, noise = torch.rand(3, 1, 28, 28), torch.tensor([0, 50, 99]), torch.randn(3, 4, 7, 7)
    gain = torch.nn.Parameter(torch.tensor(0.3))
    model = lambda z, t_, y=None: gain * z  # noqa: E731
    z0 = 0.5 * 3 * F.avg_pool2d(x0, 4).repeat(1, 4, 1, 1)
    a = s.alpha_bars[t].view(-1, 1, 1, 1)
    expected = ((0.3 * (a.sqrt() * z0 + (1 - a).sqrt() * noise) - noise) ** 2).mean()
    loss = latent_diffusion_loss(model, s, ae, 0.5, x0, t, noise)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert ae.p.grad is None and gain.grad is not None  # the denoiser learns, the encoder is frozen


def test_sample_latent_is_the_pixel_sampler_in_the_code_then_the_decoder(tiny_ae, linear_schedule):
    """sample_latent = sample() on a 7x7 U-Net without x0 clipping, then decode(z / scale)."""
    torch.manual_seed(1)
    model = UNet(in_channels=4, channels=(8, 16, 16), emb_dim=32, image_size=7).eval()
    model.schedule_config = linear_schedule.config()
    out = sample_latent(model, linear_schedule, tiny_ae, 0.5, 5, sampler="ddim", steps=4, seed=3, progress=False)
    z = sample(model, linear_schedule, 5, sampler="ddim", steps=4, seed=3, clip_x0=False, progress=False).images
    assert z.shape == (5, 4, 7, 7) and z.abs().max() > 1  # unclipped codes leave [-1, 1]
    torch.testing.assert_close(out.images, decode_all(tiny_ae, z / 0.5))
    assert out.images.shape == (5, 1, 28, 28) and out.seconds > 0


def test_training_lowers_the_loss_and_measures_the_scale(tiny_ae):
    images = (torch.rand(64, 1, 28, 28) > 0.7).float() * 2 - 1
    ae = Autoencoder((8, 8))
    with torch.no_grad():
        before = vae_loss(ae, images, generator=torch.Generator().manual_seed(0))[1].item()
    result = train_autoencoder(ae, images, epochs=15, batch_size=16, warmup_steps=5, progress=False)
    with torch.no_grad():
        after = vae_loss(ae, images, generator=torch.Generator().manual_seed(0))[1].item()
    assert after < 0.8 * before, (before, after)
    codes = encode_all(ae, images)
    assert result.scale == pytest.approx(1 / codes.std().item(), rel=1e-4)
    assert not any(p.requires_grad for p in ae.parameters())  # frozen after training
    assert len(result.losses) == 15 * 4


def test_save_load_round_trip_and_corrupt_file(tiny_ae, tmp_path):
    path = save_autoencoder(tmp_path / "ae.pt", tiny_ae, 0.75, {"epochs": 1})
    ae, scale, meta = load_autoencoder(path)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(decode_all(ae, encode_all(ae, x)), decode_all(tiny_ae, encode_all(tiny_ae, x)))
    assert scale == 0.75 and meta == {"epochs": 1}
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_autoencoder(path)


def test_a_latent_model_refuses_another_autoencoder(tiny_ae):
    class Ckpt:
        meta = {"recipe": {"autoencoder": _fingerprint(tiny_ae), "scale": 0.8}}

    check_latent_pair(Ckpt, tiny_ae, 0.8)
    with pytest.raises(ValueError, match="another autoencoder"):
        check_latent_pair(Ckpt, tiny_ae, 0.5)
    other = Autoencoder((8, 8))
    with pytest.raises(ValueError, match="another autoencoder"):
        check_latent_pair(Ckpt, other, 0.8)


def test_unet_on_the_latent_grid_and_its_flops():
    """The U-Net runs on a 7x7 grid (7 -> 4 -> 2 and back); a conv's FLOPs scale with the grid's area."""
    model = UNet(in_channels=4, channels=(8, 16, 16), emb_dim=32, image_size=7)
    assert model.sample_shape == (4, 7, 7)
    out = model(torch.randn(2, 4, 7, 7), torch.tensor([1, 2]))
    assert out.shape == (2, 4, 7, 7)
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    assert forward_flops(conv, torch.zeros(1, 4, 28, 28)) == 2 * 4 * 8 * 9 * 28 * 28
    assert forward_flops(conv, torch.zeros(1, 4, 7, 7)) * 16 == forward_flops(conv, torch.zeros(1, 4, 28, 28))
