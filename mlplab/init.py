"""Weight initialisation schemes.

The draws come from NumPy's legacy ``RandomState.randn`` so that ``seed=0`` reproduces the
exercise exactly (it calls ``np.random.seed(0)`` and then ``std * np.random.randn(D, H)`` for W1 and
W2 in turn); with ``seed=None`` the global ``np.random`` state is used, just as the exercise does.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike

INITS = ("normal", "he", "xavier")


def weight_scale(init: str, fan_in: int, fan_out: int, std: float) -> float:
    """Standard deviation of the Gaussian draw for one weight matrix."""
    if init == "normal":  # the exercise: N(0, std^2)
        return std
    if init == "he":  # keeps ReLU activations' variance constant (He et al. 2015)
        return math.sqrt(2.0 / fan_in)
    if init == "xavier":  # Glorot & Bengio 2010, for tanh/sigmoid
        return math.sqrt(2.0 / (fan_in + fan_out))
    raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}.")


def random_state(seed: int | None) -> np.random.RandomState:
    """The legacy generator for ``seed``, or NumPy's global one when ``seed`` is None."""
    if seed is None:
        return np.random.mtrand._rand
    return np.random.RandomState(seed)


def init_weights(sizes: list[int], init: str, std: float, seed: int | None,
                 dtype: DTypeLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) for each consecutive pair of ``sizes``; W drawn in float64 then cast, b zero."""
    rng = random_state(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        scale = weight_scale(init, fan_in, fan_out, std)
        W = (scale * rng.randn(fan_in, fan_out)).astype(dtype)
        layers.append((W, np.zeros(fan_out, dtype=dtype)))
    return layers
