"""Input checks shared by every public entry point.

Each check raises ``ValueError`` with a message that names the argument, says what was expected and
what was received, so that a user can fix the call without reading the source.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import reprlib
import sys
import threading
from collections.abc import Collection, Iterable, Iterator
from dataclasses import fields
from typing import TypeGuard

import numpy as np
from numpy.typing import DTypeLike

#: how many commands of the command line are running (see :func:`setting`): a count, not a
#: flag saved and restored by each block, so that two ``main()`` calls in threads that end in
#: another order than they began neither clear it under the one still running nor leave it set.
#: One count for the process, not per thread (a ``ContextVar``): the threads a command starts,
#: such as the image decoder's, word their messages as the command does
_command_lines = 0
_command_lines_lock = threading.Lock()


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Within the block (a command of ``mlplab``'s command line), messages name settings by
    their flags."""
    global _command_lines
    with _command_lines_lock:
        _command_lines += 1
    try:
        yield
    finally:
        with _command_lines_lock:
            _command_lines -= 1


def on_command_line() -> bool:
    """Whether a command of the command line is running in this process (for the processes a
    command starts, which are told so: see :func:`command_line`)."""
    return _command_lines > 0


#: whether this thread builds or trains a tuning trial (see :func:`search_space_names`): a
#: ``ContextVar``, unlike the count above, as a trial is its thread's alone (a worker's thread
#: of another command, were there one, keeps its flags)
_in_trial: contextvars.ContextVar[bool] = contextvars.ContextVar("mlplab_in_trial",
                                                                 default=False)


@contextlib.contextmanager
def search_space_names() -> Iterator[None]:
    """Within the block (a tuning trial's configuration, built and trained), messages name
    settings as a search space spells its knobs (``weight_decay``, ``reg``), even while a command
    of the command line runs: the user wrote them in a search space, where ``mlplab train``'s
    ``--weight-decay`` names nothing."""
    token = _in_trial.set(True)
    try:
        yield
    finally:
        _in_trial.reset(token)


def setting(flag: str, python: str) -> str:
    """How a message tells the user to change a setting: ``flag`` while a command of the command
    line runs (``--out``), ``python`` otherwise (``out``, for a notebook or a script calling
    the function) and within a tuning trial (:func:`search_space_names`), whose knobs are
    spelt so."""
    return flag if on_command_line() and not _in_trial.get() else python


#: rows per block of the finiteness check
_FINITE_BLOCK = 4096


def _all_finite(arr: np.ndarray) -> bool:
    """``np.isfinite(arr).all()`` in row blocks: a boolean mask of a whole training set would
    cost a quarter of its float32 size (150 MB for CIFAR-10) at the start of every fit."""
    return all(np.isfinite(arr[i:i + _FINITE_BLOCK]).all()
               for i in range(0, len(arr), _FINITE_BLOCK))


def _fits(arr: np.ndarray, dtype: np.dtype) -> bool:
    """Whether the finite ``arr`` stays finite once cast to the narrower float ``dtype``; block
    maxima and minima, so no temporary the size of a block."""
    big = float(np.finfo(dtype).max)
    return all(block.max() <= big and block.min() >= -big
               for block in (arr[i:i + _FINITE_BLOCK] for i in range(0, len(arr), _FINITE_BLOCK))
               if block.size)


#: how a model of a wider dtype is had, in messages about a float32 model's range (the
#: estimator, which has no dtype parameter, says its own way instead)
WIDER_MODEL = "use a float64 model (dtype=np.float64)"


