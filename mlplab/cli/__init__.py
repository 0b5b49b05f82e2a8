"""The ``mlplab`` command line: a thin shell over the library.

Each sub-module in ``COMMAND_MODULES`` defines ``register(subparsers)``, adding its commands with a
``func(args) -> int`` default. Errors the user can fix (bad input, missing files, diverged
training) end with a one-line message and exit code 1; usage errors (argparse's, and option
values that the library refuses, raised as :class:`UsageError` or inside :func:`usage_errors`)
exit with 2; Ctrl-C with 130 and SIGTERM with 143 (:func:`mlplab.interrupts.exit_status`); a
Python traceback is shown only with ``--debug``. :data:`EXIT_STATUSES` says so in ``mlplab
--help``. The user's plugins (``--plugin``, ``MLPLAB_PLUGINS``: :mod:`mlplab.cli.plugins`) are
imported before the parser is built; one that is missing or raises is a one-line error too (exit
code 1).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import importlib
import json
import os
import signal
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, TextIO

from mlplab import __version__
from mlplab._machine import memory_refused, out_of_memory_message
from mlplab._text import counted, duration, path_word, percent, shell_command
from mlplab.cli import _console as console

COMMAND_MODULES = ["check", "data", "train", "runs", "tune", "torch", "reproduce"]

#: the epilog of ``mlplab --help``: every command's exit statuses (docs/reliability.md has them too)
EXIT_STATUSES = (
    "exit status: 0 success; 1 a failed command, or files, data or checks that said no (one "
    "line says what to do); 2 a usage error, a command line that cannot work whatever the "
    "files; 130 Ctrl-C; 143 SIGTERM (a training run stopped by either keeps its last checkpoint "
    "and says how to resume). Details: docs/reliability.md of the mlplab source, \"Exit "
    "statuses\"."
)


class CLIError(Exception):
    """An error to report to the user as one line (exit code 1)."""


class UsageError(CLIError, ValueError):
    """Arguments that cannot work (a value out of range, flags that exclude each other): one
    line and exit code 2, like argparse's own errors."""


class RunNotSaved(CLIError):
    """An error (``reason``) that ended a training run or depth study after it had saved some
    of its progress (a checkpoint, a finished network) but before its results: said as the
    reason followed by ``kept`` (:data:`NOT_SAVED` for a run) and ``resume``, the ``Continue
    with: ...`` line that finishes it from what it saved (the reason alone left the user to
    believe it lost, or to rerun the command, which the folder refuses)."""

    def __init__(self, reason: Exception, resume: str, kept: str | None = None) -> None:
        super().__init__(str(reason))
        self.reason = reason
        self.resume = resume
        self.kept = NOT_SAVED if kept is None else kept


#: what :class:`RunNotSaved` adds to a run's reason, before the resume line
NOT_SAVED = "the run was not saved, but its last checkpoint is kept."


def flag(option: str) -> str:
    """The command-line flag of an option name: ``label_smoothing`` -> ``--label-smoothing``."""
    return "--" + option.replace("_", "-")


@contextlib.contextmanager
def usage_errors(options: Iterable[str] = ()) -> Iterator[None]:
    """Turn the ``ValueError`` of an option check inside the block into a :class:`UsageError`.
    A ``DatasetError`` (a problem with the data, not the arguments) stays a runtime error.
    A message that starts with one of ``options`` (library names such as ``label_smoothing``)
    starts with its flag instead (``--label-smoothing``), the name the user typed."""
    from mlplab.data import DatasetError

    try:
        yield
    except (UsageError, DatasetError):
        raise
    except ValueError as exc:
        message = str(exc)
        first, _, rest = message.partition(" ")
        if first in set(options):
            message = f"{flag(first)} {rest}"
        raise UsageError(message) from exc


def check_figure_file(path: str | os.PathLike, option: str, example: str) -> None:
    """Refuse, before any work, an image file option (``--out`` of ``mlplab data show``,
    ``--plot`` of ``mlplab runs``) that names a folder, a format other than PNG, PDF or SVG, or
    lies under a file: else Matplotlib's list of its 16 formats, or the name of the temporary
    file written first, came after the work was done. The format is the argument's own fault
    (exit 2); a folder or file in the way is the file system's, exit 1 as for every command's
    output folder (``mlplab train --out FILE``)."""
    from pathlib import Path

    from mlplab.io import check_out_folder

    out = Path(path)
    if out.is_dir():
        raise CLIError(f"{option} {out} is a folder; give an image file name, e.g. "
                       f"{out / example}.")
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"{option} {out}: write a .png, .pdf or .svg file.")
    check_out_folder(out, out.parent, error=CLIError, name=option)


