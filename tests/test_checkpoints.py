import pytest
import torch

from academy_diffusion.checkpoints import load_checkpoint, save_checkpoint
from academy_diffusion.samplers import ScheduleMismatchError, sample
from academy_diffusion.schedules import make_schedule
from academy_diffusion.training import train


def _trained(model, schedule):
    x = torch.randn(32, 1, 28, 28).clamp(-1, 1)
    labels = torch.randint(0, 10, (32,)) if model.num_classes else None
    return train(model, x, schedule, labels, steps=3, batch_size=16, progress=False)


def test_round_trip(tmp_path, tiny_cond_model):
    schedule = make_schedule("cosine", 200)
    result = _trained(tiny_cond_model, schedule)
    path = save_checkpoint(tmp_path / "m.pt", tiny_cond_model, result.ema, schedule, {"epochs": 1})
    ckpt = load_checkpoint(path)
    assert ckpt.schedule.config() == {"name": "cosine", "T": 200}
    assert ckpt.meta == {"epochs": 1}
    assert ckpt.model.config == tiny_cond_model.config
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([3, 4]), torch.tensor([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x, t, y), result.ema(x, t, y))
        raw = load_checkpoint(path, weights="raw").model
        torch.testing.assert_close(raw(x, t, y), tiny_cond_model(x, t, y))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"], "no temporary files left behind"


def test_mismatched_schedule_is_refused(tmp_path, tiny_model):
    linear = make_schedule("linear", 100)
    result = _trained(tiny_model, linear)
    path = save_checkpoint(tmp_path / "m.pt", tiny_model, result.ema, linear)
    with pytest.raises(ScheduleMismatchError, match="mismatch"):
        load_checkpoint(path, schedule=make_schedule("cosine", 100))
    with pytest.raises(ScheduleMismatchError):
        load_checkpoint(path, schedule=make_schedule("linear", 1000))
    ckpt = load_checkpoint(path)
    with pytest.raises(ScheduleMismatchError):
        sample(ckpt.model, make_schedule("sigmoid", 100), 2, sampler="ddim", steps=2, progress=False)
    ckpt = load_checkpoint(path, schedule=make_schedule("cosine", 100), allow_schedule_mismatch=True)
    assert ckpt.schedule.name == "cosine"


def test_every_mutant_of_the_mutation_tool_still_applies():
    """`make mutants` plants each bug by exact text: a refactor must keep its list current."""
    import mutation

    for file, original, mutated, what in mutation.MUTANTS:
        text = (mutation.ROOT / "academy_diffusion" / file).read_text()
        assert text.count(original) == 1 and original != mutated, f"{file}: {what}"
