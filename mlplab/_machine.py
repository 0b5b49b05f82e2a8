"""The CPU cores this process may use, for sizing its thread pools; the spelling of a PyTorch
device (checked here, without PyTorch, so that ``mlplab reproduce`` checks its ``--device`` where
PyTorch is not installed); and whether an error says that its memory ran out, and what to do
then."""

from __future__ import annotations

import os
import re


def available_cpus() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one (a process
    pinned with ``taskset`` or limited by a container sees fewer than ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_device(choice: str) -> str:
    """``choice`` normalised (``" CUDA:1"`` -> ``"cuda:1"``), or a ``ValueError`` when it is not
    ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. Only the spelling is checked, not whether this
    machine has the GPU (:func:`mlplab.torch_mlp.device.select_device` does that), so that a
    misspelt device is told apart from a missing one: the first is a usage error, the second a
    fact about the machine."""
    text = str(choice).strip().lower()
    # an index as PyTorch reads it: ASCII digits, no leading zero (str.isdigit took "01", "²")
    if text in ("cpu", "cuda", "auto") or re.fullmatch(r"cuda:(0|[1-9][0-9]*)", text):
        return text
    raise ValueError(f"device must be cpu, cuda, cuda:N or auto; got {choice!r}.")


#: glibc's words (``dlerror``) for a library that ``dlopen`` could not map: memory refused, as
#: under ``ulimit -v`` when an import loads a compiled extension (Matplotlib's, NumPy's)
_UNMAPPABLE = "failed to map segment from shared object"


def memory_refused(exc: BaseException) -> str | None:
    """What ``exc`` says could not be allocated, where it says memory ran out: a MemoryError's
    own text (NumPy's "Unable to allocate 2.98 GiB ...", C++'s ``std::bad_alloc``; "" when it
    has none), PyTorch's CPU allocator's refusal (a ``RuntimeError``: "[enforce fail at
    alloc_cpu.cpp:127] ... you tried to allocate 6400000000 bytes"), or a library an import
    could not map (an ``ImportError``: "libXau.so.6: failed to map segment from shared
    object"); else None."""
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError):
        return text
    if isinstance(exc, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in text:
        import re

        size = re.search(r"allocate (\d+) bytes", text)
        return (f"PyTorch was unable to allocate {int(size[1]) / 2**30:.2f} GiB" if size else
                "PyTorch was unable to allocate memory")
    if isinstance(exc, (ImportError, OSError)) and _UNMAPPABLE in text:
        # the line that says so: NumPy wraps it in a page of advice on broken installs
        line = next(ln for ln in str(exc).splitlines() if _UNMAPPABLE in ln).strip()
        return f"a library could not be loaded: {line.removeprefix('Original error was:').strip()}"
    return None


def out_of_memory_message(detail: str, resumed: bool = False) -> str:
    """The one line for memory that ran out, with ``detail`` from :func:`memory_refused`.
    ``resumed``: what ran out of memory is continued from its checkpoint with ``--resume``,
    which keeps its data and network, so "use less data or a smaller network" is left out (as
    :attr:`mlplab.io.DiskFullError.reason` leaves out "run the command again")."""
    said = f" ({detail})" if detail else ""
    if resumed:
        return f"out of memory{said}; free memory or raise this process's limit (ulimit -v)"
    return (f"out of memory{said}; free memory, raise this process's limit (ulimit -v), or use "
            "less data or a smaller network")
