"""PyTorch runs: :func:`train_run`, from a dataset and the exercise's settings to a trained
:class:`MultiLayerPerceptron` and a run folder like ``mlplab train``'s, and :func:`depth_run`, the
depth study written out as a table, a figure and ``depth.json``; :func:`resume_run` and
:func:`resume_depth_run` continue them after a stop. ``mlplab torch train`` and ``mlplab torch
depth`` are a command-line shell over these; a Python user gets the same folders from them::

    from mlplab import torch_mlp as tm

    result = tm.train_run("digits", out="runs/torch", hidden=[50], epochs=10, eval_test=True)
    result.metrics["val_accuracy"], result.model, result.preprocessing, result.out

Every check that can fail (the option values, ``out``, the dataset, a test split for
``eval_test``, the device) runs before the folder is made, so a failed call leaves nothing behind
and the same call, corrected, can use the same ``out``. This module is the top of the package: it
puts the others together and none of them imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mlplab import environment, io
from mlplab._text import counted, duration, path_word, shell_command
from mlplab._validation import (
    check_choice,
    check_positive,
    is_bool,
    is_int,
    is_number,
    setting,
)
from mlplab.data.base import (
    DatasetError,
    DatasetNotFoundError,
    SplitSizeError,
    download_hint,
)
from mlplab.runs.building import moved_data_hint
from mlplab.runs.config import NO_PLOTS_KEY, check_same_settings, layer_sizes
from mlplab.runs.files import (
    DEPTH_CHECKPOINT_FILE,
    DEPTH_CONFIG_FILE,
    DEPTH_FILE,
    OUTPUT_KINDS,
    TORCH_CHECKPOINT_FILE,
    beside_config,
    check_run_folder,
    diverged_study,
    file_state,
    has_checkpoint,
    nothing_to_resume,
    only_a_torch_config,
    refuse_broken_links,
    refuse_if_nothing_saved,
    refuse_other_output,
    remove_partial_writes,
    remove_results,
    resume_setting,
    save_into_run,
    try_remove,
    unrecorded_divergence,
    warn_stale_file,
    warn_stale_left,
    where_next_run,
    where_next_study,
    writing_over,
)
from mlplab.runs.lock import refuse_if_training, run_lock
from mlplab.runs.splits import (
    check_same_data,
    check_same_decoding,
    image_decoding,
    split_record,
)
from mlplab.runs.training import RunOutcome, warn_if_interrupted
from mlplab.torch_mlp.convert import check_relu_registered, to_numpy
from mlplab.torch_mlp.data import input_pipeline
from mlplab.torch_mlp.depth import (
    DepthResult,
    StudyProgress,
    check_depths,
    depth_study,
    depth_table_csv,
    depth_table_markdown,
    plot_depth,
)
from mlplab.torch_mlp.device import (
    MAX_THREADS,
    device_record,
    parse_device,
    select_device,
    set_threads,
    threads_kept,
)
from mlplab.torch_mlp.files import (
    load_torch_checkpoint,
    load_torch_model,
    save_torch_checkpoint,
    save_torch_model,
)
from mlplab.torch_mlp.model import (
    HIDDEN,
    INIT_STD,
    INITS,
    MultiLayerPerceptron,
    build_model,
    check_dropout,
    hidden_for_depth,
)
from mlplab.torch_mlp.predict import accuracy, predict
from mlplab.torch_mlp.training import (
    BATCH_SIZE,
    EPOCHS,
    LR,
    LR_DECAY,
    REG,
    TorchTrainConfig,
    TrainingStateError,
    batches_per_epoch,
    check_batchnorm_batches,
    check_training_state,
    fit,
    state_settings,
)
from mlplab.trainer import History, TrainingDivergedError

if TYPE_CHECKING:
    from mlplab.data import Dataset, Pipeline

#: the files of a PyTorch run folder (the NumPy run folder's names, and ``model.pt``)
TORCH_CONFIG_FILE = "config.json"
TORCH_MODEL_FILE = "model.pt"
NUMPY_MODEL_FILE = "model.npz"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
#: the training state after the last epoch done, from which ``--resume`` goes on
CHECKPOINT_FILE = TORCH_CHECKPOINT_FILE


@dataclass(repr=False)
class TorchRunResult(RunOutcome):
    """What :func:`train_run` returns, as :class:`mlplab.runs.RunResult` for a NumPy run.

    ``model`` (the trained :class:`MultiLayerPerceptron`, on the CPU), ``preprocessing`` (the
    fitted input pipeline: ``predict(model, preprocessing.transform(images))``), ``history``,
    ``metrics`` (as in ``metrics.json``), ``config`` (as in ``config.json``), ``classes`` and
    ``out`` (the run folder, or None when nothing was written) and ``seconds`` (the training's
    wall time, unrounded; ``metrics["seconds"]`` is it to the millisecond).
    """

    config: dict[str, Any]
    model: MultiLayerPerceptron
    preprocessing: Any
    history: History
    metrics: dict[str, Any]
    classes: list[str]
    out: Path | None = None
    seconds: float = 0.0


@dataclass
class DepthRunResult:
    """What :func:`depth_run` returns: the rows of the table (``results``), the table as
    Markdown (``table``, as in ``depth.md``), ``summary`` (as in ``depth.json``), ``out`` (the
    folder, or None when nothing was written) and ``seconds`` (the study's wall time,
    unrounded)."""

    results: list[DepthResult]
    table: str
    summary: dict[str, Any]
    out: Path | None = None
    seconds: float = 0.0

    def __repr__(self) -> str:
        # a summary, as RunResult's: the dataclass repr printed every row, the table and the
        # whole summary with each network's per-epoch curves on one line (2 KB for two networks
        # of one epoch in a notebook cell ending in depth_run(...)); they are the attributes
        best = [f"{r.init} init, {counted(r.depth, 'layer')}: val_accuracy={r.val_acc:.4f}"
                for r in self.results if r.best]
        return (f"DepthRunResult(dataset={self.summary.get('dataset')!r}, "
                f"networks={len(self.results)}, best={best!r}, "
                f"out={None if self.out is None else str(self.out)!r}, "
                f"seconds={self.seconds:.1f})")


def describe(model: MultiLayerPerceptron) -> str:
    """``"PyTorch MLP 3072-50-10 relu"`` plus batch norm / dropout when used."""
    from mlplab.runs import describe_network

    c = model.config
    return describe_network("PyTorch MLP",
                            [c["input_size"], *c["hidden_layers"], c["num_classes"]], "relu",
                            c["batchnorm"], c["dropout"])


# ----------------------------------------------------------------------------------- checks
def check_model_options(init_std: float, dropout: float, batchnorm: bool = False,
                        batch_size: int = BATCH_SIZE) -> None:
    """The model settings that :func:`build_model` would check only once the data has loaded,
    checked first: a ``ValueError`` naming the option (``init_std``, ``dropout``,
    ``batch_size``)."""
    check_positive(init_std, "init_std")
    check_dropout(dropout)
    if batchnorm:
        check_batchnorm_batches(batch_size)


def _diverged(path: Path) -> bool:
    """Whether the config.json in run folder ``path`` records that its loss diverged."""
    try:
        config = io.read_json(path / TORCH_CONFIG_FILE)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("diverged"), dict)


def _stopped(path: Path) -> bool:
    """Whether ``path`` holds a PyTorch run with a checkpoint that has not completed, or one
    stopped by Ctrl-C (before its first epoch ended it has no checkpoint), or stopped again
    while it wrote its results (a model file, no ``metrics.json``): one that ``resume_run``
    continues."""
    from mlplab.runs import read_metrics

    try:
        status = read_metrics(path / METRICS_FILE).get("status")
    except (OSError, ValueError):
        return False
    # (io's checks: pathlib's is_file() and exists() answer False for a loop of links, which
    # _check_out refuses by name before this is asked)
    unwritten = io.nothing_at(path / METRICS_FILE) and any(
        io.found_file(path / name) for name in (TORCH_MODEL_FILE, NUMPY_MODEL_FILE))
    return status == "interrupted" or unwritten or (io.found_file(path / CHECKPOINT_FILE)
                                                    and status != "completed")


def _check_out(path: Path, marker: str) -> None:
    """Refuse, in one line, an ``out`` that cannot become a fresh run folder, before anything is
    loaded or written (mkdir's own errors would read "[Errno 17] File exists: ...")."""
    out = setting("--out", "out")
    io.check_out_folder(path)
    if io.is_folder(path):
        # another command's folder: a tuning, a report, a depth study for a run and a run
        # folder for a depth study (its own kind is checked below; a study used to be written
        # into a run folder, whose evaluate and runs listing then took it for the run)
        if marker == TORCH_CONFIG_FILE:
            refuse_other_output(path, skip=("run",))
            refuse_broken_links(path, (TORCH_CONFIG_FILE, CHECKPOINT_FILE, TORCH_MODEL_FILE,
                                       NUMPY_MODEL_FILE, METRICS_FILE))
        else:
            refuse_other_output(path, skip=("depth",), purpose="depth study")
            refuse_broken_links(path, (DEPTH_FILE, DEPTH_CONFIG_FILE, DEPTH_CHECKPOINT_FILE))
        # a run still training has a lone config.json too
        refuse_if_training(path, "a run" if marker == TORCH_CONFIG_FILE else "a depth study")
        if marker == DEPTH_FILE and io.nothing_at(path / DEPTH_FILE) and \
                not io.nothing_at(path / DEPTH_CONFIG_FILE) and not diverged_study(path):
            raise ValueError(f"{path} holds a depth study that stopped before its end; continue "
                             f"it with {_resume_command(path, 'study')}, or choose another "
                             f"{out}.")
        if not io.nothing_at(path / marker) and not (marker == TORCH_CONFIG_FILE
                                                     and only_a_torch_config(path)):
            if marker == TORCH_CONFIG_FILE and _diverged(path) and beside_config(path):
                # files its divergence could not remove (or the user's): --resume, which
                # _stopped offers for a stop's model file, refuses a diverged run
                raise ValueError(f"{path} holds a run whose loss diverged, beside files a new "
                                 f"run there would not replace "
                                 f"({', '.join(beside_config(path))}); remove them, or choose "
                                 f"another {out}.")
            if marker == TORCH_CONFIG_FILE and _stopped(path):
                # (no checkpoint: stopped in its first epoch, or by an mlplab before 1 Dec
                # 2026, which kept none; --resume trains it from the start)
                how = ("; continue it" if io.found_file(path / CHECKPOINT_FILE) else
                       " with no checkpoint; train it again from the start")
                raise ValueError(f"{path} holds a run that stopped before its end{how} with "
                                 f"{_resume_command(path, 'run')}, or choose another {out}.")
            raise ValueError(f"{path} already holds results ({marker}); choose another {out}.")


def _clear_diverged_study(path: Path) -> None:
    """Remove the files of the diverged study in ``path`` that a new study there would take
    for its own: its finished networks (of other settings) and its checkpoint. Before the new
    ``depth-config.json`` is written, so that a stop in between leaves a diverged study. A file
    that cannot be removed ends the new study there, in one line naming it: the diverged study
    stays (its depth-config.json unchanged), for a new study to take once that file is gone."""
    def kept(file: Path, exc: OSError, doing: str = "remove") -> OSError:
        return OSError(f"cannot {doing} {file} ({exc.strerror or io.one_line(exc)}) of the "
                       f"diverged depth study in {path}, which a new study there would take for "
                       f"its own; remove it, or choose another {setting('--out', 'out')}.")

    networks = path / NETWORKS_DIR
    try:  # (sorted: the same file named whatever order the file system lists them in)
        old = sorted(file for file in networks.iterdir()
                     if file.is_file() and (file.suffix == ".pt" or file.name.startswith(".")))\
            if networks.is_dir() else []
    except OSError as exc:
        raise kept(networks, exc, "look into") from None
    for file in (path / DEPTH_CHECKPOINT_FILE, *old):
        try:
            file.unlink(missing_ok=True)
        except OSError as exc:
            raise kept(file, exc) from None
    with contextlib.suppress(OSError):  # a file of the user's own is left where it is
        networks.rmdir()


def _new_dir(path: Path, marker: str) -> Path:
    """Create run folder ``path``, checked again by :func:`_check_out` (the file system may have
    changed while the data loaded); any other failure is still one line naming the folder."""
    _check_out(path, marker)
    out = setting("--out", "out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create {out} {path}: {io.why_no_folder(path, exc)}; choose another "
                      f"{out}.") from None
    return path


def _settings(*, init_std: float, dropout: float, batchnorm: bool, epochs: int, batch_size: int,
              lr: float, reg: float, lr_decay: float, seed: int | None, device: str,
              threads: int | None, progress: bool, verbose: bool
              ) -> tuple[TorchTrainConfig, int, torch.device]:
    """The training settings checked, PyTorch's threads set and the device chosen."""
    parse_device(device)  # a misspelt device, told apart from a missing GPU (select_device)
    check_model_options(init_std, dropout, batchnorm, batch_size)
    threads_used = set_threads(threads)
    dev = select_device(device)
    cfg = TorchTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, reg=reg,
                           lr_decay=lr_decay, seed=seed, device=str(dev), threads=threads_used,
                           progress=progress, verbose=verbose)
    cfg.validate()
    return cfg, threads_used, dev


