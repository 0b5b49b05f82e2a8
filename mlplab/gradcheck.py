"""Numerical gradient checking with centred differences.

:func:`check_layer` checks one layer (yours included), :func:`check_model` every parameter of a
model; both compare with :func:`eval_numerical_gradient` (the exercise's, as in CS231n).

``rel_error`` is the exercise's ``max |a - n| / max(1e-8, |a| + |n|)``. Checks run in float64: in
float32 the rounding error of a centred difference with h = 1e-5 swamps the signal.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from mlplab._validation import check_choice, setting
from mlplab.layers import Dropout, Layer, LeakyReLU, PReLU, ReLU

if TYPE_CHECKING:
    from mlplab.models import MLP


def _check_step(h: float) -> None:
    """Refuse a step the centred difference cannot use: h = 0 divided by zero, NaN gave NaN
    errors, and a negative h gave the right numbers while reading like a mistake."""
    try:
        ok = not isinstance(h, bool | str) and 0 < float(h) < float("inf")
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"h must be a finite step > 0 (the centred difference is "
                         f"(f(x + h) - f(x - h)) / 2h; 1e-5 by default); got {h!r}.")


def eval_numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray,
                            verbose: bool = False, h: float = 1e-5) -> np.ndarray:
    """Centred-difference gradient of the scalar ``f`` at ``x``: (f(x+h) - f(x-h)) / 2h per entry.

    ``x`` is perturbed in place and restored, so ``f`` may close over it (as with model params).
    The arguments are CS231n's ``(f, x, verbose, h)``, so the notebook's
    ``eval_numerical_gradient(f, net.params[name], verbose=False)`` runs as written; ``verbose``
    prints each index and its partial derivative, as CS231n's does, but is off by default.
    """
    if not isinstance(verbose, bool | np.bool_):
        # a step size given in the third place, as this function once took it, would otherwise
        # be read as verbose=True and the step left at 1e-5
        raise TypeError(f"verbose must be True or False; got {verbose!r}. The arguments are "
                        "(f, x, verbose, h), as in CS231n: pass the step by name, h=...")
    _check_step(h)
    if getattr(x, "dtype", None) != np.float64:
        # x + h is rounded in x's own dtype: a correct float32 MLP's W1 checked at ~0.2, an
        # integer x gave nonsense, with nothing to say why
        raise ValueError(f"x must be a float64 array, perturbed in place; got "
                         f"{getattr(x, 'dtype', type(x).__name__)}. Build the model in float64 "
                         "(MLP(..., dtype=np.float64); TwoLayerNet's default): float32 rounding "
                         "makes centred differences meaningless.")
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        try:
            x[ix] = old + h
            fxph = _number(f(x))
            x[ix] = old - h
            fxmh = _number(f(x))
        finally:  # also when f raises (or Ctrl-C stops a long check): x is the model's weights
            x[ix] = old
        grad[ix] = (fxph - fxmh) / (2 * h)
        if verbose:
            print(ix, grad[ix])
        it.iternext()
    return grad


def _number(value: object) -> float:
    """``f``'s value as a float, or a ValueError saying what ``f`` must return (a tuple, the
    ``(loss, grads)`` of ``net.loss(X, y)``, was 'unsupported operand type(s) for -')."""
    if isinstance(value, tuple):
        raise ValueError(f"f must return one number, the loss; it returned a tuple of "
                         f"{len(value)}. net.loss(X, y, reg=...) returns (loss, grads): take the "
                         "loss, f = lambda W: net.loss(X, y, reg=reg)[0].")
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "fiub":
        raise ValueError(f"f must return one number, the loss; it returned "
                         f"{type(value).__name__} of shape {arr.shape} ({arr.dtype}). For a "
                         "function with an array value (a layer's forward), use "
                         "eval_numerical_gradient_array(f, x, dout).")
    return float(arr.reshape(()))


def eval_numerical_gradient_array(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                                  dout: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Numerical gradient of ``sum(f(x) * dout)`` with respect to ``x``: checks a layer's backward
    for an arbitrary upstream gradient ``dout``, which must have the shape of ``f(x)``."""
    def weighted(z: np.ndarray) -> float:
        out = np.asarray(f(z))
        if out.shape != np.shape(dout):
            # broadcast, it was NumPy's error or, for (N, 1) against (N,), a wrong gradient
            raise ValueError(f"dout has shape {np.shape(dout)}; f(x) has {out.shape}: dout "
                             "stands for dL/d(f(x)) and must have its shape.")
        return float(np.sum(out * dout))

    return eval_numerical_gradient(weighted, x, h=h)


