"""The report's plot style: one palette, page-sized figures, readable fonts.

Every figure of the report is drawn inside :func:`report_style`, which adds the report's fonts,
grid and spines to :mod:`mlplab.plots`' palette and page size (7 x 4 inches at 130 dpi, 910 x 520
px: the width of a page or of the HTML column), so colours and sizes agree across sections.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

# first: Matplotlib's import, with Ctrl-C held back (see mlplab._matplotlib)
from mlplab._matplotlib import plt

# isort: split
from matplotlib.rcsetup import cycler  # what matplotlib.cycler is (its stubs omit that name)

from mlplab import plots as _plots
from mlplab.report.context import check_report_folder

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: the same quantity always gets the same colour: mlplab.plots' palette (with the two
#: initialisations of Question 4) plus a neutral grey
COLORS = {
    **_plots.COLORS,
    "neutral": "#7f7f7f",
}
FIGSIZE = _plots.FIGSIZE
DPI = _plots.DPI

_RC = {
    "figure.figsize": FIGSIZE,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.framealpha": 0.85,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=[COLORS[k] for k in (
        "train", "val", "test", "best", "exercise_init", "default_init", "loss", "neutral")]),
    "mathtext.fontset": "cm",
}


@contextmanager
def report_style() -> Iterator[None]:
    """Matplotlib settings of the report, restored on exit. It starts from Matplotlib's
    defaults, so styles that other code set globally (Optuna's plots switch to ggplot) do not
    leak into the report."""
    with plt.style.context(["default", _RC]):
        yield


def save_figure(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Write ``fig`` atomically and close it (:func:`mlplab.plots.save`), only into a folder
    that exists (``Context.figure`` made it): one gone while the figure was drawn was the
    report folder removed or moved, which the save made again (a
    :class:`~mlplab.runs.files.RunFolderGoneError`; a stage's error handler then names the
    report folder itself, :meth:`Context.check_folder`)."""
    try:
        check_report_folder(path.parent, None)
    except FileNotFoundError:
        plt.close(fig)
        raise
    return _plots.save(fig, path, dpi=dpi)


def render_equations(latex: list[str], path: Path, fontsize: int = 15) -> Path:
    """Draw display equations with Matplotlib's mathtext (a LaTeX subset), one per line.

    The HTML page has no TeX engine and no network for MathJax, so it shows these images; the
    Markdown file keeps the LaTeX itself.
    """
    with report_style():
        line_h = 0.62  # inches per equation line at this font size
        fig = plt.figure(figsize=(FIGSIZE[0], line_h * len(latex) + 0.1))
        fig.set_layout_engine(None)
        for i, eq in enumerate(latex):
            fig.text(0.01, 1 - (i + 0.5) / len(latex), f"${eq}$", fontsize=fontsize,
                     va="center", ha="left")
        return save_figure(fig, path)
