"""What every pytest run of this repository loads (``-p lesson_plugin`` in pyproject.toml), whichever
paths it is given: ``pytest notebooks/03_ddim.ipynb`` reads no conftest below tests/, but must still run
the lesson in the quick profile and skip it cleanly without MNIST."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest


def test_profile(environ) -> str:
    """The run profile the tests execute the lessons in: ``$ACADEMY_PROFILE`` when it is set, else
    ``quick`` on every machine (left to the package, a CUDA machine would pick ``full``: hours of
    training under nbval). Set here, at import, so that every notebook kernel inherits it."""
    return environ.setdefault("ACADEMY_PROFILE", "quick")


test_profile.__test__ = False  # a helper, not a test
TEST_PROFILE = test_profile(os.environ)
NOTEBOOK_DIRS = {"notebooks", "exercises", "solutions"}


@functools.cache
def mnist_missing() -> str | None:
    """Why MNIST cannot be found (the way the course finds it), or None when it can."""
    from academy_diffusion.data import MNISTNotFoundError, mnist_root

    try:
        mnist_root()
    except MNISTNotFoundError as err:
        return str(err)
    return None


def pytest_runtest_setup(item):
    """The lessons, exercises and solutions (nbval) load MNIST: without it (offline, no copy) they skip
    with the reason instead of failing cell by cell."""
    path = Path(str(item.fspath))
    if path.suffix == ".ipynb" and path.parent.name in NOTEBOOK_DIRS:
        reason = mnist_missing()
        if reason:
            pytest.skip(f"no MNIST: {reason}")
