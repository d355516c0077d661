"""Sampling: run the trained noise predictor backwards from pure noise.

Training asks the network one question at a random t; sampling asks it T questions in a row,
feeding each answer back in. Three samplers share the same network:

* DDPM (ancestral): every one of the T steps, adding fresh noise at each (stochastic).
* DDIM: any subsequence of the timesteps; with ``eta = 0`` it is deterministic, so the same
  starting noise always gives the same image, and 20 steps get close to 1000.
* DPM-Solver++(2M): a second-order multistep solver of the same deterministic ODE as DDIM,
  using the last two estimates of x_0; about 10 steps get where DDIM needs 20 or more.

Timestep convention: code index t in 0..T-1 (see :mod:`academy_diffusion.schedules`). The
sampler's state before the step at code index t is the page's x_{t+1}; the trajectory
returned by :func:`sample` is keyed by the page's level k in 0..T (k = T: pure noise,
k = 0: the finished sample).

Classifier-free guidance: eps = eps_uncond + w * (eps_cond - eps_uncond), so w = 1 is plain
conditional sampling and w = 0 unconditional.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .device import autocast, sample_batch_size, synchronize
from .progress import progress_bar
from .schedules import Schedule, ScheduleMismatchError, check_schedule  # noqa: F401 (re-exported)

SAMPLERS = ("ddpm", "ddim", "dpm++2m")
# The guidance scale the course samples the `cfg` model at when one w is needed (lessons 3, 7 and 8):
# the smallest w of lesson 5's sweep at which the shipped model's samples are read as the requested
# digit at least 98 % of the time (the page's accuracy target). FID alone prefers w = 1 on that grid
# (lesson 5). Between the grid's points, at n = 10,000, w = 1.25 does better in FID and just clears
# 98 % (the manifest); the lessons' n = 500 per w cannot resolve that margin, so they keep w = 2.
GUIDANCE_W = 2.0


@dataclass
class SampleResult:
    """What :func:`sample` returns.

    images: ``[n, C, H, W]`` in (roughly) [-1, 1], on the CPU.
    trajectory: page level k -> ``[n, C, H, W]`` state x_k at that level (CPU), for the
        levels asked for with ``capture``.
    predicted_x0: page level k -> the network's estimate of the clean image x̂0 made in the
        step that produced x_k (same levels as ``trajectory``; k = T has none).
    seconds: wall-clock time of the sampling loop.
    """

    images: torch.Tensor
    trajectory: dict = field(default_factory=dict)
    predicted_x0: dict = field(default_factory=dict)
    seconds: float = 0.0


def initial_noise(n: int, seed: int, shape=(1, 28, 28)) -> torch.Tensor:
    """The starting point x_T ~ N(0, I), ``[n, *shape]``, drawn on the CPU from ``seed``.

    Drawn on the CPU so that the same seed gives the same x_T on every device, and two
    samplers (or two guidance scales) can start from exactly the same noise.
    """
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


def cfg_combine(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: ``eps_uncond + w * (eps_cond - eps_uncond)``."""
    return eps_uncond + w * (eps_cond - eps_uncond)


def guidance_passes(w: float | None) -> int:
    """Network passes per step under guidance scale ``w``: 2 (conditional and unconditional), except
    at w = 1 (ε̂ = ε_cond) and w = 0 (ε̂ = ε_uncond), and without guidance (``None``): 1."""
    return 2 if w is not None and w not in (0, 1) else 1


