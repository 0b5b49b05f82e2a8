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
        imgs = X.reshape(B, H, W, C)  # a view: only the output batch is allocated
        flip = rng.rand(B) < 0.5 if self.flip else np.zeros(B, dtype=bool)
        p = self.crop
        if p:
            # window offsets into the zero-padded image; offset p means "no shift"
            dy = rng.randint(0, 2 * p + 1, size=B) - p
            dx = rng.randint(0, 2 * p + 1, size=B) - p
        else:
            dy = dx = np.zeros(B, dtype=int)
        out = np.zeros_like(imgs) if p else np.empty_like(imgs)
        # a loop of B slice copies is ~4x faster than one fancy-indexed gather over a padded copy
        for i in range(B):
            src = imgs[i, :, ::-1] if flip[i] else imgs[i]
            oy, ox = int(dy[i]), int(dx[i])
            y0, y1 = max(0, -oy), min(H, H - oy)
            x0, x1 = max(0, -ox), min(W, W - ox)
            if y1 <= y0 or x1 <= x0:  # shifted entirely into the padding (crop > image size)
                continue
            out[i, y0:y1, x0:x1] = src[y0 + oy:y1 + oy, x0 + ox:x1 + ox]
        return out.reshape(B, -1)

    def __repr__(self) -> str:
        return f"Augmenter(image_shape={self.image_shape}, flip={self.flip}, crop={self.crop})"
