"""Layers with hand-written forward and backward passes.

Every layer follows the CS231n ``layers.py`` pairing: ``forward`` computes the output and keeps in
``self`` exactly what ``backward`` needs (its cache); ``backward`` takes dL/d(output) and returns
dL/d(input), storing parameter gradients in ``self.grads`` under the same keys as ``self.params``.

Conventions: inputs are batched rows, ``x`` of shape (N, D); affine maps are ``x @ W + b`` with
``W`` of shape (D, H) (the exercise's column-vector ``W x + b`` with ``W`` transposed).
Everything is vectorised over the batch and works in the dtype of its parameters (float32 or
float64).

Speed notes (why some code writes into ``out=``): a training step is a handful of matrix products;
the rest is overhead. Layers therefore reuse per-shape output buffers instead of allocating fresh
arrays every step, and activations work in place on the buffer of the layer before them. The
price is that a layer's output is only valid until its next ``forward``: models copy what they hand
back to users. Outside ``Momentum.fused`` (see :class:`Affine`) the extra attributes that trick uses
are no-ops, and each ``forward``/``backward`` reads as its docstring's formula.

Writing your own layer: subclass :class:`Layer` and see its docstring for the contract;
docs/architecture.md ("Writing your own layer") has a worked, tested example, and
:func:`mlplab.gradcheck.check_layer` checks a backward against numerical gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import DTypeLike

from mlplab._validation import check_range, check_seed, is_int
from mlplab.blas import gemm_tn

if TYPE_CHECKING:
    from mlplab.optim import Momentum


class Layer:
    """Base class: a differentiable map with optional parameters.

    A subclass implements:

    * ``forward(x, train=True) -> out``: ``x`` (N, D) in the model's dtype; keep in ``self``
      whatever ``backward`` needs (the cache). ``train`` is False in evaluation (dropout and
      batch norm behave differently); most layers ignore it.
    * ``backward(dout) -> dx``: ``dout`` = dL/d(out), shaped like ``out``; return dL/dx, shaped
      like ``x``, and write each parameter's gradient into ``self.grads[key]`` (same keys and
      shapes as ``self.params``).

    Rules of the engine, which the optimised built-in layers use and a new layer may ignore:
    a layer may overwrite its input ``x`` (the activations here work in place) and may consume
    ``dout``; its ``out`` need only stay valid until its next ``forward``. So a layer must not
    assume that the ``x`` it cached is unchanged if the *next* layer works in place: cache what
    you need (``self._out``, a copy) or, like the built-in activations, work in place yourself.
    To gradient-check such a layer, pass copies (:func:`mlplab.gradcheck.check_layer` does).

    Keep the dtype: return float32 for float32 input. NumPy 2 promotes a float32 array times a
    NumPy float64 *scalar* (``np.sqrt(2 / np.pi)``, ``np.pi``) to float64, which the next layer
    then casts back at a cost; use Python floats or ``x.dtype.type(c)``.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._buffers: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
        """A scratch array reused while the batch shape stays the same."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            self._buffers[name] = buf
        return buf

    def _zeros_row(self, x: np.ndarray) -> np.ndarray:
        """A row of zeros shaped like a row of ``x`` (made once per shape), for ``np.maximum`` and
        ``np.minimum`` against 0: with the scalar 0 as operand NumPy takes a slow loop (75 us
        against 32 us on a 200 x 1000 float32 batch, NumPy 2.4). Read only."""
        zeros = self._buffers.get("zeros")
        if zeros is None or zeros.shape != x.shape[1:] or zeros.dtype != x.dtype:
            zeros = self._buffers["zeros"] = np.zeros(x.shape[1:], x.dtype)
        return zeros

    def __getstate__(self) -> dict:
        # pickle parameters, not scratch buffers or the last batch's caches (which may be large,
        # and after unpickling from a read-only memory map would be unwritable buffers)
        return {k: ({} if k == "_buffers" else None) if k.startswith("_") else v
                for k, v in self.__dict__.items()}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes})"


class Affine(Layer):
    """Fully-connected layer: ``out = x @ W + b``; ``x`` (N, D), ``W`` (D, H), ``b`` (H,), ``out``
    (N, H).

    Backward (from ``out_nh = sum_d x_nd W_dh + b_h``): ``dW = x^T dout`` (D, H),
    ``db = sum_rows(dout)`` (H,), ``dx = dout W^T`` (N, D). With ``need_dx=False`` (the first
    layer of a network) the input gradient, a full (N, D) product, is skipped.

    Reading the code: ``scale``, ``grad_decay`` and ``weight_grad_decay`` are 1, 0 and None
    except inside ``Momentum.fused`` (the trainer's momentum speed-up), so ``forward`` is
    ``matmul`` + bias and ``backward`` is the three formulas above (``gemm_tn(x, dout, dW, beta=0)``
    is ``dW[...] = x.T @ dout`` without a temporary).
    """

    # Set by mlplab.optim.Momentum.fused for one training run, never saved with the model:
    # backward writes grads = grad_decay * grads + gradient (0: a plain overwrite), which makes
    # the gradient buffers momentum's velocities; weight_grad_decay, when set, replaces it for W.
    grad_decay: float = 0.0
    weight_grad_decay: float | None = None
    # The weights in use are scale * W (Bottou's trick: momentum folds the L2 shrinkage into
    # this number instead of a pass over W); 1 outside Momentum.fused, where W is the weights.
    scale: float = 1.0
    l2_by_optimizer: bool = False  # the model then leaves the L2 gradient of W to the optimiser
    folded_by: Momentum | None = None  # whose scale this is (it settles it: Momentum.settle)

    def __init__(self, W: np.ndarray, b: np.ndarray | None, need_dx: bool = True) -> None:
        super().__init__()
        if W.ndim != 2 or (b is not None and b.shape != (W.shape[1],)):
            raise ValueError(f"Affine needs W (D, H) and b (H,); got {W.shape} and "
                             f"{None if b is None else b.shape}.")
        # b=None: no bias, for a layer followed by batch norm (whose mean subtraction cancels it)
        self.params = {"W": W} if b is None else {"W": W, "b": b}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.need_dx = need_dx
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        W = self.params["W"]
        out = self._buffer("out", (x.shape[0], W.shape[1]), W.dtype)
        np.matmul(x, W, out=out)
        if self.scale != 1:
            out *= W.dtype.type(self.scale)
        if "b" in self.params:
            out += self.params["b"]
        self._x = x
        return out

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        for training_only in ("grad_decay", "weight_grad_decay", "l2_by_optimizer", "folded_by"):
            state.pop(training_only, None)  # Momentum.fused's, for one run: not the model's
        if self.scale != 1:  # a copy taken mid-epoch holds the weights in use, at scale 1
            W = self.params["W"]
            state["params"] = {**self.params, "W": W * W.dtype.type(self.scale)}
            state.pop("scale", None)
        return state

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        x, W = self._x, self.params["W"]
        if x is None:  # (was "'NoneType' object has no attribute ...")
            raise RuntimeError("Affine.backward() needs a forward() first: it differentiates "
                               "with respect to that input.")
        decay = self.grad_decay if self.weight_grad_decay is None else self.weight_grad_decay
        gemm_tn(x, dout, self.grads["W"], beta=decay)  # x^T dout, the decay inside
        if "b" in self.grads:
            if self.grad_decay:
                db = self.grads["b"]
                db *= db.dtype.type(self.grad_decay)
                db += dout.sum(axis=0)
            else:
                np.sum(dout, axis=0, out=self.grads["b"])
        if not self.need_dx:
            return None
        dx = self._buffer("dx", x.shape, W.dtype)
        np.matmul(dout, W.T, out=dx)
        if self.scale != 1:
            dx *= W.dtype.type(self.scale)
        return dx


class ReLU(Layer):
    """``max(0, x)``, computed in place; any shape. Backward: ``dx = dout * H(x)`` with H the
    Heaviside step, taken as 0 at x = 0 (read from the output: ``out > 0`` exactly where
    ``x > 0``), also in place on ``dout``."""

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        np.maximum(x, self._zeros_row(x), out=x)
        self._out = x
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout *= self._out > 0
        return dout


class LeakyReLU(Layer):
    """``x`` for x > 0, ``alpha * x`` otherwise, in place; any shape. Backward: ``dx = dout`` where
    x > 0, ``alpha * dout`` elsewhere (the slope at 0 taken as ``alpha``)."""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        self._neg = x <= 0
        x[self._neg] *= x.dtype.type(self.alpha)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout[self._neg] *= dout.dtype.type(self.alpha)
        return dout


class PReLU(Layer):
    """Parametric ReLU (He et al., 2015): ``x`` for x > 0, ``alpha * x`` otherwise, with a learnt
    slope ``alpha`` per unit (``params["alpha"]``, shape (size,), starting at ``init``); in place,
    input (N, size). Backward: ``dx = dout`` where x > 0 and ``alpha * dout`` elsewhere (the slope
    at 0 taken as ``alpha``, as LeakyReLU's); ``dalpha = sum over rows of dout * min(x, 0)``.

    ``MLP(activation="prelu")`` builds one per hidden layer as ``PReLU(size, dtype)``; its slopes
    are the model's ``alpha1, alpha2, ...``, trained by every optimiser and, like biases, left out
    of the L2 penalty (a penalty would pull them towards 0, i.e. towards a plain ReLU).
    """

    def __init__(self, size: int, dtype: DTypeLike = np.float32, init: float = 0.25) -> None:
        super().__init__()
        self.params = {"alpha": np.full(size, init, dtype=dtype)}
        self.grads = {"alpha": np.zeros(size, dtype=dtype)}

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        # kept for the backward pass: x <= 0, where the slope is alpha (min(x, 0) cannot tell
        # x = 0 from x > 0), and min(x, 0), the factor of dalpha; then the output in place:
        # x - min(x, 0) = max(x, 0), plus alpha * min(x, 0)
        zeros = self._zeros_row(x)
        self._nonpositive = np.less_equal(x, zeros, out=self._buffer("nonpositive", x.shape,
                                                                     np.dtype(bool)))
        neg = np.minimum(x, zeros, out=self._buffer("neg", x.shape, x.dtype))
        x -= neg
        scaled = np.multiply(neg, self.params["alpha"], out=self._buffer("scaled", x.shape,
                                                                         x.dtype))
        x += scaled
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        neg = self._buffers["neg"]
        product = np.multiply(dout, neg, out=self._buffers["scaled"])
        product.sum(axis=0, out=self.grads["alpha"])
        # the slope of each element: alpha where x <= 0 (as PyTorch's prelu at 0), 1 elsewhere
        dout *= np.where(self._nonpositive, self.params["alpha"], dout.dtype.type(1))
        return dout


class Tanh(Layer):
    """``tanh(x)``, in place; any shape. Backward ``dx = dout * (1 - tanh(x)^2)``, since
    d tanh/dx = 1 - tanh^2: only the output is cached."""

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        np.tanh(x, out=x)
        self._out = x
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout *= 1 - self._out**2
        return dout


class Sigmoid(Layer):
    """Logistic ``s = 1 / (1 + exp(-x))``, stable for large |x|; any shape. Backward
    ``dx = dout * s (1 - s)``, since ds/dx = exp(-x) / (1 + exp(-x))^2 = s (1 - s)."""

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        # exp(-|x|) never overflows; pick the algebraically equal branch for each sign.
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        self._out = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        s = self._out
        return dout * s * (1 - s)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``p`` and scale the rest by
    ``1/(1-p)`` so that evaluation needs no rescaling. ``frozen=True`` reuses the last mask, which
    makes the layer deterministic for numerical gradient checks.

    Forward ``out = x * m`` with the mask ``m`` (0 or ``1/(1-p)`` per entry); backward
    ``dx = dout * m``, the same mask. Evaluation (``train=False``) is the identity.

    ``seed``, as ``MLP`` takes one: None (fresh entropy) or an integer >= 0 (``MLP`` gives its
    dropout layers ``seed + i``, which may pass 2**32 - 1); a NumPy generator is refused, as
    ``MLP`` and ``build_model`` refuse it."""

    def __init__(self, p: float, seed: int | None = None) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1); got {p}.")
        if seed is not None and not (is_int(seed) and seed >= 0):
            # default_rng took a Generator (and shared its stream): refused, with the hint of
            # how to draw an integer from it, as every other seed of mlplab is
            check_seed(seed)
        self.p = p
        self.rng = np.random.default_rng(seed)
        self.frozen = False
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        if not train or self.p == 0:
            self._mask = None
            return x
        mask = self._mask
        if not (self.frozen and mask is not None and mask.shape == x.shape):
            # into reused buffers, not three fresh activation-sized arrays a step (no faster,
            # measured: the draws themselves take the time; but a step allocates nothing)
            draws = self._buffer("draws", x.shape, np.float32)
            self.rng.random(dtype=np.float32, out=draws)
            mask = self._buffer("mask", x.shape, x.dtype)
            np.greater_equal(draws, np.float32(self.p), out=mask)  # 1 kept, 0 dropped
            mask *= x.dtype.type(1) / x.dtype.type(1 - self.p)
            self._mask = mask
        # not in place: the activation before may have cached x for its backward
        return np.multiply(x, mask, out=self._buffer("out", x.shape, x.dtype))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._mask is not None:
            dout *= self._mask
        return dout


class BatchNorm(Layer):
    """Batch normalisation over the batch axis of (N, D) inputs.

    ``x`` (N, D) -> ``out = gamma * xhat + beta`` with ``xhat = (x - mean) / sigma``,
    ``sigma = sqrt(var + eps)``; ``gamma``, ``beta`` (D,).
    Training normalises with the batch mean and (biased) variance and updates exponential running
    statistics; evaluation uses the running statistics. ``dbeta = sum_rows(dout)``,
    ``dgamma = sum_rows(dout * xhat)``. Backward after a training forward uses the
    compact form ``dx = (gamma / sigma) / N * (N dy - sum(dy) - xhat * sum(dy * xhat))``; after
    an evaluation forward the statistics are constants and the layer is affine:
    ``dx = gamma dy / sigma``. (The compact form follows from the chain rule through ``mean``
    and ``var``, both functions of every row; derived in Ioffe & Szegedy 2015, section 3, and
    CS231n assignment 2's ``batchnorm_backward_alt``.)
    """

    def __init__(self, dim: int, momentum: float = 0.9, eps: float = 1e-5,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__()
        self.params = {"gamma": np.ones(dim, dtype), "beta": np.zeros(dim, dtype)}
        self.grads = {"gamma": np.zeros(dim, dtype), "beta": np.zeros(dim, dtype)}
        self.running_mean = np.zeros(dim, dtype)
        self.running_var = np.ones(dim, dtype)
        self.momentum = momentum
        self.eps = eps

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        gamma, beta = self.params["gamma"], self.params["beta"]
        if train:
            mean = x.mean(axis=0)
            var = x.var(axis=0)
            m = self.momentum
            self.running_mean *= m
            self.running_mean += (1 - m) * mean
            self.running_var *= m
            self.running_var += (1 - m) * var
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        xhat = (x - mean) * inv_std
        self._xhat, self._inv_std, self._train = xhat, inv_std, train
        return xhat * gamma + beta

    def backward(self, dout: np.ndarray) -> np.ndarray:
        xhat, inv_std, gamma = self._xhat, self._inv_std, self.params["gamma"]
        n = dout.shape[0]
        dbeta = dout.sum(axis=0)
        dgamma = (dout * xhat).sum(axis=0)
        self.grads["beta"][...] = dbeta
        self.grads["gamma"][...] = dgamma
        if not self._train:  # normalised by the running statistics, which x does not move
            return dout * (gamma * inv_std)
        return (gamma * inv_std / n) * (n * dout - dbeta - xhat * dgamma)


class SoftmaxCrossEntropy(Layer):
    """Softmax followed by the mean negative log-likelihood, fused.

    ``scores`` (N, K), ``y`` (N,) integer labels. Forward uses log-sum-exp (scores shifted by their
    row maximum, which leaves the softmax unchanged) so that large scores never overflow. The
    fused backward is ``(p - q) / N`` (N, K) with ``q`` the target distribution, computed in
    place on the probabilities. ``q = onehot(y)`` (the exercise) or, with label smoothing ``eps``,
    ``q = (1 - eps) onehot(y) + eps / K``, for which the loss is ``-sum_k q_k log p_k``.
    (The loss is ``logsumexp - score``, not ``-log p``: a probability that rounds to 0 gives a
    large finite loss, not infinity; the exercise's toy data term comes out 2 ulp from its
    ``-log p`` figure, 1.2658570521180537 against ...532.)
    """

    # the last forward's, until backward consumes them (class defaults: not in a pickle)
    _probs: np.ndarray | None = None
    _y: np.ndarray | None = None

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        check_range(label_smoothing, "label_smoothing", 0, 1, high_open=True)
        self.label_smoothing = label_smoothing

    def forward(self, scores: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:  # type: ignore[override]
        """Return probabilities; when ``y`` is given also store the mean loss in ``self.loss``."""
        if isinstance(y, bool | np.bool_):
            # a layer's forward(x, train): as labels, True indexed a column (or broadcast)
            raise TypeError("SoftmaxCrossEntropy.forward(scores, y) takes the labels y (N,) "
                            "second, not a train flag: it is the loss, not a layer with "
                            "forward(x, train). Check its gradient with eval_numerical_gradient "
                            "on f(s) = (forward(s.copy(), y), loss)[1] against "
                            "backward().copy(), taken before it: backward returns the "
                            "probabilities' buffer, which f's forward passes overwrite.")
        n, k = scores.shape
        eps = self.label_smoothing
        z = self._buffer("probs", scores.shape, scores.dtype)
        np.subtract(scores, scores.max(axis=1, keepdims=True), out=z)
        if y is not None:
            # -sum_k q_k log p_k = log(sum exp z) - sum_k q_k z_k   (sum_k q_k = 1)
            target = z[np.arange(n), y].astype(np.float64)
            if eps:
                target = (1 - eps) * target + (eps / k) * z.sum(axis=1, dtype=np.float64)
        np.exp(z, out=z)
        sums = z.sum(axis=1, keepdims=True)
        if y is not None:
            self.loss = float(np.mean(np.log(sums[:, 0], dtype=np.float64) - target))
        z /= sums
        self._probs, self._y = z, y
        return z

    # a loss layer: its backward starts the chain from the scalar loss, not from an array
    def backward(self, dout: float = 1.0) -> np.ndarray:  # type: ignore[override]
        probs, y = self._probs, self._y
        if probs is None:  # (was "'NoneType' object has no attribute 'shape'")
            raise RuntimeError("SoftmaxCrossEntropy.backward() consumes the probabilities of "
                               "the last forward(): call forward() again first.")
        n, k = probs.shape
        eps = self.label_smoothing
        dscores = probs  # consumed: the probabilities are not needed after backward
        if eps:
            dscores -= dscores.dtype.type(eps / k)
        dscores[np.arange(n), y] -= dscores.dtype.type(1 - eps)
        dscores *= dscores.dtype.type(dout / n)
        self._probs = None
        return dscores
