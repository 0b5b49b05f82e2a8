"""Extending mlplab: the worked example of docs/architecture.md ("Writing your own layer") run as
it stands, ``check_layer``, and the three ways in: ``register_activation``,
``register_optimizer`` and ``Trainer(lr_schedule=...)``."""

import functools
import re
from pathlib import Path

import numpy as np
import pytest

from mlplab import MLP, models, optim
from mlplab.gradcheck import check_layer, eval_numerical_gradient_array, rel_error
from mlplab.layers import (
    Affine,
    BatchNorm,
    Dropout,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from mlplab.models import register_activation
from mlplab.optim import SGD, Optimizer, register_optimizer
from mlplab.trainer import Callback, Trainer

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


#: every test leaves the activation and optimiser registries as it found them (conftest.py)
pytestmark = pytest.mark.usefixtures("registries")


def _documented_example() -> str:
    section = DOC.read_text().split("## Writing your own layer", 1)[1]
    return re.search(r"^```python\n(.*?)^```", section, re.M | re.S).group(1)


@pytest.fixture
def example(tmp_path, capsys):
    """The namespace the documented example leaves, its model file in ``tmp_path``."""
    source = _documented_example()
    assert source.count('"/tmp/elu-net.npz"') == 2
    source = source.replace('"/tmp/elu-net.npz"', repr(str(tmp_path / "elu-net.npz")))
    namespace = {"__name__": "docs_example"}
    exec(compile(source, str(DOC), "exec"), namespace)
    namespace["printed"] = capsys.readouterr().out
    return namespace


def test_the_documented_example_runs_and_its_layer_is_right(example):
    ELU = example["ELU"]
    rng = np.random.RandomState(3)
    x = rng.randn(7, 4)
    x[np.abs(x) < 1e-3] = 0.5  # off the kink
    errors = check_layer(ELU(alpha=0.7), x)
    assert set(errors) == {"x"} and errors["x"] < 1e-7
    np.testing.assert_allclose(ELU(0.7).forward(x.copy()), np.where(x > 0, x, 0.7 * np.expm1(x)))
    x32 = x.astype(np.float32)
    layer = ELU()
    assert layer.forward(x32).dtype == np.float32
    assert layer.backward(np.ones_like(x32)).dtype == np.float32
    # what it printed: the layer's and the network's checks passed, training learnt
    assert "elu" in models.ACTIVATIONS and "rmsprop" in optim.OPTIMIZERS
    assert example["net"].layers[1].__class__ is ELU
    history, model = example["history"], example["model"]
    assert history.val_acc[-1] > 0.6
    assert history.lr == [example["one_cycle"](8 * e - 1, e - 1) for e in range(1, 16)]
    assert isinstance(example["trainer"].optimizer, example["RMSProp"])
    assert set(example["trainer"].optimizer.state["W1"]) == {"s"}
    assert np.array_equal(example["loaded"].predict_proba(example["X"]),
                          model.predict_proba(example["X"]))


def test_the_documented_checks_pass(example):
    from mlplab.gradcheck import check_model

    errors = check_model(example["net"], example["X"][:20], example["y"][:20], reg=0.1,
                         metric="norm")
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("make", [ReLU, lambda: LeakyReLU(0.1), Tanh, Sigmoid,
                                  lambda: Dropout(0.3, seed=0),
                                  lambda: BatchNorm(5, dtype=np.float64),
                                  lambda: Affine(np.random.RandomState(1).randn(5, 3),
                                                 np.random.RandomState(2).randn(3))])
def test_check_layer_passes_every_built_in_layer_and_leaves_x_alone(make, rng):
    x = 2 * rng.randn(6, 5) + 1
    x[np.abs(x) < 1e-3] = 0.5
    before = x.copy()
    layer = make()
    errors = check_layer(layer, x, metric="norm")
    assert set(errors) == {"x", *layer.params}
    assert max(errors.values()) < 1e-7, errors
    np.testing.assert_array_equal(x, before)
    if isinstance(layer, Dropout):
        assert not layer.frozen


def test_check_layer_refuses_an_input_that_is_not_finite(rng):
    """A NaN or infinite x made every error nan, which reads as the layer's failure; the check
    now refuses the input, saying where the first such value is."""
    x = rng.randn(4, 3)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^x contains NaN or infinite values \(first at index "
                                         r"\(2, 1\)\); a gradient check needs finite inputs"):
        check_layer(ReLU(), x)


def test_the_plain_recipe_fails_in_place_layers_which_is_why_check_layer_copies(rng):
    # the pitfall the docs describe: ReLU overwrites its input, so f(x) changes x itself
    x, dout = rng.randn(5, 7), rng.randn(5, 7)
    relu = ReLU()
    relu.forward(x.copy())
    dx = relu.backward(dout.copy())
    assert rel_error(dx, eval_numerical_gradient_array(relu.forward, x, dout)) > 0.5
    assert check_layer(ReLU(), rng.randn(5, 7), dout)["x"] < 1e-8


def test_check_layer_refuses_float32_parameters(rng):
    # BatchNorm's default dtype is float32: its correct gamma gradient checked at ~7e-4
    with pytest.raises(ValueError, match="gradient checks need float64 parameters; gamma, beta"):
        check_layer(BatchNorm(5), rng.randn(6, 5))
    with pytest.raises(ValueError, match=r"gamma, beta of this BatchNorm are float32 \(build "
                                         r"the layer in float64: BatchNorm\(\.\.\., "
                                         r"dtype=np\.float64\)\)"):
        check_layer(BatchNorm(5), rng.randn(6, 5))
    # a layer without a dtype argument: its arrays, not "BatchNorm(dim, dtype=np.float64)"
    with pytest.raises(ValueError, match=r"W of this Affine is float32 \(build the layer in "
                                         r"float64: give Affine float64 arrays, e\.g\. "
                                         r"W\.astype\(np\.float64\)\)"):
        check_layer(Affine(rng.randn(5, 3).astype(np.float32), None), rng.randn(6, 5))


def test_check_layer_leaves_the_layers_state_as_it_was(rng):
    """The check's many training-mode forwards moved batch norm's running statistics and a
    dropout layer's generator; they are put back, as check_model does for a model."""
    bn = BatchNorm(4, dtype=np.float64)
    bn.running_mean[:], bn.running_var[:] = rng.randn(4), rng.rand(4) + 0.5
    mean, var, mean_array = bn.running_mean.copy(), bn.running_var.copy(), bn.running_mean
    assert max(check_layer(bn, rng.randn(6, 4)).values()) < 1e-7
    np.testing.assert_array_equal(bn.running_mean, mean)
    np.testing.assert_array_equal(bn.running_var, var)
    assert bn.running_mean is mean_array  # restored in place, for a model holding it
    drop, twin = Dropout(0.5, seed=3), Dropout(0.5, seed=3)
    x = rng.randn(5, 4)
    check_layer(drop, x)
    np.testing.assert_array_equal(drop.forward(x.copy(), True), twin.forward(x.copy(), True))


def test_check_layer_refuses_a_dout_of_the_wrong_shape(rng):
    with pytest.raises(ValueError, match="dout has shape"):
        check_layer(Tanh(), rng.randn(3, 4), np.ones((4, 3)))


def test_check_layer_finds_a_wrong_backward(rng):
    class Square(Layer):
        def forward(self, x, train=True):
            self._x = x.copy()
            return x * x

        def backward(self, dout):
            return dout * self._x  # the 2 is missing

    assert check_layer(Square(), rng.randn(4, 3))["x"] > 0.1


class _Linear(Layer):
    """``out = x @ W`` whose backward is broken as ``mistake`` says (None: it is right)."""

    def __init__(self, W, mistake=None):
        super().__init__()
        self.params["W"], self.mistake = W, mistake
        if mistake != "no grads":
            self.grads["W"] = np.zeros_like(W)

    def forward(self, x, train=True):
        self._x = x.copy()
        return x @ self.params["W"]

    def backward(self, dout):
        if self.mistake == "column dW":  # the derivation's W (H, D): dW = dout^T x
            self.grads["W"] = dout.T @ self._x
        elif self.mistake != "no grads":
            self.grads["W"][...] = self._x.T @ dout
        dx = dout @ self.params["W"].T
        if self.mistake == "no return":
            self.dx = dx
            return None
        return dx.T if self.mistake == "dx transposed" else dx


@pytest.mark.parametrize("mistake, message", [
    ("no return", r"_Linear.backward returned None; it must return dL/dx, an array shaped like "
                  r"x \(4, 3\)\.$"),
    ("dx transposed", r"_Linear.backward returned dL/dx of shape \(3, 4\); x has shape "
                      r"\(4, 3\)"),
    ("no grads", r"_Linear.grads has no 'W': backward must write each parameter's gradient "
                 r"into self.grads"),
    ("column dW", r"_Linear.grads\['W'\] has shape \(5, 3\); params\['W'\] has \(3, 5\), "
                  r"and a gradient must have its parameter's shape \(its transpose"),
])
def test_check_layer_says_what_is_wrong_with_what_backward_hands_back(mistake, message, rng):
    """Mistakes a student makes in a first layer were an error of nan (no return), NumPy's
    broadcasting error (a transposed dx or dW) or a bare KeyError (no grads): each is now named,
    with what the contract asks. The same layer done right passes."""
    W, x = rng.randn(3, 5), rng.randn(4, 3)
    assert max(check_layer(_Linear(W.copy()), x).values()) < 1e-8
    with pytest.raises(ValueError, match=message):
        check_layer(_Linear(W.copy(), mistake), x)


def test_check_layer_explains_the_first_affine_layer_that_skips_dx(rng):
    layer = Affine(rng.randn(3, 4), rng.randn(4), need_dx=False)  # as MLP builds its first layer
    with pytest.raises(ValueError, match="need_dx=False skips dx: check one with need_dx=True"):
        check_layer(layer, rng.randn(2, 3))


@pytest.mark.parametrize("wrong", [False, True])
def test_check_layer_finds_a_wrong_parameter_gradient(wrong, rng):
    """A parameter's error is its gradient against the numerical one: a layer whose dx is right
    but whose dL/dw is not must fail on w alone (every built-in layer's parameter gradients are
    right, so a check that compared the numerical gradient with itself passed them all)."""
    class Scale(Layer):  # out = x * w, per feature
        def __init__(self, w):
            super().__init__()
            self.params["w"] = w
            self.grads["w"] = np.zeros_like(w)

        def forward(self, x, train=True):
            self._x = x.copy()
            return x * self.params["w"]

        def backward(self, dout):
            dw = (dout * self._x).sum(axis=0)  # the derivative written out
            self.grads["w"][...] = -dw if wrong else dw
            return dout * self.params["w"]

    w = rng.randn(3) + 2
    errors = check_layer(Scale(w), rng.randn(4, 3))
    assert errors["x"] < 1e-8
    if wrong:
        assert errors["w"] == pytest.approx(1.0)  # |a - (-a)| / (|a| + |-a|), element-wise
    else:
        assert errors["w"] < 1e-8


def test_a_registered_activation_builds_trains_saves_and_loads(tmp_path, rng):
    from mlplab.io import load_model, save_model

    class Softplus(Layer):
        def forward(self, x, train=True):
            self._x = x.copy()
            return np.logaddexp(0, x)

        def backward(self, dout):
            return dout / (1 + np.exp(-self._x))

    register_activation("softplus", Softplus)
    assert check_layer(Softplus(), rng.randn(4, 5))["x"] < 1e-7
    model = MLP(6, [8, 8], 3, activation="softplus", seed=0)
    assert sum(isinstance(layer, Softplus) for layer in model.layers) == 2
    assert model.config["activation"] == "softplus"
    X, y = rng.randn(90, 6), rng.randint(3, size=90)
    Trainer(optimizer="momentum", lr=0.05, epochs=2, batch_size=30, reg=1e-3).fit(model, X, y)
    save_model(tmp_path / "m.npz", model)
    np.testing.assert_array_equal(load_model(tmp_path / "m.npz").model.predict_proba(X),
                                  model.predict_proba(X))


class PReLU(Layer):
    """A ReLU with a learnt slope per unit for negative inputs: ``out = max(x, 0) + a min(x, 0)``;
    ``dx = dout (x > 0) + a dout (x <= 0)``, ``da = sum_rows(dout min(x, 0))``."""

    def __init__(self, size, dtype):
        super().__init__()
        self.params = {"alpha": np.full(size, 0.25, dtype)}
        self.grads = {"alpha": np.zeros(size, dtype)}

    def forward(self, x, train=True):
        self._neg = np.minimum(x, 0)
        return np.maximum(x, 0) + self.params["alpha"] * self._neg

    def backward(self, dout):
        self.grads["alpha"][...] = (dout * self._neg).sum(axis=0)
        return np.where(self._neg < 0, self.params["alpha"] * dout, dout)


def test_a_sized_activation_has_parameters_that_train_check_save_and_resume(tmp_path, rng):
    """A layer with parameters (here a PReLU) registered with sized=True is built per hidden
    layer in the model's shape and dtype; its parameters are the model's: numerically checked,
    trained, saved, checkpointed and resumed."""
    from mlplab.gradcheck import check_model
    from mlplab.io import load_model, save_model
    from mlplab.runs import resume_run, train_run

    register_activation("my_prelu", PReLU, sized=True)
    model = MLP(6, [8, 5], 3, activation="my_prelu", seed=0, dtype=np.float64)
    assert [k for k in model.params if k.startswith("alpha")] == ["alpha1", "alpha2"]
    assert model.params["alpha1"].shape == (8,) and model.params["alpha2"].shape == (5,)
    assert MLP(6, [8], 3, activation="my_prelu").params["alpha1"].dtype == np.float32
    X, y = rng.randn(90, 6), rng.randint(3, size=90)
    X[np.abs(X) < 1e-2] = 0.5
    errors = check_model(model, X[:15], y[:15], reg=0.1, metric="norm")
    assert set(errors) >= {"alpha1", "alpha2", "W1", "b2"}
    assert max(errors.values()) < 1e-7, errors
    # the L2 term leaves the slopes out (as biases): only the W's enter the penalty
    penalty = 0.1 * sum(float((w ** 2).sum()) for k, w in model.params.items() if k[0] == "W")
    assert model.penalty(0.1) == pytest.approx(penalty)
    before = model.params["alpha1"].copy()
    for optimizer in ("momentum", "adam"):
        Trainer(optimizer=optimizer, lr=0.05, epochs=2, batch_size=30, reg=1e-3,
                seed=0).fit(model, X, y)
    assert not np.allclose(model.params["alpha1"], before)  # the slopes were trained
    save_model(tmp_path / "m.npz", model)
    loaded = load_model(tmp_path / "m.npz").model
    np.testing.assert_array_equal(loaded.params["alpha2"], model.params["alpha2"])
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    # a run stopped after its first epoch resumes to exactly the uninterrupted run's slopes
    options = {"dataset": "digits", "hidden": [16], "activation": "my_prelu", "epochs": 3,
               "batch_size": 100, "optimizer": "momentum", "reg": 1e-3, "val_size": 100}
    full = train_run(options, plots=False)

    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            trainer.stop = epoch == 1

    stopped = train_run(options, out=tmp_path / "run", plots=False,
                        callbacks=[StopAfterFirstEpoch()])
    assert stopped.metrics["epochs"] == 1
    import json

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    metrics["status"] = "interrupted"  # as a Ctrl-C leaves it
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(metrics))
    resumed = resume_run(tmp_path / "run", plots=False)
    np.testing.assert_array_equal(resumed.model.params["alpha1"], full.model.params["alpha1"])
    np.testing.assert_array_equal(resumed.model.params["W1"], full.model.params["W1"])


