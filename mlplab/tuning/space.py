"""The search-space language: the knobs a trial may set (:data:`KNOBS`), one searched knob's
distribution (:class:`Param`), a whole space (:class:`SearchSpace`) read and checked from a
built-in name, a YAML file or a dict, and the built-in spaces. It needs neither Optuna's storage
nor any data, so a space is validated before anything else starts; see ``docs/tuning.md`` for the
YAML schema.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplab._text import agree
from mlplab._validation import plugin_hint, setting
from mlplab.trainer import TrainConfig

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Knob:
    """One thing a trial may set: where it goes (``model`` or ``train``), its value type and the
    range of legal values (``lo``/``hi`` inclusive unless ``hi_open``; ``choices`` for strings,
    which may be a registry read at each check, so that names registered later are legal)."""

    target: str
    kind: str  # "int", "float", "str" or "bool"
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    # not hashed: a registry is a dict (a frozen dataclass stays hashable on the other fields)
    choices: Collection[str] = field(default=(), hash=False)
    help: str = ""

    def check(self, name: str, value: Any, where: str) -> Any:
        """``value`` converted to this knob's type, or a ValueError saying what is allowed."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{where}: {name} must be true or false; got {value!r}.")
            return value
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                # a registry (dict) grows with the user's registrations: say how to load them
                hint = plugin_hint() if isinstance(self.choices, dict) else ""
                raise ValueError(f"{where}: {name} must be one of {', '.join(self.choices)}; "
                                 f"got {value!r}.{hint}")
            return value
        number = _number(value)
        if (number is None or not math.isfinite(number)
                or (self.kind == "int" and not float(number).is_integer())):
            what = "an integer" if self.kind == "int" else "a finite number"
            raise ValueError(f"{where}: {name} must be {what}; got {value!r}.")
        number = int(number) if self.kind == "int" else float(number)
        low_bad = self.lo is not None and (number <= self.lo if self.lo_open else number < self.lo)
        high_bad = self.hi is not None and (number >= self.hi if self.hi_open else number > self.hi)
        if low_bad or high_bad:
            lo = "" if self.lo is None else f"{self.lo:g} {'<' if self.lo_open else '<='} "
            hi = "" if self.hi is None else f" {'<' if self.hi_open else '<='} {self.hi:g}"
            raise ValueError(f"{where}: {name} must satisfy {lo}{name}{hi}; got {value!r}.")
        return number


def _knobs() -> dict[str, Knob]:
    from mlplab.init import INITS
    from mlplab.models import ACTIVATIONS
    from mlplab.optim import OPTIMIZERS
    from mlplab.schedules import SCHEDULES

    return {
        # the model
        "hidden_size": Knob("model", "int", 1, help="units in each hidden layer"),
        "depth": Knob("model", "int", 1, help="number of hidden layers (each hidden_size wide)"),
        # the registries themselves: register_activation/register_optimizer add choices
        "activation": Knob("model", "str", choices=ACTIVATIONS),
        "init": Knob("model", "str", choices=tuple(INITS)),
        "std": Knob("model", "float", 0, lo_open=True, help="std of the 'normal' init"),
        "dropout": Knob("model", "float", 0, 1, hi_open=True),
        "batchnorm": Knob("model", "bool"),
        # the training
        "optimizer": Knob("train", "str", choices=OPTIMIZERS),
        "lr": Knob("train", "float", 0, lo_open=True, help="initial learning rate"),
        "momentum": Knob("train", "float", 0, 1, hi_open=True),
        "beta1": Knob("train", "float", 0, 1, hi_open=True),
        "beta2": Knob("train", "float", 0, 1, hi_open=True),
        "weight_decay": Knob("train", "float", 0),
        "schedule": Knob("train", "str", choices=tuple(SCHEDULES)),
        "lr_decay": Knob("train", "float", 0, 1, lo_open=True, help="lr factor per epoch"),
        "step_epochs": Knob("train", "int", 1),
        "warmup_epochs": Knob("train", "float", 0),
        "min_lr": Knob("train", "float", 0),
        "reg": Knob("train", "float", 0, help="L2 strength (no 0.5 factor)"),
        "batch_size": Knob("train", "int", 1),
        "epochs": Knob("train", "int", 1),
        "sampling": Knob("train", "str", choices=("shuffle", "replacement")),
        "patience": Knob("train", "int", 1, help="early stopping on validation accuracy"),
    }


