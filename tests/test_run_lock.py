"""One process at a time per run folder (:mod:`mlplab.runs.lock`): a second process resuming a
run that is still training is refused before it touches a file, ``mlplab runs`` says the run is
training, and the lock goes with the process however it ends."""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from mlplab.cli import main
from mlplab.data import load_dataset
from mlplab.runs import load_run, resume_run, train_run
from mlplab.runs.listing import summarize_run
from mlplab.runs.lock import LOCK_FILE, RunInUseError, run_lock, training_process
from mlplab.trainer import Callback

pytest.importorskip("fcntl")  # Windows has no flock: runs are not locked there

TINY = {"dataset": "digits", "hidden": [16], "batch_size": 64}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


class During(Callback):
    """At the end of ``epoch``, look at the run from outside, as another process would."""

    def __init__(self, epoch, out):
        self.epoch, self.out, self.seen = epoch, out, {}

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch != self.epoch:
            return
        leftover = self.out / ".history.csv.x1y2.csv"  # a partial write, as if killed mid-write
        leftover.write_text("")
        with pytest.raises(RunInUseError) as refused:
            resume_run(self.out)
        with pytest.raises(FileNotFoundError) as no_model:
            load_run(self.out)
        with pytest.raises(ValueError) as taken:
            train_run(TINY, epochs=1, out=self.out)
        self.seen = {"holder": training_process(self.out), "record": summarize_run(self.out),
                     "refused": str(refused.value), "leftover kept": leftover.exists(),
                     "epoch seconds": list(trainer.history.epoch_seconds),
                     "no model": str(no_model.value), "taken": str(taken.value)}
        main(["runs", str(self.out.parent)])
        leftover.unlink()


def test_a_run_that_is_training_is_not_resumed_by_another(tmp_path, digits, capsys):
    out = tmp_path / "run"
    during = During(2, out)
    result = train_run(TINY, epochs=4, out=out, data=digits, plots=False, callbacks=[during])
    listed = capsys.readouterr().out.splitlines()[1]
    seen = during.seen
    assert seen["holder"].startswith(f"process {os.getpid()} on {socket.gethostname()}, since ")
    assert seen["refused"].startswith(f"{out} is being trained by another process "
                                      f"({seen['holder']}); wait for it to end")
    assert seen["leftover kept"]  # refused before removing what looked like a killed run's
    # a new run there, evaluate and predict: not "continue it with --resume", which is refused
    assert seen["taken"] == f"{out} already holds a run, which another process is training now " \
                            f"({seen['holder']}); choose another out."
    assert seen["no model"] == f"{out} has no model.npz; it is still being trained " \
                               f"({seen['holder']}); it has one once training ends (mlplab " \
                               "runs shows how far it has got)."
    record = seen["record"]
    assert record["status"] == "training" and (record["epochs"], record["of_epochs"]) == (2, 4)
    assert record["val_accuracy"] == result.history.val_acc[1]
    # the time left: the two epochs to go at the pace of the last (here both) epochs, or of the
    # run's own seconds so far where that is slower: an epoch's seconds time its steps alone,
    # and on small data its evaluation and checkpoint took most of it (3-6 times too little)
    pace = max(sum(seen["epoch seconds"]) / 2, record["seconds"] / 2)
    assert record["seconds_left"] == pytest.approx(2 * pace, rel=1e-12)
    assert record["seconds_left"] >= record["seconds"]
    assert " training " in listed and " 2/4 " in listed and listed.endswith(" left")
    # over: the lock and its file are gone, and the run is listed as what it is
    assert training_process(out) is None and not (out / LOCK_FILE).exists()
    assert summarize_run(out)["status"] == "completed"
    assert summarize_run(out)["seconds_left"] is None


