"""The report's figures: thin calls into :mod:`mlplab.plots` and :mod:`mlplab.data.preview`,
drawn inside the report's style and saved into the report folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlplab.report.style import COLORS, report_style, save_figure

if TYPE_CHECKING:
    from mlplab.data.base import Dataset


def loss_curve(loss: Sequence[float], path: Path, title: str, bound: float | None = None,
               iterations_per_epoch: int | None = None, smooth: bool | None = None) -> Path:
    """The loss per iteration (:func:`mlplab.plots.plot_loss`). With ``bound`` (the exercise's
    "final loss below 0.02") the loss axis is logarithmic and the final loss is marked: on a
    linear axis from 1.2 down, 0.0171 and the bound 0.02 lay on the same pixel row, so the
    figure could not show the check it illustrates."""
    from mlplab import plots

    with report_style():
        fig = plots.plot_loss(loss, title=title, iterations_per_epoch=iterations_per_epoch,
                              smooth=smooth)
        if bound is not None:
            ax = fig.axes[0]
            from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

            ax.set_yscale("log")
            # plain numbers at 1, 2, 5 x 10^k: "10^-1" alone left 0.02 to be guessed
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.axhline(bound, color=COLORS["neutral"], ls="--", lw=1,
                       label=f"exercise's bound ({bound:g})")
            ax.plot([len(loss)], [loss[-1]], "o", color=COLORS["loss"],
                    label=f"final loss ({loss[-1]:.4f})")
            ax.set_ylabel("loss (log scale)")
            ax.legend(loc="upper right")
        return save_figure(fig, path)


def accuracy_curves(train_acc: Sequence[float], val_acc: Sequence[float], path: Path,
                    title: str, test_acc: float | None = None,
                    train_label: str = "train") -> Path:
    from mlplab import plots

    with report_style():
        # (whole epochs, one epoch ticked 1: plot_accuracy's ticks; a MaxNLocator set again here
        # ticked a one-epoch run 0.945, 0.960, ... 1.050)
        fig = plots.plot_accuracy(train_acc, val_acc, title=title, test_acc=test_acc,
                                  train_label=train_label)
        return save_figure(fig, path)


#: the most hidden units whose first-layer weights a figure shows (CIFAR-10's 10 x 10 grid)
WEIGHT_TILES = 100


def weight_images(W1: np.ndarray, image_shape: tuple[int, ...], path: Path, title: str) -> Path:
    from mlplab import plots

    with report_style():
        return save_figure(plots.plot_first_layer_weights(W1, image_shape, title=title,
                                                          max_units=WEIGHT_TILES), path)


def weights_caption(units: int, whose: str = "") -> str:
    """The caption of :func:`weight_images` for a layer of ``units`` hidden units: how many
    tiles there are, and what their grey levels mean (each tile has its own scale, so two tiles'
    shades do not compare)."""
    of = f" of {whose}" if whose else ""
    shown = (f"the first {WEIGHT_TILES} of its {units} hidden units" if units > WEIGHT_TILES
             else "one tile per hidden unit")
    return (f"First-layer weights{of}, {shown}; each tile is scaled from its own lowest weight "
            "(black) to its highest (white)")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], path: Path,
              title: str) -> Path:
    from mlplab import plots

    cm = plots.confusion_matrix(y_true, y_pred, len(classes))
    with report_style():
        return save_figure(plots.plot_confusion(cm, classes, title=title), path)


def sample_images(ds: Dataset, path: Path, seed: int = 0) -> Path:
    from mlplab.data.preview import GRID_DPI, sample_figure

    with report_style():
        # saved as the other figures are (save_figure): sample_grid's own write made the
        # report folder again where it went while the grid was drawn
        return save_figure(sample_figure(ds, per_class=min(7, max(1, len(ds.y_train))),
                                         seed=seed), path, dpi=GRID_DPI)


def optimisation_history(trials: Sequence[tuple[int, str, float | None]], path: Path,
                         title: str = "Tuning: validation accuracy per trial") -> Path:
    """Every trial's validation accuracy (pruned trials hollow) and the best so far.

    ``trials`` holds ``(number, state, value)`` rows as in the tuning results table. Optuna draws
    this figure too, but in its own style; this one matches the rest of the report.
    """
    from mlplab._matplotlib import plt

    rows = [(n, s.upper(), v) for n, s, v in trials if v is not None]
    with report_style():
        fig, ax = plt.subplots()
        done = [(n, 100 * v) for n, s, v in rows if s == "COMPLETE"]
        pruned = [(n, 100 * v) for n, s, v in rows if s == "PRUNED"]
        if done:
            ax.plot(*zip(*done), "o", color=COLORS["val"], label="trial (complete)")
        if pruned:
            ax.plot(*zip(*pruned), "o", mfc="none", color=COLORS["neutral"],
                    label="trial (pruned: last reported epoch)")
        best, xs, ys = -np.inf, [], []
        for n, v in sorted(done):
            best = max(best, v)
            xs.append(n)
            ys.append(best)
        last = max((n for n, _ in done + pruned), default=None)
        if xs and last is not None and last > xs[-1]:
            # on to the last trial: pruned trials after the last complete one left the line
            # ending there, as if the search had no best after it
            xs.append(last)
            ys.append(ys[-1])
        if len(xs) > 1:  # (a single trial's line has no length: its point is the best)
            ax.step(xs, ys, where="post", color=COLORS["best"], lw=1.5, label="best so far")
        from mlplab.plots import whole_number_ticks

        # whole trials: a single trial was ticked -0.045 ... 0.045
        whole_number_ticks(ax, [n for n, _ in done + pruned])
        ax.set_xlabel("trial")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(title)
        # below the axes: trials can fall anywhere inside them
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3, frameon=False)
        return save_figure(fig, path)
