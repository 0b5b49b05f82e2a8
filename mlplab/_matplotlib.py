"""Matplotlib, imported with Ctrl-C and SIGTERM held back until the import ends.

Every module of mlplab that draws imports Matplotlib from here (``from mlplab._matplotlib import
plt``), so that whichever comes first (:mod:`mlplab.plots`, ``mlplab data show``'s grid, tuning's
plots, the report) imports it under :func:`mlplab.interrupts.deferred`. A signal that lands inside
the import (about a second; a second Ctrl-C while a stopped run writes its figures) can leave one
of its C extensions half initialised, and Python then aborted as it exited ("Fatal Python error:
PyThreadState_Get", status -6) instead of the command ending with 130. Held back, it is raised
just after the import. Later imports of Matplotlib's modules find them loaded.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from mlplab import interrupts


def _config_dir_writable() -> bool:
    """Whether Matplotlib's configuration folder (its font cache's) can be made and written
    where Matplotlib looks for it (``$XDG_CONFIG_HOME`` or ``~/.config`` on Linux,
    ``~/.matplotlib`` elsewhere)."""
    try:
        if sys.platform.startswith(("linux", "freebsd")):
            base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
            folder = Path(base) / "matplotlib"
        else:
            folder = Path.home() / ".matplotlib"
        folder.mkdir(parents=True, exist_ok=True)
        return os.access(folder, os.W_OK)
    except (OSError, RuntimeError):  # RuntimeError: no home folder to expand ~ to
        return False


def _remove_config_dir(folder: str, owner: int) -> None:
    """Remove the temporary configuration folder as the process that made it ends (not as a
    forked child of it ends, which shares it)."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


if "MPLCONFIGDIR" not in os.environ and not _config_dir_writable():
    # a read-only or unset HOME (a container, a CI job): Matplotlib makes a temporary folder
    # itself, but says so in two lines on stderr, around a command's one-line messages.
    # Removed at exit, as Matplotlib removes its own: every command left one (its font cache,
    # 40 KB) in the temporary folder of a shared machine. Worker processes inherit the
    # variable and use the folder while their parent, which waits for them, runs.
    os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="mlplab-matplotlib-")
    atexit.register(_remove_config_dir, os.environ["MPLCONFIGDIR"], os.getpid())

with interrupts.deferred():
    import matplotlib
    import matplotlib.pyplot as plt

__all__ = ["matplotlib", "plt"]
