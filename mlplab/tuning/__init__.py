"""Hyperparameter search on Optuna: from one laptop to many machines.

:func:`tune` runs an Optuna study whose objective builds an :class:`~mlplab.MLP`, trains it with
:class:`~mlplab.trainer.Trainer` and returns the *final* validation accuracy (the accuracy of the
model one actually gets from those settings). Every epoch's validation accuracy is reported to
Optuna, so pruners (median, Hyperband) can stop hopeless trials early.

Several processes search one study when they share a storage and a study name: this is Optuna's
own distributed mode, every worker simply loads the study from the storage, asks it for the next
trial and writes the result back. Storages:

* a local SQLite file in the output folder (the default);
* any SQLAlchemy URL (``postgresql://user@host/db``, ``mysql+pymysql://...``) for many machines;
* an Optuna journal file (``journal:PATH`` or a path ending in ``.log``) on a shared file system.

A worker that dies mid-trial (killed, out of memory, machine lost) stops recording heartbeats; the
next worker to start a trial marks it ``FAIL`` once its heartbeat is older than the grace period
and re-queues its parameters once. Optuna implements heartbeats only for SQLAlchemy storages, so
for journal files this module adds the same mechanism (a heartbeat time stamp in the trial's
system attributes, checked by Optuna's own ``fail_stale_trials``).

``trials`` is the study's total target of finished (complete or pruned) trials, not a number to
add: running the same command again resumes a study that stopped early and does nothing more once
the target is met (it still writes the outputs).

The search space (:class:`SearchSpace`) is a mapping of *knobs* to distributions; see
``docs/tuning.md`` for the YAML schema.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import math
import multiprocessing
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.trainer import Callback, SettingsError, TrainConfig, Trainer, TrainingDivergedError

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband")
#: trial system attribute holding the last heartbeat (Unix time) of a journal-storage trial
HEARTBEAT_ATTR = "mlplab:heartbeat"
#: study user attributes that pin what a study searches, so a resumed study cannot silently mix
STUDY_ATTRS = ("mlplab:search_space", "mlplab:dataset")


# =========================================================================== the search space
@dataclass(frozen=True)
class Knob:
    """One thing a trial may set: where it goes (``model`` or ``train``), its value type and the
    range of legal values (``lo``/``hi`` inclusive unless ``hi_open``; ``choices`` for strings)."""

    target: str
    kind: str  # "int", "float", "str" or "bool"
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    def check(self, name: str, value: Any, where: str) -> Any:
        """``value`` converted to this knob's type, or a ValueError saying what is allowed."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{where}: {name} must be true or false; got {value!r}.")
            return value
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise ValueError(f"{where}: {name} must be one of {', '.join(self.choices)}; "
                                 f"got {value!r}.")
            return value
        number = _number(value)
        if (number is None or not math.isfinite(number)
                or (self.kind == "int" and not float(number).is_integer())):
            what = "an integer" if self.kind == "int" else "a finite number"
            raise ValueError(f"{where}: {name} must be {what}; got {value!r}.")
        number = int(number) if self.kind == "int" else float(number)
        low_bad = self.lo is not None and (number <= self.lo if self.lo_open else number < self.lo)
        high_bad = self.hi is not None and (number >= self.hi if self.hi_open else number > self.hi)
        if low_bad or high_bad:
            lo = "" if self.lo is None else f"{self.lo:g} {'<' if self.lo_open else '<='} "
            hi = "" if self.hi is None else f" {'<' if self.hi_open else '<='} {self.hi:g}"
            raise ValueError(f"{where}: {name} must satisfy {lo}{name}{hi}; got {value!r}.")
        return number


def _knobs() -> dict[str, Knob]:
    from mlplab.init import INITS
    from mlplab.models import ACTIVATIONS
    from mlplab.optim import OPTIMIZERS
    from mlplab.schedules import SCHEDULES

    return {
        # the model
        "hidden_size": Knob("model", "int", 1, help="units in each hidden layer"),
        "depth": Knob("model", "int", 1, help="number of hidden layers (each hidden_size wide)"),
        "activation": Knob("model", "str", choices=tuple(ACTIVATIONS)),
        "init": Knob("model", "str", choices=tuple(INITS)),
        "std": Knob("model", "float", 0, lo_open=True, help="std of the 'normal' init"),
        "dropout": Knob("model", "float", 0, 1, hi_open=True),
        "batchnorm": Knob("model", "bool"),
        # the training
        "optimizer": Knob("train", "str", choices=tuple(OPTIMIZERS)),
        "lr": Knob("train", "float", 0, lo_open=True, help="initial learning rate"),
        "momentum": Knob("train", "float", 0, 1, hi_open=True),
        "beta1": Knob("train", "float", 0, 1, hi_open=True),
        "beta2": Knob("train", "float", 0, 1, hi_open=True),
        "weight_decay": Knob("train", "float", 0),
        "schedule": Knob("train", "str", choices=tuple(SCHEDULES)),
        "lr_decay": Knob("train", "float", 0, 1, lo_open=True, help="lr factor per epoch"),
        "step_epochs": Knob("train", "int", 1),
        "warmup_epochs": Knob("train", "float", 0),
        "min_lr": Knob("train", "float", 0),
        "reg": Knob("train", "float", 0, help="L2 strength (no 0.5 factor)"),
        "batch_size": Knob("train", "int", 1),
        "epochs": Knob("train", "int", 1),
        "sampling": Knob("train", "str", choices=("shuffle", "replacement")),
        "patience": Knob("train", "int", 1, help="early stopping on validation accuracy"),
    }


KNOBS: dict[str, Knob] = _knobs()

#: the exercise's knobs (Question 3b): hidden size, learning rate, epochs, batch size,
#: regularisation and learning-rate decay; ``grid`` gives the values the grid sampler tries
EXERCISE_SPACE: dict[str, Any] = {
    "hidden_size": {"type": "int", "low": 32, "high": 512, "log": True,
                    "grid": [50, 100, 200, 400]},
    "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True, "grid": [1e-3, 1e-2, 1e-1]},
    "reg": {"type": "float", "low": 1e-6, "high": 0.1, "log": True, "grid": [1e-5, 1e-3, 1e-2]},
    "batch_size": {"type": "categorical", "choices": [64, 128, 200, 300]},
    "epochs": {"type": "int", "low": 5, "high": 20, "step": 5, "grid": [5, 10, 20]},
    "lr_decay": {"type": "float", "low": 0.85, "high": 1.0, "grid": [0.9, 0.95, 1.0]},
    "optimizer": "sgd",
}

