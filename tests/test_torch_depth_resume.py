"""Resuming a depth study (``mlplab torch depth --resume``, ``torch_mlp.resume_depth_run``): a
study stopped by a crash, a kill or Ctrl-C keeps its finished networks, goes on with the one in
training from its last epoch's checkpoint, and ends with the table, histories and weights of a
study never stopped."""

import csv
import io
import json
import os
import re

import pytest

from mlplab.cli import main

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install 'mlplab[torch]')")
tm = pytest.importorskip("mlplab.torch_mlp")
from mlplab.torch_mlp import depth as torch_depth  # noqa: E402  (after the importorskip)

pytestmark = pytest.mark.usefixtures("keep_torch_threads")  # a study sets threads=1

# two initialisations, so that a stop in the second group resumes after a whole first group
# (its best network's test accuracy from a saved network); dropout and batch norm, so that the
# dropout generator and the running statistics must carry over
SETTINGS = {"layers": [2, 3], "hidden_size": 16, "init": "both", "epochs": 3,
            "batch_size": 128, "dropout": 0.2, "batchnorm": True, "lr": 3e-3, "threads": 1}
ARGV = ["--layers", "2,3", "--hidden-size", "16", "--init", "both", "--epochs", "3",
        "--batch-size", "128", "--dropout", "0.2", "--batchnorm", "--lr", "3e-3", "--threads",
        "1", "--no-progress"]
BATCHES = 12  # an epoch of the digits' 1,437 training rows in batches of 128


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("depth-resume") / "whole"
    tm.depth_run("digits", out=out, **SETTINGS)
    return out


def _crash_in(monkeypatch, network, epochs_done, error=RuntimeError):
    """Make the study's ``network``-th network (from 1) raise ``error`` once ``epochs_done`` of
    its epochs and their checkpoint are written, as a crash or a kill would stop it there."""
    fit, calls = torch_depth.fit, []

    def crashing(*args, on_checkpoint=None, **kwargs):
        calls.append(1)

        def save(state):
            on_checkpoint(state)
            if len(calls) == network and state["epoch"] == epochs_done:
                raise error("stopped here")
        return fit(*args, on_checkpoint=save if on_checkpoint else None, **kwargs)

    monkeypatch.setattr(torch_depth, "fit", crashing)


def _count_steps(monkeypatch):
    """The list that gets an item for every optimiser step from now on."""
    step, calls = torch.optim.Adam.step, []

    def counted(self, *args, **kwargs):
        calls.append(1)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    return calls


def _without_seconds(table_csv):
    return [{k: v for k, v in row.items() if k != "seconds"}
            for row in csv.DictReader(io.StringIO(table_csv))]


def _same_as(out, whole):
    """The study in ``out`` ended as the uninterrupted one in ``whole``, but for the times."""
    read = lambda path: json.loads(path.read_text())  # noqa: E731
    ours, theirs = read(out / "depth.json"), read(whole / "depth.json")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa
    # rows, per-epoch accuracies and mean losses, to the last bit
    assert drop(ours.pop("results")) == drop(theirs.pop("results"))
    for summary in (ours, theirs):
        del summary["seconds"], summary["environment"]
    assert ours == theirs
    assert _without_seconds((out / "depth.csv").read_text()) == \
        _without_seconds((whole / "depth.csv").read_text())
    names = sorted(p.name for p in (whole / "networks").iterdir())
    assert names == ["default-2.pt", "default-3.pt", "exercise-2.pt", "exercise-3.pt"]
    assert sorted(p.name for p in (out / "networks").iterdir()) == names
    for name in names:
        a, b = (torch.load(d / "networks" / name, weights_only=True) for d in (out, whole))
        assert a["state_dict"].keys() == b["state_dict"].keys()
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
        ha, hb = a["extra"]["history"], b["extra"]["history"]
        assert ha.pop("epoch_seconds") != [] and hb.pop("epoch_seconds") != []
        assert ha == hb  # the loss of every iteration
    assert not (out / "depth-checkpoint.pt").exists() and not (out / ".lock").exists()


def test_a_study_crashed_in_a_middle_depth_resumes_to_the_end_of_one_never_stopped(
        whole, tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    _crash_in(monkeypatch, 2, 2)  # exercise init, 3 layers, after its second epoch
    with pytest.raises(RuntimeError, match="stopped here"):
        tm.depth_run("digits", out=out, **SETTINGS)
    monkeypatch.undo()
    # what a crash leaves: the settings, the finished network and the last epoch's checkpoint
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "depth-checkpoint.pt", "depth-config.json", "networks", "networks/exercise-2.pt"]
    state, extra = tm.load_torch_checkpoint(out / "depth-checkpoint.pt")
    assert (extra["init"], extra["depth"], state["epoch"]) == ("exercise", 3, 2)
    # a new study into it is pointed to --resume, a run of torch train refused
    with pytest.raises(ValueError, match=f"{out} holds a depth study that stopped before its "
                                         f"end; continue it with resume_depth_run"):
        tm.depth_run("digits", out=out, **SETTINGS)
    with pytest.raises(ValueError, match="is a depth study written by mlplab torch depth"):
        tm.train_run("digits", out=out, epochs=1, threads=1)

    steps = _count_steps(monkeypatch)
    result = tm.resume_depth_run(out, announce=True)
    monkeypatch.undo()
    # only what was left: the third epoch of the network stopped, and the two of default init
    assert len(steps) == (1 + 3 + 3) * BATCHES
    said = capsys.readouterr().err
    assert "1 of 4 networks done, exercise init, 3 layers after epoch 2 of 3" in said
    assert [(r.init, r.depth) for r in result.results] == [
        ("exercise", 2), ("exercise", 3), ("default", 2), ("default", 3)]
    _same_as(out, whole)
    with pytest.raises(ValueError, match="has already completed; nothing to resume"):
        tm.resume_depth_run(out)


