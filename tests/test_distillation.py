"""Progressive distillation (academy_diffusion/distillation.py) against the samplers' own steps and closed forms."""

import copy

import pytest
import torch

from academy_diffusion.device import precision
from academy_diffusion.distillation import (
    VPrediction,
    alpha_sigma,
    ddim_jump,
    distill,
    guided_target,
    student_timesteps,
    two_step_target,
    v_loss,
)
from academy_diffusion.models import UNet
from academy_diffusion.samplers import cfg_combine, ddim_step, predict_x0, sample
from academy_diffusion.schedules import make_schedule

S = make_schedule("linear", 1000)


class _Eps(torch.nn.Module):
    """A stand-in class-conditional noise predictor (null class 10)."""

    num_classes, null_class, in_channels, sample_shape = 10, 10, 1, (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.tensor(0.6))

    def forward(self, x, t, y=None):
        y = torch.full((len(x),), 10) if y is None else y
        return self.p * torch.tanh(x) + 0.02 * (y.float() - 5).view(-1, 1, 1, 1) * torch.cos(t.float() / 200).view(
            -1, 1, 1, 1)


def test_v_prediction_returns_the_true_noise():
    """A network that outputs the true v = α ε − σ x0 is, through the wrapper, a perfect noise predictor."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    a = S.sqrt_alpha_bars[t].view(-1, 1, 1, 1)
    s = S.sqrt_one_minus_alpha_bars[t].view(-1, 1, 1, 1)
    z = a * x0 + s * eps
    net = UNet(channels=(8, 8, 8), emb_dim=16)
    net.forward = lambda z_, t_, y=None: a * eps - s * x0
    wrapped = VPrediction(net, S)
    torch.testing.assert_close(wrapped(z, t), eps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(predict_x0(S, z[3:], 999, wrapped(z, t)[3:]), x0[3:], atol=2e-3, rtol=0)


def test_alpha_sigma_and_the_clean_end():
    a, s = alpha_sigma(S, torch.tensor([999, -1]))
    assert a[1].item() == 1.0 and s[1].item() == 0.0
    assert a[0].item() == pytest.approx(S.alpha_bars[999].sqrt().item()) and a[0] ** 2 + s[0] ** 2 == pytest.approx(1)


def test_ddim_jump_is_the_samplers_ddim_step():
    g = torch.Generator().manual_seed(1)
    z, eps = torch.randn(3, 1, 8, 8, generator=g) * 1.5, torch.randn(3, 1, 8, 8, generator=g)
    for t, t_next in ((999, 874), (250, 0), (62, -1)):
        jump = ddim_jump(S, z, torch.full((3,), t), torch.full((3,), t_next), eps)
        torch.testing.assert_close(jump, ddim_step(S, z, t, t_next, eps, clip_x0=True), atol=1e-5, rtol=1e-5)


def test_student_grids_nest():
    for n in (1, 2, 4, 8):
        fine, coarse = student_timesteps(1000, 2 * n), student_timesteps(1000, n)
        assert fine[::2] == coarse and fine[0] == 999


@pytest.mark.parametrize("t,t_mid,t_next", [(999, 937, 874), (125, 62, -1)])
def test_one_student_step_with_the_target_lands_where_two_teacher_steps_do(t, t_mid, t_next):
    """The defining property, checked with the samplers' own DDIM step and guidance."""
    teacher, g = _Eps(), torch.Generator().manual_seed(2)
    z, y = torch.randn(4, 1, 8, 8, generator=g), torch.tensor([1, 4, 7, 9])
    full = lambda v: torch.full((4,), v)  # noqa: E731
    with torch.no_grad():
        target = two_step_target(teacher, S, z, full(t), full(t_mid), full(t_next), y, 3.0)
        guided = lambda x, s: cfg_combine(teacher(x, full(s), y), teacher(x, full(s), full(10)), 3.0)  # noqa: E731
        z_mid = ddim_step(S, z, t, t_mid, guided(z, t), clip_x0=True)
        z_next = ddim_step(S, z_mid, t_mid, t_next, guided(z_mid, t_mid), clip_x0=True)
    eps_student = (z - S.sqrt_alpha_bars[t] * target) / S.sqrt_one_minus_alpha_bars[t]
    landed = ddim_step(S, z, t, t_next, eps_student)
    torch.testing.assert_close(landed, z_next, atol=1e-4, rtol=1e-4)


