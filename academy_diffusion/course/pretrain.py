"""Train the course's shipped checkpoints: ``python -m academy_diffusion.course.pretrain``.

Trains every model of :data:`academy_diffusion.course.COURSE_MODELS` with the ``pretrain``
recipe below, measures it, and writes the EMA weights (fp16) to ``academy_diffusion/pretrained/``
with an entry in ``manifest.json``: the recipe, schedule, steps, device, training time, code
version and the metrics measured on it. The ``quick`` profile loads these instead of training
for minutes on a CPU; the ``full`` profile trains from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time

import torch

from ..checkpoints import checkpoint_dir, file_sha256, load_autoencoder, load_checkpoint, save_checkpoint
from ..classifier import SHIPPED, load_classifier
from ..data import balanced_labels
from ..device import describe_device, describe_precision, get_device
from ..distillation import student_timesteps
from ..flow_matching import FlowPath, sample_flow
from ..latent import decode_all, encode_all, sample_latent
from ..metrics import (
    baseline_images,
    class_metrics,
    extract_features,
    fid,
    fid_interval,
    legible_share,
    precision_recall,
    real_baseline,
)
from ..samplers import GUIDANCE_W, initial_noise, sample
from .lessons import (
    AUTOENCODER,
    COURSE_MODELS,
    DISTILLED,
    PRETRAINED_DIR,
    STUDENT_STEPS,
    check_latent_pair,
    course_autoencoder,
    course_model,
    course_students,
    pretrained_model,
)
from .profiles import Profile, get_profile

MANIFEST = PRETRAINED_DIR / "manifest.json"
# guidance scales at which the class-conditional model is measured: they bracket the shipped model's FID minimum
MEASURE_WS = (1.0, 1.25, 1.5, 2.0)


def code_version(allow_dirty: bool = False) -> str:
    """The git commit of the code that trains, so that shipped weights can be tied to exact code.

    Refuses uncommitted changes (``git describe`` ending in ``-dirty``) unless ``allow_dirty``.
    """
    try:
        out = subprocess.run(["git", "describe", "--always"], cwd=PRETRAINED_DIR.parent,
                             capture_output=True, text=True, check=True)
        # what pretraining itself writes (the shipped files and the manifest) does not make the code dirty:
        # several pretraining processes run side by side and each updates the manifest
        changed = subprocess.run(["git", "status", "--porcelain", "--", ".", f":!{PRETRAINED_DIR.name}"],
                                 cwd=PRETRAINED_DIR.parent, capture_output=True, text=True, check=True)
        version = out.stdout.strip() + ("-dirty" if changed.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if version.endswith("-dirty") and not allow_dirty:
        raise SystemExit(f"the working tree has uncommitted changes ({version}): commit them first, so that the "
                         "shipped weights can be tied to exact code, or pass --allow-dirty")
    return version


def read_manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def update_manifest(key: str, entry: dict) -> dict:
    """Re-read the manifest, set ``manifest[key] = entry`` and write it atomically.

    Re-reading right before writing lets several pretraining processes (one per model) share it.
    """
    manifest = read_manifest()
    manifest[key] = entry
    tmp = MANIFEST.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(MANIFEST)
    return manifest


def measure(ckpt, classifier, n: int, steps: int = 20, ws=MEASURE_WS, autoencoder=None) -> dict:
    """FID at ``n`` samples from one fixed x_T, drawn with ``steps`` network calls per guidance pass
    (DDIM for a diffusion model, Euler for a flow-matching one); for a conditional model, FID and class
    accuracy at each guidance scale in ``ws`` (n/10 per digit). A latent model needs its
    ``autoencoder`` as ``(autoencoder, scale)``: its samples are decoded before they are scored."""
    flow = isinstance(ckpt.schedule, FlowPath)
    name = f"{'euler' if flow else 'ddim'}-{steps}"

    def draw(count, labels=None, w=None):
        if flow:
            return sample_flow(ckpt.model, count, sampler="euler", steps=steps, labels=labels, w=w, seed=0).images
        if autoencoder is not None:
            return sample_latent(ckpt.model, ckpt.schedule, *autoencoder, count, sampler="ddim", steps=steps,
                                 seed=0).images
        return sample(ckpt.model, ckpt.schedule, count, sampler="ddim", steps=steps, labels=labels, w=w,
                      seed=0).images

    out = {}
    if ckpt.model.num_classes is None:
        f = fid(draw(n), classifier, warn=False)
        out.update(fid=f.value, fid_n=n, fid_sampler=name, fid_real_vs_real_same_n=f.baseline)
        return out
    labels = balanced_labels(n)
    for w in ws:
        images = draw(len(labels), labels, w)
        f = fid(images, classifier, w=w, warn=False)
        out[f"w{w:g}"] = {"fid": f.value, "accuracy": class_metrics(classifier, images, labels)["accuracy"],
                          "n": len(labels), "sampler": name, "fid_real_vs_real_same_n": f.baseline}
    return out


NFE_GRID = (1, 2, 4, 8, 16, 32)  # lesson 9's network-call budgets


def nfe_sweep(classifier, device, n: int = 2000, nfes=NFE_GRID) -> dict:
    """Lesson 9's comparison at equal network calls, recorded because a CPU lesson cannot afford it: the
    shipped ``flow`` model with Euler (and Heun at even budgets) against the shipped ``linear`` model with
    DDIM and DPM-Solver++(2M), each at every NFE in ``nfes``, ``n`` samples from one x_T (seed 0), FID with
    a 90 % bootstrap interval. Returns ``{method: {nfe: {"fid", "lo", "hi", "n"}}}`` plus the real-vs-real
    FID at the same n."""
    flow, linear = (load_checkpoint(PRETRAINED_DIR / f"{k}.pt", device) for k in ("flow", "linear"))
    x_T = initial_noise(n, 0)
    draws = {
        "flow-euler": lambda k: sample_flow(flow.model, n, sampler="euler", steps=k, x_T=x_T),
        "flow-heun": lambda k: sample_flow(flow.model, n, sampler="heun", steps=k // 2, x_T=x_T),
        "ddim": lambda k: sample(linear.model, linear.schedule, n, sampler="ddim", steps=k, x_T=x_T),
        "dpm++2m": lambda k: sample(linear.model, linear.schedule, n, sampler="dpm++2m", steps=k, x_T=x_T),
    }
    out = {"n": n, "fid_real_vs_real_same_n": real_baseline(classifier, n)}
    for method, draw in draws.items():
        out[method] = {}
        for k in nfes:
            if method == "flow-heun" and k % 2:
                continue
            value, lo, hi = fid_interval(draw(k).images, classifier)
            out[method][str(k)] = {"fid": value, "lo": lo, "hi": hi, "n": n}
            print(method, k, f"{value:.1f} ({lo:.1f}-{hi:.1f})", flush=True)
    return out


def measure_autoencoder(autoencoder, classifier, n: int) -> dict:
    """The autoencoder's reconstruction FID: the ``n`` training digits that the real-vs-real baseline scores,
    encoded and decoded, against the test set (so the difference from that baseline is the autoencoder's
    alone), and their mean absolute pixel error. No latent model can score below this floor."""
    real = baseline_images(n)
    device = next(autoencoder.parameters()).device
    reconstructed = decode_all(autoencoder, encode_all(autoencoder, real.to(device)))
    f = fid(reconstructed, classifier, warn=False)
    return {"reconstruction_fid": f.value, "n": n, "fid_real_vs_real_same_n": f.baseline,
            "l1": (reconstructed - real).abs().mean().item()}


def shipped_autoencoder(device):
    """The shipped autoencoder and its scale, checked against the manifest's SHA-256."""
    path = PRETRAINED_DIR / f"{AUTOENCODER}.pt"
    sha256 = read_manifest().get(AUTOENCODER, {}).get("sha256")
    autoencoder, scale, _ = load_autoencoder(path, device, sha256=sha256)
    return autoencoder, scale


