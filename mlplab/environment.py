"""What a result was produced on: versions, CPU, BLAS threads and the code's revision.

The report's environment table (:func:`environment`) and the record a run folder keeps in
``metrics.json`` and its model file (:func:`record`): the same seed gives the same numbers only on
the same machine, versions and thread count, so a result names the ones that made it, and a run
resumed elsewhere says that it will not match an uninterrupted one to the last digit
(:func:`numeric_differences`)."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


@functools.lru_cache(maxsize=8)  # three git calls; asked again for every run a process trains
def git_revision(root: Path | None = None) -> str:
    """The commit of the source tree mlplab runs from (``+dirty`` with local changes): only if
    git tracks mlplab's own files there. An installed copy (site-packages) inside some other
    repository, e.g. a project's ``.venv``, reported that project's commit as mlplab's. Asked
    once per process and folder: what a process runs was loaded when it started."""
    root = Path(__file__).resolve().parents[1] if root is None else Path(root)
    # bytes, not text: git writes UTF-8 (a changed file's name with core.quotePath off, its
    # messages in the user's language), which decoded with an ASCII locale's or a Windows code
    # page's codec raised UnicodeDecodeError and failed `mlplab train` before it began
    try:
        subprocess.run(["git", "ls-files", "--error-unmatch", "--", "mlplab/__init__.py"],
                       cwd=root, capture_output=True, timeout=10, check=True)
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                             capture_output=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, timeout=10).stdout
        return rev.decode("ascii", "replace").strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def _pool_owner(filepath: str) -> str:
    """The package that ships a thread pool's library, from its path: ``numpy`` for
    ``site-packages/numpy.libs/libscipy_openblas64_.so``, ``torch`` for ``torch/lib/libgomp.so``;
    a library outside any package (a system OpenBLAS) by its file name."""
    parts = Path(filepath).parts
    for i, part in enumerate(parts[:-1]):
        if part in ("site-packages", "dist-packages") and i + 2 < len(parts):
            name = parts[i + 1].removesuffix(".libs")
            return name.replace("_", "-") if name == "scikit_learn" else name
    return Path(filepath).name.split(".so")[0] or "?"


def blas_threads() -> str:
    """The threads of every BLAS and OpenMP pool loaded, each named by the package that ships
    it (``openblas (numpy): 1, openblas (scipy): 1``): a process holds several, and a bare
    "openblas: 1, openblas: 1" did not say whose was whose."""
    try:
        from threadpoolctl import threadpool_info

        pools = sorted(f"{p.get('internal_api', '?')} ({_pool_owner(p.get('filepath', ''))}): "
                       f"{p.get('num_threads', '?')}"
                       for p in threadpool_info())  # sorted: the load order varies
        return ", ".join(pools) or "none loaded"
    except Exception:  # threadpoolctl is optional at this level; the report still renders
        return "unknown"


def numpy_blas() -> str:
    """NumPy's BLAS as threadpoolctl sees it, e.g. ``openblas 0.3.31 SkylakeX, 2 threads``: the
    library, its version, the CPU kernels it chose and its threads, which decide how the matrix
    products round. Other BLAS pools in the process (SciPy's, PyTorch's) are left out: whether
    they are loaded depends on what else the process imported, not on the products' results."""
    try:
        import numpy as np
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    except Exception:  # threadpoolctl cannot read every library; the record still gets written
        return "unknown"
    here = str(Path(np.__file__).resolve().parent)  # the wheels' numpy.libs/ or numpy/.libs/
    own = [p for p in pools if str(Path(p.get("filepath", "")).resolve()).startswith(here)]
    described = sorted(f"{p.get('internal_api', '?')} {p.get('version') or '?'}"
                       + (f" {p['architecture']}" if p.get("architecture") else "")
                       + f", {_threads(p.get('num_threads'))}" for p in own or pools)
    return "; ".join(described) or "none loaded"


def _threads(n: Any) -> str:
    from mlplab._text import counted

    return counted(n, "thread") if isinstance(n, int) else "? threads"


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


#: the fields of :func:`record` on which a result's last digits depend
NUMERIC_FIELDS = ("mlplab", "numpy", "blas", "cpu")


def record() -> dict[str, Any]:
    """What a run records of the process that trained it (``metrics.json``'s ``environment``, its
    model file's and checkpoint's): mlplab's version and commit, Python, NumPy, NumPy's BLAS and
    threads, the CPU and the platform."""
    import numpy as np

    from mlplab import __version__

    return {"mlplab": f"{__version__} (git {git_revision()})",
            "python": platform.python_version(), "numpy": np.__version__, "blas": numpy_blas(),
            "cpu": cpu_model(), "platform": platform.platform()}


def numeric_differences(recorded: Mapping[str, Any], now: Mapping[str, Any],
                        fields: Sequence[str] = NUMERIC_FIELDS) -> list[str]:
    """The ``fields`` (by default :data:`NUMERIC_FIELDS`, those of :func:`record`) in which
    ``recorded`` (an earlier record) and ``now`` differ, as ``"numpy 1.26.4 -> 2.1.0"``; a field
    the record lacks is not one."""
    return [f"{key} {recorded[key]} -> {now.get(key)}" for key in fields
            if key in recorded and recorded[key] != now.get(key)]
