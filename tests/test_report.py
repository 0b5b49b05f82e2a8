"""``mlplab reproduce``: the whole study on digits at the quick budget, and the report's pieces."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from repo_path import pythonpath

from mlplab.cli import main
from mlplab.report import Budget, render, reproduce
from mlplab.report.document import KeyValues, Section, StageSkipped, Table, Text
from mlplab.report.rendering import to_html, to_markdown

HAVE_TORCH = importlib.util.find_spec("torch") is not None

# the exercise's values, copied from its text (SPEC.md), not from mlplab's code
EXERCISE_LOSS = 1.30378789133

SECTION_HEADINGS = ["## Data", "## Q1", "## Q2", "## Q3", "### Toy training",
                    "### The default run", "### Tuning the hyperparameters",
                    "### The tuned network", "## Q4", "## Summary", "## Environment"]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("report")
    result = reproduce("digits", "quick", out=out, seed=0, log=False)
    return out, result


def _sections(md: str) -> dict[str, str]:
    """Markdown split at level-2/3 headings: heading -> body."""
    parts = re.split(r"^(#{2,3} .*)$", md, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_quick_digits_report_has_every_section_with_numbers(quick_report):
    out, result = quick_report
    md = (out / "report.md").read_text()
    assert result.seconds < 180, "digits at the quick budget must take under 3 minutes"
    # everything runs; only Q4 may be "not run", and only where PyTorch is not installed
    allowed = set() if HAVE_TORCH else {"q4"}
    assert {s.key for s in result.not_run()} <= allowed, \
        [(s.key, s.reason) for s in result.not_run()]
    bodies = _sections(md)
    for heading in SECTION_HEADINGS:
        match = [h for h in bodies if h.startswith(heading)]
        assert match, f"missing section {heading}"
        body = bodies[match[0]]
        if heading in ("## Q3",):  # a group heading; its subsections hold the content
            continue
        if heading == "## Q4" and not HAVE_TORCH:  # "Not run", checked below
            continue
        assert re.search(r"\d+\.\d+", body), f"no numbers in {heading}"
    assert HAVE_TORCH or "PyTorch is not installed" in md
    assert "Not run" not in md or not HAVE_TORCH


def test_quick_report_wording(quick_report):
    """Labels a reader met: the Splits table said "val" where the report says "validation"; a
    summary row read "2 layers (the default net) (exercise init)"; the Environment table left
    out SciPy, whose BLAS and routines the runs use."""
    out, _ = quick_report
    bodies = _sections((out / "report.md").read_text())
    data = next(body for heading, body in bodies.items() if heading.startswith("## Data"))
    assert re.search(r"^\| validation \| \d+ \|$", data, flags=re.M)
    assert not re.search(r"^\| val \|", data, flags=re.M)
    assert "2 layers, the default net (exercise init)" in bodies["## Summary"]
    assert "(the default net) (" not in bodies["## Summary"]
    environment = next(body for heading, body in bodies.items()
                       if heading.startswith("## Environment"))
    import scipy

    assert re.search(rf"scipy\b.*{re.escape(scipy.__version__)}", environment, flags=re.I)


def test_quick_report_numbers_are_right(quick_report):
    out, _ = quick_report
    doc = json.loads((out / "report.json").read_text())
    s = doc["sections"]
    assert abs(s["q1"]["data"]["loss"] - EXERCISE_LOSS) < 1e-10
    assert s["q1"]["data"]["prob_abs_diff_sum"] < 1e-7
    assert max(s["q2"]["data"]["two_layer"].values()) < 1e-8
    assert len(s["q2"]["data"]["deep_norm"]) == 8  # W1..W4, b1..b4
    assert s["q3_toy"]["data"]["final_loss"] < 0.02
    # digits is easy: the exercise's poor default still beats chance (10%), tuning beats it
    default, tuned = s["q3_default"]["data"], s["q3_tuned"]["data"]
    assert 0.1 < default["val_acc"] < tuned["val_acc"]
    assert tuned["test_acc"] > 0.8
    assert s["q3_tuning"]["data"]["complete"] == 12
    if HAVE_TORCH:
        depth = s["q4"]["data"]["results"]
        assert sorted((r["init"], r["depth"]) for r in depth) == sorted(
            (i, d) for i in ("exercise", "default") for d in (2, 3, 4, 5))
        assert sum(r["test_acc"] is not None for r in depth) == 2  # best of each init, once
    md = (out / "report.md").read_text()
    assert "1.30378789133" in md and "53.4%" in md and "50.8% / 49.5%" in md
    env = s["environment"]["data"]
    assert {"numpy", "torch", "CPU"} <= set(env["items"])
    assert set(env["stage_seconds"]) >= {"q1", "q2", "q3_default", "q4"}


def test_every_referenced_image_exists_and_is_a_picture(quick_report):
    out, _ = quick_report
    md = (out / "report.md").read_text()
    paths = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(paths) >= 10
    for rel in paths:
        img = Image.open(out / rel)
        assert min(img.size) >= 100, rel
        # a blank image has a single colour
        assert len(np.unique(np.asarray(img.convert("L")))) > 2, rel
    html = (out / "report.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    # every Markdown figure plus the equations (LaTeX in Markdown, an image in HTML), embedded
    assert len(srcs) == len(paths) + 1
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    doc = json.loads((out / "report.json").read_text())
    listed = [f for sec in doc["sections"].values() for f in sec["figures"]]
    assert set(paths) < set(listed) and all((out / f).is_file() for f in listed)


def test_render_again_from_json_gives_the_same_files(quick_report, tmp_path):
    out, _ = quick_report
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    render(out)
    assert (out / "report.md").read_text() == md
    assert (out / "report.html").read_text() == html


TINY = Budget("tiny", default_iters=60, tune_trials=3, tune_max_epochs=5, tune_max_hidden=64,
              preset_run=False, torch_epochs=2, torch_depths=(2, 3))


def _numbers(doc: dict) -> dict:
    """Every section's data without wall times (the only thing allowed to differ)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "seconds"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return {k: strip(v["data"]) for k, v in doc["sections"].items() if k != "environment"}


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    q4 = ["q4"] if HAVE_TORCH else []  # Q4 trains PyTorch networks
    stages = ["data", "q3_default", "q3_tuning", "q3_tuned", *q4]
    docs = []
    for name, seed, only in [("a", 3, stages), ("b", 3, stages),
                             ("c", 4, ["data", "q3_default", *q4])]:
        r = reproduce("digits", TINY, out=tmp_path / name, seed=seed, log=False, only=only)
        assert not [s for s in r.not_run() if s.key in only]
        docs.append(json.loads((tmp_path / name / "report.json").read_text()))
    a, b, c = (_numbers(d) for d in docs)
    assert a == b
    assert a["q3_default"] != c["q3_default"]
    assert not HAVE_TORCH or a["q4"] != c["q4"]



def test_the_seed_leaves_the_exercise_toy_problem_alone(tmp_path, capsys):
    """docs/report.md said "--seed S seeds every stage", as did --help; Q1, Q2's two-layer check
    and the toy training use the exercise's own draws whatever the seed (only Q2's deeper net
    and the stages on the dataset follow it), and the words now say so."""
    only = ["q1", "q2", "q3_toy"]
    a, b = (_numbers(json.loads((reproduce("digits", TINY, out=tmp_path / str(seed), seed=seed,
                                           log=False, only=only).out / "report.json")
                                .read_text()))
            for seed in (0, 1))
    assert a["q1"] == b["q1"] and a["q3_toy"] == b["q3_toy"]
    assert a["q2"]["two_layer"] == b["q2"]["two_layer"]
    assert a["q2"] != b["q2"]  # the deeper net's weights follow the seed
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "seed of every stage" not in said
    assert "toy training keeps its own fixed draws" in said

def test_failures_are_marked_not_run_and_the_rest_runs(tmp_path, monkeypatch):
    import sys

    import sklearn.metrics  # noqa: F401  (imported by reproduce; SciPy trips on torch = None)

    from mlplab.report import runner as rmod

    def broken(ctx, section):
        raise RuntimeError("disk on fire")

    stages = [s if s.key != "q2" else rmod.Stage("q2", s.group, s.title, broken)
              for s in rmod.STAGES]
    monkeypatch.setattr(rmod, "STAGES", stages)
    import mlplab

    # as if PyTorch were missing
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "mlplab.torch_mlp", None)
    for name in [m for m in sys.modules if m.startswith("mlplab.torch_mlp.")]:
        monkeypatch.setitem(sys.modules, name, None)  # the package's modules, if loaded already
    monkeypatch.delattr(mlplab, "torch_mlp", raising=False)
    r = reproduce("digits", TINY, out=tmp_path, log=False,
                  only=["data", "q1", "q2", "q4", "summary"])
    status = {s.key: (s.status, s.reason) for s in r.sections}
    assert status["q1"][0] == "ok" and status["summary"][0] == "ok"
    assert status["q2"] == ("not run", "failed with RuntimeError: disk on fire")
    assert status["q4"][0] == "not run" and "PyTorch is not installed" in status["q4"][1]
    md = (tmp_path / "report.md").read_text()
    assert "> **Not run:** failed with RuntimeError: disk on fire" in md
    assert "disk on fire" in (tmp_path / "errors.log").read_text()
    summary = _sections(md)["## Summary"]
    assert re.search(r"Q4 best PyTorch network, test \| not run", summary)
    assert "1.30378789133" in summary  # Q1 still reported
    # a later run into the same folder with no failure leaves no stale errors.log behind
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"])
    assert not (tmp_path / "errors.log").exists()


def test_a_failure_naming_a_path_that_is_not_utf8_is_logged_and_the_report_written(
        tmp_path, monkeypatch):
    """A stage's error naming a path that is not UTF-8 (the tuning stage's study under a Latin-1
    --out, or any non-ASCII one under LC_ALL=C PYTHONUTF8=0) holds a lone surrogate: writing its
    traceback to errors.log raised "'utf-8' codec can't encode character '\\udce9'", and
    `mlplab reproduce` ended there, every stage's work lost and no report written."""
    import os

    from mlplab.report import runner as rmod

    folder = os.fsdecode(b"r\xe9sultats")

    def broken(ctx, section):
        raise ValueError(f"cannot use {folder}")

    stages = [s if s.key != "q2" else rmod.Stage("q2", s.group, s.title, broken)
              for s in rmod.STAGES]
    monkeypatch.setattr(rmod, "STAGES", stages)
    r = reproduce("digits", TINY, out=tmp_path, log=False, only=["q1", "q2"])
    status = {s.key: s.status for s in r.sections}
    assert status["q1"] == "ok" and status["q2"] == "not run"
    assert "cannot use r\\xe9sultats" in (tmp_path / "errors.log").read_text(encoding="utf-8")
    assert "cannot use r\\xe9sultats" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_a_report_whose_folder_is_not_utf8_keeps_its_study_in_a_journal(tmp_path):
    """Under an --out whose name is not text in the file system's encoding (a Latin-1 name; any
    non-ASCII one under LC_ALL=C PYTHONUTF8=0) no SQLite URL can name tuning/study.db: the
    search stage failed, its error naming --storage, which reproduce lacks (and moving the
    finished report into place then failed on the study's URL, the report lost). The study is
    a journal file there, and the report says so."""
    import os

    out = tmp_path / os.fsdecode(b"r\xe9sultats")
    r = reproduce("digits", TINY, out=out, log=False, only=["data", "q3_tuning"])
    status = {s.key: (s.status, s.reason) for s in r.sections}
    assert status["q3_tuning"][0] == "ok", status
    assert (out / "tuning" / "study.log").is_file() and not (out / "tuning" / "study.db").exists()
    summary = json.loads((out / "tuning" / "summary.json").read_text(encoding="utf-8"))
    assert summary["storage"] == f"journal:{out / 'tuning' / 'study.log'}"  # moved with it
    assert "holds the study (`study.log`)" in (out / "report.md").read_text(encoding="utf-8")


def test_a_custom_budget_report_gives_a_call_that_reproduces_it(tmp_path):
    """reproduce(..., budget=Budget("tiny", ...)) wrote "reproduced by `mlplab reproduce
    --budget tiny ...`", a command line that argparse refuses (and a custom Budget("quick", ...)
    would have read as the quick one): the report now gives the Python call, which runs."""
    import mlplab.report

    r = reproduce("digits", TINY, out=tmp_path / "a", log=False, only=["q1"])
    doc = json.loads(r.json.read_text())
    command = doc["command"]
    assert "--budget" not in command and command.startswith("mlplab.report.reproduce(")
    assert command in r.markdown.read_text()  # the intro and the environment table say it
    again = eval(command, {"mlplab": mlplab})  # noqa: S307  (the report's own text)
    assert json.loads(again.json.read_text())["budget"] == doc["budget"]
    # a named budget, as the command line gives it, stays a command line
    r = reproduce("digits", "quick", out=tmp_path / "b", log=False, only=["q1"])
    assert json.loads(r.json.read_text())["command"].startswith("mlplab reproduce --dataset "
                                                                "digits --budget quick ")


def test_another_commands_folder_is_refused_as_the_reports(tmp_path, capsys):
    """reproduce --out RUN wrote report.json, figures/ and tuning/ among a run's (or a tuning's,
    or a depth study's) files; mlplab train refuses a report folder."""
    run = tmp_path / "run"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--quiet", "--no-plots", "--out",
                 str(run)]) == 0
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert main(["reproduce", "--only", "q1", "--out", str(run)]) == 1
    assert capsys.readouterr().err == (
        f"mlplab reproduce: error: {run} is a run folder (mlplab train or mlplab torch train); "
        "choose another --out for the report.\n")
    assert sorted(p.name for p in run.iterdir()) == before
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "depth.json").write_text("{}")
    with pytest.raises(ValueError, match="is a depth study written by mlplab torch depth; "
                                         "choose another out for the report"):
        reproduce("digits", TINY, out=tmp_path / "study", log=False, only=["q1"])
    # its own kind is no refusal: a report is made again in its folder
    reproduce("digits", TINY, out=tmp_path / "report", log=False, only=["q1"])
    r = reproduce("digits", TINY, out=tmp_path / "report", log=False, only=["q1"])
    assert (tmp_path / "report" / "report.json").is_file()
    assert {s.key: s.status for s in r.sections}["q1"] == "ok"


