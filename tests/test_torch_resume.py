"""Resuming a PyTorch run (``mlplab torch train --resume``, ``torch_mlp.resume_run``): a run
stopped by a crash, a kill or Ctrl-C goes on from its last epoch's checkpoint and ends with the
files, figures and weights of a run never stopped."""

import json
import os
import re
import signal
import warnings

import numpy as np
import pytest

from mlplab.cli import main

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install 'mlplab[torch]')")
tm = pytest.importorskip("mlplab.torch_mlp")
from mlplab.torch_mlp import runs as torch_runs  # noqa: E402  (after the importorskip)

pytestmark = pytest.mark.usefixtures("keep_torch_threads")  # a run sets threads=1

# dropout and batch norm: the dropout generator and the running statistics must carry over
SETTINGS = {"hidden": [32, 16], "epochs": 5, "batch_size": 64, "dropout": 0.3,
            "batchnorm": True, "lr": 3e-3, "threads": 1, "eval_test": True, "plots": False}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return tm.train_run("digits", out=tmp_path_factory.mktemp("torch-resume") / "whole",
                        **SETTINGS)


def _crash_after(monkeypatch, epochs_done, error=RuntimeError):
    """Make the next run's ``fit`` raise ``error`` once ``epochs_done`` epochs (and their
    checkpoint) are done, as a crash or a kill would stop it there."""
    fit = torch_runs.fit

    def crashing(*args, **kwargs):
        def stop(epoch, logs):
            if epoch == epochs_done:
                raise error("stopped here")
        return fit(*args, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(torch_runs, "fit", crashing)


def _same_as(run, whole, drawn=False):
    """The files of ``run`` are those of the uninterrupted run, but for the times (and, with
    ``drawn``, for config.json's record of figures drawn where the other drew none)."""
    read = lambda path: json.loads(path.read_text())  # noqa: E731
    drop = ("seconds", "environment")
    metrics = {k: v for k, v in read(run / "metrics.json").items() if k not in drop}
    assert metrics == {k: v for k, v in read(whole / "metrics.json").items() if k not in drop}
    assert (run / "history.csv").read_text() == (whole / "history.csv").read_text()
    assert read(run / "config.json") == {**read(whole / "config.json"),
                                         **({"no_plots": False} if drawn else {})}
    ours, theirs = (torch.load(d / "model.pt", weights_only=True)["state_dict"]
                    for d in (run, whole))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)  # bit for bit
    assert not (run / ".lock").exists()


def test_a_crashed_run_resumes_to_the_end_of_a_run_never_stopped(uninterrupted, tmp_path,
                                                                  monkeypatch, capsys):
    out = tmp_path / "run"
    _crash_after(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="stopped here"):
        tm.train_run("digits", out=out, **SETTINGS)
    monkeypatch.undo()
    # what a crash leaves (a kill leaves .lock too, unlocked): the settings and the last
    # epoch's checkpoint
    assert {p.name for p in out.iterdir()} == {"config.json", "checkpoint.pt"}
    state, extra = tm.load_torch_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 2 and len(state["history"]["val_acc"]) == 2
    assert extra["splits"]["train_size"] == 1437
    # listed with the figures of its last epoch, and plotted so far
    from mlplab.runs import summarize_run
    from mlplab.runs.listing import epoch_curves

    record = summarize_run(out)
    assert (record["status"], record["framework"], record["epochs"], record["of_epochs"]) == \
        ("unfinished", "pytorch", 2, 5)
    assert record["val_accuracy"] == uninterrupted.history.val_acc[1]
    assert record["train_accuracy"] == uninterrupted.history.train_acc[1]
    assert epoch_curves(out)["val_acc"] == uninterrupted.history.val_acc[:2]
    # evaluate (no model yet) says how to go on
    assert main(["evaluate", str(out)]) == 1
    assert f"it has a checkpoint: continue it with mlplab torch train --resume {out}" in \
        capsys.readouterr().err
    # a new run may not take the folder over: it says how to go on instead
    assert main(["torch", "train", "--out", str(out), "--no-progress"]) == 1
    assert f"continue it with mlplab torch train --resume {out}" in capsys.readouterr().err

    result = tm.resume_run(out)
    assert result.metrics["status"] == "completed" and result.metrics["epochs"] == 5
    assert result.history.val_acc == uninterrupted.history.val_acc
    assert result.history.loss == uninterrupted.history.loss
    _same_as(out, uninterrupted.out)
    with pytest.raises(ValueError, match="has already completed; nothing to resume"):
        tm.resume_run(out)


