"""mlplab.tuning in one process: the search space and its YAML validation, the objective against
an independent training run, pruning, the grid sampler, resuming, outputs and the CLI."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from PIL import Image
from repo_path import pythonpath

from mlplab.cli import main
from mlplab.data import load_dataset, make_preprocessing
from mlplab.models import MLP
from mlplab.trainer import Callback, TrainConfig, Trainer
from mlplab.tuning import (
    EXERCISE_SPACE,
    EXTENDED_SPACE,
    SearchSpace,
    StorageSpec,
    TuningData,
    build,
    make_pruner,
    prepare,
    storage_spec,
    tune,
)
from mlplab.tuning.space import KNOBS
from mlplab.tuning.storage import dead_worker_line, journal_file_backend

TINY = {"hidden_size": {"type": "int", "low": 8, "high": 32},
        "lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
        "epochs": 3, "batch_size": 64}


@pytest.fixture(scope="module")
def digits() -> TuningData:
    return prepare(load_dataset("digits", seed=0), "standardize")


# --------------------------------------------------------------------------- search space
def test_builtin_spaces_cover_the_exercise_knobs():
    space = SearchSpace.load(None)
    assert set(space.params) == {"hidden_size", "lr", "reg", "batch_size", "epochs", "lr_decay"}
    assert space.params["lr"].log and space.params["reg"].log
    assert space.fixed == {"optimizer": "sgd"}
    extended = SearchSpace.load("extended")
    assert {"optimizer", "depth", "dropout"} <= set(extended.params)
    for spec in (EXERCISE_SPACE, EXTENDED_SPACE):  # the dict form round-trips
        s = SearchSpace.from_dict(spec)
        assert SearchSpace.from_dict(s.to_dict()).to_dict() == s.to_dict()
    # every built-in knob has a finite grid for --sampler grid
    assert len(list(itertools.product(*space.grid().values()))) == 4 * 3 * 3 * 4 * 3 * 3


def test_yaml_search_space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("""
# PyYAML reads 1e-4 (no dot) as a string; it must still be a number
lr: {type: float, low: 1e-4, high: 1.0e-1, log: true}
hidden_size: {type: int, low: 50, high: 500, step: 50}
optimizer: [sgd, adam]
batchnorm: true
reg: 0.001
""")
    space = SearchSpace.load(path)
    assert space.params["lr"].low == 1e-4 and space.params["lr"].high == 0.1
    assert space.params["hidden_size"].step == 50
    assert space.params["optimizer"].choices == ("sgd", "adam")
    assert space.fixed == {"batchnorm": True, "reg": 0.001}
    assert space.params["hidden_size"].grid_values() == list(range(50, 501, 50))
    # named by its file, as every other mistake in it is (it said "search space: ...")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: the grid sampler needs a "
                                         "finite list of values for lr; add `grid"):
        space.grid()


@pytest.mark.parametrize("text, message", [
    ("- lr\n- reg\n", "expected a mapping of knob names.*; got list"),
    ("{}\n", "expected a mapping of knob names.*; got an empty mapping"),  # not "got dict"
    ("", r"holds nothing \(it is empty, or only comments\); give a mapping of knob"),
    ("# a comment\n", r"holds nothing \(it is empty, or only comments\)"),  # not "got NoneType"
    ("learning_rate: {type: float, low: 0.1, high: 1}\n", "unknown knob 'learning_rate'.*lr"),
    ("lr: {type: float, low: 0.1, high: 0.01}\n", r"`low` \(0.1\) must be below `high`"),
    ("reg: {type: float, low: 0.0, high: 0.1, log: true}\n", "log-uniform range needs `low` > 0"),
    ("lr: {type: float, low: -1, high: 0.1}\n", "lr must satisfy 0 < lr"),
    ("lr: {type: float, low: 0.01, high: 0.1, scale: log}\n", "unknown key.*scale"),
    ("lr: {type: normal, low: 0.01, high: 0.1}\n", "`type` must be float, int or categorical"),
    ("lr: {type: float, low: 0.01}\n", "needs `low` and `high`"),
    ("hidden_size: {type: float, low: 8, high: 64}\n", "integer knob; use `type: int`"),
    ("hidden_size: {type: int, low: 8.5, high: 64}\n", "hidden_size must be an integer"),
    ("dropout: {type: float, low: 0.0, high: 1.0}\n", "dropout must satisfy 0 <= dropout < 1"),
    ("optimizer: [sgd, rmsprop]\n", "optimizer must be one of sgd, momentum, nesterov, adam"),
    ("optimizer: {type: float, low: 0, high: 1}\n", "str knob can only be fixed or categorical"),
    ("batch_size: []\n", "`choices` must be a non-empty list"),
    ("lr: {type: float, low: 0.01, high: 0.1, grid: [0.5]}\n", r"grid values \[0.5\] lie outside"),
    ("epochs: {type: int, low: 1, high: 9, step: 2, log: true}\n", "`step` and `log` cannot"),
    ("reg: 0.1\n", "nothing to search"),
    ("lr: {type: float, low: [0.1], high: 1}\n", "lr must be a finite number"),
    ("lr: .nan\nbatch_size: [64, 128]\n", "lr must be a finite number"),
    ("reg: {type: float, low: 0.0, high: .inf}\n", "reg must be a finite number"),
    ("hidden_size: {type: int, low: 8, high: .inf}\n", "hidden_size must be an integer"),
    ("lr: {type: float\n", "is not valid YAML"),
    ("batchnorm: 1\nlr: [0.1, 0.2]\n", "batchnorm must be true or false"),
    ("hidden_size: true\nlr: [0.1, 0.2]\n", "hidden_size must be an integer"),
    ("depth: {type: int, low: 1, high: 2}\n", "depth > 1 needs hidden_size"),
    ("batch_size: [64, 128, 64]\n", "`choices` has duplicates"),
    ("lr: {type: float, low: 0.1, high: 0.1}\n", r"`low` \(0.1\) must be below `high`"),
    ("epochs: {type: int, low: 1, high: 9, step: 0}\n", "`step` must be a positive integer"),
    ("epochs: {type: int, low: 1, high: 9, step: 1.5}\n", "`step` must be a positive integer"),
])
def test_yaml_validation_errors_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        SearchSpace.load(path)


def test_missing_search_space_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*built-in spaces: exercise, extended"):
        SearchSpace.load(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="is a folder, not a file.*built-in spaces"):
        SearchSpace.load(tmp_path)
    if hasattr(os, "mkfifo"):  # it exists: "does not exist" sent the user looking for a typo
        os.mkfifo(tmp_path / "fifo.yaml")
        with pytest.raises(ValueError, match=r"fifo.yaml is a named pipe \(FIFO\), not a "
                                             r"regular file \(give a YAML file"):
            SearchSpace.load(tmp_path / "fifo.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"lr: [0.1, \xe9]\n")
    with pytest.raises(ValueError, match=r"latin1.yaml is not a UTF-8 text file \(invalid "):
        SearchSpace.load(tmp_path / "latin1.yaml")


@pytest.mark.parametrize("text, where", [
    ("lr: {type: float, low: 0.01, high: 0.1}\nepochs: 3\nlr: 0.05\n", "'lr'.*lines 1 and 3"),
    ("lr: {type: float, low: 0.01, low: 0.1, high: 1}\n", "'low'.*line 1"),
])
def test_a_key_given_twice_in_a_yaml_space_is_refused(tmp_path, text, where):
    """YAML keeps the last of two equal keys: `lr` searched in one line and fixed in a later one
    was silently fixed. A merge key (`<<`) may still be overridden."""
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: the key {where}\), and "
                                         r"YAML would keep only the last one; remove the other\.$"):
        SearchSpace.load(path)
    path.write_text("lr: {<<: {type: float, low: 0.5, high: 0.9}, low: 0.01}\nepochs: 3\n")
    assert SearchSpace.load(path).params["lr"].low == 0.01


def test_build_maps_knobs_to_model_and_trainer():
    model, config = build({"hidden_size": 20, "depth": 3, "dropout": 0.1, "lr": 0.05,
                           "reg": 1e-3, "epochs": 4, "optimizer": "adam", "batch_size": 32},
                          input_size=12, num_classes=5, seed=7)
    assert model.config["hidden_sizes"] == [20, 20, 20]
    assert model.config["dropout"] == 0.1 and model.config["seed"] == 7
    assert (config.lr, config.reg, config.epochs, config.optimizer, config.batch_size,
            config.seed) == (0.05, 1e-3, 4, "adam", 32, 7)
    default_model, _ = build({"lr": 0.1}, 12, 5)
    assert default_model.config["hidden_sizes"] == [50]  # the exercise's hidden size


def _trainable(settings):
    """Whether the model and TrainConfig that build() makes of ``settings`` accept them: the
    checks a trial's training runs."""
    try:
        _, config = build(settings, input_size=4, num_classes=3)
        config.validate()
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", [n for n, k in KNOBS.items() if k.kind in ("int", "float")])
def test_a_knobs_bounds_are_the_ones_training_accepts(name):
    """Each numeric knob's range (open or closed at either end) against the model's and the
    trainer's own checks, just below, at and just above each bound: a value the space lets
    through fails every trial; one it refuses is a setting the user cannot search."""
    knob = KNOBS[name]
    nudge = 1 if knob.kind == "int" else 1e-9
    # depth > 1 needs a hidden_size; weight_decay applies to adam only
    fixed = {"hidden_size": 8} if name != "hidden_size" else {}
    if name == "weight_decay":
        fixed["optimizer"] = "adam"
    searched = "reg" if name == "lr" else "lr"
    for bound in (knob.lo, knob.hi):
        if bound is None:
            continue
        for value in (bound - nudge, bound, bound + nudge):
            value = int(value) if knob.kind == "int" else float(value)
            if (name, value) == ("depth", 0):
                continue  # no hidden layer: an MLP may be one, a searched depth may not
            try:
                SearchSpace.from_dict({**fixed, name: value, searched: [0.1, 0.2]})
                accepted = True
            except ValueError:
                accepted = False
            assert accepted is _trainable({**fixed, name: value}), (name, value)


def test_a_space_round_trips_through_its_dict_form():
    """A study pins its space as to_dict() and compares it when resumed: a key lost on the way
    (log, step, grid) would let a resume with another distribution mix the two."""
    space = SearchSpace.from_dict({
        "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True, "grid": [1e-3, 1e-2]},
        "epochs": {"type": "int", "low": 5, "high": 20, "step": 5},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.25},
        "optimizer": ["sgd", "adam"], "reg": 0.001})
    again = SearchSpace.from_dict(space.to_dict())
    assert again.params == space.params and again.fixed == space.fixed
    assert space.params["lr"].log and space.params["epochs"].step == 5
    assert space.params["dropout"].step == 0.25


def test_int_ranges_are_sampled_on_their_step():
    space = SearchSpace.from_dict({"epochs": {"type": "int", "low": 5, "high": 20, "step": 5},
                                   "hidden_size": {"type": "int", "low": 8, "high": 64,
                                                   "log": True}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        settings = space.suggest(study.ask())
        seen.add(settings["epochs"])
        assert 8 <= settings["hidden_size"] <= 64
    assert seen == {5, 10, 15, 20}


def test_an_int_grid_is_expanded_up_to_64_values():
    """--sampler grid expands an int range without `grid` when it has at most 64 values."""
    space = SearchSpace.from_dict({"epochs": {"type": "int", "low": 1, "high": 64}})
    assert space.grid() == {"epochs": list(range(1, 65))}
    with pytest.raises(ValueError, match="finite list of values for epochs"):
        SearchSpace.from_dict({"epochs": {"type": "int", "low": 1, "high": 65}}).grid()


@pytest.mark.parametrize("spec, most", [
    ({"lr": [0.1, 0.2]}, TrainConfig().epochs),  # epochs left at the trainer's default
    ({"epochs": [5, 20, 10]}, 20),
    ({"epochs": {"type": "int", "low": 2, "high": 7}}, 7),
    ({"epochs": 4, "lr": [0.1, 0.2]}, 4),
])
def test_hyperbands_resource_is_the_most_epochs_a_trial_trains(spec, most):
    space = SearchSpace.from_dict(spec)
    assert space.max_epochs() == most
    assert make_pruner("hyperband", space, 10)._max_resource == most


@pytest.mark.parametrize("folder", ["q?x", "p%41", "h#1", "rép ort"])
def test_a_sqlite_storage_is_the_file_named_whatever_its_path_holds(tmp_path, folder):
    """The default storage's URL was the path pasted after sqlite:///: under --out 'q?x' the
    study went to the file 'q' (two --out folders 'q?x' and 'q?y' then shared one study), and
    under 'p%41' to 'pA/study.db'. SQLAlchemy reads the URL back to the file itself, which
    Optuna then creates."""
    import optuna
    import sqlalchemy
    from sqlalchemy.engine import make_url

    out = tmp_path / folder
    for given, file in [(None, out / "study.db"), (str(out / "own.db"), out / "own.db")]:
        if folder == "q?x" and tuple(map(int, sqlalchemy.__version__.split(".")[:2])) < (2, 1):
            # before 2.1 SQLAlchemy neither quotes nor unquotes the database: refused by name
            with pytest.raises(ValueError, match=r"q\?x.*cannot be named in a database URL by "
                                                 r"this SQLAlchemy .*such as '\?'"):
                storage_spec(given, out)
            return
        url = storage_spec(given, out).url
        assert make_url(url).database == str(file.resolve())
        out.mkdir(exist_ok=True)
        optuna.create_study(study_name="s", storage=url)
        assert file.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [folder]


def test_a_sqlite_storage_path_that_is_not_text_is_refused_by_name(tmp_path):
    """A folder name Python could not decode (Latin-1 bytes; any non-ASCII name under an ASCII
    locale) holds lone surrogates, which SQLAlchemy cannot quote into a URL: `mlplab tune --out`
    there failed with "'utf-8' codec can't encode character '\\udce9' ...: surrogates not
    allowed", naming neither the file nor a way out."""
    import os

    out = tmp_path / os.fsdecode(b"r\xe9sultats")
    for given in (None, str(out / "own.db")):
        with pytest.raises(ValueError, match=r"r\udce9sultats.*cannot be named in a database "
                                             r"URL: its path holds bytes that are not .* text.*"
                                             r"journal:FILE\.log"):
            storage_spec(given, out)
    assert storage_spec(f"journal:{out}/study.log", out).url.startswith("journal:")


def test_storage_spec_parsing(tmp_path, monkeypatch):
    from sqlalchemy.engine import make_url

    assert storage_spec(None, tmp_path).url == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    assert storage_spec("journal:x/j.log", tmp_path).url.startswith("journal:/")
    assert storage_spec("runs/shared.log", tmp_path).url.endswith("runs/shared.log")
    assert storage_spec("a.db", tmp_path).url.startswith("sqlite:////")
    # a relative SQLite URL is made absolute, as a .db path is: recorded in summary.json and the
    # printed commands, it named another file from any other folder
    monkeypatch.chdir(tmp_path)
    for given in ("sqlite:///rel/s.db", "sqlite+pysqlite:///rel/s.db?timeout=5"):
        made = make_url(storage_spec(given, tmp_path).url)
        assert made.database == str((tmp_path / "rel" / "s.db").resolve())
        assert made.drivername == make_url(given).drivername and made.query == make_url(given).query
    absolute = f"sqlite:///{(tmp_path / 'abs.db').resolve()}"
    assert storage_spec(absolute, tmp_path).url == absolute
    url = "postgresql://me:secret@db.example/optuna"
    spec = storage_spec(url, tmp_path)
    assert spec.url == url and "secret" not in spec.display
    with pytest.raises(ValueError, match="unrecognised storage"):
        storage_spec("somewhere", tmp_path)
    with pytest.raises(ValueError, match="grace period"):
        storage_spec(None, tmp_path, heartbeat=10, grace=5)
    assert storage_spec(None, tmp_path, heartbeat=0).heartbeat is None
    with pytest.raises(ValueError, match="grace period"):  # as long: still every trial dead
        storage_spec(None, tmp_path, heartbeat=10, grace=10)
    assert storage_spec(None, tmp_path, heartbeat=10, grace=11).grace == 11
    assert storage_spec("runs/Shared.LOG", tmp_path).url.startswith("journal:/")
    assert storage_spec("Study.DB", tmp_path).url.startswith("sqlite:////")
    # a grace period without heartbeats was ignored without a word: no crash detection at all
    for off in (0, None, -5):  # named as given: heartbeat=None for 0 named what no one typed
        with pytest.raises(ValueError, match=rf"^grace needs heartbeats, which heartbeat={off} "
                                             r"turns off; give heartbeat=S with S below"):
            storage_spec(None, tmp_path, heartbeat=off, grace=60)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://",
                                 "sqlite:///file:s?mode=memory&uri=true"])
def test_an_in_memory_sqlite_storage_is_refused(tmp_path, url):
    """An in-memory study ended with the command, which then said to run it again to go on with
    it (and Optuna's heartbeat thread printed tracebacks: another thread has no such table)."""
    with pytest.raises(ValueError, match=rf"^storage {re.escape(repr(url))} is an in-memory "
                                         r"SQLite database, .* give a file: "
                                         r"storage=sqlite:///FILE\.db \(or FILE\.db\)\.$"):
        storage_spec(url, tmp_path)
    assert storage_spec(f"sqlite:///{tmp_path / 's.db'}", tmp_path).url.endswith("s.db")


@pytest.mark.parametrize("given", ["x.db", "sqlite:///{}/x.db", "x.log", "journal:{}/x.log",
                                   None])
@pytest.mark.parametrize("kind", ["folder", "pipe"])
def test_a_storage_that_is_not_a_file_is_refused_as_what_it_is(tmp_path, monkeypatch, given,
                                                               kind):
    """A named pipe hung the command (opening it waits for a writer) and a folder gave SQLite's
    "unable to open database file"."""
    if kind == "pipe" and not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    monkeypatch.chdir(tmp_path)
    name = "study.db" if given is None else Path(given).name
    (os.mkdir if kind == "folder" else os.mkfifo)(tmp_path / name)
    what = "a folder" if kind == "folder" else r"a named pipe \(FIFO\)"
    how = r"move it away, or choose another out" if given is None else \
        r"give storage the path of a file \(FILE\.db or FILE\.log\)"
    with pytest.raises(ValueError, match=rf"^storage \S*{name} is {what}, not a file; {how}\.$"):
        storage_spec(given and given.format(tmp_path), tmp_path)


def test_a_storage_whose_driver_is_missing_names_the_driver(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pymysql", None)  # not importable, installed or not
    with pytest.raises(RuntimeError) as err:
        storage_spec("mysql+pymysql://me@db.example/optuna", tmp_path).open()
    message = str(err.value)
    assert "(module pymysql) is not installed" in message and "postgres" not in message


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_sqlite_study_is_named(tmp_path, monkeypatch, what):
    """A read-only study.db (or folder: SQLite writes its -wal and -shm beside it) failed at
    Optuna's first commit, "An exception is raised during the commit ... exceeding max
    length", naming neither the file nor the cause. (os.access is asked: root, as in CI,
    passes any permission bits, so the test says what it answers.)"""
    import os

    from mlplab.tuning import storage

    db = tmp_path / "s.db"
    db.write_bytes(b"")
    locked = db if what == "file" else tmp_path
    real = os.access
    monkeypatch.setattr(storage.os, "access",
                        lambda p, mode: False if Path(p) == locked else real(p, mode))
    with pytest.raises(RuntimeError, match=rf"^cannot write the SQLite storage \S*s\.db: "
                                           rf"{'the file' if what == 'file' else 'its folder'} is "
                                           r"read-only; make it writable, or copy the study "
                                           r"elsewhere and give storage the copy\.$"):
        storage_spec(str(db), tmp_path).open()


@pytest.mark.parametrize("content", [b"garbage\n", b"\xff\xfe\x00 not text\n",
                                     b'{"level": "info", "msg": "another program"}\n', b"1\n2\n"])
def test_a_damaged_journal_file_is_named(tmp_path, content):
    """A journal file that is not one said only "Expecting value: line 1 column 1 (char 0)".
    (Optuna passes over a bad last line, a write in progress; not one with lines after it.)"""
    (tmp_path / "bad.log").write_bytes(content + b'{"op_code": 0}\n')
    with pytest.raises(RuntimeError, match=r"^cannot open storage journal:\S*bad\.log: it is "
                                           r"not an Optuna journal file \(.*\); give another "
                                           r"file, or move this one away if it is damaged\.$"):
        storage_spec(str(tmp_path / "bad.log"), tmp_path).open()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_file_of_one_line_not_a_journals_is_refused_and_left_as_it_was(digits, tmp_path):
    """Optuna passes over a last line it cannot read (a write in progress): a file of one such
    line was opened as an empty journal, the study appended to it, and the error came from
    create_study, bare ("Expecting value: line 1 column 1 (char 0)"). A first line still being
    written is let through."""
    bad = tmp_path / "bad.log"
    for content, why in [(b"garbage\n", "its first line is not JSON: Expecting value"),
                         (b"garbage", "its first line is not a JSON object"),
                         (b"\n", "its first line is not JSON: Expecting value"),
                         (b'{"level": "info"}\n', "its first line is not an Optuna operation")]:
        bad.write_bytes(content)
        with pytest.raises(RuntimeError, match=rf"^cannot open storage journal:\S*bad\.log: it "
                                               rf"is not an Optuna journal file \({why}.*\); give "
                                               "another file, or move this one away"):
            tune(digits, trials=1, search_space=TINY, storage=str(bad), out=tmp_path / "o",
                 search_only=True, progress=False)
        assert bad.read_bytes() == content
    bad.write_bytes(b'{"op_code": 0, "worker_id": "a-1", "study_na')  # (being written)
    storage_spec(str(bad), tmp_path).open()


def test_journal_storage_fails_trials_without_heartbeat(tmp_path):
    """Optuna's fail_stale_trials works on journal files through mlplab's heartbeat."""
    spec = StorageSpec(f"journal:{tmp_path / 'j.log'}", heartbeat=1, grace=2)
    study = optuna.create_study(storage=spec.open(), study_name="s", direction="maximize")
    alive, dead = study.ask(), study.ask()
    dead.suggest_float("lr", 0.01, 0.1)
    storage = study._storage
    storage.record_heartbeat(alive._trial_id)
    storage.record_heartbeat(dead._trial_id)
    storage.set_trial_system_attr(dead._trial_id, "mlplab:heartbeat", time.time() - 10)
    optuna.storages.fail_stale_trials(study)
    # read back through a fresh, plain journal storage
    plain = optuna.storages.JournalStorage(journal_file_backend(tmp_path / "j.log"))
    trials = optuna.load_study(study_name="s", storage=plain).trials
    assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].params == trials[1].params  # re-queued once with the same settings
    assert trials[2].system_attrs["failed_trial"] == 1


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_a_journal_retry_taken_up_by_a_live_worker_is_not_stale_at_once(tmp_path):
    """Optuna's retry copies the failed trial's system attributes, the dead worker's last
    heartbeat among them: a live worker that took the retry up ran a trial that was stale
    from its start until its own first heartbeat, and any process checking in that instant
    (a worker starting its next trial, a rerun's wait) failed it, and, as a retry, it was not
    re-queued again: its settings never ran."""
    spec = StorageSpec(f"journal:{tmp_path / 'j.log'}", heartbeat=1, grace=2)
    study = optuna.create_study(storage=spec.open(), study_name="s", direction="maximize")
    dead = study.ask()
    dead.suggest_float("lr", 0.01, 0.1)
    storage = study._storage
    storage.set_trial_system_attr(dead._trial_id, "mlplab:heartbeat", time.time() - 10)
    optuna.storages.fail_stale_trials(study)
    retry = study.ask()  # a live worker takes up the re-queued settings
    attrs = storage.get_trial(retry._trial_id).system_attrs
    assert attrs["failed_trial"] == dead.number and "mlplab:heartbeat" not in attrs
    optuna.storages.fail_stale_trials(study)  # another process, before the first heartbeat
    assert storage.get_trial(retry._trial_id).state == TrialState.RUNNING


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_a_journal_trial_is_stale_only_after_twice_its_heartbeat(tmp_path):
    """The default grace is two heartbeat intervals: a trial one late heartbeat behind is alive,
    and one that has not sent its first heartbeat yet (just started) is not taken for dead."""
    from optuna.trial import TrialState

    from mlplab.tuning import StorageSpec

    spec = StorageSpec(f"journal:{tmp_path / 'j.log'}", heartbeat=2, retry_failed=False)
    study = optuna.create_study(storage=spec.open(), study_name="s", direction="maximize")
    late, dead, _starting = study.ask(), study.ask(), study.ask()
    storage = study._storage
    now = time.time()
    storage.set_trial_system_attr(late._trial_id, "mlplab:heartbeat", now - 3)
    storage.set_trial_system_attr(dead._trial_id, "mlplab:heartbeat", now - 5)
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING, TrialState.FAIL,
                                                     TrialState.RUNNING]


