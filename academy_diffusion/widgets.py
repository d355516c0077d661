"""Interactive explorers for the lessons (ipywidgets): scrub a sampling trajectory, turn the
guidance knob, judge pairs of sample grids against FID. All show PNG images, so they render in
JupyterLab, Colab and VS Code alike."""

from __future__ import annotations

import ipywidgets as W
import torch

from .plotting import png_bytes
from .samplers import GUIDANCE_W, sample


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
    w_slider = W.FloatSlider(value=GUIDANCE_W, min=0.0, max=10.0, step=0.5, description="w", continuous_update=False)
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


class PairwiseStudy:
    """A small human evaluation: pairs of sample sets, a rater picks the better one of each pair.

    ``pairs`` is a list of ``(name_a, images_a, name_b, images_b)``; ``fid`` maps each name to its
    FID. :meth:`record` takes ``"a"`` or ``"b"`` for the current pair; :meth:`agreement` is the
    share of decided pairs where the rater preferred the set with the lower FID. The widget
    (:meth:`widget`) is the person's way in; :meth:`run` takes a scripted rater (CI's way in).
    """

    def __init__(self, pairs: list, fid: dict):
        self.pairs, self.fid, self.choices = pairs, fid, []

    @property
    def done(self) -> bool:
        return len(self.choices) == len(self.pairs)

    def record(self, choice: str) -> None:
        if choice not in ("a", "b"):
            raise ValueError(f"choice must be 'a' or 'b', got {choice!r}")
        if self.done:
            raise ValueError("every pair has been judged already")
        self.choices.append(choice)

    def fid_prefers(self, i: int) -> str:
        name_a, _, name_b, _ = self.pairs[i]
        return "a" if self.fid[name_a] < self.fid[name_b] else "b"

    def agreement(self) -> float:
        """Share of judged pairs where the rater and FID agree (NaN before the first judgement)."""
        if not self.choices:
            return float("nan")
        return sum(c == self.fid_prefers(i) for i, c in enumerate(self.choices)) / len(self.choices)

    def run(self, rater) -> float:
        """Judge every remaining pair with ``rater(images_a, images_b) -> "a" | "b"``; returns agreement()."""
        while not self.done:
            _, a, _, b = self.pairs[len(self.choices)]
            self.record(rater(a, b))
        return self.agreement()

    def widget(self, nrow: int = 8) -> W.VBox:
        """Two grids side by side, a button under each; the tally appears when every pair is judged."""
        left, right = W.Image(format="png"), W.Image(format="png")
        pick_a, pick_b = W.Button(description="left is better"), W.Button(description="right is better")
        status = W.HTML()

        def show():
            if self.done:
                left.value = right.value = b""
                pick_a.disabled = pick_b.disabled = True
                preferred = [self.pairs[i][0 if self.fid_prefers(i) == "a" else 2] for i in range(len(self.pairs))]
                status.value = (f"<b>You agreed with FID on {self.agreement():.0%} of {len(self.pairs)} pairs.</b> "
                                "FID preferred: " + ", ".join(f"pair {i + 1}: {p}" for i, p in enumerate(preferred)))
                return
            _, a, _, b = self.pairs[len(self.choices)]
            left.value, right.value = png_bytes(a, nrow), png_bytes(b, nrow)
            status.value = f"pair {len(self.choices) + 1} of {len(self.pairs)}: which set looks more like real digits?"

        pick_a.on_click(lambda _: (self.record("a"), show()))
        pick_b.on_click(lambda _: (self.record("b"), show()))
        show()
        return W.VBox([status, W.HBox([W.VBox([left, pick_a]), W.VBox([right, pick_b])])])
