"""Model files of the PyTorch network: :func:`save_torch_model` writes a model's config and
``state_dict`` atomically, :func:`load_torch_model` reads them back with
``torch.load(weights_only=True)``, so that a file cannot run code. The file format
(:data:`TORCH_MODEL_FORMAT`) is a contract with files on disk, whatever trained the model, so it
has a module of its own.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from mlplab.torch_mlp.model import MultiLayerPerceptron

TORCH_MODEL_FORMAT = "mlplab-torch-model"


def save_torch_model(path: str | os.PathLike, model: MultiLayerPerceptron,
                     extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` (its ``config`` and ``state_dict``, on the CPU) to ``path`` atomically; the
    file holds only tensors and plain Python values, so :func:`load_torch_model` reads it with
    ``torch.load(weights_only=True)``."""
    from mlplab.io import atomic_path

    payload = {"format": TORCH_MODEL_FORMAT, "version": 1, "config": dict(model.config),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "extra": dict(extra or {})}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_torch_model(path: str | os.PathLike) -> tuple[MultiLayerPerceptron, dict[str, Any]]:
    """``(model, extra)`` from a file written by :func:`save_torch_model` (loaded with
    ``weights_only=True``: no code in the file can run), in evaluation mode on the CPU."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such model file.") from None
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path} is not a readable PyTorch model file ({exc}).") from None
    if not isinstance(payload, dict) or payload.get("format") != TORCH_MODEL_FORMAT:
        raise ValueError(f"{path} is not an mlplab PyTorch model file (written by "
                         "mlplab torch train / save_torch_model).")
    config, state = payload.get("config") or {}, payload.get("state_dict") or {}
    try:
        # the weights' own dtype first, so float64 weights are not rounded through float32
        dtype = next(v.dtype for v in state.values() if v.is_floating_point())
        model = MultiLayerPerceptron(**config).to(dtype)
        model.load_state_dict(state)
    except (TypeError, KeyError, RuntimeError, StopIteration, AttributeError) as exc:
        raise ValueError(f"{path}: the stored weights do not match the stored config "
                         f"({exc}).") from None
    return model.eval(), dict(payload.get("extra") or {})
