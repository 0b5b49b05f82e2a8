"""The training loop, shared by ``TwoLayerNet.train``, the CLI, tuning, presets and the report.

One ``Trainer`` runs minibatch gradient descent on an ``mlplab.MLP`` (or a subclass): besides
``_loss_and_grads``, ``params`` and ``predict`` it uses the model's ``input_size``, ``dtype``,
``num_classes``, ``accuracy``, its output layer and ``state_dict``/``load_state_dict``. Everything
else hooks in through callbacks (checkpoints, pruning, progress) instead of copying the loop.

An *epoch* is ``max(N // batch_size, 1)`` iterations, as in the exercise; at the end of each epoch
the trainer records train and validation accuracy, steps the schedule, runs the callbacks and
checks early stopping. Given a seed the run is deterministic, and ``state_dict``/``resume`` make an
interrupted run continue exactly where its last checkpoint was taken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from mlplab import interrupts
from mlplab._progress import training_bar
from mlplab._text import counted, percent
from mlplab._validation import (
    check_choice,
    check_fields,
    check_flag,
    check_int,
    check_pair,
    check_positive,
    check_range,
    check_seed,
    check_X,
    check_y,
    is_bool,
    is_int,
    is_number,
    setting,
)
from mlplab.blas import level1_threads
from mlplab.init import random_state
from mlplab.layers import Dropout
from mlplab.models import ScoresOverflowError
from mlplab.optim import OPTIMIZERS, Optimizer, make_optimizer
from mlplab.schedules import SCHEDULES, Schedule

if TYPE_CHECKING:
    from tqdm import tqdm

    from mlplab.models import MLP

#: how many training rows the "subset" train accuracy is measured on
TRAIN_ACC_SUBSET = 5000


def train_acc_label(mode: str) -> str:
    """A plot legend for the per-epoch train accuracy of ``train_acc=mode``: it is not the
    whole-split figure of the tables beside it ("batch": one minibatch, as the exercise records
    it; "subset": a fixed subset of the training rows)."""
    if mode == "batch":
        return "train (last minibatch)"
    return f"train (up to {TRAIN_ACC_SUBSET:,} training images)"


class SettingsError(ValueError):
    """Training settings that are each valid but cannot work together (a cosine floor above the
    learning rate, batch norm on one-row batches). Tuning fails such a trial and goes on."""


class TrainingDivergedError(RuntimeError):
    """The loss, the weights or an epoch's evaluation (class scores) became NaN or infinite."""


class ResumeDtypeError(ValueError):
    """A resume state whose arrays (optimiser slots, best parameters) are of another dtype than
    the model: the run would go on in other arithmetic than it was trained in."""


class ScheduleChangedError(ValueError):
    """A state resumed with ``same_schedule`` recorded learning rates that this mlplab's schedule
    for the same settings does not give: it was trained under another one."""


@dataclass
class TrainConfig:
    """Every knob of a training run (JSON-serialisable)."""

    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0  # decoupled (AdamW) decay; L2 in the loss is ``reg``
    schedule: str = "exp"
    lr_decay: float = 0.95
    step_epochs: int = 10
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    reg: float = 0.0
    label_smoothing: float = 0.0  # training targets (1 - eps) onehot + eps / K
    batch_size: int = 200
    epochs: int | None = 10
    iters: int | None = None  # if set, overrides epochs
    sampling: str = "shuffle"  # "shuffle" (epochs without replacement) or "replacement"
    train_acc: str = "subset"  # "batch" (the exercise: the last batch) or "subset"
    patience: int | None = None  # early stopping on validation accuracy
    restore_best: bool = True
    seed: int | None = 0
    verbose: bool = False
    progress: bool = False

    def validate(self) -> None:
        check_positive(self.lr, "lr")
        check_positive(self.reg, "reg", allow_zero=True)
        check_int(self.batch_size, "batch_size")
        if self.iters is None:
            if self.epochs is None:
                raise ValueError("epochs must be a positive integer; got None.")
            check_int(self.epochs, "epochs")
        else:
            check_int(self.iters, "iters")
        check_range(self.momentum, "momentum", 0, 1, high_open=True)
        check_range(self.beta1, "beta1", 0, 1, high_open=True)
        check_range(self.beta2, "beta2", 0, 1, high_open=True)
        check_range(self.lr_decay, "lr_decay", 0, 1, low_open=True)
        check_int(self.step_epochs, "step_epochs")
        check_positive(self.min_lr, "min_lr", allow_zero=True)
        check_seed(self.seed)
        check_choice(self.sampling, ("shuffle", "replacement"), "sampling")
        check_choice(self.train_acc, ("batch", "subset"), "train_acc")
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        check_choice(self.schedule, SCHEDULES, "schedule")
        check_positive(self.weight_decay, "weight_decay", allow_zero=True)
        if self.weight_decay and self.optimizer != "adam":
            # silently ignoring it would let a user believe they had regularised the net
            raise SettingsError(f"{setting('--weight-decay', 'weight_decay')} (decoupled, AdamW) "
                                f"applies to the adam optimizer only; use "
                                f"{setting('--reg', 'reg')} for L2 with the other optimizers.")
        if self.patience is not None:
            # "3" or 2.5 passed int(patience) here and failed or rounded at the first epoch's end
            if not (is_int(self.patience) and self.patience >= 1):
                raise ValueError(
                    f"{setting('--patience', 'patience')} must be an integer >= 1; got "
                    f"{self.patience!r} ({setting('--patience 0', 'patience=None')} for no "
                    "early stopping).")
        check_positive(self.warmup_epochs, "warmup_epochs", allow_zero=True)
        if self.schedule == "cosine" and self.min_lr > self.lr:
            # (the command line's flags throughout: "--min-lr (1) must not exceed lr")
            min_lr, lr = setting("--min-lr", "min_lr"), setting("--lr", "lr")
            raise SettingsError(f"{min_lr} ({self.min_lr:g}) must not exceed {lr} ({self.lr:g}): "
                                f"the cosine schedule decays from {lr} to {min_lr}.")
        check_range(self.label_smoothing, "label_smoothing", 0, 1, high_open=True)
        for name in ("restore_best", "verbose", "progress"):
            check_flag(getattr(self, name), name)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        check_fields(cls, d, "training options")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class History:
    """Loss per iteration; train/validation accuracy, learning rate and time per epoch.

    Accuracy is ``acc`` here (``train_acc``, ``val_acc``, ``best_val_acc``), as in a callback's
    ``logs`` and ``history.csv``; a run folder's ``metrics.json`` spells it out
    (``best_val_accuracy`` is ``best_val_acc``). Both stay, so that old run folders read."""

    loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = -1
    stopped_early: bool = False
    interrupted: bool = False

    def __repr__(self) -> str:
        # a summary: the dataclass repr printed every iteration's loss (thousands of numbers for
        # a notebook cell showing a History or a RunResult); the lists are the attributes
        parts = [f"iterations={len(self.loss)}", f"epochs={len(self.train_acc)}"]
        last = (("loss", self.loss), ("train_acc", self.train_acc), ("val_acc", self.val_acc))
        parts += [f"{name}={values[-1]:.4g}" for name, values in last if values]
        if self.best_epoch >= 0:
            parts.append(f"best_val_acc={self.best_val_acc:.4g}, best_epoch={self.best_epoch}")
        parts += [flag for flag in ("stopped_early", "interrupted") if getattr(self, flag)]
        return f"History({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        # the lists copied, not asdict's deep copy, which went through every value: 0.13 s for
        # the 117,000 losses of a long run, at every epoch's checkpoint
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), list) else v
                for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """The history of :meth:`to_dict`; a ``TypeError`` naming the field if one is not of
        its type (a hand-edited checkpoint). The lists are copies: training appends to the
        history, and a state kept in memory (``trainer.state_dict()``) must resume again."""
        copied: dict[str, Any] = {k: list(v) if isinstance(v, list) else v for k, v in d.items()}
        h = cls(**copied)
        for name in ("loss", "train_acc", "val_acc", "lr", "epoch_seconds"):
            values = getattr(h, name)
            if not isinstance(values, list) or not all(is_number(v) for v in values):
                raise TypeError(f"history field {name!r} is not a list of numbers")
        for name, ok, label in (("best_val_acc", is_number, "a number"),
                                ("best_epoch", is_int, "an integer"),
                                ("stopped_early", is_bool, "true or false"),
                                ("interrupted", is_bool, "true or false")):
            if not ok(getattr(h, name)):
                raise TypeError(f"history field {name!r} is not {label}")
        return h


