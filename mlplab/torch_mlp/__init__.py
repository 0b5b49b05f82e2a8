"""The PyTorch multi-layer perceptron of the exercise's Question 4, and NumPy <-> PyTorch interop.

What the exercise asks, and where it lives here:

* :class:`MultiLayerPerceptron` — ``Linear -> ReLU`` for every hidden size, a final ``Linear`` to
  the classes, logits out, images flattened first (optionally batch norm and dropout, beyond).
* :func:`weights_init` — the exercise's "initial weights": every ``Linear`` weight drawn with
  ``normal_(0.0, 1e-3)`` and biases 0. ``Tensor.normal_(mean, std)`` takes a **standard deviation**,
  so the SPEC's "N(0, 1e-3)" means std 1e-3 (variance 1e-6), exactly as the 2020 exercise code did.
  ``init="default"`` keeps PyTorch's own (Kaiming-uniform) initialisation instead.
* :func:`fit` — the exercise's training: ``CrossEntropyLoss``, Adam (lr 1e-3, ``weight_decay`` =
  reg 1e-3), batches of 200 from a shuffled loader, 10 epochs, the learning rate multiplied by 0.95
  after every epoch (``ExponentialLR``), validation accuracy per epoch.
* :func:`normalize_images` — the exercise's ``ToTensor`` + ``Normalize(0.5, 0.5)`` on raw
  (N, H, W, C) uint8 images, without torchvision.
* :func:`depth_study` — one network per depth (2, 3, 4, 5 layers; "2 layers" is one hidden layer),
  with the test accuracy of the best-by-validation network only.
* :func:`from_numpy` / :func:`to_numpy` — the same weights as an :class:`mlplab.MLP`
  (``W`` is (D, H) there, ``Linear.weight`` is (H, D) here).

Importing this module needs PyTorch: ``pip install 'mlplab[torch]'``.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as exc:  # torch is an optional extra
    raise ImportError(
        "mlplab.torch_mlp needs PyTorch, which is not installed; install it with "
        "pip install 'mlplab[torch]' (for the CPU-only build run pip install torch==2.13.0 "
        "first)."
    ) from exc

from mlplab._validation import (
    check_int,
    check_positive,
    check_seed,
    check_X,
    check_y,
    is_int,
)
from mlplab.models import MLP
from mlplab.trainer import TRAIN_ACC_SUBSET, History, TrainingDivergedError

#: the exercise's defaults (SPEC §4)
HIDDEN = (50,)
EPOCHS = 10
BATCH_SIZE = 200
LR = 1e-3
REG = 1e-3
LR_DECAY = 0.95
INIT_STD = 1e-3
MEAN, STD = 0.5, 0.5

INITS = ("exercise", "default")
DEVICES = ("cpu", "cuda", "auto")

#: rows per chunk when evaluating, so memory stays bounded on large splits
EVAL_CHUNK = 8192


# ------------------------------------------------------------------------------------ the model
class MultiLayerPerceptron(nn.Module):
    """The exercise's network: ``Linear(in, h) -> ReLU`` for each ``h`` in ``hidden_layers``, then
    ``Linear(h_last, num_classes)``; :meth:`forward` flattens its input to (N, input_size) and
    returns logits (``CrossEntropyLoss`` applies the softmax).

    Beyond the exercise: ``batchnorm=True`` puts ``BatchNorm1d`` after each hidden ``Linear``
    (which then has no bias: the normalisation's mean subtraction cancels it, as in
    :class:`mlplab.MLP`), and ``dropout > 0`` adds ``Dropout`` after each hidden ReLU. Weights
    start with PyTorch's default initialisation; ``model.apply(weights_init)`` gives the
    exercise's (or use :func:`build_model`).
    """

    def __init__(self, input_size: int, hidden_layers: Sequence[int], num_classes: int,
                 dropout: float = 0.0, batchnorm: bool = False) -> None:
        super().__init__()
        if isinstance(hidden_layers, str) or not all(is_int(h) and h >= 1 for h in hidden_layers):
            raise ValueError(f"every hidden size must be a positive integer; got "
                             f"{hidden_layers!r}.")
        hidden = [int(h) for h in hidden_layers]
        check_int(input_size, "input_size")
        check_int(num_classes, "num_classes", minimum=2)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}.")
        self.config = {"input_size": int(input_size), "hidden_layers": hidden,
                       "num_classes": int(num_classes), "dropout": float(dropout),
                       "batchnorm": bool(batchnorm)}
        self.input_size, self.num_classes = int(input_size), int(num_classes)
        layers: list[nn.Module] = []
        sizes = [self.input_size, *hidden]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers.append(nn.Linear(fan_in, fan_out, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(fan_out))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], self.num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.reshape(x.shape[0], -1))

    @property
    def linears(self) -> list[nn.Linear]:
        """The ``Linear`` layers, input to output."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    @property
    def batchnorms(self) -> list[nn.BatchNorm1d]:
        return [m for m in self.layers if isinstance(m, nn.BatchNorm1d)]

    @property
    def depth(self) -> int:
        """Number of ``Linear`` layers: 2 for the exercise's default (one hidden layer)."""
        return len(self.config["hidden_layers"]) + 1


