"""Using a network: logits, classes and accuracy in evaluation mode, computed in chunks of
:data:`EVAL_CHUNK` rows on the model's device. Training is only one of its users (the per-epoch
accuracies of :func:`mlplab.torch_mlp.fit`); the depth study, the command line and the tests
call it on finished models, so it is not part of the training module.
"""

from __future__ import annotations

import numpy as np
import torch

from mlplab._validation import check_y
from mlplab.torch_mlp.data import as_tensor, check_inputs
from mlplab.torch_mlp.model import MultiLayerPerceptron

#: rows per chunk when evaluating, so memory stays bounded on large splits
EVAL_CHUNK = 8192


@torch.no_grad()
def predict_logits(model: MultiLayerPerceptron, X: np.ndarray | torch.Tensor) -> np.ndarray:
    """Logits (N, K) in evaluation mode, computed in chunks on the model's device."""
    if not isinstance(X, torch.Tensor):
        X, _ = check_inputs(model, X, None)  # a wrong width is a clear error, not a matmul's
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        out = []
        for start in range(0, len(X), EVAL_CHUNK):
            xb = as_tensor(X[start:start + EVAL_CHUNK], param.dtype, param.device)
            out.append(model(xb).cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        return np.empty((0, model.num_classes), dtype=np.float32)
    return np.concatenate(out)


def predict(model: MultiLayerPerceptron, X: np.ndarray | torch.Tensor) -> np.ndarray:
    """Most probable class for each row (evaluation mode)."""
    return predict_logits(model, X).argmax(axis=1) if len(X) else np.empty(0, dtype=np.intp)


def accuracy(model: MultiLayerPerceptron, X: np.ndarray | torch.Tensor,
             y: np.ndarray | torch.Tensor) -> float:
    """Fraction of rows classified correctly (evaluation mode). No rows are an error, as for
    :meth:`mlplab.models.MLP.accuracy`: the accuracy of no predictions is undefined (it was
    NaN here, which a caller could record as a result)."""
    if not isinstance(X, torch.Tensor):
        X, _ = check_inputs(model, X, None)  # the width first, as the NumPy model checks it
    if not len(X):
        raise ValueError("X has no rows: the accuracy of no predictions is undefined.")
    if isinstance(y, torch.Tensor):
        y = y.cpu().numpy()
    y = check_y(np.asarray(y), len(X), model.num_classes)  # predict checks X
    return float(np.mean(predict(model, X) == y))
