"""The PyTorch MLP of Question 4: architecture, initialisation, training, devices, and agreement
with the hand-written NumPy MLP on the same weights."""

import subprocess
import sys

import numpy as np
import pytest

from mlplab import MLP
from mlplab.optim import SGD, Adam

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install 'mlplab[torch]')")
tm = pytest.importorskip("mlplab.torch_mlp")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # on a shared, loaded 2-core machine PyTorch's spinning OpenMP threads make these tiny
    # problems 10-50x slower; one thread keeps the tests fast and deterministic
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rel(a, b) -> float:
    """Norm-wise relative difference (0 when both are 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den else 0.0


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits as (N, 8, 8, 1) uint8 images, split 1,297 / 250 / 250."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[..., None]
    order = np.random.RandomState(0).permutation(len(images))
    images, y = images[order], d.target[order]
    return (images[:1297], y[:1297], images[1297:1547], y[1297:1547], images[1547:],
            y[1547:])


# ----------------------------------------------------------------------------------- the model
def test_architecture_is_the_exercises():
    m = tm.MultiLayerPerceptron(3072, [50], 10)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == ["Linear", "ReLU", "Linear"]
    assert m.linears[0].weight.shape == (50, 3072) and m.linears[1].weight.shape == (10, 50)
    deep = tm.MultiLayerPerceptron(3072, tm.hidden_for_depth(5, 50), 10)
    assert [type(layer).__name__ for layer in deep.layers] == ["Linear", "ReLU"] * 4 + ["Linear"]
    assert deep.depth == 5 and tm.hidden_for_depth(2) == [50] and tm.hidden_for_depth(1) == []
    both = tm.MultiLayerPerceptron(12, [6, 5], 3, dropout=0.5, batchnorm=True)
    assert [type(layer).__name__ for layer in both.layers] == \
        ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert both.linears[0].bias is None and both.linears[-1].bias is not None


def test_forward_flattens_images_and_returns_logits(rng):
    m = tm.build_model(4 * 4 * 3, [7, 5], 3, init="default", seed=0).double()
    images = rng.rand(6, 4, 4, 3)
    out = m(torch.tensor(images)).detach().numpy()
    # independent reference: the same maps written out in NumPy
    h = images.reshape(6, -1)
    for i, lin in enumerate(m.linears):
        h = h @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
        if i < 2:
            h = np.maximum(h, 0)
    np.testing.assert_allclose(out, h, rtol=1e-12, atol=1e-12)


def test_a_width_is_one_hidden_layer_as_in_mlp():
    """``hidden_layers=50`` is ``[50]``, as ``mlplab.MLP(D, 50, K)`` takes it (it was refused as
    "every hidden size must be a positive integer; got 50")."""
    for model in (tm.MultiLayerPerceptron(4, 5, 3), tm.build_model(4, 5, 3, seed=0)):
        assert model.config["hidden_layers"] == [5]
        assert [lin.weight.shape for lin in model.linears] == [(5, 4), (3, 5)]
    assert all(torch.equal(p, q) for p, q in zip(tm.build_model(4, 5, 3, seed=0).parameters(),
                                                  tm.build_model(4, [5], 3, seed=0).parameters()))
    assert MLP(4, 5, 3).config["hidden_sizes"] == [5]


def test_build_model_checks_seed_and_dtype_as_mlp_does():
    """A seed MLP refuses is refused here in the same words (a negative one was taken as given,
    a Generator was torch's "manual_seed expected a long"), and NumPy's spelling of a dtype gives
    PyTorch's (np.float64 was a TypeError listing the signatures of Module.to)."""
    for seed in (-1, 2**32, 1.5, np.random.default_rng(0)):
        with pytest.raises(ValueError, match="^seed must be None or an integer between 0 and"):
            MLP(4, [5], 3, seed=seed)
        with pytest.raises(ValueError, match="^seed must be None or an integer between 0 and"):
            tm.build_model(4, [5], 3, seed=seed)
    reference = tm.build_model(4, [5], 3, seed=0, dtype=torch.float64)
    for dtype in (np.float64, "float64", np.dtype("float64")):
        model = tm.build_model(4, [5], 3, seed=0, dtype=dtype)
        assert all(p.dtype == torch.float64 and torch.equal(p, q)
                   for p, q in zip(model.parameters(), reference.parameters()))
    assert next(tm.build_model(4, [5], 3, dtype="float32").parameters()).dtype == torch.float32
    for dtype in (torch.float16, np.int32, "bogus", None):  # (None: np.dtype(None) is float64)
        with pytest.raises(ValueError, match="^dtype must be float32 or float64"):
            tm.build_model(4, [5], 3, dtype=dtype)


@pytest.mark.parametrize("bad", [dict(input_size=0), dict(num_classes=1),
                                 dict(hidden_layers=[5, 0]), dict(dropout=1.0)])
def test_bad_arguments_are_clear_errors(bad):
    args = dict(input_size=4, hidden_layers=[5], num_classes=3) | bad
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
        tm.MultiLayerPerceptron(**args)
    with pytest.raises(ValueError, match="depth"):
        tm.hidden_for_depth(0)
    # not truncated or converted: 2.5 was a 2-layer net, "3" a 3-layer one
    with pytest.raises(ValueError, match=r"must be an integer >= 1 .*got 2\.5"):
        tm.hidden_for_depth(2.5)
    assert len(tm.hidden_for_depth(1000)) == 999
    with pytest.raises(ValueError, match="depth 1001 is over 1,000 Linear layers"):
        tm.hidden_for_depth(1001)
    with pytest.raises(ValueError, match="hidden size must be a positive integer; got '50'"):
        tm.hidden_for_depth(3, "50")
    assert tm.hidden_for_depth(np.int64(3), np.int32(8)) == [8, 8]


def test_exercise_init_is_std_1e_3_and_zero_bias():
    m = tm.build_model(3072, [50, 50], 10, init="exercise", seed=1)
    for lin in m.linears:
        w = lin.weight.detach().numpy()
        # 150k draws: the sample std is within 1% of 1e-3 (it would be 3.2e-2 if 1e-3 were the
        # variance), and the mean is ~0
        assert w.std() == pytest.approx(1e-3, rel=0.03 if w.size < 1000 else 0.01)
        assert abs(w.mean()) < 4 * 1e-3 / np.sqrt(w.size)
        assert not lin.bias.detach().numpy().any()
    # the exercise's own recipe, model.apply(weights_init), gives the same draws
    torch.manual_seed(1)
    ref = tm.MultiLayerPerceptron(3072, [50, 50], 10)
    ref.apply(tm.weights_init)
    for a, b in zip(m.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_default_init_is_pytorchs_and_seeded():
    a = tm.build_model(300, [40], 10, init="default", seed=3)
    b = tm.build_model(300, [40], 10, init="default", seed=3)
    c = tm.build_model(300, [40], 10, init="default", seed=4)
    w = a.linears[0].weight.detach().numpy()
    # PyTorch's Linear default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    bound = 1 / np.sqrt(300)
    assert w.min() >= -bound and w.max() <= bound and w.std() == pytest.approx(
        bound / np.sqrt(3), rel=0.05)
    assert a.linears[0].bias.abs().sum() > 0
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.linears[0].weight, c.linears[0].weight)
    with pytest.raises(ValueError, match="unknown init"):
        tm.build_model(3, [2], 2, init="he")


def test_build_model_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tm.build_model(50, [20], 4, init="default", seed=0)
    tm.build_model(50, [20], 4, init="exercise", seed=0)
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------------------ device, threads
def test_select_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert tm.select_device("cpu", cuda_available=True) == cpu
    assert tm.select_device("auto", cuda_available=False) == cpu
    assert tm.select_device("auto", cuda_available=True, cuda_count=1) == cuda
    assert tm.select_device("CUDA", cuda_available=True, cuda_count=1) == cuda
    assert tm.select_device("cuda:1", cuda_available=True, cuda_count=2) == torch.device("cuda:1")
    with pytest.raises(ValueError, match="no CUDA GPU.*device='cpu'"):
        tm.select_device("cuda", cuda_available=False)
    with pytest.raises(ValueError, match="no such GPU"):
        tm.select_device("cuda:2", cuda_available=True, cuda_count=2)
    for bad in ("tpu", "cuda:x", "cuda:", "gpu0"):
        with pytest.raises(ValueError, match="device must be cpu, cuda, cuda:N or auto"):
            tm.select_device(bad, cuda_available=True, cuda_count=2)
    # on this machine: whatever PyTorch really reports
    real = tm.select_device("auto")
    assert real.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert tm.TorchTrainConfig().device == "cpu"


def test_a_missing_gpu_is_told_in_the_callers_words(tmp_path, monkeypatch, capsys,
                                                    keep_torch_threads):
    """A notebook's train_run(device="cuda") on a machine without a GPU was told to "use
    --device cpu, or --device auto"; from Python it is the device= argument, on the command line
    the flag as before."""
    from mlplab._validation import command_line
    from mlplab.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # whatever this machine has

    def said(call) -> str:
        with pytest.raises(ValueError) as caught:
            call()
        return str(caught.value)

    python = [said(lambda: tm.select_device("cuda:2", cuda_available=True, cuda_count=2)),
              said(lambda: tm.train_run("digits", device="CUDA", epochs=1))]
    assert python[0] == "device='cuda:2': no such GPU; PyTorch sees 2 (cuda:0 .. cuda:1)."
    assert python[1].startswith("device='cuda' was asked for but PyTorch sees no CUDA GPU (")
    assert python[1].endswith("); use device='cpu', or device='auto' to take a GPU only when "
                              "there is one.")
    with command_line():
        flag = said(lambda: tm.select_device("cuda:2", cuda_available=True, cuda_count=2))
    assert flag == "--device cuda:2: no such GPU; PyTorch sees 2 (cuda:0 .. cuda:1)."
    assert main(["torch", "train", "--device", "cuda", "--epochs", "1",
                 "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "--device cuda was asked for but PyTorch sees no CUDA GPU (" in err
    assert "); use --device cpu, or --device auto to take a GPU only when there is one." in err
    assert not (tmp_path / "r").exists()


def test_parse_device_checks_the_spelling_only():
    # a misspelt device is told apart from a missing GPU (the CLI: exit 2 against exit 1)
    assert tm.parse_device(" CUDA:1 ") == "cuda:1" and tm.parse_device("Auto") == "auto"
    assert tm.parse_device("cuda:7") == "cuda:7"  # whether there is a GPU 7 is not asked here
    with pytest.raises(ValueError, match="device must be .*got 'foo'"):
        tm.parse_device("foo")


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert tm.set_threads(1) == 1 and torch.get_num_threads() == 1
        n = tm.set_threads(None)
        assert n == tm.available_cpus() and torch.get_num_threads() == n
        with pytest.raises(ValueError, match="threads"):
            tm.set_threads(0)
        # int() made 2.5 two threads and True one, while a run recorded threads 2.5 or True
        for bad in (2.5, True, "2"):
            with pytest.raises(ValueError, match="threads must be a positive integer"):
                tm.set_threads(bad)
            with pytest.raises(ValueError, match="threads must be a positive integer"):
                tm.TorchTrainConfig(threads=bad).validate()
        assert tm.set_threads(np.int64(1)) == 1
        # (100,000 ended the process with a segmentation fault in PyTorch's thread pool)
        with pytest.raises(ValueError, match="threads must be a positive integer of at most "
                                             "1024; got 100000"):
            tm.set_threads(100000)
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------- inputs
def test_normalize_images_matches_totensor_normalize(rng):
    images = rng.randint(0, 256, size=(5, 4, 3, 3)).astype(np.uint8)
    images[0, 0, 0] = [0, 255, 128]
    out = tm.normalize_images(images)
    assert out.shape == (5, 36) and out.dtype == np.float32
    assert out.reshape(5, 4, 3, 3)[0, 0, 0].tolist() == pytest.approx([-1, 1, 1 / 255], abs=1e-6)
    # independent reference: torchvision's ToTensor + Normalize written with torch ops on CHW
    chw = torch.tensor(images).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.5])
    ref = ((chw - mean[:, None, None]) / std[:, None, None]).permute(0, 2, 3, 1).reshape(5, -1)
    np.testing.assert_allclose(tm.normalize_images(images, [0.4, 0.5, 0.6], [0.2, 0.25, 0.5]),
                               ref.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tm.normalize_images(images / 255.0), out, atol=1e-6)
    assert tm.normalize_images(images[..., 0]).shape == (5, 12)  # greyscale (N, H, W)


@pytest.mark.parametrize("bad,match", [(np.zeros((3, 4)), "N, H, W, C"),
                                       (np.full((2, 2, 2, 1), 3.0), r"\[0, 1\]"),
                                       (np.zeros((2, 2, 2, 1), np.int64), "dtype")])
def test_normalize_images_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        tm.normalize_images(bad)
    with pytest.raises(ValueError, match="per channel|one per channel"):
        tm.normalize_images(np.zeros((1, 2, 2, 3), np.uint8), mean=[0.5, 0.5])


# --------------------------------------------------------------------- NumPy <-> PyTorch interop
@pytest.mark.parametrize("batchnorm", [False, True])
def test_from_numpy_and_back(batchnorm, rng):
    mlp = MLP(12, [9, 7], 4, seed=0, dtype=np.float64, batchnorm=batchnorm)
    if batchnorm:  # non-trivial running statistics
        for _ in range(3):
            mlp.loss(rng.randn(16, 12) * 2 + 1, rng.randint(4, size=16))
    X = rng.randn(20, 12)
    model = tm.from_numpy(mlp)
    assert model.linears[0].weight.shape == (9, 12) and model.linears[0].weight.dtype == \
        torch.float64
    np.testing.assert_array_equal(model.linears[0].weight.detach().numpy(), mlp.params["W1"].T)
    logits = tm.predict_logits(model, X)
    # the NumPy net returns probabilities: softmax of the torch logits must equal them
    probs = torch.softmax(torch.tensor(logits), dim=1).numpy()
    assert rel(probs, mlp.predict_proba(X)) < 1e-13
    back = tm.to_numpy(model)
    assert back.config["hidden_sizes"] == [9, 7] and back.dtype == np.float64
    for k, v in mlp.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v, err_msg=k)
    # float32 models stay float32; X stored as (N, D) works
    m32 = tm.build_model(12, [5], 3, seed=0)
    assert tm.to_numpy(m32).dtype == np.float32
    np.testing.assert_allclose(tm.to_numpy(m32).predict_proba(X.astype(np.float32)),
                               torch.softmax(m32(torch.tensor(X, dtype=torch.float32)), 1)
                               .detach().numpy(), rtol=1e-5, atol=1e-6)


def test_from_numpy_gives_a_network_ready_to_predict(rng):
    """from_numpy's network predicts as the NumPy one does straight away, dropout included: a
    module left in training mode drops units at random on every call."""
    mlp = MLP(12, [30], 4, seed=0, dtype=np.float64, dropout=0.5)
    model = tm.from_numpy(mlp)
    X = torch.tensor(rng.randn(50, 12))
    with torch.no_grad():
        first, second = model(X), model(X)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    probs = torch.softmax(first, 1).numpy()
    np.testing.assert_allclose(probs, mlp.predict_proba(X.numpy()), rtol=1e-12)


def test_interop_refuses_what_it_cannot_convert():
    with pytest.raises(ValueError, match="ReLU, but this MLP uses 'tanh'"):
        tm.from_numpy(MLP(4, [3], 2, activation="tanh"))
    with pytest.raises(TypeError, match="mlplab.MLP"):
        tm.from_numpy(torch.nn.Linear(3, 2))
    with pytest.raises(TypeError, match="MultiLayerPerceptron"):
        tm.to_numpy(torch.nn.Sequential(torch.nn.Linear(3, 2)))


def test_from_numpy_refuses_a_relu_replaced_by_a_registered_layer(registries):
    """A registration may replace ``relu`` (replace=True), now also by a layer with parameters
    (sized=True): from_numpy read only the activation's name, and converted such a network as
    a plain ReLU one, its slopes dropped and its outputs changed without a word."""
    from mlplab import models
    from mlplab.layers import Layer

    class PReLU(Layer):
        def __init__(self, size, dtype):
            super().__init__()
            self.params = {"alpha": np.full(size, 0.25, dtype)}
            self.grads = {"alpha": np.zeros(size, dtype)}

        def forward(self, x, train=True):
            self.x = x
            return np.maximum(x, 0) + self.params["alpha"] * np.minimum(x, 0)

        def backward(self, dout):  # (register_activation runs one pass of it)
            return dout * np.where(self.x > 0, 1.0, self.params["alpha"])

    models.register_activation("relu", PReLU, replace=True, sized=True)
    with pytest.raises(ValueError, match="PReLU.*only ReLU networks can be converted"):
        tm.from_numpy(MLP(4, [3], 2, seed=0))
    models.register_activation("relu", models.LeakyReLU, replace=True)
    with pytest.raises(ValueError, match="LeakyReLU.*only ReLU networks can be converted"):
        tm.from_numpy(MLP(4, [3], 2, seed=0))
    # and the other way: an MLP built now would hold the replacement, not the module's ReLU
    with pytest.raises(ValueError, match="'relu' is registered as .*LeakyReLU"):
        tm.to_numpy(tm.MultiLayerPerceptron(4, [3], 2))


def _torch_loss(model, X, y, reg):
    return torch.nn.functional.cross_entropy(model(torch.tensor(X)), torch.tensor(y)) + \
        tm.l2_penalty(model, reg)


def _torch_grads(model) -> dict:
    """PyTorch gradients named and laid out like mlplab's (W = weight.T)."""
    out = {}
    for i, lin in enumerate(model.linears, start=1):
        out[f"W{i}"] = lin.weight.grad.numpy().T
        if lin.bias is not None:
            out[f"b{i}"] = lin.bias.grad.numpy()
    for i, bn in enumerate(model.batchnorms, start=1):
        out[f"gamma{i}"], out[f"beta{i}"] = bn.weight.grad.numpy(), bn.bias.grad.numpy()
    return out


@pytest.mark.parametrize("hidden,batchnorm", [([10], False), ([10, 8, 6], False), ([10, 8], True)])
def test_same_loss_and_gradients_float64(hidden, batchnorm, rng):
    X, y, reg = rng.randn(32, 15), rng.randint(5, size=32), 0.05
    mlp = MLP(15, hidden, 5, seed=1, dtype=np.float64, batchnorm=batchnorm)
    for p in mlp.params.values():  # non-zero biases and non-trivial gammas
        p += 0.1 * rng.randn(*p.shape)
    model = tm.from_numpy(mlp).train()
    loss, grads = mlp.loss(X, y, reg=reg)
    t_loss = _torch_loss(model, X, y, reg)
    t_loss.backward()
    assert rel(loss, t_loss.item()) < 1e-10
    t_grads = _torch_grads(model)
    assert set(t_grads) == set(grads)
    for k in grads:
        assert rel(grads[k], t_grads[k]) < 1e-10, k


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_same_parameters_after_n_steps_without_shuffling(optimizer, rng):
    X, y = rng.randn(60, 15), rng.randint(5, size=60)
    reg, lr, batch, steps = 1e-3, 0.05 if optimizer == "sgd" else 1e-2, 20, 30
    mlp = MLP(15, [12, 8], 5, init="he", seed=2, dtype=np.float64)
    model = tm.from_numpy(mlp).train()
    W1_start = mlp.params["W1"].copy()
    opt_np = SGD(lr) if optimizer == "sgd" else Adam(lr)
    opt_t = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(model.parameters(), lr=lr)
    losses_np, losses_t = [], []
    for t in range(steps):
        sl = slice((t * batch) % 60, (t * batch) % 60 + batch)  # batches in order, no shuffling
        loss, grads = mlp._loss_and_grads(X[sl], y[sl], reg)
        opt_np.step(mlp.params, grads)
        losses_np.append(loss)
        opt_t.zero_grad()
        t_loss = _torch_loss(model, X[sl], y[sl], reg)
        t_loss.backward()
        opt_t.step()
        losses_t.append(t_loss.item())
    assert rel(losses_np, losses_t) < 1e-10
    assert losses_np[-1] < losses_np[0]  # it did train
    trained = tm.to_numpy(model)
    for k, v in mlp.params.items():
        assert rel(v, trained.params[k]) < 1e-10, k
    assert rel(mlp.params["W1"], W1_start) > 1e-3  # the parameters really moved


# ------------------------------------------------------------------------------------ model files
@pytest.mark.parametrize("dtype,batchnorm", [(torch.float32, False), (torch.float64, True)])
def test_save_and_load_torch_model(dtype, batchnorm, tmp_path, rng):
    m = tm.build_model(12, [7, 5], 3, init="default", batchnorm=batchnorm, dropout=0.2, seed=4,
                       dtype=dtype)
    if batchnorm:  # move the running statistics away from their initial values
        m.train()
        m(torch.tensor(rng.randn(16, 12) * 3 + 1, dtype=dtype))
    tm.save_torch_model(tmp_path / "m.pt", m, {"classes": ["a", "b", "c"]})
    back, extra = tm.load_torch_model(tmp_path / "m.pt")
    assert extra == {"classes": ["a", "b", "c"]} and back.config == m.config
    assert not back.training
    for (k, a), (k2, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b), k
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_load_torch_model_refuses_foreign_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an mlplab PyTorch model"):
        tm.load_torch_model(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable PyTorch model"):
        tm.load_torch_model(tmp_path / "junk.pt")

    class Evil:  # a pickle that would run code if loaded without weights_only
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": tm.TORCH_MODEL_FORMAT, "config": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable") as refused:
        tm.load_torch_model(tmp_path / "evil.pt")
    # PyTorch's own refusal advises weights_only=False, which would run this file's code
    assert "weights_only" not in str(refused.value)
    assert "evil.pt is not a readable PyTorch model file (not plain tensors and values: " \
           in str(refused.value)
    (tmp_path / "bytes.pt").write_bytes(b"xx\n")  # a damaged file: torch reads it as a pickle
    with pytest.raises(ValueError, match="not a readable") as refused:
        tm.load_torch_model(tmp_path / "bytes.pt")
    # one line, PyTorch's reason kept (its wording varies between versions)
    assert "bytes.pt is not a readable PyTorch model file (not plain tensors and values: " \
           "Unsupported operand" in str(refused.value)
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(FileNotFoundError):
        tm.load_torch_model(tmp_path / "missing.pt")
    # a folder is a missing file, as load_model (NumPy) has it, not a ValueError
    with pytest.raises(FileNotFoundError, match="is a folder, not a PyTorch model file"):
        tm.load_torch_model(tmp_path)


def test_a_folder_is_no_torch_file_where_opening_it_is_a_permission_error(tmp_path, monkeypatch):
    """Windows refuses to open a folder with PermissionError ("[Errno 13] Permission denied"),
    not IsADirectoryError: load_torch_model of a run folder said "not a readable PyTorch model
    file ([Errno 13] Permission denied ...)", a ValueError, where load_model and POSIX say the
    folder is no model file."""
    import mlplab.torch_mlp.files as files

    def windows_load(path, *args, **kwargs):  # open() of a folder, as Windows answers it
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(files.torch, "load", windows_load)
    for read, what in ((tm.load_torch_model, "model file"),
                       (tm.load_torch_checkpoint, "checkpoint")):
        with pytest.raises(FileNotFoundError, match=rf"is a folder, not a PyTorch {what}\.$"):
            read(tmp_path)


# -------------------------------------------------------------------------------------- training
def test_fit_learns_digits_and_records_history(digits):
    Xtr, ytr, Xv, yv, Xte, yte = digits
    X, X_val = tm.normalize_images(Xtr), tm.normalize_images(Xv)
    model = tm.build_model(64, [50], 10, init="exercise", seed=0)
    epochs = []
    h = tm.fit(model, X, ytr, X_val, yv, epochs=10, lr=1e-2,
               on_epoch_end=lambda e, logs: epochs.append((e, logs["val_acc"])))
    per_epoch = int(np.ceil(1297 / 200))
    assert len(h.loss) == 10 * per_epoch and len(h.val_acc) == len(h.train_acc) == 10
    assert [e for e, _ in epochs] == list(range(1, 11))
    # lr multiplied by 0.95 after every epoch
    np.testing.assert_allclose(h.lr, 1e-2 * 0.95 ** np.arange(10), rtol=1e-12)
    assert h.val_acc[-1] > 0.85 and tm.accuracy(model, tm.normalize_images(Xte), yte) > 0.85
    assert h.best_val_acc == max(h.val_acc) and h.val_acc[h.best_epoch - 1] == h.best_val_acc
    assert not model.training


def test_fit_is_the_exercises_loop(digits):
    """fit = a plain exercise-style loop: shuffled batches of 200 (torch.randperm from the seed),
    Adam(lr, weight_decay=reg), lr *= 0.95 by hand after each epoch."""
    Xtr, ytr = digits[0][:600], digits[1][:600]
    X = tm.normalize_images(Xtr)
    a = tm.build_model(64, [30, 20], 10, init="default", seed=5)
    b = tm.build_model(64, [30, 20], 10, init="default", seed=5)
    h = tm.fit(a, X, ytr, epochs=3, batch_size=200, lr=2e-3, reg=1e-2, lr_decay=0.9, seed=7)

    Xt, yt = torch.tensor(X), torch.tensor(ytr, dtype=torch.int64)
    g = torch.Generator().manual_seed(7)
    opt = torch.optim.Adam(b.parameters(), lr=2e-3, weight_decay=1e-2)
    losses = []
    for _ in range(3):
        for idx in torch.randperm(600, generator=g).split(200):
            loss = torch.nn.functional.cross_entropy(b(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        opt.param_groups[0]["lr"] *= 0.9
    np.testing.assert_allclose(h.loss, losses, rtol=1e-6)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_fit_is_reproducible_and_keeps_global_rng(digits):
    X, y = tm.normalize_images(digits[0][:400]), digits[1][:400]
    torch.manual_seed(9)
    expected = torch.rand(2)
    torch.manual_seed(9)
    runs = []
    for _ in range(2):
        m = tm.build_model(64, [20], 10, dropout=0.3, seed=0)
        runs.append(tm.fit(m, X, y, epochs=2, seed=11).loss)
    assert torch.equal(torch.rand(2), expected)
    assert runs[0] == runs[1]
    other = tm.fit(tm.build_model(64, [20], 10, dropout=0.3, seed=0), X, y, epochs=2, seed=12)
    assert other.loss != runs[0]


def test_fit_float64_and_bad_input(digits):
    X, y = tm.normalize_images(digits[0][:200]).astype(np.float64), digits[1][:200]
    m = tm.build_model(64, [10], 10, dtype=torch.float64)
    tm.fit(m, X, y, epochs=1)
    with pytest.raises(ValueError, match="features"):
        tm.fit(m, X[:, :10], y, epochs=1)
    with pytest.raises(ValueError, match="labels"):
        tm.fit(m, X, y[:-1], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        tm.fit(m, X, y, epochs=0)
    with pytest.raises(ValueError, match=r"unknown training options: iters \(known: .*epochs"):
        tm.fit(m, X, y, iters=5)
    with pytest.raises(ValueError, match="no CUDA GPU") if not torch.cuda.is_available() \
            else pytest.raises(AssertionError):
        tm.fit(m, X, y, epochs=1, device="cuda")
        raise AssertionError  # with a GPU, training on it must just work


def test_predict_and_fit_take_images_as_the_model_does(rng):
    """The model flattens (N, H, W, C) images in its forward pass; predict, accuracy and fit
    take them too, with the same results as the flattened rows."""
    model = tm.build_model(8 * 8 * 3, [6], 3, seed=0)
    images = rng.rand(20, 8, 8, 3).astype(np.float32)
    flat = images.reshape(20, -1)
    y = rng.randint(3, size=20)
    np.testing.assert_array_equal(tm.predict(model, images), tm.predict(model, flat))
    assert tm.accuracy(model, images, y) == tm.accuracy(model, flat, y)
    cfg = tm.TorchTrainConfig(epochs=1, batch_size=10)
    a, b = tm.build_model(8 * 8 * 3, [6], 3, seed=0), tm.build_model(8 * 8 * 3, [6], 3, seed=0)
    assert tm.fit(a, images, y, images, y, cfg).loss == tm.fit(b, flat, y, flat, y, cfg).loss


def test_accuracy_on_no_rows_is_the_numpy_models_error_not_nan():
    """The accuracy of no predictions is undefined: the NumPy MLP says so, and PyTorch's gave
    NaN, which a caller could record as a result. Both now raise the same error, after the
    same check of the width."""
    model = tm.build_model(4, [5], 3, seed=0)
    reference = MLP(4, [5], 3)
    for X in (np.zeros((0, 4), np.float32), np.zeros((0, 7), np.float32),
              np.zeros((0, 2, 2, 1), np.float32)):
        y = np.zeros(0, dtype=np.int64)
        with pytest.raises(ValueError) as numpy_error:
            reference.accuracy(X.reshape(0, int(np.prod(X.shape[1:]))), y)
        with pytest.raises(ValueError) as torch_error:
            tm.accuracy(model, X, y)
        assert str(torch_error.value) == str(numpy_error.value)
    with pytest.raises(ValueError, match="X has no rows"):
        tm.accuracy(model, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))


def test_fit_validation_data_comes_in_pairs(digits):
    """As Trainer.fit: X_val without y_val trained a whole epoch and then failed with "y must
    be a 1-D array ... got shape ()"; y_val without X_val was silently no validation."""
    X, y = tm.normalize_images(digits[0][:100]), digits[1][:100]
    Xv, yv = tm.normalize_images(digits[2][:50]), digits[3][:50]
    m = tm.build_model(64, [8], 10, seed=0)
    before = [p.detach().clone() for p in m.parameters()]
    with pytest.raises(ValueError, match="X_val was given without y_val: pass both"):
        tm.fit(m, X, y, Xv, epochs=1)
    with pytest.raises(ValueError, match="y_val was given without X_val"):
        tm.fit(m, X, y, y_val=yv, epochs=1)
    # refused before any training step
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    h = tm.fit(m, X, y, Xv, yv, epochs=1)
    assert h.val_acc[0] == tm.accuracy(m, Xv, yv)


def test_shuffled_batches_merge_a_last_batch_of_one_row():
    """With merge_single, a last batch of one row joins the batch before it; the permutation is
    the same as without, so no row is lost or repeated."""
    def draw(n, b, merge):
        sampler = tm.ShuffledBatches(n, b, torch.Generator().manual_seed(3), merge_single=merge)
        return sampler, list(sampler)

    plain, merged = draw(9, 4, False)[1], draw(9, 4, True)[1]
    assert [len(i) for i in plain] == [4, 4, 1] and [len(i) for i in merged] == [4, 5]
    assert torch.equal(torch.cat(plain), torch.cat(merged))
    assert sorted(torch.cat(merged).tolist()) == list(range(9))
    for n, b, expected in [(9, 4, 2), (10, 4, 3), (8, 4, 2), (1, 4, 1), (5, 4, 1), (3, 2, 1)]:
        sampler, batches = draw(n, b, True)
        assert len(sampler) == len(batches) == expected == tm.batches_per_epoch(n, b, True)
        assert all(len(i) >= 2 for i in batches) or n == 1
    assert tm.batches_per_epoch(9, 4) == len(draw(9, 4, False)[0]) == 3


def test_batchnorm_trains_when_the_last_batch_has_one_row(digits):
    """1297 rows in batches of 16 leave one row over. BatchNorm1d cannot train on one row (it
    used to fail partway through the epoch); fit merges it into the batch before, while a net
    without batch norm keeps the exercise's short last batch."""
    X, y = tm.normalize_images(digits[0]), digits[1]
    assert len(X) % 16 == 1
    bn = tm.build_model(64, [16], 10, batchnorm=True, seed=0)
    h = tm.fit(bn, X, y, epochs=2, batch_size=16)
    assert len(h.loss) == 2 * 81 and np.isfinite(h.loss).all()
    plain = tm.fit(tm.build_model(64, [16], 10, seed=0), X, y, epochs=1, batch_size=16)
    assert len(plain.loss) == 82


def test_batchnorm_refuses_batches_of_one_row(digits):
    X, y = tm.normalize_images(digits[0][:50]), digits[1][:50]
    bn = tm.build_model(64, [8], 10, batchnorm=True, seed=0)
    with pytest.raises(ValueError, match="batch_size must be at least 2 with batch norm"):
        tm.fit(bn, X, y, epochs=1, batch_size=1)
    with pytest.raises(ValueError, match="at least 2 training rows.*has 1"):
        tm.fit(bn, X[:1], y[:1], epochs=1)
    tm.fit(tm.build_model(64, [8], 10, seed=0), X[:1], y[:1], epochs=1, batch_size=1)


def test_divergence_is_reported(digits):
    from mlplab.trainer import TrainingDivergedError

    X, y = tm.normalize_images(digits[0][:400]), digits[1][:400]
    m = tm.build_model(64, [20], 10, init="default")
    with torch.no_grad():
        m.linears[0].weight.fill_(float("inf"))
    with pytest.raises(TrainingDivergedError, match="iteration 1 .*lower learning rate"):
        tm.fit(m, X, y, epochs=1)


# ----------------------------------------------------------------------------------- depth study
def test_depth_study_table_and_plot(digits, tmp_path):
    Xtr, ytr, Xv, yv, Xte, yte = digits
    X, X_val, X_test = (tm.normalize_images(a) for a in (Xtr, Xv, Xte))
    rows = tm.depth_study(X, ytr, X_val, yv, X_test, yte, depths=[2, 3], hidden_size=16,
                          inits=["exercise", "default"], epochs=2)
    assert [(r.init, r.depth, r.hidden) for r in rows] == [
        ("exercise", 2, [16]), ("exercise", 3, [16, 16]),
        ("default", 2, [16]), ("default", 3, [16, 16])]
    for init in ("exercise", "default"):
        group = [r for r in rows if r.init == init]
        best = [r for r in group if r.best]
        assert len(best) == 1 and best[0].val_acc == max(r.val_acc for r in group)
        assert best[0].test_acc is not None and 0 <= best[0].test_acc <= 1
        assert all(r.test_acc is None for r in group if not r.best)
        assert all(0 <= r.train_acc <= 1 and len(r.history.val_acc) == 2 for r in group)
    md = tm.depth_table_markdown(rows)
    assert md.count("\n") == 2 + 4 and "| exercise | 3 | 16, 16 |" in md and md.count("—") == 2
    csv_lines = tm.depth_table_csv(rows).splitlines()
    assert csv_lines[0] == ",".join(tm.DEPTH_COLUMNS) and len(csv_lines) == 5
    assert sum(1 for line in csv_lines[1:] if line.split(",")[5]) == 2
    from mlplab import plots

    plots.save(tm.plot_depth(rows), tmp_path / "depth.png")
    assert (tmp_path / "depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["depth.png"]


def test_depth_csv_keeps_the_accuracies_whole():
    """depth.csv wrote the accuracies to four decimals (0.1444 of depth.json's
    0.14444444444444443), where history.csv and results.csv keep them whole: read back, they
    are the study's numbers."""
    import csv
    import io

    rows = [tm.DepthResult("exercise", 2, [16], 13 / 747, 26 / 180, 29 / 180, True, 2.14),
            tm.DepthResult("exercise", 3, [16, 16], np.float64(1 / 3), 2 / 9, None, False, 3.0)]
    read = list(csv.DictReader(io.StringIO(tm.depth_table_csv(rows))))
    assert [(float(r["train_acc"]), float(r["val_acc"])) for r in read] == \
        [(13 / 747, 26 / 180), (1 / 3, 2 / 9)]
    assert float(read[0]["test_acc"]) == 29 / 180 and read[1]["test_acc"] == ""
    assert [r["seconds"] for r in read] == ["2.1", "3.0"]


def test_depth_study_picks_the_best_by_validation_and_tests_that_network(rng, monkeypatch):
    """Per initialisation the network with the best validation accuracy, the shallower on a
    tie, is the one run on the test split, and the table's train / validation columns are the
    training and validation splits' own figures. Accuracy is replaced by a table of made-up
    figures per (layers, split) so that the choice does not hang on training noise."""
    from mlplab.torch_mlp import depth as depth_mod

    n_train, n_val, n_test = 30, 20, 10
    figures = {  # layers -> (train, validation, test)
        2: (0.70, 0.60, 0.50), 3: (0.90, 0.80, 0.55), 4: (0.95, 0.80, 0.45)}
    split = {n_train: 0, n_val: 1, n_test: 2}
    monkeypatch.setattr(depth_mod, "accuracy",
                        lambda model, X, y: figures[len(model.linears)][split[len(X)]])
    X = rng.randn(n_train + n_val + n_test, 5).astype(np.float32)
    y = rng.randint(3, size=len(X))
    rows = tm.depth_study(X[:n_train], y[:n_train], X[n_train:-n_test], y[n_train:-n_test],
                          X[-n_test:], y[-n_test:], depths=[2, 3, 4], hidden_size=4,
                          inits=["exercise", "default"], epochs=1, batch_size=10)
    for init in ("exercise", "default"):
        group = {r.depth: r for r in rows if r.init == init}
        assert [(d, r.train_acc, r.val_acc) for d, r in group.items()] == \
            [(d, f[0], f[1]) for d, f in figures.items()]
        assert [d for d, r in group.items() if r.best] == [3]
        assert {d: r.test_acc for d, r in group.items()} == {2: None, 3: 0.55, 4: None}
    lines = tm.depth_table_markdown(rows).splitlines()
    assert lines[3] == "| exercise | 3 | 4, 4 | 90.0 | **80.0** | **55.0** | " \
        f"{rows[1].seconds:.1f} |"
    assert lines[4].startswith("| exercise | 4 | 4, 4, 4 | 95.0 | 80.0 | — |")


def test_depth_study_counts_the_classes_of_both_splits(rng):
    """Without num_classes, the networks' outputs cover every class of the training and the
    validation labels: a class only the validation split holds is still a class."""
    X = rng.randn(40, 5).astype(np.float32)
    y_train, y_val = rng.randint(2, size=30), np.array([0, 1, 2, 2, 1, 0, 2, 1, 0, 2])
    rows = tm.depth_study(X[:30], y_train, X[30:], y_val, depths=[2], hidden_size=4,
                          epochs=1, batch_size=10)
    assert rows[0].val_acc <= 0.7  # the three 2s can never be right: the net never saw one


def test_a_depth_rows_json_gives_each_epochs_mean_loss():
    """depth.json's per-epoch curves: the mean of each epoch's own iterations."""
    from mlplab.trainer import History

    h = History(loss=[4.0, 2.0, 3.0, 1.0, 1.0, 0.0], train_acc=[0.1, 0.2, 0.3],
                val_acc=[0.15, 0.25, 0.35])
    row = tm.DepthResult("exercise", 2, [5], 0.3, 0.35, history=h).to_dict()
    assert row["epochs"] == {"train_acc": [0.1, 0.2, 0.3], "val_acc": [0.15, 0.25, 0.35],
                             "mean_loss": [3.0, 2.0, 0.5]}
    assert "history" not in row and row["test_acc"] is None


def test_depth_study_test_data_comes_in_pairs(digits):
    """X_test without y_test trained every network and then failed in the test evaluation;
    y_test without X_test was silently no test. Both are refused before any training."""
    Xtr, ytr, Xv, yv, Xte, yte = digits
    X, X_val, X_test = (tm.normalize_images(a[:100]) for a in (Xtr, Xv, Xte))
    trained = []
    for extra, given in (({"X_test": X_test}, "X_test"), ({"y_test": yte[:100]}, "y_test")):
        with pytest.raises(ValueError, match=f"{given} was given without"):
            tm.depth_study(X, ytr[:100], X_val, yv[:100], depths=[2], hidden_size=8, epochs=1,
                           on_result=trained.append, **extra)
    assert trained == []


def test_depth_figure_colours_the_initialisations_not_as_train_and_validation():
    """Every figure draws train blue and validation orange; the depth figure drew the exercise
    initialisation blue and the default orange, its train and validation told apart by dashes,
    so a blue solid line was the exercise's validation accuracy."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from mlplab import plots

    rows = [tm.DepthResult(init, d, [8] * (d - 1), 0.5, 0.4) for init in ("exercise", "default")
            for d in (2, 3)]
    fig = tm.plot_depth(rows)
    try:
        colours = {line.get_label(): to_hex(line.get_color()) for line in fig.axes[0].lines}
    finally:
        plt.close(fig)
    for init in ("exercise", "default"):
        for part in ("train", "validation"):
            assert colours[f"{init} init: {part}"] == plots.COLORS[f"{init}_init"], colours
    assert not {plots.COLORS["train"], plots.COLORS["val"]} & set(colours.values())


def test_depth_figure_tells_its_lines_apart_without_colour():
    """The initialisations differed in colour only (purple and brown, near alike in
    greyscale), and a study of one depth drew its train and validation accuracy as two points
    of one colour and marker, whose dashed and solid lines did not show: which was which could
    not be read. Each initialisation has its own marker; train's markers are hollow."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    rows = [tm.DepthResult(init, 2, [8], 0.5, 0.4, test_acc=0.45)
            for init in ("exercise", "default")]
    fig = tm.plot_depth(rows)
    try:
        looks = {line.get_label(): (line.get_marker(), to_hex(line.get_markerfacecolor()))
                 for line in fig.axes[0].lines if "test" not in line.get_label()}
        # the test stars (one marker for both) are named by their initialisation
        named = {(t.get_text(), t.xy) for t in fig.axes[0].texts}
    finally:
        plt.close(fig)
    assert named == {("exercise", (2, 45.0)), ("default", (2, 45.0))}
    assert len(set(looks.values())) == 4, looks
    assert looks["exercise init: train"][0] != looks["default init: train"][0]
    for init in ("exercise", "default"):
        assert looks[f"{init} init: train"][1] == "#ffffff"
        assert looks[f"{init} init: validation"][1] != "#ffffff"


def test_import_without_torch_says_how_to_install(tmp_path):
    # a stub that makes "import torch" fail, first on the path of a fresh interpreter
    (tmp_path / "torch.py").write_text("raise ImportError('No module named torch')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "try:\n    import mlplab.torch_mlp\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert "pip install 'mlplab[torch]'" in out.stdout, out.stderr


def test_depth_study_times_exclude_pytorchs_start_up():
    # a fresh process: the first torch.optim.Adam of a process loads modules lazily (about 2 s),
    # which the first network's seconds used to include (20x a digits network's training)
    code = """
import numpy as np
from mlplab.data import load_dataset
from mlplab.torch_mlp import depth_study
ds = load_dataset("digits")
X = (ds.X_train.reshape(len(ds.X_train), -1) / 255).astype(np.float32)
Xv = (ds.X_val.reshape(len(ds.X_val), -1) / 255).astype(np.float32)
r = depth_study(X, ds.y_train, Xv, ds.y_val, depths=(2, 2, 2), inits=("default",), epochs=10)
print(r[0].seconds, min(x.seconds for x in r[1:]))
"""
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    first, later = map(float, out.stdout.split())
    # the same network three times in one run: the first may not cost several times the others
    # (about 0.1 s each; the start-up alone was about 1.7 s)
    assert first < 3 * later + 0.2, (first, later)


@pytest.mark.parametrize("where", ["log", "terminal"])
def test_the_training_bar_shows_in_a_terminal_never_in_a_log(where, capsys, monkeypatch):
    """The PyTorch loop's bar was plain tqdm.auto, which wrote its frames into a log file or a
    pipe, where the NumPy trainer's bar writes nothing; now it is mlplab's progress bar."""
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    if where == "terminal":
        monkeypatch.setattr(sys, "stderr", Terminal())
    rs = np.random.RandomState(0)
    X, y = rs.randn(40, 6).astype(np.float32), rs.randint(0, 3, 40)
    tm.fit(tm.MultiLayerPerceptron(6, [5], 3), X, y, epochs=2, batch_size=20, progress=True)
    err = sys.stderr.getvalue() if where == "terminal" else capsys.readouterr().err
    if where == "log":
        assert "it/s" not in err and "4/4" not in err, err
    else:
        assert "4/4 [" in err, err


@pytest.mark.parametrize("text", ["cuda:01", "cuda:\u00b2", "cuda:\u0661", "cuda:-1", "cuda:"])
def test_a_gpu_index_pytorch_cannot_read_is_a_misspelt_device(text):
    """str.isdigit took "cuda:01" and "cuda:²", which PyTorch then refused with its own
    RuntimeError (exit 1) where a misspelt --device is a usage error naming the flag."""
    from mlplab.torch_mlp.device import parse_device

    with pytest.raises(ValueError, match="device must be cpu, cuda, cuda:N or auto"):
        parse_device(text)
    assert parse_device(" CUDA:10 ") == "cuda:10" and parse_device("cuda:0") == "cuda:0"
