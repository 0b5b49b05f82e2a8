"""``mlplab.torch_mlp.train_run`` and ``depth_run``, the library behind ``mlplab torch train`` and
``mlplab torch depth``, called from Python on the bundled digits."""

import json
import re

import numpy as np
import pytest

from mlplab.cli import main

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install 'mlplab[torch]')")
tm = pytest.importorskip("mlplab.torch_mlp")

SETTINGS = {"hidden": [16], "epochs": 2, "threads": 1, "eval_test": True}
ARGV = ["--hidden", "16", "--epochs", "2", "--threads", "1", "--eval-test", "--no-progress"]


pytestmark = pytest.mark.usefixtures("keep_torch_threads")  # a run sets threads=1


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run twice: from the command line and from Python."""
    root = tmp_path_factory.mktemp("torch-runs")
    before = torch.get_num_threads()
    try:
        assert main(["torch", "train", *ARGV, "--out", str(root / "cli")]) == 0
        result = tm.train_run("digits", out=root / "lib", **SETTINGS)
    finally:
        torch.set_num_threads(before)
    return root / "cli", result


def _without_seconds(metrics):
    return {k: v for k, v in metrics.items() if k != "seconds"}


def _model_classes(run):
    from mlplab.io import load_model

    return load_model(run / "model.npz").extra["classes"]


def test_train_run_writes_the_folder_the_command_writes(runs):
    cli, result = runs
    lib = result.out
    assert result.out is not None and lib.name == "lib" and not result.interrupted
    assert sorted(p.name for p in lib.iterdir()) == sorted(p.name for p in cli.iterdir())
    assert {"config.json", "model.pt", "model.npz", "history.csv", "metrics.json", "loss.png",
            "accuracy.png", "confusion.png", "weights.png"} <= {p.name for p in lib.iterdir()}
    read = lambda path: json.loads(path.read_text())  # noqa: E731
    assert read(lib / "config.json") == read(cli / "config.json") == result.config
    metrics = read(lib / "metrics.json")
    assert _without_seconds(metrics) == _without_seconds(read(cli / "metrics.json"))
    assert metrics == result.metrics and result.metrics["seconds"] == round(result.seconds, 3)
    assert result.metrics["status"] == "completed" and result.metrics["epochs"] == 2
    assert (lib / "history.csv").read_text() == (cli / "history.csv").read_text()
    assert result.val_accuracy == metrics["val_accuracy"]
    assert len(result.history.val_acc) == 2 and result.classes == _model_classes(lib)


def test_what_train_run_wrote_is_read_by_load_model_and_evaluate(runs, capsys):
    from mlplab.data import load_dataset
    from mlplab.io import load_model

    _, result = runs
    ds = load_dataset("digits", seed=0)
    # the returned model and preprocessing, the NumPy copy and model.pt: one network
    expected = tm.predict(result.model, result.preprocessing.transform(ds.X_test))
    loaded = load_model(result.out / "model.npz")
    np.testing.assert_array_equal(
        loaded.model.predict(loaded.preprocessing.transform(ds.X_test)), expected)
    model, extra = tm.load_torch_model(result.out / "model.pt")
    assert extra["framework"] == "pytorch" and extra["classes"] == list(ds.classes)
    np.testing.assert_array_equal(tm.predict(model, result.preprocessing.transform(ds.X_test)),
                                  expected)
    assert tm.describe(model) == result.metrics["model"] == "PyTorch MLP 64-16-10 relu"
    capsys.readouterr()
    for split, key in (("val", "val_accuracy"), ("test", "test_accuracy")):
        assert main(["evaluate", str(result.out), "--split", split, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["accuracy"] == \
            pytest.approx(result.metrics[key])


def test_train_run_on_a_loaded_dataset_in_memory(runs, tmp_path, capsys):
    """A loaded Dataset trains as its name does; out=None writes nothing; with an out, the
    config records the data's name and split sizes, which evaluate loads again."""
    from mlplab.data import load_dataset

    _, named = runs
    ds = load_dataset("digits", seed=0)
    result = tm.train_run(ds, **SETTINGS)
    assert result.out is None and list(tmp_path.iterdir()) == []
    assert _without_seconds(result.metrics) == _without_seconds(named.metrics)
    assert next(result.model.parameters()).device.type == "cpu"

    out = tmp_path / "run"
    result = tm.train_run(ds, out=out, hidden=[8], epochs=1, threads=1, plots=False)
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "digits" and config["data_dir"] is None
    assert (config["val_size"], config["test_size"]) == (len(ds.y_val), len(ds.y_test))
    assert not list(out.glob("*.png"))
    capsys.readouterr()
    assert main(["evaluate", str(out), "--split", "val", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == \
        pytest.approx(result.metrics["val_accuracy"])


def test_hidden_is_taken_as_mlplab_train_run_takes_it(runs):
    """hidden=16 (one layer) was a bare TypeError ('int' object is not iterable), where
    mlplab.runs.train_run takes it; "16" and [16.0] too, and a wrong one is named first,
    before the data loads."""
    _, named = runs
    settings = {k: v for k, v in SETTINGS.items() if k != "hidden"}
    for hidden in (16, "16", [16.0]):
        result = tm.train_run("digits", hidden=hidden, **settings)
        assert _without_seconds(result.metrics) == _without_seconds(named.metrics)
    with pytest.raises(ValueError, match=r"^hidden must be a list of layer sizes \(integers\), "
                                         r"e.g. \[500, 250\]; got \[2.5\].$"):
        tm.train_run("folder:/nowhere/at/all", hidden=[2.5], **settings)


def test_an_empty_out_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch):
    """``out=""`` (an unset environment variable) wrote the run, or the depth study, into the
    current folder (``Path("")`` is ``.``); it is refused as the command line refuses ``--out
    ""``, naming ``out``, before anything is loaded or written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^out is an empty text"):
        tm.train_run("digits", out="", hidden=[8], epochs=1, threads=1, plots=False)
    with pytest.raises(ValueError, match=r"^out is an empty text"):
        tm.depth_run("digits", out="", layers=[2], hidden_size=8, epochs=1, threads=1)
    assert list(tmp_path.iterdir()) == []


def test_train_run_on_feature_vectors_of_ones_own(tmp_path, rng):
    """A Dataset of (N, D) feature vectors, not images, writes its run folder without the
    weights figure, which has no images to draw (it crashed there, after training)."""
    from mlplab.data import Dataset

    X = rng.randn(300, 6)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    ds = Dataset("mine", ["a", "b", "c"], X[:200], y[:200], X[200:250], y[200:250],
                 X[250:], y[250:])
    result = tm.train_run(ds, out=tmp_path / "run", hidden=[8], epochs=1, threads=1)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"model.pt", "model.npz", "metrics.json", "loss.png", "confusion.png"} <= names
    assert "weights.png" not in names and result.metrics["status"] == "completed"


def test_a_loaded_dataset_records_the_seed_and_image_size_it_was_loaded_with(tmp_path, capsys):
    """config.json names the split seed and image size of a loaded dataset, so that evaluate
    loads the splits the run trained on (it recorded the defaults, and evaluate refused them)."""
    from mlplab.data import load_dataset

    ds = load_dataset("digits", seed=3, image_size=6)
    result = tm.train_run(ds, out=tmp_path / "run", hidden=[8], epochs=1, threads=1,
                          plots=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["data_seed"], config["image_size"]) == (3, 6)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--split", "val", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == \
        pytest.approx(result.metrics["val_accuracy"])


def test_a_run_by_name_on_an_unseeded_split_records_the_seed_drawn(tmp_path, capsys):
    """tm.train_run("digits", data_seed=None) splits at random (load_dataset draws a seed); the
    run recorded data_seed None, so evaluate drew another split and refused the run's own data
    as changed. It records the seed drawn, and evaluate scores the validation split trained on."""
    result = tm.train_run("digits", out=tmp_path / "run", data_seed=None, hidden=[8], epochs=1,
                          threads=1, plots=False)
    from mlplab.data import load_dataset
    from mlplab.runs.splits import split_fingerprint

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert isinstance(config["data_seed"], int)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--split", "val", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    # the split trained on is the one the recorded seed draws
    drawn = load_dataset("digits", seed=config["data_seed"])
    assert result.metrics["split_sha1"]["val"] == split_fingerprint(*drawn.split("val"))
    assert scored["size"] == len(drawn.y_val)
    # scored by the NumPy network of model.npz, against PyTorch's own figure: an 8-unit net
    # after one epoch scores its classes nearly alike, and the two libraries' rounding can
    # break a near-tie otherwise for an image or two (seen once in CI: 25 of 180 against 24)
    assert scored["accuracy"] == pytest.approx(result.metrics["val_accuracy"],
                                               abs=2.5 / scored["size"])


@pytest.mark.parametrize("options,error,message", [
    ({"dropout": 1.0}, ValueError, "dropout must be in [0, 1)"),
    ({"init_std": 0.0}, ValueError, "init_std must be a finite number > 0"),
    ({"init": "he"}, ValueError, "unknown init 'he'"),
    ({"device": "foo"}, ValueError, "device must be cpu, cuda, cuda:N or auto"),
    ({"lr": -1.0}, ValueError, "lr must be a finite number > 0"),
    ({"test_size": 0, "eval_test": True}, ValueError, "no test split to evaluate"),
    ({"batchnorm": True, "batch_size": 1}, ValueError, "batch_size must be at least 2"),
    ({"dataset": "nosuch"}, ValueError, "unknown dataset 'nosuch'"),
], ids=lambda v: ",".join(v) if isinstance(v, dict) else None)
def test_train_run_checks_everything_before_writing(options, error, message, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(error, match=re.escape(message)):
        tm.train_run(out=out, epochs=1, threads=1, **options)
    assert not out.exists()


def test_a_replaced_relu_is_refused_before_a_run_trains(tmp_path, registries, monkeypatch):
    # the run's model.npz (to_numpy) would be refused after the whole run trained
    from mlplab import models
    from mlplab.layers import ReLU

    class MyReLU(ReLU):
        pass

    models.register_activation("relu", MyReLU, replace=True)
    from mlplab.torch_mlp import runs as torch_runs

    fit, real_fit = [], torch_runs.fit
    monkeypatch.setattr(torch_runs, "fit", lambda *a, **k: fit.append(1) or real_fit(*a, **k))
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^'relu' is registered as .*MyReLU.* in this process, "
                                         r"so an MLP built now would not be the module's ReLU "
                                         r"network; convert before replacing it, or register it "
                                         r"back\.$"):
        tm.train_run(out=out, hidden=[8], epochs=1, threads=1)
    assert not out.exists() and not fit
    models.register_activation("relu", models.BUILT_IN_ACTIVATIONS["relu"], replace=True)
    tm.train_run(out=out, hidden=[8], epochs=1, threads=1)
    fit.clear()
    (out / "metrics.json").unlink()  # a run stopped before it saved its results
    models.register_activation("relu", MyReLU, replace=True)
    with pytest.raises(ValueError, match=r"^'relu' is registered as "):
        tm.resume_run(out)
    assert not (out / "metrics.json").exists() and not fit


def test_loading_options_apply_to_a_name_only(tmp_path):
    from mlplab.data import load_dataset

    ds = load_dataset("digits", seed=0)
    with pytest.raises(ValueError, match=r"^val_size applies only to a dataset given by name.*"
                                         r"load_dataset\(name, val_size=\.\.\.\)\.$"):
        tm.train_run(ds, out=tmp_path / "run", val_size=0.2)
    # the seed that splits a dataset loaded by name: this one was split already (it was ignored)
    with pytest.raises(ValueError, match=r"^data_seed applies only .*load_dataset\(name, seed="):
        tm.train_run(ds, out=tmp_path / "run", data_seed=5)
    with pytest.raises(ValueError, match=r"^data_seed applies only to a dataset given by name"):
        tm.depth_run(ds, out=tmp_path / "run", data_seed=5)
    with pytest.raises(TypeError, match="dataset must be a name or an mlplab.data.Dataset"):
        tm.train_run(ds.X_train, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_depth_run(tmp_path):
    out = tmp_path / "depth"
    res = tm.depth_run("digits", out=out, layers=[2, 3], hidden_size=8, init="both", epochs=1,
                       threads=1)
    assert res.out == out and [(r.init, r.depth) for r in res.results] == [
        ("exercise", 2), ("exercise", 3), ("default", 2), ("default", 3)]
    assert res.table == tm.depth_table_markdown(res.results) == (out / "depth.md").read_text()
    assert json.loads((out / "depth.json").read_text()) == res.summary
    assert res.summary["inits"] == ["exercise", "default"] and res.summary["layers"] == [2, 3]
    # and what --resume goes on from: the settings, and every network, with its row
    assert {p.name for p in out.iterdir()} == {"depth.md", "depth.csv", "depth.png",
                                               "depth.json", "depth-config.json", "networks"}
    assert json.loads((out / "depth-config.json").read_text())["layers"] == [2, 3]
    from mlplab.data import load_dataset

    ds = load_dataset("digits", seed=0)
    X_val = tm.input_pipeline().fit(ds.X_train).transform(ds.X_val)
    for r in res.results:
        model, extra = tm.load_torch_model(out / "networks" / f"{r.init}-{r.depth}.pt")
        assert extra["result"]["val_acc"] == r.val_acc == tm.accuracy(model, X_val, ds.y_val)
        assert extra["history"]["loss"] == r.history.loss
        # the row as the network finished training (docs/pytorch.md): the test accuracy and
        # the best mark come after every network is trained, in depth.json and the table only
        assert extra["result"]["test_acc"] is None and extra["result"]["best"] is False
    assert [r.test_acc is not None for r in res.results] == [r.best for r in res.results]
    assert sum(r.best for r in res.results) == 2  # one per initialisation
    # a notebook cell ending in depth_run(...) shows a line, not every row, the table and the
    # summary with each network's curves (the dataclass repr: 2 KB for two one-epoch networks)
    best = [f"{r.init} init, {r.depth} layers: val_accuracy={r.val_acc:.4f}"
            for r in res.results if r.best]
    assert repr(res) == (f"DepthRunResult(dataset='digits', networks=4, best={best!r}, "
                         f"out={str(out)!r}, seconds={res.seconds:.1f})")
    with pytest.raises(ValueError, match="already holds results"):
        tm.depth_run("digits", out=out, layers=[2], epochs=1, threads=1)
    # in memory: no folder; without a test split the table says so
    res = tm.depth_run("digits", layers=[2], hidden_size=8, epochs=1, threads=1, test_size=0)
    assert res.out is None and "No test split" in res.table
    assert res.results[0].test_acc is None


@pytest.mark.parametrize("options,message", [
    ({"layers": [2, 0]}, "depth counts Linear layers and must be an integer >= 1"),
    ({"layers": []}, "layers must list at least one depth, e.g. [2, 3, 4, 5]."),
    # the same network trained twice, in two rows of the table
    ({"layers": [2, 3, 2]}, "depths must differ; given more than once: 2."),
    ({"hidden_size": 0}, "hidden size must be a positive integer"),
], ids=["depth-0", "no-depths", "depth-twice", "hidden-0"])
def test_depth_run_checks_the_depths_before_writing(options, message, tmp_path, monkeypatch):
    # they were checked by depth_study, after the data had loaded and out had been created
    import mlplab.data

    def no_loading(*args, **kwargs):
        raise AssertionError("the data was loaded before the options were checked")

    monkeypatch.setattr(mlplab.data, "load_dataset", no_loading)
    out = tmp_path / "depth"
    with pytest.raises(ValueError, match=re.escape(message)):
        tm.depth_run("digits", out=out, epochs=1, threads=1, **options)
    assert not out.exists()


@pytest.mark.parametrize("depths", ["2,3", 3])
def test_depths_given_as_a_string_or_a_number_are_named(depths, tmp_path):
    """depth_run(layers="2,3") went through the string a character at a time and said "depth
    ... got '2'" (then a comma); a single 3 was "'int' object is not iterable"."""
    message = (f"layers must be a list of depths, e.g. [2, 3, 4, 5]; got {depths!r} (the "
               "command line's --layers takes 2,3,4,5).")
    with pytest.raises(TypeError, match=re.escape(message)):
        tm.depth_run("digits", out=tmp_path / "d", layers=depths, epochs=1, threads=1)
    assert not (tmp_path / "d").exists()
    X, y = np.zeros((4, 3)), np.array([0, 1, 0, 1])
    with pytest.raises(TypeError, match=re.escape(message.replace("layers", "depths", 1))):
        tm.depth_study(X, y, X, y, depths=depths)


def test_a_loaded_folder_dataset_is_recorded_by_its_absolute_path(tmp_path, monkeypatch, capsys):
    # loaded as folder:data from the working folder; evaluate from another one found no data
    from PIL import Image

    from mlplab.data import load_dataset

    rng = np.random.RandomState(0)
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.randint(0, 256, (6, 6, 3), dtype=np.uint8)).save(
                tmp_path / "data" / c / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("folder:data", val_size=4, test_size=4, cache=False)
    tm.train_run(ds, out="run", hidden=[4], epochs=1, threads=1, plots=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"] == f"folder:{(tmp_path / 'data').resolve()}"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--split", "val", "--json"]) == 0


