"""A small MNIST classifier: the course's feature extractor for FID and its judge of digits.

Its 128-dimensional penultimate layer is the feature space every FID in the course is
computed in (the role Inception-v3 plays for natural images); its predictions give the class
metrics of conditional samples. The package trains it itself (seeded) and caches it on disk.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import checkpoint_dir, read_checkpoint_file, shipped_sha256
from .data import load_mnist
from .device import autocast
from .progress import progress_bar

FEATURE_DIM = 128


def _block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class MNISTClassifier(nn.Module):
    """conv16 -> pool -> conv32 -> pool -> conv64 -> fc128 (features) -> fc10 (logits).

    Input ``[B, 1, 28, 28]`` in [-1, 1]; ``features`` gives ``[B, 128]``, ``forward`` ``[B, 10]``.
    """

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            _block(1, 16), nn.MaxPool2d(2),  # 14x14
            _block(16, 32), nn.MaxPool2d(2),  # 7x7
            _block(32, 64), nn.Flatten(),
            nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURE_DIM, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(images, labels, epochs: float = 2, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                     progress: bool = True) -> MNISTClassifier:
    """Train a :class:`MNISTClassifier` on ``images [N, 1, 28, 28]``, ``labels [N]`` (on their device).

    AdamW with a one-cycle learning rate; small random shifts (up to 2 pixels) as augmentation.
    """
    device = images.device
    torch.manual_seed(seed)
    model = MNISTClassifier().to(device)
    per_epoch = len(images) // batch_size
    total = max(1, round(epochs * per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    gen = torch.Generator(device=device).manual_seed(seed)
    shift_gen = torch.Generator().manual_seed(seed)
    model.train()
    bar = progress_bar(total, "classifier", progress)
    for step in range(total):
        bar.update()
        if step % per_epoch == 0:
            order = torch.randperm(len(images), device=device, generator=gen)
        idx = order[(step % per_epoch) * batch_size : (step % per_epoch + 1) * batch_size]
        x = _random_shift(images[idx], shift_gen)
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    bar.close()
    return model.eval().requires_grad_(False)


def _random_shift(x: torch.Tensor, cpu_gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift the whole batch by one random offset of up to ``max_shift`` pixels (background -1).

    The offset is drawn on the CPU, so the GPU never has to report back.
    """
    dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=cpu_gen).tolist()
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    h, w = x.shape[-2:]
    return padded[..., max_shift + dy : max_shift + dy + h, max_shift + dx : max_shift + dx + w]


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000) -> float:
    """Fraction of ``images`` that ``model`` labels correctly."""
    correct = sum((predict(model, images[i : i + batch_size]) == labels[i : i + batch_size].to("cpu")).sum()
                  for i in range(0, len(images), batch_size))
    return float(correct) / len(images)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Predicted digit for each image: ``[B, 1, 28, 28]`` -> ``[B]`` on the CPU."""
    device = next(model.parameters()).device
    return model(images.to(device)).argmax(dim=1).cpu()


SHIPPED = Path(__file__).resolve().parent / "pretrained" / "classifier.pt"


def load_classifier(device="cpu", epochs: float = 3, progress: bool = True, verbose: bool = True,
                    shipped: bool = True):
    """The course's classifier, the same feature space for every FID in every profile.

    Loaded from the package's shipped copy (``pretrained/classifier.pt``) when there is one and
    ``shipped`` is True; else from the cache; else trained on all of MNIST once and cached.
    Returns ``(model, meta)``; ``meta`` has the test accuracy, training seconds, epochs and seed.
    """
    path = checkpoint_dir() / f"mnist_classifier_e{epochs:g}.pt"
    if shipped and SHIPPED.exists():
        path = SHIPPED
    model = MNISTClassifier()
    if path.exists():
        payload = read_checkpoint_file(path, sha256=shipped_sha256(path.name) if path == SHIPPED else None,
                                       keys=("state", "meta"))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state"].items()})
        meta = payload["meta"]
    else:
        x, y = load_mnist("train", device=device)
        start = time.perf_counter()
        model = train_classifier(x, y, epochs=epochs, progress=progress)
        seconds = time.perf_counter() - start
        xt, yt = load_mnist("test", device=device)
        meta = {"test_accuracy": accuracy(model, xt, yt), "train_seconds": seconds, "epochs": epochs, "seed": 0,
                "device": str(device)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"state": model.cpu().state_dict(), "meta": meta}, tmp)
        tmp.replace(path)
    model.to(device).eval().requires_grad_(False)
    if verbose:
        print(f"classifier: test accuracy {meta['test_accuracy']:.4f} ({meta['epochs']:g} epochs, "
              f"trained in {meta['train_seconds']:.0f} s on {meta['device']})")
    return model, meta
