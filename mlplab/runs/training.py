"""Training a run and resuming one: :func:`train_run`, the library entry point from a
configuration to a trained model and a run folder, and :func:`resume_run`, which continues a run
folder from its checkpoint to the result an uninterrupted run would have had; both end in
:func:`_fit_and_finish`, which trains and writes the model, history, metrics and plots, and both
return a :class:`RunResult`. This is the module that puts the others together (config, the pieces
built from it, checkpoints, the folder's files, the split record), so it is the top of the
package: nothing else in :mod:`mlplab.runs` imports it (but for a type annotation).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplab import environment, io
from mlplab._text import counted, path_word, shell_command
from mlplab._validation import check_registered, check_y, setting
from mlplab.models import ACTIVATIONS, MLP
from mlplab.optim import OPTIMIZERS
from mlplab.runs.building import (
    crop_padding,
    describe_model,
    load_run_dataset,
    make_augmenter,
    moved_config,
    moved_data_hint,
)
from mlplab.runs.checkpoint import CheckpointCallback, load_checkpoint, recorded_optimizer_module
from mlplab.runs.config import (
    CHECKED_OPTIONS,
    NO_PLOTS_KEY,
    RunConfig,
    absolute_config_paths,
    build_config,
    check_given_options,
    check_same_settings,
    iterations_per_epoch,
    loaded_with,
    without_inert,
)
from mlplab.runs.files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    check_new_run_dir,
    check_run_folder,
    file_state,
    first_missing_folder,
    has_checkpoint,
    inner_run_folder,
    new_run_dir,
    not_a_folder,
    nothing_to_resume,
    read_metrics,
    recorded_plots,
    refuse_if_nothing_saved,
    remove_made_folders,
    remove_partial_writes,
    remove_results,
    resume_command,
    resume_setting,
    run_folder_advice,
    unrecorded_divergence,
    warn_stale_left,
    write_history,
    write_plots,
    writing_over,
)
from mlplab.runs.finished import finished_run_config
from mlplab.runs.lock import run_lock
from mlplab.runs.splits import (
    check_same_data,
    check_same_decoding,
    image_decoding,
    require_classes,
    require_test_split,
    split_record,
    warn_identical_images,
    warn_untrained_classes,
)
from mlplab.trainer import Callback, History, Trainer, TrainingDivergedError

if TYPE_CHECKING:
    from mlplab.data import Dataset, Pipeline


class RunOutcome:
    """What a finished run's ``metrics`` (as in ``metrics.json``) say, for the results of
    :func:`train_run` and :func:`mlplab.torch_mlp.train_run`."""

    metrics: dict[str, Any]

    @property
    def val_accuracy(self) -> float:
        return float(self.metrics["val_accuracy"])

    @property
    def interrupted(self) -> bool:
        return self.metrics.get("status") == "interrupted"

    def __repr__(self) -> str:
        # a summary: the dataclass repr printed the whole configuration and every metric on one
        # line (3 KB for a notebook cell showing the result); they are the attributes
        m = self.metrics
        parts = [f"{k}={m[k]!r}" for k in ("model", "dataset", "status") if k in m]
        parts += [f"{k}={m[k]:.4f}" for k in ("val_accuracy", "test_accuracy")
                  if isinstance(m.get(k), float)]
        parts += [f"{k}={m[k]!r}" for k in ("epochs",) if k in m]
        out = getattr(self, "out", None)
        parts.append(f"out={None if out is None else str(out)!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class RunInterruptedWarning(UserWarning):
    """A run stopped by Ctrl-C (a notebook's kernel interrupt, SIGTERM): :func:`train_run` and
    :func:`resume_run` (and :mod:`mlplab.torch_mlp`'s) save it and return it, ``interrupted``,
    rather than raise, and say so with this warning, where a notebook's cell otherwise ended
    with no word of the stop or of how to go on. Callers that say it in their own words (the
    command line prints its ``--resume`` line) run them within :func:`interrupts_said_elsewhere`."""


def warn_if_interrupted(result: RunOutcome, resume: str, stacklevel: int) -> None:
    """Warn (:class:`RunInterruptedWarning`) if ``result``'s run was interrupted: when, and the
    call ``resume`` (``mlplab.runs.resume_run``) that continues it from its folder."""
    if not result.interrupted:
        return
    m, out = result.metrics, getattr(result, "out", None)
    when = f"after {counted(m['epochs'], 'epoch')} ({counted(m['iterations'], 'iteration')})"
    go_on = (f"{resume}({str(out)!r}) continues it" if out is not None else
             "it was trained in memory (out=None), so there is no checkpoint to resume")
    where = f" in {out}" if out is not None else ""
    warnings.warn(f"the run{where} was interrupted {when}; {go_on}.", RunInterruptedWarning,
                  stacklevel=stacklevel + 1)


@contextlib.contextmanager
def interrupts_said_elsewhere() -> Iterator[None]:
    """No :class:`RunInterruptedWarning` within the block: for a caller that says in its own
    words that the run stopped (the command line), or that stops itself with
    ``KeyboardInterrupt`` and removes the run (tuning's retraining, the report)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunInterruptedWarning)
        yield


@dataclass(repr=False)
class RunResult(RunOutcome):
    """What :func:`train_run` returns.

    ``model`` (trained, best parameters restored when early stopping), ``preprocessing`` (the
    fitted ``Pipeline``: ``model.predict(preprocessing.transform(images))``), ``history``,
    ``metrics`` (as in ``metrics.json``), ``config``, ``classes`` and ``out`` (the run folder,
    or None when nothing was written).
    """

    config: RunConfig
    model: MLP
    preprocessing: Any
    history: History
    metrics: dict[str, Any]
    classes: list[str]
    out: Path | None = None


def check_run_data(cfg: RunConfig, ds: Dataset) -> None:
    """Refuse, before anything is written, a dataset that ``cfg``'s run cannot train on: fewer
    than two classes, labels that are not ``0..K-1`` (or not one per image), crops as wide as
    its images, or ``eval_test`` without a test split (and warn of a class without a training
    image, or training images that are all the same). The
    command line calls it as the data loads, so that it never names a run folder it then drops."""
    require_classes(ds)
    # the labels of a Dataset built by hand: strings (its class names) failed as "invalid
    # literal for int() with base 10: np.str_('b')", from the record of the splits
    for split in ("train", "val", "test"):
        X, y = ds.split(split)
        check_y(y, len(X), ds.num_classes, f"y_{split}")
    warn_untrained_classes(ds)
    warn_identical_images(ds)
    crop_padding(cfg, ds.image_shape)
    if cfg.eval_test:
        require_test_split(ds)


def train_run(config: RunConfig | Mapping[str, Any] | None = None, *,
              out: str | os.PathLike | None = None,
              data: Dataset | Callable[[], Dataset] | None = None,
              callbacks: Sequence[Callback] = (), progress: bool = False, verbose: bool = False,
              plots: bool = True, **options: Any) -> RunResult:
    """Train one model as described by a configuration and (with ``out``) write a run folder.

    Parameters
    ----------
    config : a :class:`RunConfig`, or a dict of its fields (e.g. a loaded ``config.json``).
    out : the run folder to create; None trains in memory only (no files, no checkpoints).
        An existing folder must not already hold a run (use :func:`resume_run` for that).
    data : an already loaded :class:`mlplab.data.Dataset` (raw splits) to use instead of loading
        ``config.dataset``; handy when many runs share one dataset (tuning). The run's config
        then records its name and split sizes (``dataset``, ``val_size``, ``test_size``) and the
        options it was loaded with (``data_seed``, ``image_size``, ``data_dir``); any of these,
        or ``download``, given in ``options`` with a value the dataset does not have is refused
        (pass it to :func:`mlplab.data.load_dataset`). Or a function of no arguments that loads
        it: like None (loading ``config.dataset``), this
        lets the run own the dataset and free its raw training images once they are
        preprocessed, which lowers the peak memory.
    callbacks : extra :class:`mlplab.trainer.Callback` objects (pruning, logging, ...).
    progress, verbose : tqdm progress bars (training, and the data's download or a folder's
        decoding when the run loads it); a line per epoch.
    plots : write the PNG figures into ``out``.
    **options : :class:`RunConfig` fields, applied on top of ``config``; ``preset="NAME"`` starts
        from a preset (see :mod:`mlplab.presets`).

    Returns
    -------
    RunResult : the model, fitted preprocessing, history, metrics and run folder. If the run was
        interrupted (Ctrl-C), ``result.interrupted`` is True, the checkpoint resumes it, and a
        :class:`RunInterruptedWarning` says so.

    Raises
    ------
    ValueError : a bad option, or a bad or missing dataset (``DatasetError``).
    mlplab.trainer.TrainingDivergedError : the loss became NaN or infinite.
    """
    if config is None:
        cfg = build_config(**options)
    else:
        # epochs=5 replaces a config's iters (the exercise's presets run by iterations), as it
        # does a preset's: both went into the config and the run took the config's 1,000
        preset = options.pop("preset", None)
        cfg = build_config(preset, base=config.to_dict() if isinstance(config, RunConfig)
                           else dict(config), **options)
    # a setting asked for that the run would ignore is refused, as the command line refuses it
    # (crop_padding without crops); one that a preset or config set is reset instead. Asked
    # for = given with a value other than its default: train_run(**config) repeats a run, and a
    # whole configuration holds every setting, the ones its run did not use at their defaults
    cfg = without_inert(cfg, options)
    defaults = RunConfig()  # (the checked settings are scalars, validated by build_config)
    check_given_options({k: v for k, v in options.items()
                         if k in CHECKED_OPTIONS and v != getattr(defaults, k)}, cfg)
    cfg = absolute_config_paths(cfg)
    if out is not None:  # before the data, which may take long to load (or download)
        check_new_run_dir(out)
    # the folders this call makes, removed again if it fails before saving (never the user's)
    made = first_missing_folder(out) if out is not None else None
    out_dir = new_run_dir(out) if out is not None else None
    fit_failed = False  # (not the lock's refusal, or a run that another process has started)
    try:
        # held from the start, while the data loads and the preprocessing is fitted: a second
        # run into the same folder is refused at once, and --resume and evaluate say the run
        # is being trained, where they found an empty folder ("nothing was saved")
        with run_lock(out_dir, new=True) if out_dir is not None else contextlib.nullcontext():
            cfg, ds, pre, model, X_train = _prepare(cfg, data, options, progress)
            if out_dir is not None:
                # a killed first attempt's half-written config.json (the folder held no run, so
                # this command was right to start it again): it stayed in the finished run
                remove_partial_writes(out_dir)
                try:  # new_run_dir looked a moment ago; another process may have started since
                    io.write_json(out_dir / CONFIG_FILE,
                                  {**cfg.to_dict(), NO_PLOTS_KEY: not plots}, exclusive=True)
                except FileExistsError:
                    raise ValueError(f"{out_dir} already holds a run, which another process has "
                                     f"just started; choose another {setting('--out', 'out')}."
                                     ) from None
            try:
                result = _fit_and_finish(cfg, ds, pre, model, X_train, None, 0.0, out_dir,
                                         callbacks, progress, verbose, plots)
            except Exception as exc:
                fit_failed = True
                if out_dir is not None and isinstance(exc, TrainingDivergedError):
                    # a folder gone meanwhile is the news (said as the end of a run does, its
                    # divergence with it: resuming the folder put back would repeat that)
                    check_run_folder(out_dir, diverged="its loss")
                # diverged, or out of memory, before anything was saved: leave no half-made run
                # that would block the same --out again (and that --resume, starting it afresh
                # with the same settings, would fail on again); removed while the lock is held,
                # or a resume_run let in by its release would train a run whose config.json
                # then vanished under it
                if out_dir is not None and _saved_nothing(out_dir):
                    (out_dir / CONFIG_FILE).unlink(missing_ok=True)
                raise
    except BaseException as exc:
        if out_dir is None:
            raise
        if not fit_failed or _saved_nothing(out_dir):
            # a bad dataset, a Ctrl-C while it loaded, the lock refused, or a fit that saved
            # nothing: the folders made for the run are removed again, each only while empty
            # (another run's, or a file put there meanwhile, is never touched)
            remove_made_folders(out_dir, made)
            raise
        if not isinstance(exc, TrainingDivergedError):
            raise
        # not into a folder gone since the check above: the write would make it again, holding
        # a metrics.json alone
        check_run_folder(out_dir, diverged="its loss")
        unrecorded = record_divergence(out_dir, exc)
        raise TrainingDivergedError(f"{exc} {out_dir} keeps the checkpoint of its last good "
                                    f"epoch.{unrecorded} Start the new run with another "
                                    f"{setting('--out', 'out')}.") from None
    # (after the lock's release: the run folder is whole, whatever the warnings filter does)
    warn_if_interrupted(result, "mlplab.runs.resume_run", stacklevel=2)
    return result


def _prepare(cfg: RunConfig, data: Dataset | Callable[[], Dataset] | None,
             options: Mapping[str, Any], progress: bool
             ) -> tuple[RunConfig, Dataset, Any, MLP, np.ndarray]:
    """A new run's data and starting point: its config as recorded (the data it was given),
    its dataset, fitted preprocessing, freshly initialised model and training features."""
    ds, owned = _take_dataset(cfg, data, progress=progress)
    check_run_data(cfg, ds)  # before anything is written
    if not owned:
        # a dataset loaded by the caller may be another than the config names (train_run(data=
        # load_dataset("fashion-mnist")) recorded the default, digits) and split otherwise (a
        # preset's val_size 0, a default), with another split seed or image size: record the
        # data and split it has, which evaluate_run, resume_run and train_run(**config) load again
        lent = absolute_config_paths(replace(cfg, dataset=ds.name, val_size=len(ds.y_val),
                                             test_size=len(ds.y_test), **loaded_with(ds)))
        _refuse_loading_options(options, cfg, lent, ds)
        cfg = lent
    elif cfg.data_seed is None and (drawn := loaded_with(ds).get("data_seed")) is not None:
        # a random split (data_seed None): record the seed load_dataset drew, with which
        # evaluate_run and resume_run split the data alike (they drew another split, and refused
        # the run's own data as changed)
        cfg = replace(cfg, data_seed=drawn)
    pre, model, X_train = _fresh(cfg, ds)
    if owned:
        ds = _without_raw_train(ds)
    return cfg, ds, pre, model, X_train


def record_divergence(run_dir: Path, exc: TrainingDivergedError) -> str:
    """Record in ``run_dir`` that its run's loss diverged after it saved something (a
    checkpoint, a stop's results): ``metrics.json`` says ``{"status": "diverged", "reason":
    ...}``, and the checkpoint of its last good epoch stays. What an earlier stop (Ctrl-C)
    saved, ``model.npz``, ``history.csv`` and the figures, goes first: beside the record they
    had ``evaluate`` and ``predict`` use the stop's model, and ``--plot`` draw the stop's
    history, as the run's. A file that cannot be removed or written is passed over (the
    divergence is the news), but the record is written whenever it can be: one file left
    (a figure another user owns) kept it from being written, and the run read as unfinished.
    Returns what the divergence's message adds: "" once recorded, else the clause that says the
    record is missing (a full disk), why, and what that leaves; that failure was passed over
    without a word, and the run read as unfinished, its --resume diverging again."""
    # (metrics.json first: a stop in between leaves a run that reads as unfinished, with no
    # result of another model than its checkpoint's)
    remove_results(run_dir, also=(MODEL_FILE,), keep_going=True)
    path = run_dir / METRICS_FILE
    try:
        io.write_json(path, {"status": "diverged", "reason": str(exc)})
    except OSError as failed:
        return f" {unrecorded_divergence(path, failed)}"
    return ""


def _saved_nothing(run_dir: Path) -> bool:
    """Whether a new run in ``run_dir`` has saved nothing yet: no checkpoint, results or model
    (nor anything else by their names)."""
    # (io.nothing_at: a file there that cannot be looked at, a loop of links, is something,
    # where exists() answered False and the run's config.json was removed beside it)
    return all(io.nothing_at(run_dir / f) for f in (CHECKPOINT_FILE, METRICS_FILE, MODEL_FILE))


def resume_run(run: str | os.PathLike, *, data: Dataset | Callable[[], Dataset] | None = None,
               callbacks: Sequence[Callback] = (),
               progress: bool = False, verbose: bool = False, plots: bool = True,
               data_dir: str | os.PathLike | None = None, announce: bool = False) -> RunResult:
    """Continue the run in folder ``run`` from its last checkpoint, to the end it was configured
    for, with the same result an uninterrupted run would have had. ``data`` as in
    :func:`train_run` (it must be the same dataset). ``data_dir``: where the run's data is now,
    if it was moved (for a ``folder:PATH`` dataset the folder itself); its splits must be the
    ones the run was trained on, and ``config.json`` then names the new place. ``announce``
    prints "resuming RUN" to stderr once the run is known to be resumable: its checkpoint read
    and checked against ``config.json``, before its data loads. Interrupted again, the run is
    saved and returned as by :func:`train_run`, with a :class:`RunInterruptedWarning`."""
    run_dir = Path(run)
    _resumable_config(run_dir)  # a run folder, not done yet, before a lock file is made in it
    # before anything else is read or removed: another process training this folder is refused
    with run_lock(run_dir):
        cfg = _resumable_config(run_dir)  # again: the process that held the lock may have ended it
        result = _resume_locked(run_dir, cfg, data, callbacks, progress, verbose, plots,
                                data_dir, announce)
    warn_if_interrupted(result, "mlplab.runs.resume_run", stacklevel=2)
    return result


def _resume_locked(run_dir: Path, cfg: RunConfig, data: Dataset | Callable[[], Dataset] | None,
                   callbacks: Sequence[Callback], progress: bool, verbose: bool, plots: bool,
                   data_dir: str | os.PathLike | None, announce: bool) -> RunResult:
    config_path, ckpt = run_dir / CONFIG_FILE, run_dir / CHECKPOINT_FILE
    remove_partial_writes(run_dir)
    cfg = moved_config(cfg, data, data_dir)
    loaded = state = None
    if has_checkpoint(ckpt):
        loaded, state, seconds = load_checkpoint(ckpt)
        # before the data is loaded: settings edited in config.json since the checkpoint
        _check_same_settings(loaded.extra.get("settings"), cfg, ckpt, config_path)
        # and a folder's images that an older mlplab decoded otherwise
        check_same_decoding(loaded.extra, cfg.dataset, run_dir, "resuming")
    else:
        # killed before its first checkpoint, the folder holds config.json alone; files of
        # epochs trained mean the checkpoint was deleted: it restarted without a word
        left = [f for f in (METRICS_FILE, MODEL_FILE, HISTORY_FILE) if (run_dir / f).exists()]
        if left:
            warnings.warn(f"{run_dir} has no {CHECKPOINT_FILE} (deleted?) though it holds "
                          f"{' and '.join(left)} of epochs trained before: the run starts again "
                          "from its first epoch, and replaces them as it goes (stop it now to "
                          "keep them).", stacklevel=3)
    if announce:  # not before: "resuming" and then a refusal ("already completed", "was
        # trained with ...") contradicted itself
        # (a run killed in its first epoch trains from the start: "resuming" alone let its user
        # believe some epochs were kept; mlplab torch train says the same)
        start = "" if loaded is not None else " from the start (it has no checkpoint)"
        print(f"resuming {run_dir}{start}", file=sys.stderr, flush=True)
    # a folder decoded to the checkpoint's channels, whatever this mlplab would choose now;
    # data not found is answered with --data-dir (unless that was the place given)
    ds, owned = _take_dataset(cfg, data, loaded.extra.get("image_shape") if loaded else None,
                              moved="" if data_dir is not None else
                              moved_data_hint(resume_command(run_dir),
                                              f"resume_run({str(run_dir)!r}, data_dir=DIR)"),
                              progress=progress)
    if cfg.eval_test:
        require_test_split(ds)
    if loaded is not None:
        pre, model = loaded.preprocessing, loaded.model
        _check_same_network(model, cfg, ckpt, config_path)  # edited, or another run's
        earlier = _earlier_environments(loaded.extra, ckpt)
        if data_dir is not None:
            _check_moved_data(loaded.extra.get("splits"), ds, ckpt, data_dir)
        X_train = pre.transform(ds.X_train)
    else:  # killed before the first epoch ended: start again from scratch, same seed
        pre, model, X_train = _fresh(cfg, ds)
        state, seconds, earlier = None, 0.0, []
    if owned:
        ds = _without_raw_train(ds)
    if X_train.shape[1] != model.input_size:
        raise ValueError(f"the dataset has {X_train.shape[1]} features but the checkpoint's model "
                         f"expects {model.input_size}; resume with the run's own dataset.")
    if loaded is not None and data_dir is None and loaded.extra.get("splits"):
        # the data where it was may still be split otherwise (an edited val_size or data_seed,
        # a folder that gained images), which the checkpoint's rows and order do not fit
        check_same_data(loaded.extra["splits"], ds, ckpt,
                        hint=f"If {CONFIG_FILE}'s val_size, test_size or data_seed was edited, "
                             "put back the value the run was started with.")
    if data_dir is not None:  # the data lives there now: evaluate and --resume look there next
        io.write_json(config_path, {**cfg.to_dict(), NO_PLOTS_KEY: not recorded_plots(run_dir)})
    try:
        return _fit_and_finish(cfg, ds, pre, model, X_train, state, seconds, run_dir, callbacks,
                               progress, verbose, plots, earlier)
    except TrainingDivergedError as exc:
        check_run_folder(run_dir, diverged="its loss")  # a folder gone meanwhile is the news
        # recorded as a new run's divergence is: a stop's results left beside it were listed,
        # evaluated and predicted with as the run's, and --resume and --out pointed at resuming
        unrecorded = record_divergence(run_dir, exc)
        kept = f" {run_dir} keeps the checkpoint of its last good epoch." \
            if io.found_file(run_dir / CHECKPOINT_FILE) else ""
        # resuming repeats the same arithmetic: it would diverge again each time
        again = "" if unrecorded else " Resuming this run repeats it."
        raise TrainingDivergedError(f"{exc}{kept}{unrecorded}{again} Start a new run with "
                                    f"other settings (another {setting('--out', 'out')}, or "
                                    f"delete {run_dir}).") from None


def run_config(run: str | os.PathLike) -> RunConfig:
    """The configuration of the ``mlplab train`` run in folder ``run`` (its ``config.json``),
    refused (in this order) unless the folder holds one that is valid and whose activation and
    optimiser are registered: what ``mlplab train --like RUN`` starts from, and
    ``train_run(run_config(RUN), seed=1)`` trains another run like it."""
    run_dir = Path(run)
    config_path = run_dir / CONFIG_FILE
    if not io.is_folder(run_dir):
        raise FileNotFoundError(f"{not_a_folder(run_dir)}; {run_folder_advice()}.")
    if not io.is_file(config_path):  # (a loop of links: said, not "no config.json")
        from mlplab.runs.finished import other_output_hint

        # a depth study, say, whose --resume is another command's
        nested = inner_run_folder(run_dir, CONFIG_FILE) or other_output_hint(run_dir)
        hint = f"; {nested}" if nested is not None else ""
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {CONFIG_FILE}){hint}.")
    values = io.read_json(config_path)
    if isinstance(values, dict) and values.get("framework") == "pytorch":
        # (its --resume only if it was stopped: a finished run has nothing left to resume)
        resume = resume_setting(run_dir, torch=True)
        again = setting("mlplab torch train with its options (it has no --like)",
                        "mlplab.torch_mlp.train_run(...) with its options")
        mine = setting("mlplab train", "mlplab.runs")
        raise ValueError(f"{run_dir} was written by mlplab torch train: {mine} can neither "
                         f"resume it nor train from its settings. {resume} continues it if it "
                         f"was stopped; {again} trains another.")
    cfg = finished_run_config(values, config_path)
    # not an invalid config: one written where these names were registered
    module = None
    if cfg.activation not in ACTIVATIONS:  # config.json does not say by which module; these do
        module = next((io.recorded_activation_module(f)
                       for f in (run_dir / CHECKPOINT_FILE, run_dir / MODEL_FILE)
                       if f.is_file()), None)
    check_registered(cfg.activation, ACTIVATIONS, "activation", str(config_path), module=module)
    check_registered(cfg.optimizer, OPTIMIZERS, "optimizer", str(config_path),
                     module=recorded_optimizer_module(run_dir / CHECKPOINT_FILE)
                     if cfg.optimizer not in OPTIMIZERS else None)
    try:
        cfg.validate()
    except (TypeError, ValueError) as exc:  # a hand-edited file
        raise ValueError(f"{config_path} is not a valid run configuration: {exc}") from None
    return cfg


def _resumable_config(run_dir: Path) -> RunConfig:
    """The configuration of the run in ``run_dir`` (:func:`run_config`), refused if the run has
    completed."""
    refuse_if_nothing_saved(run_dir, CONFIG_FILE, "run", "mlplab.runs.train_run")
    cfg = run_config(run_dir)
    status = read_metrics(run_dir / METRICS_FILE).get("status")
    if status == "completed":
        raise nothing_to_resume(run_dir, "run")
    if status == "diverged":  # resumed, it diverges again from the same checkpoint
        raise ValueError(f"the run in {run_dir} diverged (its loss became NaN or infinite); "
                         "resuming it would repeat it: start a new run with other settings (a "
                         f"lower {setting('--lr', 'lr')}, say) and another "
                         f"{setting('--out', 'out')}.")
    return cfg


def _check_moved_data(splits: Any, ds: Dataset, ckpt: Path, data_dir: str | os.PathLike) -> None:
    """Refuse data at its new place whose splits are not the ones the checkpoint recorded; a
    checkpoint that recorded none can only be warned about."""
    if splits:
        check_same_data(splits, ds, ckpt)
    else:
        # stacklevel 3: the caller of resume_run
        warnings.warn(f"{ckpt} was written by an mlplab that did not record the run's "
                      f"splits: the data in {data_dir} cannot be checked against them; "
                      "make sure it is the run's.", stacklevel=3)


def _earlier_environments(extra: Mapping[str, Any], ckpt: Path) -> list[dict[str, Any]]:
    """The environments that trained the run before this process and differ from this one's in
    what its numbers depend on (mlplab, NumPy, BLAS and its threads, CPU), oldest first, for its
    ``metrics.json``: the checkpoint's ``earlier_environments``, and its ``environment`` if that
    differs, with a warning that the run will not end with an uninterrupted run's numbers to the
    last digit (resuming repeats the arithmetic exactly only where it rounds alike). Checkpoints
    written before mlplab recorded its environment are not compared."""
    kept = extra.get("earlier_environments")
    earlier = [e for e in kept if isinstance(e, dict)] if isinstance(kept, list) else []
    recorded = extra.get("environment")
    if isinstance(recorded, dict):
        changed = environment.numeric_differences(recorded, environment.record())
        if changed:
            # stacklevel 3: the caller of resume_run
            warnings.warn(f"{ckpt} was written with another environment ({'; '.join(changed)}): "
                          "the run continues correctly, but its numbers will not match an "
                          "uninterrupted run's to the last digit, which needs the same mlplab, "
                          "NumPy, BLAS threads and CPU.", stacklevel=3)
            earlier.append(recorded)
    return earlier


#: RunConfig fields a checkpoint does not record for :func:`_check_same_settings`: where the
#: data is (it may move: ``data_dir``), how it is split and sized (a split size has several
#: spellings, ``null``, a count or a fraction, for the same split: the splits themselves are
#: what a checkpoint's ``splits`` record, and the model its input size), whether the test split
#: is measured at the end, the preset's name (a label), and the network, which the checkpoint's
#: model itself is checked against (:func:`_check_same_network`)
_NOT_RECORDED = frozenset(("dataset", "data_dir", "download", "val_size", "test_size",
                           "image_size", "data_seed", "eval_test", "preset", "hidden",
                           "activation", "batchnorm", "dropout", "dtype"))


def _settings_record(cfg: RunConfig) -> dict[str, Any]:
    """The settings the continued training of ``cfg``'s run depends on (optimiser, learning
    rate and schedule, L2, batches, length, augmentation, seed, preprocessing), as
    ``config.json`` holds them: the checkpoint's record, which a resume compares ``config.json``
    with (the trainer state alone kept no reg, and a resume trained on under edited values)."""
    values = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_RECORDED}
    return dict(io.parse_json_array(io.json_array(values), "settings"))


def _check_same_settings(recorded: Any, cfg: RunConfig, ckpt: Path, config_path: Path) -> None:
    """Refuse a ``config.json`` whose settings are not those the checkpoint ``ckpt`` was trained
    with (:func:`_settings_record`). A checkpoint of an mlplab before 2 Dec 2026 records
    none and is not compared (the trainer still refuses learning rates its schedule does not
    give)."""
    check_same_settings(recorded, _settings_record(cfg), ckpt, config_path,
                        _new_run_like(config_path.parent))


def _new_run_like(run_dir: Path) -> str:
    """How to start a new run with a run's settings as its ``config.json`` now says them."""
    return setting(shell_command(["mlplab", "train", "--like", path_word(run_dir), "--out",
                                  "DIR"]), f"another {setting('--out', 'out')}")


def _check_same_network(model: MLP, cfg: RunConfig, ckpt: Path, config_path: Path) -> None:
    """Refuse a checkpoint whose network is not the one ``config.json`` describes: the network
    was edited there since (the settings record leaves it to this check), or the checkpoint
    was copied in from another run."""
    c = model.config
    have = {"hidden_sizes": list(c["hidden_sizes"]), "activation": c["activation"],
            "batchnorm": c["batchnorm"], "dropout": c["dropout"],
            "dtype": np.dtype(c["dtype"]).name}
    wanted = {"hidden_sizes": list(cfg.hidden), "activation": cfg.activation,
              "batchnorm": bool(cfg.batchnorm), "dropout": float(cfg.dropout),
              "dtype": np.dtype(cfg.dtype).name}
    for key, value in wanted.items():
        if have[key] != value:
            raise ValueError(f"{ckpt} holds a network with {key} {have[key]!r}, but "
                             f"{config_path} says {value!r}: either {CONFIG_FILE} was edited "
                             "since, and putting back the original value resumes the run, or "
                             "the checkpoint is another run's; a network of the new shape "
                             f"starts as a new run ({_new_run_like(config_path.parent)}).")


#: RunConfig fields that say how load_dataset loads and splits the data
LOADING_OPTIONS = ("dataset", "data_dir", "download", "val_size", "test_size", "image_size",
                   "data_seed")


def _refuse_loading_options(options: Mapping[str, Any], cfg: RunConfig, lent: RunConfig,
                            ds: Dataset) -> None:
    """Refuse loading options given as keywords with a dataset loaded already (``data=``): the
    run records the dataset's own, so ``train_run(data=ds, val_size=100, image_size=16)`` trained
    on ds's split and size without a word. Left alone: the defaults, values the dataset has
    anyway, and the fields of ``config`` (a preset's val_size 0, a config.json), which are a
    base that the lent data replaces."""
    defaults = RunConfig()
    bad = [k for k in LOADING_OPTIONS if k in options and options[k] != getattr(defaults, k)
           and (k == "download" or not _same_loading(k, getattr(cfg, k), getattr(lent, k), ds))]
    if bad:
        given = ", ".join(f"{k}={options[k]!r}" for k in bad)
        name = options["dataset"] if "dataset" in bad else ds.name
        call = ", ".join([repr(name)] + [f"{'seed' if k == 'data_seed' else k}={options[k]!r}"
                                         for k in bad if k != "dataset"])
        raise ValueError(f"{given} cannot apply to data=, a dataset loaded already ({ds.name}; "
                         f"the run records its own); load the data with them, "
                         f"mlplab.data.load_dataset({call}), or leave them out.")


def _same_loading(key: str, given: Any, has: Any, ds: Dataset) -> bool:
    """Whether the loading option ``key`` given as ``given`` is what the lent dataset ``ds`` has
    (``has``, as the run records it) in load_dataset's terms: another spelling of its name
    (``"CIFAR-10"``), of its image size (``"32"``, ``(32, 32)``), a validation fraction that
    comes to its split size, a data_dir that the dataset does not read, or the random split
    (data_seed None) that any seed gives, loads the same images and is no conflict."""
    from mlplab.data.datasets import canonical_dataset_name, parse_image_size

    if key in ("val_size", "test_size"):
        return _same_split_size(key, given, has, ds)
    with contextlib.suppress(ValueError, TypeError):  # a malformed value: compared as it is
        if key == "dataset":
            return bool(canonical_dataset_name(given) == canonical_dataset_name(has))
        if key == "image_size":
            return parse_image_size(given) == parse_image_size(has)
        if key == "data_seed" and given is None:
            # None asks for a random split, which any seed's is (one drawn by
            # load_dataset(seed=None) included); the run records the dataset's
            return True
        if key == "data_dir" and has is None and ds.load_options:
            # loaded by name from no data_dir: the digits are bundled and a folder: dataset is
            # named by its path, so load_dataset ignores (and records no) data_dir for them
            return True
    return bool(given == has)


def _same_split_size(key: str, given: Any, has: int, ds: Dataset) -> bool:
    """Whether the split size ``key`` (``val_size``, ``test_size``) given as ``given`` is the
    count the lent dataset ``ds`` has (``has``), read as load_dataset reads it: the size ds was
    loaded with (``Dataset.load_options``), a count, or a fraction of the images it is taken
    from (validation: the training and validation images; test: all of them, as for a dataset
    without a separate test set). A size load_dataset refuses (NaN, 1.0, -1, "0.2", more images
    than there are) is refused in its words (:class:`SplitSizeError`): not as one the dataset
    does not have, with advice to load the data with it."""
    from mlplab.data.base import resolve_size

    def plain(value: Any) -> Any:  # np.float32(0.2) is the 0.2 it was loaded with
        return value.item() if isinstance(value, np.generic) else value

    asked = ds.load_options.get(key)
    if asked is not None and not isinstance(given, bool) and plain(given) == plain(asked):
        return True  # (True == 1 in Python: True is refused below, as load_dataset refuses it)
    n = len(ds.y_train) + len(ds.y_val) + (len(ds.y_test) if key == "test_size" else 0)
    return resolve_size(given, n, 0, key, spare=1) == has


def _take_dataset(cfg: RunConfig, data: Dataset | Callable[[], Dataset] | None,
                  image_shape: Sequence[int] | None = None,
                  moved: str | None = None, progress: bool = True) -> tuple[Dataset, bool]:
    """The run's dataset and whether the run owns it: it does when it loads it itself (``data``
    None, or a function that loads it), and may then free what it no longer needs. ``moved`` and
    ``progress`` as in :func:`load_run_dataset`."""
    if data is None:
        return load_run_dataset(cfg, image_shape, moved=moved, progress=progress), True
    if callable(data):
        return data(), True
    return data, False


def _without_raw_train(ds: Dataset) -> Dataset:
    """``ds`` without its raw training images, which are dead weight once preprocessed (a
    quarter of the float32 training set, and on CIFAR-10 what puts a run over 1.5x its data)."""
    import dataclasses

    return dataclasses.replace(ds, X_train=np.empty((0, *ds.X_train.shape[1:]), ds.X_train.dtype))


def _fresh(cfg: RunConfig, ds: Dataset) -> tuple[Any, MLP, np.ndarray]:
    """Fitted preprocessing, a freshly initialised model and the training features."""
    from mlplab.data import make_preprocessing

    pre = make_preprocessing(cfg.preprocessing, dtype=cfg.dtype)
    X_train = pre.fit_transform(ds.X_train)
    model = MLP(X_train.shape[1], cfg.hidden, len(ds.classes), activation=cfg.activation,
                init=cfg.init, std=cfg.std, dropout=cfg.dropout, batchnorm=cfg.batchnorm,
                seed=cfg.seed, dtype=cfg.dtype)
    return pre, model, X_train


class _FolderKept(Callback):
    """Stops the run where its folder was removed or moved meanwhile (its ``config.json``
    gone), before the checkpoint callback after it writes (:func:`check_run_folder`)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        check_run_folder(self.run_dir)

    def on_train_end(self, trainer: Trainer) -> None:
        check_run_folder(self.run_dir)


def _fit_and_finish(cfg: RunConfig, ds: Dataset, pre: Pipeline, model: MLP, X_train: np.ndarray,
                    state: dict[str, Any] | None, seconds_before: float, out_dir: Path | None,
                    callbacks: Sequence[Callback], progress: bool, verbose: bool,
                    plots: bool, earlier: Sequence[dict[str, Any]] = ()) -> RunResult:
    X_val = pre.transform(ds.X_val) if len(ds.y_val) else None
    # a run resumed elsewhere keeps where its earlier epochs were trained
    mixed = {"earlier_environments": list(earlier)} if earlier else {}
    decoding = image_decoding(ds)  # (a folder dataset's; both records below carry it)
    extra: dict[str, Any] = {"classes": list(ds.classes), "dataset": ds.name,
                             "image_shape": list(ds.image_shape), "preset": cfg.preset,
                             "splits": split_record(ds),  # what a resume from moved data must find
                             "environment": environment.record(),  # and a resume elsewhere
                             **mixed, **decoding}  # and a resume by a later mlplab
    # and, in the checkpoint only, the settings a resume must find in config.json again
    ckpt_extra = {**extra, "settings": _settings_record(cfg)}
    ckpt_cb = CheckpointCallback(out_dir / CHECKPOINT_FILE, pre, ckpt_extra, seconds_before) \
        if out_dir is not None else CheckpointCallback(os.devnull, pre, ckpt_extra,
                                                       seconds_before)
    # before each save, the folder is checked to be still there (see _FolderKept)
    all_callbacks = [*([_FolderKept(out_dir), ckpt_cb] if out_dir is not None else []),
                     *callbacks]
    trainer = Trainer(cfg.trainer_config(progress=progress, verbose=verbose),
                      callbacks=all_callbacks, augment=make_augmenter(cfg, ds.image_shape, pre))
    if state is not None:
        trainer.resume(state, same_schedule=True)  # refuses one trained under another
    history = trainer.fit(model, X_train, ds.y_train, X_val,
                          ds.y_val if X_val is not None else None)
    seconds = ckpt_cb.seconds()

    metrics: dict[str, Any] = {
        "status": "interrupted" if history.interrupted else "completed",
        "train_accuracy": model.accuracy(X_train, ds.y_train),
        "val_accuracy": model.accuracy(X_val, ds.y_val) if X_val is not None else None,
    }
    if cfg.eval_test and not history.interrupted:
        metrics["test_accuracy"] = model.accuracy(pre.transform(ds.X_test), ds.y_test)
    metrics.update({
        "best_val_accuracy": history.best_val_acc if history.best_epoch > 0 else None,
        "best_epoch": history.best_epoch if history.best_epoch > 0 else None,
        "stopped_early": history.stopped_early,
        "epochs": trainer.epoch,
        "iterations": trainer.iteration,
        "seconds": round(seconds, 3),
        "final_loss": history.loss[-1] if history.loss else None,
        "dataset": ds.name,
        "model": describe_model(model),
        "num_params": model.num_params,
        "preset": cfg.preset,
        "seed": cfg.seed,
        **extra["splits"],
        "environment": extra["environment"],
        **mixed,
        **decoding,
    })
    result = RunResult(cfg, model, pre, history, metrics, list(ds.classes), out_dir)
    if out_dir is not None:
        # before each write: the folder may go while the metrics are measured and the figures
        # drawn (seconds), and each write would make it again
        check_run_folder(out_dir)
        # a resumed run's metrics.json, history and figures are its earlier stop's: gone before
        # the new model is written, so that a second Ctrl-C during these writes (which stops at
        # once, unsaved) leaves a run that reads as unfinished, resumed from its checkpoint,
        # with no file that describes another model than model.npz (which records its own
        # metrics, so evaluate can say which model it is)
        # one that cannot be removed (another user's, one held open) is passed over: the new
        # files replace those of their names, and any left is said once they are written
        stale = remove_results(out_dir, keep_going=True)
        stale_before = [file_state(path) for path, _ in stale]
        # one that can be neither removed nor replaced (another user's in a sticky folder)
        # ends the run unsaved with its name: a bare --resume failed on it again, each time
        with writing_over(stale):
            in_model = {k: v for k, v in metrics.items()  # extra has these
                        if k not in ("environment", "earlier_environments")}
            io.save_model(out_dir / MODEL_FILE, model, pre, {**extra, "metrics": in_model})
            per_epoch = _per_epoch(cfg, len(ds.y_train))
            check_run_folder(out_dir)
            write_history(out_dir / HISTORY_FILE, history, per_epoch)
            if plots:
                write_plots(out_dir, result, ds, X_val, per_epoch, marker=CONFIG_FILE)
            check_run_folder(out_dir)
            # last: its presence marks a finished write
            io.write_json(out_dir / METRICS_FILE, metrics)
        warn_stale_left(stale, stale_before, "run",
                        "stopped" if history.interrupted else "finished")
    return result


def _per_epoch(cfg: RunConfig, n: int) -> int:
    return iterations_per_epoch(cfg.batch_size, cfg.sampling, n)