# --------------------------------------------------------------------------- searching
def test_objective_value_is_an_independent_training_run(digits, tmp_path):
    result = tune(digits, trials=4, search_space=TINY, sampler="random", out=tmp_path / "o",
                  seed=3, progress=False, eval_test=True)
    assert (result.n_complete, result.n_pruned, result.n_failed) == (4, 0, 0)
    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{tmp_path / 'o' / 'study.db'}")
    for trial in study.trials[:2]:
        # rebuild by hand from the recorded parameters and train with the trainer directly
        model = MLP(digits.num_features, [trial.params["hidden_size"]], 10, seed=3)
        history = Trainer(lr=trial.params["lr"], epochs=3, batch_size=64, seed=3).fit(
            model, digits.X_train, digits.y_train, digits.X_val, digits.y_val)
        assert trial.value == pytest.approx(history.val_acc[-1], abs=1e-12)
        assert list(trial.intermediate_values.values()) == pytest.approx(history.val_acc)
        assert trial.user_attrs["epochs"] == 3
    best = max(t.value for t in study.trials)
    assert result.best_value == best
    assert result.best_params == study.trials[result.best_trial].params

    # the best trial retrained by mlplab.runs.train_run into a run folder gives the same model
    from mlplab.io import load_model, read_json

    loaded = load_model(result.run_dir / "model.npz")
    assert loaded.model.accuracy(digits.X_val, digits.y_val) == pytest.approx(best)
    assert result.retrained_val_acc == pytest.approx(best)
    assert result.test_accuracy == pytest.approx(
        loaded.model.accuracy(digits.X_test, digits.y_test))
    # the saved preprocessing reproduces the features from raw images
    np.testing.assert_allclose(loaded.preprocessing.transform(digits.dataset.X_val),
                               digits.X_val, rtol=1e-6)
    run_config = read_json(result.run_dir / "config.json")
    assert run_config["hidden"] == [result.best_params["hidden_size"]]
    assert run_config["lr"] == result.best_params["lr"] and run_config["optimizer"] == "sgd"
    metrics = read_json(result.run_dir / "metrics.json")
    assert metrics["test_accuracy"] == result.test_accuracy
    assert read_json(result.run_dir / "tuning.json")["trial"] == result.best_trial

    # outputs: every trial in the CSV and Markdown tables, PNG plots, a summary
    out = tmp_path / "o"
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3]
    assert {"state", "val_acc", "epochs_run", "seconds", "hidden_size", "lr"} <= set(rows[0])
    assert all(r["epochs_run"] == "3" and r["state"] == "COMPLETE" for r in rows)
    assert [float(r["val_acc"]) for r in rows] == pytest.approx([t.value for t in study.trials])
    md = (out / "results.md").read_text()
    lines = md.splitlines()
    assert len(lines) == 2 + 4 and lines[1].startswith("|---")
    assert lines[2 + result.best_trial].startswith(f"| **{result.best_trial}** |")
    for name in ("optimization_history", "parallel_coordinate", "param_importances"):
        with Image.open(out / f"{name}.png") as im:
            assert im.format == "PNG" and im.size[0] > 400
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_value"] == best and summary["test_accuracy"] == result.test_accuracy


def test_a_killed_writes_leftovers_go_but_not_a_write_that_may_be_going_on(digits, tmp_path):
    """A tune SIGKILLed while it wrote results.csv left ``.results.csv.<random>.csv``, which a
    successful rerun kept for good. Other workers write the same folder, so a leftover goes
    once it is a minute old: no write takes that long."""
    import os
    import time

    tmp_path.mkdir(exist_ok=True)
    old, fresh = tmp_path / ".results.csv.eejl.csv", tmp_path / ".results.md.k2x8.md"
    for path in (old, fresh):
        path.write_text("partial")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    tune(digits, trials=1, search_space=TINY, out=tmp_path, progress=False)
    assert (tmp_path / "results.csv").is_file()
    assert not old.exists() and fresh.exists()


def test_an_output_folder_removed_while_the_search_runs_is_not_made_again(digits, tmp_path,
                                                                          monkeypatch):
    """Each output write made the removed (or moved) folder again: the command ended with status 0
    and a summary.json naming results.csv and plots that were not there, the study gone with its
    study.db."""
    import mlplab.tuning as tuning

    out = tmp_path / "o"
    real = tuning.write_results

    def written_then_removed(study, folder, **kwargs):
        files = real(study, folder, **kwargs)
        shutil.rmtree(folder)
        return files

    monkeypatch.setattr(tuning, "write_results", written_then_removed)
    with pytest.raises(FileNotFoundError, match=r"o was removed or moved while the search ran "
                                                r"\(its study.db is gone\), so its tables"):
        tune(digits, trials=1, search_space=TINY, out=out, progress=False)
    assert not out.exists()  # no best-run/, no summary.json made into a new folder
    # the tables written, then the folder removed before the search (a study elsewhere):
    monkeypatch.setattr(tuning, "write_results",
                        lambda study, folder, **kw: (shutil.rmtree(folder), ({}, {}))[1])
    with pytest.raises(FileNotFoundError, match=r"o was removed or moved while the search ran, "):
        tune(digits, trials=1, search_space=TINY, out=out, progress=False,
             storage=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert not out.exists()
    # removed while the plots are drawn (seconds): each plot's write made the folder again, and
    # the command ended with exit 1 beside a folder of plots and no study
    monkeypatch.setattr(tuning, "write_results", real)
    import mlplab.tuning.results as results

    drawn = results.optimization_history

    def drawn_then_removed(study):
        ax = drawn(study)
        shutil.rmtree(out)
        return ax

    monkeypatch.setattr(results, "optimization_history", drawn_then_removed)
    with pytest.raises(FileNotFoundError, match=r"o was removed or moved while the search ran "
                                                r"\(its study.db is gone\)"):
        tune(digits, trials=1, search_space=TINY, out=out, progress=False)
    assert not out.exists()
    # removed while the best trial retrains: said of the folder, not of the hidden
    # .best-run.PID.tmp into which the retraining wrote (whose run stopped on its own check)
    monkeypatch.undo()
    import mlplab.runs

    retrain = mlplab.runs.train_run

    class Removing(Callback):  # the folder removed after the retraining's first epoch
        def on_epoch_end(self, trainer, epoch, logs):
            if out.exists():
                shutil.rmtree(out)

    def retrained_then_removed(*args, callbacks=(), **kwargs):
        return retrain(*args, callbacks=[Removing(), *callbacks], **kwargs)

    monkeypatch.setattr(mlplab.runs, "train_run", retrained_then_removed)
    with pytest.raises(FileNotFoundError, match=r"o was removed or moved while the search ran "
                                                r"\(its study.db is gone\)") as caught:
        tune(digits, trials=1, search_space=TINY, out=out, progress=False, search_only=False)
    assert ".best-run." not in str(caught.value)


@pytest.mark.parametrize("stopped", [False, True], ids=["finished", "ctrl-c"])
def test_an_output_folder_removed_while_the_trials_run_is_said_of_the_folder(stopped, digits,
                                                                           tmp_path,
                                                                           monkeypatch):
    """Removed while the trials ran, before any output was written: the lock file under which
    the outputs are written could not be made, and the search ended with "cannot write in the
    run folder ... (No such file or directory); a run is trained only in a folder it may write
    to". Stopped by Ctrl-C then, that error took the place of the Ctrl-C."""
    import mlplab.tuning as tuning

    out = tmp_path / "o"
    real = tuning.run_search

    def searched_then_removed(*args, **kwargs):
        real(*args, **kwargs)
        shutil.rmtree(out)
        if stopped:
            raise KeyboardInterrupt

    monkeypatch.setattr(tuning, "run_search", searched_then_removed)
    if stopped:
        with pytest.raises(KeyboardInterrupt):
            tune(digits, trials=1, search_space=TINY, out=out, progress=False)
    else:
        with pytest.raises(FileNotFoundError, match=r"^\S+o was removed or moved while the "
                                                    r"search ran \(its study.db is gone\), so "):
            tune(digits, trials=1, search_space=TINY, out=out, progress=False)
    assert not out.exists()


def test_resume_continues_to_the_target_and_checks_the_space(digits, tmp_path):
    kw = dict(search_space=TINY, out=tmp_path, progress=False, search_only=True)
    first = tune(digits, trials=2, **kw)
    assert first.n_complete == 2 and not first.files
    again = tune(digits, trials=4, **kw)
    assert again.n_complete == 4  # two more, not four more
    same = tune(digits, trials=4, **kw)
    assert same.n_complete == 4
    # the resumed trials propose new settings, not the first run's again (one seeded sampler)
    study = optuna.load_study(study_name=again.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    settings = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(settings)) == 4, settings
    other = {**TINY, "epochs": 4}
    with pytest.raises(ValueError, match="different search space"):
        tune(digits, trials=5, **{**kw, "search_space": other})


def test_a_rerun_of_a_finished_search_keeps_its_retrained_best_run(digits, tmp_path):
    """Retraining the best trial again gives the same model, at the cost of a whole training
    run and, with eval_test, another look at the test split: a rerun keeps best-run/ when it
    holds the study's best trial, retrained to completion as now asked."""
    kw = dict(search_space=TINY, out=tmp_path, progress=False)
    first = tune(digits, trials=2, **kw)
    model = first.run_dir / "model.npz"
    written = model.stat().st_mtime_ns, model.stat().st_ino
    again = tune(digits, trials=2, **kw)
    assert (model.stat().st_mtime_ns, model.stat().st_ino) == written
    assert again.run_dir == first.run_dir and again.test_accuracy is None
    assert again.retrained_val_acc == first.retrained_val_acc == first.best_value
    # the test split asked for now: retrained once to evaluate it, then kept
    tested = tune(digits, trials=2, eval_test=True, **kw)
    assert (model.stat().st_mtime_ns, model.stat().st_ino) != written
    assert tested.test_accuracy is not None
    written = model.stat().st_mtime_ns, model.stat().st_ino
    assert tune(digits, trials=2, eval_test=True, **kw).test_accuracy == tested.test_accuracy
    assert (model.stat().st_mtime_ns, model.stat().st_ino) == written
    # the tuning's folder given where a run folder is wanted: the message points inside it
    from mlplab.runs import resume_run

    with pytest.raises(FileNotFoundError, match=rf"no config.json\); the run folder inside it "
                                                rf"is {re.escape(str(first.run_dir))}\.$"):
        resume_run(tmp_path)
    # a damaged best-run/ (or one of another trial, after more trials) is retrained
    (first.run_dir / "tuning.json").write_text("{")
    tune(digits, trials=2, **kw)
    assert (model.stat().st_mtime_ns, model.stat().st_ino) != written
    assert json.loads((first.run_dir / "tuning.json").read_text())["trial"] == first.best_trial


def test_a_new_study_is_refused_a_folder_holding_another_studys_results(digits, tmp_path):
    """A new --study with the --out of an older one wrote its tables, plots, summary and
    best-run over the older study's (and added itself to that folder's study.db). A folder holds
    one study's outputs, as the default runs/<study> says: the new study is refused, with
    nothing written and no study made; resuming the owner, or another folder, still works."""
    out = tmp_path / "D"
    kw = dict(search_space=TINY, out=out, progress=False)
    first = tune(digits, trials=1, study_name="A", **kw)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "study.db")
    before = {p: p.read_bytes() for p in files}

    def studies() -> list[str]:
        return sorted(optuna.get_all_study_names(storage=f"sqlite:///{out / 'study.db'}"))

    with pytest.raises(ValueError, match=r"holds the results of study 'A', which study 'B' "
                                         r"would overwrite; choose another out for it, or "
                                         r"resume that study with study_name='A'\.$"):
        tune(digits, trials=1, study_name="B", **kw)
    assert {p: p.read_bytes() for p in files} == before and studies() == ["A"]
    # a search interrupted before summary.json and best-run were written: its study.db says
    (out / "summary.json").unlink()
    shutil.rmtree(first.run_dir)
    with pytest.raises(ValueError, match="holds the results of study 'A', which study 'B'"):
        tune(digits, trials=1, study_name="B", **kw)
    assert studies() == ["A"]
    assert tune(digits, trials=1, study_name="A", **kw).best_trial == first.best_trial
    assert tune(digits, trials=1, study_name="B", **{**kw, "out": tmp_path / "E"}).n_complete == 1


@pytest.mark.parametrize("name, said", [
    ("", r"'' is blank \(an unset shell variable\?\); give a name"),
    (" ", r"' ' is blank; give a name"),
    ("a\nb", r"'a\\nb' holds a control character \('\\n'\); give a name without newlines, "
              "tabs or other control characters"),
    ("a\tb", r"'a\\tb' holds a control character \('\\t'\)"),
])
def test_a_blank_study_name_or_one_with_control_characters_is_refused(digits, tmp_path, capsys,
                                                                      name, said):
    """`--study ''` fell back to the default name without a word, and a blank name or one with
    a newline made a study that no message or table shows as it is."""
    with pytest.raises(ValueError, match=rf"^study_name {said}.*, or leave out study_name for "
                                         r"the default name \(tune-<dataset>\)\.$"):
        tune(digits, trials=1, search_space=TINY, study_name=name, out=tmp_path / "o",
             progress=False)
    assert main(["tune", "--dataset", "digits", "--trials", "1", "--study", name, "--out",
                 str(tmp_path / "o"), "--no-progress"]) == 2  # a usage error, before any work
    assert re.search(rf"error: --study {said}", capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_the_owner_study_named_on_the_command_line_can_be_pasted(digits, tmp_path):
    """The refusal's "resume that study with --study NAME" quotes a name with a space: pasted,
    ``--study my study`` was "unrecognized arguments: study"."""
    from mlplab._validation import command_line

    kw = dict(search_space=TINY, out=tmp_path / "D", progress=False)
    tune(digits, trials=1, study_name="my study", **kw)
    with command_line(), pytest.raises(ValueError, match=r"resume that study with "
                                                         r"--study 'my study'\.$"):
        tune(digits, trials=1, study_name="B", **kw)


def test_resume_with_another_seed_is_refused(digits, tmp_path):
    """Every trial trains with the seed: a study resumed with another one would rank trials of
    two seeds together and retrain the best with a seed it never ran with."""
    kw = dict(search_space=TINY, out=tmp_path, progress=False, search_only=True)
    first = tune(digits, trials=1, seed=0, **kw)
    with pytest.raises(ValueError, match=r"different seed \(0 vs 7\)"):
        tune(digits, trials=2, seed=7, **kw)
    study = optuna.load_study(study_name=first.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.trials) == 1 and study.user_attrs["mlplab:seed"] == 0
    assert tune(digits, trials=2, seed=0, **kw).n_complete == 2  # the same seed resumes


def test_resume_with_another_sampler_or_pruner_is_refused_but_not_another_timeout(digits,
                                                                                 tmp_path):
    """A resumed study with another --sampler or --prune changed what is tried and what is
    stopped half-way without a word (the tables read as one search); it is refused as another
    seed is. --timeout limits each invocation and may change. A study made before these were
    recorded takes the ones it is resumed with."""
    from mlplab.tuning import ArraySource, open_study

    kw = dict(search_space=TINY, out=tmp_path, progress=False, search_only=True)
    first = tune(digits, trials=1, sampler="tpe", prune="median", **kw)
    with pytest.raises(ValueError, match=r"different sampler \(\"tpe\" vs \"random\"\)"):
        tune(digits, trials=2, sampler="random", prune="median", **kw)
    with pytest.raises(ValueError, match=r"different pruner \(\"median\" vs none\)"):
        tune(digits, trials=2, sampler="tpe", **kw)
    with pytest.raises(ValueError, match=r"different pruner \(\"median\" vs \"hyperband\"\)"):
        tune(digits, trials=2, sampler="tpe", prune="hyperband", **kw)
    storage = storage_spec(None, tmp_path)
    assert len(open_study(storage, first.study_name).trials) == 1  # no trial ran refused
    # prune=True is the median pruner; a new timeout is no conflict
    assert tune(digits, trials=2, prune=True, timeout=600, **kw).n_complete == 2
    open_study(storage, "old", SearchSpace.load(TINY), ArraySource(digits).describe())
    assert tune(digits, trials=1, study_name="old", sampler="random", **kw).n_complete == 1
    attrs = open_study(storage, "old").user_attrs
    assert (attrs["mlplab:sampler"], attrs["mlplab:pruner"]) == ("random", None)


def test_a_refused_resume_pins_nothing(digits, tmp_path):
    """A study made before the seed was recorded takes the seed it is resumed with, but not
    that of a command refused for its data: the study's own seed must still resume it."""
    from mlplab.tuning import ArraySource, open_study

    storage = storage_spec(None, tmp_path)
    # what an older mlplab recorded: the space and the data, no seed
    open_study(storage, "old", SearchSpace.load(TINY), ArraySource(digits).describe())
    kw = dict(study_name="old", search_space=TINY, out=tmp_path, progress=False,
              search_only=True)
    other = prepare(load_dataset("digits", seed=0, val_size=200))
    with pytest.raises(ValueError, match="different data"):
        tune(other, trials=1, seed=3, **kw)
    assert "mlplab:seed" not in open_study(storage, "old").user_attrs
    assert tune(digits, trials=1, seed=0, **kw).n_complete == 1
    assert open_study(storage, "old").user_attrs["mlplab:seed"] == 0


def test_a_study_resumed_with_its_default_split_sizes_written_out(tmp_path):
    """`--val-size 180` is digits' default: a study made without it was refused as "created
    with a different data" when resumed with it, though its images are the same; a size that
    changes the images (0.1 of what the test split leaves, 200) is still refused."""
    from mlplab.tuning import DatasetSource

    kw = dict(search_space=TINY, out=tmp_path, progress=False, search_only=True)
    assert tune(DatasetSource("digits", {"seed": 0}), trials=1, **kw).n_complete == 1
    same = DatasetSource("digits", {"seed": 0, "val_size": 180, "test_size": 180}, train_size=1437)
    assert tune(same, trials=2, **kw).n_complete == 2
    for other in ({"val_size": 0.1}, {"val_size": 200}, {"test_size": 170}):
        with pytest.raises(ValueError, match="different data"):
            tune(DatasetSource("digits", {"seed": 0, **other}), trials=3, **kw)
    with pytest.raises(ValueError, match="created with different data"):  # (not "a ...")
        tune(DatasetSource("digits", {"seed": 0, "val_size": 180}, "scale"), trials=3, **kw)


def test_a_study_resumed_with_another_spelling_of_its_dataset_name(tmp_path):
    """`mlplab tune --dataset Digits` (load_dataset takes any case, and CIFAR-10 for cifar10)
    made study tune-Digits; resumed with --dataset digits --study tune-Digits, it was refused
    as "created with different data", though the images are the same. Another dataset, or
    the same one split otherwise, is still refused."""
    from mlplab.tuning import DatasetSource

    kw = dict(search_space=TINY, out=tmp_path, progress=False, search_only=True,
              study_name="tune-Digits")
    assert tune(DatasetSource("Digits", {"seed": 0}), trials=1, **kw).n_complete == 1
    assert tune(DatasetSource("digits", {"seed": 0}), trials=2, **kw).n_complete == 2
    assert tune(DatasetSource(" DIGITS", {"seed": 0, "val_size": 180}), trials=3,
                **kw).n_complete == 3
    with pytest.raises(ValueError, match="different data"):
        tune(DatasetSource("digits", {"seed": 1}), trials=4, **kw)


def test_a_study_of_an_image_folder_resumed_with_another_path_to_it(tmp_path, monkeypatch):
    """A study started on folder:/abs/fold was refused as "created with different data" when
    resumed from fold's parent with folder:fold/ (the same default study name and folder);
    another folder of the same images' layout, with other images, is still refused."""
    from PIL import Image

    from mlplab.tuning import DatasetSource

    rng = np.random.default_rng(0)
    for folder in ("fold", "other"):
        for label in ("a", "b"):
            (tmp_path / folder / label).mkdir(parents=True)
            for i in range(12):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    tmp_path / folder / label / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    kw = dict(search_space=TINY, out=tmp_path / "study", progress=False, search_only=True,
              study_name="tune-folder-fold")
    assert tune(DatasetSource(f"folder:{tmp_path / 'fold'}", {"seed": 0, "val_size": 4,
                                                           "test_size": 4}),
                trials=1, **kw).n_complete == 1
    assert tune(DatasetSource("folder:fold/", {"seed": 0, "val_size": 4, "test_size": 4}),
                trials=2, **kw).n_complete == 2
    with pytest.raises(ValueError, match="different data"):
        tune(DatasetSource("folder:other", {"seed": 0, "val_size": 4, "test_size": 4}),
             trials=3, **kw)


def test_default_study_name_is_ascii_and_keeps_the_ascii_names_it_gave():
    """A folder named in another script gave a study name that kept it (tune-folder-données),
    which some storages and terminals mangle: accents are dropped, and a name with no ASCII
    letter left is named by a stable hash of it. ASCII names stay as they were, so that their
    studies still resume with the same command."""
    import hashlib

    from mlplab.tuning import DatasetSource, default_study_name

    def name(dataset):
        return default_study_name(DatasetSource(dataset, {}))

    def digest(text):
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    # today's ASCII names, character for character
    assert name("digits") == "tune-digits" and name("Digits") == "tune-Digits"
    assert name("folder:/data/my images!") == "tune-folder-my-images"
    assert name("folder:/data/-x") == "tune-folder--x"
    assert name("folder:/data/2024") == "tune-folder-2024"
    # accents dropped, composed or not (a macOS file name is decomposed)
    assert name("folder:/data/données") == "tune-folder-donnees"
    assert name("folder:/data/donne\u0301es") == "tune-folder-donnees"
    assert name("folder:/data/straße") == "tune-folder-strasse"
    assert name("folder:/data/Łódź") == "tune-folder-Lodz"
    assert name("folder:/data/数据 set") == "tune-folder-set"
    # no ASCII letter left: the hash of the name, the same wherever the folder is
    assert name("folder:/data/数据") == f"tune-folder-{digest('数据')}"
    assert name("folder:/other/数据") == name("folder:/data/数据")
    assert name("folder:/data/数据2") == f"tune-folder-{digest('数据2')}"
    assert name("folder:/data/图片") == f"tune-folder-{digest('图片')}" != name("folder:/d/数据")
    assert name("данные") == f"tune-{digest('данные')}"  # a plugin's dataset
    # a file name's bytes that are not UTF-8 (lone surrogates)
    assert re.fullmatch(r"tune-folder-[0-9a-f]{8}", name("folder:/data/\udce9\udce8"))
    assert name("folder:/data/caf\udce9") == "tune-folder-caf"


def test_cli_tune_of_a_folder_named_in_another_script_makes_an_ascii_study(tmp_path,
                                                                           monkeypatch,
                                                                           capsys):
    import hashlib

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "数据" / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                tmp_path / "数据" / label / f"{i}.png")
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: [8, 16]\nlr: 0.1\nepochs: 1\nbatch_size: 64\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "cache"))
    assert main(["tune", "--dataset", "folder:数据", "--trials", "1", "--search-space",
                 str(space), "--val-size", "4", "--test-size", "4", "--no-progress",
                 "--search-only"]) == 0
    study = "tune-folder-" + hashlib.sha256("数据".encode()).hexdigest()[:8]
    assert f"study {study} in " in capsys.readouterr().out
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 'runs' / study / 'study.db'}") \
        == [study]


