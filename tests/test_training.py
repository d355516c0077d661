import pytest
import torch

from academy_diffusion.data import load_mnist
from academy_diffusion.models import UNet
from academy_diffusion.plotting import smooth
from academy_diffusion.schedules import make_schedule
from academy_diffusion.training import drop_labels, ema_update, make_ema, train


def test_drop_labels_rate():
    labels = torch.zeros(100_000, dtype=torch.long)
    dropped = drop_labels(labels, 10, 0.1, torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, 10}
    assert (dropped == 10).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert torch.equal(drop_labels(labels, 10, 0.0), labels)


def test_ema_update():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    ema = make_ema(a)
    expected = 0.9 * a.weight.detach() + 0.1 * b.weight.detach()
    ema_update(ema, b, decay=0.9)
    torch.testing.assert_close(ema.weight, expected)
    assert not ema.weight.requires_grad


def test_training_is_deterministic_given_a_seed(linear_schedule):
    x = torch.randn(64, 1, 28, 28).clamp(-1, 1)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = UNet(channels=(8, 16, 16), emb_dim=32)
        runs.append(train(model, x, linear_schedule, steps=4, batch_size=16, seed=5, progress=False))
    torch.testing.assert_close(runs[0].losses, runs[1].losses)
    for p, q in zip(runs[0].ema.parameters(), runs[1].ema.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert runs[0].ema.schedule_config == {"name": "linear", "T": 1000}


def test_bad_training_inputs(linear_schedule):
    x = torch.randn(32, 1, 28, 28)
    model = UNet(channels=(8, 16, 16), emb_dim=32)
    with pytest.raises(ValueError, match="exactly one"):
        train(model, x, linear_schedule, progress=False)
    with pytest.raises(ValueError, match="unconditional"):
        train(model, x, linear_schedule, torch.zeros(32).long(), steps=1, batch_size=8, progress=False)
    cond = UNet(channels=(8, 16, 16), emb_dim=32, num_classes=10)
    with pytest.raises(ValueError, match="needs labels"):
        train(cond, x, linear_schedule, steps=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="larger than"):
        train(model, x, linear_schedule, steps=1, batch_size=64, progress=False)


def test_smooth():
    assert smooth(torch.arange(10.0), 5).tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


@pytest.mark.slow
def test_short_real_training_lowers_the_loss(needs_mnist):
    """A real run on 2,000 MNIST digits on the CPU: the loss must fall well below its start.

    At initialisation the predicted noise is near zero, so the loss starts near E[eps^2] = 1;
    a network that has learned anything about the noise gets well under half of that.
    """
    images, labels = load_mnist("train", subset=2000)
    torch.manual_seed(0)
    model = UNet(channels=(8, 16, 32), emb_dim=32, num_classes=10)
    result = train(model, images, make_schedule("linear"), labels, steps=150, batch_size=32, progress=False)
    first, last = result.losses[:10].mean().item(), result.losses[-30:].mean().item()
    assert torch.isfinite(result.losses).all()
    assert first > 0.6, f"initial loss {first:.3f} should be near 1"
    assert last < 0.5 * first, f"loss went from {first:.3f} to {last:.3f}: it did not fall enough"
    assert result.images_per_second > 0


def test_x0_error_is_the_noise_error_amplified(linear_schedule):
    """A stand-in network that always predicts ε̂ = 0: then x̂0 = x_t / √ᾱ and its error is
    √((1−ᾱ)/ᾱ) · ε exactly, so x0_error_by_timestep must equal √(loss · (1−ᾱ)/ᾱ), with the loss
    (mean ε²) from loss_by_timestep on the same images and noise."""
    from academy_diffusion.training import loss_by_timestep, x0_error_by_timestep

    class Zero(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, y=None):
            return x * self.w

    x0 = torch.rand(16, 1, 28, 28) * 2 - 1
    levels = [0, 250, 500, 999]
    loss = loss_by_timestep(Zero(), linear_schedule, x0, levels)
    err = x0_error_by_timestep(Zero(), linear_schedule, x0, levels)
    abar = linear_schedule.alpha_bars[levels]
    assert torch.allclose(err, (loss * (1 - abar) / abar).sqrt(), rtol=1e-4)
    assert err[-1] > 100 * err[1] > 0  # the amplification at the noisy end


def test_plain_log_axis_labels_plain_numbers():
    """A short log axis gets plain tick labels (5, 10, 20 ... not 2×10¹) and no minor ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from academy_diffusion.plotting import plain_log_axis

    fig, ax = plt.subplots()
    ax.plot([5, 50], [19, 150])
    plain_log_axis(ax, "x", (5, 10, 20, 50))
    plain_log_axis(ax, "y")
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "10", "20", "50"]
    shown = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert shown and all(label.replace(".", "").isdigit() for label in shown), shown
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert isinstance(ax.yaxis.get_minor_locator(), matplotlib.ticker.NullLocator)
    plt.close(fig)
