"""Optimisers and schedules against independent references: the update formulas written out, and
PyTorch's ``torch.optim`` / ``lr_scheduler`` fed the same gradient sequence."""

import math
import pickle

import numpy as np
import pytest

from mlplab.optim import OPTIMIZERS, Momentum, make_optimizer, register_optimizer
from mlplab.schedules import Schedule


def _grad_sequence(rng, steps=25):
    shapes = {"W": (4, 3), "b": (3,)}
    start = {k: rng.randn(*s) for k, s in shapes.items()}
    grads = [{k: rng.randn(*s) for k, s in shapes.items()} for _ in range(steps)]
    return start, grads


def _run_ours(name, start, grads, lrs, **kw):
    opt = make_optimizer(name, lrs[0], **kw)
    params = {k: v.copy() for k, v in start.items()}
    for lr, g in zip(lrs, grads):
        opt.lr = lr
        opt.step(params, g)
    return params


def test_sgd_is_the_exercise_update(rng):
    start, grads = _grad_sequence(rng, 5)
    out = _run_ours("sgd", start, grads, [0.1] * 5)
    expected = {k: start[k] - 0.1 * sum(g[k] for g in grads) for k in start}
    for k in start:
        np.testing.assert_allclose(out[k], expected[k], rtol=1e-12)


def test_momentum_and_nesterov_written_out(rng):
    start, grads = _grad_sequence(rng, 6)
    mu, lr = 0.8, 0.05
    for name in ("momentum", "nesterov"):
        out = _run_ours(name, start, grads, [lr] * 6, momentum=mu)
        for k in start:
            p, v = start[k].copy(), np.zeros_like(start[k])
            for g in grads:
                v = mu * v + g[k]
                p = p - lr * (g[k] + mu * v if name == "nesterov" else v)
            np.testing.assert_allclose(out[k], p, rtol=1e-12)


def test_adam_written_out(rng):
    start, grads = _grad_sequence(rng, 6)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    out = _run_ours("adam", start, grads, [lr] * 6)
    for k in start:
        p, m, v = start[k].copy(), 0.0, 0.0
        for t, g in enumerate(grads, start=1):
            m = b1 * m + (1 - b1) * g[k]
            v = b2 * v + (1 - b2) * g[k] ** 2
            p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        np.testing.assert_allclose(out[k], p, rtol=1e-10)


torch = None
try:  # the PyTorch comparisons skip individually when torch is missing
    import torch
