"""Networks composed from the layers in :mod:`mlplab.layers`.

``MLP`` is the general engine; ``TwoLayerNet`` is the exercise's API on top of it (same maths,
exercise initialisation and ``train`` signature). Loss with L2 follows the exercise exactly:

    J = mean_i(-log p_i[y_i]) + reg * sum_l ||W_l||_F^2       (no 0.5; biases not penalised)

so every weight gradient gets ``+ 2 * reg * W``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

import numpy as np
from numpy.typing import DTypeLike

from mlplab._validation import (
    WIDER_MODEL,
    Registrars,
    _fits,
    check_choice,
    check_float_dtype,
    check_hidden_sizes,
    check_int,
    check_new_name,
    check_positive,
    check_range,
    check_seed,
    check_X,
    check_y,
)
from mlplab.blas import axpy
from mlplab.init import INITS, init_weights, random_state
from mlplab.layers import (
    Affine,
    BatchNorm,
    Dropout,
    Layer,
    LeakyReLU,
    PReLU,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)

#: ``activation=`` names -> layer classes (called with no arguments, one per hidden layer, or,
#: for the names in ``_SIZED``, with the layer's width and dtype); :func:`register_activation`
#: adds one
ACTIVATIONS: dict[str, Callable[..., Layer]] = {
    "relu": ReLU, "leaky_relu": LeakyReLU, "prelu": PReLU, "tanh": Tanh, "sigmoid": Sigmoid}
BUILT_IN_ACTIVATIONS = dict(ACTIVATIONS)
_SIZED: set[str] = {"prelu"}
#: the module that called register_activation for each name it added: model files record it, so
#: that a reader without the registration can be told what to import (a partial of a built-in
#: class, say, is defined in mlplab.layers but registered by the user's module)
_REGISTERED_BY = Registrars()

#: parameter names MLP gives its own layers: a registered layer's keys must not collide with them
_RESERVED_KEYS = ("W", "b", "gamma", "beta", "running_mean", "running_var")


def _try_activation(name: str, sample: Layer) -> None:
    """One forward and backward pass of a new activation's layer on a small batch, so that a
    layer without ``backward``, or one that returns the wrong shape, is refused where it is
    registered, naming it, rather than failing mid-training with a bare ``NotImplementedError``
    or a BLAS shape error that names neither the layer nor its plugin."""
    cls = type(sample).__name__
    x = np.random.default_rng(0).standard_normal((4, 3))
    where = "docs/architecture.md, \"Writing your own layer\""
    for step in ("forward", "backward"):
        try:
            got = sample.forward(x.copy(), train=True) if step == "forward" else \
                sample.backward(np.ones_like(x))
        except NotImplementedError:
            raise ValueError(f"{name!r}: {cls} does not implement {step}(); an activation "
                             f"needs forward(x, train) -> out and backward(dout) -> dx "
                             f"({where}).") from None
        except Exception as exc:
            raise ValueError(f"{name!r}: {cls}.{step} failed on a (4, 3) float64 batch: "
                             f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(got, np.ndarray) or got.shape != x.shape:
            what = f"shape {got.shape}" if isinstance(got, np.ndarray) else type(got).__name__
            result = "out" if step == "forward" else "dL/dx"
            raise ValueError(f"{name!r}: {cls}.{step} must return {result} shaped like the "
                             f"(4, 3) batch; got {what} ({where}).")


def register_activation(name: str, layer: Callable[..., Layer], *, replace: bool = False,
                        sized: bool = False) -> None:
    """Make ``MLP(..., activation=name)`` put ``layer()`` after each hidden affine layer.

    ``layer`` is a :class:`mlplab.layers.Layer` subclass (or any callable returning a fresh one).
    With ``sized=True`` ``MLP`` calls ``layer(size, dtype)`` instead, with the width of the
    hidden layer and the model's dtype: that is how a layer with parameters (a PReLU's slopes,
    say) gets them in the right shape and dtype. Its ``params`` then join the model's, named by
    key and hidden layer (``alpha1``, ``alpha2``, ...): optimisers train them, gradient checks,
    checkpoints and model files include them, and the L2 penalty leaves them out (as it leaves
    biases and batch norm's). A layer with parameters must be registered with ``sized=True``.
    The name then works wherever Python code names an activation (``MLP``, ``MLPClassifier``,
    ``train_run``, a search space of ``tune``) and is what a model file stores:
    ``mlplab.io.load_model`` needs the same registration in the process that loads it. A name
    already taken is refused unless ``replace=True``. See docs/architecture.md, "Writing your
    own layer".
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"an activation name must be a Python identifier such as 'elu'; got "
                         f"{name!r}.")
    check_new_name(name, ACTIVATIONS, "activation", replace)
    sample = layer(3, np.dtype(np.float64)) if sized else layer()
    if not isinstance(sample, Layer):
        raise TypeError(f"{name!r}: layer() must return an mlplab.layers.Layer; got "
                        f"{type(sample).__name__}.")
    if sample.params and not sized:
        raise ValueError(f"{name!r}: an activation with parameters ({', '.join(sample.params)}) "
                         "must be registered with sized=True, so that MLP builds it as "
                         "layer(size, dtype) for each hidden layer and trains its parameters.")
    for key in sample.params:
        if not key.isidentifier() or key[-1].isdigit() or key in _RESERVED_KEYS:
            raise ValueError(f"{name!r}: parameter key {key!r} cannot name a model parameter "
                             f"(it must be an identifier not ending in a digit, and not one of "
                             f"{', '.join(_RESERVED_KEYS)}).")
    _try_activation(name, sample)
    ACTIVATIONS[name] = layer
    _REGISTERED_BY.note(name)
    if sized:
        _SIZED.add(name)
    else:
        _SIZED.discard(name)


