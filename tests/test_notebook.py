"""The CS231n ``two_layer_net.ipynb`` cells the exercise derives from, run with mlplab as a
student would write them (docs/training.md, "From the CS231n notebook")."""

import matplotlib
import numpy as np
import pytest

from mlplab import TwoLayerNet
from mlplab.exercise import toy_data
from mlplab.gradcheck import check_model, eval_numerical_gradient, rel_error
from mlplab.plots import visualize_grid, weight_tiles

matplotlib.use("Agg")


def init_toy_model():
    np.random.seed(0)
    return TwoLayerNet(4, 10, 3, std=1e-1)


# --------------------------------------------------------------------------- gradient check
def test_the_notebooks_gradient_check_runs_as_written():
    """The notebook's cell, verbatim: ``verbose=False`` used to be a TypeError."""
    net = init_toy_model()
    X, y = toy_data()
    loss, grads = net.loss(X, y, reg=0.05)
    errors = {}
    for param_name in grads:
        f = lambda W: net.loss(X, y, reg=0.05)[0]  # noqa: E731 - the notebook's own line
        param_grad_num = eval_numerical_gradient(f, net.params[param_name], verbose=False)
        errors[param_name] = rel_error(param_grad_num, grads[param_name])
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    assert max(errors.values()) < 1e-8  # SPEC §2's bound
    # the same numbers as mlplab's own check, and the parameters were restored
    assert errors == check_model(init_toy_model(), X, y, reg=0.05)
    np.testing.assert_array_equal(net.params["W1"], init_toy_model().params["W1"])


def test_verbose_prints_each_partial_derivative_as_cs231n_does(capsys):
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    grad = eval_numerical_gradient(lambda z: float(np.sum(z ** 2)), x, verbose=True)
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-9)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(")")[0] + ")" for line in lines] == ["(0, 0)", "(0, 1)", "(1, 0)",
                                                             "(1, 1)"]
    assert float(lines[2].split()[-1]) == pytest.approx(6.0)
    eval_numerical_gradient(lambda z: float(np.sum(z ** 2)), x)
    assert capsys.readouterr().out == ""  # silent by default (CS231n's prints)


def test_the_step_is_cs231ns_fourth_argument():
    x = np.array([0.5, -2.0])
    f = lambda z: float(np.sum(z ** 3))  # noqa: E731
    # a centred difference of z^3 errs by h^2 exactly: the step taken is the one given
    np.testing.assert_allclose(eval_numerical_gradient(f, x, False, 1e-2),
                               3 * x ** 2 + 1e-4, rtol=1e-9)
    np.testing.assert_allclose(eval_numerical_gradient(f, x, h=1e-2), 3 * x ** 2 + 1e-4,
                               rtol=1e-9)
    # a step in the third place (mlplab's old order) is refused, not read as verbose=True
    with pytest.raises(TypeError, match=r"\(f, x, verbose, h\).*h=\.\.\."):
        eval_numerical_gradient(f, x, 1e-2)


def test_a_float32_or_integer_x_is_refused_not_checked_at_its_rounding():
    """The notebook's cell on a float32 MLP (mlplab's default dtype) reported ~0.2 for a correct
    W1, and an integer x nonsense: x + h is rounded in x's own dtype."""
    from mlplab import MLP

    X, y = toy_data()
    net = MLP(4, [10], 3, seed=0)  # float32
    f = lambda W: net.loss(X, y, reg=0.05)[0]  # noqa: E731
    with pytest.raises(ValueError, match=r"float64 array.*got float32.*dtype=np\.float64"):
        eval_numerical_gradient(f, net.params["W1"])
    with pytest.raises(ValueError, match="got int"):
        eval_numerical_gradient(lambda z: float(np.sum(z ** 2)), np.array([1, 2, 3]))


