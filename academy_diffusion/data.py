"""MNIST as tensors on the device: images in [-1, 1], shape [N, 1, 28, 28], labels [N].

Where the files come from, in order:

1. ``ACADEMY_MNIST_DIR``: an offline copy of the four canonical IDX files, gzipped or plain,
   either directly in that folder or in ``MNIST/raw/`` below it. They are decompressed into
   a writable cache and their content is checked against the canonical MD5 sums.
2. Otherwise torchvision's download (needs internet), into the same cache.

The cache is ``ACADEMY_CACHE_DIR`` if set, else ``~/.cache/academy-diffusion``.
The whole of MNIST (60,000 + 10,000 images, 220 MB as float32) fits in GPU memory, so
training reads batches straight from the device with no DataLoader.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import torch

MNIST_ENV = "ACADEMY_MNIST_DIR"
CACHE_ENV = "ACADEMY_CACHE_DIR"

# MD5 of the *decompressed* canonical files (the .gz wrappers may differ between mirrors).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class MNISTNotFoundError(RuntimeError):
    """Raised when MNIST can be neither found offline nor downloaded, or a copy of it is broken."""


WHAT_MNIST_DIR_HOLDS = (
    f"Set {MNIST_ENV} to a folder holding the four canonical MNIST IDX files train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (plain or .gz, directly in "
    "that folder or in MNIST/raw/ below it)"
)


def cache_dir() -> Path:
    """The writable folder for decompressed data and cached checkpoints."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "academy-diffusion")


def writable_dir(folder: Path) -> Path:
    """Create ``folder`` if needed and check that files can be written in it.

    Raises :class:`PermissionError` naming ``ACADEMY_CACHE_DIR`` when it cannot be used.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise PermissionError(
            f"cannot write to the cache folder {folder} ({type(err).__name__}: {err.strerror or err}). "
            f"Point {CACHE_ENV} at a writable folder, e.g. {CACHE_ENV}=/tmp/academy-diffusion"
        ) from err
    return folder


def file_digest(path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (``"md5"`` for MNIST's published sums, ``"sha256"`` for checkpoints)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_source(folder: Path, name: str) -> Path | None:
    """The plain or gzipped copy of ``name`` in ``folder`` or ``folder/MNIST/raw``, if any."""
    for base in (folder, folder / "MNIST" / "raw", folder / "raw"):
        for candidate in (base / name, base / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _check_source_folder(source: Path) -> None:
    """Raise :class:`MNISTNotFoundError` unless ``source`` is a folder this process can list."""
    if not source.exists():
        raise MNISTNotFoundError(f"{MNIST_ENV}={source} does not exist. {WHAT_MNIST_DIR_HOLDS}.")
    if not source.is_dir():
        raise MNISTNotFoundError(f"{MNIST_ENV}={source} is a file, not a folder. {WHAT_MNIST_DIR_HOLDS}.")
    try:
        os.listdir(source)
    except OSError as err:
        raise MNISTNotFoundError(f"{MNIST_ENV}={source} cannot be read ({err.strerror or err}): give this user "
                                 f"read access to it, or copy it somewhere readable. {WHAT_MNIST_DIR_HOLDS}.") from err


def _copy_verified(src: Path, target: Path, expected_md5: str) -> None:
    """Decompress (or copy) ``src`` to ``target``, only if its content has the canonical MD5.

    The bytes go to a temporary file in the target's folder, renamed into place only once
    verified, so a failure at any point (a corrupt gzip, a truncated file, Ctrl-C) leaves
    nothing at ``target``.
    """
    opener = gzip.open if src.suffix == ".gz" else open
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        try:
            with opener(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
            kind = "gzip file" if src.suffix == ".gz" else "file"
            raise MNISTNotFoundError(
                f"{src} is a corrupt or truncated {kind} ({type(err).__name__}: {err}). Replace it with an intact "
                f"copy of {target.name}{'.gz' if src.suffix == '.gz' else ''} in {MNIST_ENV}={src.parent}. "
                f"{WHAT_MNIST_DIR_HOLDS}."
            ) from err
        actual = file_digest(Path(tmp), "md5")
        if actual != expected_md5:
            raise MNISTNotFoundError(
                f"{src} decompresses to content with MD5 {actual}, expected {expected_md5}: the file is truncated, "
                f"corrupt or not the canonical MNIST {target.name}. Replace it. {WHAT_MNIST_DIR_HOLDS}."
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def install_offline_copy(source: Path | str, root: Path | str) -> Path:
    """Decompress and verify the four MNIST files from ``source`` into ``root/MNIST/raw``.

    Each file is written to a temporary name, checked against :data:`MNIST_MD5`, and only
    then renamed into place, so a failed or interrupted copy leaves nothing half-written.
    Files already in place with the right checksum are kept. Returns ``root``.
    Raises :class:`MNISTNotFoundError` naming the file and what to do for a missing folder or
    file, an unreadable folder, a corrupt or truncated gzip, or the wrong content.
    """
    source, root = Path(source), Path(root)
    _check_source_folder(source)
    missing = [name for name in MNIST_MD5 if _find_source(source, name) is None]
    if missing:
        raise MNISTNotFoundError(f"{MNIST_ENV}={source} does not contain the MNIST IDX files {missing}. "
                                 f"{WHAT_MNIST_DIR_HOLDS}.")
    raw = writable_dir(root / "MNIST" / "raw")
    for name, expected in MNIST_MD5.items():
        target = raw / name
        if target.is_file() and file_digest(target, "md5") == expected:
            continue
        _copy_verified(_find_source(source, name), target, expected)
    return root


@functools.cache
def mnist_root() -> Path:
    """A folder that torchvision's ``MNIST(root)`` can read without downloading.

    Uses ``ACADEMY_MNIST_DIR`` when set, else a verified copy already in the cache, else
    torchvision's download (into a temporary folder, verified and moved into the cache file by
    file, so an interrupted download leaves nothing behind). Raises :class:`MNISTNotFoundError`
    with instructions.
    """
    root = cache_dir() / "data"
    offline = os.environ.get(MNIST_ENV)
    if offline:
        return install_offline_copy(offline, root)
    raw = root / "MNIST" / "raw"
    if all((raw / name).is_file() for name in MNIST_MD5):  # only verified files are ever moved here
        return root
    from torchvision.datasets import MNIST

    writable_dir(root)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        try:
            for train in (True, False):
                MNIST(tmp, train=train, download=True)
        except Exception as err:  # no network, blocked mirror, ...
            raise MNISTNotFoundError(
                f"Could not download MNIST ({type(err).__name__}: {err}). Offline: {WHAT_MNIST_DIR_HOLDS}. "
                f"Online, check the connection and run again."
            ) from err
        install_offline_copy(Path(tmp) / "MNIST" / "raw", root)
    return root


@functools.lru_cache(maxsize=2)
def _mnist_uint8(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    dataset = MNIST(str(mnist_root()), train=train, download=False)
    return dataset.data, dataset.targets


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> float32 in [-1, 1] (the range the models work in)."""
    return images_uint8.float().div(127.5).sub(1.0)


