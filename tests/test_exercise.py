"""The exercise's toy numbers (SPEC §1-3), computed by the engine."""

import numpy as np
import pytest

from mlplab import TwoLayerNet
from mlplab.exercise import (
    CORRECT_LOSS,
    CORRECT_PROBS,
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


def test_toy_probabilities():
    X, _ = toy_data()
    probs = toy_model().loss(X)
    assert np.sum(np.abs(probs - CORRECT_PROBS)) < 1e-7


def test_toy_loss_and_data_term():
    X, y = toy_data()
    loss, _ = toy_model().loss(X, y, reg=0.05)
    assert abs(loss - CORRECT_LOSS) < 1e-10
    data_loss, _ = toy_model().loss(X, y, reg=0.0)
    assert abs(data_loss - 1.2658570521180532) < 1e-12


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
    b1, b2 = np.zeros(10), np.zeros(3)
    lr, reg, reference = 0.1, 5e-6, []
    for _ in range(100):
        idx = np.random.choice(5, 200)  # batch 200 with replacement from 5 rows
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
    np.testing.assert_allclose(loss, reference, rtol=1e-12)
    assert loss[-1] == pytest.approx(0.017149607938732093, abs=1e-12)


def test_run_checks_all_pass_and_values_come_from_code():
    results = run_checks()
    assert all(r.passed for r in results)
    assert [r.name for r in results][:2] == ["Q1 probabilities", "Q1 loss"]
    assert all(r.value > 0 for r in results)  # measured, not a constant 0
