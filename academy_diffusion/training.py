"""The training loop: L_simple (predict the noise), AdamW, an EMA of the weights.

One step, as on the course page:

    t ~ Uniform{0..T-1},  eps ~ N(0, I),  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    loss = || eps - eps_theta(x_t, t, y) ||^2

The data already lives on the device (see :mod:`academy_diffusion.data`), so a batch is an
index into it, and the loop never waits for the GPU: losses are written into a tensor on the
device and read back once at the end (the progress bar reads them every ``log_every`` steps).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .device import autocast, synchronize
from .flow_matching import FlowPath, draw_times, flow_matching_loss
from .progress import progress_bar
from .schedules import Schedule

P_UNCOND = 0.1  # condition dropout for classifier-free guidance (the page's ~10 %)

@dataclass
class TrainResult:
    """What :func:`train` returns.

    losses: float32 ``[steps]`` on the CPU, the batch loss of every optimiser step.
    ema: the exponential moving average of the weights (sample with this one).
    seconds, images_per_second: wall-clock time of the loop and its throughput.
    """

    losses: torch.Tensor
    ema: nn.Module
    seconds: float
    images_per_second: float

    @property
    def steps(self) -> int:
        return len(self.losses)


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to hold the moving average of its weights."""
    return copy.deepcopy(model).eval().requires_grad_(False)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model``, for every parameter, in one fused call."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)


def make_optimizer(params, lr: float, warmup_steps: int, total: int):
    """AdamW (no weight decay) and the course's learning-rate schedule (:func:`lr_factor`) over ``total``
    steps: ``(optimizer, scheduler)``. Every training loop of the package uses this pair."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, warmup_steps, total))


def optimizer_step(opt, sched, loss: torch.Tensor) -> None:
    """One update from ``loss``: clear the old gradients, backpropagate, step, advance the schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()


def show_loss(bar, losses: torch.Tensor, step: int, every: int = 100) -> None:
    """Every ``every`` steps (and at the last), put the mean loss of the last ``every`` steps on the progress
    bar: the loop's only read of the loss from the device."""
    if bar.disable or not ((step + 1) % every == 0 or step + 1 == len(losses)):
        return
    bar.set_postfix(loss=f"{losses[max(0, step + 1 - every) : step + 1].mean().item():.4f}")


def drop_labels(labels: torch.Tensor, null_class: int, p_uncond: float, generator=None) -> torch.Tensor:
    """Replace each label by ``null_class`` with probability ``p_uncond`` (condition dropout for CFG).

    Trains one network to be both conditional and unconditional: ``[B]`` -> ``[B]``.
    """
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < p_uncond
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def diffusion_loss(model, schedule: Schedule, x0, t, noise, y=None) -> torch.Tensor:
    """L_simple for one batch: the MSE between the true and the predicted noise (a scalar)."""
    x_t = schedule.q_sample(x0, t, noise)
    return F.mse_loss(model(x_t, t, y).float(), noise)


@torch.no_grad()
def loss_by_timestep(model, schedule: Schedule, x0: torch.Tensor, timesteps, y=None, seed: int = 0) -> torch.Tensor:
    """L_simple at each code index in ``timesteps``, on the same images ``x0 [B, C, H, W]``.

    Shows where a model fails: the loss curve of training averages over all t and hides it.
    Returns ``[len(timesteps)]`` float32 on the CPU.
    """
    device = next(model.parameters()).device
    x0 = x0.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn(x0.shape, device=device, generator=gen)
    schedule = schedule.to(device)
    out = []
    for t in timesteps:
        tt = torch.full((len(x0),), int(t), device=device)
        with autocast(device):
            out.append(diffusion_loss(model, schedule, x0, tt, noise, y).float())
    return torch.stack(out).cpu()


@torch.no_grad()
def x0_error_by_timestep(model, schedule: Schedule, x0: torch.Tensor, timesteps, y=None, seed: int = 0) -> torch.Tensor:
    """RMS pixel error of the clean image the network implies, at each code index in ``timesteps``.

    x̂0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t, unclipped, on the same images ``x0 [B, C, H, W]`` and the same noise
    as :func:`loss_by_timestep`. Since x̂0 − x0 = −√((1−ᾱ_t)/ᾱ_t) · (ε̂ − ε), an error in ε̂ reaches the
    image amplified by √((1−ᾱ_t)/ᾱ_t): below 1 at low noise, over 100 at the last steps of the linear
    schedule, where samplers start. Returns ``[len(timesteps)]`` float32 on the CPU.
    """
    device = next(model.parameters()).device
    x0 = x0.to(device)
    noise = torch.randn(x0.shape, device=device, generator=torch.Generator(device=device).manual_seed(seed))
    schedule = schedule.to(device)
    out = []
    for t in timesteps:
        tt = torch.full((len(x0),), int(t), device=device)
        x_t = schedule.q_sample(x0, tt, noise)
        with autocast(device):
            eps = model(x_t, tt, y).float()
        x0_hat = (x_t - schedule.sqrt_one_minus_alpha_bars[int(t)] * eps) / schedule.sqrt_alpha_bars[int(t)]
        out.append((x0_hat - x0).pow(2).mean().sqrt())
    return torch.stack(out).cpu()


