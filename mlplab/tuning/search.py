"""The search loop of one process: samplers (:func:`make_sampler`) and pruners
(:func:`make_pruner`), the callbacks that stop a worker at the study's target of finished trials
and move the progress bar, the failing of trials left running by killed local processes, and
:func:`run_search`, which optimises :class:`~mlplab.tuning.objective.Objective` on a study until
the target is met. A worker process and :func:`mlplab.tuning.tune` run the same loop.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlplab._text import percent
from mlplab._validation import check_choice
from mlplab.tuning.data import TuningData
from mlplab.tuning.objective import (
    UNWORKABLE_ATTR,
    ConfigurationError,
    FailedAsStale,
    Objective,
    finished_elsewhere,
)
from mlplab.tuning.processes import process_alive, same_namespace
from mlplab.tuning.quiet import optuna_warnings_only, quiet_interrupts, quiet_optuna_warnings
from mlplab.tuning.space import SearchSpace
from mlplab.tuning.storage import name_trial, release_interrupted, requeue_callback
from mlplab.tuning.study import SURPLUS_ATTR, best_so_far, finished_count

if TYPE_CHECKING:
    import optuna
    from tqdm import tqdm

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband")


def make_sampler(kind: str, space: SearchSpace, seed: int | None,
                 n_trials: int) -> optuna.samplers.BaseSampler:
    """``tpe`` (multivariate, with the constant liar so parallel workers spread out),
    ``random`` or ``grid`` (over each knob's ``grid`` values)."""
    import optuna

    check_choice(kind, SAMPLERS, "sampler")
    with quiet_optuna_warnings():
        if kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if kind == "grid":
            return optuna.samplers.GridSampler(space.grid(), seed=seed)
        # a third of a small budget explores at random before TPE models the results
        startup = int(min(10, max(3, n_trials // 3)))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True,
                                          constant_liar=True)


def make_pruner(kind: str | None, space: SearchSpace,
                n_trials: int) -> optuna.pruners.BasePruner:
    """``None``: never prune; ``median``: stop a trial whose best accuracy so far is below the
    median of the other trials at the same epoch; ``hyperband``: successive halving over epochs."""
    import optuna

    if kind is None:
        return optuna.pruners.NopPruner()
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(min(5, max(2, n_trials // 4))),
                                           n_warmup_steps=2)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=space.max_epochs(),
                                              reduction_factor=3)
    raise ValueError(f"unknown pruner {kind!r}; choose one of {', '.join(PRUNERS)}.")


def _busy(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the target: finished (complete, pruned) and running."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                    TrialState.RUNNING))


class _TargetReached(Exception):
    """A trial that began with the study's target already met by the trials begun before it."""


class _WithinTarget:
    """``objective`` for the trials within the target; a trial that begins with ``target``
    finished or running trials numbered before it is given up at once (before its settings are
    drawn, so nothing trains) and ends the worker's loop.

    _StopAtTarget checks after a trial and Optuna creates the next one after that: two workers
    that each checked before either created its trial both went on, and a worker's first trial
    was not checked at all, so workers that started together ran one trial more than the
    target. The storage numbers trials one at a time (a transaction; a journal's order), so the
    trials numbered before this one are known and the same to every worker: of trials that race,
    only those within the target train."""

    def __init__(self, objective: Objective, target: int) -> None:
        self.objective = objective
        self.target = target

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except KeyboardInterrupt as exc:
            # as Objective does: Optuna catches it and records the trial FAIL at once, and a
            # Ctrl-C inside one of the writes below (the first heartbeat, the worker's name)
            # must first let go of the statement whose lock that record would wait for
            release_interrupted(exc)
            with contextlib.suppress(Exception):  # the results' note: why it failed
                trial.set_user_attr("interrupted", True)
            raise

    def _run(self, trial: optuna.Trial) -> float:
        # the worker's name first: a worker killed before it leaves a RUNNING trial that nothing
        # can tell is a dead one's (fail_dead_local_trials) until a grace period after its start
        # (wait_for_unnamed_trials), so the window is kept short (Objective names it again).
        # A heartbeat before it, not left to Optuna's thread, which writes while this goes on: a
        # named trial without one is a process's without heartbeats, whose start does not count
        # as one (storage._stale_from_its_start), and a worker killed after naming its trial but
        # before that thread wrote left it RUNNING for ever
        storage: Any = trial.study._storage  # (a BaseHeartbeat too, with heartbeats)
        try:
            if getattr(storage, "get_heartbeat_interval", lambda: None)() is not None:
                storage.record_heartbeat(trial._trial_id)
            name_trial(trial, self.objective.worker)
        except Exception:
            # its settings are queued again for a worker to run: give it up without Optuna's
            # traceback of "has already finished" (Optuna then refuses to record it FAIL again,
            # which _optimize takes as told elsewhere and goes on)
            if finished_elsewhere(trial):
                raise FailedAsStale from None
            raise
        before = sum(t.number < trial.number for t in _busy(trial.study))
        if before >= self.target or _grid_point_taken(trial):
            trial.set_user_attr(SURPLUS_ATTR, True)  # (left out of the tables and counts)
            raise _TargetReached
        return self.objective(trial)


def _grid_point_taken(trial: optuna.Trial) -> bool:
    """Whether the grid sampler gave ``trial`` a point that another trial has finished, or
    that an earlier-numbered trial is running. It does once no point is left unvisited
    ("re-evaluating a configuration"), as when one worker starts a trial while another runs the
    last point: with ``--workers 2`` that point was measured twice and counted as two trials.
    Of two trials that race for a point the earlier keeps it (the storage numbers trials one at
    a time), so that it is measured once, not given up by both. A failed trial's point does
    not count (its retry carries the same point, and must run)."""
    from optuna.samplers import GridSampler
    from optuna.trial import TrialState

    if not isinstance(trial.study.sampler, GridSampler):
        return False
    storage: Any = trial.study._storage
    point = storage.get_trial_system_attrs(trial._trial_id).get("grid_id")
    busy = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return point is not None and any(
        t.system_attrs.get("grid_id") == point and t.number != trial.number
        and (t.state != TrialState.RUNNING or t.number < trial.number)
        for t in storage.get_all_trials(trial.study._study_id, deepcopy=False, states=busy))


class _StopAtTarget:
    """Stop this worker once the study's finished plus running trials reach the target, so that
    several workers together run the target (a stale running trial is failed first). Failed
    trials do not count towards it; ``max(3, target)`` of them in a row stop the worker, since
    a space whose every trial fails would otherwise search for ever, and so does one trial
    whose settings no trial of the space can escape (``UNWORKABLE_ATTR``: see
    :mod:`mlplab.tuning.workable`), which every later trial would repeat."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.fails_in_a_row = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        import optuna
        from optuna.trial import TrialState

        self.fails_in_a_row = self.fails_in_a_row + 1 if trial.state == TrialState.FAIL else 0
        # a trial of another search on this machine that was killed meanwhile: failed now, not
        # a grace period after its last heartbeat (this search ended a trial short)
        fail_dead_local_trials(study)
        with quiet_optuna_warnings():
            optuna.storages.fail_stale_trials(study)
        if len(_busy(study)) >= self.target or self.fails_in_a_row >= max(3, self.target) or \
                UNWORKABLE_ATTR in trial.user_attrs:
            study.stop()


class _ProgressCallback:
    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        update_bar(self.bar, study)


def update_bar(bar: tqdm | None, study: optuna.Study) -> None:
    if bar is None:
        return
    bar.n = min(finished_count(study), bar.total)
    number, value = best_so_far(study)
    if value is not None:
        bar.set_postfix_str(f"best val acc {percent(value)} (trial {number})", refresh=False)
    bar.refresh()


def fail_dead_local_trials(study: optuna.Study, interrupted: bool = False) -> None:
    """Mark FAIL the running trials of processes on this machine that no longer exist (killed,
    SIGKILL or a power cut): they would otherwise count towards the target until their
    heartbeat's grace runs out, and a search run again at once would stop short.

    :func:`mlplab.tuning.tune` calls it once before it starts local workers, rather than K
    workers each racing to do it, and each worker after each of its trials (a process killed
    meanwhile); only one of those that race fails (and so re-queues) a trial,
    as the storage's check that it still runs and its update are one transaction (on SQLite
    too: :func:`mlplab.tuning.storage._claim_sqlite_rows`). ``interrupted``: these processes
    were stopped by the Ctrl-C of the search that started them, which the results then say of
    their trials (not "worker lost")."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        name, _, pid = str(t.user_attrs.get("worker", "")).split("#")[0].rpartition(":")
        if name == host and pid.isdigit() and int(pid) != os.getpid() and \
                same_namespace(t.user_attrs) and not process_alive(int(pid)):
            try:  # as Optuna's fail_stale_trials does for a stopped heartbeat, retry included
                if interrupted:  # (while it runs: a finished trial's attributes are final)
                    storage.set_trial_user_attr(t._trial_id, "interrupted", True)
                if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    continue  # another process has just finished it
            except Exception:  # noqa: BLE001 - finished or failed meanwhile by another process
                continue
            retry = _stale_trial_callback(storage)
            if retry is not None:
                retry(study, copy.deepcopy(storage.get_trial(t._trial_id)))


def requeue_interrupted_trials(study: optuna.Study, worker: str) -> None:
    """Re-queue, once, the trials ``worker`` (this process) was running when Ctrl-C stopped it,
    which Optuna records FAIL, as a stopped worker's are (:func:`fail_dead_local_trials`): a
    grid sampler counts a FAIL point as visited, so the interrupted point never ran again and
    the study said it was complete. A trial that failed of itself (an ``error``) is not one."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    requeue = requeue_callback()
    for t in trials:
        # (the same host:pid tag in another PID namespace is another process's)
        if t.state == TrialState.FAIL and t.user_attrs.get("worker") == worker and \
                same_namespace(t.user_attrs) and \
                "error" not in t.user_attrs and SURPLUS_ATTR not in t.user_attrs and \
                t.number not in retried:
            requeue(study, copy.deepcopy(t))


def unnamed_running(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The running trials that name no worker (no ``worker`` attribute): begun by a process
    that has not named them yet, or that was killed before it could."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if "worker" not in t.user_attrs]


def wait_for_unnamed_trials(study: optuna.Study, target: int, heartbeat: int | None,
                            grace: int | None, bar: tqdm | None = None,
                            poll: float = 0.25, timeout: float | None = None) -> None:
    """While the study is short of ``target`` finished trials, wait for its running trials
    that name no worker until each is named, finished, or failed as stale (and re-queued).

    A worker names its trial first thing, but Optuna creates the trial, and the sampler draws
    its settings, before that and before its heartbeat starts: a process killed in that instant
    leaves a RUNNING trial that no process can yet tell from a live one's (which names it within
    moments). It counted towards the target, so the same command run again at once ended a
    trial short, with no word. The storage fails it as stale ``grace`` seconds after it began
    (:func:`mlplab.tuning.storage._stale_from_its_start`), so this waits at most that (plus a
    heartbeat, for a trial that recorded one before it died, and a second of clock rounding),
    and at most ``timeout`` seconds, what is left of the search's ``--timeout``: the wait is
    part of the search's time; without heartbeats nothing would fail it, and this does not
    wait."""
    import optuna

    if heartbeat is None or grace is None:
        return
    bound = float(grace + heartbeat + 1) if timeout is None else \
        min(grace + heartbeat + 1, timeout)  # (the progress bar says it)
    end = time.monotonic() + bound
    waited = False
    while finished_count(study) < target:
        with quiet_optuna_warnings():
            optuna.storages.fail_stale_trials(study)  # (it re-queues those it fails)
        unnamed = unnamed_running(study)
        if not unnamed or time.monotonic() >= end:
            break
        if bar is not None:
            numbers = ", ".join(str(t.number) for t in unnamed)
            bar.set_postfix_str(f"waiting up to {round(bound, 1):g} s for trial {numbers}, "
                                "which names no worker (killed as it began?)", refresh=True)
        waited = True
        time.sleep(poll)
    if waited and bar is not None:
        bar.set_postfix_str("", refresh=False)
        update_bar(bar, study)


def _stale_trial_callback(storage: optuna.storages.BaseStorage) -> Callable | None:
    """The callback a storage runs on a trial whose heartbeat stopped (None without one); Optuna
    4.9 renamed ``get_failed_trial_callback`` to ``get_heartbeat_stale_trial_callback``."""
    for name in ("get_heartbeat_stale_trial_callback", "get_failed_trial_callback"):
        method = getattr(storage, name, None)
        if method is not None:
            return method()
    return None


def run_search(study: optuna.Study, data: TuningData, space: SearchSpace, target: int,
               timeout: float | None = None, seed: int | None = 0, bar: tqdm | None = None,
               worker: str | None = None) -> None:
    """Run trials in this process until the study holds ``target`` finished trials (or
    ``timeout`` seconds pass). ``study`` carries the sampler and pruner."""
    import optuna

    if finished_count(study) >= target or grid_exhausted(study):
        return
    fail_dead_local_trials(study)
    with quiet_optuna_warnings():
        optuna.storages.fail_stale_trials(study)
    if len(_busy(study)) >= target:  # other workers' running trials make up the rest
        return
    objective = Objective(data, space, seed, worker)
    callbacks: list[Callable] = [_StopAtTarget(target)]
    if bar is not None:
        callbacks.append(_ProgressCallback(bar))
    with optuna_warnings_only(), quiet_optuna_warnings(), \
            quiet_interrupts((_TargetReached, FailedAsStale), brief=(ConfigurationError,)):
        try:
            _optimize(study, objective, target, timeout, callbacks)
        except Exception as exc:
            if not _interrupted(exc):
                raise
            # Ctrl-C while Optuna records a trial: its loop's `finally` then reads a variable the
            # interrupted call never set and raises UnboundLocalError instead. It is still the
            # user's Ctrl-C (on which the caller writes the finished trials' tables), and the
            # trial being recorded stays RUNNING: fail it, as Optuna fails a trial Ctrl-C stops.
            # First let go of the interrupted statement the traceback holds, or every write
            # waits SQLite's busy timeout for the lock it keeps (see release_interrupted)
            release_interrupted(exc)
            _stop_abandoned_heartbeats(study)
            _fail_running_trials_of(study, objective.worker)
            raise KeyboardInterrupt from exc
        except KeyboardInterrupt as exc:
            release_interrupted(exc)  # before the trials of abandoned heartbeats are failed
            _stop_abandoned_heartbeats(study)
            raise


def _optimize(study: optuna.Study, objective: Objective, target: int, timeout: float | None,
              callbacks: list[Callable]) -> None:
    """Optuna's loop until ``target`` (no n_trials: Optuna counts failed trials in it;
    _StopAtTarget counts finished ones), entered again when another worker recorded the trial
    this one was running (Optuna refuses the second result, "Cannot tell a COMPLETE trial",
    which ended the worker with a traceback and the command with an error). Two workers of a
    SQLite study took the same re-queued trial so, before each claim became a transaction
    (:func:`mlplab.tuning.storage._claim_sqlite_rows`); kept for a storage that lets two
    processes claim one trial. The first result stands, of the same settings."""
    import time

    end = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            return
        try:
            study.optimize(_WithinTarget(objective, target), n_trials=None, timeout=left,
                           callbacks=callbacks, gc_after_trial=False,
                           catch=(MemoryError, ConfigurationError))
            return
        except _TargetReached:
            return
        except (ValueError, AssertionError, RuntimeError) as exc:
            if not _told_elsewhere(exc):
                raise
        # as _StopAtTarget would have, had Optuna called it for that trial
        if len(_busy(study)) >= target:
            return


def _told_elsewhere(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna refusing this worker's result for a trial that another process
    recorded first: its ValueError "Cannot tell a COMPLETE trial", or, for a trial another
    worker failed as stale (a heartbeat that a busy storage delayed past the grace period), the
    AssertionError ("Should not reach.") that Optuna 4+ raises over "Cannot tell a FAIL
    trial" or over the storage's refusal to update a finished trial (bare for a trial pruned or
    failed here)."""
    refused = exc.__context__ if isinstance(exc, AssertionError) else exc
    if isinstance(refused, ValueError) and str(refused).startswith("Cannot tell a "):
        return True
    # failed by another process between Optuna's check that the trial runs and its write: the
    # storage's UpdateFinishedTrialError (a RuntimeError before Optuna 4.3), under the same
    # AssertionError ("Should not reach.", which ended the command) for a trial that
    # completed, bare for one pruned or whose objective raised
    return isinstance(refused, RuntimeError) and "has already finished" in str(refused)


def grid_exhausted(study: optuna.Study) -> bool:
    """Whether the study's grid sampler has tried every point: resumed then, Optuna's
    GridSampler would run one of them again before stopping the study."""
    from optuna.samplers import GridSampler

    sampler = study.sampler
    if not isinstance(sampler, GridSampler):
        return False
    if hasattr(sampler, "is_exhausted"):  # Optuna >= 3.6
        return bool(sampler.is_exhausted(study))
    # older Optunas (3.4, the oldest supported) have only the private form of the same check
    unvisited = getattr(sampler, "_get_unvisited_grid_ids", None)
    return unvisited is not None and len(unvisited(study)) == 0


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while handling a KeyboardInterrupt."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _stop_abandoned_heartbeats(study: optuna.Study) -> None:
    """Stop the heartbeat threads of the study's trials that Optuna left running, and fail their
    trials, as Optuna fails a trial that Ctrl-C stops.

    Optuna starts a trial's heartbeat thread as a ``with`` block begins: a Ctrl-C while
    ``Thread.start`` waits for the new thread to run ends that ``with`` before its body, so
    nothing ever sets the thread's stop event. It recorded the trial's heartbeat for ever: the
    trial stayed RUNNING and alive to every later search of the study (which stopped a trial
    short of its target), and the thread, not a daemon, kept the process from exiting (``mlplab
    tune`` hung after saying it was interrupted). The thread is found by its target, Optuna's
    ``HeartbeatThread._record_heartbeat``, and its arguments ``(trial_id, storage,
    stop_event)``: both internal, so anything that does not match is left alone."""
    import threading

    from optuna.trial import TrialState

    try:
        from optuna.storages._heartbeat import HeartbeatThread
    except ImportError:  # pragma: no cover - an Optuna that moved it
        return
    record = getattr(HeartbeatThread, "_record_heartbeat", None)
    for thread in threading.enumerate():
        args: tuple[Any, ...] = getattr(thread, "_args", ())
        if record is None or getattr(thread, "_target", None) is not record or \
                len(args) != 3 or args[1] is not study._storage:
            continue
        trial_id, _, stop = args
        stop.set()
        thread.join()
        with contextlib.suppress(Exception):  # finished meanwhile: nothing to do
            study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL)


def _fail_running_trials_of(study: optuna.Study, worker: str) -> None:
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("worker") == worker and same_namespace(t.user_attrs):
            with contextlib.suppress(Exception):  # finished meanwhile: nothing to do
                study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