def test_train_run_metrics_are_the_networks_own_figures():
    """metrics.json's accuracies, each the model's forward pass on its own split, and the final
    loss the last iteration's. (In the shared 16-unit, 2-epoch run the validation and test
    accuracies happen to be equal, 48/180 each, so a test accuracy measured on the validation
    split passed every check there.)"""
    from mlplab.data import load_dataset

    ds = load_dataset("digits", seed=0)
    result = tm.train_run("digits", hidden=[8], epochs=1, threads=1, eval_test=True, plots=False)
    model, pre = result.model, result.preprocessing

    def acc(X, y):
        with torch.no_grad():
            scores = model(torch.as_tensor(pre.transform(X), dtype=torch.float32))
        return float((scores.argmax(dim=1).numpy() == y).mean())

    figures = {k: acc(getattr(ds, f"X_{k}"), getattr(ds, f"y_{k}")) for k in ("train", "val",
                                                                               "test")}
    assert figures["val"] != figures["test"]  # else a swapped split would go unnoticed here
    for split, value in figures.items():
        assert result.metrics[f"{split}_accuracy"] == pytest.approx(value, abs=1e-12), split
    assert result.metrics["iterations"] == len(result.history.loss) > 1
    assert result.metrics["final_loss"] == result.history.loss[-1] != result.history.loss[0]
    best = int(np.argmax(result.history.val_acc))
    assert result.metrics["best_epoch"] == best + 1  # epochs count from 1
    assert result.metrics["best_val_accuracy"] == result.history.val_acc[best]


