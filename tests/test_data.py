import gzip
import os
import shutil

import pytest
import torch

from academy_diffusion import data
from academy_diffusion.data import MNIST_MD5, MNISTNotFoundError, install_offline_copy, load_mnist


def _source_dir():
    return os.environ["ACADEMY_MNIST_DIR"]


def _raw_source():
    """The folder holding the offline IDX files (gzipped or not)."""
    root = _source_dir()
    for base in (root, os.path.join(root, "MNIST", "raw")):
        if any(os.path.exists(os.path.join(base, n + ext)) for n in MNIST_MD5 for ext in ("", ".gz")):
            return base
    raise AssertionError("no MNIST files under ACADEMY_MNIST_DIR")


def test_load_mnist_shapes_and_range(needs_mnist):
    x, y = load_mnist("test")
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10_000,) and y.dtype == torch.long
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert sorted(y.unique().tolist()) == list(range(10))
    xt, _ = load_mnist("train")
    assert len(xt) == 60_000


def test_balanced_subset(needs_mnist):
    x, y = load_mnist("train", subset=105, seed=1)
    assert len(x) == 105
    counts = torch.bincount(y, minlength=10)
    assert counts.max() - counts.min() <= 1
    x2, _ = load_mnist("train", subset=105, seed=1)
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="subset"):
        load_mnist("train", subset=5)
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation")


def test_install_from_gzip_and_plain(needs_mnist, tmp_path):
    src = _raw_source()
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in MNIST_MD5:  # make a plain (decompressed) copy from whatever the source holds
        gz = os.path.join(src, name + ".gz")
        opener = gzip.open if os.path.exists(gz) else open
        with opener(gz if os.path.exists(gz) else os.path.join(src, name), "rb") as fin:
            with open(plain / name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    for source in (src, plain):
        root = install_offline_copy(source, tmp_path / f"cache-{os.path.basename(source)}")
        raw = root / "MNIST" / "raw"
        assert sorted(p.name for p in raw.iterdir()) == sorted(MNIST_MD5)


def test_corrupt_copy_is_rejected_and_leaves_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in MNIST_MD5:
        with gzip.open(src / f"{name}.gz", "wb") as f:
            f.write(b"not mnist")
    with pytest.raises(MNISTNotFoundError, match="MD5"):
        install_offline_copy(src, tmp_path / "cache")
    assert list((tmp_path / "cache" / "MNIST" / "raw").iterdir()) == []


def test_missing_files_name_the_variable(tmp_path):
    with pytest.raises(MNISTNotFoundError, match="ACADEMY_MNIST_DIR"):
        install_offline_copy(tmp_path, tmp_path / "cache")


def test_display_range():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0])
    torch.testing.assert_close(data.to_display_range(x), torch.tensor([0.0, 0.5, 1.0, 1.0]))
    torch.testing.assert_close(data.to_model_range(torch.tensor([0, 255], dtype=torch.uint8)),
                               torch.tensor([-1.0, 1.0]))


@pytest.mark.parametrize("n", [10, 25, 250, 7])
def test_balanced_labels_are_sorted_and_as_even_as_n_allows(n):
    from academy_diffusion.data import balanced_labels

    labels = balanced_labels(n)
    counts = torch.bincount(labels, minlength=10)
    assert len(labels) == n and torch.equal(labels, labels.sort().values)
    assert counts.max() - counts.min() <= 1 and labels.max() < 10
    if n % 10 == 0:
        assert torch.equal(labels, torch.arange(10).repeat_interleave(n // 10))
