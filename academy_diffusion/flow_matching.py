"""Flow matching: a straight path from data to noise, and an ODE that walks it back.

Convention (used everywhere flow matching appears in the package): time ``t`` is continuous in
[0, 1], with ``t = 0`` the clean image and ``t = 1`` pure noise, and the path between them is the
straight line

    x_t = (1 - t) x_0 + t ε,        ε ~ N(0, I)

whose velocity dx_t/dt = ε - x_0 is what the network learns to predict (the "rectified flow" of
Liu et al. 2022, the "conditional flow matching" of Lipman et al. 2022). Sampling integrates
dx/dt = v(x, t) from t = 1 down to t = 0 with Euler or Heun steps. The U-Net is the diffusion
models' one, unchanged: it sees ``t * TIME_SCALE`` through the same sinusoidal embedding, so that
t covers the range the embedding was built for (DDPM's code indices 0..999).

Classifier-free guidance works in velocity space with the course's convention,
v̂ = v_uncond + w (v_cond − v_uncond).

The conversions between ε-, x0- and v-prediction live here too (:func:`x0_and_eps_from_velocity`,
:func:`velocity_from_eps`), for both the straight path and the diffusion models' path
x_t = α x_0 + σ ε.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from .device import autocast, sample_batch_size, synchronize
from .progress import progress_bar
from .samplers import SampleResult, guidance_passes, initial_noise, predict_noise
from .schedules import check_schedule

TIME_SCALE = 1000.0  # the network sees t * TIME_SCALE: the same range as DDPM's timestep index
FLOW_SAMPLERS = ("euler", "heun")


class FlowPath:
    """The straight path x_t = (1 - t) x_0 + t ε, t in [0, 1] (t = 0: data, t = 1: noise).

    It stands where a diffusion model has its :class:`~academy_diffusion.schedules.Schedule`: the
    training loop draws t from it and checkpoints store its :meth:`config`, so that a flow-matching
    model is never sampled with a diffusion sampler (or the reverse) by mistake.
    """

    name = "flow"

    def interpolate(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t for clean images ``x0 [B, C, H, W]``, times ``t [B]`` in [0, 1] and ``noise`` like ``x0``."""
        t = t.view(-1, 1, 1, 1)
        return (1 - t) * x0 + t * noise

    def config(self) -> dict:
        return {"name": self.name, "time_scale": TIME_SCALE}

    def to(self, device) -> FlowPath:  # nothing to move: the path has no tables
        return self

    def __repr__(self) -> str:
        return "FlowPath(x_t = (1 - t) x0 + t eps)"


def draw_times(n: int, device, generator=None) -> torch.Tensor:
    """Training times of one batch: ``[n]`` uniform in [0, 1)."""
    return torch.rand(n, device=device, generator=generator)


def flow_matching_loss(model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                       y=None) -> torch.Tensor:
    """The flow-matching loss of one batch: MSE between the predicted and the true velocity ε − x_0.

    ``x0 [B, C, H, W]`` in [-1, 1], ``t [B]`` in [0, 1], ``noise`` like ``x0``; returns a scalar.
    """
    x_t = FlowPath().interpolate(x0, t, noise)
    return F.mse_loss(model(x_t, t * TIME_SCALE, y).float(), noise - x0)


def predict_velocity(model: nn.Module, x: torch.Tensor, t: torch.Tensor, labels=None, w=None) -> torch.Tensor:
    """The model's velocity at ``x [B, C, H, W]`` and times ``t [B]`` in [0, 1], in fp32.

    Guidance is the same combination as for the noise, in velocity space:
    v_uncond + w (v_cond − v_uncond), in one batched pass (see
    :func:`~academy_diffusion.samplers.predict_noise`, which does the batching for any output).
    """
    return predict_noise(model, x, t * TIME_SCALE, labels, w)


# --- conversions between the three things a network can be trained to predict ----------------------


def x0_and_eps_from_velocity(x_t: torch.Tensor, t, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """On the straight path: x_0 = x_t − t v and ε = x_t + (1 − t) v (``t`` a number or ``[B]``)."""
    t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).reshape(-1, 1, 1, 1)
    return x_t - t * v, x_t + (1 - t) * v


def velocity_from_eps(x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    """On the straight path: the velocity ε − x_0 implied by a noise prediction, v = (ε − x_t) / (1 − t)."""
    t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).reshape(-1, 1, 1, 1)
    return (eps - x_t) / (1 - t)


def diffusion_to_flow(alpha: float, sigma: float) -> tuple[float, float]:
    """Where a diffusion state x = α x_0 + σ ε sits on the straight path: x / (α + σ) is the path's x_t at
    t = σ / (α + σ). Returns ``(scale, t)`` with ``scale = 1 / (α + σ)``. DDIM (η = 0) is Euler's method on
    this rescaled path, which is why the two samplers can be compared at equal network calls."""
    return 1 / (alpha + sigma), sigma / (alpha + sigma)


