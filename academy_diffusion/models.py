"""The noise-prediction network: a small U-Net eps_theta(x_t, t, y) for 28x28 images.

Shapes: ``x`` is ``[B, C, H, W]`` (28x28 digits, or lesson 10's 7x7 latent grid), ``t`` is ``[B]`` integer timesteps
in 0..T-1, ``y`` is ``[B]`` class labels (0..num_classes-1, or ``num_classes`` for "no class",
the null label that classifier-free guidance trains with). The output has the shape of ``x``.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style features of the timestep: ``[B]`` -> ``[B, dim]``.

    Half the features are ``sin(t * f_k)`` and half ``cos(t * f_k)``, with frequencies
    ``f_k`` spaced geometrically from 1 down to ``1 / max_period``: nearby timesteps get
    similar vectors, distant ones different vectors.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features followed by a two-layer MLP: ``[B]`` -> ``[B, emb_dim]``.

    With ``dead=True`` it returns zeros for every t: the "dead timestep embedding" bug of
    lesson 6, where the network cannot tell how noisy its input is.
    """

    def __init__(self, sin_dim: int, emb_dim: int, dead: bool = False):
        super().__init__()
        self.sin_dim, self.dead = sin_dim, dead
        self.mlp = nn.Sequential(nn.Linear(sin_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = self.mlp(sinusoidal_embedding(t, self.sin_dim))
        return torch.zeros_like(emb) if self.dead else emb


class ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU; the embedding is added in between."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, c_out))
        self.norm2 = nn.GroupNorm(8, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """A two-level U-Net: 28x28 -> 14x14 -> 7x7 and back, with skip connections.

    Any grid size works (a 7x7 latent goes 7 -> 4 -> 2 and back; each skip is resized to match).

    Args:
        in_channels: image channels (1 for MNIST, 4 for lesson 10's latents).
        channels: feature channels at 28x28, 14x14 and 7x7.
        emb_dim: width of the timestep (and class) embedding.
        num_classes: None for an unconditional model; else the number of classes, and the
            class embedding gets one extra row, index ``num_classes``, for "no class".
        dead_time_embedding: make the timestep embedding return zeros (lesson 6).
        image_size: the grid the model generates (height = width): the samplers draw x_T of shape
            ``[n, in_channels, image_size, image_size]`` (:attr:`sample_shape`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: tuple[int, int, int] = (32, 64, 128),
        emb_dim: int = 128,
        num_classes: int | None = None,
        dead_time_embedding: bool = False,
        image_size: int = 28,
    ):
        super().__init__()
        # What build_model needs to rebuild this network (saved in checkpoints): the arguments above.
        self.config = {name: arg for name, arg in locals().items() if name in inspect.signature(UNet).parameters}
        self.config["channels"] = list(channels)
        c0, c1, c2 = channels
        self.in_channels, self.num_classes, self.image_size = in_channels, num_classes, image_size
        self.time_embedding = TimestepEmbedding(emb_dim, emb_dim, dead=dead_time_embedding)
        self.class_embedding = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.stem = nn.Conv2d(in_channels, c0, 3, padding=1)
        self.down0 = ResBlock(c0, c0, emb_dim)
        self.pool0 = nn.Conv2d(c0, c0, 3, stride=2, padding=1)
        self.down1 = ResBlock(c0, c1, emb_dim)
        self.pool1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.mid1 = ResBlock(c1, c2, emb_dim)
        self.mid2 = ResBlock(c2, c2, emb_dim)
        self.up1 = ResBlock(c2 + c1, c1, emb_dim)
        self.up0 = ResBlock(c1 + c0, c0, emb_dim)
        self.out = nn.Sequential(nn.GroupNorm(8, c0), nn.SiLU(), nn.Conv2d(c0, in_channels, 3, padding=1))

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """The shape of one generated sample, ``(C, H, W)``."""
        return (self.in_channels, self.image_size, self.image_size)

    @property
    def null_class(self) -> int:
        """The label that means "no class" (used for the unconditional half of CFG)."""
        if self.num_classes is None:
            raise ValueError("this model is unconditional: it has no class labels")
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise in ``x`` (``[B, C, H, W]``) at timesteps ``t`` (``[B]``), class ``y``."""
        self._check_inputs(x, t, y)
        emb = self.time_embedding(t)
        if self.class_embedding is not None:
            if y is None:
                y = torch.full_like(t, self.num_classes, dtype=torch.long)
            emb = emb + self.class_embedding(y)
        h0 = self.down0(self.stem(x), emb)
        h1 = self.down1(self.pool0(h0), emb)
        h = self.mid2(self.mid1(self.pool1(h1), emb), emb)
        h = self.up1(torch.cat([F.interpolate(h, size=h1.shape[-2:]), h1], dim=1), emb)
        h = self.up0(torch.cat([F.interpolate(h, size=h0.shape[-2:]), h0], dim=1), emb)
        return self.out(h)

    def _check_inputs(self, x, t, y) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images of shape [B, {self.in_channels}, H, W] (MNIST: [B, 1, 28, 28]), "
                             f"got {list(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"expected one timestep per image, shape [{x.shape[0]}], got {list(t.shape)}")
        if y is not None and self.class_embedding is None:
            raise ValueError("class labels were given to an unconditional model (num_classes=None)")
        if y is not None and y.shape != (x.shape[0],):
            raise ValueError(f"expected one label per image, shape [{x.shape[0]}], got {list(y.shape)}")


def build_model(config: dict) -> UNet:
    """Rebuild a model from its ``model.config`` (as stored in a checkpoint)."""
    config = dict(config)
    config["channels"] = tuple(config["channels"])
    return UNet(**config)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (of all parameters for a frozen module)."""
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    return sum(p.numel() for p in (trainable or params))


def forward_flops(module: nn.Module, *inputs) -> int:
    """Floating-point operations of one forward pass of ``module`` on ``inputs``, counted by PyTorch's
    FLOP counter (convolutions and matrix products, 2 per multiply-add; normalisations and activations
    are not counted, they are a small share here)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops()