KNOBS: dict[str, Knob] = _knobs()


def train_config(settings: Mapping[str, Any], seed: int | None = 0) -> TrainConfig:
    """The :class:`TrainConfig` of a trial's ``settings`` (knob -> value): its training knobs,
    with ``seed`` (the model's knobs build the model). One function for the trial
    (:func:`mlplab.tuning.objective.build`) and the check that a space can configure one
    (:func:`mlplab.tuning.workable.check_configuration`), so that the check sees the trial's
    configuration."""
    train_kw = {k: v for k, v in settings.items() if KNOBS[k].target == "train"}
    return TrainConfig(**{**train_kw, "seed": seed})

#: the exercise's knobs (Question 3b): hidden size, learning rate, epochs, batch size,
#: regularisation and learning-rate decay; ``grid`` gives the values the grid sampler tries
EXERCISE_SPACE: dict[str, Any] = {
    "hidden_size": {"type": "int", "low": 32, "high": 512, "log": True,
                    "grid": [50, 100, 200, 400]},
    "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True, "grid": [1e-3, 1e-2, 1e-1]},
    "reg": {"type": "float", "low": 1e-6, "high": 0.1, "log": True, "grid": [1e-5, 1e-3, 1e-2]},
    "batch_size": {"type": "categorical", "choices": [64, 128, 200, 300]},
    "epochs": {"type": "int", "low": 5, "high": 20, "step": 5, "grid": [5, 10, 20]},
    "lr_decay": {"type": "float", "low": 0.85, "high": 1.0, "grid": [0.9, 0.95, 1.0]},
    "optimizer": "sgd",
}

#: the exercise's knobs plus the optimiser, depth and dropout
EXTENDED_SPACE: dict[str, Any] = {
    **EXERCISE_SPACE,
    "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True, "grid": [1e-3, 1e-2]},
    "optimizer": {"type": "categorical", "choices": ["sgd", "momentum", "adam"]},
    "depth": {"type": "int", "low": 1, "high": 3},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5, "grid": [0.0, 0.25]},
}

BUILTIN_SPACES = {"exercise": EXERCISE_SPACE, "extended": EXTENDED_SPACE}

_SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step", "grid"},
    "int": {"type", "low", "high", "log", "step", "grid"},
    "categorical": {"type", "choices"},
}
#: largest grid an int range is expanded to when the grid sampler needs it
_MAX_INT_GRID = 64


