"""How much work each ``--budget`` does.

``quick`` is sized so that the default digits report takes 15-30 s on 2 idle cores (16-24 s
measured; 64-73 s on a busy machine; the README's first command and the tests run it);
``standard`` runs the exercise's own settings on CIFAR-10 in 4-16 minutes on 2 cores (measured:
3.8 on an idle Intel Xeon, 7 on an idle AMD EPYC, 16 on a busy one); ``full`` spends a few hours
for the best numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Budget:
    """The knobs a budget sets. Iteration counts are the exercise's (one minibatch each)."""

    name: str
    #: the exercise's default run ("29%"): iterations at batch 200
    default_iters: int = 1000
    #: tuning: number of Optuna trials
    tune_trials: int = 20
    #: tuning: the largest number of epochs a trial may train, the hidden sizes it may try,
    #: and Optuna's pruner (None, "median" or "hyperband")
    tune_max_epochs: int = 20
    tune_max_hidden: int = 512
    tune_prune: str | None = None
    #: also train the hand-tuned preset ``exercise-tuned`` next to the search's best
    preset_run: bool = True
    #: PyTorch depth study: epochs per network, depths (layers incl. the output layer)
    torch_epochs: int = 10
    torch_depths: tuple[int, ...] = (2, 3, 4, 5)
    #: cap on training images used by tuning trials (None: all); the final runs use all
    tune_max_train: int | None = None

    def search_space(self) -> dict[str, Any]:
        """The exercise's search space (:data:`mlplab.tuning.EXERCISE_SPACE`) within this
        budget's epochs and hidden sizes."""
        from mlplab.tuning import EXERCISE_SPACE

        space = {k: dict(v) if isinstance(v, dict) else v for k, v in EXERCISE_SPACE.items()}
        for knob, cap in (("hidden_size", self.tune_max_hidden), ("epochs", self.tune_max_epochs)):
            p = space[knob]
            if cap <= p["low"]:  # nothing left to search: a fixed value
                space[knob] = int(cap)
                continue
            p["high"] = min(p["high"], cap)
            if p.get("step") and (p["high"] - p["low"]) % p["step"]:
                p["high"] = p["low"] + (p["high"] - p["low"]) // p["step"] * p["step"]
            p["grid"] = [g for g in p.get("grid", []) if g <= p["high"]] or [p["low"]]
        return space

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (JSON-able), as ``report.json`` records the budget."""
        return asdict(self)


BUDGETS: dict[str, Budget] = {
    "quick": Budget("quick", tune_trials=12),
    # tuning trials train on 10,000 images and the median pruner stops hopeless ones early, so
    # the CIFAR-10 search takes a minute or two on 2 cores (73-85 s measured, docs/results.md)
    "standard": Budget("standard", tune_trials=20, tune_max_train=10000, tune_prune="median"),
    "full": Budget("full", tune_trials=60, tune_prune="median"),
}


def get_budget(name: str | Budget) -> Budget:
    """The :class:`Budget` called ``name`` in :data:`BUDGETS` (``quick``, ``standard``,
    ``full``), or ``name`` itself when it is a :class:`Budget` already; a ``ValueError`` naming
    the choices for any other name."""
    if isinstance(name, Budget):
        return name
    try:
        return BUDGETS[name]
    except KeyError:
        raise ValueError(f"unknown budget {name!r}; choose one of {', '.join(BUDGETS)}.") from None
