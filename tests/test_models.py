"""MLP and TwoLayerNet: gradients of every depth, bad input, float32/float64."""

import json
import re

import numpy as np
import pytest

from mlplab import MLP, TwoLayerNet
from mlplab.gradcheck import check_model, offset_biases


@pytest.mark.parametrize("hidden", [[], [7], [7, 6], [7, 6, 5]])
def test_mlp_gradients_depth_1_to_4(hidden, rng):
    X, y = rng.randn(6, 5), rng.randint(4, size=6)
    model = MLP(5, hidden, 4, init="xavier", seed=1, dtype=np.float64)
    errors = check_model(model, X, y, reg=0.1)
    assert len(errors) == 2 * (len(hidden) + 1)
    assert max(errors.values()) < 1e-6  # element-wise max; rounding alone reaches ~1e-7
    assert max(check_model(model, X, y, reg=0.1, metric="norm").values()) < 1e-8


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "prelu", "tanh", "sigmoid"])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_mlp_gradients_with_layers(activation, batchnorm, rng):
    X, y = rng.randn(8, 5), rng.randint(3, size=8)
    model = MLP(5, [6, 4], 3, init="xavier", seed=2, dtype=np.float64,
                activation=activation, batchnorm=batchnorm, dropout=0.25)
    offset_biases(model, rng)  # off the ReLU kink, where H(0) = 0 but the slope is 1/2
    errors = check_model(model, X, y, reg=0.05, metric="norm")
    assert max(errors.values()) < 1e-7
    if batchnorm:
        assert "b1" not in model.params and "gamma1" in model.params


def test_gradient_check_leaves_the_model_as_it_was(rng):
    # its 2P+1 training-mode passes would move batch-norm statistics and dropout generators
    X, y = rng.randn(10, 4) + 3, rng.randint(3, size=10)
    model = MLP(4, [5], 3, seed=0, dtype=np.float64, batchnorm=True, dropout=0.3)
    before, probs = model.state_dict(), model.predict_proba(X)
    check_model(model, X, y, reg=0.01, metric="norm")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    np.testing.assert_array_equal(model.predict_proba(X), probs)
    dropout = next(layer for layer in model.layers if hasattr(layer, "frozen"))
    assert not dropout.frozen
    fresh = MLP(4, [5], 3, seed=0, dtype=np.float64, batchnorm=True, dropout=0.3)
    np.testing.assert_array_equal(model.loss(X, y)[0], fresh.loss(X, y)[0])  # same next mask
    model.params["W1"][0, 0] = np.nan  # a broken model is checked (NaN errors), not refused
    assert np.isnan(check_model(model, X, y, metric="norm")["W1"])
    assert np.isnan(model.params["W1"][0, 0]) and not dropout.frozen


def test_each_dropout_layer_draws_its_own_masks(rng):
    """Dropout drops every unit independently: with ``seed`` each dropout layer gets its own
    generator (``seed + layer number``), so two hidden layers of the same width do not drop
    the same units in every batch, while the same seed gives the same masks again."""
    from mlplab.layers import Dropout

    X, y = rng.randn(20, 4), rng.randint(3, size=20)

    def masks(seed):
        model = MLP(4, [30, 30], 3, dropout=0.5, seed=seed, dtype=np.float64)
        model.loss(X, y)
        return [layer._mask.copy() for layer in model.layers if isinstance(layer, Dropout)]

    first, second = masks(0)
    assert first.shape == second.shape == (20, 30)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(masks(0)[1], second)


