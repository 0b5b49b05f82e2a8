"""Every ``mlplab`` command with bad arguments: exit code 2 for usage errors, 1 for runtime errors,
one line on stderr, and no Python traceback unless ``--debug``.

The first part walks the parser itself, so a command or option added later is covered without
editing this file: for every command, ``--help``, an unknown option, a missing required argument,
a non-number for every typed option and an unknown value for every option with choices. The
second part gives each command values that parse but cannot work (negative learning rate, zero
batch, hidden size 0, dropout 1, NaN, ...) and files that are missing or corrupt.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from repo_path import pythonpath

from mlplab.cli import build_parser, main
from mlplab.cli._types import data_dir_arg, user_path_arg

ROOT = Path(__file__).resolve().parents[1]
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _commands(parser: argparse.ArgumentParser, prefix=()) -> list[tuple[tuple[str, ...],
                                                                     argparse.ArgumentParser]]:
    """Every (sub)command path and its parser, leaves and groups alike."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(((*prefix, name), sub))
                out += _commands(sub, (*prefix, name))
    return out


COMMANDS = _commands(build_parser())


def _required(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for the required arguments, so that one option at a time is wrong."""
    args = []
    for a in parser._actions:
        if a.option_strings and a.required:
            args += [a.option_strings[0], _good_value(a)]
    for a in parser._actions:
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction) and \
                a.nargs not in ("?", "*"):
            args.append(_good_value(a))
    return args


def _good_value(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    return "3" if action.type not in (None, str) else "digits"


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    with np.errstate(all="ignore"):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _skip_without_torch(argv: list[str], err: str) -> None:
    """``mlplab torch`` checks most values after importing PyTorch: without it, it says so."""
    if argv[0] == "torch" and not HAVE_TORCH and "needs PyTorch" in err:
        pytest.skip("PyTorch is not installed; mlplab torch checks this value after importing it")


def _assert_one_line_error(err: str, code: int, expected: int, argv) -> None:
    assert code == expected, (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("mlplab"), (argv, err)
    assert err.strip().splitlines()[-1] == errors[0], (argv, err)  # the error comes last


def _leaves():
    return [(path, p) for path, p in COMMANDS
            if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]


def test_the_walk_sees_every_command():
    names = {" ".join(path) for path, _ in _leaves()}
    assert {"check", "gradcheck", "data info", "data show", "data download", "train", "evaluate",
            "predict", "tune", "torch train", "torch depth"} <= names, names


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in COMMANDS])
def test_help_explains_itself(path, capsys):
    code, out, err = _run([*path.split(), "--help"], capsys)
    assert code == 0 and out.startswith("usage: mlplab") and "Traceback" not in err
    assert len(out.splitlines()) >= 3  # a description, not just a usage line


def _examples() -> list[tuple[str, str]]:
    """(command, example) for every ``mlplab ...`` line of a command's description or epilog
    (a line that starts with one, or one after 'Example: '; backslash continuations joined)."""
    import re

    found = []
    for path, parser in COMMANDS:
        text = re.sub(r"\\\n\s*", "", "\n".join(filter(None, (parser.description,
                                                               parser.epilog))))
        for line in text.splitlines():
            match = re.match(r"\s*(?:.*Example: )?(mlplab \S.*)$", line)
            if match:
                found.append((" ".join(path), re.sub(r"\s+#.*$", "", match.group(1))))
    return found


def test_the_help_finds_its_examples():
    commands = {c for c, _ in _examples()}
    assert {"train", "tune", "reproduce"} <= commands, commands


@pytest.mark.parametrize(("command", "example"), _examples())
def test_every_example_in_the_help_parses(command, example):
    """The examples under ``--help`` are commands a user copies: each must parse (the tune one
    that used --search-space lacked the required --trials and stopped with a usage error)."""
    import shlex

    argv = shlex.split(example)[1:]
    assert argv[:len(command.split())] == command.split(), example
    args = build_parser().parse_args(argv)  # exits 2, failing the test, on a usage error
    assert args.func is not None


def _bad_invocations():
    """(argv, why) pairs that argparse itself must refuse, for every command."""
    for path, parser in _leaves():
        base = [*path, *_required(parser)]
        yield [*base, "--no-such-option"], "unknown option"
        if _required(parser):
            yield list(path), "missing required arguments"
        for a in parser._actions:
            if not a.option_strings or a.nargs == 0 or a.dest == "help":
                continue
            flag = a.option_strings[-1]
            if a.choices:
                yield [*base, flag, "no-such-choice"], f"{flag} choice"
            elif a.type not in (None, str, user_path_arg, data_dir_arg):  # (a path: any text)
                yield [*base, flag, "not-a-number!"], f"{flag} type"
            if a.nargs is None:
                yield [*base, flag], f"{flag} without its value"


BAD = list(_bad_invocations())


@pytest.mark.parametrize("argv,why", BAD, ids=[f"{' '.join(a[:2])}: {w}" for a, w in BAD])
def test_argparse_usage_errors_exit_2_in_one_line(argv, why, capsys):
    code, _, err = _run(argv, capsys)
    _assert_one_line_error(err, code, 2, argv)


# --------------------------------------------------------------------------- values that parse
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from mlplab.runs import train_run

    out = tmp_path_factory.mktemp("cli") / "run"
    train_run(dataset="digits", hidden=[8], epochs=1, out=out, plots=False)
    return out


T = ["--dataset", "digits", "--epochs", "1", "--quiet", "--no-plots", "--out", "OUT"]
TUNE = ["tune", "--trials", "1", "--search-only", "--no-progress", "--out", "OUT"]
USAGE = [  # (argv, message): parse, but can never work -> exit 2
    (["train", "--lr", "-1", *T], "lr must be a finite number > 0"),
    (["train", "--lr", "0", *T], "lr must be a finite number > 0"),
    (["train", "--lr", "nan", *T], "got nan"),
    (["train", "--lr", "inf", *T], "got inf"),
    (["train", "--batch-size", "0", *T], "--batch-size must be an integer >= 1"),
    (["train", "--hidden", "0", *T], "hidden sizes must be positive"),
    (["train", "--hidden", "64,0", *T], "hidden sizes must be positive"),
    # an unset shell variable or a doubled comma is a typo, not a net without hidden layers
    (["train", "--hidden", "", *T], "(or 'none' for no hidden layer); got ''"),
    (["train", "--hidden", ",,,", *T], "hidden sizes must be comma-separated integers"),
    (["train", "--hidden", "100,,50", *T], "got '100,,50'"),
    (["train", "--dropout", "1", *T], "dropout must be in [0, 1)"),
    (["train", "--dropout", "-0.5", *T], "dropout must be in [0, 1)"),
    (["train", "--dropout", "nan", *T], "dropout must be in [0, 1)"),
    (["train", "--epochs", "0", "--quiet", "--out", "OUT"], "epochs must be an integer >= 1"),
    (["train", "--iters", "-3", "--quiet", "--out", "OUT"], "iters must be an integer >= 1"),
    (["train", "--reg", "-1", *T], "reg must be a finite number >= 0"),
    (["train", "--momentum", "1.5", "--optimizer", "momentum", *T], "momentum must be"),
    (["train", "--lr-decay", "0", *T], "--lr-decay must be a number in (0, 1]"),
    (["train", "--lr-decay", "1.5", *T], "--lr-decay must be a number in (0, 1]"),
    (["train", "--std", "-1", "--init", "normal", *T], "std must be a finite number > 0"),
    (["train", "--patience", "-1", *T], "--patience: expected an integer >= 0"),
    (["train", "--step-epochs", "0", "--schedule", "step", *T], "--step-epochs must be"),
    (["train", "--warmup-epochs", "-1", *T], "--warmup-epochs must be"),
    (["train", "--min-lr", "-1", "--schedule", "cosine", *T], "--min-lr must be"),
    (["train", "--weight-decay", "-0.1", *T], "--weight-decay must be"),
    (["train", "--weight-decay", "0.1", "--optimizer", "sgd", *T], "adam optimizer only; use "
                                                                   "--reg for L2"),
    (["train", "--seed", "-1", *T], "--seed: expected an integer between 0 and 2**32 - 1"),
    (["train", "--val-size", "-5", *T], "--val-size: expected a count >= 0"),
    (["train", "--image-size", "0", *T], "--image-size: image size must be a positive"),
    (["train", "--resume", "RUN", "--lr", "0.1"], "drop --lr"),
    (["predict", "RUN", "IMG", "--top", "0"], "--top must be at least 1"),
    (["gradcheck", "--hidden", "0"], "error: --hidden: hidden sizes must be positive integers"),
    (["gradcheck", "--hidden", ""], "--hidden: hidden sizes must be comma-separated integers"),
    (["gradcheck", "--samples", "0"], "--samples must be at least 1"),
    # one sample through batch norm: every gradient is zero, the check would prove nothing
    (["gradcheck", "--batchnorm", "--samples", "1"], "--batchnorm needs --samples of at least 3"),
    # two rows: batch norm maps each unit to -1 and +1, and correct code failed on some seeds
    (["gradcheck", "--batchnorm", "--samples", "2"], "--batchnorm needs --samples of at least 3"),
    (["reproduce", "--seed", "-1", "--out", "OUT"], "--seed: expected an integer between 0"),
    (["gradcheck", "--inputs", "0"], "--inputs must be at least 1"),
    (["gradcheck", "--classes", "1"], "--classes must be at least 2"),
    (["gradcheck", "--dropout", "1"], "error: --dropout must be a number in [0, 1)"),
    (["gradcheck", "--reg", "-1"], "--reg must be a finite number >= 0"),
    (["gradcheck", "--tol", "0"], "--tol must be a finite number > 0"),
    (["data", "info", "digits", "--seed", "-2"], "--seed: expected an integer"),
    (["data", "show", "digits", "--out", "OUT/g.png", "--per-class", "0"], "--per-class must"),
    (["data", "show", "digits", "--out", "OUT/g.png", "--per-class", "2000"],
     "--per-class must be at most 30 (the figure is at most 9 inches tall); got 2000."),
    ([*TUNE, "--trials", "0"], "--trials: expected a positive integer"),
    ([*TUNE, "--workers", "0"], "--workers: expected a positive integer"),
    ([*TUNE, "--timeout", "-5"], "--timeout: expected a positive number of seconds"),
    ([*TUNE, "--timeout", "0"], "--timeout: expected a positive number of seconds"),
    ([*TUNE, "--heartbeat", "-1"], "--heartbeat: expected an integer >= 0"),
    ([*TUNE, "--seed", "-1"], "--seed: expected an integer"),
    # a seed of the splits passed the parse and failed after it, naming `seed`, not the flag
    ([*TUNE, "--seed", "4294967295"], "--seed: expected an integer between 0 and 2**32 - 2"),
    (["reproduce", "--only", "data", "--out", "OUT", "--seed", "4294967295"],
     "--seed: expected an integer between 0 and 2**32 - 2"),
    (["data", "info", "digits", "--seed", "4294967295"], "--seed: expected an integer between "
                                                         "0 and 2**32 - 2"),
    (["data", "show", "digits", "--out", "OUT/g.png", "--seed", "4294967295"],
     "--seed: expected an integer between 0 and 2**32 - 2"),
    (["train", "--data-seed", "4294967295", *T], "--data-seed: expected an integer between 0 "
                                                 "and 2**32 - 2"),
    (["torch", "train", "--data-seed", "4294967295", "--out", "OUT"],
     "--data-seed: expected an integer between 0 and 2**32 - 2"),
    ([*TUNE, "--train-size", "0"], "--train-size: expected a positive integer"),
    (["torch", "train", "--epochs", "0", "--out", "OUT"], "--epochs: expected a positive"),
    (["torch", "train", "--lr", "-1", "--out", "OUT"], "lr must be a finite number > 0"),
    (["torch", "train", "--batch-size", "0", "--out", "OUT"], "--batch-size: expected"),
    (["torch", "train", "--hidden", "0", "--out", "OUT"], "--hidden: expected positive "
                                                          "integers like 100,50; got '0'"),
    (["torch", "train", "--hidden", "", "--out", "OUT"], "--hidden: expected comma-separated "
                                                         "integers like 100,50"),
    # PyTorch's own initialisation takes no std: config.json recorded one it never used
    (["torch", "train", "--init", "default", "--init-std", "0.5", "--out", "OUT"],
     "--init-std has no effect with --init default (PyTorch's own initialisation)"),
    (["torch", "depth", "--layers", "2,,3"], "--layers: expected comma-separated"),
    (["torch", "train", "--dropout", "1", "--out", "OUT"], "--dropout must be in [0, 1)"),
    (["torch", "train", "--lr-decay", "0", "--out", "OUT"], "--lr-decay must be in (0, 1]"),
    (["torch", "train", "--reg", "-1", "--out", "OUT"], "must be a finite number >= 0"),
    (["torch", "depth", "--layers", "0", "--out", "OUT"], "--layers: expected positive"),
    # a depth given twice trained the same network twice, into two rows of the table; depth_run
    # refused it as a runtime error (exit 1) with no flag named
    (["torch", "depth", "--layers", "2,3,2", "--out", "OUT"], "--layers: expected different"),
    (["reproduce", "--reuse", "--out", "OUT"], "--reuse keeps the sections that --only"),
    # a name outside the fixed list, as argparse answers an unknown --preset: exit 2 with the
    # names (a folder:PATH whose folder is missing is the world's answer, exit 1)
    (["train", "--dataset", "no-such-dataset", "--quiet", "--out", "OUT"],
     "argument --dataset: unknown dataset 'no-such-dataset'; choose one of digits, cifar10, "
     "fashion-mnist, mnist or folder:PATH"),
    (["train", "--dataset", "folder:", "--quiet", "--out", "OUT"], "folder: needs a path"),
    # before Q1-Q3 run and a report of gaps is written
    (["reproduce", "--dataset", "digit", "--out", "OUT"], "unknown dataset 'digit'"),
    (["torch", "train", "--dataset", "nosuch", "--out", "OUT"], "unknown dataset 'nosuch'"),
    ([*TUNE, "--dataset", "nosuch"], "argument --dataset: unknown dataset 'nosuch'"),
    (["data", "info", "nosuch"], "argument NAME: unknown dataset 'nosuch'"),
    (["data", "show", "nosuch", "--out", "OUT/g.png"], "argument NAME: unknown dataset"),
]


def _fill(argv: list[str], tmp_path: Path, run_dir: Path) -> list[str]:
    img = tmp_path / "x.png"
    if not img.exists():
        from PIL import Image

        Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    subs = {"OUT": str(tmp_path / "out"), "RUN": str(run_dir), "IMG": str(img)}
    out = []
    for a in argv:
        for key, value in subs.items():
            a = a.replace(key, value)
        out.append(a)
    return out


@pytest.mark.parametrize("argv,message", USAGE, ids=[" ".join(a[:3]) for a, _ in USAGE])
def test_impossible_values_are_usage_errors(argv, message, tmp_path, run_dir, capsys):
    argv = _fill(argv, tmp_path, run_dir)
    code, _, err = _run(argv, capsys)
    _skip_without_torch(argv, err)
    _assert_one_line_error(err, code, 2, argv)
    assert message in err, err
    assert not (tmp_path / "out").exists() or argv[0] == "data", "nothing is written"


def _corrupt_run(tmp_path: Path, run_dir: Path, what: str) -> Path:
    import shutil

    run = tmp_path / "corrupt"
    shutil.copytree(run_dir, run)
    if what == "truncated":
        data = (run / "model.npz").read_bytes()
        (run / "model.npz").write_bytes(data[:len(data) // 2])
    elif what == "garbage":
        (run / "model.npz").write_bytes(os.urandom(300))
    elif what == "config":
        (run / "config.json").write_text("{not json")
    return run


RUNTIME = [  # (argv, message): well-formed, but the files or the world say no -> exit 1
    (["train", "--dataset", "folder:/nonexistent/folder", "--quiet", "--out", "OUT"],
     "no such folder"),
    (["train", "--dataset", "cifar10", "--data-dir", "OUT", "--quiet", "--out", "OUT/r"],
     "CIFAR-10 not found"),
    (["train", "--val-size", "100000", *T], "--val-size must be between 0 and"),
    (["train", "--resume", "/nonexistent/run"], "no run to resume in /nonexistent/run: no such "
                                                "folder"),
    (["train", "--resume", "RUN"], "has already completed"),
    (["train", *T[:-2], "--out", "RUN"], "already holds a completed run"),
    (["evaluate", "/nonexistent/run"], "/nonexistent/run: no such folder; pass a run folder"),
    (["evaluate", "RUN/config.json"], "config.json is not a folder; pass a run folder"),
    (["evaluate", "CORRUPT:truncated"], "not a readable .npz file"),
    (["evaluate", "CORRUPT:garbage"], "not a readable .npz file"),
    (["evaluate", "CORRUPT:config"], "config.json is not valid JSON"),
    (["predict", "RUN", "/nonexistent.png"], "no such image file"),
    (["predict", "RUN", "RUN/config.json"], "config.json: cannot read image (not an image format"),
    (["data", "info", "mnist", "--data-dir", "OUT"], "mnist not found"),
    (["data", "download", "mnist", "--data-dir", "OUT", "--mirror", "http://127.0.0.1:1/"],
     "cannot download"),
    ([*TUNE, "--search-space", "/nonexistent.yaml"], "does not exist"),
    (["torch", "train", "--dataset", "folder:/nonexistent", "--out", "OUT"], "no such folder"),
    (["torch", "train", "--resume", "/nonexistent/run"], "no run to resume in /nonexistent/run: "
                                                          "no such folder, so nothing was saved"),
]


@pytest.mark.parametrize("argv,message", RUNTIME, ids=[" ".join(a[:2]) for a, _ in RUNTIME])
def test_runtime_errors_exit_1_in_one_line(argv, message, tmp_path, run_dir, capsys,
                                           monkeypatch):
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "data-root"))
    argv = _fill(argv, tmp_path, run_dir)
    argv = [str(_corrupt_run(tmp_path, run_dir, a.split(":")[1])) if a.startswith("CORRUPT:")
            else a for a in argv]
    code, _, err = _run(argv, capsys)
    _skip_without_torch(argv, err)
    _assert_one_line_error(err, code, 1, argv)
    assert message in err, err


def test_unexpected_exceptions_are_one_line_too_and_debug_shows_them(monkeypatch, capsys):
    import zipfile

    import mlplab.cli.check as check

    def broken(args):
        raise zipfile.BadZipFile("line one\nline two")  # not an ...Error: a bug's look-alike

    monkeypatch.setattr(check, "run_check", broken)
    code, _, err = _run(["check"], capsys)
    _assert_one_line_error(err, code, 1, ["check"])
    assert "internal error (BadZipFile: line one line two); rerun as mlplab --debug check ... " \
        "for the traceback" in err
    with pytest.raises(zipfile.BadZipFile):
        main(["--debug", "check"])


def test_a_warning_the_users_filter_made_an_error_is_not_called_internal(monkeypatch, capsys):
    """Under ``PYTHONWARNINGS=error`` (or ``-W error``) a warning mlplab gives (the decode cache
    it cannot write under a read-only home, a warm-up as long as the run) ends the command, as
    asked; it was reported as "internal error (UserWarning: ...); ... please report it". It is
    the warning's text, saying which filter made it an error."""
    import warnings

    import mlplab.cli.check as check

    def warns(args):
        warnings.warn("could not write the image cache", stacklevel=1)
        return 0

    monkeypatch.setattr(check, "run_check", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, _, err = _run(["check"], capsys)
    _assert_one_line_error(err, code, 1, ["check"])
    assert "internal error" not in err and "please report" not in err, err
    assert ("mlplab check: error: could not write the image cache (a UserWarning, which the "
            "warnings filter of -W or PYTHONWARNINGS made an error)") in err, err


def test_a_home_folder_matplotlib_cannot_write_to_adds_no_lines_of_its_own(tmp_path):
    """With HOME unwritable (a container, a CI job) Matplotlib made a temporary configuration
    folder and said so in two lines on stderr around the command's own; mlplab gives it one
    first. The import alone is enough to see it."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    env["HOME"] = "/proc"  # exists, and nothing can be made in it
    done = subprocess.run([sys.executable, "-c", "import os, mlplab._matplotlib; "
                           "print(os.environ['MPLCONFIGDIR'])"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert os.path.basename(done.stdout.strip()).startswith("mlplab-matplotlib-")


def test_the_temporary_matplotlib_folder_goes_when_the_process_ends(tmp_path):
    """The configuration folder mlplab makes for Matplotlib under an unwritable HOME (with its
    font cache) stayed in the temporary folder after every command: dozens on a shared machine
    or CI runner. It is removed as the process ends, as Matplotlib removes its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    env.update(HOME="/proc", TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", "import os, mlplab._matplotlib as m; "
                           "m.plt.figure(); print(os.environ['MPLCONFIGDIR'])"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    folder = Path(done.stdout.strip())
    assert folder.parent == tmp_path and folder.name.startswith("mlplab-matplotlib-")
    assert not folder.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("raised, said", [
    (MemoryError("std::bad_alloc"), "out of memory (std::bad_alloc); "),
    (MemoryError(), "out of memory; "),
    # PyTorch's CPU allocator, word for word (torch 2.x), under ulimit -v: a RuntimeError
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 6400000000 bytes. Error code 12 "
                  "(Cannot allocate memory)"),
     "out of memory (PyTorch was unable to allocate 5.96 GiB); "),
    # a library an import could not map (Matplotlib's, for the plots after training)
    (ImportError("libXau-154567c4.so.6.0.0: failed to map segment from shared object"),
     "out of memory (a library could not be loaded: libXau-154567c4.so.6.0.0: failed to map "
     "segment from shared object); "),
])
def test_running_out_of_memory_says_so(monkeypatch, capsys, raised, said):
    """Under a memory limit (``ulimit -v``) loading even the digits failed with "mlplab train:
    error: std::bad_alloc" (scikit-learn's C++), or "error: MemoryError": nothing said that
    memory ran out or what to do. ``mlplab torch train`` passed PyTorch's allocator's refusal on
    as it came ("[enforce fail at alloc_cpu.cpp:127] ...")."""
    import mlplab.cli.check as check

    def exhausted(args):
        raise raised

    monkeypatch.setattr(check, "run_check", exhausted)
    code, _, err = _run(["check"], capsys)
    _assert_one_line_error(err, code, 1, ["check"])
    assert f"mlplab check: error: {said}free memory, raise this process's limit (ulimit -v)" \
        in err, err


@pytest.fixture
def launcher_signals():
    """The launcher ignores Ctrl-C and SIGTERM as it returns (interrupts.exiting: one more as
    the process ends keeps its status): called in this process, it left the rest of the tests'
    Ctrl-C ignored, so that their interrupted runs trained to the end."""
    import signal

    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in kept.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("argv, said", [
    (["mlplab", "train"], "one line"),
    (["mlplab", "--debug", "train"], "traceback"),
])
def test_memory_refused_as_the_modules_load_is_one_line(monkeypatch, capsys, argv, said,
                                                        launcher_signals):
    """Under a low ``ulimit -v`` NumPy's import, as the parser was built, ended in a Python
    traceback and NumPy's page of advice on broken installs around "Original error was:
    libgfortran...so.5.0.0: failed to map segment from shared object"."""
    import mlplab.cli
    from mlplab._launch import main as launch

    def unmappable():
        raise ImportError("\n\nIMPORTANT: PLEASE READ THIS FOR ADVICE ON HOW TO SOLVE THIS ISSUE!"
                          "\n\nImporting the numpy C-extensions failed.\n\nOriginal error was: "
                          "libgfortran-040039e1.so.5.0.0: failed to map segment from shared "
                          "object\n")

    monkeypatch.setattr(mlplab.cli, "main", unmappable)
    monkeypatch.setattr(sys, "argv", argv)
    if said == "traceback":
        with pytest.raises(ImportError):
            launch()
        return
    assert launch() == 1
    assert capsys.readouterr().err == (
        "mlplab: error: out of memory (a library could not be loaded: libgfortran-040039e1.so.5."
        "0.0: failed to map segment from shared object); free memory, raise this process's "
        "limit (ulimit -v), or use less data or a smaller network\n")
    # any other ImportError (a missing dependency) is not taken for memory
    monkeypatch.setattr(mlplab.cli, "main", lambda: (_ for _ in ()).throw(ImportError("no x")))
    with pytest.raises(ImportError, match="no x"):
        launch()


def test_too_many_open_files_says_to_raise_the_limit(monkeypatch, capsys):
    """Under a low ``ulimit -n`` (10) ``mlplab tune`` ended with "mlplab tune: error:
    .../DejaVuSans-Oblique.ttf: Too many open files", naming a Matplotlib font and no remedy."""
    import errno

    import mlplab.cli.check as check

    def exhausted(args):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), "/fonts/DejaVuSans.ttf")

    monkeypatch.setattr(check, "run_check", exhausted)
    code, _, err = _run(["check"], capsys)
    _assert_one_line_error(err, code, 1, ["check"])
    # what limit it names: test_the_open_files_advice_names_a_limit_above_the_one_reached
    assert "error: /fonts/DejaVuSans.ttf: Too many open files; raise the limit of open files " \
        "(now " in err, err


