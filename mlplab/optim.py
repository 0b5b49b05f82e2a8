"""Optimisers with hand-written update rules, applied in place.

The update rules follow PyTorch's conventions (``torch.optim.SGD`` with momentum and Nesterov,
``torch.optim.Adam``/``AdamW``) so that the two can be checked against each other; plain SGD is
the exercise's ``theta <- theta - lr * grad``. The learning rate is an attribute the trainer's
schedule sets before each step.

Updates run in place and allocate nothing: for the large first-layer weights it is memory
traffic, not arithmetic, that costs, so SGD and momentum are written as BLAS level-1 updates
(:mod:`mlplab.blas`: ``axpy`` is ``y += a x`` in one pass), and Adam writes its products into one
reusable scratch array per parameter shape (``_scratch``) instead of fresh temporaries. Momentum
goes further inside :meth:`Momentum.fused` (which ``Trainer.fit`` enters): the backward pass's
weight-gradient product accumulates straight into the velocity, and the L2 gradient is folded into
a scale of each weight matrix, so the update makes one pass over it instead of two.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplab._validation import Registrars, check_choice, check_new_name, check_positive
from mlplab.blas import axpy, gemm_accumulates, scal

if TYPE_CHECKING:
    from mlplab.layers import Affine
    from mlplab.models import MLP


class Optimizer:
    """Base class: ``step(params, grads)`` updates every array of ``params`` in place."""

    name = "base"
    #: the per-parameter state it keeps (``state[name][slot]``), each made at the first step
    SLOTS: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        check_positive(lr, "learning rate")
        self.lr = lr
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.t = 0
        self._scratch_bufs: dict[tuple, np.ndarray] = {}

    def __repr__(self) -> str:
        # the call that makes it, with the current settings (a notebook cell showing
        # trainer.optimizer printed "<mlplab.optim.Adam object at 0x...>"): the arguments of
        # its __init__ that it keeps under the same name, as a subclass of one's own may not
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        parts = [f"{n}={getattr(self, n)!r}" for n in names if hasattr(self, n)]
        return f"{type(self).__name__}({', '.join(parts)})"

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update every array of ``params`` in place with its gradient ``grads[name]`` (same
        shape); a missing or misshapen gradient is a ``ValueError`` naming the parameter,
        raised before anything moves."""
        check_grads(params, grads)
        self.t += 1
        for name, p in params.items():
            self._update(name, p, grads[name])

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def fused(self, model: MLP, reg: float = 0.0) -> contextlib.AbstractContextManager:
        """A block within which this optimiser may fold part of its update into ``model``'s
        backward pass, and the L2 gradient of penalty ``reg`` into the update (see
        :meth:`Momentum.fused`); here, nothing changes."""
        return contextlib.nullcontext()

    def settle(self) -> None:
        """Inside :meth:`fused`: make the model's stored weights and this optimiser's state the
        true ones again (see :meth:`Momentum.settle`); here, they always are."""

    def flush_subnormals(self, params: dict[str, np.ndarray]) -> None:
        """Set every subnormal entry (0 < |x| < the dtype's smallest normal number) of
        ``params`` and of this optimiser's slots to 0. x86 CPUs compute with such numbers in
        microcode, 17-36x slower per operation and 150x in a product, and Adam with L2 drives
        the weights of always-zero inputs and dead units into that range, where they stay
        (docs/benchmarks.md, "Subnormal numbers"); at 0 they stay 0. Call it with the state
        settled (:meth:`settle`): the trainer does, once per epoch (one pass per array, about
        1.4 ms for a 3072 x 1000 float32 matrix, against 30 ms for one of a step's products)."""
        slots = (arr for by_slot in self.state.values() for arr in by_slot.values())
        for arr in (*params.values(), *slots):
            if arr.dtype.kind == "f":
                # an exact 0 may be among them: written as 0 again (-0.0 as 0.0), nothing else
                small = np.abs(arr) < np.finfo(arr.dtype).tiny
                if small.any():
                    arr[small] = 0

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
        return self._state(copy=True)

    def _state(self, copy: bool) -> dict[str, np.ndarray]:
        out = {f"{name}/{slot}": arr.copy() if copy else arr
               for name, slots in self.state.items() for slot, arr in slots.items()}
        out["__t__"] = np.array(self.t)
        return out

    def _handover_state(self) -> dict[str, np.ndarray]:
        """:meth:`state_dict` with the slot arrays themselves, not copies, for a caller that
        hands them to a new optimiser (whose ``load_state_dict`` copies them) and never steps
        this one again: ``MLPClassifier.partial_fit`` saved every slot twice per call
        otherwise. A subclass with its own ``state_dict`` gets that (it may keep other state)."""
        if type(self).state_dict not in (Optimizer.state_dict, Momentum.state_dict):
            return self.state_dict()
        return self._state(copy=False)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Load :meth:`state_dict`'s arrays; a slot this optimiser does not keep (another
        optimiser's state) is refused rather than used as, say, a velocity."""
        for key in state:
            if key != "__t__" and key.partition("/")[2] not in self.SLOTS:
                raise ValueError(f"{key!r} is not state of the {self.name} optimizer (it keeps "
                                 f"{', '.join(self.SLOTS) or 'none'}); it was saved by another "
                                 "optimizer.")
        self.t = int(state.get("__t__", 0))
        self.state = {}
        for key, arr in state.items():
            if key == "__t__":
                continue
            name, slot = key.split("/", 1)
            self.state.setdefault(name, {})[slot] = np.array(arr)

    def missing_slots(self, params: dict[str, np.ndarray]) -> list[str]:
        """``name/slot`` of the state that any step of ``params`` would have made but that is not
        here: after a loaded state with steps behind it, a damaged one."""
        return [f"{name}/{slot}" for name in params for slot in self.SLOTS
                if slot not in self.state.get(name, {})]


