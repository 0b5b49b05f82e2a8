"""The tuning plots :func:`mlplab.tuning.results.write_plots` writes, checked on the figure
itself (its axes, labels and where they land), not on pixels: the parallel-coordinate plot must
be readable, as Optuna's own was not."""

import itertools
import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from PIL import Image

from mlplab.tuning.results import OBJECTIVE, parallel_coordinate, write_plots

#: the extended space's knobs: log-scale floats and ints, a linear float, a step int, and
#: categorical numbers and words
SPACE = {
    "hidden_size": IntDistribution(32, 512, log=True),
    "lr": FloatDistribution(1e-4, 0.3, log=True),
    "reg": FloatDistribution(1e-6, 0.1, log=True),
    "batch_size": CategoricalDistribution([64, 128, 200, 300]),
    "epochs": IntDistribution(5, 20, step=5),
    "lr_decay": FloatDistribution(0.85, 1.0),
    "optimizer": CategoricalDistribution(["sgd", "momentum", "adam"]),
    "depth": IntDistribution(1, 3),
    "dropout": FloatDistribution(0.0, 0.5),
}


@pytest.fixture(scope="module")
def study():
    """A maximised study of 24 completed trials over :data:`SPACE`, made without training (the
    plots read only the trials), with the best trials among the first: Optuna drew them first,
    under the worse ones."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(0)
    study = optuna.create_study(direction="maximize")
    for i in range(24):
        params = {}
        for name, dist in SPACE.items():
            if isinstance(dist, CategoricalDistribution):
                params[name] = dist.choices[rng.integers(len(dist.choices))]
            elif dist.log:
                value = float(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high))))
                params[name] = int(round(value)) if isinstance(dist, IntDistribution) else value
            elif isinstance(dist, IntDistribution):
                params[name] = int(rng.choice(np.arange(dist.low, dist.high + 1, dist.step)))
            else:
                params[name] = float(rng.uniform(dist.low, dist.high))
        study.add_trial(optuna.trial.create_trial(params=params, distributions=SPACE,
                                                  value=0.98 - 0.03 * i))
    return study


def _overlapping(texts, renderer):
    """The pairs of non-empty texts in ``texts`` whose drawn boxes overlap."""
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_text()]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
            if box_a.overlaps(box_b)]


def test_the_parallel_coordinate_plot_is_labelled_and_its_labels_do_not_overlap(study):
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    ax = parallel_coordinate(study)
    fig = ax.figure
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        title = ax.get_title()
        assert "24 completed trials" in title and f"coloured by {OBJECTIVE}" in title
        names = [t.get_text() for t in ax.get_xticklabels()]
        assert names[0] == OBJECTIVE and sorted(names[1:]) == sorted(SPACE)
        knobs = {name: a for a in fig.axes for name in names[1:]
                 if a is not ax and ax.get_shared_x_axes().joined(a, ax)
                 and abs(a.spines["right"].get_position()[1] -
                         names.index(name) / (len(names) - 1)) < 1e-9}
        assert sorted(knobs) == sorted(SPACE)

        # the colour bar says what the colours are, and the lines have them, best on top
        (bar,) = [a for a in fig.axes if a.get_ylabel() == OBJECTIVE]
        assert bar not in knobs.values()
        (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        drawn = np.asarray(lines.get_array())
        assert len(drawn) == 24 and list(drawn) == sorted(drawn)  # the best last, on top
        assert lines.get_cmap().name == "viridis_r"
        assert ax.get_facecolor()[:3] == (1.0, 1.0, 1.0)  # not grey, with white gridlines

        # log-scale knobs are labelled with plain numbers, in their range
        for name in ("hidden_size", "lr", "reg"):
            knob = knobs[name]
            assert knob.get_yscale() == "log"
            labels = [t.get_text() for t in knob.get_yticklabels()]
            assert len(labels) >= 2 and all(
                not any(c in text for c in "$\\^{") for text in labels), (name, labels)
            low, high = knob.get_ylim()
            assert all(low <= float(text) <= high for text in labels), (name, labels)
        assert {t.get_text() for t in knobs["hidden_size"].get_yticklabels()} >= {"100", "200"}
        assert {t.get_text() for t in knobs["optimizer"].get_yticklabels()} == \
            {"sgd", "momentum", "adam"}  # a categorical knob keeps its choices
        # an integer knob is labelled with its values, not 1.25, 1.5
        assert [t.get_text() for t in knobs["depth"].get_yticklabels()] == ["1", "2", "3"]
        assert [t.get_text() for t in knobs["epochs"].get_yticklabels()] == ["5", "10", "15",
                                                                            "20"]

        # nothing written over anything else: names, every axis's tick labels, the title
        assert not _overlapping(ax.get_xticklabels(), renderer)
        ticks = [t for a in (ax, *knobs.values()) for t in a.get_yticklabels()]
        assert not _overlapping(ticks, renderer)
        assert not _overlapping([ax.title, *ticks, *bar.get_yticklabels()], renderer)
        assert all(t.get_bbox_patch() is not None for t in ticks)  # on a white ground
        # the colour bar just right of the last knob's labels, not an inch or more away
        last = max(t.get_window_extent(renderer).x1 for t in knobs["reg"].get_yticklabels())
        assert 0 < bar.get_window_extent(renderer).x0 - last < 0.6 * fig.dpi
        page = fig.bbox
        for text in (*ax.get_xticklabels(), *ticks, ax.title):
            box = text.get_window_extent(renderer)
            assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and \
                box.y1 <= page.y1, text.get_text()  # nothing cut off by the page's edge
    finally:
        plt.close(fig)


def test_write_plots_writes_the_parallel_coordinate_png(study, tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    written, skipped = write_plots(study, tmp_path)
    assert skipped == {} and set(written) == {"optimization_history", "parallel_coordinate",
                                              "param_importances"}
    with Image.open(written["parallel_coordinate"]) as im:
        assert im.format == "PNG" and im.size[0] >= im.size[1] > 400
    assert plt.get_fignums() == before  # its figures closed


def test_a_skipped_plot_leaves_no_earlier_studys_png_behind(study, tmp_path):
    """A study removed and begun anew in the same --out (one trial so far) skipped the
    importances plot, and the earlier study's param_importances.png stayed beside tables that
    it did not describe."""
    write_plots(study, tmp_path)
    assert (tmp_path / "param_importances.png").is_file()
    anew = optuna.create_study(direction="maximize")
    anew.add_trial(optuna.trial.create_trial(params={"lr": 0.01}, value=0.5,
                                             distributions={"lr": SPACE["lr"]}))
    written, skipped = write_plots(anew, tmp_path)
    assert "param_importances" in skipped and "param_importances" not in written
    assert not (tmp_path / "param_importances.png").exists()
    assert written["parallel_coordinate"].is_file()


def test_a_knob_every_trial_set_alike_is_labelled_with_its_value_alone():
    import matplotlib.pyplot as plt

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    space = {"lr": SPACE["lr"], "depth": SPACE["depth"]}
    for depth, value in ((2, 0.5), (3, 0.6)):
        study.add_trial(optuna.trial.create_trial(params={"lr": 0.01, "depth": depth},
                                                  distributions=space, value=value))
    with warnings.catch_warnings():  # Optuna's "identical low and high ylims", on lr's axis
        warnings.simplefilter("ignore", UserWarning)
        ax = parallel_coordinate(study)
    try:
        labels = {a.get_yscale(): [t.get_text() for t in a.get_yticklabels()]
                  for a in ax.figure.axes if a is not ax and a.get_yscale() == "log"}
        assert labels == {"log": ["0.01"]}  # not the ends of the range Matplotlib made up
    finally:
        plt.close(ax.figure)


def test_the_plots_give_validation_accuracy_in_percent_as_every_command_prints_it(study):
    """The history's axis and the parallel coordinates' first axis read 0.3-0.98 while the
    commands print 30.00%-98.00%; the history keeps its line of the best value so far (which
    Optuna drops for a ``target``)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from mlplab.tuning.results import optimization_history

    ax = optimization_history(study)
    try:
        ax.figure.canvas.draw()
        assert ax.get_ylabel() == OBJECTIVE == "validation accuracy (%)"
        ticks = [(at, float(t.get_text())) for at, t in zip(ax.get_yticks(),
                                                            ax.get_yticklabels())
                 if t.get_text()]
        assert len(ticks) >= 2 and all(shown == pytest.approx(100 * at) for at, shown in ticks)
        assert any(isinstance(line, Line2D) and max(line.get_ydata()) == pytest.approx(0.98)
                   for line in ax.get_lines())  # the best so far: the first trial's 98%
    finally:
        plt.close(ax.figure)
    ax = parallel_coordinate(study)
    try:
        assert ax.get_ylim() == pytest.approx((29.0, 98.0))  # the trials' 29-98%, not 0.98
    finally:
        plt.close(ax.figure)


