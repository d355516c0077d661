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
# # Lesson 3 · DDIM: the same model, 20 steps instead of 1,000
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/main/notebooks/03_ddim.ipynb)
#
# DDPM sampling costs T = 1,000 network calls per image. DDIM (Song et al., 2021) reuses the
# *same trained network* with a different sampler: it can skip timesteps, and with η = 0 it is
# deterministic, so the same starting noise x_T always gives the same image. Training and
# sampling are decoupled: you pick the sampler after training.
#
# In this lesson, on lesson 1's model:
# 1. the DDIM update in a few lines;
# 2. same-seed grids of DDPM-1000, DDIM-20 and DDIM-1000;
# 3. what "almost identical" means, measured per sample and as distributions;
# 4. the measured wall-clock speed-up.

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
ctx = setup_lesson("03")

# %%
import matplotlib.pyplot as plt
import torch

from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import course_model
from academy_diffusion.metrics import extract_features, feature_stats, fid, frechet_distance
from academy_diffusion.plotting import show_rows
from academy_diffusion.reporting import report, save_figure
from academy_diffusion.samplers import ddim_step, ddim_timesteps, initial_noise, sample

# %% [markdown]
# ## 1. The DDIM update
#
# From x_t, DDIM first estimates the clean image the network "sees", then re-noises that estimate
# to the *earlier* level t_prev, pointing along the predicted noise:
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon}{\sqrt{\bar\alpha_t}},\qquad
# x_{t_\text{prev}} = \sqrt{\bar\alpha_{t_\text{prev}}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t_\text{prev}}-\sigma^2}\,\hat\varepsilon + \sigma z$$
#
# with σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev). With η = 0 there is no fresh noise at all:
# the sampler is a deterministic map from x_T to x_0 (it follows an ODE), so skipping steps only
# changes how finely that map is discretised. `t_prev` can be any earlier timestep: with 20 steps
# we use timesteps 999, 946, …, 0 (evenly spaced, both ends included).

# %%
import inspect
print(inspect.getsource(ddim_step).split('"""')[-1])  # the update, as the package writes it
print("DDIM-20 timesteps:", ddim_timesteps(1000, 20))

# %% [markdown]
# ## 2. Same seed, three samplers
#
# All three start from exactly the same x_T (drawn on the CPU from one seed).

# %%
ckpt = course_model("linear", ctx.profile, ctx.device)
model, schedule = ckpt.model, ckpt.schedule
n = ctx.profile.compare_samples
x_T = initial_noise(n, seed=0)
ddpm = sample(model, schedule, n, sampler="ddpm", x_T=x_T, seed=0)
ddim_1000 = sample(model, schedule, n, sampler="ddim", steps=1000, x_T=x_T)
ddim_20 = sample(model, schedule, n, sampler="ddim", steps=ctx.profile.ddim_steps, x_T=x_T)
show = 12
fig = show_rows({"x_T": x_T[:show], "DDPM-1000": ddpm.images[:show], "DDIM-1000": ddim_1000.images[:show],
                 f"DDIM-{ctx.profile.ddim_steps}": ddim_20.images[:show]},
                title="One x_T per column, three samplers")
save_figure(fig, "03_same_seed_grids")
plt.show()

# %% [markdown]
# DDIM-20 and DDIM-1000 draw *the same digit*, stroke for stroke, from the same noise. DDPM does
# not: it adds fresh noise at every one of its 1,000 steps, so its x_T does not determine its
# output, and the column's DDPM digit is simply another sample.
#
# ## 3. What "almost identical" means
#
# Two different questions, two different measurements:
#
# * **Per sample** (only meaningful for deterministic samplers): the RMS pixel distance between
#   DDIM-20 and DDIM-1000 from the same x_T. For scale, the same distance between DDPM and
#   DDIM-1000 from the same x_T, and between DDIM-1000 samples paired at random (two unrelated
#   digits).
# * **As distributions** (the right question for DDPM, which is stochastic): the Fréchet distance
#   between the feature statistics of the DDPM and the DDIM sets, next to the real-vs-real
#   baseline at the same n (two sets of real digits). With n this small, both are dominated by
#   small-sample bias: compare them with each other, not with published FIDs.

# %%
def rms(a, b):
    return (a - b).pow(2).flatten(1).mean(1).sqrt()