def figure_not_written(path: str | os.PathLike, option: str, exc: OSError) -> NoReturn:
    """Raise the error for an image file option's file that could not be written (``exc``): a
    full disk as itself (its message says to free space); a read-only folder, or a dangling link
    above it, said of the option, not of the temporary file written first."""
    from pathlib import Path

    from mlplab.io import DiskFullError, is_disk_full, why_no_folder

    if isinstance(exc, DiskFullError) or is_disk_full(exc):
        raise exc
    raise CLIError(f"cannot write {path}: {why_no_folder(Path(path).parent, exc)}; choose "
                   f"another {option}.") from exc


def note_if_at_chance(train_accuracy: float | None, num_classes: int, causes: str) -> None:
    """After a finished run whose training accuracy is at chance (within 2 points of 1/classes),
    say on stderr that the network did not learn, with ``causes``: a 10% run is otherwise read as
    a result, and a dead net is also the slow kind (its weights sink into subnormal floats)."""
    if train_accuracy is None or num_classes < 2 or train_accuracy > 1 / num_classes + 0.02:
        return
    print(f"note: training accuracy {percent(train_accuracy)} is chance level for "
          f"{num_classes} classes: the network did not learn. {causes}", file=sys.stderr)


def mlplab_words(args: argparse.Namespace) -> list[str]:
    """``mlplab`` with the ``--plugin`` options this command was given, as words (each a path
    word) that start a command a message advises: :func:`mlplab_command`."""
    words = ["mlplab"]
    for name in getattr(args, "plugin", None) or []:
        words += ["--plugin", path_word(name)]
    return words


def mlplab_command(args: argparse.Namespace) -> str:
    """``mlplab`` with the ``--plugin`` options this command was given, as the start of a
    command that a message advises (``next: ...``, ``Continue with: ...``): a run that uses a
    plugin's activation or optimiser is refused by a command without it (``MLPLAB_PLUGINS``
    lives in the environment, which the next command shares)."""
    return shell_command(mlplab_words(args))


def continue_with(run: str | os.PathLike[str], args: argparse.Namespace,
                  command: Sequence[str], device: str | None = None) -> str:
    """The ``Continue with: ...`` line of ``mlplab train``, ``torch train`` and ``torch
    depth`` for the run or study in ``run``: ``command`` (its words) with ``--resume``, and
    ``device``, this command's ``--threads`` (the resume is bit-identical only with them) and
    its ``--no-plots`` (pasted without it, the resume drew the figures the user had turned off;
    a command without ``--plots``, torch depth, has none)."""
    from mlplab.runs.files import resume_command

    return "Continue with: " + resume_command(run, getattr(args, "plots", True), command,
                                              args.threads, device)


def interrupted_line(saved: str, goes_on: str, resume: str) -> str:
    """The last line of ``mlplab train``, ``torch train`` and ``torch depth`` for a run or
    study that Ctrl-C or SIGTERM stopped and that saved what it had: ``saved`` (what is on
    disk now), ``goes_on`` (where ``--resume`` picks up: the three keep different checkpoints)
    and ``resume``, the :func:`continue_with` line; one shape for the three, which each said in
    words of its own."""
    return f"interrupted; saved: {saved}; --resume {goes_on}. {resume}"


#: ``goes_on`` of :func:`interrupted_line` where no checkpoint was written yet
STARTS_AGAIN = "starts it again from its first epoch"