#: the exercise's knobs plus the optimiser, depth and dropout
EXTENDED_SPACE: dict[str, Any] = {
    **EXERCISE_SPACE,
    "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True, "grid": [1e-3, 1e-2]},
    "optimizer": {"type": "categorical", "choices": ["sgd", "momentum", "adam"]},
    "depth": {"type": "int", "low": 1, "high": 3},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5, "grid": [0.0, 0.25]},
}

BUILTIN_SPACES = {"exercise": EXERCISE_SPACE, "extended": EXTENDED_SPACE}

_SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step", "grid"},
    "int": {"type", "low", "high", "log", "step", "grid"},
    "categorical": {"type", "choices"},
}
#: largest grid an int range is expanded to when the grid sampler needs it
_MAX_INT_GRID = 64


@dataclass(frozen=True)
class Param:
    """One searched knob: ``float``/``int`` in ``[low, high]`` (``log``, ``step``) or
    ``categorical`` over ``choices``; ``grid`` lists the values the grid sampler tries."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] | None = None

    def suggest(self, trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        if self.grid is not None:
            return list(self.grid)
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int" and not self.log:
            values = list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
            if len(values) <= _MAX_INT_GRID:
                return values
        raise ValueError(f"search space: the grid sampler needs a finite list of values for "
                         f"{self.name}; add `grid: [...]` to its entry (or use --sampler tpe).")

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        if self.grid is not None:
            out["grid"] = list(self.grid)
        return out


class SearchSpace:
    """What a trial searches (``params``) and what it fixes (``fixed``), both keyed by knob name
    (:data:`KNOBS`). Build with :meth:`load` (a built-in name, a YAML file or a dict)."""

    def __init__(self, params: Mapping[str, Param], fixed: Mapping[str, Any]) -> None:
        self.params = dict(params)
        self.fixed = dict(fixed)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, spec: SearchSpace | Mapping[str, Any] | str | os.PathLike | None
             ) -> SearchSpace:
        """``None`` or ``"exercise"``: the default; ``"extended"``: plus optimiser, depth and
        dropout; a path: a YAML file; a dict: the same schema as the YAML file."""
        if isinstance(spec, SearchSpace):
            return spec
        if spec is None:
            return cls.from_dict(EXERCISE_SPACE, "built-in search space 'exercise'")
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        if isinstance(spec, str) and spec in BUILTIN_SPACES:
            return cls.from_dict(BUILTIN_SPACES[spec], f"built-in search space {spec!r}")
        return cls.from_yaml(spec)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> SearchSpace:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"search space file {path} does not exist (give a YAML file, or "
                             f"one of the built-in spaces: {', '.join(BUILTIN_SPACES)}).")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "search space") -> SearchSpace:
        if not isinstance(data, Mapping) or not data:
            raise ValueError(f"{where}: expected a mapping of knob names to distributions, "
                             f"e.g. `lr: {{type: float, low: 1.0e-4, high: 0.1, log: true}}`; "
                             f"got {type(data).__name__}.")
        params: dict[str, Param] = {}
        fixed: dict[str, Any] = {}
        for name, spec in data.items():
            if name not in KNOBS:
                raise ValueError(f"{where}: unknown knob {name!r}; known knobs: "
                                 f"{', '.join(KNOBS)}.")
            knob = KNOBS[name]
            if isinstance(spec, Mapping):
                params[name] = _parse_param(name, spec, knob, where)
            elif isinstance(spec, list):  # shorthand for a categorical
                params[name] = _parse_param(name, {"type": "categorical", "choices": spec},
                                            knob, where)
            else:
                fixed[name] = knob.check(name, spec, where)
        if not params:
            raise ValueError(f"{where}: nothing to search; give at least one knob a "
                             "distribution (a mapping with `type`) or a list of choices.")
        depth_max = _max_value(params.get("depth"), fixed.get("depth", 1))
        if depth_max > 1 and "hidden_size" not in params and "hidden_size" not in fixed:
            raise ValueError(f"{where}: depth > 1 needs hidden_size too.")
        return cls(params, fixed)

    # ------------------------------------------------------------------ use
    def suggest(self, trial) -> dict[str, Any]:
        """The trial's settings: every searched knob suggested by ``trial``, plus the fixed."""
        values = {name: p.suggest(trial) for name, p in self.params.items()}
        return {**self.fixed, **values}

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space (every searched knob's ``grid`` values)."""
        return {name: p.grid_values() for name, p in self.params.items()}

    def max_epochs(self) -> int:
        """The most epochs any trial can run (Hyperband's maximum resource)."""
        return int(_max_value(self.params.get("epochs"),
                              self.fixed.get("epochs", TrainConfig().epochs)))

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form (round-trips through :meth:`from_dict`)."""
        return {**self.fixed, **{n: p.to_dict() for n, p in self.params.items()}}

    def __repr__(self) -> str:
        return f"SearchSpace(params={list(self.params)}, fixed={self.fixed})"


def _number(value: Any) -> float | None:
    # PyYAML reads 1e-4 (no dot) as a string; accept it as the number everyone means
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _parse_param(name: str, spec: Mapping[str, Any], knob: Knob, where: str) -> Param:
    where = f"{where}: {name}"
    kind = spec.get("type")
    if kind is None:
        kind = "categorical" if "choices" in spec else None
    if kind not in _SPEC_KEYS:
        raise ValueError(f"{where}: `type` must be float, int or categorical; got {kind!r}.")
    unknown = set(spec) - _SPEC_KEYS[kind]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} for a "
                         f"{kind} distribution; allowed: {', '.join(sorted(_SPEC_KEYS[kind]))}.")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: `choices` must be a non-empty list.")
        checked = tuple(knob.check(name, c, where) for c in choices)
        if len(set(checked)) != len(checked):
            raise ValueError(f"{where}: `choices` has duplicates: {choices}.")
        return Param(name, "categorical", choices=checked)

    if knob.kind not in ("int", "float"):
        raise ValueError(f"{where}: a {knob.kind} knob can only be fixed or categorical "
                         f"(`choices: [...]`), not a {kind} range.")
    if knob.kind == "int" and kind == "float":
        raise ValueError(f"{where}: is an integer knob; use `type: int`.")
    for key in ("low", "high"):
        if key not in spec:
            raise ValueError(f"{where}: a {kind} distribution needs `low` and `high`.")
    low, high = (knob.check(name, spec[k], f"{where} ({k})") for k in ("low", "high"))
    if kind == "int":
        low, high = int(low), int(high)
    if not low < high:
        raise ValueError(f"{where}: `low` ({low}) must be below `high` ({high}); to fix a knob "
                         f"write `{name}: {low}`.")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{where}: `log` must be true or false; got {log!r}.")
    if log and low <= 0:
        raise ValueError(f"{where}: a log-uniform range needs `low` > 0; got {low}.")
    step = spec.get("step")
    if step is not None:
        step_n = _number(step)
        if step_n is None or step_n <= 0 or (kind == "int" and not float(step_n).is_integer()):
            raise ValueError(f"{where}: `step` must be a positive "
                             f"{'integer' if kind == 'int' else 'number'}; got {step!r}.")
        if log:
            raise ValueError(f"{where}: `step` and `log` cannot be combined (Optuna's rule).")
        step = int(step_n) if kind == "int" else float(step_n)
    grid = spec.get("grid")
    if grid is not None:
        if not isinstance(grid, list) or not grid:
            raise ValueError(f"{where}: `grid` must be a non-empty list of values.")
        grid = tuple(knob.check(name, g, f"{where} (grid)") for g in grid)
        outside = [g for g in grid if not low <= g <= high]
        if outside:
            raise ValueError(f"{where}: grid values {outside} lie outside [{low}, {high}].")
    return Param(name, kind, float(low) if kind == "float" else low,
                 float(high) if kind == "float" else high, log, step, grid=grid)


def _max_value(param: Param | None, fixed: Any) -> float:
    if param is None:
        return fixed if fixed is not None else 1
    if param.type == "categorical":
        return max(param.choices)
    return param.high


# =========================================================================== data
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


@dataclass
class DatasetSource(DataSource):
    """``mlplab.data.load_dataset(name, **kwargs)``, an optional stratified training subset of
    ``train_size`` images, then the ``preprocess`` recipe (:data:`mlplab.data.PREPROCESSING`)
    fitted on the training split."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    preprocess: str = "standardize"
    train_size: int | None = None

    #: load_dataset arguments that say where the files are, not what the data is
    LOCATION_ARGS = ("data_dir", "download", "mirror", "cache")

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


def subset_train(dataset, train_size: int | None, seed: int | None = 0):
    """``dataset`` with a seeded, stratified subset of ``train_size`` training images (tuning on
    a subset is much cheaper; validation and test splits are untouched)."""
    import dataclasses

    from mlplab.data.base import stratified_split

    if train_size is None:
        return dataset
    n = len(dataset.y_train)
    if not 1 <= int(train_size) <= n:
        raise ValueError(f"train_size must be between 1 and {n} (the training images); "
                         f"got {train_size}.")
    if int(train_size) == n:
        return dataset
    _, keep = stratified_split(dataset.y_train, int(train_size), seed)
    return dataclasses.replace(dataset, X_train=dataset.X_train[keep],
                               y_train=dataset.y_train[keep],
                               notes=[*dataset.notes, f"training subset of {train_size} images"])


def prepare(dataset, preprocess: str = "standardize") -> TuningData:
    """A raw :class:`mlplab.data.Dataset` preprocessed for training: the recipe is fitted on the
    training split only, then applied to all three splits."""
    from mlplab.data import make_preprocessing

    if not len(dataset.y_val):
        raise ValueError(f"tuning maximises validation accuracy, and {dataset.name} has no "
                         "validation split: give it one with --val-size N.")
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
    if isinstance(dataset, DataSource):
        return dataset
    if isinstance(dataset, str):
        return DatasetSource(dataset, kwargs, preprocess, train_size)
    if isinstance(dataset, TuningData):
        return ArraySource(dataset)
    if hasattr(dataset, "X_train") and hasattr(dataset, "classes"):
        return ArraySource(prepare(subset_train(dataset, train_size), preprocess))
    raise TypeError(f"dataset must be a dataset name, an mlplab.data.Dataset, TuningData or a "
                    f"DataSource; got {type(dataset).__name__}.")


# =========================================================================== building a trial
def build(settings: Mapping[str, Any], input_size: int, num_classes: int,
          seed: int | None = 0):
    """``(model, TrainConfig)`` for one trial's ``settings`` (knob -> value)."""
    from mlplab.models import MLP

    unknown = set(settings) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown knobs: {', '.join(sorted(unknown))}.")
    model_kw = {k: v for k, v in settings.items() if KNOBS[k].target == "model"}
    train_kw = {k: v for k, v in settings.items() if KNOBS[k].target == "train"}
    hidden = int(model_kw.pop("hidden_size", 50))  # 50: the exercise's default
    depth = int(model_kw.pop("depth", 1))
    model = MLP(input_size, [hidden] * depth, num_classes, seed=seed, **model_kw)
    return model, TrainConfig(**{**train_kw, "seed": seed})


class _ReportCallback(Callback):
    """Reports each epoch's validation accuracy to the trial; raises ``TrialPruned`` when the
    pruner says so (the trainer lets it propagate, ending the trial)."""

    def __init__(self, trial) -> None:
        self.trial = trial

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        import optuna

        self.trial.report(float(logs["val_acc"]), epoch)
        cfg = trainer.config
        if cfg.iters is None and epoch >= cfg.epochs:
            return  # the trial is finished: pruning it now would only throw its result away
        if self.trial.should_prune():
            self.trial.set_user_attr("epochs", epoch)
            raise optuna.TrialPruned(f"validation accuracy {logs['val_acc']:.4f} after epoch "
                                     f"{epoch} is hopeless next to the other trials")


def _worker_name(index: int | None = None) -> str:
    name = f"{socket.gethostname()}:{os.getpid()}"
    return name if index is None else f"{name}#{index}"


class Objective:
    """The trial function: build, train, return the final validation accuracy.

    A run whose loss diverges is a legitimate (bad) outcome, not a failure: it returns 0.0 so the
    sampler learns to avoid that region, and the trial is flagged ``diverged``.
    """

    def __init__(self, data: TuningData, space: SearchSpace, seed: int | None = 0,
                 worker: str | None = None) -> None:
        self.data = data
        self.space = space
        self.seed = seed
        self.worker = worker or _worker_name()

    def __call__(self, trial) -> float:
        import optuna

        settings = self.space.suggest(trial)
        trial.set_user_attr("worker", self.worker)
        start = time.perf_counter()
        try:
            model, config = build(settings, self.data.num_features, self.data.num_classes,
                                  self.seed)
            trainer = Trainer(config, callbacks=[_ReportCallback(trial)])
            # a diverging trial is expected now and then; the trainer detects it, so NumPy's
            # overflow warnings would only be noise
            with np.errstate(over="ignore", invalid="ignore"):
                history = trainer.fit(model, self.data.X_train, self.data.y_train,
                                      self.data.X_val, self.data.y_val)
        except TrainingDivergedError:
            trial.set_user_attr("diverged", True)
            trial.set_user_attr("epochs", trainer.epoch)
            return 0.0
        except SettingsError as exc:
            # knobs each in range but not together (min_lr above lr, batch norm on one-row
            # batches): this trial fails (NaN), the search goes on
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:300])
            return float("nan")
        except Exception as exc:
            if not isinstance(exc, optuna.TrialPruned):
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:300])
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        if history.interrupted:
            raise KeyboardInterrupt
        trial.set_user_attr("epochs", len(history.val_acc))
        trial.set_user_attr("train_acc", float(history.train_acc[-1]))
        # the model the settings produce: with early stopping the best epoch's parameters are
        # restored, and a run of `iters` may end between epochs, after its last evaluation
        return float(model.accuracy(self.data.X_val, self.data.y_val))


