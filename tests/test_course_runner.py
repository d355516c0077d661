"""The course runner (``make course``): what it leaves in build/."""

import json

import nbformat

from academy_diffusion.course import runner as course


def test_a_rerun_leaves_no_numbers_from_an_older_run(tmp_path, monkeypatch, capsys):
    """A lesson that stops reporting a number (its code changed) must not keep showing the old value:
    the runner starts each lesson's results file afresh."""
    lesson = tmp_path / "notebooks" / "01_demo.ipynb"
    lesson.parent.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from academy_diffusion.course.reporting import report\n"
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


def _lesson(folder, name, code):
    path = folder / f"{name}.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)
    return path


def test_two_lessons_run_side_by_side_on_one_thread_each(tmp_path, monkeypatch, capsys):
    """The quick profile on a two-core CPU: both kernels at once (their run times overlap), one thread
    each, so that no two PyTorch processes claim both cores (whatever OMP_NUM_THREADS says outside)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    # each lesson waits (up to 60 s) until the other has started, so the check does not hang on how long
    # a kernel takes to start on a busy machine; run one after the other, the first waits in vain
    code = ("import pathlib, time, torch\nfrom academy_diffusion.course.reporting import report\n"
            "start = time.time(); pathlib.Path(r'{folder}', '{name}.started').touch()\n"
            "while not pathlib.Path(r'{folder}', '{other}.started').exists() and time.time() < start + 60:\n"
            "    time.sleep(0.2)\n"
            "report('{name}', threads=torch.get_num_threads(), start=start, end=time.time())")
    pair = ("01_a", "02_b")
    todo = [_lesson(folder, name, code.format(folder=tmp_path, name=name, other=other))
            for name, other in zip(pair, pair[::-1], strict=True)]
    monkeypatch.setattr(course, "lessons", lambda only=None: todo)
    monkeypatch.setattr(course, "cpu_cores", lambda: 2)
    for name, value in (("ACADEMY_PROFILE", "quick"), ("ACADEMY_DEVICE", "cpu"), ("OMP_NUM_THREADS", "2")):
        monkeypatch.setenv(name, value)
    build = tmp_path / "build"
    assert course.main(["--build", str(build)]) == 0
    a, b = (json.loads((build / "results" / f"{name}.json").read_text()) for name in ("01_a", "02_b"))
    assert a["threads"] == b["threads"] == 1
    assert a["start"] < b["end"] and b["start"] < a["end"], "the two lessons ran one after the other"
    printed = capsys.readouterr().out
    assert "2 at a time, 1 CPU thread(s) each" in printed
    assert printed.index("01_a: ") < printed.index("02_b: "), "the summary is not in course order"


def test_lessons_run_two_at_a_time_only_where_they_share_nothing(monkeypatch):
    """Two at a time needs a CPU of two cores or more and lessons that load shipped models; lessons that
    train share their models through the cache, and a GPU is one device."""
    from academy_diffusion.course.profiles import get_profile

    monkeypatch.setattr(course, "cpu_cores", lambda: 2)
    assert course.default_jobs(get_profile("quick"), "cpu") == 2
    for name, device in (("full", "cpu"), ("smoke", "cpu"), ("quick", "cuda"), ("quick", "mps")):
        assert course.default_jobs(get_profile(name), device) == 1, (name, device)
    monkeypatch.setattr(course, "cpu_cores", lambda: 1)
    assert course.default_jobs(get_profile("quick"), "cpu") == 1


def test_a_job_count_below_one_is_refused(tmp_path, capsys):
    assert course.main(["--build", str(tmp_path), "--jobs", "0", "--only", "01"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().out


def test_side_by_side_the_longest_lessons_start_first_and_each_after_the_lesson_it_reuses():
    from pathlib import Path

    todo = [Path(f"{n:02d}_lesson.ipynb") for n in range(1, len(course.QUICK_SECONDS) + 1)]
    side_by_side = [p.name[:2] for p in course.start_order(todo, 2)]
    assert side_by_side[:2] == ["03", "07"]
    for lesson, reused in course.REUSES.items():
        assert side_by_side.index(reused) < side_by_side.index(lesson), (lesson, reused)
    assert course.start_order(todo, 1) == todo


def test_a_lesson_waits_for_the_one_whose_samples_it_reuses(tmp_path, monkeypatch, capsys):
    """Lesson 5 reads lesson 4's samples: with a core free, it still starts only once lesson 4 has
    finished (instead of drawing the same samples again beside it)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    code = ("import time\nfrom academy_diffusion.course.reporting import report\n"
            "start = time.time(); time.sleep({sleep})\nreport('{name}', start=start, end=time.time())")
    sleeps = {"03_quick": 0, "04_draws": 4, "05_reuses": 0}
    todo = [_lesson(folder, name, code.format(name=name, sleep=sleep)) for name, sleep in sleeps.items()]
    monkeypatch.setattr(course, "lessons", lambda only=None: todo)
    monkeypatch.setattr(course, "cpu_cores", lambda: 2)
    monkeypatch.setenv("ACADEMY_DEVICE", "cpu")
    build = tmp_path / "build"
    assert course.main(["--build", str(build), "--jobs", "2"]) == 0
    r = {name: json.loads((build / "results" / f"{name}.json").read_text()) for name in sleeps}
    assert r["05_reuses"]["start"] >= r["04_draws"]["end"], "lesson 5 started before lesson 4 had finished"
    assert "05_reuses.ipynb waits for lesson 04" in capsys.readouterr().out
