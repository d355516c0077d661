"""Progressive distillation with the guidance distilled in: from 2 x 20 network calls to 1.

Two stages, each a short fine-tuning that starts from the teacher's weights:

1. **Guidance distillation** (Meng et al. 2023, "On distillation of guided diffusion models"): a
   student learns to predict, in *one* network call with the digit's label, what the guided teacher
   predicts with two (ε̂ = ε_uncond + w (ε_cond − ε_uncond), at the course's w). Its target at a
   noisy z_t is the teacher's guided estimate of the clean image, x̂0.
2. **Progressive distillation** (Salimans & Ho 2022): each round, a student learns to do in one
   DDIM step what its teacher (the previous student) does in two: N -> N/2 -> ... -> 1 steps.

**The target of a round.** From z_t the teacher takes two DDIM steps, t -> t_mid -> t_next, and lands
on z_next. The student takes one DDIM step t -> t_next, which is
``z_next = α_next x̂ + σ_next (z_t − α_t x̂) / σ_t`` for its estimate x̂ of the clean image. The x̂
that lands exactly on the teacher's z_next is the target:

    x_target = (z_next − (σ_next / σ_t) z_t) / (α_next − (σ_next / σ_t) α_t)

(at the last step t_next is the clean image, σ_next = 0 and α_next = 1, so x_target = z_next).
Here α = sqrt(ᾱ), σ = sqrt(1 − ᾱ): the schedule's ``sqrt_alpha_bars`` and ``sqrt_one_minus_alpha_bars``.

**Why the student predicts v, not ε.** A one-step sampler must turn pure noise into a digit:
x̂0 = (z_T − σ_T ε̂) / α_T, and the linear schedule's α_T is 0.006, so any error in ε̂ is amplified
about 160 times. Salimans & Ho make the student predict v = α ε − σ x0 instead, from which
x̂0 = α z − σ v has no division. :class:`VPrediction` wraps the U-Net so that it still *returns ε*
(ε = α v + σ z): every sampler of the package works with a student unchanged. The loss is the mean
squared error in v.

**Timesteps.** A student with N steps visits :func:`student_timesteps` (DPM-Solver's spacing: it
starts at T − 1 and its last step lands on the clean image), and the grid of 2N steps contains the
grid of N, so each student step is exactly two teacher steps.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from .device import autocast, synchronize
from .progress import progress_bar
from .samplers import dpm_timesteps, predict_noise
from .schedules import Schedule
from .training import TrainResult, ema_update, make_ema, make_optimizer, optimizer_step, show_loss


def _coef(table: torch.Tensor, t: torch.Tensor, clean: float) -> torch.Tensor:
    """``table[t]`` shaped ``[B, 1, 1, 1]``, with ``clean`` where t = −1 (the clean image)."""
    values = table[t.clamp(min=0)]
    return torch.where(t >= 0, values, torch.full_like(values, clean)).view(-1, 1, 1, 1)


def alpha_sigma(schedule: Schedule, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """α_t = sqrt(ᾱ_t) and σ_t = sqrt(1 − ᾱ_t) for code indices ``t [B]`` (−1: the clean image, α = 1,
    σ = 0), each ``[B, 1, 1, 1]``."""
    return _coef(schedule.sqrt_alpha_bars, t, 1.0), _coef(schedule.sqrt_one_minus_alpha_bars, t, 0.0)


class VPrediction(nn.Module):
    """A network read as predicting v = α ε − σ x0, presented as a noise predictor (it returns ε = α v + σ z).

    Wraps a :class:`~academy_diffusion.models.UNet` (``net``); ``schedule`` gives α and σ. The wrapper has
    the attributes the samplers read, so ``sample(VPrediction(net, schedule), schedule, n, ...)`` works.
    """

    def __init__(self, net: nn.Module, schedule: Schedule):
        super().__init__()
        self.net, self.schedule = net, schedule
        self.in_channels, self.num_classes = net.in_channels, net.num_classes
        self.sample_shape, self.config = net.sample_shape, net.config
        self.schedule_config = schedule.config()

    @property
    def null_class(self) -> int:
        return self.net.null_class

    def velocity(self, z: torch.Tensor, t: torch.Tensor, y=None) -> torch.Tensor:
        """The network's raw output, read as v (float32)."""
        return self.net(z, t, y).float()

    def forward(self, z: torch.Tensor, t: torch.Tensor, y=None) -> torch.Tensor:
        if self.schedule.device != z.device:
            self.schedule = self.schedule.to(z.device)
        alpha, sigma = alpha_sigma(self.schedule, t)
        return alpha * self.velocity(z, t, y) + sigma * z.float()


def student_timesteps(T: int, steps: int) -> list[int]:
    """The code indices a student with ``steps`` steps visits (:func:`~academy_diffusion.samplers.dpm_timesteps`);
    sample it with ``sample(student, schedule, n, sampler="ddim", timesteps=student_timesteps(T, steps))``."""
    return dpm_timesteps(T, steps)


def ddim_jump(schedule: Schedule, z: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps: torch.Tensor):
    """One deterministic DDIM step per image from ``t`` to ``t_next`` (tensors ``[B]``; −1: clean), given ε.

    As the package's sampler does (``clip_x0``), x̂0 is clamped to [−1, 1] and ε recomputed from it: the
    student learns the teacher's sampler as the course runs it.
    """
    alpha, sigma = alpha_sigma(schedule, t)
    alpha_next, sigma_next = alpha_sigma(schedule, t_next)
    x0 = ((z - sigma * eps) / alpha).clamp(-1.0, 1.0)
    return alpha_next * x0 + sigma_next * (z - alpha * x0) / sigma