def results_table(manifest: dict | None = None) -> str:
    """The README's results table (Markdown), every number read from the manifest."""
    m = manifest if manifest is not None else read_manifest()
    lines = ["| model | trained | FID (n, w, sampler) | real-vs-real FID at the same n | FID / real-vs-real | "
             "class accuracy |", "|---|---|---|---|---|---|"]
    for kind in COURSE_MODELS:
        if kind not in m:
            continue
        e = m[kind]
        trained = (f"{e['steps']:,} steps ({e['epochs']:.2f} epochs) in {e['train_seconds']:.0f} s on "
                   f"{e['device']}")
        metrics = e["metrics"]
        if "fid" in metrics:
            lines.append(f"| `{kind}` | {trained} | {metrics['fid']:.1f} (n={metrics['fid_n']:,}, unguided, "
                         f"{metrics['fid_sampler']}) | {metrics['fid_real_vs_real_same_n']:.1f} | "
                         f"{metrics['fid'] / metrics['fid_real_vs_real_same_n']:.1f}x | – |")
        for key in sorted(k for k in metrics if k.startswith("w")):
            r = metrics[key]
            lines.append(f"| `{kind}` | {trained} | {r['fid']:.1f} (n={r['n']:,}, w={key[1:]}, {r['sampler']}) | "
                         f"{r['fid_real_vs_real_same_n']:.1f} | {r['fid'] / r['fid_real_vs_real_same_n']:.1f}x | "
                         f"{r['accuracy']:.3f} |")
    if DISTILLED in m and "metrics" in m[DISTILLED]:
        d, r = m[DISTILLED], m[DISTILLED]["metrics"]
        trained = (f"{len(d['rounds'])} rounds of {d['recipe']['train_steps']:,} steps from `cfg` in "
                   f"{d['train_seconds']:.0f} s on {d['device']}")
        for k in sorted(STUDENT_STEPS):
            s = r[f"student-{k}"]
            lines.append(f"| `{DISTILLED}-{k}` | {trained} | {s['fid']:.1f} (n={r['n']:,}, w={r['w']:g} distilled in, "
                         f"{k} call{'s' * (k > 1)}) | {r['fid_real_vs_real_same_n']:.1f} | "
                         f"{s['fid'] / r['fid_real_vs_real_same_n']:.1f}x | {s['accuracy']:.3f} |")
    if AUTOENCODER in m and "metrics" in m[AUTOENCODER]:
        a, r = m[AUTOENCODER], m[AUTOENCODER]["metrics"]
        floor, rvr = r["reconstruction_fid"], r["fid_real_vs_real_same_n"]
        lines.append(f"| `{AUTOENCODER}` (lesson 10's codes) | {a['epochs']:g} epochs in {a['train_seconds']:.0f} s on "
                     f"{a['device']} | {floor:.1f} (n={r['n']:,}, reconstructions of real digits) | {rvr:.1f} | "
                     f"{floor / rvr:.1f}x | – |")
    if "classifier" in m:
        c = m["classifier"]
        lines.append(f"| `classifier` (FID features) | {c['epochs']:g} epochs in {c['train_seconds']:.0f} s on "
                     f"{c['device']} | – | – | – | {c['test_accuracy']:.4f} (MNIST test set) |")
    return "\n".join(lines)


