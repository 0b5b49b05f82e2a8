"""``mlplab torch train`` and ``mlplab torch depth`` end to end on the bundled digits."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from mlplab.cli import main

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install 'mlplab[torch]')")
tm = pytest.importorskip("mlplab.torch_mlp")


@pytest.fixture(autouse=True)
def keep_threads():
    # the commands set torch's thread count (--threads); keep it from leaking into other tests
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch") / "run"
    code = main(["torch", "train", "--epochs", "3", "--hidden", "32", "--init", "default",
                 "--threads", "1", "--eval-test", "--out", str(out), "--no-progress"])
    return code, out


def test_train_writes_a_run_folder(train_run, capsys):
    code, out = train_run
    assert code == 0
    assert torch.get_num_threads() == 1  # --threads reached PyTorch
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.pt", "model.npz", "history.csv", "metrics.json", "loss.png",
            "accuracy.png", "confusion.png", "weights.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["framework"] == "pytorch" and config["hidden"] == [32]
    assert config["lr"] == 1e-3 and config["reg"] == 1e-3 and config["batch_size"] == 200
    assert metrics["status"] == "completed" and metrics["epochs"] == 3
    assert metrics["dataset"] == "digits" and metrics["model"] == "PyTorch MLP 64-32-10 relu"
    assert metrics["threads"] == 1 and metrics["device"] == "cpu"
    with open(out / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == metrics["iterations"] == 3 * int(np.ceil(metrics["train_size"] / 200))
    assert float(rows[-1]["val_acc"]) == pytest.approx(metrics["val_accuracy"])

    # model.pt gives back the trained network: its accuracy is the recorded one
    from mlplab.data import load_dataset

    ds = load_dataset("digits", seed=0)
    model, extra = tm.load_torch_model(out / "model.pt")
    assert extra["dataset"] == "digits" and extra["classes"] == list(ds.classes)
    pre = tm.input_pipeline()
    assert tm.accuracy(model, pre.fit_transform(ds.X_val), ds.y_val) == \
        pytest.approx(metrics["val_accuracy"])
    assert tm.accuracy(model, pre.transform(ds.X_test), ds.y_test) == \
        pytest.approx(metrics["test_accuracy"])
    # model.npz is the same network for the NumPy side, preprocessing included
    from mlplab.io import load_model

    loaded = load_model(out / "model.npz")
    np.testing.assert_array_equal(loaded.model.predict(loaded.preprocessing.transform(ds.X_val)),
                                  tm.predict(model, pre.transform(ds.X_val)))


def test_train_outputs_match_mlplab_train(train_run, tmp_path):
    """Same metrics keys, history columns and figures as a NumPy run folder."""
    from mlplab.runs import train_run as numpy_run

    _, out = train_run
    ref = tmp_path / "numpy"
    numpy_run(dataset="digits", hidden=[8], epochs=1, out=ref)
    ref_metrics = json.loads((ref / "metrics.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(ref_metrics) - {"test_accuracy"} <= set(metrics)
    header = (ref / "history.csv").read_text().splitlines()[0]
    assert (out / "history.csv").read_text().splitlines()[0] == header
    assert {p.name for p in ref.glob("*.png")} <= {p.name for p in out.glob("*.png")}


def test_evaluate_and_predict_read_a_torch_run_folder(train_run, tmp_path, capsys):
    """mlplab evaluate / predict work on a PyTorch run folder as on a NumPy one: same split,
    the accuracy PyTorch recorded; resume says plainly that it cannot continue such a run."""
    from PIL import Image

    from mlplab.data import load_dataset

    _, out = train_run
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    for split, key in (("val", "val_accuracy"), ("test", "test_accuracy")):
        assert main(["evaluate", str(out), "--split", split, "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["split"] == split and res["accuracy"] == pytest.approx(metrics[key])

    ds = load_dataset("digits", seed=0)
    path = tmp_path / "digit.png"
    Image.fromarray(ds.X_test[0].reshape(8, 8)).save(path)
    assert main(["predict", str(out), str(path), "--json", "--top", "1"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"][0]
    model, _ = tm.load_torch_model(out / "model.pt")
    pre = tm.input_pipeline()
    pre.fit_transform(ds.X_train)
    expected = tm.predict(model, pre.transform(ds.X_test[:1]))[0]
    assert top["class"] == ds.classes[expected]

    assert main(["train", "--resume", str(out)]) == 1
    assert "mlplab torch train" in capsys.readouterr().err


def test_train_refuses_an_existing_run(train_run, capsys):
    _, out = train_run
    assert main(["torch", "train", "--epochs", "1", "--out", str(out), "--threads", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds" in err[0]


def test_depth_table(tmp_path, capsys):
    out = tmp_path / "depth"
    code = main(["torch", "depth", "--layers", "2,3", "--hidden-size", "16", "--init", "both",
                 "--epochs", "2", "--threads", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "| exercise | 3 | 16, 16 |" in stdout and "| default | 2 | 16 |" in stdout
    summary = json.loads((out / "depth.json").read_text())
    rows = summary["results"]
    assert [(r["init"], r["depth"]) for r in rows] == [("exercise", 2), ("exercise", 3),
                                                       ("default", 2), ("default", 3)]
    for init in ("exercise", "default"):
        group = [r for r in rows if r["init"] == init]
        best = [r for r in group if r["best"]]
        assert len(best) == 1 and best[0]["val_acc"] == max(r["val_acc"] for r in group)
        assert best[0]["test_acc"] is not None
        assert all(r["test_acc"] is None for r in group if not r["best"])
    assert summary["training"]["epochs"] == 2 and summary["environment"]["threads"] == 1
    assert all(len(r["epochs"]["val_acc"]) == len(r["epochs"]["mean_loss"]) == 2 for r in rows)
    assert all(r["epochs"]["val_acc"][-1] == pytest.approx(r["val_acc"]) for r in rows)
    with open(out / "depth.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert (out / "depth.md").read_text().count("\n| ") == 5
    assert (out / "depth.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_gpu_is_a_one_line_error(tmp_path, capsys):
    code = main(["torch", "train", "--device", "cuda", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--device cpu" in err[0]
    assert not (tmp_path / "r").exists()  # nothing written before the error


@pytest.mark.parametrize("argv", [["torch", "depth", "--layers", "2,x"],
                                  ["torch", "depth", "--layers", "0"],
                                  ["torch", "train", "--threads", "0"],
                                  ["torch", "depth", "--init", "he"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_without_torch_the_cli_says_what_to_install(tmp_path):
    (tmp_path / "torch.py").write_text("raise ImportError('No module named torch')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from mlplab.cli import main; "
            "sys.exit(main(['torch', 'train', '--out', sys.argv[1] + '/run']))")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "pip install 'mlplab[torch]'" in res.stderr and "Traceback" not in res.stderr
