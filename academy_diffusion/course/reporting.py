"""How a lesson hands its measured numbers and figures to the course runner.

In JupyterLab these just print and show. Under ``make course`` the runner sets
``ACADEMY_BUILD_DIR``, and the numbers go to ``<build>/results/<lesson>.json`` and the figures
to ``<build>/figures/`` as well, for the summary the runner prints at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

BUILD_ENV = "ACADEMY_BUILD_DIR"
_lesson = {"name": None, "checks_claims": True}  # set by start_lesson (setup_lesson calls it)


def start_lesson(name: str, profile) -> None:
    """Record the running lesson's name and whether its profile enforces claims (see :func:`claim`)."""
    _lesson.update(name=name, checks_claims=profile.checks_claims)


def _build_dir() -> Path | None:
    value = os.environ.get(BUILD_ENV)
    return Path(value) if value else None


def report(lesson: str, **numbers) -> None:
    """Print ``numbers`` (name -> value) and, under the runner, add them to the lesson's results file.

    Returns nothing, so that a ``report(...)`` at the end of a cell does not echo the numbers twice."""
    for name, value in numbers.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"  {name}: {shown}")
    build = _build_dir()
    if build is not None:
        path = build / "results" / f"{lesson}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text()) if path.exists() else {}
        old.update({k: (float(v) if hasattr(v, "item") else v) for k, v in numbers.items()})
        path.write_text(json.dumps(old, indent=2))


def save_figure(fig, name: str) -> Path | None:
    """Save ``fig`` as ``<build>/figures/<name>.png`` under the runner; do nothing otherwise."""
    build = _build_dir()
    if build is None:
        return None
    path = build / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def claim(holds: bool, message: str) -> None:
    """Check one of a lesson's teaching claims on its measured numbers.

    Prints ``✓ message`` when it holds and raises AssertionError when it does not, except in
    the ``smoke`` profile, whose tiny models cannot bear the claims out: there the outcome is
    printed and the lesson goes on (smoke tests the code path, not the teaching). The profile is the
    one the lesson was set up with (:func:`start_lesson`); outside a lesson every claim is enforced.
    """
    if holds:
        print(f"✓ {message}")
    elif _lesson["checks_claims"]:
        raise AssertionError(f"claim does not hold: {message}")
    else:
        print(f"✗ (smoke profile, not enforced) {message}")
