"""The course runner (``make course``): what it leaves in build/."""

import json

import nbformat

from academy_diffusion import course


def test_a_rerun_leaves_no_numbers_from_an_older_run(tmp_path, monkeypatch, capsys):
    """A lesson that stops reporting a number (its code changed) must not keep showing the old value:
    the runner starts each lesson's results file afresh."""
    lesson = tmp_path / "notebooks" / "01_demo.ipynb"
    lesson.parent.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from academy_diffusion.reporting import report\n"
                                          "report('01_demo', fresh=2.5)")]
    nbformat.write(nb, lesson)
    build = tmp_path / "build"
    (build / "results").mkdir(parents=True)
    (build / "results" / "01_demo.json").write_text(json.dumps({"stale": 1.0, "fresh": 0.0}))
    monkeypatch.setattr(course, "lessons", lambda only=None: [lesson])
    assert course.main(["--build", str(build)]) == 0
    assert json.loads((build / "results" / "01_demo.json").read_text()) == {"fresh": 2.5}
    printed = capsys.readouterr().out
    assert "fresh: 2.5" in printed and "stale" not in printed
