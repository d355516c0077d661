"""Figures for the lessons: image grids, trajectories, loss curves.

Images come in the package's range [-1, 1] with shape ``[N, 1, H, W]`` and are shown in [0, 1].
Each function draws on a matplotlib Axes (made if not given) and returns the Figure.
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid

from .data import to_display_range


def grid_array(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> np.ndarray:
    """``[N, 1, H, W]`` in [-1, 1] -> one ``[rows*H', nrow*W']`` array in [0, 1] (padding white)."""
    grid = make_grid(to_display_range(images.detach().float().cpu()), nrow=nrow, padding=pad, pad_value=1.0)
    return grid[0].numpy()


def show_grid(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None):
    """Show images as a grid (black background digits, like MNIST)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(min(12, nrow * 0.9), max(1.2, 0.9 * -(-len(images) // nrow))))
    ax.imshow(grid_array(images, nrow), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return ax.figure


def show_rows(rows: dict, nrow: int | None = None, title: str | None = None):
    """One grid per row, labelled on the left: ``{"label": images [N, 1, H, W], ...}``."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.25 * len(rows)), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows.items(), strict=True):
        ax.imshow(grid_array(images, nrow or len(images)), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        for side in ax.spines.values():
            side.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_losses(curves: dict, window: int = 50, ax=None, log: bool = True):
    """Loss curves ``{"label": losses [steps]}``: the raw batch losses faint, a moving average bold."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for i, (label, losses) in enumerate(curves.items()):
        color = f"C{i}"
        losses = torch.as_tensor(losses).float()
        ax.plot(losses.numpy(), color=color, alpha=0.2, lw=0.6)
        sm = smooth(losses, window)
        ax.plot(np.arange(len(sm)) + len(losses) - len(sm), sm.numpy(), color=color, lw=1.8,
                label=f"{label} (last {window}: {losses[-window:].mean():.4f})")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("L_simple (MSE on the noise)")
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return ax.figure


def png_bytes(images: torch.Tensor, nrow: int = 8, scale: int = 3) -> bytes:
    """A grid as PNG bytes (for ``ipywidgets.Image``), upscaled ``scale`` times with sharp pixels."""
    from PIL import Image

    arr = (grid_array(images, nrow) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr, mode="L")
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def smooth(values: torch.Tensor, window: int = 50) -> torch.Tensor:
    """Moving average of a loss curve (``[steps]`` -> ``[steps - window + 1]``), for plotting."""
    values = values.float().flatten()
    window = max(1, min(window, len(values)))
    return values.unfold(0, window, 1).mean(dim=1)


def plain_log_axis(ax, axis: str = "y", ticks=None) -> None:
    """Make ``axis`` ("x" or "y") of ``ax`` logarithmic, labelled with plain numbers: at ``ticks`` when given,
    else at 1, 2 and 5 times each power of ten, and no minor ticks (matplotlib's default labels on a short
    log axis, 2×10¹ beside 3×10¹ beside 4×10¹, crowd and overlap)."""
    ticker = plt.matplotlib.ticker
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    if ticks is not None:
        getattr(ax, f"set_{axis}ticks")(list(ticks), [f"{k:g}" for k in ticks])
    else:
        target.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_locator(ticker.NullLocator())


def log_cost_axis(ax, ticks, xlabel: str) -> None:
    """Tidy a quality-against-cost plot whose axes are logarithmic: the x ticks only at ``ticks``, labelled
    as plain numbers (no minor ticks, no 10^k notation on either axis), a light grid, a legend if any."""
    ax.set_xlabel(xlabel)
    plain_log_axis(ax, "x", ticks)
    if ax.get_yscale() == "log":
        plain_log_axis(ax, "y")
    else:
        ax.yaxis.set_major_formatter(plt.matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
