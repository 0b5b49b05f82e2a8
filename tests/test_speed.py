"""The properties that make the engine fast, checked without timing anything.

A training step is a handful of matrix products; everything else must stay small. These tests
guard what would silently slow it down: float64 upcasts, activation- or weight-sized temporaries,
copies of the dataset, reallocated buffers, an input gradient for the first layer, evaluation that
materialises every row at once. Allocation sizes come from ``tracemalloc``, which sees NumPy's
array data. (Absolute speed is measured by benchmarks/bench_train.py, never asserted here.)
"""

import tracemalloc

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mlplab import MLP
from mlplab.models import EVAL_CHUNK
from mlplab.optim import make_optimizer
from mlplab.trainer import Callback, Trainer

# Odd sizes, so that every array has a size of its own, and activations (B x H) larger than the
# buffer NumPy's ufuncs use for broadcasting and casting (8192 values): the allocation bounds
# below then tell that buffer apart from a temporary the size of an activation or a weight.
D, HIDDEN, K, B = 307, [301, 257], 7, 128


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D), dtype=np.float32)
    y = rng.integers(0, K, n)
    return X, y


def _arrays(model, optimizer):
    """Every array a training step touches: parameters, gradients, layer buffers, optimiser
    state and scratch."""
    arrays = {f"param {k}": v for k, v in model.params.items()}
    arrays.update({f"grad {k}": v for k, v in model.grads.items()})
    for i, layer in enumerate([*model.layers, model.output]):
        arrays.update({f"layer {i} buffer {k}": v for k, v in layer._buffers.items()})
    arrays.update({f"state {n}/{s}": v for n, slots in optimizer.state.items()
                   for s, v in slots.items()})
    arrays.update({f"scratch {k}": v for k, v in optimizer._scratch_bufs.items()})
    return arrays


@pytest.fixture(autouse=True)
def one_blas_thread():
    # small products: threads only add synchronisation, which a busy shared machine punishes
    with threadpool_limits(1):
        yield


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


class PeakDuring(Callback):
    """Largest extra traced memory over iterations ``start`` + 1 .. ``stop`` (inside epoch 1)."""

    def __init__(self, start, stop):
        self.start, self.stop, self.peak = start, stop, None

    def on_iteration_end(self, trainer, iteration, loss):
        if iteration == self.start:
            tracemalloc.reset_peak()
            self.base = tracemalloc.get_traced_memory()[0]
        elif iteration == self.stop:
            self.peak = tracemalloc.get_traced_memory()[1] - self.base


@pytest.mark.parametrize("optimizer,dropout", [("sgd", 0), ("momentum", 0), ("nesterov", 0),
                                               ("adam", 0), ("momentum", 0.2)])
def test_training_step_allocates_nothing_activation_sized(optimizer, dropout, traced):
    # A float64 copy of any activation or hidden-layer weight, or a fresh temporary for the L2
    # gradient, the update or dropout's draws and mask, would be at least B * min(hidden) float32
    # values. What a step may allocate: the ReLU masks (one byte per unit), ufunc buffers (8192
    # values), per-row vectors of the softmax and small Python objects.
    X, y = _data(B * 12)
    model = MLP(D, HIDDEN, K, seed=0, dropout=dropout)
    probe = PeakDuring(start=3, stop=9)  # 6 full steps, before the first epoch ends (at 12)
    Trainer(optimizer=optimizer, lr=1e-3, reg=1e-3, batch_size=B, epochs=1, seed=0,
            callbacks=[probe]).fit(model, X, y)
    smallest_activation = B * min(HIDDEN) * 4
    assert probe.peak is not None
    assert probe.peak < smallest_activation, (
        f"{probe.peak} bytes allocated in a step; an activation is {smallest_activation}")


def test_float32_training_stays_float32():
    X, y = _data(B * 4)
    model = MLP(D, HIDDEN, K, seed=0, dropout=0.1)
    trainer = Trainer(optimizer="momentum", lr=1e-3, reg=1e-3, batch_size=B, epochs=2, seed=0)
    history = trainer.fit(model, X.astype(np.float64), y)  # float64 input is cast once
    arrays = _arrays(model, trainer.optimizer)
    assert any(k.startswith("state") for k in arrays)
    # momentum updates through BLAS axpy (mlplab.blas): no weight-sized scratch at all
    assert not any("scratch" in k for k in arrays)
    wrong = {k: v.dtype for k, v in arrays.items() if v.dtype != np.float32}
    assert not wrong, f"float64 arrays in a float32 model: {wrong}"
    assert model.predict_proba(X).dtype == np.float32
    assert all(type(v) is float for v in history.loss)