def _hold_lock(folder):
    """Another process holding ``folder``'s lock, as one training the run there does."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from mlplab.runs.lock import run_lock
            with run_lock({str(folder)!r}):
                print("locked", flush=True)
                time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_the_lock_goes_with_its_process_even_when_killed(tmp_path, digits, capsys):
    """Another process holds the run (here only its lock, to be quick): resuming is refused,
    from Python and from the command line, and the run is listed as training. Killed with
    SIGKILL, it leaves its lock file but not its lock: the run then resumes to its end."""
    out = tmp_path / "run"

    class Crash(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                raise MemoryError("as if killed")

    with pytest.raises(MemoryError):
        train_run(TINY, epochs=4, out=out, data=digits, plots=False, callbacks=[Crash()])
    holder = _hold_lock(out)
    try:
        assert training_process(out).startswith(f"process {holder.pid} on ")
        with pytest.raises(RunInUseError, match=f"process {holder.pid} on "):
            resume_run(out)
        assert main(["train", "--resume", str(out)]) == 1
        assert f"{out} is being trained by another process (process {holder.pid} on " in \
            capsys.readouterr().err
        record = summarize_run(out)
        assert (record["status"], record["epochs"]) == ("training", 2)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert (out / LOCK_FILE).exists() and training_process(out) is None
    assert summarize_run(out)["status"] == "unfinished"
    assert summarize_run(out)["seconds_left"] is None  # killed: no time left to tell
    result = resume_run(out, data=digits, plots=False)
    assert result.history.val_acc[-1] == summarize_run(out)["val_accuracy"]
    assert len(result.history.val_acc) == 4 and not (out / LOCK_FILE).exists()


def test_run_lock_is_exclusive_and_leaves_nothing(tmp_path):
    with run_lock(tmp_path):
        assert training_process(tmp_path).startswith(f"process {os.getpid()} ")
        with pytest.raises(RunInUseError, match=r"; wait for it to end, or stop it"), \
                run_lock(tmp_path):
            pass
        # a new run that lost the folder to another one: not "resume the run then"
        with pytest.raises(RunInUseError, match=r"\); choose another out\.$"), \
                run_lock(tmp_path, new=True):
            pass
    assert training_process(tmp_path) is None and list(tmp_path.iterdir()) == []
    with run_lock(tmp_path):  # free again
        pass


def test_a_file_system_without_flock_trains_unlocked(tmp_path, digits, monkeypatch):
    """Some network and FUSE file systems refuse flock (ENOLCK): the run must train all the
    same, as it did before runs were locked, and leave no lock file."""
    import errno

    from mlplab.runs import lock

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_flock)
    result = train_run(TINY, epochs=1, out=tmp_path / "run", data=digits, plots=False)
    assert result.metrics["status"] == "completed"
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_folder_it_may_not_write_to_is_named(tmp_path, monkeypatch):
    """(Simulated: the tests may run as root, whom permissions do not stop.)"""
    from mlplab.runs import lock

    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(LOCK_FILE):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(lock.os, "open", refuse)
    with pytest.raises(ValueError, match=f"cannot write in the run folder {tmp_path} "
                                         r"\(Permission denied\); a run is trained only"):
        with run_lock(tmp_path):
            pass


def test_a_pytorch_run_still_training_is_not_replaced(tmp_path, digits):
    """A PyTorch run that stopped early leaves a lone config.json, which a new run into the same
    folder may replace (they do not resume); one still training looks the same, and was replaced
    too, the two runs then writing into one folder. Now the second is refused while the first
    holds the folder, and goes ahead once it has ended."""
    pytest.importorskip("torch")
    from mlplab.torch_mlp import train_run as torch_train_run

    out = tmp_path / "t"
    out.mkdir()
    (out / "config.json").write_text('{"framework": "pytorch", "dataset": "digits", '
                                     '"hidden": [8]}')
    holder = _hold_lock(out)
    try:
        assert summarize_run(out)["status"] == "training"
        with pytest.raises(ValueError, match=f"{out} already holds a run, which another process "
                                             f"is training now \\(process {holder.pid} on "):
            torch_train_run(digits, out=out, epochs=1, plots=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    result = torch_train_run(digits, out=out, epochs=1, plots=False)
    assert summarize_run(out)["status"] == "completed" and result.metrics["epochs"] == 1
    assert not (out / LOCK_FILE).exists()


def test_a_depth_study_into_a_folder_another_one_is_writing_is_refused(tmp_path, digits):
    """mlplab torch depth writes depth.json only at its end: a second study into the folder of
    one still running passed every check and the two wrote into one folder."""
    pytest.importorskip("torch")
    from mlplab.torch_mlp import depth_run

    out = tmp_path / "depth"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        with pytest.raises(ValueError, match="already holds a depth study, which another process "
                                             f"is training now \\(process {holder.pid} on "):
            depth_run(digits, out=out, layers=[2], epochs=1)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    result = depth_run(digits, out=out, layers=[2], epochs=1)
    assert (out / "depth.json").is_file() and [r.depth for r in result.results] == [2]
    assert not (out / LOCK_FILE).exists()


def test_a_lock_file_that_is_a_link_or_a_fifo_is_not_opened(tmp_path):
    """A run folder from elsewhere (or a shared one) may hold a ``.lock`` that is a symbolic
    link: the lock followed it and truncated and overwrote the file it named. A FIFO made the
    test of ``mlplab runs`` wait for a writer for ever."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / LOCK_FILE).symlink_to(victim)
    with pytest.raises(ValueError, match="is not a lock file as mlplab makes it"):
        with run_lock(linked):
            pass
    assert victim.read_text() == "precious\n" and (linked / LOCK_FILE).is_symlink()
    assert training_process(linked) is None
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / LOCK_FILE)
    assert training_process(fifo) is None  # at once, not blocked
    with pytest.raises(ValueError, match="is not a lock file as mlplab makes it"):
        with run_lock(fifo):
            pass