# =========================================================================== storage
@dataclass(frozen=True)
class StorageSpec:
    """How to open a study's storage in any process (picklable): ``url`` is a SQLAlchemy URL or
    ``journal:PATH``; ``heartbeat``/``grace`` in seconds (``heartbeat=None`` disables)."""

    url: str
    heartbeat: int | None = 30
    grace: int | None = None
    retry_failed: bool = True

    @property
    def display(self) -> str:
        """The URL without its password."""
        if self.url.startswith("journal:"):
            return self.url
        try:
            from sqlalchemy.engine import make_url

            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - only for display
            return self.url

    def open(self):
        """An Optuna storage object with heartbeats and the stale-trial callback configured."""
        import optuna

        callback = _stale_callback() if self.retry_failed else None
        grace = self.grace if self.grace is not None else (
            None if self.heartbeat is None else 2 * self.heartbeat)
        if self.url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            path = Path(self.url[len("journal:"):]).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = JournalFileBackend(str(path))
            storage_class = _heartbeat_journal_storage_class()
            if self.heartbeat is None or storage_class is None:
                return optuna.storages.JournalStorage(backend)
            return storage_class(backend, self.heartbeat, grace, callback)
        kwargs: dict[str, Any] = {}
        url = sqlalchemy_url(self.url)
        if url.startswith("sqlite"):
            # several processes share one SQLite file: wait for the lock instead of failing
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
        else:
            kwargs["engine_kwargs"] = {"pool_pre_ping": True}
        if self.heartbeat is not None:
            kwargs.update(heartbeat_interval=int(self.heartbeat), grace_period=int(grace),
                          **_callback_kwarg(callback))
        from sqlalchemy.exc import SQLAlchemyError

        for attempt in range(4):
            try:
                with _quiet_optuna_warnings():
                    return optuna.storages.RDBStorage(url, **kwargs)
            except ImportError as exc:
                raise RuntimeError(f"cannot open storage {self.display}: {exc} (for PostgreSQL "
                                   "install the driver: pip install 'mlplab[postgres]').") from None
            except SQLAlchemyError:
                # workers started together on an empty database race to create Optuna's
                # tables; the loser sees "already exists" and simply opens them next time
                if attempt == 3:
                    raise
                time.sleep(0.2 + 0.3 * attempt)
        raise AssertionError("unreachable")


def sqlalchemy_url(url: str) -> str:
    """``url`` with a PostgreSQL driver that is installed: SQLAlchemy 2.1 made ``psycopg`` (3)
    the default for ``postgresql://``, while ``mlplab[postgres]`` installs ``psycopg2``."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and \
                importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql://{rest}"
    return url


def storage_spec(storage: str | os.PathLike | None, out: Path, heartbeat: int | None = 30,
                 grace: int | None = None) -> StorageSpec:
    """Turn ``--storage`` into a :class:`StorageSpec`.

    ``None``: ``<out>/study.db`` (SQLite); ``journal:PATH`` or a path ending in ``.log`` /
    ``.journal``: an Optuna journal file; a path ending in ``.db``/``.sqlite``/``.sqlite3``: that
    SQLite file; anything with ``://``: a SQLAlchemy URL as given.
    """
    if heartbeat is not None and heartbeat <= 0:
        heartbeat = None
    if heartbeat is not None and grace is not None and grace <= heartbeat:
        raise ValueError(f"the grace period ({grace} s) must be longer than the heartbeat "
                         f"interval ({heartbeat} s), or every running trial looks dead.")
    if storage is None:
        return StorageSpec(f"sqlite:///{(out / 'study.db').resolve()}", heartbeat, grace)
    text = os.fspath(storage)
    if text.startswith("journal:"):
        path = text[len("journal:"):]
        if not path:
            raise ValueError("--storage journal:PATH needs a file path after 'journal:'.")
        return StorageSpec(f"journal:{Path(path).expanduser().resolve()}", heartbeat, grace)
    if "://" in text:
        return StorageSpec(text, heartbeat, grace)
    suffix = Path(text).suffix.lower()
    if suffix in (".log", ".journal"):
        return StorageSpec(f"journal:{Path(text).expanduser().resolve()}", heartbeat, grace)
    if suffix in (".db", ".sqlite", ".sqlite3"):
        return StorageSpec(f"sqlite:///{Path(text).expanduser().resolve()}", heartbeat, grace)
    raise ValueError(f"unrecognised storage {text!r}: give a SQLAlchemy URL (sqlite:///study.db, "
                     "postgresql://user@host/db), journal:PATH, or a file ending in .db or .log.")


def _stale_callback():
    """Re-queue a dead worker's trial once (its parameters run again in a live worker)."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback
    with _quiet_optuna_warnings():
        return cls(max_retry=1)


