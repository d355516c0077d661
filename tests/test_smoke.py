"""Every lesson on the full profile's code path, small: ACADEMY_PROFILE=smoke trains each lesson's models
from scratch (nothing shipped is loaded) at tiny sizes, so a lesson that breaks only when it trains its
own models fails here. Its claims are reported, not enforced (tiny models cannot bear them out)."""

import json

import pytest
from conftest import machine_load

from academy_diffusion.course import COURSE_MODELS, runner
from academy_diffusion.course.lessons import AUTOENCODER, DISTILLED, STUDENT_STEPS

pytestmark = pytest.mark.slow


def _outputs(path):
    text = []
    for cell in json.loads(path.read_text())["cells"]:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") if isinstance(out.get("text", ""), str) else "".join(out["text"]))
    return "".join(text)


def test_every_lesson_runs_on_the_full_code_path(tmp_path, monkeypatch, needs_mnist, capsys):
    monkeypatch.setenv("ACADEMY_PROFILE", "smoke")
    monkeypatch.setenv("ACADEMY_CACHE_DIR", str(tmp_path / "cache"))  # nothing trained before: train it all
    rc = runner.main(["--build", str(tmp_path / "build")])
    printed = capsys.readouterr().out
    assert rc == 0, f"{printed[-3000:]}\n{machine_load()}"
    executed = sorted((tmp_path / "build" / "notebooks").glob("*.ipynb"))
    assert [p.name for p in executed] == [p.name for p in runner.lessons()]
    trained = set()
    for path in executed:
        text = _outputs(path)
        assert "profile: smoke" in text and "loaded the shipped" not in text, path.name
        trained |= {kind for kind in COURSE_MODELS if f"training model '{kind}'" in text}
    assert trained == set(COURSE_MODELS), f"every course model is trained from scratch: {trained}"
    assert sorted(p.name for p in (tmp_path / "cache" / "checkpoints").glob("*.pt")) == sorted(
        [f"{kind}-smoke-seed0.pt" for kind in COURSE_MODELS] + [f"{AUTOENCODER}-smoke-seed0.pt"]
        + [f"{DISTILLED}-{k}-smoke-seed0.pt" for k in STUDENT_STEPS])
