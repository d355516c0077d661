"""What the lessons share: their setup, the models they train and reuse, and the headless runner.

* :func:`setup_lesson` is the first call of every lesson: device, run profile, seed.
* :func:`course_model` trains one of the course's models (or loads it from the cache, so that
  lesson 3 reuses lesson 1's model and lesson 5 lesson 4's, while each lesson still runs alone).
* :func:`cached_sample` is :func:`~academy_diffusion.samplers.sample` stored on disk, so that
  lessons 5 and 8 reuse the guidance sweep lesson 4 drew (same model, x_T, labels and settings;
  lesson 8 also lesson 5's w = 2), and lesson 6 the linear model's samples lesson 2 drew.
* ``python -m academy_diffusion.course`` (what ``make course`` calls) executes every
  ``notebooks/NN_*.ipynb``, writes the executed notebooks to ``build/notebooks/``, their
  figures to ``build/figures/`` and their measured numbers to ``build/results/``, then prints a
  summary in course order. The run profile comes from ``ACADEMY_PROFILE``. On a CPU with the
  quick profile it runs two lessons at a time on one thread each (:func:`default_jobs`), the
  longest first (:func:`start_order`)."""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import torch

from .checkpoints import PRETRAINED_DIR, Checkpoint, checkpoint_dir, load_checkpoint, save_checkpoint, shipped_sha256
from .data import cache_dir, load_mnist, writable_dir
from .device import describe_device, describe_precision, get_device, seed_everything
from .models import UNet, count_parameters
from .profiles import Profile, get_profile
from .reporting import BUILD_ENV
from .samplers import SampleResult, sample
from .schedules import make_schedule
from .training import train

ROOT = Path(__file__).resolve().parents[1]

# The models the lessons train. Everything else (sizes, epochs) comes from the run profile.
COURSE_MODELS = {
    "linear": {"schedule": "linear", "num_classes": None, "dead_time_embedding": False},  # lessons 1, 3, 6
    "cosine": {"schedule": "cosine", "num_classes": None, "dead_time_embedding": False},  # lesson 2
    "cfg": {"schedule": "linear", "num_classes": 10, "dead_time_embedding": False},  # lessons 4, 5
    "dead": {"schedule": "linear", "num_classes": None, "dead_time_embedding": True},  # lesson 6
}
P_UNCOND = 0.1  # condition dropout for classifier-free guidance (the page's ~10%)
# The guidance scale the course samples the `cfg` model at when one w is needed (lessons 3, 7 and 8):
# the smallest w of lesson 5's sweep at which the shipped model's samples are read as the requested
# digit at least 98 % of the time (the page's accuracy target). FID alone prefers w = 1 on that grid
# (lesson 5). Between the grid's points, at n = 10,000, w = 1.25 does better in FID and just clears
# 98 % (the manifest); the lessons' n = 500 per w cannot resolve that margin, so they keep w = 2.
GUIDANCE_W = 2.0


def pretrained_model(kind: str, device) -> Checkpoint | None:
    """The shipped checkpoint of course model ``kind`` (None if it is not there)."""
    path = PRETRAINED_DIR / f"{kind}.pt"
    if not path.exists():
        return None
    ckpt = load_checkpoint(path, device, sha256=shipped_sha256(path.name))
    recipe = ckpt.meta["recipe"]
    if any(recipe[key] != value for key, value in COURSE_MODELS[kind].items()):
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
    path = checkpoint_dir() / f"{kind}-{profile.name}-seed{seed}.pt"
    if path.exists() and not retrain:
        ckpt = load_checkpoint(path, device)
        if ckpt.meta.get("recipe") == recipe:
            m = ckpt.meta
            print(f"loaded model '{kind}' from {path} (trained {m['steps']} steps in {m['seconds']:.0f} s "
                  f"on {m['device']})")
            return ckpt
    images, labels = load_mnist("train", device=device, subset=profile.train_images)
    seed_everything(seed)
    model = UNet(channels=tuple(profile.channels), num_classes=recipe["num_classes"],
                 dead_time_embedding=recipe["dead_time_embedding"])
    schedule = make_schedule(recipe["schedule"], recipe["T"], device)
    print(f"training model '{kind}': {count_parameters(model):,} parameters, {len(images):,} images, "
          f"{profile.epochs:g} epochs, batch {profile.batch_size}, {recipe['schedule']} schedule")
    result = train(model, images, schedule, labels if recipe["num_classes"] else None, epochs=profile.epochs,
                   batch_size=profile.batch_size, lr=profile.lr, p_uncond=P_UNCOND, seed=seed, progress=progress)
    print(f"  {result.steps} steps in {result.seconds:.1f} s ({result.images_per_second:,.0f} images/s)")
    meta = {"recipe": recipe, "losses": result.losses.tolist(), "seconds": result.seconds, "steps": result.steps,
            "images_per_second": result.images_per_second, "device": describe_device(device),
            "precision": describe_precision(device)}
    save_checkpoint(path, model, result.ema, schedule, meta)
    return load_checkpoint(path, device)


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
    from . import device, models, samplers, schedules

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


def lessons(folder: Path = ROOT / "notebooks", only=None) -> list[Path]:
    """The lesson notebooks, in course order; ``only`` keeps those whose number is listed (``["03"]``).

    Raises ValueError for a number that is no lesson, so a typo does not silently run nothing.
    """
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return found
    wanted = {str(n).zfill(2) for n in only}
    unknown = wanted - {p.name[:2] for p in found}
    if unknown:
        raise ValueError(f"no lesson {', '.join(sorted(unknown))}; the lessons are "
                         f"{', '.join(p.name[:2] for p in found)}")
    return [p for p in found if p.name[:2] in wanted]


