"""Colab readiness: every lesson opens on its own, in a Python where academy_diffusion is not installed.

Colab runs a lesson as a lone notebook in ``/content``, with torch, torchvision and Jupyter
preinstalled and no academy_diffusion. The test builds that situation honestly: a fresh virtual
environment with only those (the same torch as here, so nothing is downloaded twice), and a working
folder outside the repository that holds the lesson and the bundle ``make colab`` builds, nothing
else (no repository on ``sys.path``, no ``ACADEMY_PACKAGE``). The setup cell must install the
package from the bundle; with neither the bundle nor a reachable repository it must say what to do.

Also here: each notebook's "Open in Colab" badge and install URL come from the one configured
repository location (``[tool.academy-diffusion]`` in ``pyproject.toml``), pinned to this release.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest

from academy_diffusion.course import enable_colab_widgets, exercises
from academy_diffusion.course.bundle import build_bundle

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = LESSONS + sorted((ROOT / "exercises").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))
COLAB_PREINSTALLED = ["ipykernel", "nbclient", "nbformat"]  # besides torch and torchvision
RUN_NOTEBOOK = """
import sys
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[1])
"""


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _setup_cell(path: Path) -> str:
    (cell,) = [c for c in _cells(path) if "setup" in c["metadata"].get("tags", [])]
    return "".join(cell["source"])


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_badge_and_install_url_come_from_the_configured_repository(notebook):
    rel = notebook.relative_to(ROOT).as_posix()
    title = "".join(_cells(notebook)[0]["source"])
    assert exercises.colab_badge(rel) in title, f"{rel}: no Colab badge for itself under the title (`make sync`)"
    assert f'"{exercises.package_url()}"' in _setup_cell(notebook), f"{rel}: stale install URL (`make sync`)"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_notebooks_ask_for_the_plain_python3_kernel(notebook):
    """Colab warns "Unrecognized runtime" for any other kernel name (JupyterLab's python3 is the course's
    environment under ``make lab``)."""
    assert json.loads(notebook.read_text())["metadata"]["kernelspec"]["name"] == "python3"


def test_the_repository_is_configured_once_and_pinned_to_this_release():
    import academy_diffusion

    repo = exercises.repository()
    assert set(repo) == {"github", "ref"} and repo["github"].count("/") == 1
    assert repo["ref"] == f"v{academy_diffusion.__version__}" == f"v{version('academy-diffusion')}"
    assert exercises.package_url().endswith(f"@{repo['ref']}") and "@main" not in exercises.package_url()
    assert exercises.colab_badge("notebooks/01_tiny_ddpm.ipynb") == (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google."
        f"com/github/{repo['github']}/blob/{repo['ref']}/notebooks/01_tiny_ddpm.ipynb)")
    # stamping rewrites an old location, and only the badge and the install URL
    old = 'x = "git+https://github.com/someone/fork@dev"\n[![Open In Colab](a.svg)](https://old/place.ipynb)\nrest'
    stamped = exercises.stamp(old, "exercises/03_ddim.ipynb")
    assert stamped == (f'x = "{exercises.package_url()}"\n{exercises.colab_badge("exercises/03_ddim.ipynb")}\nrest')


def test_colab_widget_manager_is_switched_on_only_on_colab(monkeypatch):
    calls = []
    colab = type(sys)("google.colab")
    colab.output = type(sys)("google.colab.output")
    colab.output.enable_custom_widget_manager = lambda: calls.append("enabled")
    assert not enable_colab_widgets() and calls == []
    monkeypatch.setitem(sys.modules, "google", type(sys)("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert enable_colab_widgets() and calls == ["enabled"]


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def _clean_env(**extra) -> dict:
    """This environment without anything that would let the fresh venv find the checkout."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "ACADEMY_PACKAGE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "ACADEMY_PROFILE": "quick", **extra}


