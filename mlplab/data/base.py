"""The ``Dataset`` container, ``DatasetError`` and the helpers every loader shares.

Loaders return raw arrays (images as (N, H, W, C) ``uint8``) split into train / validation / test;
preprocessing lives in :mod:`mlplab.data.transforms` and is fitted on the training split only.
"""

from __future__ import annotations

import contextlib
import os
import reprlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlplab._text import path_word, shell_command
from mlplab._validation import setting


class DatasetError(ValueError):
    """A dataset is missing, corrupt, of the wrong format or asked for in an impossible way."""


class DatasetNotFoundError(DatasetError):
    """A dataset's files, or its folder, are not where they were looked for (rather than
    damaged): for a run loading its data again, most likely data that moved since."""


class SplitSizeError(DatasetError):
    """A split size (``val_size`` or ``test_size``, the ``option``) that the images cannot
    give. The message names it as the user sets it, by :func:`split_size_name`; ``rest`` is the
    message after that name, for a caller that sets the size otherwise (a run's recorded size,
    which ``evaluate`` has no flag for) to name it its own way."""

    def __init__(self, option: str, rest: str) -> None:
        super().__init__(split_size_name(option) + rest)
        self.option, self.rest = option, rest

    def __reduce__(self) -> tuple:  # pickled from tuning's worker processes: two arguments
        return type(self), (self.option, self.rest)


def split_size_name(option: str) -> str:
    """How a message names the split size ``option`` (``val_size``): by the flag that sets it
    while a command runs (every command that loads data by name has ``--val-size`` and
    ``--test-size``), by the argument of ``load_dataset`` otherwise."""
    return setting("--" + option.replace("_", "-"), option)


def download_hint() -> str:
    """How a "not found" message ends where the caller may fetch the files itself; a resumed or
    evaluated run loads its data as configured and takes no --download, so mlplab.runs drops
    it."""
    return setting(" (or add --download to this command)", " (or pass download=True)")


def download_command(name: str, data_dir: str | os.PathLike[str] | None) -> str:
    """``mlplab data download NAME [--data-dir DIR]``, quoted for this platform's shell: a "not
    found" message's advice, pasted as it stands (a folder ``my data`` or ``-d`` included)."""
    where = ["--data-dir", path_word(data_dir)] if data_dir is not None else []
    return shell_command(["mlplab", "data", "download", name, *where])


#: the names of a dataset's splits, in the order summaries list them
SPLITS = ("train", "val", "test")


@dataclass
class Dataset:
    """Raw, unpreprocessed splits of one dataset.

    ``X_*`` are (N, H, W, C) ``uint8`` images in the order of the source files, ``y_*`` are
    ``int64`` labels indexing ``classes``. ``source`` says where the data was read from.
    ``load_options`` holds the :func:`~mlplab.data.load_dataset` arguments that made these images
    and splits (``data_dir``, ``image_size``, ``seed``, which a run given this dataset records
    so that ``evaluate_run`` and ``resume_run`` load the same splits again; ``val_size`` and
    ``test_size`` as asked for); empty for a dataset built by hand.
    """

    name: str
    classes: list[str]
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source: str = ""
    notes: list[str] = field(default_factory=list)
    load_options: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(int(s) for s in self.X_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_features(self) -> int:
        """Length of one flattened image (H * W * C), the input size of a model."""
        return int(np.prod(self.image_shape))

    @property
    def num_classes(self) -> int:
        """The number of classes, ``len(classes)`` (labels are ``0..num_classes - 1``)."""
        return len(self.classes)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in SPLITS:
            raise ValueError(f"split must be 'train', 'val' or 'test'; got {name!r}.")
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")

    def summary(self) -> dict:
        """JSON-able description: split sizes, image shape, class names and per-split counts."""
        out: dict = {"name": self.name, "source": self.source,
                     "image_shape": list(self.image_shape), "dtype": str(self.X_train.dtype),
                     "classes": list(self.classes), "splits": {}}
        for s in SPLITS:
            _, y = self.split(s)
            counts = np.bincount(y, minlength=self.num_classes) if len(y) else \
                np.zeros(self.num_classes, dtype=np.int64)
            out["splits"][s] = {"size": int(len(y)), "class_counts": [int(c) for c in counts]}
        return out

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)}, image_shape={self.image_shape}, "
                f"classes={self.num_classes})")