def test_an_interrupted_run_is_not_tested(monkeypatch):
    """Ctrl-C during training keeps the network as it was, but with eval_test a half-trained
    network must not spend the one look at the test split."""
    import mlplab.torch_mlp.runs as runs_module

    real = runs_module.fit

    def interrupted(*args, **kwargs):
        history = real(*args, **kwargs)
        history.interrupted = True  # what fit's KeyboardInterrupt handler leaves
        return history

    monkeypatch.setattr(runs_module, "fit", interrupted)
    result = tm.train_run("digits", hidden=[8], epochs=1, threads=1, eval_test=True, plots=False)
    assert result.interrupted and result.metrics["status"] == "interrupted"
    assert "test_accuracy" not in result.metrics and result.metrics["val_accuracy"] is not None


@pytest.mark.parametrize("study", [False, True], ids=["train", "depth"])
def test_a_folder_removed_while_it_trains_is_not_made_again(study, tmp_path, monkeypatch):
    """A run's or depth study's folder removed mid-run was made again by the next atomic write,
    and filled with results but no config.json (depth-config.json): status 0, and a folder
    that evaluate and --resume refuse."""
    import shutil

    import mlplab.torch_mlp.runs as runs_module

    out = tmp_path / "out"
    real = runs_module.save_torch_checkpoint

    def save_then_remove(path, *args, **kwargs):
        real(path, *args, **kwargs)
        shutil.rmtree(out)  # after the first epoch's checkpoint

    monkeypatch.setattr(runs_module, "save_torch_checkpoint", save_then_remove)
    marker = "depth-config.json" if study else "config.json"
    with pytest.raises(FileNotFoundError, match=rf"out was removed or moved while the "
                                                rf"{'depth study' if study else 'run'} trained "
                                                rf"\(its {marker} is gone\)"):
        if study:
            tm.depth_run("digits", out=out, layers=[2], hidden_size=8, epochs=2, threads=1)
        else:
            tm.train_run("digits", out=out, hidden=[8], epochs=2, threads=1, plots=False)
    assert not out.exists()