class _Half(Layer):  # no backward: the base class's raises NotImplementedError
    def forward(self, x, train=True):
        return x * 0.5


class _NoneBack(_Half):
    def backward(self, dout):
        pass


class _Narrowing(_Half):
    def forward(self, x, train=True):
        return x[:, :-1]

    def backward(self, dout):
        return dout


class _Raising(_Half):
    def backward(self, dout):
        return dout @ np.ones((4, 4))


@pytest.mark.parametrize("layer, message", [
    (_Half, r"'probe': _Half does not implement backward\(\); an activation needs forward\(x, "
            r"train\) -> out and backward\(dout\) -> dx \(docs/architecture.md"),
    (_NoneBack, r"'probe': _NoneBack.backward must return dL/dx shaped like the \(4, 3\) batch; "
                r"got NoneType"),
    (_Narrowing, r"'probe': _Narrowing.forward must return out shaped like the \(4, 3\) batch; "
                 r"got shape \(4, 2\)"),
    (_Raising, r"'probe': _Raising.backward failed on a \(4, 3\) float64 batch: ValueError: "
               r"matmul"),
])
def test_register_activation_refuses_a_layer_that_cannot_run(layer, message):
    """A layer without backward, or returning the wrong shape, was registered, and training
    failed later with a bare NotImplementedError or a BLAS shape error naming neither the
    activation nor its plugin; one forward and backward pass at registration names both."""
    with pytest.raises(ValueError, match=message):
        register_activation("probe", layer)
    assert "probe" not in models.ACTIVATIONS


