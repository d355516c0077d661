import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from academy_diffusion.device import precision
from academy_diffusion.samplers import (
    ScheduleMismatchError,
    cfg_combine,
    ddim_step,
    ddim_timesteps,
    ddpm_posterior,
    ddpm_step,
    dpm_solver_pp_update,
    dpm_timesteps,
    initial_noise,
    predict_noise,
    predict_x0,
    sample,
)
from academy_diffusion.schedules import make_schedule


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("t", [950, 500, 0])
def test_ddim_step_matches_diffusers(eta, t, clip):
    """Unclipped: diffusers' DDIMScheduler.step exactly. Clipped: we clamp x0_hat and recompute eps
    from it (as guided-diffusion's DDIM does; diffusers keeps the raw eps), which is diffusers'
    unclipped step fed with that recomputed eps."""
    ours = make_schedule("linear", 1000)
    theirs = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    theirs.set_timesteps(20)  # leading spacing: previous timestep is t - 50, or "clean" after 0
    x, eps, noise = torch.randn(4, 1, 28, 28) * 2, torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    fed = eps
    if clip:
        x0 = predict_x0(ours, x, t, eps, clip=True)
        fed = (x - ours.sqrt_alpha_bars[t] * x0) / ours.sqrt_one_minus_alpha_bars[t]
        assert not torch.allclose(fed, eps), "the test must exercise the clamp"
    expected = theirs.step(fed, t, x, eta=eta, variance_noise=noise).prev_sample
    t_prev = t - 50 if t >= 50 else -1
    got = ddim_step(ours, x, t, t_prev, eps, eta, noise, clip_x0=clip)
    tol = 1e-3 if clip else 1e-4  # at t = 0, recomputing eps divides float32 round-off by sqrt(1e-4)
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("variance, diffusers_variance", [("beta_tilde", "fixed_small"), ("beta", "fixed_large")])
@pytest.mark.parametrize("t", [999, 500, 10, 1])
def test_ddpm_posterior_matches_diffusers(variance, diffusers_variance, t, clip):
    ours = make_schedule("linear", 1000)
    theirs = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip, variance_type=diffusers_variance
    )
    theirs.set_timesteps(1000)
    x, eps = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    prev = theirs.step(eps, t, x, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))  # the noise diffusers drew
    mean, var = ddpm_posterior(ours, x, t, eps, variance, clip_x0=clip)
    # diffusers computes 1 - alpha_bar in float32 (we use float64): they differ by ~2e-4 relative at small t.
    torch.testing.assert_close(var, theirs._get_variance(t).float(), rtol=1e-3, atol=1e-10)
    torch.testing.assert_close(mean + var.sqrt() * noise, prev, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ddpm_step(ours, x, t, t - 1, eps, noise, variance, clip), prev, rtol=1e-4, atol=1e-4)


def test_ddpm_mean_is_the_page_formula_without_clipping():
    """(x_t - beta_t / sqrt(1 - abar_t) * eps) / sqrt(alpha_t), the course page's form."""
    s = make_schedule("cosine", 1000)
    x, eps = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    for t in (999, 400, 3):
        page = (x - s.betas[t] / s.sqrt_one_minus_alpha_bars[t] * eps) / s.alphas[t].sqrt()
        torch.testing.assert_close(ddpm_posterior(s, x, t, eps)[0], page, rtol=1e-4, atol=1e-4)


def test_predict_x0_inverts_q_sample():
    s = make_schedule("linear", 1000)
    x0, eps = torch.rand(3, 1, 28, 28) * 2 - 1, torch.randn(3, 1, 28, 28)
    for t in (0, 500, 999):
        xt = s.q_sample(x0, torch.full((3,), t), eps)
        torch.testing.assert_close(predict_x0(s, xt, t, eps), x0, rtol=1e-3, atol=2e-3)
        assert predict_x0(s, xt, t, eps * 1.5, clip=True).abs().max() <= 1.0


def test_ddpm_last_step_adds_no_noise():
    s = make_schedule("linear", 1000)
    x, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    mean, _ = ddpm_posterior(s, x, 0, eps)
    torch.testing.assert_close(ddpm_step(s, x, 0, -1, eps, torch.randn_like(x) * 100), mean)


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 20)[0] == 999 and ddim_timesteps(1000, 20)[-1] == 0
    assert len(ddim_timesteps(1000, 20)) == 20
    assert ddim_timesteps(1000, 1000) == list(range(999, -1, -1))
    steps = ddim_timesteps(1000, 37)
    assert all(a > b for a, b in zip(steps, steps[1:], strict=False)), "strictly decreasing"
    with pytest.raises(ValueError):
        ddim_timesteps(1000, 0)
    with pytest.raises(ValueError):
        ddim_timesteps(10, 11)


