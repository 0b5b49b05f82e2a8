"""Preprocessing as composable transforms, fitted on the training split only.

Each transform has ``fit(X) -> self``, ``transform(X)`` and ``fit_transform(X)``; its fitted
statistics are a dict of arrays (``state_dict()`` / ``load_state_dict()``), and a ``Pipeline``
saves itself, steps included, as one flat dict of arrays (``np.savez``-able without pickle) that
``Pipeline.from_state_dict`` rebuilds, so a run folder can store the exact preprocessing::

    pre = make_preprocessing("exercise")          # subtract the mean image, flatten
    X_train = pre.fit_transform(ds.X_train)       # (N, D) float32
    X_val = pre.transform(ds.X_val)
    np.savez("preprocessing.npz", **pre.state_dict())
    pre2 = Pipeline.from_state_dict(np.load("preprocessing.npz"))

Transforms accept images (N, H, W, C) or flat (N, D) arrays; "channel" means the last axis. A
fitted ``Pipeline`` refuses a single sample of the fitted shape (one (H, W, C) image): pass
``X[np.newaxis]``, a batch of one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import DTypeLike

from mlplab._text import counted
from mlplab._validation import setting
from mlplab.data.base import DatasetError


class Transform:
    """Base class: stateless unless ``fit`` learns something."""

    #: short name used in saved pipelines
    kind = "transform"

    def __init__(self, dtype: DTypeLike = np.float32) -> None:
        self.dtype: np.dtype = np.dtype(dtype)

    def fit(self, X: np.ndarray) -> Transform:
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)

    def params(self) -> dict:
        """Constructor arguments (JSON-able) that rebuild this transform."""
        return {"dtype": self.dtype.name}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Fitted statistics as arrays (empty for stateless transforms)."""
        return {}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Transform:
        return self

    def _fitted(self, name: str) -> np.ndarray:
        """The fitted statistic ``name`` (``mean_``), refused while it is unset."""
        value = getattr(self, name, None)
        if value is None:
            raise DatasetError(f"{type(self).__name__} is not fitted; call fit(X_train) first.")
        return value

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class SubtractMean(Transform):
    """The exercise's preprocessing: subtract the mean training image (per pixel and channel)."""

    kind = "subtract_mean"

    def __init__(self, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.mean_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> SubtractMean:
        X = np.asarray(X)
        if len(X) == 0:
            raise DatasetError("cannot fit SubtractMean on an empty training set.")
        # accumulate in float64: a float32 sum over 49,000 images loses digits
        self.mean_ = X.mean(axis=0, dtype=np.float64)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        mean = self._fitted("mean_")
        X = np.asarray(X)
        if X.shape[1:] != mean.shape:
            raise DatasetError(f"SubtractMean was fitted on samples of shape {mean.shape}; "
                               f"got {X.shape[1:]}.")
        return np.subtract(X, mean.astype(self.dtype), dtype=self.dtype)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"mean": self._fitted("mean_")}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> SubtractMean:
        self.mean_ = np.asarray(state["mean"], dtype=np.float64)
        return self