def test_buffers_and_batch_are_reused_across_steps():
    X, y = _data(B * 10)
    model = MLP(D, HIDDEN, K, seed=0)
    seen = []

    class Spy(MLP):  # records where each training batch lives
        def _loss_and_grads(self, Xb, yb, reg):
            seen.append((Xb.__array_interface__["data"][0], Xb.dtype, Xb.flags.c_contiguous))
            return super()._loss_and_grads(Xb, yb, reg)

    model.__class__ = Spy
    addresses = []

    class Snapshot(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if iteration in (2, 9):  # both inside epoch 1 (10 steps)
                arrays = _arrays(model, trainer.optimizer)
                addresses.append({k: v.__array_interface__["data"][0] for k, v in arrays.items()})

    Trainer(optimizer="momentum", lr=1e-3, reg=1e-3, batch_size=B, epochs=1, seed=0,
            callbacks=[Snapshot()]).fit(model, X, y)
    assert len(seen) == 10
    assert {s[0] for s in seen} == {seen[0][0]}, "the minibatch must reuse one buffer"
    assert all(s[1] == np.float32 and s[2] for s in seen)
    first, later = addresses
    assert first.keys() == later.keys()
    moved = [k for k in first if first[k] != later[k]]
    assert not moved, f"reallocated between steps: {moved}"


def test_dataset_is_not_copied(traced):
    # float32 C-contiguous input is trained on in place: over several epochs, with the train
    # accuracy subset and validation, the run never holds a copy of X or of a sizeable part of
    # it. What it does allocate: evaluation chunks (EVAL_CHUNK rows of activations), blocks of
    # 1,024 rows gathered for the train accuracy, the model's buffers and optimiser state, one
    # permutation per epoch -- under 10% of X here. A boolean finiteness mask of X would be 25%,
    # a copy of the 5,000-row subset 12.5%.
    n = 40000
    X, y = _data(n)
    X_val, y_val = _data(500, seed=1)
    model = MLP(D, [53, 31], K, seed=0)
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    Trainer(optimizer="momentum", lr=1e-3, batch_size=200, epochs=2, seed=0).fit(
        model, X, y, X_val, y_val)
    extra = tracemalloc.get_traced_memory()[1] - base
    assert extra < 0.15 * X.nbytes, f"training took {extra} bytes beyond X ({X.nbytes} bytes)"


def test_first_layer_has_no_input_gradient():
    X, y = _data(B)
    model = MLP(D, HIDDEN, K, seed=0)
    model._loss_and_grads(X, y, 0.0)
    first, *rest = model.affines
    assert not first.need_dx and "dx" not in first._buffers
    assert first.backward(np.ones((B, HIDDEN[0]), np.float32)) is None
    assert all(a.need_dx and "dx" in a._buffers for a in rest)


def test_evaluation_runs_in_chunks_and_matches_a_direct_forward(traced):
    n, hidden = 2 * EVAL_CHUNK + 123, [200]
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, D), dtype=np.float32)
    model = MLP(D, hidden, K, seed=0)
    for p in model.params.values():  # non-zero biases, so that they matter
        p += 0.1 * rng.standard_normal(p.shape, dtype=np.float32)
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    pred = model.predict(X)
    extra = tracemalloc.get_traced_memory()[1] - base
    full_activation = n * hidden[0] * 4
    assert extra < 0.6 * full_activation, "evaluation should not hold every row's activations"
    # independent reference: the network written out in float64
    P = {k: v.astype(np.float64) for k, v in model.params.items()}
    scores = np.maximum(X @ P["W1"] + P["b1"], 0) @ P["W2"] + P["b2"]
    agree = np.mean(pred == scores.argmax(axis=1))
    assert agree > 0.999  # float32 rounding may flip a near-tie


def test_float32_training_matches_float64_accuracy():
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.data / 16.0 - 0.5).astype(np.float64)
    y = digits.target
    rng = np.random.RandomState(0)
    order = rng.permutation(len(X))
    train, val = order[:1400], order[1400:]
    accs, losses = {}, {}
    for dtype in (np.float32, np.float64):
        model = MLP(64, [64], 10, seed=0, dtype=dtype)
        h = Trainer(optimizer="momentum", lr=0.05, reg=1e-4, batch_size=100, epochs=15,
                    seed=0).fit(model, X[train], y[train], X[val], y[val])
        accs[dtype] = h.val_acc[-1]
        losses[dtype] = np.array(h.loss)
    assert accs[np.float64] > 0.9
    # same seed, same order, same maths: the runs differ by rounding only, far below the
    # seed-to-seed spread of this validation accuracy (about 1 percentage point)
    assert abs(accs[np.float32] - accs[np.float64]) <= 0.01
    np.testing.assert_allclose(losses[np.float32], losses[np.float64], rtol=1e-3, atol=1e-4)


