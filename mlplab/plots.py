"""Every training figure, drawn with Matplotlib's pyplot.

Each ``plot_*`` function returns a ``matplotlib.figure.Figure``; :func:`save` writes it atomically
(PNG, PDF or SVG by extension) and closes it. Figures are page-sized (about 7 x 4 inches, 130 dpi),
with titles, axis labels and legends, and the same quantity always has the same colour
(:data:`COLORS`: train blue, validation orange, test green, loss indigo; the depth study's
initialisations purple and brown).

The backend is the user's: importing this module does not choose one, so ``plt.show()`` and a
notebook's inline figures keep working, and without a display Matplotlib itself falls back to Agg
(the command line sets ``MPLBACKEND=Agg``). In a notebook a figure shows once, also when it is
what the cell returns (``plot_loss(h.loss)`` on its last line; see :class:`NotebookFigure`).

The exercise's sample-images grid is :func:`plot_samples` (plain arrays in, a figure out);
:func:`mlplab.data.preview.sample_grid` picks a dataset's split and writes it to a file. The CS231n
notebook's ``visualize_grid`` helper (its ``show_net_weights``) is :func:`visualize_grid`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# first: Matplotlib's import, with Ctrl-C held back (see mlplab._matplotlib)
from mlplab._matplotlib import matplotlib, plt

# isort: split
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter, StrMethodFormatter

from mlplab._text import printable
from mlplab.io import atomic_path
from mlplab.metrics import confusion_matrix  # noqa: F401 - mlplab.plots' name for it

#: one colour per quantity, shared by every figure
COLORS = {
    "train": "#1f77b4",  # blue
    "val": "#ff7f0e",  # orange
    "test": "#2ca02c",  # green
    "loss": "#4c4c9d",  # indigo
    "smooth": "#d62728",  # red: running mean of the loss
    "best": "#d62728",
    # the two initialisations of the depth study: not train and validation's blue and orange,
    # which its line styles (dashed, solid) already stand for
    "exercise_init": "#9467bd",  # purple: the exercise's N(0, 1e-3) initialisation
    "default_init": "#8c564b",  # brown: PyTorch's default initialisation
}
FIGSIZE = (7.0, 4.0)
DPI = 130


class NotebookFigure(Figure):
    """The figure of every ``plot_*`` function: a Matplotlib ``Figure`` that a notebook shows
    once. Under Jupyter's inline backend pyplot shows each figure a cell made when the cell
    ends, and IPython shows the figure a cell returns as well: ``plot_loss(h.loss)`` on a cell's
    last line drew it twice. When IPython displays this figure it first takes it off pyplot's
    list of open figures (closing it, as the inline backend does after showing it anyway), so
    the end of the cell does not show it again; after a ``display(fig)`` in the middle of a
    cell, pyplot's current figure (``plt.gca()``) is therefore no longer this one. Nothing
    changes elsewhere (``plt.show()``, ``savefig``, other backends)."""

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> None:
        if "inline" in matplotlib.get_backend():
            plt.close(self)
        return None  # IPython goes on to its usual image of the figure


def subplots(*args: Any, **kwargs: Any) -> tuple[NotebookFigure, Any]:
    """``plt.subplots`` making a :class:`NotebookFigure`. The second item is an ``Axes`` or an
    array of them, depending on the arguments: ``Any``, as ``plt.subplots`` types it."""
    return plt.subplots(*args, FigureClass=NotebookFigure, **kwargs)


def save(fig: Figure, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the extension) and close it."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def whole_number_ticks(ax: Axes, values: Sequence[float]) -> None:
    """Tick ``ax``'s x axis at whole numbers only (epochs, trials): ``MaxNLocator(integer=True)``,
    or, where every x in ``values`` is one number, that number alone (in the small span
    Matplotlib gives one point there is no other whole number, and the locator fell back to
    ticks such as -0.04 ... 0.04)."""
    if len(set(values)) == 1:
        ax.set_xticks([next(iter(values))])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_loss(loss: Sequence[float], title: str = "Training loss",
              iterations_per_epoch: int | None = None, smooth: bool | None = None) -> Figure:
    """Loss per iteration (the exercise's loss history), with a running mean when noisy.

    ``smooth``: draw the running mean; None (the default) draws it for over 50 losses, the
    minibatch noise of a real run. A loss that is smooth already (the exercise's toy training,
    whose batches hold its five samples many times over) is better without: the mean lags
    behind the curve it smooths."""
    values = np.asarray(loss, dtype=np.float64)
    fig, ax = subplots(figsize=FIGSIZE)
    it = np.arange(1, len(values) + 1)
    # the window is at least 5 losses: fewer have no running mean to draw
    smooth = len(values) > 50 if smooth is None else bool(smooth) and len(values) >= 5
    # a run of one iteration (fewer images than a batch, one epoch) is one point: a line alone
    # drew nothing
    ax.plot(it, values, color=COLORS["loss"], lw=0.8, alpha=0.6 if smooth else 1.0,
            marker="o" if len(values) == 1 else None, label="loss per iteration")
    # whole iterations (a single one ticked 1, not 0.96 .. 1.04)
    whole_number_ticks(ax, range(1, len(values) + 1))
    if smooth:
        w = max(len(values) // 50, 5)
        ax.plot(it[w - 1:], _moving_average(values, w), color=COLORS["smooth"], lw=1.5,
                label=f"running mean ({w} iterations)")
    if iterations_per_epoch and len(values) > iterations_per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda x: x / iterations_per_epoch,
                                                   lambda e: e * iterations_per_epoch))
        top.set_xlabel("epoch")
        top.xaxis.set_major_locator(MaxNLocator(integer=True))  # epoch 5, 10, not 2.5, 7.5
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    # the losses themselves: a run that barely moves from ln(10) had ticks 2 .. 10 under a
    # corner note "1e-5+2.3025" that few read
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def plot_accuracy(train_acc: Sequence[float], val_acc: Sequence[float] | None = None,
                  title: str = "Classification accuracy", test_acc: float | None = None,
                  train_label: str = "train") -> Figure:
    """Train (circles) and validation (squares) accuracy per epoch (the exercise's accuracy
    history), in percent; ``test_acc`` a dashed line."""
    fig, ax = subplots(figsize=FIGSIZE)
    epochs = np.arange(1, len(train_acc) + 1)
    # train circles, validation squares: not told apart by colour alone (in greyscale, to a
    # colour-blind reader, and a run of one epoch draws two points, no lines); a long run has
    # a marker every few epochs (about 15 in all), not one at each
    every = None if len(epochs) <= MARKED_EPOCHS else len(epochs) // 15
    ax.plot(epochs, 100 * np.asarray(train_acc, dtype=float), "o-", ms=3, markevery=every,
            color=COLORS["train"], label=train_label)
    if val_acc is not None and len(val_acc) and not np.all(np.isnan(val_acc)):
        ax.plot(epochs, 100 * np.asarray(val_acc, dtype=float), "s-", ms=3, markevery=every,
                color=COLORS["val"], label="validation")
    if test_acc is not None:
        ax.axhline(100 * test_acc, color=COLORS["test"], ls="--", lw=1,
                   label=f"test ({100 * test_acc:.1f}%)")
    ax.set_xlabel("epoch")
    # accuracies are measured at the end of whole epochs: no ticks at 1.5, 2.5, ... (and one
    # epoch ticked 1: no whole number but 1 in 0.95..1.05, the locator fell back to 0.945, ...)
    whole_number_ticks(ax, range(1, len(epochs) + 1))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def weight_tiles(W1: np.ndarray, image_shape: Sequence[int], max_units: int = 100
                 ) -> np.ndarray:
    """The first ``max_units`` columns of ``W1`` (D, H) as images (n, H, W, C), each rescaled to
    0..1 over its own range (as the exercise's ``visualize_grid`` does). ``image_shape`` is
    ``(H, W, C)``, or ``(H, W)`` for greyscale."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:  # ("not enough values to unpack" named nothing)
        raise ValueError(f"image_shape must be (H, W, C), or (H, W) for greyscale; got "
                         f"{tuple(image_shape)}.")
    H, W, C = shape
    W1 = np.asarray(W1, dtype=np.float64)
    if W1.ndim != 2 or W1.shape[0] != H * W * C:
        raise ValueError(f"W1 of shape {W1.shape} does not hold {H}x{W}x{C} images in its "
                         "columns.")
    return _rescaled(W1[:, :max_units].T.reshape(-1, H, W, C))


def _rescaled(images: np.ndarray, top: float = 1.0) -> np.ndarray:
    """Each of ``images`` (N, H, W, C) rescaled to 0..``top`` over its own range; an image whose
    pixels are all equal becomes zeros."""
    lo = images.min(axis=(1, 2, 3), keepdims=True)
    hi = images.max(axis=(1, 2, 3), keepdims=True)
    return top * (images - lo) / np.where(hi > lo, hi - lo, 1.0)


def _mosaic(tiles: np.ndarray, rows: int, cols: int, gap: int, fill: float) -> np.ndarray:
    """``tiles`` (N, H, W, C) laid out row by row in a grid of ``rows`` x ``cols``, ``gap``
    pixels of ``fill`` apart (and in the cells left empty): one image (rows, cols, C)."""
    N, H, W, C = tiles.shape
    out = np.full((rows * H + gap * max(rows - 1, 0), cols * W + gap * max(cols - 1, 0), C), fill,
                  dtype=np.float64)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (H + gap):r * (H + gap) + H, c * (W + gap):c * (W + gap) + W] = tile
    return out


def visualize_grid(Xs: np.ndarray, ubound: float = 255.0, padding: int = 1) -> np.ndarray:
    """The CS231n notebook's ``visualize_grid``: images ``Xs`` (N, H, W, C) laid out as one image
    (rows, cols, C), float64, in a square grid of ``ceil(sqrt(N))`` images a side, row by row,
    ``padding`` zero pixels apart; each image is rescaled to 0..ubound over its own range.

    With it the notebook's ``show_net_weights`` runs as written::

        W1 = net.params["W1"].reshape(32, 32, 3, -1).transpose(3, 0, 1, 2)
        plt.imshow(visualize_grid(W1, padding=3).astype("uint8"))

    An image whose pixels are all equal is drawn as zeros (CS231n's divides 0 by 0: NaN).
    :func:`plot_first_layer_weights` draws the same tiles as a titled figure."""
    Xs = np.asarray(Xs)
    if Xs.ndim != 4:
        raise ValueError(f"Xs must be images (N, H, W, C); got shape {Xs.shape}. For first-layer "
                         "weights W1 (D, H): W1.reshape(32, 32, 3, -1).transpose(3, 0, 1, 2).")
    if isinstance(padding, bool) or not isinstance(padding, int | np.integer) or padding < 0:
        raise ValueError(f"padding must be a whole number of pixels >= 0; got {padding!r}.")
    side = int(np.ceil(np.sqrt(len(Xs))))
    return _mosaic(_rescaled(Xs.astype(np.float64), ubound), side, side, padding, 0.0)


def _tight_layout(fig: Figure) -> bool:
    """``fig.tight_layout()``; False where it gave up (not room enough), leaving the layout as
    it was. That warning is the answer; any other is passed on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.tight_layout()
    gave_up = False
    for w in caught:
        if "Tight layout not applied" in str(w.message):
            gave_up = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return not gave_up


def _suptitle_height(fig: Figure) -> float:
    """The height of ``fig``'s suptitle in pixels (0 without one)."""
    # no public accessor for the Text (Figure.get_suptitle, matplotlib 3.8+, gives its string)
    text = fig._suptitle  # type: ignore[attr-defined]
    return text.get_window_extent().height if text is not None and text.get_text() else 0.0


def fit_suptitle(fig: Figure, title: str) -> None:
    """``fig.suptitle(title)``, broken into lines that fit the figure's width: grids sized by
    their columns are narrow (three classes, a few units), and a long title (a folder's path)
    would be cut off at both edges. A folder's path that is not UTF-8 shows its odd bytes as
    ``\\xe9`` (Matplotlib cannot draw the lone surrogates Python reads them as)."""
    import textwrap

    title = printable(title)
    # as written: a folder's path or class name with two $ would be read as maths (mathtext),
    # and one such as "$x^$" failed to draw at all
    text = fig.suptitle(title, parse_math=False)
    # get_window_extent() without a renderer: the figure's own, whatever the backend (only Agg's
    # canvas has get_renderer; a user's SVG or PDF backend has not)
    room = 0.99 * fig.bbox.width  # a title that fits, however closely, stays on one line
    chars = len(title)
    # characters differ in width: shorten the lines until the widest fits
    while text.get_window_extent().width > room and chars > 8:
        chars = max(8, min(chars - 1, int(chars * room / text.get_window_extent().width)))
        text.set_text("\n".join(textwrap.wrap(title, chars, break_on_hyphens=False)))


def plot_first_layer_weights(W1: np.ndarray, image_shape: Sequence[int],
                             title: str = "First-layer weights", max_units: int = 100
                             ) -> Figure:
    """The exercise's ``show_net_weights``: every hidden unit's input weights as an image.

    The tiles (:func:`weight_tiles`) are laid out in one picture, drawn once: a grid of a hundred
    Axes took 1.5-2 s to build, most of a small ``mlplab train``'s time."""
    tiles = weight_tiles(W1, image_shape, max_units)
    n, H, W, C = tiles.shape
    # cells shaped like the images: square cells left a folder's wide (or tall) images a strip
    # of each; the grid is about as wide as tall (for square images: ceil(sqrt(n)) columns)
    aspect = H / W
    cols = min(n, int(np.ceil(np.sqrt(n * aspect))))
    rows = int(np.ceil(n / cols))
    gap = max(1, round(min(H, W) / 8))  # white pixels between tiles
    mosaic = _mosaic(tiles, rows, cols, gap, 1.0)  # white between the tiles
    # the width of a grid of square images as many, for a picture of the mosaic's shape: 7 inches
    # for 100 units (CIFAR-10's 10 x 10), less for fewer; a wide mosaic gets more, up to 7
    ratio = mosaic.shape[0] / mosaic.shape[1]
    size = min(7.0, (0.7 * np.ceil(np.sqrt(n)) + 0.5) / np.sqrt(min(ratio, 1.0)))
    height = size * ratio + 0.4
    if height > 9.0:  # very tall images: a narrower figure rather than one pages long
        # but not narrower than the title's words: 500x1-pixel images drew a figure half an
        # inch wide, titled "First-la / yer / weights"
        size, height = max(1.5, size * 8.6 / (height - 0.4)), 9.0
    fig, ax = subplots(figsize=(size, height))
    ax.imshow(mosaic[:, :, 0] if C == 1 else mosaic, cmap="gray" if C == 1 else None,
              vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    shown = f" (first {n} of {np.shape(W1)[1]} units)" if np.shape(W1)[1] > n else ""
    fit_suptitle(fig, title + shown)
    fig.tight_layout(pad=0.3)
    # tight_layout leaves room for one line of title: a title wrapped over two (a narrow figure)
    # had its second line drawn over the top of the weights
    below = fig._suptitle.get_window_extent().y0 / fig.bbox.height  # type: ignore[attr-defined]
    if ax.get_position().y1 > below - 0.005:
        fig.subplots_adjust(top=below - 0.005)
    return fig


#: ``plot_runs`` draws epochs on a logarithmic axis when the longest run has this many times
#: the epochs of the shortest
LOG_EPOCHS_RATIO = 10
#: runs of at most this many epochs are drawn with a marker at each epoch
MARKED_EPOCHS = 60
#: ``plot_runs``' markers and line styles, one of each per run beside its colour: ten and four,
#: so that the first 20 runs (as many as ``mlplab runs --plot`` draws) each have their own pair
RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
RUN_LINESTYLES = ("-", "--", "-.", ":")
#: losses spanning more than this factor (a diverged run's beside others) get a log loss axis
LOG_LOSS_RATIO = 1000


def plot_runs(curves: Mapping[str, Mapping[str, Sequence[float]]],
              title: str = "Runs compared") -> Figure:
    """Several runs side by side (``mlplab runs --plot``): validation accuracy (left, in
    percent) and training loss (right; the mean of each epoch's iterations) per epoch, one
    colour, marker and line style per run (:data:`RUN_MARKERS`, :data:`RUN_LINESTYLES`).
    ``curves`` maps a run's name to ``{"val_acc": [...], "loss": [...]}``, one value per epoch;
    a run without validation figures (``--val-size 0``) is drawn on the right only, and where
    no run has them the left panel says so. Unlike the other figures the colours stand for
    runs, not quantities."""
    if not curves:
        raise ValueError("plot_runs needs at least one run's curves.")
    fig, (acc_ax, loss_ax) = subplots(1, 2, figsize=(2 * FIGSIZE[0], FIGSIZE[1] + 0.4))
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    palette = [cmap(i) for i in range(cmap.N)]  # the qualitative map's own colours
    for i, (name, curve) in enumerate(curves.items()):
        # a marker and a line style of its own too: colour alone did not tell the runs apart in
        # greyscale or for a colour-blind reader (tab10's red and green, tab20's pairs)
        style = {"color": palette[i % len(palette)], "marker": RUN_MARKERS[i % len(RUN_MARKERS)],
                 "ls": RUN_LINESTYLES[i % len(RUN_LINESTYLES)], "lw": 1.2, "ms": 4}
        val = np.asarray(curve.get("val_acc", []), dtype=float)
        loss = np.asarray(curve.get("loss", []), dtype=float)
        # a run of one epoch is one point, which a line alone does not draw; a few marked
        # points show where each short run's epochs are; a long run's markers are spread
        # evenly along its line (a tenth of the panel apart), not one at each epoch
        if max(len(val), len(loss)) > MARKED_EPOCHS:
            style["markevery"] = 0.1
        if len(val) and not np.all(np.isnan(val)):
            acc_ax.plot(np.arange(1, len(val) + 1), 100 * val, **style)
        loss_ax.plot(np.arange(1, len(loss) + 1), loss, label=printable(name), **style)
    lengths = [len(c.get("loss", [])) for c in curves.values() if len(c.get("loss", []))]
    # the runs each panel draws: the accuracy panel leaves out runs without validation
    val_lengths = [len(v) for c in curves.values()
                   if len(v := np.asarray(c.get("val_acc", []), dtype=float))
                   and not np.all(np.isnan(v))]
    # a run ten times as long as another squashes the short one into the left edge on a
    # linear axis; a logarithmic one gives each run's first epochs room
    log_epochs = bool(lengths) and max(lengths) >= LOG_EPOCHS_RATIO * min(lengths)
    for ax, label, drawn in ((acc_ax, "validation accuracy (%)", val_lengths),
                             (loss_ax, "training loss", lengths)):
        if log_epochs:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))  # 1, 10, 100, not 10^k
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("epoch (logarithmic scale)")
        elif max(drawn, default=0) == 1:  # one epoch each: tick 1, not 0.95 ... 1.05
            ax.set_xticks([1])
            ax.set_xlabel("epoch")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if not val_lengths:
        # runs trained without a validation split: an empty frame ticked 0 .. 1 read as
        # accuracies near zero percent, at epochs 0 and 1
        acc_ax.set(xticks=[], yticks=[])
        acc_ax.grid(False)
        acc_ax.text(0.5, 0.5, "no validation figures\n(runs trained without a validation "
                    "split, --val-size 0)", transform=acc_ax.transAxes, ha="center",
                    va="center", color="0.35")
    losses = np.concatenate([np.asarray(c.get("loss", []), dtype=float) for c in curves.values()]
                            or [np.empty(0)])
    losses = losses[np.isfinite(losses)]
    if losses.size and losses.min() > 0 and losses.max() > LOG_LOSS_RATIO * losses.min():
        # a diverged run's losses (1e37) flattened every other run's curve onto zero
        loss_ax.set_yscale("log")
        loss_ax.set_ylabel("training loss (logarithmic scale)")
    else:
        loss_ax.ticklabel_format(axis="y", useOffset=False)
    # one legend for both panels, below them: run names are long paths
    legend = fig.legend(*loss_ax.get_legend_handles_labels(), loc="lower center",
                        ncol=min(len(curves), 3), fontsize=8, frameon=False)
    for text in legend.get_texts():
        text.set_parse_math(False)  # a run folder named with two $ is a name, not maths
    fig.suptitle(title)
    rows = -(-len(curves) // 3)
    fig.tight_layout(rect=(0, min(0.05 * rows, 0.5), 1, 1))
    return fig


def plot_confusion(cm: np.ndarray, classes: Sequence[str],
                   title: str = "Confusion matrix", normalize: bool = True) -> Figure:
    """A confusion matrix as a heat map; with ``normalize`` each row shows the percent of that
    class predicted as each class (the diagonal is per-class recall), in the cells and the colour
    bar alike."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.shape != (len(classes), len(classes)):
        # else the class names would label the wrong rows, or only some of them
        raise ValueError(f"cm of shape {cm.shape} does not match {len(classes)} class names; "
                         f"expected ({len(classes)}, {len(classes)}).")
    # in percent, as the cells are written; the colour bar says so too
    shown = 100 * cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    top = 100.0 if normalize else max(float(shown.max()), 1.0)  # the colour scale's top
    k = len(classes)
    names = _short_names(classes)
    # room for the labels beside the matrix: past ten characters, a figure of fixed size gave
    # every further character's width to them and took it from the matrix
    extra = 0.07 * max(max(map(len, names)) - 10, 0)
    side = min(7.0, max(4.0, 0.55 * k + 2))
    fig, ax = subplots(figsize=(side + 1.0 + extra, side + 0.75 * extra))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=top)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                 label="% of the true class" if normalize else "count")
    ax.grid(False)  # a style's grid (the report's) would cross every cell through its number
    # at most CONFUSION_NAMES names along each axis: 100 classes piled their names into one
    # black smear, 1,000 took 9 s to draw; past that, every step-th class is named, and the
    # axis labels say which
    step = -(-k // CONFUSION_NAMES)
    ticks = range(0, k, step)
    every = "" if step == 1 else f" (every {_ordinal(step)} named, of {k})"
    # class names as written, not mathtext: a folder named "$x^$" failed to draw
    ax.set_xticks(ticks, labels=names[::step], rotation=45, ha="right", parse_math=False)
    ax.set_yticks(ticks, labels=names[::step], parse_math=False)
    ax.set_xlabel("predicted class" + every)
    ax.set_ylabel("true class" + every)
    ax.set_title(title)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                v = shown[i, j]
                # white on the darker half of the colour scale: against the largest cell, a
                # matrix whose diagonal stays near 50% had white numbers on its palest blues
                ax.text(j, i, f"{v:.0f}" if normalize else f"{int(v)}", ha="center",
                        va="center", fontsize=7, color="white" if v > 0.5 * top else "black")
    fig.tight_layout()
    return fig


#: the most class names along each axis of a confusion matrix: its 7 inches hold about 30 in
#: the default font
CONFUSION_NAMES = 30


def _ordinal(n: int) -> str:
    """2 -> '2nd', 11 -> '11th', 34 -> '34th'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


#: the most characters of a class name an axis shows: longer ones are cut in the middle
NAME_LIMIT = 24


def _short_names(classes: Sequence[str], limit: int = NAME_LIMIT) -> list[str]:
    """The class names as tick labels: one longer than ``limit`` keeps its start and end around
    an ellipsis (a folder named by a whole sentence squeezed the matrix to a sliver beside its
    labels), unless that makes two names alike, when all are kept whole."""
    head = (limit - 1) // 2
    short = [c if len(c) <= limit else f"{c[:head]}\u2026{c[len(c) - (limit - 1 - head):]}"
             for c in map(str, classes)]
    return short if len(set(short)) == len(short) else [str(c) for c in classes]


def plot_samples(X: np.ndarray, y: np.ndarray, classes: Sequence[str], per_class: int = 7,
                 seed: int | None = 0, title: str = "Sample images",
                 transform: Callable[[np.ndarray], np.ndarray] | None = None) -> Figure:
    """A grid of ``per_class`` random images (N, H, W, C) of every class, one column per class.

    ``transform`` maps the picked images of a class, (n, H, W, C), to what is drawn instead (uint8
    pixels, or floats in [0, 1]); e.g. :func:`mlplab.runs.make_network_view`."""
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C); got shape {X.shape}.")
    rng = np.random.RandomState(seed)
    k = len(classes)
    # images drawn at most MAX_STRETCH times wider than tall or taller than wide, stretched
    # beyond: 1x500-pixel images were drawn a fifth of a pixel tall, an empty figure of names
    aspect = min(max(X.shape[1] / X.shape[2], 1 / MAX_STRETCH), MAX_STRETCH)
    stretched = aspect != X.shape[1] / X.shape[2]
    # long names cut in the middle, as the confusion matrix's: a folder's class named by a
    # sentence stood upright whole, the figure inches of names above its images, title over them
    names = _short_names(classes)
    # at most 7 inches wide: past ten classes the columns narrow, and the rows with them (rows of
    # the old 0.7 inches left small images in wide gaps); rows follow the images' height / width
    cell = min(0.7, 7.0 / max(k, 1)) * aspect
    fig, axes = subplots(per_class, k, figsize=(min(7.0, 0.7 * k + 0.5),
                                                min(9.0, cell * per_class + 0.8)),
                         squeeze=False)
    for c in range(k):
        idx = np.flatnonzero(y == c)
        pick: np.ndarray | list[int] = (
            rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else [])
        shown = X[pick]
        if transform is not None and len(pick):
            shown = transform(shown)
        for r in range(per_class):
            axes[r, c].axis("off")
            if r < len(pick):
                _draw_image(axes[r, c], shown[r])
            else:  # the box an image would take: an empty class's name level with the others
                axes[r, c].set(xlim=(-0.5, X.shape[2] - 0.5), ylim=(X.shape[1] - 0.5, -0.5))
            axes[r, c].set_aspect(X.shape[2] / X.shape[1] * aspect if stretched else "equal")
        axes[0, c].set_title(names[c], fontsize=7, parse_math=False)  # as written
    _upright_names_if_crowded(fig, axes[0])
    fit_suptitle(fig, title)
    _grow_to_fit_rows(fig, axes, aspect)
    return fig


