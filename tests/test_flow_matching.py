"""Flow matching against closed forms, stand-in models and diffusers' FlowMatchEulerDiscreteScheduler."""

import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from academy_diffusion.checkpoints import load_checkpoint, save_checkpoint
from academy_diffusion.flow_matching import (
    TIME_SCALE,
    FlowPath,
    diffusion_to_flow,
    flow_matching_loss,
    flow_times,
    sample_flow,
    velocity_from_eps,
    x0_and_eps_from_velocity,
)
from academy_diffusion.samplers import initial_noise, sample
from academy_diffusion.schedules import ScheduleMismatchError, make_schedule
from academy_diffusion.training import train


class _Stand(torch.nn.Module):
    """A stand-in network: ``fn(x, t_input, y)`` with the attributes the samplers read."""

    def __init__(self, fn, num_classes=None):
        super().__init__()
        self.fn, self.in_channels, self.num_classes = fn, 1, num_classes
        self.sample_shape = (1, 28, 28)
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.schedule_config = FlowPath().config()

    @property
    def null_class(self):
        return self.num_classes

    def forward(self, x, t, y=None):
        return self.fn(x, t, y)


@pytest.mark.parametrize("steps", [1, 4, 10])
def test_euler_sampler_matches_diffusers(steps):
    """The same velocities give the same times (t * 1000 as the network's input) and the same images."""
    model = _Stand(lambda x, t, y: torch.tanh(x) * 0.7 + torch.sin(t / 137.0).view(-1, 1, 1, 1) * 0.3)
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    ref.set_timesteps(sigmas=flow_times(steps)[:-1])
    assert ref.sigmas.tolist() == pytest.approx(flow_times(steps))
    x = initial_noise(3, 0).double()
    with torch.no_grad():
        for t in ref.timesteps:
            x = ref.step(model(x.float(), torch.full((3,), float(t)), None).double(), t, x).prev_sample
    ours = sample_flow(model, 3, steps=steps, seed=0, progress=False)
    torch.testing.assert_close(ours.images, x.float(), rtol=1e-5, atol=1e-5)


def test_the_path_runs_from_data_at_t0_to_noise_at_t1_with_velocity_noise_minus_data():
    x0, noise = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    path = FlowPath()
    torch.testing.assert_close(path.interpolate(x0, torch.zeros(2), noise), x0)
    torch.testing.assert_close(path.interpolate(x0, torch.ones(2), noise), noise)
    t, h = torch.full((2,), 0.3), 1e-3
    slope = (path.interpolate(x0, t + h, noise) - path.interpolate(x0, t - h, noise)) / (2 * h)
    torch.testing.assert_close(slope, noise - x0, rtol=1e-3, atol=1e-3)


def test_the_loss_is_zero_for_the_true_velocity_and_sees_t_on_the_training_scale():
    x0, noise, t = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.rand(4)
    seen = []

    def oracle(x_t, t_in, y):
        seen.append(t_in)
        return noise - x0

    assert flow_matching_loss(_Stand(oracle), x0, t, noise).item() == 0
    torch.testing.assert_close(seen[0], t * TIME_SCALE)
    wrong_sign = flow_matching_loss(_Stand(lambda x_t, t_in, y: x0 - noise), x0, t, noise)
    torch.testing.assert_close(wrong_sign, 4 * (noise - x0).pow(2).mean())


def test_conversions_invert_the_path_and_map_diffusion_onto_it():
    x0, eps, t = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.tensor([0.1, 0.5, 0.9])
    x_t = FlowPath().interpolate(x0, t, eps)
    got_x0, got_eps = x0_and_eps_from_velocity(x_t, t, eps - x0)
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, eps)
    torch.testing.assert_close(velocity_from_eps(x_t, t, eps), eps - x0, rtol=1e-4, atol=1e-4)
    abar = make_schedule("linear", 1000).alpha_bars_host[400]
    alpha, sigma = math.sqrt(abar), math.sqrt(1 - abar)
    scale, t_flow = diffusion_to_flow(alpha, sigma)
    torch.testing.assert_close(scale * (alpha * x0 + sigma * eps),
                               FlowPath().interpolate(x0, torch.full((3,), t_flow), eps))


