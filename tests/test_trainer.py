"""The training loop: the exercise's SGD written out by hand, every optimiser and schedule,
early stopping, determinism, divergence, callbacks, Ctrl-C and exact resume."""

import os
import re
import signal

import numpy as np
import pytest

from mlplab import MLP, TwoLayerNet
from mlplab.trainer import (
    Callback,
    History,
    ResumeDtypeError,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
)


def blobs(n=300, d=6, k=3, seed=0):
    """Separable-ish Gaussian blobs: a problem small nets learn in a few epochs."""
    rng = np.random.RandomState(seed)
    centres = 3 * rng.randn(k, d)
    y = rng.randint(k, size=n)
    X = centres[y] + rng.randn(n, d)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    X, y = blobs(400)
    return X[:300], y[:300], X[300:], y[300:]


def test_exercise_sgd_matches_a_hand_written_loop(data):
    """Plain SGD with replacement sampling, lr * decay once per epoch, float64: the trainer must
    reproduce the loop of the exercise's ``TwoLayerNet.train`` exactly."""
    X, y, Xv, yv = data
    X = X.astype(np.float64)
    lr, decay, reg, iters, batch = 0.05, 0.9, 0.01, 37, 40
    net = TwoLayerNet(6, 8, 3, std=0.1, seed=3)
    stats = net.train(X, y, Xv, yv, learning_rate=lr, learning_rate_decay=decay, reg=reg,
                      num_iters=iters, batch_size=batch, seed=11)

    ref = TwoLayerNet(6, 8, 3, std=0.1, seed=3)
    rng = np.random.RandomState(11)
    per_epoch = max(len(X) // batch, 1)  # 7
    losses, val_acc, train_acc = [], [], []
    for it in range(iters):
        idx = rng.choice(len(X), batch, replace=True)
        loss, grads = ref.loss(X[idx], y[idx], reg=reg)
        for k, g in grads.items():
            ref.params[k] -= lr * g
        losses.append(loss)
        if (it + 1) % per_epoch == 0:
            val_acc.append(ref.accuracy(Xv, yv))
            train_acc.append(ref.accuracy(X[idx], y[idx]))  # the epoch's last batch, updated
            lr *= decay
    np.testing.assert_allclose(stats["loss_history"], losses, rtol=1e-12)
    assert stats["val_acc_history"] == val_acc
    assert stats["train_acc_history"] == train_acc
    assert len(val_acc) == iters // per_epoch
    for k in ref.params:
        np.testing.assert_allclose(net.params[k], ref.params[k], rtol=1e-12)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("momentum", 0.05), ("nesterov", 0.05),
                                          ("adam", 0.01)])
@pytest.mark.parametrize("schedule", ["exp", "step", "cosine", "constant"])
def test_every_optimizer_and_schedule_learns(optimizer, lr, schedule, data):
    X, y, Xv, yv = data
    model = MLP(6, [16], 3, seed=0)
    trainer = Trainer(optimizer=optimizer, lr=lr, schedule=schedule, epochs=8, batch_size=30,
                      warmup_epochs=1, step_epochs=2, lr_decay=0.8, seed=0)
    history = trainer.fit(model, X, y, Xv, yv)
    assert len(history.loss) == 8 * 10 and len(history.val_acc) == 8
    assert np.mean(history.loss[-10:]) < 0.5 * history.loss[0]
    assert history.val_acc[-1] > 0.8
    # the learning rate the schedule promised is what the optimiser used
    if schedule == "exp":
        assert history.lr[3] == pytest.approx(lr * 0.8**2)  # epochs after the 1-epoch warm-up
    if schedule == "constant":
        assert history.lr[-1] == pytest.approx(lr)


