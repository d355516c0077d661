"""Train the course's shipped checkpoints: ``python -m academy_diffusion.pretrain``.

Trains every model of :data:`academy_diffusion.course.COURSE_MODELS` with the ``pretrain``
recipe below, measures it, and writes the EMA weights (fp16) to ``academy_diffusion/pretrained/``
with an entry in ``manifest.json``: the recipe, schedule, steps, device, training time, code
version and the metrics measured on it. The ``quick`` profile loads these instead of training
for minutes on a CPU; the ``full`` profile trains from scratch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import torch

from .checkpoints import load_checkpoint, save_checkpoint
from .classifier import load_classifier
from .course import COURSE_MODELS, course_model
from .device import describe_device, get_device
from .metrics import class_metrics, fid
from .profiles import Profile
from .samplers import sample

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
MANIFEST = PRETRAINED_DIR / "manifest.json"


def code_version() -> str:
    """The git commit of the code that trained (with ``-dirty`` for uncommitted changes)."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=PRETRAINED_DIR.parent,
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def read_manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def measure(ckpt, classifier, n: int, steps: int = 20) -> dict:
    """FID (and class accuracy for a conditional model at w = 1 and 3) at ``n`` DDIM samples."""
    out = {}
    if ckpt.model.num_classes is None:
        images = sample(ckpt.model, ckpt.schedule, n, sampler="ddim", steps=steps, seed=0, progress=False).images
        f = fid(images, classifier, warn=False)
        out.update(fid=f.value, fid_n=n, fid_sampler=f"ddim-{steps}", fid_real_vs_real_same_n=f.baseline)
        return out
    labels = torch.arange(10).repeat_interleave(n // 10)
    for w in (1.0, 3.0):
        images = sample(ckpt.model, ckpt.schedule, len(labels), sampler="ddim", steps=steps, labels=labels, w=w,
                        seed=0, progress=False).images
        f = fid(images, classifier, w=w, warn=False)
        out[f"w{w:g}"] = {"fid": f.value, "accuracy": class_metrics(classifier, images, labels)["accuracy"],
                          "n": len(labels), "sampler": f"ddim-{steps}", "fid_real_vs_real_same_n": f.baseline}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="*", default=list(COURSE_MODELS))
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--channels", default="16,32,64")
    parser.add_argument("--eval-n", type=int, default=1000)
    args = parser.parse_args(argv)

    device = get_device(verbose=True)
    epochs = args.steps * args.batch_size / 60_000
    profile = Profile("pretrain", tuple(int(c) for c in args.channels.split(",")), None, epochs, args.batch_size,
                      2e-3, args.eval_n, 20, 64, 500)
    classifier, clf_meta = load_classifier(device)
    PRETRAINED_DIR.mkdir(exist_ok=True)
    manifest = read_manifest()
    manifest["classifier"] = {**clf_meta, "file": "classifier.pt", "code_version": code_version()}
    torch.save({"state": {k: v.half() if v.is_floating_point() else v for k, v in classifier.state_dict().items()},
                "meta": clf_meta}, PRETRAINED_DIR / "classifier.pt")
    for kind in args.kinds:
        start = time.perf_counter()
        ckpt = course_model(kind, profile, device, retrain=True)
        meta = dict(ckpt.meta)
        meta["metrics"] = measure(ckpt, classifier, args.eval_n)
        print(kind, meta["metrics"], f"({time.perf_counter() - start:.0f} s)", flush=True)
        half = ckpt.model.half()
        save_checkpoint(PRETRAINED_DIR / f"{kind}.pt", half, None, ckpt.schedule, meta)
        manifest[kind] = {"file": f"{kind}.pt", "recipe": meta["recipe"], "schedule": ckpt.schedule.config(),
                          "steps": meta["steps"], "epochs": epochs, "device": describe_device(device),
                          "train_seconds": meta["seconds"], "images_per_second": meta["images_per_second"],
                          "code_version": code_version(), "metrics": meta["metrics"]}
        MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    load_checkpoint(PRETRAINED_DIR / f"{args.kinds[-1]}.pt")  # sanity: the files load


if __name__ == "__main__":
    main()
