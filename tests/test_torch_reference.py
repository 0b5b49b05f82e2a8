"""The hand-written gradients against PyTorch autograd on the same weights."""

import numpy as np
import pytest

from mlplab import MLP

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install mlplab[torch])")


@pytest.mark.parametrize("hidden", [[8], [8, 6], [8, 6, 5]])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_mlp_loss_and_gradients_match_autograd(hidden, activation, rng):
    X, y = rng.randn(10, 5), rng.randint(4, size=10)
    reg = 0.05
    model = MLP(5, hidden, 4, seed=0, dtype=np.float64, activation=activation)
    loss, grads = model.loss(X, y, reg=reg)

    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
           "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.01)}[activation]
    h = torch.tensor(X)
    n_layers = len(hidden) + 1
    for i in range(1, n_layers + 1):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < n_layers:
            h = act(h)
    t_loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    t_loss = t_loss + reg * sum((params[f"W{i}"] ** 2).sum() for i in range(1, n_layers + 1))
    t_loss.backward()

    assert abs(loss - t_loss.item()) < 1e-12
    for k, p in params.items():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_batchnorm_gradients_match_autograd(rng):
    X, y = rng.randn(12, 5), rng.randint(3, size=12)
    model = MLP(5, [6], 3, seed=0, dtype=np.float64, batchnorm=True)
    loss, grads = model.loss(X, y)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    z = torch.tensor(X) @ p["W1"]
    z = torch.nn.functional.batch_norm(z, None, None, p["gamma1"], p["beta1"], training=True,
                                       eps=1e-5)
    out = torch.relu(z) @ p["W2"] + p["b2"]
    t_loss = torch.nn.functional.cross_entropy(out, torch.tensor(y))
    t_loss.backward()
    assert abs(loss - t_loss.item()) < 1e-12
    for k, t in p.items():
        np.testing.assert_allclose(grads[k], t.grad.numpy(), rtol=1e-8, atol=1e-12)