def test_empty_validation_or_test_split_is_refused_before_searching(tmp_path):
    no_val = load_dataset("digits", val_size=0)
    with pytest.raises(ValueError, match="no validation split.*val_size=N"):
        tune(no_val, trials=1, search_space=TINY, out=tmp_path / "a", progress=False)
    no_test = load_dataset("digits", test_size=0)
    with pytest.raises(ValueError, match="no test split"):
        tune(no_test, trials=1, search_space=TINY, out=tmp_path / "b", progress=False,
             eval_test=True)
    with pytest.raises(ValueError, match="no test split"):  # several workers: the same, first
        tune(no_test, trials=2, search_space=TINY, out=tmp_path / "b", progress=False,
             eval_test=True, workers=2)
    # refused before a study, or even its output folder, was made
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # a storage that cannot be opened leaves no folder behind either (parents included)
    # (and says what to check: "Connection refused" alone left the user to guess)
    import importlib.util

    cause = r"check that the database server is running and reachable" \
        if importlib.util.find_spec("psycopg2") else r"pip install 'mlplab\[postgres\]'"
    with pytest.raises(RuntimeError, match=r"cannot open storage postgresql://user@127\.0\.0\.1:1"
                       r"/none: .*; " + cause):
        tune(load_dataset("digits"), trials=1, search_space=TINY, out=tmp_path / "c" / "d",
             progress=False, storage="postgresql://user@127.0.0.1:1/none")
    assert not (tmp_path / "c").exists()
    # and the corrected command runs in that folder
    storage = f"sqlite:///{tmp_path / 'b' / 'study.db'}"
    fixed = tune(load_dataset("digits"), trials=1, search_space=TINY, out=tmp_path / "b",
                 progress=False, search_only=True)
    assert fixed.n_complete == 1 and optuna.get_all_study_names(storage) == [fixed.study_name]


def _interrupt_trial(monkeypatch, number):
    """A Ctrl-C in trial ``number`` (a KeyboardInterrupt from its objective); returns the real
    objective, to put back."""
    import mlplab.tuning as tmod

    real = tmod.Objective.__call__

    def interrupted(self, trial):
        if trial.number == number:
            raise KeyboardInterrupt
        return real(self, trial)

    monkeypatch.setattr(tmod.Objective, "__call__", interrupted)
    return real


def test_ctrl_c_keeps_the_finished_trials_tables_without_a_traceback(digits, tmp_path,
                                                                     monkeypatch, caplog):
    import logging

    # Optuna's logger writes to its own handler; let caplog see the records that handler got
    monkeypatch.setattr(logging.getLogger("optuna"), "propagate", True)

    shown = io.StringIO()  # what a handler of Optuna's logger writes, as its own does
    handler = logging.StreamHandler(shown)
    logging.getLogger("optuna").addHandler(handler)
    _interrupt_trial(monkeypatch, 2)
    try:
        with pytest.raises(KeyboardInterrupt):
            tune(digits, trials=4, search_space=TINY, out=tmp_path, progress=False)
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    failed = [r for r in caplog.records if "Trial 2 failed" in r.getMessage()]
    assert failed and all(r.exc_info is None for r in failed)  # one line, no traceback
    # which trial stopped, with its settings; not Optuna's "Trial 2 failed with value None."
    # after it, which says nothing more
    assert shown.getvalue().startswith("Trial 2 failed with parameters: {") and \
        shown.getvalue().endswith("because of the following error: KeyboardInterrupt().\n"), \
        shown.getvalue()
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    # the stopped trial is queued again, for the next run, as a stopped worker's is
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "FAIL", "WAITING"]
    assert rows[2]["note"] == "interrupted (Ctrl-C); re-queued as trial 3"
    assert rows[3]["note"] == "retry of trial 2"  # the WAITING one (docs/tuning.md)


@pytest.mark.parametrize("prune", [False, True])
def test_a_ctrl_c_in_a_trials_last_epoch_end_stops_the_search(digits, tmp_path, monkeypatch,
                                                              prune):
    """A Ctrl-C that landed in a trial's last epoch end (its validation pass, the report to
    Optuna) came after the loop's last check: the trial ended complete, the request was lost,
    and the search ran all its trials and retrained the best before the command exited 130,
    its summary not marked interrupted. Now the trial is stopped as one stopped a step earlier
    (FAIL, re-queued) and the search ends there."""
    import os
    import signal

    from mlplab import interrupts
    from mlplab.io import read_json
    from mlplab.tuning.objective import _ReportCallback

    real = _ReportCallback.on_epoch_end

    def on_epoch_end(self, trainer, epoch, logs):
        real(self, trainer, epoch, logs)
        if self.trial.number == 1 and epoch == (1 if prune else trainer.config.epochs):
            os.kill(os.getpid(), signal.SIGINT)
            if prune:  # the same epoch end prunes it (which skipped the check of the Ctrl-C)
                raise optuna.TrialPruned("hopeless")

    monkeypatch.setattr(_ReportCallback, "on_epoch_end", on_epoch_end)
    with interrupts.installed(), pytest.raises(KeyboardInterrupt):
        tune(digits, trials=3, search_space=TINY, out=tmp_path, progress=False)
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "WAITING"]
    assert rows[1]["note"] == "interrupted (Ctrl-C); re-queued as trial 2"
    assert read_json(tmp_path / "summary.json")["interrupted"] is True


def test_a_second_process_searching_the_same_folder_draws_a_fresh_sampler_seed(digits, tmp_path):
    """Two `mlplab tune` started together with the same --out (its study.db) both seeded their
    samplers with --seed and proposed the same settings, every trial twice. The first holds the
    folder's lock while it searches; another process (here: the lock held) draws a fresh seed.
    One process alone still repeats its search exactly."""
    from mlplab.runs.lock import run_lock

    def settings(out):
        tune(digits, trials=3, search_space=TINY, out=out, progress=False, search_only=True)
        study = optuna.load_study(study_name="tune-digits", storage=f"sqlite:///{out}/study.db")
        return [t.params for t in study.trials]

    first = settings(tmp_path / "a")
    assert settings(tmp_path / "b") == first  # seeded: the same search again
    assert not (tmp_path / "a" / ".lock").exists()  # released (and removed) at the end
    (tmp_path / "c").mkdir()
    with run_lock(tmp_path / "c", noun="search"):  # another process searching "c" now
        beside = settings(tmp_path / "c")
    assert all(p != q for p, q in zip(beside, first))


def test_a_grid_point_stopped_by_ctrl_c_runs_when_the_search_is_resumed(digits, tmp_path,
                                                                       monkeypatch):
    """The grid sampler counts a FAIL point as visited: a point stopped by Ctrl-C in a
    one-process search never ran again, and the resumed study said it had finished (unfinished
    None) with a point never measured. The stopped trial is queued again, as a stopped
    worker's is, and the resumed search runs it."""
    import mlplab.tuning as tmod

    space = {"hidden_size": {"type": "int", "low": 8, "high": 16, "grid": [8, 16]},
             "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True, "grid": [0.01, 0.1]},
             "epochs": 1}
    kw = dict(search_space=space, sampler="grid", out=tmp_path, progress=False,
              search_only=True)
    real = _interrupt_trial(monkeypatch, 0)
    with pytest.raises(KeyboardInterrupt):
        tune(digits, trials=10, **kw)
    monkeypatch.setattr(tmod.Objective, "__call__", real)
    result = tune(digits, trials=10, **kw)
    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    done = {(t.params["hidden_size"], t.params["lr"]) for t in study.trials
            if t.state == TrialState.COMPLETE}
    assert done == {(8, 0.01), (8, 0.1), (16, 0.01), (16, 0.1)}
    assert result.n_complete == 4 and result.unfinished is None


def test_tuning_data_without_its_dataset_is_refused_before_the_search(digits, tmp_path):
    """A TuningData built by hand (no raw dataset) ran the whole search, wrote its tables, and
    only then failed to retrain the best trial; it is refused before anything runs, unless
    search_only, which retrains nothing."""
    td = prepare(digits, "standardize")
    raw = TuningData("mine", td.classes, td.X_train, td.y_train, td.X_val, td.y_val, td.X_test,
                     td.y_test)
    with pytest.raises(ValueError, match=r"^retraining the best trial needs the raw dataset, "
                                         r"which this TuningData does not carry .*search_only"):
        tune(raw, trials=2, search_space=TINY, out=tmp_path / "refused", progress=False)
    assert not (tmp_path / "refused").exists()
    result = tune(raw, trials=2, search_space=TINY, out=tmp_path / "search", progress=False,
                  search_only=True)
    assert result.n_complete == 2


def test_an_empty_out_is_refused_not_taken_for_the_current_folder(digits, tmp_path,
                                                                   monkeypatch):
    """``tune(..., out="")`` (an unset environment variable) wrote the study, its tables and
    its best run into the current folder (``Path("")`` is ``.``); it is refused as the command
    line refuses ``--out ""``, naming ``out``, before anything is searched or written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^out is an empty text"):
        tune(digits, trials=1, search_space=TINY, out="", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_grid_point_another_worker_is_running_is_not_run_again():
    """Once no grid point is unvisited, Optuna's GridSampler hands a new trial one that is still
    running elsewhere ("re-evaluating a configuration"): with --workers 2 the last point was
    measured twice and counted as two trials. Such a trial is given up as surplus, before
    anything trains, and the worker stops; a failed point's retry still runs."""
    from mlplab.tuning import search

    class Stub:
        worker = "stub"
        calls = 0

        def __call__(self, trial):
            Stub.calls += 1
            return 0.5

    dist = {"x": optuna.distributions.IntDistribution(1, 2)}
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.GridSampler({"x": [1, 2]}, seed=0))
    done = study.ask(dist)  # point 0, finished
    study.tell(done, 0.1)
    running = study.ask(dist)  # point 1, still running in "another worker"
    with pytest.raises(search._TargetReached):
        study.optimize(search._WithinTarget(Stub(), target=10), n_trials=1)
    surplus = study.trials[-1]
    assert Stub.calls == 0 and surplus.user_attrs[search.SURPLUS_ATTR] is True
    # of two trials that race for the point, the earlier keeps it: not given up by both
    racer = study.ask(dist)
    assert study.trials[racer.number].system_attrs["grid_id"] == 1
    assert search._grid_point_taken(racer)
    assert not search._grid_point_taken(running)
    study._storage.set_trial_state_values(racer._trial_id, state=TrialState.FAIL)
    assert surplus.system_attrs["grid_id"] == study.trials[running.number].system_attrs[
        "grid_id"] == 1
    # a failed point (Ctrl-C'd, then re-queued with its point) is not taken: its retry runs
    # (failed as a Ctrl-C'd trial is: by the storage, outside the sampler's bookkeeping)
    study._storage.set_trial_state_values(running._trial_id, state=TrialState.FAIL)
    search.requeue_callback()(study, study.trials[running.number])
    study.optimize(search._WithinTarget(Stub(), target=10), n_trials=1)
    assert Stub.calls == 1 and study.trials[-1].state == TrialState.COMPLETE


def test_summary_after_a_ctrl_c_is_this_runs_not_the_previous_ones(digits, tmp_path,
                                                                    monkeypatch):
    """summary.json was written only when a search ended normally: after a Ctrl-C it kept the
    previous run's counts and best trial, beside tables of the newer trials. It is rewritten on
    the interrupted path (in the search and in the retraining), marked interrupted."""
    import mlplab.tuning as tmod
    from mlplab.io import read_json

    kw = dict(search_space=TINY, out=tmp_path, progress=False)
    tune(digits, trials=2, **kw)
    first = read_json(tmp_path / "summary.json")
    assert (first["n_complete"], first["interrupted"]) == (2, False)
    real = _interrupt_trial(monkeypatch, 3)  # trial 2 completes, trial 3 is stopped
    with pytest.raises(KeyboardInterrupt):
        tune(digits, trials=5, **kw)
    summary = read_json(tmp_path / "summary.json")
    assert (summary["n_complete"], summary["n_failed"], summary["interrupted"],
            summary["run_dir"]) == (3, 1, True, None)
    monkeypatch.setattr(tmod.Objective, "__call__", real)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tmod, "_best_run", ctrl_c)  # a Ctrl-C while the best trial retrains
    with pytest.raises(KeyboardInterrupt):
        tune(digits, trials=6, **kw)
    summary = read_json(tmp_path / "summary.json")
    assert (summary["n_complete"], summary["interrupted"], summary["run_dir"]) == (6, True, None)


def test_a_ctrl_c_summary_says_the_study_is_unfinished(digits, tmp_path, monkeypatch):
    """summary.json's `unfinished` says why the study holds fewer trials than asked, null only
    when it holds them all: after a Ctrl-C at 1 of 3 finished trials it was null."""
    from mlplab.io import read_json

    _interrupt_trial(monkeypatch, 1)  # trial 0 completes, trial 1 is stopped
    with pytest.raises(KeyboardInterrupt):
        tune(digits, trials=3, search_space=TINY, out=tmp_path, progress=False)
    summary = read_json(tmp_path / "summary.json")
    assert (summary["n_complete"], summary["interrupted"]) == (1, True)
    assert summary["unfinished"] == ("the search was interrupted at 1 of trials=3 finished "
                                     "trials; call tune() again with the same arguments to go "
                                     "on with it")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed:UserWarning")  # ask() by hand
def test_a_ctrl_c_of_workers_leaves_no_trial_running_in_the_tables(digits, tmp_path,
                                                                    monkeypatch):
    """Ctrl-C with --workers K stops the workers, whose trials stayed RUNNING: results.csv,
    results.md and summary.json, written as the command ended, showed trials running that
    nothing ran any more, and counted no failure. They are failed (and re-queued once, for the
    next run of the command) once the workers are gone, before the tables are written."""
    import csv
    import socket
    import subprocess
    import sys

    import mlplab.tuning as tmod
    from mlplab.io import read_json

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()

    def workers_stopped_by_ctrl_c(specs, study, bar=None):
        study.add_trial(optuna.trial.create_trial(
            value=0.5, params={"hidden_size": 9},
            distributions={"hidden_size": optuna.distributions.IntDistribution(8, 32)}))
        killed = study.ask({"hidden_size": optuna.distributions.IntDistribution(8, 32)})
        study._storage.set_trial_user_attr(killed._trial_id, "worker",
                                           f"{socket.gethostname()}:{dead}#1")
        raise KeyboardInterrupt  # (run_workers has terminated and joined its workers)

    monkeypatch.setattr(tmod, "run_workers", workers_stopped_by_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        tune(digits, trials=3, search_space=TINY, out=tmp_path, progress=False, workers=2)
    with open(tmp_path / "results.csv") as f:
        states = [row["state"] for row in csv.DictReader(f)]
    assert states == ["COMPLETE", "FAIL", "WAITING"]  # the retry, for the next run
    summary = read_json(tmp_path / "summary.json")
    assert (summary["n_complete"], summary["n_failed"], summary["interrupted"]) == (1, 1, True)


def test_a_ctrl_c_as_the_tables_and_plots_are_written_still_writes_the_summary(
        digits, tmp_path, monkeypatch):
    """A Ctrl-C after the search, while the plots were drawn (seconds of Matplotlib), left no
    summary.json, or a previous run's with its older counts: it is written, marked
    interrupted, with this run's counts."""
    import mlplab.tuning as tmod
    from mlplab.io import read_json

    kw = dict(search_space=TINY, out=tmp_path, progress=False)
    tune(digits, trials=1, **kw)

    def ctrl_c_in_the_plots(study, out, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tmod, "write_results", ctrl_c_in_the_plots)
    with pytest.raises(KeyboardInterrupt):
        tune(digits, trials=2, **kw)
    summary = read_json(tmp_path / "summary.json")
    assert (summary["n_complete"], summary["interrupted"], summary["run_dir"]) == (2, True, None)


def test_ctrl_c_while_optuna_records_a_trial_is_still_a_ctrl_c(digits, tmp_path, monkeypatch):
    """A Ctrl-C that lands while Optuna records a finished trial comes out of its loop as an
    UnboundLocalError; tune() must still see a KeyboardInterrupt (the CLI's exit 130), write the
    finished trials' tables, and not leave the trial it was recording RUNNING."""
    import optuna.study._optimize as optimize

    real = optimize._tell_with_warning

    def interrupted_third(*args, **kwargs):
        if kwargs["trial"].number == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(optimize, "_tell_with_warning", interrupted_third)
    with pytest.raises(KeyboardInterrupt):
        tune(digits, trials=4, search_space=TINY, out=tmp_path, progress=False)
    with open(tmp_path / "results.csv") as fh:
        states = [r["state"] for r in csv.DictReader(fh)]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "WAITING"]  # (queued again)
    study = optuna.load_study(study_name="tune-digits",
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.state for t in study.trials][2] == TrialState.FAIL


def test_knobs_that_cannot_work_together_fail_the_trial_not_the_search(digits, tmp_path):
    # each value is legal, but batch norm cannot train on one-row batches: those trials fail
    space = {"batchnorm": True, "batch_size": [1, 32], "hidden_size": 8, "epochs": 1}
    result = tune(digits, trials=6, search_space=space, sampler="random", out=tmp_path,
                  progress=False, search_only=True)
    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all(t.params["batch_size"] == 1 for t in failed)
    assert "batch norm needs batches of at least 2 rows" in failed[0].user_attrs["error"]
    # failed trials do not count towards --trials: six finished, however many failed
    assert result.n_complete == sum(t.state == TrialState.COMPLETE for t in study.trials) == 6
    assert result.n_failed == len(failed) and len(study.trials) == 6 + len(failed)
    # a space whose every trial fails is an error, not an empty success (nor an endless search:
    # its first trial stops it, as no other can do better; it burnt max(3, trials) of them)
    # (its reason's own full stop is dropped before the "; ...")
    with pytest.raises(ValueError, match=r"^search space: no trial can run, whatever values the "
                                         r"search draws: batch norm needs .* drop batch norm; "
                                         r"change the search space \(the search stopped after 1 "
                                         r"trial, which results\.csv lists\)\.$"):
        tune(digits, trials=5, search_space={**space, "batch_size": 1, "hidden_size": [8, 16]},
             out=tmp_path / "bad", progress=False)
    assert (tmp_path / "bad" / "results.csv").exists()
    summary = json.loads((tmp_path / "bad" / "summary.json").read_text())  # refused: still true
    assert (summary["n_failed"], summary["best_trial"], summary["interrupted"]) == (1, None, False)
    assert summary["unfinished"].endswith("no trial of search space can run, whatever values the "
                                          "search draws (the failed trial's error is in the "
                                          "results); change the search space")
    # AdamW's weight decay with another optimiser: the same kind of failure
    wd = {"optimizer": ["sgd", "adam"], "weight_decay": {"type": "float", "low": 1e-3,
                                                         "high": 1e-2},
          "hidden_size": 8, "epochs": 1}
    result = tune(digits, trials=3, search_space=wd, sampler="random", out=tmp_path / "wd",
                  progress=False, search_only=True, seed=1)
    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{tmp_path / 'wd' / 'study.db'}")
    assert result.n_complete == 3
    assert all(t.params["optimizer"] == "sgd" and "applies to the adam optimizer only"
               in t.user_attrs["error"] for t in study.trials if t.state == TrialState.FAIL)


def test_a_trial_whose_knobs_clash_is_one_line_and_the_search_goes_on(digits, tmp_path):
    """A trial whose settings cannot work together returned NaN: Optuna logged two warnings,
    "The value nan is not acceptable" and "failed with value nan", neither saying why. Now it
    fails with one line that does; where other draws can work, the search goes on."""
    space = {"schedule": "cosine", "lr": {"type": "float", "low": 0.001, "high": 0.1},
             "min_lr": {"type": "float", "low": 0.001, "high": 0.05}, "hidden_size": 8,
             "epochs": 1}
    handler = optuna.logging._get_library_root_logger().handlers[0]
    log = io.StringIO()
    previous = handler.setStream(log)
    try:
        result = tune(digits, trials=4, search_space=space, sampler="random", seed=0,
                      out=tmp_path, progress=False, search_only=True)
    finally:
        handler.setStream(previous)
    assert result.n_complete == 4 and result.n_failed, log.getvalue()  # (the test needs both)
    lines = log.getvalue().splitlines()
    assert len(lines) == result.n_failed, lines  # one line a failed trial, no traceback
    assert all(re.search(r"Trial \d+ failed with parameters: \{.*\} because of the following "
                         r"error: search space: these settings cannot work together: min_lr "
                         r"\([\d.]+\) must not exceed lr \([\d.]+\): the cosine schedule "
                         r"decays from lr to min_lr\.$", line) for line in lines), lines
    assert "nan" not in log.getvalue() and "failed with value" not in log.getvalue()


def test_the_configuration_check_and_the_trial_build_one_train_config():
    """check_configuration validates the TrainConfig a trial builds (one function makes both):
    the model's knobs stay out of it, the training knobs and the trial's seed go in, and a
    clash of training knobs is refused by the check as by the trial's validation."""
    from mlplab.trainer import SettingsError
    from mlplab.tuning.objective import build
    from mlplab.tuning.space import train_config
    from mlplab.tuning.workable import check_configuration

    settings = {"hidden_size": 16, "depth": 2, "lr": 0.05, "optimizer": "adam", "epochs": 3}
    _, config = build(settings, 4, 3, seed=7)
    assert config == train_config(settings, 7)
    assert (config.lr, config.optimizer, config.epochs, config.seed) == (0.05, "adam", 3, 7)
    check_configuration(settings, 100)  # workable: no error
    clash = {**settings, "optimizer": "sgd", "weight_decay": 0.01}
    with pytest.raises(SettingsError) as checked:
        check_configuration(clash, 100)
    with pytest.raises(SettingsError) as validated:
        build(clash, 4, 3)[1].validate()
    assert str(checked.value) == str(validated.value)


def test_never_configures_tells_a_space_no_draw_can_rescue():
    """The spaces whose every trial would fail for its settings, whatever the sampler draws,
    from those where some draws work (which the search must go on with)."""
    from mlplab.tuning.workable import MAX_POINTS, never_configures

    def never(spec, rows=1000):
        return never_configures(SearchSpace.from_dict(spec), rows)

    assert never({"weight_decay": 0.01, "optimizer": "sgd", "lr": [0.1, 0.01]})
    assert never({"weight_decay": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
                  "optimizer": ["sgd", "momentum"]})
    assert not never({"weight_decay": 0.01, "optimizer": ["sgd", "adam"]})
    assert not never({"weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
                      "optimizer": "sgd"})  # 0 is no decay: it works
    # a range stands for all its values: the cosine floor low enough at lr's top works
    cosine = {"schedule": "cosine", "min_lr": {"type": "float", "low": 0.05, "high": 0.1}}
    assert not never({**cosine, "lr": {"type": "float", "low": 1e-3, "high": 0.1}})
    assert never({**cosine, "lr": {"type": "float", "low": 1e-3, "high": 0.04}})
    # batch norm: the training rows bound a shuffled epoch's batch
    assert never({"batchnorm": True, "batch_size": [1]})
    assert not never({"batchnorm": True, "batch_size": [1, 32]})
    assert never({"batchnorm": True, "batch_size": [5, 32]}, rows=1)
    # too many points to probe: left to the failures in a row
    many = {f: [0.1, 0.2, 0.3, 0.4] for f in ("lr", "momentum", "beta1", "beta2", "lr_decay",
                                              "min_lr", "reg")}
    assert 4 ** 7 > MAX_POINTS and not never({**many, "weight_decay": 0.1, "optimizer": "sgd"})


def test_a_trial_no_draw_can_rescue_stops_the_worker():
    from mlplab.tuning.objective import UNWORKABLE_ATTR
    from mlplab.tuning.search import _StopAtTarget

    study = optuna.create_study(direction="maximize")

    def objective(trial):
        trial.set_user_attr(UNWORKABLE_ATTR, "space.yaml")
        raise ValueError("this trial fails")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=20, callbacks=[_StopAtTarget(10)],
                       catch=(ValueError,))
    assert len(study.trials) == 1


def test_a_trial_scores_the_model_it_leaves(digits, tmp_path):
    """With early stopping the best epoch's parameters are restored: the trial's value is their
    validation accuracy (what best-run gets), not the last epoch's."""
    space = {"lr": {"type": "float", "low": 0.05, "high": 0.3, "log": True}, "optimizer": "adam",
             "hidden_size": 32, "epochs": 30, "patience": 2}
    result = tune(digits, trials=1, search_space=space, out=tmp_path, progress=False, seed=0)
    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    trial = study.trials[0]
    epochs = list(trial.intermediate_values.values())
    assert max(epochs) != epochs[-1]  # the test needs a run that got worse before it stopped
    assert trial.value == max(epochs) == pytest.approx(result.retrained_val_acc)


