"""Run profiles: how big a run the lessons do, chosen by one environment variable.

``ACADEMY_PROFILE=full`` trains every model from scratch at full size (what a GPU runs: 20
epochs on all 60,000 images). ``ACADEMY_PROFILE=quick`` is bounded for a laptop CPU and for CI:
it loads the course's shipped checkpoints (``academy_diffusion/pretrained/``, trained by
``python -m academy_diffusion.course.pretrain``), still runs a short real training demonstration, and
draws fewer samples. ``ACADEMY_PROFILE=smoke`` is for CI only: the ``full`` profile's code path
(every lesson trains its own models, nothing shipped is loaded) at tiny sizes, so a lesson that
breaks only when it trains its own models fails a test; its models are too small to bear out the
lessons' teaching claims, so :func:`academy_diffusion.course.reporting.claim` reports them instead of
asserting. Unset: ``full`` on a CUDA GPU, ``quick`` elsewhere. All profiles run the same
functions; they differ in sizes and counts, and in whether models are trained or loaded.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

PROFILE_ENV = "ACADEMY_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Sizes and counts for one profile (every lesson reads its numbers from here)."""

    name: str
    channels: tuple  # U-Net widths at 28, 14 and 7 pixels
    train_images: int | None  # None = all 60,000
    epochs: float
    batch_size: int
    lr: float
    fid_samples: int  # n for every FID in the lessons
    ddim_steps: int  # the "fast" sampler's step count (DDIM-20)
    compare_samples: int  # images in lesson 3's same-seed DDPM/DDIM comparison
    sweep_samples: int  # samples per guidance scale w in lessons 4 and 5
    fast_samples: int  # samples per sampler in lesson 7's quality-against-NFE curve (DDPM-1000: full only)
    pretrained: bool  # load the shipped checkpoints instead of training
    demo_steps: int  # length of lesson 1's training demonstration when pretrained (0: none)
    checks_claims: bool = True  # False only for smoke: claims are reported, not asserted
    autoencoder_channels: tuple = (16, 32)  # lesson 10's VAE: widths at 28x28 and at 14x14 / 7x7
    autoencoder_epochs: float = 10
    race_seconds: float = 120  # lesson 10: training seconds each for pixel and latent models from scratch
    distill_train_steps: int = 2000  # lesson 11: optimiser steps of each distillation round (batch 64)

    def describe(self) -> str:
        """The profile's numbers that apply to this run (a loaded model prints its own recipe)."""
        skip = {"name", "checks_claims"}
        if self.pretrained:  # the training sizes do not apply: the lessons load shipped models
            skip |= {"channels", "train_images", "epochs", "batch_size", "lr", "autoencoder_channels",
                     "autoencoder_epochs", "distill_train_steps"}
        shown = ", ".join(f"{k}={v}" for k, v in asdict(self).items() if k not in skip)
        source = ("models: the shipped checkpoints (each prints its own recipe when it loads)" if self.pretrained
                  else "models: trained here with the sizes below (or loaded from the cache if trained before)")
        return f"{source}\n  {shown}"


PROFILES = {
    "full": Profile("full", (32, 64, 128), None, 20, 128, 2e-3, 10_000, 20, 1000, 10_000, 10_000, False, 0),
    "quick": Profile("quick", (16, 32, 64), 12_000, 3, 64, 2e-3, 1000, 20, 64, 500, 300, True, 300,
                     race_seconds=8),
    "smoke": Profile("smoke", (8, 16, 16), 1_000, 1, 50, 2e-3, 100, 5, 8, 50, 20, False, 0, checks_claims=False,
                     autoencoder_channels=(8, 8), autoencoder_epochs=1, race_seconds=1,
                     distill_train_steps=5),
}


def get_profile(name: str | None = None, verbose: bool = False) -> Profile:
    """The profile named ``name``, else ``$ACADEMY_PROFILE``, else full on CUDA and quick elsewhere."""
    name = name or os.environ.get(PROFILE_ENV) or ("full" if torch.cuda.is_available() else "quick")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (from {PROFILE_ENV}); choose one of {sorted(PROFILES)}")
    profile = PROFILES[name]
    if verbose:
        print(f"profile: {profile.describe()}")
    return profile