class Callback:
    """Hooks into the loop. Set ``trainer.stop = True`` to end training: from ``on_epoch_end``
    after that epoch, from ``on_iteration_end`` at once, before the next iteration (the partial
    epoch's losses are in the history, but it is not counted or validated as an epoch).

    With momentum the affine layers' gradient buffers are the optimiser's velocities during the
    loop (``Momentum.fused``): read ``trainer.optimizer.state_dict()``, not ``model.grads``, and
    run no backward pass of the model from a hook (``model.loss(X, y)`` is one). With momentum
    and L2 (``reg``) the L2 term is also folded into each affine layer's ``scale`` within an
    epoch: in ``on_iteration_end`` the weights in use are ``layer.scale * model.params["W<i>"]``
    (weight matrices only; biases are not scaled) and the velocity buffers are not the
    velocities; ``model.state_dict()``, ``trainer.optimizer.state_dict()``, ``predict`` and
    ``predict_proba`` give the true ones without changing the run. ``on_epoch_end`` and
    ``on_train_end`` see it settled (scale 1).

    A learning rate set from a hook (``trainer.optimizer.lr = ...``) is not used: the trainer
    sets the schedule's before every step. Pass ``Trainer(lr_schedule=fn)`` for a schedule of
    your own."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once as :meth:`Trainer.fit` starts, before the first step."""

    def on_iteration_end(self, trainer: Trainer, iteration: int, loss: float) -> None:
        """Called after every step: ``iteration`` counts the steps done (from 1), ``loss`` is
        the step's minibatch loss."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        """Called after every epoch's evaluation: ``epoch`` counts the epochs done (from 1);
        ``logs`` holds ``epoch, iteration, loss, train_acc, val_acc, lr, seconds``."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once as :meth:`Trainer.fit` ends (also when stopped early or by Ctrl-C), after
        the best parameters are restored."""


def rows_per_batch(config: TrainConfig, n: int, batchnorm: bool) -> int:
    """The rows of one step of ``config`` on ``n`` training rows (a shuffled epoch's batches
    hold at most ``n``); a :class:`SettingsError` where that leaves ``batchnorm`` one row a
    batch. (Tuning asks it of a search space's settings before any data is trained on.)"""
    batch = min(int(config.batch_size), n) if config.sampling == "shuffle" else \
        int(config.batch_size)
    if batch < 2 and batchnorm:
        # one row is its own batch mean: every normalised activation is 0, nothing is learnt
        raise SettingsError(f"batch norm needs batches of at least 2 rows; got {batch} (batch "
                            "size, or the training set's size). Raise the batch size or "
                            "drop batch norm.")
    return batch


def epoch_iterations(n: int, batch: int, last_batch: bool = False,
                     batchnorm: bool = False) -> int:
    """The iterations of an epoch of ``n`` rows in batches of ``batch``: the exercise's
    ``max(n // batch, 1)`` full batches, or with ``last_batch`` (every row trained on, as
    ``MLPClassifier`` trains) one more for the rows left over, except that with ``batchnorm`` a
    single row left over joins the batch before it (it would be its own mean, every normalised
    activation 0)."""
    steps = max(n // batch, 1)
    left = n % batch
    return steps + 1 if last_batch and left and not (left == 1 and batchnorm) else steps


class Trainer:
    """Minibatch training with optimisers, schedules, early stopping and callbacks.

    ``augment(X_batch, rng)`` may transform each minibatch (it gets the trainer's generator so that
    runs stay deterministic and resumable).

    ``lr_schedule(iteration, epoch) -> lr``, a schedule of your own, replaces the config's
    ``schedule`` (and its ``lr_decay``, ``warmup_epochs``, ...): the trainer sets the optimiser's
    learning rate to its value before every step, ``iteration`` and ``epoch`` counting completed
    ones from 0. A function of these two numbers alone resumes exactly. (A callback that sets
    ``trainer.optimizer.lr`` is overwritten before the next step.)
    """

    def __init__(self, config: TrainConfig | None = None, *,
                 callbacks: Sequence[Callback] = (),
                 augment: Callable[[np.ndarray, np.random.RandomState], np.ndarray] | None = None,
                 lr_schedule: Callable[[int, int], float] | None = None,
                 **overrides: Any) -> None:
        base = config.to_dict() if config is not None else {}
        checked = TrainConfig.from_dict({**base, **overrides})
        checked.validate()
        self._start(checked, callbacks, augment, lr_schedule)

    @classmethod
    def _checked(cls, config: TrainConfig, callbacks: Sequence[Callback] = ()) -> Trainer:
        """A trainer of ``config`` as it is (not copied), which its caller has validated
        (``TrainConfig.validate``) and will not change: ``MLPClassifier`` checks its settings
        before it looks at the data, and validating them again here was part of every
        ``partial_fit`` call."""
        trainer = cls.__new__(cls)
        trainer._start(config, callbacks, None, None)
        return trainer

    def _start(self, config: TrainConfig, callbacks: Sequence[Callback],
               augment: Callable[[np.ndarray, np.random.RandomState], np.ndarray] | None,
               lr_schedule: Callable[[int, int], float] | None) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.augment = augment
        if lr_schedule is not None and not callable(lr_schedule):
            raise TypeError(f"lr_schedule must be a function (iteration, epoch) -> learning "
                            f"rate; got {type(lr_schedule).__name__}.")
        self.lr_schedule = lr_schedule
        self.history = History()
        self.iteration = 0
        self.epoch = 0
        self.stop = False
        self.model: MLP | None = None  # the latest fit's model and optimiser: None before it
        self.optimizer: Optimizer | None = None
        self.rng: np.random.RandomState | None = None
        self._best_state: dict[str, np.ndarray] | None = None
        self._resume: dict[str, Any] | None = None
        self._same_schedule = False
        self._order: np.ndarray | None = None  # this epoch's shuffled row order
        self._batch = 0  # rows per step of the run being fitted (the last one's is smaller)
        # shuffled epochs train the len(X) % batch rows left over as a last, smaller batch
        # (scikit-learn's partial_fit), instead of the exercise's len(X) // batch full ones:
        # MLPClassifier.partial_fit, whose rows are seen in that one call only
        self._last_batch = False
        self._stop = interrupts.StopRequest()  # a Ctrl-C's (see _sigint_stops)
        self._graceful = False  # whether this run's Ctrl-C and SIGTERM stop it gracefully
        self._postfix: dict[str, str] = {}

    @property
    def stop_requested(self) -> bool:
        """Whether a Ctrl-C (or SIGTERM) asked the last ``fit`` to stop. Also True when it came
        during the last step's callbacks, too late to stop anything: the run is then complete
        (``history.interrupted`` False), but a caller that runs fits in a loop (a search)
        should stop too, rather than lose the request."""
        return self._stop.asked

    def __repr__(self) -> str:
        # the settings that are not TrainConfig's defaults, as one would write the call (a
        # notebook cell showing the trainer); the history says how far it has trained
        parts = [f"{f.name}={getattr(self.config, f.name)!r}" for f in fields(TrainConfig)
                 if getattr(self.config, f.name) != f.default]
        if self.callbacks:
            parts.append(f"callbacks=[{', '.join(type(c).__name__ for c in self.callbacks)}]")
        parts += [f"{name}=..." for name in ("augment", "lr_schedule") if getattr(self, name)]
        return f"Trainer({', '.join(parts)})"

    @classmethod
    def exercise(cls, lr: float, lr_decay: float, reg: float, iters: int, batch_size: int,
                 verbose: bool = False, seed: int | None = None, **kw: Any) -> Trainer:
        """The exercise's training: plain SGD, batches sampled with replacement, lr * decay each
        epoch, train accuracy on the last batch. ``seed=None`` samples from ``np.random``."""
        return cls(optimizer="sgd", lr=lr, lr_decay=lr_decay, schedule="exp", reg=reg,
                   iters=iters, epochs=None, batch_size=batch_size, sampling="replacement",
                   train_acc="batch", verbose=verbose, seed=seed, **kw)

    # --------------------------------------------------------------------------- resume support
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly: counters, the rows per step, RNG
        states, optimiser slots, history, the best parameters so far, mid-epoch the epoch's row
        order, and the
        model's ``dtype`` (its name), the arithmetic the run continues in. (Model parameters
        are saved separately.) JSON-able except ``optimizer`` and ``best_state`` (dicts of
        arrays, or None) and ``order`` (an array, or None)."""
        streams = self._streams()  # (raises before fit has started)
        assert self.model is not None
        return {
            "iteration": self.iteration,
            "epoch": self.epoch,
            "batch_size": self._batch,
            **streams,
            "history": self.history.to_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "best_state": _copy_state(self._best_state),
            "order": None if self._order is None else self._order.copy(),
            # a plain-SGD state has no arrays that would tell the dtype (no slots, no best)
            "dtype": np.dtype(self.model.dtype).name,
        }

    def _streams(self) -> dict[str, Any]:
        """The generators' states, as :meth:`state_dict` records them."""
        if self.rng is None or self.model is None:
            raise RuntimeError("state_dict() is only available once fit() has started.")
        rng_state = self.rng.get_state(legacy=True)  # (NumPy's default, which its stubs miss)
        assert isinstance(rng_state, tuple)  # a RandomState is MT19937: the legacy tuple
        return {"rng": _rng_state_to_json(rng_state),
                "dropout_rngs": [d.rng.bit_generator.state for d in self._dropouts()]}

    def _handover(self) -> dict[str, Any]:
        """What a new trainer that goes on from this one's generators and optimiser needs of
        :meth:`state_dict` (``rng``, ``dropout_rngs``, ``optimizer``), with the optimiser's slot
        arrays themselves, not copies (``Optimizer._handover_state``), and none of the history:
        for a caller that resumes from it and never continues this trainer
        (``MLPClassifier.partial_fit``, once per call)."""
        assert self.optimizer is not None  # (_streams raises before fit has started)
        return {**self._streams(), "optimizer": self.optimizer._handover_state()}

    def resume(self, state: dict[str, Any] | None, same_schedule: bool = False) -> None:
        """Continue from ``state`` (from :meth:`state_dict`) on the next :meth:`fit`. With
        ``same_schedule`` (a run continued as configured), :meth:`fit` raises
        :class:`ScheduleChangedError` if the learning rates ``state``'s history recorded are not
        what this trainer's schedule gives at those epochs: the run was trained with other
        learning-rate settings, or by an mlplab before 29 Nov 2026, which dropped an exp or step
        schedule by ``lr_decay ** warmup_epochs`` at the end of a warm-up.

        :meth:`fit` checks the whole state against the model and data before it changes
        anything: a state it refuses (another network's sizes or dtype, another optimiser's
        slots, other data) leaves the trainer, the model (its dropout streams) and NumPy's
        global stream as they were, and stays pending, so that a ``fit`` with the run's own
        model and data resumes it; ``resume(None)`` drops a pending state, so that the next
        ``fit`` starts afresh (as a new ``Trainer`` does). A state must be of the
        model's dtype (:class:`ResumeDtypeError` otherwise): its recorded ``dtype`` and its
        arrays (optimiser slots, best parameters), as a float32 run resumed in a float64 model,
        or the other way round, would not continue as it was trained. (A state of an mlplab
        before 1 Dec 2026 records no ``dtype``: its arrays are checked.)"""
        if state is not None and not isinstance(state, dict):
            # refused here, not as a damaged state at the next fit
            raise TypeError(f"state must be a dict from Trainer.state_dict(), or None to drop "
                            f"a pending one; got {type(state).__name__}.")
        self._resume = state
        self._same_schedule = bool(same_schedule) and state is not None

    def _dropouts(self) -> list[Dropout]:
        return _dropouts_of(self.model)

    # --------------------------------------------------------------------------- the loop
    def fit(self, model: MLP, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> History:
        """Train ``model`` in place on ``X`` (N, D) and labels ``y`` (N,) in ``0..K-1``, as the
        config says, and return the :class:`History` (also ``self.history``).

        ``X_val``, ``y_val`` (both or neither) are evaluated at the end of every epoch; early
        stopping (``patience``) needs them, and with ``restore_best`` the model ends with the
        parameters of its best epoch. Validation arrays with 0 rows (the split of a dataset
        loaded with ``val_size=0``) are taken as none, without a warning: the model trains
        without validation, as if neither were given (``history.val_acc`` is NaN for every
        epoch, and ``patience`` is refused). The arrays are checked first (shape, finite
        values, labels in range; a ``ValueError`` otherwise); settings that cannot work
        together raise :class:`SettingsError`, a loss, weights or evaluation that become NaN or
        infinite :class:`TrainingDivergedError`. A pending :meth:`resume` state continues its
        run. Ctrl-C (or SIGTERM) stops after the current step: the history is then marked
        ``interrupted`` and the model keeps its current parameters."""
        cfg = self.config
        X = check_X(X, model.input_size, dtype=model.dtype)
        if not len(X):
            raise ValueError("cannot train on an empty training set (X has 0 rows).")
        y = check_y(y, X.shape[0], model.num_classes)
        # one without the other was "y_val must be a 1-D array ... got shape ()", or no
        # validation at all, silently
        check_pair(X_val, y_val, ("X_val", "y_val"), "to validate")
        # 0 rows: no validation, on purpose (documented): a val_size=0 dataset's split is that
        if X_val is not None and len(X_val):
            X_val = check_X(X_val, model.input_size, "X_val", model.dtype)
            y_val = check_y(y_val, X_val.shape[0], model.num_classes, "y_val")
        else:
            X_val = y_val = None
        if cfg.patience is not None and X_val is None:
            raise ValueError("early stopping (patience) needs validation data: pass X_val and "
                             "y_val, or set patience=None.")
        return self._fit_checked(model, X, y, X_val, y_val)

    def _fit_checked(self, model: MLP, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None,
                     y_val: np.ndarray | None) -> History:
        """:meth:`fit` on data that have passed its checks: ``X`` (and ``X_val``) 2-D, finite,
        of the model's dtype and width, at least one row; ``y`` (``y_val``) 1-D ``intp`` labels
        in range, one per row; validation data (not empty) or neither, and present where
        ``patience`` is set. For a caller that has made them already (``MLPClassifier``: its
        ``validate_data`` scans every value once; a second scan was part of each
        ``partial_fit`` call)."""
        cfg = self.config
        # the dataset is held once, in the model's dtype, contiguous rows for fast gathering
        X = np.ascontiguousarray(X, dtype=model.dtype)
        n = X.shape[0]
        batchnorm = bool(getattr(model, "batchnorms", None))
        batch = rows_per_batch(cfg, n, batchnorm)
        per_epoch = epoch_iterations(n, batch, self._last_batch and cfg.sampling == "shuffle",
                                     batchnorm)
        # (validate: epochs is set where iters is not)
        total = cfg.iters if cfg.iters is not None else cast(int, cfg.epochs) * per_epoch

        # the smoothed targets are a training objective: evaluation losses stay the plain NLL
        plain_smoothing = model.output.label_smoothing
        model.output.label_smoothing = cfg.label_smoothing
        try:
            with level1_threads():  # see mlplab.blas: the updates' BLAS must not fight NumPy's
                return self._fit(model, X, y, X_val, y_val, n, batch, per_epoch, total)
        finally:
            model.output.label_smoothing = plain_smoothing

    def _fit(self, model: MLP, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None,
             y_val: np.ndarray | None, n: int, batch: int, per_epoch: int,
             total: int) -> History:
        cfg = self.config
        optimizer = make_optimizer(cfg.optimizer, cfg.lr, momentum=cfg.momentum, beta1=cfg.beta1,
                                   beta2=cfg.beta2, weight_decay=cfg.weight_decay)
        warmup = int(round(cfg.warmup_epochs * per_epoch))
        if warmup >= total and self._resume is None and self.lr_schedule is None:
            # legal, but surely not meant (a preset's warm-up with --epochs 1, say); a schedule
            # of the caller's replaces the warm-up, which then does not happen at all
            # a warm-up of exactly the run's length reaches lr at its last step (lr * n / n)
            lr = f"{setting('--lr', 'lr')} {cfg.lr:g}"
            reach = f"never reaches {lr}" if warmup > total else \
                f"reaches {lr} only at the last iteration"
            warnings.warn(f"the warm-up ({counted(warmup, 'iteration')}) lasts the whole run "
                          f"({counted(total, 'iteration')}): the learning rate {reach}, "
                          f"and the {cfg.schedule} schedule never starts; shorten "
                          f"{setting('--warmup-epochs', 'warmup_epochs')} or train longer.",
                          stacklevel=4)  # (_fit, _fit_checked, fit: the caller)
        schedule = Schedule(cfg.lr, cfg.schedule, cfg.lr_decay, cfg.step_epochs, total,
                            cfg.min_lr, warmup, per_epoch)
        resumed = None
        if self._resume is not None:
            # before the counters are checked against this run's length, which another batch
            # size changes too ("the saved trainer state is invalid": it is not, only another's)
            saved_batch = self._resume.get("batch_size")  # (absent before 2 Dec 2026)
            if saved_batch is not None and saved_batch != batch:
                # the iteration counter places the next step by batches: with another size the
                # epoch would go on at another row, skipping or repeating some of its rows
                raise ValueError(f"cannot resume: the run was trained in batches of "
                                 f"{saved_batch} rows, this trainer's are {batch}; resume with "
                                 "the run's own batch_size (and data).")
            try:
                resumed = _read_resume_state(self._resume, model, optimizer, total, per_epoch)
                if self._same_schedule and self.lr_schedule is None:
                    self._check_same_schedule(schedule, per_epoch, resumed.history)
            except (ScheduleChangedError, ResumeDtypeError):
                raise
            except (TypeError, KeyError, ValueError, AttributeError, IndexError) as exc:
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())
                raise ValueError(f"cannot resume: the saved trainer state is invalid ({detail}); "
                                 "it is damaged or another run's - start the run again."
                                 ) from None
            order = resumed.order
            if order is not None and (order.shape != (n,) or
                                      not np.array_equal(np.sort(order), np.arange(n))):
                # np.take(mode="clip") below would silently train on the wrong rows
                raise ValueError(f"cannot resume: the saved row order is not a permutation of "
                                 f"the {n} training rows; resume with the run's own data.")
        # all checked: only now do the trainer, the model and the generators change
        if resumed is None:
            rng = random_state(cfg.seed)  # seed None: NumPy's global stream, as the exercise
        elif cfg.seed is None:  # the global stream goes on from the saved state
            rng = random_state(None)
            rng.set_state(resumed.rng.get_state())
        else:
            rng = resumed.rng
        self.model, self.rng, self.optimizer = model, rng, optimizer
        self._resume, self._batch = None, batch
        if resumed is not None:
            self.iteration, self.epoch, self.history = (resumed.iteration, resumed.epoch,
                                                        resumed.history)
            for layer, stream in zip(_dropouts_of(model), resumed.dropout_rngs):
                layer.rng.bit_generator.state = stream
            self._best_state, self._order = resumed.best_state, resumed.order
        else:  # a second fit() starts over, as scikit-learn's fit does
            self.iteration = self.epoch = 0
            self.history = History()
            self._best_state = self._order = None
        subset = None
        if cfg.train_acc == "subset":
            pick = np.random.RandomState(0).choice(n, min(n, TRAIN_ACC_SUBSET), replace=False)
            # row numbers, not a copy of the rows (that would be 10% of CIFAR-10 held all along)
            subset = np.sort(pick)

        # the largest batch: a last one may hold the row left over besides its own (see above)
        last_batch = self._last_batch and self.config.sampling == "shuffle"
        rows = max(batch, n - (per_epoch - 1) * batch) if last_batch else batch
        x_buf = np.empty((rows, X.shape[1]), dtype=X.dtype)
        # a run resumed from its early stop (killed while saving its results) is finished
        self.stop = self.history.stopped_early
        self.history.interrupted = False
        for cb in self.callbacks:
            cb.on_train_begin(self)
        bar = training_bar(total, cfg.progress, initial=self.iteration)
        epoch_start = time.perf_counter()
        try:
            with self._sigint_stops(), optimizer.fused(model, cfg.reg):
                self._loop(model, X, y, X_val, y_val, subset, x_buf, batch, per_epoch, total,
                           schedule, bar, epoch_start)
        except KeyboardInterrupt:
            if self._graceful:  # a second Ctrl-C or SIGTERM: the user wants out now, unsaved
                raise
            # no handler of ours (not the main thread): stop and let callbacks save what there is
            self.history.interrupted = True
        finally:
            if bar is not None:
                bar.close()
        # an interrupted run keeps its current parameters: it may be resumed from them
        if (self._best_state is not None and cfg.restore_best and cfg.patience is not None
                and not self.history.interrupted):
            model.load_state_dict(self._best_state)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def _loop(self, model: MLP, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None,
              y_val: np.ndarray | None, subset: np.ndarray | None, x_buf: np.ndarray,
              batch: int, per_epoch: int, total: int, schedule: Schedule, bar: tqdm | None,
              epoch_start: float) -> None:
        cfg, n = self.config, X.shape[0]
        rng, optimizer = self.rng, self.optimizer
        assert rng is not None and optimizer is not None  # made by _fit for this run
        while self.iteration < total and not self.stop:
            if self._stop.asked:
                # stop between iterations, so that params, optimiser and RNG agree and a
                # checkpoint written now resumes exactly
                self.history.interrupted = True
                break
            pos = self.iteration % per_epoch
            if cfg.sampling == "replacement":
                idx = rng.choice(n, batch, replace=True)
            else:
                if self._order is None or pos == 0:
                    self._order = rng.permutation(n)
                last = self._last_batch and pos == per_epoch - 1
                idx = self._order[pos * batch:n if last else (pos + 1) * batch]
            # mode="clip" (idx is valid by construction): with the default "raise" NumPy
            # gathers into a hidden temporary first and copies the batch a second time
            xb = np.take(X, idx, axis=0, out=x_buf[: len(idx)], mode="clip")
            yb = y[idx]
            if self.augment is not None:
                xb = self.augment(xb, rng)

            if self.lr_schedule is None:
                optimizer.lr = schedule.lr_at(self.iteration, self.epoch)
            else:
                optimizer.lr = self._custom_lr()
            # a diverging run overflows first; the check below reports it in one clear line
            # instead of NumPy's RuntimeWarnings
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                loss, grads = model._loss_and_grads(xb, yb, cfg.reg)
            if not math.isfinite(loss):
                raise TrainingDivergedError(
                    f"the loss became {loss} at iteration {self.iteration + 1} (epoch "
                    f"{self.epoch + 1}) with learning rate {optimizer.lr:.3g}; try a "
                    f"lower learning rate (e.g. {setting('--lr', 'lr')} divided by 10) or a "
                    "smaller init std.")
            optimizer.step(model.params, grads)
            self.history.loss.append(loss)
            self.iteration += 1
            for cb in self.callbacks:
                cb.on_iteration_end(self, self.iteration, loss)
            if bar is not None:
                self._postfix["loss"] = f"{loss:.3f}"
                bar.set_postfix(self._postfix, refresh=False)
                bar.update(1)

            if self.iteration % per_epoch == 0:
                optimizer.settle()  # before evaluation, checkpoints and callbacks
                optimizer.flush_subnormals(model.params)
                self._check_weights(model, optimizer)
                with self._diverged_on_overflow(model, self.epoch + 1, optimizer.lr):
                    train_acc = (model.accuracy(xb, yb) if subset is None
                                 else _accuracy_on_rows(model, X, y, subset))
                logs = self._end_epoch(train_acc, X_val, y_val, optimizer.lr,
                                       time.perf_counter() - epoch_start)
                # without validation data there is no validation accuracy to show (not "nan")
                val = {} if X_val is None else {"val": percent(logs["val_acc"], 1)}
                if bar is not None:
                    self._postfix.update(train=percent(train_acc, 1), **val)
                    bar.set_postfix(self._postfix, refresh=False)
                if cfg.verbose:
                    val_text = f", val acc {val['val']}" if val else ""
                    print(f"epoch {self.epoch} / iteration {self.iteration}/{total}: loss "
                          f"{loss:.4f}, train acc {percent(train_acc, 1)}{val_text}, lr "
                          f"{logs['lr']:.3g}", flush=True)
                epoch_start = time.perf_counter()
        if self.iteration % per_epoch:  # ended between epochs: its last step is not checked yet
            self._check_weights(model, optimizer)

    def _check_weights(self, model: MLP, optimizer: Optimizer) -> None:
        """Raise :class:`TrainingDivergedError` if the last step made the weights NaN or
        infinite (a step after a finite loss can): the next step's loss would say so, but the
        last step of a run or a call has none, and an epoch's evaluation and checkpoint would
        take them as trained. Likewise for the optimiser's state: Adam's squared gradients
        overflow float32 once a gradient passes 1.8e19 (inputs of 1e30), and its steps are then
        0, so the weights stayed finite and still, and the run ended as if converged. One pass
        over the parameters and one over the state, once per epoch."""
        lr = optimizer.lr
        if not all(np.isfinite(p).all() for p in model.params.values()):
            raise TrainingDivergedError(
                f"the weights became NaN or infinite at iteration {self.iteration} (epoch "
                f"{self.epoch + 1}) with learning rate {lr:.3g}; try a lower learning rate (e.g. "
                f"{setting('--lr', 'lr')} divided by 10) or a smaller init std.")
        if not all(np.isfinite(arr).all() for slots in optimizer.state.values()
                   for arr in slots.values()):
            raise TrainingDivergedError(
                f"the {optimizer.name} optimiser's state overflowed {model.dtype} by iteration "
                f"{self.iteration} (epoch {self.epoch + 1}): the gradients are too large to "
                "train on; standardise the inputs (values far from unit scale, such as 1e30, "
                "make them so).")

    @contextlib.contextmanager
    def _diverged_on_overflow(self, model: MLP, epoch: int, lr: float) -> Iterator[None]:
        """An epoch-end evaluation whose class scores overflow: the last step made the weights
        too large after a finite loss, which is the run diverging (a tuning trial counts it so),
        not a ValueError about the data to standardise."""
        try:
            yield
        except ScoresOverflowError:
            raise TrainingDivergedError(
                f"the network's class scores overflowed {model.dtype} in the evaluation at the "
                f"end of epoch {epoch} with learning rate {lr:.3g}: its weights diverged; try a "
                f"lower learning rate (e.g. {setting('--lr', 'lr')} divided by 10) or a smaller "
                "init std (or standardise the data).") from None

    def _custom_lr(self) -> float:
        assert self.lr_schedule is not None  # called only with a schedule of the caller's
        lr = self.lr_schedule(self.iteration, self.epoch)
        if not is_number(lr) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"lr_schedule({self.iteration}, {self.epoch}) returned {lr!r}; it "
                             "must return a finite number >= 0.")
        return float(lr)

    @contextlib.contextmanager
    def _sigint_stops(self) -> Iterator[None]:
        """While training in the main thread, the first Ctrl-C (or SIGTERM, see
        :mod:`mlplab.interrupts`) asks the loop to stop after the current iteration (callbacks
        then save a consistent checkpoint); a second one raises KeyboardInterrupt as usual. A
        SIGINT the process ignores stays ignored."""
        self._stop = interrupts.StopRequest()
        with interrupts.stop_after_step(self._stop) as self._graceful:
            yield

    def _end_epoch(self, train_acc: float, X_val: np.ndarray | None,
                   y_val: np.ndarray | None, lr: float,
                   seconds: float) -> dict[str, float]:
        cfg, h, model = self.config, self.history, self.model
        assert model is not None  # set by fit
        # (fit() keeps validation data as a pair, or neither); before the epoch is counted: one
        # that diverges here is not finished, as the history says
        with self._diverged_on_overflow(model, self.epoch + 1, lr):
            val_acc = model.accuracy(X_val, y_val) if X_val is not None and y_val is not None \
                else float("nan")
        self.epoch += 1
        h.train_acc.append(train_acc)
        h.val_acc.append(val_acc)
        h.lr.append(lr)
        h.epoch_seconds.append(seconds)
        if X_val is not None and val_acc > h.best_val_acc:
            h.best_val_acc, h.best_epoch = val_acc, self.epoch
            if cfg.patience is not None:
                self._best_state = model.state_dict()
        if cfg.patience is not None and self.epoch - h.best_epoch >= cfg.patience:
            h.stopped_early = True
            self.stop = True
        logs = {"epoch": self.epoch, "iteration": self.iteration, "loss": h.loss[-1],
                "train_acc": train_acc, "val_acc": val_acc, "lr": lr, "seconds": seconds}
        for cb in self.callbacks:
            cb.on_epoch_end(self, self.epoch, logs)
        return logs

    def _check_same_schedule(self, schedule: Schedule, per_epoch: int, history: History) -> None:
        """Raise :class:`ScheduleChangedError` at the first epoch of the resumed ``history``
        whose learning rate (its last iteration's) is not ``schedule``'s there. A run resumes
        here with learning-rate settings it was not trained with when its caller did not check
        them (``mlplab.runs`` compares a checkpoint's record of them first; one of an mlplab
        before 2 Dec 2026 has none), or when an mlplab before 29 Nov 2026 trained it: that one
        dropped an exp or step schedule by ``lr_decay ** warmup_epochs`` when a warm-up ended,
        which the message names only where the rates are that schedule's (also those of a run
        trained without the warm-up: it names both)."""
        cfg = self.config
        older = dataclasses.replace(schedule, warmup_iters=0) \
            if schedule.warmup_iters and schedule.kind in ("exp", "step") else None
        for j, recorded in enumerate(history.lr):
            expected = schedule.lr_at((j + 1) * per_epoch - 1, j)
            if math.isclose(recorded, expected, rel_tol=1e-6, abs_tol=1e-300):
                continue
            head = (f"cannot resume: the run's learning rate at the end of epoch {j + 1} was "
                    f"{recorded:.6g}, but the {cfg.schedule} schedule with these settings gives "
                    f"{expected:.6g} there")
            if older is not None and math.isclose(recorded, older.lr_at((j + 1) * per_epoch - 1,
                                                                         j), rel_tol=1e-6):
                # the older schedule's rates after a warm-up are also a run's without one
                raise ScheduleChangedError(
                    f"{head}: the run was trained under the older warm-up schedule (an mlplab "
                    "from before 29 November 2026 dropped an exp or step schedule by "
                    "lr_decay^warmup_epochs at the end of a warm-up; it now starts from lr), or "
                    "without this warm-up. Resuming would go on with other learning rates: "
                    "resume with the settings it was trained with, start a new run, or finish "
                    "this one with the mlplab that started it.")
            raise ScheduleChangedError(
                f"{head}: the run was trained with other learning-rate settings (lr, schedule, "
                "lr_decay, step_epochs, warmup_epochs, min_lr, or for cosine the run's length) "
                "than these. Resuming would go on with other learning rates: resume with the "
                "settings it was trained with, or start a new run with these.")


