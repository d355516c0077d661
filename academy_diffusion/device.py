"""Where the course runs: device choice, mixed precision and seeding.

Everything in the package asks this module which device to use, so a lesson
runs unchanged on a CUDA GPU (Colab's T4, an H100), an Apple GPU (MPS) or a CPU.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

DEVICE_ENV = "ACADEMY_DEVICE"  # force a device, e.g. ACADEMY_DEVICE=cpu


def get_device(verbose: bool = False) -> torch.device:
    """Pick the fastest available device: CUDA, then MPS, then CPU.

    Set the environment variable ``ACADEMY_DEVICE`` (``cpu``, ``cuda``, ``mps``)
    to override the choice.
    """
    forced = os.environ.get(DEVICE_ENV)
    if forced:
        device = torch.device(forced)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose:
        print(f"device: {describe_device(device)}")
    return device


def describe_device(device: torch.device | str) -> str:
    """A human-readable name for ``device``, e.g. ``cuda (NVIDIA H100 80GB HBM3)``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The reduced-precision dtype to autocast to on ``device``, or None for fp32.

    bf16 only on CUDA GPUs of compute capability 8.0 or newer (A100, H100, RTX 30xx+),
    where bf16 convolutions are fast. A T4 (7.5), MPS and the CPU stay in fp32.
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.bfloat16
    return None


def autocast(device: torch.device | str):
    """A context manager that runs the model in :func:`autocast_dtype` (or does nothing)."""
    device = torch.device(device)
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so that a run repeats on the same machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work to finish (for honest wall-clock timings); no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
