import pytest
import torch

from academy_diffusion.models import TimestepEmbedding, UNet, build_model, count_parameters, sinusoidal_embedding


def test_output_shape_and_size():
    model = UNet()  # the full-profile size
    x = torch.randn(3, 1, 28, 28)
    assert model(x, torch.tensor([0, 500, 999])).shape == x.shape
    assert 300_000 <= count_parameters(model) <= 2_000_000


def test_sinusoidal_embedding():
    emb = sinusoidal_embedding(torch.tensor([0, 1, 500]), 32)
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb[0, :16], torch.zeros(16))  # sin(0)
    torch.testing.assert_close(emb[0, 16:], torch.ones(16))  # cos(0)
    assert (emb[1] - emb[2]).abs().sum() > 1.0, "different timesteps get different features"


def test_dead_embedding_is_zero_for_every_t():
    dead = TimestepEmbedding(16, 32, dead=True)
    out = dead(torch.arange(0, 1000, 100))
    assert out.shape == (10, 32) and torch.count_nonzero(out) == 0
    model = UNet(channels=(8, 16, 16), emb_dim=32, dead_time_embedding=True)
    x = torch.randn(1, 1, 28, 28).repeat(4, 1, 1, 1)
    with torch.no_grad():
        out = model(x, torch.tensor([0, 10, 500, 999]))
    torch.testing.assert_close(out[0].expand_as(out), out)  # the model cannot see t


def test_healthy_embedding_changes_output(tiny_model):
    x = torch.randn(1, 1, 28, 28).repeat(2, 1, 1, 1)
    with torch.no_grad():
        out = tiny_model(x, torch.tensor([0, 999]))
    assert (out[0] - out[1]).abs().mean() > 1e-4


def test_class_conditioning_and_null_class(tiny_cond_model):
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 5])
    assert tiny_cond_model.null_class == 10
    with torch.no_grad():
        a = tiny_cond_model(x, t, torch.tensor([3, 3]))
        b = tiny_cond_model(x, t, torch.tensor([7, 7]))
        null = tiny_cond_model(x, t, torch.tensor([10, 10]))
        default = tiny_cond_model(x, t)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(null, default)  # no labels = the null class


def test_bad_inputs(tiny_model):
    with pytest.raises(ValueError, match="shape"):
        tiny_model(torch.randn(2, 28, 28), torch.zeros(2).long())
    with pytest.raises(ValueError, match="shape"):
        tiny_model(torch.randn(2, 3, 28, 28), torch.zeros(2).long())
    with pytest.raises(ValueError, match="one timestep per image"):
        tiny_model(torch.randn(2, 1, 28, 28), torch.zeros(3).long())
    with pytest.raises(ValueError, match="unconditional"):
        tiny_model(torch.randn(2, 1, 28, 28), torch.zeros(2).long(), torch.zeros(2).long())
    with pytest.raises(ValueError, match="unconditional"):
        _ = tiny_model.null_class


def test_build_model_round_trip(tiny_cond_model):
    clone = build_model(tiny_cond_model.config)
    clone.load_state_dict(tiny_cond_model.state_dict())
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(clone(x, t, y), tiny_cond_model(x, t, y))
