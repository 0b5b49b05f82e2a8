"""Training runs: one call from a configuration to a trained model and a run folder on disk.

:func:`train_run` is the library entry point that ``mlplab train``, tuning, the PyTorch comparison
and the report share::

    from mlplab.runs import train_run

    result = train_run(dataset="digits", hidden=[100], epochs=20, out="runs/digits")
    result = train_run(preset="exercise-default", dataset="cifar10", out="runs/ex")
    print(result.metrics["val_accuracy"], result.out)

A run folder holds:

* ``config.json``: the :class:`RunConfig` (every option; ``train_run(**config)`` repeats the run);
* ``model.npz``: the final model and its fitted preprocessing (:func:`mlplab.io.load_model`);
* ``checkpoint.npz``: model, preprocessing and trainer state, rewritten atomically at the end of
  every epoch (and on Ctrl-C): :func:`resume_run` continues from it and ends with exactly the
  result an uninterrupted run with the same seed would have had;
* ``history.csv``: one row per iteration (loss, learning rate; accuracies on epoch-ending rows);
* ``metrics.json``: train/val (and, with ``eval_test``, test) accuracy, epochs, iterations,
  seconds, dataset, model, status (``completed`` or ``interrupted``);
* plots: ``loss.png``, ``accuracy.png``, ``confusion.png`` and, for image data, ``weights.png``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlplab import io
from mlplab._validation import is_int, is_number
from mlplab.models import MLP
from mlplab.trainer import (
    Callback,
    History,
    SettingsError,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
)

CONFIG_FILE = "config.json"
MODEL_FILE = "model.npz"
CHECKPOINT_FILE = "checkpoint.npz"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
AUGMENTATIONS = ("flip", "crop", "elastic")
CROP_FILLS = ("zero", "black")


@dataclass
class RunConfig:
    """Every option of a run, flat and JSON-able. Field names match ``mlplab train`` flags.

    Data: ``dataset`` (a :func:`mlplab.data.load_dataset` name), ``data_dir``, ``download``,
    ``val_size``, ``test_size``, ``image_size``, ``data_seed`` (seed of the split, kept apart from
    ``seed`` so that runs with different seeds see the same split), ``preprocessing`` (a
    :data:`mlplab.data.PREPROCESSING` name), ``augment`` (any of ``flip``, ``crop``,
    ``elastic``), ``crop_padding`` (pixels a ``crop`` may shift the image by; None = an eighth of
    its side), ``elastic_pixels`` (the largest displacement of an ``elastic`` distortion),
    ``crop_fill`` (what a crop or distortion uncovers: ``"zero"``, 0 in the preprocessed space,
    i.e. the mean after standardisation or mean subtraction, or ``"black"``, the preprocessed
    all-black image).
    Model: ``hidden``, ``activation``, ``init``, ``std``, ``dropout``, ``batchnorm``, ``dtype``.
    Training: the fields of :class:`mlplab.trainer.TrainConfig`. ``seed`` seeds the weights, the
    minibatches, dropout and augmentation. ``eval_test`` also measures the test split.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    val_size: int | float | None = None
    test_size: int | float | None = None
    image_size: str | int | None = None
    data_seed: int = 0
    preprocessing: str = "standardize"
    augment: list[str] = field(default_factory=list)
    crop_padding: int | None = None
    crop_fill: str = "zero"
    elastic_pixels: float = 2.0
    hidden: list[int] = field(default_factory=lambda: [100])
    activation: str = "relu"
    init: str = "he"
    std: float = 1e-4
    dropout: float = 0.0
    batchnorm: bool = False
    dtype: str = "float32"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    schedule: str = "exp"
    lr_decay: float = 0.95
    step_epochs: int = 10
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    reg: float = 1e-4
    label_smoothing: float = 0.0
    batch_size: int = 128
    epochs: int | None = 20
    iters: int | None = None
    sampling: str = "shuffle"
    train_acc: str = "subset"
    patience: int | None = None
    restore_best: bool = True
    seed: int = 0
    eval_test: bool = False
    preset: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.hidden, np.ndarray):
            self.hidden = self.hidden.tolist()
        if isinstance(self.hidden, int | str) and not isinstance(self.hidden, bool):
            self.hidden = [int(h) for h in str(self.hidden).split(",") if h.strip()]
        if not isinstance(self.hidden, list | tuple) or not all(
                is_int(h) or (isinstance(h, float) and h.is_integer())
                or (isinstance(h, str) and h.strip().isdigit()) for h in self.hidden):
            raise ValueError(f"hidden must be a list of layer sizes (integers), e.g. [500, 250]; "
                             f"got {self.hidden!r}.")
        self.hidden = [int(h) for h in self.hidden]
        if isinstance(self.augment, str):
            self.augment = [a.strip() for a in self.augment.split(",") if a.strip()]
        self.augment = list(self.augment)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option (the model is checked when built)."""
        bad = [a for a in self.augment if a not in AUGMENTATIONS]
        if bad:
            raise ValueError(f"unknown augmentation {bad[0]!r}; choose from "
                             f"{', '.join(AUGMENTATIONS)} (e.g. flip,crop).")
        if self.crop_padding is not None and (not is_int(self.crop_padding)
                                              or self.crop_padding < 1):
            raise ValueError(f"crop_padding must be a positive integer (pixels) or None; got "
                             f"{self.crop_padding!r}.")
        if self.crop_fill not in CROP_FILLS:
            raise ValueError(f"crop_fill must be one of {', '.join(CROP_FILLS)}; got "
                             f"{self.crop_fill!r}.")
        if self.batchnorm and is_int(self.batch_size) and self.batch_size < 2:
            raise SettingsError(f"batch_size must be at least 2 with batch norm, which "
                                f"normalises each batch by its own statistics; got "
                                f"{self.batch_size}.")
        if not (isinstance(self.elastic_pixels, int | float) and 0 < self.elastic_pixels <= 8):
            raise ValueError(f"elastic_pixels must be a number of pixels in (0, 8]; got "
                             f"{self.elastic_pixels!r}.")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive integers; got {self.hidden}.")
        if not (is_number(self.dropout) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}.")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype!r}.")
        # the model is built only after the data is loaded: check its options now
        from mlplab._validation import check_positive, check_seed
        from mlplab.init import INITS
        from mlplab.models import ACTIVATIONS

        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of "
                             f"{', '.join(ACTIVATIONS)}.")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}.")
        check_positive(self.std, "std")
        check_seed(self.data_seed, "data_seed")
        from mlplab.data import PREPROCESSING

        if self.preprocessing not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing {self.preprocessing!r}; choose one of "
                             f"{', '.join(PREPROCESSING)}.")
        if self.patience is not None and self.val_size == 0:
            raise ValueError("early stopping (patience) needs a validation split, and val_size is "
                             "0: give val_size > 0 (--val-size N) or turn early stopping off "
                             "(patience None, --patience 0).")
        self.trainer_config().validate()

    def trainer_config(self, **runtime: Any) -> TrainConfig:
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in asdict(self).items() if k in names}, **runtime)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown run options: {', '.join(unknown)} (known: "
                             f"{', '.join(sorted(names))}).")
        return cls(**d)


def build_config(preset: str | None = None, **options: Any) -> RunConfig:
    """A validated :class:`RunConfig`: the defaults, then preset ``preset``, then ``options``.

    Giving ``epochs`` without ``iters`` (or the reverse) replaces the preset's run length.
    """
    from mlplab.presets import get_preset

    values: dict[str, Any] = {}
    if preset is not None:
        values.update(get_preset(preset))
        values["preset"] = preset
    if options.get("epochs") is not None and "iters" not in options:
        values["iters"] = None
    if options.get("iters") is not None and "epochs" not in options:
        values["epochs"] = None
    values.update(options)
    config = RunConfig.from_dict(values)
    config.validate()
    return config


@dataclass
class RunResult:
    """What :func:`train_run` returns.

    ``model`` (trained, best parameters restored when early stopping), ``preprocessing`` (the
    fitted ``Pipeline``: ``model.predict(preprocessing.transform(images))``), ``history``,
    ``metrics`` (as in ``metrics.json``), ``config``, ``classes`` and ``out`` (the run folder,
    or None when nothing was written).
    """

    config: RunConfig
    model: MLP
    preprocessing: Any
    history: History
    metrics: dict[str, Any]
    classes: list[str]
    out: Path | None = None

    @property
    def val_accuracy(self) -> float:
        return float(self.metrics["val_accuracy"])

    @property
    def interrupted(self) -> bool:
        return self.metrics.get("status") == "interrupted"


# --------------------------------------------------------------------------- checkpoints
class CheckpointCallback(Callback):
    """Writes ``checkpoint.npz`` atomically at the end of every epoch and when training stops
    (including Ctrl-C): model, preprocessing and the trainer's complete state."""

    def __init__(self, path: str | os.PathLike, preprocessing: Any, extra: dict[str, Any],
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


def save_checkpoint(path: str | os.PathLike, trainer: Trainer, preprocessing: Any = None,
                    extra: Mapping[str, Any] | None = None, seconds: float = 0.0) -> Path:
    """Model + preprocessing + ``trainer.state_dict()`` in one ``.npz`` (no pickle), atomically."""
    state = trainer.state_dict()
    arrays = io.model_arrays(trainer.model, preprocessing, extra)
    arrays.update({f"optimizer/{k}": v for k, v in state.pop("optimizer").items()})
    best = state.pop("best_state")
    if best is not None:
        arrays.update({f"best/{k}": v for k, v in best.items()})
    order = state.pop("order")
    if order is not None:
        arrays["order"] = order
    state["seconds"] = seconds
    arrays["__trainer__"] = io.json_array(state)
    return io.write_npz(path, arrays)


def load_checkpoint(path: str | os.PathLike) -> tuple[io.LoadedModel, dict[str, Any], float]:
    """``(loaded model, trainer state for Trainer.resume, seconds trained so far)``."""
    arrays = io.read_npz(path)
    loaded = io.model_from_arrays(arrays, source=str(path))
    if "__trainer__" not in arrays:
        raise ValueError(f"{path} is a model file, not a checkpoint (no trainer state).")
    state = io.parse_json_array(arrays["__trainer__"], f"{path}: __trainer__")
    _check_trainer_state(state, path)
    seconds = float(state.pop("seconds", 0.0))
    state["optimizer"] = {k[len("optimizer/"):]: v for k, v in arrays.items()
                          if k.startswith("optimizer/")}
    best = {k[len("best/"):]: v for k, v in arrays.items() if k.startswith("best/")}
    _check_state_arrays(state["optimizer"], best, loaded.model, path)
    order = arrays.get("order")
    if order is not None and (order.ndim != 1 or order.dtype.kind not in "iu"):
        raise ValueError(f"{path}: the saved row order is not a list of row numbers ({order.dtype}"
                         f" {order.shape}); the checkpoint is damaged - start the run again.")
    state["best_state"] = best or None
    state["order"] = arrays.get("order")
    return loaded, state, seconds


def _check_trainer_state(state: Any, path: str | os.PathLike) -> None:
    """The trainer state's shape, so that a damaged checkpoint fails here with a clear message
    rather than deep inside ``Trainer.resume``."""
    problem = None
    if not isinstance(state, dict):
        problem = f"a {type(state).__name__}, not a dict"
    else:
        for key, kind in (("iteration", int), ("epoch", int), ("rng", list), ("history", dict),
                          ("seconds", (int, float))):
            value = state.get(key, 0.0 if key == "seconds" else None)  # seconds may be absent
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
                         "damaged - start the run again with a new --out.")


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
            raise ValueError(f"{path}: optimizer/{key} does not fit the model ({arr.dtype} "
                             f"{arr.shape}); the checkpoint is damaged - start the run again.")
    for key, arr in best.items():
        if key not in params or arr.shape != params[key].shape or arr.dtype.kind != "f" or \
                not np.isfinite(arr).all():
            raise ValueError(f"{path}: best/{key} does not fit the model ({arr.dtype} "
                             f"{arr.shape}); the checkpoint is damaged - start the run again.")


