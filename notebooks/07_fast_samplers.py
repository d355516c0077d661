# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 7 · Fast samplers: pick the integrator after training
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/main/notebooks/07_fast_samplers.ipynb)
#
# The page's section on fast samplers: DDIM made 20 steps work, and DPM-Solver/DPM-Solver++ go
# "to ~20 steps without quality loss". Deterministic samplers integrate one ordinary differential
# equation, the probability-flow ODE, whose right-hand side the network supplies. Training fixes
# the network; the *integrator* is a choice made afterwards, like choosing Euler or a
# second-order method for any ODE.
#
# In this lesson:
# 1. DPM-Solver++(2M), in a few lines, next to DDIM;
# 2. the practitioner's curve: quality against network evaluations (NFE) for DDPM-1000, DDIM and
#    DPM-Solver++, on the guided model of lesson 4, all from the same x_T;
# 3. the advice that curve supports.

# %% tags=["setup"]
# Setup: works in JupyterLab from the repository, in CI, and on Colab (installs the package, never torch).
import importlib
import os
import subprocess
import sys
PACKAGE = os.environ.get("ACADEMY_PACKAGE", "git+https://github.com/academy-diffusion/academy-diffusion@main")
if os.path.isdir("../academy_diffusion"):
    sys.path.insert(0, os.path.abspath(".."))
try:
    import academy_diffusion
except ImportError:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True)
    importlib.invalidate_caches()
from academy_diffusion.course import setup_lesson
ctx = setup_lesson("07")

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np
import torch

from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import GUIDANCE_W, course_model
from academy_diffusion.metrics import class_metrics, fid_interval, real_baseline
from academy_diffusion.plotting import show_rows
from academy_diffusion.reporting import claim, report, save_figure
from academy_diffusion.samplers import dpm_solver_pp_step, initial_noise, sample

# %% [markdown]
# ## 1. DPM-Solver++(2M)
#
# Write α = √ᾱ, σ = √(1 − ᾱ) and λ = log(α/σ), half the log-SNR. DDIM's deterministic step from
# t to s, in these terms, is x_s = (σ_s/σ_t)·x_t − α_s·(e^{−h} − 1)·x̂0 with h = λ_s − λ_t: the
# exact solution of the ODE *if x̂0 stayed constant* over the step (first order). DPM-Solver++
# keeps the network's previous estimate of x̂0 and extrapolates linearly in λ, a second-order
# correction that costs no extra network evaluation:
#
# $$D = \Big(1 + \tfrac{1}{2r}\Big)\hat x_0^{(t)} - \tfrac{1}{2r}\,\hat x_0^{(\text{prev})},\qquad
# r = \frac{\lambda_t - \lambda_\text{prev}}{h},\qquad x_s = \frac{\sigma_s}{\sigma_t}x_t - \alpha_s(e^{-h}-1)\,D.$$
#
# The package's step (its tests check it against diffusers' `DPMSolverMultistepScheduler`):

# %%
print(inspect.getsource(dpm_solver_pp_step).split('"""')[-1])

# %% [markdown]
# ## 2. Quality against network evaluations
#
# Every sampler starts from the same x_T, with the same labels (n/10 of each digit) and the same
# guidance scale. Guidance doubles the work of each step (two halves in one batched pass), so
# the NFE below counts steps; the cost in forward passes is twice that. FID carries a 90 %
# interval from the bootstrap; class accuracy is the classifier's reading of the requested digit.

