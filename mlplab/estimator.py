"""A scikit-learn compatible classifier over mlplab's engine (``MLP`` + ``Trainer``)::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from mlplab.estimator import MLPClassifier

    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_sizes=(100,), random_state=0))
    clf.fit(X_train, y_train).score(X_test, y_test)

It follows scikit-learn's conventions: hyperparameters are stored untouched by ``__init__`` and
validated in ``fit``; fitted state ends with ``_`` (``classes_``, ``n_features_in_``, ``model_``,
``loss_curve_``, ``loss_``, ``best_loss_``, ``n_iter_``, ``t_``); labels may be any values (strings
included); ``random_state`` makes a fit reproducible. Like
``sklearn.neural_network.MLPClassifier`` it trains for up to ``max_epochs`` epochs and stops
earlier once the mean training loss of an epoch has not improved by ``tol`` for more than
``n_iter_no_change`` epochs, or, with ``early_stopping=True``, once the accuracy on a held-out
``validation_fraction`` stops improving (the best parameters are then restored).
``partial_fit`` trains one epoch per call on the data it is given, carrying the optimiser's state
from call to call, for data that arrive in chunks.

Arithmetic follows the input: float32 input trains in float32, anything else in float64
(scikit-learn's own estimators preserve float32 the same way).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import pickle
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted

from mlplab._text import agree
from mlplab._validation import (
    WIDER_MODEL,
    check_choice,
    check_flag,
    check_int,
    check_positive,
    check_range,
    check_X,
    is_int,
)
from mlplab.init import INITS
from mlplab.layers import Dropout
from mlplab.models import ACTIVATIONS, MLP, ScoresOverflowError
from mlplab.trainer import Callback, History, TrainConfig, Trainer, epoch_iterations

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator: BaseEstimator, *args: Any, **kwargs: Any
                       ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        return estimator._validate_data(*args, **kwargs)


class _Convergence(Callback):
    """scikit-learn's stopping rule on the training loss: stop when an epoch's mean loss has not
    improved on the best by ``tol`` for more than ``patience`` consecutive epochs. An epoch of
    ``rows`` rows whose last batch is smaller than ``batch`` (``partial_fit``) weights each
    batch's mean loss by its rows, so that the epoch's is the mean over its rows. Patience 0
    (or tol None) never stops: the epochs are only counted, as partial_fit's are."""

    def __init__(self, tol: float | None, patience: int, rows: int = 0, batch: int = 0) -> None:
        self.tol, self.patience = tol, patience
        self.rows, self.batch = rows, batch
        self.best, self.bad, self.start = np.inf, 0, 0
        self.epoch_loss: list[float] = []

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        losses = trainer.history.loss[self.start:]
        self.start = len(trainer.history.loss)
        if self.rows and len(losses) * self.batch != self.rows:
            sizes = np.full(len(losses), self.batch)
            sizes[-1] = self.rows - (len(losses) - 1) * self.batch
            mean = float(np.dot(losses, sizes) / self.rows)
        else:
            mean = float(np.mean(losses))
        self.epoch_loss.append(mean)
        # counted as scikit-learn does, no improvement unless it beats the best by tol; also
        # with tol None (no loss-based stop), so that best_loss_ is kept
        self.bad = self.bad + 1 if mean > self.best - (self.tol or 0.0) else 0
        self.best = min(self.best, mean)
        # scikit-learn stops when the count *exceeds* n_iter_no_change: its epochs, not one fewer
        if self.tol is not None and self.patience and self.bad > self.patience:
            trainer.stop = True


def _rows_seen(trainer: Trainer, model: MLP, rows: int, batch: int) -> int:
    """The samples ``trainer``'s steps took (scikit-learn's ``t_``), an epoch training every
    one of ``rows``: each batch full but the last, which ends the epoch with the rows left over
    (a single row left over joins the batch before it with batch norm, as the trainer does);
    the steps of an epoch cut short (Ctrl-C) are full batches."""
    steps = epoch_iterations(rows, batch, last_batch=True, batchnorm=bool(model.batchnorms))
    return trainer.epoch * rows + (trainer.iteration - trainer.epoch * steps) * batch


#: how a network of a wider dtype is had here (the estimator has no dtype parameter: its
#: network's follows the data of a new fit), in place of the model's WIDER_MODEL
_WIDER_NETWORK = "train a new float64 network: fit on float64 data with warm_start=False"