@pytest.mark.parametrize("limits, said", [((1024, 4096), "(now 1024): ulimit -n 2048"),
                                          ((10, 4096), "(now 10): ulimit -n 1024"),
                                          ((2048, 2048), "(now 2048, which is also the hard "
                                           "limit; only root can raise it)")])
def test_the_open_files_advice_names_a_limit_above_the_one_reached(monkeypatch, capsys, limits,
                                                                   said):
    """Linux's usual limit of open files is 1024: a command that reached it was told "raise the
    limit of open files (now 1024): ulimit -n 1024, for example", the limit it had."""
    import errno
    import resource

    import mlplab.cli.check as check

    def exhausted(args):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), "/fonts/DejaVuSans.ttf")

    monkeypatch.setattr(check, "run_check", exhausted)
    monkeypatch.setattr(resource, "getrlimit", lambda which: limits)
    code, _, err = _run(["check"], capsys)
    _assert_one_line_error(err, code, 1, ["check"])
    assert f"Too many open files; raise the limit of open files {said}" in err, err


def test_a_warning_given_again_is_shown_once(monkeypatch, capsys):
    """Matplotlib warns of a glyph missing from its font (a class folder named in Chinese, on a
    machine without a CJK font) from each line of mlplab's that draws the figure: `mlplab data
    show` printed the same "Glyph 29483 ... missing from font(s) DejaVu Sans" three times."""
    import warnings

    import mlplab.cli.check as check

    def warns(args):
        warnings.warn("Glyph 29483 missing from font(s) DejaVu Sans.", stacklevel=1)
        warnings.warn("Glyph 29483 missing from font(s) DejaVu Sans.", stacklevel=1)
        warnings.warn("another one", stacklevel=1)
        return 0

    monkeypatch.setattr(check, "run_check", warns)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert main(["check"]) == 0
    assert [str(w.message) for w in shown] == ["Glyph 29483 missing from font(s) DejaVu Sans.",
                                               "another one"]


