"""``mlplab data info|show|download`` and the shared --dataset options."""

import argparse
import json
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from mlplab.cli import main
from mlplab.cli.data import add_dataset_arguments, load_dataset_from_args


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "root"))


def _class_folders(root, classes: list[str]) -> str:
    """A folder dataset of 12 random 4x4 PNGs in each of ``classes``; its --dataset spec."""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(
                root / name / f"{i}.png")
    return f"folder:{root}"


def test_info_digits_table(capsys):
    assert main(["data", "info", "digits"]) == 0
    out = capsys.readouterr().out
    assert "8x8x1 uint8 (64 features flattened)" in out
    assert "total      1437      180      180" in out


def test_info_of_many_classes_lists_a_few_on_its_classes_line(tmp_path, capsys):
    """1,000 classes made the "classes" line 11,000 characters long, every name again in the
    table under it: past 10 classes it lists the first 9, ..., the last; the table and --json
    keep every one."""
    for c in range(12):
        (tmp_path / "d" / f"k{c:02d}").mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((2, 2), c, np.uint8)).save(
                tmp_path / "d" / f"k{c:02d}" / f"{i}.png")
    assert main(["data", "info", f"folder:{tmp_path / 'd'}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "classes   12: k00, k01, k02, k03, k04, k05, k06, k07, k08, ..., k11" in lines
    assert sum(line.startswith("k") for line in lines) == 12  # the table's rows
    assert main(["data", "info", f"folder:{tmp_path / 'd'}", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["classes"]) == 12


def test_tables_line_up_class_names_of_wide_characters(tmp_path, capsys):
    """A folder dataset whose classes are named in Chinese (two terminal columns a character) or
    with a combining accent: data info's and evaluate's per-class rows came out of line, padded
    by code points."""
    from mlplab._text import display_width

    classes = ["猫", "cafe\u0301", "dog"]
    data = _class_folders(tmp_path / "d", classes)
    assert main(["data", "info", data, "--val-size", "6", "--test-size", "6"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.split(" ")[0] in (*classes, "class", "total")]
    assert len(rows) == 5 and len({display_width(line) for line in rows}) == 1, rows
    run = tmp_path / "run"
    assert main(["train", "--dataset", data, "--val-size", "6", "--test-size", "6",
                 "--hidden", "8", "--epochs", "1", "--no-plots", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.strip().split(" ")[0] in classes]
    assert len(rows) == 3 and len({display_width(line) for line in rows}) == 1, rows


def test_class_names_reach_the_terminal_with_their_control_characters_written_out(
        tmp_path, capsys):
    """A class folder named with a bidirectional override (which the folder loader takes, as it
    is no control character of Unicode's Cc) reordered the rest of data info's and evaluate's
    lines as displayed: written out as \\u202e, as mlplab runs writes such a name, every row
    stays one line of the same width."""
    classes = ["\u202eevil", "iso\u2067late", "dog"]
    shown = ["\\u202eevil", "iso\\u2067late", "dog"]
    data = _class_folders(tmp_path / "d", classes)
    assert main(["data", "info", data, "--val-size", "6", "--test-size", "6"]) == 0
    out = capsys.readouterr().out
    assert "\u202e" not in out and "\u2067" not in out
    assert "classes   3: dog, iso\\u2067late, \\u202eevil" in out.splitlines()  # (sorted as named)
    rows = [line for line in out.splitlines() if line.split(" ")[0] in (*shown, "class")]
    assert len(rows) == 4 and len({len(line) for line in rows}) == 1, rows
    run = tmp_path / "run"
    assert main(["train", "--dataset", data, "--val-size", "6", "--test-size", "6",
                 "--hidden", "8", "--epochs", "1", "--no-plots", "--quiet", "--out",
                 str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "\u202e" not in out and "\u2067" not in out
    rows = [line for line in out.splitlines() if line.strip().split(" ")[0] in shown]
    assert len(rows) == 3 and len({len(line) for line in rows}) == 1, rows


def test_control_characters_of_class_names_from_elsewhere_are_written_out(
        monkeypatch, capsys):
    """Class names the folder loader refuses (a newline, ESC) can still come from a dataset made
    in Python: data info wrote them as they were, a newline splitting its table's row in two and
    an ESC sequence reaching the terminal; so did evaluate's table and its list of confusions."""
    import mlplab.cli.data as cli_data
    import mlplab.runs
    from mlplab.data.base import Dataset

    classes = ["a\nb", "esc\x1b[2Jcleared", "\x1b]0;title\x07"]
    shown = ["a\\nb", "esc\\x1b[2Jcleared", "\\x1b]0;title\\x07"]
    X = np.zeros((6, 2, 2, 1), np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    ds = Dataset("hand\x1bmade", classes, X, y, X[:3], y[:3], X[:3], y[:3], source="mem\nory")
    monkeypatch.setattr(cli_data, "load_dataset_from_args", lambda args, progress=True: ds)
    assert main(["data", "info", "digits"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    lines = out.splitlines()
    assert f"classes   3: {', '.join(shown)}" in lines
    assert "dataset   hand\\x1bmade" in lines and "source    mem\\nory" in lines
    rows = [line for line in lines if line.split(" ")[0] in (*shown, "class", "total")]
    assert len(rows) == 5 and len({len(line) for line in rows}) == 1, rows

    many = classes + [f"k{i}" for i in range(30)]  # past 30 classes: the largest confusions
    cm = np.eye(len(many), dtype=int)
    cm[0, 1], cm[2, 0] = 5, 3
    result = {"split": "val", "dataset": "hand\x1bmade", "size": int(cm.sum()), "accuracy": 0.5,
              "classes": many, "per_class_accuracy": [0.5] * len(many),
              "confusion_matrix": cm.tolist()}
    monkeypatch.setattr(mlplab.runs, "evaluate_run", lambda *args, **kwargs: result)
    assert main(["evaluate", "run"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    lines = out.splitlines()
    assert lines[0].startswith("hand\\x1bmade val (")
    rows = [line for line in lines if line.strip().split(" ")[0] in shown]
    assert len(rows) == 3 + 2 and len({len(line) for line in rows[:3]}) == 1, rows
    assert f"  {shown[0]:<{len(shown[2])}} -> {shown[1]}  5" in lines
    assert f"  {shown[2]} -> {shown[0]}  3" in lines


def test_info_refuses_both_spellings_of_its_split_seed(capsys):
    # --data-seed 4 --seed 3 split with 3, the last, without a word
    with pytest.raises(SystemExit) as exc:
        main(["data", "info", "digits", "--data-seed", "4", "--seed", "3"])
    assert exc.value.code == 2
    assert "--data-seed and --seed are the same setting; give one of them" in \
        capsys.readouterr().err
    assert main(["data", "info", "digits", "--seed", "3", "--seed", "4", "--json"]) == 0
    assert main(["data", "info", "digits", "--data-seed", "4", "--json"]) == 0  # alone: fine


def test_info_json_with_split_options(capsys):
    assert main(["data", "info", "digits", "--val-size", "0.2", "--test-size", "100",
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["splits"]["test"]["size"] == 100
    assert s["splits"]["val"]["size"] == round(0.2 * 1697)
    assert sum(s["splits"]["train"]["class_counts"]) == s["splits"]["train"]["size"]


@pytest.mark.parametrize("val,test,sizes", [("1", "2", (1, 2)),
                                            ("0.5", "3", (round(0.5 * 1794), 3))])
def test_split_sizes_of_one_image_are_counts_not_fractions(val, test, sizes, capsys):
    """--val-size 1 is one image (a fraction must be below 1): read as the number 1.0 it was
    refused as a 100% fraction."""
    assert main(["data", "info", "digits", "--val-size", val, "--test-size", test,
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["splits"]["val"]["size"], s["splits"]["test"]["size"]) == sizes


def test_show_writes_png(tmp_path, capsys):
    out = tmp_path / "figs" / "grid.png"
    assert main(["data", "show", "digits", "--out", str(out), "--per-class", "3"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]


def test_show_draws_the_split_its_help_says(tmp_path, capsys):
    """``data show``'s description said 'random training images' whatever --split chose."""
    from mlplab.cli import build_parser

    data = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    show = next(a for a in data.choices["data"]._actions
                if isinstance(a, argparse._SubParsersAction)).choices["show"]
    assert "training images unless --split" in " ".join(show.description.split())
    out = tmp_path / "test.png"
    assert main(["data", "show", "digits", "--out", str(out), "--per-class", "2", "--split",
                 "test"]) == 0
    assert "(2 test images per class, 10 classes)" in capsys.readouterr().out


def test_show_counts_a_single_class_in_the_singular(tmp_path, capsys):
    """A folder of one class (which data info and show accept, and train refuses): show said
    "(3 train images per class, 1 classes)"."""
    (tmp_path / "d" / "only").mkdir(parents=True)
    for i in range(10):
        Image.fromarray(np.full((4, 4, 3), 20 * i, np.uint8)).save(
            tmp_path / "d" / "only" / f"{i}.png")
    out = tmp_path / "one.png"
    assert main(["data", "show", f"folder:{tmp_path / 'd'}", "--out", str(out),
                 "--per-class", "3"]) == 0
    assert "(3 train images per class, 1 class)" in capsys.readouterr().out


def test_show_of_many_classes_draws_thirty_columns(tmp_path, capsys, monkeypatch):
    """A folder of 100 classes drew 100 columns of specks under names piled over the title, and
    1,000 classes took 100 s to draw: at most 30 columns, the first classes (the first with
    images in the split, where a small split leaves some without), said in the title and the
    line written."""
    import mlplab.plots
    from mlplab.data.preview import grid_classes, shown_classes

    for c in range(35):
        (tmp_path / "d" / f"k{c:02d}").mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((4, 4), 7 * c + i, np.uint8)).save(
                tmp_path / "d" / f"k{c:02d}" / f"{i}.png")
    drawn = {}
    plot_samples = mlplab.plots.plot_samples

    def spy(X, y, classes, **kw):
        drawn.update(y=y, classes=classes, title=kw["title"])
        return plot_samples(X, y, classes, **kw)

    monkeypatch.setattr(mlplab.plots, "plot_samples", spy)
    assert main(["data", "show", f"folder:{tmp_path / 'd'}", "--val-size", "0", "--test-size",
                 "0", "--out", str(tmp_path / "s.png")]) == 0
    assert capsys.readouterr().out.endswith(
        "(2 train images per class, the first 30 of 35 classes)\n")
    assert drawn["classes"] == [f"k{c:02d}" for c in range(30)]
    assert sorted(set(drawn["y"])) == list(range(30)) and len(drawn["y"]) == 60
    assert drawn["title"].endswith(": sample train images (the first 30 of 35 classes)")
    # a split without images of the first classes: the first 30 classes it has
    y = np.repeat(np.arange(3, 40), 2)
    assert list(grid_classes(y, 40)) == list(range(3, 33))
    assert shown_classes(grid_classes(y, 40), 40, "val") == (
        "30 of 40 classes, the first with val images")
    assert list(grid_classes(y, 30)) == list(range(30))  # 30 classes: all, empty ones too
    # fewer than 30 with images: all of those, not "the first" of them
    y = np.repeat(np.arange(19, 31), 2)
    assert list(grid_classes(y, 31)) == list(range(19, 31))
    assert shown_classes(grid_classes(y, 31), 31, "val") == "the 12 of 31 classes with val images"
    assert shown_classes(grid_classes(y - 19, 31), 31, "val") == (
        "the 12 of 31 classes with val images")  # (classes 0-11: not "the first 12" either)
    assert shown_classes(np.arange(1), 1, "train") == "1 class"


def test_show_help_says_how_many_classes_it_draws(capsys):
    """--help said "one column per class", of a command that draws at most 30."""
    with pytest.raises(SystemExit):
        main(["data", "show", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "one column per class titled with its name; of more than 30 classes, the first 30 " \
           "(the first with images in the split)" in said, said


def test_show_says_up_to_when_a_class_has_fewer_images_than_it_draws(tmp_path, capsys):
    """digits' validation classes hold 17 to 19 images: ``--per-class 50`` drew 19 rows, and
    said "19 val images per class" of classes with 17 in their column."""
    from mlplab.data import load_dataset

    counts = np.bincount(load_dataset("digits").y_val)
    assert counts.min() < counts.max()
    out = tmp_path / "grid.png"
    assert main(["data", "show", "digits", "--split", "val", "--per-class", "50",
                 "--out", str(out)]) == 0
    assert f"(up to {counts.max()} val images per class," in capsys.readouterr().out
    assert main(["data", "show", "digits", "--split", "val", "--per-class",
                 str(counts.min()), "--out", str(out)]) == 0
    assert f"({counts.min()} val images per class," in capsys.readouterr().out


def test_show_as_the_network_sees_them(tmp_path, capsys):
    """``data show --augment ...`` draws the images as training feeds them to the network; bad
    augmentation options are usage errors, and nothing is written."""
    out = tmp_path / "aug.png"
    assert main(["data", "show", "digits", "--out", str(out), "--per-class", "2", "--augment",
                 "flip,crop,elastic", "--elastic-pixels", "1", "--crop-fill", "black"]) == 0
    assert "as the network sees them: standardize + flip + crop + elastic" in \
        capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "PNG"
    bad = tmp_path / "bad.png"
    assert main(["data", "show", "digits", "--out", str(bad), "--augment", "elastic",
                 "--elastic-pixels", "0"]) == 2
    assert "error: --elastic-pixels must be" in capsys.readouterr().err and not bad.exists()
    # options that would be ignored, augmenting images training never augments, bad --out
    for argv, message in [
        (["--augment", "flip", "--crop-padding", "2"], "--crop-padding has no effect without crop"),
        (["--crop-fill", "black"], "--crop-fill has no effect without crop or elastic"),
        (["--augment", "flip", "--split", "val"], "training augments only training images"),
    ]:
        assert main(["data", "show", "digits", "--out", str(bad), *argv]) == 2
        assert message in capsys.readouterr().err and not bad.exists()
    # the format is the argument's fault (2); a folder in the way the file system's (1), as
    # `mlplab train --out FILE` is
    for target, code, message in [(tmp_path, 1, "is a folder; give an image file name"),
                                  (tmp_path / "grid.txt", 2, "write a .png, .pdf or .svg file")]:
        assert main(["data", "show", "digits", "--out", str(target)]) == code
        assert message in capsys.readouterr().err
    # a repeated augmentation counts once (no more rows than a class has: the test above); one
    # image is one
    assert main(["data", "show", "digits", "--out", str(out), "--augment", "flip,flip",
                 "--per-class", "1"]) == 0
    said = capsys.readouterr().out
    assert "(1 train image per class, 10 classes, as the network sees them: standardize + flip)" \
        in said


def test_network_view_is_the_preprocessed_augmented_image():
    """Without augmentation, a per-channel affine preprocessing scaled to each image's range is
    the raw image scaled to its range; with flips, each image is that or its mirror; with
    crops and elastic distortions it stays in [0, 1] and changes."""
    from mlplab.data import load_dataset
    from mlplab.runs import RunConfig, make_network_view

    ds = load_dataset("digits", seed=0)
    raw = ds.X_train[:40].astype(np.float64)
    lo, hi = raw.min(axis=(1, 2, 3), keepdims=True), raw.max(axis=(1, 2, 3), keepdims=True)
    expected = (raw - lo) / (hi - lo)
    plain = make_network_view(RunConfig(), ds)(ds.X_train[:40])
    assert plain.shape == raw.shape
    np.testing.assert_allclose(plain, expected, atol=1e-5)
    flipped = make_network_view(RunConfig(augment=["flip"]), ds, seed=3)(ds.X_train[:40])
    same = np.all(np.isclose(flipped, expected, atol=1e-5), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(flipped, expected[:, :, ::-1], atol=1e-5), axis=(1, 2, 3))
    assert np.all(same | mirrored) and mirrored.sum() > 5 and (same & ~mirrored).sum() > 5
    warped = make_network_view(RunConfig(augment=["crop", "elastic"]), ds)(ds.X_train[:40])
    assert warped.min() >= 0 and warped.max() <= 1 and not np.allclose(warped, expected)


def test_plot_samples_draws_the_transformed_images():
    import matplotlib.pyplot as plt

    from mlplab.plots import plot_samples

    rng = np.random.RandomState(0)
    X = rng.randint(0, 255, (12, 4, 4, 1), dtype=np.uint8)
    y = np.repeat([0, 1, 2], 4)
    seen = []

    def negate(images):
        seen.append(images.copy())
        return 255 - images

    fig = plot_samples(X, y, ["a", "b", "c"], per_class=2, transform=negate)
    try:
        assert len(seen) == 3 and all(s.shape == (2, 4, 4, 1) for s in seen)
        drawn = fig.axes[0].images[0].get_array()  # class "a", first row
        np.testing.assert_array_equal(drawn, 255 - seen[0][0, :, :, 0])
    finally:
        plt.close(fig)


def test_plot_samples_puts_an_empty_class_name_level_with_the_others():
    """A class with no images in the split (a small CIFAR-10 set's airplanes) left its column's
    axes the full slot while the image columns shrank to the images' shape: its name stood a
    few pixels above the others."""
    import matplotlib.pyplot as plt

    from mlplab.plots import plot_samples

    X = np.zeros((20, 32, 32, 3), np.uint8)
    y = np.repeat([1, 2], 10)
    fig = plot_samples(X, y, [f"class {i}" for i in range(10)], per_class=4)
    try:
        fig.canvas.draw()
        levels = {round(ax.title.get_window_extent().y0, 1) for ax in fig.axes[:10]}
    finally:
        plt.close(fig)
    assert len(levels) == 1, levels


def test_plot_samples_cuts_long_class_names_as_the_confusion_matrix_does():
    """A folder's classes named by sentences (186 characters) stood upright whole above the
    images, a figure of 10 inches of names with its title drawn over them: cut in the middle
    past 24 characters, as the confusion matrix's labels are."""
    import matplotlib.pyplot as plt

    from mlplab.plots import plot_samples

    names = [f"very long class name number {i} " * 6 + "end" for i in range(3)]
    fig = plot_samples(np.zeros((6, 8, 8, 1), np.uint8), np.array([0, 0, 1, 1, 2, 2]), names,
                       per_class=2)
    try:
        titles = [ax.title.get_text() for ax in fig.axes if ax.title.get_text()]
        assert titles == [f"very long c\u2026number {i} end" for i in range(3)]
        assert fig.get_figheight() < 5  # 10.6 inches whole
        fig.canvas.draw()
        top = max(ax.title.get_window_extent().y1 for ax in fig.axes)
        assert top < fig._suptitle.get_window_extent().y0  # the title above the names
    finally:
        plt.close(fig)


def test_plot_samples_stretches_images_of_extreme_shape_into_sight():
    """A folder of 1x500-pixel images drew each a tenth of a pixel tall (500x1: under a pixel
    wide), a figure of class names and no image: drawn at most 4 times wider than tall or
    taller than wide; other images keep their shape."""
    import matplotlib.pyplot as plt

    from mlplab.plots import plot_samples

    y = np.array([0, 0, 1, 1, 2, 2])
    for (h, w), drawn in (((1, 500), 1 / 4), ((500, 1), 4), ((4, 6), 4 / 6), ((8, 8), 1)):
        fig = plot_samples(np.full((6, h, w, 1), 128, np.uint8), y, ["a", "b", "c"],
                           per_class=2)
        try:
            fig.canvas.draw()
            box = fig.axes[0].images[0].get_window_extent()
            assert min(box.width, box.height) > 15, ((h, w), box)
            assert box.height / box.width == pytest.approx(drawn, rel=0.02), (h, w)
        finally:
            plt.close(fig)


def test_sample_grid_of_few_classes_keeps_its_whole_title(tmp_path):
    """Two classes make a figure 1.9 inches wide; the title naming the folder was cut at both
    ends ("lder:photos: sample train imag")."""
    import matplotlib.pyplot as plt

    from mlplab.plots import plot_samples

    folder = tmp_path / "my holiday photos"
    for c in ("beach", "hills"):
        (folder / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (6, 4), (40 * i, 80, 120)).save(folder / c / f"{i}.png")
    out = tmp_path / "grid.png"
    assert main(["data", "show", f"folder:{folder}", "--out", str(out)]) == 0
    fig = plot_samples(np.zeros((2, 4, 6, 3), np.uint8), np.array([0, 1]), ["beach", "hills"],
                       title=f"folder:{folder}: sample train images")
    try:
        fig.set_dpi(100)  # sample_grid's
        fig.canvas.draw()
        title = fig._suptitle.get_window_extent()
    finally:
        plt.close(fig)
    assert Image.open(out).size[0] >= title.width


def test_sample_grid_refuses_no_images_per_class_and_closes_its_figure(tmp_path):
    """Each call's figure is closed (a notebook or a long session would pile them up), and
    per_class 0 is refused before anything is drawn or written."""
    import matplotlib.pyplot as plt

    from mlplab.data import DatasetError, load_dataset
    from mlplab.data.preview import sample_grid

    ds = load_dataset("digits")
    before = plt.get_fignums()
    sample_grid(ds, tmp_path / "grid.png", per_class=2)
    assert (tmp_path / "grid.png").stat().st_size and plt.get_fignums() == before
    for bad in (0, 31):  # (31 rows: each image under a third of an inch; 2,000 took minutes)
        with pytest.raises(DatasetError, match=f"per_class must be between 1 and 30 \\(the "
                                               f"figure is at most 9 inches tall\\); got {bad}"):
            sample_grid(ds, tmp_path / "none.png", per_class=bad)
    assert not (tmp_path / "none.png").exists() and plt.get_fignums() == before
    sample_grid(ds, tmp_path / "most.png", per_class=30)
    assert (tmp_path / "most.png").stat().st_size


def test_missing_dataset_is_one_line_exit_1(tmp_path, capsys):
    assert main(["data", "info", "cifar10", "--data-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "mlplab data download cifar10 --data-dir" in err
    (tmp_path / "file").write_bytes(b"")
    assert main(["data", "info", "mnist", "--data-dir", str(tmp_path / "file")]) == 1
    assert f"{tmp_path / 'file'} is a file; --data-dir must be the folder" in \
        capsys.readouterr().err
    # before any download is tried (it would fail writing into the file)
    assert main(["data", "download", "mnist", "--data-dir", str(tmp_path / "file"),
                 "--mirror", "http://127.0.0.1:9"]) == 1
    assert f"{tmp_path / 'file'} is a file; --data-dir must be the folder" in \
        capsys.readouterr().err


@pytest.mark.parametrize("argv,kwargs,message", [
    # the largest count named is one that leaves a training image (1617 itself is refused)
    (["--val-size", "5000"], {"val_size": 5000},
     "{} must be between 0 and 1616 (of 1617 images, 1 kept for training); got 5000."),
    (["--test-size", "5000"], {"test_size": 5000},
     "{} must be between 0 and 1796 (of 1797 images, 1 kept for training); got 5000."),
    (["--test-size", "1797"], {"test_size": 1797}, "{} 1797 leaves no training images"),
    (["--test-size", "797", "--val-size", "1000"], {"test_size": 797, "val_size": 1000},
     "{} 1000 leaves no training images"),
    # a fraction as typed, with the count it made ("--test-size 1797" answered 0.9999)
    (["--test-size", "0.9999"], {"test_size": 0.9999},
     "{} 0.9999 (1797 images) leaves no training images (only 1797 available)."),
    (["--test-size", "797", "--val-size", "0.9999"], {"test_size": 797, "val_size": 0.9999},
     "{} 0.9999 (1000 images) leaves no training images (only 1000 available after the test "
     "split)."),
])
def test_split_size_errors_name_the_flag_typed(argv, kwargs, message, capsys):
    """A split size the images cannot give named load_dataset's keyword (val_size) on the
    command line, not the flag the user typed; from Python it still names the keyword. A
    fraction is named as given, not as the count it made."""
    from mlplab.data import DatasetError, load_dataset

    option = argv[-2]  # the size the message blames: the last one given above
    assert main(["data", "info", "digits", *argv]) == 1
    err = capsys.readouterr().err
    assert f"error: {message.format(option)}" in err, err
    python = option[2:].replace("-", "_")
    with pytest.raises(DatasetError, match=f"^{re.escape(message.format(python))}"):
        load_dataset("digits", **kwargs)


def test_bad_folder_and_bad_options(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "info", f"folder:{tmp_path / 'empty'}"]) == 1
    err = capsys.readouterr().err
    assert "no images found" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        main(["data", "info", "digits", "--val-size", "-3"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:  # 1.0 is not one image
        main(["data", "info", "digits", "--val-size", "1.0"])
    assert e.value.code == 2 and "for one image give 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["data", "info", "digits", "--image-size", "0"])
    assert e.value.code == 2


def test_download_failure_is_one_line(tmp_path, capsys):
    assert main(["data", "download", "mnist", "--data-dir", str(tmp_path),
                 "--mirror", "http://127.0.0.1:1/"]) == 1
    err = capsys.readouterr().err
    assert "cannot download http://127.0.0.1:1/train-images-idx3-ubyte.gz" in err
    assert list(tmp_path.iterdir()) == []


def test_shared_arguments_for_other_commands(tmp_path):
    p = argparse.ArgumentParser()
    add_dataset_arguments(p)
    p.add_argument("--seed", type=int, default=3)
    root = tmp_path / "pics"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((4, 4, 3), i * 10, np.uint8)).save(root / c / f"{i}.png")
    args = p.parse_args(["--dataset", f"folder:{root}", "--val-size", "2", "--test-size", "0",
                         "--image-size", "2x3", "--no-cache"])
    ds = load_dataset_from_args(args)
    assert ds.image_shape == (2, 3, 3) and len(ds.y_val) == 2 and len(ds.y_test) == 0
    assert not (tmp_path / "root" / "folder-cache").exists()
    assert load_dataset_from_args(p.parse_args([])).name == "digits"


def test_info_says_the_images_were_resized(tmp_path, capsys):
    root = tmp_path / "pics"
    for c, size in (("a", (40, 30)), ("b", (20, 50))):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", size, (i * 10, 0, 0)).save(root / c / f"{i}.png")
    assert main(["data", "info", f"folder:{root}", "--image-size", "16x24", "--val-size", "0",
                 "--test-size", "0"]) == 0
    out = capsys.readouterr().out
    assert "images    16x24x3 uint8 (1152 features flattened; resized to 16x24 by --image-size)" \
        in out
    assert main(["data", "info", "digits"]) == 0
    assert "resized" not in capsys.readouterr().out


def test_help_explains(capsys):
    for cmd in (["data", "--help"], ["data", "info", "--help"], ["data", "show", "--help"],
                ["data", "download", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(cmd)
        assert e.value.code == 0
    assert "--mirror" in capsys.readouterr().out


@pytest.mark.parametrize("mirror", ["/srv/mirror", "http://", "ftp.example.org/pub",
                                    # an internal error at the download ("please report
                                    # it"), and argparse's "invalid _base_url value"
                                    "http://127.0.0.1:9/my dir/", "http://127.0.0.1:abc/",
                                    "http://[::1"])
def test_a_mirror_that_is_no_url_is_a_usage_error(mirror, capsys):
    """A folder path or a bare scheme failed only at the download ("unknown url type"), exit
    1, where the command line itself cannot work."""
    with pytest.raises(SystemExit) as e:
        main(["data", "download", "mnist", "--mirror", mirror])
    assert e.value.code == 2
    assert f"argument --mirror: expected a base URL such as https://host/path/ (a local " \
           f"folder: file:///path/); got {mirror!r}" in capsys.readouterr().err


def test_show_into_a_folder_it_cannot_write_names_out(tmp_path, capsys, monkeypatch):
    """A read-only folder was "[Errno 13] Permission denied: '/.../.grid.png.xfapf4ws.part'"
    (the temporary file, and nothing to do); a file on the way was "[Errno 17] File exists"."""
    import mlplab.io

    (tmp_path / "file").write_bytes(b"")
    assert main(["data", "show", "digits", "--out", str(tmp_path / "file" / "grid.png")]) == 1
    assert f"{tmp_path / 'file'} is a file, not a folder; choose another --out." in \
        capsys.readouterr().err

    def read_only(*args, dir=None, **kwargs):  # what a folder one cannot write to answers
        raise PermissionError(13, "Permission denied", f"{dir}/.grid.png.xfapf4ws.part")

    monkeypatch.setattr(mlplab.io.tempfile, "mkstemp", read_only)  # (tempfile's own)
    out = tmp_path / "grid.png"
    assert main(["data", "show", "digits", "--out", str(out), "--per-class", "1"]) == 1
    err = capsys.readouterr().err
    assert err == f"mlplab data show: error: cannot write {out}: Permission denied; choose " \
                  "another --out.\n"


def test_show_under_a_dangling_link_names_the_link(tmp_path, capsys):
    """A folder link whose target is gone on the way to --out said mkdir's "File exists"; it is
    named as every command names it for its output folder."""
    (tmp_path / "runs").symlink_to(tmp_path / "gone")
    out = tmp_path / "runs" / "grid.png"
    assert main(["data", "show", "digits", "--out", str(out), "--per-class", "1"]) == 1
    assert capsys.readouterr().err == (
        f"mlplab data show: error: cannot write {out}: {tmp_path / 'runs'} is a link to "
        f"{tmp_path / 'gone'}, which does not exist; choose another --out.\n")
    assert not (tmp_path / "gone").exists()


def test_an_image_cache_that_cannot_be_written_says_what_to_do(tmp_path, monkeypatch):
    """The warning said only "could not write the image cache ...: [Errno 20] Not a directory:
    ..." on every command, with nothing to do about it."""
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (4, 4), 50 * i).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "file").write_bytes(b"")
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "file"))
    argv = ["data", "info", f"folder:{tmp_path / 'imgs'}", "--val-size", "0", "--test-size", "0"]
    with pytest.warns(UserWarning) as caught:
        assert main(argv) == 0
    message = str(caught[0].message)
    assert message.startswith("could not write the image cache ")
    assert message.endswith(" (Not a directory); the images are decoded again next time: set "
                            "MLPLAB_DATA to a folder you can write to, or pass --no-cache.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([*argv, "--no-cache"]) == 0


@pytest.mark.parametrize("action", ["info", "show --out x.png"])
def test_dataset_flag_on_a_data_action_says_the_name_is_positional(action, capsys):
    """``mlplab data info --dataset digits`` (the flag mlplab train takes) was answered "did you
    mean --data-dir?", which sent the user the wrong way."""
    with pytest.raises(SystemExit) as exit_:
        main(["data", *action.split(), "--dataset", "digits"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --dataset (the dataset is this command's NAME argument, " \
           "without --dataset: mlplab data ACTION NAME" in err
    assert "--data-dir" not in err.splitlines()[-1]


def test_info_takes_trains_data_seed_for_its_splits(monkeypatch, capsys):
    """``data info`` seeded its splits with --seed where ``train`` takes --data-seed: a user
    checking a run's split typed the run's flag and was refused. Both spellings are one option
    and reach ``load_dataset`` (whose splits ``train`` uses) as its seed. (The stratified
    splits' class counts, all that ``info`` prints, are the same for every seed.)"""
    import mlplab.data

    seen = []
    load = mlplab.data.load_dataset
    monkeypatch.setattr(mlplab.data, "load_dataset",
                        lambda *a, **k: seen.append(k["seed"]) or load(*a, **k))
    for flags in (["--data-seed", "3"], ["--seed", "4"], []):
        assert main(["data", "info", "digits", *flags]) == 0
    assert seen == [3, 4, 0]
    assert "total      1437      180      180" in capsys.readouterr().out


def test_show_seeds_its_splits_with_data_seed_and_its_sample_with_seed(tmp_path, monkeypatch):
    """``data show --data-seed`` picks the splits as ``train --data-seed`` does; --seed still
    picks the images drawn (and seeds the splits when --data-seed is not given)."""
    import mlplab.data
    import mlplab.data.preview

    seen = []
    load, grid = mlplab.data.load_dataset, mlplab.data.preview.sample_grid
    monkeypatch.setattr(mlplab.data, "load_dataset",
                        lambda *a, **k: seen.append(("split", k["seed"])) or load(*a, **k))
    monkeypatch.setattr(mlplab.data.preview, "sample_grid",
                        lambda *a, **k: seen.append(("sample", k["seed"])) or grid(*a, **k))
    out = str(tmp_path / "g.png")
    assert main(["data", "show", "digits", "--out", out, "--seed", "2", "--data-seed", "7"]) == 0
    assert seen == [("split", 7), ("sample", 2)]
    seen.clear()
    assert main(["data", "show", "digits", "--out", out, "--seed", "2"]) == 0
    assert seen == [("split", 2), ("sample", 2)]


@pytest.mark.parametrize("command", [["data", "info", "mnist"], ["train", "--dataset", "mnist"],
                                     ["reproduce", "--dataset", "mnist"]])
def test_mirror_without_download_is_a_usage_error(command, tmp_path, capsys):
    """``--mirror`` is read only by a download: without ``--download`` it was ignored, and the
    command failed with "mnist not found" and a fetch command that left the mirror out."""
    code = main([*command, "--mirror", "http://127.0.0.1:9/", "--out" if command[0] != "data"
                 else "--data-dir", str(tmp_path / "x")])
    assert code == 2
    assert "--mirror has no effect without --download" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("action", [["info"], ["show", "--out", "{tmp}/s.png"], ["download"]])
def test_no_progress_silences_the_bars_of_every_data_command(action, tmp_path, monkeypatch,
                                                             capsys, jupyter_kernel):
    """``mlplab data info|show|download`` had no ``--no-progress`` (nor ``--quiet``), which
    train, torch and tune take: a folder's decoding bar and a download's bar were always drawn
    (in a terminal, or here, a notebook, where a bar shows although stderr is no terminal)."""
    if action == ["download"]:
        (tmp_path / "mirror").mkdir()  # a mirror whose file is wrong: the bar, then a refusal
        (tmp_path / "mirror" / "train-images-idx3-ubyte.gz").write_bytes(b"x" * 50_000)
        argv = ["data", "download", "mnist", "--data-dir", str(tmp_path / "d"),
                "--mirror", (tmp_path / "mirror").as_uri() + "/"]
        bar = "B/s]"  # the end of the bar's rate
    else:
        argv = ["data", *(a.format(tmp=tmp_path) for a in action),
                _class_folders(tmp_path / "pics", ["a", "b"])]
        bar = "decoding pics"
    for flags, shown in (([], True), (["--no-progress"], False), (["--quiet"], False)):
        monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / f"cache{len(flags)}{flags[:1]}"))
        main([*argv, *flags])
        err = capsys.readouterr().err
        assert (bar in err) == shown, (flags, err)


@pytest.fixture
def unreadable(monkeypatch):
    """``unreadable(path)``: opening ``path`` (or listing it, a folder) is refused with EACCES,
    as for a file or folder of another user (chmod cannot deny root, who runs some CI)."""
    import builtins
    import io
    import os
    import pathlib

    denied = set()
    real_open, real_os_open, real_listdir = builtins.open, os.open, os.listdir

    def check(path):
        if isinstance(path, (str, os.PathLike)) and os.path.abspath(path) in denied:
            raise PermissionError(13, "Permission denied", os.fspath(path))

    def open_(file, *args, **kwargs):
        check(file)
        return real_open(file, *args, **kwargs)

    def os_open(path, *args, **kwargs):
        check(path)
        return real_os_open(path, *args, **kwargs)

    def listdir(path="."):
        check(path)
        return real_listdir(path)

    real_path_open, real_iterdir = pathlib.Path.open, pathlib.Path.iterdir

    def path_open(self, *args, **kwargs):
        check(self)
        return real_path_open(self, *args, **kwargs)

    def iterdir(self):
        check(self)
        return real_iterdir(self)

    # Before Python 3.11, pathlib bound io.open and os.listdir when it was imported: Path.open
    # and Path.iterdir are patched themselves
    for module, name, fake in ((builtins, "open", open_), (io, "open", open_),
                               (os, "open", os_open), (os, "listdir", listdir),
                               (pathlib.Path, "open", path_open),
                               (pathlib.Path, "iterdir", iterdir)):
        monkeypatch.setattr(module, name, fake)
    return lambda path: denied.add(os.path.abspath(path))


def _idx_files(folder, n=12):
    """A tiny MNIST of ``n`` training and ``n`` test images in ``folder`` (gzipped IDX)."""
    import gzip

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):
        images = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        for kind, arr, code in (("images-idx3", images, 3), ("labels-idx1", labels, 1)):
            head = bytes([0, 0, 8, code]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
            (folder / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(head + arr.tobytes()))


def _one_line_error(capsys, code, *parts):
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err


def test_unreadable_data_says_to_make_it_readable(tmp_path, capsys, unreadable):
    """A dataset file or folder this user may not read ended in "PATH: Permission denied" or
    "cannot read (Permission denied)." with nothing to do, or for a CIFAR-10 archive "it may be
    truncated - delete it and download again", which cannot mend a file closed to the user."""
    pics = _class_folders(tmp_path / "pics", ["a", "b"])[len("folder:"):]
    unreadable(pics)
    _one_line_error(capsys, main(["data", "info", f"folder:{pics}"]),
                    f"{pics}: cannot list the folder (Permission denied); make it readable.")
    _class_folders(tmp_path / "pics2", ["a", "b"])
    unreadable(tmp_path / "pics2" / "a" / "3.png")
    _one_line_error(capsys, main(["data", "show", f"folder:{tmp_path / 'pics2'}", "--out",
                                  str(tmp_path / "s.png")]),
                    "a/3.png: cannot read image (Permission denied); make it readable")

    _idx_files(tmp_path / "d" / "mnist")
    labels = tmp_path / "d" / "mnist" / "train-labels-idx1-ubyte.gz"
    assert main(["data", "info", "mnist", "--data-dir", str(tmp_path / "d"),
                 "--val-size", "2"]) == 0
    capsys.readouterr()
    unreadable(labels)
    _one_line_error(capsys, main(["data", "info", "mnist", "--data-dir", str(tmp_path / "d")]),
                    f"{labels}: cannot read (Permission denied); make it readable")
    # download checks the files already there (images first): one it cannot read stops it
    images = tmp_path / "d" / "mnist" / "train-images-idx3-ubyte.gz"
    unreadable(images)
    _one_line_error(capsys, main(["data", "download", "mnist", "--data-dir", str(tmp_path / "d"),
                                  "--mirror", "http://127.0.0.1:9/"]),
                    f"{images}: cannot read (Permission denied); make it readable")

    (tmp_path / "c").mkdir()
    archive = tmp_path / "c" / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + bytes(100))
    unreadable(archive)
    _one_line_error(capsys, main(["data", "info", "cifar10", "--data-dir", str(tmp_path / "c")]),
                    f"{archive}: cannot read (Permission denied); make it readable")


def test_a_truncated_image_is_said_to_be_cut_short(tmp_path, capsys):
    """A JPEG cut short was "cannot read image (Truncated File Read)", Pillow's words; a PNG's
    "image file is truncated". Both now say what happened, in the one line that names them."""
    _class_folders(tmp_path / "pics", ["a", "b"])
    rng = np.random.default_rng(1)
    for name, fmt in (("a/cut.jpg", "JPEG"), ("b/cut.png", "PNG")):
        path = tmp_path / "pics" / name
        Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(path, fmt)
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    _one_line_error(capsys, main(["data", "info", f"folder:{tmp_path / 'pics'}"]),
                    "2 of 26 image files cannot be read: ",
                    "a/cut.jpg (truncated: the file ends before its image does)",
                    "b/cut.png (truncated: the file ends before its image does)",
                    "replace or remove them.")


def test_several_unreadable_images_get_advice_that_fits_why(tmp_path, capsys, unreadable):
    """Several images of a folder that cannot be read ended "replace or remove them" whatever
    the cause: for files this user may not read, replacing them is no fix (one alone already
    said to make it readable). Now the advice follows the causes: denied, damaged, or both."""
    spec = _class_folders(tmp_path / "pics", ["a", "b"])
    for name in ("a/3.png", "b/5.png"):
        unreadable(tmp_path / "pics" / name)
    _one_line_error(capsys, main(["data", "info", spec]),
                    "2 of 24 image files cannot be read: ",
                    "a/3.png (Permission denied)", "b/5.png (Permission denied)",
                    "; make them readable (check their permissions and owner) or remove them.")
    (tmp_path / "pics" / "b" / "7.png").write_bytes(b"not an image")
    _one_line_error(capsys, main(["data", "info", spec]),
                    "3 of 24 image files cannot be read: ",
                    "b/7.png (not an image format Pillow recognises)",
                    "; make those denied permission readable (check their permissions and "
                    "owner), replace the others, or remove them.")
