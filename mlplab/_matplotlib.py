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

from mlplab import interrupts

with interrupts.deferred():
    import matplotlib
    import matplotlib.pyplot as plt

__all__ = ["matplotlib", "plt"]