def test_a_killed_processs_running_trial_does_not_count(digits, tmp_path):
    """A trial left RUNNING by a process of this machine that no longer exists (SIGKILL) is
    failed when the search starts again, which then runs the full target at once."""
    import socket
    import subprocess
    import sys

    first = tune(digits, trials=2, search_space=TINY, out=tmp_path, progress=False,
                 search_only=True)
    study = optuna.load_study(study_name=first.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    orphan = study.ask()
    study._storage.set_trial_user_attr(orphan._trial_id, "worker",
                                       f"{socket.gethostname()}:{dead}")
    again = tune(digits, trials=4, search_space=TINY, out=tmp_path, progress=False,
                 search_only=True)
    assert again.n_complete == 4
    states = [t.state for t in optuna.load_study(
        study_name=first.study_name, storage=f"sqlite:///{tmp_path / 'study.db'}").trials]
    assert states.count(TrialState.FAIL) == 1 and TrialState.RUNNING not in states


def test_the_run_that_fails_a_killed_workers_trial_says_so(digits, tmp_path, capsys):
    """The run that failed and re-queued a killed worker's trial said nothing of it (its
    summary only counted "1 failed"; the table's note was the one trace): it says which trial,
    whose, and as which trial its settings run again, with progress off too."""
    import socket
    import subprocess
    import sys

    first = tune(digits, trials=1, search_space=TINY, out=tmp_path, progress=False,
                 search_only=True)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.load_study(study_name=first.study_name, storage=storage)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    orphan = study.ask()
    worker = f"{socket.gethostname()}:{dead}"
    study._storage.set_trial_user_attr(orphan._trial_id, "worker", worker)
    capsys.readouterr()
    tune(digits, trials=2, search_space=TINY, out=tmp_path, progress=False, search_only=True)
    err = capsys.readouterr().err
    retry = [t for t in optuna.load_study(study_name=first.study_name, storage=storage).trials
             if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retry) == 1
    assert (f"trial {orphan.number}: its worker {worker} stopped before finishing it" in err
            and f"re-queued as trial {retry[0].number}" in err)
    # a retry that dies too is not re-queued again, which the line says
    assert "not re-queued again" in dead_worker_line(study, retry[0].number, worker)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_a_killed_worker_not_yet_collected_counts_as_dead():
    """A killed worker that no process has collected yet (a zombie: the orphans of a killed
    command wait for PID 1, which in a container may take seconds, or for ever) still answers
    kill(pid, 0): its trial was taken for a live one's, so the same command run at once after
    the SIGKILL left it RUNNING (counted towards --trials) until its heartbeat's grace ran out,
    and ended a trial short."""
    import socket
    import subprocess

    from mlplab.tuning.processes import process_alive
    from mlplab.tuning.search import fail_dead_local_trials

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{proc.pid}/stat")
        deadline = time.monotonic() + 30
        while stat.read_text().rpartition(")")[2].split()[0] != "Z":  # exited, not waited for
            assert time.monotonic() < deadline
            time.sleep(0.01)
        study = optuna.create_study(direction="maximize")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            left = study.ask()
        left.set_user_attr("worker", f"{socket.gethostname()}:{proc.pid}#0")
        fail_dead_local_trials(study)
        assert not process_alive(proc.pid) and process_alive(os.getpid())
        assert study.trials[0].state == TrialState.FAIL
    finally:
        proc.wait()


def _unnamed_running_trial(study_name, url) -> int:
    """What a worker killed between Optuna creating its trial and naming it leaves behind: a
    RUNNING trial without a `worker`, settings or a heartbeat; returns its number."""
    storage = optuna.storages.JournalStorage(journal_file_backend(url[len("journal:"):])) \
        if url.startswith("journal:") else url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Optuna's warning of a trial asked by hand)
        return optuna.load_study(study_name=study_name, storage=storage).ask().number


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_left_unnamed_by_a_killed_worker_does_not_end_a_rerun_short(digits, tmp_path,
                                                                             kind):
    """A worker killed in the instant between Optuna creating its trial and the worker naming
    it (and before the trial's first heartbeat) left a RUNNING trial that no process could tell
    was a dead one's: it counted towards --trials for ever (Optuna's heartbeat check skips a
    trial that never recorded a heartbeat), so the same command run again, at once or days
    later, ended a trial short, with status 0 and no word. Its start now counts as its first
    heartbeat: the rerun waits for the grace period, fails it, re-queues it and finishes."""
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else \
        f"journal:{tmp_path / 'study.log'}"
    common = dict(search_space=TINY, out=tmp_path, progress=False, search_only=True,
                  storage=url, heartbeat=1, grace=2)
    first = tune(digits, trials=2, **common)
    lost = _unnamed_running_trial(first.study_name, url)
    start = time.monotonic()
    again = tune(digits, trials=3, **common)
    assert again.n_complete == 3 and again.unfinished is None
    assert time.monotonic() - start > 1.5  # it waited for the grace period to tell
    storage = optuna.storages.JournalStorage(journal_file_backend(tmp_path / "study.log")) \
        if kind == "journal" else url
    trials = optuna.load_study(study_name=first.study_name, storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + \
        [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[3].system_attrs["failed_trial"] == lost == 2  # re-queued once, and run


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_a_trial_without_a_heartbeat_is_stale_a_grace_period_after_its_start(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else \
        f"journal:{tmp_path / 'study.log'}"
    spec = StorageSpec(url, heartbeat=1, grace=2, retry_failed=False)
    study = optuna.create_study(storage=spec.open(), study_name="s", direction="maximize")
    silent = study.ask()  # its process killed before the first heartbeat
    optuna.storages.fail_stale_trials(study)
    assert study._storage.get_trial(silent._trial_id).state == TrialState.RUNNING  # too young
    time.sleep(2.2)
    beating = study.ask()
    study._storage.record_heartbeat(beating._trial_id)
    study.ask()  # just begun
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.RUNNING,
                                                     TrialState.RUNNING]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_a_trial_of_a_process_without_heartbeats_is_not_failed_by_one_with_them(tmp_path,
                                                                                 kind):
    """--heartbeat is each invocation's own. A process without heartbeats (--heartbeat 0)
    records none for its trials, and a process with them skipped such trials; since a trial's
    start counts as its first heartbeat, it failed every one of them that ran longer than its
    grace period, live ones too. The start counts only for a trial that names no worker (its
    process killed as it began, before it named it); a worker with heartbeats records its
    first one before it names its trial."""
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else \
        f"journal:{tmp_path / 'study.log'}"
    without = optuna.create_study(storage=StorageSpec(url, heartbeat=None).open(),
                                  study_name="s", direction="maximize")
    live = without.ask()
    live.set_user_attr("worker", "elsewhere:123#0")  # named, training for a while
    without.ask()  # its process killed as it began
    checking = optuna.load_study(
        study_name="s", storage=StorageSpec(url, heartbeat=1, grace=2, retry_failed=False).open())
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(checking)
    assert [t.state for t in checking.get_trials()] == [TrialState.RUNNING, TrialState.FAIL]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_a_trial_is_judged_by_its_own_workers_grace_period(tmp_path, kind):
    """Processes sharing a study with different --heartbeat/--grace: the one with the shorter
    grace failed the others' live trials as dead (four of eight, 90 epochs into 100, run again;
    Optuna's check judges every trial by the checking process's grace). Each trial records its
    worker's grace period and is judged by it; one that records none (not yet named, or by an
    older mlplab) by the checking process's."""
    from mlplab.tuning.storage import GRACE_ATTR, name_trial

    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else \
        f"journal:{tmp_path / 'study.log'}"
    patient = optuna.create_study(
        storage=StorageSpec(url, heartbeat=2, grace=30, retry_failed=False).open(),
        study_name="s", direction="maximize")
    live = patient.ask()
    patient._storage.record_heartbeat(live._trial_id)
    name_trial(live, "elsewhere:123#0")
    assert live.user_attrs[GRACE_ATTR] == 30
    unrecorded = patient.ask()  # named by an older mlplab: no grace of its own
    patient._storage.record_heartbeat(unrecorded._trial_id)
    unrecorded.set_user_attr("worker", "elsewhere:456#0")
    hasty = optuna.load_study(
        study_name="s", storage=StorageSpec(url, heartbeat=1, grace=2, retry_failed=False).open())
    # both heartbeats older than 2 s, younger than 30 s (SQLite's clock counts whole seconds)
    time.sleep(3.5)
    optuna.storages.fail_stale_trials(hasty)
    assert [t.state for t in hasty.get_trials()] == [TrialState.RUNNING, TrialState.FAIL]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_worker_with_heartbeats_records_one_before_it_names_its_trial(digits, tmp_path,
                                                                        kind):
    """Optuna's heartbeat thread writes the first heartbeat while the worker goes on: a worker
    killed after naming its trial but before that write left a trial that names a worker and
    has no heartbeat, which only a process without heartbeats leaves (and is not failed by its
    start). The worker records one itself first."""
    from optuna.storages._heartbeat import HeartbeatThread

    import mlplab.tuning.search as search
    from mlplab.tuning import run_search
    from mlplab.tuning.storage import HEARTBEAT_ATTR

    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else \
        f"journal:{tmp_path / 'study.log'}"
    study = optuna.create_study(storage=StorageSpec(url, heartbeat=1, grace=2).open(),
                                direction="maximize")
    beating: list[bool] = []

    def named(self, trial):  # (the trial is named by now)
        if kind == "journal":
            beating.append(HEARTBEAT_ATTR in study._storage.get_trial(trial._trial_id).system_attrs)
        else:
            import sqlite3

            with contextlib.closing(sqlite3.connect(tmp_path / "study.db")) as con:
                beating.append(con.execute("SELECT count(*) FROM trial_heartbeats WHERE "
                                           "trial_id = ?", (trial._trial_id,)).fetchone()[0] == 1)
        return 0.5

    with pytest.MonkeyPatch.context() as mp:
        # Optuna's thread records none: the worker killed before it did
        mp.setattr(HeartbeatThread, "_record_heartbeat", staticmethod(lambda *args: None))
        mp.setattr(search.Objective, "__call__", named)
        run_search(study, digits, SearchSpace.from_dict(TINY), target=1)
    assert beating == [True]


@contextlib.contextmanager
def _clocks_change(after: float, forward: bool) -> Iterator[None]:
    """This process in a time zone whose clocks go an hour forward (or back) ``after`` seconds
    from now (negative: that long ago), to the second: standard time UTC, summer time UTC+1 (a
    POSIX TZ rule, whose change is given in the local time before it)."""
    moment = time.time() + after
    at = time.gmtime(moment if forward else moment + 3600)
    change = f"{at.tm_yday - 1}/{at.tm_hour}:{at.tm_min:02}:{at.tm_sec:02}"
    rule = f"XST0XDT,{change},J365/23:59:59" if forward else f"XST0XDT,J1/0,{change}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", rule)
        time.tzset()
        try:
            yield
        finally:
            mp.undo()
            time.tzset()


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="sets a POSIX time zone")
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
@pytest.mark.parametrize("change", ["forward, live", "back, live", "back, dead"])
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_a_trial_without_a_heartbeat_is_stale_by_its_age_when_the_clocks_change(tmp_path, kind,
                                                                                 change):
    """A trial's start counts as its first heartbeat by its age, not by local clock times: a
    SQL study compared local times, so a trial begun just before the clocks went forward was
    an hour old at once (a live worker's trial failed before its first heartbeat), and one
    begun just before they went back stayed RUNNING an hour (a rerun ended short); a journal
    study took a start in the hour the clocks go back through as the earlier of its two
    instants, an hour old at once."""
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else \
        f"journal:{tmp_path / 'study.log'}"
    spec = StorageSpec(url, heartbeat=1, grace=3, retry_failed=False)
    study = optuna.create_study(storage=spec.open(), study_name="s", direction="maximize")
    forward, dead = change.startswith("forward"), change.endswith("dead")
    # "back, live": the clocks went back 30 s ago, so this hour of local times comes again now
    with _clocks_change(1.5 if forward or dead else -30, forward):
        trial = study.ask()  # no heartbeat yet: its worker is drawing the settings, or dead
        time.sleep(3.5 if dead else 2.0 if forward else 0)  # (past the change, if to come)
        optuna.storages.fail_stale_trials(study)
        state = study._storage.get_trial(trial._trial_id).state
    assert state == (TrialState.FAIL if dead else TrialState.RUNNING)


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="sets a POSIX time zone")
def test_one_function_reads_a_trials_start_from_a_sql_row_and_from_a_frozen_trial():
    """A trial's start as a Unix time is one rule for both forms of a trial that the stale
    checks read: a row of Optuna's SQL trials table (the SQL storage's query), which Optuna 5
    stores in UTC and is read exactly, and a FrozenTrial (the journal storage's), which gives
    the local time, read as the later of the two instants of the hour the clocks go back
    repeats that is not in the future."""
    import datetime

    from optuna.storages._rdb import models

    from mlplab.tuning.storage import _started

    now = time.time()
    began = now - 70 * 60  # in the hour that the clocks going back 30 minutes ago repeats
    with _clocks_change(-30 * 60, forward=False):
        local = datetime.datetime.fromtimestamp(began)  # naive: which of two instants is lost
        frozen = optuna.trial.create_trial(state=TrialState.RUNNING)
        frozen.datetime_start = local
        assert _started(frozen, now, 60) == pytest.approx(began + 3600, abs=1e-3)
        if hasattr(models.TrialModel, "_datetime_start_utc"):  # Optuna 5: exact
            utc = datetime.datetime.fromtimestamp(began, datetime.timezone.utc)
            row = models.TrialModel(_datetime_start_utc=utc.replace(tzinfo=None))
            assert _started(row, now, 60) == pytest.approx(began, abs=1e-3)
        else:  # older Optunas store the local time, as a FrozenTrial gives it
            row = models.TrialModel(datetime_start=local)
            assert _started(row, now, 60) == pytest.approx(began + 3600, abs=1e-3)
    # no start recorded (a WAITING trial): no age either
    assert _started(optuna.trial.create_trial(state=TrialState.WAITING), now, 60) is None
    assert _started(models.TrialModel(), now, 60) is None


class _Bar:
    """What the search writes on a progress bar: its postfix texts."""

    def __init__(self, total: int) -> None:
        self.n, self.total, self.said = 0, total, []

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.said.append(text)

    def refresh(self) -> None:
        pass


def _fake_clock(monkeypatch) -> list[float]:
    """The search module's clock as a number that only its sleeps move (it starts at 0)."""
    import types

    import mlplab.tuning.search as search

    clock = [0.0]
    monkeypatch.setattr(search, "time", types.SimpleNamespace(
        monotonic=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s)))
    return clock


def test_the_wait_for_an_unnamed_trial_says_how_long_it_waits_at_most(monkeypatch):
    """The progress bar said "waiting up to {grace} s" while the wait went on for a heartbeat
    and a second more: it states the bound the wait stops at."""
    from mlplab.tuning.search import wait_for_unnamed_trials

    clock = _fake_clock(monkeypatch)
    study = optuna.create_study(direction="maximize")  # (in memory: nothing fails the trial)
    study.ask()  # RUNNING and named by no worker, for good
    bar = _Bar(3)
    wait_for_unnamed_trials(study, 3, heartbeat=5, grace=10, bar=bar, poll=0.25)
    said = [m.group(1) for t in bar.said if (m := re.match(r"waiting up to (\S+) s", t))]
    assert said and clock[0] == pytest.approx(float(said[0]), abs=0.25), (said, clock)


def test_the_wait_for_an_unnamed_trial_counts_against_the_timeout(digits, tmp_path):
    """The wait at the start of a search for a trial that names no worker was not counted
    against --timeout: the command searched for up to the grace period and a heartbeat longer
    than --timeout said, and then a note that --timeout had ended the search could be about a
    search that other causes had ended. The wait is part of the search's time now: it stops at
    the timeout, no trial starts after it, and the note is then true."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    common = dict(search_space=TINY, out=tmp_path, progress=False, search_only=True,
                  storage=url, heartbeat=1, grace=30)
    first = tune(digits, trials=2, **common)
    lost = _unnamed_running_trial(first.study_name, url)  # stale only 30 s after it began
    start = time.monotonic()
    again = tune(digits, trials=3, timeout=1, **common)
    assert time.monotonic() - start < 15  # (it waited 31 s, then searched a second more)
    assert again.unfinished == ("timeout=1 s ended the search at 2 of trials=3 finished "
                                "trials; call tune() again with the same arguments to go on "
                                "with it")
    trials = optuna.load_study(study_name=first.study_name, storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]
    assert lost == 2 and "worker" not in trials[2].user_attrs


def test_a_rerun_short_of_its_target_says_so_and_how_to_finish(tmp_path, capsys):
    """Without heartbeats nothing can tell a trial left unnamed by a killed worker from a live
    one's: the search ends short and says so (it said nothing, with status 0); the same
    command with heartbeats then finishes the study."""
    space = tmp_path / "space.yaml"
    space.write_text(json.dumps(TINY))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    argv = ["tune", "--search-space", str(space), "--out", str(tmp_path), "--storage", url,
            "--study", "short", "--no-progress", "--search-only"]
    assert main([*argv, "--trials", "2"]) == 0
    _unnamed_running_trial("short", url)
    capsys.readouterr()
    assert main([*argv, "--trials", "3", "--heartbeat", "0"]) == 0
    out = capsys.readouterr().out
    assert "2 complete, 0 pruned, 0 failed" in out
    assert "the search ended at 2 of --trials 3 finished trials: trial 2 is still RUNNING, " \
        "most likely because another worker is still training it: this command's part is " \
        "done, and that worker will finish the study; only if it is gone, run the same " \
        "command again with heartbeats on (with --heartbeat 0 nothing tells a live worker's " \
        "trial from a killed one's) to finish the study" in out, out
    assert main([*argv, "--trials", "3", "--heartbeat", "1", "--grace", "2"]) == 0
    out = capsys.readouterr().out
    assert "3 complete, 0 pruned, 1 failed" in out and "ended" not in out, out


def _assert_given_up_quietly(study, search):
    """Run ``search``, in which another process fails ``study``'s trial 0: the trial is given up
    and the search goes on to two complete trials, with none of Optuna's log lines (a traceback
    of "Trial#0 has already finished") about it."""
    import logging

    class Records(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage() + str(record.exc_info))

    records = Records()
    logging.getLogger("optuna").addHandler(records)
    try:
        search()
    finally:
        logging.getLogger("optuna").removeHandler(records)
    assert [t.state for t in study.trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert not [m for m in records.messages if "Trial 0" in m or "already finished" in m], \
        records.messages


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_trial_failed_as_stale_before_its_worker_named_it_is_given_up_quietly(digits,
                                                                                tmp_path):
    """A live worker whose trial another process failed as stale before the worker named it (a
    sampler slower than the grace period, a clock behind) printed Optuna's traceback of
    "Trial#N has already finished"; it gives the trial up quietly (its settings are re-queued
    by the process that failed it) and goes on to the target."""

    import mlplab.tuning.search as search
    from mlplab.tuning import run_search

    spec = StorageSpec(f"sqlite:///{tmp_path / 'study.db'}", heartbeat=1, grace=2)
    study = optuna.create_study(storage=spec.open(), direction="maximize")
    real = search._WithinTarget.__call__

    def failed_meanwhile(self, trial):
        if trial.number == 0:  # another process, as this one was drawing the settings
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        return real(self, trial)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search._WithinTarget, "__call__", failed_meanwhile)
        _assert_given_up_quietly(study, lambda: run_search(
            study, digits, SearchSpace.from_dict(TINY), target=2))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_trial_failed_as_stale_while_it_trains_is_given_up_quietly(digits, tmp_path,
                                                                       capsys):
    """A worker whose running trial another process failed as stale (the worker suspended past
    the grace period, a stopped process) printed a 60-line traceback of "has already finished"
    from its next report, then another from recording the trial's time; it gives the trial up
    quietly, as one failed before it was named, and goes on to the target."""

    import mlplab.tuning.objective as objective
    from mlplab.tuning import run_search

    spec = StorageSpec(f"sqlite:///{tmp_path / 'study.db'}", heartbeat=1, grace=2)
    study = optuna.create_study(storage=spec.open(), direction="maximize")
    real = objective._ReportCallback.on_epoch_end

    def failed_meanwhile(self, trainer, epoch, logs):
        if self.trial.number == 0 and epoch == 2:  # another process, while this one trained
            study._storage.set_trial_state_values(self.trial._trial_id, state=TrialState.FAIL)
        return real(self, trainer, epoch, logs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(objective._ReportCallback, "on_epoch_end", failed_meanwhile)
        _assert_given_up_quietly(study, lambda: run_search(
            study, digits, SearchSpace.from_dict(TINY), target=2))  # (TINY: 3 epochs)
    assert "Traceback" not in capsys.readouterr().err


def test_the_note_of_a_search_that_ended_short_says_why():
    from mlplab._validation import command_line
    from mlplab.tuning import _unfinished

    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL):
        study.add_trial(optuna.trial.create_trial(
            params={"x": 0.5}, distributions=dist, state=state,
            value=0.5 if state == TrialState.COMPLETE else None))
    assert _unfinished(study, 1, None, 5.0, 60) is None  # the target is met
    assert _unfinished(study, 4, 2.0, 5.0, 60) == (  # a script or notebook: Python's words
        "timeout=2 s ended the search at 1 of trials=4 finished trials; call tune() again with "
        "the same arguments to go on with it")
    with command_line():
        assert _unfinished(study, 4, None, 5.0, 60) == (
            "the search ended at 1 of --trials 4 finished trials after 2 failed trials in a row "
            "(each one's error is in the results); run the same command again to go on with it")
        assert _unfinished(study, 4, 2.0, 5.0, 60) == (
            "--timeout 2 s ended the search at 1 of --trials 4 finished trials; run the same "
            "command again to go on with it")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.ask(), study.ask()
        assert _unfinished(study, 4, None, 5.0, 60) == (
            "the search ended at 1 of --trials 4 finished trials: trials 3, 4 are still RUNNING, "
            "most likely because other workers are still training them: this command's part is "
            "done, and those workers will finish the study; only if one is gone, run the same "
            "command again after its grace period (its trial is failed and re-queued 60 s after "
            "its last heartbeat) to finish the study")


def test_a_search_ended_by_another_machines_running_trial_names_its_worker(tmp_path, capsys):
    """A worker that ended while another machine's worker still trained the last trial said
    the trial was "in another process or left by a killed one" and to run the command again
    once it had finished: on several machines, a needless rerun. It names the trial's worker,
    says this command's part is done, and to run it again only if that worker is gone, after
    the grace period that worker's trial is judged by (its own, recorded in the trial)."""
    from mlplab.tuning.storage import GRACE_ATTR, WORKER_ATTR

    space = tmp_path / "space.yaml"
    space.write_text(json.dumps(TINY))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    argv = ["tune", "--search-space", str(space), "--out", str(tmp_path), "--storage", url,
            "--study", "shared", "--no-progress", "--search-only"]
    assert main([*argv, "--trials", "2"]) == 0
    study = optuna.load_study(study_name="shared", storage=url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Optuna's warning of a trial asked by hand)
        trial = study.ask()  # what the other machine's worker runs, named as mlplab names it
    trial.set_user_attr(GRACE_ATTR, 90)
    trial.set_user_attr(WORKER_ATTR, "other-machine:4242")
    capsys.readouterr()
    assert main([*argv, "--trials", "3"]) == 0
    out = capsys.readouterr().out
    assert "the search ended at 2 of --trials 3 finished trials: trial 2 is still RUNNING, " \
        "most likely because another worker (other-machine:4242) is still training it: this " \
        "command's part is done, and that worker will finish the study; only if it is gone, " \
        "run the same command again after its grace period (its trial is failed and " \
        "re-queued 90 s after its last heartbeat) to finish the study" in out, out
    assert "once it has finished" not in out


def test_killed_workers_trials_are_failed_once_before_new_workers_start(digits, tmp_path,
                                                                         monkeypatch):
    """Resuming with --workers K after the workers were killed: the parent fails their trials
    (and re-queues each once) before any worker starts. K workers doing it together raced on
    SQLite, and one killed trial's settings were re-queued, and run, twice."""
    import socket
    import subprocess
    import sys

    import mlplab.tuning as tmod

    first = tune(digits, trials=2, search_space=TINY, out=tmp_path, progress=False,
                 search_only=True)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.load_study(study_name=first.study_name, storage=storage)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for index in range(2):  # what `--workers 2` killed by Ctrl-C or SIGKILL leaves behind
        orphan = study.ask({"hidden_size": optuna.distributions.IntDistribution(8, 32)})
        study._storage.set_trial_user_attr(orphan._trial_id, "worker",
                                           f"{socket.gethostname()}:{dead}#{index}")
    seen = []

    def workers_started(specs, study, bar=None):
        seen.append([(t.number, t.state, t.system_attrs.get("failed_trial"))
                     for t in study.get_trials(deepcopy=False)])

    monkeypatch.setattr(tmod, "run_workers", workers_started)
    tune(digits, trials=4, search_space=TINY, out=tmp_path, progress=False, search_only=True,
         workers=2)
    (before,) = seen
    assert [state for _, state, _ in before[2:4]] == [TrialState.FAIL] * 2
    # each killed trial re-queued once, as a WAITING trial for the workers to run
    assert sorted((state, retry) for _, state, retry in before[4:]) == \
        [(TrialState.WAITING, 2), (TrialState.WAITING, 3)]


def test_a_trial_names_its_worker_before_anything_that_takes_time(digits, tmp_path,
                                                                   monkeypatch):
    """The worker's name is the trial's first write: a worker killed while its trial was still
    unnamed (the sampler drawing its settings, the check of the target) left a RUNNING trial
    that no process could tell was a dead one's, so it counted towards the target until its
    heartbeat's grace ran out: the same command run again at once ended a trial short, with
    no error."""
    import mlplab.tuning.search as search
    from mlplab.tuning import run_search

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}",
                                direction="maximize")
    unnamed = []

    def busy(study):
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        unnamed.extend(t.number for t in running if "worker" not in t.user_attrs)
        return busy_before(study)

    def suggest(self, trial):
        if "worker" not in study._storage.get_trial(trial._trial_id).user_attrs:
            unnamed.append(trial.number)
        return suggest_before(self, trial)

    busy_before, suggest_before = search._busy, SearchSpace.suggest
    monkeypatch.setattr(search, "_busy", busy)
    monkeypatch.setattr(SearchSpace, "suggest", suggest)
    run_search(study, digits, SearchSpace.from_dict(TINY), target=2)
    assert len(study.trials) == 2 and unnamed == []


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed:UserWarning")  # ask() by hand
def test_a_requeued_trial_taken_up_by_a_live_worker_is_not_failed_as_the_dead_ones(tmp_path):
    """A killed worker's trial is re-queued with its settings, but not with its run's own
    attributes: Optuna's retry copies every user attribute, the dead process's `worker` too, so
    the retry that a live worker had just taken up looked like the dead worker's trial to a
    worker starting beside it, which failed it (the live one then printed Optuna's traceback of
    'Trial#N has already finished') and the killed trial's settings never ran again."""
    import socket
    import subprocess
    import sys

    from mlplab.tuning.search import fail_dead_local_trials

    spec = StorageSpec(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=spec.open(), direction="maximize")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    orphan = study.ask({"hidden_size": optuna.distributions.IntDistribution(8, 32)})
    for key, value in (("worker", f"{socket.gethostname()}:{dead}#1"), ("epochs", 3)):
        study._storage.set_trial_user_attr(orphan._trial_id, key, value)
    fail_dead_local_trials(study)  # the parent, noticing the kill: FAIL, and re-queued
    (retry,) = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert retry.params == orphan.params and retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs == {}  # not the dead worker's name, nor its epochs
    taken = study.ask()  # a live worker takes it up (RUNNING), before it names itself
    assert taken.number == retry.number
    fail_dead_local_trials(study)  # another worker, starting
    assert study._storage.get_trial(taken._trial_id).state == TrialState.RUNNING