#: names of the files in a run folder; an atomic write leaves ``.<name>.<random>`` if killed
RUN_FILES = (CONFIG_FILE, MODEL_FILE, CHECKPOINT_FILE, HISTORY_FILE, METRICS_FILE, "loss.png",
             "accuracy.png", "confusion.png", "weights.png")


def remove_partial_writes(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed process left in ``run_dir``
    (``.checkpoint.npz.x8k2.npz``, ...). They never replaced a real file, so nothing is lost;
    only the one process working on a run folder writes them."""
    removed = []
    for p in Path(run_dir).iterdir():
        if p.name.startswith(".") and p.is_file() and \
                any(p.name.startswith(f".{name}.") for name in RUN_FILES):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


# --------------------------------------------------------------------------- the run
def train_run(config: RunConfig | Mapping[str, Any] | None = None, *,
              out: str | os.PathLike | None = None, data: Any = None,
              callbacks: Sequence[Callback] = (), progress: bool = False, verbose: bool = False,
              plots: bool = True, **options: Any) -> RunResult:
    """Train one model as described by a configuration and (with ``out``) write a run folder.

    Parameters
    ----------
    config : a :class:`RunConfig`, or a dict of its fields (e.g. a loaded ``config.json``).
    out : the run folder to create; None trains in memory only (no files, no checkpoints).
        An existing folder must not already hold a run (use :func:`resume_run` for that).
    data : an already loaded :class:`mlplab.data.Dataset` (raw splits) to use instead of loading
        ``config.dataset``; handy when many runs share one dataset (tuning). Or a function of no
        arguments that loads it: like None (loading ``config.dataset``), this lets the run own
        the dataset and free its raw training images once they are preprocessed, which lowers
        the peak memory.
    callbacks : extra :class:`mlplab.trainer.Callback` objects (pruning, logging, ...).
    progress, verbose : a tqdm progress bar; a line per epoch.
    plots : write the PNG figures into ``out``.
    **options : :class:`RunConfig` fields, applied on top of ``config``; ``preset="NAME"`` starts
        from a preset (see :mod:`mlplab.presets`).

    Returns
    -------
    RunResult : the model, fitted preprocessing, history, metrics and run folder. If the run was
        interrupted (Ctrl-C), ``result.interrupted`` is True and the checkpoint resumes it.

    Raises
    ------
    ValueError : a bad option, or a bad or missing dataset (``DatasetError``).
    mlplab.trainer.TrainingDivergedError : the loss became NaN or infinite.
    """
    if config is None:
        cfg = build_config(**options)
    else:
        base = config.to_dict() if isinstance(config, RunConfig) else dict(config)
        preset = options.pop("preset", None)
        if preset is not None:
            cfg = build_config(preset, **{**{k: v for k, v in base.items() if k != "preset"},
                                          **options})
        else:
            cfg = build_config(**{**base, **options})
    cfg = _absolute_data_paths(cfg)
    ds, owned = _take_dataset(cfg, data)
    _crop_padding(cfg, ds.image_shape)  # before anything is written
    if cfg.eval_test:
        require_test_split(ds)
    if not owned:
        # a dataset loaded by the caller may be split otherwise than the config (a preset's
        # val_size 0, a default): record the split it has, which evaluate_run reloads
        cfg = replace(cfg, val_size=len(ds.y_val), test_size=len(ds.y_test))
    made = out is not None and not Path(out).exists()  # a folder of the user's is never removed
    out_dir = _new_run_dir(out) if out is not None else None
    pre, model, X_train = _fresh(cfg, ds)
    if owned:
        ds = _without_raw_train(ds)
    if out_dir is not None:
        io.write_json(out_dir / CONFIG_FILE, cfg.to_dict())
    try:
        return _fit_and_finish(cfg, ds, pre, model, X_train, None, 0.0, out_dir, callbacks,
                               progress, verbose, plots)
    except TrainingDivergedError as exc:
        if out_dir is None:
            raise
        if not (out_dir / CHECKPOINT_FILE).exists():  # (the folder held none before this run)
            # nothing was saved: leave no half-made run that would block the same --out again
            (out_dir / CONFIG_FILE).unlink(missing_ok=True)
            if made:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()  # only if nothing else was put there meanwhile
            raise
        raise TrainingDivergedError(f"{exc} {out_dir} keeps the checkpoint of its last good "
                                    "epoch; start the new run with another --out.") from None


def resume_run(run: str | os.PathLike, *, data: Any = None, callbacks: Sequence[Callback] = (),
               progress: bool = False, verbose: bool = False, plots: bool = True,
               data_dir: str | os.PathLike | None = None) -> RunResult:
    """Continue the run in folder ``run`` from its last checkpoint, to the end it was configured
    for, with the same result an uninterrupted run would have had. ``data`` as in
    :func:`train_run` (it must be the same dataset). ``data_dir``: where the run's data is now,
    if it was moved (for a ``folder:PATH`` dataset the folder itself); its splits must be the
    ones the run was trained on, and ``config.json`` then names the new place."""
    run_dir = Path(run)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {CONFIG_FILE}).")
    config_path = run_dir / CONFIG_FILE
    values = io.read_json(config_path)
    if isinstance(values, dict) and values.get("framework") == "pytorch":
        raise ValueError(f"{run_dir} was written by mlplab torch train, which does not resume; "
                         "train it again with mlplab torch train.")
    cfg = _finished_run_config(values, config_path)
    try:
        cfg.validate()
    except (TypeError, ValueError) as exc:  # a hand-edited file
        raise ValueError(f"{config_path} is not a valid run configuration: {exc}") from None
    if read_metrics(run_dir / METRICS_FILE).get("status") == "completed":
        raise ValueError(f"the run in {run_dir} has already completed; nothing to resume "
                         "(start a new run with a different --out).")
    ckpt = run_dir / CHECKPOINT_FILE
    remove_partial_writes(run_dir)
    if data_dir is not None:
        if data is not None:
            raise ValueError("give the run's data or the folder it moved to (data_dir), not "
                             "both.")
        cfg = relocated(cfg, data_dir)
    loaded = state = None
    if ckpt.is_file():
        loaded, state, seconds = load_checkpoint(ckpt)
    # a folder decoded to the checkpoint's channels, whatever this mlplab would choose now
    ds, owned = _take_dataset(cfg, data, loaded.extra.get("image_shape") if loaded else None)
    if cfg.eval_test:
        require_test_split(ds)
    if loaded is not None:
        pre, model = loaded.preprocessing, loaded.model
        _check_same_network(model, cfg, ckpt)  # not a checkpoint copied in from another run
        if data_dir is not None:
            if loaded.extra.get("splits"):
                _check_same_data(loaded.extra["splits"], ds, ckpt)
            else:
                warnings.warn(f"{ckpt} was written by an mlplab that did not record the run's "
                              f"splits: the data in {data_dir} cannot be checked against them; "
                              "make sure it is the run's.", stacklevel=2)
        X_train = pre.transform(ds.X_train)
    else:  # killed before the first epoch ended: start again from scratch, same seed
        pre, model, X_train = _fresh(cfg, ds)
        state, seconds = None, 0.0
    if owned:
        ds = _without_raw_train(ds)
    if X_train.shape[1] != model.input_size:
        raise ValueError(f"the dataset has {X_train.shape[1]} features but the checkpoint's model "
                         f"expects {model.input_size}; resume with the run's own dataset.")
    if data_dir is not None:  # the data lives there now: evaluate and --resume look there next
        io.write_json(config_path, cfg.to_dict())
    try:
        return _fit_and_finish(cfg, ds, pre, model, X_train, state, seconds, run_dir, callbacks,
                               progress, verbose, plots)
    except TrainingDivergedError as exc:
        # resuming repeats the same arithmetic: it would diverge again each time
        raise TrainingDivergedError(f"{exc} Resuming this run repeats it; start a new run with "
                                    f"other settings (another --out, or delete {run_dir}).") \
            from None


def _check_same_data(record: dict[str, Any], ds, ckpt: Path) -> None:
    """Refuse moved data whose splits are not the ones in ``ckpt``'s record (``split_record``
    at the start of the run): sizes of all three, fingerprints of validation and test."""
    for split in ("train", "val", "test"):
        size = record.get(f"{split}_size")
        if size is not None and size != len(ds.split(split)[1]):
            raise ValueError(f"the {split} split of {ds.name} has {len(ds.split(split)[1])} "
                             f"images, but the run was trained with {size} (see {ckpt}): it "
                             "is not the run's data.")
    for split in ("val", "test"):
        _check_same_split(record, split, *ds.split(split), ds.name)


def _check_same_network(model: MLP, cfg: RunConfig, ckpt: Path) -> None:
    """Refuse a checkpoint whose network is not the one ``config.json`` describes."""
    c = model.config
    have = {"hidden_sizes": list(c["hidden_sizes"]), "activation": c["activation"],
            "batchnorm": c["batchnorm"], "dropout": c["dropout"],
            "dtype": np.dtype(c["dtype"]).name}
    wanted = {"hidden_sizes": list(cfg.hidden), "activation": cfg.activation,
              "batchnorm": bool(cfg.batchnorm), "dropout": float(cfg.dropout),
              "dtype": np.dtype(cfg.dtype).name}
    for key, value in wanted.items():
        if have[key] != value:
            raise ValueError(f"{ckpt} holds a network with {key} {have[key]!r}, but "
                             f"{CONFIG_FILE} says {value!r}: it is not this run's checkpoint.")


def _take_dataset(cfg: RunConfig, data: Any,
                  image_shape: Sequence[int] | None = None) -> tuple[Any, bool]:
    """The run's dataset and whether the run owns it: it does when it loads it itself (``data``
    None, or a function that loads it), and may then free what it no longer needs."""
    if data is None:
        return load_run_dataset(cfg, image_shape), True
    if callable(data):
        return data(), True
    return data, False


def _without_raw_train(ds):
    """``ds`` without its raw training images, which are dead weight once preprocessed (a
    quarter of the float32 training set, and on CIFAR-10 what puts a run over 1.5x its data)."""
    import dataclasses

    return dataclasses.replace(ds, X_train=np.empty((0, *ds.X_train.shape[1:]), ds.X_train.dtype))


def _fresh(cfg: RunConfig, ds) -> tuple[Any, MLP, np.ndarray]:
    """Fitted preprocessing, a freshly initialised model and the training features."""
    from mlplab.data import make_preprocessing

    pre = make_preprocessing(cfg.preprocessing, dtype=cfg.dtype)
    X_train = pre.fit_transform(ds.X_train)
    model = MLP(X_train.shape[1], cfg.hidden, len(ds.classes), activation=cfg.activation,
                init=cfg.init, std=cfg.std, dropout=cfg.dropout, batchnorm=cfg.batchnorm,
                seed=cfg.seed, dtype=cfg.dtype)
    return pre, model, X_train


def load_run_dataset(cfg: RunConfig, image_shape: Sequence[int] | None = None):
    """Load the raw dataset a run config names (with its split settings). ``image_shape``: the
    run's (its model file's), whose channel count a folder is decoded to, so that a run keeps
    working where a later mlplab would decide the folder's colour otherwise (it reads grey GIFs
    and grey PNGs with alpha as one channel; mlplab before that read them as three)."""
    from mlplab.data import load_dataset

    folder = cfg.dataset.lower().startswith("folder:")
    channels = int(image_shape[2]) if folder and image_shape is not None and \
        len(image_shape) == 3 and image_shape[2] in (1, 3) else None
    return load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download,
                        val_size=cfg.val_size, test_size=cfg.test_size,
                        image_size=cfg.image_size, seed=cfg.data_seed, channels=channels)


def _crop_padding(cfg: RunConfig, image_shape: Sequence[int]) -> int:
    """How far ``cfg``'s crops shift images of ``image_shape`` (0 without crops); a ValueError if
    a shift could leave nothing of the image."""
    if "crop" not in cfg.augment:
        return 0
    # by default pad by an eighth of the image: 4 pixels on CIFAR's 32, 1 on the 8x8 digits
    pad = cfg.crop_padding or max(1, round(image_shape[0] / 8))
    if pad >= min(image_shape[:2]):
        raise ValueError(f"crop_padding {pad} (--crop-padding) must be smaller than the images' "
                         f"side ({min(image_shape[:2])} pixels).")
    return pad


def make_augmenter(cfg: RunConfig, image_shape: Sequence[int], preprocessing=None):
    """The minibatch augmentation ``cfg.augment`` asks for, or None.

    ``crop_fill="black"`` needs the fitted ``preprocessing`` (a :class:`mlplab.data.Pipeline`):
    the padding is its transform of an all-zero raw image.
    """
    if not cfg.augment:
        return None
    from mlplab.data import Augmenter

    crop = _crop_padding(cfg, image_shape)
    elastic = float(cfg.elastic_pixels) if "elastic" in cfg.augment else 0.0
    fill: float | np.ndarray = 0.0
    if (crop or elastic) and cfg.crop_fill == "black":
        if preprocessing is None:
            raise ValueError('crop_fill="black" needs the fitted preprocessing pipeline.')
        black = np.zeros((1, *image_shape), np.uint8)  # one raw image, as the loaders give it
        fill = np.asarray(preprocessing.transform(black), np.float64).reshape(image_shape)
        if np.all(fill == fill[:1, :1]):  # per-channel preprocessing: one value per channel
            fill = fill[0, 0]
    return Augmenter(image_shape, flip="flip" in cfg.augment, crop=crop, fill=fill,
                     elastic=elastic)


def make_network_view(cfg: RunConfig, ds, seed: int | None = 0):
    """A ``transform`` for :func:`mlplab.data.preview.sample_grid`: raw (n, H, W, C) images as a
    run with ``cfg`` feeds them to the network (its preprocessing, fitted on ``ds``'s training
    split, then one draw of its augmentation), each scaled to [0, 1] for display."""
    from mlplab.data import make_preprocessing
    from mlplab.data.preview import scaled_for_display

    cfg.validate()
    pre = make_preprocessing(cfg.preprocessing).fit(ds.X_train)
    augment = make_augmenter(cfg, ds.image_shape, pre)
    rng = np.random.RandomState(seed)

    def view(images: np.ndarray) -> np.ndarray:
        X = pre.transform(images)
        if augment is not None:
            X = augment(X, rng)
        return scaled_for_display(X, ds.image_shape)

    return view


def describe_network(kind: str, sizes: Sequence[int], activation: str, batchnorm: bool,
                     dropout: float) -> str:
    """``"MLP 3072-50-10 relu"`` (``kind`` first) plus batch norm / dropout when used."""
    text = f"{kind} {'-'.join(str(s) for s in sizes)} {activation}"
    if batchnorm:
        text += " batchnorm"
    if dropout:
        text += f" dropout {dropout:g}"
    return text


def describe_model(model: MLP) -> str:
    """``"MLP 3072-50-10 relu"`` plus batch norm / dropout when used."""
    c = model.config
    return describe_network("MLP", [c["input_size"], *c["hidden_sizes"], c["num_classes"]],
                            c["activation"], c["batchnorm"], c["dropout"])


def require_test_split(ds) -> None:
    """Refuse ``--eval-test`` on a dataset without a test split before training, not after."""
    if not len(ds.y_test):
        raise ValueError(f"the dataset {ds.name} has no test split to evaluate (--eval-test): "
                         "give it one with --test-size N, or leave out --eval-test.")


def _fit_and_finish(cfg: RunConfig, ds, pre, model: MLP, X_train: np.ndarray,
                    state: dict[str, Any] | None, seconds_before: float, out_dir: Path | None,
                    callbacks: Sequence[Callback], progress: bool, verbose: bool,
                    plots: bool) -> RunResult:
    X_val = pre.transform(ds.X_val) if len(ds.y_val) else None
    extra = {"classes": list(ds.classes), "dataset": ds.name,
             "image_shape": list(ds.image_shape), "preset": cfg.preset,
             "splits": split_record(ds)}  # what a resume from moved data must find
    ckpt_cb = CheckpointCallback(out_dir / CHECKPOINT_FILE, pre, extra, seconds_before) \
        if out_dir is not None else CheckpointCallback(os.devnull, pre, extra, seconds_before)
    all_callbacks = [*([ckpt_cb] if out_dir is not None else []), *callbacks]
    trainer = Trainer(cfg.trainer_config(progress=progress, verbose=verbose),
                      callbacks=all_callbacks, augment=make_augmenter(cfg, ds.image_shape, pre))
    if state is not None:
        trainer.resume(state)
    history = trainer.fit(model, X_train, ds.y_train, X_val,
                          ds.y_val if X_val is not None else None)
    seconds = ckpt_cb.seconds()

    metrics: dict[str, Any] = {
        "status": "interrupted" if history.interrupted else "completed",
        "train_accuracy": model.accuracy(X_train, ds.y_train),
        "val_accuracy": model.accuracy(X_val, ds.y_val) if X_val is not None else None,
    }
    if cfg.eval_test and not history.interrupted:
        metrics["test_accuracy"] = model.accuracy(pre.transform(ds.X_test), ds.y_test)
    metrics.update({
        "best_val_accuracy": history.best_val_acc if history.best_epoch > 0 else None,
        "best_epoch": history.best_epoch if history.best_epoch > 0 else None,
        "stopped_early": history.stopped_early,
        "epochs": trainer.epoch,
        "iterations": trainer.iteration,
        "seconds": round(seconds, 3),
        "final_loss": history.loss[-1] if history.loss else None,
        "dataset": ds.name,
        "model": describe_model(model),
        "num_params": model.num_params,
        "preset": cfg.preset,
        "seed": cfg.seed,
        **extra["splits"],
    })
    result = RunResult(cfg, model, pre, history, metrics, list(ds.classes), out_dir)
    if out_dir is not None:
        io.save_model(out_dir / MODEL_FILE, model, pre, {**extra, "metrics": metrics})
        write_history(out_dir / HISTORY_FILE, history, _per_epoch(cfg, len(ds.y_train)))
        if plots:
            write_plots(out_dir, result, ds, X_val)
        io.write_json(out_dir / METRICS_FILE, metrics)  # last: its presence marks a finished write
    return result


def split_record(ds) -> dict[str, Any]:
    """The split sizes and the evaluation splits' fingerprints, for a run's ``metrics.json``:
    ``evaluate`` refuses a folder dataset whose validation or test split has changed since."""
    return {"train_size": int(len(ds.y_train)), "val_size": int(len(ds.y_val)),
            "test_size": int(len(ds.y_test)),
            "split_sha1": {s: split_fingerprint(*ds.split(s)) for s in ("val", "test")}}


def split_fingerprint(X: np.ndarray, y: np.ndarray) -> str:
    """SHA-1 of a split's raw images and labels."""
    h = hashlib.sha1(np.ascontiguousarray(X))
    h.update(np.ascontiguousarray(y, dtype=np.int64))
    return h.hexdigest()