def test_a_stage_whose_input_only_left_out_is_refused_before_anything_is_written(tmp_path,
                                                                                capsys):
    """--only q3_default without data could only mark it "not run", and it replaced a complete
    report in --out with one of "not run"s (exit 0); it is refused first, naming the stage to
    add, in the caller's words. A notebook's reproduce(only=[...]) is not told of --only."""
    (tmp_path / "report.md").write_text("an earlier report")
    with pytest.raises(ValueError, match=r"^q3_default, q4 in only=\[\.\.\.\] need the "
                                         r"dataset, which the data stage loads: add data to "
                                         r"only=\[\.\.\.\], or add reuse=True"):
        reproduce("digits", TINY, out=tmp_path, log=False, only=["q3_default", "q4"])
    assert main(["reproduce", "--only", "q4", "--out", str(tmp_path)]) == 2
    assert "mlplab reproduce: error: q4 in --only needs the dataset, which the data stage " \
           "loads: add data to --only, or add --reuse" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
    assert (tmp_path / "report.md").read_text() == "an earlier report"
    # nor is a selection of nothing run as "everything": an unset $STAGES, [], a typo
    with pytest.raises(SystemExit) as exc:  # argparse's own usage error
        main(["reproduce", "--only", "", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "argument --only: expected comma-separated stages like " \
        "data,q4; got '' (an unset shell variable?)" in capsys.readouterr().err
    # nor an empty item, a typo or an unset variable, as --hidden 100,,50 is
    for only in ("q1,,q2", "q1,", ",q1"):
        with pytest.raises(SystemExit) as exc:
            main(["reproduce", "--only", only, "--out", str(tmp_path)])
        assert exc.value.code == 2 and "argument --only: expected comma-separated stages like " \
            f"data,q4; got {only!r} (an empty item)" in capsys.readouterr().err
    for only in ([], ["q9"], "q1"):
        with pytest.raises(ValueError, match="only must be a list of one or more stages from "
                                             "data, q1, "):
            reproduce("digits", TINY, out=tmp_path, log=False, only=only)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
    # with data selected but failing, the reason still points at its section
    log = io.StringIO()
    r = reproduce("folder:" + str(tmp_path / "nowhere"), TINY, out=tmp_path / "b", log=log,
                  only=["data", "q3_default"])
    # the stage's line gives its times, then the reason, whole
    assert re.search(r"^reproduce \[5/9\] The default run: NOT RUN in \d+\.\d s \(CPU \d+\.\d "
                     r"s\): needs the dataset, which was not produced \(see above\)\.$",
                     log.getvalue(), re.M), log.getvalue()
    status = {s.key: (s.status, s.reason) for s in r.sections}
    assert status["data"][0] == "not run" and "no such folder" in status["data"][1]
    assert status["q3_default"] == ("not run", "needs the dataset, which was not produced (see "
                                               "above).")


def test_ctrl_c_in_a_training_stage_stops_the_report(tmp_path, monkeypatch):
    """A run that Ctrl-C cut short must not be reported as the stage's result; the report
    stops, and the run's RunInterruptedWarning (a run in memory, nothing to resume) is not
    said besides."""
    import os
    import signal
    import warnings

    import mlplab.runs as runs
    from mlplab.trainer import Callback

    class CtrlC(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if iteration == 3:
                os.kill(os.getpid(), signal.SIGINT)

    real = runs.train_run
    monkeypatch.setattr(runs, "train_run", lambda *a, **k: real(*a, callbacks=[CtrlC()], **k))
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_default"])
    assert not [w for w in shown if issubclass(w.category, runs.RunInterruptedWarning)]


def test_a_stopped_run_leaves_the_earlier_report_as_it_was(tmp_path, monkeypatch):
    """Figures and tuning/ are written aside and moved in with the report: Ctrl-C in a run with
    other settings must not swap its figures into the report already in --out."""
    from mlplab.report import runner as rmod

    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1", "q3_toy"])
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def stopped(ctx, section):
        path, _ = ctx.figure("q3-toy-loss.png")
        path.write_bytes(b"a figure of the stopped run")
        raise KeyboardInterrupt

    stages = [s if s.key != "q3_toy" else rmod.Stage("q3_toy", s.group, s.title, stopped)
              for s in rmod.STAGES]
    monkeypatch.setattr(rmod, "STAGES", stages)
    with pytest.raises(KeyboardInterrupt):
        reproduce("digits", TINY, out=tmp_path, seed=1, log=False, only=["q1", "q3_toy"])
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_a_stopped_reproduce_says_what_became_of_the_report(tmp_path, monkeypatch, capsys):
    """Ctrl-C in mlplab reproduce ended with "mlplab: interrupted" alone, where a stopped
    training says how to resume it: the report has no resume, so the command says that nothing
    of it was written and that the same command makes it from the start."""
    from mlplab.cli import main
    from mlplab.report import runner as rmod

    def stopped(ctx, section):
        raise KeyboardInterrupt

    monkeypatch.setattr(rmod, "STAGES", [s if s.key != "q1" else rmod.Stage("q1", s.group,
                                                                            s.title, stopped)
                                         for s in rmod.STAGES])
    assert main(["reproduce", "--only", "q1", "--out", str(tmp_path / "r")]) == 130
    err = capsys.readouterr().err
    assert f"reproduce: stopped before the report was written: nothing of it is in " \
           f"{tmp_path / 'r'} (an earlier report there is kept as it was). Run the same " \
           "command again to make the report from the start." in err
    assert not (tmp_path / "r").exists()  # the folder it made, left empty, is removed


def test_a_stopped_reproduce_removes_the_folders_it_made_while_empty(tmp_path, monkeypatch):
    """reproduce(out="runs/rep") stopped by Ctrl-C before the report was written left an empty
    runs/rep (and runs/) that it had made, where train_run removes its own. Only folders it
    made, and only while empty: a folder that was there before, or one that holds a file, stays."""
    from mlplab.report import runner as rmod

    def stopped(ctx, section):
        raise KeyboardInterrupt

    monkeypatch.setattr(rmod, "STAGES", [s if s.key != "q1" else rmod.Stage("q1", s.group,
                                                                            s.title, stopped)
                                         for s in rmod.STAGES])
    with pytest.raises(KeyboardInterrupt):
        reproduce("digits", TINY, out=tmp_path / "runs" / "rep", log=False, only=["q1"])
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()
    with pytest.raises(KeyboardInterrupt):
        reproduce("digits", TINY, out=tmp_path / "mine" / "rep", log=False, only=["q1"])
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]
    assert list((tmp_path / "mine").iterdir()) == []
    with pytest.raises(KeyboardInterrupt):
        reproduce("digits", TINY, out=tmp_path / "mine", log=False, only=["q1"])
    assert (tmp_path / "mine").is_dir()  # there before: kept, though empty

    def kept_a_file(ctx, section):
        (ctx.out / "notes.txt").write_text("the user's")
        raise KeyboardInterrupt

    monkeypatch.setattr(rmod, "STAGES", [s if s.key != "q1" else rmod.Stage("q1", s.group,
                                                                            s.title, kept_a_file)
                                         for s in rmod.STAGES])
    with pytest.raises(KeyboardInterrupt):
        reproduce("digits", TINY, out=tmp_path / "new", log=False, only=["q1"])
    assert (tmp_path / "new" / "notes.txt").read_text() == "the user's"


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed")
def test_ctrl_c_in_a_depth_study_is_not_a_result(monkeypatch):
    import mlplab.torch_mlp as tm
    import mlplab.torch_mlp.depth as depth_module
    from mlplab.data import load_dataset

    real = tm.fit

    def interrupted(*args, **kwargs):
        history = real(*args, **kwargs)
        history.interrupted = True  # what fit's KeyboardInterrupt handler leaves
        return history

    monkeypatch.setattr(depth_module, "fit", interrupted)  # where depth_study looks fit up
    ds = load_dataset("digits")
    flat = [a.reshape(len(a), -1) / 16.0 for a in (ds.X_train, ds.X_val)]
    with pytest.raises(KeyboardInterrupt):
        tm.depth_study(flat[0], ds.y_train, flat[1], ds.y_val, depths=[2], hidden_size=8,
                       epochs=1)


def test_reuse_keeps_earlier_sections_and_reruns_the_selected(tmp_path):
    first = reproduce("digits", TINY, out=tmp_path, log=False, only=["q1", "q3_toy"])
    old = {s.key: s.data for s in first.sections}
    second = reproduce("digits", TINY, out=tmp_path, log=False, only=["q2", "summary"],
                       reuse=True)
    by_key = {s.key: s for s in second.sections}
    assert by_key["q1"].status == by_key["q2"].status == by_key["q3_toy"].status == "ok"
    assert by_key["q1"].data == old["q1"] and by_key["q3_toy"].data == old["q3_toy"]
    md = (tmp_path / "report.md").read_text()
    assert "0.0171" in _sections(md)["## Summary"]
    # the environment table is this command's: it says so, naming the kept sections (a kept Q4
    # beside "PyTorch threads: not loaded" contradicted it)
    assert "The table describes this command's run. The 2 sections kept from the earlier run " \
           "(Q1 · Forward pass and loss, Toy training) were computed by that run" in \
        _sections(md)["## Environment"]
    # a budget without a pruner or a cap on the training images: "none", not Python's None
    budget_row = next(line for line in md.splitlines() if line.startswith("| budget |"))
    assert "tune_prune=none" in budget_row and "None" not in budget_row
    # TINY is no command line's budget: the call that made the section
    first_run = re.compile(r"Q1 · Forward pass and loss, Toy training from `mlplab\.report\."
                           r"reproduce\('digits', mlplab\.report\.Budget\(name='tiny'[^`]*, "
                           r"only=\['q1', 'q3_toy'\]\)`")
    assert first_run.search(md)
    # a third run still names the run that produced each section
    reproduce("digits", TINY, out=tmp_path, log=False, only=["summary"], reuse=True)
    md = (tmp_path / "report.md").read_text()
    assert first_run.search(md)
    assert re.search(r"Q2 · Backpropagation and gradient checks from `[^`]*, only=\['q2', "
                     r"'summary'\], reuse=True\)`", md)
    with pytest.raises(ValueError, match="different seed"):
        reproduce("digits", TINY, out=tmp_path, seed=1, log=False, only=["q2"], reuse=True)
    # reuse without only runs every stage again and keeps nothing: refused, as --reuse alone is
    with pytest.raises(ValueError, match=r"reuse=True keeps the sections that only=\[\.\.\.\] "
                                         r"does not run again"):
        reproduce("digits", TINY, out=tmp_path, log=False, reuse=True)
    assert first_run.search((tmp_path / "report.md").read_text())  # the report left as it was


def test_reuse_makes_the_summary_again_from_the_sections_run_and_kept(tmp_path):
    """The summary only restates the other sections: kept by --reuse, it still said "not run"
    of a stage run again (``--only q4 --reuse`` after a failed Q4 left a Q4 section with its
    results beside summary rows saying Q4 was not run)."""
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1", "summary"])
    rows = {r[0]: r[1] for r in
            json.loads((tmp_path / "report.json").read_text())["sections"]["summary"]["data"]
            ["rows"]}
    assert rows["Q2 largest gradient error, two-layer net"] == "not run"
    again = reproduce("digits", TINY, out=tmp_path, log=False, only=["q2"], reuse=True)
    assert again.reused == ("q1",)
    summary = {s.key: s for s in again.sections}["summary"]
    rows = {r[0]: r[1] for r in summary.data["rows"]}
    q2 = {s.key: s for s in again.sections}["q2"].data
    assert rows["Q2 largest gradient error, two-layer net"] == \
        f"{max(q2['two_layer'].values()):.2e}"
    assert rows["Q1 toy loss (reg 0.05)"] != "not run"  # from the kept Q1
    # an earlier report without a summary gets none: it is made again, not added
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"])
    again = reproduce("digits", TINY, out=tmp_path, log=False, only=["q2"], reuse=True)
    assert {s.key: s for s in again.sections}["summary"].status == "not run"


def test_reuse_names_kept_sections_computed_with_another_environment(tmp_path):
    """The same seed gives the same numbers only with the same versions and machine: a section
    kept from a run with another NumPy (or CPU, mlplab, ...) is named in the report's
    introduction with what changed. Before, a report mixed them without a word."""
    import numpy as np

    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1", "q3_toy"])
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["sections"]["q1"]["origin"]["environment"]["numpy"] == np.__version__
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q2"], reuse=True)
    md = (tmp_path / "report.md").read_text()
    assert "Sections kept from earlier runs" in md and "another environment" not in md

    doc = json.loads((tmp_path / "report.json").read_text())
    doc["sections"]["q1"]["origin"]["environment"]["numpy"] = "0.9.9"  # as if run elsewhere
    doc["sections"]["q3_toy"]["origin"]["environment"].pop("numpy")  # an older record: no word
    (tmp_path / "report.json").write_text(json.dumps(doc))
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q2"], reuse=True)
    md = (tmp_path / "report.md").read_text()
    assert "Of those, computed with another environment than this run's: Q1 · Forward pass " \
           f"and loss (numpy 0.9.9 -> {np.__version__}). Their figures may differ in the " \
           "last digits" in md
    assert "Toy training (" not in md


def test_reuse_of_an_older_report_names_the_mlplab_of_its_environment_table(tmp_path):
    """A report.json of an mlplab before 30 Nov 2026 records no environment in its sections'
    origins (before 28 Nov, no origins at all), only in its environment table, that of the
    command which wrote it: --only q2 --reuse named the kept sections without a word of the
    other mlplab that computed them, as if this one had made the whole report. The table now
    stands for the sections that command computed; one it had itself kept says its environment
    is not recorded."""
    from mlplab.environment import environment

    now = dict(environment())
    old_mlplab = "0.1.0 (git 746353b)"  # one commit of that time, as the table wrote it
    text = [{"type": "Text", "text": "kept"}]

    def section(group: str, title: str, **extra) -> dict:
        return {"group": group, "title": title, "status": "ok", "reason": "", "seconds": 0.5,
                "data": {}, "blocks": text, **extra}

    old = {  # only the fields such a report had: no cpu_seconds, no origins' environment
        "title": "mlplab study report: digits, tiny budget", "intro": [],
        "dataset": "digits", "budget": TINY.to_dict(), "seed": 0, "threads": 1,
        "command": "mlplab reproduce --only q1", "date": "2026-11-27 09:00 UTC", "seconds": 1.0,
        "sections": {
            "q1": section("Q1", "Q1 · Forward pass and loss"),  # no origin: this command's
            "q3_toy": section("Q3", "Q3 · Toy training", origin={
                "command": "mlplab reproduce --only q3_toy", "date": "2026-11-26 09:00 UTC"}),
            "environment": section("Environment", "", data={"items": {
                **now, "mlplab": old_mlplab}}),
        },
    }
    (tmp_path / "report.json").write_text(json.dumps(old))
    result = reproduce("digits", TINY, out=tmp_path, log=False, only=["q2"], reuse=True)
    assert result.reused == ("q1", "q3_toy")
    md = (tmp_path / "report.md").read_text()
    assert "Of those, computed with another environment than this run's: Q1 · Forward pass " \
           f"and loss (mlplab {old_mlplab} -> {now['mlplab']}). Their figures may differ" in md
    assert "Of those, computed with an environment that the earlier report does not record " \
           "(an mlplab before 30 Nov 2026 recorded only its own run's): Q3 · Toy training. " in md
    # the new report keeps what it learnt: Q1's origin now records the table's environment
    origins = {k: s["origin"] for k, s in
               json.loads((tmp_path / "report.json").read_text())["sections"].items()}
    assert origins["q1"]["environment"]["mlplab"] == old_mlplab
    assert origins["q1"]["command"] == "mlplab reproduce --only q1"
    assert "environment" not in origins["q3_toy"]


def test_reuse_summary_line_gives_this_commands_time_beside_the_studys(tmp_path, capsys):
    """A rerun with --reuse printed the whole study's time (the kept sections' earlier times
    included: 197 s for a 6-second rerun) as if the command had taken it."""
    out = str(tmp_path / "cli")
    assert main(["reproduce", "--only", "q1,q3_toy", "--out", out]) == 0
    # counted as the stages' lines count them ("[2/9]"), the environment apart
    line = capsys.readouterr().out.strip()
    said = re.search(r"\(9 stages and the environment, 7 not run, (\d+\.\d) s\)$", line)
    assert said, line
    # as the report's own words give it ("38 s" was a report "written in 37.5 s")
    first = json.loads((tmp_path / "cli" / "report.json").read_text())["seconds"]
    assert said.group(1) == f"{first:.1f}"
    assert main(["reproduce", "--only", "q2", "--reuse", "--out", out]) == 0
    line = capsys.readouterr().out.strip()
    said = re.search(r"not run, (\d+\.\d) s, (\d+\.\d) s with the 2 reused sections\)$",
                     line)
    assert said, line
    report = json.loads((tmp_path / "cli" / "report.json").read_text())
    kept = sum(report["sections"][key]["seconds"] for key in ("q1", "q3_toy"))
    assert said.group(2) == f"{report['seconds']:.1f}"
    assert abs(float(said.group(1)) - (report["seconds"] - kept)) <= 0.1
    assert float(said.group(1)) >= report["sections"]["q2"]["seconds"] - 0.1


def test_the_moved_study_is_named_where_it_is_under_a_non_ascii_folder(tmp_path):
    """The study is made aside and moved in; its summary's storage URL is written with the
    path's non-ASCII characters percent-encoded, which a plain replace of the path missed: under
    ``--out 'rép ort'`` it named the deleted staging folder."""
    from sqlalchemy.engine import make_url

    out = tmp_path / "sp ace" / "rép ort"
    reproduce("digits", TINY, out=out, log=False, only=["data", "q3_tuning"])
    summary = json.loads((out / "tuning" / "summary.json").read_text())
    assert ".report-new" not in json.dumps(summary)
    assert make_url(summary["storage"]).database == str(out / "tuning" / "study.db")
    assert (out / "tuning" / "study.db").is_file()


def test_a_report_without_reuse_replaces_the_earlier_one_whole(tmp_path):
    """``--only q1`` into an earlier report's folder left that report's figures and tuning/
    (a whole search and its best run) beside a report saying those stages were not run. The
    earlier report's own files go; a file of the user's in figures/ stays."""
    reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_tuning"])
    earlier = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert "data-samples.png" in earlier and (tmp_path / "tuning" / "study.db").is_file()
    (tmp_path / "figures" / "mine.png").write_bytes(b"mine")
    # a report that fails to be written (a full disk) removes nothing of the earlier one
    import mlplab.io

    write_json = mlplab.io.write_json

    def full_disk(path, obj, **kw):  # the search's summary, repointed as it moves, too
        if Path(path).name in ("report.json", "summary.json"):
            raise OSError(28, "No space left on device")
        return write_json(path, obj, **kw)

    def contents():
        # (errors.log: this failed run's tracebacks, where the failing summary stopped a stage)
        return {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*")
                if p.is_file() and ".report-new" not in p.parts and p.name != "errors.log"}

    before = contents()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(mlplab.io, "write_json", full_disk)
        for only, seed in ((["q2"], 0), (["data", "q3_tuning"], 1)):  # (a new search, too)
            with pytest.raises(OSError, match="No space left"):
                reproduce("digits", TINY, out=tmp_path, log=False, only=only, seed=seed)
            assert contents() == before, only
    result = reproduce("digits", TINY, out=tmp_path, log=False, only=["q2"])
    left = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert left == sorted(["mine.png", *(Path(f).name for s in result.sections
                                         for f in s.figures())])
    assert not (tmp_path / "tuning").exists() and not (tmp_path / ".report-new").exists()
    # a tuning/ that the replaced report did not make (its search was not run) is not its own
    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "notes.txt").write_text("mine")
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q2"])
    assert (tmp_path / "tuning" / "notes.txt").read_text() == "mine"


def test_a_search_that_failed_is_still_the_reports_own(tmp_path, monkeypatch):
    """A search whose stage failed after the study was written (a plot that raised) leaves its
    tuning/ in place, and the section "not run": the next report without a search took it for a
    folder of the user's and kept it for good."""
    from mlplab.report import figures

    def broken(*args, **kwargs):
        raise RuntimeError("a plot that fails")

    with monkeypatch.context() as m:
        m.setattr(figures, "optimisation_history", broken)
        first = reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_tuning"])
    assert {s.key: s for s in first.sections}["q3_tuning"].status != "ok"
    assert (tmp_path / "tuning").is_dir()
    assert json.loads((tmp_path / "report.json").read_text())["owns_tuning"] is True
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q2"], reuse=True)  # keeps it
    assert json.loads((tmp_path / "report.json").read_text())["owns_tuning"] is True
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q2"])
    assert not (tmp_path / "tuning").exists()


def test_a_report_md_that_mlplab_did_not_write_is_not_overwritten(tmp_path):
    """A non-empty --out holding the user's own report.md had it replaced without a word."""
    (tmp_path / "report.md").write_text("# my thesis\n")
    with pytest.raises(ValueError, match=r"holds report.md, not an mlplab report's \(no "
                                         r"readable report.json beside it\).*move it aside"):
        reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"])
    assert (tmp_path / "report.md").read_text() == "# my thesis\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_the_stage_times_add_up_to_the_total(tmp_path, monkeypatch):
    """The total wall time is the command's, imports and environment probes included; the
    stages' rows did not add up to it (every stage 0.0 s, a total of 2.6 s) until a row for
    the time outside them."""
    import mlplab.report.runner as runner

    run_stages = runner._run_stages

    def slow_start(*args, **kwargs):  # time outside every stage, whatever was imported before
        time.sleep(1.5)  # beyond the rows' rounding, 0.05 s each
        return run_stages(*args, **kwargs)

    monkeypatch.setattr(runner, "_run_stages", slow_start)
    result = reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"])
    env = next(s for s in result.sections if s.key == "environment")
    table = next(b for b in env.blocks if isinstance(b, Table))
    walls = [float(row[2].split()[0]) for row in table.rows]  # all under 2 minutes: seconds
    assert table.rows[-1][0] == "**total**"
    assert sum(walls[:-1]) == pytest.approx(walls[-1], abs=0.05 * len(walls))
    # no CPU time outside the stages: the report's dash for a missing figure, not a hyphen
    assert table.rows[-2][0].startswith("outside the stages") and table.rows[-2][3] == "—"
    q1 = next(s for s in result.sections if s.key == "q1")
    rows = next(b for b in q1.blocks if isinstance(b, Table) and "bound" in b.columns).rows
    # its bound as the summary's ("< 1e-7"), its minus sign as the summary's row (not "1e-07",
    # "p - correct")
    assert rows[0][0] == "sum of |p − correct|" and rows[0][4] == "1e-7"


def test_the_committed_cifar10_report_has_the_wording_the_report_writes():
    """The report's wording of the Q1 bound ('1e-7', 'p − correct'), the summary's deeper-net
    bound ('< 1e-7') and the missing CPU time outside the stages ('—') changed, but the committed
    CIFAR-10 report (whose seed row was brought up to date) kept '1e-07', the hyphen and '-'."""
    folder = Path(__file__).resolve().parents[1] / "docs" / "cifar10-report"
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "1e-07" not in md and "p - correct" not in md
    assert "| sum of \\|p \u2212 correct\\| | 2.92e-08 | 0 | 2.92e-08 | 1e-7 | PASS |" in md
    assert "mlplab's bound < 1e-7)" in md
    assert "| outside the stages (imports, environment) |  | 1.8 s | \u2014 |" in md
    data = json.dumps(json.loads((folder / "report.json").read_text(encoding="utf-8")))
    assert "1e-07" not in data and "p - correct" not in data


def test_reuse_hands_the_kept_stages_results_to_the_ones_run_again(tmp_path):
    from mlplab.data import load_dataset

    first = reproduce("digits", TINY, out=tmp_path, log=False,
                      only=["data", "q3_tuning", "q3_tuned"])
    best = {s.key: s for s in first.sections}["q3_tuning"].data["best_settings"]
    # the kept Data section still gives the dataset, the kept search its best settings
    again = reproduce("digits", TINY, out=tmp_path, log=False, only=["q3_tuned"], reuse=True)
    tuned = {s.key: s for s in again.sections}["q3_tuned"]
    assert tuned.status == "ok", tuned.reason
    # the study's files were made aside and moved in: its summary names where they are now
    summary = (tmp_path / "tuning" / "summary.json").read_text()
    assert ".report-new" not in summary and str(tmp_path / "tuning" / "study.db") in summary
    md = (tmp_path / "report.md").read_text()
    assert "the search's best" in md and str(best["hidden_size"]) in md
    # other data options than the kept sections': refused, not mixed into one report
    other = lambda: load_dataset("digits", seed=0, val_size=400, test_size=400)  # noqa: E731
    with pytest.raises(ValueError, match=r"reuse=True: this call's data differ from the "
                                         r"earlier report's in sizes.*'val': 400"):
        reproduce("digits", TINY, out=tmp_path, log=False, only=["q3_tuned"], reuse=True,
                  loader=other)
    with pytest.raises(ValueError, match="reuse=True: this call's data differ"):
        reproduce("digits", TINY, out=tmp_path, log=False, only=["data"], reuse=True,
                  loader=other)
    # no kept section used the data (all of them run again): other data is fine
    again = reproduce("digits", TINY, out=tmp_path, log=False,
                      only=["data", "q3_tuning", "q3_tuned"], reuse=True, loader=other)
    assert all(s.status == "ok" for s in again.sections if s.key in ("data", "q3_tuned"))
    # a new search beside the tuned network of the earlier one: refused before anything is
    # written (the kept section said "no search result in this report" under the new search)
    before = (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match=r"^reuse=True would keep the earlier report's q3_tuned "
                                         r"section, made from the q3_tuning stage that this call "
                                         r"runs again; add q3_tuned to only=\[\.\.\.\] as well"):
        reproduce("digits", TINY, out=tmp_path, log=False, only=["q3_tuning"], reuse=True)
    assert (tmp_path / "report.md").read_text() == before


def test_a_damaged_earlier_report_is_refused_in_one_line_by_reuse(tmp_path, capsys):
    """A report.json of the wrong shape was met as Python's internals ("'list' object has no
    attribute 'get'"), or as settings to give that were given ("used a different seed (seed=0)
    ... Give --seed 0" for a seed written as "0")."""
    out = tmp_path / "rp"
    assert main(["reproduce", "--only", "q1", "--out", str(out)]) == 0
    capsys.readouterr()
    good = json.loads((out / "report.json").read_text())
    damages = [lambda d: [], lambda d: {}, lambda d: {**d, "sections": []},
               lambda d: {**d, "budget": "quick"}, lambda d: {**d, "sections": {"q1": 5}},
               lambda d: {**d, "seed": "0"}, lambda d: {**d, "threads": None},
               lambda d: {**d, "sections": {**d["sections"],
                                            "q1": {**d["sections"]["q1"], "blocks": [5]}}}]
    for damage in damages:
        (out / "report.json").write_text(json.dumps(damage(good)))
        assert main(["reproduce", "--only", "q2", "--reuse", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert re.fullmatch(rf"mlplab reproduce: error: --reuse: {re.escape(str(out))}/"
                            r"report\.json is not a report mlplab wrote \(damaged\? [^()]+\); "
                            r"run without --reuse into another --out, or move \S+ away\.\n",
                            err), err
    (out / "report.json").write_text(json.dumps(good))  # (the check passes a sound one)
    assert main(["reproduce", "--only", "q2", "--reuse", "--out", str(out)]) == 0


def test_reuse_messages_name_the_argument_in_python_and_the_flag_on_the_command_line(
        tmp_path, capsys):
    """reproduce(reuse=True) was told "--reuse: ..., run without --reuse" (and, for other data,
    "this command's data ... give the same data options"); from Python they name reuse=True
    and the loader, on the command line the flag as before."""
    from mlplab._validation import command_line
    from mlplab.data import load_dataset
    from mlplab.report.context import Context
    from mlplab.report.document import Section
    from mlplab.report.runner import _check_same_data

    empty = tmp_path / "empty"
    with pytest.raises(ValueError) as caught:
        reproduce("digits", TINY, out=empty, log=False, only=["q1"], reuse=True)
    assert str(caught.value) == (f"reuse=True: there is no earlier report in {empty} (no "
                                 "report.json).")
    assert not empty.exists()  # refused before the folder was made
    assert main(["reproduce", "--only", "q1", "--reuse", "--out", str(empty)]) == 1
    assert (f"--reuse: there is no earlier report in {empty} (no report.json)."
            in capsys.readouterr().err)

    reproduce("digits", TINY, out=tmp_path / "py", log=False, only=["q1"])
    with pytest.raises(ValueError) as caught:
        reproduce("digits", TINY, out=tmp_path / "py", seed=1, log=False, only=["q1"],
                  reuse=True)
    said = str(caught.value)
    # how to match it, and that a report without reuse must go elsewhere: "run without
    # --reuse" alone replaced the earlier report with one of the --only stages
    assert said.startswith("reuse=True: the earlier report in ") and \
        said.endswith(f"used a different seed (seed=0); its sections would not match. Give "
                      f"seed=0 to keep them, or run without reuse=True into another out "
                      f"(without it, the report in {tmp_path / 'py'} would be replaced by one "
                      "of these stages alone)."), said
    assert main(["reproduce", "--only", "q1", "--out", str(tmp_path / "cli")]) == 0
    assert main(["reproduce", "--only", "q1", "--seed", "1", "--reuse",
                 "--out", str(tmp_path / "cli")]) == 1
    assert ("used a different seed (seed=0); its sections would not match. Give --seed 0 to "
            "keep them, or run without --reuse into another --out") in capsys.readouterr().err

    # other data than the kept sections' (the whole refusal is in the test above)
    ctx = Context(out=tmp_path, dataset="digits", budget=TINY, seed=0)
    ctx.shared["dataset"] = load_dataset("digits", seed=0, val_size=400, test_size=400)
    old = Section("data", "Data", "", data={"name": "digits",
                                            "sizes": {"train": 1397, "val": 200, "test": 200}})

    def refusal() -> str:
        with pytest.raises(ValueError) as caught:
            _check_same_data(ctx, old)
        return str(caught.value)

    python = refusal()
    with command_line():
        flag = refusal()
    now = "now sizes={'train': 997, 'val': 400, 'test': 400}"
    assert python == (f"reuse=True: this call's data differ from the earlier report's in sizes "
                      f"({now}); its kept sections would not match. Load the same data "
                      "(loader), or run without reuse=True.")
    assert flag == (f"--reuse: this command's data differ from the earlier report's in sizes "
                    f"({now}); its kept sections would not match. Give the same data options, "
                    "or run without --reuse.")


def _figure_captions(section: dict) -> list[str]:
    return [b["caption"] for b in section["blocks"] if b["type"] == "Figure"]


def test_an_out_that_cannot_be_a_folder_is_one_line_naming_out(tmp_path, capsys):
    """--out naming a file was "[Errno 17] File exists: ..." (mkdir's words, no flag)."""
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["reproduce", "--only", "q1", "--out", str(afile)]) == 1
    assert f"error: --out {afile} is a file, not a folder; choose another --out." in \
        capsys.readouterr().err
    with pytest.raises(ValueError, match=f"^out {afile / 'sub'}: {afile} is a file, not a "
                                         "folder; choose another out"):
        reproduce("digits", TINY, out=afile / "sub", log=False, only=["q1"])


@pytest.mark.parametrize("threads", [2.5, True, "2", 0])
def test_threads_that_are_not_a_count_are_refused(threads, tmp_path):
    """threads=2.5 ran on int(2.5) threads ("2" was a TypeError): refused, before any stage."""
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        reproduce("digits", TINY, out=tmp_path / "r", log=False, only=["q1"], threads=threads)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("seed,message", [(2**32 - 1, "between 0 and 2\\*\\*32 - 2"),
                                          (None, "between 0 and 2\\*\\*32 - 2.*got None"),
                                          (1.5, "between 0 and 2\\*\\*32 - 2")])
def test_a_seed_the_splits_cannot_take_is_refused_before_any_stage(seed, message, tmp_path):
    """reproduce(seed=2**32 - 1) ran, and its data stage failed: the splits' seed + 1 is NumPy's
    limit. Refused at once, nothing written."""
    with pytest.raises(ValueError, match=message):
        reproduce("digits", TINY, out=tmp_path / "r", log=False, only=["data"], seed=seed)
    assert not (tmp_path / "r").exists()


def test_accuracy_figures_say_what_train_accuracy_is_and_whose_they_are(quick_report):
    """The exercise records train accuracy on the current minibatch (SPEC §3), which the default
    run and preset exercise-tuned keep (their config's train_acc): a curve that ends well above
    the whole-split train accuracy in the table beside it must say so. The tuned section shows
    one of two networks: its figures name the one selected."""
    out, _ = quick_report
    s = json.loads((out / "report.json").read_text())["sections"]
    default = s["q3_default"]
    assert default["data"]["config"]["train_acc"] == "batch"
    accuracy = [c for c in _figure_captions(default) if c.startswith("Train and validation")]
    assert len(accuracy) == 1 and "last minibatch" in accuracy[0], accuracy
    tuned = s["q3_tuned"]
    selected = tuned["data"]["selected"]
    assert set(tuned["data"]["candidates"]) == {"the search's best", "preset exercise-tuned"}
    captions = _figure_captions(tuned)
    assert len(captions) == 4 and all(f" of {selected}" in c for c in captions), captions
    # the search's best trains with mlplab's default train_acc ("subset"), the preset with the
    # exercise's ("batch")
    meaning = "last minibatch" if selected == "preset exercise-tuned" else "5,000 training images"
    assert any(meaning in c for c in captions), captions
    text = " ".join(b["text"] for b in tuned["blocks"] if b["type"] == "Text")
    assert "Next to it, preset `exercise-tuned`" in text and "better validation accuracy" in text


def test_tuned_network_without_a_search_is_the_only_candidate(tmp_path, monkeypatch):
    """--only without q3_tuning: the preset is trained alone; the text must not place it "next
    to" a search that did not run, nor call it "the better" of one, and the accuracy legend says
    what the train curve is."""
    from mlplab import plots

    labels = []
    real = plots.plot_accuracy

    def recording(*args, **kwargs):
        labels.append((kwargs.get("title"), kwargs.get("train_label", "train")))
        return real(*args, **kwargs)

    monkeypatch.setattr(plots, "plot_accuracy", recording)
    r = reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_tuned"])
    tuned = {s.key: s for s in r.sections}["q3_tuned"]
    assert tuned.status == "ok", tuned.reason
    assert tuned.data["selected"] == "preset exercise-tuned"
    assert tuned.data["settings"]["train_acc"] == "batch"  # the exercise's, per its config
    assert labels == [("Tuned network (preset exercise-tuned): accuracy per epoch",
                       "train (last minibatch)")]
    body = _sections((tmp_path / "report.md").read_text())["### The tuned network"]
    assert "Next to it" not in body and "the better validation accuracy" not in body
    assert "the only candidate" in body


@pytest.mark.parametrize("vals, chosen, why", [
    ((0.9, 0.8), 0, "the better validation accuracy"),
    ((0.8, 0.9), 1, "the better validation accuracy"),
    ((0.9, 0.9), 0, "tied on validation accuracy at 90.0%; the tie goes to the one listed first"),
    ((0.9,), 0, "the only candidate"),
])
def test_tuned_network_choice_says_why_and_a_tie_is_no_better(vals, chosen, why):
    """The search's best and the preset at the same validation accuracy: the first was chosen and
    the report said it had "the better validation accuracy"."""
    from mlplab.report.stages_training import choose_tuned

    candidates = [(name, 0.95, val) for name, val in zip(("search", "preset"), vals)]
    best, reason = choose_tuned(candidates)
    assert best is candidates[chosen] and reason == why


@pytest.mark.parametrize("cap, searched", [(10000, None), (500, 500)])
def test_a_training_split_below_the_budgets_cap_is_tuned_whole(cap, searched, tmp_path):
    """The standard budget caps the trials' images at 10,000: on digits (1,437 training images)
    the search failed ('train_size must be between 1 and 1437') instead of using them all."""
    import dataclasses

    budget = dataclasses.replace(TINY, tune_trials=1, tune_max_train=cap)
    r = reproduce("digits", budget, out=tmp_path, log=False, only=["data", "q3_tuning"])
    tuning = {s.key: s for s in r.sections}["q3_tuning"]
    assert tuning.status == "ok", tuning.reason
    assert tuning.data["train_size"] == searched
    body = _sections((tmp_path / "report.md").read_text())["### Tuning the hyperparameters"]
    subset = f"a stratified subset of {searched} training images" if searched else \
        "the whole training split"
    assert f"each trained on {subset} with plain SGD" in " ".join(body.split())


@pytest.mark.parametrize("sizes, caveat", [
    ({"train": 40000, "val": 5000, "test": 5000}, True),  # the shared JPEG folder's split
    ({"train": 49000, "val": 1000, "test": 1000}, False),  # the exercise's (SPEC §3)
    ({"train": 49000, "val": 1000, "test": 10000}, False),  # ... with the whole test set
    ({"train": 49000, "val": 500, "test": 500}, True),  # the training images, other validation
])
def test_summary_says_when_a_cifar10_split_is_not_the_exercises(sizes, caveat, tmp_path):
    """SPEC §3: the exercise trains on the first 49,000 CIFAR-10 training images and validates on
    the last 1,000. A CIFAR-10 run on other images (e.g. a folder holding only the training set,
    split 40,000 / 5,000 / 5,000) must not put its accuracies next to the targets unqualified."""
    from mlplab.report.context import Context
    from mlplab.report.stages_summary import stage_summary

    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]
    data = Section("data", "Data", "", data={"image_shape": [32, 32, 3], "classes": classes,
                                             "sizes": sizes})
    ctx = Context(tmp_path, "folder:x", TINY, 0, sections={"data": data})
    summary = Section("summary", "Summary", "")
    stage_summary(ctx, summary)
    text = " ".join(b.text for b in summary.blocks if isinstance(b, Text))
    assert summary.data["comparable"] and summary.data["exercise_split"] is not caveat
    assert ("is not the exercise's (49,000 / 1,000" in text) is caveat, text
    if caveat:
        assert f"({sizes['train']:,} / {sizes['val']:,} / {sizes['test']:,} train" in text
    assert "not comparable" not in text  # CIFAR-10 all the same


def test_summary_rows_take_the_right_figures(tmp_path):
    """The summary's rows against the stages' data: the largest of the Q2 errors (the check's
    bound applies to each), the exercise-initialised Q4 network of each depth (the 2020 report's
    initialisation; the default-initialised one of the same depth must not replace it), the
    2020 report's best test accuracy (53.3%, 5 layers, SPEC) and "not run" for a stage whose
    data lacks the figure."""
    from mlplab.report.context import Context
    from mlplab.report.stages_summary import stage_summary

    q4 = {"results": [
        {"init": "exercise", "depth": 2, "train_acc": 0.40, "val_acc": 0.30, "test_acc": None},
        {"init": "exercise", "depth": 3, "train_acc": 0.45, "val_acc": 0.35, "test_acc": 0.33},
        {"init": "default", "depth": 2, "train_acc": 0.60, "val_acc": 0.50, "test_acc": 0.48},
        {"init": "default", "depth": 3, "train_acc": 0.61, "val_acc": 0.49, "test_acc": None}],
        "best": {"init": "default", "depth": 2, "test_acc": 0.48}}
    sections = {
        "data": {"image_shape": [32, 32, 3], "classes": CIFAR_CLASSES,
                 "sizes": {"train": 49000, "val": 1000, "test": 1000}},
        "q2": {"two_layer": {"W1": 3e-9, "W2": 7e-9, "b1": 1e-10}, "deep_norm": {"W1": 2e-8}},
        "q3_default": {"loss": 2.0},  # no val_acc: the row is not run, not an error
        "q4": q4}
    ctx = Context(tmp_path, "cifar10", TINY, 0,
                  sections={k: Section(k, k, "", data=d) for k, d in sections.items()})
    summary = Section("summary", "Summary", "")
    stage_summary(ctx, summary)
    rows = {row[0]: row[1:] for row in next(b for b in summary.blocks
                                            if isinstance(b, Table)).rows}
    assert rows["Q2 largest gradient error, two-layer net"][0] == "7.00e-09"
    # the deeper net is judged against mlplab's own bound (the Q2 section's), not "—" alone
    assert rows["Q2 largest norm-wise gradient error, deeper net"] == [
        "2.00e-08", "— (beyond the exercise; mlplab's bound < 1e-7)", "—"]
    assert rows["Q3 default run, validation"] == ["not run", "about 29%", "—"]
    # the exercise's targets and the 2020 report's steps (SPEC, Question 3b)
    assert rows["Q3 tuned two-layer net, validation"][1:] == [
        "> 48% (reference net > 52%)", "48.0% → 50.0% → 52.2% → 53.4%"]
    assert rows["Q1 toy loss (reg 0.05)"][0] == "not run"  # no q1 section at all
    assert rows["Q4 PyTorch, 2 layers, the default net (exercise init): train / validation"][0] \
        == "40.0% / 30.0%"
    assert rows["Q4 PyTorch, 3 layers (exercise init): train / validation"][0] \
        == "45.0% / 35.0% (test 33.0%)"
    assert rows["Q4 PyTorch, 4 layers (exercise init): train / validation"] == [
        "not run", "—", "52.0% / 51.8% (train / test)"]
    assert rows["Q4 best PyTorch network, test"] == ["48.0% (2 layers, default init)", "—",
                                                      "53.3% (5 layers)"]


@pytest.mark.parametrize("max_epochs, max_hidden", [(5, 32), (12, 64), (20, 512), (17, 100),
                                                     (3, 600), (10, 400)])
def test_a_budgets_search_space_stays_within_its_caps(max_epochs, max_hidden):
    """Budget.search_space cuts the exercise's space (hidden 32-512, epochs 5-20 in steps of
    5) at the budget's caps: no trial, and no grid point, may train longer or wider than the
    caps; the range keeps its step; a cap at or below the range's low end fixes the knob."""
    import dataclasses

    import optuna

    from mlplab.tuning import EXERCISE_SPACE, SearchSpace

    budget = dataclasses.replace(TINY, tune_max_epochs=max_epochs, tune_max_hidden=max_hidden)
    space = SearchSpace.from_dict(budget.search_space())
    for knob, cap, low in (("epochs", max_epochs, 5), ("hidden_size", max_hidden, 32)):
        if cap <= low:
            assert space.fixed[knob] == cap
            continue
        grid = space.params[knob].grid_values()
        # the exercise's grid points within the cap, all of them
        assert grid == ([g for g in EXERCISE_SPACE[knob]["grid"] if g <= cap] or [low])
    if "epochs" in space.params:  # on the step: 5, 10, ... up to the cap
        p = space.params["epochs"]
        assert p.high == max_epochs // 5 * 5 and p.step == 5
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        s = space.suggest(study.ask())
        assert s["epochs"] <= max_epochs and s["hidden_size"] <= max_hidden
        assert "epochs" in space.fixed or s["epochs"] % 5 == 0


def test_free_text_is_shown_as_text_in_both_renderings():
    import html

    from mlplab.report.rendering import md_literal

    reason = "no images matching '*.png' or '*.jpg' in /data/[x](javascript:alert(1))"
    s = Section("x", "G", "T", [Text("see [the docs](https://example.org/?a=1&b=2)")],
                status="not run", reason=reason)
    page = to_html("t", ["Not run: T (" + md_literal(reason) + ")"], [s], Path("."))
    assert 'href="javascript' not in page and "<em>" not in page
    assert html.escape(reason) in page  # the reason as it is, in the section and the intro
    assert '<a href="https://example.org/?a=1&amp;b=2">the docs</a>' in page
    md = to_markdown("t", [], [s])
    assert "> **Not run:** " + md_literal(reason) in md and "\\[x\\]" in md
    # a code span keeps its backslashes, as in Markdown
    assert "<code>C:\\data\\_train</code>" in to_html(
        "t", ["`C:\\data\\_train`"], [], Path("."))


def test_renderers_escape_and_align():
    s = Section("x", "Group <&>", "Title", [
        Text("a `<b>` **bold** *it* [link](https://example.org) <script>x</script>"),
        Table(["name", "value"], [["a|b", "1.5%"], ["c", "2e-09"]], "cap")])
    skipped = Section("y", "Group <&>", "Other", status="not run", reason=str(StageSkipped("no")))
    md = to_markdown("T", ["intro"], [s, skipped])
    assert "| a\\|b | 1.5% |" in md and "|---|---:|" in md and "> **Not run:** no" in md
    html = to_html("T", ["intro"], [s, skipped], Path("."), embed=False)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<code>&lt;b&gt;</code>" in html and "<strong>bold</strong>" in html
    assert "<em>it</em>" in html and '<a href="https://example.org">link</a>' in html
    assert '<td class=num>1.5%</td>' in html and "Not run:</strong> no" in html


def test_every_html_table_has_the_header_row_its_markdown_table_has():
    """A key-value table (configuration, best configuration, environment) had a header row
    "item | value" in report.md but none in report.html, where its keys were cells of no
    stated scope: a screen reader had no column header to announce."""
    s = Section("k", "G", "Settings", [KeyValues([("lr", "0.1"), ("seed", "0")], "Config")])
    md = to_markdown("T", [], [s])
    assert "| item | value |" in md
    page = to_html("T", [], [s], Path("."), embed=False)
    table = page[page.index("<table>"):page.index("</table>")]
    assert table.count("<thead>") == 1
    assert re.findall(r"<thead><tr>(.*?)</tr></thead>", table) == [
        "<th>item</th><th>value</th>"]
    assert re.findall(r'<th scope="row">(.*?)</th>', table) == ["lr", "seed"]


def test_a_bold_best_row_leaves_numeric_columns_right_aligned():
    """The tuning trials mark their best row by putting every cell in bold; the marked cells
    (``**0**``, ``**93.9%**``) were not read as numbers, so the trial number, the accuracy and
    every knob were left-aligned, in the HTML and in Markdown's alignment row."""
    rows = [["**0**", "**complete**", "**93.9%**", "**0.03068**", "**14.2**", ""],
            ["1", "pruned", "—", "3.56e-09", "0.4", "n/a"],
            ["2", "complete", "90.0%", "*0.1*", "1.0", "x"]]
    s = Section("t", "Tuning", "Trials", [
        Table(["trial", "state", "validation", "lr", "seconds", "note"], rows, "Trials")])
    page = to_html("T", [], [s], Path("."), embed=False)
    cells = re.findall(r"<tr>(.*?)</tr>", page)[1:]
    numeric = [[td.startswith("<td class=num>") for td in re.findall(r"<td[^>]*>.*?</td>", r)]
               for r in cells]
    assert numeric == [[True, False, True, True, True, False]] * 3, cells
    assert "<td class=num><strong>0</strong></td>" in page
    assert "|---:|---|---:|---:|---:|---|" in to_markdown("T", [], [s])
    # emphasis around a word, or a number next to one, still reads as text
    text = Section("u", "G", "T", [Table(["a", "b"], [["**x**", "**1** s"], ["2", "3"]])])
    assert "<td class=num>" not in to_html("T", [], [text], Path("."), embed=False)


def test_cli_reproduce(tmp_path, capsys):
    assert main(["reproduce", "--only", "q1,q2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "report.html" in out.out and "[2/9] Q1" in out.err
    assert (tmp_path / "report.html").is_file()
    # bad arguments are usage errors (exit 2, like argparse's), before any stage runs
    assert main(["reproduce", "--only", "q1,nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown stage nope" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--threads", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--threads" in capsys.readouterr().err
    # a stage that fails (here: the dataset cannot be found) gives exit status 1, with a report
    missing = tmp_path / "no-such-folder"
    assert main(["reproduce", "--dataset", f"folder:{missing}", "--only", "data,q1",
                 "--out", str(tmp_path / "r")]) == 1
    assert "1 stage failed: data" in capsys.readouterr().err
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Not run:** failed with DatasetNotFoundError" in report  # a DatasetError


def test_cli_reproduce_called_from_python_reports_its_own_command(tmp_path, capsys, monkeypatch):
    """main(["reproduce", ...]) from a script reported the script's arguments (sys.argv) as the
    command that made the report: "reproduced by `mlplab --verbose`"."""
    monkeypatch.setattr("sys.argv", ["my_script.py", "--verbose"])
    out = tmp_path / "r"
    assert main(["reproduce", "--only", "q1", "--out", str(out)]) == 0
    capsys.readouterr()
    expected = f"mlplab reproduce --only q1 --out {out}"
    assert json.loads((out / "report.json").read_text())["command"] == expected
    assert f"reproduced by `{expected}`" in (out / "report.md").read_text()


# ----------------------------------------------------------------------------- --device
def test_device_option_parses_with_cpu_the_default():
    from mlplab.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["reproduce"]).device == "cpu"  # reports stay exactly repeatable
    assert parser.parse_args(["reproduce", "--device", "cuda:1"]).device == "cuda:1"
    assert "--device" in parser._subparsers._group_actions[0].choices["reproduce"].format_help()


@pytest.mark.skipif(not HAVE_TORCH, reason="Q4 needs PyTorch")
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_q4_runs_on_the_device_given_and_the_report_names_it(device, tmp_path, capsys,
                                                              monkeypatch):
    """--device reached only the torch commands: reproduce trained Q4 on the CPU, whatever the
    machine had. auto takes the CPU where PyTorch sees no GPU (made so here on any machine);
    tests/test_torch_gpu.py runs the same on a GPU."""
    import torch

    if device == "auto":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "r"
    assert main(["reproduce", "--only", "data,q4", "--device", device, "--out", str(out)]) == 0
    capsys.readouterr()
    doc = json.loads((out / "report.json").read_text())
    assert doc["device"] == device
    q4 = doc["sections"]["q4"]
    assert q4["status"] == "ok" and q4["data"]["device"] == "cpu" and "gpu" not in q4["data"]
    assert doc["sections"]["environment"]["data"]["device"] == {"asked": device, "q4": "cpu",
                                                                "gpu": None}
    md = (out / "report.md").read_text()
    assert "PyTorch threads: 1, device: cpu. *exercise*" in _sections(md)["## Q4 · PyTorch "
                                                                         "multi-layer perceptron"]
    row = f"| device | cpu (Q4's PyTorch networks; --device {device}) |"
    assert row in _sections(md)["## Environment"]
    html = (out / "report.html").read_text()
    assert "PyTorch threads: 1, device: cpu." in html
    assert f"<td>cpu (Q4's PyTorch networks; --device {device})</td>" in html
    # a Q4 kept by --reuse: the row says where that run trained it
    assert main(["reproduce", "--only", "q1", "--reuse", "--device", device,
                 "--out", str(out)]) == 0
    assert f"| device | cpu (Q4's PyTorch networks; --device {device}, kept from the earlier " \
           "run) |" in (out / "report.md").read_text()


@pytest.mark.skipif(not HAVE_TORCH, reason="without PyTorch Q4 is not run, whatever the device")
def test_cuda_without_a_gpu_is_refused_in_one_line_before_any_stage(tmp_path, capsys,
                                                                    monkeypatch):
    """Refused at once (exit 1, the machine's fact, not a usage error), not after Q1-Q3 with a
    Q4 that failed; where Q4 is not going to run no GPU is asked for."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "r"
    assert main(["reproduce", "--only", "data,q4", "--device", "cuda", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"mlplab reproduce: error: --device cuda was asked for but PyTorch "
                            f"sees no CUDA GPU (torch {torch.__version__}, "
                            "torch.cuda.is_available() is False); use --device cpu, or --device "
                            "auto to take a GPU only when there is one.\n")
    assert captured.out == "" and not out.exists()  # no stage ran, no folder made
    with pytest.raises(ValueError, match=r"^device='cuda:1' was asked for but PyTorch sees no "
                                         r"CUDA GPU .*; use device='cpu', or device='auto'"):
        reproduce("digits", TINY, out=out, log=False, only=["data", "q4"], device="CUDA:1")
    assert not out.exists()
    # Q4 not selected: nothing uses the GPU, and the report keeps the setting (--reuse's)
    assert main(["reproduce", "--only", "q1", "--device", "cuda", "--out", str(out)]) == 0
    capsys.readouterr()
    doc = json.loads((out / "report.json").read_text())
    assert doc["device"] == "cuda" and "--device cuda" in doc["command"]
    assert "| device | cuda (--device cuda; Q4, the only stage on this device, did not run) |" \
        in (out / "report.md").read_text()


def test_cuda_without_pytorch_marks_q4_not_run_as_any_device_does(tmp_path, monkeypatch):
    import sys

    import sklearn.metrics  # noqa: F401  (imported by reproduce; SciPy trips on torch = None)

    import mlplab

    monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were missing
    monkeypatch.setitem(sys.modules, "mlplab.torch_mlp", None)
    for name in [m for m in sys.modules if m.startswith("mlplab.torch_mlp.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delattr(mlplab, "torch_mlp", raising=False)
    r = reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q4"], device="cuda")
    q4 = next(s for s in r.sections if s.key == "q4")
    assert q4.status == "not run" and "PyTorch is not installed" in q4.reason
    with pytest.raises(ValueError, match=r"^device must be cpu, cuda, cuda:N or auto; got 'gpu'"):
        reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"], device="gpu")


@pytest.mark.parametrize("device", ["gpu", "cuda:01", ""])
def test_a_misspelt_device_is_a_usage_error(device, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["reproduce", "--only", "q1", "--device", device, "--out", str(out)]) == 2
    assert capsys.readouterr().err == ("mlplab reproduce: error: --device must be cpu, cuda, "
                                       f"cuda:N or auto; got {device!r}.\n")
    with pytest.raises(ValueError, match=r"^device must be cpu, cuda, cuda:N or auto; got "):
        reproduce("digits", TINY, out=out, log=False, only=["q1"], device=device)
    assert not out.exists()


def test_reuse_refuses_an_earlier_report_of_another_device(tmp_path, capsys):
    """A different device is a different setting, as a different thread count is: the kept
    sections (Q4's above all) would not be what this command computes."""
    cli = tmp_path / "cli"
    assert main(["reproduce", "--only", "q1", "--device", "auto", "--out", str(cli)]) == 0
    assert main(["reproduce", "--only", "q2", "--reuse", "--out", str(cli)]) == 1
    assert "used a different device (device=auto); its sections would not match. Give " \
           "--device auto to keep them" in capsys.readouterr().err
    py = tmp_path / "py"
    reproduce("digits", TINY, out=py, log=False, only=["q1"], device="auto")
    with pytest.raises(ValueError, match=r"used a different device \(device=auto\); its sections "
                                         r"would not match\. Give device='auto' to keep them"):
        reproduce("digits", TINY, out=py, log=False, only=["q2"], reuse=True)
    reproduce("digits", TINY, out=py, log=False, only=["q2"], reuse=True, device="AUTO")
    doc = json.loads((py / "report.json").read_text())
    assert doc["device"] == "auto" and doc["sections"]["q1"]["status"] == "ok"
    # a report from before --device has none: its Q4 ran on the CPU, the default
    del doc["device"]
    (py / "report.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"used a different device \(device=cpu\); its sections "
                                         r"would not match\. Give device='cpu' to keep them"):
        reproduce("digits", TINY, out=py, log=False, only=["q2"], reuse=True,
                  device="auto")
    reproduce("digits", TINY, out=py, log=False, only=["q2"], reuse=True)
    # a device no mlplab writes: a damaged report, not a setting to match
    doc = json.loads((py / "report.json").read_text())
    (py / "report.json").write_text(json.dumps({**doc, "device": "gpu"}))
    with pytest.raises(ValueError, match="damaged\\? its device is not cpu, cuda, cuda:N or auto"):
        reproduce("digits", TINY, out=py, log=False, only=["q2"], reuse=True)


def _fake_gpu_q4(folder: Path, gpu: str = "NVIDIA H200") -> None:
    """Give the report.json in ``folder`` a Q4 section as a run on a GPU machine wrote it."""
    doc = json.loads((folder / "report.json").read_text())
    q1 = next(s for s in doc["sections"].values() if s["status"] == "ok")
    doc["sections"]["q4"] = {
        **q1, "group": "Q4", "title": "Q4 · PyTorch depth study",
        "data": {"device": "cuda:0", "gpu": gpu, "results": []},
        "blocks": [{"type": "Text", "text": "trained on cuda:0 (NVIDIA H200)"}]}
    (folder / "report.json").write_text(json.dumps(doc))


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs PyTorch")
def test_reuse_names_a_kept_q4_that_ran_on_another_device(tmp_path, monkeypatch):
    """--reuse compares the device setting as given: a report made with --device auto on a GPU
    machine, rerun with --only q1 --reuse --device auto where there is none, kept its Q4 trained
    on the GPU while the introduction named no other environment (a GPU sums in another order
    than the CPU, so its figures are not the ones a run here gives)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"], device="auto")
    _fake_gpu_q4(tmp_path)
    result = reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"], reuse=True,
                       device="auto")
    assert result.reused == ("q4",)
    md = (tmp_path / "report.md").read_text()
    assert "Of those, computed with another environment than this run's: Q4 · PyTorch depth " \
           "study (device cuda:0 (NVIDIA H200) -> cpu). Their figures may differ" in md
    # an explicit --device cuda where this machine has no GPU: Q4 would not train here at all
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"], device="cuda:0")
    _fake_gpu_q4(tmp_path)
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"], reuse=True, device="cuda:0")
    assert "Q4 · PyTorch depth study (device cuda:0 (NVIDIA H200) -> no such GPU here)" in \
        (tmp_path / "report.md").read_text()
    # the same GPU here: nothing to say
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "NVIDIA H200")
    _fake_gpu_q4(tmp_path)
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"], reuse=True, device="cuda:0")
    assert "another environment" not in (tmp_path / "report.md").read_text()



@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs PyTorch")
def test_a_gpu_name_with_markdown_characters_is_shown_as_it_is(tmp_path, monkeypatch):
    """The GPU's name (torch.cuda.get_device_name) went into the Markdown unescaped: a ``*`` or
    ``_`` in it started emphasis in the Q4 section and the Environment table."""
    import torch

    import mlplab.torch_mlp

    name = "GPU *x* _y_ |z"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: name)
    real = mlplab.torch_mlp.device_record
    # the record of a GPU, with that name, for networks trained on the CPU (there is no GPU)
    monkeypatch.setattr(mlplab.torch_mlp, "device_record",
                        lambda device: {**real(torch.device("cuda:0")), "device": "cpu"})
    reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q4"])
    md = (tmp_path / "report.md").read_text()
    escaped = r"GPU \*x\* \_y\_ \|z"
    assert f"device: cpu ({escaped}). *exercise*" in md
    # (md_literal's escaped pipe, escaped again as every table cell's is: still one cell)
    assert "| device | cpu, " + escaped.replace("|", "\\|") + " (Q4's PyTorch networks; " \
           "device='cpu') |" in md
    html = (tmp_path / "report.html").read_text()
    assert f"device: cpu ({name})." in html and f"<td>cpu, {name} (Q4" in html
    assert json.loads((tmp_path / "report.json").read_text())["sections"]["q4"]["data"][
        "gpu"] == name
    # a kept Q4 trained elsewhere: named with it in the introduction
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    kept = tmp_path / "kept"
    reproduce("digits", TINY, out=kept, log=False, only=["q1"], device="auto")
    _fake_gpu_q4(kept, gpu=name)
    reproduce("digits", TINY, out=kept, log=False, only=["q1"], reuse=True, device="auto")
    md = (kept / "report.md").read_text()
    assert f"(device cuda:0 ({escaped}) -> cpu)" in md
    assert "| device | cuda:0, " + escaped.replace("|", "\\|") + " (Q4's" in md
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

#: appended to a copy of the page: after the load event, count images that failed to decode
CHECK_IMAGES = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0);
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-broken", String(broken.length));
  document.body.setAttribute("data-min-width", String(Math.min(...imgs.map(i => i.naturalWidth))));
});
</script>"""


def _chromium() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run_chromium(binary: str, tmp: Path, *args: str) -> str:
    import subprocess

    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    proc = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_html_report_renders_in_headless_chromium(quick_report, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run "
                    "installs it")
    out, _ = quick_report
    html = out / "report.html"
    expected = len(re.findall(r"<img ", html.read_text()))

    shot = tmp_path / "shot.png"
    _run_chromium(binary, tmp_path, "--window-size=1200,2400", f"--screenshot={shot}",
                  html.resolve().as_uri())
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] >= 2000 and img.shape[1] >= 1100
    # rendered text and figures: many colours, and far from a blank white page
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    assert (img.min(axis=2) < 128).mean() > 0.01

    probe = tmp_path / "probe.html"
    probe.write_text(html.read_text().replace("</body>", CHECK_IMAGES + "</body>"))
    dom = _run_chromium(binary, tmp_path, "--virtual-time-budget=20000", "--dump-dom",
                        probe.resolve().as_uri())
    attrs = dict(re.findall(r'data-(images|broken|min-width)="(\d+)"', dom))
    # without PyTorch, Q4 (which has one figure) is "not run"
    assert attrs.get("images") == str(expected) and expected >= (12 if HAVE_TORCH else 11), attrs
    assert attrs["broken"] == "0", "some images of the report did not load"
    assert int(attrs["min-width"]) >= 100


#: a page holding the report in a frame ``width`` px wide (headless Chromium's window is at least
#: 500 px): how wide the report is against its frame, how many numeric cells broke over lines, and
#: where the first table's caption text lies once that table is scrolled all the way to the right
FRAME_WIDTH = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" width="{width}" height="900" style="border:0" srcdoc="{page}"></iframe>
<script>
window.addEventListener("load", () => {{
  const d = document.getElementById("f").contentDocument;
  const broken = Array.from(d.querySelectorAll("td.num")).filter(td => {{
    const r = d.createRange(); r.selectNodeContents(td);
    return new Set(Array.from(r.getClientRects(), q => Math.round(q.top))).size > 1;
  }});
  document.body.setAttribute("data-page", String(d.documentElement.scrollWidth));
  document.body.setAttribute("data-frame", String(d.documentElement.clientWidth));
  document.body.setAttribute("data-wrapped", String(broken.length));
  // the text of the first table's caption once the box that scrolls the table is scrolled to
  // its end
  const table = d.querySelector("table");
  let box = table;
  while (box && getComputedStyle(box).overflowX !== "auto") box = box.parentElement;
  box.scrollLeft = box.scrollWidth;
  const text = d.createRange();
  text.selectNodeContents(d.querySelector("caption, figcaption"));
  const cap = text.getBoundingClientRect();
  document.body.setAttribute("data-scrolled", String(Math.round(box.scrollLeft)));
  document.body.setAttribute("data-caption-left", String(Math.floor(cap.left)));
  document.body.setAttribute("data-caption-right", String(Math.ceil(cap.right)));
  document.body.setAttribute("data-caption-width", String(Math.ceil(cap.width)));
}});
</script></body></html>"""


@pytest.mark.parametrize("width", [400, 1000])
def test_wide_tables_scroll_inside_the_page_on_a_phone(tmp_path, width):
    """The tuning trials (12 columns) and the summary overflowed a phone's screen, and the
    trials the 60rem column on a desktop: the whole page scrolled sideways, the table's right
    columns cut off; numbers such as 3.56e-09 and 14.2 s broke over two lines. Then the
    table scrolled inside the column with its caption: the caption was as wide as the table,
    not wrapped to the screen, and scrolled out of sight with the cells."""
    import html

    binary = _chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    columns = ["trial", "state", "validation", "hidden_size", "lr", "reg", "batch_size",
               "epochs", "lr_decay", "epochs trained", "seconds", "note"]
    rows = [[str(i), "complete", "93.9%", "146", "0.03068", "0.001032", "200", "20", "0.9945",
             "20", "14.2 s", ""] for i in range(5)]
    s = Section("t", "Tuning", "Trials", [
        Table(columns, rows, "Trials (best in bold): 12 complete, 0 pruned, 0 failed"),
        KeyValues([("command", "`mlplab reproduce --out /tmp/a/rather/long/folder/name`")])])
    host = tmp_path / "host.html"
    host.write_text(FRAME_WIDTH.format(width=width,
                                       page=html.escape(to_html("T", [], [s], tmp_path))))
    dom = _run_chromium(binary, tmp_path, "--window-size=1200,900",
                        "--virtual-time-budget=5000", "--dump-dom", host.resolve().as_uri())
    attrs = {k: int(v) for k, v in re.findall(r'data-([a-z-]+)="(-?\d+)"', dom)}
    assert attrs["frame"] == width, attrs
    assert attrs["page"] <= attrs["frame"], attrs
    assert attrs["wrapped"] == 0, attrs
    # the table's cells scroll (on a phone there is somewhere to scroll to), its caption's text
    # stays in view, wrapped to the frame
    assert attrs["scrolled"] > 0 or width > 400, attrs
    assert 0 <= attrs["caption-left"] and attrs["caption-right"] <= width, attrs
    assert attrs["caption-width"] <= width, attrs


# ------------------------------------------------------ which datasets the CIFAR-10 figures fit
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def _tiny_images(shape: tuple[int, int, int], classes: list[str], n: int = 40):
    from mlplab.data.base import Dataset

    rng = np.random.default_rng(0)
    k = len(classes)

    def split(m):
        return (rng.integers(0, 256, (m, *shape), dtype=np.uint8),
                np.arange(m, dtype=np.int64) % k)

    return Dataset("folder:/x", list(classes), *split(n), *split(k), *split(k), source="/x")


@pytest.mark.parametrize("shape, classes, cifar", [
    ((32, 32, 3), CIFAR_CLASSES, True),
    ((32, 32, 3), [c.capitalize() for c in CIFAR_CLASSES], True),  # a folder's own spelling
    ((32, 32, 3), [str(i) for i in range(10)], False),  # ten other classes (a folder of SVHN)
    ((28, 28, 1), CIFAR_CLASSES, False),  # CIFAR-10 made grey and small: not the same task
])
def test_only_cifar10_is_compared_with_the_cifar10_figures(shape, classes, cifar, tmp_path):
    """The targets (29%, 48%) and the 2020 report are CIFAR-10's. Ten classes of 32x32x3 images
    are not enough to take a dataset for CIFAR-10: a folder of other ten classes (digits of
    SVHN) got no "not comparable" caveat in the summary and an unqualified "about 29%"."""
    from mlplab.report.context import Context
    from mlplab.report.stages_summary import stage_summary
    from mlplab.report.stages_training import is_cifar_like

    ds = _tiny_images(shape, classes)
    assert is_cifar_like(ds) is cifar
    data = Section("data", "Data", "", data={"image_shape": list(shape), "classes": classes,
                                             "sizes": {"train": 49000, "val": 1000}})
    ctx = Context(tmp_path, "folder:x", TINY, 0, sections={"data": data})
    summary = Section("summary", "Summary", "")
    stage_summary(ctx, summary)
    text = " ".join(b.text for b in summary.blocks if isinstance(b, Text))
    assert summary.data["comparable"] is cifar
    assert ("not comparable" in text) is not cifar, text


@pytest.mark.parametrize("classes, cifar", [
    ([f" {c.upper()} " for c in CIFAR_CLASSES], True),  # a folder's own spelling and spacing
    (list(reversed(CIFAR_CLASSES)), True),
    (CIFAR_CLASSES[:9] + ["lorry"], False),
    (CIFAR_CLASSES[:9], False),
])
def test_cifar10_is_known_by_its_class_names_in_any_spelling_or_order(classes, cifar):
    from mlplab.report.reference import is_cifar10

    assert is_cifar10((32, 32, 3), classes) is cifar
    assert is_cifar10([32, 32, 3], classes) is cifar
    assert not is_cifar10((32, 32, 1), classes)


def test_summary_without_data_does_not_call_cifar10_not_comparable(tmp_path, monkeypatch):
    """CIFAR-10 not found: the data stage failed and the summary said "this report ran on
    **cifar10**, so the accuracy rows are not comparable with them", a reason that is false
    (it is CIFAR-10) for rows that were never measured."""
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "no-data"))
    r = reproduce("cifar10", TINY, out=tmp_path / "r", log=False, only=["data", "summary"])
    status = {s.key: s.status for s in r.sections}
    assert status["data"] == "not run" and status["summary"] == "ok"
    summary = " ".join(_sections((tmp_path / "r" / "report.md").read_text())["## Summary"]
                       .split())
    assert "not comparable" not in summary and "ran on" not in summary, summary
    assert "The data stage did not run, so no accuracy below was measured" in summary
    assert re.search(r"Q3 default run, validation \| not run", summary)


@pytest.mark.skipif(not HAVE_TORCH, reason="needs PyTorch")
@pytest.mark.parametrize("shape, classes, cifar", [
    ((32, 32, 3), CIFAR_CLASSES, True),
    ((28, 28, 1), [str(i) for i in range(10)], False),  # MNIST-shaped
])
def test_q4_table_shows_the_2020_depths_only_next_to_cifar10(shape, classes, cifar, tmp_path):
    """The Q4 table put the 2020 report's CIFAR-10 train / test accuracies (50.8% / 49.5%, ...)
    in a column beside every dataset's, e.g. 88% on Fashion-MNIST, with no word that they are
    another dataset's; the summary, which says so, still lists them."""
    from mlplab.report.context import Context
    from mlplab.report.stages_torch import stage_q4

    ctx = Context(tmp_path, "folder:x", TINY, 0)
    ctx.shared["dataset"] = _tiny_images(shape, classes)
    section = Section("q4", "Q4", "")
    stage_q4(ctx, section)
    table = next(b for b in section.blocks if isinstance(b, Table))
    assert ("2020 report train / test" in table.columns) is cifar
    assert all(len(row) == len(table.columns) for row in table.rows)
    cells = " ".join(" ".join(row) for row in table.rows)
    assert ("50.8% / 49.5%" in cells) is cifar
    if cifar:  # the 2020 report's runs used the exercise's initialisation, as the summary says
        column = table.columns.index("2020 report train / test")
        by_init = {(row[0], row[1]): row[column] for row in table.rows}
        assert by_init[("exercise", "2")] == "50.8% / 49.5%"
        assert by_init[("default", "2")] == by_init[("default", "3")] == "—"


def test_figure_titles_fit_narrow_grids():
    """A folder of three classes gave a sample grid 2.6 inches wide whose title, the folder's
    path, was cut off at both edges ("port-scratch/folder-rect: sampl"); the same for the weights
    of a net with few hidden units. Titles are now broken into lines that fit."""
    from mlplab import plots
    from mlplab.report.style import report_style

    rng = np.random.RandomState(0)
    samples = "folder:/tmp/report-scratch/a-folder-with-a-long-name: sample train images"
    weights = "Tuned network (the search's best): first-layer weights"
    with report_style():
        figs = [(samples, plots.plot_samples(
                    rng.randint(0, 255, (30, 24, 40, 3), dtype=np.uint8), np.arange(30) % 3,
                    ["cat", "frog", "ship"], title=samples)),
                (weights, plots.plot_first_layer_weights(rng.randn(28 * 28, 32), (28, 28, 1),
                                                         weights))]
    for title, fig in figs:
        fig.canvas.draw()
        text = fig._suptitle
        box = text.get_window_extent(fig.canvas.get_renderer())
        assert 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height, \
            (text.get_text(), box, fig.bbox)
        # the whole title is still there, only broken into lines (at spaces or inside a path)
        assert text.get_text().replace("\n", "").replace(" ", "") == title.replace(" ", "")
        plots.plt.close(fig)


def test_first_layer_weights_say_when_they_show_only_some_units():
    """A network of 120 hidden units shows 100 tiles; the title says which, so that a reader
    does not take them for the whole layer. All units shown: the title as given."""
    import matplotlib.pyplot as plt

    from mlplab import plots

    rng = np.random.RandomState(0)
    for units, title in ((120, "Weights (first 100 of 120 units)"), (100, "Weights"),
                         (30, "Weights")):
        fig = plots.plot_first_layer_weights(rng.randn(48, units), (4, 4, 3), "Weights")
        assert fig._suptitle.get_text().replace("\n", " ") == title
        [image] = fig.axes[0].get_images()
        n = min(units, 100)
        cols = int(np.ceil(np.sqrt(n)))
        assert image.get_array().shape[:2] == (
            4 * -(-n // cols) + (-(-n // cols) - 1), 4 * cols + cols - 1)
        plt.close(fig)


def test_first_layer_weights_of_very_tall_images_keep_their_title_whole_and_clear():
    """A folder of 500x1-pixel images drew its weights in a figure half an inch wide titled
    "First-la / yer / weights", the title's last line over the top of the weights: at least
    1.5 inches wide, and the weights start below the title."""
    import matplotlib.pyplot as plt

    from mlplab import plots

    rng = np.random.RandomState(0)
    for shape in ((500, 1, 1), (300, 2, 1), (8, 8, 1)):
        fig = plots.plot_first_layer_weights(rng.randn(int(np.prod(shape)), 16), shape)
        try:
            fig.canvas.draw()
            assert fig._suptitle.get_text().split() == ["First-layer", "weights"], shape
            assert fig.get_figwidth() >= 1.5
            title = fig._suptitle.get_window_extent()
            assert fig.axes[0].images[0].get_window_extent().y1 < title.y0, shape
            assert title.width < fig.bbox.width
        finally:
            plt.close(fig)


@pytest.mark.parametrize("shape", [(24, 40, 3), (16, 64, 1), (64, 16, 3), (4, 200, 1)])
def test_first_layer_weights_of_non_square_images_fill_their_grid(shape):
    """A folder of 24x40 images got its first-layer weights drawn in square cells, one strip of
    image in each and the rest blank: the tiles covered a third of the figure (an eighth for
    16x64) against over half for square images. Cells now follow the images' shape."""
    from mlplab import plots
    from mlplab.report.style import report_style

    def covered(image_shape):
        rng = np.random.RandomState(0)
        W1 = rng.randn(int(np.prod(image_shape)), 100)
        with report_style():
            fig = plots.plot_first_layer_weights(W1, image_shape, "First-layer weights")
        fig.canvas.draw()
        # one picture of the tiles (a hundred Axes took seconds to build), drawn undistorted
        [ax] = fig.axes
        [image] = ax.images
        mosaic = np.asarray(image.get_array())
        box = image.get_window_extent(fig.canvas.get_renderer())
        assert abs(box.height / box.width - mosaic.shape[0] / mosaic.shape[1]) < 0.02
        # every unit's tile, as weight_tiles gives it, in row-major order
        H, W, C = image_shape
        tiles = plots.weight_tiles(W1, image_shape)
        gap = max(1, round(min(H, W) / 8))
        cols = (mosaic.shape[1] + gap) // (W + gap)
        for i in (0, 1, cols, 99):
            r, c = divmod(i, cols)
            cell = mosaic[r * (H + gap):r * (H + gap) + H, c * (W + gap):c * (W + gap) + W]
            np.testing.assert_array_equal(cell.reshape(H, W, C), tiles[i])
        drawn = sum(t.size for t in tiles) / C * (box.width * box.height) / (
            mosaic.shape[0] * mosaic.shape[1])
        area = drawn / (fig.bbox.width * fig.bbox.height)
        size = tuple(fig.get_size_inches())
        plots.plt.close(fig)
        return area, size

    square, square_size = covered((32, 32, 3))
    assert square_size == (7.0, 7.4)  # square images: the figure as it always was
    assert square > 0.55
    area, size = covered(shape)
    assert area >= 0.9 * square
    assert size[0] >= 6.9  # as wide as a hundred square tiles' (4 x 200 tiles: 1.2 inches once)


def test_sample_grid_of_many_classes_is_readable():
    """A folder of twenty classes drew its class names into each other (15 overlaps) above rows
    of small images in wide gaps (13% of the figure against 50% for ten classes). Names that do
    not fit their column now stand upright, and rows narrow with the columns; ten classes
    (CIFAR-10, Fashion-MNIST) draw as before."""
    from mlplab import plots
    from mlplab.report.style import report_style

    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
             "Bag", "Ankle boot"]

    def draw(k):
        rng = np.random.RandomState(0)
        with report_style():
            fig = plots.plot_samples(rng.randint(0, 255, (10 * k, 28, 28, 1), dtype=np.uint8),
                                     np.arange(10 * k) % k, (names + [n + " 2" for n in names])[:k],
                                     title="sample train images")
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        images = [im.get_window_extent(renderer) for ax in fig.axes for im in ax.images]
        covered = sum(b.width * b.height for b in images) / (fig.bbox.width * fig.bbox.height)
        heads = sorted((ax.title.get_window_extent(renderer) for ax in fig.axes
                        if ax.title.get_text()), key=lambda b: b.x0)
        overlaps = sum(a.x1 > b.x0 for a, b in zip(heads, heads[1:]))
        rotation = fig.axes[0].title.get_rotation()
        size = tuple(fig.get_size_inches())
        plots.plt.close(fig)
        return covered, overlaps, rotation, size

    ten, overlaps, rotation, size = draw(10)
    assert (overlaps, rotation) == (0, 0.0) and size == pytest.approx((7.0, 5.7))  # as before
    twenty, overlaps, rotation, _ = draw(20)
    assert overlaps == 0 and rotation == 90.0
    assert twenty >= 0.4 * ten


def test_sample_grid_gives_upright_names_and_a_wrapped_title_room_of_their_own():
    """Three classes, one long name (upright) and a folder's path as the title (four lines): the
    title was drawn over the names and the first row of images, as the figure kept its height;
    with seven rows the images shrank to half their size. The figure now grows instead."""
    from mlplab import plots
    from mlplab.report.style import report_style

    def draw(per_class, title):
        rng = np.random.RandomState(0)
        with report_style():
            fig = plots.plot_samples(rng.randint(0, 255, (30, 28, 28, 1), dtype=np.uint8),
                                     np.arange(30) % 3, ["cat", "dog", "a_very_long_name" * 2],
                                     per_class=per_class, title=title)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        images = [im.get_window_extent(renderer) for ax in fig.axes for im in ax.images]
        names = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.title.get_text()]
        top = fig._suptitle.get_window_extent(renderer)
        plots.plt.close(fig)
        return images, names, top, fig.dpi

    for per_class, title in ((3, "/tmp/" + "a/long/folder/path/" * 5), (7, "samples")):
        images, names, top, dpi = draw(per_class, title)
        assert max(b.y1 for b in names) <= top.y0  # the title above the names
        assert max(b.y1 for b in images) <= min(b.y0 for b in names)  # the names above the rows
        assert min(b.height for b in images) >= 0.6 * dpi  # (0.33 inches with seven rows)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_environment_gives_mlplabs_commit_not_an_enclosing_projects(tmp_path):
    """mlplab installed into a project's .venv, inside the project's git repository: the report
    gave the project's commit as mlplab's ("mlplab 0.1.0 (git <project's sha>)")."""
    import subprocess

    from mlplab.environment import git_revision

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
                              cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "app.py").write_text("print('the project')\n")
    git("add", "app.py")
    git("commit", "-qm", "the project")
    site = tmp_path / ".venv" / "lib" / "site-packages"  # mlplab/ installed here, untracked
    (site / "mlplab").mkdir(parents=True)
    (site / "mlplab" / "__init__.py").write_text("")
    assert git_revision(site) == "unknown (not a git checkout)"
    # a checkout of mlplab itself (its files tracked): its commit
    (tmp_path / "mlplab").mkdir()
    (tmp_path / "mlplab" / "__init__.py").write_text("")
    git("add", "mlplab/__init__.py")
    git("commit", "-qm", "mlplab")
    assert git_revision(tmp_path) == git("rev-parse", "--short", "HEAD")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_environment_reads_gits_utf8_output_under_an_ascii_locale(tmp_path):
    """git writes a changed file's name in UTF-8 (core.quotePath off); read as text with an
    ASCII locale's codec (LC_ALL=C without UTF-8 mode) it raised UnicodeDecodeError, and
    `mlplab train` failed before it began ("'ascii' codec can't decode byte 0xc3")."""
    import os
    import subprocess
    import sys

    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
                              cwd=tmp_path, check=True, capture_output=True).stdout.strip()

    git("init", "-q")
    git("config", "core.quotePath", "false")
    (tmp_path / "mlplab").mkdir()
    (tmp_path / "mlplab" / "__init__.py").write_text("")
    (tmp_path / "caf\u00e9.txt").write_text("x\n", encoding="utf-8")
    git("add", ".")
    git("commit", "-qm", "mlplab")
    (tmp_path / "caf\u00e9.txt").write_text("changed\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIO"))}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0",
               PYTHONPATH=pythonpath())
    code = ("import sys; from mlplab.environment import git_revision; "
            "print(git_revision(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                         capture_output=True, text=True, encoding="utf-8")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == git("rev-parse", "--short", "HEAD").decode() + "+dirty"


def test_report_number_formats():
    """The report's figures: a missing or NaN value (a diverged run's accuracy) is a dash, never
    'nan%'; durations switch to minutes from two minutes on."""
    from mlplab.report import fmt

    for f in (fmt.pct, fmt.sci, fmt.num):
        assert f(None) == f(math.nan) == "—"
    assert fmt.pct(0.2913) == "29.1%" and fmt.pct(0.5, 0) == "50%"
    assert fmt.sci(3.561e-9) == "3.56e-09" and fmt.num(0.017149) == "0.0171"
    assert fmt.seconds(119.94) == "119.9 s" and fmt.seconds(120) == "2.0 min"
    assert fmt.seconds(5400) == "90.0 min"
    assert fmt.value(0.000123456) == "0.0001235" and fmt.value([64, 0.5]) == "[64, 0.5]"
    assert fmt.passed(True) == "PASS" and fmt.passed(False) == "**FAIL**"


def test_a_report_result_shows_in_a_line_not_the_whole_report(tmp_path):
    """A notebook cell ending in ``reproduce(...)`` printed the dataclass repr of every
    section: each text, table and number of the report (16 KB for three stages)."""
    from mlplab.report.runner import ReportResult

    long = Text("word " * 2000)
    sections = [Section("data", "Data", "", [long]),
                Section("q4", "Q4", "", [long], status="not run", reason="no PyTorch")]
    res = ReportResult(tmp_path, tmp_path / "report.md", tmp_path / "report.html",
                       tmp_path / "report.json", sections, 12.345)
    assert repr(res) == (f"ReportResult(html={str(tmp_path / 'report.html')!r}, sections=2, "
                         "not_run=['q4'], seconds=12.3)")


def test_cli_reproduce_flags_reach_the_report(monkeypatch, tmp_path):
    """Each flag of mlplab reproduce reaches its own argument of reproduce(), and its data
    options reach the loader: one parsed but not passed on would silently write another study
    than the one asked for."""
    import mlplab.data
    import mlplab.report

    class Captured(Exception):
        pass

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs, _args=args)
        raise Captured

    monkeypatch.setattr(mlplab.report, "reproduce", fake)
    with pytest.raises(Captured):
        main(["--debug", "reproduce"])
    assert seen["_args"] == ("digits", "quick", None, 0)
    assert (seen["threads"], seen["only"], seen["reuse"], seen["progress"]) == \
        (1, None, False, False)
    with pytest.raises(Captured):
        main(["--debug", "reproduce", "--dataset", "mnist", "--budget", "standard", "--out",
              str(tmp_path / "r"), "--seed", "5", "--threads", "2", "--only", "data, q1",
              "--reuse", "--progress", "--val-size", "300", "--test-size", "0.25",
              "--image-size", "8", "--data-dir", "/d", "--mirror", "http://m.invalid",
              "--download", "--no-cache"])
    assert seen["_args"] == ("mnist", "standard", str(tmp_path / "r"), 5)
    assert (seen["threads"], seen["only"], seen["reuse"], seen["progress"]) == \
        (2, ["data", "q1"], True, True)
    loaded = {}
    monkeypatch.setattr(mlplab.data, "load_dataset",
                        lambda name, **kw: loaded.update(kw, name=name))
    seen["loader"]()
    assert loaded == {"name": "mnist", "data_dir": "/d", "download": True, "val_size": 300,
                      "test_size": 0.25, "image_size": "8", "seed": 5,
                      "mirror": "http://m.invalid", "cache": False, "progress": True}


