"""Checks for the exercises: test a student's function against the package's reference and say
what is wrong in words a student can act on.

Each ``check_*`` function takes the student's function and runs it on small inputs that vary
every argument (sizes, T, s, η, dtypes, uneven x, ...). It computes the reference first, calls
the student's function on *copies* of the inputs (and fails clearly if the function changed
them in place), and either prints a line starting with "✓" or raises :class:`CheckFailed` with
a diagnosis: it tries the usual mistakes (an off-by-one in ᾱ, a missing square root, swapped
terms, ...) and names the one that matches. An exception raised by the student's code comes back
as a check message with a hint. Tolerances are relative to the values' scale, loose enough for an
answer computed in float32. Shapes and conventions are those of the package (code timesteps
0..T-1, images in [-1, 1], guidance ε_uncond + w (ε_cond − ε_uncond)).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics, samplers, schedules
from ..device import precision
from ..models import UNet


class CheckFailed(AssertionError):
    """The student's function gave a wrong answer; the message says how."""


# --- helpers -------------------------------------------------------------------------------------

def _as64(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach()).double()


def _close(a, b, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Equal up to a tolerance relative to the scale of ``b`` (float32 round-off passes)."""
    a, b = _as64(a), _as64(b)
    scale = b.abs().max().item() if b.numel() else 1.0
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol * max(1.0, scale)))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _ok(message: str) -> None:
    print(f"✓ {message}")


def _tensor(value, name: str) -> torch.Tensor:
    _require(isinstance(value, torch.Tensor), f"{name} should return a torch.Tensor, got {type(value).__name__}")
    return value


HINTS = [
    ("must match the size of tensor", "shapes do not broadcast: index ᾱ with t and reshape it to [B, 1, 1, 1] "
     "(alpha_bars[t].view(-1, 1, 1, 1)) so that it multiplies each image"),
    ("only integer tensors", "index with an integer tensor or int: t is a LongTensor of timesteps"),
    ("'int' object has no attribute", "t may arrive as a Python int: torch.as_tensor(t) or plain indexing "
     "works for both"),
    ("backward through the graph a second time", "the function must not call loss.backward(): the training "
     "loop does that once per step"),
    ("not subscriptable", "index the tensor you were given (alpha_bars[t], x[i]), not a number"),
]


def _copy(value):
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.clone() if isinstance(value, torch.Tensor) else value.copy()
    return value


def _call(fn, name: str, *args, **kwargs):
    """Call the student's ``fn`` on copies of its tensor and array inputs (models, optimisers and
    generators are passed as they are); turn its exceptions into check messages and fail if it
    changed an input in place (the caller's reference was computed on the originals)."""
    copies = ([_copy(a) for a in args], {k: _copy(v) for k, v in kwargs.items()})
    try:
        out = fn(*copies[0], **copies[1])
    except (CheckFailed, NotImplementedError):  # a stub not yet written says so itself
        raise
    except Exception as err:  # the student's code raised: explain it
        text = f"{type(err).__name__}: {err}"
        hint = next((h for key, h in HINTS if key in str(err)), "read the error above and check the shapes "
                    "and types your function works with")
        raise CheckFailed(f"{name} raised {text[:300]}\nHint: {hint}") from err
    for i, (orig, mine) in enumerate(zip(args, copies[0], strict=True)):
        if isinstance(orig, (torch.Tensor, np.ndarray)) and not _close(mine, orig, 0, 0):
            raise CheckFailed(f"{name} changed its input number {i + 1} in place (an operation like += or "
                              "[...] = on an argument): compute into a new tensor, e.g. out = a + w * b, and "
                              "leave the arguments untouched")
    return out


def _first_match(out, diagnoses, rtol=1e-4, ref=None) -> str | None:
    """The message of the first wrong answer in ``diagnoses`` that ``out`` equals (skipping any that
    coincide with the right answer ``ref`` for these inputs)."""
    for wrong, why in diagnoses:
        if ref is not None and _close(wrong, ref, rtol):
            continue
        if _close(out, wrong, rtol):
            return why
    return None


# --- lesson 1: q_sample, the L_simple step, the reverse step, the training step ------------------

def _q(abar, x0, noise):
    a = abar.view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def check_q_sample(fn) -> None:
    """``fn(x0, t, noise, alpha_bars) -> x_t`` with x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) noise."""
    g = torch.Generator().manual_seed(0)
    for name, T, t in (("linear", 1000, [0, 10, 500, 999]), ("cosine", 50, [3, 49, 0]), ("linear", 200, [7])):
        s = schedules.make_schedule(name, T)
        t = torch.tensor(t)
        x0 = torch.rand(len(t), 1, 28, 28, generator=g) * 2 - 1
        noise = torch.randn(len(t), 1, 28, 28, generator=g)
        ref = s.q_sample(x0, t, noise)
        out = _tensor(_call(fn, "q_sample", x0, t, noise, s.alpha_bars), "q_sample")
        _require(out.shape == x0.shape, f"x_t should have the shape of x0, {list(x0.shape)}; yours is "
                 f"{list(out.shape)}")
        if _close(out, ref):
            continue
        ab = s.alpha_bars
        why = _first_match(out, [
            (_q(s.alpha_bars_prev[t], x0, noise), "you used ᾱ one step too early (ᾱ_{t-1}): index alpha_bars "
             "with t itself"),
            (_q(ab[(t + 1).clamp(max=T - 1)], x0, noise), "you used ᾱ one step too late (ᾱ_{t+1}): index "
             "alpha_bars with t itself"),
            (_q(s.alphas[t], x0, noise), "you used α_t = 1 − β_t (one step) instead of ᾱ_t (the product over "
             "all steps up to t)"),
            (ab[t].view(-1, 1, 1, 1) * x0 + (1 - ab[t]).view(-1, 1, 1, 1) * noise,
             "you forgot the square roots: x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε"),
            (_q(ab[t], noise, x0), "x0 and the noise are swapped: the signal gets sqrt(ᾱ_t), the noise "
             "sqrt(1 − ᾱ_t)"),
            (_q(ab[t[:1]].expand(len(t)), x0, noise), "every image got the first image's timestep: use one "
             "ᾱ per image, alpha_bars[t] with t of shape [B]"),
        ], ref=ref)
        _require(why is None, f"q_sample is wrong: {why}.")
        worst = (out - ref).abs().flatten(1).max(1).values
        raise CheckFailed(f"q_sample is wrong ({name} schedule, T = {T}); the largest error per image at t = "
                          f"{t.tolist()} is {[round(v, 4) for v in worst.tolist()]}")
    _ok("q_sample matches the forward jump for several schedules, T and batch sizes")


class _Recorder(torch.nn.Module):
    """A stand-in network that remembers its inputs and returns a fixed guess."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t, y=None):
        self.seen = (x.detach().clone(), torch.as_tensor(t).detach().clone())
        self.calls = getattr(self, "calls", 0) + 1
        return self.w * x.flip(-1)


def check_l_simple(fn) -> None:
    """``fn(model, x0, t, noise, alpha_bars) -> loss``: the MSE between noise and model(x_t, t)."""
    s = schedules.make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(6, 1, 28, 28, generator=g) * 2 - 1, torch.randn(6, 1, 28, 28, generator=g)
    t = torch.tensor([0, 1, 99, 500, 998, 999])
    x_t = s.q_sample(x0, t, noise)
    pred = 0.5 * x_t.flip(-1)
    ref = ((noise - pred) ** 2).mean()
    model = _Recorder()
    loss = _tensor(_call(fn, "l_simple", model, x0, t, noise, s.alpha_bars), "l_simple")
    _require(loss.ndim == 0, f"the loss should be a single number (a 0-d tensor), got shape {list(loss.shape)}")
    _require(model.w.grad is None, "l_simple called loss.backward() itself: return the loss and let the "
             "training loop call backward() once per step")
    _require(loss.requires_grad, "the loss carries no gradient: do not call .item() or .detach() on it")
    _require(hasattr(model, "seen"), "the model was never called")
    x_in, t_in = model.seen
    _require(not _close(x_in, x0), "the model got the clean x0: feed it the noised x_t = q_sample(x0, t, noise)")
    _require(_close(x_in, x_t), "the model's input is not x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε")
    for shift in (1, -1):
        _require(not torch.equal(t_in.long(), t + shift), f"the model got t {shift:+d}: give it the same code "
                 "index t that picked ᾱ_t (code indices already run 0..T-1)")
    _require(torch.equal(t_in.long(), t), "the model must get the timesteps t of each image")
    _require(not _close(loss, ((x0 - pred) ** 2).mean()), "you compared the prediction with x0: "
             "the network predicts the noise ε, so the target is ε")
    _require(not _close(loss, ((noise - pred) ** 2).sum()), "use the mean squared error, not the sum")
    _require(not _close(loss, ((noise - pred) ** 2).mean().sqrt()), "that is the root of the mean squared error: "
             "L_simple is the mean squared error itself")
    _require(_close(loss, ref), "the loss should be ((ε − ε_θ(x_t, t))²).mean()")
    _ok("l_simple noises x0 to x_t, asks the model for ε, and returns the mean squared error")


def check_ddpm_step(fn) -> None:
    """``fn(x_t, eps, t, betas, alpha_bars, noise, variance) -> x_{t-1}``: one ancestral DDPM step.

    Mean: (x_t − β_t/√(1 − ᾱ_t) · ε) / √α_t; variance β_t (``"beta"``) or β̃_t (``"beta_tilde"``);
    no noise on the last step (t = 0).
    """
    g = torch.Generator().manual_seed(9)
    for name, T in (("linear", 1000), ("cosine", 100)):
        s = schedules.make_schedule(name, T)
        x, eps, noise = (torch.randn(3, 1, 28, 28, generator=g) for _ in range(3))
        for t in (T - 1, T // 2, 1, 0):
            for variance in ("beta", "beta_tilde"):
                ref = samplers.ddpm_step(s, x, t, t - 1, eps, noise, variance)
                out = _call(fn, "reverse_step", x, eps, t, s.betas, s.alpha_bars, noise, variance)
                out = _tensor(out, "reverse_step")
                if _close(out, ref, 1e-3, 1e-4):
                    continue
                mean, var = samplers.ddpm_posterior(s, x, t, eps, variance)
                other = "beta_tilde" if variance == "beta" else "beta"
                other_std = samplers.ddpm_posterior(s, x, t, eps, other)[1].sqrt()
                a, b, ab = s.alphas[t], s.betas[t], s.alpha_bars[t]
                z = noise if t > 0 else 0 * noise
                why = _first_match(out, [
                    (mean + var.sqrt() * noise if t == 0 else mean + float("nan"),
                     "the last step (t = 0) adds no noise: return the mean there"),
                    (mean if t > 0 else mean + float("nan"), "you returned the mean only: add sqrt(variance) · noise "
                     "(except at t = 0)"),
                    (mean + other_std * z, f"with variance = {variance!r} you used the other variance (β_t is 'beta', "
                     "β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t is 'beta_tilde')"),
                    (mean + var * z, "the noise is scaled by the standard deviation sqrt(variance), not the variance"),
                    ((x - b / (1 - ab) * eps) / a.sqrt() + var.sqrt() * z,
                     "the noise coefficient is β_t / sqrt(1 − ᾱ_t), with the square root"),
                    ((x - b / (1 - ab).sqrt() * eps) * a.sqrt() + var.sqrt() * z,
                     "divide by sqrt(α_t), do not multiply"),
                    ((x - b / (1 - ab).sqrt() * eps) / ab.sqrt() + var.sqrt() * z,
                     "divide by sqrt(α_t) of this one step, not by sqrt(ᾱ_t)"),
                ], ref=ref)
                _require(why is None, f"reverse_step is wrong at t = {t} ({name}, T = {T}): {why}.")
                raise CheckFailed(f"reverse_step is wrong at t = {t} ({name}, T = {T}, variance {variance!r}): largest "
                                  f"error {(out - ref).abs().max():.4g}. The mean is (x_t − β_t / sqrt(1 − ᾱ_t) ε) / "
                                  "sqrt(α_t)")
    _ok("reverse_step matches the posterior mean with both variances, and adds no noise at t = 0")


class _Linear(torch.nn.Module):
    """A stand-in noise predictor with one weight, ``w * x``, recording the timesteps it is given."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.3))
        self.ts = []

    def forward(self, x, t, y=None):
        self.ts.append(torch.as_tensor(t).detach().clone())
        return self.w * x


def _reference_train_step(model, opt, x0, alpha_bars, generator):
    t = torch.randint(0, len(alpha_bars), (len(x0),), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    loss = ((noise - model(_q(alpha_bars[t], x0, noise), t)) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def check_train_step(fn) -> None:
    """``fn(model, optimizer, x0, alpha_bars, generator) -> float``: one optimiser step of L_simple.

    Draws t ~ U{0..T-1} (``torch.randint(0, T, (B,), generator=generator)``), then the noise
    (``torch.randn(x0.shape, generator=generator)``), computes the loss, and runs
    zero_grad / backward / step. Returns the loss as a Python float.
    """
    s = schedules.make_schedule("linear", 50)
    x0 = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ref_model, mine = _Linear(), _Linear()
    ref_opt, my_opt = torch.optim.SGD(ref_model.parameters(), lr=0.1), torch.optim.SGD(mine.parameters(), lr=0.1)
    ref_losses, my_losses, w0 = [], [], mine.w.item()
    for step in range(3):
        gen = torch.Generator().manual_seed(step)
        ref_losses.append(_reference_train_step(ref_model, ref_opt, x0, s.alpha_bars, gen))
        out = _call(fn, "train_step", mine, my_opt, x0, s.alpha_bars, torch.Generator().manual_seed(step))
        _require(isinstance(out, float), f"train_step should return the loss as a Python float (loss.item()), got "
                 f"{type(out).__name__}")
        my_losses.append(out)
    _require(len(mine.ts) >= 1, "the model was never called")
    t_all = torch.cat([t.flatten() for t in mine.ts])
    _require(t_all.min() >= 0 and t_all.max() <= 49, f"t must be a code index in 0..T-1 = 0..49, yours ranged "
             f"{t_all.min().item()}..{t_all.max().item()}")
    _require(mine.w.item() != w0, "the weights never changed: call optimizer.step() after loss.backward()")
    _require(math.isclose(my_losses[0], ref_losses[0], rel_tol=1e-4),
             f"the loss of the first step is {my_losses[0]:.5f}, expected {ref_losses[0]:.5f}: draw t with "
             "torch.randint(0, T, (B,), generator=generator) first, then the noise with torch.randn(x0.shape, "
             "generator=generator), and return the MSE against the noise")
    _require(all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(my_losses, ref_losses, strict=True))
             and math.isclose(mine.w.item(), ref_model.w.item(), rel_tol=1e-5),
             "the first step is right but later ones drift: call optimizer.zero_grad() every step (else the "
             "gradients of earlier steps pile up), then backward(), then step(), once per call")
    _ok("train_step draws t in 0..T-1, returns the L_simple loss and takes exactly one optimiser step")


def check_ema_update(fn) -> None:
    """``fn(ema, model, decay)``: every EMA parameter ← decay · ema + (1 − decay) · model, in place."""
    torch.manual_seed(4)
    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    for decay in (0.9, 0.5, 0.999):
        before = [p.detach().clone() for p in ema.parameters()]
        expected = [decay * e + (1 - decay) * m.detach() for e, m in zip(before, model.parameters(), strict=True)]
        with torch.no_grad():
            _call(fn, "ema_update", ema, model, decay)
        got = [p.detach() for p in ema.parameters()]
        if all(_close(a, b) for a, b in zip(got, expected, strict=True)):
            continue
        swapped = [(1 - decay) * e + decay * m.detach() for e, m in zip(before, model.parameters(), strict=True)]
        _require(not all(_close(a, b) for a, b in zip(got, swapped, strict=True)),
                 f"decay {decay}: the weights are swapped: the EMA keeps decay · ema and takes (1 − decay) · model")
        _require(not all(_close(a, b) for a, b in zip(got, before, strict=True)),
                 "the EMA did not change: update its parameters in place (p_ema.mul_(decay).add_(...), or "
                 "p_ema.copy_(...)): rebinding a local name changes nothing")
        raise CheckFailed(f"ema_update is wrong at decay {decay}: ema ← decay · ema + (1 − decay) · model")
    _ok("ema_update moves each EMA parameter (1 − decay) of the way towards the model")


# --- lesson 2: the cosine schedule --------------------------------------------------------------

def _cosine_mistakes(T: int, s: float, max_beta: float, ref: torch.Tensor, where: str) -> list:
    """The usual wrong cosine schedules, each with what it gets wrong."""
    u = torch.arange(T + 1, dtype=torch.float64) / T

    def betas_from(abar):
        return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)

    angle = (u + s) / (1 + s) * math.pi / 2
    uncapped = 1 - (torch.cos(angle[1:]) ** 2) / (torch.cos(angle[:-1]) ** 2)
    return [
        (schedules.linear_betas(T), "these are the linear schedule's betas, not the cosine ones: define ᾱ(u) = "
         "cos²((u + s)/(1 + s) · π/2) and take β_t = 1 − ᾱ((t+1)/T) / ᾱ(t/T)"),
        (schedules.cosine_betas(T, s=0.008, max_beta=max_beta), f"{where} you used the default s = 0.008: use the "
         "argument s"),
        (schedules.cosine_betas(T, s=s, max_beta=0.999), f"{where} you capped at 0.999: use the argument max_beta"),
        (schedules.cosine_betas(T, s=0.0, max_beta=max_beta), "you left out the offset s in "
         "cos²((u + s)/(1 + s) · π/2): without it the first β is ~0"),
        (uncapped, f"the largest β is {uncapped.max():.4f}: cap β at max_beta, else the last step divides by "
         "sqrt(1 − β) = 0"),
        (betas_from(torch.sin(angle) ** 2), "you used sin² where the schedule has cos²"),
        (betas_from(torch.cos(angle)), "ᾱ(u) is cos *squared*: cos²((u + s)/(1 + s) · π/2)"),
        (betas_from(torch.cos((u + s) / (1 + s)) ** 2), "the argument of cos² ends with · π/2: "
         "cos²((u + s)/(1 + s) · π/2)"),
        (torch.cat([torch.zeros(1, dtype=torch.float64), ref[:-1]]), "the betas start one step late: β_0 = 0 "
         "means ᾱ_0 = 1; the first β is 1 − ᾱ(1/T) / ᾱ(0)"),
        (torch.cat([ref[1:], ref[-1:]]), "the betas start one step early: the first β is 1 − ᾱ(1/T) / ᾱ(0)"),
    ]


def check_cosine_betas(fn) -> None:
    """``fn(T, s=0.008, max_beta=0.999) -> betas [T]``, Nichol & Dhariwal's cosine schedule."""
    cases = [(1000, 0.008, 0.999), (200, 0.02, 0.999), (50, 0.008, 0.3), (1000, 0.0, 0.999)]
    for T, s, max_beta in cases:
        ref = schedules.cosine_betas(T, s=s, max_beta=max_beta).double()
        out = _tensor(_call(fn, "cosine_betas", T, s=s, max_beta=max_beta), "cosine_betas")
        _require(out.shape == (T,), f"cosine_betas({T}) should give T = {T} betas, got shape {list(out.shape)}")
        if _close(out, ref, 1e-4, 1e-6):
            continue
        where = f"for T = {T}, s = {s}, max_beta = {max_beta}"
        why = _first_match(out, _cosine_mistakes(T, s, max_beta, ref, where), rtol=1e-5, ref=ref)
        _require(why is None, f"cosine_betas is wrong {where}: {why}.")
        if _close(out, ref, 1e-2, 1e-3):
            raise CheckFailed(f"cosine_betas is close but not right {where} (largest error "
                              f"{(out.double() - ref).abs().max():.2e}): compute in float64, as "
                              "torch.arange(T + 1, dtype=torch.float64)")
        bad = int((out.double() - ref).abs().argmax())
        raise CheckFailed(f"cosine_betas differs from the reference {where}, most at t = {bad}: "
                          f"{out[bad]:.6f} vs {ref[bad]:.6f}. Check the offset s and the ratio ᾱ((t+1)/T) / ᾱ(t/T)")
    _ok("cosine_betas matches the reference for several T, s and max_beta")


# --- lesson 3: DDIM -----------------------------------------------------------------------------

def check_ddim_step(fn) -> None:
    """``fn(x_t, eps, abar_t, abar_prev, eta, noise) -> x_prev`` (see the lesson for the formula)."""
    g = torch.Generator().manual_seed(2)
    x, eps, noise = (torch.randn(3, 1, 28, 28, generator=g) for _ in range(3))
    s = schedules.make_schedule("linear", 1000)
    for t, t_prev in ((999, 949), (500, 450), (40, -1)):
        abar_t = s.alpha_bars[t]
        abar_prev = s.alpha_bars[t_prev] if t_prev >= 0 else torch.tensor(1.0)
        for eta in (0.0, 0.5, 1.0):
            ref = samplers.ddim_step(s, x, t, t_prev, eps, eta, noise)
            out = _tensor(_call(fn, "ddim_jump", x, eps, abar_t, abar_prev, eta, noise), "ddim_jump")
            if _close(out, ref, 1e-3):
                continue
            x0 = (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
            sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
            direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt()
            where = f"at t = {t} -> {t_prev}, eta = {eta}"
            why = _first_match(out, [
                (samplers.ddim_step(s, x, t, t_prev, eps, 0.0, noise) if eta > 0 else ref * 0 + float("nan"),
                 "your step ignores eta: it must add σ·noise (and shrink the direction term by σ²)"),
                (abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps + sigma * noise,
                 "the direction term should be sqrt(1 − ᾱ_prev − σ²)·ε: you left out the −σ²"),
                (abar_prev.sqrt() * x0 + (1 - abar_t - sigma**2).clamp(min=0).sqrt() * eps + sigma * noise,
                 "the direction term uses ᾱ_prev (where you are going), not ᾱ_t: sqrt(1 − ᾱ_prev − σ²)·ε"),
                (abar_prev.sqrt() * x0 - direction * eps + sigma * noise,
                 "the direction term points the wrong way: it is + sqrt(1 − ᾱ_prev − σ²)·ε"),
                (abar_t.sqrt() * x0 + direction * eps + sigma * noise,
                 "x0_hat is scaled by sqrt(ᾱ_prev), the level you step to, not sqrt(ᾱ_t)"),
                (abar_prev * x0 + direction * eps + sigma * noise, "x0_hat is scaled by the square root sqrt(ᾱ_prev)"),
                (abar_prev.sqrt() * (x - (1 - abar_t) * eps) / abar_t.sqrt() + direction * eps + sigma * noise,
                 "x0_hat = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t): the square root is missing on 1 − ᾱ_t"),
                (abar_prev.sqrt() * x0 + direction * eps + (sigma**2) * noise,
                 "the fresh noise is scaled by σ, not σ²"),
                (abar_prev.sqrt() * x0 + direction * eps + eta * noise, "σ is η · sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)) · "
                 "sqrt(1 − ᾱ_t/ᾱ_prev), not η itself"),
            ], rtol=1e-3, ref=ref)
            _require(why is None, f"ddim_jump is wrong {where}: {why}.")
            raise CheckFailed(f"ddim_jump is wrong {where}: largest error {(out - ref).abs().max():.4g}. Start from "
                              "x0_hat = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t)")
    _ok("ddim_jump matches the package for eta = 0, 0.5 and 1, including the last step to ᾱ = 1")


def _tiny_model(**kw) -> UNet:
    torch.manual_seed(0)
    return UNet(channels=(8, 16, 16), emb_dim=32, **kw).eval()


def check_ddim_sample(fn) -> None:
    """``fn(model, x_T, alpha_bars, timesteps) -> x_0``: DDIM (eta = 0) over decreasing ``timesteps``."""
    model, s = _tiny_model(), schedules.make_schedule("linear", 1000)
    for n, k in ((3, 10), (2, 4)):
        x_T = samplers.initial_noise(n, seed=5)
        steps = samplers.ddim_timesteps(1000, k)
        with precision("fp32"):  # the student's loop runs in fp32: so does the reference
            ref = samplers.sample(model, s, n, sampler="ddim", steps=k, x_T=x_T, clip_x0=False, progress=False).images
        with torch.no_grad():
            out = _tensor(_call(fn, "ddim_sample", model, x_T, s.alpha_bars, steps), "ddim_sample")
        _require(out.shape == ref.shape, f"expected samples of shape {list(ref.shape)}, got {list(out.shape)}")
        _require(_close(out, ref, 1e-3), f"ddim_sample differs from the package's {k}-step DDIM: go through "
                 "`timesteps` in order, take t_prev as the next one (and ᾱ_prev = 1 after the last), and feed each "
                 "output back in")
    _ok("ddim_sample reproduces the package's DDIM from the same x_T, for 10 and 4 steps")


# --- lesson 4: classifier-free guidance ---------------------------------------------------------

def check_cfg(fn) -> None:
    """``fn(eps_cond, eps_uncond, w) -> eps``, with eps = eps_uncond + w (eps_cond − eps_uncond)."""
    g = torch.Generator().manual_seed(3)
    for shape, dtype in (((2, 1, 4, 4), torch.float32), ((3, 1, 28, 28), torch.float64)):
        cond, uncond = torch.randn(shape, generator=g).to(dtype), torch.randn(shape, generator=g).to(dtype)
        for w in (1.0, 3.0, 0.0, 7.5):
            ref = samplers.cfg_combine(cond, uncond, w)
            out = _tensor(_call(fn, "cfg", cond, uncond, w), "cfg")
            if _close(out, ref):
                continue
            why = _first_match(out, [
                (cond + w * (uncond - cond), f"at w = {w} the terms are swapped: start from ε_uncond and move w "
                 "times towards ε_cond"),
                (cond + w * (cond - uncond), f"at w = {w} you computed ε_cond + w (ε_cond − ε_uncond) = (1 + w) ε_cond "
                 "− w ε_uncond, the convention whose w is this course's w − 1: start from ε_uncond, so that w = 1 "
                 "gives the plain conditional ε"),
                (uncond - w * (cond - uncond), f"at w = {w} you guide away from the class: ε_uncond + w (ε_cond − "
                 "ε_uncond), with a plus"),
                (w * cond, f"at w = {w}: guidance combines both predictions, ε_uncond + w (ε_cond − ε_uncond)"),
            ], ref=ref)
            _require(why is None, why or "")
            raise CheckFailed(f"cfg is wrong at w = {w}; check: w = 0 must give ε_uncond and w = 1 ε_cond")
    _ok("cfg gives ε_uncond at w = 0, ε_cond at w = 1, and extrapolates beyond (float32 and float64)")


def check_drop_condition(fn) -> None:
    """``fn(labels, null_class, p, generator) -> labels`` with each label replaced by null w.p. p."""
    labels = torch.arange(100_000) % 10
    for p, null in ((0.1, 10), (0.3, 10), (0.2, 5)):
        lab = labels % null
        out = _tensor(_call(fn, "drop_condition", lab, null, p, torch.Generator().manual_seed(0)), "drop_condition")
        _require(out.shape == lab.shape, "return one label per input label")
        _require(out.dtype == torch.long, f"labels must stay integers (torch.long) for the class embedding, yours "
                 f"are {out.dtype}: use torch.where(drop, null, labels) or labels.masked_fill(drop, null)")
        dropped = out == null
        rate = dropped.float().mean().item()
        _require(rate > 0 or torch.equal(out, lab), f"labels were changed, but not to the null class (index "
                 f"{null}, the extra row of the class embedding)")
        _require(rate > 0, "no label was ever dropped: replace each by the null class with probability p")
        _require(abs(rate - p) < 0.01, f"with p = {p} you dropped {rate:.3f} of the labels" +
                 (": you drop with probability 1 − p" if abs(rate - (1 - p)) < 0.01 else ""))
        _require(torch.equal(out[~dropped], lab[~dropped]), "labels that are kept must stay unchanged")
        per_class = torch.stack([dropped[lab == c].float().mean() for c in range(null)])
        _require((per_class - p).abs().max() < 0.03, f"drop each label independently with probability p: the drop "
                 f"rate per digit ranges {per_class.min():.2f}..{per_class.max():.2f} (whole classes dropped or kept?)")
    out = _call(fn, "drop_condition", labels[:50], 10, 0.0, torch.Generator().manual_seed(0))
    _require(torch.equal(out, labels[:50]), "p = 0 must keep every label")
    _ok("drop_condition replaces labels independently by the null class at rate p and keeps the rest")


class _CountingCond(torch.nn.Module):
    """Wraps a conditional model and counts its calls and batch sizes."""

    def __init__(self, model):
        super().__init__()
        self.model, self.batches = model, []
        self.num_classes, self.null_class = model.num_classes, model.null_class

    def forward(self, x, t, y=None):
        self.batches.append(len(x))
        return self.model(x, t, y)


def check_guided_sample(fn) -> None:
    """``fn(model, x_T, labels, w, alpha_bars, timesteps) -> x_0``: guided DDIM (eta = 0), one batched
    forward pass of 2B images (conditional and null halves) per step."""
    base, s = _tiny_model(num_classes=10), schedules.make_schedule("linear", 1000)
    for n, k, w in ((4, 5, 3.0), (3, 3, 0.0)):
        x_T, labels = samplers.initial_noise(n, seed=6), torch.arange(n) % 10
        with precision("fp32"):  # the student's loop runs in fp32: so does the reference
            ref = samplers.sample(base, s, n, sampler="ddim", steps=k, x_T=x_T, labels=labels, w=w, clip_x0=False,
                                  progress=False).images
        model = _CountingCond(base)
        with torch.no_grad():
            out = _tensor(_call(fn, "guided_sample", model, x_T, labels, w, s.alpha_bars,
                                samplers.ddim_timesteps(1000, k)), "guided_sample")
        _require(out.shape == ref.shape, f"expected samples of shape {list(ref.shape)}, got {list(out.shape)}")
        _require(len(model.batches) > 0, "the model was never called")
        _require(len(model.batches) != 2 * k, f"the model was called twice per step ({len(model.batches)} calls for "
                 f"{k} steps): concatenate the conditional and the null half into one batch of 2B images")
        _require(len(model.batches) == k and set(model.batches) == {2 * n}, f"expected one call of {2 * n} images per "
                 f"step ({k} calls), got batch sizes {model.batches}")
        if _close(out, ref, 1e-3):
            continue
        with precision("fp32"):
            swapped = samplers.sample(base, s, n, sampler="ddim", steps=k, x_T=x_T, labels=labels, w=1 - w,
                                      clip_x0=False, progress=False).images
        _require(not _close(out, swapped, 1e-3), "the halves are swapped: the first B outputs belong to the real "
                 "labels, the last B to the null class (or combine ε_uncond + w (ε_cond − ε_uncond))")
        raise CheckFailed(f"guided_sample differs from the package's guided DDIM (w = {w}, {k} steps): split the "
                          "2B outputs with eps.chunk(2), combine them, then take the DDIM step with eta = 0")
    _ok("guided_sample runs both halves in one batched pass per step and matches the package's guided DDIM")


# --- lesson 5: feature statistics, Fréchet distance and the elbow ---------------------------------

def check_feature_stats(fn) -> None:
    """``fn(features [N, D]) -> (mu [D], sigma [D, D])``: the mean and the (N − 1) covariance over samples."""
    rng = np.random.default_rng(5)
    for n, d in ((50, 4), (7, 12), (200, 3)):
        f = rng.standard_normal((n, d)) * rng.uniform(0.1, 10, d) + rng.standard_normal(d)
        ref_mu, ref_sigma = f.mean(0), np.cov(f, rowvar=False)
        out = _call(fn, "feature_stats", torch.tensor(f))
        _require(isinstance(out, tuple) and len(out) == 2, "return a pair (mu, sigma)")
        mu, sigma = (_as64(v) for v in out)
        _require(mu.shape == (d,), f"mu should have one value per feature dimension, shape [{d}], got {list(mu.shape)}"
                 + (": average over the samples (axis 0), not the features" if mu.shape == (n,) else ""))
        _require(sigma.shape == (d, d), f"sigma should be [D, D] = [{d}, {d}], got {list(sigma.shape)}"
                 + (": the covariance is over samples, np.cov(f, rowvar=False)" if sigma.shape == (n, n) else ""))
        _require(_close(mu, ref_mu), "mu should be the mean of the features over the samples")
        if _close(sigma, ref_sigma):
            continue
        _require(not _close(sigma, ref_sigma * (n - 1) / n), "divide by N − 1 (the unbiased covariance, what np.cov "
                 "does), not by N")
        centred = f - ref_mu
        _require(not _close(sigma, f.T @ f / (n - 1)), "centre the features on their mean before the products")
        _require(not _close(sigma, np.diag(np.diag(ref_sigma))), "the covariance has off-diagonal terms: the "
                 "correlations between features count too")
        _require(not _close(sigma, centred.T @ centred), "divide the sum of products by N − 1")
        raise CheckFailed("sigma should be the covariance over samples: (f − mu)ᵀ (f − mu) / (N − 1)")
    _ok("feature_stats gives the mean over samples and the (N − 1) covariance, for several N and D")


def check_frechet_distance(fn) -> None:
    """``fn(mu1, sigma1, mu2, sigma2) -> float`` (NumPy inputs)."""
    import scipy.linalg

    rng = np.random.default_rng(4)
    for d, scale in ((8, 1.0), (3, 100.0), (16, 0.01)):
        a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
        s1, s2 = (a @ a.T / d + 0.1 * np.eye(d)) * scale**2, (b @ b.T / d + 0.1 * np.eye(d)) * scale**2
        mu1, mu2 = rng.standard_normal(d) * scale, rng.standard_normal(d) * scale
        ref = metrics.frechet_distance(mu1, s1, mu2, s2)
        out = float(_call(fn, "frechet_distance", mu1, s1, mu2, s2))
        tol = 1e-4 * max(abs(ref), np.trace(s1))
        self_d = float(_call(fn, "frechet_distance", mu1, s1, mu1, s1))
        if abs(out - ref) < tol:
            _require(abs(self_d) < 1e-4 * np.trace(s1), f"a distribution against itself must give 0 (up to round-off "
                     f"relative to its scale); yours gives {self_d:.3g}")
            continue
        mean_term = float(np.sum((mu1 - mu2) ** 2))
        trace = float(np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
        why = next((m for v, m in [
            (mean_term, "you only have the mean term ||μ1 − μ2||²: add the trace term Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)"),
            (trace, "you only have the trace term: add ||μ1 − μ2||²"),
            (mean_term + np.trace(s1 + s2 - 2 * s1 @ s2), "(Σ1 Σ2)^½ is a matrix square root "
             "(scipy.linalg.sqrtm), and you left it out"),
            (mean_term + np.trace(s1 + s2 - 2 * np.sqrt(np.abs(s1 @ s2))), "np.sqrt is element-wise: the formula "
             "needs the matrix square root scipy.linalg.sqrtm"),
            (mean_term + np.trace(s1 + s2 - scipy.linalg.sqrtm(s1 @ s2).real), "the square-root term has a factor 2: "
             "Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)"),
            (float(np.sqrt(max(ref, 0))), "FID is d², the squared distance: do not take the square root"),
        ] if abs(out - v) < tol), None)
        _require(why is None, f"frechet_distance is wrong: {why}.")
        raise CheckFailed(f"frechet_distance gives {out:.5g}, the reference {ref:.5g} (d = {d}, scale {scale:g})")
    _ok("frechet_distance matches the reference at several dimensions and scales, and gives 0 for a "
        "distribution against itself")


def check_find_elbow(fn) -> None:
    """``fn(x, y) -> index`` of the point farthest from the chord (axes scaled to [0, 1])."""
    for x in (np.arange(12, dtype=float) * 2 + 10, np.sort(np.random.default_rng(1).uniform(0, 50, 12))):
        for kink in (2, 5, 8):
            y = np.where(np.arange(12) <= kink, 10 - 3 * np.arange(12), 10 - 3 * kink - 0.1 * (np.arange(12) - kink))
            for curve, name in ((y, "a falling curve"), (-y, "a rising curve")):
                ref = metrics.find_elbow(x, curve)
                got = _call(fn, "find_elbow", x, curve)
                _require(isinstance(got, (int, np.integer)) or float(got).is_integer(),
                         f"find_elbow should return an index (an int), got {got!r}")
                got = int(got)
                if got == ref:
                    continue
                _require(got not in (int(x[ref]), round(float(x[ref]))), f"you returned the x value {got} of the "
                         f"elbow: return its index in the list ({ref})")
                _require(got not in (0, len(x) - 1), f"on {name} you found index {got}, an end of the curve: both ends "
                         "lie on the chord (distance 0), so the elbow is never an end; take the absolute distance")
                _require(got not in (int(np.argmin(curve)), int(np.argmax(curve))),
                         f"on {name} you found index {got}: that is the curve's extreme value, not its bend")
                raise CheckFailed(f"on {name} (x from {x[0]:.3g} to {x[-1]:.3g}) the bend is at index {ref}, you found "
                                  f"{got}: scale x and y to [0, 1] using their values (x[0] and x[-1], min and max "
                                  "of y), then take the point farthest from the chord")
    w = np.array([0, 1, 2, 3, 5, 7, 10], dtype=float)
    acc = np.array([0.1, 0.5, 0.8, 0.9, 0.95, 0.97, 0.98])
    got, ref = _call(fn, "find_elbow", w, acc), metrics.find_elbow(w, acc)
    _require(int(got) == ref, f"on the saturating curve accuracy(w) at w = {w.astype(int).tolist()} the knee is at "
             f"index {ref}, you found {got}: scale x and y to [0, 1] using their values before measuring distances")
    _ok("find_elbow returns the index of the bend, on offset, uneven, falling, rising and saturating curves")


# --- lesson 6: timestep-embedding health --------------------------------------------------------

def check_timestep_sensitivity(fn) -> None:
    """``fn(model, x, timesteps) -> float``: the share of the output's energy that varies with t."""
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    healthy, dead = _tiny_model(), _tiny_model(dead_time_embedding=True)
    for ts in ((0, 250, 500, 750, 999), (10, 900)):
        with torch.no_grad():
            ref = metrics.timestep_sensitivity(healthy, x, ts)
            h = float(_call(fn, "timestep_sensitivity", healthy, x, ts))
            d = float(_call(fn, "timestep_sensitivity", dead, x, ts))
        _require(abs(d) < 1e-8, f"a dead embedding must read (about) 0; yours reads {d:.3g}")
        _require(h > 1e-6, f"a healthy model must read clearly above 0; yours reads {h:.3g}")
        _require(abs(h - ref) < 1e-3 * max(ref, 1e-6) + 1e-7, f"yours reads {h:.6f} on the healthy model at t = "
                 f"{ts}, the reference {ref:.6f}: centre the outputs on their mean over t and divide by the mean "
                 "squared output")
    _ok("timestep_sensitivity reads 0 for a dead embedding and matches the reference on a healthy model")


# --- lesson 7: DPM-Solver++(2M) ------------------------------------------------------------------

def _dpm_variant(s, x, x0, x0_prev, t, t_prev, t_next, invert_r=False, full_log_snr=False, plus=False):
    """A DPM-Solver++(2M) step with one of the usual mistakes switched on."""
    lam = s.log_snr.double() * (1.0 if full_log_snr else 0.5)
    alpha, sigma = s.sqrt_alpha_bars.double(), s.sqrt_one_minus_alpha_bars.double()
    h = lam[t_next] - lam[t]
    d = x0
    if x0_prev is not None:
        r = h / (lam[t] - lam[t_prev]) if invert_r else (lam[t] - lam[t_prev]) / h
        d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev
    return ((sigma[t_next] / sigma[t]) * x + (1 if plus else -1) * alpha[t_next] * torch.expm1(-h) * d).float()


def check_dpm_solver_step(fn) -> None:
    """``fn(x_t, x0_hat, previous, t, t_next, alpha_bars) -> x_next``: one DPM-Solver++(2M) step.

    ``previous`` is ``(x0_hat_prev, t_prev)`` or None (first step: first order); ``t_next = -1``
    means the clean image (return x0_hat).
    """
    g = torch.Generator().manual_seed(12)
    for name in ("linear", "cosine"):
        s = schedules.make_schedule(name, 1000)
        x, x0, x0_prev = (torch.randn(2, 1, 28, 28, generator=g) for _ in range(3))
        for t, t_next, previous in ((999, 899, None), (899, 799, (x0_prev, 999)), (500, 250, (x0_prev, 700)),
                                    (50, -1, (x0_prev, 100))):
            ref = samplers.dpm_solver_pp_update(s, x, t, t_next, x0, previous)
            out = _tensor(_call(fn, "dpm_solver_step", x, x0, previous, t, t_next, s.alpha_bars), "dpm_solver_step")
            if _close(out, ref, 1e-3, 1e-4):
                continue
            where = f"at t = {t} -> {t_next} ({name} schedule, {'first' if previous is None else 'second'} order)"
            prev_x0, t_prev = previous if previous is not None else (None, None)
            if t_next < 0:
                diagnoses = [(samplers.dpm_solver_pp_update(s, x, t, 0, x0, previous),
                              "the last step goes to the clean image (t_next = −1): return x0_hat there")]
            else:
                diagnoses = [
                    (_dpm_variant(s, x, x0, None, t, None, t_next), "you never use the previous estimate of x0: after "
                     "the first step, D = (1 + 1/(2r)) x0_hat − 1/(2r) x0_hat_prev"),
                    (_dpm_variant(s, x, x0, prev_x0, t, t_prev, t_next, invert_r=True), "r is h_prev / h (the "
                     "previous step's length in λ over this one's), not its inverse"),
                    (_dpm_variant(s, x, x0, prev_x0, t, t_prev, t_next, full_log_snr=True), "λ is *half* the "
                     "log-SNR: log(α/σ) = ½ log(ᾱ / (1 − ᾱ))"),
                    (_dpm_variant(s, x, x0, prev_x0, t, t_prev, t_next, plus=True), "the x0 term is "
                     "− α_next (e^{−h} − 1) D: e^{−h} − 1 is negative, so the term adds D"),
                ]
            why = _first_match(out, diagnoses, rtol=1e-3, ref=ref)
            _require(why is None, f"dpm_solver_step is wrong {where}: {why}.")
            raise CheckFailed(f"dpm_solver_step is wrong {where}: largest error {(out - ref).abs().max():.4g}. With "
                              "λ = log(α/σ) and h = λ_next − λ_t: x_next = (σ_next/σ_t) x_t − α_next (e^{−h} − 1) D")
    _ok("dpm_solver_step matches the package's DPM-Solver++(2M) for first and second order steps and the last step")


# --- lesson 8: precision and recall in feature space ----------------------------------------------

def _pr_variant(real, fake, radius_k, square=False):
    """Precision and recall computed with one of the usual mistakes."""
    d_fr = torch.cdist(fake, real)
    rad_r = torch.cdist(real, real).kthvalue(radius_k, 1).values
    rad_f = torch.cdist(fake, fake).kthvalue(radius_k, 1).values
    if square:
        d_fr = d_fr**2
    return ((d_fr <= rad_r[None]).any(1).double().mean().item(), (d_fr.T <= rad_f[None]).any(1).double().mean().item())


def check_precision_recall(fn) -> None:
    """``fn(real [N, D], fake [M, D], k) -> (precision, recall)``, Kynkaanniemi et al. (2019)."""
    g = torch.Generator().manual_seed(13)
    cases = [(torch.randn(120, 5, generator=g), torch.randn(90, 5, generator=g) * 0.6 + 0.8, 3),
             (torch.cat([torch.randn(60, 3, generator=g), torch.randn(60, 3, generator=g) + 8]),
              torch.randn(50, 3, generator=g) * 1.5, 5)]
    for real, fake, k in cases:
        ref = metrics.precision_recall(real, fake, k)
        out = _call(fn, "precision_recall", real, fake, k)
        _require(isinstance(out, tuple) and len(out) == 2, "return a pair (precision, recall)")
        p, r = (float(v) for v in out)
        if abs(p - ref["precision"]) < 1e-6 and abs(r - ref["recall"]) < 1e-6:
            continue
        _require(not (abs(p - ref["recall"]) < 1e-6 and abs(r - ref["precision"]) < 1e-6),
                 "precision and recall are swapped: precision asks how many *samples* lie in the real manifold")
        why = next((m for (pp, rr), m in [
            (_pr_variant(real, fake, k), f"the k-th nearest neighbour of a point in its own set is the (k + 1)-th "
             f"smallest distance: the smallest is the point itself, at 0 (use kthvalue({k} + 1))"),
            (_pr_variant(real, fake, k + 1, square=True), "compare distances with radii in the same units: squared "
             "distances against plain radii mix them up"),
        ] if abs(p - pp) < 1e-6 and abs(r - rr) < 1e-6), None)
        _require(why is None, f"precision_recall is wrong: {why}.")
        raise CheckFailed(f"precision_recall gives ({p:.3f}, {r:.3f}), expected ({ref['precision']:.3f}, "
                          f"{ref['recall']:.3f}) with k = {k}: a sample counts for precision when it lies within "
                          "the k-NN radius of at least one real point (radii measured inside the real set)")
    _ok("precision_recall matches the reference on two sets of synthetic features")


# --- lesson 9: the flow-matching loss and the Euler sampler ---------------------------------------

class _VelocityStandIn(nn.Module):
    """A fixed velocity "network" that depends on x and on the time it is fed (on the 0..1000 scale), so
    that every way of getting the path, the target or the time wrong changes its answer."""

    def forward(self, x, t_in, y=None):
        t_in = torch.as_tensor(t_in, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        return 0.6 * torch.tanh(x) + 0.3 * torch.cos(t_in / 400.0) * (1 + x.mean((1, 2, 3), keepdim=True))


def _fm_loss_variant(x0, t, noise, path="right", target="right", scale=1000.0, t_in=None):
    tt = t.view(-1, 1, 1, 1)
    x_t = (1 - tt) * noise + tt * x0 if path == "swapped" else (1 - tt) * x0 + tt * noise
    v = noise - x0 if target == "right" else x0 - noise
    return (_VelocityStandIn()(x_t, (t if t_in is None else t_in) * scale) - v).pow(2).mean()


def check_flow_matching_loss(fn) -> None:
    """``fn(model, x0, t, noise)`` -> the scalar loss mean((model(x_t, t * 1000) - (noise - x0))**2) with
    x_t = (1 - t) x0 + t noise, t ``[B]`` in [0, 1]."""
    model = _VelocityStandIn()
    gen = torch.Generator().manual_seed(9)
    for batch in (6, 3):
        x0 = torch.rand(batch, 1, 8, 8, generator=gen) * 2 - 1
        noise = torch.randn(batch, 1, 8, 8, generator=gen)
        t = torch.rand(batch, generator=gen)
        out = _call(fn, "flow_matching_loss", model, x0, t, noise)
        _require(isinstance(out, torch.Tensor) and out.numel() == 1,
                 f"flow_matching_loss should return a scalar tensor (the batch mean), got {type(out).__name__}"
                 + (f" of shape {list(out.shape)}" if isinstance(out, torch.Tensor) else ""))
        ref = _fm_loss_variant(x0, t, noise)
        if _close(out, ref):
            continue
        why = _first_match(out, [
            (_fm_loss_variant(x0, t, noise, path="swapped"), "x_0 and ε are swapped in the path: x_t = (1 − t) x_0 + "
             "t ε, so that t = 0 is the digit and t = 1 the noise"),
            (_fm_loss_variant(x0, t, noise, target="flipped"), "the velocity has the wrong sign: the target is "
             "dx_t/dt = ε − x_0 (from the digit towards the noise), not x_0 − ε"),
            (_fm_loss_variant(x0, t, noise, scale=1.0), "the network saw t in [0, 1], but it is trained and sampled "
             "with t × 1000 (TIME_SCALE), the range its timestep embedding was built for"),
            (_fm_loss_variant(x0, t, noise, t_in=1 - t), "the network's time runs the wrong way: feed it t × 1000 "
             "for the x_t you built, so that t = 0 means the digit and t = 1 the noise"),
            (_fm_loss_variant(x0, t, noise, path="swapped", target="flipped"), "the path and the target are both "
             "reversed (t = 0 is noise in your version): the course's convention has t = 0 at the digit"),
        ], ref=ref)
        _require(why is None, f"flow_matching_loss is wrong: {why}.")
        raise CheckFailed(f"flow_matching_loss is wrong: {float(out):.5g} instead of {float(ref):.5g}. Build "
                          "x_t = (1 − t) x0 + t noise (t reshaped to [B, 1, 1, 1]), call model(x_t, t * 1000) and "
                          "average the squared difference from noise − x0 over everything")
    _ok("flow_matching_loss matches: straight path, velocity ε − x_0, t × 1000 for the network")


def _euler_variant(x_T, steps, kind="right"):
    model = _VelocityStandIn()
    times = [1 - i / steps for i in range(steps + 1)]
    if kind == "forward":
        times = times[::-1]
    if kind == "grid":  # steps + 1 grid points, but a step of 1/(steps + 1): it stops short of t = 0
        times = [1 - i / (steps + 1) for i in range(steps + 1)]
    x = x_T.clone()
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        v = model(x, torch.full((len(x),), (t if kind != "scale" else t / 1000) * 1000.0))
        x = x + (t_next - t) * v if kind != "sign" else x - (t_next - t) * v
    return x


def check_euler_sample(fn) -> None:
    """``fn(model, x_T, steps)`` -> x at t = 0 after ``steps`` Euler steps of dx/dt = model(x, t * 1000)
    from t = 1 on the grid 1, 1 - 1/steps, ..., 0."""
    gen = torch.Generator().manual_seed(19)
    for steps in (1, 4, 7):
        x_T = torch.randn(3, 1, 8, 8, generator=gen)
        with torch.no_grad():
            out = _tensor(_call(fn, "euler_sample", _VelocityStandIn(), x_T, steps), "euler_sample")
        ref = _euler_variant(x_T, steps)
        if _close(out, ref):
            continue
        why = _first_match(out, [
            (_euler_variant(x_T, steps, "forward"), "t runs the wrong way: sampling starts at the noise, t = 1, "
             "and walks down to the digit, t = 0"),
            (_euler_variant(x_T, steps, "sign"), "the velocity's sign: x_next = x + (t_next − t) v, and t_next − t "
             "is negative (you step towards t = 0)"),
            (_euler_variant(x_T, steps, "grid"), "the step size does not match the grid: with `steps` steps from "
             "1 to 0 each step is 1/steps, and the last one must land on t = 0"),
            (_euler_variant(x_T, steps, "scale"), "the network was fed t in [0, 1]: it was trained on t × 1000"),
            (x_T, "the sampler returned x_T unchanged: update x at every step and return the last x"),
        ], ref=ref)
        _require(why is None, f"euler_sample is wrong with {steps} steps: {why}.")
        raise CheckFailed(f"euler_sample is wrong with {steps} steps: largest error {(out - ref).abs().max():.4g}. "
                          "Walk t = 1, 1 − 1/steps, ..., 0; at each step v = model(x, t * 1000 for every image) "
                          "and x = x + (t_next − t) * v")
    _ok("euler_sample matches Euler's method from t = 1 to 0 with 1, 4 and 7 steps")


# --- lesson 10: latent diffusion ---------------------------------------------------------------------

class _StandInAutoencoder(nn.Module):
    """A stand-in for :class:`~academy_diffusion.latent.Autoencoder` with the same shapes
    (``[B, 1, 28, 28]`` <-> ``[B, 4, 7, 7]``), codes with a standard deviation near 4 (so that a missing or
    inverted scale shows), a trainable encoder (so that gradients into it show) and a nonlinear decoder
    (so that dividing before or after decoding differ)."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor([4.0, -3.0, 5.0, 2.5]))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, 4)  # [B, 1, 7, 7]
        return self.gain.view(1, 4, 1, 1) * (pooled + 0.3 * pooled.roll(1, dims=-1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.interpolate(z.mean(1, keepdim=True), scale_factor=4) / 2)


def check_to_latent(fn) -> None:
    """``fn(autoencoder, x, scale) -> z``: the scaled code ``scale * autoencoder.encode(x)``, without gradients."""
    ae = _StandInAutoencoder()
    gen = torch.Generator().manual_seed(10)
    for scale in (0.25, 1.7):
        x = torch.rand(5, 1, 28, 28, generator=gen) * 2 - 1
        z = _tensor(_call(fn, "to_latent", ae, x, scale), "to_latent")
        with torch.no_grad():
            code = ae.encode(x)
        _require(z.shape == code.shape, f"to_latent should return codes of shape {list(code.shape)}, got "
                 f"{list(z.shape)}")
        why = _first_match(z.detach(), [
            (code, "the code is not scaled: multiply it by `scale`, so that the diffusion sees unit-variance data"),
            (code / scale, "the scale is inverted: the code is *multiplied* by scale (scale = 1 / std of the codes)"),
        ], ref=scale * code)
        _require(why is None, f"to_latent is wrong with scale {scale}: {why}.")
        _require(_close(z.detach(), scale * code), f"to_latent is wrong with scale {scale}: expected scale · "
                 "autoencoder.encode(x)")
        _require(not z.requires_grad, "the code carries gradients into the encoder: the autoencoder is frozen while "
                 "the diffusion model trains, so encode inside `with torch.no_grad():`")
    _ok("to_latent encodes, multiplies by the scale, and keeps the frozen encoder out of the gradient")


def check_from_latent(fn) -> None:
    """``fn(autoencoder, z, scale) -> x``: ``autoencoder.decode(z / scale)``, the inverse of ``to_latent``."""
    ae = _StandInAutoencoder()
    gen = torch.Generator().manual_seed(11)
    for scale in (0.25, 1.7):
        z = torch.randn(5, 4, 7, 7, generator=gen)
        with torch.no_grad():
            x = _tensor(_call(fn, "from_latent", ae, z, scale), "from_latent")
            ref = ae.decode(z / scale)
            why = _first_match(x, [
                (ae.decode(z), "the code was decoded without dividing by the scale: the decoder expects the "
                 "autoencoder's own codes, decode(z / scale)"),
                (ae.decode(z * scale), "the scale is inverted: to undo z = scale · code, divide by scale before "
                 "decoding"),
                (ae.decode(z) / scale, "you decoded first and divided the *image* by the scale: unscale the code, "
                 "then decode, decode(z / scale)"),
            ], ref=ref)
        _require(why is None, f"from_latent is wrong with scale {scale}: {why}.")
        _require(_close(x, ref), f"from_latent is wrong with scale {scale}: expected autoencoder.decode(z / scale)")
    _ok("from_latent divides by the scale, then decodes")


def _latent_loss_variant(model, ae, scale, x0, t, noise, alpha_bars, code_scale=None):
    with torch.no_grad():
        z0 = (scale if code_scale is None else code_scale) * ae.encode(x0)
    return ((model(_q(alpha_bars[t], z0, noise), t) - noise) ** 2).mean()


def check_latent_training_loss(fn) -> None:
    """``fn(model, autoencoder, scale, x0, t, noise, alpha_bars) -> loss``: L_simple on the scaled codes of ``x0``
    (``noise``: ``[B, 4, 7, 7]``), with the encoder frozen."""
    s = schedules.make_schedule("linear", 1000)
    gen = torch.Generator().manual_seed(12)
    for scale in (0.25, 1.7):
        ae, model = _StandInAutoencoder(), _Recorder()
        x0 = torch.rand(6, 1, 28, 28, generator=gen) * 2 - 1
        noise = torch.randn(6, 4, 7, 7, generator=gen)
        t = torch.tensor([0, 5, 250, 500, 900, 999])
        loss = _tensor(_call(fn, "latent_training_loss", model, ae, scale, x0, t, noise, s.alpha_bars),
                       "latent_training_loss")
        _require(loss.ndim == 0, f"the loss should be a single number (a 0-d tensor), got shape {list(loss.shape)}")
        _require(hasattr(model, "seen"), "the denoiser was never called")
        _require(tuple(model.seen[0].shape) == (6, 4, 7, 7), "the denoiser should see noised *codes* [B, 4, 7, 7], "
                 f"it saw {list(model.seen[0].shape)}: encode x0 first, then noise the code")
        ref = _latent_loss_variant(model, ae, scale, x0, t, noise, s.alpha_bars)
        why = _first_match(loss.detach(), [
            (_latent_loss_variant(model, ae, scale, x0, t, noise, s.alpha_bars, code_scale=1.0), "the denoiser "
             "trained on unscaled codes: multiply the code by `scale` before noising it (else the schedule sees data "
             "of the wrong variance at every t)"),
            (_latent_loss_variant(model, ae, scale, x0, t, noise, s.alpha_bars, code_scale=1 / scale), "the scale is "
             "inverted: the code is multiplied by scale"),
        ], ref=ref)
        _require(why is None, f"latent_training_loss is wrong with scale {scale}: {why}.")
        _require(_close(loss.detach(), ref), f"latent_training_loss is wrong with scale {scale}: {float(loss):.5g} "
                 f"instead of {float(ref):.5g}. z0 = scale · encode(x0), z_t = sqrt(ᾱ_t) z0 + sqrt(1 − ᾱ_t) noise, "
                 "loss = mean((model(z_t, t) − noise)²)")
        _require(loss.requires_grad, "the loss carries no gradient: do not call .item() or .detach() on it")
        _require(model.w.grad is None, "latent_training_loss called backward() itself: return the loss")
        loss.backward()
        _require(ae.gain.grad is None, "gradients flow into the encoder: it is frozen while the denoiser trains, so "
                 "compute the code inside `with torch.no_grad():`")
        _require(model.w.grad is not None, "no gradient reached the denoiser")
    _ok("latent_training_loss noises the scaled code, asks the denoiser for the noise, and leaves the encoder frozen")


# --- lesson 11: distillation ---------------------------------------------------------------------------

class _GuidedStandIn(nn.Module):
    """A stand-in class-conditional noise predictor (null class 10) with a trainable weight, so that
    gradients flowing into the teacher show; its prediction depends on x, t and the label."""

    num_classes, null_class = 10, 10

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(0.7))

    def forward(self, x, t, y=None):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1, 1, 1)
        y = torch.as_tensor(y, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return self.gain * torch.tanh(x) + 0.05 * (y - 4.5) * torch.cos(t / 300.0) + 0.01 * x.roll(1, dims=-1)


def _ab(alpha_bars, t: int) -> tuple[float, float]:
    """(α, σ) at code index t; t = −1 is the clean image."""
    abar = 1.0 if t < 0 else float(alpha_bars[t])
    return math.sqrt(abar), math.sqrt(1 - abar)


def _distill_variant(student, teacher, z_t, t, t_mid, t_next, labels, w, alpha_bars, kind="right"):
    """The distillation loss and its plausible mistakes (the reference for check_distillation_loss)."""
    def eps(net, z, s):
        tt = torch.full((len(z),), s)
        if kind == "student_teacher":
            net = student
        cond, uncond = net(z, tt, labels), net(z, tt, torch.full_like(labels, 10))
        return cond + w * (uncond - cond) if kind == "swapped" else uncond + w * (cond - uncond)

    def step(z, s, s_next):
        (a, sg), (a_n, sg_n) = _ab(alpha_bars, s), _ab(alpha_bars, s_next)
        e = eps(teacher, z, s)
        return a_n * (z - sg * e) / a + sg_n * e

    land = t_mid if kind == "mid" else t_next
    with torch.no_grad():
        if kind in ("one_step", "mid"):
            z_next = step(z_t, t, land)
        else:
            z_next = step(step(z_t, t, t_mid), t_mid, t_next)
    (a, s), (a_n, s_n) = _ab(alpha_bars, t), _ab(alpha_bars, land)
    target = (z_next - s_n / s * z_t) / (a_n - s_n / s * a)
    v_target = (a * z_t - target) / s
    if kind == "x_as_v":
        v_target = target
    return ((student(z_t, torch.full((len(z_t),), t), labels) - v_target) ** 2).mean()


def check_distillation_loss(fn) -> None:
    """``fn(student, teacher, z_t, t, t_mid, t_next, labels, w, alpha_bars) -> loss``: progressive
    distillation's loss with a guided teacher (see exercise 11)."""
    s = schedules.make_schedule("linear", 1000)
    gen = torch.Generator().manual_seed(13)
    for t, t_mid, t_next, w in ((999, 937, 874, 2.0), (312, 250, 187, 3.0), (62, 0, -1, 2.0)):
        student, teacher = _Recorder(), _GuidedStandIn()
        z_t = torch.randn(4, 1, 8, 8, generator=gen)
        labels = torch.tensor([0, 3, 7, 9])
        args = (z_t, t, t_mid, t_next, labels, w, s.alpha_bars)
        loss = _tensor(_call(fn, "distillation_loss", student, teacher, *args), "distillation_loss")
        _require(loss.ndim == 0, f"the loss should be a single number (a 0-d tensor), got shape {list(loss.shape)}")
        ref = _distill_variant(_Recorder(), teacher, *args)
        why = _first_match(loss.detach(), [
            (_distill_variant(_Recorder(), teacher, *args, kind="student_teacher"), "the target was computed with "
             "the student: the two DDIM steps are the *teacher's*; the student makes only the prediction trained"),
            (_distill_variant(_Recorder(), teacher, *args, kind="swapped"), "the guided teacher's two predictions are "
             "swapped: ε̂ = ε_uncond + w (ε_cond − ε_uncond), with ε_uncond from the null label 10"),
            (_distill_variant(_Recorder(), teacher, *args, kind="one_step"), "the teacher took one step t -> t_next: "
             "it must take two, t -> t_mid -> t_next (the student learns to do in one what the teacher does in two)"),
            (_distill_variant(_Recorder(), teacher, *args, kind="mid"), "the teacher stopped at t_mid: its two steps "
             "go t -> t_mid -> t_next, and the target lands on t_next"),
            (_distill_variant(_Recorder(), teacher, *args, kind="x_as_v"), "the student's output was compared with the "
             "clean-image target x̃ itself: the student predicts v, so compare with v = (α_t z_t − x̃) / σ_t"),
        ], rtol=1e-3, ref=ref)
        _require(why is None, f"distillation_loss is wrong at t = {t} -> {t_mid} -> {t_next}: {why}.")
        _require(_close(loss.detach(), ref, rtol=1e-3), f"distillation_loss is wrong at t = {t} -> {t_mid} -> "
                 f"{t_next}: {float(loss):.6g} instead of {float(ref):.6g}. Two guided teacher DDIM steps, the target "
                 "x̃ from the formula, v = (α_t z_t − x̃) / σ_t, then the mean squared error of the student's output")
        _require(loss.requires_grad, "the loss carries no gradient: do not call .item() or .detach() on it")
        loss.backward()
        _require(teacher.gain.grad is None, "gradients flow into the teacher: it is fixed, so compute its steps "
                 "inside `with torch.no_grad():`")
        _require(student.w.grad is not None, "no gradient reached the student")
    _ok("distillation_loss: two guided teacher steps, the one-step target, and the student's v against it")