def test_heun_is_exact_where_euler_is_not():
    """dx/dt = c t: the trapezoid rule integrates it exactly, x(0) = x(1) - c/2; Euler from t = 1 does not."""
    c = 2.0
    model = _Stand(lambda x, t, y: (c * t / TIME_SCALE).view(-1, 1, 1, 1) * torch.ones_like(x))
    x_T = initial_noise(2, 0)
    heun = sample_flow(model, 2, sampler="heun", steps=3, x_T=x_T, progress=False).images
    euler = sample_flow(model, 2, sampler="euler", steps=3, x_T=x_T, progress=False).images
    torch.testing.assert_close(heun, x_T - c / 2)
    assert (euler - (x_T - c / 2)).abs().min() > 0.1


def test_guidance_combines_velocities_with_the_course_convention():
    """Constant conditional and unconditional velocities: one Euler step from t = 1 lands on x_T - v̂."""
    v_cond, v_uncond, w = 0.5, -0.25, 3.0
    model = _Stand(lambda x, t, y: torch.where((y == 10).view(-1, 1, 1, 1), v_uncond, v_cond) * torch.ones_like(x),
                   num_classes=10)
    x_T = initial_noise(4, 1)
    out = sample_flow(model, 4, steps=1, x_T=x_T, labels=torch.arange(4), w=w, progress=False).images
    torch.testing.assert_close(out, x_T - (v_uncond + w * (v_cond - v_uncond)))


def test_capture_keeps_every_time_and_the_x0_estimates():
    model = _Stand(lambda x, t, y: torch.zeros_like(x) + 1.0)
    out = sample_flow(model, 2, steps=4, capture=True, progress=False)
    assert sorted(out.trajectory) == [0.0, 0.25, 0.5, 0.75, 1.0]
    torch.testing.assert_close(out.trajectory[0.0], out.images)
    torch.testing.assert_close(out.predicted_x0[0.75], out.trajectory[1.0] - 1.0)  # x - t v at t = 1


def test_a_flow_model_trains_round_trips_and_refuses_the_diffusion_samplers(tmp_path, tiny_cond_model):
    images, labels = torch.rand(64, 1, 28, 28) * 2 - 1, torch.arange(64) % 10
    result = train(tiny_cond_model, images, FlowPath(), labels, steps=20, batch_size=16, progress=False)
    assert result.ema.schedule_config == FlowPath().config()
    assert result.losses[-5:].mean() < result.losses[:5].mean()
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "f.pt", tiny_cond_model, result.ema, FlowPath()))
    assert isinstance(ckpt.schedule, FlowPath)
    with pytest.raises(ScheduleMismatchError):
        sample(ckpt.model, make_schedule("linear", 1000), 2, sampler="ddim", steps=2, progress=False)
    diffusion = train(tiny_cond_model, images, make_schedule("linear", 1000), labels, steps=2, batch_size=16,
                      progress=False).ema
    with pytest.raises(ScheduleMismatchError):
        sample_flow(diffusion, 2, steps=2, progress=False)
    with pytest.raises(ValueError, match="sampler"):
        sample_flow(ckpt.model, 2, sampler="rk4", progress=False)


def test_path_deviation_is_zero_for_any_straight_path_and_a_quarter_for_a_parabola():
    from academy_diffusion.flow_matching import path_deviation

    a, b = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    s = torch.linspace(0, 1, 21)
    uneven = [a + (b - a) * float(u) ** 3 for u in s]  # straight, but not at constant speed
    assert path_deviation(uneven).abs().max() < 1e-6
    bulge = torch.randn(3, 1, 4, 4)
    bulge = bulge - ((bulge * (b - a)).sum((1, 2, 3), keepdim=True) / (b - a).pow(2).sum((1, 2, 3), keepdim=True)) * (
        b - a)  # at right angles to the chord
    bulge = bulge / bulge.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * (b - a).flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    parabola = [a + (b - a) * float(u) + 4 * float(u * (1 - u)) * 0.25 * bulge for u in s]
    torch.testing.assert_close(path_deviation(parabola), torch.full((3,), 0.25), rtol=1e-4, atol=1e-4)


def test_diffusion_states_land_on_the_straight_path():
    from academy_diffusion.flow_matching import to_flow_coordinates

    s = make_schedule("cosine", 1000)
    x0, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    trajectory = {k: s.sqrt_alpha_bars[k - 1] * x0 + s.sqrt_one_minus_alpha_bars[k - 1] * eps for k in (1, 300, 1000)}
    trajectory[0] = x0
    for t, x in to_flow_coordinates(trajectory, s).items():
        torch.testing.assert_close(x, FlowPath().interpolate(x0, torch.full((2,), t), eps), rtol=1e-4, atol=1e-4)
