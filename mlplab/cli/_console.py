"""The console streams a command writes to: a closed one taken as the null device, characters
its encoding lacks written instead of failing the command, and a reader that leaves a pipe early
(``| head``) not stopping the work. :func:`mlplab.cli.main` puts them in place for a command's
run."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, TextIO, cast


def reopen_closed_streams() -> None:
    """Point a closed standard output or error (``mlplab train >&-``, a service manager's
    closed descriptors) at the null device, so that the command runs and exits as with
    ``>/dev/null``. Python makes such a stream ``None``: a print then does nothing, but a
    progress bar or a flush raised AttributeError (a run never started, or a finished one ended
    with exit code 1 and "'NoneType' object has no attribute 'flush'"). A closed descriptor is
    reopened too, so that no file mlplab opens takes its number and with it the output of C
    libraries and child processes."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:  # closed: give the number to the null device
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115 (lives as sys's)
        else:  # the number is some other file's: leave it alone
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115


#: what mlplab's own typography becomes on a stream whose encoding lacks it (an ASCII locale)
_ASCII_MARKS = {"\u00b7": "-", "\u2014": "-", "\u2013": "-", "\u2212": "-", "\u00d7": "x",
                "\u2192": "->", "\u2264": "<=", "\u2265": ">=", "\u2026": "...",
                "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "}
_LENIENT = "mlplab-lenient"


def _lenient_encode(exc: UnicodeError) -> tuple[str | bytes, int]:
    """Codec error handler of :func:`lenient_output`, one character at a time: a file name's
    undecodable byte (a lone surrogate) is written back as that byte, as ``surrogateescape``
    does; a mark of mlplab's typography as its ASCII look-alike (``·`` as ``-``, ``×`` as
    ``x``); anything else as ``\\xe9``, ``\\u732b``."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    char = exc.object[exc.start]
    if "\udc80" <= char <= "\udcff":
        return bytes([ord(char) - 0xDC00]), exc.start + 1
    mark = _ASCII_MARKS.get(char)
    return mark or char.encode("ascii", "backslashreplace").decode("ascii"), exc.start + 1


@contextlib.contextmanager
def lenient_output() -> Iterator[None]:
    """Standard output and error that write a character their encoding lacks instead of failing
    the command (:func:`_lenient_encode`). Python's standard output is strict, and on Windows,
    redirected to a file or a pipe, it encodes with the ANSI code page (cp1252, cp932, ...):
    the dash mlplab puts in empty table cells, or a class folder or path named in another
    script, would end the command with UnicodeEncodeError after its work was done. Under an
    ASCII locale (``LC_ALL=C`` without Python's UTF-8 mode) standard output is ASCII with
    ``surrogateescape``, which fails the same way (``mlplab evaluate`` of a class ``café``);
    and standard error's ``backslashreplace`` wrote the report's stage names as
    ``Q1 \\xb7 Forward pass``."""
    import codecs

    try:
        codecs.lookup_error(_LENIENT)
    except LookupError:
        codecs.register_error(_LENIENT, _lenient_encode)
    changed = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if errors in ("strict", "surrogateescape", "backslashreplace") and \
                hasattr(stream, "reconfigure"):
            with contextlib.suppress(ValueError, OSError):  # a closed or unusual stream
                stream.reconfigure(errors=_LENIENT)
                changed.append((stream, errors))
    try:
        yield
    finally:
        for stream, errors in changed:
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors=errors)


def as_written(text: str, stream: TextIO | None = None) -> str:
    """``text`` as ``stream`` (standard output by default) will write it: encoded with its
    encoding and error handler, read back. What the encoding lacks is written otherwise
    (``\\u732b`` or ``?`` for ``猫``, ``...`` for ``…``: see :func:`lenient_output`), in
    other than the text's width: a table measures and pads its cells as written, or a row
    holding one came out of line with the others. A stream without an encoding (a StringIO)
    takes ``text`` as it is."""
    stream = sys.stdout if stream is None else stream
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return text
    errors = getattr(stream, "errors", None) or "strict"
    try:
        data = text.encode(encoding, errors)
    except (LookupError, UnicodeError):  # a codec or handler unknown here: leave it be
        return text
    # the bytes the lenient handler gives back for a file name's undecodable byte, as they were
    return data.decode(encoding, "surrogateescape")


_WINDOWS = os.name == "nt"


class _ReaderMayLeave:
    """Standard output or error that, once its reader has gone away (``mlplab train --verbose |
    head``, a ``less`` quit early), writes to the null device instead of raising
    ``BrokenPipeError`` (:func:`_reader_gone`): the command goes on as it would with
    ``>/dev/null`` and its exit code is its work's. A write that raised there ended the command
    on the spot: training stopped half way, its run folder held only a checkpoint, and the exit
    code said 0."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._gone = False  # the reader left and the stream could not be pointed elsewhere

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)

    def _call(self, name: str, *args: object) -> object:
        if not self._gone:
            try:
                return getattr(self._stream, name)(*args)
            except OSError as exc:
                if not _reader_gone(exc):
                    raise
                try:  # the descriptor to the null device, the text still buffered with it
                    null = os.open(os.devnull, os.O_WRONLY)
                    try:
                        os.dup2(null, self._stream.fileno())
                    finally:
                        os.close(null)
                    return getattr(self._stream, name)(*args)
                except (OSError, ValueError):  # no descriptor of its own: drop what comes
                    self._gone = True
        return len(args[0]) if name == "write" and isinstance(args[0], str) else None

    def write(self, text: str) -> int:
        return cast(int, self._call("write", text))

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._call("flush")


def _reader_gone(exc: OSError) -> bool:
    """Whether a write's ``exc`` says the reader of the pipe went away: ``BrokenPipeError``
    (EPIPE); on Windows a write or flush to a pipe whose reader closed it raises EINVAL
    instead (CPython's console and pipe writes there), which passed for an error of the work."""
    return isinstance(exc, BrokenPipeError) or (_WINDOWS and exc.errno == errno.EINVAL)


@contextlib.contextmanager
def reader_may_leave() -> Iterator[None]:
    """sys.stdout and sys.stderr as :class:`_ReaderMayLeave` for the command's run."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (cast(TextIO, _ReaderMayLeave(s)) for s in saved)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
