"""Files on disk: atomic writes and model files.

Every write goes to a temporary file in the destination folder, is flushed and ``fsync``-ed, and
then renamed over the destination with ``os.replace`` (atomic on POSIX and Windows). A reader, or
a run killed half-way through a write, therefore sees either the old file or the new one, never a
torn one.

A model file is a plain ``.npz`` archive that ``np.load(path, allow_pickle=False)`` opens:

* ``param/<name>``: the model's parameters and batch-norm statistics (``W1``, ``b1``, ...,
  ``running_mean1``, ...), as in ``model.state_dict()``;
* ``preprocessing/<name>``: the fitted preprocessing, if any: a
  :class:`mlplab.data.transforms.Pipeline`'s ``state_dict()`` (e.g. the mean image), or the arrays
  of a plain dict;
* ``__meta__``: a 0-d unicode array holding JSON: ``{"format": "mlplab-model", "version": 1,
  "class": "MLP", "config": model.config, "preprocessing": {...} | null, "extra": {...}}``, and
  ``"activation_module"`` when the activation is one registered beyond mlplab's own (the module
  that called ``register_activation`` for it, named in the message of a reader that lacks the
  registration).

:func:`load_model` rebuilds the model from ``config`` and checks every array's name, shape, dtype
and finiteness before using it, raising a ``ValueError`` that says what is wrong.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import stat
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

import numpy as np

from mlplab import interrupts

if TYPE_CHECKING:
    from mlplab.models import MLP


@runtime_checkable
class HasStateDict(Protocol):
    """Preprocessing that a model file stores as arrays: a fitted
    :class:`mlplab.data.transforms.Pipeline`, or anything with its ``state_dict()``."""

    def state_dict(self) -> Mapping[str, Any]: ...


#: where mlplab's commands put their output folders unless told otherwise: ``runs/<name>``
RUNS_ROOT = "runs"

MODEL_FORMAT = "mlplab-model"
MODEL_VERSION = 1
META_KEY = "__meta__"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


# --------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None,
                exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error the file is
    fsync-ed and renamed onto ``path``, otherwise removed. For writers that want a file name
    (``savefig``, ``np.savez``). With ``exclusive`` the file is put in place only if ``path``
    does not exist, else ``FileExistsError``, also against another process doing the same at
    the same moment (it is hard-linked into place, which fails if the name exists; on a file
    system without hard links, checked and renamed)."""
    path = Path(path)
    tmp_path: Path | None = None
    failed = True
    try:
        try:
            # (a full disk can refuse the folder or the temporary file too: no inodes left)
            path.parent.mkdir(parents=True, exist_ok=True)
            # the file and the name that removes it in one step: a Ctrl-C between them (a second
            # one while a stopped run saves its checkpoint) left a hidden temporary file behind
            with interrupts.deferred():
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.",
                                           suffix=suffix or path.suffix or ".tmp",
                                           dir=path.parent)
                os.close(fd)
                tmp_path = Path(tmp)
            yield tmp_path
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would
            if exclusive:
                _link_new(tmp_path, path)
            else:
                os.replace(tmp_path, path)
            _fsync_dir(path.parent)
            failed = False
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(path, exc) from None
            if exc.errno in _REFUSED and not isinstance(exc, WriteRefusedError):
                raise WriteRefusedError.of(path, exc) from None
            if isinstance(exc, FileNotFoundError) and exc.filename is not None \
                    and not path.parent.is_dir():
                # the folder removed or moved in the middle of the write: the system's message
                # named the hidden temporary file ("runs/x/.checkpoint.npz.fndtubtv.npz: No such
                # file or directory"), a run writing its checkpoint every few milliseconds met it
                raise FileNotFoundError(f"{path.parent} was removed or moved while {path.name} "
                                        "was written there; nothing was written") from None
            raise
    finally:
        if tmp_path is not None:
            _remove_temporary(tmp_path, failed)


