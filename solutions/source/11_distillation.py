# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 11 · Distillation: the target and the loss of one round
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/academy-diffusion/academy-diffusion/blob/v0.2.0/exercises/11_distillation.ipynb)
#
# Goes with lesson 11. You write the loss of one round of progressive distillation with a guided teacher,
# then check it against the package on the course's shipped teacher.
#
# **`distillation_loss(student, teacher, z_t, t, t_mid, t_next, labels, w, alpha_bars)`**, for a batch of noisy
# codes `z_t` (`[B, C, H, W]`) all at code index `t` (an int), with `t_mid` and `t_next` the next two points of the
# teacher's grid (ints; `t_next = -1` means the clean image, where ᾱ = 1):
#
# 1. With α = √ᾱ and σ = √(1 − ᾱ) (`alpha_bars[t]`, or 1 at −1), the **teacher** takes two deterministic DDIM
#    steps t → t_mid → t_next. One step from s to s': x̂0 = (z − σ_s ε̂)/α_s, then z' = α_s' x̂0 + σ_s' ε̂.
#    The teacher is guided: ε̂ = ε_uncond + w (ε_cond − ε_uncond), with ε_cond = `teacher(z, s, labels)` and
#    ε_uncond = `teacher(z, s, null)` where `null` is a `[B]` tensor filled with the null label `teacher.null_class`
#    (10); `s` is passed as a `[B]` tensor. The teacher is fixed: no gradient may flow into it. (The package
#    also clamps x̂0 to [−1, 1] as the course's sampler does; leave that out here.)
# 2. The **target** is the clean image x̃ that takes the student from z_t to the teacher's z_next in one step:
#    x̃ = (z_next − (σ_next/σ_t) z_t) / (α_next − (σ_next/σ_t) α_t).
# 3. The **student** predicts v: return the mean squared error between `student(z_t, t, labels)` (t as a `[B]`
#    tensor) and v_target = (α_t z_t − x̃) / σ_t.

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
ctx = setup_lesson("exercise 11")

# %%
import torch

from academy_diffusion.course import checks, course_students
from academy_diffusion.data import load_mnist
from academy_diffusion.distillation import student_timesteps, two_step_target, v_loss

# %% tags=["solution"]
def distillation_loss(student, teacher, z_t, t, t_mid, t_next, labels, w, alpha_bars):
    """Mean squared error between the student's v at (z_t, t) and the v of the two-step target of the guided teacher."""
    ### BEGIN SOLUTION
    def alpha_sigma(s):
        abar = torch.tensor(1.0) if s < 0 else alpha_bars[s]
        return abar.sqrt(), (1 - abar).sqrt()

    def teacher_step(z, s, s_next):
        ts = torch.full((len(z),), s)
        eps_cond = teacher(z, ts, labels)
        eps_uncond = teacher(z, ts, torch.full_like(labels, teacher.null_class))
        eps = eps_uncond + w * (eps_cond - eps_uncond)
        (a, sig), (a_next, sig_next) = alpha_sigma(s), alpha_sigma(s_next)
        return a_next * (z - sig * eps) / a + sig_next * eps

    with torch.no_grad():
        z_next = teacher_step(teacher_step(z_t, t, t_mid), t_mid, t_next)
    (a, sig), (a_next, sig_next) = alpha_sigma(t), alpha_sigma(t_next)
    target = (z_next - sig_next / sig * z_t) / (a_next - sig_next / sig * a)
    v_target = (a * z_t - target) / sig
    return ((student(z_t, torch.full((len(z_t),), t), labels) - v_target) ** 2).mean()
    ### END SOLUTION

# %% tags=["needs-solution"]
checks.check_distillation_loss(distillation_loss)

# %% [markdown]
# ## Your loss on the course's students
#
# The round that made the 2-step student: its teacher is the 4-step student (one call a step, already guided,
# so w = 1 here) on real digits noised to the first step of the 4-step grid. Your loss against the package's
# (which also clamps x̂0 to [−1, 1], so small differences can remain), for the trained 2-step student and, as the
# round's starting point, for a copy of its teacher.

# %% tags=["needs-solution"]
students = course_students(ctx.profile, ctx.device)
schedule = students[4].schedule.to(ctx.device)
x, y = load_mnist("test")
x, y = x[:64].to(ctx.device), y[:64].to(ctx.device)
grid = student_timesteps(schedule.T, 4) + [-1]
t, t_mid, t_next = grid[0], grid[1], grid[2]
z_t = schedule.q_sample(x, torch.full((64,), t, device=ctx.device), torch.randn_like(x))
tt = torch.full((64,), t, device=ctx.device)
with torch.no_grad():
    target = two_step_target(students[4].model, schedule, z_t, tt, torch.full_like(tt, t_mid),
                             torch.full_like(tt, t_next), y)
    for name, student in (("the trained 2-step student", students[2].model), ("its starting point", students[4].model)):
        yours = distillation_loss(student.velocity, students[4].model, z_t, t, t_mid, t_next, y, 1.0,
                                  schedule.alpha_bars)
        print(f"{name:>28}: your loss {yours.item():.4f}, the package's {v_loss(student, schedule, z_t, tt, target, y).item():.4f}")
