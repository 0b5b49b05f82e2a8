"""Wording shared by the messages and summaries that count things."""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun`` in the singular or plural (``1 epoch``, ``2 epochs``); the plural
    adds an s, which every noun counted in mlplab's messages takes."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
