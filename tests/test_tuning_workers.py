"""Several real worker processes on one Optuna study: SQLite, a journal file and PostgreSQL.

Each test launches ``python -m mlplab tune`` subprocesses (what a user runs on each machine) and
then reads the study back with Optuna's own API, independently of mlplab's code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from repo_path import pythonpath

from mlplab.tuning import StorageSpec, trials_table
from mlplab.tuning.storage import journal_file_backend

POSTGRES_URL = os.environ.get("MLPLAB_TEST_POSTGRES_URL")
if POSTGRES_URL:  # SQLAlchemy >= 2.1 defaults to psycopg 3; the postgres extra installs psycopg2
    from mlplab.tuning import sqlalchemy_url

    PG_READER_URL = sqlalchemy_url(POSTGRES_URL)

# trials of about 0.5 s on digits, long enough that two workers started together overlap
MEDIUM_SPACE = """\
hidden_size: [16, 32, 64]
lr: {type: float, low: 1e-2, high: 0.3, log: true}
epochs: 12
batch_size: 16
"""
# 30 epochs, so that a worker is surely killed mid-trial (see mid_trial below)
LONG_SPACE = MEDIUM_SPACE.replace("epochs: 12", "epochs: 30")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLBACKEND="Agg", PYTHONPATH=pythonpath())
    return env


def _storage(kind: str, tmp_path: Path) -> tuple[str, optuna.storages.BaseStorage]:
    """``(--storage argument, an Optuna storage opened independently of mlplab)``."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        return url, optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}})
    if kind == "journal":
        path = tmp_path / "shared.log"
        return f"journal:{path}", optuna.storages.JournalStorage(journal_file_backend(path))
    if POSTGRES_URL is None:
        pytest.skip("MLPLAB_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server "
                    "and sets it)")
    return POSTGRES_URL, _postgres_reader()


def _postgres_reader(attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's storage on the test database. The first tests of several pytest workers race
    to create Optuna's tables in the empty database, and the loser's ``CREATE TABLE`` fails
    ("duplicate key ... alembic_version"); it opens them once they exist, as mlplab's own
    storage does (``StorageSpec.open``)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(PG_READER_URL)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + 0.3 * attempt)
    raise AssertionError("unreachable")


STORAGES = ["sqlite", "journal", "postgres"]


def _tune(tmp_path: Path, storage: str, study: str, space: Path, trials: int, *extra: str,
          out: str = "out") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mlplab", "tune", "--dataset", "digits", "--trials", str(trials),
           "--search-space", str(space), "--study", study, "--storage", storage,
           "--out", str(tmp_path / out), "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output
    return output