def test_ctrl_c_mid_epoch_then_resume_from_the_command_line(uninterrupted, tmp_path,
                                                              monkeypatch, capsys):
    """Ctrl-C in the middle of epoch 3: the run stops after the current batch and is saved as
    it was (status interrupted, exit 130, the command to go on printed), its metrics counting
    the batches that network was trained on, and --resume redoes epoch 3 from its start.
    The metrics said "iterations 46" of a network trained for 53, and a Ctrl-C could land
    inside an optimiser step, leaving a half-updated network."""
    out = tmp_path / "run"
    step, calls = torch.optim.Adam.step, []

    def step_then_ctrl_c(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 23 * 2 + 7:  # 23 batches an epoch: the 7th of epoch 3
            os.kill(os.getpid(), signal.SIGINT)  # mid-step: the step still completes
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_ctrl_c)
    argv = ["--hidden", "32,16", "--epochs", "5", "--batch-size", "64", "--dropout", "0.3",
            "--batchnorm", "--lr", "3e-3", "--threads", "1", "--eval-test", "--no-plots",
            "--no-progress"]
    assert main(["torch", "train", *argv, "--out", str(out)]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert f"Continue with: mlplab torch train --resume {out} --threads 1" in err
    metrics = json.loads((out / "metrics.json").read_text())
    # the network as it was after the 7th batch, and its 53 steps
    assert metrics["status"] == "interrupted" and metrics["iterations"] == 23 * 2 + 7
    assert len(calls) == 23 * 2 + 7  # no step after the one the Ctrl-C came in

    # only the runtime and output options may be given with --resume
    assert main(["torch", "train", "--resume", str(out), "--epochs", "5", "--lr", "1e-3",
                 "--no-cache"]) == 2
    assert "--resume continues a run exactly as it was configured; drop --epochs, --lr, " \
           "--no-cache." in capsys.readouterr().err
    assert main(["torch", "train", "--resume", str(out), "--threads", "1", "--no-plots",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "after epoch 2 of 5" in captured.err and captured.out.startswith("val accuracy ") \
        and f"\nrun folder: {out}\nnext: mlplab evaluate {out} " in captured.out  # train's
    _same_as(out, uninterrupted.out)


#: what a PyTorch run on digits writes as it saves its results, in order (no figures with
#: plots=False)
_RESULTS = ("model.npz", "model.pt", "history.csv", "loss.png", "accuracy.png", "confusion.png",
            "weights.png", "metrics.json")
_RESULTS_NO_PLOTS = ("model.npz", "model.pt", "history.csv", "metrics.json")


@pytest.mark.parametrize("draw,n", [(False, n) for n in range(1, len(_RESULTS_NO_PLOTS) + 1)]
                         + [(True, 4), (True, len(_RESULTS))])
def test_a_second_ctrl_c_at_each_write_of_a_resumed_run_leaves_one_model(
        draw, n, uninterrupted, tmp_path, monkeypatch, capsys, ctrl_c_at_write):
    """A run stopped by Ctrl-C after epoch 2 (history and figures written), resumed, stopped
    again after epoch 3, and a second Ctrl-C (out at once, unsaved) as its n-th result file
    was written: between the two model files it left model.pt of epoch 3 beside model.npz and
    metrics.json of epoch 2, and the stop's history.csv and figures stayed beside either. Now
    the stop's results (model.pt among them) go first and model.npz, which records its own
    metrics, is written before model.pt: every file there is of the model in model.npz, the run
    reads as unfinished, evaluate names the epochs of that model, and --resume ends it as a run
    never stopped."""
    from mlplab import io
    from mlplab.runs import evaluate_run, read_history, summarize_run
    from mlplab.runs.files import FIGURES
    from mlplab.runs.listing import epoch_curves

    out = tmp_path / "run"
    _crash_after(monkeypatch, 2, error=KeyboardInterrupt)  # (a stop at the epoch's end)
    with pytest.warns(tm.RunInterruptedWarning):
        assert tm.train_run("digits", out=out, **{**SETTINGS, "plots": True}).interrupted
    monkeypatch.undo()
    assert {"history.csv", "loss.png", "model.pt"} <= {p.name for p in out.iterdir()}
    written = ctrl_c_at_write(out, n)
    _crash_after(monkeypatch, 3, error=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        tm.resume_run(out, plots=draw)
    monkeypatch.undo()
    assert written == list((_RESULTS if draw else _RESULTS_NO_PLOTS)[:n - 1])
    # every result file there was written with the model.npz beside it: the stop's went first
    results = {"model.pt", "history.csv", "metrics.json", *FIGURES}
    assert {p.name for p in out.iterdir()} & results == set(written) - {"model.npz"}
    saved = 3 if "model.npz" in written else 2  # model.npz: the stop's, if not yet replaced
    assert io.load_model(out / "model.npz").extra["metrics"]["epochs"] == saved
    if (out / "model.pt").exists():
        ours = tm.to_numpy(tm.load_torch_model(out / "model.pt")[0]).params
        theirs = io.load_model(out / "model.npz").model.params
        assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)
    if (out / "history.csv").exists():
        assert len(read_history(out / "history.csv")["val_acc"]) == saved
    assert tm.load_torch_checkpoint(out / "checkpoint.pt")[0]["epoch"] == 3
    record = summarize_run(out)
    assert (record["status"], record["epochs"]) == ("unfinished", 3)
    assert len(epoch_curves(out)["val_acc"]) == 3
    further = "; the run was resumed since and stopped again before it saved, so its " \
        "checkpoint has gone further than this model" if saved == 2 else ""
    with pytest.warns(UserWarning) as said:
        evaluate_run(out)
    assert [str(w.message) for w in said] == [
        f"{out} was interrupted: its model is the one saved when it stopped after {saved} "
        f"epochs{further}; it was stopped while it wrote its results, so it has no metrics.json "
        f"yet; mlplab.torch_mlp.resume_run({str(out)!r}) finishes it."]
    # a new run may not take the folder over
    assert main(["torch", "train", "--out", str(out), "--no-progress"]) == 1
    assert f"continue it with mlplab torch train --resume {out}" in capsys.readouterr().err
    assert tm.resume_run(out, plots=False).metrics["status"] == "completed"
    _same_as(out, uninterrupted.out, drawn=True)


def test_a_run_stopped_while_saving_before_its_first_checkpoint_is_offered_to_resume(
        uninterrupted, tmp_path, capsys):
    """Stopped in its first epoch twice, the second time while it saved: model files, no
    metrics.json (gone first) and no checkpoint. A new run into it was refused as a folder that
    "already holds results", with no word of --resume, which trains it from the start."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(uninterrupted.out, out)
    for name in ("metrics.json", "checkpoint.pt"):
        (out / name).unlink()
    assert main(["torch", "train", "--out", str(out), "--no-progress"]) == 1
    assert f"{out} holds a run that stopped before its end with no checkpoint; train it again " \
           f"from the start with mlplab torch train --resume {out} --no-plots, or choose " \
           "another --out." \
           in capsys.readouterr().err


def test_a_run_stopped_before_its_first_checkpoint_starts_again(uninterrupted, tmp_path):
    """Killed during epoch 1, a run leaves only config.json; resuming it trains from the start
    with the same seed."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text((uninterrupted.out / "config.json").read_text())
    result = tm.resume_run(out)
    assert result.history.loss == uninterrupted.history.loss
    _same_as(out, uninterrupted.out)


def test_resume_refuses_other_data_and_damaged_checkpoints(tmp_path, monkeypatch):
    import dataclasses

    from mlplab.data import load_dataset

    # a dataset of one's own, which load_dataset cannot load again by its name
    digits = dataclasses.replace(load_dataset("digits"), name="mine", load_options={})
    out = tmp_path / "run"
    _crash_after(monkeypatch, 1)
    settings = {**SETTINGS, "eval_test": False}
    with pytest.raises(RuntimeError):
        tm.train_run(digits, out=out, **settings)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="given to it in Python.*resume_run\\(RUN, data=DATASET"):
        tm.resume_run(out)
    other = dataclasses.replace(digits, X_train=digits.X_train[1:], y_train=digits.y_train[1:])
    with pytest.raises(ValueError, match="train split of mine has 1436 images, but the run "
                                         "was trained with 1437"):
        tm.resume_run(out, data=other)
    with pytest.raises(ValueError, match="not the one this run was trained with"):
        tm.resume_run(out, data=dataclasses.replace(digits, X_val=digits.X_val[::-1],
                                                    y_val=digits.y_val[::-1]))
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint.pt is not a readable PyTorch checkpoint"):
        tm.resume_run(out, data=digits)
    torch.save({"format": "mlplab-torch-checkpoint", "state": {"epoch": 1}},
               out / "checkpoint.pt")
    with pytest.raises(ValueError, match="not one fit wrote"):
        tm.resume_run(out, data=digits)


def test_resume_refuses_what_is_not_a_stopped_pytorch_run(tmp_path, capsys):
    # killed as it began: no folder, or its lock file alone; nothing saved, nothing to resume
    assert main(["torch", "train", "--resume", str(tmp_path / "never")]) == 1
    assert f"no run to resume in {tmp_path / 'never'}: no such folder, so nothing was saved " \
        "(stopped as it began, before it made the folder; or another folder was meant); start " \
        f"it anew with the command that began it (--out {tmp_path / 'never'}), without " \
        "--resume." in capsys.readouterr().err
    (tmp_path / ".lock").write_text("")
    with pytest.raises(FileNotFoundError, match=r"no run to resume in .*: nothing was saved in "
                                                r"it \(stopped as it began, before it wrote "
                                                r"config.json\); start it anew with "
                                                r"mlplab.torch_mlp.train_run\(\.\.\., out="):
        tm.resume_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        tm.resume_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="no run to resume in .*nowhere: no such folder, "
                                                "so nothing was saved"):
        tm.resume_run(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "digits"}))
    assert main(["torch", "train", "--resume", str(tmp_path)]) == 1
    assert "was not written by mlplab torch train; resume an mlplab train run with mlplab " \
           "train --resume" in capsys.readouterr().err
    # from Python, the function: not the command
    with pytest.raises(ValueError, match=r"resume an mlplab train run with "
                                         r"mlplab\.runs\.resume_run\(RUN\)\.$"):
        tm.resume_run(tmp_path)


def test_fit_resumes_from_a_state_bit_for_bit(rng):
    """The library level: ``fit``'s ``on_checkpoint`` states, saved and loaded through
    ``torch.save``, continue a run as if it had not stopped; a state of another network is
    refused, saying so."""
    import io

    X = rng.normal(size=(120, 10)).astype(np.float32)
    y = rng.randint(0, 3, size=120)
    settings = {"epochs": 4, "batch_size": 16, "lr": 1e-2, "seed": 3}

    def model():
        return tm.build_model(10, [12], 3, init="default", dropout=0.4, seed=3)

    states = []

    def keep(state):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        states.append(buffer.getvalue())

    whole = model()
    history = tm.fit(whole, X, y, X[:30], y[:30], on_checkpoint=keep, **settings)
    assert len(states) == 4
    resumed = model()
    state = torch.load(io.BytesIO(states[1]), weights_only=True)
    again = tm.fit(resumed, X, y, X[:30], y[:30], resume=state, **settings)
    assert again.loss == history.loss and again.val_acc == history.val_acc
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(),
                                                 resumed.state_dict().values()))
    wider = tm.build_model(10, [13], 3, init="default", dropout=0.4, seed=3)
    # which parameter does not fit, not PyTorch's first line alone ("Error(s) in loading
    # state_dict for MultiLayerPerceptron:"), the one a config.json whose hidden was edited gave
    with pytest.raises(ValueError, match=r"does not fit this network and its training \(Error"
                                         r"\(s\) in loading state_dict for MultiLayerPerceptron: "
                                         r"size mismatch for .*12.*13.*\)\.$"):
        tm.fit(wider, X, y, resume=torch.load(io.BytesIO(states[1]), weights_only=True),
               **settings)


