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
# # Lesson 6 · The dead timestep embedding
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/notebooks/06_dead_timestep_embedding.ipynb)
#
# The same network ε_θ(x_t, t) serves all 1,000 noise levels, so it has to be *told* t: the
# timestep goes through sinusoidal features and an MLP, and the result is added inside every
# block. If that embedding is dead (it returns the same vector, here zeros, for every t), the
# network must guess the noise level from the image alone. It still learns something, and its
# loss still falls, which is what makes this bug silent.
#
# In this lesson:
# 1. a model with the embedding switched off, trained exactly like lesson 1's;
# 2. both loss curves: both fall;
# 3. samples and FID: the dead one degrades;
# 4. the health check that exposes it in one number.
#
# Exercise: `exercises/06_dead_embedding.ipynb` (the timestep-embedding health check, checked).

# %% tags=["setup"]
# Setup: works in JupyterLab from the repository, in CI, and on Colab (installs the package, never torch).
import glob
import importlib
import os
import subprocess
import sys
PACKAGE = "git+https://github.com/academy-diffusion/academy-diffusion@v0.2.0"  # the release of this notebook
if os.path.isdir("../academy_diffusion"):
    sys.path.insert(0, os.path.abspath(".."))
try:
    import academy_diffusion
except ImportError:  # Colab: an uploaded bundle (`make colab`) first, else this notebook's release
    routes = sorted(glob.glob("academy_diffusion-*.whl"))[-1:] + [os.environ.get("ACADEMY_PACKAGE", PACKAGE)]
    if not any(subprocess.run([sys.executable, "-m", "pip", "install", "-q", r]).returncode == 0 for r in routes):
        raise RuntimeError(
            "Could not install the course's package. Either upload the bundle academy_diffusion-*.whl (built by "
            "`make colab` in the course's repository) into this notebook's folder (on Colab: the Files pane), "
            f"or publish the repository so that pip can install {PACKAGE}; then run this cell again.") from None
    importlib.invalidate_caches()
from academy_diffusion.course import setup_lesson
ctx = setup_lesson("06")

# %%
import copy

import matplotlib.pyplot as plt
import torch

from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import cached_sample, course_model
from academy_diffusion.data import load_mnist
from academy_diffusion.metrics import fid_interval, real_baseline, timestep_sensitivity
from academy_diffusion.models import TimestepEmbedding
from academy_diffusion.plotting import plain_log_axis, plot_losses, show_rows
from academy_diffusion.course.claims import lesson_06
from academy_diffusion.course.reporting import report, save_figure
from academy_diffusion.training import loss_by_timestep, x0_error_by_timestep
from academy_diffusion.samplers import initial_noise, sample

# %% [markdown]
# ## 1. The switch
#
# `UNet(dead_time_embedding=True)` makes `TimestepEmbedding` return zeros whatever t is: the
# "return zeros" of the page's exercise. Everything else about the model and its training is
# identical to lesson 1's linear model.

# %%
emb = TimestepEmbedding(128, 128, dead=True)
t = torch.tensor([0, 250, 999])
print("dead embedding at t = 0, 250, 999 -> all zeros:", bool((emb(t) == 0).all()))

healthy = course_model("linear", ctx.profile, ctx.device)
dead = course_model("dead", ctx.profile, ctx.device)
if len(dead.meta["losses"]) != len(healthy.meta["losses"]):
    print("note: the two models were trained for different numbers of steps (see above); the loss comparison "
          "below is made at the same step count")

# %% [markdown]
# ## 2. Both losses fall

# %%
fig = plot_losses({"healthy": healthy.meta["losses"], "dead embedding": dead.meta["losses"]})
fig.axes[0].set_title("Same data, same steps, same seed")
save_figure(fig, "06_loss_curves")
plt.show()
h_loss, d_loss = torch.tensor(healthy.meta["losses"]), torch.tensor(dead.meta["losses"])
report("06_dead_timestep_embedding", loss_first_20_dead=d_loss[:20].mean().item(),
       loss_last_200_dead=d_loss[-200:].mean().item(), loss_last_200_healthy=h_loss[-200:].mean().item())

# %% [markdown]
# The dead model's loss falls almost as far as the healthy one's. Predicting the noise without
# knowing t is not hopeless: the amount of noise in x_t is visible in x_t itself (MNIST's
# background is flat black, so any grain on it is noise), and the network learns to estimate it.
# The gap between the two curves is small enough to dismiss as a "slightly worse" run.
#
# ## 3. Where it fails: the loss at each noise level
#
# The training curve averages over all t and hides *where* a model is wrong. Here is L_simple at
# fixed timesteps, on the same 256 test digits and the same noise for both models.

