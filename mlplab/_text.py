"""Wording shared by messages and summaries: counts, and commands to paste into a shell."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun`` in the singular or plural (``1 epoch``, ``2 epochs``); the plural
    adds an s, which every noun counted in mlplab's messages takes."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def shell_command(parts: Sequence[str]) -> str:
    """``parts`` as one line to paste into a shell of this platform: POSIX quoting (single
    quotes), or on Windows double quotes (``subprocess.list2cmdline``), which cmd.exe and
    PowerShell read where they would keep POSIX's single quotes as part of a path. Words
    without spaces or shell characters are left as they are."""
    return subprocess.list2cmdline(parts) if os.name == "nt" else shlex.join(parts)


def path_word(path: str | os.PathLike[str]) -> str:
    """``path`` as a word of a command to paste: a relative path that starts with a dash (a run
    folder ``-x``, made by ``--out ./-x``) as ``./-x``, which the command reads as a path and
    not as an option (``mlplab train --resume -x`` is refused: "expected one argument")."""
    text = os.fspath(path)
    return os.curdir + os.sep + text if text.startswith("-") else text


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode written out: a path that is not UTF-8 (an old
    Latin-1 folder name, ``caf\\xe9``) reaches Python as lone surrogates (``caf\\udce9``),
    which a UTF-8 file or Matplotlib refuses; each such byte becomes ``\\xe9``, as ``ls -b``
    shows it. Any other text is returned unchanged."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte (not from a file name)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