# --------------------------------------------------------------------------- weights grid
def _cs231n_grid(Xs, ubound=255.0, padding=1):
    """CS231n's ``vis_utils.visualize_grid``, written out from its description: a
    ceil(sqrt(N))-square grid filled row by row, each image rescaled over its own range."""
    N, H, W, C = Xs.shape
    grid_size = int(np.ceil(np.sqrt(N)))
    grid = np.zeros((H * grid_size + padding * (grid_size - 1),
                     W * grid_size + padding * (grid_size - 1), C))
    next_idx = 0
    y0, y1 = 0, H
    for _ in range(grid_size):
        x0, x1 = 0, W
        for _ in range(grid_size):
            if next_idx < N:
                img = Xs[next_idx]
                low, high = np.min(img), np.max(img)
                grid[y0:y1, x0:x1] = ubound * (img - low) / (high - low)
                next_idx += 1
            x0 += W + padding
            x1 += W + padding
        y0 += H + padding
        y1 += H + padding
    return grid


@pytest.mark.parametrize("n,shape,padding,ubound", [
    (1, (4, 4, 3), 1, 255.0), (7, (5, 3, 1), 0, 1.0), (50, (6, 6, 3), 3, 255.0),
    (16, (2, 7, 2), 2, 10.0),
])
def test_visualize_grid_is_cs231ns(rng, n, shape, padding, ubound):
    Xs = rng.randn(n, *shape)
    got = visualize_grid(Xs, ubound=ubound, padding=padding)
    np.testing.assert_allclose(got, _cs231n_grid(Xs, ubound, padding), rtol=1e-12, atol=1e-12)
    assert got.dtype == np.float64


def test_the_notebooks_show_net_weights_runs_as_written(rng):
    import matplotlib.pyplot as plt

    net = TwoLayerNet(32 * 32 * 3, 50, 10, seed=0)
    W1 = net.params["W1"]
    W1 = W1.reshape(32, 32, 3, -1).transpose(3, 0, 1, 2)
    grid = visualize_grid(W1, padding=3).astype("uint8")
    plt.imshow(grid)
    plt.gca().axis("off")
    plt.close("all")
    assert grid.shape == (8 * 32 + 7 * 3, 8 * 32 + 7 * 3, 3)  # 50 units: an 8 x 8 grid
    # the tiles are those of mlplab's own figure (plot_first_layer_weights), times 255
    tiles = weight_tiles(net.params["W1"], (32, 32, 3))
    np.testing.assert_allclose(visualize_grid(W1, padding=3)[35:67, 35:67],
                               255 * tiles[9], rtol=1e-12)


def test_visualize_grid_refuses_what_it_cannot_draw(rng):
    with pytest.raises(ValueError, match=r"\(N, H, W, C\).*transpose"):
        visualize_grid(rng.randn(3072, 50))
    with pytest.raises(ValueError, match="padding"):
        visualize_grid(rng.randn(2, 3, 3, 1), padding=-1)
    flat = np.ones((2, 3, 3, 1))  # no range to rescale over: zeros, not NaN
    assert not visualize_grid(flat).any()