# %%
probe_x, _ = load_mnist("test", subset=256)
T_PROBE = [0, 5, 20, 50, 100, 200, 350, 500, 650, 800, 950, 999]
per_t = {name: loss_by_timestep(ck.model, ck.schedule, probe_x, T_PROBE)
         for name, ck in (("healthy", healthy), ("dead", dead))}
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, losses in per_t.items():
    ax.plot([t + 1 for t in T_PROBE], losses.numpy(), "o-", label=name)
ax.set(xlabel="noise level k (log scale)", ylabel="L_simple at that level",
       title="Loss per timestep: where the dead model pays")
plain_log_axis(ax, "x", (1, 10, 100, 1000))
plain_log_axis(ax, "y")
ax.grid(alpha=0.3)
ax.legend()
save_figure(fig, "06_loss_per_timestep")
plt.show()
ratio = per_t["dead"] / per_t["healthy"]
for t, r in zip(T_PROBE, ratio.tolist(), strict=True):
    print(f"k={t + 1:>4}: dead / healthy loss = {r:6.2f}")
worst_k = T_PROBE[int(ratio.argmax())] + 1
report("06_dead_timestep_embedding", worst_ratio_level=worst_k, worst_loss_ratio=ratio.max().item(),
       **{f"loss_ratio_k{t + 1}": r for t, r in zip(T_PROBE, ratio.tolist(), strict=True)})

# %% [markdown]
# What the shipped models show (run on the course's CPU): at low and middle noise the dead model's
# loss is close to the healthy one's, and at the noisiest levels it is many times higher (the
# ratios are printed above). The reason is what the dead network has to do instead of reading t:
# infer the noise level from x_t itself. With little noise that is easy, since every speck on
# MNIST's flat black background is noise. Near pure noise it is not: x_t at k = 800 and at k = 1,000
# both look like static, yet ᾱ (the share of signal left) differs greatly between them, so the
# network cannot tell how much of what it sees is digit, and its ε is mis-scaled.
#
# Why does training barely notice? Not because those levels are rare: t is drawn uniformly, so
# the levels above k = 800 are a fifth of every batch. It is because their loss is small in
# absolute terms: near pure noise x_t is almost ε itself, so even a mis-scaled guess is close
# (the printout below weighs the extra loss by the share of the batch it comes from).
#
# Why do the samples notice? Because the sampler does not use ε̂ directly; it steers towards the
# clean image ε̂ implies, x̂0 = (x_t − √(1−ᾱ) ε̂)/√ᾱ, and an error in ε̂ reaches x̂0 multiplied by
# √((1−ᾱ)/ᾱ): below 1 at low noise, over 100 at the noisiest level of the linear schedule, which is
# exactly where sampling starts. The right panel measures that error directly, on the same digits
# and noise (`x0_error_by_timestep`).

# %%
alpha_bars = healthy.schedule.alpha_bars[T_PROBE]
amplification = ((1 - alpha_bars) / alpha_bars).sqrt()
x0_err = {name: x0_error_by_timestep(ck.model, ck.schedule, probe_x, T_PROBE)
          for name, ck in (("healthy", healthy), ("dead", dead))}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].plot([t + 1 for t in T_PROBE], amplification.numpy(), "k.-")
axes[0].set(ylabel="√((1 − ᾱ) / ᾱ)", title="How much an ε error is amplified in x̂0")
for name, err in x0_err.items():
    axes[1].plot([t + 1 for t in T_PROBE], err.numpy(), "o-", label=name)
axes[1].axhline(1.0, color="gray", ls=":", lw=1, label="RMS error 1 (half the pixel range)")
axes[1].set(ylabel="RMS error of x̂0 (pixels in [-1, 1])", title="Error of the image the sampler steers towards")
axes[1].legend(fontsize=8)
for ax in axes:
    ax.set(xlabel="noise level k (log scale)")
    plain_log_axis(ax, "x", (1, 10, 100, 1000))
    plain_log_axis(ax, "y")
    ax.grid(alpha=0.3)
save_figure(fig, "06_x0_amplification")
plt.show()
noisy = [i for i, t in enumerate(T_PROBE) if t + 1 > 800]
gap = (per_t["dead"][noisy] - per_t["healthy"][noisy]).mean().item()
extra = 0.2 * gap  # levels above 800 are 20 % of a batch
print(f"levels k > 800: a fifth of every batch; the dead model's extra loss there ({gap:.4f} on average) adds about "
      f"{extra:.4f} to its batch loss, against a final training loss near {h_loss[-200:].mean():.4f}")
