"""The exercise's Question 4 experiment: :func:`depth_study` trains one network per depth and
initialisation and runs only the best by validation accuracy on the test split; a
:class:`DepthResult` is one row, and :func:`depth_table_csv`, :func:`depth_table_markdown` and
:func:`plot_depth` turn the rows into the table and the figure. It is a client of the model,
training and prediction modules, which know nothing of depths.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplab._validation import check_choice, check_pair
from mlplab.torch_mlp.model import (
    HIDDEN,
    INIT_STD,
    INITS,
    MultiLayerPerceptron,
    build_model,
    hidden_for_depth,
)
from mlplab.torch_mlp.predict import accuracy
from mlplab.torch_mlp.training import TorchTrainConfig, fit
from mlplab.trainer import History

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class DepthResult:
    """One network of a depth study. ``test_acc`` is set only for the best-by-validation network
    of its initialisation."""

    init: str
    depth: int
    hidden: list[int]
    train_acc: float
    val_acc: float
    test_acc: float | None = None
    best: bool = False
    seconds: float = 0.0
    history: History | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the row, plus train/validation accuracy and the mean loss per epoch."""
        d = {k: v for k, v in asdict(self).items() if k != "history"}
        h = self.history
        if h is not None and h.val_acc:
            per_epoch = len(h.loss) // len(h.val_acc)
            d["epochs"] = {"train_acc": list(h.train_acc), "val_acc": list(h.val_acc),
                           "mean_loss": [float(np.mean(h.loss[i * per_epoch:(i + 1) * per_epoch]))
                                         for i in range(len(h.val_acc))]}
        return d


@dataclass
class StudyProgress:
    """How far a stopped :func:`depth_study` got, for its ``resume``: the networks it finished,
    ``(init, depth) -> (result, model)``, and the network in training when it stopped
    (``current``, its ``(init, depth)``, or None), with :func:`fit`'s training ``state`` after its
    last whole epoch and the ``seconds`` it had trained."""

    finished: dict[tuple[str, int], tuple[DepthResult, MultiLayerPerceptron]] = \
        field(default_factory=dict)
    current: tuple[str, int] | None = None
    state: dict[str, Any] | None = None
    seconds: float = 0.0


def check_depths(depths: Any, name: str = "depths") -> list[int]:
    """``depths`` as a list, refused when empty or when it is a string or a single number: "2,3"
    was taken one character at a time ("depth ... got '2'", then the comma), 3 failed as not
    iterable."""
    if isinstance(depths, str | bytes) or not isinstance(depths, Iterable):
        raise TypeError(f"{name} must be a list of depths, e.g. [2, 3, 4, 5]; got {depths!r} "
                        "(the command line's --layers takes 2,3,4,5).")
    depths = list(depths)
    if not depths:
        raise ValueError(f"{name} must list at least one depth, e.g. [2, 3, 4, 5].")
    return depths


