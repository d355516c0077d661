"""Every exercise check accepts differently written right answers and rejects plausible wrong ones,
each with the message that names its mistake. The right answers are written here independently of
the package (loops, other formulations, float32, in place), so no check is compared with itself."""

import math

import numpy as np
import pytest
import torch

from academy_diffusion.course import checks
from academy_diffusion.course.checks import CheckFailed

# --- independent building blocks ------------------------------------------------------------------


def _abar(alpha_bars, t):
    return alpha_bars[t].view(-1, 1, 1, 1)


def q_loop(x0, t, noise, alpha_bars):  # one image at a time, math.sqrt on Python floats
    out = torch.empty_like(x0)
    for i in range(len(x0)):
        a = float(alpha_bars[int(t[i])])
        out[i] = math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i]
    return out


def q_vec(x0, t, noise, alpha_bars):
    a = _abar(alpha_bars, t)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def q_f32(x0, t, noise, alpha_bars):
    a = _abar(alpha_bars.float(), t).float()
    return (torch.sqrt(a) * x0.float() + torch.sqrt(1 - a) * noise.float()).float()


def _q_bad(kind):
    def fn(x0, t, noise, ab):
        if kind == "early":
            a = torch.cat([torch.ones(1), ab[:-1]])[t].view(-1, 1, 1, 1)
        elif kind == "late":
            a = ab[(t + 1).clamp(max=len(ab) - 1)].view(-1, 1, 1, 1)
        elif kind == "alpha":
            a = (ab / torch.cat([torch.ones(1), ab[:-1]]))[t].view(-1, 1, 1, 1)
        elif kind == "nosqrt":
            a = _abar(ab, t)
            return a * x0 + (1 - a) * noise
        elif kind == "swap":
            a = _abar(ab, t)
            return a.sqrt() * noise + (1 - a).sqrt() * x0
        elif kind == "noreshape":
            a = ab[t]
            return a.sqrt() * x0 + (1 - a).sqrt() * noise
        elif kind == "first_t":
            a = ab[t[0]]
        return a.sqrt() * x0 + (1 - a).sqrt() * noise
    return fn


# --- checks ---------------------------------------------------------------------------------------

def _expect_fail(check, fn, *words):
    with pytest.raises(CheckFailed) as err:
        check(fn)
    for w in words:
        assert w in str(err.value), f"message {str(err.value)!r} should mention {w!r}"


def _l_simple(target="noise", reduce="mean", feed="x_t", detach=False, backward=False, shift=0):
    def l_simple(model, x0, t, noise, alpha_bars):
        x_t = q_vec(x0, t, noise, alpha_bars)
        pred = model(x_t if feed == "x_t" else x0, t + shift)
        err = ((noise if target == "noise" else x0) - pred) ** 2
        loss = err.mean() if reduce == "mean" else err.sum() if reduce == "sum" else err.mean().sqrt()
        if backward:
            loss.backward()
        return loss.detach() if detach else loss
    return l_simple


def _l_simple_functional(model, x0, t, noise, alpha_bars):
    return torch.nn.functional.mse_loss(model(q_loop(x0, t, noise, alpha_bars), t), noise)


def _ddpm(kind="right"):
    def fn(x_t, eps, t, betas, alpha_bars, noise, variance):
        b, ab = betas[t].double(), alpha_bars[t].double()
        ab_prev = alpha_bars[t - 1].double() if t > 0 else torch.tensor(1.0, dtype=torch.float64)
        a = 1 - b
        coef = b / (1 - ab).sqrt() if kind != "nosqrt" else b / (1 - ab)
        mean = (x_t.double() - coef * eps.double()) / a.sqrt()
        var = b if variance == "beta" else (1 - ab_prev) / (1 - ab) * b
        if kind == "swapvar":
            var = (1 - ab_prev) / (1 - ab) * b if variance == "beta" else b
        std = var.sqrt() if kind != "varnotstd" else var
        add_noise = t > 0 or kind == "noise_at_0"
        if kind == "meanonly":
            add_noise = False
        return (mean + std * noise.double() if add_noise else mean).float()
    return fn


