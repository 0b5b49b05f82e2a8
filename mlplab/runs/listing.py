"""The run folders under a folder, one summary each: what ``mlplab runs`` prints.

:func:`find_runs` walks folders for run folders (``mlplab train``'s and ``mlplab torch train``'s,
including those inside tuning and report folders, such as a search's ``best-run/``), and
:func:`summarize_run` reads one into a flat record (status, data, network, accuracies, length,
time) from its ``metrics.json`` and ``config.json`` alone: no model is loaded and no data read, so
listing hundreds of runs takes a moment. A run that a process is training now (it holds the
folder's lock, :mod:`mlplab.runs.lock`) is listed as ``training``, and one killed before it
finished, which has no ``metrics.json`` yet, as ``unfinished``; both with the figures of their
last epoch's checkpoint (only the trainer's small record is read from it). One whose files
cannot be read is listed as ``unreadable`` with the reason, not skipped, so that nothing goes
missing from the list without a word.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlplab import io
from mlplab._text import os_error_text
from mlplab._validation import path_list
from mlplab.runs.config import iterations_per_epoch
from mlplab.runs.files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    DEPTH_CONFIG_FILE,
    DEPTH_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    TORCH_CHECKPOINT_FILE,
    not_a_folder,
)
from mlplab.runs.lock import training_process

#: the files beside config.json that make a folder a run folder (model.pt, checkpoint.pt: mlplab
#: torch train's)
_RUN_MARKERS = (METRICS_FILE, CHECKPOINT_FILE, MODEL_FILE, "model.pt", TORCH_CHECKPOINT_FILE)
#: folders that hold no runs and can be large: the decoded-image cache, virtual environments
_SKIPPED = {"folder-cache", "__pycache__", "node_modules", "site-packages"}

#: what :func:`summarize_run` gives, in the order ``mlplab runs`` prints them
FIELDS = ("run", "status", "framework", "dataset", "model", "preset", "epochs", "of_epochs",
          "stopped_early",
          "train_accuracy", "val_accuracy", "best_val_accuracy", "test_accuracy", "seconds",
          "seconds_left",
          "finished", "problem")

#: the keys ``mlplab runs --sort`` takes: time and name ascending, the accuracies highest first
SORT_KEYS = ("finished", "name", "val", "best-val", "test", "duration", "time")
#: what ``sort`` once called ``finished``: kept for scripts written before ``duration`` came,
#: though the listing's ``time`` column is the training time (sorted by ``duration``)
_OLD_SORT_NAMES = {"time": "finished"}


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a run: a ``config.json`` and one of the files a run writes, or
    a ``config.json`` alone that is a run's (a run in its first epoch, or killed during it, has
    written nothing else yet), or a run's files without its ``config.json``. A folder this user
    may not look into (another user's run in a shared folder, mode 700) counts as one:
    :func:`summarize_run` then lists it as ``unreadable`` with the reason, where the whole
    listing failed on it."""
    try:
        if not io.is_file(folder / CONFIG_FILE):
            # a run that lost its config.json (deleted, or copied without it) is still one,
            # listed as unreadable rather than hidden: metrics.json beside a model or checkpoint
            # file of mlplab's names, which another program's folder is unlikely to hold both of
            return io.is_file(folder / METRICS_FILE) and any(
                io.is_file(folder / m) for m in (MODEL_FILE, CHECKPOINT_FILE))
        return any(io.is_file(folder / m) for m in _RUN_MARKERS) or _a_runs_config(folder)
    except OSError:  # not "no such file": a folder it may not search
        return True


def _a_runs_config(folder: Path) -> bool:
    """Whether ``folder``'s lone ``config.json`` is an mlplab run's (mlplab train's and mlplab
    torch train's both name the dataset and the hidden layers), not some other program's."""
    try:
        config = io.read_json(folder / CONFIG_FILE)
    except ValueError:  # not JSON: nothing says it is a run's
        return False
    return isinstance(config, dict) and {"dataset", "hidden"} <= config.keys()


