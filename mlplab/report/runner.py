"""``reproduce``: run the study stage by stage and write ``report.md``, ``report.html`` and
``report.json``.

Each stage is one small function ``stage(ctx, section)`` that calls the library and fills its
section. The runner times it, prints one progress line, and turns any failure into a section
marked "not run" with the reason, so one missing piece (PyTorch not installed, a dataset not
found) never blocks the rest of the report.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO, cast

from mlplab import environment as env
from mlplab import interrupts
from mlplab._text import counted, path_word, printable, shell_command
from mlplab._validation import check_seed, is_int, setting
from mlplab.io import RUNS_ROOT, check_out_folder, out_folder, why_no_folder
from mlplab.report.budgets import BUDGETS, Budget, get_budget
from mlplab.report.context import Context
from mlplab.report.document import (
    KeyValues,
    Section,
    StageSkipped,
    Table,
    Text,
    block_from_dict,
    block_to_dict,
)
from mlplab.report.fmt import seconds
from mlplab.report.rendering import md_code, md_literal, to_html, to_markdown
from mlplab.report.stages_exercise import stage_q1, stage_q2, stage_q3_toy
from mlplab.report.stages_summary import stage_summary
from mlplab.report.stages_torch import device_words, stage_q4
from mlplab.report.stages_training import (
    stage_data,
    stage_q3_default,
    stage_q3_tuned,
    stage_q3_tuning,
)

StageFn = Callable[[Context, Section], None]


@dataclass(frozen=True)
class Stage:
    key: str
    group: str
    title: str
    run: StageFn


Q1 = "Q1 · Forward pass and loss"
Q2 = "Q2 · Backpropagation and gradient checks"
Q3 = "Q3 · Training with minibatch SGD"
Q4 = "Q4 · PyTorch multi-layer perceptron"

STAGES: list[Stage] = [
    Stage("data", "Data", "", stage_data),
    Stage("q1", Q1, "", stage_q1),
    Stage("q2", Q2, "", stage_q2),
    Stage("q3_toy", Q3, "Toy training", stage_q3_toy),
    Stage("q3_default", Q3, "The default run", stage_q3_default),
    Stage("q3_tuning", Q3, "Tuning the hyperparameters", stage_q3_tuning),
    Stage("q3_tuned", Q3, "The tuned network", stage_q3_tuned),
    Stage("q4", Q4, "", stage_q4),
    Stage("summary", "Summary", "", stage_summary),
]


@dataclass
class ReportResult:
    """What :func:`reproduce` returns: the report folder ``out``, its ``markdown``
    (``report.md``), ``html`` (``report.html``) and ``json`` (``report.json``) files, the
    ``sections`` in report order (each with its ``status``, ``"ok"`` or ``"not run"`` with a
    ``reason``), ``seconds`` (the whole study's) and ``reused``, the keys of the sections kept
    from an earlier report (``reuse=True``)."""

    out: Path
    markdown: Path
    html: Path
    json: Path
    sections: list[Section]
    seconds: float  # the whole study's, the reused sections' earlier times included
    reused: tuple[str, ...] = ()  # keys of the sections kept from an earlier report

    def not_run(self) -> list[Section]:
        """The sections whose ``status`` is ``"not run"`` (failed, skipped or not selected)."""
        return [s for s in self.sections if s.status != "ok"]

    def __repr__(self) -> str:
        # a summary: the dataclass repr printed every section's text, tables and numbers (tens
        # of kilobytes for a notebook cell ending in reproduce(...)); the sections are the
        # attribute, the report is the file
        return (f"ReportResult(html={str(self.html)!r}, sections={len(self.sections)}, "
                f"not_run={[s.key for s in self.not_run()]!r}, seconds={self.seconds:.1f})")


def default_out(dataset: str, budget: str) -> Path:
    """``runs/report-<dataset>-<budget>`` (``runs/`` is where mlplab keeps its outputs)."""
    name = dataset.split(":", 1)[0] if dataset.startswith("folder:") else dataset
    if dataset.startswith("folder:"):
        from mlplab.data.base import user_path

        name = "folder-" + (user_path(dataset[7:]).resolve().name or "root")
    return Path(RUNS_ROOT) / f"report-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}-{budget}"


def reproduce(dataset: str = "digits", budget: str | Budget = "quick",
              out: str | Path | None = None, seed: int = 0, *, progress: bool = False,
              log: TextIO | bool = True, debug: bool = False,
              only: Sequence[str] | None = None, command: str | None = None,
              loader: Callable[[], Any] | None = None, threads: int = 1,
              reuse: bool = False, device: str = "cpu") -> ReportResult:
    """Run Questions 1-4 on ``dataset`` and write the report into ``out``.

    Parameters
    ----------
    dataset : ``digits`` (default, bundled), ``cifar10``, ``fashion-mnist``, ``mnist`` or
        ``folder:PATH``.
    budget : ``quick``, ``standard``, ``full`` or a :class:`Budget`.
    out : the report folder (made if need be); default :func:`default_out`,
        ``runs/report-<dataset>-<budget>``. An earlier report there is replaced whole (unless
        ``reuse``); a folder of a run, a tuning or a depth study is refused.
    seed : seeds the data splits, initialisation, sampling, tuning and PyTorch (the
        exercise's toy problem of Q1, Q2's two-layer check and the toy training keeps its own
        fixed draws), so the same seed gives the same numbers on the same machine and
        libraries (another CPU or BLAS rounds differently, and the runs then differ in the last
        digits or more).
    progress : tqdm bars inside long stages.
    log : where the progress line of each stage goes: True (standard error), False (nowhere)
        or a stream.
    debug : re-raise a failing stage's exception instead of marking the section "not run".
    only : run just these stage keys (the others are listed as "not run: not selected").
    threads : BLAS and PyTorch threads. The default 1 is the fastest for the exercise's small
        networks, keeps sums in one order (so numbers repeat exactly) and avoids the spin-waiting
        of multi-threaded BLAS on a busy machine; 2-4 help CIFAR-10 on dedicated cores.
    device : where Q4's PyTorch networks train (no other stage uses PyTorch): ``cpu`` (the
        default, so that a report repeats exactly on the same machine), ``cuda`` / ``cuda:N``
        (refused before any stage runs where PyTorch sees no such GPU, unless Q4 is not going to
        run: not in ``only``, or PyTorch not installed) or ``auto`` (a GPU when PyTorch sees one,
        else the CPU). The report says which device Q4 ran on, and the GPU's name.
    loader : a function returning the :class:`mlplab.data.Dataset` (e.g. with a data folder or
        split sizes); default ``load_dataset(dataset, seed=seed)``.
    reuse : with ``only``, keep the sections of the earlier report in ``out`` that are not run
        again (it must have used the same dataset, budget, seed, threads and device), e.g. to
        re-run one stage that failed.
    command : what the report names as the way to reproduce it (``mlplab reproduce`` passes its
        own command line); default: the equivalent ``mlplab reproduce`` command, or, for a
        custom :class:`Budget` or a ``loader``, this Python call.

    Returns
    -------
    ReportResult : the folder, the report's files and its sections.
    """
    from mlplab.data.datasets import check_dataset_name

    check_dataset_name(dataset)  # a typo stops here, not after Q1-Q3 and a report of gaps
    check_seed(seed, split=True)  # (the splits' too: 2**32 - 1 failed in the data stage)
    if seed is None:
        raise ValueError("seed must be an integer between 0 and 2**32 - 2 (a report is "
                         "repeatable); got None.")
    b = get_budget(budget)
    if not is_int(threads) or threads < 1:  # int() made 2.5 two threads, "2" a TypeError
        raise ValueError(f"threads must be a positive integer; got {threads!r}.")
    if only is not None:
        known = [st.key for st in STAGES]
        # a string would be read letter by letter, and [] or a typo ran nothing: each replaced
        # the report in out with one of sections marked "not run"
        if isinstance(only, str) or not list(only) or not set(only) <= set(known):
            raise ValueError(f"only must be a list of one or more stages from "
                             f"{', '.join(known)}; got {only!r}.")
        if missing := stages_without_data(only, reuse):
            raise ValueError(missing)  # as the command line refuses it, before anything is written
    device = _check_device(device, only)
    if reuse and only is None:  # as the command line refuses --reuse without --only
        raise ValueError("reuse=True keeps the sections that only=[...] does not run again; "
                         "without only every stage runs again and nothing is kept. Give "
                         "only=[STAGE, ...], or drop reuse=True.")
    out = out_folder(out) if out is not None else default_out(dataset, b.name)
    check_out_folder(out)
    if out.is_dir():
        from mlplab.runs.files import refuse_other_output

        # a run, tuning or depth-study folder: the report was written among its files, and
        # runs, evaluate and tune then took the mix for the other command's output
        refuse_other_output(out, skip=("report",), purpose="report")
    ctx = Context(out=out, dataset=dataset, budget=b, seed=int(seed), progress=progress,
                  loader=loader, threads=int(threads), device=device)
    ctx.only, ctx.reuse = (list(only) if only is not None else None), bool(reuse)
    # before the folder is made: a refused --reuse (a mistyped --out) leaves no empty folder
    earlier = _earlier_report(ctx) if reuse else None
    # without --reuse the earlier report is replaced whole: its files that this run does not
    # write again go (figures and tuning/ of stages not run sat beside a report saying so)
    ctx.replaced = _replaced_report(out) if not reuse else None
    _refuse_foreign_tuning(ctx, earlier)
    if earlier is not None and only is not None:
        _refuse_stale_kept(earlier, only)
    from mlplab.runs.files import first_missing_folder, remove_made_folders

    made = first_missing_folder(out)  # the folders made here, removed again below if empty
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file there or on the path: mkdir would say "[Errno 17] ..."
        raise ValueError(f"cannot make the report folder {out}: {why_no_folder(out, exc)}; "
                         f"choose another {setting('--out', 'out')}.") from exc
    from mlplab.runs.lock import run_lock

    try:
        # a second report into the same folder wiped the first's staging folder under it: the
        # first failed, and the folder ended with one's report beside the other's files
        with run_lock(out, new=True, doing="written") as lock:
            ctx.lock = lock  # what tells that the folder went (Context.check_folder)
            return _reproduce_in(ctx, only, debug, log, earlier, command)
    except BaseException:
        # a Ctrl-C or an error before the report was written left an empty folder (and an
        # empty runs/ made for it), as train_run does not: removed, each only while empty
        # (never one that was there before, nor one holding a file)
        remove_made_folders(out, made)
        raise


def _check_device(device: str, only: Sequence[str] | None) -> str:
    """``device`` normalised (``"CUDA"`` -> ``"cuda"``); a misspelt one is refused, and a GPU
    this machine does not have where Q4, the one stage that uses it, is going to run: before
    any stage, not after Q1-Q3 with a Q4 "not run". Where Q4 is not run (not in ``only``, or
    PyTorch not installed, which marks it "not run" anyway) no GPU is asked for: the setting
    still names the report's device, which ``reuse`` compares."""
    import importlib.util

    from mlplab._machine import parse_device

    device = parse_device(device)
    runs_q4 = only is None or "q4" in only
    if device != "cpu" and runs_q4 and importlib.util.find_spec("torch") is not None:
        from mlplab.torch_mlp.device import select_device

        select_device(device)  # (PyTorch's import, seconds, only where a GPU may be asked for)
    return device


