"""The headless runner: ``python -m academy_diffusion.course`` (what ``make course`` calls).

It executes every ``notebooks/NN_*.ipynb``, writes the executed notebooks to ``build/notebooks/``,
their figures to ``build/figures/`` and their measured numbers to ``build/results/``, then prints a
summary in course order. The run profile comes from ``ACADEMY_PROFILE``. On a CPU with the quick
profile it runs two lessons at a time on one thread each (:func:`default_jobs`), the longest first
(:func:`start_order`).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..device import get_device
from .profiles import Profile, get_profile
from .reporting import BUILD_ENV

ROOT = Path(__file__).resolve().parents[2]


def lessons(folder: Path = ROOT / "notebooks", only=None) -> list[Path]:
    """The lesson notebooks, in course order; ``only`` keeps those whose number is listed (``["03"]``).

    Raises ValueError for a number that is no lesson, so a typo does not silently run nothing.
    """
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return found
    wanted = {str(n).zfill(2) for n in only}
    unknown = wanted - {p.name[:2] for p in found}
    if unknown:
        raise ValueError(f"no lesson {', '.join(sorted(unknown))}; the lessons are "
                         f"{', '.join(p.name[:2] for p in found)}")
    return [p for p in found if p.name[:2] in wanted]


def run_notebook(path: Path, out_dir: Path, timeout: int = 3600, threads: int | None = None) -> float:
    """Execute one notebook in the current Python environment; returns its wall-clock seconds.

    ``threads`` caps the kernel's CPU threads (``OMP_NUM_THREADS``); None leaves PyTorch's default.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(env=env)
    finally:
        nbformat.write(nb, out_dir / path.name)
    return time.perf_counter() - start


def cpu_cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Lessons that read another lesson's samples from the cache (:func:`cached_sample`): run side by side,
# each waits for the lesson it reuses, rather than drawing the same samples again.
REUSES = {"05": "04", "06": "02", "08": "05", "10": "02"}  # lesson 8 reads lesson 4's sets and lesson 5's w = 2
# Each lesson's seconds in the quick profile on the 2-core CI machine, one thread, beside another lesson
# (an AMD EPYC with AVX512-BF16, idle otherwise: the whole course on 2026-11-30, 416 s of wall clock).
# Only their order matters: see start_order.
QUICK_SECONDS = {"01": 85, "02": 82, "03": 197, "04": 78, "05": 33, "06": 93, "07": 128, "08": 23, "09": 27, "10": 55,
                 "11": 26}


def start_order(todo: list[Path], jobs: int) -> list[Path]:
    """The order in which the runner starts ``todo``: course order one at a time; side by side, the
    longest first (so that short lessons fill the other core around the long ones, instead of one long
    lesson running alone at the end), ties and unknown lessons in course order, and every lesson after
    the one whose samples it reuses (it would wait for it anyway)."""
    if jobs == 1:
        return list(todo)
    order = sorted(todo, key=lambda p: -QUICK_SECONDS.get(p.name[:2], 0))
    for lesson, reused in REUSES.items():
        names = [p.name[:2] for p in order]
        if lesson in names and reused in names and names.index(lesson) < names.index(reused):
            moved = order.pop(names.index(lesson))
            order.insert([p.name[:2] for p in order].index(reused) + 1, moved)
    return order


def default_jobs(profile: Profile, device) -> int:
    """How many lessons ``make course`` runs at once: 2 on a CPU of 2+ cores whose lessons load
    the shipped models (they share nothing then), else 1.

    On this course's 2-core CI machine, two one-thread U-Nets side by side evaluate at least as many
    images per second as one on two threads (small convolutions do not split well across threads),
    and each lesson's single-threaded stretches (kernel start, plots, FID) overlap with the other's
    sampling: the whole quick course took 686 s this way against 762 s one lesson at a time on two
    threads (back to back, same day). A GPU is one device, and lessons that train their own models
    share them through the cache: those run in order.
    """
    if torch.device(device).type != "cpu" or not profile.pretrained:
        return 1
    return min(2, cpu_cores())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build"), help="output folder (default: build/)")
    parser.add_argument("--only", nargs="*", help="lesson numbers to run, e.g. --only 01 03")
    parser.add_argument("--jobs", type=int, help="lessons run at once, each on cores/jobs threads "
                        "(default: 2 on a multi-core CPU with the quick profile, else 1)")
    args = parser.parse_args(argv)

    build = Path(args.build).resolve()
    (build / "notebooks").mkdir(parents=True, exist_ok=True)
    os.environ[BUILD_ENV] = str(build)
    try:
        todo = lessons(only=args.only)
    except ValueError as err:
        print(err)
        return 2
    if not todo:
        print("no lessons to run yet (notebooks/NN_*.ipynb)")
        return 0
    if args.jobs is not None and args.jobs < 1:
        print(f"--jobs must be at least 1, got {args.jobs}")
        return 2
    jobs = min(args.jobs or default_jobs(get_profile(), get_device()), len(todo))
    threads = max(1, cpu_cores() // jobs) if jobs > 1 else None
    if jobs > 1:
        print(f"running {len(todo)} lessons, {jobs} at a time, {threads} CPU thread(s) each")
    times, failed = {}, []
    finished = {p.name[:2]: threading.Event() for p in todo}

    def say(line: str) -> None:  # one write per line, so that two lessons' lines never interleave
        print(line + "\n", end="", flush=True)

    def run_one(path: Path) -> None:
        reused = finished.get(REUSES.get(path.name[:2], ""))
        if reused is not None and not reused.is_set():
            say(f"{path.name} waits for lesson {REUSES[path.name[:2]]}, whose samples it reuses")
            reused.wait()
        try:
            run_lesson(path)
        finally:
            finished[path.name[:2]].set()

    def run_lesson(path: Path) -> None:
        say(f"running {path.name} ...")
        (build / "results" / f"{path.stem}.json").unlink(missing_ok=True)  # no numbers left from an older run
        try:
            times[path.stem] = run_notebook(path, build / "notebooks", threads=threads)
            say(f"  {path.name} done in {times[path.stem]:.0f} s")
        except Exception as err:  # keep going: report every lesson
            failed.append(path.name)
            say(f"  {path.name} FAILED: {type(err).__name__}: {str(err)[-2000:]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(run_one, start_order(todo, jobs)))
    print_summary(build, {p.stem: times[p.stem] for p in todo if p.stem in times})
    print(f"total: {time.perf_counter() - start:.0f} s of wall clock for {len(todo)} lessons, {jobs} at a time")
    if failed:
        print(f"failed lessons: {', '.join(sorted(failed))} (executed copies with the error are in "
              f"{build / 'notebooks'})")
    return 1 if failed else 0


def print_summary(build: Path, times: dict) -> None:
    """Print each lesson's run time and the numbers it reported."""
    print(f"\nsummary (executed notebooks and figures in {build})")
    for stem, seconds in times.items():
        print(f"{stem}: {seconds:.0f} s")
        results = build / "results" / f"{stem}.json"
        if results.exists():
            for name, value in json.loads(results.read_text()).items():
                shown = f"{value:.4g}" if isinstance(value, float) else value
                print(f"    {name}: {shown}")