def _started_elsewhere(out_dir: Path, what: str) -> ValueError:
    """The error for an output folder that another process has just claimed for ``what``."""
    return ValueError(f"{out_dir} already holds {what}, which another process has just "
                      f"started; choose another {setting('--out', 'out')}.")


def _write_first_config(path: Path, config: dict[str, Any], exclusive: bool, what: str) -> None:
    """Write a new run's or study's config, the file that claims its folder: ``exclusive``
    unless it replaces a stale one, so that of two processes started at once with the same out,
    the second is refused (:func:`_started_elsewhere`)."""
    try:
        io.write_json(path, config, exclusive=exclusive)
    except FileExistsError:
        raise _started_elsewhere(path.parent, what) from None


def _recorded_settings(config: dict[str, Any], device: str | None, threads: int | None,
                       progress: bool, verbose: bool, source: Path
                       ) -> tuple[TorchTrainConfig, int, torch.device]:
    """:func:`_settings` of a resumed run's or study's recorded ``config`` (read from
    ``source``), on ``device`` and ``threads`` where given (the two settings a resume may
    change). A recorded device or thread count that cannot be used here is blamed on the file
    and the setting that overrides it, not on a flag the user never gave."""
    if device is None:
        recorded = config["device"]
        try:
            spelt = parse_device(recorded)
        except ValueError:
            raise ValueError(f"{source}: device is {json.dumps(recorded)}, not cpu, cuda, "
                             "cuda:N or auto; the file was edited or damaged: put back the "
                             f"value it had, or give {setting('--device', 'device')}.") from None
        if spelt not in ("cpu", "auto") and not torch.cuda.is_available():
            on_cpu = setting("--device cpu", "device='cpu'")
            raise ValueError(f"the {'study' if 'layers' in config else 'run'} was trained on "
                             f"{spelt} ({source}) and PyTorch sees no CUDA GPU here; add "
                             f"{on_cpu} to resume it on the CPU.")
        if spelt.startswith("cuda:") and int(spelt[5:]) >= torch.cuda.device_count():
            # (a run from a machine with more GPUs): not "--device cuda:3: no such GPU"
            count = torch.cuda.device_count()
            other = setting("--device cuda", "device='cuda'")
            raise ValueError(f"the {'study' if 'layers' in config else 'run'} was trained on "
                             f"{spelt} ({source}) and PyTorch sees {count} GPU"
                             f"{'s' if count != 1 else ''} here (cuda:0 .. cuda:{count - 1}); "
                             f"add {other} (or another cuda:N) to resume it on one of them.")
    # null is what a run or study started without --threads records: PyTorch's own count
    if threads is None and config["threads"] is not None and not (
            is_int(config["threads"]) and 0 < config["threads"] <= MAX_THREADS):
        raise ValueError(f"{source}: threads is {json.dumps(config['threads'])}, not a positive "
                         f"count of at most {MAX_THREADS}; the file was edited or damaged: put "
                         f"back the value it had, or give {setting('--threads', 'threads')}.")
    return _settings(
        init_std=config["init_std"], dropout=config["dropout"], batchnorm=config["batchnorm"],
        epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"],
        reg=config["reg"], lr_decay=config["lr_decay"], seed=config["seed"],
        device=device if device is not None else config["device"],
        threads=threads if threads is not None else config["threads"], progress=progress,
        verbose=verbose)

#: the loading options of train_run and depth_run, and their defaults
_LOAD_DEFAULTS = {"data_dir": None, "download": False, "mirror": None, "val_size": None,
                  "test_size": None, "image_size": None, "cache": True, "data_seed": 0}
#: how load_dataset names those of them it names otherwise
_LOADER_NAME = {"data_seed": "seed"}


def _load(dataset: str | Dataset, data_seed: int, load: dict[str, Any], progress: bool = True
          ) -> tuple[Dataset, Pipeline, np.ndarray, np.ndarray | None]:
    """The dataset (loaded here when given by name, with the bars of a download or a folder's
    decoding if ``progress``), the fitted input pipeline and the training and validation
    features."""
    if isinstance(dataset, str):
        from mlplab.data import load_dataset

        ds = load_dataset(dataset, data_dir=load["data_dir"], download=load["download"],
                          val_size=load["val_size"], test_size=load["test_size"],
                          image_size=load["image_size"], seed=data_seed, mirror=load["mirror"],
                          cache=load["cache"], progress=progress)
    else:
        ds = dataset
    if not len(ds.y_train):
        raise ValueError(f"the dataset {ds.name} has no training images.")
    from mlplab.runs.splits import require_classes, warn_identical_images, warn_untrained_classes

    require_classes(ds)
    warn_untrained_classes(ds)
    warn_identical_images(ds)
    pre = input_pipeline()
    X = pre.fit_transform(ds.X_train)
    X_val = pre.transform(ds.X_val) if len(ds.y_val) else None
    return ds, pre, X, X_val


def _check_dataset_arg(dataset: Any, load: dict[str, Any]) -> None:
    """A name, or a loaded dataset without loading options (they would be ignored)."""
    if isinstance(dataset, str):
        return
    if not all(hasattr(dataset, a) for a in ("X_train", "y_train", "y_val", "y_test", "name")):
        raise TypeError(f"dataset must be a name or an mlplab.data.Dataset; got "
                        f"{type(dataset).__name__}.")
    given = sorted(k for k, v in load.items() if v != _LOAD_DEFAULTS[k])
    if given:
        raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only "
                         "to a dataset given by name; this one is loaded already: pass its "
                         "name, or a dataset loaded with load_dataset(name, "
                         f"{_LOADER_NAME.get(given[0], given[0])}=...).")


def _split_seed(ds: Dataset, data_seed: int | None) -> int | None:
    """The split seed a run records: the one the dataset was split with where it says
    (``Dataset.load_options``: for a dataset loaded by name, ``data_seed`` or, for None, the
    seed load_dataset drew, which evaluating the run needs to split it alike), else
    ``data_seed``."""
    from mlplab.runs import loaded_with

    return loaded_with(ds).get("data_seed", data_seed)


def _environment(threads: int, device: torch.device) -> dict[str, Any]:
    # the flat keys: PyTorch's side; "environment": mlplab's, as mlplab train records it
    # str(): torch.__version__ is a TorchVersion, which a checkpoint's weights_only load refuses
    # (device_record: "cuda" as its index, so that a resume on the same GPU named cuda:0 is not
    # taken for another device)
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            **device_record(device), "threads": threads, "cpus": os.cpu_count(),
            "machine": platform.machine(), "environment": environment.record()}


#: the fields of an :func:`_environment` record on which a PyTorch result's last bits depend:
#: mlplab, PyTorch, the device (and which GPU), PyTorch's CPU threads and the CPU
TORCH_NUMERIC_FIELDS = ("mlplab", "torch", "device", "gpu", "threads", "cpu")


def _numeric(record: dict[str, Any]) -> dict[str, Any]:
    """An :func:`_environment` record flattened for :func:`environment.numeric_differences`:
    mlplab's own record (version, CPU) with PyTorch's keys over it."""
    inner = record.get("environment")
    return {**(inner if isinstance(inner, dict) else {}),
            **{k: v for k, v in record.items() if k != "environment"}}


def _earlier_environments(recorded: Any, earlier: Any, now: dict[str, Any], source: Path,
                          noun: str) -> list[dict[str, Any]]:
    """The environments that trained the ``noun`` (run or study) before this process and
    differ from ``now`` in what its numbers depend on, oldest first: ``earlier`` (those its
    ``source`` kept) and ``recorded`` (the last one, from ``source``) if it differs, with a
    warning that the result may differ in its last bits from an uninterrupted one (resuming
    repeats the arithmetic exactly only where it rounds alike). A ``source`` written before
    mlplab recorded PyTorch's environment is not compared."""
    kept = [e for e in earlier if isinstance(e, dict)] if isinstance(earlier, list) else []
    if not isinstance(recorded, dict):
        return kept
    then, here = _numeric(recorded), _numeric(now)
    # which GPU only between two GPUs: the device's change says the rest
    changed = environment.numeric_differences(
        then, here, [f for f in TORCH_NUMERIC_FIELDS if f != "gpu" or "gpu" in here])
    if changed:
        # stacklevel 4: this, resume_run (or resume_depth_run), threads_kept, their caller
        warnings.warn(f"{source} was written with another environment ({'; '.join(changed)}): "
                      f"the {noun} continues correctly, but its results may differ from an "
                      f"uninterrupted {noun}'s in the last bits, which needs the same mlplab, "
                      "PyTorch, device, thread count and CPU.", stacklevel=4)
        kept.append(recorded)
    return kept