def test_a_run_that_diverges_after_its_folder_went_does_not_make_it_again(
        tmp_path, diverge_after_removing, capsys):
    """The folder removed, then the loss diverged before the next checkpoint's check: the
    record of the divergence (config.json) made the folder again, holding that file alone,
    which a new run then took as a diverged run's folder."""
    import mlplab.torch_mlp.runs as runs_module

    out = tmp_path / "out"
    diverge_after_removing(runs_module, out)
    assert main(["torch", "train", *ARGV, "--out", str(out)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mlplab torch train: error: {out} was removed or moved while the run trained (its "
        "config.json is gone), so the run stopped without writing more there; its loss "
        "diverged as well, which resuming would repeat: start a new run with other settings "
        "(a lower --lr, say)")
    assert not out.exists()


@pytest.mark.parametrize("study", [False, True], ids=["train", "depth"])
def test_a_folder_removed_while_its_figures_are_drawn_is_not_made_again(study, tmp_path,
                                                                        monkeypatch):
    """Checked once after training, the folder removed while the figures were drawn (seconds)
    was made again by their saves: status 0, a folder of figures and results without
    config.json (depth-config.json)."""
    import shutil

    import mlplab.plots
    import mlplab.torch_mlp.runs as runs_module

    out = tmp_path / "out"
    module, name = (runs_module, "plot_depth") if study else (mlplab.plots, "plot_accuracy")
    real = getattr(module, name)

    def drawn_then_removed(*args, **kwargs):
        fig = real(*args, **kwargs)
        shutil.rmtree(out)
        return fig

    monkeypatch.setattr(module, name, drawn_then_removed)
    with pytest.raises(FileNotFoundError, match="out was removed or moved while the "):
        if study:
            tm.depth_run("digits", out=out, layers=[2], hidden_size=8, epochs=1, threads=1)
        else:
            tm.train_run("digits", out=out, hidden=[8], epochs=1, threads=1)
    assert not out.exists()


def test_check_resumable_is_the_packages_and_refuses_what_resume_run_would(runs, tmp_path):
    """check_resumable, which torch train --resume calls before its own refusals, is the
    package's API as its siblings are (mlplab.torch_mlp.X): it refuses a missing folder and a
    completed run with resume_run's words, and passes a stopped run."""
    import shutil

    assert "check_resumable" in tm.__all__
    with pytest.raises(FileNotFoundError, match=r"^no run to resume in .*none: no such folder"):
        tm.check_resumable(tmp_path / "none")
    with pytest.raises(ValueError, match="has already completed; nothing to resume"):
        tm.check_resumable(runs[0])
    run = tmp_path / "stopped"
    shutil.copytree(runs[0], run)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted"}))
    tm.check_resumable(run)


def test_a_run_stopped_before_its_first_checkpoint_is_resumed_by_torch_train(runs, tmp_path):
    """evaluate of a PyTorch run stopped before its first epoch ended (no checkpoint.pt yet)
    said `mlplab train --resume RUN finishes it`, which refuses a PyTorch run."""
    import shutil

    run = tmp_path / "stopped"
    shutil.copytree(runs[0], run)
    (run / "checkpoint.pt").unlink()
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted",
                                                  "epochs": 0}))
    with pytest.warns(UserWarning) as caught:
        assert main(["evaluate", str(run)]) == 0
    said = " ".join(str(w.message) for w in caught)
    assert f"mlplab torch train --resume {run} finishes it." in said, said
    assert "mlplab train --resume" not in said


