"""Noise schedules and the forward process q(x_t | x_0).

Convention (used everywhere in the package): timesteps run ``t = 0 .. T-1`` in code.
Code index ``t`` is the page's step ``t + 1``: ``betas[t]`` is the page's beta_{t+1}, and
``alpha_bars[t] = prod_{s <= t} (1 - betas[s])`` is the signal kept after ``t + 1`` noising
steps. ``x_0`` is the clean image; pure noise is reached at code index ``T - 1``.
"""

from __future__ import annotations

import copy
import math

import torch

SCHEDULES = ("linear", "cosine", "sigmoid")


class ScheduleMismatchError(ValueError):
    """Sampling with a schedule other than the one the model was trained with."""


def _check_T(T: int) -> None:
    if not isinstance(T, int) or T <= 0:
        raise ValueError(f"the number of timesteps T must be a positive integer, got {T!r}")


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule: beta rises evenly from ``beta_start`` to ``beta_end``. Shape ``[T]``."""
    _check_T(T)
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule. Shape ``[T]``.

    alpha_bar(u) = cos^2((u + s) / (1 + s) * pi / 2) for u in [0, 1], and
    beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T), capped at ``max_beta`` so the last
    steps (where alpha_bar reaches 0) stay finite.
    """
    _check_T(T)

    def f(u):
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    u = torch.arange(T + 1, dtype=torch.float64) / T
    return (1 - f(u[1:]) / f(u[:-1])).clamp(max=max_beta)


def sigmoid_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """A sigmoid-shaped rise from ``beta_start`` to ``beta_end`` (over -6..6). Shape ``[T]``."""
    _check_T(T)
    return torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64)) * (beta_end - beta_start) + beta_start


_BETA_FNS = {"linear": linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas}


class Schedule:
    """Everything the training loop and the samplers need about one noise schedule.

    Each table is computed in float64 on the CPU from the float64 betas, then stored as float32
    (Apple GPUs have no float64, so nothing float64 ever moves to the device). Every tensor has
    shape ``[T]``, indexed by code timestep t (see the module docstring). :meth:`to` moves the
    float32 tables as they are; it never recomputes them.
    """

    name: str
    betas: torch.Tensor  # beta_t
    alphas: torch.Tensor  # alpha_t = 1 - beta_t
    alpha_bars: torch.Tensor  # abar_t = prod_{s <= t} alpha_s
    alpha_bars_prev: torch.Tensor  # abar_{t-1}, with 1 at t = 0
    sqrt_alpha_bars: torch.Tensor  # sqrt(abar_t): how much of x_0 is left in x_t
    sqrt_one_minus_alpha_bars: torch.Tensor  # sqrt(1 - abar_t): the noise's standard deviation in x_t
    posterior_variance: torch.Tensor  # beta-tilde_t, the variance of q(x_{t-1} | x_t, x_0); 0 at t = 0
    posterior_mean_coef1: torch.Tensor  # the posterior mean is coef1 * x_0 + coef2 * x_t
    posterior_mean_coef2: torch.Tensor
    log_snr: torch.Tensor  # log(abar_t / (1 - abar_t))
    alpha_bars_host: tuple  # abar_t as Python floats (float64), for coefficients computed on the host

    def __init__(self, name: str, betas: torch.Tensor):
        self.name = name
        for key, value in _tables(betas).items():
            setattr(self, key, value)

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device) -> Schedule:
        """This schedule with its (float32) tensors on ``device``."""
        moved = copy.copy(self)
        for key, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(moved, key, value.to(device))
        return moved

    def config(self) -> dict:
        """What identifies the schedule (saved in checkpoints): its name and T."""
        return {"name": self.name, "T": self.T}

    def matches(self, other: Schedule) -> bool:
        """True when both schedules have the same length and the same betas."""
        return self.T == other.T and torch.allclose(self.betas.cpu(), other.betas.cpu(), rtol=1e-5, atol=1e-8)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Jump from x_0 to x_t in one step: ``sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise``.

        Args:
            x0: clean images ``[B, C, H, W]`` in [-1, 1].
            t: integer timesteps ``[B]`` in 0..T-1 (code convention, see module docstring).
            noise: standard normal noise, same shape as ``x0``.
        """
        a = self.sqrt_alpha_bars[t].view(-1, 1, 1, 1)
        b = self.sqrt_one_minus_alpha_bars[t].view(-1, 1, 1, 1)
        return a * x0 + b * noise

    def __repr__(self) -> str:
        return f"Schedule({self.name!r}, T={self.T}, device={self.device})"


def _tables(betas: torch.Tensor) -> dict:
    """The schedule's tables from its betas ``[T]``: computed in float64 on the CPU, returned as float32
    CPU tensors (and ``alpha_bars_host``, the float64 abar_t as Python floats)."""
    betas = betas.detach().cpu().double()
    alphas = 1 - betas
    alpha_bars = torch.cumprod(alphas, dim=0)
    alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
    tables = {
        "betas": betas,
        "alphas": alphas,
        "alpha_bars": alpha_bars,
        "alpha_bars_prev": alpha_bars_prev,
        "sqrt_alpha_bars": alpha_bars.sqrt(),
        "sqrt_one_minus_alpha_bars": (1 - alpha_bars).sqrt(),
        "posterior_variance": betas * (1 - alpha_bars_prev) / (1 - alpha_bars),
        "posterior_mean_coef1": alpha_bars_prev.sqrt() * betas / (1 - alpha_bars),
        "posterior_mean_coef2": alphas.sqrt() * (1 - alpha_bars_prev) / (1 - alpha_bars),
        "log_snr": alpha_bars.log() - (1 - alpha_bars).log(),
    }
    return {**{k: v.float() for k, v in tables.items()}, "alpha_bars_host": tuple(alpha_bars.tolist())}


def make_schedule(name: str = "linear", T: int = 1000, device="cpu") -> Schedule:
    """Build a named schedule (``"linear"``, ``"cosine"`` or ``"sigmoid"``) with ``T`` steps."""
    if name not in _BETA_FNS:
        raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
    return Schedule(name, _BETA_FNS[name](T)).to(device)


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The forward jump ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (see :meth:`Schedule.q_sample`)."""
    return schedule.q_sample(x0, t, noise)


def check_schedule(model: torch.nn.Module, schedule: Schedule, allow_mismatch: bool = False) -> None:
    """Raise :class:`ScheduleMismatchError` when ``model`` was trained with another schedule."""
    trained = getattr(model, "schedule_config", None)
    if trained is not None and trained != schedule.config() and not allow_mismatch:
        raise ScheduleMismatchError(
            f"this model was trained with schedule {trained} but is being sampled with "
            f"{schedule.config()}: a train/sample schedule mismatch gives garbage. Use the training "
            "schedule, or pass allow_schedule_mismatch=True if this is the experiment you mean."
        )
