"""Every layer's backward pass against centred-difference numerical gradients (float64)."""

import numpy as np
import pytest

from mlplab.gradcheck import (
    check_layer,
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    norm_rel_error,
    rel_error,
)
from mlplab.layers import (
    Affine,
    BatchNorm,
    Dropout,
    LeakyReLU,
    PReLU,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)


def _check_layer(make, x, rng, tol=1e-8):
    """dx and every parameter gradient of a fresh layer against numerical gradients."""
    layer = make()
    out = layer.forward(x.copy())
    dout = rng.randn(*out.shape)
    dx = layer.backward(dout.copy())
    num_dx = eval_numerical_gradient_array(lambda z: make_eval(layer, z), x.copy(), dout)
    assert rel_error(dx, num_dx) < tol
    for name, p in layer.params.items():
        num = eval_numerical_gradient_array(lambda _: make_eval(layer, x), p, dout)
        assert rel_error(layer.grads[name], num) < tol, name


def make_eval(layer, x):
    return layer.forward(x.copy()).copy()


def test_affine_gradients(rng):
    W, b = rng.randn(6, 4), rng.randn(4)
    _check_layer(lambda: Affine(W, b), rng.randn(5, 6), rng)


def test_affine_without_bias_and_without_dx(rng):
    W = rng.randn(6, 4)
    layer = Affine(W, None, need_dx=False)
    x = rng.randn(3, 6)
    out = layer.forward(x)
    np.testing.assert_allclose(out, x @ W)
    assert layer.backward(np.ones((3, 4))) is None
    np.testing.assert_allclose(layer.grads["W"], x.T @ np.ones((3, 4)))


def _prelu(slopes):
    layer = PReLU(len(slopes), np.float64)
    layer.params["alpha"][...] = slopes
    return layer


@pytest.mark.parametrize("make", [ReLU, lambda: LeakyReLU(0.1), Tanh, Sigmoid,
                                  lambda: _prelu([0.25, -0.5, 0.0, 1.5, 0.1, 2.0, -1.0])])
def test_activation_gradients(make, rng):
    x = rng.randn(5, 7)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink of (leaky) ReLU
    _check_layer(make, x, rng)


