"""Learning-rate schedules: the learning rate as a function of the iteration and epoch.

``exp`` is the exercise's: ``lr * decay ** epoch`` (multiplied by ``decay`` once per epoch). Any
schedule may be preceded by a linear warm-up over ``warmup_iters`` iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("exp", "step", "cosine", "constant")


@dataclass
class Schedule:
    """``lr_at(iteration, epoch)`` for a base ``lr``.

    kind: ``exp`` (lr * decay^epoch), ``step`` (lr * decay^(epoch // step_epochs)),
    ``cosine`` (from lr to ``min_lr`` over ``total_iters``), ``constant``.
    """

    lr: float
    kind: str = "exp"
    decay: float = 0.95
    step_epochs: int = 10
    total_iters: int = 1
    min_lr: float = 0.0
    warmup_iters: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of "
                             f"{', '.join(SCHEDULES)}.")
        if not 0 < self.decay <= 1 and self.kind in ("exp", "step"):
            raise ValueError(f"lr decay must be in (0, 1]; got {self.decay}.")

    def lr_at(self, iteration: int, epoch: int) -> float:
        if self.warmup_iters and iteration < self.warmup_iters:
            return self.lr * (iteration + 1) / self.warmup_iters
        if self.kind == "exp":
            return self.lr * self.decay**epoch
        if self.kind == "step":
            return self.lr * self.decay ** (epoch // max(self.step_epochs, 1))
        if self.kind == "cosine":
            span = max(self.total_iters - self.warmup_iters, 1)
            progress = min(max(iteration - self.warmup_iters, 0) / span, 1.0)
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        return self.lr
