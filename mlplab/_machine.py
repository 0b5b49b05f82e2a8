"""The CPU cores this process may use, for sizing its thread pools."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one (a process
    pinned with ``taskset`` or limited by a container sees fewer than ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