# ------------------------------------------------------------------------------- train_run
@threads_kept()
def train_run(dataset: str | Dataset = "digits", *, out: str | os.PathLike | None = None,
              hidden: Sequence[int] | int = HIDDEN, init: str = "exercise",
              init_std: float = INIT_STD, dropout: float = 0.0, batchnorm: bool = False,
              epochs: int = EPOCHS, batch_size: int = BATCH_SIZE, lr: float = LR,
              reg: float = REG, lr_decay: float = LR_DECAY, seed: int = 0,
              device: str = "cpu", threads: int | None = None, eval_test: bool = False,
              data_dir: str | os.PathLike | None = None, download: bool = False,
              mirror: str | None = None, val_size: float | None = None,
              test_size: float | None = None, image_size: Any = None, data_seed: int = 0,
              cache: bool = True, plots: bool = True, progress: bool = False,
              verbose: bool = False, announce: bool = False) -> TorchRunResult:
    """Train one :class:`MultiLayerPerceptron` the exercise's way and (with ``out``) write a run
    folder like ``mlplab train``'s, as ``mlplab torch train`` does.

    Parameters
    ----------
    dataset : a dataset name (``digits``, ``cifar10``, ``folder:PATH``, ...), loaded with
        ``data_dir``, ``download``, ``mirror``, ``val_size``, ``test_size``, ``image_size``,
        ``cache`` and the split seed ``data_seed`` as by :func:`mlplab.data.load_dataset`; or an
        already loaded :class:`mlplab.data.Dataset` (raw splits), whose name, split sizes and
        loading options (``Dataset.load_options``) ``config.json`` then records.
    out : the run folder to create; None trains in memory only (no files). A folder that
        already holds a run is refused, except one whose only file is a PyTorch run's
        ``config.json`` (a run that stopped before it saved anything).
    hidden, init, init_std, dropout, batchnorm : the network (:func:`build_model`); ``hidden``
        as :func:`mlplab.runs.train_run` takes it (``[500, 250]``, ``50`` or ``"500,250"``).
    epochs, batch_size, lr, reg, lr_decay, seed, device, threads : the training
        (:class:`TorchTrainConfig`; ``threads`` None: every core this process may use).
    eval_test : also measure the test split (refused up front if there is none).
    plots : write ``loss.png``, ``accuracy.png``, ``confusion.png`` and ``weights.png``.
    progress, verbose : progress bars (training, and the data's download or a folder's
        decoding when loaded by name); a line per epoch.
    announce : print one line to stderr, once the folder is made, saying what trains where.

    Returns
    -------
    TorchRunResult : the model, fitted preprocessing, history, metrics, config and run folder.
        If training was interrupted (Ctrl-C), ``result.interrupted`` is True, the files hold
        the network as it was then, and a :class:`mlplab.runs.RunInterruptedWarning` says so
        and how :func:`resume_run` continues it.

    Raises
    ------
    ValueError : a bad option or ``out``, a bad or missing dataset (``DatasetError``), or (with
        ``out``) ``relu`` registered as another layer in this process, so that the run's
        ``model.npz`` could not be written (:func:`mlplab.torch_mlp.to_numpy`); raised before
        anything is written.
    mlplab.trainer.TrainingDivergedError : the loss became NaN or infinite (``out`` then holds
        only ``config.json``, which records it: :func:`resume_run` refuses the run, and the same
        call, with other settings, may reuse ``out``).
    """
    load = {"data_dir": data_dir, "download": download, "mirror": mirror,
            "val_size": val_size, "test_size": test_size, "image_size": image_size,
            "cache": cache}
    _check_dataset_arg(dataset, {**load, "data_seed": data_seed})
    check_choice(init, INITS, "init")
    if init == "default" and init_std != INIT_STD:
        # PyTorch's own initialisation takes no std: config.json would record one never used
        # (as the command line refuses --init-std; the default std is what every run records)
        raise ValueError(f"{setting('--init-std', 'init_std')} has no effect with "
                         f"{setting('--init default', 'init=' + repr('default'))} (PyTorch's "
                         f"own initialisation); it sets the std of "
                         f"{setting('--init exercise', 'init=' + repr('exercise'))}.")
    hidden = layer_sizes(hidden)  # as mlplab.runs.train_run takes it: 50 is [50]
    cfg, threads_used, dev = _settings(
        init_std=init_std, dropout=dropout, batchnorm=batchnorm, epochs=epochs,
        batch_size=batch_size, lr=lr, reg=reg, lr_decay=lr_decay, seed=seed, device=device,
        threads=threads, progress=progress, verbose=verbose)
    out_dir = io.out_folder(out) if out is not None else None
    if out_dir is not None:  # its model.npz, written after training, would be refused then
        check_relu_registered()
    # a stopped run's lone config.json, which _check_out lets this run replace; decided now,
    # before the data loads, so that a run another process starts meanwhile is not replaced
    stale_config = False
    if out_dir is not None:
        _check_out(out_dir, TORCH_CONFIG_FILE)
        stale_config = (out_dir / TORCH_CONFIG_FILE).exists()
    ds, pre, X, X_val = _load(dataset, data_seed, load, progress)
    if eval_test:
        from mlplab.runs import require_test_split

        require_test_split(ds)
    if batchnorm:
        check_batchnorm_batches(cfg.batch_size, len(ds.y_train))
    model = build_model(X.shape[1], hidden, ds.num_classes, init=init, std=init_std,
                        dropout=dropout, batchnorm=batchnorm, seed=seed)
    config = _run_config(dataset, ds, load, data_seed, hidden, init, init_std, dropout,
                         batchnorm, cfg, device, threads, eval_test)
    config[NO_PLOTS_KEY] = not plots  # (what the resume that evaluate advises repeats)
    with contextlib.ExitStack() as held:
        if out_dir is not None:
            _new_dir(out_dir, TORCH_CONFIG_FILE)
            # another process training into the same folder (a stopped run's lone config.json
            # may be replaced, and a running one's looks the same) is refused
            held.enter_context(run_lock(out_dir, new=True))
            remove_partial_writes(out_dir)  # a killed first attempt's (see train_run)
            _write_first_config(out_dir / TORCH_CONFIG_FILE, config, not stale_config, "a run")
        if announce:
            print(f"training {describe(model)} on {ds.name} ({len(ds.y_train)} train, "
                  f"{len(ds.y_val)} val), {counted(cfg.epochs, 'epoch')}, device {dev}, "
                  f"{counted(threads_used, 'thread')}",
                  file=sys.stderr, flush=True)
        result = _fit_and_write(out_dir, config, model, ds, pre, X, X_val, cfg, threads_used,
                                dev, plots)
    # stacklevel 3: this, threads_kept, the caller
    warn_if_interrupted(result, "mlplab.torch_mlp.resume_run", stacklevel=3)
    return result


def _fit_and_write(out_dir: Path | None, config: dict[str, Any], model: MultiLayerPerceptron,
                   ds: Dataset, pre: Pipeline, X: np.ndarray, X_val: np.ndarray | None,
                   cfg: TorchTrainConfig, threads_used: int, dev: torch.device, plots: bool,
                   state: dict[str, Any] | None = None, seconds_before: float = 0.0,
                   earlier: Sequence[dict[str, Any]] = ()) -> TorchRunResult:
    """Train (from ``state``, a checkpoint's training state, if given), checkpointing into
    ``out_dir`` after every epoch, then measure the network and write the run's files;
    ``earlier``: the other environments that trained it before (:func:`_earlier_environments`),
    kept in the checkpoint and ``metrics.json``."""
    start = time.perf_counter()
    # the environment: what a resume compares its own with
    mixed = {"earlier_environments": list(earlier)} if earlier else {}
    # and the settings a resume must find in config.json again
    extra = {"splits": split_record(ds), **image_decoding(ds),
             "environment": _environment(threads_used, dev), **mixed,
             "settings": _settings_record(config)}

    def save(training_state: dict[str, Any]) -> None:
        assert out_dir is not None  # only handed to fit with a folder
        check_run_folder(out_dir, TORCH_CONFIG_FILE)  # not one removed or moved meanwhile
        save_torch_checkpoint(out_dir / CHECKPOINT_FILE, training_state,
                              {**extra, "seconds": seconds_before + time.perf_counter() - start})

    try:
        history = fit(model, X, ds.y_train, X_val, ds.y_val if X_val is not None else None, cfg,
                      on_checkpoint=save if out_dir is not None else None, resume=state)
    except TrainingDivergedError as exc:
        if out_dir is None:
            raise
        # not into a folder gone meanwhile: the write of config.json below made it again,
        # holding that alone (which a new run then took as a diverged run's)
        check_run_folder(out_dir, TORCH_CONFIG_FILE, diverged="its loss")
        # resuming would repeat the same arithmetic into the same NaN: the checkpoint goes
        # (first: a stop in between leaves a lone config.json, which trains again and records
        # it), and config.json says the loss diverged, which lets --resume refuse it without
        # training and a new run take the folder, as a diverged depth study's
        # A file that cannot be removed is passed over, as mlplab train's record_divergence
        # does: the divergence is the news, and config.json records it whatever is left
        try_remove(out_dir / CHECKPOINT_FILE)
        # and the files of an earlier Ctrl-C's stop (metrics.json first, the mark of results),
        # which kept the folder from being taken by the new run that this error offers
        remove_results(out_dir, also=(TORCH_MODEL_FILE, NUMPY_MODEL_FILE), keep_going=True)
        record = out_dir / TORCH_CONFIG_FILE
        try:
            io.write_json(record, {**config, "diverged": {"error": str(exc)}})
            said = "Resuming this run would repeat it; start"
        except OSError as failed:  # (a full disk): said with the divergence, not instead of it
            said = f"{unrecorded_divergence(record, failed)} Start"
        raise TrainingDivergedError(f"{exc} {said} a new run with other settings, "
                                    f"{where_next_run(out_dir)}.") from None
    seconds = seconds_before + time.perf_counter() - start
    metrics = _metrics(model, history, ds, pre, X, X_val, bool(config["eval_test"]), seconds,
                       config["seed"], config["init"], threads_used, dev)
    metrics.update(mixed)
    model.cpu()
    result = TorchRunResult(config, model, pre, history, metrics, list(ds.classes), out_dir,
                            seconds)
    if out_dir is not None:  # (_write_run checks the folder is still there before each write)
        _write_run(out_dir, result, ds, X_val,
                   batches_per_epoch(len(ds.y_train), cfg.batch_size, bool(config["batchnorm"])),
                   plots)
    return result