def _importable(python: Path, cwd: Path) -> bool:
    return subprocess.run([str(python), "-c", "import academy_diffusion"], cwd=cwd, env=_clean_env(),
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A Colab-like runtime: (python of a fresh venv with torch and Jupyter only, a folder outside the
    repository that holds the bundle ``make colab`` builds and nothing else)."""
    base = tmp_path_factory.mktemp("colab")
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    python = base / "venv" / "bin" / "python"
    torch_pins = [f"{name}=={version(name).split('+')[0]}" for name in ("torch", "torchvision")]
    _pip(python, "install", *torch_pins, *COLAB_PREINSTALLED)
    content = base / "content"  # Colab's working folder
    content.mkdir()
    build_bundle(content)
    return python, content


def test_the_bundle_holds_the_package_and_its_checkpoints(colab):
    import zipfile

    (wheel,) = colab[1].glob("academy_diffusion-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "academy_diffusion" / "pretrained").iterdir()}
    assert {f"academy_diffusion/pretrained/{n}" for n in shipped} <= names
    assert "academy_diffusion/course/lessons.py" in names and "academy_diffusion/samplers.py" in names
    assert not any("__pycache__" in n or n.startswith(("tests/", "notebooks/")) for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("lesson", [LESSONS[0], LESSONS[-1]], ids=lambda p: p.stem)
def test_setup_cell_installs_the_uploaded_bundle(colab, lesson):
    """The first and the last lesson (every setup cell is the same but for the lesson's name:
    ``test_notebooks.py::test_one_setup_cell_everywhere``)."""
    python, content = colab
    _pip(python, "uninstall", "-y", "academy-diffusion")
    assert not _importable(python, content), "the fresh venv must start without academy_diffusion"
    cell = _setup_cell(lesson) + "\nimport academy_diffusion\nprint('imported from', academy_diffusion.__file__)\n"
    run = subprocess.run([str(python), "-c", cell], cwd=content, env=_clean_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"lesson {lesson.name[:2]} | device:" in run.stdout and "profile: quick" in run.stdout, run.stdout
    # installed into the fresh venv (not found in the checkout), and only the package: torch untouched
    assert f"imported from {python.parent.parent}" in run.stdout, run.stdout
    for name in ("torch", "torchvision"):
        check = subprocess.run([str(python), "-c", f"from importlib.metadata import version; print(version('{name}'))"],
                               capture_output=True, text=True, check=True)
        assert check.stdout.strip() == version(name), f"the setup cell must never reinstall {name}"


@pytest.mark.slow
def test_without_bundle_or_repository_the_setup_cell_names_both_routes(colab, tmp_path):
    """No bundle in the folder and a repository pip cannot reach: a clear message, not a bare pip error."""
    python, _ = colab
    _pip(python, "uninstall", "-y", "academy-diffusion")
    cell = _setup_cell(LESSONS[0])
    run = subprocess.run([str(python), "-c", cell], cwd=tmp_path, capture_output=True, text=True,
                         env=_clean_env(ACADEMY_PACKAGE=str(tmp_path / "no-such-repository")))
    assert run.returncode != 0
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith("RuntimeError: Could not install the course's package"), run.stderr[-2000:]
    assert "academy_diffusion-*.whl" in message and "make colab" in message and "publish the repository" in message
    assert "CalledProcessError" not in run.stderr


@pytest.mark.slow
def test_lesson_1_runs_from_the_bundle_alone(colab, needs_mnist):
    """The whole first lesson, copied alone next to the bundle, run by the fresh venv's kernel."""
    python, content = colab
    _pip(python, "uninstall", "-y", "academy-diffusion")
    lesson = shutil.copy(LESSONS[0], content)
    assert sorted(p.name for p in content.iterdir()) == sorted([LESSONS[0].name, *(p.name for p in
                                                                 content.glob("*.whl"))])
    run = subprocess.run([str(python), "-c", RUN_NOTEBOOK, str(lesson), str(content)], cwd=content, env=_clean_env(),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    executed = nbformat.read(lesson, as_version=4).cells
    outputs = [o for c in executed if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "lesson 01 | device:" in text and "loaded the shipped 'linear' model" in text, text[:2000]
    installed = subprocess.run([str(python), "-c", "import academy_diffusion; print(academy_diffusion.__file__)"],
                               cwd=content, capture_output=True, text=True, check=True).stdout
    assert str(python.parent.parent) in installed, "lesson 1 ran on the package the bundle installed"
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    shown = sum(c.source.count("plt.show()") for c in executed if c.cell_type == "code")
    assert figures == shown, f"the executed notebook should hold the lesson's {shown} figures, not {figures}"