def test_forward_and_backward_are_vectorised():
    """SPEC §1: no Python loop over samples. The Python calls one loss-and-gradient evaluation
    makes are counted: 10 rows and 1,000 rows must make the same calls."""
    import sys

    def calls(n: int) -> int:
        rng = np.random.RandomState(0)
        X, y = rng.randn(n, 6), rng.randint(3, size=n)
        net = MLP(6, [8, 7], 3, dropout=0.2, batchnorm=True, seed=0, dtype=np.float64)
        net.loss(X, y, reg=0.1)  # first calls: imports and buffers of this batch shape
        net.predict_proba(X)
        count = 0

        def profile(frame, event, arg):
            nonlocal count
            count += event in ("call", "c_call")

        sys.setprofile(profile)
        try:
            net.loss(X, y, reg=0.1)
            net.predict_proba(X)
        finally:
            sys.setprofile(None)
        return count

    assert calls(10) == calls(1000) > 0


def test_config_is_json_even_for_numpy_arguments():
    import json

    config = MLP(np.int64(10), [np.int64(8)], 3, seed=np.int64(7), std=np.float32(0.1)).config
    assert json.loads(json.dumps(config))["seed"] == 7


def test_param_names_and_shapes():
    model = MLP(10, [8, 6], 3)
    assert list(model.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert model.params["W1"].shape == (10, 8) and model.params["W3"].shape == (6, 3)
    assert model.params["W1"].dtype == np.float32
    assert model.num_params == 10 * 8 + 8 + 8 * 6 + 6 + 6 * 3 + 3


@pytest.mark.parametrize("init", ["normal", "he", "xavier"])
def test_initial_weights_follow_the_published_scales(init):
    """W_l = scale * randn(fan_in, fan_out), drawn in layer order from RandomState(seed), with
    the scale of each scheme written out: the exercise's std, He et al. (2015) sqrt(2 / fan_in),
    Glorot & Bengio (2010) sqrt(2 / (fan_in + fan_out)); biases zero."""
    sizes, std = [30, 20, 12, 5], 0.3
    model = MLP(30, [20, 12], 5, init=init, std=std, seed=4, dtype=np.float64)
    draws = np.random.RandomState(4)
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        scale = {"normal": std, "he": np.sqrt(2.0 / fan_in),
                 "xavier": np.sqrt(2.0 / (fan_in + fan_out))}[init]
        np.testing.assert_allclose(model.params[f"W{i}"], scale * draws.randn(fan_in, fan_out),
                                   rtol=1e-15)
        assert not model.params[f"b{i}"].any()


def test_loss_without_y_returns_probabilities(rng):
    model = MLP(4, [5], 3, seed=0)
    probs = model.loss(rng.randn(7, 4))
    assert probs.shape == (7, 3)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(rng.randn(7, 4)).shape, (7,))


def test_l2_has_no_half_and_skips_biases(rng):
    model = TwoLayerNet(4, 5, 3, std=1.0, seed=0)
    model.params["b1"][:] = 10.0  # a penalised bias would change the loss
    X, y = rng.randn(3, 4), np.array([0, 1, 2])
    l0, g0 = model.loss(X, y, reg=0.0)
    l1, g1 = model.loss(X, y, reg=0.3)
    W1, W2 = model.params["W1"], model.params["W2"]
    np.testing.assert_allclose(l1 - l0, 0.3 * (np.sum(W1**2) + np.sum(W2**2)))
    np.testing.assert_allclose(g1["W1"] - g0["W1"], 2 * 0.3 * W1)
    np.testing.assert_allclose(g1["b1"], g0["b1"])


def test_returned_gradients_are_copies(rng):
    model = MLP(4, [5], 3, seed=0, dtype=np.float64)
    X, y = rng.randn(6, 4), rng.randint(3, size=6)
    _, g = model.loss(X, y)
    before = g["W1"].copy()
    model.loss(2 * X, y)
    np.testing.assert_array_equal(g["W1"], before)


