"""The BLAS calls NumPy does not expose: in-place ``y += a * x`` and ``x *= a`` (level 1) for the
optimisers and the L2 gradient, and the weight-gradient product that accumulates into its output,
``C = beta * C + A^T B`` (level 3), for momentum's velocity. All run on NumPy's own BLAS threads
where NumPy's BLAS exports them, which its wheels do.

Why not plain NumPy: ``y += a * x`` in NumPy is two passes over memory and a weight-sized
temporary (or a reused scratch array and still two passes), and the update of a 3072x1000 weight
matrix is a dozen such passes per step, about a quarter of the time of the step's matrix
products. BLAS level 1 (``saxpy``/``sscal``) does each in one pass with no temporary.

Which BLAS: NumPy does not expose level 1, so the first choice is NumPy's own OpenBLAS, called
through :mod:`ctypes` (NumPy's wheels export its CBLAS as ``scipy_cblas_saxpy64_`` and so on, with
64-bit integers). The updates then share the matrix products' thread pool and run on all its
threads: a 3072x500 ``saxpy`` takes 0.08 ms at 2 threads against 0.15 ms at one. On other builds (a
NumPy linked to a system BLAS without those symbols) the fallback is SciPy's BLAS
(:mod:`scipy.linalg.blas`; ``MLPLAB_BLAS=scipy`` in the environment, read at the first update,
forces it; any other value is warned of and leaves NumPy's). SciPy's wheels bundle a second
OpenBLAS, and two OpenBLAS pools fight over the cores (each one's idle threads spin for a while
after a call), which made a training step 2-3x *slower* with both at 2 threads;
:func:`level1_threads` therefore pins SciPy's pool to one thread for the duration of a training run
(it does nothing when NumPy's BLAS does the work). Arrays that BLAS cannot take in place
(non-contiguous, mixed dtypes) fall back to NumPy.

Why the accumulating product (:func:`gemm_tn`): momentum's ``v = mu v + g`` after ``g = x^T dout``
is a GEMM, then two passes over a weight-sized array (``sscal``, ``saxpy``). BLAS's own
``C = alpha A B + beta C`` does the scaling inside the product, which visits ``C`` anyway, so the
gradient can go straight into the velocity (see :meth:`mlplab.optim.Momentum.fused`). Without
NumPy's BLAS the product falls back to NumPy with a temporary, and momentum does not fuse.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

_BLAS_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INT = ctypes.c_int64  # the "64_" symbols are the ILP64 interface: 64-bit sizes and strides
_CBLAS_NAMES = ("scipy_cblas_{}64_", "cblas_{}64_")  # NumPy >= 2 wheels; NumPy 1.26 wheels


@functools.cache
def _numpy_cblas() -> tuple[ctypes.CDLL, str] | None:
    """NumPy's own BLAS library and its CBLAS symbol pattern, or None when NumPy's BLAS does not
    export the ILP64 CBLAS of NumPy's wheels (or ``MLPLAB_BLAS=scipy`` asks for SciPy's)."""
    chosen = os.environ.get("MLPLAB_BLAS", "")
    if chosen.lower() == "scipy":
        return None
    if chosen:
        # any other value went unnoticed: MLPLAB_BLAS=SciPy-blas, or =numpy, meant to choose,
        # quietly ran NumPy's. Warned (once: this is cached), not refused: the choice is only
        # one of speed, and the first update comes after a run's folder is made
        import warnings

        warnings.warn(f"MLPLAB_BLAS={chosen[:100]!r} is not a choice: 'scipy' (SciPy's BLAS) is "
                      "the only value it takes; NumPy's BLAS is used. Unset it or set it to "
                      "scipy.", stacklevel=2)
    from threadpoolctl import threadpool_info

    # NumPy's wheels keep their BLAS in numpy.libs/ (Linux, Windows) or numpy/.dylibs (macOS)
    package = Path(np.__file__).resolve().parent
    homes = (package, package.parent / "numpy.libs")
    for info in threadpool_info():
        path = Path(info["filepath"]).resolve()
        if info.get("user_api") != "blas" or not any(path.is_relative_to(h) for h in homes):
            continue
        try:
            lib = ctypes.CDLL(str(path))  # already loaded by NumPy: this only finds it
        except OSError:  # pragma: no cover - a library threadpoolctl saw but cannot reopen
            continue
        for pattern in _CBLAS_NAMES:
            if hasattr(lib, pattern.format("saxpy")):
                return lib, pattern
    return None


@functools.cache
def _cblas(name: str, dtype: np.dtype) -> Callable[..., None] | None:
    """NumPy's CBLAS routine ``name`` (``axpy``/``scal``/``gemm``) for ``dtype``, or None."""
    found = _numpy_cblas()
    if found is None:
        return None
    lib, pattern = found
    real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    routine = getattr(lib, pattern.format(("s" if dtype == np.float32 else "d") + name))
    ptr = ctypes.c_void_p
    routine.argtypes = {"axpy": [_INT, real, ptr, _INT, ptr, _INT],  # n, a, x, incx, y, incy
                        "scal": [_INT, real, ptr, _INT],             # n, a, x, incx
                        # order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc
                        "gemm": [ctypes.c_int] * 3 + [_INT] * 3 + [real, ptr, _INT, ptr, _INT,
                                                                   real, ptr, _INT]}[name]
    routine.restype = None
    return routine