def predict_noise(model: nn.Module, x: torch.Tensor, t: torch.Tensor, labels=None, w=None) -> torch.Tensor:
    """The model's noise estimate at ``x`` (``[B, C, H, W]``), timesteps ``t`` (``[B]``), in fp32.

    With ``labels`` and a guidance scale ``w``, the conditional and unconditional halves run
    in one batched forward pass of ``2B`` images and are combined with :func:`cfg_combine`.
    At w = 1 that combination is ε_cond and at w = 0 it is ε_uncond, so those two scales take a
    single pass of ``B`` images (:func:`guidance_passes`). With ``labels`` and no ``w``: plain
    conditional (the same as w = 1). Nothing here depends on what the network predicts: flow
    matching's velocity goes through this same function (:mod:`academy_diffusion.flow_matching`).
    """
    if w is not None:
        if getattr(model, "num_classes", None) is None:
            raise ValueError("guidance (w) needs a class-conditional model; this one is unconditional")
        if labels is None:
            raise ValueError("guidance (w) needs the class labels to guide towards")
        null = torch.full_like(labels, model.null_class)
        if guidance_passes(w) == 1:  # one of the two predictions has weight zero
            return model(x, t, labels if w == 1 else null).float()
        eps = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).float()
        eps_cond, eps_uncond = eps.chunk(2)
        return cfg_combine(eps_cond, eps_uncond, w)
    return model(x, t, labels).float()


def predict_x0(schedule: Schedule, x_t: torch.Tensor, t: int, eps: torch.Tensor, clip: bool = False):
    """The clean image implied by the noise estimate: ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``.

    With ``clip`` it is clamped to the data range [-1, 1] (what DDPM's reference sampler does):
    at large t, dividing by a tiny sqrt(abar_t) blows any error in eps up, and clipping keeps a
    slightly-wrong network from sending the sampler off the data range.
    """
    x0 = (x_t - schedule.sqrt_one_minus_alpha_bars[t] * eps) / schedule.sqrt_alpha_bars[t]
    return x0.clamp(-1.0, 1.0) if clip else x0


def ddpm_posterior(schedule: Schedule, x_t: torch.Tensor, t: int, eps: torch.Tensor, variance: str = "beta",
                   clip_x0: bool = False):
    """Mean and variance of p(x_{t-1} | x_t) given the predicted noise, at code index ``t``.

    The mean is the true posterior's mean with x_0 replaced by its estimate x0_hat:
        mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) * x0_hat + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) * x_t
    which, without clipping, is the page's (x_t - beta_t / sqrt(1 - abar_t) * eps) / sqrt(alpha_t).
    The variance is beta_t (``"beta"``, DDPM's choice) or the true posterior's beta-tilde_t
    (``"beta_tilde"``). Returns ``(mean [B, C, H, W], variance)``, the variance a 0-d tensor.
    """
    if variance not in ("beta", "beta_tilde"):
        raise ValueError(f"variance must be 'beta' or 'beta_tilde', got {variance!r}")
    x0 = predict_x0(schedule, x_t, t, eps, clip_x0)
    mean = schedule.posterior_mean_coef1[t] * x0 + schedule.posterior_mean_coef2[t] * x_t
    var = schedule.betas[t] if variance == "beta" else schedule.posterior_variance[t]
    return mean, var


# The three steps share one signature: step(schedule, x_t, t, t_next, eps, ...) -> x at t_next, where
# t and t_next are code indices and t_next = -1 means the finished, clean image.


def ddpm_step(schedule, x_t, t: int, t_next: int, eps, noise, variance: str = "beta", clip_x0: bool = False):
    """One ancestral step from code index ``t`` to ``t_next = t - 1``: the posterior mean plus fresh noise
    with the chosen variance (:func:`ddpm_posterior`); no noise is added on the last step (``t = 0``)."""
    if t_next != t - 1:
        raise ValueError(f"DDPM steps one timestep at a time: t_next must be t - 1 = {t - 1}, got {t_next}")
    mean, var = ddpm_posterior(schedule, x_t, t, eps, variance, clip_x0)
    return mean + var.sqrt() * noise if t > 0 else mean


