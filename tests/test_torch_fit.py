"""torch_mlp.fit's epoch bookkeeping against independent measurements: the numbers each epoch
hands to on_epoch_end, prints and records, the iteration a later epoch's divergence is named
at, a run without validation data, Ctrl-C from the callback and an empty training set."""

from __future__ import annotations

import contextlib
import math
import re

import numpy as np
import pytest

from mlplab.trainer import TrainingDivergedError

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install 'mlplab[torch]')")
tm = pytest.importorskip("mlplab.torch_mlp")


@pytest.fixture(scope="module")
def data():
    rs = np.random.RandomState(0)
    X = rs.randn(130, 12).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + 2 * (X[:, 1] > 0)
    return X[:100], y[:100], X[100:], y[100:]


def _model():
    return tm.build_model(12, [16], 4, seed=0)


def test_each_epochs_numbers_are_measured_recorded_printed_and_handed_on(data, capsys):
    X, y, Xv, yv = data
    model, seen = _model(), []

    def record(epoch, logs):
        # measured here, independently, on the model as the epoch left it
        seen.append((epoch, dict(logs), tm.accuracy(model, X, y), tm.accuracy(model, Xv, yv)))

    h = tm.fit(model, X, y, Xv, yv, epochs=3, batch_size=32, lr=1e-2, lr_decay=0.5,
               verbose=True, on_epoch_end=record)
    per_epoch = math.ceil(100 / 32)
    lines = capsys.readouterr().out.splitlines()
    assert len(seen) == len(lines) == 3 and len(h.loss) == 3 * per_epoch
    for (epoch, logs, train_acc, val_acc), line in zip(seen, lines, strict=True):
        assert logs.keys() == {"epoch", "iteration", "loss", "train_acc", "val_acc", "lr",
                               "seconds"}
        assert logs["epoch"] == epoch and logs["iteration"] == epoch * per_epoch
        assert logs["loss"] == h.loss[epoch * per_epoch - 1]  # the epoch's last batch
        # every row is in the train-accuracy subset (fewer than 5,000)
        assert logs["train_acc"] == train_acc == h.train_acc[epoch - 1]
        assert logs["val_acc"] == val_acc == h.val_acc[epoch - 1]
        assert logs["lr"] == h.lr[epoch - 1] == pytest.approx(1e-2 * 0.5 ** (epoch - 1))
        assert 0 < logs["seconds"] == h.epoch_seconds[epoch - 1]
        assert line == (f"epoch {epoch}/3: loss {logs['loss']:.4f}, train acc "
                        f"{100 * train_acc:.1f}%, val acc {100 * val_acc:.1f}%, lr "
                        f"{logs['lr']:.3g}, {logs['seconds']:.1f} s")
    best = int(np.argmax(h.val_acc))  # the first of equals
    assert (h.best_val_acc, h.best_epoch) == (h.val_acc[best], best + 1)
    assert not h.interrupted and not model.training


def test_without_validation_data_no_best_epoch_is_recorded(data, capsys):
    X, y, _, _ = data
    h = tm.fit(_model(), X, y, epochs=2, batch_size=50, verbose=True)
    assert all(math.isnan(v) for v in h.val_acc) and len(h.val_acc) == 2
    assert (h.best_val_acc, h.best_epoch) == (-1.0, -1)
    # nothing to print for validation either: the lines said "val acc nan%"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(", train acc " in ln and "val" not in ln for ln in lines)


def test_a_later_epochs_divergence_names_its_iteration(data):
    X, y, _, _ = data
    model = _model()

    def poison(epoch, logs):
        with torch.no_grad():
            model.linears[0].weight.fill_(float("inf"))

    with pytest.raises(TrainingDivergedError) as exc:
        tm.fit(model, X, y, epochs=3, batch_size=32, lr=1e-2, on_epoch_end=poison)
    # epoch 2's first batch follows epoch 1's four
    assert re.search(r"the loss became nan at iteration 5 \(epoch 2\) with learning rate "
                     r"0\.0095; try a lower learning rate", str(exc.value)), str(exc.value)


