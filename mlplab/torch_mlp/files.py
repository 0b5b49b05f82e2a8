"""Files of the PyTorch network: :func:`save_torch_model` writes a model's config and
``state_dict`` atomically, :func:`load_torch_model` reads them back with
``torch.load(weights_only=True)``, so that a file cannot run code; :func:`save_torch_checkpoint`
and :func:`load_torch_checkpoint` do the same for a run's checkpoint (the training state
:func:`mlplab.torch_mlp.fit` hands out after every epoch). The file formats
(:data:`TORCH_MODEL_FORMAT`, :data:`TORCH_CHECKPOINT_FORMAT`) are a contract with files on disk,
whatever trained the model, so they have a module of their own.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from mlplab.torch_mlp.model import MultiLayerPerceptron

TORCH_MODEL_FORMAT = "mlplab-torch-model"
TORCH_CHECKPOINT_FORMAT = "mlplab-torch-checkpoint"


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


def _read(path: str | os.PathLike, what: str) -> Any:
    """A file's contents by ``torch.load(weights_only=True)`` onto the CPU; a missing or
    unreadable file is one line naming it as a PyTorch ``what``; a folder is a missing file, as
    :func:`mlplab.io.read_npz` has it (it was "not a readable PyTorch model file ([Errno 21] Is
    a directory...)", a ValueError)."""
    # asked first, as read_npz does: opening a folder is an IsADirectoryError on POSIX only;
    # Windows refuses it as a PermissionError ("[Errno 13] Permission denied"), a ValueError here
    if os.path.isdir(path):
        raise FileNotFoundError(f"{path} is a folder, not a PyTorch {what}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}.") from None
    except IsADirectoryError:  # (made a folder since)
        raise FileNotFoundError(f"{path} is a folder, not a PyTorch {what}.") from None
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path} is not a readable PyTorch {what} ({_reason(exc)}).") from None


def _reason(exc: Exception) -> str:
    """Why ``torch.load`` refused a file, in one line and without the advice of its weights-only
    refusal (several lines, with terminal escapes) to load it with ``weights_only=False`` or to
    allow the file's globals: for a damaged or foreign file that would let its code run, which
    is what loading without pickles prevents. The unpickler's own reason stays."""
    text = str(exc)
    if not text.startswith("Weights only load failed"):
        return " ".join(text.split())
    after = text.partition("WeightsUnpickler error:")[2].strip()
    reason = after.split("\n")[0]
    reason = reason.split(". Please use")[0].strip().rstrip(".")
    return f"not plain tensors and values: {reason or 'refused by weights-only loading'}"


def load_torch_model(path: str | os.PathLike) -> tuple[MultiLayerPerceptron, dict[str, Any]]:
    """``(model, extra)`` from a file written by :func:`save_torch_model` (loaded with
    ``weights_only=True``: no code in the file can run), in evaluation mode on the CPU;
    PyTorch's global random state is left as it was."""
    payload = _read(path, "model file")
    if not isinstance(payload, dict) or payload.get("format") != TORCH_MODEL_FORMAT:
        raise ValueError(f"{path} is not an mlplab PyTorch model file (written by "
                         "mlplab torch train / save_torch_model).")
    config, state = payload.get("config") or {}, payload.get("state_dict") or {}
    try:
        # the weights' own dtype first, so float64 weights are not rounded through float32
        dtype = next(v.dtype for v in state.values() if v.is_floating_point())
        # the initial weights, replaced below, from a generator of their own: drawn from the
        # global one they changed the caller's random numbers
        with torch.random.fork_rng(devices=[]):
            model = MultiLayerPerceptron(**config).to(dtype)
        model.load_state_dict(state)
    except (TypeError, KeyError, RuntimeError, StopIteration, AttributeError) as exc:
        raise ValueError(f"{path}: the stored weights do not match the stored config "
                         f"({exc}).") from None
    return model.eval(), dict(payload.get("extra") or {})


def save_torch_checkpoint(path: str | os.PathLike, state: dict[str, Any],
                          extra: dict[str, Any] | None = None) -> None:
    """Write a training state of :func:`mlplab.torch_mlp.fit` (``on_checkpoint``) and ``extra``
    (plain values: what the run records beside it) to ``path`` atomically: a crash while it is
    written leaves the previous checkpoint whole."""
    from mlplab.io import atomic_path

    payload = {"format": TORCH_CHECKPOINT_FORMAT, "version": 1, "state": state,
               "extra": dict(extra or {})}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_torch_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(training state, extra)`` from a file written by :func:`save_torch_checkpoint`, read with
    ``weights_only=True`` onto the CPU (``fit`` moves the optimiser's state to the model's
    device)."""
    payload = _read(path, "checkpoint")
    # an extra that is not a dict failed in dict() with Python's words, which mlplab runs did not
    # always catch (a TypeError for a list)
    if not isinstance(payload, dict) or payload.get("format") != TORCH_CHECKPOINT_FORMAT \
            or not isinstance(payload.get("state"), dict) \
            or not isinstance(payload.get("extra") or {}, dict):
        raise ValueError(f"{path} is not an mlplab PyTorch checkpoint (written by "
                         "mlplab torch train).")
    return payload["state"], dict(payload.get("extra") or {})


def torch_checkpoint_progress(path: str | os.PathLike) -> dict[str, Any]:
    """How far the run of a PyTorch checkpoint got: ``epoch``, ``iteration``, ``seconds`` trained
    and the :class:`~mlplab.trainer.History` so far, as
    :func:`mlplab.runs.checkpoint.checkpoint_progress` gives them for a NumPy run's (what
    ``mlplab runs`` shows of a run still training or killed). A ``ValueError`` naming the file if
    it is not a readable checkpoint."""
    from mlplab._validation import is_int, is_number
    from mlplab.trainer import History

    state, extra = load_torch_checkpoint(path)
    try:
        if not isinstance(state["history"], dict):  # History.from_dict: an AttributeError,
            # which made mlplab runs fail as a whole on one damaged checkpoint
            raise TypeError(f"its history is a {type(state['history']).__name__}, not a dict")
        history = History.from_dict(state["history"])
        epoch, iteration, seconds = state["epoch"], state["iteration"], extra.get("seconds", 0.0)
        if not (is_int(epoch) and is_int(iteration) and is_number(seconds)):
            raise TypeError("epoch, iteration or seconds is not a number")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a complete PyTorch checkpoint ({exc}).") from None
    return {"epoch": int(epoch), "iteration": int(iteration), "seconds": float(seconds),
            "history": history}
