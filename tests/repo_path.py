"""The ``PYTHONPATH`` of the ``python -m mlplab`` commands the tests start: this checkout first,
then whatever the shell set (dependencies installed with ``pip install --target`` are found there,
and a PYTHONPATH of the repository alone hid them from the command)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pythonpath() -> str:
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
