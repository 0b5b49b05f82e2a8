"""Numbers about predictions that need no figure: :func:`confusion_matrix`. Apart from
:mod:`mlplab.plots` so that ``mlplab evaluate``, which prints one, does not import Matplotlib
(about a second); ``mlplab.plots.confusion_matrix`` is the same function.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlplab._validation import check_y


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts (K, K): row = true class, column = predicted class; labels are 0..K-1."""
    y_true, y_pred = (_labels(v, num_classes, name) for v, name in
                      ((y_true, "y_true"), (y_pred, "y_pred")))
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} and {len(y_pred)}.")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _labels(y: object, num_classes: int, name: str) -> np.ndarray:
    """``y`` as 1-D class indices in [0, num_classes), else a ``ValueError``: a label -1 would
    otherwise be counted silently in the last class (NumPy's negative indexing)."""
    y = np.asarray(y)
    return check_y(y, len(y) if y.ndim else 0, num_classes, name)