@dataclass
class _Resumed:
    """A resume state read and checked against the model and the run's length, not yet applied
    (``Trainer.fit`` applies it once everything has passed)."""

    iteration: int
    epoch: int
    history: History
    rng: np.random.RandomState  # a new generator in the saved state
    dropout_rngs: list[dict[str, Any]]
    best_state: dict[str, np.ndarray] | None
    order: np.ndarray | None


def _dropouts_of(model: object) -> list[Dropout]:
    return [layer for layer in getattr(model, "layers", []) if isinstance(layer, Dropout)]


def _read_resume_state(state: dict[str, Any], model: MLP, optimizer: Optimizer, total: int,
                       per_epoch: int) -> _Resumed:
    """``state`` checked against ``model`` and a run of ``total`` iterations, ``per_epoch`` per
    epoch, changing nothing but ``optimizer`` (a new one, loaded with the state's slots): the
    generators' states are checked on new generators, so that a refused state leaves the model's
    dropout streams, and NumPy's global stream (seed None), as they were."""
    iteration, epoch = int(state["iteration"]), int(state["epoch"])
    h = History.from_dict(state["history"])
    # the counters and the history grow together, an epoch every per_epoch iterations:
    # anything else is a hand-edited or foreign state, which would train the wrong length
    if not 0 <= iteration <= total or epoch != iteration // per_epoch:
        raise ValueError(f"iteration {iteration} and epoch {epoch} do not fit a run of "
                         f"{total} iterations, {per_epoch} per epoch")
    if len(h.loss) != iteration or not (len(h.train_acc) == len(h.val_acc) == len(h.lr) == epoch):
        raise ValueError(f"the history has {len(h.loss)} losses and {len(h.val_acc)} epochs, the "
                         f"counters {iteration} and {epoch}")
    # becomes the trainer's generator (unless the run draws from NumPy's global stream): one new
    # RandomState per resume, not two, as each costs 0.15 ms, 8% of a partial_fit call on digits
    rng = np.random.RandomState()
    rng.set_state(_rng_state_from_json(state["rng"]))
    dropouts = _dropouts_of(model)
    streams = state.get("dropout_rngs", [])  # (absent from a state of an early mlplab)
    if "dropout_rngs" in state and len(streams) != len(dropouts):
        raise ValueError(f"the state has {len(streams)} dropout generators, the model "
                         f"{len(dropouts)} dropout layers")
    for layer, stream in zip(dropouts, streams):
        type(layer.rng.bit_generator)().state = stream
    optimizer.load_state_dict(state.get("optimizer") or {})
    params = model.params
    missing = optimizer.missing_slots(params) if iteration else []
    if missing:
        raise ValueError(f"the optimizer state lacks {', '.join(missing[:4])}"
                         f"{', ...' if len(missing) > 4 else ''}")
    slots = {f"optimizer {name}/{slot}": (arr, params.get(name))
             for name, kept in optimizer.state.items() for slot, arr in kept.items()}
    best = _copy_state(state.get("best_state"))
    if best is not None:
        targets = model.state_arrays()
        if set(best) != set(targets):
            raise ValueError(f"the best parameters are {', '.join(sorted(best))}; the model has "
                             f"{', '.join(sorted(targets))}")
        slots.update({f"best {name}": (arr, targets[name]) for name, arr in best.items()})
    checked = []  # every name and shape first: another network's state is not a dtype issue
    for what, (arr, target) in slots.items():
        if target is None:
            raise ValueError(f"{what}: the model has no such parameter")
        if arr.shape != target.shape:
            raise ValueError(f"{what} has shape {arr.shape}; the model's has {target.shape}")
        checked.append((what, arr, target))
    recorded = state.get("dtype")  # (absent from a state of an mlplab before 1 Dec 2026)
    if recorded is not None:
        if not isinstance(recorded, str) or np.dtype(recorded).kind != "f":
            raise ValueError(f"dtype {recorded!r} is not the name of a float dtype")
        if np.dtype(recorded) != model.dtype:
            raise _dtype_error(np.dtype(recorded), f"is a {recorded} run's", model.dtype)
    for what, arr, target in checked:
        if arr.dtype != target.dtype:
            raise _dtype_error(arr.dtype, f"holds {arr.dtype} arrays ({what})", target.dtype)
    order = state.get("order")
    return _Resumed(iteration, epoch, h, rng, list(streams), best,
                    None if order is None else np.asarray(order, dtype=np.intp))


