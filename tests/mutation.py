"""Mutation testing for maintainers: ``make mutants`` (not part of the README's test command).

Plants plausible bugs in the package, one at a time, in a scratch copy of the repository, runs the
fast tests there (without the slow ones: first those that target the mutated module, then, if they
all pass, the whole fast suite), and reports which mutants the tests killed and which survived.
A surviving mutant is a bug the suite would let through: close it with a test, or say in
:data:`HARMLESS` why it does not matter.

    python tests/mutation.py            # every mutant
    python tests/mutation.py --only 3 7 # some of them
    python tests/mutation.py --list     # what they are
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (file, the exact original text, the bug planted instead, what the bug is)
MUTANTS = [
    ("training.py", "F.mse_loss(model(x_t, t, y).float(), noise)", "F.mse_loss(model(x_t, t, y).float(), x0)",
     "train to predict x0 instead of the noise"),
    ("training.py", "torch.randint(0, schedule.T,", "torch.randint(1, schedule.T,", "never train at t = 0"),
    ("training.py", "min(ema_decay, (1 + step) / (10 + step))", "ema_decay", "no EMA warm-up"),
    ("training.py", "return (step + 1) / warmup", "return step / warmup", "warm-up starts at lr 0"),
    ("training.py", "return 0.1 + 0.9 * 0.5 *", "return 0.5 *", "cosine decays to 0, not to a tenth"),
    ("training.py", "< p_uncond", "> p_uncond", "drop labels with probability 1 - p_uncond"),
    ("training.py", "list(model.parameters()), 1.0 - decay)", "list(model.parameters()), decay)",
     "EMA lerp in the wrong direction"),
    ("samplers.py", 'var = schedule.betas[t] if variance == "beta" else schedule.posterior_variance[t]',
     "var = schedule.betas[t]", "ignore the variance argument"),
    ("samplers.py", "return eps_uncond + w * (eps_cond - eps_uncond)", "return eps_cond + w * (eps_cond - eps_uncond)",
     "guidance around the conditional prediction"),
    ("samplers.py", "        x_next = x_next + sigma * noise\n", "        x_next = x_next\n",
     "DDIM ignores eta's noise"),
    ("samplers.py", "return mean + var.sqrt() * noise if t > 0 else mean", "return mean + var.sqrt() * noise",
     "noise added on the last DDPM step"),
    ("samplers.py", "x_next = ddpm_step(schedule, x, t, t_next, eps, noise, variance, clip_x0)",
     "x_next = ddpm_step(schedule, x, t, t_next, eps, noise, \"beta\", clip_x0)",
     "sample() ignores its variance argument"),
    ("samplers.py", "x_next = ddim_step(schedule, x, t, t_next, eps, eta, noise, clip_x0)",
     "x_next = ddim_step(schedule, x, t, t_next, eps, 0.0, noise, clip_x0)", "sample() ignores eta"),
    ("training.py", "y = drop_labels(labels[idx], model.null_class, p_uncond, gen) if conditional else None",
     "y = labels[idx] if conditional else None", "train() never drops a label"),
    ("samplers.py", "round((T - 1) * i / (steps - 1)) for i in range(steps - 1, -1, -1)",
     "round((T - 1) * i / (steps - 1)) for i in range(steps - 1, 0, -1)", "DDIM never reaches t = 0"),
    ("samplers.py", "return x0.clamp(-1.0, 1.0) if clip else x0", "return x0", "clip_x0 does nothing"),
    ("samplers.py", "manual_seed(seed + 1)", "manual_seed(seed)", "per-step noise correlated with x_T"),
    ("samplers.py", "return list(range(T - 1, -1, -1))", "return list(range(T - 1, 0, -1))",
     "DDPM skips its last step"),
    ("samplers.py", "d = (1 + 1 / (2 * r)) * x0_hat - (1 / (2 * r)) * x0_prev", "d = x0_hat",
     "DPM-Solver++ never uses its previous estimate (first order)"),
    ("models.py", "torch.arange(half, device=t.device, dtype=torch.float32) / half",
     "torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1)", "wrong embedding frequencies"),
    ("models.py", "torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)",
     "torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)", "sin and cos halves swapped"),
    ("metrics.py", "- 2 * trace_sqrt_product(sigma1, sigma2)", "- trace_sqrt_product(sigma1, sigma2)",
     "Frechet cross term without its factor 2"),
    ("metrics.py", 'images, _ = load_mnist("train")\n    if not', 'images, _ = load_mnist("test")\n    if not',
     "real-vs-real baseline drawn from the reference set itself"),
    ("metrics.py", "np.cov(f, rowvar=False)", "np.cov(f, rowvar=True)", "covariance over the wrong axis"),
    ("metrics.py", ".pow(2).sum(1).mean()", ".pow(2).mean()", "spread averaged over feature dimensions"),
    ("metrics.py", "return int(np.argmax(dist))", "return int(np.argmin(dist))", "elbow at the nearest point"),
    ("metrics.py", "centred = outs - outs.mean(dim=0, keepdim=True)", "centred = outs",
     "timestep sensitivity without centring"),
    ("device.py", "torch.cuda.get_device_capability(device) >= (8, 0)",
     "torch.cuda.get_device_capability(device) > (8, 0)", "no bf16 on an A100"),
    ("device.py", "return max(1, per_pass // 2) if guided else per_pass", "return per_pass",
     "guided chunks twice as large"),
    ("data.py", "images_uint8.float().div(127.5).sub(1.0)", "images_uint8.float().div(255.0)", "data in [0, 1]"),
    ("checkpoints.py", '"ema": (ema or model).state_dict(),', '"ema": model.state_dict(),',
     "the raw weights saved as the EMA"),
    ("flow_matching.py", "return F.mse_loss(model(x_t, t * TIME_SCALE, y).float(), noise - x0)",
     "return F.mse_loss(model(x_t, t * TIME_SCALE, y).float(), x0 - noise)", "flow matching's velocity reversed"),
    ("flow_matching.py", "return x_t + (t_next - t) * v", "return x_t - (t_next - t) * v", "Euler steps the wrong way"),
    ("flow_matching.py", "return predict_noise(model, x, t * TIME_SCALE, labels, w)",
     "return predict_noise(model, x, t, labels, w)", "sampling feeds t on another scale than training"),
    ("flow_matching.py", "return x_t + (t_next - t) * 0.5 * (v + velocity(guess, t_next))",
     "return x_t + (t_next - t) * v", "Heun without its corrector"),
    ("schedules.py", "alpha_bars_prev = torch.cat([torch.ones(1,", "alpha_bars_prev = torch.cat([torch.zeros(1,",
     "abar before the first step is 0"),
]

# What the scratch copy of the repository leaves out (environments, caches, build output, git).
SKIPPED = (".venv", ".git", "build", "my-lessons*", ".cache", "__pycache__", "*.egg-info", ".pytest_cache",
           ".ruff_cache", "data")
# The tests of the newcomer's path ask git and make about the checkout itself: not the package's behaviour.
# The test that keeps this list in step with the code fails on any mutant by design: not a kill.
SELF_TEST = "tests/test_checkpoints.py::test_every_mutant_of_the_mutation_tool_still_applies"

# The tests that target each module: run first (fast); a mutant they miss runs the whole fast suite.
TARGETS = {
    "training.py": ["tests/test_algorithms.py", "tests/test_training.py"],
    "samplers.py": ["tests/test_samplers.py", "tests/test_algorithms.py"],
    "models.py": ["tests/test_models.py", "tests/test_algorithms.py"],
    "metrics.py": ["tests/test_metrics.py", "tests/test_algorithms.py", "tests/test_robustness.py"],
    "device.py": ["tests/test_device.py"],
    "data.py": ["tests/test_data.py", "tests/test_robustness.py"],
    "checkpoints.py": ["tests/test_checkpoints.py", "tests/test_robustness.py"],
    "schedules.py": ["tests/test_schedules.py", "tests/test_samplers.py"],
    "flow_matching.py": ["tests/test_flow_matching.py"],
}

# Mutants a maintainer has looked at and judged harmless, with the reason (index -> why).
HARMLESS: dict[int, str] = {}


def run_mutant(index: int, scratch: Path, timeout: int) -> tuple[str, float, str]:
    """Plant mutant ``index`` in ``scratch``, run the fast tests, restore; returns (verdict, seconds, detail)."""
    file, original, mutated, _ = MUTANTS[index]
    path = scratch / "academy_diffusion" / file
    text = path.read_text()
    if text.count(original) != 1:
        return "stale", 0.0, f"the original text is not in {file} exactly once: update the mutant"
    path.write_text(text.replace(original, mutated))
    start = time.perf_counter()
    try:
        verdict, detail = "SURVIVED", ""
        for tests in (TARGETS.get(file, ["tests"]), ["tests"]):
            cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider",
                   "--deselect", SELF_TEST, "--ignore", "tests/test_newcomer.py", *tests]
            proc = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "PYTHONPATH": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"})
            if proc.returncode != 0:
                failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
                verdict, detail = "killed", failed[0][7:120] if failed else proc.stdout.strip()[-120:]
                break
    except subprocess.TimeoutExpired:
        verdict, detail = "killed", f"timed out after {timeout} s"
    finally:
        path.write_text(text)
    return verdict, time.perf_counter() - start, detail


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", type=int, help="mutant numbers to run")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args(argv)
    todo = args.only if args.only else range(len(MUTANTS))
    if args.list:
        for i in todo:
            print(f"{i:2d}  {MUTANTS[i][0]:<15} {MUTANTS[i][3]}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        scratch = Path(tmp)
        shutil.copytree(ROOT, scratch, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*SKIPPED))
        counts, survivors = {"killed": 0, "SURVIVED": 0, "stale": 0}, []
        for i in todo:
            verdict, seconds, detail = run_mutant(i, scratch, args.timeout)
            counts[verdict] += 1
            survivors += [i] if verdict == "SURVIVED" else []
            note = f" (harmless: {HARMLESS[i]})" if verdict == "SURVIVED" and i in HARMLESS else ""
            print(f"{i:2d} {verdict:<8} {seconds:5.0f} s  {MUTANTS[i][0]:<15} {MUTANTS[i][3]}{note}"
                  f"{'  <- ' + detail if detail else ''}", flush=True)
    print(f"\n{len(todo)} mutants planted: {counts['killed']} killed, {counts['SURVIVED']} survived"
          f"{', ' + str(counts['stale']) + ' stale' if counts['stale'] else ''}")
    unexplained = [i for i in survivors if i not in HARMLESS]
    return 1 if counts["stale"] or unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
