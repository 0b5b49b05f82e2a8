"""Ctrl-C and SIGTERM while a command runs.

``mlplab`` installs :func:`handler` for SIGINT around every command. It raises
``KeyboardInterrupt`` as Python's own handler does, and also remembers that the user asked to
stop: Python drops a ``KeyboardInterrupt`` raised inside a weakref callback or a ``__del__``
(printing "Exception ignored") and carries on, which would let the command finish and exit 0.

SIGTERM (what ``kill``, systemd, Docker and CI time-outs send) is handled like Ctrl-C: it calls
whatever handler SIGINT has at that moment, so that a training run stops after its current
iteration and saves its checkpoint, and temporary files are cleaned up as for Ctrl-C.

:func:`deferred` holds both signals back while a group of files is replaced, so that what a
reader finds is all from one run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_requested = False


def handler(signum: int, frame: object) -> None:
    """SIGINT while a command runs: remember it, and raise ``KeyboardInterrupt``."""
    global _requested
    _requested = True
    raise KeyboardInterrupt


def _sigterm(signum: int, frame: object) -> None:
    current = signal.getsignal(signal.SIGINT)
    if callable(current):
        current(signal.SIGINT, frame)
    else:  # SIGINT ignored or left to the system: stop anyway, as SIGTERM asks
        handler(signal.SIGINT, frame)


def raises_keyboard_interrupt(current: object) -> bool:
    """Whether SIGINT's handler ``current`` simply raises ``KeyboardInterrupt`` (Python's default
    or :func:`handler`), so that a training loop may put its own graceful stop in front of it."""
    return current is signal.default_int_handler or current is handler


def requested() -> bool:
    """Whether Ctrl-C (or SIGTERM) arrived since :func:`installed` was entered."""
    return _requested


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """:func:`handler` for SIGINT and Ctrl-C's treatment for SIGTERM, within the block (main
    thread only: signal handlers cannot be set elsewhere)."""
    global _requested
    _requested = False
    if not _main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, _sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back within the block; one that arrived meanwhile is delivered
    (and its ``KeyboardInterrupt`` raised) when the block ends."""
    if not (_main_thread() and hasattr(signal, "pthread_sigmask")):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