def test_a_stopped_run_without_figures_is_advised_with_plots_false_from_python(runs, tmp_path):
    """A new run whose out holds a stopped run started without figures is refused, from
    Python, with the resume call that repeats plots=False, named as the run advice names it
    elsewhere (mlplab.torch_mlp.resume_run): torch train's own refusal built the call apart."""
    import shutil

    run = tmp_path / "stopped"
    shutil.copytree(runs[0], run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "no_plots": True}))
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted"}))
    with pytest.raises(ValueError, match="stopped before its end") as caught:
        tm.train_run("digits", out=run, **SETTINGS)
    assert f"continue it with mlplab.torch_mlp.resume_run({str(run)!r}, plots=False), or " \
           "choose another out." in str(caught.value), caught.value


def test_a_run_stopped_by_an_mlplab_without_checkpoints_is_said_to_restart(runs, tmp_path,
                                                                          capsys):
    """A PyTorch run stopped by Ctrl-C under an mlplab before 1 Dec 2026 has its model and
    metrics.json (interrupted after N epochs) but no checkpoint.pt: evaluate said `--resume
    finishes it` and a new run with its --out said `continue it`, while --resume trained it
    again from epoch 0. All three now say it starts again from the start, and it does."""
    import shutil

    run = tmp_path / "old"
    shutil.copytree(runs[0], run)
    (run / "checkpoint.pt").unlink()  # as that mlplab left it
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted",
                                                  "epochs": 1}))
    with pytest.warns(UserWarning) as caught:
        assert main(["evaluate", str(run)]) == 0
    said = " ".join(str(w.message) for w in caught)
    assert "its model is the one saved when it stopped after 1 epoch; it has no checkpoint.pt " \
           "(an mlplab before 1 Dec 2026 kept none), so resuming trains it again from the " \
           f"start and replaces this model: mlplab torch train --resume {run}." in said, said
    assert "finishes it" not in said
    capsys.readouterr()
    assert main(["torch", "train", *ARGV, "--out", str(run)]) == 1
    assert f"{run} holds a run that stopped before its end with no checkpoint; train it again " \
           f"from the start with mlplab torch train --resume {run}, or choose another --out." \
           in capsys.readouterr().err
    result = tm.resume_run(run, announce=True)
    assert "from the start (it has no checkpoint.pt, as an mlplab before 1 Dec 2026 kept none: " \
           "its 1 epoch is trained again, and its saved model replaced as this run ends or " \
           "stops)" in capsys.readouterr().err
    # trained again from epoch 0: the whole run, as the uninterrupted one of the same seed
    assert result.metrics["status"] == "completed"
    assert result.history.loss == runs[1].history.loss


