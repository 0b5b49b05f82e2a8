"""``mlplab reproduce``: the whole study (Questions 1-4) into ``report.md`` and ``report.html``."""

from __future__ import annotations

import argparse
import sys

from mlplab._text import agree, counted, duration


def register(sub: argparse._SubParsersAction) -> None:
    from mlplab.cli import split_seed_arg
    from mlplab.cli._types import positive_int, user_path_arg
    from mlplab.cli.data import add_dataset_arguments
    from mlplab.report.budgets import BUDGETS

    p = sub.add_parser(
        "reproduce", help="run the whole exercise (Q1-Q4) and write a Markdown + HTML report",
        description="Run the exercise from Question 1 to Question 4 and write DIR/report.md, a "
                    "self-contained DIR/report.html (images embedded), DIR/report.json (every "
                    "number) and the figures in DIR/figures/. Stages: the data, Q1 toy forward "
                    "pass and loss, Q2 gradient equations and checks, Q3 toy training, the "
                    "default run, an Optuna search and the tuned network (tested once), Q4 "
                    "PyTorch depths with both initialisations, a summary against the exercise's "
                    "targets and the 2020 report, and the environment. A stage that cannot run "
                    "(e.g. PyTorch missing) is marked 'not run' with the reason; the rest still "
                    "runs. The same seed gives the same numbers on the same machine and "
                    "libraries (another CPU or BLAS rounds differently). Exit status 1 if a stage "
                    "failed with an error (the report is still written).",
        epilog="Budgets: quick (digits in 15-30 s on 2 idle cores), standard (CIFAR-10 "
               "in 4-16 minutes on 2 cores), full (hours). Example: mlplab reproduce --dataset "
               "folder:/data/cifar10/train --budget standard --out report-cifar10")
    add_dataset_arguments(p)
    p.add_argument("--budget", choices=list(BUDGETS), default="quick",
                   help="how much work: tuning trials, their data and length "
                        "(default: %(default)s)")
    p.add_argument("--out", metavar="DIR", default=None, type=user_path_arg,
                   help="report folder (default: runs/report-<dataset>-<budget>)")
    p.add_argument("--seed", type=split_seed_arg, default=0,
                   help="seed of the splits, weights, minibatches, tuning and PyTorch (the "
                        "exercise's toy problem of Q1, Q2's two-layer check and the toy "
                        "training keeps its own fixed draws) (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="BLAS and PyTorch threads (default: %(default)s, the fastest for the "
                        "exercise's small nets and exactly repeatable; 2-4 help CIFAR-10 on "
                        "dedicated cores)")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda|auto",
                   help="where Q4's PyTorch networks train (no other stage uses PyTorch): cpu "
                        "(default, exactly repeatable), cuda or cuda:N (refused before any stage "
                        "without that GPU, unless Q4 does not run), or auto (a GPU when PyTorch "
                        "sees one, else the CPU); the report names the device and GPU")
    p.add_argument("--only", metavar="STAGES", default=None, type=_stage_list,
                   help="comma-separated stages to run, the rest marked 'not run' (data, q1, "
                        "q2, q3_toy, q3_default, q3_tuning, q3_tuned, q4, summary); "
                        "q3_default, q3_tuning, q3_tuned and q4 need 'data' too (or --reuse "
                        "of an earlier report's)")
    p.add_argument("--reuse", action="store_true",
                   help="with --only: keep the earlier report's sections in --out that are not "
                        "run again (same dataset, budget, seed, threads and device), e.g. to "
                        "re-run a stage that failed")
    p.add_argument("--progress", action="store_true",
                   help="progress bars inside long stages (a line per stage is always printed)")
    p.set_defaults(func=run_reproduce, unknown_hint=_budget_hint)


def _stage_list(text: str) -> list[str]:
    """``"data, q4"`` -> ``["data", "q4"]``; an empty text (an unset ``$STAGES``) is refused:
    read as no selection, it ran every stage and replaced the whole report. So is an empty item
    (``q1,,q2``, ``q1,``), a typo or an unset variable, as ``--hidden 100,,50`` is."""
    stages = [s.strip() for s in text.split(",")]
    if not all(stages):
        unset = " (an unset shell variable?)" if not text.strip() else \
            " (an empty item)" if any(stages) else ""
        raise argparse.ArgumentTypeError(f"expected comma-separated stages like data,q4; got "
                                         f"{text!r}{unset}")
    return stages


