"""The exercise's training: :class:`TorchTrainConfig` (its knobs, with the SPEC's defaults), the
shuffled batches of an epoch (:class:`ShuffledBatches`, with the batch-norm rules on batch sizes)
and :func:`fit`, the loop itself (``CrossEntropyLoss``, Adam, ``ExponentialLR``, accuracy per
epoch, a diverged loss and Ctrl-C). It is where the model, its inputs, the device and prediction
meet, so it sits above those modules and they know nothing of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlplab import interrupts
from mlplab._progress import training_bar
from mlplab._text import duration, percent
from mlplab._validation import (
    check_fields,
    check_int,
    check_pair,
    check_positive,
    check_seed,
    is_int,
    is_number,
    setting,
)
from mlplab.torch_mlp.data import as_tensor, check_inputs
from mlplab.torch_mlp.device import (
    MAX_THREADS,
    select_device,
    set_threads,
    subnormals_flushed,
    threads_kept,
)
from mlplab.torch_mlp.model import MultiLayerPerceptron, param_dtype
from mlplab.torch_mlp.predict import accuracy
from mlplab.trainer import TRAIN_ACC_SUBSET, History, TrainingDivergedError

#: the exercise's defaults (SPEC §4)
EPOCHS = 10
BATCH_SIZE = 200
LR = 1e-3
REG = 1e-3
LR_DECAY = 0.95


#: the largest float32: PyTorch's optimisers take the learning rate and weight decay as one
FLOAT32_MAX = 3.4028234663852886e38
#: the largest learning rate Adam's first step (lr / (1 - beta1), beta1 = 0.9) keeps in float32
LR_MAX = FLOAT32_MAX * (1 - 0.9)


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
        # PyTorch's Adam step makes float32 scalars of reg and of lr / (1 - beta1 ** t), 10 lr
        # at its first step: beyond float32 "value cannot be converted to type float without
        # overflow", after the run's folder was made
        for name, value, most, stepped in (("lr", self.lr, LR_MAX, "10 times lr"),
                                           ("reg (weight decay)", self.reg, FLOAT32_MAX, "reg")):
            if value > most:
                raise ValueError(f"{name} must be at most {most:.4g} (Adam's first step is "
                                 f"{stepped} in float32, whose largest number is "
                                 f"{FLOAT32_MAX:.4g}); got {value!r}.")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1]; got {self.lr_decay!r}.")
        if self.threads is not None and (not is_int(self.threads)
                                         or not 1 <= self.threads <= MAX_THREADS):
            # as set_threads checks it, so that the command line refuses --threads 100000 as
            # a usage error (exit 2) under its flag, with the other settings
            raise ValueError(f"threads must be a positive integer of at most {MAX_THREADS}; "
                             f"got {self.threads!r}.")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TorchTrainConfig:
        check_fields(cls, d, "training options")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    def __iter__(self) -> Iterator[torch.Tensor]:
        batches = list(torch.randperm(self.n, generator=self.generator).split(self.batch_size))
        if self.merge_single and len(batches) > 1 and len(batches[-1]) == 1:
            batches[-2:] = [torch.cat(batches[-2:])]
        return iter(batches)

    def __len__(self) -> int:
        return batches_per_epoch(self.n, self.batch_size, self.merge_single)


@threads_kept()
@subnormals_flushed()  # its docstring: 10x on Intel CPUs for the exercise's dead deep nets
def fit(model: MultiLayerPerceptron, X: np.ndarray, y: np.ndarray,
        X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
        config: TorchTrainConfig | None = None, *,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        resume: dict[str, Any] | None = None, **overrides: Any) -> History:
    """Train ``model`` the exercise's way and return an :class:`mlplab.trainer.History` (loss per
    iteration; train accuracy, validation accuracy, learning rate and seconds per epoch).

    ``X`` is (N, D) (or images) already normalised, e.g. by
    :func:`~mlplab.torch_mlp.data.normalize_images`. Every epoch walks a shuffled loader over
    tensors (:class:`ShuffledBatches`); after it the learning rate is multiplied by ``lr_decay``,
    and train accuracy (on the same fixed subset of up to 5,000 training rows as
    :class:`mlplab.trainer.Trainer`) and validation accuracy are measured in evaluation mode. With
    batch norm, a last batch of one row is merged into the batch before it (see
    :class:`ShuffledBatches`) and ``batch_size`` 1 is refused. ``on_epoch_end(epoch, logs)`` gets
    ``epoch, iteration, loss, train_acc, val_acc, lr, seconds``. Ctrl-C ends training cleanly after
    the current batch (``history.interrupted``). With a seed, runs are reproducible and PyTorch's
    global random state is left as it was. Subnormal floats are flushed to zero while it runs
    (:func:`~mlplab.torch_mlp.device.subnormals_flushed`), and the thread count and that setting
    are the caller's again afterwards.

    ``on_checkpoint(state)`` gets, after every epoch, everything needed to go on from there: the
    model's, Adam's and the scheduler's state dicts, the shuffling and dropout generators'
    states and the history so far (tensors and plain values, for ``torch.save``; save it before
    returning, training then changes the tensors). ``resume=state`` continues from such a state
    with the same model and settings, to the same end as a run never stopped (bit for bit on
    the same device and thread count): the epochs done are not trained again. A state it
    cannot go on from (another network, batch size or training set; a damaged one) is a
    :class:`TrainingStateError`, a ``ValueError``, raised before anything trains.
    """
    base = config.to_dict() if config is not None else {}
    cfg = TorchTrainConfig.from_dict({**base, **overrides})
    cfg.validate()
    X, y, X_val, y_val = _checked_data(model, cfg, X, y, X_val, y_val)
    val = (X_val, y_val) if X_val is not None and y_val is not None and len(X_val) else None
    has_val = val is not None
    if cfg.threads is not None:
        set_threads(cfg.threads)
    device = select_device(cfg.device)
    dtype = param_dtype(model)
    model.to(device)

    Xt, yt = as_tensor(X, dtype, device), torch.from_numpy(y.astype(np.int64)).to(device)
    subset = _train_acc_subset(X, y)
    # with batch norm a last batch of one row would make BatchNorm1d fail mid-epoch: merged
    loader, generator = _shuffled_loader(Xt, yt, cfg, merge_single=bool(model.batchnorms))

    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.reg)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    history, done, iteration = History(), 0, 0
    if resume is not None:
        history, done, iteration = _restore(resume, model, optimizer, scheduler, generator,
                                            cfg.epochs, len(loader))
    total = cfg.epochs * len(loader)
    bar = training_bar(total, cfg.progress, initial=min(iteration, total))
    # "cuda" is the current GPU, not always GPU 0 (torch.cuda.set_device): the one to seed
    fork = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        if resume is not None:  # the dropout masks go on where they stopped
            _set_rng_states(resume, device)
        elif cfg.seed is not None:  # dropout masks: the generators this run uses (and the fork
            # puts back), not torch.manual_seed's every GPU
            torch.default_generator.manual_seed(cfg.seed)
            if device.type == "cuda":
                with torch.cuda.device(fork[0]):
                    torch.cuda.manual_seed(cfg.seed)
        stop = interrupts.StopRequest()  # the first Ctrl-C: stop after the current batch
        try:
            with interrupts.stop_after_step(stop):
                for epoch in range(done + 1, cfg.epochs + 1):
                    start = time.perf_counter()
                    lr = optimizer.param_groups[0]["lr"]
                    epoch_loss = _train_epoch(model, loader, criterion, optimizer, bar, stop)
                    iteration += len(epoch_loss)
                    _refuse_diverged(epoch_loss, iteration, epoch, lr)
                    history.loss.extend(float(v) for v in epoch_loss)
                    if stop.asked and len(epoch_loss) < len(loader):
                        # stopped mid-epoch: the network saved is this one, so its steps
                        # count, but the epoch did not end (a resume starts it again from the
                        # last checkpoint)
                        raise _StopAsked
                    scheduler.step()
                    train_acc = accuracy(model, *subset)
                    val_acc = accuracy(model, *val) if val is not None else float("nan")
                    logs = {"epoch": epoch, "iteration": iteration,
                            "loss": history.loss[-1], "train_acc": train_acc,
                            "val_acc": val_acc, "lr": lr,
                            "seconds": time.perf_counter() - start}
                    _record_epoch(history, logs, has_val)
                    if on_checkpoint is not None:
                        on_checkpoint(_training_state(epoch, iteration, model, optimizer,
                                                      scheduler, generator, device, history))
                    _report_epoch(logs, cfg, bar, on_epoch_end)
                    if stop.asked:  # asked during the epoch's evaluation or checkpoint
                        raise _StopAsked
        except _StopAsked:
            history.interrupted = True
        except KeyboardInterrupt:
            if stop.asked:  # a second Ctrl-C: out now, unsaved (mid-step, perhaps), as Trainer
                raise
            history.interrupted = True  # one raised by a callback: a stop at the epoch's end
        finally:
            if bar is not None:
                bar.close()
    model.eval()
    return history


def _checked_data(model: MultiLayerPerceptron, cfg: TorchTrainConfig, X: np.ndarray,
                  y: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The training and validation arrays as the model takes them, refused (in this order) when
    the training set is unusable or empty, only one of ``X_val``/``y_val`` is given, batch norm
    cannot train on the batches, or the validation set is unusable."""
    X, y = check_inputs(model, X, y)
    if not len(X):
        raise ValueError("cannot train on an empty training set (X has 0 rows).")
    # X_val alone failed after the first epoch ("y must be a 1-D array ... got shape ()"),
    # y_val alone was no validation at all, silently
    check_pair(X_val, y_val, ("X_val", "y_val"), "to validate")
    if model.batchnorms:
        check_batchnorm_batches(cfg.batch_size, len(X))
    if X_val is not None and len(X_val):
        X_val, y_val = check_inputs(model, X_val, y_val, "X_val")
    return X, y, X_val, y_val