def test_a_run_that_diverges_after_a_checkpoint_is_not_offered_for_resuming(tmp_path,
                                                                             monkeypatch,
                                                                             capsys):
    """A loss that becomes NaN in a later epoch would do so again on every resume: the
    checkpoint goes, config.json records the divergence, --resume refuses it at once (it trained
    the run again from the start into the same NaN), and the folder is reused by the next run."""
    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "run"
    _crash_after(monkeypatch, 2, TrainingDivergedError)
    with pytest.raises(TrainingDivergedError, match="Resuming this run would repeat it; start a "
                                                    "new run with other settings, with the same "
                                                    "out if you like."):
        tm.train_run("digits", out=out, **SETTINGS)
    monkeypatch.undo()
    assert [p.name for p in out.iterdir()] == ["config.json"]
    config = json.loads((out / "config.json").read_text())
    assert "stopped here" in config["diverged"]["error"]
    from mlplab.runs import list_runs

    assert [r["status"] for r in list_runs([tmp_path])] == ["diverged"]  # not "unfinished"
    steps, step = [], torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step",
                        lambda self, *a, **k: (steps.append(1), step(self, *a, **k))[1])
    refusal = f"the run in {out} stopped when its loss diverged; resuming would repeat it:" \
              " start a new run with other settings (a lower lr, say), with the same " \
              "out if you like."
    with pytest.raises(ValueError, match=re.escape(refusal)):
        tm.resume_run(out, announce=True)
    assert main(["torch", "train", "--resume", str(out)]) == 1
    assert refusal.replace("lower lr", "lower --lr").replace("same out", "same --out") in \
        capsys.readouterr().err
    assert steps == []  # refused before any training
    assert main(["evaluate", str(out)]) == 1  # it said: pass a run folder of mlplab train
    assert f"{out} has no model.npz; its loss diverged, so it saved no model; start a new run " \
           "with other settings (a lower --lr, say), with the same --out if you like." in \
        capsys.readouterr().err
    result = tm.train_run("digits", out=out, **{**SETTINGS, "epochs": 1})
    assert result.metrics["status"] == "completed"
    assert "diverged" not in json.loads((out / "config.json").read_text())


def test_a_resumed_run_that_diverges_records_it(tmp_path, monkeypatch):
    """A run stopped by a crash that diverges once resumed records the divergence too."""
    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "run"
    _crash_after(monkeypatch, 1)
    with pytest.raises(RuntimeError):
        tm.train_run("digits", out=out, **SETTINGS)
    monkeypatch.undo()
    _crash_after(monkeypatch, 3, TrainingDivergedError)
    with pytest.raises(TrainingDivergedError, match="Resuming this run would repeat it"):
        tm.resume_run(out)
    monkeypatch.undo()
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == ["config.json"]
    assert "diverged" in json.loads((out / "config.json").read_text())
    with pytest.raises(ValueError, match="stopped when its loss diverged"):
        tm.resume_run(out)


def _stopped_run(out, monkeypatch, **settings):
    """A run of ``SETTINGS`` (and ``settings``) crashed after its second epoch: config.json and
    checkpoint.pt."""
    _crash_after(monkeypatch, 2)
    with pytest.raises(RuntimeError):
        tm.train_run("digits", out=out, **{**SETTINGS, "eval_test": False, **settings})
    monkeypatch.undo()
    return out


def _damage_checkpoint(run, change):
    """Rewrite ``run``'s checkpoint.pt with ``change(payload)`` applied, as a hand edit would."""
    path = run / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_a_damaged_checkpoint_is_one_line_naming_it_and_what_to_do(tmp_path, monkeypatch,
                                                                     capsys):
    """A checkpoint whose parts are of the wrong type: ``mlplab runs`` lists the run as
    unreadable (it failed as a whole, on an AttributeError), and resuming names the file and
    says how to go on without it (it gave Python's words: "'NoneType' object has no attribute
    'copy'")."""
    out = _stopped_run(tmp_path / "run", monkeypatch)
    _damage_checkpoint(out, lambda p: p["state"].update(history="x"))
    assert main(["runs", str(tmp_path)]) == 0
    assert "unreadable" in capsys.readouterr().out
    assert main(["runs", "--json", str(tmp_path)]) == 0
    assert "its history is a str, not a dict" in capsys.readouterr().out
    _damage_checkpoint(out, lambda p: p.update(extra=[1]))  # dict([1]): a TypeError
    assert main(["runs", "--json", str(tmp_path)]) == 0
    assert "checkpoint.pt is not an mlplab PyTorch checkpoint" in capsys.readouterr().out

    for key, value in (("optimizer", None), ("history", None), ("scheduler", "x")):
        stopped = _stopped_run(tmp_path / key, monkeypatch)
        _damage_checkpoint(stopped, lambda p, k=key, v=value: p["state"].update({k: v}))
        assert main(["torch", "train", "--resume", str(stopped), "--no-progress"]) == 1
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1  # no "resuming ..." first
        assert f"cannot resume from {stopped / 'checkpoint.pt'}: the training state" in err
        assert err.endswith(f"delete {stopped / 'checkpoint.pt'}, and mlplab torch train "
                            f"--resume {stopped} --no-plots trains the run again from its "
                            "start.")
    # the record beside the state: its seconds made float() fail, its splits' parts .get()
    for extra in ({"seconds": "x"}, {"splits": {"split_sha1": "x"}},
                  {"splits": {"val_size": "12"}}, {"settings": [1]}):
        _damage_checkpoint(stopped, lambda p, e=extra: p["extra"].update(e))
        with pytest.raises(ValueError, match="checkpoint.pt is not a complete PyTorch "
                                             "checkpoint \\(its seconds, splits or settings"):
            tm.resume_run(stopped)
        _damage_checkpoint(stopped, lambda p: p["extra"].update(seconds=1.0, splits=None,
                                                                settings=None))
    # deleted, as it says: the run trains again from its start, to the same end
    (stopped / "checkpoint.pt").unlink()
    assert tm.resume_run(stopped).metrics["status"] == "completed"


def test_resume_refuses_settings_edited_since_the_checkpoint(tmp_path, monkeypatch, capsys):
    """The checkpoint records the run's training settings, and a resume refuses a config.json
    edited since, naming each setting and both values, in mlplab train --resume's words. Before,
    Adam and the scheduler went on with the checkpoint's lr, reg and lr_decay without a word,
    while config.json (and evaluate, runs) named the edited ones."""
    out = _stopped_run(tmp_path / "run", monkeypatch)
    ckpt, path = out / "checkpoint.pt", out / "config.json"
    config = json.loads(path.read_text())
    _, extra = torch_runs.load_torch_checkpoint(ckpt)
    assert {k: extra["settings"][k] for k in ("lr", "reg", "lr_decay")} == \
        {k: config[k] for k in ("lr", "reg", "lr_decay")}
    for edits, said in [({"lr": 0.01}, "lr 0.003, but {path} now says lr 0.01"),
                        ({"reg": 0.1}, "reg 0.001, but {path} now says reg 0.1"),
                        # no weights of its own: an edited dropout resumed without a word
                        ({"dropout": 0.6}, f"dropout {json.dumps(config['dropout'])}, but "
                                           "{path} now says dropout 0.6"),
                        ({"lr_decay": 0.5, "reg": 0.0},
                         "reg 0.001, lr_decay 0.95, but {path} now says reg 0.0, lr_decay 0.5")]:
        path.write_text(json.dumps({**config, **edits}))
        value = "value" if len(edits) == 1 else "values"
        with pytest.raises(ValueError, match=re.escape(
                f"{ckpt} was trained with {said.format(path=path)}: resumed, the run would go on "
                "under other settings than it was trained with. Put back the original "
                f"{value} in config.json to resume it, or start a new run with the new {value} "
                "(another out).")):
            tm.resume_run(out)
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("the new values (another --out).")
    # a PyTorch run has one preprocessing: an edited one resumed without a word
    path.write_text(json.dumps({**config, "preprocessing": "standardize"}))
    with pytest.raises(ValueError, match=re.escape(
            f'{path}: preprocessing is "standardize", not "torch", the only preprocessing of a '
            "PyTorch run; the file was edited or damaged")):
        tm.resume_run(out)
    # a checkpoint of an mlplab that recorded no settings resumes as before
    _damage_checkpoint(out, lambda p: p["extra"].pop("settings"))
    path.write_text(json.dumps(config))
    assert tm.resume_run(out).metrics["status"] == "completed"


