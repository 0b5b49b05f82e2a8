"""SIGKILL a real ``mlplab train`` process at random points, 20 times, resuming after each kill.

The run must end bit-identical to an uninterrupted run with the same seed, and after every kill
each file present in the run folder must be complete (config, checkpoint, model, history,
metrics): atomic writes mean a kill leaves the old file or the new one, never a torn one.

Kill points are drawn from a seeded generator and are of three kinds:

* ``startup``: a random time after launch, cut short by the first new checkpoint (often before
  it, sometimes while the dataset or the checkpoint is being read);
* ``epoch``: after 2-3 new checkpoints plus a random fraction of an epoch (mid-epoch);
* ``write``: the moment a checkpoint's temporary file appears (mid-write).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import warnings
from pathlib import Path

from faultlib import ENV, check_run_folder, mlplab_cmd

from mlplab import io
from mlplab.runs import read_history

KILLS = 20
# small but with every kind of state a resume must restore: Adam slots, batch-norm running
# statistics, dropout generators, the shuffled order and the learning-rate schedule. 80 epochs
# of 59 iterations: a kill lets the run gain at most 4 epochs (1 a startup kill, 2 a write kill),
# 56 in all on any machine, so the last resume has work left.
ARGS = ["--dataset", "digits", "--hidden", "48,24", "--batchnorm", "--dropout", "0.1",
        "--batch-size", "24", "--epochs", "80", "--lr", "0.003", "--seed", "11", "--quiet",
        "--no-plots"]
DEADLINE = 120.0  # seconds any single wait may take before the test gives up


def _launch(run: Path) -> subprocess.Popen:
    """The original command while the folder holds no run yet, else ``--resume``."""
    args = ["train", "--resume", str(run), "--quiet", "--no-plots"] \
        if (run / "config.json").exists() else ["train", *ARGS, "--out", str(run)]
    return subprocess.Popen(mlplab_cmd(*args), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _wait_checkpoints(proc: subprocess.Popen, ckpt: Path, count: int,
                      timeout: float = DEADLINE) -> float:
    """Wait until ``ckpt`` has been rewritten ``count`` times (or the process ends, or
    ``timeout`` passes); return the time between the last two rewrites (an epoch on this
    machine), or 0.05 s."""
    last, seen, stamps = _mtime(ckpt), 0, []
    end = time.monotonic() + timeout
    while seen < count and proc.poll() is None and time.monotonic() < end:
        now = _mtime(ckpt)
        if now is not None and now != last:
            last, seen = now, seen + 1
            stamps.append(time.monotonic())
        time.sleep(0.002)
    return stamps[-1] - stamps[-2] if len(stamps) >= 2 else 0.05


def _wait_temp_file(proc: subprocess.Popen, run: Path) -> None:
    """Return the moment a checkpoint's temporary file exists (a write is in progress)."""
    end = time.monotonic() + DEADLINE
    while proc.poll() is None and time.monotonic() < end:
        with os.scandir(run) as it:
            if any(e.name.startswith(".checkpoint.npz.") for e in it):
                return


def _kill(proc: subprocess.Popen) -> tuple[bool, str]:
    """SIGKILL ``proc``; whether it was still running (the kill interrupted it), and its
    stderr."""
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    return proc.returncode == -signal.SIGKILL, err


def test_twenty_sigkills_then_resume_is_bit_identical(tmp_path):
    reference = tmp_path / "reference"
    ref_proc = subprocess.Popen(mlplab_cmd("train", *ARGS, "--out", str(reference)), env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "killed"
    rng = random.Random(20240611)
    modes = ["startup"] * 4 + ["epoch"] * 10 + ["write"] * 6
    rng.shuffle(modes)
    stats = {"kills": 0, "interrupted_writes": 0, "before_first_checkpoint": 0,
             "no_progress": 0, "temp_files_seen": 0, "checks": 0}
    last_iteration = 0
    for mode in modes:
        proc = _launch(run)
        if mode == "startup":
            # a time, not a count of checkpoints, but never past the first one: on a fast
            # machine 1.5 s is many epochs, and the run must outlast all 20 kills
            _wait_checkpoints(proc, run / "checkpoint.npz", 1, timeout=rng.uniform(0.0, 1.5))
        else:
            epoch = _wait_checkpoints(proc, run / "checkpoint.npz",
                                      rng.randint(2, 3) if mode == "epoch" else 1)
            if mode == "epoch":  # somewhere in the next epoch, on any machine's speed
                time.sleep(rng.uniform(0.0, 1.0) * epoch)
            else:
                _wait_temp_file(proc, run)
        killed, err = _kill(proc)
        assert killed, (f"the run ended by itself after {stats['kills']} kills "
                        f"(exit {proc.returncode}); make it longer:\n{err}")
        stats["kills"] += 1

        found = check_run_folder(run)  # every file present parses: nothing torn
        stats["checks"] += 1
        assert "metrics.json" not in found["files"], "a killed run must not look finished"
        if found["iteration"] is None:
            stats["before_first_checkpoint"] += 1
        else:
            stats["no_progress"] += found["iteration"] == last_iteration
            assert found["iteration"] >= last_iteration, "a checkpoint went back in time"
            last_iteration = found["iteration"]
        if any(n.startswith(".checkpoint.npz.") for n in found["temp_files"]):
            stats["interrupted_writes"] += 1
        stats["temp_files_seen"] += len(found["temp_files"])

    final = subprocess.run(mlplab_cmd("train", "--resume", str(run), "--quiet", "--no-plots"),
                           env=ENV, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    ref_out, ref_err = ref_proc.communicate(timeout=600)
    assert ref_proc.returncode == 0, ref_err

    found = check_run_folder(run)
    assert found["temp_files"] == [], "resume must clear what killed writes left behind"
    assert set(found["files"]) == {"config.json", "checkpoint.npz", "model.npz", "history.csv",
                                   "metrics.json"}
    # bit-identical parameters (and batch-norm statistics), history and metrics
    got, want = io.load_model(run / "model.npz").model, io.load_model(reference / "model.npz").model
    for name, value in want.state_dict().items():
        other = got.state_dict()[name]
        assert other.dtype == value.dtype and other.tobytes() == value.tobytes(), name
    assert read_history(run / "history.csv") == read_history(reference / "history.csv")
    m_got, m_want = (json.loads((d / "metrics.json").read_text()) for d in (run, reference))
    for key in ("status", "train_accuracy", "val_accuracy", "epochs", "iterations",
                "final_loss", "best_val_accuracy", "best_epoch"):
        assert m_got[key] == m_want[key], key
    assert 0 < last_iteration < m_want["iterations"]  # killed mid-run, resumed to the end
    assert stats["kills"] == KILLS
    # whether a kill lands inside a write is the machine's timing (on a disk where fsync is
    # instant a write may end before the signal arrives): report it rather than fail on it; on
    # the development machine 8-11 of the 20 kills interrupted a write
    if stats["interrupted_writes"] == 0:
        warnings.warn(f"no kill interrupted a write on this machine: {stats}", stacklevel=1)
    stats.update(iterations=m_want["iterations"], last_checkpoint_iteration=last_iteration)
    print(f"\nkill-train figures: {json.dumps(stats)}")