def _ddpm_posterior_form(x_t, eps, t, betas, alpha_bars, noise, variance):
    """Through x0_hat and the posterior coefficients (another formulation of the same step)."""
    ab = alpha_bars.double()
    ab_prev = ab[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64)
    x0 = (x_t - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()
    mean = ab_prev.sqrt() * betas[t] / (1 - ab[t]) * x0 + (1 - betas[t]).sqrt() * (1 - ab_prev) / (1 - ab[t]) * x_t
    var = betas[t] if variance == "beta" else (1 - ab_prev) / (1 - ab[t]) * betas[t]
    return mean + var.sqrt() * noise if t > 0 else mean


def _train_step(kind="right"):
    def fn(model, optimizer, x0, alpha_bars, generator):
        T = len(alpha_bars)
        if kind == "noise_first":
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, T, (len(x0),), generator=generator)
        else:
            t = torch.randint(1 if kind == "t_from_1" else 0, T + (1 if kind == "t_to_T" else 0), (len(x0),),
                              generator=generator)
            noise = torch.randn(x0.shape, generator=generator)
        x_t = q_vec(x0, t.clamp(max=T - 1), noise, alpha_bars)
        loss = ((noise - model(x_t, t)) ** 2).mean()
        if kind != "no_zero_grad":
            optimizer.zero_grad()
        loss.backward()
        if kind != "no_step":
            optimizer.step()
        return loss.item() if kind != "tensor" else loss
    return fn


