"""Which process ran a trial: the ``host:pid[#index]`` tag each trial records as its ``worker``
user attribute, and whether a process of this machine still exists. The search (failing the
trials of killed local workers) and the retraining (removing a killed process's temporary folders)
both need them, so they sit below both.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any

_WINDOWS = os.name == "nt"
#: Windows' access right to wait on a process, its error for a process id that does not exist,
#: and WaitForSingleObject's answer for a process still running
_SYNCHRONIZE = 0x00100000
_ERROR_INVALID_PARAMETER = 87
_WAIT_TIMEOUT = 0x102


#: trial user attribute: the PID namespace of the worker that runs the trial, where the system
#: has them (Linux). A process in another namespace (a container, ``unshare``) on a machine of
#: the same host name is not one whose pid can be looked up here: it seemed dead, and its live
#: trials were failed
NAMESPACE_ATTR = "mlplab:pid_namespace"


@functools.cache  # (read for each running trial after each trial: it does not change)
def pid_namespace() -> str | None:
    """This process's PID namespace (``pid:[4026531836]``); None where the system has none."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except (OSError, AttributeError):
        return None


def same_namespace(user_attrs: Any) -> bool:
    """Whether a trial's worker (its recorded :data:`NAMESPACE_ATTR`) shares this process's PID
    namespace; True for a trial that records none (named by an older mlplab, as before)."""
    recorded = user_attrs.get(NAMESPACE_ATTR)
    return recorded is None or recorded == pid_namespace()


def worker_name(index: int | None = None) -> str:
    name = f"{socket.gethostname()}:{os.getpid()}"
    return name if index is None else f"{name}#{index}"


def process_alive(pid: int) -> bool:
    if _WINDOWS:
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return not _exited(pid)


def _exited(pid: int) -> bool:
    """Whether ``pid`` is a process that has ended but that no process has collected yet (a
    zombie), which ``kill(pid, 0)`` still finds: the workers of a killed command are orphans
    that PID 1 collects, which in a container may take seconds, or never happen. Linux only
    (``/proc``); elsewhere False."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()  # (the name in parentheses may hold anything)
    return bool(fields) and fields[0] in ("Z", "X")


def _windows_process_alive(pid: int) -> bool:
    """``process_alive`` on Windows, where ``os.kill(pid, 0)`` is no probe: signal 0 is
    ``CTRL_C_EVENT``, a Ctrl-C sent to the console's processes (the workers of a search)."""
    import _winapi

    winapi: Any = _winapi  # typeshed declares its functions only when checking for Windows
    try:
        handle = winapi.OpenProcess(_SYNCHRONIZE, False, pid)
    except OSError as exc:  # no such process; anything else (access denied): it exists
        return getattr(exc, "winerror", None) != _ERROR_INVALID_PARAMETER
    try:  # an exited process whose handle someone still holds is signalled
        return winapi.WaitForSingleObject(handle, 0) == _WAIT_TIMEOUT
    finally:
        winapi.CloseHandle(handle)