def user_path(path: str | os.PathLike) -> Path:
    """``Path(path).expanduser()``, with a ``~`` whose home folder is unknown (another user's
    that this machine does not know, or one's own without ``$HOME`` or a password entry) as a
    one-line ``DatasetError`` (Python raises a bare RuntimeError). A text path that this
    locale's file system encoding cannot write (``folder:/data/caf\u00e9`` in the config.json
    of a run trained under a UTF-8 locale, read under ``LC_ALL=C PYTHONUTF8=0``, where Python's
    file names are ASCII) names the file whose name is its UTF-8 bytes, as it did where it was
    written: it was reported as "no such folder"."""
    if isinstance(path, str):
        try:
            os.fsencode(path)
        except UnicodeEncodeError:
            with contextlib.suppress(UnicodeEncodeError):  # (a surrogate of no byte: as it is)
                path = os.fsdecode(path.encode("utf-8", "surrogateescape"))
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise DatasetError(f"{str(path)[:200]!r}: the home folder '~' stands for is unknown "
                           "here; give the folder's full path.") from None


def check_data_dir(data_dir: str | os.PathLike | None) -> None:
    """Refuse a data folder that is a file, rather than report the dataset missing from it (and
    advise downloading into it). ``os.path.isfile``, unlike ``Path.is_file``, answers False to
    a name too long."""
    if data_dir is not None and os.path.isfile(user_path(data_dir)):
        raise DatasetError(f"{data_dir} is a file; {setting('--data-dir', 'data_dir')} must be "
                           "the folder that holds (or will hold) the dataset's files.")


#: what to do about a downloaded file whose bytes are wrong: a fresh copy mends it
REFETCH = "delete it and download again"


def damaged_data_file(path: Path, problem: str, fix: str = REFETCH) -> DatasetError:
    """A dataset file that is not what it should be, in one line: what is wrong, what to do."""
    return DatasetError(f"{path}: {problem}; {fix}.")


def unreadable_data_file(path: Path, exc: OSError) -> DatasetError:
    """A dataset file that cannot be read, with what to do: a file the user may not read is
    theirs to open up (downloading again cannot replace it), any other failure a download's."""
    fix = "make it readable (check its permissions and owner)" \
        if isinstance(exc, PermissionError) else REFETCH
    return damaged_data_file(path, f"cannot read ({exc.strerror or exc})", fix)


def data_root(cache: bool = False) -> Path:
    """Where downloads and caches live: ``$MLPLAB_DATA`` or ``~/.cache/mlplab``. Where that
    cannot be, a ``DatasetError`` that says where the folder came from: the user typed neither
    (a container's user without HOME or a password entry, as OpenShift runs them, was told
    "'~/.cache/mlplab': ... give the folder's full path", of a path never given). An
    ``MLPLAB_DATA`` that names a file is refused too, except for a ``cache``, whose write then
    fails with a warning that says what to do, and the data is read without it."""
    env = os.environ.get("MLPLAB_DATA")
    try:
        root = user_path(env or "~/.cache/mlplab")
    except DatasetError:
        data_dir = setting("--data-dir DIR", "data_dir")
        if env:
            raise DatasetError(f"MLPLAB_DATA={env[:200]!r}: the home folder '~' stands for is "
                               "unknown here; set MLPLAB_DATA to the folder's full path (or "
                               f"give {data_dir}).") from None
        raise DatasetError("no home folder here for the default data folder ~/.cache/mlplab "
                           f"(HOME is unset and this user has none); give {data_dir} or set "
                           "MLPLAB_DATA to a folder.") from None
    if env and not cache and os.path.isfile(root):
        # its datasets were "not found in /etc/passwd/mnist", with advice to download into it
        raise DatasetError(f"MLPLAB_DATA={env[:200]!r} is a file; set it to the folder that "
                           "holds (or will hold) the downloads and caches.")
    return root


class _BoundedRepr(reprlib.Repr):
    """``reprlib.Repr`` that also cuts bytes before it reprs them (Python 3.11's reprs the
    whole object first, up to four times its size, and only then cuts)."""

    def repr_bytes(self, x: bytes, level: int) -> str:
        return repr(x[: self.maxstring]) + ("..." if len(x) > self.maxstring else "")

    repr_bytearray = repr_bytes

    def repr_dict(self, x: dict, level: int) -> str:
        # reprlib sorts every key first: a refused call on a dict of 500,000 keys took seconds
        return f"<dict of {len(x)} items>"

    def repr_instance(self, x: object, level: int) -> str:
        if callable(x):  # a function's repr ends in its address: never show it
            return f"<{type(x).__name__}>"
        return super().repr_instance(x, level)


_REPR = _BoundedRepr()  # (keyword arguments only from Python 3.12)
_REPR.maxlevel, _REPR.maxtuple, _REPR.maxlist, _REPR.maxdict = 2, 8, 8, 4
_REPR.maxstring = _REPR.maxother = 40