shuffled = ddim_1000.images[torch.randperm(n, generator=torch.Generator().manual_seed(1))]
d_20_1000 = rms(ddim_20.images, ddim_1000.images)
d_ddpm_1000 = rms(ddpm.images, ddim_1000.images)
d_unrelated = rms(shuffled, ddim_1000.images)
fig, ax = plt.subplots(figsize=(7, 3.2))
bins = torch.linspace(0, max(d_unrelated.max(), d_ddpm_1000.max()).item(), 30)
for d, name in [(d_20_1000, f"DDIM-{ctx.profile.ddim_steps} vs DDIM-1000"), (d_ddpm_1000, "DDPM vs DDIM-1000"),
                (d_unrelated, "unrelated pairs")]:
    ax.hist(d.numpy(), bins=bins.numpy(), alpha=0.6, label=f"{name}: mean {d.mean():.3f}")
ax.set_xlabel(f"per-sample RMS pixel distance (same x_T, n = {n})")
ax.legend(fontsize=9)
save_figure(fig, "03_per_sample_distance")
plt.show()

classifier, _ = load_classifier(ctx.device)
f_ddpm, f_20 = extract_features(classifier, ddpm.images), extract_features(classifier, ddim_20.images)
fd_between = frechet_distance(*feature_stats(f_ddpm), *feature_stats(f_20))
fid_ddpm = fid(ddpm.images, classifier, warn=False)
fid_20 = fid(ddim_20.images, classifier, baseline=False, warn=False)
print(f"Fréchet distance DDPM-1000 vs DDIM-{ctx.profile.ddim_steps} sets: {fd_between:.2f} (n = {n} each)")
print(f"against MNIST test: DDPM-1000 {fid_ddpm.value:.2f}, DDIM-{ctx.profile.ddim_steps} {fid_20.value:.2f}; "
      f"real-vs-real baseline at n = {n}: {fid_ddpm.baseline:.2f}")
report("03_ddim", n_compared=n, rms_ddim20_vs_ddim1000=d_20_1000.mean().item(),
       rms_ddpm_vs_ddim1000=d_ddpm_1000.mean().item(), rms_unrelated=d_unrelated.mean().item(),
       fd_ddpm_vs_ddim20=fd_between, fid_ddpm1000=fid_ddpm.value, fid_ddim20=fid_20.value,
       fid_real_vs_real_same_n=fid_ddpm.baseline)

# %% [markdown]
# ## 4. The speed-up, measured
#
# Wall-clock time of each sampler on the same n images, on this machine.

# %%
speedup = ddpm.seconds / ddim_20.seconds
print(f"DDPM-1000: {ddpm.seconds:.2f} s   DDIM-1000: {ddim_1000.seconds:.2f} s   "
      f"DDIM-{ctx.profile.ddim_steps}: {ddim_20.seconds:.3f} s   speed-up DDPM-1000 / DDIM-{ctx.profile.ddim_steps}: {speedup:.0f}x")
report("03_ddim", ddpm1000_seconds=ddpm.seconds, ddim1000_seconds=ddim_1000.seconds,
       ddim20_seconds=ddim_20.seconds, speedup=speedup)

# %% [markdown]
# ## 5. Check the claims on numbers
#
# * Per sample, DDIM-20 is far closer to DDIM-1000 than DDPM is: both DDIMs discretise the same
#   deterministic map. "Far" here means less than half the DDPM distance; in practice it is
#   much smaller, while DDPM-vs-DDIM is about as far as unrelated digits.
# * DDPM vs DDIM-1000 from the same x_T are *not* paired: their distance is within 25 % of the
#   unrelated-pairs distance.
# * The 20-step sampler is at least 10x faster than the 1,000-step one (50x fewer network calls;
#   fixed costs eat some of it at small n).

# %%
assert d_20_1000.mean() < 0.5 * d_ddpm_1000.mean(), (d_20_1000.mean(), d_ddpm_1000.mean())
assert abs(d_ddpm_1000.mean() / d_unrelated.mean() - 1) < 0.25, (d_ddpm_1000.mean(), d_unrelated.mean())
assert speedup > 10, speedup

# %% [markdown]
# **Takeaways.** "Almost identical" has a precise meaning only for deterministic samplers run
# from the same noise: DDIM-20 ≈ DDIM-1000 image by image. DDPM and DDIM can only be compared as
# distributions, and at small n that comparison is blurred by FID's own bias (lesson 5). Ship the
# fast sampler, not the 1,000-step one.
