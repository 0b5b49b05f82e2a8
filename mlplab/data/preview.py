"""The exercise's "sample images" figure: a few random images of every class, one column each."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlplab.data.base import Dataset, DatasetError, atomic_path


def sample_grid(ds: Dataset, out: str | os.PathLike, per_class: int = 7, split: str = "train",
                seed: int | None = 0, dpi: int = 100) -> Path:
    """Write a grid of ``per_class`` random ``split`` images per class (columns titled with the
    class names) to ``out`` (PNG, PDF or SVG by extension), atomically; return the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    X, y = ds.split(split)
    if len(y) == 0:
        raise DatasetError(f"{ds.name}: the {split} split is empty; nothing to show.")
    if per_class < 1:
        raise DatasetError(f"per_class must be >= 1; got {per_class}.")
    rng = np.random.RandomState(seed)
    K = ds.num_classes
    fig, axes = plt.subplots(per_class, K, figsize=(max(1.0, 1.1 * K), 1.1 * per_class + 0.4),
                             squeeze=False)
    for k in range(K):
        idx = np.flatnonzero(y == k)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for r in range(per_class):
            ax = axes[r, k]
            ax.axis("off")
            if r < len(pick):
                img = X[pick[r]]
                if img.shape[-1] == 1:
                    ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=255)
                else:
                    ax.imshow(img)
            if r == 0:
                ax.set_title(ds.classes[k], fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)
    return out