def save_classifier(classifier, meta: dict) -> dict:
    """Ship the classifier in fp16, with its test accuracy re-measured on the fp16 weights."""
    from ..classifier import accuracy
    from ..data import load_mnist

    state = {k: v.half() if v.is_floating_point() else v for k, v in classifier.state_dict().items()}
    torch.save({"state": state, "meta": meta}, PRETRAINED_DIR / "classifier.pt")
    shipped, _ = load_classifier(classifier_device(classifier), verbose=False)
    x, y = load_mnist("test")
    meta = {**meta, "test_accuracy": accuracy(shipped, x, y), "stored_as": "fp16"}
    torch.save({"state": state, "meta": meta}, PRETRAINED_DIR / "classifier.pt")
    return meta


def classifier_device(model) -> torch.device:
    return next(model.parameters()).device


def measure_shipped(kind: str, classifier, n: int, device, ws=MEASURE_WS) -> dict:
    """Load the shipped (fp16) checkpoint of ``kind``, measure it, and store the metrics in it."""
    if kind == AUTOENCODER:
        return measure_autoencoder(shipped_autoencoder(device)[0], classifier, n)
    path = PRETRAINED_DIR / f"{kind}.pt"
    ckpt = load_checkpoint(path, device)
    autoencoder = None
    if ckpt.meta["recipe"].get("space") == "latent":
        autoencoder = shipped_autoencoder(device)
        check_latent_pair(ckpt, *autoencoder)
    meta = {**ckpt.meta, "metrics": measure(ckpt, classifier, n, ws=ws, autoencoder=autoencoder)}
    save_checkpoint(path, ckpt.model.half(), None, ckpt.schedule, meta)
    return meta["metrics"]


