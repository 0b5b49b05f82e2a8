"""Ctrl-C and SIGTERM while a command runs.

``mlplab`` installs :func:`handler` for SIGINT around every command (unless the process was
started with SIGINT ignored, as a shell's ``cmd &`` does). It raises ``KeyboardInterrupt`` as
Python's own handler does, and also remembers that the user asked to stop: Python drops a
``KeyboardInterrupt`` raised inside a weakref callback or a ``__del__`` (printing "Exception
ignored") and carries on, which would let the command finish and exit 0.

SIGTERM (what ``kill``, systemd, Docker and CI time-outs send) is handled like Ctrl-C: it calls
whatever handler SIGINT has at that moment, so that a training run stops after its current
iteration and saves its checkpoint, and temporary files are cleaned up as for Ctrl-C. Only the
exit status tells them apart (:func:`exit_status`): 130 for Ctrl-C, 143 for SIGTERM, the shell's
128 + the signal's number, which a supervisor reads to learn that its own stop was obeyed.

:func:`deferred` holds both signals back while a group of files is replaced, so that what a
reader finds is all from one run (and while :mod:`mlplab._matplotlib` imports Matplotlib, whose C
extensions an interrupted import leaves half set up). It swaps the handlers rather than masking
the signals: a mask applies to one thread, and the kernel may hand a process-wide signal to any
other (the BLAS threads); Python runs every handler in the main thread whichever thread
received it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import FrameType

    #: what ``signal.signal`` takes and ``signal.getsignal`` returns
    _Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

_requested = False
#: the signal that first asked the command to stop (SIGINT or SIGTERM), for its exit status
_signal: int | None = None
#: how many :func:`installed` blocks are open (a command, or one run from inside another);
#: outside them nothing is remembered, so a library user's Ctrl-C never lingers
_active = 0
#: the graceful stop of the training loop running now (see :func:`graceful`), or None
_stopper: Callable[[int, FrameType | None], None] | None = None


def note(signum: int = signal.SIGINT) -> None:
    """Remember that the user asked to stop (a handler that does not raise calls this), while a
    command runs, and with which signal if it is the first."""
    global _requested, _signal
    if _active:
        _requested = True
        if _signal is None:
            _signal = signum


def exit_status() -> int:
    """The exit status of a command that stopped when asked: 128 + the number of the signal that
    asked first, 130 for Ctrl-C (also when none was noted) and 143 for SIGTERM."""
    return 128 + (_signal or signal.SIGINT)


#: set once the command has its result: a later Ctrl-C is remembered, not raised
_closing = False


def handler(signum: int, frame: FrameType | None) -> None:
    """SIGINT while a command runs: remember it, and raise ``KeyboardInterrupt`` (unless the
    command is already ending, where a traceback is all it would add)."""
    note()
    if not _closing:
        raise KeyboardInterrupt


def closing() -> None:
    """The command has its result: from now on a Ctrl-C is only remembered."""
    global _closing
    _closing = True


def _sigterm(signum: int, frame: FrameType | None) -> None:
    note(signal.SIGTERM)  # first: the handlers below note a SIGINT
    current = signal.getsignal(signal.SIGINT)
    if _stopper is not None:  # a training loop: stop it after its iteration, as Ctrl-C does
        _stopper(signal.SIGINT, frame)
    elif callable(current):
        current(signal.SIGINT, frame)
    else:  # SIGINT ignored or left to the system: stop anyway, as SIGTERM asks
        handler(signal.SIGINT, frame)


@contextlib.contextmanager
def graceful(stop: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Within the block, SIGTERM calls ``stop`` (a training loop's Ctrl-C handler: the first
    call asks it to stop after the current iteration, a second raises), even where SIGINT is
    ignored and that handler is not installed for it."""
    global _stopper
    previous, _stopper = _stopper, stop
    try:
        yield
    finally:
        _stopper = previous


class StopRequest:
    """Whether a training loop was asked to stop after its current step: set by the first
    Ctrl-C (or SIGTERM) within :func:`stop_after_step`, read by the loop after each step."""

    def __init__(self) -> None:
        self.asked = False


@contextlib.contextmanager
def stop_after_step(request: StopRequest) -> Iterator[bool]:
    """While a training loop runs in the main thread, the first Ctrl-C (or SIGTERM) sets
    ``request.asked``: the loop stops after its current step (and saves a consistent
    checkpoint); a second one raises ``KeyboardInterrupt`` as usual. Yields whether stops are
    graceful so (False in another thread, where no handler can be set). A SIGINT the process
    ignores stays ignored."""
    if not _main_thread():
        yield False
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        note(signum)  # the command ends with 128 + signum, whatever its caller does
        if request.asked:
            raise KeyboardInterrupt
        request.asked = True

    with graceful(handle):
        previous = None
        if raises_keyboard_interrupt(signal.getsignal(signal.SIGINT)):
            previous = signal.signal(signal.SIGINT, handle)
        try:
            yield True
        finally:
            if previous is not None:
                # a pending second Ctrl-C runs `handle` here: remembered, not lost
                restore_handler(signal.SIGINT, previous)