for name, err in x0_err.items():
    print(f"{name:>8}: RMS error of x̂0 at k = {T_PROBE[-1] + 1}: {err[-1]:.2f}, at k = {T_PROBE[6] + 1}: {err[6]:.3f}")
report("06_dead_timestep_embedding", extra_batch_loss_from_levels_above_800=extra,
       **{f"x0_rms_error_k{t + 1}_{name}": v for name, err in x0_err.items()
          for t, v in zip(T_PROBE, err.tolist(), strict=True)})

# %% [markdown]
# ## 4. Samples and FID
#
# Same sampler and same starting noise for both: DDIM-20 with η = 1, the course's sampler for
# unconditional models (lesson 2 measured it against η = 0 on these very models). FID at the
# profile's n, with its 90 % interval and the real-vs-real baseline at the same n. The healthy
# model's samples are lesson 2's linear-schedule η = 1 set (the same model, x_T and noise;
# `cached_sample` reads them from disk if lesson 2 ran first).

# %%
n = ctx.profile.fid_samples
steps = ctx.profile.ddim_steps
x_T = initial_noise(n, seed=0)
imgs = {name: cached_sample(ck.model, ck.schedule, n, sampler="ddim", steps=steps, eta=1.0, x_T=x_T).images
        for name, ck in (("healthy", healthy), ("dead", dead))}
fig = show_rows({name: x[:12] for name, x in imgs.items()}, title=f"Same x_T per column, DDIM-{steps}, η = 1")
save_figure(fig, "06_samples")
plt.show()
ddpm = {name: sample(ck.model, ck.schedule, 12, sampler="ddpm", x_T=x_T[:12], progress=False).images
        for name, ck in (("healthy", healthy), ("dead", dead))}
fig = show_rows(ddpm, title="The same, with DDPM-1000")
plt.show()

classifier, _ = load_classifier(ctx.device)
fids = {name: fid_interval(x, classifier) for name, x in imgs.items()}
baseline = real_baseline(classifier, n)
for name, (value, lo, hi) in fids.items():
    print(f"{name:>8}: FID {value:7.1f} (90 % interval {lo:.1f}-{hi:.1f}; n = {n}, unguided, DDIM-{steps}, η = 1)")
print(f"real-vs-real at n = {n}: {baseline:.1f} (FID's bias at this n: what two sets of real digits score)")
report("06_dead_timestep_embedding", n=n, fid_healthy=fids["healthy"][0], fid_dead=fids["dead"][0],
       fid_real_vs_real_same_n=baseline)

# %% [markdown]
# The dead model's samples do not smear evenly. For some starting noises it lands on a clean digit
# much like the healthy model's; for others it never leaves the static. Which ones fail depends on
# whether its guesses of the noise level in the first, noisiest steps happen to be right: the
# levels where x̂0 amplifies its errors most (section 3). FID, which averages over all samples,
# puts the dead model far behind.
#
# ## 5. The health check, and where its bar comes from
#
# `timestep_sensitivity` feeds the *same* noisy images to the model at t = 0, 250, 500, 750, 999
# and measures which share of its output changes with t. A healthy model must answer differently
# (at t = 999 almost all of x_t is noise, at t = 0 almost none), so the share is large; a dead
# embedding gives exactly zero. It costs five forward passes: run it whenever a diffusion model
# trains slowly or samples badly.
#
# A bug is rarely all or nothing, so we also *weaken* the healthy model's embedding: each
# embedding is blended towards the one of a fixed t = 500, e(t) → (1 − a)·e(t) + a·e(500). At
# a = 1 the network sees the same embedding for every t: dead again, though not zero. To tie the
# check to what matters, each weakened model also samples (the same sampler, on the first
# `fast_samples` noises) and is scored against the intact model (a = 0).

# %%
class Blended(torch.nn.Module):
    """A timestep embedding pulled towards a constant: (1 - a) e(t) + a e(500)."""

    def __init__(self, embedding, a):
        super().__init__()
        self.embedding, self.a = embedding, a

    def forward(self, t):
        return (1 - self.a) * self.embedding(t) + self.a * self.embedding(torch.full_like(t, 500))

images, _ = load_mnist("test", subset=500)
probes = [healthy.schedule.q_sample(images[100 * k:100 * (k + 1)], torch.full((100,), 500),
                                    torch.randn((100, 1, 28, 28), generator=torch.Generator().manual_seed(k)))
          for k in range(5)]  # five draws of 100 digits and noise: the check's own noise


