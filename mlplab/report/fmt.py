"""Number formatting shared by the report's tables (one precision per kind of figure)."""

from __future__ import annotations

import math

from mlplab._text import duration


def pct(x: float | None, digits: int = 1) -> str:
    """0.2913 -> ``29.1%``; missing values -> an em dash."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{100 * x:.{digits}f}%"


def sci(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.2e}"


def num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}f}"


def seconds(x: float) -> str:
    """A time taken, as the commands print it (:func:`mlplab._text.duration`)."""
    return duration(x)


def passed(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def value(v: object) -> str:
    """A configuration value: floats in a short, exact-enough form."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    return str(v)
