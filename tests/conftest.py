import errno
import os
import signal
from pathlib import Path

# plotting headless
os.environ.setdefault("MPLBACKEND", "Agg")

# Under pytest-xdist every worker's BLAS, OpenMP and PyTorch pools are sized to every core: on a
# 16-core machine `-n 14` ran 14 x 16 threads and the suite about ten times slower than it should.
# Above two cores each worker gets its share (the commands the tests start inherit it), unless
# the shell set these; on two cores (CI) the pools are left as a user's would be. Set before
# NumPy loads its BLAS, which reads them once.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
if _workers > 1 and _cores > 2:
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(max(1, _cores // _workers)))

import numpy as np  # noqa: E402  (after the thread counts above)
import pytest  # noqa: E402

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


@pytest.fixture
def diverge_after_removing(monkeypatch):
    """``patch(module, folder)``: ``module.fit`` (a PyTorch training's) saves its first
    checkpoint, then ``folder`` is removed and the loss diverges, before the next checkpoint's
    check of the folder: what a run or study that diverges after its folder went meets."""
    import shutil

    from mlplab.trainer import TrainingDivergedError

    def patch(module, folder) -> None:
        fit = module.fit

        def diverging(*args, on_checkpoint=None, **kwargs):
            def save(state):
                on_checkpoint(state)
                shutil.rmtree(folder)
                raise TrainingDivergedError("the loss became nan at iteration 9 (epoch 2)")
            return fit(*args, on_checkpoint=save, **kwargs)

        monkeypatch.setattr(module, "fit", diverging)

    return patch


@pytest.fixture
def ctrl_c_at_write(monkeypatch):
    """``ctrl_c_at_write(folder, n)`` makes the ``n``-th file put into ``folder`` (each is
    written atomically, ending in os.replace; names starting with one of ``spared``, by default
    the checkpoint's, not counted) raise KeyboardInterrupt in place of the rename, as a second
    Ctrl-C just before it would; it returns the names put in place before it, filled in as they
    are written. ``monkeypatch.undo()`` ends it."""
    def arm(folder, n, spared=("checkpoint.",)):
        real, written = os.replace, []

        def replace(src, dst, *args, **kwargs):
            dst = Path(dst)
            if dst.parent == Path(folder) and not dst.name.startswith(spared):
                if len(written) + 1 == n:
                    raise KeyboardInterrupt
                written.append(dst.name)
            return real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
        return written

    return arm


@pytest.fixture
def disk_full_at(monkeypatch):
    """``disk_full_at(name, holding=None)``: ``mlplab.io.write_text`` raises ENOSPC, as on a full
    disk, for each file called ``name`` (with ``holding``, only when the text contains it);
    other files are written as usual. ``monkeypatch.undo()`` ends it."""
    from mlplab import io

    def arm(name, holding=None):
        write_text = io.write_text

        def disk_full(path, text, *args, **kwargs):
            if Path(path).name == name and (holding is None or holding in text):
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return write_text(path, text, *args, **kwargs)

        monkeypatch.setattr(io, "write_text", disk_full)

    return arm


@pytest.fixture
def refuse_unlink(monkeypatch):
    """``refuse_unlink(match, when=None)``: ``Path.unlink`` raises PermissionError (EACCES) for
    each path ``match(path)`` is true of (with ``when``, only while ``when()`` is), as for a file
    this process may not remove; other paths are removed as usual. ``monkeypatch.undo()`` ends
    it."""
    def arm(match, when=None):
        unlink = Path.unlink

        def refusing(self, *args, **kwargs):
            if match(self) and (when is None or when()):
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return unlink(self, *args, **kwargs)

        monkeypatch.setattr(Path, "unlink", refusing)

    return arm


@pytest.fixture
def refuse_replace(monkeypatch):
    """``refuse_replace(match)``: ``os.replace`` raises PermissionError (EPERM) onto each path
    ``match(path)`` is true of, as onto another user's file in a folder with the sticky bit
    (which :func:`refuse_unlink` makes one that cannot be removed either); other renames are
    done as usual. ``monkeypatch.undo()`` ends it."""
    def arm(match):
        replace = os.replace

        def refusing(src, dst, *args, **kwargs):
            if match(Path(dst)):
                raise PermissionError(errno.EPERM, "Operation not permitted", str(src), None,
                                      str(dst))
            return replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", refusing)

    return arm


@pytest.fixture
def no_model_said(tmp_path, capsys):
    """``no_model_said(run, why)``: ``mlplab evaluate RUN`` and ``mlplab predict RUN IMAGE`` both
    exit 1 with the one line ``why``, the run having no model to use."""
    from PIL import Image

    from mlplab.cli import main

    def check(run, why):
        assert main(["evaluate", str(run)]) == 1
        assert capsys.readouterr().err.strip() == f"mlplab evaluate: error: {why}"
        image = tmp_path / "digit.png"
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
        assert main(["predict", str(run), str(image)]) == 1
        assert capsys.readouterr().err.strip() == f"mlplab predict: error: {why}"

    return check