def _callback_kwarg(callback) -> dict[str, Any]:
    import inspect

    import optuna

    names = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    key = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in names \
        else "failed_trial_callback"
    return {key: callback}


@contextlib.contextmanager
def _quiet_optuna_warnings() -> Iterator[None]:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a trial stopped by Ctrl-C with the whole traceback of the KeyboardInterrupt;
    keep its one-line warning (the trial is marked failed) and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            record.exc_info = None
        return True


@contextlib.contextmanager
def _quiet_interrupts() -> Iterator[None]:
    import optuna  # noqa: F401  (sets up the "optuna" logger and its handler)

    handlers = logging.getLogger("optuna").handlers
    keep = _NoInterruptTraceback()
    for h in handlers:
        h.addFilter(keep)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(keep)


@functools.cache
def _heartbeat_journal_storage_class():
    """A ``JournalStorage`` with Optuna's heartbeat protocol (None if this Optuna lacks it)."""
    try:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.storages import JournalStorage
        from optuna.storages._heartbeat import BaseHeartbeat
        from optuna.trial import TrialState
    except ImportError:  # pragma: no cover - very old or very new Optuna
        return None

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """Heartbeats as a time stamp in each running trial's system attributes. Optuna's
        optimise loop runs the heartbeat thread and ``fail_stale_trials`` for any storage that
        implements :class:`BaseHeartbeat`; the clocks of the machines sharing the journal file
        must agree to within the grace period (NTP)."""

        def __init__(self, backend, heartbeat: int, grace: int, callback) -> None:
            super().__init__(backend)
            self._heartbeat = heartbeat
            self._grace = grace
            self._stale_callback = callback

        def record_heartbeat(self, trial_id: int) -> None:
            with contextlib.suppress(UpdateFinishedTrialError):
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            return [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False,
                                                             states=(TrialState.RUNNING,))
                    if now - t.system_attrs.get(HEARTBEAT_ATTR, now) > self._grace]

        def get_heartbeat_interval(self) -> int | None:
            return self._heartbeat

        def get_heartbeat_stale_trial_callback(self):
            return self._stale_callback

        def get_failed_trial_callback(self):  # the name Optuna < 4.9 uses
            return self._stale_callback

    return HeartbeatJournalStorage