def pretrain_one(kind: str, profile: Profile, device, version: str) -> None:
    """Train course model ``kind`` with ``profile``'s recipe and ship its EMA weights (fp16)."""
    ckpt = course_model(kind, profile, device, retrain=True)
    meta = ckpt.meta
    path = save_checkpoint(PRETRAINED_DIR / f"{kind}.pt", ckpt.model.half(), None, ckpt.schedule, meta)
    update_manifest(kind, {"file": path.name, "recipe": meta["recipe"], "schedule": ckpt.schedule.config(),
                           "steps": meta["steps"], "epochs": profile.epochs, "device": describe_device(device),
                           "precision": meta.get("precision", "fp32"), "train_seconds": meta["seconds"],
                           "images_per_second": meta["images_per_second"], "code_version": version,
                           "sha256": file_sha256(path)})


def pretrain_autoencoder(profile: Profile, device, version: str) -> None:
    """Train lesson 10's autoencoder with ``profile``'s recipe and ship it (float32: the ``latent`` model
    is trained on the codes of exactly these weights, from the same cached file)."""
    course_autoencoder(profile, device, retrain=True)
    path = PRETRAINED_DIR / f"{AUTOENCODER}.pt"
    shutil.copyfile(checkpoint_dir() / f"{AUTOENCODER}-{profile.name}-seed0.pt", path)
    _, scale, meta = load_autoencoder(path)
    update_manifest(AUTOENCODER, {"file": path.name, "recipe": meta["recipe"], "epochs": meta["epochs"],
                                  "device": meta["device"], "precision": meta["precision"],
                                  "train_seconds": meta["seconds"], "images_per_second": meta["images_per_second"],
                                  "scale": scale, "code_version": version, "sha256": file_sha256(path)})


def pretrain_students(profile: Profile, device, version: str) -> None:
    """Distil lesson 11's students from the *shipped* ``cfg`` teacher and ship them (fp16)."""
    teacher = pretrained_model("cfg", device)
    students = course_students(profile, device, teacher=teacher, retrain=True)
    files = {}
    for k, ckpt in students.items():
        path = save_checkpoint(PRETRAINED_DIR / f"{DISTILLED}-{k}.pt", ckpt.model.net.half(), None, ckpt.schedule,
                               ckpt.meta)
        files[path.name] = file_sha256(path)
    meta = students[min(students)].meta  # the last student's meta lists every round
    update_manifest(DISTILLED, {"files": files, "teacher": "cfg", "teacher_sha256": read_manifest()["cfg"]["sha256"],
                                "recipe": meta["recipe"], "rounds": meta["rounds"],
                                "train_seconds": meta["total_seconds"], "device": meta["device"],
                                "precision": meta["precision"], "code_version": version})