def raises_keyboard_interrupt(current: object) -> bool:
    """Whether SIGINT's handler ``current`` simply raises ``KeyboardInterrupt`` (Python's default
    or :func:`handler`), so that a training loop may put its own graceful stop in front of it."""
    return current is signal.default_int_handler or current is handler


def requested() -> bool:
    """Whether Ctrl-C (or SIGTERM) arrived since the innermost :func:`installed` was entered."""
    return bool(_active and _requested)


class Terminated(KeyboardInterrupt):
    """SIGTERM while the command line starts (:func:`starting`): it stops the start as Ctrl-C
    does, and is reported as SIGTERM (143)."""


def _terminated_at_start(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextlib.contextmanager
def starting() -> Iterator[None]:
    """While the ``mlplab`` process starts (its modules import, plugins load, the parser is
    built: a third of a second and more, before :func:`installed`), SIGTERM raises
    :class:`Terminated` rather than end the process with no word (a parent saw a death by the
    signal, not 143). Only where SIGTERM has the system's default; :func:`installed` takes this
    handler for that default."""
    if not _main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminated_at_start)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is _terminated_at_start:  # not exiting()'s
            restore_handler(signal.SIGTERM, signal.SIG_DFL)


def exiting() -> None:
    """The process has its exit status: from here to its end (threads joined, exit callbacks
    such as PyTorch's, the interpreter's shutdown: a third of a second and more) a further Ctrl-C
    or SIGTERM is ignored, so that the process ends as it was ending, with that status, instead
    of printing a Python traceback from whatever runs then or dying by the signal. (Ignored,
    not handled: the interpreter's shutdown puts a Python handler back to the system's default
    before it is done, and a signal then still ended the process.) Only for the ``mlplab``
    process itself, never for a library caller of :func:`mlplab.cli.main`; a signal handled
    otherwise (from C, or by someone else's handler) is left alone."""
    if not _main_thread():
        return
    defaults = {signal.SIGINT: (signal.default_int_handler,),
                signal.SIGTERM: (signal.SIG_DFL, _terminated_at_start)}
    for sig, replaced in defaults.items():
        if signal.getsignal(sig) in replaced:
            signal.signal(sig, signal.SIG_IGN)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def restore_handler(sig: int, old: _Handler) -> None:
    """Put ``old`` back for ``sig``. ``signal.signal`` first runs the handlers of signals that
    are pending; one that raises is a Ctrl-C at the very end, remembered, and the restore is
    done all the same."""
    while True:
        try:
            signal.signal(sig, old)
            return
        except KeyboardInterrupt:
            note()


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """:func:`handler` for SIGINT and Ctrl-C's treatment for SIGTERM, within the block (main
    thread only: signal handlers cannot be set elsewhere). A SIGINT the process was started to
    ignore stays ignored; a SIGTERM handler someone else set is left alone, and so is a handler
    of either signal set from C."""
    global _requested, _signal, _active, _closing
    if not _main_thread():
        yield
        return
    outer, _requested = _requested, False  # a command run from inside another has its own
    outer_signal, _signal = _signal, None
    outer_closing, _closing = _closing, False
    _active += 1
    old_int = signal.getsignal(signal.SIGINT)
    old_term = signal.getsignal(signal.SIGTERM)
    # None: a handler set from C (a program embedding Python), which could not be put back
    set_int = old_int not in (signal.SIG_IGN, None)
    set_term = old_term is signal.SIG_DFL or old_term is _terminated_at_start
    try:
        if set_int:
            signal.signal(signal.SIGINT, handler)
        if set_term:
            signal.signal(signal.SIGTERM, _sigterm)
        yield
    finally:
        if set_term:
            restore_handler(signal.SIGTERM, old_term)
        if set_int:
            restore_handler(signal.SIGINT, old_int)
        _requested, _signal, _active, _closing = outer, outer_signal, _active - 1, outer_closing


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back within the block (those not ignored, nor handled from C);
    one that arrived meanwhile is delivered to the handler it would have gone to (raising
    ``KeyboardInterrupt`` for Ctrl-C) when the block ends. If the block raised, its error goes
    on and a held signal is only remembered (:func:`requested`), except a SIGTERM that would end
    the process."""
    if not _main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if signum not in held:
            held.append(signum)

    old: dict[int, _Handler] = {}
    sig: int
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            # None: a handler set from C (a program embedding Python), which signal.signal
            # cannot put back; left alone, as an ignored signal is
            if signal.getsignal(sig) not in (signal.SIG_IGN, None):
                old[sig] = signal.signal(sig, hold)  # a signal pending from before runs now
    except BaseException:
        for sig, previous in old.items():
            restore_handler(sig, previous)
        raise
    failed = True
    try:
        yield
        failed = False
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # pending signals run `hold` here
            if sig in old:
                restore_handler(sig, old[sig])
        if held:
            note(held[0])
        if failed:
            held = [s for s in held if s == signal.SIGTERM and old[s] in (signal.SIG_DFL, None)]
        for sig in held:
            _deliver(sig, old[sig])


def _deliver(signum: int, to: _Handler) -> None:
    """Hand ``signum`` to the handler ``to`` it was held back from."""
    if callable(to):
        to(signum, None)
    elif to in (signal.SIG_DFL, None):
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)  # the system's action: SIGTERM ends the process
