"""The hand-written gradients against PyTorch autograd on the same weights."""

import numpy as np
import pytest

from mlplab import MLP

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install mlplab[torch])")


@pytest.mark.parametrize("hidden", [[8], [8, 6], [8, 6, 5]])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "prelu"])
def test_mlp_loss_and_gradients_match_autograd(hidden, activation, rng):
    X, y = rng.randn(10, 5), rng.randint(4, size=10)
    reg = 0.05
    model = MLP(5, hidden, 4, seed=0, dtype=np.float64, activation=activation)
    loss, grads = model.loss(X, y, reg=reg)

    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    if activation == "prelu":  # slopes away from their common start, some negative
        for i in range(1, len(hidden) + 1):
            model.params[f"alpha{i}"][...] = rng.randn(hidden[i - 1])
        loss, grads = model.loss(X, y, reg=reg)
        params = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    act = {"relu": lambda z, i: torch.relu(z), "tanh": lambda z, i: torch.tanh(z),
           "sigmoid": lambda z, i: torch.sigmoid(z),
           "leaky_relu": lambda z, i: torch.nn.functional.leaky_relu(z, 0.01),
           "prelu": lambda z, i: torch.nn.functional.prelu(z, params[f"alpha{i}"])}[activation]
    h = torch.tensor(X)
    n_layers = len(hidden) + 1
    for i in range(1, n_layers + 1):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < n_layers:
            h = act(h, i)
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


def test_a_momentum_training_run_matches_torch_step_for_step():
    """Trainer.fit (momentum fused into the backward pass, L2 folded into the layers' scales,
    biases, shuffled minibatches) against the same run in PyTorch: autograd, torch.optim.SGD,
    the trainer's row order; the weights at the end and the loss of every step."""
    from mlplab.trainer import Trainer

    n, batch, epochs, reg, lr, mu = 60, 15, 3, 1e-2, 0.1, 0.9
    rs = np.random.RandomState(3)
    X, y = rs.randn(n, 8), rs.randint(0, 4, n)
    model = MLP(8, [7, 5], 4, seed=1, dtype=np.float64)
    p = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in model.params.items()}
    history = Trainer(optimizer="momentum", momentum=mu, lr=lr, schedule="constant", reg=reg,
                      batch_size=batch, epochs=epochs, seed=5).fit(model, X, y)
    torch_losses = []

    opt = torch.optim.SGD(list(p.values()), lr=lr, momentum=mu)
    order = np.random.RandomState(5)  # the trainer draws one permutation per epoch
    for _ in range(epochs):
        perm = order.permutation(n)
        for start in range(0, n, batch):
            rows = perm[start:start + batch]
            h = torch.tensor(X[rows])
            for i in (1, 2):
                h = torch.relu(h @ p[f"W{i}"] + p[f"b{i}"])
            loss = torch.nn.functional.cross_entropy(h @ p["W3"] + p["b3"],
                                                     torch.tensor(y[rows]))
            loss = loss + reg * sum((p[f"W{i}"] ** 2).sum() for i in (1, 2, 3))
            torch_losses.append(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
    for k, v in model.params.items():
        np.testing.assert_allclose(v, p[k].detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(history.loss, torch_losses, rtol=1e-12)


@pytest.mark.parametrize("hidden", [[7], [7, 6, 5]])
def test_every_layer_at_once_matches_autograd(hidden, rng):
    """Batch norm, PReLU, dropout with a fixed mask, label-smoothed softmax cross-entropy and
    L2, in one float64 net of one and three hidden layers: the loss and every gradient against
    PyTorch autograd on the same weights and masks (the other tests here take the layers one at
    a time, and none took dropout or label smoothing)."""
    from mlplab.layers import Dropout

    X, y = rng.randn(9, 5), rng.randint(4, size=9)
    reg, eps = 0.05, 0.1
    model = MLP(5, hidden, 4, seed=3, dtype=np.float64, activation="prelu", batchnorm=True,
                dropout=0.3)
    for name, p in model.params.items():  # slopes and shifts off their starting values
        if name.startswith(("alpha", "beta", "gamma")):
            p[...] += 0.3 * rng.randn(*p.shape)
    model.output.label_smoothing = eps
    drops = [layer for layer in model.layers if isinstance(layer, Dropout)]
    for d in drops:
        d.frozen = True
    model.loss(X, y, reg=reg)  # draws the masks, which the next pass reuses
    loss, grads = model.loss(X, y, reg=reg)
    masks = [d._mask.copy() for d in drops]
    assert all(0 < (m == 0).mean() < 1 for m in masks)  # some units dropped, some kept

    p = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    h = torch.tensor(X)
    for i in range(1, len(hidden) + 1):
        h = h @ p[f"W{i}"]  # no bias before batch norm
        h = torch.nn.functional.batch_norm(h, None, None, p[f"gamma{i}"], p[f"beta{i}"],
                                           training=True, eps=1e-5)
        h = torch.nn.functional.prelu(h, p[f"alpha{i}"]) * torch.tensor(masks[i - 1])
    last = len(hidden) + 1
    scores = h @ p[f"W{last}"] + p[f"b{last}"]
    t_loss = torch.nn.functional.cross_entropy(scores, torch.tensor(y), label_smoothing=eps)
    t_loss = t_loss + reg * sum((p[f"W{i}"] ** 2).sum() for i in range(1, last + 1))
    t_loss.backward()

    assert abs(loss - t_loss.item()) < 1e-12
    assert set(grads) == set(p)
    for k, t in p.items():
        np.testing.assert_allclose(grads[k], t.grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=k)