def test_register_activation_refuses_parameters_mlp_could_not_own():
    with pytest.raises(ValueError, match="sized=True"):
        register_activation("my_prelu", lambda: PReLU(4, np.float64))
    with pytest.raises(ValueError, match="'W'"):
        register_activation("affine", lambda size, dtype: Affine(np.ones((size, size), dtype),
                                                                 np.zeros(size, dtype)),
                            sized=True)

    class Numbered(PReLU):
        def __init__(self, size, dtype):
            super().__init__(size, dtype)
            self.params = {"a2": self.params["alpha"]}
            self.grads = {"a2": self.grads["alpha"]}

    with pytest.raises(ValueError, match="'a2'"):
        register_activation("numbered", Numbered, sized=True)

    class AlwaysFloat64(PReLU):
        def __init__(self, size, dtype):
            super().__init__(size, np.float64)

    register_activation("prelu64", AlwaysFloat64, sized=True)
    with pytest.raises(ValueError, match="'alpha' must be a float32 array"):
        MLP(4, [5], 2, activation="prelu64")
    assert "my_prelu" not in models.ACTIVATIONS and "affine" not in models.ACTIVATIONS


def test_a_partial_sets_an_activations_arguments():
    register_activation("leaky_03", functools.partial(LeakyReLU, 0.3))
    assert MLP(4, [5], 2, activation="leaky_03").layers[1].alpha == 0.3


