"""The data handed to trials: :class:`TuningData` (the preprocessed splits), the picklable
:class:`DataSource` kinds that load it once per worker process (a dataset by name, or arrays
already in memory) and the helpers that make them (:func:`subset_train`, :func:`prepare`,
:func:`as_source`). What a study searches *on* is kept in one place, apart from how it searches,
because a source's :meth:`~DataSource.describe` is recorded in the study and must match on resume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplab._validation import setting

if TYPE_CHECKING:
    from mlplab.data import Dataset


@dataclass
class TuningData:
    """Preprocessed splits for tuning: ``X_*`` float32 (N, D), ``y_*`` int labels.

    ``preprocessing`` is the fitted :class:`mlplab.data.Pipeline` (``preprocessing_name`` its
    recipe), ``image_shape`` the (H, W, C) of one raw image and ``dataset`` the raw
    :class:`mlplab.data.Dataset` the arrays came from (needed to retrain the best trial).
    """

    name: str
    classes: list[str]
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    preprocessing: Any = None
    preprocessing_name: str | None = None
    image_shape: tuple[int, ...] | None = None
    dataset: Any = None

    @property
    def num_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class DataSource:
    """Something picklable that loads :class:`TuningData` (once per worker process)."""

    def describe(self) -> dict[str, Any]:
        """What identifies the data, stored in the study: a resumed study, or a worker on
        another machine, must search the same data (file locations are not part of it)."""
        raise NotImplementedError

    def load(self) -> TuningData:
        raise NotImplementedError

    def same_data(self, recorded: Any, data: TuningData) -> bool:
        """Whether a study's ``recorded`` description, which differs from :meth:`describe`,
        still gives ``data`` (this source's, loaded): not known in general."""
        return False


@dataclass
class DatasetSource(DataSource):
    """``mlplab.data.load_dataset(name, **kwargs)``, an optional stratified training subset of
    ``train_size`` images, then the ``preprocess`` recipe (:data:`mlplab.data.PREPROCESSING`)
    fitted on the training split. A ``seed`` of None in ``kwargs`` is replaced by one drawn at
    random when the source is made, so that every load of it gives the same splits."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    preprocess: str = "standardize"
    train_size: int | None = None

    #: load_dataset arguments that say where the files are, or how loading them shows, not what
    #: the data is
    LOCATION_ARGS = ("data_dir", "download", "mirror", "cache", "progress")

    def __post_init__(self) -> None:
        if "seed" in self.kwargs and self.kwargs["seed"] is None:
            # a random split drawn once, here: every worker's load, the best trial's retraining
            # and the study's record (describe) then share it, where each load would draw its own
            from mlplab.data.base import draw_seed

            self.kwargs = {**self.kwargs, "seed": draw_seed()}

    def describe(self) -> dict[str, Any]:
        kw = {k: v for k, v in self.kwargs.items()
              if k not in self.LOCATION_ARGS and v is not None}
        return {"dataset": self.name, **kw, "preprocess": self.preprocess,
                "train_size": self.train_size}

    def load(self) -> TuningData:
        from mlplab.data import load_dataset

        ds = load_dataset(self.name, **self.kwargs)
        return prepare(subset_train(ds, self.train_size, self.kwargs.get("seed", 0)),
                       self.preprocess)

    #: the options whose different values may still give the same images: a split size given
    #: as the default (``--val-size 180`` for digits' 10%, a count or a fraction), or a
    #: ``train_size`` of every training image
    SIZE_ARGS = ("val_size", "test_size", "train_size")

    def same_data(self, recorded: Any, data: TuningData) -> bool:
        """Whether the study's ``recorded`` description, which differs from this one only in
        split sizes and the spelling of a built-in dataset's name, loads the very images of
        ``data`` (this source's, loaded): then it is the same data, as a study resumed with the
        default size written out (``--val-size 180``) is. Anything else that differs, differs."""
        mine = self.describe()
        name = recorded.get("dataset") if isinstance(recorded, dict) else None
        if not (isinstance(name, str) and _same_source(name, self.name)):
            name = self.name
        if not isinstance(recorded, dict) or set(recorded) - set(mine) - set(self.SIZE_ARGS) \
                or any(recorded.get(k) != v for k, v in {**mine, "dataset": name}.items()
                       if k not in self.SIZE_ARGS):
            return False
        kwargs = {k: v for k, v in self.kwargs.items() if k not in self.SIZE_ARGS}
        kwargs.update({k: recorded[k] for k in ("val_size", "test_size") if k in recorded})
        theirs = DatasetSource(name, kwargs, self.preprocess, recorded.get("train_size"))
        if theirs.describe() != recorded:
            return False
        other = theirs.load()
        return all(np.array_equal(getattr(data, a), getattr(other, a))
                   for a in ("y_train", "y_val", "y_test", "X_train", "X_val", "X_test"))


def _same_source(recorded: str, given: str) -> bool:
    """Whether dataset names ``recorded`` and ``given`` name the same data here: two spellings
    of a built-in dataset's name (a study started with --dataset Digits or CIFAR-10, resumed
    with digits or cifar10), or two paths of one image folder (``folder:fold/`` from its parent
    and ``folder:/data/fold``). A relative path is resolved from this working directory, so it
    may name another folder than it did; the images are compared after this all the same."""
    from mlplab.data.base import user_path
    from mlplab.data.datasets import canonical_dataset_name

    a, b = canonical_dataset_name(recorded), canonical_dataset_name(given)
    prefix = "folder:"
    if not (a.lower().startswith(prefix) and b.lower().startswith(prefix)):
        return a == b
    try:
        return os.path.realpath(user_path(a[len(prefix):].strip())) == \
            os.path.realpath(user_path(b[len(prefix):].strip()))
    except (OSError, ValueError):  # (an unknown ~user: DatasetError, a ValueError)
        return False


@dataclass
class ArraySource(DataSource):
    """Data already in memory (pickled to worker processes)."""

    data: TuningData

    def describe(self) -> dict[str, Any]:
        d = self.data
        return {"dataset": d.name, "arrays": [len(d.y_train), len(d.y_val), len(d.y_test),
                                              d.num_features]}

    def load(self) -> TuningData:
        return self.data


def subset_train(dataset: Dataset, train_size: int | None, seed: int | None = 0) -> Dataset:
    """``dataset`` with a seeded, stratified subset of ``train_size`` training images (tuning on
    a subset is much cheaper; validation and test splits are untouched)."""
    import dataclasses

    from mlplab.data.base import stratified_split

    if train_size is None:
        return dataset
    n = len(dataset.y_train)
    if not 1 <= int(train_size) <= n:
        raise ValueError(f"{setting('--train-size', 'train_size')} must be between 1 and {n} "
                         f"(the training images); got {train_size}.")
    if int(train_size) == n:
        return dataset
    _, keep = stratified_split(dataset.y_train, int(train_size), seed)
    # a class without a training image cannot be learnt, yet is scored on the validation split:
    # every trial would tune a network that has never seen it
    present = np.unique(dataset.y_train)
    missing = len(present) - len(np.unique(dataset.y_train[keep]))
    if missing:
        enough = f"at least {len(present)}, the number of classes" \
            if int(train_size) < len(present) else "a larger one"
        raise ValueError(f"{setting('--train-size', 'train_size')} {train_size} leaves {missing} "
                         f"of the {len(present)} classes without a training image; give "
                         f"{enough}.")
    return dataclasses.replace(dataset, X_train=dataset.X_train[keep],
                               y_train=dataset.y_train[keep],
                               notes=[*dataset.notes, f"training subset of {train_size} images"])


def prepare(dataset: Dataset, preprocess: str = "standardize") -> TuningData:
    """A raw :class:`mlplab.data.Dataset` preprocessed for training: the recipe is fitted on the
    training split only, then applied to all three splits."""
    from mlplab.data import make_preprocessing

    if not len(dataset.y_val):
        raise ValueError(f"tuning maximises validation accuracy, and {dataset.name} has no "
                         "validation split: give it one with "
                         f"{setting('--val-size N', 'val_size=N')}.")
    pipe = make_preprocessing(preprocess)
    X_train = pipe.fit_transform(dataset.X_train)
    return TuningData(
        name=dataset.name, classes=list(dataset.classes),
        X_train=X_train, y_train=np.asarray(dataset.y_train),
        X_val=pipe.transform(dataset.X_val), y_val=np.asarray(dataset.y_val),
        X_test=pipe.transform(dataset.X_test), y_test=np.asarray(dataset.y_test),
        preprocessing=pipe, preprocessing_name=preprocess,
        image_shape=tuple(dataset.image_shape), dataset=dataset)


def as_source(dataset: Any, preprocess: str = "standardize", train_size: int | None = None,
              **kwargs: Any) -> DataSource:
    """A :class:`DataSource` for a dataset name (``kwargs`` go to ``load_dataset``), a raw
    ``Dataset``, :class:`TuningData` or a source itself."""
    if isinstance(dataset, str):
        return DatasetSource(dataset, kwargs, preprocess, train_size)
    # load_dataset's options for data already loaded were dropped without a word: a
    # tune(load_dataset("digits"), val_size=0.5) searched on the dataset's own 180 images
    if kwargs:
        names = sorted(kwargs)
        raise TypeError(f"{', '.join(names)} {'applies' if len(names) == 1 else 'apply'} only "
                        f"to a dataset given by name; this {type(dataset).__name__} is loaded "
                        f"already: pass its name, or a dataset loaded with load_dataset(name, "
                        f"{names[0]}=...).")
    if train_size is not None and isinstance(dataset, DataSource | TuningData):
        raise TypeError(f"train_size applies to a dataset name or a Dataset; a "
                        f"{type(dataset).__name__} is used as it is: pass it with the training "
                        "images you want it to have.")
    if isinstance(dataset, DataSource):
        return dataset
    if isinstance(dataset, TuningData):
        return ArraySource(dataset)
    if hasattr(dataset, "X_train") and hasattr(dataset, "classes"):
        return ArraySource(prepare(subset_train(dataset, train_size), preprocess))
    raise TypeError(f"dataset must be a dataset name, an mlplab.data.Dataset, TuningData or a "
                    f"DataSource; got {type(dataset).__name__}.")