def _train_step_with_mse(model, optimizer, x0, alpha_bars, generator):
    t = torch.randint(0, alpha_bars.shape[0], (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(q_loop(x0, t, noise, alpha_bars), t), noise)
    loss.backward()
    optimizer.step()
    return loss.item()


def _ema(kind="right"):
    def fn(ema, model, decay):
        with torch.no_grad():
            for e, m in zip(ema.parameters(), model.parameters(), strict=True):
                if kind == "right":
                    e.mul_(decay).add_(m, alpha=1 - decay)
                elif kind == "swapped":
                    e.mul_(1 - decay).add_(m, alpha=decay)
                elif kind == "rebind":
                    e = decay * e + (1 - decay) * m  # noqa: PLW2901 (the mistake under test)
                elif kind == "copy":
                    e.copy_(m)
                elif kind == "no_decay":
                    e.add_(m, alpha=1 - decay)
    return fn


def _ema_lerp(ema, model, decay):
    for e, m in zip(ema.parameters(), model.parameters(), strict=True):
        e.data = torch.lerp(e.data, m.data, 1 - decay)


def _cosine(kind="right", dtype=torch.float64):
    def fn(T, s=0.008, max_beta=0.999):
        if kind == "hardcoded_s":
            s = 0.008
        if kind == "hardcoded_cap":
            max_beta = 0.999
        u = torch.arange(T + 1, dtype=dtype) / T
        angle = (u + s) / (1 + s) * math.pi / 2
        abar = {"sin": torch.sin(angle) ** 2, "unsquared": torch.cos(angle),
                "no_pi": torch.cos((u + s) / (1 + s)) ** 2}.get(kind, torch.cos(angle) ** 2)
        betas = 1 - abar[1:] / abar[:-1]
        if kind == "late":
            betas = torch.cat([torch.zeros(1, dtype=dtype), betas[:-1]])
        return betas if kind == "nocap" else betas.clamp(max=max_beta)
    return fn


def _cosine_loop(T, s=0.008, max_beta=0.999):
    f = lambda k: math.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2
    return torch.tensor([min(1 - f(k + 1) / f(k), max_beta) for k in range(T)], dtype=torch.float64)


def _ddim(kind="right"):
    def fn(x_t, eps, abar_t, abar_prev, eta, noise):
        x0 = (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
        eta = 0 if kind == "no_eta" else eta
        sigma = eta * ((1 - abar_prev) / (1 - abar_t)).sqrt() * (1 - abar_t / abar_prev).sqrt()
        d2 = {"no_sigma2": 1 - abar_prev, "abar_t": 1 - abar_t - sigma**2}.get(kind, 1 - abar_prev - sigma**2)
        direction = d2.clamp(min=0).sqrt() * eps
        if kind == "sign":
            direction = -direction
        out = (abar_t if kind == "x0_scale" else abar_prev).sqrt() * x0 + direction
        return out + {"sigma2": sigma**2}.get(kind, sigma) * noise
    return fn


def _ddim_f64(x_t, eps, abar_t, abar_prev, eta, noise):
    x_t, eps, noise = x_t.double(), eps.double(), noise.double()
    a_t, a_p = float(abar_t), float(abar_prev)
    sigma = eta * math.sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))
    x0 = (x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    return math.sqrt(a_p) * x0 + math.sqrt(max(0.0, 1 - a_p - sigma**2)) * eps + sigma * noise


def _ddim_sample(kind="right"):
    def fn(model, x_T, alpha_bars, timesteps):
        x = x_T.clone()
        timesteps = timesteps[::2] if kind == "half" else timesteps
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            ab_t = alpha_bars[t]
            ab_prev = alpha_bars[t_prev] if t_prev >= 0 else torch.tensor(1.0)
            eps = model(x if kind != "no_feedback" else x_T, torch.full((len(x),), t))
            x = _ddim_f64(x, eps, ab_t, ab_prev, 0.0, torch.zeros_like(x)).float()
        return x
    return fn


def _ddim_sample_while(model, x_T, alpha_bars, timesteps):
    """A second right answer for the DDIM loop: a while loop over (t, t_prev) pairs."""
    pairs = list(zip(timesteps, [*timesteps[1:], -1], strict=True))
    x = x_T
    while pairs:
        t, t_prev = pairs.pop(0)
        eps = model(x, torch.full((len(x),), t))
        ab_prev = alpha_bars[t_prev] if t_prev >= 0 else torch.tensor(1.0)
        x0 = (x - (1 - alpha_bars[t]).sqrt() * eps) / alpha_bars[t].sqrt()
        x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    return x


def _cfg_right_inplace(eps_cond, eps_uncond, w):  # in-place operations, on its own copy
    out = eps_cond.clone()
    out.sub_(eps_uncond).mul_(w).add_(eps_uncond)
    return out


def _cfg_lerp(eps_cond, eps_uncond, w):
    return torch.lerp(eps_uncond, eps_cond, w)


def _cfg_swapped_inplace(eps_cond, eps_uncond, w):  # the fooling example
    eps_cond += w * (eps_uncond - eps_cond)
    return eps_cond


def _drop(kind="right"):
    def fn(labels, null_class, p, generator=None):
        u = torch.rand(labels.shape, generator=generator)
        if kind == "inverted":
            drop = u > p
        elif kind == "whole_classes":
            drop = labels < round(p * null_class)
        elif kind == "wrong_null":
            drop = u < p
            return torch.where(drop, torch.full_like(labels, -1), labels)
        else:
            drop = u < p
        if kind == "float":
            return torch.where(drop, torch.tensor(float(null_class)), labels.float())
        if kind == "shuffled_keep":
            return torch.where(drop, torch.full_like(labels, null_class), labels.roll(1))
        return labels.masked_fill(drop, null_class) if kind == "right" else torch.where(
            drop, torch.full_like(labels, null_class), labels)
    return fn


def _drop_loop(labels, null_class, p, generator=None):
    u = torch.rand(labels.shape, generator=generator)
    out = labels.clone()
    out[u < p] = null_class
    return out


def _guided(kind="right"):
    def fn(model, x_T, labels, w, alpha_bars, timesteps):
        x = x_T.clone()
        null = torch.full_like(labels, model.null_class)
        for i, t in enumerate(timesteps):
            tt = torch.full((len(x),), t)
            if kind == "two_calls":
                e_c, e_u = model(x, tt, labels), model(x, tt, null)
            else:
                order = (null, labels) if kind == "swapped" else (labels, null)
                e_c, e_u = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat(order)).chunk(2)
            eps = e_u + w * (e_c - e_u) if kind != "plain" else e_c
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            ab_prev = alpha_bars[t_prev] if t_prev >= 0 else torch.tensor(1.0)
            x = _ddim_f64(x, eps, alpha_bars[t], ab_prev, 0.0, torch.zeros_like(x)).float()
        return x
    return fn


def _guided_via_cfg_combine(model, x_T, labels, w, alpha_bars, timesteps):
    x = x_T
    for i, t in enumerate(timesteps):
        both = model(torch.cat([x, x]), torch.full((2 * len(x),), t),
                     torch.cat([labels, torch.full_like(labels, model.null_class)]))
        e_c, e_u = both[: len(x)], both[len(x):]
        eps = torch.lerp(e_u, e_c, w)
        ab_prev = alpha_bars[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.tensor(1.0)
        x0 = (x - (1 - alpha_bars[t]).sqrt() * eps) / alpha_bars[t].sqrt()
        x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    return x


def _stats(kind="right"):
    def fn(features):
        f = features.double()
        mu = f.mean(0) if kind != "axis1" else f.mean(1)
        c = f - mu if kind not in ("uncentred", "axis1") else f
        n = len(f)
        if kind == "rowvar":
            return mu, torch.tensor(np.cov(f.numpy(), rowvar=True))
        sigma = c.T @ c / (n if kind == "biased" else n - 1)
        if kind == "diag":
            sigma = torch.diag(torch.diag(sigma))
        return mu, sigma
    return fn


def _stats_numpy(features):
    f = np.asarray(features, dtype=np.float32)  # float32, NumPy
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _fd_right(mu1, s1, mu2, s2):
    import scipy.linalg

    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))


