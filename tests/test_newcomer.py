"""A newcomer's path: lessons open as working copies, conda environments are used as they are, one
lesson can run alone, and CI never skips a test silently."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from academy_diffusion.course import lab
from academy_diffusion.course import runner as course

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
    for name in ("conftest.py", "lesson_plugin.py"):
        (tmp_path / name).write_text((ROOT / "tests" / name).read_text())
    run = lambda **env: subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                        "-p", "no:nbval", str(tmp_path)], cwd=tmp_path, capture_output=True,
                                       text=True, env={**os.environ, **env})
    assert run(ACADEMY_NO_SKIPS="0").returncode == 0
    strict = run(ACADEMY_NO_SKIPS="1")
    assert strict.returncode == 1 and "1 tests were skipped" in strict.stdout and "no data" in strict.stdout
    assert "export ACADEMY_NO_SKIPS=1" in (ROOT / ".ci" / "run").read_text()


def _fresh_checkout(tmp_path: Path) -> Path:
    """The Makefile and pyproject.toml alone in a folder: a checkout with no environment yet."""
    for name in ("Makefile", "pyproject.toml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    return tmp_path


def _clean_env() -> dict:
    outer = ("CONDA", "MAKE", "MFLAGS")
    return {k: v for k, v in os.environ.items() if not k.startswith(outer)}


def test_cpu_torch_is_installed_before_the_course_on_a_fresh_machine(tmp_path):
    """`make setup TORCH=cpu` (dry run): create the environment, PyTorch's CPU build, then the course."""
    out = subprocess.run(["make", "--no-print-directory", "-n", "setup", "TORCH=cpu"], cwd=_fresh_checkout(tmp_path),
                         capture_output=True, text=True, env=_clean_env(), check=True).stdout
    venv = out.index("-m venv .venv")
    cpu = out.index("pip install --disable-pip-version-check torch torchvision --index-url "
                    "https://download.pytorch.org/whl/cpu")
    course_install = out.index('-m pip install --disable-pip-version-check --progress-bar on -e ".[dev]"')
    assert venv < cpu < course_install, out
    assert "--quiet" not in out, "the first install shows its progress"
    plain = subprocess.run(["make", "--no-print-directory", "-n", "setup"], cwd=tmp_path, capture_output=True,
                           text=True, env=_clean_env(), check=True).stdout
    assert "download.pytorch.org" not in plain, "without TORCH=cpu, pip picks the build"


def test_an_old_python_is_refused_before_any_environment_is_made(tmp_path):
    old = tmp_path / "python3.9"  # a stand-in: reports 3.9 and fails the version check like a real 3.9 would
    old.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Python 3.9.6"; exit 0; fi\nexit 1\n')
    old.chmod(0o755)
    run = subprocess.run(["make", "--no-print-directory", "setup", f"PYTHON={old}"], cwd=_fresh_checkout(tmp_path),
                         capture_output=True, text=True, env=_clean_env())
    assert run.returncode != 0 and "needs Python 3.10 or newer" in run.stderr and "Python 3.9.6" in run.stderr
    assert not (tmp_path / ".venv").exists(), "nothing half-made is left behind"


@pytest.mark.slow
def test_without_mnist_the_lessons_skip_with_the_reason(tmp_path):
    """Offline with no copy of MNIST, the notebook tests skip, each with the reason (CI forbids skips)."""
    empty = tmp_path / "no-mnist"
    empty.mkdir()
    env = {**os.environ, "ACADEMY_MNIST_DIR": str(empty), "ACADEMY_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("ACADEMY_NO_SKIPS", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rs",
                          "notebooks/01_tiny_ddpm.ipynb"], cwd=ROOT, capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0 and " skipped" in run.stdout and "failed" not in run.stdout, run.stdout[-2000:]
    assert "no MNIST" in run.stdout and "ACADEMY_MNIST_DIR" in run.stdout, run.stdout[-2000:]