@contextlib.contextmanager
def _unchanged_on_error(model: MLP | None) -> Iterator[None]:
    """A fitted network that a warm start or ``partial_fit`` continues (``model``; None: a new
    one) is trained in place: if the training raises (diverged, or a second Ctrl-C), it is put
    back as it was, so that it still goes with the estimator's counts and optimiser state."""
    if model is None:
        yield
        return
    # one copy of the weights per call, as training in place cannot be undone otherwise: 6 us
    # of a 2 ms partial_fit on digits (hidden 100), 0.5 ms for a million weights
    weights = model.state_dict()
    dropouts = [layer.rng.bit_generator for layer in model.layers if isinstance(layer, Dropout)]
    streams = [bits.state for bits in dropouts]
    try:
        yield
    except BaseException:
        model.load_state_dict(weights)
        for bits, state in zip(dropouts, streams):
            bits.state = state
        raise


def _labels(values: np.ndarray, limit: int = 10) -> str:
    """Labels as written (0, 'cat': ``tolist``, not NumPy 2's ``np.int64(0)``), the first
    ``limit`` of them, for a message of one line."""
    listed = values.tolist()
    if len(listed) <= limit:
        return str(listed)
    return f"{str(listed[:limit])[:-1]}, ...] ({len(listed)} in all)"