def _fd_float32(mu1, s1, mu2, s2):  # eigenvalues of sqrt(S1) S2 sqrt(S1), in float32
    mu1, s1, mu2, s2 = (np.asarray(a, dtype=np.float32) for a in (mu1, s1, mu2, s2))
    vals, vecs = np.linalg.eigh(s1)
    root = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def _fd_bad(kind):
    import scipy.linalg

    def fn(mu1, s1, mu2, s2):
        mean = float(np.sum((mu1 - mu2) ** 2))
        root = scipy.linalg.sqrtm(s1 @ s2).real
        return {"mean_only": mean, "trace_only": float(np.trace(s1 + s2 - 2 * root)),
                "no_sqrtm": mean + float(np.trace(s1 + s2 - 2 * s1 @ s2)),
                "elementwise": mean + float(np.trace(s1 + s2 - 2 * np.sqrt(np.abs(s1 @ s2)))),
                "no_factor2": mean + float(np.trace(s1 + s2 - root)),
                "sqrt_of_d2": math.sqrt(max(0.0, mean + float(np.trace(s1 + s2 - 2 * root))))}[kind]
    return fn


def _elbow(kind="right"):
    def fn(x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        if kind == "positions":
            x = np.arange(len(x), dtype=float)
        xs = (x - x[0]) / (x[-1] - x[0])
        ys = (y - y.min()) / (y.max() - y.min())
        dist = np.abs((ys[-1] - ys[0]) * xs - (xs[-1] - xs[0]) * (ys - ys[0])) / np.hypot(xs[-1] - xs[0],
                                                                                          ys[-1] - ys[0])
        i = int(np.argmax(dist))
        if kind == "x_value":
            return x[i]
        if kind == "extreme":
            return int(np.argmin(y))
        if kind == "signed":
            return int(np.argmax((ys[-1] - ys[0]) * xs - (xs[-1] - xs[0]) * (ys - ys[0])))
        return i
    return fn


def _elbow_loop(x, y):  # the perpendicular distance through vector projections, in a loop
    x, y = [float(v) for v in x], [float(v) for v in y]
    xs = [(v - x[0]) / (x[-1] - x[0]) for v in x]
    lo, hi = min(y), max(y)
    ys = [(v - lo) / (hi - lo) for v in y]
    ax, ay = xs[-1] - xs[0], ys[-1] - ys[0]
    norm = math.hypot(ax, ay)
    best, best_d = 0, -1.0
    for i, (px, py) in enumerate(zip(xs, ys, strict=True)):
        d = abs(ax * (py - ys[0]) - ay * (px - xs[0])) / norm
        if d > best_d:
            best, best_d = i, d
    return best


def _sens(kind="right"):
    @torch.no_grad()
    def fn(model, x, timesteps):
        outs = torch.stack([model(x, torch.full((len(x),), t)) for t in timesteps]).double()
        centred = outs - outs.mean(0, keepdim=True)
        if kind == "uncentred":
            return (outs.pow(2).mean() / outs.pow(2).mean()).item()
        if kind == "std":
            return outs.std(0).mean().item()
        if kind == "no_normalise":
            return centred.pow(2).mean().item()
        if kind == "first_only":
            return ((outs - outs[0]).pow(2).mean() / outs.pow(2).mean()).item()
        return (centred.pow(2).mean() / outs.pow(2).mean()).item()
    return fn


def _sens_loop(model, x, timesteps):
    with torch.no_grad():
        outs = [model(x, torch.full((len(x),), t)).double() for t in timesteps]
    mean = sum(outs) / len(outs)
    var = sum(((o - mean) ** 2).mean() for o in outs) / len(outs)
    energy = sum((o ** 2).mean() for o in outs) / len(outs)
    return float(var / energy)


def _dpm(kind="right"):
    def fn(x_t, x0_hat, previous, t, t_next, alpha_bars):
        if t_next < 0 and kind != "no_final":
            return x0_hat
        ab = alpha_bars.double()
        t_next = max(t_next, 0)
        lam = lambda i: 0.5 * math.log(ab[i] / (1 - ab[i])) * (2 if kind == "log_snr" else 1)
        a_next, s_next, s_t = math.sqrt(ab[t_next]), math.sqrt(1 - ab[t_next]), math.sqrt(1 - ab[t])
        h = lam(t_next) - lam(t)
        d = x0_hat
        if previous is not None and kind != "first_order":
            x0_prev, t_prev = previous
            r = (lam(t) - lam(t_prev)) / h
            r = 1 / r if kind == "r_inverted" else r
            d = (1 + 1 / (2 * r)) * x0_hat - 1 / (2 * r) * x0_prev
        sign = 1 if kind == "plus" else -1
        return s_next / s_t * x_t + sign * a_next * math.expm1(-h) * d
    return fn


def _dpm_via_ddim_form(x_t, x0_hat, previous, t, t_next, alpha_bars):
    """The same step written with DDIM's ingredients: x_next = sqrt(abar_next) D + sigma_next * eps_implied."""
    if t_next < 0:
        return x0_hat
    ab = alpha_bars.double()
    lam = 0.5 * torch.log(ab / (1 - ab))
    d = x0_hat.double()
    if previous is not None:
        r = (lam[t] - lam[previous[1]]) / (lam[t_next] - lam[t])
        d = d + (d - previous[0].double()) / (2 * r)
    eps_like = (x_t.double() - ab[t].sqrt() * d) / (1 - ab[t]).sqrt()
    return (ab[t_next].sqrt() * d + (1 - ab[t_next]).sqrt() * eps_like).float()


def _pr(kind="right"):
    def fn(real, fake, k):
        d_fr = torch.cdist(fake, real)
        kk = k if kind == "self_neighbour" else k + 1
        rad_r = torch.cdist(real, real).kthvalue(kk, 1).values
        rad_f = torch.cdist(fake, fake).kthvalue(kk, 1).values
        if kind == "own_radii":
            rad_r, rad_f = rad_f.mean().expand_as(rad_r), rad_r.mean().expand_as(rad_f)
        if kind == "squared":
            d_fr = d_fr**2
        p = (d_fr <= rad_r[None]).any(1).double().mean().item()
        r = (d_fr.T <= rad_f[None]).any(1).double().mean().item()
        return (r, p) if kind == "swapped" else (p, r)
    return fn


def _pr_loop(real, fake, k):
    def radii(x):
        return [sorted(float((x[i] - x[j]).norm()) for j in range(len(x)))[k] for i in range(len(x))]
    rr, rf = radii(real), radii(fake)
    p = sum(any(float((f - real[j]).norm()) <= rr[j] for j in range(len(real))) for f in fake) / len(fake)
    r = sum(any(float((x - fake[j]).norm()) <= rf[j] for j in range(len(fake))) for x in real) / len(real)
    return p, r


def _fm_loss(kind="right"):
    def fn(model, x0, t, noise):
        tt = t[:, None, None, None]
        if kind == "swapped":
            x_t = tt * x0 + (1 - tt) * noise
        else:
            x_t = x0 + tt * (noise - x0)  # the same line, written from x0
        target = x0 - noise if kind == "sign" else noise - x0
        t_in = t if kind == "unscaled" else (1 - t) * 1000 if kind == "reversed_t" else 1000 * t
        out = torch.nn.functional.mse_loss(model(x_t, t_in), target)
        return out.detach() * 0 + out if kind != "per_image" else (model(x_t, t_in) - target).pow(2).mean((1, 2, 3))
    return fn


def _fm_loss_loop(model, x0, t, noise):  # one image at a time, then the average
    total = 0.0
    for i in range(len(x0)):
        x_t = (1 - float(t[i])) * x0[i : i + 1] + float(t[i]) * noise[i : i + 1]
        total = total + ((model(x_t, t[i : i + 1] * 1000) - (noise[i : i + 1] - x0[i : i + 1])) ** 2).mean()
    return total / len(x0)


def _euler(kind="right"):
    def fn(model, x_T, steps):
        x = x_T.clone()
        grid = torch.linspace(1, 0, steps + 1)
        if kind == "forward":
            grid = grid.flip(0)
        if kind == "grid":
            grid = torch.linspace(1, 0, steps + 2)[:-1]
        for i in range(steps):
            t, t_next = float(grid[i]), float(grid[i + 1])
            v = model(x, torch.full((len(x),), t if kind == "unscaled" else 1000 * t))
            x = x - (t - t_next) * v if kind != "sign" else x + (t - t_next) * v
        return x
    return fn


def _euler_while(model, x_T, steps):
    x, t, dt = x_T, 1.0, 1.0 / steps
    for _ in range(steps):
        x = x + (-dt) * model(x, torch.full((len(x),), 1000.0 * t))
        t -= dt
    return x


def _to_latent(kind="right"):
    def fn(ae, x, scale):
        if kind == "grad":
            return scale * ae.encode(x)
        with torch.no_grad():
            code = ae.encode(x)
        return {"right": scale * code, "missing": code, "inverted": code / scale,
                "detached": (scale * ae.encode(x)).detach()}[kind]
    return fn


def _to_latent_detach(ae, x, scale):  # right: detach() instead of no_grad, scale written as a division
    return ae.encode(x).detach() / (1 / scale)


def _from_latent(kind="right"):
    def fn(ae, z, scale):
        return {"right": lambda: ae.decode(z / scale), "missing": lambda: ae.decode(z),
                "inverted": lambda: ae.decode(z * scale), "after": lambda: ae.decode(z) / scale,
                "clone": lambda: ae.decode(z.clone().mul_(1 / scale))}[kind]()
    return fn


def _latent_loss(kind="right"):
    def fn(model, ae, scale, x0, t, noise, alpha_bars):
        if kind == "grad":
            z0 = scale * ae.encode(x0)
        else:
            with torch.no_grad():
                z0 = {"unscaled": 1.0, "inverted": 1 / scale}.get(kind, scale) * ae.encode(x0)
        a = alpha_bars[t].view(-1, 1, 1, 1)
        if kind == "pixels":  # noises the digits, not the codes
            return ((model(a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0), t) - noise.mean()) ** 2).mean()
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
        return torch.nn.functional.mse_loss(model(z_t, t), noise)
    return fn