def test_register_activation_refuses_what_mlp_could_not_use():
    with pytest.raises(ValueError, match="already exists"):
        register_activation("relu", Tanh)
    register_activation("relu", Tanh, replace=True)
    assert isinstance(MLP(4, [5], 2).layers[1], Tanh)
    with pytest.raises(ValueError, match="identifier"):
        register_activation("my elu", Tanh)
    with pytest.raises(TypeError, match="Layer"):
        register_activation("identity", lambda: (lambda x: x))
    with pytest.raises(ValueError, match="sized=True"):
        register_activation("affine", lambda: Affine(np.ones((2, 2)), np.zeros(2)))
    with pytest.raises(ValueError, match="softmax_cross_entropy"):
        MLP(4, [5], 2, activation="softmax_cross_entropy")
    assert "affine" not in models.ACTIVATIONS and SoftmaxCrossEntropy


class SignSGD(Optimizer):
    name = "signsgd"

    def _update(self, name, p, g):
        p -= self.lr * np.sign(g)


def test_a_registered_optimizer_trains_and_resumes_by_name(rng):
    X, y = rng.randn(60, 4), rng.randint(3, size=60)
    with pytest.raises(ValueError, match="unknown optimizer 'signsgd'"):
        Trainer(optimizer="signsgd")
    register_optimizer(SignSGD)
    model = MLP(4, [6], 3, seed=0)
    before = model.state_dict()
    trainer = Trainer(optimizer="signsgd", lr=0.01, epochs=1, batch_size=60, seed=0)
    trainer.fit(model, X, y)
    assert isinstance(trainer.optimizer, SignSGD)
    for name, W in model.state_dict().items():  # one step of lr * sign(g): +-0.01 or 0 each
        step = np.abs(W - before[name])
        assert np.all(np.isclose(step, 0.01, atol=1e-6) | (step == 0)), name


