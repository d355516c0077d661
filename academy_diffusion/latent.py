"""Latent diffusion: run the same diffusion in a small autoencoder's code instead of in pixels.

The chain (Rombach et al. 2022, the design of Stable Diffusion)::

    x0 [B, 1, 28, 28] --encode--> z [B, 4, 7, 7] --x scale--> z' (std 1)    diffusion lives here
    sample z' (DDIM, ...) --/ scale--> z --decode--> image [B, 1, 28, 28]

Only the space changes: the denoiser is the course's :class:`~academy_diffusion.models.UNet` with
4 input channels on a 7x7 grid, trained by :func:`~academy_diffusion.training.train` with the same
schedule, and sampled by :func:`~academy_diffusion.samplers.sample`.

**The latent shape, 4x7x7.** Two stride-2 downsamplings take 28x28 to 7x7: 16x fewer positions for
the denoiser's convolutions, which is where its compute goes. Four channels keep 196 numbers per digit,
4x fewer than 784 pixels, enough for the decoder to redraw a digit's strokes (its reconstruction FID
is the floor of any latent model, measured in lesson 10). Stable Diffusion makes the same choice at
scale: 512x512x3 -> 4x64x64, 8x per side.

**A VAE with a small KL weight**, as Stable Diffusion's autoencoder, rather than a plain autoencoder:
the encoder outputs a mean and a log-variance, training decodes a *sample* z = mean + std · ε, and the
KL term pulls q(z | x) towards N(0, I) with weight :data:`KL_WEIGHT`. The noise in training teaches the
decoder to draw a clean digit from a neighbourhood of each code, not from one exact point, and a
latent diffusion model's samples always land a little off the codes the encoder produced. The weight
is small so that reconstructions stay sharp, too small to fix the codes' scale: that is the
:func:`latent_scale` step's job. The denoiser trains on the posterior *means* (one code per digit).

**The latent scale.** The code's standard deviation is whatever training made it; a noise schedule
assumes data of roughly unit variance (at t = T, x_T must be pure N(0, I) noise). So the latents are
multiplied by ``scale = 1 / std``, measured once on the training set and stored with the
autoencoder (:func:`~academy_diffusion.checkpoints.save_autoencoder`; Stable Diffusion's
``scaling_factor = 0.18215``). Samples are divided by it before
decoding. Forgetting either half is lesson 10's "common mistake".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from .device import autocast, synchronize
from .progress import progress_bar
from .samplers import SampleResult, sample
from .schedules import Schedule
from .training import diffusion_loss, make_optimizer, optimizer_step, show_loss

LATENT_CHANNELS = 4
KL_WEIGHT = 1e-3  # weight of the KL term against the reconstruction's L1, both per pixel (see vae_loss)


class _Block(nn.Module):
    """A residual pair of 3x3 convolutions with GroupNorm and SiLU (shape-preserving)."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                  nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Autoencoder(nn.Module):
    """A small convolutional VAE: ``[B, 1, 28, 28]`` <-> ``[B, latent_channels, 7, 7]``.

    Args:
        channels: feature channels at 28x28 and at 14x14 / 7x7.
        latent_channels: channels of the code (4: see the module's notes on the latent shape).
    """

    def __init__(self, channels: tuple[int, int] = (32, 64), latent_channels: int = LATENT_CHANNELS):
        super().__init__()
        self.config = {"channels": list(channels), "latent_channels": latent_channels}
        c0, c1 = channels
        self.latent_channels = latent_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c0, 3, padding=1), _Block(c0),
            nn.Conv2d(c0, c1, 3, stride=2, padding=1), _Block(c1),  # 28 -> 14
            nn.Conv2d(c1, c1, 3, stride=2, padding=1), _Block(c1),  # 14 -> 7
            nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, 2 * latent_channels, 1),  # mean and log-variance
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, c1, 3, padding=1), _Block(c1),
            nn.Upsample(scale_factor=2), nn.Conv2d(c1, c1, 3, padding=1), _Block(c1),  # 7 -> 14
            nn.Upsample(scale_factor=2), nn.Conv2d(c1, c0, 3, padding=1), _Block(c0),  # 14 -> 28
            nn.GroupNorm(8, c0), nn.SiLU(), nn.Conv2d(c0, 1, 3, padding=1),
        )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, 7, 7)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of q(z | x), each ``[B, latent_channels, 7, 7]``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected digits of shape [B, 1, 28, 28] in [-1, 1], got {list(x.shape)}")
        mean, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mean, logvar.clamp(-20.0, 10.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code of each digit: the posterior mean, ``[B, 1, 28, 28]`` -> ``[B, 4, 7, 7]`` (unscaled)."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Digits from (unscaled) codes: ``[B, 4, 7, 7]`` -> ``[B, 1, 28, 28]``, clamped to [-1, 1]."""
        if z.ndim != 4 or tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(f"expected codes of shape [B, {', '.join(map(str, self.latent_shape))}], "
                             f"got {list(z.shape)}")
        return self.decoder(z).float().clamp(-1.0, 1.0)


def vae_loss(autoencoder: Autoencoder, x: torch.Tensor, kl_weight: float = KL_WEIGHT, generator=None):
    """The VAE's loss on a batch ``x [B, 1, 28, 28]``: ``(loss, reconstruction, kl)``, scalars.

    reconstruction: mean |decoder(z) − x| per pixel, with z = mean + std · ε drawn from q(z | x);
    kl: KL(q(z | x) || N(0, I)) summed over the code's numbers, per pixel (divided by 784), so that
    both terms are on one scale; loss = reconstruction + kl_weight · kl.
    """
    mean, logvar = autoencoder.posterior(x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, device=x.device, generator=generator)
    reconstruction = (autoencoder.decoder(z).float() - x).abs().mean()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean() / x[0].numel()
    return reconstruction + kl_weight * kl, reconstruction, kl


@dataclass
class AutoencoderResult:
    """What :func:`train_autoencoder` returns: the loss of every step (CPU), the measured latent scale,
    wall-clock seconds and throughput."""

    losses: torch.Tensor
    scale: float
    seconds: float
    images_per_second: float


def train_autoencoder(autoencoder: Autoencoder, images: torch.Tensor, *, epochs: float, batch_size: int = 128,
                      lr: float = 2e-3, warmup_steps: int = 100, kl_weight: float = KL_WEIGHT, seed: int = 0,
                      progress: bool = True) -> AutoencoderResult:
    """Train the VAE on ``images [N, 1, 28, 28]`` (on the device to train on) with AdamW and the course's
    warm-up-then-cosine learning rate, then measure the latent scale on those images.

    No EMA: the autoencoder is trained once and frozen, and its last weights reconstruct well.
    """
    device, n = images.device, len(images)
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the data set ({n} images)")
    per_epoch = n // batch_size
    total = math.ceil(epochs * per_epoch)
    autoencoder.to(device).train()
    opt, sched = make_optimizer(autoencoder.parameters(), lr, warmup_steps, total)
    gen = torch.Generator(device=device).manual_seed(seed)
    losses = torch.empty(total, device=device)
    synchronize(device)
    start = time.perf_counter()
    bar = progress_bar(total, "training the autoencoder", progress)
    for step in range(total):
        if step % per_epoch == 0:
            order = torch.randperm(n, device=device, generator=gen)
        x = images[order[(step % per_epoch) * batch_size : (step % per_epoch + 1) * batch_size]]
        with autocast(device):
            loss, _, _ = vae_loss(autoencoder, x, kl_weight, gen)
        optimizer_step(opt, sched, loss)
        losses[step] = loss.detach()
        bar.update(1)
        show_loss(bar, losses, step)
    bar.close()
    synchronize(device)
    seconds = time.perf_counter() - start
    autoencoder.eval().requires_grad_(False)
    scale = latent_scale(encode_all(autoencoder, images))
    return AutoencoderResult(losses.cpu(), scale, seconds, total * batch_size / seconds)


@torch.no_grad()
def encode_all(autoencoder: Autoencoder, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Unscaled codes of many digits, in batches: ``[N, 1, 28, 28]`` -> ``[N, 4, 7, 7]`` float32, on their device."""
    with autocast(images.device):
        return torch.cat([autoencoder.encode(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def decode_all(autoencoder: Autoencoder, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Digits from many unscaled codes, in batches: ``[N, 4, 7, 7]`` -> ``[N, 1, 28, 28]`` on the CPU."""
    device = next(autoencoder.parameters()).device
    with autocast(device):
        return torch.cat([autoencoder.decode(z[i : i + batch_size].to(device)).cpu()
                          for i in range(0, len(z), batch_size)])


def latent_scale(latents: torch.Tensor) -> float:
    """The factor that gives the latents unit standard deviation: ``1 / std`` over every number of
    ``latents [N, C, H, W]`` (Stable Diffusion measured its 0.18215 the same way)."""
    return 1.0 / latents.float().std().item()


def to_latent(autoencoder: Autoencoder, x: torch.Tensor, scale: float) -> torch.Tensor:
    """Digits to the space the diffusion runs in: ``scale · encode(x)``, ``[B, 1, 28, 28]`` -> ``[B, 4, 7, 7]``.

    Computed without gradients: the autoencoder is frozen while the denoiser trains.
    """
    with torch.no_grad():
        return scale * autoencoder.encode(x)


def from_latent(autoencoder: Autoencoder, z: torch.Tensor, scale: float) -> torch.Tensor:
    """The inverse of :func:`to_latent`: ``decode(z / scale)``, ``[B, 4, 7, 7]`` -> ``[B, 1, 28, 28]``."""
    return autoencoder.decode(z / scale)


def latent_diffusion_loss(model, schedule: Schedule, autoencoder: Autoencoder, scale: float, x0, t,
                          noise) -> torch.Tensor:
    """One batch of latent diffusion's training loss: L_simple on the scaled codes of ``x0``.

    ``x0 [B, 1, 28, 28]``, ``t [B]``, ``noise [B, 4, 7, 7]`` (noise lives in the latent space).
    The same :func:`~academy_diffusion.training.diffusion_loss` as in pixels: only the space changed.
    """
    return diffusion_loss(model, schedule, to_latent(autoencoder, x0, scale), t, noise)


@torch.no_grad()
def sample_latent(model, schedule: Schedule, autoencoder: Autoencoder, scale: float, n: int, **kwargs) -> SampleResult:
    """Generate ``n`` digits with a latent model: :func:`~academy_diffusion.samplers.sample` in the latent
    space, then :func:`from_latent`. ``kwargs`` go to ``sample`` (sampler, steps, seed, x_T, ...).

    ``clip_x0`` is off: clamping x̂0 to [-1, 1] is right for pixels, but latents have no such range.
    ``seconds`` includes the decoding. ``images`` are ``[n, 1, 28, 28]`` on the CPU.
    """
    kwargs.setdefault("clip_x0", False)
    out = sample(model, schedule, n, **kwargs)
    start = time.perf_counter()
    images = decode_all(autoencoder, out.images / scale)
    synchronize(next(autoencoder.parameters()).device)
    return SampleResult(images, out.trajectory, out.predicted_x0, out.seconds + time.perf_counter() - start)
