"""The exercise's own checks (Questions 1-3 on the toy problem), computed by the code.

Only the *expected* values below are copied from the exercise; every measured value comes from
running mlplab's engine, so ``mlplab check`` fails if the maths is wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlplab.gradcheck import check_model
from mlplab.models import TwoLayerNet
from mlplab.trainer import TrainingDivergedError

INPUT_SIZE, HIDDEN_SIZE, NUM_CLASSES, NUM_INPUTS = 4, 10, 3, 5

#: expected probabilities of the toy model on the toy data (the exercise's ``correct_scores``)
CORRECT_PROBS = np.array([
    [0.36446210, 0.22911264, 0.40642526],
    [0.47590629, 0.17217039, 0.35192332],
    [0.43035767, 0.26164229, 0.30800004],
    [0.41583127, 0.29832280, 0.28584593],
    [0.36328815, 0.32279939, 0.31391246],
])
CORRECT_LOSS = 1.30378789133  # with reg = 0.05
#: the data term alone (reg = 0), as the exercise prints it
CORRECT_DATA_LOSS = 1.2658570521180532
TOY_REG = 0.05
#: the final toy training loss the exercise's notebook reports ("about 0.0171"); the check is
#: only that it stays below 0.02, since another draw of the minibatches moves it
TOY_LOSS_ABOUT = 0.0171


def toy_model(seed: int | None = 0) -> TwoLayerNet:
    """The exercise's toy model: seed 0, std 0.1, float64 (``seed=None``: from NumPy's global
    stream, as the exercise's notebook draws it after ``np.random.seed(0)``)."""
    return TwoLayerNet(INPUT_SIZE, HIDDEN_SIZE, NUM_CLASSES, std=1e-1, seed=seed,
                       dtype=np.float64)


def toy_data() -> tuple[np.ndarray, np.ndarray]:
    """The exercise's toy data: ``np.random.seed(1); X = 10 * randn(5, 4)``, y = [0, 1, 2, 2, 1]."""
    X = 10 * np.random.RandomState(1).randn(NUM_INPUTS, INPUT_SIZE)
    return X, np.array([0, 1, 2, 2, 1])


def toy_training(X: np.ndarray, y: np.ndarray, seed: int | None = None) -> dict[str, list]:
    """Question 3's toy training (lr 0.1, reg 5e-6, 100 iterations) of a fresh toy model.

    ``seed=None`` draws exactly as the exercise's notebook does: ``np.random.seed(0)`` builds the
    model and the minibatches come from NumPy's global stream that follows, which gives its
    final loss 0.017149607938732093 (the caller's global random state is restored afterwards).
    An integer draws the minibatches from ``RandomState(seed)`` instead."""
    if seed is not None:
        return toy_model().train(X, y, X, y, learning_rate=1e-1, reg=5e-6, num_iters=100,
                                 seed=seed)
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        return toy_model(seed=None).train(X, y, X, y, learning_rate=1e-1, reg=5e-6, num_iters=100)
    finally:
        np.random.set_state(saved)


@dataclass
class CheckResult:
    """One check of :func:`run_checks`: its ``name``, the judged ``value`` (an error, or the
    toy training's final loss), the ``bound`` it must stay below, whether it ``passed``, a
    ``description`` of what was measured, and, where the exercise gives a number, the
    ``measured`` one and the ``expected`` one (a float, or rows of floats for the
    probabilities; None for the gradients, whose reference is computed)."""

    name: str
    value: float
    bound: float
    passed: bool
    description: str
    measured: Any = field(default=None)
    expected: Any = field(default=None)

    def as_dict(self) -> dict:
        """The fields as a dict (JSON-able)."""
        return asdict(self)


def run_checks() -> list[CheckResult]:
    """Questions 1-3 of the exercise on the toy problem, in float64."""
    X, y = toy_data()
    results = []

    probs = toy_model().loss(X)
    diff = float(np.sum(np.abs(probs - CORRECT_PROBS)))
    results.append(CheckResult("Q1 probabilities", diff, 1e-7, diff < 1e-7,
                               "sum |p - correct| of the toy forward pass",
                               probs.tolist(), CORRECT_PROBS.tolist()))

    loss, _ = toy_model().loss(X, y, reg=TOY_REG)
    diff = abs(loss - CORRECT_LOSS)
    results.append(CheckResult("Q1 loss", diff, 1e-10, diff < 1e-10,
                               f"|loss - {CORRECT_LOSS}| with reg {TOY_REG} (loss {loss:.11f})",
                               loss, CORRECT_LOSS))

    # the exercise gives the data term too: with it a wrong total says which term is wrong
    # (a 0.5 on the L2 term, or penalised biases, leave the data term right)
    data_loss, _ = toy_model().loss(X, y, reg=0.0)
    diff = abs(data_loss - CORRECT_DATA_LOSS)
    results.append(CheckResult("Q1 data term", diff, 1e-10, diff < 1e-10,
                               f"|loss - {CORRECT_DATA_LOSS}| with reg 0", data_loss,
                               CORRECT_DATA_LOSS))

    errors = check_model(toy_model(), X, y, reg=TOY_REG)
    for name, err in errors.items():
        results.append(CheckResult(f"Q2 gradient {name}", err, 1e-8, err < 1e-8,
                                   "max relative error vs centred differences (h=1e-5)"))

    description = "final training loss, lr 0.1, reg 5e-6, 100 iterations"
    try:
        final = toy_training(X, y)["loss_history"][-1]
    except TrainingDivergedError as exc:
        # (wrong gradients, say NaN): a failed row beside Q1 and Q2's, which say where, not
        # the trainer's advice to lower a --lr that mlplab check does not have
        where = str(exc).split("; try")[0].rstrip(".")  # (the advice is for mlplab train)
        final = float("nan")
        description = f"the toy training diverged: {where}; see the Q2 gradients above"
    results.append(CheckResult("Q3 toy SGD loss", final, 0.02, final < 0.02, description,
                               final, TOY_LOSS_ABOUT))
    return results
