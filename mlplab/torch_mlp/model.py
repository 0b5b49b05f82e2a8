"""The exercise's network: :class:`MultiLayerPerceptron`, its initialisation (:func:`weights_init`,
:func:`build_model`), the hidden sizes of a network of a given depth (:func:`hidden_for_depth`),
mlplab's L2 term for comparing losses (:func:`l2_penalty`), and the model's defaults from the
SPEC. It is the bottom of the package: the other modules build on it and it imports none of them,
so what the network *is* reads apart from how it is fed, trained, stored or converted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from numpy.typing import DTypeLike
from torch import nn

from mlplab._validation import (
    check_choice,
    check_float_dtype,
    check_hidden_sizes,
    check_int,
    check_positive,
    check_seed,
    is_int,
)

#: the exercise's defaults (SPEC §4)
HIDDEN = (50,)
INIT_STD = 1e-3

INITS = ("exercise", "default")


def check_dropout(dropout: float) -> None:
    """Raise a ``ValueError`` unless ``dropout`` is a probability in [0, 1) (NaN included)."""
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}.")


class MultiLayerPerceptron(nn.Module):
    """The exercise's network: ``Linear(in, h) -> ReLU`` for each ``h`` in ``hidden_layers``, then
    ``Linear(h_last, num_classes)``; :meth:`forward` flattens its input to (N, input_size) and
    returns logits (``CrossEntropyLoss`` applies the softmax).

    Beyond the exercise: ``batchnorm=True`` puts ``BatchNorm1d`` after each hidden ``Linear``
    (which then has no bias: the normalisation's mean subtraction cancels it, as in
    :class:`mlplab.MLP`), and ``dropout > 0`` adds ``Dropout`` after each hidden ReLU. Weights
    start with PyTorch's default initialisation; ``model.apply(weights_init)`` gives the
    exercise's (or use :func:`build_model`).
    """

    def __init__(self, input_size: int, hidden_layers: int | Sequence[int], num_classes: int,
                 dropout: float = 0.0, batchnorm: bool = False) -> None:
        super().__init__()
        hidden = check_hidden_sizes(hidden_layers, "hidden_layers")  # (an integer: one layer)
        check_int(input_size, "input_size")
        check_int(num_classes, "num_classes", minimum=2)
        check_dropout(dropout)
        self.config: dict[str, Any] = {"input_size": int(input_size), "hidden_layers": hidden,
                       "num_classes": int(num_classes), "dropout": float(dropout),
                       "batchnorm": bool(batchnorm)}
        self.input_size, self.num_classes = int(input_size), int(num_classes)
        layers: list[nn.Module] = []
        sizes = [self.input_size, *hidden]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers.append(nn.Linear(fan_in, fan_out, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(fan_out))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], self.num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.reshape(x.shape[0], -1))

    @property
    def linears(self) -> list[nn.Linear]:
        """The ``Linear`` layers, input to output."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    @property
    def batchnorms(self) -> list[nn.BatchNorm1d]:
        return [m for m in self.layers if isinstance(m, nn.BatchNorm1d)]

    @property
    def depth(self) -> int:
        """Number of ``Linear`` layers: 2 for the exercise's default (one hidden layer)."""
        return len(self.config["hidden_layers"]) + 1


def weights_init(m: nn.Module, std: float = INIT_STD) -> None:
    """The exercise's initialisation, for ``model.apply(weights_init)``: every ``Linear`` weight
    ``normal_(0.0, std)`` (std 1e-3, i.e. variance 1e-6) and its bias 0."""
    if isinstance(m, nn.Linear):
        with torch.no_grad():
            m.weight.normal_(0.0, std)
            if m.bias is not None:
                m.bias.zero_()


