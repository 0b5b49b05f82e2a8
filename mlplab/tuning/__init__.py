"""Hyperparameter search on Optuna: from one laptop to many machines.

:func:`tune` runs an Optuna study whose objective builds an :class:`~mlplab.MLP`, trains it with
:class:`~mlplab.trainer.Trainer` and returns the *final* validation accuracy (the accuracy of the
model one actually gets from those settings). Every epoch's validation accuracy is reported to
Optuna, so pruners (median, Hyperband) can stop hopeless trials early.

Several processes search one study when they share a storage and a study name: this is Optuna's
own distributed mode, every worker simply loads the study from the storage, asks it for the next
trial and writes the result back. Storages:

* a local SQLite file in the output folder (the default);
* any SQLAlchemy URL (``postgresql://user@host/db``, ``mysql+pymysql://...``) for many machines;
* an Optuna journal file (``journal:PATH`` or a path ending in ``.log``) on a shared file system.

A worker that dies mid-trial (killed, out of memory, machine lost) stops recording heartbeats; the
next worker to start a trial marks it ``FAIL`` once its heartbeat is older than the grace period
and re-queues its parameters once. Optuna implements heartbeats only for SQLAlchemy storages, so
for journal files :mod:`~mlplab.tuning.storage` adds the same mechanism (a heartbeat time stamp in
the trial's system attributes, checked by Optuna's own ``fail_stale_trials``).

``trials`` is the study's total target of finished (complete or pruned) trials, not a number to
add: running the same command again resumes a study that stopped early and does nothing more once
the target is met (it still writes the outputs).

The search space (:class:`SearchSpace`) is a mapping of *knobs* to distributions; see
``docs/tuning.md`` for the YAML schema.

The package, one idea per module, bottom to top: :mod:`~mlplab.tuning.space` (the search-space
language), :mod:`~mlplab.tuning.data` (what trials train on), :mod:`~mlplab.tuning.processes`
(which process ran a trial), :mod:`~mlplab.tuning.objective` (one trial),
:mod:`~mlplab.tuning.quiet` (Optuna's warnings and tracebacks kept short),
:mod:`~mlplab.tuning.storage` (where a study lives, heartbeats), :mod:`~mlplab.tuning.study`
(opening a study, its best trial), :mod:`~mlplab.tuning.search` (samplers, pruners, the search
loop), :mod:`~mlplab.tuning.workers` (parallel local workers), :mod:`~mlplab.tuning.results`
(tables and plots) and :mod:`~mlplab.tuning.retrain` (the best trial as a run folder).
:func:`tune`, here, puts them together. The names in ``__all__`` (the API) are importable from
``mlplab.tuning``; the helpers the modules share among themselves are internal to the package.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplab._machine import available_cpus
from mlplab._text import agree, counted, shell_command
from mlplab._validation import (
    check_choice,
    check_int,
    check_positive,
    on_command_line,
    setting,
)
from mlplab.tuning.data import (
    ArraySource,
    DatasetSource,
    DataSource,
    TuningData,
    as_source,
    prepare,
    subset_train,
)
from mlplab.tuning.objective import UNWORKABLE_ATTR, Objective, build
from mlplab.tuning.processes import worker_name
from mlplab.tuning.quiet import matplotlib_style_kept, optuna_warnings_only
from mlplab.tuning.results import markdown_table, trials_table, write_plots, write_results
from mlplab.tuning.retrain import finished_best_run, retrain_best
from mlplab.tuning.search import (
    PRUNERS,
    SAMPLERS,
    fail_dead_local_trials,
    grid_exhausted,
    make_pruner,
    make_sampler,
    requeue_interrupted_trials,
    run_search,
    update_bar,
    wait_for_unnamed_trials,
)
from mlplab.tuning.space import (
    BUILTIN_SPACES,
    EXERCISE_SPACE,
    EXTENDED_SPACE,
    KNOBS,
    Knob,
    Param,
    SearchSpace,
)
from mlplab.tuning.storage import (
    HEARTBEAT_ATTR,
    WORKER_ATTR,
    StorageSpec,
    close_storage,
    release_interrupted,
    released_on_ctrl_c,
    sqlalchemy_url,
    storage_failures_said,
    storage_file,
    storage_spec,
    trial_grace,
)
from mlplab.tuning.study import (
    STUDY_ATTRS,
    best_so_far,
    check_study_name,
    finished_count,
    open_study,
    recorded_trials,
)
from mlplab.tuning.workers import WorkerSpec, registrations, run_workers, worker_main

if TYPE_CHECKING:
    import optuna
    from tqdm import tqdm

__all__ = [
    "ArraySource",
    "BUILTIN_SPACES",
    "DataSource",
    "DatasetSource",
    "EXERCISE_SPACE",
    "EXTENDED_SPACE",
    "HEARTBEAT_ATTR",
    "KNOBS",
    "Knob",
    "Objective",
    "PRUNERS",
    "Param",
    "SAMPLERS",
    "STUDY_ATTRS",
    "SearchSpace",
    "StorageSpec",
    "TuneResult",
    "TuningData",
    "WorkerSpec",
    "as_source",
    "build",
    "default_study_name",
    "make_pruner",
    "make_sampler",
    "markdown_table",
    "open_study",
    "prepare",
    "retrain_best",
    "run_search",
    "run_workers",
    "sqlalchemy_url",
    "storage_spec",
    "out_gone",
    "study_gone",
    "subset_train",
    "trials_table",
    "tune",
    "worker_main",
    "write_plots",
    "write_results",
]


@dataclass
class TuneResult:
    """What :func:`tune` did: counts of trials by state, the best trial and where things are."""

    study_name: str
    storage: str
    out: Path
    n_complete: int
    n_pruned: int
    n_failed: int
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    run_dir: Path | None = None
    retrained_val_acc: float | None = None
    test_accuracy: float | None = None
    wall_seconds: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)
    skipped_plots: dict[str, str] = field(default_factory=dict)
    #: a Ctrl-C (or SIGTERM) stopped the search or the retraining: the counts are those of the
    #: trials finished by then, and there is no best run (``summary.json`` only: tune raises)
    interrupted: bool = False
    #: why the study holds fewer finished trials than ``trials`` asked for, and how to finish it
    #: (None when it holds them all, or its grid is exhausted): a one-line note
    unfinished: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else
                    {n: str(p) for n, p in v.items()} if k == "files" else v)
                for k, v in self.__dict__.items()}


def default_study_name(source: DataSource) -> str:
    """``tune-<dataset>`` (``tune-folder-<folder's name>`` for an image folder) in ASCII, with
    characters outside [A-Za-z0-9._-] replaced by ``-``. A non-ASCII name is folded
    (:func:`_ascii_part`): some storages and terminals mangle other characters, and the name
    is typed again to resume the study. An ASCII name is kept as it always was, so that the
    studies it names still resume with the same command."""
    name = str(source.describe()["dataset"])
    if name.startswith("folder:"):
        name = "folder-" + _ascii_part(Path(name[len("folder:"):]).name)
    else:
        name = _ascii_part(name)
    return "tune-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip("-")


#: Latin letters that NFKD leaves whole, which dropping would lose (``Łódź`` as ``odz``)
_UNDECOMPOSED = str.maketrans({"ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe",
                               "Œ": "OE", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d",
                               "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th", "ı": "i"})


def _ascii_part(part: str) -> str:
    """``part`` as ASCII: unchanged if it is; else its accents dropped (NFKD: ``données`` is
    ``donnees``; :data:`_UNDECOMPOSED`: ``straße`` is ``strasse``) with any other non-ASCII
    character, or, where no ASCII letter is left (``数据``, ``данные``), the first 8 hex
    digits of the SHA-256 of the part (NFC, as UTF-8): the same from run to run and machine to
    machine, where a letterless fold (``""``, or the ``2`` of ``数据2``) would give the studies
    of many folders one name."""
    import hashlib
    import string
    import unicodedata

    if part.isascii():
        return part
    folded = unicodedata.normalize("NFKD", part.translate(_UNDECOMPOSED)).encode(
        "ascii", "ignore").decode("ascii")
    if any(c in string.ascii_letters for c in folded):
        # what a dropped character left at the ends (the space of "数据 set") is no separator
        return "".join(c if c.isalnum() or c in "._-" else "-" for c in folded).strip("-")
    # the same name in NFC or NFD (macOS file names are decomposed) hashes alike; a lone
    # surrogate (a file name's byte that is not UTF-8) is hashed as the code point it is
    data = unicodedata.normalize("NFC", part).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:8]


# outermost: wherever a Ctrl-C stops it (the check of the output folder's study.db, opening the
# study, the search, the retraining), the caller (a notebook keeps the traceback) gets the
# KeyboardInterrupt without a statement that holds study.db locked: see release_interrupted
@released_on_ctrl_c()
@storage_failures_said()
@optuna_warnings_only()
@matplotlib_style_kept()
def tune(dataset: Any, trials: int = 20, timeout: float | None = None,
         search_space: SearchSpace | Mapping[str, Any] | str | os.PathLike | None = None,
         study_name: str | None = None, storage: str | os.PathLike | None = None,
         workers: int = 1, sampler: str = "tpe", prune: str | bool | None = None,
         out: str | os.PathLike | None = None, seed: int | None = 0, eval_test: bool = False,
         heartbeat: int | None = 30, grace: int | None = None, search_only: bool = False,
         progress: bool = True, preprocess: str = "standardize", train_size: int | None = None,
         threads: int | None = None, **dataset_kwargs: Any) -> TuneResult:
    """Search hyperparameters on the validation split, then retrain and save the best.

    Parameters
    ----------
    dataset
        A dataset name for :func:`mlplab.data.load_dataset` (``dataset_kwargs`` are passed on), a
        raw ``Dataset``, :class:`TuningData` or a :class:`DataSource`.
    trials
        The study's target of finished (complete or pruned) trials, shared by all workers.
    timeout
        Stop starting trials after this many seconds of searching (per worker), the wait at the
        start for a trial that a killed worker left without its name included (docs/tuning.md).
    search_space
        ``None``/``"exercise"``, ``"extended"``, a YAML file or a dict (see docs/tuning.md).
    study_name, storage
        The study to create or resume; ``storage`` is None (``<out>/study.db``), a SQLAlchemy
        URL, ``journal:PATH`` or a ``.log``/``.db`` path.
    workers
        Local worker processes; 1 runs in this process.
    sampler, prune
        ``tpe``/``random``/``grid``; ``None``/``False``, ``True`` or ``"median"``, ``"hyperband"``.
    out
        Output folder (default ``runs/<study name>``).
    seed
        Seeds every trial's weights and batches (so trials differ only in their settings) and the
        sampler of a single local worker; parallel searches are not reproducible anyway, and
        their samplers draw fresh seeds so that workers do not repeat each other. ``None``:
        the sampler draws a fresh seed, and the trials train with seed 0, as the best trial's
        retrain does (so that ``best-run`` is the model the search measured).
    eval_test
        Evaluate the retrained best model on the test split (once).
    heartbeat, grace
        Seconds between a running trial's heartbeats, and without one before it counts as dead
        (default twice the heartbeat); ``heartbeat=None`` (or 0) disables crash detection (and is
        refused with a ``grace``, which only heartbeats use).
    search_only
        Only search (e.g. a worker on another machine): no tables, plots or retraining. A
        study whose every trial failed is still a ``ValueError``, as without it.
    progress
        A progress bar of the study's finished trials, and lines on stderr saying that a resumed
        study continues, that the best trial is retrained, or that this process waits for another
        writing the outputs; ``False``: none of them.
    preprocess, train_size
        The preprocessing recipe (``mlplab.data.PREPROCESSING``, fitted on the training split)
        and an optional stratified subset of the training images to tune on.
    threads
        BLAS threads of the trials in each worker process, and of the retraining (default:
        BLAS's own choice for one worker; the cores this process may use shared between
        several).
    """
    import optuna  # noqa: F401  (without Optuna, fail before any work)

    start = time.perf_counter()
    trials, workers, prune = _check_options(trials, workers, timeout, sampler, prune)
    if threads is not None:
        threads = check_int(threads, "threads")
        check_positive(threads, "threads")
    if not search_only:
        _import_what_the_end_needs()
    space = SearchSpace.load(search_space)
    if sampler == "grid":
        space.grid()  # fail now if a knob has no finite grid
    # what the spawned workers must register again; refused now if they could not
    registered = registrations(space) if workers > 1 else None
    if isinstance(dataset, str):  # a folder's decoding bar goes with the search's
        dataset_kwargs.setdefault("progress", progress)
    source = as_source(dataset, preprocess, train_size, **dataset_kwargs)
    if study_name is not None:
        check_study_name(study_name)  # ('' fell back to the default name)
    study_name = study_name or default_study_name(source)
    # a search-only worker whose study lives elsewhere writes nothing in it: it may be read-only
    out_dir = _output_dir(out, study_name, writes=storage is None or not search_only)
    if not search_only:  # (which writes no outputs)
        _refuse_another_studys_outputs(out_dir, study_name, storage is None)
    if not search_only or storage is None:
        # a run folder (mlplab train, torch train), a report or a depth study: the study's
        # tables, plots and best-run were mixed with its files
        from mlplab.runs.files import refuse_other_output

        refuse_other_output(out_dir, skip=("tuning",), purpose="study")
    spec = storage_spec(storage, out_dir, heartbeat, grace)
    # the study's file where it lies in the output folder (study.db, or a --storage there): a
    # folder removed meanwhile takes the finished trials with it (study_gone)
    in_out = _file_within(storage_file(spec), out_dir)
    local_only = storage is None and workers == 1
    # the grid's points are numbered in an order its seed shuffles, and the study records those
    # numbers: every process of a grid study (a resumed one, a worker, another machine) must
    # shuffle with the same seed, the study's own, or it runs some points twice and others never
    sampler_seed = seed if local_only or sampler == "grid" else None

    # the data before the study: a command refused for its data (no validation split,
    # --eval-test without a test split) must not leave behind a study that records those options
    # and so clashes with the corrected command. With several workers this load only checks:
    # each worker loads its own copy.
    loaded = _load_data(source, need_test=eval_test and not search_only)
    if not search_only and loaded.dataset is None:
        # refused now, not after the search (hours, perhaps) when the best trial is retrained
        raise ValueError(f"retraining the best trial needs the raw dataset, which this "
                         f"{type(dataset).__name__} does not carry (TuningData made by "
                         "mlplab.tuning.prepare does); pass a dataset name or Dataset, or "
                         "search_only=True to search without retraining.")
    data: TuningData | None = loaded if workers == 1 else None
    # the output folder only now, for the same reason: a refused command leaves no empty folder;
    # and none for a search-only worker whose study lives elsewhere: it writes nothing there
    # (each machine of a shared search was left an empty runs/<study>)
    searching_here = contextlib.ExitStack()  # held while this process searches (see below)
    with _output_folder(out_dir) if storage is None or not search_only else \
            contextlib.nullcontext():
        try:
            if local_only and sampler != "grid" and not _first_search_here(searching_here,
                                                                            out_dir):
                # another process searches this folder's study now (two `mlplab tune` with
                # the same --out): seeded alike, the two proposed the same settings, each
                # trial twice. The first keeps its seed; any other draws a fresh one
                sampler_seed = None
            study = open_study(spec, study_name, space, source.describe(),
                               make_sampler(sampler, space, sampler_seed, trials),
                               make_pruner(prune, space, trials), seed=seed,
                               sampler_name=sampler, pruner_name=prune,
                               same_data=functools.partial(source.same_data, data=loaded))
        except BaseException:
            searching_here.close()
            raise
    del loaded  # (with several workers, each holds its own copy)
    limiter = None
    if threads is not None:  # this process's trials and retraining; the workers limit their own
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads, user_api="blas")
    try:
        if sampler_seed is not None and study.trials and sampler != "grid":
            # resuming: a sampler seeded as before would propose the first trials' settings again
            study.sampler = make_sampler(sampler, space, (sampler_seed + len(study.trials)) % 2**32,
                                         trials)
        # --timeout bounds the search from here, the wait for unnamed trials included (and not
        # the loading of the data and the study before it)
        searching = time.monotonic()
        # that out_dir is still there, before each write of the outputs (_check_out_kept)
        kept = functools.partial(_check_out_kept, out_dir,
                                 "study.db" if storage is None else None)
        done = finished_count(study)
        if progress and done:  # (the command's last line counted them all as this run's)
            more = f"runs up to {trials - done} more" if done < trials else \
                "has no trial left to run"
            print(f"resuming study {study_name} in {spec.display}: {done} of "
                  f"{setting(f'--trials {trials}', f'trials={trials}')} finished before, so "
                  f"this search {more}", file=sys.stderr, flush=True)
        with _trials_bar(progress, study, trials, study_name) as bar:
            try:
                # a trial left unnamed by a killed worker kept the search a trial short: first
                # let such trials tell whether their process lives
                wait_for_unnamed_trials(study, trials, spec.heartbeat, spec.grace_period, bar,
                                        timeout=timeout)
                left = None if timeout is None else timeout - (time.monotonic() - searching)
                if left is not None and left <= 0:
                    pass  # the wait took it all: the note below says so
                elif data is not None:  # one worker, this process (several dropped it above)
                    run_search(study, data, space, trials, left, seed, bar)
                elif finished_count(study) < trials and not grid_exhausted(study):
                    fail_dead_local_trials(study)  # here, once: not by K workers racing to re-queue
                    # no more processes than trials to run: each spare one started an
                    # interpreter and loaded the data to find the target met (--workers 1000
                    # --trials 1 took minutes); none if another process has just finished them
                    needed = min(workers, trials - finished_count(study))
                    if needed > 0:
                        specs = _worker_specs(needed, source, spec, study_name, space, sampler,
                                              prune, trials, left, seed, sampler_seed,
                                              registered, threads)
                        run_workers(specs, study, bar)
            except KeyboardInterrupt as exc:
                release_interrupted(exc)  # before the study is read again
                if data is None:
                    # the local workers are stopped and gone (run_workers joined them): their
                    # trials, left RUNNING, are failed and re-queued now, so that the tables and
                    # summary written below do not show trials running that nothing runs
                    with contextlib.suppress(Exception):  # (the Ctrl-C is the news)
                        fail_dead_local_trials(study, interrupted=True)
                else:  # this process's trial, which Optuna recorded FAIL: queued again, too
                    with contextlib.suppress(Exception):
                        requeue_interrupted_trials(study, worker_name())
                if not search_only:
                    _write_interrupted(study, study_name, spec.display, out_dir, start, trials,
                                       kept)
                raise

        elapsed = time.monotonic() - searching
        if not search_only:
            # gone while the trials ran: said of the folder, not as the lock file below that
            # cannot be made ("cannot write in the run folder ... (No such file or directory)")
            kept()
        # one process at a time writes the outputs, each from the study as it is then: two that
        # finished together both retrained the best trial, and the one that had stopped
        # searching first wrote last, its summary a trial short and naming another best trial
        # than best-run/ held. The second finds best-run/ done, unless its best trial is better
        with _writing_alone(out_dir, progress) if not search_only else contextlib.nullcontext():
            result = _tally(study, study_name, spec.display, out_dir)
            result.unfinished = _unfinished(study, trials, timeout, elapsed, spec.grace_period,
                                            search_only=search_only)
            if search_only:
                # an error, as below: exit 0 and "no trial has completed yet" read as a search
                # that had merely not got far
                _refuse_if_all_failed(study, result, search_only=True)
            else:
                kept()  # (again: the wait for another process's writing can be long)
                # the tables and plots within: a Ctrl-C while the plots are drawn (seconds) left
                # no summary, or a previous run's
                with _summary_written(result, start, kept):
                    result.files, result.skipped_plots = write_results(study, out_dir,
                                                                       kept=kept)
                    _refuse_if_all_failed(study, result)
                    if result.best_trial is not None:
                        kept()
                        try:
                            _best_run(study, result, data, source, seed, eval_test,
                                      announce=progress)
                        except FileNotFoundError:
                            # the folder removed while the best trial retrained: said of it,
                            # not of the hidden .best-run.PID.tmp that the retraining named
                            try:
                                kept()
                            except FileNotFoundError as gone:
                                raise gone from None
                            raise
        result.wall_seconds = round(time.perf_counter() - start, 2)
        return result
    except KeyboardInterrupt as exc:
        if in_out is not None and not (out_dir / in_out).is_file():
            # the study's file went (with the folder, or alone): its finished trials are not
            # kept (study_gone)
            setattr(exc, _STUDY_GONE, (out_dir, in_out))
        if not out_dir.is_dir():  # (out_gone: said apart from the study's file)
            setattr(exc, _OUT_GONE, out_dir)
        raise
    finally:
        searching_here.close()
        if limiter is not None:
            limiter.restore_original_limits()
        # the database's connections, or study.db stays open after this returns: the study
        # can outlive this call (a traceback that Optuna keeps from its optional import of
        # plotly holds the frames that were running it), and Windows can then neither move nor
        # remove the folder (mlplab reproduce moves it into place once the report is written)
        close_storage(study._storage)


def _first_search_here(stack: contextlib.ExitStack, out_dir: Path) -> bool:
    """Whether this process is the only one searching the study in ``out_dir`` (its default
    storage) now: it then holds the folder's lock (``mlplab.runs.lock``, released by ``stack``)
    while it searches. False when another process holds it. Where locks cannot be taken (a
    file system without ``flock``), True: each process keeps its seed, as before."""
    from mlplab.runs.lock import RunInUseError, run_lock

    try:
        stack.enter_context(run_lock(out_dir, noun="search"))
    except RunInUseError:
        return False
    except ValueError:  # a lock file that is not one (refused by name): searched unlocked
        return True
    return True


def _write_interrupted(study: optuna.Study, study_name: str, storage: str, out_dir: Path,
                       start: float, trials: int, kept: Callable[[], None]) -> None:
    """The outputs of a search stopped by Ctrl-C: the finished trials' tables and plots (a
    resumed search rewrites them) and a summary marked ``interrupted``. Not while another
    process writes the folder's outputs (it has finished its search, and its tables are the
    fuller; a stopped command does not wait minutes for it): they are left to it. Nor into a
    folder gone meanwhile (``kept``, :func:`_check_out_kept`): the writes made it again, or its
    missing lock file ("cannot write in the run folder") took the place of the Ctrl-C."""
    from mlplab.runs.files import RunFolderGoneError
    from mlplab.runs.lock import RunInUseError, run_lock

    try:
        kept()
        with run_lock(out_dir, noun="search", doing="written", lock_file=RESULTS_LOCK):
            result = _tally(study, study_name, storage, out_dir)
            if result.best_trial is not None:
                result.files, result.skipped_plots = write_results(study, out_dir, kept=kept)
            result.interrupted = True
            # (null only when the study holds every trial asked for, as the docs say)
            result.unfinished = _unfinished(study, trials, None, 0.0, None, interrupted=True)
            kept()
            _write_summary(result, start)
    except (RunInUseError, RunFolderGoneError):
        pass


#: the lock file under which one process at a time writes a study's outputs (see _writing_alone)
RESULTS_LOCK = ".results.lock"


def _writing_alone(out_dir: Path, announce: bool = True) -> contextlib.AbstractContextManager:
    """Held while this process writes the study's outputs into ``out_dir``: another process
    writing them (one that shares the study and finished at the same time) is waited for, and
    with ``announce`` the wait is said on stderr (it can last as long as retraining the best
    trial). A lock file of its own, not the folder's ``.lock``, which the first searching
    process holds until it returns."""
    from mlplab.runs.lock import run_lock

    def say_waiting(holder: str) -> None:
        print(f"mlplab: another process{f' ({holder})' if holder else ''} is writing this "
              f"search's results in {out_dir} (it may be retraining the best trial); waiting "
              "for it to finish, then this process writes them from the study as it is then.",
              file=sys.stderr, flush=True)

    return run_lock(out_dir, noun="search", doing="written", wait=True, lock_file=RESULTS_LOCK,
                    on_wait=say_waiting if announce else None)


def _check_options(trials: Any, workers: Any, timeout: float | None, sampler: str,
                   prune: str | bool | None) -> tuple[int, int, str | None]:
    """``trials`` and ``workers`` as ints and ``prune`` as a pruner's name or None, each refused
    in this order when it is not one."""
    trials = check_int(trials, "trials")  # 2.5 and "3" are refused, not truncated
    workers = check_int(workers, "workers")
    if timeout is not None:
        check_positive(timeout, "timeout (seconds)")  # NaN too, which never times out
    if prune is True:
        prune = "median"
    prune = prune or None
    if prune is not None:
        check_choice(prune, PRUNERS, "pruner")
    check_choice(sampler, SAMPLERS, "sampler")
    return trials, workers, prune


def _import_what_the_end_needs() -> None:
    """Import what the end of a long search needs now: a broken install (or a module edited
    mid-run) should fail before hours of trials, not after."""
    import optuna.visualization.matplotlib  # noqa: F401

    import mlplab.io  # noqa: F401
    import mlplab.plots  # noqa: F401
    import mlplab.runs  # noqa: F401


def _output_dir(out: str | os.PathLike | None, study_name: str, writes: bool = True) -> Path:
    """``out`` (default ``runs/<study name>``), refused if it is or lies under a file, or if
    it cannot be written and the search ``writes`` there."""
    from mlplab.io import RUNS_ROOT, check_out_folder, out_folder

    out_dir = out_folder(out) if out is not None else Path(RUNS_ROOT) / study_name
    check_out_folder(out_dir, writable=writes)  # before the data loads, not at mkdir's errno
    return out_dir


def _refuse_another_studys_outputs(out_dir: Path, study_name: str, default_storage: bool
                                   ) -> None:
    """Refuse an output folder that holds another study's tables, plots and best-run: a new
    ``--study`` with the ``--out`` of an older one overwrote them (a folder holds one study's
    outputs, as the default ``runs/<study>`` says). The owner is the study that summary.json or
    best-run/tuning.json names; for a search interrupted before those were written, the studies
    in the folder's own study.db (when it is the storage), if this one is not among them."""
    from mlplab.io import read_json

    owners: list[str] = []
    for note, key in (("summary.json", "study_name"), ("best-run/tuning.json", "study")):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            owner = read_json(out_dir / note).get(key)
            if isinstance(owner, str):
                owners = [owner]
                break
    if not owners and default_storage and (out_dir / "results.csv").is_file():
        owners = _study_names(out_dir / "study.db")
    if owners and study_name not in owners:
        resume = " or ".join(setting(shell_command(["--study", o]), f"study_name={o!r}")
                             for o in owners)  # (a name with a space, quoted to paste)
        raise ValueError(f"{out_dir} holds the results of study "
                         f"{' or '.join(map(repr, owners))}, which study {study_name!r} would "
                         f"overwrite; choose another {setting('--out', 'out')} for it, or resume "
                         f"{'that study' if len(owners) == 1 else 'one of them'} with {resume}.")