def test_schedule_drives_the_optimizer_lr_each_iteration(data):
    X, y, _, _ = data
    seen = []

    class Spy(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            seen.append(trainer.optimizer.lr)

    Trainer(lr=0.1, schedule="cosine", warmup_epochs=1, epochs=3, batch_size=100, min_lr=0.0,
            callbacks=[Spy()]).fit(MLP(6, [4], 3, seed=0), X, y)
    # 3 iterations per epoch, warm-up of 3, cosine over the remaining 6
    expected = [0.1 / 3, 0.2 / 3, 0.1] + [0.05 * (1 + np.cos(np.pi * i / 6)) for i in range(5)]
    assert seen[:8] == pytest.approx(expected)


def test_a_fractional_warmup_is_rounded_to_whole_iterations(data):
    """``warmup_epochs`` need not be whole: half an epoch of 4 iterations is a warm-up of 2
    (lr / 2, then lr), after which the constant schedule holds lr."""
    X, y, _, _ = data
    seen = []

    class Spy(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            seen.append(trainer.optimizer.lr)

    Trainer(lr=0.1, schedule="constant", warmup_epochs=0.5, epochs=2, batch_size=75,
            callbacks=[Spy()]).fit(MLP(6, [4], 3, seed=0), X, y)  # 300 rows: 4 iterations
    assert seen == pytest.approx([0.05, 0.1] + [0.1] * 6)


def test_a_warmup_as_long_as_the_run_is_warned_about(data):
    """The learning rate would reach lr at the last step or never (a preset's warm-up epoch with
    epochs=1): legal, but not what anyone means, so it is said, at the caller's line (it pointed
    into mlplab/trainer.py once fit gained a frame); a warm-up shorter than the run is not.
    A warm-up as long as the run was said to never reach lr, which its last step does."""
    import warnings

    X, y, _, _ = data  # 300 rows, batch 100: 3 iterations per epoch
    for epochs, warmup, reach in ((1, 1, "reaches lr 0.1 only at the last iteration"),
                                  (2, 3, "never reaches lr 0.1")):
        with pytest.warns(UserWarning, match=rf"the warm-up \({warmup * 3} iterations\) lasts "
                          rf"the whole run \({epochs * 3} iterations\): the learning rate "
                          rf"{reach}, and the cosine schedule never starts") as warned:
            h = Trainer(lr=0.1, schedule="cosine", warmup_epochs=warmup, epochs=epochs,
                        batch_size=100).fit(MLP(6, [4], 3, seed=0), X, y)
        assert [w.filename for w in warned] == [__file__]
        assert (h.lr[-1] == pytest.approx(0.1)) == (warmup == epochs)  # the last step's rate
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(lr=0.1, schedule="cosine", warmup_epochs=1, epochs=2,
                batch_size=100).fit(MLP(6, [4], 3, seed=0), X, y)


def test_a_schedule_of_ones_own_is_not_warned_about_a_warmup_it_replaces(data):
    """lr_schedule replaces warmup_epochs: no warm-up happens, so none is said to last the
    run (it was, with a rate of lr_schedule's from the first step)."""
    import warnings

    X, y, _, _ = data  # 3 iterations per epoch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = Trainer(lr=0.1, warmup_epochs=3, epochs=2, batch_size=100,
                    lr_schedule=lambda iteration, epoch: 0.05).fit(MLP(6, [4], 3, seed=0), X, y)
    assert h.lr == [0.05, 0.05]


def test_momentum_is_0_9_unless_given(data):
    """The documented default (``--momentum`` help: "default: 0.9"): a momentum run that does
    not set it is the run with momentum=0.9, step for step."""
    X, y, _, _ = data
    runs = []
    for setting in ({}, {"momentum": 0.9}):
        model = MLP(6, [8], 3, seed=0)
        trainer = Trainer(optimizer="momentum", lr=0.05, epochs=2, batch_size=50, seed=0,
                          **setting)
        runs.append((trainer.fit(model, X, y).loss, model.state_dict()))
        assert trainer.optimizer.momentum == 0.9
    (default_loss, default_state), (loss, state) = runs
    assert default_loss == loss
    for k, v in state.items():
        np.testing.assert_array_equal(default_state[k], v)


def test_shuffle_sampling_visits_every_row_once_per_epoch(data):
    X, y, _, _ = data
    visited = []
    model = MLP(6, [4], 3, seed=0)

    def spy(xb, rng):
        visited.append(xb.copy())
        return xb

    Trainer(epochs=2, batch_size=50, seed=1, augment=spy).fit(model, X, y)
    first_epoch, second_epoch = np.concatenate(visited[:6]), np.concatenate(visited[6:12])
    assert sorted(map(tuple, first_epoch)) == sorted(map(tuple, X))
    assert sorted(map(tuple, second_epoch)) == sorted(map(tuple, X))
    # shuffled: neither epoch walks the rows in their stored order, and the two orders differ
    assert not np.array_equal(first_epoch, X[:300]) and not np.array_equal(second_epoch, X[:300])
    assert not np.array_equal(first_epoch, second_epoch)


def test_augment_output_is_what_the_model_trains_on(data):
    X, y, _, _ = data
    base = Trainer(epochs=1, batch_size=50, seed=0)
    flipped = Trainer(epochs=1, batch_size=50, seed=0, augment=lambda xb, rng: -xb)
    m1, m2 = MLP(6, [4], 3, seed=0), MLP(6, [4], 3, seed=0)
    base.fit(m1, X, y)
    flipped.fit(m2, -X, y)  # negated data, negated back by the augmentation
    for k in m1.params:
        np.testing.assert_allclose(m1.params[k], m2.params[k], rtol=1e-6)


def test_early_stopping_restores_the_best_parameters(data):
    X, y, Xv, yv = data
    snapshots = {}

    class Snap(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            snapshots[epoch] = (logs["val_acc"], trainer.model.state_dict())

    yv_noisy = np.random.RandomState(0).randint(3, size=len(yv))  # val acc wanders at random
    model = MLP(6, [16], 3, seed=0)
    trainer = Trainer(lr=0.2, epochs=40, batch_size=30, patience=3, seed=0, callbacks=[Snap()])
    history = trainer.fit(model, X, y, Xv, yv_noisy)

    accs = [snapshots[e][0] for e in sorted(snapshots)]
    best_epoch = int(np.argmax(accs)) + 1  # first maximum wins
    assert history.best_epoch == best_epoch and history.best_val_acc == max(accs)
    assert history.stopped_early and len(accs) == best_epoch + 3 < 40
    for k, v in snapshots[best_epoch][1].items():
        np.testing.assert_array_equal(model.state_dict()[k], v)
    assert not np.array_equal(snapshots[len(accs)][1]["W1"], model.params["W1"])


def test_without_restore_best_early_stopping_keeps_the_last_parameters(data):
    """``restore_best=False``: the run still stops ``patience`` epochs after its best, but keeps
    the parameters of its last epoch rather than going back to the best one's."""
    X, y, Xv, yv = data
    snapshots = {}

    class Snap(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            snapshots[epoch] = trainer.model.state_dict()

    yv_noisy = np.random.RandomState(0).randint(3, size=len(yv))  # val acc wanders at random
    model = MLP(6, [16], 3, seed=0)
    history = Trainer(lr=0.2, epochs=40, batch_size=30, patience=3, restore_best=False, seed=0,
                      callbacks=[Snap()]).fit(model, X, y, Xv, yv_noisy)
    last = len(snapshots)
    assert history.stopped_early and last == history.best_epoch + 3 < 40
    for k, v in snapshots[last].items():
        np.testing.assert_array_equal(model.state_dict()[k], v)
    assert not np.array_equal(snapshots[history.best_epoch]["W1"], model.params["W1"])


def test_early_stopping_counts_a_tie_as_no_improvement(data):
    """Patience counts epochs without a strictly better validation accuracy: on a plateau (a
    learning rate too small to change a prediction) the first epoch stays the best and the run
    stops ``patience`` epochs later, rather than training on for ever."""
    X, y, Xv, yv = data
    model = MLP(6, [8], 3, seed=0)
    h = Trainer(lr=1e-9, epochs=12, batch_size=30, patience=3, seed=0).fit(model, X, y, Xv, yv)
    assert len(set(h.val_acc)) == 1  # the plateau this test needs
    assert h.stopped_early and h.best_epoch == 1 and len(h.val_acc) == 1 + 3


def test_subset_train_accuracy_estimates_the_whole_training_set():
    """With ``train_acc="subset"`` on more rows than the subset holds, the accuracy comes from a
    random sample of them, not the first rows: here the first 5,000 rows are all class 0 and
    the last 1,000 class 1, on identical inputs, so any constant prediction scores 5/6 or 1/6
    on the whole set (and 1 or 0 on the first 5,000)."""
    n = 6000
    X, y = np.zeros((n, 2), np.float32), (np.arange(n) >= 5000).astype(int)
    model = MLP(2, [3], 2, seed=0)
    h = Trainer(lr=0.1, epochs=1, batch_size=n, train_acc="subset", seed=0).fit(model, X, y)
    whole = model.accuracy(X, y)
    assert round(whole * n) in (5000, 1000)
    assert abs(h.train_acc[0] - whole) < 0.02  # a 5,000-row sample: sd about 0.002


def test_state_dict_hands_out_copies_of_the_best_parameters(data):
    """A hook that edits the snapshot it reads, or the state it resumes from, must not change
    what early stopping restores, nor the epoch's row order that the run goes on with."""
    X, y, Xv, yv = data

    class Vandal(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            trainer.state_dict()["order"][...] = 0  # mid-epoch: the rest of it reads the order

        def on_epoch_end(self, trainer, epoch, logs):
            for v in trainer.state_dict()["best_state"].values():
                v[...] = 0

    def run(callbacks):
        model = MLP(6, [16], 3, seed=0)
        Trainer(lr=0.2, epochs=6, batch_size=30, patience=2, seed=0,
                callbacks=callbacks).fit(model, X, y, Xv, yv)
        return model

    clean, vandalised = run([]), run([Vandal()])
    for k, v in clean.state_dict().items():
        np.testing.assert_array_equal(vandalised.state_dict()[k], v)
    assert np.abs(clean.params["W1"]).sum() > 0

    trainer = Trainer(lr=0.2, epochs=1, batch_size=30, patience=2, seed=0)
    trainer.fit(MLP(6, [16], 3, seed=0), X, y, Xv, yv)
    state = trainer.state_dict()
    resumed = Trainer(lr=0.2, epochs=1, batch_size=30, patience=2, seed=0)
    resumed.resume(state)
    resumed.fit(MLP(6, [16], 3, seed=0), X, y, Xv, yv)
    for v in state["best_state"].values():
        v[...] = 0
    assert all(np.abs(v).sum() > 0 for v in resumed.state_dict()["best_state"].values())


def test_patience_without_validation_data_is_an_error(data):
    X, y, _, _ = data
    with pytest.raises(ValueError, match="validation"):
        Trainer(patience=2).fit(MLP(6, [4], 3), X, y)


def test_same_seed_same_run_different_seed_different_run(data):
    X, y, Xv, yv = data

    def run(seed):
        model = MLP(6, [12], 3, seed=0, dropout=0.3, batchnorm=True)
        h = Trainer(optimizer="adam", lr=0.01, epochs=3, batch_size=32, seed=seed).fit(
            model, X, y, Xv, yv)
        return h.loss, model.state_dict()

    (l1, s1), (l2, s2), (l3, _) = run(5), run(5), run(6)
    assert l1 == l2 and l1 != l3
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])


def test_nan_loss_names_the_iteration_and_suggests_a_lower_lr(data):
    X, y, _, _ = data
    model = MLP(6, [32], 3, init="normal", std=1.0, seed=0, dtype=np.float32)
    with pytest.raises(TrainingDivergedError) as info, np.errstate(all="ignore"):
        Trainer(lr=1e6, epochs=5, batch_size=30).fit(model, X * 100, y)
    msg = str(info.value)
    assert "iteration" in msg and "lower learning rate" in msg
    it = int(msg.split("iteration ")[1].split()[0])
    assert it > 1  # the first loss is finite; the explosion comes from the updates


def test_callbacks_are_called_in_order_with_logs(data):
    X, y, Xv, yv = data
    events = []

    class Rec(Callback):
        def on_train_begin(self, trainer):
            events.append(("begin", trainer.iteration))

        def on_iteration_end(self, trainer, iteration, loss):
            events.append(("iter", iteration))

        def on_epoch_end(self, trainer, epoch, logs):
            events.append(("epoch", epoch, sorted(logs)))
            if epoch == 2:
                trainer.stop = True

        def on_train_end(self, trainer):
            events.append(("end", trainer.iteration))

    h = Trainer(epochs=5, batch_size=100, callbacks=[Rec()]).fit(MLP(6, [4], 3), X, y, Xv, yv)
    keys = ["epoch", "iteration", "loss", "lr", "seconds", "train_acc", "val_acc"]
    assert events == [("begin", 0), ("iter", 1), ("iter", 2), ("iter", 3), ("epoch", 1, keys),
                      ("iter", 4), ("iter", 5), ("iter", 6), ("epoch", 2, keys), ("end", 6)]
    assert len(h.val_acc) == 2


def _interrupt_at(iteration):
    class Kill(Callback):
        def on_iteration_end(self, trainer, it, loss):
            if it == iteration:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C

    return Kill()


@pytest.mark.parametrize("sampling", ["shuffle", "replacement"])
def test_ctrl_c_stops_cleanly_and_resume_is_exact(sampling, data):
    """Ctrl-C mid-epoch stops after the current iteration; the state then taken resumes to
    exactly the parameters of an uninterrupted run (dropout, batch norm, Adam, early-stopping
    bookkeeping and the shuffled order included)."""
    X, y, Xv, yv = data
    cfg = TrainConfig(optimizer="adam", lr=0.01, epochs=4, batch_size=32, seed=3, patience=10,
                      sampling=sampling)

    def new_model():
        return MLP(6, [10, 8], 3, seed=1, dropout=0.2, batchnorm=True)

    full = new_model()
    h_full = Trainer(cfg).fit(full, X, y, Xv, yv)

    ended = []

    class End(Callback):
        def on_train_end(self, trainer):
            ended.append(trainer.iteration)

    part = new_model()
    t1 = Trainer(cfg, callbacks=[_interrupt_at(13), End()])
    h1 = t1.fit(part, X, y, Xv, yv)
    assert h1.interrupted and t1.iteration == 13 == ended[0] and len(h1.loss) == 13
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    state, weights = t1.state_dict(), part.state_dict()

    resumed = new_model()
    resumed.load_state_dict(weights)
    t2 = Trainer(cfg)
    t2.resume(state)
    h2 = t2.fit(resumed, X, y, Xv, yv)
    assert not h2.interrupted
    assert h2.loss == h_full.loss and h2.val_acc == h_full.val_acc
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v)


def test_resume_from_an_epoch_boundary_with_momentum(data):
    X, y, Xv, yv = data
    cfg = TrainConfig(optimizer="momentum", lr=0.05, epochs=5, batch_size=40, seed=0)
    full = MLP(6, [8], 3, seed=0)
    Trainer(cfg).fit(full, X, y, Xv, yv)

    snap = _snapshot_at_epoch_2(cfg, [8], data)
    again, _ = _resume_from(snap, cfg, [8], data)
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)


