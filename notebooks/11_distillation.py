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
# # Lesson 11 · Distillation: from 2 × 20 network calls to 1
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/notebooks/11_distillation.ipynb)
#
# The course page gives two pieces of advice about slow sampling. Its list of fast samplers ends with
# "consistency models — distill a pretrained diffusion into a one- or two-step generator", and its common
# mistakes warn against "shipping a 1000-step DDPM sampler to production — distill or switch sampler".
# Lessons 3 and 7 switched sampler. This lesson distills, and measures what that buys over the best
# sampler at the **same number of network calls**, and what it costs.
#
# Guided sampling pays twice: each step of lesson 4's guided model runs the network on the conditional
# and the unconditional input. Distilling at a fixed w removes that factor too, which is how production
# text-to-image models ship guidance.
#
# 1. the method, and its target written out; one training step;
# 2. the students at 1, 2 and 4 steps beside the teacher with DDIM and DPM-Solver++ at the same calls;
# 3. FID and accuracy against network calls (n = 10,000, recorded), and the verdict;
# 4. what distillation cost: its training time on this device;
# 5. what is lost: diversity, and the freedom to change w.
#
# Exercise: `exercises/11_distillation.ipynb` (the distillation target, checked).

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
ctx = setup_lesson("11")

# %%
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch

from academy_diffusion.classifier import load_classifier
from academy_diffusion.course import course_model, course_students
from academy_diffusion.course.pretrain import read_manifest
from academy_diffusion.course.claims import lesson_11
from academy_diffusion.course.reporting import report, save_figure
from academy_diffusion.data import balanced_labels, load_mnist
from academy_diffusion.device import autocast, time_interleaved
from academy_diffusion.distillation import (
    VPrediction,
    alpha_sigma,
    ddim_jump,
    distill,
    student_timesteps,
    two_step_target,
    v_loss,
)
from academy_diffusion.metrics import class_metrics, fid_interval, real_baseline
from academy_diffusion.plotting import log_cost_axis, show_rows
from academy_diffusion.samplers import GUIDANCE_W, initial_noise, predict_noise, sample
from academy_diffusion.training import train

# %% [markdown]
# ## 1. Progressive distillation, with the guidance distilled in
#
# Two published methods turn a many-step sampler into a one- or two-step one:
#
# * **progressive distillation** (Salimans & Ho 2022): a student learns to do in *one* deterministic DDIM
#   step what its teacher does in *two*; the student becomes the next round's teacher, and the step count
#   halves each round: 16 → 8 → 4 → 2 → 1;
# * **consistency distillation** (Song et al. 2023): a student learns to map *every* point of a sampling
#   path straight to the path's end, trained so that two neighbouring points map to the same image.
#
# The course uses progressive distillation. Its target is exact (the teacher's own two DDIM steps, no ODE
# solver to tune), each round is a short fine-tuning that starts from the teacher's weights, and the
# intermediate students (4 and 2 steps) come for free. Consistency distillation trains one model for all
# step counts but needs many more training iterations and a different parameterisation of the network,
# more than a CPU budget of minutes per round allows.
#
# Before the first round, a **guidance round** (Meng et al. 2023) teaches the student to predict in one
# call, with the digit's label, what the guided teacher predicts with two: ε̂ = ε_uncond + w (ε_cond −
# ε_uncond) at the course's w = 2. After it, one student step costs one network call.
#
# **The target.** From a noisy z_t the teacher takes two DDIM steps, t → t_mid → t_next, and lands on
# z_next. One DDIM step of the student from z_t with its estimate x̂ of the clean image lands on
# z_next = α_next x̂ + σ_next (z_t − α_t x̂) / σ_t (α = √ᾱ, σ = √(1 − ᾱ)). Solving for x̂ gives the x̂ that
# lands exactly where the teacher does:
#
# $$\tilde x = \frac{z_\text{next} - (\sigma_\text{next}/\sigma_t)\, z_t}{\alpha_\text{next} - (\sigma_\text{next}/\sigma_t)\,\alpha_t}.$$
#
# **The parameterisation.** A one-step student must turn pure noise into a digit, and with ε-prediction
# x̂0 = (z_T − σ_T ε̂)/α_T divides by α_T = 0.006 on the linear schedule: any error in ε̂ grows 160-fold.
# The students predict v = α ε − σ x0 instead (x̂0 = α z − σ v, no division) and are trained on the mean
# squared error in v. The package's `VPrediction` wraps such a network so that it still returns ε, and
# every sampler of the course runs it unchanged.
#
# Below, the target for a batch of real digits at the first round's grid, by hand and by the package,
# and the property that defines it. The teacher is lesson 4's `cfg` model, guided at w = 2.

# %%
teacher = course_model("cfg", ctx.profile, ctx.device)
schedule = teacher.schedule
T = schedule.T
images, labels = load_mnist("train", device=ctx.device, subset=ctx.profile.train_images)
x0, y = images[:32], labels[:32]
fine = student_timesteps(T, 16) + [-1]                      # the teacher's grid of 16 steps (-1: the clean image)
i = 2 * torch.arange(32, device=ctx.device) % 16             # a student step starts at an even grid position
t, t_mid, t_next = (torch.tensor(fine, device=ctx.device)[i + k] for k in (0, 1, 2))
z_t = schedule.q_sample(x0, t, torch.randn_like(x0))
with torch.no_grad(), autocast(ctx.device):
    eps = predict_noise(teacher.model, z_t, t, y, GUIDANCE_W)
    z_mid = ddim_jump(schedule, z_t, t, t_mid, eps)                                          # teacher step 1
    z_next = ddim_jump(schedule, z_mid, t_mid, t_next, predict_noise(teacher.model, z_mid, t_mid, y, GUIDANCE_W))
    (a, s), (a_next, s_next) = alpha_sigma(schedule, t), alpha_sigma(schedule, t_next)
    by_hand = (z_next - s_next / s * z_t) / (a_next - s_next / s * a)                     # the formula above
    package = two_step_target(teacher.model, schedule, z_t, t, t_mid, t_next, y, GUIDANCE_W)
one_step = a_next * by_hand + s_next * (z_t - a * by_hand) / s   # the student's DDIM step with x̂ = the target
print(f"target by hand vs package: largest difference {(by_hand - package).abs().max():.2e}")
print(f"one student step with the target lands on the teacher's two steps: largest miss "
      f"{(one_step - z_next).abs().max():.2e} (the teacher's steps moved z by "
      f"{(z_next - z_t).abs().mean():.3f} on average)")
assert torch.allclose(by_hand, package, atol=1e-4) and torch.allclose(one_step, z_next, atol=1e-4)

# %% [markdown]
# One training step of the first progressive round: the student starts as a copy of its teacher and
# moves its v towards the one that points at the target.

# %%
students = course_students(ctx.profile, ctx.device)  # the shipped (or cached) chain of students
student = VPrediction(copy.deepcopy(teacher.model).train().requires_grad_(True), schedule)
opt = torch.optim.AdamW(student.net.parameters(), lr=1e-4)
with autocast(ctx.device):
    loss = v_loss(student, schedule, z_t, t, package.float(), y)
opt.zero_grad()
loss.backward()
opt.step()
print(f"v-loss of an untrained student (a copy of the ε-teacher, read as v): {loss.item():.4f}")
recorded = read_manifest().get("distilled", {}) if ctx.profile.pretrained else {}
rounds = students[min(students)].meta["rounds"]  # the 1-step student's record lists every round
for r in rounds:
    name = ("guidance round (2 calls -> 1)" if r["steps"] is None
            else f"{2 * r['steps']} -> {r['steps']} step{'s' * (r['steps'] > 1)}")
    print(f"  {name:>30}: final v-loss {r['final_loss']:.4f}, {r['seconds']:.0f} s")

# %% [markdown]
# ## 2. Samples at equal network calls
#
# Every row starts from the same x_T, column by column, and asks for the digits 0-9. A guided teacher step costs **two** calls; a student step one. So at 2 calls the teacher takes one guided
# step, at 4 calls two. The teacher can also give up guidance (w = 1, one call a step), which is the fairest
# single-call comparison.

# %%
n_show = 10
grid_labels = torch.arange(n_show)
x_show = initial_noise(n_show, seed=4)


