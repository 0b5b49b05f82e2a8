"""Whether a search space can configure any trial at all: :func:`never_configures` tells a space
whose knobs cannot work together whatever values the sampler draws (a fixed ``weight_decay``
with a fixed ``optimizer: sgd``) from one where only some draws fail (a cosine ``min_lr`` above
a searched ``lr``). The first kind failed every trial, ``max(3, --trials)`` of them, before the
command said so; the search now stops at its first such trial.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from mlplab.trainer import SettingsError, rows_per_batch
from mlplab.tuning.space import Param, SearchSpace, train_config

#: the most points of a space probed: past that (a space of many categorical knobs) the search
#: is left to its failures in a row, as before
MAX_POINTS = 4096


def check_configuration(settings: Mapping[str, Any], train_rows: int) -> None:
    """Raise the :class:`SettingsError` that a trial of ``settings`` (knob -> value) would
    raise before it trains on ``train_rows`` rows, without building its model: the training
    configuration's own checks, and batch norm's rows per batch."""
    config = train_config(settings)
    config.validate()
    rows_per_batch(config, train_rows, bool(settings.get("batchnorm")))


def _probe_values(param: Param) -> list[Any]:
    """The values of ``param`` probed: a categorical's choices, a range's ends and its grid.
    The rules that make knobs clash (a floor above the rate, one row a batch, a decay that needs
    adam) each hold on one side of a threshold, so a range's ends stand for the whole of it."""
    if param.type == "categorical":
        return list(param.choices)
    low, high = param.bounds()
    cast = int if param.type == "int" else float
    return sorted({cast(v) for v in (low, high, *(param.grid or ()))})


def never_configures(space: SearchSpace, train_rows: int) -> bool:
    """Whether every point of ``space`` probed raises a :class:`SettingsError` (so no trial can
    train, whatever the sampler draws); False as soon as one passes, for a point that fails
    otherwise (left to the trial to tell) and for a space of more than :data:`MAX_POINTS`."""
    names = list(space.params)
    values = [_probe_values(space.params[name]) for name in names]
    if math.prod(len(v) for v in values) > MAX_POINTS:
        return False
    for point in itertools.product(*values):
        try:
            check_configuration({**space.fixed, **dict(zip(names, point))}, train_rows)
        except SettingsError:
            continue
        except Exception:  # noqa: BLE001 - not a clash of knobs: not this question's to answer
            return False
        return False
    return True