def _latent_loss_functional(model, ae, scale, x0, t, noise, alpha_bars):  # right: the schedule's own q_sample
    from academy_diffusion.schedules import make_schedule

    with torch.no_grad():
        z0 = ae.encode(x0) * scale
    z_t = make_schedule("linear", len(alpha_bars)).q_sample(z0, t, noise)
    return ((noise - model(z_t, t)) ** 2).mean()


def _distill_loss(kind="right"):
    def fn(student, teacher, z_t, t, t_mid, t_next, labels, w, alpha_bars):
        ab = lambda s: (torch.tensor(1.0) if s < 0 else alpha_bars[s])  # noqa: E731
        null = torch.full_like(labels, teacher.null_class)

        def step(z, s, s_next, net=teacher):
            ts = torch.full((len(z),), s)
            if kind == "batched":  # both halves in one call, as the package does
                cond, uncond = net(torch.cat([z, z]), torch.cat([ts, ts]), torch.cat([labels, null])).chunk(2)
            else:
                cond, uncond = net(z, ts, labels), net(z, ts, null)
            eps = cond + w * (uncond - cond) if kind == "swapped" else uncond + w * (cond - uncond)
            x0 = (z - (1 - ab(s)).sqrt() * eps) / ab(s).sqrt()
            return ab(s_next).sqrt() * x0 + (1 - ab(s_next)).sqrt() * eps

        net = student if kind == "student" else teacher
        if kind == "grad":
            z_next = step(step(z_t, t, t_mid, net), t_mid, t_next, net)
        else:
            with torch.no_grad():
                z_next = (step(z_t, t, t_next, net) if kind == "one_step"
                          else step(step(z_t, t, t_mid, net), t_mid, t_next, net))
        a, sg = ab(t).sqrt(), (1 - ab(t)).sqrt()
        a_n, sg_n = ab(t_next).sqrt(), (1 - ab(t_next)).sqrt()
        target = (z_next - sg_n / sg * z_t) / (a_n - sg_n / sg * a)
        v = (a * z_t - target) / sg
        return torch.nn.functional.mse_loss(student(z_t, torch.full((len(z_t),), t), labels), v)
    return fn


# --- the table: every check, its right answers and its wrong ones ----------------------------------

CASES = {
    "check_q_sample": (
        [q_loop, q_vec, q_f32],
        [(_q_bad("early"), "too early"), (_q_bad("late"), "too late"), (_q_bad("alpha"), "product"),
         (_q_bad("nosqrt"), "square roots"), (_q_bad("swap"), "swapped"), (_q_bad("first_t"), "first image"),
         (_q_bad("noreshape"), "reshape it to [B, 1, 1, 1]")]),
    "check_l_simple": (
        [_l_simple(), _l_simple_functional],
        [(_l_simple(target="x0"), "target is ε"), (_l_simple(reduce="sum"), "not the sum"),
         (_l_simple(feed="x0"), "clean x0"), (_l_simple(detach=True), "no gradient"),
         (_l_simple(backward=True), "called loss.backward()"), (_l_simple(shift=1), "got t +1"),
         (_l_simple(reduce="rmse"), "root")]),
    "check_ddpm_step": (
        [_ddpm(), _ddpm_posterior_form],
        [(_ddpm("noise_at_0"), "adds no noise"), (_ddpm("meanonly"), "mean only"),
         (_ddpm("swapvar"), "other variance"), (_ddpm("varnotstd"), "standard deviation"),
         (_ddpm("nosqrt"), "with the square root")]),
    "check_train_step": (
        [_train_step(), _train_step_with_mse],
        [(_train_step("noise_first"), "draw t"), (_train_step("no_zero_grad"), "zero_grad"),
         (_train_step("no_step"), "optimizer.step()"), (_train_step("tensor"), "Python float"),
         (_train_step("t_to_T"), "0..T-1")]),
    "check_ema_update": (
        [_ema(), _ema_lerp],
        [(_ema("swapped"), "swapped"), (_ema("rebind"), "in place"), (_ema("copy"), "ema_update is wrong"),
         (_ema("no_decay"), "ema_update is wrong")]),
    "check_cosine_betas": (
        [_cosine(), _cosine(dtype=torch.float32), _cosine_loop],
        [(_cosine("hardcoded_s"), "use the argument s"), (_cosine("hardcoded_cap"), "use the argument max_beta"),
         (_cosine("nocap"), "cap β at max_beta"), (_cosine("sin"), "sin²"), (_cosine("unsquared"), "squared"),
         (_cosine("no_pi"), "π/2"), (_cosine("late"), "one step late")]),
    "check_ddim_step": (
        [_ddim(), _ddim_f64],
        [(_ddim("no_sigma2"), "−σ²"), (_ddim("abar_t"), "ᾱ_prev (where you are going)"),
         (_ddim("sign"), "wrong way"), (_ddim("x0_scale"), "not sqrt(ᾱ_t)"), (_ddim("no_eta"), "ignores eta"),
         (_ddim("sigma2"), "not σ²")]),
    "check_ddim_sample": (
        [_ddim_sample(), _ddim_sample_while],
        [(_ddim_sample("half"), "differs"), (_ddim_sample("no_feedback"), "feed each output"),
         (lambda m, x, ab, ts: x, "differs"), (lambda m, x, ab, ts: x.numpy(), "torch.Tensor")]),
    "check_cfg": (
        [lambda c, u, w: u + w * (c - u), _cfg_lerp, _cfg_right_inplace],
        [(_cfg_swapped_inplace, "in place"), (lambda c, u, w: c + w * (u - c), "swapped"),
         (lambda c, u, w: c + w * (c - u), "(1 + w) ε_cond"), (lambda c, u, w: (1 + w) * c - w * u, "w − 1"),
         (lambda c, u, w: u - w * (c - u), "away from the class"), (lambda c, u, w: w * c, "combines both")]),
    "check_drop_condition": (
        [_drop(), _drop_loop, _drop("where")],
        [(_drop("inverted"), "1 − p"), (_drop("whole_classes"), "per digit"), (_drop("float"), "integers"),
         (_drop("wrong_null"), "not to the null class"), (_drop("shuffled_keep"), "kept must stay unchanged")]),
    "check_guided_sample": (
        [_guided(), _guided_via_cfg_combine],
        [(_guided("two_calls"), "twice per step"), (_guided("swapped"), "swapped"), (_guided("plain"), "differs"),
         (lambda m, x, y, w, ab, ts: x, "never called")]),
    "check_feature_stats": (
        [_stats(), _stats_numpy],
        [(_stats("axis1"), "average over the samples"), (_stats("rowvar"), "rowvar=False"),
         (_stats("biased"), "N − 1"), (_stats("uncentred"), "centre"), (_stats("diag"), "off-diagonal")]),
    "check_frechet_distance": (
        [_fd_right, _fd_float32],
        [(_fd_bad("mean_only"), "only have the mean term"), (_fd_bad("trace_only"), "only have the trace term"),
         (_fd_bad("no_sqrtm"), "left it out"), (_fd_bad("elementwise"), "element-wise"),
         (_fd_bad("no_factor2"), "factor 2"), (_fd_bad("sqrt_of_d2"), "squared distance")]),
    "check_find_elbow": (
        [_elbow(), _elbow_loop],
        [(_elbow("x_value"), "x value"), (_elbow("extreme"), "end of the curve"), (_elbow("positions"), "values"),
         (_elbow("signed"), "absolute distance"), (lambda x, y: 2.5, "index"),
         (lambda x, y: int(np.argmax(np.abs(np.diff(y, 2)))) + 3, "bend")]),
    "check_dpm_solver_step": (
        [_dpm(), _dpm_via_ddim_form],
        [(_dpm("first_order"), "previous estimate"), (_dpm("r_inverted"), "not its inverse"),
         (_dpm("log_snr"), "half"), (_dpm("plus"), "adds D"), (_dpm("no_final"), "return x0_hat")]),
    "check_precision_recall": (
        [_pr(), _pr_loop],
        [(_pr("swapped"), "swapped"), (_pr("self_neighbour"), "point itself"), (_pr("squared"), "same units"),
         (_pr("own_radii"), "radii measured inside the real set"), (lambda r, f, k: (1.0, 1.0), "expected")]),
    "check_flow_matching_loss": (
        [_fm_loss(), _fm_loss_loop],
        [(_fm_loss("swapped"), "swapped in the path"), (_fm_loss("sign"), "wrong sign"),
         (_fm_loss("unscaled"), "t × 1000"), (_fm_loss("reversed_t"), "wrong way"), (_fm_loss("per_image"), "scalar")]),
    "check_euler_sample": (
        [_euler(), _euler_while],
        [(_euler("forward"), "wrong way"), (_euler("sign"), "sign"), (_euler("grid"), "does not match the grid"),
         (_euler("unscaled"), "fed t in [0, 1]"), (lambda m, x, k: x, "unchanged")]),
    "check_to_latent": (
        [_to_latent(), _to_latent("detached"), _to_latent_detach],
        [(_to_latent("missing"), "not scaled"), (_to_latent("inverted"), "inverted"), (_to_latent("grad"), "gradients"),
         (lambda ae, x, s: s * x[:, :, ::4, ::4].repeat(1, 4, 1, 1), "expected scale")]),
    "check_from_latent": (
        [_from_latent(), _from_latent("clone")],
        [(_from_latent("missing"), "without dividing"), (_from_latent("inverted"), "inverted"),
         (_from_latent("after"), "decoded first"), (lambda ae, z, s: ae.decode(z / s) * 0.9, "expected")]),
    "check_latent_training_loss": (
        [_latent_loss(), _latent_loss_functional],
        [(_latent_loss("unscaled"), "unscaled codes"), (_latent_loss("inverted"), "inverted"),
         (_latent_loss("grad"), "into the encoder"), (_latent_loss("pixels"), "should see noised *codes*")]),
    "check_distillation_loss": (
        [_distill_loss(), _distill_loss("batched")],
        [(_distill_loss("student"), "computed with the student"), (_distill_loss("grad"), "into the teacher"),
         (_distill_loss("one_step"), "one step"), (_distill_loss("swapped"), "swapped")]),
    "check_timestep_sensitivity": (
        [_sens(), _sens_loop],
        [(_sens("uncentred"), "dead embedding must read"), (_sens("std"), "reference"),
         (_sens("no_normalise"), "reference"), (_sens("first_only"), "reference")]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_check_has_enough_cases(name):
    right, wrong = CASES[name]
    assert len(right) >= 2, "at least two differently written right answers"
    assert len(wrong) >= 4, "at least four plausible wrong answers"


@pytest.mark.parametrize("name,i", [(n, i) for n, (r, _) in sorted(CASES.items()) for i in range(len(r))])
def test_right_answers_are_accepted(name, i, capsys):
    getattr(checks, name)(CASES[name][0][i])
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize("name,i", [(n, i) for n, (_, w) in sorted(CASES.items()) for i in range(len(w))])
def test_wrong_answers_are_rejected_with_their_mistake(name, i):
    fn, words = CASES[name][1][i]
    _expect_fail(getattr(checks, name), fn, words)


def test_every_check_is_tested():
    assert {n for n in dir(checks) if n.startswith("check_")} == set(CASES)


def test_errors_come_back_as_check_messages_with_a_hint():
    def int_t(x0, t, noise, alpha_bars):
        return alpha_bars[int(t)].sqrt() * x0  # a Python int from a [B] tensor fails
    _expect_fail(checks.check_q_sample, int_t, "raised", "Hint")
