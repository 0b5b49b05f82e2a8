"""``mlplab tune``: hyperparameter search on Optuna (a thin shell over :mod:`mlplab.tuning`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from mlplab._text import agree, duration, percent
from mlplab.cli import CLIError, add_no_progress, split_seed_arg
from mlplab.cli._types import non_negative_int, positive_int, positive_seconds, user_path_arg
from mlplab.cli.data import add_dataset_arguments

if TYPE_CHECKING:
    from pathlib import Path

    from mlplab.tuning import TuneResult
    from mlplab.tuning.data import DatasetSource

EPILOG = """\
examples:
  mlplab tune --dataset digits --trials 30
  mlplab tune --dataset folder:/data/cifar10/train --train-size 10000 --trials 40 --prune
  mlplab tune --dataset cifar10 --trials 60 --search-space space.yaml --workers 4 --eval-test

several machines, one study (--search-only on the workers; one more run without it writes the
tables, plots and best-run/):
  mlplab tune --dataset cifar10 --trials 200 --study cifar \\
      --storage postgresql://user:pass@dbhost/optuna --search-only
  mlplab tune --dataset cifar10 --trials 200 --study cifar \\
      --storage postgresql://user:pass@dbhost/optuna --eval-test

--trials is the study's total of finished trials: rerunning a command resumes the study and does
no more trials once the total is reached. See docs/tuning.md of the mlplab source for the
search-space YAML schema.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from mlplab.data import PREPROCESSING
    from mlplab.tuning import BUILTIN_SPACES, PRUNERS, SAMPLERS

    p = sub.add_parser(
        "tune", help="search hyperparameters on the validation set (Optuna)",
        description="Search hyperparameters with Optuna, maximising validation accuracy: each\n"
                    "trial builds an MLP from the sampled settings and trains it with mlplab's\n"
                    "trainer. Then write a table of every trial (CSV, Markdown) and Optuna's\n"
                    "plots, and retrain the best trial into a run folder (<out>/best-run).\n"
                    "Several processes, on one machine or many, search one study when they\n"
                    "share --storage and --study.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(p)
    g = p.add_argument_group("search")
    g.add_argument("--trials", type=positive_int, required=True, metavar="N",
                   help="the study's total number of finished (complete or pruned) trials")
    g.add_argument("--timeout", type=positive_seconds, metavar="S", default=None,
                   help="stop starting new trials after S seconds of searching, counted by each "
                        "worker from when its data is loaded (time spent waiting for a trial "
                        "that a killed worker left behind counts too)")
    g.add_argument("--search-space", metavar="FILE.yaml|NAME", default=None, type=user_path_arg,
                   help="a YAML search space (docs/tuning.md of the mlplab source) or a "
                        f"built-in one: {', '.join(BUILTIN_SPACES)} (default: exercise: hidden "
                        "size, lr, reg, batch size, epochs, lr decay)")
    g.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                   help="tpe (default), random, or grid over each knob's `grid` values")
    g.add_argument("--prune", nargs="?", const="median", choices=PRUNERS, default=None,
                   metavar="{median,hyperband}",
                   help="stop hopeless trials early from their per-epoch validation accuracy "
                        "(--prune alone: median)")
    g.add_argument("--seed", type=split_seed_arg, default=0,
                   help="seed of every trial's weights and batches, of the data splits and, "
                        "for one local worker on the default storage, of the sampler (and "
                        "always of the grid sampler's order) (default: %(default)s)")
    g.add_argument("--preprocessing", "--preprocess", dest="preprocess",
                   choices=list(PREPROCESSING), default="standardize",
                   help="input preprocessing fitted on the training split, as mlplab train's "
                        "(default: %(default)s)")
    g.add_argument("--train-size", type=positive_int, metavar="N", default=None,
                   help="tune on a stratified subset of N training images (cheaper trials)")

    s = p.add_argument_group("study and workers")
    s.add_argument("--study", metavar="NAME", default=None,
                   help="study name to create or resume (default: tune-<dataset>)")
    s.add_argument("--storage", metavar="URL", default=None,
                   help="where the study lives: a SQLAlchemy URL (sqlite:///f.db, "
                        "postgresql://user@host/db), journal:PATH or a .log file (Optuna "
                        "journal), a .db file (default: <out>/study.db)")
    s.add_argument("--workers", type=positive_int, default=1, metavar="K",
                   help="local worker processes (default: %(default)s)")
    s.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="BLAS threads of each worker's trials and of the retraining (default: "
                        "OpenBLAS's own choice, OMP_NUM_THREADS or every core, shared between "
                        "--workers)")
    s.add_argument("--heartbeat", type=non_negative_int, default=30, metavar="S",
                   help="seconds between a running trial's heartbeats; a trial whose worker "
                        "died is marked FAIL and re-queued once (0 disables; default: "
                        "%(default)s)")
    s.add_argument("--grace", type=positive_int, default=None, metavar="S",
                   help="seconds without a heartbeat (or, before its first, since it began) "
                        "before a trial counts as dead "
                        "(default: twice --heartbeat; refused with --heartbeat 0)")
    s.add_argument("--search-only", action="store_true",
                   help="only run trials (a worker among many): no table, plots or retraining")

    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", default=None, type=user_path_arg,
                   help="output folder (default: runs/<study name>)")
    o.add_argument("--eval-test", action="store_true",
                   help="evaluate the retrained best model on the test split, once")
    o.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_no_progress(o, "progress bar")
    p.set_defaults(func=run_tune, unknown_hint=_knob_hint)