def print_run_result(metrics: Mapping[str, Any], out: str | os.PathLike[str],
                     as_json: bool = False, command: str = "mlplab",
                     stopped: str | None = None) -> None:
    """The last lines of ``mlplab train`` and ``mlplab torch train`` (and their ``--resume``),
    alike for both: the saved model's validation accuracy, the best epoch's and (when measured)
    its test accuracy; on the next line its training accuracy and how long it trained; the run
    folder; or, ``as_json``, ``metrics`` (as in ``metrics.json``) with the folder under
    ``"run"``, the key ``mlplab runs --json`` gives it. ``command`` starts the commands it
    advises (:func:`mlplab_command`). ``stopped``, for a run that Ctrl-C or SIGTERM stopped,
    is the line that says so and how to continue it (``interrupted; ... Continue with: ...``),
    printed last on stderr in place of the ``next:`` lines: those advised evaluating the
    half-trained model first, above the resume."""
    if as_json:
        print(json.dumps({"run": str(out), **metrics}, indent=2))
        if stopped is not None:
            print(stopped, file=sys.stderr)
        return
    m = metrics
    line = f"val accuracy {percent(m['val_accuracy'])}" if m["val_accuracy"] is not None else \
        "no validation split"
    if m.get("best_val_accuracy") is not None and m.get("best_epoch") is not None:
        # the epoch-end figure: the saved model's differs without early stopping's restore
        line += f" (best {percent(m['best_val_accuracy'])} at epoch {m['best_epoch']})"
    if m.get("test_accuracy") is not None:
        line += f", test accuracy {percent(m['test_accuracy'])}"
    # a run of --epochs 40 that --patience ended said only "after 6 epochs", as if it had been
    # asked for 6 (mlplab runs lists it as "6 (early)")
    early = " (stopped early)" if m.get("stopped_early") else ""
    # the held-out splits' figures, then the training: on one line they made 103 columns, 126
    # with --eval-test; each of the two stays within 88
    print(line)
    print(f"train accuracy {percent(m['train_accuracy'])} after "
          f"{counted(m['epochs'], 'epoch')}{early}, {counted(m['iterations'], 'iteration')}, "
          f"{duration(m['seconds'])}")
    print(f"run folder: {out}")
    if stopped is not None:
        sys.stdout.flush()  # before the stderr line, also when stdout is a file or a pipe
        print(stopped, file=sys.stderr)
        return
    from mlplab.runs.files import RUNS_ROOT

    run = shell_command([path_word(out)])
    # where `mlplab runs` looks, unless told: a run elsewhere was "no runs yet"
    parent = Path(out).parent
    where = "" if parent == Path(RUNS_ROOT) else f" {shell_command([path_word(parent)])}"
    # evaluate's default split is val: a run without one is evaluated on another (plain
    # `mlplab evaluate RUN` was advised here, and refused)
    split = "" if m.get("val_size", 1) else " --split test" if m.get("test_size") else \
        " --split train"
    # what a newcomer does next, which the output did not say: a command a line (on one line
    # they made 134 columns for a run folder runs/a, 155 for a default one)
    print_next([f"{command} evaluate {run}{split} (per class, confusion matrix)",
                f"{command} predict {run} IMAGE...",
                f"mlplab runs{where} (the runs there, side by side)"])


def print_next(commands: Sequence[str]) -> None:
    """The commands that a command's last lines advise, one a line under ``next:``, aligned so
    that each can be copied whole (``mlplab train``'s, ``torch train``'s and ``tune``'s)."""
    for i, line in enumerate(commands):
        print(("next: " if i == 0 else " " * len("next: ")) + line)


@contextlib.contextmanager
def resumable(run: str | os.PathLike[str], checkpoint: str, resume: str) -> Iterator[None]:
    """A Ctrl-C that ends training before the run in ``run`` is saved (a second one, or one while
    the results are written) leaves its last ``checkpoint``, from which ``--resume`` finishes it
    exactly: say so with the ``resume`` line (``Continue with: ...``), rather than only
    "interrupted" (as if the run were lost); and so for an error after a checkpoint
    (:func:`not_saved_advice`); ``mlplab train``'s and ``torch train``'s. The command prints
    that line for a run that stopped and was saved too, so the library's
    :class:`~mlplab.runs.RunInterruptedWarning` is not shown within the block."""
    from mlplab.runs.files import METRICS_FILE
    from mlplab.runs.training import interrupts_said_elsewhere

    try:
        with not_saved_advice(run, (checkpoint,), METRICS_FILE, resume), \
                interrupts_said_elsewhere():
            yield
    except KeyboardInterrupt:
        from mlplab.runs.files import CONFIG_FILE

        if os.path.isfile(os.path.join(run, checkpoint)):
            print(f"interrupted; {NOT_SAVED} {resume}", file=sys.stderr)
        elif os.path.isfile(os.path.join(run, CONFIG_FILE)):
            # stopped (a second Ctrl-C) before its first checkpoint: the folder keeps the run's
            # config.json, and the same command is refused ("already holds a run"); only
            # "mlplab: interrupted" was said
            print(f"interrupted before the run's first checkpoint; --resume starts it again "
                  f"from its first epoch. {resume}", file=sys.stderr)
        raise


@contextlib.contextmanager
def not_saved_advice(folder: str | os.PathLike[str], progress: Sequence[str], results: str,
                     resume: str, kept: str | None = None) -> Iterator[None]:
    """An error that ends a run or study in ``folder`` after it saved progress (one of the
    files ``progress`` names, or a file in one of the folders it names, written or replaced
    within the block) and before its ``results`` file is raised as :class:`RunNotSaved`, said
    with ``kept`` and the ``resume`` line; a usage error and a divergence (which a resume
    repeats, and the run or study records) are raised as they are."""
    from mlplab.trainer import TrainingDivergedError

    # as they were: a resume's checkpoint is there from the start, and an error before its
    # first new epoch (its data not found) is not helped by the same --resume again
    paths = [os.path.join(folder, p) for p in progress]
    before = _saved_state(paths), _file_state(os.path.join(folder, results))
    try:
        yield
    except (UsageError, TrainingDivergedError):
        raise  # a resume repeats a divergence (and the run records it); a usage error is no run's
    except Exception as exc:
        now = _saved_state(paths), _file_state(os.path.join(folder, results))
        # progress saved by this process, and no results (or divergence record) since; a
        # resume removes the earlier stop's metrics.json before it writes its own
        if _saved_since(before[0], now[0]) and now[1] in (before[1], None):
            raise RunNotSaved(exc, resume, kept) from exc
        raise


