"""Every exercise check accepts a right answer and rejects the plausible wrong ones.
A check that accepts a wrong answer is a bug."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from academy_diffusion import checks, metrics, samplers, schedules
from academy_diffusion.checks import CheckFailed


def _expect_fail(check, fn, *words):
    with pytest.raises(CheckFailed) as err:
        check(fn)
    for w in words:
        assert w in str(err.value), f"message {str(err.value)!r} should mention {w!r}"


# --- q_sample ----------------------------------------------------------------------------------

def _q(abar_index):
    def q_sample(x0, t, noise, alpha_bars):
        a = abar_index(alpha_bars, t).view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise
    return q_sample


def test_q_sample_check():
    checks.check_q_sample(_q(lambda ab, t: ab[t]))
    prev = torch.cat([torch.ones(1), schedules.make_schedule("linear").alpha_bars[:-1]])
    _expect_fail(checks.check_q_sample, _q(lambda ab, t: prev[t]), "too early")
    _expect_fail(checks.check_q_sample, _q(lambda ab, t: ab[(t + 1).clamp(max=999)]), "too late")
    alphas = schedules.make_schedule("linear").alphas
    _expect_fail(checks.check_q_sample, _q(lambda ab, t: alphas[t]), "product")
    no_sqrt = lambda x0, t, n, ab: ab[t].view(-1, 1, 1, 1) * x0 + (1 - ab[t]).view(-1, 1, 1, 1) * n
    _expect_fail(checks.check_q_sample, no_sqrt, "square roots")
    swapped = lambda x0, t, n, ab: ab[t].sqrt().view(-1, 1, 1, 1) * n + (1 - ab[t]).sqrt().view(-1, 1, 1, 1) * x0
    _expect_fail(checks.check_q_sample, swapped, "swapped")
    _expect_fail(checks.check_q_sample, lambda x0, t, n, ab: x0.numpy(), "torch.Tensor")


def _l_simple(target="noise", reduce="mean", feed="x_t", detach=False):
    def l_simple(model, x0, t, noise, alpha_bars):
        a = alpha_bars[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = model(x_t if feed == "x_t" else x0, t)
        err = ((noise if target == "noise" else x0) - pred) ** 2
        loss = err.mean() if reduce == "mean" else err.sum()
        return loss.detach() if detach else loss
    return l_simple


def test_l_simple_check():
    checks.check_l_simple(_l_simple())
    _expect_fail(checks.check_l_simple, _l_simple(target="x0"), "target is ε")
    _expect_fail(checks.check_l_simple, _l_simple(reduce="sum"), "not the sum")
    _expect_fail(checks.check_l_simple, _l_simple(feed="x0"), "clean x0")
    _expect_fail(checks.check_l_simple, _l_simple(detach=True), "gradient")


# --- cosine schedule ---------------------------------------------------------------------------

def _cosine(shift=0, cap=True, s_off=0.008):
    def cosine_betas(T, s=0.008, max_beta=0.999):
        f = lambda u: math.cos((u + s_off) / (1 + s_off) * math.pi / 2) ** 2
        betas = [1 - f((t + 1 - shift) / T) / f((t - shift) / T) if t - shift >= 0 else 0.0 for t in range(T)]
        return torch.tensor([min(b, max_beta) if cap else b for b in betas], dtype=torch.float64)
    return cosine_betas


def test_cosine_check():
    checks.check_cosine_betas(_cosine())
    checks.check_cosine_betas(lambda T, s=0.008, max_beta=0.999: schedules.cosine_betas(T, s, max_beta))
    _expect_fail(checks.check_cosine_betas, lambda T: schedules.linear_betas(T), "linear")
    _expect_fail(checks.check_cosine_betas, _cosine(shift=1), "t = 0", "one step late")
    _expect_fail(checks.check_cosine_betas, _cosine(cap=False), "0.999")
    _expect_fail(checks.check_cosine_betas, _cosine(s_off=0.0), "offset")
    _expect_fail(checks.check_cosine_betas, lambda T: schedules.cosine_betas(T)[torch.arange(T) // 2 * 2], "differs")


# --- DDIM --------------------------------------------------------------------------------------

def _ddim(kind="right"):
    def ddim_step(x_t, eps, abar_t, abar_prev, eta, noise):
        x0 = (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
        sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
        if kind == "ignores eta":
            return abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
        if kind == "no sigma in direction":
            return abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps + sigma * noise
        if kind == "abar_t in direction":
            return abar_prev.sqrt() * x0 + (1 - abar_t - sigma**2).clamp(min=0).sqrt() * eps + sigma * noise
        if kind == "minus direction":
            return abar_prev.sqrt() * x0 - (1 - abar_prev - sigma**2).sqrt() * eps + sigma * noise
        return abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps + sigma * noise
    return ddim_step


def test_ddim_step_check():
    checks.check_ddim_step(_ddim())
    _expect_fail(checks.check_ddim_step, _ddim("ignores eta"), "eta")
    _expect_fail(checks.check_ddim_step, _ddim("no sigma in direction"), "σ²")
    _expect_fail(checks.check_ddim_step, _ddim("abar_t in direction"), "ᾱ_prev")
    _expect_fail(checks.check_ddim_step, _ddim("minus direction"), "wrong way")


def _ddim_sample(skip_last=False, feed_back=True):
    step = _ddim()

    def ddim_sample(model, x_T, alpha_bars, timesteps):
        x = x_T
        for i, t in enumerate(timesteps):
            last = i + 1 == len(timesteps)
            if last and skip_last:
                break
            abar_prev = torch.tensor(1.0) if last else alpha_bars[timesteps[i + 1]]
            eps = model((x if feed_back else x_T), torch.full((len(x),), t))
            x = step(x, eps, alpha_bars[t], abar_prev, 0.0, torch.zeros_like(x))
        return x
    return ddim_sample


def test_ddim_sample_check():
    checks.check_ddim_sample(_ddim_sample())
    _expect_fail(checks.check_ddim_sample, _ddim_sample(skip_last=True), "after the last")
    _expect_fail(checks.check_ddim_sample, _ddim_sample(feed_back=False), "feed each output back")


# --- CFG and condition dropout -----------------------------------------------------------------

def test_cfg_check():
    checks.check_cfg(lambda c, u, w: u + w * (c - u))
    _expect_fail(checks.check_cfg, lambda c, u, w: c + w * (u - c), "swapped")
    _expect_fail(checks.check_cfg, lambda c, u, w: c + w * (c - u), "base is ε_uncond")
    _expect_fail(checks.check_cfg, lambda c, u, w: w * c, "w = 0 must give ε_uncond")


def _drop(kind="right"):
    def drop_condition(labels, null_class, p, generator):
        r = torch.rand(labels.shape, generator=generator)
        if kind == "never":
            return labels
        if kind == "inverted":
            return torch.where(r < 1 - p, torch.full_like(labels, null_class), labels)
        if kind == "all":
            return torch.full_like(labels, null_class)
        if kind == "zero":  # drops to class 0 instead of the null class
            return torch.where(r < p, torch.zeros_like(labels), labels)
        return torch.where(r < p, torch.full_like(labels, null_class), labels)
    return drop_condition


def test_drop_condition_check():
    checks.check_drop_condition(_drop())
    _expect_fail(checks.check_drop_condition, _drop("never"), "was ever dropped")
    _expect_fail(checks.check_drop_condition, _drop("zero"), "not to the null class")
    _expect_fail(checks.check_drop_condition, _drop("inverted"), "1 − p")
    _expect_fail(checks.check_drop_condition, _drop("all"), "dropped 1.000")


# --- Fréchet distance and elbow ----------------------------------------------------------------

def test_frechet_check():
    checks.check_frechet_distance(metrics.frechet_distance)
    mean_only = lambda m1, s1, m2, s2: float(np.sum((m1 - m2) ** 2))
    _expect_fail(checks.check_frechet_distance, mean_only, "trace term")
    trace_only = lambda m1, s1, m2, s2: float(np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
    _expect_fail(checks.check_frechet_distance, trace_only, "add ||μ1 − μ2||²")
    no_sqrt = lambda m1, s1, m2, s2: float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * s1 @ s2))
    _expect_fail(checks.check_frechet_distance, no_sqrt, "matrix square root")
    elementwise = lambda m1, s1, m2, s2: float(np.sum((m1 - m2) ** 2)
                                               + np.trace(s1 + s2 - 2 * np.sqrt(np.abs(s1 @ s2))))
    _expect_fail(checks.check_frechet_distance, elementwise, "element-wise")


def test_elbow_check():
    checks.check_find_elbow(metrics.find_elbow)
    _expect_fail(checks.check_find_elbow, lambda x, y: int(np.argmin(y)), "extreme value")

    def biggest_drop(x, y):  # where y changes most between neighbours: not the bend
        return int(np.argmax(np.abs(np.diff(y))))
    _expect_fail(checks.check_find_elbow, biggest_drop, "bend at")

    def unscaled_x(x, y):  # without scaling: still right, scaling does not move the farthest point
        x, y = np.asarray(x, float), np.asarray(y, float)
        d = np.abs((y[-1] - y[0]) * (x - x[0]) - (x[-1] - x[0]) * (y - y[0]))
        return int(np.argmax(d))
    checks.check_find_elbow(unscaled_x)

    def by_position(x, y):
        return metrics.find_elbow(np.arange(len(y)), y)
    _expect_fail(checks.check_find_elbow, by_position, "unevenly spaced")


# --- timestep sensitivity ----------------------------------------------------------------------

def test_sensitivity_check():
    checks.check_timestep_sensitivity(metrics.timestep_sensitivity)

    def not_normalised(model, x, ts):
        outs = torch.stack([model(x, torch.full((len(x),), t)) for t in ts])
        return (outs - outs.mean(0)).pow(2).mean().item()
    _expect_fail(checks.check_timestep_sensitivity, not_normalised, "divide by")

    def compares_inputs(model, x, ts):  # measures the input, not the output: constant
        return 0.0
    _expect_fail(checks.check_timestep_sensitivity, compares_inputs, "healthy model must read")


def test_ddim_reference_is_the_sampler():
    """The checks compare against the package's own sampler (itself tested against diffusers)."""
    s = schedules.make_schedule("linear", 1000)
    x, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    ref = samplers.ddim_step(s, x, 500, 450, eps, 0.0)
    got = _ddim()(x, eps, s.alpha_bars[500], s.alpha_bars[450], 0.0, torch.zeros_like(x))
    torch.testing.assert_close(got, ref)
