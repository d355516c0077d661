"""Where the course runs: device choice, mixed precision, seeding and honest timing.

Everything in the package asks this module which device to use, so a lesson
runs unchanged on a CUDA GPU (Colab's T4, an H100), an Apple GPU (MPS) or a CPU.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import time

import numpy as np
import torch

DEVICE_ENV = "ACADEMY_DEVICE"  # force a device, e.g. ACADEMY_DEVICE=cpu
PRECISION_ENV = "ACADEMY_PRECISION"  # ACADEMY_PRECISION=fp32 turns bf16 autocast off everywhere
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 CPU features that compute bf16 natively


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


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them in /proc/cpuinfo (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where bf16 autocast is faster."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in CPU_BF16_FLAGS)


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The reduced-precision dtype to autocast to on ``device``, or None for fp32.

    bf16 where the hardware computes it natively:

    * CUDA GPUs of compute capability 8.0 or newer (A100, H100, RTX 30xx+);
    * CPUs with AVX512-BF16 or AMX (recent Xeon and EPYC): on the CI machine's CPU, 1 thread,
      the quick U-Net trained 1.7x faster than in fp32 (436 against 253 img/s).

    A T4 (7.5), MPS and other CPUs stay in fp32, and ``ACADEMY_PRECISION=fp32`` forces fp32.
    """
    device = torch.device(device)
    if os.environ.get(PRECISION_ENV, "").lower() in ("fp32", "float32", "32"):
        return None
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def describe_precision(device: torch.device | str) -> str:
    """``"bf16 autocast"`` or ``"fp32"``: what the model runs in on ``device`` (lessons print it)."""
    return "bf16 autocast" if autocast_dtype(device) == torch.bfloat16 else "fp32"


# Images per forward pass that sample fastest on each device type, measured with the course's U-Net
# (python -m academy_diffusion.course.bench prints the table). On a CPU, large batches fall out of the caches:
# on 1 thread, batch 64 gave 611 img/s in fp32 (735 in bf16) where batch 512 gave 323 (495). A GPU
# wants big batches.
FORWARD_BATCH = {"cuda": 4096, "mps": 512, "cpu": 64}


def sample_batch_size(device: torch.device | str, guided: bool = False) -> int:
    """How many images to sample at once on ``device``: :data:`FORWARD_BATCH` per forward pass,
    halved under guidance (whose forward pass holds the conditional and the unconditional half)."""
    per_pass = FORWARD_BATCH.get(torch.device(device).type, 64)
    return max(1, per_pass // 2) if guided else per_pass


@contextlib.contextmanager
def precision(name: str):
    """Temporarily force ``"fp32"`` (or ``"auto"``: bf16 where native), e.g. to compare the two."""
    old = os.environ.get(PRECISION_ENV)
    os.environ[PRECISION_ENV] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(PRECISION_ENV, None)
        else:
            os.environ[PRECISION_ENV] = old


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


def median_interleaved(runs: dict, rounds: int = 3) -> dict:
    """Median of each callable's result in ``runs`` (name -> fn), the callables run in alternation.

    Alternating A, B, A, B, ... puts every contestant under the same load (another process, a
    warming CPU), so their ratio is honest even where the absolute numbers are not.
    """
    results = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            results[name].append(fn())
    return {name: statistics.median(r) for name, r in results.items()}  # of two rounds: their mean


def time_interleaved(runs: dict, rounds: int = 3, device="cpu") -> dict:
    """Median wall-clock seconds of each callable in ``runs`` (name -> fn), timed in alternation
    (:func:`median_interleaved`)."""
    def timed(fn):
        def run():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            return time.perf_counter() - start
        return run

    return median_interleaved({name: timed(fn) for name, fn in runs.items()}, rounds)