def ddim_step(schedule, x_t, t: int, t_next: int, eps, eta: float = 0.0, noise=None, clip_x0: bool = False):
    """One DDIM step from code index ``t`` to any earlier ``t_next`` (``-1``: the clean image).

    x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)          (clamped to [-1, 1] with clip_x0,
                                                                  and eps then recomputed from it)
    sigma  = eta * sqrt((1 - abar_next) / (1 - abar_t)) * sqrt(1 - abar_t / abar_next)
    x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next - sigma^2) eps + sigma * noise

    eta = 0 is deterministic; eta = 1 matches DDPM's beta-tilde variance.
    """
    abar_t = schedule.alpha_bars[t]
    abar_next = schedule.alpha_bars[t_next] if t_next >= 0 else torch.ones_like(abar_t)
    x0_hat = predict_x0(schedule, x_t, t, eps, clip_x0)
    if clip_x0:  # keep eps consistent with the clipped x0_hat (as guided-diffusion's DDIM does)
        eps = (x_t - abar_t.sqrt() * x0_hat) / (1 - abar_t).sqrt()
    sigma = eta * ((1 - abar_next) / (1 - abar_t) * (1 - abar_t / abar_next)).sqrt()
    x_next = abar_next.sqrt() * x0_hat + (1 - abar_next - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0:
        x_next = x_next + sigma * noise
    return x_next


def dpm_solver_pp_step(schedule: Schedule, x_t, t: int, t_next: int, eps, previous=None, clip_x0: bool = False):
    """One DPM-Solver++(2M) step from code index ``t`` to ``t_next`` (``-1``: the clean image): the
    estimate x0_hat from ``eps`` (:func:`predict_x0`), then :func:`dpm_solver_pp_update`.
    ``previous = (x0_hat_prev, t_prev)`` is the estimate one step earlier (None on the first step)."""
    return dpm_solver_pp_update(schedule, x_t, t, t_next, predict_x0(schedule, x_t, t, eps, clip_x0), previous)


def dpm_solver_pp_update(schedule: Schedule, x_t, t: int, t_next: int, x0_hat, previous=None):
    """DPM-Solver++(2M)'s update, written in the estimate x0_hat it works with.

    With alpha = sqrt(abar), sigma = sqrt(1 - abar), lambda = log(alpha / sigma) (half the
    log-SNR), h = lambda_next - lambda_t and, for the first step, D = x0_hat (first order, which
    is DDIM's update):

        x_next = (sigma_next / sigma_t) x_t - alpha_next (exp(-h) - 1) D

    Afterwards D also uses ``previous = (x0_hat_prev, t_prev)``: with r = h_prev / h,
    D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev (second order). The step to the clean image
    (sigma = 0, h infinite) is first order and returns x0_hat.
    """
    if t_next < 0:
        return x0_hat
    # The coefficients are scalars, computed on the host in float64 (Apple GPUs have no float64).
    abar = schedule.alpha_bars_host
    lam = lambda i: 0.5 * (math.log(abar[i]) - math.log1p(-abar[i]))
    h = lam(t_next) - lam(t)
    d = x0_hat
    if previous is not None:
        x0_prev, t_prev = previous
        r = (lam(t) - lam(t_prev)) / h
        d = (1 + 1 / (2 * r)) * x0_hat - (1 / (2 * r)) * x0_prev
    sigma_ratio = math.sqrt((1 - abar[t_next]) / (1 - abar[t]))
    return sigma_ratio * x_t - (math.sqrt(abar[t_next]) * math.expm1(-h)) * d


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` code indices from ``T - 1`` down to 0, evenly spaced (both ends included)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    if steps == 1:
        return [T - 1]
    return [round((T - 1) * i / (steps - 1)) for i in range(steps - 1, -1, -1)]  # exact: ties go to even


def dpm_timesteps(T: int, steps: int) -> list[int]:
    """DPM-Solver's ``steps`` code indices: ``linspace(0, T - 1, steps + 1)`` rounded, reversed, without 0
    (diffusers' "linspace" spacing). The last step goes from the smallest of them to the clean image."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    return [round((T - 1) * i / steps) for i in range(steps, 0, -1)]


def sampler_timesteps(sampler: str, T: int, steps: int | None = None) -> list[int]:
    """The code indices a sampler evaluates the network at, in order: DDPM all T; DDIM ``steps``
    (default 50, :func:`ddim_timesteps`); DPM-Solver++(2M) ``steps`` (default 20, :func:`dpm_timesteps`)."""
    if sampler == "ddpm":
        return list(range(T - 1, -1, -1))
    if sampler == "ddim":
        return ddim_timesteps(T, steps or 50)
    if sampler == "dpm++2m":
        return dpm_timesteps(T, steps or 20)
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


# One short loop per sampler. Each walks the pairs (t, t_next) of its timesteps, asks the network for
# eps, takes its step and tells ``record`` (a :class:`_Recorder`) what happened.


def _eps(model, x, t: int, y, w):
    with autocast(x.device):
        return predict_noise(model, x, torch.full((len(x),), t, device=x.device), y, w)


def _pairs(timesteps: list[int]):
    return zip(timesteps, [*timesteps[1:], -1], strict=True)


def _ddpm_loop(model, schedule, x, y, w, timesteps, gen, record, *, variance, clip_x0, **_):
    for t, t_next in _pairs(timesteps):
        eps = _eps(model, x, t, y, w)
        noise = torch.randn(x.shape, device=x.device, generator=gen)
        x_next = ddpm_step(schedule, x, t, t_next, eps, noise, variance, clip_x0)
        x = record(t, t_next, x, eps, x_next)
    return x


def _ddim_loop(model, schedule, x, y, w, timesteps, gen, record, *, eta, clip_x0, **_):
    for t, t_next in _pairs(timesteps):
        eps = _eps(model, x, t, y, w)
        noise = torch.randn(x.shape, device=x.device, generator=gen) if eta > 0 else None
        x_next = ddim_step(schedule, x, t, t_next, eps, eta, noise, clip_x0)
        x = record(t, t_next, x, eps, x_next)
    return x


def _dpm_loop(model, schedule, x, y, w, timesteps, gen, record, *, clip_x0, **_):
    previous = None  # the estimate of x0 one step earlier, and its timestep
    for t, t_next in _pairs(timesteps):
        eps = _eps(model, x, t, y, w)
        x0_hat = predict_x0(schedule, x, t, eps, clip_x0)  # dpm_solver_pp_step, keeping x0_hat for the next step
        x_next = dpm_solver_pp_update(schedule, x, t, t_next, x0_hat, previous)
        previous = (x0_hat, t)
        x = record(t, t_next, x, eps, x_next)
    return x


_LOOPS = {"ddpm": _ddpm_loop, "ddim": _ddim_loop, "dpm++2m": _dpm_loop}


class _Recorder:
    """The trajectory bookkeeping of :func:`sample`: keeps the state x_k, and the x̂0 of the step that
    produced it, at each requested page level k (the first state at or below k), chunk by chunk, and
    advances the progress bar. Called once per step; returns the new state."""

    def __init__(self, schedule: Schedule, levels: set, clip_x0: bool, bar):
        self.schedule, self.levels, self.clip_x0, self.bar = schedule, levels, clip_x0, bar
        self.states, self.x0_hats = {}, {}  # level k -> list of [chunk, C, H, W] tensors

    def start(self, x_T: torch.Tensor) -> None:
        """A new chunk begins at x_T (page level T)."""
        T = self.schedule.T
        self.todo = sorted(self.levels - {T}, reverse=True)
        if T in self.levels:
            self.states.setdefault(T, []).append(x_T.float().cpu())

    def __call__(self, t: int, t_next: int, x, eps, x_next):
        self.bar.update(1)
        level = t_next + 1  # the state after this step is the page's x_{t_next + 1}
        if self.todo and self.todo[0] >= level:
            x0_hat = predict_x0(self.schedule, x, t, eps, self.clip_x0).float().cpu()
            while self.todo and self.todo[0] >= level:
                k = self.todo.pop(0)
                self.states.setdefault(k, []).append(x_next.float().cpu())
                self.x0_hats.setdefault(k, []).append(x0_hat)
        return x_next

    def result(self) -> tuple[dict, dict]:
        cat = lambda d: {k: torch.cat(v) for k, v in sorted(d.items())}
        return cat(self.states), cat(self.x0_hats)


@torch.no_grad()
def sample(
    model: nn.Module,
    schedule: Schedule,
    n: int,
    *,
    sampler: str = "ddpm",
    steps: int | None = None,
    timesteps: list[int] | None = None,
    eta: float = 0.0,
    variance: str = "beta",
    labels: torch.Tensor | None = None,
    w: float | None = None,
    seed: int = 0,
    x_T: torch.Tensor | None = None,
    capture=None,
    clip_x0: bool = True,
    batch_size: int | None = None,
    progress: bool = True,
    allow_schedule_mismatch: bool = False,
) -> SampleResult:
    """Generate ``n`` images with DDPM, DDIM or DPM-Solver++(2M), optionally class-conditional and guided.

    Args:
        sampler: ``"ddpm"`` (all T steps; ``variance`` picks beta or beta-tilde), ``"ddim"``
            (``steps`` evenly spaced timesteps, default 50; ``eta`` 0 = deterministic) or
            ``"dpm++2m"`` (DPM-Solver++(2M), ``steps`` network evaluations, default 20).
        timesteps: the code indices to evaluate the network at, descending, instead of the sampler's
            own spacing (DDIM and DPM-Solver++ only; a distilled student has its own grid).
        labels: ``[n]`` digit labels for a class-conditional model; ``w``: guidance scale
            (ε̂ = ε_uncond + w (ε_cond − ε_uncond), see :func:`predict_noise`).
        seed: seeds x_T (see :func:`initial_noise`) and the per-step noise.
        x_T: the starting noise ``[n, C, H, W]``, instead of drawing it from ``seed``.
        capture: page levels k (0..T) whose states to keep in ``trajectory``, or ``"all"``.
            Each requested level records the first state at or below it.
        clip_x0: clamp each step's estimate of x_0 to [-1, 1] (see :func:`predict_x0`); on by
            default, as in DDPM's reference sampler.
        batch_size: images sampled at once; default :func:`~academy_diffusion.device.sample_batch_size`,
            the fastest per image on this device (64 a pass on a CPU, 4,096 on a GPU; two-pass guidance
            halves it, since its pass holds both halves). Stochastic samplers draw their noise
            chunk by chunk, so a run repeats exactly on the same device and precision.
    Returns:
        :class:`SampleResult` with images ``[n, C, H, W]`` on the CPU.
    """
    check_schedule(model, schedule, allow_schedule_mismatch)
    if timesteps is None:
        timesteps = sampler_timesteps(sampler, schedule.T, steps)
    elif (sampler not in ("ddim", "dpm++2m") or steps is not None or not timesteps
          or list(timesteps) != sorted(set(timesteps), reverse=True) or not 0 <= min(timesteps) < schedule.T
          or max(timesteps) >= schedule.T):
        raise ValueError(f"timesteps must be distinct code indices in 0..{schedule.T - 1}, descending, for the "
                         f"ddim or dpm++2m sampler and without steps; got {sampler!r}, steps={steps}, {timesteps}")
    device = next(model.parameters()).device
    schedule = schedule.to(device)
    if x_T is None:
        x_T = initial_noise(n, seed, model.sample_shape)
    if len(x_T) != n:
        raise ValueError(f"x_T holds {len(x_T)} starting images, but n = {n}")
    if labels is not None and len(labels) != n:
        raise ValueError(f"expected {n} labels, got {len(labels)}")
    batch_size = batch_size or sample_batch_size(device, guided=guidance_passes(w) == 2)
    levels = set(range(schedule.T + 1)) if capture == "all" else set(capture or ())
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    model.eval()

    synchronize(device)
    start = time.perf_counter()
    bar = progress_bar(len(timesteps) * -(-n // batch_size), f"{sampler} sampling", progress)
    record = _Recorder(schedule, levels, clip_x0, bar)
    chunks = []
    for lo in range(0, n, batch_size):
        x = x_T[lo : lo + batch_size].to(device)
        y = None if labels is None else labels[lo : lo + batch_size].to(device)
        record.start(x)
        x = _LOOPS[sampler](model, schedule, x, y, w, timesteps, gen, record, variance=variance, eta=eta,
                            clip_x0=clip_x0)
        chunks.append(x.float().cpu())
    bar.close()
    synchronize(device)
    seconds = time.perf_counter() - start
    return SampleResult(torch.cat(chunks), *record.result(), seconds)
