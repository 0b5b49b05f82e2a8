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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplab._validation import setting

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
                      name: str) -> None:
    """Refuse to evaluate a split that is not the one the run saw: a folder dataset that gained
    or lost images is split anew, and its validation and test splits then hold training images.
    (The training split may differ on purpose: tuning trains on a subset of it.)"""
    if split == "train":
        return
    size, sha = metrics.get(f"{split}_size"), metrics.get("split_sha1", {}).get(split)
    if (size is not None and size != len(y)) or (sha is not None
                                                 and sha != split_fingerprint(X, y)):
        then = f"{size} images then, {len(y)} now" if size not in (None, len(y)) else \
            "as many images, but other ones"
        raise ValueError(f"the {split} split of {name} is not the one this run was trained with "
                         f"({then}): the data changed since, and the new split may hold training "
                         "images. Use the data as it was, or train a new run.")


def check_same_data(record: dict[str, Any], ds: Dataset, ckpt: Path) -> None:
    """Refuse moved data whose splits are not the ones in ``ckpt``'s record (``split_record``
    at the start of the run): sizes of all three, fingerprints of validation and test."""
    for split in ("train", "val", "test"):
        size = record.get(f"{split}_size")
        if size is not None and size != len(ds.split(split)[1]):
            raise ValueError(f"the {split} split of {ds.name} has {len(ds.split(split)[1])} "
                             f"images, but the run was trained with {size} (see {ckpt}): it "
                             "is not the run's data.")
    for split in ("val", "test"):
        check_same_split(record, split, *ds.split(split), ds.name)


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