def short_repr(value: object) -> str:
    """A bounded ``repr`` for messages: a pickle's values can nest aliased lists whose full repr
    would take gigabytes."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def resolve_size(value: float | np.floating | np.integer | None, n: int, default: int,
                 what: str, spare: int = 0) -> int:
    """Turn a split size (count, or fraction in (0, 1)) into a count in [0, n]; ``what`` is the
    ``load_dataset`` argument it came from (``val_size``), a :class:`SplitSizeError` names.
    ``spare``: images the caller must keep for training, taken off the largest count a
    refusal names (the caller refuses a count that leaves too few)."""
    if value is None:
        return min(default, n)
    if isinstance(value, np.floating):
        value = float(value)  # np.float32(0.1) is no float: int() below made it 0 images
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer):
        # int("0.1") would fail without naming the option, int(True) give 1 image
        raise SplitSizeError(what, f" must be a count >= 0 or a fraction in (0, 1); got "
                                   f"{short_repr(value)}.")
    if isinstance(value, float) and value == 1.0:
        # 1.0 reads as "all of them", not as one image: refuse it rather than take a count of 1
        raise SplitSizeError(what, " must be a count >= 0 or a fraction in (0, 1); got 1.0 "
                                   "(a fraction must be below 1; for one image give 1).")
    if isinstance(value, float) and not float(value).is_integer():
        if not 0.0 < value < 1.0:
            raise SplitSizeError(what, f" must be a count >= 0 or a fraction in (0, 1); "
                                       f"got {value}.")
        return int(round(value * n))
    count = int(value)
    if count < 0 or count > n:
        # "between 0 and n" named a count that the next check refuses as leaving no training
        available = "the images available" if not spare else \
            f"of {n} images, {spare} kept for training"
        raise SplitSizeError(what, f" must be between 0 and {n - spare} ({available}); "
                                   f"got {count}.")
    return count


def draw_seed() -> int:
    """A random split seed, in the range ``load_dataset`` accepts (below ``2**32 - 1``: the
    validation split uses ``seed + 1``), for a split asked for without one."""
    import secrets

    from mlplab._validation import SPLIT_SEED_MAX

    return secrets.randbelow(SPLIT_SEED_MAX + 1)


def stratified_split(y: np.ndarray, n_holdout: int, seed: int | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: ``(keep, holdout)`` index arrays, each sorted (original order).

    Each class gives ``n_holdout * count / N`` samples (largest remainders get the rest), so class
    proportions match in both parts as closely as counts allow; a class's last sample is held out
    only when no other class can give one more.
    """
    y = np.asarray(y)
    n = len(y)
    if n_holdout <= 0:
        return np.arange(n), np.arange(0)
    classes, counts = np.unique(y, return_counts=True)
    exact = n_holdout * counts / n
    take = np.floor(exact).astype(int)
    rest = n_holdout - take.sum()
    # largest remainders first; stable so that ties go to the lower class
    order = np.argsort(-(exact - take), kind="stable")
    # but a class's last image stays while other classes can give the rest: taken, the part
    # kept (training) had no image of that class, and a net never saw it. Rounds over the
    # classes that can spare one (in that order), then, if still short, over every class
    for keep_one in (1, 0):
        while rest:
            able = order[take[order] < counts[order] - keep_one][:rest]
            if not len(able):
                break
            take[able] += 1
            rest -= len(able)
    rng = np.random.RandomState(seed)
    hold = []
    for cls, k in zip(classes, take):
        idx = np.flatnonzero(y == cls)
        hold.append(idx[rng.permutation(len(idx))[:k]])
    holdout = np.sort(np.concatenate(hold)) if hold else np.arange(0)
    mask = np.ones(n, dtype=bool)
    mask[holdout] = False
    return np.flatnonzero(mask), holdout


def tail_split(X: np.ndarray, y: np.ndarray, val_size: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The exercise's split: train = all but the last ``val_size``, validation = the last."""
    if val_size >= len(y):
        raise SplitSizeError("val_size", f" {val_size} leaves no training images "
                                         f"(only {len(y)} available).")
    cut = len(y) - val_size
    return X[:cut], y[:cut], X[cut:], y[cut:]


def pil_bilinear() -> int:
    """Pillow's bilinear resampling filter: ``Image.Resampling.BILINEAR``, or the module constant
    of Pillow < 9.1, which has no ``Image.Resampling``."""
    from PIL import Image

    return getattr(Image, "Resampling", Image).BILINEAR
