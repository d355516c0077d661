"""Interactive explorers for the lessons (ipywidgets): scrub a sampling trajectory, turn the
guidance knob. Both show PNG images, so they render in JupyterLab, Colab and VS Code alike."""

from __future__ import annotations

import ipywidgets as W
import torch

from .plotting import png_bytes
from .samplers import sample


def trajectory_slider(trajectory: dict, nrow: int = 8) -> W.VBox:
    """A slider over the page level k (T = pure noise ... 0 = sample) showing the states x_k.

    ``trajectory`` is :attr:`SampleResult.trajectory` (level -> ``[n, 1, 28, 28]``).
    """
    levels = sorted(trajectory)
    image = W.Image(format="png", value=png_bytes(trajectory[levels[-1]], nrow))
    slider = W.SelectionSlider(options=levels[::-1], value=levels[-1], description="level k",
                               continuous_update=True, layout=W.Layout(width="90%"))
    caption = W.Label()

    def update(change=None):
        k = slider.value
        image.value = png_bytes(trajectory[k], nrow)
        state = "pure noise" if k == levels[-1] else "finished sample" if k == 0 else "partly denoised"
        caption.value = f"x_{k}: {state}"

    slider.observe(update, names="value")
    update()
    return W.VBox([slider, caption, image])


def guidance_explorer(model, schedule, steps: int = 20, n: int = 8, seed: int = 0) -> W.VBox:
    """Sliders for the guidance scale w and the digit: DDIM-``steps`` samples from the same noise."""
    w_slider = W.FloatSlider(value=3.0, min=0.0, max=10.0, step=0.5, description="w", continuous_update=False)
    digit = W.IntSlider(value=3, min=0, max=9, description="digit", continuous_update=False)
    image = W.Image(format="png")
    caption = W.Label()

    def update(change=None):
        labels = torch.full((n,), digit.value, dtype=torch.long)
        out = sample(model, schedule, n, sampler="ddim", steps=steps, labels=labels, w=w_slider.value, seed=seed,
                     progress=False)
        image.value = png_bytes(out.images, n)
        caption.value = f"digit {digit.value}, w = {w_slider.value:g}, DDIM-{steps}, seed {seed}"

    w_slider.observe(update, names="value")
    digit.observe(update, names="value")
    update()
    return W.VBox([W.HBox([w_slider, digit]), caption, image])