def _captured_figures(monkeypatch) -> list:
    """The figures the report's drawing functions save, kept open for the test to read."""
    from mlplab import plots

    kept: list = []
    monkeypatch.setattr(plots, "save", lambda fig, path, dpi=plots.DPI: kept.append(fig) or
                        Path(path))
    return kept


def test_toy_loss_figure_shows_the_final_loss_against_the_exercises_bound(monkeypatch,
                                                                           tmp_path):
    """The toy training's figure is there to show "final loss below 0.02", but on a linear axis
    from 1.2 down the final 0.0171 and the dashed bound 0.02 were on the same pixel row, and a
    running mean that lagged behind the smooth curve crossed the bound 10 iterations late. The
    loss axis is now logarithmic with plain-number ticks, the final loss is marked, and there is
    no running mean."""
    from mlplab.exercise import toy_data, toy_training
    from mlplab.report import figures

    kept = _captured_figures(monkeypatch)
    X, y = toy_data()
    loss = toy_training(X, y)["loss_history"]
    figures.loss_curve(loss, tmp_path / "toy.png", "Toy training", bound=0.02, smooth=False)
    [fig] = kept
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_yscale() == "log"
    labels = {t.get_text() for t in ax.get_yticklabels() if t.get_visible()}
    assert {"0.02", "0.1", "1"} <= labels, labels
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert not any(label.startswith("running mean") for label in lines), list(lines)
    final = lines[f"final loss ({loss[-1]:.4f})"]
    bound = lines["exercise's bound (0.02)"]
    # the two are far enough apart to see which is below: a dozen pixels, not one
    y_final = ax.transData.transform((len(loss), final.get_ydata()[0]))[1]
    y_bound = ax.transData.transform((len(loss), bound.get_ydata()[0]))[1]
    assert y_bound - y_final > 10, (y_bound, y_final)
    # a noisy loss of over 50 iterations keeps its running mean where smooth is not given
    from mlplab import plots

    noisy = plots.plot_loss(np.random.RandomState(0).rand(100) + 1)
    assert [line.get_label() for line in noisy.axes[0].get_lines()][1].startswith(
        "running mean")
    plots.plt.close(noisy)
    plots.plt.close(fig)