def test_a_diverged_run_removes_its_config_before_it_lets_the_folder_go(tmp_path, digits,
                                                                          monkeypatch):
    """A run that diverges before its first checkpoint removes its config.json: while it still
    holds the lock, or a resume_run let in by the lock's release would start the run again and
    have its config.json removed under it."""
    import contextlib
    import warnings

    from mlplab.runs import training
    from mlplab.trainer import TrainingDivergedError

    real, seen = training.run_lock, []

    @contextlib.contextmanager
    def watched(run_dir, new=False):
        with real(run_dir, new):
            try:
                yield
            finally:
                seen.append((run_dir / "config.json").exists())

    monkeypatch.setattr(training, "run_lock", watched)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TrainingDivergedError):
            train_run(TINY, epochs=1, out=tmp_path / "run", data=digits, optimizer="sgd",
                      lr=1e6, plots=False)
    assert seen == [False] and not (tmp_path / "run").exists()


def test_a_lock_file_it_may_only_read_still_locks(tmp_path, monkeypatch):
    """A killed run of another user in a shared folder leaves a .lock this user may not write
    (simulated: the tests may run as root): flock works on a read-only file, so the run is
    locked all the same, where "cannot write in the run folder" refused a writable folder."""
    from mlplab.runs import lock

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / LOCK_FILE).write_text(f"process {dead} on {socket.gethostname()}, since "
                                      "2026-01-01 00:00:00\n")
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(LOCK_FILE) and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(lock.os, "open", read_only)
    with run_lock(tmp_path):
        # its own line could not be written, and the dead process's is not repeated
        assert training_process(tmp_path) == "another process"
        with pytest.raises(RunInUseError, match=r"by another process; wait for it"), \
                run_lock(tmp_path):
            pass
    assert training_process(tmp_path) is None and not (tmp_path / LOCK_FILE).exists()


def test_a_read_only_folder_without_a_lock_file_says_permission_denied(tmp_path, monkeypatch):
    """In a read-only folder the lock file cannot be made, and the read-only open tried next
    (for another user's leftover file) finds none: the refusal said "No such file or
    directory", the second open's error, not why the folder was refused. (Simulated as the
    system answers: the tests may run as root.)"""
    from mlplab.runs import lock

    real_open = os.open

    def read_only_folder(path, flags, *args):
        if str(path).endswith(LOCK_FILE):
            if flags & os.O_CREAT:
                raise PermissionError(13, "Permission denied", str(path))
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(lock.os, "open", read_only_folder)
    with pytest.raises(ValueError, match=f"cannot write in the run folder {tmp_path} "
                                         r"\(Permission denied\); a run is trained only"):
        with run_lock(tmp_path):
            pass


