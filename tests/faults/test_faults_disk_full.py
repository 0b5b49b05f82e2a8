"""A full disk while a run writes its files: a clear one-line error, the previous checkpoint
intact, and a resume (once there is space) that ends exactly where an uninterrupted run ends.

Two ways to fill the disk: a mocked ``ENOSPC`` from every file the atomic writer opens (always
runs), and a real 100-odd KiB tmpfs mounted in a private user and mount namespace (``unshare``;
skipped where the kernel does not allow it).
"""

from __future__ import annotations

import errno
import io as stdio
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from faultlib import ENV, check_run_folder, mlplab_cmd
from threadpoolctl import threadpool_limits

from mlplab import io
from mlplab.cli import main
from mlplab.runs import load_checkpoint, read_history, resume_run, train_run
from mlplab.trainer import Callback

OPTIONS = dict(dataset="digits", hidden=[32], batchnorm=True, dropout=0.1, batch_size=64,
               epochs=6, lr=0.003, seed=5)
PER_EPOCH = 1437 // 64  # digits: 1,437 training images after the default splits


class FullDisk:
    """Stands in for ``io.open``: once ``fill(prefix)`` is armed, the next file opened for writing
    whose name starts with ``prefix`` gets ``free`` bytes, then ``ENOSPC`` (a partial write, as on
    a real disk)."""

    def __init__(self) -> None:
        self.real_open = stdio.open
        self.prefix: str | None = None
        self.free = 0
        self.failures = 0

    def install(self, monkeypatch) -> None:
        """Stand in for ``io.open``, which ``Path.open`` (so ``write_bytes``) calls from Python
        3.11 on; Python 3.10's pathlib calls the ``io.open`` it bound when it was imported."""
        monkeypatch.setattr(stdio, "open", self.open)
        if sys.version_info < (3, 11):
            monkeypatch.setattr(pathlib._NormalAccessor, "open", staticmethod(self.open))

    def fill(self, prefix: str, free: int = 200) -> None:
        self.prefix, self.free = prefix, free

    def open(self, file, mode="r", *args, **kwargs):
        f = self.real_open(file, mode, *args, **kwargs)
        name = os.path.basename(os.fspath(file)) if isinstance(file, str | os.PathLike) else ""
        if self.prefix and any(c in mode for c in "wax+") and name.startswith(self.prefix):
            self.prefix = None
            return _Limited(f, self)
        return f


class _Limited:
    def __init__(self, f, disk: FullDisk) -> None:
        self._f, self._disk = f, disk

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self._disk.free:
            self._f.write(data[:self._disk.free])
            self._disk.free = 0
            self._disk.failures += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.free -= len(data)
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


class _FillAt(Callback):
    """Fill the disk at the end of epoch ``epoch``, after that epoch's checkpoint was written."""

    def __init__(self, disk: FullDisk, epoch: int, prefix: str, run: Path) -> None:
        self.disk, self.epoch, self.prefix, self.run = disk, epoch, prefix, run
        self.snapshot: bytes | None = None

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        if epoch == self.epoch:
            self.snapshot = (self.run / "checkpoint.npz").read_bytes()
            self.disk.fill(self.prefix)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    with threadpool_limits(1):
        return train_run(out=tmp_path_factory.mktemp("ref") / "run", plots=False, **OPTIONS)