def _saved_state(paths: Sequence[str]) -> tuple[Any, ...]:
    """What tells a change to each of ``paths``: a file's :func:`_file_state`, a folder's the
    set of names and states of its files (empty if there is none); falsy where nothing is
    saved."""
    def state(path: str) -> Any:
        if not os.path.isdir(path):
            return _file_state(path)
        try:
            names = os.listdir(path)
        except OSError:
            return frozenset()
        # (not an atomic write's temporary file, which a failed write may leave)
        return frozenset((name, _file_state(os.path.join(path, name))) for name in names
                         if not name.startswith("."))

    return tuple(state(p) for p in paths)


def _saved_since(before: tuple[Any, ...], now: tuple[Any, ...]) -> bool:
    """Whether a file of :func:`_saved_state`'s was written or replaced between ``before`` and
    ``now``: one removed is no progress saved (a new depth study that cleared some of a
    diverged study's networks, then failed on one, was told to resume, which refuses it)."""
    for was, is_ in zip(before, now):
        if isinstance(is_, frozenset):  # a folder's: a file there that was not, or not so
            if is_ - (was if isinstance(was, frozenset) else frozenset()):
                return True
        elif is_ is not None and is_ != was:
            return True
    return False


def _file_state(path: str) -> tuple[int, int, int] | None:
    """What tells a rewrite of the file ``path`` (inode, mtime, size: the checkpoints and
    results are replaced atomically, a new inode each time); None if it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


@contextlib.contextmanager
def run_folder(out: str | os.PathLike | None, prefix: str = "") -> Iterator[Path]:
    """``out``, or else a default folder (``runs/<prefix>-<time>``) claimed now, so that runs
    started in the same second by other processes get folders of their own (two `mlplab torch
    train` without --out picked the same one, and the second failed); a claimed folder is
    removed again if the block fails while it is empty, with the ``runs/`` folder made for it."""
    from mlplab.io import RUNS_ROOT
    from mlplab.runs import default_run_dir

    if out is not None and os.fspath(out):
        yield Path(out)
        return
    root_made = not os.path.isdir(RUNS_ROOT)
    claimed = default_run_dir(RUNS_ROOT, claim=True, prefix=prefix)
    try:
        yield claimed
    except BaseException:
        with contextlib.suppress(OSError):
            claimed.rmdir()  # only while empty: a failure before anything was saved
            if root_made:
                claimed.parent.rmdir()  # the runs/ folder made for it, if still empty
        raise


def json_stdout(json_output: bool) -> contextlib.AbstractContextManager:
    """Around the work of a command given ``--json``: whatever it prints on the way (the epoch
    lines of ``--verbose``) goes to stderr, so that stdout is the JSON's alone and parses."""
    return contextlib.redirect_stdout(sys.stderr) if json_output else contextlib.nullcontext()


def seed_arg(text: str, split: bool = False) -> int:
    """argparse type of ``--seed``: an integer in [0, 2**32 - 1]."""
    from mlplab._validation import SPLIT_SEED_MAX  # (here: it imports NumPy; --help does not)

    top = "2**32 - 2" if split else "2**32 - 1"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= (SPLIT_SEED_MAX if split else 2**32 - 1):
        raise argparse.ArgumentTypeError(f"expected an integer between 0 and {top}; got {text!r}")
    return value


def split_seed_arg(text: str) -> int:
    """argparse type of a seed of the dataset's splits (``--data-seed``, ``mlplab data``'s
    ``--seed``): an integer in [0, 2**32 - 2], as ``load_dataset`` takes (the validation split
    is drawn with the seed + 1)."""
    return seed_arg(text, split=True)


