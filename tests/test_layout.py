"""The package's layout: the teaching core a student reads imports none of the course's machinery."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "academy_diffusion"
CORE = ("schedules", "models", "training", "samplers", "flow_matching", "latent", "distillation", "metrics")
# What the core may import from the package: each other, and the small modules every idea needs.
CORE_MAY_IMPORT = set(CORE) | {"device", "data", "progress"}
READER_MODULES = ("data", "device", "checkpoints", "classifier", "plotting", "widgets", "progress")


def package_imports(path: Path) -> set[str]:
    """The academy_diffusion modules that ``path`` imports (``from .x``, ``from ..x``, ``academy_diffusion.x``),
    as dotted names below the package (``"course.lessons"``, ``"samplers"``)."""
    here = path.relative_to(PACKAGE).with_suffix("").parts[:-1]  # the module's own sub-package
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - (node.level - 1)])
                leaves = [node.module] if node.module else [a.name for a in node.names]
                names = [".".join([*base, leaf]) for leaf in leaves]
            elif (node.module or "").startswith("academy_diffusion"):
                rest = node.module.split(".")[1:]
                names = [".".join(rest)] if rest else [a.name for a in node.names]
            else:
                continue
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("academy_diffusion."))
    return found


def test_the_import_reader_sees_every_form():
    sample = PACKAGE / "course" / "_probe_.py"
    sample.write_text("from ..samplers import sample\nfrom . import reporting\nfrom .lab import x\n"
                      "import academy_diffusion.metrics\nfrom academy_diffusion import course\n")
    try:
        assert package_imports(sample) == {"samplers", "course.reporting", "course.lab", "metrics", "course"}
    finally:
        sample.unlink()


@pytest.mark.parametrize("module", CORE)
def test_the_teaching_core_imports_no_machinery(module):
    imported = {name.split(".")[0] for name in package_imports(PACKAGE / f"{module}.py")}
    assert imported <= CORE_MAY_IMPORT, f"{module}.py imports {sorted(imported - CORE_MAY_IMPORT)}"


@pytest.mark.parametrize("module", READER_MODULES)
def test_the_modules_beside_the_core_import_no_machinery_either(module):
    imported = package_imports(PACKAGE / f"{module}.py")
    assert not any(name.split(".")[0] == "course" for name in imported), f"{module}.py imports {sorted(imported)}"


def test_the_top_level_holds_what_a_student_reads():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == set(CORE) | set(READER_MODULES), sorted(top)
    machinery = {p.stem for p in (PACKAGE / "course").glob("*.py")}
    assert {"lessons", "runner", "checks", "exercises", "lab", "pretrain", "bench", "reporting", "profiles",
            "bundle"} <= machinery
