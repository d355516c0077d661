"""Broken files and interrupted runs: clear errors that name the file and what to do, nothing
half-written left behind, and a Frechet distance that is right at any scale."""

import gzip
import os
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch

from academy_diffusion import checkpoints, data
from academy_diffusion.checkpoints import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from academy_diffusion.course import lessons as course
from academy_diffusion.course.profiles import Profile
from academy_diffusion.data import MNIST_MD5, MNISTNotFoundError, install_offline_copy
from academy_diffusion.metrics import frechet_distance
from academy_diffusion.schedules import make_schedule

FIRST = next(iter(MNIST_MD5))  # the file install_offline_copy reads first


# --- the offline MNIST copy ----------------------------------------------------------------------

def _fake_source(folder, first_bytes: bytes | None = None):
    """Four gzipped stand-ins for the MNIST files; the first one's gzip bytes replaced by ``first_bytes``."""
    folder.mkdir()
    payload = np.random.default_rng(0).integers(0, 256, 1 << 18, dtype=np.uint8).tobytes()
    for name in MNIST_MD5:
        with gzip.open(folder / f"{name}.gz", "wb") as f:
            f.write(payload)
    if first_bytes is not None:
        (folder / f"{FIRST}.gz").write_bytes(first_bytes)
    return folder


def _gz_bytes(folder):
    return (folder / f"{FIRST}.gz").read_bytes()


def _raw_files(cache):
    raw = cache / "MNIST" / "raw"
    return sorted(p.name for p in raw.iterdir()) if raw.exists() else []