def _raise_if_interrupted(history: History) -> None:
    """Ctrl-C (a notebook's interrupt) stops the trainer gracefully and it returns; a ``fit``
    that then returned as usual would hand a half-trained network on as fitted, and a grid
    search or cross-validation around it would go on to its next fit. The estimator keeps what
    was trained (``n_iter_``, ``loss_curve_``: a warm start or ``partial_fit`` continues it) and
    passes the interrupt on."""
    if history.interrupted:
        raise KeyboardInterrupt


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A fully-connected network with hand-written backpropagation, trained by mlplab's Trainer.

    Parameters
    ----------
    hidden_sizes : int or sequence of int, default (100,)
        Hidden layer widths; an int is one hidden layer, ``()`` gives softmax regression.
    activation : {"relu", "leaky_relu", "prelu", "tanh", "sigmoid"}, default "relu"
        Or a name given to :func:`mlplab.models.register_activation`.
    init : {"he", "xavier", "normal"}, default "he"; ``std`` is the deviation of ``normal``.
    dropout : float in [0, 1), default 0; batchnorm : bool, default False
    optimizer : {"sgd", "momentum", "nesterov", "adam"}, default "adam"
    lr : float, default 1e-3; momentum : float, default 0.9
    schedule : {"constant", "exp", "step", "cosine"}, default "constant"; lr_decay : per epoch.
    reg : float, default 1e-4
        L2 strength as in the exercise: ``loss + reg * sum ||W||^2``.
    batch_size : int, default 200 (capped at the number of samples)
    max_epochs : int, default 200
    tol : float or None, default 1e-4; n_iter_no_change : int, default 10
        Stop when the mean epoch loss has not improved by ``tol`` for more than
        ``n_iter_no_change`` epochs (scikit-learn's count);
        ``tol=None`` trains all ``max_epochs`` (unless ``early_stopping``).
    early_stopping : bool, default False
        Hold out ``validation_fraction`` (stratified) and stop on its accuracy instead, restoring
        the best parameters.
    random_state : int, RandomState or None
        Seeds weights, minibatch order and dropout.
    verbose : bool or int >= 0, default False
        Print each epoch's loss. An int is scikit-learn's level: any level above 0 prints.
    warm_start : bool, default False
        As in scikit-learn: a further ``fit`` continues from the fitted network's weights
        instead of new ones (the optimiser starts afresh, as scikit-learn's does), and
        ``loss_curve_``, ``n_iter_`` and ``t_`` go on counting (scikit-learn 1.3 and later count
        ``n_iter_`` afresh in each call; here it is always ``len(loss_curve_)``). The classes,
        the number of features, ``hidden_sizes``, ``activation``, ``dropout`` and ``batchnorm``
        must be those of the fitted network (``init`` and ``std`` draw first weights only and
        are not used).

    A ``fit`` or ``partial_fit`` that is refused, or whose training diverges, leaves the
    estimator as it was (scikit-learn's convention: the data are checked before any fitted
    attribute changes, and a continued network is put back).

    Ctrl-C (a notebook's interrupt) during ``fit`` or ``partial_fit`` stops after the current
    minibatch and raises ``KeyboardInterrupt``, so that a grid search around the estimator stops
    too; the estimator keeps the epochs trained so far (``n_iter_``, ``loss_curve_``), which a
    warm start or ``partial_fit`` continues. (scikit-learn's own MLPClassifier warns and returns.)
    """

    # the fitted state, set by fit and partial_fit (declared only: unset before the first fit,
    # which is how scikit-learn tells a fitted estimator)
    classes_: np.ndarray
    n_features_in_: int
    feature_names_in_: np.ndarray  # only for data with column names (a DataFrame)
    model_: MLP
    history_: History
    loss_curve_: list[float]
    n_iter_: int
    t_: int
    validation_scores_: list[float] | None  # None without early stopping
    best_validation_score_: float | None
    _continue: dict[str, Any]  # what the next partial_fit continues from

    def __init__(self, hidden_sizes: int | Sequence[int] = (100,), activation: str = "relu",
                 init: str = "he", std: float = 1e-4, dropout: float = 0.0,
                 batchnorm: bool = False, optimizer: str = "adam", lr: float = 1e-3,
                 momentum: float = 0.9, schedule: str = "constant", lr_decay: float = 1.0,
                 reg: float = 1e-4, batch_size: int = 200, max_epochs: int = 200,
                 tol: float | None = 1e-4, n_iter_no_change: int = 10, early_stopping: bool = False,
                 validation_fraction: float = 0.1, random_state: Any = None,
                 verbose: bool = False, warm_start: bool = False) -> None:
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.init = init
        self.std = std
        self.dropout = dropout
        self.batchnorm = batchnorm
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.schedule = schedule
        self.lr_decay = lr_decay
        self.reg = reg
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    def _check_params(self) -> tuple[list[int], TrainConfig]:
        """The hidden widths and the training settings (the whole ``batch_size``, ``max_epochs``
        epochs, no seed), every parameter checked."""
        sizes = self.hidden_sizes
        # True or 2.5 is reported as a width, not as "'bool' object is not iterable"
        given = list(sizes) if isinstance(sizes, Iterable) else [sizes]
        hidden = [int(h) for h in given if is_int(h) and h >= 1]
        if len(hidden) != len(given):
            raise ValueError(f"hidden_sizes must be positive integers; got {self.hidden_sizes!r}.")
        # switches read by their truth: "no" or "False" meant yes
        for name in ("batchnorm", "early_stopping", "warm_start"):
            check_flag(getattr(self, name), name)
        # a level, as scikit-learn's verbose is (verbose=2 is common there): TrainConfig's flag
        # refused it, so it is read as on or off here
        verbose = self.verbose
        if not (isinstance(verbose, bool | np.bool_) or (is_int(verbose) and verbose >= 0)):
            raise ValueError(f"verbose must be True, False or an integer >= 0; got {verbose!r}.")
        # checked here too, not only by MLP: a warm start builds no new network
        check_choice(self.activation, ACTIVATIONS, "activation")
        check_int(self.batch_size, "batch_size")  # 2.5 is not silently trained as 2
        check_int(self.max_epochs, "max_epochs")
        if self.early_stopping:
            check_range(self.validation_fraction, "validation_fraction", 0, 1, low_open=True,
                        high_open=True)
        if self.tol is not None:
            check_positive(self.tol, "tol", allow_zero=True)
        check_int(self.n_iter_no_change, "n_iter_no_change")
        # the network's and the training's options too, before fit or partial_fit changes
        # anything: refused later, they left a refit estimator holding a new, untrained network
        # that predicted without a word
        check_choice(self.init, INITS, "init")
        check_positive(self.std, "std")
        check_range(self.dropout, "dropout", 0, 1, high_open=True)
        config = TrainConfig.from_dict(self._train_options(int(self.batch_size),
                                                           int(self.max_epochs), None))
        config.validate()
        return hidden, config

    def _train_options(self, batch_size: int, epochs: int, seed: int | None,
                       **options: Any) -> dict[str, Any]:
        """This estimator's training options, as ``Trainer`` takes them."""
        return {"optimizer": self.optimizer, "lr": self.lr, "momentum": self.momentum,
                "schedule": self.schedule, "lr_decay": self.lr_decay, "reg": self.reg,
                "batch_size": batch_size, "epochs": epochs, "train_acc": "subset",
                "seed": seed, "verbose": bool(self.verbose), **options}

    def __getstate__(self) -> dict[str, Any]:
        """Pickling: the state, with the layer or optimiser class of a registered (not
        built-in) ``activation`` or ``optimizer`` name, which :meth:`__setstate__` registers
        where it is missing. Registrations live in the process that makes them: the worker
        processes of ``cross_val_score(..., n_jobs=2)`` unpickled a string the name of nothing
        there ("unknown activation 'elu'"), and no registration of the user's could reach them
        (joblib ships classes defined in a script by value, and imports the others' modules)."""
        from mlplab.models import BUILT_IN_ACTIVATIONS, is_sized
        from mlplab.optim import BUILT_IN_OPTIMIZERS, OPTIMIZERS

        state = super().__getstate__()
        registered: dict[str, Any] = {}
        act, opt = getattr(self, "activation", None), getattr(self, "optimizer", None)
        if isinstance(act, str) and act in ACTIVATIONS and \
                ACTIVATIONS[act] is not BUILT_IN_ACTIVATIONS.get(act):
            registered["activation"] = (act, ACTIVATIONS[act], is_sized(act))
        if isinstance(opt, str) and opt in OPTIMIZERS and \
                OPTIMIZERS[opt] is not BUILT_IN_OPTIMIZERS.get(opt):
            registered["optimizer"] = OPTIMIZERS[opt]
        for key, entry in list(registered.items()):
            try:  # a lambda or a class made in a function is not picklable: not carried, so
                pickle.dumps(entry)  # that the estimator itself still pickles, as before
            except Exception:
                del registered[key]
        if registered:
            state = {**state, "_registered": registered}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling, also of an estimator pickled by an older mlplab: a parameter or fitted
        attribute added since takes the value that behaves as that mlplab did (``warm_start``,
        29 Nov 2026: False; the validation scores: None, or read from the history of a fit with
        early stopping). Without them ``repr``, ``get_params``, ``clone`` and ``fit`` raised
        ``AttributeError`` on such an estimator. A registered activation or optimiser that this
        process lacks is registered (:meth:`__getstate__`); one it has is left as it is."""
        state = dict(state)
        registered = state.pop("_registered", None) or {}
        # a name this process has not registered, or has only as mlplab's own (the sender's
        # replaced a built-in name: its class, not the built-in, trained the network)
        if "activation" in registered:
            from mlplab.models import BUILT_IN_ACTIVATIONS, register_activation

            name, layer, sized = registered["activation"]
            if ACTIVATIONS.get(name) is BUILT_IN_ACTIVATIONS.get(name):
                register_activation(name, layer, sized=sized, replace=True)
        if "optimizer" in registered:
            from mlplab.optim import BUILT_IN_OPTIMIZERS, OPTIMIZERS, register_optimizer

            cls = registered["optimizer"]
            if OPTIMIZERS.get(cls.name) is BUILT_IN_OPTIMIZERS.get(cls.name):
                register_optimizer(cls, replace=True)
        state.setdefault("warm_start", False)
        history = state.get("history_")
        if history is not None:
            early = bool(state.get("early_stopping"))
            state.setdefault("validation_scores_", list(history.val_acc) if early else None)
            state.setdefault("best_validation_score_", history.best_val_acc if early else None)
        super().__setstate__(state)

    def fit(self, X: ArrayLike, y: ArrayLike) -> MLPClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y``; returns ``self``."""
        hidden, config = self._check_params()
        warm = bool(self.warm_start) and hasattr(self, "model_")
        # warm: the fitted network's number of features is checked; a new network's is recorded
        # on a copy, which the estimator takes it from once the network is trained
        record = self if warm else copy.copy(self)
        Xa, ya = _validate_data(record, X, y, dtype=[np.float64, np.float32], reset=not warm)
        check_classification_targets(ya)
        encoder = LabelEncoder()
        y_enc = encoder.fit_transform(ya)
        # classes_ as scikit-learn's MLPClassifier (and partial_fit) has them: unique_labels',
        # in LabelEncoder's order, so object labels of str come back as str, not object
        encoder.classes_ = unique_labels(ya)
        if len(encoder.classes_) < 2:
            # tolist(): the label as written (0, 'cat'), not NumPy 2's np.int64(0)
            raise ValueError(f"MLPClassifier needs samples of at least 2 classes in y; got 1 "
                             f"class ({encoder.classes_.tolist()[0]!r}).")
        if warm:
            self._check_same_network(encoder.classes_, hidden, "warm_start")
            Xa = self._in_network_dtype(Xa)  # the network's arithmetic goes on
        seed = self._draw_seed()
        X_val = y_val = None
        if self.early_stopping:
            from sklearn.model_selection import train_test_split

            # stratified only where both parts can hold every class: otherwise scikit-learn
            # refuses, with a message about a test_size the user never set
            # a float: train_test_split refuses NumPy's float32 (as "test_size", a name the user
            # never set)
            fraction = float(self.validation_fraction)
            n_val = int(np.ceil(fraction * len(y_enc)))
            if n_val >= len(y_enc):  # (scikit-learn's message names its own test_size)
                raise ValueError(
                    f"early_stopping: validation_fraction={fraction:g} of {len(y_enc)} samples "
                    f"sets {n_val} aside for validation, which leaves none to train on; lower "
                    "validation_fraction or give more samples.")
            stratify = (np.bincount(y_enc).min() >= 2
                        and min(n_val, len(y_enc) - n_val) >= len(encoder.classes_))
            Xa, X_val, y_enc, y_val = train_test_split(
                Xa, y_enc, test_size=fraction, random_state=seed,
                stratify=y_enc if stratify else None)
            left_out = encoder.classes_[np.bincount(y_enc, minlength=len(encoder.classes_)) == 0]
            if len(left_out):  # (the network would then never see them, and say nothing)
                # (enough samples in all, but a class of one: it, not their number, is why)
                n = len(y_enc) + len(y_val)
                lone = encoder.classes_[np.bincount(np.concatenate([y_enc, y_val])) == 1]
                why = (f"{agree(len(lone), 'class', 'classes')} {', '.join(map(str, lone))} "
                       f"{agree(len(lone), 'has', 'have')} a single sample, too few"
                       if min(n_val, n - n_val) >= len(encoder.classes_) else
                       f"{n} samples are too few")
                warnings.warn(
                    f"early_stopping: {why} for a "
                    f"stratified validation split of validation_fraction={fraction:g}, and "
                    f"the random one left no sample of {agree(len(left_out), 'class', 'classes')} "
                    f"{', '.join(map(str, left_out))} to train on; give more samples, or set "
                    "early_stopping=False.", UserWarning, stacklevel=3)
        model = self.model_ if warm else self._network(Xa.shape[1], hidden, seed, Xa.dtype,
                                                          len(encoder.classes_))
        batch_size = min(int(self.batch_size), len(Xa))
        # each epoch's loss the mean over its rows, its last batch holding fewer (see below)
        convergence = _Convergence(self.tol, 0 if self.early_stopping else self.n_iter_no_change,
                                   len(Xa), batch_size)
        if warm and not self.early_stopping:
            # scikit-learn's warm start goes on from its best loss and no-improvement count: a
            # fit after one that had stopped on the rule stops after its first epoch
            self._carry_into(convergence)
        # the settings _check_params validated: a smaller batch (at least 1 row), a seed and
        # patience (n_iter_no_change, checked there) keep them valid
        trainer = Trainer._checked(dataclasses.replace(
            config, batch_size=batch_size, epochs=self.max_epochs, seed=seed,
            # (the trainer stops after `patience` epochs without a better score; scikit-learn
            # after more than n_iter_no_change)
            patience=self.n_iter_no_change + 1 if self.early_stopping else None), [convergence])
        # every row every epoch, as scikit-learn's fit (and partial_fit) trains: the exercise's
        # len(X) // batch_size full batches gave 270 rows in batches of 200 one step an epoch,
        # and early stopping's 10 epochs of patience 11 steps, ending near the initial weights
        trainer._last_batch = True
        # a new network becomes the estimator's once trained: a run that fails (diverged, or
        # refused by the trainer) leaves the fitted one, or none, as it was
        with _unchanged_on_error(model if warm else None):
            # validate_data has checked the data as Trainer.fit would (finite, 2-D, the
            # network's width and dtype); its second scan of every value is skipped
            history = trainer._fit_checked(model, Xa, y_enc.astype(np.intp, copy=False),
                                           X_val, None if y_val is None
                                           else y_val.astype(np.intp, copy=False))
        self.classes_, self.history_ = encoder.classes_, history
        if not warm:
            self._new_network(model, record)
        self._record(trainer, convergence, _rows_seen(trainer, model, len(Xa), batch_size))
        self._carry_from(convergence, keep=not self.early_stopping)
        if self.early_stopping:
            self.validation_scores_ = list(history.val_acc)
            self.best_validation_score_ = history.best_val_acc
        else:  # as scikit-learn: no stale scores from an earlier fit with early stopping
            self.validation_scores_ = self.best_validation_score_ = None
        _raise_if_interrupted(history)
        if trainer.epoch >= self.max_epochs and not trainer.stop and \
                (self.tol is not None or self.early_stopping):
            # as scikit-learn's: a fit that ran out of epochs before its stopping rule was met
            # said nothing, and a GridSearchCV then compared half-trained networks unawares
            # (tol=None ends only the loss's rule: early stopping's warns whatever tol is)
            warnings.warn(
                f"MLPClassifier: max_epochs ({self.max_epochs}) reached before the "
                + ("validation accuracy stopped improving; raise max_epochs (or lr) to train "
                   "until it does" if self.early_stopping else
                   f"training loss stopped improving by tol ({self.tol:g}); raise max_epochs "
                   "(or lr) to train to convergence, or set tol=None to run max_epochs epochs "
                   "without this warning") + ".", ConvergenceWarning, stacklevel=2)
        curve = convergence.epoch_loss
        if len(curve) >= 2 and curve[-1] > 10 * curve[0]:
            # a loss that blows up to a finite 1e91 is no NaN, which is caught as divergence:
            # its rises also met the no-improvement rule, which ended it as if converged
            warnings.warn(
                f"MLPClassifier: the training loss rose from {curve[0]:.3g} to {curve[-1]:.3g} "
                f"over {len(curve)} epochs: the training diverged, and the network fits "
                f"nothing; lower lr ({self.lr:g}).", ConvergenceWarning, stacklevel=2)
        return self

    def partial_fit(self, X: ArrayLike, y: ArrayLike,
                    classes: ArrayLike | None = None) -> MLPClassifier:
        """One epoch over ``X`` and ``y`` (shuffled minibatches), continuing the network, the
        optimiser's state (velocities, Adam's moments) and the random streams; returns ``self``.

        As scikit-learn's: ``classes``, every label that will ever be seen, is needed on the
        first call (later calls may hold any subset of them); a ``fit`` before it is continued
        too. Each call is one epoch for ``n_iter_``, ``loss_curve_`` and the schedule
        (``exp``: ``lr * lr_decay ** n_iter_``; ``step`` and ``cosine`` need a run length and are
        refused). ``early_stopping=True`` is refused too, as scikit-learn's refuses it: a call
        holds nothing out and never stops, so the setting could only be ignored. Every row
        given is trained on once, as in scikit-learn's ``partial_fit``: minibatches of
        ``batch_size`` and a last, smaller one of the ``len(X) % batch_size`` rows left over
        (with ``batchnorm``, a single row left over joins the batch before it, as one row is its
        own mean). ``fit``'s epochs train the same way, so ``n`` calls on the same data train
        exactly as ``fit`` with ``max_epochs=n, tol=None`` does. A changed ``optimizer`` starts
        its state afresh (another optimiser's slots are not its own), as a warm start does.
        """
        hidden, config = self._check_params()
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True (each call is one "
                             "epoch on the data given, with nothing held out); set "
                             "early_stopping=False to train with partial_fit.")
        if self.schedule in ("step", "cosine"):  # a schedule it has, not an "unknown" one
            raise ValueError(f"schedule {self.schedule!r} needs a run length, which partial_fit "
                             "has not (each call is one more epoch); use schedule='exp' or "
                             "'constant' with partial_fit, or fit with max_epochs.")
        check_choice(self.schedule, ("constant", "exp"), "schedule for partial_fit")
        new = not hasattr(self, "model_")
        # the first call's features are recorded on a copy, which the estimator takes them (and
        # the classes) from once the network is trained: a refused first call is no first call
        record = copy.copy(self) if new else self
        # (scikit-learn's _check_partial_fit_first_call, with messages of one line that say
        # what to do: its own printed NumPy's repr of the classes, over several lines)
        if new and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit: every "
                             "label there will be (later calls may hold any subset of them).")
        given = None if classes is None else unique_labels(classes)
        if not new and given is not None and not np.array_equal(given, self.classes_):
            raise ValueError(f"partial_fit: classes {_labels(given)} are not the fitted "
                             f"network's {_labels(self.classes_)}; pass the same classes (or "
                             "none) after the first call, or start again with fit or a new "
                             "estimator.")
        known: np.ndarray = given if new and given is not None else self.classes_
        Xa, ya = _validate_data(record, X, y, dtype=[np.float64, np.float32], reset=new)
        check_classification_targets(ya)
        unknown = np.setdiff1d(ya, known)
        if len(unknown):
            raise ValueError(
                f"y has labels {_labels(unknown, 5)} that are not among the classes "
                f"{_labels(known)}" + ("; pass every label there will be in `classes` on the "
                                       "first call." if new else
                                       " of the fitted network; drop those rows, or start "
                                       "again with fit or a new estimator whose first "
                                       "partial_fit has every label in `classes`."))
        y_enc = np.searchsorted(known, ya)
        if new:
            if len(known) < 2:
                raise ValueError(f"MLPClassifier needs at least 2 classes; got "
                                 f"{_labels(known)} in `classes`, which must hold every label "
                                 "there will be.")
            seed = self._draw_seed()
            model = self._network(Xa.shape[1], hidden, seed, Xa.dtype, len(known))
            carry: dict[str, Any] = {"seed": seed}
        else:
            model = self.model_
            self._check_same_network(known, hidden, "partial_fit")
            Xa = self._in_network_dtype(Xa)
            # (none: fitted, and pickled, by an mlplab without it)
            carry = getattr(self, "_continue", None) or {"seed": self._draw_seed()}
        batch_size = min(int(self.batch_size), len(Xa))
        # records the epoch's mean loss and counts it for the stopping rule, as scikit-learn's
        # partial_fit does (without stopping on it), which a later warm-started fit goes on from
        convergence = _Convergence(self.tol, 0, len(Xa), batch_size)
        if not new:
            self._carry_into(convergence)
        epochs_before = 0 if new else self.n_iter_
        lr = self.lr * (self.lr_decay ** epochs_before if self.schedule == "exp" else 1.0)
        if not lr > 0:  # underflowed: the one setting not validated as it is (lr and lr_decay are)
            raise ValueError(
                f"partial_fit: the exp schedule has decayed the learning rate to 0 after "
                f"{epochs_before} epochs (lr * lr_decay ** n_iter_ = {self.lr:g} * "
                f"{self.lr_decay:g} ** {epochs_before}), which trains nothing; set a larger "
                "lr_decay or schedule='constant' to go on, or call fit to start again.")
        trainer = Trainer._checked(dataclasses.replace(
            config, batch_size=batch_size, epochs=1, seed=carry["seed"], schedule="constant",
            lr=lr), [convergence])
        trainer._last_batch = True  # every row given is trained on, in this call
        if "rng" in carry:
            # the state a resumed run starts from: no steps yet in this "run", but the
            # optimiser's slots and the generators carried over from the last epoch
            carried = {k: v for k, v in carry.items() if k != "optimizer_name"}
            if carry.get("optimizer_name") != self.optimizer:
                # another optimiser's slots are not this one's (momentum's velocities read as
                # Adam's second moments made NaN weights): it starts afresh, as in a warm start
                carried["optimizer"] = {}
            trainer.resume({"iteration": 0, "epoch": 0, "history": {}, "best_state": None,
                            "order": None, **carried})
        with _unchanged_on_error(None if new else model):
            history = trainer._fit_checked(model, Xa, y_enc, None, None)  # (checked, as fit's)
        self.history_ = history
        if new:
            self.classes_ = known
            self._new_network(model, record)
        self._record(trainer, convergence, _rows_seen(trainer, model, len(Xa), batch_size))
        self._carry_from(convergence, keep=True)
        self.validation_scores_ = self.best_validation_score_ = None
        _raise_if_interrupted(self.history_)
        return self

    @property
    def loss_(self) -> float:
        """The last epoch's mean training loss (``loss_curve_[-1]``), scikit-learn's ``loss_``;
        read from the curve, so that an estimator pickled before it existed has it too. Not
        fitted, or no epoch trained: ``AttributeError``, as for any other fitted attribute."""
        curve = self.__dict__.get("loss_curve_")
        if not curve:
            raise AttributeError(f"{type(self).__name__} has no loss_: it has trained no epoch "
                                 "yet (call fit or partial_fit).")
        return float(curve[-1])

    def _carry_into(self, rule: _Convergence) -> None:
        """Start ``rule`` from this fitted estimator's best loss and no-improvement count."""
        best = getattr(self, "best_loss_", None)  # (an estimator pickled without them: afresh)
        rule.best = np.inf if best is None else float(best)
        rule.bad = int(getattr(self, "_no_improvement_count", 0))

    def _carry_from(self, rule: _Convergence, keep: bool) -> None:
        """Keep ``rule``'s best loss (``best_loss_``, as scikit-learn's; None with early
        stopping, ``keep`` False) and no-improvement count for a later warm start."""
        self.best_loss_ = float(rule.best) if keep and np.isfinite(rule.best) else None
        self._no_improvement_count = rule.bad if keep else 0

    def _draw_seed(self) -> int:
        """The seed of a new network and its trainer, drawn from ``random_state``."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _network(self, n_features: int, hidden: list[int], seed: int, dtype: np.dtype,
                 n_classes: int) -> MLP:
        return MLP(n_features, hidden, n_classes, activation=self.activation, init=self.init,
                   std=self.std, dropout=self.dropout, batchnorm=self.batchnorm, seed=seed,
                   dtype=dtype)

    def _new_network(self, model: MLP, record: MLPClassifier) -> None:
        """Make the newly trained ``model`` the estimator's, its counts starting from 0, and its
        input features (``n_features_in_``, ``feature_names_in_``) those ``record``, the copy
        its data were checked on, recorded."""
        self.model_ = model
        self.loss_curve_, self.n_iter_, self.t_ = [], 0, 0
        self.n_features_in_ = record.n_features_in_
        if hasattr(record, "feature_names_in_"):
            self.feature_names_in_ = record.feature_names_in_
        else:  # as scikit-learn's reset: no names left over from an earlier fit
            self.__dict__.pop("feature_names_in_", None)

    def _record(self, trainer: Trainer, convergence: _Convergence, seen: int) -> None:
        """Count what ``trainer`` did (``seen``: the samples its steps took) and keep what a
        later ``partial_fit`` continues from."""
        self.loss_curve_ = [*self.loss_curve_, *convergence.epoch_loss]
        self.n_iter_ += trainer.epoch
        self.t_ += seen  # samples seen, as scikit-learn counts it
        # the slots themselves, not copies: this trainer is done with them, and the next call's
        # optimiser copies them as it loads them (so a call that fails leaves these as they were)
        self._continue = {"seed": trainer.config.seed,
                          "optimizer_name": trainer.config.optimizer, **trainer._handover()}

    def _in_network_dtype(self, X: np.ndarray, cast: bool = True) -> np.ndarray:
        """``X`` cast to the fitted network's dtype (``cast``; else as it is), values beyond its
        range refused first: cast, float64 data of 1e39 became infinities for a float32
        network, refused as data holding NaN or infinite values, to be cleaned or imputed."""
        dtype = self.model_.dtype
        if X.dtype == dtype or (not cast and X.dtype.itemsize < dtype.itemsize):
            return X  # validate_data has checked it, and it fits: no second pass over the data
        X = check_X(X, dtype=dtype, wider=_WIDER_NETWORK)
        return X.astype(dtype, copy=False) if cast else X

    def _check_same_network(self, classes: np.ndarray, hidden: list[int], how: str) -> None:
        """A warm start or a further ``partial_fit`` (``how``) continues the fitted network: it
        must be the network these data and parameters describe."""
        again = "set warm_start=False" if how == "warm_start" else "call fit"
        if not np.array_equal(classes, self.classes_):
            raise ValueError(f"{how}: y has classes {classes.tolist()}, but the fitted "
                             f"network has {self.classes_.tolist()}; fit with the same classes "
                             f"or {again} to start again.")
        fitted = self.model_.config
        if hidden != list(fitted["hidden_sizes"]):
            raise ValueError(f"{how}: hidden_sizes is {hidden}, but the fitted network has "
                             f"{list(fitted['hidden_sizes'])}; {again} to start again.")
        # the layers are built with the network, so a changed setting would silently not apply
        # (init and std only draw the first weights, which a warm start does not redraw)
        for name, value in (("activation", self.activation), ("dropout", float(self.dropout)),
                            ("batchnorm", bool(self.batchnorm))):
            if value != fitted[name]:
                raise ValueError(f"{how}: {name} is {value!r}, but the fitted network was "
                                 f"built with {fitted[name]!r}; set it back or {again} to "
                                 "start again.")

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns ordered as ``classes_``."""
        check_is_fitted(self, "model_")  # (classes_ alone: a first partial_fit refused)
        Xa = _validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        # checked, not cast: the model casts a chunk at a time, with no copy of the whole of X
        Xa = self._in_network_dtype(Xa, cast=False)
        try:
            return self.model_.predict_proba(Xa)
        except ScoresOverflowError as exc:  # the model's way to a wider network is not ours
            raise ScoresOverflowError(str(exc).replace(WIDER_MODEL, _WIDER_NETWORK)) from None

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """``log(predict_proba(X))`` (n_samples, n_classes), columns ordered as ``classes_``; a
        probability that rounds to 0 gives ``-inf``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable class label of each row."""
        check_is_fitted(self, "model_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