def test_tuning_history_ticks_whole_trials_also_for_a_single_trial(monkeypatch, tmp_path):
    """A search of one trial (a custom budget, or all but one trial pruned) was ticked -0.045,
    -0.030, ... 0.045 along its trial axis: no trial is numbered so."""
    from mlplab import plots
    from mlplab.report import figures

    kept = _captured_figures(monkeypatch)
    figures.optimisation_history([(0, "complete", 0.5)], tmp_path / "one.png")
    figures.optimisation_history([(0, "complete", 0.5), (1, "pruned", 0.3),
                                  (2, "complete", 0.6)], tmp_path / "three.png")
    try:
        for fig in kept:
            fig.canvas.draw()
        one, three = (fig.axes[0] for fig in kept)
        assert list(one.get_xticks()) == [0]
        ticks = [t for t in three.get_xticks() if three.get_xlim()[0] <= t <= three.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    finally:
        for fig in kept:
            plots.plt.close(fig)


def test_the_reports_accuracy_figure_of_one_epoch_ticks_that_epoch(monkeypatch, tmp_path):
    """plot_accuracy ticks a one-epoch run at 1, but the report's accuracy figure set a
    MaxNLocator again over it, which finds no whole number in 0.95..1.05 and ticked 0.945,
    0.960, ... 1.050; longer runs keep whole epochs."""
    from mlplab import plots
    from mlplab.report import figures

    kept = _captured_figures(monkeypatch)
    figures.accuracy_curves([0.5], [0.4], tmp_path / "one.png", "one epoch")
    figures.accuracy_curves([0.5, 0.6, 0.7], [0.4, 0.5, 0.6], tmp_path / "three.png", "three")
    try:
        for fig, whole in zip(kept, ([1], None)):
            fig.canvas.draw()
            ax = fig.axes[0]
            low, high = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if low <= t <= high]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
            assert whole is None or ticks == whole, ticks
    finally:
        for fig in kept:
            plots.plt.close(fig)