def test_workers_stopped_by_the_searchs_ctrl_c_are_said_interrupted(tmp_path):
    """With --workers 2, a Ctrl-C stops the workers, whose trials the search then fails and
    re-queues: the results said "worker lost (its process ended or its heartbeat stopped)",
    as of a crash. Failed as interrupted, they read as a Ctrl-C'd trial does."""
    import socket
    import subprocess
    import sys

    from mlplab.tuning.results import trials_table
    from mlplab.tuning.search import fail_dead_local_trials

    spec = StorageSpec(f"sqlite:///{tmp_path / 'study.db'}")
    notes = []
    for interrupted in (True, False):
        study = optuna.create_study(storage=spec.open(), direction="maximize")
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        orphan = study.ask({"hidden_size": optuna.distributions.IntDistribution(8, 32)})
        study._storage.set_trial_user_attr(orphan._trial_id, "worker",
                                           f"{socket.gethostname()}:{dead}#1")
        fail_dead_local_trials(study, interrupted=interrupted)
        header, rows = trials_table(study)
        notes.append(rows[orphan.number][header.index("note")])
    assert notes == ["interrupted (Ctrl-C); re-queued as trial 1",
                     "worker lost (its process ended or its heartbeat stopped); re-queued as "
                     "trial 1"]


def test_the_best_run_retrains_with_the_searchs_seed_preprocessing_and_split(tmp_path):
    """The retrained best-run is the best trial's model again: same seed, same preprocessing,
    so the same validation accuracy; and its config.json names the split it was loaded with,
    so that evaluate reloads the same images."""
    from mlplab.io import read_json

    result = tune("digits", trials=1, search_space=TINY, out=tmp_path, progress=False, seed=3,
                  preprocess="scale", val_size=0.25)
    assert result.retrained_val_acc == result.best_value
    config = read_json(result.run_dir / "config.json")
    assert (config["seed"], config["preprocessing"]) == (3, "scale")
    asked, recorded = (load_dataset("digits", val_size=v, test_size=config["test_size"],
                                    seed=config["data_seed"]) for v in (0.25, config["val_size"]))
    assert config["dataset"] == "digits" and len(asked.y_val) != 180  # not the default split
    np.testing.assert_array_equal(recorded.X_val, asked.X_val)


def test_ctrl_c_while_retraining_keeps_the_older_best_run(digits, tmp_path, monkeypatch):
    import os
    import signal

    import mlplab.runs as runs
    from mlplab.io import read_json
    from mlplab.trainer import Callback

    first = tune(digits, trials=2, search_space=TINY, out=tmp_path, progress=False)
    before = read_json(first.run_dir / "metrics.json")
    real = runs.train_run

    class CtrlC(Callback):
        def on_iteration_end(self, trainer, iteration, loss):
            if iteration == 3:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(runs, "train_run", lambda *a, **k: real(
        *a, **{**k, "callbacks": [*k.get("callbacks", ()), CtrlC()]}))
    # rerun with the test split asked for, which the kept best-run lacks: it is retrained
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        tune(digits, trials=2, search_space=TINY, out=tmp_path, progress=False, eval_test=True)
    assert read_json(first.run_dir / "metrics.json") == before
    # no RunInterruptedWarning offering to resume the retraining's folder, which is removed
    assert not [w for w in shown if issubclass(w.category, runs.RunInterruptedWarning)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # stopped outside the training loop (no checkpointed stop), and a killed process's folder
    monkeypatch.setattr(runs, "train_run", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt))
    (tmp_path / ".best-run.999999999.tmp").mkdir()
    (tmp_path / ".best-run.999999999.old").mkdir()
    with pytest.raises(KeyboardInterrupt):
        tune(digits, trials=2, search_space=TINY, out=tmp_path, progress=False, eval_test=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_grid_sampler_runs_each_combination_once(digits, tmp_path):
    space = {"hidden_size": [8, 16], "lr": {"type": "float", "low": 0.01, "high": 0.5,
                                            "grid": [0.05, 0.2]}, "epochs": 2}
    result = tune(digits, trials=10, search_space=space, sampler="grid", out=tmp_path,
                  progress=False, search_only=True)
    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    seen = sorted((t.params["hidden_size"], t.params["lr"]) for t in study.trials)
    assert seen == [(8, 0.05), (8, 0.2), (16, 0.05), (16, 0.2)]  # the grid is exhausted
    # run again, the exhausted grid is resumed without running a point a second time
    result = tune(digits, trials=10, search_space=space, sampler="grid", out=tmp_path,
                  progress=False, search_only=True)
    assert result.n_complete == 4


def test_a_search_only_worker_on_a_shared_storage_makes_no_output_folder(digits, tmp_path):
    """A --search-only worker writes no outputs; with the study in a storage of its own it left
    an empty output folder (runs/<study> on every machine of a shared search)."""
    result = tune(digits, trials=1, search_space=TINY, storage=tmp_path / "shared.db",
                  out=tmp_path / "runs" / "s", study_name="s", progress=False,
                  search_only=True)
    assert result.n_complete == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.db"]


def test_a_search_only_worker_may_run_where_it_cannot_write(digits, tmp_path, monkeypatch):
    """Nor does such a worker need to write where its output folder would be (a worker started
    in a read-only working folder, runs/ under it): it was refused as "not writable", while a
    search that writes its outputs there still is. (Simulated: the tests may run as root.)"""
    here = tmp_path / "read-only"
    here.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: os.path.abspath(p) != str(here)
                        and access(p, mode, **kw))
    result = tune(digits, trials=1, search_space=TINY, storage=tmp_path / "shared.db",
                  out=here / "s", study_name="s", progress=False, search_only=True)
    assert result.n_complete == 1 and list(here.iterdir()) == []
    with pytest.raises(ValueError, match=f"cannot write to out {here / 's'}: {here} is not "
                                         r"writable \(permission denied\)"):
        tune(digits, trials=1, search_space=TINY, out=here / "s", study_name="s",
             progress=False, search_only=True)


@pytest.mark.parametrize("storage", ["studies/s.db", "sqlite:///studies/s.db"])
def test_a_sqlite_storage_in_a_new_folder(digits, tmp_path, monkeypatch, storage):
    """A journal file's folder is created, as the default study.db's; a SQLite file's was not,
    and the search failed with SQLite's "unable to open database file"."""
    monkeypatch.chdir(tmp_path)
    result = tune(digits, trials=1, search_space=TINY, storage=storage, out=tmp_path / "o",
                  progress=False, search_only=True)
    assert result.n_complete == 1 and (tmp_path / "studies" / "s.db").is_file()


def test_a_run_folder_is_refused_as_a_studys_output_folder(digits, tmp_path):
    """mlplab train refuses a tuning folder for its run; tune wrote its tables, plots, study.db
    and best-run into a run folder, which mlplab runs and evaluate still took for that run."""
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "--out",
                 str(run), "--quiet", "--no-plots"]) == 0
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ValueError, match="is a run folder .mlplab train or mlplab torch "
                                         "train.; choose another out"):
        tune(digits, trials=1, search_space=TINY, out=run, progress=False)
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.parametrize("elsewhere", [TrialState.COMPLETE, TrialState.FAIL])
def test_a_trial_another_worker_recorded_first_does_not_end_the_search(digits, tmp_path,
                                                                        monkeypatch, elsewhere):
    """Two workers of a SQLite study could take the same re-queued trial; when the other one
    recorded it first, Optuna refused this one's result ("Cannot tell a COMPLETE trial") and
    the worker ended with a traceback, failing the command. The search goes on. So it does
    when another worker failed the trial as stale (its heartbeat late under a busy SQLite
    file): Optuna 4+ then raises an AssertionError ("Should not reach.") over its "Cannot tell
    a FAIL trial", which ended the worker and the command."""
    from mlplab.tuning import search

    class RecordedElsewhere(search.Objective):
        def __call__(self, trial):
            value = super().__call__(trial)
            if trial.number == 0:  # the other worker records the same trial first
                trial.study._storage.set_trial_state_values(
                    trial._trial_id, elsewhere,
                    [0.5] if elsewhere == TrialState.COMPLETE else None)
            return value

    monkeypatch.setattr(search, "Objective", RecordedElsewhere)
    result = tune(digits, trials=3, search_space=TINY, out=tmp_path, progress=False,
                  search_only=True)
    assert result.n_complete == 3
    assert result.n_failed == (elsewhere == TrialState.FAIL)


def test_a_resumed_grid_search_runs_the_points_it_has_not_run(digits, tmp_path):
    """A grid study numbers its points in an order shuffled by the sampler's seed: a resumed
    search reseeded its sampler (as for TPE), so the numbers of the points already run named
    other points, which it ran twice while it never ran others, and then said it was done."""
    space = {"hidden_size": [8, 16], "lr": {"type": "float", "low": 0.01, "high": 0.5,
                                            "grid": [0.05, 0.2]},
             "epochs": {"type": "int", "low": 1, "high": 2}}
    for trials in (3, 20):
        result = tune(digits, trials=trials, search_space=space, sampler="grid", out=tmp_path,
                      progress=False, search_only=True, seed=3)
    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    seen = sorted((t.params["hidden_size"], t.params["lr"], t.params["epochs"])
                  for t in study.trials)
    assert seen == sorted(itertools.product([8, 16], [0.05, 0.2], [1, 2]))


def test_median_pruning_stops_hopeless_trials(digits, tmp_path):
    # lr 1e-4 barely moves in 6 epochs; lr 0.3 learns digits within 2
    space = {"lr": [1e-4, 0.3], "hidden_size": 16, "epochs": 6, "batch_size": 64}
    result = tune(digits, trials=8, search_space=space, sampler="random", prune="median",
                  out=tmp_path, progress=False, seed=0, search_only=True)
    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and result.n_pruned == len(pruned)
    assert all(t.params["lr"] == 1e-4 for t in pruned)
    assert all(len(t.intermediate_values) < 6 for t in pruned)
    assert all(t.state == TrialState.COMPLETE for t in study.trials if t.params["lr"] == 0.3)


def test_hyperband_pruner_uses_the_epoch_budget(digits, tmp_path):
    space = SearchSpace.from_dict({"lr": [1e-4, 0.3], "hidden_size": 16,
                                   "epochs": {"type": "int", "low": 2, "high": 9}})
    pruner = make_pruner("hyperband", space, 10)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert pruner._max_resource == 9 and pruner._min_resource == 1
    result = tune(digits, trials=4, search_space=space, sampler="random", prune="hyperband",
                  out=tmp_path, progress=False, search_only=True)
    assert result.n_complete + result.n_pruned == 4 and result.n_failed == 0


def test_diverged_trials_score_zero_and_importance_needs_two_trials(digits, tmp_path):
    space = {"hidden_size": [8], "lr": 1e8, "epochs": 2}
    result = tune(digits, trials=1, search_space=space, out=tmp_path, progress=False)
    assert result.n_complete == 1
    assert result.best_trial is None and result.run_dir is None  # nothing worth retraining
    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert study.trials[0].value == 0.0
    assert "diverged" in (tmp_path / "results.csv").read_text()
    assert "param_importances" in result.skipped_plots
    assert (tmp_path / "optimization_history.png").is_file()
    assert not (tmp_path / "param_importances.png").exists()


def test_best_so_far_skips_diverged_trials_and_gives_a_tie_to_the_first(tmp_path):
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from mlplab.tuning.study import best_so_far

    study = optuna.create_study(direction="maximize")
    for value, diverged in ((0.5, False), (0.9, False), (0.9, False), (0.95, True)):
        study.add_trial(create_trial(params={"lr": 0.1}, value=value,
                                     user_attrs={"diverged": True} if diverged else {},
                                     distributions={"lr": FloatDistribution(0.01, 0.5)}))
    assert best_so_far(study) == (1, 0.9)


def test_finished_trials_are_the_completed_and_the_pruned():
    """The search's target counts finished trials: a pruned trial ran its course (the pruner
    ended it), a failed or still running one did not."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from mlplab.tuning.study import finished_count

    study = optuna.create_study(direction="maximize")
    lr = {"lr": FloatDistribution(0.01, 0.5)}
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.PRUNED):
        study.add_trial(create_trial(params={"lr": 0.1}, distributions=lr, state=state,
                                     value=0.5 if state == TrialState.COMPLETE else None))
    study.ask()  # running
    assert finished_count(study) == 3


@pytest.mark.parametrize("target, outcomes, runs", [
    (1, "FFFFFF", 3),  # a space whose every trial fails: three in a row, even for a target of 1
    (5, "FFFFFFFFFF", 5),  # ... or as many as the target when that is more
    (3, "FFSFFSFFS", 9),  # failures between successes do not add up
    (2, "SS", 2),
])
def test_a_worker_stops_at_its_target_or_after_failures_in_a_row(target, outcomes, runs):
    from mlplab.tuning.search import _StopAtTarget

    study = optuna.create_study(direction="maximize")
    results = iter(outcomes)

    def objective(trial):
        if next(results, "S") == "F":
            raise ValueError("this trial fails")
        return 0.5

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=20, callbacks=[_StopAtTarget(target)],
                       catch=(ValueError,))
    assert len(study.trials) == runs


def test_a_worker_trains_no_trial_past_the_target_that_another_began_meanwhile(digits, tmp_path):
    """Two workers that each checked the target before either created its next trial both went
    on, and a worker's first trial was not checked at all: workers racing ran one trial more
    than --trials. Here another worker's trial begins between this worker's check and its own
    trial: this one trains nothing, and its trial is left out of the tables and counts."""
    from optuna.trial import create_trial

    from mlplab.tuning import run_search, trials_table
    from mlplab.tuning.study import SURPLUS_ATTR

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}",
                                direction="maximize")
    study.add_trial(create_trial(value=0.5))  # one of the target of 2 finished
    ask = study.ask

    def another_worker_begins_first(*args, **kwargs):
        theirs = study._storage.create_new_trial(study._study_id)  # RUNNING, elsewhere
        study._storage.set_trial_user_attr(theirs, "worker", "elsewhere:1")
        study.ask = ask
        return ask(*args, **kwargs)

    study.ask = another_worker_begins_first
    space = SearchSpace.from_dict(TINY)
    # what Optuna's own handler prints (its stream is the one stderr was when Optuna was first
    # imported, which capfd does not see): the filters act on that handler
    handler = optuna.logging._get_library_root_logger().handlers[0]
    log = io.StringIO()
    previous = handler.setStream(log)
    try:
        run_search(study, digits, space, target=2)
    finally:
        handler.setStream(previous)
    states = [(t.state, t.user_attrs.get(SURPLUS_ATTR), t.params)
              for t in study.get_trials(deepcopy=False)]
    assert states == [(TrialState.COMPLETE, None, {}), (TrialState.RUNNING, None, {}),
                      (TrialState.FAIL, True, {})]  # ours: given up before any settings
    assert [row[:2] for row in trials_table(study)[1]] == [[0, "COMPLETE"], [1, "RUNNING"]]
    # neither of Optuna's two "Trial 2 failed" warnings: the user's search did not fail
    assert "Trial 2" not in log.getvalue(), log.getvalue()
    # and a worker that begins with the target met by running trials starts none
    study.ask = lambda *a, **k: pytest.fail("a trial was begun past the target")
    run_search(study, digits, space, target=2)


def test_ctrl_c_fails_only_this_workers_running_trial():
    """Ctrl-C while Optuna records a trial fails the trial this worker left running; the trials
    other workers are running on the same study carry on."""
    from mlplab.tuning.search import _fail_running_trials_of

    study = optuna.create_study(direction="maximize")
    ours, theirs = study.ask(), study.ask()
    ours.set_user_attr("worker", "host:1")
    theirs.set_user_attr("worker", "host:2")
    _fail_running_trials_of(study, "host:1")
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.RUNNING]


def test_the_trial_bar_stops_at_its_total_and_shows_the_best(tmp_path):
    """A resumed study may hold more finished trials than this run's target: the bar shows
    it full, not past 100%."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial
    from tqdm import tqdm

    from mlplab.tuning.search import update_bar

    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.75, 0.6):
        study.add_trial(create_trial(params={"lr": 0.1}, value=value,
                                     distributions={"lr": FloatDistribution(0.01, 0.5)}))
    with open(tmp_path / "bar.txt", "w") as fh, tqdm(total=2, file=fh) as bar:
        update_bar(bar, study)
        assert bar.n == 2 and bar.postfix == "best val acc 75.00% (trial 1)"


def test_open_study_refuses_a_minimising_study_and_resumes_the_same_options(tmp_path):
    """A study of the same name made by something else (minimising) is refused; one made with
    the same space, seed and data (a tuple stored as a JSON list included) is resumed."""
    from mlplab.tuning import storage_spec
    from mlplab.tuning.study import open_study

    spec = storage_spec(None, tmp_path)
    optuna.create_study(storage=spec.open(), study_name="theirs", direction="minimize")
    space = SearchSpace.load(None)
    with pytest.raises(ValueError, match="minimises; it is not an mlplab tuning study"):
        open_study(spec, "theirs", space, {"dataset": "digits"}, seed=0)
    data = {"dataset": "digits", "image_size": (8, 8), "train_size": None}
    open_study(spec, "ours", space, data, seed=0)
    study = open_study(spec, "ours", space, data, seed=0)  # read back from the database
    assert study.user_attrs["mlplab:dataset"] == {**data, "image_size": [8, 8]}
    with pytest.raises(ValueError, match="different data"):
        open_study(spec, "ours", space, {**data, "image_size": (16, 16)}, seed=0)


def test_a_resumed_study_with_another_space_names_only_the_knobs_that_differ(tmp_path):
    """A study resumed with another search space was refused with both whole spaces as JSON, the
    knob that differed lost among the rest; the message names only the knobs changed, added and
    removed, each in the YAML form it was written in, and still says what to do."""
    from mlplab.tuning import storage_spec
    from mlplab.tuning.study import open_study

    spec = storage_spec(None, tmp_path)
    data = {"dataset": "digits"}
    open_study(spec, "s", SearchSpace.load(TINY), data, seed=0)
    other = {"hidden_size": TINY["hidden_size"], "batch_size": 64, "epochs": 4,
             "lr": {"type": "float", "low": 0.05, "high": 0.5, "log": True},
             "dropout": {"type": "categorical", "choices": [0.0, 0.5]}}
    with pytest.raises(ValueError) as err:
        open_study(spec, "s", SearchSpace.load(other), data, seed=0)
    msg = str(err.value)
    assert "`epochs`: 3 in the study, 4 now" in msg, msg
    assert ("`lr`: {type: float, low: 0.01, high: 0.5, log: true} in the study, "
            "{type: float, low: 0.05, high: 0.5, log: true} now") in msg, msg
    assert "added `dropout`: {type: categorical, choices: [0.0, 0.5]}" in msg, msg
    # the knobs both spaces share unchanged are not repeated
    assert "hidden_size" not in msg and "batch_size" not in msg, msg
    assert msg.endswith("; resume it with the same options or choose a new study_name (and "
                        "another out, if you gave one)."), msg
    fewer = {k: v for k, v in TINY.items() if k != "hidden_size"}
    with pytest.raises(ValueError, match=r"space \(removed `hidden_size`: "
                                         r"\{type: int, low: 8, high: 32\}\); resume"):
        open_study(spec, "s", SearchSpace.load(fewer), data, seed=0)


def test_the_results_table_notes_and_the_best_row():
    """results.csv/results.md from a study's trials: each trial's note (diverged, the error of a
    failed one, a lost worker's trial and its retry), a duration Optuna measured when the
    objective recorded none, and the best trial (never a diverged one) in bold."""
    import datetime

    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from mlplab.tuning.results import markdown_table, trials_table
    from mlplab.tuning.study import best_so_far

    lr = {"lr": FloatDistribution(1e-4, 1.0), "note": CategoricalDistribution(["a|b", "c"])}
    start = datetime.datetime(2026, 1, 1)
    study = optuna.create_study(direction="maximize")
    add = study.add_trial
    add(create_trial(params={"lr": 0.5, "note": "a|b"}, distributions=lr, value=0.5,
                     user_attrs={"seconds": 1.5, "epochs": 3}))
    add(create_trial(params={"lr": 0.001, "note": "c"}, distributions=lr, value=0.8))
    add(create_trial(params={"lr": 0.9, "note": "c"}, distributions=lr, value=0.0,
                     user_attrs={"diverged": True}))
    add(create_trial(params={"lr": 0.2, "note": "c"}, distributions=lr, state=TrialState.FAIL,
                     user_attrs={"error": "ValueError: no"}))
    add(create_trial(params={"lr": 0.3, "note": "c"}, distributions=lr, state=TrialState.FAIL))
    add(create_trial(params={"lr": 0.3, "note": "c"}, distributions=lr, value=0.85,
                     system_attrs={"failed_trial": 4}))
    add(create_trial(params={"lr": 0.4, "note": "c"}, distributions=lr, state=TrialState.FAIL))
    timed = create_trial(params={"lr": 0.1, "note": "c"}, distributions=lr, value=0.3)
    timed.datetime_start, timed.datetime_complete = start, start + datetime.timedelta(seconds=2)
    add(timed)
    # a killed worker's trial: Optuna's duration runs until a later search failed it (hours,
    # if resumed the next day), which is no time the trial trained
    lost = create_trial(params={"lr": 0.1, "note": "c"}, distributions=lr,
                        state=TrialState.FAIL)
    lost.datetime_start, lost.datetime_complete = start, start + datetime.timedelta(hours=9)
    add(lost)
    header, rows = trials_table(study)
    col = {name: i for i, name in enumerate(header)}
    notes = [row[col["note"]] for row in rows]
    assert notes == ["", "", "diverged", "ValueError: no",
                     "worker lost (its process ended or its heartbeat stopped); re-queued as "
                     "trial 5", "retry of trial 4", "worker lost or interrupted", "",
                     "worker lost or interrupted"]
    assert rows[0][col["seconds"]] == 1.5 and rows[0][col["epochs_run"]] == 3
    assert rows[7][col["seconds"]] == 2.0
    assert rows[8][col["seconds"]] is None
    md = markdown_table(header, rows, best_so_far(study)[0]).splitlines()
    bold = [line for line in md if "**" in line]
    assert len(bold) == 1 and bold[0].startswith("| **5** | **COMPLETE** | **85.00%** |")
    assert md[0].startswith("| trial | state | val acc | epochs_run |")  # percent, as printed
    assert r"a\|b" in md[2] and md[2].count(" | ") == len(header) - 1
    # four significant figures, as the printed best line gives them
    table = markdown_table(["x"], [[0.001234567], [0.0123456], [123.4], [12345.6]], None)
    assert table.split("\n")[2:6] == ["| 0.001235 |", "| 0.01235 |", "| 123.4 |", "| 1.235e+04 |"]