def check_grads(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
    """Raise a ``ValueError`` naming the parameter unless ``grads`` has, for every array of
    ``params``, a gradient of its shape. Checked on every step and before anything moves: a
    missing one was a bare ``KeyError: 'W'`` after the parameters before it had been updated,
    and a gradient that broadcasts (a bias's for a weight matrix) updated every row with it,
    silently. A dict lookup and a tuple comparison per parameter: about 0.1 us each, against
    milliseconds for a step's products."""
    for name, p in params.items():
        g: object = grads.get(name)
        shape = getattr(g, "shape", None)
        if shape != p.shape:
            have = f"shape {shape}" if shape is not None else \
                "none" if g is None else f"a {type(g).__name__}"
            raise ValueError(f"step(params, grads): parameter {name!r} has shape {p.shape} but "
                             f"its gradient grads[{name!r}] is {have}; give each parameter a "
                             f"gradient array of its shape, under its name.")


class SGD(Optimizer):
    """``p -= lr * g`` (the exercise)."""

    name = "sgd"

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        axpy(-self.lr, g, p)


class _Fold:
    """A weight matrix whose L2 term momentum folds into its layer's scale (``Momentum.fused``):
    the weights in use are ``s A`` (``A`` the layer's stored array, ``s = layer.scale``) and the
    velocity is ``p A + q B`` (``B`` the velocity buffer)."""

    __slots__ = ("layer", "key", "l2", "p", "q")

    def __init__(self, layer: Affine, key: str, l2: float) -> None:
        self.layer, self.key, self.l2 = layer, key, l2  # l2: the L2 gradient's factor, 2 reg
        self.p, self.q = 0.0, 1.0

    @property
    def settled(self) -> bool:
        return self.layer.scale == 1.0 and self.p == 0.0 and self.q == 1.0

    def set_form(self, scale: float, p: float, q: float, momentum: float) -> None:
        """Hold the weights as ``scale * A`` and the velocity as ``p A + q B``; the backward pass
        then decays ``B`` by ``momentum * q`` (so that it computes ``mu v + g`` in this form)."""
        self.layer.scale, self.p, self.q = scale, p, q
        self.layer.weight_grad_decay = momentum * q


class Momentum(Optimizer):
    """Heavy-ball momentum, PyTorch form: ``v = mu v + g; p -= lr v``."""

    name = "momentum"
    SLOTS = ("v",)
    #: while L2 is folded, a weight scale that would leave this range is folded back at once
    SCALE_RANGE = (0.5, 2.0)
    #: the slots, besides ``v``, in which ``state_dict`` saves a folded form
    FOLDED_SLOTS = ("folded_W", "folded_v", "fold")

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self._bound: dict[str, tuple] = {}  # name -> (layer, key) while fused
        self._folds: dict[str, _Fold] = {}  # the bound weights whose L2 is folded
        # name -> (A, B, (s, p, q)): the folded form a block was left in (stopped mid-epoch),
        # which state_dict saves beside the settled arrays so that a resumed run continues bit
        # for bit; and the same, loaded by load_state_dict, for the next block
        self._stopped_folded: dict[str, tuple] = {}
        self._resume_folded: dict[str, tuple] = {}
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
        for fold in self._folds.values():
            fold.set_form(fold.layer.scale, fold.p, fold.q, value)

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        for name in self._bound:  # checked before anything moves
            if grads.get(name) is not self.state[name]["v"]:
                raise RuntimeError(
                    f"{name}: inside Momentum.fused the model's backward pass accumulates the "
                    "gradient into the velocity itself, so step() needs the model's own "
                    "gradient buffers (the dict _loss_and_grads returns), not copies such as "
                    "model.loss returns; call step() outside the block.")
        super().step(params, grads)

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        v = self._slot(name, "v", p)
        if name in self._folds:
            self._folded_update(self._folds[name], p, v)
            return
        if name not in self._bound:  # else the backward pass has made v = mu v + g already
            scal(self.momentum, v)
            axpy(1.0, g, v)
        axpy(-self.lr, v, p)

    def _folded_update(self, fold: _Fold, A: np.ndarray, B: np.ndarray) -> None:
        """The update with L2 folded into the layer's scale ``s`` (weights ``W = s A``, velocity
        ``v = p A + q B``; the backward pass has just made ``B <- mu q B + g``). The step
        ``v' = mu v + g + l2 W``, ``W' = W - lr v'`` is then ``v' = c A + B`` with
        ``c = mu p + l2 s`` and ``W' = (s - lr c) A - lr B``: one pass over ``A`` and two
        numbers, where the plain update makes two passes (``v += l2 W``, ``W -= lr v``)."""
        s, lr = fold.layer.scale, self.lr
        c = self.momentum * fold.p + fold.l2 * s
        new_scale = s - lr * c
        low, high = self.SCALE_RANGE
        if low <= new_scale <= high:
            axpy(-lr / new_scale, B, A)
            # v' = c A_old + B = c A_new + (1 + c lr / s') B
            fold.set_form(new_scale, c, 1.0 + c * lr / new_scale, self.momentum)
        else:  # the scale would drift too far (or L2 shrinks W by half a step): unfold here
            axpy(c, A, B)  # B = v'
            scal(s, A)  # A = W
            axpy(-lr, B, A)
            fold.set_form(1.0, 0.0, 1.0, self.momentum)

    def settle(self) -> None:
        """Make every folded layer's stored weights the weights in use (scale 1) and every
        velocity buffer the velocity: three passes per folded weight matrix, so the trainer does
        it once per epoch, before evaluation, checkpoints and ``on_epoch_end``."""
        for name, fold in self._folds.items():
            if fold.settled:
                continue
            A, B, s = fold.layer.params[fold.key], self.state[name]["v"], fold.layer.scale
            scal(s, A)
            scal(fold.q, B)
            axpy(fold.p / s, A, B)  # v = (p / s) W + q B
            fold.set_form(1.0, 0.0, 1.0, self.momentum)

    def _folded_forms(self) -> dict[str, tuple]:
        """Copies of ``(A, B, (s, p, q))`` for every folded weight matrix not settled now."""
        return {name: (fold.layer.params[fold.key].copy(), self.state[name]["v"].copy(),
                       (fold.layer.scale, fold.p, fold.q))
                for name, fold in self._folds.items() if not fold.settled}

    def state_dict(self) -> dict[str, np.ndarray]:
        """The slots as copies, each ``v`` the true velocity; for a weight matrix held folded
        (inside the block, or as the block was left mid-epoch) also that form, from which
        ``load_state_dict`` and the next block continue bit for bit. Changes nothing."""
        return self._state(copy=True)

    def _state(self, copy: bool) -> dict[str, np.ndarray]:
        out = super()._state(copy)
        for name, fold in self._folds.items():
            if not fold.settled:  # a new array either way: the velocity is not stored as such
                A, B = fold.layer.params[fold.key], self.state[name]["v"]
                out[f"{name}/v"] = B * B.dtype.type(fold.q) + A * A.dtype.type(fold.p)
        # (_folded_forms makes copies, and a block's exit leaves copies in _stopped_folded,
        # which no one changes: handed over, they need no second copy)
        forms = self._folded_forms() if self._folds else self._stopped_folded
        for name, (A, B, numbers) in forms.items():
            out.update({f"{name}/folded_W": A.copy() if copy else A,
                        f"{name}/folded_v": B.copy() if copy else B,
                        f"{name}/fold": np.array(numbers, dtype=np.float64)})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.settle()
        folded = {k for k in state if k.split("/", 1)[-1] in self.FOLDED_SLOTS}
        super().load_state_dict({k: v for k, v in state.items() if k not in folded})
        self._stopped_folded = {}
        self._resume_folded = {
            name: (np.array(state[f"{name}/folded_W"]), np.array(state[f"{name}/folded_v"]),
                   tuple(float(x) for x in state[f"{name}/fold"]))
            for name in {k.split("/", 1)[0] for k in folded}
            if all(f"{name}/{slot}" in state for slot in self.FOLDED_SLOTS)}
        for name, (layer, key) in self._bound.items():  # keep the layers on the new arrays
            layer.grads[key] = self._slot(name, "v", layer.params[key])
        if self._folds:  # loaded inside a block: continue from the loaded form now
            self._refold_loaded()

    def _refold_loaded(self) -> None:
        """Continue in the folded forms ``load_state_dict`` read, where each is the form of the
        model's weights and velocity now (as a checkpoint's are); the others stay settled."""
        # the float32 rounding of settling, not another run's arrays
        def near(x: np.ndarray, y: np.ndarray) -> np.bool_:
            return np.linalg.norm(x - y) <= 1e-5 * np.linalg.norm(y) + 1e-30

        for name, (A, B, numbers) in self._resume_folded.items():
            fold = self._folds.get(name)
            if fold is None:
                continue
            W, v = fold.layer.params[fold.key], self.state[name]["v"]
            s, p, q = numbers
            low, high = self.SCALE_RANGE
            if (A.shape == W.shape and B.shape == v.shape and np.isfinite(numbers).all()
                    and low <= s <= high and near(s * A.astype(np.float64), W)
                    and near(p * A.astype(np.float64) + q * B, v)):
                W[...] = A
                v[...] = B
                fold.set_form(s, p, q, self.momentum)
            else:
                warnings.warn(f"{name}: the saved folded form (optimizer/{name}/fold) does not "
                              "belong to these weights; training goes on from the settled "
                              "weights, so it will not repeat the original run bit for bit.",
                              RuntimeWarning, stacklevel=2)
        self._resume_folded = {}

    @contextlib.contextmanager
    def fused(self, model: MLP, reg: float = 0.0) -> Iterator[None]:
        """Within the block, ``model``'s affine layers write their gradients straight into the
        velocities: their backward pass computes ``v = mu v + x^T dout`` in one BLAS call (the
        scaling rides inside the product, :func:`mlplab.blas.gemm_tn`), and :meth:`step` is left
        with ``p -= lr v``. That is two passes over every weight matrix fewer per step, for the
        same arithmetic up to rounding. ``Trainer.fit`` trains inside this block.

        With ``reg > 0``, which must be the ``reg`` of the model's loss inside the block (its
        penalty ``reg ||W||^2``, gradient ``2 reg W``), the L2 term is folded into a number
        instead of a third pass: each affine layer computes with ``scale * W``
        (:class:`mlplab.layers.Affine`), the model leaves the L2 gradient out, and the step
        shrinks the scale (see :meth:`_folded_update`; Bottou, "Stochastic Gradient Descent
        Tricks", 2012, section 5.1, with momentum's velocity carried along). Until :meth:`settle`
        (which the block's exit calls), the stored weights and velocity buffers are not the
        weights and velocities: ``model.state_dict()`` and :meth:`state_dict` give those.

        Meanwhile the affine layers' gradient buffers *are* the velocities: nothing else may run
        the model's backward pass inside the block (a gradient check would read velocities), and
        :meth:`step` refuses gradients that are not those buffers. Afterwards the layers get back
        the buffers (and settings) they had before. Nothing is fused, and the block changes
        nothing, where it would not pay or could not be exact: without NumPy's own BLAS (the
        fallback product needs a temporary), for a subclass with its own update rule
        (Nesterov's needs ``g`` apart from ``v``) or its own ``step`` (which may change the
        gradients it is given), and for a model that does not list its
        fusable parameters (``MLP._fusable_params``: none for a subclass that overrides
        ``_loss_and_grads``, which may change the gradients it returns)."""
        slots: list[tuple[str, Affine, str]] = getattr(model, "_fusable_params", lambda: [])()
        # a subclass's own step() may change the gradients (clip them, say): fused, it would be
        # handed the velocities and change those instead, silently training another rule
        if (type(self)._update is not Momentum._update or type(self).step is not Momentum.step
                or not gemm_accumulates()):
            slots = []
        saved = []
        try:
            for name, layer, key in slots:
                if layer.folded_by is not None:  # an outer block folds this layer: settle it
                    layer.folded_by.settle()
                saved.append((name, layer, key, layer.grads[key], layer.grad_decay,
                              layer.weight_grad_decay, layer.l2_by_optimizer, layer.folded_by,
                              self._bound.get(name), self._folds.pop(name, None)))
                layer.grads[key] = self._slot(name, "v", layer.params[key])
                layer.grad_decay = self.momentum
                self._bound[name] = (layer, key)
                if key == "W":  # the layer's weight attributes: this block's, folded or not
                    fold = _Fold(layer, key, 2 * reg) if reg > 0 else None
                    layer.weight_grad_decay = None
                    layer.l2_by_optimizer = fold is not None
                    layer.folded_by = self if fold else None
                    if fold:
                        fold.set_form(1.0, 0.0, 1.0, self.momentum)
                        self._folds[name] = fold
            self._stopped_folded = {}
            self._refold_loaded()
            yield
        finally:
            # a block left between epochs (a stop, Ctrl-C) keeps its folded form for state_dict
            self._stopped_folded = self._folded_forms()
            self.settle()
            # in reverse, so that nested blocks unwind to what the outer one set
            for (name, layer, key, own, decay, weight_decay, l2, folded_by, outer, fold
                 ) in reversed(saved):
                layer.grads[key] = own
                layer.grad_decay = decay
                layer.weight_grad_decay = weight_decay
                layer.l2_by_optimizer = l2
                layer.folded_by = folded_by
                self._folds.pop(name, None)
                if fold is not None:
                    self._folds[name] = fold
                if outer is None:
                    self._bound.pop(name, None)
                else:
                    self._bound[name] = outer


class Nesterov(Momentum):
    """Nesterov momentum, PyTorch form: ``v = mu v + g; p -= lr (g + mu v)``."""

    name = "nesterov"

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        v = self._slot(name, "v", p)
        scal(self.momentum, v)
        axpy(1.0, g, v)
        axpy(-self.lr, g, p)
        axpy(-self.lr * self.momentum, v, p)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` > 0 gives decoupled decay
    (AdamW: ``p -= lr * wd * p`` before the Adam step)."""

    name = "adam"
    SLOTS = ("m", "v")

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        for label, beta in [("beta1", beta1), ("beta2", beta2)]:
            if not 0 <= beta < 1:
                raise ValueError(f"{label} must be in [0, 1); got {beta}.")
        check_positive(eps, "eps")  # a negative eps could divide by about 0
        check_positive(weight_decay, "weight_decay", allow_zero=True)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
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


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam)}
BUILT_IN_OPTIMIZERS = dict(OPTIMIZERS)


def register_optimizer(cls: type[Optimizer], *, replace: bool = False) -> None:
    """Make ``Trainer(optimizer=cls.name)`` (and :func:`make_optimizer`) use ``cls``.

    ``cls`` subclasses :class:`Optimizer`: it sets ``name``, lists its per-parameter state in
    ``SLOTS`` (kept in ``self._slot(name, slot, p)``, saved in checkpoints), takes the learning
    rate as its first argument and implements ``_update(name, p, g)``, updating ``p`` in place
    with the current ``self.lr`` (the trainer's schedule sets it before each step). The trainer
    builds it with ``lr`` and those of ``momentum``, ``beta1`` and ``beta2`` that its
    ``__init__`` accepts; give any other hyperparameter a default. A name already taken is
    refused unless ``replace=True``. See docs/architecture.md, "Writing your own layer".
    """
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise TypeError(f"register_optimizer needs an Optimizer subclass; got {cls!r}.")
    name = cls.name
    if not isinstance(name, str) or not name.isidentifier() or name == Optimizer.name:
        raise ValueError(f"{cls.__name__} needs its own name (a class attribute such as "
                         f"name = 'rmsprop'); got {name!r}.")
    if cls._update is Optimizer._update and cls.step is Optimizer.step:
        raise TypeError(f"{cls.__name__} implements neither _update(name, p, g) nor step().")
    check_new_name(name, OPTIMIZERS, "optimizer", replace)
    OPTIMIZERS[name] = cls
    _REGISTERED_BY.note(name)


#: the module that called register_optimizer for each name it added (a checkpoint records it)
_REGISTERED_BY = Registrars()


def registering_module(name: str) -> str | None:
    """The module that registered optimiser ``name`` beyond mlplab's own, None for a built-in
    or one registered by a script run as ``__main__`` (which cannot be imported by name)."""
    if BUILT_IN_OPTIMIZERS.get(name) is OPTIMIZERS.get(name):
        return None
    return _REGISTERED_BY.importable(name)


def make_optimizer(name: str, lr: float, **kwargs: Any) -> Optimizer:
    """Build an optimiser by name (``sgd``, ``momentum``, ``nesterov``, ``adam`` or one given to
    :func:`register_optimizer`); extra keyword arguments that the optimiser does not take are
    ignored."""
    check_choice(name, OPTIMIZERS, "optimizer")
    cls = OPTIMIZERS[name]
    accepted = _init_parameters(cls)
    return cls(lr, **{k: v for k, v in kwargs.items() if k in accepted and v is not None})


#: (class, its __init__) -> the names its __init__ takes (inspect.signature: 0.1 ms a call)
_INIT_PARAMETERS: dict[tuple[type, Any], frozenset[str]] = {}


def _init_parameters(cls: type[Optimizer]) -> frozenset[str]:
    key = (cls, cls.__init__)  # a class given a new __init__ is looked at again
    names = _INIT_PARAMETERS.get(key)
    if names is None:
        import inspect

        names = _INIT_PARAMETERS[key] = frozenset(inspect.signature(cls.__init__).parameters)
    return names