def test_tuning_history_draws_the_best_so_far_up_to_the_last_trial(monkeypatch, tmp_path):
    """Trials pruned after the last complete one (median pruning, the standard budget) left the
    "best so far" line ending at that complete trial, as if there were no best after it; a
    single trial listed "best so far" in the legend for a line of no length."""
    from mlplab import plots
    from mlplab.report import figures

    kept = _captured_figures(monkeypatch)
    figures.optimisation_history([(0, "complete", 0.5), (1, "complete", 0.7), (2, "pruned", 0.3),
                                  (3, "pruned", 0.2), (4, "pruned", 0.4)], tmp_path / "a.png")
    figures.optimisation_history([(0, "complete", 0.5)], tmp_path / "one.png")
    try:
        pruned_last, single = (fig.axes[0] for fig in kept)
        [best] = [line for line in pruned_last.get_lines() if line.get_label() == "best so far"]
        assert max(best.get_xdata()) == 4 and list(best.get_ydata())[-1] == pytest.approx(70)
        assert "best so far" not in [line.get_label() for line in single.get_lines()]
    finally:
        for fig in kept:
            plots.plt.close(fig)


def test_weight_captions_say_how_many_units_they_show_and_what_grey_means(quick_report):
    """The tuned network's figure shows the first 100 of its hidden units (146 with seed 0) but
    its caption said "one tile per hidden unit"; nor did any caption say that each tile has a
    scale of its own, so that two tiles' shades do not compare."""
    from mlplab.report.figures import weights_caption

    assert weights_caption(146, "the search's best") == (
        "First-layer weights of the search's best, the first 100 of its 146 hidden units; each "
        "tile is scaled from its own lowest weight (black) to its highest (white)")
    assert weights_caption(100).startswith("First-layer weights, one tile per hidden unit;")
    out, _ = quick_report
    s = json.loads((out / "report.json").read_text())["sections"]
    tuned = s["q3_tuned"]["data"]["settings"]
    units = {"q3_default": s["q3_default"]["data"]["config"]["hidden"][0],
             "q3_tuned": tuned.get("hidden_size") or tuned["hidden"][0]}
    for key, n in units.items():
        [caption] = [c for c in _figure_captions(s[key]) if c.startswith("First-layer weights")]
        assert (f"the first 100 of its {n} hidden units" in caption) == (n > 100), caption
        assert ("one tile per hidden unit" in caption) == (n <= 100), caption
        assert "own lowest weight (black)" in caption