def is_sized(name: str) -> bool:
    """Whether activation ``name`` was registered with ``sized=True``."""
    return name in _SIZED


def registering_module(name: str) -> str | None:
    """The module that registered activation ``name`` beyond mlplab's own, None for a built-in
    or one registered by a script run as ``__main__`` (which cannot be imported by name)."""
    if BUILT_IN_ACTIVATIONS.get(name) is ACTIVATIONS.get(name):
        return None
    return _REGISTERED_BY.importable(name)


def _activation_layer(name: str, size: int, dtype: np.dtype) -> Layer:
    """A fresh ``name`` activation for a hidden layer of ``size`` units, checked when it has
    parameters (they become the model's)."""
    layer = ACTIVATIONS[name](size, dtype) if name in _SIZED else ACTIVATIONS[name]()
    for key, value in layer.params.items():
        grad = layer.grads.get(key)
        if not isinstance(value, np.ndarray) or value.dtype != dtype or grad is None or \
                grad.shape != value.shape or grad.dtype != dtype:
            raise ValueError(f"activation {name!r}: parameter {key!r} must be a {dtype} array "
                             f"with a gradient of the same shape and dtype in grads[{key!r}] "
                             f"(layer({size}, {dtype}) built {type(value).__name__} "
                             f"{getattr(value, 'dtype', '')}).")
    return layer


#: rows per chunk when evaluating large arrays, so memory stays bounded
EVAL_CHUNK = 4096


class ScoresOverflowError(ValueError):
    """The network's class scores for a row overflowed its dtype (infinite or NaN), so that its
    probabilities are NaN and its prediction arbitrary: inputs far from standardised (float32
    holds up to 3.4e38, which one affine layer can exceed), or weights that diverged."""


