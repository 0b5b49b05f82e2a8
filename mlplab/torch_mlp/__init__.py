"""The PyTorch multi-layer perceptron of the exercise's Question 4, and NumPy <-> PyTorch interop.

What the exercise asks, and where it lives here:

* :class:`MultiLayerPerceptron` — ``Linear -> ReLU`` for every hidden size, a final ``Linear`` to
  the classes, logits out, images flattened first (optionally batch norm and dropout, beyond).
* :func:`weights_init` — the exercise's "initial weights": every ``Linear`` weight drawn with
  ``normal_(0.0, 1e-3)`` and biases 0. ``Tensor.normal_(mean, std)`` takes a **standard deviation**,
  so the SPEC's "N(0, 1e-3)" means std 1e-3 (variance 1e-6), exactly as the 2020 exercise code did.
  ``init="default"`` keeps PyTorch's own (Kaiming-uniform) initialisation instead.
* :func:`fit` — the exercise's training: ``CrossEntropyLoss``, Adam (lr 1e-3, ``weight_decay`` =
  reg 1e-3), batches of 200 from a shuffled loader, 10 epochs, the learning rate multiplied by 0.95
  after every epoch (``ExponentialLR``), validation accuracy per epoch.
* :func:`normalize_images` — the exercise's ``ToTensor`` + ``Normalize(0.5, 0.5)`` on raw
  (N, H, W, C) uint8 images, without torchvision.
* :func:`depth_study` — one network per depth (2, 3, 4, 5 layers; "2 layers" is one hidden layer),
  with the test accuracy of the best-by-validation network only.
* :func:`from_numpy` / :func:`to_numpy` — the same weights as an :class:`mlplab.MLP`
  (``W`` is (D, H) there, ``Linear.weight`` is (H, D) here).


One module per idea, bottom to top; their API (``__all__``) is importable here as
``mlplab.torch_mlp.X``, and the helpers they share among themselves are internal to the package:

* :mod:`~mlplab.torch_mlp.model` — the network, its initialisation and its defaults;
* :mod:`~mlplab.torch_mlp.device` — the device (``cpu``, ``cuda``, ``auto``) and CPU threads;
* :mod:`~mlplab.torch_mlp.data` — the input pipeline, and arrays checked against a model;
* :mod:`~mlplab.torch_mlp.predict` — logits, classes and accuracy in evaluation mode;
* :mod:`~mlplab.torch_mlp.training` — :class:`TorchTrainConfig` and its defaults, :func:`fit`;
* :mod:`~mlplab.torch_mlp.depth` — the depth study, its table and its figure;
* :mod:`~mlplab.torch_mlp.files` — model and checkpoint files (``torch.load(weights_only=True)``);
* :mod:`~mlplab.torch_mlp.convert` — NumPy <-> PyTorch weights;
* :mod:`~mlplab.torch_mlp.runs` — :func:`train_run`, :func:`resume_run` (:func:`check_resumable`:
  its refusals alone), :func:`depth_run` and :func:`resume_depth_run`, the folders of ``mlplab
  torch train`` and ``mlplab torch depth`` (each with ``--resume``).

Importing this package (or any of its modules) needs PyTorch: ``pip install 'mlplab[torch]'``.
"""

from __future__ import annotations

import sys

from mlplab.io import cwd_removed

if "torch" not in sys.modules and cwd_removed():
    # PyTorch's Intel oneMKL cannot load libtorch_cpu.so there, and ends the process at once
    # (exit status 2, "Intel oneMKL FATAL ERROR: Cannot load .../libtorch_cpu.so": a broken
    # install, it seemed), in the middle of a report too
    raise OSError("PyTorch cannot be loaded while the current folder is a removed one (its "
                  "Intel oneMKL ends the process); cd to a folder that exists.")

try:
    import torch  # noqa: F401  (the package's one check that PyTorch is there)
