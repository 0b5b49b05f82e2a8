"""SIGKILL tuning workers mid-trial: every finished trial is kept and the study completes.

Round 1 runs ``mlplab tune --workers 2`` and kills both worker processes, one after the other,
each in the middle of a trial, and then every worker that the command starts in their place,
until it gives up (``MAX_RESTARTS`` rounds of two); round 2 runs a single in-process worker and
kills it mid-trial; round 3 runs to the target. Before every kill the finished trials are
recorded, and at the end each must still be in the study unchanged (state, value, parameters,
per-epoch values). The study is read back with Optuna's own API, not mlplab's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
from faultlib import ENV, mlplab_cmd
from optuna.trial import TrialState

from mlplab.tuning.workers import MAX_RESTARTS

# trials of about a second on digits: long enough to be killed in the middle
SPACE = """\
hidden_size: [16, 32]
lr: {type: float, low: 1e-2, high: 0.2, log: true}
epochs: 16
batch_size: 32
"""
# enough trials that a surviving worker cannot finish the study before the next kill, in all
# the rounds of round 1
TARGET = 20
BEAT = ["--heartbeat", "1", "--grace", "2"]


def _tune(tmp_path: Path, *extra: str) -> subprocess.Popen:
    cmd = mlplab_cmd("tune", "--dataset", "digits", "--trials", str(TARGET), "--search-space",
                     str(tmp_path / "space.yaml"), "--study", "faults", "--storage",
                     f"sqlite:///{tmp_path / 'study.db'}", "--out", str(tmp_path / "out"),
                     "--no-progress", "--search-only", *BEAT, *extra)
    return subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _trials(storage) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="faults", storage=storage).get_trials()
    except KeyError:  # not created yet
        return []


def _finished(storage) -> dict[int, tuple]:
    return {t.number: (t.state, t.value, t.params, t.intermediate_values)
            for t in _trials(storage) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}


def _kill_mid_trial(storage, parent: subprocess.Popen, exclude: set[int],
                    min_finished: int) -> tuple[int, int, dict]:
    """Wait until ``min_finished`` trials have finished and another has finished at least one
    epoch in a worker not in ``exclude``; record the finished trials, then SIGKILL that worker.
    Returns its pid, the number of the trial it was running and the record."""
    end = time.monotonic() + 180
    while time.monotonic() < end:
        assert parent.poll() is None, f"tune exited early:\n{parent.communicate()[0]}"
        # the record is read before the trials are scanned so that the kill follows the sighting
        # of a running trial at once (a trial may still finish in that instant)
        before = _finished(storage)
        trials = _trials(storage)
        if len(before) < min_finished:  # on the record itself: a trial may finish in between
            time.sleep(0.05)
            continue
        for t in trials:
            pid = int(t.user_attrs.get("worker", "x:0").split(":")[-1].split("#")[0])
            if t.state == TrialState.RUNNING and t.intermediate_values and pid not in exclude:
                os.kill(pid, signal.SIGKILL)
                return pid, t.number, before
        time.sleep(0.05)
    raise AssertionError("no trial was seen in progress")


def test_killed_workers_lose_no_finished_trial_and_the_study_completes(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}",
                                         engine_kwargs={"connect_args": {"timeout": 60}})
    records: list[dict] = []
    killed: set[int] = set()
    hit: list[int] = []  # numbers of the trials that were running when their worker was killed

    # round 1: two worker processes, both killed mid-trial, then the two that the command starts
    # in their place each time, until it stops starting them
    parent = _tune(tmp_path, "--workers", "2")
    kills = 2 * (1 + MAX_RESTARTS)
    for n in range(1, kills + 1):
        pid, number, before = _kill_mid_trial(storage, parent, killed | {parent.pid},
                                              min(n, 2))
        killed.add(pid)
        hit.append(number)
        records.append(before)
    output = parent.communicate(timeout=120)[0]
    assert parent.returncode == 1, output
    last = output.strip().splitlines()[-1]
    # all killed, none left to finish their trials: failed, re-queued, and said so
    assert last.startswith("mlplab tune: error: worker process(es) killed: ") and \
        "run the same command again to finish the study" in last and \
        "Traceback" not in output, output
    # every worker named once: the first two and those of each new round
    assert all(f"mlplab-tune-{i} (SIGKILL)" in last for i in range(kills)), last

    # round 2: the search in the command's own process, killed mid-trial
    time.sleep(2.5)  # past the grace period: the dead workers' trials are failed on start
    proc = _tune(tmp_path)
    pid, number, before = _kill_mid_trial(storage, proc, killed, 3)
    assert pid == proc.pid
    hit.append(number)
    proc.communicate(timeout=60)
    records.append(before)

    # round 3: to the target
    time.sleep(2.5)
    proc = _tune(tmp_path)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output

    trials = _trials(storage)
    final = _finished(storage)
    for before in records:  # nothing finished is ever lost or altered
        for number, record in before.items():
            assert final[number] == record, number
    assert sum(1 for t in trials if t.state == TrialState.COMPLETE) == TARGET
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # the killed trials, failed by the heartbeat check (and re-queued, which
    # tests/test_tuning_workers.py checks); a trial that finished in the instant between being
    # seen running and the kill landing is kept as finished instead
    states = {t.number: t.state for t in trials}
    assert all(states[n] == TrialState.FAIL or n in final for n in hit), (hit, states)
    assert sum(states[n] == TrialState.FAIL for n in hit) >= 2
    assert [len(r) >= n for r, n in zip(records[:2] + records[-1:], (1, 2, 3))] == [True] * 3
    print(f"\nkill-tune figures: {len(hit)} workers killed mid-trial with "
          f"{[len(r) for r in records]} "
          f"trials finished; all kept; {len(final)} finished at the end")