def find_runs(paths: str | os.PathLike | Iterable[str | os.PathLike],
              studies: list[Path] | None = None) -> list[Path]:
    """The run folders among ``paths`` (folders, or one folder) and below them, each once, in
    the order found (a path that is a run folder itself stands for itself). Symbolic links to
    folders are not followed (a link to the run's parent would loop); hidden folders and caches
    are skipped. ``studies``, if given, receives the depth studies found below ``paths``
    (``mlplab torch depth``'s folders, which hold no run folder: a listing can say they were
    passed over)."""
    found: dict[Path, Path] = {}  # by the real place: runs/a and /home/me/runs/a are one run
    for path in map(Path, path_list(paths)):
        if not io.is_folder(path):  # (one that cannot be looked at: not_a_folder says why)
            raise FileNotFoundError(f"{not_a_folder(path)}; pass the folder that holds the run "
                                    "folders (mlplab train writes them under runs/ by default).")
        for run in _walk(path, studies):
            found.setdefault(run.resolve(), run)
    return list(found.values())


def is_depth_study(folder: Path) -> bool:
    """Whether ``folder`` is a depth study's (its table, or the configuration it starts with).
    A marker that is there but cannot be looked at (a loop of links, a link to a name too long)
    raises its ``OSError``, as :func:`mlplab.io.is_file` does."""
    return any(io.is_file(folder / marker) for marker in (DEPTH_FILE, DEPTH_CONFIG_FILE))


def _study_error(folder: Path) -> OSError | None:
    """The error of looking at ``folder``'s depth-study markers, None if there is none."""
    try:
        is_depth_study(folder)
    except OSError as exc:
        return exc
    return None


def _listed(folder: Path) -> bool:
    """Whether :func:`find_runs` lists ``folder``: a run folder, or one whose depth-study markers
    cannot be looked at (not known to be a study or not: :func:`summarize_run` lists it as
    unreadable with the reason, where the error ended the whole listing)."""
    return is_run_folder(folder) or _study_error(folder) is not None


def _walk(top: Path, studies: list[Path] | None = None) -> Iterator[Path]:
    if _listed(top):
        yield top
        return  # a run folder holds no other runs
    for root, dirs, _files in os.walk(top, onerror=_not_listed):
        here = Path(root)
        keep = []
        for name in sorted(dirs):
            if name.startswith(".") or name in _SKIPPED:
                continue
            if _listed(here / name):
                yield here / name
                continue
            # (_listed found its markers could be looked at; a study's networks/, if any, holds
            # model files, no runs)
            if is_depth_study(here / name):
                if studies is not None and here / name not in studies:
                    studies.append(here / name)
            else:
                keep.append(name)
        dirs[:] = keep  # os.walk descends only into these


def _not_listed(exc: OSError) -> None:
    """A folder whose entries may not be read (mode 711, usual for a shared machine's home
    folders): os.walk skipped it without a word, and the runs inside went missing from the
    list; now a warning names it."""
    import warnings

    where = exc.filename if exc.filename is not None else "a folder"
    warnings.warn(f"{where}: {exc.strerror or exc}; the runs inside it, if any, are not listed.",
                  stacklevel=2)