except ImportError as exc:  # torch is an optional extra
    raise ImportError(
        "mlplab.torch_mlp needs PyTorch, which is not installed; install it with "
        "pip install 'mlplab[torch]' (PyPI's Linux build includes CUDA, several GB: for the "
        "CPU-only one run pip install 'torch<2.14' --index-url "
        "https://download.pytorch.org/whl/cpu first)."
    ) from exc

from mlplab.runs.training import RunInterruptedWarning
from mlplab.torch_mlp.convert import from_numpy, to_numpy
from mlplab.torch_mlp.data import MEAN, STD, input_pipeline, normalize_images
from mlplab.torch_mlp.depth import (
    DEPTH_COLUMNS,
    DepthResult,
    StudyProgress,
    depth_study,
    depth_table_csv,
    depth_table_markdown,
    plot_depth,
)
from mlplab.torch_mlp.device import (
    DEVICES,
    available_cpus,
    device_record,
    flushing_subnormals,
    parse_device,
    select_device,
    set_threads,
    subnormals_flushed,
    threads_kept,
)
from mlplab.torch_mlp.files import (
    TORCH_CHECKPOINT_FORMAT,
    TORCH_MODEL_FORMAT,
    load_torch_checkpoint,
    load_torch_model,
    save_torch_checkpoint,
    save_torch_model,
    torch_checkpoint_progress,
)
from mlplab.torch_mlp.model import (
    HIDDEN,
    INIT_STD,
    INITS,
    MAX_DEPTH,
    MultiLayerPerceptron,
    build_model,
    hidden_for_depth,
    l2_penalty,
    weights_init,
)
from mlplab.torch_mlp.predict import EVAL_CHUNK, accuracy, predict, predict_logits
from mlplab.torch_mlp.runs import (
    DepthRunResult,
    TorchRunResult,
    check_model_options,
    check_resumable,
    depth_run,
    describe,
    resume_depth_run,
    resume_run,
    train_run,
)
from mlplab.torch_mlp.training import (
    BATCH_SIZE,
    EPOCHS,
    LR,
    LR_DECAY,
    REG,
    ShuffledBatches,
    TorchTrainConfig,
    TrainingStateError,
    batches_per_epoch,
    check_batchnorm_batches,
    fit,
)

__all__ = [
    "BATCH_SIZE",
    "DEPTH_COLUMNS",
    "DEVICES",
    "DepthResult",
    "DepthRunResult",
    "EPOCHS",
    "EVAL_CHUNK",
    "HIDDEN",
    "INITS",
    "MAX_DEPTH",
    "INIT_STD",
    "LR",
    "LR_DECAY",
    "MEAN",
    "MultiLayerPerceptron",
    "REG",
    "RunInterruptedWarning",
    "STD",
    "ShuffledBatches",
    "StudyProgress",
    "TORCH_CHECKPOINT_FORMAT",
    "TORCH_MODEL_FORMAT",
    "TorchRunResult",
    "TorchTrainConfig",
    "TrainingStateError",
    "accuracy",
    "available_cpus",
    "batches_per_epoch",
    "build_model",
    "check_batchnorm_batches",
    "check_model_options",
    "check_resumable",
    "depth_run",
    "depth_study",
    "depth_table_csv",
    "depth_table_markdown",
    "describe",
    "device_record",
    "fit",
    "flushing_subnormals",
    "from_numpy",
    "hidden_for_depth",
    "input_pipeline",
    "l2_penalty",
    "load_torch_checkpoint",
    "load_torch_model",
    "normalize_images",
    "parse_device",
    "plot_depth",
    "predict",
    "predict_logits",
    "resume_depth_run",
    "resume_run",
    "save_torch_checkpoint",
    "save_torch_model",
    "select_device",
    "set_threads",
    "subnormals_flushed",
    "threads_kept",
    "to_numpy",
    "torch_checkpoint_progress",
    "train_run",
    "weights_init",
]
