"""The progress bars of training (NumPy and PyTorch), tuning's trials, downloads and image
decoding: tqdm's, on stderr.

In a terminal a bar shows; into a log file or a pipe (stderr not a terminal) it does not, so the
file does not keep its frames. A Jupyter kernel's stderr is no terminal either, but a notebook
shows the bar: there it is tqdm's widget (``tqdm.auto``, with ipywidgets) or, without ipywidgets,
its text bar, which a notebook draws in place (chosen here: ``tqdm.auto`` would warn "IProgress not
found" first).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm


def in_jupyter_kernel() -> bool:
    """Whether this is a Jupyter kernel (a notebook's), tested as ``tqdm.auto`` tests it."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has it already
    try:
        shell = ipython.get_ipython() if ipython is not None else None
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # an IPython without a shell or config as expected: no kernel known
        return False


def _has_ipywidgets() -> bool:
    """Whether ipywidgets imports: tqdm's notebook widget needs it."""
    try:
        importlib.import_module("ipywidgets")  # (by name: mypy has no stubs of an optional one)
    except ImportError:
        return False
    return True


def progress_bar(enabled: bool = True, **kwargs: Any) -> tqdm:
    """``tqdm.auto.tqdm(**kwargs)``, shown in a terminal or a notebook, never into a file (and
    never when not ``enabled``). In a notebook without ipywidgets, tqdm's text bar."""
    kernel = in_jupyter_kernel()
    if kernel and not _has_ipywidgets():
        # tqdm.auto would warn "IProgress not found. Please update jupyter and ipywidgets" at
        # its first import, then draw this same text bar: the warning only asks for a package
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm  # here: the import decides between widget and text bar
    disable = True if not enabled else False if kernel else None
    return tqdm(disable=disable, **kwargs)


def training_bar(total: int, enabled: bool, initial: int = 0) -> tqdm | None:
    """The bar of a training loop (the NumPy trainer's, the PyTorch loop's): iterations, redrawn
    at most twice a second, gone when done; None when not ``enabled``."""
    if not enabled:
        return None
    return progress_bar(total=total, initial=initial, unit="it", dynamic_ncols=True,
                        leave=False, mininterval=0.5)
