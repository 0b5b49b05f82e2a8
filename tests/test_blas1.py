"""mlplab.blas1: the in-place updates equal NumPy's arithmetic, in place, for every layout."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from mlplab.blas1 import _scipy_blas_paths, axpy, level1_threads, scal


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided", "1d"])
def test_axpy_and_scal_match_numpy_in_place(dtype, layout, rng):
    def make():
        a = rng.standard_normal((37, 23)).astype(dtype)
        return {"contiguous": a, "transposed": a.T, "strided": a[::2], "1d": a[0]}[layout]

    # BLAS may fuse the multiply-add (one rounding instead of two): equal up to rounding
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-15)
    x, y = make(), make()
    expect = y + dtype(0.37) * x
    target = y
    assert axpy(0.37, x, y) is target
    np.testing.assert_allclose(y, expect, **tol)
    expect = y * dtype(-1.5)
    assert scal(-1.5, y) is target
    np.testing.assert_allclose(y, expect, **tol)
    assert y.dtype == dtype


def test_axpy_mixed_dtypes_and_broadcasting_fall_back_to_numpy(rng):
    y = rng.standard_normal((5, 4)).astype(np.float32)
    x = rng.standard_normal((5, 4))  # float64 into float32: NumPy's casting rules
    expect = y + np.float32(2.0) * x.astype(np.float32)
    axpy(2.0, x, y)
    np.testing.assert_allclose(y, expect, rtol=1e-6)
    row = rng.standard_normal(4).astype(np.float32)
    expect = y + 0.5 * row
    axpy(0.5, row, y)
    np.testing.assert_allclose(y, expect, rtol=1e-6)


def test_level1_threads_pins_scipys_own_blas_and_restores_it():
    paths = _scipy_blas_paths()

    def threads():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()}

    before = threads()
    with level1_threads():
        inside = threads()
        for p in paths:
            assert inside[p] == 1
        # NumPy's BLAS (the matrix products) keeps its threads
        assert all(inside[p] == before[p] for p in before if p not in paths)
    assert threads() == before
