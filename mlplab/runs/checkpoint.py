"""Checkpoints: ``checkpoint.npz``, the model, its preprocessing and the trainer's complete state
in one pickle-free ``.npz``, written atomically (:func:`save_checkpoint`, and
:class:`CheckpointCallback` at the end of every epoch and on Ctrl-C) and read back with every part
checked (:func:`load_checkpoint`), so that a damaged file fails with a clear message instead of
deep inside ``Trainer.resume``. It is a module of its own because it is the one place that knows
the checkpoint's layout; it needs the trainer and the model-file format, not run configurations.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlplab import io
from mlplab._validation import setting
from mlplab.io import HasStateDict
from mlplab.models import MLP
from mlplab.trainer import Callback, History, Trainer

#: the member holding the history's loss of every iteration (float64)
LOSSES = "history/loss"
#: the member naming the module that registered the run's optimiser, if not mlplab's own
OPTIMIZER_MODULE = "optimizer_module"


class CheckpointCallback(Callback):
    """Writes ``checkpoint.npz`` atomically at the end of every epoch and when training stops
    (including Ctrl-C): model, preprocessing and the trainer's complete state."""

    def __init__(self, path: str | os.PathLike,
                 preprocessing: HasStateDict | Mapping[str, Any] | None, extra: dict[str, Any],
                 seconds_before: float = 0.0) -> None:
        self.path = Path(path)
        self.preprocessing = preprocessing
        self.extra = extra
        self.seconds_before = seconds_before
        self._start = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self._start

    def on_train_begin(self, trainer: Trainer) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        self.save(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        self.save(trainer)

    def save(self, trainer: Trainer) -> None:
        save_checkpoint(self.path, trainer, self.preprocessing, self.extra, self.seconds())


def save_checkpoint(path: str | os.PathLike, trainer: Trainer,
                    preprocessing: HasStateDict | Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None, seconds: float = 0.0) -> Path:
    """Model + preprocessing + ``trainer.state_dict()`` in one ``.npz`` (no pickle), atomically."""
    state = trainer.state_dict()
    assert trainer.model is not None  # state_dict() refused a trainer that has not started
    arrays = io.model_arrays(trainer.model, preprocessing, extra)
    arrays.update({f"optimizer/{k}": v for k, v in state.pop("optimizer").items()})
    best = state.pop("best_state")
    if best is not None:
        arrays.update({f"best/{k}": v for k, v in best.items()})
    order = state.pop("order")
    if order is not None:
        arrays["order"] = order
    # the loss of every iteration as an array, not JSON text: written at every epoch, the text
    # of a long run's losses (2.4 MB for 117,000) took longer each epoch than the epoch's work
    arrays[LOSSES] = np.asarray(state["history"].pop("loss"), dtype=np.float64)
    state["seconds"] = seconds
    arrays["__trainer__"] = io.json_array(state)
    from mlplab.optim import registering_module

    module = registering_module(trainer.config.optimizer)
    if module is not None:  # so that a resume without the registration can name its module
        arrays[OPTIMIZER_MODULE] = io.json_array(module)
    return io.write_npz(path, arrays)


def recorded_optimizer_module(path: str | os.PathLike) -> str | None:
    """The module that a checkpoint records as having registered its optimiser; None if it
    records none or cannot be read. Only for messages: the value comes from a file and is
    checked before it is repeated (:func:`mlplab._validation.check_registered`)."""
    try:
        return io.parse_json_array(io.read_npz(path, keys=[OPTIMIZER_MODULE])[OPTIMIZER_MODULE],
                                   OPTIMIZER_MODULE)
    except (OSError, ValueError, KeyError):
        return None


def load_checkpoint(path: str | os.PathLike) -> tuple[io.LoadedModel, dict[str, Any], float]:
    """``(loaded model, trainer state for Trainer.resume, seconds trained so far)``."""
    arrays = io.read_npz(path)
    loaded = io.model_from_arrays(arrays, source=str(path))
    state = _trainer_state(arrays, path)
    seconds = float(state.pop("seconds", 0.0))
    state["optimizer"] = {k[len("optimizer/"):]: v for k, v in arrays.items()
                          if k.startswith("optimizer/")}
    best = {k[len("best/"):]: v for k, v in arrays.items() if k.startswith("best/")}
    _check_state_arrays(state["optimizer"], best, loaded.model, path)
    order = arrays.get("order")
    if order is not None and (order.ndim != 1 or order.dtype.kind not in "iu"):
        raise ValueError(f"{path}: the saved row order is not a list of row numbers ({order.dtype}"
                         f" {order.shape}); the checkpoint is damaged - "
                         f"start the run again with a new {setting('--out', 'out')}.")
    state["best_state"] = best or None
    state["order"] = arrays.get("order")
    return loaded, state, seconds


def checkpoint_progress(path: str | os.PathLike) -> dict[str, Any]:
    """How far the run of a checkpoint got, without loading its model or optimiser arrays:
    ``epoch``, ``iteration``, ``seconds`` trained and the :class:`History` so far (what
    ``mlplab runs`` shows of a run that is still training or was killed). Raises a ``ValueError``
    naming the file if it is not a readable checkpoint."""
    state = _trainer_state(io.read_npz(path, keys=["__trainer__", LOSSES]), path)
    return {"epoch": state["epoch"], "iteration": state["iteration"],
            "seconds": float(state.get("seconds", 0.0)),
            "history": History.from_dict(state["history"])}


def _trainer_state(arrays: Mapping[str, np.ndarray], path: str | os.PathLike) -> dict[str, Any]:
    if "__trainer__" not in arrays:
        raise ValueError(f"{path} is a model file, not a checkpoint (no trainer state).")
    state = io.parse_json_array(arrays["__trainer__"], f"{path}: __trainer__")
    losses = arrays.get(LOSSES)  # (a checkpoint before 2 Dec 2026 keeps them in the JSON)
    if losses is not None and isinstance(state, dict) and isinstance(state.get("history"), dict):
        if losses.ndim != 1 or losses.dtype.kind != "f":
            raise ValueError(f"{path}: the saved losses are not a list of numbers "
                             f"({losses.dtype} {losses.shape}); the checkpoint is damaged - "
                             f"start the run again with a new {setting('--out', 'out')}.")
        state["history"]["loss"] = losses.tolist()
    _check_trainer_state(state, path)
    return state


def _check_trainer_state(state: Any, path: str | os.PathLike) -> None:
    """The trainer state's shape, so that a damaged checkpoint fails here with a clear message
    rather than deep inside ``Trainer.resume``."""
    problem = None
    if not isinstance(state, dict):
        problem = f"a {type(state).__name__}, not a dict"
    else:
        # keys that may be absent, with a value of their type (dtype: absent from a checkpoint
        # of an mlplab before 1 Dec 2026, Trainer.resume then checks the arrays' dtype;
        # batch_size: before 2 Dec 2026, when nothing checked it)
        absent = {"seconds": 0.0, "dtype": "", "batch_size": 1}
        for key, kind in (("iteration", int), ("epoch", int), ("rng", list), ("history", dict),
                          ("seconds", (int, float)), ("dtype", str), ("batch_size", int)):
            value = state.get(key, absent.get(key))
            if not isinstance(value, kind) or isinstance(value, bool):
                problem = f"{key!r} is missing or of the wrong type"
                break
        else:
            try:
                History.from_dict(state["history"])
            except TypeError as exc:
                problem = f"bad history ({io.one_line(exc)})"
    if problem:
        raise ValueError(f"{path}: the trainer state is invalid ({problem}); the checkpoint is "
                         f"damaged - start the run again with a new {setting('--out', 'out')}.")


def _check_state_arrays(optimizer: Mapping[str, np.ndarray], best: Mapping[str, np.ndarray],
                        model: MLP, path: str | os.PathLike) -> None:
    """Optimiser slots (``W1/m``, ..., ``__t__``) and best parameters must match the model's
    parameters in name and shape and be finite floats: the optimiser would otherwise fail with a
    broadcasting error at its first step, or silently train on garbage."""
    params = model.state_dict()
    for key, arr in optimizer.items():
        name = key.split("/", 1)[0]
        if key == "__t__":
            ok = arr.shape == () and arr.dtype.kind in "iu" and int(arr) >= 0
        elif key.endswith("/fold"):  # scale and velocity form of a run stopped mid-epoch
            ok = name in params and arr.shape == (3,) and arr.dtype.kind == "f" and \
                bool(np.isfinite(arr).all())
        else:
            ok = name in params and "/" in key and arr.shape == params[name].shape and \
                arr.dtype.kind == "f" and bool(np.isfinite(arr).all())
        if not ok:
            raise ValueError(f"{path}: optimizer/{key} {_misfit(arr)} ({arr.dtype} {arr.shape}); "
                             "the checkpoint is damaged - start the run again with a new "
                             f"{setting('--out', 'out')}.")
    for key, arr in best.items():
        if key not in params or arr.shape != params[key].shape or arr.dtype.kind != "f" or \
                not np.isfinite(arr).all():
            raise ValueError(f"{path}: best/{key} {_misfit(arr)} ({arr.dtype} {arr.shape}); "
                             "the checkpoint is damaged - start the run again with a new "
                             f"{setting('--out', 'out')}.")


def _misfit(arr: np.ndarray) -> str:
    """What is wrong with a checkpoint array refused above: a NaN is not a shape problem."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return "holds NaN or infinite values"
    return "does not fit the model"
