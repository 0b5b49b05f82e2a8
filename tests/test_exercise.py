"""The exercise's toy numbers (SPEC §1-3), computed by the engine."""

import numpy as np

from mlplab import TwoLayerNet
from mlplab.exercise import CORRECT_LOSS, CORRECT_PROBS, run_checks, toy_data, toy_model
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


def test_run_checks_all_pass_and_values_come_from_code():
    results = run_checks()
    assert all(r.passed for r in results)
    assert [r.name for r in results][:2] == ["Q1 probabilities", "Q1 loss"]
    assert all(r.value > 0 for r in results)  # measured, not a constant 0