def test_a_run_without_validation_records_no_best_epoch(rng):
    """Without a validation split there is no best epoch: metrics.json says so as mlplab
    train's does (None), not epoch 0."""
    from mlplab.data import Dataset
    from mlplab.runs import train_run as numpy_train_run

    X = rng.randn(120, 6)
    y = (X[:, 0] > 0).astype(np.int64)
    ds = Dataset("mine", ["a", "b"], X[:100], y[:100], X[:0], y[:0], X[100:], y[100:])
    torch_metrics = tm.train_run(ds, hidden=[4], epochs=2, threads=1, plots=False).metrics
    numpy_metrics = numpy_train_run(data=ds, hidden=[4], epochs=2, plots=False).metrics
    for key in ("best_epoch", "best_val_accuracy", "val_accuracy"):
        assert torch_metrics[key] is numpy_metrics[key] is None, key


@pytest.mark.parametrize("run", ["train_run", "depth_run"])
def test_a_dataset_without_training_images_is_refused_before_writing(run, tmp_path, rng):
    from mlplab.data import Dataset

    X = rng.randn(40, 6)
    y = np.arange(40) % 2
    ds = Dataset("mine", ["a", "b"], X[:0], y[:0], X[:20], y[:20], X[20:], y[20:])
    with pytest.raises(ValueError, match="the dataset mine has no training images"):
        getattr(tm, run)(ds, out=tmp_path / "run", epochs=1, threads=1)
    assert not (tmp_path / "run").exists()


def test_depth_run_progress_lines_count_the_layers(capsys):
    tm.depth_run("digits", layers=[1, 2], hidden_size=8, epochs=1, threads=1, announce=True)
    lines = capsys.readouterr().err.splitlines()
    assert "[1/2] exercise init, 1 layer: train" in lines[1]
    assert "[2/2] exercise init, 2 layers: train" in lines[2]