class Standardize(Transform):
    """Per-channel standardisation: (x - mean_c) / std_c with statistics over N, H and W; a
    channel constant in training (std_c 0) is only centred, x - mean_c."""

    kind = "standardize"

    def __init__(self, eps: float = 1e-8, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.eps = float(eps)
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    def params(self) -> dict:
        return {"eps": self.eps, **super().params()}

    def fit(self, X: np.ndarray) -> Standardize:
        X = np.asarray(X)
        if len(X) == 0:
            raise DatasetError("cannot fit Standardize on an empty training set.")
        axes = tuple(range(X.ndim - 1))
        self.mean_ = _channel_mean(X)
        # the variance in blocks of rows: X.std would hold all of X - mean in float64, eight
        # bytes a value (1.2 GB for CIFAR-10's uint8 training images)
        squares = np.zeros_like(self.mean_)
        mean = _per_channel(self.mean_, X)
        for i in range(0, len(X), 1024):
            centred = np.subtract(X[i:i + 1024], mean, dtype=np.float64)
            squares += np.square(centred, out=centred).sum(axis=axes)
        n = X.size // X.shape[-1]
        var = squares / n
        # a channel that holds one value has a variance of 0 but for the rounding of its float
        # mean (0.1 repeated): within that bound (scikit-learn's, for its StandardScaler) it is
        # constant, std 0
        eps = np.finfo(np.float64).eps
        self.std_ = np.where(var <= n * eps * var + (n * self.mean_ * eps) ** 2, 0.0,
                             np.sqrt(var))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        mean, std = self._fitted("mean_"), self._fitted("std_")
        X = np.asarray(X)
        if X.shape[-1] != mean.shape[0]:
            raise DatasetError(f"Standardize was fitted on {mean.shape[0]} channels; "
                               f"got {X.shape[-1]}.")
        # a channel constant in training (std 0) is centred only, as scikit-learn's
        # StandardScaler does: 1 / eps scaled a validation or test value that differs from the
        # training one by 1 to 1e8 (a digit pixel never inked in training, then inked)
        scale = np.where(std > 0, 1.0 / np.maximum(std, self.eps), 1.0).astype(self.dtype)
        out = np.subtract(X, _per_channel(mean.astype(self.dtype), X), dtype=self.dtype)
        out *= _per_channel(scale, X)
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"mean": self._fitted("mean_"), "std": self._fitted("std_")}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Standardize:
        mean = np.asarray(state["mean"], dtype=np.float64)
        std = np.asarray(state["std"], dtype=np.float64)
        # one of each per channel, and no negative spread: an edited or damaged file would
        # otherwise scale every input by garbage without a word (0 is legal: a constant channel)
        if mean.ndim != 1 or std.shape != mean.shape or not (std >= 0).all() or \
                not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise ValueError(f"Standardize needs one finite mean and one finite standard "
                             f"deviation >= 0 per channel; got mean {mean.tolist()}, std "
                             f"{std.tolist()}.")
        self.mean_, self.std_ = mean, std
        return self


