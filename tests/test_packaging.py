"""The project's own files agree with each other: pyproject, environment.yml, README, CI."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_the_package_from_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"], "conda-forge only"
    deps = env["dependencies"]
    assert any(str(d).startswith("python") for d in deps) and "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    extras = _pyproject()["project"]["optional-dependencies"]
    assert pip_section == ["-e .[dev]"] and "dev" in extras
    conda_names = {re.split(r"[<>=]", str(d))[0] for d in deps if not isinstance(d, dict)}
    assert conda_names == {"python", "pip"}, "everything else must come from pyproject.toml"
    py_min = re.search(r"python>=([\d.]+)", " ".join(map(str, deps))).group(1)
    requires = _pyproject()["project"]["requires-python"]
    assert tuple(map(int, py_min.split("."))) >= tuple(map(int, requires.lstrip(">=").split(".")))


def test_torch_is_never_pinned():
    for dep in _pyproject()["project"]["dependencies"]:
        if dep.startswith(("torch", "torchvision")):
            assert ">=" in dep and "==" not in dep and "<" not in dep, dep


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and re.search(r"^make test$", ci, re.M)
    assert "make course" in readme


def test_package_imports_without_side_effects():
    out = subprocess.run([sys.executable, "-c", "import academy_diffusion.samplers, academy_diffusion.metrics"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


def test_runtime_dependencies_leave_colabs_jupyter_alone():
    """The setup cell installs the package's runtime dependencies on Colab: no Jupyter server there."""
    deps = " ".join(_pyproject()["project"]["dependencies"])
    assert "jupyterlab" not in deps and "notebook" not in deps and "ipykernel" not in deps
    assert "jupyterlab" in " ".join(_pyproject()["project"]["optional-dependencies"]["lab"])


def test_ci_installs_the_system_packages_it_lists():
    listed = [line for line in (ROOT / ".ci" / "system-packages.txt").read_text().split("\n")
              if line.strip() and not line.startswith("#")]
    assert "chromium" in listed
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".ci/system-packages.txt" in ci and "apt-get install" in ci and "ACADEMY_BROWSER_TEST=required" in ci


def test_the_readme_is_a_guide_whose_commands_and_links_work():
    import importlib.util

    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12_288, "the README is a guide; measurements and history go to docs/"
    makefile = (ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY: (.*)$", makefile, re.M).group(1).split())
    for target in re.findall(r"`make ([a-z-]+)", readme):
        assert target in phony, f"the README names `make {target}`, which the Makefile does not have"
    for module in re.findall(r"python -m (academy_diffusion[\w.]*)", readme):
        assert importlib.util.find_spec(module) is not None, module
    links = [link for link in re.findall(r"\]\(([^)#\s]+)", readme) if "://" not in link]
    assert {"docs/measurements.md", "docs/maintaining.md", "LICENSE"} <= set(links)
    for link in links:
        assert (ROOT / link).exists(), f"the README links {link}, which is not there"


def test_intel_macs_keep_a_numpy_their_torch_supports():
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    numpy = [Requirement(d) for d in _pyproject()["project"]["dependencies"] if d.startswith("numpy")]
    intel_mac = {**default_environment(), "sys_platform": "darwin", "platform_machine": "x86_64"}
    arm_mac = {**intel_mac, "platform_machine": "arm64"}
    for env, allows_numpy_2 in ((intel_mac, False), (arm_mac, True), (default_environment(), True)):
        applying = [r for r in numpy if r.marker is None or r.marker.evaluate(env)]
        assert len(applying) == 1, applying
        assert applying[0].specifier.contains("2.1.0") == allows_numpy_2, (env["platform_machine"], applying)


def test_the_licence_names_a_holder_and_the_data():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and re.search(r"Copyright \(c\) 20\d\d \S", licence)
    assert "MNIST" in licence and "Attribution-Share Alike 3.0" in licence
    assert _pyproject()["project"]["license"] == {"file": "LICENSE"}