def test_depth_run_summary_records_the_split_sizes():
    from mlplab.data import load_dataset

    ds = load_dataset("digits", seed=0, val_size=150, test_size=100)
    res = tm.depth_run("digits", layers=[2], hidden_size=8, epochs=1, threads=1, val_size=150,
                       test_size=100)
    assert (res.summary["train_size"], res.summary["val_size"], res.summary["test_size"]) == (
        len(ds.y_train), 150, 100)
    assert len(ds.y_train) == 1797 - 250


def test_depth_run_refuses_a_dataset_without_validation_images(tmp_path):
    # the table picks each init's best depth by validation accuracy: none to pick by
    out = tmp_path / "depth"
    with pytest.raises(ValueError, match="the dataset has no validation split"):
        tm.depth_run("digits", out=out, layers=[2], hidden_size=8, epochs=1, threads=1,
                     val_size=0)
    assert not out.exists()


def test_runs_give_back_the_callers_thread_count():
    """train_run, depth_run and fit set PyTorch's threads (``threads``; None: every core) and
    left them so: a notebook that had set its own count found it changed by a run."""
    seen = []
    record = lambda epoch, logs: seen.append(torch.get_num_threads())  # noqa: E731
    from mlplab.data import load_dataset

    digits = load_dataset("digits")
    X, Xv = tm.normalize_images(digits.X_train), tm.normalize_images(digits.X_val)
    for during, after in ((1, 2), (2, 1)):
        torch.set_num_threads(after)
        tm.train_run("digits", hidden=[8], epochs=1, threads=during, plots=False)
        assert torch.get_num_threads() == after
        tm.depth_run("digits", layers=[2], hidden_size=8, epochs=1, threads=during)
        assert torch.get_num_threads() == after
        tm.fit(tm.build_model(64, [8], 10), X, digits.y_train, Xv, digits.y_val, epochs=1,
               threads=during, on_epoch_end=record)
        assert torch.get_num_threads() == after and seen[-1] == during
    torch.set_num_threads(1)
    tm.train_run("digits", hidden=[8], epochs=1, plots=False)  # None: every core, meanwhile
    assert torch.get_num_threads() == 1


def test_an_out_that_cannot_be_a_run_folder_is_named_as_the_argument(tmp_path):
    """From Python the refusal names ``out`` (the command line's names ``--out``)."""
    file = tmp_path / "f"
    file.write_text("")
    with pytest.raises(ValueError, match=r"^out .*f is a file, not a folder; choose "
                                         r"another out\.$"):
        tm.train_run("digits", out=file)
    with pytest.raises(ValueError, match=r"^out .*f/x: .*f is a file, not a folder; "
                                         r"choose another out\.$"):
        tm.depth_run("digits", out=file / "x")


def test_a_torch_run_result_shows_in_a_line(runs):
    _, result = runs
    assert repr(result) == (
        f"TorchRunResult(model='PyTorch MLP 64-16-10 relu', dataset='digits', "
        f"status='completed', val_accuracy={result.val_accuracy:.4f}, "
        f"test_accuracy={result.metrics['test_accuracy']:.4f}, epochs=2, "
        f"out={str(result.out)!r})")


def test_two_runs_started_at_once_with_the_same_out(tmp_path, monkeypatch):
    """Two runs given the same out both found it free (the folder is checked before the data
    loads) and trained into it, one's config.json beside the other's model. The second now
    stops; a folder that held only a stopped run's config.json before the run began is still
    reused, as it was."""
    import mlplab.torch_mlp.runs as runs

    out = tmp_path / "same"
    real = runs._load
    other = {"framework": "pytorch", "hidden": [8], "written": "by the other process"}

    def meanwhile(*args, **kwargs):  # the other process writes its config.json now
        runs.io.write_json(out / "config.json", other)
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "_load", meanwhile)
    with pytest.raises(ValueError, match=re.escape(
            f"{out} already holds a run, which another process has just started; choose "
            "another out.")):
        tm.train_run("digits", out=out, hidden=[16], epochs=1, threads=1)
    assert json.loads((out / "config.json").read_text()) == other
    assert [p.name for p in out.iterdir()] == ["config.json"]

    # the same folder now holds a lone config.json of a run that stopped: reused
    monkeypatch.setattr(runs, "_load", real)
    result = tm.train_run("digits", out=out, hidden=[16], epochs=1, threads=1)
    assert json.loads((out / "config.json").read_text()) == result.config
    assert (out / "metrics.json").exists()