# --------------------------------------------------------------------------- training stats
def _reference_train(params, X, y, X_val, y_val, learning_rate, learning_rate_decay, reg,
                     num_iters, batch_size):
    """The exercise's minibatch SGD, written out here, with accuracy recorded and the rate
    decayed at the end of every full epoch (mlplab's reading; CS231n's tests ``it % epoch == 0``
    from it = 0: see docs/training.md)."""
    W1, b1, W2, b2 = (params[k].copy() for k in ("W1", "b1", "W2", "b2"))
    n = X.shape[0]
    per_epoch = max(n // batch_size, 1)
    stats = {"loss_history": [], "train_acc_history": [], "val_acc_history": []}

    def predict(Z):
        return (np.maximum(Z @ W1 + b1, 0) @ W2 + b2).argmax(axis=1)

    for it in range(num_iters):
        idx = np.random.choice(n, batch_size, replace=True)
        Xb, yb = X[idx], y[idx]
        h = np.maximum(Xb @ W1 + b1, 0)
        z = h @ W2 + b2
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        stats["loss_history"].append(-np.log(p[np.arange(batch_size), yb]).mean()
                                     + reg * ((W1 ** 2).sum() + (W2 ** 2).sum()))
        dz = p
        dz[np.arange(batch_size), yb] -= 1
        dz /= batch_size
        dW2, db2 = h.T @ dz + 2 * reg * W2, dz.sum(axis=0)
        dh = dz @ W2.T * (h > 0)
        dW1, db1 = Xb.T @ dh + 2 * reg * W1, dh.sum(axis=0)
        W1, b1 = W1 - learning_rate * dW1, b1 - learning_rate * db1
        W2, b2 = W2 - learning_rate * dW2, b2 - learning_rate * db2
        if (it + 1) % per_epoch == 0:
            stats["train_acc_history"].append((predict(Xb) == yb).mean())
            stats["val_acc_history"].append((predict(X_val) == y_val).mean())
            learning_rate *= learning_rate_decay
    return stats


def test_the_notebooks_training_cell_gives_the_stats_of_the_exercises_loop(rng):
    """``net.train(...)`` with the notebook's keywords: float64, the three histories, a loss per
    iteration and an accuracy per full epoch (here 5 iterations: 23 give 4 points)."""
    X, y = rng.randn(1000, 20) * 10, rng.randint(0, 10, 1000)
    X_val, y_val = rng.randn(100, 20) * 10, rng.randint(0, 10, 100)
    np.random.seed(0)
    net = TwoLayerNet(20, 15, 10)
    assert all(p.dtype == np.float64 for p in net.params.values())
    params = {k: v.copy() for k, v in net.params.items()}
    state = np.random.get_state()
    stats = net.train(X, y, X_val, y_val, num_iters=23, batch_size=200, learning_rate=1e-3,
                      learning_rate_decay=0.9, reg=0.25, verbose=False)
    np.random.set_state(state)  # the reference draws the same minibatches
    reference = _reference_train(params, X, y, X_val, y_val, 1e-3, 0.9, 0.25, 23, 200)
    assert sorted(stats) == sorted(reference)
    assert [len(stats[k]) for k in reference] == [23, 4, 4]
    np.testing.assert_allclose(stats["loss_history"], reference["loss_history"], rtol=1e-12)
    assert stats["train_acc_history"] == reference["train_acc_history"]
    assert stats["val_acc_history"] == reference["val_acc_history"]
    assert net.predict(X_val).shape == (100,)


# --------------------------------------------------------------------------- notebook display
INLINE = "module://matplotlib_inline.backend_inline"  # Jupyter's (and VS Code's) default


@pytest.mark.parametrize("backend", [INLINE, "agg"])
def test_a_figure_a_cell_returns_shows_once(monkeypatch, backend):
    """``plot_loss(h.loss)`` on a cell's last line showed the figure twice: IPython displays the
    value the cell returns, and the inline backend then shows every pyplot figure still open.
    Displayed by IPython (its ``_repr_mimebundle_`` first, then its image formatter), the figure
    leaves pyplot's open figures, which is what the end of the cell shows; elsewhere nothing
    changes."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from mlplab import plots

    monkeypatch.setattr(matplotlib, "get_backend", lambda: backend)
    plt.close("all")
    figures = [plots.plot_loss([3.0, 2.0, 1.5]), plots.plot_accuracy([0.5, 0.7], [0.4, 0.6]),
               plots.plot_first_layer_weights(np.ones((64, 3)), (8, 8, 1)),
               plots.plot_confusion(np.eye(2), ["a", "b"]),
               plots.plot_samples(np.zeros((4, 8, 8, 1), np.uint8), np.array([0, 0, 1, 1]),
                                  ["a", "b"], per_class=2)]
    assert all(isinstance(fig, Figure) for fig in figures)
    assert len(plt.get_fignums()) == 5  # pyplot's, so plt.show() shows them
    for fig in figures:
        assert fig._repr_mimebundle_() is None  # IPython goes on to draw its image
    assert len(plt.get_fignums()) == (0 if backend == INLINE else 5)
    plt.close("all")
