"""A run's record of its data splits and the checks against it: :func:`split_record` stores the
split sizes and the SHA-1 fingerprints of the validation and test splits (in the checkpoint and
``metrics.json``), and evaluating a finished run or resuming one from moved data refuses a dataset
whose splits are not those (a folder dataset that gained or lost images is split anew, and its
evaluation splits may then hold training images). :func:`require_test_split` refuses
``eval_test`` on a dataset without a test split. Separate because both training and using a
finished run need these checks, and they concern only the data, not the run's other files.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplab._text import agree, counted
from mlplab._validation import is_int, setting

if TYPE_CHECKING:
    from mlplab.data import Dataset
    from mlplab.tuning.data import TuningData


def split_record(ds: Dataset) -> dict[str, Any]:
    """The split sizes and the evaluation splits' fingerprints, for a run's ``metrics.json``:
    ``evaluate`` refuses a folder dataset whose validation or test split has changed since."""
    return {"train_size": int(len(ds.y_train)), "val_size": int(len(ds.y_val)),
            "test_size": int(len(ds.y_test)),
            "split_sha1": {s: split_fingerprint(*ds.split(s)) for s in ("val", "test")}}


def split_fingerprint(X: np.ndarray, y: np.ndarray) -> str:
    """SHA-1 of a split's raw images and labels."""
    # .data: the arrays' bytes as a memoryview (NumPy types ndarray as a buffer for Python
    # 3.12 and later only)
    h = hashlib.sha1(np.ascontiguousarray(X).data)
    h.update(np.ascontiguousarray(y, dtype=np.int64).data)
    return h.hexdigest()


def check_same_split(metrics: dict[str, Any], split: str, X: np.ndarray, y: np.ndarray,
                      name: str, noun: str = "run") -> None:
    """Refuse to evaluate a split that is not the one the run (or other ``noun``: a depth
    study) saw: a folder dataset that gained or lost images is split anew, and its validation
    and test splits then hold training images. (The training split may differ on purpose:
    tuning trains on a subset of it.)"""
    if split == "train":
        return
    size, sha = metrics.get(f"{split}_size"), metrics.get("split_sha1", {}).get(split)
    if (size is not None and size != len(y)) or (sha is not None
                                                 and sha != split_fingerprint(X, y)):
        then = f"{counted(size, 'image')} then, {len(y)} now" if size not in (None, len(y)) else \
            "as many images, but other ones"
        raise ValueError(f"the {split} split of {name} is not the one this {noun} was trained "
                         f"with ({then}): the data changed since, and the new split may hold "
                         f"training images. Use the data as it was, or train a new {noun}."
                         f"{_val_folder_hint(name)}")


def _val_folder_hint(name: str) -> str:
    """For a folder dataset with a validation folder beside ``train/``, why a run trained
    before 2 December 2026 sees other splits although nothing changed: mlplab took its
    validation split from ``train/`` then."""
    if not name.startswith("folder:"):
        return ""
    from mlplab.data.folder import split_folders

    try:
        val = split_folders(Path(name[len("folder:"):])).get("val")
    except (OSError, ValueError):
        return ""
    return "" if val is None else (
        f" (If the folder is as it was: since 2 December 2026 mlplab reads {val.name}/ as the "
        f"validation split, and took validation from train/ before; move {val.name}/ aside to "
        "use what was trained before.)")


def check_same_data(record: dict[str, Any], ds: Dataset, ckpt: Path, noun: str = "run",
                    hint: str = "") -> None:
    """Refuse moved data whose splits are not the ones in ``ckpt``'s record (``split_record``
    at the start of the run, or other ``noun``): sizes of all three, fingerprints of validation
    and test. ``hint``, if given, ends the refusal in brackets: what else may have changed (the
    options of a config file that split the data) and how to mend it."""
    try:
        for split in ("train", "val", "test"):
            size = record.get(f"{split}_size")
            if size is None:
                continue
            now = len(ds.split(split)[1])
            if size != now:
                raise ValueError(f"the {split} split of {ds.name} has "
                                 f"{counted(now, 'image')}, but the {noun} was trained "
                                 f"with {size} (see {ckpt}): it is not the {noun}'s data."
                                 f"{_val_folder_hint(ds.name)}")
        for split in ("val", "test"):
            check_same_split(record, split, *ds.split(split), ds.name, noun)
    except ValueError as exc:
        if not hint:
            raise
        raise ValueError(f"{exc} ({hint})") from None


def image_decoding(ds: Dataset) -> dict[str, int]:
    """``{"image_decoding": DECODING}`` for a run on a folder dataset (what its metrics.json and
    checkpoint record, :func:`check_same_decoding` reads), nothing for other data."""
    from mlplab.data.folder import DECODING

    return {"image_decoding": DECODING} if ds.name.lower().startswith("folder:") else {}


def recorded_decoding(record: Any) -> int:
    """The :data:`mlplab.data.folder.DECODING` a run's ``record`` (its metrics.json, or its
    checkpoint's extra fields) says its folder images were decoded with. Runs written before it
    was recorded tell by what else they hold: the environment (recorded since 30 Nov 2026, after
    decoding 3) or the splits' fingerprints (since 29 Nov 2026, 07:59, after decoding 2)."""
    if not isinstance(record, dict):
        return 1
    if is_int(record.get("image_decoding")):
        return int(record["image_decoding"])
    if isinstance(record.get("environment"), dict):
        return 3
    inner = record.get("splits")  # a checkpoint's; metrics.json holds them at the top
    fingerprints = (inner if isinstance(inner, dict) else record).get("split_sha1")
    return 2 if isinstance(fingerprints, dict) else 1


def check_same_decoding(record: Any, dataset: str, run: str | os.PathLike,
                        doing: str) -> None:
    """Refuse to ``doing`` (evaluate, resume) the run ``run``, trained on the folder dataset
    ``dataset`` (a ``folder:PATH`` name; other datasets are not decoded from images), when
    ``record`` dates it before a change of decoding that touches an image of the folder: its
    model may have been trained on other pixels, and such a run folder was otherwise evaluated,
    or trained on, with other inputs without a word. (``evaluate`` skips this check when the
    split's recorded fingerprint matches: the same pixels.)"""
    from mlplab.data.folder import DECODING, decoded_otherwise_before

    if not dataset.lower().startswith("folder:"):
        return
    decoding = recorded_decoding(record)
    if decoding >= DECODING:
        return
    folder = Path(dataset[len("folder:"):])
    if not folder.is_dir():  # loading the data says where it is missing
        return
    found = decoded_otherwise_before(folder, decoding)
    if found is None:
        return
    path, what = found
    raise ValueError(f"{run} was written before mlplab changed how it decodes some images of "
                     f"{folder} ({path} is {what}), and does not record which way its model "
                     f"saw them: {doing} it now could give the model inputs it was not "
                     "trained on. Train a new run on the data with this mlplab (or use the "
                     "mlplab that trained it).")


def require_test_split(ds: Dataset | TuningData) -> None:
    """Refuse ``--eval-test`` on a dataset without a test split before training, not after."""
    if not len(ds.y_test):
        eval_test = setting("--eval-test", "eval_test=True")
        raise ValueError(f"the dataset {ds.name} has no test split to evaluate ({eval_test}): "
                         f"give it one with {setting('--test-size N', 'test_size=N')}, or leave "
                         f"out {eval_test}.")


def require_classes(ds: Dataset | TuningData) -> None:
    """Refuse a dataset with fewer than two classes before training, in the data's terms (the
    network itself would say ``num_classes must be an integer >= 2``)."""
    if ds.num_classes < 2:
        found = f"one class ({ds.classes[0]})" if ds.num_classes else "no classes"
        hint = (" (folder:PATH needs one sub-folder of images per class)"
                if ds.name.startswith("folder:") else "")
        raise ValueError(f"{ds.name} has {found}; a classifier needs at least two{hint}.")


def warn_identical_images(ds: Dataset) -> None:
    """Warn when every training image is the same (a folder of blank or one-colour images):
    the run trained to chance level and its note named the usual causes, a learning rate or
    initialisation, not the data. Compared in blocks, from the first image: an ordinary dataset
    differs within the first few, and no copy of the whole split is made."""
    X = ds.X_train
    if len(X) < 2:
        return
    for i in range(1, len(X), 1024):
        if not np.array_equal(X[i:i + 1024], np.broadcast_to(X[0], X[i:i + 1024].shape)):
            return
    warnings.warn(f"{ds.name}: all {counted(len(X), 'training image')} are the same image: the "
                  "network has nothing to tell the classes apart by; check the image files (a "
                  "failed export or conversion leaves them blank).", UserWarning, stacklevel=3)


def warn_untrained_classes(ds: Dataset) -> None:
    """Warn of classes with no training image: a split that held out a class's only images (two
    images, one per class, with ``val_size`` 1) trained a network that never saw the class and
    scored it on the validation split without a word (``MLPClassifier`` warns of the same,
    tuning's training subset is refused)."""
    labels = np.asarray(ds.y_train)
    if not len(labels) or labels.dtype.kind not in "iub":  # (labels of another kind: refused)
        return
    missing = [str(c) for i, c in enumerate(ds.classes) if not np.any(labels == i)]
    if missing:
        from mlplab.data.base import split_size_name

        k = len(missing)
        names = ", ".join(missing[:5]) + (f" and {k - 5} more" if k > 5 else "")
        warnings.warn(f"{ds.name}: the training split ({counted(len(labels), 'image')}) has no "
                      f"image of {agree(k, 'class', 'classes')} {names}: the network cannot learn "
                      f"{agree(k, 'it', 'them')}, yet the validation and test splits score "
                      f"{agree(k, 'it', 'them')}; give a smaller {split_size_name('val_size')} "
                      f"or {split_size_name('test_size')}, or more images of "
                      f"{agree(k, 'that class', 'those classes')}.", UserWarning, stacklevel=3)
