"""The accuracy presets (``twolayer-best``, ``deep-best`` and their Fashion-MNIST variants) and the
``--label-smoothing`` flag: each preset holds the recipe docs/accuracy.md gives, its help text says
so, and it trains end to end through ``mlplab train --preset``."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mlplab.cli import main
from mlplab.presets import PRESETS, describe_presets, get_preset
from mlplab.runs import build_config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "accuracy.md"

# The recipes as docs/accuracy.md states them (written out again here, not read from presets.py).
RECIPES = {
    "twolayer-best": dict(dataset="cifar10", hidden=[2048], dropout=0.0, batchnorm=False,
                          augment=["flip", "crop"], crop_padding=2, lr=0.02, reg=1e-4,
                          batch_size=200, epochs=60),
    "deep-best": dict(dataset="cifar10", hidden=[2048, 1024, 512], dropout=0.2, batchnorm=True,
                      augment=["flip", "crop"], crop_padding=2, lr=0.05, reg=1e-4,
                      batch_size=200, epochs=100),
    "twolayer-fast": dict(dataset="cifar10", hidden=[2048], dropout=0.0, batchnorm=False,
                          augment=[], lr=0.02, reg=5e-4, batch_size=200, epochs=4),
    "twolayer-best-fashion": dict(dataset="fashion-mnist", preprocessing="sqrt-standardize",
                                  hidden=[1024], dropout=0.2, batchnorm=False, augment=["flip"],
                                  lr=0.05, reg=5e-5, batch_size=128, epochs=100, patience=None,
                                  val_size=0),
    "deep-best-fashion": dict(dataset="fashion-mnist", preprocessing="sqrt-standardize",
                              hidden=[1024, 1024], dropout=0.2, batchnorm=False,
                              augment=["flip", "crop"], crop_padding=1, crop_fill="black",
                              lr=0.05, reg=5e-5, batch_size=128, epochs=250, patience=None,
                              val_size=0),
}
SHARED = dict(preprocessing="standardize", init="he", activation="relu", optimizer="momentum",
              momentum=0.9, schedule="cosine", warmup_epochs=1.0, min_lr=0.0,
              label_smoothing=0.1, sampling="shuffle", patience=20, restore_best=True, iters=None,
              crop_fill="zero", val_size=None)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_preset_is_the_documented_recipe(name):
    cfg = build_config(name)
    for field, value in {**SHARED, **RECIPES[name]}.items():
        assert getattr(cfg, field) == value, (name, field)
    assert cfg.preset == name
    # one hidden layer for the two-layer presets, several for the deep ones
    assert (len(cfg.hidden) == 1) == name.startswith("twolayer")
    # the --help text names the hidden sizes, lr, reg and length it really uses
    desc = describe_presets()[name]
    assert "-".join(map(str, cfg.hidden)) in desc
    for key in ("lr", "reg"):
        assert float(re.search(rf"\b{key} ([0-9.e-]+)", desc).group(1)) == getattr(cfg, key)
    for word in (f"{cfg.epochs} epochs", f"batch {cfg.batch_size}", "label smoothing 0.1"):
        assert word in desc, (name, word)
    # and the user guide has a row for it
    assert re.search(rf"`{re.escape(name)}`", DOCS.read_text()), name


@pytest.mark.parametrize("argv, dataset", [
    (["--preset", "twolayer-best-fashion"], "fashion-mnist"),
    (["--preset", "deep-best"], "cifar10"),
    (["--preset", "deep-best-fashion", "--dataset", "digits"], "digits"),
    (["--preset", "exercise-default"], "digits"),
    ([], "digits"),
])
def test_an_accuracy_preset_trains_on_its_own_dataset_unless_one_is_given(argv, dataset,
                                                                         monkeypatch, tmp_path):
    """`mlplab train --preset twolayer-best-fashion` trained on the digits, the default dataset,
    with the preset's split of no validation images: a preset made for one dataset now names it,
    and --dataset still chooses another. The exercise's presets keep the default."""
    import mlplab.runs

    seen = {}

    class Recorded(Exception):
        pass

    def record(cfg, **kwargs):
        seen["dataset"] = cfg.dataset
        raise Recorded  # stop before anything loads or trains

    monkeypatch.setattr(mlplab.runs, "train_run", record)
    with pytest.raises(Recorded):
        main(["--debug", "train", *argv, "--out", str(tmp_path / "r")])
    assert seen["dataset"] == dataset


def test_existing_presets_are_unchanged():
    assert get_preset("exercise-default")["hidden"] == [50]
    assert get_preset("exercise-tuned")["hidden"] == [500]
    assert "label_smoothing" not in PRESETS["exercise-tuned"]  # defaults to 0: the exercise's


