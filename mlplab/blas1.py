"""In-place vector updates for the optimisers and the L2 gradient: ``y += a * x`` and ``x *= a``.

Why not plain NumPy: ``y += a * x`` in NumPy is two passes over memory and a weight-sized
temporary (or a reused scratch array and still two passes), and the update of a 3072x1000 weight
matrix is a dozen such passes per step, about a quarter of the time of the step's matrix
products. BLAS level 1 (``saxpy``/``sscal``, through :mod:`scipy.linalg.blas`) does each in one
pass with no temporary. Measured with ``benchmarks/profile_step.py`` (hidden 500, 2 threads): the
L2 gradient and momentum update fall from 1.8 ms to about 0.5 ms per step, beside 6.6 ms of GEMM.

SciPy's wheels bundle their own OpenBLAS, beside NumPy's. Two OpenBLAS thread pools fight over the
cores (each one's idle threads spin for a while after a call), which made a training step 2-3x
*slower* with both at 2 threads; :func:`level1_threads` therefore pins SciPy's pool to one thread
for the duration of a training run (these updates are memory-bound: one thread is as fast). A loop
of your own that calls an optimiser's ``step`` outside ``Trainer.fit`` gets the same speed inside
``with level1_threads():`` (without it the results are the same, only slower). Arrays that BLAS
cannot take in place (non-contiguous, mixed dtypes) fall back to NumPy.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_BLAS_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@functools.cache
def _blas(name: str, dtype: np.dtype):
    """SciPy's BLAS routine ``name`` (``axpy``/``scal``) for ``dtype``, or None without SciPy."""
    try:
        from scipy.linalg import blas
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return None
    return blas.get_blas_funcs(name, dtype=dtype)


def _flat(a: np.ndarray) -> np.ndarray | None:
    """A 1-D view of ``a`` if BLAS can update it in place (C-contiguous float32/float64)."""
    if a.dtype in _BLAS_DTYPES and a.flags.c_contiguous and a.flags.writeable:
        return a.reshape(-1)
    return None


def axpy(a: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``y += a * x`` in place (one pass, no temporary when BLAS can do it); returns ``y``."""
    fy = _flat(y)
    fx = x.reshape(-1) if x.dtype == y.dtype and x.flags.c_contiguous else None
    routine = _blas("axpy", y.dtype) if fy is not None and fx is not None else None
    if routine is None or x.shape != y.shape:
        y += y.dtype.type(a) * x
        return y
    routine(fx, fy, a=a)  # writes into fy, a view of y's memory
    return y


def scal(a: float, x: np.ndarray) -> np.ndarray:
    """``x *= a`` in place; returns ``x``."""
    fx = _flat(x)
    routine = _blas("scal", x.dtype) if fx is not None else None
    if routine is None:
        x *= x.dtype.type(a)
        return x
    routine(a, fx)
    return x


@functools.cache
def _scipy_blas_paths() -> tuple[str, ...]:
    """File paths of the BLAS libraries SciPy bundles (none when it uses a shared system BLAS,
    whose pool is NumPy's own)."""
    try:
        import scipy
        import scipy.linalg.blas  # noqa: F401  (loads the library)
    except ImportError:  # pragma: no cover
        return ()
    from threadpoolctl import threadpool_info

    # looked up once (cached): every Trainer.fit asks, and the libraries loaded do not change
    bundled = Path(scipy.__file__).resolve().parent.parent / "scipy.libs"
    return tuple(info["filepath"] for info in threadpool_info()
                 if info.get("user_api") == "blas" and Path(info["filepath"]).parent == bundled)


@contextlib.contextmanager
def level1_threads() -> Iterator[None]:
    """Within the block, SciPy's bundled BLAS (used by :func:`axpy`/:func:`scal`) runs on one
    thread, so that it does not compete with NumPy's BLAS threads; restored afterwards."""
    paths = _scipy_blas_paths()
    if not paths:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits={p: 1 for p in paths}):
        yield
