"""Saving and loading trained models together with the schedule that trained them.

A checkpoint is one ``torch.save`` file holding the model configuration, the schedule's
configuration, the raw and the EMA weights, and free-form metadata (losses, timings, ...).
Loading gives back the EMA model with its ``schedule_config`` set, so that
:func:`academy_diffusion.samplers.sample` refuses a different schedule unless told otherwise.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .data import cache_dir
from .models import build_model
from .samplers import check_schedule
from .schedules import Schedule, make_schedule


@dataclass
class Checkpoint:
    """A loaded checkpoint: the EMA ``model`` (eval mode), its ``schedule`` and ``meta``."""

    model: nn.Module
    schedule: Schedule
    meta: dict = field(default_factory=dict)


def checkpoint_dir() -> Path:
    """Where the lessons cache the models they train (``<cache>/checkpoints``)."""
    return cache_dir() / "checkpoints"


def save_checkpoint(path, model: nn.Module, ema: nn.Module | None, schedule: Schedule,
                    meta: dict | None = None) -> Path:
    """Write a checkpoint atomically (a temporary file renamed into place). Returns the path.

    With ``ema=None``, ``model`` is taken to be the weights to sample with and only they are
    stored (the shipped checkpoints do this, to stay small).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model_config": model.config,
        "schedule": schedule.config(),
        "ema": (ema or model).state_dict(),
        "meta": meta or {},
    }
    if ema is not None:
        payload["model"] = model.state_dict()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path, device="cpu", schedule: Schedule | None = None, allow_schedule_mismatch=False,
                    weights: str = "ema") -> Checkpoint:
    """Load a checkpoint onto ``device``.

    Args:
        schedule: the schedule you intend to sample with; if it is not the one the model was
            trained with, :class:`~academy_diffusion.samplers.ScheduleMismatchError` is raised
            unless ``allow_schedule_mismatch`` is True.
        weights: ``"ema"`` (default, what to sample with) or ``"raw"`` (the last step's weights).
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if weights not in ("ema", "raw") or (weights == "raw" and "model" not in payload):
        held = [k for k in ("ema", "model") if k in payload]
        raise ValueError(f"{path} has no {weights!r} weights (it holds {held})")
    model = build_model(payload["model_config"])
    model.load_state_dict(payload["ema" if weights == "ema" else "model"])
    model.to(device).eval().requires_grad_(False)
    trained = payload["schedule"]
    model.schedule_config = trained
    if schedule is not None:
        check_schedule(model, schedule, allow_schedule_mismatch)
    else:
        schedule = make_schedule(trained["name"], trained["T"])
    return Checkpoint(model, schedule.to(device), payload["meta"])