def check_X(X: object, n_features: int | None = None, name: str = "X",
            dtype: DTypeLike | None = None, wider: str = WIDER_MODEL) -> np.ndarray:
    """Return ``X`` as a 2-D floating array (N, D) or raise a ``ValueError`` naming the problem.
    With ``dtype`` (the model's), values that the cast to it would turn into infinities are
    refused too: 1e39 is finite in float64 but not in float32 (``wider``: how the caller gets a
    model of a wider dtype)."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        # one sample is a row, not a vector: X.reshape(len(X), -1) would make it a column
        hint = (f"For a single sample use {name}.reshape(1, -1)." if arr.ndim == 1 else
                f"Flatten images first, e.g. {name}.reshape(len({name}), -1)." if arr.ndim > 2
                else "")
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got {arr.ndim}-D "
            f"shape {arr.shape}. {hint}".rstrip()
        )
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must hold numbers; got dtype {arr.dtype}.")
    if n_features is not None and arr.shape[1] != n_features:
        # the exercise's derivation writes a sample as a column: X with a column per sample
        # or one sample in rows (a single image after preprocessing, (H, W * C))
        hint = (f" {name} looks transposed: it needs a row per sample, (n_samples, "
                f"{n_features}); pass {name}.T." if arr.shape[0] == n_features else
                f" {name} holds one sample's {n_features} values in rows; for one sample pass "
                f"{name}.reshape(1, -1)." if arr.size == n_features else "")
        raise ValueError(
            f"{name} has {arr.shape[1]} features but the model expects {n_features} "
            f"(input_size={n_features}).{hint}"
        )
    if arr.dtype.kind == "f" and not _all_finite(arr):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} contains NaN or infinite values (first at row {bad[0]}, column {bad[1]}); "
            "clean or impute the data first."
        )
    target = None if dtype is None else np.dtype(dtype)
    if (target is not None and arr.dtype.kind == "f" and target.kind == "f"
            and arr.dtype.itemsize > target.itemsize and not _fits(arr, target)):
        big = float(np.finfo(target).max)
        bad = np.argwhere(np.abs(arr) > big)[0]
        raise ValueError(
            f"{name} has values beyond {target.name}'s range (+-{big:.4g}; first at row {bad[0]}, "
            f"column {bad[1]}: {arr[bad[0], bad[1]]:g}), which the model computes in; scale the "
            f"data first, or {wider}."
        )
    return arr


#: how to get labels the networks take from labels of any kind
_RELABEL = ("number the classes 0..K-1 first (np.unique(y, return_inverse=True)[1] does), or "
            "use mlplab.MLPClassifier, which takes labels of any kind")


def check_y(y: object, n_samples: int, n_classes: int | None = None, name: str = "y") -> np.ndarray:
    """Return ``y`` as a 1-D integer label array or raise a ``ValueError`` naming the problem."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels; got shape {arr.shape}.")
    if arr.shape[0] != n_samples:
        x_name = "X" + name[1:] if name.startswith("y") else "X"  # y_val goes with X_val
        raise ValueError(f"{name} has {arr.shape[0]} labels but {x_name} has {n_samples} rows.")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class labels; got non-integer values; "
                             f"{_RELABEL}.")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer class labels 0..K-1; got dtype {arr.dtype}; "
                         f"{_RELABEL}.")
    if arr.size and (arr.min() < 0 or (n_classes is not None and arr.max() >= n_classes)):
        hi = "K-1" if n_classes is None else str(n_classes - 1)
        raise ValueError(
            f"{name} has labels out of range [0, {hi}]: min {arr.min()}, max {arr.max()}; "
            f"{_RELABEL}."
        )
    return arr.astype(np.intp, copy=False)


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> None:
    """Raise a ``ValueError`` unless ``value`` is a finite number > 0 (or >= 0)."""
    ok = is_number(value) and bool(np.isfinite(value)) and \
        (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")


def check_choice(value: object, choices: Collection[str], what: str) -> None:
    """Raise a ``ValueError`` ("unknown <what> <value>; choose one of ...") unless ``value`` is one
    of ``choices`` (a tuple of names or a dict keyed by them)."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}.")


#: how Python code adds to each registry that users extend
_REGISTER = {"activation": "mlplab.models.register_activation",
             "optimizer": "mlplab.optim.register_optimizer"}
#: how a command-line user does (mlplab.cli.plugins)
_PLUGIN = ("import the module that registers it before the command: mlplab --plugin MODULE "
           "COMMAND ... (a module name or a .py file), or MLPLAB_PLUGINS=MODULE")


def check_registered(value: object, registry: Collection[str], what: str, where: str,
                     module: object = None) -> None:
    """Refuse an activation or optimiser ``value`` that ``where`` (a model file, a run folder's
    config) names but this process has not registered. Registrations live in the process that
    makes them, so the script that wrote the file may have had one that the reader lacks: the
    message says how to add it, with the register function for Python callers and, on the
    command line, with ``--plugin`` / ``MLPLAB_PLUGINS``, which import the module that registers
    it. ``module``, the module that registered it where the file was written (model files record
    it), is named when it reads as a module name. Values that are not strings are left to the
    full validation."""
    if not isinstance(value, str) or value in registry:
        return
    # read from a file that may be hostile: only a plain dotted name is repeated
    known = isinstance(module, str) and len(module) <= 100 and \
        all(part.isidentifier() for part in module.split("."))
    if known and on_command_line():
        how = (f"the file was written where module {module!r} registered it: mlplab --plugin "
               f"{module} COMMAND ... (or the path of its .py file), or MLPLAB_PLUGINS={module}")
    elif known:
        how = (f"the file was written where module {module!r} registered it: import {module} "
               f"first (or register it with {_REGISTER[what]})")
    elif on_command_line():
        how = f"if it is your own, {_PLUGIN}"
    else:
        how = f"if it is your own, register it first ({_REGISTER[what]})"
    raise ValueError(f"{where}: {what} {value!r} is not registered in this process (known: "
                     f"{', '.join(registry)}); {how}.")


def plugin_hint() -> str:
    """What a command-line message about an unknown activation or optimiser name adds (a search
    space's): it may be one a module of the user's registers. Nothing for Python callers."""
    return f" If it is your own, {_PLUGIN}." if on_command_line() else ""


class Registrars(dict[str, str]):
    """The module that called a register function for each name it added, for the registers of
    activations and optimisers: files record it, so that a reader without the registration can
    be told what to import."""

    def note(self, name: str) -> None:
        """Record the module that called the register function that calls this."""
        self[name] = sys._getframe(2).f_globals.get("__name__", "")

    def importable(self, name: str) -> str | None:
        """The module recorded for ``name``, None if none or ``__main__`` (a script run as
        such cannot be imported by name)."""
        module = self.get(name)
        return module if module and module != "__main__" else None


def check_new_name(name: str, registry: Collection[str], what: str, replace: bool) -> None:
    """Refuse to register ``name`` where ``registry`` has it already, unless ``replace``: one
    rule for the registers of activations, optimisers and presets."""
    if name in registry and not replace:
        raise ValueError(f"{what} {name!r} already exists; pass replace=True to overwrite it.")


def is_int(value: object) -> TypeGuard[int | np.integer]:
    """True for Python and NumPy integers, False for bools, floats and strings."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_bool(value: object) -> TypeGuard[bool | np.bool_]:
    """True for Python and NumPy bools, False for integers and strings ("no" is not false)."""
    return isinstance(value, bool | np.bool_)


def is_number(value: object) -> TypeGuard[int | float | np.integer | np.floating]:
    """True for Python and NumPy integers and floats (NaN included), False for bools and
    strings."""
    return isinstance(value, int | float | np.integer | np.floating) and \
        not isinstance(value, bool | np.bool_)


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` or raise a ``ValueError`` unless it is an integer >=
    ``minimum`` (2.5, "3" and True are refused rather than silently converted)."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_float_dtype(dtype: object) -> np.dtype:
    """``dtype`` as ``np.dtype`` float32 or float64, or a ``ValueError`` naming ``dtype``: the
    check of ``MLP`` and ``torch_mlp.build_model`` alike. None is refused, not read as NumPy
    reads it (``np.dtype(None)`` is float64: a model silently twice the size asked for)."""
    try:
        given = None if dtype is None else np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:  # "bogus", torch.float16: not a NumPy dtype at all
        given = None
    if given is None or given.name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64 (np.float32, np.float64 or their "
                         f"names; a PyTorch model also takes torch.float32, torch.float64); "
                         f"got {dtype!r}.")
    return given


def check_hidden_sizes(sizes: object, name: str = "hidden_sizes") -> list[int]:
    """Return the hidden layer widths ``sizes`` as a list of ``int`` or raise a ``ValueError``,
    naming the argument ``name``, unless every one is an integer >= 1 (a string is refused:
    ``"500"`` is not three layers). An integer is one hidden layer, as ``MLP``,
    ``MLPClassifier`` and ``train_run`` take it."""
    # True or 2.5 is refused here too, not as "'bool' object is not iterable"
    if isinstance(sizes, Iterable) and not isinstance(sizes, str):
        sizes = list(sizes)  # a generator: all() below would use it up, leaving no layers
    given = sizes  # (for the message: 0, not the [0] it is taken as)
    if is_int(sizes):
        sizes = [sizes]
    if not isinstance(sizes, list) or not all(is_int(h) and h >= 1 for h in sizes):
        raise ValueError(f"every hidden size must be a positive integer ({name}: a width, or a "
                         f"list of one width per hidden layer); got {given!r}.")
    return [int(h) for h in sizes]


def path_list(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
              ) -> list[str | os.PathLike[str]]:
    """``paths`` as a list, a single path (a string or ``Path``) as a list of one: iterated as
    it was, ``"runs"`` was the folders ``r``, ``u``, ``n``, ``s`` (and ``"a/b.png"`` the root
    ``/`` and the current folder ``.``), and a ``Path`` a TypeError."""
    if isinstance(paths, str | os.PathLike):
        return [paths]
    return list(paths)


def check_fields(cls: type, given: Iterable[str], what: str) -> None:
    """Refuse names in ``given`` that are not fields of dataclass ``cls`` (a ``from_dict`` of
    a config), listing the known ones: a misspelt option (``optimiser``) is told what it may
    be, not only that it is wrong."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)} (known: "
                         f"{', '.join(sorted(names))}).")


def check_pair(X: object, y: object, names: tuple[str, str], purpose: str) -> None:
    """Refuse one of a pair of arrays given without the other (``X_val`` without ``y_val``):
    one alone failed late, with a message about a shape, or was silently ignored."""
    if (X is None) != (y is None):
        given, missing = names if y is None else names[::-1]
        raise ValueError(f"{given} was given without {missing}: pass both {purpose}, or neither.")


def check_flag(value: object, name: str) -> None:
    """Refuse a switch that is not True or False (0 and 1 pass too): any other object would be
    read by its truth, so ``restore_best="no"`` would mean yes."""
    if not (isinstance(value, bool | np.bool_) or (is_int(value) and value in (0, 1))):
        raise ValueError(f"{name} must be True or False; got {reprlib.repr(value)}.")


#: the largest seed of a dataset's splits: the validation split is drawn with ``seed + 1``,
#: and NumPy's RandomState takes seeds below 2**32
SPLIT_SEED_MAX = 2**32 - 2


def check_seed(seed: object, name: str = "seed", split: bool = False) -> None:
    """Raise a ``ValueError`` unless ``seed`` is None or an integer in [0, 2**32 - 1] (a seed of
    a dataset's splits, ``split``: [0, :data:`SPLIT_SEED_MAX`])."""
    top = SPLIT_SEED_MAX if split else 2**32 - 1
    if seed is not None and (not is_int(seed) or not 0 <= seed <= top):
        # a generator cannot be recorded in a config, a model file or a checkpoint, which a
        # seed's run must be to repeat or resume: say how to get an integer from one
        hint = (f"; draw one from the generator, e.g. {name}=int(rng.integers(2**31))"
                if isinstance(seed, np.random.Generator) else
                f"; draw one from the generator, e.g. {name}=int(rng.randint(2**31))"
                if isinstance(seed, np.random.RandomState) else "")
        raise ValueError(f"{name} must be None or an integer between 0 and "
                         f"{'2**32 - 2' if split else '2**32 - 1'}; got {seed!r}{hint}.")


def check_range(value: object, name: str, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> None:
    """Raise a ``ValueError`` unless ``value`` is a finite number in the interval (bounds open or
    closed as given); the message shows the interval."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = float("nan")
    ok = np.isfinite(v) and not isinstance(value, bool | str) and \
        (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}.")