def summarize_run(folder: str | os.PathLike) -> dict[str, Any]:
    """One run folder as a flat record with the keys of :data:`FIELDS` (None where the run does
    not say): ``status`` is ``completed``, ``training`` (a process is training it now: the
    figures are its last epoch's), ``interrupted`` (stopped; ``mlplab train --resume``
    continues it), ``unfinished`` (no ``metrics.json`` and no process training it: killed; the
    figures are its last checkpoint's; also a run stopped, resumed and stopped again before it
    saved, whose checkpoint is newer than its ``metrics.json``), ``diverged`` (a PyTorch run
    whose loss diverged, as its ``config.json`` records: not resumable) or ``unreadable``
    (``problem`` says why); ``finished`` is
    when ``metrics.json`` (else the checkpoint) was last written, in UTC; accuracies are
    fractions; ``seconds_left``, for a run ``training`` to a number of epochs, is the rest of
    them at the pace of its last five, or of the whole run so far where that is slower (early
    stopping may end it sooner)."""
    run = Path(folder)
    record: dict[str, Any] = dict.fromkeys(FIELDS)
    record["run"] = str(run)
    # tested before metrics.json is read: a run that ends in between is then "training" for a
    # moment, not "unfinished" (read before it was written, tested after the lock was gone)
    holder = training_process(run)
    try:
        config = io.read_json(run / CONFIG_FILE)
        # (io.is_file: a metrics.json that is a loop of links is unreadable, where pathlib's
        # answer False listed the run as unfinished, with no results)
        metrics = io.read_json(run / METRICS_FILE) if io.is_file(run / METRICS_FILE) else {}
        for name, value in ((CONFIG_FILE, config), (METRICS_FILE, metrics)):
            if not isinstance(value, dict):
                raise ValueError(f"{run / name} is not a JSON object, as mlplab writes it")
    except (OSError, ValueError) as exc:
        # no config.json: listed as a depth study whose markers cannot be looked at, whose
        # error is the reason (a missing config.json says nothing of what is wrong)
        why = _study_error(run) if isinstance(exc, FileNotFoundError) else None
        record.update(status="unreadable", problem=os_error_text(why or exc))
        return record
    train_size = metrics.get("train_size")  # (a resumed run's too: its splits are the same)
    if holder is not None:  # a stopped run resumed: its metrics.json is the stop's, not now's
        metrics = {}
    elif metrics.get("status") == "interrupted" and \
            newer(checkpoint_of(run), run / METRICS_FILE):
        # resumed after that stop, and stopped again before it saved (a second Ctrl-C, a kill):
        # the checkpoint is further on than the metrics
        metrics = {}
    record.update(
        status="training" if holder is not None else _text(metrics.get("status")) or (
            "diverged" if isinstance(config.get("diverged"), dict) else "unfinished"),
        framework="pytorch" if config.get("framework") == "pytorch" else "numpy",
        dataset=_text(metrics.get("dataset")) or _text(config.get("dataset")),
        model=_text(metrics.get("model")) or _hidden(config.get("hidden")),
        preset=_text(config.get("preset")),
        epochs=_count(metrics.get("epochs")),
        of_epochs=_count(config.get("epochs")),
        stopped_early=metrics.get("stopped_early") is True,
        seconds=_number(metrics.get("seconds")),
        finished=_modified(run / METRICS_FILE if metrics else checkpoint_of(run)),
        **{k: _number(metrics.get(k)) for k in ("train_accuracy", "val_accuracy",
                                                   "best_val_accuracy", "test_accuracy")},
    )
    steps: int | None = None  # iterations an epoch, where the run says
    # (hand-edited zeros: one folder's division by zero ended the whole listing)
    rows, batch = _count(train_size), _count(config.get("batch_size"))
    if rows and batch:
        steps = iterations_per_epoch(batch, str(config.get("sampling", "shuffle")), rows)
    pace = None
    diverged = metrics.get("status") == "diverged"  # (a NumPy run's: its last good epoch's)
    figures: dict[str, Any] = {}
    if not metrics or diverged:
        checkpoint = checkpoint_of(run)
        try:
            there = io.is_file(checkpoint)
        except OSError as exc:
            # there but not to be looked at (a loop of links, a name too long): this run is
            # unreadable, where the error ended the whole listing
            figures = {"status": "unreadable", "problem": os_error_text(exc)}
        else:
            if there:
                figures, pace = _progress(checkpoint)
            elif not metrics and record["status"] in ("unfinished", "training"):
                # killed (or still) in its first epoch: no epoch has ended, where "?/20" read
                # as unknown
                record["epochs"] = 0
    # a run that never stopped with Ctrl-C (no metrics.json) has only epochs' ends'
    # checkpoints, whose iterations are whole epochs
    counted_steps = figures.pop("iterations_per_epoch", None)
    steps = steps or counted_steps
    record.update(figures)
    iters = config.get("iters")
    if record["of_epochs"] is None and isinstance(iters, int) and iters > 0 and steps:
        # a run of --iters: its whole epochs, as its metrics count them when it ends (1,000
        # iterations of 245 an epoch: 4, and 20 iterations), so that one killed short of them
        # reads 3/4, not a bare 3
        record["of_epochs"] = iters // steps
    if holder is not None and pace is not None and \
            isinstance(record["of_epochs"], int) and isinstance(record["epochs"], int):
        record["seconds_left"] = max(record["of_epochs"] - record["epochs"], 0) * pace
    return record