def test_toy_training_text_names_the_seed_flag_as_code(tmp_path):
    """The toy section's "(so --seed does not change this section)" was plain text, which the
    HTML page broke across lines as "so -" / "-seed"; a flag is a code span, kept whole."""
    reproduce("digits", TINY, out=tmp_path / "r", log=False, only=["q3_toy"])
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<code>--seed</code> does not change this section" in html
    assert not re.search(r"[^>`-]--seed", (tmp_path / "r" / "report.md").read_text())
    assert "from its 5 samples" in html


def test_trial_times_below_a_second_are_not_shown_as_zero(quick_report):
    """Digits' tuning trials take 0.03-0.2 s: the trials table, to the tenth of a second, gave
    some "0.0" seconds, as if they had not run."""
    from mlplab.report.stages_training import trial_seconds

    assert [trial_seconds(t) for t in ("0.027", "0.113", "0.004", "1.26", "73.04", "")] == \
        ["0.03", "0.11", "< 0.01", "1.3", "73.0", "—"]
    # just below a second rounds to a whole second as the times above one do (not "1.00")
    assert [trial_seconds(t) for t in ("0.994", "0.998", "1.0")] == ["0.99", "1.0", "1.0"]
    out, _ = quick_report
    trials = next(b for b in json.loads((out / "report.json").read_text())["sections"]
                  ["q3_tuning"]["blocks"] if b["type"] == "Table" and
                  b["caption"].startswith("Trials"))
    column = trials["columns"].index("seconds")
    times = [row[column].strip("*") for row in trials["rows"]]
    assert times and not any(re.fullmatch(r"0\.0+", t) for t in times), times


