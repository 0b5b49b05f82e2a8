"""Which process ran a trial: the ``host:pid[#index]`` tag each trial records as its ``worker``
user attribute, and whether a process of this machine still exists. The search (failing the
trials of killed local workers) and the retraining (removing a killed process's temporary folders)
both need them, so they sit below both.
"""

from __future__ import annotations

import os
import socket


def worker_name(index: int | None = None) -> str:
    name = f"{socket.gethostname()}:{os.getpid()}"
    return name if index is None else f"{name}#{index}"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True
