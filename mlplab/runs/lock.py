"""One process at a time per run folder: the lock a run holds while it trains.

A run's files are written by the one process training it: a second process resuming the same
folder (the first still running under ``nohup``, or in another terminal) would delete the first's
half-written files as a killed run's leftovers, and the two would overwrite each other's
checkpoints, history and metrics, ending in a run that neither made. :func:`run_lock` holds an
exclusive ``flock`` on the folder's ``.lock`` file while a run trains and refuses a second
process with who holds it; :func:`training_process` tells ``mlplab runs`` that a run is still
training rather than killed.

``flock`` locks belong to the open file, so the system releases them when the process ends,
however it ends (SIGKILL, a power cut): a lock can never be left behind by a dead run, and the
file's contents (the holder's process, host and start) are only for messages. Where ``fcntl`` is
missing (Windows), or the file system has no ``flock``, runs train unlocked, as before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mlplab._validation import setting

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

#: the lock file inside a run folder (hidden: it is not one of the run's results)
LOCK_FILE = ".lock"

#: a symbolic link is not followed (one planted in a run folder from elsewhere, or by another user
#: of a shared folder, made the lock truncate and overwrite the file it pointed to), and a FIFO
#: does not block the open (``mlplab runs`` hung on one)
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class RunInUseError(ValueError):
    """The run folder is being trained by another process."""


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, new: bool = False, noun: str = "run",
             doing: str = "trained", wait: bool = False,
             lock_file: str = LOCK_FILE,
             on_wait: Callable[[str], None] | None = None) -> Iterator[Path | None]:
    """Hold ``run_dir``'s lock within the block; a :class:`RunInUseError` naming the process
    that holds it if another one does (telling a ``new`` run to choose another folder, and a
    resumed one to wait; ``noun``: what the folder holds, a run or a depth study; ``doing``:
    what the other process does to it, "being trained" or, for a report, written). With
    ``wait``, a lock another process holds is waited for instead. ``lock_file``: the file's
    name, for a second lock in one folder. ``on_wait``: called with the holder's line (or "")
    once, before a wait for another process's lock begins, so that a long wait can be
    announced. The file is removed again at the end, so that a run folder holds only the run's
    own files (and an empty folder can still be removed). Yields the lock file, or None where
    the run goes unlocked: while held, the file's absence means the folder was removed or
    moved."""
    path = Path(run_dir) / lock_file
    fd = _acquire(path, new, noun, doing, wait, on_wait) if fcntl is not None else None
    if fd is None:  # no flock here: the run trains unlocked, as it did before locks
        yield None
        return
    try:
        with contextlib.suppress(OSError):  # who holds it is only for messages (a full disk)
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()}, since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        yield path
    finally:
        # unlinked while still locked: a process that opens the path after this finds no file
        # or a new one, and one that opened it before finds it unlinked once it has the lock
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # releases the lock


#: how long a lock is waited for before it counts as held: ``mlplab runs`` takes it for a moment
#: to test it, which must not refuse a run starting at that instant
_PATIENCE = 0.5


def _acquire(path: Path, new: bool, noun: str = "run", doing: str = "trained",
             wait: bool = False, on_wait: Callable[[str], None] | None = None) -> int | None:
    """The locked file's descriptor; None on a file system without ``flock`` (some network and
    FUSE ones answer ENOLCK or EOPNOTSUPP)."""
    assert fcntl is not None
    deadline = time.monotonic() + _PATIENCE
    while True:
        try:
            fd = _open_lock(path)
        except OSError as exc:  # a read-only folder, or another user's
            if exc.errno in (errno.ELOOP, errno.EISDIR):  # a symbolic link, a folder
                raise _not_a_lock_file(path) from None
            raise _cannot_write(path.parent, exc.strerror or str(exc)) from None
        if not _regular(fd):
            os.close(fd)
            raise _not_a_lock_file(path)
        if not os.access(path.parent, os.W_OK | os.X_OK):
            # a read-only folder that holds a lock file (a killed run's, opened read-only): the
            # run was let in, trained, and failed at its first checkpoint
            os.close(fd)
            from mlplab.io import why_not_writable

            raise _cannot_write(path.parent, why_not_writable(path.parent))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise
                if on_wait is not None:
                    on_wait(_holder(fd))
                    on_wait = None  # once: the holder's file may be replaced while we wait
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            # a new run lost the folder to another that started there at the same moment
            what_now = (f"choose another {setting('--out', 'out')}" if new else
                        "wait for it to end, or stop it (Ctrl-C saves a checkpoint) and resume "
                        f"the {noun} then")
            raise RunInUseError(f"{path.parent} is being {doing} by another process"
                                f"{f' ({holder})' if holder else ''}; {what_now}.") from None
        except OSError:  # no flock on this file system
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        except BaseException:  # the lock must not outlive a failure here
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)  # the holder removed this file as we locked it: lock the current one


def _open_lock(path: Path) -> int:
    """The lock file, created (with the user's umask, so that a group-writable folder's
    members can all lock it) or opened read-write; one left by another user's killed run that
    this user may not write is opened read-only, which ``flock`` accepts as well (only the
    holder's line for messages is not written)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o666)
    except PermissionError as denied:
        try:
            return os.open(path, os.O_RDONLY | _NO_FOLLOW)
        except FileNotFoundError:  # a read-only folder without one: say why it was not made
            raise denied from None


def _regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _cannot_write(folder: Path, why: str) -> ValueError:
    return ValueError(f"cannot write in the run folder {folder} ({why}); a run is trained only "
                      "in a folder it may write to.")


def _not_a_lock_file(path: Path) -> ValueError:
    return ValueError(f"{path} is not a lock file as mlplab makes it (a symbolic link, a folder "
                      "or another special file); it is not opened: remove it and try again.")


def _holder(fd: int) -> str:
    """The holder's line, unless it names a process of this machine that no longer exists: a
    lock taken read-only (another user's leftover file) could not be given its holder's line,
    and the dead process's must not be named as the one training."""
    try:
        line = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    match = re.match(r"process (\d+) on (\S+),", line)
    if match and match[2] == socket.gethostname() and not _alive(int(match[1])):
        return ""
    return line


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's (EPERM): it exists
        return True
    return True


def refuse_if_training(folder: str | os.PathLike, noun: str = "a run") -> None:
    """A ``ValueError`` if another process is training ``noun`` (a run, a depth study) in
    ``folder``, for a new one given it as its output: the checks that let a stopped run's folder
    be reused or resumed cannot tell it from one still running."""
    holder = training_process(folder)
    if holder is not None:
        raise ValueError(f"{folder} already holds {noun}, which another process is training now "
                         f"({holder}); choose another {setting('--out', 'out')}.")


def training_process(run_dir: str | os.PathLike) -> str | None:
    """Who is training the run in ``run_dir`` now (``"process 123 on host, since ..."``), or
    None if no process is (finished, stopped or killed). Takes nothing: the lock is only
    tested."""
    if fcntl is None:
        return None
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY | _NO_FOLLOW)
    except OSError:  # no lock file: nothing trains it (or the folder cannot be read, or a link)
        return None
    try:
        if not _regular(fd):  # not a lock of mlplab's
            return None
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd) or "another process"
    except OSError:
        return None
    finally:
        os.close(fd)  # (also releases the shared lock taken for the test)
    return None
