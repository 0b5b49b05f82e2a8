"""Run folders, atomic files, model files, presets and plots."""

import csv
import errno
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from repo_path import pythonpath
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from mlplab import MLP, TwoLayerNet, io, plots
from mlplab.cli import main
from mlplab.data import DatasetNotFoundError, load_dataset, make_preprocessing
from mlplab.presets import PRESETS, get_preset, register_preset
from mlplab.runs import (
    RunConfig,
    build_config,
    evaluate_run,
    load_checkpoint,
    predict_images,
    read_history,
    resume_run,
    run_config,
    train_run,
)
from mlplab.trainer import Callback, TrainingDivergedError

NO_DATASET = 'it has no "dataset" key, which every config.json that mlplab writes has'
FAST = {"dataset": "digits", "hidden": [32], "epochs": 4, "batch_size": 64}


def _stopped_after_two_epochs(run: Path, digits) -> Path:
    """A FAST run in ``run`` stopped with Ctrl-C at the end of its second epoch."""
    class CtrlC(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    train_run(FAST, out=run, data=digits, plots=False, callbacks=[CtrlC()])
    return run


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


# --------------------------------------------------------------------------- atomic files
def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "f.json"
    io.write_json(target, {"a": np.float32(1.5), "b": np.arange(3)})
    io.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]
    # the permissions a plain open() would give, not mkstemp's private 0600
    assert target.stat().st_mode & 0o777 == 0o666 & ~io._UMASK


def test_an_atomic_write_reaches_the_disk_before_its_rename(tmp_path, monkeypatch):
    """The new file's data is fsync-ed before it is renamed over the old one, and the folder
    after it, so that a power cut leaves the old file or the complete new one: a rename that
    reached the disk before the data left an empty or torn checkpoint in place of the good one.
    Each fsync is told apart by the inode it was given (a rename keeps the file's inode)."""
    target = tmp_path / "f.json"
    io.write_json(target, {"a": 1})
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(io.os, "fsync",
                        lambda fd: (events.append(("fsync", os.fstat(fd).st_ino)),
                                    real_fsync(fd))[1])
    monkeypatch.setattr(io.os, "replace",
                        lambda src, dst: (events.append(("replace", Path(dst).name)),
                                          real_replace(src, dst))[1])
    io.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert events == [("fsync", target.stat().st_ino), ("replace", "f.json"),
                      ("fsync", tmp_path.stat().st_ino)]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.txt"
    io.write_text(target, "old")
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


@pytest.mark.parametrize("code,why", [(errno.EROFS, "read-only file system"),
                                      (errno.EACCES, "permission denied"),
                                      (errno.EPERM, "permission denied")])