def test_register_optimizer_refuses_what_the_trainer_could_not_build():
    with pytest.raises(TypeError, match="Optimizer subclass"):
        register_optimizer(object)
    with pytest.raises(ValueError, match="its own name"):
        register_optimizer(type("Nameless", (SGD,), {"name": "base"}))
    with pytest.raises(TypeError, match="neither"):
        register_optimizer(type("Empty", (Optimizer,), {"name": "empty"}))
    with pytest.raises(ValueError, match="already exists"):
        register_optimizer(type("Mine", (SGD,), {"name": "sgd"}))
    assert optim.OPTIMIZERS["sgd"] is SGD


def _data(rng):
    return rng.randn(90, 6), rng.randint(3, size=90)


def test_an_lr_schedule_sets_every_steps_rate(rng):
    X, y = _data(rng)
    calls, used = [], []

    class Record(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            used.append(trainer.optimizer.lr)

    def schedule(iteration, epoch):
        calls.append((iteration, epoch))
        return 0.1 / (1 + iteration)

    Trainer(lr=1.0, epochs=2, batch_size=30, lr_schedule=schedule, callbacks=[Record()]).fit(
        MLP(6, [8], 3, seed=0), X, y)
    assert calls == [(i, i // 3) for i in range(6)]
    assert used == [0.1 / (1 + i) for i in range(6)]


def test_a_constant_lr_schedule_is_the_constant_schedule(rng):
    X, y = _data(rng)
    a, b = MLP(6, [8], 3, seed=0), MLP(6, [8], 3, seed=0)
    ha = Trainer(optimizer="momentum", lr=0.05, schedule="constant", epochs=3, batch_size=30,
                 reg=1e-3).fit(a, X, y)
    hb = Trainer(optimizer="momentum", lr=7.0, epochs=3, batch_size=30, reg=1e-3,
                 lr_schedule=lambda iteration, epoch: 0.05).fit(b, X, y)
    assert ha.loss == hb.loss and ha.lr == hb.lr
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)


def test_an_lr_schedule_resumes_exactly(rng):
    X, y = _data(rng)

    def schedule(iteration, epoch):
        return 0.05 * 0.5**epoch + 1e-3 * iteration

    def trainer(**kw):
        return Trainer(optimizer="adam", epochs=4, batch_size=30, seed=0, lr_schedule=schedule,
                       **kw)

    full = MLP(6, [8], 3, seed=0)
    trainer().fit(full, X, y)
    snap = {}

    class Stop(Callback):
        def on_epoch_end(self, t, epoch, logs):
            if epoch == 2:
                snap["state"], snap["model"] = t.state_dict(), t.model.state_dict()
                t.stop = True

    trainer(callbacks=[Stop()]).fit(MLP(6, [8], 3, seed=0), X, y)
    again = MLP(6, [8], 3, seed=5)
    again.load_state_dict(snap["model"])
    t = trainer()
    t.resume(snap["state"])
    t.fit(again, X, y)
    for k, v in full.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)


@pytest.mark.parametrize("bad", [float("nan"), -1.0, "0.1", None])
def test_an_lr_schedule_must_return_a_rate(bad, rng):
    X, y = _data(rng)
    with pytest.raises(ValueError, match=r"lr_schedule\(0, 0\) returned"):
        Trainer(epochs=1, batch_size=30, lr_schedule=lambda i, e: bad).fit(
            MLP(6, [8], 3, seed=0), X, y)


def test_an_lr_schedule_must_be_a_function():
    with pytest.raises(TypeError, match="lr_schedule must be a function"):
        Trainer(lr_schedule=0.1)