def sensitivity(model):
    """The health check, averaged over the five probes; also the spread of the five readings."""
    readings = torch.tensor([timestep_sensitivity(model, p) for p in probes])
    return readings.mean().item(), readings.std().item()

health = {name: sensitivity(ck.model) for name, ck in (("healthy", healthy), ("dead", dead))}
noise = health["healthy"][1]
bar = health["healthy"][0] - 3 * noise
BLEND = [0.0, 0.1, 0.25, 0.5, 1.0]
m = ctx.profile.fast_samples
weakened, blend_fid = {}, {}
for a in BLEND:
    model = copy.deepcopy(healthy.model)
    model.time_embedding = Blended(model.time_embedding, a)
    weakened[a] = sensitivity(model)[0]
    if a < 1.0:
        out = sample(model, healthy.schedule, m, sampler="ddim", steps=steps, eta=1.0, x_T=x_T[:m], progress=False)
        blend_fid[a] = fid_interval(out.images, classifier)
for name, (v, spread) in health.items():
    print(f"{name:>8}: share of the output that depends on t = {v:.4f} (spread over 5 probes {spread:.4f})")
print(f"bar: {bar:.4f} = the healthy reading minus 3 times its spread (the check's own noise)")
for a, v in weakened.items():
    shown = f"FID {blend_fid[a][0]:7.1f} ({blend_fid[a][1]:.1f}-{blend_fid[a][2]:.1f}; n = {m})" if a in blend_fid else ""
    flag = "below the bar" if v < bar else "passes"
    print(f"  healthy model, embedding blended with a = {a:<4}: sensitivity {v:.4f} ({flag})  {shown}")
report("06_dead_timestep_embedding", sensitivity_healthy=health["healthy"][0], sensitivity_dead=health["dead"][0],
       sensitivity_noise=noise, sensitivity_bar=bar, **{f"sensitivity_blend_{a:g}": v for a, v in weakened.items()},
       **{f"fid_blend_{a:g}": f[0] for a, f in blend_fid.items()})

# %% [markdown]
# The check falls with the embedding's strength and reads zero (up to round-off) whenever t no
# longer reaches the network, whether the embedding is zero or merely constant. Its bar comes from
# its own noise: five probes of 100 digits each give the healthy model slightly different readings,
# and only a reading well below their spread says anything. Now compare the two columns. The mildest
# weakening passes the check, within its noise of the intact model, yet its samples are measurably
# worse: the network was trained with *these* embeddings and suffers from any change to them. The
# check is a smoke alarm for an embedding that is dead or badly broken (it reads far below the bar),
# not a gauge of sample quality; only samples and their FID grade that.
#
# ## 6. Check the claims on numbers
#
# * The dead model's loss fell like a healthy model's: over the last tenth of its steps, its mean
#   is within 50 % of the healthy model's mean over the same steps.
# * It fails unevenly across noise levels: at its worst level its loss is more than twice the
#   healthy model's, and that level is among the noisiest (k > 800), where x̂0 amplifies the error:
#   there the dead model's x̂0 is off by more than twice as much as the healthy model's.
# * Its samples are worse: the intervals of the two FIDs are apart.
# * The health check falls as the embedding weakens; the dead model and the strongly weakened copies
#   (a ≥ 0.25) read below the bar set by the check's own noise.
# * It is a smoke alarm, not a quality gauge: the mildest weakening (a = 0.1) passes the check while
#   its FID interval lies above the intact model's.

# %%
steps_common = min(len(d_loss), len(h_loss))  # compare at the same step count, whatever each was trained for
tenth = steps_common // 10
lesson_06(loss_end={name: x[steps_common - tenth:steps_common].mean().item() for name, x in
                    (("healthy", h_loss), ("dead", d_loss))},
          loss_ratio=dict(zip([t + 1 for t in T_PROBE], ratio.tolist(), strict=True)),
          x0_error={name: dict(zip([t + 1 for t in T_PROBE], e.tolist(), strict=True)) for name, e in x0_err.items()},
          fids=fids, health={k: v[0] for k, v in health.items()}, bar=bar,
          blend=[(a, weakened[a], blend_fid.get(a)) for a in BLEND])

# %% [markdown]
# **Takeaways.** A falling loss does not prove the network uses t. When training converges
# slowly or samples look wrong, check the timestep embedding first: it is the one input that
# tells a single network which of its 1,000 jobs to do.
