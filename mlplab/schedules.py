"""Learning-rate schedules: the learning rate as a function of the iteration and epoch.

``exp`` is the exercise's: ``lr * decay ** epoch`` (multiplied by ``decay`` once per epoch). Any
schedule may be preceded by a linear warm-up over ``warmup_iters`` iterations; the schedule then
starts from ``lr`` where the warm-up ends (``exp`` and ``step`` count their epochs from the epoch in
which it ends, which needs ``iters_per_epoch``), so the rate never jumps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlplab._validation import check_choice, check_int, check_positive, check_range

SCHEDULES = ("exp", "step", "cosine", "constant")


@dataclass
class Schedule:
    """``lr_at(iteration, epoch)`` for a base ``lr``.

    kind: ``exp`` (lr * decay^epoch), ``step`` (lr * decay^(epoch // step_epochs)),
    ``cosine`` (from lr to ``min_lr`` over ``total_iters``), ``constant``. After a warm-up of
    ``warmup_iters`` iterations, ``epoch`` counts from the epoch in which the warm-up ends.
    """

    lr: float
    kind: str = "exp"
    decay: float = 0.95
    step_epochs: int = 10
    total_iters: int = 1
    min_lr: float = 0.0
    warmup_iters: int = 0
    iters_per_epoch: int | None = None  # needed by exp and step after a warm-up

    def __post_init__(self) -> None:
        # as TrainConfig checks them, for a Schedule made directly: step_epochs 0 was taken as
        # 1, a negative lr used as given, and a min_lr above lr made the cosine rise
        check_choice(self.kind, SCHEDULES, "schedule")
        check_positive(self.lr, "lr")
        if self.kind in ("exp", "step"):  # named as the argument is ("lr decay" named none)
            check_range(self.decay, "decay", 0, 1, low_open=True)
        check_int(self.step_epochs, "step_epochs")
        check_int(self.total_iters, "total_iters")
        check_int(self.warmup_iters, "warmup_iters", minimum=0)
        check_positive(self.min_lr, "min_lr", allow_zero=True)
        if self.kind == "cosine" and self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr:g}) must not exceed lr ({self.lr:g}): the "
                             "cosine schedule would rise instead of annealing.")
        if self.warmup_iters and self.kind in ("exp", "step") and not self.iters_per_epoch:
            raise ValueError(f"a {self.kind} schedule after a warm-up needs iters_per_epoch, to "
                             "count its epochs from the end of the warm-up.")

    def lr_at(self, iteration: int, epoch: int) -> float:
        """The learning rate of the step after ``iteration`` finished steps, in the epoch after
        ``epoch`` finished epochs (both counted from 0, as :class:`mlplab.trainer.Trainer`
        passes them)."""
        if self.warmup_iters and iteration < self.warmup_iters:
            return self.lr * (iteration + 1) / self.warmup_iters
        if self.warmup_iters and self.kind in ("exp", "step") and self.iters_per_epoch:
            # (iters_per_epoch is set here: __post_init__ refuses a warm-up without it)
            # decay^(epochs since the warm-up ended), not a decay^warmup drop at its end
            epoch -= self.warmup_iters // self.iters_per_epoch
        if self.kind == "exp":
            return self.lr * self.decay**epoch
        if self.kind == "step":
            return self.lr * self.decay ** (epoch // self.step_epochs)
        if self.kind == "cosine":
            span = max(self.total_iters - self.warmup_iters, 1)
            progress = min(max(iteration - self.warmup_iters, 0) / span, 1.0)
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        return self.lr