def _check_same_split(metrics: dict[str, Any], split: str, X: np.ndarray, y: np.ndarray,
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


def _per_epoch(cfg: RunConfig, n: int) -> int:
    batch = min(cfg.batch_size, n) if cfg.sampling == "shuffle" else cfg.batch_size
    return max(n // batch, 1)


def write_history(path: Path, history: History, per_epoch: int) -> None:
    """``history.csv``: iteration, epoch, loss, lr; train/val accuracy on epoch-ending rows."""
    rows = []
    for i, loss in enumerate(history.loss, start=1):
        epoch = (i - 1) // per_epoch + 1
        row: list[Any] = [i, epoch, repr(float(loss))]
        if i % per_epoch == 0 and i // per_epoch <= len(history.train_acc):
            e = i // per_epoch - 1
            row += [history.lr[e], history.train_acc[e], history.val_acc[e]]
        else:
            row += ["", "", ""]
        rows.append(row)
    io.write_csv(path, ["iteration", "epoch", "loss", "lr", "train_acc", "val_acc"], rows)


def read_history(path: str | os.PathLike) -> dict[str, list[float]]:
    """``history.csv`` back as ``{"loss": [...], "train_acc": [...], "val_acc": [...],
    "lr": [...]}`` (accuracies per epoch)."""
    import csv

    out: dict[str, list[float]] = {"loss": [], "train_acc": [], "val_acc": [], "lr": []}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out["loss"].append(float(row["loss"]))
            if row["val_acc"] != "":
                for k in ("train_acc", "val_acc", "lr"):
                    out[k].append(float(row[k]))
    return out


def write_plots(out_dir: Path, result: RunResult, ds, X_val: np.ndarray | None) -> list[Path]:
    """The run's figures: loss, accuracy, confusion matrix (validation) and first-layer
    weights (image data)."""
    from mlplab import plots

    h = result.history
    written = [plots.save(plots.plot_loss(h.loss), out_dir / "loss.png")]
    if h.train_acc:
        label = ("train (last minibatch)" if result.config.train_acc == "batch"
                 else "train (up to 5,000 training images)")
        written.append(plots.save(plots.plot_accuracy(h.train_acc, h.val_acc,
                                                      train_label=label),
                                  out_dir / "accuracy.png"))
    if X_val is not None:
        cm = plots.confusion_matrix(ds.y_val, result.model.predict(X_val), len(result.classes))
        written.append(plots.save(plots.plot_confusion(cm, result.classes,
                                                       title="Confusion matrix (validation)"),
                                  out_dir / "confusion.png"))
    W1 = result.model.params["W1"]
    if W1.shape[0] == int(np.prod(ds.image_shape)):
        written.append(plots.save(plots.plot_first_layer_weights(W1, ds.image_shape),
                                  out_dir / "weights.png"))
    return written


def absolute_data_paths(dataset: str, data_dir: str | None) -> tuple[str, str | None]:
    """``dataset`` (a ``folder:PATH``) and ``data_dir`` as absolute paths, for a run's config:
    ``evaluate`` and ``--resume`` reload the data from it, maybe from another working folder."""
    from mlplab.data.base import user_path

    if dataset.lower().startswith("folder:") and dataset[len("folder:"):].strip():
        dataset = f"folder:{user_path(dataset[len('folder:'):]).resolve()}"
    if data_dir:
        data_dir = str(user_path(data_dir).resolve())
    return dataset, data_dir


def _absolute_data_paths(cfg: RunConfig) -> RunConfig:
    dataset, data_dir = absolute_data_paths(cfg.dataset, cfg.data_dir)
    return replace(cfg, dataset=dataset, data_dir=data_dir)


def relocated(cfg: RunConfig, data_dir: str | os.PathLike) -> RunConfig:
    """``cfg`` with its data found in ``data_dir`` instead: for a ``folder:PATH`` dataset the
    folder itself, else the folder of the dataset's files (a run whose data was moved)."""
    if cfg.dataset.lower().startswith("folder:"):  # the folder is the dataset's name
        return _absolute_data_paths(replace(cfg, dataset=f"folder:{data_dir}"))
    return _absolute_data_paths(replace(cfg, data_dir=str(data_dir)))


def _new_run_dir(out: str | os.PathLike) -> Path:
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; the run needs a folder: choose another --out.")
    if any((out_dir / f).exists() for f in (CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE,
                                             METRICS_FILE)):
        raise ValueError(f"{out_dir} already holds a run; choose another --out, or continue it "
                         f"with --resume {out_dir}.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file on the path, a read-only or virtual file system
        raise ValueError(f"cannot create the run folder {out_dir}: {exc.strerror or exc}; "
                         "choose another --out.") from exc
    return out_dir


def default_run_dir(root: str | os.PathLike = "runs", claim: bool = False) -> Path:
    """``runs/<YYYYmmdd-HHMMSS>`` (with a suffix if that exists already). With ``claim`` the
    folder is made here, atomically, so that runs started in the same second by other processes
    get folders of their own (they would otherwise pick the same name)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    n = 1
    while True:
        path = Path(root) / (stamp if n == 1 else f"{stamp}-{n}")
        if not claim and not path.exists():
            return path
        if claim:
            try:
                path.mkdir(parents=True)
                return path
            except FileExistsError:
                pass
        n += 1


def _no_model_hint(run_dir: Path) -> str:
    """What to do with a folder that has no model file."""
    if (run_dir / CHECKPOINT_FILE).is_file():
        return f"it has a checkpoint: continue it with mlplab train --resume {run_dir}"
    # a tuning folder keeps its retrained best model in best-run/
    nested = next((d for d in sorted(run_dir.iterdir()) if (d / MODEL_FILE).is_file()), None)
    if nested is not None:
        return f"the run folder with a model inside it is {nested}"
    return "pass a run folder written by mlplab train"


def load_run(run: str | os.PathLike) -> tuple[io.LoadedModel, RunConfig, dict[str, Any]]:
    """``(model file, config, metrics)`` of a finished (or interrupted) run folder."""
    run_dir = Path(run)
    loaded = _load_run_model(run_dir)
    config_path = run_dir / CONFIG_FILE
    cfg = _finished_run_config(io.read_json(config_path), config_path)
    return loaded, cfg, read_metrics(run_dir / METRICS_FILE)


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's ``metrics.json`` (``{}`` if there is none yet), refused with the file's name if
    it is not what mlplab writes there."""
    metrics = io.read_json(path) if path.is_file() else {}
    if not isinstance(metrics, dict) or not isinstance(metrics.get("split_sha1", {}), dict) \
            or not isinstance(metrics.get("status", ""), str):
        raise ValueError(f"{path} is not a run's metrics (a JSON object as mlplab train writes "
                         "it); it was edited or damaged: delete it, then resume the run with "
                         "mlplab train --resume, which writes it again.")
    return metrics


def _load_run_model(run_dir: Path) -> io.LoadedModel:
    """The model file of a run folder (which is all ``predict`` needs)."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder; pass a run folder written by "
                                "mlplab train.")
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {MODEL_FILE}; {_no_model_hint(run_dir)}.")
    return io.load_model(model_path)


#: the options that say which data a run saw: all that evaluating its model needs
_DATA_OPTIONS = ("dataset", "data_dir", "val_size", "test_size", "image_size", "data_seed",
                 "preprocessing")


def _finished_run_config(values: Any, path: Path | str = CONFIG_FILE) -> RunConfig:
    """The config of a run folder. A ``mlplab torch train`` folder holds the same ``model.npz``
    (its weights as an MLP) but a PyTorch config; its data options are all that evaluating
    with it needs, so the rest is left at the defaults."""
    if not isinstance(values, dict):
        raise ValueError(f"{path} is not a run configuration (a JSON object of options); it "
                         f"holds a {type(values).__name__}.")
    if values.get("framework") == "pytorch":
        values = {k: values[k] for k in _DATA_OPTIONS if k in values}
    try:
        return RunConfig.from_dict(values)
    except (TypeError, ValueError) as exc:  # a hand-edited or damaged file
        raise ValueError(f"{path} is not a valid run configuration: {exc}") from None


def evaluate_run(run: str | os.PathLike, split: str = "val", data: Any = None) -> dict[str, Any]:
    """Accuracy, per-class accuracy and confusion matrix of a run's model on one split of its
    dataset (loaded as the run was configured)."""
    from mlplab import plots
    from mlplab.data.base import SPLITS

    loaded, cfg, metrics = load_run(run)
    ds = data if data is not None else load_run_dataset(cfg, loaded.extra.get("image_shape"))
    X, y = ds.split(split)
    _check_same_split(metrics, split, X, y, ds.name)
    if not len(y):
        others = [s for s in SPLITS if s != split and len(ds.split(s)[1])]
        raise ValueError(f"the {split} split of {ds.name} is empty for this run (e.g. a run "
                         f"trained with val_size 0); evaluate another: "
                         f"{', '.join(f'--split {s}' for s in others)}.")
    pred = loaded.model.predict(loaded.preprocessing.transform(X))
    cm = plots.confusion_matrix(y, pred, loaded.model.num_classes)
    per_class = (np.diag(cm) / np.maximum(cm.sum(axis=1), 1)).tolist()
    return {"split": split, "dataset": ds.name, "size": int(len(y)),
            "accuracy": float(np.mean(pred == y)), "classes": list(ds.classes),
            "per_class_accuracy": per_class, "confusion_matrix": cm.tolist()}


def predict_images(run: str | os.PathLike, paths: Sequence[str | os.PathLike],
                   top: int = 3) -> list[dict[str, Any]]:
    """Top-``top`` classes with probabilities for each image file, with a run's model."""
    from PIL import Image, UnidentifiedImageError

    from mlplab.data.folder import open_image

    loaded = _load_run_model(Path(run))  # the model file holds all predict needs
    model, where = loaded.model, Path(run) / MODEL_FILE
    shape = loaded.extra.get("image_shape")
    classes = loaded.extra.get("classes") or [str(i) for i in range(model.num_classes)]
    if not shape:
        raise ValueError("this model was not trained on images; predict needs an image model.")
    if not (isinstance(shape, list) and len(shape) == 3 and all(is_int(n) and n > 0 for n in shape)
            and int(np.prod(shape)) == model.input_size and shape[2] in (1, 3)):
        raise ValueError(f"{where}: its image_shape {shape!r} does not fit its model of "
                         f"{model.input_size} inputs; the file was edited or damaged - train the "
                         "run again.")
    if not (isinstance(classes, list) and len(classes) == model.num_classes
            and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"{where}: its class names {classes!r:.80} are not {model.num_classes} "
                         "names; the file was edited or damaged - train the run again.")
    H, W, C = shape
    images = []
    for p in paths:
        try:
            with open_image(p) as im:
                im = im.convert("L" if C == 1 else "RGB")
                if im.size != (W, H):
                    im = im.resize((W, H), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except FileNotFoundError:
            raise FileNotFoundError(f"{p}: no such image file.") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{p} is not a readable image ({exc}).") from None
        images.append(arr.reshape(H, W, C))
    probs = loaded.model.predict_proba(loaded.preprocessing.transform(np.stack(images)))
    out = []
    for p, row in zip(paths, probs):
        order = np.argsort(-row, kind="stable")[:max(1, min(top, len(row)))]
        out.append({"image": str(p), "top": [{"class": classes[k], "probability": float(row[k])}
                                             for k in order]})
    return out


def config_summary(cfg: RunConfig) -> str:
    """One line describing a run's configuration, for logs."""
    length = f"{cfg.iters} iterations" if cfg.iters is not None else f"{cfg.epochs} epochs"
    return (f"{cfg.dataset}: hidden {cfg.hidden}, {cfg.optimizer} lr {cfg.lr:g} ({cfg.schedule}"
            f"), reg {cfg.reg:g}, batch {cfg.batch_size}, {length}, seed {cfg.seed}"
            + (f", preset {cfg.preset}" if cfg.preset else ""))

