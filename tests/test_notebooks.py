"""The lesson notebooks are well-formed: paired with their jupytext sources, committed without
outputs, with one identical setup cell, and each checks its claims with assertions.
(The lessons themselves run under nbval as part of the same test command.)"""

import ast
import inspect
import re
import textwrap
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
EXERCISE_SOURCES = sorted((ROOT / "solutions" / "source").glob("[0-9][0-9]_*.py"))


def _cells(nb):
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def test_the_lessons_are_numbered_from_01_without_gaps():
    assert [p.name[:2] for p in LESSONS] == [f"{k:02d}" for k in range(1, len(LESSONS) + 1)]
    assert len(LESSONS) >= 9


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


def vacuous_claims(code: str) -> list[str]:
    """The lesson's claims (``claim(...)`` and ``assert``) that cannot fail, each with the reason.

    Caught: a comparison of an expression with itself; a claim on a constant; ``x.max() > k * x.min()``
    on one curve (true for any curve with a spread once k is small, and guaranteed when the sweep
    includes a bad end); an elbow (from ``find_elbow``) compared with the ends of its own sweep (the
    chord's ends are on the curve, so the farthest point is never an end unless all are).
    """
    tree = ast.parse(code)
    elbows = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
              and "find_elbow" in ast.unparse(node.value) for t in node.targets if isinstance(t, ast.Name)}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            test = node.test
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "claim" and node.args:
            test = node.args[0]
        else:
            continue
        text = ast.unparse(test)
        if isinstance(test, ast.Constant):
            problems.append(f"{text}: a constant")
        for cmp in (n for n in ast.walk(test) if isinstance(n, ast.Compare)):
            sides = [cmp.left, *cmp.comparators]
            dumps = [ast.dump(x) for x in sides]
            if len(set(dumps)) < len(dumps):
                problems.append(f"{text}: compares an expression with itself")
            calls = [ast.unparse(x) for x in sides]
            for a in calls:
                if a.endswith(".max()") and any(b.endswith(a[:-6] + ".min()") for b in calls):
                    problems.append(f"{text}: the max of a curve against a multiple of its own min")
            names = {n.id for x in sides for n in ast.walk(x) if isinstance(n, ast.Name)}
            if names & elbows and any(re.search(r"\[(0|-1)\]", c) for c in calls):
                problems.append(f"{text}: an elbow against the ends of its own sweep")
    return problems


def test_the_claim_lint_catches_claims_that_cannot_fail():
    """The lint is itself tested on the vacuous checks the lessons used to make."""
    old = """
elbow_w = W_SWEEP[find_elbow(W_SWEEP, fid_curve)]
assert W_SWEEP[0] < elbow_w < W_SWEEP[-1], elbow_w
assert fid_curve.max() > 1.5 * fid_curve.min(), fid_curve
claim(acc == acc, "same")
claim(True, "always")
"""
    found = vacuous_claims(old)
    assert len(found) == 4 and "ends of its own sweep" in found[0] and "own min" in found[1], found
    assert vacuous_claims("claim(fid_dead > fid_healthy + 3 * baseline, 'ok')") == []


@pytest.mark.parametrize("source", LESSONS, ids=lambda p: p.stem)
def test_each_lesson_checks_its_claims(source):
    """Each lesson hands its measured numbers to its function in ``course.claims`` (where tests/test_claims.py
    plants a wrong result for every claim) and makes no claim or assertion of its own that cannot fail."""
    from academy_diffusion.course import claims

    code = "\n".join(c.source for c in jupytext.read(source).cells if c.cell_type == "code")
    code = "\n".join(line for line in code.splitlines() if not line.startswith(("%", "!")))
    number = source.stem[:2]
    assert f"lesson_{number}(" in code, f"{source.name} must check its teaching claims: call claims.lesson_{number}"
    checks = inspect.getsource(getattr(claims, f"lesson_{number}"))
    assert checks.count("claim(") >= 2, f"claims.lesson_{number} must check at least two claims"
    assert "report(" in code, f"{source.name} must report its measured numbers"
    assert vacuous_claims(code) == [], f"{source.name} has claims that cannot fail"
    assert vacuous_claims(textwrap.dedent(checks)) == [], f"claims.lesson_{number} has claims that cannot fail"