def test_ctrl_c_mid_epoch_then_resume_from_the_command_line(whole, tmp_path, monkeypatch,
                                                              capsys):
    """Ctrl-C in the middle of the second epoch of the third network (default init, 2 layers):
    exit 130 with the command to go on; --resume keeps the first group and redoes that epoch."""
    out = tmp_path / "study"
    step, calls = torch.optim.Adam.step, []

    def step_then_ctrl_c(self, *args, **kwargs):
        loss = step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2 * 3 * BATCHES + BATCHES + 5:  # two networks, then 1 epoch and 5
            raise KeyboardInterrupt
        return loss

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_ctrl_c)
    assert main(["torch", "depth", *ARGV, "--out", str(out)]) == 130
    monkeypatch.undo()
    captured = capsys.readouterr()
    # how to go on is the last advice (as mlplab train's and torch train's): no table, nothing
    # to do with networks the study has not finished
    assert captured.err.splitlines()[-2:] == [
        "interrupted; saved: the study's finished networks, and a checkpoint of its last whole "
        "epoch; --resume goes on from the end of that epoch. Continue with: mlplab torch depth "
        f"--resume {out} --threads 1", "mlplab: interrupted"], captured.err
    assert captured.out == ""
    assert not (out / "depth.json").exists()
    state, extra = tm.load_torch_checkpoint(out / "depth-checkpoint.pt")
    assert (extra["init"], extra["depth"], state["epoch"]) == ("default", 2, 1)

    # the study's settings cannot change
    assert main(["torch", "depth", "--resume", str(out), "--epochs", "5", "--layers", "2",
                 "--hidden-size", "8", "--out", str(tmp_path / "x")]) == 2
    assert "--resume continues a study exactly as it was configured; drop --epochs, " \
           "--layers, --hidden-size, --out." in capsys.readouterr().err
    # nor is it started again by the same command
    assert main(["torch", "depth", *ARGV, "--out", str(out)]) == 1
    assert f"continue it with mlplab torch depth --resume {out}, or choose another --out" in \
        capsys.readouterr().err
    steps = _count_steps(monkeypatch)
    assert main(["torch", "depth", "--resume", str(out), "--threads", "1", "--json",
                 "--no-progress"]) == 0
    monkeypatch.undo()
    assert len(steps) == (2 + 3) * BATCHES  # the epoch stopped in is trained again
    captured = capsys.readouterr()
    assert "2 of 4 networks done, default init, 2 layers after epoch 1 of 3" in captured.err
    assert [r["depth"] for r in json.loads(captured.out)["results"]] == [2, 3, 2, 3]
    _same_as(out, whole)


@pytest.fixture
def stopped(tmp_path, monkeypatch):
    """A study stopped by a crash in its second network, after its first epoch."""
    out = tmp_path / "study"
    _crash_in(monkeypatch, 2, 1)
    with pytest.raises(RuntimeError):
        tm.depth_run("digits", out=out, **{**SETTINGS, "init": "exercise"})
    monkeypatch.undo()
    return out


def test_a_study_stopped_while_writing_its_table_trains_nothing_again(tmp_path, monkeypatch):
    from mlplab.torch_mlp import runs as torch_runs

    out, settings = tmp_path / "study", {**SETTINGS, "layers": [2], "init": "exercise"}

    def no_figure(results):
        raise OSError("No space left on device")

    monkeypatch.setattr(torch_runs, "plot_depth", no_figure)
    with pytest.raises(OSError):
        tm.depth_run("digits", out=out, **settings)
    monkeypatch.undo()
    assert not (out / "depth.json").exists() and (out / "networks" / "exercise-2.pt").is_file()
    steps = _count_steps(monkeypatch)
    result = tm.resume_depth_run(out)
    assert steps == [] and (out / "depth.json").is_file()
    assert result.results[0].best and result.results[0].test_acc is not None
    expected = tm.depth_run("digits", out=tmp_path / "whole", **settings).results[0]
    assert (result.results[0].val_acc, result.results[0].test_acc) == \
        (expected.val_acc, expected.test_acc)


def test_resume_refuses_what_is_not_a_stopped_study(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"no depth study to resume in .*nothing: no "
                                                r"such folder, so nothing was saved"):
        tm.resume_depth_run(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match=r"nothing was saved in it \(stopped as it began, "
                                                r"before it wrote depth-config.json\); start it "
                                                r"anew with mlplab.torch_mlp.depth_run"):
        tm.resume_depth_run(tmp_path)  # empty: killed as it began
    assert main(["torch", "depth", "--resume", str(tmp_path)]) == 1
    assert f"(--out {tmp_path}), without --resume." in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"is not a depth study's folder \(no "
                                         r"depth-config.json\)"):
        tm.resume_depth_run(tmp_path)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ValueError, match="is a tuning folder written by mlplab tune, not a "
                                         "depth study"):
        tm.resume_depth_run(tmp_path)
    run = tmp_path / "run"
    tm.train_run("digits", out=run, hidden=[8], epochs=1, threads=1, plots=False)
    assert main(["torch", "depth", "--resume", str(run)]) == 1
    assert "is a run folder, not a depth study; resume a run of mlplab torch train with " \
           "mlplab torch train --resume" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"resume a run of mlplab torch train with "
                                         r"mlplab\.torch_mlp\.resume_run\(RUN\), one of mlplab "
                                         r"train with mlplab\.runs\.resume_run\(RUN\)\.$"):
        tm.resume_depth_run(run)  # from Python, the functions
    # a study written before studies checkpointed: finished all the same
    (tmp_path / "depth.json").write_text("{}")
    assert main(["torch", "depth", "--resume", str(tmp_path)]) == 1
    assert f"the depth study in {tmp_path} has already completed; nothing to resume: start a " \
           "new depth study with another --out." in capsys.readouterr().err


def test_the_three_commands_refuse_to_resume_a_finished_run_in_the_same_words(tmp_path,
                                                                               capsys):
    """mlplab train and torch train said "has already completed; nothing to resume (start a new
    run with a different --out)", torch depth "has finished; nothing to resume (start a new one
    with another --out)": one line now, what is wrong and what to do, the same for the three
    (and their Python functions, which name out=)."""
    from mlplab.runs import resume_run

    runs = {"numpy": tmp_path / "numpy", "torch": tmp_path / "torch",
            "depth": tmp_path / "study"}
    assert main(["train", "--hidden", "8", "--epochs", "1", "--quiet", "--no-plots",
                 "--out", str(runs["numpy"])]) == 0
    tm.train_run("digits", out=runs["torch"], hidden=[8], epochs=1, threads=1, plots=False)
    tm.depth_run("digits", out=runs["depth"], layers=[2], hidden_size=8, epochs=1, threads=1)
    capsys.readouterr()
    for command, what, folder in [("train", "run", runs["numpy"]),
                                  ("torch train", "run", runs["torch"]),
                                  ("torch depth", "depth study", runs["depth"])]:
        assert main([*command.split(), "--resume", str(folder)]) == 1
        assert capsys.readouterr().err == (
            f"mlplab {command}: error: the {what} in {folder} has already completed; nothing "
            f"to resume: start a new {what} with another --out.\n")
    for resume, what, folder in [(resume_run, "run", runs["numpy"]),
                                 (tm.resume_run, "run", runs["torch"]),
                                 (tm.resume_depth_run, "depth study", runs["depth"])]:
        with pytest.raises(ValueError) as refused:
            resume(folder)
        assert str(refused.value) == f"the {what} in {folder} has already completed; nothing " \
                                     f"to resume: start a new {what} with another out."