@threads_kept()
def resume_run(run: str | os.PathLike, *, data: Dataset | None = None,
               data_dir: str | os.PathLike | None = None, threads: int | None = None,
               device: str | None = None, plots: bool = True, progress: bool = False,
               verbose: bool = False, announce: bool = False) -> TorchRunResult:
    """Continue the PyTorch run in folder ``run`` (stopped by Ctrl-C, a crash or a kill) from its
    last checkpoint, the end of its last whole epoch, to the end it was configured for: the
    files and figures are those an uninterrupted run would have written, and on the same device
    with the same thread count the weights and every figure are the same to the last bit.

    The run's data is loaded again as its ``config.json`` says, and refused if its splits are
    not the ones the run trained on; ``data`` is the dataset itself, for a run trained on a
    dataset given in Python; ``data_dir``, where the run's data is now if it was moved (for a
    ``folder:PATH`` dataset the folder itself): its splits must be the ones the checkpoint
    recorded, and ``config.json`` then names the new place. ``threads`` and ``device``: PyTorch
    CPU threads and the device, if not the run's settings (a run trained on a GPU goes on
    without one with ``device="cpu"``, no longer bit for bit as on the GPU). A run that stopped
    before its first epoch ended (no checkpoint) starts again from the beginning, with the same
    seed, and so does one stopped by an mlplab before 1 Dec 2026, which kept no checkpoint: its
    epochs are trained again, and its saved model is replaced as this run ends or stops. A
    completed run and a folder another process is training are refused, and so is a run whose
    loss diverged (``config.json`` records it; resuming would repeat it), at once.
    Resumed in another environment than its checkpoint records (threads, device, PyTorch, CPU,
    mlplab), the run goes on with a warning saying what changed, and ``metrics.json`` lists the
    earlier ones.
    """
    run_dir = Path(run)
    _resumable(run_dir)  # before a lock file is made in a folder that is not a run's
    check_relu_registered()  # (as train_run: its model.npz, written at the end)
    with run_lock(run_dir):
        config = _resumable(run_dir)  # again: the process that held the lock may have ended it
        if data_dir is not None:
            if data is not None:
                raise ValueError("give the run's data or the folder it moved to (data_dir), not "
                                 "both.")
            config = _moved(config, data_dir)
        remove_partial_writes(run_dir)
        ckpt = run_dir / CHECKPOINT_FILE
        found = has_checkpoint(ckpt)  # (outside the try: no "if it was edited" advice)
        try:
            state, extra = load_torch_checkpoint(ckpt) if found else (None, {})
            if state is not None:
                _check_checkpoint_extra(extra, ckpt)
        except ValueError as exc:  # a damaged checkpoint: say how to go on without it
            raise ValueError(f"{exc} {_without_checkpoint(run_dir)}") from None
        if state is not None:
            # settings edited in config.json since the checkpoint (Adam and the scheduler would
            # go on with the checkpoint's lr, reg and lr_decay, config.json naming others)
            check_same_settings(_checkpoint_settings(state, extra), _settings_record(config),
                                ckpt, run_dir / TORCH_CONFIG_FILE,
                                f"another {setting('--out', 'out')}")
            # a folder's images that a later mlplab decodes otherwise
            check_same_decoding(extra, config["dataset"], run_dir, "resuming")
        cfg, threads_used, dev = _recorded_settings(config, device, threads, progress, verbose,
                                                    run_dir / TORCH_CONFIG_FILE)
        ds, pre, X, X_val = _load_again(config, data, data_dir, run_dir, "torch train",
                                        "resume_run", "run", progress)
        # the splits the run started with (config.json's record: a run stopped before its first
        # checkpoint is checked too), then those of its checkpoint; also the training split's
        # size
        for record, source in ((config.get("splits"), run_dir / TORCH_CONFIG_FILE),
                               (extra.get("splits"), ckpt)):
            if record:
                _check_same_splits(record, ds, source)
        if data_dir is not None:  # the data lives there now: evaluate and --resume look there
            io.write_json(run_dir / TORCH_CONFIG_FILE, config)
        if config["eval_test"]:
            from mlplab.runs import require_test_split

            require_test_split(ds)
        model = build_model(X.shape[1], list(config["hidden"]), ds.num_classes,
                            init=config["init"], std=config["init_std"],
                            dropout=config["dropout"], batchnorm=config["batchnorm"],
                            seed=config["seed"])
        if state is not None:  # refused before "resuming ... after epoch N" is said
            try:
                check_training_state(state, model, len(ds.y_train), cfg)
            except TrainingStateError as exc:
                raise _state_refused(ckpt, exc, run_dir) from None
        # only a checkpoint's epochs were trained elsewhere (without one the run starts again)
        earlier = _earlier_environments(extra.get("environment"),
                                        extra.get("earlier_environments"),
                                        _environment(threads_used, dev), ckpt, "run") \
            if state is not None else []
        if announce:
            done = f"after epoch {state['epoch']} of {cfg.epochs}" if state is not None else \
                f"from the start ({_no_checkpoint(run_dir)})"
            print(f"resuming {describe(model)} on {ds.name} {done}, device {dev}, "
                  f"{counted(threads_used, 'thread')}", file=sys.stderr, flush=True)
        try:
            result = _fit_and_write(run_dir, config, model, ds, pre, X, X_val, cfg,
                                    threads_used, dev, plots, state,
                                    float(extra.get("seconds", 0.0)), earlier)
        except TrainingStateError as exc:  # what check_training_state did not foresee
            raise _state_refused(ckpt, exc, run_dir) from None
    # stacklevel 3: this, threads_kept, the caller
    warn_if_interrupted(result, "mlplab.torch_mlp.resume_run", stacklevel=3)
    return result


def _no_checkpoint(run_dir: Path) -> str:
    """Why a resume of the run in ``run_dir``, which has no checkpoint, starts from the start:
    stopped in its first epoch (nothing to lose), or stopped later by an mlplab before 1 Dec
    2026, which kept no checkpoint.pt (its epochs are trained again, and its model replaced)."""
    from mlplab.runs import read_metrics

    epochs = read_metrics(run_dir / METRICS_FILE).get("epochs")  # (checked by _resumable)
    if not is_int(epochs) or epochs < 1:
        return "it has no checkpoint"
    return (f"it has no {CHECKPOINT_FILE}, as an mlplab before 1 Dec 2026 kept none: its "
            f"{counted(int(epochs), 'epoch')} {'is' if epochs == 1 else 'are'} trained again, "
            "and its saved model replaced as this run ends or stops")


def _state_refused(ckpt: Path, exc: TrainingStateError, run_dir: Path) -> ValueError:
    """fit's refusal of a checkpoint's training state (which names no file), naming it and
    saying how to go on."""
    return ValueError(f"cannot resume from {ckpt}: {exc} "
                      f"{_without_checkpoint(run_dir, f'it or {TORCH_CONFIG_FILE}')}")


def _moved(config: dict[str, Any], data_dir: str | os.PathLike) -> dict[str, Any]:
    """``config`` with its data found in ``data_dir``: for a ``folder:PATH`` dataset the folder
    itself, else the folder of the dataset's files (absolute, as a new run records them)."""
    from mlplab.runs import absolute_data_paths

    if config["dataset"].lower().startswith("folder:"):
        name, _ = absolute_data_paths(f"folder:{os.fspath(data_dir)}", None)
        return {**config, "dataset": name}
    _, where = absolute_data_paths(config["dataset"], os.fspath(data_dir))
    return {**config, "data_dir": where}


def _is_split_record(value: Any) -> bool:
    """Whether ``value`` is a record of a run's or study's splits as :func:`split_record` writes
    it (its sizes and the fingerprints of its validation and test splits), each part of its
    type: the checks against it (``check_same_data``) read the parts with ``.get`` and ``!=``,
    which failed with Python's words or blamed the data for a damaged file."""
    if not isinstance(value, dict):
        return False
    sizes = all(value.get(f"{s}_size") is None or is_int(value[f"{s}_size"])
                for s in ("train", "val", "test"))
    sha1 = value.get("split_sha1", {})
    return sizes and isinstance(sha1, dict) and all(isinstance(v, str) for v in sha1.values())


def _check_same_splits(record: dict[str, Any], ds: Dataset, source: Path,
                       noun: str = "run") -> None:
    """Refuse data whose splits are not those of ``record`` (from ``source``: a run's
    config.json or checkpoint, or, ``noun`` "study", a depth study's depth-config.json), in one
    line that says what else may have changed: the splitting options of that config file."""
    config_file, writer = ((TORCH_CONFIG_FILE, "mlplab torch train") if noun == "run" else
                           (DEPTH_CONFIG_FILE, "mlplab torch depth"))
    check_same_data(record, ds, source, noun,
                    hint=f"If {config_file}'s val_size, test_size, data_seed or image_size was "
                         f"edited, put back the value {writer} wrote.")


def _check_checkpoint_extra(extra: dict[str, Any], ckpt: Path) -> None:
    """Refuse a checkpoint whose record beside the training state is not what
    :func:`_fit_and_write` writes there (its float() and .get() failed with Python's words)."""
    seconds, splits = extra.get("seconds", 0.0), extra.get("splits")
    settings = extra.get("settings")  # (none in a checkpoint of an mlplab before 2 Dec 2026)
    if not is_number(seconds) or not (splits is None or _is_split_record(splits)) or \
            not (settings is None or isinstance(settings, dict)):
        raise ValueError(f"{ckpt} is not a complete PyTorch checkpoint (its seconds, splits or "
                         "settings are not what mlplab torch train writes).")


def _checkpoint_settings(state: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any] | None:
    """The settings a checkpoint (of a run or a depth study) was trained with: its record of
    them, or, in a checkpoint of an mlplab before 2 Dec 2026 that has none, those its training
    ``state`` itself holds (:func:`state_settings`: lr, reg and lr_decay), which a resume
    would otherwise take over from the checkpoint without a word."""
    recorded = extra.get("settings")
    return recorded if recorded is not None else state_settings(state)


def _without_checkpoint(run_dir: Path, edited: str = "it") -> str:
    """What to do with a checkpoint that cannot be resumed from."""
    return (f"If {edited} was edited, put it back; else delete {run_dir / CHECKPOINT_FILE}, and "
            f"{_resume_command(run_dir, 'run')} trains the run again from its start.")


def _resume_command(folder: Path, noun: str) -> str:
    """The command that continues the ``noun`` (``"run"`` of torch train, ``"study"`` of torch
    depth) in ``folder``, quoted to paste into this platform's shell (or, in Python, the
    call)."""
    if noun == "run":  # (with --no-plots where config.json records it, as all run advice is)
        return resume_setting(folder, torch=True)
    return setting(shell_command(["mlplab", "torch", "depth", "--resume", path_word(folder)]),
                   f"resume_depth_run({str(folder)!r})")


def _load_again(config: dict[str, Any], data: Dataset | None,
                data_dir: str | os.PathLike | None, folder: Path, command: str, call: str,
                noun: str, progress: bool
                ) -> tuple[Dataset, Pipeline, np.ndarray, np.ndarray | None]:
    """The data of the stopped ``noun`` (run or study) in ``folder``, loaded again as its
    ``config`` says (or ``data``, the dataset given again in Python), for ``mlplab COMMAND
    --resume`` / ``CALL(...)``; what cannot be loaded is one line saying what to do."""
    if data is None:
        _check_loadable(config["dataset"], call, noun)
        load = {**_LOAD_DEFAULTS, **{k: config[k] for k in ("data_dir", "val_size",
                                                            "test_size", "image_size")}}
        load.pop("data_seed")
        try:
            return _load(config["dataset"], config["data_seed"], load, progress)
        except DatasetNotFoundError as exc:
            # the loader's "add --download", which --resume refused, gives way to the place
            # of data that moved (unless that was the place given)
            moved = "" if data_dir is not None else moved_data_hint(
                f"mlplab {command} --resume {shell_command([path_word(folder)])}",
                f"{call}({str(folder)!r}, data_dir=DIR)")
            raise DatasetNotFoundError(
                f"{str(exc).replace(download_hint(), '')} {moved}".rstrip()) from None
        except SplitSizeError as exc:  # the run's recorded size, which --resume cannot set
            raise DatasetError(f"the {noun}'s {exc.option}{exc.rest} This is not the data the "
                               f"{noun} was trained with: use the data as it was, or train a "
                               f"new {noun}.") from None
    _check_dataset_arg(data, {})
    return _load(data, config["data_seed"], {})


def _check_loadable(name: str, call: str = "resume_run", noun: str = "run") -> None:
    """Refuse to resume, by name, a run trained on a dataset given to it in Python, which
    :func:`mlplab.data.load_dataset` cannot load again, saying what to pass instead."""
    from mlplab.data.datasets import check_dataset_name

    try:
        check_dataset_name(name)
    except DatasetError:
        raise DatasetError(f"this {noun} was trained on a dataset given to it in Python, "
                           f"{name!r}, which load_dataset cannot load again: pass the same "
                           f"Dataset, {call}({noun.upper()}, data=DATASET).") from None


