"""A bounded reader of uncompressed tar streams, for archives that cannot be trusted.

:class:`TarReader` reads a strict subset of the format (ustar, GNU and v7 headers with their
checksum verified, octal sizes only; files, folders and links; pax headers and GNU long names of
at most ``MAX_PAX_BYTES``, read by hand for a long path only) block by block, with every size
checked before anything is read, and within the bounds its caller gives (:class:`TarLimits`: how
many entries, how large one, how many bytes in all). It is a module of its own because parsing
the format is one thing and knowing which archive is expected is another: the reader never
writes anything and knows nothing of what the entries are for, while its one caller,
:func:`mlplab.data.cifar.extract_archive`, picks the CIFAR-10 batches out of the official
archive, names the bounds that suit it and writes the batches to disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path

from mlplab.data.base import DatasetError, short_repr

_BLOCK = 512
#: entry types of a plain tar archive: files; hard and symbolic links and folders (named to the
#: caller, never followed or created); pax headers and GNU long names of at most MAX_PAX_BYTES
#: (read only for a long path; Python's tarfile writes a pax header for a fractional mtime);
#: sparse files and the rest are refused
_FILE_TYPES, _SKIPPED_TYPES = (b"0", b"\0", b"7"), (b"1", b"2", b"5")
MAX_PAX_BYTES = 8 << 10


@dataclass(frozen=True)
class TarLimits:
    """What the caller expects of an archive: bounds that are refused before any data is read,
    each with a note on what the real archive holds, for the message that refuses it."""

    #: the archive expected, for messages: "<file>: not <archive> (<why>)."
    archive: str
    #: at most this many entries (every header counts, pax and long-name headers too)
    entries: int
    entries_note: str
    #: the largest size an entry may declare
    entry_bytes: int
    entry_note: str
    #: the most bytes the tar stream may hold, uncompressed (headers and padding included)
    total_bytes: int
    total_note: str


def _octal(field: bytes) -> int | None:
    """A tar header's octal number (NUL- or space-terminated), or None for anything else (the
    base-256 form, which can be negative, included)."""
    digits = field.split(b"\0", 1)[0].strip(b" ")
    return int(digits, 8) if digits and all(48 <= c <= 55 for c in digits) else None


class TarReader:
    """The entries of an uncompressed tar stream, read block by block with every size checked
    before anything is read: a strict subset of the format, which is all the official CIFAR-10
    archive uses. (Python's :mod:`tarfile` parses pax, GNU long-name and sparse headers whole and
    recursively before a caller can check them: crafted archives of a few kilobytes hung it,
    overflowed its recursion or made it hold a gigabyte.)"""

    def __init__(self, stream: BufferedIOBase, archive: Path, limits: TarLimits) -> None:
        self._stream, self._archive, self._pos = stream, archive, 0
        self._limits = limits

    def _refuse(self, why: str) -> DatasetError:
        return DatasetError(f"{self._archive}: not {self._limits.archive} ({why}); delete it "
                            "and download again.")

    def read(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise DatasetError(f"{self._archive}: the archive ends early; it may be truncated - "
                               "delete it and download again.")
        self._pos += n
        return data

    def chunks(self, n: int) -> Iterator[bytes]:
        """The next ``n`` bytes, a megabyte at a time."""
        while n:
            chunk = self.read(min(n, 1 << 20))
            n -= len(chunk)
            yield chunk

    def skip(self, n: int) -> None:
        for _ in self.chunks(n):
            pass

    def _pax_path(self, body: bytes, count: int) -> bytes | None:
        """The ``path`` record of a pax header (records are ``"<length> <key>=<value>\\n"``),
        parsed by hand in one pass. Records that would change how the entry is read (``size``,
        written for entries beyond 8 GiB; GNU sparse maps) and malformed ones are refused."""
        path, pos = None, 0
        while pos < len(body):
            space = body.find(b" ", pos, pos + 20)
            length = body[pos:space]
            if space < 0 or not length.isdigit() or int(length) <= space - pos or \
                    pos + int(length) > len(body) or body[pos + int(length) - 1] != 10:
                raise self._refuse(f"entry {count} is a malformed pax header")
            key, equals, value = body[space + 1:pos + int(length) - 1].partition(b"=")
            if not key or not equals:
                raise self._refuse(f"entry {count} is a malformed pax header")
            if key == b"path":
                path = value
            elif key == b"size" or key.startswith(b"GNU.sparse."):
                raise self._refuse(f"entry {count} is a pax header that changes how an entry is "
                                   f"read ({short_repr(key.decode('latin1'))})")
            pos += int(length)
        return path

    def entries(self) -> Iterator[tuple[str, int | None]]:
        """``(name, size)`` of each file entry, and ``(name, None)`` of each folder or link; the
        caller reads or skips a file's ``size`` bytes (:meth:`chunks`, :meth:`skip`) before
        asking for the next, which skips the padding."""
        long_name, limits = None, self._limits
        for count in range(1, limits.entries + 2):
            header = self.read(_BLOCK)
            if header == bytes(_BLOCK):
                return  # the end-of-archive marker
            if count > limits.entries:
                raise self._refuse(f"more than {limits.entries} entries; {limits.entries_note}")
            stored = _octal(header[148:156])
            if stored is None or stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
                raise self._refuse(f"entry {count} is not a tar header (bad checksum)")
            size, kind = _octal(header[124:136]), header[156:157]
            if size is None or size > limits.entry_bytes:
                raise self._refuse(f"entry {count} declares a size of "
                                   f"{short_repr(header[124:136])}; {limits.entry_note}")
            padded = -(-size // _BLOCK) * _BLOCK
            if self._pos + padded > limits.total_bytes:
                raise self._refuse(f"more than {limits.total_bytes >> 20} MiB uncompressed; "
                                   f"{limits.total_note}")
            name = header[:100].split(b"\0", 1)[0]
            if header[257:263] == b"ustar\0" and header[345:500].strip(b"\0"):  # POSIX prefix
                name = header[345:500].split(b"\0", 1)[0] + b"/" + name
            if kind in (b"x", b"L", b"g") and size > MAX_PAX_BYTES:
                raise self._refuse(f"entry {count} is a pax or long-name header of {size} bytes; "
                                   f"at most {MAX_PAX_BYTES >> 10} KiB are read")
            if kind in (*_FILE_TYPES, *_SKIPPED_TYPES) and long_name is not None:
                name, long_name = long_name, None  # the long path a header before gave it
            if kind in _FILE_TYPES:
                if name.endswith(b"/"):  # an old-style folder
                    raise self._refuse(f"entry {count} {short_repr(name)} is a file named as a "
                                       "folder")
                yield name.decode("utf-8", "replace"), size
                self.skip(padded - size)
            elif kind in _SKIPPED_TYPES:
                yield name.decode("utf-8", "replace"), None
                self.skip(padded)
            elif kind == b"g":  # a global pax header: nothing of it may name an entry
                if self._pax_path(self.read(padded)[:size], count) is not None:
                    raise self._refuse(f"entry {count} is a global pax header with a path")
            elif kind in (b"x", b"L"):
                # the next entry's long path: a pax header's "path" record, or a GNU long name
                if long_name is not None:
                    raise self._refuse(f"entry {count} is a second long-name header in a row")
                body = self.read(padded)[:size]
                if kind == b"L" and b"\0" not in body:
                    raise self._refuse(f"entry {count} is a GNU long name without its end")
                long_name = (body.split(b"\0", 1)[0] if kind == b"L"
                             else self._pax_path(body, count))
            else:
                raise self._refuse(f"entry {count} {short_repr(name)} is of tar type "
                                   f"{short_repr(kind)}")
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