def test_activation_values(rng):
    x = rng.randn(4, 3)
    np.testing.assert_allclose(ReLU().forward(x.copy()), np.maximum(x, 0))
    np.testing.assert_allclose(Tanh().forward(x.copy()), np.tanh(x))
    np.testing.assert_allclose(Sigmoid().forward(x.copy()), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(LeakyReLU(0.2).forward(x.copy()), np.where(x > 0, x, 0.2 * x))


def test_prelu_matches_torch_exactly_in_float32_and_reuses_its_buffers(rng):
    """Values and all gradients against torch.nn.functional.prelu's autograd, bit for bit,
    including x = 0 (the slope there is alpha, as PyTorch's), over two batch shapes so that the
    reused buffers are exercised."""
    torch = pytest.importorskip("torch")
    layer = PReLU(6)
    assert layer.params["alpha"].dtype == np.float32
    np.testing.assert_array_equal(layer.params["alpha"], np.full(6, 0.25, np.float32))
    layer.params["alpha"][...] = rng.randn(6)
    for rows in (5, 3, 5):
        x = rng.randn(rows, 6).astype(np.float32)
        x[0, :3] = 0
        dout = rng.randn(rows, 6).astype(np.float32)
        out = layer.forward(x.copy()).copy()
        dx = layer.backward(dout.copy()).copy()
        xt = torch.tensor(x, requires_grad=True)
        at = torch.tensor(layer.params["alpha"], requires_grad=True)
        ot = torch.nn.functional.prelu(xt, at)
        ot.backward(torch.tensor(dout))
        np.testing.assert_array_equal(out, ot.detach().numpy())
        np.testing.assert_array_equal(dx, xt.grad.numpy())
        np.testing.assert_allclose(layer.grads["alpha"], at.grad.numpy(), rtol=1e-6, atol=1e-6)
        assert out.dtype == dx.dtype == layer.grads["alpha"].dtype == np.float32


def test_leaky_relu_matches_torch_exactly_including_zero(rng):
    """Values and dx against torch.nn.functional.leaky_relu's autograd, bit for bit, with inputs
    exactly 0: the slope there is alpha, as the docstring and PyTorch say (the numerical checks
    above stay off the kink, so a mask of ``x < 0`` instead of ``x <= 0`` passed them)."""
    torch = pytest.importorskip("torch")
    x = rng.randn(5, 6).astype(np.float32)
    x[0, :3] = 0
    x[2, 4] = 0
    dout = rng.randn(5, 6).astype(np.float32)
    layer = LeakyReLU(0.1)
    out = layer.forward(x.copy()).copy()
    dx = layer.backward(dout.copy())
    xt = torch.tensor(x, requires_grad=True)
    ot = torch.nn.functional.leaky_relu(xt, 0.1)
    ot.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, ot.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    np.testing.assert_array_equal(dx[0, :3], np.float32(0.1) * dout[0, :3])


def test_sigmoid_is_stable_for_large_inputs():
    out = Sigmoid().forward(np.array([[-1000.0, 1000.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.5]])


def test_batchnorm_gradients_train_mode(rng):
    x = 3 * rng.randn(8, 5) + 2

    def make():
        bn = BatchNorm(5, dtype=np.float64)
        bn.params["gamma"][:] = rng.rand(5) + 0.5
        bn.params["beta"][:] = rng.randn(5)
        return bn

    _check_layer(make, x, rng, tol=1e-7)


def test_batchnorm_gradients_eval_mode(rng):
    """In evaluation mode the running statistics are constants, so the layer is the affine map
    ``gamma (x - mu) / sigma + beta`` and dx = gamma dout / sigma; the training-mode formula (which
    differentiates through the batch statistics) was once applied here too."""
    bn = BatchNorm(5, dtype=np.float64)
    bn.params["gamma"][:] = rng.rand(5) + 0.5
    bn.params["beta"][:] = rng.randn(5)
    bn.running_mean[:] = rng.randn(5)
    bn.running_var[:] = rng.rand(5) + 0.5
    x, dout = 3 * rng.randn(8, 5) + 2, rng.randn(8, 5)

    def f(z):
        return bn.forward(z.copy(), train=False).copy()

    f(x)
    dx = bn.backward(dout.copy())
    assert rel_error(dx, eval_numerical_gradient_array(f, x.copy(), dout)) < 1e-8
    for name, p in bn.params.items():
        num = eval_numerical_gradient_array(lambda _: f(x), p, dout)
        f(x)
        bn.backward(dout.copy())
        assert rel_error(bn.grads[name], num) < 1e-8, name


def test_batchnorm_normalises_and_tracks_running_stats(rng):
    bn = BatchNorm(4, momentum=0.0, dtype=np.float64)
    x = 5 * rng.randn(200, 4) + 3
    out = bn.forward(x)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(0), 1, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean, x.mean(0))
    np.testing.assert_allclose(bn.forward(x, train=False), out, atol=1e-4)


def test_batchnorm_evaluation_uses_the_exponential_running_statistics(rng):
    """Two training batches with momentum 0.9, then a third batch in evaluation mode: it is
    normalised with the running averages written out here (initial mean 0, variance 1; biased
    batch variances), not with its own statistics."""
    bn = BatchNorm(3, momentum=0.9, eps=1e-5, dtype=np.float64)
    bn.params["gamma"][:] = [1.5, 0.5, 2.0]
    bn.params["beta"][:] = [0.1, -0.2, 0.3]
    a, b = 2 * rng.randn(40, 3) + 1, 3 * rng.randn(40, 3) - 2
    bn.forward(a)
    bn.forward(b)
    mean = 0.9 * (0.9 * 0 + 0.1 * a.mean(0)) + 0.1 * b.mean(0)
    var = 0.9 * (0.9 * 1 + 0.1 * a.var(0)) + 0.1 * b.var(0)
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-12)
    c = 4 * rng.randn(10, 3) + 5
    expected = (c - mean) / np.sqrt(var + 1e-5) * bn.params["gamma"] + bn.params["beta"]
    np.testing.assert_allclose(bn.forward(c, train=False), expected, rtol=1e-12)


def test_batchnorm_defaults_are_the_exercises_momentum_and_eps(rng):
    """``BatchNorm(dim)`` (as MLP builds it) has CS231n's ``bn_param`` defaults, momentum 0.9
    and eps 1e-5 (PyTorch's ``momentum=0.1`` in its convention): after one training batch the
    running mean is 0.1 * the batch mean and the running variance 0.9 + 0.1 * the biased batch
    variance; a batch in evaluation mode is then normalised with them and eps 1e-5."""
    bn = BatchNorm(3, dtype=np.float64)
    a = 2 * rng.randn(20, 3) + 1
    bn.forward(a)
    np.testing.assert_allclose(bn.running_mean, 0.1 * a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * a.var(0), rtol=1e-12)
    c = rng.randn(4, 3)
    expected = (c - bn.running_mean) / np.sqrt(bn.running_var + 1e-5)
    np.testing.assert_allclose(bn.forward(c, train=False), expected, rtol=1e-12)


