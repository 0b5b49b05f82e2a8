"""Optuna's output cut to what a user needs: its experimental and future warnings silenced where
mlplab uses those APIs on purpose, its log level at WARNING while mlplab searches, and a trial
stopped by Ctrl-C, or failed by settings that cannot work together, logged as Optuna's one-line
warning without the exception's traceback (nor the "failed with value None." line after it);
and, after a search, the caller's log level and Matplotlib settings (which Optuna's plots change)
given back. Storage, search and plots all use these, so they stand apart from each.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def optuna_warnings_only() -> Iterator[None]:
    """Optuna logs warnings and errors only within the block (not its INFO line per trial,
    which would bury the progress bar); the caller's level comes back afterwards, so that a
    notebook's own studies log as before. Also a decorator."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@contextlib.contextmanager
def matplotlib_style_kept() -> Iterator[None]:
    """Matplotlib's settings (``rcParams``) as they were before the block. Optuna's plots switch
    the whole process to their ggplot style (``plt.style.use``), which a notebook's figures
    after a ``tune()`` call kept (grey axes). Within the block the style is left as Optuna sets
    it, so the figures tuning writes are unchanged. Also a decorator."""
    from mlplab._matplotlib import matplotlib  # (Ctrl-C held back while it is imported)

    with matplotlib.rc_context():
        yield


@contextlib.contextmanager
def quiet_optuna_warnings() -> Iterator[None]:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a trial stopped by Ctrl-C with the whole traceback of the KeyboardInterrupt;
    keep its one-line warning ("Trial N failed with parameters: {...} because of the following
    error: KeyboardInterrupt().": which trial stopped, and with what settings) and drop the
    traceback, and the "Trial N failed with value None." line that Optuna (4 and later) logs
    after it, which says nothing more; so is a trial ended by one of the ``brief`` exceptions
    (one whose message says all: settings that cannot work together). A trial ended by one of
    the ``silent`` exceptions is not logged at all: neither the warning that carries the
    exception nor that second line. The second line carries no exception: it is found by the
    trial number the first gave. A trial that ran out of memory (a MemoryError, which the
    search catches and fails the trial with) keeps its warning too, without the traceback."""

    def __init__(self, silent: tuple[type[BaseException], ...] = (),
                 brief: tuple[type[BaseException], ...] = ()) -> None:
        super().__init__()
        self.silent = silent
        self.brief: tuple[type[BaseException], ...] = (KeyboardInterrupt, *brief)
        self.silenced: set[str] = set()  # "Trial N " of the trials whose warnings are dropped
        self.stopped: set[str] = set()  # "Trial N " of the trials logged in one line

    def filter(self, record: logging.LogRecord) -> bool:
        # (each handler of Optuna's logger asks again about the same record: the answer must
        # not change once this has taken its exception off it)
        ended = record.exc_info[1] if record.exc_info else None
        if isinstance(ended, self.silent + self.brief):
            words = record.getMessage().split()
            if len(words) > 1 and words[0] == "Trial":
                kept = isinstance(ended, self.brief)
                (self.stopped if kept else self.silenced).add(f"Trial {words[1]} ")
            if not isinstance(ended, self.brief):
                return False
            record.exc_info = None  # the one line, without the traceback
            return True
        if self.silenced or self.stopped:
            message = record.getMessage()
            if any(message.startswith(prefix + "failed") for prefix in self.silenced) or \
                    any(message.startswith(prefix + "failed with value ")
                        for prefix in self.stopped):
                return False
        if record.exc_info and isinstance(record.exc_info[1], MemoryError):
            # a trial out of memory (a large network under ulimit -v) is caught and failed on
            # purpose: its 25 lines of traceback, from NumPy's allocation, said nothing more
            # than the warning's line, once per such trial; results.csv keeps its error
            record.exc_info = None
        return True


@contextlib.contextmanager
def quiet_interrupts(silent: tuple[type[BaseException], ...] = (),
                     brief: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Within the block, Optuna logs a trial stopped by Ctrl-C or out of memory without its
    traceback, one that raised one of the ``brief`` exceptions in its one line, and one that
    raised one of the ``silent`` exceptions (an ending of mlplab's own) not at all."""
    import optuna  # noqa: F401  (sets up the "optuna" logger and its handler)

    handlers = logging.getLogger("optuna").handlers
    keep = _NoInterruptTraceback(silent, brief)
    for h in handlers:
        h.addFilter(keep)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(keep)
