import math

import pytest
import torch
from diffusers import DDPMScheduler

from academy_diffusion.schedules import SCHEDULES, cosine_betas, make_schedule, q_sample


@pytest.mark.parametrize("name", SCHEDULES)
def test_shapes_and_monotone_alpha_bar(name):
    s = make_schedule(name, 1000)
    for tensor in (s.betas, s.alphas, s.alpha_bars, s.alpha_bars_prev, s.posterior_variance, s.log_snr):
        assert tensor.shape == (1000,)
    assert torch.all(s.alpha_bars[1:] < s.alpha_bars[:-1]), "alpha_bar must strictly decrease"
    assert torch.all((s.betas > 0) & (s.betas < 1))
    assert s.alpha_bars_prev[0] == 1.0 and torch.allclose(s.alpha_bars_prev[1:], s.alpha_bars[:-1])


@pytest.mark.parametrize(
    "name, diffusers_name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2"), ("sigmoid", "sigmoid")]
)
@pytest.mark.parametrize("T", [1000, 50])
def test_betas_match_diffusers(name, diffusers_name, T):
    ours = make_schedule(name, T).betas
    theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule=diffusers_name).betas
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=1e-7)


def test_cosine_endpoints():
    s = make_schedule("cosine", 1000)
    s_off = 0.008
    f = lambda u: math.cos((u + s_off) / (1 + s_off) * math.pi / 2) ** 2
    assert s.alpha_bars[0].item() == pytest.approx(f(1 / 1000) / f(0), rel=1e-5)
    assert s.alpha_bars[0] > 0.9999 - 1e-4
    assert s.alpha_bars[-1] < 1e-6, "the cosine schedule ends in (almost) pure noise"
    assert cosine_betas(1000).max() == pytest.approx(0.999), "betas are capped at 0.999"


def test_linear_endpoints():
    s = make_schedule("linear", 1000)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert s.alpha_bars[0].item() == pytest.approx(1 - 1e-4)


def test_q_sample_statistics():
    """x_t given x0 has mean sqrt(abar_t) x0 and variance 1 - abar_t, for each t."""
    s = make_schedule("linear", 1000)
    n = 20_000
    x0 = torch.full((n, 1, 2, 2), 0.7)
    for t in (0, 250, 999):
        xt = q_sample(s, x0, torch.full((n,), t), torch.randn_like(x0))
        abar = s.alpha_bars[t].item()
        assert xt.mean().item() == pytest.approx(math.sqrt(abar) * 0.7, abs=0.01)
        assert xt.var().item() == pytest.approx(1 - abar, abs=0.01 + 0.02 * (1 - abar))


def test_q_sample_per_sample_timesteps():
    s = make_schedule("cosine", 100)
    x0, noise = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([0, 50, 99])
    xt = s.q_sample(x0, t, noise)
    for i in range(3):
        expected = s.sqrt_alpha_bars[t[i]] * x0[i] + s.sqrt_one_minus_alpha_bars[t[i]] * noise[i]
        torch.testing.assert_close(xt[i], expected)


def test_bad_schedule_inputs():
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("cosinus")
    for bad in (0, -5):
        with pytest.raises(ValueError, match="positive integer"):
            make_schedule("linear", bad)


def test_schedule_to_device_and_matches():
    a, b = make_schedule("linear", 100), make_schedule("cosine", 100)
    assert a.matches(make_schedule("linear", 100)) and not a.matches(b)
    assert a.config() == {"name": "linear", "T": 100}
    moved = a.to("meta")  # a device other than the CPU, available on every machine
    assert moved.device.type == "meta" and moved.alpha_bars.device.type == "meta"
    assert moved.posterior_variance.device.type == "meta" and a.betas.device.type == "cpu", "a copy, not in place"