def _progress(checkpoint: Path) -> tuple[dict[str, Any], float | None]:
    """The figures of a run still training, or killed, as of its last epoch's checkpoint (it
    has no ``metrics.json`` yet, and a long run listed with blanks said nothing of how far it had
    got), and the seconds its last epochs took each. A checkpoint whose members' headers or
    trainer record cannot be read makes the run ``unreadable``: it cannot be resumed (the
    weights themselves are not read here; ``--resume`` checks them)."""
    try:
        progress = _read_progress(checkpoint)
    except ImportError:  # a PyTorch run's checkpoint, and no PyTorch here to read it
        return {}, None
    except (OSError, ValueError) as exc:
        return {"status": "unreadable", "problem": os_error_text(exc)}, None
    history = progress["history"]
    last = {name: _number(values[-1]) if values else None
            for name, values in (("train_accuracy", history.train_acc),
                                 ("val_accuracy", history.val_acc))}
    best = history.best_val_acc if history.best_epoch >= 0 else None
    recent = history.epoch_seconds[-5:]  # the pace now, not the first epochs' (caches, warm-up)
    pace = math.fsum(recent) / len(recent) if recent else None
    seconds, epochs = _number(progress["seconds"]), progress["epoch"]
    if seconds is not None:  # rounded as metrics.json rounds a finished run's (a checkpoint
        seconds = round(seconds, 3)  # keeps every digit), before the pace is taken from it
    if pace is not None and seconds is not None and epochs:
        # an epoch's seconds time its steps alone; its evaluation and checkpoint come on top
        # (on small data most of an epoch), which the run's own average includes
        pace = max(pace, seconds / epochs)
    # a run that early stopping had ended, killed as it wrote its results: it trains no more
    # (its resume only writes them), so it is not listed as short of its epochs
    early = history.stopped_early is True
    iteration = progress["iteration"]
    # at an epoch's end (where a killed run's checkpoint is) the iterations are whole epochs
    steps = iteration // epochs if epochs and iteration % epochs == 0 else None
    return ({"epochs": epochs, "seconds": seconds, "best_val_accuracy": _number(best),
             "stopped_early": early, "iterations_per_epoch": steps, **last},
            None if early else _number(pace) if pace is not None else None)


def checkpoint_of(run: Path) -> Path:
    """The checkpoint file of a run folder: a PyTorch run's ``checkpoint.pt`` where there is
    one, else ``checkpoint.npz``. Raises nothing: a ``checkpoint.pt`` that is there but cannot
    be looked at (a loop of links) is the one given, and whoever reads it says why."""
    torch_checkpoint = run / TORCH_CHECKPOINT_FILE
    try:
        return torch_checkpoint if io.is_file(torch_checkpoint) else run / CHECKPOINT_FILE
    except OSError:
        return torch_checkpoint


def _read_progress(checkpoint: Path) -> dict[str, Any]:
    """``checkpoint_progress`` of a NumPy run's checkpoint or a PyTorch run's (an
    ``ImportError`` for the second without PyTorch)."""
    if checkpoint.name == TORCH_CHECKPOINT_FILE:
        from mlplab.torch_mlp.files import torch_checkpoint_progress

        return torch_checkpoint_progress(checkpoint)
    from mlplab.runs.checkpoint import checkpoint_progress

    return checkpoint_progress(checkpoint)


def _hidden(hidden: Any) -> str | None:
    """A network that has not written its description yet, by its hidden sizes."""
    if isinstance(hidden, list) and all(isinstance(h, int) for h in hidden):
        # --hidden none (softmax regression) was "hidden " with nothing after it
        return "hidden " + (",".join(map(str, hidden)) or "none")
    return None


def _number(value: Any) -> float | None:
    """A finite number from a file, or None for anything else (a hand-edited value is not
    shown): Python's JSON reads NaN and Infinity, which sorted the other runs out of order and
    made ``--json`` print NaN, which is not JSON."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def _text(value: Any) -> str | None:
    """A text from a file, or None for anything else (a hand-edited NaN in place of a dataset's
    name made ``--json`` refuse the whole listing)."""
    return value if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    """A whole number of at least 0 from a file, or None (a hand-edited NaN, "3" or 2.5)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def newer(path: Path, than: Path) -> bool:
    """Whether file ``path`` was last written after ``than`` (False if either is missing)."""
    try:
        return path.stat().st_mtime > than.stat().st_mtime
    except OSError:
        return False


