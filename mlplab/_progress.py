"""The progress bars of training (NumPy and PyTorch), tuning's trials, downloads and image
decoding: tqdm's, on stderr.

In a terminal a bar shows; into a log file or a pipe (stderr not a terminal) it does not, so the
file does not keep its frames. A Jupyter kernel's stderr is no terminal either, but a notebook
shows the bar: there it is tqdm's widget (``tqdm.auto``, with ipywidgets) or, without ipywidgets,
its text bar, which a notebook draws in place.
"""

from __future__ import annotations

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


def progress_bar(enabled: bool = True, **kwargs: Any) -> tqdm:
    """``tqdm.auto.tqdm(**kwargs)``, shown in a terminal or a notebook, never into a file (and
    never when not ``enabled``)."""
    from tqdm.auto import tqdm  # here: importing it in a notebook warns when ipywidgets is missing

    disable = True if not enabled else False if in_jupyter_kernel() else None
    return tqdm(disable=disable, **kwargs)


def training_bar(total: int, enabled: bool, initial: int = 0) -> tqdm | None:
    """The bar of a training loop (the NumPy trainer's, the PyTorch loop's): iterations, redrawn
    at most twice a second, gone when done; None when not ``enabled``."""
    if not enabled:
        return None
    return progress_bar(total=total, initial=initial, unit="it", dynamic_ncols=True,
                        leave=False, mininterval=0.5)