#: the keys of a PyTorch run's config.json that resuming it reads
_RESUME_KEYS = ("dataset", "data_dir", "val_size", "test_size", "image_size", "data_seed",
                "hidden", "init", "init_std", "dropout", "batchnorm", "epochs", "batch_size",
                "lr", "reg", "lr_decay", "seed", "device", "threads", "eval_test")


def _optional(ok: Any) -> Any:
    return lambda value: value is None or ok(value)


#: the types of the values of config.json that resuming reads (their values are checked as a
#: new run's options are)
_RESUME_TYPES = {
    "dataset": (lambda v: isinstance(v, str), "a dataset name"),
    "data_dir": (_optional(lambda v: isinstance(v, str)), "a folder or null"),
    "val_size": (_optional(is_number), "a number or null"),
    "test_size": (_optional(is_number), "a number or null"),
    "data_seed": (_optional(is_int), "an integer or null"),
    "hidden": (lambda v: isinstance(v, list) and all(is_int(h) for h in v),
               "a list of hidden sizes"),
    "init": (lambda v: isinstance(v, str), "an initialisation's name"),
    **{k: (is_number, "a number") for k in ("init_std", "dropout", "lr", "reg", "lr_decay")},
    "batchnorm": (is_bool, "true or false"),
    "epochs": (is_int, "an integer"),
    "batch_size": (is_int, "an integer"),
    "seed": (_optional(is_int), "an integer or null"),
    "device": (lambda v: isinstance(v, str), "a device's name"),
    "threads": (_optional(is_int), "an integer or null"),
    "eval_test": (is_bool, "true or false"),
}


def _check_config(path: Path, config: dict[str, Any], keys: Sequence[str],
                  types: dict[str, Any], writer: str, noun: str, what: str) -> None:
    """Refuse the configuration ``config`` (read from ``path``, written by command ``writer``
    for a ``noun``, a ``what``) if it lacks one of ``keys`` or a value is not of its type in
    ``types``, in one line saying what to do."""
    missing = [k for k in keys if k not in config]
    if missing:
        raise ValueError(f"{path} is not a complete {what} configuration (no "
                         f"{', '.join(missing)}); it cannot be resumed.")
    for key, (ok, expected) in types.items():
        if not ok(config[key]):  # else Python's words ("'NoneType' object is not iterable"),
            # or a value taken as another ("no" as a true eval_test)
            raise ValueError(f"{path}: {key} is {json.dumps(config[key])}, not {expected}; the "
                             f"file was edited or damaged: put back the value {writer} wrote, "
                             f"then resume the {noun}.")


def _check_config_values(config: dict[str, Any]) -> None:
    """The model and training settings of a configuration, checked as a new run's are."""
    check_model_options(config["init_std"], config["dropout"], config["batchnorm"],
                        config["batch_size"])
    TorchTrainConfig(epochs=config["epochs"], batch_size=config["batch_size"],
                     lr=config["lr"], reg=config["reg"], lr_decay=config["lr_decay"],
                     seed=config["seed"]).validate()


def check_resumable(run: str | os.PathLike) -> None:
    """Refuse ``run`` (one line saying what to do) unless it holds a PyTorch run that
    :func:`resume_run` can continue: for a command to check it before its own refusals
    (``torch train --resume`` of a missing folder blamed a plugin first)."""
    _resumable(Path(run))


def _resumable(run_dir: Path) -> dict[str, Any]:
    """The ``config.json`` of the PyTorch run in ``run_dir``, refused (one line saying what to
    do) if the folder holds no such run or the run has completed."""
    from mlplab.runs import read_metrics

    path = run_dir / TORCH_CONFIG_FILE
    # (first: a missing folder may be a run killed as it began, which is started anew)
    refuse_if_nothing_saved(run_dir, TORCH_CONFIG_FILE, "run", "mlplab.torch_mlp.train_run")
    if not io.is_folder(run_dir):
        from mlplab.runs.files import not_a_folder, run_folder_advice

        raise FileNotFoundError(f"{not_a_folder(run_dir)}; {run_folder_advice(torch=True)}.")
    if not io.is_file(path):  # (a loop of links: said, not "no config.json")
        from mlplab.runs.finished import other_output_hint

        known = other_output_hint(run_dir)  # a depth study, say, whose --resume is depth's
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {TORCH_CONFIG_FILE})"
                                f"{'; ' + known if known else ''}.")
    config = io.read_json(path)
    if not isinstance(config, dict) or config.get("framework") != "pytorch":
        raise ValueError(f"{run_dir} was not written by mlplab torch train; resume an mlplab "
                         "train run with "
                         f"{setting('mlplab train --resume', 'mlplab.runs.resume_run(RUN)')}.")
    if isinstance(config.get("diverged"), dict):  # before its checks: a new run replaces it
        raise ValueError(f"the run in {run_dir} stopped when its loss diverged; resuming would "
                         "repeat it: start a new run with other settings (a lower "
                         f"{setting('--lr', 'lr')}, say), {where_next_run(run_dir, named=True)}.")
    _check_config(path, config, _RESUME_KEYS, _RESUME_TYPES, "mlplab torch train", "run",
                  "PyTorch run")
    # a PyTorch run has one preprocessing: an edited one was accepted without a word, the run
    # went on with its own, and config.json kept the edit (absent from the earliest configs)
    if config.get("preprocessing", "torch") != "torch":
        raise ValueError(f"{path}: preprocessing is {json.dumps(config['preprocessing'])}, not "
                         "\"torch\", the only preprocessing of a PyTorch run; the file was "
                         "edited or damaged: put back the value mlplab torch train wrote, then "
                         "resume the run.")
    # the record of the splits, absent from a config.json of an mlplab before 2 Dec 2026
    if "splits" in config and not _is_split_record(config["splits"]):
        raise ValueError(f"{path}: splits is {json.dumps(config['splits'])}, not a record of "
                         "the run's splits; the file was edited or damaged: put back the value "
                         "mlplab torch train wrote, then resume the run.")
    try:  # values of the right type that no run trains with ("epochs": 0, "init": "xx")
        check_choice(config["init"], INITS, "init")
        _check_config_values(config)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc} The file was edited or damaged: put back the value "
                         "mlplab torch train wrote, then resume the run.") from None
    try:
        status = read_metrics(run_dir / METRICS_FILE).get("status")
    except ValueError:  # its advice names mlplab train --resume, which refuses this run
        raise ValueError(f"{run_dir / METRICS_FILE} is not a run's metrics (a JSON object as "
                         "mlplab torch train writes it); it was edited or damaged: delete it, "
                         "then resume the run, which writes it again.") from None
    if status == "completed":
        raise nothing_to_resume(run_dir, "run")
    return config


def _data_config(dataset: str | Dataset, ds: Dataset, load: dict[str, Any],
                 data_seed: int) -> dict[str, Any]:
    """The data of a run's (or study's) configuration, as ``mlplab evaluate`` and ``--resume``
    reload it: ``dataset``, ``data_dir``, ``val_size``, ``test_size``, ``image_size`` and
    ``data_seed``."""
    from mlplab.runs import absolute_data_paths, loaded_with

    if isinstance(dataset, str):
        # absolute, as mlplab train's: evaluate reloads the data from any working folder
        name, data_dir = absolute_data_paths(dataset, None if load["data_dir"] is None
                                             else os.fspath(load["data_dir"]))
        val_size, test_size, image_size = load["val_size"], load["test_size"], \
            load["image_size"]
    else:  # a dataset loaded by the caller: record the data and split it has
        # a folder:PATH name made absolute too (it is relative to the working folder it was
        # loaded in; evaluate, run from elsewhere, looked for the folder there)
        # and the options it was loaded with (its split seed, image size and folder)
        options = loaded_with(ds)
        name, data_dir = absolute_data_paths(ds.name, options.get("data_dir"))
        val_size, test_size = len(ds.y_val), len(ds.y_test)
        image_size = options.get("image_size")
    split_seed = _split_seed(ds, data_seed)  # None for data split without a seed
    return {"dataset": name, "data_dir": data_dir, "val_size": val_size,
            "test_size": test_size, "image_size": image_size, "data_seed": split_seed}


def _run_config(dataset: str | Dataset, ds: Dataset, load: dict[str, Any], data_seed: int,
                hidden: list[int], init: str, init_std: float, dropout: float, batchnorm: bool,
                cfg: TorchTrainConfig, device: str, threads: int | None,
                eval_test: bool) -> dict[str, Any]:
    """``config.json``: every option, the data's as ``mlplab evaluate`` reloads it, and the
    splits that loading gave (:func:`split_record`: sizes and fingerprints), which a resume
    finds again even before the first checkpoint, which records them too."""
    return {
        "framework": "pytorch", **_data_config(dataset, ds, load, data_seed),
        "splits": split_record(ds), "preprocessing": "torch", "hidden": hidden,
        "init": init, "init_std": init_std, "dropout": dropout,
        "batchnorm": batchnorm, **_training_config(cfg),
        "device": device, "threads": threads, "eval_test": eval_test,
    }


def _training_config(cfg: TorchTrainConfig) -> dict[str, Any]:
    """The training settings a configuration records (not the thread count, which is where it
    runs, nor the progress bar and printing)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in ("progress", "verbose", "threads")}


#: the settings of a run's config.json that its checkpoint records for a resume to compare:
#: what the rest of the training depends on (not the device and threads, which a resume may
#: change, nor the network, which the checkpoint's weights are checked against, nor the data,
#: whose splits the checkpoint records)
# dropout among them: it has no weights, so the checkpoint's shapes cannot tell an edited one
_RECORDED_SETTINGS = ("epochs", "batch_size", "lr", "reg", "lr_decay", "seed", "init",
                      "init_std", "dropout")


def _settings_record(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``config`` a checkpoint records (:data:`_RECORDED_SETTINGS`), as JSON
    holds them: ``config.json``, which a resume reads, and plain values, which the checkpoint's
    ``weights_only`` load takes (a NumPy float given as ``lr`` would not be)."""
    values = {k: config[k] for k in _RECORDED_SETTINGS}
    return dict(io.parse_json_array(io.json_array(values), "settings"))


def _study_settings_record(config: dict[str, Any]) -> dict[str, Any]:
    """What a depth study's networks and checkpoint record of ``config`` (its
    ``depth-config.json``): a run's settings (:func:`_settings_record`), and the width and batch
    norm of every network, which a finished network's shapes would show only as "another
    network" (recorded since 2 Dec 2026, a few hours after the rest: older records lack them and
    are not compared on them)."""
    return {**_settings_record(config), "hidden_size": config["hidden_size"],
            "batchnorm": config["batchnorm"]}