def test_a_best_run_is_kept_only_when_it_is_the_studys_best_retrained_as_asked(tmp_path):
    """finished_best_run decides whether a rerun of a finished search skips the retraining:
    any difference (another best trial or value, another seed, a run that did not complete,
    no test accuracy when the test split is now asked for, no model file) must retrain."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from mlplab.io import write_json
    from mlplab.tuning.retrain import finished_best_run

    study = optuna.create_study(direction="maximize", study_name="s")
    for value in (0.8, 0.9, 0.7):  # trial 1 is the best
        study.add_trial(create_trial(params={"lr": 0.1}, value=value,
                                     distributions={"lr": FloatDistribution(0.01, 0.5)}))
    good = {"tuning.json": {"study": "s", "trial": 1, "value": 0.9},
            "config.json": {"seed": 3},
            "metrics.json": {"status": "completed", "val_accuracy": 0.9, "test_accuracy": 0.85}}

    def folder(name, model=True, **changes):
        out = tmp_path / name
        out.mkdir()
        for file, content in good.items():
            write_json(out / file, {**content, **changes.get(file, {})})
        if model:
            (out / "model.npz").write_bytes(b"weights")
        return out

    ok = folder("ok")
    assert finished_best_run(study, ok, seed=3, eval_test=True) == good["metrics.json"]
    assert finished_best_run(study, ok, seed=4) is None  # another seed: another model
    seed0 = folder("seed0", **{"config.json": {"seed": 0}})
    assert finished_best_run(study, seed0, seed=None) is not None  # None trains with seed 0
    retrain = [
        folder("trial", **{"tuning.json": {"trial": 0}}),
        folder("value", **{"tuning.json": {"value": 0.8}}),
        folder("study", **{"tuning.json": {"study": "other"}}),
        folder("stopped", **{"metrics.json": {"status": "interrupted"}}),
        folder("no-val", **{"metrics.json": {"val_accuracy": None}}),
        folder("untested", **{"metrics.json": {"test_accuracy": None}}),
        folder("no-model", model=False),
    ]
    for out in retrain:
        assert finished_best_run(study, out, seed=3, eval_test=True) is None, out.name
    # without eval_test, a run never tested is the one wanted
    assert finished_best_run(study, retrain[5], seed=3) == {**good["metrics.json"],
                                                            "test_accuracy": None}



def test_a_search_without_progress_shows_no_bar_while_its_folder_decodes(tmp_path, monkeypatch):
    """tune(progress=False) and mlplab tune --no-progress still showed a folder dataset's
    "decoding pics" bar, as train_run did: the search's setting now reaches the loader (and is
    not part of the data's description a resumed study compares)."""
    from sklearn.datasets import load_digits

    class Terminal(io.StringIO):  # where bars show
        def isatty(self) -> bool:
            return True

    images, labels = load_digits(return_X_y=True)
    for i, (image, label) in enumerate(zip(images[:60], labels[:60])):
        (tmp_path / "pics" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.reshape(8, 8) * 15).astype(np.uint8)).save(
            tmp_path / "pics" / str(label) / f"{i}.png")
    folder = f"folder:{tmp_path / 'pics'}"

    def decoded_with_a_bar(search, cache):  # a cache of its own: the images are decoded
        monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / cache))
        monkeypatch.setattr(sys, "stderr", Terminal())
        search()
        return "decoding pics" in sys.stderr.getvalue()

    def search(progress, out):
        return tune(folder, trials=1, search_space=TINY, out=tmp_path / out, progress=progress,
                    val_size=10, test_size=10)

    assert not decoded_with_a_bar(lambda: search(False, "o1"), "c1")
    assert decoded_with_a_bar(lambda: search(True, "o2"), "c2")
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: 8\nlr: 0.1\nepochs: 1\nbatch_size: 64\n")
    assert not decoded_with_a_bar(lambda: main(
        ["tune", "--dataset", folder, "--trials", "1", "--search-space", str(space), "--val-size",
         "10", "--test-size", "10", "--no-progress", "--out", str(tmp_path / "o3")]), "c3")
    # a study searched with the bar resumes without it: progress is not what the data is
    assert not decoded_with_a_bar(lambda: search(False, "o2"), "c4")

# --------------------------------------------------------------------------- CLI
def test_cli_tune_trial_errors_name_the_knobs_as_the_search_space_does(tmp_path, capsys):
    """A trial's configuration error spoke in `mlplab train`'s flags ("--weight-decay ...
    applies to the adam optimizer only; use --reg"), which a search space cannot set: it names
    the knobs as the space spells them, and `mlplab train` keeps its flags."""
    from mlplab._validation import command_line, search_space_names, setting

    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: float, low: 0.01, high: 0.1, log: true}\nweight_decay: 0.01\n"
                     "optimizer: sgd\nhidden_size: 8\nepochs: 1\n")
    code = main(["tune", "--trials", "2", "--search-space", str(space), "--out",
                 str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "weight_decay (decoupled, AdamW) applies to the adam optimizer only; use reg for L2 " \
           "with the other optimizers" in err, err
    assert "--weight-decay" not in err and "--reg" not in err, err
    with open(tmp_path / "o" / "results.csv") as fh:
        notes = [r["note"] for r in csv.DictReader(fh)]
    assert notes and all("weight_decay (decoupled" in n and "use reg " in n for n in notes), notes
    # the trial's wording ends with it: a command's messages name its flags again
    with command_line():
        assert setting("--weight-decay", "weight_decay") == "--weight-decay"
        with search_space_names():
            assert setting("--weight-decay", "weight_decay") == "weight_decay"
        assert setting("--weight-decay", "weight_decay") == "--weight-decay"


def test_cli_tune_a_space_no_trial_can_escape_stops_at_its_first_trial(tmp_path, capsys):
    """A space whose settings cannot work together whatever the search draws (a fixed
    weight_decay with a fixed sgd) failed max(3, --trials) trials, each with two warnings about
    NaN, before the command said why; now its first trial fails in one line and the command
    ends with the reason and what to change, exit 1."""
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: float, low: 0.01, high: 0.1, log: true}\nweight_decay: 0.01\n"
                     "optimizer: sgd\nhidden_size: 8\nepochs: 1\n")
    handler = optuna.logging._get_library_root_logger().handlers[0]
    log = io.StringIO()
    previous = handler.setStream(log)
    try:
        code = main(["tune", "--trials", "30", "--search-space", str(space), "--out",
                     str(tmp_path / "o"), "--no-progress"])
    finally:
        handler.setStream(previous)
    err = capsys.readouterr().err
    assert code == 1, err
    reason = ("no trial can run, whatever values the search draws: weight_decay (decoupled, "
              "AdamW) applies to the adam optimizer only; use reg for L2 with the other "
              "optimizers")
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and re.search(r"Trial 0 failed with parameters: \{'lr': [\d.e-]+\} "
                                         r"because of the following error: " +
                                         re.escape(f"{space}: {reason}.") + "$", lines[0]), lines
    assert err.strip().splitlines()[-1] == (
        f"mlplab tune: error: {space}: {reason}; change the search space (the search stopped "
        "after 1 trial, which results.csv lists).")
    with open(tmp_path / "o" / "results.csv") as fh:
        assert [r["state"] for r in csv.DictReader(fh)] == ["FAIL"]


def test_cli_tune_digits(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: [8, 16]\nlr: {type: float, low: 0.05, high: 0.5}\n"
                     "epochs: 2\nbatch_size: 64\n")
    code = main(["tune", "--trials", "3", "--search-space", str(space), "--out",
                 str(tmp_path / "o"), "--study", "cli", "--no-progress", "--json",
                 "--preprocessing", "scale"])  # train's spelling; --preprocess also works
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["study_name"] == "cli" and summary["n_complete"] == 3
    assert (tmp_path / "o" / "best-run" / "model.npz").is_file()
    best = json.loads((tmp_path / "o" / "best-run" / "config.json").read_text())
    assert best["preprocessing"] == "scale"


def test_cli_tune_says_it_retrains_resumes_and_what_comes_next(tmp_path, capsys):
    """After the trials' bar ended, retraining the best trial printed nothing (as long as a
    trial: the command looked finished); a second command resumed the study and reported all
    its trials as its own; and the end did not say what to do with best-run/."""
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: [8, 16]\nlr: {type: float, low: 0.05, high: 0.5}\n"
                     "epochs: 2\nbatch_size: 64\n")
    out = tmp_path / "o"
    argv = ["tune", "--search-space", str(space), "--out", str(out), "--study", "cli"]
    assert main([*argv, "--trials", "2"]) == 0
    captured = capsys.readouterr()
    assert "retraining the best trial, " in captured.err and "resuming" not in captured.err
    run = out / "best-run"
    assert captured.out.splitlines()[-3:] == [
        f"next: mlplab evaluate {run} (per class, confusion matrix)",
        f"      mlplab predict {run} IMAGE...",
        f"      mlplab train --like {run} --seed 1 (the best settings again)"]
    assert main([*argv, "--trials", "3"]) == 0
    err = capsys.readouterr().err
    assert (f"resuming study cli in sqlite:///{out / 'study.db'}: 2 of --trials 3 finished "
            "before, so this search runs up to 1 more") in err
    assert main([*argv, "--trials", "3", "--no-progress"]) == 0  # quiet: none of it
    assert "resuming" not in capsys.readouterr().err


