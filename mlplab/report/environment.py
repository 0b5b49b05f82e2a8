"""What the report was produced on: versions, CPU, threads and the code's revision."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

_PACKAGES = ["numpy", "scipy", "scikit-learn", "matplotlib", "optuna", "torch", "pillow", "tqdm"]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision(root: Path | None = None) -> str:
    """The commit of the source tree mlplab runs from (``+dirty`` with local changes): only if
    git tracks mlplab's own files there. An installed copy (site-packages) inside some other
    repository, e.g. a project's ``.venv``, reported that project's commit as mlplab's."""
    root = Path(__file__).resolve().parents[2] if root is None else Path(root)
    try:
        subprocess.run(["git", "ls-files", "--error-unmatch", "--", "mlplab/__init__.py"],
                       cwd=root, text=True, capture_output=True, timeout=10, check=True)
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, text=True, capture_output=True, timeout=10).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info

        pools = sorted(f"{p.get('internal_api', '?')}: {p.get('num_threads', '?')}"
                       for p in threadpool_info())  # sorted: the load order varies
        return ", ".join(pools) or "none loaded"
    except Exception:  # threadpoolctl is optional at this level; the report still renders
        return "unknown"


def torch_threads() -> str:
    torch = sys.modules.get("torch")  # only if a stage loaded it: importing costs seconds
    if torch is None:
        return "not loaded"
    return str(torch.get_num_threads())


def environment() -> list[tuple[str, str]]:
    """Key/value pairs for the report's environment table."""
    from mlplab import __version__

    items = [
        ("mlplab", f"{__version__} (git {git_revision()})"),
        ("python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("platform", platform.platform()),
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical cores"),
        ("CPU affinity", str(len(os.sched_getaffinity(0))) + " cores usable"
         if hasattr(os, "sched_getaffinity") else "unknown"),
        ("BLAS threads", blas_threads()),
        ("PyTorch threads", torch_threads()),
        ("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "unset")),
    ]
    items += [(name, _version(name)) for name in _PACKAGES]
    return items