def test_guided_target_is_the_guided_x0_estimate():
    teacher, z, y = _Eps(), torch.randn(2, 1, 8, 8), torch.tensor([3, 8])
    with torch.no_grad():
        got = guided_target(teacher, S, z, torch.full((2,), 400), y, 2.0)
        eps = cfg_combine(teacher(z, torch.full((2,), 400), y), teacher(z, torch.full((2,), 400), None), 2.0)
    torch.testing.assert_close(got, predict_x0(S, z, 400, eps))


def test_v_loss_is_zero_for_the_exact_v_and_grows_away_from_it():
    g = torch.Generator().manual_seed(3)
    z, x = torch.randn(3, 1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    t = torch.tensor([5, 300, 999])
    a, s = alpha_sigma(S, t)
    v = a * (z - a * x) / s - s * x  # α ε − σ x with ε = (z − α x) / σ
    net = UNet(channels=(8, 8, 8), emb_dim=16)
    net.forward = lambda z_, t_, y=None: v
    assert v_loss(VPrediction(net, S), S, z, t, x).item() < 1e-8
    net.forward = lambda z_, t_, y=None: v + 0.1
    assert v_loss(VPrediction(net, S), S, z, t, x).item() == pytest.approx(0.01, rel=1e-3)


def test_a_round_of_distillation_lowers_its_loss_and_leaves_the_teacher_alone():
    torch.manual_seed(0)
    teacher = UNet(channels=(8, 8, 8), emb_dim=16, num_classes=10).eval().requires_grad_(False)
    before = copy.deepcopy(teacher.state_dict())
    images = (torch.rand(64, 1, 28, 28) > 0.8).float() * 2 - 1
    labels = torch.arange(64) % 10
    student = VPrediction(copy.deepcopy(teacher).requires_grad_(True), S)
    guided = distill(student, teacher, S, images, labels, student_steps=None, w=2.0, train_steps=3, batch_size=16,
                     progress=False)
    assert guided.steps == 3 and torch.isfinite(guided.losses).all()
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    # a progressive round (targets bounded by the teacher's clamped DDIM steps): the loss falls
    progressive = VPrediction(copy.deepcopy(teacher).requires_grad_(True), S)
    out = distill(progressive, VPrediction(teacher, S), S, images, labels, student_steps=2, train_steps=60,
                  batch_size=16, lr=3e-3, warmup_steps=5, progress=False)
    assert out.losses[-10:].mean() < 0.7 * out.losses[:5].mean(), out.losses
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())


def test_sampling_on_an_explicit_grid():
    torch.manual_seed(0)
    model = UNet(channels=(8, 8, 8), emb_dim=16).eval()
    model.schedule_config = S.config()
    ts = student_timesteps(1000, 2)
    with precision("fp32"):
        got = sample(model, S, 2, sampler="ddim", timesteps=ts, seed=1, progress=False).images
    x = sample(model, S, 2, sampler="ddim", steps=1, seed=1, progress=False, capture=[1000]).trajectory[1000]
    with torch.no_grad():
        for t, t_next in ((ts[0], ts[1]), (ts[1], -1)):
            x = ddim_step(S, x, t, t_next, model(x, torch.full((2,), t)), clip_x0=True)
    torch.testing.assert_close(got, x, atol=1e-4, rtol=1e-4)
    for bad in ([500, 999], [999, 999], [1000], []):
        with pytest.raises(ValueError, match="timesteps"):
            sample(model, S, 2, sampler="ddim", timesteps=bad, progress=False)
    with pytest.raises(ValueError, match="timesteps"):
        sample(model, S, 2, sampler="ddpm", timesteps=ts, progress=False)
