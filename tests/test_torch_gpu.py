"""The PyTorch parts on a real CUDA GPU: training, resuming, the depth study, evaluation and the
NumPy conversion of a network that lives on the GPU. Skipped where PyTorch sees no GPU (CI); the
other tests check the device logic with a GPU simulated, these check that it works on one."""

import json

import numpy as np
import pytest

from mlplab.cli import main

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install 'mlplab[torch]')")
tm = pytest.importorskip("mlplab.torch_mlp")
from mlplab.torch_mlp import runs as torch_runs  # noqa: E402  (after the importorskip)

pytestmark = [pytest.mark.usefixtures("keep_torch_threads"),
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# dropout and batch norm: the GPU's dropout generator and the running statistics must carry over
SETTINGS = {"hidden": [64, 32], "epochs": 4, "batch_size": 64, "dropout": 0.3,
            "batchnorm": True, "lr": 3e-3, "threads": 1, "eval_test": True, "plots": False,
            "device": "cuda"}


def _state(folder):
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def on_gpu(tmp_path_factory):
    return tm.train_run("digits", out=tmp_path_factory.mktemp("gpu") / "whole", **SETTINGS)


def _crashed_after_two_epochs(out, monkeypatch):
    """A run of SETTINGS in ``out`` that crashed after its second epoch's checkpoint."""
    fit = torch_runs.fit

    def crashing(*args, **kwargs):
        def stop(epoch, logs):
            if epoch == 2:
                raise RuntimeError("stopped here")
        return fit(*args, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(torch_runs, "fit", crashing)
    with pytest.raises(RuntimeError, match="stopped here"):
        tm.train_run("digits", out=out, **SETTINGS)
    monkeypatch.undo()
    return out


def test_a_run_trains_on_the_gpu_and_records_it(on_gpu):
    metrics = on_gpu.metrics
    assert metrics["device"] == f"cuda:{torch.cuda.current_device()}"
    assert metrics["gpu"] == torch.cuda.get_device_name()
    assert on_gpu.config["device"] == "cuda"
    assert metrics["val_accuracy"] > 0.8 and np.isfinite(on_gpu.history.loss).all()
    # the files hold CPU tensors: a machine without a GPU can read them
    assert all(t.device.type == "cpu" for t in _state(on_gpu.out).values())


def test_the_gpu_learns_what_the_cpu_learns():
    """Without dropout (the GPU draws its own masks) the same seed and batches give the same
    losses up to float32 rounding in another order of summation."""
    settings = {**SETTINGS, "dropout": 0.0, "eval_test": False, "epochs": 2}
    gpu = tm.train_run("digits", **settings)
    cpu = tm.train_run("digits", **{**settings, "device": "cpu"})
    np.testing.assert_allclose(gpu.history.loss, cpu.history.loss, rtol=2e-3, atol=1e-4)
    assert abs(gpu.metrics["val_accuracy"] - cpu.metrics["val_accuracy"]) <= 0.01


def test_a_gpu_run_resumes_bit_for_bit(on_gpu, tmp_path, monkeypatch):
    out = _crashed_after_two_epochs(tmp_path / "run", monkeypatch)
    state, _ = tm.load_torch_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 2 and state["cuda_rng"] is not None
    result = tm.resume_run(out, plots=False)
    assert result.history.loss == on_gpu.history.loss
    ours, theirs = _state(out), _state(on_gpu.out)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # bit for bit


def test_a_gpu_run_goes_on_on_the_cpu(on_gpu, tmp_path, monkeypatch):
    out = _crashed_after_two_epochs(tmp_path / "run", monkeypatch)
    assert main(["torch", "train", "--resume", str(out), "--device", "cpu", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"] == "cpu" and "gpu" not in metrics
    assert abs(metrics["val_accuracy"] - on_gpu.metrics["val_accuracy"]) <= 0.05


def test_the_command_line_trains_on_the_gpu_and_evaluates(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["torch", "train", "--device", "cuda", "--epochs", "2", "--hidden", "64",
                 "--out", str(out), "--no-progress", "--no-plots"]) == 0
    assert json.loads((out / "metrics.json").read_text())["device"].startswith("cuda:")
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    recorded = json.loads((out / "metrics.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(recorded["val_accuracy"], abs=1e-9)


def test_auto_picks_the_gpu():
    result = tm.train_run("digits", hidden=[16], epochs=1, device="auto", plots=False)
    assert result.metrics["device"].startswith("cuda:")


def test_a_network_on_the_gpu_converts_to_numpy_and_predicts_alike(rng):
    model = tm.build_model(20, [16, 8], 4, batchnorm=True, seed=0)
    X = rng.randn(100, 20).astype(np.float32)
    y = rng.randint(0, 4, 100)
    tm.fit(model, X, y, epochs=2, batch_size=20, device="cuda", progress=False, seed=0)
    assert next(model.parameters()).device.type == "cuda"
    on_gpu = tm.predict_logits(model, X)
    probabilities = torch.softmax(torch.from_numpy(on_gpu).double(), dim=1).numpy()
    mlp = tm.to_numpy(model)  # the NumPy network on the CPU, from weights on the GPU
    np.testing.assert_allclose(mlp.predict_proba(X), probabilities, rtol=1e-4, atol=1e-5)
    back = tm.from_numpy(mlp)
    np.testing.assert_allclose(tm.predict_logits(back, X), on_gpu, rtol=1e-4, atol=1e-4)


def test_the_depth_study_runs_on_the_gpu(tmp_path):
    """Each depth's network learns on the GPU what it learns on the CPU (no dropout: the same
    seed, batches and initial weights; float32 rounding in another order of summation)."""
    study = {"layers": (2, 3), "hidden_size": 32, "init": "default", "epochs": 2, "threads": 1}
    result = tm.depth_run("digits", out=tmp_path / "depth", device="cuda", **study)
    summary = json.loads((tmp_path / "depth" / "depth.json").read_text())
    assert summary["environment"]["device"].startswith("cuda:")
    on_cpu = tm.depth_run("digits", device="cpu", **study)
    assert [r.depth for r in result.results] == [r.depth for r in on_cpu.results] == [2, 3]
    for gpu, cpu in zip(result.results, on_cpu.results):
        assert abs(gpu.val_acc - cpu.val_acc) <= 1 / 180 + 1e-12  # one digit of 180 at most
        np.testing.assert_allclose(gpu.history.loss, cpu.history.loss, rtol=2e-3, atol=1e-4)


def test_reproduce_trains_q4_on_the_gpu_and_the_report_names_it(tmp_path, capsys):
    """tests/test_report.py's test_q4_runs_on_the_device_given_and_the_report_names_it on a GPU:
    --device cuda, and the report names the GPU where that test names the CPU."""
    index = torch.cuda.current_device()
    gpu = torch.cuda.get_device_name(index)
    out = tmp_path / "r"
    assert main(["reproduce", "--only", "data,q4", "--device", "cuda", "--out", str(out)]) == 0
    capsys.readouterr()
    doc = json.loads((out / "report.json").read_text())
    assert doc["device"] == "cuda"
    q4 = doc["sections"]["q4"]
    assert q4["status"] == "ok" and q4["data"]["device"] == f"cuda:{index}" and \
        q4["data"]["gpu"] == gpu
    assert doc["sections"]["environment"]["data"]["device"] == {"asked": "cuda",
                                                                "q4": f"cuda:{index}", "gpu": gpu}
    md = (out / "report.md").read_text()
    assert f"PyTorch threads: 1, device: cuda:{index} ({gpu}). *exercise*" in md
    row = f"| device | cuda:{index}, {gpu} (Q4's PyTorch networks; --device cuda) |"
    assert row in md
    html = (out / "report.html").read_text()
    assert f"PyTorch threads: 1, device: cuda:{index} ({gpu})." in html
    assert f"<td>cuda:{index}, {gpu} (Q4's PyTorch networks; --device cuda)</td>" in html
    # a Q4 kept by --reuse: the row says where that run trained it
    assert main(["reproduce", "--only", "q1", "--reuse", "--device", "cuda",
                 "--out", str(out)]) == 0
    assert f"| device | cuda:{index}, {gpu} (Q4's PyTorch networks; --device cuda, kept from " \
           "the earlier run) |" in (out / "report.md").read_text()