def depth_study(X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
                X_test: np.ndarray | None = None, y_test: np.ndarray | None = None, *,
                depths: Sequence[int] = (2, 3, 4, 5), hidden_size: int = HIDDEN[0],
                inits: Sequence[str] = ("exercise",), std: float = INIT_STD,
                dropout: float = 0.0, batchnorm: bool = False,
                config: TorchTrainConfig | None = None, num_classes: int | None = None,
                on_result: Callable[[DepthResult], None] | None = None,
                on_network: Callable[[DepthResult, MultiLayerPerceptron], None] | None = None,
                on_checkpoint: Callable[[str, int, dict[str, Any], float], None] | None = None,
                resume: StudyProgress | None = None, **overrides: Any) -> list[DepthResult]:
    """The exercise's Question 4 experiment: for each initialisation and each depth, build a
    network of ``depth - 1`` hidden layers of ``hidden_size`` (every network from the same seed),
    train it with :func:`fit`, and record its final train accuracy (the whole training split) and
    validation accuracy. Then, per initialisation, only the network with the best validation
    accuracy (ties: the shallower) is run on the test split. ``on_result`` is called as each
    network finishes.

    A study can be stopped and continued: ``on_network(result, model)`` gets each network as it
    finishes (to save it), ``on_checkpoint(init, depth, state, seconds)`` the training state of
    the network in training after each of its epochs (:func:`fit`'s ``on_checkpoint``, with its
    seconds so far), and ``resume`` (a :class:`StudyProgress`) continues a study from what these
    saved: its finished networks are not trained again, the one in training goes on from its
    state, and the study ends as one never stopped (bit for bit on the same device and thread
    count, since every network is built and trained from the same seed on its own)."""
    depths = check_depths(depths)
    for init in inits:
        check_choice(init, INITS, "init")
    base = config.to_dict() if config is not None else {}
    cfg = TorchTrainConfig.from_dict({**base, **overrides})
    if X_val is None or not len(X_val):
        raise ValueError("a depth study picks the best network by validation accuracy, so it "
                         "needs a non-empty validation split.")
    # X_test alone failed only after every network had trained, y_test alone was ignored
    check_pair(X_test, y_test, ("X_test", "y_test"), "to test the best network")
    X = np.asarray(X).reshape(len(X), -1)
    k = int(num_classes) if num_classes is not None else int(max(np.max(y), np.max(y_val))) + 1
    _warm_up()
    results: list[DepthResult] = []
    for init in inits:
        group: list[tuple[DepthResult, MultiLayerPerceptron]] = []
        for depth in depths:
            done = resume.finished.get((init, int(depth))) if resume is not None else None
            if done is not None:  # finished before the study stopped: not trained again
                group.append(done)
                if on_result is not None:
                    on_result(done[0])
                continue
            hidden = hidden_for_depth(depth, hidden_size)
            model = build_model(X.shape[1], hidden, k, init=init, std=std, dropout=dropout,
                                batchnorm=batchnorm, seed=cfg.seed)
            state, before = None, 0.0
            if resume is not None and resume.current == (init, int(depth)):
                state, before = resume.state, resume.seconds
            start = time.perf_counter()
            save = None if on_checkpoint is None else \
                _saver(on_checkpoint, init, int(depth), start - before)
            history = fit(model, X, y, X_val, y_val, cfg, on_checkpoint=save, resume=state)
            if history.interrupted:  # Ctrl-C: a half-trained net must not enter the table
                raise KeyboardInterrupt
            result = DepthResult(init=init, depth=int(depth), hidden=hidden,
                                 train_acc=accuracy(model, X, y),
                                 val_acc=accuracy(model, X_val, y_val),
                                 seconds=before + time.perf_counter() - start, history=history)
            group.append((result, model))  # the model is kept for the test evaluation below
            if on_network is not None:
                on_network(result, model)
            if on_result is not None:
                on_result(result)
        best, best_model = max(group, key=lambda rm: (rm[0].val_acc, -rm[0].depth))
        best.best = True
        if X_test is not None and y_test is not None and len(X_test):  # (a pair, checked above)
            best.test_acc = accuracy(best_model, X_test, y_test)
        results.extend(r for r, _ in group)
    return results


def _saver(on_checkpoint: Callable[[str, int, dict[str, Any], float], None], init: str,
           depth: int, since: float) -> Callable[[dict[str, Any]], None]:
    """:func:`fit`'s ``on_checkpoint`` for one network: the study's, told which network and its
    seconds of training (counted from ``since``, earlier by those trained before a stop)."""
    def save(state: dict[str, Any]) -> None:
        on_checkpoint(init, depth, state, time.perf_counter() - since)
    return save


def _warm_up() -> None:
    """Make PyTorch's first optimiser now, outside the timings: the first ``torch.optim.Adam``
    of a process loads modules lazily (about 2 s on the development machine, 20 times the
    training of a digits network), which counted in the first network's seconds. A zero
    parameter and no random draws: nothing the study computes changes."""
    import torch

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, weight_decay=1e-3)