@dataclass(frozen=True)
class Param:
    """One searched knob: ``float``/``int`` in ``[low, high]`` (``log``, ``step``) or
    ``categorical`` over ``choices``; ``grid`` lists the values the grid sampler tries."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] | None = None

    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` of a float or int knob (both set for those: the parser requires
        them)."""
        assert self.low is not None and self.high is not None, f"{self.name} has no range"
        return self.low, self.high

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        low, high = self.bounds()
        if self.type == "int":
            return trial.suggest_int(self.name, int(low), int(high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, low, high, step=self.step, log=self.log)

    def grid_values(self, where: str = "search space") -> list[Any]:
        """The values the grid sampler tries; ``where`` names the space in an error (its file)."""
        if self.grid is not None:
            return list(self.grid)
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int" and not self.log:
            low, high = self.bounds()
            values = list(range(int(low), int(high) + 1, int(self.step or 1)))
            if len(values) <= _MAX_INT_GRID:
                return values
        tpe = setting("--sampler tpe", "sampler='tpe'")
        raise ValueError(f"{where}: the grid sampler needs a finite list of values for "
                         f"{self.name}; add `grid: [...]` to its entry (or use {tpe}).")

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        if self.grid is not None:
            out["grid"] = list(self.grid)
        return out


class _DuplicateKey(Exception):
    """A key given twice in one mapping of a YAML file (the message says which, and where)."""


@functools.cache
def _unique_key_loader() -> type:
    """PyYAML's safe loader refusing a key given twice in one mapping, which it reads as the
    last one given: `lr` searched in one line and fixed in a later one was silently fixed."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # (`<<: *base` may be overridden)
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    earlier = seen.get(key)
                except TypeError:  # (a list as a key: PyYAML's own error says so)
                    continue
                if earlier is not None:
                    where = f"line {line}" if earlier == line else f"lines {earlier} and {line}"
                    raise _DuplicateKey(f"the key {key!r} is given twice ({where}), and YAML "
                                        "would keep only the last one; remove the other.")
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


class SearchSpace:
    """What a trial searches (``params``) and what it fixes (``fixed``), both keyed by knob name
    (:data:`KNOBS`). Build with :meth:`load` (a built-in name, a YAML file or a dict)."""

    def __init__(self, params: Mapping[str, Param], fixed: Mapping[str, Any],
                 where: str = "search space") -> None:
        self.params = dict(params)
        self.fixed = dict(fixed)
        self.where = where  # how errors name it: its YAML file, as those of reading it do

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, spec: SearchSpace | Mapping[str, Any] | str | os.PathLike | None
             ) -> SearchSpace:
        """``None`` or ``"exercise"``: the default; ``"extended"``: plus optimiser, depth and
        dropout; a path: a YAML file; a dict: the same schema as the YAML file."""
        if isinstance(spec, SearchSpace):
            return spec
        if spec is None:
            return cls.from_dict(EXERCISE_SPACE, "built-in search space 'exercise'")
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        if isinstance(spec, str) and spec in BUILTIN_SPACES:
            return cls.from_dict(BUILTIN_SPACES[spec], f"built-in search space {spec!r}")
        if not str(spec):  # Path("") is ".": "search space file . is a folder" named no typo
            raise ValueError(f"the search space is an empty text; give a YAML file, one of the "
                             f"built-in spaces ({', '.join(BUILTIN_SPACES)}), or None for the "
                             "default.")
        return cls.from_yaml(spec)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> SearchSpace:
        import yaml

        path = Path(path)
        if not path.is_file():
            from mlplab.io import special_file

            # (a FIFO or device exists: "does not exist" sent the user looking for a typo)
            kind = special_file(path)
            what = "is a folder, not a file" if path.is_dir() else \
                f"is {kind}, not a regular file" if kind else "does not exist"
            raise ValueError(f"search space file {path} {what} (give a YAML file, or "
                             f"one of the built-in spaces: {', '.join(BUILTIN_SPACES)}).")
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_key_loader())
        except _DuplicateKey as exc:
            raise ValueError(f"{path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
        except UnicodeDecodeError as exc:  # alone, the codec's message names no file
            raise ValueError(f"{path} is not a UTF-8 text file ({exc.reason} at byte "
                             f"{exc.start}).") from None
        if data is None:  # (an empty file, or comments only: it said "got NoneType")
            raise ValueError(f"{path} holds nothing (it is empty, or only comments); give a "
                             "mapping of knob names to distributions, e.g. `lr: {type: float, "
                             "low: 1.0e-4, high: 0.1, log: true}`.")
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "search space") -> SearchSpace:
        if not isinstance(data, Mapping) or not data:
            # (an empty mapping was "got dict", after "expected a mapping")
            got = "an empty mapping" if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"{where}: expected a mapping of knob names to distributions, "
                             f"e.g. `lr: {{type: float, low: 1.0e-4, high: 0.1, log: true}}`; "
                             f"got {got}.")
        params: dict[str, Param] = {}
        fixed: dict[str, Any] = {}
        for name, spec in data.items():
            if name not in KNOBS:
                raise ValueError(f"{where}: unknown knob {name!r}; known knobs: "
                                 f"{', '.join(KNOBS)}.")
            knob = KNOBS[name]
            if isinstance(spec, Mapping):
                params[name] = _parse_param(name, spec, knob, where)
            elif isinstance(spec, list):  # shorthand for a categorical
                params[name] = _parse_param(name, {"type": "categorical", "choices": spec},
                                            knob, where)
            else:
                fixed[name] = knob.check(name, spec, where)
        if not params:
            raise ValueError(f"{where}: nothing to search; give at least one knob a "
                             "distribution (a mapping with `type`) or a list of choices.")
        depth_max = _max_value(params.get("depth"), fixed.get("depth", 1))
        if depth_max > 1 and "hidden_size" not in params and "hidden_size" not in fixed:
            raise ValueError(f"{where}: depth > 1 needs hidden_size too.")
        return cls(params, fixed, where)

    # ------------------------------------------------------------------ use
    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's settings: every searched knob suggested by ``trial``, plus the fixed."""
        values = {name: p.suggest(trial) for name, p in self.params.items()}
        return {**self.fixed, **values}

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space (every searched knob's ``grid`` values)."""
        return {name: p.grid_values(self.where) for name, p in self.params.items()}

    def max_epochs(self) -> int:
        """The most epochs any trial can run (Hyperband's maximum resource)."""
        return int(_max_value(self.params.get("epochs"),
                              self.fixed.get("epochs", TrainConfig().epochs)))

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form (round-trips through :meth:`from_dict`)."""
        return {**self.fixed, **{n: p.to_dict() for n, p in self.params.items()}}

    def values_of(self, knob: str) -> set[Any]:
        """The values a trial may give ``knob``: its fixed value, or a categorical's choices
        (empty when the space leaves it at the default or searches a range)."""
        if knob in self.fixed:
            return {self.fixed[knob]}
        param = self.params.get(knob)
        return set(param.choices) if param is not None else set()

    def __repr__(self) -> str:
        return f"SearchSpace(params={list(self.params)}, fixed={self.fixed})"


def _number(value: Any) -> float | None:
    # PyYAML reads 1e-4 (no dot) as a string; accept it as the number everyone means
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _parse_param(name: str, spec: Mapping[str, Any], knob: Knob, where: str) -> Param:
    where = f"{where}: {name}"
    kind = _distribution_type(spec, where)
    if kind == "categorical":
        return _parse_categorical(name, spec, knob, where)
    return _parse_range(name, spec, knob, kind, where)


def _distribution_type(spec: Mapping[str, Any], where: str) -> str:
    """The entry's ``type`` (``categorical`` when left out beside ``choices``), refused when it
    is not one or the entry has keys that type does not take."""
    kind = spec.get("type")
    if kind is None:
        kind = "categorical" if "choices" in spec else None
    if kind not in _SPEC_KEYS:
        raise ValueError(f"{where}: `type` must be float, int or categorical; got {kind!r}.")
    unknown = set(spec) - _SPEC_KEYS[kind]
    if unknown:
        raise ValueError(f"{where}: unknown {agree(len(unknown), 'key', 'keys')} "
                         f"{', '.join(sorted(map(str, unknown)))} for a "
                         f"{kind} distribution; allowed: {', '.join(sorted(_SPEC_KEYS[kind]))}.")
    return kind


def _parse_categorical(name: str, spec: Mapping[str, Any], knob: Knob, where: str) -> Param:
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError(f"{where}: `choices` must be a non-empty list.")
    checked = tuple(knob.check(name, c, where) for c in choices)
    if len(set(checked)) != len(checked):
        raise ValueError(f"{where}: `choices` has duplicates: {choices}.")
    return Param(name, "categorical", choices=checked)


def _parse_range(name: str, spec: Mapping[str, Any], knob: Knob, kind: str,
                 where: str) -> Param:
    """A ``float`` or ``int`` range: its bounds, then ``log``, ``step`` and ``grid``."""
    if knob.kind not in ("int", "float"):
        raise ValueError(f"{where}: a {knob.kind} knob can only be fixed or categorical "
                         f"(`choices: [...]`), not a {kind} range.")
    if knob.kind == "int" and kind == "float":
        raise ValueError(f"{where}: is an integer knob; use `type: int`.")
    low, high = _range_bounds(name, spec, knob, kind, where)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{where}: `log` must be true or false; got {log!r}.")
    if log and low <= 0:
        raise ValueError(f"{where}: a log-uniform range needs `low` > 0; got {low}.")
    step = _range_step(spec.get("step"), kind, log, where)
    if step is not None:
        _check_step_fits(name, low, high, step, where)
    grid = _range_grid(name, spec.get("grid"), knob, low, high, where, step)
    if kind == "float":
        low, high = float(low), float(high)
    return Param(name, kind, low, high, log, step, grid=grid)


def _range_bounds(name: str, spec: Mapping[str, Any], knob: Knob, kind: str,
                  where: str) -> tuple[Any, Any]:
    """``low`` and ``high``, legal values of the knob (ints for an int range), ``low`` below."""
    for key in ("low", "high"):
        if key not in spec:
            raise ValueError(f"{where}: a {kind} distribution needs `low` and `high`.")
    low, high = (knob.check(name, spec[k], f"{where} ({k})") for k in ("low", "high"))
    if kind == "int":
        low, high = int(low), int(high)
    if not low < high:
        raise ValueError(f"{where}: `low` ({low}) must be below `high` ({high}); to fix a knob "
                         f"write `{name}: {low}`.")
    return low, high


def _range_step(step: Any, kind: str, log: bool, where: str) -> int | float | None:
    """``step`` as a positive number of the range's type (None when not given, or an int
    range's default 1); never with ``log`` (but 1, which Optuna allows with it)."""
    if step is None:
        return None
    step_n = _number(step)
    if step_n is None or step_n <= 0 or (kind == "int" and not float(step_n).is_integer()):
        raise ValueError(f"{where}: `step` must be a positive "
                         f"{'integer' if kind == 'int' else 'number'}; got {step!r}.")
    if kind == "int" and step_n == 1:
        return None  # the default: a space written with it is the same space as one without
    if log:
        raise ValueError(f"{where}: `step` and `log` cannot be combined (Optuna's rule).")
    return int(step_n) if kind == "int" else float(step_n)


def _on_steps(value: float, low: float, step: float) -> bool:
    """Whether ``value`` is ``low + k * step`` for a whole k, up to float rounding (0.1 + 2 *
    0.1 is 0.30000000000000004)."""
    k = (value - low) / step
    return abs(k - round(k)) <= 1e-9 * max(1.0, abs(k))


def _check_step_fits(name: str, low: Any, high: Any, step: float, where: str) -> None:
    """Refuse a ``step`` that leaves one value, or that does not reach ``high``: Optuna would
    draw a constant, or warn and move ``high`` down, where the file said otherwise."""
    span = (high - low) / step
    if span < 1:
        raise ValueError(f"{where}: `step` {step} is larger than the range [{low}, {high}]: only "
                         f"{low} could be drawn; make `step` smaller, or fix the knob with "
                         f"`{name}: {low}`.")
    if not _on_steps(high, low, step):
        top = low + int(span) * step
        top_text = str(top) if isinstance(top, int) else repr(float(f"{top:.12g}"))
        raise ValueError(f"{where}: `step` {step} does not divide the range [{low}, {high}]: "
                         f"the largest value drawn would be {top_text}; make `high` {top_text} "
                         "or change `step`.")


def _range_grid(name: str, grid: Any, knob: Knob, low: Any, high: Any, where: str,
                step: float | None = None) -> tuple[Any, ...] | None:
    """``grid`` as the knob's checked values, all inside ``[low, high]``, different, and on the
    range's ``step``s (None when not given): the grid sampler tries each, and Optuna runs a
    value its distribution cannot draw with only a warning."""
    if grid is None:
        return None
    if not isinstance(grid, list) or not grid:
        raise ValueError(f"{where}: `grid` must be a non-empty list of values.")
    grid = tuple(knob.check(name, g, f"{where} (grid)") for g in grid)
    outside = [g for g in grid if not low <= g <= high]
    if outside:
        raise ValueError(f"{where}: grid values {outside} lie outside [{low}, {high}].")
    if len(set(grid)) != len(grid):  # each would be a trial of its own, the same twice
        raise ValueError(f"{where}: `grid` has duplicates: {list(grid)}.")
    off = [g for g in grid if step is not None and not _on_steps(g, low, step)]
    if off:
        raise ValueError(f"{where}: grid values {off} are not on the range's steps ({low} plus "
                         f"a multiple of `step` {step}), so they could not be drawn.")
    return grid


def _max_value(param: Param | None, fixed: Any) -> float:
    if param is None:
        return fixed if fixed is not None else 1
    if param.type == "categorical":
        return max(param.choices)
    return param.bounds()[1]