def weights_init(m: nn.Module, std: float = INIT_STD) -> None:
    """The exercise's initialisation, for ``model.apply(weights_init)``: every ``Linear`` weight
    ``normal_(0.0, std)`` (std 1e-3, i.e. variance 1e-6) and its bias 0."""
    if isinstance(m, nn.Linear):
        with torch.no_grad():
            m.weight.normal_(0.0, std)
            if m.bias is not None:
                m.bias.zero_()


def build_model(input_size: int, hidden_layers: Sequence[int] = HIDDEN, num_classes: int = 10, *,
                init: str = "exercise", std: float = INIT_STD, dropout: float = 0.0,
                batchnorm: bool = False, seed: int | None = 0,
                dtype: torch.dtype = torch.float32) -> MultiLayerPerceptron:
    """A :class:`MultiLayerPerceptron` with ``init="exercise"`` (N(0, std^2) weights, zero biases)
    or ``init="default"`` (PyTorch's). With a ``seed`` the draws are reproducible and PyTorch's
    global random state is left as it was."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}.")
    check_positive(std, "init std")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = MultiLayerPerceptron(input_size, hidden_layers, num_classes, dropout=dropout,
                                     batchnorm=batchnorm)
        if init == "exercise":
            model.apply(lambda m: weights_init(m, std))
    return model.to(dtype)


def hidden_for_depth(depth: int, hidden_size: int = HIDDEN[0]) -> list[int]:
    """Hidden sizes of a ``depth``-layer network: ``depth - 1`` hidden layers of ``hidden_size``
    ("2 layers" is the exercise's one-hidden-layer net, "5 layers" has four hidden layers)."""
    if int(depth) < 1:
        raise ValueError(f"depth counts Linear layers and must be >= 1 (2 = one hidden layer); "
                         f"got {depth!r}.")
    if int(hidden_size) < 1:
        raise ValueError(f"hidden size must be a positive integer; got {hidden_size!r}.")
    return [int(hidden_size)] * (int(depth) - 1)


def l2_penalty(model: MultiLayerPerceptron, reg: float) -> torch.Tensor:
    """mlplab's L2 term ``reg * sum ||W||_F^2`` over the ``Linear`` weights (no 0.5, biases not
    penalised), for comparing with :meth:`mlplab.MLP.loss`. Note that Adam's ``weight_decay`` in
    :func:`fit` is not this: it adds ``weight_decay * p`` to the gradient of every parameter,
    biases included, as the exercise's code does."""
    return reg * sum((lin.weight ** 2).sum() for lin in model.linears)


# ------------------------------------------------------------------------------ device, threads
def select_device(choice: str = "cpu", *, cuda_available: bool | None = None,
                  cuda_count: int | None = None) -> torch.device:
    """``cpu`` (the default), ``cuda`` / ``cuda:N`` (an error when PyTorch sees no such GPU) or
    ``auto`` (the first GPU when there is one, else the CPU). ``cuda_available`` and ``cuda_count``
    override what PyTorch reports (for tests)."""
    text = parse_device(choice)
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if cuda_count is None:
        cuda_count = torch.cuda.device_count() if cuda_available else 0
    if text == "cpu":
        return torch.device("cpu")
    if text == "auto":
        return torch.device("cuda" if cuda_available else "cpu")
    if not cuda_available:
        raise ValueError(
            f"--device {text} was asked for but PyTorch sees no CUDA GPU "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False); use "
            "--device cpu, or --device auto to take a GPU only when there is one.")
    if text != "cuda" and int(text.split(":", 1)[1]) >= max(cuda_count, 1):
        raise ValueError(f"--device {text}: no such GPU; PyTorch sees {cuda_count} "
                         f"(cuda:0 .. cuda:{max(cuda_count - 1, 0)}).")
    return torch.device(text)


