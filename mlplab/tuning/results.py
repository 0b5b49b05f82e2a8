"""The outputs of a search: every trial as a table (:func:`trials_table`), written as
``results.csv`` and ``results.md`` with the best trial in bold, and Optuna's plots as PNG files
(:func:`write_plots`; the parallel-coordinate one relabelled to be read,
:func:`parallel_coordinate`). It only reads the study and writes files, apart from searching and
retraining.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from mlplab.tuning.quiet import quiet_optuna_warnings
from mlplab.tuning.study import best_so_far, recorded_trials

if TYPE_CHECKING:
    import optuna
    from matplotlib.axes import Axes
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure


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
                why = "interrupted (Ctrl-C)" if t.user_attrs.get("interrupted") else \
                    "worker lost (its process ended or its heartbeat stopped)"
                notes.append(f"{why}; re-queued as trial {retried[t.number]}")
            else:
                notes.append("worker lost or interrupted")
        rows.append([t.number, t.state.name, t.value, epochs, seconds,
                     *[t.params.get(n) for n in names], t.user_attrs.get("worker", ""),
                     "; ".join(notes)])
    return header, rows


def setting_text(value: Any) -> str:
    """A setting as the table and ``mlplab tune``'s best line print it: a float to four
    significant digits, as the plots give it (four decimals gave lr 0.014 in the table beside a
    printed 0.01398; NaN is "nan"), None as nothing."""
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(header: list[str], rows: list[list[Any]], best: int | None) -> str:
    """The trials table for reading: as :func:`trials_table`'s CSV, but the validation accuracy
    in percent (``val acc``, ``93.89%``), as every command prints accuracies."""
    from mlplab._text import percent

    pct = header.index("val_acc") if "val_acc" in header else None
    names = ["val acc" if i == pct else h for i, h in enumerate(header)]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [percent(v) if i == pct and isinstance(v, float) and not math.isnan(v)
                 else setting_text(v) for i, v in enumerate(row)]
        if best is not None and row[0] == best:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


#: what a trial's value is (mlplab's studies maximise it), for the plots' labels: Optuna's own
#: "Objective Value" said nothing of what was measured; drawn in percent (:func:`_in_percent`),
#: as every command prints accuracies
OBJECTIVE = "validation accuracy (%)"


#: what the importances plot's bars are importances for, its legend's entry
IMPORTANCE_OF = "validation accuracy"


def _in_percent(trial: optuna.trial.FrozenTrial) -> float:
    """A completed trial's value, a validation accuracy, in percent: the plots' ``target``."""
    return 100 * float(cast(float, trial.value))


def optimization_history(study: optuna.Study) -> Axes:
    """Optuna's optimization-history plot of ``study``, its axis in percent. (Not through
    ``target``, which would drop the line of the best value so far: Optuna cannot tell which
    way a target is better.) Its trial axis is ticked at whole trials only."""
    from matplotlib.ticker import FuncFormatter
    from optuna.visualization import matplotlib as ovm

    from mlplab.plots import whole_number_ticks

    ax = ovm.plot_optimization_history(study, target_name=OBJECTIVE)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{100 * value:.4g}"))
    # whole trials: a few were ticked 0, 0.5, 1.0, ..., a single one -0.04 ... 0.04
    whole_number_ticks(ax, [t.number for t in study.get_trials(deepcopy=False)
                            if t.value is not None])
    return ax


def parallel_coordinate(study: optuna.Study) -> Axes:
    """Optuna's parallel-coordinate plot of ``study``'s completed trials, made legible: as
    Optuna draws it, the lines of the worse trials faded into the background (a pale blue on
    white, or on the grey of the style its other plots set, crossed by every knob's
    gridlines), each knob's tick labels sat on the lines that cross its axis, log-scale knobs
    were labelled ``4 x 10^1``, an integer knob ``1.25``, the colour bar and the first axis
    said "Objective Value", and the knobs' names ran past each other's axes. Here the lines
    go from yellow (worst) to dark violet (best) on white, the best drawn last (on top); tick
    labels are plain numbers on a white ground, integers for an integer knob; the names are
    slanted, each ending at its own axis; and the title says what is shown. Returns the main
    axes (one more per knob is twinned on it), its figure sized to the number of knobs."""
    from matplotlib.collections import LineCollection
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    from mlplab._text import counted

    with warnings.catch_warnings():  # "experimental" since Optuna 2.2: nothing to act on
        warnings.simplefilter("ignore", ExperimentalWarning)
        ax = ovm.plot_parallel_coordinate(study, target=_in_percent, target_name=OBJECTIVE)
    fig = cast("Figure", ax.figure)  # a Figure: Optuna makes it with plt.subplots
    names = [label.get_text() for label in ax.get_xticklabels()]  # the objective, the knobs
    # the knobs' axes, left to right: each twinned on the main one, its spine where it stands
    knobs = sorted((a for a in fig.axes if a is not ax and ax.get_shared_x_axes().joined(a, ax)),
                   key=lambda a: a.spines["right"].get_position()[1])
    bars = [a for a in fig.axes if a is not ax and a not in knobs]
    fig.set_size_inches(max(8.0, 1.2 * len(names) + 2.0), 6.0)
    ax.set_facecolor("white")
    for a in (ax, *knobs):
        a.grid(False)  # one set of gridlines per knob, at its own ticks, crossed the lines
        a.tick_params(axis="y", colors="0.15", labelsize=9)
        for side in ("left", "right"):
            a.spines[side].set_color("0.55")
    for lines in ax.collections:
        if isinstance(lines, LineCollection):
            _draw_best_last(lines)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    distributions = {name: d for t in complete for name, d in t.distributions.items()}
    for name, knob in zip(names[1:], knobs):
        tried = {t.params.get(name) for t in complete if name in t.params}
        only = tried.pop() if len(tried) == 1 else None
        _label_knob(knob, distributions.get(name),
                    only if isinstance(only, (int, float)) and not isinstance(only, bool) else None)
    for a in (ax, *knobs):  # fixed ticks now: each label keeps its white ground when drawn
        for label in a.get_yticklabels():
            label.set_bbox({"boxstyle": "round,pad=0.15", "facecolor": "white",
                            "edgecolor": "none", "alpha": 0.85})
    for label in ax.get_xticklabels():
        # slanted and ending at its axis: the next name starts a whole axis further on
        label.set_rotation(30)
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    ax.set_title(f"The settings of {counted(len(complete), 'completed trial')}, one line each, "
                 f"coloured by {OBJECTIVE}\n(the best darkest and on top; each axis spans the "
                 f"values tried)", y=1.02, fontsize=11)
    fig.tight_layout()
    if len(bars) == 1 and knobs:
        _colour_bar_beside(ax, knobs[-1], bars[0])
    return ax


def _label_knob(knob: Axes, distribution: Any, constant: float | None) -> None:
    """Fixed ticks with plain labels on a knob's axis (a categorical knob keeps Optuna's, its
    choices): powers of ten, or 1-2-5 steps over a decade or so, on a log scale (``0.001``,
    ``200``, where Optuna wrote ``10^-3`` and ``2 x 10^2``); every value of an integer knob
    with few (``1, 2, 3``, epochs ``5, 10, 15, 20``), else whole numbers. A numerical knob
    that every trial set alike is labelled with that value (``constant``) alone, where its lines
    cross it (Matplotlib widened its empty range, which gave ticks no trial had)."""
    from matplotlib.ticker import FixedLocator, LogLocator, MaxNLocator, NullLocator
    from optuna.distributions import IntDistribution

    ticks: Iterable[float]
    low, high = knob.get_ylim()
    slack = 1e-9 * abs(high - low) if knob.get_yscale() != "log" else 1e-9 * high
    if knob.get_yscale() == "log":
        decades = math.log10(high / low)
        ticks = LogLocator(subs=(1.0,) if decades > 2.5 else (1.0, 2.0, 5.0)).tick_values(low,
                                                                                          high)
        knob.yaxis.set_minor_locator(NullLocator())
    elif isinstance(knob.yaxis.get_major_locator(), FixedLocator):  # categorical
        return
    elif isinstance(distribution, IntDistribution):
        step = distribution.step
        values = np.arange(distribution.low, distribution.high + 1, step)
        ticks = values if len(values) <= 8 else \
            MaxNLocator(nbins=6, integer=True).tick_values(low, high)
    else:
        ticks = knob.get_yticks()
    ticks = [float(t) for t in ticks if low - slack <= t <= high + slack]
    if constant is not None:
        ticks = [float(constant)]
    elif len(ticks) < 2:  # within one step of the locator: the ends of the range
        ticks = [low, high]
    knob.set_yticks(ticks)
    knob.set_yticklabels([_tick(t) for t in ticks])
    knob.set_ylim(low, high)


def _colour_bar_beside(ax: Axes, last: Axes, bar: Axes) -> None:
    """Move the colour bar to just right of the last knob's tick labels and widen the plot
    into the space it leaves: Optuna places it a tenth of the plot's width away, which on a
    plot of many knobs left a gap of inches (and on one of few, could fall on the labels)."""
    fig = cast("Figure", ax.figure)
    fig.canvas.draw()  # where the tick labels land
    # Agg's (the file's, and a notebook's inline one); None: Matplotlib finds the last one
    renderer = getattr(fig.canvas, "get_renderer", lambda: None)()
    page = fig.bbox.width
    inch = fig.dpi
    labels = max((t.get_window_extent(renderer).x1 for t in last.get_yticklabels()),
                 default=last.bbox.x1) - last.bbox.x1
    tight = bar.get_tightbbox(renderer)
    bar_labels = tight.x1 - bar.bbox.x1 if tight is not None else 0.0
    gap, margin = 0.3 * inch, 0.1 * inch
    right = page - margin - bar_labels - bar.bbox.width - gap - labels
    if right <= ax.bbox.x0 + inch:  # no room: leave Optuna's layout
        return
    box = ax.get_position()
    ax.set_position((box.x0, box.y0, right / page - box.x0, box.height))  # the twins follow
    at = bar.get_position()
    bar.set_position(((right + labels + gap) / page, box.y0, at.width, box.height))


def _draw_best_last(lines: LineCollection) -> None:
    """Recolour Optuna's lines (its "Blues" ran to white, invisible on white and its
    gridlines) and draw them worst first, so that the best trials' lines lie on top rather
    than in trial order under the later, worse ones; the colour bar follows the lines."""
    values = lines.get_array()
    lines.set_cmap("viridis_r")
    lines.set_linewidth(1.6)
    if values is None or len(lines.get_linestyle()) > 1:  # styled per line (constraints)
        return
    order = np.argsort(np.asarray(values), kind="stable")
    segments = lines.get_segments()
    lines.set_segments([segments[i] for i in order])
    lines.set_array(np.asarray(values)[order])


def _tick(value: float) -> str:
    """A tick label as a plain number, 4 significant digits at most: ``0.001``, ``200``,
    ``1e-5`` (not ``10^-3`` or ``2 x 10^2``, nor ``1e-05``)."""
    text = f"{value:.4g}"
    return text.replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def write_plots(study: optuna.Study, out: Path, kept: Callable[[], None] | None = None
                ) -> tuple[dict[str, Path], dict[str, str]]:
    """Optuna's optimisation-history, parallel-coordinate (made legible by
    :func:`parallel_coordinate`) and parameter-importance plots as PNG files; returns
    ``(written, skipped)`` where ``skipped`` says why a plot was not drawn. ``kept``, if given,
    is called before each file is written (to refuse a folder gone meanwhile: each write
    would make it again)."""
    from mlplab._matplotlib import plt  # first (Ctrl-C held back while Matplotlib is imported)

    # isort: split
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    from mlplab.io import atomic_path

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [n for n in {k for t in complete for k in t.params}
              if len({json.dumps(t.params.get(n), default=str) for t in complete}) > 1]
    plots: dict[str, tuple[Callable, str | None]] = {
        # (its y axis named as the parallel coordinates' colour bar, not "Objective Value")
        "optimization_history": (optimization_history,
                                 None if complete else "no completed trials yet"),
        "parallel_coordinate": (parallel_coordinate,
                                None if complete else "no completed trials yet"),
        "param_importances": (
            # its legend named the bars "Objective Value": they are importances for this
            lambda study: ovm.plot_param_importances(study, target_name=IMPORTANCE_OF),
            None if len(complete) >= 2 and varied else
            "needs at least 2 completed trials whose parameters differ"),
    }
    written: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for name, (plot, reason) in plots.items():
        path = out / f"{name}.png"
        if reason is not None:
            skipped[name] = reason
            # an earlier run's plot (of a study since removed and begun anew) would sit beside
            # tables that it does not describe
            path.unlink(missing_ok=True)
            continue
        open_before = set(plt.get_fignums())
        try:
            with quiet_optuna_warnings(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax.flat[0] if isinstance(ax, np.ndarray) else ax).figure
            if name != "parallel_coordinate":  # sized and laid out as it was drawn
                fig.set_size_inches(8, 5.5)
                fig.tight_layout()
            if kept is not None:
                kept()  # (the drawing took a moment)
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, dpi=110, format="png")
            written[name] = path
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            # e.g. an importance evaluator that cannot fit constant values
            skipped[name] = f"{type(exc).__name__}: {exc}"
            path.unlink(missing_ok=True)  # (as above: no plot of an earlier state of the study)
        finally:
            # the figures this plot made, however it ended (a Ctrl-C mid-drawing left one open,
            # which a notebook then showed under the traceback); never the caller's own
            for number in set(plt.get_fignums()) - open_before:
                plt.close(number)
    return written, skipped


def write_results(study: optuna.Study, out: Path, kept: Callable[[], None] | None = None
                  ) -> tuple[dict[str, Path], dict[str, str]]:
    """``results.csv`` and ``results.md`` (every trial) plus the plots; returns written files
    and skipped plots with reasons. ``kept``: see :func:`write_plots`."""
    from mlplab.io import write_csv, write_text
    from mlplab.runs.files import remove_partial_writes

    # a killed process's half-written tables stayed for good; a minute old, no write is still
    # making them (other workers of the study write here too)
    remove_partial_writes(out, ("results.csv", "results.md", "summary.json"), older_than=60)
    header, rows = trials_table(study)
    best, _ = best_so_far(study)
    if kept is not None:
        kept()
    files = {"csv": write_csv(out / "results.csv", header, rows),
             "markdown": write_text(out / "results.md", markdown_table(header, rows, best))}
    plots, skipped = write_plots(study, out, kept)
    files.update(plots)
    return files, skipped
