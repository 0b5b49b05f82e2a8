"""Optimisers with hand-written update rules, applied in place.

The update rules follow PyTorch's conventions (``torch.optim.SGD`` with momentum and Nesterov,
``torch.optim.Adam``/``AdamW``) so that the two can be checked against each other; plain SGD is
the exercise's ``theta <- theta - lr * grad``. The learning rate is an attribute the trainer's
schedule sets before each step.

Updates run in place and allocate nothing: for the large first-layer weights it is memory
traffic, not arithmetic, that costs, so SGD and momentum are written as BLAS level-1 updates
(:mod:`mlplab.blas`: ``axpy`` is ``y += a x`` in one pass), and Adam writes its products into one
reusable scratch array per parameter shape (``_scratch``) instead of fresh temporaries. Momentum
goes one step further inside :meth:`Momentum.fused` (which ``Trainer.fit`` enters): the backward
pass's weight-gradient product accumulates straight into the velocity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from mlplab._validation import check_positive
from mlplab.blas import axpy, gemm_accumulates, scal


class Optimizer:
    """Base class: ``step(params, grads)`` updates every array of ``params`` in place."""

    name = "base"

    def __init__(self, lr: float) -> None:
        check_positive(lr, "learning rate")
        self.lr = lr
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.t = 0
        self._scratch_bufs: dict[tuple, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for name, p in params.items():
            self._update(name, p, grads[name])

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def fused(self, model) -> contextlib.AbstractContextManager:
        """A block within which this optimiser may fold part of its update into ``model``'s
        backward pass (see :meth:`Momentum.fused`); here, nothing changes."""
        return contextlib.nullcontext()

    def _slot(self, name: str, slot: str, like: np.ndarray) -> np.ndarray:
        slots = self.state.setdefault(name, {})
        if slot not in slots:
            slots[slot] = np.zeros_like(like)
        return slots[slot]

    def _scratch(self, like: np.ndarray) -> np.ndarray:
        """A temporary shaped like ``like``, shared by parameters of that shape and reused
        across steps (not state: it holds nothing from one update to the next)."""
        key = (like.shape, like.dtype)
        buf = self._scratch_bufs.get(key)
        if buf is None:
            buf = self._scratch_bufs[key] = np.empty(like.shape, like.dtype)
        return buf

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (for .npz checkpoints)."""
        out = {f"{name}/{slot}": arr.copy() for name, slots in self.state.items()
               for slot, arr in slots.items()}
        out["__t__"] = np.array(self.t)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state.get("__t__", 0))
        self.state = {}
        for key, arr in state.items():
            if key == "__t__":
                continue
            name, slot = key.split("/", 1)
            self.state.setdefault(name, {})[slot] = np.array(arr)


class SGD(Optimizer):
    """``p -= lr * g`` (the exercise)."""

    name = "sgd"

    def _update(self, name, p, g):
        axpy(-self.lr, g, p)