def test_float32_matches_float64(rng):
    X, y = rng.randn(20, 6), rng.randint(4, size=20)
    m32 = MLP(6, [9], 4, seed=3, dtype=np.float32)
    m64 = MLP(6, [9], 4, seed=3, dtype=np.float64)
    l32, g32 = m32.loss(X, y, reg=0.01)
    l64, g64 = m64.loss(X, y, reg=0.01)
    assert g32["W1"].dtype == np.float32
    np.testing.assert_allclose(l32, l64, rtol=1e-5)
    np.testing.assert_allclose(g32["W1"], g64["W1"], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("X, y, message", [
    (np.zeros((3, 5)), None, "features"),
    (np.zeros((3, 4)), np.array([0, 1, 3]), "out of range"),
    (np.zeros((3, 4)), np.array([0, -1, 1]), "out of range"),
    (np.array([[0.0, np.nan, 0, 0]]), None, "NaN"),
    (np.zeros((2, 2, 4)), None, "2-D"),
    (np.zeros((3, 4)), np.array([0, 1]), "labels"),
    (np.zeros((3, 4)), np.array([0.5, 1, 2]), "integer"),
    (np.zeros((0, 4)), np.zeros(0, int), "no rows"),
    # one sample: a row (1, D), not the column that X.reshape(len(X), -1) would make of it
    (np.zeros(4), None, r"got 1-D shape \(4,\)\. For a single sample use X\.reshape\(1, -1\)\.$"),
    (np.zeros((2, 2, 2, 1)), None, r"Flatten images first, e\.g\. X\.reshape\(len\(X\), -1\)"),
])
def test_bad_input_raises_value_error_naming_the_problem(X, y, message):
    model = MLP(4, [5], 3, seed=0)
    with pytest.raises(ValueError, match=message):
        model.loss(X, y)


@pytest.mark.parametrize("reg", [None, "1e-3", -1.0, np.nan])
def test_a_bad_reg_is_a_value_error(reg):
    X, y = np.zeros((3, 4)), np.array([0, 1, 2])
    with pytest.raises(ValueError, match=f"reg must be a finite number >= 0; got {reg!r}"):
        MLP(4, [5], 3, seed=0).loss(X, y, reg=reg)


def test_an_integer_hidden_size_is_one_hidden_layer():
    # as MLPClassifier(hidden_sizes=100) and train_run(hidden=100) take it; was a TypeError
    one = MLP(4, 5, 3, seed=0)
    listed = MLP(4, [5], 3, seed=0)
    assert one.config == listed.config and one.config["hidden_sizes"] == [5]
    for name, value in listed.params.items():
        np.testing.assert_array_equal(one.params[name], value)


def test_hidden_sizes_from_a_generator_are_the_layers_it_yields():
    # the check's all() used the generator up, and the network silently had no hidden layer
    assert MLP(4, (h for h in [5, 6]), 3, seed=0).config["hidden_sizes"] == [5, 6]


def test_empty_input_predicts_nothing_but_has_no_accuracy():
    model = MLP(4, [5], 3, seed=0)
    assert model.predict(np.zeros((0, 4))).shape == (0,)
    assert model.predict_proba(np.zeros((0, 4))).shape == (0, 3)
    with pytest.raises(ValueError, match="no rows"):
        model.accuracy(np.zeros((0, 4)), np.zeros(0, int))


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden_sizes=[0]), "hidden size"),
    (dict(num_classes=1), "num_classes"),
    (dict(activation="swish"), "activation"),
    (dict(init="orthogonal"), "init"),
    (dict(dtype=np.int32), "dtype"),
])
def test_bad_construction_raises(kwargs, message):
    args = dict(input_size=4, hidden_sizes=[5], num_classes=3) | kwargs
    with pytest.raises(ValueError, match=message):
        MLP(**args)


