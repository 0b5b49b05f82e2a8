"""What goes into the network: the exercise's input pipeline (``ToTensor`` +
``Normalize(0.5, 0.5)`` without torchvision: :func:`input_pipeline`, :func:`normalize_images`),
and the checks that turn arrays into inputs a given model accepts (``check_inputs``: shape,
labels and dtype; ``as_tensor``: onto the model's device and dtype), which training and
prediction share. Preparing data is its own step, before and apart from the training loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, overload

import numpy as np
import torch

from mlplab._validation import check_X, check_y
from mlplab.torch_mlp.model import MultiLayerPerceptron, param_dtype

if TYPE_CHECKING:
    from mlplab.data.transforms import Pipeline

#: the exercise's defaults (SPEC §4)
MEAN, STD = 0.5, 0.5


def input_pipeline(mean: float | Sequence[float] = MEAN, std: float | Sequence[float] = STD,
                   max_value: float = 255.0) -> Pipeline:
    """The exercise's ``ToTensor`` + ``Normalize(mean, std)`` as an :mod:`mlplab.data.transforms`
    pipeline (scale by ``1 / max_value``, per-channel ``(x - mean) / std``, flatten to float32), so
    that it can be saved with a model like any other mlplab preprocessing."""
    from mlplab.data.transforms import Flatten, Normalize, Pipeline, Scale

    return Pipeline([Scale(max_value), Normalize(mean, std), Flatten()])


def normalize_images(images: np.ndarray, mean: float | Sequence[float] = MEAN,
                     std: float | Sequence[float] = STD) -> np.ndarray:
    """The exercise's input pipeline without torchvision: raw images (N, H, W, C) — uint8 in
    0..255, or floats already in [0, 1] — scaled to [0, 1], then ``(x - mean[c]) / std[c]`` per
    channel, flattened to float32 (N, H*W*C).

    The flattening keeps mlplab's (H, W, C) order (torchvision's tensors are (C, H, W)); for a
    fully-connected net this only permutes the inputs, and it keeps the features aligned with the
    rest of mlplab so that :func:`~mlplab.torch_mlp.convert.from_numpy` /
    :func:`~mlplab.torch_mlp.convert.to_numpy` weights line up.
    """
    X = np.asarray(images)
    if X.ndim == 3:  # (N, H, W) greyscale
        X = X[..., None]
    if X.ndim != 4:
        raise ValueError(f"images must be an array (N, H, W, C) (or (N, H, W)); got shape "
                         f"{X.shape}.")
    if X.dtype == np.uint8:
        max_value = 255.0
    elif X.dtype.kind == "f":
        max_value = 1.0
        if X.size and (not np.isfinite(X).all() or X.min() < 0 or X.max() > 1):
            raise ValueError("float images must already be scaled to [0, 1] (or pass raw uint8 "
                             "0..255 images); got values outside that range.")
    else:
        raise ValueError(f"images must be uint8 (0..255) or float in [0, 1]; got dtype "
                         f"{X.dtype}.")
    channels = X.shape[-1]
    for name, value in (("mean", mean), ("std", std)):
        n = np.atleast_1d(np.asarray(value)).size
        if n not in (1, channels):
            raise ValueError(f"{name} needs one value or one per channel ({channels}); got "
                             f"{value!r}.")
    return input_pipeline(mean, std, max_value).fit_transform(X)


def as_tensor(X: np.ndarray | torch.Tensor, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=dtype)
    return torch.from_numpy(np.ascontiguousarray(X)).to(device=device, dtype=dtype)


@overload
def check_inputs(model: MultiLayerPerceptron, X: np.ndarray | torch.Tensor, y: np.ndarray,
                 name: str = "X") -> tuple[np.ndarray, np.ndarray]: ...
@overload
def check_inputs(model: MultiLayerPerceptron, X: np.ndarray | torch.Tensor, y: None,
                 name: str = "X") -> tuple[np.ndarray, None]: ...
@overload
def check_inputs(model: MultiLayerPerceptron, X: np.ndarray | torch.Tensor,
                 y: np.ndarray | None, name: str = "X"
                 ) -> tuple[np.ndarray, np.ndarray | None]: ...
def check_inputs(model: MultiLayerPerceptron, X: np.ndarray | torch.Tensor,
                 y: np.ndarray | None, name: str = "X"
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim > 2:  # images: flattened like the model's forward does
        # the width from the shape, not -1, which NumPy cannot infer for no images
        X = X.reshape(len(X), int(np.prod(X.shape[1:])))
    numpy_dtype = torch.empty(0, dtype=param_dtype(model)).numpy().dtype
    X = check_X(X, model.input_size, name, numpy_dtype)
    if y is not None:
        y = check_y(np.asarray(y), X.shape[0], model.num_classes,
                    "y" if name == "X" else f"y{name[1:]}")
    return X, y