def _reproduce_in(ctx: Context, only: Sequence[str] | None, debug: bool, log: TextIO | bool,
                  earlier: dict[str, Any] | None, command: str | None) -> ReportResult:
    """:func:`reproduce`'s work once its folder is made and locked."""
    from threadpoolctl import threadpool_limits

    out = ctx.out
    shutil.rmtree(ctx.staging, ignore_errors=True)  # what a stopped run had made
    (out / "errors.log").unlink(missing_ok=True)  # an earlier run's tracebacks are not this one's
    started = time.perf_counter()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if log is True:
        log = sys.stderr
    sections: list[Section] = []
    # SciPy's own OpenBLAS and scikit-learn's OpenMP: loaded now, so that the limit covers them
    import scipy.linalg  # noqa: F401
    import sklearn.metrics  # noqa: F401

    try:
        with threadpool_limits(limits=ctx.threads):
            _run_stages(ctx, sections, only, debug, log, earlier)
            total = time.perf_counter() - started
            if earlier is not None:
                total += sum(s.seconds for s in sections if s.key in ctx.reused)
            # inside the limits, so that the table shows the threads the stages ran with
            sections.append(_environment_section(ctx, sections, total, when, command))
        return _write(ctx, sections, total, when, command, earlier)
    except OSError as exc:
        # a write that failed as the folder went ("figures/data-samples.png: No such file or
        # directory"): said of the folder
        from mlplab.runs.files import RunFolderGoneError

        if not isinstance(exc, RunFolderGoneError):
            ctx.check_folder()
        raise
    finally:
        shutil.rmtree(ctx.staging, ignore_errors=True)