def build_model(input_size: int, hidden_layers: int | Sequence[int] = HIDDEN,
                num_classes: int = 10, *, init: str = "exercise", std: float = INIT_STD,
                dropout: float = 0.0, batchnorm: bool = False, seed: int | None = 0,
                dtype: torch.dtype | DTypeLike = torch.float32) -> MultiLayerPerceptron:
    """A :class:`MultiLayerPerceptron` with ``init="exercise"`` (N(0, std^2) weights, zero biases)
    or ``init="default"`` (PyTorch's). With a ``seed`` (None or an integer in [0, 2**32 - 1], as
    :class:`mlplab.MLP` takes it) the draws are reproducible and PyTorch's global random state is
    left as it was. ``dtype`` is ``torch.float32`` (default) or ``torch.float64``, or NumPy's
    spelling of either (``np.float64``, ``"float64"``), as :class:`mlplab.MLP` takes it."""
    check_choice(init, INITS, "init")
    check_positive(std, "init std")
    # checked here, not as torch's "manual_seed expected a long" (a Generator) or a negative
    # seed taken as given, which MLP refuses
    check_seed(seed)
    dtype = torch_float_dtype(dtype)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            # the CPU generator alone (the weights are drawn on the CPU): torch.manual_seed
            # also reseeds every GPU's, which the fork does not put back
            torch.default_generator.manual_seed(seed)
        model = MultiLayerPerceptron(input_size, hidden_layers, num_classes, dropout=dropout,
                                     batchnorm=batchnorm)
        if init == "exercise":
            model.apply(lambda m: weights_init(m, std))
    return model.to(dtype)


def torch_float_dtype(dtype: torch.dtype | DTypeLike) -> torch.dtype:
    """``torch.float32`` or ``torch.float64`` for ``dtype``, given as PyTorch's or NumPy's; a
    ``ValueError`` naming ``dtype`` otherwise (``Module.to(np.float64)`` is a ``TypeError`` that
    lists the signatures of ``to``)."""
    if dtype in (torch.float32, torch.float64):
        return cast(torch.dtype, dtype)
    # the message MLP gives (None too: np.dtype(None) is float64)
    name = check_float_dtype(dtype).name
    return torch.float32 if name == "float32" else torch.float64


def hidden_for_depth(depth: int, hidden_size: int = HIDDEN[0]) -> list[int]:
    """Hidden sizes of a ``depth``-layer network: ``depth - 1`` hidden layers of ``hidden_size``
    ("2 layers" is the exercise's one-hidden-layer net, "5 layers" has four hidden layers)."""
    # 2.5 and "2" are refused, not truncated or converted
    if not is_int(depth) or depth < 1:
        raise ValueError(f"depth counts Linear layers and must be an integer >= 1 (2 = one "
                         f"hidden layer); got {depth!r}.")
    if depth > MAX_DEPTH:
        # 999999 was taken: building the network alone ran for minutes, into gigabytes
        raise ValueError(f"depth {depth} is over {MAX_DEPTH:,} Linear layers: a plain MLP that "
                         "deep does not train (its gradients vanish or explode on the way "
                         "down), and building it takes minutes and gigabytes; the exercise "
                         "studies depths 2 to 5.")
    if not is_int(hidden_size) or hidden_size < 1:
        raise ValueError(f"hidden size must be a positive integer; got {hidden_size!r}.")
    return [int(hidden_size)] * (int(depth) - 1)


#: the deepest network :func:`hidden_for_depth` gives
MAX_DEPTH = 1000


def l2_penalty(model: MultiLayerPerceptron, reg: float) -> torch.Tensor:
    """mlplab's L2 term ``reg * sum ||W||_F^2`` over the ``Linear`` weights (no 0.5, biases not
    penalised), for comparing with :meth:`mlplab.MLP.loss`. Note that Adam's ``weight_decay`` in
    :func:`~mlplab.torch_mlp.training.fit` is not this: it adds ``weight_decay * p`` to the
    gradient of every parameter, biases included, as the exercise's code does."""
    # (a model has its output Linear at least: the sum is a tensor, never sum()'s start 0)
    return reg * cast(torch.Tensor, sum((lin.weight ** 2).sum() for lin in model.linears))


def param_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype
