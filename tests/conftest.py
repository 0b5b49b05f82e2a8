import os
import signal

import numpy as np
import pytest

# keep BLAS single-threaded and plotting headless so tests are stable on shared 2-core machines
os.environ.setdefault("MPLBACKEND", "Agg")

# What a user's shell may set for mlplab is not the suite's to inherit: MLPLAB_PLUGINS (which
# docs/architecture.md suggests exporting once for a shell) made every in-process command load
# the user's plugins, MLPLAB_BLAS=scipy took NumPy's BLAS from the tests that check it. A test
# that wants either sets it itself (monkeypatch; the fixture scipy_blas for the fallback).
for _name in ("MLPLAB_PLUGINS", "MLPLAB_BLAS"):
    os.environ.pop(_name, None)

# Started in the background (nohup, `cmd &` in a script), the suite inherits an ignored SIGINT,
# and so would every command it starts: the Ctrl-C tests need Python's usual handler, which
# the processes they start then get too (an ignored signal is inherited; a handler is not)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def rng() -> np.random.RandomState:
    return np.random.RandomState(0)


@pytest.fixture
def jupyter_kernel(monkeypatch):
    """What ``tqdm.auto`` and mlplab see of a Jupyter kernel (a notebook's):
    ``IPython.get_ipython()`` with an ``IPKernelApp`` section in its config; stderr is not a
    terminal (pytest's capture)."""
    import sys
    import types

    import tqdm.auto  # noqa: F401 - resolved as outside a kernel, as without ipywidgets

    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython",
                        types.SimpleNamespace(get_ipython=lambda: shell))


@pytest.fixture
def keep_torch_threads():
    """PyTorch runs set torch's thread count for the process; keep it from leaking into other
    tests."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _clear_blas_lookups() -> None:
    from mlplab import blas

    for cached in (blas._numpy_cblas, blas._cblas):
        cached.cache_clear()


@pytest.fixture
def scipy_blas(monkeypatch):
    """mlplab.blas on its fallback (``MLPLAB_BLAS=scipy``: SciPy's BLAS and NumPy, no direct
    calls into NumPy's BLAS) for one test; its cached lookups are redone before and after."""
    monkeypatch.setenv("MLPLAB_BLAS", "scipy")
    _clear_blas_lookups()
    yield
    monkeypatch.delenv("MLPLAB_BLAS")
    _clear_blas_lookups()


@pytest.fixture
def registries():
    """The test leaves the activation and optimiser registries (and which activations are
    sized, and which module registered them) as it found them."""
    from mlplab import models, optim

    activations, optimizers = dict(models.ACTIVATIONS), dict(optim.OPTIMIZERS)
    sized = set(models._SIZED)
    registered_by = [(r, dict(r)) for r in (models._REGISTERED_BY, optim._REGISTERED_BY)]
    yield
    models._SIZED.clear()
    models._SIZED.update(sized)
    for registrars, saved_by in registered_by:
        registrars.clear()
        registrars.update(saved_by)
    for registry, saved in ((models.ACTIVATIONS, activations), (optim.OPTIMIZERS, optimizers)):
        registry.clear()
        registry.update(saved)
