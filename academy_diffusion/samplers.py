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

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .device import autocast, sample_batch_size, synchronize
from .reporting import progress_bar
from .schedules import Schedule

SAMPLERS = ("ddpm", "ddim", "dpm++2m")


class ScheduleMismatchError(ValueError):
    """Sampling with a schedule other than the one the model was trained with."""


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
    conditional (the same as w = 1).
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


def ddpm_step(schedule, x_t, t: int, eps, noise, variance: str = "beta", clip_x0: bool = False) -> torch.Tensor:
    """One ancestral step from code index ``t`` to ``t - 1``; no noise is added at ``t = 0``."""
    mean, var = ddpm_posterior(schedule, x_t, t, eps, variance, clip_x0)
    return mean + var.sqrt() * noise if t > 0 else mean


def ddim_step(schedule, x_t, t: int, t_prev: int, eps, eta: float = 0.0, noise=None, clip_x0: bool = False):
    """One DDIM step from code index ``t`` to ``t_prev`` (``t_prev = -1`` means the clean image).

    x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)          (clamped to [-1, 1] with clip_x0,
                                                                  and eps then recomputed from it)
    sigma  = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)
    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma * noise

    eta = 0 is deterministic; eta = 1 matches DDPM's beta-tilde variance.
    """
    abar_t = schedule.alpha_bars[t]
    abar_prev = schedule.alpha_bars[t_prev] if t_prev >= 0 else torch.ones_like(abar_t)
    x0_hat = predict_x0(schedule, x_t, t, eps, clip_x0)
    if clip_x0:  # keep eps consistent with the clipped x0_hat (as guided-diffusion's DDIM does)
        eps = (x_t - abar_t.sqrt() * x0_hat) / (1 - abar_t).sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
    x_prev = abar_prev.sqrt() * x0_hat + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0:
        x_prev = x_prev + sigma * noise
    return x_prev


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` code indices from ``T - 1`` down to 0, evenly spaced (both ends included)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    if steps == 1:
        return [T - 1]
    return torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long().tolist()


def dpm_timesteps(T: int, steps: int) -> list[int]:
    """DPM-Solver's ``steps`` code indices: ``linspace(0, T - 1, steps + 1)`` rounded, reversed, without 0
    (diffusers' "linspace" spacing). The last step goes from the smallest of them to the clean image."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    return torch.linspace(0, T - 1, steps + 1, dtype=torch.float64).round().long().flip(0)[:-1].tolist()


def dpm_solver_pp_step(schedule: Schedule, x_t, t: int, t_next: int, x0_hat, previous=None):
    """One DPM-Solver++(2M) step from code index ``t`` to ``t_next`` (``-1``: the clean image).

    With alpha = sqrt(abar), sigma = sqrt(1 - abar) and lambda = log(alpha / sigma) (half the
    log-SNR), h = lambda_next - lambda_t and, for the first step, D = x0_hat (first order, which
    is DDIM's update):

        x_next = (sigma_next / sigma_t) x_t - alpha_next (exp(-h) - 1) D

    Afterwards D also uses ``previous = (x0_hat_prev, t_prev)``, the estimate one step earlier:
    with r = h_prev / h, D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev (second order). The step to
    the clean image (sigma = 0, h infinite) is first order and returns x0_hat.
    """
    if t_next < 0:
        return x0_hat
    lam = 0.5 * schedule.log_snr.double()
    alpha, sigma = schedule.sqrt_alpha_bars.double(), schedule.sqrt_one_minus_alpha_bars.double()
    h = lam[t_next] - lam[t]
    d = x0_hat
    if previous is not None:
        x0_prev, t_prev = previous
        r = (lam[t] - lam[t_prev]) / h
        d = (1 + 1 / (2 * r)).float() * x0_hat - (1 / (2 * r)).float() * x0_prev
    return (sigma[t_next] / sigma[t]).float() * x_t - (alpha[t_next] * torch.expm1(-h)).float() * d


def check_schedule(model: nn.Module, schedule: Schedule, allow_mismatch: bool = False) -> None:
    """Raise :class:`ScheduleMismatchError` when ``model`` was trained with another schedule."""
    trained = getattr(model, "schedule_config", None)
    if trained is not None and trained != schedule.config() and not allow_mismatch:
        raise ScheduleMismatchError(
            f"this model was trained with schedule {trained} but is being sampled with "
            f"{schedule.config()}: a train/sample schedule mismatch gives garbage. Use the training "
            "schedule, or pass allow_schedule_mismatch=True if this is the experiment you mean."
        )


@torch.no_grad()
def sample(
    model: nn.Module,
    schedule: Schedule,
    n: int,
    *,
    sampler: str = "ddpm",
    steps: int | None = None,
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
    """Generate ``n`` images with DDPM or DDIM, optionally class-conditional and guided.

    Args:
        sampler: ``"ddpm"`` (all T steps; ``variance`` picks beta or beta-tilde), ``"ddim"``
            (``steps`` evenly spaced timesteps, default 50; ``eta`` 0 = deterministic) or
            ``"dpm++2m"`` (DPM-Solver++(2M), ``steps`` network evaluations, default 20).
        labels: ``[n]`` digit labels for a class-conditional model; ``w``: guidance scale.
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
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    device = next(model.parameters()).device
    schedule = schedule.to(device)
    T = schedule.T
    if sampler == "ddpm":
        timesteps = list(range(T - 1, -1, -1))
    elif sampler == "ddim":
        timesteps = ddim_timesteps(T, steps or 50)
    else:
        timesteps = dpm_timesteps(T, steps or 20)
    if x_T is None:
        x_T = initial_noise(n, seed, (model.in_channels, 28, 28))
    if len(x_T) != n:
        raise ValueError(f"x_T holds {len(x_T)} starting images, but n = {n}")
    if labels is not None and len(labels) != n:
        raise ValueError(f"expected {n} labels, got {len(labels)}")
    batch_size = batch_size or sample_batch_size(device, guided=guidance_passes(w) == 2)
    wanted = set(range(T + 1)) if capture == "all" else set(capture or ())
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    model.eval()

    chunks, trajectory, estimates = [], {}, {}
    synchronize(device)
    start = time.perf_counter()
    bar = progress_bar(len(timesteps) * -(-n // batch_size), f"{sampler} sampling", progress)
    for lo in range(0, n, batch_size):
        x = x_T[lo : lo + batch_size].to(device)
        y = None if labels is None else labels[lo : lo + batch_size].to(device)
        states = {T: x.cpu()} if T in wanted else {}
        x0_hats = {}
        todo = sorted(wanted - {T}, reverse=True)
        previous = None  # DPM-Solver++'s estimate of x0 one step earlier, and its timestep
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            with autocast(device):
                eps = predict_noise(model, x, torch.full((len(x),), t, device=device), y, w)
            stochastic = sampler == "ddpm" or (sampler == "ddim" and eta > 0)
            noise = torch.randn(x.shape, device=device, generator=gen) if stochastic else None
            x_prev_input = x
            if sampler == "ddpm":
                x = ddpm_step(schedule, x, t, eps, noise, variance, clip_x0)
            elif sampler == "ddim":
                x = ddim_step(schedule, x, t, t_prev, eps, eta, noise, clip_x0)
            else:
                x0_hat = predict_x0(schedule, x, t, eps, clip_x0)
                x = dpm_solver_pp_step(schedule, x, t, t_prev, x0_hat, previous)
                previous = (x0_hat, t)
            level = t_prev + 1
            if todo and todo[0] >= level:  # record every requested level this step reached
                x0_hat = predict_x0(schedule, x_prev_input, t, eps, clip_x0).float().cpu()
            while todo and todo[0] >= level:
                k = todo.pop(0)
                states[k], x0_hats[k] = x.float().cpu(), x0_hat
            bar.update(1)
        chunks.append(x.float().cpu())
        for k, v in states.items():
            trajectory.setdefault(k, []).append(v)
        for k, v in x0_hats.items():
            estimates.setdefault(k, []).append(v)
    bar.close()
    synchronize(device)
    seconds = time.perf_counter() - start
    cat = lambda d: {k: torch.cat(v) for k, v in sorted(d.items())}
    return SampleResult(torch.cat(chunks), cat(trajectory), cat(estimates), seconds)