def test_state_dict_roundtrip_and_validation(rng):
    a = MLP(4, [5], 3, seed=0, batchnorm=True)
    a.loss(rng.randn(8, 4), rng.randint(3, size=8))  # updates running statistics
    b = MLP(4, [5], 3, seed=1, batchnorm=True)
    b.load_state_dict(a.state_dict())
    X = rng.randn(5, 4)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    bad = a.state_dict()
    bad["W1"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict(bad)


@pytest.mark.parametrize("broken,message", [("b2", "shape"), ("running_var1", "NaN")])
def test_a_refused_state_leaves_the_model_as_it_was(broken, message, rng):
    # the arrays before the refused one were copied already: the model was left half loaded
    model = MLP(4, [5], 3, seed=0, batchnorm=True)
    before, X = model.state_dict(), rng.randn(5, 4)
    probs = model.predict_proba(X)
    state = {k: v + 1 for k, v in MLP(4, [5], 3, seed=1, batchnorm=True).state_dict().items()}
    state[broken] = np.zeros(7) if message == "shape" else np.full_like(state[broken], np.nan)
    with pytest.raises(ValueError, match=message):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    np.testing.assert_array_equal(model.predict_proba(X), probs)


def test_a_state_of_another_dtype_is_cast_unless_the_cast_would_change_what_it_says(rng):
    """float64 weights load into a float32 model (rounded: inference); values beyond float32's
    range became infinities and complex arrays lost their imaginary part, each with only NumPy's
    warning, and a model that then predicted NaN."""
    import warnings

    model = MLP(4, [5], 3, seed=0)
    twin = MLP(4, [5], 3, seed=1, dtype=np.float64)
    model.load_state_dict(twin.state_dict())
    np.testing.assert_array_equal(model.params["W1"], twin.params["W1"].astype(np.float32))
    before = model.state_dict()
    for value, message in ((1e39, r"W1 has values beyond float32's range \(\+-3.403e\+38\), "
                                  "which the cast to the model's dtype would make infinite; load "
                                  r"it into a float64 model \(dtype=np.float64\)"),
                           (1 + 1j, r"W1 has dtype complex128; the model takes real numbers"),
                           ("1", r"W1 has dtype <U1; the model takes real numbers")):
        state = twin.state_dict()
        state["W1"] = np.full(state["W1"].shape, value)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # refused, not a NumPy warning beside a cast
            with pytest.raises(ValueError, match=message):
                model.load_state_dict(state)
        for name, array in model.state_dict().items():
            np.testing.assert_array_equal(array, before[name], err_msg=name)
    big = MLP(4, [5], 3, seed=1, dtype=np.float64)
    state = twin.state_dict()
    state["W1"][0, 0] = 1e39
    big.load_state_dict(state)  # float64 holds it
    assert big.params["W1"][0, 0] == 1e39


def test_offset_biases_draws_biases_and_shifts_in_order_and_leaves_the_rest(rng):
    model = MLP(4, [5, 3], 2, batchnorm=True, seed=0, dtype=np.float64)
    before = model.state_dict()
    offset_biases(model, np.random.RandomState(3), scale=0.5)
    draws = np.random.RandomState(3)
    changed = [name for name in model.params if name.startswith("b")]
    assert changed == ["beta1", "beta2", "b3"]  # batch norm's layers have no bias of their own
    for name, value in model.params.items():
        expected = 0.5 * draws.randn(*value.shape) if name in changed else before[name]
        np.testing.assert_array_equal(value, expected, err_msg=name)


def test_an_unknown_gradient_check_metric_is_a_value_error(rng):
    model = MLP(4, [5], 3, seed=0, dtype=np.float64)
    with pytest.raises(ValueError, match="unknown metric 'mean'; choose one of max, norm"):
        check_model(model, rng.randn(3, 4), np.array([0, 1, 2]), metric="mean")


def test_offset_biases_leaves_a_registered_activations_parameters_alone(registries):
    """A registered activation's parameter key may begin with b (its own bias, say): it is not
    one of MLP's biases or shifts and keeps the value its layer gave it."""
    from mlplab import models
    from mlplab.layers import Layer

    class Shifted(Layer):  # out = relu(x) + bias
        def __init__(self, size, dtype):
            super().__init__()
            self.params = {"bias": np.full(size, 0.25, dtype)}
            self.grads = {"bias": np.zeros(size, dtype)}

        def forward(self, x, train=True):
            self._pos = x > 0
            return np.maximum(x, 0) + self.params["bias"]

        def backward(self, dout):
            self.grads["bias"][...] = dout.sum(axis=0)
            return dout * self._pos

    models.register_activation("shifted", Shifted, sized=True)
    model = MLP(4, [5], 2, activation="shifted", seed=0, dtype=np.float64)
    offset_biases(model, np.random.RandomState(3))
    np.testing.assert_array_equal(model.params["bias1"], np.full(5, 0.25))
    assert not np.array_equal(model.params["b1"], np.zeros(5))


def test_repr_names_dropout_and_batch_norm_when_on():
    """Two nets that train differently printed the same: dropout and batch norm were left out."""
    plain = MLP(4, [3], 2)
    assert repr(plain) == ("MLP(input_size=4, hidden_sizes=[3], num_classes=2, "
                           "activation='relu', dtype=float32)")
    assert repr(MLP(4, [3], 2, dropout=0.2, batchnorm=True)) == (
        "MLP(input_size=4, hidden_sizes=[3], num_classes=2, activation='relu', dropout=0.2, "
        "batchnorm=True, dtype=float32)")


def test_predictions_from_several_threads_at_once_are_each_their_own(rng):
    # the layers compute into shared buffers: unguarded, 4 threads predicting with one model got
    # each other's rows (34 wrong results of 200); a thread pool or web server sharing a fitted
    # model does this
    import copy
    import pickle
    import threading

    model = MLP(100, [256, 128], 10, seed=0, activation="prelu", dropout=0.2)
    Xs = [rng.randn(300, 100).astype(np.float32) for _ in range(4)]
    y = rng.randint(10, size=300)
    expected = [(model.predict_proba(X), model.predict(X)) for X in Xs]
    start, wrong = threading.Barrier(len(Xs)), []

    def predict(i: int) -> None:
        start.wait()
        for _ in range(40):
            probs, labels = model.predict_proba(Xs[i]), model.predict(Xs[i])
            model.loss(Xs[i], y, reg=0.1)  # training mode in between (no batch norm to move)
            if not (np.array_equal(probs, expected[i][0])
                    and np.array_equal(labels, expected[i][1])):
                wrong.append(i)

    threads = [threading.Thread(target=predict, args=(i,)) for i in range(len(Xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    # the lock is not state: copies and pickles get one of their own
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert twin._lock is not model._lock
        np.testing.assert_array_equal(twin.predict_proba(Xs[0]), expected[0][0])


def test_scores_that_overflow_float32_are_an_error_not_nan():
    """Inputs near float32's limit (3e38 is in range) made infinite scores: predict_proba gave NaN
    rows, predict and accuracy an arbitrary class (argmax of NaN), loss NaN, each with only
    NumPy's RuntimeWarnings."""
    import warnings

    from mlplab.models import ScoresOverflowError

    model = MLP(4, [8], 3, seed=0)
    X = np.ones((5, 4), np.float32)
    X[3] = 3e38
    y = np.array([0, 1, 2, 0, 1])
    message = (r"^the network's class scores overflowed float32 for row 3 of X \(largest input "
               r"magnitude 3e\+38\), so its probabilities are NaN: standardise the inputs .*, or "
               r"use a float64 model \(dtype=np.float64\)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for call in (model.predict_proba, model.predict, model.loss,
                     lambda X: model.accuracy(X, y), lambda X: model.loss(X, y)):
            with pytest.raises(ScoresOverflowError, match=message):
                call(X)
        assert issubclass(ScoresOverflowError, ValueError)
        wide = MLP(4, [8], 3, seed=0, dtype=np.float64)  # float64 holds these scores
        assert np.isfinite(wide.predict_proba(X)).all() and np.isfinite(wide.loss(X, y)[0])
        np.testing.assert_allclose(model.predict_proba(X[:3]), wide.predict_proba(X[:3]),
                                   rtol=1e-5)


def test_dropout_masks_of_an_unseeded_model_follow_numpys_global_seed():
    """MLP(seed=None) draws its weights from NumPy's global stream; its dropout masks came from
    fresh system entropy, so two runs after np.random.seed(0) gave different losses."""
    from mlplab import Trainer

    rng = np.random.RandomState(0)
    X, y = rng.randn(200, 10), (rng.randn(200) > 0).astype(int)

    def run():
        np.random.seed(0)
        model = MLP(10, [16], 2, dropout=0.5)
        return Trainer(optimizer="adam", epochs=2, seed=0, batch_size=50).fit(model, X, y).loss

    assert run() == run()


def test_a_runs_dtype_may_be_given_as_numpy_gives_it(tmp_path):
    """np.dtype("float64") passed the check (it equals "float64") and failed at config.json's
    write; np.float64 was refused as not "float32 or float64"."""
    from mlplab.runs import build_config, train_run

    for given in (np.dtype("float64"), np.float64, "float64"):
        assert build_config(dtype=given).dtype == "float64"
    res = train_run(epochs=1, dtype=np.dtype("float64"), plots=False, out=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dtype"] == "float64"
    assert res.model.dtype == np.float64
    with pytest.raises(ValueError, match="dtype must be float32 or float64; got 'int32'"):
        build_config(dtype=np.int32)
    with pytest.raises(ValueError, match="dtype must be float32 or float64; got None"):
        build_config(dtype=None)  # (np.dtype(None) is float64)


def test_first_layer_weights_take_a_greyscale_shape_of_two_numbers():
    import matplotlib

    matplotlib.use("Agg")
    from mlplab import plots

    assert plots.weight_tiles(np.ones((64, 3)), (8, 8)).shape == (3, 8, 8, 1)
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W, C\)"):
        plots.weight_tiles(np.ones((64, 3)), (64,))


def test_predictions_of_more_rows_than_one_evaluation_chunk_cover_every_row(rng):
    """Evaluation runs in chunks of ``EVAL_CHUNK`` rows: every row of every chunk, the last rows
    of a full chunk and the rows of a short last one included, gets its own probabilities (a
    hand-written forward pass of the same weights)."""
    from mlplab.models import EVAL_CHUNK

    n = 2 * EVAL_CHUNK + 3
    X = rng.randn(n, 3)
    model = MLP(3, [5], 4, seed=0, dtype=np.float64)
    p = model.params
    scores = np.maximum(X @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    probs = model.predict_proba(X)
    assert probs.shape == (n, 4)
    np.testing.assert_allclose(probs, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(model.predict(X), expected.argmax(axis=1))


def test_an_overflow_beyond_the_first_evaluation_chunk_names_its_row_of_x():
    """The overflow message names the row of the caller's X, counted across evaluation chunks:
    row EVAL_CHUNK + 2 is reported as such, not as row 2 of its chunk."""
    from mlplab.models import EVAL_CHUNK, ScoresOverflowError

    model = MLP(4, [8], 3, seed=0)
    X = np.ones((EVAL_CHUNK + 5, 4), np.float32)
    X[EVAL_CHUNK + 2] = 3e38
    with pytest.raises(ScoresOverflowError, match=rf"for row {EVAL_CHUNK + 2} of X \("):
        model.predict(X)


def test_mlp_refuses_a_dtype_of_none_as_build_model_does():
    """np.dtype(None) is float64: MLP(dtype=None) built a float64 model, twice the size asked
    for, where torch_mlp.build_model refuses None."""
    message = r"^dtype must be float32 or float64 \(np.float32, np.float64 or their names; .*" \
              r"got None\.$"
    with pytest.raises(ValueError, match=message):
        MLP(4, [5], 3, dtype=None)
    for bad, shown in ((np.int32, "<class 'numpy.int32'>"), ("bogus", "'bogus'")):
        with pytest.raises(ValueError, match=f"got {re.escape(shown)}"):
            MLP(4, [5], 3, dtype=bad)
    for given in (np.float64, "float64", np.dtype("float64")):
        assert MLP(4, [5], 3, dtype=given).dtype == np.float64