def _knob_hint(unknown: list[str]) -> tuple[str | None, set[str]]:
    """What to say of training flags given to tune (``--epochs 3``, as to mlplab train): each
    trial takes them from the search space, where they are knobs."""
    from mlplab.tuning.space import KNOBS

    # mlplab train's switches, which take no value: the knob's line says what they set
    switches = {"--batchnorm": ("batchnorm", "true"), "--no-batchnorm": ("batchnorm", "false")}
    knobs, flags = [], set()
    for i, word in enumerate(unknown):
        name, eq, value = word.partition("=")
        knob = {"--hidden": "hidden_size"}.get(name, name[2:].replace("-", "_"))
        if name in switches:
            knob, value = switches[name]
        elif not name.startswith("--") or knob not in KNOBS:
            continue
        elif not eq and i + 1 < len(unknown) and not unknown[i + 1].startswith("--"):
            value = unknown[i + 1]
        knobs.append((knob, value or "VALUE"))
        flags.add(name)
    # mlplab train's flags that are no knob, answered with a near spelling before ("did you
    # mean --trials?" for --iters, "--prune?" for --resume), which does something else
    others = {"--iters": "a trial's length is the `epochs` knob of the search space, e.g. "
                         "`epochs: 3` in a --search-space FILE.yaml (there is no iterations "
                         "knob)",
              "--resume": "a study resumes when the same command runs again: --trials is the "
                          "study's total, and only the missing trials run"}
    notes = [note for flag, note in others.items()
             if any(word.partition("=")[0] == flag for word in unknown)]
    flags.update(flag for flag in others if any(w.partition("=")[0] == flag for w in unknown))
    if knobs:
        names = ", ".join(k for k, _ in knobs)
        notes.insert(0, f"the trials take {names} from the search space: fix or search "
                        f"{'it' if len(knobs) == 1 else 'them'} in a --search-space FILE.yaml, "
                        f"e.g. `{knobs[0][0]}: {knobs[0][1]}`, see docs/tuning.md of the "
                        "mlplab source")
    return "; ".join(notes) or None, flags


def data_source(args: argparse.Namespace) -> DatasetSource:
    """The tuning data source for the dataset options of ``args``."""
    from mlplab.tuning import DatasetSource

    kwargs = {"data_dir": args.data_dir, "download": args.download, "mirror": args.mirror,
              "val_size": args.val_size, "test_size": args.test_size,
              "image_size": args.image_size, "seed": args.seed,
              "cache": getattr(args, "data_cache", True),
              "progress": getattr(args, "progress", True)}
    return DatasetSource(args.dataset, kwargs, args.preprocess, args.train_size)


def _interrupted_line(gone: tuple[Path, Path] | None, folder_gone: Path | None) -> str:
    """What a stopped search kept, from :func:`mlplab.tuning.study_gone` (the study's file
    gone, with its folder or alone) and :func:`mlplab.tuning.out_gone` (the --out folder gone):
    each said as it is (the folder was said removed where only its study.db had been, and a
    folder removed beside a study kept elsewhere was not said at all)."""
    if gone is not None:
        folder, study_file = gone
        again = ("if it was moved, put it back and run the same command again to continue the "
                 "study; if removed, the same command starts it anew")
        if folder_gone is not None:
            return (f"interrupted; {folder} was removed or moved while the search ran, and its "
                    f"{study_file}, which holds the finished trials, with it: {again}")
        return (f"interrupted; {folder / study_file}, which holds the finished trials, was "
                f"removed or moved while the search ran (the rest of {folder} is kept): {again}")
    if folder_gone is not None:
        return (f"interrupted; {folder_gone} was removed or moved while the search ran, but the "
                "finished trials are kept in the study (its --storage lies outside it): run the "
                "same command again to continue it up to --trials, which writes the folder anew")
    return ("interrupted; the finished trials are kept in the study: run the same command "
            "again to continue it up to --trials")


