"""``mlplab torch train`` and ``mlplab torch depth`` end to end on the bundled digits."""

import csv
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mlplab.cli import main

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install 'mlplab[torch]')")
tm = pytest.importorskip("mlplab.torch_mlp")


pytestmark = pytest.mark.usefixtures("keep_torch_threads")  # the commands take --threads


#: PyTorch's thread count when each epoch of the module's `torch train` ended
THREADS_SEEN = []


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch") / "run"
    real = tm.runs.fit

    def fit(*args, **kwargs):
        def seen(epoch, logs):
            THREADS_SEEN.append(torch.get_num_threads())

        return real(*args, on_epoch_end=seen, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tm.runs, "fit", fit)
        code = main(["torch", "train", "--epochs", "3", "--hidden", "32", "--init", "default",
                     "--threads", "1", "--eval-test", "--out", str(out), "--no-progress"])
    return code, out


def test_train_writes_a_run_folder(train_run, capsys):
    code, out = train_run
    assert code == 0
    assert THREADS_SEEN == [1, 1, 1]  # --threads reached PyTorch
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.pt", "model.npz", "history.csv", "metrics.json", "loss.png",
            "accuracy.png", "confusion.png", "weights.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["framework"] == "pytorch" and config["hidden"] == [32]
    assert config["lr"] == 1e-3 and config["reg"] == 1e-3 and config["batch_size"] == 200
    assert metrics["status"] == "completed" and metrics["epochs"] == 3
    assert metrics["dataset"] == "digits" and metrics["model"] == "PyTorch MLP 64-32-10 relu"
    assert metrics["threads"] == 1 and metrics["device"] == "cpu"
    with open(out / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == metrics["iterations"] == 3 * int(np.ceil(metrics["train_size"] / 200))
    assert float(rows[-1]["val_acc"]) == pytest.approx(metrics["val_accuracy"])

    # model.pt gives back the trained network: its accuracy is the recorded one
    from mlplab.data import load_dataset

    ds = load_dataset("digits", seed=0)
    model, extra = tm.load_torch_model(out / "model.pt")
    assert extra["dataset"] == "digits" and extra["classes"] == list(ds.classes)
    pre = tm.input_pipeline()
    assert tm.accuracy(model, pre.fit_transform(ds.X_val), ds.y_val) == \
        pytest.approx(metrics["val_accuracy"])
    assert tm.accuracy(model, pre.transform(ds.X_test), ds.y_test) == \
        pytest.approx(metrics["test_accuracy"])
    # model.npz is the same network for the NumPy side, preprocessing included
    from mlplab.io import load_model

    loaded = load_model(out / "model.npz")
    np.testing.assert_array_equal(loaded.model.predict(loaded.preprocessing.transform(ds.X_val)),
                                  tm.predict(model, pre.transform(ds.X_val)))


@pytest.mark.parametrize("saved", [["config.json", "checkpoint.pt"], ["config.json"]],
                         ids=["checkpoint", "before-the-first"])
def test_a_second_ctrl_c_says_how_to_go_on(saved, monkeypatch, capsys, tmp_path):
    """A second Ctrl-C ends the command before the run is saved: with a checkpoint, its line
    says to --resume; before the first one (the folder keeps config.json, which --resume starts
    again) only "mlplab: interrupted" was said."""
    out = tmp_path / "run"

    def stopped(dataset, out, **kwargs):  # what train_run leaves when a second Ctrl-C ends it
        Path(out).mkdir(parents=True, exist_ok=True)
        for name in saved:
            (Path(out) / name).write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(tm, "train_run", stopped)
    assert main(["torch", "train", "--hidden", "8", "--epochs", "1", "--threads", "1",
                 "--out", str(out)]) == 130
    err = capsys.readouterr().err
    said = ("interrupted; the run was not saved, but its last checkpoint is kept." if
            len(saved) == 2 else "interrupted before the run's first checkpoint; --resume "
            "starts it again from its first epoch.")
    assert f"{said} Continue with: mlplab torch train --resume {out}" in err, err


def test_the_resume_command_after_ctrl_c_keeps_no_plots(monkeypatch, capsys, tmp_path):
    """The run's config does not record --no-plots: the printed command left it out, and,
    pasted, the resume drew the figures the user had turned off."""
    out = tmp_path / "run"

    def stopped(dataset, out, **kwargs):  # a run stopped after its first checkpoint
        Path(out).mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "checkpoint.pt"):
            (Path(out) / name).write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(tm, "train_run", stopped)
    argv = ["torch", "train", "--hidden", "8", "--epochs", "1", "--threads", "1",
            "--out", str(out)]
    assert main([*argv, "--no-plots"]) == 130
    assert f"Continue with: mlplab torch train --resume {out} --threads 1 --no-plots\n" in \
        capsys.readouterr().err
    assert main(argv) == 130
    assert f"Continue with: mlplab torch train --resume {out} --threads 1\n" in \
        capsys.readouterr().err


