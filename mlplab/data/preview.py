"""The exercise's "sample images" figure: a few random images of every class, one column each;
optionally as the network sees them (preprocessed and augmented)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlplab._text import agree
from mlplab.data.base import Dataset, DatasetError
from mlplab.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: the most rows of a sample grid: the figure is at most 9 inches tall, so more would draw each
#: image smaller than a third of an inch (100 rows took half a minute and showed 28-pixel
#: images 7 pixels tall; 2,000 ran out of patience and 1.7 GB)
MAX_PER_CLASS = 30

#: the most columns (classes) of a sample grid: in its 7 inches, 40 columns drew 8-pixel images
#: as specks, 100 piled their names over the title, and 1,000 took 100 s (3,000 axes) to draw a
#: figure of names alone
MAX_CLASSES = 30


def grid_classes(y: np.ndarray, num_classes: int) -> np.ndarray:
    """The classes a sample grid of labels ``y`` draws, in order: all of them, or past
    :data:`MAX_CLASSES` the first that many with images in ``y`` (a small split of many classes
    leaves some without any)."""
    if num_classes <= MAX_CLASSES:
        return np.arange(num_classes)
    present = np.flatnonzero(np.bincount(y, minlength=num_classes))
    return present[:MAX_CLASSES] if len(present) else np.arange(MAX_CLASSES)


def shown_classes(shown: np.ndarray, num_classes: int, split: str) -> str:
    """How the columns ``shown`` (:func:`grid_classes`) cover ``num_classes`` classes:
    '10 classes', 'the first 30 of 1000 classes', '30 of 100 classes, the first with val
    images', or, where fewer than :data:`MAX_CLASSES` have images (all of them drawn), 'the 12
    of 31 classes with val images' (not 'the first', as if more were left out)."""
    if len(shown) == num_classes:
        return f"{num_classes} {agree(num_classes, 'class', 'classes')}"
    if len(shown) < MAX_CLASSES:
        return f"the {len(shown)} of {num_classes} classes with {split} images"
    if shown[-1] == len(shown) - 1:
        return f"the first {len(shown)} of {num_classes} classes"
    return f"{len(shown)} of {num_classes} classes, the first with {split} images"


#: the resolution of :func:`sample_grid`'s file
GRID_DPI = 100


def sample_grid(ds: Dataset, out: str | os.PathLike, per_class: int = 7, split: str = "train",
                seed: int | None = 0, dpi: int = GRID_DPI,
                transform: Callable[[np.ndarray], np.ndarray] | None = None,
                title: str | None = None) -> Path:
    """Write a grid of ``per_class`` random ``split`` images per class (columns titled with the
    class names; at most :data:`MAX_CLASSES`, see :func:`grid_classes`) to ``out`` (PNG, PDF or
    SVG by extension), atomically; return the path.
    ``transform`` changes the picked images before they are drawn (see
    :func:`mlplab.plots.plot_samples`)."""
    from mlplab._matplotlib import plt  # (Ctrl-C held back while Matplotlib is imported)

    fig = sample_figure(ds, per_class, split, seed, transform, title)
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(out) as tmp:
            # tight: with few classes the figure is narrower than its title (a folder's path)
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


def sample_figure(ds: Dataset, per_class: int = 7, split: str = "train", seed: int | None = 0,
                  transform: Callable[[np.ndarray], np.ndarray] | None = None,
                  title: str | None = None) -> Figure:
    """:func:`sample_grid`'s figure, drawn but not written: for a writer with checks of its own
    (the report's, which refuses a report folder gone meanwhile)."""
    X, y = ds.split(split)
    if len(y) == 0:
        raise DatasetError(f"{ds.name}: the {split} split is empty; nothing to show.")
    # (the rows drawn: no more than the split's largest class has images)
    if not 1 <= min(per_class, np.bincount(y).max()) <= MAX_PER_CLASS:
        raise DatasetError(f"per_class must be between 1 and {MAX_PER_CLASS} (the figure is at "
                           f"most 9 inches tall); got {per_class}.")
    from mlplab.plots import plot_samples

    title = title or f"{ds.name}: sample {split} images"
    shown = grid_classes(y, ds.num_classes)
    classes = [ds.classes[c] for c in shown]
    if len(shown) < ds.num_classes:
        keep = np.isin(y, shown)
        position = np.zeros(ds.num_classes, dtype=np.int64)
        position[shown] = np.arange(len(shown))  # label -> column
        X, y = X[keep], position[y[keep]]
        title += f" ({shown_classes(shown, ds.num_classes, split)})"
    return plot_samples(X, y, classes, per_class=per_class, seed=seed, transform=transform,
                        title=title)


def scaled_for_display(X: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """(n, D) features -> (n, H, W, C) images, each scaled to [0, 1] by its own range (the
    network's inputs are standardised, not pixels): the rescaling of the weights figure."""
    from mlplab.plots import _rescaled  # its caller draws the images: Matplotlib is loaded anyway

    X = np.asarray(X, dtype=np.float64)
    return _rescaled(X.reshape(len(X), *image_shape))