def draw(kind: str, calls: int, n: int, x_T, lab):
    """Images from one of the compared samplers at ``calls`` network calls."""
    if kind == "student":
        return sample(students[calls].model, schedule, n, sampler="ddim", timesteps=student_timesteps(T, calls),
                      labels=lab, x_T=x_T, progress=False).images
    if kind == "teacher, w = 1, DPM-Solver++":
        return sample(teacher.model, schedule, n, sampler="dpm++2m", steps=calls, labels=lab, w=1.0, x_T=x_T,
                      progress=False).images
    sampler = "ddim" if "DDIM" in kind else "dpm++2m"
    return sample(teacher.model, schedule, n, sampler=sampler, steps=calls // 2, labels=lab, w=GUIDANCE_W,
                  x_T=x_T, progress=False).images


KINDS = ("student", "teacher, w = 1, DPM-Solver++", f"teacher, w = {GUIDANCE_W:g}, DDIM",
         f"teacher, w = {GUIDANCE_W:g}, DPM-Solver++")
rows = {}
for calls in (1, 2, 4):
    for kind in KINDS:
        if kind.startswith("teacher, w = 2") and calls == 1:
            continue  # a guided step needs two calls
        rows[f"{calls} call{'s' * (calls > 1)}: {kind}"] = draw(kind, calls, n_show, x_show, grid_labels)
rows[f"reference: teacher, w = {GUIDANCE_W:g}, DDIM-20 (40 calls)"] = sample(
    teacher.model, schedule, n_show, sampler="ddim", steps=20, labels=grid_labels, w=GUIDANCE_W, x_T=x_show,
    progress=False).images
fig = show_rows(rows, title="Digits 0-9, the same x_T in each column")
save_figure(fig, "11_samples_by_calls")
plt.show()

# %% [markdown]
# Two things in the teacher's rows are the parameterisation and the grid, not the model. One step of the
# ε-predicting teacher from pure noise is x̂0 = (z_T − σ_T ε̂)/α_T: its errors are multiplied by about 160,
# hence the speckle at 1 call (and at 2 calls with guidance, which is one guided step). And the course's
# DDIM spacing includes both ends (lesson 3): with 2 steps its second step starts at t = 0, where there is
# nothing left to do, so guided DDIM at 4 calls is no better than at 2. DPM-Solver++'s spacing, which the
# students also use, does not waste the call.
#
# ## 3. FID and accuracy against network calls
#
# FID needs thousands of samples per point: the course measured the whole table once, offline, at
# n = 10,000 (1,000 per digit) from one x_T (`python -m academy_diffusion.course.pretrain --distill`),
# with 90 % bootstrap intervals. This lesson reads it and, live, measures class accuracy at a smaller n.

# %%
metrics = recorded.get("metrics")
classifier, _ = load_classifier(ctx.device)
n_live = ctx.profile.fast_samples
live_labels = balanced_labels(n_live)
x_live = initial_noise(n_live, seed=0)
live = {}
for calls, kind in ((1, "student"), (2, "student"), (4, "student"), (4, f"teacher, w = {GUIDANCE_W:g}, DPM-Solver++"),
                    (4, "teacher, w = 1, DPM-Solver++")):
    out = draw(kind, calls, n_live, x_live, live_labels)
    live[kind, calls] = class_metrics(classifier, out, live_labels)["accuracy"]
    print(f"live: {kind:>30} at {calls} call{'s' * (calls > 1)}: accuracy {live[kind, calls]:.3f} (n = {n_live})")
KEYS = {"student": lambda k: f"student-{k}", "teacher, w = 1, DPM-Solver++": lambda k: f"teacher-dpm++-w1-{k}",
        f"teacher, w = {GUIDANCE_W:g}, DDIM": lambda k: f"teacher-ddim-w{GUIDANCE_W:g}-{k // 2}",
        f"teacher, w = {GUIDANCE_W:g}, DPM-Solver++": lambda k: f"teacher-dpm++-w{GUIDANCE_W:g}-{k // 2}"}