def test_a_checkpoint_without_a_settings_record_is_compared_by_its_own_state(tmp_path,
                                                                            monkeypatch, capsys):
    """A checkpoint of an mlplab that recorded no settings still holds Adam's (lr,
    weight_decay) and the scheduler's (gamma): a config.json whose lr, reg or lr_decay differ is
    refused in the same words (before, Adam and the scheduler went on with the checkpoint's
    values without a word). The lr compared is the one the run started with (the scheduler's
    base_lrs), not the decayed one the optimiser holds after two epochs."""
    out = _stopped_run(tmp_path / "run", monkeypatch)
    ckpt, path = out / "checkpoint.pt", out / "config.json"
    config = json.loads(path.read_text())
    _damage_checkpoint(out, lambda p: p["extra"].pop("settings"))
    state, _ = torch_runs.load_torch_checkpoint(ckpt)
    [group] = state["optimizer"]["param_groups"]
    assert group["lr"] == pytest.approx(config["lr"] * config["lr_decay"] ** 2)
    assert group["lr"] != config["lr"]
    for edits, said in [({"lr": 0.01}, "lr 0.003, but {path} now says lr 0.01"),
                        ({"reg": 0.1}, "reg 0.001, but {path} now says reg 0.1"),
                        ({"lr_decay": 0.5}, "lr_decay 0.95, but {path} now says lr_decay 0.5")]:
        path.write_text(json.dumps({**config, **edits}))
        with pytest.raises(ValueError, match=re.escape(
                f"{ckpt} was trained with {said.format(path=path)}: resumed, the run would go on "
                "under other settings than it was trained with. Put back the original value in "
                "config.json to resume it, or start a new run with the new value (another "
                "out).")):
            tm.resume_run(out)
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("the new value (another --out)."), err
    # a scheduler's state without base_lrs: the optimiser's initial_lr says the same
    _damage_checkpoint(out, lambda p: p["state"]["scheduler"].pop("base_lrs"))
    path.write_text(json.dumps({**config, "lr": 0.01}))
    with pytest.raises(ValueError, match=re.escape(f"{ckpt} was trained with lr 0.003, but")):
        tm.resume_run(out)
    # the run's own config.json resumes, to the end
    path.write_text(json.dumps(config))
    assert tm.resume_run(out).metrics["status"] == "completed"


def test_a_run_without_a_checkpoint_is_resumed_only_on_its_own_splits(tmp_path, monkeypatch,
                                                                       capsys):
    """config.json records the splits the run started with (sizes and fingerprints, as the
    checkpoint does), and a resume checks them even when there is no checkpoint yet (a run
    stopped in its first epoch): before, such a run started again on whatever splits an edited
    val_size or changed data gave, without a word."""
    import dataclasses

    from mlplab.data import load_dataset

    out = _stopped_run(tmp_path / "run", monkeypatch)
    path = out / "config.json"
    config = json.loads(path.read_text())
    digits = load_dataset("digits")
    assert config["splits"] == torch_runs.split_record(digits)
    assert (config["val_size"], config["test_size"], config["data_seed"]) == (None, None, 0)
    (out / "checkpoint.pt").unlink()  # stopped before its first epoch ended
    path.write_text(json.dumps({**config, "val_size": 300}))
    with pytest.raises(ValueError, match=re.escape(
            f"the train split of digits has {len(digits.y_train) - 120} images, but the run was "
            f"trained with {len(digits.y_train)} (see {path}): it is not the run's data. (If "
            "config.json's val_size, test_size, data_seed or image_size was edited, put back "
            "the value mlplab torch train wrote.)")):
        tm.resume_run(out)
    path.write_text(json.dumps({**config, "data_seed": 1}))
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the val split of digits is not the one this run was trained " \
        "with (as many images, but other ones)" in err[0]
    path.write_text(json.dumps({**config, "splits": "x"}))
    with pytest.raises(ValueError, match="config.json: splits is \"x\", not a record of the "
                                         "run's splits; the file was edited or damaged"):
        tm.resume_run(out)
    # other data given in Python is refused as well
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not the one this run was trained with"):
        tm.resume_run(out, data=dataclasses.replace(digits, X_val=digits.X_val[::-1],
                                                    y_val=digits.y_val[::-1]))
    # the run's own config.json trains again, and so does one of an mlplab that recorded no
    # splits (nothing to check them against)
    assert tm.resume_run(out).metrics["status"] == "completed"
    (out / "metrics.json").unlink()
    (out / "checkpoint.pt").unlink()
    path.write_text(json.dumps({k: v for k, v in config.items() if k != "splits"}))
    assert tm.resume_run(out).metrics["status"] == "completed"


def test_fit_refuses_a_state_of_other_batches(rng):
    """A state resumed with another batch size (or training set) went on silently with other
    batches: its iterations are not the epochs' batches of this training."""
    X = rng.normal(size=(100, 6)).astype(np.float32)
    y = rng.randint(0, 3, size=100)
    states = []
    tm.fit(tm.build_model(6, [8], 3, seed=0), X, y, epochs=2, batch_size=20,
           on_checkpoint=lambda s: states.append(s) if s["epoch"] == 1 else None)
    state = states[0]
    # the error fit's docstring names is the package's API, importable as mlplab.torch_mlp.X
    assert "TrainingStateError" in tm.__all__
    from mlplab.torch_mlp import TrainingStateError

    assert issubclass(TrainingStateError, ValueError)
    with pytest.raises(TrainingStateError,
                       match="has 5 iterations in 1 epochs, but this training has 4 batches an "
                             "epoch \\(another batch size or training set\\)"):
        tm.fit(tm.build_model(6, [8], 3, seed=0), X, y, epochs=2, batch_size=25, resume=state)
    with pytest.raises(ValueError, match="but this training has 3 batches an epoch"):
        tm.fit(tm.build_model(6, [8], 3, seed=0), X[:60], y[:60], epochs=2, batch_size=20,
               resume=state)


