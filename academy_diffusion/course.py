"""Run the lessons headless: ``python -m academy_diffusion.course`` (what ``make course`` calls).

Executes every ``notebooks/NN_*.ipynb`` in order, writes the executed notebooks to
``build/notebooks/``, their figures to ``build/figures/`` and their measured numbers to
``build/results/``, then prints a summary. The run profile comes from ``ACADEMY_PROFILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .reporting import BUILD_ENV

ROOT = Path(__file__).resolve().parents[1]


def lessons(folder: Path = ROOT / "notebooks") -> list[Path]:
    """The lesson notebooks, in course order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, out_dir: Path, timeout: int = 3600) -> float:
    """Execute one notebook in the current Python environment; returns its wall-clock seconds."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, out_dir / path.name)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build"), help="output folder (default: build/)")
    parser.add_argument("--only", nargs="*", help="lesson numbers to run, e.g. --only 01 03")
    args = parser.parse_args(argv)

    build = Path(args.build).resolve()
    (build / "notebooks").mkdir(parents=True, exist_ok=True)
    os.environ[BUILD_ENV] = str(build)
    todo = [p for p in lessons() if not args.only or p.name[:2] in args.only]
    if not todo:
        print("no lessons to run yet (notebooks/NN_*.ipynb)")
        return 0
    times, failed = {}, []
    for path in todo:
        print(f"running {path.name} ...", flush=True)
        try:
            times[path.stem] = run_notebook(path, build / "notebooks")
            print(f"  done in {times[path.stem]:.0f} s")
        except Exception as err:  # keep going: report every lesson
            failed.append(path.name)
            print(f"  FAILED: {type(err).__name__}: {str(err)[-2000:]}")
    print_summary(build, times)
    if failed:
        print(f"failed lessons: {', '.join(failed)} (executed copies with the error are in {build / 'notebooks'})")
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


if __name__ == "__main__":
    sys.exit(main())