def test_every_link_of_the_report_leads_to_a_file_beside_it(quick_report):
    """The tuning section said only that its files "are in tuning/"; it now links each (the
    trials table, Optuna's plots, the best trial's run folder), and every link of the Markdown
    and the HTML page must lead to a file or folder of the report."""
    out, _ = quick_report
    md = (out / "report.md").read_text()
    links = re.findall(r"(?<!!)\[[^\]]+\]\(([^)\s]+)\)", md)
    assert {"tuning/results.csv", "tuning/results.md", "tuning/optimization_history.png",
            "tuning/best-run/"} <= set(links), links
    html = (out / "report.html").read_text()
    hrefs = [h for h in re.findall(r'<a href="([^"]+)"', html) if not h.startswith("#")]
    assert sorted(hrefs) == sorted(links)
    for rel in links:
        assert (out / rel).exists(), rel
    assert (out / "tuning" / "best-run" / "model.npz").is_file()


def test_environment_names_whose_blas_and_openmp_pools_it_lists(quick_report):
    """The Environment table read "BLAS threads: openblas: 1, openblas: 1, openmp: 1, openmp: 1":
    two of each, and no saying which library (NumPy's, SciPy's, PyTorch's, scikit-learn's) each
    is. Each pool is now named by the package that ships it."""
    from mlplab.environment import _pool_owner

    assert _pool_owner("/v/lib/python3.11/site-packages/numpy.libs/libscipy_openblas64_-3.so") \
        == "numpy"
    assert _pool_owner("/v/lib/python3.11/site-packages/torch/lib/libgomp.so.1") == "torch"
    assert _pool_owner("/v/lib/python3/dist-packages/scikit_learn.libs/libgomp-e9.so.1.0.0") \
        == "scikit-learn"
    assert _pool_owner("/usr/lib/x86_64-linux-gnu/libopenblas.so.0") == "libopenblas"
    out, _ = quick_report
    items = json.loads((out / "report.json").read_text())["sections"]["environment"]["data"][
        "items"]
    pools = items["BLAS threads"].split(", ")
    assert "openblas (numpy): 1" in pools, pools
    # every pool named, and no two alike
    assert all(re.fullmatch(r"\w+ \([\w.-]+\): \d+", p) for p in pools), pools
    assert len(set(pools)) == len(pools), pools


def test_default_run_says_how_far_its_learning_rate_decayed(quick_report):
    """On digits the default run's 1,000 iterations are 142 epochs, and its curves go flat after
    about 50 of them: the per-epoch decay of 0.95 has left a learning rate near zero. The text
    said only that the rate "is too small for so few iterations" (true of CIFAR-10's 4 epochs);
    the Result table now gives the rate of the last iteration, here and on the exercise's split.
    It gave the last whole epoch's, as "the last epoch", and the epochs without the iterations
    after them, which run at one decay more (SPEC: lr decays at the end of each epoch)."""
    out, _ = quick_report
    s = json.loads((out / "report.json").read_text())["sections"]["q3_default"]
    d, cfg = s["data"], s["data"]["config"]
    assert d["epochs"] == d["iterations"] // (1437 // cfg["batch_size"]) == 142
    # 142 whole epochs of 7 iterations, then 6 more at lr x 0.95^142
    assert d["last_lr"] == pytest.approx(cfg["lr"] * cfg["lr_decay"] ** 142)
    result = next(b for b in s["blocks"] if b["type"] == "Table" and b["caption"] == "Result")
    rows = {r[0]: r[1:] for r in result["rows"]}
    ours, exercise = rows["learning rate of the last iteration"]
    assert ours == f"{d['last_lr']:.2e}" == "6.87e-08"
    # CIFAR-10's 49,000 images at batch 200 are 245 iterations an epoch: 4 epochs and 20
    # iterations in 1,000, the 20 in the fifth epoch, after 4 decays
    assert exercise == f"{1e-4 * 0.95 ** 4:.2e} (epoch 5, lr × 0.95 per epoch)"
    assert rows["iterations (epochs)"] == [
        "1000 (142 epochs and 6 iterations)",
        "1000 (4 epochs and 20 iterations of its 49,000 training images)"]


