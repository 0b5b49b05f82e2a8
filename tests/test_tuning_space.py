"""One searched knob's entry in a search space (docs/tuning.md's schema): what each key becomes,
the message for each mistake, and which mistake is named first when an entry has several."""

from __future__ import annotations

import pytest

from mlplab.tuning import Param, SearchSpace


def _param(name, entry):
    return SearchSpace.from_dict({name: entry}).params[name]


def test_steps_that_fit_up_to_rounding_are_accepted():
    """0.1 + 3 * 0.2 is 0.7000000000000001 in floats: the range [0.1, 0.7] with step 0.2 and a
    grid of its steps are what the file means, not a step that misses `high`."""
    param = _param("dropout", {"type": "float", "low": 0.1, "high": 0.7, "step": 0.2,
                               "grid": [0.3, 0.5, 0.7]})
    assert (param.step, param.grid) == (0.2, (0.3, 0.5, 0.7))
    assert _param("reg", {"type": "float", "low": 0, "high": 1, "step": 0.01}).step == 0.01
    assert _param("epochs", {"type": "int", "low": 5, "high": 20, "step": 5}).high == 20


def test_entries_become_params_of_the_knobs_type():
    # a float range keeps float bounds even when YAML wrote integers, and reads 1e-2 as a number
    assert _param("reg", {"type": "float", "low": 0, "high": 1, "step": "1e-2"}) == Param(
        "reg", "float", 0.0, 1.0, False, 0.01)
    assert type(_param("reg", {"type": "float", "low": 0, "high": 1}).low) is float
    # an int range: integral floats are ints, and so is its step
    param = _param("hidden_size", {"type": "int", "low": 8.0, "high": 64, "step": 8.0,
                                   "grid": [8.0, 64]})
    assert param == Param("hidden_size", "int", 8, 64, False, 8, grid=(8, 64))
    assert all(type(v) is int for v in (param.low, param.high, param.step, *param.grid))
    # so does an int range over a float knob
    param = _param("weight_decay", {"type": "int", "low": 0, "high": 3})
    assert param == Param("weight_decay", "int", 0, 3) and type(param.low) is int
    # `type` may be left out when `choices` says it is a categorical; choices are checked values
    assert _param("batch_size", {"choices": [64.0, 128]}) == Param(
        "batch_size", "categorical", choices=(64, 128))
    assert _param("lr", {"type": "float", "low": 1e-3, "high": 1, "log": True}).log is True


@pytest.mark.parametrize("name, entry, message", [
    ("lr", {"low": 0.1, "high": 1}, "space: lr: `type` must be float, int or categorical; "
                                    "got None."),
    ("batch_size", {"type": "categorical", "choices": [64, 64.0]},
     r"space: batch_size: `choices` has duplicates: \[64, 64.0\]."),
    ("batch_size", {"type": "categorical", "choices": 64}, "`choices` must be a non-empty list"),
    ("batchnorm", {"type": "int", "low": 0, "high": 1},
     "batchnorm: a bool knob can only be fixed or categorical"),
    ("lr", {"type": "float", "low": 0.1, "high": 1, "log": "yes"},
     "lr: `log` must be true or false; got 'yes'."),
    ("lr", {"type": "float", "low": 0.1, "high": 1, "step": 0},
     "lr: `step` must be a positive number; got 0."),
    ("epochs", {"type": "int", "low": 1, "high": 9, "step": 1.5},
     "epochs: `step` must be a positive integer; got 1.5."),
    ("epochs", {"type": "int", "low": 1, "high": 9, "step": "two"},
     "epochs: `step` must be a positive integer; got 'two'."),
    ("lr", {"type": "float", "low": 0.1, "high": 1, "grid": 0.5},
     "lr: `grid` must be a non-empty list of values."),
    ("lr", {"type": "float", "low": 0.1, "high": 1, "grid": [0.5, -1]},
     r"lr \(grid\): lr must satisfy 0 < lr"),
    # a step that leaves one value, or misses `high`: Optuna would draw a constant, or warn and
    # lower `high`; grid values off the steps it would run with a warning, duplicates twice
    ("lr", {"type": "float", "low": 0.001, "high": 0.1, "step": 0.5},
     r"lr: `step` 0.5 is larger than the range \[0.001, 0.1\]: only 0.001 could be drawn; make "
     r"`step` smaller, or fix the knob with `lr: 0.001`."),
    ("hidden_size", {"type": "int", "low": 10, "high": 25, "step": 10},
     r"hidden_size: `step` 10 does not divide the range \[10, 25\]: the largest value drawn "
     r"would be 20; make `high` 20 or change `step`."),
    ("lr_decay", {"type": "float", "low": 0.85, "high": 1.0, "step": 0.1},
     r"the largest value drawn would be 0.95; make `high` 0.95"),
    ("hidden_size", {"type": "int", "low": 10, "high": 20, "step": 5, "grid": [12, 15]},
     r"hidden_size: grid values \[12\] are not on the range's steps \(10 plus a multiple of "
     r"`step` 5\), so they could not be drawn."),
    ("lr", {"type": "float", "low": 0.001, "high": 0.1, "grid": [0.01, 0.01]},
     r"lr: `grid` has duplicates: \[0.01, 0.01\]."),
    ("lr", {"type": "float", "low": "x", "high": 1}, r"lr \(low\): lr must be a finite number"),
    ("lr", {"type": "float", "low": 0.1, "high": [1]}, r"lr \(high\): lr must be a finite number"),
])
def test_each_mistake_is_named(name, entry, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace.from_dict({name: entry}, "space")


@pytest.mark.parametrize("entry, first", [
    # the type before its keys, the keys before any value
    ({"type": "normal", "scale": 1}, "`type` must be"),
    ({"type": "categorical", "choices": [], "low": 1}, "unknown key"),
    ({"type": "float", "low": 1, "high": 0, "scale": 1}, "unknown key"),
    # the knob's type before the bounds
    ({"type": "float", "low": 2, "high": 1}, "integer knob"),
    ({"type": "int", "low": 2}, "needs `low` and `high`"),
    ({"type": "int", "low": 0, "high": 1}, r"depth \(low\): depth must satisfy"),
    # the bounds' order, then `log`, then `step`, then `grid`
    ({"type": "int", "low": 3, "high": 2, "log": "yes"}, "must be below"),
    ({"type": "int", "low": 2, "high": 3, "log": "yes", "step": 0}, "`log` must be"),
    ({"type": "int", "low": 2, "high": 3, "log": True, "step": 0}, "`step` must be a positive"),
    ({"type": "int", "low": 2, "high": 4, "log": True, "step": 2, "grid": 5},
     "`step` and `log` cannot"),
    ({"type": "int", "low": 2, "high": 3, "log": True, "step": 1, "grid": 5},
     "`grid` must be"),  # (step 1, the default, goes with log)
    ({"type": "int", "low": 2, "high": 3, "step": 1, "grid": 5}, "`grid` must be"),
])
def test_the_first_mistake_is_named_first(entry, first):
    with pytest.raises(ValueError, match=first):
        SearchSpace.from_dict({"depth": entry})