@pytest.mark.parametrize("where", ["results", "eval-test-memory"])
def test_an_error_after_the_checkpoint_says_how_to_finish_the_run(where, monkeypatch, capsys,
                                                                  tmp_path):
    """An error after the last checkpoint, before the results (a file that cannot be written,
    PyTorch refused memory for --eval-test's test split), ended with the reason alone; it is
    said with the --resume that finishes the run, which does."""
    import mlplab.runs
    from mlplab.data import load_dataset

    out, calls = tmp_path / "run", []
    if where == "results":
        real_history = mlplab.runs.write_history

        def write_history(*args, **kwargs):  # (torch_mlp.runs imports it as it writes)
            calls.append(1)
            if len(calls) == 1:
                raise OSError("the results could not be written")
            return real_history(*args, **kwargs)

        monkeypatch.setattr(mlplab.runs, "write_history", write_history)
        reason = "the results could not be written"
    else:
        real, test_labels = tm.runs.accuracy, load_dataset("digits", seed=0).y_test

        def accuracy(model, X, y):
            if np.array_equal(y, test_labels):  # (the validation split is as large)
                calls.append(1)
                if len(calls) == 1:
                    raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: "
                                       "can't allocate memory: you tried to allocate 6400000000 "
                                       "bytes.")
            return real(model, X, y)

        monkeypatch.setattr(tm.runs, "accuracy", accuracy)
        # not "or use less data or a smaller network", which the resume advised cannot change
        reason = "out of memory (PyTorch was unable to allocate 5.96 GiB); free memory or raise " \
            "this process's limit (ulimit -v)"
    assert main(["torch", "train", "--hidden", "8", "--epochs", "2", "--threads", "1",
                 "--eval-test", "--no-plots", "--no-progress", "--out", str(out)]) == 1
    line = capsys.readouterr().err.splitlines()[-1]
    assert line == (f"mlplab torch train: error: {reason}; the run was not saved, but its last "
                    f"checkpoint is kept. Continue with: mlplab torch train --resume {out} "
                    "--threads 1 --no-plots"), line
    assert calls == [1] and (out / "checkpoint.pt").is_file()
    assert main(["torch", "train", "--resume", str(out), "--threads", "1", "--no-plots",
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert "test_accuracy" in metrics and calls == [1, 1]


def test_evaluate_advises_the_resume_of_a_no_plots_run_with_no_plots(monkeypatch, tmp_path):
    """evaluate's warning for an interrupted run left out the --no-plots the run was started
    with (config.json did not record it); it records it now."""
    import signal

    out, real = tmp_path / "run", tm.runs.save_torch_checkpoint

    def save_then_ctrl_c(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as patch:
        patch.setattr(tm.runs, "save_torch_checkpoint", save_then_ctrl_c)
        assert main(["torch", "train", "--hidden", "8", "--epochs", "2", "--threads", "1",
                     "--no-plots", "--no-progress", "--out", str(out)]) == 130
    assert json.loads((out / "config.json").read_text())["no_plots"] is True
    with pytest.warns(UserWarning) as said:
        assert main(["evaluate", str(out)]) == 0
    assert [str(w.message) for w in said if "was interrupted" in str(w.message)] == [
        f"{out} was interrupted: its model is the one saved when it stopped after 1 epoch; "
        f"mlplab torch train --resume {out} --no-plots finishes it."]
    assert main(["torch", "train", "--resume", str(out), "--threads", "1", "--no-progress",
                 "--no-plots"]) == 0
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"


def test_train_outputs_match_mlplab_train(train_run, tmp_path):
    """Same metrics keys, history columns and figures as a NumPy run folder."""
    from mlplab.runs import train_run as numpy_run

    _, out = train_run
    ref = tmp_path / "numpy"
    numpy_run(dataset="digits", hidden=[8], epochs=1, out=ref)
    ref_metrics = json.loads((ref / "metrics.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(ref_metrics) - {"test_accuracy"} <= set(metrics)
    header = (ref / "history.csv").read_text().splitlines()[0]
    assert (out / "history.csv").read_text().splitlines()[0] == header
    assert {p.name for p in ref.glob("*.png")} <= {p.name for p in out.glob("*.png")}


def test_accuracy_plot_says_what_the_train_curve_is(tmp_path, monkeypatch):
    """fit measures train accuracy per epoch on a fixed subset of up to 5,000 training rows (the
    whole split on digits' 1,437): the legend says so, as mlplab train's does."""
    from mlplab import plots
    from mlplab.data import load_dataset

    seen = []
    real = plots.plot_accuracy

    def recording(train_acc, val_acc=None, **kwargs):
        seen.append((list(train_acc), kwargs.get("train_label", "train")))
        return real(train_acc, val_acc, **kwargs)

    monkeypatch.setattr(plots, "plot_accuracy", recording)
    out = tmp_path / "run"
    assert main(["torch", "train", "--epochs", "2", "--hidden", "8", "--threads", "1",
                 "--out", str(out), "--no-progress"]) == 0
    [(curve, label)] = seen
    assert label == "train (up to 5,000 training images)"
    ds = load_dataset("digits", seed=0)
    assert len(ds.y_train) < 5000
    model, _ = tm.load_torch_model(out / "model.pt")
    assert curve[-1] == pytest.approx(
        tm.accuracy(model, tm.input_pipeline().fit_transform(ds.X_train), ds.y_train))


def test_depth_refuses_a_run_folder_as_every_other_commands_folder(train_run, tmp_path,
                                                                   capsys):
    """torch depth --out RUN wrote its study into the run folder (mlplab train's or torch
    train's), where runs and evaluate then took the mix for the run; train --out STUDY was
    refused all along."""
    _, torch_run = train_run
    numpy_run = tmp_path / "numpy-run"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--quiet", "--no-plots",
                 "--out", str(numpy_run)]) == 0
    for run in (numpy_run, torch_run):
        before = sorted(p.name for p in run.iterdir())
        capsys.readouterr()
        assert main(["torch", "depth", "--layers", "2", "--epochs", "1", "--no-progress",
                     "--out", str(run)]) == 1
        assert capsys.readouterr().err == (
            f"mlplab torch depth: error: {run} is a run folder (mlplab train or mlplab torch "
            "train); choose another --out for the depth study.\n")
        assert sorted(p.name for p in run.iterdir()) == before
    with pytest.raises(ValueError, match="is a run folder .*choose another out for the depth "
                                         "study"):
        tm.depth_run("digits", out=numpy_run, layers=[2], epochs=1)


def test_json_names_the_run_folder_as_mlplab_train_does(tmp_path, capsys):
    """torch train --json gave the folder as "out", mlplab train --json and runs --json as
    "run": a script reading both commands' output found no "run"."""
    for argv in (["torch", "train", "--hidden", "8", "--threads", "1"], ["train", "--hidden", "8"]):
        out = tmp_path / argv[0]
        assert main([*argv, "--epochs", "1", "--no-plots", "--json", "--out", str(out)]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["run"] == str(out) and printed["epochs"] == 1
        assert printed["run"] == _runs_json(out, capsys)["run"]


def _runs_json(folder, capsys):
    assert main(["runs", str(folder), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    return record


def test_a_relative_data_dir_is_recorded_absolute(tmp_path, monkeypatch, capsys):
    # as mlplab train's: evaluate reloads the data from the config, from any working folder
    monkeypatch.chdir(tmp_path)
    assert main(["torch", "train", "--epochs", "1", "--hidden", "8", "--threads", "1",
                 "--data-dir", "data", "--out", "run", "--no-progress", "--verbose"]) == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data_dir"] == str(tmp_path / "data") and cfg["dataset"] == "digits"
    # seconds spelt as mlplab train, runs and reproduce spell them ("0.2 s", not "0.2s")
    out = capsys.readouterr().out
    assert re.search(r"^epoch 1/1: loss .*, lr 0\.001, \d+\.\d s$", out, re.M), out
    assert re.search(r"^val accuracy .*\ntrain accuracy .* after 1 epoch, \d+ iterations, "
                     r"\d+\.\d s\nrun folder: "
                     r"run\nnext: mlplab evaluate run ", out, re.M), out


@pytest.mark.parametrize("command,runner", [("train", "train_run"), ("depth", "depth_run")])
def test_default_folders_are_claimed_before_the_run_starts(tmp_path, monkeypatch, command,
                                                           runner):
    """`mlplab torch train` and `torch depth` without --out picked runs/torch-<time> and made it
    only as they trained: two started in the same second picked the same folder, and one
    failed ("already holds a run, which another process is training"). The folder is claimed
    (made) first, as mlplab train's, so the other process takes the next name; and given back
    when the command fails before writing anything."""
    monkeypatch.chdir(tmp_path)
    real = getattr(tm, runner)
    seen = []

    def run(*args, out, **kwargs):
        seen.append((out, out.is_dir(), sorted(p.name for p in out.iterdir())))
        return real(*args, out=out, **kwargs)

    monkeypatch.setattr(tm, runner, run)
    extra = (["--layers", "2", "--hidden-size", "8"] if command == "depth" else
             ["--hidden", "8", "--no-plots"])
    assert main(["torch", command, "--epochs", "1", "--threads", "1", "--no-progress",
                 *extra]) == 0
    ((out, existed, content),) = seen
    prefix = "torch-depth-" if command == "depth" else "torch-"
    assert existed and content == [] and out.parent == Path("runs")
    assert re.fullmatch(rf"{prefix}\d{{8}}-\d{{6}}(-\d+)?", out.name)
    assert any((tmp_path / out).iterdir())  # the run (or study) wrote there
    # failing before it writes anything, it leaves no folder (nor a runs/ it made)
    (tmp_path / out).rename(tmp_path / "kept")
    (tmp_path / "runs").rmdir()
    assert main(["torch", command, "--epochs", "1", "--threads", "1", "--no-progress",
                 "--dataset", "folder:/no/such/folder", *extra]) == 1
    assert not (tmp_path / "runs").exists()


def test_both_train_commands_end_with_the_same_lines(tmp_path, capsys):
    """mlplab train and mlplab torch train (and their --resume) end alike, in one function of
    the command line (``print_run_result``): the saved model's validation accuracy, the best
    epoch's, the test and training accuracy, the length, and the run folder. torch train ended
    with one line of its own ("completed: train 0.42, val 0.44 after 2 epochs (5.0 s); run
    folder RUN"), without the best epoch, the iterations or "run folder:"."""
    pct = r"(\d+\.\d\d%)"  # accuracies print in percent, as everywhere
    pattern = (rf"val accuracy {pct} \(best {pct} at epoch (\d)\), test accuracy "
               rf"{pct}\ntrain accuracy {pct} after 2 epochs, (\d+) iterations, "
               r"\d+\.\d s\nrun folder: (\S+)\nnext: mlplab evaluate \7 .*\n"
               r"      mlplab predict \7 IMAGE\.\.\.\n      mlplab runs .*\n")
    for argv in (["torch", "train", "--hidden", "8", "--threads", "1"],
                 ["train", "--hidden", "8"]):
        out = tmp_path / argv[0]
        assert main([*argv, "--epochs", "2", "--no-plots", "--eval-test", "--no-progress",
                     "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        lines = re.fullmatch(pattern, printed)
        assert lines is not None, printed
        m = json.loads((out / "metrics.json").read_text())
        assert lines.groups() == (f"{100 * m['val_accuracy']:.2f}%",
                                  f"{100 * m['best_val_accuracy']:.2f}%", str(m["best_epoch"]),
                                  f"{100 * m['test_accuracy']:.2f}%",
                                  f"{100 * m['train_accuracy']:.2f}%", str(m["iterations"]),
                                  str(out))


def test_evaluate_and_predict_read_a_torch_run_folder(train_run, tmp_path, capsys):
    """mlplab evaluate / predict work on a PyTorch run folder as on a NumPy one: same split,
    the accuracy PyTorch recorded; resume says plainly that it cannot continue such a run."""
    from PIL import Image

    from mlplab.data import load_dataset

    _, out = train_run
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    for split, key in (("val", "val_accuracy"), ("test", "test_accuracy")):
        assert main(["evaluate", str(out), "--split", split, "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["split"] == split and res["accuracy"] == pytest.approx(metrics[key])

    ds = load_dataset("digits", seed=0)
    path = tmp_path / "digit.png"
    Image.fromarray(ds.X_test[0].reshape(8, 8)).save(path)
    assert main(["predict", str(out), str(path), "--json", "--top", "1"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"][0]
    model, _ = tm.load_torch_model(out / "model.pt")
    pre = tm.input_pipeline()
    pre.fit_transform(ds.X_train)
    expected = tm.predict(model, pre.transform(ds.X_test[:1]))[0]
    assert top["class"] == ds.classes[expected]

    assert main(["train", "--resume", str(out)]) == 1
    assert "mlplab torch train" in capsys.readouterr().err


def test_train_refuses_an_existing_run(train_run, capsys):
    _, out = train_run
    assert main(["torch", "train", "--epochs", "1", "--out", str(out), "--threads", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds" in err[0]


def test_depth_table(tmp_path, capsys):
    out = tmp_path / "depth"
    code = main(["torch", "depth", "--layers", "2,3", "--hidden-size", "16", "--init", "both",
                 "--epochs", "2", "--threads", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    captured = capsys.readouterr()
    stdout = captured.out
    assert "| exercise | 3 | 16, 16 |" in stdout and "| default | 2 | 16 |" in stdout
    # times as every command prints them, with their tenths: "(0 s)" was a network that
    # depth.md gives 0.2 seconds
    assert re.search(r"^4 networks in \d+\.\d s; table, CSV and plot in ", stdout, re.M), stdout
    said = re.search(r"^\[4/4\] default init, 3 layers: train .*% \((\d+\.\d) s\)$",
                     captured.err, re.M)
    assert said, captured.err
    summary = json.loads((out / "depth.json").read_text())
    rows = summary["results"]
    assert [(r["init"], r["depth"]) for r in rows] == [("exercise", 2), ("exercise", 3),
                                                       ("default", 2), ("default", 3)]
    assert said.group(1) == f"{rows[-1]['seconds']:.1f}"  # as depth.md's seconds column
    for init in ("exercise", "default"):
        group = [r for r in rows if r["init"] == init]
        best = [r for r in group if r["best"]]
        assert len(best) == 1 and best[0]["val_acc"] == max(r["val_acc"] for r in group)
        assert best[0]["test_acc"] is not None
        assert all(r["test_acc"] is None for r in group if not r["best"])
    assert summary["training"]["epochs"] == 2 and summary["environment"]["threads"] == 1
    assert all(len(r["epochs"]["val_acc"]) == len(r["epochs"]["mean_loss"]) == 2 for r in rows)
    assert all(r["epochs"]["val_acc"][-1] == pytest.approx(r["val_acc"]) for r in rows)
    with open(out / "depth.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert (out / "depth.md").read_text().count("\n| ") == 5
    assert (out / "depth.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_gpu_is_a_one_line_error(tmp_path, capsys):
    code = main(["torch", "train", "--device", "cuda", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--device cpu" in err[0]
    assert not (tmp_path / "r").exists()  # nothing written before the error


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_batchnorm_with_a_last_batch_of_one_row(tmp_path, capsys):
    """digits has 1,437 training rows: batches of 4 leave one over, which batch norm cannot
    train on. The run completes (that row joins the batch before it) and history.csv marks the
    end of each epoch where it really ends."""
    out = tmp_path / "bn"
    code = main(["torch", "train", "--batchnorm", "--batch-size", "4", "--epochs", "2",
                 "--hidden", "8", "--threads", "1", "--no-plots", "--no-progress",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_size"] % 4 == 1 and metrics["status"] == "completed"
    per_epoch = metrics["train_size"] // 4
    assert metrics["iterations"] == 2 * per_epoch
    with open(out / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ends = [int(r["iteration"]) for r in rows if r["val_acc"] != ""]
    assert ends == [per_epoch, 2 * per_epoch]
    assert [r["epoch"] for r in rows[per_epoch - 1:per_epoch + 1]] == ["1", "2"]


@pytest.mark.parametrize("argv,code,message", [
    (["train", "--init-std", "0"], 2, "--init-std must be a finite number > 0"),
    (["depth", "--init-std", "nan"], 2, "--init-std must be a finite number > 0"),
    (["train", "--device", "foo"], 2, "--device must be cpu, cuda, cuda:N or auto; got 'foo'"),
    (["depth", "--device", "cuda:x"], 2, "--device must be cpu, cuda, cuda:N or auto"),
    (["depth", "--dropout", "1"], 2, "--dropout must be in [0, 1)"),
    (["train", "--batchnorm", "--batch-size", "1"], 2, "--batch-size must be at least 2"),
    (["train", "--test-size", "0", "--eval-test"], 1, "no test split to evaluate"),
    (["depth", "--val-size", "0"], 1, "no validation split"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_options_fail_before_anything_is_written(argv, code, message, tmp_path, capsys):
    """Usage errors exit 2 under the flag typed; every check that can fail runs before the run
    folder is made, so the same command, corrected, can reuse --out."""
    out = tmp_path / "run"
    assert main(["torch", *argv, "--epochs", "1", "--threads", "1", "--out", str(out)]) == code
    assert message in _one_line_error(capsys)
    assert not out.exists()


def test_a_run_that_stopped_before_saving_anything_can_be_rerun(tmp_path, capsys):
    """A run that fails during training leaves only config.json; the same --out is then reused
    (there is nothing in it to lose). A config.json that is not a PyTorch run's is kept."""
    out = tmp_path / "run"
    base = ["torch", "train", "--epochs", "1", "--hidden", "8", "--threads", "1", "--no-plots",
            "--no-progress", "--out", str(out)]
    assert main([*base, "--init", "default", "--lr", "1e30"]) == 1  # diverges in epoch 1
    assert "error: the loss became" in capsys.readouterr().err.strip().splitlines()[-1]
    assert [p.name for p in out.iterdir()] == ["config.json"]
    assert main(base) == 0
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    assert json.loads((out / "config.json").read_text())["lr"] == 1e-3  # the new run's
    capsys.readouterr()

    other = tmp_path / "numpy-run"
    other.mkdir()
    (other / "config.json").write_text('{"dataset": "digits"}')
    assert main([*base[:-1], str(other)]) == 1
    assert "already holds results" in _one_line_error(capsys)
    assert (other / "config.json").read_text() == '{"dataset": "digits"}'


@pytest.mark.parametrize("where,message", [
    ("file", "--out {out} is a file, not a folder; choose another --out."),
    ("below a file", "--out {out}: {file} is a file, not a folder; choose another --out."),
    ("read-only", "cannot write to --out {out}: {parent} is not writable"),
])
def test_out_paths_that_cannot_be_a_run_folder(where, message, tmp_path, capsys, monkeypatch):
    """One line naming the path and what is wrong, not mkdir's "[Errno 17] File exists"."""
    parent = tmp_path / "r1"
    parent.mkdir()
    file = parent / "config.json"
    file.write_text("{}")
    out = {"file": file, "below a file": file / "x", "read-only": parent / "x"}[where]
    if where == "read-only":
        parent.chmod(0o555)
        if os.access(parent, os.W_OK):  # root writes anywhere: say what the OS would
            access = os.access
            monkeypatch.setattr(os, "access",
                                lambda p, mode, **kw: Path(p) != parent and access(p, mode, **kw))
    try:
        assert main(["torch", "train", "--epochs", "1", "--out", str(out)]) == 1
    finally:
        parent.chmod(0o755)
    err = _one_line_error(capsys)
    assert message.format(out=out, file=file, parent=parent) in err and "Errno" not in err
    assert sorted(p.name for p in parent.iterdir()) == ["config.json"]


def test_out_on_a_read_only_file_system_says_so(tmp_path, capsys, monkeypatch):
    """A read-only mount (a container's image, a CD, ``mount -o ro``) was told as "permission
    denied", which sends the user to chmod a folder that no chmod opens."""
    parent = tmp_path / "mnt"
    parent.mkdir()
    access, statvfs = os.access, os.statvfs
    monkeypatch.setattr(os, "access",
                        lambda p, mode, **kw: Path(p) != parent and access(p, mode, **kw))

    def read_only(p):
        real = statvfs(p)
        if Path(p) != parent:
            return real
        return types.SimpleNamespace(f_flag=real.f_flag | os.ST_RDONLY)

    monkeypatch.setattr(os, "statvfs", read_only)
    out = parent / "run"
    assert main(["torch", "train", "--epochs", "1", "--out", str(out)]) == 1
    err = _one_line_error(capsys)
    assert (f"cannot write to --out {out}: {parent} is not writable (read-only file system); "
            "choose another --out.") in err, err


@pytest.mark.parametrize("argv", [["torch", "depth", "--layers", "2,x"],
                                  ["torch", "depth", "--layers", "0"],
                                  ["torch", "train", "--threads", "0"],
                                  ["torch", "depth", "--init", "he"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize("flag,note", [
    ("--eval-test", "the depth study always measures each initialisation's best network on the "
                    "test split; --test-size 0 for none"),
    ("--no-plots", "a depth study writes one figure, depth.png")])
def test_torch_trains_flags_given_to_depth_say_what_depth_does_instead(flag, note, capsys):
    """--eval-test, given to torch depth as to torch train, was answered "did you mean
    --val-size?"."""
    with pytest.raises(SystemExit) as exc:
        main(["torch", "depth", flag])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {flag} ({note})" in err and "did you mean" not in err


@pytest.mark.parametrize("argv,note", [
    (["torch", "train", "--optimizer", "sgd"], "--optimizer is mlplab train's; mlplab torch "
     "trains the exercise's network as the exercise does: ReLU, Adam, lr x 0.95 per epoch, "
     "inputs normalised with mean 0.5 / std 0.5"),
    (["torch", "train", "--preset", "x", "--augment", "flip"], "--augment, --preset are mlplab "
     "train's; "),
    (["torch", "train", "--weight-decay", "0.1"], "Adam's weight decay is --reg here"),
    (["torch", "depth", "--iters", "50"], "a run's length is --epochs here"),
    (["torch", "depth", "--eval-test", "--schedule", "cosine"], "--test-size 0 for none; "
     "--schedule is mlplab train's; ")])
def test_mlplab_trains_flags_given_to_torch_say_so(argv, note, capsys):
    """mlplab train's flags given to the PyTorch commands were answered with look-alikes of
    other meanings: --optimizer "did you mean --image-size?", --preset "--resume?",
    --weight-decay "--lr-decay?" (the weight decay is --reg there)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert note in err and "did you mean" not in err


def test_the_flags_only_mlplab_train_has_are_those_the_parsers_say():
    import argparse

    from mlplab.cli import build_parser
    from mlplab.cli.torch import _NUMPY_ONLY

    def flags(parser):
        return {o for a in parser._actions for o in a.option_strings if o.startswith("--")}

    def sub(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    commands = sub(build_parser()).choices
    assert _NUMPY_ONLY == flags(commands["train"]) - flags(sub(commands["torch"]).choices["train"])


def test_without_torch_the_cli_says_what_to_install(tmp_path):
    (tmp_path / "torch.py").write_text("raise ImportError('No module named torch')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from mlplab.cli import main; "
            "sys.exit(main(['torch', 'train', '--out', sys.argv[1] + '/run']))")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "pip install 'mlplab[torch]'" in res.stderr and "Traceback" not in res.stderr


def test_torch_train_refuses_a_dataset_of_one_class(tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    (root / "cats").mkdir(parents=True)
    for i in range(10):
        Image.new("RGB", (6, 5), (20 * i, 30, 40)).save(root / "cats" / f"{i}.png")
    assert main(["torch", "train", "--dataset", f"folder:{root}", "--epochs", "1",
                 "--out", str(tmp_path / "run")]) == 1
    assert "has one class (cats); a classifier needs at least two" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_torch_train_hidden_none_is_in_its_help_and_trains_softmax_regression(tmp_path, capsys):
    """``--hidden none`` (one Linear layer) was accepted but not in the help; such a run has no
    first-layer weights figure, which the description now says too."""
    with pytest.raises(SystemExit):
        main(["torch", "train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "'none': no hidden layer" in text and "(with a hidden layer) weights.png" in text
    out = tmp_path / "none"
    assert main(["torch", "train", "--hidden", "none", "--epochs", "1", "--threads", "1",
                 "--no-progress", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["hidden"] == []
    assert {"loss.png", "accuracy.png", "confusion.png"} <= {p.name for p in out.iterdir()}
    assert not (out / "weights.png").exists()


def test_torch_depth_help_says_init_both_makes_one_table(capsys):
    """The help said "both: one table per initialisation"; depth.md has one table, an init
    column and each depth's row for each initialisation."""
    with pytest.raises(SystemExit):
        main(["torch", "depth", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "both: every depth with each, in one table" in text
    assert "one table per initialisation" not in text


def test_verbose_epoch_lines_leave_the_json_alone_on_stdout(tmp_path, capsys):
    """As for mlplab train: --verbose's epoch lines went to stdout ahead of the JSON, which
    then did not parse; they go to stderr, for train and depth."""
    assert main(["torch", "train", "--hidden", "16", "--epochs", "2", "--verbose", "--json",
                 "--no-progress", "--no-plots", "--out", str(tmp_path / "t")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["epochs"] == 2 and err.count("epoch ") == 2, err
    assert main(["torch", "depth", "--layers", "2", "--hidden-size", "16", "--epochs", "1",
                 "--verbose", "--json", "--no-progress", "--out", str(tmp_path / "d")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["results"][0]["depth"] == 2 and "epoch 1/1" in err, err


class _Captured(Exception):
    """Raised by a stand-in for the library call, carrying what the command passed to it."""


def _captured(monkeypatch, name, argv):
    """The keyword arguments ``mlplab torch ...`` passes to ``mlplab.torch_mlp.<name>``
    (``train_run`` or ``depth_run``), recorded by a stand-in that stops the command."""
    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs, dataset=args[0] if args else kwargs.get("dataset"))
        raise _Captured

    monkeypatch.setattr(tm, name, fake)
    with pytest.raises(_Captured):
        main(["--debug", *argv])
    return seen


#: the exercise's PyTorch settings (SPEC.md, Question 4): what the commands run by default
EXERCISE = {"init": "exercise", "init_std": 1e-3, "epochs": 10, "batch_size": 200, "lr": 1e-3,
            "reg": 1e-3, "lr_decay": 0.95, "dropout": 0.0, "batchnorm": False}


def test_torch_commands_default_to_the_exercises_settings(monkeypatch, tmp_path):
    seen = _captured(monkeypatch, "train_run", ["torch", "train", "--out", str(tmp_path / "t")])
    assert {k: seen[k] for k in EXERCISE} == EXERCISE
    assert (list(seen["hidden"]), seen["eval_test"], seen["seed"], seen["data_seed"]) == \
        ([50], False, 0, 0)
    seen = _captured(monkeypatch, "depth_run", ["torch", "depth", "--out", str(tmp_path / "d")])
    assert {k: seen[k] for k in EXERCISE} == EXERCISE
    assert (list(seen["layers"]), seen["hidden_size"]) == ([2, 3, 4, 5], 50)


# a value other than the default for each option both commands share, and the library keyword
_SHARED = [("--init-std", "0.02", "init_std", 0.02), ("--dropout", "0.3", "dropout", 0.3),
           ("--epochs", "3", "epochs", 3), ("--batch-size", "17", "batch_size", 17),
           ("--lr", "0.005", "lr", 0.005), ("--reg", "0.25", "reg", 0.25),
           ("--lr-decay", "0.5", "lr_decay", 0.5), ("--seed", "7", "seed", 7),
           ("--data-seed", "9", "data_seed", 9), ("--threads", "1", "threads", 1),
           ("--data-dir", "/some/where", "data_dir", "/some/where"),
           ("--mirror", "http://mirror.invalid", "mirror", "http://mirror.invalid"),
           ("--val-size", "100", "val_size", 100), ("--test-size", "0.2", "test_size", 0.2),
           ("--image-size", "4x6", "image_size", "4x6"), ("--dataset", "mnist", "dataset", "mnist"),
           ("--init", "default", "init", "default")]


@pytest.mark.parametrize("command", ["train", "depth"])
@pytest.mark.parametrize("option,text,key,value", _SHARED, ids=[s[0] for s in _SHARED])
def test_each_torch_flag_reaches_its_own_argument(command, option, text, key, value,
                                                  monkeypatch, tmp_path):
    """A flag parsed but not passed on, or passed as another (--reg as the learning rate,
    --data-seed as --seed), would silently train another network than the one asked for."""
    # (a mirror is read only by a download: without --download it is refused)
    extra = ["--download"] if option == "--mirror" else []
    argv = ["torch", command, option, text, *extra, "--out", str(tmp_path / "o")]
    seen = _captured(monkeypatch, f"{command}_run", argv)
    base = _captured(monkeypatch, f"{command}_run",
                     ["torch", command, *extra, "--out", str(tmp_path / "o")])
    assert seen[key] == value
    # and nothing else changed
    assert {k: v for k, v in seen.items() if k != key and k != "out"} == \
        {k: v for k, v in base.items() if k != key and k != "out"}


def test_torch_flags_of_one_command_reach_it(monkeypatch, tmp_path):
    seen = _captured(monkeypatch, "train_run",
                     ["torch", "train", "--hidden", "7,5", "--eval-test", "--no-plots",
                      "--batchnorm", "--no-cache", "--out", str(tmp_path / "t")])
    assert (list(seen["hidden"]), seen["eval_test"], seen["plots"], seen["batchnorm"],
            seen["cache"]) == ([7, 5], True, False, True, False)
    seen = _captured(monkeypatch, "train_run",
                     ["torch", "train", "--hidden", "None", "--out", str(tmp_path / "t")])
    assert list(seen["hidden"]) == []
    seen = _captured(monkeypatch, "depth_run",
                     ["torch", "depth", "--layers", "3,2", "--hidden-size", "8", "--init",
                      "both", "--out", str(tmp_path / "d")])
    assert (list(seen["layers"]), seen["hidden_size"], seen["init"]) == ([3, 2], 8, "both")


def test_a_torch_run_at_chance_says_the_network_did_not_learn(tmp_path, capsys):
    """The exercise's N(0, 1e-3) initialisation with four hidden layers never leaves chance; the
    run says so, and names --init default. The default 2-layer net learns and gets no note."""
    assert main(["torch", "train", "--epochs", "2", "--hidden", "50,50,50,50", "--threads", "1",
                 "--no-plots", "--no-progress", "--out", str(tmp_path / "dead")]) == 0
    m = json.loads((tmp_path / "dead" / "metrics.json").read_text())
    assert m["train_accuracy"] < 0.12
    err = capsys.readouterr().err
    assert "is chance level for 10 classes: the network did not learn" in err
    assert "--init default" in err
    assert main(["torch", "train", "--epochs", "2", "--threads", "1", "--no-plots",
                 "--no-progress", "--init", "default", "--out", str(tmp_path / "alive")]) == 0
    assert "did not learn" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "depth"])
def test_too_many_threads_is_a_usage_error(command, tmp_path, capsys):
    """--threads over 1,024 (which PyTorch's thread pool cannot take) is refused as the other
    option values are: exit 2, under the flag typed, before anything is written (before, exit 1
    with "threads must be ...", the library's name)."""
    out = tmp_path / "run"
    assert main(["torch", command, "--epochs", "1", "--threads", "100000", "--out",
                 str(out)]) == 2
    assert "--threads must be a positive integer of at most 1024; got 100000" in \
        _one_line_error(capsys)
    assert not out.exists()


def test_a_depth_over_the_limit_is_a_usage_error(tmp_path, capsys):
    """--layers 1001 ended with exit 1 and "depth 1001 is over 1,000 Linear layers", the
    library's words, where --layers 0 or a repeated depth is a usage error under the flag."""
    from mlplab.cli.torch import MAX_DEPTH as parser_limit
    from mlplab.torch_mlp.model import MAX_DEPTH

    assert parser_limit == MAX_DEPTH
    with pytest.raises(SystemExit) as exit_:
        main(["torch", "depth", "--layers", "2,1001", "--out", str(tmp_path / "d")])
    assert exit_.value.code == 2
    assert "argument --layers: expected depths of at most 1,000 Linear layers" in \
        capsys.readouterr().err
    assert not (tmp_path / "d").exists()