def remove_partial_writes(folder: str | os.PathLike, names: Collection[str],
                          older_than: float | None = None) -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` writes of the files ``names`` in
    ``folder`` and that a killed process (SIGKILL, a closed terminal's SIGHUP, a power cut) left
    behind: ``.NAME.XXXXXXXX.SUFFIX``. They never replaced a real file, so nothing is lost.
    ``older_than`` seconds spares those of writes that may still be going on in another
    process; the removed paths are returned."""
    removed = []
    now = time.time()
    for p in Path(folder).iterdir():
        if p.name.startswith(".") and p.is_file() and \
                any(p.name.startswith(f".{name}.") for name in names):
            with contextlib.suppress(OSError):  # (gone meanwhile: another process's cleanup)
                if older_than is not None and now - p.stat().st_mtime < older_than:
                    continue
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _remove_temporary(tmp: Path, failed: bool = False) -> None:
    """Remove ``tmp`` if it is still there (not renamed into place), also when a Ctrl-C lands
    meanwhile: that one is raised once the file is gone. ``failed``: the write failed, and a
    file that cannot be removed (its folder made read-only or unwritable meanwhile, which also
    refused the rename) is left, for :func:`remove_partial_writes`: the
    error that ended the write is the news, where the unlink's replaced it, naming the hidden
    temporary file ("runs/x/.checkpoint.npz.ca20nccp.npz: Operation not permitted")."""
    interrupted = False
    while True:
        try:
            tmp.unlink(missing_ok=True)
            break
        except KeyboardInterrupt:
            interrupted = True
        except OSError:
            if not failed:
                raise
            break
    if interrupted:
        raise KeyboardInterrupt


def _link_new(tmp: Path, path: Path) -> None:
    """Give the complete file ``tmp`` the name ``path`` if no file has it (FileExistsError)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:  # no hard links here (EPERM, ENOTSUP, ...): not atomic, but checked
        if is_disk_full(exc):
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(tmp, path)


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_disk_full(exc: OSError) -> bool:
    """Whether ``exc`` says the disk (or the quota, or the file size limit) is full."""
    return exc.errno in _DISK_FULL and not isinstance(exc, DiskFullError)


class DiskFullError(OSError):
    """A write failed for lack of disk space (or quota); the previous file is unchanged."""

    def __init__(self, path: Path, cause: OSError) -> None:
        whats: dict[int | None, str] = {errno.EDQUOT: "disk quota exceeded",
                                        errno.EFBIG: "file too large"}
        what = whats.get(cause.errno, "no space left on device")
        # a file-size limit is this process's (ulimit -f, as a shared machine's or CI runner's
        # may set), not the disk's: "free some disk space" sent the user to a disk with room
        todo = _file_size_advice() if cause.errno == errno.EFBIG else "free some disk space"
        #: what failed and what to do, without "run the command again" (for a caller whose
        #: command is not to be run again as it was: a training run's --resume finishes it)
        self.reason = f"{what} while writing {path} ({cause.strerror or cause}); {todo}"
        super().__init__(
            f"{self.reason} and run the command again - the previous {path.name}, if any, is "
            "intact")
        self.errno = cause.errno
        self.filename = str(path)

    def __str__(self) -> str:  # the message alone (OSError would prefix "[Errno 28] None")
        return str(self.args[0])


def _file_size_advice() -> str:
    """What to do about a file too large (EFBIG): raise this process's file-size limit where it
    has one (``ulimit -f``, in blocks of 1024 bytes), else write to a file system that takes
    larger files (FAT32 stops at 4 GiB)."""
    elsewhere = "write to a file system that takes larger files"
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):  # no resource module (Windows)
        return elsewhere
    if soft == resource.RLIM_INFINITY:
        return elsewhere
    return (f"raise this process's file size limit (ulimit -f, now {soft // 1024} blocks of "
            "1 KiB; ulimit -f unlimited lifts it)")


#: a write the file system refuses: a read-only one, or a folder this user may not write to
_REFUSED = {errno.EROFS, errno.EACCES, errno.EPERM}
_WINDOWS = os.name == "nt"


class WriteRefusedError(OSError):
    """A write refused by the file system (made read-only, or the folder's permissions taken
    away, since the command began); the previous file is unchanged. Its message names the file
    written, where the system's named the hidden temporary file beside it
    (``runs/x/.checkpoint.npz.ca20nccp.npz: Read-only file system``) and not what was kept."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        what = "read-only file system" if cause.errno == errno.EROFS else "permission denied"
        # Windows also refuses to replace a file that another program holds open (a viewer of
        # a figure, say), as "permission denied"; POSIX replaces it all the same
        held = f" (or close the program that holds {path.name} open)" \
            if _WINDOWS and cause.errno != errno.EROFS else ""
        self.message = (f"cannot write {path} ({what}); make {path.parent} writable{held} and "
                        f"run the command again - the previous {path.name}, if any, is intact")
        self.filename = str(path)

    def __str__(self) -> str:  # the message alone (OSError would prefix "[Errno 30] ...")
        return self.message

    @staticmethod
    def of(path: Path, cause: OSError) -> WriteRefusedError:
        """The error for ``cause``: a :class:`WritePermissionError` (a ``PermissionError``
        too) for a permission refused, as the system's error was."""
        if isinstance(cause, PermissionError) or cause.errno in (errno.EACCES, errno.EPERM):
            return WritePermissionError(path, cause)
        return WriteRefusedError(path, cause)


class WritePermissionError(WriteRefusedError, PermissionError):
    """A :class:`WriteRefusedError` for a permission refused (EACCES, EPERM): still the
    ``PermissionError`` that the system raised, which a caller's ``except PermissionError``
    caught before the error named the file written (a read-only file system, EROFS, is a
    plain ``OSError``, as Python's own is)."""


def broken_link(path: str | os.PathLike) -> str | None:
    """"PATH is a link to TARGET, which does not exist" for a link whose target is gone, "PATH
    is a loop of symbolic links (PATH -> A -> PATH; ...)" for one that leads back to itself;
    None for anything else."""
    trouble = link_trouble(path)
    return None if trouble is None else f"{path} is {trouble}"


def link_trouble(path: str | os.PathLike) -> str | None:
    """Why the link ``path`` leads to no file, in words to follow "PATH is" (see
    :func:`broken_link`); None when ``path`` is no such link. A link to a name longer than the
    system takes is said so, where "File name too long" after a short name puzzled."""
    p = Path(path)
    if not stat.S_ISLNK(_lmode(p)):
        return None
    try:
        os.stat(p)
        return None  # it leads to a file
    except (FileNotFoundError, NotADirectoryError):
        failure: OSError | None = None
    except OSError as exc:
        failure = exc
    chain, looped = link_chain(p)
    if looped:  # (its target exists, as a link: "which does not exist" sent users looking)
        return (f"a loop of symbolic links ({' -> '.join(map(_shortened, chain))}; fix or "
                "remove one of them)")
    target = " -> ".join(map(_shortened, chain[1:]))
    if failure is None:
        return f"a link to {target}, which does not exist"
    if failure.errno == errno.ENAMETOOLONG:
        return f"a link to a name too long to follow ({target}; fix or remove the link)"
    return (f"a link that cannot be followed (to {target}: {failure.strerror or failure}; fix "
            "or remove the link)")


def _lmode(path: Path) -> int:
    """``path``'s own mode (links not followed), 0 where it cannot be looked at."""
    try:
        return os.lstat(path).st_mode
    except (OSError, ValueError):  # (ValueError: a NUL in the name)
        return 0


def _shortened(name: str) -> str:
    """A link's target as a message shows it: one longer than a file name may be (a name too
    long to follow) by its start and length, not a line-long run of characters."""
    return name if len(name) <= 255 else f"{name[:40]}...[{len(name)} characters]"


def path_trouble(path: str | os.PathLike) -> str | None:
    """What makes ``path`` unreachable through its links, in a sentence naming it: "PATH is a
    loop of symbolic links (...)", or "PATH cannot be reached: FOLDER is a link to ..." for a
    link among the folders above it (Python's "Too many levels of symbolic links" named only
    the path, not which link). None where no link on the way is at fault."""
    fault = link_at_fault(path)
    if fault is None or fault.startswith(f"{Path(path)} is "):
        return fault
    return f"{Path(path)} cannot be reached: {fault}"


def link_at_fault(path: str | os.PathLike) -> str | None:
    """"LINK is ..." (:func:`broken_link`) for the first link on the way to ``path``, from the
    top, that leads nowhere, ``path`` itself included; None where there is none."""
    p = Path(path)
    for step in (*reversed(p.parents), p):
        broken = broken_link(step)
        if broken is not None:
            return broken
    return None


def nothing_at(path: str | os.PathLike) -> bool:
    """Whether nothing is at ``path``, as the system says (no such file or folder), and no link
    on the way to it is at fault. ``os.path.lexists`` answers False also for a path through a
    loop of links or a link to a name too long, which commands then took for one not made
    yet."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return path_trouble(path) is None
    except (OSError, ValueError):
        return False
    return False


def is_file(path: str | os.PathLike) -> bool:
    """``Path.is_file()``, except that an error other than a missing file is raised, on every
    Python: pathlib's answers False for a loop of links, raises "File name too long" without
    saying which link up to Python 3.13, and answers False for every error from 3.14 on. A file
    a command needs that is there but cannot be looked at is then said so (see
    :func:`path_trouble`), not taken for missing."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def found_file(path: str | os.PathLike) -> bool:
    """Whether a file is found at ``path``, for a hint that looks for one: False for one that
    cannot be looked at (a loop of links, a link to a name too long), as Python 3.14's
    ``Path.is_file()`` answers, where earlier Pythons raised a bare "File name too long" in
    place of the message the hint was part of. Whatever reads the file says what is wrong."""
    try:
        return is_file(path)
    except (OSError, ValueError):
        return False


def is_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder (links followed); False for one that cannot be looked at,
    whatever the reason, as Python 3.14's ``Path.is_dir()`` answers (before it, a link to a name
    too long raised a bare "File name too long"): the caller says why, as
    :func:`mlplab.runs.files.not_a_folder` does."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


#: links a chain is followed through, as Linux's kernel does (MAXSYMLINKS) before ELOOP
_MAX_LINKS = 40


def link_chain(path: str | os.PathLike) -> tuple[list[str], bool]:
    """The link ``path`` and the targets it leads through, as the links spell them
    (``["a", "b", "a"]``), and whether they go round in a loop (or further than the system
    follows links) rather than end at a name that does not exist (or is no link)."""
    chain, seen, current = [str(path)], set(), Path(path)
    for _ in range(_MAX_LINKS):
        key = os.path.abspath(current)
        if key in seen:
            return chain, True
        seen.add(key)
        try:
            target = os.readlink(current)
        except OSError:  # not a link (missing, or a file): the end of the chain
            return chain, False
        chain.append(target)
        current = current.parent / target  # (an absolute target replaces the folder)
    return chain[:8] + ["..."], True


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def special_file(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is something other than a regular file (links followed), in
    words: "a folder", "a named pipe (FIFO)", "a socket", ... None for a regular file, or
    nothing there. For a file given to be read: a FIFO blocks its reader for ever, a device
    may never end."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "a special file")


#: what to do in a current folder that was removed (``cd`` into a folder, then ``rm -r`` of it
#: from another shell, or a CI step's workspace wiped under a running job)
CWD_REMOVED = "the current folder was removed; cd to a folder that exists"


def cwd_removed() -> bool:
    """Whether the current folder was removed: a relative path then names nothing (its folder
    cannot be made, "No such file or directory"), and ``Path.resolve()`` raises."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    return False


def why_no_folder(path: str | os.PathLike, exc: OSError) -> str:
    """Why the folder ``path`` could not be made, in words. A dangling link or a file on its
    path would otherwise be told as mkdir's "File exists" or "Not a directory"."""
    if not Path(path).is_absolute() and cwd_removed():
        return f"{CWD_REMOVED} (or give an absolute path)"
    for p in (Path(path), *Path(path).parents):
        if (broken := broken_link(p)) is not None:
            return broken
        try:  # (not pathlib's exists(): a link to a name too long raised on Python < 3.14)
            mode = os.stat(p).st_mode
        except (OSError, ValueError):
            continue  # not there, or not to be looked at: a link above it may say why
        if not stat.S_ISDIR(mode):
            return f"{p} is a file, not a folder"
        break  # the nearest folder there is: the system's reason (permissions, a full disk)
    return exc.strerror or str(exc)


def out_folder(out: str | os.PathLike) -> Path:
    """``Path(out)`` for an output folder given from Python, refusing an empty text:
    ``Path("")`` is the current folder, so ``out=os.environ.get("OUT", "")`` with OUT unset wrote
    a run's (a study's, a report's) files among whatever the current folder held, where the
    command line refuses ``--out ""``. ``"."`` still names the current folder."""
    if isinstance(out, (str, bytes)) and not out:
        from mlplab._validation import setting

        name = setting("--out", "out")
        raise ValueError(f"{name} is an empty text (an unset variable?); give a folder "
                         "('.' for the current one).")
    return Path(out)


def check_out_folder(out: str | os.PathLike, folder: str | os.PathLike | None = None,
                     error: type[Exception] = ValueError, name: str | None = None,
                     writable: bool = True) -> None:
    """Refuse (with ``error``) an output ``out`` whose folder (``out`` itself, or ``folder`` for
    an output file's) is a file or lies under one, or cannot be written (it, or the nearest
    folder above it that exists, from which it would be made), before anything is loaded or
    made. One message for every command with ``--out`` (``out`` from Python; ``name``: another
    option's name, such as ``--plot``; ``writable=False``: a folder the command only names)."""
    from mlplab._validation import setting

    start = Path(out if folder is None else folder)
    name = name or setting("--out", "out")
    if not start.is_absolute() and cwd_removed():
        # "." still exists for stat() there, and the relative path failed only later: a
        # study's database as "[Errno 2] No such file or directory", naming nothing
        raise error(f"cannot write to {name} {out}: {CWD_REMOVED}, or give {name} an "
                    "absolute path.")
    blocker = next((p for p in (start, *start.parents) if _there(p, out, name, error)), None)
    if blocker is None:
        return
    if blocker.is_dir():
        # found now, not after the data has loaded and the preprocessing has been fitted
        if writable and not os.access(blocker, os.W_OK | os.X_OK):
            raise error(f"cannot write to {name} {out}: {blocker} is not writable "
                        f"({why_not_writable(blocker)}); choose another {name}.")
        return
    what = f"{name} {out} is a file" if blocker == Path(out) else \
        f"{name} {out}: {blocker} is a file"
    raise error(f"{what}, not a folder; choose another {name}.")


def _there(path: Path, out: str | os.PathLike, name: str, error: type[Exception]) -> bool:
    """Whether ``path``, on the way to ``out``, is there (a link followed), refused (with
    ``error``) where a link on the way leads nowhere (a loop, a name too long), which pathlib
    answered as missing or with a bare "File name too long"; the system's other errors
    raised."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        why = link_at_fault(path)
        if why is None:  # not a link's fault (a name too long itself): "PATH: reason"
            raise
        raise error(f"cannot write to {name} {out}: {why}; choose another {name}.") from None
    return True


def why_not_writable(folder: str | os.PathLike) -> str:
    """Why ``os.access`` refused to let us write in ``folder``: a read-only file system (a
    read-only mount, a container's image) or the folder's permissions. The first was told as
    "permission denied", which sent the user to chmod a folder no chmod can open."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):  # no statvfs (Windows): permissions are the likely cause
        pass
    return "permission denied"


def _fsync_dir(folder: Path) -> None:
    # makes the rename itself durable; not possible (nor needed) on every platform
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (with ``exclusive``, only as a new file: see
    :func:`atomic_path`)."""
    with atomic_path(path, exclusive=exclusive) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, exclusive: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically. A byte of a path that is not UTF-8 (a lone
    surrogate in ``text``) is written as ``\\xe9`` (:func:`mlplab._text.printable`)."""
    from mlplab._text import printable

    return write_bytes(path, printable(text).encode("utf-8"), exclusive)


def write_json(path: str | os.PathLike, obj: Any, exclusive: bool = False) -> Path:
    """Write ``obj`` as indented JSON atomically (NumPy scalars and arrays are converted);
    with ``exclusive`` only as a new file (:func:`atomic_path`)."""
    return write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n", exclusive)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``; a ``ValueError`` naming the file if it is not valid JSON (UTF-8).
    A leading byte order mark is passed over, as RFC 8259 allows: Windows tools put one before
    the UTF-8 of a file they save (PowerShell's ``Set-Content -Encoding UTF8``, Notepad's
    "UTF-8 with BOM"), and a config.json edited there was refused as "not valid JSON"."""
    with open(path, encoding="utf-8-sig") as fh:
        try:
            return json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); was it edited by hand or "
                             "damaged?") from None


def write_csv(path: str | os.PathLike, header: Sequence[str],
              rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file (a header row, then ``rows``) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
              compress: bool = False) -> Path:
    """Write ``arrays`` to an ``.npz`` archive atomically. Object arrays are refused, so the file
    always loads with ``allow_pickle=False``."""
    for key, arr in arrays.items():
        if np.asarray(arr).dtype.kind == "O":
            raise ValueError(f"{key!r} is an object array; store JSON in a unicode array instead.")
    with atomic_path(path, suffix=".npz") as tmp:
        savez(tmp, arrays, compress)
    return Path(path)


def savez(file: str | os.PathLike | BinaryIO, arrays: Mapping[str, np.ndarray],
          compress: bool = False) -> None:
    """``np.savez`` (``np.savez_compressed`` with ``compress``): the same archive, written the
    same way, except that a failed write (a full disk) closes it at once on every NumPy: NumPy
    < 2.2 leaves it open for the garbage collector, whose failed retry prints a traceback."""
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(file, mode="w", compression=compression, allowZip64=True) as zf:
        for key, value in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def json_array(obj: Any) -> np.ndarray:
    """``obj`` as JSON in a 0-d unicode array (storable in an ``.npz`` without pickling)."""
    return np.array(json.dumps(obj, default=_json_default))


def read_npz(path: str | os.PathLike,
             keys: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (or only those of ``keys`` that it holds: a small one of a
    large file is read without the rest), loaded eagerly with ``allow_pickle=False``. Raises a
    ``FileNotFoundError`` naming the file if it is missing (or is a folder), a ``ValueError``
    naming it if it is truncated or not an ``.npz`` archive."""
    path = Path(path)
    if isinstance(keys, str):  # one name, not its letters ("a" in "__meta__" is True)
        keys = [keys]
    if path.is_dir():
        # a run folder is the likely mistake: "does not exist" would be false
        inside = path / "model.npz"
        hint = f"; the model file of a run folder is {inside}" if inside.is_file() else ""
        raise FileNotFoundError(f"{path} is a folder, not an .npz file{hint}.")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        _check_npz_members(path)
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files if keys is None or key in keys}
    except _NpzRefused as exc:
        raise ValueError(f"{path}: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, struct.error,
            OverflowError, NotImplementedError, RuntimeError) as exc:
        # zipfile raises NotImplementedError for an unknown version or compression method and
        # RuntimeError for an "encrypted" entry: a damaged header can claim either
        detail = " ".join(str(exc).split())
        raise ValueError(f"{path} is not a readable .npz file ({type(exc).__name__}: {detail});"
                         " it may be truncated or not an mlplab file.") from None


class _NpzRefused(Exception):
    pass


#: deflate cannot compress better than about 1032:1; a member claiming more is corrupt or a bomb
_MAX_DEFLATE_RATIO = 1100


def _check_npz_members(path: Path) -> None:
    """Read every member's ``.npy`` header (not its data) and refuse, before anything is
    allocated, object arrays and headers that promise more data than the member can hold: NumPy
    would otherwise allocate whatever a crafted header asks for (terabytes) before reading."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            stored = info.compress_type == zipfile.ZIP_STORED
            if info.file_size > info.compress_size * (1 if stored else _MAX_DEFLATE_RATIO) + 1024:
                raise _NpzRefused(f"entry {info.filename!r} claims {info.file_size} bytes from "
                                  f"{info.compress_size} stored bytes; the file is corrupt.")
            with zf.open(info) as fp:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
                else:
                    raise _NpzRefused(f"entry {info.filename!r} uses .npy format {version}, "
                                      "which mlplab does not write.")
                header = fp.tell()
            if dtype.hasobject:
                raise _NpzRefused(f"entry {info.filename!r} is a pickled Python object array; "
                                  "mlplab files never hold one and it is refused unread "
                                  "(unpickling can run code).")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes != info.file_size - header:
                raise _NpzRefused(f"entry {info.filename!r} promises {nbytes} bytes of "
                                  f"{dtype} {tuple(shape)} but holds {info.file_size - header}; "
                                  "the file is truncated or corrupt.")


# --------------------------------------------------------------------------- model files
def model_arrays(model: MLP, preprocessing: HasStateDict | Mapping[str, Any] | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a model file (see the module docstring), for embedding in other archives
    such as checkpoints."""
    prep_spec, prep_arrays = split_preprocessing(preprocessing)
    meta = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "class": type(model).__name__,
            "config": model.config, "preprocessing": prep_spec, "extra": dict(extra or {})}
    from mlplab.models import registering_module

    module = registering_module(model.config["activation"])
    if module is not None:  # so that a reader without the registration can be told its module
        meta["activation_module"] = module
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"preprocessing/{k}": v for k, v in prep_arrays.items()})
    arrays[META_KEY] = json_array(meta)
    return arrays


def recorded_activation_module(path: str | os.PathLike) -> str | None:
    """The module that a model file or checkpoint records as having registered its activation
    (see :func:`model_arrays`); None if it records none or cannot be read. Only for messages:
    the value comes from a file and is checked before it is repeated."""
    try:
        meta = parse_json_array(read_npz(path, keys=[META_KEY])[META_KEY], META_KEY)
    except (OSError, ValueError, KeyError):
        return None
    return meta.get("activation_module") if isinstance(meta, dict) else None


def save_model(path: str | os.PathLike, model: MLP,
               preprocessing: HasStateDict | Mapping[str, Any] | None = None,
               extra: Mapping[str, Any] | None = None) -> Path:
    """Save ``model`` (an ``MLP``/``TwoLayerNet``) to ``path`` (``.npz``) atomically.

    ``preprocessing`` is a fitted :class:`mlplab.data.transforms.Pipeline` (anything with
    ``state_dict()``, rebuilt on load with ``Pipeline.from_state_dict``), or a dict whose NumPy
    arrays are stored as arrays and the rest as JSON. ``extra`` is any JSON-able dict (classes,
    dataset, image shape, metrics).
    """
    return write_npz(path, model_arrays(model, preprocessing, extra))


class LoadedModel:
    """What :func:`load_model` returns: ``model``, ``preprocessing`` (a fitted ``Pipeline``, the
    dict given to :func:`save_model` with its arrays restored, or None) and ``extra``."""

    def __init__(self, model: MLP, preprocessing: Any, extra: dict[str, Any]) -> None:
        self.model = model
        self.preprocessing = preprocessing
        self.extra = extra

    def __iter__(self) -> Iterator[Any]:  # allows ``model, prep, extra = load_model(path)``
        return iter((self.model, self.preprocessing, self.extra))

    def __repr__(self) -> str:
        return (f"LoadedModel(model={self.model!r}, preprocessing={self.preprocessing!r}, "
                f"extra keys {sorted(self.extra)})")


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Load a model file written by :func:`save_model`, validating it; returns a
    :class:`LoadedModel` (``.model``, ``.preprocessing``, ``.extra``). A missing file (or a
    folder) is a ``FileNotFoundError``, a damaged or foreign one a ``ValueError`` naming it
    (:func:`read_npz`)."""
    return model_from_arrays(read_npz(path), source=str(path))


def model_from_arrays(arrays: Mapping[str, np.ndarray], source: str = "model file") -> LoadedModel:
    """Rebuild and validate a model from the arrays of a model file (or a checkpoint)."""
    meta = _model_meta(arrays, source)
    config = meta["config"]
    params = _prefixed(arrays, "param/")
    _check_layer_shapes(config, params, source)
    model = _build_model(meta, config, source)
    _load_params(model, params, source)
    prep = _stored_preprocessing(meta.get("preprocessing"), _prefixed(arrays, "preprocessing/"),
                                 source)
    extra = meta.get("extra") or {}
    if not isinstance(extra, dict):
        raise ValueError(f"{source}: the stored 'extra' must be a JSON object; got "
                         f"{type(extra).__name__}.")
    return LoadedModel(model, prep, dict(extra))


def _prefixed(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays whose keys start with ``prefix``, keyed without it."""
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _model_meta(arrays: Mapping[str, np.ndarray], source: str) -> dict[str, Any]:
    """The file's metadata, refused unless it is an mlplab model file of this version with a
    model config."""
    if META_KEY not in arrays:
        raise ValueError(f"{source} is not an mlplab model file (no {META_KEY} entry).")
    meta = parse_json_array(arrays[META_KEY], f"{source}: {META_KEY}")
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{source} is not an mlplab model file (format "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r}).")
    if meta.get("version") != MODEL_VERSION:
        raise ValueError(f"{source} has model-file version {meta.get('version')!r}; this "
                         f"mlplab reads version {MODEL_VERSION}. Upgrade mlplab.")
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"{source}: the model config is missing.")
    return meta


def _build_model(meta: Mapping[str, Any], config: dict[str, Any], source: str) -> MLP:
    """The (untrained) network the config describes, with the config's seed recorded."""
    from mlplab._validation import check_registered
    from mlplab.models import ACTIVATIONS, MLP, TwoLayerNet

    two_layer = meta.get("class") == "TwoLayerNet"
    if not two_layer:
        # not an invalid file: one saved where its activation was registered
        check_registered(config.get("activation"), ACTIVATIONS, "activation", source,
                         module=meta.get("activation_module"))
    model: MLP
    try:
        if two_layer:
            hidden = config["hidden_sizes"]
            if len(hidden) != 1:
                raise ValueError("a TwoLayerNet has exactly one hidden layer")
            model = TwoLayerNet(config["input_size"], hidden[0], config["num_classes"],
                                std=config.get("std", 1e-4), seed=0,
                                dtype=config.get("dtype", "float64"))
        else:
            model = MLP(**{**config, "seed": 0})
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"{source}: the stored model config is invalid ({one_line(exc)})."
                         ) from None
    model.config["seed"] = config.get("seed")
    return model


def _load_params(model: MLP, params: Mapping[str, np.ndarray], source: str) -> None:
    """Load the stored parameters into ``model``, refused unless they are exactly the arrays
    the config implies, of its shapes and dtype, and finite."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{source} does not match its config: missing arrays {missing}, "
                         f"unexpected arrays {unexpected}.")
    for name, ref in expected.items():
        arr = params[name]
        if arr.shape != ref.shape:
            raise ValueError(f"{source}: {name} has shape {arr.shape}; the config implies "
                             f"{ref.shape}.")
        if arr.dtype != ref.dtype:
            raise ValueError(f"{source}: {name} has dtype {arr.dtype}; the config says "
                             f"{ref.dtype}.")
        if not np.isfinite(arr).all():
            raise ValueError(f"{source}: {name} contains NaN or infinite values; the model "
                             "is corrupt (did training diverge?).")
    model.load_state_dict(params)


def _stored_preprocessing(prep: Any, prep_arrays: dict[str, np.ndarray], source: str) -> Any:
    """The preprocessing as :func:`save_model` was given it: a ``Pipeline`` rebuilt from its
    state, a dict with its arrays restored, or None."""
    for key, arr in prep_arrays.items():
        if arr.dtype.kind not in "biufU" or (arr.dtype.kind == "f" and not np.isfinite(arr).all()):
            raise ValueError(f"{source}: preprocessing/{key} is not a finite numeric array.")
    if prep == {"type": "pipeline"}:
        from mlplab.data.transforms import Pipeline

        try:
            return Pipeline.from_state_dict(prep_arrays)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{source}: the stored preprocessing is invalid "
                             f"({one_line(exc).rstrip('.')}).") from None
    if isinstance(prep, dict):
        return {**prep, **prep_arrays}
    if prep is not None:
        raise ValueError(f"{source}: the stored preprocessing must be a JSON object or null; got "
                         f"{type(prep).__name__}.")
    return None


def _check_layer_shapes(config: Mapping[str, Any], params: Mapping[str, np.ndarray],
                        source: str) -> None:
    """Check the stored weight matrices against the layer sizes in ``config`` *before* the model
    is built: building allocates what the config says, and a crafted config could ask for
    terabytes. After this check the model is no larger than the arrays already read."""
    try:
        hidden = config["hidden_sizes"]
        if not isinstance(hidden, list):
            raise TypeError("hidden_sizes is not a list")
        sizes = [config["input_size"], *hidden, config["num_classes"]]
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
            raise TypeError(f"layer sizes {sizes} are not all integers")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{source}: the stored model config is invalid ({one_line(exc)})."
                         ) from None
    for i in range(1, len(sizes)):
        W = params.get(f"W{i}")
        if W is None:
            raise ValueError(f"{source} does not match its config: missing arrays ['W{i}'].")
        if W.shape != (sizes[i - 1], sizes[i]):
            raise ValueError(f"{source}: W{i} has shape {W.shape}; the config implies "
                             f"{(sizes[i - 1], sizes[i])}.")


def one_line(exc: BaseException) -> str:
    """An exception's message with its whitespace (newlines from a crafted name) collapsed, for
    error messages that must stay on one line."""
    return " ".join(str(exc).split())


def parse_json_array(arr: np.ndarray, what: str) -> Any:
    """Decode JSON stored by :func:`json_array`."""
    if arr.shape != () or arr.dtype.kind != "U":
        raise ValueError(f"{what} must be a 0-d unicode array holding JSON; got dtype "
                         f"{arr.dtype}, shape {arr.shape}.")
    try:
        return json.loads(str(arr))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc}).") from None


def split_preprocessing(prep: HasStateDict | Mapping[str, Any] | None
                        ) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """Split preprocessing into its JSON description and its arrays."""
    if prep is None:
        return None, {}
    if isinstance(prep, HasStateDict):  # has state_dict: a fitted transforms.Pipeline
        return {"type": "pipeline"}, {k: np.asarray(v) for k, v in prep.state_dict().items()}
    spec: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, value in prep.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            spec[key] = value
    json.dumps(spec, default=_json_default)  # fail now, not when reading
    return spec, arrays