def parse_device(choice: str) -> str:
    """``choice`` normalised (``" CUDA:1"`` -> ``"cuda:1"``), or a ``ValueError`` when it is not
    ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. Only the spelling is checked, not whether this
    machine has the GPU (:func:`select_device` does that), so that a misspelt device is told
    apart from a missing one: the first is a usage error, the second a fact about the machine."""
    text = str(choice).strip().lower()
    if text in ("cpu", "cuda", "auto") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise ValueError(f"device must be cpu, cuda, cuda:N or auto; got {choice!r}.")


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op CPU threads to ``threads`` (``None``: every available core) and
    return the number set."""
    n = available_cpus() if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"threads must be a positive integer; got {threads!r}.")
    torch.set_num_threads(n)
    return n


# ---------------------------------------------------------------------------------------- inputs
def input_pipeline(mean: float | Sequence[float] = MEAN, std: float | Sequence[float] = STD,
                   max_value: float = 255.0):
    """The exercise's ``ToTensor`` + ``Normalize(mean, std)`` as an :mod:`mlplab.data.transforms`
    pipeline (scale by ``1 / max_value``, per-channel ``(x - mean) / std``, flatten to float32), so
    that it can be saved with a model like any other mlplab preprocessing."""
    from mlplab.data.transforms import Flatten, Normalize, Pipeline, Scale

    return Pipeline([Scale(max_value), Normalize(mean, std), Flatten()])


def normalize_images(images: np.ndarray, mean: float | Sequence[float] = MEAN,
                     std: float | Sequence[float] = STD) -> np.ndarray:
    """The exercise's input pipeline without torchvision: raw images (N, H, W, C) — uint8 in
    0..255, or floats already in [0, 1] — scaled to [0, 1], then ``(x - mean[c]) / std[c]`` per
    channel, flattened to float32 (N, H*W*C).

    The flattening keeps mlplab's (H, W, C) order (torchvision's tensors are (C, H, W)); for a
    fully-connected net this only permutes the inputs, and it keeps the features aligned with the
    rest of mlplab so that :func:`from_numpy` / :func:`to_numpy` weights line up.
    """
    X = np.asarray(images)
    if X.ndim == 3:  # (N, H, W) greyscale
        X = X[..., None]
    if X.ndim != 4:
        raise ValueError(f"images must be an array (N, H, W, C) (or (N, H, W)); got shape "
                         f"{X.shape}.")
    if X.dtype == np.uint8:
        max_value = 255.0
    elif X.dtype.kind == "f":
        max_value = 1.0
        if X.size and (not np.isfinite(X).all() or X.min() < 0 or X.max() > 1):
            raise ValueError("float images must already be scaled to [0, 1] (or pass raw uint8 "
                             "0..255 images); got values outside that range.")
    else:
        raise ValueError(f"images must be uint8 (0..255) or float in [0, 1]; got dtype "
                         f"{X.dtype}.")
    channels = X.shape[-1]
    for name, value in (("mean", mean), ("std", std)):
        n = np.atleast_1d(np.asarray(value)).size
        if n not in (1, channels):
            raise ValueError(f"{name} needs one value or one per channel ({channels}); got "
                             f"{value!r}.")
    return input_pipeline(mean, std, max_value).fit_transform(X)


# -------------------------------------------------------------------------------------- training
@dataclass
class TorchTrainConfig:
    """The exercise's training knobs (JSON-serialisable)."""

    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    lr: float = LR
    reg: float = REG  # Adam's weight_decay, as in the exercise
    lr_decay: float = LR_DECAY  # ExponentialLR gamma, stepped after every epoch
    seed: int | None = 0
    device: str = "cpu"
    threads: int | None = None  # None: leave torch's setting alone
    progress: bool = False
    verbose: bool = False

    def validate(self) -> None:
        check_int(self.epochs, "epochs")
        check_int(self.batch_size, "batch_size")
        check_seed(self.seed)
        check_positive(self.lr, "lr")
        check_positive(self.reg, "reg (weight decay)", allow_zero=True)
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1]; got {self.lr_decay!r}.")
        if self.threads is not None and int(self.threads) < 1:
            raise ValueError(f"threads must be a positive integer; got {self.threads!r}.")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TorchTrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}.")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _param_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def _as_tensor(X: np.ndarray | torch.Tensor, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=dtype)
    return torch.from_numpy(np.ascontiguousarray(X)).to(device=device, dtype=dtype)