def measure_students(classifier, device, n: int, n_pr: int = 2000) -> dict:
    """Lesson 11's table at equal network calls (NFE), from one x_T and balanced labels (n/10 per digit):
    the shipped students at 1, 2 and 4 steps; the guided teacher (2 calls a step) with DDIM and
    DPM-Solver++ at 2 and 4 calls; the teacher without guidance (w = 1, one call a step) with DPM-Solver++
    at 1, 2 and 4; the 4-step student guided at w = 3, a scale it was not trained for (2 calls a step).
    Each: FID with its 90 % interval and accuracy at ``n``; precision and recall against real digits on the
    first ``n_pr``; sampling seconds. Also the teacher's DDIM-20 at w = GUIDANCE_W at ``n_pr`` (the reference
    for precision and recall)."""
    n_pr = min(n_pr, n)
    teacher = pretrained_model("cfg", device)
    students = course_students(get_profile("quick"), device)
    sch, labels, x_T = teacher.schedule, balanced_labels(n), initial_noise(n, 0)
    runs = {f"student-{k}": (k, lambda k=k: sample(students[k].model, sch, n, sampler="ddim", labels=labels, x_T=x_T,
                                                    timesteps=student_timesteps(sch.T, k)))
            for k in STUDENT_STEPS}
    for s in (1, 2):
        for name, sampler in (("ddim", "ddim"), ("dpm++", "dpm++2m")):
            runs[f"teacher-{name}-w{GUIDANCE_W:g}-{s}"] = (2 * s, lambda s=s, sampler=sampler: sample(
                teacher.model, sch, n, sampler=sampler, steps=s, labels=labels, w=GUIDANCE_W, x_T=x_T))
    for k in (1, 2, 4):
        runs[f"teacher-dpm++-w1-{k}"] = (k, lambda k=k: sample(teacher.model, sch, n, sampler="dpm++2m", steps=k,
                                                              labels=labels, w=1.0, x_T=x_T))
    runs["student-4-at-w3"] = (8, lambda: sample(students[4].model, sch, n, sampler="ddim", labels=labels, w=3.0,
                                                 x_T=x_T, timesteps=student_timesteps(sch.T, 4)))
    real = extract_features(classifier, baseline_images(n_pr))
    pick = torch.arange(n_pr) * n // n_pr  # every (n / n_pr)-th sample: the labels are sorted, so all digits alike
    out = {"n": n, "n_pr": n_pr, "w": GUIDANCE_W, "fid_real_vs_real_same_n": real_baseline(classifier, n),
           "fid_real_vs_real_n_pr": real_baseline(classifier, n_pr)}
    for name, (nfe, run) in runs.items():
        result = run()
        value, lo, hi = fid_interval(result.images, classifier)
        pr = precision_recall(real, extract_features(classifier, result.images[pick]))
        out[name] = {"nfe": nfe, "fid": value, "lo": lo, "hi": hi, "seconds": result.seconds,
                     "accuracy": class_metrics(classifier, result.images, labels)["accuracy"], **pr}
        print(name, {k: round(v, 3) for k, v in out[name].items()}, flush=True)
    reference = sample(teacher.model, sch, n_pr, sampler="ddim", steps=20, labels=labels[pick], w=GUIDANCE_W,
                       x_T=x_T[pick]).images
    out[f"teacher-ddim-w{GUIDANCE_W:g}-20"] = {
        "nfe": 40, "n": n_pr, "fid": fid(reference, classifier, warn=False).value,
        **precision_recall(real, extract_features(classifier, reference))}
    return out


# lesson 3's question as distributions: (sampler, steps, eta) for each setting compared
SAMPLER_SETTINGS = {"ddim-20": ("ddim", 20, 0.0), "ddim-20-eta1": ("ddim", 20, 1.0), "ddpm-1000": ("ddpm", None, 0.0)}
COMPARE_CHUNK = 250  # samples per stored chunk: a long run resumes where it stopped, and two workers can share it


