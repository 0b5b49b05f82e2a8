"""Wording shared by messages and summaries: counts, commands to paste into a shell, and text
made safe and measured for a terminal."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import unicodedata
from collections.abc import Sequence


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun`` in the singular or plural (``1 epoch``, ``2 epochs``); the plural
    adds an s, which every noun counted in mlplab's messages takes."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def agree(n: int, one: str, many: str) -> str:
    """``one`` for a count of 1, else ``many``: the verb or phrase that goes with ``n`` things
    (``f"{counted(n, 'link')} {agree(n, 'points', 'point')} to nothing"``)."""
    return one if n == 1 else many


def percent(fraction: float, decimals: int = 2) -> str:
    """An accuracy (a fraction, as the JSON, CSV and Python values hold it) as printed for
    reading, in percent: ``percent(0.76111)`` is ``76.11%``. Every printed accuracy is one: with
    two decimals where a figure stands alone (a run's result, evaluate's overall accuracy, tune's
    best), with one in per-epoch lines, progress bars and tables (tune's bar and table keep two:
    trials of one search often differ by less than a tenth of a point)."""
    return f"{100 * fraction:.{decimals}f}%"


def duration(seconds: float) -> str:
    """A time taken, as every command and report prints one: ``0.2 s``, ``63.4 s``, and from two
    minutes on in minutes, ``17.5 min`` (``mlplab runs`` and the report said ``17.5 min`` of a
    run that ``mlplab train`` had called ``1050.3 s``, and ``mlplab torch depth`` ``0 s`` of a
    network that its table gives 0.2 seconds). Decided on the time as written, to a tenth of a
    second: 119.96 s, which rounds to two minutes, is ``2.0 min``, not ``120.0 s``."""
    return f"{seconds:.1f} s" if round(seconds, 1) < 120 else f"{seconds / 60:.1f} min"


def near_folder(path: str | os.PathLike[str]) -> str | None:
    """The existing folder beside ``path`` (a folder that is not there) whose name a typo would
    have turned into its name, written as ``path`` is (relative or absolute); None if there is
    none. A typo is one character added, dropped, changed or two swapped (``rusn`` for ``runs``,
    ``run-2`` for ``run-1``), or two of those in a name of six or more characters; a name of
    one or two characters gets no guess. (``difflib``'s similarity answered ``nowhere`` with
    ``other``.) A typo further up the path is mended the same way, one missing folder at a
    time: ``/tmp/mlpab-data/train`` gives ``/tmp/mlplab-data/train``."""
    parent, name = os.path.split(os.path.normpath(os.fspath(path)))
    folders = _folders_in(parent)
    if folders is None and parent and not os.path.lexists(parent):
        parent = near_folder(parent) or ""  # (the typo may be in the parent's own name)
        folders = _folders_in(parent) if parent else None
        if folders is not None and name in folders:
            return os.path.join(parent, name)
    if folders is None:  # the parent is missing too, or unreadable: nothing to suggest
        return None
    most = 2 if len(name) >= 6 else 1 if len(name) >= 3 else 0  # "a" is one edit from "b"
    typos = [(edits, folder) for folder in folders
             if abs(len(folder) - len(name)) <= most  # (not a whole folder of images compared)
             and 0 < (edits := _edit_distance(name, folder)) <= most]
    return os.path.join(parent, min(typos)[1]) if typos else None  # the closest, then by name


def _folders_in(parent: str) -> list[str] | None:
    """The names of the folders in ``parent`` (the current folder for ""); None if it cannot
    be read (it is missing, or not a folder, or not ours)."""
    try:
        with os.scandir(parent or os.curdir) as entries:
            return [entry.name for entry in entries if entry.is_dir()]
    except OSError:
        return None


def _edit_distance(a: str, b: str) -> int:
    """The fewest insertions, deletions, substitutions and swaps of neighbours that turn ``a``
    into ``b`` (the optimal string alignment distance)."""
    rows = [list(range(len(b) + 1))]
    for i, char in enumerate(a, 1):
        row = [i]
        for j, other in enumerate(b, 1):
            row.append(min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (char != other)))
            if i > 1 and j > 1 and char == b[j - 2] and a[i - 2] == other:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def no_such_folder(path: str | os.PathLike[str]) -> str:
    """"no such folder" for ``path``, with the folder beside it that a typo most likely meant
    (:func:`near_folder`): "no such folder (did you mean runs?)"."""
    guess = near_folder(path)
    return "no such folder" + (f" (did you mean {guess}?)" if guess is not None else "")


def os_error_text(exc: BaseException) -> str:
    """``exc`` in words, the system's own errors naming the path first, without the errno:
    "PATH: File name too long" (two paths as "PATH -> PATH2"), not "[Errno 36] File name too
    long: 'PATH'" (Python's form, the path quoted at the end of a line it may run far past).
    An error with words of its own (mlplab's, or one naming no path) keeps them."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None \
            and text.startswith("[Errno"):
        paths = [exc.filename] + ([exc.filename2] if exc.filename2 is not None else [])
        text = f"{' -> '.join(printable(os.fsdecode(p)) for p in paths)}: {exc.strerror}"
    return text


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


#: what breaks a line of a terminal's table: C0 and C1 control characters and DEL (a newline
#: starts a row of its own, ESC starts a sequence that recolours or clears the screen), the
#: Unicode line and paragraph separators, and the bidirectional overrides and isolates, which
#: reorder the rest of the line as displayed
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: the escapes a reader knows from Python and C; the others are written by their code point
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str, one_line: bool = False) -> str:
    """``text`` with what UTF-8 cannot encode written out: a path that is not UTF-8 (an old
    Latin-1 folder name, ``caf\\xe9``) reaches Python as lone surrogates (``caf\\udce9``),
    which a UTF-8 file or Matplotlib refuses; each such byte becomes ``\\xe9``, as ``ls -b``
    shows it. With ``one_line``, for a terminal, control characters are written out too
    (a newline as ``\\n``, ESC as ``\\x1b``; see :data:`_CONTROLS`), so that a run folder
    or a hand-edited field holding them keeps a table to one line a row and cannot recolour or
    clear the screen. Any other text is returned unchanged."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte (not from a file name)
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROLS.sub(_escaped, text) if one_line else text


def display_width(text: str) -> int:
    """How many terminal columns ``text`` takes, where ``len`` counts code points: a wide
    character (CJK, most emoji: East Asian width W or F) takes two, a combining mark (the
    accent of ``e`` + U+0301) and an invisible format character (a zero-width joiner) none,
    and every other character one. Two exceptions follow what terminals draw (and the
    ``wcwidth`` library counts): the soft hyphen, a format character, is drawn as a hyphen, one
    column; and the emoji variation selector (U+FE0F) after a narrow symbol or a keycap's digit
    (the heart of ``"\u2764\ufe0f"``, the 1 of ``"1\ufe0f\u20e3"``) draws it as a two-column
    emoji, where after a letter it changes nothing. Control characters count as none; write
    them out first (:func:`printable` with ``one_line``)."""
    width = 0
    widens = False  # whether U+FE0F would draw the last character counted as an emoji
    for char in text:
        if char == _EMOJI_PRESENTATION:
            width += 1 if widens else 0
            widens = False
            continue
        if char != _SOFT_HYPHEN and (unicodedata.combining(char)
                                     or unicodedata.category(char) in ("Mn", "Me", "Cf", "Cc")):
            continue
        wide = unicodedata.east_asian_width(char) in ("W", "F")
        width += 2 if wide else 1
        widens = not wide and (unicodedata.category(char).startswith("S") or char in _KEYCAPS)
    return width


_SOFT_HYPHEN = "\u00ad"
_EMOJI_PRESENTATION = "\ufe0f"
#: the characters a keycap emoji is made of ("1\ufe0f\u20e3"), besides the symbols
_KEYCAPS = frozenset("#*0123456789")


def padded(text: str, width: int, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (:func:`display_width`), on the
    right, or on the left with ``right`` (numbers); ``str.ljust`` counts code points, and a row
    holding a wide character or a combining mark came out of line with the others. Text as
    wide as ``width`` or wider is returned as it is."""
    fill = " " * max(width - display_width(text), 0)
    return fill + text if right else text + fill