def _corruptions(tmp_path):
    good = _gz_bytes(_fake_source(tmp_path / "good"))
    flipped = bytearray(good)
    for i in range(len(good) // 2, len(good) // 2 + 64):
        flipped[i] ^= 0xFF
    bad_crc = bytearray(good)
    bad_crc[-8] ^= 0xFF  # the CRC32 field of the gzip trailer
    return {"truncated gzip": good[: len(good) // 2], "flipped bytes": bytes(flipped), "bad CRC": bytes(bad_crc),
            "not a gzip": b"<html>404 Not Found</html>"}


@pytest.mark.parametrize("case", ["truncated gzip", "flipped bytes", "bad CRC", "not a gzip"])
def test_corrupt_gzip_names_the_file_and_the_variable(tmp_path, case):
    src = _fake_source(tmp_path / "src", _corruptions(tmp_path)[case])
    cache = tmp_path / "cache"
    with pytest.raises(MNISTNotFoundError) as err:
        install_offline_copy(src, cache)
    message = str(err.value)
    assert f"{FIRST}.gz" in message and "ACADEMY_MNIST_DIR" in message, message
    assert "corrupt or truncated" in message and "train-labels-idx1-ubyte" in message, message  # what it must hold
    assert _raw_files(cache) == [], "nothing half-written in the cache"


def test_wrong_content_names_the_file_and_leaves_the_cache_clean(tmp_path):
    src = _fake_source(tmp_path / "src")  # well-formed gzips of the wrong bytes
    cache = tmp_path / "cache"
    with pytest.raises(MNISTNotFoundError, match="MD5") as err:
        install_offline_copy(src, cache)
    assert f"{FIRST}.gz" in str(err.value) and "ACADEMY_MNIST_DIR" in str(err.value)
    assert _raw_files(cache) == []


def test_truncated_plain_file_is_caught_by_its_checksum(tmp_path):
    src = tmp_path / "plain"
    src.mkdir()
    for name in MNIST_MD5:
        (src / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 100)  # an IDX header, then cut short
    with pytest.raises(MNISTNotFoundError, match="truncated, corrupt or not the canonical"):
        install_offline_copy(src, tmp_path / "cache")
    assert _raw_files(tmp_path / "cache") == []


def test_missing_folder_file_or_unreadable_folder(tmp_path, monkeypatch):
    with pytest.raises(MNISTNotFoundError, match="does not exist.*ACADEMY_MNIST_DIR"):
        install_offline_copy(tmp_path / "nowhere", tmp_path / "cache")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(MNISTNotFoundError, match="is a file, not a folder"):
        install_offline_copy(tmp_path / "a-file", tmp_path / "cache")
    src = _fake_source(tmp_path / "src")
    os.remove(src / f"{FIRST}.gz")
    with pytest.raises(MNISTNotFoundError, match=f"does not contain.*{FIRST}"):
        install_offline_copy(src, tmp_path / "cache")

    def denied(path):  # root can read any folder, so the permission error is simulated
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data.os, "listdir", denied)
    with pytest.raises(MNISTNotFoundError, match="cannot be read .*Permission denied.*read access"):
        install_offline_copy(src, tmp_path / "cache")
    assert _raw_files(tmp_path / "cache") == []


def test_interrupted_copy_leaves_nothing(tmp_path, monkeypatch):
    src = _fake_source(tmp_path / "src")

    def interrupted(fin, fout):
        fout.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(data.shutil, "copyfileobj", interrupted)
    with pytest.raises(KeyboardInterrupt):
        install_offline_copy(src, tmp_path / "cache")
    assert _raw_files(tmp_path / "cache") == [] and not any((tmp_path / "cache").rglob(".*"))


def test_unwritable_cache_names_the_variable(tmp_path):
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    src = _fake_source(tmp_path / "src")
    with pytest.raises(PermissionError, match="ACADEMY_CACHE_DIR"):
        install_offline_copy(src, tmp_path / "blocker" / "cache")
    model = torch.nn.Linear(1, 1)
    model.config = {}
    with pytest.raises(PermissionError, match="ACADEMY_CACHE_DIR"):
        save_checkpoint(tmp_path / "blocker" / "m.pt", model, None, make_schedule("linear", 10))


@pytest.mark.parametrize("broken", ["no network", "half a file, then the connection drops"])
def test_failed_download_names_the_variable_and_leaves_the_cache_empty(tmp_path, monkeypatch, broken):
    """No offline copy and an empty cache: torchvision's download goes to a temporary folder, so a failed
    one leaves nothing in the cache, and the error says how to work offline."""
    import torchvision.datasets

    class BrokenDownload(torchvision.datasets.MNIST):
        def download(self):
            if broken == "no network":
                raise OSError("network is unreachable")
            os.makedirs(self.raw_folder, exist_ok=True)
            with open(os.path.join(self.raw_folder, FIRST), "wb") as f:
                f.write(b"half a file")
            raise ConnectionResetError("connection reset by peer")

    monkeypatch.delenv("ACADEMY_MNIST_DIR", raising=False)
    monkeypatch.setenv("ACADEMY_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "MNIST", BrokenDownload)
    data.mnist_root.cache_clear()
    try:
        with pytest.raises(MNISTNotFoundError, match="Could not download MNIST.*ACADEMY_MNIST_DIR"):
            data.mnist_root()
    finally:
        data.mnist_root.cache_clear()
    assert [p for p in (tmp_path / "data").rglob("*")] == []


# --- checkpoints ---------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path, tiny_model):
    schedule = make_schedule("linear", 100)
    return save_checkpoint(tmp_path / "cache" / "m.pt", tiny_model, None, schedule, {"recipe": 1})


def test_empty_truncated_and_foreign_checkpoints(saved, tmp_path):
    good = saved.read_bytes()
    cases = {"empty": (b"", "is empty"), "truncated": (good[: len(good) // 2], "truncated or corrupt")}
    for name, (content, words) in cases.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=words) as err:
            load_checkpoint(path)
        assert str(path) in str(err.value) and "Delete it and run the lesson again" in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)  # a state_dict, not a course checkpoint
    with pytest.raises(CheckpointError, match="not one of this course's checkpoints.*weight"):
        load_checkpoint(foreign)


def test_flipped_bytes_fail_the_sha256(saved):
    expected = file_sha256(saved)
    assert load_checkpoint(saved, sha256=expected).meta == {"recipe": 1}
    content = bytearray(saved.read_bytes())
    content[len(content) // 2] ^= 0x01  # same size, one bit changed
    saved.write_bytes(bytes(content))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(saved, sha256=expected)


def test_shipped_checkpoints_are_verified_and_say_make_pretrain(tmp_path, monkeypatch):
    """A shipped file with flipped bytes is refused on load, with the shipped-file advice."""
    fake = tmp_path / "pretrained"
    shutil.copytree(checkpoints.PRETRAINED_DIR, fake)
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", fake)
    monkeypatch.setattr(course, "PRETRAINED_DIR", fake)
    assert course.pretrained_model("cfg", "cpu") is not None
    path = fake / "cfg.pt"
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))
    if checkpoints.shipped_sha256("cfg.pt") is None:
        pytest.fail("the manifest must record the SHA-256 of every shipped checkpoint")
    with pytest.raises(CheckpointError, match="SHA-256.*make pretrain"):
        course.pretrained_model("cfg", "cpu")


def test_interrupted_training_leaves_no_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C mid-epoch: nothing in the cache; running again trains and caches the model."""
    monkeypatch.setenv("ACADEMY_CACHE_DIR", str(tmp_path))
    images = torch.rand(64, 1, 28, 28) * 2 - 1
    monkeypatch.setattr(course, "load_mnist", lambda *a, **k: (images, torch.zeros(64, dtype=torch.long)))
    profile = Profile("tiny", (8, 16, 16), 64, 1, 16, 1e-3, 10, 2, 4, 4, 4, False, 0)
    real_train = course.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(course, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        course.course_model("linear", profile, "cpu", progress=False)
    assert list(tmp_path.rglob("*.pt")) == [] and list(tmp_path.rglob(".*.pt.*")) == []
    monkeypatch.setattr(course, "train", real_train)
    ckpt = course.course_model("linear", profile, "cpu", progress=False)
    assert [p.name for p in tmp_path.rglob("*.pt")] == ["linear-tiny-seed0.pt"] and ckpt.meta["steps"] == 4


def test_a_reader_never_sees_a_half_written_checkpoint(saved, tiny_model, monkeypatch):
    """While a second kernel writes the same checkpoint, the first still reads the old, whole file."""
    real_save = torch.save
    seen = {}

    def slow_save(obj, f):
        real_save(obj, f)
        seen["during"] = load_checkpoint(saved).meta  # another kernel loading mid-write
        seen["tmp_is_target"] = os.path.abspath(f) == os.path.abspath(saved)

    monkeypatch.setattr(checkpoints.torch, "save", slow_save)
    save_checkpoint(saved, tiny_model, None, make_schedule("linear", 100), {"recipe": 2})
    assert seen == {"during": {"recipe": 1}, "tmp_is_target": False}
    assert load_checkpoint(saved).meta == {"recipe": 2}
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m.pt"]


# --- the Frechet distance at any scale ------------------------------------------------------------

def _scipy_fd(mu1, s1, mu2, s2):
    """The textbook formula with scipy's general matrix square root (its real part)."""
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))


