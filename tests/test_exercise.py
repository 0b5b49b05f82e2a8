"""The exercise's toy numbers (SPEC §1-3), computed by the engine."""

import numpy as np
import pytest

from mlplab import TwoLayerNet
from mlplab.exercise import (
    CORRECT_DATA_LOSS,
    CORRECT_LOSS,
    CORRECT_PROBS,
    TOY_REG,
    run_checks,
    toy_data,
    toy_model,
    toy_training,
)
from mlplab.gradcheck import check_model


def test_toy_model_matches_the_exercise_initialisation():
    np.random.seed(0)
    W1 = 1e-1 * np.random.randn(4, 10)
    W2 = 1e-1 * np.random.randn(10, 3)
    net = toy_model()
    np.testing.assert_array_equal(net.params["W1"], W1)
    np.testing.assert_array_equal(net.params["W2"], W2)
    assert not net.params["b1"].any() and not net.params["b2"].any()
    # seed=None draws from the global state, exactly like the exercise's code
    np.random.seed(0)
    np.testing.assert_array_equal(TwoLayerNet(4, 10, 3, std=1e-1).params["W1"], W1)


def test_two_layer_net_defaults_are_the_exercises():
    """CS231n's signatures: ``TwoLayerNet(input_size, hidden_size, output_size, std=1e-4)`` and
    ``train(X, y, X_val, y_val, learning_rate=1e-3, learning_rate_decay=0.95, reg=5e-6,
    num_iters=100, batch_size=200, verbose=False)``: left out, they are those numbers."""
    rs = np.random.RandomState(1)
    X, y = rs.randn(50, 4), rs.randint(3, size=50)
    net = TwoLayerNet(4, 10, 3, seed=0)
    draws = np.random.RandomState(0)
    np.testing.assert_allclose(net.params["W1"], 1e-4 * draws.randn(4, 10), rtol=1e-15)
    np.testing.assert_allclose(net.params["W2"], 1e-4 * draws.randn(10, 3), rtol=1e-15)
    explicit = TwoLayerNet(4, 10, 3, std=1e-4, seed=0)
    stats = net.train(X, y, X, y, seed=0)
    expected = explicit.train(X, y, X, y, learning_rate=1e-3, learning_rate_decay=0.95,
                              reg=5e-6, num_iters=100, batch_size=200, seed=0)
    assert len(stats["loss_history"]) == 100
    assert stats == expected
    for name, value in explicit.params.items():
        np.testing.assert_array_equal(net.params[name], value)


def test_the_expected_toy_numbers_are_the_specs():
    """The tests below and ``mlplab check`` compare with constants of mlplab.exercise; pin
    those to the SPEC's numbers, written out here, so that an edit there cannot move the
    target to what the engine computes."""
    spec_probs = [[0.36446210, 0.22911264, 0.40642526],
                  [0.47590629, 0.17217039, 0.35192332],
                  [0.43035767, 0.26164229, 0.30800004],
                  [0.41583127, 0.29832280, 0.28584593],
                  [0.36328815, 0.32279939, 0.31391246]]
    np.testing.assert_array_equal(CORRECT_PROBS, spec_probs)
    assert CORRECT_LOSS == 1.30378789133 and TOY_REG == 0.05
    assert CORRECT_DATA_LOSS == 1.2658570521180532


def test_toy_probabilities():
    X, _ = toy_data()
    probs = toy_model().loss(X)
    assert np.sum(np.abs(probs - CORRECT_PROBS)) < 1e-7


def test_toy_loss_and_data_term():
    """The total and the data term against the exercise's numbers; the data term and the L2
    term apart also against the toy model's forward pass written out here."""
    X, y = toy_data()
    loss, _ = toy_model().loss(X, y, reg=0.05)
    assert abs(loss - CORRECT_LOSS) < 1e-10
    data_loss, _ = toy_model().loss(X, y, reg=0.0)
    assert abs(data_loss - CORRECT_DATA_LOSS) < 1e-10
    draws = np.random.RandomState(0)  # the toy model's weights: W1 then W2, std 0.1, biases 0
    W1, W2 = 0.1 * draws.randn(4, 10), 0.1 * draws.randn(10, 3)
    z = np.maximum(X @ W1, 0) @ W2
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    assert data_loss == pytest.approx(-log_p[np.arange(len(y)), y].mean(), abs=1e-12)
    l2 = 0.05 * ((W1 ** 2).sum() + (W2 ** 2).sum())  # no 0.5, biases not penalised
    assert loss - data_loss == pytest.approx(l2, abs=1e-12)


def test_toy_gradients_within_exercise_bound():
    X, y = toy_data()
    errors = check_model(toy_model(), X, y, reg=0.05)
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    assert max(errors.values()) < 1e-8


