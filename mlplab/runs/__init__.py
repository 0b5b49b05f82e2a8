"""Training runs: one call from a configuration to a trained model and a run folder on disk.

:func:`train_run` is the library entry point that ``mlplab train``, tuning, the PyTorch comparison
and the report share::

    from mlplab.runs import train_run

    result = train_run(dataset="digits", hidden=[100], epochs=20, out="runs/digits")
    print(result.metrics["val_accuracy"], result.out)

or from a preset, on a dataset fetched first (``mlplab data download cifar10``, or
``download=True``)::

    result = train_run(preset="exercise-default", dataset="cifar10", out="runs/ex")

A run folder holds:

* ``config.json``: the :class:`RunConfig` (every option; ``train_run(**config)`` repeats the run);
* ``model.npz``: the final model and its fitted preprocessing (:func:`mlplab.io.load_model`);
* ``checkpoint.npz``: model, preprocessing and trainer state, rewritten atomically at the end of
  every epoch (and on Ctrl-C): :func:`resume_run` continues from it and ends with exactly the
  result an uninterrupted run with the same seed would have had;
* ``history.csv``: one row per iteration (its loss; the epoch's learning rate and accuracies on
  epoch-ending rows only, the other rows' cells empty);
* ``metrics.json``: train/val (and, with ``eval_test``, test) accuracy, epochs, iterations,
  seconds, dataset, model, status (``completed`` or ``interrupted``);
* plots: ``loss.png``, ``accuracy.png``, ``confusion.png`` and, for image data, ``weights.png``.

While a process trains the run it also holds ``.lock``, which refuses a second process (a
``resume_run`` of a run still training elsewhere) and is removed when the run ends.

The package, one idea per module, bottom to top: :mod:`~mlplab.runs.config` (``RunConfig``,
``build_config``), :mod:`~mlplab.runs.files` (the run folder's files),
:mod:`~mlplab.runs.checkpoint` (``checkpoint.npz``), :mod:`~mlplab.runs.splits` (the record of the
data splits a run saw), :mod:`~mlplab.runs.building` (dataset, augmentation and descriptions from
a config), :mod:`~mlplab.runs.finished` (loading, evaluating and predicting with a run folder),
:mod:`~mlplab.runs.listing` (the run folders under a folder, for ``mlplab runs``),
:mod:`~mlplab.runs.lock` (one process at a time per run folder) and
:mod:`~mlplab.runs.training` (``train_run``, ``resume_run``). The names in ``__all__`` (the API)
are importable from :mod:`mlplab.runs` itself; the helpers the modules share among themselves are
internal to the package.
"""

from __future__ import annotations

from mlplab.runs.building import (
    describe_model,
    describe_network,
    load_run_dataset,
    make_augmenter,
    make_network_view,
)
from mlplab.runs.checkpoint import CheckpointCallback, load_checkpoint, save_checkpoint
from mlplab.runs.config import (
    AUGMENTATIONS,
    CROP_FILLS,
    RunConfig,
    absolute_data_paths,
    build_config,
    config_summary,
    loaded_with,
    relocated,
)
from mlplab.runs.files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RUN_FILES,
    StaleFileWarning,
    StaleResultError,
    default_run_dir,
    read_history,
    read_metrics,
    remove_partial_writes,
    write_history,
    write_plots,
)
from mlplab.runs.finished import evaluate_run, load_run, predict_images
from mlplab.runs.listing import find_runs, list_runs, summarize_run
from mlplab.runs.lock import RunInUseError, training_process
from mlplab.runs.splits import (
    require_classes,
    require_test_split,
    split_fingerprint,
    split_record,
)
from mlplab.runs.training import (
    RunInterruptedWarning,
    RunResult,
    check_run_data,
    resume_run,
    run_config,
    train_run,
)

__all__ = [
    "AUGMENTATIONS",
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "CROP_FILLS",
    "CheckpointCallback",
    "HISTORY_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "RUN_FILES",
    "RunConfig",
    "RunInUseError",
    "RunInterruptedWarning",
    "RunResult",
    "StaleFileWarning",
    "StaleResultError",
    "absolute_data_paths",
    "build_config",
    "check_run_data",
    "config_summary",
    "loaded_with",
    "default_run_dir",
    "describe_model",
    "describe_network",
    "evaluate_run",
    "find_runs",
    "load_checkpoint",
    "load_run",
    "list_runs",
    "load_run_dataset",
    "make_augmenter",
    "make_network_view",
    "predict_images",
    "read_history",
    "read_metrics",
    "relocated",
    "remove_partial_writes",
    "require_classes",
    "require_test_split",
    "resume_run",
    "run_config",
    "save_checkpoint",
    "split_fingerprint",
    "split_record",
    "summarize_run",
    "train_run",
    "training_process",
    "write_history",
    "write_plots",
]