class Momentum(Optimizer):
    """Heavy-ball momentum, PyTorch form: ``v = mu v + g; p -= lr v``."""

    name = "momentum"

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self._bound: dict[str, tuple] = {}  # name -> (layer, key) while fused
        self.momentum = momentum

    @property
    def momentum(self) -> float:
        return self._momentum

    @momentum.setter
    def momentum(self, value: float) -> None:
        if not 0 <= value < 1:
            raise ValueError(f"momentum must be in [0, 1); got {value}.")
        self._momentum = value
        # while fused, a change (a callback's ramp) must reach the next step's backward pass
        for layer, _ in self._bound.values():
            layer.grad_decay = value

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        for name in self._bound:  # checked before anything moves
            if grads.get(name) is not self.state[name]["v"]:
                raise RuntimeError(
                    f"{name}: inside Momentum.fused the model's backward pass accumulates the "
                    "gradient into the velocity itself, so step() needs the model's own "
                    "gradient buffers (the dict _loss_and_grads returns), not copies such as "
                    "model.loss returns; call step() outside the block.")
        super().step(params, grads)

    def _update(self, name, p, g):
        v = self._slot(name, "v", p)
        if name not in self._bound:  # else the backward pass has made v = mu v + g already
            scal(self.momentum, v)
            axpy(1.0, g, v)
        axpy(-self.lr, v, p)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        for name, (layer, key) in self._bound.items():  # keep the layers on the new arrays
            layer.grads[key] = self._slot(name, "v", layer.params[key])

    @contextlib.contextmanager
    def fused(self, model) -> Iterator[None]:
        """Within the block, ``model``'s affine layers write their gradients straight into the
        velocities: their backward pass computes ``v = mu v + x^T dout`` in one BLAS call (the
        scaling rides inside the product, :func:`mlplab.blas.gemm_tn`), the model's L2 term then
        adds ``2 reg W`` to the same buffer, and :meth:`step` is left with ``p -= lr v``. That is
        two passes over every weight matrix fewer per step, for the same arithmetic up to
        rounding. ``Trainer.fit`` trains inside this block.

        Meanwhile the affine layers' gradient buffers *are* the velocities: nothing else may run
        the model's backward pass inside the block (a gradient check would read velocities), and
        :meth:`step` refuses gradients that are not those buffers. Afterwards the layers get back
        the buffers (and settings) they had before. Nothing is fused, and the block changes
        nothing, where it would not pay or could not be exact: without NumPy's own BLAS (the
        fallback product needs a temporary), for a subclass with its own update rule
        (Nesterov's needs ``g`` apart from ``v``), and for a model that does not list its
        fusable parameters (``MLP._fusable_params``: none for a subclass that overrides
        ``_loss_and_grads``, which may change the gradients it returns)."""
        slots = getattr(model, "_fusable_params", lambda: [])()
        if type(self)._update is not Momentum._update or not gemm_accumulates():
            slots = []
        saved = []
        try:
            for name, layer, key in slots:
                saved.append((name, layer, key, layer.grads[key], layer.grad_decay,
                              self._bound.get(name)))
                layer.grads[key] = self._slot(name, "v", layer.params[key])
                layer.grad_decay = self.momentum
                self._bound[name] = (layer, key)
            yield
        finally:  # in reverse, so that nested blocks unwind to what the outer one set
            for name, layer, key, own, decay, outer in reversed(saved):
                layer.grads[key] = own
                layer.grad_decay = decay
                if outer is None:
                    self._bound.pop(name, None)
                else:
                    self._bound[name] = outer


class Nesterov(Momentum):
    """Nesterov momentum, PyTorch form: ``v = mu v + g; p -= lr (g + mu v)``."""

    name = "nesterov"

    def _update(self, name, p, g):
        v = self._slot(name, "v", p)
        scal(self.momentum, v)
        axpy(1.0, g, v)
        axpy(-self.lr, g, p)
        axpy(-self.lr * self.momentum, v, p)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` > 0 gives decoupled decay
    (AdamW: ``p -= lr * wd * p`` before the Adam step)."""

    name = "adam"

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        for label, beta in [("beta1", beta1), ("beta2", beta2)]:
            if not 0 <= beta < 1:
                raise ValueError(f"{label} must be in [0, 1); got {beta}.")
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay

    def _update(self, name, p, g):
        m = self._slot(name, "m", p)
        v = self._slot(name, "v", p)
        t = p.dtype.type
        b1, b2 = t(self.beta1), t(self.beta2)
        if self.weight_decay:
            p *= t(1 - self.lr * self.weight_decay)
        s = self._scratch(p)
        m *= b1
        m += np.multiply(g, 1 - b1, out=s)
        v *= b2
        np.multiply(g, g, out=s)
        s *= 1 - b2
        v += s
        bias1 = 1 - self.beta1**self.t
        bias2 = 1 - self.beta2**self.t
        denom = np.divide(v, t(bias2), out=s)
        np.sqrt(denom, out=denom)
        denom += t(self.eps)
        step = np.divide(m, denom, out=s)
        step *= t(self.lr / bias1)
        p -= step


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam)}


def make_optimizer(name: str, lr: float, **kwargs) -> Optimizer:
    """Build an optimiser by name (``sgd``, ``momentum``, ``nesterov``, ``adam``); extra keyword
    arguments that the optimiser does not take are ignored."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
    cls = OPTIMIZERS[name]
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    return cls(lr, **{k: v for k, v in kwargs.items() if k in accepted and v is not None})
