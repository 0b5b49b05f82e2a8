"""mlplab.blas: the in-place updates and the accumulating product equal NumPy's arithmetic, in
place, for every layout, through NumPy's own BLAS and through the SciPy fallback."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from mlplab import blas
from mlplab.blas import _scipy_blas_paths, axpy, gemm_tn, level1_threads, scal


@pytest.fixture(params=["numpy", "scipy"])
def backend(request):
    """Each test runs on NumPy's BLAS (through ctypes) and on the fallback (MLPLAB_BLAS=scipy)."""
    if request.param == "scipy":
        request.getfixturevalue("scipy_blas")
    return request.param


def test_numpys_own_blas_is_found_on_numpys_wheels(backend):
    try:
        config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except TypeError:  # NumPy < 1.26 has no mode=
        pytest.skip("this NumPy does not describe its BLAS")
    if config.get("name") != "scipy-openblas":
        pytest.skip(f"NumPy built against {config.get('name')}: the SciPy fallback is used")
    assert (blas._numpy_cblas() is not None) == (backend == "numpy")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided", "1d"])
def test_axpy_and_scal_match_numpy_in_place(dtype, layout, rng, backend):
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


def test_axpy_mixed_dtypes_and_broadcasting_fall_back_to_numpy(rng, backend):
    y = rng.standard_normal((5, 4)).astype(np.float32)
    x = rng.standard_normal((5, 4))  # float64 into float32: NumPy's casting rules
    expect = y + np.float32(2.0) * x.astype(np.float32)
    axpy(2.0, x, y)
    np.testing.assert_allclose(y, expect, rtol=1e-6)
    row = rng.standard_normal(4).astype(np.float32)
    expect = y + 0.5 * row
    axpy(0.5, row, y)
    np.testing.assert_allclose(y, expect, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.0, 0.9, -1.5])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_gemm_tn_is_beta_out_plus_a_transposed_b(dtype, beta, layout, rng, backend):
    a = rng.standard_normal((40, 7)).astype(dtype)
    b = rng.standard_normal((40, 9)).astype(dtype)
    if layout == "strided":  # views BLAS cannot take as they are: NumPy does the product
        a, b = np.repeat(a, 2, axis=1)[:, ::2], np.repeat(b, 2, axis=1)[:, ::2]
    out = rng.standard_normal((7, 9)).astype(dtype)
    if beta == 0:
        out[0, 0] = np.nan  # beta 0 overwrites: BLAS must not read the old value (0 * NaN)
    expect = (0 if beta == 0 else beta * out.astype(np.float64)) + a.T.astype(np.float64) @ b
    target = out
    assert gemm_tn(a, b, out, beta=beta) is target
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, expect, **tol)
    assert out.dtype == dtype


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_gemm_tn_with_out_overlapping_an_operand(beta, rng, backend):
    square = rng.standard_normal((6, 6)).astype(np.float32)
    b = rng.standard_normal((6, 6)).astype(np.float32)
    expect = beta * square.astype(np.float64) + square.T.astype(np.float64) @ b
    gemm_tn(square, b, square, beta=beta)  # out is a
    np.testing.assert_allclose(square, expect, rtol=1e-5, atol=1e-5)


def test_gemm_tn_refuses_shapes_that_do_not_chain(rng):
    with pytest.raises(ValueError, match="do not chain"):
        gemm_tn(np.ones((4, 3)), np.ones((5, 2)), np.ones((3, 2)))


def test_level1_threads_pins_scipys_own_blas_only_when_it_does_the_updates(backend):
    paths = _scipy_blas_paths()

    def threads():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()}

    before = threads()
    with level1_threads():
        inside = threads()
        for p in paths:  # NumPy's own BLAS does the updates: SciPy's pool is left alone
            assert inside[p] == (1 if backend == "scipy" else before[p])
        # NumPy's BLAS (the matrix products) keeps its threads
        assert all(inside[p] == before[p] for p in before if p not in paths)
    assert threads() == before


def test_a_value_of_mlplab_blas_that_chooses_nothing_is_warned_of(monkeypatch):
    """MLPLAB_BLAS takes one value, scipy; any other (=numpy, =scipy-blas, a typo) went
    unnoticed and NumPy's BLAS ran. It is warned of, once, naming the variable."""
    import warnings

    monkeypatch.setenv("MLPLAB_BLAS", "scpiy")
    blas._numpy_cblas.cache_clear()
    try:
        with pytest.warns(UserWarning, match=r"^MLPLAB_BLAS='scpiy' is not a choice: 'scipy' "):
            blas._numpy_cblas()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            blas._numpy_cblas()  # (cached: once)
    finally:
        monkeypatch.delenv("MLPLAB_BLAS")
        blas._numpy_cblas.cache_clear()
        blas._cblas.cache_clear()
