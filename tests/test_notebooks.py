"""The lesson notebooks are well-formed: paired with their jupytext sources, committed without
outputs, with one identical setup cell, and each checks its claims with assertions.
(The lessons themselves run under nbval as part of the same test command.)"""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
EXERCISE_SOURCES = sorted((ROOT / "solutions" / "source").glob("[0-9][0-9]_*.py"))


def _cells(nb):
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def test_six_lessons():
    assert [p.name[:2] for p in LESSONS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("source", LESSONS, ids=lambda p: p.stem)
def test_pair_in_sync_and_without_outputs(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `make sync`"
    nb = nbformat.read(ipynb, as_version=4)
    assert _cells(nb) == _cells(jupytext.read(source)), f"{ipynb.name} is out of sync with {source.name}: `make sync`"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{ipynb.name} is committed with outputs"


def test_one_setup_cell_everywhere():
    """A notebook must bootstrap itself before the package can be imported, so the setup cell is the
    one piece every lesson and exercise repeats; it must be the same everywhere (but for its name)."""
    setups = []
    for source in LESSONS + EXERCISE_SOURCES:
        nb = jupytext.read(source)
        setup = [c for c in nb.cells if "setup" in c.metadata.get("tags", ())]
        assert len(setup) == 1 and nb.cells.index(setup[0]) == 1, f"{source.name}: the setup cell comes second"
        text = setup[0].source.split("from academy_diffusion.course import setup_lesson")[0]
        setups.append(re.sub(r"\s+$", "", text))
    assert len(set(setups)) == 1, "the setup cells must be identical but for the lesson's name"
    install = setups[0].split('"pip"')[1]
    assert "PACKAGE" in install and "torch" not in install, "install the package (never torch)"


@pytest.mark.parametrize("source", LESSONS, ids=lambda p: p.stem)
def test_each_lesson_checks_its_claims(source):
    code = "\n".join(c.source for c in jupytext.read(source).cells if c.cell_type == "code")
    assert code.count("assert ") >= 2, f"{source.name} must assert its teaching claims on measured values"
    assert "report(" in code, f"{source.name} must report its measured numbers"