def compare_samplers(kind: str, classifier, device, n: int, settings=tuple(SAMPLER_SETTINGS),
                     reverse: bool = False) -> dict:
    """DDIM-20 (eta 0 and 1) against DDPM-1000 on the shipped model ``kind`` as *distributions*: ``n`` samples
    each from one x_T (seed 0; for a conditional model balanced labels and w = GUIDANCE_W), FID with its 90 %
    interval, the legible share, class accuracy (conditional) or coverage entropy (unconditional), and
    precision / recall on every fifth sample against as many real digits. Samples are drawn in chunks of
    ``COMPARE_CHUNK`` through :func:`cached_sample`, so a run that stops resumes, and a second worker started
    with ``reverse=True`` shares the chunks from the other end. A latent model is decoded before it is scored."""
    from .lessons import cached_sample

    ckpt = pretrained_model(kind, device)
    autoencoder = shipped_autoencoder(device) if ckpt.meta["recipe"].get("space") == "latent" else None
    conditional = ckpt.model.num_classes is not None
    labels = balanced_labels(n) if conditional else None
    shape = ckpt.model.sample_shape
    x_T = initial_noise(n, 0, shape)
    starts = list(range(0, n, COMPARE_CHUNK))
    real_pr = extract_features(classifier, baseline_images(n // 5))
    real_all = baseline_images(n)
    out = {"n": n, "w": GUIDANCE_W if conditional else None, "fid_real_vs_real_same_n": real_baseline(classifier, n),
           "real_legible_share": legible_share(classifier, real_all),
           "real_coverage_entropy": class_metrics(classifier, real_all)["coverage_entropy"]}
    for name in settings:
        sampler, steps, eta = SAMPLER_SETTINGS[name]
        chunks, seconds = {}, 0.0
        for i in (reversed(starts) if reverse else starts):
            end = min(i + COMPARE_CHUNK, n)
            result = cached_sample(ckpt.model, ckpt.schedule, end - i, sampler=sampler, steps=steps, eta=eta,
                                   x_T=x_T[i:end], seed=i, labels=None if labels is None else labels[i:end],
                                   w=GUIDANCE_W if conditional else None, clip_x0=autoencoder is None,
                                   progress=False)
            chunks[i], seconds = result.images, seconds + result.seconds
            print(f"{kind} {name}: samples {i}-{end} done", flush=True)
        images = torch.cat([chunks[i] for i in starts])
        if autoencoder is not None:
            images = decode_all(autoencoder[0], images / autoencoder[1])  # from_latent, in batches
        value, lo, hi = fid_interval(images, classifier)
        metrics = class_metrics(classifier, images, labels)
        out[name] = {"fid": value, "lo": lo, "hi": hi, "sampling_seconds": seconds,
                     "legible_share": legible_share(classifier, images),
                     "coverage_entropy": metrics["coverage_entropy"],
                     **({"accuracy": metrics["accuracy"]} if conditional else {}),
                     **precision_recall(real_pr, extract_features(classifier, images[torch.arange(n // 5) * 5]))}
        print(kind, name, {k: round(v, 3) for k, v in out[name].items()}, flush=True)
    return out


def ema_check(classifier, device, epochs: float, n: int) -> dict:
    """Lesson 1's question at a size it cannot afford: is the EMA of the weights better to sample from than
    the raw weights? One run of ``linear``'s recipe (widths, batch 64, learning rate, schedule) for
    ``epochs``, keeping both; each samples ``n`` digits with DDIM-20 at η = 1 (the course's sampler for
    unconditional models) from one x_T and noise; FID with its 90 % interval, and the legible share."""
    from ..data import load_mnist
    from ..models import UNet
    from ..schedules import make_schedule
    from ..training import train

    images, _ = load_mnist("train", device=device)
    schedule = make_schedule("linear", 1000, device)
    torch.manual_seed(0)
    raw = UNet(channels=(16, 32, 64)).to(device)
    result = train(raw, images, schedule, epochs=epochs, batch_size=64, lr=2e-3)
    out = {"epochs": epochs, "steps": result.steps, "train_seconds": result.seconds, "n": n,
           "sampler": "ddim-20, eta 1", "fid_real_vs_real_same_n": real_baseline(classifier, n)}
    x_T = initial_noise(n, 0)
    for name, net in (("raw", raw.eval()), ("ema", result.ema)):
        images_out = sample(net, schedule, n, sampler="ddim", steps=20, eta=1.0, x_T=x_T, seed=0).images
        value, lo, hi = fid_interval(images_out, classifier, warn=False)
        out[name] = {"fid": value, "lo": lo, "hi": hi, "legible_share": legible_share(classifier, images_out)}
        print(name, out[name], flush=True)
    return out


def latent_race(classifier, device, seconds: float, n: int) -> dict:
    """Lesson 10's FID at equal training time, at a budget no lesson can afford: a pixel and a latent model
    (``linear``'s recipe: the same widths, batch 64, learning rate and schedule; the latent one on the shipped
    autoencoder's codes) from scratch, each trained for ``seconds`` on this device, then DDIM-20 from one
    x_T, FID with its 90 % interval at ``n``."""
    from ..data import load_mnist
    from ..models import UNet
    from ..schedules import make_schedule
    from .lessons import train_for, training_rates

    autoencoder, scale = shipped_autoencoder(device)
    pixels, _ = load_mnist("train", device=device)
    data = {"pixel": pixels, "latent": scale * encode_all(autoencoder, pixels)}
    make = {"pixel": lambda: UNet(channels=(16, 32, 64)),
            "latent": lambda: UNet(in_channels=4, channels=(16, 32, 64), image_size=7)}
    schedule = make_schedule("linear", 1000, device)
    rates = training_rates({k: (make[k], data[k]) for k in make}, schedule, 64, 20, device)
    out = {"seconds_each": seconds, "n": n, "sampler": "ddim-20",
           "fid_real_vs_real_same_n": real_baseline(classifier, n)}
    for space in ("pixel", "latent"):
        result = train_for(seconds, rates[space], make[space](), data[space], schedule, 64)
        if space == "latent":
            images = sample_latent(result.ema, schedule, autoencoder, scale, n, sampler="ddim", steps=20, seed=0).images
        else:
            images = sample(result.ema, schedule, n, sampler="ddim", steps=20, seed=0).images
        value, lo, hi = fid_interval(images, classifier)
        out[space] = {"steps": result.steps, "train_seconds": result.seconds, "rate": rates[space], "fid": value,
                      "lo": lo, "hi": hi}
        print(space, out[space], flush=True)
    return out


def record_measurement(kind: str, key: str, measure, version: str | None = None, merge: bool = False) -> None:
    """Run ``measure(classifier, device) -> dict`` on this machine's device and store the result as
    ``manifest[kind][key]``, with the device, the precision, the seconds it took and (for a measurement that
    trains, ``version``) the code version. ``merge`` keeps what an earlier run stored under ``key``."""
    device = get_device(verbose=True)
    classifier, _ = load_classifier(device, verbose=False)
    start = time.perf_counter()
    result = measure(classifier, device)
    entry = read_manifest()[kind]
    entry[key] = {**(entry.get(key, {}) if merge else {}), **result,
                  "measured_on": f"{describe_device(device)}, {describe_precision(device)}",
                  "seconds": time.perf_counter() - start, **({"code_version": version} if version else {})}
    update_manifest(kind, entry)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="only print the README's results table")
    parser.add_argument("--measure-only", action="store_true", help="re-measure the shipped checkpoints")
    parser.add_argument("--no-measure", action="store_true", help="train and ship, measure later")
    parser.add_argument("--classifier", action="store_true", help="also retrain the FID classifier (this "
                        "changes every FID in the course)")
    parser.add_argument("--kinds", nargs="*", default=[AUTOENCODER, *COURSE_MODELS],
                        choices=[AUTOENCODER, *COURSE_MODELS], help="what to train (the autoencoder before 'latent')")
    parser.add_argument("--epochs", type=float, default=20, help="epochs over all 60,000 images (the page's 20)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--channels", default="16,32,64")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW's peak learning rate")
    parser.add_argument("--eval-n", type=int, default=10_000)
    parser.add_argument("--ws", type=float, nargs="*", default=list(MEASURE_WS),
                        help="guidance scales at which to measure the class-conditional model")
    parser.add_argument("--allow-dirty", action="store_true", help="record a -dirty code version")
    parser.add_argument("--distill", type=int, metavar="STEPS", help="only distil lesson 11's students from the "
                        "shipped cfg teacher, STEPS optimiser steps a round, ship them and measure them")
    parser.add_argument("--latent-race", type=float, metavar="SECONDS", help="only measure lesson 10's FID at equal "
                        "training time: pixel and latent models from scratch, SECONDS each, into the manifest")
    parser.add_argument("--measure-students", action="store_true", help="only measure the shipped students' table")
    parser.add_argument("--compare-samplers", metavar="KIND", choices=list(COURSE_MODELS), help="only measure "
                        "DDIM-20 (eta 0 and 1) against DDPM-1000 on the shipped KIND at --eval-n samples, into the "
                        "manifest (resumable: samples are stored in chunks in the cache)")
    parser.add_argument("--settings", nargs="*", default=list(SAMPLER_SETTINGS), choices=list(SAMPLER_SETTINGS),
                        help="with --compare-samplers: which samplers")
    parser.add_argument("--reverse", action="store_true", help="with --compare-samplers: a second worker, taking "
                        "the chunks from the other end")
    parser.add_argument("--ema-check", type=float, metavar="EPOCHS", help="only measure lesson 1's raw against EMA "
                        "weights: one run of linear's recipe for EPOCHS, both sampled at --eval-n, into the manifest")
    parser.add_argument("--nfe-sweep", type=int, metavar="N", help="only measure lesson 9's equal-NFE comparison "
                        "of the shipped flow and linear models at N samples per point, into the manifest")
    args = parser.parse_args(argv)
    if args.table:
        print(results_table())
        return
    if args.nfe_sweep:
        record_measurement("flow", "nfe_sweep", lambda clf, dev: nfe_sweep(clf, dev, args.nfe_sweep))
        return
    if args.ema_check:
        record_measurement("linear", "ema_check", lambda clf, dev: ema_check(clf, dev, args.ema_check, args.eval_n),
                           version=code_version(args.allow_dirty))
        return
    if args.compare_samplers:
        record_measurement(args.compare_samplers, "samplers", lambda clf, dev: compare_samplers(
            args.compare_samplers, clf, dev, args.eval_n, args.settings, args.reverse), merge=True)
        return
    if args.latent_race:
        race = lambda clf, dev: latent_race(clf, dev, args.latent_race, args.eval_n)  # noqa: E731
        record_measurement("latent", "equal_time", race, version=code_version(args.allow_dirty))
        return
    if args.distill or args.measure_students:
        device = get_device(verbose=True)
        if args.distill:
            profile = Profile("pretrain", (16, 32, 64), None, args.epochs, args.batch_size, args.lr, args.eval_n, 20,
                              64, 500, 200, False, 0, distill_train_steps=args.distill)
            pretrain_students(profile, device, code_version(args.allow_dirty))
        classifier, _ = load_classifier(device, verbose=False)
        start = time.perf_counter()
        entry = read_manifest()[DISTILLED]
        entry["metrics"] = measure_students(classifier, device, args.eval_n)
        entry["metrics_measured_on"] = (f"the shipped fp16 weights, {describe_device(device)}, "
                                        f"{describe_precision(device)}, {time.perf_counter() - start:.0f} s")
        update_manifest(DISTILLED, entry)
        return

    # the code version is recorded for what is trained; measuring alone records none
    version = code_version(args.allow_dirty) if (args.classifier or not args.measure_only) else None
    device = get_device(verbose=True)
    PRETRAINED_DIR.mkdir(exist_ok=True)
    if args.classifier:
        classifier, clf_meta = load_classifier(device, shipped=False)
        update_manifest("classifier", {**save_classifier(classifier, clf_meta), "file": "classifier.pt",
                                       "code_version": version, "sha256": file_sha256(SHIPPED)})
    if not args.measure_only:
        profile = Profile("pretrain", tuple(int(c) for c in args.channels.split(",")), None, args.epochs,
                          args.batch_size, args.lr, args.eval_n, 20, 64, 500, 200, False, 0)
        for kind in sorted(args.kinds, key=lambda k: k != AUTOENCODER):  # the autoencoder first
            if kind == AUTOENCODER:
                pretrain_autoencoder(profile, device, version)
            else:
                pretrain_one(kind, profile, device, version)
    if args.no_measure:
        return
    classifier, _ = load_classifier(device, verbose=False)
    for kind in args.kinds:
        start = time.perf_counter()
        metrics = measure_shipped(kind, classifier, args.eval_n, device, ws=tuple(args.ws))
        entry = read_manifest()[kind]
        entry.update(metrics=metrics, metrics_measured_on=f"the shipped {'float32' if kind == AUTOENCODER else 'fp16'} "
                     f"weights, {describe_device(device)}, "
                     f"{describe_precision(device)}", sha256=file_sha256(PRETRAINED_DIR / entry["file"]))
        update_manifest(kind, entry)
        print(kind, metrics, f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