# %%
ckpt = course_model("cfg", ctx.profile, ctx.device)
classifier, _ = load_classifier(ctx.device)
n = ctx.profile.fast_samples
labels = torch.arange(10).repeat_interleave(n // 10)
x_T = initial_noise(len(labels), seed=7)
RUNS = [("ddpm", 1000), ("ddim", 5), ("ddim", 10), ("ddim", 20), ("ddim", 50),
        ("dpm++2m", 5), ("dpm++2m", 10), ("dpm++2m", 20)]
results, images = {}, {}
for sampler, steps in RUNS:
    out = sample(ckpt.model, ckpt.schedule, len(labels), sampler=sampler, steps=steps, labels=labels, w=GUIDANCE_W,
                 x_T=x_T, seed=8)
    value, lo, hi = fid_interval(out.images, classifier)
    images[sampler, steps] = out.images
    results[sampler, steps] = {
        "fid": value, "lo": lo, "hi": hi,
        "accuracy": class_metrics(classifier, out.images, labels)["accuracy"], "seconds": out.seconds}
baseline = real_baseline(classifier, len(labels))
for (sampler, steps), r in results.items():
    print(f"{sampler:>8}-{steps:<4} NFE {steps:>4}: FID {r['fid']:7.2f} ({r['lo']:.1f}-{r['hi']:.1f})  "
          f"accuracy {r['accuracy']:.3f}  {r['seconds']:6.2f} s   (n={len(labels)}, w={GUIDANCE_W:g})")
print(f"real-vs-real FID at n={len(labels)}: {baseline:.2f}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for name, marker in (("ddim", "o-"), ("dpm++2m", "s-")):
    keys = [k for k in results if k[0] == name]
    nfe = [k[1] for k in keys]
    f = np.array([results[k]["fid"] for k in keys])
    err = [f - [results[k]["lo"] for k in keys], [results[k]["hi"] for k in keys] - f]
    axes[0].errorbar(nfe, f, yerr=err, fmt=marker, capsize=3, label={"ddim": "DDIM", "dpm++2m": "DPM-Solver++(2M)"}[name])
    axes[1].plot([results[k]["seconds"] for k in keys], f, marker, label={"ddim": "DDIM", "dpm++2m": "DPM-Solver++(2M)"}[name])
ddpm = results["ddpm", 1000]
axes[0].errorbar([1000], [ddpm["fid"]], yerr=[[ddpm["fid"] - ddpm["lo"]], [ddpm["hi"] - ddpm["fid"]]], fmt="k*",
                 ms=12, capsize=3, label="DDPM-1000")
axes[1].plot([ddpm["seconds"]], [ddpm["fid"]], "k*", ms=12, label="DDPM-1000")
for ax in axes:
    ax.axhline(baseline, color="gray", ls="--", label=f"real vs real (n = {len(labels)})")
    ax.set(xscale="log", yscale="log", ylabel=f"FID (n = {len(labels)}, w = {GUIDANCE_W:g})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
axes[0].set(xlabel="network evaluations (NFE)", title="Quality against NFE")
axes[1].set(xlabel=f"wall-clock seconds for {len(labels)} images, this machine", title="Quality against time")
save_figure(fig, "07_fid_vs_nfe")
plt.show()
report("07_fast_samplers", n=len(labels), w=GUIDANCE_W, fid_real_vs_real_same_n=baseline,
       **{f"fid_{s}{k}": r["fid"] for (s, k), r in results.items()},
       **{f"accuracy_{s}{k}": r["accuracy"] for (s, k), r in results.items()},
       **{f"seconds_{s}{k}": r["seconds"] for (s, k), r in results.items()})

# %%
show = torch.cat([torch.nonzero(labels == d)[:1, 0] for d in range(10)])
fig = show_rows({f"{s}-{k}": images[s, k][show] for s, k in [("ddim", 5), ("dpm++2m", 5), ("ddim", 10),
                                                              ("dpm++2m", 10), ("ddim", 50), ("ddpm", 1000)]},
                title="The same x_T per column, one digit each: few-step samplers side by side")
save_figure(fig, "07_samples")
plt.show()

# %% [markdown]
# ADVICE
#
# ## 3. Check the claims on numbers
#
# * At 5 steps the integrator matters: DPM-Solver++'s FID interval lies below DDIM's.
# * DPM-Solver++ at 10 NFE matches DDIM at 20: its FID is not worse than DDIM-20's beyond the
#   noise of the measurement (below the upper end of DDIM-20's interval).
# * Few steps cost quality: DDIM-5's interval lies above DDIM-50's.
# * Class accuracy hardly depends on the integrator once it has 10 steps or more (within 0.05).

# %%
r = results
claim(r["dpm++2m", 5]["hi"] < r["ddim", 5]["lo"],
      f"at 5 NFE the integrator matters: DPM-Solver++ {r['dpm++2m', 5]['fid']:.1f} vs DDIM {r['ddim', 5]['fid']:.1f}")
claim(r["dpm++2m", 10]["fid"] < r["ddim", 20]["hi"],
      f"DPM-Solver++ at 10 NFE matches DDIM-20: {r['dpm++2m', 10]['fid']:.1f} vs {r['ddim', 20]['fid']:.1f} "
      f"(interval up to {r['ddim', 20]['hi']:.1f})")
claim(r["ddim", 5]["lo"] > r["ddim", 50]["hi"],
      f"few steps cost quality: DDIM-5 {r['ddim', 5]['fid']:.1f} vs DDIM-50 {r['ddim', 50]['fid']:.1f}")
accs = [r[k]["accuracy"] for k in r if k[0] != "ddpm" and k[1] >= 10]
claim(max(accs) - min(accs) < 0.05, f"accuracy from 10 steps on: {min(accs):.3f}-{max(accs):.3f}")

# %% [markdown]
# **Takeaways.** The sampler is chosen after training and can be changed at any time: the same
# network, a different integrator. Measure quality against NFE on your own model, pick the
# cheapest point that is as good as the expensive ones, and never ship a 1,000-step sampler.