except ImportError:  # pragma: no cover
    pass


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("name,ours,theirs", [
    ("sgd", {}, {}),
    ("momentum", {"momentum": 0.9}, {"momentum": 0.9}),
    ("nesterov", {"momentum": 0.7}, {"momentum": 0.7, "nesterov": True}),
    ("adam", {"beta1": 0.8, "beta2": 0.99}, {"betas": (0.8, 0.99)}),
    ("adamw", {"beta1": 0.9, "beta2": 0.999, "weight_decay": 0.1},
     {"betas": (0.9, 0.999), "weight_decay": 0.1}),
])
def test_optimizers_match_torch_on_the_same_gradients(name, ours, theirs, rng):
    start, grads = _grad_sequence(rng, 30)
    # a changing learning rate, as a schedule sets it, exercises lr handling too
    lrs = [0.05 * 0.9 ** (t // 5) for t in range(30)]
    out = _run_ours("adam" if name == "adamw" else name, start, grads, lrs, **ours)

    tparams = [torch.tensor(start[k], requires_grad=True) for k in start]
    cls = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "nesterov": torch.optim.SGD,
           "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    opt = cls(tparams, lr=lrs[0], **theirs)
    for lr, g in zip(lrs, grads):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, k in zip(tparams, start):
            p.grad = torch.tensor(g[k])
        opt.step()
    for p, k in zip(tparams, start):
        np.testing.assert_allclose(out[k], p.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_float32_params_stay_float32(rng):
    for name in OPTIMIZERS:
        opt = make_optimizer(name, 0.1)
        p = {"W": rng.randn(3, 2).astype(np.float32)}
        opt.step(p, {"W": rng.randn(3, 2).astype(np.float32)})
        assert p["W"].dtype == np.float32, name


def test_optimizer_state_round_trip(rng):
    start, grads = _grad_sequence(rng, 10)
    full = _run_ours("adam", start, grads, [0.01] * 10)
    opt = make_optimizer("adam", 0.01)
    params = {k: v.copy() for k, v in start.items()}
    for g in grads[:4]:
        opt.step(params, g)
    again = make_optimizer("adam", 0.01)
    again.load_state_dict(opt.state_dict())
    for g in grads[4:]:
        again.step(params, g)
    for k in start:
        np.testing.assert_array_equal(params[k], full[k])


def test_bad_optimizer_arguments():
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer("momentum", 0.1, momentum=1.0)
    with pytest.raises(ValueError, match="learning rate"):
        make_optimizer("sgd", -1.0)
    # Adam made directly took a negative eps (a division by about 0) and weight decay
    with pytest.raises(ValueError, match=r"^eps must be a finite number > 0; got -1.$"):
        make_optimizer("adam", 0.1, eps=-1)
    with pytest.raises(ValueError, match=r"^weight_decay must be a finite number >= 0; got -1"):
        make_optimizer("adam", 0.1, weight_decay=-1)


def test_an_optimizer_shows_as_the_call_that_makes_it():
    """A notebook cell showing ``trainer.optimizer`` printed ``<mlplab.optim.Adam object at
    0x...>``; it shows its settings, the rate as a schedule has set it, and a subclass of one's
    own its ``__init__`` arguments that it keeps by name."""
    assert repr(make_optimizer("sgd", 0.1)) == "SGD(lr=0.1)"
    assert repr(make_optimizer("nesterov", 0.1, momentum=0.8)) == "Nesterov(lr=0.1, momentum=0.8)"
    adam = make_optimizer("adam", 0.001, weight_decay=0.01)
    adam.lr = 0.0005
    assert repr(adam) == "Adam(lr=0.0005, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.01)"

    class Halved(Momentum):
        def __init__(self, lr, momentum=0.9, factor=0.5):  # factor is not kept by that name
            super().__init__(lr * factor, momentum)

    assert repr(Halved(0.2)) == "Halved(lr=0.1, momentum=0.9)"


# --------------------------------------------------------------------------- schedules
def test_exp_schedule_is_the_exercise_decay():
    s = Schedule(0.1, "exp", decay=0.95)
    assert [s.lr_at(i, e) for i, e in [(0, 0), (50, 1), (99, 3)]] == \
        pytest.approx([0.1, 0.095, 0.1 * 0.95**3])


def test_step_and_constant_schedules():
    s = Schedule(1.0, "step", decay=0.5, step_epochs=3)
    assert [s.lr_at(0, e) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert Schedule(0.3, "constant").lr_at(1000, 99) == 0.3


def test_warmup_is_linear_then_hands_over():
    s = Schedule(0.2, "constant", warmup_iters=4)
    assert [s.lr_at(i, 0) for i in range(6)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])


@pytest.mark.parametrize("kind", ["exp", "step"])
def test_epoch_schedules_start_from_lr_after_warmup(kind):
    # 2 epochs of 4 iterations of warm-up: the schedule's first epoch is the third, at lr; before,
    # the rate fell by decay^2 the moment the warm-up ended
    s = Schedule(1.0, kind, decay=0.5, step_epochs=1, warmup_iters=8, iters_per_epoch=4)
    lrs = [s.lr_at(i, i // 4) for i in range(20)]
    assert lrs[:8] == pytest.approx([(i + 1) / 8 for i in range(8)])
    assert lrs[8:] == pytest.approx([1.0] * 4 + [0.5] * 4 + [0.25] * 4)
    # a warm-up ending mid-epoch: the rest of that epoch runs at lr, then the decay begins
    s = Schedule(1.0, kind, decay=0.5, step_epochs=1, warmup_iters=6, iters_per_epoch=4)
    assert [s.lr_at(i, i // 4) for i in range(6, 13)] == pytest.approx([1, 1, .5, .5, .5, .5, .25])
    with pytest.raises(ValueError, match="iters_per_epoch"):
        Schedule(1.0, kind, warmup_iters=8)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
def test_schedules_match_torch_lr_schedulers():
    sched = torch.optim.lr_scheduler

    def torch_lrs(make, steps):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        s = make(opt)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        return out

    # per epoch: ExponentialLR and StepLR
    exp = Schedule(0.1, "exp", decay=0.9)
    assert [exp.lr_at(0, e) for e in range(8)] == \
        pytest.approx(torch_lrs(lambda o: sched.ExponentialLR(o, 0.9), 8))
    step = Schedule(0.1, "step", decay=0.3, step_epochs=3)
    assert [step.lr_at(0, e) for e in range(8)] == \
        pytest.approx(torch_lrs(lambda o: sched.StepLR(o, 3, 0.3), 8))
    # per iteration: CosineAnnealingLR over the whole run
    cos = Schedule(0.1, "cosine", total_iters=20, min_lr=0.01)
    assert [cos.lr_at(i, 0) for i in range(20)] == \
        pytest.approx(torch_lrs(lambda o: sched.CosineAnnealingLR(o, 20, eta_min=0.01), 20))


def test_cosine_after_warmup_starts_at_lr_and_ends_at_min():
    s = Schedule(1.0, "cosine", total_iters=110, warmup_iters=10, min_lr=0.0)
    assert s.lr_at(10, 0) == pytest.approx(1.0)
    assert s.lr_at(60, 0) == pytest.approx(0.5)
    assert s.lr_at(110, 0) == pytest.approx(0.0, abs=1e-12)
    assert math.isfinite(s.lr_at(10_000, 0))


def test_cosine_stays_at_min_lr_after_its_last_iteration():
    """Past ``total_iters`` the rate stays at ``min_lr``: the progress is clamped at 1, not a
    cosine continued past its end, which would climb back towards lr."""
    s = Schedule(1.0, "cosine", total_iters=20, min_lr=0.1)
    assert [s.lr_at(i, 0) for i in (20, 21, 27, 35, 1000)] == pytest.approx([0.1] * 5)
    s = Schedule(1.0, "cosine", total_iters=110, warmup_iters=10, min_lr=0.0)
    assert s.lr_at(10_000, 0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kind", ["exp", "step"])
def test_a_decay_of_one_keeps_the_rate(kind):
    """``decay`` lies in (0, 1], as the trainer's ``lr_decay`` does: 1 is a valid "no decay"."""
    s = Schedule(0.1, kind, decay=1.0, step_epochs=2)
    assert [s.lr_at(10 * e, e) for e in range(6)] == [0.1] * 6


def test_bad_schedules():
    with pytest.raises(ValueError, match="unknown schedule"):
        Schedule(0.1, "linear")
    # the argument named as it is spelt, and a string refused, not a TypeError from "<"
    for decay in (1.5, 0.0, float("nan"), "0.5"):
        with pytest.raises(ValueError, match=r"^decay must be a number in \(0, 1\]; got "):
            Schedule(0.1, "exp", decay=decay)
    Schedule(0.1, "cosine", decay=1.5, total_iters=10)  # (a decay the cosine does not use)
    # as TrainConfig refuses them: made directly, step_epochs 0 was taken as 1, a negative lr
    # used as given, and a min_lr above lr made the cosine rise (4.88 at the end from 0.1)
    with pytest.raises(ValueError, match=r"^step_epochs must be an integer >= 1; got 0.$"):
        Schedule(0.1, "step", step_epochs=0)
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0; got -1.0.$"):
        Schedule(-1.0)
    with pytest.raises(ValueError, match=r"^min_lr \(5\) must not exceed lr \(0.1\)"):
        Schedule(0.1, "cosine", min_lr=5.0, total_iters=10)
    with pytest.raises(ValueError, match=r"^warmup_iters must be an integer >= 0; got -2.$"):
        Schedule(0.1, warmup_iters=-2)


# --------------------------------------------------------------------------- fused momentum
def _twin_models(seed=0, **kw):
    from mlplab import MLP

    return (MLP(6, [5, 4], 3, seed=seed, dtype=np.float64, **kw),
            MLP(6, [5, 4], 3, seed=seed, dtype=np.float64, **kw))


@pytest.mark.parametrize("batchnorm", [False, True])
def test_fused_momentum_is_the_plain_update(batchnorm, rng):
    """Inside ``Momentum.fused`` the backward pass accumulates ``v = mu v + g`` itself; the
    parameters must follow the written-out update, L2 and biases included, and batch norm's
    parameters (not fused) alike."""
    fused_model, plain_model = _twin_models(batchnorm=batchnorm)
    fused_opt = make_optimizer("momentum", 0.05, momentum=0.8)
    plain_opt = make_optimizer("momentum", 0.05, momentum=0.8)
    batches = [(rng.randn(8, 6), rng.randint(0, 3, 8)) for _ in range(6)]
    with fused_opt.fused(fused_model):
        for X, y in batches:
            fused_opt.step(fused_model.params, fused_model._loss_and_grads(X, y, 1e-2)[1])
    for X, y in batches:
        plain_opt.step(plain_model.params, plain_model._loss_and_grads(X, y, 1e-2)[1])
    for name, p in plain_model.params.items():
        np.testing.assert_allclose(fused_model.params[name], p, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(fused_opt.state[name]["v"], plain_opt.state[name]["v"],
                                   rtol=1e-12, atol=1e-14)


def test_fused_block_gives_the_layers_their_gradient_buffers_back(rng):
    model, twin = _twin_models()
    own = {name: g for name, g in model.grads.items()}
    opt = make_optimizer("momentum", 0.1)
    X, y = rng.randn(8, 6), rng.randint(0, 3, 8)
    with opt.fused(model):
        assert all(model.grads[k] is opt.state[k]["v"] for k in model.grads)
        opt.step(model.params, model._loss_and_grads(X, y, 0.0)[1])
        # a copy taken meanwhile (pickled by a user's callback) is a plain model
        clone = pickle.loads(pickle.dumps(model))
        assert all(a.grad_decay == 0 for a in clone.affines)
    assert all(model.grads[k] is own[k] for k in own)
    assert all(a.grad_decay == 0 for a in model.affines)
    # and the next backward pass is a plain gradient again (the twin, moved to the same place)
    twin.load_state_dict(model.state_dict())
    _, grads = model.loss(X, y, reg=0.1)
    _, expected = twin.loss(X, y, reg=0.1)
    for k in expected:
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-12)


def test_only_heavy_ball_momentum_fuses(rng):
    model, _ = _twin_models()
    for name in ("sgd", "nesterov", "adam"):
        with make_optimizer(name, 0.1).fused(model):
            assert all(a.grad_decay == 0 for a in model.affines), name


def test_trainer_trains_with_momentum_fused():
    from mlplab import MLP
    from mlplab.trainer import Callback, Trainer

    seen = []

    class Spy(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            seen.append([a.grad_decay for a in trainer.model.affines])

    model = MLP(6, [5], 3, seed=0)
    X = np.random.RandomState(0).randn(40, 6).astype(np.float32)
    y = np.arange(40) % 3
    Trainer(optimizer="momentum", momentum=0.7, lr=0.1, epochs=1, batch_size=10,
            callbacks=[Spy()]).fit(model, X, y)
    assert seen and all(d == [0.7, 0.7] for d in seen)
    assert all(a.grad_decay == 0 for a in model.affines)


def test_step_inside_the_block_refuses_copies_of_the_gradients(rng):
    model, _ = _twin_models()
    opt = make_optimizer("momentum", 0.1)
    X, y = rng.randn(8, 6), rng.randint(0, 3, 8)
    before = model.state_dict()
    with opt.fused(model):
        _, grads = model.loss(X, y)  # copies: the public API never hands out live buffers
        with pytest.raises(RuntimeError, match="copies"):
            opt.step(model.params, grads)
    for name, p in model.params.items():  # refused before any parameter moved
        np.testing.assert_array_equal(p, before[name])


def test_a_model_with_its_own_training_step_is_not_fused(rng):
    from mlplab import MLP

    class Clipped(MLP):  # changes the gradients it returns: a velocity would not see that
        def _loss_and_grads(self, X, y, reg):
            loss, grads = super()._loss_and_grads(X, y, reg)
            return loss, {k: np.clip(g, -0.05, 0.05) for k, g in grads.items()}

    model = Clipped(6, [5], 3, seed=0, dtype=np.float64)
    opt = make_optimizer("momentum", 0.1)
    with opt.fused(model):
        assert all(a.grad_decay == 0 for a in model.affines)
        opt.step(model.params, model._loss_and_grads(rng.randn(8, 6), rng.randint(0, 3, 8),
                                                     0.0)[1])


@pytest.mark.usefixtures("registries")
@pytest.mark.parametrize("reg", [0.0, 0.01])
def test_a_momentum_with_its_own_step_is_not_fused(rng, reg):
    """A subclass whose step() changes the gradients (clips them) was fused by Trainer.fit: it
    was handed the velocities, clipped those, and trained another rule without a word (weights
    0.17 off after 12 steps). It is trained as its step says, as outside the trainer."""
    from mlplab import MLP
    from mlplab.trainer import Trainer

    class ClippedMomentum(Momentum):
        name = "clipped_momentum"

        def step(self, params, grads):
            for g in grads.values():
                norm = np.linalg.norm(g)
                if norm > 0.1:
                    g *= 0.1 / norm
            super().step(params, grads)

    X, y = rng.randn(80, 6), rng.randint(0, 3, 80)
    trained = MLP(6, [8], 3, seed=0, dtype=np.float64)
    expected = MLP(6, [8], 3, seed=0, dtype=np.float64)
    register_optimizer(ClippedMomentum)  # (the registries fixture unregisters it)
    Trainer(optimizer="clipped_momentum", lr=0.1, reg=reg, epochs=3, batch_size=20, seed=1,
            schedule="constant").fit(trained, X, y)
    opt, order = ClippedMomentum(0.1), np.random.RandomState(1)  # the trainer's batches
    for _ in range(3):
        rows = order.permutation(80)
        for start in range(0, 80, 20):
            batch = rows[start:start + 20]
            opt.step(expected.params, expected._loss_and_grads(X[batch], y[batch], reg)[1])
    for name, p in expected.params.items():
        np.testing.assert_allclose(trained.params[name], p, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("folded", [False, True])
def test_a_momentum_change_inside_the_block_reaches_the_backward_pass(rng, folded):
    """A ramp of the momentum between steps (a callback's) reaches the fused backward pass; with
    L2 folded too (``fused(model, reg)``) it reaches each folded weight's decay ``mu q``, which a
    block without ``reg`` never exercised."""
    fused_model, plain_model = _twin_models()
    fused_opt, plain_opt = make_optimizer("momentum", 0.05), make_optimizer("momentum", 0.05)
    batches = [(rng.randn(8, 6), rng.randint(0, 3, 8)) for _ in range(6)]
    ramp = [0.5, 0.6, 0.8, 0.9, 0.95, 0.99]
    with fused_opt.fused(fused_model, 1e-2 if folded else 0.0):
        for mu, (X, y) in zip(ramp, batches):
            fused_opt.momentum = mu  # as a callback would, between steps
            assert all(a.grad_decay == mu for a in fused_model.affines)
            fused_opt.step(fused_model.params, fused_model._loss_and_grads(X, y, 1e-2)[1])
    for mu, (X, y) in zip(ramp, batches):
        plain_opt.momentum = mu
        plain_opt.step(plain_model.params, plain_model._loss_and_grads(X, y, 1e-2)[1])
    for name, p in plain_model.params.items():
        np.testing.assert_allclose(fused_model.params[name], p, rtol=1e-12, atol=1e-14)


def _batches(rng, steps):
    return [(rng.randn(8, 6), rng.randint(0, 3, 8)) for _ in range(steps)]


def _plain_and_folded_runs(rng, lr, reg, steps, mu=0.9, between=None, batches=None):
    """The same steps with L2 folded into the layers' scales (Momentum.fused with reg) and
    written out plainly; ``between(opt, model, step)`` runs inside the block between steps."""
    fused_model, plain_model = _twin_models()
    fused_opt = make_optimizer("momentum", lr, momentum=mu)
    plain_opt = make_optimizer("momentum", lr, momentum=mu)
    batches = _batches(rng, steps) if batches is None else batches
    fused_losses, plain_losses = [], []
    with fused_opt.fused(fused_model, reg):
        for i, (X, y) in enumerate(batches):
            loss, grads = fused_model._loss_and_grads(X, y, reg)
            fused_losses.append(loss)
            fused_opt.step(fused_model.params, grads)
            if between is not None:
                between(fused_opt, fused_model, i)
    for X, y in batches:
        loss, grads = plain_model._loss_and_grads(X, y, reg)
        plain_losses.append(loss)
        plain_opt.step(plain_model.params, grads)
    np.testing.assert_allclose(fused_losses, plain_losses, rtol=1e-12)
    for name, p in plain_model.params.items():
        np.testing.assert_allclose(fused_model.params[name], p, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(fused_opt.state[name]["v"], plain_opt.state[name]["v"],
                                   rtol=1e-11, atol=1e-13)
    assert all(a.scale == 1 and not a.l2_by_optimizer and a.weight_grad_decay is None
               for a in fused_model.affines)
    return fused_opt, fused_model


def test_folded_l2_follows_the_plain_update_and_its_loss(rng):
    """Inside ``Momentum.fused(model, reg)`` the L2 term lives in each affine layer's scale;
    the losses (penalty included), weights and velocities are the written-out update's."""
    scales = []
    _plain_and_folded_runs(rng, 0.05, 1e-2, 12,
                           between=lambda opt, m, i: scales.append(m.affines[0].scale))
    assert all(s < 1 for s in scales) and scales == sorted(scales, reverse=True)


def test_folded_l2_unfolds_when_the_scale_would_drift_too_far(rng):
    """With a strong penalty the scale leaves ``SCALE_RANGE`` within a few steps (and with
    ``lr * 2 reg >= 0.5`` at once): the step then folds it back into the weights, exactly."""
    for lr, reg in [(0.2, 0.3), (0.5, 1.0)]:
        scales = []
        _plain_and_folded_runs(rng, lr, reg, 15,
                               between=lambda opt, m, i, seen=scales: seen.append(
                                   m.affines[0].scale))
        assert 1.0 in scales, (lr, reg)  # it did unfold
        low, high = Momentum.SCALE_RANGE
        assert all(low <= s <= high for s in scales)


def test_state_dict_inside_the_block_reads_without_settling_and_reloads_exactly(rng):
    """``state_dict`` inside the block gives the true weights and velocities and the folded form
    beside them, without changing the run; reloading it goes on bit for bit."""
    seen = {}

    def checkpoint(opt, model, i):
        if i == 3:
            stored = {k: v.copy() for k, v in model.params.items()}
            scales = [a.scale for a in model.affines]
            state = opt.state_dict()
            seen["params"], seen["state"] = model.state_dict(), state
            assert min(scales) < 1 and [a.scale for a in model.affines] == scales
            for name, p in model.params.items():  # reading changed nothing
                np.testing.assert_array_equal(p, stored[name])
            opt.load_state_dict(state)  # settles, then continues from the saved folded form

    batches = _batches(rng, 8)
    _plain_and_folded_runs(rng, 0.05, 1e-2, 8, between=checkpoint, batches=batches)
    _, plain = _twin_models()  # the first four steps, written out
    plain_opt = make_optimizer("momentum", 0.05)
    for X, y in batches[:4]:
        plain_opt.step(plain.params, plain._loss_and_grads(X, y, 1e-2)[1])
    for name, p in plain.params.items():
        np.testing.assert_allclose(seen["params"][name], p, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(seen["state"][f"{name}/v"], plain_opt.state[name]["v"],
                                   rtol=1e-11, atol=1e-13)


def test_a_block_left_mid_run_resumes_bit_for_bit_from_its_state_dict(rng):
    """A block left between epochs (Ctrl-C) settles the model, but ``state_dict`` keeps the
    folded form too, and a block entered after ``load_state_dict`` continues from it exactly;
    a folded form that does not belong to the loaded weights is ignored (settled, not wrong)."""
    reg, batches = 1e-2, _batches(rng, 8)

    def steps(opt, model, part):
        with opt.fused(model, reg):
            for X, y in part:
                opt.step(model.params, model._loss_and_grads(X, y, reg)[1])

    whole, stopped = _twin_models()
    steps(make_optimizer("momentum", 0.05), whole, batches)
    opt = make_optimizer("momentum", 0.05)
    steps(opt, stopped, batches[:3])
    params, state = stopped.state_dict(), opt.state_dict()
    assert {"W1/fold", "W1/folded_W", "W1/folded_v"} <= set(state)
    for tamper in (False, True):
        resumed, _ = _twin_models()
        resumed.load_state_dict(params)
        opt = make_optimizer("momentum", 0.05)
        opt.load_state_dict({**state, "W1/folded_W": state["W1/folded_W"] * 1.5} if tamper
                            else state)
        if tamper:
            with pytest.warns(RuntimeWarning, match="does not belong to these weights"):
                steps(opt, resumed, batches[3:])
        else:
            steps(opt, resumed, batches[3:])
        for name, p in whole.params.items():
            if tamper:
                np.testing.assert_allclose(resumed.params[name], p, rtol=1e-10, atol=1e-13)
            else:
                np.testing.assert_array_equal(resumed.params[name], p)


def test_folded_l2_settles_an_outer_block_that_an_inner_one_enters(rng):
    fused_model, plain_model = _twin_models()
    outer, inner = make_optimizer("momentum", 0.05), make_optimizer("momentum", 0.02,
                                                                     momentum=0.5)
    p_outer, p_inner = make_optimizer("momentum", 0.05), make_optimizer("momentum", 0.02,
                                                                         momentum=0.5)
    reg = 1e-2
    batches = [(rng.randn(8, 6), rng.randint(0, 3, 8)) for _ in range(5)]
    with outer.fused(fused_model, reg):
        for X, y in batches[:2]:
            outer.step(fused_model.params, fused_model._loss_and_grads(X, y, reg)[1])
        with inner.fused(fused_model, reg):
            assert all(a.folded_by is inner for a in fused_model.affines)
            X, y = batches[2]
            inner.step(fused_model.params, fused_model._loss_and_grads(X, y, reg)[1])
        assert all(a.folded_by is outer and a.scale == 1 for a in fused_model.affines)
        for X, y in batches[3:]:
            outer.step(fused_model.params, fused_model._loss_and_grads(X, y, reg)[1])
    for opt, (X, y) in zip([p_outer, p_outer, p_inner, p_outer, p_outer], batches):
        opt.step(plain_model.params, plain_model._loss_and_grads(X, y, reg)[1])
    for name, p in plain_model.params.items():
        np.testing.assert_allclose(fused_model.params[name], p, rtol=1e-11, atol=1e-13)
    assert all(a.folded_by is None for a in fused_model.affines)


@pytest.mark.parametrize("inner_reg, loss_reg, other", [
    (0.3, None, False),  # the same optimiser again, with another penalty inside
    (0.0, 1e-2, False),  # an inner block that does not fold, while the loss keeps its L2
    (0.0, 1e-2, True),   # another optimiser, another momentum, not folding
    (0.0, 0.0, True),
])
def test_an_inner_block_that_folds_otherwise_leaves_the_outer_one_exact(rng, inner_reg,
                                                                        loss_reg, other):
    """Whatever an inner block binds (its own penalty, no folding, its own momentum), it
    computes its own steps exactly and hands the outer block back its folding intact."""
    fused_model, plain_model = _twin_models()
    outer = make_optimizer("momentum", 0.05)
    inner = make_optimizer("momentum", 0.02, momentum=0.5) if other else outer
    p_outer = make_optimizer("momentum", 0.05)
    p_inner = make_optimizer("momentum", 0.02, momentum=0.5) if other else p_outer
    reg = 1e-2
    inner_loss_reg = inner_reg if loss_reg is None else loss_reg
    plan = [(outer, p_outer, reg)] * 2 + [(inner, p_inner, inner_loss_reg)] * 2 + \
        [(outer, p_outer, reg)] * 2
    batches = _batches(rng, len(plan))
    with outer.fused(fused_model, reg):
        for i, ((opt, _, r), (X, y)) in enumerate(zip(plan, batches)):
            if i == 2:
                block = inner.fused(fused_model, inner_reg)
                block.__enter__()
            opt.step(fused_model.params, fused_model._loss_and_grads(X, y, r)[1])
            if i == 3:
                block.__exit__(None, None, None)
                assert all(a.folded_by is outer and a.l2_by_optimizer
                           for a in fused_model.affines)
    for (_, opt, r), (X, y) in zip(plan, batches):
        opt.step(plain_model.params, plain_model._loss_and_grads(X, y, r)[1])
    for name, p in plain_model.params.items():
        np.testing.assert_allclose(fused_model.params[name], p, rtol=1e-11, atol=1e-13)
    assert all(a.folded_by is None and a.weight_grad_decay is None for a in fused_model.affines)


def test_a_copy_taken_while_l2_is_folded_holds_the_weights_in_use(rng):
    """Pickling or deep-copying the model inside the block (a user's callback) gives a plain
    model with the weights in use: scale 1, nothing of the training run."""
    import copy

    model, _ = _twin_models()
    opt = make_optimizer("momentum", 0.1)
    X, y = rng.randn(8, 6), rng.randint(0, 3, 8)
    with opt.fused(model, 0.05):
        for _ in range(3):
            opt.step(model.params, model._loss_and_grads(X, y, 0.05)[1])
        assert min(a.scale for a in model.affines) < 1
        expected = model.predict_proba(X).copy()
        for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
            assert all(a.scale == 1 and a.folded_by is None and not a.l2_by_optimizer
                       for a in clone.affines)
            np.testing.assert_allclose(clone.predict_proba(X), expected, rtol=1e-12)
            for name, p in model.state_dict().items():
                np.testing.assert_array_equal(clone.params[name], p)


def test_hooks_read_the_true_weights_while_l2_is_folded():
    """In ``on_iteration_end`` the L2 term sits in the layers' scales: ``model.state_dict()``
    gives the weights in use (those of an unfused run), and a hook changes nothing about the
    run; ``on_epoch_end`` sees it settled."""
    from mlplab import MLP
    from mlplab.trainer import Callback, Trainer

    class Plain(MLP):  # its own training step: Momentum.fused leaves it alone
        def _loss_and_grads(self, X, y, reg):
            return super()._loss_and_grads(X, y, reg)

    class Spy(Callback):
        def __init__(self):
            self.weights, self.scales, self.epoch_scales = [], [], []

        def on_iteration_end(self, trainer, iteration, loss):
            self.weights.append(trainer.model.state_dict())
            self.scales.append(trainer.model.affines[0].scale)

        def on_epoch_end(self, trainer, epoch, logs):
            self.epoch_scales.append([a.scale for a in trainer.model.affines])

    X = np.random.RandomState(0).randn(40, 6)
    y = np.arange(40) % 3
    runs = []
    for cls, callbacks in [(MLP, [Spy()]), (Plain, [Spy()]), (MLP, [])]:
        model = cls(6, [5], 3, seed=0, dtype=np.float64)
        history = Trainer(optimizer="momentum", lr=0.1, reg=1e-2, epochs=2, batch_size=10,
                          schedule="constant", callbacks=callbacks).fit(model, X, y)
        runs.append((model, history, callbacks))
    (folded, h1, [spy]), (plain, h2, [plain_spy]), (quiet, h3, _) = runs
    assert min(spy.scales) < 1 and spy.epoch_scales == [[1.0, 1.0]] * 2
    assert plain_spy.scales == [1.0] * 8
    for seen, expected in zip(spy.weights, plain_spy.weights):
        for name in expected:
            np.testing.assert_allclose(seen[name], expected[name], rtol=1e-11, atol=1e-13)
    assert h1.loss == h3.loss  # watching does not change the run, to the last bit
    for name, p in quiet.params.items():
        np.testing.assert_array_equal(folded.params[name], p)


def test_nested_blocks_unwind_to_the_outer_binding(rng):
    model, _ = _twin_models()
    outer, inner = make_optimizer("momentum", 0.1, momentum=0.9), make_optimizer("momentum", 0.1)
    with outer.fused(model):
        with inner.fused(model):
            assert all(model.grads[k] is inner.state[k]["v"] for k in model.grads)
        with outer.fused(model):  # the same optimiser again
            pass
        assert all(model.grads[k] is outer.state[k]["v"] for k in model.grads)
        assert all(a.grad_decay == 0.9 for a in model.affines)
        outer.step(model.params, model._loss_and_grads(rng.randn(8, 6),
                                                       rng.randint(0, 3, 8), 0.0)[1])
    assert all(a.grad_decay == 0 for a in model.affines)


def test_loading_state_inside_the_block_keeps_the_layers_on_it(rng):
    model, _ = _twin_models()
    opt = make_optimizer("momentum", 0.1)
    with opt.fused(model):
        opt.load_state_dict({f"{k}/v": np.ones_like(p) for k, p in model.params.items()})
        assert all(model.grads[k] is opt.state[k]["v"] for k in model.grads)


def test_without_numpys_blas_momentum_does_not_fuse(scipy_blas):
    model, _ = _twin_models()
    with make_optimizer("momentum", 0.1).fused(model):
        assert all(a.grad_decay == 0 for a in model.affines)


def test_subnormal_weights_and_slots_are_set_to_zero_at_each_epoch_end():
    """Adam with L2 drives the weights of always-zero inputs into the subnormal range, where each
    operation on them runs in microcode (docs/benchmarks.md): the trainer sets them to 0 once per
    epoch. Planted after an epoch's last step, they are 0 when the epoch ends, and every other
    entry is what the same run without them holds there."""
    from mlplab import MLP
    from mlplab.trainer import Callback, Trainer

    tiny = np.float32(1e-40)
    assert 0 < tiny < np.finfo(np.float32).tiny
    planted = [("W1", "param", (0, 1)), ("b1", "param", (2,)), ("W2", "m", (1, 0)),
               ("W1", "v", (3, 3))]

    class Plant(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if iteration == 4:  # the first epoch's last step
                for name, where, idx in planted:
                    arr = (trainer.model.params[name] if where == "param"
                           else trainer.optimizer.state[name][where])
                    arr[idx] = tiny

    class Snapshot(Callback):
        def __init__(self):
            self.params, self.slots = {}, {}

        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                self.params = {k: v.copy() for k, v in trainer.model.params.items()}
                self.slots = {(k, s): a.copy() for k, by in trainer.optimizer.state.items()
                              for s, a in by.items()}

    X = np.random.RandomState(0).randn(40, 6).astype(np.float32)
    y = np.arange(40) % 3
    runs = []
    for extra in ([], [Plant()]):
        snap = Snapshot()
        Trainer(optimizer="adam", lr=0.01, reg=1e-3, epochs=2, batch_size=10,
                callbacks=[*extra, snap]).fit(MLP(6, [5], 3, seed=0), X, y)
        runs.append(snap)
    plain, flushed = runs
    for name, where, idx in planted:
        got = flushed.params[name] if where == "param" else flushed.slots[(name, where)]
        assert got[idx] == 0
        want = plain.params[name] if where == "param" else plain.slots[(name, where)]
        assert want[idx] != 0  # the plain run's entry there: a normal number, now 0
        got[idx] = want[idx]
    for name in plain.params:
        np.testing.assert_array_equal(flushed.params[name], plain.params[name])
    for key in plain.slots:
        np.testing.assert_array_equal(flushed.slots[key], plain.slots[key])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_names_a_parameter_whose_gradient_is_missing_or_misshapen(name, rng):
    """A missing gradient was a bare KeyError: 'W' (after the parameters before it had moved),
    and one of another shape a broadcast error, or, where it broadcasts (a bias's gradient for a
    weight matrix), a silent update of every row with it."""
    params = {"b": np.zeros(3), "W": rng.standard_normal((4, 3))}
    before = {k: v.copy() for k, v in params.items()}
    opt = make_optimizer(name, 0.1)
    with pytest.raises(ValueError, match=r"^step\(params, grads\): parameter 'W' has shape "
                                         r"\(4, 3\) but its gradient grads\['W'\] is none; "):
        opt.step(params, {"b": np.ones(3)})
    for bad, shown in ((np.ones(3), r"shape \(3,\)"), (np.ones((3, 4)), r"shape \(3, 4\)"),
                       ([[1.0] * 3] * 4, "a list")):
        with pytest.raises(ValueError, match=rf"parameter 'W' has shape \(4, 3\) but its "
                                             rf"gradient grads\['W'\] is {shown}; give"):
            opt.step(params, {"b": np.ones(3), "W": bad})
    # refused before anything moved: no parameter, state or step count changed
    assert all(np.array_equal(params[k], before[k]) for k in params)
    assert opt.t == 0 and not opt.state
    opt.step(params, {"b": np.ones(3), "W": np.ones((4, 3))})
    assert opt.t == 1 and not np.array_equal(params["W"], before["W"])
