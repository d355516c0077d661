"""Exercises and solutions: generated from one source, stubs fail only where expected.
(The solution notebooks themselves run under nbval as part of the same test command.)"""

from pathlib import Path

import nbformat
import pytest

from academy_diffusion.course import exercises

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "solutions" / "source").glob("[0-9][0-9]_*.py"))


def test_one_exercise_per_lesson_and_committed_notebooks_are_up_to_date():
    lessons = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert [p.name[:2] for p in SOURCES] == lessons == [f"{k:02d}" for k in range(1, len(lessons) + 1)]
    assert exercises.main(["--check"]) == 0, "run `make exercises` and commit the result"


def test_marker_handling():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n"
    assert exercises.exercise_text(src) == (
        "def f(x):\n    # YOUR CODE HERE\n    " + exercises.STUB + "\n")
    assert exercises.solution_text(src) == "def f(x):\n    y = x + 1\n    return y\n"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_no_solution_leaks_into_the_exercise(source):
    ex, sol = (nbformat.read(p, as_version=4) for p in exercises.targets(source))
    ex_code = "\n".join(c.source for c in ex.cells)
    sol_code = "\n".join(c.source for c in sol.cells)
    assert exercises.BEGIN not in ex_code + sol_code and exercises.END not in ex_code + sol_code
    assert ex_code.count("NotImplementedError") >= 1 and "NotImplementedError" not in sol_code
    for cell in sol.cells:
        assert "raises-exception" not in cell.metadata.get("tags", []), "solutions must run clean"


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_exercise_fails_only_in_the_expected_cells(source, tmp_path):
    """Run the exercise with its stubs: exactly the tagged cells fail, all with NotImplementedError."""
    from nbclient import NotebookClient

    path, _ = exercises.targets(source)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        expected = "raises-exception" in cell.metadata.get("tags", [])
        assert bool(errors) == expected, f"cell {i} {'should' if expected else 'should not'} fail: {cell.source[:80]}"
        if errors:
            assert errors[0].ename == "NotImplementedError", (i, errors[0].ename, errors[0].evalue)
