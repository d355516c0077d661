"""Saving and loading trained models together with the schedule that trained them.

A checkpoint is one ``torch.save`` file holding the model configuration, the schedule's
configuration, the raw and the EMA weights, and free-form metadata (losses, timings, ...).
Loading gives back the EMA model with its ``schedule_config`` set, so that
:func:`academy_diffusion.samplers.sample` refuses a different schedule unless told otherwise.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .data import cache_dir, file_digest, writable_dir
from .flow_matching import FlowPath
from .latent import Autoencoder
from .models import build_model
from .schedules import Schedule, check_schedule, make_schedule

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"  # the shipped checkpoints and manifest.json


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: empty, truncated, corrupt, or not a checkpoint."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the EMA ``model`` (eval mode), its ``schedule`` (a flow-matching model's
    :class:`~academy_diffusion.flow_matching.FlowPath`) and ``meta``."""

    model: nn.Module
    schedule: Schedule | FlowPath
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
    payload = {
        "model_config": model.config,
        "schedule": schedule.config(),
        "ema": (ema or model).state_dict(),
        "meta": meta or {},
    }
    if ema is not None:
        payload["model"] = model.state_dict()
    return atomic_save(payload, path)


def atomic_save(payload: dict, path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place: a reader never sees
    half a file, and an interrupted save leaves the old file (or none), not a truncated one."""
    path = Path(path)
    writable_dir(path.parent)
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
                    weights: str = "ema", sha256: str | None = None) -> Checkpoint:
    """Load a checkpoint onto ``device``.

    Args:
        schedule: the schedule you intend to sample with; if it is not the one the model was
            trained with, :class:`~academy_diffusion.schedules.ScheduleMismatchError` is raised
            unless ``allow_schedule_mismatch`` is True.
        weights: ``"ema"`` (default, what to sample with) or ``"raw"`` (the last step's weights).
        sha256: the file's expected SHA-256 (the shipped checkpoints' is in the manifest).
    Raises :class:`CheckpointError` naming the path and what to do when the file is empty,
    truncated, corrupt (or fails its SHA-256), or not one of the course's checkpoints.
    """
    payload = read_checkpoint_file(path, sha256=sha256)
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
        schedule = FlowPath() if trained["name"] == FlowPath.name else make_schedule(trained["name"], trained["T"])
    return Checkpoint(model, schedule.to(device), payload["meta"])


def _what_to_do(path: Path) -> str:
    if path.resolve().parent == PRETRAINED_DIR:
        return ("It is one of the course's shipped checkpoints: restore it with `git checkout -- "
                f"academy_diffusion/pretrained/{path.name}` (or reinstall the package), or retrain it with "
                "`make pretrain`.")
    return "Delete it and run the lesson again: the model is retrained and cached anew."


def file_sha256(path) -> str:
    """SHA-256 of a file, hex."""
    return file_digest(path, "sha256")


def shipped_sha256(name: str) -> str | None:
    """The SHA-256 that ``pretrained/manifest.json`` records for the shipped file ``name`` (or None)."""
    manifest = PRETRAINED_DIR / "manifest.json"
    if not manifest.exists():
        return None
    for entry in json.loads(manifest.read_text()).values():
        if entry.get("file") == name:
            return entry.get("sha256")
        if name in entry.get("files", {}):  # an entry that ships several files: {"files": {name: sha256}}
            return entry["files"][name]
    return None


def read_checkpoint_file(path, sha256: str | None = None, keys=("ema", "model_config", "schedule")) -> dict:
    """``torch.load`` a checkpoint file safely (weights only), with errors that say what to do.

    Checks the SHA-256 first when one is given, then that the file unpickles and holds ``keys``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted copy or save. {_what_to_do(path)}")
    if sha256 is not None and file_sha256(path) != sha256:
        raise CheckpointError(f"{path} does not match the SHA-256 recorded in the manifest: the file is corrupt or "
                              f"was changed. {_what_to_do(path)}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(f"{path} cannot be read as a PyTorch checkpoint, it is truncated or corrupt "
                              f"({type(err).__name__}: {str(err)[:200]}). {_what_to_do(path)}") from err
    if not isinstance(payload, dict) or any(k not in payload for k in keys):
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is a PyTorch file but not one of this course's checkpoints (it holds "
                              f"{found}, expected {list(keys)}). {_what_to_do(path)}")
    return payload


# --- lesson 10's autoencoder ----------------------------------------------------------------------

def save_autoencoder(path, autoencoder: Autoencoder, scale: float, meta: dict | None = None):
    """Write the autoencoder (float32 weights), its latent ``scale`` and ``meta`` atomically. Returns the path."""
    payload = {"config": autoencoder.config, "state": autoencoder.state_dict(), "scale": scale, "meta": meta or {}}
    return atomic_save(payload, path)


def load_autoencoder(path, device="cpu", sha256: str | None = None) -> tuple[Autoencoder, float, dict]:
    """Load an autoencoder saved by :func:`save_autoencoder`: ``(autoencoder, scale, meta)``, frozen, eval mode."""
    payload = read_checkpoint_file(path, sha256=sha256, keys=("config", "state", "scale"))
    autoencoder = Autoencoder(tuple(payload["config"]["channels"]), payload["config"]["latent_channels"])
    autoencoder.load_state_dict(payload["state"])
    return autoencoder.to(device).eval().requires_grad_(False), float(payload["scale"]), payload.get("meta", {})