def path_deviation(states: list[torch.Tensor]) -> torch.Tensor:
    """How far a sampling path strays from a straight line: for each sample, the largest distance of an
    intermediate state from the segment joining the path's two ends, divided by the segment's length.

    ``states``: the path's states in order, each ``[B, C, H, W]`` (first: the noise, last: the sample).
    Returns ``[B]``: 0 for a straight path, whatever its speed along the line (the distance is to the
    segment, not to a point at a given time), 0.25 for a parabola bulging by a quarter of its chord.
    """
    start, end = states[0].flatten(1).double(), states[-1].flatten(1).double()
    chord = end - start
    length2 = chord.pow(2).sum(1, keepdim=True)
    worst = torch.zeros(len(start), dtype=torch.float64)
    for x in states[1:-1]:
        rel = x.flatten(1).double() - start
        along = ((rel * chord).sum(1, keepdim=True) / length2).clamp(0, 1)
        worst = torch.maximum(worst, (rel - along * chord).norm(dim=1))
    return (worst / length2.squeeze(1).sqrt()).float()


def to_flow_coordinates(trajectory: dict, schedule) -> dict:
    """A diffusion trajectory (page level k -> x_k, as :func:`~academy_diffusion.samplers.sample` captures it)
    moved onto the straight path: level k -> (t, x_k / (α + σ)) with t = σ / (α + σ) (:func:`diffusion_to_flow`;
    the clean level k = 0 has α = 1, σ = 0). Returns ``{t: state}``."""
    out = {}
    for k, x in trajectory.items():
        abar = schedule.alpha_bars_host[k - 1] if k > 0 else 1.0
        scale, t = diffusion_to_flow(abar**0.5, (1 - abar) ** 0.5)
        out[t] = x * scale
    return out


# --- sampling: integrate dx/dt = v(x, t) from t = 1 to t = 0 ------------------------------------------


def flow_times(steps: int) -> list[float]:
    """``steps + 1`` evenly spaced times from 1 (noise) down to 0 (data), both included."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return [1 - i / steps for i in range(steps + 1)]


def euler_step(x_t: torch.Tensor, t: float, t_next: float, v: torch.Tensor) -> torch.Tensor:
    """One Euler step of dx/dt = v from ``t`` to ``t_next`` (< t): x + (t_next − t) v."""
    return x_t + (t_next - t) * v


def heun_step(velocity, x_t: torch.Tensor, t: float, t_next: float, v: torch.Tensor) -> torch.Tensor:
    """One Heun step (the trapezoidal rule, second order): an Euler guess, the velocity there, and the
    average of the two velocities. ``velocity(x, t)`` evaluates the network; ``v`` is its value at
    (x_t, t). Two network calls per step."""
    guess = euler_step(x_t, t, t_next, v)
    return x_t + (t_next - t) * 0.5 * (v + velocity(guess, t_next))


@torch.no_grad()
def sample_flow(
    model: nn.Module,
    n: int,
    *,
    sampler: str = "euler",
    steps: int = 20,
    labels: torch.Tensor | None = None,
    w: float | None = None,
    seed: int = 0,
    x_T: torch.Tensor | None = None,
    capture: bool = False,
    batch_size: int | None = None,
    progress: bool = True,
) -> SampleResult:
    """Generate ``n`` images with a flow-matching model: Euler or Heun on dx/dt = v from t = 1 to 0.

    The starting noise comes from :func:`~academy_diffusion.samplers.initial_noise` (the same ``seed``
    gives the same x_T as the diffusion samplers). With ``capture``, ``trajectory`` holds the state at
    every time of :func:`flow_times`, keyed by the time ``t`` (1.0: the noise, 0.0: the sample), and
    ``predicted_x0`` the estimate x_0 = x_t − t v made at each step's start. The sampling is
    deterministic: there is no noise after x_T.
    """
    if sampler not in FLOW_SAMPLERS:
        raise ValueError(f"sampler must be one of {FLOW_SAMPLERS}, got {sampler!r}")
    check_schedule(model, FlowPath())
    times = flow_times(steps)
    device = next(model.parameters()).device
    if x_T is None:
        x_T = initial_noise(n, seed, model.sample_shape)
    if len(x_T) != n or (labels is not None and len(labels) != n):
        raise ValueError(f"x_T and labels must hold n = {n} entries, got {len(x_T)} and "
                         f"{None if labels is None else len(labels)}")
    batch_size = batch_size or sample_batch_size(device, guided=guidance_passes(w) == 2)
    model.eval()

    synchronize(device)
    start = time.perf_counter()
    bar = progress_bar(steps * -(-n // batch_size), f"{sampler} sampling", progress)
    chunks, states, estimates = [], {}, {}
    for lo in range(0, n, batch_size):
        x = x_T[lo : lo + batch_size].to(device)
        y = None if labels is None else labels[lo : lo + batch_size].to(device)

        def velocity(x, t, y=y):
            with autocast(device):
                return predict_velocity(model, x, torch.full((len(x),), t, device=device), y, w)

        if capture:
            states.setdefault(times[0], []).append(x.float().cpu())
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            v = velocity(x, t)
            if capture:
                estimates.setdefault(t_next, []).append((x - t * v).float().cpu())
            x = euler_step(x, t, t_next, v) if sampler == "euler" else heun_step(velocity, x, t, t_next, v)
            if capture:
                states.setdefault(t_next, []).append(x.float().cpu())
            bar.update(1)
        chunks.append(x.float().cpu())
    bar.close()
    synchronize(device)
    seconds = time.perf_counter() - start
    cat = lambda d: {k: torch.cat(v) for k, v in d.items()}
    return SampleResult(torch.cat(chunks), cat(states), cat(estimates), seconds)