def test_dropout_is_inverted_and_gradient_matches(rng):
    drop = Dropout(0.4, seed=0)
    x = np.ones((1000, 50))
    out = drop.forward(x)
    assert abs(out.mean() - 1) < 0.02  # inverted: expectation preserved
    assert abs((out == 0).mean() - 0.4) < 0.02
    np.testing.assert_array_equal(drop.forward(x, train=False), x)
    drop.frozen = True
    _check_layer_frozen(drop, rng.randn(6, 5), rng)


def _check_layer_frozen(drop, x, rng):
    out = drop.forward(x.copy())
    dout = rng.randn(*out.shape)
    dx = drop.backward(dout.copy())
    num = eval_numerical_gradient_array(lambda z: drop.forward(z.copy()).copy(), x.copy(), dout)
    assert rel_error(dx, num) < 1e-8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_value_gradient_and_dtype(dtype, rng):
    scores = rng.randn(6, 4).astype(dtype)
    y = rng.randint(4, size=6)
    layer = SoftmaxCrossEntropy()
    probs = layer.forward(scores, y).copy()
    assert probs.dtype == dtype
    expected = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    np.testing.assert_allclose(layer.loss, -np.log(expected[np.arange(6), y]).mean(), rtol=1e-5)
    if dtype == np.float64:
        d = layer.backward().copy()  # the buffer is reused by the next forward

        def f(s):
            layer.forward(s, y)
            return layer.loss

        assert rel_error(d, eval_numerical_gradient(f, scores.copy())) < 1e-8


@pytest.mark.parametrize("flag", [True, False, np.True_])
def test_softmax_cross_entropy_refuses_a_train_flag_for_labels(flag, rng):
    # forward(x, train) of the other layers: True was taken as labels, a broadcasting error about
    # shapes (6,) and (6, 4), also from check_layer(SoftmaxCrossEntropy(), x)
    with pytest.raises(TypeError, match="labels y .* not a train flag"):
        SoftmaxCrossEntropy().forward(rng.randn(6, 4), flag)
    with pytest.raises(TypeError, match="not a train flag"):
        check_layer(SoftmaxCrossEntropy(0.1), rng.randn(6, 4))


def test_softmax_is_numerically_stable():
    layer = SoftmaxCrossEntropy()
    probs = layer.forward(np.array([[1000.0, 0.0, -1000.0]]), np.array([1]))
    assert np.isfinite(probs).all() and np.isfinite(layer.loss)
    np.testing.assert_allclose(layer.loss, 1000.0)