def _channel_mean(X: np.ndarray) -> np.ndarray:
    """``X.mean(axis=(all but the last), dtype=float64)``, the same numbers faster for uint8.

    NumPy reduces over the leading axes of an (N, H, W, C) array three values at a time, which
    takes about a second for CIFAR-10's training images. For uint8 images the float64 sum is a
    sum of integers below 2**53, so it is exact whatever the order: summing per pixel first, in
    int64, and then per channel gives the same sum, and the same division gives the same mean,
    bit for bit, 15 times faster."""
    axes = tuple(range(X.ndim - 1))
    if X.dtype != np.uint8 or X.ndim < 2 or X.size * 255 >= 2**53:
        return X.mean(axis=axes, dtype=np.float64)
    sums = X.sum(axis=0, dtype=np.int64).reshape(-1, X.shape[-1]).sum(axis=0)
    return sums / (X.size // X.shape[-1])


def _per_channel(values: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Per-channel ``values`` repeated over one sample of ``X`` (H x W x C): an operand that
    NumPy broadcasts over the rows in long inner loops, not three values at a time (2.5 times
    faster on CIFAR-10 images). Each element sees the same operation on the same numbers."""
    if X.ndim < 2:
        return values
    return np.ascontiguousarray(np.broadcast_to(values, X.shape[1:]))


class Scale(Transform):
    """Multiply by ``1 / max_value``: uint8 images to [0, 1]."""

    kind = "scale"

    def __init__(self, max_value: float = 255.0, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        # (0 divided by zero when the data came; NaN or infinity gave NaN or 0 features)
        if not (np.isfinite(max_value) and max_value > 0):
            raise DatasetError(f"Scale max_value must be a finite number > 0; got {max_value!r}.")
        self.max_value = float(max_value)

    def params(self) -> dict:
        return {"max_value": self.max_value, **super().params()}

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.multiply(X, self.dtype.type(1.0 / self.max_value), dtype=self.dtype)


class Power(Transform):
    """``(x / max_value) ** exponent``: intensities scaled to [0, 1], then raised to a power.

    An exponent below 1 (0.5, the square root) spreads out dark values and compresses bright
    ones. On Fashion-MNIST, whose classes differ in faint texture on a black background, the
    square root before standardisation raised validation accuracy by about half a point
    (docs/results.md). Intensities must be >= 0 (raw pixels are).
    """

    kind = "power"

    def __init__(self, exponent: float = 0.5, max_value: float = 255.0,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        if not (np.isfinite(exponent) and exponent > 0):
            raise DatasetError(f"Power exponent must be a finite number > 0; got {exponent!r}.")
        if not (np.isfinite(max_value) and max_value > 0):
            raise DatasetError(f"Power max_value must be a finite number > 0; got {max_value!r}.")
        self.exponent = float(exponent)
        self.max_value = float(max_value)

    def params(self) -> dict:
        return {"exponent": self.exponent, "max_value": self.max_value, **super().params()}

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.dtype == np.uint8:
            # one gather from a 256-entry table instead of a division and a power per pixel
            table = (np.arange(256) / self.max_value) ** self.exponent
            return table.astype(self.dtype)[X]
        out = np.multiply(X, 1.0 / self.max_value, dtype=self.dtype)
        if out.size and out.min() < 0:
            other = setting("--preprocessing standardize", "preprocessing='standardize'")
            raise DatasetError(f"Power preprocessing needs intensities >= 0; the smallest is "
                               f"{X.min()}. Use {other} for signed data.")
        return np.power(out, self.dtype.type(self.exponent), out=out)


class Normalize(Transform):
    """Fixed per-channel ``(x - mean) / std`` (PyTorch's ``Normalize``; not fitted)."""

    kind = "normalize"

    def __init__(self, mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.5,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        # (NaN passed `<= 0` and made every feature NaN)
        if not np.all(np.isfinite(self.std) & (self.std > 0)):
            raise DatasetError(f"Normalize std must be finite and > 0; got {self.std.tolist()}.")
        if not np.all(np.isfinite(self.mean)):
            raise DatasetError(f"Normalize mean must be finite; got {self.mean.tolist()}.")

    def params(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), **super().params()}

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        channels = X.shape[-1] if X.ndim else 1
        for name, values in (("mean", self.mean), ("std", self.std)):
            # three values on grey images would broadcast them to three channels (16 features
            # became 48) rather than fail
            if values.size not in (1, channels):
                raise DatasetError(f"Normalize has {values.size} {name} values (one per channel);"
                                   f" the images have {counted(channels, 'channel')}.")
        out = np.subtract(X, self.mean.astype(self.dtype), dtype=self.dtype)
        out *= (1.0 / self.std).astype(self.dtype)
        return out


class Flatten(Transform):
    """(N, ...) -> (N, D) in C order (a 32x32x3 image becomes 3,072 features), cast to dtype."""

    kind = "flatten"

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        # the width from the shape, not -1, which NumPy cannot infer for an empty split
        return X.reshape(len(X), int(np.prod(X.shape[1:]))).astype(self.dtype, copy=False)


TRANSFORMS: dict[str, type[Transform]] = {
    t.kind: t for t in (SubtractMean, Standardize, Scale, Power, Normalize, Flatten)
}


class Pipeline(Transform):
    """Transforms applied in order; ``fit`` fits each on the output of the previous ones."""

    kind = "pipeline"

    def __init__(self, steps: Sequence[Transform]) -> None:
        self.steps = list(steps)
        self.dtype = self.steps[-1].dtype if self.steps else np.dtype(np.float32)
        #: one sample's shape in the data ``fit`` saw, e.g. (32, 32, 3); None before fitting
        self.sample_shape_: tuple[int, ...] | None = None

    def params(self) -> dict:
        return {"steps": [s.kind for s in self.steps]}

    def fit(self, X: np.ndarray) -> Pipeline:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        sample_shape = tuple(int(n) for n in X.shape[1:])
        for step in self.steps:
            X = step.fit_transform(X)
        self.sample_shape_ = sample_shape
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        self._check_sample_shape(X)
        for step in self.steps:
            X = step.transform(X)
        return X

    def _check_sample_shape(self, X: np.ndarray) -> None:
        """Refuse one sample shaped as the fitted ones, e.g. a single (H, W, C) image: taken for a
        batch, it went through the per-channel recipes as H samples and came out (H, W*C) without
        a word. Other shapes are left to the steps and to callers, whose messages say more."""
        if self.sample_shape_ is not None and X.shape == self.sample_shape_:
            batch = ", ".join(["N", *map(str, self.sample_shape_)])
            raise DatasetError(f"the preprocessing transforms a batch of shape ({batch}); got "
                               f"one sample of shape {X.shape}. Pass a batch of one: "
                               f"X[np.newaxis].")

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays: ``steps`` (kinds), ``sample_shape`` (once fitted), ``i.params``
        (JSON) and ``i.<stat>``."""
        import json

        out: dict[str, np.ndarray] = {"steps": np.array([s.kind for s in self.steps])}
        if self.sample_shape_ is not None:
            out["sample_shape"] = np.array(self.sample_shape_, dtype=np.int64)
        for i, step in enumerate(self.steps):
            out[f"{i}.params"] = np.array(json.dumps(step.params()))
            for k, v in step.state_dict().items():
                out[f"{i}.{k}"] = np.asarray(v)
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Pipeline:
        kinds = [str(k) for k in np.asarray(state["steps"]).tolist()]
        if kinds != [s.kind for s in self.steps]:
            raise DatasetError(f"saved preprocessing has steps {kinds}; this pipeline has "
                               f"{[s.kind for s in self.steps]}.")
        for i, step in enumerate(self.steps):
            prefix = f"{i}."
            try:
                step.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                      if k.startswith(prefix) and k != f"{i}.params"})
            except KeyError as exc:  # was a bare KeyError('mean') to a direct caller
                raise DatasetError(f"saved preprocessing lacks {prefix}{exc.args[0]}, a "
                                   f"statistic of step {i} ({step.kind}).") from None
        # absent from pipelines saved before it was recorded: those check no shape
        self.sample_shape_ = None
        if "sample_shape" in state:
            shape = np.asarray(state["sample_shape"])
            if shape.ndim != 1 or shape.dtype.kind not in "iu" or np.any(shape < 0):
                raise DatasetError(f"saved preprocessing has an invalid sample_shape "
                                   f"{shape.tolist()!r:.80}; it must be a list of sizes.")
            self.sample_shape_ = tuple(int(n) for n in shape)
        return self

    @classmethod
    def from_state_dict(cls, state: Mapping[str, np.ndarray]) -> Pipeline:
        """Rebuild a fitted pipeline saved with ``state_dict()`` (e.g. from ``np.load``)."""
        import json

        try:
            kinds = [str(k) for k in np.atleast_1d(np.asarray(state["steps"])).tolist()]
            steps = []
            for i, kind in enumerate(kinds):
                params = json.loads(str(np.asarray(state[f"{i}.params"])))
                steps.append(TRANSFORMS[kind](**params))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"not a saved preprocessing pipeline ({exc!r}).") from None
        return cls(steps).load_state_dict(state)

    def __repr__(self) -> str:
        return f"Pipeline([{', '.join(repr(s) for s in self.steps)}])"


#: the named recipes of ``make_preprocessing``
PREPROCESSING = {
    "exercise": "subtract the mean training image, flatten (the exercise)",
    "standardize": "per-channel standardisation with training statistics, flatten",
    "sqrt-standardize": "square root of the [0, 1]-scaled intensities, then per-channel "
                        "standardisation, flatten (the Fashion-MNIST presets)",
    "scale": "scale to [0, 1], flatten",
    "torch": "scale to [0, 1], normalise with mean 0.5 and std 0.5 per channel, flatten "
             "(the exercise's PyTorch part)",
    "none": "flatten only (cast to float)",
}


def make_preprocessing(name: str = "exercise", dtype: DTypeLike = np.float32) -> Pipeline:
    """A fresh (unfitted) pipeline whose output is (N, D) ``dtype``; see ``PREPROCESSING``."""
    if name == "exercise":
        steps: list[Transform] = [SubtractMean(dtype)]
    elif name == "standardize":
        steps = [Standardize(dtype=dtype)]
    elif name == "sqrt-standardize":
        steps = [Power(0.5, dtype=dtype), Standardize(dtype=dtype)]
    elif name == "scale":
        steps = [Scale(dtype=dtype)]
    elif name == "torch":
        steps = [Scale(dtype=dtype), Normalize(0.5, 0.5, dtype=dtype)]
    elif name == "none":
        steps = []
    else:
        raise DatasetError(f"unknown preprocessing {name!r}; choose one of "
                           f"{', '.join(PREPROCESSING)}.")
    return Pipeline([*steps, Flatten(dtype)])