def test_html_contents_lead_to_every_heading(quick_report):
    """The page's contents listed the questions only: Q3's four sections (the default run, the
    search, the tuned network: most of the page) could be reached only by scrolling from its
    top. Every heading with an id is now linked from the contents, each once."""
    out, _ = quick_report
    html = (out / "report.html").read_text()
    nav = re.search(r"<nav>(.*?)</nav>", html, flags=re.S).group(1)
    ids = re.findall(r'<h[23] id="([^"]+)"', html)
    assert {"q3-toy", "q3-default", "q3-tuning", "q3-tuned", "summary"} <= set(ids)
    assert sorted(re.findall(r'href="#([^"]+)"', nav)) == sorted(ids)


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed")
def test_q4_says_which_networks_stayed_at_chance(quick_report):
    """Digits' deeper networks with the exercise's N(0, 1e-3) weights (CIFAR-10's 4 and 5
    layers too) end at 10.0% train and validation: rows that read like results to compare, with
    no word that the networks never learned. The section now names them."""
    from types import SimpleNamespace

    from mlplab.report.stages_torch import at_chance

    rows = [SimpleNamespace(init=i, depth=d, train_acc=t, val_acc=v)
            for i, d, t, v in [("exercise", 2, 0.55, 0.49), ("exercise", 4, 0.100, 0.1),
                               ("exercise", 5, 0.119, 0.101), ("default", 5, 0.10, 0.13)]]
    assert at_chance(rows, 10) == {"exercise": [4, 5]}
    # two classes: 50% is chance, and 55% train is not
    assert at_chance(rows, 2) == {"exercise": [4, 5], "default": [5]}
    out, _ = quick_report
    q4 = json.loads((out / "report.json").read_text())["sections"]["q4"]
    stuck = {}
    for r in q4["data"]["results"]:
        if r["train_acc"] < 0.12 and r["val_acc"] < 0.12:
            stuck.setdefault(r["init"], []).append(str(r["depth"]))
    text = " ".join(b["text"] for b in q4["blocks"] if b["type"] == "Text")
    if stuck:
        names = "; ".join(f"{i} initialisation, {', '.join(d)} layers" for i, d in stuck.items())
        assert f"At chance level (10.0% for 10 classes, train and validation): {names}." in text
    else:
        assert "At chance level" not in text


def test_a_tuning_folder_no_report_made_is_not_replaced_by_the_reports_search(tmp_path):
    """``mlplab tune --out proj/tuning`` then ``mlplab reproduce --out proj``: the report's
    search replaced the user's study without a word (deleted with the staging folder)."""
    theirs = tmp_path / "tuning"
    theirs.mkdir()
    (theirs / "study.db").write_bytes(b"the user's study")
    with pytest.raises(ValueError, match=r"tuning is not a search this folder's report made.*"
                                         r"move it aside"):
        reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_tuning"])
    assert (theirs / "study.db").read_bytes() == b"the user's study"
    # a report that does not search leaves it alone, and so does a later one that does
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"])
    assert (theirs / "study.db").read_bytes() == b"the user's study"
    with pytest.raises(ValueError, match="not a search this folder's report made"):
        reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_tuning"])
    # the report's own search is replaced as before
    shutil.rmtree(theirs)
    reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_tuning"])
    reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_tuning"])
    assert (tmp_path / "tuning" / "summary.json").is_file()


def test_a_second_report_into_a_folder_being_written_is_refused(tmp_path):
    """Two reproduce runs into one --out: the second wiped the first's staging folder, the first
    failed, and the folder ended with one's report beside the other's files."""
    from mlplab.runs.lock import fcntl, run_lock

    if fcntl is None:
        pytest.skip("no flock here: reports are written unlocked")
    tmp_path.mkdir(exist_ok=True)
    with run_lock(tmp_path, new=True, doing="written"):  # as the first report holds it
        with pytest.raises(ValueError, match=r"is being written by another process \(process "
                                             r"\d+ .*\); choose another out"):
            reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"])
    assert not (tmp_path / "report.json").exists()
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"])  # once it is free
    assert not (tmp_path / ".lock").exists() and (tmp_path / "report.json").is_file()


def _stage_replaced(monkeypatch, key, run):
    from mlplab.report import runner as rmod

    monkeypatch.setattr(rmod, "STAGES", [s if s.key != key else rmod.Stage(key, s.group,
                                                                           s.title, run)
                                         for s in rmod.STAGES])


@pytest.mark.parametrize("locked", [True, False], ids=["locked", "unlocked"])
def test_a_report_folder_removed_while_reproduce_runs_is_not_made_again(locked, tmp_path,
                                                                        monkeypatch, capsys):
    """The report folder removed between two stages: the next stages' writes made it again, and
    the command ended with "error: .../figures/data-samples.png: No such file or directory"
    beside a partial report in the folder made again. Where no lock can be taken, the folder's
    own absence tells."""
    import mlplab.runs.lock as lock_module
    from mlplab.report.stages_exercise import stage_q1

    if locked and lock_module.fcntl is None:
        pytest.skip("no flock here: reports are written unlocked")
    if not locked:
        monkeypatch.setattr(lock_module, "fcntl", None)
    out = tmp_path / "rep"

    def q1_then_removed(ctx, section):
        stage_q1(ctx, section)
        shutil.rmtree(ctx.out)

    _stage_replaced(monkeypatch, "q1", q1_then_removed)
    assert main(["reproduce", "--only", "data,q1,q2", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    gone = " (its .lock is gone)" if locked else ""
    assert err.splitlines()[-1] == (
        f"mlplab reproduce: error: {out} was removed or moved while the report was being "
        f"made{gone}, so mlplab reproduce stopped without writing more there; run the same "
        "command again, or reproduce into another --out.")
    assert "reproduce [3/9]" not in err  # Q2 was not begun
    assert not out.exists()


def test_a_report_folder_moved_while_reproduce_runs_keeps_the_earlier_report(tmp_path,
                                                                            monkeypatch):
    """Moved, not deleted: the earlier report goes with the folder as it was, and nothing is
    written where the folder was. From Python the message names the call's argument."""
    from mlplab.report.stages_exercise import stage_q1
    from mlplab.runs.files import RunFolderGoneError

    out, moved = tmp_path / "rep", tmp_path / "moved"
    reproduce("digits", TINY, out=out, log=False, only=["q1"])
    before = (out / "report.json").read_bytes()

    def q1_then_moved(ctx, section):
        stage_q1(ctx, section)
        out.rename(moved)

    _stage_replaced(monkeypatch, "q1", q1_then_moved)
    with pytest.raises(RunFolderGoneError, match=r"rep was removed or moved while the report "
                                                 r"was being made.*; call it again, or "
                                                 r"reproduce into another out\.$"):
        reproduce("digits", TINY, out=out, log=False, only=["q1", "q2"])
    assert not out.exists()
    assert (moved / "report.json").read_bytes() == before


@pytest.mark.parametrize("when", ["figure", "samples", "report", "debug"])
def test_a_report_folder_removed_mid_write_is_not_made_again(when, tmp_path, monkeypatch):
    """Removed while a stage drew a figure (the save made the figure's folder, and so the report
    folder, again; the data stage's sample images were saved by mlplab.data.preview's own
    writer, which did not check) or while the report's files were rendered (report.md and
    report.html were written into a folder made again). With debug, the folder's error is
    raised, not the stage's FileNotFoundError for a figure."""
    import mlplab.plots
    from mlplab.report import runner as rmod
    from mlplab.runs.files import RunFolderGoneError

    out = tmp_path / "rep"
    out.mkdir()  # there before: not removed as a folder that reproduce made, once empty
    if when == "report":
        real = rmod.to_markdown

        def rendered_then_removed(*args, **kwargs):
            text = real(*args, **kwargs)
            shutil.rmtree(out)
            return text

        monkeypatch.setattr(rmod, "to_markdown", rendered_then_removed)
    else:
        drawn = "plot_samples" if when == "samples" else "plot_loss"
        real = getattr(mlplab.plots, drawn)

        def drawn_then_removed(*args, **kwargs):
            fig = real(*args, **kwargs)
            shutil.rmtree(out)
            return fig

        monkeypatch.setattr(mlplab.plots, drawn, drawn_then_removed)
    with pytest.raises(RunFolderGoneError, match=r"rep was removed or moved while the report "
                                                 r"was being made"):
        reproduce("digits", TINY, out=out, log=False,
                  only=["data" if when == "samples" else "q3_toy"], debug=when == "debug")
    assert not out.exists()


def test_a_stage_that_fails_half_way_leaves_only_its_reason(tmp_path, monkeypatch):
    """A figure that could not be written (a full disk) after the stage had written its text
    and drawn two figures: the section showed "Not run" followed by its text pointing at a
    table never written, and the two figures went into figures/ listed by no section."""
    from mlplab.report import figures

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(figures, "weight_images", full_disk)
    r = reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_default"])
    (failed,) = [s for s in r.sections if s.key == "q3_default"]
    assert failed.status == "not run" and "No space left on device" in failed.reason
    assert failed.blocks == [] and failed.data == {}
    listed = {Path(f).name for s in r.sections for f in s.figures()}
    assert {f.name for f in (tmp_path / "figures").iterdir()} == listed
    assert not any(name.startswith("q3-default") for name in listed)


def test_a_report_without_a_validation_split_draws_no_validation_confusion(tmp_path):
    """--val-size 0: the tuned network's "confusion matrix (validation)" was a grid of zeros,
    and its accuracy figure, which draws train accuracy alone, was captioned (and its image's
    alt text read) "Train and validation accuracy per epoch"."""
    from mlplab.data import load_dataset
    from mlplab.report.document import Figure

    r = reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_tuned"],
                  loader=lambda: load_dataset("digits", val_size=0))
    (tuned,) = [s for s in r.sections if s.key == "q3_tuned"]
    assert tuned.status == "ok", tuned.reason
    assert tuned.figures() and not any("confusion" in f for f in tuned.figures())
    [accuracy] = [b.caption for b in tuned.blocks
                  if isinstance(b, Figure) and b.path.endswith("-accuracy.png")]
    assert accuracy.startswith("Train accuracy per epoch"), accuracy
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'alt="Train accuracy per epoch' in page and 'alt="Train and validation' not in page


def test_a_search_folder_of_a_report_written_before_owns_tuning_is_its_own(tmp_path):
    """A report.json of before ``owns_tuning`` whose search failed after making its folder
    (then moved into place too): its tuning/ was refused as a folder of the user's."""
    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "summary.json").write_text("{}")
    (tmp_path / "report.json").write_text(json.dumps({"dataset": "digits", "sections": {
        "q3_tuning": {"status": "not run",
                      "reason": "failed with RuntimeError: no tuning trial completed."}}}))
    reproduce("digits", TINY, out=tmp_path, log=False, only=["data", "q3_tuning"])
    assert json.loads((tmp_path / "report.json").read_text())["owns_tuning"] is True


HOSTILE_CLASSES = ["*e*", "<b>x", "[l](y.html)", "a&b|c", "~~s~~", "$x^$", "**p", "q*"]


def test_hostile_folder_and_class_names_are_shown_as_written(tmp_path):
    """A folder's path and its class names went into the report as Markdown: ``*e*`` became
    italic, ``[l](y.html)`` a link, ``<b>`` raw HTML left open in report.md, ``**p`` and ``q*``
    cross-nested <strong> and <em> in report.html, a backtick in the path ended its code span,
    and a class named ``$x^$`` failed the data stage (Matplotlib read it as maths). Every name
    now shows as written, in both renderings and the figures, and report.html is well-formed."""
    import html as html_module
    from html.parser import HTMLParser

    from mlplab.data.base import Dataset

    rng = np.random.default_rng(0)
    k = len(HOSTILE_CLASSES)

    def split(m):
        return (rng.integers(0, 256, (m, 8, 8, 1), dtype=np.uint8),
                np.arange(m, dtype=np.int64) % k)

    source = "/data/a`b *c* [l](z) <i>"
    ds = Dataset("folder:" + source, list(HOSTILE_CLASSES), *split(8 * k), *split(2 * k),
                 *split(2 * k), source=source)
    res = reproduce("folder:" + source, TINY, out=tmp_path / "r", log=False, only=["data"],
                    loader=lambda: ds)
    assert res.sections[0].status == "ok", res.sections[0].reason
    page = (tmp_path / "r" / "report.html").read_text()

    class Nesting(HTMLParser):
        VOID = {"meta", "img", "br", "hr", "link", "input"}

        def __init__(self):
            super().__init__()
            self.open, self.errors = [], []

        def handle_starttag(self, tag, attrs):
            if tag not in self.VOID:
                self.open.append(tag)

        def handle_endtag(self, tag):
            if not self.open or self.open.pop() != tag:
                self.errors.append(tag)

    checker = Nesting()
    checker.feed(page)
    assert checker.errors == [] and checker.open == []
    data_html = page[page.index('id="data"'):]
    listed = ", ".join(html_module.escape(c, quote=False) for c in HOSTILE_CLASSES)
    assert f"classes ({listed})" in data_html
    assert f"<code>{html_module.escape(source)}</code>" in data_html
    assert 'href="y.html"' not in page and 'href="z"' not in page
    md = (tmp_path / "r" / "report.md").read_text()
    assert "``/data/a`b *c* [l](z) <i>``" in md  # a fence longer than the backtick inside
    assert r"(\*e\*, \<b\>x, \[l\]\(y.html\), a\&b\|c, \~\~s\~\~, \$x^\$, \*\*p, q\*)" in md
    assert md.startswith(r"# mlplab study report: folder:/data/a\`b \*c\* \[l\]\(z\) \<i\>")


def test_md_literal_keeps_a_message_on_one_line_and_md_code_fences_any_backticks():
    import html

    from mlplab.report.rendering import _inline_html, md_code, md_literal

    message = "first line\n\n# heading?\n- a list item\r\n    indented &amp; ~~x~~ $y$"
    literal = md_literal(message)
    assert "\n" not in literal and "\r" not in literal
    assert _inline_html(literal) == html.escape(" ".join(message.splitlines()), quote=False)
    for text in ("plain", "a`b", "``x", "x`", " padded ", "a ``` b"):
        code = md_code(text)
        assert _inline_html(f"run {code} now") == f"run <code>{html.escape(text)}</code> now"
    assert md_code("a`b") == "``a`b``" and md_code("`x") == "`` `x ``"
    assert md_code("") == ""  # not two backticks shown as such
    # an escaped backslash ends before the code span after it; an escaped backtick opens none
    assert _inline_html(md_literal("C:\\") + md_code("x")) == "C:\\<code>x</code>"
    assert _inline_html(md_literal("a`b") + " c`") == "a`b c`"


def test_environment_shows_a_cpu_name_with_markdown_characters_as_it_is(tmp_path, monkeypatch):
    """The Environment table's CPU model (and BLAS pools, platform, OMP_NUM_THREADS: strings of
    the machine, not of mlplab) went into the Markdown unescaped, as GPU names no longer do:
    ``*`` and ``_`` in one read as emphasis, in report.md and report.html alike. So did the CPU of
    a kept section's environment in the introduction. They are escaped as GPU names are."""
    from mlplab import environment as env

    old, new = "Old_CPU *9_9*", "Intel_Xeon *Gold* 6_1"
    monkeypatch.setenv("OMP_NUM_THREADS", "_2_")
    monkeypatch.setattr(env, "cpu_model", lambda: old)
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q1"])
    monkeypatch.setattr(env, "cpu_model", lambda: new)
    reproduce("digits", TINY, out=tmp_path, log=False, only=["q3_toy"], reuse=True)
    md = (tmp_path / "report.md").read_text()
    assert re.search(r"^\| CPU \| Intel\\_Xeon \\\*Gold\\\* 6\\_1, \d+ logical cores \|$", md,
                     re.MULTILINE), md
    assert "| OMP_NUM_THREADS | \\_2\\_ |" in md
    assert re.search(r"\(CPU Old\\_CPU \\\*9\\_9\\\*, \d+ logical cores -> "
                     r"Intel\\_Xeon \\\*Gold\\\* 6\\_1, \d+ logical cores\)", md), md
    html = (tmp_path / "report.html").read_text()
    assert re.search(r"<td>Intel_Xeon \*Gold\* 6_1, \d+ logical cores</td>", html), html
    assert "<td>_2_</td>" in html
    assert re.search(r"\(CPU Old_CPU \*9_9\*, \d+ logical cores -&gt; "
                     r"Intel_Xeon \*Gold\* 6_1, \d+ logical cores\)", html), html
    assert "<em>" not in html
    # report.json keeps the names as they are
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["sections"]["environment"]["data"]["items"]["CPU"].startswith(new + ", ")
    assert doc["sections"]["q1"]["origin"]["environment"]["CPU"].startswith(old + ", ")