@pytest.mark.parametrize("name", ["twolayer-best", "deep-best", "deep-best-fashion"])
def test_preset_trains_end_to_end(name, tmp_path, capsys):
    """The full-size network trains (2 short epochs on digits, crops of 1 pixel of 8: a preset's
    CIFAR-sized padding would shift these tiny images by a quarter) and the run folder records
    the preset's options; accuracy well above chance (10%) shows it learns."""
    out = tmp_path / "run"
    assert main(["train", "--preset", name, "--dataset", "digits", "--epochs", "2", "--json",
                 "--crop-padding", "1", "--eval-test", "--no-plots", "--quiet",
                 "--out", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["preset"] == name and metrics["epochs"] == 2
    assert metrics["test_accuracy"] > 0.6
    if RECIPES[name].get("val_size") == 0:  # trained on every training image: nothing to validate
        assert metrics["val_size"] == 0 and metrics["val_accuracy"] is None
    else:
        assert metrics["val_accuracy"] > 0.6
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hidden"] == RECIPES[name]["hidden"] and cfg["label_smoothing"] == 0.1
    assert cfg["augment"] == ["flip", "crop"] and cfg["schedule"] == "cosine"
    assert cfg["crop_fill"] == RECIPES[name].get("crop_fill", "zero")


def _weights(run: Path) -> np.ndarray:
    with np.load(run / "model.npz", allow_pickle=False) as z:
        return np.concatenate([z[k].ravel() for k in sorted(z.files) if k != "__meta__"
                               and z[k].dtype.kind == "f"])


@pytest.mark.filterwarnings("ignore:the warm-up .* lasts the whole run")  # a preset cut short
def test_label_smoothing_flag(tmp_path, capsys):
    base = ["train", "--dataset", "digits", "--hidden", "16", "--epochs", "2", "--quiet",
            "--no-plots", "--seed", "3"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--label-smoothing", "0.2", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["label_smoothing"] == 0.0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["label_smoothing"] == 0.2
    # same seed, same batches: only the smoothed targets differ, so the weights must too
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.shape == b.shape and not np.allclose(a, b)
    # the flag overrides a preset's value
    assert main(["train", "--preset", "twolayer-best", "--dataset", "digits", "--hidden", "16",
                 "--epochs", "1", "--label-smoothing", "0", "--quiet", "--no-plots",
                 "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "config.json").read_text())["label_smoothing"] == 0.0
    capsys.readouterr()
    # an out-of-range value is refused with a message naming the option, before any training
    assert main([*base, "--label-smoothing", "1.5", "--out", str(tmp_path / "d")]) != 0
    assert "error: --label-smoothing must be a number in [0, 1); got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "d" / "model.npz").exists()


def test_crop_padding_sets_how_far_a_crop_shifts(tmp_path, capsys):
    from mlplab.runs import make_augmenter

    # default: an eighth of the side (4 pixels of CIFAR's 32, 1 of the digits' 8)
    assert make_augmenter(build_config(augment="crop"), (32, 32, 3)).crop == 4
    assert make_augmenter(build_config(augment="flip,crop"), (8, 8, 1)).crop == 1
    aug = make_augmenter(build_config(augment="flip,crop", crop_padding=2), (28, 28, 1))
    assert aug.crop == 2 and aug.flip
    # padding without crop does nothing
    assert make_augmenter(build_config(augment="flip", crop_padding=2), (28, 28, 1)).crop == 0
    # a 2-pixel crop moves every image by at most 2 pixels: each output row is a shifted input
    rng = np.random.RandomState(0)
    img = rng.rand(64, 8, 8, 1).astype(np.float32)
    out = make_augmenter(build_config(augment="crop", crop_padding=2), (8, 8, 1))(
        img.reshape(64, -1), rng).reshape(64, 8, 8, 1)
    for x, o in zip(img, out, strict=True):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if np.array_equal(o[2:6, 2:6], x[2 + dy:6 + dy, 2 + dx:6 + dx])]
        assert shifts, "output is not a shift of at most 2 pixels"
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="crop_padding"):
            build_config(crop_padding=bad)
    # the flag reaches the run folder's config, and a bad value is a usage error
    out_dir = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--hidden", "16", "--epochs", "1", "--quiet",
                 "--no-plots", "--augment", "flip,crop", "--crop-padding", "2",
                 "--out", str(out_dir)]) == 0
    assert json.loads((out_dir / "config.json").read_text())["crop_padding"] == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "digits", "--crop-padding", "0"])
    assert exc.value.code == 2 and "--crop-padding" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:the warm-up .* lasts the whole run")  # a preset cut short
@pytest.mark.parametrize("flag,expected", [("0", None), ("5", 5)])
def test_patience_flag_overrides_a_presets_early_stopping(flag, expected, tmp_path, capsys):
    """--patience 0 turns a preset's early stopping off (the run goes to its full length);
    another value replaces the preset's 20."""
    out = tmp_path / "run"
    assert main(["train", "--preset", "twolayer-fast", "--dataset", "digits", "--hidden", "16",
                 "--epochs", "1", "--patience", flag, "--no-plots", "--quiet",
                 "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["patience"] == expected


@pytest.mark.filterwarnings("ignore:the warm-up .* lasts the whole run")  # a preset cut short
def test_a_presets_split_holds_unless_a_flag_replaces_it(tmp_path, capsys):
    """The Fashion-MNIST presets train on every training image (val_size 0); --val-size gives a
    validation split back, and the run folder records what the run really used."""
    base = ["train", "--preset", "twolayer-best-fashion", "--dataset", "digits", "--hidden", "16",
            "--epochs", "1", "--json", "--no-plots", "--quiet", "--eval-test"]
    n_images = 1797 - 180  # digits minus its stratified 10% test split
    runs = {}
    for extra, n_val in (([], 0), (["--val-size", "100"], 100)):
        out = tmp_path / f"val{n_val}"
        assert main([*base, *extra, "--out", str(out)]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert (metrics["val_size"], metrics["train_size"]) == (n_val, n_images - n_val)
        assert json.loads((out / "config.json").read_text())["val_size"] == n_val
        assert (metrics["val_accuracy"] is None) == (n_val == 0)
        runs[n_val] = metrics
    # early stopping without a validation split is refused before training, saying what to do
    out = tmp_path / "patience"
    assert main([*base, "--patience", "5", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "validation split" in err and "--val-size" in err and "--patience 0" in err
    assert not out.exists()
    # evaluating a run without a validation split points to the splits it does have
    assert main(["evaluate", str(tmp_path / "val0")]) != 0
    assert "--split test" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "val0"), "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(
        runs[0]["test_accuracy"])
    # and --help says which presets change the default split
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "Fashion-MNIST accuracy presets: 0" in " ".join(capsys.readouterr().out.split())
