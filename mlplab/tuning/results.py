"""The outputs of a search: every trial as a table (:func:`trials_table`), written as
``results.csv`` and ``results.md`` with the best trial in bold, and Optuna's plots as PNG files
(:func:`write_plots`). It only reads the study and writes files, apart from searching and
retraining.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplab.tuning.quiet import quiet_optuna_warnings
from mlplab.tuning.study import best_so_far, recorded_trials

if TYPE_CHECKING:
    import optuna


def trials_table(study: optuna.Study) -> tuple[list[str], list[list[Any]]]:
    """``(header, rows)``: one row per trial (but those given up as surplus, which ran
    nothing), every parameter as a column."""
    trials = recorded_trials(study)
    names: list[str] = []
    for t in trials:
        for n in t.params:
            if n not in names:
                names.append(n)
    header = ["trial", "state", "val_acc", "epochs_run", "seconds", *names, "worker", "note"]
    retried = {t.system_attrs["failed_trial"]: t.number for t in trials
               if "failed_trial" in t.system_attrs}
    rows = []
    for t in trials:
        seconds = t.user_attrs.get("seconds")
        # (not a failed trial's: a killed worker's ends when a later search fails it)
        if seconds is None and t.duration is not None and t.state.name != "FAIL":
            seconds = round(t.duration.total_seconds(), 3)
        epochs = t.user_attrs.get("epochs", len(t.intermediate_values) or None)
        notes = []
        if t.user_attrs.get("diverged"):
            notes.append("diverged")
        if "failed_trial" in t.system_attrs:
            notes.append(f"retry of trial {t.system_attrs['failed_trial']}")
        if t.state.name == "FAIL":
            if "error" in t.user_attrs:
                notes.append(t.user_attrs["error"])
            elif t.number in retried:
                notes.append(f"worker lost (its process ended or its heartbeat stopped); "
                             f"re-queued as trial {retried[t.number]}")
            else:
                notes.append("worker lost or interrupted")
        rows.append([t.number, t.state.name, t.value, epochs, seconds,
                     *[t.params.get(n) for n in names], t.user_attrs.get("worker", ""),
                     "; ".join(notes)])
    return header, rows


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4f}" \
            .rstrip("0").rstrip(".")
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]], best: int | None) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [_fmt(v) for v in row]
        if best is not None and row[0] == best:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_plots(study: optuna.Study, out: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Optuna's optimisation-history, parallel-coordinate and parameter-importance plots as PNG
    files; returns ``(written, skipped)`` where ``skipped`` says why a plot was not drawn."""
    from mlplab._matplotlib import plt  # first (Ctrl-C held back while Matplotlib is imported)

    # isort: split
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    from mlplab.io import atomic_path

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [n for n in {k for t in complete for k in t.params}
              if len({json.dumps(t.params.get(n), default=str) for t in complete}) > 1]
    plots: dict[str, tuple[Callable, str | None]] = {
        "optimization_history": (ovm.plot_optimization_history,
                                 None if complete else "no completed trials yet"),
        "parallel_coordinate": (ovm.plot_parallel_coordinate,
                                None if complete else "no completed trials yet"),
        "param_importances": (
            ovm.plot_param_importances,
            None if len(complete) >= 2 and varied else
            "needs at least 2 completed trials whose parameters differ"),
    }
    written: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for name, (plot, reason) in plots.items():
        path = out / f"{name}.png"
        if reason is not None:
            skipped[name] = reason
            continue
        open_before = set(plt.get_fignums())
        try:
            with quiet_optuna_warnings(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax.flat[0] if isinstance(ax, np.ndarray) else ax).figure
            width = 8 if name != "parallel_coordinate" else max(8, 1.3 * (len(varied) + 1))
            fig.set_size_inches(width, 5.5)
            fig.tight_layout()
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, dpi=110, format="png")
            written[name] = path
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            # e.g. an importance evaluator that cannot fit constant values
            skipped[name] = f"{type(exc).__name__}: {exc}"
        finally:
            # the figures this plot made, however it ended (a Ctrl-C mid-drawing left one open,
            # which a notebook then showed under the traceback); never the caller's own
            for number in set(plt.get_fignums()) - open_before:
                plt.close(number)
    return written, skipped


def write_results(study: optuna.Study, out: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """``results.csv`` and ``results.md`` (every trial) plus the plots; returns written files
    and skipped plots with reasons."""
    from mlplab.io import write_csv, write_text

    header, rows = trials_table(study)
    best, _ = best_so_far(study)
    files = {"csv": write_csv(out / "results.csv", header, rows),
             "markdown": write_text(out / "results.md", markdown_table(header, rows, best))}
    plots, skipped = write_plots(study, out)
    files.update(plots)
    return files, skipped