#: how many times wider than tall (or taller than wide) a sample image is drawn at most
MAX_STRETCH = 4.0


def _draw_image(ax: Axes, img: np.ndarray) -> None:
    """One (H, W, C) image: uint8 pixels on a fixed 0..255 range (not autoscaled), grey floats
    autoscaled, colour floats clipped to [0, 1]."""
    if img.dtype == np.uint8:
        ax.imshow(img[:, :, 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
    elif img.shape[-1] == 1:
        ax.imshow(img[:, :, 0], cmap="gray")
    else:
        ax.imshow(np.clip(img, 0, 1))


def _upright_names_if_crowded(fig: Figure, top_row: np.ndarray) -> None:
    """Class names wider than their column (many classes) would run into each other: all of
    them upright then."""
    column = fig.bbox.width / len(top_row)
    if any(ax.title.get_window_extent().width > 0.95 * column for ax in top_row):
        for ax in top_row:
            ax.title.set(rotation=90, va="bottom")


def _grow_to_fit_rows(fig: Figure, axes: np.ndarray, aspect: float) -> None:
    """Make the figure taller until its rows of images of height / width ``aspect`` fit.

    The figure's height leaves 0.8 inches for one line of title and names. Upright names, or a
    title wrapped over lines (a folder's path), need more: the figure gains it, rather than
    squeezing the rows or (too little room for any layout) drawing the title over the names
    and images. Many rows stay within 9 inches of images, as :func:`plot_samples` sizes them."""
    rows = len(axes)
    heads = (max(ax.title.get_window_extent().height for ax in axes[0])
             + _suptitle_height(fig)) / fig.dpi
    limit = max(fig.get_figheight(), 9.0 + heads)
    for _ in range(4):
        if not _tight_layout(fig):
            grow = heads
        else:
            box = axes[0, 0].get_position(original=True)  # its slot, not the image in it
            grow = rows * (box.width * fig.get_figwidth() * aspect
                           - box.height * fig.get_figheight())  # what the rows lack
        if grow < 0.01 * rows or fig.get_figheight() >= limit:
            break
        fig.set_figheight(min(limit, fig.get_figheight() + grow))