def _metrics(model: MultiLayerPerceptron, history: History, ds: Dataset, pre: Pipeline,
             X: np.ndarray, X_val: np.ndarray | None, eval_test: bool, seconds: float,
             seed: int, init: str, threads: int, device: torch.device) -> dict[str, Any]:
    """``metrics.json``: ``mlplab train``'s keys, then the framework, init and environment."""
    metrics: dict[str, Any] = {
        "status": "interrupted" if history.interrupted else "completed",
        "train_accuracy": accuracy(model, X, ds.y_train),
        "val_accuracy": accuracy(model, X_val, ds.y_val) if X_val is not None else None,
    }
    if eval_test and not history.interrupted:
        metrics["test_accuracy"] = accuracy(model, pre.transform(ds.X_test), ds.y_test)
    metrics.update({
        "best_val_accuracy": history.best_val_acc if history.best_epoch > 0 else None,
        "best_epoch": history.best_epoch if history.best_epoch > 0 else None,
        "stopped_early": False,
        "epochs": len(history.val_acc),
        "iterations": len(history.loss),
        "seconds": round(seconds, 3),
        "final_loss": history.loss[-1] if history.loss else None,
        "dataset": ds.name,
        "model": describe(model),
        "num_params": int(sum(p.numel() for p in model.parameters())),
        "preset": None,
        "seed": seed,
        **split_record(ds),
        **image_decoding(ds),
        "framework": "pytorch",
        "init": init,
        **_environment(threads, device),
    })
    return metrics


def _write_run(out: Path, result: TorchRunResult, ds: Dataset, X_val: np.ndarray | None,
               per_epoch: int, plots: bool) -> None:
    """The run folder's files after training: a resumed run's earlier results first removed
    (``metrics.json`` first), the new ``metrics.json`` written last."""
    from mlplab.runs import write_history

    model, metrics = result.model, result.metrics
    extra = {"classes": list(ds.classes), "dataset": ds.name,
             "image_shape": list(ds.image_shape), "framework": "pytorch"}
    # before each write: each would make the folder again, had it gone meanwhile
    check_run_folder(out, TORCH_CONFIG_FILE)
    # a resumed run's results are its earlier stop's: gone first, so that a second Ctrl-C
    # during these writes (which stops at once, unsaved) leaves a run that reads as unfinished
    # (resumed from its checkpoint) with no file that describes another model than model.npz;
    # model.pt too, which is written after model.npz (the file evaluate reads, which records its
    # own metrics and so stays until it is replaced): where model.pt is, it is model.npz's model
    # (one that cannot be removed is passed over: the new files replace those of their names,
    # and any left is said once they are written, as mlplab train's)
    stale = remove_results(out, also=(TORCH_MODEL_FILE,), keep_going=True)
    stale_before = [file_state(path) for path, _ in stale]
    # (one that can be neither removed nor replaced ends the run unsaved with its name)
    with writing_over(stale, torch=True):
        # the same weights as an mlplab.MLP, with the preprocessing, for the NumPy side
        io.save_model(out / NUMPY_MODEL_FILE, to_numpy(model), result.preprocessing,
                      {**extra, "metrics": metrics})
        check_run_folder(out, TORCH_CONFIG_FILE)
        save_torch_model(out / TORCH_MODEL_FILE, model, extra)
        check_run_folder(out, TORCH_CONFIG_FILE)
        write_history(out / HISTORY_FILE, result.history, per_epoch)
        if plots:
            _train_plots(out, model, result.history, ds, X_val, per_epoch)
        check_run_folder(out, TORCH_CONFIG_FILE)
        io.write_json(out / METRICS_FILE, metrics)  # last: its presence marks a finished run
    warn_stale_left(stale, stale_before, "run",
                    "stopped" if result.history.interrupted else "finished")


def _train_plots(out: Path, model: MultiLayerPerceptron, history: History, ds: Dataset,
                 X_val: np.ndarray | None, per_epoch: int) -> None:
    from mlplab import plots
    from mlplab.trainer import train_acc_label

    def save(fig: Any, name: str) -> None:  # not into a folder gone while it was drawn
        save_into_run(fig, out / name, TORCH_CONFIG_FILE)

    save(plots.plot_loss(history.loss, title="Training loss (PyTorch MLP)",
                         iterations_per_epoch=per_epoch), "loss.png")
    # as mlplab train's accuracy.png: the curve is fit's per-epoch train accuracy, on a fixed
    # subset, not the whole-split figure in metrics.json
    save(plots.plot_accuracy(history.train_acc, history.val_acc,
                             title="Classification accuracy (PyTorch MLP)",
                             train_label=train_acc_label("subset")), "accuracy.png")
    if X_val is not None:
        cm = plots.confusion_matrix(ds.y_val, predict(model, X_val), ds.num_classes)
        save(plots.plot_confusion(cm, ds.classes, title="Confusion matrix (validation)"),
             "confusion.png")
    if model.config["hidden_layers"] and len(ds.image_shape) == 3:  # not feature vectors (N, D)
        W1 = model.linears[0].weight.detach().cpu().numpy().T  # (D, H), mlplab's layout
        save(plots.plot_first_layer_weights(W1, ds.image_shape), "weights.png")


# ------------------------------------------------------------------------------- depth_run
@threads_kept()
def depth_run(dataset: str | Dataset = "digits", *, out: str | os.PathLike | None = None,
              layers: Sequence[int] = (2, 3, 4, 5), hidden_size: int = HIDDEN[0],
              init: str = "exercise", init_std: float = INIT_STD, dropout: float = 0.0,
              batchnorm: bool = False, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
              lr: float = LR, reg: float = REG, lr_decay: float = LR_DECAY, seed: int = 0,
              device: str = "cpu", threads: int | None = None,
              data_dir: str | os.PathLike | None = None, download: bool = False,
              mirror: str | None = None, val_size: float | None = None,
              test_size: float | None = None, image_size: Any = None, data_seed: int = 0,
              cache: bool = True, progress: bool = False, verbose: bool = False,
              announce: bool = False) -> DepthRunResult:
    """The exercise's depth table, as ``mlplab torch depth`` writes it: one network per depth
    in ``layers`` (counted in ``Linear`` layers) and initialisation (``init`` ``"exercise"``,
    ``"default"`` or ``"both"``), each with ``hidden_size`` units in every hidden layer, trained
    by :func:`depth_study`; with ``out``, the folder gets ``depth.md``, ``depth.csv``,
    ``depth.png`` and ``depth.json`` (every number, the settings and the environment).

    The dataset and the other settings are as in :func:`train_run`; the dataset needs a
    validation split (the best network is picked by it), and its test split, if any, measures
    the best network of each initialisation. ``announce`` prints a line to stderr when training
    starts and one per network. Every check runs before ``out`` is made; a folder that already
    holds a study is refused (one that stopped, with the :func:`resume_depth_run` to use), but
    for one whose loss diverged, which this study takes, removing its networks first.

    So that a stopped study can go on (:func:`resume_depth_run`), ``out`` also gets
    ``depth-config.json`` (the settings and the data's record) as the study starts, each network
    as it finishes (``networks/INIT-DEPTH.pt``, a :func:`save_torch_model` file with its row,
    history and training settings in ``extra``) and the training state of the network in
    training after every epoch (``depth-checkpoint.pt``, with the training settings too; removed
    once that network is saved): a resume refuses a ``depth-config.json`` whose settings were
    edited since, and data whose splits are not those it records. ``depth-config.json`` also
    records the environment that trains (compared by a resume) and, if a network's loss
    diverges (a :class:`~mlplab.trainer.TrainingDivergedError` naming it), which network did.
    """
    load = {"data_dir": data_dir, "download": download, "mirror": mirror,
            "val_size": val_size, "test_size": test_size, "image_size": image_size,
            "cache": cache}
    _check_dataset_arg(dataset, {**load, "data_seed": data_seed})
    check_choice(init, (*INITS, "both"), "init")
    # depth_study's checks, made before the data loads and out is created
    layers = check_depths(layers, "layers")
    repeated = sorted({d for d in layers if layers.count(d) > 1})
    if repeated:  # the table's rows: one per depth (depth_study may repeat one, for timings)
        raise ValueError(f"depths must differ; given more than once: "
                         f"{', '.join(map(str, repeated))}.")
    for depth in layers:
        hidden_for_depth(depth, hidden_size)
    cfg, threads_used, dev = _settings(
        init_std=init_std, dropout=dropout, batchnorm=batchnorm, epochs=epochs,
        batch_size=batch_size, lr=lr, reg=reg, lr_decay=lr_decay, seed=seed, device=device,
        threads=threads, progress=progress, verbose=verbose)
    out_dir = io.out_folder(out) if out is not None else None
    # a diverged study's folder, which _check_out lets this study take; decided now, before the
    # data loads, so that a study another process starts meanwhile is not replaced
    diverged = False
    if out_dir is not None:
        _check_out(out_dir, DEPTH_FILE)
        diverged = (out_dir / DEPTH_CONFIG_FILE).exists()
    ds, pre, X, X_val = _load(dataset, data_seed, load, progress)
    if X_val is None:
        raise ValueError("the depth table picks the best network by validation accuracy; the "
                         "dataset has no validation split (set "
                         f"{setting('--val-size', 'val_size')}).")
    if batchnorm:
        check_batchnorm_batches(cfg.batch_size, len(ds.y_train))
    config = {"framework": "pytorch", "study": "depth",
              **_data_config(dataset, ds, load, data_seed), "layers": layers,
              "hidden_size": hidden_size, "init": init, "init_std": init_std,
              "dropout": dropout, "batchnorm": batchnorm, **_training_config(cfg),
              "device": device, "threads": threads,
              "splits": split_record(ds), **image_decoding(ds),
              # where it trains: what a resume compares its own with
              "environment": _environment(threads_used, dev)}
    with contextlib.ExitStack() as held:
        if out_dir is not None:
            _new_dir(out_dir, DEPTH_FILE)  # before the networks train: a bad out fails now
            # a second study is refused
            held.enter_context(run_lock(out_dir, new=True, noun="study"))
            if diverged:
                if not diverged_study(out_dir):  # replaced since by a study of another process
                    raise _started_elsewhere(out_dir, "a depth study")
                _clear_diverged_study(out_dir)
            # first: what --resume goes on from, and what marks the folder as a study's
            _write_first_config(out_dir / DEPTH_CONFIG_FILE, config, not diverged,
                                "a depth study")
        if announce:
            print(f"{counted(_networks(config), 'network')} on {ds.name} ({len(ds.y_train)} "
                  f"train, {len(ds.y_val)} val, {len(ds.y_test)} test), hidden size "
                  f"{hidden_size}, {counted(cfg.epochs, 'epoch')} each, device {dev}, "
                  f"{counted(threads_used, 'thread')}", file=sys.stderr, flush=True)
        return _study_and_write(out_dir, config, ds, pre, X, X_val, cfg, threads_used, dev,
                                announce)


def _inits(config: dict[str, Any]) -> list[str]:
    """The initialisations of a study's ``init`` option (``"both"``: the two, in this order)."""
    return ["exercise", "default"] if config["init"] == "both" else [config["init"]]


def _networks(config: dict[str, Any]) -> int:
    return len(_inits(config)) * len(config["layers"])


def _network_file(out_dir: Path, init: str, depth: int) -> Path:
    """Where a study keeps its finished network of ``init`` and ``depth``."""
    return out_dir / NETWORKS_DIR / f"{init}-{depth}.pt"


def every_network_saved(folder: Path) -> bool:
    """Whether the depth study in ``folder`` has saved every network its depth-config.json
    names, so that what is left to do is its table (False where that file cannot be read)."""
    try:
        config = io.read_json(folder / DEPTH_CONFIG_FILE)
        return all(_network_file(folder, init, depth).is_file()
                   for init in _inits(config) for depth in config["layers"])
    except (OSError, ValueError, TypeError, KeyError):  # (a damaged file: --resume says so)
        return False