def _reuse() -> str:
    """How the messages name the reuse setting: ``--reuse`` on the command line, else
    ``reproduce``'s ``reuse=True``."""
    return setting("--reuse", "reuse=True")


def _named(key: str, value: Any) -> Any:
    """A report.json setting as a user names it: a budget by its name, not all its knobs."""
    return value.get("name") if key == "budget" and isinstance(value, dict) else value


def _as_given(key: str, value: Any) -> str:
    """A report setting as the user gives it: ``--seed 0`` (``seed=0`` from Python)."""
    return setting(f"--{key} {value}", f"{key}={value!r}")


def _earlier_report(ctx: Context) -> dict[str, Any]:
    from mlplab.io import read_json

    path = ctx.out / "report.json"
    if not path.is_file():
        raise ValueError(f"{_reuse()}: there is no earlier report in {ctx.out} (no "
                         "report.json).")
    doc = read_json(path)
    # once, here: a damaged file (edited by hand, cut short) was met as Python's internals
    # ("'list' object has no attribute 'get'"), or as a setting to change that it already had
    problem = _report_problem(doc)
    if problem is None:
        try:
            loaded = dict(_load_sections(doc))
        except (KeyError, TypeError, ValueError, AttributeError):  # (its blocks, mostly)
            problem = "a section's contents cannot be read"
    if problem is not None:
        raise ValueError(f"{_reuse()}: {path} is not a report mlplab wrote (damaged? "
                         f"{problem}); run without {_reuse()} into another "
                         f"{setting('--out', 'out')}, or move {ctx.out} away.")
    mine = {"dataset": ctx.dataset, "budget": ctx.budget.to_dict(), "seed": ctx.seed,
            "threads": ctx.threads, "device": ctx.device}
    theirs = {k: doc.get(k) for k in mine}
    theirs["device"] = doc.get("device", "cpu")  # a report before --device: Q4 on the CPU
    theirs["budget"] = theirs["budget"] and {k: tuple(v) if isinstance(v, list) else v
                                             for k, v in theirs["budget"].items()}
    diff = [k for k in mine if mine[k] != theirs[k]]
    if diff:
        # "run without --reuse" alone sent the user to replace the whole earlier report with
        # one of the --only stages: say how to match it, and where a new report may go
        was = {k: _named(k, theirs[k]) for k in diff}
        raise ValueError(f"{_reuse()}: the earlier report in {ctx.out} used a different "
                         f"{', '.join(diff)} ({', '.join(f'{k}={v}' for k, v in was.items())}); "
                         f"its sections would not match. Give "
                         f"{' '.join(_as_given(k, v) for k, v in was.items())} to keep them, or "
                         f"run without {_reuse()} into another {setting('--out', 'out')} "
                         f"(without it, the report in {ctx.out} would be replaced by one of "
                         "these stages alone).")
    _recorded_environment(doc, loaded)
    doc["loaded"] = loaded
    return doc


def _recorded_environment(doc: dict[str, Any], loaded: dict[str, Section]) -> None:
    """Give each section of a report.json written before 30 Nov 2026 (its origins record no
    environment) that the command which wrote the file computed the environment of that file's
    own table: compared as a newer origin's is, so the introduction names the other mlplab,
    CPU or libraries that made a kept section, rather than taking them for this run's. A
    section that run had itself kept from an older one stays without (no table recorded it)."""
    table = doc["sections"].get("environment", {}).get("data", {}).get("items")
    if not isinstance(table, dict):
        return
    recorded = {k: str(v) for k, v in table.items() if k in _NUMERIC_ROWS}
    for section in loaded.values():
        origin = section.origin
        if "environment" not in origin and (origin.get("command"), origin.get("date")) == (
                doc.get("command"), doc.get("date")):
            section.origin = {**origin, "environment": recorded}


