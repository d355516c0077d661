"""The package's one progress bar (training, sampling and the classifier use it)."""

from __future__ import annotations


def progress_bar(total: int, desc: str, enabled: bool = True):
    """The package's progress bar: tqdm (a widget in Jupyter, text elsewhere), redrawn at most once a
    second. A faster redraw floods the kernel's output channel on long runs (thousands of widget
    updates in one cell), which slows the notebook and made nbval drop the cell's end message."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, mininterval=1.0)
