"""The shipped checkpoints load, match their manifest, and still perform as recorded."""

import json
import re
from pathlib import Path

import pytest
import torch

from academy_diffusion.checkpoints import PRETRAINED_DIR
from academy_diffusion.classifier import SHIPPED, accuracy, load_classifier
from academy_diffusion.course import COURSE_MODELS, pretrained_model
from academy_diffusion.course.pretrain import MANIFEST, results_table
from academy_diffusion.data import load_mnist
from academy_diffusion.metrics import class_metrics
from academy_diffusion.samplers import GUIDANCE_W, sample

ROOT = Path(__file__).resolve().parents[1]
MAN = json.loads(MANIFEST.read_text())


def test_manifest_lists_every_course_model_and_the_classifier():
    assert set(COURSE_MODELS) | {"classifier"} <= set(MAN)
    total = sum(p.stat().st_size for p in PRETRAINED_DIR.glob("*.pt"))
    assert total < 8 * 2**20, f"shipped checkpoints should stay small, they are {total / 2**20:.1f} MB"


@pytest.mark.parametrize("kind", list(COURSE_MODELS))
def test_checkpoint_matches_manifest(kind):
    entry = MAN[kind]
    ckpt = pretrained_model(kind, "cpu")
    assert ckpt.meta["recipe"] == entry["recipe"]
    assert ckpt.schedule.config() == entry["schedule"]
    assert ckpt.model.config["channels"] == entry["recipe"]["channels"]
    assert ckpt.model.config["num_classes"] == COURSE_MODELS[kind]["num_classes"]
    assert ckpt.model.config["dead_time_embedding"] == COURSE_MODELS[kind]["dead_time_embedding"]
    assert ckpt.meta["steps"] == entry["steps"] and len(ckpt.meta["losses"]) == entry["steps"]


@pytest.mark.slow
def test_guided_samples_reach_the_recorded_accuracy(needs_mnist):
    """At n = 200 (20 per digit) the accuracy's standard error is about 0.02; allow 0.06 below."""
    recorded = MAN["cfg"]["metrics"][f"w{GUIDANCE_W:g}"]["accuracy"]
    ckpt = pretrained_model("cfg", "cpu")
    clf, _ = load_classifier(verbose=False)
    labels = torch.arange(10).repeat_interleave(20)
    images = sample(ckpt.model, ckpt.schedule, len(labels), sampler="ddim", steps=20, labels=labels, w=GUIDANCE_W,
                    seed=1, progress=False).images
    acc = class_metrics(clf, images, labels)["accuracy"]
    assert acc >= recorded - 0.06, (acc, recorded)


def test_shipped_classifier_matches_manifest(needs_mnist):
    """The shipped fp16 classifier, measured again on the 10,000 test digits, has the recorded accuracy."""
    clf, _ = load_classifier(verbose=False)
    x, y = load_mnist("test")
    measured = accuracy(clf, x, y)
    assert SHIPPED.exists() and measured == pytest.approx(MAN["classifier"]["test_accuracy"], abs=1e-4)
    assert measured >= 0.99


def test_readme_results_table_is_the_manifest():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- results:start -->\n(.*?)\n<!-- results:end -->", readme, re.S)
    assert block and block.group(1) == results_table(MAN), (
        "regenerate: python -m academy_diffusion.course.pretrain --table")