@functools.cache
def _blas(name: str, dtype: np.dtype) -> Callable[..., np.ndarray] | None:
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
    if fy is None or x.dtype != y.dtype or x.shape != y.shape or not x.flags.c_contiguous:
        y += y.dtype.type(a) * x
        return y
    fast = _cblas("axpy", y.dtype)
    if fast is not None:
        fast(fy.size, a, x.ctypes.data, 1, fy.ctypes.data, 1)
        return y
    routine = _blas("axpy", y.dtype)
    if routine is None:  # pragma: no cover - scipy comes with scikit-learn
        y += y.dtype.type(a) * x
        return y
    routine(x.reshape(-1), fy, a=a)  # writes into fy, a view of y's memory
    return y


def scal(a: float, x: np.ndarray) -> np.ndarray:
    """``x *= a`` in place; returns ``x``."""
    fx = _flat(x)
    if fx is not None:
        fast = _cblas("scal", x.dtype)
        if fast is not None:
            fast(fx.size, a, fx.ctypes.data, 1)
            return x
        routine = _blas("scal", x.dtype)
        if routine is not None:
            routine(a, fx)
            return x
    x *= x.dtype.type(a)
    return x


_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # the CBLAS enums


def gemm_accumulates() -> bool:
    """Whether :func:`gemm_tn` with ``beta != 0`` runs as one BLAS call on NumPy's threads (no
    temporary); otherwise it falls back to a product and a weight-sized temporary."""
    return _numpy_cblas() is not None


def gemm_tn(a: np.ndarray, b: np.ndarray, out: np.ndarray, beta: float = 0.0) -> np.ndarray:
    """``out = beta * out + a.T @ b`` in place, for ``a`` (K, M), ``b`` (K, N), ``out`` (M, N);
    returns ``out``. With ``beta=0`` this is ``np.matmul(a.T, b, out=out)``."""
    m, n = out.shape
    k = a.shape[0]
    if a.shape != (k, m) or b.shape != (k, n):
        raise ValueError(f"gemm_tn: shapes {a.shape}, {b.shape} -> {out.shape} do not chain.")
    routine = _cblas("gemm", out.dtype) if _flat(out) is not None else None
    if (routine is None or not (a.dtype == b.dtype == out.dtype and a.flags.c_contiguous
                                and b.flags.c_contiguous) or 0 in (m, n, k)
            or np.may_share_memory(out, a) or np.may_share_memory(out, b)):
        if beta == 0:
            return np.matmul(a.T, b, out=out)  # which copes with overlap itself
        product = a.T @ b  # first: out may overlap a or b
        out *= out.dtype.type(beta)
        out += product
        return out
    routine(_ROW_MAJOR, _TRANS, _NO_TRANS, m, n, k, 1.0, a.ctypes.data, m, b.ctypes.data, n,
            beta, out.ctypes.data, n)
    return out


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
    """Within the block, SciPy's bundled BLAS (the fallback of :func:`axpy`/:func:`scal`) runs on
    one thread, so that it does not compete with NumPy's BLAS threads; restored afterwards. Does
    nothing when NumPy's own BLAS does the updates."""
    paths = _scipy_blas_paths() if _numpy_cblas() is None else ()
    if not paths:
        yield
        return
    from threadpoolctl import ThreadpoolController

    # select by file, then limit: threadpoolctl 3.1 (the oldest supported) ignores file paths
    # as keys of a limits dict (it reads prefixes and user APIs only): {path: 1} pinned nothing
    with ThreadpoolController().select(filepath=list(paths)).limit(limits=1):
        yield