def _study_and_write(out_dir: Path | None, config: dict[str, Any], ds: Dataset,
                     pre: Pipeline, X: np.ndarray, X_val: np.ndarray, cfg: TorchTrainConfig,
                     threads_used: int, dev: torch.device, announce: bool,
                     progress: StudyProgress | None = None, seconds_before: float = 0.0,
                     earlier: Sequence[dict[str, Any]] = (),
                     config_changed: bool = False) -> DepthRunResult:
    """Run the study of ``config`` (from ``progress``, if given), saving into ``out_dir`` each
    network as it finishes and a checkpoint of the one in training after every epoch, then
    write the table, the figure and, last, ``depth.json`` (with ``earlier``, the other
    environments that trained the study before, if any). ``config_changed``: ``config`` (a
    resumed study's, with this process's environment) replaces ``depth-config.json`` before
    the first network or checkpoint is saved."""
    layers, inits = list(config["layers"]), _inits(config)
    X_test = pre.transform(ds.X_test) if len(ds.y_test) else None
    total = _networks(config)
    done = []

    def report(r: DepthResult) -> None:
        done.append(r)
        print(f"[{len(done)}/{total}] {r.init} init, {counted(r.depth, 'layer')}: train "
              f"{100 * r.train_acc:.1f}%, val {100 * r.val_acc:.1f}% ({duration(r.seconds)})",
              file=sys.stderr, flush=True)

    start = time.perf_counter()

    def study_seconds() -> float:
        return seconds_before + time.perf_counter() - start

    unrecorded = [config_changed]
    # what each finished network and checkpoint records of the settings that trained it
    settings = _study_settings_record(config)

    def record_config() -> None:
        # before what this process trained is saved: a stop in between leaves a record that
        # names this environment for nothing trained here, which only warns needlessly
        if unrecorded[0]:
            assert out_dir is not None
            io.write_json(out_dir / DEPTH_CONFIG_FILE, config)
            unrecorded[0] = False

    def checkpoint(init: str, depth: int, state: dict[str, Any], seconds: float) -> None:
        assert out_dir is not None  # only handed to depth_study with a folder
        check_run_folder(out_dir, DEPTH_CONFIG_FILE, "depth study")
        record_config()
        # and the settings a resume must find in depth-config.json again, as a run's checkpoint
        save_torch_checkpoint(out_dir / DEPTH_CHECKPOINT_FILE, state,
                              {"init": init, "depth": depth, "seconds": seconds,
                               "study_seconds": study_seconds(), "settings": settings})

    # the networks saved, to name the one whose loss diverges
    finished = set(progress.finished) if progress is not None else set()

    def network(result: DepthResult, model: MultiLayerPerceptron) -> None:
        assert out_dir is not None and result.history is not None
        check_run_folder(out_dir, DEPTH_CONFIG_FILE, "depth study")
        path = _network_file(out_dir, result.init, result.depth)
        path.parent.mkdir(exist_ok=True)
        row = {k: v for k, v in result.to_dict().items() if k != "epochs"}
        record_config()
        save_torch_model(path, model, {"result": row, "history": result.history.to_dict(),
                                       "study_seconds": study_seconds(), "settings": settings})
        finished.add((result.init, result.depth))
        # saved whole: its checkpoint is not needed any more (a stop between the two writes
        # leaves one that --resume sees is of a finished network). One that cannot be removed
        # is passed over for the same reason: the next network's checkpoint replaces it, and
        # the study's end tries again (it ended the study, advising the --resume that failed
        # on it again)
        try_remove(out_dir / DEPTH_CHECKPOINT_FILE)

    try:
        results = depth_study(X, ds.y_train, X_val, ds.y_val, X_test,
                              ds.y_test if X_test is not None else None, depths=layers,
                              hidden_size=config["hidden_size"], inits=inits,
                              std=config["init_std"], dropout=config["dropout"],
                              batchnorm=config["batchnorm"], config=cfg,
                              num_classes=ds.num_classes,
                              on_result=report if announce else None,
                              on_network=network if out_dir is not None else None,
                              on_checkpoint=checkpoint if out_dir is not None else None,
                              resume=progress)
    except TrainingDivergedError as exc:
        if out_dir is None:
            raise
        init, depth = next((i, d) for i in inits for d in layers if (i, d) not in finished)
        # not into a folder gone meanwhile: the write below made it again, holding only a
        # depth-config.json; and the line says which network diverged, as putting the folder
        # back and resuming, its usual advice, would only diverge there again
        check_run_folder(out_dir, DEPTH_CONFIG_FILE, "depth study",
                         diverged=f"the loss of its network of {init} init and "
                                  f"{counted(depth, 'layer')}")
        # resuming would repeat the same arithmetic into the same NaN: the checkpoint goes,
        # and depth-config.json says which network diverged, which lets a new study take the
        # folder (as a new run takes a diverged run's) and --resume refuse it without training
        # A checkpoint that cannot be removed is passed over, as torch train's is: the
        # divergence is the news, and depth-config.json records it whatever is left
        try_remove(out_dir / DEPTH_CHECKPOINT_FILE)
        record = out_dir / DEPTH_CONFIG_FILE
        try:
            io.write_json(record, {**config, "diverged": {"init": init, "depth": depth,
                                                          "error": str(exc)}})
            said = "Resuming this study would repeat it; start"
        except OSError as failed:  # (a full disk): said with the divergence, not instead of it
            said = f"{unrecorded_divergence(record, failed, 'depth study')} Start"
        raise TrainingDivergedError(f"{init} init, {counted(depth, 'layer')}: {exc} {said} a new "
                                    f"study with other settings, {where_next_study(out_dir)}."
                                    ) from None
    seconds = study_seconds()
    md = depth_table_markdown(results)
    if X_test is None:
        md += "\nNo test split: test accuracy not measured.\n"
    summary = {
        "dataset": ds.name, "train_size": int(len(ds.y_train)), "val_size": int(len(ds.y_val)),
        "test_size": int(len(ds.y_test)), "notes": list(ds.notes),
        "layers": layers, "hidden_size": config["hidden_size"], "inits": inits,
        "init_std": config["init_std"], "dropout": config["dropout"],
        "batchnorm": config["batchnorm"],
        "training": {k: v for k, v in cfg.to_dict().items()
                     if k not in ("progress", "verbose")},
        "data_seed": _split_seed(ds, config["data_seed"]), "seconds": round(seconds, 1),
        "environment": _environment(threads_used, dev),
        **({"earlier_environments": list(earlier)} if earlier else {}),
        "results": [r.to_dict() for r in results],
    }
    if out_dir is not None:
        check_run_folder(out_dir, DEPTH_CONFIG_FILE, "depth study")
        # the checkpoint of a network saved just before a stop (which the saving of the next
        # network would have removed) is no part of a finished study. One that cannot be
        # removed does not keep the results from being written (it ended the study unwritten,
        # advising a --resume that failed on it again): the user is told to remove it, after
        stale = try_remove(out_dir / DEPTH_CHECKPOINT_FILE)
        io.write_text(out_dir / "depth.md", md)
        io.write_text(out_dir / "depth.csv", depth_table_csv(results))
        # (not into the folder made again, had it gone while the figure was drawn)
        save_into_run(plot_depth(results), out_dir / "depth.png", DEPTH_CONFIG_FILE, "depth study")
        check_run_folder(out_dir, DEPTH_CONFIG_FILE, "depth study")
        io.write_json(out_dir / DEPTH_FILE, summary)  # last: its presence marks a finished study
        if stale is not None:  # (depth_run and resume_depth_run, under threads_kept: the caller)
            warn_stale_file(out_dir / DEPTH_CHECKPOINT_FILE, stale, "depth study", stacklevel=4)
    return DepthRunResult(results, md, summary, out_dir, seconds)


@threads_kept()
def resume_depth_run(study: str | os.PathLike, *, data: Dataset | None = None,
                     data_dir: str | os.PathLike | None = None, threads: int | None = None,
                     device: str | None = None, progress: bool = False, verbose: bool = False,
                     announce: bool = False) -> DepthRunResult:
    """Continue the depth study in folder ``study`` (stopped by Ctrl-C, a crash or a kill), as
    :func:`depth_run` wrote it, to its end: its finished networks (``networks/``) are not
    trained again, the one in training goes on from its checkpoint (the end of its last whole
    epoch), and the table, figure and ``depth.json`` are those of a study never stopped (on the
    same device with the same thread count, to the last bit, but for the times).

    ``data``, ``data_dir``, ``threads`` and ``device`` are as in :func:`resume_run`; resumed in
    another environment than ``depth-config.json`` records (threads, device, PyTorch, CPU,
    mlplab), the study goes on with a warning saying what changed. A finished study, a diverged
    one, a folder that holds no depth study, damaged files, other data (splits other than
    ``depth-config.json`` records, even before the first checkpoint) and a ``depth-config.json``
    whose settings were edited since a finished network or the checkpoint was trained are
    refused, each in one line saying what to do.
    """
    folder = Path(study)
    _resumable_study(folder)  # before a lock file is made in a folder that is not a study's
    with run_lock(folder, noun="study"):
        config = _resumable_study(folder)  # again: the process that held the lock may have
        # finished the study
        if data_dir is not None:
            if data is not None:
                raise ValueError("give the study's data or the folder it moved to (data_dir), "
                                 "not both.")
            config = _moved(config, data_dir)
        remove_partial_writes(folder, (DEPTH_CONFIG_FILE, DEPTH_CHECKPOINT_FILE, DEPTH_FILE,
                                       "depth.md", "depth.csv", "depth.png"))
        if (folder / NETWORKS_DIR).is_dir():
            remove_partial_writes(folder / NETWORKS_DIR,
                                  [f"{i}-{d}.pt" for i in _inits(config)
                                   for d in config["layers"]])
        config_path = folder / DEPTH_CONFIG_FILE
        check_same_decoding(config, config["dataset"], folder, "resuming")
        cfg, threads_used, dev = _recorded_settings(config, device, threads, progress, verbose,
                                                    config_path)
        ds, pre, X, X_val = _load_again(config, data, data_dir, folder, "torch depth",
                                        "resume_depth_run", "study", progress)
        # as a run's: before the first checkpoint too (a study stopped in its first epoch)
        _check_same_splits(config["splits"], ds, config_path, "study")
        if X_val is None:  # (splits that match the record have one)
            raise ValueError(f"the data of {folder} has no validation split.")
        if data_dir is not None:  # the data lives there now: --resume looks there
            io.write_json(config_path, config)
        # refused before "resuming" is said, as resume_run's checkpoint
        got, seconds_before = _study_progress(folder, config, X.shape[1], ds.num_classes,
                                              len(ds.y_train), cfg, dev)
        now = _environment(threads_used, dev)
        earlier = _earlier_environments(config.get("environment"),
                                        config.get("earlier_environments"), now, config_path,
                                        "study") \
            if got.finished or got.state is not None else []  # else it starts again here
        changed = isinstance(config.get("environment"), dict) and \
            _numeric(config["environment"]) != _numeric(now)
        if changed:
            # the environment of the process that trains it last, which the next resume
            # compares with, and the others that trained it (for depth.json); written as this
            # process saves its first network or checkpoint, not now: a resume stopped before
            # that trained nothing here
            config = {**config, "environment": now}
            config.pop("earlier_environments", None)
            if earlier:
                config["earlier_environments"] = earlier
        if announce:
            at = f", {got.current[0]} init, {counted(got.current[1], 'layer')} after epoch " \
                 f"{got.state['epoch']} of {cfg.epochs}" \
                if got.current is not None and got.state is not None \
                else ""
            print(f"resuming the depth study of {ds.name}: {len(got.finished)} of "
                  f"{counted(_networks(config), 'network')} done{at}, device {dev}, "
                  f"{counted(threads_used, 'thread')}", file=sys.stderr, flush=True)
        try:
            return _study_and_write(folder, config, ds, pre, X, X_val, cfg, threads_used, dev,
                                    announce, got, seconds_before, earlier, changed)
        except TrainingStateError as exc:  # what check_training_state did not foresee
            raise _study_state_refused(folder, exc) from None


