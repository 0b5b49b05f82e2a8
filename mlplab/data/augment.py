"""Per-minibatch augmentation of flattened images: random horizontal flips and padded crops.

The trainer calls ``augment(X_batch, rng)`` on each preprocessed (B, D) float batch with its own
``np.random.RandomState``, so a seeded run stays deterministic; only the batch is copied, never the
dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Augmenter:
    """Random horizontal flip (probability 1/2) and random crop after zero-padding by ``crop``.

    ``image_shape`` is (H, W, C) of one image: the batch's rows are reshaped to it, so the features
    must be in the C order of ``X.reshape(N, -1)`` (what ``transforms.Flatten`` produces). Padding
    is 0 in the preprocessed space, i.e. the mean image after mean subtraction.
    """

    def __init__(self, image_shape: Sequence[int], flip: bool = True, crop: int = 4) -> None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (H, W, C) with positive sizes; got "
                             f"{tuple(image_shape)}.")
        if int(crop) < 0:
            raise ValueError(f"crop padding must be >= 0; got {crop}.")
        self.image_shape = shape
        self.flip = bool(flip)
        self.crop = int(crop)

    def __call__(self, X: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        X = np.asarray(X)
        H, W, C = self.image_shape
        if X.ndim != 2 or X.shape[1] != H * W * C:
            raise ValueError(f"augmentation expects a (B, {H * W * C}) batch of flattened "
                             f"{H}x{W}x{C} images; got shape {X.shape}.")
        B = len(X)
        imgs = X.reshape(B, H, W, C)  # a view
        if self.flip:
            flip = rng.rand(B) < 0.5
            imgs = imgs.copy()
            imgs[flip] = imgs[flip, :, ::-1]
        if self.crop:
            p = self.crop
            padded = np.zeros((B, H + 2 * p, W + 2 * p, C), dtype=X.dtype)
            padded[:, p:p + H, p:p + W] = imgs
            dy = rng.randint(0, 2 * p + 1, size=B)
            dx = rng.randint(0, 2 * p + 1, size=B)
            rows = dy[:, None] + np.arange(H)  # (B, H)
            cols = dx[:, None] + np.arange(W)  # (B, W)
            imgs = padded[np.arange(B)[:, None, None], rows[:, :, None], cols[:, None, :]]
        elif not self.flip:
            imgs = imgs.copy()
        return imgs.reshape(B, -1)

    def __repr__(self) -> str:
        return f"Augmenter(image_shape={self.image_shape}, flip={self.flip}, crop={self.crop})"