@pytest.mark.parametrize(("key", "value", "what"), [
    ("hidden", None, "a list of hidden sizes"),  # was: 'NoneType' object is not iterable
    ("dataset", 5, "a dataset name"),  # was: 'int' object has no attribute 'lower'
    ("lr_decay", "x", "a number"),  # was: '<' not supported between instances of ...
    ("eval_test", "no", "true or false"),  # was: taken as true, the test split measured
    ("batchnorm", "yes", "true or false"),  # was: taken as true
])
def test_a_damaged_config_is_refused_naming_the_key(tmp_path, key, value, what):
    """A config.json value of the wrong type (a hand edit) is refused before anything is
    loaded, naming the file and the key, and the run resumes once it is put back."""
    out = tmp_path / "run"
    out.mkdir()
    config = json.loads((_settings_of_a_run(tmp_path) / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(ValueError, match=f"config.json: {key} is {json.dumps(value)}, not "
                                         f"{what}; the file was edited or damaged: put back"):
        tm.resume_run(out)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("epochs", 0, "epochs must be"), ("init", "xx", "unknown init 'xx'"),
    ("lr", -1.0, "lr must be"), ("dropout", 1.5, "dropout"),
])
def test_a_config_value_no_run_trains_with_is_refused_naming_the_file(tmp_path, key, value,
                                                                       message):
    """A hand-edited value of the right type that no run trains with was refused in the
    option's words alone, without naming config.json, where it came from."""
    out = tmp_path / "run"
    out.mkdir()
    config = json.loads((_settings_of_a_run(tmp_path) / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(ValueError, match=f"config.json: .*{message}.* The file was edited or "
                                         "damaged: put back the value"):
        tm.resume_run(out)


def _settings_of_a_run(tmp_path):
    """A folder with the config.json of a small completed run."""
    return tm.train_run("digits", out=tmp_path / "model-run", hidden=[8], epochs=1,
                        threads=1, plots=False).out


def test_ctrl_c_in_the_first_epoch_does_not_claim_a_checkpoint(tmp_path, monkeypatch,
                                                                capsys):
    """Ctrl-C before the first epoch ended: there is no checkpoint (the message said one was
    kept), and --resume trains the run again from its start."""
    out = tmp_path / "run"
    step, calls = torch.optim.Adam.step, []

    def step_then_ctrl_c(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_ctrl_c)
    argv = ["--hidden", "8", "--epochs", "2", "--threads", "1", "--no-plots", "--no-progress"]
    assert main(["torch", "train", *argv, "--out", str(out)]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists()
    assert "checkpoint kept" not in err
    assert "interrupted; saved: the run as it stopped, before its first checkpoint; --resume " \
           "starts it again from its first epoch. Continue with: mlplab torch train --resume " \
           f"{out} --threads 1" in err
    # a new run into its folder is told to resume it (it said "already holds results"), which
    # trains it from the start (it said "continue it", as of a run with a checkpoint)
    assert main(["torch", "train", *argv, "--out", str(out)]) == 1
    assert "stopped before its end with no checkpoint; train it again from the start with " \
           f"mlplab torch train --resume {out} --no-plots," in capsys.readouterr().err
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 0
    assert "from the start" in capsys.readouterr().err


def test_a_run_of_a_gpu_this_machine_lacks_names_its_config(tmp_path, monkeypatch, capsys):
    """A run trained on cuda:3 resumed on a machine with one GPU: the error blamed "--device
    cuda:3", a flag the user never gave, where it is the run's config.json that names it.
    (Simulated: PyTorch is told it sees one GPU; the error comes before any is used.)"""
    out = _stopped_run(tmp_path / "run", monkeypatch, eval_test=True)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "device": "cuda:3"}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    assert capsys.readouterr().err == (
        f"mlplab torch train: error: the run was trained on cuda:3 ({out / 'config.json'}) and "
        "PyTorch sees 1 GPU here (cuda:0 .. cuda:0); add --device cuda (or another cuda:N) to "
        "resume it on one of them.\n")


def test_a_run_of_a_gpu_goes_on_without_one_with_device_cpu(uninterrupted, tmp_path,
                                                            monkeypatch, capsys):
    """A run configured for --device cuda, resumed on a machine without a GPU: the error says
    to use --device cpu, which --resume refused ("drop --device"); it now takes it, and the
    command printed to go on after a Ctrl-C keeps it."""
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a CUDA GPU")
    out = _stopped_run(tmp_path / "run", monkeypatch, eval_test=True)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "device": "cuda"}))
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    # the recorded device is named as the run's (config.json), not as a --device never given
    assert capsys.readouterr().err == (
        f"mlplab torch train: error: the run was trained on cuda ({out / 'config.json'}) and "
        "PyTorch sees no CUDA GPU here; add --device cpu to resume it on the CPU.\n")
    assert main(["torch", "train", "--resume", str(out), "--device", "foo"]) == 2
    assert "--device must be cpu, cuda, cuda:N or auto" in capsys.readouterr().err

    step, calls = torch.optim.Adam.step, []

    def step_then_ctrl_c(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_ctrl_c)
    assert main(["torch", "train", "--resume", str(out), "--device", "cpu", "--no-plots",
                 "--no-progress"]) == 130
    monkeypatch.undo()
    assert f"Continue with: mlplab torch train --resume {out} --device cpu" in \
        capsys.readouterr().err
    result = tm.resume_run(out, device="cpu", plots=False)
    assert result.metrics["device"] == "cpu" and result.config["device"] == "cuda"
    assert result.history.loss == uninterrupted.history.loss  # trained on the CPU throughout


def test_a_stopped_run_without_a_hidden_layer_is_listed_as_such(tmp_path, monkeypatch):
    """--hidden none: mlplab runs showed the unfinished run's network as "hidden " (nothing
    after it); it resumes to the end of a run never stopped."""
    from mlplab.runs import summarize_run

    settings = {"hidden": [], "dropout": 0.0, "batchnorm": False, "epochs": 3}
    out = _stopped_run(tmp_path / "run", monkeypatch, **settings)
    assert summarize_run(out)["model"] == "hidden none"
    whole = tm.train_run("digits", out=None, **{**SETTINGS, "eval_test": False, **settings})
    assert tm.resume_run(out, plots=False).history.loss == whole.history.loss


@pytest.mark.parametrize("argv", [["torch", "train", "--resume", ""],
                                  ["torch", "train", "--epochs", "1", "--out", ""],
                                  ["train", "--resume", ""],
                                  ["train", "--epochs", "1", "--out", ""],
                                  ["train", "--like", ""], ["evaluate", ""],
                                  # an empty --data-dir was taken as none: a run's moved
                                  # data was looked for where it no longer is
                                  ["evaluate", "run", "--data-dir", ""],
                                  ["train", "--resume", "run", "--data-dir", ""],
                                  ["data", "download", "cifar10", "--data-dir", ""]])
def test_a_path_that_is_an_empty_text_is_refused(argv, tmp_path, monkeypatch, capsys):
    """--resume "$RUN" with RUN unset trained a new run with the defaults into runs/ (so did
    --out "$OUT", mlplab train's as well as mlplab torch train's)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error
        main([*argv, "--no-progress"] if argv[0] == "torch" else argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "expected a path; got an empty text (an unset shell variable?)" in err, err
    assert list(tmp_path.iterdir()) == []


def _fake_mnist(folder):
    """MNIST's four IDX files with 60 training and 20 test images of noise."""
    import struct

    rs = np.random.RandomState(0)
    folder.mkdir()
    for name, arr in {"train-images-idx3-ubyte": rs.randint(0, 256, (60, 28, 28)),
                      "train-labels-idx1-ubyte": np.arange(60) % 10,
                      "t10k-images-idx3-ubyte": rs.randint(0, 256, (20, 28, 28)),
                      "t10k-labels-idx1-ubyte": np.arange(20) % 10}.items():
        header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
        (folder / name).write_bytes(header + arr.astype(np.uint8).tobytes())


def test_a_run_whose_data_moved_resumes_with_data_dir(tmp_path, monkeypatch, capsys):
    """Data no longer where config.json says: the loader's advice to "add --download to this
    command" was refused by --resume ("drop --download"), and there was no way to give the new
    place. It now says to give it with --data-dir, which --resume takes: the splits are checked
    against the checkpoint's, config.json names the new place, and the run ends as one never
    stopped."""
    from mlplab.data.base import DatasetNotFoundError

    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))
    _fake_mnist(tmp_path / "m")
    settings = {"hidden": [8], "epochs": 3, "batch_size": 10, "val_size": 10, "threads": 1,
                "plots": False, "eval_test": True}
    whole = tm.train_run("mnist", data_dir=tmp_path / "m", out=None, **settings)
    run = tmp_path / "run"
    _crash_after(monkeypatch, 1)
    with pytest.raises(RuntimeError):
        tm.train_run("mnist", data_dir=tmp_path / "m", out=run, **settings)
    monkeypatch.undo()
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))
    (tmp_path / "m").rename(tmp_path / "moved")

    assert main(["torch", "train", "--resume", str(run), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "--download" not in err
    assert f"give its new place: mlplab torch train --resume {run} --data-dir DIR" in err
    with pytest.raises(DatasetNotFoundError, match="data_dir=DIR"):
        tm.resume_run(run)
    with pytest.raises(ValueError, match="not both"):
        tm.resume_run(run, data=whole, data_dir=tmp_path / "moved")
    assert main(["torch", "train", "--resume", str(run), "--data-dir",
                 str(tmp_path / "moved"), "--no-progress", "--no-plots"]) == 0
    assert json.loads((run / "config.json").read_text())["data_dir"] == \
        str((tmp_path / "moved").resolve())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["test_accuracy"] == whole.metrics["test_accuracy"]
    ours = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(ours[k], v) for k, v in whole.model.state_dict().items())


def test_data_dir_of_other_data_is_refused(tmp_path, monkeypatch, capsys):
    """--data-dir pointing at other data (fewer training images) is refused by the
    checkpoint's record of the splits, and config.json keeps the place it named."""
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))
    _fake_mnist(tmp_path / "m")
    run = tmp_path / "run"
    _crash_after(monkeypatch, 1)
    with pytest.raises(RuntimeError):
        tm.train_run("mnist", data_dir=tmp_path / "m", out=run, hidden=[8], epochs=2,
                     batch_size=10, val_size=10, threads=1, plots=False)
    monkeypatch.undo()
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))
    before = (run / "config.json").read_text()
    with pytest.raises(ValueError, match="it is not the run's data"):
        tm.resume_run(run, data_dir=_other_mnist(tmp_path / "other"))
    # too few images for the run's validation split: it named --val-size, which --resume refuses
    assert main(["torch", "train", "--resume", str(run), "--data-dir",
                 str(_other_mnist(tmp_path / "few", 5))]) == 1
    assert "the run's val_size must be between 0 and 4 (of 5 images, 1 kept for training); " \
           "got 10. This is not the data the run was trained with" in capsys.readouterr().err
    assert (run / "config.json").read_text() == before


