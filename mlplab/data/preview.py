"""The exercise's "sample images" figure: a few random images of every class, one column each;
optionally as the network sees them (preprocessed and augmented)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mlplab.data.base import Dataset, DatasetError, atomic_path

#: the most rows of a sample grid: the figure is at most 9 inches tall, so more would draw each
#: image smaller than a third of an inch (100 rows took half a minute and showed 28-pixel
#: images 7 pixels tall; 2,000 ran out of patience and 1.7 GB)
MAX_PER_CLASS = 30


def sample_grid(ds: Dataset, out: str | os.PathLike, per_class: int = 7, split: str = "train",
                seed: int | None = 0, dpi: int = 100,
                transform: Callable[[np.ndarray], np.ndarray] | None = None,
                title: str | None = None) -> Path:
    """Write a grid of ``per_class`` random ``split`` images per class (columns titled with the
    class names) to ``out`` (PNG, PDF or SVG by extension), atomically; return the path.
    ``transform`` changes the picked images before they are drawn (see
    :func:`mlplab.plots.plot_samples`)."""
    from mlplab._matplotlib import plt  # (Ctrl-C held back while Matplotlib is imported)

    X, y = ds.split(split)
    if len(y) == 0:
        raise DatasetError(f"{ds.name}: the {split} split is empty; nothing to show.")
    # (the rows drawn: no more than the split's largest class has images)
    if not 1 <= min(per_class, np.bincount(y).max()) <= MAX_PER_CLASS:
        raise DatasetError(f"per_class must be between 1 and {MAX_PER_CLASS} (the figure is at "
                           f"most 9 inches tall); got {per_class}.")
    from mlplab.plots import plot_samples

    fig = plot_samples(X, y, ds.classes, per_class=per_class, seed=seed, transform=transform,
                       title=title or f"{ds.name}: sample {split} images")
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(out) as tmp:
            # tight: with few classes the figure is narrower than its title (a folder's path)
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


def scaled_for_display(X: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """(n, D) features -> (n, H, W, C) images, each scaled to [0, 1] by its own range (the
    network's inputs are standardised, not pixels): the rescaling of the weights figure."""
    from mlplab.plots import _rescaled  # its caller draws the images: Matplotlib is loaded anyway

    X = np.asarray(X, dtype=np.float64)
    return _rescaled(X.reshape(len(X), *image_shape))