class MLP:
    """A fully-connected network: (Affine -> [BatchNorm] -> activation -> [Dropout]) per hidden
    size, then a final Affine and softmax.

    Parameters are named from input to output: ``W1, b1, W2, b2, ...`` (and ``gamma1, beta1, ...``
    for batch norm after hidden layer 1, ...). ``W_l`` has shape (fan_in, fan_out). A hidden layer
    followed by batch norm has no bias ``b_l``: the normalisation's mean subtraction cancels it.

    Parameters
    ----------
    input_size, hidden_sizes, num_classes
        Layer widths; ``hidden_sizes=[]`` gives softmax regression, an integer one hidden layer.
    activation
        ``relu`` (default), ``leaky_relu``, ``prelu`` (a learnt negative slope per unit:
        parameters ``alpha1, alpha2, ...``), ``tanh``, ``sigmoid``, or a name given to
        :func:`register_activation`.
    init, std
        ``he`` (default), ``xavier`` or ``normal`` (the exercise's N(0, std^2)).
    dropout
        Inverted-dropout probability after each hidden activation (0 disables).
    batchnorm
        Batch normalisation after each hidden affine layer.
    seed
        Seed for weights and dropout masks; None draws both from NumPy's global state (so
        ``np.random.seed(0)`` before makes them repeat).
    dtype
        ``float32`` (default, for training) or ``float64`` (for gradient checks), as a NumPy
        dtype or its name; anything else, None included, is a ``ValueError``.

    Several threads may call ``predict``, ``predict_proba``, ``accuracy`` and ``loss`` at once
    (one pass runs at a time); predicting from one thread while another trains the model is not
    supported (the weights change under it).
    """

    def __init__(self, input_size: int, hidden_sizes: int | Iterable[int],
                 num_classes: int, *, activation: str = "relu", init: str = "he",
                 std: float = 1e-4, dropout: float = 0.0, batchnorm: bool = False,
                 seed: int | None = None, dtype: DTypeLike = np.float32) -> None:
        # an integer is one hidden layer, as MLPClassifier and train_run take it
        hidden = check_hidden_sizes(hidden_sizes, "hidden_sizes")
        input_size = check_int(input_size, "input_size")
        num_classes = check_int(num_classes, "num_classes", minimum=2)
        check_positive(std, "std")
        check_range(dropout, "dropout", 0, 1, high_open=True)
        check_seed(seed)
        check_choice(activation, ACTIVATIONS, "activation")
        check_choice(init, INITS, "init")
        dtype = check_float_dtype(dtype)
        #: JSON-able: MLP(**config) rebuilds the network
        self.config: dict[str, Any] = {
            "input_size": int(input_size), "hidden_sizes": hidden,
            "num_classes": int(num_classes), "activation": activation, "init": init,
            "std": float(std), "dropout": float(dropout), "batchnorm": bool(batchnorm),
            "seed": None if seed is None else int(seed), "dtype": dtype.name,
        }
        self.dtype = dtype
        self.input_size, self.num_classes = int(input_size), int(num_classes)

        sizes = [self.input_size, *hidden, self.num_classes]
        weights = init_weights(sizes, init, std, seed, dtype)
        self.layers: list = []
        self._named: list[tuple[str, Any, str]] = []  # (public name, layer, key in layer.params)
        self.affines: list[Affine] = []
        self.batchnorms: dict[int, BatchNorm] = {}
        for i, (W, b) in enumerate(weights, start=1):
            last = i == len(weights)
            affine = Affine(W, None if batchnorm and not last else b, need_dx=i > 1)
            self.layers.append(affine)
            self.affines.append(affine)
            self._named += [(f"{k}{i}", affine, k) for k in affine.params]
            if last:
                break
            if batchnorm:
                bn = BatchNorm(W.shape[1], dtype=dtype)
                self.layers.append(bn)
                self.batchnorms[i] = bn
                self._named += [(f"gamma{i}", bn, "gamma"), (f"beta{i}", bn, "beta")]
            act = _activation_layer(activation, W.shape[1], dtype)
            self.layers.append(act)
            self._named += [(f"{k}{i}", act, k) for k in act.params]
            if dropout > 0:
                # seed None: from NumPy's global stream, as the weights are (a fresh generator
                # of the system's entropy made two runs after np.random.seed(0) differ)
                drop_seed = seed + i if seed is not None else \
                    int(random_state(None).randint(2**32, dtype=np.uint64))
                self.layers.append(Dropout(dropout, seed=drop_seed))
        self.output = SoftmaxCrossEntropy()
        # the layers compute into buffers that every pass shares: one pass at a time (_evaluate)
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)  # a lock neither pickles nor deep-copies
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()  # also for a model pickled before it had one

    # ----------------------------------------------------------------------------- parameters
    @property
    def params(self) -> dict[str, np.ndarray]:
        """Named parameters (live arrays: updating them in place updates the model)."""
        return {name: layer.params[key] for name, layer, key in self._named}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Gradients of the last backward pass, named like ``params`` (live buffers). A momentum
        ``Trainer.fit`` accumulates its gradients into the optimiser's velocities instead
        (``Momentum.fused``): these are not its last step's."""
        return {name: layer.grads[key] for name, layer, key in self._named}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Parameters plus batch-norm running statistics: the live arrays, not copies."""
        arrays = dict(self.params)
        for i, bn in self.batchnorms.items():
            arrays[f"running_mean{i}"] = bn.running_mean
            arrays[f"running_var{i}"] = bn.running_var
        return arrays

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters plus batch-norm running statistics, as copies: the weights in use, also
        while momentum keeps the L2 term in a layer's scale (``Momentum.fused``)."""
        state = {k: v.copy() for k, v in self.state_arrays().items()}
        for name, layer, key in self._named:
            if key == "W" and layer.scale != 1:
                state[name] *= state[name].dtype.type(layer.scale)
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy arrays from ``state`` into the model, checking names and shapes. Values are cast
        to the model's dtype (float64 weights in a float32 model: rounded, as for inference);
        values that the cast would make infinite (beyond float32's +-3.4e38), and arrays that
        hold no real numbers (complex, text), are refused. (Resuming *training* needs the
        run's own dtype: ``Trainer.resume`` refuses a state of another.)"""
        for layer in self.affines:  # weights held with a scale (Momentum.fused) are settled
            if layer.folded_by is not None:
                layer.folded_by.settle()
        targets = self.state_arrays()
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if missing or unexpected:
            raise ValueError(f"state does not match the model: missing {missing}, "
                             f"unexpected {unexpected}.")
        values = {name: np.asarray(state[name]) for name in targets}
        for name, value in values.items():  # all checked before any is copied: a refused
            target = targets[name]          # state left the model half loaded
            if value.shape != target.shape:
                raise ValueError(f"{name} has shape {value.shape}; the model expects "
                                 f"{target.shape}.")
            if value.dtype.kind not in "fiu":  # the cast dropped an imaginary part silently
                raise ValueError(f"{name} has dtype {value.dtype}; the model takes real numbers "
                                 f"({target.dtype}).")
            if not np.isfinite(value).all():
                raise ValueError(f"{name} contains NaN or infinite values.")
            if value.dtype.kind == "f" and value.dtype.itemsize > target.dtype.itemsize and \
                    not _fits(np.atleast_1d(value), target.dtype):
                raise ValueError(f"{name} has values beyond {target.dtype}'s range "
                                 f"(+-{float(np.finfo(target.dtype).max):.4g}), which the cast "
                                 f"to the model's dtype would make infinite; load it into a "
                                 f"{value.dtype} model (dtype=np.{value.dtype}).")
        for name, target in targets.items():
            target[...] = values[name]

    @property
    def num_params(self) -> int:
        """The number of trainable parameters (every entry of every array in ``params``)."""
        return sum(p.size for p in self.params.values())

    # ----------------------------------------------------------------------------- engine
    def _forward(self, X: np.ndarray, train: bool, y: np.ndarray | None = None) -> np.ndarray:
        """Probabilities for one batch (unchecked; result is a layer buffer, valid until the next
        call). With ``y`` the data loss is left in ``self.output.loss``."""
        out = X if X.dtype == self.dtype else X.astype(self.dtype)
        for layer in self.layers:
            out = layer.forward(out, train)
        return self.output.forward(out, y)

    def penalty(self, reg: float) -> float:
        """``reg * sum ||W||_F^2`` over the weight matrices (no 0.5, biases excluded)."""
        if reg == 0:
            return 0.0
        # scale: the weights in use are scale * W while Momentum.fused folds L2 into it
        return reg * sum(a.scale ** 2 * float(np.vdot(a.params["W"], a.params["W"]))
                         for a in self.affines)

    def _fusable_params(self) -> list[tuple[str, Affine, str]]:
        """``(name, layer, key)`` of the affine parameters whose gradient buffers
        ``_loss_and_grads`` hands back untouched, which ``Momentum.fused`` may make velocities.
        None for a subclass with its own ``_loss_and_grads``: it may change the gradients."""
        if type(self)._loss_and_grads is not MLP._loss_and_grads:
            return []
        return [(name, layer, key) for name, layer, key in self._named
                if isinstance(layer, Affine)]

    def _loss_and_grads(self, X: np.ndarray, y: np.ndarray,
                        reg: float) -> tuple[float, dict[str, np.ndarray]]:
        """Training step maths on unchecked input: the loss and live gradient buffers."""
        self._forward(X, train=True, y=y)
        loss = self.output.loss + self.penalty(reg)
        dout = self.output.backward()
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        if reg:
            for a in self.affines:
                if not a.l2_by_optimizer:  # else Momentum.fused's update applies it
                    axpy(2 * reg, a.params["W"], a.grads["W"])  # one pass, no temporary
        return loss, self.grads

    def _evaluate(self, X: np.ndarray,
                  take: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
        """``take(probabilities)`` (a copy, an argmax) of each chunk of ``X`` in evaluation mode.
        The probabilities are a layer buffer that the next pass overwrites, so each chunk's
        forward and ``take`` hold the model's lock: predictions from several threads at once (a
        thread pool or web server sharing one fitted model) got other threads' rows."""
        results = []
        for start in range(0, X.shape[0], EVAL_CHUNK):
            chunk = X[start:start + EVAL_CHUNK]
            # an overflow is reported below, in one message, not as NumPy's RuntimeWarnings
            with self._lock, np.errstate(over="ignore", invalid="ignore"):
                probs = self._forward(chunk, train=False)
                error = self._overflow(chunk, probs, start)
                if error is not None:
                    raise error
                results.append(take(probs))
        return results

    def _finite(self) -> bool:
        """Whether every parameter and running statistic is finite."""
        return all(np.isfinite(a).all() for a in self.state_arrays().values())

    def _overflow(self, X: np.ndarray, probs: np.ndarray,
                  offset: int = 0) -> ScoresOverflowError | None:
        """The error for the first row of ``probs`` (of ``X``, row ``offset`` of the caller's)
        that is not finite; None if every row is, or if the model's own parameters are not (a
        broken model's NaN is no overflow: gradient checks report it)."""
        bad = ~np.isfinite(probs).all(axis=1)
        if not bad.any() or not self._finite():
            return None
        row = int(np.argmax(bad))
        wider = f", or {WIDER_MODEL}" if self.dtype == np.float32 else ""
        return ScoresOverflowError(
            f"the network's class scores overflowed {self.dtype} for row {offset + row} of X "
            f"(largest input magnitude {float(np.abs(X[row]).max()):.3g}), so its probabilities "
            f"are NaN: standardise the inputs (mlplab.data.transforms, or scikit-learn's "
            f"StandardScaler){wider}. (If the inputs are standardised, the weights have "
            "diverged.)")

    # ----------------------------------------------------------------------------- public API
    @overload
    def loss(self, X: np.ndarray, y: None = None, reg: float = 0.0) -> np.ndarray: ...
    @overload
    def loss(self, X: np.ndarray, y: np.ndarray,
             reg: float = 0.0) -> tuple[float, dict[str, np.ndarray]]: ...
    def loss(self, X: np.ndarray, y: np.ndarray | None = None,
             reg: float = 0.0) -> np.ndarray | tuple[float, dict[str, np.ndarray]]:
        """Without ``y``: class probabilities (N, K) in evaluation mode. With ``y``: ``(loss,
        grads)`` for the batch in training mode, ``grads`` a dict named like ``params``."""
        X = check_X(X, self.input_size, dtype=self.dtype)
        if y is None:
            return self.predict_proba(X)
        y = check_y(y, X.shape[0], self.num_classes)
        if not len(X):
            raise ValueError("X has no rows: the loss is a mean over a batch and needs at least "
                             "one row.")
        check_positive(reg, "reg", allow_zero=True)  # None or "1e-3": a message, no TypeError
        # the gradients are buffers too (see _evaluate); an overflow is reported as there
        with self._lock, np.errstate(over="ignore", invalid="ignore"):
            loss, grads = self._loss_and_grads(X, y, reg)
            if not np.isfinite(loss) and self._finite():
                raise self._overflow(X, self._forward(X, train=False)) or ScoresOverflowError(
                    f"the loss overflowed {self.dtype} ({loss}): the weights (or reg * their "
                    "squares) are too large; check how the model was trained.")
            return loss, {k: v.copy() for k, v in grads.items()}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K), evaluated in chunks in evaluation mode."""
        X = check_X(X, self.input_size, dtype=self.dtype)
        return np.concatenate(self._evaluate(X, np.copy)) if len(X) else \
            np.empty((0, self.num_classes), self.dtype)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable class for each row of ``X``."""
        X = check_X(X, self.input_size, dtype=self.dtype)
        if not len(X):
            return np.empty(0, dtype=np.intp)
        return np.concatenate(self._evaluate(X, lambda p: p.argmax(axis=1)))

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        """Fraction of rows classified correctly."""
        X = check_X(X, self.input_size, dtype=self.dtype)
        if not len(X):
            raise ValueError("X has no rows: the accuracy of no predictions is undefined.")
        return float(np.mean(self.predict(X) == check_y(y, X.shape[0], self.num_classes)))

    def __repr__(self) -> str:
        c = self.config
        # dropout and batch norm only when on: they change what the net computes in training
        extras = (f", dropout={c['dropout']:g}" if c["dropout"] else "") + \
            (", batchnorm=True" if c["batchnorm"] else "")
        return (f"{type(self).__name__}(input_size={c['input_size']}, "
                f"hidden_sizes={c['hidden_sizes']}, num_classes={c['num_classes']}, "
                f"activation={c['activation']!r}{extras}, dtype={c['dtype']})")


class TwoLayerNet(MLP):
    """The exercise's two-layer net: ``W1 (D,H)``, ``b1``, ``W2 (H,K)``, ``b2``, initialised as
    ``std * randn`` (W1 drawn before W2) with zero biases, in float64 by default.

    With ``seed=None`` the weights come from NumPy's global state, so ``np.random.seed(0);
    TwoLayerNet(4, 10, 3, std=1e-1)`` is the exercise's toy model; ``seed=0`` gives the same.

    The CS231n notebook's cells run with their own calls; ``loss(X)`` returns probabilities
    rather than scores and the L2 term has no 0.5 (the exercise's choices). Each cell's
    equivalent and what differs: docs/training.md, "The CS231n notebook, cell by cell".
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, std: float = 1e-4,
                 *, seed: int | None = None, dtype: DTypeLike = np.float64) -> None:
        # named as given here: MLP's message would name its own hidden_sizes
        hidden_size = check_int(hidden_size, "hidden_size")
        super().__init__(input_size, [hidden_size], output_size, init="normal", std=std,
                         seed=seed, dtype=dtype)

    def train(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
              learning_rate: float = 1e-3, learning_rate_decay: float = 0.95, reg: float = 5e-6,
              num_iters: int = 100, batch_size: int = 200, verbose: bool = False,
              seed: int | None = None) -> dict[str, list[float]]:
        """The exercise's minibatch SGD: ``num_iters`` steps on batches sampled with replacement
        (from NumPy's global stream, or ``RandomState(seed)``), learning rate multiplied by
        ``learning_rate_decay`` once per epoch. Returns ``{'loss_history', 'train_acc_history',
        'val_acc_history'}``: the loss of every iteration, and the accuracies (train on the
        epoch's last batch) at the end of every full epoch of ``max(N // batch_size, 1)``
        iterations. CS231n's loop records (and decays) after the first iteration of each epoch
        instead, so it has one point more when ``num_iters`` is not a whole number of epochs (5
        against 4 in 1,000 iterations of 245), the same number when it is, and a run shorter
        than an epoch has none here; ``verbose`` prints a line per epoch. See docs/training.md,
        "The CS231n notebook, cell by cell"."""
        from mlplab.trainer import Trainer

        # the Trainer would name these lr, lr_decay and iters, which this call does not have
        check_positive(learning_rate, "learning_rate")
        check_range(learning_rate_decay, "learning_rate_decay", 0, 1, low_open=True)
        check_int(num_iters, "num_iters")
        trainer = Trainer.exercise(lr=learning_rate, lr_decay=learning_rate_decay, reg=reg,
                                   iters=num_iters, batch_size=batch_size, verbose=verbose,
                                   seed=seed)
        history = trainer.fit(self, X, y, X_val, y_val)
        if history.interrupted:  # Ctrl-C: a cut-short run is not the exercise's result
            raise KeyboardInterrupt
        return {
            "loss_history": history.loss,
            "train_acc_history": history.train_acc,
            "val_acc_history": history.val_acc,
        }