def _modified(path: Path) -> str | None:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def epoch_curves(folder: str | os.PathLike) -> dict[str, list[float]]:
    """A run's ``history.csv`` per epoch: ``loss`` (the mean of each epoch's iterations) and
    ``val_acc`` (NaN where the epoch has no validation figure), for :func:`mlplab.plots.plot_runs`.
    A run still training, or killed (no ``history.csv``, or a stop's older than the checkpoint
    of its resume), gives its checkpoint's epochs (none if that cannot be read); a run with
    neither file gives empty lists. A ``history.csv`` that cannot be read is a
    :class:`ValueError` naming it."""
    import csv

    run = Path(folder)
    checkpoint, path = checkpoint_of(run), run / HISTORY_FILE
    # (pathlib's is_file, before Python 3.14, raises "File name too long" and "Permission
    # denied": one such file ended mlplab runs --plot for every run)
    try:
        has_checkpoint = io.is_file(checkpoint)
    except OSError:  # there but not to be looked at (a loop of links): as one not readable
        return {"loss": [], "val_acc": []}
    try:
        # (newer: a stop's history.csv beside the checkpoint of its resume, crashed or killed
        # since, which summarize_run lists with the checkpoint's epochs; a run's own history.csv
        # is written after its last checkpoint)
        if has_checkpoint and (training_process(run) is not None or not io.is_file(path)
                               or newer(checkpoint, path)):
            return _checkpoint_curves(checkpoint)
    except OSError as exc:  # history.csv's: named, as when it cannot be opened
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    sums: dict[int, list[float]] = {}
    val: dict[int, float] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            # checked before the rows: an empty file, or a header without these and no rows,
            # read as a run with no epoch yet, left out of --plot without a word
            if reader.fieldnames is None:
                raise ValueError("the file is empty")
            for column in ("epoch", "loss"):
                if column not in reader.fieldnames:
                    raise KeyError(column)
            for row in reader:
                epoch = int(row["epoch"])
                sums.setdefault(epoch, []).append(float(row["loss"]))
                if row.get("val_acc"):
                    val[epoch] = float(row["val_acc"])
    except FileNotFoundError:  # no epoch finished yet
        return {"loss": [], "val_acc": []}
    # a damaged file was taken for a run with no epoch, and --plot left the run out unsaid
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except KeyError as exc:
        raise ValueError(f"{path} has no {exc} column; the file was edited or damaged") from None
    except (ValueError, TypeError, csv.Error) as exc:  # (TypeError: a row short of cells)
        why = "a row is short of cells" if isinstance(exc, TypeError) else str(exc)
        raise ValueError(f"{path} is not a readable history ({why}); the file was edited or "
                         "damaged") from None
    epochs = sorted(sums)
    return {"loss": [math.fsum(sums[e]) / len(sums[e]) for e in epochs],
            "val_acc": [val.get(e, math.nan) for e in epochs]}


def _checkpoint_curves(checkpoint: Path) -> dict[str, list[float]]:
    """:func:`epoch_curves` of a run in progress. Its checkpoint is written at epoch ends, so the
    losses split into equal epochs; one that does not (a hand-made file) gives no curves."""
    try:
        progress = _read_progress(checkpoint)
    except (ImportError, OSError, ValueError):
        return {"loss": [], "val_acc": []}
    history, epochs = progress["history"], progress["epoch"]
    if epochs <= 0 or not history.loss or len(history.loss) % epochs:
        return {"loss": [], "val_acc": []}
    per_epoch = len(history.loss) // epochs
    loss = [math.fsum(history.loss[i:i + per_epoch]) / per_epoch
            for i in range(0, len(history.loss), per_epoch)]
    val = list(history.val_acc) if len(history.val_acc) == epochs else [math.nan] * epochs
    return {"loss": loss, "val_acc": val}


def list_runs(paths: str | os.PathLike | Iterable[str | os.PathLike] = (io.RUNS_ROOT,),
              sort: str = "finished", studies: list[Path] | None = None) -> list[dict]:
    """:func:`summarize_run` of every run folder under ``paths``, sorted by ``sort``:
    ``finished`` (when each finished, oldest first, as ``ls -tr``; ``time`` is its older name),
    ``name``, or ``val``, ``best-val``, ``test`` (that accuracy, highest first), ``duration``
    (the training time, longest first); runs without the figure last. ``studies``: as
    :func:`find_runs`'s."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}; got {sort!r}.")
    sort = _OLD_SORT_NAMES.get(sort, sort)
    records = [summarize_run(run) for run in find_runs(paths, studies)]
    if sort == "name":
        return sorted(records, key=lambda r: r["run"])
    if sort == "finished":
        return sorted(records, key=lambda r: (r["finished"] is None, r["finished"] or ""))
    key = {"val": "val_accuracy", "best-val": "best_val_accuracy", "test": "test_accuracy",
           "duration": "seconds"}[sort]
    return sorted(records, key=lambda r: (r[key] is None, -(r[key] or 0.0)))
