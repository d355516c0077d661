"""The shipped checkpoints load, match their manifest, and still perform as recorded."""

import json
import re
from pathlib import Path

import pytest
import torch

from academy_diffusion.checkpoints import PRETRAINED_DIR, load_autoencoder
from academy_diffusion.classifier import SHIPPED, accuracy, load_classifier
from academy_diffusion.course import COURSE_MODELS, check_latent_pair, course_students, pretrained_model
from academy_diffusion.course.lessons import AUTOENCODER, DISTILLED, STUDENT_STEPS, _fingerprint
from academy_diffusion.course.pretrain import MANIFEST, results_table
from academy_diffusion.course.profiles import get_profile
from academy_diffusion.data import load_mnist
from academy_diffusion.distillation import VPrediction, student_timesteps
from academy_diffusion.metrics import class_metrics
from academy_diffusion.samplers import GUIDANCE_W, sample

ROOT = Path(__file__).resolve().parents[1]
MAN = json.loads(MANIFEST.read_text())


def test_manifest_lists_every_course_model_and_the_classifier():
    assert set(COURSE_MODELS) | {"classifier", AUTOENCODER, DISTILLED} <= set(MAN)
    total = sum(p.stat().st_size for p in PRETRAINED_DIR.glob("*.pt"))
    # eleven files of about 0.75 MB (fp16 U-Nets) and the autoencoder and classifier: the package stays a small
    # download (the Colab bundle is compressed below this)
    assert total < 10 * 2**20, f"shipped checkpoints should stay small, they are {total / 2**20:.1f} MB"
    shipped = {p.name for p in PRETRAINED_DIR.glob("*.pt")}
    listed = {e["file"] for e in MAN.values() if "file" in e} | {f for e in MAN.values() for f in e.get("files", {})}
    assert shipped == listed, "every shipped file is in the manifest and every manifest file is shipped"


def test_the_shipped_autoencoder_and_latent_model_belong_together():
    autoencoder, scale, meta = load_autoencoder(PRETRAINED_DIR / "autoencoder.pt", sha256=MAN[AUTOENCODER]["sha256"])
    assert scale == pytest.approx(MAN[AUTOENCODER]["scale"]) and meta["recipe"] == MAN[AUTOENCODER]["recipe"]
    latent = pretrained_model("latent", "cpu")
    check_latent_pair(latent, autoencoder, scale)  # raises if the latent model was trained on other codes
    assert latent.model.sample_shape == (4, 7, 7)


def test_the_shipped_students_come_from_the_shipped_teacher():
    students = course_students(get_profile("quick"), "cpu")
    assert sorted(students) == sorted(STUDENT_STEPS)
    teacher = pretrained_model("cfg", "cpu")
    for steps, ckpt in students.items():
        recipe = ckpt.meta["recipe"]
        assert recipe["teacher"] == _fingerprint(teacher.model) and recipe["w"] == GUIDANCE_W
        assert ckpt.meta["steps"] == steps and isinstance(ckpt.model, VPrediction)
    assert MAN[DISTILLED]["teacher_sha256"] == MAN["cfg"]["sha256"]
    assert [r["steps"] for r in MAN[DISTILLED]["rounds"]] == [None, 8, 4, 2, 1]


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


@pytest.mark.slow
def test_the_two_step_student_reaches_its_recorded_accuracy(needs_mnist):
    """Two network calls per digit; at n = 200 the accuracy's standard error is at most 0.035: allow 0.1 below."""
    recorded = MAN[DISTILLED]["metrics"]["student-2"]["accuracy"]
    student = course_students(get_profile("quick"), "cpu")[2]
    clf, _ = load_classifier(verbose=False)
    labels = torch.arange(10).repeat_interleave(20)
    images = sample(student.model, student.schedule, len(labels), sampler="ddim", labels=labels, seed=1,
                    timesteps=student_timesteps(1000, 2), progress=False).images
    acc = class_metrics(clf, images, labels)["accuracy"]
    assert acc >= recorded - 0.1, (acc, recorded)


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