def test_cli_says_when_the_timeout_ended_the_search_short(tmp_path, capsys):
    """A search that --timeout ended before --trials wrote its results without a word about
    the shortfall; it says so now, and how to go on. A search that reached --trials does not."""
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: [8, 16]\nlr: {type: float, low: 0.05, high: 0.5}\n"
                     "epochs: 2\nbatch_size: 64\n")
    argv = ["tune", "--search-space", str(space), "--out", str(tmp_path / "o"), "--no-progress",
            "--search-only", "--timeout", "0.01"]
    assert main([*argv, "--trials", "50"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"--timeout 0.01 s ended the search at \d+ of --trials 50 finished trials; "
                     r"run the same command again to go on with it", out), out
    assert main([*argv[:-1], "600", "--trials", "1"]) == 0  # the study has one trial already
    assert "ended the search" not in capsys.readouterr().out


def test_cli_ctrl_c_says_how_to_continue(tmp_path, capsys, monkeypatch):
    """Ctrl-C or SIGTERM in ``mlplab tune`` printed only Optuna's "Trial 1 failed ... because of
    the following error: KeyboardInterrupt()" and "mlplab: interrupted"; mlplab train says how
    to continue, and so does tune now (the same command continues the study)."""
    import mlplab.tuning as tmod

    real = _interrupt_trial(monkeypatch, 1)
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: [8, 16]\nepochs: 1\nbatch_size: 64\n")
    argv = ["tune", "--trials", "2", "--search-space", str(space), "--out", str(tmp_path / "o"),
            "--no-progress"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted; the finished trials are kept in the study: run the same command " \
           "again to continue it up to --trials\nmlplab: interrupted\n" in err
    monkeypatch.setattr(tmod.Objective, "__call__", real)
    assert main(argv) == 0
    assert "2 complete, 0 pruned, 1 failed" in capsys.readouterr().out


@pytest.mark.parametrize("storage", ["default", "inside", "journal inside", "elsewhere"])
def test_cli_ctrl_c_after_the_out_folder_went_does_not_say_the_trials_are_kept(
        storage, tmp_path, capsys, monkeypatch):
    """The --out folder removed while the trials ran, then Ctrl-C: the command said "the
    finished trials are kept in the study: run the same command again to continue it", but the
    study's study.db had gone with the folder, and the same command started a new study; and
    so, still, for a --storage file kept inside the folder (sqlite:///OUT/db/mine.db, or a
    journal there), which went with it too. A study stored elsewhere is kept, and the usual
    line stays true."""
    import mlplab.tuning as tuning

    out, real = tmp_path / "o", tuning.run_search

    def searched_then_removed(*args, **kwargs):
        real(*args, **kwargs)
        shutil.rmtree(out)
        raise KeyboardInterrupt

    monkeypatch.setattr(tuning, "run_search", searched_then_removed)
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: [8, 16]\nepochs: 1\nbatch_size: 64\n")
    argv = ["tune", "--trials", "1", "--search-space", str(space), "--out", str(out),
            "--no-progress"]
    study_file = {"default": "study.db", "inside": os.path.join("db", "mine.db"),
                  "journal inside": "mine.log"}.get(storage)
    if storage == "elsewhere":
        argv += ["--storage", str(tmp_path / "elsewhere.db")]
    elif storage == "inside":
        argv += ["--storage", f"sqlite:///{out / study_file}"]
    elif storage == "journal inside":
        argv += ["--storage", f"journal:{out / study_file}"]
    assert main(argv) == 130
    said = capsys.readouterr().err.splitlines()[-2:]
    if study_file is not None:
        assert said[0] == (
            f"interrupted; {out} was removed or moved while the search ran, and its "
            f"{study_file}, which holds the finished trials, with it: if it was moved, put it "
            "back and run the same command again to continue the study; if removed, the same "
            "command starts it anew")
    else:  # the trials kept, and the folder said gone (it was not said at all)
        assert said[0] == (
            f"interrupted; {out} was removed or moved while the search ran, but the finished "
            "trials are kept in the study (its --storage lies outside it): run the same "
            "command again to continue it up to --trials, which writes the folder anew")
    assert said[1] == "mlplab: interrupted"
    assert not out.exists()
    if storage == "elsewhere":  # as the line says
        monkeypatch.setattr(tuning, "run_search", real)
        assert main(argv) == 0
        assert "1 complete" in capsys.readouterr().out and (out / "summary.json").is_file()


def test_cli_ctrl_c_after_only_the_study_file_went_says_the_folder_is_kept(
        tmp_path, capsys, monkeypatch):
    """Only the --out folder's study.db removed while the trials ran, then Ctrl-C: the line
    said the folder was removed or moved, which it was not; it now names the file that went
    and says the rest of the folder is kept."""
    import mlplab.tuning as tuning

    out, real = tmp_path / "o", tuning.run_search

    def searched_then_removed(*args, **kwargs):
        real(*args, **kwargs)
        (out / "study.db").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(tuning, "run_search", searched_then_removed)
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: [8, 16]\nepochs: 1\nbatch_size: 64\n")
    assert main(["tune", "--trials", "1", "--search-space", str(space), "--out", str(out),
                 "--no-progress"]) == 130
    assert capsys.readouterr().err.splitlines()[-2:] == [
        f"interrupted; {out / 'study.db'}, which holds the finished trials, was removed or "
        f"moved while the search ran (the rest of {out} is kept): if it was moved, put it back "
        "and run the same command again to continue the study; if removed, the same command "
        "starts it anew", "mlplab: interrupted"]
    assert out.is_dir() and not (out / "study.db").exists()


@pytest.mark.parametrize("args, message", [
    (["--search-space", "missing.yaml"], "missing.yaml does not exist"),
    (["--storage", "nowhere"], "unrecognised storage"),
    # the flag typed, not tune()'s train_size
    (["--train-size", "100000"], "error: --train-size must be between 1 and 1437 (the training"),
    # fewer images than classes: some classes would never be trained on, yet are scored
    (["--train-size", "5"], "error: --train-size 5 leaves 5 of the 10 classes without a "
                            "training image; give at least 10, the number of classes.\n"),
    # an --out that cannot be a folder: mlplab's words, not mkdir's "[Errno 17] File exists"
    (["--out", "afile"], "--out afile is a file, not a folder; choose another --out."),
    (["--out", "afile/sub"], "--out afile/sub: afile is a file, not a folder; choose another"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    assert main(["tune", "--trials", "2", "--no-progress", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mlplab tune: error:") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--search-only", "--eval-test"], "--eval-test needs the best model"),
    (["--heartbeat", "0", "--grace", "60"], "error: --grace needs heartbeats, which --heartbeat "
                                            "0 turns off; give --heartbeat S with S below the "
                                            "grace period, or leave out --grace.\n"),
    (["--heartbeat", "10", "--grace", "5"], "error: the grace period (5 s) must be longer than "
                                            "the heartbeat interval (10 s)"),
])
def test_cli_flags_that_cannot_work_together_are_usage_errors(tmp_path, capsys, monkeypatch,
                                                              args, message):
    """Exit 2, as reliability.md's exit statuses (and mlplab train's --std without --init
    normal) have it: these exited 1, as a failure of the files would, and before any work."""
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "--trials", "2", "--no-progress", "--out", "o", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlplab tune: error:") and message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_a_source_of_an_unseeded_split_splits_once_for_every_load():
    """DatasetSource with seed None: each load (every worker's, the retraining's) drew its own
    random split, so trials were scored on different validation images, and the study recorded
    no seed at all (the description of seed 0's). The seed is now drawn once and recorded."""
    import pickle

    from mlplab.tuning import DatasetSource

    user_kwargs = {"seed": None}
    src = DatasetSource("digits", user_kwargs, train_size=500)
    seed = src.describe()["seed"]
    assert isinstance(seed, int) and user_kwargs == {"seed": None}  # the caller's dict is left
    here, worker = src.load(), pickle.loads(pickle.dumps(src)).load()
    reference = load_dataset("digits", seed=seed)  # the recorded seed rebuilds the splits
    for data in (here, worker):
        np.testing.assert_array_equal(data.dataset.X_val, reference.X_val)
        np.testing.assert_array_equal(data.y_train, here.y_train)  # the same training subset
    assert DatasetSource("digits", {"seed": None}).describe() != \
        DatasetSource("digits", {}).describe()  # not mistaken for seed 0's data on resume


def test_train_size_out_of_range_names_the_argument_in_python():
    from mlplab.tuning.data import subset_train

    with pytest.raises(ValueError, match=r"^train_size must be between 1 and 1437 \(the "):
        subset_train(load_dataset("digits"), 100000)


def test_a_train_size_subset_keeps_every_class():
    """A subset smaller than the number of classes was accepted: the trials never saw some
    classes, which the validation split still scores. A rare class that a small subset would
    leave out is refused too; a subset with every class is taken."""
    import dataclasses

    from mlplab.tuning.data import subset_train

    digits = load_dataset("digits")
    with pytest.raises(ValueError, match=r"^train_size 9 leaves 1 of the 10 classes without a "
                                         r"training image; give at least 10, the number of "):
        subset_train(digits, 9)
    assert set(subset_train(digits, 10).y_train) == set(range(10))
    rare = np.flatnonzero(digits.y_train != 9)[:300].tolist() + \
        np.flatnonzero(digits.y_train == 9)[:1].tolist()  # one image of class 9 in 301
    few = dataclasses.replace(digits, X_train=digits.X_train[rare], y_train=digits.y_train[rare])
    with pytest.raises(ValueError, match=r"^train_size 20 leaves 1 of the 10 classes without a "
                                         r"training image; give a larger one\.$"):
        subset_train(few, 20)


def test_cli_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--trials", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--trials", "3", "--sampler", "cmaes"])
    assert exc.value.code == 2


def _tune_call(monkeypatch, argv):
    """The (source, keyword arguments) ``mlplab tune ARGV`` passes to ``mlplab.tuning.tune``,
    recorded by a stand-in that stops the command before any trial."""
    import mlplab.tuning as tmod

    seen = {}

    class Captured(Exception):
        pass

    def fake(source, **kwargs):
        seen.update(kwargs, source=source)
        raise Captured

    monkeypatch.setattr(tmod, "tune", fake)
    with pytest.raises(Captured):
        main(["--debug", "tune", "--trials", "5", *argv])
    return seen


def test_cli_tune_defaults_reach_tune(monkeypatch):
    seen = _tune_call(monkeypatch, [])
    src = seen.pop("source")
    assert (src.name, src.preprocess, src.train_size, src.kwargs["seed"], src.kwargs["cache"]) \
        == ("digits", "standardize", None, 0, True)
    assert seen == {"trials": 5, "timeout": None, "search_space": None, "study_name": None,
                    "storage": None, "workers": 1, "sampler": "tpe", "prune": None, "out": None,
                    "seed": 0, "eval_test": False, "heartbeat": 30, "grace": None,
                    "search_only": False, "progress": True, "threads": None}


def test_cli_tune_flags_reach_tune(monkeypatch, tmp_path):
    """A flag parsed but not passed on (or to another argument) would silently run another
    search than the one asked for: each reaches its own argument of tune()."""
    seen = _tune_call(monkeypatch, [
        "--timeout", "12.5", "--search-space", "wide", "--study", "s1", "--storage", "x.db",
        "--workers", "3", "--sampler", "random", "--prune", "--seed", "4", "--eval-test",
        "--heartbeat", "7", "--grace", "20", "--no-progress", "--out", str(tmp_path / "o"),
        "--preprocessing", "scale", "--train-size", "300", "--val-size", "50", "--test-size",
        "0.2", "--image-size", "4", "--data-dir", "/d", "--mirror", "http://m.invalid",
        "--download", "--no-cache", "--dataset", "mnist", "--threads", "2"])
    src = seen.pop("source")
    assert (src.name, src.preprocess, src.train_size) == ("mnist", "scale", 300)
    assert src.kwargs == {"data_dir": "/d", "download": True, "mirror": "http://m.invalid",
                          "val_size": 50, "test_size": 0.2, "image_size": "4", "seed": 4,
                          "cache": False, "progress": False}
    assert seen == {"trials": 5, "timeout": 12.5, "search_space": "wide", "study_name": "s1",
                    "storage": "x.db", "workers": 3, "sampler": "random", "prune": "median",
                    "out": str(tmp_path / "o"), "seed": 4, "eval_test": True, "heartbeat": 7,
                    "grace": 20, "search_only": False, "progress": False, "threads": 2}
    seen = _tune_call(monkeypatch, ["--prune", "hyperband", "--search-only"])
    assert (seen["prune"], seen["search_only"]) == ("hyperband", True)


def test_cli_tune_threads_limit_blas_in_the_trials(monkeypatch, tmp_path):
    """mlplab train, torch and reproduce take --threads; tune refused it (and suggested
    --trials). The trials and the retraining run under the limit, lifted afterwards."""
    from threadpoolctl import threadpool_info

    from mlplab import tuning

    def blas() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before, seen = blas(), {}
    search, retrain = tuning.run_search, tuning.retrain_best
    monkeypatch.setattr(tuning, "run_search",
                        lambda *a, **k: (seen.setdefault("search", blas()), search(*a, **k)))
    monkeypatch.setattr(tuning, "retrain_best",
                        lambda *a, **k: (seen.setdefault("retrain", blas()),
                                         retrain(*a, **k))[1])
    wanted = 3 if before != [3] else 2
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: [8]\nepochs: 1\n")
    assert main(["tune", "--dataset", "digits", "--trials", "1", "--search-space", str(space),
                 "--out", str(tmp_path / "o"), "--no-progress", "--threads", str(wanted)]) == 0
    assert seen["search"] and set(seen["search"]) == set(seen["retrain"]) == {wanted}
    assert blas() == before


@pytest.mark.parametrize("threads, wanted", [(3, 3), (None, 1)])
def test_workers_threads_beat_a_lower_environment_limit(digits, tmp_path, monkeypatch, threads,
                                                       wanted):
    """A worker of `--workers K` never raised BLAS's thread count, so under OMP_NUM_THREADS=1
    an explicit `--threads 3` did nothing. It wins now, as it does for one process; the default
    share of the cores still stays within the environment's limit."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import mlplab.tuning as tmod
    from mlplab.tuning import workers

    specs, seen = [], []
    monkeypatch.setattr(tmod, "run_workers", lambda s, study, bar=None: specs.extend(s))
    monkeypatch.setattr(tmod, "available_cpus", lambda: 8)  # a default share of 4 each
    monkeypatch.setattr(workers, "run_search", lambda *a, **k: seen.append(
        {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}))
    tune(digits, trials=1, search_space=TINY, workers=2, progress=False, search_only=True,
         out=tmp_path, threads=threads)
    level = optuna.logging.get_verbosity()
    try:
        with threadpool_limits(1, user_api="blas"):  # where OMP_NUM_THREADS=1 leaves OpenBLAS
            workers.worker_main(specs[0])
    finally:
        optuna.logging.set_verbosity(level)  # worker_main sets its (own process's) level
    assert seen == [{wanted}]


def test_no_more_workers_start_than_trials_are_left(digits, tmp_path, monkeypatch):
    """--workers 12 --trials 1 started 12 processes, each an interpreter loading the data to
    find the target met (10 s instead of 2); --workers 1000 took minutes."""
    import mlplab.tuning as tmod

    started: list[int] = []
    monkeypatch.setattr(tmod, "run_workers", lambda s, study, bar=None: started.append(len(s)))
    common = {"search_space": TINY, "progress": False, "search_only": True, "out": tmp_path}
    tune(digits, trials=2, workers=12, **common)
    tune(digits, trials=1, **common)  # one finished trial, in this process
    tune(digits, trials=3, workers=12, **common)
    assert started == [2, 2]


def test_make_preprocessing_is_fitted_on_train_only(digits):
    # the tuning data's features come from a pipeline fitted on the training split alone
    pipe = make_preprocessing("standardize")
    pipe.fit(digits.dataset.X_train)
    np.testing.assert_allclose(pipe.transform(digits.dataset.X_test), digits.X_test, rtol=1e-6)


def test_tune_gives_back_optunas_log_level(digits, tmp_path, monkeypatch):
    """tune() set Optuna's verbosity to WARNING for the whole process: in a notebook the user's
    own studies afterwards no longer logged their trials. Quiet within, the caller's level back
    afterwards, also after a Ctrl-C."""
    import mlplab.tuning as tmod

    levels = []
    real = tmod.Objective.__call__

    def objective(self, trial):
        levels.append(optuna.logging.get_verbosity())
        if trial.number == 1:
            raise KeyboardInterrupt
        return real(self, trial)

    monkeypatch.setattr(tmod.Objective, "__call__", objective)
    before = optuna.logging.get_verbosity()
    try:
        optuna.logging.set_verbosity(optuna.logging.INFO)
        tune(digits, trials=1, search_space=TINY, out=tmp_path, progress=False,
             search_only=True)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
        with pytest.raises(KeyboardInterrupt):
            tune(digits, trials=2, search_space=TINY, out=tmp_path, progress=False,
                 search_only=True)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
        assert levels == [optuna.logging.WARNING] * 2
    finally:
        optuna.logging.set_verbosity(before)


def _lock_exclusively(db) -> None:
    """Raises "database is locked" while another connection (or a leaked statement) holds db."""
    import sqlite3

    con = sqlite3.connect(db, timeout=0)
    try:
        con.execute("BEGIN EXCLUSIVE")
        con.rollback()
    finally:
        con.close()


def test_a_ctrl_c_inside_a_query_leaves_the_study_unlocked(digits, tmp_path, monkeypatch):
    """A Ctrl-C inside one of the study's SQL queries: SQLAlchemy closed the connection but left
    the query's cursor to the traceback's frames, and SQLite (Python >= 3.11) kept the closed
    connection's lock on study.db while that cursor lived. A notebook keeps the last traceback,
    so the next search of the study waited 120 s at every write, then failed ("database is
    locked"). Here the traceback is kept too (pytest's excinfo)."""
    from sqlalchemy.engine import default

    kw = dict(search_space=TINY, sampler="random", out=tmp_path, progress=False,
              search_only=True)
    tune(digits, trials=1, **kw)
    real = default.DefaultDialect.do_execute

    def ctrl_c_as_the_study_is_looked_up(self, cursor, statement, *args, **kwargs):
        real(self, cursor, statement, *args, **kwargs)
        if "FROM studies WHERE studies.study_name" in " ".join(statement.split()):
            raise KeyboardInterrupt  # where a Ctrl-C lands: right after the driver's call

    monkeypatch.setattr(default.DefaultDialect, "do_execute", ctrl_c_as_the_study_is_looked_up)
    with pytest.raises(KeyboardInterrupt) as kept:
        tune(digits, trials=2, **kw)
    monkeypatch.undo()
    _lock_exclusively(tmp_path / "study.db")
    assert tune(digits, trials=2, **kw).n_complete == 2
    assert kept.value.__traceback__ is not None  # (kept alive until here)


def test_a_ctrl_c_as_tune_reads_the_folders_study_names_leaves_it_unlocked(digits, tmp_path,
                                                                         monkeypatch):
    """As above, before the study is opened: tune() reads the names of the studies in the output
    folder's study.db (a search stopped before its summary.json), and a Ctrl-C there left that
    query's statement alive in the traceback, and the file locked."""
    import sqlite3

    kw = dict(search_space=TINY, sampler="random", out=tmp_path, progress=False)
    tune(digits, trials=1, search_only=True, **kw)
    (tmp_path / "results.csv").write_text("")  # as a search stopped before its summary leaves

    class CtrlCAtTheFirstRow:
        def __init__(self, cursor):
            self.cursor = cursor  # its statement has run and holds the first row

        def __iter__(self):
            return self

        def __next__(self):
            raise KeyboardInterrupt

    class Connection:
        def __init__(self, con):
            self.con = con

        def execute(self, *args):
            return CtrlCAtTheFirstRow(self.con.execute(*args))

        def close(self):
            self.con.close()

    real_connect = sqlite3.connect

    def connect(database, *args, **kwargs):
        con = real_connect(database, *args, **kwargs)
        return Connection(con) if "mode=ro" in str(database) else con

    monkeypatch.setattr(sqlite3, "connect", connect)
    with pytest.raises(KeyboardInterrupt) as kept:
        tune(digits, trials=2, **kw)
    monkeypatch.undo()
    _lock_exclusively(tmp_path / "study.db")
    assert kept.value.__traceback__ is not None  # (kept alive until here)


def test_a_ctrl_c_inside_a_trials_query_leaves_the_study_unlocked_for_optuna(digits, tmp_path,
                                                                           monkeypatch):
    """As above, where Optuna catches the Ctrl-C: one inside a query of the trial (here as it
    records its second setting). Optuna records the trial FAIL at once, which waited 120 s for
    the lock the interrupted query kept, and then failed."""
    import sqlite3

    from optuna.study import _optimize
    from sqlalchemy.engine import default

    real_execute, real_tell, locked = default.DefaultDialect.do_execute, \
        _optimize._tell_with_warning, []
    recorded_a_setting = []

    def ctrl_c_as_the_trial_records_its_second_setting(self, cursor, statement, *args,
                                                       **kwargs):
        real_execute(self, cursor, statement, *args, **kwargs)
        if statement.startswith("INSERT INTO trial_params"):
            recorded_a_setting.append(True)
        elif recorded_a_setting and statement.startswith("SELECT trials.trial_id"):
            recorded_a_setting.clear()
            raise KeyboardInterrupt  # where a Ctrl-C lands: right after the driver's call

    def tell(*args, **kwargs):
        try:
            _lock_exclusively(tmp_path / "study.db")  # the lock the record needs to commit
            locked.append(False)
        except sqlite3.OperationalError:
            locked.append(True)
            raise RuntimeError("study.db is locked as Optuna records the trial") from None
        return real_tell(*args, **kwargs)

    monkeypatch.setattr(default.DefaultDialect, "do_execute",
                        ctrl_c_as_the_trial_records_its_second_setting)
    monkeypatch.setattr(_optimize, "_tell_with_warning", tell)
    with pytest.raises(KeyboardInterrupt):
        tune(digits, trials=1, search_space=TINY, out=tmp_path, progress=False,
             search_only=True)
    assert locked == [False]


@pytest.mark.parametrize("write", ["heartbeat", "name"])
def test_a_ctrl_c_as_a_worker_starts_its_trial_leaves_the_study_unlocked_for_optuna(
        digits, tmp_path, monkeypatch, write):
    """As above, in the writes a worker makes before the trial's objective
    (mlplab.tuning.search._WithinTarget): its first heartbeat (the insert, which returns the
    row it made) and its name in the trial (the read of the trial that begins it). Optuna
    recorded the trial FAIL while the interrupted statement kept its lock on study.db."""
    import sqlite3
    import threading

    from optuna.storages._heartbeat import HeartbeatThread
    from optuna.study import _optimize
    from sqlalchemy.engine import default

    real_execute, real_tell, locked = default.DefaultDialect.do_execute, \
        _optimize._tell_with_warning, []
    seen: list[str] = []

    def ctrl_c_in_the_write(self, cursor, statement, *args, **kwargs):
        real_execute(self, cursor, statement, *args, **kwargs)
        if threading.current_thread() is not threading.main_thread() or "ctrl-c" in seen:
            return
        if statement.startswith("INSERT INTO trial_heartbeats"):
            seen.append("heartbeat")
            now = write == "heartbeat"
        else:  # the first read after the heartbeat: the naming's check of the trial's state
            now = write == "name" and seen == ["heartbeat"] and \
                statement.startswith("SELECT trials.")
        if now:
            seen.append("ctrl-c")
            raise KeyboardInterrupt  # where a Ctrl-C lands: right after the driver's call

    def tell(*args, **kwargs):
        try:
            _lock_exclusively(tmp_path / "study.db")  # the lock the record needs to commit
            locked.append(False)
        except sqlite3.OperationalError:
            locked.append(True)
            raise RuntimeError("study.db is locked as Optuna records the trial") from None
        return real_tell(*args, **kwargs)

    # the worker's own first heartbeat is its trial's first (Optuna's thread records none)
    monkeypatch.setattr(HeartbeatThread, "_record_heartbeat", staticmethod(lambda *args: None))
    monkeypatch.setattr(default.DefaultDialect, "do_execute", ctrl_c_in_the_write)
    monkeypatch.setattr(_optimize, "_tell_with_warning", tell)
    with pytest.raises(KeyboardInterrupt):
        tune(digits, trials=1, search_space=TINY, out=tmp_path, progress=False,
             search_only=True)
    assert seen == ["heartbeat", "ctrl-c"] and locked == [False], (seen, locked)


def test_a_ctrl_c_as_a_trials_heartbeat_starts_leaves_no_thread_behind(digits, tmp_path,
                                                                         monkeypatch):
    """A Ctrl-C while Optuna started a trial's heartbeat thread (Thread.start waits for it to
    run) ended Optuna's `with` block before its body: the thread recorded the heartbeat for ever,
    the trial stayed RUNNING and alive (the next search stopped a trial short), and the process
    could not exit. The thread is stopped and its trial failed."""
    import threading

    from optuna.storages import _heartbeat

    real = _heartbeat.HeartbeatThread.start

    def start_then_ctrl_c(self):
        real(self)
        raise KeyboardInterrupt  # where a Ctrl-C lands while start() waits for the thread

    def heartbeats():
        return [t for t in threading.enumerate()
                if getattr(t, "_target", None) is _heartbeat.HeartbeatThread._record_heartbeat]

    kw = dict(search_space=TINY, sampler="random", out=tmp_path, progress=False,
              search_only=True, study_name="hb")
    monkeypatch.setattr(_heartbeat.HeartbeatThread, "start", start_then_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            tune(digits, trials=2, **kw)
        assert heartbeats() == []
    finally:
        for thread in heartbeats():  # (without the fix: or pytest would never exit)
            thread._args[2].set()
    monkeypatch.undo()
    study = optuna.load_study(study_name="hb", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert tune(digits, trials=2, **kw).n_complete == 2


def test_tune_leaves_matplotlibs_style_as_it_found_it(digits, tmp_path):
    """Optuna's plots call plt.style.use("ggplot"): after tune() every figure of a notebook had
    grey axes. Tuning's own figures keep Optuna's style; the caller's settings come back."""
    import matplotlib

    before = dict(matplotlib.rcParams)
    result = tune(digits, trials=2, search_space=TINY, out=tmp_path, progress=False)
    assert "optimization_history" in result.files  # Optuna's plots were drawn
    assert {k: v for k, v in matplotlib.rcParams.items() if v != before[k]} == {}


def test_the_plots_close_their_own_figures_however_they_end(digits, tmp_path, monkeypatch):
    """A Ctrl-C while Optuna drew a plot left its figure open (a notebook then showed it under
    the traceback), and a plot that could not be drawn closed every open figure, the caller's
    too."""
    import matplotlib
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    from mlplab.tuning.results import write_plots

    result = tune(digits, trials=2, search_space=TINY, out=tmp_path, progress=False,
                  search_only=True)
    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    real = ovm.plot_parallel_coordinate

    def failing(exc):
        def plot(study, **options):
            real(study, **options)  # the figure is made, then drawing it fails
            raise exc
        return plot

    plt.close("all")
    mine = plt.figure()
    with matplotlib.rc_context():  # Optuna's plots set their style for the process
        monkeypatch.setattr(ovm, "plot_parallel_coordinate", failing(ValueError("no")))
        written, skipped = write_plots(study, tmp_path)
        assert "parallel_coordinate" in skipped and "optimization_history" in written
        assert plt.get_fignums() == [mine.number]
        monkeypatch.setattr(ovm, "plot_parallel_coordinate", failing(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            write_plots(study, tmp_path)
        assert plt.get_fignums() == [mine.number]
    plt.close(mine)


def test_a_retuned_cell_with_another_space_is_told_the_argument(digits, tmp_path, capsys):
    """A notebook that re-ran its tune() cell with a changed search space was told to "choose a
    new --study name"; from Python it is ``study_name``, on the command line as before."""
    kw = dict(out=tmp_path, progress=False, search_only=True)
    tune(digits, trials=1, search_space=TINY, **kw)
    with pytest.raises(ValueError, match=r"different search space .*; resume it with the same "
                                         r"options or choose a new study_name \(and another out, "
                                         r"if you gave one\)\.$"):
        tune(digits, trials=1, search_space={**TINY, "epochs": 4}, **kw)
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: 8\nlr: {type: float, low: 0.05, high: 0.5}\nepochs: 2\n"
                     "batch_size: 64\n")
    args = ["tune", "--trials", "1", "--search-space", str(space), "--out", str(tmp_path / "c"),
            "--study", "cli", "--no-progress", "--search-only"]
    assert main(args) == 0
    space.write_text(space.read_text().replace("epochs: 2", "epochs: 3"))
    assert main(args) == 1
    err = capsys.readouterr().err
    # its --out holds this study's outputs: a new --study alone there is refused as well
    assert "choose a new --study name (and another --out, if you gave one)." in err


def test_the_best_runs_note_names_the_training_subset_as_the_caller_gave_it(digits, tmp_path,
                                                                           capsys):
    """best-run/tuning.json's note told a tune() caller that config.json has no "--train-size
    subset"; from Python the subset is train_size=, on the command line --train-size."""
    from mlplab.io import read_json

    result = tune(digits, trials=1, search_space=TINY, out=tmp_path / "python", progress=False)
    note = read_json(result.run_dir / "tuning.json")["note"]
    assert "without any train_size subset, so replaying it" in note and "--" not in note, note
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: [8]\nlr: 0.1\nepochs: 2\nbatch_size: 64\n")
    assert main(["tune", "--trials", "1", "--search-space", str(space), "--train-size", "500",
                 "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    note = read_json(tmp_path / "cli" / "best-run" / "tuning.json")["note"]
    assert "without any --train-size subset, so replaying it" in note, note


@pytest.mark.parametrize("where", ["log", "terminal", "notebook"])
def test_the_trial_bar_shows_in_a_terminal_or_notebook_never_in_a_log(digits, tmp_path, capsys,
                                                                       monkeypatch, request,
                                                                       where):
    """tune()'s trial bar was plain tqdm.auto: into a log file or a pipe (stderr not a terminal)
    it wrote its frames, where training's bars write nothing. Now it is mlplab's progress bar:
    none there, and on a terminal or in a notebook (a kernel's stderr is no terminal either)
    shown as before."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    if where == "notebook":
        request.getfixturevalue("jupyter_kernel")
    if where == "terminal":
        monkeypatch.setattr(sys, "stderr", Terminal())
    tune(digits, trials=1, search_space=TINY, out=tmp_path, study_name="bar", progress=True,
         search_only=True)
    err = sys.stderr.getvalue() if where == "terminal" else capsys.readouterr().err
    if where == "log":
        assert "tuning bar" not in err and "trial" not in err, err
    else:
        assert "tuning bar: 100%" in err and "1/1 [" in err, err


def test_workers_started_by_a_command_word_its_messages_for_the_command_line(
        digits, tmp_path, monkeypatch):
    """Each worker is a fresh interpreter (spawn), which the command line's wording did not
    reach: a worker of `mlplab tune --workers 2` printed its error in Python's terms
    (``study_name``, ``val_size=N``) to a user who had typed flags. Here the workers run after
    the command has ended, as in a process of their own."""
    import mlplab.tuning as tmod
    from mlplab._validation import command_line, setting
    from mlplab.tuning import workers

    specs, said = [], []
    monkeypatch.setattr(tmod, "run_workers", lambda s, study, bar=None: specs.extend(s))
    monkeypatch.setattr(workers, "run_search",
                        lambda *args, **kwargs: said.append(setting("--study", "study_name")))
    kw = dict(trials=2, search_space=TINY, workers=2, progress=False, search_only=True)
    level = optuna.logging.get_verbosity()
    try:
        tune(digits, out=tmp_path / "python", **kw)
        with command_line():
            tune(digits, out=tmp_path / "cli", **kw)
        for spec in specs:
            workers.worker_main(spec)
    finally:
        optuna.logging.set_verbosity(level)  # worker_main sets its (own process's) level
    assert said == ["study_name", "study_name", "--study", "--study"]


# ------------------------------------------------------------- registered activations, optimisers
REGISTERED = '''
import numpy as np

from mlplab.layers import Layer
from mlplab.optim import Optimizer


class Softsign(Layer):
    def forward(self, x, train=True):
        self._x = x.copy()
        return x / (1 + np.abs(x))

    def backward(self, dout):
        return dout / (1 + np.abs(self._x)) ** 2


class SignSGD(Optimizer):
    name = "signsgd"

    def _update(self, name, p, g):
        p -= self.lr * np.sign(g)
'''


@pytest.fixture
def registered(tmp_path, monkeypatch, registries):
    """An activation and an optimiser registered from a module file, as a user's would be; the
    registries are restored afterwards (``registries``)."""
    import importlib

    from mlplab import models, optim

    (tmp_path / "my_pieces.py").write_text(REGISTERED)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path
    pieces = importlib.import_module("my_pieces")
    models.register_activation("softsign", pieces.Softsign)
    optim.register_optimizer(pieces.SignSGD)
    yield pieces
    sys.modules.pop("my_pieces", None)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_search_space_may_name_registered_activations_and_optimizers(digits, tmp_path,
                                                                       registered, workers):
    """The knobs' choices were frozen when mlplab.tuning was imported, so a registered name was
    refused as not one of the built-ins; and spawned workers, fresh interpreters, knew only the
    built-ins. Now both take what this process registered."""
    space = {**TINY, "activation": {"type": "categorical", "choices": ["relu", "softsign"]},
             "optimizer": "signsgd", "lr": {"type": "float", "low": 1e-3, "high": 1e-2}}
    result = tune(digits, trials=3, search_space=space, out=tmp_path / "out", progress=False,
                  search_only=True, workers=workers, sampler="random")
    trials = optuna.load_study(study_name=result.study_name,
                               storage=result.storage).get_trials(deepcopy=False)
    # (a trial a worker began once the others had met the target is given up as surplus)
    trials = [t for t in trials if not t.user_attrs.get("mlplab:surplus")]
    assert len(trials) == 3 and {t.state for t in trials} == {TrialState.COMPLETE}, \
        [(t.state, t.system_attrs) for t in trials]
    assert {t.params["activation"] for t in trials} <= {"relu", "softsign"}
    assert all(t.value > 0.15 for t in trials)  # trained: above chance on ten classes


def test_a_registration_workers_could_not_import_is_refused_before_they_start(
        digits, tmp_path, registered, monkeypatch):
    import mlplab.tuning as tmod
    from mlplab import models

    started = []
    monkeypatch.setattr(tmod, "run_workers", lambda specs, study, bar=None: started.extend(specs))
    models.register_activation("local", lambda: registered.Softsign())
    # registered but not used by the space: sent only what can be sent, nothing refused
    tune(digits, trials=2, search_space=TINY, out=tmp_path / "a", progress=False,
         search_only=True, workers=2)
    assert set(started[0].registered["activations"]) == {"softsign"}
    assert set(started[0].registered["optimizers"]) == {"signsgd"}
    with pytest.raises(ValueError, match=r"registered activation 'local'.*workers=1"):
        tune(digits, trials=1, search_space={**TINY, "activation": "local"},
             out=tmp_path / "b", progress=False, search_only=True, workers=2)
    assert len(started) == 2  # the refused search started none
    assert not (tmp_path / "b").exists()


def test_the_knobs_stay_hashable_while_their_choices_follow_the_registries(registered):
    """The activation and optimizer knobs hold the live registries (dicts) as their choices; a
    Knob, a frozen dataclass, was hashable with a tuple there and raised TypeError with a
    dict."""
    from mlplab.tuning import KNOBS

    knob = KNOBS["activation"]
    assert knob.check("activation", "softsign", "space") == "softsign"  # registered after import
    assert len({knob, KNOBS["optimizer"], KNOBS["init"]}) == 3
    assert hash(knob) == hash(KNOBS["activation"])


def test_workers_from_a_program_piped_to_python_are_refused_up_front(digits, tmp_path,
                                                                    monkeypatch):
    """`python - < search.py` calling tune(workers=2): each spawned worker ran the main file
    '<stdin>' again and failed (FileNotFoundError), after the data had loaded and the study
    was made. Refused first, with what to do; workers=1 runs."""
    import sys

    import mlplab.tuning as tmod

    monkeypatch.setattr(sys.modules["__main__"], "__file__", "<stdin>", raising=False)
    monkeypatch.setattr(tmod, "_load_data", lambda *a, **k: pytest.fail("the data was loaded"))
    with pytest.raises(ValueError, match=r"fresh Python processes, which run this program's "
                                         r"main file again, and it has none \('<stdin>'.*Save "
                                         r"the program as a file .*workers=1"):
        tune(digits, trials=1, search_space=TINY, out=tmp_path / "a", progress=False,
             search_only=True, workers=2)
    assert not (tmp_path / "a").exists()


def test_a_default_the_workers_could_not_import_is_refused_too(digits, tmp_path, registered,
                                                              monkeypatch):
    """A space that leaves activation and optimizer out trains with MLP's and TrainConfig's
    defaults, relu and sgd; replaced by a registration the workers cannot import, those were
    dropped, so the workers' trials trained mlplab's own relu or sgd while the best run, retrained
    in this process, used the replacement."""
    import mlplab.tuning as tmod
    from mlplab import models, optim

    monkeypatch.setattr(tmod, "run_workers", lambda specs, study, bar=None: None)
    models.register_activation("relu", lambda: registered.Softsign(), replace=True)
    with pytest.raises(ValueError, match=r"registered activation 'relu'.*workers=1"):
        tune(digits, trials=1, search_space=TINY, out=tmp_path / "a", progress=False,
             search_only=True, workers=2)
    models.register_activation("relu", models.BUILT_IN_ACTIVATIONS["relu"], replace=True)

    class LocalSGD(optim.SGD):
        pass

    optim.register_optimizer(LocalSGD, replace=True)
    with pytest.raises(ValueError, match=r"registered optimizer 'sgd'.*workers=1"):
        tune(digits, trials=1, search_space=TINY, out=tmp_path / "b", progress=False,
             search_only=True, workers=2)


@pytest.mark.parametrize("flags,knob", [(["--epochs", "3"], "epochs: 3"),
                                        (["--lr=0.1"], "lr: 0.1"),
                                        (["--hidden", "50"], "hidden_size: 50"),
                                        (["--batch-size", "100", "--reg", "0.1"],
                                         "batch_size: 100"),
                                        # train's switches: what they set, not VALUE (nor the
                                        # next word, which is not theirs)
                                        (["--batchnorm"], "batchnorm: true"),
                                        (["--no-batchnorm", "x"], "batchnorm: false")])
def test_a_training_flag_given_to_tune_points_to_the_search_space(flags, knob, capsys,
                                                                 tmp_path):
    """``mlplab tune --epochs 3`` (to make trials shorter) was answered "did you mean
    --preprocess?", ``--lr 0.1`` "--sampler?": the trials take their settings from the search
    space, which is what the error now says, with the knob's line for a YAML file."""
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--trials", "1", "--out", str(tmp_path / "t"), *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "search space" in err and f"`{knob}`" in err and "did you mean" not in err, err
    assert not (tmp_path / "t").exists()
    assert knob.split(":")[0] in KNOBS  # a knob the YAML schema accepts


@pytest.mark.parametrize("flags, says", [(["--iters", "100"], "`epochs` knob"),
                                         (["--iters=100"], "`epochs` knob"),
                                         (["--resume"], "resumes when the same command runs")])
def test_train_flags_that_are_no_knob_are_not_taken_for_a_near_spelling(flags, says, capsys,
                                                                        tmp_path):
    """``mlplab tune --iters 100`` was answered "did you mean --trials?" and ``--resume``
    "did you mean --prune?": either flag then does something else than the one meant."""
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--trials", "1", "--out", str(tmp_path / "t"), *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "did you mean" not in err, err


def test_loading_options_with_data_already_loaded_are_refused_not_dropped():
    """tune(load_dataset("digits"), val_size=0.5) searched on the dataset's own 180 validation
    images: load_dataset's options (and train_size for prepared arrays) were dropped without a
    word for data given loaded."""
    from mlplab.data import load_dataset
    from mlplab.tuning.data import as_source, prepare

    ds = load_dataset("digits", seed=0)
    with pytest.raises(TypeError, match=r"^val_size applies only to a dataset given by name.*"
                                        r"load_dataset\(name, val_size=\.\.\.\)\.$"):
        tune(ds, trials=1, val_size=0.5, progress=False)
    with pytest.raises(TypeError, match=r"^data_dir, test_size apply only"):
        as_source(ds, test_size=0.1, data_dir="/data")
    with pytest.raises(TypeError, match="train_size applies to a dataset name or a Dataset"):
        as_source(prepare(ds, "standardize"), train_size=100)
    # what does apply to a loaded Dataset still does: train_size takes that many images
    assert len(as_source(ds, train_size=100).load().y_train) == 100


def test_a_trial_that_early_stopping_ends_is_not_pruned_at_that_epoch():
    """The trainer sets its stop for early stopping (patience) before the epoch's callbacks:
    the pruner pruned such a trial at the epoch that ended it, throwing its result away (the
    docs: never at a trial's last epoch)."""
    import types

    import optuna

    from mlplab.tuning.objective import _ReportCallback

    class Trial:
        def __init__(self):
            self.reports, self.attrs = [], {}

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return True

        def set_user_attr(self, key, value):
            self.attrs[key] = value

    trial = Trial()
    trainer = types.SimpleNamespace(config=types.SimpleNamespace(iters=None, epochs=6),
                                    stop=True)
    _ReportCallback(trial).on_epoch_end(trainer, 2, {"val_acc": 0.1})
    assert trial.reports == [(2, 0.1)] and trial.attrs == {}
    trainer.stop = False  # a trial going on is pruned as before
    with pytest.raises(optuna.TrialPruned):
        _ReportCallback(trial).on_epoch_end(trainer, 2, {"val_acc": 0.1})


def test_a_search_whose_every_trial_diverged_is_an_error(tmp_path, capsys):
    """Every complete trial diverged: "3 complete, 0 pruned, 0 failed", then "no trial has
    completed yet", exit 0, no best run; with failed trials beside them it said only "all 3
    trials failed"."""
    space = {"lr": {"type": "float", "low": 0.5, "high": 1.0}, "optimizer": "nesterov",
             "activation": "prelu", "momentum": 0.9, "epochs": 2}
    path = tmp_path / "div.json"  # (YAML reads JSON)
    path.write_text(json.dumps(space))
    out = tmp_path / "div"
    assert main(["tune", "--dataset", "digits", "--trials", "3", "--search-space", str(path),
                 "--preprocessing", "exercise", "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "error: every complete trial diverged (3; their loss became NaN or infinite), so " \
           "there is no best one to retrain; lower the learning rates" in err, err
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n_complete"], summary["best_trial"]) == (3, None)
    assert not (out / "best-run").exists() and (out / "results.csv").exists()
    # one trial: in the singular ("every complete trial diverged (1; their loss" before)
    assert main(["tune", "--dataset", "digits", "--trials", "1", "--search-space", str(path),
                 "--preprocessing", "exercise", "--out", str(tmp_path / "one"),
                 "--no-progress"]) == 1
    assert "error: the only complete trial diverged (its loss became NaN or infinite), so " \
           "there is no best one to retrain" in capsys.readouterr().err
    # evaluate of the folder: not "run the same mlplab tune again without --search-only"
    assert main(["evaluate", str(out)]) == 1
    err = capsys.readouterr().err
    assert "is a tuning folder written by mlplab tune whose search has no best trial yet " \
           "(none completed without diverging)" in err and "--search-only" not in err, err


def test_a_search_without_a_seed_retrains_the_model_it_measured(digits, tmp_path):
    """tune(seed=None): each trial trained from a random seed and the best was retrained with
    seed 0, so best-run/ was another model, worse than the trial's (0.67 against 0.87)."""
    space = {"hidden_size": {"type": "int", "low": 8, "high": 32},
             "lr": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
             "epochs": 3, "optimizer": "adam"}
    result = tune(digits, trials=3, search_space=space, out=tmp_path / "s", seed=None,
                  progress=False, sampler="random")
    assert result.retrained_val_acc == result.best_value


def test_failed_and_diverged_trials_together_are_named_as_such(tmp_path):
    """3 failed and 3 diverged trials: "all 3 trials failed", the diverged ones unsaid."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from mlplab.tuning import TuneResult, _refuse_if_all_failed

    study = optuna.create_study(direction="maximize")
    for i in range(6):
        failed = i % 2 == 0
        study.add_trial(create_trial(
            params={"lr": 0.5}, distributions={"lr": FloatDistribution(0.1, 1.0)},
            state=TrialState.FAIL if failed else TrialState.COMPLETE,
            value=None if failed else 0.0,
            user_attrs={"error": "SettingsError: no."} if failed else {"diverged": True}))
    result = TuneResult("s", "mem", tmp_path, n_complete=3, n_pruned=0, n_failed=3,
                        best_trial=None, best_value=None, best_params={})
    with pytest.raises(ValueError, match=r"^all 6 trials failed or diverged: 3 failed, the "
                                         r"first with SettingsError: no, and the other 3 "
                                         r"diverged; results\.csv lists them\.$"):
        _refuse_if_all_failed(study, result)


def test_one_failed_trial_is_said_in_the_singular(tmp_path):
    """The note and the errors counted one failed trial as many: "after 1 failed trials in a
    row (each one's error ...)", "all 1 trials failed, the first with ...", "1 failed, the
    first with ..., and the other 1 diverged"."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from mlplab._validation import command_line
    from mlplab.tuning import TuneResult, _refuse_if_all_failed, _unfinished

    def study_of(*states):
        study = optuna.create_study(direction="maximize")
        for state in states:
            done = state == TrialState.COMPLETE
            study.add_trial(create_trial(
                params={"lr": 0.5}, distributions={"lr": FloatDistribution(0.1, 1.0)},
                state=state, value=0.0 if done else None,
                user_attrs={"diverged": True} if done else {"error": "SettingsError: no."}))
        return study

    with command_line():
        assert _unfinished(study_of(TrialState.COMPLETE, TrialState.FAIL), 4, None, 5.0, 60) == (
            "the search ended at 1 of --trials 4 finished trials after a failed trial (its "
            "error is in the results); run the same command again to go on with it")
    one = TuneResult("s", "mem", tmp_path, n_complete=0, n_pruned=0, n_failed=1,
                     best_trial=None, best_value=None, best_params={})
    with pytest.raises(ValueError, match=r"^the only trial failed, with SettingsError: no; "
                                         r"results\.csv lists it\.$"):
        _refuse_if_all_failed(study_of(TrialState.FAIL), one)
    one.n_complete = 1  # and one that diverged
    with pytest.raises(ValueError, match=r"^all 2 trials failed or diverged: 1 failed, with "
                                         r"SettingsError: no, and the other diverged; "
                                         r"results\.csv lists them\.$"):
        _refuse_if_all_failed(study_of(TrialState.FAIL, TrialState.COMPLETE), one)


def test_a_search_only_run_whose_every_trial_fails_is_an_error(tmp_path, capsys, monkeypatch):
    """--search-only whose every trial failed (or whose space no draw can make work) printed
    the note and "no trial has completed yet" and exited 0, where the same search without it
    exits 1; and the note said the failed trial's error "is in the results", which --search-only
    does not write. It now ends with the error, pointing to the trials' warning lines."""
    from mlplab._validation import command_line
    from mlplab.tuning import _unfinished

    space = tmp_path / "bad.yaml"
    space.write_text("batchnorm: true\nbatch_size: 1\nhidden_size: [8, 16]\nepochs: 1\n")
    common = ["--dataset", "digits", "--no-progress", "--search-only"]
    assert main(["tune", *common, "--trials", "2", "--search-space", str(space),
                 "--out", str(tmp_path / "bad")]) == 1
    out, err = capsys.readouterr()
    assert err.rstrip().endswith(
        "change the search space (the search stopped after 1 trial)."), err
    assert "no trial can run, whatever values the search draws" in err and not out, out
    assert not (tmp_path / "bad" / "results.csv").exists()

    def boom(*args, **kwargs):
        raise MemoryError("boom")  # (a failure the search goes on after)

    monkeypatch.setattr(Trainer, "fit", boom)
    space.write_text("hidden_size: [8, 16]\nepochs: 1\n")
    assert main(["tune", *common, "--trials", "1", "--search-space", str(space),
                 "--out", str(tmp_path / "boom")]) == 1
    out, err = capsys.readouterr()
    assert "mlplab tune: error: all 3 trials failed, the first with MemoryError: boom; the " \
           "warning lines above give each failed trial's error." in err and not out, (out, err)
    assert "results.csv" not in err

    study = optuna.create_study(direction="maximize")  # the note of a search with a best
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for state in (TrialState.COMPLETE, TrialState.FAIL):
        study.add_trial(optuna.trial.create_trial(
            params={"x": 0.5}, distributions=dist, state=state,
            value=0.5 if state == TrialState.COMPLETE else None))
    with command_line():
        assert _unfinished(study, 4, None, 5.0, 60, search_only=True) == (
            "the search ended at 1 of --trials 4 finished trials after a failed trial (its "
            "error is on the warning line printed for it, and kept in the study); run the same "
            "command again to go on with it")


def test_the_outputs_name_the_best_trial_they_retrained(digits, tmp_path, monkeypatch):
    """Two processes sharing a study finished together: one counted the trials, another
    process's better trial then finished, and best-run/ retrained that one while summary.json
    named the trial counted (best trial 0 beside trial 5's retrained accuracy). The summary,
    the tables and best-run/ now name the same trial, the one counted."""
    import mlplab.tuning as tuning

    real = tuning._tally

    def then_a_better_trial(study, *args):
        result = real(study, *args)
        better = {**study.trials[0].params}  # another process's, just finished
        study.add_trial(optuna.trial.create_trial(
            params=better, distributions=study.trials[0].distributions, value=2.0))
        return result

    monkeypatch.setattr(tuning, "_tally", then_a_better_trial)
    result = tune(digits, trials=2, search_space=TINY, out=tmp_path, progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    note = json.loads((tmp_path / "best-run" / "tuning.json").read_text())
    assert result.best_trial in (0, 1) and summary["best_trial"] == result.best_trial
    assert note["trial"] == result.best_trial and note["value"] == result.best_value
    assert summary["retrained_val_acc"] == result.retrained_val_acc


def test_processes_finishing_together_write_the_outputs_one_at_a_time(digits, tmp_path,
                                                                      capsys, monkeypatch):
    """Two processes sharing a study and an output folder that finished together both retrained
    the best trial at once, and the one that stopped searching first could write its summary
    last, a trial short. One writes at a time: the second waits (saying so: the wait can last
    minutes), counts the study again, and finds best-run/ done if its best trial is the
    same."""
    import subprocess
    import textwrap

    import mlplab.runs.lock as lock

    released, go = tmp_path / "released", tmp_path / "go"
    # the holder lets go once this process has said it waits (a fixed hold of 2 s ran out
    # before a slow machine's search reached the lock, and nothing was waited for)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import pathlib, time
            from mlplab.runs.lock import run_lock
            with run_lock({str(tmp_path)!r}, lock_file=".results.lock"):
                print("locked", flush=True)
                end = time.monotonic() + 120
                while not pathlib.Path({str(go)!r}).exists() and time.monotonic() < end:
                    time.sleep(0.05)
                pathlib.Path({str(released)!r}).write_text("")
        """)], stdout=subprocess.PIPE, text=True)
    run_lock = lock.run_lock

    def run_lock_then_go(*args, on_wait=None, **kwargs):
        def said(holder_text):
            on_wait(holder_text)
            go.write_text("")

        return run_lock(*args, on_wait=None if on_wait is None else said, **kwargs)

    monkeypatch.setattr(lock, "run_lock", run_lock_then_go)
    try:
        assert holder.stdout.readline() == "locked\n"
        tune(digits, trials=1, search_space=TINY, out=tmp_path, progress=True)
    finally:
        holder.wait(timeout=60)
    waiting = [line for line in capsys.readouterr().err.splitlines() if "waiting for" in line]
    assert len(waiting) == 1
    assert f"process {holder.pid} on" in waiting[0] and str(tmp_path) in waiting[0]
    assert (tmp_path / "summary.json").stat().st_mtime >= released.stat().st_mtime
    assert not (tmp_path / ".results.lock").exists()
    best = tmp_path / "best-run" / "model.npz"
    before = best.stat().st_mtime_ns
    tune(digits, trials=1, search_space=TINY, out=tmp_path, progress=True)  # as the second
    assert best.stat().st_mtime_ns == before  # found done, not retrained
    assert "waiting for" not in capsys.readouterr().err  # nothing to wait for: nothing said


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_search_fails_the_trial_of_a_neighbour_killed_meanwhile(digits, tmp_path):
    """Two searches of one study on one machine, one killed (SIGKILL) mid-trial: the other
    counted the dead trial as running to the end and stopped a trial short ("trial 3 is still
    RUNNING ... re-queued 60 s after its last heartbeat"), where a dead process of this machine
    is known at once (as --workers knows its own)."""
    import socket
    import subprocess

    import mlplab.tuning.objective as objective
    from mlplab.tuning import run_search

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    spec = StorageSpec(f"sqlite:///{tmp_path / 'study.db'}")  # heartbeats every 30 s
    study = optuna.create_study(storage=spec.open(), direction="maximize")
    real = objective._ReportCallback.on_epoch_end

    def neighbour_killed_meanwhile(self, trainer, epoch, logs):
        if self.trial.number == 0 and epoch == 1:  # the other search's trial, begun and killed
            killed = study.ask()
            killed.set_user_attr("worker", f"{socket.gethostname()}:{dead}#0")
        return real(self, trainer, epoch, logs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(objective._ReportCallback, "on_epoch_end", neighbour_killed_meanwhile)
        run_search(study, digits, SearchSpace.from_dict(TINY), target=2)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 2 and TrialState.RUNNING not in states, states


def test_a_space_written_with_its_default_step_is_the_same_space(digits, tmp_path):
    """`step: 1` is an int range's default: a study resumed with it written out (or left out)
    was refused as another search space ("`step: 1` now")."""

    url = f"sqlite:///{tmp_path / 'study.db'}"
    with_step = {**TINY, "hidden_size": {**TINY["hidden_size"], "step": 1}}
    first = tune(digits, trials=1, search_space=with_step, storage=url, study_name="s",
                 out=tmp_path / "o", progress=False, search_only=True)
    again = tune(digits, trials=2, search_space=TINY, storage=url, study_name="s",
                 out=tmp_path / "o", progress=False, search_only=True)
    assert (first.n_complete, again.n_complete) == (1, 2)
    # a study recorded by an older mlplab, which kept the step as written
    study = optuna.load_study(study_name="s", storage=url)
    study.set_user_attr("mlplab:search_space", with_step)
    assert tune(digits, trials=2, search_space=TINY, storage=url, study_name="s",
                out=tmp_path / "o", progress=False, search_only=True).n_complete == 2
    with pytest.raises(ValueError, match="`hidden_size`: .* in the study"):
        tune(digits, trials=3, search_space={**TINY, "hidden_size": {**TINY["hidden_size"],
                                                                      "step": 2}},
             storage=url, study_name="s", out=tmp_path / "o", progress=False, search_only=True)


def test_a_trial_of_another_pid_namespace_is_not_taken_for_a_dead_local_one(tmp_path):
    """A process in another PID namespace (a container, `unshare`) with this machine's host
    name: its pid looked up here seems dead, and its live trials were failed (after every trial
    once each search checked then). A trial records its worker's namespace; one of another is
    left to its heartbeat."""
    import socket
    import subprocess

    from mlplab.tuning.processes import NAMESPACE_ATTR, pid_namespace
    from mlplab.tuning.search import fail_dead_local_trials

    if pid_namespace() is None:
        pytest.skip("no PID namespaces here")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    study = optuna.create_study(storage=StorageSpec(f"sqlite:///{tmp_path / 's.db'}",
                                                    retry_failed=False).open(),
                                direction="maximize")
    for namespace in ("pid:[1]", pid_namespace(), None):  # another, this one, not recorded
        trial = study.ask()
        if namespace is not None:
            trial.set_user_attr(NAMESPACE_ATTR, namespace)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{dead}#0")
    fail_dead_local_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING, TrialState.FAIL,
                                                     TrialState.FAIL]


def test_a_result_refused_as_the_trial_was_failed_elsewhere_is_told_elsewhere():
    """Failed by another process between Optuna's check that the trial runs and its write:
    Optuna raises "Should not reach." over the storage's refusal, which ended the command."""
    from mlplab.tuning.search import _told_elsewhere

    def raised(context):
        try:
            try:
                raise context
            except Exception:
                raise AssertionError("Should not reach.")  # noqa: B904 - as Optuna raises it
        except AssertionError as exc:
            return exc

    finished = "Trial#0 has already finished and can not be updated."
    assert _told_elsewhere(raised(RuntimeError(finished)))
    # bare, for a trial pruned or failed here (Optuna raises no AssertionError then)
    assert _told_elsewhere(RuntimeError(finished))
    if hasattr(optuna.exceptions, "UpdateFinishedTrialError"):  # Optuna >= 4.3
        assert _told_elsewhere(optuna.exceptions.UpdateFinishedTrialError(finished))
    assert _told_elsewhere(raised(ValueError("Cannot tell a FAIL trial.")))
    assert not _told_elsewhere(raised(RuntimeError("something else")))
    assert not _told_elsewhere(AssertionError("Should not reach."))


def test_an_int_log_range_may_write_its_default_step():
    """Optuna allows `step: 1` with `log`; it was refused as "`step` and `log` cannot be
    combined", and it is the default anyway."""
    space = SearchSpace.from_dict({"hidden_size": {"type": "int", "low": 32, "high": 64,
                                                   "log": True, "step": 1}})
    assert space.to_dict() == {"hidden_size": {"type": "int", "low": 32, "high": 64,
                                               "log": True}}


def test_a_stopped_search_leaves_the_outputs_to_a_process_writing_them(digits, tmp_path,
                                                                      monkeypatch):
    """A search stopped by Ctrl-C wrote its tables and summary while another process that
    shares the study wrote them (its summary over the other's). It leaves them to that process,
    and does not wait for it."""
    import subprocess
    import textwrap

    import mlplab.tuning.search as search

    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from mlplab.runs.lock import run_lock
            with run_lock({str(tmp_path)!r}, lock_file=".results.lock"):
                print("locked", flush=True)
                time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"

        def ctrl_c(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(search, "_optimize", ctrl_c)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            tune(digits, trials=1, search_space=TINY, out=tmp_path, progress=False)
        assert time.monotonic() - start < 20
        assert not (tmp_path / "summary.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_grid_that_runs_out_before_trials_says_the_search_is_complete(tmp_path, capsys):
    """mlplab tune --sampler grid --trials 10 over a grid of 2 points printed "2 complete" and
    nothing else, which read as a search cut short; --trials fewer than the grid's points
    gets no such line."""
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"hidden_size": [8, 16], "lr": 0.1, "epochs": 1}))
    command = ["tune", "--dataset", "digits", "--trials", "10", "--sampler", "grid",
               "--search-space", str(space), "--search-only", "--out", str(tmp_path / "t"),
               "--no-progress"]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "2 complete" in out and "the grid's points are all tried, in fewer trials than " \
        "--trials 10: the search is complete" in out, out
    assert main([*command[:4], "1", *command[5:], "--study", "other"]) == 0
    assert "the grid's points" not in capsys.readouterr().out  # --trials 1 of 2: as asked


def _tune_under_a_limit(tmp_path: Path, space: str, resource_limit: int,
                        value: int) -> subprocess.CompletedProcess:
    """``mlplab tune`` of two one-epoch trials of ``space`` (YAML lines) in a process whose
    ``resource_limit`` (``resource.RLIMIT_*``) is ``value``: the memory or file size limit of a
    shared machine."""
    import resource

    def limited() -> None:
        resource.setrlimit(resource_limit, (value, resource.getrlimit(resource_limit)[1]))

    (tmp_path / "space.yaml").write_text(
        f"{space}epochs: 1\nlr: {{type: float, low: 0.001, high: 0.01}}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": pythonpath()}
    return subprocess.run([sys.executable, "-m", "mlplab", "tune", "--trials", "2",
                           "--search-space", str(tmp_path / "space.yaml"), "--out",
                           str(tmp_path / "o"), "--no-progress"], capture_output=True, text=True,
                          env=env, timeout=300, preexec_fn=limited)


def test_cli_tune_a_trial_out_of_memory_is_one_line_not_a_traceback(tmp_path):
    """Under a memory limit (``ulimit -v``, here RLIMIT_AS) each trial of a network too large
    printed Optuna's 25-line traceback of NumPy's allocation; now its one-line warning, and the
    command's one-line error that every trial failed."""
    import resource

    # two layers of 40,000: a 12 GiB weight matrix
    done = _tune_under_a_limit(tmp_path, "hidden_size: 40000\ndepth: 2\n", resource.RLIMIT_AS,
                               3 * 2**30)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "File \"" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    failed = [line for line in lines if "failed with parameters" in line]
    # (failed trials do not count towards --trials: the search gives up after a run of them)
    assert len(failed) >= 2 and all("MemoryError" in line for line in failed), lines
    assert re.match(r"mlplab tune: error: all \d+ trials failed, the first with MemoryError: "
                    "Unable to allocate", lines[-1]), lines[-1]


@pytest.mark.parametrize("limit_kib", [80, 200])  # (fails as the study opens; at a later write)
def test_cli_tune_a_study_the_disk_refuses_says_so(tmp_path, limit_kib):
    """A study.db that could not grow (a full disk, or here a file size limit: ``ulimit -f``)
    ended the command with Optuna's "An exception is raised during the commit. This typically
    happens due to invalid data in the commit, e.g. exceeding max length", or with "cannot open
    storage ...: disk I/O error": now SQLite's reason and what to do, in one line."""
    import resource

    done = _tune_under_a_limit(tmp_path, "hidden_size: 8\n", resource.RLIMIT_FSIZE,
                               limit_kib * 1024)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mlplab tune: error: cannot "), done.stderr
    assert last.endswith("disk I/O error; free some disk space (or raise this process's file "
                         "size limit, ulimit -f) and run the command again, which goes on from "
                         "the study's finished trials"), done.stderr
    assert "exceeding max length" not in done.stderr and "Traceback" not in done.stderr
