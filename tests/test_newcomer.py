"""A newcomer's path: lessons open as working copies, conda environments are used as they are, one
lesson can run alone, and CI never skips a test silently."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from academy_diffusion import course, lab

ROOT = Path(__file__).resolve().parents[1]


def _make_n(*args, **env):
    """What `make -n ARGS` would run, as if typed in a fresh shell (no conda, no outer make)."""
    outer = ("CONDA", "MAKE", "MFLAGS")  # under `make test`, MAKELEVEL makes make print "Entering directory"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(outer)}
    out = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, capture_output=True,
                         text=True, env={**clean, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_working_copy_is_made_once_and_never_overwritten(tmp_path):
    work = tmp_path / "my-lessons"
    copied = lab.prepare_working_copy(work)
    names = sorted(p.relative_to(work).as_posix() for p in copied)
    assert "notebooks/01_tiny_ddpm.ipynb" in names and "exercises/01_q_sample_and_loss.ipynb" in names
    assert len(names) == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))) + \
        len(list((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")))
    mine = work / "notebooks" / "01_tiny_ddpm.ipynb"
    meta = json.loads(mine.read_text())["metadata"]
    assert "jupytext" not in meta and meta["kernelspec"]["name"] == lab.KERNEL_NAME, "opens on the course kernel"
    mine.write_text('{"my": "work"}')
    (work / "notebooks" / "02_cosine_schedule.ipynb").unlink()  # as if lesson 2 were new in the course
    assert [p.name for p in lab.prepare_working_copy(work)] == ["02_cosine_schedule.ipynb"]
    assert json.loads(mine.read_text()) == {"my": "work"}, "a student's copy is never overwritten"
    assert lab.WORKING_COPY.name == "my-lessons"
    ignored = subprocess.run(["git", "check-ignore", "-q", "my-lessons/notebooks/01_tiny_ddpm.ipynb"], cwd=ROOT)
    assert ignored.returncode == 0, "the working copy must be git-ignored"


def test_reset_asks_and_keeps_a_backup(tmp_path):
    work = tmp_path / "my-lessons"
    lab.prepare_working_copy(work)
    mine = work / "notebooks" / "01_tiny_ddpm.ipynb"
    mine.write_text("edited")
    assert lab.reset_working_copy(work, confirm=lambda q: "n") is None and mine.read_text() == "edited"
    backup = lab.reset_working_copy(work, confirm=lambda q: "y")
    assert (backup / "notebooks" / "01_tiny_ddpm.ipynb").read_text() == "edited", "nothing is lost"
    fresh, original = (json.loads(p.read_text()) for p in (mine, ROOT / "notebooks" / "01_tiny_ddpm.ipynb"))
    assert fresh["cells"] == original["cells"], "fresh from the original"
    assert "jupytext" in original["metadata"] and "jupytext" not in fresh["metadata"], "the copy is unpaired"


def test_make_uses_the_active_conda_environment():
    conda = _make_n("-B", "setup", CONDA_PREFIX="/opt/conda/envs/ad", CONDA_DEFAULT_ENV="academy-diffusion")
    assert "/opt/conda/envs/ad/bin/python -m pip install" in conda and ".venv" not in conda
    base = _make_n("-B", "setup", CONDA_PREFIX="/opt/conda", CONDA_DEFAULT_ENV="base")
    assert ".venv/bin/python -m pip install" in base, "conda's base environment is not taken over"
    plain = _make_n("-B", "setup")
    assert "-m venv .venv" in plain


def test_one_lesson_at_a_time():
    assert _make_n("course", "LESSON=03").strip().endswith("-m academy_diffusion.course --only 03")
    assert _make_n("course").strip().endswith("-m academy_diffusion.course")
    assert _make_n("test", "TESTS=tests/test_device.py").strip().endswith("-m pytest tests/test_device.py")
    whole = _make_n("test").strip().splitlines()[-1]  # two one-thread workers, never two claiming both cores
    assert whole.startswith("OMP_NUM_THREADS=1 ") and whole.endswith("-m pytest -n 2 --dist loadfile"), whole
    assert [p.name[:2] for p in course.lessons(only=["3", "01"])] == ["01", "03"]
    with pytest.raises(ValueError, match="no lesson 42"):
        course.lessons(only=["42"])


def test_ci_fails_on_any_skip(tmp_path):
    (tmp_path / "test_skip.py").write_text("import pytest\n\ndef test_a():\n    pytest.skip('no data')\n")
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    run = lambda **env: subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                        "-p", "no:nbval", str(tmp_path)], cwd=tmp_path, capture_output=True,
                                       text=True, env={**os.environ, **env})
    assert run(ACADEMY_NO_SKIPS="0").returncode == 0
    strict = run(ACADEMY_NO_SKIPS="1")
    assert strict.returncode == 1 and "1 tests were skipped" in strict.stdout and "no data" in strict.stdout
    assert "export ACADEMY_NO_SKIPS=1" in (ROOT / ".ci" / "run").read_text()
