"""Checks for the exercises: test a student's function against the package's reference and say
what is wrong in words a student can act on.

Each ``check_*`` function takes the student's function, runs it on small fixed inputs, and
either prints a line starting with "✓" or raises :class:`CheckFailed` with a diagnosis: it
tries the usual mistakes (an off-by-one in ᾱ, a missing square root, swapped terms, ...) and
names the one that matches. Shapes and conventions are those of the package (code timesteps
0..T-1, images in [-1, 1], guidance ε_uncond + w (ε_cond − ε_uncond)).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from . import metrics, samplers, schedules
from .models import UNet


class CheckFailed(AssertionError):
    """The student's function gave a wrong answer; the message says how."""


def _close(a, b, tol=1e-4) -> bool:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tol, atol=tol))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _ok(message: str) -> None:
    print(f"✓ {message}")


def _tensor(value, name: str) -> torch.Tensor:
    _require(isinstance(value, torch.Tensor), f"{name} should return a torch.Tensor, got {type(value).__name__}")
    return value


# --- lesson 1: q_sample and the L_simple step --------------------------------------------------

def check_q_sample(fn) -> None:
    """``fn(x0, t, noise, alpha_bars) -> x_t`` with x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) noise."""
    s = schedules.make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1, torch.randn(4, 1, 28, 28, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    out = _tensor(fn(x0, t, noise, s.alpha_bars), "q_sample")
    _require(out.shape == x0.shape, f"x_t should have the shape of x0, {list(x0.shape)}; yours is {list(out.shape)}")
    if _close(out, s.q_sample(x0, t, noise)):
        return _ok("q_sample matches the package's forward jump at t = 0, 10, 500, 999")

    def jump(abar):
        a = abar.view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    ab = s.alpha_bars
    diagnoses = [
        (jump(s.alpha_bars_prev[t]), "you used ᾱ one step too early (ᾱ_{t-1}): index alpha_bars with t itself"),
        (jump(ab[(t + 1).clamp(max=999)]), "you used ᾱ one step too late (ᾱ_{t+1}): index alpha_bars with t itself"),
        (jump(s.alphas[t]), "you used α_t = 1 − β_t (one step) instead of ᾱ_t (the product over all steps up to t)"),
        (ab[t].view(-1, 1, 1, 1) * x0 + (1 - ab[t]).view(-1, 1, 1, 1) * noise,
         "you forgot the square roots: x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε"),
        (ab[t].sqrt().view(-1, 1, 1, 1) * noise + (1 - ab[t]).sqrt().view(-1, 1, 1, 1) * x0,
         "x0 and the noise are swapped: the signal gets sqrt(ᾱ_t), the noise sqrt(1 − ᾱ_t)"),
    ]
    for wrong, why in diagnoses:
        _require(not _close(out, wrong), f"q_sample is wrong: {why}.")
    worst = (out - s.q_sample(x0, t, noise)).abs().flatten(1).max(1).values
    raise CheckFailed(f"q_sample is wrong; the largest error per image at t = {t.tolist()} is "
                      f"{[round(v, 4) for v in worst.tolist()]}")


class _Recorder(torch.nn.Module):
    """A stand-in network that remembers its inputs and returns a fixed guess."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t, y=None):
        self.seen = (x.detach().clone(), t.detach().clone())
        return self.w * x.flip(-1)


def check_l_simple(fn) -> None:
    """``fn(model, x0, t, noise, alpha_bars) -> loss``: the MSE between noise and model(x_t, t)."""
    s = schedules.make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(6, 1, 28, 28, generator=g) * 2 - 1, torch.randn(6, 1, 28, 28, generator=g)
    t = torch.tensor([0, 1, 99, 500, 998, 999])
    model = _Recorder()
    loss = _tensor(fn(model, x0, t, noise, s.alpha_bars), "l_simple")
    _require(loss.ndim == 0, f"the loss should be a single number (a 0-d tensor), got shape {list(loss.shape)}")
    _require(loss.requires_grad, "the loss carries no gradient: do not call .item() or .detach() on it")
    _require(hasattr(model, "seen"), "the model was never called")
    x_in, t_in = model.seen
    x_t = s.q_sample(x0, t, noise)
    _require(not _close(x_in, x0), "the model got the clean x0: feed it the noised x_t = q_sample(x0, t, noise)")
    _require(_close(x_in, x_t), "the model's input is not x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε")
    _require(torch.equal(t_in.long(), t), "the model must get the timesteps t as well")
    pred = 0.5 * x_t.flip(-1)
    _require(not _close(loss, ((x0 - pred) ** 2).mean()), "you compared the prediction with x0: "
             "the network predicts the noise ε, so the target is ε")
    _require(not _close(loss, ((noise - pred) ** 2).sum()), "use the mean squared error, not the sum")
    _require(_close(loss, ((noise - pred) ** 2).mean()), "the loss should be ((ε − ε_θ(x_t, t))²).mean()")
    _ok("l_simple noises x0 to x_t, asks the model for ε, and returns the mean squared error")


# --- lesson 2: the cosine schedule --------------------------------------------------------------

def check_cosine_betas(fn) -> None:
    """``fn(T, s=0.008, max_beta=0.999) -> betas [T]``, Nichol & Dhariwal's cosine schedule."""
    T = 1000
    betas = _tensor(fn(T), "cosine_betas").double()
    ref = schedules.cosine_betas(T)
    _require(betas.shape == (T,), f"expected T = {T} betas, got shape {list(betas.shape)}")
    if _close(betas, ref, 1e-5):
        return _ok("cosine_betas matches the package for T = 1000 (and is capped at 0.999)")
    _require(not _close(betas, schedules.linear_betas(T), 1e-5),
             "these are the linear schedule's betas (1e-4 to 0.02), not the cosine ones: define ᾱ(u) = "
             "cos²((u + s)/(1 + s) · π/2) and take β_t = 1 − ᾱ((t+1)/T) / ᾱ(t/T)")
    _require(not _close(betas, schedules.cosine_betas(T, s=0.0), 1e-5),
             "you left out the offset s = 0.008 in cos²((u + s)/(1 + s) · π/2): without it the first β is ~0")
    abar, ref_abar = torch.cumprod(1 - betas, 0), torch.cumprod(1 - ref, 0)
    _require(abs(abar[0] - ref_abar[0]) < 1e-6,
             f"ᾱ at t = 0 should be about {ref_abar[0]:.6f}, yours is {abar[0]:.6f}: "
             + ("did you start the product one step late (ᾱ_0 = 1, i.e. β_0 = 0)?" if abar[0] > 1 - 1e-9 else
                "did you start the product at the wrong step (ᾱ(1/T)/ᾱ(0) is the first value)?"))
    _require(betas.max() <= 0.999 + 1e-9, f"the largest β is {betas.max():.4f}: cap β at max_beta = 0.999, "
             "else the last step divides by sqrt(1 − β) = 0")
    _require(torch.all(betas > 0), "every β must be positive")
    bad = int((betas - ref).abs().argmax())
    raise CheckFailed(f"cosine_betas differs from the reference most at t = {bad}: {betas[bad]:.6f} vs "
                      f"{ref[bad]:.6f}. Check the offset s = 0.008 and the ratio ᾱ((t+1)/T) / ᾱ(t/T)")


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
            out = _tensor(fn(x, eps, abar_t, abar_prev, eta, noise), "ddim_step")
            ref = samplers.ddim_step(s, x, t, t_prev, eps, eta, noise)
            if _close(out, ref, 1e-3):
                continue
            x0 = (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
            sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
            _require(eta == 0 or not _close(out, samplers.ddim_step(s, x, t, t_prev, eps, 0.0, noise), 1e-3),
                     f"with eta = {eta} your step equals the eta = 0 step: eta must add σ·noise (and shrink the "
                     "direction term by σ²)")
            _require(not _close(out, abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps + sigma * noise, 1e-3),
                     "the direction term should be sqrt(1 − ᾱ_prev − σ²)·ε: you left out the −σ²")
            _require(not _close(out, abar_prev.sqrt() * x0 + (1 - abar_t - sigma**2).clamp(min=0).sqrt() * eps
                                + sigma * noise, 1e-3),
                     "the direction term uses ᾱ_prev (where you are going), not ᾱ_t: sqrt(1 − ᾱ_prev − σ²)·ε")
            _require(not _close(out, abar_prev.sqrt() * x0 - (1 - abar_prev - sigma**2).sqrt() * eps
                                + sigma * noise, 1e-3),
                     "the direction term points the wrong way: it is + sqrt(1 − ᾱ_prev − σ²)·ε")
            raise CheckFailed(f"ddim_step is wrong at t = {t} -> {t_prev}, eta = {eta}: largest error "
                              f"{(out - ref).abs().max():.4g}. Start from x0_hat = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t)")
    _ok("ddim_step matches the package for eta = 0, 0.5 and 1, including the last step to ᾱ = 1")


def _tiny_model(**kw) -> UNet:
    torch.manual_seed(0)
    return UNet(channels=(8, 16, 16), emb_dim=32, **kw).eval()


def check_ddim_sample(fn) -> None:
    """``fn(model, x_T, alpha_bars, timesteps) -> x_0``: DDIM (eta = 0) over decreasing ``timesteps``."""
    model, s = _tiny_model(), schedules.make_schedule("linear", 1000)
    x_T = samplers.initial_noise(3, seed=5)
    steps = samplers.ddim_timesteps(1000, 10)
    with torch.no_grad():
        out = _tensor(fn(model, x_T, s.alpha_bars, steps), "ddim_sample")
    ref = samplers.sample(model, s, 3, sampler="ddim", steps=10, x_T=x_T, clip_x0=False, progress=False).images
    _require(out.shape == ref.shape, f"expected samples of shape {list(ref.shape)}, got {list(out.shape)}")
    _require(_close(out, ref, 1e-3), "ddim_sample differs from the package's 10-step DDIM: go through `timesteps` "
             "in order, take t_prev as the next one (and ᾱ_prev = 1 after the last), and feed each output back in")
    _ok("ddim_sample reproduces the package's 10-step DDIM from the same x_T")


# --- lesson 4: classifier-free guidance ---------------------------------------------------------

def check_cfg(fn) -> None:
    """``fn(eps_cond, eps_uncond, w) -> eps``, with eps = eps_uncond + w (eps_cond − eps_uncond)."""
    g = torch.Generator().manual_seed(3)
    cond, uncond = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    for w in (1.0, 3.0, 0.0, 7.5):
        out = _tensor(fn(cond, uncond, w), "cfg")
        if _close(out, samplers.cfg_combine(cond, uncond, w)):
            continue
        _require(not _close(out, cond + w * (uncond - cond)),
                 f"at w = {w} the terms are swapped: start from ε_uncond and move w times towards ε_cond")
        _require(not _close(out, cond + w * (cond - uncond)),
                 f"at w = {w}: the base is ε_uncond, not ε_cond, so that w = 1 gives the plain conditional ε")
        raise CheckFailed(f"cfg is wrong at w = {w}; check: w = 0 must give ε_uncond and w = 1 ε_cond")
    _ok("cfg gives ε_uncond at w = 0, ε_cond at w = 1, and extrapolates beyond")


def check_drop_condition(fn) -> None:
    """``fn(labels, null_class, p, generator) -> labels`` with each label replaced by null w.p. p."""
    labels = torch.arange(100_000) % 10
    for p in (0.1, 0.3):
        out = _tensor(fn(labels.clone(), 10, p, torch.Generator().manual_seed(0)), "drop_condition")
        _require(out.shape == labels.shape, "return one label per input label")
        dropped = out == 10
        rate = dropped.float().mean().item()
        _require(rate > 0 or torch.equal(out, labels), "labels were changed, but not to the null class "
                 "(index 10, the extra row of the class embedding)")
        _require(rate > 0, "no label was ever dropped: replace each by the null class with probability p")
        _require(abs(rate - p) < 0.01, f"with p = {p} you dropped {rate:.3f} of the labels" +
                 (": you drop with probability 1 − p" if abs(rate - (1 - p)) < 0.01 else ""))
        _require(torch.equal(out[~dropped], labels[~dropped]), "labels that are kept must stay unchanged")
    _require(torch.equal(fn(labels[:50].clone(), 10, 0.0, torch.Generator().manual_seed(0)), labels[:50]),
             "p = 0 must keep every label")
    _ok("drop_condition replaces labels by the null class at rate p and keeps the rest")


# --- lesson 5: Fréchet distance and the elbow ---------------------------------------------------

def check_frechet_distance(fn) -> None:
    """``fn(mu1, sigma1, mu2, sigma2) -> float`` (NumPy inputs)."""
    rng = np.random.default_rng(4)
    d = 8
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    s1, s2 = a @ a.T / d + 0.1 * np.eye(d), b @ b.T / d + 0.1 * np.eye(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    out = float(fn(mu1, s1, mu2, s2))
    ref = metrics.frechet_distance(mu1, s1, mu2, s2)
    if abs(out - ref) < 1e-5 * max(1, abs(ref)):
        _require(abs(float(fn(mu1, s1, mu1, s1))) < 1e-6, "a distribution against itself must give 0")
        return _ok("frechet_distance matches the reference, and gives 0 for a distribution against itself")
    mean_term = float(np.sum((mu1 - mu2) ** 2))
    trace = float(np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
    _require(abs(out - mean_term) > 1e-6, "you only have the mean term ||μ1 − μ2||²: add the trace term "
             "Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)")
    _require(abs(out - trace) > 1e-6, "you only have the trace term: add ||μ1 − μ2||²")
    _require(abs(out - (mean_term + np.trace(s1 + s2 - 2 * s1 @ s2))) > 1e-6,
             "(Σ1 Σ2)^½ is a matrix square root (scipy.linalg.sqrtm), and you left it out")
    _require(abs(out - (mean_term + np.trace(s1 + s2 - 2 * np.sqrt(np.abs(s1 @ s2))))) > 1e-6,
             "np.sqrt is element-wise: the formula needs the matrix square root scipy.linalg.sqrtm")
    raise CheckFailed(f"frechet_distance gives {out:.5f}, the reference {ref:.5f}")


def check_find_elbow(fn) -> None:
    """``fn(x, y) -> index`` of the point farthest from the chord (axes scaled to [0, 1])."""
    x = np.arange(12, dtype=float)
    for kink in (2, 5, 8):
        y = np.where(x <= kink, 10 - 3 * x, 10 - 3 * kink - 0.1 * (x - kink))
        for curve, name in ((y, "a falling curve"), (-y, "a rising curve")):
            got = int(fn(x, curve))
            _require(got == kink, f"on {name} with its bend at x = {kink}, you found index {got}" +
                     (": that is the curve's extreme value, not its bend" if got in (int(np.argmin(curve)),
                                                                                     int(np.argmax(curve))) else ""))
    w = np.array([0, 1, 2, 3, 5, 7, 10], dtype=float)
    acc = np.array([0.1, 0.5, 0.8, 0.9, 0.95, 0.97, 0.98])
    _require(int(fn(w, acc)) == metrics.find_elbow(w, acc), "on unevenly spaced x (w = 0, 1, 2, 3, 5, 7, 10) "
             "measure distances with the x values, not the positions in the list")
    _ok("find_elbow finds the bend of piecewise-linear and saturating curves")


# --- lesson 6: timestep-embedding health --------------------------------------------------------

def check_timestep_sensitivity(fn) -> None:
    """``fn(model, x, timesteps) -> float``: the share of the output's energy that varies with t."""
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    healthy, dead = _tiny_model(), _tiny_model(dead_time_embedding=True)
    ts = (0, 250, 500, 750, 999)
    with torch.no_grad():
        h, d = float(fn(healthy, x, ts)), float(fn(dead, x, ts))
        ref = metrics.timestep_sensitivity(healthy, x, ts)
    _require(abs(d) < 1e-8, f"a dead embedding must read (about) 0; yours reads {d:.3g}")
    _require(h > 1e-6, f"a healthy model must read clearly above 0; yours reads {h:.3g}")
    _require(abs(h - ref) < 1e-3 * max(ref, 1e-6) + 1e-7, f"yours reads {h:.6f} on the healthy model, the "
             f"reference {ref:.6f}: centre the outputs on their mean over t and divide by the mean squared output")
    _ok("timestep_sensitivity reads 0 for a dead embedding and matches the reference on a healthy model")