@pytest.mark.parametrize("damage,message", [
    (lambda out: (out / "depth-config.json").write_text("{"), "is not valid JSON"),
    (lambda out: _edit_config(out, layers="2,3"),
     'layers is "2,3", not a list of different depths; the file was edited or damaged: put '
     "back the value mlplab torch depth wrote"),
    (lambda out: _edit_config(out, epochs=0),
     "epochs must be an integer >= 1; got 0. The file was edited or damaged"),
    (lambda out: (out / "depth-checkpoint.pt").write_bytes(b"junk"),
     "depth-checkpoint.pt is not a readable PyTorch checkpoint"),
    (lambda out: (out / "networks" / "exercise-2.pt").write_bytes(b"junk"),
     "exercise-2.pt is not a readable PyTorch model file"),
    (lambda out: _edit_config(out, hidden_size=8),
     r"exercise-2.pt was trained with hidden_size 16, but .*depth-config.json now says "
     r"hidden_size 8"),
    # the same edit, where the network's record of its settings predates the width in it
    (lambda out: (_edit_config(out, hidden_size=8),
                  _damage_file(out / "networks" / "exercise-2.pt",
                               lambda p: p["extra"]["settings"].pop("hidden_size"))),
     r"exercise-2.pt holds another network \(PyTorch MLP 64-16-10"),
    # splits whose parts are not what depth_run records: Python's words ("'str' object has no
    # attribute 'get'"), or the data blamed for the file's damage
    (lambda out: _edit_config(out, splits={"split_sha1": "x"}),
     r"depth-config.json: splits is \{\"split_sha1\": \"x\"\}, not the record of the "
     "data's splits; the file was edited or damaged"),
    (lambda out: _edit_config(out, splits={"train_size": "12"}),
     r"depth-config.json: splits is .*, not the record of the data's splits"),
])
def test_damaged_files_are_refused_in_one_line_naming_them(stopped, damage, message, capsys):
    damage(stopped)
    assert main(["torch", "depth", "--resume", str(stopped)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


def test_a_damaged_network_or_checkpoint_says_how_to_go_on(stopped):
    (stopped / "depth-checkpoint.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="delete .*depth-checkpoint.pt, and "
                                         r"resume_depth_run\(.*\) trains its network again"):
        tm.resume_depth_run(stopped)
    (stopped / "depth-checkpoint.pt").unlink()  # as told: that network trains from its start
    (stopped / "networks" / "exercise-2.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"else delete it, and resume_depth_run\(.*\) trains "
                                         "that network again"):
        tm.resume_depth_run(stopped)
    (stopped / "networks" / "exercise-2.pt").unlink()
    result = tm.resume_depth_run(stopped)
    assert [r.depth for r in result.results] == [2, 3] and (stopped / "depth.json").is_file()


def test_other_data_is_refused(stopped):
    from mlplab.data import load_dataset

    other = load_dataset("digits", seed=3)  # other validation and test rows
    with pytest.raises(ValueError, match="the val split of digits is not the one this study was "
                                         "trained with"):
        tm.resume_depth_run(stopped, data=other)
    assert not (stopped / "depth.json").exists()


def _edit_config(out, **values):
    path = out / "depth-config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


def _environment_warnings(caught):
    return [w for w in caught if "another environment" in str(w.message)]


def test_a_study_resumed_in_another_environment_says_so(stopped):
    """depth-config.json records what trains the study (PyTorch, device, threads, CPU, mlplab):
    resumed with another thread count, the study goes on with a warning naming it (its last
    bits may differ from an uninterrupted study's), and depth.json keeps the earlier
    environment. A study recorded before studies recorded it resumes without a word."""
    config_path = stopped / "depth-config.json"
    env = json.loads(config_path.read_text())["environment"]
    assert (env["torch"], env["device"], env["threads"]) == (torch.__version__, "cpu", 1)
    with pytest.warns(UserWarning) as caught:
        tm.resume_depth_run(stopped, threads=2)
    [warning] = _environment_warnings(caught)
    assert str(warning.message) == (
        f"{config_path} was written with another environment (threads 1 -> 2): the study "
        "continues correctly, but its results may differ from an uninterrupted study's in the "
        "last bits, which needs the same mlplab, PyTorch, device, thread count and CPU.")
    assert warning.filename == __file__
    summary = json.loads((stopped / "depth.json").read_text())
    assert summary["environment"]["threads"] == 2
    assert [e["threads"] for e in summary["earlier_environments"]] == [1]
    # the next resume compares with the environment that trained the study last
    config = json.loads(config_path.read_text())
    assert (config["environment"]["threads"], len(config["earlier_environments"])) == (2, 1)


def test_a_study_without_an_environment_record_resumes_without_a_word(stopped):
    import warnings

    path = stopped / "depth-config.json"  # as written before studies recorded it
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items()
                                if k != "environment"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tm.resume_depth_run(stopped, threads=2)
    assert _environment_warnings(caught) == []
    assert "earlier_environments" not in json.loads((stopped / "depth.json").read_text())


def test_a_diverged_study_is_not_resumed_and_its_folder_is_reused(tmp_path, monkeypatch,
                                                                  capsys):
    """A network whose loss becomes NaN would do so again on every resume: the study says which
    one, drops its checkpoint, and --resume refuses it without training; the same command, with
    other settings, takes the folder (as mlplab torch train takes a diverged run's), without
    the diverged study's networks."""
    from mlplab.trainer import TrainingDivergedError

    out, settings = tmp_path / "study", {**SETTINGS, "init": "exercise"}
    _crash_in(monkeypatch, 2, 2, TrainingDivergedError)  # 3 layers, after its second epoch
    with pytest.raises(TrainingDivergedError, match=r"^exercise init, 3 layers: stopped here "
                                                    r"Resuming this study would repeat it; start "
                                                    "a new study with other settings, with the "
                                                    "same out if you like.$"):
        tm.depth_run("digits", out=out, **settings)
    monkeypatch.undo()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "depth-config.json", "networks", "networks/exercise-2.pt"]
    steps = _count_steps(monkeypatch)
    assert main(["torch", "depth", "--resume", str(out)]) == 1
    assert f"the depth study in {out} stopped when the loss of its network of exercise init " \
           "and 3 layers diverged; resuming would repeat it: start a new study with other " \
           "settings (a lower --lr, say), with the same --out if you like." in \
        capsys.readouterr().err
    assert steps == []
    # the same command, with a lower learning rate: a new study, none of the old networks kept
    argv = [a if a != "3e-3" else "1e-3" for a in ARGV if a != "both"]
    argv[argv.index("--init") + 1:argv.index("--init") + 1] = ["exercise"]
    assert main(["torch", "depth", *argv, "--out", str(out)]) == 0
    monkeypatch.undo()
    assert len(steps) == 2 * 3 * BATCHES
    config = json.loads((out / "depth-config.json").read_text())
    assert config["lr"] == 1e-3 and "diverged" not in config
    summary = json.loads((out / "depth.json").read_text())
    assert [r["depth"] for r in summary["results"]] == [2, 3]
    assert sorted(p.name for p in (out / "networks").iterdir()) == ["exercise-2.pt",
                                                                    "exercise-3.pt"]


def test_a_network_of_a_diverged_study_that_cannot_be_removed_is_named(tmp_path, monkeypatch,
                                                                        capsys, refuse_unlink):
    """A new study taking a diverged study's folder removes its networks: one that could not be
    removed ended the new study with the bare PermissionError (and, from the command line, with
    "Continue with: mlplab torch depth --resume", which refuses a diverged study, as the
    networks removed before it read as progress saved). It is named in one line with what to
    do, before the new study writes anything, and the diverged study stays as it was."""

    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "study"
    _crash_in(monkeypatch, 3, 1, TrainingDivergedError)  # default init, 2 layers
    with pytest.raises(TrainingDivergedError):
        tm.depth_run("digits", out=out, **SETTINGS)
    monkeypatch.undo()
    assert sorted(p.name for p in (out / "networks").iterdir()) == ["exercise-2.pt",
                                                                    "exercise-3.pt"]
    diverged = (out / "depth-config.json").read_text()
    blocked = out / "networks" / "exercise-3.pt"
    refuse_unlink(lambda path: path == blocked)
    steps = _count_steps(monkeypatch)
    why = (f"cannot remove {blocked} (Permission denied) of the diverged depth study in {out}, "
           "which a new study there would take for its own; remove it, or choose another ")
    argv = [a if a != "both" else "exercise" for a in ARGV]
    argv[argv.index("--epochs") + 1] = "1"
    # (first: exercise-2.pt, removed before, was what read as progress saved)
    assert main(["torch", "depth", *argv, "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"mlplab torch depth: error: {why}--out."
    settings = {**SETTINGS, "init": "exercise", "epochs": 1}
    with pytest.raises(OSError, match=f"^{re.escape(why + 'out.')}$"):
        tm.depth_run("digits", out=out, **settings)
    assert steps == []
    assert (out / "depth-config.json").read_text() == diverged  # nothing of the new study
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "depth-config.json", "networks", "networks/exercise-3.pt"]
    # as the line says: once it is removed, the new study takes the folder
    monkeypatch.undo()
    blocked.unlink()
    assert main(["torch", "depth", *argv, "--out", str(out)]) == 0
    assert "diverged" not in json.loads((out / "depth-config.json").read_text())
    assert sorted(p.name for p in (out / "networks").iterdir()) == ["exercise-2.pt",
                                                                    "exercise-3.pt"]


def _digits_folder(folder, n=300):
    """The first ``n`` digits as a folder of PNG files, one sub-folder per class."""
    from PIL import Image

    from mlplab.data import load_dataset

    ds = load_dataset("digits")
    for i, (image, label) in enumerate(zip(ds.X_train[:n], ds.y_train[:n])):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(folder / str(label) / f"{i}.png")
    return folder


def test_a_study_whose_data_moved_resumes_with_data_dir(tmp_path, monkeypatch, capsys):
    """The images of a folder dataset moved since the study stopped: --resume says to give the
    new place with --data-dir, the images there are checked against the recorded splits, the
    configuration names the new place, and the study ends as one never stopped."""
    from mlplab.data.base import DatasetNotFoundError

    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))
    pics = _digits_folder(tmp_path / "pics")
    settings = {**SETTINGS, "init": "exercise", "batch_size": 32, "val_size": 40,
                "test_size": 40}
    whole = tm.depth_run(f"folder:{pics}", **settings)
    out = tmp_path / "study"
    _crash_in(monkeypatch, 2, 1)
    with pytest.raises(RuntimeError):
        tm.depth_run(f"folder:{pics}", out=out, **settings)
    monkeypatch.undo()
    moved = pics.rename(tmp_path / "moved")

    assert main(["torch", "depth", "--resume", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "--download" not in err
    assert f"give its new place: mlplab torch depth --resume {out} --data-dir DIR" in err
    with pytest.raises(DatasetNotFoundError, match="data_dir=DIR"):
        tm.resume_depth_run(out)
    # other images there (fewer of them) are refused, and the configuration keeps its place
    before = (out / "depth-config.json").read_text()
    other = _digits_folder(tmp_path / "other", 200)
    with pytest.raises(ValueError, match=r"has 120 images, but the study was trained with 220 "
                                         r".*: it is not the study.s data"):
        tm.resume_depth_run(out, data_dir=other)
    assert (out / "depth-config.json").read_text() == before

    assert main(["torch", "depth", "--resume", str(out), "--data-dir", str(moved),
                 "--no-progress", "--json"]) == 0
    assert json.loads((out / "depth-config.json").read_text())["dataset"] == \
        f"folder:{moved.resolve()}"
    rows = json.loads(capsys.readouterr().out)["results"]
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [drop(r) for r in rows] == [drop(r) for r in whole.summary["results"]]


def test_a_study_in_training_is_not_resumed_by_another_process(tmp_path, monkeypatch, capsys):
    """While a study trains (it holds its folder's lock), a resume of its folder, from Python
    or the command line, is refused before it touches a file, and so is a new study into it."""
    from mlplab.runs.lock import LOCK_FILE, RunInUseError, training_process

    out, seen = tmp_path / "study", {}
    fit = torch_depth.fit

    def looking(*args, on_checkpoint=None, **kwargs):
        def save(state):
            on_checkpoint(state)
            if seen or state["epoch"] != 1:
                return
            leftover = out / ".depth-checkpoint.pt.x1y2.pt"  # as a killed write would leave
            leftover.write_bytes(b"")
            with pytest.raises(RunInUseError) as refused:
                tm.resume_depth_run(out)
            seen["refused"], seen["holder"] = str(refused.value), training_process(out)
            seen["cli"], seen["err"] = main(["torch", "depth", "--resume", str(out)]), \
                capsys.readouterr().err
            with pytest.raises(ValueError) as taken:
                tm.depth_run("digits", out=out, **SETTINGS)
            seen["taken"], seen["kept"] = str(taken.value), leftover.exists()
            leftover.unlink()
        return fit(*args, on_checkpoint=save, **kwargs)

    monkeypatch.setattr(torch_depth, "fit", looking)
    result = tm.depth_run("digits", out=out, **{**SETTINGS, "init": "exercise"})
    monkeypatch.undo()
    holder = seen["holder"]
    assert holder.startswith(f"process {os.getpid()} on ")
    assert seen["refused"] == f"{out} is being trained by another process ({holder}); wait " \
                              "for it to end, or stop it (Ctrl-C saves a checkpoint) and " \
                              "resume the study then."
    assert seen["cli"] == 1 and seen["refused"] in seen["err"]
    assert seen["taken"].startswith(f"{out} already holds a depth study, which another "
                                    "process is training now")
    assert seen["kept"]  # refused before removing what looked like a killed write's leftover
    # the study itself went on undisturbed to its end
    assert [r.depth for r in result.results] == [2, 3] and (out / "depth.json").is_file()
    assert training_process(out) is None and not (out / LOCK_FILE).exists()


def test_evaluate_and_runs_on_a_study_folder_say_what_it_is(stopped, capsys):
    """mlplab evaluate and mlplab runs, pointed at a depth study's folder, stopped or finished,
    say it is one and what to do (evaluate told a stopped study's user to pass a run folder of
    mlplab train; runs said only "no run folders")."""
    assert main(["evaluate", str(stopped)]) == 1
    err = capsys.readouterr().err
    assert f"it is a depth study written by mlplab torch depth that stopped before its end: " \
           f"continue it with mlplab torch depth --resume {stopped}" in err
    assert "mlplab train" not in err
    assert main(["runs", str(stopped)]) == 0
    err = capsys.readouterr().err
    assert f"no run folders under {stopped}" in err and \
        f"mlplab torch depth --resume {stopped}" in err
    tm.resume_depth_run(stopped)
    capsys.readouterr()
    assert main(["runs", str(stopped)]) == 0
    assert "it is a depth study written by mlplab torch depth, which keeps no run folder: its " \
           "numbers are in depth.md" in capsys.readouterr().err


def test_resuming_a_study_as_a_run_names_the_study_s_resume(stopped, capsys):
    """mlplab torch train --resume and mlplab train --resume of a depth study's folder said only
    that it is not a run folder."""
    for command in (["torch", "train"], ["train"]):
        assert main([*command, "--resume", str(stopped)]) == 1
        assert f"{stopped} is not a run folder (no config.json); it is a depth study written by " \
               f"mlplab torch depth that stopped before its end: continue it with mlplab torch " \
               f"depth --resume {stopped}." in capsys.readouterr().err


def test_ctrl_c_in_the_first_epoch_says_resume_starts_again(tmp_path, monkeypatch, capsys):
    """Stopped before its first epoch ended, a study keeps nothing: the message said its networks
    and checkpoint were kept."""
    out = tmp_path / "study"

    def ctrl_c(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.optim.Adam, "step", ctrl_c)
    assert main(["torch", "depth", *ARGV, "--out", str(out)]) == 130
    assert "interrupted; saved: nothing trained (the study stopped in its first epoch); --resume " \
           "starts it again from its first epoch. Continue with: mlplab torch depth --resume " \
           f"{out} --threads 1" in \
        capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["depth-config.json"]


@pytest.mark.parametrize("steps,saved,goes_on,files", [
    # its first network past its first epoch: a checkpoint, no finished network
    (BATCHES + 2, "a checkpoint of the study's last whole epoch",
     "goes on from the end of that epoch", ["depth-checkpoint.pt", "depth-config.json"]),
    # its second network in its first epoch: the first is saved, and its checkpoint removed
    (3 * BATCHES + 2, "the study's finished networks, before a checkpoint of the next one",
     "trains the next one from its first epoch", ["depth-config.json", "networks"]),
], ids=["checkpoint-only", "networks-only"])
def test_ctrl_c_says_what_the_study_saved(tmp_path, monkeypatch, capsys, steps, saved, goes_on,
                                          files):
    """The stop's line names what is on disk: it said "its networks, and its last whole epoch's
    checkpoint" whenever the study had either, also of a study with no network finished or with
    no checkpoint of the network in training."""
    out = tmp_path / "study"
    step, calls = torch.optim.Adam.step, []

    def step_then_ctrl_c(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == steps:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_ctrl_c)
    assert main(["torch", "depth", *ARGV, "--out", str(out)]) == 130
    assert capsys.readouterr().err.splitlines()[-2] == \
        f"interrupted; saved: {saved}; --resume {goes_on}. Continue with: mlplab torch depth " \
        f"--resume {out} --threads 1"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == files


def test_ctrl_c_after_the_last_network_says_resume_only_writes_the_table(tmp_path, monkeypatch,
                                                                         capsys):
    """Stopped after its last network was saved but before its table was written, a study said
    "--resume trains the next one from its first epoch": there is no next one, and the resume
    only writes the table."""
    from mlplab.torch_mlp import runs as torch_runs

    out = tmp_path / "study"
    argv = ["torch", "depth", *ARGV, "--layers", "2", "--init", "exercise", "--out", str(out)]

    def ctrl_c(results):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch_runs, "plot_depth", ctrl_c)  # as the table is written
    assert main(argv) == 130
    monkeypatch.undo()
    assert capsys.readouterr().err.splitlines()[-2] == \
        "interrupted; saved: every network of the study, before its table; --resume writes " \
        f"the table, training nothing. Continue with: mlplab torch depth --resume {out} " \
        "--threads 1"
    assert not (out / "depth.json").exists() and (out / "networks" / "exercise-2.pt").is_file()
    steps = _count_steps(monkeypatch)
    assert main(["torch", "depth", "--resume", str(out), "--no-progress"]) == 0
    assert steps == [] and (out / "depth.json").is_file()


def test_a_study_killed_after_saving_its_last_network_ends_without_a_checkpoint(tmp_path,
                                                                              monkeypatch):
    """Killed between saving its last network and removing that network's checkpoint, a study
    resumed to its end kept the stale depth-checkpoint.pt in its finished folder."""
    from mlplab.torch_mlp import runs as torch_runs

    out, settings = tmp_path / "study", {**SETTINGS, "layers": [2], "init": "exercise"}
    save = torch_runs.save_torch_model

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise RuntimeError("killed")

    monkeypatch.setattr(torch_runs, "save_torch_model", save_then_die)
    with pytest.raises(RuntimeError):
        tm.depth_run("digits", out=out, **settings)
    monkeypatch.undo()
    assert (out / "depth-checkpoint.pt").is_file()
    assert (out / "networks" / "exercise-2.pt").is_file()
    steps = _count_steps(monkeypatch)
    tm.resume_depth_run(out)
    assert steps == [] and (out / "depth.json").is_file()
    assert not (out / "depth-checkpoint.pt").exists()


def test_a_study_that_diverges_after_its_folder_went_does_not_make_it_again(
        tmp_path, diverge_after_removing, capsys):
    """The folder removed, then the loss diverged before the next checkpoint's check: the
    record of the diverged network made the folder again, with a depth-config.json alone. The
    line said to put the folder back and resume, which would only diverge again: it names the
    network that diverged and advises a new study instead."""
    from mlplab.runs.files import RunFolderGoneError

    out = tmp_path / "study"
    diverge_after_removing(torch_depth, out)
    with pytest.raises(RunFolderGoneError, match=r"study was removed or moved while the depth "
                                                 r"study trained \(its depth-config.json is "
                                                 r"gone\), .*; the loss of its network of "
                                                 r"exercise init and 2 layers diverged as well, "
                                                 r"which resuming would repeat: start a new "
                                                 r"depth study with other settings \(a lower "
                                                 r"lr, say\)$"):
        tm.depth_run("digits", out=out, **{**SETTINGS, "init": "exercise"})
    assert not out.exists()
    # the command line: exit status 1, the flag named
    assert main(["torch", "depth", "--layers", "3", "--hidden-size", "16", "--init", "default",
                 "--epochs", "2", "--threads", "1", "--no-progress", "--out", str(out)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mlplab torch depth: error: {out} was removed or moved while the depth study trained "
        "(its depth-config.json is gone), so the depth study stopped without writing more "
        "there; the loss of its network of default init and 3 layers diverged as well, which "
        "resuming would repeat: start a new depth study with other settings (a lower --lr, "
        "say)")
    assert not out.exists()


def test_ctrl_c_of_a_new_study_in_a_diverged_study_s_folder_does_not_offer_resume(
        tmp_path, monkeypatch, capsys):
    """A new study takes a diverged study's folder only once its data has loaded: stopped
    before, it leaves the diverged study, which --resume refuses, so the Ctrl-C line must not
    tell the user to resume it (it did: 'Continue with: mlplab torch depth --resume')."""
    from mlplab.torch_mlp import runs as torch_runs
    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "study"
    _crash_in(monkeypatch, 2, 1, TrainingDivergedError)
    with pytest.raises(TrainingDivergedError):
        tm.depth_run("digits", out=out, **{**SETTINGS, "init": "exercise"})
    monkeypatch.undo()

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch_runs, "_load", ctrl_c)  # as the new study's data loads
    assert main(["torch", "depth", *ARGV, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err and "kept" not in err, err
    assert "diverged" in json.loads((out / "depth-config.json").read_text())


def test_a_resume_stopped_before_it_saved_anything_leaves_the_environment_record(
        stopped, monkeypatch):
    """A resume in another environment that stops before it has saved a network or a
    checkpoint trained nothing there: depth-config.json recorded its environment as it started,
    so the next resume, back where the study trained, warned that its last bits may differ and
    depth.json listed an environment that trained none of it."""
    import warnings

    before = json.loads((stopped / "depth-config.json").read_text())

    def ctrl_c(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.optim.Adam, "step", ctrl_c)
    with pytest.warns(UserWarning, match="another environment"), \
            pytest.raises(KeyboardInterrupt):
        tm.resume_depth_run(stopped, threads=2)
    monkeypatch.undo()
    assert json.loads((stopped / "depth-config.json").read_text()) == before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tm.resume_depth_run(stopped)  # where it trained: threads 1
    assert _environment_warnings(caught) == []
    summary = json.loads((stopped / "depth.json").read_text())
    assert summary["environment"]["threads"] == 1 and "earlier_environments" not in summary


def test_a_resumed_study_leaves_pytorch_s_global_random_state_as_it_was(stopped):
    """As depth_run does (every network is built and trained on a generator of its own): loading
    a finished network drew its discarded initial weights from the global generator, so the
    caller's next random numbers were not those it had seeded."""
    torch.manual_seed(5)
    before = torch.get_rng_state()
    tm.resume_depth_run(stopped)
    assert torch.equal(torch.get_rng_state(), before)


def _damage_file(path, change):
    """Rewrite the .pt file ``path`` with ``change(payload)`` applied, as a hand edit would."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_resume_refuses_settings_edited_since_the_networks_and_checkpoint(stopped, capsys):
    """The finished networks and the checkpoint record the study's training settings, and a
    resume refuses a depth-config.json edited since, naming each setting and both values, in
    mlplab torch train --resume's words. Before, the network in training went on with the
    checkpoint's lr, reg and lr_decay (Adam's and the scheduler's state) and the next networks
    trained with the edited ones, in one table, without a word."""
    path, ckpt = stopped / "depth-config.json", stopped / "depth-checkpoint.pt"
    network = stopped / "networks" / "exercise-2.pt"
    config = json.loads(path.read_text())
    for file in (network, ckpt):
        extra = torch.load(file, weights_only=True)["extra"]
        assert {k: extra["settings"][k] for k in ("lr", "reg", "lr_decay", "epochs")} == \
            {k: config[k] for k in ("lr", "reg", "lr_decay", "epochs")}
    _edit_config(stopped, lr=0.01)
    with pytest.raises(ValueError, match=re.escape(
            f"{network} was trained with lr 0.003, but {path} now says lr 0.01: resumed, the "
            "study would go on under other settings than it was trained with. Put back the "
            "original value in depth-config.json to resume it, or start a new study with the "
            "new value (another out).")):
        tm.resume_depth_run(stopped)
    # the checkpoint's own record, once no finished network names the change
    network.unlink()
    _edit_config(stopped, lr=config["lr"], reg=0.5, lr_decay=0.5)
    assert main(["torch", "depth", "--resume", str(stopped), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(
        f"{ckpt} was trained with reg 0.001, lr_decay 0.95, but {path} now says reg 0.5, "
        "lr_decay 0.5: resumed, the study would go on under other settings than it was "
        "trained with. Put back the original values in depth-config.json to resume it, or "
        "start a new study with the new values (another --out)."), err
    assert not (stopped / "depth.json").exists()
    # a checkpoint of an mlplab that recorded no settings resumes with its own as before
    _damage_file(ckpt, lambda p: p["extra"].pop("settings"))
    path.write_text(json.dumps(config))
    assert [r.depth for r in tm.resume_depth_run(stopped).results] == [2, 3]


def test_a_network_file_with_a_damaged_settings_record_says_how_to_go_on(stopped):
    network = stopped / "networks" / "exercise-2.pt"
    _damage_file(network, lambda p: p["extra"].update(settings=[1]))
    with pytest.raises(ValueError, match=r"exercise-2.pt is not a complete network of a depth "
                                         r"study \(its settings are a list, not a dict\)\. If it "
                                         r"was edited, put it back; else delete it"):
        tm.resume_depth_run(stopped)
    _damage_file(network, lambda p: p["extra"].pop("settings"))  # as an older mlplab wrote it
    _damage_file(stopped / "depth-checkpoint.pt", lambda p: p["extra"].update(settings="x"))
    with pytest.raises(ValueError, match=r"depth-checkpoint.pt is not a complete depth study "
                                         r"checkpoint \(its init, depth, seconds or settings"):
        tm.resume_depth_run(stopped)


def test_a_study_without_a_checkpoint_is_resumed_only_on_its_own_splits(stopped, capsys):
    """depth-config.json records the splits the study started with, and a resume checks them
    even when nothing was saved yet (a study stopped in its first epoch), saying, as torch train
    --resume does, which of its options give other splits when edited."""
    from mlplab.data import load_dataset

    path = stopped / "depth-config.json"
    for file in (stopped / "depth-checkpoint.pt", stopped / "networks" / "exercise-2.pt"):
        file.unlink()  # stopped before its first epoch ended
    config = json.loads(path.read_text())
    digits = load_dataset("digits")
    _edit_config(stopped, val_size=300)
    with pytest.raises(ValueError, match=re.escape(
            f"the train split of digits has {len(digits.y_train) - 120} images, but the study "
            f"was trained with {len(digits.y_train)} (see {path}): it is not the study's data. "
            "(If depth-config.json's val_size, test_size, data_seed or image_size was edited, "
            "put back the value mlplab torch depth wrote.)")):
        tm.resume_depth_run(stopped)
    path.write_text(json.dumps({**config, "data_seed": 1}))
    assert main(["torch", "depth", "--resume", str(stopped), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the val split of digits is not the one this study was trained " \
        "with (as many images, but other ones)" in err[0] and "data_seed" in err[0], err
    path.write_text(json.dumps(config))
    assert [r.depth for r in tm.resume_depth_run(stopped).results] == [2, 3]


def test_a_depth_checkpoint_without_a_settings_record_is_compared_by_its_own_state(stopped):
    """As a run's: the checkpoint of an mlplab that recorded no settings is compared by what its
    Adam and scheduler state hold (the lr the network started with, weight_decay, gamma)."""
    path, ckpt = stopped / "depth-config.json", stopped / "depth-checkpoint.pt"
    config = json.loads(path.read_text())
    (stopped / "networks" / "exercise-2.pt").unlink()  # its record would be named first
    _damage_file(ckpt, lambda p: p["extra"].pop("settings"))
    _edit_config(stopped, lr=0.01, lr_decay=0.5)
    with pytest.raises(ValueError, match=re.escape(
            f"{ckpt} was trained with lr 0.003, lr_decay 0.95, but {path} now says lr 0.01, "
            "lr_decay 0.5: resumed, the study would go on under other settings")):
        tm.resume_depth_run(stopped)
    path.write_text(json.dumps(config))
    assert [r.depth for r in tm.resume_depth_run(stopped).results] == [2, 3]


@pytest.mark.parametrize("edit", [{"epochs": 5}, {"dropout": 0.5}, {"init_std": 0.5},
                                  {"hidden_size": 24}, {"batchnorm": False}])
def test_an_edited_depth_config_is_named_before_a_finished_network_is_blamed(stopped, edit):
    """An edited epochs, dropout, init_std, hidden_size or batchnorm also makes a finished
    network another than the study now describes: its record of the settings names the edit
    first. The network was refused as "not a complete network" or "another network", with "put
    it back; else delete it", which for a depth-config.json edit pointed at the wrong file."""
    path, network = stopped / "depth-config.json", stopped / "networks" / "exercise-2.pt"
    then = json.loads(path.read_text())
    _edit_config(stopped, **edit)
    [(key, value)] = edit.items()
    with pytest.raises(ValueError, match=re.escape(
            f"{network} was trained with {key} {json.dumps(then[key])}, but {path} now says "
            f"{key} {json.dumps(value)}: resumed, the study would go on")):
        tm.resume_depth_run(stopped)


def test_an_edited_width_is_named_by_the_checkpoint_and_an_older_record_is_not_compared(stopped):
    """The checkpoint records the width and batch norm too, so an edited hidden_size is named
    there rather than refused as a training state of other shapes; a record written before
    they were in it (2 Dec 2026) is compared on the rest, as before."""
    path, ckpt = stopped / "depth-config.json", stopped / "depth-checkpoint.pt"
    network = stopped / "networks" / "exercise-2.pt"
    config = json.loads(path.read_text())
    network.unlink()  # its record would be named first
    _edit_config(stopped, hidden_size=24)
    with pytest.raises(ValueError, match=re.escape(
            f"{ckpt} was trained with hidden_size 16, but {path} now says hidden_size 24: "
            "resumed, the study would go on under other settings")):
        tm.resume_depth_run(stopped)

    def older(payload):
        for key in ("hidden_size", "batchnorm"):
            payload["extra"]["settings"].pop(key)
    _damage_file(ckpt, older)
    with pytest.raises(ValueError, match=r"cannot resume from .*depth-checkpoint\.pt: "):
        tm.resume_depth_run(stopped)
    path.write_text(json.dumps(config))
    assert [r.depth for r in tm.resume_depth_run(stopped).results] == [2, 3]


def test_a_study_started_without_threads_resumes(tmp_path, monkeypatch, capsys):
    """A study started without --threads records threads null (PyTorch's own count), and
    ``mlplab torch depth --resume``, the command its Ctrl-C line prints, was refused:
    "depth-config.json: threads is null, not a positive count of at most 1024; the file was
    edited or damaged"."""
    out = tmp_path / "study"
    _crash_in(monkeypatch, 1, 1)
    argv = [a for a in ARGV if a not in ("--threads", "1")]
    assert main(["torch", "depth", "--out", str(out), *argv]) == 1  # "error: stopped here"
    monkeypatch.undo()
    assert json.loads((out / "depth-config.json").read_text())["threads"] is None
    assert main(["torch", "depth", "--resume", str(out), "--no-progress"]) == 0
    assert "threads is null" not in capsys.readouterr().err
    assert (out / "depth.json").exists() and not (out / "depth-checkpoint.pt").exists()


def test_an_error_after_a_study_saved_progress_says_how_to_finish_it(tmp_path, monkeypatch,
                                                                     capsys):
    """A full disk as the figure is written (every network saved) ended with the reason alone,
    as if the study were lost, and the same command is then refused (the folder holds a study);
    it is said with the --resume that finishes it, as mlplab torch train's is. So is an error
    in a later network after a checkpoint; one before the study saved anything (its data not
    found on a resume that trains nothing new) is said as it was."""
    import errno

    from mlplab import io as mlplab_io
    from mlplab.torch_mlp import runs as torch_runs

    out = tmp_path / "study"
    argv = ["torch", "depth", "--layers", "2", "--hidden-size", "16", "--init", "exercise",
            "--epochs", "1", "--threads", "1", "--no-progress", "--out", str(out)]
    full = mlplab_io.DiskFullError(out / "depth.png", OSError(errno.ENOSPC, "No space left"))
    monkeypatch.setattr(torch_runs, "save_into_run", lambda *a, **kw: (_ for _ in ()).throw(full))
    assert main(argv) == 1
    monkeypatch.undo()
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mlplab torch depth: error: no space left on device while writing {out / 'depth.png'} "
        "(No space left); free some disk space; the study was not saved, but what it finished "
        "(its networks, and its last whole epoch's checkpoint) is kept. Continue with: mlplab "
        f"torch depth --resume {out} --threads 1")
    assert (out / "networks" / "exercise-2.pt").is_file() and not (out / "depth.json").exists()
    # what it finished is not trained again; failing before it saves anything new, no advice
    monkeypatch.setattr(torch_runs, "_load_again", lambda *a, **kw: (_ for _ in ()).throw(
        FileNotFoundError("the digits are gone")))
    assert main(["torch", "depth", "--resume", str(out), "--no-progress"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == \
        "mlplab torch depth: error: the digits are gone"
    monkeypatch.undo()
    steps = _count_steps(monkeypatch)
    assert main(["torch", "depth", "--resume", str(out), "--threads", "1", "--no-progress"]) == 0
    assert steps == [] and (out / "depth.json").is_file()

    # a crash in the second network, after its first epoch's checkpoint
    crashed = tmp_path / "crashed"
    _crash_in(monkeypatch, 2, 1)
    assert main(["torch", "depth", *ARGV, "--out", str(crashed)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "mlplab torch depth: error: stopped here; the study was not saved, but what it finished "
        "(its networks, and its last whole epoch's checkpoint) is kept. Continue with: mlplab "
        f"torch depth --resume {crashed} --threads 1")


def test_memory_that_runs_out_after_a_checkpoint_is_not_advised_a_smaller_network(
        tmp_path, monkeypatch, capsys):
    """Memory refused in a later epoch, after a checkpoint, was said with the advice to "use
    less data or a smaller network" and then to continue with --resume, which keeps both: the
    line now says only what a resume can use."""
    out = tmp_path / "study"
    _crash_in(monkeypatch, 1, 1, MemoryError)
    assert main(["torch", "depth", *ARGV, "--out", str(out)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "mlplab torch depth: error: out of memory (stopped here); free memory or raise this "
        "process's limit (ulimit -v); the study was not saved, but what it finished (its "
        "networks, and its last whole epoch's checkpoint) is kept. Continue with: mlplab torch "
        f"depth --resume {out} --threads 1")


def test_a_diverged_study_whose_checkpoint_cannot_be_removed_still_records_it(
        tmp_path, monkeypatch, capsys, refuse_unlink):
    """The checkpoint of the network that diverged is dropped as the divergence is recorded: one
    that could not be removed ended the study with the bare PermissionError, before
    depth-config.json recorded the divergence, so --resume went on from it into the same NaN.
    It is passed over (as mlplab torch train passes over its run's): the divergence is recorded,
    and the error, --resume's refusal included, says the folder is a new study's only once that
    file is removed (a new study there refuses it until then)."""

    from mlplab.trainer import TrainingDivergedError

    out, settings = tmp_path / "study", {**SETTINGS, "init": "exercise"}
    blocked, diverging = out / "depth-checkpoint.pt", []

    _crash_in(monkeypatch, 2, 2, TrainingDivergedError)  # 3 layers, after its second epoch
    diverge = torch_depth.fit

    def marking(*args, **kwargs):
        try:
            return diverge(*args, **kwargs)
        except TrainingDivergedError:
            diverging.append(1)
            raise

    monkeypatch.setattr(torch_depth, "fit", marking)
    # once the loss diverged (the first network's whole save removes it as usual)
    refuse_unlink(lambda path: path == blocked, when=lambda: bool(diverging))
    where = f"with another out, or with this one once you remove depth-checkpoint.pt from {out}."
    with pytest.raises(TrainingDivergedError, match=r"^exercise init, 3 layers: stopped here "
                                                    r"Resuming this study would repeat it; start "
                                                    "a new study with other settings, "
                                                    f"{re.escape(where)}$"):
        tm.depth_run("digits", out=out, **settings)
    monkeypatch.undo()
    config = json.loads((out / "depth-config.json").read_text())
    assert config["diverged"]["init"] == "exercise" and config["diverged"]["depth"] == 3
    assert blocked.is_file()
    steps = _count_steps(monkeypatch)
    assert main(["torch", "depth", "--resume", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"mlplab torch depth: error: the depth study in {out} stopped when the loss of its "
        "network of exercise init and 3 layers diverged; resuming would repeat it: start a new "
        "study with other settings (a lower --lr, say), with another --out, or with this one "
        "once you remove depth-checkpoint.pt from it.")  # (the folder named once, at the start)
    assert steps == []
    # as the lines say: once the checkpoint is removed, a new study takes the folder
    blocked.unlink()
    argv = [a if a != "both" else "exercise" for a in ARGV]
    argv[argv.index("--epochs") + 1] = "1"
    assert main(["torch", "depth", *argv, "--out", str(out)]) == 0
    assert "diverged" not in json.loads((out / "depth-config.json").read_text())


def test_a_finished_study_whose_checkpoint_cannot_be_removed_is_written_and_says_so(
        tmp_path, capsys, refuse_unlink):
    """The checkpoint is removed as each network is saved whole and as the study ends: one that
    could not be removed (a permission, a file another program holds open) ended the study
    unwritten, "Continue with: mlplab torch depth --resume", which failed on it again. The
    study is written whole, and one line says so, names the stale checkpoint and why it is
    left, and says to remove it by hand; the finished study is not resumable."""
    from mlplab.runs import StaleFileWarning

    out = tmp_path / "study"
    blocked = out / "depth-checkpoint.pt"
    refuse_unlink(lambda path: path == blocked)
    argv = [a if a != "both" else "exercise" for a in ARGV]
    argv[argv.index("--epochs") + 1] = "1"
    said = (f"the depth study finished and its results are in {out}, but its stale "
            f"depth-checkpoint.pt could not be removed (Permission denied); remove {blocked} by "
            "hand.")
    # (printed as "mlplab torch depth: warning: ..." outside pytest, which records warnings)
    with pytest.warns(StaleFileWarning) as record:
        assert main(["torch", "depth", *argv, "--out", str(out)]) == 0
    assert [str(w.message) for w in record] == [said]
    assert "error" not in capsys.readouterr().err
    assert json.loads((out / "depth.json").read_text())["layers"] == [2, 3]
    assert sorted(p.name for p in (out / "networks").iterdir()) == ["exercise-2.pt",
                                                                    "exercise-3.pt"]
    assert blocked.is_file()
    assert main(["torch", "depth", "--resume", str(out)]) == 1
    assert "has already completed; nothing to resume" in capsys.readouterr().err
    # and from Python, the same line as a warning beside the result
    other = tmp_path / "other"
    blocked = other / "depth-checkpoint.pt"
    with pytest.warns(StaleFileWarning, match=f"^{re.escape(said.replace(str(out), str(other)))}$"):
        result = tm.depth_run("digits", out=other, **{**SETTINGS, "init": "exercise", "epochs": 1})
    assert len(result.results) == 2 and (other / "depth.json").is_file()


def test_a_divergence_record_that_cannot_be_written_is_said_with_the_divergence(
        tmp_path, monkeypatch, disk_full_at):
    """A study whose loss diverged records it in depth-config.json: a write that failed (a full
    disk) ended the study with that error alone, the divergence unsaid; the line now says the
    divergence, the record's file, the cause and what that leaves."""
    from mlplab.trainer import TrainingDivergedError

    out = tmp_path / "study"
    _crash_in(monkeypatch, 2, 2, TrainingDivergedError)  # 3 layers, after its second epoch
    disk_full_at("depth-config.json", holding='"diverged"')
    with pytest.raises(TrainingDivergedError) as caught:
        tm.depth_run("digits", out=out, **{**SETTINGS, "init": "exercise"})
    assert str(caught.value) == (
        "exercise init, 3 layers: stopped here The divergence could not be recorded in "
        f"{out / 'depth-config.json'} (No space left on device), so the depth study reads as "
        "unfinished, and resuming it would repeat the divergence. Start a new study with other "
        "settings, with the same out if you like.")
    assert "diverged" not in json.loads((out / "depth-config.json").read_text())