def _check_inputs(model: MultiLayerPerceptron, X, y, name: str = "X"):
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim > 2:  # images: flattened like the model's forward does
        X = X.reshape(len(X), -1)
    numpy_dtype = torch.empty(0, dtype=_param_dtype(model)).numpy().dtype
    X = check_X(X, model.input_size, name, numpy_dtype)
    if y is not None:
        y = check_y(np.asarray(y), X.shape[0], model.num_classes,
                    "y" if name == "X" else f"y{name[1:]}")
    return X, y


def check_batchnorm_batches(batch_size: int, n: int | None = None) -> None:
    """Refuse settings under which batch norm would train on a batch of one row: ``BatchNorm1d``
    normalises a batch by its own mean and variance, which a single row does not have (PyTorch
    raises "Expected more than 1 value per channel" partway through an epoch). ``n``, the number
    of training rows, is checked when given. A last batch of one row is no problem: :func:`fit`
    merges it into the batch before it (:class:`ShuffledBatches`)."""
    if int(batch_size) < 2:
        raise ValueError(f"batch_size must be at least 2 with batch norm, which normalises each "
                         f"batch by its own mean and variance; got {batch_size}.")
    if n is not None and int(n) < 2:
        raise ValueError(f"batch norm needs at least 2 training rows, since it normalises each "
                         f"batch by its own mean and variance; the training set has {n}.")


def batches_per_epoch(n: int, batch_size: int, merge_single: bool = False) -> int:
    """Batches :class:`ShuffledBatches` yields per epoch: ``ceil(n / batch_size)``, one fewer
    when ``merge_single`` folds a last batch of one row into the batch before it."""
    full, rest = divmod(int(n), int(batch_size))
    if merge_single and rest == 1 and full > 0:
        return full
    return full + (rest > 0)