def add_no_progress(group: argparse.ArgumentParser | argparse._ArgumentGroup,
                    what: str = "progress bars") -> None:
    """``--no-progress`` and its alias ``--quiet``, one setting (``args.progress``, False when
    either is given) in every command that shows bars: a user of one command typed the other's
    spelling and was refused. ``what``: the bars it turns off, for the help."""
    group.add_argument("--no-progress", "--quiet", dest="progress", action="store_false",
                       help=f"no {what}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlplab",
        description="Fully-connected neural networks with hand-derived backpropagation in NumPy: "
                    "check the maths, train, tune, compare with PyTorch and write up the study.",
        epilog=EXIT_STATUSES,
    )
    parser.add_argument("--version", action="version", version=f"mlplab {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show full Python tracebacks on errors")
    # read by main() before this parser is built (plugins.global_options): declared here for
    # --help and so that the parse accepts it
    parser.add_argument("--plugin", metavar="MODULE", action="append", default=[],
                        help="import MODULE first, a module name or a .py file (repeatable): "
                             "the activations and optimisers it registers become choices of "
                             "the commands and load from run folders and model files, and "
                             "its presets choices of --preset. "
                             "MLPLAB_PLUGINS=MODULE[,MODULE...] does the same for every "
                             "command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"mlplab.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mlplab.cli.{name}":
                raise
            continue
        module.register(sub)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Turn off argparse's prefix matching in ``parser`` and its sub-commands: ``mlplab torch
    depth --hidden 50`` (train's flag) was silently taken as --hidden-size, and a prefix that
    matches today becomes ambiguous when a flag is added. An unknown flag gets a 'did you mean'."""
    for p in _all_parsers(parser):
        p.allow_abbrev = False


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and its sub-commands' parsers, theirs included."""
    parsers, stack = [], [parser]
    while stack:
        p = stack.pop()
        parsers.append(p)
        sub = _subcommands(p)
        stack += list(sub.choices.values()) if sub is not None else []
    return parsers


class _Abandoned(Exception):
    """A parse of :func:`_reject_unknown_before_required` that met an error of its own."""


def _reject_unknown_before_required(parser: argparse.ArgumentParser,
                                    argv: Sequence[str]) -> None:
    """Reject unknown flags as :func:`_reject_unknown` does, before argparse would refuse a
    missing required flag: a quiet parse with no flag required. Any other error it meets (a bad
    value, a missing positional), and ``--help``, are left to the real parse, whose usage shows
    the required flags as required."""
    if any(word in ("-h", "--help") for word in argv):
        return
    parsers = _all_parsers(parser)
    required = [a for p in parsers for a in p._actions if a.required and a.option_strings]

    def abandon(message: str) -> NoReturn:
        raise _Abandoned(message)

    try:
        for action in required:
            action.required = False
        for p in parsers:
            p.error = abandon  # type: ignore[method-assign]
        try:
            args, unknown = parser.parse_known_args(argv)
        except _Abandoned:
            return
    finally:
        for action in required:
            action.required = True
        for p in parsers:
            vars(p).pop("error", None)  # back to the class's method (also if a Ctrl-C came
            # before every parser was patched)
    if unknown:
        args.argv = list(argv)
        _reject_unknown(parser, args, unknown)


def _action(args: argparse.Namespace) -> str | None:
    """The action given to a command that has actions (``data show``, ``torch train``)."""
    return getattr(args, f"{args.command}_command", None)


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    """The sub-commands of ``parser`` (argparse keeps them among its actions), if it has any."""
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


#: flags that mean the same but are spelt differently by different commands: typed to the other
#: command, the one it has is suggested, not a look-alike of another meaning (`mlplab data info
#: --data-seed` was asked "did you mean --data-dir?"). The --seed of tune and reproduce seeds
#: the splits, as --data-seed does for train and torch (and data info and data show, which
#: take --data-seed themselves). (--quiet / --no-progress and
#: --std / --init-std are each other's aliases in every command that has either.)
_SAME_MEANING = (("--data-seed", "--seed"),)


def _misplaced_arguments(parser: argparse.ArgumentParser, unknown: list[str],
                         argv: Sequence[str] = ()) -> list[str]:
    """Hints for a value given where a flag was expected and the reverse, as other commands take
    them: ``mlplab train cifar10`` (train takes --dataset NAME) and ``mlplab evaluate --run
    runs/a`` (evaluate takes RUN as its argument). ``argv``: the command's words, in which a
    --dataset already given makes a second name a second dataset, not a missing flag."""
    from mlplab.data.base import DatasetError
    from mlplab.data.datasets import check_dataset_name

    flags = {o for a in parser._actions for o in a.option_strings}
    positionals = {(a.dest, str(a.metavar or a.dest)) for a in parser._actions
                   if not a.option_strings and a.dest != "help"}
    notes = []
    named = any(a.split("=")[0] == "--dataset" for a in argv)
    for word in unknown:
        if not word.startswith("-") and "--dataset" in flags:
            try:
                check_dataset_name(word)
            except DatasetError:
                continue
            notes.append("one dataset per run: --dataset takes one name" if named else
                         f"a dataset is given with --dataset here: --dataset {word}")
        elif word.startswith("--"):
            name = word[2:].split("=")[0].replace("-", "_").lower()
            for dest, metavar in positionals:
                if name in (dest.lower(), metavar.lower()):
                    notes.append(f"{metavar} is this command's argument, given without "
                                 f"--{word[2:].split('=')[0]}")
    return notes


def _reject_unknown(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    unknown: list[str]) -> None:
    """Exit 2 with ``mlplab <command>: error: unrecognized arguments`` from the (sub)command's
    own parser, suggesting its closest flag (argparse would report it from the top parser)."""
    import difflib

    for name in (args.command, _action(args)):  # down to the innermost subcommand given
        sub = _subcommands(parser)
        if sub is None or name not in sub.choices:
            break
        parser = sub.choices[name]
    flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]

    def closest(arg: str) -> str | None:
        name = arg.split("=")[0]
        same = [b for pair in _SAME_MEANING if name in pair for b in pair if b != name]
        if same and same[0] in flags:
            return same[0]
        # a shortened flag names the one it starts (difflib's similarity offered --help for
        # --ep and --lr for --lr-d); several that it starts are left to the similarity
        starts = [f for f in flags if f.startswith(name) and len(name) > 2]
        if len(starts) == 1:
            return starts[0]
        match = difflib.get_close_matches(name, flags, n=1, cutoff=0.6)
        return match[0] if match else None

    # a command's own word on flags it lacks: (what to say, the flags that covers)
    explain = getattr(args, "unknown_hint", None)
    special, covered = explain(unknown) if explain is not None else (None, ())
    hints = sorted({h for u in unknown if u.startswith("-") and u.split("=")[0] not in covered
                    and (h := closest(u))})
    notes = [f"did you mean {', '.join(hints)}?"] if hints else []
    notes += [special] if special else []
    notes += _misplaced_arguments(parser, [u for u in unknown if u.split("=")[0] not in covered],
                                  getattr(args, "argv", ()))
    hint = f" ({'; '.join(notes)})" if notes else ""
    # mlplab's own options given after the command: closest() offered --reg for --debug (which
    # an internal error's message asks for) and --verbose for --version
    placed = {"--plugin": f"mlplab --plugin MODULE {args.command} ...",
              "--debug": f"mlplab --debug {args.command} ...", "--version": "mlplab --version"}
    late = [flag for flag in placed if any(u.split("=")[0] == flag for u in unknown)]
    if late:
        hint = " (" + "; ".join(f"{flag} goes before the command: {placed[flag]}"
                                for flag in late) + ")"
    parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


def main(argv: Sequence[str] | None = None) -> int:
    # first: a closed stream (None) would be wrapped below, and no longer seen as closed
    console.reopen_closed_streams()
    # (--help, --version and a bare mlplab print before the command's own guard: piped to a
    # reader that left, Python's exit printed "Exception ignored ... BrokenPipeError", code 120)
    with console.reader_may_leave():
        try:
            return _guarded_main(argv)
        finally:
            sys.stdout.flush()


def _plugin_error_text(exc: Exception, from_env: bool) -> str:
    """A plugin's failure, naming ``MLPLAB_PLUGINS`` where the plugin came from it (a name set
    in a shell profile, which no --plugin of the command shows)."""
    from mlplab.cli import plugins

    if not from_env:
        return str(exc)
    return (f"{str(exc).rstrip('.')}; {plugins.ENV_VAR}="
            f"{os.environ.get(plugins.ENV_VAR, '')!r} names it: mend or unset it.")


def _plugin_warning(text: str, from_env: bool) -> None:
    """A plugin's warning, said before the command's warning format is set, as the help says
    a plugin's failure."""
    print(f"mlplab: warning: {_plugin_error_text(Exception(text), from_env)}", file=sys.stderr)


def _guarded_main(argv: Sequence[str] | None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        # a Ctrl-C before the command's own handling is installed (as the plugins load, the
        # parser is built and its modules import: a second or two) was a Python traceback
        words = sys.argv[1:] if argv is None else list(argv)
        from mlplab.cli import plugins

        if plugins.global_options(words)[1]:  # --debug: the traceback
            raise
        from mlplab.interrupts import Terminated

        if isinstance(exc, Terminated):  # a SIGTERM as the `mlplab` process starts
            print("mlplab: terminated (SIGTERM)", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("mlplab: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def _main(argv: Sequence[str] | None) -> int:
    if "matplotlib" not in sys.modules:
        # the commands only write figures to files: Agg needs no display and starts no GUI
        # toolkit, here or in worker processes (which inherit it). The library itself leaves the
        # backend to its user (plt.show(), notebooks' inline figures).
        os.environ["MPLBACKEND"] = "Agg"
    argv = sys.argv[1:] if argv is None else list(argv)
    # the plugins before the parser: the sub-commands' choices are read when it is built
    from mlplab.cli import plugins

    if plugins.version_asked(argv):
        print(f"mlplab {__version__}")
        return 0
    helping = any(w in ("-h", "--help") for w in argv)
    for names, from_env in ((plugins.from_environment(), True),
                            (plugins.global_options(argv)[0], False)):
        # for --help each on its own: the help leaves out only the plugins that fail
        for group in ([name] for name in names) if helping else [names]:
            try:
                plugins.load_plugins(group, warn=functools.partial(_plugin_warning,
                                                                   from_env=from_env))
            except plugins.PluginError as exc:
                if helping:
                    print(f"mlplab: warning: {_plugin_error_text(exc, from_env)}",
                          file=sys.stderr)
                    continue
                if plugins.global_options(argv)[1]:  # --debug: the plugin's own traceback
                    raise exc.__cause__ or exc from None
                print(f"mlplab: error: {_plugin_error_text(exc, from_env)}", file=sys.stderr)
                return 2 if isinstance(exc, plugins.EmptyPluginName) else 1
    parser = build_parser()
    unknown = plugins.unknown_options(argv, [o for a in parser._actions for o in a.option_strings])
    if unknown:  # (from the top parser: argparse would take the word after one as the command)
        _reject_unknown(parser, argparse.Namespace(command=None), unknown)
    command, late = plugins.misplaced(argv)
    commands = _subcommands(parser)
    if late and commands is not None and command in commands.choices:
        # before the parse: it would first refuse a choice that only the plugin adds
        # (--activation elu) as invalid, and the user would never learn where --plugin goes
        _reject_unknown(parser, argparse.Namespace(command=command), late)
    # an unknown flag first: argparse checks required flags before it reports unknown words,
    # so `mlplab tune --tri 1` said "--trials is required" and never named --tri as the typo
    _reject_unknown_before_required(parser, argv)
    args, unknown = parser.parse_known_args(argv)
    args.argv = list(argv)  # the words of this command (main([...]) is not sys.argv's)
    if unknown:
        _reject_unknown(parser, args, unknown)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from mlplab import interrupts
    from mlplab._validation import command_line

    code: int | None = None
    stopped = 128 + signal.SIGINT  # 130 for Ctrl-C; a SIGTERM, noted below, makes it 143
    try:
        with interrupts.installed(), _one_line_warnings(args), console.lenient_output(), \
                console.reader_may_leave(), _no_dropped_interrupt_report(args), command_line():
            try:
                code = _run(args, interrupts)
                interrupts.closing()  # from here a Ctrl-C is remembered, not raised
                if interrupts.requested() and code != interrupts.exit_status():
                    code = None  # one that came as the command ended
            finally:  # read before installed() ends, which forgets the signal
                stopped = interrupts.exit_status()
    except KeyboardInterrupt:  # one that slipped in before closing() or as handlers went back
        code = stopped if code == stopped else None
    if code is None:
        terminated = stopped == 128 + signal.SIGTERM
        print("mlplab: terminated (SIGTERM)" if terminated else "mlplab: interrupted",
              file=sys.stderr)
        return stopped
    return code


@contextlib.contextmanager
def _no_dropped_interrupt_report(args: argparse.Namespace) -> Iterator[None]:
    """No "Exception ignored in: <bound method ...>" and a traceback for a Ctrl-C or SIGTERM that
    landed in a weakref callback or a ``__del__`` (SQLAlchemy's, under Optuna), where Python
    drops the ``KeyboardInterrupt`` and prints it as an unraisable exception: the interrupt is
    remembered all the same (:mod:`mlplab.interrupts`) and the command ends with "mlplab:
    interrupted" and exit code 130. With --debug Python's report is shown."""
    if args.debug:
        yield
        return
    saved = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            saved(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = saved


@contextlib.contextmanager
def _one_line_warnings(args: argparse.Namespace) -> Iterator[None]:
    """Warnings printed as ``mlplab <command>: warning: ...`` on one line, like errors, rather
    than Python's ``/path/module.py:123: UserWarning: ...`` followed by a line of mlplab's source
    (with --debug: Python's format)."""
    import warnings

    if args.debug:
        yield
        return
    command = " ".join(filter(None, (args.command, _action(args))))

    def format_warning(message: Warning | str, category: type[Warning], filename: str,
                       lineno: int, line: str | None = None) -> str:
        text = " ".join(str(message).split())
        # Pillow's warnings (a huge image, damaged EXIF) name no file: name the one this
        # thread is decoding (loaded already if a decode is under way)
        folder = sys.modules.get("mlplab.data.folder")
        path = folder.image_being_decoded() if folder is not None else None
        if path is not None and str(path) not in text:
            text = f"{path}: {text}"
        return f"mlplab {command}: warning: {text}\n"

    shown: set[str] = set()
    saved_show = warnings.showwarning

    def show_once(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
        # the same line once: Matplotlib warns of a glyph missing from its font (a class named
        # in Chinese) from each of mlplab's lines that draws the figure
        text = format_warning(message, category, filename, lineno, line)
        if text not in shown:
            shown.add(text)
            saved_show(message, category, filename, lineno, file, line)

    saved = warnings.formatwarning
    warnings.formatwarning = format_warning
    warnings.showwarning = show_once
    try:
        yield
    finally:
        warnings.formatwarning = saved
        warnings.showwarning = saved_show


def _run(args: argparse.Namespace, interrupts: ModuleType) -> int | None:
    """The command's exit code, or None if it was interrupted."""
    try:
        if getattr(args, "mirror", None) is not None and getattr(args, "download", None) is False \
                and not getattr(args, "resume", None):  # (a resume refuses every data flag)
            # the mirror is only read by a download: without one it was silently ignored
            raise UsageError("--mirror has no effect without --download; add --download (or "
                             "fetch the files first with mlplab data download NAME --mirror "
                             "BASE_URL).")
        code = int(args.func(args) or 0)
        # with buffered output a reader that went away shows only when the buffer is written:
        # here, through console.reader_may_leave (which takes it as the null device), not in
        # Python's own flush at exit (which would print a warning and exit 120). A
        # BrokenPipeError that still reaches the handlers below came from another pipe (a
        # worker's): an error, not a reader that left.
        sys.stdout.flush()
        if interrupts.requested():  # a Ctrl-C that Python dropped (raised in a callback)
            return None
        return code
    except KeyboardInterrupt:
        return None
    except Exception as exc:  # one line for the user, unless --debug
        if interrupts.requested() and not args.debug:
            return None  # what a second Ctrl-C broke on its way out (Optuna recording a trial)
        if args.debug:
            raise
        resume = kept = None
        if isinstance(exc, RunNotSaved):  # said as its reason, then how to finish the run
            resume, kept, exc = exc.resume, exc.kept, exc.reason
        message = " ".join(_error_text(exc, resume is not None).split()) or \
            type(exc).__name__  # one line, always
        refused = memory_refused(exc)
        if refused is not None:  # NumPy's "Unable to allocate ...", C++'s bad_alloc, ...
            message = out_of_memory_message(refused, resumed=resume is not None)
        elif isinstance(exc, Warning):  # the user's warnings filter (-W error, PYTHONWARNINGS)
            message = (f"{message} (a {type(exc).__name__}, which the warnings filter of -W or "
                       "PYTHONWARNINGS made an error)")
        elif not (isinstance(exc, CLIError | ValueError | OSError | RuntimeError) or
                  type(exc).__name__.endswith("Error")):
            # not an error the library raises on purpose: still no traceback, but say so
            # where --debug goes: after the command it is an unknown argument of its
            message = (f"internal error ({type(exc).__name__}: {message}); rerun as mlplab "
                       f"--debug {args.command} ... for the traceback and please report it")
        if resume is not None:
            message = _resume_advice(exc, message, kept, resume)
        command = " ".join(filter(None, (args.command, _action(args))))
        print(f"mlplab {command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


def _resume_advice(exc: Exception, message: str, kept: str | None, resume: str) -> str:
    """``message`` (``exc``'s) with ``kept`` and the ``resume`` line of a run that was not
    saved; for a file of its earlier stop's in the way (:class:`StaleResultError`), the resume
    comes after what to do about that file: said alone, it failed on the same file again."""
    from mlplab.runs.files import StaleResultError

    if isinstance(exc, StaleResultError):
        todo = exc.todo[0].upper() + exc.todo[1:]
        return f"{exc.reason}; {kept} {todo}, then {resume[0].lower()}{resume[1:]}"
    return f"{message.rstrip('.')}; {kept} {resume}"


def _error_text(exc: Exception, resumed: bool = False) -> str:
    """``exc`` in words (:func:`~mlplab._text.os_error_text`: the system's own errors name the
    path first, without the errno). ``resumed``: the run it ended is
    continued with another command, so a full disk's "run the command again" is left out."""
    from mlplab.io import DiskFullError

    if resumed and isinstance(exc, DiskFullError):
        return exc.reason
    from mlplab._text import os_error_text

    text = os_error_text(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ELOOP, errno.ENAMETOOLONG) \
            and exc.filename is not None and exc.filename2 is None:
        # which link, and what is wrong with it: "runs/x/model.npz: File name too long"
        # after a short name, or "Too many levels of symbolic links", named neither
        from mlplab._text import printable
        from mlplab.io import path_trouble

        trouble = path_trouble(os.fsdecode(exc.filename))
        text = printable(trouble) if trouble is not None else text
    if isinstance(exc, OSError) and exc.errno == errno.EMFILE:
        text += f"; {_open_files_advice()}"
    return text


def _open_files_advice() -> str:
    """What to do when this process may open no more files (EMFILE, under a low ``ulimit -n``:
    the tuning database, Matplotlib's fonts and the run's files are open at once)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no resource module (Windows)
        return "raise the limit of open files: ulimit -n 1024, for example"
    if 0 <= hard <= soft:  # RLIM_INFINITY is -1
        return (f"raise the limit of open files (now {soft}, which is also the hard limit; only "
                "root can raise it)")
    # above the limit reached: Linux's usual one is 1024 already
    target = max(1024, 2 * soft) if hard < 0 else min(max(1024, 2 * soft), hard)
    return f"raise the limit of open files (now {soft}): ulimit -n {target}, for example"


if __name__ == "__main__":
    sys.exit(main())