@pytest.mark.parametrize("trials", [1, 4])
def test_the_history_ticks_whole_trials(trials):
    """Optuna's history of a few trials was ticked 0.0, 0.5, 1.0, ... along its trial axis, and
    of a single trial -0.04 ... 0.04: no trial is numbered so."""
    import matplotlib.pyplot as plt

    from mlplab.tuning.results import optimization_history

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for i in range(trials):
        study.add_trial(optuna.trial.create_trial(params={"lr": 0.01 * (i + 1)},
                                                  distributions={"lr": SPACE["lr"]},
                                                  value=0.5 + 0.01 * i))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = optimization_history(study)
    try:
        ax.figure.canvas.draw()
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        if trials == 1:
            assert ticks == [0]
    finally:
        plt.close(ax.figure)


def test_the_importances_legend_names_what_the_bars_are_importances_for(study, tmp_path,
                                                                       monkeypatch):
    """Optuna's legend named the bars "Objective Value", which says nothing of what was
    measured; the other plots say validation accuracy."""
    from optuna.visualization import matplotlib as ovm

    from mlplab.tuning import results

    drawn = []
    real = ovm.plot_param_importances
    monkeypatch.setattr(ovm, "plot_param_importances",
                        lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    written, _ = results.write_plots(study, tmp_path)
    assert "param_importances" in written and len(drawn) == 1
    legend = [t.get_text() for t in drawn[0].get_legend().get_texts()]
    assert legend == [results.IMPORTANCE_OF] == ["validation accuracy"], legend