fig, ax = plt.subplots(figsize=(7, 4))
if metrics:
    print(f"\nrecorded (n = {metrics['n']:,}, w = {metrics['w']:g} where guided; real-vs-real at this n "
          f"{metrics['fid_real_vs_real_same_n']:.1f}):")
    for kind, key in KEYS.items():
        pts = [(k, metrics[key(k)]) for k in (1, 2, 4) if key(k) in metrics]
        for k, r in pts:
            print(f"  {kind:>30} at {k} call{'s' * (k > 1)}: FID {r['fid']:8.1f} [{r['lo']:.1f}-{r['hi']:.1f}], "
                  f"accuracy {r['accuracy']:.3f}")
        ks, f = [k for k, _ in pts], np.array([r["fid"] for _, r in pts])
        err = [f - [r["lo"] for _, r in pts], [r["hi"] for _, r in pts] - f]
        ax.errorbar(ks, f, yerr=err, fmt="o-", capsize=3, label=kind)
    ref = metrics[f"teacher-ddim-w{GUIDANCE_W:g}-20"]
    print(f"  reference: teacher DDIM-20 at w = {GUIDANCE_W:g} (40 calls): FID {ref['fid']:.1f} at n = {ref['n']:,}"
          f" (real-vs-real {metrics['fid_real_vs_real_n_pr']:.1f} at that n)")
    cfg_w = teacher.meta.get("metrics", {}).get(f"w{GUIDANCE_W:g}")
    if cfg_w:
        print(f"  the teacher's own record, DDIM-20 at w = {GUIDANCE_W:g} (40 calls): FID {cfg_w['fid']:.1f} at "
              f"n = {cfg_w['n']:,}, accuracy {cfg_w['accuracy']:.3f}")
    ax.axhline(metrics["fid_real_vs_real_same_n"], color="gray", ls="--",
               label=f"real vs real (n = {metrics['n']:,})")
    ax.set(yscale="log", ylabel=f"FID (n = {metrics['n']:,}, recorded)")
else:  # trained here (full or smoke profile): the recorded table is of the shipped students
    ax.text(0.5, 0.5, "no recorded table for these students:\npython -m academy_diffusion.course.pretrain "
            "--distill 2000", ha="center", va="center", transform=ax.transAxes, fontsize=8)
ax.set_title("FID against network calls (90 % intervals)")
log_cost_axis(ax, (1, 2, 4), "network calls per sample")
save_figure(fig, "11_fid_vs_calls")
plt.show()
report("11_distillation", n_live=n_live, **{f"accuracy_{KEYS[kind](calls)}": v for (kind, calls), v in live.items()})

# %% [markdown]
# ## 4. What distillation cost
#
# The recorded rounds above took the printed seconds on the machine that trained them. On this device,
# one distillation step (the teacher's two calls, or the guided teacher's two passes, plus the student's
# forward and backward) against one ordinary training step of the same network, timed in alternation:

# %%
steps_timed = 3 if ctx.profile.name == "smoke" else 6
work = {"distillation step": lambda: distill(VPrediction(copy.deepcopy(students[2].model.net).train()
                                                         .requires_grad_(True), schedule), students[4].model,
                                             schedule, images, labels, student_steps=2, train_steps=steps_timed,
                                             progress=False),
        "training step": lambda: train(copy.deepcopy(teacher.model).train().requires_grad_(True), images, schedule,
                                       labels, steps=steps_timed, batch_size=64, progress=False)}
timing = time_interleaved(work, device=ctx.device)
per_step = {k: v / steps_timed for k, v in timing.items()}
total_steps = len(rounds) * students[min(students)].meta["recipe"]["train_steps"]
projected = total_steps * per_step["distillation step"]
print(f"one distillation step {per_step['distillation step'] * 1e3:.0f} ms, one training step "
      f"{per_step['training step'] * 1e3:.0f} ms (batch 64, {ctx.device.type})")
print(f"the whole chain, {len(rounds)} rounds x {total_steps // len(rounds):,} steps, would take about "
      f"{projected / 60:.0f} min here; the teacher itself was trained for {teacher.meta['seconds'] / 60:.0f} min "
      f"on {teacher.meta['device']}")
report("11_distillation", distill_step_ms=1e3 * per_step["distillation step"],
       train_step_ms=1e3 * per_step["training step"], projected_minutes=projected / 60)

# %% [markdown]
# ## 5. What is lost
#
# **Diversity.** Recall (lesson 8) asks how much of the real digits' feature space the samples cover.
# The recorded table holds it for every sampler, against the guided teacher's DDIM-20:

# %%
if metrics:
    ref = metrics[f"teacher-ddim-w{GUIDANCE_W:g}-20"]
    print(f"precision / recall on n = {metrics['n_pr']:,} against as many real digits:")
    print(f"  {'teacher DDIM-20 (40 calls)':>34}: {ref['precision']:.3f} / {ref['recall']:.3f}")
    for k in (1, 2, 4):
        r = metrics[f"student-{k}"]
        print(f"  {f'student, {k} call' + 's' * (k > 1):>34}: {r['precision']:.3f} / {r['recall']:.3f}")
    r = metrics[f"teacher-dpm++-w{GUIDANCE_W:g}-2"]
    print(f"  {'teacher DPM-Solver++, 4 calls':>34}: {r['precision']:.3f} / {r['recall']:.3f}")

# %% [markdown]
# **The freedom to change w.** The teacher can be guided at any w after training. The student learned
# the teacher at w = 2: its single call already contains the guidance. Guiding the student again, with the
# null label the teacher used for "no class", asks its weights for an unconditional prediction they were
# never trained to keep:

# %%
w_new = 3.0
x_w = initial_noise(n_live, seed=6)
at_new_w = {
    f"teacher at w = {w_new:g} (DPM-Solver++, 8 calls)": sample(teacher.model, schedule, n_live, sampler="dpm++2m",
                                                               steps=4, labels=live_labels, w=w_new, x_T=x_w,
                                                               progress=False).images,
    f"student (4 steps) guided again at w = {w_new:g} (8 calls)": sample(
        students[4].model, schedule, n_live, sampler="ddim", timesteps=student_timesteps(T, 4), labels=live_labels,
        w=w_new, x_T=x_w, progress=False).images,
    "student (4 steps) as trained (4 calls)": draw("student", 4, n_live, x_w, live_labels)}
new_w_accuracy = {name: class_metrics(classifier, x, live_labels)["accuracy"] for name, x in at_new_w.items()}
new_w_fid = {name: fid_interval(x, classifier) for name, x in at_new_w.items()}
for name in at_new_w:
    f, lo, hi = new_w_fid[name]
    print(f"{name:>52}: accuracy {new_w_accuracy[name]:.3f}, FID {f:.1f} ({lo:.1f}-{hi:.1f}; n = {n_live})")
print(f"real-vs-real FID at n = {n_live}: {real_baseline(classifier, n_live):.1f}")
fig = show_rows({name: x[:12] for name, x in at_new_w.items()}, title=f"Changing w after distillation (w = {w_new:g})")
save_figure(fig, "11_new_w")
plt.show()
if metrics:
    a, b = metrics["student-4-at-w3"], metrics["student-4"]
    print(f"recorded at n = {metrics['n']:,}: the 4-step student guided again at w = 3: FID {a['fid']:.1f}, accuracy "
          f"{a['accuracy']:.3f}, recall {a['recall']:.3f} (n = {metrics['n_pr']:,}); as trained: FID {b['fid']:.1f}, "
          f"accuracy {b['accuracy']:.3f}, recall {b['recall']:.3f}")
report("11_distillation", **{f"new_w_fid_{i}": v[0] for i, v in enumerate(new_w_fid.values())})

# %% [markdown]
# ## 6. The verdict
#
# Read from the recorded intervals (n = 10,000 per point) and this lesson's measurements; each sentence
# is checked in the cell below:
#
# * **At every budget on the plot, 1, 2 and 4 network calls, the student beats the teacher's best
#   sampler at the same cost**, with intervals apart, and by a wide margin: one guided teacher step (2
#   calls) is a blur, and the teacher's best sampler at each of these budgets, DPM-Solver++ without
#   guidance (w = 1, one call a step), stays far behind. The 4-step student's FID is even below what the
#   course recorded for the teacher's own DDIM-20 at the same w (printed with the table), at a tenth of
#   the calls.
# * **The cost**: the rounds' training time (section 4), paid once on top of the teacher's, and two
#   losses (section 5): less diversity (recall) than the teacher, the fewer the steps the less; and w is
#   frozen. Guiding the student again keeps its class accuracy and ruins its FID and recall: a distilled
#   model is a product decision that fixes one w.
#
# %%
guided_again, as_trained = list(new_w_fid.values())[1:]
lesson_11(metrics, teacher.meta.get("metrics", {}).get(f"w{GUIDANCE_W:g}"), guided_again, as_trained, w_new, n_live)