def test_a_read_only_folder_with_a_leftover_lock_file_is_refused_before_training(
        tmp_path, digits, monkeypatch):
    """A killed run's .lock in a folder that is read-only now opens read-only and locks, so the
    resume was let in, trained its epochs and failed on its first checkpoint's temporary file.
    It is refused before it loads or trains anything."""
    class CtrlC(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "run"
    stopped = train_run(TINY, epochs=3, out=out, data=digits, plots=False, callbacks=[CtrlC()])
    assert stopped.interrupted
    (out / LOCK_FILE).write_text("")  # left by a killed process
    before = sorted(p.name for p in out.iterdir())
    real_open, access = os.open, os.access

    def read_only(path, flags, *args):  # as the system answers in a read-only folder
        if str(path).endswith(LOCK_FILE) and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(os, "access",
                        lambda p, mode, **kw: os.path.abspath(p) != str(out)
                        and access(p, mode, **kw))
    loads = []
    with pytest.raises(ValueError, match=f"cannot write in the run folder {out} "
                                         r"\(permission denied\); a run is trained only"):
        resume_run(out, data=lambda: loads.append(1) or digits, plots=False)
    assert loads == [] and sorted(p.name for p in out.iterdir()) == before


def test_a_new_run_holds_its_folder_while_its_data_loads(tmp_path, digits):
    """The lock was taken only once the data had loaded and the preprocessing was fitted:
    meanwhile the folder stood empty, and --resume said nothing was saved, evaluate that there
    was no model, and a second run into it went ahead until one of them failed."""
    out = tmp_path / "run"
    seen = {}

    def load():
        seen["holder"] = training_process(out)
        with pytest.raises(RunInUseError) as refused:
            resume_run(out)
        seen["refused"] = str(refused.value)
        with pytest.raises(ValueError) as taken:
            train_run(TINY, epochs=1, out=out, data=digits, plots=False)
        seen["taken"] = str(taken.value)
        with pytest.raises(FileNotFoundError) as no_model:
            load_run(out)
        seen["no model"] = str(no_model.value)
        return digits

    result = train_run(TINY, epochs=1, out=out, data=load, plots=False)
    assert result.metrics["status"] == "completed"
    assert seen["holder"].startswith(f"process {os.getpid()} on ")
    # (not "stop it and resume it then": stopped now, it would have nothing to resume)
    assert seen["refused"] == f"{out} holds a new run that another process is starting " \
                              f"({seen['holder']}) and has not saved yet; wait for it to end " \
                              "(it saves a checkpoint after each epoch, from which a stopped run " \
                              "resumes)."
    assert seen["taken"].startswith(f"{out} is being trained by another process") and \
        "choose another out" in seen["taken"]
    # (not "mlplab runs shows how far it has got": it lists no run there yet)
    assert seen["no model"] == f"{out} has no model.npz; another process is starting a run " \
                               f"in it ({seen['holder']}), still loading its data; it has one " \
                               "once training ends."


def test_a_new_run_whose_data_fails_leaves_no_folder(tmp_path):
    """The folder is made before the data loads (its lock is held meanwhile): a data error or
    a Ctrl-C then removes it again, and a folder the user made is kept, empty."""
    from mlplab.data import DatasetError

    def bad():
        raise DatasetError("no such data")

    def stop():
        raise KeyboardInterrupt

    for failing, error in ((bad, DatasetError), (stop, KeyboardInterrupt)):
        with pytest.raises(error):
            train_run(TINY, epochs=1, out=tmp_path / "new" / "run", data=failing, plots=False)
        assert not (tmp_path / "new").exists()  # nor the folder made above it
    (tmp_path / "kept").mkdir()  # a folder that was there before stays, even empty
    with pytest.raises(DatasetError):
        train_run(TINY, epochs=1, out=tmp_path / "kept" / "a" / "run", data=bad, plots=False)
    assert (tmp_path / "kept").is_dir() and list((tmp_path / "kept").iterdir()) == []
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(DatasetError):
        train_run(TINY, epochs=1, out=mine, data=bad, plots=False)
    assert mine.is_dir() and list(mine.iterdir()) == []


def test_a_run_ending_while_it_is_listed_is_not_called_unfinished(tmp_path, digits,
                                                                    monkeypatch):
    """``mlplab runs`` read metrics.json, then tested the lock: a run that wrote its metrics
    and ended in between was listed "unfinished" (read before it was written, tested after the
    lock had gone)."""
    from mlplab.runs import listing

    out = tmp_path / "run"
    train_run(TINY, epochs=1, out=out, data=digits, plots=False)
    metrics = (out / "metrics.json").read_bytes()
    (out / "metrics.json").unlink()  # as while the run trained
    holder = _hold_lock(out)
    real = listing.training_process

    def run_ends_now(run):
        (out / "metrics.json").write_bytes(metrics)
        holder.kill()
        holder.wait()
        return real(run)

    monkeypatch.setattr(listing, "training_process", run_ends_now)
    assert summarize_run(out)["status"] == "completed"
