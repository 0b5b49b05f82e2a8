"""``mlplab data info|show|download`` and the shared --dataset options."""

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from mlplab.cli import main
from mlplab.cli.data import add_dataset_arguments, load_dataset_from_args


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "root"))


def test_info_digits_table(capsys):
    assert main(["data", "info", "digits"]) == 0
    out = capsys.readouterr().out
    assert "8x8x1 uint8 (64 features flattened)" in out
    assert "total      1437      180      180" in out


def test_info_json_with_split_options(capsys):
    assert main(["data", "info", "digits", "--val-size", "0.2", "--test-size", "100",
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["splits"]["test"]["size"] == 100
    assert s["splits"]["val"]["size"] == round(0.2 * 1697)
    assert sum(s["splits"]["train"]["class_counts"]) == s["splits"]["train"]["size"]


def test_show_writes_png(tmp_path, capsys):
    out = tmp_path / "figs" / "grid.png"
    assert main(["data", "show", "digits", "--out", str(out), "--per-class", "3"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]


def test_missing_dataset_is_one_line_exit_1(tmp_path, capsys):
    assert main(["data", "info", "cifar10", "--data-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "mlplab data download cifar10 --data-dir" in err


def test_bad_folder_and_bad_options(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "info", f"folder:{tmp_path / 'empty'}"]) == 1
    err = capsys.readouterr().err
    assert "no images found" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        main(["data", "info", "digits", "--val-size", "-3"])
    assert e.value.code == 2
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


def test_help_explains(capsys):
    for cmd in (["data", "--help"], ["data", "info", "--help"], ["data", "show", "--help"],
                ["data", "download", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(cmd)
        assert e.value.code == 0
    assert "--mirror" in capsys.readouterr().out
