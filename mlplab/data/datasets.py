"""``load_dataset``: one entry point for every dataset mlplab knows.

Names: ``cifar10``, ``fashion-mnist``, ``mnist``, ``digits`` (scikit-learn's bundled 8x8 digits,
the default that needs no download) and ``folder:PATH`` (one sub-folder per class).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from typing import cast, overload

import numpy as np

from mlplab._text import counted
from mlplab._validation import check_seed, is_int, is_number
from mlplab.data.base import (
    SPLITS,
    Dataset,
    DatasetError,
    SplitSizeError,
    check_data_dir,
    draw_seed,
    pil_bilinear,
    resolve_size,
    split_size_name,
    stratified_split,
    tail_split,
    user_path,
)

#: names accepted by ``load_dataset`` besides ``folder:PATH``
DATASET_NAMES = ("digits", "cifar10", "fashion-mnist", "mnist")
#: the spellings load_dataset takes for them
_ALIASES = {"digits": "digits", "cifar10": "cifar10", "cifar-10": "cifar10",
            "fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist",
            "fashionmnist": "fashion-mnist", "mnist": "mnist"}


def check_dataset_name(name: object) -> None:
    """Raise :class:`DatasetError` unless :func:`load_dataset` knows ``name`` (a typo is caught
    before any work, not when the data is first needed)."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"dataset name must be a non-empty string; got {name!r}.")
    low = name.strip().lower()
    if low.startswith("folder:"):
        if not name.strip()[len("folder:"):].strip():
            raise DatasetError("folder: needs a path, e.g. folder:/data/pets (one sub-folder of "
                               "images per class).")
    elif low not in _ALIASES:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)} "
                           "or folder:PATH (a folder with one sub-folder of images per class).")


def canonical_dataset_name(name: str) -> str:
    """The name under which :func:`load_dataset` gives dataset ``name`` (``"CIFAR-10"`` ->
    ``"cifar10"``); a ``folder:PATH`` or unknown name as it is, stripped."""
    key = name.strip()
    return _ALIASES.get(key.lower(), key)


DIGITS_CLASSES = [str(i) for i in range(10)]