@pytest.mark.parametrize("signals", [1, 2])
def test_a_ctrl_c_stops_after_the_batch_and_a_second_stops_at_once(data, monkeypatch, signals):
    """One Ctrl-C: the batch it came in is finished, then training ends, its losses kept (the
    steps of the network as it stands). A second: out at once, as mlplab's Trainer does; it
    was swallowed, and the run recorded as a clean stop with two steps' losses missing."""
    import os
    import signal

    X, y, Xv, yv = data
    step, calls = torch.optim.Adam.step, []

    def step_with_ctrl_c(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7:  # the 3rd batch of epoch 2 (4 an epoch)
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGINT)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_with_ctrl_c)
    if signals == 1:
        h = tm.fit(_model(), X, y, Xv, yv, epochs=5, batch_size=25)
        assert h.interrupted and len(h.loss) == len(calls) == 7 and len(h.val_acc) == 1
    else:
        with pytest.raises(KeyboardInterrupt):
            tm.fit(_model(), X, y, Xv, yv, epochs=5, batch_size=25)


def test_ctrl_c_in_the_callback_ends_training_cleanly(data):
    X, y, Xv, yv = data
    model = _model()

    def stop(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    h = tm.fit(model, X, y, Xv, yv, epochs=5, batch_size=25, on_epoch_end=stop)
    assert h.interrupted and len(h.val_acc) == 2 and len(h.loss) == 8
    assert not model.training


def test_an_empty_training_set_is_refused_before_anything_else(data):
    X, y, Xv, _ = data
    with pytest.raises(ValueError, match=r"^cannot train on an empty training set \(X has 0 "):
        tm.fit(_model(), X[:0], y[:0], Xv)  # before the unpaired X_val


# Subnormal floats (below 1.2e-38) take a slow path on x86 CPUs: the exercise's dead deep nets
# (N(0, 1e-3) weights, Adam's weight decay) trained 10x slower on an Intel Xeon. fit flushes them.
def _can_flush() -> bool:
    can = torch.set_flush_denormal(True)
    torch.set_flush_denormal(False)
    return can


flush_supported = pytest.mark.skipif(
    not _can_flush(),
    reason="this CPU cannot flush subnormal numbers (torch.set_flush_denormal returns False)")


@flush_supported
def test_fit_trains_with_subnormals_flushed_and_gives_the_callers_setting_back(data):
    X, y, _, _ = data
    inside = []
    assert not tm.flushing_subnormals()
    tm.fit(_model(), X, y, epochs=2, batch_size=50,
           on_epoch_end=lambda epoch, logs: inside.append(tm.flushing_subnormals()))
    assert inside == [True, True]
    assert not tm.flushing_subnormals()  # as it was
    torch.set_flush_denormal(True)  # a caller who flushes keeps flushing
    try:
        tm.fit(_model(), X, y, epochs=1, batch_size=50)
        assert tm.flushing_subnormals()
    finally:
        torch.set_flush_denormal(False)


@flush_supported
def test_subnormal_weights_are_not_carried_through_training(data):
    """Weights of an input that is always 0 get no gradient but weight decay: started subnormal,
    they stay subnormal (each step's tiny change lands there too) unless fit flushes them."""
    X, y, _, _ = data
    X = X.copy()
    X[:, 0] = 0.0
    model = _model()
    with torch.no_grad():
        model.linears[0].weight[:, 0] = 1e-40
    assert bool((model.linears[0].weight[:, 0] != 0).all())  # stored subnormal, not flushed
    tm.fit(model, X, y, epochs=2, batch_size=50, lr=1e-3, reg=1e-3)
    column = model.linears[0].weight[:, 0]
    assert bool((column == 0).all()), column


@pytest.mark.parametrize("name", ["lr", "reg"])
def test_a_rate_beyond_float32_is_refused_before_training(name):
    """--lr 1e39 passed the checks (finite, > 0) and failed in the optimiser's step with
    PyTorch's "value cannot be converted to type float without overflow", after the run's
    folder was made (a depth study's then could be neither resumed nor replaced)."""
    from mlplab.torch_mlp.training import FLOAT32_MAX, LR_MAX, TorchTrainConfig

    most = LR_MAX if name == "lr" else FLOAT32_MAX
    TorchTrainConfig(**{name: most}).validate()
    with pytest.raises(ValueError, match=rf"{name}.* must be at most {re.escape(f'{most:.4g}')}"):
        TorchTrainConfig(**{name: most * 1.01}).validate()
    # at the bound the steps run (the loss may diverge: a diverged run, which mlplab handles),
    # where 10 times over it PyTorch's own overflow error came
    X, y = np.random.RandomState(0).randn(40, 5).astype(np.float32), np.arange(40) % 3
    model = tm.build_model(5, [4], 3, seed=0)
    with contextlib.suppress(TrainingDivergedError):
        tm.fit(model, X, y, epochs=2, batch_size=10, **{name: most})