def _train_acc_subset(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed training rows train accuracy is measured on: the same as
    :class:`mlplab.trainer.Trainer` picks."""
    n = len(X)
    pick = np.sort(np.random.RandomState(0).choice(n, min(n, TRAIN_ACC_SUBSET), replace=False))
    return X[pick], y[pick]


def _shuffled_loader(Xt: torch.Tensor, yt: torch.Tensor, cfg: TorchTrainConfig,
                     merge_single: bool) -> tuple[torch.utils.data.DataLoader, torch.Generator]:
    """A loader of :class:`ShuffledBatches` over the tensors, and the generator it shuffles
    with (seeded with ``cfg.seed``, else fresh)."""
    generator = torch.Generator()
    if cfg.seed is not None:
        generator.manual_seed(cfg.seed)
    else:
        generator.seed()
    sampler = ShuffledBatches(len(Xt), int(cfg.batch_size), generator, merge_single=merge_single)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xt, yt),
                                         sampler=sampler, batch_size=None)
    return loader, generator


class TrainingStateError(ValueError):
    """A training state given to :func:`fit` (``resume``) that it cannot go on from: not one it
    wrote, or one of another network, training or data. :func:`mlplab.torch_mlp.resume_run` tells
    it apart from the other errors of ``fit`` to name the checkpoint file."""


#: the keys of a training state (:func:`fit`'s ``on_checkpoint`` and ``resume``)
STATE_KEYS = ("epoch", "iteration", "model", "optimizer", "scheduler", "loader_rng", "torch_rng",
              "cuda_rng", "history")


def _training_state(epoch: int, iteration: int, model: MultiLayerPerceptron,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    generator: torch.Generator, device: torch.device,
                    history: History) -> dict[str, Any]:
    """Everything :func:`fit` needs to go on after ``epoch``: the generators' states taken
    now draw the next epoch's permutation and dropout masks, as an uninterrupted run would."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"epoch": int(epoch), "iteration": int(iteration),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "loader_rng": generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": cuda, "history": history.to_dict()}


def _restore(state: dict[str, Any], model: MultiLayerPerceptron,
             optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator,
             epochs: int, per_epoch: int) -> tuple[History, int, int]:
    """Load a training state into the model, Adam, the scheduler and the shuffling generator;
    ``(history, epochs done, iterations done)``. A state that does not fit them (another
    network, batch size or training set: ``per_epoch`` batches an epoch; a damaged file) is a
    :class:`TrainingStateError` saying what did not fit."""
    if not isinstance(state, dict) or sorted(state) != sorted(STATE_KEYS):
        raise TrainingStateError("the training state to resume from is not one fit wrote "
                                 f"(expected the keys {', '.join(STATE_KEYS)}).")
    done, iteration = state["epoch"], state["iteration"]
    if not (is_int(done) and 1 <= done <= epochs and is_int(iteration) and iteration >= done):
        raise TrainingStateError(f"the training state to resume from is at epoch {done!r}, "
                                 f"iteration {iteration!r}; a run of {epochs} epochs resumes "
                                 f"after epoch 1 to {epochs}.")
    if iteration != done * per_epoch:  # it went on with other batches, silently
        raise TrainingStateError(f"the training state to resume from has {iteration} "
                                 f"iterations in {done} epochs, but this training has "
                                 f"{per_epoch} batches an epoch (another batch size or training "
                                 "set).")
    try:
        if not isinstance(state["history"], dict):  # History.from_dict: an AttributeError
            raise TypeError(f"its history is a {type(state['history']).__name__}, not a dict")
        history = History.from_dict(state["history"])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["loader_rng"])
    # torch: RuntimeError; Adam's load_state_dict of a value that is not a dict: AttributeError
    except (TypeError, ValueError, KeyError, RuntimeError, AttributeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = lines[0] if lines else type(exc).__name__
        if first.endswith(":") and len(lines) > 1:
            # PyTorch's "Error(s) in loading state_dict for ...:" says what only its next line
            # does ("size mismatch for layers.0.weight: ... [8, 64] ... [20, 64]")
            first = f"{first} {lines[1]}"
        raise TrainingStateError(f"the training state to resume from does not fit this network "
                                 f"and its training ({first}).") from None
    if len(history.train_acc) != done or len(history.loss) != iteration:
        raise TrainingStateError(f"the training state to resume from is inconsistent: epoch "
                                 f"{done} and iteration {iteration}, but a history of "
                                 f"{len(history.train_acc)} epochs and {len(history.loss)} "
                                 "iterations.")
    history.interrupted = False
    return history, int(done), int(iteration)


def check_training_state(state: dict[str, Any], model: MultiLayerPerceptron, n: int,
                         config: TorchTrainConfig) -> None:
    """Refuse, with the :class:`TrainingStateError` that ``fit(model, X, y, config=config,
    resume=state)`` on ``n`` training rows would raise, a state it cannot go on from, without
    training or changing ``model``: :func:`mlplab.torch_mlp.resume_run` says "resuming" only
    once it knows it will."""
    import copy

    trial = copy.deepcopy(model).cpu()
    optimizer = torch.optim.Adam(trial.parameters(), lr=config.lr, weight_decay=config.reg)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    per_epoch = batches_per_epoch(n, config.batch_size, merge_single=bool(model.batchnorms))
    _restore(state, trial, optimizer, scheduler, torch.Generator(), config.epochs, per_epoch)
    try:  # what torch.set_rng_state would refuse, on a generator of its own
        torch.Generator().set_state(state["torch_rng"])
    except (TypeError, RuntimeError) as exc:
        raise TrainingStateError(f"the training state to resume from holds no usable random "
                                 f"generator state ({exc}).") from None


def state_settings(state: Any) -> dict[str, float] | None:
    """The training settings a training state of :func:`fit` itself holds, under the names of
    a run's ``config.json``: ``lr`` (the rate it started with: the scheduler's ``base_lrs``, or
    Adam's ``initial_lr``, not the decayed ``lr`` Adam holds after the scheduler's steps),
    ``reg`` (Adam's ``weight_decay``) and ``lr_decay`` (the scheduler's ``gamma``); those it does
    not hold as numbers are left out, and a state that holds none gives None. For a checkpoint
    written before runs recorded their settings: fit's resume loads these into Adam and the
    scheduler, so a config.json that names others would not be what the run goes on with."""
    if not isinstance(state, dict):
        return None
    optimizer, scheduler = state.get("optimizer"), state.get("scheduler")
    groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
    group = groups[0] if isinstance(groups, list) and groups and \
        isinstance(groups[0], dict) else {}
    scheduler = scheduler if isinstance(scheduler, dict) else {}
    base = scheduler.get("base_lrs")
    found = {"lr": base[0] if isinstance(base, list) and base else group.get("initial_lr"),
             "reg": group.get("weight_decay"), "lr_decay": scheduler.get("gamma")}
    held = {k: float(v) for k, v in found.items() if is_number(v)}
    return held or None


def _set_rng_states(state: dict[str, Any], device: torch.device) -> None:
    """The dropout generators as a training state left them (the CUDA one only on a GPU, and
    only if the state was written on one: a run moved from a GPU draws fresh masks there)."""
    try:
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
    except (TypeError, RuntimeError) as exc:
        raise TrainingStateError(f"the training state to resume from holds no usable random "
                                 f"generator state ({exc}).") from None


class _StopAsked(Exception):
    """The loop's own way out after the batch a Ctrl-C came in (a second Ctrl-C raises
    ``KeyboardInterrupt``, which ends training unsaved)."""


def _train_epoch(model: MultiLayerPerceptron, loader: torch.utils.data.DataLoader,
                 criterion: nn.Module, optimizer: torch.optim.Optimizer,
                 bar: Any, stop: interrupts.StopRequest | None = None) -> np.ndarray:
    """One pass over ``loader``, one optimiser step per batch; the batches' losses. Ends after
    the current batch once ``stop`` is asked (a Ctrl-C): every step taken is whole."""
    model.train()
    losses = []
    for xb, yb in loader:
        loss = criterion(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # kept on the device: one synchronisation per epoch, not per batch
        losses.append(loss.detach())
        if bar is not None:
            bar.update(1)
        if stop is not None and stop.asked:
            break
    if not losses:
        return np.zeros(0)
    return torch.stack(losses).double().cpu().numpy()


def _refuse_diverged(epoch_loss: np.ndarray, iteration: int, epoch: int, lr: float) -> None:
    """A :class:`TrainingDivergedError` naming the epoch's first non-finite loss, if any
    (``iteration``: the epoch's last)."""
    bad = np.flatnonzero(~np.isfinite(epoch_loss))
    if bad.size:
        it = iteration - len(epoch_loss) + int(bad[0]) + 1
        raise TrainingDivergedError(
            f"the loss became {epoch_loss[bad[0]]} at iteration {it} (epoch "
            f"{epoch}) with learning rate {lr:.3g}; try a lower learning rate "
            f"(e.g. {setting('--lr', 'lr')} divided by 10).")


def _record_epoch(history: History, logs: dict[str, float], has_val: bool) -> None:
    """The epoch's accuracies, learning rate and seconds into ``history``, and its best
    validation accuracy so far."""
    history.train_acc.append(logs["train_acc"])
    history.val_acc.append(logs["val_acc"])
    history.lr.append(logs["lr"])
    history.epoch_seconds.append(logs["seconds"])
    if has_val and logs["val_acc"] > history.best_val_acc:
        history.best_val_acc, history.best_epoch = logs["val_acc"], int(logs["epoch"])


def _report_epoch(logs: dict[str, float], cfg: TorchTrainConfig, bar: Any,
                  on_epoch_end: Callable[[int, dict[str, float]], None] | None) -> None:
    """The epoch's numbers on the progress bar, printed (``cfg.verbose``) and to the callback."""
    epoch, train_acc, val_acc = logs["epoch"], logs["train_acc"], logs["val_acc"]
    # without validation data there is no validation accuracy to show (not "nan%")
    val = {} if math.isnan(val_acc) else {"val": percent(val_acc, 1)}
    if bar is not None:
        bar.set_postfix(loss=f"{logs['loss']:.3f}", train=percent(train_acc, 1), **val)
    if cfg.verbose:
        val_text = f", val acc {val['val']}" if val else ""
        print(f"epoch {epoch}/{cfg.epochs}: loss {logs['loss']:.4f}, train acc "
              f"{percent(train_acc, 1)}{val_text}, lr {logs['lr']:.3g}, "
              f"{duration(logs['seconds'])}", flush=True)
    if on_epoch_end is not None:
        on_epoch_end(int(epoch), logs)  # (an int among the floats of logs)