def _trials(storage, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _wait_for(predicate, timeout: float, what: str, procs=()) -> None:
    """Poll ``predicate`` until it holds. Between polls only a short pause: the poll itself
    (reading the study back) then sets the pace, and it is as fast or slow as the host, as the
    trials it watches are."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"worker exited early while waiting for {what}:\n"
                                     f"{p.communicate()[0]}")
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def study_name(request):
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    if POSTGRES_URL is not None and "postgres" in request.node.name:
        try:
            optuna.delete_study(study_name=name, storage=PG_READER_URL)
        except KeyError:
            pass


@pytest.mark.parametrize("kind", STORAGES)
def test_two_workers_share_one_study(kind, tmp_path, study_name):
    url, storage = _storage(kind, tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(MEDIUM_SPACE)
    target = 8
    if kind == "sqlite":  # one command, two local worker processes (--workers 2)
        procs = [_tune(tmp_path, url, study_name, space, target, "--search-only",
                       "--workers", "2")]
    else:  # two commands, as on two machines
        procs = [_tune(tmp_path, url, study_name, space, target, "--search-only")
                 for _ in range(2)]
    for p in procs:
        _finish(p)

    every = _trials(storage, study_name)
    # together the workers run the target exactly: a trial begun when the trials numbered before
    # it already make the target (two workers finishing at the same instant) trains nothing,
    # FAIL and marked surplus
    surplus = [t for t in every if t.user_attrs.get("mlplab:surplus")]
    assert all(t.state == TrialState.FAIL and not t.params for t in surplus), surplus
    trials = [t for t in every if t not in surplus]
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE] * target, states
    assert sorted(t.number for t in every) == list(range(len(every)))
    # every trial is tagged host:pid[#index] by the process that ran it: exactly two worker
    # processes contributed, and (with --workers) neither is the parent
    by_worker: dict[str, list[int]] = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t.number)
    assert len(by_worker) == 2, by_worker
    pids = {w.split(":")[1].split("#")[0] for w in by_worker}
    if kind == "sqlite":
        assert {w.split("#")[1] for w in by_worker} == {"0", "1"}
        assert str(procs[0].pid) not in pids
    else:
        assert pids == {str(p.pid) for p in procs}
    assert all(0.0 <= t.value <= 1.0 for t in trials)
    if kind == "journal":  # Optuna's loop ran mlplab's journal heartbeat in every trial
        assert all(isinstance(t.system_attrs.get("mlplab:heartbeat"), float) for t in trials)


def _running_by(storage, study: str, pid: int) -> bool:
    """Whether process ``pid`` is running a trial of ``study``."""
    if not _study_has_trials(storage, study):
        return False
    return any(t.state == TrialState.RUNNING and
               t.user_attrs.get("worker", "").split(":")[-1] == str(pid)
               for t in _trials(storage, study))


def _study_has_trials(storage, study: str) -> bool:
    try:
        return len(_trials(storage, study)) > 0
    except KeyError:  # the study does not exist yet
        return False


# journal files: the heartbeat is checked inside real optimisation in the two-worker test above
# and its failing of stale trials directly in test_tuning.py, which keeps this file's time down
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_killed_worker_trial_fails_by_heartbeat_and_study_resumes(kind, tmp_path, study_name):
    url, storage = _storage(kind, tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(LONG_SPACE)
    target = 2
    beat = ["--heartbeat", "1", "--grace", "2"]
    worker = _tune(tmp_path, url, study_name, space, target, "--search-only", *beat)

    def mid_trial() -> bool:
        """A trial is running and has reported 1 to 20 of its 30 epochs: the last 10 leave time
        for the kill to land while it still runs. The window is counted in epochs and polled at
        the pace of the study's reads, both as fast as the host (10 epochs polled every 50 ms
        plus a read: a fast host could pass the window between two polls, in both trials)."""
        if not _study_has_trials(storage, study_name):
            return False
        return any(t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= 20
                   for t in _trials(storage, study_name))

    _wait_for(mid_trial, 90, "a trial in progress", [worker])
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    killed_at = time.monotonic()
    running = [t for t in _trials(storage, study_name) if t.state == TrialState.RUNNING]
    assert len(running) == 1, "the killed worker must leave its trial RUNNING"
    killed = running[0]
    assert len(killed.intermediate_values) < 30  # really mid-trial

    # resume after the grace period: the dead trial is failed by the heartbeat check, its
    # parameters are re-queued once, and the study reaches its target
    time.sleep(max(0.0, 2.5 - (time.monotonic() - killed_at)))
    _finish(_tune(tmp_path, url, study_name, space, target, *beat, "--search-only"))

    trials = {t.number: t for t in _trials(storage, study_name)}
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1
    assert retries[0].state == TrialState.COMPLETE
    # (on a host loaded enough that the watched trial ended before the kill landed, the killed
    # trial is the next one, caught before it drew its settings: its retry draws them afresh)
    assert retries[0].params == killed.params or killed.params == {}
    states = [t.state for t in trials.values()]
    assert states.count(TrialState.COMPLETE) == target, states
    assert TrialState.RUNNING not in states
    # the results table explains the lost trial
    header, rows = trials_table(optuna.load_study(study_name=study_name, storage=storage))
    notes = {row[0]: row[header.index("note")] for row in rows}
    assert notes[killed.number] == \
        f"worker lost (its process ended or its heartbeat stopped); re-queued as trial " \
        f"{retries[0].number}"
    assert notes[retries[0].number] == f"retry of trial {killed.number}"


def test_a_local_worker_killed_mid_trial_leaves_its_trial_to_the_others(tmp_path, study_name):
    """A worker of --workers killed by a signal (the out-of-memory killer) printed nothing, yet
    the command failed saying its "error is printed above", wrote no results, and its trial,
    RUNNING and counted towards the target, stopped the other worker one trial short."""
    url, storage = _storage("sqlite", tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(LONG_SPACE)
    target = 4
    proc = _tune(tmp_path, url, study_name, space, target, "--workers", "2")

    def running_worker() -> int | None:
        """The pid of a worker mid-trial, as in the heartbeat test above."""
        if not _study_has_trials(storage, study_name):
            return None
        for t in _trials(storage, study_name):
            if t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= 20 and \
                    "worker" in t.user_attrs:
                return int(t.user_attrs["worker"].split(":")[-1].split("#")[0])
        return None

    found: list[int] = []

    def mid_trial() -> bool:
        pid = running_worker()
        if pid is not None:
            found.append(pid)
        return pid is not None

    # the pid seen mid-trial, killed at once: asking again could find the trial just ended (a
    # CI run asked twice and got None the second time)
    _wait_for(mid_trial, 90, "a trial in progress", [proc])
    victim = found[-1]
    os.kill(victim, signal.SIGKILL)
    _finish(proc)

    trials = _trials(storage, study_name)
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == 1 and killed[0].user_attrs["worker"].split(":")[-1].startswith(
        f"{victim}#")
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert [t.state for t in trials].count(TrialState.COMPLETE) == target
    assert (tmp_path / "out" / "results.csv").is_file()
    assert (tmp_path / "out" / "best-run" / "model.npz").is_file()


def test_workers_run_again_at_once_after_a_kill_left_an_unnamed_trial(tmp_path, study_name):
    """--workers 2 run at once after a worker was killed between Optuna creating its trial and
    the worker naming it: the trial (RUNNING, no worker, no heartbeat) counted towards the
    target for ever, and the command ended a trial short with status 0 and no word. Now the
    command waits out the grace period, the trial is failed and re-queued once, and the workers
    finish exactly --trials."""
    url, storage = _storage("sqlite", tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(MEDIUM_SPACE)
    beat = ["--heartbeat", "1", "--grace", "2"]
    _finish(_tune(tmp_path, url, study_name, space, 2, "--search-only", *beat))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Optuna's warning of a trial asked by hand)
        lost = optuna.load_study(study_name=study_name, storage=storage).ask().number
    output = _finish(_tune(tmp_path, url, study_name, space, 5, "--search-only", "--workers",
                           "2", *beat))
    trials = [t for t in _trials(storage, study_name) if not t.user_attrs.get("mlplab:surplus")]
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 5, (states, output)
    assert states.count(TrialState.FAIL) == 1 and TrialState.RUNNING not in states, states
    assert trials[lost].state == TrialState.FAIL and "worker" not in trials[lost].user_attrs
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == lost]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert "5 complete, 0 pruned, 1 failed" in output and "ended" not in output, output


def _spawned_workers(parent: int) -> set[int]:
    """The pids of the worker processes that ``parent`` (mlplab tune) has spawned and that are
    still running (its children in /proc, the resource tracker left out)."""
    children: set[int] = set()
    for task in Path(f"/proc/{parent}/task").glob("*"):
        with contextlib.suppress(OSError):
            children |= {int(c) for c in (task / "children").read_text().split()}
    alive = set()
    for pid in children:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            if b"spawn_main" in cmdline and status != "Z":
                alive.add(pid)
    return alive


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_a_worker_killed_with_the_last_trial_after_the_others_stopped_is_replaced(
        tmp_path, study_name):
    """--workers 2 --trials 1: one worker runs the only trial (a second is not started: there
    is no trial for it), and it is killed mid-trial. The command ended with "run the same
    command again" and no finished trial; it now starts a worker that runs the re-queued trial,
    and finishes the study."""
    url, storage = _storage("sqlite", tmp_path)
    space = tmp_path / "space.yaml"
    # long enough a trial that the other worker, slower to start on a busy host, has stopped
    # before it ends
    space.write_text(LONG_SPACE.replace("epochs: 30", "epochs: 100"))
    proc = _tune(tmp_path, url, study_name, space, 1, "--workers", "2")
    victim: list[int] = []

    def alone_mid_trial() -> bool:
        """The only trial mid-way in a worker, the other worker gone."""
        if not _study_has_trials(storage, study_name):
            return False
        trials = _trials(storage, study_name)
        if len(trials) > 1:  # both workers took a trial (they started within an instant)
            return True
        t = trials[0]
        workers = _spawned_workers(proc.pid)
        if t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= 80 and \
                "worker" in t.user_attrs and len(workers) == 1:
            pid = int(t.user_attrs["worker"].split(":")[-1].split("#")[0])
            if workers == {pid}:
                victim.append(pid)
                return True
        return False

    _wait_for(alone_mid_trial, 90, "one worker alone mid-trial", [proc])
    if not victim:
        _finish(proc)
        pytest.skip("both workers started a trial: the race this test needs did not happen")
    os.kill(victim[0], signal.SIGKILL)
    output = _finish(proc)
    assert "run the same command again" not in output, output

    trials = _trials(storage, study_name)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE], output
    assert trials[1].system_attrs.get("failed_trial") == 0 and trials[1].params == \
        trials[0].params
    # run by the new worker (index 1: after the first round's 0)
    assert trials[1].user_attrs["worker"].endswith("#1")
    assert (tmp_path / "out" / "best-run" / "model.npz").is_file()


OPEN_TOGETHER = """
import pathlib, sys, time
from mlplab.tuning import StorageSpec
url, folder, me, n = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
(folder / me).touch()
while len(list(folder.iterdir())) < n:  # a barrier: all open the fresh database together
    time.sleep(0.001)