def _report_problem(doc: Any) -> str | None:
    """What makes ``doc`` (a report.json read back) not a report that :func:`_write` wrote
    (None if nothing does): its settings and sections of the wrong kind or missing."""
    if not isinstance(doc, dict):
        return f"it holds {_json_kind(doc)}, not an object"
    for key, kind in (("dataset", str), ("budget", dict), ("seed", int), ("threads", int),
                      ("sections", dict)):
        value = doc.get(key)
        if key not in doc:
            return f"it has no {key}"
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"its {key} is {_json_kind(value)}"
    if not isinstance(doc["budget"].get("name"), str):
        return "its budget has no name"
    if "device" in doc:  # (a report written before --device has none: its Q4 ran on the CPU)
        from mlplab._machine import parse_device

        device = doc["device"]
        try:  # as mlplab writes it: spelt right, and normalised
            written = isinstance(device, str) and parse_device(device) == device
        except ValueError:
            written = False
        if not written:
            return "its device is not cpu, cuda, cuda:N or auto"
    fields = (("group", str), ("title", str), ("status", str), ("reason", str),
              ("seconds", int | float), ("data", dict), ("blocks", list))
    for key, section in doc["sections"].items():
        if not isinstance(section, dict):
            return f"its section {key} is {_json_kind(section)}"
        for name, kinds in fields:
            if not isinstance(section.get(name), kinds):
                return f"its section {key} has no {name} of the right kind"
        origin = section.get("origin")
        if origin is not None and not (isinstance(origin, dict) and all(
                isinstance(origin.get(k), str) for k in ("command", "date"))):
            return f"its section {key} has no origin of the right kind"
    return None


def _json_kind(value: Any) -> str:
    """What JSON ``value`` is, in words (its value would repeat a whole damaged file)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    for kind, words in ((str, "a string"), (int | float, "a number"), (list, "a list"),
                        (dict, "an object")):
        if isinstance(value, kind):
            return words
    return type(value).__name__


#: the files of a report, which a new report in the same folder replaces
REPORT_FILES = ("report.md", "report.html", "report.json")


def _replaced_report(out: Path) -> dict[str, Any] | None:
    """The report in ``out`` that a report written there replaces (None if there is none);
    refused when the folder holds a ``report.md`` or ``report.html`` that mlplab did not write,
    which was overwritten without a word."""
    from mlplab.io import read_json

    try:
        doc = read_json(out / "report.json")
    except (OSError, ValueError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("sections"), dict):
        return doc
    theirs = [name for name in REPORT_FILES if (out / name).exists()]
    if theirs:
        raise ValueError(f"{out} holds {' and '.join(theirs)}, not an mlplab report's (no "
                         "readable report.json beside it), which the report would replace; "
                         f"choose another {setting('--out', 'out')}, or move "
                         f"{'them' if len(theirs) > 1 else 'it'} aside.")
    return None


def _refuse_foreign_tuning(ctx: Context, earlier: dict[str, Any] | None) -> None:
    """Refuse a ``tuning/`` in the folder that no mlplab report there made, where this run's
    search would replace it: a user's own ``mlplab tune --out FOLDER/tuning`` was deleted
    without a word."""
    searches = ctx.only is None or "q3_tuning" in ctx.only
    tuning = ctx.out / "tuning"
    owner = ctx.replaced if ctx.replaced is not None else earlier
    if searches and os.path.lexists(tuning) and not (owner is not None and _owns_tuning(owner)):
        whose = ("its report.json does not list it as the report's" if owner is not None else
                 "no report.json there says so")
        raise ValueError(f"{tuning} is not a search this folder's report made ({whose}), and "
                         "the report's own search would replace it; choose another "
                         f"{setting('--out', 'out')}, or move it aside.")


def _run_stages(ctx: Context, sections: list[Section], only: Sequence[str] | None, debug: bool,
                log: TextIO | bool, earlier: dict[str, Any] | None = None) -> None:
    for i, stage in enumerate(STAGES, 1):
        ctx.check_folder()  # (a stage can take hours: the folder may have gone meanwhile)
        label = f"[{i}/{len(STAGES)}] {stage.title or stage.group}"
        section = Section(stage.key, stage.group, stage.title)
        old = (earlier or {}).get("loaded", {}).get(stage.key)
        kept = only is not None and stage.key not in only and old is not None and \
            old.status == "ok"
        if kept and stage.key in _DERIVED:
            # made from the other sections alone, in no time: kept, it still said "not run"
            # of the stage that --only ran again (--only q4 --reuse after a failed Q4)
            kept, selected = False, True
        else:
            selected = only is None or stage.key in only
        if kept:
            section = old
            ctx.reused.add(stage.key)
            _restore(ctx, stage.key, old, only or ())  # (kept: only was given)
            _print(log, f"reproduce {label}: reused from the earlier report")
        elif not selected:
            section.status = "not run"
            section.reason = f"not selected ({setting('--only', 'only=[...]')})."
        else:
            _print(log, f"reproduce {label} ...")
            t0, c0 = time.perf_counter(), time.process_time()
            figures_before = _staged_figures(ctx)
            try:
                stage.run(ctx, section)
            except StageSkipped as exc:
                section.status, section.reason = "not run", str(exc)
            except Exception as exc:
                # not a failed stage but a folder gone (which its error may not say): the run
                # stops, and errors.log is not written into a folder made again
                ctx.check_folder()
                if debug:
                    raise
                section.status = "not run"
                section.reason = f"failed with {type(exc).__name__}: {exc}"
                _append_error_log(ctx.out, stage.key, traceback.format_exc())
            if section.status != "ok":
                # what the stage had made before it failed: its text pointing at a table it
                # never wrote, its numbers, and figures that no section would list
                section.blocks, section.data = [], {}
                for name in _staged_figures(ctx) - figures_before:
                    (ctx.staging / ctx.FIGURES / name).unlink(missing_ok=True)
            section.seconds = time.perf_counter() - t0
            section.cpu_seconds = time.process_time() - c0
            if stage.key == "data" and section.status == "ok" and earlier is not None and \
                    _kept_data_users(earlier, only):
                _check_same_data(ctx, (earlier.get("loaded") or {}).get("data"))
            # the reason last: it ends with a full stop and may hold brackets of its own
            # ("NOT RUN (needs ..., not produced (see above).) in 0.0 s" read badly)
            state = "done" if section.status == "ok" else "NOT RUN"
            why = f": {section.reason}" if section.status != "ok" else ""
            _print(log, f"reproduce {label}: {state} in {seconds(section.seconds)} "
                        f"(CPU {seconds(section.cpu_seconds)}){why}")
        ctx.sections[stage.key] = section
        sections.append(section)
        if interrupts.requested():  # asked to stop (a Ctrl-C a stage or Python swallowed)
            raise KeyboardInterrupt


#: the stages made from the other sections alone (no data, no training): with reuse, where
#: the earlier report has one, they are made again from the sections kept and run
_DERIVED = ("summary",)

#: the stages made from another stage's result: kept while that stage runs again, a section
#: would contradict the new one (the tuned network of the earlier search under a new search)
_MADE_FROM = {"q3_tuned": "q3_tuning"}


def _refuse_stale_kept(earlier: dict[str, Any], only: Sequence[str]) -> None:
    """With reuse, refuse to keep a section of the earlier report that was made from a stage
    this call runs again (:data:`_MADE_FROM`)."""
    for stage, source in _MADE_FROM.items():
        old = earlier.get("loaded", {}).get(stage)
        if source in only and stage not in only and old is not None and old.status == "ok":
            flag = setting("--only", "only=[...]")
            raise ValueError(f"{_reuse()} would keep the earlier report's {stage} section, made "
                             f"from the {source} stage that this {setting('command', 'call')} "
                             f"runs again; add {stage} to {flag} as well (it trains the tuned "
                             "network again from the new search).")


#: the stages that train on the dataset (which the data stage loads)
_DATA_USERS = ("q3_default", "q3_tuning", "q3_tuned", "q4")


def stages_without_data(only: Sequence[str], reuse: bool) -> str | None:
    """Why ``only`` cannot run, or None: a stage that trains on the dataset without the data
    stage that loads it (and without ``reuse``, which loads it again for the earlier report's
    kept data section) could only be marked "not run", and the report it replaced lost."""
    users = [k for k in _DATA_USERS if k in only]
    if not users or "data" in only or reuse:
        return None
    flag, keep = setting("--only", "only=[...]"), setting("--reuse", "reuse=True")
    verb = "needs" if len(users) == 1 else "need"
    return (f"{', '.join(users)} in {flag} {verb} the dataset, which the data stage loads: add "
            f"data to {flag}, or add {keep} to keep the sections of the report already in the "
            "folder (its data stage's included).")


def _kept_data_users(earlier: dict[str, Any], only: Sequence[str] | None) -> list[str]:
    """The earlier report's sections computed on its data that this run keeps."""
    loaded = earlier.get("loaded") or {}
    return [k for k in _DATA_USERS if only is not None and k not in only
            and k in loaded and loaded[k].status == "ok"]


