"""Ctrl-C and SIGTERM while a command runs.

``mlplab`` installs :func:`handler` for SIGINT around every command (unless the process was
started with SIGINT ignored, as a shell's ``cmd &`` does). It raises ``KeyboardInterrupt`` as
Python's own handler does, and also remembers that the user asked to stop: Python drops a
``KeyboardInterrupt`` raised inside a weakref callback or a ``__del__`` (printing "Exception
ignored") and carries on, which would let the command finish and exit 0.

SIGTERM (what ``kill``, systemd, Docker and CI time-outs send) is handled like Ctrl-C: it calls
whatever handler SIGINT has at that moment, so that a training run stops after its current
iteration and saves its checkpoint, and temporary files are cleaned up as for Ctrl-C.

:func:`deferred` holds both signals back while a group of files is replaced, so that what a
reader finds is all from one run. It swaps the handlers rather than masking the signals: a
mask applies to one thread, and the kernel may hand a process-wide signal to any other (the
BLAS threads); Python runs every handler in the main thread whichever thread received it.
"""

from __future__ import annotations

import contextlib
import os
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


def _restore(sig: int, old: object) -> None:
    """Put ``old`` back for ``sig``. ``signal.signal`` first runs the handlers of signals that
    are pending; one that raises is a Ctrl-C at the very end, remembered, and the restore is
    done all the same."""
    global _requested
    while True:
        try:
            signal.signal(sig, old)
            return
        except KeyboardInterrupt:
            _requested = True


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """:func:`handler` for SIGINT and Ctrl-C's treatment for SIGTERM, within the block (main
    thread only: signal handlers cannot be set elsewhere). A SIGINT the process was started to
    ignore stays ignored; a SIGTERM handler someone else set is left alone."""
    global _requested
    _requested = False
    if not _main_thread():
        yield
        return
    old_int = signal.getsignal(signal.SIGINT)
    old_term = signal.getsignal(signal.SIGTERM)
    set_int = old_int is not signal.SIG_IGN
    set_term = old_term in (signal.SIG_DFL, None)
    try:
        if set_int:
            signal.signal(signal.SIGINT, handler)
        if set_term:
            signal.signal(signal.SIGTERM, _sigterm)
        yield
    finally:
        if set_term:
            _restore(signal.SIGTERM, old_term)
        if set_int:
            _restore(signal.SIGINT, old_int)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back within the block; one that arrived meanwhile is delivered to
    the handler it would have gone to (raising ``KeyboardInterrupt`` for Ctrl-C) when the
    block ends without an error."""
    global _requested
    if not _main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    old_int = signal.signal(signal.SIGINT, hold)  # a Ctrl-C pending from before raises here
    try:
        old_term = signal.signal(signal.SIGTERM, hold)
    except BaseException:
        _restore(signal.SIGINT, old_int)
        raise
    try:
        yield
    finally:
        _restore(signal.SIGTERM, old_term)  # pending signals run `hold` here
        _restore(signal.SIGINT, old_int)
        if held:
            _requested = True
    if held:
        _deliver(held[0], old_int if held[0] == signal.SIGINT else old_term)


def _deliver(signum: int, to: object) -> None:
    """Hand ``signum`` to the handler ``to`` it was held back from."""
    if callable(to):
        to(signum, None)
    elif to in (signal.SIG_DFL, None):
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)  # the system's action: SIGTERM ends the process