def two_step_target(teacher, schedule: Schedule, z_t, t, t_mid, t_next, labels=None, w=None) -> torch.Tensor:
    """Progressive distillation's target x̂ (``[B, C, H, W]``): the clean image that takes the student
    from ``z_t`` in one DDIM step to where the teacher's two steps t -> t_mid -> t_next land.

    ``teacher`` is any noise predictor (the previous student, or a guided model with ``labels`` and ``w``).
    """
    z_mid = ddim_jump(schedule, z_t, t, t_mid, predict_noise(teacher, z_t, t, labels, w))
    z_next = ddim_jump(schedule, z_mid, t_mid, t_next, predict_noise(teacher, z_mid, t_mid, labels, w))
    alpha, sigma = alpha_sigma(schedule, t)
    alpha_next, sigma_next = alpha_sigma(schedule, t_next)
    ratio = sigma_next / sigma
    return (z_next - ratio * z_t) / (alpha_next - ratio * alpha)


def guided_target(teacher, schedule: Schedule, z_t, t, labels, w: float) -> torch.Tensor:
    """Guidance distillation's target: the guided teacher's estimate of the clean image at ``z_t``,
    x̂0 = (z_t − σ_t ε̂) / α_t with ε̂ = ε_uncond + w (ε_cond − ε_uncond) (two network passes).

    Not clamped: the student learns the teacher's prediction itself (the samplers clamp x̂0 when they
    step, for the student as for the teacher)."""
    alpha, sigma = alpha_sigma(schedule, t)
    return (z_t - sigma * predict_noise(teacher, z_t, t, labels, w)) / alpha


def v_loss(student: VPrediction, schedule: Schedule, z_t, t, x_target, labels=None) -> torch.Tensor:
    """Mean squared error between the student's v and the v that points at ``x_target``:
    v = α ε − σ x with ε = (z_t − α x) / σ."""
    alpha, sigma = alpha_sigma(schedule, t)
    v_target = (alpha * z_t - x_target) / sigma  # = α ε − σ x, written without dividing twice
    return F.mse_loss(student.velocity(z_t, t, labels), v_target)


def distill(student: VPrediction, teacher, schedule: Schedule, images: torch.Tensor, labels: torch.Tensor, *,
            student_steps: int | None, w: float | None = None, train_steps: int, batch_size: int = 64,
            lr: float = 1e-4, warmup_steps: int = 50, ema_decay: float = 0.999, seed: int = 0,
            progress: bool = True) -> TrainResult:
    """One round of distillation: fine-tune ``student`` (starting from its current weights) on ``images``.

    * ``student_steps=None``: guidance distillation. t is any code index; the target is the guided
      ``teacher``'s x̂0 at scale ``w`` (:func:`guided_target`).
    * ``student_steps=N``: progressive distillation into N steps. t is one of :func:`student_timesteps`
      (T, N); the target is the teacher's two DDIM steps on the grid of 2N (:func:`two_step_target`).

    The labels are always given to the student (it is conditional, one call per step). AdamW with the
    course's warm-up and cosine decay, bf16 autocast where native, an EMA of the weights
    (:mod:`academy_diffusion.training`'s pieces). Returns a :class:`~academy_diffusion.training.TrainResult`
    whose ``ema`` is the EMA of the wrapped network.
    """
    device, n = images.device, len(images)
    schedule = schedule.to(device)
    if student_steps is not None:
        fine = torch.tensor(student_timesteps(schedule.T, 2 * student_steps) + [-1], device=device)
    student.to(device).train()
    ema = make_ema(student.net)
    opt, sched = make_optimizer(student.net.parameters(), lr, warmup_steps, train_steps)
    gen = torch.Generator(device=device).manual_seed(seed)
    losses = torch.empty(train_steps, device=device)
    synchronize(device)
    start = time.perf_counter()
    bar = progress_bar(train_steps, "distilling" if student_steps is None else f"distilling to {student_steps} steps",
                       progress)
    for step in range(train_steps):
        idx = torch.randint(0, n, (batch_size,), device=device, generator=gen)
        x0, y = images[idx], labels[idx]
        if student_steps is None:
            t = torch.randint(0, schedule.T, (batch_size,), device=device, generator=gen)
        else:  # a student step starts at an even position of the fine grid: fine[2i] -> fine[2i+1] -> fine[2i+2]
            i = 2 * torch.randint(0, student_steps, (batch_size,), device=device, generator=gen)
            t, t_mid, t_next = fine[i], fine[i + 1], fine[i + 2]
        noise = torch.randn(x0.shape, device=device, generator=gen)
        z_t = schedule.q_sample(x0, t, noise)
        with torch.no_grad(), autocast(device):
            if student_steps is None:
                target = guided_target(teacher, schedule, z_t, t, y, w)
            else:
                target = two_step_target(teacher, schedule, z_t, t, t_mid, t_next, y)
        with autocast(device):
            loss = v_loss(student, schedule, z_t, t, target.float(), y)
        optimizer_step(opt, sched, loss)
        ema_update(ema, student.net, min(ema_decay, (1 + step) / (10 + step)))
        losses[step] = loss.detach()
        bar.update(1)
        show_loss(bar, losses, step)
    bar.close()
    synchronize(device)
    seconds = time.perf_counter() - start
    student.eval()
    return TrainResult(losses.cpu(), ema, seconds, train_steps * batch_size / seconds)