def test_a_refused_write_names_the_file_and_keeps_the_old_one(code, why, tmp_path, monkeypatch):
    """A folder made read-only (a remount) or unwritable while a command runs: the error named
    the hidden temporary file (runs/x/.checkpoint.npz.ca20nccp.npz: Read-only file system) and
    not the file written, nor that the previous one is kept."""
    target = tmp_path / "checkpoint.npz"
    io.write_npz(target, {"a": np.arange(3)})

    def refused(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / ".checkpoint.npz.x1y2z3.npz"))

    monkeypatch.setattr(io.tempfile, "mkstemp", refused)
    with pytest.raises(io.WriteRefusedError) as caught:
        io.write_npz(target, {"a": np.arange(4)})
    assert str(caught.value) == (f"cannot write {target} ({why}); make {tmp_path} writable and "
                                 "run the command again - the previous checkpoint.npz, if any, "
                                 "is intact")
    assert caught.value.errno == code and caught.value.filename == str(target)
    # the type the system's error had: a caller's `except PermissionError` still catches a
    # refused permission (it missed it once the error named the file); EROFS is no such one
    assert isinstance(caught.value, PermissionError) == (code != errno.EROFS)
    # on Windows a file that another program holds open is refused alike: said too
    monkeypatch.setattr(io, "_WINDOWS", True)
    with pytest.raises(io.WriteRefusedError) as caught:
        io.write_npz(target, {"a": np.arange(4)})
    held = " (or close the program that holds checkpoint.npz open)" \
        if code != errno.EROFS else ""
    assert f"make {tmp_path} writable{held} and run the command again" in str(caught.value)
    monkeypatch.undo()
    assert io.read_npz(target)["a"].tolist() == [0, 1, 2]
    # refused at the rename (a folder whose write permission went after the file was made)
    monkeypatch.setattr(io.os, "replace", refused)
    with pytest.raises(io.WriteRefusedError, match=r"^cannot write .*checkpoint\.npz \("):
        io.write_npz(target, {"a": np.arange(4)})
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]
    # a folder refused for good (made immutable, its write permission gone): the temporary file
    # cannot be removed either, and that unlink's error replaced this one, naming the hidden file
    real_unlink = Path.unlink

    def stuck(self, missing_ok=False):
        if self.name.startswith(".checkpoint.npz."):
            raise OSError(code, os.strerror(code), str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", stuck)
    with pytest.raises(io.WriteRefusedError, match=r"^cannot write .*checkpoint\.npz \("):
        io.write_npz(target, {"a": np.arange(4)})
    monkeypatch.undo()
    assert io.read_npz(target)["a"].tolist() == [0, 1, 2]
    # left for remove_partial_writes, which the next run of the command does
    from mlplab.runs.files import remove_partial_writes

    assert len(remove_partial_writes(tmp_path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_a_folder_removed_in_the_middle_of_a_write_is_named(tmp_path):
    """A run folder removed while a checkpoint was being written (a fast run writes one every
    few milliseconds) ended the command with the hidden temporary file's name,
    "runs/x/.checkpoint.npz.fndtubtv.npz: No such file or directory"."""
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(FileNotFoundError) as caught:
        with io.atomic_path(folder / "checkpoint.npz") as tmp:
            shutil.rmtree(folder)
            tmp.write_bytes(b"x")
    assert str(caught.value) == (f"{folder} was removed or moved while checkpoint.npz was "
                                 "written there; nothing was written")
    assert not folder.exists()
    # a missing file of the writer's own, in a folder still there, is left as it was
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="No such file or directory"):
        with io.atomic_path(folder / "f.txt"):
            open(tmp_path / "missing" / "x", "rb")


@pytest.mark.parametrize("hard_links", [True, False])
def test_an_exclusive_write_never_replaces_a_file(tmp_path, monkeypatch, hard_links):
    if not hard_links:  # a file system without them: checked, then renamed
        def no_link(src, dst):
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(io.os, "link", no_link)
    target = tmp_path / "config.json"
    io.write_json(target, {"first": 1}, exclusive=True)
    with pytest.raises(FileExistsError):
        io.write_json(target, {"second": 2}, exclusive=True)
    assert json.loads(target.read_text()) == {"first": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left
    assert target.stat().st_mode & 0o777 == 0o666 & ~io._UMASK


def test_two_runs_started_at_once_with_the_same_out(tmp_path, digits, monkeypatch):
    """Two ``mlplab train --out X`` started together both found X free, and both trained into
    it (exit 0 twice): config.json from one run, model.npz and metrics.json from the other.
    config.json is now created only if absent; the run that comes second stops at once."""
    import mlplab.runs.training as training

    out = tmp_path / "same"
    other = build_config(**{**FAST, "hidden": [16]}).to_dict()
    real = training._fresh

    def meanwhile(*args, **kwargs):  # the other process writes its config.json now
        io.write_json(out / "config.json", other)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "_fresh", meanwhile)
    with pytest.raises(ValueError, match=re.escape(
            f"{out} already holds a run, which another process has just started; choose "
            "another out.")):
        train_run(FAST, out=out, data=digits)
    assert json.loads((out / "config.json").read_text()) == other
    assert [p.name for p in out.iterdir()] == ["config.json"]


def test_csv_and_npz_writers(tmp_path):
    io.write_csv(tmp_path / "h.csv", ["a", "b"], [[1, 2.5], [3, ""]])
    assert list(csv.reader(open(tmp_path / "h.csv"))) == [["a", "b"], ["1", "2.5"], ["3", ""]]
    io.write_npz(tmp_path / "x.npz", {"x": np.arange(4)})
    np.testing.assert_array_equal(io.read_npz(tmp_path / "x.npz")["x"], np.arange(4))
    with pytest.raises(ValueError, match="object array"):
        io.write_npz(tmp_path / "y.npz", {"x": np.array([{}, 1], dtype=object)})


# --------------------------------------------------------------------------- model files
def test_model_file_round_trip_without_pickle(tmp_path, digits, rng):
    model = MLP(64, [16, 8], 10, batchnorm=True, dropout=0.1, seed=3)
    model.batchnorms[1].running_mean[:] = rng.randn(16)  # statistics must survive too
    pre = make_preprocessing("standardize").fit(digits.X_train)
    path = io.save_model(tmp_path / "m.npz", model, pre, {"classes": digits.classes})

    with np.load(path, allow_pickle=False) as raw:  # a plain, pickle-free archive
        meta = json.loads(str(raw["__meta__"]))
        assert raw["__meta__"].shape == () and raw["__meta__"].dtype.kind == "U"
        assert set(raw.files) >= {"param/W1", "param/gamma1", "param/running_mean1"}
    assert meta["config"] == model.config and meta["extra"]["classes"] == digits.classes

    loaded = io.load_model(path)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.model.state_dict()[k], v)
    X = digits.X_val
    np.testing.assert_array_equal(loaded.model.predict(loaded.preprocessing.transform(X)),
                                  model.predict(pre.transform(X)))
    # what a notebook shows for it (was <mlplab.io.LoadedModel object at 0x...>)
    assert repr(loaded) == (f"LoadedModel(model={model!r}, preprocessing={pre!r}, "
                            "extra keys ['classes'])")


def test_two_layer_net_round_trip(tmp_path):
    net = TwoLayerNet(4, 5, 3, std=0.1, seed=0)
    loaded, prep, extra = io.load_model(io.save_model(tmp_path / "t.npz", net))
    assert type(loaded) is TwoLayerNet and loaded.dtype == np.float64 and prep is None
    np.testing.assert_array_equal(loaded.params["W2"], net.params["W2"])


def test_a_loaded_model_keeps_the_config_it_was_built_with(tmp_path):
    """The model is rebuilt with seed 0 (its weights come from the file), but its config must
    still say what the user built it with: reports and run folders print the seed from it."""
    model = MLP(5, [4, 3], 2, activation="tanh", init="xavier", dropout=0.2, seed=7)
    loaded = io.load_model(io.save_model(tmp_path / "s.npz", model)).model
    assert loaded.config == model.config and loaded.config["seed"] == 7
    net = TwoLayerNet(4, 5, 3, std=0.1, seed=11)
    assert io.load_model(io.save_model(tmp_path / "t.npz", net)).model.config["seed"] == 11


def _tamper(src, dst, **changes):
    arrays = io.read_npz(src)
    for k, v in changes.items():
        k = k.replace("__", "/") if k != "__meta__" else k
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    np.savez(dst, **arrays)
    return dst


@pytest.mark.parametrize("change,match", [
    ({"param__W1": np.zeros((3, 3), np.float32)}, "W1 has shape"),
    ({"param__W1": np.zeros((6, 5), np.float64)}, "W1 has dtype"),
    # the file named, and the likely cause (not only the model's own "b2 contains NaN")
    ({"param__b2": np.full(3, np.nan, np.float32)},
     r"bad\.npz: b2 contains NaN or infinite values; the model is corrupt \(did training"),
    ({"param__W2": None}, "missing arrays \\['W2'\\]"),
    ({"param__W9": np.zeros(2, np.float32)}, "unexpected arrays \\['W9'\\]"),
    ({"__meta__": np.array("{not json")}, "not valid JSON"),
    ({"__meta__": None}, "not an mlplab model file"),
])
def test_load_model_validates(tmp_path, change, match):
    good = io.save_model(tmp_path / "good.npz", MLP(6, [5], 3, seed=0))
    bad = _tamper(good, tmp_path / "bad.npz", **change)
    with pytest.raises(ValueError, match=match):
        io.load_model(bad)


@pytest.mark.parametrize("kind", ["pipeline", "dict"])
def test_load_model_refuses_preprocessing_that_is_not_finite(tmp_path, rng, kind):
    """A NaN in the stored preprocessing (a mean image) would make every prediction NaN, and so
    class 0, silently: the file is refused by name instead. A plain dict's arrays have no
    other check."""
    if kind == "pipeline":
        pre, key = make_preprocessing("standardize").fit(
            rng.randint(0, 256, (20, 2, 3, 1)).astype(np.uint8)), "0.mean"
    else:
        pre, key = {"mean": np.zeros(6), "note": "mine"}, "mean"
    good = io.save_model(tmp_path / "good.npz", MLP(6, [5], 3, seed=0), pre)
    assert io.load_model(good).preprocessing is not None
    arrays = io.read_npz(good)
    bad = _tamper(good, tmp_path / "bad.npz",
                  **{f"preprocessing__{key}": np.full_like(arrays[f"preprocessing/{key}"],
                                                           np.nan)})
    with pytest.raises(ValueError, match=f"bad.npz: preprocessing/{key} is not a finite "
                                         "numeric array"):
        io.load_model(bad)


def test_load_model_rejects_truncated_and_future_files(tmp_path):
    good = io.save_model(tmp_path / "good.npz", MLP(6, [5], 3, seed=0))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated"):
        io.load_model(tmp_path / "cut.npz")
    meta = json.loads(str(io.read_npz(good)["__meta__"]))
    meta["version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        io.load_model(_tamper(good, tmp_path / "v.npz", __meta__=np.array(json.dumps(meta))))
    with pytest.raises(FileNotFoundError):
        io.load_model(tmp_path / "missing.npz")


def test_load_model_of_a_folder_says_it_is_one(tmp_path):
    """load_model given a run folder (not its model.npz) says so and names the file inside,
    rather than that the folder does not exist."""
    io.save_model(tmp_path / "run" / "model.npz", MLP(6, [5], 3, seed=0))
    with pytest.raises(FileNotFoundError, match=r"run is a folder, not an \.npz file; the "
                       r"model file of a run folder is .*run/model\.npz"):
        io.load_model(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty is a folder, not an \.npz file\.$"):
        io.load_model(tmp_path / "empty")


# --------------------------------------------------------------------------- runs
def test_eval_test_without_a_test_split_is_refused_before_training(tmp_path):
    data = load_dataset("digits", test_size=0)
    with pytest.raises(ValueError, match="no test split.*test_size=N"):
        train_run(FAST, out=tmp_path / "run", data=data, eval_test=True)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_run_out_of_memory_before_a_checkpoint_leaves_nothing_behind(tmp_path, digits):
    """An out-of-memory first step (weights that fit, a batch that does not) left config.json
    alone in its folder: the same --out was refused as holding a run, and --resume, starting it
    again with the same settings, ran out of memory again."""
    class Full(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            raise MemoryError("Unable to allocate 1.43 GiB")

    with pytest.raises(MemoryError):
        train_run(FAST, out=tmp_path / "run", data=digits, callbacks=[Full()])
    assert not (tmp_path / "run").exists()
    assert train_run(FAST, out=tmp_path / "run", data=digits).metrics["status"] == "completed"

    # once an epoch is saved, the run is kept for --resume, as a killed one is
    class LaterFull(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                raise MemoryError("as if killed")

    with pytest.raises(MemoryError):
        train_run(FAST, epochs=4, out=tmp_path / "later", data=digits, callbacks=[LaterFull()])
    assert (tmp_path / "later" / "config.json").is_file()
    assert (tmp_path / "later" / "checkpoint.npz").is_file()


def test_the_shared_folder_gone_check_says_what_went_and_what_to_do(tmp_path):
    """One message for every command's folder removed or moved meanwhile: by its marker file,
    or with none by the folder itself; a folder still there passes, and a marker there that
    cannot be looked at is said as such, not taken for gone."""
    from mlplab.runs.files import RunFolderGoneError, refuse_if_folder_gone

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "mark").write_text("")
    refuse_if_folder_gone(folder, "mark", "it ran", "it stopped", "do this")
    refuse_if_folder_gone(folder, None, "it ran", "it stopped", "do this")
    (folder / "mark").unlink()
    with pytest.raises(RunFolderGoneError) as caught:
        refuse_if_folder_gone(folder, "mark", "it ran", "it stopped", "do this")
    assert str(caught.value) == (f"{folder} was removed or moved while it ran (its mark is "
                                 "gone), so it stopped; do this")
    # a marker there that cannot be looked at is not gone: the error says what is wrong
    os.symlink("mark", folder / "mark")  # a link to itself
    with pytest.raises(OSError) as caught_loop:
        refuse_if_folder_gone(folder, "mark", "it ran", "it stopped", "do this")
    assert caught_loop.value.errno == errno.ELOOP
    (folder / "mark").unlink()
    folder.rmdir()
    with pytest.raises(RunFolderGoneError) as caught:
        refuse_if_folder_gone(folder, None, "it ran", "it stopped", "do this.")
    assert str(caught.value) == (f"{folder} was removed or moved while it ran, so it stopped; "
                                 "do this.")


def test_a_run_whose_folder_is_removed_while_it_trains_stops_and_does_not_make_it_again(
        tmp_path, digits):
    """The atomic writes make a missing folder: a run folder removed (or moved) mid-run was made
    again and filled with a checkpoint, model and results but no config.json, and the command
    ended with status 0 for a folder that evaluate and --resume refuse as no run."""
    class Remove(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:  # after the epoch's checkpoint
                shutil.rmtree(tmp_path / "run")

    with pytest.raises(FileNotFoundError, match=r"run was removed or moved while the run "
                                                r"trained \(its config.json is gone\)"):
        train_run(FAST, out=tmp_path / "run", data=digits, plots=False, callbacks=[Remove()])
    assert not (tmp_path / "run").exists()

    # moved: the folder left where it went holds the last checkpoint, which resumes
    class Move(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                (tmp_path / "moved").rename(tmp_path / "elsewhere")

    with pytest.raises(FileNotFoundError, match="moved while the run trained"):
        train_run(FAST, out=tmp_path / "moved", data=digits, plots=False, callbacks=[Move()])
    assert not (tmp_path / "moved").exists()
    assert load_checkpoint(tmp_path / "elsewhere" / "checkpoint.npz")[1]["epoch"] == 2
    (tmp_path / "elsewhere").rename(tmp_path / "moved")
    assert resume_run(tmp_path / "moved", data=digits, plots=False).metrics["status"] == \
        "completed"


def test_a_run_folder_removed_while_its_figures_are_drawn_is_not_made_again(tmp_path, digits,
                                                                             monkeypatch):
    """The folder was checked once, before the model was saved: one removed while the figures
    were drawn (seconds, after the training) was made again by the next figure's save, and the
    run ended with status 0 in a folder of figures and metrics.json, no config.json."""
    real = plots.plot_confusion

    def drawn_then_removed(*args, **kwargs):
        fig = real(*args, **kwargs)
        shutil.rmtree(tmp_path / "run")
        return fig

    monkeypatch.setattr(plots, "plot_confusion", drawn_then_removed)
    open_before = set(plots.plt.get_fignums())  # (other tests in this process may leave some)
    with pytest.raises(FileNotFoundError, match=r"run was removed or moved while the run "
                                                r"trained \(its config.json is gone\)"):
        train_run(FAST, out=tmp_path / "run", data=digits)
    assert not (tmp_path / "run").exists()
    assert set(plots.plt.get_fignums()) <= open_before  # the figure not written is closed


@pytest.mark.parametrize("resumed", [False, True], ids=["train", "resume"])
def test_a_run_that_diverges_after_its_folder_went_says_so_and_does_not_make_it_again(
        resumed, tmp_path, digits, monkeypatch, capsys):
    """The folder removed, then the loss diverged before the next check: the command ended with
    the divergence alone, as if the folder were there to start a new run beside (and a resume
    of the folder put back would only diverge again, which the folder's message must not
    advise)."""
    import mlplab.runs.training as training

    run = tmp_path / "run"
    if resumed:  # a run stopped after its first epoch's checkpoint
        class Killed(Callback):
            def on_epoch_end(self, trainer, epoch, logs):
                raise MemoryError("as if killed")

        with pytest.raises(MemoryError):
            train_run(FAST, out=run, data=digits, callbacks=[Killed()])
    checked = training._FolderKept.on_epoch_end

    def removed_then_diverged(self, trainer, epoch, logs):
        checked(self, trainer, epoch, logs)
        shutil.rmtree(run)  # after the check, before the epoch's checkpoint
        raise TrainingDivergedError("the loss became nan at iteration 9 (epoch 2)")

    monkeypatch.setattr(training._FolderKept, "on_epoch_end", removed_then_diverged)
    argv = ["--resume", str(run)] if resumed else \
        ["--dataset", "digits", "--hidden", "32", "--epochs", "4", "--out", str(run)]
    assert main(["train", "--no-progress", *argv]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mlplab train: error: {run} was removed or moved while the run trained (its "
        "config.json is gone), so the run stopped without writing more there; its loss "
        "diverged as well, which resuming would repeat: start a new run with other settings "
        "(a lower --lr, say)")
    assert not run.exists()


def test_a_run_folder_removed_as_its_divergence_is_recorded_is_not_made_again(tmp_path,
                                                                              digits,
                                                                              monkeypatch):
    """Removed after the run was found to have saved a checkpoint, before its metrics.json
    recorded the divergence: the write made the folder again, holding that file alone."""
    import mlplab.runs.training as training

    run, looked = tmp_path / "run", []
    real = training._saved_nothing

    def looked_then_removed(run_dir):
        nothing = real(run_dir)
        looked.append(nothing)
        if len(looked) == 2:  # the last look, before the divergence is recorded
            shutil.rmtree(run_dir)
        return nothing

    class Diverging(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:  # after the checkpoint of epoch 2
                raise TrainingDivergedError("the loss became nan at iteration 9 (epoch 2)")

    monkeypatch.setattr(training, "_saved_nothing", looked_then_removed)
    with pytest.raises(FileNotFoundError, match=r"run was removed or moved while the run "
                                                r"trained \(its config.json is gone\), .*; its "
                                                r"loss diverged as well"):
        train_run(FAST, out=run, data=digits, plots=False, callbacks=[Diverging()])
    assert looked == [False, False]  # (the folder went where the test meant it to)
    assert not run.exists()


def test_a_run_that_diverges_before_a_checkpoint_leaves_nothing_behind(tmp_path, digits):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the divergence is the error, not NumPy's overflow
        with pytest.raises(TrainingDivergedError, match="lower learning rate"):
            train_run(FAST, out=tmp_path / "run", data=digits, optimizer="sgd", lr=1e6)
    assert not (tmp_path / "run").exists()
    res = train_run(FAST, out=tmp_path / "run", data=digits)  # the same --out works
    assert res.metrics["status"] == "completed"
    # a folder of the user's keeps what it held, and stays even when empty
    for content in ("notes.txt", None):
        mine = tmp_path / f"mine-{content}"
        mine.mkdir()
        if content:
            (mine / content).write_text("")
        with pytest.raises(TrainingDivergedError):
            train_run(FAST, out=mine, data=digits, optimizer="sgd", lr=1e6)
        assert [p.name for p in mine.iterdir()] == ([content] if content else [])
    # a run killed before its first checkpoint whose settings diverge: resuming says what to do
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "config.json").write_text(json.dumps(
        build_config(**FAST, optimizer="sgd", lr=1e6).to_dict()))
    with pytest.raises(TrainingDivergedError, match=r"std\. Resuming this run repeats it"):
        resume_run(tmp_path / "killed", data=digits)  # (no checkpoint is said to be kept)
    # recorded: resuming it again only repeated the divergence, which evaluate advised
    assert json.loads((tmp_path / "killed" / "metrics.json").read_text())["status"] == "diverged"
    with pytest.raises(FileNotFoundError, match=r"its loss diverged, so it saved no model; "
                                                r"start a new run with other settings"):
        evaluate_run(tmp_path / "killed", data=digits)
    # a folder holding another run's files (even without config.json) is not written over
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="already holds a run"):
        train_run(FAST, out=tmp_path / "other", data=digits)

    # diverging after a checkpoint: the folder keeps it, and the message says what to do
    class Blow(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            for p in trainer.model.params.values():  # after the epoch's checkpoint
                p *= 1e30

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TrainingDivergedError, match=r"keeps the checkpoint.*another out\."):
            train_run(FAST, out=tmp_path / "r2", data=digits, callbacks=[Blow()])
    assert (tmp_path / "r2" / "checkpoint.npz").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"^out .*file/run: .*file is a file, not a folder; "
                                         r"choose another out\.$"):
        train_run(FAST, out=tmp_path / "file" / "run", data=digits)


def test_a_run_that_diverged_after_a_checkpoint_is_recorded_as_diverged(tmp_path, digits):
    """A run whose loss diverged after its first checkpoint was listed "unfinished", and
    evaluate advised the --resume that trained it into the same divergence again. Its
    metrics.json records it (as a PyTorch run's config.json does)."""
    from mlplab.runs.listing import summarize_run

    class Blow(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                for p in trainer.model.params.values():  # after the epoch's checkpoint
                    p *= 1e30

    run = tmp_path / "r"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TrainingDivergedError):
            train_run(FAST, out=run, data=digits, callbacks=[Blow()], plots=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and "the loss became nan" in metrics["reason"]
    record = summarize_run(run)
    assert (record["status"], record["epochs"], record["of_epochs"]) == ("diverged", 2, 4)
    assert record["val_accuracy"] is not None  # its last good epoch's, from the checkpoint
    with pytest.raises(FileNotFoundError, match="its loss diverged, so it saved no model"):
        evaluate_run(run, data=digits)
    with pytest.raises(ValueError, match=r"diverged \(its loss became NaN or infinite\); "
                                         "resuming it would repeat it"):
        resume_run(run, data=digits)
    with pytest.raises(ValueError, match="already holds a run that diverged; choose another"):
        train_run(FAST, out=run, data=digits)


def test_a_file_that_cannot_be_removed_does_not_keep_the_divergence_from_being_recorded(
        tmp_path, digits, monkeypatch, refuse_unlink):
    """A stopped run resumed into a NaN removes its stop's files, then records the divergence;
    one file that could not be removed (a permission error) ended both, suppressed together,
    so no record was written: metrics.json was gone and the run read as unfinished, advising the
    --resume that diverges again. Now the other files go and the record is written."""
    from mlplab.runs import RunInterruptedWarning
    from mlplab.runs.listing import summarize_run

    class CtrlC(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    class Blow(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 3:
                for p in trainer.model.params.values():  # after the epoch's checkpoint
                    p *= 1e30

    run = tmp_path / "r"
    with pytest.warns(RunInterruptedWarning):
        train_run(FAST, out=run, data=digits, callbacks=[CtrlC()])
    assert {"metrics.json", "model.npz", "history.csv", "loss.png"} < \
        {p.name for p in run.iterdir()}
    refuse_unlink(lambda path: path.name == "history.csv")
    with warnings.catch_warnings(), pytest.raises(TrainingDivergedError):
        warnings.simplefilter("ignore")
        resume_run(run, data=digits, callbacks=[Blow()])
    monkeypatch.undo()
    # only the file that could not be removed is left of the stop's
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == \
        ["checkpoint.npz", "config.json", "history.csv", "metrics.json"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and "the loss became nan" in metrics["reason"]
    assert summarize_run(run)["status"] == "diverged"
    with pytest.raises(ValueError, match=r"diverged \(its loss became NaN or infinite\)"):
        resume_run(run, data=digits)


def test_train_run_writes_a_complete_run_folder(tmp_path, digits):
    res = train_run(FAST, out=tmp_path / "run", data=digits, eval_test=True)
    out = tmp_path / "run"
    names = {p.name for p in out.iterdir()}
    assert names == {"config.json", "model.npz", "checkpoint.npz", "history.csv",
                     "metrics.json", "loss.png", "accuracy.png", "confusion.png", "weights.png"}
    m = json.loads((out / "metrics.json").read_text())
    for key in ("train_accuracy", "val_accuracy", "test_accuracy", "epochs", "iterations",
                "seconds", "dataset", "model"):
        assert key in m
    per_epoch = len(digits.y_train) // 64
    assert m["epochs"] == 4 and m["iterations"] == 4 * per_epoch and m["status"] == "completed"
    assert m["val_accuracy"] == pytest.approx(res.model.accuracy(
        res.preprocessing.transform(digits.X_val), digits.y_val))
    assert m["test_accuracy"] == pytest.approx(res.model.accuracy(
        res.preprocessing.transform(digits.X_test), digits.y_test))
    assert m["val_accuracy"] > 0.8 and m["dataset"] == "digits" and m["model"].startswith("MLP")
    assert m["train_accuracy"] == pytest.approx(res.model.accuracy(
        res.preprocessing.transform(digits.X_train), digits.y_train))
    assert m["final_loss"] == res.history.loss[-1] and len(res.history.loss) == m["iterations"]
    best = int(np.argmax(res.history.val_acc))  # the first epoch of the highest accuracy
    assert (m["best_epoch"], m["best_val_accuracy"]) == (best + 1, res.history.val_acc[best])
    assert m["num_params"] == 64 * 32 + 32 + 32 * 10 + 10 and m["stopped_early"] is False
    one = train_run({**FAST, "epochs": 1}, data=digits).metrics  # its best epoch is its only one
    assert (one["best_epoch"], one["best_val_accuracy"]) == (1, one["val_accuracy"])

    h = read_history(out / "history.csv")
    assert h["loss"] == res.history.loss and h["val_acc"] == res.history.val_acc
    with open(out / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 4 * per_epoch + 1))
    # iterations 1..per_epoch are epoch 1; an epoch's accuracies are on its last iteration's row
    assert [int(r["epoch"]) for r in rows] == [-(-int(r["iteration"]) // per_epoch) for r in rows]
    assert [r["iteration"] for r in rows if r["val_acc"]] == \
        [str(e * per_epoch) for e in range(1, 5)]
    assert RunConfig.from_dict(json.loads((out / "config.json").read_text())) == res.config
    loaded = io.load_model(out / "model.npz")
    np.testing.assert_array_equal(loaded.model.params["W2"], res.model.params["W2"])
    for png in ("loss.png", "weights.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 500

    with pytest.raises(ValueError, match="already holds a completed run"):
        train_run(FAST, out=out, data=digits)
    with pytest.raises(ValueError, match="already completed"):
        resume_run(out, data=digits)


def test_an_out_folder_that_holds_a_run_is_refused_before_the_data_is_loaded(digits, tmp_path,
                                                                           capsys):
    """``mlplab train --out RUN`` again (the README's command, run twice) loaded, decoded or
    downloaded the whole dataset first, and only then said that RUN already holds a run;
    ``mlplab torch train`` checks --out first. A file in the way is refused as early."""
    run = tmp_path / "run"
    train_run(FAST, out=run, data=digits, plots=False)
    loads = []

    def load():
        loads.append(1)
        return digits

    with pytest.raises(ValueError, match="already holds a completed run"):
        train_run(FAST, out=run, data=load)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        train_run(FAST, out=tmp_path / "a-file", data=load)
    assert loads == []
    # on the command line: refused before a dataset that is not even there is looked for
    assert main(["train", "--dataset", f"folder:{tmp_path / 'gone'}", "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"{run} already holds a completed run" in err and "no such folder" not in err
    assert main(["train", "--dataset", f"folder:{tmp_path / 'gone'}",
                 "--out", str(tmp_path / "new")]) == 1
    assert "no such folder" in capsys.readouterr().err  # a new folder: the data's error
    assert not (tmp_path / "new").exists()  # and nothing made for it


def test_the_command_line_and_evaluate_import_nothing_heavy(tmp_path, digits):
    """``mlplab --help``, loading digits and ``mlplab evaluate`` stay clear of the seconds-long
    imports: scikit-learn (SciPy with it), Matplotlib, Optuna and PyTorch."""
    train_run(FAST, out=tmp_path / "run", data=digits, plots=False)
    code = ("import sys\n"
            "from mlplab.cli import build_parser\n"
            "from mlplab.data import load_dataset\n"
            "from mlplab.runs import evaluate_run\n"
            "build_parser()\n"
            "load_dataset('digits')\n"
            "evaluate_run(sys.argv[1])\n"
            "heavy = {'sklearn', 'scipy', 'matplotlib', 'optuna', 'torch'}\n"
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_the_package_exports_the_main_names_and_imports_them_on_first_use():
    code = ("import sys, mlplab\n"
            "heavy = {'sklearn', 'scipy', 'matplotlib', 'optuna', 'torch'}\n"
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
            "from mlplab import MLPClassifier, Trainer, load_dataset, train_run, load_model\n"
            "from mlplab.estimator import MLPClassifier as E\n"
            "from mlplab.runs import train_run as T\n"
            "print(MLPClassifier is E and train_run is T\n"
            "      and set(mlplab.__all__) <= set(dir(mlplab)))\n"
            "from mlplab import *\n"
            "print(save_model.__module__)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["[]", "True", "mlplab.io"]
    import mlplab

    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        mlplab.Nothing  # noqa: B018


def test_submodules_resolve_after_a_bare_import_mlplab_as_the_docs_write_them():
    # docs/training.md's notebook cells: `mlplab.data.load_dataset(...)`,
    # `mlplab.plots.plot_loss(...)` after `import mlplab` alone (a fresh process: in this one
    # other tests have imported the submodules already)
    code = ("import mlplab\n"
            "print(mlplab.data.load_dataset is mlplab.load_dataset,\n"
            "      mlplab.plots.plot_loss.__module__, mlplab.tuning.data.subset_train.__name__)\n"
            "for name in ('nothing_here', '_private', 'cli.train'):\n"
            "    try:\n"
            "        getattr(mlplab, name)\n"
            "    except AttributeError as exc:\n"
            "        print(exc)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "True mlplab.plots subset_train",
        "module 'mlplab' has no attribute 'nothing_here'",
        "module 'mlplab' has no attribute '_private'",
        "module 'mlplab' has no attribute 'cli.train'"]


def test_confusion_matrix_is_one_function_in_plots_and_metrics():
    from mlplab import metrics

    assert plots.confusion_matrix is metrics.confusion_matrix


def test_an_empty_out_is_refused_not_taken_for_the_current_folder(tmp_path, digits,
                                                                   monkeypatch):
    """``train_run(out="")`` (``out=os.environ.get("OUT", "")`` with OUT unset) wrote the run's
    config.json, checkpoint, model, metrics and figures into the current folder, among whatever
    it held: ``Path("")`` is ``.``. The command line refuses ``--out ""``; so does Python now,
    naming ``out``, before the data is loaded."""
    monkeypatch.chdir(tmp_path)
    loads = []

    def load():
        loads.append(1)
        return digits

    with pytest.raises(ValueError, match=r"^out is an empty text"):
        train_run(FAST, out="", data=load, plots=False)
    assert loads == [] and list(tmp_path.iterdir()) == []


def test_hidden_as_text_is_read_as_the_hidden_flag_reads_it(digits):
    """``hidden`` given as a text is ``--hidden``'s value: "none" (the documented spelling of no
    hidden layer) was a bare "invalid literal for int() with base 10: 'none'", and an empty
    text (an unset variable) or an empty item ("100,,50", a typo) silently trained another
    network (softmax regression; [100, 50]), where the command line refuses both."""
    assert build_config(hidden="none").hidden == []
    assert build_config(hidden=" 100, 50 ").hidden == [100, 50]
    assert build_config(hidden=[]).hidden == []
    for text in ("", " ", "100,,50", "100,", "abc"):
        with pytest.raises(ValueError, match=r"^hidden must be a list of layer sizes .*'none'.*"
                                             + re.escape(f"got {text!r}.")):
            train_run(FAST, hidden=text, data=digits)


def test_predict_images_refuses_a_top_that_is_no_count_of_classes(tmp_path, digits):
    """``predict_images(run, paths, top=0)`` gave each image's best class anyway, and ``top=2.5``
    a bare TypeError from slicing, where ``mlplab predict --top 0`` is refused; both are refused,
    naming ``top``, before any image is read."""
    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    Image.fromarray(digits.X_test[0][:, :, 0]).save(tmp_path / "a.png")
    for top in (0, -1, 2.5):
        with pytest.raises(ValueError, match=r"^top must be an integer >= 1; got "):
            predict_images(tmp_path / "r", [tmp_path / "missing.png"], top=top)
    assert len(predict_images(tmp_path / "r", [tmp_path / "a.png"], top=1)[0]["top"]) == 1


def test_predict_images_takes_one_path_as_it_is(tmp_path, digits, monkeypatch):
    """``predict_images(run, "a.png")`` (one path, not a list) iterated the text: its letters
    were paths, and "/" among them the root folder, so the call failed with "/: no image files
    in this folder ..."; a single path (text or ``Path``) is a list of one."""
    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    Image.fromarray(digits.X_test[0][:, :, 0]).save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    one = predict_images("r", ["a.png"], progress=False)
    assert predict_images("r", "a.png", progress=False) == one
    assert predict_images(tmp_path / "r", tmp_path / "a.png", progress=False)[0]["top"] == \
        one[0]["top"]


def test_train_run_in_memory_and_without_test(digits):
    res = train_run(FAST, data=digits, plots=False)
    assert res.out is None and "test_accuracy" not in res.metrics


def test_a_run_that_loads_its_data_frees_the_raw_training_images(digits):
    """Given a loader, the run owns the dataset and drops the raw training images once they are
    preprocessed (they would otherwise sit beside the float32 copy for the whole run); a dataset
    passed in is the caller's and is left alone. Same data, same result either way."""
    import dataclasses
    import gc
    import weakref

    raw_alive = []

    class Probe(Callback):
        def on_train_begin(self, trainer):
            gc.collect()
            raw_alive.append(ref() is not None)

    def loader():
        ds = dataclasses.replace(digits, X_train=digits.X_train.copy())
        nonlocal ref
        ref = weakref.ref(ds.X_train)
        return ds

    ref = None
    owned = train_run(FAST, data=loader, plots=False, callbacks=[Probe()])
    ref = weakref.ref(digits.X_train)
    lent = train_run(FAST, data=digits, plots=False, callbacks=[Probe()])
    assert raw_alive == [False, True]
    assert digits.X_train.shape[0] == len(digits.y_train)  # untouched
    assert owned.metrics["val_accuracy"] == lent.metrics["val_accuracy"]
    np.testing.assert_array_equal(owned.model.params["W1"], lent.model.params["W1"])


def test_a_run_on_feature_vectors_of_ones_own_writes_its_folder(tmp_path, rng):
    """A Dataset built from (N, D) feature vectors (not images) trains into a run folder like
    any other; it has no images to draw the first-layer weights as, so no weights.png (it
    crashed in the plot, after training, leaving the folder without its model and metrics)."""
    from mlplab.data import Dataset

    X = rng.randn(300, 6)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    ds = Dataset("mine", ["a", "b", "c"], X[:200], y[:200], X[200:250], y[200:250],
                 X[250:], y[250:])
    res = train_run(data=ds, hidden=[8], epochs=2, out=tmp_path / "run")
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert names == {"config.json", "model.npz", "checkpoint.npz", "history.csv",
                     "metrics.json", "loss.png", "accuracy.png", "confusion.png"}
    assert res.metrics["status"] == "completed" and res.model.input_size == 6


def test_a_run_on_a_dataset_of_ones_own_is_evaluated_with_it_and_says_so(tmp_path, rng, capsys):
    """evaluate_run takes the run's own Dataset as data; without it, it says to pass it (it
    said "unknown dataset 'mine'; choose one of digits, cifar10, ...", names no run can use)."""
    from mlplab.data import Dataset

    X = rng.randn(300, 6)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    ds = Dataset("mine", ["a", "b", "c"], X[:200], y[:200], X[200:250], y[200:250],
                 X[250:], y[250:])
    res = train_run(data=ds, hidden=[8], epochs=2, out=tmp_path / "run", plots=False)
    ev = evaluate_run(tmp_path / "run", "test", data=ds)
    pred = res.model.predict(res.preprocessing.transform(ds.X_test))
    assert ev["accuracy"] == pytest.approx(np.mean(pred == ds.y_test))
    with pytest.raises(ValueError, match=r"dataset given to it in Python, 'mine'.*pass the same "
                       r"Dataset as data, e\.g\. evaluate_run\(RUN, data=DATASET\)"):
        evaluate_run(tmp_path / "run")
    assert main(["evaluate", str(tmp_path / "run")]) == 1
    assert "pass the same Dataset as data" in capsys.readouterr().err


def test_a_lent_dataset_records_its_own_split(tmp_path):
    """A run given a loaded dataset records the split it trained on, not the config's (here
    val_size 0, as the Fashion-MNIST presets say), so evaluate_run reloads that split."""
    ds = load_dataset("digits", val_size=150, seed=0)
    res = train_run({**FAST, "val_size": 0, "epochs": 1}, data=ds, out=tmp_path / "r",
                    plots=False)
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (cfg["val_size"], cfg["test_size"]) == (150, len(ds.y_test))
    assert res.config.val_size == 150
    ev = evaluate_run(tmp_path / "r")
    pred = res.model.predict(res.preprocessing.transform(ds.X_val))
    assert ev["size"] == 150 and ev["accuracy"] == pytest.approx(np.mean(pred == ds.y_val))


def test_a_lent_dataset_records_the_seed_and_image_size_it_was_loaded_with(tmp_path):
    """A dataset split with another seed, or resized, records those options, so that
    evaluate_run loads the very splits the run trained on (it recorded the defaults, and
    evaluate_run refused the run's own data as "not the one this run was trained with")."""
    ds = load_dataset("digits", seed=3, image_size=6)
    res = train_run({**FAST, "epochs": 1}, data=ds, out=tmp_path / "r", plots=False)
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (cfg["data_seed"], cfg["image_size"]) == (3, 6) and res.model.input_size == 36
    ev = evaluate_run(tmp_path / "r")
    pred = res.model.predict(res.preprocessing.transform(ds.X_val))
    assert ev["accuracy"] == pytest.approx(np.mean(pred == ds.y_val))
    again = load_dataset(cfg["dataset"], seed=cfg["data_seed"], image_size=cfg["image_size"])
    np.testing.assert_array_equal(again.X_val, ds.X_val)


def test_a_run_on_an_unseeded_split_records_the_seed_drawn_and_evaluates(tmp_path):
    """load_dataset(seed=None) splits at random; the run recorded data_seed 0, so evaluate_run
    rebuilt another split and refused the run's own data as "the data changed since"."""
    ds = load_dataset("digits", seed=None)
    res = train_run({**FAST, "epochs": 1}, data=ds, out=tmp_path / "r", plots=False)
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    again = load_dataset("digits", seed=cfg["data_seed"])  # the recorded seed rebuilds the split
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(again.split(split)[0], ds.split(split)[0])
    ev = evaluate_run(tmp_path / "r")
    pred = res.model.predict(res.preprocessing.transform(ds.X_val))
    assert ev["accuracy"] == pytest.approx(np.mean(pred == ds.y_val))


def test_a_run_loading_an_unseeded_split_itself_records_the_seed_drawn(tmp_path):
    """train_run(dataset="digits", data_seed=None) loads a random split; config.json said
    data_seed null, so evaluate_run drew another split and refused the run's own data as
    changed. It records the seed drawn, which rebuilds the validation split trained on."""
    res = train_run({**FAST, "epochs": 1}, dataset="digits", data_seed=None,
                    out=tmp_path / "r", plots=False)
    seed = json.loads((tmp_path / "r" / "config.json").read_text())["data_seed"]
    assert isinstance(seed, int)
    X_val, y_val = load_dataset("digits", seed=seed).split("val")
    pred = res.model.predict(res.preprocessing.transform(X_val))
    assert np.mean(pred == y_val) == pytest.approx(res.metrics["val_accuracy"])
    assert evaluate_run(tmp_path / "r")["accuracy"] == pytest.approx(res.metrics["val_accuracy"])


def test_evaluating_another_commands_folder_says_what_it_is(tmp_path, digits):
    """evaluate on a mlplab reproduce, mlplab torch depth or mlplab tune output folder was told
    only to "pass a run folder written by mlplab train"; it is told what the folder is (by the
    files those commands write) and where its evaluable run is, or that it has none."""
    DEPTH_FILE = "depth.json"  # the name the docs give a finished study's table

    report = tmp_path / "report"
    (report / "tuning").mkdir(parents=True)
    (report / "report.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"has no model\.npz; it is a report folder "
                       r"written by mlplab reproduce, which keeps no run folder"):
        evaluate_run(report)
    best = report / "tuning" / "best-run"
    train_run({**FAST, "epochs": 1}, data=digits, out=best, plots=False)
    with pytest.raises(FileNotFoundError, match=r"it is a report folder written by mlplab "
                       r"reproduce; the run folder of its tuning's best trial is "
                       rf"{re.escape(str(best))}\.$"):
        evaluate_run(report)
    assert 0 <= evaluate_run(best)["accuracy"] <= 1  # the folder named is one evaluate reads
    depth = tmp_path / "depth"
    depth.mkdir()
    (depth / DEPTH_FILE).write_text("{}")  # as an mlplab before 1 Dec 2026 left it: no networks/
    with pytest.raises(FileNotFoundError, match=r"it is a depth study written by mlplab torch "
                       r"depth, which keeps no run folder: its numbers are in depth\.md and "
                       r"depth\.json, and it holds no network files \(to evaluate one depth "
                       r"here, train it with mlplab\.torch_mlp\.train_run\(\.\.\., "
                       r"hidden=\[H, \.\.\.\], out=RUN\) and evaluate") as old:
        evaluate_run(depth)
    assert "networks/" not in str(old.value)  # (it named a folder the study does not have)
    (depth / "networks").mkdir()
    (depth / "networks" / "exercise-2.pt").write_bytes(b"")  # as a study now writes them
    with pytest.raises(FileNotFoundError, match=r"depth\.json, its networks in networks/ as "
                       r"PyTorch model files \(mlplab\.torch_mlp\.load_torch_model; to "
                       r"evaluate one depth here, train it with mlplab\.torch_mlp\.train_run"):
        evaluate_run(depth)
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    (tuned / "study.db").write_bytes(b"")  # a --search-only search: trials, no best-run/
    with pytest.raises(FileNotFoundError, match=r"it is a tuning folder written by mlplab tune "
                       r"without a retrained best trial .*call mlplab\.tuning\.tune again "
                       r"with the same arguments and search_only=False"):
        evaluate_run(tuned)
    (tuned / "summary.json").write_text("{}")
    os.replace(best, tuned / "best-run")
    with pytest.raises(FileNotFoundError, match=r"it is a tuning folder written by mlplab tune; "
                       r"the run folder of its best trial is .*tuned.best-run\.$"):
        evaluate_run(tuned)


def test_run_folder_mistakes_say_what_to_do(tmp_path, digits):
    """evaluate_run on a tuning folder points to the run inside it; on an empty folder it asks
    for a run folder, and on one without config.json says what is missing (not a bare
    'No such file'); train_run refuses an --out that is a file."""
    train_run({**FAST, "epochs": 1}, data=digits, out=tmp_path / "tune" / "best-run", plots=False)
    with pytest.raises(FileNotFoundError, match=r"with a model inside it is .*best-run"):
        evaluate_run(tmp_path / "tune")
    (tmp_path / "blank").mkdir()
    # (in Python's spelling: the CLI's "written by mlplab train" is tested in test_cli_train)
    with pytest.raises(FileNotFoundError,
                       match=r"pass a run folder written by mlplab\.runs\.train_run\.$"):
        evaluate_run(tmp_path / "blank")
    (tmp_path / "tune" / "best-run" / "config.json").unlink()  # model.npz left alone
    with pytest.raises(FileNotFoundError, match=r"best-run has no config\.json, which says "
                       "which data the run used; pass the whole run folder "
                       r"written by mlplab\.runs\.train_run\.$"):
        evaluate_run(tmp_path / "tune" / "best-run")
    (tmp_path / "notes.txt").write_text("mine")
    loads = []  # refused before the data loads (a large folder takes minutes), not after

    def loader():
        loads.append(1)
        return digits

    for out, blocker in ((tmp_path / "notes.txt", ""), (tmp_path / "notes.txt" / "run",
                                                        f": {tmp_path / 'notes.txt'}")):
        with pytest.raises(ValueError, match=f"^out {re.escape(str(out) + blocker)} is a file, "
                                             r"not a folder; choose another out\.$"):
            train_run({**FAST, "epochs": 1}, data=loader, out=out, plots=False)
    assert (tmp_path / "notes.txt").read_text() == "mine" and not loads


@pytest.mark.parametrize("marker,what", [
    ("summary.json", "a tuning folder written by mlplab tune"),
    ("study.db", "a tuning folder written by mlplab tune"),
    ("report.json", "a report folder written by mlplab reproduce"),
    ("depth.json", "a depth study written by mlplab torch depth")])
def test_a_new_run_is_not_written_into_another_commands_folder(tmp_path, digits, marker, what):
    """`mlplab train --out runs/tune-digits` wrote the run's files among the search's, after
    which `mlplab evaluate runs/tune-digits` took the new run for the search's best."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / marker).write_text("{}")
    with pytest.raises(ValueError, match=re.escape(f"{folder} is {what}; choose another out "
                                                   "for the run.")):
        train_run({**FAST, "epochs": 1}, data=digits, out=folder, plots=False)
    assert sorted(p.name for p in folder.iterdir()) == [marker]
    # its sub-folders are another matter: a search's best-run/ is trained there
    train_run({**FAST, "epochs": 1}, data=digits, out=folder / "best-run", plots=False)


def test_a_folder_of_many_runs_is_not_pointed_to_its_first_run(tmp_path, digits, capsys):
    """`mlplab evaluate runs` (or `--resume runs`, `--like runs`): the folder of many runs, the
    likely mistake, names a few of them and the command that lists them, not the first run as
    if it were the one meant."""
    for name in ("a", "b", "c", "d"):
        train_run({**FAST, "epochs": 1}, data=digits, out=tmp_path / "runs" / name, plots=False)
    runs = tmp_path / "runs"
    shown = f"{runs / 'a'}, {runs / 'b'}, {runs / 'c'}, ..."
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"has no model.npz; it holds 4 run folders ({shown}): pass one of them "
            f"(mlplab.runs.list_runs([{str(runs)!r}]) lists them).")):
        evaluate_run(runs)
    assert main(["train", "--resume", str(runs)]) == 1
    err = capsys.readouterr().err
    assert f"no config.json); it holds 4 run folders ({shown}): pass one of them (mlplab runs " \
           f"{runs} lists them)." in err
    assert "the run folder inside it" not in err


@pytest.mark.parametrize("augment, crop_fill", [("flip,crop", "zero"), ("flip,crop", "black"),
                                               ("crop,elastic", "black")])
def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, digits, augment,
                                                            crop_fill):
    cfg = {**FAST, "epochs": 5, "dropout": 0.2, "optimizer": "momentum", "lr": 0.05,
           "augment": augment, "crop_fill": crop_fill, "patience": 10}
    full = train_run(cfg, out=tmp_path / "full", data=digits, plots=False)

    class CtrlC(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if iteration == 30:  # mid-epoch 2
                os.kill(os.getpid(), signal.SIGINT)

    part = train_run(cfg, out=tmp_path / "part", data=digits, plots=False, callbacks=[CtrlC()])
    assert part.interrupted and part.metrics["iterations"] == 30
    _, state, _ = load_checkpoint(tmp_path / "part" / "checkpoint.npz")
    assert state["iteration"] == 30
    # mid-epoch, momentum held L2 in the layers' scales: the checkpoint keeps that form too
    assert {"W1/fold", "W1/folded_W", "W1/folded_v"} <= set(state["optimizer"])
    resumed = resume_run(tmp_path / "part", data=digits, plots=False)
    assert resumed.history.loss == full.history.loss
    for k, v in full.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[k], v)
    for k in ("train_accuracy", "val_accuracy", "epochs", "iterations", "best_epoch"):
        assert resumed.metrics[k] == full.metrics[k]


def test_a_run_trained_before_val_folders_were_read_is_told_why_its_splits_differ(tmp_path):
    """A folder with val/ beside train/: a run trained when mlplab took validation from
    train/ (here: trained before val/ was put there) is refused, and the refusal says that
    mlplab reads val/ now, and how to use the run, not only that "the data changed"."""
    rs = np.random.RandomState(0)
    for split, n in (("train", 12), ("valid", 3)):
        for c in "ab":
            (tmp_path / "set" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rs.randint(0, 256, (5, 5)).astype(np.uint8)).save(
                    tmp_path / "set" / split / c / f"{i}.png")
    (tmp_path / "set" / "valid").rename(tmp_path / "aside")
    train_run({"dataset": f"folder:{tmp_path / 'set'}", "hidden": [4], "epochs": 1},
              out=tmp_path / "run", plots=False)
    (tmp_path / "aside").rename(tmp_path / "set" / "valid")
    with pytest.raises(ValueError, match=r"\(If the folder is as it was: since 2 December 2026 "
                                         r"mlplab reads valid/ as the validation split, and "
                                         r"took validation from train/ before; move valid/ "
                                         r"aside to use what was trained before\.\)$"):
        evaluate_run(tmp_path / "run")
    (tmp_path / "set" / "valid").rename(tmp_path / "aside")
    assert evaluate_run(tmp_path / "run")["size"] == 2  # as it was: evaluated


def test_a_checkpoint_keeps_its_losses_as_an_array_and_reads_the_older_json_ones(tmp_path,
                                                                                  digits):
    """The losses of every iteration were JSON text rewritten at every epoch, which grew with
    the run until a long one spent most of its time writing it; they are a float64 member now,
    exact, and a checkpoint of the older layout (losses in the JSON) still resumes."""
    cfg = {**FAST, "epochs": 4}
    full = train_run(cfg, out=tmp_path / "full", data=digits, plots=False)

    class CtrlC(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    train_run(cfg, out=tmp_path / "part", data=digits, plots=False, callbacks=[CtrlC()])
    ckpt = tmp_path / "part" / "checkpoint.npz"
    arrays = io.read_npz(ckpt)
    assert "loss" not in json.loads(str(arrays["__trainer__"]))["history"]
    losses = arrays.pop("history/loss")
    assert losses.dtype == np.float64 and losses.tolist() == full.history.loss[:len(losses)]
    state = json.loads(str(arrays["__trainer__"]))
    state["history"]["loss"] = losses.tolist()  # the layout before 2 Dec 2026
    io.write_npz(ckpt, {**arrays, "__trainer__": io.json_array(state)})
    resumed = resume_run(tmp_path / "part", data=digits, plots=False)
    assert resumed.history.loss == full.history.loss


@pytest.mark.parametrize("schedule", ["exp", "step"])
def test_a_run_trained_under_the_older_warm_up_schedule_is_not_resumed_under_this_one(
        tmp_path, digits, schedule):
    """Before 29 Nov 2026 (d5f9d77) an exp or step schedule dropped the rate by
    lr_decay^warmup_epochs when a warm-up ended; it now starts from lr. Such a run resumed
    silently with rates 1/lr_decay^warmup_epochs times those it was trained with. Its checkpoint's
    history records those rates: the resume now stops, saying so. A checkpoint of this mlplab's
    schedule resumes (to the uninterrupted result)."""
    cfg = {**FAST, "epochs": 6, "schedule": schedule, "lr_decay": 0.5, "step_epochs": 1,
           "warmup_epochs": 2, "optimizer": "sgd", "lr": 0.05}
    full = train_run(cfg, out=tmp_path / "full", data=digits, plots=False)

    class CtrlC(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 4:
                os.kill(os.getpid(), signal.SIGINT)

    for name in ("new", "old"):
        train_run(cfg, out=tmp_path / name, data=digits, plots=False, callbacks=[CtrlC()])
    ckpt = tmp_path / "old" / "checkpoint.npz"
    arrays = io.read_npz(ckpt)
    state = json.loads(str(arrays["__trainer__"]))
    # the older schedule: lr * decay^epoch after the warm-up (epochs 3 and 4), not from lr
    state["history"]["lr"][2:] = [0.05 * 0.5 ** e for e in (2, 3)]
    io.write_npz(ckpt, {**arrays, "__trainer__": io.json_array(state)})
    with pytest.raises(ValueError, match=r"cannot resume: the run's learning rate at the end of "
                                         r"epoch 3 was 0\.0125, but the "
                                         f"{schedule} schedule with these settings gives "
                                         r"0\.05 there: the run was trained under the older "
                                         r"warm-up schedule \(an mlplab from before 29 November "
                                         "2026 dropped"):
        resume_run(tmp_path / "old", data=digits, plots=False)
    assert main(["train", "--resume", str(tmp_path / "old")]) == 1
    resumed = resume_run(tmp_path / "new", data=digits, plots=False)
    assert resumed.history.lr == full.history.lr and resumed.history.loss == full.history.loss


def test_a_trainer_resumed_under_other_learning_rates_says_so_not_an_older_mlplab(digits):
    """The trainer's own check, behind a run's record of its settings (a checkpoint of an older
    mlplab records none; a Trainer resumed directly): a state whose learning rates another lr
    or lr_decay gave is refused as trained with other settings. It blamed "an mlplab from
    before 29 November 2026" and its warm-up, whatever the cause."""
    from mlplab.trainer import ScheduleChangedError, Trainer

    X = digits.X_train.reshape(len(digits.y_train), -1).astype(np.float32) / 16
    settings = {"optimizer": "sgd", "batch_size": 64, "epochs": 3}
    first = Trainer(lr=0.05, lr_decay=0.9, **settings)
    first.fit(MLP(64, [16], 10, seed=0), X, digits.y_train)
    def refusal(**other):
        trainer = Trainer(**other, **{**settings, "epochs": 5})
        trainer.resume(first.state_dict(), same_schedule=True)
        with pytest.raises(ScheduleChangedError) as refused:
            trainer.fit(MLP(64, [16], 10, seed=0), X, digits.y_train)
        assert "\n" not in str(refused.value)
        return str(refused.value)

    for other in ({"lr": 0.01, "lr_decay": 0.9}, {"lr": 0.05, "lr_decay": 0.5}):
        message = refusal(**other)
        assert "the run was trained with other learning-rate settings (lr, schedule, lr_decay" \
            in message and "resume with the settings it was trained with" in message
        assert "29 November" not in message
    # a warm-up added: the rates of the older warm-up schedule are a run's without a warm-up
    assert "the older warm-up schedule (an mlplab from before 29 November 2026 dropped an exp " \
        "or step schedule by lr_decay^warmup_epochs at the end of a warm-up; it now starts " \
        "from lr), or without this warm-up." in refusal(lr=0.05, lr_decay=0.9, warmup_epochs=1)
    same = Trainer(lr=0.05, lr_decay=0.9, **{**settings, "epochs": 5})
    same.resume(first.state_dict(), same_schedule=True)
    assert same.fit(MLP(64, [16], 10, seed=0), X, digits.y_train).lr[:3] == first.history.lr


def test_resume_from_an_epoch_checkpoint(tmp_path, digits):
    """Simulate a crash right after epoch 2's checkpoint by keeping a copy of it."""
    saved = {}

    class Keep(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:  # runs after the checkpoint callback of that epoch
                saved["bytes"] = (tmp_path / "a" / "checkpoint.npz").read_bytes()

    full = train_run(FAST, out=tmp_path / "a", data=digits, plots=False, callbacks=[Keep()])
    (tmp_path / "a" / "metrics.json").unlink()
    (tmp_path / "a" / "checkpoint.npz").write_bytes(saved["bytes"])
    again = resume_run(tmp_path / "a", data=digits, plots=False)
    assert again.history.loss == full.history.loss
    np.testing.assert_array_equal(again.model.params["W1"], full.model.params["W1"])
    # another run's checkpoint copied into the folder is refused, not trained on
    (tmp_path / "a" / "metrics.json").unlink()
    (tmp_path / "a" / "checkpoint.npz").write_bytes(saved["bytes"])
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    (tmp_path / "a" / "config.json").write_text(json.dumps({**cfg, "hidden": [64]}))
    with pytest.raises(ValueError, match=r"hidden_sizes \[32\], but \S*config.json says "
                                         r"\[64\]: either config.json was edited"):
        resume_run(tmp_path / "a", data=digits, plots=False)
    (tmp_path / "a" / "config.json").write_text(json.dumps({**cfg, "activation": "tanh"}))
    with pytest.raises(ValueError, match=r"activation 'relu', but \S*config.json says 'tanh'"):
        resume_run(tmp_path / "a", data=digits, plots=False)
    # nor is other data with another number of features (4x4 crops of the images)
    import dataclasses

    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg))
    crops = dataclasses.replace(digits, **{f"X_{s}": getattr(digits, f"X_{s}")[:, :4, :4]
                                           for s in ("train", "val", "test")})
    with pytest.raises(ValueError, match="the dataset has 16 features but the checkpoint's "
                                         "model expects 64; resume with the run's own dataset"):
        resume_run(tmp_path / "a", data=crops, plots=False)


def _trained_with_first_checkpoint(config, run, **options):
    """Train ``config`` into ``run``; return its config.json and the bytes of the checkpoint of
    its first epoch, from which :func:`_resume_edited` resumes it again and again."""
    saved = {}

    class Keep(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                saved["bytes"] = (run / "checkpoint.npz").read_bytes()

    train_run(config, out=run, plots=False, callbacks=[Keep()], **options)
    return json.loads((run / "config.json").read_text()), saved["bytes"]


def _resume_edited(run, cfg, checkpoint, data=None, **edits):
    """Resume ``run`` from ``checkpoint`` (bytes) with its config.json ``cfg`` edited."""
    (run / "metrics.json").unlink(missing_ok=True)
    (run / "checkpoint.npz").write_bytes(checkpoint)
    (run / "config.json").write_text(json.dumps({**cfg, **edits}))
    return resume_run(run, data=data, plots=False)


def test_resume_refuses_settings_edited_since_the_checkpoint(tmp_path, digits, capsys):
    """The checkpoint records the settings the continued training depends on (optimiser,
    learning rate and schedule, reg, batches, ...) and a resume refuses a config.json edited
    since, naming the setting and both values. Before, the trainer state kept no reg: an edited
    reg (or lr_decay, for a run stopped in its first epochs) went on under the new value without
    a word, and an edited lr was blamed on "an mlplab from before 29 November 2026"."""
    run = tmp_path / "a"
    cfg, first = _trained_with_first_checkpoint(FAST, run, data=digits)
    extra = load_checkpoint(run / "checkpoint.npz")[0].extra
    assert extra["settings"]["reg"] == cfg["reg"] and extra["settings"]["lr"] == cfg["lr"]
    assert "settings" not in io.load_model(run / "model.npz").extra  # the checkpoint's alone

    def resume_edited(**edits):
        return _resume_edited(run, cfg, first, data=digits, **edits)

    ckpt, config = run / "checkpoint.npz", run / "config.json"
    for edits, said in [
        ({"reg": 0.01}, "reg 0.0001, but {config} now says reg 0.01"),
        ({"lr_decay": 0.5}, "lr_decay 0.95, but {config} now says lr_decay 0.5"),
        ({"lr": 0.01}, "lr 0.001, but {config} now says lr 0.01"),
        ({"batch_size": 32, "optimizer": "momentum"},
         "optimizer \"adam\", batch_size 64, but {config} now says optimizer \"momentum\", "
         "batch_size 32"),
    ]:
        value = "value" if len(edits) == 1 else "values"
        with pytest.raises(ValueError, match=re.escape(
                f"{ckpt} was trained with " + said.format(config=config) + ": resumed, the run "
                "would go on under other settings than it was trained with. Put back the "
                f"original {value} in config.json to resume it, or start a new run with the new "
                f"{value} (another out).")):
            resume_edited(**edits)
    assert main(["train", "--resume", str(run)]) == 1  # the command line says how
    err = capsys.readouterr().err.splitlines()  # the error in one line, not after "resuming"
    assert len(err) == 1 and err[0].startswith("mlplab train: error: ") and \
        "now says optimizer \"momentum\", batch_size 32" in err[0] and \
        err[0].endswith(f"(mlplab train --like {run} --out DIR).")
    # the original values resume; so does a checkpoint of an mlplab that recorded no settings
    assert resume_edited().metrics["status"] == "completed"
    arrays = io.read_npz(ckpt)
    meta = json.loads(str(arrays["__meta__"]))
    del meta["extra"]["settings"]
    io.write_npz(ckpt, {**arrays, "__meta__": io.json_array(meta)})
    first = ckpt.read_bytes()
    assert resume_edited(reg=0.01).metrics["status"] == "completed"


def test_resume_refuses_a_network_edited_since_the_checkpoint_saying_what_to_do(tmp_path,
                                                                                digits):
    """The settings record leaves the network to the checkpoint's own model: an edited hidden
    or dropout was refused as "it is not this run's checkpoint", which said neither that
    config.json may have been edited nor what to do."""
    run = tmp_path / "a"
    cfg, first = _trained_with_first_checkpoint(FAST, run, data=digits)
    ckpt, config = run / "checkpoint.npz", run / "config.json"
    for edits, said in [({"hidden": [16]}, "hidden_sizes [32], but {config} says [16]"),
                        ({"dropout": 0.5}, "dropout 0.0, but {config} says 0.5")]:
        with pytest.raises(ValueError, match=re.escape(
                f"{ckpt} holds a network with " + said.format(config=config) + ": either "
                "config.json was edited since, and putting back the original value resumes the "
                "run, or the checkpoint is another run's; a network of the new shape starts as "
                "a new run (another out).")):
            _resume_edited(run, cfg, first, data=digits, **edits)
    assert _resume_edited(run, cfg, first, data=digits).metrics["status"] == "completed"


def test_resume_refuses_other_splits_of_the_data_where_it_was(tmp_path, digits):
    """The checkpoint's record of the splits was checked only for data that moved (data_dir):
    a config.json whose val_size or data_seed was edited, or other data given in Python, went
    on training the checkpoint on other splits (the mid-epoch row order aside) without a word."""
    import dataclasses

    run = tmp_path / "a"
    cfg, first = _trained_with_first_checkpoint({**FAST, "data_seed": 0}, run)

    def resume_edited(data=None, **edits):
        return _resume_edited(run, cfg, first, data=data, **edits)

    ckpt = run / "checkpoint.npz"
    with pytest.raises(ValueError, match=re.escape(
            f"the train split of digits has {len(digits.y_train) - 120} images, but the run was "
            f"trained with {len(digits.y_train)} (see {ckpt}): it is not the run's data. (If "
            "config.json's val_size, test_size or data_seed was edited, put back the value the "
            "run was started with.)")):
        resume_edited(val_size=300)
    with pytest.raises(ValueError, match="the val split of digits is not the one this run was "
                                         "trained with \\(as many images, but other ones\\)"):
        resume_edited(data_seed=1)
    with pytest.raises(ValueError, match="the val split of digits is not the one this run"):
        resume_edited(dataclasses.replace(digits, X_val=digits.X_val[::-1],
                                          y_val=digits.y_val[::-1]))
    assert resume_edited().metrics["status"] == "completed"


def test_resume_deletes_the_partial_writes_of_a_killed_run_and_nothing_else(tmp_path,
                                                                             digits):
    """A run killed mid-write leaves its atomic writes' temporary files (``.<name>.<random>``
    beside each run file); resuming deletes them, but not a hidden file of the user's, even
    one whose name starts like a run file's."""
    run = tmp_path / "a"
    train_run(FAST, out=run, data=digits, plots=False)
    (run / "metrics.json").unlink()  # killed while writing its results
    partial = [".checkpoint.npz.k2x8.npz", ".model.npz.a1b2.npz", ".metrics.json.zz9.json",
               ".loss.png.q1.png"]
    mine = [".notes", ".gitignore", ".checkpoint.npz", ".model.npz-backup"]
    for name in partial + mine:
        (run / name).write_text("x")
    resume_run(run, data=digits, plots=False)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == sorted(mine)


def test_resume_of_a_run_killed_before_it_saved_anything_says_to_start_it_anew(tmp_path,
                                                                               capsys):
    """A run SIGKILLed as it began leaves no folder, or one holding only its lock file and an
    atomic write's temporary file: --resume said "is not a run folder (no config.json)", not
    that nothing was saved and how to go on."""
    assert main(["train", "--resume", str(tmp_path / "never")]) == 1
    never = tmp_path / "never"
    assert f"no run to resume in {never}: no such folder, so nothing was saved (stopped as it " \
        "began, before it made the folder; or another folder was meant); start it anew with " \
        f"the command that began it (--out {never}), without --resume." in capsys.readouterr().err
    run = tmp_path / "begun"
    run.mkdir()
    (run / ".lock").write_text("")
    (run / ".config.json.k2x8.json").write_text("{")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"no run to resume in {run}: nothing was saved in it (stopped as it began, before it "
            f"wrote config.json); start it anew with mlplab.runs.train_run(..., out='{run}')")):
        resume_run(run)
    assert not never.exists() and sorted(p.name for p in run.iterdir()) == \
        [".config.json.k2x8.json", ".lock"]  # nothing made or removed
    (run / "notes.txt").write_text("mine")  # a folder of something else: not a run folder
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        resume_run(run)


def test_resume_of_a_run_whose_checkpoint_was_deleted_says_it_starts_again(tmp_path, digits):
    """An interrupted run whose checkpoint.npz was deleted was resumed from its first epoch
    without a word ("resuming"), replacing the model and history of the epochs it had."""
    run = _stopped_after_two_epochs(tmp_path / "r", digits)
    (run / "checkpoint.npz").unlink()
    with pytest.warns(UserWarning, match=re.escape(
            f"{run} has no checkpoint.npz (deleted?) though it holds metrics.json and model.npz "
            "and history.csv of epochs trained before: the run starts again from its first "
            "epoch")):
        result = resume_run(run, data=digits, plots=False)
    assert result.metrics["epochs"] == FAST["epochs"]
    killed = tmp_path / "k"  # killed before its first checkpoint: config.json alone, no word
    killed.mkdir()
    shutil.copy(run / "config.json", killed / "config.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resume_run(killed, data=digits, plots=False)


@pytest.mark.parametrize("text,why", [('{"my": 1}', "unknown run options: my"),
                                      ("[1]", "not a JSON object"),
                                      # valid keys, but no run's: it stood for a killed run
                                      ("{}", NO_DATASET), ('{"epochs": 3}', NO_DATASET)])
def test_a_new_run_into_a_folder_of_another_tools_config_is_told_what_it_is(tmp_path, text, why,
                                                                          capsys):
    """--out into a folder holding another tool's config.json said it "already holds a run" and
    to continue it with --resume, which then refused it as a damaged run's."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "config.json").write_text(text)
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "proj")]) == 1
    err = capsys.readouterr().err
    assert (f"{tmp_path / 'proj' / 'config.json'} is not a valid run configuration ({why}): "
            "another tool's, or damaged, and no run of mlplab's beside it; choose another "
            "--out.") in err and "--resume" not in err


def test_a_config_without_a_dataset_is_refused_not_read_as_the_digits_defaults(tmp_path,
                                                                              digits):
    """A config.json without "dataset" (`{}`, say) was a run's on the defaults: evaluate scored
    the model on the digits and resume trained on them."""
    run = tmp_path / "run"
    train_run(FAST, out=run, data=digits, plots=False)
    (run / "config.json").write_text('{"epochs": 3}')
    for call in (lambda: evaluate_run(run), lambda: resume_run(run, plots=False),
                 lambda: run_config(run)):
        with pytest.raises(ValueError, match=r"config\.json is not a valid run configuration: "
                                             "it has no .dataset. key"):
            call()


@pytest.mark.parametrize("text,why", [("{}", NO_DATASET), ('{"epochs": 3}', NO_DATASET),
                                      ('{"my": 1}', "unknown run options: my")])
def test_evaluating_a_lone_config_of_no_run_does_not_advise_a_refused_resume(tmp_path, capsys,
                                                                            text, why):
    """A folder holding only a config.json without "dataset" was taken for a run killed before
    its first epoch ended: evaluate and predict advised `mlplab train --resume`, which refuses
    it (no "dataset" key)."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "config.json").write_text(text)
    expected = (f"has no model.npz; its config.json is not a valid run configuration ({why}): "
                "another tool's, or damaged; pass a run folder written by mlplab")
    with pytest.raises(FileNotFoundError, match=re.escape(expected + ".runs.train_run.")):
        evaluate_run(tmp_path / "proj")
    assert main(["evaluate", str(tmp_path / "proj")]) == 1
    err = capsys.readouterr().err
    assert expected + " train." in err and "--resume" not in err


def test_a_changed_split_is_counted_in_the_singular_too():
    """"(1 images then, 2 now)" before."""
    from mlplab.runs.splits import check_same_split

    X, y = np.zeros((2, 3), np.float32), np.array([0, 1])
    with pytest.raises(ValueError, match=r"the val split of digits is not the one this run was "
                                         r"trained with \(1 image then, 2 now\)"):
        check_same_split({"val_size": 1}, "val", X, y, "digits")


def test_starting_again_removes_the_killed_attempts_partial_config(tmp_path, digits):
    """As the refusal above advises, the run is started again with the same --out: the killed
    attempt's half-written config.json (a temporary file that never became the real one) was
    left in the finished run for good."""
    run = tmp_path / "begun"
    run.mkdir()
    (run / ".config.json.k2x8.json").write_text("{")
    (run / ".notes").write_text("mine")  # a hidden file of the user's stays
    train_run(FAST, out=run, data=digits, plots=False)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [".notes"]


def test_an_interrupted_run_and_its_resume_report_the_whole_run(tmp_path, digits):
    """An interrupted run reports no test accuracy (its model is half-trained; eval_test
    measures the finished one), and its resume reports the whole run's: the test accuracy of
    the final model and the seconds of both parts (the checkpoint's, here made 1000 to stand
    out, plus those since the resume), not only the latter."""
    class CtrlC(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if iteration == 30:
                os.kill(os.getpid(), signal.SIGINT)

    run = tmp_path / "a"
    part = train_run({**FAST, "eval_test": True}, out=run, data=digits, plots=False,
                     callbacks=[CtrlC()])
    assert part.interrupted and "test_accuracy" not in part.metrics
    assert "test_accuracy" not in json.loads((run / "metrics.json").read_text())
    arrays = io.read_npz(run / "checkpoint.npz")
    state = json.loads(str(arrays["__trainer__"]))
    assert 0 < state["seconds"] < 60
    arrays["__trainer__"] = io.json_array({**state, "seconds": 1000.0})
    io.write_npz(run / "checkpoint.npz", arrays)
    resumed = resume_run(run, data=digits, plots=False)
    assert 1000 < resumed.metrics["seconds"] < 1060
    assert resumed.metrics["test_accuracy"] == pytest.approx(resumed.model.accuracy(
        resumed.preprocessing.transform(digits.X_test), digits.y_test))
    assert json.loads((run / "metrics.json").read_text()) == resumed.metrics


def test_a_run_resumed_after_its_best_epoch_still_restores_it(tmp_path, digits):
    """With early stopping, a run killed after its best epoch but before its stop resumes to the
    uninterrupted result: the best parameters so far travel in the checkpoint, and are the ones
    restored at the stop (not the last epoch's, as if the best had been forgotten)."""
    import dataclasses

    # validation labels the network cannot learn: the accuracy wanders, and the run stops early
    noisy = dataclasses.replace(digits, y_val=np.random.RandomState(0).randint(
        10, size=len(digits.y_val)))
    cfg = {**FAST, "epochs": 30, "patience": 2, "lr": 0.01}
    full = train_run(cfg, out=tmp_path / "full", data=noisy, plots=False)
    best = full.metrics["best_epoch"]
    assert full.metrics["stopped_early"] and full.metrics["epochs"] == best + 2
    saved = {}

    class Keep(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == best + 1:  # after the best epoch, before the stop
                saved["bytes"] = (tmp_path / "a" / "checkpoint.npz").read_bytes()

    train_run(cfg, out=tmp_path / "a", data=noisy, plots=False, callbacks=[Keep()])
    (tmp_path / "a" / "metrics.json").unlink()
    (tmp_path / "a" / "checkpoint.npz").write_bytes(saved["bytes"])
    again = resume_run(tmp_path / "a", data=noisy, plots=False)
    assert again.metrics["best_epoch"] == best and again.history.loss == full.history.loss
    for k, v in full.model.state_dict().items():
        np.testing.assert_array_equal(again.model.state_dict()[k], v)


def test_resume_refuses_an_edited_or_foreign_trainer_state(tmp_path, digits):
    """A checkpoint whose optimiser slots or counters do not fit the run is refused: resuming
    would otherwise reset Adam's moments, take Adam's v for a velocity or train the wrong length."""
    run = tmp_path / "a"
    adam = {**FAST, "optimizer": "adam", "lr": 1e-3}
    saved = {}

    class Keep(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                saved["arrays"] = io.read_npz(run / "checkpoint.npz")

    train_run(adam, out=run, data=digits, plots=False, callbacks=[Keep()])

    def resume_with(edit, config=adam):
        arrays = dict(saved["arrays"])
        state = json.loads(str(arrays["__trainer__"]))
        edit(arrays, state)
        arrays["__trainer__"] = io.json_array(state)
        io.write_npz(run / "checkpoint.npz", arrays)
        (run / "metrics.json").unlink(missing_ok=True)
        (run / "config.json").write_text(json.dumps(RunConfig.from_dict(config).to_dict()))
        return resume_run(run, data=digits, plots=False)

    def drop_slots(arrays, state):
        for key in [k for k in arrays if k.startswith("optimizer/") and k != "optimizer/__t__"]:
            del arrays[key]

    for edit, message in [
        (drop_slots, "the optimizer state lacks W1/m, W1/v"),
        (lambda a, s: s.update(iteration=-50), "iteration -50 and epoch 2 do not fit a run of"),
        (lambda a, s: s.update(iteration=10**6), "iteration 1000000 and epoch 2 do not fit"),
        (lambda a, s: s.update(epoch=7), "iteration .* and epoch 7 do not fit"),
        # the losses are an array of their own since 2 Dec 2026, and in the JSON before
        (lambda a, s: a.update({"history/loss": a["history/loss"][:-1]}),
         "the history has .* losses"),
        (lambda a, s: a.update({"history/loss": a["history/loss"].astype(str)}),
         r"the saved losses are not a list of numbers \(<U32 \(\d+,\)\)"),
        (lambda a, s: (s["history"].update(loss=a.pop("history/loss").tolist()[:-1])),
         "the history has .* losses"),
        (lambda a, s: (a.pop("history/loss"), s["history"].update(loss=None)),
         "'loss' is not a list of numbers"),
        (lambda a, s: s["history"].update(best_epoch="x"), "'best_epoch' is not an integer"),
        # said "does not fit the model" with the model's own shape; and "start the run again"
        # led to the same folder, which a new run refuses as holding one
        (lambda a, s: a.update({"optimizer/W1/v": a["optimizer/W1/v"] * np.nan}),
         r"W1/v holds NaN or infinite values .*start the run again with a new out\."),
        (lambda a, s: a.update({"optimizer/W1/m": a["optimizer/W1/m"][:3]}),
         r"W1/m does not fit the model .*with a new out\."),
        # the best parameters so far, which early stopping would restore
        (lambda a, s: a.update({"best/W1": a["param/W1"] * np.nan}),
         r"best/W1 holds NaN or infinite values .*with a new out\."),
        (lambda a, s: a.update({"best/W1": a["param/W1"][:3]}),
         r"best/W1 does not fit the model .*with a new out\."),
        # the epoch's shuffled row order: row numbers, each training row once
        (lambda a, s: a.update(order=a["order"].astype(np.float64)),
         r"the saved row order is not a list of row numbers .*with a new out\."),
        (lambda a, s: a.update(order=np.zeros_like(a["order"])),
         f"the saved row order is not a permutation of the {len(digits.y_train)} training rows"),
        # the model's dtype, which the trainer state records
        (lambda a, s: s.update(dtype=64), r"'dtype' is missing or of the wrong type.*new out\."),
        (lambda a, s: s.update(dtype="float64"), "the saved trainer state is a float64 run's, "
                                                 "but the model is float32"),
    ]:
        with pytest.raises(ValueError, match=message):
            resume_with(edit)
    # another optimiser or run length in config.json: refused by the checkpoint's record of
    # the settings, and where there is none (an older mlplab's), by the trainer state itself
    with pytest.raises(ValueError, match='trained with optimizer "adam", but .* now says '
                                         'optimizer "momentum"'):
        resume_with(lambda a, s: None, {**FAST, "optimizer": "momentum"})
    with pytest.raises(ValueError, match="trained with epochs 4, but .* now says epochs 1"):
        resume_with(lambda a, s: None, {**adam, "epochs": 1})

    def unrecorded(arrays, state):
        meta = json.loads(str(arrays["__meta__"]))
        del meta["extra"]["settings"]
        arrays["__meta__"] = io.json_array(meta)

    with pytest.raises(ValueError, match="'W1/m' is not state of the momentum optimizer"):
        resume_with(unrecorded, {**FAST, "optimizer": "momentum"})
    # a run of 1 epoch (config.json edited) cannot go on from the end of epoch 2
    per_epoch = len(digits.y_train) // 64
    with pytest.raises(ValueError, match=f"iteration {2 * per_epoch} and epoch 2 do not fit a "
                                         f"run of {per_epoch} iterations"):
        resume_with(unrecorded, {**adam, "epochs": 1})
    io.write_npz(run / "checkpoint.npz", io.read_npz(run / "model.npz"))  # a model, no state
    with pytest.raises(ValueError, match=r"checkpoint.npz is a model file, not a checkpoint"):
        resume_run(run, data=digits, plots=False)
    assert json.loads(str(saved["arrays"]["__trainer__"]))["dtype"] == "float32"
    # a checkpoint of an mlplab before 1 Dec 2026 records no dtype: its arrays are checked
    resumed = resume_with(lambda a, s: s.pop("dtype"))
    assert resumed.metrics["status"] == "completed"
    resumed = resume_with(lambda a, s: None)  # the checkpoint itself is fine
    assert resumed.metrics["status"] == "completed"


def test_a_run_length_given_beside_a_config_replaces_the_configs(tmp_path, digits):
    """train_run(config, epochs=2) on the config of a run that went by iterations (the
    exercise's presets: 1,000) recorded both and trained the config's 1,000 iterations, ignoring
    epochs=2 without a word; the length given now replaces the config's, as it does a preset's,
    and the same holds the other way round."""
    by_iters = train_run(preset="exercise-default", data=digits, iters=30, out=tmp_path / "a",
                         plots=False).config
    assert (by_iters.epochs, by_iters.iters) == (None, 30)
    again = train_run(json.loads((tmp_path / "a" / "config.json").read_text()), data=digits,
                      epochs=2, plots=False)
    per_epoch = len(digits.y_train) // by_iters.batch_size
    assert (again.config.epochs, again.config.iters) == (2, None)
    assert (again.metrics["epochs"], again.metrics["iterations"]) == (2, 2 * per_epoch)
    assert again.config.preset == "exercise-default" and again.config.lr == by_iters.lr
    by_epochs = train_run(by_iters, data=digits, epochs=3, plots=False).config
    back = train_run(by_epochs, data=digits, iters=7, plots=False)
    assert (back.config.epochs, back.config.iters, back.metrics["iterations"]) == (None, 7, 7)


def test_a_configs_run_length_replaces_its_presets(digits):
    """train_run({"epochs": 2, ...}, preset="exercise-default") ran 2 epochs until the config
    became build_config's base (cf576e2); then it kept the preset's iters=1000 beside epochs=2
    and trained 1,000 iterations, ignoring the config's length. Either way round, the length a
    layer gives replaces the one below it."""
    config = {"dataset": "digits", "hidden": [16], "epochs": 2}
    result = train_run(config, preset="exercise-default", data=digits, plots=False)
    assert (result.config.epochs, result.config.iters, result.metrics["epochs"]) == (2, None, 2)
    by_iters = build_config("twolayer-fast", base={"iters": 7})
    assert (by_iters.epochs, by_iters.iters) == (None, 7)
    full = build_config("exercise-default", base=by_iters.to_dict())  # both keys: as they are
    assert (full.epochs, full.iters) == (None, 7)


def test_a_run_records_its_environment_and_a_resume_elsewhere_says_so(tmp_path, digits):
    """metrics.json, the model file and the checkpoint record what trained the run (mlplab's
    commit, NumPy, its BLAS and threads, the CPU); resuming with another of those still finishes
    the run, with a warning that it will not match an uninterrupted one to the last digit. Before,
    nothing recorded them, and "bit for bit" silently did not hold."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from mlplab import environment

    run, saved = tmp_path / "run", {}

    class Keep(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                saved["arrays"] = io.read_npz(run / "checkpoint.npz")

    full = train_run(FAST, out=run, data=digits, plots=False, callbacks=[Keep()])
    now = environment.record()
    assert json.loads((run / "metrics.json").read_text())["environment"] == now
    assert full.metrics["environment"] == now
    assert io.load_model(run / "model.npz").extra["environment"] == now
    assert "environment" not in io.load_model(run / "model.npz").extra["metrics"]  # once
    assert np.__version__ == now["numpy"] and now["blas"] != "unknown"

    def resume_with(edit, before=None):
        arrays = dict(saved["arrays"])
        meta = json.loads(str(arrays["__meta__"]))
        edit(meta["extra"]["environment"])
        if before is not None:  # a run resumed elsewhere once already
            meta["extra"]["earlier_environments"] = before
        arrays["__meta__"] = io.json_array(meta)
        io.write_npz(run / "checkpoint.npz", arrays)
        (run / "metrics.json").unlink(missing_ok=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = resume_run(run, data=digits, plots=False)
        assert again.history.loss == full.history.loss  # the same machine did the arithmetic
        resumed["metrics"] = json.loads((run / "metrics.json").read_text())
        return [str(w.message) for w in caught if "environment" in str(w.message)]

    resumed: dict = {}
    assert resume_with(lambda env: None) == []  # the same environment: nothing to say
    assert "earlier_environments" not in resumed["metrics"]
    said = resume_with(lambda env: env.update(numpy="0.9.9", cpu="Another CPU"))
    assert len(said) == 1 and "checkpoint.npz was written with another environment (numpy " \
        f"0.9.9 -> {np.__version__}; cpu Another CPU -> {now['cpu']})" in said[0]
    assert "will not match an uninterrupted run's to the last digit" in said[0]
    # metrics.json keeps where the earlier epochs were trained, not only the last environment
    elsewhere = {**now, "numpy": "0.9.9", "cpu": "Another CPU"}
    assert resumed["metrics"]["environment"] == now
    assert resumed["metrics"]["earlier_environments"] == [elsewhere]
    first = {**now, "cpu": "The first CPU"}
    resume_with(lambda env: env.update(numpy="0.9.9", cpu="Another CPU"), before=[first])
    assert resumed["metrics"]["earlier_environments"] == [first, elsewhere]
    assert resume_with(lambda env: None, before=[first]) == []  # resumed where it last ran
    assert resumed["metrics"]["earlier_environments"] == [first]
    assert resume_with(lambda env: env.pop("numpy")) == []  # what was not recorded is not compared
    assert resume_with(lambda env: env.update(platform="another OS")) == []  # not the numbers'
    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    if pools and max(p["num_threads"] for p in pools) > 1:  # another thread count
        with threadpool_limits(1, user_api="blas"):
            said = resume_with(lambda env: None)
        assert len(said) == 1 and ", 1 thread)" in said[0]


def test_a_run_without_progress_shows_no_bar_while_its_folder_decodes(tmp_path, digits,
                                                                       monkeypatch, capsys,
                                                                       jupyter_kernel):
    """train_run(progress=False), the default, still showed a folder dataset's "decoding pics"
    bar (in a notebook, in every training cell; in a terminal, under mlplab train --quiet):
    load_dataset had no progress option. The run's own setting now goes to the loader, whose
    default, for its direct callers, is still a bar."""
    for i, (image, label) in enumerate(zip(digits.X_train[:60], digits.y_train[:60])):
        (tmp_path / "pics" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(tmp_path / "pics" / str(label) / f"{i}.png")
    options = {"dataset": f"folder:{tmp_path / 'pics'}", "val_size": 10, "test_size": 10,
               "hidden": [8], "epochs": 1, "batch_size": 20}

    def decoded_with_a_bar(load, cache):  # a cache of its own: the images are decoded
        monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / cache))
        capsys.readouterr()
        load()
        return "decoding pics" in capsys.readouterr().err

    assert decoded_with_a_bar(lambda: load_dataset(f"folder:{tmp_path / 'pics'}"), "c1")
    assert not decoded_with_a_bar(lambda: train_run(options, plots=False), "c2")
    assert decoded_with_a_bar(lambda: train_run(options, plots=False, progress=True), "c3")
    run = tmp_path / "run"
    assert not decoded_with_a_bar(lambda: main(["train", "--dataset", options["dataset"],
                                                "--val-size", "10", "--test-size", "10",
                                                "--hidden", "8", "--epochs", "1", "--quiet",
                                                "--no-plots", "--out", str(run)]), "c4")
    (run / "metrics.json").unlink()  # as if killed: --resume loads the data again
    assert not decoded_with_a_bar(lambda: resume_run(run, plots=False), "c5")


def test_resume_from_moved_data(tmp_path, digits):
    """A run whose folder dataset was moved resumes from the new place (data_dir) to the result
    it would have had, and other data there is refused."""
    import shutil

    for i, (image, label) in enumerate(zip(digits.X_train[:120], digits.y_train[:120])):
        (tmp_path / "pics" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(tmp_path / "pics" / str(label) / f"{i}.png")
    options = {"dataset": f"folder:{tmp_path / 'pics'}", "val_size": 20, "test_size": 10,
               "hidden": [8], "epochs": 4, "batch_size": 30}
    run, saved = tmp_path / "run", {}

    class Keep(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                saved["bytes"] = (run / "checkpoint.npz").read_bytes()

    full = train_run(options, out=run, plots=False, callbacks=[Keep()])
    (run / "metrics.json").unlink()  # as if killed after epoch 2
    (run / "checkpoint.npz").write_bytes(saved["bytes"])
    (tmp_path / "pics").rename(tmp_path / "moved")
    with pytest.raises(Exception, match="no such folder"):
        resume_run(run, plots=False)
    shutil.copytree(tmp_path / "moved", tmp_path / "fewer")
    next((tmp_path / "fewer" / "3").iterdir()).unlink()
    with pytest.raises(ValueError, match="split of .* has .* images, but the run was trained "
                                         "with"):
        resume_run(run, plots=False, data_dir=tmp_path / "fewer")
    # as many images of each class, but other ones: the validation and test splits differ
    shutil.copytree(tmp_path / "moved", tmp_path / "other")
    for png in (tmp_path / "other").glob("*/*.png"):
        Image.fromarray(255 - np.asarray(Image.open(png))).save(png)
    with pytest.raises(ValueError, match=r"the val split of .* is not the one this run was "
                                         r"trained with \(as many images, but other ones\)"):
        resume_run(run, plots=False, data_dir=tmp_path / "other")
    again = resume_run(run, plots=False, data_dir=tmp_path / "moved")
    assert again.history.loss == full.history.loss
    np.testing.assert_array_equal(again.model.params["W1"], full.model.params["W1"])
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == f"folder:{tmp_path / 'moved'}"  # evaluate looks there now
    assert evaluate_run(run, "val")["accuracy"] == pytest.approx(again.metrics["val_accuracy"])


def test_loading_options_with_a_lent_dataset_are_refused_not_ignored(tmp_path, digits):
    """train_run(data=ds, val_size=100, image_size=4, data_seed=3) trained on ds's own split
    (180 validation images) and 8x8 images without a word, and recorded those. Loading options
    that the lent dataset does not have are refused, naming them and the load_dataset call that
    would apply them, before any folder is made; the defaults and values the dataset has are
    accepted, and the run records the dataset's own."""
    with pytest.raises(ValueError, match=r"^val_size=100, image_size=4, data_seed=3 cannot apply "
                                         r"to data=, a dataset loaded already \(digits; .*"
                                         r"load_dataset\('digits', val_size=100, image_size=4, "
                                         r"seed=3\)"):
        train_run(data=digits, out=tmp_path / "r", val_size=100, image_size=4, data_seed=3,
                  hidden=[8], epochs=1, plots=False)
    for refused in ({"dataset": "fashion-mnist"}, {"download": True}, {"test_size": 0.5}):
        with pytest.raises(ValueError, match=f"^{next(iter(refused))}=.* cannot apply to data="):
            train_run(data=digits, out=tmp_path / "r", hidden=[8], epochs=1, plots=False,
                      **refused)
    assert not (tmp_path / "r").exists()
    # what the dataset has, or the defaults, are no conflict
    same = {"dataset": "digits", "val_size": len(digits.y_val), "test_size": len(digits.y_test),
            "image_size": None, "data_seed": 0, "data_dir": None, "download": False}
    result = train_run(data=digits, hidden=[8], epochs=1, plots=False, **same)
    assert {k: getattr(result.config, k) for k in same} == same


def test_loading_options_the_lent_dataset_has_in_another_spelling_are_no_conflict():
    """Another spelling of what the lent dataset has loads the same images with load_dataset:
    its name ("DIGITS", as load_dataset takes it), its image size ("8", (8, 8) for
    image_size=8) and a validation fraction that load_dataset turns into its split size. They
    were refused, with advice to call load_dataset with them, which gives the same dataset."""
    ds = load_dataset("digits", seed=0, image_size=8, val_size=0.25)
    for name, size in (("DIGITS", "8"), (" digits ", (8, 8)), ("digits", "8x8")):
        again = load_dataset(name, seed=0, image_size=size, val_size=0.25)
        assert again.name == ds.name and np.array_equal(again.X_val, ds.X_val)
        result = train_run(data=ds, dataset=name, image_size=size, val_size=0.25, hidden=[8],
                           iters=2, plots=False)
        assert (result.config.dataset, result.config.val_size) == ("digits", len(ds.y_val))
    # a fraction that load_dataset turns into another split is still refused
    with pytest.raises(ValueError, match=r"^val_size=0.1 cannot apply to data="):
        train_run(data=ds, val_size=0.1, hidden=[8], iters=2, plots=False)
    # data_seed None on a random split, as load_dataset(seed=None) made it: the run was refused
    # with advice to load it with seed=None, which drew a split that was refused again
    unseeded = load_dataset("digits", seed=None)
    result = train_run(data=unseeded, data_seed=None, hidden=[8], iters=2, plots=False)
    again = load_dataset("digits", seed=result.config.data_seed)
    assert np.array_equal(again.X_val, unseeded.X_val)


def test_split_sizes_with_a_lent_dataset_are_read_as_load_dataset_reads_them(tmp_path, digits):
    """A fraction and a count each work with data= as they do for a dataset loaded by name: the
    test fraction that made the lent dataset's split was refused (only a validation fraction
    was turned into a count), as was a fraction in NumPy's float32, and a size that load_dataset
    refuses (NaN, 1.0, -1, more images than there are, True) was refused as one the dataset
    "cannot apply", with advice to load it so (which failed), or raised OverflowError
    (infinity). Such sizes are now refused in load_dataset's own words."""
    from mlplab.data import DatasetError

    for key in ("val_size", "test_size"):
        split = "y_" + key[:-len("_size")]
        for size in (0.2, np.float32(0.2), 300, np.int64(300), 0):
            ds = load_dataset("digits", seed=0, **{key: size})
            result = train_run(data=ds, hidden=[8], iters=1, plots=False, **{key: size})
            assert getattr(result.config, key) == len(getattr(ds, split))
        for bad in (float("nan"), float("inf"), 1.0, -1, -0.2, 1.5, 5000, True, "0.2"):
            with pytest.raises(DatasetError) as named:
                load_dataset("digits", seed=0, **{key: bad})
            with pytest.raises(DatasetError) as lent:
                train_run(data=digits, hidden=[8], iters=1, plots=False, **{key: bad})
            assert str(lent.value) == str(named.value), (key, bad)
    # a test fraction of an official test set (MNIST's IDX files): of the test images, which
    # a dataset loaded with it no longer has all of
    (tmp_path / "mnist").mkdir()
    rs = np.random.RandomState(0)
    for name, shape in (("train-images-idx3-ubyte", (20, 28, 28)),
                        ("train-labels-idx1-ubyte", (20,)),
                        ("t10k-images-idx3-ubyte", (8, 28, 28)),
                        ("t10k-labels-idx1-ubyte", (8,))):
        arr = rs.randint(0, 10 if len(shape) == 1 else 256, shape).astype(np.uint8)
        head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in shape)
        (tmp_path / "mnist" / name).write_bytes(head + arr.tobytes())
    mnist = load_dataset("mnist", data_dir=tmp_path, val_size=4, test_size=0.25)
    result = train_run(data=mnist, test_size=0.25, hidden=[8], iters=1, plots=False)
    assert result.config.test_size == len(mnist.y_test) == 2
    with pytest.raises(ValueError, match=r"^test_size=0.5 cannot apply to data="):
        train_run(data=mnist, test_size=0.5, hidden=[8], iters=1, plots=False)


def test_a_data_dir_is_refused_only_for_a_lent_dataset_read_from_another(tmp_path, digits):
    """load_dataset ignores data_dir for the bundled digits (and records none), so
    train_run(data=digits, data_dir=D) was refused with advice to call load_dataset('digits',
    data_dir=D), which made the same dataset and was refused again. It is no conflict there; a
    dataset read from its files (MNIST's IDX files here) refuses another data_dir."""
    again = load_dataset("digits", data_dir=tmp_path, seed=0)
    assert np.array_equal(again.X_val, digits.X_val)
    result = train_run(data=again, data_dir=str(tmp_path), hidden=[8], iters=2, plots=False)
    assert result.config.data_dir is None
    rs = np.random.RandomState(0)
    (tmp_path / "a" / "mnist").mkdir(parents=True)
    for name, shape in (("train-images-idx3-ubyte", (20, 28, 28)),
                        ("train-labels-idx1-ubyte", (20,)),
                        ("t10k-images-idx3-ubyte", (4, 28, 28)),
                        ("t10k-labels-idx1-ubyte", (4,))):
        arr = rs.randint(0, 10 if len(shape) == 1 else 256, shape).astype(np.uint8)
        head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in shape)
        (tmp_path / "a" / "mnist" / name).write_bytes(head + arr.tobytes())
    mnist = load_dataset("mnist", data_dir=tmp_path / "a", val_size=4)
    train_run(data=mnist, data_dir=str(tmp_path / "a"), hidden=[8], iters=2, plots=False)
    with pytest.raises(ValueError, match=r"^data_dir=.* cannot apply to data="):
        train_run(data=mnist, data_dir=str(tmp_path / "b"), hidden=[8], iters=2, plots=False)


def test_a_run_given_its_data_records_that_data(tmp_path, digits):
    """train_run(data=ds) without dataset= recorded the default, digits, in config.json: the run
    folder then named data it was not trained on, and evaluate_run refused it (digits has no 30
    test images of this shape) or, with a matching shape, would evaluate other images."""
    for i, (image, label) in enumerate(zip(digits.X_train[:120], digits.y_train[:120])):
        (tmp_path / "pics" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.repeat(image, 3, axis=2)).resize((6, 6)).save(
            tmp_path / "pics" / str(label) / f"{i}.png")
    ds = load_dataset(f"folder:{tmp_path / 'pics'}", val_size=20, test_size=30)
    result = train_run(data=ds, out=tmp_path / "run", hidden=[8], epochs=2, plots=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"] == result.config.dataset == ds.name
    assert (config["val_size"], config["test_size"]) == (20, 30)
    assert evaluate_run(tmp_path / "run", "val")["accuracy"] == pytest.approx(
        result.metrics["val_accuracy"])
    assert evaluate_run(tmp_path / "run", "test")["size"] == 30


def test_a_run_whose_data_lost_images_is_told_so_not_to_change_a_flag(tmp_path, digits, capsys):
    """A folder that lost images cannot give the run's recorded split sizes: evaluate named
    --val-size, a flag it does not have (and train_run's val_size=, which evaluate_run lacks);
    it now names the run's recorded size and says the data is not the run's."""
    for i, (image, label) in enumerate(zip(digits.X_train[:60], digits.y_train[:60])):
        (tmp_path / "pics" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(tmp_path / "pics" / str(label) / f"{i}.png")
    train_run({**FAST, "dataset": f"folder:{tmp_path / 'pics'}", "val_size": 20,
               "test_size": 10, "epochs": 1}, out=tmp_path / "run", plots=False)
    for png in sorted((tmp_path / "pics").glob("*/*.png"))[::2]:
        png.unlink()  # 30 images left: the run's 10 test and 20 validation images leave none
    message = (r"the run's val_size 20 leaves no training images \(only 20 available after the "
               r"test split\)\. This is not the data the run was trained with")
    with pytest.raises(ValueError, match=f"^{message}"):
        evaluate_run(tmp_path / "run")
    assert main(["evaluate", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err) and "--val-size" not in err, err
    (tmp_path / "run" / "metrics.json").unlink()  # as if killed: --resume loads the data too
    assert main(["train", "--resume", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err) and "--val-size" not in err, err


def test_a_run_whose_data_is_gone_is_pointed_at_data_dir_not_download(tmp_path, monkeypatch,
                                                                      capsys):
    """Resuming or evaluating a run whose data is no longer where config.json says is told to
    give the new place: with --data-dir on the command line, from Python with resume_run's
    data_dir= and evaluate_run's data= (a notebook was told to type --data-dir). The loaders'
    advice to add --download, which neither command takes, is left out. A new run keeps that
    advice."""
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))
    rs = np.random.RandomState(0)
    (tmp_path / "m").mkdir()
    for name, arr in {"train-images-idx3-ubyte": rs.randint(0, 256, (40, 28, 28)),
                      "train-labels-idx1-ubyte": np.arange(40) % 10,
                      "t10k-images-idx3-ubyte": rs.randint(0, 256, (10, 28, 28)),
                      "t10k-labels-idx1-ubyte": np.arange(10) % 10}.items():
        header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
        (tmp_path / "m" / name).write_bytes(header + arr.astype(np.uint8).tobytes())
    run = tmp_path / "run"
    options = {"dataset": "mnist", "val_size": 10, "hidden": [8], "epochs": 2, "batch_size": 10}
    full = train_run(options, data_dir=str(tmp_path / "m"), out=run, plots=False)
    (run / "metrics.json").unlink()  # as if killed while saving its results: resumable
    (tmp_path / "m").rename(tmp_path / "moved")

    with pytest.raises(DatasetNotFoundError) as gone:
        resume_run(run, plots=False)
    said = str(gone.value)
    assert "mnist not found" in said and "download=True" not in said, said
    assert "--resume" not in said and "--data-dir DIR" not in said, said
    assert f"give its new place: resume_run({str(run)!r}, data_dir=DIR) (for a folder" in said
    with pytest.raises(DatasetNotFoundError) as gone:
        evaluate_run(run)
    said = str(gone.value)
    assert "download=True" not in said and "--data-dir DIR" not in said, said
    advice = f"evaluate_run({str(run)!r}, data_dir=DIR)"
    assert f"give its new place: {advice} (for a folder" in said
    # the advised call works, with the names mlplab.runs gives
    import mlplab.runs

    advised = eval(advice.replace("DIR", repr(str(tmp_path / "moved"))), vars(mlplab.runs))
    assert advised["accuracy"] == pytest.approx(full.metrics["val_accuracy"])
    with pytest.raises(ValueError, match="not both"):
        evaluate_run(run, data=mlplab.runs.load_run_dataset(mlplab.runs.relocated(
            mlplab.runs.load_run(run)[1], tmp_path / "moved")), data_dir=tmp_path / "moved")
    # on the command line, the commands with --data-dir
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert "mnist not found" in err and "--download" not in err
    # (with the --no-plots, plots=False, that the run was started with)
    assert f"give its new place: mlplab train --resume {run} --no-plots --data-dir DIR (for a " \
        "folder" in err
    assert main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err
    assert "--download" not in err
    assert f"give its new place: mlplab evaluate {run} --data-dir DIR (for a folder" in err
    # a split other than the default is kept in the advice, on both sides
    assert main(["evaluate", str(run), "--split", "test"]) == 1
    err = capsys.readouterr().err
    assert f"mlplab evaluate {run} --split test --data-dir DIR (for a folder" in err
    with pytest.raises(DatasetNotFoundError, match=re.escape(
            f"evaluate_run({str(run)!r}, 'test', data_dir=DIR)")):
        evaluate_run(run, "test")
    # a wrong --data-dir: the loader's message, still without --download
    assert main(["evaluate", str(run), "--data-dir", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "mnist not found" in err and "--download" not in err
    # a new run can fetch its data itself: the advice stays (in Python's terms)
    with pytest.raises(DatasetNotFoundError, match=r"\(or pass download=True\)"):
        train_run(options, data_dir=str(tmp_path / "m"), plots=False)
    # and the advised command works
    again = resume_run(run, plots=False, data_dir=tmp_path / "moved")
    assert again.metrics["val_accuracy"] == full.metrics["val_accuracy"]

def test_a_run_keeps_the_channels_it_was_trained_with(tmp_path, digits):
    """Grey GIFs decode as one channel; a run whose model saw them as three (as mlplab did
    before) is still evaluated and resumed on three."""
    for i, (image, label) in enumerate(zip(digits.X_train[:60], digits.y_train[:60])):
        (tmp_path / "gifs" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(tmp_path / "gifs" / str(label) / f"{i}.gif")
    name = f"folder:{tmp_path / 'gifs'}"
    assert load_dataset(name).image_shape == (8, 8, 1)
    rgb = load_dataset(name, channels=3, val_size=10, test_size=10)
    assert rgb.image_shape == (8, 8, 3)
    np.testing.assert_array_equal(rgb.X_train[..., 0], rgb.X_train[..., 2])
    run = tmp_path / "run"
    options = {"dataset": name, "val_size": 10, "test_size": 10, "hidden": [8], "epochs": 3,
               "batch_size": 20}
    saved = {}

    class Keep(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                saved["bytes"] = (run / "checkpoint.npz").read_bytes()

    full = train_run(options, out=run, data=rgb, plots=False, callbacks=[Keep()])
    assert evaluate_run(run, "val")["accuracy"] == pytest.approx(full.metrics["val_accuracy"])
    (run / "metrics.json").unlink()
    (run / "checkpoint.npz").write_bytes(saved["bytes"])
    again = resume_run(run, plots=False)
    np.testing.assert_array_equal(again.model.params["W1"], full.model.params["W1"])
    # the library API still takes NumPy sizes
    assert RunConfig(hidden=np.array([32, 16])).hidden == [32, 16]
    assert RunConfig(hidden=(32.0,)).hidden == [32]


def _forget_records(path, keys):
    """``path`` (a metrics.json, or a checkpoint's metadata) as an older mlplab wrote it: without
    ``keys``."""
    if path.suffix == ".json":
        values = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in values.items() if k not in keys}))
        return
    arrays = io.read_npz(path)
    meta = json.loads(str(arrays[io.META_KEY]))
    meta["extra"] = {k: v for k, v in meta["extra"].items() if k not in keys}
    splits = meta["extra"].get("splits", {})
    meta["extra"]["splits"] = {k: v for k, v in splits.items() if k not in keys}
    io.write_npz(path, {**arrays, io.META_KEY: io.json_array(meta)})


@pytest.mark.parametrize("kind", ["exif", "16-bit"])
def test_a_run_whose_images_an_older_mlplab_decoded_otherwise_is_refused(tmp_path, digits,
                                                                          kind):
    """Phone photos with an EXIF orientation are turned upright since 30 Nov 2026 (b57131d),
    16-bit greyscale images scaled rather than clipped since 29 Nov (e39bd28). A run folder
    written before then (no image_decoding, no environment, and before 29 Nov 07:59 no split
    fingerprints either) was evaluated on pixels its model never saw without a word, or refused
    as data that "changed since" when it had not, and resumed training on them silently. Both
    are refused, naming the change; a run of the current mlplab, or one on images no change
    touched, is evaluated and resumed as before."""
    folder = tmp_path / kind
    for i, (image, label) in enumerate(zip(digits.X_train[:90], digits.y_train[:90])):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        grey = image[:, :, 0]
        if kind == "exif":
            exif = Image.Exif()
            exif[0x0112] = 6 if i % 3 == 0 else 1
            Image.fromarray(np.stack([grey, grey[::-1], grey.T], -1)).save(
                folder / str(label) / f"{i}.png", exif=exif.tobytes())
        else:
            Image.fromarray(grey.astype(np.uint16) * 257).save(folder / str(label) / f"{i}.png")
    run = tmp_path / "run"
    options = {"dataset": f"folder:{folder}", "val_size": 15, "test_size": 15, "hidden": [8],
               "epochs": 3, "batch_size": 20}
    saved = {}

    class Keep(Callback):
        def __init__(self, folder):
            self.folder = folder

        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                saved[self.folder] = (self.folder / "checkpoint.npz").read_bytes()

    full = train_run(options, out=run, plots=False, callbacks=[Keep(run)])
    assert full.metrics["image_decoding"] == 4
    assert evaluate_run(run)["accuracy"] == pytest.approx(full.metrics["val_accuracy"])
    # written by this mlplab before it recorded image_decoding: the environment tells
    _forget_records(run / "metrics.json", {"image_decoding"})
    assert evaluate_run(run)["accuracy"] == pytest.approx(full.metrics["val_accuracy"])
    what = "EXIF orientation" if kind == "exif" else "16-bit, 32-bit or floating-point greyscale"
    refused = (f"was written before mlplab changed how it decodes some images of {folder} "
               f"\\({folder}.* is a .*{what}.*\\), and does not record which way its model saw "
               "them: evaluating it ")
    # before the environment was recorded, and (29 Nov 07:59) the splits' fingerprints
    _forget_records(run / "metrics.json", {"environment", "split_sha1"})
    with pytest.raises(ValueError, match=refused):
        evaluate_run(run)
    if kind == "exif":  # a run between the two changes: its fingerprints are of sideways images
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["split_sha1"] = {"val": "0" * 40, "test": "0" * 40}
        (run / "metrics.json").write_text(json.dumps(metrics))
        with pytest.raises(ValueError, match=refused):
            evaluate_run(run)
    (run / "metrics.json").unlink()
    (run / "checkpoint.npz").write_bytes(saved[run])
    _forget_records(run / "checkpoint.npz", {"image_decoding", "environment"} |
                    ({"split_sha1"} if kind == "16-bit" else set()))
    with pytest.raises(ValueError, match=refused.replace("evaluating", "resuming")):
        resume_run(run, plots=False)
    # the same old files on images that decode as they did then
    plain = tmp_path / "plain"
    for i, (image, label) in enumerate(zip(digits.X_train[:90], digits.y_train[:90])):
        (plain / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(plain / str(label) / f"{i}.png")
    old = tmp_path / "old"
    full = train_run({**options, "dataset": f"folder:{plain}"}, out=old, plots=False,
                     callbacks=[Keep(old)])
    _forget_records(old / "metrics.json", {"image_decoding", "environment", "split_sha1"})
    assert evaluate_run(old)["accuracy"] == pytest.approx(full.metrics["val_accuracy"])
    (old / "metrics.json").unlink()
    (old / "checkpoint.npz").write_bytes(saved[old])
    _forget_records(old / "checkpoint.npz", {"image_decoding", "environment", "split_sha1"})
    again = resume_run(old, plots=False)
    np.testing.assert_array_equal(again.model.params["W1"], full.model.params["W1"])


def test_a_run_stopped_by_ctrl_c_says_so_and_how_to_resume_it(tmp_path, digits):
    """train_run and resume_run return a run stopped by Ctrl-C (a notebook's kernel interrupt)
    rather than raise: in a notebook the cell then ended with no word that the run had stopped,
    or of how to continue it. A RunInterruptedWarning says both, pointing at the caller's line;
    a run that completes says nothing."""
    from mlplab.runs import RunInterruptedWarning

    class CtrlC(Callback):
        def __init__(self, at):
            self.at = at

        def on_iteration_end(self, trainer, iteration, loss):
            if iteration == self.at:
                os.kill(os.getpid(), signal.SIGINT)

    run = tmp_path / "run"
    go_on = rf"; mlplab\.runs\.resume_run\({re.escape(repr(str(run)))}\) continues it\.$"
    with pytest.warns(RunInterruptedWarning, match=rf"^the run in {re.escape(str(run))} was "
                      rf"interrupted after 1 epoch \(30 iterations\){go_on}") as said:
        result = train_run(FAST, out=run, data=digits, plots=False, callbacks=[CtrlC(30)])
    assert result.interrupted and said[0].filename == __file__
    with pytest.warns(RunInterruptedWarning, match=r"after 2 epochs \(50 iterations\)" + go_on):
        assert resume_run(run, data=digits, plots=False, callbacks=[CtrlC(50)]).interrupted
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunInterruptedWarning)
        assert not resume_run(run, data=digits, plots=False).interrupted
    with pytest.warns(RunInterruptedWarning, match=r"trained in memory \(out=None\), so there "
                                                   r"is no checkpoint to resume\.$"):
        train_run(FAST, data=digits, callbacks=[CtrlC(30)])


def test_a_run_that_did_not_record_its_random_split_seed_is_refused_not_split_anew(tmp_path,
                                                                                    digits):
    """Before 30 Nov 2026 a run asked for a random split (train_run(data_seed=None)) wrote
    data_seed null: evaluate drew another split each time, whose validation images were mostly
    training images (an accuracy that changed at every call, or 'the data changed since' once
    splits were fingerprinted), and --resume trained on the other split. Both now say why the
    run cannot be measured; the model file still predicts."""
    run = tmp_path / "run"

    class CtrlC(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if iteration == 30:
                os.kill(os.getpid(), signal.SIGINT)

    assert train_run({**FAST, "data_seed": 3}, out=run, plots=False,
                     callbacks=[CtrlC()]).interrupted
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "data_seed": None}))
    refused = r"drawn at random, and its config.json does not record the seed \(data_seed null"
    with pytest.raises(ValueError, match=refused):
        evaluate_run(run)
    with pytest.raises(ValueError, match=refused):
        resume_run(run, plots=False)
    assert main(["evaluate", str(run)]) == 1
    assert io.load_model(run / "model.npz").model.predict(
        digits.X_val.reshape(len(digits.X_val), -1).astype(np.float32)).shape == (180,)
    # a lent dataset is the caller's to give
    assert evaluate_run(run, data=load_dataset("digits", seed=3))["size"] == 180


def test_bad_run_options_are_clear_errors(digits):
    with pytest.raises(ValueError, match="unknown run options: colour"):
        train_run({"colour": "red"}, data=digits)
    with pytest.raises(ValueError, match="augmentation"):
        build_config(augment=["rotate"])
    with pytest.raises(ValueError, match="unknown preprocessing"):
        build_config(preprocessing="whiten")
    with pytest.raises(ValueError, match="unknown preset"):
        build_config("exercise-best")


def test_evaluating_an_interrupted_run_says_whose_model_it_is(tmp_path, digits):
    """A run stopped with Ctrl-C is evaluated on the model saved when it stopped, and one
    resumed after that and killed before it saved has a checkpoint further on than its
    model.npz: both were evaluated without a word of it."""
    run = _stopped_after_two_epochs(tmp_path / "r", digits)
    with pytest.warns(UserWarning, match=re.escape(
            f"{run} was interrupted: its model is the one saved when it stopped after 2 epochs; "
            f"resume_run({str(run)!r}, plots=False) finishes it.")):  # (as it was started)
        evaluate_run(run, data=digits)
    Image.fromarray(digits.X_test[0, :, :, 0]).save(tmp_path / "one.png")
    with pytest.warns(UserWarning, match=re.escape(f"{run} was interrupted: its model is the "
                                                   "one saved when it stopped after 2 epochs")):
        predict_images(run, [tmp_path / "one.png"], progress=False)  # (it said nothing)
    later = (run / "model.npz").stat().st_mtime + 5  # as if resumed and killed at a later epoch
    os.utime(run / "checkpoint.npz", (later, later))
    with pytest.warns(UserWarning, match="the run was resumed since and stopped again before it "
                                         "saved, so its checkpoint has gone further than this "
                                         "model"):
        evaluate_run(run, data=digits)
    # resumed by another process now: --resume would be refused, so it is not advised
    from mlplab.runs.lock import run_lock

    with run_lock(run), pytest.warns(UserWarning) as said:
        evaluate_run(run, data=digits)
    assert len(said) == 1 and str(said[0].message).startswith(
        f"{run} is being trained again by another process (process {os.getpid()} on "
        f"{socket.gethostname()}, since ")
    assert str(said[0].message).endswith(
        ": its model is the one saved when it stopped after 2 epochs; evaluate it again once "
        "training ends (mlplab runs shows how far it has got).")
    resume_run(run, data=digits, plots=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # finished: nothing to say
        evaluate_run(run, data=digits)

    class FirstEpoch(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    train_run(FAST, out=tmp_path / "one", data=digits, plots=False, callbacks=[FirstEpoch()])
    with pytest.warns(UserWarning, match="when it stopped after 1 epoch; "):  # not "1 epochs"
        evaluate_run(tmp_path / "one", data=digits)


#: the files a NumPy run on digits writes as it saves its results, in order (no figures with
#: plots=False)
_RESULTS = ("model.npz", "history.csv", "loss.png", "accuracy.png", "confusion.png",
            "weights.png", "metrics.json")
_RESULTS_NO_PLOTS = ("model.npz", "history.csv", "metrics.json")


@pytest.mark.parametrize("draw,n", [(True, n) for n in range(1, len(_RESULTS) + 1)]
                         + [(False, n) for n in range(1, len(_RESULTS_NO_PLOTS) + 1)])
def test_a_second_ctrl_c_at_each_write_of_a_resumed_run_leaves_one_model(draw, n, tmp_path,
                                                                         digits, monkeypatch,
                                                                         ctrl_c_at_write):
    """A run stopped (Ctrl-C after epoch 2, history and figures written), resumed, stopped
    again after epoch 3, and a second Ctrl-C (out at once, unsaved) as its n-th result file was
    written. metrics.json stayed the first stop's, then history.csv and the figures did, beside
    a model.npz of 3 epochs (and mlplab runs --plot drew that stale history). Now the stop's
    results go before the new model is written: every file there is of the model in model.npz,
    the run reads as unfinished, evaluate names the model it has, and --resume ends it as a run
    never stopped."""
    from mlplab.runs import RunInterruptedWarning, summarize_run
    from mlplab.runs.files import FIGURES
    from mlplab.runs.listing import epoch_curves

    whole = train_run(FAST, data=digits, plots=False)
    run = tmp_path / "r"

    class StopAt(Callback):
        def __init__(self, epoch):
            self.epoch = epoch

        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == self.epoch:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.warns(RunInterruptedWarning):
        train_run(FAST, out=run, data=digits, callbacks=[StopAt(2)])
    assert {"history.csv", "loss.png", "metrics.json"} <= {p.name for p in run.iterdir()}
    written = ctrl_c_at_write(run, n)
    with pytest.raises(KeyboardInterrupt):
        resume_run(run, data=digits, plots=draw, callbacks=[StopAt(3)])
    monkeypatch.undo()
    order = _RESULTS if draw else _RESULTS_NO_PLOTS
    assert written == list(order[:n - 1])  # stopped at the file meant
    # every result file there was written with the model.npz beside it: the stop's went first
    results = {"history.csv", "metrics.json", *FIGURES}
    assert {p.name for p in run.iterdir()} & results == set(written) - {"model.npz"}
    saved = 3 if "model.npz" in written else 2
    assert io.load_model(run / "model.npz").extra["metrics"]["epochs"] == saved
    if (run / "history.csv").exists():
        assert len(read_history(run / "history.csv")["val_acc"]) == saved
    assert load_checkpoint(run / "checkpoint.npz")[1]["epoch"] == 3
    # listed and plotted as the checkpoint's 3 epochs (or the new history.csv's)
    record = summarize_run(run)
    assert (record["status"], record["epochs"]) == ("unfinished", 3)
    assert len(epoch_curves(run)["val_acc"]) == 3
    further = "; the run was resumed since and stopped again before it saved, so its " \
        "checkpoint has gone further than this model" if saved == 2 else ""
    with pytest.warns(UserWarning) as said:
        evaluate_run(run, data=digits)
    assert [str(w.message) for w in said] == [
        f"{run} was interrupted: its model is the one saved when it stopped after {saved} "
        f"epochs{further}; it was stopped while it wrote its results, so it has no metrics.json "
        f"yet; resume_run({str(run)!r}) finishes it."]
    done = resume_run(run, data=digits, plots=draw)
    assert done.metrics["status"] == "completed" and done.history.loss == whole.history.loss
    assert json.loads((run / "metrics.json").read_text())["val_accuracy"] == \
        whole.metrics["val_accuracy"]
    assert (run / "loss.png").exists() == draw
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # finished: nothing to say
        evaluate_run(run, data=digits)


def test_a_resumed_run_that_crashed_is_plotted_as_its_checkpoint_as_it_is_listed(tmp_path,
                                                                                  digits):
    """A run stopped after epoch 2 (its history.csv written), resumed, and crashed after the
    checkpoint of epoch 3 (an error, a kill: nothing more written). mlplab runs listed it
    unfinished with the checkpoint's 3 epochs, but --plot drew the stop's history.csv of 2,
    which it preferred to the checkpoint, as docs/training.md says it does not for an
    unfinished run. A finished run's history.csv is still what --plot draws."""
    from mlplab.runs import summarize_run
    from mlplab.runs.listing import epoch_curves

    run = _stopped_after_two_epochs(tmp_path / "r", digits)
    assert len(read_history(run / "history.csv")["val_acc"]) == 2

    class Crash(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 3:
                raise RuntimeError("crashed here")

    with pytest.raises(RuntimeError, match="crashed here"):
        resume_run(run, data=digits, plots=False, callbacks=[Crash()])
    state = load_checkpoint(run / "checkpoint.npz")[1]
    assert state["epoch"] == 3 and (run / "history.csv").exists()
    record = summarize_run(run)
    assert (record["status"], record["epochs"]) == ("unfinished", 3)
    curves = epoch_curves(run)
    assert curves["val_acc"] == list(state["history"]["val_acc"])
    # resumed to its end: its own history.csv, written after the checkpoint, is drawn
    done = resume_run(run, data=digits, plots=False)
    assert epoch_curves(run)["val_acc"] == done.history.val_acc
    assert len(done.history.val_acc) == FAST["epochs"]


def test_a_ctrl_c_while_a_resumed_run_saves_its_completed_results_is_said(tmp_path, digits,
                                                                        monkeypatch):
    """A stopped run resumed to its end, and a Ctrl-C while it writes its results: its
    metrics.json said "interrupted after 2 epochs" of a model.npz trained to the end. Now it
    has none, and evaluate says its model is the finished one and --resume writes the rest."""
    import mlplab.runs.training as rt

    run = _stopped_after_two_epochs(tmp_path / "r", digits)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rt, "write_history", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        resume_run(run, data=digits, plots=False)
    monkeypatch.undo()
    assert not (run / "metrics.json").exists()
    with pytest.warns(UserWarning, match=re.escape(
            f"{run} has completed training, but it was stopped while it wrote its results, so "
            "it has no metrics.json yet: its model is the finished one after 4 epochs; "
            f"resume_run({str(run)!r}, plots=False) writes them.")):
        evaluate_run(run, data=digits)
    assert resume_run(run, data=digits, plots=False).metrics["epochs"] == 4
    assert (run / "history.csv").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_run(run, data=digits)


def test_a_run_fits_its_preprocessing_on_the_training_split_only():
    """Validation and test rows far from the training rows: statistics leaked from them into
    the run's preprocessing would leave the training rows off centre (a mutant fitting on all
    three splits passed every run test)."""
    from mlplab.data import Dataset

    rng = np.random.RandomState(0)
    X = rng.randn(300, 6)
    y = (X[:, 0] > 0).astype(np.int64)
    X_train, X_val, X_test = X[:200], X[200:250] + 100.0, X[250:] - 50.0
    ds = Dataset("mine", ["a", "b"], X_train, y[:200], X_val, y[200:250], X_test, y[250:])
    for preprocessing in ("exercise", "standardize"):
        res = train_run(data=ds, hidden=[4], epochs=1, preprocessing=preprocessing, plots=False)
        centred = res.preprocessing.transform(X_train).mean(axis=0)
        np.testing.assert_allclose(centred, 0, atol=1e-4, err_msg=preprocessing)


def test_evaluate_preprocesses_a_chunk_at_a_time(tmp_path, digits, monkeypatch):
    """evaluate preprocessed the whole split at once: a float32 copy of it (600 MB for
    CIFAR-10's training split) where the network takes a chunk at a time. Chunked, the figures
    are the same."""
    import mlplab.models

    res = train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    whole = res.model.predict(res.preprocessing.transform(digits.X_train))
    monkeypatch.setattr(mlplab.models, "EVAL_CHUNK", 50)
    seen = []
    transform = type(res.preprocessing).transform

    def counted(self, X):
        seen.append(len(X))
        return transform(self, X)

    monkeypatch.setattr(type(res.preprocessing), "transform", counted)
    ev = evaluate_run(tmp_path / "r", "train", data=digits)
    assert ev["accuracy"] == float(np.mean(whole == digits.y_train))
    assert max(seen) == 50 and sum(seen) == len(digits.y_train)


def test_evaluate_and_predict(tmp_path, digits):
    res = train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    ev = evaluate_run(tmp_path / "r", "test", data=digits)
    pred = res.model.predict(res.preprocessing.transform(digits.X_test))
    assert ev["accuracy"] == pytest.approx(np.mean(pred == digits.y_test))
    assert np.sum(ev["confusion_matrix"]) == len(digits.y_test)
    # rows are the true classes; a class's accuracy is its recall, the share of its images found
    np.testing.assert_array_equal(ev["confusion_matrix"],
                                  sklearn_confusion_matrix(digits.y_test, pred, labels=range(10)))
    from sklearn.metrics import recall_score

    np.testing.assert_allclose(ev["per_class_accuracy"],
                               recall_score(digits.y_test, pred, labels=range(10), average=None,
                                            zero_division=0))

    files = []
    for i in range(3):
        Image.fromarray(digits.X_test[i, :, :, 0]).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    out = predict_images(tmp_path / "r", files, top=2)
    probs = res.model.predict_proba(res.preprocessing.transform(digits.X_test[:3]))
    for r, p in zip(out, probs):
        assert [t["class"] for t in r["top"]] == [digits.classes[k] for k in np.argsort(-p)[:2]]
        assert r["top"][0]["probability"] == pytest.approx(p.max(), rel=1e-5)
    with pytest.raises(ValueError, match=r"bad.png: cannot read image \(.*\); check the file\."):
        (tmp_path / "bad.png").write_text("nope")
        predict_images(tmp_path / "r", [tmp_path / "bad.png"])
    # the model file alone is enough to predict; evaluate needs a sound config.json
    (tmp_path / "r" / "config.json").write_text("[]")
    assert predict_images(tmp_path / "r", files, top=2) == out
    with pytest.raises(ValueError, match="config.json is not a run configuration.*holds a list"):
        evaluate_run(tmp_path / "r", "test", data=digits)
    (tmp_path / "r" / "config.json").write_text('{"hidden": "abc"}')
    with pytest.raises(ValueError, match="config.json is not a valid run configuration"):
        evaluate_run(tmp_path / "r", "test", data=digits)
    (tmp_path / "r" / "config.json").unlink()
    assert predict_images(tmp_path / "r", files, top=2) == out
    # a model file whose metadata was edited is refused by name, not by a Python error
    model_path = tmp_path / "r" / "model.npz"
    original = io.read_npz(model_path)
    for change, message in [({"classes": ["a", "b"]}, r"class names \['a', 'b'\] are not 10"),
                            ({"classes": 5}, "class names 5 are not 10 names"),
                            ({"image_shape": "abc"}, "image_shape 'abc' does not fit its model"),
                            ({"image_shape": [4, 4, 1]}, r"image_shape \[4, 4, 1\] does not fit")]:
        arrays = dict(original)
        meta = json.loads(str(arrays["__meta__"]))
        meta["extra"].update(change)
        arrays["__meta__"] = io.json_array(meta)
        io.write_npz(model_path, arrays)
        with pytest.raises(ValueError, match="model.npz: its " + message):
            predict_images(tmp_path / "r", files)


def test_evaluate_refuses_a_split_whose_labels_changed(tmp_path, digits):
    """The split's fingerprint covers its labels, not only its images: the same images under
    another label (an image moved to another class folder) are not the split the run saw."""
    import dataclasses

    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    y = digits.y_val.copy()
    y[0] = (y[0] + 1) % len(digits.classes)  # one image relabelled, every pixel as it was
    with pytest.raises(ValueError, match=r"the val split of digits is not the one this run was "
                                         r"trained with \(as many images, but other ones\)"):
        evaluate_run(tmp_path / "r", "val", data=dataclasses.replace(digits, y_val=y))


def test_predict_decodes_images_as_training_does(tmp_path, digits):
    """A 16-bit greyscale file predicts as its 8-bit twin (the folder loader scales 16-bit
    images; predict used Pillow's convert("L"), which clips them to white), and an RGBA file as
    its RGB twin."""
    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    eight = digits.X_test[:4, :, :, 0]
    for i, img in enumerate(eight):
        Image.fromarray(img).save(tmp_path / f"{i}-8bit.png")
        Image.fromarray(img.astype(np.uint16) * 257).save(tmp_path / f"{i}-16bit.png")
        assert Image.open(tmp_path / f"{i}-16bit.png").mode.startswith("I")
    files8 = [tmp_path / f"{i}-8bit.png" for i in range(4)]
    files16 = [tmp_path / f"{i}-16bit.png" for i in range(4)]
    out8 = predict_images(tmp_path / "r", files8, top=10)
    out16 = predict_images(tmp_path / "r", files16, top=10)
    for a, b in zip(out8, out16):
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        for ta, tb in zip(a["top"], b["top"]):
            assert ta["probability"] == pytest.approx(tb["probability"], rel=1e-5)


def test_predict_takes_a_folder_of_images(tmp_path, digits, capsys):
    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    new = tmp_path / "new images"
    (new / "nested").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(digits.X_test[i, :, :, 0]).save(new / f"{i}.png")
    Image.fromarray(digits.X_test[3, :, :, 0]).save(new / "nested" / "3.png")
    (new / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (new / "README.txt").write_text("not an image")
    files = [new / f"{i}.png" for i in range(3)]
    out = predict_images(tmp_path / "r", [new])
    assert [r["image"] for r in out] == [str(f) for f in files]
    assert out == predict_images(tmp_path / "r", files)
    assert main(["predict", str(tmp_path / "r"), str(new), "--json"]) == 0
    assert [r["image"] for r in json.loads(capsys.readouterr().out)] == [str(f) for f in files]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(tmp_path / "r"), str(empty)]) == 1
    err = capsys.readouterr().err
    assert "empty: no image files in this folder" in err and "Errno" not in err
    assert "sub-folders" in err and "give them" not in err  # (it has none to name)
    for c in "ab":  # a folder dataset given as trained on: its class folders are named
        (tmp_path / "set" / c).mkdir(parents=True)
        Image.fromarray(digits.X_test[0, :, :, 0]).save(tmp_path / "set" / c / "0.png")
    assert main(["predict", str(tmp_path / "r"), str(tmp_path / "set")]) == 1
    assert (f"sub-folders are not searched); 2 of its sub-folders hold images (a folder "
            f"dataset's classes?): give them, as {tmp_path / 'set' / 'a'} "
            f"{tmp_path / 'set' / 'b'}.") in capsys.readouterr().err
    with pytest.raises(ValueError) as raised:  # from Python: a list to pass, not shell words
        predict_images(tmp_path / "r", [tmp_path / "set"])
    assert str(raised.value).endswith(
        f"give them, as {[str(tmp_path / 'set' / 'a'), str(tmp_path / 'set' / 'b')]!r}.")
    # more than two: the call that names them all lists the folders only (Path.glob('*/') was
    # advised, which lists the files beside them too on Python 3.10)
    (tmp_path / "set" / "c").mkdir()
    Image.fromarray(digits.X_test[0, :, :, 0]).save(tmp_path / "set" / "c" / "0.png")
    (tmp_path / "set" / "labels.csv").write_text("a,b,c")
    with pytest.raises(ValueError) as raised:
        predict_images(tmp_path / "r", [tmp_path / "set"])
    call = re.search(r" \.\.\. \((.*) names them all\)\.$", str(raised.value))
    assert call is not None, str(raised.value)
    assert eval(call[1], {"Path": Path}) == [tmp_path / "set" / c for c in "abc"]
    assert main(["predict", str(tmp_path / "r"), str(tmp_path / "missing.png")]) == 1
    assert "missing.png: no such image file." in capsys.readouterr().err
    # every unreadable file of a folder in one error
    (new / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (new / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"^2 of 5 image files cannot be read: .*cut\.jpg .*; "
                                         r".*empty\.png \(the file is empty, 0 bytes\); replace"):
        predict_images(tmp_path / "r", [new])


def test_predict_shows_a_bar_over_the_images_it_reads(tmp_path, digits, capsys, jupyter_kernel):
    """predict read its images without a bar (3,000 took 3 s). In a notebook (where a bar shows
    though stderr is no terminal) it shows one over the images; progress=False, none."""
    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    files = []
    for i in range(5):
        Image.fromarray(digits.X_test[i, :, :, 0]).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    capsys.readouterr()
    out = predict_images(tmp_path / "r", files)
    err = capsys.readouterr().err
    assert "reading images:" in err and "/5 " in err  # (its last frame is cleared: leave=False)
    assert predict_images(tmp_path / "r", files, progress=False) == out
    assert capsys.readouterr().err == ""


def test_predict_says_which_files_of_a_folder_it_cannot_read(tmp_path, digits, capsys):
    """A phone's .heic photos beside its .jpg ones were left out of `mlplab predict FOLDER`
    without a word (a class folder of a dataset warns about them)."""
    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("b.HEIC", "c.heic", "d.avif"):
        (photos / name).write_bytes(b"\0\0\0\x18ftypheic")
    with pytest.warns(UserWarning, match=r"3 files in image formats mlplab does not read are"):
        assert main(["predict", str(tmp_path / "r"), str(photos)]) == 1
    assert "photos: no image files in this folder" in capsys.readouterr().err
    Image.fromarray(digits.X_test[0, :, :, 0]).save(photos / "a.png")
    with pytest.warns(UserWarning, match=re.escape(
            f"{photos}: 3 files in image formats mlplab does not read are left out (1 .avif, "
            "2 .heic; e.g. b.HEIC); convert them to PNG or JPEG to classify them.")):
        out = predict_images(tmp_path / "r", [photos])
    assert [r["image"] for r in out] == [str(photos / "a.png")]
    for name in ("c.heic", "d.avif"):  # one: "1 file in image formats" before
        (photos / name).unlink()
    with pytest.warns(UserWarning, match=re.escape(
            f"{photos}: 1 file in an image format mlplab does not read is left out (1 .heic; "
            "e.g. b.HEIC); convert it to PNG or JPEG to classify it.")):
        predict_images(tmp_path / "r", [photos])


def test_predict_says_which_links_of_a_folder_point_to_nothing(tmp_path, digits):
    """A link named like an image whose target is gone was dropped from `mlplab predict FOLDER`
    without a word (fewer answers than files); a dataset's class folder warns about it."""
    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(digits.X_test[0, :, :, 0]).save(photos / "a.png")
    (photos / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.warns(UserWarning, match=re.escape(
            f"{photos}: 1 link named like images points to a file that does not exist and is "
            f"left out (e.g. gone.jpg -> {tmp_path / 'nowhere.jpg'}); fix or remove it.")):
        out = predict_images(tmp_path / "r", [photos])
    assert [r["image"] for r in out] == [str(photos / "a.png")]


def test_predict_leaves_out_a_loop_of_links_and_names_one_given(tmp_path, digits, capsys):
    """A loop of links named like images (l1.png -> l2.png -> l1.png) in a folder failed the
    whole folder ("cannot list the folder (Too many levels of symbolic links)"), even with
    --skip-unreadable; given by name it was "no such image file", though it is there."""
    from mlplab.data import DatasetError

    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(digits.X_test[0, :, :, 0]).save(photos / "a.png")
    (photos / "l1.png").symlink_to("l2.png")
    (photos / "l2.png").symlink_to("l1.png")
    with pytest.warns(UserWarning, match=re.escape(
            f"{photos}: 2 links named like images point to files that do not exist or go "
            "round in a loop and are left out (e.g. l1.png -> l2.png -> l1.png); fix or remove "
            "them.")):
        out = predict_images(tmp_path / "r", [photos], progress=False)
    assert [r["image"] for r in out] == [str(photos / "a.png")]
    loop = photos / "l1.png"
    with pytest.raises(DatasetError, match=re.escape(
            f"{loop}: a loop of symbolic links ({loop} -> l2.png -> l1.png; fix or remove one of "
            "them).")):
        predict_images(tmp_path / "r", [loop], progress=False)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_predict_reads_a_pipe_and_refuses_a_device(tmp_path, digits):
    """A pipe (a shell's <(cat a.png), /dev/stdin) is read as a file is (a check for named
    pipes had refused them); a device is refused, saying what it is."""
    import threading

    from mlplab.data import DatasetError

    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    Image.fromarray(digits.X_test[0, :, :, 0]).save(tmp_path / "a.png")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes((tmp_path / "a.png").read_bytes()))
    writer.start()
    try:
        piped = predict_images(tmp_path / "r", [fifo], progress=False)
    finally:
        writer.join(timeout=30)
    assert piped[0]["top"] == predict_images(tmp_path / "r", [tmp_path / "a.png"],
                                             progress=False)[0]["top"]
    (tmp_path / "dev.png").symlink_to("/dev/null")  # a device: not read
    with pytest.raises(DatasetError, match=re.escape(
            f"{tmp_path / 'dev.png'}: a character device, not an image file; save the image to "
            "a file and give that.")):
        predict_images(tmp_path / "r", [tmp_path / "dev.png"], progress=False)


def test_predict_refuses_an_empty_image_path(tmp_path, digits, monkeypatch, capsys):
    """`mlplab predict RUN "$IMG"` with IMG unset classified every image of the current folder
    (Path("") is "."), where an empty RUN is refused."""
    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    monkeypatch.chdir(tmp_path)
    Image.fromarray(digits.X_test[0, :, :, 0]).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exited:
        main(["predict", "r", ""])
    assert exited.value.code == 2
    assert "argument IMAGE: expected a path; got an empty text (an unset shell variable?)" in \
        capsys.readouterr().err
    with pytest.raises(ValueError, match=r"an image path is an empty text \(an unset shell "
                                         r"variable\?\); give image files or folders of them\."):
        predict_images("r", [""], progress=False)


def test_edited_run_files_are_refused_by_name(tmp_path, digits):
    run = tmp_path / "r"
    train_run(FAST, out=run, data=digits, plots=False)
    config = json.loads((run / "config.json").read_text())
    (run / "metrics.json").write_text("[1]")
    with pytest.raises(ValueError, match="metrics.json is not a run's metrics"):
        evaluate_run(run, "val", data=digits)
    with pytest.raises(ValueError, match="metrics.json is not a run's metrics"):
        resume_run(run, data=digits, plots=False)
    (run / "metrics.json").unlink()
    for edit, message in [({"hidden": None}, "hidden must be a list of layer sizes"),
                          ({"lr": "0.1"}, "lr must be a finite number > 0; got '0.1'"),
                          ({"dropout": "x"}, r"dropout must be in \[0, 1\); got 'x'")]:
        (run / "config.json").write_text(json.dumps({**config, **edit}))
        with pytest.raises(ValueError, match="config.json is not a valid run configuration: "
                                             + message):
            resume_run(run, data=digits, plots=False)
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="config.json is not a run configuration"):
        resume_run(run, data=digits, plots=False)


# --------------------------------------------------------------------------- presets
def test_exercise_presets_carry_the_exercise_recipe():
    d = build_config("exercise-default")
    assert (d.hidden, d.std, d.init, d.iters, d.batch_size, d.lr, d.lr_decay, d.reg) == \
        ([50], 1e-4, "normal", 1000, 200, 1e-4, 0.95, 0.25)
    assert (d.optimizer, d.sampling, d.preprocessing, d.augment, d.epochs) == \
        ("sgd", "replacement", "exercise", [], None)
    t = build_config("exercise-tuned")
    assert t.optimizer == "sgd" and len(t.hidden) == 1 and t.preprocessing == "exercise"
    assert build_config("exercise-default", epochs=3).iters is None  # flags override
    assert build_config("exercise-default", lr=1e-3).lr == 1e-3


def test_register_preset_validates():
    try:
        register_preset("tiny", {"hidden": [8], "epochs": 1, "description": "test"})
        assert get_preset("tiny") == {"hidden": [8], "epochs": 1}
        with pytest.raises(ValueError, match="already exists"):
            register_preset("tiny", {})
        with pytest.raises(ValueError, match="unknown run options"):
            register_preset("broken", {"hiden": [8]})
    finally:
        PRESETS.pop("tiny", None)


# --------------------------------------------------------------------------- plots
def test_weight_tiles_are_the_columns_of_W1(rng):
    W1 = rng.randn(8 * 8 * 3, 5)
    tiles = plots.weight_tiles(W1, (8, 8, 3))
    col = W1[:, 2].reshape(8, 8, 3)
    np.testing.assert_allclose(tiles[2], (col - col.min()) / (col.max() - col.min()))
    with pytest.raises(ValueError, match="does not hold"):
        plots.weight_tiles(W1, (8, 8, 1))


def test_confusion_matrix_counts():
    cm = plots.confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_confusion_matrix_refuses_labels_it_cannot_count(rng):
    y_true, y_pred = rng.randint(0, 4, 50), rng.randint(0, 4, 50)
    np.testing.assert_array_equal(plots.confusion_matrix(y_true, y_pred, 4),
                                  sklearn_confusion_matrix(y_true, y_pred, labels=range(4)))
    # -1 (an "unknown" label) was counted in the last class by NumPy's negative indexing
    with pytest.raises(ValueError, match=r"y_true has labels out of range \[0, 2\]: min -1"):
        plots.confusion_matrix([0, -1], [0, 2], 3)
    with pytest.raises(ValueError, match=r"y_pred has labels out of range \[0, 2\]"):
        plots.confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="integer class labels"):
        plots.confusion_matrix(["cat", "dog"], ["cat", "cat"], 2)
    with pytest.raises(ValueError, match="differ in length: 2 and 3"):
        plots.confusion_matrix([0, 1], [0, 1, 1], 2)


def test_plot_confusion_needs_a_name_per_class():
    # a 3-class matrix drawn with 2 names labelled only part of it, silently
    with pytest.raises(ValueError, match=r"cm of shape \(3, 3\) does not match 2 class names"):
        plots.plot_confusion(np.eye(3), ["a", "b"])


def test_confusion_labels_cut_long_class_names_in_the_middle():
    """A class named by a whole sentence (a folder dataset's) squeezed the matrix to a sliver
    beside its labels. Long names keep their start and end; names that would then read alike
    are kept whole."""
    import matplotlib.pyplot as plt

    long = "a photograph of a cat sitting on a mat in the sun"
    def matrix_inches(fig):
        fig.canvas.draw()
        box, (w, h) = fig.axes[0].get_position(), fig.get_size_inches()
        return box.width * w, box.height * h

    fig = plots.plot_confusion(np.eye(3), ["cat", "dog", "bird"])
    short = matrix_inches(fig)
    plt.close(fig)
    fig = plots.plot_confusion(np.eye(3), [long, "dog", "b" * 24])
    try:
        inches = matrix_inches(fig)
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels == [long[:11] + "\u2026" + long[-12:], "dog", "b" * 24]
        assert [t.get_text() for t in ax.get_xticklabels()] == labels
        # the figure grows for its labels: the matrix keeps most of its size (a quarter before)
        assert inches[0] > 0.75 * short[0] and inches[1] > 0.75 * short[1], (inches, short)
    finally:
        plt.close(fig)
    alike = ["x" * 11 + f"{i}" + "y" * 30 for i in range(2)]  # cut, both read x…y
    fig = plots.plot_confusion(np.eye(2), alike)
    try:
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == alike
    finally:
        plt.close(fig)


def test_confusion_of_many_classes_names_a_readable_few():
    """A folder dataset of 100 classes piled its 100 names along each axis into one black smear,
    and 1,000 classes took 9 s to draw 2,000 names: at most 30 are named, every step-th class,
    and the axis labels say so. 30 classes keep every name."""
    import matplotlib.pyplot as plt

    names = [f"class{i:04d}" for i in range(100)]
    fig = plots.plot_confusion(np.eye(100), names)
    try:
        ax = fig.axes[0]
        assert list(ax.get_yticks()) == list(range(0, 100, 4))
        assert [t.get_text() for t in ax.get_xticklabels()] == names[::4]
        assert [t.get_text() for t in ax.get_yticklabels()] == names[::4]
        assert ax.get_xlabel() == "predicted class (every 4th named, of 100)"
        assert ax.get_ylabel() == "true class (every 4th named, of 100)"
    finally:
        plt.close(fig)
    fig = plots.plot_confusion(np.eye(1000), [f"c{i}" for i in range(1000)])
    try:
        assert len(fig.axes[0].get_xticklabels()) == 30
        assert fig.axes[0].get_xlabel() == "predicted class (every 34th named, of 1000)"
    finally:
        plt.close(fig)
    fig = plots.plot_confusion(np.eye(30), names[:30])
    try:
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == names[:30]
        assert fig.axes[0].get_xlabel() == "predicted class"
    finally:
        plt.close(fig)
    assert [plots._ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 34, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "34th", "111th"]


def test_confusion_cells_read_against_the_colour_scale_and_no_grid_crosses_them():
    """CIFAR-10's matrix (diagonal 40-65%) drawn in the report's style: its grid crossed every
    cell through its number, numbers such as 40 were white on the palest blues (white above
    half the largest cell, not half the colour scale) and the colour bar read 0..1 beside cells
    in percent."""
    import matplotlib.pyplot as plt

    from mlplab.report.style import report_style

    cm = np.array([[40, 35, 25], [30, 65, 5], [10, 20, 70]])
    with report_style():
        fig = plots.plot_confusion(cm, ["a", "b", "c"])
    try:
        fig.canvas.draw()
        ax, bar = fig.axes
        assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())
        colours = {t.get_text(): t.get_color() for t in ax.texts}
        assert colours["40"] == colours["35"] == "black" and colours["70"] == "white", colours
        assert "%" in bar.get_ylabel() and bar.get_ylim() == (0.0, 100.0)
    finally:
        plt.close(fig)




def test_the_library_leaves_the_matplotlib_backend_to_its_user(tmp_path):
    # importing mlplab.plots switched a session to Agg: plt.show() showed nothing after it, and
    # a notebook's inline figures (MPLBACKEND=module://matplotlib_inline...) stopped appearing
    script = f"""
import matplotlib
import numpy as np
from mlplab import plots
from mlplab.data import load_dataset
from mlplab.data.preview import sample_grid
import mlplab.report.style
plots.save(plots.plot_loss(np.linspace(2, 1, 60)), {str(tmp_path / "loss.png")!r})
sample_grid(load_dataset("digits"), {str(tmp_path / "grid.png")!r}, per_class=1)
print(matplotlib.get_backend())
"""
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": pythonpath()}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg"]
    assert (tmp_path / "loss.png").stat().st_size and (tmp_path / "grid.png").stat().st_size
    # the command line draws into files only: Agg, whatever the environment says
    script = "import os; from mlplab.cli import main; main([]); print(os.environ['MPLBACKEND'])"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.split()[-1] == "Agg", done.stderr


def test_accuracy_figure_ticks_whole_epochs_only(rng):
    """Accuracies are measured at the end of each epoch; a 5-epoch run's figure had ticks at
    1.5, 2.5, ... as if there were measurements between them, and a 1-epoch run's 0.945, 0.960,
    ... 1.050."""
    import matplotlib.pyplot as plt

    for n in (1, 2, 5, 9, 300):
        fig = plots.plot_accuracy(rng.rand(n), rng.rand(n))
        try:
            fig.canvas.draw()
            ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= n]
            assert ticks and all(float(t).is_integer() for t in ticks), (n, ticks)
        finally:
            plt.close(fig)


def test_accuracy_figure_tells_train_from_validation_without_colour(rng):
    """Train and validation were both drawn 'o-', blue and orange: told apart by colour alone
    (in greyscale, to a colour-blind reader; a run of one epoch is two dots), and a run of over
    60 epochs had no markers at all. Validation has squares, train circles, at every length."""
    import matplotlib.pyplot as plt

    for n in (1, 3, 300):
        fig = plots.plot_accuracy(rng.rand(n), rng.rand(n), test_acc=0.5)
        try:
            lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
            assert lines["train"].get_marker() == "o", n
            assert lines["validation"].get_marker() == "s", n
            assert (lines["validation"].get_markevery() is None) == (n <= plots.MARKED_EPOCHS)
            drawn = fig.axes[0].get_legend()  # (legend_handles from Matplotlib 3.7)
            handles = getattr(drawn, "legend_handles", None) or drawn.legendHandles
            legend = {t.get_text(): h.get_marker() for t, h in zip(drawn.get_texts(), handles)}
            assert legend["train"] != legend["validation"], legend
        finally:
            plt.close(fig)


def test_loss_figure_labels_losses_as_they_are_and_epochs_whole(rng):
    """The default run's loss stays near ln(10): its axis read 2 .. 10 under a corner note
    "1e-5+2.3025"; the epoch axis on top read 2.5, 7.5, ..."""
    import matplotlib.pyplot as plt

    flat = 2.30253 + 6e-5 * np.exp(-np.arange(1000) / 150) + 1e-5 * rng.randn(1000)
    fig = plots.plot_loss(flat, iterations_per_epoch=7)
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        assert ax.yaxis.get_offset_text().get_text() == ""
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert labels and all(t.startswith("2.302") for t in labels), labels
        epochs = ax.child_axes[0]
        assert epochs.get_xlabel() == "epoch"
        ticks = [t for t in epochs.get_xticks() if 0 <= t <= 1000 / 7]
        assert len(ticks) > 2 and all(float(t).is_integer() for t in ticks), ticks
    finally:
        plt.close(fig)


def test_figures_have_titles_labels_and_legends(tmp_path, rng):
    figs = {
        "loss": plots.plot_loss(rng.rand(120), iterations_per_epoch=10),
        "acc": plots.plot_accuracy([0.1, 0.5], [0.2, 0.4], test_acc=0.3),
        "cm": plots.plot_confusion(np.eye(3) * 5, ["a", "b", "c"]),
        "w": plots.plot_first_layer_weights(rng.randn(48, 4), (4, 4, 3)),
        "samples": plots.plot_samples(rng.randint(0, 255, (20, 4, 4, 3), dtype=np.uint8),
                                      np.arange(20) % 2, ["x", "y"], per_class=3),
    }
    for name in ("loss", "acc", "cm"):
        ax = figs[name].axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    for name in ("loss", "acc"):
        assert figs[name].axes[0].get_legend() is not None
    for name, fig in figs.items():
        path = plots.save(fig, tmp_path / f"{name}.png")
        with Image.open(path) as im:
            assert im.format == "PNG"


def test_messages_name_python_arguments_in_python_and_flags_on_the_command_line(
        digits, tmp_path, capsys, monkeypatch):
    """A notebook that ran its ``train_run(out=...)`` cell a second time was told to "choose
    another --out, or continue it with --resume ..."; a missing dataset to "add --download to
    this command", a diverged fit to try "--lr divided by 10". From Python the messages now
    name the arguments and functions; the command line's are as they were."""
    from mlplab.trainer import Trainer

    run = tmp_path / "run"
    train_run(FAST, out=run, data=digits, plots=False)
    with pytest.raises(ValueError) as again:
        train_run(FAST, out=run, data=digits, plots=False)  # the cell, run twice
    # not "continue it with resume_run(...)": that would refuse a completed run
    assert str(again.value) == f"{run} already holds a completed run; choose another out."
    with pytest.raises(ValueError, match=r"nothing to resume: start a new run with another "
                                         r"out\.$"):
        resume_run(run)
    monkeypatch.setenv("HOME", str(tmp_path))  # no cached copy of MNIST anywhere
    monkeypatch.delenv("MLPLAB_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match=r"\(or pass download=True\)\.$"):
        load_dataset("mnist", data_dir=tmp_path / "none")
    X = make_preprocessing("standardize").fit_transform(digits.X_train)
    with pytest.raises(TrainingDivergedError, match=r"\(e\.g\. lr divided by 10\)"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Trainer(optimizer="sgd", lr=1e30, epochs=1).fit(MLP(64, [8], 10, seed=0), X,
                                                        digits.y_train)

    args = ["train", "--hidden", "8", "--epochs", "1", "--out", str(run)]
    assert main(args) == 1
    assert f"{run} already holds a completed run; choose another --out." in \
        capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 1
    assert "nothing to resume: start a new run with another --out." in capsys.readouterr().err
    # a run that did not complete (interrupted, killed) can be continued: both say how
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted"}))
    assert main(args) == 1
    # with the --no-plots the run was started with (train_run's plots=False), as config.json
    # records it: "--resume RUN" alone drew the figures the user had turned off
    assert (f"{run} already holds a run; choose another --out, or continue it with mlplab train "
            f"--resume {run} --no-plots.") in capsys.readouterr().err
    with pytest.raises(ValueError) as again:
        train_run(FAST, out=run, data=digits, plots=False)
    assert str(again.value) == (f"{run} already holds a run; choose another out, or continue "
                                f"it with resume_run({str(run)!r}, plots=False).")
    # a path with a space is quoted, so that the command can be pasted into a shell
    spaced = tmp_path / "my runs" / "r 1"
    shutil.copytree(run, spaced)
    assert main(["train", "--hidden", "8", "--epochs", "1", "--out", str(spaced)]) == 1
    assert f"continue it with mlplab train --resume '{spaced}' --no-plots." in \
        capsys.readouterr().err
    (spaced / "model.npz").unlink()
    assert main(["evaluate", str(spaced)]) == 1
    assert f"continue it with mlplab train --resume '{spaced}'" in capsys.readouterr().err
    assert main(["data", "info", "mnist", "--data-dir", str(tmp_path / "none")]) == 1
    assert "(or add --download to this command)." in capsys.readouterr().err
    assert main(["train", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "1",
                 "--out", str(tmp_path / "blown")]) == 1
    assert "(e.g. --lr divided by 10)" in capsys.readouterr().err
    # and back in Python after a command
    with pytest.raises(ValueError, match="choose another out, "):
        train_run(FAST, out=run, data=digits, plots=False)


def test_a_damaged_or_modelless_run_is_told_how_to_resume_in_the_callers_words(
        digits, tmp_path, capsys):
    """A run folder with a damaged metrics.json, or with a checkpoint but no model, told a
    Python caller to resume it with "mlplab train --resume"; from Python it is resume_run(RUN),
    on the command line the command, each naming the run and repeating its plots=False
    (--no-plots), as the other resume advice does."""
    run = tmp_path / "r"
    train_run(FAST, out=run, data=digits, plots=False)
    (run / "metrics.json").write_text("[1]")
    with pytest.raises(ValueError) as caught:
        evaluate_run(run, "val", data=digits)
    assert str(caught.value).endswith(f"delete it, then resume the run with "
                                      f"resume_run({str(run)!r}, plots=False), which "
                                      "writes it again.")
    assert main(["evaluate", str(run)]) == 1
    assert (f"delete it, then resume the run with mlplab train --resume {run} --no-plots, "
            "which writes it again." in capsys.readouterr().err)
    (run / "metrics.json").unlink()
    (run / "model.npz").unlink()  # killed before its first model was written: a checkpoint
    assert (run / "checkpoint.npz").is_file()
    with pytest.raises(FileNotFoundError) as caught:
        evaluate_run(run, "val", data=digits)
    assert str(caught.value) == (f"{run} has no model.npz; it has a checkpoint: continue it "
                                 f"with resume_run({str(run)!r}, plots=False).")
    assert main(["evaluate", str(run)]) == 1
    assert (f"{run} has no model.npz; it has a checkpoint: continue it with mlplab train "
            f"--resume {run} --no-plots.") in capsys.readouterr().err


def test_a_stopped_run_that_cannot_be_written_is_finished_in_a_copy(tmp_path, digits,
                                                                     monkeypatch, capsys):
    """A stopped run on a read-only mount (or a colleague's): evaluate advised the --resume
    that is refused there ("cannot write in the run folder"). It says to resume a copy, and
    the copy it names resumes."""
    import types

    run = _stopped_after_two_epochs(tmp_path / "r", digits)
    access, statvfs = os.access, os.statvfs
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != run and access(p, mode,
                                                                                      **kw))
    monkeypatch.setattr(os, "statvfs", lambda p: types.SimpleNamespace(
        f_flag=statvfs(p).f_flag | (os.ST_RDONLY if Path(p) == run else 0)))
    copy = tmp_path / "r-resumed"
    with pytest.warns(UserWarning) as said:
        evaluate_run(run, data=digits)
    assert str(said[0].message) == (
        f"{run} was interrupted: its model is the one saved when it stopped after 2 epochs; to "
        f"finish it: {run} cannot be written here (read-only file system), so it cannot be "
        f"resumed in place: copy the folder to where you may write (say cp -r {run} {copy}, "
        f"with another place than {tmp_path} if that is read-only too) and resume the copy "
        f"with resume_run({str(copy)!r}, plots=False).")
    (run / "model.npz").unlink()  # killed before its first model: evaluate has none to use
    assert main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err
    assert (f"{run} has no model.npz; it has a checkpoint, but {run} cannot be written here "
            "(read-only file system)") in err
    assert f"resume the copy with mlplab train --resume {copy} --no-plots." in err
    with pytest.raises(ValueError, match="cannot write in the run folder"):
        resume_run(run, data=digits, plots=False)  # (why it is not advised)
    shutil.copytree(run, copy)
    resumed = resume_run(copy, data=digits, plots=False)
    assert resumed.metrics["epochs"] == FAST["epochs"]
    monkeypatch.chdir(run)  # evaluate . inside it: "PosixPath('.') has an empty name"
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False)
    from mlplab.runs.finished import _resume_elsewhere

    assert f"cp -r . {copy}" in _resume_elsewhere(Path("."), torch=False)


def test_a_run_result_shows_in_a_line(digits, tmp_path):
    """A notebook cell showing a RunResult printed the whole configuration and every metric
    (3 KB on one line); it shows what the run was and how it did."""
    res = train_run(FAST, data=digits, eval_test=True)
    m = res.metrics
    assert repr(res) == (f"RunResult(model='MLP 64-32-10 relu', dataset='digits', "
                         f"status='completed', val_accuracy={m['val_accuracy']:.4f}, "
                         f"test_accuracy={m['test_accuracy']:.4f}, epochs=4, out=None)")
    res = train_run(FAST, data=digits, out=tmp_path / "r", plots=False)
    assert repr(res).endswith(f"epochs=4, out={str(tmp_path / 'r')!r})")


def test_data_and_tuning_messages_name_python_arguments_in_python(digits, tmp_path):
    """The download, tuning-data, grid-search, evaluate, test-split, preprocessing and storage
    messages tell a Python caller the argument (``mirror=``, ``val_size=N``, ``sampler='tpe'``,
    ``split=``, ``eval_test=True``, ...), and the command line the flag, the same message
    otherwise."""
    import dataclasses

    from mlplab._validation import command_line
    from mlplab.data.base import DatasetError
    from mlplab.data.download import download_file
    from mlplab.data.transforms import Power
    from mlplab.tuning.data import prepare
    from mlplab.tuning.space import Param
    from mlplab.tuning.storage import storage_spec

    no_val = dataclasses.replace(digits, X_val=digits.X_val[:0], y_val=digits.y_val[:0])
    run = tmp_path / "run"
    train_run({**FAST, "val_size": 0}, out=run, data=no_val, plots=False)

    no_test = dataclasses.replace(digits, X_test=digits.X_test[:0], y_test=digits.y_test[:0])

    def messages() -> list[str]:
        said = []
        for call, error in (
                (lambda: download_file("http://127.0.0.1:1/x", tmp_path / "x", progress=False),
                 DatasetError),
                (lambda: prepare(no_val), ValueError),
                (lambda: Param("lr", "float", 1e-4, 1e-1, log=True).grid_values(), ValueError),
                (lambda: evaluate_run(run, split="val"), ValueError),
                (lambda: train_run({**FAST, "eval_test": True}, data=no_test), ValueError),
                (lambda: Power().fit_transform(-np.ones((2, 3))), DatasetError),
                (lambda: storage_spec("journal:", tmp_path), ValueError)):
            with pytest.raises(error) as caught:
                call()
            said.append(str(caught.value))
        return said

    python = messages()
    with command_line():
        flags = messages()
    for python_words, flag_words, said_py, said_cli in zip(
            ("pass mirror=BASE_URL,", "give it one with val_size=N.", "(or use sampler='tpe').",
             "evaluate another: split='train', split='test'.",
             "(eval_test=True): give it one with test_size=N, or leave out eval_test=True.",
             "Use preprocessing='standardize' for", "storage=journal:PATH needs"),
            ("pass --mirror BASE_URL,", "give it one with --val-size N.",
             "(or use --sampler tpe).", "evaluate another: --split train, --split test.",
             "(--eval-test): give it one with --test-size N, or leave out --eval-test.",
             "Use --preprocessing standardize for", "--storage journal:PATH needs"),
            python, flags):
        assert python_words in said_py and flag_words not in said_py, said_py
        assert flag_words in said_cli, said_cli


def test_a_run_folders_loss_figure_has_its_epoch_axis(tmp_path, digits, monkeypatch):
    """mlplab train's loss.png (and mlplab torch train's) had no epoch axis on top, where the
    report's loss figures have one: the run now tells the figure how long an epoch is."""
    asked = []
    real = plots.plot_loss

    def spy(loss, *args, **kwargs):
        asked.append((len(loss), kwargs.get("iterations_per_epoch")))
        return real(loss, *args, **kwargs)

    monkeypatch.setattr(plots, "plot_loss", spy)
    res = train_run({**FAST, "epochs": 3, "batch_size": 100}, out=tmp_path / "np", data=digits)
    per_epoch = len(digits.y_train) // 100
    assert asked == [(3 * per_epoch, per_epoch)] and len(res.history.loss) == 3 * per_epoch
    pytest.importorskip("torch")  # first: newer pytest does not skip for a missing dependency
    tm = pytest.importorskip("mlplab.torch_mlp")
    asked.clear()
    torch_run = tm.train_run(digits, out=tmp_path / "torch", hidden=[8], epochs=2,
                             batch_size=100, threads=1)
    # PyTorch's loader keeps the last, smaller batch of an epoch: one step more
    assert asked == [(len(torch_run.history.loss), len(torch_run.history.loss) // 2)]


def test_config_summary_names_the_run_length_it_has():
    """The one-line summary names iterations or epochs, whichever sets the length; a config with
    neither (refused when training starts) said "None epochs" and now says "no length"."""
    from mlplab.runs import RunConfig, config_summary

    assert ", 3 epochs, " in config_summary(RunConfig(epochs=3))
    assert ", 1 iteration, " in config_summary(RunConfig(epochs=None, iters=1))
    text = config_summary(RunConfig(epochs=None, iters=None))
    assert ", no length, " in text and "None" not in text
    # the hidden sizes as --hidden takes them, not Python's list
    assert ": hidden 512,256, " in config_summary(RunConfig(hidden=[512, 256]))
    assert ": hidden none, " in config_summary(RunConfig(hidden=[]))


@pytest.mark.parametrize("name", [5, None, "", "nope"])
def test_a_dataset_that_is_not_a_name_is_refused_before_anything_is_made(name, tmp_path):
    """train_run(dataset=5) failed on the name's .lower() with an AttributeError; every bad
    name now gets load_dataset's own error, before the run folder is made."""
    from mlplab.data import DatasetError, load_dataset

    with pytest.raises(DatasetError) as expected:
        load_dataset(name)
    with pytest.raises(DatasetError) as got:
        train_run(dataset=name, out=tmp_path / "r", plots=False)
    assert str(got.value) == str(expected.value)
    assert not (tmp_path / "r").exists()


def test_a_run_resumed_without_figures_keeps_none_of_its_stop(tmp_path):
    """Ctrl-C draws the run's figures as it was then; resumed with plots=False (--no-plots) it
    left them beside results they no longer show."""
    import os
    import signal

    from mlplab.runs import resume_run, train_run
    from mlplab.runs.files import FIGURES
    from mlplab.trainer import Callback

    class CtrlC(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:  # the trainer stops after the current iteration and saves the run
                os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "run"
    stopped = train_run(dataset="digits", hidden=[8], epochs=3, out=out, callbacks=[CtrlC()])
    assert stopped.interrupted and {"loss.png", "accuracy.png"} <= {p.name for p in out.iterdir()}
    result = resume_run(out, plots=False)
    assert result.metrics["status"] == "completed"
    assert not any((out / name).exists() for name in FIGURES)


def test_a_run_stopped_again_before_it_saved_is_listed_from_its_checkpoint(tmp_path):
    """A run stopped by Ctrl-C (metrics.json: interrupted, epoch 1), resumed, then crashed before
    it saved: mlplab runs showed the first stop's figures; the checkpoint is further on."""
    import os
    import signal

    from mlplab.runs import resume_run, summarize_run, train_run
    from mlplab.trainer import Callback

    class CtrlC(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    class Crash(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 3:
                raise RuntimeError("crash")

    out = tmp_path / "run"
    train_run(dataset="digits", hidden=[8], epochs=4, out=out, plots=False, callbacks=[CtrlC()])
    assert (summarize_run(out)["status"], summarize_run(out)["epochs"]) == ("interrupted", 1)
    with pytest.raises(RuntimeError, match="crash"):
        resume_run(out, plots=False, callbacks=[Crash()])
    record = summarize_run(out)
    assert record["status"] == "unfinished" and record["epochs"] >= 2, record


def test_names_with_dollar_signs_are_drawn_as_written(tmp_path):
    """Class names, titles and run names are folder names: ``$x^$`` failed to draw (Matplotlib
    read it as maths) and ``$\\alpha$`` was drawn as a Greek letter."""
    import matplotlib.pyplot as plt

    from mlplab import plots

    names = ["$x^$", "$\\alpha$", "c"]
    cm = plots.plot_confusion(np.eye(3) * 5, names)
    samples = plots.plot_samples(np.zeros((6, 8, 8, 1), np.uint8), np.array([0, 0, 1, 1, 2, 2]),
                                 names, per_class=2, title="folder:/a/$x^$")
    runs = plots.plot_runs({"$x^$": {"val_acc": [0.1, 0.2], "loss": [1.0, 0.5]}})
    for i, fig in enumerate((cm, samples, runs)):
        plots.save(fig, tmp_path / f"{i}.png")  # drawing is where mathtext failed
    texts = [t for fig in (cm, samples, runs) for t in fig.findobj(plt.Text)]
    drawn = {t.get_text() for t in texts}
    assert {"$x^$", "$\\alpha$", "folder:/a/$x^$"} <= drawn
    assert not any("$" in t.get_text() and t.get_parse_math() for t in texts)


def test_predict_names_every_bad_file_and_what_to_do(tmp_path, digits):
    """A file read but not usable (a float TIFF with values above 1) stopped the report of the
    unreadable files found before it; one unreadable file was named without what to do; a
    sound image too large for Pillow was called "not a readable image"."""
    from PIL import Image

    from mlplab.data import DatasetError

    train_run(FAST, out=tmp_path / "r", data=digits, plots=False)
    (tmp_path / "trunc.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    Image.fromarray(np.full((8, 8), 2.5, np.float32)).save(tmp_path / "float.tif")
    Image.fromarray(digits.X_test[0, :, :, 0]).save(tmp_path / "good.png")
    files = [tmp_path / "trunc.png", tmp_path / "float.tif", tmp_path / "good.png"]
    with pytest.raises(DatasetError, match=r"^2 of 3 image files cannot be read: .*trunc\.png "
                                           r"\(.*\); .*float\.tif \(.*\); replace or remove"):
        predict_images(tmp_path / "r", files, progress=False)
    with pytest.raises(DatasetError, match=r"trunc\.png: cannot read image \(.*\); check the "
                                           r"file\.$"):
        predict_images(tmp_path / "r", files[:1], progress=False)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "big.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # (a real one would take 800 MB)
        with pytest.raises(DatasetError, match=r"big\.png: cannot read image \(.*\); downscale "
                                               r"it \(Pillow refuses an image this large"):
            predict_images(tmp_path / "r", [tmp_path / "big.png"], progress=False)


def test_predict_can_skip_the_files_it_cannot_read(tmp_path, digits, capsys):
    """One bad file among a folder of photos stopped predict from classifying any of them
    (fix or remove it). With skip_unreadable (--skip-unreadable) the others are classified and
    the bad ones named in a warning; the error without it says so."""
    from mlplab.data import DatasetError

    run = tmp_path / "r"
    train_run(FAST, out=run, data=digits, plots=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(digits.X_test[i, :, :, 0]).save(photos / f"{i}.png")
    (photos / "1b-cut.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    good = [photos / f"{i}.png" for i in range(3)]
    with pytest.raises(DatasetError, match=r"1b-cut\.png: cannot read image .* \(Or classify the "
                                           r"others: skip_unreadable=True\.\)$"):
        predict_images(run, [photos], progress=False)
    with pytest.warns(UserWarning, match=r"^1 of 4 image files cannot be read: \S*1b-cut\.png "
                                         r"\(.*\); skipped it, classified the other 3\.$"):
        out = predict_images(run, [photos], progress=False, skip_unreadable=True)
    assert out == predict_images(run, good, progress=False)  # each with its own result
    with pytest.raises(DatasetError, match="cannot read image"):  # none left: still an error
        predict_images(run, [photos / "1b-cut.png"], progress=False, skip_unreadable=True)
    assert main(["predict", str(run), str(photos), "--json"]) == 1
    assert "(Or classify the others: --skip-unreadable.)" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="1 of 4 image files cannot be read"):
        assert main(["predict", str(run), str(photos), "--json", "--skip-unreadable"]) == 0
    assert [r["image"] for r in json.loads(capsys.readouterr().out)] == [str(f) for f in good]


def test_a_new_run_into_a_stopped_pytorch_run_is_told_its_own_resume(tmp_path, capsys):
    """A stopped mlplab torch train run given as the out of a new mlplab train run was to be
    continued with resume_run(RUN) / --resume RUN, which both refuse a PyTorch run: it is
    mlplab.torch_mlp.resume_run(RUN) / mlplab torch train --resume RUN."""
    run = tmp_path / "torch-run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"framework": "pytorch", "dataset": "digits"}))
    (run / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    with pytest.raises(ValueError) as refused:
        train_run(FAST, out=run, plots=False)  # refused before any data is loaded
    assert str(refused.value) == (f"{run} already holds a run; choose another out, or continue "
                                  f"it with mlplab.torch_mlp.resume_run({str(run)!r}).")
    assert main(["train", "--hidden", "8", "--epochs", "1", "--out", str(run)]) == 1
    assert (f"{run} already holds a run; choose another --out, or continue it with mlplab torch "
            f"train --resume {run}.") in capsys.readouterr().err


@pytest.mark.parametrize("options,said", [
    ({"crop_padding": 1}, "crop_padding has no effect without crop in augment (e.g. "
                          "augment=['flip', 'crop'])."),
    ({"augment": ["flip"], "crop_fill": "black"},
     "crop_fill has no effect without crop or elastic in augment (e.g. augment=['flip', 'crop'])."),
    ({"std": 0.01}, "std has no effect with init='he'; it applies to init='normal'."),
    ({"optimizer": "adam", "momentum": 0.5},
     "momentum has no effect with optimizer='adam'; it applies to optimizer='momentum' or "
     "optimizer='nesterov'."),
    ({"hidden": [], "dropout": 0.2, "batchnorm": True},
     "dropout, batchnorm have no effect with hidden=[], which has no hidden layer to apply to.")])
def test_train_run_refuses_a_setting_the_run_would_ignore_as_the_command_does(
        tmp_path, digits, options, said):
    """train_run(crop_padding=1) without crops trained silently, the padding recorded as if
    used, where mlplab train --crop-padding 1 is refused; likewise std without init='normal',
    momentum with Adam, dropout without a hidden layer. Refused before anything is written."""
    with pytest.raises(ValueError, match=f"^{re.escape(said)}$"):
        train_run({**FAST, "epochs": 1}, data=digits, out=tmp_path / "run", plots=False,
                  **options)
    assert not (tmp_path / "run").exists()


def test_a_whole_configuration_given_as_keywords_still_repeats_its_run(tmp_path, digits):
    """train_run(**config) (docs/training.md) gives every setting, the unused ones at their
    defaults (std with He initialisation, momentum's 0.9 with Adam): those are not refused,
    and a setting a preset made inert is reset to its default, as the command line does."""
    first = train_run({**FAST, "epochs": 1, "optimizer": "adam"}, data=digits,
                      out=tmp_path / "a", plots=False)
    config = io.read_json(tmp_path / "a" / "config.json")
    assert config["init"] == "he" and config["std"] == RunConfig().std
    again = train_run(**config, data=digits, out=tmp_path / "b", plots=False)
    assert again.metrics["val_accuracy"] == first.metrics["val_accuracy"]
    # deep-best-fashion's crops turned off: its black crop fill would be recorded as if used
    result = train_run(preset="deep-best-fashion", data=digits, augment=["flip"], epochs=1,
                       warmup_epochs=0,
                       hidden=[8], plots=False, out=tmp_path / "c")
    assert io.read_json(tmp_path / "c" / "config.json")["crop_fill"] == RunConfig().crop_fill
    assert result.metrics is not None


def test_a_configuration_made_from_another_runs_repeats_as_keywords(tmp_path, digits):
    """A run made from another's settings with the setting that used an option changed
    (--like RUN --init he of a run with --init normal --std 0.01, a preset's schedule turned
    to cosine) recorded the option unused at the other run's value: train_run(**config) then
    refused "std has no effect with init='he'". The unused option is reset to its default, as
    an augmentation's or a hidden layer's are."""
    first = train_run({**FAST, "epochs": 1, "init": "normal", "std": 0.01}, data=digits,
                      plots=False)
    cfg = train_run(first.config, init="he", schedule="cosine", data=digits,
                    out=tmp_path / "a", plots=False).config
    assert (cfg.std, cfg.lr_decay) == (RunConfig().std, RunConfig().lr_decay)
    config = io.read_json(tmp_path / "a" / "config.json")
    assert config["std"] == RunConfig().std
    train_run(**config, data=digits, plots=False)


def test_momentum_is_taken_by_a_registered_optimizer_that_uses_it(digits):
    """The trainer gives a registered optimiser the momentum its __init__ takes
    (docs/architecture.md), yet train_run(optimizer='heavyball', momentum=0.5) was refused as
    "momentum has no effect with optimizer='heavyball'", as was mlplab train --momentum."""
    from mlplab.optim import OPTIMIZERS, Optimizer, register_optimizer

    taken = []

    class HeavyBall(Optimizer):
        name = "test_heavyball"

        def __init__(self, lr, momentum=0.9):
            super().__init__(lr)
            taken.append(momentum)

        def _update(self, name, p, g):
            p -= self.lr * g

    register_optimizer(HeavyBall)
    try:
        result = train_run(FAST, data=digits, plots=False, epochs=1,
                           optimizer="test_heavyball", momentum=0.5)
        assert result.config.momentum == 0.5 and taken == [0.5]
        with pytest.raises(ValueError, match=r"^momentum has no effect with optimizer='adam'"):
            train_run(FAST, data=digits, optimizer="adam", momentum=0.5)
    finally:
        OPTIMIZERS.pop("test_heavyball", None)


def test_history_csv_of_a_run_without_validation_split_leaves_val_acc_empty(tmp_path):
    """--val-size 0: the epoch rows' val_acc cell is empty, like every other row's missing
    figure (history.csv wrote the text 'nan', which a strict CSV reader takes for a string);
    read_history still gives one NaN per epoch, and reads the 'nan' of an older file too."""
    out = tmp_path / "r"
    train_run({**FAST, "val_size": 0, "epochs": 2}, out=out, plots=False)
    with open(out / "history.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["lr"]]
    assert len(rows) == 2 and [r["val_acc"] for r in rows] == ["", ""]
    assert all(0 <= float(r["train_acc"]) <= 1 for r in rows)
    assert "nan" not in (out / "history.csv").read_text()
    for text in ((out / "history.csv").read_text(),
                 (out / "history.csv").read_text().replace(",\n", ",nan\n")):
        (tmp_path / "h.csv").write_text(text)
        h = read_history(tmp_path / "h.csv")
        assert len(h["train_acc"]) == len(h["lr"]) == 2 and all(np.isnan(h["val_acc"]))


def test_a_training_split_without_a_class_is_warned_of(tmp_path, rng):
    """A split that leaves a class no training image (a folder of one image per class with
    --val-size 1) trained a network that never saw the class and scored it without a word; the
    run now warns and says which class and what to change. A split holding every class does
    not."""
    from mlplab.data import Dataset

    X = rng.randn(6, 4)
    y = np.array([0, 0, 0, 0, 1, 1])
    lacking = Dataset("mine", ["a", "b"], X[:4], y[:4], X[4:], y[4:], X[:0], y[:0])
    with pytest.warns(UserWarning, match=r"^mine: the training split \(4 images\) has no image "
                      r"of class b: the network cannot learn it.*give a smaller val_size"):
        train_run(data=lacking, hidden=[4], epochs=1, eval_test=False)
    full = Dataset("mine", ["a", "b"], X[2:], y[2:], X[:2], y[:2], X[:0], y[:0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_run(data=full, hidden=[4], epochs=1, eval_test=False)
    for name in ("cat", "dog"):
        (tmp_path / "f" / name).mkdir(parents=True)
        Image.fromarray(rng.randint(0, 256, (4, 4, 3)).astype(np.uint8)).save(
            tmp_path / "f" / name / "0.png")
    with pytest.warns(UserWarning, match=r"^folder:\S+: the training split \(1 image\) has no "
                      r"image of class (cat|dog): .* give a smaller --val-size or --test-size"):
        assert main(["train", "--dataset", f"folder:{tmp_path / 'f'}", "--val-size", "1",
                     "--hidden", "4", "--epochs", "1", "--no-plots", "--no-cache",
                     "--out", str(tmp_path / "run")]) == 0


def test_a_dataset_of_ones_own_with_labels_not_0_to_k_is_refused_saying_so(tmp_path, rng):
    """A Dataset built by hand with its class names as labels failed with "invalid literal for
    int() with base 10: np.str_('b')" (from the record of its splits); labels out of range in a
    split that is not trained on passed unseen. Both are refused before anything is written,
    naming the split and how to number the classes."""
    from mlplab.data import Dataset

    X = rng.randn(8, 4)
    names = np.array(["a", "b"] * 4)
    ds = Dataset("mine", ["a", "b"], X[:6], names[:6], X[6:], names[6:], X[:0], names[:0])
    with pytest.raises(ValueError, match=r"^y_train must hold integer class labels 0\.\.K-1; got "
                       r"dtype <U1; number the classes 0\.\.K-1 first"):
        train_run(data=ds, hidden=[4], epochs=1, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    y = np.array([0, 1] * 4)
    ds = Dataset("mine", ["a", "b"], X[:6], y[:6], X[6:], y[6:] + 1, X[:0], y[:0])
    with pytest.raises(ValueError, match=r"^y_val has labels out of range \[0, 1\]: min 1, max 2"):
        train_run(data=ds, hidden=[4], epochs=1)


def test_training_images_that_are_all_the_same_are_warned_of(tmp_path, rng):
    """A folder of one-colour images trained to chance level, and the note after it named a
    learning rate or the initialisation as the likely cause; the run now warns first that its
    training images are all the same. One differing image (here the last of 1,100, past the
    first block compared) is enough to train without the warning."""
    from mlplab.data import Dataset

    for name in ("cat", "dog"):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (4, 4), (40, 90, 200)).save(tmp_path / "f" / name / f"{i}.png")
    with pytest.warns(UserWarning, match=r"^folder:\S+: all 8 training images are the same image: "
                      r"the network has nothing to tell the classes apart by; check the image"):
        assert main(["train", "--dataset", f"folder:{tmp_path / 'f'}", "--hidden", "4",
                     "--epochs", "1", "--no-plots", "--no-cache",
                     "--out", str(tmp_path / "run")]) == 0
    X = np.zeros((1100, 2, 2, 1), np.uint8)
    X[-1] = 1
    y = np.arange(1100) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_run(data=Dataset("mine", ["a", "b"], X, y, X[:0], y[:0], X[:0], y[:0]),
                  hidden=[4], epochs=1, eval_test=False)


def test_resume_command_builds_every_commands_continue_line(tmp_path):
    """One function builds the resume command of mlplab train, torch train and torch depth:
    the command's words, --resume, then --device, --threads and --no-plots in that order, the
    folder quoted for the shell; plots None reads the run's config.json."""
    from mlplab._text import shell_command
    from mlplab.runs.files import resume_command

    run = tmp_path / "a b"
    run.mkdir()
    folder = shell_command([str(run)])
    assert resume_command(run, plots=True) == f"mlplab train --resume {folder}"
    assert resume_command(run, False, ("mlplab", "torch", "depth"), threads=2, device="cpu") == \
        f"mlplab torch depth --resume {folder} --device cpu --threads 2 --no-plots"
    (run / "config.json").write_text(json.dumps({"no_plots": True}))
    assert resume_command(run, command=("mlplab", "--plugin", "p.py", "train")) == \
        f"mlplab --plugin p.py train --resume {folder} --no-plots"


def test_a_divergence_record_that_cannot_be_written_is_said_with_its_file_and_cause(
        tmp_path, digits, monkeypatch, capsys, disk_full_at):
    """A run whose loss diverged after a checkpoint records it in metrics.json: a write that
    failed (a full disk) was passed over without a word, and the line said the run kept its
    checkpoint and to start anew, while the run, with no record, read as unfinished and its
    --resume diverged again. The line now names the file, the cause and what it leaves, for a
    new run and a resumed one alike, and the command exits 1."""
    from mlplab.runs.listing import summarize_run

    class Blow(Callback):
        def __init__(self, at=2):
            self.at = at

        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == self.at:
                for p in trainer.model.params.values():  # after the epoch's checkpoint
                    p *= 1e30

    run = tmp_path / "r"
    unrecorded = (f"The divergence could not be recorded in {run / 'metrics.json'} (No space "
                  "left on device), so the run reads as unfinished, and resuming it would "
                  "repeat the divergence.")
    disk_full_at("metrics.json")
    with warnings.catch_warnings(), pytest.raises(TrainingDivergedError) as caught:
        warnings.simplefilter("ignore")
        train_run(FAST, out=run, data=digits, callbacks=[Blow()], plots=False)
    assert str(caught.value).endswith(
        f"{run} keeps the checkpoint of its last good epoch. {unrecorded} Start the new run "
        "with another out.")
    assert summarize_run(run)["status"] == "unfinished"  # as the line says
    # a resumed run's divergence, the same
    with warnings.catch_warnings(), pytest.raises(TrainingDivergedError) as caught:
        warnings.simplefilter("ignore")
        resume_run(run, data=digits, callbacks=[Blow(at=3)])
    assert str(caught.value).endswith(
        f"{run} keeps the checkpoint of its last good epoch. {unrecorded} Start a new run with "
        f"other settings (another out, or delete {run}).")
    assert "Resuming this run repeats it" not in str(caught.value)
    # from the command line: one line, status 1
    import mlplab.runs.training as training

    real_trainer = training.Trainer
    monkeypatch.setattr(training, "Trainer", lambda cfg, callbacks, **kw: real_trainer(
        cfg, callbacks=[*callbacks, Blow()], **kw))
    out = tmp_path / "cli"
    capsys.readouterr()
    assert main(["train", "--dataset", "digits", "--hidden", "16", "--epochs", "4",
                 "--no-progress", "--no-plots", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mlplab train: error: the loss became nan") and err[-1].endswith(
        f"{out} keeps the checkpoint of its last good epoch. "
        f"{unrecorded.replace(str(run), str(out))} Start the new run with another --out."), err


def test_a_stopped_runs_file_that_cannot_be_removed_does_not_keep_its_resume_from_finishing(
        tmp_path, digits, monkeypatch, refuse_unlink):
    """A resumed run removes its stop's results before it writes its own: one that could not
    be removed (a permission, a file held open) ended the run unsaved, "Continue with: mlplab
    train --resume", which failed on it again, each time. It is passed over: the run writes
    its files (which replace those of their names) and says, in one line, which stale file is
    left (one it did not write again: a figure, resumed without them) and to remove it."""
    from mlplab.runs import RunInterruptedWarning, StaleFileWarning

    class CtrlC(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    run = tmp_path / "r"
    with pytest.warns(RunInterruptedWarning):
        train_run(FAST, out=run, data=digits, callbacks=[CtrlC()])
    stop_history = (run / "history.csv").read_text()
    refuse_unlink(lambda path: path.name in ("history.csv", "loss.png"))
    with pytest.warns(StaleFileWarning) as record:
        result = resume_run(run, data=digits, plots=False)
    monkeypatch.undo()
    assert [str(w.message) for w in record] == [
        f"the run finished and its results are in {run}, but its stale loss.png could not be "
        f"removed (Permission denied); remove {run / 'loss.png'} by hand."]
    assert result.metrics["status"] == "completed"
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert (run / "history.csv").read_text() != stop_history  # replaced: not said
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == [
        "checkpoint.npz", "config.json", "history.csv", "loss.png", "metrics.json", "model.npz"]


def test_a_stopped_runs_file_that_cannot_be_written_over_is_named_before_the_resume(
        tmp_path, digits, monkeypatch, capsys, refuse_unlink, refuse_replace):
    """A stop's history.csv that the resumed run can neither remove nor replace (another
    user's, in a folder with the sticky bit) ended it "Continue with: mlplab train --resume",
    which failed on the same file, each time. The message names the file and the cause, and
    says to remove it before that --resume, which then finishes the run."""
    from mlplab.runs import StaleResultError

    run = _stopped_after_two_epochs(tmp_path / "r", digits)
    stop_history = (run / "history.csv").read_text()
    refuse_unlink(lambda path: path == run / "history.csv")
    refuse_replace(lambda path: path == run / "history.csv")
    reason = (f"cannot write {run / 'history.csv'}: the earlier stop's history.csv there could "
              "be neither replaced nor removed (Operation not permitted); the run was not "
              f"saved, but its last checkpoint is kept")
    todo = f"emove {run / 'history.csv'} (or have its owner remove it), then "
    with pytest.raises(StaleResultError) as raised:
        resume_run(run, data=digits, plots=False)
    assert str(raised.value) == \
        f"{reason}: r{todo}resume it with resume_run({str(run)!r}, plots=False)."
    assert main(["train", "--resume", str(run), "--no-progress"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mlplab train: error: {reason}. R{todo}continue with: mlplab train --resume {run}")
    assert (run / "history.csv").read_text() == stop_history
    assert not (run / "metrics.json").exists()
    # the file made removable (its owner's doing): the advised --resume finishes the run
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert (run / "history.csv").read_text() != stop_history