def test_cfg_endpoints(tiny_cond_model):
    """w = 1 is the conditional prediction, w = 0 the unconditional one."""
    x, t, y = torch.randn(6, 1, 28, 28), torch.randint(0, 1000, (6,)), torch.arange(6)
    with torch.no_grad():
        cond = tiny_cond_model(x, t, y)
        uncond = tiny_cond_model(x, t, torch.full_like(y, 10))
        torch.testing.assert_close(predict_noise(tiny_cond_model, x, t, y, w=1.0), cond, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(predict_noise(tiny_cond_model, x, t, y, w=0.0), uncond, rtol=1e-4, atol=1e-5)
        guided = predict_noise(tiny_cond_model, x, t, y, w=3.0)
        torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cfg_combine(torch.ones(2), torch.zeros(2), 5.0), torch.full((2,), 5.0))


def test_guidance_at_w_0_and_1_takes_one_pass(tiny_cond_model, linear_schedule):
    """At w = 1 (and 0) one of the two predictions has weight zero: a single pass of B images gives the
    same samples as the two-pass combination, and is what runs (a counting wrapper sees the batches)."""
    seen = []

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.num_classes, self.null_class = inner, inner.num_classes, inner.null_class
            self.in_channels, self.sample_shape = inner.in_channels, inner.sample_shape

        def forward(self, x, t, y=None):
            seen.append(len(x))
            return self.inner(x, t, y)

    counting, labels = Counting(tiny_cond_model), torch.arange(8) % 10
    x_T = initial_noise(8, seed=5)
    for w in (0.0, 1.0, 2.0):
        seen.clear()
        with precision("fp32"):  # the reference below runs in fp32
            got = sample(counting, linear_schedule, 8, sampler="ddim", steps=3, labels=labels, w=w, x_T=x_T,
                         progress=False, batch_size=8).images
        assert seen == [8 if w in (0, 1) else 16] * 3, (w, seen)
        x = x_T.clone()  # the two-pass reference, written out with cfg_combine
        steps = ddim_timesteps(1000, 3)
        with torch.no_grad():
            for i, t in enumerate(steps):
                tt = torch.full((8,), t)
                cond = tiny_cond_model(x, tt, labels)
                uncond = tiny_cond_model(x, tt, torch.full_like(labels, 10))
                x = ddim_step(linear_schedule, x, t, steps[i + 1] if i + 1 < len(steps) else -1,
                              cfg_combine(cond, uncond, w), 0.0, None, True)
        torch.testing.assert_close(got, x, rtol=1e-3, atol=1e-3)


def test_guidance_needs_conditional_model(tiny_model, linear_schedule):
    x, t = torch.randn(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="class-conditional"):
        predict_noise(tiny_model, x, t, torch.zeros(2, dtype=torch.long), w=3.0)
    with pytest.raises(ValueError, match="class-conditional"):
        sample(tiny_model, linear_schedule, 2, sampler="ddim", steps=2, labels=torch.zeros(2).long(), w=2.0,
               progress=False)


def test_sample_shapes_capture_and_determinism(tiny_model):
    s = make_schedule("linear", 50)
    a = sample(tiny_model, s, 5, sampler="ddim", steps=10, seed=3, capture=[50, 25, 0], progress=False)
    b = sample(tiny_model, s, 5, sampler="ddim", steps=10, seed=3, progress=False, batch_size=2)
    assert a.images.shape == (5, 1, 28, 28)
    torch.testing.assert_close(a.images, b.images, rtol=1e-5, atol=1e-5)  # chunking changes nothing
    assert sorted(a.trajectory) == [0, 25, 50]
    torch.testing.assert_close(a.trajectory[50], initial_noise(5, 3))
    assert sorted(a.predicted_x0) == [0, 25]
    torch.testing.assert_close(a.predicted_x0[0], a.images, rtol=1e-4, atol=1e-4)  # the last step lands on x̂0
    full = sample(tiny_model, s, 2, sampler="ddpm", seed=1, capture="all", progress=False)
    assert sorted(full.trajectory) == list(range(51))
    again = sample(tiny_model, s, 2, sampler="ddpm", seed=1, progress=False)
    torch.testing.assert_close(full.images, again.images)
    other = sample(tiny_model, s, 2, sampler="ddpm", seed=2, progress=False)
    assert not torch.allclose(full.images, other.images)


