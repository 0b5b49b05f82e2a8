"""Per-minibatch augmentation of flattened images: random horizontal flips, padded crops and
elastic distortions.

The trainer calls ``augment(X_batch, rng)`` on each preprocessed (B, D) float batch with its own
``np.random.RandomState``, so a seeded run stays deterministic; only the batch is copied, never the
dataset. Called by hand, it takes a ``np.random.Generator`` (``np.random.default_rng()``) too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlplab._validation import is_int, is_number


class Augmenter:
    """Random horizontal flip (probability 1/2), random crop after padding by ``crop``, and an
    optional elastic distortion of up to ``elastic`` pixels.

    ``image_shape`` is (H, W, C) of one image: the batch's rows are reshaped to it, so the features
    must be in the C order of ``X.reshape(N, -1)`` (what ``transforms.Flatten`` produces).
    ``fill`` is what the padding holds, in the preprocessed space: a number, one value per channel
    (C,), or a whole (H, W, C) image. The default 0 is the mean after mean subtraction; a black
    border is the preprocessing of an all-zero image (:func:`mlplab.runs.make_augmenter` builds
    it for ``crop_fill="black"``), which is what Fashion-MNIST's garments lie on. With a whole
    image the flips and crops act on the batch relative to it (``x - fill``, the raw image when
    the preprocessing subtracts a mean image and ``fill`` is black), as the elastic distortion
    does: a shifted black image stays black rather than becoming the difference of the mean
    image and its shift.

    The elastic distortion (Simard et al. 2003, who used it to take a plain MLP from 1.6% to 0.7%
    error on MNIST) moves every pixel by a smooth random field: independent offsets, uniform in
    [-elastic, elastic] pixels along each axis, on an ``elastic_grid`` x ``elastic_grid`` lattice
    spanning the image, interpolated bilinearly between the lattice points; the image is resampled
    bilinearly and pixels pulled in from outside take ``fill``. A coarse lattice gives the smooth
    field Simard et al. get from Gaussian-filtering per-pixel noise, without the filter.
    """

    def __init__(self, image_shape: Sequence[int], flip: bool = True, crop: int = 4,
                 fill: float | np.ndarray = 0.0, elastic: float = 0.0,
                 elastic_grid: int = 4) -> None:
        shape = tuple(image_shape)
        if len(shape) != 3 or not all(is_int(s) and s >= 1 for s in shape):
            raise ValueError(f"image_shape must be (H, W, C) with positive sizes; got "
                             f"{tuple(image_shape)}.")
        if not is_int(crop) or crop < 0:  # 2.5 is not silently cropped as 2, nor True as 1
            raise ValueError(f"crop padding must be an integer >= 0 (pixels); got {crop!r}.")
        fill_arr = np.asarray(fill, dtype=np.float64)
        try:
            np.broadcast_to(fill_arr, shape)
        except ValueError:
            raise ValueError(f"fill must be a number, one value per channel ({shape[2]},) or "
                             f"an image {shape}; got shape {fill_arr.shape}.") from None
        if not np.all(np.isfinite(fill_arr)):
            raise ValueError("fill must be finite.")
        if not (is_number(elastic) and np.isfinite(elastic) and elastic >= 0):  # True was 1 pixel
            raise ValueError(f"elastic (the largest displacement in pixels) must be a number >= 0; "
                             f"got {elastic!r}.")
        if not is_int(elastic_grid) or elastic_grid < 2:  # 2.5 was cut to 2, True refused as 1
            raise ValueError(f"elastic_grid must be an integer >= 2 (lattice points a side); got "
                             f"{elastic_grid!r}.")
        if not isinstance(flip, bool | np.bool_):  # bool("False") is True
            raise ValueError(f"flip must be True or False; got {flip!r}.")
        self.image_shape = tuple(int(s) for s in shape)
        self.flip = bool(flip)
        self.crop = int(crop)
        self.fill = fill_arr
        self.elastic = float(elastic)
        self.elastic_grid = int(elastic_grid)
        # (H, grid) and (W, grid) bilinear interpolation weights from the lattice to the pixels
        self._lattice_y = _hat_weights(shape[0], self.elastic_grid)
        self._lattice_x = _hat_weights(shape[1], self.elastic_grid)

    def __call__(self, X: np.ndarray,
                 rng: np.random.RandomState | np.random.Generator | int | None) -> np.ndarray:
        """The augmented copy of the (B, D) batch ``X``, drawn from ``rng``: the trainer's
        ``RandomState`` or a ``np.random.Generator`` (NumPy's recommended one, which has no
        ``rand``/``randint``: it raised AttributeError); called by hand, an integer seed or None
        too, for ``np.random.RandomState(rng)`` (None: fresh entropy)."""
        rng = _generator(rng)
        if isinstance(rng, np.random.Generator):
            uniform, integers = rng.random, rng.integers
        else:  # a RandomState: the draws of every seeded run so far, unchanged
            uniform, integers = rng.rand, rng.randint  # type: ignore[assignment]
        X = np.asarray(X)
        H, W, C = self.image_shape
        if X.ndim != 2 or X.shape[1] != H * W * C:
            raise ValueError(f"augmentation expects a (B, {H * W * C}) batch of flattened "
                             f"{H}x{W}x{C} images; got shape {X.shape}.")
        if X.dtype.kind != "f":  # integer pixels truncated the interpolation and the fill
            raise ValueError(f"augmentation expects a preprocessed float batch; got {X.dtype} "
                             "(preprocess the images first, e.g. with make_preprocessing).")
        B = len(X)
        imgs = X.reshape(B, H, W, C)  # a view: only the output batch is allocated
        # a whole-image fill: transform x - fill (zero-padded), then add the fill back
        image_fill = self.fill.ndim == 3
        fill = 0.0 if image_fill else self.fill
        if image_fill:
            imgs = imgs - self.fill.astype(imgs.dtype)
        flip = uniform(B) < 0.5 if self.flip else np.zeros(B, dtype=bool)
        p = self.crop
        if p:
            # window offsets into the zero-padded image; offset p means "no shift"
            dy = integers(0, 2 * p + 1, size=B) - p
            dx = integers(0, 2 * p + 1, size=B) - p
        else:
            dy = dx = np.zeros(B, dtype=int)
        out = np.empty_like(imgs)
        if p:
            out[...] = fill  # the padding: pixels a shift uncovers keep this value
        # a loop of B slice copies is ~4x faster than one fancy-indexed gather over a padded copy
        for i in range(B):
            src = imgs[i, :, ::-1] if flip[i] else imgs[i]
            oy, ox = int(dy[i]), int(dx[i])
            y0, y1 = max(0, -oy), min(H, H - oy)
            x0, x1 = max(0, -ox), min(W, W - ox)
            if y1 <= y0 or x1 <= x0:  # shifted entirely into the padding (crop > image size)
                continue
            out[i, y0:y1, x0:x1] = src[y0 + oy:y1 + oy, x0 + ox:x1 + ox]
        if self.elastic:
            out = warp_bilinear(out, self.elastic_field(B, rng), fill)
        if image_fill:
            out += self.fill.astype(out.dtype)
        return out.reshape(B, H * W * C)  # (-1 cannot be inferred for an empty batch)

    def elastic_field(self, n: int,
                      rng: np.random.RandomState | np.random.Generator | int | None
                      ) -> np.ndarray:
        """(2, n, H, W) float32 displacements (rows, then columns) in pixels for ``n`` images:
        offsets uniform in [-elastic, elastic] on the lattice, interpolated to every pixel, so no
        displacement along an axis exceeds ``elastic`` (a pixel moves up to sqrt(2) times it).
        ``rng`` as for a call."""
        offsets = _generator(rng).uniform(-self.elastic, self.elastic,
                              size=(2, n, self.elastic_grid, self.elastic_grid))
        return self._lattice_y @ offsets.astype(np.float32) @ self._lattice_x.T

    def __repr__(self) -> str:
        fill = ("" if not self.fill.any() else ", fill=<image>" if self.fill.ndim == 3
                else f", fill={self.fill.tolist()}")
        elastic = (f", elastic={self.elastic:g}, elastic_grid={self.elastic_grid}"
                   if self.elastic else "")
        return (f"Augmenter(image_shape={self.image_shape}, flip={self.flip}, "
                f"crop={self.crop}{fill}{elastic})")


def _generator(rng: object) -> np.random.RandomState | np.random.Generator:
    """``rng`` itself, or ``np.random.RandomState(rng)`` for a seed (an integer, or None): an
    integer was "'int' object has no attribute 'rand'"."""
    if isinstance(rng, np.random.RandomState | np.random.Generator):
        return rng
    if rng is None or (is_int(rng) and 0 <= rng < 2**32):
        return np.random.RandomState(None if rng is None else int(rng))
    raise TypeError(f"rng must be a np.random.RandomState or np.random.Generator, or a seed (None "
                    f"or an integer between 0 and 2**32 - 1); got {rng!r}.")


def _hat_weights(n: int, grid: int) -> np.ndarray:
    """(n, grid) weights that interpolate ``grid`` evenly spaced lattice values to ``n`` pixels
    (linear "hat" functions: each row sums to 1)."""
    if n == 1:  # a one-pixel side: the lattice points all sit on it
        return np.full((1, grid), 1.0 / grid, dtype=np.float32)
    lattice = np.linspace(0, n - 1, grid)
    spacing = lattice[1] - lattice[0]
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(n)[:, None] - lattice) / spacing)
    return weights.astype(np.float32)


def warp_bilinear(imgs: np.ndarray, field: np.ndarray,
                  fill: float | np.ndarray = 0.0) -> np.ndarray:
    """Resample (B, H, W, C) images at ``(y + field[0], x + field[1])`` for every pixel (y, x),
    interpolating bilinearly; points outside the image see ``fill`` (a number, (C,) or (H, W, C)).

    Vectorised over the batch: four gathers from a fill-padded copy, so there are no per-pixel
    bounds tests. ``scipy.ndimage.map_coordinates(order=1, mode="grid-constant")`` on each image
    and channel, relative to the fill, computes the same (the tests compare them).
    """
    B, H, W, C = imgs.shape
    fill = np.asarray(fill, dtype=imgs.dtype)
    # pad wide enough that no source point or its +1 neighbour leaves the array (work relative to
    # the fill, so the padding is zeros whatever the fill is)
    p = int(np.ceil(np.abs(field).max(initial=0.0))) + 1
    Hp, Wp = H + 2 * p, W + 2 * p
    padded = np.zeros((B, Hp, Wp, C), dtype=imgs.dtype)
    padded[:, p:p + H, p:p + W] = imgs - fill
    sy = field[0] + np.arange(p, p + H, dtype=field.dtype)[:, None]
    sx = field[1] + np.arange(p, p + W, dtype=field.dtype)
    fy, fx = np.floor(sy), np.floor(sx)
    wy = (sy - fy)[..., None].astype(imgs.dtype, copy=False)
    wx = (sx - fx)[..., None].astype(imgs.dtype, copy=False)
    top_left = (np.arange(B)[:, None, None] * Hp + fy.astype(np.intp)) * Wp + fx.astype(np.intp)
    flat = padded.reshape(-1, C)
    a, b = flat[top_left], flat[top_left + 1]
    c, d = flat[top_left + Wp], flat[top_left + Wp + 1]
    top = a + wx * (b - a)
    out = top + wy * (c + wx * (d - c) - top)
    out += fill
    return out