def _other_mnist(folder, n=50):
    """Fake MNIST files with ``n`` training images, not the run's 60."""
    import struct

    _fake_mnist(folder)
    path = folder / "train-images-idx3-ubyte"
    data = path.read_bytes()[16:16 + n * 28 * 28]
    path.write_bytes(struct.pack(">HBB", 0, 8, 3) + struct.pack(">3I", n, 28, 28) + data)
    labels = folder / "train-labels-idx1-ubyte"
    labels.write_bytes(struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", n) +
                       (np.arange(n) % 10).astype(np.uint8).tobytes())
    return folder


def test_a_run_resumed_without_figures_keeps_none_of_its_stop(tmp_path, monkeypatch):
    """Ctrl-C draws the run's figures as it was then; resumed with plots=False (--no-plots) it
    left them beside results they no longer show."""
    from mlplab.runs.files import FIGURES

    step, calls = torch.optim.Adam.step, []

    def step_then_ctrl_c(self, *args, **kwargs):
        loss = step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 30:  # in epoch 2
            raise KeyboardInterrupt
        return loss

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_ctrl_c)
    out = tmp_path / "run"
    stopped = tm.train_run("digits", out=out, **{**SETTINGS, "plots": True})
    monkeypatch.undo()
    assert stopped.interrupted and {"loss.png", "accuracy.png"} <= {p.name for p in out.iterdir()}
    assert tm.resume_run(out, plots=False).metrics["status"] == "completed"
    assert not any((out / name).exists() for name in FIGURES)


def _environment_warnings(caught):
    return [w for w in caught if "another environment" in str(w.message)]