def train(
    model: nn.Module,
    images: torch.Tensor,
    schedule: Schedule | FlowPath,
    labels: torch.Tensor | None = None,
    *,
    epochs: float | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    lr: float = 2e-3,
    warmup_steps: int = 100,
    ema_decay: float = 0.999,
    p_uncond: float = P_UNCOND,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 100,
    compile: bool = False,
) -> TrainResult:
    """Train ``model`` to predict noise on ``images`` (or, given a flow-matching
    :class:`~academy_diffusion.flow_matching.FlowPath`, the velocity) and return the losses and EMA weights.

    Args:
        model: a :class:`~academy_diffusion.models.UNet` (moved to the images' device).
        images: ``[N, C, H, W]`` in [-1, 1], on the device to train on.
        schedule: the noise schedule; it is recorded on the model (``model.schedule_config``)
            so that sampling with a different one can be caught.
        labels: ``[N]`` class labels, required for a class-conditional model.
        epochs / steps: how long to train; give exactly one. An epoch is N // batch_size steps.
        lr: AdamW's peak learning rate, reached after ``warmup_steps`` and then decayed
            along a cosine to a tenth of it.
        ema_decay: decay of the weight average (with a warm-up: min(decay, (1+k)/(10+k))).
        p_uncond: probability of replacing a label with the null class (classifier-free guidance).
        seed: seeds the batch order, timesteps, noise and label dropout.
        log_every: how often the progress bar reads the loss (the only host sync in the loop).
        compile: wrap the model in ``torch.compile`` (opt-in; slow to start, faster on a GPU).
    """
    device = images.device
    n = len(images)
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs or steps")
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the data set ({n} images)")
    conditional = getattr(model, "num_classes", None) is not None
    if conditional and labels is None:
        raise ValueError("a class-conditional model needs labels to train on")
    if labels is not None and not conditional:
        raise ValueError("labels were given, but the model is unconditional (num_classes=None)")
    flow = isinstance(schedule, FlowPath)
    per_epoch = n // batch_size
    total = int(steps if steps is not None else math.ceil(epochs * per_epoch))

    model.to(device).train()
    schedule = schedule.to(device)
    ema = make_ema(model)
    forward = torch.compile(model) if compile else model
    opt, sched = make_optimizer(model.parameters(), lr, warmup_steps, total)
    gen = torch.Generator(device=device).manual_seed(seed)
    losses = torch.empty(total, device=device)

    synchronize(device)
    start = time.perf_counter()
    bar = progress_bar(total, "training", progress)
    for step in range(total):
        if step % per_epoch == 0:
            order = torch.randperm(n, device=device, generator=gen)
        idx = order[(step % per_epoch) * batch_size : (step % per_epoch + 1) * batch_size]
        x0 = images[idx]
        y = drop_labels(labels[idx], model.null_class, p_uncond, gen) if conditional else None
        if flow:  # flow matching: t uniform in [0, 1), the velocity ε − x0 as target
            t = draw_times(batch_size, device, gen)
        else:  # diffusion: a code index in 0..T-1, the noise as target
            t = torch.randint(0, schedule.T, (batch_size,), device=device, generator=gen)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        with autocast(device):
            if flow:
                loss = flow_matching_loss(forward, x0, t, noise, y)
            else:
                loss = diffusion_loss(forward, schedule, x0, t, noise, y)
        optimizer_step(opt, sched, loss)
        ema_update(ema, model, min(ema_decay, (1 + step) / (10 + step)))
        losses[step] = loss.detach()
        bar.update(1)
        show_loss(bar, losses, step, log_every)
    bar.close()
    synchronize(device)
    seconds = time.perf_counter() - start

    model.eval()
    model.schedule_config = ema.schedule_config = schedule.config()
    return TrainResult(losses.cpu(), ema, seconds, total * batch_size / seconds)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then a cosine down to 0.1 at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
