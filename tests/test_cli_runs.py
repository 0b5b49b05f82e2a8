"""``mlplab runs`` and :mod:`mlplab.runs.listing`: every run folder under a folder, with what its
own files say, whatever state each run is in."""

import copy
import json
import math
import os
import shutil
import signal
from pathlib import Path

import pytest

from mlplab._text import display_width, padded, printable, shell_command
from mlplab.cli import main
from mlplab.data import load_dataset
from mlplab.runs import resume_run, train_run
from mlplab.runs.listing import find_runs, list_runs, summarize_run
from mlplab.trainer import Callback

TINY = {"dataset": "digits", "hidden": [16], "batch_size": 64}


class CtrlC(Callback):
    """Ctrl-C (a real SIGINT to this process) after ``epoch``: the run stops as a user's would."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGINT)


class Crash(Callback):
    """An error after ``epoch`` (out of memory, a bug in a callback): the run stops without
    writing its results, as if killed, and leaves its folder as a SIGKILL after that epoch's
    checkpoint does. ``seen`` keeps the history of that moment, to check the listing against."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch:
            self.seen = copy.deepcopy(trainer.history)
            raise MemoryError("as if killed")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits):
    """A runs folder as a user's looks after a while: finished runs, one stopped with Ctrl-C,
    one killed before it wrote its results, one damaged, and one inside a tuning folder."""
    root = tmp_path_factory.mktemp("listing") / "runs"
    made = {
        "small": train_run(TINY, epochs=2, out=root / "small", data=digits, plots=False),
        "tested": train_run({**TINY, "hidden": [32, 16]}, epochs=4, eval_test=True,
                            out=root / "tested", data=digits, plots=False),
        "stopped": train_run(TINY, epochs=50, out=root / "stopped", data=digits, plots=False,
                             callbacks=[CtrlC(3)]),
        "damaged": train_run(TINY, epochs=1, out=root / "damaged", data=digits, plots=False),
        "nested": train_run(TINY, epochs=2, out=root / "study" / "best-run", data=digits,
                            plots=False),
        "early": train_run(TINY, epochs=60, patience=2, out=root / "early", data=digits,
                           plots=False),
    }
    crash = Crash(3)
    with pytest.raises(MemoryError):
        train_run(TINY, epochs=5, out=root / "killed", data=digits, plots=False, callbacks=[crash])
    assert sorted(p.name for p in (root / "killed").iterdir()) == ["checkpoint.npz",
                                                                  "config.json"]
    made["killed"] = crash.seen
    (root / "damaged" / "metrics.json").write_text("{not json")
    edited = json.loads((root / "small" / "metrics.json").read_text())
    (root / "small" / "metrics.json").write_text(json.dumps({**edited, "seconds": "fast"}))
    (root / ".hidden" / "copy").mkdir(parents=True)  # skipped, as are caches
    for name in ("config.json", "metrics.json"):
        (root / ".hidden" / "copy" / name).write_bytes((root / "small" / name).read_bytes())
    (root / "study" / "notes").mkdir()  # not a run: no config.json
    (root / "study" / "loop").symlink_to(root, target_is_directory=True)  # not followed
    return root, made


def test_every_run_folder_is_found_once_and_summarised_from_its_own_files(runs):
    root, made = runs
    found = find_runs([root, root / "small"])  # a run folder given itself counts once
    assert sorted(p.relative_to(root).as_posix() for p in found) == [
        "damaged", "early", "killed", "small", "stopped", "study/best-run", "tested"]
    # the same runs by another path (relative, through a link) are the same runs, listed once
    alias = root.parent / "alias"
    if not alias.exists():
        alias.symlink_to(root, target_is_directory=True)
    assert find_runs([root, alias, os.path.relpath(root)]) == found
    # one folder given as it is, not in a list ("runs" was the folders r, u, n, s: "r: no such
    # folder"; a Path a TypeError)
    assert find_runs(root) == find_runs(str(root)) == find_runs([root])
    assert list_runs(root, sort="name") == list_runs(str(root), sort="name") == \
        list_runs([root], sort="name")
    by_name = {os.path.relpath(r["run"], root): r for r in list_runs([root])}

    tested = by_name["tested"]
    metrics = made["tested"].metrics
    assert tested["status"] == "completed" and tested["framework"] == "numpy"
    assert tested["model"] == metrics["model"] == "MLP 64-32-16-10 relu"
    assert (tested["train_accuracy"], tested["val_accuracy"], tested["test_accuracy"]) == \
        (metrics["train_accuracy"], metrics["val_accuracy"], metrics["test_accuracy"])
    assert tested["epochs"] == tested["of_epochs"] == 4
    assert by_name["small"]["test_accuracy"] is None  # not measured: not made up
    assert by_name["small"]["seconds"] is None  # edited by hand into words: not shown
    assert by_name["small"]["val_accuracy"] == made["small"].metrics["val_accuracy"]

    stopped = by_name["stopped"]
    assert made["stopped"].history.interrupted
    assert stopped["status"] == "interrupted" and (stopped["epochs"], stopped["of_epochs"]) == \
        (3, 50)
    # a run killed (or still training) has no results yet: its last checkpoint's figures
    killed, seen = by_name["killed"], made["killed"]
    assert killed["status"] == "unfinished" and (killed["epochs"], killed["of_epochs"]) == (3, 5)
    assert (killed["train_accuracy"], killed["val_accuracy"], killed["best_val_accuracy"]) == \
        (seen.train_acc[-1], seen.val_acc[-1], seen.best_val_acc)
    assert killed["test_accuracy"] is None and killed["seconds"] > 0
    assert killed["model"] == "hidden 16" and killed["finished"] is not None  # the checkpoint's
    damaged = by_name["damaged"]
    assert damaged["status"] == "unreadable" and "metrics.json is not valid JSON" in \
        damaged["problem"]
    assert by_name[os.path.join("study", "best-run")]["status"] == "completed"


def test_sorting(runs):
    root, _ = runs
    by_val = [r["val_accuracy"] for r in list_runs([root], sort="val")]
    known = [v for v in by_val if v is not None]
    assert known == sorted(known, reverse=True) and by_val[:len(known)] == known  # None last
    names = [r["run"] for r in list_runs([root], sort="name")]
    assert names == sorted(names)
    times = [r["finished"] for r in list_runs([root])]
    assert [t for t in times if t] == sorted(t for t in times if t)
    assert list_runs([root], sort="time") == list_runs([root], sort="finished")  # older name
    # the time column is the training time: --sort duration orders by it, longest first
    durations = [r["seconds"] for r in list_runs([root], sort="duration")]
    known = [d for d in durations if d is not None]
    assert len(known) >= 2 and known == sorted(known, reverse=True)
    assert durations[:len(known)] == known
    with pytest.raises(ValueError, match="sort must be one of finished, name, val, best-val, "
                                         "test, duration, time"):
        list_runs([root], sort="accuracy")