@pytest.mark.parametrize("scale", [1e-3, 1e-1, 1.0, 1e1, 1e3])
@pytest.mark.parametrize("rank", [64, 30])
def test_frechet_distance_at_any_scale(scale, rank):
    rng = np.random.default_rng(rank)
    f1 = rng.standard_normal((rank + 1, 64)) @ rng.standard_normal((64, 64)) * 0.3
    f2 = rng.standard_normal((rank + 1, 64)) * 0.5 + 0.2
    mu1, s1 = f1.mean(0), np.cov(f1, rowvar=False)
    mu2, s2 = f2.mean(0), np.cov(f2, rowvar=False)
    base = frechet_distance(mu1, s1, mu2, s2)
    scaled = frechet_distance(mu1 * scale, s1 * scale**2, mu2 * scale, s2 * scale**2)
    assert scaled == pytest.approx(base * scale**2, rel=1e-6), "d^2 scales with the square of the features"
    assert scaled == pytest.approx(_scipy_fd(mu1 * scale, s1 * scale**2, mu2 * scale, s2 * scale**2), rel=1e-4)


def test_frechet_distance_of_the_reported_large_scale_case():
    """30 rank-deficient 64-d features scaled by 1000: once refused (imaginary part 0.314), now exact."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((30, 64)) * 1000, rng.standard_normal((30, 64)) * 1000 + 500
    value = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert value == pytest.approx(_scipy_fd(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                            np.cov(b, rowvar=False)), rel=1e-4)
    # closed form for commuting covariances: diagonal ones, sqrt of the product is elementwise
    d1, d2 = rng.uniform(0, 1e6, 64), rng.uniform(0, 1e6, 64)
    d1[:20] = 0  # rank-deficient
    exact = np.sum(d1 + d2 - 2 * np.sqrt(d1 * d2))
    assert frechet_distance(np.zeros(64), np.diag(d1), np.zeros(64), np.diag(d2)) == pytest.approx(exact, rel=1e-9)