def _same_result(run: Path, reference) -> None:
    got = io.load_model(run / "model.npz").model.state_dict()
    for name, value in reference.model.state_dict().items():
        assert got[name].tobytes() == value.tobytes(), name
    assert read_history(run / "history.csv") == read_history(reference.out / "history.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("status", "val_accuracy", "train_accuracy", "iterations", "final_loss"):
        assert metrics[key] == reference.metrics[key], key


@pytest.mark.parametrize("target,epoch", [("checkpoint.npz", 3), ("model.npz", 6),
                                          ("history.csv", 6), ("metrics.json", 6)])
def test_enospc_keeps_the_previous_file_and_resume_finishes_the_run(
        target, epoch, tmp_path, monkeypatch, reference):
    disk = FullDisk()
    disk.install(monkeypatch)
    run = tmp_path / "run"
    fill = _FillAt(disk, epoch, f".{target}.", run)
    with threadpool_limits(1), pytest.raises(OSError) as info:
        train_run(out=run, plots=False, callbacks=[fill], **OPTIONS)
    assert disk.failures >= 1  # the write, and perhaps the zip's closing directory
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert "no space left on device" in message and str(run / target) in message
    assert "free some disk space" in message and "\n" not in message

    found = check_run_folder(run)  # nothing torn, no temporary file left behind
    assert found["temp_files"] == []
    if target == "checkpoint.npz":  # the previous checkpoint is byte for byte what it was
        assert (run / "checkpoint.npz").read_bytes() == fill.snapshot
        assert load_checkpoint(run / "checkpoint.npz")[1]["iteration"] == epoch * PER_EPOCH
    else:  # the last checkpoint was written (on_train_end) before the model file
        assert target not in found["files"] and "metrics.json" not in found["files"]
        assert found["iteration"] == 6 * PER_EPOCH

    with threadpool_limits(1):  # space again: the resume ends where the uninterrupted run did
        resume_run(run, plots=False)
    _same_result(run, reference)


def test_cli_reports_a_full_disk_in_one_line(tmp_path, monkeypatch, capsys):
    disk = FullDisk()
    disk.install(monkeypatch)
    disk.fill(".config.json.", free=10)
    run = tmp_path / "run"
    code = main(["train", "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--quiet",
                 "--no-plots", "--out", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("mlplab train: error: no space left on device while writing "
                              f"{run / 'config.json'}")
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("code, words", [(errno.EDQUOT, "disk quota exceeded"),
                                         (errno.EFBIG, "file too large"),
                                         (errno.ENOSPC, "no space left on device")])
def test_a_quota_or_a_file_size_limit_is_a_full_disk_too(tmp_path, monkeypatch, code, words):
    """Over a quota (which NFS reports only at fsync) or the file size limit (``ulimit -f``), a
    write fails as on a full disk: a DiskFullError that says which, the previous file intact,
    no temporary file left."""
    target = tmp_path / "metrics.json"
    io.write_json(target, {"a": 1})

    def refused(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(io.os, "fsync", refused)
    with pytest.raises(io.DiskFullError, match=f"^{words} while writing {re.escape(str(target))}"):
        io.write_json(target, {"a": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# --------------------------------------------------------------------------- a real full disk
def _can_mount_tmpfs(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    res = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                          f"mount -t tmpfs -o size=64k tmpfs {probe}"], capture_output=True)
    return res.returncode == 0


CLI_ARGS = ["--dataset", "digits", "--hidden", "32", "--batch-size", "64", "--lr", "0.003",
            "--seed", "5", "--quiet", "--no-plots"]


def test_real_full_tmpfs(tmp_path):
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare not permitted)")
    epochs = "60"
    ref = tmp_path / "ref"  # in this process, one BLAS thread: the same arithmetic as the CLI's
    with threadpool_limits(1):
        train_run(dataset="digits", hidden=[32], batch_size=64, lr=0.003, seed=5, epochs=60,
                  out=ref, plots=False)
    # the checkpoint grows with the loss history; a disk of 1.5 final checkpoints fills midway
    # (an atomic write needs room for the old checkpoint and the new one at once)
    size = (ref / "checkpoint.npz").stat().st_size * 3 // 2 + 8192
    disk, copy = tmp_path / "disk", tmp_path / "copy"
    disk.mkdir()
    cmd = " ".join(mlplab_cmd("train", *CLI_ARGS, "--epochs", epochs, "--out", str(disk / "run")))
    script = (f"mount -t tmpfs -o size={size} tmpfs {disk} && "
              f"{{ {cmd} > {tmp_path / 'out'} 2> {tmp_path / 'err'}; echo $? > {tmp_path / 'rc'};"
              f" cp -a {disk / 'run'} {copy}; }}")
    subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                   env=ENV, check=True, timeout=300)
    err = (tmp_path / "err").read_text().strip().splitlines()
    assert (tmp_path / "rc").read_text().strip() == "1", err
    assert err[-1].startswith("mlplab train: error: no space left on device while writing "
                              f"{disk / 'run' / 'checkpoint.npz'}"), err
    assert not any("Traceback" in line for line in err)
    found = check_run_folder(copy)
    assert found["temp_files"] == [] and "model.npz" not in found["files"]
    assert 0 < found["iteration"] < 60 * PER_EPOCH  # the checkpoint before the full disk

    res = subprocess.run(mlplab_cmd("train", "--resume", str(copy), "--quiet", "--no-plots"),
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    a, b = (io.load_model(d / "model.npz").model.state_dict() for d in (copy, ref))
    assert all(a[k].tobytes() == b[k].tobytes() for k in b)
    assert read_history(copy / "history.csv") == read_history(ref / "history.csv")


def test_full_disk_while_writing_a_figure_and_a_folder_cache(tmp_path, monkeypatch, capsys):
    """Files written through the data package's own atomic writer (figures of ``data show``)
    fail the same way; the decoded-image cache is optional, so a full disk there only warns."""
    import builtins

    disk = FullDisk()
    disk.install(monkeypatch)
    monkeypatch.setattr(builtins, "open", disk.open)  # how matplotlib opens files
    out = tmp_path / "grid.png"
    disk.fill(".grid.png.", free=100)
    code = main(["data", "show", "digits", "--out", str(out), "--per-class", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not out.exists() and disk.failures >= 1
    assert err[-1].startswith(
        f"mlplab data show: error: no space left on device while writing {out}")
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left

    from PIL import Image

    from mlplab.data import load_dataset

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (4, 4), 50 * i).save(tmp_path / "imgs" / cls / f"{i}.png")
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))
    disk.fill(".imgs-", free=100)  # the cache file's temporary name: .imgs-<key>.npz.<random>
    with pytest.warns(UserWarning, match="could not write the image cache"):
        ds = load_dataset(f"folder:{tmp_path / 'imgs'}", val_size=0, test_size=0)
    assert len(ds.y_train) == 6 and disk.failures >= 2


@pytest.mark.parametrize("where", ["mkstemp", "mkdir"])
def test_a_disk_that_refuses_the_temporary_file_or_folder_is_a_full_disk(tmp_path, monkeypatch,
                                                                        where):
    """A disk out of inodes refuses to create the temporary file (or a new folder) with ENOSPC,
    before a byte is written: the same one-line DiskFullError as a write that fails, the
    previous file intact."""
    target = tmp_path / "sub" / "metrics.json"
    if where == "mkstemp":
        io.write_json(target, {"a": 1})

    def refused(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "mkstemp":
        monkeypatch.setattr(io.tempfile, "mkstemp", refused)
    else:
        monkeypatch.setattr(io.Path, "mkdir", refused)
    with pytest.raises(io.DiskFullError,
                       match=f"^no space left on device while writing {re.escape(str(target))}"):
        io.write_json(target, {"a": 2})
    monkeypatch.undo()
    if where == "mkstemp":
        assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.glob(".*")] == [] if target.parent.exists() else True


def test_a_file_size_limit_says_to_raise_it_not_to_free_disk_space(tmp_path):
    """Under ``ulimit -f`` (a shared machine's, a CI runner's) a checkpoint larger than the limit
    failed with "free some disk space", on a disk with room: the message names the limit and how
    to lift it, in one line, and the run folder with nothing saved is not left behind."""
    import resource

    limit = 100 * 1024  # bytes: the checkpoint of 256 hidden units on digits is ~0.5 MB

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(
            resource.RLIMIT_FSIZE)[1]))

    run = tmp_path / "run"
    done = subprocess.run(mlplab_cmd("train", "--dataset", "digits", "--hidden", "256",
                                     "--epochs", "1", "--no-plots", "--quiet", "--out", str(run)),
                          capture_output=True, text=True, env=ENV, timeout=300,
                          preexec_fn=limited)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mlplab train: error: file too large while writing {run}"), last
    assert "ulimit -f, now 100 blocks" in last and "free some disk space" not in last, last
    assert "Traceback" not in done.stderr
    assert not run.exists()