def test_optimizer_updates_in_place_without_temporaries(traced):
    # the update itself, for every optimiser: after the first step creates state and scratch,
    # a step allocates nothing the size of a parameter
    shape = (301, 97)
    rng = np.random.default_rng(0)
    for name in ("sgd", "momentum", "nesterov", "adam"):
        params = {"W": rng.standard_normal(shape, dtype=np.float32)}
        grads = {"W": rng.standard_normal(shape, dtype=np.float32)}
        opt = make_optimizer(name, 1e-3)
        opt.step(params, grads)
        before = params["W"].__array_interface__["data"][0]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            opt.step(params, grads)
        extra = tracemalloc.get_traced_memory()[1] - base
        assert extra < params["W"].nbytes / 4, f"{name} allocated {extra} bytes per step"
        assert params["W"].__array_interface__["data"][0] == before
        assert params["W"].dtype == np.float32


def test_momentum_with_l2_makes_one_pass_over_each_weight_matrix_per_step(monkeypatch):
    from mlplab.blas import gemm_accumulates

    if not gemm_accumulates():
        pytest.skip("NumPy's BLAS cannot be called directly here: momentum is not fused")
    """With the velocity accumulated inside the weight-gradient product and the L2 term folded
    into the layer's scale (Momentum.fused), a step's only level-1 pass over a weight matrix is
    the update itself: no ``v *= mu``, no ``v += g``, no ``v += 2 reg W``. Settling the scale
    costs three passes once per epoch. Counted, not timed."""
    import mlplab.models
    import mlplab.optim

    calls = []

    def counting(module, name):
        real = getattr(module, name)

        def spy(a, *arrays):
            if arrays[-1].ndim == 2:  # a weight matrix (biases are 1-D)
                calls.append(f"{module.__name__}.{name}")
            return real(a, *arrays)
        monkeypatch.setattr(module, name, spy)

    counting(mlplab.optim, "axpy")
    counting(mlplab.optim, "scal")
    counting(mlplab.models, "axpy")
    X, y = _data(B * 3)
    model = MLP(D, HIDDEN, K, seed=0)
    Trainer(optimizer="momentum", lr=1e-3, reg=1e-3, batch_size=B, epochs=2,
            seed=0).fit(model, X, y)
    weights, steps, epochs = len(model.affines), 6, 2
    assert calls.count("mlplab.models.axpy") == 0  # the model adds no L2 gradient
    assert calls.count("mlplab.optim.axpy") == (steps + epochs) * weights
    assert calls.count("mlplab.optim.scal") == 2 * epochs * weights


def test_benchmark_clock_leaves_out_what_follows_an_epochs_last_step(monkeypatch):
    """benchmarks/bench_train.py times an epoch from its first step to its last: mlplab's
    epoch-end train accuracy, which the other engines do not compute, falls outside."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    now = iter([0.0, 10.0, 12.0, 20.0, 30.0])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(now))
    monkeypatch.setattr(bench.time, "process_time", lambda: 0.0)
    clock = bench.Clock()
    clock.mark()  # training starts at 0
    clock.steps_done()  # epoch 1's steps end at 10; its evaluation runs to 12
    clock.mark()
    clock.steps_done()  # epoch 2: steps 12-20, evaluation to 30
    clock.mark()
    wall, _ = clock.epochs()
    np.testing.assert_allclose(wall, [10.0, 8.0])


def test_benchmark_runs_mlplab_with_the_trainers_epoch_end_work():
    """benchmarks/bench_train.py repeats the trainer's epoch-end work in a callback, calling its
    private _check_weights: when that came to take the optimiser (to check its state too), the
    benchmark passed the learning rate still and failed with "'float' object has no attribute
    'lr'" in every mlplab timing."""
    import importlib.util
    import types
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, bench.INPUT_SIZE), dtype=np.float32)
    y = rng.integers(0, bench.NUM_CLASSES, 40)
    a = types.SimpleNamespace(batch_size=20, epochs=2, lr=1e-3, reg=1e-4, seed=0)
    clock, loss = bench.run_mlplab(X, y, [4], a)
    assert len(clock.epochs()[0]) == 2 and np.isfinite(loss)


def test_benchmark_json_is_strict_json_with_null_for_no_loss():
    """--json wrote the GEMM floors' missing loss as NaN, which no strict JSON reader (a
    browser's JSON.parse, jq) accepts; it is null now, and finite numbers are kept."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    raw = {500: {"gemm": {"final_loss": float("nan"), "rounds": [1.5, float("inf")]},
                 "mlplab": {"final_loss": 2.25, "rounds": [1.0]}}}
    text = json.dumps(bench._nan_to_null(raw), allow_nan=False)
    assert json.loads(text) == {"500": {"gemm": {"final_loss": None, "rounds": [1.5, None]},
                                        "mlplab": {"final_loss": 2.25, "rounds": [1.0]}}}
