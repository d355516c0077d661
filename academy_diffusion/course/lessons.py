"""What the lessons share: their setup, the models they train or load, and the samples they reuse.

* :func:`setup_lesson` is the first call of every lesson: device, run profile, seed.
* :func:`course_model` trains one of the course's models (or loads it from the cache, so that
  lesson 3 reuses lesson 1's model and lesson 5 lesson 4's, while each lesson still runs alone);
  :func:`course_autoencoder` does the same for lesson 10's autoencoder, whose codes the ``latent``
  model is trained on, and :func:`course_students` for lesson 11's students distilled from ``cfg``.
* :func:`cached_sample` is :func:`~academy_diffusion.samplers.sample` stored on disk, so that
  lessons 5 and 8 reuse the guidance sweep lesson 4 drew (same model, x_T, labels and settings;
  lesson 8 also lesson 5's w = 2), and lesson 6 the linear model's samples lesson 2 drew.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from ..checkpoints import (
    PRETRAINED_DIR,
    Checkpoint,
    checkpoint_dir,
    load_autoencoder,
    load_checkpoint,
    save_autoencoder,
    save_checkpoint,
    shipped_sha256,
)
from ..data import cache_dir, load_mnist, writable_dir
from ..device import describe_device, describe_precision, get_device, seed_everything, time_interleaved
from ..distillation import VPrediction, distill
from ..flow_matching import FlowPath
from ..latent import Autoencoder, encode_all, train_autoencoder
from ..models import UNet, count_parameters
from ..samplers import GUIDANCE_W, SampleResult, sample
from ..schedules import make_schedule
from ..training import P_UNCOND, TrainResult, train
from . import reporting
from .profiles import Profile, get_profile

# The models the lessons train. Everything else (sizes, epochs) comes from the run profile.
COURSE_MODELS = {
    "linear": {"schedule": "linear", "num_classes": None, "dead_time_embedding": False},  # lessons 1, 3, 6
    "cosine": {"schedule": "cosine", "num_classes": None, "dead_time_embedding": False},  # lesson 2
    "cfg": {"schedule": "linear", "num_classes": 10, "dead_time_embedding": False},  # lessons 4, 5
    "dead": {"schedule": "linear", "num_classes": None, "dead_time_embedding": True},  # lesson 6
    "flow": {"schedule": "flow", "num_classes": None, "dead_time_embedding": False},  # lesson 9
    "flow_cfg": {"schedule": "flow", "num_classes": 10, "dead_time_embedding": False},  # lesson 9
    # lesson 10: the same U-Net and schedule on the 4x7x7 codes of the course's autoencoder
    "latent": {"schedule": "linear", "num_classes": None, "dead_time_embedding": False, "space": "latent"},
}
AUTOENCODER = "autoencoder"  # the shipped autoencoder's name (autoencoder.pt, the manifest's key)
DISTILLED = "distilled"  # lesson 11's students: distilled-{steps}.pt, the manifest's key
DISTILL_START = 16  # the first progressive round distills the guided student's 16 steps into 8
STUDENT_STEPS = (4, 2, 1)  # the students lesson 11 samples (and the course ships)


def pretrained_model(kind: str, device) -> Checkpoint | None:
    """The shipped checkpoint of course model ``kind`` (None if it is not there)."""
    path = PRETRAINED_DIR / f"{kind}.pt"
    if not path.exists():
        return None
    ckpt = load_checkpoint(path, device, sha256=shipped_sha256(path.name))
    recipe = ckpt.meta["recipe"]
    if any(recipe.get(key) != value for key, value in COURSE_MODELS[kind].items()):
        raise ValueError(f"{path} was trained with {recipe}, which is not the course's '{kind}' model")
    print(f"loaded the shipped '{kind}' model ({ckpt.meta['steps']} steps, {recipe['epochs']:.2f} epochs of "
          f"{recipe['train_images'] or 60_000:,} images, trained in {ckpt.meta['seconds']:.0f} s "
          f"on {ckpt.meta['device']})")
    return ckpt


def enable_colab_widgets() -> bool:
    """On Colab, switch on the widget manager that renders ipywidgets 8 (the lessons' sliders).

    Colab's own manager only renders ipywidgets 7; elsewhere this does nothing. Returns whether it ran.
    """
    if "google.colab" not in sys.modules:
        return False
    from google.colab import output

    output.enable_custom_widget_manager()
    return True


def setup_lesson(lesson: str, seed: int = 0) -> SimpleNamespace:
    """Start a lesson: pick the device, read the run profile, seed everything, print all three."""
    enable_colab_widgets()
    device = get_device()
    profile = get_profile()
    seed_everything(seed)
    print(f"lesson {lesson} | device: {describe_device(device)} | precision: {describe_precision(device)} | "
          f"profile: {profile.name} | seed: {seed}")
    print(f"  {profile.describe()}")
    reporting.start_lesson(lesson, profile)
    return SimpleNamespace(device=device, profile=profile, seed=seed)


def course_model(kind: str, profile: Profile, device, seed: int = 0, retrain: bool = False,
                 progress: bool = True) -> Checkpoint:
    """One of the course's models (:data:`COURSE_MODELS`).

    With a ``pretrained`` profile (``quick``), the shipped checkpoint is loaded. Otherwise the
    model is trained with ``profile``'s sizes, or loaded from the checkpoint cache when a model
    with exactly this recipe was trained before. ``meta`` holds the recipe, the loss history, the
    training time and throughput, and the device it trained on.
    """
    if kind not in COURSE_MODELS:
        raise ValueError(f"unknown course model {kind!r}; choose one of {sorted(COURSE_MODELS)}")
    if profile.pretrained and not retrain:
        shipped = pretrained_model(kind, device)
        if shipped is not None:
            return shipped
        print(f"no shipped checkpoint for '{kind}' in {PRETRAINED_DIR}: training it instead")
    recipe = {**COURSE_MODELS[kind], "profile": profile.name, "channels": list(profile.channels),
              "train_images": profile.train_images, "epochs": profile.epochs, "batch_size": profile.batch_size,
              "lr": profile.lr, "p_uncond": P_UNCOND, "seed": seed, "T": 1000}
    latent = recipe.get("space") == "latent"
    if latent:  # trained on this autoencoder's codes: a retrained autoencoder means a retrained model
        autoencoder, scale, _ = course_autoencoder(profile, device, seed, progress=progress)
        recipe.update(autoencoder=_fingerprint(autoencoder), scale=scale)
    path = checkpoint_dir() / f"{kind}-{profile.name}-seed{seed}.pt"
    if path.exists() and not retrain:
        ckpt = load_checkpoint(path, device)
        if ckpt.meta.get("recipe") == recipe:
            m = ckpt.meta
            print(f"loaded model '{kind}' from {path} (trained {m['steps']} steps in {m['seconds']:.0f} s "
                  f"on {m['device']})")
            return ckpt
    images, labels = load_mnist("train", device=device, subset=profile.train_images)
    if latent:  # the data set becomes the digits' scaled codes; everything after this is unchanged
        images = scale * encode_all(autoencoder, images)
    seed_everything(seed)
    model = UNet(in_channels=images.shape[1], channels=tuple(profile.channels), num_classes=recipe["num_classes"],
                 dead_time_embedding=recipe["dead_time_embedding"], image_size=images.shape[-1])
    flow = recipe["schedule"] == FlowPath.name
    schedule = FlowPath() if flow else make_schedule(recipe["schedule"], recipe["T"], device)
    print(f"training model '{kind}': {count_parameters(model):,} parameters, {len(images):,} "
          f"{'codes' if latent else 'images'} of shape {list(images.shape[1:])}, "
          f"{profile.epochs:g} epochs, batch {profile.batch_size}, {recipe['schedule']} schedule")
    result = train(model, images, schedule, labels if recipe["num_classes"] else None, epochs=profile.epochs,
                   batch_size=profile.batch_size, lr=profile.lr, p_uncond=P_UNCOND, seed=seed, progress=progress)
    print(f"  {result.steps} steps in {result.seconds:.1f} s ({result.images_per_second:,.0f} images/s)")
    meta = {"recipe": recipe, "losses": result.losses.tolist(), "seconds": result.seconds, "steps": result.steps,
            "images_per_second": result.images_per_second, "device": describe_device(device),
            "precision": describe_precision(device)}
    save_checkpoint(path, model, result.ema, schedule, meta)
    return load_checkpoint(path, device)


def course_autoencoder(profile: Profile, device, seed: int = 0, retrain: bool = False,
                       progress: bool = True) -> tuple[Autoencoder, float, dict]:
    """Lesson 10's autoencoder: ``(autoencoder, scale, meta)``, frozen, on ``device``.

    As :func:`course_model`: the shipped one with a ``pretrained`` profile, else trained with the
    profile's ``autoencoder_channels`` and ``autoencoder_epochs`` (or loaded from the cache).
    ``scale`` is the latent scale factor measured on its training digits (stored with it).
    """
    if profile.pretrained and not retrain:
        path = PRETRAINED_DIR / f"{AUTOENCODER}.pt"
        if path.exists():
            autoencoder, scale, meta = load_autoencoder(path, device, sha256=shipped_sha256(path.name))
            print(f"loaded the shipped autoencoder ({meta['epochs']:g} epochs, trained in {meta['seconds']:.0f} s on "
                  f"{meta['device']}; latent scale {scale:.4f})")
            return autoencoder, scale, meta
        print(f"no shipped autoencoder in {PRETRAINED_DIR}: training it instead")
    recipe = {"channels": list(profile.autoencoder_channels), "epochs": profile.autoencoder_epochs,
              "train_images": profile.train_images, "batch_size": 128, "seed": seed, "profile": profile.name}
    path = checkpoint_dir() / f"{AUTOENCODER}-{profile.name}-seed{seed}.pt"
    if path.exists() and not retrain:
        autoencoder, scale, meta = load_autoencoder(path, device)
        if meta.get("recipe") == recipe:
            print(f"loaded the autoencoder from {path} (trained in {meta['seconds']:.0f} s on {meta['device']})")
            return autoencoder, scale, meta
    images, _ = load_mnist("train", device=device, subset=profile.train_images)
    seed_everything(seed)
    autoencoder = Autoencoder(tuple(profile.autoencoder_channels))
    print(f"training the autoencoder: {count_parameters(autoencoder):,} parameters, {len(images):,} images, "
          f"{profile.autoencoder_epochs:g} epochs")
    result = train_autoencoder(autoencoder, images, epochs=profile.autoencoder_epochs, seed=seed, progress=progress)
    print(f"  {len(result.losses)} steps in {result.seconds:.1f} s; latent scale {result.scale:.4f}")
    meta = {"recipe": recipe, "epochs": profile.autoencoder_epochs, "losses": result.losses.tolist(),
            "seconds": result.seconds, "images_per_second": result.images_per_second,
            "device": describe_device(device), "precision": describe_precision(device)}
    save_autoencoder(path, autoencoder, result.scale, meta)
    return load_autoencoder(path, device)


def course_students(profile: Profile, device, teacher: Checkpoint | None = None, seed: int = 0,
                    retrain: bool = False, progress: bool = True) -> dict[int, Checkpoint]:
    """Lesson 11's students distilled from the guided ``cfg`` teacher at w = GUIDANCE_W:
    ``{steps: Checkpoint}`` for steps in :data:`STUDENT_STEPS`, each ``model`` a
    :class:`~academy_diffusion.distillation.VPrediction` (one network call per step, labels required).

    The shipped students with a ``pretrained`` profile; else the chain is trained here, from ``teacher``
    (default: ``course_model("cfg", profile, device)``): guidance distillation, then progressive rounds
    16 -> 8 -> 4 -> 2 -> 1, ``profile.distill_train_steps`` optimiser steps each (cached).
    """
    if profile.pretrained and not retrain:
        paths = {k: PRETRAINED_DIR / f"{DISTILLED}-{k}.pt" for k in STUDENT_STEPS}
        if all(p.exists() for p in paths.values()):
            students = {k: load_checkpoint(p, device, sha256=shipped_sha256(p.name)) for k, p in paths.items()}
            meta = students[min(STUDENT_STEPS)].meta  # the last student's record covers every round
            print(f"loaded the shipped students distilled from 'cfg' at w = {meta['recipe']['w']:g}: "
                  f"{', '.join(f'{k} step' + 's' * (k > 1) for k in students)} ({len(meta['rounds'])} rounds of "
                  f"{meta['recipe']['train_steps']} steps, {meta['total_seconds']:.0f} s in all on {meta['device']})")
            return {k: Checkpoint(VPrediction(c.model, c.schedule), c.schedule, c.meta) for k, c in students.items()}
        print(f"no shipped students in {PRETRAINED_DIR}: distilling them instead")
    teacher = teacher or course_model("cfg", profile, device, seed, progress=progress)
    recipe = {"teacher": _fingerprint(teacher.model), "w": GUIDANCE_W, "start": DISTILL_START,
              "train_steps": profile.distill_train_steps, "batch_size": 64, "lr": 1e-4, "seed": seed,
              "profile": profile.name}
    paths = {k: checkpoint_dir() / f"{DISTILLED}-{k}-{profile.name}-seed{seed}.pt" for k in STUDENT_STEPS}
    if not retrain and all(p.exists() for p in paths.values()):
        students = {k: load_checkpoint(p, device) for k, p in paths.items()}
        if all(c.meta.get("recipe") == recipe for c in students.values()):
            print(f"loaded the distilled students from {checkpoint_dir()}")
            return {k: Checkpoint(VPrediction(c.model, c.schedule), c.schedule, c.meta) for k, c in students.items()}
    images, labels = load_mnist("train", device=device, subset=profile.train_images)
    schedule = teacher.schedule.to(device)
    rounds, current, students = [], teacher.model, {}
    # the guidance round (steps None), then 16 -> 8, 8 -> 4, 4 -> 2, 2 -> 1
    for steps in [None] + [DISTILL_START >> i for i in range(1, DISTILL_START.bit_length())]:
        student = VPrediction(copy.deepcopy(current.net if steps else current).train().requires_grad_(True), schedule)
        print(f"distilling the guided teacher (w = {GUIDANCE_W:g}, 2 calls a step) into one call a step"
              if steps is None else f"distilling {2 * steps} steps into {steps}")
        seed_everything(seed + len(rounds))
        result = distill(student, current, schedule, images, labels, student_steps=steps, w=GUIDANCE_W,
                         train_steps=profile.distill_train_steps, seed=seed + len(rounds), progress=progress)
        rounds.append({"steps": steps, "seconds": result.seconds, "final_loss": float(result.losses[-50:].mean())})
        current = VPrediction(result.ema, schedule)
        if steps in STUDENT_STEPS:
            meta = {"recipe": recipe, "steps": steps, "rounds": list(rounds), "parameterization": "v",
                    "total_seconds": sum(r["seconds"] for r in rounds), "device": describe_device(device),
                    "precision": describe_precision(device), "losses": result.losses.tolist()}
            save_checkpoint(paths[steps], result.ema, None, schedule, meta)
            students[steps] = Checkpoint(current, schedule, meta)
    return {k: students[k] for k in STUDENT_STEPS}


def training_rates(runs: dict, schedule, batch_size: int, steps: int, device) -> dict:
    """Training images per second of each ``name -> (make_model, data)`` in ``runs`` on ``device``: a few
    :func:`~academy_diffusion.training.train` steps of a fresh model each, timed in alternation (the median
    of 3 rounds, :func:`~academy_diffusion.device.time_interleaved`) so that all see the same machine load."""
    timed = time_interleaved({name: (lambda make=make, data=data: train(make(), data, schedule, steps=steps,
                                                                        batch_size=batch_size, progress=False))
                              for name, (make, data) in runs.items()}, device=device)
    return {name: steps * batch_size / seconds for name, seconds in timed.items()}


def train_for(seconds: float, rate: float, model, data, schedule, batch_size: int, seed: int = 1) -> TrainResult:
    """Train ``model`` on ``data`` for about ``seconds`` of wall-clock: ``seconds · rate / batch_size`` steps, with
    ``rate`` the images/s measured beforehand (:func:`training_rates`). The step count is fixed before the
    loop starts, so the learning-rate schedule runs its whole course, as in any other training."""
    steps = max(1, round(seconds * rate / batch_size))
    torch.manual_seed(seed)
    return train(model.to(data.device), data, schedule, steps=steps, batch_size=batch_size,
                 warmup_steps=min(100, steps // 5), seed=seed, progress=False)


def check_latent_pair(latent: Checkpoint, autoencoder: Autoencoder, scale: float) -> None:
    """Refuse a latent model and an autoencoder that were not trained together: the model only knows
    the codes (and the scale) of the autoencoder it was trained on."""
    recipe = latent.meta["recipe"]
    if recipe.get("autoencoder") != _fingerprint(autoencoder) or abs(recipe["scale"] - scale) > 1e-6 * scale:
        raise ValueError("this latent model was trained on another autoencoder's codes (its weights or scale "
                         "differ): load both from the same place, e.g. course_autoencoder and course_model('latent') "
                         "with the same profile")


def _fingerprint(*parts) -> str:
    """A short sha256 of tensors (by content), modules' weights and plain values, in order."""
    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, (list, tuple)):
            h.update(f"{type(x).__name__}{len(x)}".encode())
            for item in x:
                feed(item)
        elif isinstance(x, torch.nn.Module):
            for name, tensor in x.state_dict().items():
                feed(name)
                feed(tensor)
        elif isinstance(x, torch.Tensor):
            x = x.detach().cpu().contiguous()
            h.update(f"{x.dtype}{tuple(x.shape)}".encode())
            h.update(x.view(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b"")
        else:
            h.update(repr(x).encode())

    for part in parts:
        feed(part)
    return h.hexdigest()[:24]


def _sampling_code() -> str:
    """The source of the modules a sample depends on, so that a code change never reuses old samples."""
    from .. import device, models, samplers, schedules

    return "".join(Path(m.__file__).read_text() for m in (device, models, samplers, schedules))


_SAMPLE_SIGNATURE = inspect.signature(sample)


def cached_sample(model, schedule, n: int, **kwargs) -> SampleResult:
    """``sample(model, schedule, n, **kwargs)``, stored on disk so that a second identical call reuses it.

    Lessons 4, 5 and 8 sample the ``cfg`` model at the same guidance scales from the same x_T and
    labels, and lessons 2 and 6 the ``linear`` model with DDIM-20 from the same x_T: the second
    lesson to ask reads the first one's samples instead of drawing them again.
    The key is everything the samples depend on: the model's weights, the schedule, every argument
    (``x_T`` and ``labels`` by content), the device, the precision, the torch version and the
    source of the sampling code. A hit therefore returns what :func:`sample` would return on this
    machine, with ``seconds`` as it took when first drawn. Use it only for deterministic calls
    (``x_T`` given, or drawn from ``seed``); ``capture`` is not supported.
    """
    if kwargs.get("capture"):
        raise ValueError("cached_sample does not store trajectories (capture); call sample() instead")
    device = next(model.parameters()).device
    call = _SAMPLE_SIGNATURE.bind(model, schedule, n, **kwargs)
    call.apply_defaults()  # eta=0.0 written out or left to its default is the same call
    skip = {"model", "schedule", "n", "progress"}  # the first three are keyed below; a progress bar changes nothing
    settings = sorted((k, v) for k, v in call.arguments.items() if k not in skip)
    key = _fingerprint(model, schedule.name, schedule.betas, n, settings, device.type, describe_precision(device),
                       torch.__version__, _sampling_code())
    path = cache_dir() / "samples" / f"{key}.pt"
    if path.exists():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        print(f"reused {n} samples drawn earlier with the same model, x_T and settings "
              f"(they took {stored['seconds']:.1f} s): {path}")
        return SampleResult(stored["images"], seconds=stored["seconds"])
    result = sample(model, schedule, n, **kwargs)
    try:
        tmp = writable_dir(path.parent) / f".{key}.{os.getpid()}.tmp"
        torch.save({"images": result.images, "seconds": result.seconds}, tmp)
        tmp.replace(path)  # atomic: a lesson running beside this one never reads half a file
    except OSError as err:  # the samples are good; only their reuse is lost
        print(f"note: these samples could not be stored for reuse ({err})")
    return result
