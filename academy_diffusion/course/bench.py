"""Benchmark the course on the current device: ``python -m academy_diffusion.course.bench``.

Measures, in one run, and prints a table plus JSON:

* training throughput (images/s) of lesson 1's model and the projected 20-epoch time (60,000
  images an epoch), for the package's loop (data on the device, bf16 where supported, no host
  sync per step) and for a naive textbook loop on the same model (a torchvision DataLoader over
  the MNIST dataset with ToTensor/Normalize, ``.item()`` every step, fp32);
* sampling throughput for DDPM-1000 and DDIM-20, with and without guidance, projected to
  10,000 images;
* precision and chunk size: training throughput in fp32 against bf16 autocast (where the
  device computes bf16 natively) at the quick and the full model size, and inference throughput
  of the quick model at several images per forward pass, in both precisions: the numbers behind
  :func:`academy_diffusion.device.autocast_dtype` and :data:`~academy_diffusion.device.FORWARD_BATCH`;
* peak memory (GPU memory on CUDA, the process's peak resident memory elsewhere).

``--quality`` instead samples the shipped guided model twice from the same x_T, in fp32 and in
bf16 autocast, and compares FID, class accuracy and the images themselves
(:func:`precision_quality`): the evidence that bf16 costs no sample quality.

``--short`` (what CI runs) uses few steps and small batches so that it finishes in about a
minute on a CPU; the projections say so. Timings are wall-clock after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F

from ..data import balanced_labels, load_mnist, mnist_root
from ..device import (
    FORWARD_BATCH,
    autocast,
    autocast_dtype,
    describe_device,
    describe_precision,
    get_device,
    median_interleaved,
    precision,
    synchronize,
)
from ..models import UNet, count_parameters
from ..samplers import GUIDANCE_W, sample
from ..schedules import make_schedule
from ..training import train
from .profiles import get_profile

EPOCH = 60_000


def bench_package_training(model_fn, images, schedule, steps: int, batch_size: int) -> float:
    """Images per second of :func:`academy_diffusion.training.train` (after a short warm-up)."""
    train(model_fn(), images, schedule, steps=min(5, steps), batch_size=batch_size, progress=False)
    result = train(model_fn(), images, schedule, steps=steps, batch_size=batch_size, progress=False)
    return result.images_per_second


def bench_naive_training(model_fn, device, schedule, steps: int, batch_size: int) -> float:
    """Images per second of the textbook loop: DataLoader, fp32, ``.item()`` every step."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    loader = DataLoader(datasets.MNIST(str(mnist_root()), train=True, transform=tf), batch_size=batch_size,
                        shuffle=True, drop_last=True)
    model = model_fn()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses, seen, start = [], 0, None
    for i, (x, _) in enumerate(loader):
        if i == 3:  # warm-up done
            synchronize(device)
            start, seen = time.perf_counter(), 0
        if i == steps + 3:
            break
        x = x.to(device)
        t = torch.randint(0, schedule.T, (len(x),), device=device)
        noise = torch.randn_like(x)
        loss = F.mse_loss(model(schedule.q_sample(x, t, noise), t), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        seen += len(x)
    synchronize(device)
    return seen / (time.perf_counter() - start)


def bench_sampling(model, schedule, sampler: str, steps: int, n: int, guided: bool) -> float:
    """Images per second of :func:`academy_diffusion.samplers.sample` for ``n`` images."""
    labels = torch.arange(n) % 10 if guided else None
    w = GUIDANCE_W if guided else None
    kw = dict(sampler=sampler, steps=steps if sampler == "ddim" else None, labels=labels, w=w, progress=False)
    warm = dict(kw, sampler="ddim", steps=2, labels=None if labels is None else labels[:8])
    sample(model, schedule, min(n, 8), **warm)  # warm-up
    out = sample(model, schedule, n, **kw)
    return n / out.seconds


@torch.no_grad()
def bench_forward(model, device, batch: int, images: int) -> float:
    """Images per second of one network evaluation at ``batch`` images a pass (after a warm-up)."""
    x, t = torch.randn(batch, 1, 28, 28, device=device), torch.randint(0, 1000, (batch,), device=device)
    with autocast(device):
        model(x, t)
        synchronize(device)
        start, done = time.perf_counter(), 0
        while done < images:
            model(x, t)
            done += batch
        synchronize(device)
    return done / (time.perf_counter() - start)


def _in_precision(mode: str, measure):
    """``measure`` wrapped to run under :func:`~academy_diffusion.device.precision` ``mode``."""
    def run():
        with precision(mode):
            return measure()
    return run


def bench_precision(device, images, schedule, short: bool) -> dict:
    """Training and inference throughput in fp32 and in bf16 autocast, and inference by chunk size.

    The two precisions are measured in alternation (median of rounds), so their ratio holds even on
    a machine whose load changes during the run."""
    native = autocast_dtype(device) is not None
    modes = {"fp32": "fp32", "bf16": "auto"} if native else {"fp32": "fp32"}  # label -> precision mode
    steps, n_inf = (8, 512) if short else (60, 4096)
    out = {"native_bf16": native, "train": {}, "forward": {}}
    for size, channels in (("quick", (16, 32, 64)), ("full", (32, 64, 128))):
        fn = lambda c=channels: (torch.manual_seed(0), UNet(channels=c).to(device))[1]
        measure = lambda f=fn: bench_package_training(f, images, schedule, steps, 64)
        rates = median_interleaved({label: _in_precision(m, measure) for label, m in modes.items()}, rounds=1)
        out["train"].update({f"{size}_{label}": r for label, r in rates.items()})
    torch.manual_seed(0)
    model = UNet(channels=(16, 32, 64)).to(device).eval()
    for batch in sorted({16, 64, 256, 1024, FORWARD_BATCH.get(torch.device(device).type, 64)}):
        measure = lambda b=batch: bench_forward(model, device, b, max(n_inf, b * 2))
        rates = median_interleaved({label: _in_precision(m, measure) for label, m in modes.items()}, rounds=3)
        out["forward"].update({f"{batch}_{label}": r for label, r in rates.items()})
    return out


def precision_quality(model, schedule, classifier, n: int = 1000, w: float = GUIDANCE_W, steps: int = 20,
                      modes=("fp32", "auto")) -> dict:
    """Sample ``model`` once per precision mode from the same x_T (seed 0), n/10 per digit at
    guidance ``w`` with DDIM-``steps``, and measure each set: FID (with the real-vs-real baseline at
    the same n) and class accuracy. Also compares the sets image by image: the mean absolute pixel
    difference (images in [-1, 1]) and the share of samples the classifier reads as a different
    digit. ``modes`` are :func:`~academy_diffusion.device.precision` names ("auto" = bf16 where native).
    """
    from ..metrics import fid

    labels = balanced_labels(n)
    device = next(model.parameters()).device
    out, images, preds = {"n": len(labels), "w": w, "sampler": f"ddim-{steps}"}, {}, {}
    for mode in modes:
        with precision(mode):
            name = describe_precision(device)
            x = sample(model, schedule, len(labels), sampler="ddim", steps=steps, labels=labels, w=w, seed=0,
                       progress=False).images
        f = fid(x, classifier, w=w, warn=False)
        with torch.no_grad():
            preds[name] = torch.cat([classifier(x[i:i + 2500].to(device)).argmax(1).cpu()
                                     for i in range(0, len(x), 2500)])
        out[name] = {"fid": f.value, "fid_real_vs_real_same_n": f.baseline,
                     "accuracy": (preds[name] == labels).float().mean().item()}
        images[name] = x.float().cpu()
    if len(images) == 2:
        (a, xa), (b, xb) = images.items()
        out["mean_abs_pixel_difference"] = float((xa - xb).abs().mean())
        out["share_read_as_another_digit"] = float((preds[a] != preds[b]).float().mean())
    return out


def run_quality(n: int, w: float) -> dict:
    """:func:`precision_quality` on the shipped guided model and the shipped FID classifier."""
    from ..checkpoints import PRETRAINED_DIR, load_checkpoint
    from ..classifier import load_classifier

    device = get_device()
    ckpt = load_checkpoint(PRETRAINED_DIR / "cfg.pt", device)
    classifier, _ = load_classifier(device, verbose=False)
    res = precision_quality(ckpt.model.float().eval(), ckpt.schedule, classifier, n=n, w=w)
    return {"device": describe_device(device), "model": "cfg (shipped)", **res}


def format_quality(res: dict) -> str:
    lines = [f"fp32 against bf16 on {res['device']}: {res['model']}, n = {res['n']:,}, w = {res['w']:g}, "
             f"{res['sampler']}, same x_T"]
    for name in ("fp32", "bf16 autocast"):
        if name in res:
            r = res[name]
            lines.append(f"  {name:<14} FID {r['fid']:.2f} (real-vs-real at n = {res['n']:,}: "
                         f"{r['fid_real_vs_real_same_n']:.2f}), accuracy {r['accuracy']:.3f}")
    if "mean_abs_pixel_difference" in res:
        lines.append(f"  image by image: mean |pixel difference| {res['mean_abs_pixel_difference']:.4f} (of a "
                     f"range of 2), read as another digit: {res['share_read_as_another_digit']:.1%}")
    else:
        lines.append("  (this device does not compute bf16 natively: fp32 only)")
    return "\n".join(lines)


def peak_memory_mb(device) -> float:
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run(short: bool = False, profile_name: str | None = None) -> dict:
    device = get_device()
    profile = get_profile(profile_name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps, batch = (20, 64) if short else (200, profile.batch_size)
    n_sample = 64 if short else 10_000
    images, _ = load_mnist("train", device=device)
    schedule = make_schedule("linear", 1000, device)

    def model_fn(num_classes=None):
        torch.manual_seed(0)
        return UNet(channels=profile.channels, num_classes=num_classes).to(device)

    res = {"device": describe_device(device), "profile": profile.name, "channels": list(profile.channels),
           "parameters": count_parameters(model_fn()), "short": short, "train_steps_timed": steps,
           "batch_size": batch}
    res["train_images_per_second_package"] = bench_package_training(model_fn, images, schedule, steps, batch)
    res["train_images_per_second_naive"] = bench_naive_training(model_fn, device, schedule, steps, batch)
    res["train_speedup_vs_naive"] = res["train_images_per_second_package"] / res["train_images_per_second_naive"]
    for name in ("package", "naive"):
        res[f"projected_20_epochs_seconds_{name}"] = 20 * EPOCH / res[f"train_images_per_second_{name}"]

    uncond, cond = model_fn().eval(), model_fn(num_classes=10).eval()
    res["sample_n_timed"] = n_sample
    for sampler, k in (("ddim", 20), ("ddpm", 1000)):
        for guided, model in ((False, uncond), (True, cond)):
            key = f"{sampler}{k}{'_guided' if guided else ''}"
            n = n_sample if sampler == "ddim" or not short else 4
            ips = bench_sampling(model, schedule, sampler, k, n, guided)
            res[f"sample_images_per_second_{key}"] = ips
            res[f"projected_seconds_10000_{key}"] = 10_000 / ips
    res["precision"] = bench_precision(device, images, schedule, short)
    res["peak_memory_mb"] = peak_memory_mb(device)
    return res


def format_table(res: dict) -> str:
    rows = [("device", res["device"]), ("model", f"U-Net {res['channels']}, {res['parameters']:,} parameters")]
    rows += [("training, package loop", f"{res['train_images_per_second_package']:,.0f} img/s, "
              f"20 epochs in {res['projected_20_epochs_seconds_package']:,.0f} s (projected)"),
             ("training, naive loop", f"{res['train_images_per_second_naive']:,.0f} img/s, "
              f"20 epochs in {res['projected_20_epochs_seconds_naive']:,.0f} s (projected)"),
             ("speed-up package / naive", f"{res['train_speedup_vs_naive']:.2f}x")]
    for key in ("ddim20", "ddim20_guided", "ddpm1000", "ddpm1000_guided"):
        rows.append((f"sampling {key}", f"{res[f'sample_images_per_second_{key}']:,.1f} img/s, 10,000 images in "
                     f"{res[f'projected_seconds_10000_{key}']:,.1f} s"))
    p = res.get("precision")
    if p:
        for key, ips in p["train"].items():
            rows.append((f"training {key.replace('_', ', ')}, batch 64", f"{ips:,.0f} img/s"))
        for key, ips in p["forward"].items():
            batch, label = key.split("_")
            rows.append((f"forward pass, quick, {label}, batch {batch}", f"{ips:,.0f} img/s"))
    rows.append(("peak memory", f"{res['peak_memory_mb']:,.0f} MB"))
    width = max(len(r[0]) for r in rows)
    note = " (short run: few steps, projected)" if res["short"] else ""
    return "\n".join([f"benchmark{note}"] + [f"  {k:<{width}}  {v}" for k, v in rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a quick run (CI): few steps, projected")
    parser.add_argument("--profile", help="run profile whose model size to use (default: ACADEMY_PROFILE)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--quality", action="store_true", help="compare sample quality in fp32 and bf16 instead")
    parser.add_argument("--n", type=int, default=1000, help="samples per precision for --quality")
    parser.add_argument("--w", type=float, default=GUIDANCE_W, help="guidance scale for --quality")
    args = parser.parse_args(argv)
    if args.quality:
        res = run_quality(args.n, args.w)
        print(format_quality(res))
    else:
        res = run(args.short, args.profile)
        print(format_table(res))
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
