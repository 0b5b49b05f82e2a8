"""Where PyTorch runs: the ``--device`` choice (:func:`parse_device` checks its spelling,
:func:`select_device` whether this machine has that GPU, :func:`device_record` how a result
names it), the CPU threads (:func:`available_cpus`, :func:`set_threads`) and the CPU's subnormal
numbers (:func:`subnormals_flushed`). It is about the machine, not the network, so it stands apart
from the model and its training: the command line and the report use it before any model exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

# parse_device: PyTorch-free, so that mlplab reproduce checks its --device without PyTorch
from mlplab._machine import available_cpus, parse_device
from mlplab._validation import is_int, setting

DEVICES = ("cpu", "cuda", "auto")


def select_device(choice: str = "cpu", *, cuda_available: bool | None = None,
                  cuda_count: int | None = None) -> torch.device:
    """``cpu`` (the default), ``cuda`` / ``cuda:N`` (an error when PyTorch sees no such GPU) or
    ``auto`` (the first GPU when there is one, else the CPU). ``cuda_available`` and ``cuda_count``
    override what PyTorch reports (for tests)."""
    text = parse_device(choice)
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if cuda_count is None:
        cuda_count = torch.cuda.device_count() if cuda_available else 0
    if text == "cpu":
        return torch.device("cpu")
    if text == "auto":
        return torch.device("cuda" if cuda_available else "cpu")
    # the command line's flag, or the device= of train_run, depth_run, fit and TorchTrainConfig
    asked, cpu, auto = (setting(f"--device {d}", f"device={d!r}") for d in (text, "cpu", "auto"))
    if not cuda_available:
        raise ValueError(
            f"{asked} was asked for but PyTorch sees no CUDA GPU "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False); use "
            f"{cpu}, or {auto} to take a GPU only when there is one.")
    if text != "cuda" and int(text.split(":", 1)[1]) >= max(cuda_count, 1):
        raise ValueError(f"{asked}: no such GPU; PyTorch sees {cuda_count} "
                         f"(cuda:0 .. cuda:{max(cuda_count - 1, 0)}).")
    return torch.device(text)


def device_record(device: torch.device) -> dict[str, Any]:
    """How a result records the device it ran on: ``{"device": "cpu"}``, or on a GPU its index
    (``"cuda:0"``; plain ``"cuda"`` is the current GPU, so that a record of ``cuda`` and one of
    ``cuda:0`` name the same GPU alike) and its name (``"gpu": "NVIDIA H200"``)."""
    if device.type != "cuda":
        return {"device": str(device)}
    index = device.index if device.index is not None else torch.cuda.current_device()
    return {"device": f"cuda:{index}", "gpu": torch.cuda.get_device_name(index)}


#: the most CPU threads a run may ask PyTorch for: its thread pool ended the process with a
#: segmentation fault at 100,000 (a damaged config.json's count)
MAX_THREADS = 1024


def set_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op CPU threads to ``threads`` (``None``: every available core) and
    return the number set."""
    if threads is not None and (not is_int(threads) or not 1 <= threads <= MAX_THREADS):
        # int() made 2.5 two threads and True one, while a run's config recorded 2.5 or True
        raise ValueError(f"threads must be a positive integer of at most {MAX_THREADS}; got "
                         f"{threads!r}.")
    n = available_cpus() if threads is None else int(threads)
    torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def threads_kept() -> Iterator[None]:
    """PyTorch's intra-op thread count as it was before the block, whatever the block set (a
    run's ``threads``): the caller's own PyTorch work, a notebook's next cell, keeps its setting.
    Also a decorator."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def flushing_subnormals() -> bool:
    """Whether this thread's CPU arithmetic flushes subnormal float32 numbers to zero (the state
    :func:`torch.set_flush_denormal` sets, which PyTorch offers no getter for): half the smallest
    normal float32, times one, comes out as zero only when it does."""
    tiny = torch.tensor(torch.finfo(torch.float32).tiny / 2, dtype=torch.float32)
    return bool((tiny * 1.0).item() == 0.0)


@contextlib.contextmanager
def subnormals_flushed() -> Iterator[None]:
    """Within the block, CPU arithmetic treats subnormal numbers (below 1.2e-38 in float32) as
    zero, and the caller's setting comes back after it. Also a decorator.

    Why: an x86 CPU takes a slow path for each subnormal operand or result, on some CPUs about a
    hundred times the normal cost. The exercise's deep nets with its N(0, 1e-3) initialisation die
    at chance, and Adam's weight decay then shrinks their weights into that range: on an Intel
    Xeon a 5-layer net's 10 epochs of CIFAR-10 took 10 times as long (74 s against 7 s; the AMD
    EPYC of earlier runs showed no slow-down) for the same loss to six digits. Flushing changes only
    numbers below 1.2e-38, which no accuracy or loss here can see. Where the CPU cannot flush
    (``torch.set_flush_denormal`` returns False) the block runs unchanged."""
    before = flushing_subnormals()
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(before)
