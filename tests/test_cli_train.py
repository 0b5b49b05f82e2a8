"""``mlplab train / evaluate / predict`` end to end, including a real training process killed
with SIGKILL (and one stopped with Ctrl-C) and then resumed."""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlplab import io
from mlplab._text import shell_command
from mlplab.cli import main
from mlplab.data import load_dataset
from mlplab.runs import load_checkpoint, read_history
from mlplab.runs.lock import LOCK_FILE, training_process
from mlplab.trainer import Callback

TINY = ["--dataset", "digits", "--hidden", "32", "--epochs", "3", "--quiet", "--no-plots"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def test_train_prints_metrics_and_writes_the_run(run_dir, capsys, tmp_path):
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["epochs"] == 3 and m["dataset"] == "digits" and 0.5 < m["val_accuracy"] <= 1
    assert main(["train", *TINY, "--json", "--eval-test", "--preset", "exercise-default",
                 "--out", str(tmp_path / "j")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "exercise-default" and "test_accuracy" in out
    assert out["epochs"] == 3  # --epochs overrides the preset's 1,000 iterations
    cfg = json.loads((tmp_path / "j" / "config.json").read_text())
    assert cfg["hidden"] == [32] and cfg["optimizer"] == "sgd" and cfg["iters"] is None


@pytest.mark.parametrize("saved", [["config.json", "checkpoint.npz"], ["config.json"]],
                         ids=["checkpoint", "before-the-first"])
def test_a_second_ctrl_c_says_how_to_go_on(saved, monkeypatch, capsys, tmp_path):
    """A second Ctrl-C ends the command before the run is saved. With a checkpoint, its line
    says to --resume; before the first one, the folder keeps config.json (the same command is
    then refused as "already holds a run") and only "mlplab: interrupted" was said."""
    import mlplab.runs

    out = tmp_path / "run"

    def stopped(cfg, out, **kwargs):  # what train_run leaves when a second Ctrl-C ends it
        Path(out).mkdir(parents=True, exist_ok=True)
        for name in saved:
            (Path(out) / name).write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(mlplab.runs, "train_run", stopped)
    assert main(["train", "--hidden", "8", "--epochs", "1", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    said = ("interrupted; the run was not saved, but its last checkpoint is kept." if
            len(saved) == 2 else "interrupted before the run's first checkpoint; --resume "
            "starts it again from its first epoch.")
    assert f"{said} Continue with: mlplab train --resume {out}\n" in err, err


def _fail_once(monkeypatch, module, name, exc):
    """Make ``module.name`` raise ``exc`` on its first call (the next calls are the real one's),
    once the run it serves has written its checkpoint: the files are asserted by the caller."""
    real, calls = getattr(module, name), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)
    return calls


@pytest.mark.parametrize("where", ["disk-full", "eval-test-memory"])
def test_an_error_after_the_checkpoint_says_how_to_finish_the_run(where, monkeypatch, capsys,
                                                                  tmp_path):
    """A full disk as the results are written, or memory refused to --eval-test's test split,
    ended with the reason alone, as if the run were lost (and the same command is then refused:
    the folder holds a run); it is said with the --resume that finishes it, which does."""
    import errno

    import mlplab.runs.training as training
    from mlplab.models import MLP

    out = tmp_path / "run"
    if where == "disk-full":
        full = io.DiskFullError(out / "history.csv", OSError(errno.ENOSPC, "No space left"))
        calls = _fail_once(monkeypatch, training, "write_history", full)
        reason = f"no space left on device while writing {out / 'history.csv'} (No space " \
            "left); free some disk space; "  # (not "run the command again", which is refused)
    else:
        real = MLP.accuracy

        def accuracy(self, X, y):  # the test split's, the last one measured
            if np.array_equal(y, test_labels):  # (the validation split is as large)
                calls.append(1)
                if len(calls) == 1:
                    raise MemoryError("Unable to allocate 1.00 GiB for an array")
            return real(self, X, y)

        calls: list[int] = []
        test_labels = load_dataset("digits", seed=0).y_test
        monkeypatch.setattr(MLP, "accuracy", accuracy)
        # not "or use less data or a smaller network", which the resume advised cannot change
        reason = "out of memory (Unable to allocate 1.00 GiB for an array); free memory or " \
            "raise this process's limit (ulimit -v); "
    argv = ["train", *TINY, "--eval-test", "--threads", "1", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert calls == [1]
    assert (out / "checkpoint.npz").is_file() and not (out / "metrics.json").exists()
    line = err.splitlines()[-1]
    assert line == (f"mlplab train: error: {reason}the run was not saved, but its last checkpoint "
                    f"is kept. Continue with: mlplab train --resume {out} --threads 1 "
                    "--no-plots"), err
    assert main(["train", "--resume", str(out), "--threads", "1", "--no-plots", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed" and m["epochs"] == 3 and "test_accuracy" in m
    assert calls == [1, 1]  # the resume measured and wrote what had failed


def _ctrl_c_after_the_first_epoch(monkeypatch) -> None:
    """The runs that ``mlplab train`` trains from now on (``mlplab.runs.training.Trainer``) get
    a Ctrl-C (SIGINT) once, at the end of the first run's first epoch: saved there, status
    interrupted."""
    import mlplab.runs.training as training

    stopped = {"epoch": 0}

    class StopAfterOne(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1 and not stopped["epoch"]:
                stopped["epoch"] = epoch
                os.kill(os.getpid(), signal.SIGINT)

    real_trainer = training.Trainer
    monkeypatch.setattr(training, "Trainer", lambda cfg, callbacks, **kw: real_trainer(
        cfg, callbacks=[*callbacks, StopAfterOne()], **kw))


def test_an_error_after_a_resumes_checkpoint_says_how_to_finish_it(monkeypatch, capsys,
                                                                   tmp_path):
    """The same for a --resume that trained an epoch more (its checkpoint rewritten) and then
    failed; one that fails before (its data not found: the same --resume would fail again) and
    a divergence (which a resume repeats) are said as they were, without the advice."""
    import mlplab.runs.training as training
    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "run"
    _ctrl_c_after_the_first_epoch(monkeypatch)
    assert main(["train", *TINY, "--out", str(out)]) == 130
    capsys.readouterr()
    monkeypatch.setattr(training, "load_run_dataset", lambda *a, **kw: (_ for _ in ()).throw(
        FileNotFoundError("the digits are gone")))
    assert main(["train", "--resume", str(out), "--no-plots"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == \
        "mlplab train: error: the digits are gone"  # (before any epoch: no advice)
    monkeypatch.undo()
    calls = _fail_once(monkeypatch, training, "write_history", OSError("disk went away"))
    assert main(["train", "--resume", str(out), "--no-plots"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "mlplab train: error: disk went away; the run was not saved, but its last checkpoint is "
        f"kept. Continue with: mlplab train --resume {out} --no-plots")
    # the earlier stop's metrics.json went first (it described the older model)
    assert not (out / "metrics.json").exists()
    assert main(["train", "--resume", str(out), "--no-plots", "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    assert calls == [1, 1]
    # a divergence after the checkpoint: the resume would only diverge again
    diverged = tmp_path / "diverged"
    _fail_once(monkeypatch, training, "write_history", TrainingDivergedError("loss is nan."))
    assert main(["train", *TINY, "--out", str(diverged)]) == 1
    assert "Continue with" not in capsys.readouterr().err


def test_a_stopped_run_that_diverges_once_resumed_keeps_only_its_checkpoint(monkeypatch,
                                                                            capsys, tmp_path,
                                                                            no_model_said):
    """Stopped by Ctrl-C (model.npz, history.csv, figures, metrics.json "interrupted"), then
    resumed into a NaN: the stop's files stayed, metrics.json still said "interrupted", and so
    the run was listed "unfinished" and drawn with the stop's history, evaluate and predict used
    the stop's model as the run's, --resume trained it into the same NaN, and a new run with its
    --out was sent to that --resume. Now the folder holds config.json, the checkpoint of the
    last good epoch and metrics.json "diverged", and every command says so."""
    import mlplab.plots
    import mlplab.runs.training as training

    out = tmp_path / "run"
    when = {"stop": 1, "blow": None}

    class StopThenBlow(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == when["stop"]:
                when["stop"] = None
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: saved, status interrupted
            if epoch == when["blow"]:
                for p in trainer.model.params.values():  # after the epoch's checkpoint
                    p *= 1e30

    real_trainer = training.Trainer
    monkeypatch.setattr(training, "Trainer", lambda cfg, callbacks, **kw: real_trainer(
        cfg, callbacks=[*callbacks, StopThenBlow()], **kw))
    args = ["--dataset", "digits", "--hidden", "32", "--epochs", "3", "--quiet"]
    assert main(["train", *args, "--out", str(out)]) == 130
    stop_files = {"model.npz", "history.csv", "metrics.json", "loss.png", "accuracy.png",
                  "confusion.png", "weights.png"}
    assert stop_files < {p.name for p in out.iterdir()}
    capsys.readouterr()
    when["blow"] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow on the way to NaN
        assert main(["train", "--resume", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{out} keeps the checkpoint of its last good epoch. Resuming this run repeats it" \
        in err
    when["blow"] = None
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == \
        {"config.json", "checkpoint.npz", "metrics.json"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and "the loss became nan" in metrics["reason"]
    assert load_checkpoint(out / "checkpoint.npz")[0].model is not None  # kept, and readable

    drawn, real_plot_runs = [], mlplab.plots.plot_runs
    monkeypatch.setattr(mlplab.plots, "plot_runs",
                        lambda curves, **kw: (drawn.append(curves), real_plot_runs(curves))[1])
    assert main(["runs", str(tmp_path), "--plot", str(tmp_path / "runs.png")]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:2] == [str(out), "diverged"] and "2/3" in row  # the last good epoch's figures
    # drawn from the checkpoint's 2 epochs, not the stop's history of 1
    assert [len(c["loss"]) for c in drawn[0].values()] == [2]
    no_model = (f"{out} has no model.npz; its loss diverged, so it saved no model (its "
                "checkpoint keeps the last good epoch, which a resume would train into the same "
                "divergence); start a new run with other settings (a lower --lr, say) and "
                "another --out.")
    no_model_said(out, no_model)
    epochs_trained = []
    monkeypatch.setattr(training, "Trainer", lambda *a, **kw: epochs_trained.append(1))
    assert main(["train", "--resume", str(out), "--quiet"]) == 1
    assert f"the run in {out} diverged (its loss became NaN or infinite); resuming it would " \
        "repeat it" in capsys.readouterr().err
    assert main(["train", *args, "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == \
        f"mlplab train: error: {out} already holds a run that diverged; choose another --out."
    assert epochs_trained == []  # refused before any training


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_a_second_ctrl_c_as_a_resume_writes_its_results_says_how_to_finish_it(
        n, monkeypatch, capsys, tmp_path, ctrl_c_at_write):
    """A stopped run resumed to its end, and a second Ctrl-C as the n-th of its result files
    (model.npz, history.csv, the figures, metrics.json) is written: the stop's history.csv and
    figures stayed beside the new model.npz. Now none of the stop's results is left, the
    command says how to finish the run, evaluate and runs say what the folder holds, and the
    advised --resume writes the rest."""

    out = tmp_path / "run"
    drawn = [a for a in TINY if a != "--no-plots"]
    with monkeypatch.context() as patch:
        _ctrl_c_after_the_first_epoch(patch)
        assert main(["train", *drawn, "--out", str(out)]) == 130
    assert (out / "history.csv").is_file() and (out / "loss.png").is_file()
    capsys.readouterr()
    written = ctrl_c_at_write(out, n)
    assert main(["train", "--resume", str(out), "--quiet"]) == 130
    monkeypatch.undo()
    assert len(written) == n - 1
    assert capsys.readouterr().err.splitlines()[-2:] == [
        "interrupted; the run was not saved, but its last checkpoint is kept. Continue with: "
        f"mlplab train --resume {out}", "mlplab: interrupted"]
    results = {"history.csv", "metrics.json", "loss.png", "accuracy.png", "confusion.png",
               "weights.png"}
    assert {p.name for p in out.iterdir()} & results == set(written) - {"model.npz"}
    assert main(["runs", str(out)]) == 0
    assert re.search(r"\bunfinished\s", capsys.readouterr().out)
    with pytest.warns(UserWarning) as warned:
        assert main(["evaluate", str(out)]) == 0
    said = " ".join(str(w.message) for w in warned)
    if n == 1:  # the stop's model, whole, with none of its results
        assert ("its model is the one saved when it stopped after 1 epoch; the run was "
                "resumed since and stopped again before it saved, so its checkpoint has gone "
                "further than this model; it was stopped while it wrote its results, so it "
                f"has no metrics.json yet; mlplab train --resume {out} finishes it.") in said
    else:
        assert ("it was stopped while it wrote its results, so it has no metrics.json yet: "
                "its model is the finished one after 3 epochs; mlplab train --resume "
                f"{out} writes them.") in said
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    assert len(read_history(out / "history.csv")["val_acc"]) == 3
    assert results <= {p.name for p in out.iterdir()}


def test_evaluate_advises_the_resume_of_a_no_plots_run_with_no_plots(monkeypatch, capsys,
                                                                      tmp_path):
    """evaluate's warning for an interrupted run (once) advised `mlplab train --resume RUN`
    without the --no-plots the run was started with: pasted, the resume drew the figures the
    user had turned off. config.json records it ("no_plots", which train_run(**config,
    plots=False) does not take twice); a config.json written before it was recorded still
    evaluates, resumes and is advised as before (without --no-plots)."""
    import mlplab.runs.training as training

    class CtrlC(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    real_trainer = training.Trainer
    with monkeypatch.context() as patch:
        patch.setattr(training, "Trainer", lambda cfg, callbacks, **kw: real_trainer(
            cfg, callbacks=[*callbacks, CtrlC()], **kw))
        for name in ("bare", "old"):
            assert main(["train", *TINY, "--out", str(tmp_path / name)]) == 130
    run, old = tmp_path / "bare", tmp_path / "old"
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["no_plots"] is True
    with pytest.warns(UserWarning) as said:
        assert main(["evaluate", str(run)]) == 0
    assert [str(w.message) for w in said if "was interrupted" in str(w.message)] == [
        f"{run} was interrupted: its model is the one saved when it stopped after 1 epoch; "
        f"mlplab train --resume {run} --no-plots finishes it."]  # (once)
    # written before the record: no key, the figures' default, and no --no-plots advised
    config = json.loads((old / "config.json").read_text())
    del config["no_plots"]
    (old / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match=re.escape(f"mlplab train --resume {old} finishes it.")):
        assert main(["evaluate", str(old)]) == 0
    assert main(["train", "--like", str(run), "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "like")]) == 0  # (the key is no training option)
    assert json.loads((tmp_path / "like" / "config.json").read_text())["no_plots"] is False
    assert main(["train", "--resume", str(old), "--quiet", "--no-plots"]) == 0
    assert json.loads((old / "metrics.json").read_text())["status"] == "completed"
    # resumed with the figures on: drawn; config.json, like the run's settings, is as it began
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text()) == recorded
    assert (run / "loss.png").is_file()
    repeated = training.train_run(**recorded, out=tmp_path / "again", plots=False)
    assert repeated.metrics["epochs"] == 3 and not (tmp_path / "again" / "loss.png").exists()


def test_the_summary_counts_in_the_singular_for_one(capsys, tmp_path):
    """'after 1 epochs' read wrong; the counts agree with their nouns."""
    from mlplab._text import counted

    assert (counted(1, "epoch"), counted(0, "epoch"), counted(2, "thread")) == \
        ("1 epoch", "0 epochs", "2 threads")
    assert main(["train", "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--quiet",
                 "--no-plots", "--out", str(tmp_path / "one")]) == 0
    out = capsys.readouterr().out
    assert " after 1 epoch, " in out and "epochs" not in out, out


def test_verbose_epoch_lines_leave_the_json_alone_on_stdout(capsys, tmp_path):
    """--verbose --json printed the epoch lines on stdout before the JSON, which then did not
    parse; they go to stderr."""
    assert main(["train", *TINY, "--verbose", "--json", "--out", str(tmp_path / "v")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["epochs"] == 3
    assert err.count("epoch ") == 3 and "epoch 3 / iteration" in err


def test_evaluate_and_predict(run_dir, capsys, tmp_path):
    assert main(["evaluate", str(run_dir), "--split", "test", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    loaded = io.load_model(run_dir / "model.npz")
    ds = load_dataset("digits")
    pred = loaded.model.predict(loaded.preprocessing.transform(ds.X_test))
    assert res["accuracy"] == pytest.approx(np.mean(pred == ds.y_test)) and res["size"] == 180

    img = tmp_path / "digit.png"
    Image.fromarray(ds.X_test[0, :, :, 0]).save(img)
    assert main(["predict", str(run_dir), str(img), "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(img)) and line.count("%") == 2
    assert line.split(": ")[1].split()[0] == ds.classes[pred[0]]


def test_predict_writes_control_characters_of_class_and_file_names_escaped(tmp_path, capsys):
    """predict printed the model file's class names and the image's file name as they were: a
    class made in Python as "a\\nb" split its line in two, an ESC sequence reached the
    terminal. Written out as mlplab runs and evaluate write them, each image is one line."""
    from mlplab.data.base import Dataset
    from mlplab.runs import train_run

    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (40, 4, 4, 1), dtype=np.uint8)
    y = np.arange(40) % 2
    ds = Dataset("hand", ["a\nb", "esc\x1b[2J"], X, y, X[:10], y[:10], X[:0], y[:0])
    run = tmp_path / "run"
    train_run({"hidden": [4], "batch_size": 8}, epochs=1, out=run, data=ds, plots=False)
    img = tmp_path / "new\nline\x1b.png"
    Image.fromarray(X[0, :, :, 0]).save(img)
    assert main(["predict", str(run), str(img), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.count("\n") == 1, out
    assert out.startswith(f"{tmp_path}/new\\nline\\x1b.png: ")
    assert "a\\nb " in out and "esc\\x1b[2J " in out


def test_evaluate_of_the_test_split_leaves_the_run_as_it_was(run_dir, capsys, tmp_path):
    """docs/training.md: evaluate writes nothing into the run; its test figure is not recorded
    as --eval-test's is (metrics.json keeps no test_accuracy, mlplab runs shows none)."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()}
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()} == files
    assert "test_accuracy" not in json.loads((run / "metrics.json").read_text()) or \
        json.loads((run / "metrics.json").read_text())["test_accuracy"] is None


def test_predict_needs_only_the_model_file(run_dir, capsys, tmp_path):
    """The model file holds the fitted preprocessing, image size and class names: predict
    classifies alike with the run's config.json damaged or gone (evaluate, which loads the
    run's data as config.json says, refuses the damaged file)."""
    img = tmp_path / "digit.png"
    Image.fromarray(load_dataset("digits").X_test[0, :, :, 0]).save(img)
    assert main(["predict", str(run_dir), str(img)]) == 0
    said = capsys.readouterr().out
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    for damaged in ("{bad", '{"dataset": "digits", "hidden": "abc"}', None):
        if damaged is None:
            (run / "config.json").unlink()
        else:
            (run / "config.json").write_text(damaged)
        assert main(["predict", str(run), str(img)]) == 0
        assert capsys.readouterr().out == said
    assert main(["evaluate", str(run_dir)]) == 0
    capsys.readouterr()
    (run / "config.json").write_text("{bad")
    assert main(["evaluate", str(run)]) == 1
    assert f"{run / 'config.json'} is not valid JSON" in capsys.readouterr().err


def test_a_config_saved_with_a_byte_order_mark_is_read(run_dir, capsys, tmp_path):
    """A config.json edited on Windows and saved as "UTF-8 with BOM" (PowerShell's Set-Content
    -Encoding UTF8, Notepad) was refused: "is not valid JSON (Unexpected UTF-8 BOM ...)"."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert main(["evaluate", str(run), "--json"]) == 0
    said = capsys.readouterr().out
    config = run / "config.json"
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())
    assert main(["evaluate", str(run), "--json"]) == 0
    assert capsys.readouterr().out == said


def test_a_class_with_no_images_in_the_split_has_no_accuracy(tmp_path, capsys):
    """A test/ folder without one of train/'s classes: that class's row said 0.000, as if every
    image of it were wrong; it has no accuracy (JSON null, "-" in the table), and the others
    are still each class's share of images predicted right."""
    rs = np.random.RandomState(0)
    for split, classes, n in (("train", "abc", 8), ("test", "ab", 4)):
        for c in classes:
            (tmp_path / "set" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rs.randint(0, 256, (6, 6)).astype(np.uint8)).save(
                    tmp_path / "set" / split / c / f"{i}.png")
    run = tmp_path / "r"
    assert main(["train", "--dataset", f"folder:{tmp_path / 'set'}", "--val-size", "3",
                 "--hidden", "8", "--epochs", "2", "--quiet", "--no-plots",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "test", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    cm = np.array(res["confusion_matrix"])
    assert cm[2].sum() == 0 and res["per_class_accuracy"][2] is None
    assert res["per_class_accuracy"][:2] == pytest.approx(list(np.diag(cm)[:2] / 4))
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:5]
    assert rows[0] == "  class  accuracy"  # a header: the rows read as bare numbers
    assert rows[3] == "  c             - (no images)"  # under the "%" of "  75.0%"
    assert rows[1] == f"  a      {100 * cm[0, 0] / 4:7.1f}%"


def test_evaluate_of_many_classes_prints_the_largest_confusions_not_the_matrix(monkeypatch,
                                                                               capsys):
    """A folder dataset of 1,000 classes printed its confusion matrix whole: 1,000 lines of
    2,000 characters, nearly all zeros. Past 30 classes the largest off-diagonal cells are
    listed instead (--json keeps the matrix); 30 classes are printed whole."""
    import mlplab.runs

    def fake(k, cm):
        classes = [f"class{i:04d}" for i in range(k)]
        res = {"dataset": "folder:x", "split": "val", "size": int(cm.sum()), "accuracy": 0.5,
               "classes": classes, "per_class_accuracy": [None] * k,
               "confusion_matrix": cm.tolist()}
        monkeypatch.setattr(mlplab.runs, "evaluate_run", lambda *a, **kw: res)

    cm = np.eye(1000, dtype=int)
    cm[7, 3], cm[12, 900], cm[5, 5] = 2, 5, 9  # the diagonal is no confusion
    fake(1000, cm)
    assert main(["evaluate", "run"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 2 + 1000 + 1 + 2
    assert out.endswith("confusion matrix: 1000 x 1000, too wide to print (--json gives it "
                        "whole); its 2 largest confusions (true class -> predicted):\n"
                        "  class0012 -> class0900  5\n"
                        "  class0007 -> class0003  2\n")
    fake(31, np.eye(31, dtype=int))
    assert main(["evaluate", "run"]) == 0
    assert capsys.readouterr().out.endswith(
        "confusion matrix: 31 x 31, too wide to print (--json gives it whole); no image was "
        "taken for another class.\n")
    fake(30, np.eye(30, dtype=int))
    assert main(["evaluate", "run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-31].startswith("confusion matrix (rows: true class") and len(lines[-1]) == 61


def test_evaluate_help_says_what_it_prints_of_many_classes(capsys):
    """--help said evaluate prints "the confusion matrix", which past 30 classes it does not
    (it lists the largest confusions; --json keeps the matrix)."""
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "of more than 30 classes, the matrix's 10 largest confusions in its place (--json " \
           "gives it whole)" in said, said


def test_evaluate_counts_one_image_in_the_singular(tmp_path, capsys):
    """"(1 images)" before."""
    run = tmp_path / "r"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--val-size", "1", "--test-size",
                 "1", "--quiet", "--no-plots", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert re.match(r"digits val \(1 image\): accuracy (0|100)\.00%\n",
                    capsys.readouterr().out)


def test_a_prelu_network_trains_its_slopes_and_evaluates(tmp_path, capsys):
    out = tmp_path / "prelu"
    assert main(["train", *TINY, "--activation", "prelu", "--out", str(out)]) == 0
    loaded = io.load_model(out / "model.npz")
    slopes = loaded.model.params["alpha1"]
    assert slopes.shape == (32,) and not np.allclose(slopes, 0.25)  # trained from 0.25
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    accuracy = json.loads(capsys.readouterr().out)["accuracy"]
    assert accuracy == json.loads((out / "metrics.json").read_text())["val_accuracy"]


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_limits_the_blas_pools_while_training_only(threads, tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info

    import mlplab.runs

    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    before, seen = blas_threads(), []
    real = mlplab.runs.train_run

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(mlplab.runs, "train_run", spy)
    assert main(["train", *TINY, "--threads", str(threads), "--out", str(tmp_path / "t")]) == 0
    assert seen == [{threads}]
    assert blas_threads() == before  # restored afterwards


def test_default_run_folders_are_claimed_and_given_back_on_failure(tmp_path, monkeypatch,
                                                                    capsys):
    from mlplab.runs import default_run_dir

    # runs started in the same second (other processes, or a loop) each get a folder of their own
    folders = [default_run_dir(tmp_path / "runs", claim=True) for _ in range(3)]
    assert len(set(folders)) == 3 and all(f.is_dir() for f in folders)
    # mlplab torch's folders: runs/torch-<stamp>, then runs/torch-<stamp>-2 while it exists
    first = default_run_dir(tmp_path / "runs", prefix="torch")
    assert re.fullmatch(r"torch-\d{8}-\d{6}", first.name)
    first.mkdir()
    second = default_run_dir(tmp_path / "runs", prefix="torch")
    assert second != first and second.name.startswith("torch-")
    if second.name.startswith(first.name):  # the same second: the suffix
        assert second.name == first.name + "-2"
    monkeypatch.chdir(tmp_path / "runs")
    # a run that fails before it saves anything leaves no empty folder behind, nor the runs/
    # folder it made for it; a runs/ folder that was there already stays
    assert main(["train", "--dataset", "folder:/no/such/folder", "--epochs", "1", "--quiet"]) == 1
    assert not (tmp_path / "runs" / "runs").exists()
    # nor does it announce a run folder it then removes
    err = capsys.readouterr().err
    assert "no such folder" in err and "training " not in err
    # a run that loads its data says where it goes
    assert main(["train", *TINY, "--out", str(tmp_path / "ok")]) == 0
    assert "training digits: hidden 32," in capsys.readouterr().err
    (tmp_path / "runs" / "runs").mkdir()
    assert main(["train", "--dataset", "folder:/no/such/folder", "--epochs", "1", "--quiet"]) == 1
    assert (tmp_path / "runs" / "runs").is_dir() and not any((tmp_path / "runs" / "runs").iterdir())


def test_a_default_run_folder_that_cannot_be_made_is_one_line(tmp_path):
    """``runs`` in the current folder as a link whose target is gone (a scratch disk not
    mounted) made ``mlplab train`` without --out loop for ever trying runs/<stamp>-2, -3, ...
    (mkdir says "File exists"); a file named ``runs`` was "[Errno 20] Not a directory: ..."."""
    from mlplab.runs import default_run_dir

    (tmp_path / "runs").symlink_to(tmp_path / "gone")
    res = subprocess.run([sys.executable, "-m", "mlplab", "train", *TINY], env=ENV, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("mlplab train: error: cannot create the run folder runs/")
    assert f"runs is a link to {tmp_path / 'gone'}, which does not exist; give --out" \
        in res.stderr and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "gone").exists()
    (tmp_path / "runs").unlink()
    (tmp_path / "runs").write_text("")
    with pytest.raises(ValueError, match="runs is a file, not a folder; give out a folder"):
        default_run_dir(tmp_path / "runs", claim=True)


def test_a_tilde_the_shell_left_is_the_home_folder(tmp_path, monkeypatch, capsys):
    """``--out=~/runs/a`` (the shell expands no ``~`` after ``=``) wrote the run into a folder
    literally named ``~`` in the current one, and printed "run folder: ~/runs/a"; the data
    paths already expanded it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert main(["train", *TINY, "--out=~/runs/a"]) == 0
    assert f"run folder: {tmp_path / 'home' / 'runs' / 'a'}\n" in capsys.readouterr().out
    assert (tmp_path / "home" / "runs" / "a" / "metrics.json").is_file()
    assert list((tmp_path / "cwd").iterdir()) == []
    assert main(["evaluate", "~/runs/a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == "digits"


def test_a_folder_dataset_is_found_from_anywhere_and_after_a_move(tmp_path, monkeypatch, capsys):
    ds = load_dataset("digits")
    for i, (image, label) in enumerate(zip(ds.X_train[:60], ds.y_train[:60])):
        (tmp_path / "pics" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(tmp_path / "pics" / str(label) / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "folder:pics", "--val-size", "20", "--test-size", "0",
                 "--hidden", "8", "--epochs", "1", "--quiet", "--no-plots", "--out", "r"]) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["dataset"] == f"folder:{tmp_path / 'pics'}"  # not relative to where it ran
    val = json.loads((tmp_path / "r" / "metrics.json").read_text())["val_accuracy"]
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "r")
    assert main(["evaluate", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"({20} images): accuracy {100 * val:.2f}%" in out and "confusion matrix" in out
    (tmp_path / "pics").rename(tmp_path / "moved")
    assert main(["evaluate", str(tmp_path / "r"), "--data-dir", str(tmp_path / "moved"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(val)
    # images added since training: the folder would be split anew, mixing training images into
    # the validation split, so evaluate refuses; so it does for a same-sized but other split
    extra = tmp_path / "moved" / str(ds.y_train[0]) / "extra.png"
    Image.fromarray(ds.X_train[70, :, :, 0]).save(extra)
    assert main(["evaluate", str(tmp_path / "r"), "--data-dir", str(tmp_path / "moved")]) == 1
    assert "as many images, but other ones" in capsys.readouterr().err  # val_size is 20 still
    assert main(["evaluate", str(tmp_path / "r"), "--data-dir", str(tmp_path / "moved"),
                 "--split", "train"]) == 0  # the training split may differ (tuning subsets)
    extra.unlink()
    assert main(["evaluate", str(tmp_path / "r"), "--data-dir", str(tmp_path / "moved")]) == 0
    run = json.loads((tmp_path / "r" / "config.json").read_text())
    run["val_size"] = 0.5  # a fraction: the count follows the folder, as a changed config would
    (tmp_path / "r" / "config.json").write_text(json.dumps(run))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r"), "--data-dir", str(tmp_path / "moved")]) == 1
    assert "(20 images then, 30 now)" in capsys.readouterr().err


@pytest.mark.skipif(sys.getfilesystemencoding() != "utf-8", reason="trains under UTF-8 names")
def test_a_folder_named_in_utf8_is_found_under_an_ascii_locale(tmp_path, monkeypatch, capsys):
    """A run trained on folder:caf\u00e9 under a UTF-8 locale records that path as text; read
    under LC_ALL=C PYTHONUTF8=0 (file names ASCII to Python) `mlplab evaluate` said "no such
    folder", and so did --resume and --like: the text names the folder whose name is its UTF-8
    bytes, as where it was written."""
    ds = load_dataset("digits")
    pics = tmp_path / "caf\u00e9"
    for i, (image, label) in enumerate(zip(ds.X_train[:40], ds.y_train[:40])):
        (pics / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(pics / str(label) / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", f"folder:{pics}", "--val-size", "10", "--test-size", "0",
                 "--hidden", "8", "--epochs", "1", "--quiet", "--no-plots", "--out", "r"]) == 0
    val = json.loads((tmp_path / "r" / "metrics.json").read_text())["val_accuracy"]
    env = {k: v for k, v in ENV.items() if not k.startswith(("LC_", "LANG", "PYTHONIO"))}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    done = subprocess.run([sys.executable, "-m", "mlplab", "evaluate", "r", "--json"], env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accuracy"] == pytest.approx(val)


@pytest.mark.parametrize("argv,code,message", [
    (["train", "--resume", "RUN", "--lr", "0.1"], 2, "drop --lr"),
    (["train", "--resume", "RUN", "--dataset", "mnist", "--val-size", "10", "--download"], 2,
     "drop --dataset, --val-size, --download"),
    (["train", "--dataset", "nope"], 2, "argument --dataset: unknown dataset 'nope'; choose one of "
                                        "digits, cifar10"),
    (["train", "--epochs", "2", "--iters", "5"], 2, "not allowed with"),
    (["train", "--hidden", "10,x"], 2, "comma-separated"),
    (["train", "--std", "5"], 2, "--std has no effect with --init he"),
    (["train", "--momentum", "0.5"], 2, "--momentum has no effect with --optimizer adam"),
    (["train", "--step-epochs", "3"], 2, "--step-epochs has no effect with --schedule exp"),
    (["train", "--schedule", "cosine", "--lr-decay", "0.9"], 2, "--lr-decay has no effect"),
    (["train", "--min-lr", "0.1"], 2, "--min-lr has no effect with --schedule exp"),
    (["train", "--hidden", "none", "--dropout", "0.2"], 2,
     "--dropout has no effect with --hidden none"),
    (["train", "--hidden", "none", "--batchnorm", "--activation", "tanh"], 2,
     "--activation, --batchnorm have no effect with --hidden none"),
    (["train", "--schedule", "cosine", "--min-lr", "1"], 2, "must not exceed --lr (0.001)"),
    (["train", "--batchnorm", "--batch-size", "1", "--out", "OUT"], 2,
     "--batch-size must be at least 2 with batch norm"),
    (["train", "--augment", "rotate"], 2, "unknown augmentation"),
    (["evaluate", "/nonexistent/run"], 1, "/nonexistent/run: no such folder"),
    (["train", *TINY, "--optimizer", "sgd", "--lr", "1e9", "--out", "OUT"], 1,
     "lower learning rate"),
])
def test_errors_are_one_line(argv, code, message, capsys, tmp_path):
    argv = [a.replace("RUN", str(tmp_path)).replace("OUT", str(tmp_path / "o")) for a in argv]
    with np.errstate(all="ignore"):
        try:
            got = main(argv)
        except SystemExit as exc:  # argparse usage errors
            got = exc.code
    err = capsys.readouterr().err
    assert got == code and message in err
    if code == 1:  # one line (after any "training ..." banner), no traceback
        assert err.strip().splitlines()[-1].startswith(f"mlplab {argv[0]}: error: ")
        assert "Traceback" not in err


# --------------------------------------------------------------------------- real processes
# Big enough that an epoch takes a noticeable time, so the process can be stopped mid-run; one
# BLAS thread so that the three processes compute bit-identical results.
LONG = ["train", "--dataset", "digits", "--hidden", "512,512", "--batch-size", "32",
        "--epochs", "6", "--optimizer", "nesterov", "--lr", "0.01", "--dropout", "0.1",
        "--seed", "7", "--quiet", "--no-plots"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _mlplab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mlplab", *args], env=ENV, capture_output=True,
                          text=True, timeout=300, **kw)


def _stop_after_checkpoints(out, sig, count=2, ignore_sigint=False):
    """Start a training process, wait for its ``count``-th epoch checkpoint, send ``sig``.
    ``ignore_sigint``: start it with SIGINT ignored, as a shell script's ``cmd &`` does."""
    start = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    proc = subprocess.Popen([sys.executable, "-m", "mlplab", *LONG, "--out", str(out)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=start)
    ckpt, seen, last = out / "checkpoint.npz", 0, None
    deadline = time.time() + 240
    while seen < count and proc.poll() is None and time.time() < deadline:
        if ckpt.exists() and ckpt.stat().st_mtime_ns != last:
            last, seen = ckpt.stat().st_mtime_ns, seen + 1
        time.sleep(0.005)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr


def test_a_run_killed_before_its_first_checkpoint_is_said_to_start_again(tmp_path, capsys):
    """A real process killed (SIGKILL) in its first epoch leaves config.json and its lock's
    file, no checkpoint: mlplab runs lists it unfinished with 0 of its epochs (it said "?"),
    evaluate says it saved no model and how to train it, and --resume says it trains from the
    start (it said "resuming RUN", as if epochs were kept) and finishes it."""
    out = tmp_path / "r"
    kill = ("import os, signal, sys; import mlplab.trainer as t; "
            "t.Trainer.fit = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL); "
            "from mlplab.cli import main; sys.exit(main(sys.argv[1:]))")
    res = subprocess.run([sys.executable, "-c", kill, "train", *TINY, "--out", str(out)],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "config.json"]
    assert main(["runs", str(tmp_path)]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:2] == [str(out), "unfinished"] and "0/3" in row, row
    assert main(["evaluate", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"mlplab evaluate: error: {out} has no model.npz; it stopped before its first epoch "
        f"ended, so it saved no model; train it with mlplab train --resume {out} --no-plots.\n")
    assert main(["train", "--resume", str(out), "--quiet", "--no-plots"]) == 0
    assert f"resuming {out} from the start (it has no checkpoint)\n" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    res = _mlplab(*LONG, "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out


def _assert_same_run(a, b):
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for k in ("status", "train_accuracy", "val_accuracy", "epochs", "iterations", "final_loss"):
        assert ma[k] == mb[k], k
    assert read_history(a / "history.csv") == read_history(b / "history.csv")
    pa, pb = io.load_model(a / "model.npz").model, io.load_model(b / "model.npz").model
    for k, v in pa.state_dict().items():
        np.testing.assert_array_equal(pb.state_dict()[k], v)


def test_sigkill_mid_run_then_resume_equals_uninterrupted(reference, tmp_path):
    out = tmp_path / "killed"
    code, _, _ = _stop_after_checkpoints(out, signal.SIGKILL)
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "metrics.json").exists() and not (out / "model.npz").exists()
    _, state, _ = load_checkpoint(out / "checkpoint.npz")
    total = json.loads((reference / "metrics.json").read_text())["iterations"]
    assert 0 < state["iteration"] < total
    # no torn temp files left? The lock file stays, but its lock went with the process
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [LOCK_FILE]
    assert training_process(out) is None

    res = _mlplab("train", "--resume", str(out), "--quiet", "--no-plots")
    assert res.returncode == 0, res.stderr
    _assert_same_run(reference, out)
    assert not (out / LOCK_FILE).exists()


@pytest.mark.parametrize("sig,ignore_sigint", [(signal.SIGINT, False), (signal.SIGTERM, False),
                                                (signal.SIGTERM, True)],
                         ids=["ctrl-c", "sigterm", "sigterm-with-sigint-ignored"])
def test_ctrl_c_saves_then_resume_equals_uninterrupted(reference, tmp_path, sig, ignore_sigint):
    """SIGTERM (kill, systemd, CI time-outs) stops a run as Ctrl-C does, also in a process
    started with SIGINT ignored; only the exit status differs, the shell's 128 + the signal's
    number (143, not Ctrl-C's 130), so that a supervisor learns its own stop was obeyed."""
    out = tmp_path / "stopped"
    code, stdout, stderr = _stop_after_checkpoints(out, sig, count=1, ignore_sigint=ignore_sigint)
    assert code == 128 + sig, stderr
    last = "mlplab: interrupted" if sig == signal.SIGINT else "mlplab: terminated (SIGTERM)"
    assert stderr.endswith(f"{last}\n"), stderr
    assert stderr.splitlines()[-2] == \
        "interrupted; saved: the run as it stopped, and a checkpoint of that step; --resume goes " \
        f"on from that step. Continue with: mlplab train --resume {out} --no-plots"
    # the resume is the advice: not the finished run's "next: mlplab evaluate ..."
    assert stdout.endswith(f"run folder: {out}\n") and "next:" not in stdout, stdout
    # its own line says so: not the library's RunInterruptedWarning as well
    assert "warning" not in stderr, stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "interrupted" and (out / "model.npz").exists()
    _, state, _ = load_checkpoint(out / "checkpoint.npz")
    assert state["iteration"] == m["iterations"]  # saved at the iteration it stopped

    res = _mlplab("train", "--resume", str(out), "--quiet", "--no-plots")
    assert res.returncode == 0, res.stderr
    _assert_same_run(reference, out)


def _ctrl_c_at_iteration_3(monkeypatch) -> None:
    """The next ``mlplab train`` (through ``mlplab.runs.train_run``) gets a Ctrl-C (SIGINT) at
    its third iteration, as from the keyboard: it stops there and saves its checkpoint."""
    import mlplab.runs

    class CtrlC(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if iteration == 3:
                os.kill(os.getpid(), signal.SIGINT)

    train_run = mlplab.runs.train_run
    monkeypatch.setattr(mlplab.runs, "train_run",
                        lambda *a, **kw: train_run(*a, callbacks=[CtrlC()], **kw))


def test_the_resume_command_printed_after_ctrl_c_keeps_the_threads(monkeypatch, capsys,
                                                                  tmp_path):
    """A run trained with --threads resumes bit-identically only with the same count; the
    printed command left it out. It left out --no-plots too (the run's config does not record
    it), and the pasted command drew the figures the user had turned off."""
    _ctrl_c_at_iteration_3(monkeypatch)
    out = tmp_path / "r"
    assert main(["train", *TINY, "--threads", "1", "--out", str(out)]) == 130  # --no-plots
    err = capsys.readouterr().err
    assert f"Continue with: mlplab train --resume {out} --threads 1 --no-plots\n" in err, err
    monkeypatch.undo()
    resume = err.split("Continue with: mlplab ", 1)[1].splitlines()[0].split()
    assert main([*resume, "--quiet"]) == 0
    assert not list(out.glob("*.png"))


def test_a_stopped_run_ends_with_how_to_continue_it_not_what_to_do_with_its_model(
        monkeypatch, tmp_path):
    """A run that Ctrl-C stopped printed the finished run's "next: mlplab evaluate ... /
    mlplab predict ..." lines before its "interrupted; ... Continue with: ..." line, so the
    first thing it advised was evaluating a half-trained model. Now its results and folder are
    followed by the resume line alone, then the exit's "mlplab: interrupted" (stdout and stderr
    read as one terminal)."""
    import io as std_io

    _ctrl_c_at_iteration_3(monkeypatch)
    terminal = std_io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    out = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(out)]) == 130
    lines = terminal.getvalue().splitlines()
    assert not [line for line in lines if line.startswith("next: ")], lines
    assert lines[-3:] == [f"run folder: {out}", "interrupted; saved: the run as it stopped, and a "
                          "checkpoint of that step; --resume goes on from that step. Continue "
                          f"with: mlplab train --resume {out} --no-plots", "mlplab: interrupted"], \
        lines
    assert lines[-5].startswith("val accuracy ") and lines[-4].startswith("train accuracy ")


def test_a_run_folder_named_with_a_leading_dash_is_named_so_that_commands_read_it(
        monkeypatch, capsys, tmp_path):
    """A run made with ``--out ./-x`` is the folder ``-x``; the command printed after Ctrl-C,
    ``mlplab train --resume -x``, was refused ("argument --resume: expected one argument"), as
    was the one in "already holds a run". They say ``./-x`` now, which resumes it."""
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as patch:
        _ctrl_c_at_iteration_3(patch)
        assert main(["train", *TINY, "--out", "./-x"]) == 130
    assert "Continue with: mlplab train --resume ./-x --no-plots\n" in capsys.readouterr().err
    assert main(["train", *TINY, "--out", "./-x"]) == 1
    assert "continue it with mlplab train --resume ./-x --no-plots." in capsys.readouterr().err
    # a run whose config.json does not record --no-plots (started with figures, or written
    # before 4 Dec 2026) is advised without it
    config = json.loads((tmp_path / "-x" / "config.json").read_text())
    (tmp_path / "-x" / "config.json").write_text(json.dumps(
        {k: v for k, v in config.items() if k != "no_plots"}))
    assert main(["train", *TINY, "--out", "./-x"]) == 1
    assert "continue it with mlplab train --resume ./-x." in capsys.readouterr().err
    assert main(["train", "--resume", "./-x", "--quiet", "--no-plots"]) == 0


def test_a_second_ctrl_c_prints_how_to_resume_from_the_kept_checkpoint(monkeypatch, capsys,
                                                                      tmp_path):
    """A second Ctrl-C ends the run at once, before it saves; its last end-of-epoch checkpoint
    is still there and resumes it exactly. The command said only "mlplab: interrupted", and the
    docs' "quits at once without saving" read as if the run were lost."""
    import mlplab.runs

    class CtrlCTwice(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if iteration == 15:  # in epoch 2 of 11 iterations each: epoch 1 is checkpointed
                os.kill(os.getpid(), signal.SIGINT)  # stop after this iteration...
                os.kill(os.getpid(), signal.SIGINT)  # ...no: now

    train_run = mlplab.runs.train_run
    with monkeypatch.context() as patch:
        patch.setattr(mlplab.runs, "train_run",
                      lambda *a, **kw: train_run(*a, callbacks=[CtrlCTwice()], **kw))
        out = tmp_path / "r"
        assert main(["train", *TINY, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert not (out / "metrics.json").exists()  # not saved: the checkpoint is epoch 1's
    assert f"Continue with: mlplab train --resume {out} --no-plots\n" in err, err

    assert main(["train", "--resume", str(out), "--quiet", "--no-plots"]) == 0
    assert f"resuming {out}\n" in capsys.readouterr().err
    assert main(["train", *TINY, "--out", str(tmp_path / "uninterrupted")]) == 0
    _assert_same_run(tmp_path / "uninterrupted", out)
    # a completed run is refused, without first saying it is being resumed
    assert main(["train", "--resume", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "has already completed; nothing to resume" in err and "resuming" not in err


def test_a_ctrl_c_that_python_dropped_still_ends_the_command_with_130(monkeypatch, capsys):
    """Python drops a KeyboardInterrupt raised in a weakref callback or __del__ ("Exception
    ignored") and goes on; the command must not then report success."""
    import mlplab.cli.check as check
    from mlplab import interrupts

    def dropped(args):
        try:
            interrupts.handler(signal.SIGINT, None)  # as the signal would, inside a callback
        except KeyboardInterrupt:
            pass  # what Python does with it there
        return 0

    monkeypatch.setattr(check, "run_check", dropped)
    assert main(["check"]) == 130
    assert capsys.readouterr().err.strip() == "mlplab: interrupted"

    def broken_on_the_way_out(args):  # a second Ctrl-C inside a library's bookkeeping
        try:
            interrupts.handler(signal.SIGINT, None)
        except KeyboardInterrupt:
            raise UnboundLocalError("cannot access local variable 'updated_state'") from None

    monkeypatch.setattr(check, "run_check", broken_on_the_way_out)
    assert main(["check"]) == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after


_DROPPED = """
import signal, sys, weakref
import mlplab.cli.check as check
from mlplab import interrupts
from mlplab.cli import main

class Thing:
    pass

def dropped(args):
    thing = Thing()
    ref = weakref.ref(thing, lambda r: interrupts.handler(signal.SIGINT, None))
    del thing  # the callback raises KeyboardInterrupt, which Python drops
    other = Thing()
    ref2 = weakref.ref(other, lambda r: 1 / 0)  # an error of another kind: still reported
    del other
    return 0

check.run_check = dropped
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("debug", [False, True])
def test_a_ctrl_c_dropped_in_a_callback_prints_no_traceback(debug):
    """A SIGTERM to ``mlplab tune`` that landed in one of SQLAlchemy's weakref callbacks printed
    Python's "Exception ignored in: <bound method _MultipleClassMarker._remove_item ...>" and a
    traceback before "mlplab: interrupted"; the interrupt is remembered, so that report is
    noise. Other unraisable errors are still reported, and --debug shows Python's report. (In a
    process of its own: pytest puts its own hook in place of Python's.)"""
    res = subprocess.run([sys.executable, "-c", _DROPPED, *["--debug"] * debug, "check"],
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 130, res.stderr
    assert res.stderr.endswith("mlplab: interrupted\n") and "ZeroDivisionError" in res.stderr
    assert ("KeyboardInterrupt" in res.stderr) == debug, res.stderr


def test_sqrt_standardize_run_saves_its_power_step(tmp_path, capsys):
    """The saved pipeline rebuilds the square root: evaluate sees what training saw."""
    out = tmp_path / "sqrt"
    assert main(["train", *TINY, "--preprocessing", "sqrt-standardize", "--out", str(out)]) == 0
    loaded = io.load_model(out / "model.npz")
    assert [s.kind for s in loaded.preprocessing.steps] == ["power", "standardize", "flatten"]
    ds = load_dataset("digits")
    roots = np.sqrt(ds.X_val / 255.0)
    std = loaded.preprocessing.steps[1]  # statistics of the training split's square roots
    np.testing.assert_allclose(loaded.preprocessing.transform(ds.X_val),
                               ((roots - std.mean_) / std.std_).reshape(len(roots), -1), atol=1e-5)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    pred = loaded.model.predict(loaded.preprocessing.transform(ds.X_val))
    assert res["accuracy"] == pytest.approx(np.mean(pred == ds.y_val)) and res["accuracy"] > 0.5


def test_elastic_augmentation_reaches_the_trainer_and_the_run_folder(tmp_path, capsys):
    """``--augment flip,elastic --elastic-pixels 1.5 --crop-fill black``: the trainer's augmenter
    distorts by up to 1.5 pixels and pulls in the preprocessed black background; bad values are
    refused before training."""
    from mlplab.runs import RunConfig, make_augmenter, train_run
    from mlplab.trainer import Callback

    seen = {}

    class Spy(Callback):
        def on_train_begin(self, trainer):
            seen["augment"] = trainer.augment

    train_run(dataset="digits", hidden=[16], epochs=1, augment="flip,elastic",
              elastic_pixels=1.5, crop_fill="black", out=tmp_path / "e", plots=False,
              callbacks=[Spy()])
    aug = seen["augment"]
    assert aug.elastic == 1.5 and aug.flip and aug.crop == 0
    std = io.load_model(tmp_path / "e" / "model.npz").preprocessing.steps[0]
    np.testing.assert_allclose(aug.fill, (0.0 - std.mean_) / std.std_, rtol=1e-6)
    cfg = json.loads((tmp_path / "e" / "config.json").read_text())
    assert cfg["augment"] == ["flip", "elastic"] and cfg["elastic_pixels"] == 1.5
    # the default displacement, and none without "elastic" in the list
    assert make_augmenter(RunConfig(augment=["elastic"]), (8, 8, 1)).elastic == 2.0
    assert make_augmenter(RunConfig(augment=["crop"], elastic_pixels=3), (8, 8, 1)).elastic == 0
    for bad in (0, -1, 9, "2"):
        with pytest.raises(ValueError, match="elastic_pixels"):
            RunConfig(elastic_pixels=bad).validate()
    capsys.readouterr()
    assert main(["train", *TINY, "--augment", "elastic", "--elastic-pixels", "0",
                 "--out", str(tmp_path / "bad")]) != 0
    assert "error: --elastic-pixels must be a number of pixels" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit):
        main(["train", *TINY, "--augment", "flip,warp"])
    assert "use any of flip, crop, elastic" in capsys.readouterr().err
    # an option its augmentation is not asked for would be ignored: refused, naming both
    assert main(["train", *TINY, "--elastic-pixels", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--elastic-pixels has no effect without elastic" in capsys.readouterr().err
    # a crop as large as the 8x8 digits would leave nothing of them: refused before writing
    assert main(["train", *TINY, "--augment", "crop", "--crop-padding", "8",
                 "--out", str(tmp_path / "y")]) != 0
    assert "error: --crop-padding 8 must be smaller than the images' side (8 pixels)." in \
        capsys.readouterr().err  # the flag alone, not "crop_padding 8 (--crop-padding)"
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    from mlplab.runs import train_run

    with pytest.raises(ValueError, match=r"^crop_padding=8 must be smaller than the images' side "
                                         r"\(8 pixels\)\.$"):
        train_run(dataset="digits", augment=["crop"], crop_padding=8, epochs=1)


def test_crop_fill_black_pads_with_the_preprocessed_background(tmp_path, capsys):
    """``--crop-fill black`` reaches the trainer's augmenter as the preprocessing of a black
    image, here (0 - mean) / std of the training split's square roots, and is saved with the run;
    the default pads with 0, the mean after standardisation."""
    from mlplab.runs import RunConfig, make_augmenter, train_run
    from mlplab.trainer import Callback

    seen = {}

    class Spy(Callback):
        def on_train_begin(self, trainer):
            seen["augment"] = trainer.augment

    res = train_run(dataset="digits", hidden=[16], epochs=1, preprocessing="sqrt-standardize",
                    augment=["flip", "crop"], crop_padding=1, crop_fill="black",
                    out=tmp_path / "black", plots=False, callbacks=[Spy()])
    std = io.load_model(tmp_path / "black" / "model.npz").preprocessing.steps[1]
    expected = (0.0 - std.mean_) / std.std_  # sqrt(0) = 0, standardised; one channel
    np.testing.assert_allclose(seen["augment"].fill, expected, rtol=1e-6)
    assert expected[0] < -0.5  # far from the mean's 0, so the test tells the two apart
    assert json.loads((tmp_path / "black" / "config.json").read_text())["crop_fill"] == "black"
    assert res.config.crop_fill == "black"
    assert make_augmenter(RunConfig(augment=["crop"]), (8, 8, 1)).fill == 0.0
    with pytest.raises(ValueError, match="crop_fill must be one of zero, black"):
        RunConfig(crop_fill="white").validate()
    with pytest.raises(SystemExit):
        main(["train", *TINY, "--crop-fill", "white"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("argv,meant", [
    (["tune", "--trials", "1", "--data-seed", "1"], "--seed"),
    (["reproduce", "--data-seed", "1"], "--seed"),
])
def test_a_flag_another_command_spells_differently_is_suggested_by_this_ones_name(
        argv, meant, capsys):
    """``mlplab tune --data-seed`` was asked "did you mean --data-dir?": a look-alike of
    another meaning. The flag that means the same here (the --seed of tune and reproduce seeds
    the splits, as train's --data-seed) is suggested instead."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert f"(did you mean {meant}?)" in capsys.readouterr().err


@pytest.mark.parametrize("command,flags", [
    (["train"], {"progress": ["--quiet", "--no-progress"], "std": ["--std", "--init-std"]}),
    (["torch", "train"], {"progress": ["--no-progress", "--quiet"],
                          "init_std": ["--init-std", "--std"]}),
    (["torch", "depth"], {"progress": ["--no-progress", "--quiet"],
                          "init_std": ["--init-std", "--std"]}),
    (["tune", "--trials", "1"], {"progress": ["--no-progress", "--quiet"]}),
])
def test_the_progress_and_std_flags_take_either_spelling(command, flags):
    """train had --quiet and --std where torch and tune have --no-progress and --init-std; a
    user of one typed the other's and was refused. Each command takes both, to one setting."""
    from mlplab.cli import build_parser

    parser = build_parser()
    for dest, spellings in flags.items():
        takes_value = dest.endswith("std")
        values = {getattr(parser.parse_args([*command, flag, *(["0.5"] if takes_value else [])]),
                          dest) for flag in spellings}
        unset = getattr(parser.parse_args(command), dest)
        assert len(values) == 1 and values != {unset}, (dest, values, unset)


@pytest.mark.parametrize("argv,meant", [
    (["torch", "depth", "--hidden", "50"], "--hidden-size"),
    (["train", "--hid", "50"], "--hidden"),
])
def test_a_prefix_of_a_flag_is_refused_not_taken_for_it(argv, meant, capsys):
    """argparse's prefix matching took train's --hidden given to torch depth as its
    --hidden-size without a word (and a prefix becomes ambiguous once a flag is added)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert f"(did you mean {meant}?)" in capsys.readouterr().err


@pytest.mark.parametrize("argv,said", [
    (["tune", "--tri", "1"], "unrecognized arguments: --tri 1 (did you mean --trials?)"),
    (["tune"], "the following arguments are required: --trials"),
    (["data", "show", "digits", "--ou", "f.png"], "unrecognized arguments: --ou f.png "
                                                  "(did you mean --out?)"),
    (["data", "show", "digits"], "the following arguments are required: --out"),
    (["data", "show"], "the following arguments are required: NAME, --out"),
    (["tune", "--trials", "0"], "argument --trials: expected a positive integer; got '0'"),
])
def test_an_unknown_flag_is_named_before_a_missing_required_one(argv, said, capsys):
    """argparse checks required flags before it reports unknown words: ``mlplab tune --tri 1``
    said that --trials is required and never named --tri as the misspelt flag."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].endswith(said)
    # the usage above the error still shows a required flag as required
    assert "[--trials N]" not in err and "[--out FILE]" not in err


def test_help_shows_required_flags_as_required(capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    out = capsys.readouterr().out
    assert " --trials N " in out and "[--trials N]" not in out


@pytest.mark.parametrize("flags,said", [
    (["--trials", "5"], "--budget"), (["--epochs", "2"], "--budget"),
    (["--train-size", "1000"], "--budget"), (["--quiet"], "--progress"),
    (["--no-progress"], "--progress"),
])
def test_a_flag_reproduce_lacks_points_to_what_sets_it(flags, said, capsys, tmp_path):
    """``mlplab reproduce --trials 5`` (to make the study quicker) was asked "did you mean
    --threads?", ``--quiet`` "--out?": the budget sets the work of every stage, and progress
    bars are off unless --progress."""
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--out", str(tmp_path / "r"), *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # the error, not the usage above it
    assert said in err and "did you mean" not in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv,said", [
    (["train", "--epochs", "1", "--debug"], "--debug goes before the command: mlplab --debug "
                                            "train ...)"),
    (["data", "info", "digits", "--debug"], "--debug goes before the command: mlplab --debug "
                                            "data ...)"),
    (["train", "--version"], "--version goes before the command: mlplab --version)"),
])
def test_mlplabs_own_option_after_the_command_says_where_it_goes(argv, said, capsys):
    """``mlplab train ... --debug`` (an internal error's message says to rerun with --debug) was
    asked "did you mean --reg?", ``mlplab train --version`` "--verbose?"."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(said) and "did you mean" not in err, err


def test_an_unknown_flag_is_reported_by_its_command_with_the_closest_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", *TINY, "--augmentation", "flip"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert ("mlplab train: error: unrecognized arguments: --augmentation flip "
            "(did you mean --augment?)") in err
    with pytest.raises(SystemExit):
        main(["data", "show", "digits", "--out", "x.png", "--splt", "val"])
    assert "mlplab data show: error: unrecognized arguments: --splt val (did you mean --split?)" \
        in capsys.readouterr().err
    # a shortened flag: the one it starts, where difflib's similarity offered --help and --lr
    for short, meant in (("--ep", "--epochs"), ("--lr-d", "--lr-decay")):
        with pytest.raises(SystemExit):
            main(["train", *TINY, short, "1"])
        assert f"unrecognized arguments: {short} 1 (did you mean {meant}?)" in \
            capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["torch", "train", "--lr-decy", "0.5"])
    assert "mlplab torch train: error: unrecognized arguments: --lr-decy 0.5 (did you mean " \
        "--lr-decay?)" in capsys.readouterr().err
    # a value the library refuses: the command and action, then the flag as typed (mlplab torch
    # checks it after importing PyTorch)
    if importlib.util.find_spec("torch") is not None:
        assert main(["torch", "train", "--lr-decay", "0"]) == 2
        assert "mlplab torch train: error: --lr-decay must be in (0, 1]" in \
            capsys.readouterr().err


@pytest.mark.parametrize("argv,said", [
    (["train", "cifar10"], "unrecognized arguments: cifar10 (a dataset is given with --dataset "
                           "here: --dataset cifar10)"),
    (["tune", "--trials", "1", "folder:/data/pets"], "(a dataset is given with --dataset here: "
                                                     "--dataset folder:/data/pets)"),
    (["evaluate", "--run", "runs/a"], "unrecognized arguments: --run (RUN is this command's "
                                      "argument, given without --run)"),
    (["runs", "--folder", "runs"], "(FOLDER is this command's argument, given without --folder)"),
    (["train", "somewhere"], "unrecognized arguments: somewhere\n"),  # not a dataset: no hint
    # with --dataset given, a second name is a second dataset, not a missing flag
    (["train", "--dataset", "digits", "mnist"], "unrecognized arguments: mnist (one dataset per "
                                                "run: --dataset takes one name)"),
])
def test_a_value_for_a_flag_and_a_flag_for_an_argument_are_told_apart(argv, said, capsys):
    """Habits from another command: ``mlplab train cifar10`` (train takes --dataset) and
    ``mlplab evaluate --run RUN`` (RUN is evaluate's argument) were only "unrecognized"."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert said in capsys.readouterr().err


def test_the_defaults_train_help_states_are_run_configs():
    # `mlplab train` leaves its flags at None (a preset or --resume fills them), so its help
    # writes the defaults out by hand: each must be RunConfig's
    import argparse
    import re

    from mlplab.cli import build_parser
    from mlplab.runs import RunConfig

    defaults = RunConfig()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for action in sub.choices["train"]._actions:
        stated = re.search(r"(?:\(|; )default: ([\w.+-]+)(?=[;),]| =)", action.help or "")
        if not stated or not hasattr(defaults, action.dest):
            continue
        value = getattr(defaults, action.dest)
        value = value[0] if isinstance(value, list) and len(value) == 1 else value
        text = stated.group(1)
        expected = None if text == "off" else [] if text == "none" and value == [] else \
            type(value)(text) if isinstance(value, int | float) else text
        assert value == expected, f"--{action.dest}: help says {text}, RunConfig has {value}"
        checked += 1
    assert checked >= 26


def test_the_patience_train_help_states_for_presets_is_theirs():
    """--patience's help gave no default while three presets turn early stopping on."""
    import argparse
    import re

    from mlplab.cli import build_parser
    from mlplab.presets import PRESETS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices["train"]._actions if a.dest == "patience")
    stated = re.search(r"\(default: off; the CIFAR-10 accuracy presets: (\d+)\)", action.help)
    assert stated, action.help
    on = {name: p["patience"] for name, p in PRESETS.items() if p.get("patience") is not None}
    assert set(on) == {"twolayer-best", "deep-best", "twolayer-fast"}
    assert set(on.values()) == {int(stated.group(1))}


def test_a_dataset_of_one_class_is_refused_in_the_datas_terms(tmp_path, monkeypatch, capsys):
    """A folder with a single class sub-folder (a user who pointed folder: at their photos with
    one class so far) was refused by the network as 'num_classes must be an integer >= 2; got
    1', after the 'training ... -> RUN' line had named a run folder."""
    from mlplab.runs import train_run

    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    (root / "cats").mkdir(parents=True)
    for i in range(10):
        Image.new("RGB", (6, 5), (20 * i, 30, 40)).save(root / "cats" / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{root}", "--epochs", "1", "--quiet",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == (f"mlplab train: error: folder:{root} has one class (cats); a classifier needs "
                   "at least two (folder:PATH needs one sub-folder of images per class).\n")
    assert not out.exists()
    with pytest.raises(ValueError, match=r"has one class \(cats\); a classifier needs at least"):
        train_run(dataset=f"folder:{root}", epochs=1, out=tmp_path / "lib")
    assert not (tmp_path / "lib").exists()


@pytest.mark.parametrize("flags, message", [
    (["--test-size", "0", "--eval-test"], "the dataset digits has no test split to evaluate "
     "(--eval-test): give it one with --test-size N, or leave out --eval-test."),
    (["--augment", "crop", "--crop-padding", "8"],
     "--crop-padding 8 must be smaller than the images' side (8 pixels)."),
])
def test_data_the_run_cannot_use_is_refused_before_the_run_folder_is_named(flags, message,
                                                                          tmp_path, capsys):
    """The 'training ... -> RUN' line came before these checks of the loaded data, so the
    command named a run folder and then refused the run, leaving no such folder."""
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--quiet", *flags, "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"mlplab train: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("argv, note", [
    (["train", "--layers", "2,3"], "a network's depth is its hidden sizes here, e.g. --hidden "
     "50,50; --layers is mlplab torch depth's"),
    (["train", "--device", "cuda"], "mlplab train computes with NumPy on the CPU, with --threads "
     "N BLAS threads; --device is mlplab torch's"),
    (["train", "--train-size", "2000"], "a run trains on its whole training split; --val-size "
     "and --test-size hold images out of it, --epochs or --iters make the run short; "
     "--train-size is mlplab tune's"),
    (["evaluate", "runs/a", "--dataset", "digits"], "the run's config.json gives its dataset, "
     "splits and preprocessing; --data-dir DIR if its files moved"),
    (["evaluate", "runs/a", "--val-size=100"], "the run's config.json gives its dataset"),
    (["predict", "runs/a", "x.png", "--split", "val"], "predict classifies the IMAGE files "
     "given, preprocessed as the run's model.npz says; mlplab evaluate RUN --split val|test"),
])
def test_other_commands_flags_say_what_this_one_takes_instead(argv, note, capsys):
    """Answered with a look-alike before: train --layers "did you mean --lr?", evaluate
    --dataset "did you mean --data-dir?". (predict's said its preprocessing came from the run's
    config.json, which it does not read: test_predict_needs_only_the_model_file.)"""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert note in err and "did you mean" not in err


def test_evaluating_an_empty_split_names_the_runs_own_setting(tmp_path, capsys):
    """The message said "(e.g. a run trained with val_size 0)" for an empty test split too."""
    out = tmp_path / "r"
    assert main(["train", *TINY, "--test-size", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--split", "test"]) == 1
    assert capsys.readouterr().err == (
        "mlplab evaluate: error: the test split of digits is empty for this run (its config.json "
        "has test_size 0); evaluate another: --split train, --split val.\n")


def test_preprocess_is_the_same_flag_in_train_and_data_show_as_in_tune(tmp_path, capsys):
    """tune takes --preprocess for --preprocessing; train and data show answered it with
    "unrecognized arguments"."""
    out = tmp_path / "r"
    assert main(["train", *TINY, "--preprocess", "scale", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["preprocessing"] == "scale"
    assert main(["data", "show", "digits", "--preprocess", "scale", "--per-class", "1",
                 "--out", str(tmp_path / "a.png")]) == 0
    assert "as the network sees them: scale" in capsys.readouterr().out


def test_train_acc_help_says_up_to_the_subset_the_trainer_measures(tmp_path, capsys):
    """``--train-acc subset`` measures min(N, 5,000) training rows: on the default digits (1,437
    training rows) every one of them, so the help's "on 5,000 training rows" was untrue."""
    import argparse

    from mlplab.cli import build_parser
    from mlplab.trainer import TRAIN_ACC_SUBSET

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices["train"]._actions if a.dest == "train_acc")
    assert f"on up to {TRAIN_ACC_SUBSET:,} training rows" in action.help
    out = tmp_path / "r"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_size"] < TRAIN_ACC_SUBSET
    # so the per-epoch figure is the whole training split's, as metrics.json measures it
    assert read_history(out / "history.csv")["train_acc"][-1] == \
        pytest.approx(metrics["train_accuracy"])


def test_data_seed_seeds_the_test_split_too_and_seed_does_not(run_dir, tmp_path):
    """--data-seed's help said it seeds the digits/folder validation split; it seeds the test
    split held out of digits (and of a folder without test/) as well."""
    def splits(*flags: str) -> dict:
        out = tmp_path / "-".join(flags)
        assert main(["train", *TINY, "--epochs", "1", *flags, "--out", str(out)]) == 0
        return json.loads((out / "metrics.json").read_text())["split_sha1"]

    first = json.loads((run_dir / "metrics.json").read_text())["split_sha1"]  # both seeds 0
    assert splits("--seed", "1") == first
    other = splits("--data-seed", "1")
    assert other["test"] != first["test"] and other["val"] != first["val"]


@pytest.mark.filterwarnings("ignore:the warm-up .* lasts the whole run")  # a preset cut short
def test_augment_none_turns_off_a_presets_augmentation(tmp_path):
    """``--augment none`` was accepted (and needed to drop a preset's flips and crops) but the
    help listed only flip,crop,elastic."""
    import argparse

    from mlplab.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for parser in (sub.choices["train"],
                   next(a for a in sub.choices["data"]._actions
                        if isinstance(a, argparse._SubParsersAction)).choices["show"]):
        action = next(a for a in parser._actions if a.dest == "augment")
        assert "none: no augmentation" in action.help
    out = tmp_path / "r"
    assert main(["train", "--preset", "twolayer-best", *TINY, "--epochs", "1", "--augment",
                 "none", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["preset"] == "twolayer-best" and cfg["augment"] == []


@pytest.mark.parametrize("text,said", [("", "empty; give flip, crop, elastic"),
                                       (",", "empty; give flip"),
                                       ("flip,,crop", "'flip,,crop' has an empty item"),
                                       ("none,flip", "'none,flip': none means no augmentation")])
def test_augment_refuses_empty_items_and_none_beside_others(text, said, capsys):
    """``--augment ""`` (an unset shell variable) turned a preset's flips and crops off unasked,
    ``flip,,crop`` passed, and ``none,flip`` trained with flips."""
    with pytest.raises(SystemExit) as exc:
        main(["train", "--preset", "twolayer-best", f"--augment={text}"])
    assert exc.value.code == 2
    assert said in capsys.readouterr().err


def test_train_ends_by_saying_what_to_do_next(tmp_path, capsys, monkeypatch):
    """A run ended with its folder and no word of evaluate, predict or runs (a newcomer's next
    steps); and `mlplab runs` alone does not list a run outside runs/, so it is named."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "1", "--out", "my run"]) == 0
    last = capsys.readouterr().out.splitlines()[-4:]
    # a command a line: on one line they made 134 columns for a run folder runs/a
    assert last == ["run folder: my run",
                    f"next: mlplab evaluate {shell_command(['my run'])} (per class, confusion "
                    "matrix)",
                    f"      mlplab predict {shell_command(['my run'])} IMAGE...",
                    "      mlplab runs . (the runs there, side by side)"]
    assert main(["train", "--epochs", "1", "--out", os.path.join("runs", "a")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "      mlplab runs (the runs there, side by side)"
    assert all(len(line) <= 100 for line in out[-3:]), out
    assert main(["train", "--epochs", "1", "--out", "b", "--json"]) == 0
    json.loads(capsys.readouterr().out)  # JSON alone
    # without a validation split, evaluate's default: plain `mlplab evaluate c` is refused
    for sizes, split in ((["--val-size", "0"], "test"),
                         (["--val-size", "0", "--test-size", "0"], "train")):
        shutil.rmtree("c", ignore_errors=True)
        assert main(["train", "--epochs", "1", "--out", "c", *sizes]) == 0
        advice = capsys.readouterr().out.splitlines()[-3]
        assert advice.startswith(f"next: mlplab evaluate c --split {split} (per class, ")
        assert main(["evaluate", "c", "--split", split]) == 0


def test_a_long_runs_time_is_printed_as_mlplab_runs_and_the_report_give_it(capsys):
    """A run of 17.5 minutes ended with "1050.3 s", which `mlplab runs` and the report give as
    "17.5 min"; one time format for every command (and "0 s" of torch depth's 0.2 s)."""
    from mlplab._text import duration
    from mlplab.cli import print_run_result
    from mlplab.cli.runs import _cell

    assert [duration(x) for x in (0.04, 0.2, 63.44, 119.9, 1050.3)] == \
        ["0.0 s", "0.2 s", "63.4 s", "119.9 s", "17.5 min"]
    metrics = {"val_accuracy": 0.9, "best_val_accuracy": 0.9, "best_epoch": 3,
               "test_accuracy": None, "train_accuracy": 0.95, "epochs": 3, "iterations": 30,
               "seconds": 1050.3, "val_size": 10}
    print_run_result(metrics, os.path.join("runs", "a"))
    second = capsys.readouterr().out.splitlines()[1]
    assert second.endswith("after 3 epochs, 30 iterations, 17.5 min"), second
    assert _cell({"seconds": 1050.3, "seconds_left": None}, "seconds", "seconds") == "17.5 min"


def test_the_closing_result_lines_fit_in_88_columns(capsys):
    """The result was one line, 103 columns for a short run and 126 with --eval-test (162 at
    the widest): the held-out figures now make one line and the training the next."""
    from mlplab.cli import print_run_result

    metrics = {"val_accuracy": 1.0, "best_val_accuracy": 1.0, "best_epoch": 1000,
               "test_accuracy": 1.0, "train_accuracy": 1.0, "epochs": 1000,
               "iterations": 1_000_000, "seconds": 100_000.0, "stopped_early": True,
               "val_size": 10}
    print_run_result(metrics, os.path.join("runs", "a"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["val accuracy 100.00% (best 100.00% at epoch 1000), test accuracy "
                         "100.00%",
                         "train accuracy 100.00% after 1000 epochs (stopped early), 1000000 "
                         "iterations, 1666.7 min"]
    assert all(len(line) <= 88 for line in lines[:2]), lines


def test_a_time_that_rounds_to_two_minutes_is_given_in_minutes():
    """119.95 s and up were written "120.0 s" while 120 s was "2.0 min": the switch to minutes
    at two minutes is made on the time as written, to a tenth of a second."""
    from mlplab._text import duration
    from mlplab.report.fmt import seconds

    for x, said in ((119.94, "119.9 s"), (119.95, "2.0 min"), (119.96, "2.0 min"),
                    (119.999, "2.0 min"), (120, "2.0 min")):
        assert duration(x) == seconds(x) == said, x
    assert "120.0 s" not in {duration(119.9 + i / 1000) for i in range(100)}


def test_a_run_ended_by_early_stopping_says_so(tmp_path, capsys):
    """A run of 40 epochs that --patience ended after 6 said "after 6 epochs", as if 6 had
    been asked for (mlplab runs lists it as "6 (early)")."""
    out = str(tmp_path / "e")
    assert main(["train", "--hidden", "16", "--epochs", "40", "--patience", "1", "--lr", "0.05",
                 "--no-plots", "--out", out]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["stopped_early"] and metrics["epochs"] < 40  # (the premise)
    line = capsys.readouterr().out.splitlines()[1]
    assert f"after {metrics['epochs']} epochs (stopped early), " in line, line


class _Captured(Exception):
    """Raised by a stand-in for the library call, carrying what the command passed to it."""


def _captured_call(monkeypatch, module, name, argv):
    """The keyword arguments (and first positional one) the command ``argv`` passes to
    ``module.name``: the call is replaced by one that records them and stops the command, so
    that nothing is trained or loaded."""
    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs, _args=args)
        raise _Captured

    monkeypatch.setattr(module, name, fake)
    with pytest.raises(_Captured):
        main(["--debug", *argv])
    return seen


# each flag of `mlplab train` with a value other than its default and preset-free, and the
# RunConfig field and value it must give the run (what the user typed)
_TRAIN_FLAGS = [
    (["--hidden", "7,5"], "hidden", [7, 5]),
    (["--hidden", "None"], "hidden", []),  # softmax regression, in any case
    (["--activation", "tanh"], "activation", "tanh"),
    (["--init", "normal", "--std", "0.02"], "std", 0.02),
    (["--init", "xavier"], "init", "xavier"),
    (["--dropout", "0.25"], "dropout", 0.25),
    (["--batchnorm"], "batchnorm", True),
    (["--dtype", "float64"], "dtype", "float64"),
    (["--optimizer", "sgd"], "optimizer", "sgd"),
    (["--lr", "0.0123"], "lr", 0.0123),
    (["--optimizer", "momentum", "--momentum", "0.7"], "momentum", 0.7),
    (["--weight-decay", "0.03"], "weight_decay", 0.03),
    (["--schedule", "step"], "schedule", "step"),
    (["--lr-decay", "0.5"], "lr_decay", 0.5),
    (["--schedule", "step", "--step-epochs", "3"], "step_epochs", 3),
    (["--warmup-epochs", "1.5"], "warmup_epochs", 1.5),
    (["--schedule", "cosine", "--min-lr", "1e-5"], "min_lr", 1e-5),
    (["--reg", "0.07"], "reg", 0.07),
    (["--label-smoothing", "0.1"], "label_smoothing", 0.1),
    (["--batch-size", "33"], "batch_size", 33),
    (["--epochs", "4"], "epochs", 4),
    (["--iters", "17"], "iters", 17),
    (["--sampling", "replacement"], "sampling", "replacement"),
    (["--train-acc", "batch"], "train_acc", "batch"),
    (["--patience", "3"], "patience", 3),
    (["--seed", "11"], "seed", 11),
    (["--data-seed", "12"], "data_seed", 12),
    (["--preprocessing", "exercise"], "preprocessing", "exercise"),
    (["--augment", "flip,crop"], "augment", ["flip", "crop"]),
    (["--augment", "crop", "--crop-padding", "2"], "crop_padding", 2),
    (["--augment", "crop", "--crop-fill", "black"], "crop_fill", "black"),
    (["--augment", "elastic", "--elastic-pixels", "3"], "elastic_pixels", 3.0),
    (["--eval-test"], "eval_test", True),
    (["--val-size", "100"], "val_size", 100),
    (["--test-size", "0.2"], "test_size", 0.2),
    (["--image-size", "4x6"], "image_size", "4x6"),
    (["--data-dir", "/some/where"], "data_dir", "/some/where"),
]


@pytest.mark.parametrize("flags,field,value", _TRAIN_FLAGS,
                         ids=[" ".join(f[0]) for f in _TRAIN_FLAGS])
def test_every_train_flag_reaches_the_runs_configuration(flags, field, value, monkeypatch,
                                                         tmp_path):
    """A flag parsed but not passed on (or passed to another field) would silently train
    another network than the one asked for: each must set its own field, and only it."""
    import mlplab.runs
    from mlplab.runs import RunConfig

    seen = _captured_call(monkeypatch, mlplab.runs, "train_run",
                          ["train", *flags, "--out", str(tmp_path / "r")])
    cfg = seen["_args"][0]
    assert getattr(cfg, field) == value
    # the other fields keep RunConfig's defaults (but data_seed's 0, which the command sets)
    given = {f for f in ("init", "optimizer", "schedule", "augment") if f"--{f}" in flags}
    given |= {"epochs"} if "--iters" in flags else set()  # a run's length is one or the other
    others = {k: v for k, v in vars(RunConfig()).items() if k not in {field, *given}}
    assert {k: getattr(cfg, k) for k in others} == others


def test_train_passes_its_output_options_to_the_run(monkeypatch, tmp_path):
    """--out, --verbose and --no-plots reach train_run; --verbose turns the progress bar off
    (its epoch lines would be torn up by it)."""
    import mlplab.runs

    out = tmp_path / "r"
    seen = _captured_call(monkeypatch, mlplab.runs, "train_run",
                          ["train", "--out", str(out), "--verbose", "--no-plots"])
    assert (str(seen["out"]), seen["verbose"], seen["plots"], seen["progress"]) == \
        (str(out), True, False, False)
    seen = _captured_call(monkeypatch, mlplab.runs, "train_run", ["train", "--out", str(out)])
    assert (seen["verbose"], seen["plots"], seen["progress"]) == (False, True, True)


def test_early_stopping_without_a_validation_split_is_told_in_the_callers_words(tmp_path,
                                                                                capsys):
    """The refusal named the fields and the flags together ("give val_size > 0 (--val-size N)
    ... (patience None, --patience 0)"): the flags on the command line, the fields in Python."""
    from mlplab.runs import train_run

    out = tmp_path / "r"
    assert main(["train", *TINY, "--val-size", "0", "--patience", "3", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "error: early stopping (--patience) needs a validation split, and --val-size is 0: give "
        "--val-size N or turn early stopping off (--patience 0).")
    assert not out.exists()
    with pytest.raises(ValueError, match=re.escape(
            "early stopping (patience) needs a validation split, and val_size is 0: give "
            "val_size > 0 or turn early stopping off (patience=None).")):
        train_run(dataset="digits", val_size=0, patience=3)


def test_train_patience_0_turns_off_a_presets_early_stopping(monkeypatch, tmp_path):
    import mlplab.runs
    from mlplab.presets import PRESETS

    assert PRESETS["twolayer-fast"]["patience"]  # the preset stops early
    seen = _captured_call(monkeypatch, mlplab.runs, "train_run",
                          ["train", "--preset", "twolayer-fast", "--patience", "0",
                           "--out", str(tmp_path / "r")])
    assert seen["_args"][0].patience is None


@pytest.mark.parametrize("flags", [["--mirror", "http://m.invalid"], ["--no-cache"],
                                   ["--out", "elsewhere"], ["--preset", "exercise-default"],
                                   ["--download"], ["--image-size", "4"], ["--data-seed", "3"],
                                   ["--test-size", "5"], ["--seed", "1"], ["--epochs", "2"]])
def test_resume_refuses_every_option_of_the_run_it_continues(flags, capsys):
    """A resumed run continues exactly as configured: an option given with --resume, which
    would be silently ignored, is a usage error naming it (whatever it is)."""
    assert main(["train", "--resume", "RUN", *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"mlplab train: error: --resume continues a run exactly as it was configured; " \
                  f"drop {flags[0]}.\n"


def test_resume_passes_its_own_options_to_the_run(monkeypatch, tmp_path):
    import mlplab.runs

    seen = _captured_call(monkeypatch, mlplab.runs, "resume_run",
                          ["train", "--resume", str(tmp_path), "--data-dir", "/moved",
                           "--no-plots", "--verbose"])
    assert (seen["_args"][0], seen["data_dir"], seen["plots"], seen["verbose"],
            seen["progress"]) == (str(tmp_path), "/moved", False, True, False)
    seen = _captured_call(monkeypatch, mlplab.runs, "resume_run",
                          ["train", "--resume", str(tmp_path)])
    assert (seen["data_dir"], seen["plots"], seen["verbose"], seen["progress"]) == \
        (None, True, False, True)


def test_evaluate_and_predict_pass_their_options_on(monkeypatch, tmp_path):
    import mlplab.runs

    seen = _captured_call(monkeypatch, mlplab.runs, "evaluate_run", ["evaluate", str(tmp_path)])
    assert (seen["_args"], seen["data_dir"]) == ((str(tmp_path), "val"), None)  # val: the default
    seen = _captured_call(monkeypatch, mlplab.runs, "evaluate_run",
                          ["evaluate", str(tmp_path), "--split", "train", "--data-dir", "/d"])
    assert (seen["_args"], seen["data_dir"]) == ((str(tmp_path), "train"), "/d")
    seen = _captured_call(monkeypatch, mlplab.runs, "predict_images",
                          ["predict", str(tmp_path), "a.png", "b", "--top", "1"])
    assert (seen["_args"], seen["top"], seen["progress"]) == (
        (str(tmp_path), ["a.png", "b"]), 1, True)
    seen = _captured_call(monkeypatch, mlplab.runs, "predict_images",
                          ["predict", str(tmp_path), "a.png"])
    assert seen["top"] == 3  # the help's default
    for quiet in (["--quiet"], ["--no-progress"], ["--json"]):
        seen = _captured_call(monkeypatch, mlplab.runs, "predict_images",
                              ["predict", str(tmp_path), "a.png", *quiet])
        assert seen["progress"] is False


@pytest.mark.parametrize("flags,message", [
    (["--momentum", "0.5"], "--momentum has no effect with --optimizer adam; it applies to "
                            "momentum or nesterov."),
    (["--optimizer", "sgd", "--momentum", "0.5"], "--momentum has no effect with --optimizer "
                                                  "sgd; it applies to momentum or nesterov."),
    (["--schedule", "cosine", "--step-epochs", "3"], "--step-epochs has no effect with "
                                                     "--schedule cosine; it applies to step."),
    (["--schedule", "constant", "--lr-decay", "0.5"], "--lr-decay has no effect with --schedule "
                                                      "constant; it applies to exp or step."),
])
def test_an_option_the_chosen_setting_ignores_is_refused(flags, message, capsys):
    """A user who typed --momentum 0.5 with plain SGD believes it took effect."""
    assert main(["train", *flags]) == 2
    assert capsys.readouterr().err == f"mlplab train: error: {message}\n"


def test_a_run_that_ends_at_chance_says_the_network_did_not_learn(capsys, tmp_path):
    """Tiny initial weights in a deep net: it stays at 10% on digits, which the summary alone
    reported as a result. A run that learnt gets no such note."""
    assert main(["train", "--dataset", "digits", "--hidden", "20,20,20", "--init", "normal",
                 "--std", "1e-6", "--epochs", "3", "--no-plots", "--quiet",
                 "--out", str(tmp_path / "dead")]) == 0
    m = json.loads((tmp_path / "dead" / "metrics.json").read_text())
    assert m["train_accuracy"] < 0.12  # at chance, measured by the run itself
    err = capsys.readouterr().err
    assert f"training accuracy {100 * m['train_accuracy']:.2f}% is chance level for 10 " \
           "classes: the network did not learn" in err and "--init he" in err, err
    assert main(["train", "--dataset", "digits", "--hidden", "20,20,20", "--epochs", "3",
                 "--no-plots", "--quiet", "--out", str(tmp_path / "alive")]) == 0
    assert "did not learn" not in capsys.readouterr().err


def test_like_trains_another_run_with_a_runs_settings(tmp_path, capsys):
    """--like RUN starts from RUN's config.json: with nothing changed it repeats the run to the
    last digit; flags override single fields; a run length replaces the run's (the exercise's
    presets go by iterations); --eval-test is asked for each time, not inherited."""
    base = tmp_path / "base"
    assert main(["train", "--dataset", "digits", "--hidden", "24", "--lr", "0.01", "--epochs",
                 "2", "--val-size", "100", "--augment", "flip", "--eval-test", "--quiet",
                 "--no-plots", "--out", str(base)]) == 0
    same = tmp_path / "same"
    assert main(["train", "--like", str(base), "--quiet", "--no-plots", "--out", str(same)]) == 0
    config = json.loads((base / "config.json").read_text())
    assert json.loads((same / "config.json").read_text()) == {**config, "eval_test": False}
    np.testing.assert_array_equal(io.load_model(same / "model.npz").model.params["W1"],
                                  io.load_model(base / "model.npz").model.params["W1"])
    assert "test_accuracy" not in json.loads((same / "metrics.json").read_text())

    other = tmp_path / "other"
    assert main(["train", "--like", str(base), "--seed", "3", "--out", str(other), "--quiet",
                 "--no-plots"]) == 0
    assert json.loads((other / "config.json").read_text()) == {**config, "seed": 3,
                                                               "eval_test": False}

    by_iters, by_epochs = tmp_path / "iters", tmp_path / "epochs"
    assert main(["train", "--preset", "exercise-default", "--dataset", "digits", "--iters", "20",
                 "--quiet", "--no-plots", "--out", str(by_iters)]) == 0
    assert main(["train", "--like", str(by_iters), "--epochs", "2", "--quiet", "--no-plots",
                 "--out", str(by_epochs)]) == 0
    m = json.loads((by_epochs / "metrics.json").read_text())
    c = json.loads((by_epochs / "config.json").read_text())
    assert (c["epochs"], c["iters"], m["epochs"], c["preset"]) == (2, None, 2, "exercise-default")
    capsys.readouterr()

    assert main(["train", "--like", str(base), "--preset", "twolayer-fast"]) == 2
    assert "--like takes every setting of the run" in capsys.readouterr().err
    assert main(["train", "--resume", str(base), "--like", str(base)]) == 2
    assert "drop --like" in capsys.readouterr().err
    assert main(["train", "--like", str(tmp_path / "nowhere")]) == 1
    assert "nowhere: no such folder; pass a run folder written by mlplab train." in \
        capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "--like", str(tmp_path / "empty")]) == 1
    assert "empty is not a run folder (no config.json)" in capsys.readouterr().err
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "config.json").write_text(json.dumps({"framework": "pytorch"}))
    assert main(["train", "--like", str(tmp_path / "torch")]) == 1
    err = capsys.readouterr().err
    assert "written by mlplab torch train: mlplab train can neither resume it nor train from " \
           "its settings" in err
    # its --resume only where it was stopped (a finished run said "already completed")
    assert f"mlplab torch train --resume {tmp_path / 'torch'} continues it if it was stopped" \
        in err and "(it has no --like) trains another" in err
    from mlplab.runs import resume_run, run_config

    for call in (run_config, resume_run):  # from Python, the functions: not the commands
        with pytest.raises(ValueError) as refused:
            call(tmp_path / "torch")
        assert f"mlplab.torch_mlp.resume_run({str(tmp_path / 'torch')!r}) continues it if it " \
               "was stopped; mlplab.torch_mlp.train_run(...) with its options trains " \
               "another." in str(refused.value) and "--" not in str(refused.value)
        assert "torch train: mlplab.runs can neither resume it" in str(refused.value)


def test_like_with_hidden_none_does_not_carry_the_runs_hidden_layer_settings(tmp_path):
    """--like RUN --hidden none on a run with tanh, dropout and batch norm trained a softmax
    regression described as "MLP 64-10 tanh batchnorm dropout 0.3" (config.json recording the
    three), and --activation relu / --dropout to set them back are refused with --hidden none.
    They are left at their defaults now, as for a softmax regression trained without --like."""
    base, flat, plain = tmp_path / "base", tmp_path / "flat", tmp_path / "plain"
    common = ["--epochs", "1", "--quiet", "--no-plots"]
    assert main(["train", "--dataset", "digits", "--hidden", "16", "--activation", "tanh",
                 "--dropout", "0.3", "--batchnorm", "--out", str(base), *common]) == 0
    assert main(["train", "--like", str(base), "--hidden", "none", "--out", str(flat),
                 *common]) == 0
    assert main(["train", "--dataset", "digits", "--hidden", "none", "--out", str(plain),
                 *common]) == 0
    config = json.loads((flat / "config.json").read_text())
    assert (config["hidden"], config["activation"], config["dropout"], config["batchnorm"]) == \
        ([], "relu", 0.0, False)
    assert json.loads((flat / "metrics.json").read_text())["model"] == \
        json.loads((plain / "metrics.json").read_text())["model"] == "MLP 64-10"


def test_a_presets_settings_made_inert_by_a_flag_are_not_carried(tmp_path):
    """A preset's batch norm and dropout stayed with --hidden none ("MLP 64-10 relu batchnorm
    dropout 0.2"), and its crop padding with --augment none, where the same flags given by hand
    are refused as having no effect: they go back to their defaults, as with --like."""
    common = ["--dataset", "digits", "--epochs", "1", "--quiet", "--no-plots"]
    flat, plain = tmp_path / "flat", tmp_path / "plain"
    assert main(["train", "--preset", "deep-best", "--hidden", "none", "--out", str(flat),
                 *common]) == 0
    config = json.loads((flat / "config.json").read_text())
    assert (config["hidden"], config["activation"], config["dropout"], config["batchnorm"]) == \
        ([], "relu", 0.0, False)
    assert config["augment"] == ["flip", "crop"] and config["crop_padding"] == 2  # still used
    assert json.loads((flat / "metrics.json").read_text())["model"] == "MLP 64-10"
    assert main(["train", "--preset", "twolayer-best", "--augment", "none", "--out", str(plain),
                 *common]) == 0
    config = json.loads((plain / "config.json").read_text())
    assert (config["augment"], config["crop_padding"], config["crop_fill"]) == ([], None, "zero")
    assert config["hidden"] == [2048] and config["label_smoothing"] == 0.1  # the rest kept


def test_a_presets_missing_dataset_names_the_preset(tmp_path, monkeypatch, capsys):
    """`mlplab train --preset twolayer-fast` without CIFAR-10 said only "CIFAR-10 not found",
    neither that the preset chose it nor that --dataset chooses another."""
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "twolayer-fast", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and err.rstrip().endswith(
        "(--preset twolayer-fast trains on cifar10, the data it was made for; --dataset chooses "
        "another.)")
    assert main(["train", "--preset", "twolayer-fast", "--dataset", "cifar10", "--quiet"]) == 1
    assert "--preset twolayer-fast trains on" not in capsys.readouterr().err  # chosen, not implied
    assert not (tmp_path / "runs").exists()


def test_an_out_folder_it_may_not_write_to_is_refused_before_the_data(run_dir, tmp_path, capsys,
                                                                      monkeypatch):
    """``mlplab train --out`` under a read-only folder loaded the data (and, with ``--like``,
    announced "training ...") before it failed to make the folder; ``torch train`` said so
    first. (Simulated where the tests run as root, whom permissions do not stop.)"""
    import mlplab.cli.train

    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    if os.access(parent, os.W_OK):
        access = os.access
        monkeypatch.setattr(os, "access",
                            lambda p, mode, **kw: os.path.abspath(p) != str(parent)
                            and access(p, mode, **kw))
    loads = []
    real_load = mlplab.cli.train.load_dataset_from_args
    monkeypatch.setattr(mlplab.cli.train, "load_dataset_from_args",
                        lambda args: loads.append(1) or real_load(args))
    try:
        for argv in (["train", *TINY, "--out", str(parent / "run")],
                     ["train", "--like", str(run_dir), "--out", str(parent / "run")]):
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert err.strip().splitlines() == [
                f"mlplab train: error: cannot write to --out {parent / 'run'}: {parent} is not "
                "writable (permission denied); choose another --out."], err
    finally:
        parent.chmod(0o755)
    assert loads == [] and list(parent.iterdir()) == []