def _restore(ctx: Context, key: str, old: Section, only: Sequence[str]) -> None:
    """What a reused section's stage would have handed to the stages run again: the dataset
    (loaded again, and checked to be the one the earlier report used) and the search's best
    settings, so that the tuned network is the search's, not only the preset."""
    if key == "data" and any(k in only for k in _DATA_USERS):
        from mlplab.data import load_dataset

        ctx.shared["dataset"] = ctx.loader() if ctx.loader is not None else \
            load_dataset(ctx.dataset, seed=ctx.seed)
        _check_same_data(ctx, old)
    elif key == "q3_tuning" and "best_settings" in old.data:
        ctx.shared["tuning"] = {"settings": dict(old.data["best_settings"]), "result": None}


def _check_same_data(ctx: Context, old: Section | None) -> None:
    """With --reuse, refuse data whose splits are not the earlier report's: its kept sections
    were computed on those (other --val-size, --test-size, --image-size, --data-dir)."""
    if old is None or old.status != "ok" or "dataset" not in ctx.shared:
        return
    ds = ctx.shared["dataset"]
    now = {"name": ds.name, "image_shape": list(ds.image_shape), "classes": list(ds.classes),
           "sizes": {s: len(ds.split(s)[1]) for s in ("train", "val", "test")}}
    if "splits" in old.data:
        from mlplab.runs import split_record

        now["splits"] = split_record(ds)
    then = {k: old.data.get(k) for k in now}
    diff = [k for k in now if then[k] is not None and then[k] != now[k]]
    if diff:
        shown = [f"{k}={now[k]}" for k in diff if k != "splits"] + \
            (["other images"] if "splits" in diff else [])
        same = setting("Give the same data options", "Load the same data (loader)")
        raise ValueError(f"{_reuse()}: this {setting('command', 'call')}'s data differ from the "
                         f"earlier report's in {', '.join(diff)} (now {'; '.join(shown)}); its "
                         f"kept sections would not match. {same}, or run without {_reuse()}.")


def _staged_figures(ctx: Context) -> set[str]:
    folder = ctx.staging / ctx.FIGURES
    return {f.name for f in folder.iterdir()} if folder.is_dir() else set()


def _print(log: TextIO | bool, line: str) -> None:
    if log not in (True, False):
        print(line, file=cast("TextIO", log), flush=True)  # not True or False: a stream


def _append_error_log(out: Path, key: str, text: str) -> None:
    # printable: a traceback naming a path that is not UTF-8 (a Latin-1 --out; any non-ASCII one
    # under an ASCII locale) holds lone surrogates, which UTF-8 refused, and the whole command
    # ended there with "surrogates not allowed", its report never written
    with open(out / "errors.log", "a", encoding="utf-8") as fh:
        fh.write(printable(f"--- stage {key}\n{text}\n"))