DEPTH_COLUMNS = ("init", "depth", "hidden", "train_acc", "val_acc", "test_acc", "seconds")


def depth_table_csv(results: Sequence[DepthResult]) -> str:
    """The depth table as CSV (accuracies as fractions, whole, as ``depth.json`` and mlplab's
    other CSV files, ``history.csv`` and ``results.csv``, give them; ``test_acc`` empty except
    for the best)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(DEPTH_COLUMNS)
    for r in results:
        # (four decimals made 0.1444 of depth.json's 0.14444444444444443: the CSV, read back,
        # did not give the study's numbers, nor tell apart two networks one image apart)
        w.writerow([r.init, r.depth, "-".join(map(str, r.hidden)) or "none",
                    repr(float(r.train_acc)), repr(float(r.val_acc)),
                    "" if r.test_acc is None else repr(float(r.test_acc)), f"{r.seconds:.1f}"])
    return buf.getvalue()


def depth_table_markdown(results: Sequence[DepthResult], test_label: str = "test") -> str:
    """The exercise's table in Markdown: depth, train and validation accuracy (%) per network,
    and the test accuracy of the best-by-validation network only (marked in bold)."""
    lines = [f"| init | layers | hidden sizes | train acc % | val acc % | {test_label} acc % "
             "| seconds |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        val = f"**{100 * r.val_acc:.1f}**" if r.best else f"{100 * r.val_acc:.1f}"
        test = "—" if r.test_acc is None else f"**{100 * r.test_acc:.1f}**"
        lines.append(f"| {r.init} | {r.depth} | {', '.join(map(str, r.hidden)) or 'none'} | "
                     f"{100 * r.train_acc:.1f} | {val} | {test} | {r.seconds:.1f} |")
    return "\n".join(lines) + "\n"


def plot_depth(results: Sequence[DepthResult]) -> Figure:
    """Train (dashed, hollow markers) and validation (solid, filled markers) accuracy against
    depth, one colour and marker per initialisation (exercise circles, default squares), the
    test accuracy of each best network as a star named by its initialisation. Returns a
    Matplotlib figure;
    :func:`mlplab.plots.save` writes it atomically."""
    from mlplab import plots

    fig, ax = plots.subplots(figsize=plots.FIGSIZE)
    colours = {"exercise": plots.COLORS["exercise_init"], "default": plots.COLORS["default_init"]}
    # not by colour alone: the purple and brown are near alike in greyscale, and a study of one
    # depth draws points only, whose dashes and solid lines do not show
    markers = {"exercise": "o", "default": "s"}
    for init in dict.fromkeys(r.init for r in results):
        rows = sorted((r for r in results if r.init == init), key=lambda r: r.depth)
        depths = [r.depth for r in rows]
        c = colours.get(init)
        m = markers.get(init, "o")
        ax.plot(depths, [100 * r.train_acc for r in rows], ls="--", marker=m, color=c,
                mfc="white", label=f"{init} init: train")
        ax.plot(depths, [100 * r.val_acc for r in rows], ls="-", marker=m, color=c,
                label=f"{init} init: validation")
        for r in rows:
            if r.test_acc is not None:
                ax.plot([r.depth], [100 * r.test_acc], "*", color=c, markersize=14,
                        markeredgecolor="black", label=f"{init} init: test (best by val)")
                # the two stars differ in colour alone (near alike in greyscale): named
                ax.annotate(init, (r.depth, 100 * r.test_acc), textcoords="offset points",
                            xytext=(9, -3), fontsize="x-small")
    ax.set_xlabel("layers (Linear layers; 2 = one hidden layer)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("PyTorch MLP: accuracy against depth")
    ax.set_xticks(sorted({r.depth for r in results}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    return fig