def test_runs_of_very_different_lengths_are_drawn_on_a_logarithmic_epoch_axis():
    """A run of 200 epochs beside one of 5: on a linear axis the short one was a few pixels
    at the left edge."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    from mlplab import plots

    short = {"loss": [2.0, 1.5, 1.2, 1.1, 1.0], "val_acc": [0.3, 0.4, 0.5, 0.55, 0.6]}
    long_ = {"loss": list(np.linspace(2, 0.5, 200)), "val_acc": list(np.linspace(0.3, 0.8, 200))}
    fig = plots.plot_runs({"short": short, "long": long_})
    assert [ax.get_xscale() for ax in fig.axes] == ["log", "log"]
    assert "logarithmic" in fig.axes[1].get_xlabel()
    fig = plots.plot_runs({"short": short, "longer": {"loss": [1.0] * 49}})  # under ten times
    assert [ax.get_xscale() for ax in fig.axes] == ["linear", "linear"]


def test_runs_of_one_epoch_are_drawn_as_points():
    """Two one-epoch runs: each was a line of one point, which draws nothing, under x ticks
    0.95 ... 1.05, while the legend listed both."""
    import matplotlib

    matplotlib.use("Agg")
    from mlplab import plots

    fig = plots.plot_runs({"a": {"loss": [1.2], "val_acc": [0.5]},
                           "b": {"loss": [0.9], "val_acc": [0.6]}})
    for ax in fig.axes:
        assert [line.get_marker() for line in ax.lines] == ["o", "s"]
        assert list(ax.get_xticks()) == [1]


def test_runs_differ_in_marker_and_line_style_not_only_in_colour():
    """Every run was drawn 'o-' in a colour of its own: in greyscale, or to a colour-blind
    reader (tab10's red beside its green), the runs and their legend entries looked alike.
    Each of the first 20 runs has its own marker and line style, also on a long run (markers
    spread along it) and in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from mlplab import plots

    curves = {f"run{i}": {"loss": list(np.linspace(2, 1, 3 + 100 * (i == 0))),
                          "val_acc": [0.5] * (3 + 100 * (i == 0))} for i in range(20)}
    fig = plots.plot_runs(curves)
    for ax in fig.axes:
        looks = [(line.get_marker(), line.get_linestyle()) for line in ax.lines]
        assert len(set(looks)) == 20 and all(m not in ("None", "", None) for m, _ in looks)
        assert ax.lines[0].get_markevery() is not None  # 103 epochs: markers along the line
    legend = fig.legends[0]  # (legend_handles from Matplotlib 3.7; legendHandles before)
    handles = getattr(legend, "legend_handles", None) or legend.legendHandles
    assert len({(h.get_marker(), h.get_linestyle()) for h in handles}) == 20


def test_each_panel_ticks_the_runs_it_draws():
    """A one-epoch run beside a two-epoch run without validation: the accuracy panel draws one
    epoch, and was ticked 0.945 ... 1.05 (its ticks followed the longest run of both panels)."""
    import matplotlib

    matplotlib.use("Agg")
    from mlplab import plots

    fig = plots.plot_runs({"one": {"loss": [1.2], "val_acc": [0.5]},
                           "no val": {"loss": [1.0, 0.8], "val_acc": [float("nan")] * 2}})
    acc_ax, loss_ax = fig.axes
    assert list(acc_ax.get_xticks()) == [1]
    assert all(float(t).is_integer() for t in loss_ax.get_xticks())


def test_runs_without_validation_leave_a_panel_that_says_so():
    """Runs trained with --val-size 0 only: the accuracy panel was an empty frame ticked
    0.0 ... 1.0 under "validation accuracy (%)" and epochs 0 and 1, which read as figures."""
    import matplotlib

    matplotlib.use("Agg")
    from mlplab import plots

    fig = plots.plot_runs({"a": {"loss": [2.0, 1.0], "val_acc": [float("nan")] * 2},
                           "b": {"loss": [1.5, 1.2]}})
    acc_ax, loss_ax = fig.axes
    assert not acc_ax.lines and list(acc_ax.get_xticks()) == list(acc_ax.get_yticks()) == []
    assert any("no validation figures" in t.get_text() for t in acc_ax.texts)
    assert len(loss_ax.lines) == 2 and not loss_ax.texts
    fig = plots.plot_runs({"a": {"loss": [2.0, 1.0], "val_acc": [0.3, 0.4]}})
    assert not fig.axes[0].texts and len(fig.axes[0].get_yticks())


def test_a_diverged_run_does_not_flatten_the_other_loss_curves():
    """A run whose loss diverged (1e37) beside others: on a linear axis every other run lay on
    zero. Losses spanning orders of magnitude are drawn on a logarithmic axis."""
    import matplotlib

    matplotlib.use("Agg")
    from mlplab import plots

    fig = plots.plot_runs({"good": {"loss": [2.0, 1.0, 0.5]},
                           "diverged": {"loss": [2.0, 1e20, 1.75e37]}})
    assert fig.axes[1].get_yscale() == "log" and "logarithmic" in fig.axes[1].get_ylabel()
    fig = plots.plot_runs({"good": {"loss": [2.0, 1.0, 0.5]}, "also": {"loss": [3.0, 1.0]}})
    assert fig.axes[1].get_yscale() == "linear"


def test_a_loss_of_one_iteration_is_drawn_as_a_point():
    """A one-epoch run with fewer images than a batch has one loss: loss.png drew a line of one
    point, which shows nothing, under ticks 0.96 ... 1.04."""
    import matplotlib

    matplotlib.use("Agg")
    from mlplab import plots

    ax = plots.plot_loss([2.3]).axes[0]
    assert ax.lines[0].get_marker() == "o"
    assert all(float(t).is_integer() for t in ax.get_xticks())


def test_cli_table_json_and_errors(runs, capsys, tmp_path):
    root, made = runs
    assert main(["runs", str(root), "--sort", "test"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["run", "status", "dataset", "model", "epochs", "train", "val",
                                "best", "val", "test", "time"]
    first = lines[1]  # the only run with a test accuracy sorts first
    assert first.startswith(str(root / "tested")) and \
        f"{100 * made['tested'].metrics['test_accuracy']:.1f}%" in first
    assert any(" interrupted " in line and " 3/50 " in line for line in lines)
    early = made["early"].metrics
    assert early["stopped_early"] and early["epochs"] < 60  # a run that ended itself early
    (line,) = [line for line in lines if line.startswith(str(root / "early"))]
    assert " completed " in line and f" {early['epochs']} (early) " in line  # not "19/60"
    (killed,) = [line for line in lines if "killed" in line]
    assert " unfinished " in killed and " 3/5 " in killed  # no metrics yet: the checkpoint's
    assert f" {100 * made['killed'].val_acc[-1]:.1f}% " in killed
    assert f"{root / 'damaged'}: unreadable: " in err
    (tmp_path / "listed" / "odd").mkdir(parents=True)
    (tmp_path / "listed" / "odd" / "config.json").write_text("[1, 2]")
    (tmp_path / "listed" / "odd" / "model.npz").write_bytes(b"")
    assert main(["runs", str(tmp_path / "listed")]) == 0
    assert "config.json is not a JSON object, as mlplab writes it" in capsys.readouterr().err

    assert main(["runs", str(root / "small"), "--json"]) == 0
    (only,) = json.loads(capsys.readouterr().out)
    assert only == summarize_run(root / "small")
    assert only["val_accuracy"] == made["small"].metrics["val_accuracy"]

    (tmp_path / "empty").mkdir()
    assert main(["runs", str(tmp_path / "empty")]) == 0
    assert "no run folders under" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main(["runs", str(tmp_path / "a-file")]) == 1
    assert "a-file is not a folder; pass the folder that holds the run folders" in \
        capsys.readouterr().err


def test_no_runs_folder_beside_run_folders_says_how_to_list_them(runs, capsys, tmp_path,
                                                                  monkeypatch):
    """`mlplab train --out exp1` and then `mlplab runs`: "no runs yet in runs; train one", right
    after training one. The run folders of the current folder are pointed to."""
    import shutil

    root, _ = runs
    monkeypatch.chdir(tmp_path)
    shutil.copytree(root / "small", tmp_path / "exp1")
    assert main(["runs"]) == 0
    assert capsys.readouterr().err == ("no runs yet in runs; the run folders in this folder are "
                                       "listed by `mlplab runs .`\n")
    assert main(["runs", "."]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("exp1 ")


def test_a_runs_folder_not_made_yet_has_no_runs_and_says_how_to_make_one(runs, capsys,
                                                                         tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a fresh checkout: no runs/ yet
    assert main(["runs"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == "no runs yet in runs; train one with `mlplab train`\n"
    assert main(["runs", "my runs", "--json"]) == 0  # another folder: --out puts a run there
    out, err = capsys.readouterr()
    first = shell_command(["mlplab", "train", "--out", os.path.join("my runs", "first")])
    assert first in ("mlplab train --out 'my runs/first'", 'mlplab train --out "my runs\\first"')
    assert json.loads(out) == [] and err == f"no runs yet in my runs; train one with `{first}`\n"
    root, _ = runs  # beside a folder that has runs: those are listed, the other is named
    assert main(["runs", str(root / "small"), "nowhere"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].startswith(str(root / "small")) and "no runs yet in nowhere" in err
    (tmp_path / "runs").mkdir()  # a typo of a folder beside it: named, the status still 0
    assert main(["runs", "rusn", os.path.join("runs", "smal"), "nuws"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "no runs yet in rusn (no such folder; did you mean runs?)",  # not "--out rusn/first"
        f"no runs yet in {os.path.join('runs', 'smal')}; train one with "
        f"`{shell_command(['mlplab', 'train', '--out', os.path.join('runs', 'smal', 'first')])}`",
        "no runs yet in nuws; train one with "
        f"`{shell_command(['mlplab', 'train', '--out', os.path.join('nuws', 'first')])}`"]
    (tmp_path / "a-file").write_text("")  # something else by that name: still an error
    assert main(["runs", "a-file"]) == 1
    (err,) = capsys.readouterr().err.splitlines()
    assert "a-file is not a folder; pass the folder that holds the run folders" in err
    # a link to a folder that is gone: named as the commands that write name it
    (tmp_path / "linked").symlink_to(tmp_path / "gone" / "runs")
    assert main(["runs", "linked"]) == 1
    (err,) = capsys.readouterr().err.splitlines()
    assert f"linked is a link to {tmp_path / 'gone' / 'runs'}, which does not exist; pass " \
           "the folder that holds the run folders" in err


def test_display_width_counts_terminal_columns_and_printable_keeps_one_line():
    assert [display_width(t) for t in ("abc", "数字", "🚀", "cafe\u0301", "a\u200db", "")] == \
        [3, 4, 2, 4, 2, 0]
    # what terminals draw, as the wcwidth library (0.9.4) counts it: a soft hyphen is a hyphen;
    # U+FE0F draws a narrow symbol or a keycap's digit as a two-column emoji, not a letter
    assert [display_width(t) for t in ("soft\u00adhyphen", "\u2764\ufe0f", "\u00a9\ufe0f",
                                       "1\ufe0f\u20e3", "\U0001f680\ufe0f", "e\ufe0f",
                                       "e\u0301\ufe0f", "\ufe0f")] == [11, 2, 2, 2, 2, 1, 1, 0]
    assert padded("\u2764\ufe0f", 3) == "\u2764\ufe0f "
    assert padded("数字", 6) == "数字  " and padded("e\u0301", 3, right=True) == "  e\u0301"
    assert padded("wider", 2) == "wider"
    assert printable("a\nb\tc\x1b[2J\x85\u202e", one_line=True) == \
        "a\\nb\\tc\\x1b[2J\\x85\\u202e"
    assert printable("a\nb") == "a\nb"  # written to a file: the newline is the file's


def test_the_table_lines_up_with_wide_characters_and_escapes_control_characters(runs, tmp_path,
                                                                                capsys):
    root, _ = runs
    listed = tmp_path / "listed"
    names = ["数字の実験", "🚀-launch", "cafe\u0301", "plain", "bad"]
    for name in names:
        (listed / name).mkdir(parents=True)
        for file in ("config.json", "metrics.json"):
            (listed / name / file).write_bytes((root / "tested" / file).read_bytes())
    config = json.loads((listed / "bad" / "config.json").read_text())
    metrics = json.loads((listed / "bad" / "metrics.json").read_text())
    # a hand-edited field whose newline split the row and whose ESC cleared the screen
    (listed / "bad" / "config.json").write_text(
        json.dumps({**config, "dataset": "digits\n\x1b[2Jgone"}))
    (listed / "bad" / "metrics.json").write_text(
        json.dumps({k: v for k, v in metrics.items() if k != "dataset"}))
    assert main(["runs", str(listed), "--sort", "name"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(names) and not any("\x1b" in line for line in lines)
    (bad,) = [line for line in lines if line.startswith(str(listed / "bad"))]
    assert " digits\\n\\x1b[2Jgone " in bad
    # every column starts at the same terminal column in every row, the heading's
    for heading in ("status", "dataset", "model", "time"):
        at = lines[0].index(heading) + len(heading) * (heading == "time")
        for line in lines[1:]:
            word = {"status": " completed ", "dataset": " digits", "model": " MLP ",
                    "time": None}[heading]
            end = len(line) if word is None else line.index(word) + 1
            assert display_width(line[:end]) == at, (heading, line)


def test_a_pytorch_run_is_listed_as_one(tmp_path, digits):
    pytest.importorskip("torch")
    from mlplab.torch_mlp import train_run as torch_train_run

    res = torch_train_run(digits, out=tmp_path / "t", epochs=1, plots=False)
    (listed,) = list_runs([tmp_path])
    assert listed["framework"] == "pytorch" and listed["status"] == "completed"
    assert listed["val_accuracy"] == res.metrics["val_accuracy"]
    assert listed["model"] == res.metrics["model"]


def test_plot_draws_each_runs_own_epoch_curves(runs, capsys, tmp_path):
    """--plot: per epoch, the mean of the run's own iteration losses and its validation figures,
    one line per run that has a history; the file is a real image."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from mlplab import plots
    from mlplab.runs.listing import epoch_curves

    root, made = runs
    history = made["tested"].history
    per_epoch = len(history.loss) // len(history.val_acc)
    curves = epoch_curves(root / "tested")
    np.testing.assert_allclose(curves["loss"], np.mean(np.reshape(history.loss, (-1, per_epoch)),
                                                       axis=1), rtol=1e-12)
    assert curves["val_acc"] == history.val_acc
    assert epoch_curves(tmp_path) == {"loss": [], "val_acc": []}  # no history: nothing to draw
    seen = made["killed"]  # no history.csv yet: its checkpoint's epochs
    killed = epoch_curves(root / "killed")
    np.testing.assert_allclose(killed["loss"], np.mean(np.reshape(seen.loss, (3, -1)), axis=1),
                               rtol=1e-12)
    assert killed["val_acc"] == seen.val_acc

    fig = plots.plot_runs({"tested": curves, "small": epoch_curves(root / "small")})
    acc_ax, loss_ax = fig.axes
    np.testing.assert_allclose(acc_ax.lines[0].get_ydata(), 100 * np.asarray(history.val_acc))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["tested", "small"]
    assert len(loss_ax.lines) == 2
    with pytest.raises(ValueError, match="at least one run"):
        plots.plot_runs({})

    out = tmp_path / "compare.png"
    assert main(["runs", str(root), "--sort", "val", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot: {out}" in capsys.readouterr().err


def test_a_folder_this_user_may_not_enter_is_listed_as_unreadable(runs, monkeypatch, capsys):
    """A run folder of another user (mode 700) in a shared runs folder: checking whether it
    held a run raised PermissionError, and ``mlplab runs`` failed with "runs/x/config.json:
    Permission denied", listing none of the others. (Simulated: the tests may run as root.)"""
    from mlplab import io

    root, _ = runs
    locked = root / "tested"
    stat, read_json = os.stat, io.read_json

    def denied(path, *args, **kwargs):
        if os.path.dirname(os.fspath(path)) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", denied)
    monkeypatch.setattr(io, "read_json", lambda path: denied(path) and read_json(path))
    by_name = {os.path.relpath(r["run"], root): r for r in list_runs([root])}
    assert by_name["tested"]["status"] == "unreadable"
    assert by_name["tested"]["problem"] == f"{locked / 'config.json'}: Permission denied"
    assert by_name["small"]["status"] == "completed"  # the others are listed all the same
    assert main(["runs", str(root)]) == 0
    out, err = capsys.readouterr()
    assert " completed " in out and f"{locked}: unreadable: " in err


def test_a_run_ended_by_early_stopping_and_killed_as_it_saved_is_not_short_of_epochs(
        digits, tmp_path, capsys):
    """Early stopping ended the run; it was killed while it wrote its results. Its checkpoint
    says it stopped early (its resume trains nothing more), but the listing read that from
    metrics.json alone: "23/30", and a time left for epochs that will never run."""
    run = tmp_path / "early"
    made = train_run(TINY, epochs=200, patience=1, out=run, data=digits, plots=False)
    assert made.history.stopped_early and made.metrics["epochs"] < 200
    (run / "metrics.json").unlink()  # killed while writing its results
    record = summarize_run(run)
    assert record["status"] == "unfinished" and record["stopped_early"] is True
    assert record["epochs"] == made.metrics["epochs"] and record["seconds_left"] is None
    assert main(["runs", str(run)]) == 0
    assert f" {made.metrics['epochs']} (early) " in capsys.readouterr().out


def test_a_run_of_iterations_killed_short_of_them_reads_as_short(digits, tmp_path, capsys):
    """A run given --iters has no epoch count in its config: killed, it read a bare "1", as if
    it were done. Its length is the whole epochs its iterations make (as its metrics count them
    when it ends), from its checkpoint, and for a run stopped with Ctrl-C from its metrics."""
    full = train_run({**TINY, "iters": 90}, out=tmp_path / "full", data=digits, plots=False)
    whole = full.metrics["epochs"]
    assert whole > 2 and summarize_run(tmp_path / "full")["of_epochs"] == whole
    killed = tmp_path / "killed"
    with pytest.raises(MemoryError):
        train_run({**TINY, "iters": 90}, out=killed, data=digits, plots=False,
                  callbacks=[Crash(1)])
    record = summarize_run(killed)
    assert (record["status"], record["epochs"], record["of_epochs"]) == ("unfinished", 1, whole)
    stopped = tmp_path / "stopped"
    train_run({**TINY, "iters": 90}, out=stopped, data=digits, plots=False,
              callbacks=[CtrlC(2)])
    record = summarize_run(stopped)
    assert (record["status"], record["epochs"], record["of_epochs"]) == ("interrupted", 2, whole)
    assert main(["runs", str(killed)]) == 0
    assert f" 1/{whole} " in capsys.readouterr().out

    # stopped mid-epoch, then resumed: while it trains on from that checkpoint (whose
    # iterations are no whole number of epochs) the listing still counts whole epochs
    class MidEpoch(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if iteration == 25:
                os.kill(os.getpid(), signal.SIGINT)

    class Look(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if not hasattr(self, "seen"):
                self.seen = summarize_run(mid)

    mid = tmp_path / "mid"
    train_run({**TINY, "iters": 90}, out=mid, data=digits, plots=False, callbacks=[MidEpoch()])
    look = Look()
    resume_run(mid, data=digits, plots=False, callbacks=[look])
    assert (look.seen["status"], look.seen["of_epochs"]) == ("training", whole)
    assert look.seen["seconds_left"] is not None  # a run of iterations has its time left too


def test_a_run_in_its_first_epoch_is_listed_as_unfinished(runs, tmp_path):
    """A run writes config.json, then its first checkpoint only when the first epoch ends (on
    CIFAR-10, minutes later): such a run, still training or killed during that epoch (which
    mlplab train --resume starts again), was left out of the list, which the docs say shows it
    as unfinished. Another program's config.json alone is still not a run."""
    root, _ = runs
    listed = tmp_path / "listed"
    (listed / "starting").mkdir(parents=True)
    (listed / "starting" / "config.json").write_bytes((root / "small" / "config.json").read_bytes())
    (listed / "other").mkdir()
    (listed / "other" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (listed / "broken").mkdir()
    (listed / "broken" / "config.json").write_text("{not json")
    (record,) = list_runs([listed])
    assert record["run"] == str(listed / "starting")
    # no epoch has ended (0, where None, shown "?", read as unknown)
    assert (record["status"], record["model"], record["epochs"]) == ("unfinished", "hidden 16", 0)


def test_a_run_without_its_config_is_listed_as_unreadable_not_hidden(runs, tmp_path):
    """A run folder copied without config.json (or whose config.json was deleted) was left out
    of the list without a word; it is listed as unreadable with the reason. metrics.json alone,
    or a model file alone, is still no run: another program's folder may hold one of them."""
    root, _ = runs
    listed = tmp_path / "copied"
    for name, files in (("lost", ("metrics.json", "model.npz")),
                        ("killed", ("metrics.json", "checkpoint.npz")),
                        ("metrics", ("metrics.json",)), ("weights", ("model.npz",))):
        (listed / name).mkdir(parents=True)
        for f in files:
            source = root / ("killed" if f == "checkpoint.npz" else "tested") / f
            (listed / name / f).write_bytes(source.read_bytes())
    records = list_runs([listed])
    assert [os.path.basename(r["run"]) for r in records] == ["killed", "lost"]
    for record in records:
        assert record["status"] == "unreadable"
        assert record["problem"] == f"{os.path.join(record['run'], 'config.json')}: No such " \
                                    "file or directory"


def test_an_unfinished_run_whose_checkpoint_is_damaged_is_unreadable(runs, tmp_path):
    """Without metrics.json the checkpoint is what the listing reads, and what --resume would:
    a truncated one makes the run unreadable, with the reason, rather than a row of blanks."""
    from mlplab.runs.listing import epoch_curves

    root, _ = runs
    run = tmp_path / "crashed"
    run.mkdir()
    (run / "config.json").write_bytes((root / "killed" / "config.json").read_bytes())
    (run / "checkpoint.npz").write_bytes((root / "killed" / "checkpoint.npz").read_bytes()[:500])
    record = summarize_run(run)
    assert record["status"] == "unreadable" and record["epochs"] is None
    assert record["problem"].startswith(f"{run / 'checkpoint.npz'} is not a readable .npz file")
    assert epoch_curves(run) == {"loss": [], "val_acc": []}


def test_a_checkpoint_that_cannot_be_looked_at_makes_its_run_unreadable_not_the_listing(
        runs, tmp_path, capsys):
    """An unfinished run whose checkpoint is a loop of links, or a link to a name too long:
    looking at it raised, and ``mlplab runs`` (and ``--plot``) ended with "runs/x/checkpoint.npz:
    Too many levels of symbolic links", listing none of the other runs."""
    import errno

    from mlplab.runs.listing import epoch_curves

    root, _ = runs
    listed = tmp_path / "listed"
    (listed / "good").mkdir(parents=True)
    for name in ("config.json", "checkpoint.npz"):
        (listed / "good" / name).write_bytes((root / "killed" / name).read_bytes())
    reasons = {"loop": os.strerror(errno.ELOOP), "long": os.strerror(errno.ENAMETOOLONG),
               "torch": os.strerror(errno.ELOOP)}
    for name in reasons:
        (listed / name).mkdir()
        (listed / name / "config.json").write_bytes((root / "killed" / "config.json").read_bytes())
    os.symlink("checkpoint.npz", listed / "loop" / "checkpoint.npz")  # a link to itself
    os.symlink("x" * 300, listed / "long" / "checkpoint.npz")  # past any file system's limit
    os.symlink("checkpoint.pt", listed / "torch" / "checkpoint.pt")
    by_name = {os.path.basename(r["run"]): r for r in list_runs([listed])}
    assert sorted(by_name) == ["good", "long", "loop", "torch"]
    assert by_name["good"]["status"] == "unfinished" and by_name["good"]["epochs"] == 3
    for name, reason in reasons.items():
        file = "checkpoint.pt" if name == "torch" else "checkpoint.npz"
        assert by_name[name]["status"] == "unreadable"
        assert by_name[name]["problem"] == f"{listed / name / file}: {reason}"
        assert by_name[name]["model"] == "hidden 16"  # its config's figures are still shown
        assert epoch_curves(listed / name) == {"loss": [], "val_acc": []}
    assert main(["runs", str(listed), "--plot", str(tmp_path / "runs.png")]) == 0
    out, err = capsys.readouterr()
    assert " unfinished " in out and out.count(" unreadable ") == 3
    assert f"{listed / 'loop'}: unreadable: {listed / 'loop' / 'checkpoint.npz'}: " \
           f"{reasons['loop']}" in err
    assert (tmp_path / "runs.png").is_file()


def test_a_metrics_file_that_is_a_loop_of_links_makes_its_run_unreadable(runs, tmp_path,
                                                                         capsys):
    """A finished run whose metrics.json is a link to itself: pathlib's is_file() answered
    False, and the run was listed "unfinished" from its checkpoint, as if it had written no
    results; it is unreadable, said in the listing's one line with the reason, and the other
    runs are listed."""
    import errno

    root, _ = runs
    listed = tmp_path / "listed"
    for name in ("tested", "small"):
        shutil.copytree(root / name, listed / name)
    (listed / "tested" / "metrics.json").unlink()
    os.symlink("metrics.json", listed / "tested" / "metrics.json")  # a link to itself
    by_name = {os.path.basename(r["run"]): r for r in list_runs([listed])}
    assert sorted(by_name) == ["small", "tested"]
    problem = f"{listed / 'tested' / 'metrics.json'}: {os.strerror(errno.ELOOP)}"
    assert (by_name["tested"]["status"], by_name["tested"]["problem"]) == ("unreadable", problem)
    assert by_name["small"]["status"] == "completed"
    assert main(["runs", str(listed)]) == 0
    out, err = capsys.readouterr()
    assert " unfinished " not in out and out.count(" unreadable ") == 1
    assert err.splitlines() == [f"{listed / 'tested'}: unreadable: {problem}"]


def test_a_checkpoint_the_system_refuses_is_unreadable_with_its_reason_in_words(
        runs, tmp_path, monkeypatch):
    """A checkpoint that cannot be opened (another user's, mode 600) was listed with the
    problem "[Errno 13] Permission denied: 'PATH'", Python's form, where every other problem
    reads "PATH: reason". (Simulated: the tests may run as root.)"""
    from mlplab.runs import checkpoint as checkpoint_module

    root, _ = runs
    run = tmp_path / "theirs"
    run.mkdir()
    for name in ("config.json", "checkpoint.npz"):
        (run / name).write_bytes((root / "killed" / name).read_bytes())

    def denied(path):
        raise PermissionError(13, "Permission denied", os.fspath(path))

    monkeypatch.setattr(checkpoint_module, "checkpoint_progress", denied)
    record = summarize_run(run)
    assert record["status"] == "unreadable"
    assert record["problem"] == f"{run / 'checkpoint.npz'}: Permission denied"


@pytest.mark.parametrize("plot,code,said", [
    ("compare.txt", 2, "--plot {p}: write a .png, .pdf or .svg file."),
    ("", 1, "--plot {p} is a folder; give an image file name, e.g. {p}/runs.png."),
    ("file.json/compare.png", 1, "--plot {p}: {d}/file.json is a file, not a folder; choose "
                                 "another --plot."),
])
def test_plot_file_is_checked_before_the_listing(runs, tmp_path, capsys, monkeypatch, plot, code,
                                                 said):
    """--plot with a format the help does not offer failed with Matplotlib's list of 16 formats,
    and --plot FOLDER with the name of a hidden temporary file ('.runs.td9hgv89.png -> runs: Is
    a directory'), both after the listing's work; they are refused first now, said of --plot, as
    mlplab data show's --out: the format as a usage error (exit 2), a folder or file in the way
    as the file system's answer (exit 1), as for every command's --out."""
    import mlplab.runs.listing

    root, _ = runs
    (tmp_path / "file.json").write_text("{}")
    path = tmp_path / plot if plot else tmp_path
    monkeypatch.setattr(mlplab.runs.listing, "list_runs", lambda *a, **k: pytest.fail("listed"))
    assert main(["runs", str(root), "--plot", str(path)]) == code
    assert said.format(p=path, d=tmp_path) in capsys.readouterr().err


def test_plot_of_no_runs_says_it_is_not_written(tmp_path, capsys):
    """--plot with no run folders under the folder given wrote no file and did not say so (the
    listing's "no run folders" named no plot); the exit status stays 0, as for no runs."""
    (tmp_path / "empty").mkdir()
    plot = tmp_path / "p.png"
    for argv in (["runs", str(tmp_path / "empty")], ["runs", str(tmp_path / "none"), "--json"]):
        assert main([*argv, "--plot", str(plot)]) == 0
        err = capsys.readouterr().err.splitlines()
        assert err[-1] == f"--plot: no runs to draw; {plot} not written", err
        assert not plot.exists()


@pytest.mark.parametrize("damage, said", [
    (b"\xff\xfe\x00", "is not a readable history ('utf-8' codec can't decode byte 0xff"),
    (b"epoch,loss\nx,0.5\n", "is not a readable history (invalid literal for int()"),
    (b"a,b\n1,2\n", "has no 'epoch' column"),
    (b"garbage\n", "has no 'epoch' column"),
    (b"iteration,epoch\n", "has no 'loss' column"),
    (b"", "is not a readable history (the file is empty)"),
    (b"iteration,epoch,loss\n1,1\n", "is not a readable history (a row is short of cells)")])
def test_plot_leaves_out_a_run_whose_history_cannot_be_read_and_says_so(runs, tmp_path,
                                                                        capsys, monkeypatch,
                                                                        damage, said):
    """A damaged history.csv was taken for a run with no epoch yet: --plot left the run out
    without a word (the listing reads metrics.json, and showed the run as if all were well)."""
    import shutil

    from mlplab import plots

    root, _ = runs
    for name in ("a", "b"):
        shutil.copytree(root / "tested", tmp_path / "runs" / name)
    history = tmp_path / "runs" / "b" / "history.csv"
    history.write_bytes(damage)
    drawn = []
    monkeypatch.setattr(plots, "plot_runs", lambda curves: drawn.append(list(curves)))
    monkeypatch.setattr(plots, "save", lambda fig, path: None)
    assert main(["runs", str(tmp_path / "runs"), "--plot", str(tmp_path / "p.png")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert drawn == [[str(tmp_path / "runs" / "a")]]
    assert err[0].startswith(f"--plot: {history.parent} not drawn: {history} {said}"), err
    assert err[1:] == [f"plot: {tmp_path / 'p.png'}"], err


def test_a_hand_edited_nan_or_infinity_is_not_a_figure(tmp_path, digits, capsys):
    """Python's JSON reads NaN and Infinity: a metrics.json edited to hold them put "nan%" and
    "inf min" in the table, sorted the other runs out of order (NaN compares false with all) and
    made --json print NaN, which strict JSON readers refuse."""
    root = tmp_path / "runs"
    for name, epochs in (("one", 1), ("two", 2), ("three", 3), ("four", 4)):
        train_run(TINY, epochs=epochs, out=root / name, data=digits, plots=False)
    edited = json.loads((root / "two" / "metrics.json").read_text())
    (root / "two" / "metrics.json").write_text(json.dumps({**edited, "val_accuracy": math.nan,
                                                           "seconds": math.inf}))
    records = list_runs([root], sort="val")
    assert records[-1]["run"] == str(root / "two") and records[-1]["val_accuracy"] is None
    assert records[-1]["seconds"] is None
    known = [r["val_accuracy"] for r in records[:-1]]
    assert known == sorted(known, reverse=True)

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    assert main(["runs", str(root), "--json"]) == 0
    json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert main(["runs", str(root)]) == 0
    out = capsys.readouterr().out
    assert "nan%" not in out and "inf min" not in out


def test_a_folder_whose_entries_may_not_be_read_is_named(runs, monkeypatch):
    """A folder one may enter but not list (mode 711, as home folders on shared machines):
    os.walk skipped it silently and the runs inside were missing from the list without a word.
    (Simulated: the tests may run as root.)"""
    root, _ = runs
    scandir = os.scandir

    def denied(path="."):
        if os.fspath(path) == str(root / "study"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    said = f"{root / 'study'}: Permission denied; the runs inside it, if any, are not listed"
    with pytest.warns(UserWarning, match=said):
        found = find_runs([root])
    assert root / "small" in found and root / "study" / "best-run" not in found
    with pytest.warns(UserWarning, match=said):  # the command prints it as a warning line
        assert main(["runs", str(root)]) == 0


def test_hand_edited_counts_leave_the_listing_whole_and_its_json_strict(runs, tmp_path, capsys):
    """A run whose config.json says batch_size 0 (or metrics.json train_size 0) ended the whole
    listing with "integer division or modulo by zero"; an epochs of NaN was printed by --json
    as NaN, which is not JSON."""
    import shutil

    root, _ = runs
    for name, file, key, value in (("zero-batch", "config.json", "batch_size", 0),
                                   ("zero-train", "metrics.json", "train_size", 0),
                                   ("nan-epochs", "metrics.json", "epochs", math.nan),
                                   ("inf-of", "config.json", "epochs", math.inf),
                                   ("nan-dataset", "metrics.json", "dataset", math.nan),
                                   ("inf-model", "metrics.json", "model", math.inf),
                                   ("nan-status", "metrics.json", "status", math.nan)):
        shutil.copytree(root / "small", tmp_path / name)
        path = tmp_path / name / file
        doc = json.loads(path.read_text())
        doc[key] = value
        path.write_text(json.dumps(doc))
    shutil.copytree(root / "small", tmp_path / "good")
    by_name = {Path(r["run"]).name: r for r in list_runs([tmp_path])}
    assert len(by_name) == 8 and by_name["good"]["epochs"] == 2
    assert by_name["zero-batch"]["epochs"] == 2 and by_name["zero-train"]["status"] == "completed"
    assert by_name["nan-epochs"]["epochs"] is None and by_name["inf-of"]["of_epochs"] is None
    capsys.readouterr()
    assert main(["runs", str(tmp_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert len(listed) == 8
    assert by_name["nan-dataset"]["dataset"] == "digits" and by_name["inf-model"]["model"]
    assert by_name["nan-status"]["status"] == "unfinished"


def test_another_commands_folder_given_beside_runs_is_still_said_what_it_is(runs, tmp_path,
                                                                            capsys):
    """`mlplab runs runs/depth runs/a` listed runs/a and said nothing of runs/depth, which alone
    is answered with what a depth study is; also with --json. A tuning folder whose best run is
    listed needs no such line."""
    root, _ = runs
    depth = tmp_path / "depth"
    depth.mkdir()
    (depth / "depth.json").write_text("{}")
    for extra in ([], ["--json"]):
        assert main(["runs", str(depth), str(root / "tested"), *extra]) == 0
        out, err = capsys.readouterr()
        assert str(root / "tested") in out
        assert f"{depth}: it is a depth study written by mlplab torch depth" in err, err
    (root / "study" / "summary.json").write_text("{}")
    try:
        assert main(["runs", str(root / "study"), str(depth)]) == 0
    finally:
        (root / "study" / "summary.json").unlink()
    err = capsys.readouterr().err
    assert f"{depth}: it is a depth study" in err and "tuning folder" not in err, err


def test_a_depth_study_inside_the_listed_folder_is_said_to_be_passed_over(tmp_path, capsys):
    """Plain `mlplab runs` listed the runs of runs/ and left out runs/depth, a depth study (no
    run folder in it), without a word: it now says what it is and where its numbers are, once,
    with --json too; a study's own networks/ is not walked for runs."""
    from mlplab.runs.listing import find_runs

    root = tmp_path / "runs"
    run = root / "a"
    assert main(["train", "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--out",
                 str(run), "--no-plots", "--quiet"]) == 0
    capsys.readouterr()
    depth = root / "depth"
    (depth / "networks").mkdir(parents=True)
    (depth / "depth.json").write_text("{}")
    for extra in ([], ["--json"]):
        assert main(["runs", str(root), *extra]) == 0
        out, err = capsys.readouterr()
        assert str(run) in out and str(depth) not in out
        assert err.count(f"{depth}: it is a depth study written by mlplab torch depth") == 1, err
    studies: list = []
    assert find_runs([root], studies) == [run] and studies == [depth]


def test_a_depth_study_marker_that_cannot_be_looked_at_makes_it_unreadable_not_the_listing(
        tmp_path, capsys):
    """A folder whose depth.json is a link to a name too long, or a loop of links: telling
    whether it was a depth study raised, and `mlplab runs` ended with "runs/study/depth.json:
    File name too long", listing none of the runs; it is now listed as unreadable with the
    reason, beside the others. A folder given whose hint file cannot be looked at (a tuning
    folder's summary.json) no longer ends the listing either."""
    import errno

    root = tmp_path / "runs"
    run = root / "a"
    assert main(["train", "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--out",
                 str(run), "--no-plots", "--quiet"]) == 0
    capsys.readouterr()
    for name in ("long", "loop"):
        (root / name).mkdir()
    os.symlink("x" * 300, root / "long" / "depth.json")  # past any file system's limit
    os.symlink("depth-config.json", root / "loop" / "depth-config.json")  # a link to itself
    reasons = {"long": f"{root / 'long' / 'depth.json'}: {os.strerror(errno.ENAMETOOLONG)}",
               "loop": f"{root / 'loop' / 'depth-config.json'}: {os.strerror(errno.ELOOP)}"}
    by_name = {os.path.basename(r["run"]): r for r in list_runs([root])}
    assert sorted(by_name) == ["a", "long", "loop"]
    assert by_name["a"]["status"] == "completed"
    for name, reason in reasons.items():
        assert (by_name[name]["status"], by_name[name]["problem"]) == ("unreadable", reason)
    assert main(["runs", str(root)]) == 0
    out, err = capsys.readouterr()
    assert " completed " in out and out.count(" unreadable ") == 2
    assert f"{root / 'long'}: unreadable: {reasons['long']}" in err
    assert main(["runs", str(root / "long")]) == 0  # the study given itself
    assert f"{root / 'long'}: unreadable: {reasons['long']}" in capsys.readouterr().err
    tuning = tmp_path / "tuning"
    tuning.mkdir()
    os.symlink("x" * 300, tuning / "summary.json")
    assert main(["runs", str(tuning)]) == 0
    assert f"no run folders under {tuning}" in capsys.readouterr().err


def test_a_depth_studys_networks_folder_is_said_to_be_its(tmp_path, capsys):
    """evaluate, predict and runs of a depth study's networks/ said only "no run folders" or
    "pass a run folder written by mlplab train": they now name the study it belongs to."""
    study = tmp_path / "depth"
    (study / "networks").mkdir(parents=True)
    (study / "depth.json").write_text("{}")
    networks = study / "networks"
    said = f"it holds the networks of {study}, a depth study written by mlplab torch depth"
    for command in (["evaluate", str(networks)], ["predict", str(networks), "x.png"]):
        assert main(command) == 1
        assert said in capsys.readouterr().err
    assert main(["runs", str(networks)]) == 0
    assert f"{networks}: {said}" in capsys.readouterr().err


def test_a_run_listed_from_its_checkpoint_gives_seconds_rounded_as_metrics_json_does(tmp_path):
    """A killed or diverged run is listed from its checkpoint, which keeps every digit of its
    seconds (0.04787016900081653) where metrics.json rounds to milliseconds."""
    from mlplab.runs import list_runs

    run = tmp_path / "a"
    assert main(["train", "--dataset", "digits", "--hidden", "8", "--epochs", "2", "--out",
                 str(run), "--no-plots", "--quiet"]) == 0
    (run / "metrics.json").unlink()  # as a run killed before it wrote its results
    (record,) = list_runs([tmp_path])
    assert record["status"] == "unfinished" and record["seconds"] == round(record["seconds"], 3)


def test_a_system_error_is_said_alike_by_the_listing_and_by_the_command_line():
    """mlplab runs' "problem" of an unreadable run and a command's error line built the
    "PATH: reason" form apart, and disagreed: the listing kept a file name's undecodable byte
    as a lone surrogate and dropped a second path."""
    import errno

    from mlplab._text import os_error_text
    from mlplab.cli import _error_text
    from mlplab.runs.files import RunFolderGoneError

    two = OSError(errno.EXDEV, os.strerror(errno.EXDEV), "caf\udce9", None, "b")
    assert os_error_text(two) == f"caf\\xe9 -> b: {os.strerror(errno.EXDEV)}"
    assert _error_text(two) == os_error_text(two)
    own = RunFolderGoneError("runs/a was removed or moved while the run trained")
    own.filename = "runs/a"  # (as mlplab's own errors of a path set it: DiskFullError)
    assert os_error_text(own) == str(own)


def test_a_diverged_run_without_an_epoch_reads_diverged_not_an_unknown_count(digits, tmp_path,
                                                                           capsys):
    """A run that diverged with no epoch kept (a PyTorch run drops its checkpoint, a NumPy run
    resumed from none has none) was listed with "?/N" epochs, as if the count were unknown, and
    --plot said "none of the runs has a finished epoch to draw", as if one might come: now its
    epochs read "-" beside its status "diverged", and --plot says the runs diverged."""
    import warnings

    from mlplab.runs import build_config
    from mlplab.trainer import TrainingDivergedError

    root = tmp_path / "runs"
    # killed before its first checkpoint, then resumed into a NaN: metrics.json "diverged" alone
    numpy_run = root / "numpy"
    numpy_run.mkdir(parents=True)
    (numpy_run / "config.json").write_text(json.dumps(
        build_config(**TINY, epochs=3, optimizer="sgd", lr=1e6).to_dict()))
    with warnings.catch_warnings(), pytest.raises(TrainingDivergedError):
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow on the way to NaN
        resume_run(numpy_run, data=digits)
    assert sorted(p.name for p in numpy_run.iterdir() if not p.name.startswith(".")) == \
        ["config.json", "metrics.json"]
    # a PyTorch run's record of it: config.json alone, with "diverged" (test_torch_resume.py
    # makes one by training)
    torch_run = root / "torch"
    torch_run.mkdir()
    (torch_run / "config.json").write_text(json.dumps(
        {"framework": "pytorch", "dataset": "digits", "hidden": [32], "epochs": 5,
         "batch_size": 64, "diverged": {"error": "the loss became nan at iteration 30"}}))

    plot = tmp_path / "runs.png"
    assert main(["runs", str(root), "--plot", str(plot)]) == 0
    listed = capsys.readouterr()
    # the run, its status, ..., its epochs and five figures (accuracies and time): none kept
    rows = [line.split() for line in listed.out.splitlines()[1:]]
    assert sorted((row[0], row[1], *row[-6:]) for row in rows) == [
        (str(numpy_run), "diverged", *["-"] * 6), (str(torch_run), "diverged", *["-"] * 6)], \
        listed.out
    assert "?" not in listed.out
    assert listed.err.splitlines()[-1] == \
        f"--plot: all 2 runs listed diverged and kept no finished epoch to draw; {plot} not " \
        "written"
    assert main(["runs", str(torch_run), "--plot", str(plot)]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == \
        f"--plot: the run listed diverged and kept no finished epoch to draw; {plot} not written"
    assert not plot.exists()

    # beside a run in its first epoch, the divergence is not all there is to say
    first_epoch = root / "first-epoch"
    first_epoch.mkdir()
    shutil.copy(numpy_run / "config.json", first_epoch / "config.json")
    assert main(["runs", str(root), "--plot", str(plot)]) == 0
    listed = capsys.readouterr()
    assert "0/3" in listed.out
    assert listed.err.splitlines()[-1] == \
        f"--plot: none of the runs has a finished epoch to draw; {plot} not written"
    # beside a run with epochs, that run is drawn
    train_run(TINY, epochs=1, out=root / "done", data=digits, plots=False)
    assert main(["runs", str(root), "--plot", str(plot)]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == f"plot: {plot}"