def test_toy_training_reaches_low_loss():
    X, y = toy_data()
    stats = toy_model().train(X, y, X, y, learning_rate=1e-1, reg=5e-6, num_iters=100,
                              verbose=False, seed=0)
    assert len(stats["loss_history"]) == 100
    assert stats["loss_history"][-1] < 0.02
    assert set(stats) == {"loss_history", "train_acc_history", "val_acc_history"}


def test_toy_training_draws_as_the_exercise_does():
    """The exercise's notebook seeds 0, builds the toy model, and samples its minibatches from
    the global stream that follows: its final loss is 0.017149607938732093, which a loop written
    out here from the SPEC's algorithm reproduces; the caller's random state is left alone."""
    X, y = toy_data()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    loss = toy_training(X, y)["loss_history"]
    np.testing.assert_array_equal(np.random.get_state()[1], before)

    np.random.seed(0)
    W1, W2 = 0.1 * np.random.randn(4, 10), 0.1 * np.random.randn(10, 3)
    reference = _reference_toy_losses(X, y, W1, W2, np.random.choice)
    np.testing.assert_allclose(loss, reference, rtol=1e-12)
    assert loss[-1] == pytest.approx(0.017149607938732093, abs=1e-12)


def _reference_toy_losses(X, y, W1, W2, choice):
    """Question 3's toy SGD (lr 0.1, reg 5e-6, 100 iterations, batch 200) written out from the
    SPEC; ``choice(5, 200)`` draws each minibatch's rows."""
    b1, b2 = np.zeros(10), np.zeros(3)
    lr, reg, reference = 0.1, 5e-6, []
    for _ in range(100):
        idx = choice(5, 200)  # batch 200 with replacement from 5 rows
        Xb, yb = X[idx], y[idx]
        h = np.maximum(Xb @ W1 + b1, 0)
        z = h @ W2 + b2
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        n = len(yb)
        reference.append(-np.log(p[np.arange(n), yb]).mean()
                         + reg * ((W1 ** 2).sum() + (W2 ** 2).sum()))
        dz = p.copy()
        dz[np.arange(n), yb] -= 1
        dz /= n
        dW2, db2 = h.T @ dz + 2 * reg * W2, dz.sum(0)
        dh = dz @ W2.T * (h > 0)
        dW1, db1 = Xb.T @ dh + 2 * reg * W1, dh.sum(0)
        W1, b1, W2, b2 = W1 - lr * dW1, b1 - lr * db1, W2 - lr * dW2, b2 - lr * db2
        # one epoch is max(5 // 200, 1) = 1 iteration: lr decays by 0.95 after each
        lr *= 0.95
    return reference


def test_seeded_toy_training_is_the_exercise_loop_on_its_own_draws():
    """``toy_training(seed=s)``: the same toy model and settings, minibatches from
    RandomState(s) instead of the global stream."""
    X, y = toy_data()
    draws = np.random.RandomState(0)
    W1, W2 = 0.1 * draws.randn(4, 10), 0.1 * draws.randn(10, 3)
    for seed in (3, 8):
        reference = _reference_toy_losses(X, y, W1, W2, np.random.RandomState(seed).choice)
        np.testing.assert_allclose(toy_training(X, y, seed=seed)["loss_history"], reference,
                                   rtol=1e-12)


def test_run_checks_all_pass_and_values_come_from_code():
    results = run_checks()
    assert all(r.passed for r in results)
    assert [r.name for r in results][:2] == ["Q1 probabilities", "Q1 loss"]
    assert all(r.value > 0 for r in results)  # measured, not a constant 0


def test_run_checks_judge_with_the_spec_bounds(monkeypatch):
    """``mlplab check`` judges with the SPEC's bounds (sum |p - correct| < 1e-7, loss within
    1e-10, gradient errors < 1e-8, toy SGD loss < 0.02): given an engine whose numbers are off
    (weights 0.1% off, a gradient error of 2e-8, a final toy loss of 0.05) every check fails."""
    import mlplab.exercise as exercise

    spec = {"Q1 probabilities": 1e-7, "Q1 loss": 1e-10, "Q1 data term": 1e-10,
            "Q3 toy SGD loss": 0.02,
            **{f"Q2 gradient {p}": 1e-8 for p in ("W1", "b1", "W2", "b2")}}
    results = run_checks()
    assert {r.name: r.bound for r in results} == spec

    def off_model():
        net = toy_model()
        net.params["W2"] *= 1.001
        return net

    monkeypatch.setattr(exercise, "toy_model", off_model)
    monkeypatch.setattr(exercise, "check_model",
                        lambda *a, **k: {p: 2e-8 for p in ("W1", "b1", "W2", "b2")})
    monkeypatch.setattr(exercise, "toy_training", lambda X, y: {"loss_history": [0.05]})
    results = run_checks()
    assert not any(r.passed for r in results), [(r.name, r.value) for r in results]
    assert {r.name: r.bound for r in results} == spec