def run_notebook(path: Path, out_dir: Path, timeout: int = 3600, threads: int | None = None) -> float:
    """Execute one notebook in the current Python environment; returns its wall-clock seconds.

    ``threads`` caps the kernel's CPU threads (``OMP_NUM_THREADS``); None leaves PyTorch's default.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(env=env)
    finally:
        nbformat.write(nb, out_dir / path.name)
    return time.perf_counter() - start


def cpu_cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Lessons that read another lesson's samples from the cache (:func:`cached_sample`): run side by side,
# each waits for the lesson it reuses, rather than drawing the same samples again.
REUSES = {"05": "04", "06": "02", "08": "05"}  # lesson 8 reads lesson 4's sets and lesson 5's w = 2
# Each lesson's seconds in the quick profile on the 2-core CI machine, one thread, beside another lesson
# (an AMD EPYC with AVX512-BF16, idle otherwise, 2026-11-29). Only their order matters: see start_order.
QUICK_SECONDS = {"01": 69, "02": 88, "03": 217, "04": 75, "05": 34, "06": 52, "07": 148, "08": 14}


def start_order(todo: list[Path], jobs: int) -> list[Path]:
    """The order in which the runner starts ``todo``: course order one at a time; side by side, the
    longest first (so that short lessons fill the other core around the long ones, instead of one long
    lesson running alone at the end), ties and unknown lessons in course order. With these times every
    lesson still starts after the one whose samples it reuses (a test checks it)."""
    if jobs == 1:
        return list(todo)
    return sorted(todo, key=lambda p: -QUICK_SECONDS.get(p.name[:2], 0))


def default_jobs(profile: Profile, device) -> int:
    """How many lessons ``make course`` runs at once: 2 on a CPU of 2+ cores whose lessons load
    the shipped models (they share nothing then), else 1.

    On this course's 2-core CI machine, two one-thread U-Nets side by side evaluate at least as many
    images per second as one on two threads (small convolutions do not split well across threads),
    and each lesson's single-threaded stretches (kernel start, plots, FID) overlap with the other's
    sampling: the whole quick course took 686 s this way against 762 s one lesson at a time on two
    threads (back to back, same day). A GPU is one device, and lessons that train their own models
    share them through the cache: those run in order.
    """
    if torch.device(device).type != "cpu" or not profile.pretrained:
        return 1
    return min(2, cpu_cores())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build"), help="output folder (default: build/)")
    parser.add_argument("--only", nargs="*", help="lesson numbers to run, e.g. --only 01 03")
    parser.add_argument("--jobs", type=int, help="lessons run at once, each on cores/jobs threads "
                        "(default: 2 on a multi-core CPU with the quick profile, else 1)")
    args = parser.parse_args(argv)

    build = Path(args.build).resolve()
    (build / "notebooks").mkdir(parents=True, exist_ok=True)
    os.environ[BUILD_ENV] = str(build)
    try:
        todo = lessons(only=args.only)
    except ValueError as err:
        print(err)
        return 2
    if not todo:
        print("no lessons to run yet (notebooks/NN_*.ipynb)")
        return 0
    if args.jobs is not None and args.jobs < 1:
        print(f"--jobs must be at least 1, got {args.jobs}")
        return 2
    jobs = min(args.jobs or default_jobs(get_profile(), get_device()), len(todo))
    threads = max(1, cpu_cores() // jobs) if jobs > 1 else None
    if jobs > 1:
        print(f"running {len(todo)} lessons, {jobs} at a time, {threads} CPU thread(s) each")
    times, failed = {}, []
    finished = {p.name[:2]: threading.Event() for p in todo}

    def say(line: str) -> None:  # one write per line, so that two lessons' lines never interleave
        print(line + "\n", end="", flush=True)

    def run_one(path: Path) -> None:
        reused = finished.get(REUSES.get(path.name[:2], ""))
        if reused is not None and not reused.is_set():
            say(f"{path.name} waits for lesson {REUSES[path.name[:2]]}, whose samples it reuses")
            reused.wait()
        try:
            run_lesson(path)
        finally:
            finished[path.name[:2]].set()

    def run_lesson(path: Path) -> None:
        say(f"running {path.name} ...")
        (build / "results" / f"{path.stem}.json").unlink(missing_ok=True)  # no numbers left from an older run
        try:
            times[path.stem] = run_notebook(path, build / "notebooks", threads=threads)
            say(f"  {path.name} done in {times[path.stem]:.0f} s")
        except Exception as err:  # keep going: report every lesson
            failed.append(path.name)
            say(f"  {path.name} FAILED: {type(err).__name__}: {str(err)[-2000:]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(run_one, start_order(todo, jobs)))
    print_summary(build, {p.stem: times[p.stem] for p in todo if p.stem in times})
    print(f"total: {time.perf_counter() - start:.0f} s of wall clock for {len(todo)} lessons, {jobs} at a time")
    if failed:
        print(f"failed lessons: {', '.join(sorted(failed))} (executed copies with the error are in "
              f"{build / 'notebooks'})")
    return 1 if failed else 0


def print_summary(build: Path, times: dict) -> None:
    """Print each lesson's run time and the numbers it reported."""
    print(f"\nsummary (executed notebooks and figures in {build})")
    for stem, seconds in times.items():
        print(f"{stem}: {seconds:.0f} s")
        results = build / "results" / f"{stem}.json"
        if results.exists():
            for name, value in json.loads(results.read_text()).items():
                shown = f"{value:.4g}" if isinstance(value, float) else value
                print(f"    {name}: {shown}")


if __name__ == "__main__":
    sys.exit(main())