#: the keys of a depth study's depth-config.json that resuming it reads
_DEPTH_KEYS = ("dataset", "data_dir", "val_size", "test_size", "image_size", "data_seed",
               "layers", "hidden_size", "init", "init_std", "dropout", "batchnorm", "epochs",
               "batch_size", "lr", "reg", "lr_decay", "seed", "device", "threads", "splits")

_DEPTH_TYPES = {
    **{k: v for k, v in _RESUME_TYPES.items() if k in _DEPTH_KEYS},
    "layers": (lambda v: isinstance(v, list) and bool(v) and all(is_int(d) for d in v)
               and len(set(v)) == len(v), "a list of different depths"),
    "hidden_size": (is_int, "an integer"),
    "splits": (_is_split_record, "the record of the data's splits"),
}

#: the folder of a depth study's finished networks (``networks/exercise-3.pt``, ...)
NETWORKS_DIR = "networks"


def _resumable_study(folder: Path) -> dict[str, Any]:
    """The ``depth-config.json`` of the stopped depth study in ``folder``, refused (one line
    saying what to do) if the folder holds no such study or the study has finished."""
    if (folder / DEPTH_FILE).is_file():
        raise nothing_to_resume(folder, "depth study")
    out = setting("--out", "out")
    path = folder / DEPTH_CONFIG_FILE
    if not path.is_file():
        refuse_if_nothing_saved(folder, DEPTH_CONFIG_FILE, "depth study",
                                "mlplab.torch_mlp.depth_run",
                                names=(DEPTH_CONFIG_FILE, DEPTH_CHECKPOINT_FILE))
        if not folder.is_dir():  # a file
            raise FileNotFoundError(f"{folder} is not a folder; give the folder of a depth "
                                    "study that stopped.")
        if (folder / TORCH_CONFIG_FILE).is_file():
            torch = setting("mlplab torch train --resume", "mlplab.torch_mlp.resume_run(RUN)")
            numpy = setting("mlplab train --resume", "mlplab.runs.resume_run(RUN)")
            raise ValueError(f"{folder} is a run folder, not a depth study; resume a run of "
                             f"mlplab torch train with {torch}, one of mlplab train with "
                             f"{numpy}.")
        kinds = [what for kind, (markers, what) in OUTPUT_KINDS.items()
                 if kind != "depth" and any((folder / m).is_file() for m in markers)]
        if kinds:
            raise ValueError(f"{folder} is {kinds[0]}, not a depth study; give the folder "
                             "mlplab torch depth wrote.")
        raise ValueError(f"{folder} is not a depth study's folder (no {DEPTH_CONFIG_FILE}); "
                         "give the folder mlplab torch depth wrote.")
    config = io.read_json(path)
    if not isinstance(config, dict) or config.get("framework") != "pytorch" \
            or config.get("study") != "depth":
        raise ValueError(f"{path} is not a depth study's configuration (as mlplab torch depth "
                         "writes it); it was edited or damaged: put it back, or start a new "
                         f"study with another {out}.")
    diverged = config.get("diverged")
    if isinstance(diverged, dict):
        at = f" of its network of {diverged.get('init')} init and {diverged.get('depth')} " \
            "layers" if {"init", "depth"} <= diverged.keys() else ""
        raise ValueError(f"the depth study in {folder} stopped when the loss{at} diverged; "
                         "resuming would repeat it: start a new study with other settings (a "
                         f"lower {setting('--lr', 'lr')}, say), "
                         f"{where_next_study(folder, named=True)}.")
    _check_config(path, config, _DEPTH_KEYS, _DEPTH_TYPES, "mlplab torch depth", "study",
                  "depth study")
    try:  # values of the right type that no study trains with
        check_choice(config["init"], (*INITS, "both"), "init")
        for depth in config["layers"]:
            hidden_for_depth(depth, config["hidden_size"])
        _check_config_values(config)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc} The file was edited or damaged: put back the value "
                         "mlplab torch depth wrote, then resume the study.") from None
    return config


def _study_progress(folder: Path, config: dict[str, Any], inputs: int, classes: int, n: int,
                    cfg: TorchTrainConfig, dev: torch.device) -> tuple[StudyProgress, float]:
    """The finished networks of the study in ``folder`` and its checkpoint, checked against
    its configuration (each as the network it would train: refused, naming the file and what to
    do, if it is not); and the study's seconds so far."""
    progress = StudyProgress()
    seconds = 0.0
    for init in _inits(config):
        for depth in config["layers"]:
            path = _network_file(folder, init, depth)
            if not path.is_file():
                continue
            expected = build_model(inputs, hidden_for_depth(depth, config["hidden_size"]),
                                   classes, init=init, std=config["init_std"],
                                   dropout=config["dropout"], batchnorm=config["batchnorm"],
                                   seed=config["seed"])
            try:
                model, extra = load_torch_model(path)
            except ValueError as exc:
                raise _network_refused(exc, folder) from None
            recorded = extra.get("settings")
            if isinstance(recorded, dict):
                # a depth-config.json edited since (the table would mix networks of both
                # settings): named first, as an edited epochs or dropout also makes the network
                # one the study no longer describes, which the checks below blame on the file
                _check_study_settings(recorded, config, path, folder)
            try:
                result, at = _finished_network(path, model, extra, init, depth, expected, cfg)
            except ValueError as exc:
                raise _network_refused(exc, folder) from None
            progress.finished[(init, depth)] = (result, model.to(dev))
            seconds = max(seconds, at)
    ckpt = folder / DEPTH_CHECKPOINT_FILE
    if not ckpt.is_file():
        return progress, seconds
    try:
        state, extra = load_torch_checkpoint(ckpt)
        at_init, at_depth = extra.get("init"), extra.get("depth")
        # (no settings in a checkpoint of an mlplab before 2 Dec 2026)
        if not (isinstance(at_init, str) and is_int(at_depth) and is_number(extra.get("seconds"))
                and is_number(extra.get("study_seconds"))
                and (extra.get("settings") is None or isinstance(extra["settings"], dict))):
            raise ValueError(f"{ckpt} is not a complete depth study checkpoint (its init, "
                             "depth, seconds or settings are not what mlplab torch depth "
                             "writes).")
        if at_init not in _inits(config) or at_depth not in config["layers"]:
            raise ValueError(f"{ckpt} is the checkpoint of a network ({at_init} init, "
                             f"{counted(int(at_depth), 'layer')}) that the study in {folder} "
                             "does not train.")
    except ValueError as exc:
        raise ValueError(f"{exc} {_without_study_checkpoint(folder)}") from None
    key = (at_init, int(at_depth))
    if key in progress.finished:  # stopped after saving it, before dropping this
        return progress, seconds
    # a depth-config.json edited since: Adam and the scheduler would go on with the
    # checkpoint's lr, reg and lr_decay, the next networks with the edited ones
    _check_study_settings(_checkpoint_settings(state, extra), config, ckpt, folder)
    model = build_model(inputs, hidden_for_depth(key[1], config["hidden_size"]), classes,
                        init=key[0], std=config["init_std"], dropout=config["dropout"],
                        batchnorm=config["batchnorm"], seed=config["seed"])
    try:
        check_training_state(state, model, n, cfg)
    except TrainingStateError as exc:
        raise _study_state_refused(folder, exc) from None
    progress.current, progress.state = key, state
    progress.seconds = float(extra["seconds"])
    return progress, max(seconds, float(extra["study_seconds"]))


def _finished_network(path: Path, model: MultiLayerPerceptron, extra: dict[str, Any],
                      init: str, depth: int, expected: MultiLayerPerceptron,
                      cfg: TorchTrainConfig) -> tuple[DepthResult, float]:
    """A finished network of a study, as its file ``path`` holds it (``model`` and ``extra``,
    loaded): its row of the table (with its history) and the study's seconds when it was saved;
    a ``ValueError`` naming the file if it is not the network ``expected`` after ``cfg``'s
    training, or its record of the settings that trained it (none in a file of an mlplab before
    2 Dec 2026) is not a dict."""
    if model.config != expected.config:
        raise ValueError(f"{path} holds another network ({describe(model)}) than the study's "
                         f"{describe(expected)}.")
    row, history, at = extra.get("result"), extra.get("history"), extra.get("study_seconds")
    recorded = extra.get("settings")
    try:
        if not (isinstance(row, dict) and isinstance(history, dict) and is_number(at)):
            raise TypeError("its result, history or seconds are missing")
        if not (recorded is None or isinstance(recorded, dict)):
            raise TypeError(f"its settings are a {type(recorded).__name__}, not a dict")
        h = History.from_dict(history)
        if row.get("init") != init or row.get("depth") != depth or \
                len(h.val_acc) != cfg.epochs:
            raise TypeError(f"its result is not that of {init} init, "
                            f"{counted(depth, 'layer')}, trained {counted(cfg.epochs, 'epoch')}")
        if not all(is_number(row.get(k)) for k in ("train_acc", "val_acc", "seconds")):
            raise TypeError("its accuracies or seconds are not numbers")
    except TypeError as exc:
        raise ValueError(f"{path} is not a complete network of a depth study ({exc}).") from None
    result = DepthResult(init=init, depth=int(depth), hidden=list(model.config["hidden_layers"]),
                         train_acc=float(row["train_acc"]), val_acc=float(row["val_acc"]),
                         seconds=float(row["seconds"]), history=h)
    return result, float(at)


def _network_refused(exc: ValueError, folder: Path) -> ValueError:
    """The refusal ``exc`` of a finished network's file of the study in ``folder``, with what to
    do."""
    return ValueError(f"{exc} If it was edited, put it back; else delete it, and "
                      f"{_resume_command(folder, 'study')} trains that network again.")


def _check_study_settings(recorded: Any, config: dict[str, Any],
                          source: Path, folder: Path) -> None:
    """Refuse a ``depth-config.json`` whose settings are not those ``source`` (a finished
    network or the checkpoint of the study in ``folder``) records it was trained with, in the
    words of a run's resume (:func:`check_same_settings`)."""
    check_same_settings(recorded, _study_settings_record(config), source,
                        folder / DEPTH_CONFIG_FILE,
                        f"another {setting('--out', 'out')}", "study")


def _without_study_checkpoint(folder: Path) -> str:
    """What to do with a study's checkpoint that cannot be resumed from."""
    return (f"If it was edited, put it back; else delete {folder / DEPTH_CHECKPOINT_FILE}, and "
            f"{_resume_command(folder, 'study')} trains its network again from the start.")


def _study_state_refused(folder: Path, exc: TrainingStateError) -> ValueError:
    return ValueError(f"cannot resume from {folder / DEPTH_CHECKPOINT_FILE}: {exc} "
                      f"{_without_study_checkpoint(folder)}")