def to_display_range(images: torch.Tensor) -> torch.Tensor:
    """Model-range images in [-1, 1] -> [0, 1] for plotting (values outside are clipped)."""
    return images.add(1.0).div(2.0).clamp(0.0, 1.0)


def load_mnist(
    split: str = "train",
    device: torch.device | str = "cpu",
    subset: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST as ``(images, labels)`` on ``device``.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        device: where the tensors live; training reads batches from here.
        subset: keep only this many images, the same number of each digit (class-balanced,
            chosen by a seeded permutation), for fast runs. None keeps the whole split.
        seed: seed of the subset's permutation.

    Returns:
        images: float32 ``[N, 1, 28, 28]`` in [-1, 1]; labels: int64 ``[N]`` in 0..9.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images, labels = _mnist_uint8(split == "train")
    if subset is not None:
        images, labels = _balanced_subset(images, labels, subset, seed)
    return to_model_range(images).unsqueeze(1).to(device), labels.long().to(device)


def _balanced_subset(images, labels, n: int, seed: int):
    if not 10 <= n <= len(labels):
        raise ValueError(f"subset must be between 10 and {len(labels)}, got {n}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    per_class = [order[labels[order] == c][: n // 10 + (c < n % 10)] for c in range(10)]
    keep = torch.cat(per_class).sort().values
    return images[keep], labels[keep]


def balanced_labels(n: int, num_classes: int = 10) -> torch.Tensor:
    """``[n]`` labels in order (0, 0, ..., 1, 1, ...), each class ``n // num_classes`` or one more times: what the
    lessons ask a class-conditional model for. When ``n`` is a multiple of ``num_classes``, exactly equal counts."""
    return torch.arange(n) * num_classes // n