def test_a_stopped_runs_lone_config_saved_with_a_bom_is_still_reused(tmp_path):
    """The lone config.json of a stopped PyTorch run, saved again by a Windows editor with a
    byte order mark, was read as not JSON: the folder was refused as "already holds results",
    where every other reader of config.json passes the mark over (io.read_json)."""
    out = tmp_path / "run"
    out.mkdir()
    config = {"framework": "pytorch", "hidden": [8]}
    (out / "config.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(config).encode())
    result = tm.train_run("digits", out=out, hidden=[16], epochs=1, threads=1)
    assert (out / "metrics.json").exists() and result.config["hidden"] == [16]

@pytest.mark.parametrize("marker,what", [("summary.json", "a tuning folder"),
                                         ("report.json", "a report folder"),
                                         ("depth.json", "a depth study")])
def test_a_run_is_not_written_into_another_commands_folder(marker, what, tmp_path):
    """mlplab torch train --out of a tuning, report or depth-study folder mixed the run's files
    into it (mlplab evaluate then took the folder for the run), as mlplab train's did."""
    out = tmp_path / "other"
    out.mkdir()
    (out / marker).write_text("{}")
    with pytest.raises(ValueError, match=f"{out} is {what} written by mlplab"):
        tm.train_run("digits", out=out, epochs=1, threads=1)
    assert [p.name for p in out.iterdir()] == [marker]
    if marker != "depth.json":  # a depth study's own folder is refused by its own check
        with pytest.raises(ValueError, match=f"{out} is {what} written by mlplab"):
            tm.depth_run("digits", out=out, layers=[2], epochs=1, threads=1)


def test_starting_again_removes_the_killed_attempts_partial_config(tmp_path, rng):
    """A run SIGKILLed as it wrote its first config.json left the atomic write's temporary
    file; the same command started again (what --resume advises then) kept it in the finished
    run for good."""
    from mlplab.data import Dataset

    X = rng.randn(120, 4)
    y = (X[:, 0] > 0).astype(np.int64)
    ds = Dataset("mine", ["a", "b"], X[:80], y[:80], X[80:100], y[80:100], X[100:], y[100:])
    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.json.k2x8.json").write_text("{")
    (run / ".notes").write_text("mine")
    tm.train_run(ds, out=run, hidden=[4], epochs=1, threads=1)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [".notes"]


def test_train_run_refuses_an_init_std_that_default_init_ignores(tmp_path):
    """tm.train_run(init="default", init_std=0.1) trained with PyTorch's own initialisation and
    recorded the std as if used, where mlplab torch train --init-std 0.1 --init default is
    refused; the default std, which every run records, is not."""
    with pytest.raises(ValueError, match=r"^init_std has no effect with init='default' \(PyTorch"
                                         r"'s own initialisation\); it sets the std of "
                                         r"init='exercise'\.$"):
        tm.train_run("digits", init="default", init_std=0.1, epochs=1, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    result = tm.train_run("digits", init="default", epochs=1, hidden=[8], plots=False,
                          progress=False)
    assert result.metrics["val_accuracy"] > 0


def test_a_run_without_progress_shows_no_bar_while_its_folder_decodes(tmp_path, monkeypatch,
                                                                       capsys, jupyter_kernel):
    """tm.train_run(progress=False), the default, showed a folder dataset's "decoding pics"
    bar (in a notebook; in a terminal under mlplab torch train --no-progress); resume_run alike.
    The run's own setting now goes to load_dataset."""
    from PIL import Image

    from mlplab.data import load_dataset

    ds = load_dataset("digits")
    for i, (image, label) in enumerate(zip(ds.X_train[:60], ds.y_train[:60])):
        (tmp_path / "pics" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(tmp_path / "pics" / str(label) / f"{i}.png")
    name, run = f"folder:{tmp_path / 'pics'}", tmp_path / "run"
    options = {"val_size": 10, "test_size": 10, "hidden": [8], "epochs": 1, "threads": 1,
               "plots": False}

    def decoded_with_a_bar(load, cache):  # a cache of its own: the images are decoded
        monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / cache))
        capsys.readouterr()
        load()
        return "decoding pics" in capsys.readouterr().err

    assert decoded_with_a_bar(lambda: tm.train_run(name, progress=True, **options), "c1")
    assert not decoded_with_a_bar(lambda: tm.train_run(name, out=run, **options), "c2")
    (run / "metrics.json").unlink()  # as if killed: the resume loads the data again
    assert not decoded_with_a_bar(lambda: tm.resume_run(run, plots=False), "c3")


def test_a_damaged_metrics_json_of_a_torch_run_is_told_the_torch_resume(runs, tmp_path, capsys):
    """A PyTorch run's damaged metrics.json said to resume it with "mlplab train --resume",
    which refuses a PyTorch run; it names mlplab torch train --resume RUN, as evaluate's other
    advice for a PyTorch run does."""
    import shutil

    run = tmp_path / "damaged"
    shutil.copytree(runs[0], run)
    (run / "metrics.json").write_text("[1]")
    assert main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"delete it, then resume the run with mlplab torch train --resume {run}, which " \
           "writes it again." in err, err