StorageSpec(url).open()
"""


def test_workers_starting_together_on_an_empty_database(tmp_path):
    """Optuna's RDBStorage alone fails (IntegrityError / "table already exists") in some of the
    processes that create its tables in an empty database at the same time; mlplab retries."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_TOGETHER, url, str(barrier), str(i),
                               "3"], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for i in range(3)]
    for p in procs:
        _finish(p, timeout=60)
    optuna.create_study(storage=url, study_name="ok")  # the schema is complete and usable


@pytest.mark.parametrize("allowed, workers, each", [({0, 1}, 2, 1), ({0, 1, 2, 3}, 2, 2),
                                                    ({3}, 4, 1)])
def test_workers_share_the_cores_this_process_may_use(monkeypatch, allowed, workers, each):
    """Local workers split the cores of the process's affinity mask, not the machine's: pinned
    to 2 of 16 cores (taskset, a container's cpuset), 2 workers took 8 BLAS threads each."""
    from mlplab import tuning
    from mlplab.tuning.space import SearchSpace

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(allowed), raising=False)
    specs = tuning._worker_specs(workers, None, None, "s", SearchSpace.load(None), "tpe", None,
                                 4, None, 0, None, None)
    assert [s.blas_threads for s in specs] == [each] * workers


def test_a_ctrl_c_while_the_workers_start_stops_those_already_started(monkeypatch):
    """The workers were started before the `try` that stops them on Ctrl-C: one while the second
    started left the first searching on its own until it had run the study's whole target."""
    from mlplab.tuning import workers

    events = []

    class Process:  # what run_workers uses of multiprocessing's
        def __init__(self, target, args, name):
            self.name, self.pid, self.alive = name, None, False

        def start(self):
            if self.name.endswith("-1"):
                raise KeyboardInterrupt  # as the second worker starts
            self.pid, self.alive = 4242, True

        def is_alive(self):
            return self.alive

        def terminate(self):
            events.append(f"terminate {self.name}")
            self.alive = False

        def join(self):
            events.append(f"join {self.name}")

    context = type("Context", (), {"Process": Process})()
    monkeypatch.setattr(workers.multiprocessing, "get_context", lambda method: context)
    specs = [type("Spec", (), {"index": i})() for i in range(2)]
    with pytest.raises(KeyboardInterrupt):
        workers.run_workers(specs, study=None)
    assert events == ["terminate mlplab-tune-0", "join mlplab-tune-0"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_a_ctrl_c_that_reaches_the_workers_is_left_to_the_command(tmp_path):
    """A terminal's Ctrl-C goes to the whole process group, the workers too: one that landed
    while a worker imported or opened the study printed its Python traceback ("Process
    mlplab-tune-0:", 27 lines) under the command's "mlplab: interrupted". The workers start with
    SIGINT blocked, and the command stops them. Sent to the workers alone here, so that the
    command does not stop them first: they search on, and the command ends as usual."""
    space = tmp_path / "space.yaml"
    space.write_text(MEDIUM_SPACE)
    proc = _tune(tmp_path, "sqlite:///" + str(tmp_path / "s.db"), "ctrl-c", space, 2,
                 "--workers", "2", "--search-only")
    try:
        _wait_for(lambda: len(_spawned_workers(proc.pid)) == 2, 60, "two workers")
        # at once, as they import and load the data, and again in the middle of the search
        for pid in _spawned_workers(proc.pid):
            os.kill(pid, signal.SIGINT)
        # (or a finished one: on a loaded machine a poll of the study can take longer than a
        # trial, which then ran between two polls, and this waited for a state gone by)
        _wait_for(lambda: any(t.state in (TrialState.RUNNING, TrialState.COMPLETE) for t in
                              _trials("sqlite:///" + str(tmp_path / "s.db"), "ctrl-c")),
                  60, "a running trial")
        for pid in _spawned_workers(proc.pid):
            os.kill(pid, signal.SIGINT)
        output = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in output and "Process mlplab-tune" not in output, output
    trials = _trials("sqlite:///" + str(tmp_path / "s.db"), "ctrl-c")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2


@pytest.mark.parametrize("start, to", [(TrialState.WAITING, TrialState.RUNNING),
                                       (TrialState.RUNNING, TrialState.FAIL)])
def test_one_sqlite_trial_changes_state_once_when_two_workers_race(tmp_path, start, to):
    """Two workers on one SQLite file each took the same re-queued (WAITING) trial, or each
    failed a dead worker's trial and so re-queued it twice: SQLite has no row locks, and the
    driver began the transaction only at the write, after Optuna's read of the trial's state.
    Here worker B's change runs between worker A's read and A's write; only one may succeed."""
    from sqlalchemy import event

    from mlplab.tuning.storage import StorageSpec

    spec = StorageSpec(f"sqlite:///{tmp_path / 'race.db'}", heartbeat=None)
    a, b = spec.open(), spec.open()  # two engines: two workers' connections
    study = optuna.create_study(storage=a, study_name="race", direction="maximize")
    if start == TrialState.WAITING:
        study.enqueue_trial({"x": 1})
    else:
        study.ask()
    (trial,) = study.get_trials(deepcopy=False)
    assert trial.state == start
    outcome: dict[str, object] = {}

    def b_changes_it() -> None:
        try:
            outcome["b"] = b.set_trial_state_values(trial._trial_id, state=to)
        except RuntimeError:  # Optuna >= 4.3: UpdateFinishedTrialError, a RuntimeError
            outcome["b"] = False  # what fail_stale_trials takes for "another process did"

    def after_a_reads(conn, cursor, statement, *args) -> None:
        if "b" not in outcome and "thread" not in outcome and \
                statement.lstrip().upper().startswith("SELECT") and "trials" in statement:
            outcome["thread"] = thread = threading.Thread(target=b_changes_it)
            thread.start()
            thread.join(1.0)  # B either finishes (the race) or waits for A's lock (fixed)

    event.listen(a.engine, "after_cursor_execute", after_a_reads)
    outcome["a"] = a.set_trial_state_values(trial._trial_id, state=to)
    outcome["thread"].join(30)
    assert (outcome["a"], outcome["b"]) == (True, False)
    assert study.get_trials(deepcopy=False)[0].state == to


def test_a_sqlite_storage_reads_while_another_process_holds_the_write_lock(tmp_path):
    """Only the transactions that may write take SQLite's write lock at their start: every read
    took it too, so the parent's progress, each sampler's look at the trials and each worker's
    check of the target queued behind the writers (seconds on a busy file), and a heartbeat
    queued behind them arrived late enough for a live trial to be failed as stale. Writes still
    wait for the lock."""
    import sqlite3

    from mlplab.tuning.storage import StorageSpec

    db = tmp_path / "study.db"
    storage = StorageSpec(f"sqlite:///{db}").open()  # (heartbeats: the stale-trial query)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ("Heartbeat ... supposed to be used with optimize")
        trial_id = study.ask()._trial_id
    done: dict[str, object] = {}

    def run(name, call) -> threading.Thread:
        thread = threading.Thread(target=lambda: done.setdefault(name, call()))
        thread.start()
        return thread

    other = sqlite3.connect(db, isolation_level=None)  # another worker, in the middle of a write
    other.execute("BEGIN IMMEDIATE")
    try:
        reads = [run("trials", lambda: storage.get_all_trials(study._study_id)),
                 run("trial", lambda: storage.get_trial(trial_id)),
                 run("stale", lambda: storage._get_stale_trial_ids(study._study_id))]
        for thread in reads:
            thread.join(10)
        assert {"trials", "trial", "stale"} <= done.keys()  # not queued behind the writer
        write = run("write", lambda: storage.set_trial_user_attr(trial_id, "k", 1))
        write.join(1.0)
        assert "write" not in done  # a write waits for the lock
    finally:
        other.rollback()
        other.close()
    write.join(10)
    assert "write" in done and storage.get_trial(trial_id).user_attrs == {"k": 1}


def test_a_local_sqlite_storage_is_in_wal_mode_and_a_network_one_is_not(tmp_path, monkeypatch):
    """WAL lets the progress poll read while workers write (in the rollback journal it waited
    for every commit, up to seconds); SQLite's WAL cannot work across machines, so a file on a
    network file system is put back in the rollback journal."""
    import sqlite3

    from mlplab.tuning import storage as storage_module

    def mode(db: Path) -> str:
        with contextlib.closing(sqlite3.connect(db)) as con:
            return con.execute("PRAGMA journal_mode").fetchone()[0]

    db = tmp_path / "study.db"
    opened = storage_module.StorageSpec(f"sqlite:///{db}").open()
    optuna.create_study(storage=opened, study_name="s").optimize(lambda t: 1.0, n_trials=1)
    assert mode(db) == "wal"
    storage_module.close_storage(opened)
    # the last connection closed: the -wal and -shm files are folded back in and gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]

    monkeypatch.setattr(storage_module, "on_network_file_system", lambda folder: True)
    opened = storage_module.StorageSpec(f"sqlite:///{db}").open()
    assert mode(db) == "delete"
    assert len(optuna.load_study(study_name="s", storage=opened).trials) == 1
    storage_module.close_storage(opened)


#: a storage of the tests of run_workers' rounds alone (no trial is left unnamed to wait for)
NO_HEARTBEATS = StorageSpec("sqlite://", heartbeat=None)


@pytest.mark.parametrize("timeout", [None, 1000.0])
def test_killed_workers_are_replaced_a_bounded_number_of_rounds(monkeypatch, timeout):
    """Each round whose workers are killed short of the target starts as many new ones as trials
    are missing (at most --workers), numbered on, with what is left of the timeout; after
    MAX_RESTARTS such rounds the command gives up and says to run it again."""
    from dataclasses import replace

    from mlplab.tuning import workers

    rounds: list[list] = []
    finished = iter([0, 1, 2, 2, 2])  # the study's finished trials after each round (target 5)
    monkeypatch.setattr(workers, "_run_round", lambda specs, study, bar, poll: (
        rounds.append(specs) or [f"mlplab-tune-{s.index} (SIGKILL)" for s in specs]))
    monkeypatch.setattr(workers, "finished_count", lambda study: next(finished))
    monkeypatch.setattr(workers, "grid_exhausted", lambda study: False)
    spec = workers.WorkerSpec(None, NO_HEARTBEATS, "s", {}, "tpe", None, 5, timeout, 0, None, 0)
    with pytest.raises(RuntimeError, match=r"killed: mlplab-tune-0 \(SIGKILL\), .*"
                                           r"mlplab-tune-11 \(SIGKILL\), which printed nothing.*"
                                           r"run the same command again"):
        workers.run_workers([spec, replace(spec, index=1), replace(spec, index=2)], study=None)
    assert len(rounds) == 1 + workers.MAX_RESTARTS
    # 3 workers, then min(missing, 3): 3 (4 missing), 3, 3
    assert [[s.index for s in r] for r in rounds] == [[0, 1, 2], [3, 4, 5], [6, 7, 8],
                                                      [9, 10, 11]]
    for r in rounds[1:]:
        assert all((s.timeout is None) == (timeout is None) for s in r)
        assert timeout is None or all(0 < s.timeout <= timeout for s in r)


def test_no_new_workers_once_the_target_is_met_the_timeout_spent_or_none_was_killed(
        monkeypatch):
    from mlplab.tuning import workers

    calls = []
    monkeypatch.setattr(workers, "grid_exhausted", lambda study: False)
    spec = workers.WorkerSpec(None, NO_HEARTBEATS, "s", {}, "tpe", None, 2, None, 0, None, 0)

    def run(killed, finished, spec=spec):
        calls.clear()
        monkeypatch.setattr(workers, "_run_round", lambda specs, study, bar, poll: (
            calls.append(specs) or killed))
        monkeypatch.setattr(workers, "finished_count", lambda study: finished)
        workers.run_workers([spec], study=None)
        return len(calls)

    assert run(["mlplab-tune-0 (SIGKILL)"], 2) == 1  # the others finished the study
    assert run([], 1) == 1  # short for its own reasons (its timeout): not a kill
    # 1 missing after a kill: one new worker each round (here killed too, up to the bound)
    with pytest.raises(RuntimeError):
        run(["mlplab-tune-0 (SIGKILL)"], 1)
    assert len(calls) == 1 + workers.MAX_RESTARTS and all(len(c) == 1 for c in calls)
    # the timeout spent: no new worker, the error says to run the command again
    with pytest.raises(RuntimeError, match="run the same command again"):
        run(["mlplab-tune-0 (SIGKILL)"], 1, spec=workers.WorkerSpec(
            None, NO_HEARTBEATS, "s", {}, "tpe", None, 2, 1e-9, 0, None, 0))
    assert len(calls) == 1


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_new_workers_start_once_a_trial_a_killed_worker_left_unnamed_is_re_queued(tmp_path,
                                                                                   monkeypatch):
    """A local worker killed between Optuna creating its trial and naming it left a trial that
    the command cannot tell is a dead one's until its grace period has passed
    (fail_dead_local_trials needs the name). The new workers started for the missing trials
    counted it, found the target taken and stopped at once, and the command ended short (its
    note said to run it again). The command now waits for such a trial to be failed and
    re-queued before it starts them, as a rerun does."""
    from mlplab.tuning import workers

    spec = StorageSpec(f"sqlite:///{tmp_path / 'study.db'}", heartbeat=1, grace=2)
    study = optuna.create_study(storage=spec.open(), study_name="s", direction="maximize")
    seen: list[list[TrialState]] = []

    def one_round(specs, study, bar, poll):
        seen.append([t.state for t in study.get_trials()])
        if len(seen) == 1:  # the worker is killed as its trial begins, before it names it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study.ask()
            return ["mlplab-tune-0 (SIGKILL)"]
        return []  # (the new worker's round: runs the re-queued trial)

    monkeypatch.setattr(workers, "_run_round", one_round)
    worker = workers.WorkerSpec(None, spec, "s", {}, "tpe", None, 1, None, 0, None, 0)
    workers.run_workers([worker], study)
    assert seen == [[], [TrialState.FAIL, TrialState.WAITING]]


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (no such process, or one that no process has collected
    yet: the workers of a killed command are orphans, which PID 1 of a container may never
    collect)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in "ZX"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_workers_end_when_the_command_that_started_them_is_killed(tmp_path, study_name):
    """SIGKILL of `mlplab tune --workers 2` alone (the out-of-memory killer, a job scheduler)
    left its workers searching the study to its end in the background, unseen. They now end
    as soon as their parent has, leaving their trials as killed workers do: the next run of the
    command fails and re-queues them, and finishes the study."""
    url, storage = _storage("sqlite", tmp_path)
    space = tmp_path / "space.yaml"
    # 100 epochs a trial and 30 trials: the two workers would go on for a minute or more
    space.write_text(LONG_SPACE.replace("epochs: 30", "epochs: 100"))
    beat = ["--heartbeat", "1", "--grace", "2"]  # (a rerun's wait for an unnamed trial: short)
    proc = _tune(tmp_path, url, study_name, space, 30, "--search-only", "--workers", "2", *beat)
    workers: set[int] = set()
    try:
        def both_searching() -> bool:
            """Both workers started, and one of them is running a trial it has named."""
            workers.update(_spawned_workers(proc.pid))
            return len(workers) == 2 and _study_has_trials(storage, study_name) and any(
                t.state == TrialState.RUNNING and "worker" in t.user_attrs
                for t in _trials(storage, study_name))

        _wait_for(both_searching, 90, "both workers searching", [proc])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        killed_at = time.monotonic()
        while not all(_gone(pid) for pid in workers) and time.monotonic() - killed_at < 20:
            time.sleep(0.05)
        assert all(_gone(pid) for pid in workers), \
            f"workers still running 20 s after their parent was killed: {workers}"
    finally:
        for pid in workers:  # (without the fix: or they would search on after the test)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        proc.stdout.close()

    trials = _trials(storage, study_name)
    left = [t.number for t in trials if t.state == TrialState.RUNNING]
    finished = [t.state for t in trials].count(TrialState.COMPLETE)
    assert left and len(trials) < 30  # they had stopped mid-study, trials in hand
    # the next run fails and re-queues the abandoned trials at once (their workers are gone)
    _finish(_tune(tmp_path, url, study_name, space, finished + 1, "--search-only", *beat))
    trials = _trials(storage, study_name)
    assert all(trials[n].state == TrialState.FAIL for n in left), trials
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    assert set(left) <= retried
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == finished + 1 and TrialState.RUNNING not in states