@overload
def parse_image_size(value: None) -> None: ...
@overload
def parse_image_size(value: int | str | tuple[int, int]) -> tuple[int, int]: ...
def parse_image_size(value: int | str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``32``, ``"32"``, ``"32x24"`` (height x width) or ``(32, 24)`` -> ``(H, W)``."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            parts = value.lower().replace(",", "x").split("x")
            size = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else None
        elif is_int(value):
            size = (int(value), int(value))
        else:
            # a pair, or anything else that unpacks into two (a list, an array); a bool or a
            # float raises the TypeError caught below
            h, w = cast("Iterable[int | float | str]", value)
            # int() would take True as 1 pixel and cut 32.5 to 32
            whole = all(isinstance(v, str) or (is_number(v) and float(v).is_integer())
                        for v in (h, w))
            size = (int(h), int(w)) if whole else None
    except (TypeError, ValueError):
        size = None
    if size is None or min(size) < 1:
        raise DatasetError(f"image size must be a positive integer N or HxW, e.g. 32 or 32x32; "
                           f"got {value!r}.")
    return size


def resize_images(X: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (N, H, W, C) uint8 images to ``size`` = (H, W) with Pillow (bilinear)."""
    from PIL import Image

    if X.shape[1:3] == tuple(size):
        return X
    out = np.empty((len(X), size[0], size[1], X.shape[3]), dtype=np.uint8)
    for i, img in enumerate(X):
        im = Image.fromarray(img[:, :, 0] if X.shape[3] == 1 else img)
        arr = np.asarray(im.resize((size[1], size[0]), pil_bilinear()))
        out[i] = arr if arr.ndim == 3 else arr[:, :, None]
    return out


def _as_given(size: int | float | None, count: int) -> str:
    """A split size as a message names it: a fraction as given, with the count it made
    ("0.999 (27 images)"); "--val-size 27 leaves no training images" answered --val-size 0.999
    with a number never typed."""
    if isinstance(size, float | np.floating) and not float(size).is_integer():
        return f"{float(size)} ({counted(count, 'image')})"
    return str(count)


def _holdout_splits(name: str, classes: list[str], X: np.ndarray, y: np.ndarray,
                    test: tuple[np.ndarray, np.ndarray] | None, val_size: int | float | None,
                    test_size: int | float | None, seed: int | None, source: str,
                    val: tuple[np.ndarray, np.ndarray] | None = None) -> Dataset:
    """Seeded stratified splits for sources without the exercise's fixed order.

    Without a separate test set, ``test_size`` images (default 10%) are held out of the training
    images first; then ``val_size`` (default 10% of all images) of the rest become validation.
    A separate test or validation set (a folder's ``test/``, ``val/``) is that split instead,
    and its size, if given, picks a stratified subset of it.
    """
    n = len(y)
    notes = []
    # the rows of X that the validation split below picks from: its images are gathered once,
    # by composed indices, not copied into a training remainder first (for 50,000 CIFAR-sized
    # images that copy alone took about half a second)
    rows = None
    if test is None:
        n_test = resolve_size(test_size, n, int(round(0.1 * n)), "test_size", spare=1)
        rows, hold = stratified_split(y, n_test, seed)
        X_test, y_test = X[hold], y[hold]
        y = y[rows]
        if not len(y):
            raise SplitSizeError("test_size", f" {_as_given(test_size, n_test)} leaves no "
                                              f"training images (only {n} available).")
        notes.append(_empty_split_note("test") if not n_test else
                     f"test split: {counted(n_test, 'image')} held out of the training images "
                     f"(stratified, seed {seed})")
    else:
        X_test, y_test = test
        if test_size is not None:
            n_test = resolve_size(test_size, len(y_test), len(y_test), "test_size")
            _, hold = stratified_split(y_test, n_test, seed)
            X_test, y_test = X_test[hold], y_test[hold]
    if val is not None:
        X_val, y_val = val
        if val_size is None:
            notes.append(f"validation split: the {counted(len(y_val), 'image')} of the "
                         "validation folder")
        else:
            n_val = resolve_size(val_size, len(y_val), len(y_val), "val_size")
            _, hold = stratified_split(y_val, n_val, None if seed is None else seed + 1)
            notes.append(_empty_split_note("validation") if not n_val else
                         f"validation split: the {counted(n_val, 'image')} of the validation "
                         "folder" if n_val == len(y_val) else
                         f"validation split: {n_val} of the {len(y_val)} images of the "
                         f"validation folder (stratified, seed {seed})")
            X_val, y_val = X_val[hold], y_val[hold]
        X_train = X if rows is None else X[rows]
        return Dataset(name, classes, X_train, y, X_val, y_val, X_test, y_test, source=source,
                       notes=notes)
    n_val = resolve_size(val_size, len(y), int(round(0.1 * n)), "val_size", spare=1)
    if n_val >= len(y) and val_size is None:
        # the size is the default's, not the user's: say so, and what to change
        raise SplitSizeError("val_size", f" is not given, and its default, 10% of all {n} images "
                                         f"({int(round(0.1 * n))}), leaves none of the {len(y)} "
                                         "images after the test split for training; pass a "
                                         f"smaller {split_size_name('test_size')} (or a "
                                         f"{split_size_name('val_size')} below {len(y)}).")
    if n_val >= len(y):
        raise SplitSizeError("val_size", f" {_as_given(val_size, n_val)} leaves no training "
                                         f"images (only {len(y)} available after the test "
                                         "split).")
    # a different stream from the test split's, still a pure function of the seed
    keep, hold = stratified_split(y, n_val, None if seed is None else seed + 1)
    notes.append(_empty_split_note("validation") if not n_val else
                 f"validation split: {counted(n_val, 'image')} (stratified, seed {seed})")
    X_keep, X_hold = (X[keep], X[hold]) if rows is None else (X[rows[keep]], X[rows[hold]])
    return Dataset(name, classes, X_keep, y[keep], X_hold, y[hold], X_test, y_test,
                   source=source, notes=notes)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    # parsed once per process (tests and tuning load it many times); read-only so that the
    # shared copy cannot be changed; the splits below index it, which copies
    images, target = _sklearn_digits()
    # 0..16 -> 0..255 keeps all 17 levels distinct and matches every other image dataset's range
    X = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[:, :, :, None]
    y = target.astype(np.int64)
    X.flags.writeable = False
    y.flags.writeable = False
    return X, y


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """``load_digits()``'s ``images`` (1797, 8, 8) and ``target``, read as it reads them (its
    bundled ``digits.csv.gz`` through ``np.loadtxt``) but without importing scikit-learn, which
    imports SciPy: 1.3-1.5 s of every command on the default dataset, against 0.03 s for the
    file. Falls back to scikit-learn's function if the file is not where it keeps it."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            with gzip.open(path, mode="rt", encoding="utf-8") as f:
                data = np.loadtxt(f, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int, copy=False)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def load_digits_dataset(val_size: int | float | None = None,
                        test_size: int | float | None = None,
                        seed: int | None = 0) -> Dataset:
    """scikit-learn's 1,797 8x8 digits as (N, 8, 8, 1) uint8, values 0..16 rescaled to 0..255."""
    X, y = _digits_arrays()
    return _holdout_splits("digits", list(DIGITS_CLASSES), X, y, None, val_size, test_size, seed,
                           source="sklearn.datasets.load_digits")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = False,
                 val_size: int | float | None = None, test_size: int | float | None = None,
                 image_size: int | str | tuple[int, int] | None = None, seed: int | None = 0,
                 mirror: str | None = None, cache: bool = True,
                 channels: int | None = None, progress: bool = True) -> Dataset:
    """Load a dataset's raw splits.

    Parameters
    ----------
    name : ``"digits"``, ``"cifar10"``, ``"fashion-mnist"``, ``"mnist"`` or ``"folder:PATH"``.
    data_dir : where to look for (and download to) the files; default ``$MLPLAB_DATA`` or
        ``~/.cache/mlplab`` (plus ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST).
    download : fetch missing files from the official URL (or ``mirror``), checksum-verified.
    val_size, test_size : split sizes, a count or a fraction in (0, 1). CIFAR-10 and (Fashion-)
        MNIST take validation from the end of the training images (defaults 1,000 and 5,000, the
        exercise's split) and ``test_size`` keeps the first N test images (default all).
        ``digits`` and folders use seeded stratified splits (defaults 10% each).
    image_size : resize every image to N x N or (H, W); default: keep the files' size.
    seed : seed of the stratified splits; None draws one at random, which ``load_options``
        and ``notes`` record (a run trained on the dataset loads the same splits again).
    mirror : base URL replacing the official download location.
    cache : keep decoded image folders in a cache file (see :mod:`mlplab.data.folder`).
    channels : folders only: 1 or 3 decodes every image as grey or RGB (a run's own layout);
        default: grey only if every image is.
    progress : progress bars while files download and a folder's images are decoded (shown only
        in a terminal or a notebook); False: none.

    Raises
    ------
    DatasetError : missing, corrupt or malformed files, or impossible split sizes; the message
        names the file and the problem (and, for missing data, the command that fetches it).
    """
    check_dataset_name(name)
    try:
        check_seed(seed, split=True)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    size = parse_image_size(image_size)
    key = name.strip()
    low = key.lower()
    if seed is None and (low.startswith("folder:") or _ALIASES.get(low) == "digits"):
        # a random split, but one whose seed is known: load_options and the notes record it, so
        # that a run trained on these splits can load them again (evaluate, --resume)
        seed = draw_seed()
    if low.startswith("folder:"):
        from mlplab.data.folder import load_folder

        path = user_path(key[len("folder:"):])
        found = load_folder(path, size, cache=cache, channels=channels, progress=progress)
        ds = _holdout_splits(f"folder:{path}", found.classes, *found.train, found.test, val_size,
                             test_size, seed, source=str(path), val=found.val)
        return _record_load_options(ds, None, image_size, seed, val_size, test_size)
    low = _ALIASES[low]
    if low != "digits":
        check_data_dir(data_dir)
    if low == "digits":
        ds = load_digits_dataset(val_size, test_size, seed)
    elif low == "cifar10":
        from mlplab.data.cifar import load_cifar10

        ds = load_cifar10(data_dir, download=download, mirror=mirror, progress=progress)
        ds = _fixed_splits(ds, val_size, test_size, default_val=1000)
    elif low in ("fashion-mnist", "mnist"):
        from mlplab.data.idx import load_mnist

        ds = load_mnist("mnist" if low == "mnist" else "fashion-mnist", data_dir,
                        download=download, mirror=mirror, progress=progress)
        ds = _fixed_splits(ds, val_size, test_size, default_val=5000)
    if size is not None:
        for s in SPLITS:
            setattr(ds, f"X_{s}", resize_images(getattr(ds, f"X_{s}"), size))
    return _record_load_options(ds, None if low == "digits" else data_dir, image_size, seed,
                                val_size, test_size)


def _record_load_options(ds: Dataset, data_dir: str | os.PathLike | None,
                         image_size: int | str | tuple[int, int] | None, seed: int | None,
                         val_size: int | float | None, test_size: int | float | None) -> Dataset:
    """``ds`` with the options it was loaded with (``Dataset.load_options``), as a run's config
    records them: ``image_size`` an int or a string (a pair becomes ``"HxW"``); the split sizes
    as asked for (a fraction stays one: a run lent the dataset reads a test fraction of an
    official test set by it, whose images the dataset no longer all has)."""
    if image_size is not None and not isinstance(image_size, int | str):
        image_size = "{}x{}".format(*parse_image_size(image_size))
    sizes = {k: v.item() if isinstance(v, np.generic) else v
             for k, v in (("val_size", val_size), ("test_size", test_size))}
    ds.load_options = {"data_dir": None if data_dir is None else str(user_path(data_dir).resolve()),
                       "image_size": image_size, "seed": None if seed is None else int(seed),
                       **sizes}
    return ds


def _empty_split_note(split: str) -> str:
    """The note of a split of no image (a size of 0, or a fraction that rounds to 0): 'the
    last 0 training images' or '0 images (stratified, seed 0)' read as a split drawn."""
    return f"{split} split: none"


def _fixed_splits(ds: Dataset, val_size: int | float | None, test_size: int | float | None,
                  default_val: int) -> Dataset:
    """The exercise's order-preserving split of an official train/test release.

    ``ds`` comes with all training images in ``X_train`` and all test images in ``X_test``.
    """
    if not len(ds.y_train):  # "--val-size must be between 0 and -1" said nothing of the cause
        raise DatasetError(f"{ds.source}: the training files of {ds.name} hold no images; they "
                           "are damaged or not the dataset's - delete them and download again.")
    n_val = resolve_size(val_size, len(ds.y_train), default_val, "val_size", spare=1)
    if val_size is None and n_val >= len(ds.y_train):
        raise SplitSizeError("val_size", f" is not given, and its default, the last {default_val} "
                                         f"training images, leaves none of the "
                                         f"{len(ds.y_train)} for training; pass a smaller one.")
    ds.X_train, ds.y_train, ds.X_val, ds.y_val = tail_split(ds.X_train, ds.y_train, n_val)
    ds.notes.append(_empty_split_note("validation") if not n_val else
                    f"validation split: the last {counted(n_val, 'training image')}")
    if test_size is not None:
        n_test = resolve_size(test_size, len(ds.y_test), len(ds.y_test), "test_size")
        ds.X_test, ds.y_test = ds.X_test[:n_test], ds.y_test[:n_test]
        ds.notes.append(_empty_split_note("test") if not n_test else
                        f"test split: the first {counted(n_test, 'test image')}")
    return ds
