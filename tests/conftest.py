"""Shared fixtures. Tests run on the CPU with small sizes; MNIST comes from ACADEMY_MNIST_DIR."""

import os
import subprocess

import pytest
import torch
from lesson_plugin import mnist_missing

from academy_diffusion.models import UNet
from academy_diffusion.schedules import make_schedule


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)


@pytest.fixture
def tiny_model():
    """A small unconditional U-Net (fast on the CPU)."""
    torch.manual_seed(0)
    return UNet(channels=(8, 16, 16), emb_dim=32).eval()


@pytest.fixture
def tiny_cond_model():
    """A small class-conditional U-Net with the null class at index 10."""
    torch.manual_seed(0)
    return UNet(channels=(8, 16, 16), emb_dim=32, num_classes=10).eval()


@pytest.fixture
def linear_schedule():
    return make_schedule("linear", 1000)


@pytest.fixture
def needs_mnist():
    """MNIST, found the way the course finds it: ACADEMY_MNIST_DIR, the cache, or a download.

    Skips (with the reason) only when none of them works; under ``ACADEMY_NO_SKIPS=1`` (what
    ``.ci/run`` sets) any skip fails the run, see :func:`pytest_sessionfinish`.
    """
    reason = mnist_missing()
    if reason:
        pytest.skip(f"no MNIST: {reason}")


def pytest_sessionfinish(session, exitstatus):
    """With ``ACADEMY_NO_SKIPS=1``, a run that skipped any test fails: CI must run everything it lists."""
    if os.environ.get("ACADEMY_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == 0:
        reasons = sorted({str(r.longrepr[-1]) if isinstance(r.longrepr, tuple) else str(r.longrepr) for r in skipped})
        reporter.write_line(f"ACADEMY_NO_SKIPS=1: {len(skipped)} tests were skipped, CI must run them all: {reasons}",
                            red=True)
        session.exitstatus = 1


def machine_load() -> str:
    """What else is using the CPU: the load average and the busiest processes (for timeout messages,
    so that a timeout on a busy machine reads as a timeout and not as a wrong result)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        ps = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True,
                            timeout=10).stdout.splitlines()[:6]
    except (OSError, subprocess.SubprocessError):
        ps = ["(ps unavailable)"]
    top = "\n    ".join(line[:160] for line in ps)
    return f"load average {load} on {os.cpu_count()} CPUs; busiest processes:\n    {top}"
