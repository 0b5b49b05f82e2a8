"""Parallel worker processes on one machine: :class:`WorkerSpec` (everything a worker needs,
picklable), :func:`worker_main` (a worker's entry point; ``spawn`` imports it by its qualified
name, ``mlplab.tuning.workers.worker_main``, in a fresh interpreter) and :func:`run_workers`,
which starts them and follows the study's progress. Workers on other machines need none of this:
each runs ``mlplab tune`` against the same storage.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mlplab.tuning.data import DataSource
from mlplab.tuning.processes import worker_name
from mlplab.tuning.search import (
    fail_dead_local_trials,
    grid_exhausted,
    make_pruner,
    make_sampler,
    run_search,
    update_bar,
    wait_for_unnamed_trials,
)
from mlplab.tuning.space import SearchSpace
from mlplab.tuning.storage import StorageSpec
from mlplab.tuning.study import finished_count, open_study

if TYPE_CHECKING:
    import optuna
    from tqdm import tqdm


@dataclass
class WorkerSpec:
    """Everything a worker process needs (picklable)."""

    source: DataSource
    storage: StorageSpec
    study_name: str
    space: dict[str, Any]
    sampler: str
    prune: str | None
    target: int
    timeout: float | None
    seed: int | None
    sampler_seed: int | None
    index: int
    blas_threads: int | None = None
    #: started by a command of the command line: a spawned interpreter does not inherit
    #: :func:`mlplab._validation.command_line`, and its messages (printed as the worker's error)
    #: would name Python arguments where the user typed flags
    command_line: bool = False
    #: the activations and optimisers registered in the parent beyond mlplab's own
    #: (:func:`registrations`): a spawned interpreter knows only the built-ins
    registered: dict[str, Any] | None = None
    #: ``blas_threads`` is the user's ``threads``, not the default share of the cores: it may
    #: raise the environment's limit (OMP_NUM_THREADS), as it does in a single process
    threads_given: bool = False
    #: how messages name the space (its YAML file): a trial's configuration error says where
    #: to change it, as in a single process
    space_where: str = "search space"


def registrations(space: SearchSpace) -> dict[str, Any]:
    """The activations (``name: (factory, sized)``) and optimisers (``name: class``) registered in
    this process beyond mlplab's own, for the workers to register again. Each is sent by
    reference (pickle names its module and qualified name), so one the search space uses (or
    leaves as the default: a replaced ``relu`` or ``sgd``) must be importable in a fresh
    interpreter: a ValueError says so before any worker starts. The command line's plugins
    (:mod:`mlplab.cli.plugins`) are: imported by module name, their folders on ``sys.path``,
    which spawned workers inherit."""
    import pickle
    import sys

    from mlplab import models, optim
    from mlplab._validation import setting
    from mlplab.trainer import TrainConfig

    # what a trial uses where the space leaves the knob out: MLP's and TrainConfig's defaults
    defaults = {"activation": (models.MLP.__init__.__kwdefaults__ or {})["activation"],
                "optimizer": TrainConfig.optimizer}
    registered: dict[str, dict[str, Any]] = {
        "activations": {n: (f, n in models._SIZED) for n, f in models.ACTIVATIONS.items()
                        if models.BUILT_IN_ACTIVATIONS.get(n) is not f},
        "optimizers": {n: c for n, c in optim.OPTIMIZERS.items()
                       if optim.BUILT_IN_OPTIMIZERS.get(n) is not c}}
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None and not os.path.exists(main_file):
        # a program piped to `python -` ("<stdin>"): each spawned worker re-runs the main
        # module's file, and failed (FileNotFoundError) only once the data had loaded
        raise ValueError(f"tuning with several workers starts fresh Python processes, which "
                         f"run this program's main file again, and it has none ({main_file!r}: "
                         "a program piped to python -). Save the program as a file and run "
                         f"that, or tune with {setting('--workers 1', 'workers=1')}.")
    sendable: dict[str, Any] = {}
    for kind, knob in (("activations", "activation"), ("optimizers", "optimizer")):
        used = space.values_of(knob) or {defaults[knob]}
        sendable[kind] = {}
        for name, entry in registered[kind].items():
            obj = entry[0] if kind == "activations" else entry
            target = getattr(obj, "func", obj)  # a functools.partial names its function
            try:
                pickle.dumps(entry)
                # a notebook's or the interactive prompt's own definitions: no file to import
                ok = getattr(target, "__module__", None) != "__main__" or main_file is not None
            except Exception:  # a lambda, a local class, ...: pickle refuses
                ok = False
            if ok:
                sendable[kind][name] = entry
            elif name in used:
                raise ValueError(
                    f"the search space uses the registered {knob} {name!r}, which the worker "
                    f"processes cannot import ({obj!r} is not defined at the top level of a "
                    "module file). Define it in a module (or a script) and register it from "
                    f"there, or tune with {setting('--workers 1', 'workers=1')}.")
    return sendable


def register_again(registered: dict[str, Any] | None) -> None:
    """In a worker: register what :func:`registrations` sent, as the parent had it."""
    from mlplab.models import register_activation
    from mlplab.optim import register_optimizer

    for name, (factory, sized) in (registered or {}).get("activations", {}).items():
        register_activation(name, factory, replace=True, sized=sized)
    for cls in (registered or {}).get("optimizers", {}).values():
        register_optimizer(cls, replace=True)


def worker_main(spec: WorkerSpec) -> None:
    """Entry point of one worker process: load the data once, load the study, search."""
    import optuna

    _end_with_parent()

    # a fresh interpreter: Optuna's INFO lines ("Using an existing study") would repeat per worker
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from mlplab._validation import command_line

    wording = command_line() if spec.command_line else contextlib.nullcontext()
    limiter = contextlib.nullcontext()
    if spec.blas_threads:
        from threadpoolctl import threadpool_info, threadpool_limits

        # share the cores between the workers, but never raise a limit the user set
        # (OMP_NUM_THREADS=...) unless the user asked for more threads (--threads)
        current = max((i.get("num_threads", 1) for i in threadpool_info()), default=1)
        if spec.threads_given or spec.blas_threads < current:
            limiter = threadpool_limits(spec.blas_threads)
    register_again(spec.registered)
    with wording, limiter:
        data = spec.source.load()
        space = SearchSpace.from_dict(spec.space, spec.space_where)
        study = open_study(spec.storage, spec.study_name, space, spec.source.describe(),
                           make_sampler(spec.sampler, space, spec.sampler_seed, spec.target),
                           make_pruner(spec.prune, space, spec.target), seed=spec.seed,
                           sampler_name=spec.sampler, pruner_name=spec.prune,
                           same_data=lambda recorded: spec.source.same_data(recorded, data))
        run_search(study, data, space, spec.target, spec.timeout, spec.seed,
                   worker=worker_name(spec.index))


def _end_with_parent() -> None:
    """End this worker process as soon as the process that started it has ended.

    Killed alone (SIGKILL, the out-of-memory killer, a job scheduler, a notebook's kernel
    restarted), ``mlplab tune --workers N`` left its workers searching the study to its end in
    the background, unseen, on the cores the user meant to free. A thread waits on the parent's
    sentinel (``multiprocessing.parent_process()``: a pipe that the parent's end closing makes
    readable, or on Windows the parent's process handle, where ``os.getppid`` does not change
    when the parent dies) and then ends the process at once, as a killed worker ends: its trial
    stays RUNNING under its name until the next run of the command fails and re-queues it
    (:func:`~mlplab.tuning.search.fail_dead_local_trials`), or another machine's worker does a
    grace period after its last heartbeat. The parent itself never ends before its workers: it
    joins them, also after a Ctrl-C (:func:`_run_round`)."""
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:  # (not started by multiprocessing)
        return

    def wait() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=wait, name="mlplab-end-with-parent", daemon=True).start()


#: rounds of new workers that :func:`run_workers` starts for the trials of killed ones
MAX_RESTARTS = 3


def run_workers(specs: list[WorkerSpec], study: optuna.Study, bar: tqdm | None = None,
                poll: float = 1.0, restarts: int = MAX_RESTARTS) -> None:
    """Start one process per spec (``spawn``: a clean interpreter each, no forked threads or
    database connections), show progress from the storage, and wait for all of them.

    A worker killed by a signal (SIGKILL, the out-of-memory killer) leaves its trial to the
    others; when they had already stopped (the target reached as they saw it, the killed one's
    trial counted), the study ends short of it: then up to ``restarts`` rounds of new workers
    (as many as trials are missing, at most ``len(specs)``) run the rest, within what is left of
    the ``timeout``, before the command gives up and says to run it again. A trial that a
    killed worker left unnamed is first waited for, until it is failed and re-queued
    (:func:`~mlplab.tuning.search.wait_for_unnamed_trials`)."""
    started, first = time.monotonic(), specs[0]
    lost: list[str] = []
    next_index = len(specs)
    for round_ in range(restarts + 1):
        killed = _run_round(specs, study, bar, poll)
        lost += killed
        # (a round that lost no worker stopped short for its own reasons: its timeout)
        missing = specs[0].target - finished_count(study) if killed else 0
        if missing <= 0 or grid_exhausted(study):
            return
        if round_ == restarts:
            break
        # a killed worker's trial that it had not named yet (killed as it began) is failed
        # only once its grace period has passed: until then the new workers counted it, took
        # the target for met and stopped at once, and the command ended short
        left = None if first.timeout is None else first.timeout - (time.monotonic() - started)
        wait_for_unnamed_trials(study, first.target, first.storage.heartbeat,
                                first.storage.grace_period, bar, timeout=left)
        timeout = None if first.timeout is None else \
            first.timeout - (time.monotonic() - started)
        if timeout is not None and timeout <= 0:
            break
        # the same search, new processes: the index keeps their trials' worker tags apart
        specs = [replace(specs[0], index=next_index + i, timeout=timeout)
                 for i in range(min(missing, len(specs)))]
        next_index += len(specs)
    # (the others had stopped: the killed one's trial counted towards the target)
    raise RuntimeError(f"worker process(es) killed: {', '.join(lost)}, which printed "
                       "nothing; their trials are failed and re-queued: run the same "
                       "command again to finish the study.")


@contextlib.contextmanager
def _ctrl_c_left_to_this_process() -> Iterator[None]:
    """Within the block (a worker's start), SIGINT is ignored, and so in the worker started,
    which keeps an ignored signal ignored across ``exec`` (Python then leaves it so): a
    terminal's Ctrl-C goes to the worker processes too, and one that landed while a worker
    imported or opened the study printed its Python traceback under the command's
    "mlplab: interrupted" line. This process stops the workers itself (:func:`_run_round`
    terminates them). Meanwhile SIGINT is also blocked in this thread, so that one that arrives
    then waits, pending (a blocked signal is not discarded as ignored), and reaches the handler
    put back as the block ends; unless the system hands it to another thread of this process
    (a BLAS thread), which drops it: a Ctrl-C in that millisecond or so is lost, where one in a
    worker's start (a second and more) printed a traceback."""
    import threading

    if (not hasattr(signal, "pthread_sigmask")  # (Windows: no Ctrl-C to a process group)
            or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None)):  # (None: set from C)
        yield
        return
    from multiprocessing import resource_tracker

    # started now if not yet: the first start unblocks SIGINT as it ends, which let a Ctrl-C
    # meanwhile meet the ignoring handler and be lost
    resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _run_round(specs: list[WorkerSpec], study: optuna.Study, bar: tqdm | None,
               poll: float) -> list[str]:
    """Run one process per spec to its end, as :func:`run_workers` says; returns the names of
    those killed by a signal (their trials failed and re-queued), and raises for one that
    failed with an error."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=worker_main, args=(s,), name=f"mlplab-tune-{s.index}")
             for s in specs]
    try:
        # started within the `try`: a Ctrl-C while the second one starts (spawning an
        # interpreter takes a while) left the first searching on its own, unseen, until it had
        # run the study's whole target
        for p in procs:
            with _ctrl_c_left_to_this_process():
                p.start()
        killed: set[str] = set()
        while any(p.is_alive() for p in procs):
            time.sleep(poll)
            killed = _fail_trials_of_killed(procs, killed, study)
            update_bar(bar, study)
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():  # (False for one not started)
                p.terminate()
        raise
    finally:
        for p in procs:
            if p.pid is not None:  # started: join() refuses one that was not
                p.join()
    _fail_trials_of_killed(procs, set(), study)
    update_bar(bar, study)
    bad = [(p.name, p.exitcode) for p in procs if p.exitcode is not None and p.exitcode > 0]
    if bad:
        raise RuntimeError("worker process(es) failed: " +
                           ", ".join(f"{n} exit code {c}" for n, c in bad) +
                           " (their error is printed above).")
    return [f"{p.name} ({_signal_name(-p.exitcode)})" for p in procs
            if p.exitcode is not None and p.exitcode < 0]


def _fail_trials_of_killed(procs: list[Any], handled: set[str], study: optuna.Study) -> set[str]:
    """Fail (and re-queue once) the trials of the workers killed by a signal since ``handled``
    (SIGKILL, the out-of-memory killer), which print nothing and leave their trial RUNNING,
    counted towards the target: the others run it again now, instead of stopping short and
    the command failing; returns the killed workers' names."""
    killed = {p.name for p in procs if p.exitcode is not None and p.exitcode < 0}
    if killed - handled:
        fail_dead_local_trials(study)
    return killed


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
