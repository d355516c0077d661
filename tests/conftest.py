"""Shared fixtures. Tests run on the CPU with small sizes; MNIST comes from ACADEMY_MNIST_DIR."""

import os
import subprocess

import pytest
import torch

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
    if not os.environ.get("ACADEMY_MNIST_DIR") and not os.environ.get("ACADEMY_ALLOW_DOWNLOAD"):
        pytest.skip("set ACADEMY_MNIST_DIR to an offline MNIST copy (the README's test command does)")


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