#: flags of train, tune and torch whose work the budget sets for every stage of the study
_BUDGET_FLAGS = {"--trials", "--epochs", "--iters", "--train-size", "--timeout", "--workers",
                 "--layers", "--hidden", "--hidden-size", "--search-space", "--prune"}


def _budget_hint(unknown: list[str]) -> tuple[str | None, set[str]]:
    """What to say of flags that tune or train the study's stages (``--trials 5``, to make it
    quicker) or silence it (``--quiet``, as mlplab train's)."""
    flags = {u.split("=")[0] for u in unknown if u.startswith("--")}
    notes, covered = [], set()
    if flags & _BUDGET_FLAGS:
        covered |= flags & _BUDGET_FLAGS
        notes.append("--budget quick|standard|full sets the trials, epochs and sizes of every "
                     "stage, and reproduce(..., budget=Budget(...)) from Python any others")
    if flags & {"--quiet", "--no-progress"}:
        covered |= flags & {"--quiet", "--no-progress"}
        notes.append("progress bars are off unless --progress; the line per stage is always "
                     "printed")
    return "; ".join(notes) or None, covered


def run_reproduce(args: argparse.Namespace) -> int:
    from mlplab._machine import parse_device
    from mlplab._text import shell_command
    from mlplab.cli import UsageError, usage_errors
    from mlplab.cli.data import load_dataset_from_args
    from mlplab.report import STAGES, default_out, reproduce
    from mlplab.report.runner import stages_without_data

    if args.reuse and not args.only:
        raise UsageError("--reuse keeps the sections that --only does not run again; without "
                         "--only every stage runs again and nothing is kept. Add --only "
                         "STAGES, or drop --reuse.")
    # a misspelt device is the argument's fault (exit 2, as torch train's); a GPU this machine
    # lacks is a fact about it (exit 1, reproduce refuses it before any stage)
    with usage_errors(("device",)):
        parse_device(args.device)
    # the words of main([...]), else the process's: a script calling main(["reproduce", ...])
    # was reported as "reproduced by `mlplab <the script's own arguments>`"
    argv = getattr(args, "argv", sys.argv[1:])
    only = args.only
    if only is not None:
        unknown = sorted(set(only) - {s.key for s in STAGES})
        if unknown:
            raise UsageError(f"unknown {agree(len(unknown), 'stage', 'stages')} "
                             f"{', '.join(unknown)} in --only; choose from "
                             f"{', '.join(s.key for s in STAGES)}.")
        needs_data = stages_without_data(only, args.reuse)
        if needs_data:  # before anything is written: the report would be replaced by "not run"s
            raise UsageError(needs_data)
    try:
        result = reproduce(args.dataset, args.budget, args.out, args.seed,
                           progress=args.progress, debug=args.debug, only=only,
                           threads=args.threads, reuse=args.reuse, device=args.device,
                           # a folder's decoding bar only with the stages' (--progress)
                           loader=lambda: load_dataset_from_args(args, args.progress),
                           command=shell_command(["mlplab", *argv]) if argv else None)
    except KeyboardInterrupt:
        # a stopped training says how to resume it; a stopped report has no resume: say what
        # became of the folder, and that the same command makes the report from the start
        out = args.out or default_out(args.dataset, args.budget)
        print(f"reproduce: stopped before the report was written: nothing of it is in {out} "
              "(an earlier report there is kept as it was). Run the same command again to make "
              "the report from the start.", file=sys.stderr)
        raise
    missing = result.not_run()
    took = duration(result.seconds)
    if result.reused:
        # the report's time is the whole study's; this command took only the stages it ran
        earlier = sum(s.seconds for s in result.sections if s.key in result.reused)
        took = (f"{duration(result.seconds - earlier)}, {took} with the "
                f"{counted(len(result.reused), 'reused section')}")
    # counted as the progress lines count them ("[9/9]"), the environment's section apart
    stages = sum(s.key != "environment" for s in result.sections)
    print(f"report: {result.markdown} and {result.html} ({counted(stages, 'stage')} and the "
          f"environment, {len(missing)} not run, {took})")
    failed = [s for s in missing if s.reason.startswith("failed")]
    if failed:
        # the report is written, but a stage broke: say so in the exit status (a stage that was
        # skipped for a known reason, e.g. PyTorch not installed, is not a failure)
        print(f"mlplab reproduce: {counted(len(failed), 'stage')} failed: "
              f"{', '.join(s.key for s in failed)} (tracebacks in {result.out / 'errors.log'})",
              file=sys.stderr)
        return 1
    return 0