def test_a_run_resumed_in_another_environment_says_so_once(tmp_path, monkeypatch, capsys):
    """The checkpoint records what trained it (PyTorch, device, threads, CPU, mlplab): resumed
    with another thread count and PyTorch, the run goes on with one warning naming both (its
    last bits may differ from an uninterrupted run's), and its files keep the earlier
    environment. Stopped again and resumed in the same environment, it says nothing more."""
    import warnings

    run = _stopped_run(tmp_path / "run", monkeypatch, epochs=5)  # threads 1, 2 epochs done
    ckpt = run / "checkpoint.pt"
    _, extra = tm.load_torch_checkpoint(ckpt)
    env = extra["environment"]
    assert (env["torch"], env["device"], env["threads"]) == (torch.__version__, "cpu", 1)
    assert env["environment"]["cpu"] and "earlier_environments" not in extra
    _damage_checkpoint(run, lambda p: p["extra"]["environment"].update(torch="2.0.0"))
    _crash_after(monkeypatch, 3)  # stopped again, in the new environment, after epoch 3
    with pytest.warns(UserWarning) as caught, pytest.raises(RuntimeError, match="stopped here"):
        tm.resume_run(run, threads=2)
    monkeypatch.undo()
    [warning] = _environment_warnings(caught)
    assert str(warning.message) == (
        f"{ckpt} was written with another environment (torch 2.0.0 -> {torch.__version__}; "
        "threads 1 -> 2): the run continues correctly, but its results may differ from an "
        "uninterrupted run's in the last bits, which needs the same mlplab, PyTorch, device, "
        "thread count and CPU.")
    assert warning.filename == __file__  # the caller's line, not mlplab's
    _, extra = tm.load_torch_checkpoint(ckpt)
    assert extra["environment"]["threads"] == 2
    assert [(e["torch"], e["threads"]) for e in extra["earlier_environments"]] == \
        [("2.0.0", 1)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tm.resume_run(run, threads=2)  # where it was last trained: not a word
    assert _environment_warnings(caught) == [] and result.metrics["status"] == "completed"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["threads"] == 2
    assert [(e["torch"], e["threads"]) for e in metrics["earlier_environments"]] == \
        [("2.0.0", 1)]


def test_a_checkpoint_without_an_environment_resumes_without_a_word(tmp_path, monkeypatch,
                                                                     capsys):
    """A checkpoint written before PyTorch runs recorded their environment resumes as before,
    in any environment; one that records another says so, from the command line too."""
    import warnings

    old = _stopped_run(tmp_path / "old", monkeypatch)
    _damage_checkpoint(old, lambda p: p["extra"].pop("environment"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["torch", "train", "--resume", str(old), "--threads", "2",
                     "--no-progress"]) == 0
    assert _environment_warnings(caught) == []
    assert "earlier_environments" not in json.loads((old / "metrics.json").read_text())

    run = _stopped_run(tmp_path / "run", monkeypatch)
    with pytest.warns(UserWarning, match=r"checkpoint.pt was written with another environment "
                                         r"\(threads 1 -> 2\): the run continues"):
        assert main(["torch", "train", "--resume", str(run), "--threads", "2",
                     "--no-progress"]) == 0


def test_evaluate_of_a_run_killed_in_its_first_epoch_says_to_resume_it(tmp_path, capsys):
    """A run folder with only its config.json (killed before its first epoch ended): evaluate
    told its user to pass a run folder written by mlplab train."""
    torch_run, numpy_run = tmp_path / "torch", tmp_path / "numpy"
    for run in (torch_run, numpy_run):
        run.mkdir()
    (torch_run / "config.json").write_text(json.dumps({"framework": "pytorch",
                                                       "dataset": "digits"}))
    (numpy_run / "config.json").write_text(json.dumps({"dataset": "digits"}))
    for run, command in ((torch_run, "mlplab torch train"), (numpy_run, "mlplab train")):
        assert main(["evaluate", str(run)]) == 1
        assert f"{run} has no model.npz; it stopped before its first epoch ended, so it saved " \
               f"no model; train it with {command} --resume {run}." in capsys.readouterr().err


def test_a_run_stopped_by_ctrl_c_says_so_and_how_to_resume_it(tmp_path, monkeypatch):
    """tm.train_run and tm.resume_run return a run stopped by Ctrl-C rather than raise: a
    notebook's cell ended with no word of the stop. A RunInterruptedWarning names
    mlplab.torch_mlp's resume_run, from the caller's line; the command line prints its own
    "Continue with" line instead, without the warning."""
    out = tmp_path / "run"
    go_on = rf"; mlplab\.torch_mlp\.resume_run\({re.escape(repr(str(out)))}\) continues it\.$"
    _crash_after(monkeypatch, 1, KeyboardInterrupt)  # fit's Ctrl-C: saved as it was
    with pytest.warns(tm.RunInterruptedWarning, match=rf"^the run in {re.escape(str(out))} was "
                      rf"interrupted after 1 epoch \(\d+ iterations\){go_on}") as said:
        assert tm.train_run("digits", out=out, **SETTINGS).interrupted
    assert said[0].filename == __file__
    monkeypatch.undo()
    _crash_after(monkeypatch, 3, KeyboardInterrupt)
    with pytest.warns(tm.RunInterruptedWarning, match=r"after 3 epochs \(\d+ iterations\)" + go_on):
        assert tm.resume_run(out).interrupted
    monkeypatch.undo()
    _crash_after(monkeypatch, 4, KeyboardInterrupt)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert main(["torch", "train", "--resume", str(out), "--threads", "1", "--no-plots",
                     "--no-progress"]) == 130
    assert not [w for w in shown if issubclass(w.category, tm.RunInterruptedWarning)]
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error", tm.RunInterruptedWarning)
        assert not tm.resume_run(out).interrupted


def test_a_run_stopped_by_ctrl_c_that_diverges_once_resumed_leaves_its_folder_to_a_new_run(
        tmp_path, monkeypatch):
    """Stopped by Ctrl-C (metrics.json "interrupted", model files), then resumed into a NaN: the
    new run that the error offers in the same folder was refused, pointed to --resume, which
    refuses a diverged run."""
    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "run"
    _crash_after(monkeypatch, 1, KeyboardInterrupt)  # fit's Ctrl-C: saved as it was
    assert tm.train_run("digits", out=out, **SETTINGS).interrupted
    monkeypatch.undo()
    assert json.loads((out / "metrics.json").read_text())["status"] == "interrupted"
    _crash_after(monkeypatch, 3, TrainingDivergedError)
    with pytest.raises(TrainingDivergedError, match="with the same out if you like"):
        tm.resume_run(out)
    monkeypatch.undo()
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == ["config.json"]
    result = tm.train_run("digits", out=out, **{**SETTINGS, "epochs": 1})
    assert result.metrics["status"] == "completed"


def test_a_diverged_run_whose_model_cannot_be_removed_still_records_it(
        tmp_path, monkeypatch, refuse_unlink):
    """A stopped run's model.pt that cannot be removed as the resumed run diverges: the user
    saw a PermissionError instead of the divergence, and config.json did not record it. Now
    the divergence is recorded whatever is left, and the line does not offer the same folder,
    which a new run refuses while model.pt is there."""

    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "run"
    _crash_after(monkeypatch, 1, KeyboardInterrupt)  # fit's Ctrl-C: saved as it was
    with pytest.warns(tm.RunInterruptedWarning):
        assert tm.train_run("digits", out=out, **SETTINGS).interrupted
    monkeypatch.undo()
    refuse_unlink(lambda path: path.name == "model.pt")
    _crash_after(monkeypatch, 3, TrainingDivergedError)
    with pytest.raises(TrainingDivergedError) as caught:
        tm.resume_run(out)
    monkeypatch.undo()
    assert str(caught.value).endswith(
        "Resuming this run would repeat it; start a new run with other settings, with another "
        f"out, or with this one once you remove model.pt from {out}.")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["config.json", "model.pt"]  # the stop's other files gone, metrics.json first
    assert "stopped here" in json.loads((out / "config.json").read_text())["diverged"]["error"]
    # --resume's refusal offers the same as the divergence did, not "the same out"
    with pytest.raises(ValueError, match=re.escape(
            f"the run in {out} stopped when its loss diverged; resuming would repeat it: start a "
            "new run with other settings (a lower lr, say), with another out, or with this one "
            "once you remove model.pt from it.")):
        tm.resume_run(out)
    # as the line says, not this folder as it is (a new run there pointed to --resume, which
    # refuses a diverged run)
    with pytest.raises(ValueError, match=re.escape(
            f"{out} holds a run whose loss diverged, beside files a new run there would not "
            "replace (model.pt); remove them, or choose another out.")):
        tm.train_run("digits", out=out, **{**SETTINGS, "epochs": 1})
    (out / "model.pt").unlink()
    assert tm.train_run("digits", out=out, **{**SETTINGS, "epochs": 1}).metrics["status"] == \
        "completed"


def test_a_stopped_run_that_diverges_once_resumed_through_the_cli_says_so_everywhere(
        tmp_path, monkeypatch, capsys, no_model_said):
    """The command-line counterpart of the test above, as mlplab train's
    (test_cli_train.py): after the divergence the folder holds config.json alone, which records
    it (a PyTorch run drops its checkpoint, unlike mlplab train's, which keeps its last good
    epoch's: docs/pytorch.md), and runs, --plot, evaluate, predict, --resume and a new run with
    the same --out each say so, none of them with the stop's files."""

    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "run"
    args = ["torch", "train", "--dataset", "digits", "--hidden", "32", "--epochs", "3",
            "--threads", "1", "--no-progress"]
    _crash_after(monkeypatch, 1, KeyboardInterrupt)  # fit's Ctrl-C: saved as it was
    assert main([*args, "--out", str(out)]) == 130
    assert {"model.pt", "model.npz", "history.csv", "loss.png", "checkpoint.pt"} < \
        {p.name for p in out.iterdir()}
    monkeypatch.undo()
    _crash_after(monkeypatch, 2, TrainingDivergedError)
    capsys.readouterr()
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    assert "Resuming this run would repeat it; start a new run with other settings, with the " \
        "same --out if you like." in capsys.readouterr().err
    monkeypatch.undo()
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == ["config.json"]
    assert "diverged" in json.loads((out / "config.json").read_text())

    assert main(["runs", str(tmp_path), "--plot", str(tmp_path / "runs.png")]) == 0
    listed = capsys.readouterr()
    row = listed.out.splitlines()[1].split()
    # no epoch kept: "-", where "?/3" read as a count unknown
    assert row[:2] == [str(out), "diverged"] and row[-6:] == ["-"] * 6, row  # epochs, figures
    assert "--plot: the run listed diverged and kept no finished epoch to draw" in listed.err
    no_model = (f"{out} has no model.npz; its loss diverged, so it saved no model; start a new "
                "run with other settings (a lower --lr, say), with the same --out if you like.")
    no_model_said(out, no_model)
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    assert f"the run in {out} stopped when its loss diverged; resuming would repeat it" in \
        capsys.readouterr().err
    assert main([*args, "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"


def test_a_diverged_run_that_left_its_model_says_the_same_where_next_everywhere(
        tmp_path, monkeypatch, capsys, no_model_said, refuse_unlink):
    """A diverged run beside a model.pt it could not remove: --resume's refusal and evaluate's
    and predict's "no model.npz" offered "the same --out if you like", which a new run refuses
    while model.pt is there; they now offer what the diverging command does."""

    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "run"
    args = ["torch", "train", "--dataset", "digits", "--hidden", "32", "--epochs", "3",
            "--threads", "1", "--no-progress"]
    _crash_after(monkeypatch, 1, KeyboardInterrupt)  # fit's Ctrl-C: saved as it was
    assert main([*args, "--out", str(out)]) == 130
    monkeypatch.undo()
    refuse_unlink(lambda path: path.name == "model.pt")
    _crash_after(monkeypatch, 2, TrainingDivergedError)
    capsys.readouterr()
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    monkeypatch.undo()
    where = f"with another --out, or with this one once you remove model.pt from {out}."
    assert capsys.readouterr().err.rstrip().endswith(
        f"Resuming this run would repeat it; start a new run with other settings, {where}")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["config.json", "model.pt"]
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    # (which name the folder first: it is not named again)
    named = where.replace(f"from {out}.", "from it.")
    assert capsys.readouterr().err.strip() == (
        f"mlplab torch train: error: the run in {out} stopped when its loss diverged; resuming "
        f"would repeat it: start a new run with other settings (a lower --lr, say), {named}")
    no_model = (f"{out} has no model.npz; its loss diverged, so it saved no model; start a new "
                f"run with other settings (a lower --lr, say), {named}")
    no_model_said(out, no_model)
    # and what they offer is so: this folder once model.pt is gone
    (out / "model.pt").unlink()
    assert main([*args, "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"


def test_the_resume_command_of_a_folder_with_a_space_is_quoted(tmp_path, monkeypatch, capsys):
    """The --resume commands that the refusals of a stopped run print can be pasted: a folder
    whose name has a space was printed bare (``--resume /tmp/my run``, two words), where the
    depth study's and the Ctrl-C line's were quoted."""
    from mlplab._text import shell_command

    out = _stopped_run(tmp_path / "my run", monkeypatch)
    quoted = shell_command(["mlplab", "torch", "train", "--resume", str(out)])
    assert quoted.endswith(f"'{out}'") or quoted.endswith(f'"{out}"')
    assert main(["torch", "train", "--out", str(out), "--epochs", "1", "--no-progress"]) == 1
    # (with the --no-plots, plots=False, that the run was started with)
    assert f"continue it with {quoted} --no-plots, or choose another --out" in \
        capsys.readouterr().err
    (out / "checkpoint.pt").write_bytes(b"junk")
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    assert f"and {quoted} --no-plots trains the run again from its start." in \
        capsys.readouterr().err


@pytest.mark.parametrize("field, value, message", [
    ("device", "gpu", 'device is "gpu", not cpu, cuda, cuda:N or auto; the file was edited or '
                      "damaged: put back the value it had, or give --device."),
    ("threads", 0, "threads is 0, not a positive count of at most 1024; the file was edited or "
                   "damaged: put back the value it had, or give --threads."),
    # (PyTorch's thread pool ended the process with a segmentation fault)
    ("threads", 100000, "threads is 100000, not a positive count of at most 1024; the file was "
                        "edited or damaged: put back the value it had, or give --threads."),
])
def test_a_damaged_recorded_device_or_thread_count_names_the_file(uninterrupted, tmp_path,
                                                                   monkeypatch, capsys, field,
                                                                   value, message):
    """A device or thread count edited in config.json was blamed on a --device or --threads the
    user never typed ("device must be ...; got 'gpu'")."""
    out = _stopped_run(tmp_path / "run", monkeypatch, eval_test=True)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, field: value}))
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    assert capsys.readouterr().err == \
        f"mlplab torch train: error: {out / 'config.json'}: {message}\n"


def test_a_run_started_without_threads_resumes(tmp_path, monkeypatch, capsys):
    """A run started without --threads records threads null (PyTorch's own count), and its
    resume, the command the Ctrl-C line prints, was refused: "config.json: threads is null, not
    a positive count of at most 1024; the file was edited or damaged"."""
    out = _stopped_run(tmp_path / "run", monkeypatch, threads=None)
    assert json.loads((out / "config.json").read_text())["threads"] is None
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 0
    assert "threads is null" not in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"


def test_seeding_leaves_the_gpus_random_state_alone(monkeypatch):
    """build_model and fit seeded with torch.manual_seed, which also reseeds every GPU's
    generator, outside what their fork puts back: a notebook's own GPU random stream was reset
    to the seed. They seed the CPU generator alone (and, on a GPU, that GPU inside the fork)."""
    from mlplab.torch_mlp import build_model, fit

    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda s: calls.append(("all", s)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda s: calls.append(("one", s)))
    model = build_model(6, [4], 3, seed=123)
    X, y = torch.randn(20, 6), torch.arange(20) % 3
    fit(model, X, y, epochs=1, batch_size=10, seed=7, device="cpu", progress=False)
    assert calls == []
    # the same weights as before the change: torch.manual_seed's CPU part
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        reference = torch.nn.Linear(6, 4)
    assert torch.equal(build_model(6, [4], 3, seed=123, init="default").layers[0].weight,
                       reference.weight)


def test_resume_of_a_file_asks_for_a_run_folder_in_the_callers_spelling(tmp_path, capsys):
    """A file passed as the run to resume: the command is told to pass a folder written by
    mlplab torch train, a Python caller one written by mlplab.torch_mlp.train_run."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(FileNotFoundError,
                       match=r"pass a run folder written by mlplab\.torch_mlp\.train_run\.$"):
        tm.resume_run(notes)
    assert main(["torch", "train", "--resume", str(notes), "--no-progress"]) == 1
    assert capsys.readouterr().err.rstrip().endswith(
        "pass a run folder written by mlplab torch train.")


def test_a_divergence_record_that_cannot_be_written_is_said_with_the_divergence(
        tmp_path, monkeypatch, disk_full_at, capsys):
    """A run whose loss diverged records it in config.json: a write that failed (a full disk)
    ended the command with that error alone ("runs/x/config.json: No space left on device"),
    the divergence unsaid, while the run, its checkpoint dropped and no record written, read as
    unfinished and --resume trained it into the same NaN. The line now says the divergence,
    the record's file, the cause and what that leaves."""
    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "run"
    _crash_after(monkeypatch, 2, TrainingDivergedError)
    disk_full_at("config.json", holding='"diverged"')
    assert main(["torch", "train", "--dataset", "digits", "--hidden", "16", "--epochs", "3",
                 "--threads", "1", "--no-progress", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mlplab torch train: error: stopped here The divergence could not be recorded in "
        f"{out / 'config.json'} (No space left on device), so the run reads as unfinished, and "
        "resuming it would repeat the divergence. Start a new run with other settings, with "
        "the same --out if you like.")
    assert "diverged" not in json.loads((out / "config.json").read_text())  # as it says
    # and a new run takes the folder, as the line offers
    monkeypatch.undo()
    assert tm.train_run("digits", out=out, **{**SETTINGS, "epochs": 1}).metrics["status"] == \
        "completed"


def test_a_stopped_runs_file_that_cannot_be_removed_does_not_keep_its_resume_from_finishing(
        tmp_path, monkeypatch, capsys, refuse_unlink):
    """As mlplab train's (test_runs.py): a stop's file that the resumed run could not remove
    ended it unsaved, advising the --resume that failed on it again; it is passed over, the
    run writes its files, and one line names the stale file left and says to remove it."""
    from mlplab.runs import StaleFileWarning

    out = tmp_path / "run"
    _crash_after(monkeypatch, 1, KeyboardInterrupt)  # fit's Ctrl-C: saved as it was
    with pytest.warns(tm.RunInterruptedWarning):
        assert tm.train_run("digits", out=out, **{**SETTINGS, "plots": True}).interrupted
    monkeypatch.undo()
    assert (out / "loss.png").is_file()
    refuse_unlink(lambda path: path.name in ("model.pt", "loss.png"))
    with pytest.warns(StaleFileWarning) as record:
        assert main(["torch", "train", "--resume", str(out), "--no-plots",
                     "--no-progress"]) == 0
    monkeypatch.undo()
    assert "error" not in capsys.readouterr().err
    # model.pt, written again, replaced the stop's: only the figure is left, and said
    assert [str(w.message) for w in record] == [
        f"the run finished and its results are in {out}, but its stale loss.png could not be "
        f"removed (Permission denied); remove {out / 'loss.png'} by hand."]
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    assert main(["torch", "train", "--resume", str(out)]) == 1  # nothing left to resume
    assert "has already completed" in capsys.readouterr().err


def test_a_stopped_runs_file_that_cannot_be_written_over_is_named_before_the_resume(
        tmp_path, monkeypatch, capsys, refuse_unlink, refuse_replace):
    """As mlplab train's (test_runs.py): a stop's model.pt that the resumed run can neither
    remove nor replace ended it with the --resume advice that failed on it again; the message
    names the file and says to remove it first, and that --resume then finishes the run."""
    out = tmp_path / "run"
    _crash_after(monkeypatch, 1, KeyboardInterrupt)  # fit's Ctrl-C: saved as it was
    with pytest.warns(tm.RunInterruptedWarning):
        assert tm.train_run("digits", out=out, **SETTINGS).interrupted
    monkeypatch.undo()
    stop_model = (out / "model.pt").read_bytes()
    refuse_unlink(lambda path: path == out / "model.pt")
    refuse_replace(lambda path: path == out / "model.pt")
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mlplab torch train: error: cannot write {out / 'model.pt'}: the earlier stop's "
        "model.pt there could be neither replaced nor removed (Operation not permitted); the "
        f"run was not saved, but its last checkpoint is kept. Remove {out / 'model.pt'} (or "
        f"have its owner remove it), then continue with: mlplab torch train --resume {out}")
    assert (out / "model.pt").read_bytes() == stop_model
    monkeypatch.undo()  # the file made removable: the advised --resume finishes the run
    assert main(["torch", "train", "--resume", str(out), "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    assert (out / "model.pt").read_bytes() != stop_model