def test_a_state_kept_in_memory_resumes_more_than_once(data):
    """Resuming appends to the history it was given; the state handed to ``resume`` must stay
    as it was, so that a second trainer (another try from the same checkpoint) resumes from it
    too, to the same result. It was refused as "damaged or another run's", its history grown
    by the first resumed run."""
    X, y, Xv, yv = data
    cfg = TrainConfig(optimizer="adam", lr=0.05, epochs=4, batch_size=40, seed=0)
    full = MLP(6, [8], 3, seed=0)
    h_full = Trainer(cfg).fit(full, X, y, Xv, yv)

    snap = _snapshot_at_epoch_2(cfg, [8], data)
    losses = list(snap["state"]["history"]["loss"])
    for _ in range(2):
        again, history = _resume_from(snap, cfg, [8], data)
        assert history.loss == h_full.loss and history.val_acc == h_full.val_acc
        for k, v in full.state_dict().items():
            np.testing.assert_array_equal(again.state_dict()[k], v)
    assert snap["state"]["history"]["loss"] == losses


def _snapshot_at_epoch_2(cfg, hidden, data):
    """The trainer's and the model's state at the end of epoch 2 of a run of ``cfg``."""
    X, y, Xv, yv = data
    snap = {}

    class Save(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                snap["state"], snap["model"] = trainer.state_dict(), trainer.model.state_dict()

    Trainer(cfg, callbacks=[Save()]).fit(MLP(6, hidden, 3, seed=0), X, y, Xv, yv)
    return snap


def _resume_from(snap, cfg, hidden, data):
    """A fresh model and trainer continued from a snapshot's model and trainer state."""
    X, y, Xv, yv = data
    again = MLP(6, hidden, 3, seed=99)
    again.load_state_dict(snap["model"])
    t = Trainer(cfg)
    t.resume(snap["state"])
    return again, t.fit(again, X, y, Xv, yv)


@pytest.mark.parametrize("hook", ["on_epoch_end", "on_train_end"])
def test_resume_after_an_early_stop_trains_no_further(data, hook):
    """A run killed after it stopped early (while its results were being saved) is finished: its
    checkpoint, written at the stopping epoch or after the best parameters were restored, must
    resume to the same model and history, not train on."""
    X, y, Xv, yv = data
    yv = np.random.RandomState(0).randint(3, size=len(yv))  # val acc wanders: an early stop
    cfg = TrainConfig(optimizer="momentum", lr=0.2, epochs=40, batch_size=30, seed=0,
                      patience=2, reg=1e-3)
    full = MLP(6, [16], 3, seed=0)
    h_full = Trainer(cfg).fit(full, X, y, Xv, yv)
    assert h_full.stopped_early

    snap = {}

    class Save(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if hook == "on_epoch_end" and trainer.stop:
                snap["state"], snap["model"] = trainer.state_dict(), trainer.model.state_dict()

        def on_train_end(self, trainer):
            if hook == "on_train_end":
                snap["state"], snap["model"] = trainer.state_dict(), trainer.model.state_dict()

    Trainer(cfg, callbacks=[Save()]).fit(MLP(6, [16], 3, seed=0), X, y, Xv, yv)
    again, h = _resume_from(snap, cfg, [16], (X, y, Xv, yv))
    assert h.stopped_early and h.loss == h_full.loss and h.val_acc == h_full.val_acc
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)


def test_iters_override_epochs_and_train_acc_modes(data):
    X, y, Xv, yv = data
    h = Trainer(iters=25, epochs=100, batch_size=30, train_acc="batch").fit(
        MLP(6, [4], 3), X, y, Xv, yv)
    assert len(h.loss) == 25 and len(h.train_acc) == 2  # 10 iterations per epoch
    assert all(a * 30 == round(a * 30) for a in h.train_acc)  # measured on one batch of 30


@pytest.mark.parametrize("bad,match", [
    ({"lr": 0}, "lr"), ({"batch_size": 0}, "batch_size"), ({"epochs": 0}, "epochs"),
    ({"optimizer": "rmsprop"}, "unknown optimizer"), ({"schedule": "linear"}, "schedule"),
    ({"sampling": "random"}, "sampling"), ({"weight_decay": 0.1}, "adam"),
    ({"patience": 0}, "patience"), ({"colour": "red"}, "unknown training options"),
    # accepted by int(patience), then a TypeError (or a rounded count) at the first epoch's end
    ({"patience": "3"}, "patience must be an integer >= 1; got '3'"),
    ({"patience": 2.5}, "patience must be an integer"), ({"patience": True}, "patience"),
])
def test_bad_config_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        Trainer(**bad)


def test_a_misspelt_option_is_told_the_known_ones():
    """Trainer(optimiser="adam") names every option a Trainer takes, among them the one meant
    (it said only "unknown training options: optimiser.")."""
    from dataclasses import fields

    with pytest.raises(ValueError, match="unknown training options: optimiser") as info:
        Trainer(optimiser="adam")
    known = str(info.value).split("(known: ", 1)[1].rstrip(").").split(", ")
    assert known == sorted(f.name for f in fields(TrainConfig))


def test_bad_data_is_a_clear_error(data):
    X, y, _, _ = data
    with pytest.raises(ValueError, match="features"):
        Trainer().fit(MLP(5, [4], 3), X, y)
    with pytest.raises(ValueError, match="labels"):
        Trainer().fit(MLP(6, [4], 3), X, y[:-1])
    # one row per batch normalises every activation to 0: refused, not trained to chance
    with pytest.raises(ValueError, match="batch norm needs batches of at least 2 rows"):
        Trainer(batch_size=1).fit(MLP(6, [4], 3, batchnorm=True), X, y)
    # likewise a one-row training set, whatever the batch size (a shuffled batch is at most N)
    with pytest.raises(ValueError, match="batch norm needs batches of at least 2 rows; got 1"):
        Trainer(batch_size=200).fit(MLP(6, [4], 3, batchnorm=True), X[:1], y[:1])
    Trainer(batch_size=1, epochs=1).fit(MLP(6, [4], 3), X[:5], y[:5])  # fine without it


def test_validation_data_comes_in_pairs(data):
    X, y, Xv, yv = data
    with pytest.raises(ValueError, match="X_val was given without y_val: pass both"):
        Trainer(epochs=1).fit(MLP(6, [4], 3), X, y, Xv)
    with pytest.raises(ValueError, match="y_val was given without X_val"):  # was ignored
        Trainer(epochs=1).fit(MLP(6, [4], 3), X, y, y_val=yv)


def test_a_history_shows_a_summary_not_every_loss():
    # the dataclass repr printed every iteration's loss: 100,000 numbers here, in a notebook
    # cell showing a History or a RunResult
    h = History(loss=[2.0] * 99_999 + [0.123456], train_acc=[0.5, 0.91234],
                val_acc=[0.4, 0.8], best_val_acc=0.8, best_epoch=2, stopped_early=True)
    assert repr(h) == ("History(iterations=100000, epochs=2, loss=0.1235, train_acc=0.9123, "
                       "val_acc=0.8, best_val_acc=0.8, best_epoch=2, stopped_early)")
    assert repr(History()) == "History(iterations=0, epochs=0)"


def test_a_second_fit_starts_over(data):
    X, y, Xv, yv = data
    trainer = Trainer(epochs=2, batch_size=50, seed=0)
    first = MLP(6, [4], 3, seed=0)
    h1 = list(trainer.fit(first, X, y, Xv, yv).loss)
    second = MLP(6, [4], 3, seed=0)
    h2 = trainer.fit(second, X, y, Xv, yv).loss
    assert h1 == h2 and trainer.iteration == 12
    np.testing.assert_array_equal(first.params["W1"], second.params["W1"])


def test_label_smoothing_trains_on_smoothed_targets_and_is_restored(data):
    """The first step's loss is the smoothed cross-entropy of the initial model, computed here
    independently; afterwards the model's own loss is the plain NLL again."""
    X, y, X_val, y_val = data
    model = MLP(6, [8], 3, seed=0, dtype=np.float64)
    probs = model.predict_proba(X[:50])
    q = np.full((50, 3), 0.2 / 3)
    q[np.arange(50), y[:50]] += 0.8
    expected = -(q * np.log(probs)).sum(1).mean()
    history = Trainer(optimizer="sgd", lr=0.1, iters=1, batch_size=50, sampling="shuffle",
                      label_smoothing=0.2, seed=0).fit(model, X[:50], y[:50])
    np.testing.assert_allclose(history.loss[0], expected, rtol=1e-10)
    assert model.output.label_smoothing == 0.0
    with pytest.raises(ValueError, match="label_smoothing"):
        Trainer(label_smoothing=1.0)


def test_verbose_lines_show_validation_accuracy_only_with_validation_data(data, capsys):
    X, y, Xv, yv = data
    Trainer(epochs=2, batch_size=100, verbose=True, seed=0).fit(MLP(6, [8], 3, seed=0), X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("train acc" in ln and "val" not in ln for ln in lines)
    Trainer(epochs=1, batch_size=100, verbose=True, seed=0).fit(MLP(6, [8], 3, seed=0), X, y,
                                                                 Xv, yv)
    line = capsys.readouterr().out.strip()
    assert re.search(r"train acc \d+\.\d%, val acc \d+\.\d%, lr ", line)  # percent, as printed


@pytest.mark.parametrize("kernel", [False, True])
def test_the_progress_bar_shows_in_a_notebook(data, capsys, request, kernel):
    """``progress=True`` in a notebook without ipywidgets showed no bar at all: tqdm's text bar
    was disabled because the kernel's stderr is not a terminal. Outside a kernel a stderr that
    is not a terminal (a log file, this captured one) still gets no bar."""
    X, y, Xv, yv = data
    if kernel:
        request.getfixturevalue("jupyter_kernel")
    Trainer(epochs=2, batch_size=50, progress=True).fit(MLP(6, [8], 3, seed=0), X, y, Xv, yv)
    err = capsys.readouterr().err
    if kernel:
        assert "0/12 [" in err  # the bar (updated every half second; this fit is quicker)
    else:
        assert err == ""


def test_a_trainer_shows_its_settings():
    """A notebook cell showing a trainer printed ``<mlplab.trainer.Trainer object at 0x...>``."""
    class Log(Callback):
        pass

    assert repr(Trainer()) == "Trainer()"
    assert repr(Trainer(TrainConfig(optimizer="adam", epochs=5), lr=0.01, callbacks=[Log()],
                        lr_schedule=lambda it, ep: 0.1)) == \
        "Trainer(optimizer='adam', lr=0.01, epochs=5, callbacks=[Log], lr_schedule=...)"
    assert repr(Trainer.exercise(1e-4, 0.95, 0.25, 1000, 200)) == (
        "Trainer(lr=0.0001, reg=0.25, epochs=None, iters=1000, sampling='replacement', "
        "train_acc='batch', seed=None)")


def _streams(model):
    return [layer.rng.bit_generator.state for layer in model.layers if hasattr(layer, "rng")]


@pytest.mark.parametrize("other", [
    ({"rows": 290}, "the saved row order is not a permutation of the 290 training rows"),
    ({"hidden": [9]}, r"optimizer W1/v has shape \(6, 8\); the model's has \(6, 9\)"),
    ({"dropout": 0.0}, "the state has 1 dropout generators, the model 0 dropout layers"),
    ({"dtype": np.float64}, "the saved trainer state is a float32 run's, but the model is "
                            "float64"),
    ({"seed": None, "rows": 290}, "not a permutation"),
    # 14 iterations of 40 rows are epoch 2 in batches of 60 too (5 a epoch), but the next step
    # would start at row 240 of its epoch, not at row 0: the counters alone let it through
    ({"batch_size": 60}, "the run was trained in batches of 40 rows, this trainer's are 60; "
                         "resume with the run's own batch_size"),
    # where the counters no longer fit either, the batch size is named, not "a damaged state"
    ({"batch_size": 20}, "the run was trained in batches of 40 rows, this trainer's are 20"),
])
def test_a_refused_resume_changes_nothing_and_stays_pending(data, other):
    """A state refused for the model or the data had already been applied in part: the model's
    dropout streams (and NumPy's global stream, for seed None) set, the trainer's counters and
    history replaced, the state dropped, so that the next fit, given the run's own data, started
    over instead of resuming. Another network's sizes failed mid-step in BLAS; a float32 state
    went on in a float64 model."""
    changes, match = other
    X, y, Xv, yv = data
    seed = changes.get("seed", 0)
    cfg = TrainConfig(optimizer="momentum", lr=0.05, epochs=4, batch_size=40, seed=seed)

    def make(hidden=(8,), dropout=0.3, dtype=np.float32, **_):
        return MLP(6, list(hidden), 3, dropout=dropout, seed=0, dtype=dtype)

    def global_stream():
        kind, keys, pos, *_ = np.random.get_state()
        return kind, keys.tobytes(), pos
    snap = {}

    class Save(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                snap["state"], snap["model"] = trainer.state_dict(), trainer.model.state_dict()
                snap["streams"] = _streams(trainer.model)

    np.random.seed(5)
    full = make()
    h_full = Trainer(cfg, callbacks=[Save()]).fit(full, X, y, Xv, yv)
    model = make(**changes)
    trainer = Trainer(cfg, batch_size=changes.get("batch_size", 40))
    trainer.resume(snap["state"])
    streams, stream = _streams(model), global_stream()
    rows = changes.get("rows", len(y))
    with pytest.raises(ValueError, match=match):
        trainer.fit(model, X[:rows], y[:rows], Xv, yv)
    assert _streams(model) == streams
    assert global_stream() == stream
    assert (trainer.model, trainer.rng, trainer.iteration, trainer.history.loss) == \
        (None, None, 0, [])
    if seed is None:
        return  # (its global stream is elsewhere now: the run cannot be checked against full)
    trainer.config.batch_size = 40  # the run's own, as the message asks
    # still pending: the run's own model and data resume it, to the uninterrupted result
    again = make()
    again.load_state_dict(snap["model"])
    assert trainer.fit(again, X, y, Xv, yv).loss == h_full.loss
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)
    assert _streams(again) == _streams(full)


def test_resume_none_drops_a_pending_state(data):
    """A refused state stays pending (for a fit with the run's own model and data), and there
    was no way to drop it: every later fit of that trainer was refused. resume(None) drops it;
    the next fit starts afresh, as a new trainer's does."""
    X, y, Xv, yv = data
    cfg = TrainConfig(optimizer="momentum", lr=0.05, epochs=2, batch_size=40, seed=0)
    first = Trainer(cfg)
    first.fit(MLP(6, [8], 3, seed=0), X, y, Xv, yv)
    trainer = Trainer(cfg)
    trainer.resume(first.state_dict(), same_schedule=True)
    for _ in range(2):  # pending: refused again
        with pytest.raises(ValueError, match=r"W1/v has shape \(6, 8\); the model's has \(6, 5\)"):
            trainer.fit(MLP(6, [5], 3, seed=0), X, y, Xv, yv)
    trainer.resume(None)
    history = trainer.fit(MLP(6, [5], 3, seed=0), X, y, Xv, yv)
    assert history.loss == Trainer(cfg).fit(MLP(6, [5], 3, seed=0), X, y, Xv, yv).loss
    assert trainer.iteration == len(history.loss)
    with pytest.raises(TypeError, match="state must be a dict from Trainer.state_dict.., or None "
                                        "to drop a pending one; got str"):
        trainer.resume("checkpoint.npz")


def test_a_resume_state_records_its_dtype_which_the_model_must_have(data):
    """The dtype check read the state's arrays alone: a plain-SGD state (no optimiser slots, no
    best parameters) of a float32 run went on in a float64 model. The state records the model's
    dtype; a state without it (an mlplab before 1 Dec 2026) is still checked by its arrays and
    resumes in a model of its dtype."""
    X, y, Xv, yv = data
    cfg = TrainConfig(optimizer="sgd", lr=0.05, epochs=2, batch_size=40, seed=0)
    first = Trainer(cfg)
    first.fit(MLP(6, [8], 3, seed=0), X, y, Xv, yv)
    state = first.state_dict()
    assert (state["dtype"], set(state["optimizer"]), state["best_state"]) == (
        "float32", {"__t__"}, None)
    wide = MLP(6, [8], 3, seed=0, dtype=np.float64)
    before = wide.state_dict()
    trainer = Trainer(cfg, epochs=3)
    trainer.resume(state)
    with pytest.raises(ResumeDtypeError, match="the saved trainer state is a float32 run's, but "
                                               "the model is float64.*dtype='float32'"):
        trainer.fit(wide, X, y, Xv, yv)
    assert trainer.model is None and all(
        np.array_equal(v, wide.state_dict()[k]) for k, v in before.items())
    # an older state: nothing tells a plain-SGD one's dtype, so it resumes as before
    old = {k: v for k, v in state.items() if k != "dtype"}
    resumed = Trainer(cfg, epochs=3)
    resumed.resume(old)
    model = MLP(6, [8], 3, seed=0)
    model.load_state_dict(first.model.state_dict())
    full = Trainer(cfg, epochs=3).fit(MLP(6, [8], 3, seed=0), X, y, Xv, yv)
    assert resumed.fit(model, X, y, Xv, yv).loss == full.loss
    # an older momentum state is refused by its arrays' dtype, as before
    moving = Trainer(cfg, optimizer="momentum")
    moving.fit(MLP(6, [8], 3, seed=0), X, y, Xv, yv)
    old = {k: v for k, v in moving.state_dict().items() if k != "dtype"}
    again = Trainer(cfg, optimizer="momentum", epochs=3)
    again.resume(old)
    with pytest.raises(ResumeDtypeError, match=r"holds float32 arrays \(optimizer W1/v\), but "
                                               "the model is float64"):
        again.fit(wide, X, y, Xv, yv)
    damaged = Trainer(cfg, epochs=3)
    damaged.resume({**state, "dtype": "int32"})
    with pytest.raises(ValueError, match="invalid .*dtype 'int32' is not the name of a float"):
        damaged.fit(MLP(6, [8], 3, seed=0), X, y, Xv, yv)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("length", [{"epochs": 1, "batch_size": 300},
                                    {"iters": 1, "epochs": None, "batch_size": 100}],
                         ids=["at-an-epochs-end", "between-epochs"])
def test_a_last_step_that_makes_the_weights_infinite_is_a_divergence(data, optimizer, length):
    """A step after a finite loss can make the weights themselves NaN or infinite (lr * g beyond
    float32's range); the next step's loss says so, but the last step of a run has no next one:
    the run ended as trained, NaN weights and all (a model whose own weights are NaN is no
    overflow to report, so the epoch-end evaluation computed NaN without a word), and a warm
    start or partial_fit kept such a network."""
    import warnings

    X, y, Xv, yv = data
    trainer = Trainer(optimizer=optimizer, lr=1e39, seed=0, **length)  # (data: 300 rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (the step's own overflow)
        with pytest.raises(TrainingDivergedError, match=r"^the weights became NaN or infinite "
                                                        r"at iteration 1 \(epoch 1\) with "
                                                        r"learning rate 1e\+39; try a lower"):
            trainer.fit(MLP(6, [8], 3, seed=0), X.astype(np.float32), y, Xv, yv)
    assert trainer.history.val_acc == []  # no epoch recorded as trained


def test_adam_state_that_overflows_is_a_divergence_not_a_converged_run():
    """Inputs of 1e30 in float32 give gradients whose squares overflow Adam's second moments:
    its steps were then m / inf = 0, the weights stayed finite and still, the loss stayed at
    4e29, and MLPClassifier stopped as converged with a network that predicted one class.
    The epoch's end now reports it as a divergence that says to standardise the inputs."""
    import warnings

    from mlplab import MLPClassifier

    rs = np.random.RandomState(0)
    X, y = (rs.randn(40, 5) * 1e30).astype(np.float32), np.arange(40) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (the step's own overflow)
        with pytest.raises(TrainingDivergedError, match=r"^the adam optimiser's state overflowed "
                           r"float32 by iteration 1 \(epoch 1\): the gradients are too large "
                           r"to train on; standardise the inputs"):
            Trainer(optimizer="adam", epochs=2, batch_size=40, seed=0).fit(
                MLP(5, [4], 2, seed=0), X, y)
        clf = MLPClassifier(hidden_sizes=(4,), random_state=0)
        with pytest.raises(TrainingDivergedError, match="standardise the inputs"):
            clf.fit(X, y)
    assert not hasattr(clf, "model_")


def test_an_epoch_whose_validation_overflows_is_not_counted_as_finished(data):
    """The validation at an epoch's end that overflows ends the run as diverged before the epoch
    is recorded: trainer.epoch counted it all the same (1, with no epoch in the history), so a
    tuning trial recorded one epoch more than a run that diverged in its loss or training
    accuracy, and the trainer's state no longer matched its history."""
    X, y, _, _ = data
    Xv, yv = np.full((10, X.shape[1]), 3e38, np.float32), np.zeros(10, dtype=int)
    trainer = Trainer(epochs=3, batch_size=100, seed=0)
    with pytest.raises(TrainingDivergedError, match="in the evaluation at the end of epoch 1 "):
        trainer.fit(MLP(6, [8], 3, seed=0), X.astype(np.float32), y, Xv, yv)
    assert (trainer.epoch, trainer.iteration) == (0, 3)
    assert len(trainer.history.val_acc) == len(trainer.history.train_acc) == trainer.epoch


def test_weights_that_overflow_at_an_epochs_evaluation_are_a_divergence(data):
    """One step can make the weights so large that the evaluation at the epoch's end overflows
    before any loss does: the run went on with NaN probabilities (a run of one epoch returned
    such a model as trained), or, with the model's overflow check alone, would end with a
    ValueError about the data, which a tuning trial does not count as diverged."""
    import warnings

    X, y, Xv, yv = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TrainingDivergedError, match="the network's class scores overflowed "
                                                        "float32 in the evaluation at the end of "
                                                        "epoch 1 with learning rate 1e.35"):
            Trainer(optimizer="sgd", lr=1e35, epochs=1, batch_size=len(y), seed=0).fit(
                MLP(6, [8], 3, seed=0), X, y, Xv, yv)


def test_a_fractional_warmup_rounds_to_the_nearest_iteration():
    """Every other test warms up for whole epochs; a warm-up of 0.5 epochs of 7 iterations is
    round(3.5) = 4 iterations (truncated, it was 3; below one epoch on small data, none)."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(70, 6), rng.randint(3, size=70)
    seen = []

    class Spy(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            seen.append(trainer.optimizer.lr)

    Trainer(lr=0.1, schedule="constant", warmup_epochs=0.5, epochs=1, batch_size=10,
            callbacks=[Spy()]).fit(MLP(6, [4], 3, seed=0), X, y)
    assert seen[:5] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])


def test_replacement_sampling_with_a_batch_larger_than_the_data_trains_a_step_an_epoch():
    """The exercise's epoch is max(N // B, 1) iterations: with sampling with replacement the
    batch is not capped at N, and without the max an epoch of 50 rows and a batch of 200 would
    be no iteration at all."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(50, 6), rng.randint(3, size=50)
    h = Trainer(lr=0.1, sampling="replacement", batch_size=200, epochs=3).fit(
        MLP(6, [4], 3, seed=0), X, y)
    assert len(h.loss) == 3 and len(h.train_acc) == 3


def test_subset_train_accuracy_of_a_set_no_larger_than_the_subset_is_the_whole_sets():
    """"Up to 5,000 training images": a training set of exactly ``TRAIN_ACC_SUBSET`` rows is
    measured whole, so the epoch's train accuracy is the model's accuracy on every row (random
    labels: about a third right, a fraction of 5,000 that no sample of fewer rows gives)."""
    from mlplab.trainer import TRAIN_ACC_SUBSET

    rng = np.random.RandomState(0)
    n = TRAIN_ACC_SUBSET
    X, y = rng.randn(n, 4).astype(np.float32), rng.randint(3, size=n)
    model = MLP(4, [5], 3, seed=0)
    h = Trainer(lr=0.1, epochs=1, batch_size=n, train_acc="subset", seed=0).fit(model, X, y)
    whole = np.mean(model.predict(X) == y)
    assert 0 < whole < 1
    assert h.train_acc == [whole]


def test_a_cosine_run_resumed_with_same_schedule_goes_on_as_the_uninterrupted_run(data):
    """The same-schedule check compares each epoch's recorded learning rate (that of the epoch's
    last iteration) with the schedule's there: a cosine run, whose rate changes every iteration,
    stopped after two of four epochs and resumed with its own settings is not refused, and
    continues with the uninterrupted run's rates and losses."""
    X, y, Xv, yv = data
    cfg = TrainConfig(optimizer="sgd", lr=0.05, schedule="cosine", min_lr=0.001, epochs=4,
                      batch_size=50, warmup_epochs=0.5, seed=0)
    full = Trainer(cfg).fit(MLP(6, [8], 3, seed=0), X, y, Xv, yv)

    class StopAfterTwo(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                trainer.stop = True

    model = MLP(6, [8], 3, seed=0)
    first = Trainer(cfg, callbacks=[StopAfterTwo()])
    first.fit(model, X, y, Xv, yv)
    assert len(first.history.lr) == 2
    again = Trainer(cfg)
    again.resume(first.state_dict(), same_schedule=True)
    h = again.fit(model, X, y, Xv, yv)
    assert h.lr == full.lr and h.loss == full.loss
    # the rates themselves: each epoch's at its last iteration, warm-up of 3 iterations (0.5
    # of an epoch of 6) then the cosine from lr to min_lr over the remaining 21
    expected = [0.001 + 0.5 * (0.05 - 0.001) * (1 + np.cos(np.pi * (6 * e - 1 - 3) / 21))
                for e in (1, 2, 3, 4)]
    np.testing.assert_allclose(full.lr, expected, rtol=1e-12)


def test_a_run_drawing_from_numpys_global_stream_resumes_where_that_stream_was(data):
    """seed=None: batches come from NumPy's global stream, and a resumed run sets that stream
    to the state saved with the checkpoint, so that draws made in between (another seed, other
    work) do not change the rest of the run: it ends as the uninterrupted one."""
    X, y, Xv, yv = data
    cfg = TrainConfig(optimizer="sgd", lr=0.05, epochs=4, batch_size=50, seed=None,
                      sampling="replacement")
    np.random.seed(7)
    full = Trainer(cfg).fit(MLP(6, [8], 3, seed=0), X, y, Xv, yv)

    class StopAfterTwo(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                trainer.stop = True

    np.random.seed(7)
    model = MLP(6, [8], 3, seed=0)
    first = Trainer(cfg, callbacks=[StopAfterTwo()])
    first.fit(model, X, y, Xv, yv)
    state = first.state_dict()
    np.random.seed(12345)  # the global stream moves on in between
    np.random.rand(17)
    again = Trainer(cfg)
    again.resume(state)
    assert again.fit(model, X, y, Xv, yv).loss == full.loss


def test_empty_validation_arrays_train_without_validation_as_documented(data, recwarn):
    """Zero-row X_val, y_val (a val_size=0 split) are no validation, silently, as documented in
    Trainer.fit and docs/training.md; patience, which needs validation, is refused."""
    X, y, Xv, yv = data
    history = Trainer(epochs=2, seed=0).fit(MLP(6, [4], 3, seed=0), X, y, Xv[:0], yv[:0])
    reference = Trainer(epochs=2, seed=0).fit(MLP(6, [4], 3, seed=0), X, y)
    assert len(history.val_acc) == 2 and np.isnan(history.val_acc).all()
    assert history.best_epoch == reference.best_epoch == -1
    assert history.loss == reference.loss and history.train_acc == reference.train_acc
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    with pytest.raises(ValueError, match="early stopping .* needs validation data"):
        Trainer(epochs=1, patience=2).fit(MLP(6, [4], 3), X, y, Xv[:0], yv[:0])
    assert "0 rows" in Trainer.fit.__doc__ and "val_size=0" in Trainer.fit.__doc__