def test_record_measurement_stores_the_result_with_where_and_how_long(tmp_path, monkeypatch):
    """An offline measurement lands under manifest[kind][key] with the device, the seconds and (when it trains)
    the code version; merge keeps what an earlier, interrupted or partial run stored; the rest of the entry stays."""
    from academy_diffusion.course import pretrain

    monkeypatch.setattr(pretrain, "MANIFEST", tmp_path / "manifest.json")
    pretrain.MANIFEST.write_text(json.dumps({"linear": {"file": "linear.pt", "samplers": {"ddim-20": 1}}}))
    monkeypatch.setattr(pretrain, "load_classifier", lambda device, verbose=False: ("the classifier", {}))
    pretrain.record_measurement("linear", "samplers", lambda clf, dev: {"ddpm-1000": 2, "used": clf}, merge=True)
    entry = json.loads(pretrain.MANIFEST.read_text())["linear"]
    assert entry["file"] == "linear.pt"
    got = entry["samplers"]
    assert (got["ddim-20"], got["ddpm-1000"], got["used"]) == (1, 2, "the classifier")
    assert got["seconds"] >= 0 and "cpu" in got["measured_on"] and "code_version" not in got
    pretrain.record_measurement("linear", "samplers", lambda clf, dev: {"x": 3}, version="abc1234")
    got = json.loads(pretrain.MANIFEST.read_text())["linear"]["samplers"]
    assert "ddim-20" not in got and got["x"] == 3 and got["code_version"] == "abc1234"


def test_compare_samplers_resumes_in_chunks_without_changing_the_samples(needs_mnist, tmp_path, monkeypatch):
    """The sampler comparison draws in chunks through the sample cache: a run taking the chunks from the other
    end (a second worker) must score exactly what the first did, and the deterministic sampler in chunks exactly
    what one call of sample() draws from the same x_T."""
    from academy_diffusion.classifier import load_classifier
    from academy_diffusion.course import pretrain
    from academy_diffusion.metrics import fid
    from academy_diffusion.samplers import initial_noise

    monkeypatch.setenv("ACADEMY_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(pretrain, "COMPARE_CHUNK", 7)
    device = torch.device("cpu")
    classifier, _ = load_classifier(device, verbose=False)
    settings = ("ddim-20", "ddim-20-eta1")
    forward = pretrain.compare_samplers("linear", classifier, device, 20, settings)
    backward = pretrain.compare_samplers("linear", classifier, device, 20, settings, reverse=True)
    for name in settings:
        assert forward[name]["fid"] == backward[name]["fid"] and forward[name]["recall"] == backward[name]["recall"]
    assert len(list((tmp_path / "samples").glob("*.pt"))) == 2 * 3  # 20 samples in chunks of 7, per setting
    linear = pretrained_model("linear", device)
    whole = sample(linear.model, linear.schedule, 20, sampler="ddim", steps=20, x_T=initial_noise(20, 0)).images
    value = fid(whole, classifier, baseline=False, warn=False).value
    assert value == pytest.approx(forward["ddim-20"]["fid"], rel=1e-6)
    assert forward["n"] == 20 and forward["w"] is None and 0 < forward["real_legible_share"] <= 1


def test_the_sampler_comparison_is_recorded_for_two_models():
    """Lesson 3 reads DDIM-20 (η = 0 and 1) against DDPM-1000 from the manifest: at n >= 5,000, for the
    unguided linear model and the guided one at the course's w, each with its interval and accuracy."""
    manifest = json.loads(MANIFEST.read_text())
    for kind, w in (("linear", None), ("cfg", GUIDANCE_W)):
        r = manifest[kind]["samplers"]
        assert r["n"] >= 5000 and r["w"] == w, (kind, r["n"], r["w"])
        for name in ("ddim-20", "ddim-20-eta1", "ddpm-1000"):
            assert r[name]["lo"] < r[name]["fid"] < r[name]["hi"], (kind, name)
            assert 0 <= r[name]["recall"] <= 1 and ("accuracy" in r[name]) == (w is not None)