class ShuffledBatches(torch.utils.data.Sampler):
    """Index batches of a fresh random permutation every epoch: ``torch.randperm(n, generator)``
    split into chunks of ``batch_size`` (the last one shorter, as a ``DataLoader`` with
    ``shuffle=True`` gives). Handing the loader whole index batches lets a ``TensorDataset``
    gather each batch with one indexing operation instead of ``batch_size`` ``__getitem__``
    calls and a collate.

    ``merge_single=True`` (what :func:`fit` uses for a model with batch norm) appends a last
    batch of one row (``n % batch_size == 1``) to the batch before it, which then has
    ``batch_size + 1`` rows: batch norm cannot train on one row. Merging rather than dropping it
    (``DataLoader``'s ``drop_last``) keeps every training row in every epoch; the permutation
    drawn is the same either way."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator | None,
                 merge_single: bool = False) -> None:
        self.n, self.batch_size, self.generator = int(n), int(batch_size), generator
        self.merge_single = bool(merge_single)

    def __iter__(self):
        batches = list(torch.randperm(self.n, generator=self.generator).split(self.batch_size))
        if self.merge_single and len(batches) > 1 and len(batches[-1]) == 1:
            batches[-2:] = [torch.cat(batches[-2:])]
        return iter(batches)

    def __len__(self) -> int:
        return batches_per_epoch(self.n, self.batch_size, self.merge_single)


def fit(model: MultiLayerPerceptron, X: np.ndarray, y: np.ndarray,
        X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
        config: TorchTrainConfig | None = None, *,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        **overrides: Any) -> History:
    """Train ``model`` the exercise's way and return an :class:`mlplab.trainer.History` (loss per
    iteration; train accuracy, validation accuracy, learning rate and seconds per epoch).

    ``X`` is (N, D) (or images) already normalised, e.g. by :func:`normalize_images`. Every
    epoch walks a shuffled loader over tensors (:class:`ShuffledBatches`); after it the learning
    rate is multiplied by ``lr_decay``, and train accuracy (on the same fixed subset of up to 5,000
    training rows as :class:`mlplab.trainer.Trainer`) and validation accuracy are measured in
    evaluation mode. With batch norm, a last batch of one row is merged into the batch before it
    (see :class:`ShuffledBatches`) and ``batch_size`` 1 is refused. ``on_epoch_end(epoch, logs)``
    gets ``epoch, iteration, loss, train_acc, val_acc, lr, seconds``. Ctrl-C ends training
    cleanly after the current batch (``history.interrupted``). With a seed, runs are reproducible
    and PyTorch's global random state is left as it was.
    """
    base = config.to_dict() if config is not None else {}
    cfg = TorchTrainConfig.from_dict({**base, **overrides})
    cfg.validate()
    X, y = _check_inputs(model, X, y)
    if not len(X):
        raise ValueError("cannot train on an empty training set (X has 0 rows).")
    batchnorm = bool(model.batchnorms)
    if batchnorm:
        check_batchnorm_batches(cfg.batch_size, len(X))
    has_val = X_val is not None and len(X_val)
    if has_val:
        X_val, y_val = _check_inputs(model, X_val, y_val, "X_val")
    if cfg.threads is not None:
        set_threads(cfg.threads)
    device = select_device(cfg.device)
    dtype = _param_dtype(model)
    model.to(device)

    Xt, yt = _as_tensor(X, dtype, device), torch.from_numpy(y.astype(np.int64)).to(device)
    n = len(Xt)
    pick = np.sort(np.random.RandomState(0).choice(n, min(n, TRAIN_ACC_SUBSET), replace=False))
    subset = (X[pick], y[pick])

    dataset = torch.utils.data.TensorDataset(Xt, yt)
    generator = torch.Generator()
    if cfg.seed is not None:
        generator.manual_seed(cfg.seed)
    else:
        generator.seed()
    # with batch norm a last batch of one row would make BatchNorm1d fail mid-epoch: merged
    sampler = ShuffledBatches(n, int(cfg.batch_size), generator, merge_single=batchnorm)
    loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None)

    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.reg)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    history = History()
    total = cfg.epochs * len(loader)
    bar = _progress(total, cfg.progress)
    iteration = 0
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        if cfg.seed is not None:  # dropout masks
            torch.manual_seed(cfg.seed)
        try:
            for epoch in range(1, cfg.epochs + 1):
                start = time.perf_counter()
                model.train()
                losses = []
                lr = optimizer.param_groups[0]["lr"]
                for xb, yb in loader:
                    loss = criterion(model(xb), yb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    # kept on the device: one synchronisation per epoch, not per batch
                    losses.append(loss.detach())
                    iteration += 1
                    if bar is not None:
                        bar.update(1)
                scheduler.step()
                epoch_loss = torch.stack(losses).double().cpu().numpy()
                bad = np.flatnonzero(~np.isfinite(epoch_loss))
                if bad.size:
                    it = iteration - len(epoch_loss) + int(bad[0]) + 1
                    raise TrainingDivergedError(
                        f"the loss became {epoch_loss[bad[0]]} at iteration {it} (epoch "
                        f"{epoch}) with learning rate {lr:.3g}; try a lower learning rate "
                        "(e.g. --lr divided by 10).")
                history.loss.extend(float(v) for v in epoch_loss)
                train_acc = accuracy(model, *subset)
                val_acc = accuracy(model, X_val, y_val) if has_val else float("nan")
                seconds = time.perf_counter() - start
                history.train_acc.append(train_acc)
                history.val_acc.append(val_acc)
                history.lr.append(lr)
                history.epoch_seconds.append(seconds)
                if has_val and val_acc > history.best_val_acc:
                    history.best_val_acc, history.best_epoch = val_acc, epoch
                logs = {"epoch": epoch, "iteration": iteration,
                        "loss": history.loss[-1], "train_acc": train_acc, "val_acc": val_acc,
                        "lr": lr, "seconds": seconds}
                if bar is not None:
                    bar.set_postfix(loss=f"{logs['loss']:.3f}", train=f"{train_acc:.3f}",
                                    val=f"{val_acc:.3f}")
                if cfg.verbose:
                    print(f"epoch {epoch}/{cfg.epochs}: loss {logs['loss']:.4f}, train acc "
                          f"{train_acc:.3f}, val acc {val_acc:.3f}, lr {lr:.3g}, "
                          f"{seconds:.1f}s", flush=True)
                if on_epoch_end is not None:
                    on_epoch_end(epoch, logs)
        except KeyboardInterrupt:
            history.interrupted = True
        finally:
            if bar is not None:
                bar.close()
    model.eval()
    return history


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="it", dynamic_ncols=True, leave=False, mininterval=0.5)


@torch.no_grad()
def predict_logits(model: MultiLayerPerceptron, X: np.ndarray | torch.Tensor) -> np.ndarray:
    """Logits (N, K) in evaluation mode, computed in chunks on the model's device."""
    if not isinstance(X, torch.Tensor):
        X, _ = _check_inputs(model, X, None)  # a wrong width is a clear error, not a matmul's
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        out = []
        for start in range(0, len(X), EVAL_CHUNK):
            xb = _as_tensor(X[start:start + EVAL_CHUNK], param.dtype, param.device)
            out.append(model(xb).cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        return np.empty((0, model.num_classes), dtype=np.float32)
    return np.concatenate(out)


def predict(model: MultiLayerPerceptron, X: np.ndarray | torch.Tensor) -> np.ndarray:
    """Most probable class for each row (evaluation mode)."""
    return predict_logits(model, X).argmax(axis=1) if len(X) else np.empty(0, dtype=np.intp)


def accuracy(model: MultiLayerPerceptron, X: np.ndarray | torch.Tensor,
             y: np.ndarray | torch.Tensor) -> float:
    """Fraction of rows classified correctly (evaluation mode)."""
    if not len(X):
        return float("nan")
    if isinstance(y, torch.Tensor):
        y = y.cpu().numpy()
    y = check_y(np.asarray(y), len(X), model.num_classes)  # predict checks X
    return float(np.mean(predict(model, X) == y))


# ----------------------------------------------------------------------------------- depth study
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


def depth_study(X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
                X_test: np.ndarray | None = None, y_test: np.ndarray | None = None, *,
                depths: Sequence[int] = (2, 3, 4, 5), hidden_size: int = HIDDEN[0],
                inits: Sequence[str] = ("exercise",), std: float = INIT_STD,
                dropout: float = 0.0, batchnorm: bool = False,
                config: TorchTrainConfig | None = None, num_classes: int | None = None,
                on_result: Callable[[DepthResult], None] | None = None,
                **overrides: Any) -> list[DepthResult]:
    """The exercise's Question 4 experiment: for each initialisation and each depth, build a
    network of ``depth - 1`` hidden layers of ``hidden_size`` (every network from the same seed),
    train it with :func:`fit`, and record its final train accuracy (the whole training split) and
    validation accuracy. Then, per initialisation, only the network with the best validation
    accuracy (ties: the shallower) is run on the test split. ``on_result`` is called as each
    network finishes."""
    if not depths:
        raise ValueError("depths must list at least one depth, e.g. 2,3,4,5.")
    for init in inits:
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}.")
    base = config.to_dict() if config is not None else {}
    cfg = TorchTrainConfig.from_dict({**base, **overrides})
    if X_val is None or not len(X_val):
        raise ValueError("a depth study picks the best network by validation accuracy, so it "
                         "needs a non-empty validation split.")
    X = np.asarray(X).reshape(len(X), -1)
    k = int(num_classes) if num_classes is not None else int(max(np.max(y), np.max(y_val))) + 1
    results: list[DepthResult] = []
    for init in inits:
        group: list[tuple[DepthResult, MultiLayerPerceptron]] = []
        for depth in depths:
            hidden = hidden_for_depth(depth, hidden_size)
            model = build_model(X.shape[1], hidden, k, init=init, std=std, dropout=dropout,
                                batchnorm=batchnorm, seed=cfg.seed)
            start = time.perf_counter()
            history = fit(model, X, y, X_val, y_val, cfg)
            if history.interrupted:  # Ctrl-C: a half-trained net must not enter the table
                raise KeyboardInterrupt
            result = DepthResult(init=init, depth=int(depth), hidden=hidden,
                                 train_acc=accuracy(model, X, y),
                                 val_acc=accuracy(model, X_val, y_val),
                                 seconds=time.perf_counter() - start, history=history)
            group.append((result, model))  # the model is kept for the test evaluation below
            if on_result is not None:
                on_result(result)
        best, best_model = max(group, key=lambda rm: (rm[0].val_acc, -rm[0].depth))
        best.best = True
        if X_test is not None and len(X_test):
            best.test_acc = accuracy(best_model, X_test, y_test)
        results.extend(r for r, _ in group)
    return results


