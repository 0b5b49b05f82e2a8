"""Argument types shared by the command modules: each parses one option's text or raises
``argparse.ArgumentTypeError``, which argparse reports as a usage error (exit 2)."""

from __future__ import annotations

import argparse
import math
import os


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1  # not an integer: the same message as one out of range
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds; got {text!r}") from None
    if not math.isfinite(value) or value <= 0:  # nan and inf are floats too
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds; got {text!r}")
    return value


def int_list(text: str, example: str = "2,3,4,5") -> list[int]:
    """``"2,3,4,5"`` -> [2, 3, 4, 5]: at least one, all positive (errors show ``example``)."""
    try:
        values = [int(v) for v in text.split(",")]  # "2,,3" is a typo, not 2,3
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like {example}; "
                                         f"got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers like {example}; got "
                                         f"{text!r}")
    return values


def parse_sizes(text: str) -> list[int]:
    """``"500,250"`` -> ``[500, 250]``; ``"none"`` -> ``[]`` (no hidden layer: softmax
    regression). Raises ValueError with a usable message, also for an empty text or an empty
    item (``"100,,50"``), which are typos or unset shell variables rather than a network."""
    if text.strip().lower() == "none":
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(f"hidden sizes must be comma-separated integers, e.g. 500,250 (or "
                         f"'none' for no hidden layer); got {text!r}.") from None
    if any(s < 1 for s in sizes):
        raise ValueError(f"hidden sizes must be positive integers, e.g. 500,250 (or 'none' for "
                         f"no hidden layer); got {text!r}.")
    return sizes


def hidden_sizes(text: str) -> list[int]:
    """:func:`parse_sizes` as an argparse type."""
    try:
        return parse_sizes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def data_dir_arg(text: str) -> str:
    """``--data-dir``: any path but an empty text, which was taken as no ``--data-dir`` at all
    (an unset ``$DIR``), so that a run's moved data was looked for where it no longer is. The
    data layer expands ``~`` itself."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path; got an empty text (an unset shell "
                                          "variable?)")
    return text


def user_path_arg(text: str) -> str:
    """A path the command writes or reads (``--out``, ``--resume``, a run folder), with a
    leading ``~`` or ``~user`` expanded as for the data paths. The shell leaves it in
    ``--out=~/runs/x`` (and in a path quoted or read from a script), and the run went to a
    folder literally named ``~`` in the current one; ``~`` of an unknown user stays as given.
    An empty text is refused: it is an unset shell variable (``--resume "$RUN"``), and it made
    ``--resume`` and ``--out`` quietly start a new run in the default folder."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path; got an empty text (an unset shell "
                                          "variable?)")
    return os.path.expanduser(text)