def test_ddim_with_all_steps_and_eta_one_is_ddpm_like(tiny_model):
    """DDIM over every timestep with eta = 1 has the beta-tilde variance: a DDPM sampler."""
    s = make_schedule("linear", 20)
    x, eps, noise = torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28)
    for t in (19, 5, 1):
        torch.testing.assert_close(
            ddim_step(s, x, t, t - 1, eps, eta=1.0, noise=noise),
            ddpm_step(s, x, t, t - 1, eps, noise, variance="beta_tilde"),
            rtol=1e-4,
            atol=1e-4,
        )


def test_schedule_mismatch_is_refused(tiny_model):
    tiny_model.schedule_config = {"name": "linear", "T": 1000}
    cosine = make_schedule("cosine", 1000)
    with pytest.raises(ScheduleMismatchError, match="mismatch"):
        sample(tiny_model, cosine, 2, sampler="ddim", steps=2, progress=False)
    out = sample(tiny_model, cosine, 2, sampler="ddim", steps=2, progress=False, allow_schedule_mismatch=True)
    assert out.images.shape == (2, 1, 28, 28)


def test_bad_sampler_inputs(tiny_model, tiny_cond_model, linear_schedule):
    with pytest.raises(ValueError, match="sampler"):
        sample(tiny_model, linear_schedule, 2, sampler="euler", progress=False)
    with pytest.raises(ValueError, match="labels"):
        sample(tiny_cond_model, linear_schedule, 3, sampler="ddim", steps=2, labels=torch.zeros(2).long(),
               progress=False)
    with pytest.raises(ValueError, match="starting images"):
        sample(tiny_model, linear_schedule, 3, sampler="ddim", steps=2, x_T=initial_noise(2, 0), progress=False)
    with pytest.raises(ValueError, match="variance"):
        ddpm_posterior(linear_schedule, torch.zeros(1, 1, 4, 4), 3, torch.zeros(1, 1, 4, 4), "large")


class _OracleModel(torch.nn.Module):
    """A stand-in noise predictor that depends on x and t (so that solver errors show)."""

    def __init__(self):
        super().__init__()
        self.in_channels, self.sample_shape = 1, (1, 28, 28)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None):
        return torch.tanh(x) * 0.7 + torch.sin(t.float() / 137.0).view(-1, 1, 1, 1) * 0.3


@pytest.mark.parametrize("schedule_name,diffusers_name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
@pytest.mark.parametrize("steps", [5, 10, 20])
def test_dpm_solver_pp_matches_diffusers(schedule_name, diffusers_name, steps):
    """diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2) as the oracle: the same model outputs
    give the same timesteps, the same steps and the same final image."""
    from diffusers import DPMSolverMultistepScheduler

    schedule = make_schedule(schedule_name, 1000)
    ref = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name,
                                      beta_start=1e-4, beta_end=0.02, algorithm_type="dpmsolver++",
                                      solver_order=2, prediction_type="epsilon", final_sigmas_type="zero")
    ref.set_timesteps(steps)
    assert ref.timesteps.tolist() == dpm_timesteps(1000, steps)
    model = _OracleModel()
    x = initial_noise(3, 0).double()
    with torch.no_grad():
        for t in ref.timesteps:
            eps = model(x.float(), torch.full((3,), int(t))).double()
            x = ref.step(eps, t, x).prev_sample
        ours = sample(model, schedule, 3, sampler="dpm++2m", steps=steps, seed=0, clip_x0=False, progress=False)
    torch.testing.assert_close(ours.images, x.float(), rtol=2e-4, atol=2e-4)


def test_dpm_solver_first_step_is_ddim_and_last_returns_x0():
    schedule = make_schedule("linear", 1000)
    x, x0 = torch.randn(2, 1, 28, 28), torch.randn(2, 1, 28, 28).clamp(-1, 1)
    eps = (x - schedule.sqrt_alpha_bars[900] * x0) / schedule.sqrt_one_minus_alpha_bars[900]
    torch.testing.assert_close(dpm_solver_pp_update(schedule, x, 900, 700, x0),
                               ddim_step(schedule, x, 900, 700, eps), rtol=1e-4, atol=1e-4)
    assert torch.equal(dpm_solver_pp_update(schedule, x, 50, -1, x0, previous=(x0 * 0, 100)), x0)