def test_debug_shows_the_traceback_of_a_user_error(capsys):
    with pytest.raises(ValueError, match="lr must be"):
        main(["--debug", "train", "--lr", "-1", "--quiet"])


def test_a_real_process_prints_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": pythonpath(), "OMP_NUM_THREADS": "1"}
    for argv, code in ((["train", "--lr", "-1"], 2), (["evaluate", str(tmp_path)], 1),
                       (["train", "--hidden", "x"], 2)):
        res = subprocess.run([sys.executable, "-m", "mlplab", *argv], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == code and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip().splitlines()[-1].startswith("mlplab ")


@pytest.mark.parametrize("unbuffered", ["1", None])
@pytest.mark.parametrize("argv", [["data", "info", "digits"],
                                  # printed before the command's own guard: exit 120 and
                                  # Python's "Exception ignored ... BrokenPipeError"
                                  ["--help"], ["--version"], ["train", "--help"]])
def test_a_reader_that_goes_away_is_not_an_error(unbuffered, argv):
    """``mlplab data info digits | head -1``: the pipe closes before the output is written, both
    with unbuffered output (the error comes from a print) and with Python's usual buffering (it
    comes when the buffer is written, which at exit would print a warning and exit 120)."""
    env = {**os.environ, "PYTHONPATH": pythonpath(), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    proc = subprocess.Popen([sys.executable, "-m", "mlplab", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # long before the command has imported NumPy, let alone printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and not err, err


def test_a_reader_that_goes_away_does_not_stop_the_work(tmp_path):
    """``mlplab train --verbose | head -1``: the reader leaves after the first epoch line. The
    next write raised BrokenPipeError, which ended the command on the spot with exit code 0:
    the training stopped half way and its run folder held only a checkpoint. Now the output
    goes to the null device and the run completes, as with ``>/dev/null``."""
    env = {**os.environ, "PYTHONPATH": pythonpath(), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}  # each epoch line is written at once: the first one fails
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mlplab", "train", "--dataset", "digits",
                             "--epochs", "3", "--hidden", "8", "--no-plots", "--verbose",
                             "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed", err


def test_a_broken_pipe_of_the_work_itself_is_an_error(monkeypatch, capsys):
    """Any BrokenPipeError was taken for a reader of the output that went away and ended the
    command with exit code 0: one from another pipe (a worker process that died as it was
    started) passed for success. Output readers are handled where the output is written."""
    import mlplab.exercise

    def broken(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(mlplab.exercise, "run_checks", broken)
    code, _, err = _run(["check"], capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == "mlplab check: error: [Errno 32] Broken pipe"


def _latin1_folder(tmp_path, file_name: bytes) -> bytes:
    """A folder ``caf\xe9`` (Latin-1, not UTF-8) of classes cat and dog, three 4x4 grey
    images each, named ``file_name % i``; its path as bytes."""
    from PIL import Image

    root = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    for cls in (b"cat", b"dog"):
        os.makedirs(os.path.join(root, cls))
        for i in range(3):
            Image.new("L", (4, 4), 40 * i).save(os.fsdecode(os.path.join(root, cls,
                                                                         file_name % i)))
    return root


def test_non_utf8_paths_in_reports_and_figure_titles(tmp_path):
    """A report folder or a dataset folder whose path is not UTF-8 (b"caf\\xe9"): the report's
    Markdown and HTML, which quote the command, and the sample figure, titled with the
    folder's path, failed with "'utf-8' codec can't encode character '\\udce9'" (the report
    after report.json and its figures were already in place) and "set_text(): incompatible
    function arguments". The byte is written as \\xe9."""
    root = _latin1_folder(tmp_path, b"%d.png")
    env = {**os.environ, "PYTHONPATH": pythonpath(), "OMP_NUM_THREADS": "1",
           "MLPLAB_DATA": str(tmp_path / "cache")}
    mlplab = [sys.executable, "-m", "mlplab"]
    res = subprocess.run([*mlplab, "data", "show", b"folder:" + root, "--val-size", "0",
                          "--test-size", "0", "--out", str(tmp_path / "show.png")],
                         env=env, capture_output=True, timeout=120)
    assert res.returncode == 0 and (tmp_path / "show.png").is_file(), res.stderr
    out = os.path.join(root, b"report")
    res = subprocess.run([*mlplab, "reproduce", "--only", "q1", "--out", out], env=env,
                         capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for name in (b"report.md", b"report.html"):
        with open(os.path.join(out, name), encoding="utf-8") as fh:
            assert "caf\\xe9" in fh.read()


def _run_with_closed(fd: int, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``mlplab ARGV`` started with file descriptor ``fd`` closed (``>&-`` or ``2>&-``)."""
    env = {**os.environ, "PYTHONPATH": pythonpath(), "OMP_NUM_THREADS": "1"}
    other = {1: "stderr", 2: "stdout"}[fd]
    return subprocess.run([sys.executable, "-m", "mlplab", *argv], env=env, cwd=cwd,
                          preexec_fn=lambda: os.close(fd), timeout=120,
                          **{other: subprocess.PIPE}, text=True)


def test_a_closed_stdout_is_not_an_error(tmp_path):
    """``mlplab check >&-``: the output goes nowhere, as with ``>/dev/null``; it used to end
    with exit code 1 and "error: 'NoneType' object has no attribute 'flush'"."""
    res = _run_with_closed(1, ["check"], tmp_path)
    assert res.returncode == 0 and not res.stderr, res.stderr


def test_a_closed_stderr_does_not_stop_training(tmp_path):
    """``mlplab train ... 2>&-``: the progress bar wrote to a stream Python had made None, and
    the run stopped before its first epoch (exit code 1, a bare config.json left)."""
    res = _run_with_closed(2, ["train", "--dataset", "digits", "--epochs", "1", "--no-plots",
                               "--out", "run"], tmp_path)
    assert res.returncode == 0 and "run folder: run" in res.stdout, res.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"


def test_non_utf8_names_through_the_cli(tmp_path):
    """A folder whose path is not UTF-8 works; a class folder whose name is not UTF-8 is a
    one-line error (the name becomes a label in files and reports)."""
    root = _latin1_folder(tmp_path, b"\xff%d.png")
    env = {**os.environ, "PYTHONPATH": pythonpath(), "MLPLAB_DATA": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "mlplab", "data", "info", "folder:" + os.fsdecode(root),
           "--val-size", "0", "--test-size", "0"]
    res = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert res.returncode == 0 and b"cat" in res.stdout, res.stderr
    os.rename(os.path.join(root, b"dog"), os.path.join(root, b"d\xf6g"))
    res = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == 1 and "is not valid UTF-8" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["tune", "--dataset", "digits", "--trials", "1"],
    ["torch", "train", "--dataset", "digits", "--epochs", "1"],
    ["torch", "depth", "--dataset", "digits", "--epochs", "1"],
    ["reproduce", "--only", "q1"],
], ids=lambda argv: " ".join(argv[:2]))
def test_a_dangling_runs_link_is_named_by_every_command(argv, tmp_path, monkeypatch, capsys):
    """``runs`` as a link whose target is gone (a scratch disk not mounted): ``mlplab train``
    said so, but tune, torch train / depth and reproduce, which put their default folders
    there too, said mkdir's "File exists", which names neither the link nor its target."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").symlink_to(tmp_path / "gone")
    code, _, err = _run(argv, capsys)
    _skip_without_torch(argv, err)
    _assert_one_line_error(err, code, 1, argv)
    # (torch train and depth claim their default folder first, as mlplab train does, and say
    # so in its words)
    assert any(f"runs is a link to {tmp_path / 'gone'}, which does not exist; {what}" in err
               for what in ("choose another --out.", "give --out a folder you can write to.")), err
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("argv,what", [
    (["train", "--dataset", "digits", "--epochs", "1", "--out", "loop1"],
     "choose another --out."),
    (["train", "--resume", "loop1"], "pass a run folder written by mlplab train."),
    (["train", "--like", "loop1", "--out", "new"], "pass a run folder written by mlplab train."),
    (["evaluate", "loop1"], "pass a run folder written by mlplab train."),
    (["runs", "loop1"], "pass the folder that holds the run folders"),
], ids=lambda a: " ".join(a[:2]) if isinstance(a, list) else None)
def test_a_loop_of_links_is_named_as_one(argv, what, tmp_path, monkeypatch, capsys):
    """loop1 -> loop2 -> loop1 was "loop1 is a link to loop2, which does not exist", though
    loop2 is there: a loop of links, named with its links and what to do."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    code, _, err = _run(argv, capsys)
    _assert_one_line_error(err, code, 1, argv)
    assert "loop1 is a loop of symbolic links (loop1 -> loop2 -> loop1; fix or remove one of " \
           f"them); {what}" in err, err


#: a link's target past any file system's limit on a name (255 bytes), and how it is shown
_TOO_LONG = "x" * 300
_TOO_LONG_SHOWN = f"{'x' * 40}...[300 characters]"
_LINK_TROUBLE = {
    "long": f"long is a link to a name too long to follow ({_TOO_LONG_SHOWN}; fix or remove the "
            "link)",
    "loop": "loop is a loop of symbolic links (loop -> loop; fix or remove one of them)",
}


@pytest.mark.parametrize("argv,what", [
    (["runs", "{}"], "pass the folder that holds the run folders"),
    (["evaluate", "{}"], "pass a run folder written by mlplab train."),
    (["predict", "{}", "x.png"], "pass a run folder written by mlplab train."),
    (["train", "--resume", "{}"], "pass a run folder written by mlplab train."),
    (["torch", "train", "--resume", "{}"], "pass a run folder written by mlplab torch train."),
    (["train", "--dataset", "digits", "--epochs", "1", "--out", "{}"], "choose another --out."),
], ids=lambda a: " ".join(a[:2]) if isinstance(a, list) else None)
@pytest.mark.parametrize("link", ["long", "loop"])
@pytest.mark.parametrize("below", [False, True], ids=["the folder", "a folder above"])
def test_a_folder_through_a_link_that_cannot_be_followed_is_said_so(
        argv, what, link, below, tmp_path, monkeypatch, capsys):
    """A run folder (or --out) that is, or lies under, a link to a name too long: Python's
    "File name too long" after a short name, which said neither which link nor what was wrong
    with it (and, under a loop of links, "no such folder" or "no runs yet", which is not so).
    Now the link is named, with what is wrong, then what to do."""
    monkeypatch.chdir(tmp_path)
    os.symlink(_TOO_LONG, "long")
    os.symlink("loop", "loop")
    given = f"{link}/run" if below else link
    argv = [a.replace("{}", given) for a in argv]
    code, _, err = _run(argv, capsys)
    _skip_without_torch(argv, err)
    _assert_one_line_error(err, code, 1, argv)
    trouble = _LINK_TROUBLE[link]
    if "--out" in argv:  # (the folder it writes: "cannot write to --out long/run: long is ...")
        assert f"error: cannot write to --out {given}: {trouble}; {what}" in err, err
    elif below:
        assert f"error: {given} cannot be reached: {trouble}; {what}" in err, err
    else:
        assert f"error: {trouble}; {what}" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("marker", ["report.json", "depth.json", "depth-config.json",
                                    "summary.json"])
@pytest.mark.parametrize("link", ["long", "loop"])
def test_a_marker_that_cannot_be_looked_at_leaves_the_hint_out(marker, link, tmp_path,
                                                                 monkeypatch, capsys):
    """The hint of what another command's folder is (a report's, a depth study's, a tuning's),
    where its marker file is a link to a name too long: evaluate, predict and both resumes
    ended with "FOLDER/report.json: File name too long", not the error the hint was to follow
    (a loop of links was quietly no marker); both now leave the hint out."""
    from mlplab.runs.finished import other_output_hint

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    os.symlink(_TOO_LONG if link == "long" else marker, folder / marker)
    assert other_output_hint(folder) is None
    for argv, error in (
            (["evaluate", "out"], "out has no model.npz; pass a run folder written by mlplab "
                                  "train."),
            (["predict", "out", "x.png"], "out has no model.npz; pass a run folder written by "
                                          "mlplab train."),
            (["train", "--resume", "out"], "out is not a run folder (no config.json)."),
            (["torch", "train", "--resume", "out"], "out is not a run folder (no config.json)."),
    ):
        code, _, err = _run(argv, capsys)
        if argv[0] == "torch" and not HAVE_TORCH:
            continue
        _assert_one_line_error(err, code, 1, argv)
        assert err.rstrip().endswith(f"error: {error}"), (argv, err)
    # another marker that can be read still gives its hint
    (folder / ("depth.json" if marker != "depth.json" else "report.json")).write_text("{}")
    assert other_output_hint(folder).startswith("it is a ")


@pytest.mark.parametrize("name", ["model.npz", "metrics.json", "config.json"])
@pytest.mark.parametrize("link", ["long", "loop"])
def test_a_run_file_that_is_a_link_leading_nowhere_is_named(name, link, tmp_path, monkeypatch,
                                                            capsys):
    """A run's own file that is a loop of links or a link to a name too long: evaluate said
    the run "has no model.npz" (a loop) or "RUN/model.npz: File name too long", --resume "not
    a run folder (no config.json)", and train --out into it trained, then stopped on the
    link or wrote over it. Each now names the link and what is wrong with it."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--out",
                 "run", "--no-plots", "--quiet"]) == 0
    (run / name).unlink()
    os.symlink(_TOO_LONG if link == "long" else name, run / name)
    trouble = f"run/{name} is " + (
        f"a link to a name too long to follow ({_TOO_LONG_SHOWN}; fix or remove the link)"
        if link == "long" else
        f"a loop of symbolic links (run/{name} -> {name}; fix or remove one of them)")
    capsys.readouterr()
    commands = [["evaluate", "run"],
                ["train", "--dataset", "digits", "--epochs", "1", "--out", "run"]]
    if HAVE_TORCH:  # (its own check of a new run's folder)
        commands.append(["torch", "train", "--dataset", "digits", "--epochs", "1", "--out",
                         "run"])
    # (the resume of a run whose model.npz is lost is refused as a completed run's, rightly)
    commands.append(["predict", "run", "x.png"] if name == "model.npz" else
                    ["train", "--resume", "run"])
    for argv in commands:
        code, _, err = _run(argv, capsys)
        _assert_one_line_error(err, code, 1, argv)
        assert f"error: {trouble}" in err, (argv, err)
        if "--out" in argv:
            assert err.rstrip().endswith("; choose another --out."), err
    assert os.readlink(run / name) == (_TOO_LONG if link == "long" else name)  # left as it was


@pytest.mark.parametrize("torch", [False, True], ids=["train", "torch train"])
def test_a_checkpoint_that_is_a_loop_of_links_is_said_not_trained_over(torch, tmp_path,
                                                                        monkeypatch, capsys):
    """``--resume`` of a killed run whose checkpoint is a loop of links: pathlib's is_file()
    answered False, and the run trained again from its first epoch as if it had none."""
    if torch and not HAVE_TORCH:
        pytest.skip("mlplab torch train needs PyTorch")
    monkeypatch.chdir(tmp_path)
    command = ["torch", "train"] if torch else ["train"]
    assert main([*command, "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--out",
                 "run", "--no-plots", "--quiet"]) == 0
    checkpoint = "checkpoint.pt" if torch else "checkpoint.npz"
    for name in ("model.npz", "model.pt", "metrics.json", checkpoint):  # killed, as it were
        (tmp_path / "run" / name).unlink(missing_ok=True)
    os.symlink(checkpoint, tmp_path / "run" / checkpoint)
    capsys.readouterr()
    code, _, err = _run([*command, "--resume", "run"], capsys)
    _assert_one_line_error(err, code, 1, command)
    assert err.rstrip().endswith(
        f"error: run/{checkpoint} is a loop of symbolic links (run/{checkpoint} -> "
        f"{checkpoint}; fix or remove one of them); if the checkpoint is removed, --resume "
        "trains the run again from its first epoch."), err
    assert not (tmp_path / "run" / "model.npz").exists()

@pytest.mark.skipif(not HAVE_TORCH, reason="mlplab torch depth needs PyTorch")
def test_a_depth_study_file_that_is_a_link_leading_nowhere_refuses_the_folder(
        tmp_path, monkeypatch, capsys):
    """``mlplab torch depth --out D`` where D/depth.json is a loop of links: the study ran,
    then wrote its depth.json over the link; the folder is refused before it starts."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study").mkdir()
    os.symlink("depth.json", tmp_path / "study" / "depth.json")
    argv = ["torch", "depth", "--dataset", "digits", "--epochs", "1", "--out", "study"]
    code, _, err = _run(argv, capsys)
    _assert_one_line_error(err, code, 1, argv)
    assert err.rstrip().endswith(
        "error: study/depth.json is a loop of symbolic links (study/depth.json -> depth.json; "
        "fix or remove one of them); choose another --out."), err
    assert sorted(os.listdir(tmp_path / "study")) == ["depth.json"]


def test_a_link_to_a_name_too_long_is_said_so(tmp_path):
    """What each helper says of a link to a name too long, at the end of a chain of links,
    and of a path below a loop: not "which does not exist", nor nothing."""
    from mlplab.io import broken_link, is_file, is_folder, nothing_at, path_trouble

    os.symlink(_TOO_LONG, tmp_path / "long")
    os.symlink("long", tmp_path / "chain")
    os.symlink("loop", tmp_path / "loop")
    assert broken_link(tmp_path / "chain") == \
        f"{tmp_path / 'chain'} is a link to a name too long to follow (long -> " \
        f"{_TOO_LONG_SHOWN}; fix or remove the link)"
    assert path_trouble(tmp_path / "loop" / "a" / "b") == \
        f"{tmp_path / 'loop' / 'a' / 'b'} cannot be reached: {tmp_path / 'loop'} is a loop " \
        f"of symbolic links ({tmp_path / 'loop'} -> loop; fix or remove one of them)"
    assert path_trouble(tmp_path / "nosuch" / "a") is None
    assert nothing_at(tmp_path / "nosuch" / "a")
    for path in (tmp_path / "long", tmp_path / "loop" / "a"):
        assert not nothing_at(path) and not is_folder(path)
        with pytest.raises(OSError):
            is_file(path)
    assert not is_file(tmp_path / "nosuch") and not is_folder(tmp_path / "nosuch")


def test_runs_of_a_folder_below_a_loop_is_no_folder_not_yet_made(tmp_path, monkeypatch,
                                                                 capsys):
    """``mlplab runs loop/x``, under a loop of links: "no runs yet in loop/x; train one with
    mlplab train --out loop/x/first", which cannot be done; a folder not made yet is still
    one with no runs yet."""
    monkeypatch.chdir(tmp_path)
    os.symlink("loop", "loop")
    code, _, err = _run(["runs", "loop/x"], capsys)
    _assert_one_line_error(err, code, 1, "runs")
    assert "loop/x cannot be reached: loop is a loop of symbolic links" in err, err
    code, _, err = _run(["runs", "nosuch"], capsys)
    assert code == 0 and err.startswith("no runs yet in nosuch;"), err


def test_why_no_folder_names_what_stands_in_the_way(tmp_path):
    """A file anywhere on the path, or a dangling link, is named; otherwise the system's
    reason is kept (mkdir's own words for a file on the path are "Not a directory")."""
    from mlplab.io import why_no_folder

    afile = tmp_path / "afile"
    afile.write_text("")
    for path in (afile, afile / "sub", afile / "sub" / "deeper"):
        with pytest.raises(OSError) as exc:
            path.mkdir(parents=True)
        assert why_no_folder(path, exc.value) == f"{afile} is a file, not a folder"
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(OSError) as exc:
        (tmp_path / "link" / "x").mkdir(parents=True)
    assert why_no_folder(tmp_path / "link" / "x", exc.value) == \
        f"{tmp_path / 'link'} is a link to {tmp_path / 'gone'}, which does not exist"
    # through a link that exists to one that does not: each named (not "b, which does not
    # exist" while b is there)
    (tmp_path / "chain").symlink_to("link")
    assert why_no_folder(tmp_path / "chain", OSError(17, "File exists")) == \
        f"{tmp_path / 'chain'} is a link to link -> {tmp_path / 'gone'}, which does not exist"
    assert why_no_folder(tmp_path / "new", PermissionError(13, "Permission denied")) == \
        "Permission denied"


def test_a_system_error_names_its_path_first(tmp_path, monkeypatch, capsys):
    """An --out longer than the file system allows was "[Errno 36] File name too long: 'aaa...'",
    Python's form: the errno, then the path quoted at the end. It is "PATH: reason" now."""
    monkeypatch.chdir(tmp_path)
    long = "a" * 300
    code, _, err = _run(["train", "--dataset", "digits", "--epochs", "1", "--out", long], capsys)
    _assert_one_line_error(err, code, 1, "train")
    assert err.rstrip().endswith(f"error: {long}: File name too long") and "Errno" not in err
    from mlplab.cli import _error_text

    with pytest.raises(OSError) as exc:
        os.rename(tmp_path / "missing", tmp_path / "b")
    assert _error_text(exc.value) == \
        f"{tmp_path / 'missing'} -> {tmp_path / 'b'}: No such file or directory"
    assert _error_text(OSError("a message of mlplab's own")) == "a message of mlplab's own"


@pytest.mark.parametrize("text,value", [("0", 0), ("4294967295", 2**32 - 1), ("-1", None),
                                        ("4294967296", None), ("1.5", None)])
def test_seed_flags_take_exactly_numpys_seed_range(text, value):
    """A --seed of the weights and batches is a NumPy seed, 0 to 2**32 - 1 inclusive: 2**32
    would pass the parse and fail later (or, with numbers taken modulo 2**32, alias seed 0).
    Seeds of the splits stop one lower (below)."""
    from mlplab.cli import seed_arg

    if value is None:
        with pytest.raises(argparse.ArgumentTypeError):
            seed_arg(text)
        return
    assert seed_arg(text) == value
    np.random.RandomState(value)  # the reference: NumPy takes it
    if value == 2**32 - 1:
        with pytest.raises(ValueError):
            np.random.RandomState(value + 1)


def test_split_seeds_stop_one_below_numpys_range():
    """A seed of the dataset's splits draws the validation split with seed + 1, so load_dataset
    takes at most 2**32 - 2 (its flags are refused above that: USAGE)."""
    from mlplab.cli import split_seed_arg
    from mlplab.data import load_dataset

    assert split_seed_arg(str(2**32 - 2)) == 2**32 - 2
    assert len(load_dataset("digits", seed=2**32 - 2).y_val) == 180  # the reference takes it
    with pytest.raises(argparse.ArgumentTypeError, match="between 0 and 2\\*\\*32 - 2"):
        split_seed_arg(str(2**32 - 1))


@pytest.mark.parametrize("argv", [[], ["torch"], ["data"]])
def test_a_command_without_its_action_prints_the_help_and_exits_2(argv, capsys):
    """`mlplab`, `mlplab torch` and `mlplab data` alone did nothing: the help and exit 2, a
    usage error, not a success a script would take for work done."""
    assert main(argv) == 2
    assert capsys.readouterr().out.startswith(f"usage: mlplab {' '.join(argv)}".rstrip())


def test_a_dataset_error_inside_an_option_check_stays_a_runtime_error(monkeypatch, capsys):
    """usage_errors turns a ValueError of an option check into exit 2, but a DatasetError (a
    ValueError too) is about the data, not the arguments: exit 1, its message as it is."""
    import mlplab.runs
    from mlplab.data import DatasetError

    def build_config(*args, **kwargs):
        raise DatasetError("the files of digits are corrupt.")

    monkeypatch.setattr(mlplab.runs, "build_config", build_config)
    assert main(["train", "--epochs", "1"]) == 1
    assert capsys.readouterr().err == "mlplab train: error: the files of digits are corrupt.\n"


def test_help_and_docs_state_every_exit_status(capsys):
    """`mlplab --help` ends with the exit statuses, and docs/reliability.md has a row for each;
    the statuses are those main() gives (1, 2, and the shell's 128 + SIGINT or SIGTERM)."""
    import re
    import signal

    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    epilog = " ".join(out[out.index("exit status:"):].split())
    for said in ("0 success;", "1 a failed command", "2 a usage error",
                 f"{128 + signal.SIGINT} Ctrl-C;", f"{128 + signal.SIGTERM} SIGTERM"):
        assert said in epilog, epilog
    docs = (ROOT / "docs" / "reliability.md").read_text()
    section = docs[docs.index("### Exit statuses"):]
    section = section[:section.index("\n## ")]
    assert re.findall(r"^\| (\d+) \|", section, re.M) == ["0", "1", "2", "130", "143"]


def test_a_flag_several_commands_share_reads_alike_in_their_usage():
    """``--threads N`` in every command but reproduce's ``--threads THREADS``, gradcheck's
    ``--dropout DROPOUT`` beside the others' ``--dropout P``: the same value, named two ways."""
    import argparse
    from collections import defaultdict

    from mlplab.cli import build_parser

    def walk(parser, name):
        yield name, parser
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
                   None)
        for child_name, child in (sub.choices.items() if sub is not None else ()):
            yield from walk(child, f"{name} {child_name}")

    shown = defaultdict(dict)
    for name, parser in walk(build_parser(), "mlplab"):
        for action in parser._actions:
            if action.option_strings and action.nargs != 0:
                form = parser._get_formatter()._format_args(action, action.dest.upper())
                for option in action.option_strings:
                    shown[option][name] = form
    # values that differ by command: another set of choices, a file or a folder, train's
    # example of sizes
    differ = {"--init", "--out", "--resume", "--split", "--hidden"}
    assert {o: f for o, f in shown.items() if o not in differ and len(set(f.values())) > 1} == {}
    assert shown["--hidden"]["mlplab gradcheck"] == shown["--hidden"]["mlplab torch train"]


@pytest.mark.parametrize("windows", [True, False])
def test_a_reader_gone_on_windows_is_told_by_its_einval(monkeypatch, tmp_path, windows):
    """On Windows a write or flush to a pipe whose reader closed it raises OSError EINVAL, not
    BrokenPipeError: taken for an error of the work, it ended the command there. Elsewhere
    EINVAL is a real error and still raises."""
    import errno

    from mlplab.cli import _console

    class ClosedPipe:  # a text stream whose reader went away, as Windows reports it
        def __init__(self, fh):
            self.fh, self.calls = fh, 0

        def fileno(self):
            return self.fh.fileno()

        def write(self, text):
            self.calls += 1
            if self.calls == 1:
                raise OSError(errno.EINVAL, "Invalid argument")
            return self.fh.write(text)

    monkeypatch.setattr(_console, "_WINDOWS", windows)
    with open(tmp_path / "out.txt", "w") as fh:
        stream = _console._ReaderMayLeave(ClosedPipe(fh))
        if not windows:
            with pytest.raises(OSError, match="Invalid argument"):
                stream.write("epoch 1\n")
            return
        assert stream.write("epoch 1\n") == len("epoch 1\n")  # written on, to the null device
        assert stream.write("epoch 2\n") == len("epoch 2\n")
    assert (tmp_path / "out.txt").read_text() == ""  # the descriptor now goes to the null device


def test_a_mistyped_folder_is_answered_with_the_folder_it_most_likely_meant(
        run_dir, tmp_path, capsys):
    typo = f"{run_dir}s"  # runs for run: one character added
    img = _fill(["IMG"], tmp_path, run_dir)[0]
    hint = f"no such folder (did you mean {run_dir}?)"
    for argv, message in [
            (["evaluate", typo], f"{typo}: {hint}; pass a run folder written by mlplab train."),
            (["predict", typo, img], f"{typo}: {hint}; pass a run folder"),
            (["train", "--like", typo], f"{typo}: {hint}; pass a run folder"),
            (["train", "--resume", typo], f"no run to resume in {typo}: {hint}, so nothing was "
                                          "saved (stopped as it began")]:
        code, _, err = _run(argv, capsys)
        _assert_one_line_error(err, code, 1, argv)
        assert message in err, err
    (tmp_path / "images" / "cat").mkdir(parents=True)  # folder:PATH with two letters swapped
    argv = ["train", "--dataset", f"folder:{tmp_path / 'imaegs'}", "--out", str(tmp_path / "o")]
    code, _, err = _run(argv, capsys)
    _assert_one_line_error(err, code, 1, argv)
    assert f"imaegs: no such folder (did you mean {tmp_path / 'images'}?); folder:PATH needs " \
           "a folder with one sub-folder per class." in err, err


def test_the_folder_a_typo_meant_is_one_edit_away_or_two_in_a_long_name(tmp_path, monkeypatch):
    from mlplab._text import near_folder, no_such_folder

    for name in ("runs", "fm2", "fm1", "experiment", "ab", "nowhere-else"):
        (tmp_path / name).mkdir()
    (tmp_path / "file1").write_text("")  # a file is no folder to mean
    monkeypatch.chdir(tmp_path)
    guesses = {typo: near_folder(typo) for typo in (
        "rusn", "run", "fm3", "fm", "file", "exprmnet", "exprimnet", "expriment", "a", "ac",
        "other", "nowhere", os.path.join("runs", "x"), os.path.join("missing", "runs"))}
    assert guesses == {
        "rusn": "runs", "run": "runs",  # a swap; one dropped
        "fm3": "fm1",  # fm1 and fm2 are both one edit away: the first by name
        "fm": None,  # a name of two characters: too short to tell a typo from another name
        "file": None,  # file1 is a file
        "exprmnet": None, "exprimnet": "experiment", "expriment": "experiment",  # 3, 2, 1
        "a": None, "ac": None, "other": None, "nowhere": None,  # (difflib: nowhere-else)
        os.path.join("runs", "x"): None, os.path.join("missing", "runs"): None}
    (tmp_path / "runs" / "first").mkdir()
    assert {typo: near_folder(typo) for typo in (  # a typo further up the path
        os.path.join("rusn", "first"), os.path.join("rusn", "frist"),
        os.path.join("rusn", "other"), os.path.join("rusn", "first", "x"),
        os.path.join("expriment", "rusn", "frist"))} == {
        os.path.join("rusn", "first"): os.path.join("runs", "first"),
        os.path.join("rusn", "frist"): os.path.join("runs", "first"),  # two typos, one each
        os.path.join("rusn", "other"): None,  # runs/ holds nothing like it
        os.path.join("rusn", "first", "x"): None,  # runs/first/ holds no folder at all
        os.path.join("expriment", "rusn", "frist"): None}  # experiment/ holds no runs/
    assert near_folder(tmp_path / "rusn" / "first") == str(tmp_path / "runs" / "first")
    assert near_folder(tmp_path / "expriment") == str(tmp_path / "experiment")  # as it was given
    assert no_such_folder("rusn") == "no such folder (did you mean runs?)"
    assert no_such_folder("elsewhere") == "no such folder"


def _in_a_removed_folder(folder: Path):
    """A ``preexec_fn`` that starts the command in ``folder`` and removes it first, as ``cd
    folder`` in one shell and ``rm -r folder`` in another (or a CI workspace wiped) leave it."""
    def enter_and_remove() -> None:
        os.chdir(folder)
        os.rmdir(folder)
    return enter_and_remove


@pytest.mark.parametrize("command", [
    ["train", "--dataset", "digits", "--hidden", "8", "--epochs", "1"],
    ["tune", "--dataset", "digits", "--trials", "1"],
    ["runs"],
])
def test_a_removed_current_folder_is_said_for_the_default_out(tmp_path, command):
    """With the current folder removed the default (relative) output folder failed as
    "mlplab tune: error: [Errno 2] No such file or directory" (from resolving the study's
    path), or train's "No such file or directory" of runs/...: now both say what happened;
    and ``mlplab runs`` said "no runs yet in runs" of a folder it could not look in."""
    gone = tmp_path / "gone"
    gone.mkdir()
    done = subprocess.run([sys.executable, "-m", "mlplab", *command], capture_output=True,
                          text=True, timeout=120, preexec_fn=_in_a_removed_folder(gone),
                          env={**os.environ, "PYTHONPATH": pythonpath()})
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mlplab {command[0]}: error: cannot ") and \
        "the current folder was removed; cd to a folder that exists" in last, done.stderr
    assert "Traceback" not in done.stderr and "Errno" not in done.stderr


def test_pytorch_in_a_removed_current_folder_is_one_line_not_a_dead_process(tmp_path):
    """``import torch`` in a removed current folder ends the process (exit status 2, "Intel
    oneMKL FATAL ERROR: Cannot load .../libtorch_cpu.so": it looked like a broken install), with
    an absolute --out too; mlplab.torch_mlp refuses first, in one line."""
    pytest.importorskip("torch")
    gone = tmp_path / "gone"
    gone.mkdir()
    done = subprocess.run([sys.executable, "-m", "mlplab", "torch", "train", "--dataset",
                           "digits", "--hidden", "8", "--epochs", "1", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
                          preexec_fn=_in_a_removed_folder(gone),
                          env={**os.environ, "PYTHONPATH": pythonpath()})
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "mlplab torch train: error: PyTorch cannot be loaded while the current folder is a "
        "removed one (its Intel oneMKL ends the process); cd to a folder that exists."), \
        done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("command", "marker"), [
    (["train"], "report.json"),
    (["train"], "depth.json"),
    (["torch", "train"], "summary.json"),
    (["torch", "depth"], "model.npz"),
    (["torch", "depth"], "report.json"),
], ids=["train-report", "train-depth", "torch-train-tuning", "depth-run", "depth-report"])
def test_another_commands_marker_that_is_a_loop_of_links_refuses_the_out(command, marker,
                                                                         tmp_path, monkeypatch,
                                                                         capsys):
    """``--out D`` where D holds another command's marker file as a loop of links: pathlib's
    is_file() answered False, so the folder was taken for a fresh one and the new run or depth
    study was written beside it. It is refused, naming the link, before anything is written."""
    if command[0] == "torch" and not HAVE_TORCH:
        pytest.skip("mlplab torch needs PyTorch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    os.symlink(marker, tmp_path / "out" / marker)
    argv = [*command, "--dataset", "digits", "--epochs", "1", "--out", "out"]
    code, _, err = _run(argv, capsys)
    _assert_one_line_error(err, code, 1, argv)
    assert err.rstrip().endswith(
        f"error: out/{marker} is a loop of symbolic links (out/{marker} -> {marker}; fix or "
        "remove one of them); choose another --out."), err
    assert os.listdir(tmp_path / "out") == [marker]


@pytest.mark.parametrize("name", ["checkpoint.npz", "metrics.json", "model.npz"])
def test_a_run_file_that_is_a_loop_of_links_is_not_nothing_saved(name, tmp_path):
    """A failed new run removes its config.json only when it saved nothing; a checkpoint,
    results or model there as a loop of links is something (exists() answered False)."""
    from mlplab.runs.training import _saved_nothing

    assert _saved_nothing(tmp_path)
    os.symlink(name, tmp_path / name)
    assert not _saved_nothing(tmp_path)