def _command(ctx: Context, command: str | None) -> str:
    """What the report says reproduces it: the command line given, else the one equivalent to
    this call, or, where none is (a custom :class:`Budget`, a ``loader``), the Python call."""
    if command:
        return command
    named = BUDGETS.get(ctx.budget.name) == ctx.budget
    if not named or ctx.loader is not None:
        # "--budget tiny" is no command line's budget (argparse refuses it), and a custom
        # Budget("quick", ...) is not the quick one; the loader's data options are unknown here
        args = [repr(ctx.dataset), repr(ctx.budget.name) if named else
                f"mlplab.report.{ctx.budget!r}", f"out={str(ctx.out)!r}",
                f"seed={ctx.seed}", f"threads={ctx.threads}"]
        if ctx.device != "cpu":
            args.append(f"device={ctx.device!r}")
        if ctx.only is not None:
            args.append(f"only={ctx.only!r}")
        if ctx.reuse:
            args.append("reuse=True")
        if ctx.loader is not None:
            args.append(f"loader={getattr(ctx.loader, '__qualname__', 'your loader')}")
        return f"mlplab.report.reproduce({', '.join(args)})"
    parts = ["mlplab", "reproduce", "--dataset", ctx.dataset, "--budget", ctx.budget.name,
             "--seed", str(ctx.seed), "--threads", str(ctx.threads), "--out", path_word(ctx.out)]
    if ctx.device != "cpu":  # (the default: commands of reports before --device stay as they were)
        parts += ["--device", ctx.device]
    if ctx.only is not None:
        parts += ["--only", ",".join(ctx.only)]
    if ctx.reuse:
        parts.append("--reuse")
    return shell_command(parts)


def _environment_section(ctx: Context, sections: list[Section], total: float, when: str,
                         command: str | None) -> Section:
    s = Section("environment", "Environment", "")
    kept = [sec.title or sec.group for sec in sections if sec.key in ctx.reused]
    if kept:
        # the table is this command's: a library it did not load (PyTorch, for a kept Q4) shows
        # as "not loaded" beside a kept section that used it
        s.add(Text(f"The table describes this command's run. The {counted(len(kept), 'section')} "
                   f"kept from the earlier run ({', '.join(kept)}) were computed by that run, "
                   "with the same seed, budget, threads and device setting; a difference in "
                   "versions, CPU or the device Q4 ran on is named in the introduction."))
    s.add(KeyValues([("command", md_code(_command(ctx, command))), ("date", when),
                     ("seed", f"{ctx.seed} (splits, weights, minibatches, tuning sampler, "
                              "PyTorch; the exercise's toy checks keep its fixed draws)"),
                     ("threads", f"{ctx.threads} (BLAS and PyTorch)"),
                     ("device", _device_row(ctx, sections)),
                     # (no pruner, no cap on the training images: "none", as --prune says)
                     ("budget", ", ".join(f"{k}={'none' if v is None else v}"
                                          for k, v in ctx.budget.to_dict().items()
                                          if k != "extra"))]
                    + _environment_rows(env.environment()), "Versions, hardware and settings"))
    rows = [[sec.title or sec.group,
             sec.status + (" (reused from the earlier run)" if sec.key in ctx.reused else ""),
             seconds(sec.seconds), seconds(sec.cpu_seconds)] for sec in sections]
    # the total is the command's wall time: what no stage counts (imports, the probes of the
    # environment above) has a row, or the stages' times did not add up to it
    outside = total - sum(sec.seconds for sec in sections)
    if outside >= 0.05:
        rows.append(["outside the stages (imports, environment)", "", seconds(outside), "—"])
    rows.append(["**total**", "", seconds(total), seconds(sum(s.cpu_seconds for s in sections))])
    s.add(Table(["stage", "status", "wall time", "CPU time"], rows,
                "Wall time and CPU time (all threads) of each stage"))
    s.data.update(items=dict(env.environment()), device=_q4_device(ctx, sections),
                  stage_seconds={sec.key: sec.seconds for sec in sections}, total_seconds=total)
    return s


def _q4_device(ctx: Context, sections: list[Section]) -> dict[str, Any]:
    """The device setting (``asked``) and the one Q4 ran on (``q4``: ``cpu``, ``cuda:N``, None
    where Q4 did not run) with the GPU's name (``gpu``, None but on a GPU)."""
    q4 = next((s for s in sections if s.key == "q4"), None)
    ran = None
    if q4 is not None and q4.status == "ok":
        ran = q4.data.get("device", "cpu")  # a Q4 kept from a report before --device: the CPU
    return {"asked": ctx.device, "q4": ran,
            "gpu": q4.data.get("gpu") if q4 is not None and ran is not None else None}


def _device_row(ctx: Context, sections: list[Section]) -> str:
    """The environment table's device: where Q4 ran (and on which GPU), and the setting."""
    d = _q4_device(ctx, sections)
    asked = _as_given("device", ctx.device)
    if d["q4"] is None:
        return f"{ctx.device} ({asked}; Q4, the only stage on this device, did not run)"
    where = f"{d['q4']}, {md_literal(d['gpu'])}" if d["gpu"] else d["q4"]
    kept = ", kept from the earlier run" if "q4" in ctx.reused else ""
    return f"{where} (Q4's PyTorch networks; {asked}{kept})"


#: the rows of the environment table that are the machine's own text (a CPU model, BLAS
#: libraries, an environment variable), not mlplab's, which may hold Markdown's characters
_FREE_TEXT_ROWS = ("platform", "CPU", "BLAS threads", "OMP_NUM_THREADS")