DEPTH_COLUMNS = ("init", "depth", "hidden", "train_acc", "val_acc", "test_acc", "seconds")


def depth_table_csv(results: Sequence[DepthResult]) -> str:
    """The depth table as CSV (accuracies as fractions; ``test_acc`` empty except for the best)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(DEPTH_COLUMNS)
    for r in results:
        w.writerow([r.init, r.depth, "-".join(map(str, r.hidden)) or "none",
                    f"{r.train_acc:.4f}", f"{r.val_acc:.4f}",
                    "" if r.test_acc is None else f"{r.test_acc:.4f}", f"{r.seconds:.1f}"])
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
                     f"{100 * r.train_acc:.1f} | {val} | {test} | {r.seconds:.0f} |")
    return "\n".join(lines) + "\n"


def plot_depth(results: Sequence[DepthResult]):
    """Train (dashed) and validation (solid) accuracy against depth, one colour per
    initialisation, the test accuracy of each best network as a star. Returns a Matplotlib
    figure; :func:`mlplab.plots.save` writes it atomically."""
    from mlplab import plots  # sets the Agg backend

    plt = plots.plt
    fig, ax = plt.subplots(figsize=plots.FIGSIZE)
    colours = {"exercise": plots.COLORS["train"], "default": plots.COLORS["val"]}
    for init in dict.fromkeys(r.init for r in results):
        rows = sorted((r for r in results if r.init == init), key=lambda r: r.depth)
        depths = [r.depth for r in rows]
        c = colours.get(init)
        ax.plot(depths, [100 * r.train_acc for r in rows], "o--", color=c,
                label=f"{init} init: train")
        ax.plot(depths, [100 * r.val_acc for r in rows], "o-", color=c,
                label=f"{init} init: validation")
        for r in rows:
            if r.test_acc is not None:
                ax.plot([r.depth], [100 * r.test_acc], "*", color=c, markersize=14,
                        markeredgecolor="black", label=f"{init} init: test (best by val)")
    ax.set_xlabel("layers (Linear layers; 2 = one hidden layer)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("PyTorch MLP: accuracy against depth")
    ax.set_xticks(sorted({r.depth for r in results}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ model files
TORCH_MODEL_FORMAT = "mlplab-torch-model"


def save_torch_model(path: str | os.PathLike, model: MultiLayerPerceptron,
                     extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` (its ``config`` and ``state_dict``, on the CPU) to ``path`` atomically; the
    file holds only tensors and plain Python values, so :func:`load_torch_model` reads it with
    ``torch.load(weights_only=True)``."""
    from mlplab.io import atomic_path

    payload = {"format": TORCH_MODEL_FORMAT, "version": 1, "config": dict(model.config),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "extra": dict(extra or {})}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_torch_model(path: str | os.PathLike) -> tuple[MultiLayerPerceptron, dict[str, Any]]:
    """``(model, extra)`` from a file written by :func:`save_torch_model` (loaded with
    ``weights_only=True``: no code in the file can run), in evaluation mode on the CPU."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such model file.") from None
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path} is not a readable PyTorch model file ({exc}).") from None
    if not isinstance(payload, dict) or payload.get("format") != TORCH_MODEL_FORMAT:
        raise ValueError(f"{path} is not an mlplab PyTorch model file (written by "
                         "mlplab torch train / save_torch_model).")
    config, state = payload.get("config") or {}, payload.get("state_dict") or {}
    try:
        # the weights' own dtype first, so float64 weights are not rounded through float32
        dtype = next(v.dtype for v in state.values() if v.is_floating_point())
        model = MultiLayerPerceptron(**config).to(dtype)
        model.load_state_dict(state)
    except (TypeError, KeyError, RuntimeError, StopIteration, AttributeError) as exc:
        raise ValueError(f"{path}: the stored weights do not match the stored config "
                         f"({exc}).") from None
    return model.eval(), dict(payload.get("extra") or {})


# ------------------------------------------------------------------------------------- interop
def from_numpy(mlp: MLP) -> MultiLayerPerceptron:
    """A :class:`MultiLayerPerceptron` holding the weights of ``mlp`` (copies), in its dtype.

    ``mlp`` must use ReLU (the exercise's torch net does). ``Linear.weight`` is ``W.T``: mlplab
    computes ``X @ W`` with ``W`` (D, H), PyTorch ``x @ weight.T`` with ``weight`` (H, D). Batch
    norm's ``gamma/beta`` and running statistics map to ``weight/bias/running_mean/running_var``
    (both default to eps 1e-5 and keep 0.9 of the running statistic per step; PyTorch updates
    ``running_var`` with the unbiased batch variance, mlplab with the biased one)."""
    if not isinstance(mlp, MLP):
        raise TypeError(f"from_numpy needs an mlplab.MLP; got {type(mlp).__name__}.")
    c = mlp.config
    if c["activation"] != "relu":
        raise ValueError(f"the PyTorch MultiLayerPerceptron uses ReLU, but this MLP uses "
                         f"{c['activation']!r}; only ReLU networks can be converted.")
    dtype = torch.float64 if mlp.dtype == np.float64 else torch.float32
    model = MultiLayerPerceptron(c["input_size"], c["hidden_sizes"], c["num_classes"],
                                 dropout=c["dropout"], batchnorm=c["batchnorm"]).to(dtype)
    state = mlp.state_dict()
    with torch.no_grad():
        for i, lin in enumerate(model.linears, start=1):
            lin.weight.copy_(torch.from_numpy(state[f"W{i}"].T.copy()))
            if lin.bias is not None:
                lin.bias.copy_(torch.from_numpy(state[f"b{i}"]))
        for i, bn in enumerate(model.batchnorms, start=1):
            bn.weight.copy_(torch.from_numpy(state[f"gamma{i}"]))
            bn.bias.copy_(torch.from_numpy(state[f"beta{i}"]))
            bn.running_mean.copy_(torch.from_numpy(state[f"running_mean{i}"]))
            bn.running_var.copy_(torch.from_numpy(state[f"running_var{i}"]))
    model.eval()
    return model


def to_numpy(module: MultiLayerPerceptron) -> MLP:
    """An :class:`mlplab.MLP` (ReLU) holding the weights of ``module`` (copies): ``W = weight.T``.
    float64 modules give float64 MLPs, anything else float32."""
    if not isinstance(module, MultiLayerPerceptron):
        raise TypeError(f"to_numpy needs an mlplab.torch_mlp.MultiLayerPerceptron; got "
                        f"{type(module).__name__}.")
    c = module.config
    dtype = np.float64 if _param_dtype(module) == torch.float64 else np.float32
    mlp = MLP(c["input_size"], c["hidden_layers"], c["num_classes"], activation="relu",
              init="normal", std=INIT_STD, dropout=c["dropout"], batchnorm=c["batchnorm"],
              seed=0, dtype=dtype)

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(dtype)

    state: dict[str, np.ndarray] = {}
    for i, lin in enumerate(module.linears, start=1):
        state[f"W{i}"] = arr(lin.weight).T.copy()
        if lin.bias is not None:
            state[f"b{i}"] = arr(lin.bias)
    for i, bn in enumerate(module.batchnorms, start=1):
        state[f"gamma{i}"], state[f"beta{i}"] = arr(bn.weight), arr(bn.bias)
        state[f"running_mean{i}"] = arr(bn.running_mean)
        state[f"running_var{i}"] = arr(bn.running_var)
    mlp.load_state_dict(state)
    return mlp