def _dtype_error(saved: np.dtype, what: str, model: np.dtype) -> ResumeDtypeError:
    """The refusal of a state that ``what`` (its recorded dtype, or arrays) says is ``saved``'s
    for a ``model``-dtype model."""
    return ResumeDtypeError(
        f"cannot resume: the saved trainer state {what}, but the model is {model}, and a run "
        f"continues as it was trained only in its own dtype: resume it with a {saved} model "
        f"(dtype={saved.name!r}), or train the {model} model anew (model.load_state_dict takes "
        "the weights).")


def _copy_state(state: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """A copy of a parameter snapshot: callers may edit what they are handed, or hand in, without
    changing what early stopping restores."""
    return None if state is None else {k: np.array(v, copy=True) for k, v in state.items()}


def _accuracy_on_rows(model: MLP, X: np.ndarray, y: np.ndarray, rows: np.ndarray,
                      block: int = 1024) -> float:
    """Accuracy on ``X[rows]``, gathering a block of rows at a time."""
    correct = 0
    for i in range(0, len(rows), block):
        idx = rows[i:i + block]
        correct += int(np.count_nonzero(model.predict(X[idx]) == y[idx]))
    return correct / len(rows)


def _rng_state_to_json(state: tuple[str, np.ndarray, int, int, float]) -> list:
    kind, keys, pos, has_gauss, cached = state
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _rng_state_from_json(state: list) -> tuple:
    kind, keys, pos, has_gauss, cached = state
    return (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)