def _compared(a: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``n`` as float64 arrays of one shape: arrays of different shapes are refused, not
    broadcast (a (D, H) gradient against an (H, D) one, or (N,) against (N, 1), gave a
    broadcasting error or, worse, a number that meant nothing)."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    if a.shape != n.shape:
        hint = (" (one is the other's transpose: in the code's row-vector convention, out = x @ W "
                "with W (D, H), a weight gradient is x.T @ dout, shaped like W)"
                if a.ndim == 2 and a.shape == n.shape[::-1] else "")
        raise ValueError(f"the gradients compared must have the same shape; got {a.shape} and "
                         f"{n.shape}{hint}.")
    return a, n


def rel_error(a: np.ndarray, n: np.ndarray) -> float:
    """Max relative error ``max |a - n| / max(1e-8, |a| + |n|)``; ``a`` and ``n`` must have the
    same shape."""
    a, n = _compared(a, n)
    return float(np.max(np.abs(a - n) / np.maximum(1e-8, np.abs(a) + np.abs(n))))


def norm_rel_error(a: np.ndarray, n: np.ndarray) -> float:
    """Relative error of the whole gradient, ``||a - n|| / max(1e-8, ||a|| + ||n||)``.

    Unlike the element-wise maximum it is not dominated by entries whose true gradient is nearly
    zero, where float64 rounding in the loss (about eps * |J| / h = 2e-11 absolute) alone gives
    relative errors of 1e-7..1e-6 in nets deeper than the exercise's, and on some draws up to
    1e-4 (3 of 30 seeds of ``mlplab gradcheck``'s default 32,16 net)."""
    a, n = _compared(a, n)
    return float(np.linalg.norm(a - n) / max(1e-8, float(np.linalg.norm(a) + np.linalg.norm(n))))


def _error_function(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """:func:`rel_error` for ``"max"``, :func:`norm_rel_error` for ``"norm"``; another name is a
    ValueError (not a bare KeyError)."""
    errors_by_metric = {"max": rel_error, "norm": norm_rel_error}
    check_choice(metric, errors_by_metric, "metric")
    return errors_by_metric[metric]


def check_layer(layer: Layer, x: np.ndarray, dout: np.ndarray | None = None, h: float = 1e-5,
                metric: str = "max", seed: int = 231) -> dict[str, float]:
    """Compare one layer's backward pass with numerical gradients at input ``x`` (float64).

    Returns ``{"x": error of dx, key: error of grads[key] for each parameter}``, the error as in
    :func:`check_model`. A correct layer gives about 1e-9 or less by either metric (below 1e-7
    is right), a wrong term 1e-3 or more; an input within about ``h`` of a ReLU's kink at 0
    fails correct code (draw another ``x``). ``dout`` (the upstream gradient; random normal
    from ``seed`` when None) stands for dL/d(out), so the check is of
    ``L = sum(forward(x) * dout)``.

    Every call hands the layer fresh copies: the built-in layers overwrite their input and the
    ``dout`` they are given (and return reused buffers), so the plain CS231n recipe
    ``eval_numerical_gradient_array(layer.forward, x, dout)`` reports errors near 1 for a correct
    ``ReLU``. A ``Dropout`` layer's mask is frozen for the check. The layer's parameters are
    perturbed in place and restored, and so are its other arrays (batch norm's running
    statistics, say) and a dropout generator; ``x`` and ``dout`` are not modified.
    """
    error = _error_function(metric)
    _check_step(h)
    wide = [k for k, p in layer.params.items() if np.asarray(p).dtype != np.float64]
    if wide:  # as check_model: a float32 BatchNorm() reported ~1e-3 for a correct gamma
        name = type(layer).__name__
        # the way to float64 for this layer: a dtype argument, or float64 arrays (Affine's W
        # was told to build "BatchNorm(dim, dtype=np.float64)")
        how = (f"{name}(..., dtype=np.float64)" if "dtype" in inspect.signature(
            type(layer).__init__).parameters else f"give {name} float64 arrays, e.g. "
            f"{wide[0]}.astype(np.float64)")
        raise ValueError(f"gradient checks need float64 parameters; {', '.join(wide)} of this "
                         f"{name} {'is' if len(wide) == 1 else 'are'} "
                         f"{np.asarray(layer.params[wide[0]]).dtype} (build the layer in "
                         f"float64: {how}): float32 rounding makes centred differences "
                         "meaningless.")
    x = np.array(x, dtype=np.float64)  # a copy: the checks below perturb it
    if not np.isfinite(x).all():  # (every error then came out nan, a failure of the layer's)
        bad = tuple(np.argwhere(~np.isfinite(x))[0].tolist())
        raise ValueError(f"x contains NaN or infinite values (first at index {bad}); a "
                         "gradient check needs finite inputs.")
    frozen = layer.frozen if isinstance(layer, Dropout) else False
    if isinstance(layer, Dropout):
        layer.frozen = True
    # what the check's many training-mode forwards move (batch norm's running statistics, a
    # dropout mask and generator), put back afterwards as check_model does for a model
    arrays = {k: v.copy() for k, v in vars(layer).items() if isinstance(v, np.ndarray)}
    rng = getattr(layer, "rng", None)
    saved_rng = (rng, rng.bit_generator.state) if isinstance(rng, np.random.Generator) else None

    def f(z: np.ndarray) -> np.ndarray:
        return np.array(layer.forward(z.copy(), True), dtype=np.float64)

    try:
        out = f(x)
        if dout is None:
            dout = np.random.RandomState(seed).randn(*out.shape)
        dout = np.array(dout, dtype=np.float64)
        if dout.shape != out.shape:
            raise ValueError(f"dout has shape {dout.shape}; the layer's output has {out.shape}.")
        f(x)  # the forward whose cache backward reads
        dx = _check_backward(layer, x, layer.backward(dout.copy()))
        grads = {k: np.array(g, dtype=np.float64) for k, g in layer.grads.items()}
        errors = {"x": error(dx, eval_numerical_gradient_array(f, x, dout, h))}
        for key, p in layer.params.items():
            num = eval_numerical_gradient_array(lambda _: f(x), p, dout, h)
            errors[key] = error(grads[key], num)
        return errors
    finally:
        if isinstance(layer, Dropout):
            layer.frozen = frozen
        for key, saved in arrays.items():
            now = getattr(layer, key, None)
            if isinstance(now, np.ndarray) and now.shape == saved.shape:
                now[...] = saved  # in place: a model holding the array sees it restored
            else:
                setattr(layer, key, saved)
        if saved_rng is not None:
            saved_rng[0].bit_generator.state = saved_rng[1]


def _check_backward(layer: Layer, x: np.ndarray,
                    dx: np.ndarray | None) -> np.ndarray:
    """Refuse, with what the contract asks, a backward whose results cannot be compared: no dx
    (the check reported an error of nan), a dx or a parameter gradient of the wrong shape (a
    broadcasting error), or a parameter without a gradient (a bare KeyError); returns ``dx``."""
    name = type(layer).__name__
    if dx is None:
        skipped = (" (an Affine built with need_dx=False skips dx: check one with need_dx=True)"
                   if getattr(layer, "need_dx", True) is False else "")
        raise ValueError(f"{name}.backward returned None; it must return dL/dx, an array shaped "
                         f"like x {x.shape}{skipped}.")
    shape = np.shape(dx)
    if shape != x.shape:
        raise ValueError(f"{name}.backward returned dL/dx of shape {shape}; x has shape "
                         f"{x.shape}, and dL/dx must have the same.")
    missing = [k for k in layer.params if k not in layer.grads]
    if missing:
        raise ValueError(f"{name}.grads has no {', '.join(map(repr, missing))}: backward must "
                         "write each parameter's gradient into self.grads under the parameter's "
                         "key.")
    for key, p in layer.params.items():
        g, want = np.shape(layer.grads[key]), np.shape(p)
        if g != want:
            hint = (" (its transpose: with out = x @ W and W (D, H), dW = x.T @ dout is (D, H))"
                    if len(g) == 2 and g == want[::-1] else "")
            raise ValueError(f"{name}.grads[{key!r}] has shape {g}; params[{key!r}] has "
                             f"{want}, and a gradient must have its parameter's shape{hint}.")
    return dx


def offset_biases(model: MLP, rng: np.random.RandomState, scale: float = 0.1) -> None:
    """Set the biases ``b<l>`` and batch norm's shifts ``beta<l>`` to ``scale * rng.randn``, in
    parameter order, before a gradient check (a registered activation's parameters, such as a
    ``bias<l>`` of its own, are left as they are).

    With zero biases a unit whose inputs are all zero sits exactly on the ReLU kink, where the
    analytic slope H(0) = 0 and the centred difference 1/2 disagree by definition: a correct
    backward pass would fail its check."""
    for name, p in model.params.items():
        if re.fullmatch(r"(b|beta)\d+", name):
            p[:] = scale * rng.randn(*p.shape)


#: activations whose slope jumps at 0 (their kink)
KINKED = (ReLU, LeakyReLU, PReLU)


def nearest_kink(model: MLP, X: np.ndarray) -> float | None:
    """The smallest ``|input|`` of a ReLU, LeakyReLU or PReLU of ``model`` over the rows of
    ``X``, in the training-mode forward pass that :func:`check_model` differentiates; None when the
    model has no such layer. The model is not changed (the pass runs on a copy).

    These activations' slope jumps at 0. When a unit's input is within the step of a centred
    difference of 0 (about ``h`` times the size of what feeds it), the two evaluations straddle
    the kink and measure neither slope, so a correct backward pass fails the check; another
    draw of the data moves the units away (a wrong backward pass fails on every draw)."""
    probe = copy.deepcopy(model)  # its dropout generators at the check's state: the same masks
    out = np.array(X, dtype=np.float64)
    nearest = None
    for layer in probe.layers:
        if isinstance(layer, KINKED):
            smallest = float(np.abs(out).min()) if out.size else np.inf
            nearest = smallest if nearest is None else min(nearest, smallest)
        out = layer.forward(out, True)
    return nearest


def check_model(model: MLP, X: np.ndarray, y: np.ndarray, reg: float = 0.0, h: float = 1e-5,
                metric: str = "max") -> dict[str, float]:
    """Compare the analytic gradient of every parameter of ``model`` with the numerical one.

    Returns ``{param name: error}``, the error being the exercise's max relative error
    (``metric="max"``) or :func:`norm_rel_error` (``metric="norm"``). Passing: the exercise's
    bound is 1e-8 (max) on its two-layer net; ``mlplab gradcheck``'s are 1e-7 (norm) and 1e-5
    (max, which rounding on near-zero entries of deeper nets can push to 1e-6); a wrong term
    gives 1e-3 or more by either. Dropout masks are frozen
    during the check so that the loss is a deterministic function of the parameters. The model is
    left as it was: the check's many training-mode passes would otherwise move the batch-norm
    running statistics and the dropout generators of, say, a trained model.
    """
    error = _error_function(metric)
    _check_step(h)
    if model.dtype != np.float64:
        raise ValueError("gradient checks need a float64 model (dtype=np.float64); float32 "
                         "rounding makes centred differences meaningless.")
    with _frozen(model):
        _, grads = model.loss(X, y, reg=reg)
        errors = {}
        for name, param in model.params.items():
            num = eval_numerical_gradient(lambda _: model.loss(X, y, reg=reg)[0], param, h=h)
            errors[name] = error(grads[name], num)
        return errors


def rounding_floor(model: MLP, X: np.ndarray, y: np.ndarray, reg: float = 0.0,
                   h: float = 1e-5) -> dict[str, float]:
    """Per parameter, an upper estimate of the :func:`norm_rel_error` that float64's rounding
    in the centred differences alone gives a correct gradient: ``eps * |J| / 2h`` an entry, over
    the norms ``||a|| + ||n||``. A large loss (a large ``reg``) and a small gradient (biases,
    which L2 leaves out) raise it, and near ``tol`` correct code fails (``mlplab gradcheck --reg
    100``: b1 measured at 2.2e-7, estimated 7.5e-7)."""
    _check_step(h)
    with _frozen(model):
        loss, grads = model.loss(X, y, reg=reg)
    noise = np.finfo(np.float64).eps * abs(float(loss)) / (2 * h)
    return {name: float(np.sqrt(g.size) * noise / max(2 * float(np.linalg.norm(g)), 1e-300))
            for name, g in grads.items()}


def nan_cause(model: MLP, X: np.ndarray, y: np.ndarray, reg: float = 0.0) -> str:
    """Why :func:`check_model` gave a NaN error: the backward pass's own gradients were not
    finite (a layer's bug, which lowering ``reg`` would not mend), or the loss itself (too large
    for centred differences, as a large ``reg`` makes it), or else a numerical gradient."""
    with _frozen(model):
        loss, grads = model.loss(X, y, reg=reg)
    broken = [name for name, g in grads.items() if not np.all(np.isfinite(g))]
    if broken:
        return (f"the backward pass gave NaN or infinite gradients for {', '.join(broken)}: a "
                "layer's backward (or the cache its forward keeps) is wrong")
    if not np.isfinite(loss):
        return (f"the loss itself is {loss}: the weights or reg are too large for float64; "
                f"lower {setting('--reg', 'reg')}")
    return ("a numerical gradient is NaN: the loss (with reg x the squared weights) is too "
            f"large for float64's centred differences; lower {setting('--reg', 'reg')}")


@contextlib.contextmanager
def _frozen(model: MLP) -> Iterator[None]:
    """Dropout masks frozen within the block, so that the loss is a deterministic function of
    the parameters; the model left as it was afterwards: the check's many training-mode passes
    would otherwise move the batch-norm running statistics and the dropout generators of, say,
    a trained model."""
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
    saved = model.state_dict()  # copies, restored below with the generators
    generators = [d.rng.bit_generator.state for d in dropouts]
    for d in dropouts:
        d.frozen = True
    try:
        yield
    finally:
        for d, state in zip(dropouts, generators):
            d.frozen = False
            d.rng.bit_generator.state = state
        # copied back as they were, NaN or not (load_state_dict would refuse a broken model)
        for name, target in model.state_arrays().items():
            target[...] = saved[name]