# =========================================================================== studies
def open_study(storage: StorageSpec, study_name: str, space: SearchSpace | None = None,
               data_description: dict[str, Any] | None = None, sampler=None, pruner=None):
    """Create or load ``study_name`` (maximising). A new study records its search space and
    data; loading one that recorded different ones raises a ValueError instead of mixing them."""
    import optuna

    with _quiet_optuna_warnings():
        study = optuna.create_study(storage=storage.open(), study_name=study_name,
                                    direction="maximize", load_if_exists=True, sampler=sampler,
                                    pruner=pruner)
    if space is None:
        return study
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(f"study {study_name!r} in {storage.display} minimises; it is not an "
                         "mlplab tuning study. Choose another --study name.")
    wanted = {"mlplab:search_space": space.to_dict(), "mlplab:dataset": data_description}
    have = study.user_attrs
    for key, value in wanted.items():
        if key not in have:
            study.set_user_attr(key, value)
        elif _canonical(have[key]) != _canonical(value):
            what = "search space" if key.endswith("space") else "data"
            raise ValueError(
                f"study {study_name!r} in {storage.display} was created with a different "
                f"{what} ({json.dumps(have[key])} vs {json.dumps(value)}); resume it with the "
                "same options or choose a new --study name.")
    return study


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def make_sampler(kind: str, space: SearchSpace, seed: int | None, n_trials: int):
    """``tpe`` (multivariate, with the constant liar so parallel workers spread out),
    ``random`` or ``grid`` (over each knob's ``grid`` values)."""
    import optuna

    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r}; choose one of {', '.join(SAMPLERS)}.")
    with _quiet_optuna_warnings():
        if kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if kind == "grid":
            return optuna.samplers.GridSampler(space.grid(), seed=seed)
        # a third of a small budget explores at random before TPE models the results
        startup = int(min(10, max(3, n_trials // 3)))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True,
                                          constant_liar=True)


def make_pruner(kind: str | None, space: SearchSpace, n_trials: int):
    """``None``: never prune; ``median``: stop a trial whose best accuracy so far is below the
    median of the other trials at the same epoch; ``hyperband``: successive halving over epochs."""
    import optuna

    if kind is None:
        return optuna.pruners.NopPruner()
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(min(5, max(2, n_trials // 4))),
                                           n_warmup_steps=2)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=space.max_epochs(),
                                              reduction_factor=3)
    raise ValueError(f"unknown pruner {kind!r}; choose one of {', '.join(PRUNERS)}.")


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _best(study) -> tuple[int | None, float | None]:
    from optuna.trial import TrialState

    # a diverged trial scores 0.0 for the sampler's sake but is never "the best"
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not t.user_attrs.get("diverged")]
    if not done:
        return None, None
    best = max(done, key=lambda t: (t.value, -t.number))
    return best.number, float(best.value)


class _StopAtTarget:
    """Stop this worker once the study's finished plus running trials reach the target, so that
    several workers together run the target (a stale running trial is failed first). Failed
    trials do not count towards it; ``max(3, target)`` of them in a row stop the worker, since
    a space whose every trial fails would otherwise search for ever."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.fails_in_a_row = 0

    def __call__(self, study, trial) -> None:
        import optuna
        from optuna.trial import TrialState

        self.fails_in_a_row = self.fails_in_a_row + 1 if trial.state == TrialState.FAIL else 0
        with _quiet_optuna_warnings():
            optuna.storages.fail_stale_trials(study)
        busy = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                        TrialState.RUNNING))
        if len(busy) >= self.target or self.fails_in_a_row >= max(3, self.target):
            study.stop()


class _ProgressCallback:
    def __init__(self, bar) -> None:
        self.bar = bar

    def __call__(self, study, trial) -> None:
        _update_bar(self.bar, study)


def _update_bar(bar, study) -> None:
    if bar is None:
        return
    bar.n = min(_finished(study), bar.total)
    number, value = _best(study)
    if value is not None:
        bar.set_postfix_str(f"best val acc {value:.4f} (trial {number})", refresh=False)
    bar.refresh()


def _fail_dead_local_trials(study) -> None:
    """Mark FAIL the running trials of processes on this machine that no longer exist (killed,
    SIGKILL or a power cut): they would otherwise count towards the target until their
    heartbeat's grace runs out, and a search run again at once would stop short."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        name, _, pid = str(t.user_attrs.get("worker", "")).split("#")[0].rpartition(":")
        if name == host and pid.isdigit() and int(pid) != os.getpid() and \
                not _process_alive(int(pid)):
            try:  # as Optuna's fail_stale_trials does for a stopped heartbeat, retry included
                if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    continue  # another process has just finished it
            except Exception:  # noqa: BLE001 - finished or failed meanwhile by another process
                continue
            retry = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
            if retry is not None:
                retry(study, copy.deepcopy(storage.get_trial(t._trial_id)))


def run_search(study, data: TuningData, space: SearchSpace, target: int,
               timeout: float | None = None, seed: int | None = 0, bar=None,
               worker: str | None = None) -> None:
    """Run trials in this process until the study holds ``target`` finished trials (or
    ``timeout`` seconds pass). ``study`` carries the sampler and pruner."""
    import optuna

    remaining = target - _finished(study)
    if remaining <= 0:
        return
    _fail_dead_local_trials(study)
    objective = Objective(data, space, seed, worker)
    callbacks: list[Callable] = [_StopAtTarget(target)]
    if bar is not None:
        callbacks.append(_ProgressCallback(bar))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _quiet_optuna_warnings(), _quiet_interrupts():
        # no n_trials: Optuna counts failed trials in it; _StopAtTarget counts finished ones
        study.optimize(objective, n_trials=None, timeout=timeout, callbacks=callbacks,
                       gc_after_trial=False, catch=(MemoryError,))


# =========================================================================== worker processes
@dataclass
class WorkerSpec:
    """Everything a worker process needs (picklable)."""

    source: DataSource
    storage: StorageSpec
    study_name: str
    space: dict[str, Any]
    sampler: str
    prune: str | None
    target: int
    timeout: float | None
    seed: int | None
    sampler_seed: int | None
    index: int
    blas_threads: int | None = None


def worker_main(spec: WorkerSpec) -> None:
    """Entry point of one worker process: load the data once, load the study, search."""
    import optuna

    # a fresh interpreter: Optuna's INFO lines ("Using an existing study") would repeat per worker
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    limiter = contextlib.nullcontext()
    if spec.blas_threads:
        from threadpoolctl import threadpool_info, threadpool_limits

        # share the cores between the workers, but never raise a limit the user set
        # (OMP_NUM_THREADS=...)
        current = max((i.get("num_threads", 1) for i in threadpool_info()), default=1)
        if spec.blas_threads < current:
            limiter = threadpool_limits(spec.blas_threads)
    with limiter:
        data = spec.source.load()
        space = SearchSpace.from_dict(spec.space)
        study = open_study(spec.storage, spec.study_name, space, spec.source.describe(),
                           make_sampler(spec.sampler, space, spec.sampler_seed, spec.target),
                           make_pruner(spec.prune, space, spec.target))
        run_search(study, data, space, spec.target, spec.timeout, spec.seed,
                   worker=_worker_name(spec.index))


def run_workers(specs: list[WorkerSpec], study, bar=None, poll: float = 1.0) -> None:
    """Start one process per spec (``spawn``: a clean interpreter each, no forked threads or
    database connections), show progress from the storage, and wait for all of them."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=worker_main, args=(s,), name=f"mlplab-tune-{s.index}")
             for s in specs]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(poll)
            _update_bar(bar, study)
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise
    finally:
        for p in procs:
            p.join()
    _update_bar(bar, study)
    bad = [(p.name, p.exitcode) for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError("worker process(es) failed: " +
                           ", ".join(f"{n} exit code {c}" for n, c in bad) +
                           " (their error is printed above).")


# =========================================================================== outputs
def trials_table(study) -> tuple[list[str], list[list[Any]]]:
    """``(header, rows)``: one row per trial, every parameter as a column."""
    trials = study.get_trials(deepcopy=False)
    names: list[str] = []
    for t in trials:
        for n in t.params:
            if n not in names:
                names.append(n)
    header = ["trial", "state", "val_acc", "epochs_run", "seconds", *names, "worker", "note"]
    retried = {t.system_attrs["failed_trial"]: t.number for t in trials
               if "failed_trial" in t.system_attrs}
    rows = []
    for t in trials:
        seconds = t.user_attrs.get("seconds")
        if seconds is None and t.duration is not None:
            seconds = round(t.duration.total_seconds(), 3)
        epochs = t.user_attrs.get("epochs", len(t.intermediate_values) or None)
        notes = []
        if t.user_attrs.get("diverged"):
            notes.append("diverged")
        if "failed_trial" in t.system_attrs:
            notes.append(f"retry of trial {t.system_attrs['failed_trial']}")
        if t.state.name == "FAIL":
            if "error" in t.user_attrs:
                notes.append(t.user_attrs["error"])
            elif t.number in retried:
                notes.append(f"worker lost (its process ended or its heartbeat stopped); "
                             f"re-queued as trial {retried[t.number]}")
            else:
                notes.append("worker lost or interrupted")
        rows.append([t.number, t.state.name, t.value, epochs, seconds,
                     *[t.params.get(n) for n in names], t.user_attrs.get("worker", ""),
                     "; ".join(notes)])
    return header, rows


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4f}" \
            .rstrip("0").rstrip(".")
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]], best: int | None) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [_fmt(v) for v in row]
        if best is not None and row[0] == best:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_plots(study, out: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Optuna's optimisation-history, parallel-coordinate and parameter-importance plots as PNG
    files; returns ``(written, skipped)`` where ``skipped`` says why a plot was not drawn."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    from mlplab.io import atomic_path

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [n for n in {k for t in complete for k in t.params}
              if len({json.dumps(t.params.get(n), default=str) for t in complete}) > 1]
    plots: dict[str, tuple[Callable, str | None]] = {
        "optimization_history": (ovm.plot_optimization_history,
                                 None if complete else "no completed trials yet"),
        "parallel_coordinate": (ovm.plot_parallel_coordinate,
                                None if complete else "no completed trials yet"),
        "param_importances": (
            ovm.plot_param_importances,
            None if len(complete) >= 2 and varied else
            "needs at least 2 completed trials whose parameters differ"),
    }
    written: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for name, (plot, reason) in plots.items():
        path = out / f"{name}.png"
        if reason is not None:
            skipped[name] = reason
            continue
        try:
            with _quiet_optuna_warnings(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax.flat[0] if isinstance(ax, np.ndarray) else ax).figure
            width = 8 if name != "parallel_coordinate" else max(8, 1.3 * (len(varied) + 1))
            fig.set_size_inches(width, 5.5)
            fig.tight_layout()
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, dpi=110, format="png")
            plt.close(fig)
            written[name] = path
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            # e.g. an importance evaluator that cannot fit constant values
            skipped[name] = f"{type(exc).__name__}: {exc}"
            plt.close("all")
    return written, skipped


def write_results(study, out: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """``results.csv`` and ``results.md`` (every trial) plus the plots; returns written files
    and skipped plots with reasons."""
    from mlplab.io import write_csv, write_text

    header, rows = trials_table(study)
    best, _ = _best(study)
    files = {"csv": write_csv(out / "results.csv", header, rows),
             "markdown": write_text(out / "results.md", markdown_table(header, rows, best))}
    plots, skipped = write_plots(study, out)
    files.update(plots)
    return files, skipped


def retrain_best(study, data: TuningData, out: Path, seed: int | None = 0,
                 eval_test: bool = False, source: DataSource | None = None):
    """Train the best trial's settings again with :func:`mlplab.runs.train_run` (same data,
    preprocessing and seed, so the same model) into the run folder ``out``, replacing an older
    one; returns the :class:`~mlplab.runs.RunResult`.

    The test split is evaluated only here, only with ``eval_test``, and only once.
    """
    import shutil

    from mlplab.io import write_json
    from mlplab.runs import train_run

    number, _ = _best(study)
    if number is None:
        raise RuntimeError("no trial completed, so there is no best trial to retrain.")
    if data.dataset is None:
        raise ValueError("retraining the best trial needs the raw dataset (TuningData made by "
                         "mlplab.tuning.prepare); pass a dataset name or Dataset to tune().")
    trial = study.trials[number]
    space_dict = study.user_attrs.get("mlplab:search_space")
    fixed = SearchSpace.from_dict(space_dict).fixed if space_dict else {}
    settings = {**fixed, **trial.params}
    model, config = build(settings, data.num_features, data.num_classes, seed)
    options: dict[str, Any] = {k: v for k, v in config.to_dict().items()
                               if k not in ("seed", "verbose", "progress")}
    mc = model.config
    options.update(hidden=mc["hidden_sizes"], activation=mc["activation"], init=mc["init"],
                   std=mc["std"], dropout=mc["dropout"], batchnorm=mc["batchnorm"],
                   seed=0 if seed is None else seed, eval_test=eval_test,
                   preprocessing=(data.preprocessing_name or "standardize"))
    if isinstance(source, DatasetSource):  # so that config.json names the data
        kw = source.kwargs
        options.update(dataset=source.name, data_dir=kw.get("data_dir"),
                       val_size=kw.get("val_size"), test_size=kw.get("test_size"),
                       image_size=kw.get("image_size"), data_seed=kw.get("seed", 0) or 0)
    else:
        options.update(dataset=data.name)
    from mlplab import interrupts

    # train beside the old folder, then swap, so an interrupted retraining loses nothing
    for stale in out.parent.glob(f".{out.name}.*.*"):  # .tmp and .old of killed processes
        pid, _, kind = stale.name[len(out.name) + 2:].partition(".")
        if kind in ("tmp", "old") and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    old = out.parent / f".{out.name}.{os.getpid()}.old"
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    try:
        result = train_run(out=tmp, data=data.dataset, **options)
        if result.interrupted:  # Ctrl-C: keep the older best-run, and stop as a search does
            raise KeyboardInterrupt
        write_json(tmp / "tuning.json", {
            "study": study.study_name, "trial": number, "value": trial.value,
            "settings": settings,
            "train_size": len(data.y_train),
            "note": ("trained on the same training images as the trials; config.json describes "
                     "the dataset without any --train-size subset, so replaying it trains on all "
                     "training images")})
        with interrupts.deferred():  # the old folder out of the way, the new one in place
            if out.exists():
                os.replace(out, old)
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    result.out = out
    return result


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


# =========================================================================== the API
@dataclass
class TuneResult:
    """What :func:`tune` did: counts of trials by state, the best trial and where things are."""

    study_name: str
    storage: str
    out: Path
    n_complete: int
    n_pruned: int
    n_failed: int
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    run_dir: Path | None = None
    retrained_val_acc: float | None = None
    test_accuracy: float | None = None
    wall_seconds: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)
    skipped_plots: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else
                    {n: str(p) for n, p in v.items()} if k == "files" else v)
                for k, v in self.__dict__.items()}


def default_study_name(source: DataSource) -> str:
    """``tune-<dataset>`` with characters outside [A-Za-z0-9._-] replaced."""
    name = str(source.describe()["dataset"])
    if name.startswith("folder:"):
        name = "folder-" + Path(name[len("folder:"):]).name
    return "tune-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip("-")


def tune(dataset: Any, trials: int = 20, timeout: float | None = None,
         search_space: SearchSpace | Mapping[str, Any] | str | os.PathLike | None = None,
         study_name: str | None = None, storage: str | os.PathLike | None = None,
         workers: int = 1, sampler: str = "tpe", prune: str | bool | None = None,
         out: str | os.PathLike | None = None, seed: int | None = 0, eval_test: bool = False,
         heartbeat: int | None = 30, grace: int | None = None, search_only: bool = False,
         progress: bool = True, preprocess: str = "standardize", train_size: int | None = None,
         **dataset_kwargs: Any) -> TuneResult:
    """Search hyperparameters on the validation split, then retrain and save the best.

    Parameters
    ----------
    dataset
        A dataset name for :func:`mlplab.data.load_dataset` (``dataset_kwargs`` are passed on), a
        raw ``Dataset``, :class:`TuningData` or a :class:`DataSource`.
    trials
        The study's target of finished (complete or pruned) trials, shared by all workers.
    timeout
        Stop starting trials after this many seconds (per worker).
    search_space
        ``None``/``"exercise"``, ``"extended"``, a YAML file or a dict (see docs/tuning.md).
    study_name, storage
        The study to create or resume; ``storage`` is None (``<out>/study.db``), a SQLAlchemy
        URL, ``journal:PATH`` or a ``.log``/``.db`` path.
    workers
        Local worker processes; 1 runs in this process.
    sampler, prune
        ``tpe``/``random``/``grid``; ``None``/``False``, ``True`` or ``"median"``, ``"hyperband"``.
    out
        Output folder (default ``runs/<study name>``).
    seed
        Seeds every trial's weights and batches (so trials differ only in their settings) and the
        sampler of a single local worker; parallel searches are not reproducible anyway, and
        their samplers draw fresh seeds so that workers do not repeat each other.
    eval_test
        Evaluate the retrained best model on the test split (once).
    heartbeat, grace
        Seconds between a running trial's heartbeats, and without one before it counts as dead
        (default twice the heartbeat); ``heartbeat=None`` disables crash detection.
    search_only
        Only search (e.g. a worker on another machine): no tables, plots or retraining.
    preprocess, train_size
        The preprocessing recipe (``mlplab.data.PREPROCESSING``, fitted on the training split)
        and an optional stratified subset of the training images to tune on.
    """
    import optuna

    start = time.perf_counter()
    if int(trials) < 1:
        raise ValueError(f"trials must be a positive integer; got {trials}.")
    if int(workers) < 1:
        raise ValueError(f"workers must be a positive integer; got {workers}.")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive seconds; got {timeout}.")
    if prune is True:
        prune = "median"
    prune = prune or None
    if prune is not None and prune not in PRUNERS:
        raise ValueError(f"unknown pruner {prune!r}; choose one of {', '.join(PRUNERS)}.")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
    if not search_only:
        # import what the end of a long search needs now: a broken install (or a module edited
        # mid-run) should fail before hours of trials, not after
        import optuna.visualization.matplotlib  # noqa: F401

        import mlplab.io  # noqa: F401
        import mlplab.plots  # noqa: F401
        import mlplab.runs  # noqa: F401
    space = SearchSpace.load(search_space)
    if sampler == "grid":
        space.grid()  # fail now if a knob has no finite grid
    source = as_source(dataset, preprocess, train_size, **dataset_kwargs)
    study_name = study_name or default_study_name(source)
    out_dir = Path(out) if out is not None else Path("runs") / study_name
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = storage_spec(storage, out_dir, heartbeat, grace)
    trials, workers = int(trials), int(workers)
    local_only = storage is None and workers == 1
    sampler_seed = seed if local_only else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    # the data before the study: a command refused for its data (no validation split,
    # --eval-test without a test split) must not leave behind a study that records those options
    # and so clashes with the corrected command. With several workers this load only checks:
    # each worker loads its own copy.
    data = source.load()
    if eval_test and not search_only:
        from mlplab.runs import require_test_split

        require_test_split(data)
    if workers > 1:
        data = None
    study = open_study(spec, study_name, space, source.describe(),
                       make_sampler(sampler, space, sampler_seed, trials),
                       make_pruner(prune, space, trials))
    if sampler_seed is not None and study.trials:
        # resuming: a sampler seeded as before would propose the first trials' settings again
        study.sampler = make_sampler(sampler, space, (sampler_seed + len(study.trials)) % 2**32,
                                     trials)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=trials, initial=min(_finished(study), trials), unit="trial",
                   desc=f"tuning {study_name}", dynamic_ncols=True)
    try:
        if workers == 1:
            run_search(study, data, space, trials, timeout, seed, bar)
        elif _finished(study) < trials:
            threads = max(1, (os.cpu_count() or 1) // workers)
            specs = [WorkerSpec(source, spec, study_name, space.to_dict(), sampler, prune,
                                trials, timeout, seed, sampler_seed, i, threads)
                     for i in range(workers)]
            run_workers(specs, study, bar)
    except KeyboardInterrupt:
        if not search_only and _best(study)[0] is not None:
            # the finished trials' tables and plots now; a resumed search rewrites them
            write_results(study, out_dir)
        raise
    finally:
        if bar is not None:
            _update_bar(bar, study)
            bar.close()

    from optuna.trial import TrialState

    counts = {s: len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    number, value = _best(study)
    result = TuneResult(study_name, spec.display, out_dir, counts[TrialState.COMPLETE],
                        counts[TrialState.PRUNED], counts[TrialState.FAIL], number, value,
                        dict(study.trials[number].params) if number is not None else {})
    if not search_only:
        result.files, result.skipped_plots = write_results(study, out_dir)
        if number is None and counts[TrialState.FAIL] and not counts[TrialState.PRUNED]:
            # every trial failed: an error, not an empty success (e.g. a space whose fixed knobs
            # cannot work together)
            first = next(t for t in study.trials if t.state == TrialState.FAIL)
            reason = first.user_attrs.get("error", "see the warnings above")
            raise ValueError(f"all {counts[TrialState.FAIL]} trials failed, the first with "
                             f"{reason}; results.csv lists them.")
        if number is not None:
            if data is None:
                data = source.load()
            run = retrain_best(study, data, out_dir / "best-run", seed, eval_test, source)
            result.run_dir = run.out
            result.retrained_val_acc = run.metrics["val_accuracy"]
            result.test_accuracy = run.metrics.get("test_accuracy")
    result.wall_seconds = round(time.perf_counter() - start, 2)
    if not search_only:
        from mlplab.io import write_json

        result.files["summary"] = out_dir / "summary.json"
        write_json(out_dir / "summary.json", result.to_dict())
    return result
