"""The report as data: sections made of blocks, rendered to Markdown and HTML by
:mod:`mlplab.report.rendering`.

Stages build :class:`Section` objects and never write Markdown or HTML themselves, so both outputs
always say the same thing. Text blocks use a small Markdown subset (``**bold**``, ``*italic*``,
```code```, ``[text](url)``) that both renderers understand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "not run"]


@dataclass
class Text:
    """A paragraph (inline Markdown subset)."""

    text: str


@dataclass
class Table:
    """A table; cells are pre-formatted strings (stages decide the precision)."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    """An image file inside the report folder (``path`` is relative to it)."""

    path: str
    caption: str
    alt: str = ""


@dataclass
class Equations:
    """Display equations as LaTeX lines; ``image`` (relative path) is the same set rendered by
    Matplotlib's mathtext for the HTML page, which has no TeX engine."""

    latex: list[str]
    image: str = ""
    caption: str = ""


@dataclass
class KeyValues:
    """A two-column listing (configuration, environment)."""

    items: list[tuple[str, str]]
    caption: str = ""


Block = Text | Table | Figure | Equations | KeyValues


@dataclass
class Section:
    """One stage's part of the report.

    ``group`` is the question it belongs to (its level-2 heading); ``title`` is the level-3
    heading. ``data`` holds the stage's numbers for ``report.json`` and for later stages (the
    summary reads them); ``status`` is ``"not run"`` with a ``reason`` when the stage could not run.
    """

    key: str
    group: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    status: Status = "ok"
    reason: str = ""
    seconds: float = 0.0
    #: CPU time of the process during the stage (all threads): on a busy machine it says what
    #: the stage costs when wall time does not
    cpu_seconds: float = 0.0
    #: the run that produced the section: ``{"command": ..., "date": ...}`` (kept when a later
    #: run reuses it)
    origin: dict[str, Any] = field(default_factory=dict)  # command, date, environment

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self

    def figures(self) -> list[str]:
        paths = [b.path for b in self.blocks if isinstance(b, Figure)]
        paths += [b.image for b in self.blocks if isinstance(b, Equations) and b.image]
        return paths


_BLOCKS = {cls.__name__: cls for cls in (Text, Table, Figure, Equations, KeyValues)}


def block_to_dict(block: Block) -> dict[str, Any]:
    return {"type": type(block).__name__, **asdict(block)}


def block_from_dict(d: dict[str, Any]) -> Block:
    d = dict(d)
    cls = _BLOCKS[d.pop("type")]
    if cls is KeyValues:
        d["items"] = [tuple(kv) for kv in d["items"]]
    return cls(**d)


class StageSkipped(Exception):
    """Raised by a stage that cannot run for a known reason (e.g. PyTorch not installed); the
    message becomes the section's "not run" reason."""