def _environment_rows(items: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``items`` (of the environment table) with its free text escaped for Markdown, as GPU
    names are: a CPU model's ``*`` or ``_`` read as emphasis (the table escapes only ``|``)."""
    # (an earlier report's record, read back from its JSON, may hold a value of another kind)
    return [(k, md_literal(v) if k in _FREE_TEXT_ROWS and isinstance(v, str) else v)
            for k, v in items]


#: the rows of the environment table on which a section's numbers depend
_NUMERIC_ROWS = ("mlplab", "CPU", "numpy", "scipy", "scikit-learn", "optuna", "torch")


def _numeric_environment() -> dict[str, str]:
    return {k: v for k, v in env.environment() if k in _NUMERIC_ROWS}


def _other_environments(sections: list[Section], reused: set[str], here: dict[str, str],
                        device: str) -> tuple[list[str], list[str]]:
    """For each reused section computed where another mlplab, CPU or library version ran (its
    origin's record against ``here``), or a kept Q4 that ran on another device than ``device``
    (the setting) gives here: its name and what differed; and the names of the reused sections
    whose environment nothing recorded (an mlplab before 30 Nov 2026 recorded only that of the
    run that wrote the report, not of a section it kept from an older one)."""
    found: list[str] = []
    unknown: list[str] = []
    for sec in sections:
        if sec.key not in reused:
            continue
        then = sec.origin.get("environment")
        changed = []
        if isinstance(then, dict):
            # (in the introduction's Markdown: a CPU model escaped, as in the table)
            changed = env.numeric_differences(dict(_environment_rows(list(then.items()))),
                                              dict(_environment_rows(list(here.items()))),
                                              _NUMERIC_ROWS)
        else:
            unknown.append(sec.title or sec.group)
        # (Q4's own record: a report before 30 Nov 2026 has it too)
        if sec.key == "q4" and sec.status == "ok":
            ran = device_words(sec.data.get("device", "cpu"), sec.data.get("gpu"))
            # the setting matched (--reuse compares it), but auto is a GPU on one machine and
            # the CPU on another, and cuda:0 another GPU
            now = ran if device == "cpu" else _device_here(device)
            if now != ran:
                changed.append(f"device {ran} -> {now}")
        if changed:
            found.append(f"{sec.title or sec.group} ({', '.join(changed)})")
    return found, unknown


def _device_here(device: str) -> str:
    """Where Q4 would train here with the setting ``device`` (not ``cpu``), in
    :func:`~mlplab.report.stages_torch.device_words`'s words, or why it could not."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "PyTorch not installed here"
    from mlplab.torch_mlp.device import device_record, select_device

    try:
        used = device_record(select_device(device))
    except ValueError:  # (a GPU this machine lacks: Q4 was not run, so nothing refused it)
        return "no such GPU here"
    return device_words(used["device"], used.get("gpu"))


def _write(ctx: Context, sections: list[Section], total: float, when: str,
           command: str | None, earlier: dict[str, Any] | None = None) -> ReportResult:
    from mlplab.io import write_json

    title = f"mlplab study report: {ctx.dataset}, {ctx.budget.name} budget"
    intro = [
        f"Questions 1 to 4 of the \"Deep Neural Network and Backpropagation\" exercise, reproduced "
        f"by {md_code(_command(ctx, command))} on {when} in {seconds(total)} (CPU time "
        f"{seconds(sum(s.cpu_seconds for s in sections))}; seed {ctx.seed}, and the same seed "
        "gives the same numbers on the same machine, versions, thread count and device).",
    ]
    here = _numeric_environment()
    for sec in sections:
        if not sec.origin:
            sec.origin = {"command": _command(ctx, command), "date": when, "environment": here}
    if ctx.reused:
        runs: dict[tuple[str, str], list[str]] = {}
        for sec in sections:
            if sec.key in ctx.reused:
                runs.setdefault((sec.origin["command"], sec.origin["date"]), []).append(
                    sec.title or sec.group)
        intro.append("Sections kept from earlier runs (same dataset, budget, seed, threads and "
                     "device setting; times include theirs): " + "; ".join(
                         f"{', '.join(names)} from {md_code(cmd)} of {date}"
                         for (cmd, date), names in runs.items()) + ".")
        elsewhere, unknown = _other_environments(sections, ctx.reused, here, ctx.device)
        if elsewhere:
            intro.append("Of those, computed with another environment than this run's: "
                         + "; ".join(elsewhere) + ". Their figures may differ in the last "
                         "digits from the ones a single run here would give.")
        if unknown:
            intro.append("Of those, computed with an environment that the earlier report does "
                         "not record (an mlplab before 30 Nov 2026 recorded only its own run's): "
                         + "; ".join(unknown) + ". Their figures may differ in the last digits "
                         "from the ones a single run here would give.")
    skipped = [s for s in sections if s.status != "ok"]
    if skipped:
        intro.append("Not run: " + "; ".join(f"{s.title or s.group} ({md_literal(s.reason)})"
                                               for s in skipped))
    js = ctx.out / "report.json"
    doc = {
        "title": title, "intro": intro,
        "dataset": ctx.dataset, "budget": ctx.budget.to_dict(), "seed": ctx.seed,
        "threads": ctx.threads, "device": ctx.device, "command": _command(ctx, command),
        "date": when,
        "seconds": total,
        "sections": {s.key: {"group": s.group, "title": s.title, "status": s.status,
                             "reason": s.reason, "seconds": s.seconds,
                             "cpu_seconds": s.cpu_seconds, "origin": s.origin,
                             "data": s.data,
                             "figures": s.figures(),
                             "blocks": [block_to_dict(b) for b in s.blocks]}
                     for s in sections},
    }
    if interrupts.requested():  # a Ctrl-C that Python dropped: the user asked to stop
        raise KeyboardInterrupt
    # the report, its figures and tuning/ change together: Ctrl-C waits until all are written
    # whether tuning/ is this report's: its search made it now, or a kept search made it
    # (with --reuse nothing of the earlier report's is removed: its tuning/ stays its own)
    doc["owns_tuning"] = (ctx.staging / "tuning").is_dir() or (
        earlier is not None and _owns_tuning(earlier))
    with interrupts.deferred():
        ctx.check_folder()  # each write below would make a folder gone meanwhile again
        moves: list[tuple[Path, Path]] = []
        try:
            stale, repoint = _move_staged(ctx, moves)
            if repoint is not None:  # (a write too: undone with the rest if it fails)
                _repoint(*repoint)
            ctx.check_folder()
            write_json(js, doc)
        except BaseException:
            # (a full disk): the earlier report.json stays, so do its figures and search
            _undo(moves)
            raise
        # (render() makes them again)
        md, html = _render(ctx.out, title, intro, sections, ctx.check_folder)
        # only once the new report is written: a failed write or a kill before it left the
        # earlier report.json naming figures and a search already deleted
        _remove(stale)
    return ReportResult(ctx.out, md, html, js, sections, total,
                        tuple(s.key for s in sections if s.key in ctx.reused))


def _move_staged(ctx: Context, moves: list[tuple[Path, Path]]
                 ) -> tuple[list[Path], tuple[Path, str, str] | None]:
    """Put this run's figures and tuning/ in place of the earlier report's, the replaced ones
    set aside in the staging folder, adding each move to ``moves`` as it is made (``_undo``
    reverts them, those before a failure midway included). Returns what of
    the earlier report is left to remove once the new one is written (where it replaces the
    earlier report whole, ``ctx.replaced``: the earlier figures it does not draw again and the
    earlier search's tuning/ if it has none; only what that report listed, or made), and the
    :func:`_repoint` that the moved search's summary needs."""
    staged = ctx.staging / ctx.FIGURES

    def move(src: Path, dst: Path) -> None:
        os.replace(src, dst)
        moves.append((src, dst))

    stale: list[Path] = []
    if ctx.replaced is not None:
        for section in ctx.replaced["sections"].values():
            for rel in (section.get("figures") or []) if isinstance(section, dict) else []:
                name = Path(str(rel)).name
                if str(rel) == f"{ctx.FIGURES}/{name}" and not (staged / name).exists():
                    stale.append(ctx.out / ctx.FIGURES / name)
    if staged.is_dir():
        (ctx.out / ctx.FIGURES).mkdir(exist_ok=True)
        aside = ctx.staging / "figures-old"
        aside.mkdir(exist_ok=True)
        for f in sorted(staged.iterdir()):
            if (ctx.out / ctx.FIGURES / f.name).exists():
                move(ctx.out / ctx.FIGURES / f.name, aside / f.name)
            move(f, ctx.out / ctx.FIGURES / f.name)
    tuning = ctx.staging / "tuning"
    old = ctx.out / "tuning"
    repoint = None
    if tuning.is_dir():
        if old.exists():
            move(old, ctx.staging / "tuning-old")  # removed with the staging folder
        move(tuning, old)
        repoint = (old / "summary.json", str(tuning), str(old))
    elif ctx.replaced is not None and old.is_dir() and _owns_tuning(ctx.replaced):
        stale.append(old)
    return stale, repoint


def _owns_tuning(report: dict[str, Any]) -> bool:
    """Whether the tuning/ beside ``report`` (a report.json) is that report's: it says so, or,
    written before it did, its search ran."""
    if "owns_tuning" in report:
        return report["owns_tuning"] is True
    searched = report.get("sections", {}).get("q3_tuning")
    # (a search that failed after making its folder had it moved into place as well)
    return isinstance(searched, dict) and (
        searched.get("status") == "ok" or str(searched.get("reason", "")).startswith("failed"))


def _undo(moves: Sequence[tuple[Path, Path]]) -> None:
    """Put back what :func:`_move_staged` moved, last first."""
    for src, dst in reversed(moves):
        with contextlib.suppress(OSError):
            os.replace(dst, src)


def _remove(paths: Sequence[Path]) -> None:
    """Delete these files and folders, what is already gone included."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _repoint(path: Path, before: str, after: str) -> None:
    """Rewrite the paths under ``before`` that the JSON file ``path`` records (the study's
    summary names its storage and files) to lie under ``after``, where they were moved."""
    from mlplab.io import read_json, write_json

    # the study's storage URL is written as SQLAlchemy renders it, with a path's non-ASCII and
    # reserved characters percent-encoded: a plain replace missed it under an --out like "rép"
    pairs = [(before, after)]
    # (a path that is not UTF-8 has no URL form: its study is a journal file, see stage_q3_tuning)
    with contextlib.suppress(UnicodeEncodeError):
        pairs.append((_as_in_url(before), _as_in_url(after)))

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            for old, new in pairs:
                value = value.replace(old, new)
            return value
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    if path.is_file():
        write_json(path, fix(read_json(path)))


def _as_in_url(path: str) -> str:
    """``path`` as the database of a SQLAlchemy URL is written (``StorageSpec.display``)."""
    from sqlalchemy.engine import URL

    prefix = "sqlite:///"
    return URL.create("sqlite", database=path).render_as_string(hide_password=False)[len(prefix):]


def _render(out: Path, title: str, intro: list[str], sections: list[Section],
            check: Callable[[], None] = lambda: None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html``, each after ``check`` (that the folder is
    still there: the writes would make it again)."""
    from mlplab.io import write_text

    md, html = out / "report.md", out / "report.html"
    markdown = to_markdown(title, intro, sections)
    check()
    write_text(md, markdown)
    page = to_html(title, intro, sections, out)  # (reads the figures: they are embedded)
    check()
    write_text(html, page)
    return md, html


def render(out: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` again from ``out/report.json`` (e.g. after a
    change of the renderer) without running anything."""
    from mlplab.io import read_json

    out = Path(out)
    doc = read_json(out / "report.json")
    return _render(out, doc["title"], doc["intro"], [s for _, s in _load_sections(doc)])


def _load_sections(doc: dict[str, Any]) -> list[tuple[str, Section]]:
    return [(key, Section(key, s["group"], s["title"], [block_from_dict(b) for b in s["blocks"]],
                          s["data"], s["status"], s["reason"], s["seconds"],
                          s.get("cpu_seconds", 0.0),
                          s.get("origin") or {"command": doc["command"], "date": doc["date"]}))
            for key, s in doc["sections"].items()]


__all__ = ["STAGES", "ReportResult", "Stage", "default_out", "render", "reproduce"]