def _study_names(db: Path) -> list[str]:
    """The studies in the SQLite file ``db`` of Optuna's storage (none if it cannot be read),
    read-only: Optuna's own reader would create its tables in a file that lacks them."""
    import sqlite3

    if not db.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro",
                                                uri=True)) as con:
            return sorted(str(row[0]) for row in con.execute("SELECT study_name FROM studies"))
    except sqlite3.Error:
        return []


def _load_data(source: DataSource, need_test: bool) -> TuningData:
    """The source's data, refused without a test split when the best run will be tested."""
    data = source.load()
    if need_test:
        from mlplab.runs import require_test_split

        require_test_split(data)
    return data


@contextlib.contextmanager
def _output_folder(out_dir: Path) -> Iterator[None]:
    """Create ``out_dir`` (and its missing parents), and remove the folders it made again if
    the block fails (e.g. a storage that cannot be reached) while they are still empty."""
    from mlplab.runs.files import first_missing_folder, remove_made_folders

    made = first_missing_folder(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file or a dangling link on the path, a read-only file system
        from mlplab.io import why_no_folder

        raise ValueError(f"cannot create the output folder {out_dir}: "
                         f"{why_no_folder(out_dir, exc)}; choose another "
                         f"{setting('--out', 'out')}.") from exc
    try:
        yield
    except BaseException:
        remove_made_folders(out_dir, made)  # only while empty
        raise


@contextlib.contextmanager
def _trials_bar(progress: bool, study: optuna.Study, trials: int,
                study_name: str) -> Iterator[tqdm | None]:
    """A bar of the study's finished trials (None without ``progress``), brought up to date and
    closed however the search ends."""
    bar = None
    if progress:
        from mlplab._progress import progress_bar

        # shown in a terminal or a notebook, as training's bars; never into a log file
        bar = progress_bar(total=trials, initial=min(finished_count(study), trials),
                           unit="trial", desc=f"tuning {study_name}", dynamic_ncols=True)
    try:
        yield bar
    finally:
        if bar is not None:
            update_bar(bar, study)
            bar.close()


def _worker_specs(workers: int, source: DataSource, spec: StorageSpec, study_name: str,
                  space: SearchSpace, sampler: str, prune: str | None, trials: int,
                  timeout: float | None, seed: int | None, sampler_seed: int | None,
                  registered: Any, threads: int | None = None) -> list[WorkerSpec]:
    """What each of ``workers`` local processes needs to search the study: ``threads`` BLAS
    threads each, by default the cores this process may use shared among them (on a runner
    pinned to 2 of 16 cores, 2 // workers)."""
    given = threads is not None
    threads = threads or max(1, available_cpus() // workers)
    return [WorkerSpec(source, spec, study_name, space.to_dict(), sampler, prune, trials,
                       timeout, seed, sampler_seed, i, threads, on_command_line(), registered,
                       threads_given=given, space_where=space.where)
            for i in range(workers)]


def _tally(study: optuna.Study, study_name: str, storage: str, out_dir: Path) -> TuneResult:
    """The study's trials counted by state, and its best trial so far."""
    from optuna.trial import TrialState

    counts = {s: len(recorded_trials(study, states=(s,)))
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    number, value = best_so_far(study)
    return TuneResult(study_name, storage, out_dir, counts[TrialState.COMPLETE],
                      counts[TrialState.PRUNED], counts[TrialState.FAIL], number, value,
                      dict(study.trials[number].params) if number is not None else {})


def _unfinished(study: optuna.Study, trials: int, timeout: float | None, elapsed: float,
                grace: int | None, interrupted: bool = False,
                search_only: bool = False) -> str | None:
    """The note of :attr:`TuneResult.unfinished`: the search ended (or, ``interrupted``, a
    Ctrl-C or SIGTERM stopped it) at fewer finished trials than ``trials`` (and the grid has
    points left), why, and how to finish. ``search_only``: the search wrote no results, so a
    failed trial's error is pointed to on its warning line and in the study."""
    from optuna.trial import TrialState

    finished = finished_count(study)
    if finished >= trials or grid_exhausted(study):
        return None
    again = setting("run the same command again", "call tune() again with the same arguments")
    ended = f"at {finished} of {setting(f'--trials {trials}', f'trials={trials}')} finished trials"
    if interrupted:
        return f"the search was interrupted {ended}; {again} to go on with it"
    if timeout is not None and elapsed >= timeout:
        return (f"{setting(f'--timeout {timeout:g} s', f'timeout={timeout:g} s')} ended the "
                f"search {ended}; {again} to go on with it")
    running = recorded_trials(study, states=(TrialState.RUNNING,))
    if running:
        # with several machines on one study, the usual reason is a worker still training the
        # last trial: this one's part is done, and a rerun is needed only if that worker died
        n = len(running)
        numbers = ", ".join(str(t.number) for t in sorted(running, key=lambda t: t.number))
        names = list(dict.fromkeys(w for t in running
                                   if isinstance(w := t.user_attrs.get(WORKER_ATTR), str)))
        named = f" ({' and '.join(names)})" if names else ""
        who = agree(n, f"another worker{named} is still training it",
                    f"other workers{named} are still training them")
        part = setting("this command's part is done", "this call's part is done")
        them = agree(n, "that worker", "those workers")
        off = setting("--heartbeat 0", "heartbeat=0")
        if grace is not None:
            # a trial's own worker's grace period is what fails it (the longest, of several)
            wait = max(int(trial_grace(t.user_attrs, grace)) for t in running)
            when = (f"after its grace period (its trial is failed and re-queued {wait} s after "
                    "its last heartbeat)")
        else:
            when = (f"with heartbeats on (with {off} nothing tells a live worker's trial from a "
                    "killed one's)")
        return (f"the search ended {ended}: {agree(n, 'trial', 'trials')} {numbers} "
                f"{agree(n, 'is', 'are')} still RUNNING, most likely because {who}: {part}, "
                f"and {them} will finish the study; only if {agree(n, 'it', 'one')} is gone, "
                f"{again} {when} to finish the study")
    failed = 0
    unworkable = None
    for t in sorted(recorded_trials(study), key=lambda t: t.number, reverse=True):
        if t.state != TrialState.FAIL:
            break
        failed += 1
        unworkable = unworkable or t.user_attrs.get(UNWORKABLE_ATTR)
    where = "on the warning line printed for it, and kept in the study" if search_only else \
        "in the results"
    if unworkable:  # run again, it stops again: the space is what must change
        return (f"the search stopped {ended}: no trial of {unworkable} can run, whatever values "
                f"the search draws (the failed trial's error is {where}); change the search "
                "space")
    whose = agree(failed, "its", "each one's")
    why = (f" after {agree(failed, 'a failed trial', f'{failed} failed trials in a row')} "
           f"({whose} error is {where})") if failed else ""
    return f"the search ended {ended}{why}; {again} to go on with it"


def _refuse_if_all_failed(study: optuna.Study, result: TuneResult,
                          search_only: bool = False) -> None:
    """Every trial failed (the others, if any, diverged): an error, not an empty success (e.g.
    a space whose fixed knobs cannot work together). ``search_only``: the search wrote no
    results.csv, so the message points to the warning line each failed trial printed."""
    from optuna.trial import TrialState

    if result.best_trial is not None or result.n_pruned or not result.n_failed:
        return  # (every complete trial diverged, none failing: a result, which says so)
    failed = [t for t in recorded_trials(study) if t.state == TrialState.FAIL]
    first = failed[0]
    # the reason is a whole sentence: its full stop would come before the "; ..."
    reason = first.user_attrs.get("error", "see the warnings above").rstrip(".")
    stopped = next((t for t in failed if UNWORKABLE_ATTR in t.user_attrs), None)
    if stopped is not None:  # the search stopped at it: no trial of the space can do better
        why = stopped.user_attrs.get("error", "").partition(": ")[2].rstrip(".")
        n = len(failed)
        listed = "" if search_only else ", which results.csv lists"
        raise ValueError(f"{stopped.user_attrs[UNWORKABLE_ATTR]}: no trial can run, whatever "
                         f"values the search draws: {why}; change the search space (the search "
                         f"stopped after {counted(n, 'trial')}{listed}).")
    diverged, n = result.n_complete, result.n_failed  # (no complete one is a best: each diverged)
    if search_only:  # no results.csv: each failed trial's warning line says why
        listed = "" if n == 1 else "; the warning lines above give each failed trial's error"
    else:
        listed = f"; results.csv lists {agree(n + diverged, 'it', 'them')}"
    if diverged:  # it said "all 3 trials failed" of 3 failed and 3 diverged
        failures = agree(n, "1 failed, with", f"{n} failed, the first with")
        others = agree(diverged, "the other diverged", f"the other {diverged} diverged")
        raise ValueError(f"all {n + diverged} trials failed or diverged: "
                         f"{failures} {reason}, and {others}{listed}.")
    which = agree(n, "the only trial failed, with", f"all {n} trials failed, the first with")
    raise ValueError(f"{which} {reason}{listed}.")


def _best_run(study: optuna.Study, result: TuneResult, data: TuningData | None,
              source: DataSource, seed: int | None, eval_test: bool,
              announce: bool = False) -> None:
    """The best trial as ``<out>/best-run``: the trial's own run when it saved one, else
    retrained (loading the data here if the workers had it); its accuracies go into ``result``.
    ``announce``: say on stderr that it retrains (as long as a trial, after the trials' bar has
    ended: the command looked finished and printed nothing)."""
    best_run = result.out / "best-run"
    # the best trial of the tally, not the study's best now (another process's trial may have
    # finished since): the summary and best-run/ name the same trial
    assert result.best_trial is not None and result.best_value is not None
    best = (result.best_trial, result.best_value)
    metrics = finished_best_run(study, best_run, seed, eval_test, best=best)
    if metrics is None:
        if announce:
            print(f"retraining the best trial, {best[0]}, into {best_run} ...", file=sys.stderr,
                  flush=True)
        if data is None:
            data = source.load()
        metrics = retrain_best(study, data, best_run, seed, eval_test, trial=best[0]).metrics
    result.run_dir = best_run
    result.retrained_val_acc = metrics["val_accuracy"]
    if eval_test:
        result.test_accuracy = metrics["test_accuracy"]


@contextlib.contextmanager
def _summary_written(result: TuneResult, start: float,
                     kept: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Write ``summary.json`` (atomically) once the block ends, however it ends: one that a
    Ctrl-C ended is marked ``interrupted``. Written only on success, it kept a previous run's
    counts and best trial after an interrupted or refused one. ``kept`` checks first that the
    output folder is still there (:func:`_check_out_kept`)."""
    try:
        yield
    except BaseException as exc:
        result.interrupted = isinstance(exc, KeyboardInterrupt)
        with contextlib.suppress(OSError):  # (a full disk): the error that ended it is the news
            kept()
            _write_summary(result, start)
        raise
    kept()
    _write_summary(result, start)


def _check_out_kept(out_dir: Path, marker: str | None) -> None:
    """Refuse to write a search's outputs into ``out_dir`` once it was removed or moved while
    the search ran (by its study's file ``marker``, where the folder holds the study): each
    write made the folder again, and the command ended with status 0 and a summary naming
    tables that were not there, the study itself gone."""
    from mlplab.runs.files import refuse_if_folder_gone

    refuse_if_folder_gone(out_dir, marker, "the search ran",
                          "its tables, plots and best run were not written there",
                          "run the search anew, or put the folder back and run the same "
                          "command again")


#: the attributes by which a Ctrl-C that stopped :func:`tune` names its study's file gone
#: (study_gone) and its output folder gone (out_gone)
_STUDY_GONE = "mlplab_study_gone"
_OUT_GONE = "mlplab_out_gone"


def study_gone(interrupt: BaseException) -> tuple[Path, Path] | None:
    """The output folder that was removed or moved before :func:`tune` was stopped by
    ``interrupt`` (its KeyboardInterrupt), and the study's file that went with it, as a path
    within the folder (``study.db``, the default storage, or a ``--storage`` file kept there);
    None where the study is still there, or kept elsewhere. ``mlplab tune`` then says that the
    finished trials are not kept, rather than that the same command continues them: it would
    start anew."""
    gone = getattr(interrupt, _STUDY_GONE, None)
    return gone if isinstance(gone, tuple) else None


def out_gone(interrupt: BaseException) -> Path | None:
    """The output folder that was removed or moved before :func:`tune` was stopped by
    ``interrupt`` (its KeyboardInterrupt), whether or not the study went with it
    (:func:`study_gone`), or None: ``mlplab tune`` says which of the two went, where it said
    the folder was removed when only the study's file had been, and nothing of the folder
    where the study was kept elsewhere."""
    gone = getattr(interrupt, _OUT_GONE, None)
    return gone if isinstance(gone, Path) else None


def _file_within(file: Path | None, folder: Path) -> Path | None:
    """``file``'s path within ``folder`` (both as the links lead now), None if it lies
    elsewhere or there is none."""
    if file is None:
        return None
    try:
        return file.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):  # (OSError: a loop of links, which the study's open says)
        return None


def _write_summary(result: TuneResult, start: float) -> None:
    from mlplab.io import write_json

    result.wall_seconds = round(time.perf_counter() - start, 2)
    result.files["summary"] = result.out / "summary.json"
    write_json(result.out / "summary.json", result.to_dict())