def test_label_smoothing_loss_and_gradient_match_the_formula_and_numerics(rng):
    scores, y = rng.randn(5, 4), rng.randint(4, size=5)
    layer = SoftmaxCrossEntropy(label_smoothing=0.1)
    layer.forward(scores, y)
    loss = layer.loss
    d = layer.backward().copy()

    def f(s):
        layer.forward(s, y)
        return layer.loss

    assert rel_error(d, eval_numerical_gradient(f, scores.copy())) < 1e-8
    p = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    q = np.full((5, 4), 0.1 / 4)
    q[np.arange(5), y] += 0.9
    np.testing.assert_allclose(loss, -(q * np.log(p)).sum(1).mean(), rtol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_softmax_cross_entropy_matches_torch_autograd(eps, rng):
    """The loss and the fused backward (p - q) / N, with and without label smoothing, against
    torch.nn.functional.cross_entropy(label_smoothing=eps) and its autograd (the test above,
    once named for PyTorch, compared with a formula written out)."""
    torch = pytest.importorskip("torch")
    scores, y = 3 * rng.randn(7, 5), rng.randint(5, size=7)
    layer = SoftmaxCrossEntropy(label_smoothing=eps)
    layer.forward(scores.copy(), y)
    loss, d = layer.loss, layer.backward().copy()
    st = torch.tensor(scores, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(st, torch.tensor(y), label_smoothing=eps)
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-13)
    np.testing.assert_allclose(d, st.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_rel_error_is_the_exercise_formula():
    """``max |a - n| / max(1e-8, |a| + |n|)``, worked by hand: the worst entry counts (not the
    mean), and the 1e-8 floor only guards 0 / 0, so a tiny gradient that is wrong still scores 1."""
    assert rel_error(np.array([1.0, 3.0]), np.array([1.0, 1.0])) == 0.5  # |3-1|/(3+1)
    assert rel_error(np.array([0.0]), np.array([1e-6])) == 1.0  # 1e-6 / 1e-6, not 1e-6 / 1e-3
    assert rel_error(np.array([0.0]), np.array([1e-9])) == pytest.approx(0.1)  # 1e-9 / 1e-8
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0


def test_norm_rel_error_is_the_norm_formula():
    """``||a - n|| / max(1e-8, ||a|| + ||n||)`` with Euclidean norms of the whole arrays, worked
    by hand: both norms in the denominator, the 2-norm (not the sum of absolute values) on top,
    and the 1e-8 floor only guarding 0 / 0."""
    a, n = np.array([1.0, 1.0]), np.array([2.0, 3.0])  # a - n = (-1, -2)
    assert norm_rel_error(a, n) == pytest.approx(np.sqrt(5) / (np.sqrt(2) + np.sqrt(13)),
                                                 rel=1e-15)
    assert norm_rel_error(np.array([3.0, 4.0]), np.zeros(2)) == 1.0  # 5 / (5 + 0)
    assert norm_rel_error(np.zeros(2), np.array([0.0, 1e-9])) == pytest.approx(0.1)
    assert norm_rel_error(np.zeros(3), np.zeros(3)) == 0.0


@pytest.mark.parametrize("error", [rel_error, norm_rel_error])
def test_gradients_of_different_shapes_are_refused_not_broadcast(error):
    """A gradient written in the exercise's column-vector form is the transpose of the code's:
    compared with the (D, H) numerical one it was a broadcasting error (or, square, a number
    that meant nothing), and (N,) against (N, 1) broadcast to (N, N) and scored a wrong gradient
    as right. Both are refused with the two shapes."""
    rng = np.random.RandomState(0)
    x, dout = rng.randn(4, 3), rng.randn(4, 5)
    dW_rows, dW_columns = x.T @ dout, dout.T @ x  # (3, 5) and (5, 3): the same numbers
    np.testing.assert_array_equal(dW_rows, dW_columns.T)
    with pytest.raises(ValueError, match=r"same shape; got \(5, 3\) and \(3, 5\) \(one is the "
                                         r"other's transpose"):
        error(dW_columns, dW_rows)
    a = np.array([1.0, 2.0, 3.0])
    wrong = np.array([[1.0], [2.0], [30.0]])
    with pytest.raises(ValueError, match=r"same shape; got \(3,\) and \(3, 1\)\.$"):
        error(a, wrong)
    assert error(a, a.copy()) == 0.0


def test_eval_numerical_gradient_says_what_f_must_return():
    """The notebook's f is ``lambda W: net.loss(X, y, reg=0.05)[0]``; without the ``[0]`` it
    returns ``(loss, grads)`` and the check died on 'unsupported operand type(s) for -', and a
    forward pass handed in (an array) on 'setting an array element with a sequence'. Both now say
    what f must return; a one-number array still counts as the number."""
    from mlplab.exercise import toy_data, toy_model

    X, y = toy_data()
    net = toy_model()
    W1 = net.params["W1"]
    with pytest.raises(ValueError, match=r"it returned a tuple of 2\. net\.loss\(X, y, "
                                         r"reg=\.\.\.\) returns \(loss, grads\): take the "
                                         r"loss, f = lambda W: net\.loss\(X, y, reg=reg\)\[0\]"):
        eval_numerical_gradient(lambda W: net.loss(X, y, reg=0.05), W1)
    with pytest.raises(ValueError, match=r"returned ndarray of shape \(5, 3\) \(float64\)\. For a "
                                         r"function with an array value .* use "
                                         r"eval_numerical_gradient_array"):
        eval_numerical_gradient(lambda W: net.loss(X), W1)
    x = np.array([0.3, -1.2])
    np.testing.assert_allclose(eval_numerical_gradient(lambda z: np.array([np.sum(z ** 3)]), x),
                               3 * x ** 2, rtol=1e-8)


def test_eval_numerical_gradient_leaves_x_as_it_was_when_f_raises():
    """The notebook's first try without the ``[0]`` raised with W1[0, 0] still moved by h, so the
    corrected check that follows, against the gradients computed before, failed the exercise's
    1e-8 (3.5e-5 for W1, 3e-5 for W2: W1 feeds every loss of W2's check too)."""
    from mlplab.exercise import TOY_REG, toy_data, toy_model

    X, y = toy_data()
    net = toy_model()
    _, grads = net.loss(X, y, reg=TOY_REG)
    before = net.state_dict()
    with pytest.raises(ValueError, match="tuple"):
        eval_numerical_gradient(lambda W: net.loss(X, y, reg=TOY_REG), net.params["W1"])
    for name, value in before.items():
        np.testing.assert_array_equal(net.params[name], value, err_msg=name)
    for name in ("W1", "W2"):
        num = eval_numerical_gradient(lambda W: net.loss(X, y, reg=TOY_REG)[0], net.params[name])
        assert rel_error(grads[name], num) < 1e-8, name


def test_eval_numerical_gradient_array_refuses_a_dout_not_shaped_like_f():
    """(N,) against a (N, 1) output broadcast to (N, N) and returned a gradient N times too big
    with no error; now dout must have f(x)'s shape."""
    x = np.array([[0.5], [-1.0], [2.0]])
    dout = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"dout has shape \(3,\); f\(x\) has \(3, 1\): dout stands "
                                         r"for dL/d\(f\(x\)\) and must have its shape"):
        eval_numerical_gradient_array(lambda z: 2 * z, x, dout)
    np.testing.assert_allclose(eval_numerical_gradient_array(lambda z: 2 * z, x, dout[:, None]),
                               2 * dout[:, None], rtol=1e-8)


def test_backward_without_its_forward_says_so():
    """Affine.backward before any forward, and a second SoftmaxCrossEntropy.backward (the first
    consumes the probabilities), failed inside NumPy on None ("'NoneType' object has no
    attribute ..."); each now names the missing forward()."""
    rng = np.random.RandomState(0)
    affine = Affine(rng.randn(4, 3), np.zeros(3))
    with pytest.raises(RuntimeError, match=r"Affine\.backward\(\) needs a forward\(\) first"):
        affine.backward(rng.randn(2, 3))
    loss = SoftmaxCrossEntropy()
    with pytest.raises(RuntimeError, match=r"call forward\(\) again first"):
        loss.backward()
    probs = loss.forward(rng.randn(2, 3), np.array([0, 2]))
    expected = probs.copy()
    expected[[0, 1], [0, 2]] -= 1
    np.testing.assert_allclose(loss.backward(), expected / 2)  # (p - onehot(y)) / N
    with pytest.raises(RuntimeError, match=r"call forward\(\) again first"):
        loss.backward()


@pytest.mark.parametrize("h", [0, 0.0, -1e-5, float("nan"), float("inf"), "1e-5", None])
def test_a_step_that_is_not_a_finite_positive_number_is_refused_in_one_line(h):
    """h = 0 ended in ZeroDivisionError ('float division by zero'), NaN in NaN errors that read
    as a failed backward pass; every public function that takes h now says what h must be."""
    from mlplab import MLP
    from mlplab.gradcheck import check_model, rounding_floor

    rng = np.random.RandomState(0)
    X, y = rng.randn(4, 3), np.array([0, 1, 1, 0])
    model = MLP(3, [4], 2, seed=0, dtype=np.float64)
    message = r"^h must be a finite step > 0 \(the centred difference is \(f\(x \+ h\) - " \
              r"f\(x - h\)\) / 2h; 1e-5 by default\); got "
    calls = [lambda: eval_numerical_gradient(lambda w: float(np.sum(w ** 2)), X.copy(), h=h),
             lambda: eval_numerical_gradient_array(lambda w: w * 2, X.copy(), X.copy(), h=h),
             lambda: check_layer(ReLU(), X, h=h),
             lambda: check_model(model, X, y, h=h),
             lambda: rounding_floor(model, X, y, h=h)]
    for call in calls:
        with pytest.raises(ValueError, match=message) as e:
            call()
        assert "\n" not in str(e.value)
    assert check_model(model, X, y, h=1e-6)["W1"] < 1e-6  # a positive step of one's own is fine


def test_dropout_takes_seeds_as_mlp_does():
    """Its hint said int | None, but default_rng took a Generator too (no other seed of mlplab
    does): refused now with MLP's message and hint; integers past 2**32 - 1 (MLP's seed + i)
    still work."""
    with pytest.raises(ValueError, match=r"^seed must be None or an integer between 0 and "
                                         r"2\*\*32 - 1; got Generator.*draw one from the "
                                         r"generator, e.g. seed=int\(rng.integers\(2\*\*31\)\)"):
        Dropout(0.5, seed=np.random.default_rng(0))
    for bad in (-1, 2.5, "0", True):
        with pytest.raises(ValueError, match="^seed must be None or an integer"):
            Dropout(0.5, seed=bad)
    x = np.ones((20, 30))
    top = 2**32 + 1  # MLP(seed=2**32 - 1) gives its second dropout layer this one
    np.testing.assert_array_equal(Dropout(0.5, seed=top).forward(x.copy()),
                                  Dropout(0.5, seed=np.uint64(top)).forward(x.copy()))
    assert Dropout(0.5, seed=None).forward(x.copy()).shape == x.shape
