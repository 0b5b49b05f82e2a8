"""``mlplab runs``: the run folders under a folder, one line each."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mlplab import io
from mlplab.cli import CLIError, check_figure_file, figure_not_written
from mlplab.cli._types import user_path_arg
from mlplab.io import RUNS_ROOT


def register(sub: argparse._SubParsersAction) -> None:
    from mlplab.runs.listing import SORT_KEYS

    p = sub.add_parser(
        "runs", help="list the run folders under a folder, with their accuracies",
        description="List every run folder (mlplab train's and mlplab torch train's, including "
                    "those inside tuning and report folders) under each FOLDER, one line each: "
                    "status, dataset, network, epochs, train / validation / best validation / "
                    "test accuracy and training time, read from its metrics.json and "
                    "config.json (no model is loaded, no data read). A run that a process is "
                    "training now shows as 'training' and one killed before it finished as "
                    "'unfinished', both with their last epoch's figures (from the checkpoint); "
                    "one stopped with Ctrl-C as 'interrupted' (mlplab train --resume RUN "
                    "continues it, or an unfinished one; mlplab torch train --resume RUN a "
                    "run of mlplab torch train's).")
    p.add_argument("folders", metavar="FOLDER", nargs="*", type=user_path_arg,
                   default=[RUNS_ROOT],
                   help="folders to look in (default: runs, where mlplab train writes; one "
                        "that does not exist yet has no runs, and one misspelt is answered "
                        "with the name of the folder beside it that it most likely meant)")
    p.add_argument("--sort", choices=list(SORT_KEYS), default="finished",
                   help="order: finished (when each finished, oldest first; time is its older "
                        "name), name, val, best-val, test (that accuracy, highest first), or "
                        "duration (the time column, the training time, longest first) "
                        "(default: %(default)s)")
    p.add_argument("--json", action="store_true",
                   help="print the runs as a JSON list of objects (accuracies as fractions)")
    p.add_argument("--plot", metavar="FILE", type=user_path_arg, default=None,
                   help=f"also draw the runs' validation accuracy and training loss per epoch "
                        f"into FILE (.png, .pdf or .svg), one colour, marker and line style "
                        f"per run: the first {PLOTTED} in --sort order")
    p.set_defaults(func=run_runs)


#: the most runs ``--plot`` draws: beyond that the colours repeat and the legend fills the page
PLOTTED = 20

#: the table's columns: (heading, record key, how a value is shown)
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("run", "run", "text"), ("status", "status", "text"), ("dataset", "dataset", "text"),
    ("model", "model", "text"), ("epochs", "epochs", "epochs"), ("train", "train_accuracy", "%"),
    ("val", "val_accuracy", "%"), ("best val", "best_val_accuracy", "%"),
    ("test", "test_accuracy", "%"), ("time", "seconds", "seconds"),
)


def _cell(record: dict[str, Any], key: str, kind: str) -> str:
    value = record[key]
    if kind == "epochs" and record["stopped_early"] and value is not None:
        return f"{value} (early)"  # completed by early stopping: not a run cut short
    if kind == "epochs" and value is None and record["status"] == "diverged":
        # a PyTorch run drops its checkpoint as it diverges (a NumPy run resumed from none has
        # none): no epoch it kept, which the status says; "?/20" read as a count unknown
        return "-"
    if kind == "epochs" and record["of_epochs"] is not None and value != record["of_epochs"]:
        return f"{value if value is not None else '?'}/{record['of_epochs']}"
    if value is None:
        return "-"
    if kind == "%":
        return f"{100 * value:.1f}%"
    if kind == "seconds":
        from mlplab._text import duration

        left = record["seconds_left"]
        return duration(value) + (f", {duration(left)} left" if left is not None else "")
    return str(value)


def run_runs(args: argparse.Namespace) -> int:
    from mlplab.runs.listing import list_runs

    if args.plot is not None:  # before the listing, which may take a while
        check_figure_file(args.plot, "--plot", "runs.png")
    # a folder that is not there yet is one nobody has trained into (a fresh checkout, a new
    # machine): no runs, not an error; one that is something else (a file) is still refused
    # (one under a link that loops is neither: listing it says which link)
    missing = [f for f in args.folders if io.nothing_at(f)]
    relative = [f for f in missing if not os.path.isabs(f)]
    if relative:
        from mlplab.io import CWD_REMOVED, cwd_removed

        if cwd_removed():  # it said "no runs yet in runs", of a folder it could not look in
            raise CLIError(f"cannot list {relative[0]}: {CWD_REMOVED}, or give the folder's "
                           "absolute path.")
    for folder in missing:
        print(_no_runs_yet(folder), file=sys.stderr)
    present = [f for f in args.folders if f not in missing]
    studies: list[Path] = []  # depth studies below the folders: passed over, and said so
    try:
        records = list_runs(present, sort=args.sort, studies=studies) if present else []
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None
    if args.plot is not None and records:
        _plot(records, args.plot)
    # said, as when no run has a finished epoch to draw (the file was silently not written)
    unplotted = f"--plot: no runs to draw; {args.plot} not written" \
        if args.plot is not None and not records else None
    hints = _other_outputs([*present, *map(str, studies)], records)
    if args.json:
        print(json.dumps(records, indent=2, allow_nan=False))  # strict JSON, or an error
        for hint in hints:
            print(hint, file=sys.stderr)
        if unplotted:
            print(unplotted, file=sys.stderr)
        return 0
    if not records:
        if present:  # the missing ones have had their line
            print(f"no run folders under {', '.join(present)}", file=sys.stderr)
        for hint in hints:
            print(hint, file=sys.stderr)
        if unplotted:
            print(unplotted, file=sys.stderr)
        return 0
    from mlplab._text import display_width, padded, printable
    from mlplab.cli._console import as_written

    rows = [[head for head, _, _ in _COLUMNS]]
    # a folder name or a hand-edited field may hold a newline or ESC: escaped, a row stays one
    # line; a CJK name or an accent kept apart takes other than one column per character; and
    # a character the output's encoding lacks is written as something else (\u732b, ?)
    rows += [[as_written(printable(_cell(r, key, kind), one_line=True))
              for _, key, kind in _COLUMNS] for r in records]
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    numeric = {i for i, (_, _, kind) in enumerate(_COLUMNS) if kind != "text"}
    for row in rows:
        print("  ".join(padded(cell, w, right=i in numeric)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    for r in records:
        if r["problem"]:
            print(printable(f"{r['run']}: unreadable: {r['problem']}", one_line=True),
                  file=sys.stderr)
    for hint in hints:
        print(hint, file=sys.stderr)
    return 0


def _other_outputs(folders: list[str], records: list[dict[str, Any]]) -> list[str]:
    """What each folder given that holds none of the runs listed is, where it is another
    command's output (a depth study, given for a run folder): said whether or not other folders
    given hold runs (a tuning folder whose best run is listed needs no line)."""
    from mlplab._text import printable
    from mlplab.runs.finished import other_output_hint

    listed = [Path(os.path.abspath(r["run"])) for r in records]
    lines = []
    for folder in folders:
        where = Path(os.path.abspath(folder))
        if any(run == where or where in run.parents for run in listed):
            continue
        try:
            hint = other_output_hint(Path(folder))
        except OSError:  # a marker file that cannot be looked at (a loop of links): no hint,
            continue  # where the error ended the listing already printed
        if hint is not None:
            lines.append(printable(f"{folder}: {hint}", one_line=True))
    return lines


def _no_runs_yet(folder: str) -> str:
    """The line for a runs folder that does not exist, with the command that makes its first
    run: ``mlplab train`` writes into ``runs`` by itself; another folder needs ``--out``."""
    from mlplab._text import near_folder, path_word, printable, shell_command

    if os.path.normpath(folder) == RUNS_ROOT:
        command = shell_command(["mlplab", "train"])
    else:
        command = shell_command(["mlplab", "train", "--out",
                                 path_word(os.path.join(folder, "first"))])
    guess = near_folder(folder)
    # a typo (rusn for runs) is answered with the folder it most likely meant; the exit status
    # stays 0, as a folder named before its first run is no error (runs2 beside runs)
    if guess is not None:  # (not "train one with --out rusn/first": the name is the typo)
        return printable(f"no runs yet in {folder} (no such folder; did you mean {guess}?)",
                         one_line=True)
    if os.path.normpath(folder) == RUNS_ROOT and _run_folders_here():
        # trained with --out NAME here: "no runs yet" right after training one
        return (f"no runs yet in {folder}; the run folders in this folder are listed by "
                "`mlplab runs .`")
    return printable(f"no runs yet in {folder}; train one with `{command}`",
                     one_line=True)


def _run_folders_here(limit: int = 1000) -> bool:
    """Whether a folder in the current one holds a run's ``config.json`` (the first ``limit``
    entries are looked at: this is for a hint)."""
    from mlplab.runs.files import CONFIG_FILE

    try:
        with os.scandir(".") as entries:
            for n, entry in enumerate(entries):
                if n >= limit:
                    break
                try:
                    if entry.is_dir() and os.path.isfile(os.path.join(entry.path, CONFIG_FILE)):
                        return True
                except OSError:  # (a loop of links): the others are still looked at
                    continue
    except OSError:
        pass
    return False


def _plot(records: list[dict[str, Any]], path: str) -> None:
    from mlplab import plots
    from mlplab._text import printable
    from mlplab.runs.listing import epoch_curves

    curves = {}
    for r in records[:PLOTTED]:
        try:
            curves[r["run"]] = epoch_curves(r["run"])
        except ValueError as exc:  # left out, said as the listing says an unreadable run
            print(printable(f"--plot: {r['run']} not drawn: {exc}", one_line=True),
                  file=sys.stderr)
    curves = {name: c for name, c in curves.items() if c["loss"]}  # a run with no epoch yet
    if not curves:
        tried = records[:PLOTTED]
        # their loss diverged and they kept no epoch: "has a finished epoch" hinted that
        # waiting or resuming would give one
        why = (("the run listed diverged" if len(tried) == 1 else
                f"all {len(tried)} runs listed diverged") + " and kept no finished epoch to draw"
               if all(r["status"] == "diverged" for r in tried) else
               "none of the runs has a finished epoch to draw")
        print(f"--plot: {why}; {path} not written", file=sys.stderr)
        return
    try:
        plots.save(plots.plot_runs(curves), path)
    except OSError as exc:
        figure_not_written(path, "--plot", exc)
    more = f" (the first {PLOTTED} of {len(records)})" if len(records) > PLOTTED else ""
    print(f"plot: {path}{more}", file=sys.stderr)
