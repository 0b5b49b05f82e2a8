"""NumPy <-> PyTorch: :func:`from_numpy` and :func:`to_numpy` copy weights between mlplab's
hand-written :class:`mlplab.MLP` and a :class:`MultiLayerPerceptron` (``W`` is (D, H) there,
``Linear.weight`` is (H, D) here). It is the one module of the package that depends on mlplab's
NumPy models, so the network and its training do not.
"""

from __future__ import annotations

import numpy as np
import torch

from mlplab.layers import Affine, BatchNorm, Dropout, ReLU
from mlplab.models import ACTIVATIONS, BUILT_IN_ACTIVATIONS, MLP
from mlplab.torch_mlp.model import INIT_STD, MultiLayerPerceptron, param_dtype


def from_numpy(mlp: MLP) -> MultiLayerPerceptron:
    """A :class:`MultiLayerPerceptron` holding the weights of ``mlp`` (copies), in its dtype.

    ``mlp`` must use ReLU (the exercise's torch net does). ``Linear.weight`` is ``W.T``: mlplab
    computes ``X @ W`` with ``W`` (D, H), PyTorch ``x @ weight.T`` with ``weight`` (H, D). Batch
    norm's ``gamma/beta`` and running statistics map to ``weight/bias/running_mean/running_var``
    (both default to eps 1e-5 and keep 0.9 of the running statistic per step; PyTorch updates
    ``running_var`` with the unbiased batch variance, mlplab with the biased one)."""
    if not isinstance(mlp, MLP):
        raise TypeError(f"from_numpy needs an mlplab.MLP; got {type(mlp).__name__}.")
    c = mlp.config
    if c["activation"] != "relu":
        raise ValueError(f"the PyTorch MultiLayerPerceptron uses ReLU, but this MLP uses "
                         f"{c['activation']!r}; only ReLU networks can be converted.")
    # the name alone is not enough: register_activation("relu", ..., replace=True) may have
    # built another layer, even one with parameters (sized=True), which would be dropped
    other = next((layer for layer in mlp.layers if type(layer) is not ReLU
                  and not isinstance(layer, Affine | BatchNorm | Dropout)), None)
    if other is not None:
        raise ValueError(f"the PyTorch MultiLayerPerceptron uses ReLU, but this MLP's 'relu' "
                         f"is a registered {type(other).__name__}; only ReLU networks can be "
                         "converted.")
    dtype = torch.float64 if mlp.dtype == np.float64 else torch.float32
    model = MultiLayerPerceptron(c["input_size"], c["hidden_sizes"], c["num_classes"],
                                 dropout=c["dropout"], batchnorm=c["batchnorm"]).to(dtype)
    state = mlp.state_dict()
    with torch.no_grad():
        for i, lin in enumerate(model.linears, start=1):
            lin.weight.copy_(torch.from_numpy(state[f"W{i}"].T.copy()))
            if lin.bias is not None:
                lin.bias.copy_(torch.from_numpy(state[f"b{i}"]))
        for i, bn in enumerate(model.batchnorms, start=1):
            bn.weight.copy_(torch.from_numpy(state[f"gamma{i}"]))
            bn.bias.copy_(torch.from_numpy(state[f"beta{i}"]))
            mean, var = _running_stats(bn)
            mean.copy_(torch.from_numpy(state[f"running_mean{i}"]))
            var.copy_(torch.from_numpy(state[f"running_var{i}"]))
    model.eval()
    return model


def _running_stats(bn: torch.nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """``bn``'s running mean and variance (MultiLayerPerceptron's batch norms track them;
    PyTorch types them as optional for those that do not)."""
    assert bn.running_mean is not None and bn.running_var is not None
    return bn.running_mean, bn.running_var


def relu_replaced() -> bool:
    """Whether ``relu`` is registered as another layer than mlplab's (a plugin's
    ``register_activation("relu", ..., replace=True)``): :func:`to_numpy` then refuses, and so
    does a run whose ``model.npz`` it would write, before training."""
    return ACTIVATIONS["relu"] is not BUILT_IN_ACTIVATIONS["relu"]


def check_relu_registered() -> None:
    """Refuse (``ValueError``, saying what to do) when :func:`relu_replaced`."""
    if relu_replaced():
        # MLP builds its "relu" from the registry: a replacement would change the network
        raise ValueError(f"'relu' is registered as {ACTIVATIONS['relu']!r} in this process, so an "
                         "MLP built now would not be the module's ReLU network; convert before "
                         "replacing it, or register it back.")


def to_numpy(module: MultiLayerPerceptron) -> MLP:
    """An :class:`mlplab.MLP` (ReLU) holding the weights of ``module`` (copies): ``W = weight.T``.
    float64 modules give float64 MLPs, anything else float32."""
    if not isinstance(module, MultiLayerPerceptron):
        raise TypeError(f"to_numpy needs an mlplab.torch_mlp.MultiLayerPerceptron; got "
                        f"{type(module).__name__}.")
    c = module.config
    check_relu_registered()
    dtype = np.float64 if param_dtype(module) == torch.float64 else np.float32
    mlp = MLP(c["input_size"], c["hidden_layers"], c["num_classes"], activation="relu",
              init="normal", std=INIT_STD, dropout=c["dropout"], batchnorm=c["batchnorm"],
              seed=0, dtype=dtype)

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(dtype)

    state: dict[str, np.ndarray] = {}
    for i, lin in enumerate(module.linears, start=1):
        state[f"W{i}"] = arr(lin.weight).T.copy()
        if lin.bias is not None:
            state[f"b{i}"] = arr(lin.bias)
    for i, bn in enumerate(module.batchnorms, start=1):
        state[f"gamma{i}"], state[f"beta{i}"] = arr(bn.weight), arr(bn.bias)
        mean, var = _running_stats(bn)
        state[f"running_mean{i}"], state[f"running_var{i}"] = arr(mean), arr(var)
    mlp.load_state_dict(state)
    return mlp