def run_tune(args: argparse.Namespace) -> int:
    from mlplab.cli import UsageError, usage_errors
    from mlplab.tuning import out_gone, study_gone, tune
    from mlplab.tuning.storage import check_heartbeat
    from mlplab.tuning.study import check_study_name

    # flags that cannot work together whatever the data: usage errors (exit 2), as mlplab
    # train's are, before tune() opens anything
    if args.search_only and args.eval_test:
        raise UsageError("--eval-test needs the best model, which --search-only does not train.")
    with usage_errors():
        check_heartbeat(args.heartbeat, args.grace)
        if args.study is not None:
            check_study_name(args.study)
    try:
        result = tune(data_source(args), trials=args.trials, timeout=args.timeout,
                      search_space=args.search_space, study_name=args.study,
                      storage=args.storage, workers=args.workers, sampler=args.sampler,
                      prune=args.prune, out=args.out, seed=args.seed, eval_test=args.eval_test,
                      heartbeat=args.heartbeat, grace=args.grace,
                      search_only=args.search_only, progress=args.progress,
                      threads=args.threads)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the study keeps every finished trial
        print(_interrupted_line(study_gone(exc), out_gone(exc)), file=sys.stderr)
        raise
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"study {result.study_name} in {result.storage}: {result.n_complete} complete, "
          f"{result.n_pruned} pruned, {result.n_failed} failed ({duration(result.wall_seconds)})")
    if result.unfinished is not None:
        # the results are those of a shorter search than asked for: say why, and how to go on
        print(result.unfinished)
    elif args.sampler == "grid" and \
            result.n_complete + result.n_pruned + result.n_failed < args.trials:
        # (not unfinished: a grid ends once every point is tried, which said nothing, so that
        # the counts above read as a search cut short)
        print(f"the grid's points are all tried, in fewer trials than --trials {args.trials}: "
              "the search is complete")
    if result.best_trial is None:
        _print_files(result)
        if not result.n_complete:
            print("no trial has completed yet")
            return 0
        # every complete trial diverged (a diverged trial is no best): "3 complete" and then
        # "no trial has completed yet", exit 0
        if result.unfinished is not None:  # (the line above says how to go on)
            n = result.n_complete
            print(f"no best trial yet: {agree(n, 'the complete one', f'the {n} complete ones')} "
                  "diverged")
            return 0
        which = agree(result.n_complete, "the only complete trial diverged (its loss became",
                      f"every complete trial diverged ({result.n_complete}; their loss became")
        raise CLIError(f"{which} NaN or infinite), so there is no best one to retrain; lower the "
                       "learning rates of the search space (lr) and search again with another "
                       "--out.")
    from mlplab.tuning.results import setting_text

    params = ", ".join(f"{k}={setting_text(v)}" for k, v in result.best_params.items())
    best, retrained = result.best_value, result.retrained_val_acc
    assert best is not None  # (a trial completed: checked above)
    print(f"best trial {result.best_trial}: validation accuracy {percent(best)} ({params})")
    if result.run_dir is not None:
        assert retrained is not None  # (set with run_dir)
        print(f"retrained best model: validation accuracy {percent(retrained)}, saved in "
              f"{result.run_dir}")
    if result.test_accuracy is not None:
        print("test accuracy of the best model (evaluated once): "
              f"{percent(result.test_accuracy)}")
    _print_files(result)
    if result.run_dir is not None:  # a run folder as mlplab train's: what to do with it
        from mlplab._text import path_word, shell_command
        from mlplab.cli import mlplab_command, print_next

        run, mlplab = shell_command([path_word(result.run_dir)]), mlplab_command(args)
        print_next([f"{mlplab} evaluate {run} (per class, confusion matrix)",
                    f"{mlplab} predict {run} IMAGE...",
                    f"{mlplab} train --like {run} --seed 1 (the best settings again)"])
    return 0


def _print_files(result: TuneResult) -> None:
    if result.files:
        print(f"results: {result.files['markdown']}, {result.files['csv']}")
    for name, reason in result.skipped_plots.items():
        print(f"plot {name} skipped: {reason}")
