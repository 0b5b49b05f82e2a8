"""Train the same fully-connected network with mlplab, scikit-learn and PyTorch, side by side.

Every engine trains the same network (3,072 inputs, the given hidden sizes, 10 classes, batch 200,
SGD with heavy-ball momentum 0.9, the same L2 penalty, the same epochs) on the same float32 data.
Beside them runs the *GEMM floor*: the same sequence of matrix products alone (forward products,
weight gradients and input gradients of every layer but the first), in NumPy float32, with no
bias, activation, loss, sampling or update work: the time no NumPy engine can beat. The same floor
in PyTorch (``torch-gemm``) tells how fast PyTorch's own GEMM (MKL/oneDNN) is compared with
NumPy's (OpenBLAS), so that the engine comparison with PyTorch is read fairly.

Method:

* each run is a fresh subprocess (``--worker``), so that imports, allocator state and peak memory
  of one engine never leak into another; BLAS and OpenMP threads are limited with threadpoolctl and
  ``torch.set_num_threads`` (and the usual environment variables) to ``--threads``;
* engines are interleaved, A B C D A B C D ..., over ``--repeats`` rounds, so that a change in the
  load of a shared machine hits every engine alike; the figures are medians;
* the time of an epoch runs from the start of its first step to the end of its last (no
  evaluation is timed: mlplab's epoch-end train accuracy on the last batch, a forward pass the
  other engines do not make, is left out of its epochs (its other epoch-end work, settling the
  folded L2, flushing subnormal weights and checking that they are finite, is kept in);
  scikit-learn has no early stopping; nothing is validated);
* sample order: mlplab and PyTorch visit the rows in the same order (one
  ``RandomState(seed).permutation`` per epoch); scikit-learn draws its own permutation each epoch
  (it offers no way to take one), which costs the same gather of 200 rows per step; the floors
  multiply contiguous slices (no gather: the gather is engine work above the floor);
* memory: the peak resident set size (VmHWM, reset through /proc/self/clear_refs once the data
  is loaded) of the process while it trains, reported as the whole peak and as the part above the
  resident size at the start of training (the training's own working memory: the dataset and the
  libraries are already counted in the start size).

Examples::

    python benchmarks/bench_train.py --hidden 500 --epochs 3
    python benchmarks/bench_train.py --hidden 500 1000 --repeats 3 --write docs/benchmarks.md
    python benchmarks/bench_train.py --hidden 1000,500 --data cifar --engines mlplab,torch,gemm
    python benchmarks/bench_train.py --memory-check      # CIFAR-10 training run vs its budget
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

ENGINES = ("mlplab", "sklearn", "torch", "gemm", "torch-gemm", "sklearn64")
DEFAULT_ENGINES = "mlplab,sklearn,torch,gemm,torch-gemm"
INPUT_SIZE, NUM_CLASSES = 3072, 10
MEM_BEGIN, MEM_END = "<!-- memory:begin -->", "<!-- memory:end -->"


# ---------------------------------------------------------------------------------- memory
def _proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident size (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------- data
def make_random_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian inputs with labels from a random linear teacher, so that the loss can fall and
    the engines' final losses can be compared."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, INPUT_SIZE), dtype=np.float32)
    teacher = rng.standard_normal((INPUT_SIZE, NUM_CLASSES), dtype=np.float32)
    y = np.argmax(X @ teacher, axis=1).astype(np.int64)
    return X, y


def prepare_data(args: argparse.Namespace, folder: Path) -> tuple[Path, Path]:
    x_path, y_path = folder / "X.npy", folder / "y.npy"
    if args.data == "random":
        X, y = make_random_data(args.n_train, args.seed)
    else:
        X, y, _, _ = _cifar_float32(args.data_dir, args.seed)
        if len(X) < args.n_train:
            raise SystemExit(f"{args.data_dir} gives {len(X)} training images; "
                             f"--n-train asks for {args.n_train}.")
        if args.n_train < len(X):  # a random subset: the folder's images come class by class
            rows = np.sort(np.random.RandomState(args.seed).permutation(len(X))[:args.n_train])
            X, y = X[rows], y[rows]
    np.save(x_path, X)
    np.save(y_path, y)
    return x_path, y_path


# ---------------------------------------------------------------------------------- engines
def _epoch_orders(n: int, epochs: int, seed: int):
    """The sample order mlplab's trainer uses: one permutation per epoch from RandomState(seed)."""
    rng = np.random.RandomState(seed)
    for _ in range(epochs):
        yield rng.permutation(n)


class Clock:
    """Epoch boundaries, in wall-clock time and in this process's CPU time (all threads), less
    what ran between an epoch's last step and its boundary when an engine says when that was
    (:meth:`steps_done`: mlplab's epoch-end evaluation, which the other engines do not do)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.skipped_wall: list[float] = []
        self.skipped_cpu: list[float] = []
        self._steps_done: tuple[float, float] | None = None

    def steps_done(self) -> None:
        self._steps_done = (time.perf_counter(), time.process_time())

    def mark(self) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        done_wall, done_cpu = self._steps_done or (wall, cpu)
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.skipped_wall.append(wall - done_wall)
        self.skipped_cpu.append(cpu - done_cpu)
        self._steps_done = None

    def epochs(self) -> tuple[np.ndarray, np.ndarray]:
        """Wall and CPU seconds of each epoch (the marks bound epochs)."""
        return (np.diff(self.wall) - self.skipped_wall[1:],
                np.diff(self.cpu) - self.skipped_cpu[1:])


def run_mlplab(X, y, hidden, a) -> tuple[Clock, float]:
    from mlplab import MLP
    from mlplab.trainer import Callback, Trainer

    clock = Clock()

    class Stamps(Callback):
        def on_train_begin(self, trainer):
            clock.mark()

        def on_iteration_end(self, trainer, iteration, loss):
            if iteration % steps_per_epoch == 0:  # the epoch's last step: its work ends here
                # what the trainer does next at every epoch's end is training work (settling
                # the folded L2, flushing subnormal weights, the finite-weights check), timed
                # here (its repeat after the clock stops costs little); the train accuracy that
                # follows is not: the other engines compute none
                trainer.optimizer.settle()
                trainer.optimizer.flush_subnormals(trainer.model.params)
                trainer._check_weights(trainer.model, trainer.optimizer)
                clock.steps_done()

        def on_epoch_end(self, trainer, epoch, logs):
            clock.mark()

    steps_per_epoch = max(X.shape[0] // a.batch_size, 1)  # as the trainer counts them

    model = MLP(INPUT_SIZE, hidden, NUM_CLASSES, seed=a.seed)
    trainer = Trainer(optimizer="momentum", lr=a.lr, momentum=0.9, schedule="constant",
                      reg=a.reg, batch_size=a.batch_size, epochs=a.epochs, sampling="shuffle",
                      train_acc="batch", seed=a.seed, callbacks=[Stamps()])
    history = trainer.fit(model, X, y)
    per_epoch = len(history.loss) // a.epochs
    return clock, float(np.mean(history.loss[-per_epoch:]))


def run_sklearn(X, y, hidden, a, dtype=np.float32) -> tuple[Clock, float]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clock = Clock()

    class Timed(MLPClassifier):
        # hooks on private methods, only to stamp epochs: the first batch starts inside
        # _fit_stochastic and every epoch ends with _update_no_improvement_count
        def _fit_stochastic(self, *args, **kwargs):
            clock.mark()
            return super()._fit_stochastic(*args, **kwargs)

        def _update_no_improvement_count(self, *args, **kwargs):
            clock.mark()
            return super()._update_no_improvement_count(*args, **kwargs)

    # mlplab's loss: mean CE + reg ||W||^2 (gradient 2 reg W). scikit-learn's: mean CE +
    # alpha / (2 n_batch) ||W||^2, so alpha = 2 reg * batch gives the same gradient.
    clf = Timed(hidden_layer_sizes=tuple(hidden), activation="relu", solver="sgd",
                alpha=2 * a.reg * a.batch_size, batch_size=a.batch_size,
                learning_rate="constant", learning_rate_init=a.lr, momentum=0.9,
                nesterovs_momentum=False, shuffle=True, early_stopping=False,
                max_iter=a.epochs, n_iter_no_change=a.epochs + 1, tol=0.0,
                random_state=a.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X.astype(dtype, copy=False), y)  # the worker made sklearn64's copy beforehand
    return clock, float(clf.loss_curve_[-1])


def run_torch(X, y, hidden, a) -> tuple[Clock, float]:
    import torch
    import torch.nn.functional as F

    # same initial weights as mlplab (nn.Linear stores W transposed: (out, in)), made by the
    # worker before the memory baseline
    init = a.initial_params
    sizes = [INPUT_SIZE, *hidden, NUM_CLASSES]
    modules: list = []
    for i in range(1, len(sizes)):
        lin = torch.nn.Linear(sizes[i - 1], sizes[i])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(init[f"W{i}"].T.copy()))
            lin.bias.copy_(torch.from_numpy(init[f"b{i}"]))
        modules += [lin, torch.nn.ReLU()]
    net = torch.nn.Sequential(*modules[:-1])
    weights = [m.weight for m in net if isinstance(m, torch.nn.Linear)]
    biases = [m.bias for m in net if isinstance(m, torch.nn.Linear)]
    # L2 on the weights only, as in mlplab (d/dW reg ||W||^2 = 2 reg W)
    opt = torch.optim.SGD([{"params": weights, "weight_decay": 2 * a.reg},
                           {"params": biases, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=False)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    B, per_epoch = a.batch_size, X.shape[0] // a.batch_size
    clock, losses = Clock(), []
    clock.mark()
    for order in _epoch_orders(X.shape[0], a.epochs, a.seed):
        order_t = torch.from_numpy(order)
        losses = []
        for pos in range(per_epoch):
            idx = order_t[pos * B:(pos + 1) * B]
            loss = F.cross_entropy(net(Xt.index_select(0, idx)), yt.index_select(0, idx))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        clock.mark()
    # mlplab's loss includes the penalty; add it so the final losses compare
    penalty = a.reg * sum(float((w.detach() ** 2).sum()) for w in weights)
    return clock, float(np.mean(losses)) + penalty


def _gemm_buffers(hidden, batch, zeros, randn):
    sizes = [INPUT_SIZE, *hidden, NUM_CLASSES]
    W = [randn(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)]
    Z = [zeros(batch, s) for s in sizes[1:]]  # forward outputs
    dZ = [randn(batch, s) for s in sizes[1:]]  # gradients w.r.t. the outputs
    dW = [zeros(*w.shape) for w in W]
    return W, Z, dZ, dW


def run_gemm(X, y, hidden, a) -> tuple[Clock, float]:
    """The matrix products of a training step, nothing else, in NumPy float32."""
    rng = np.random.RandomState(a.seed)
    W, Z, dZ, dW = _gemm_buffers(
        hidden, a.batch_size, lambda *s: np.zeros(s, np.float32),
        lambda *s: (0.01 * rng.randn(*s)).astype(np.float32))
    B, per_epoch, L = a.batch_size, X.shape[0] // a.batch_size, len(W)
    clock = Clock()
    clock.mark()
    for _ in range(a.epochs):
        for pos in range(per_epoch):
            inputs = [X[pos * B:(pos + 1) * B], *Z[:-1]]
            for i in range(L):
                np.matmul(inputs[i], W[i], out=Z[i])
            for i in reversed(range(L)):
                np.matmul(inputs[i].T, dZ[i], out=dW[i])
                if i > 0:  # no input gradient for the first layer
                    np.matmul(dZ[i], W[i].T, out=dZ[i - 1])
        clock.mark()
    return clock, float("nan")


def run_torch_gemm(X, y, hidden, a) -> tuple[Clock, float]:
    """The same products with PyTorch's GEMM on the same layouts."""
    import torch

    gen = torch.Generator().manual_seed(a.seed)
    W, Z, dZ, dW = _gemm_buffers(hidden, a.batch_size, lambda *s: torch.zeros(s),
                                 lambda *s: 0.01 * torch.randn(s, generator=gen))
    Xt = torch.from_numpy(X)
    B, per_epoch, L = a.batch_size, X.shape[0] // a.batch_size, len(W)
    clock = Clock()
    clock.mark()
    with torch.no_grad():
        for _ in range(a.epochs):
            for pos in range(per_epoch):
                inputs = [Xt[pos * B:(pos + 1) * B], *Z[:-1]]
                for i in range(L):
                    torch.mm(inputs[i], W[i], out=Z[i])
                for i in reversed(range(L)):
                    torch.mm(inputs[i].t(), dZ[i], out=dW[i])
                    if i > 0:
                        torch.mm(dZ[i], W[i].t(), out=dZ[i - 1])
            clock.mark()
    return clock, float("nan")


RUNNERS = {
    "mlplab": run_mlplab,
    "sklearn": run_sklearn,
    "sklearn64": lambda X, y, h, a: run_sklearn(X, y, h, a, dtype=np.float64),
    "torch": run_torch,
    "gemm": run_gemm,
    "torch-gemm": run_torch_gemm,
}


def limit_threads(n: int, engine: str):
    """Limit every BLAS/OpenMP pool of this process (and PyTorch's) to ``n`` threads."""
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(n)
    if engine.startswith("torch"):
        import torch

        torch.set_num_threads(n)
    return limiter


def worker(a: argparse.Namespace) -> None:
    _limiter = limit_threads(a.threads, a.worker)  # noqa: F841  (keep the limits alive)
    if a.worker.startswith("torch"):
        import torch  # noqa: F401  (import before measuring: its libraries are not training)
    if a.worker.startswith("sklearn"):
        import sklearn.neural_network  # noqa: F401
    X = np.load(a.x_file)
    y = np.load(a.y_file)
    hidden = parse_hidden(a.worker_hidden)
    # before the baseline, as the float32 data is: sklearn64's input (the data as float64: its
    # "training extra" counted this copy of the dataset) and the initial weights PyTorch copies
    # from an mlplab MLP (which stayed alive, counted as PyTorch's training memory)
    if a.worker == "sklearn64":
        X = X.astype(np.float64)
    if a.worker == "torch":
        from mlplab import MLP

        a.initial_params = MLP(INPUT_SIZE, hidden, NUM_CLASSES, seed=a.seed).params
    rss_start = _proc_status_mb("VmRSS")
    reset_ok = reset_peak_rss()
    clock, final_loss = RUNNERS[a.worker](X, y, hidden, a)
    epoch_wall, epoch_cpu = clock.epochs()
    print(json.dumps({
        "engine": a.worker, "epoch_seconds": epoch_wall.tolist(),
        "epoch_cpu_seconds": epoch_cpu.tolist(), "final_loss": final_loss,
        "rss_start_mb": rss_start, "peak_rss_mb": _proc_status_mb("VmHWM"),
        "peak_reset": reset_ok, "dataset_mb": X.nbytes / 2**20,
    }))


# ---------------------------------------------------------------------------------- parent
def _hidden_arg(text: str) -> str:
    """``--hidden``'s type: checked by :func:`parse_hidden`, kept as text for the workers."""
    parse_hidden(text)
    return text


def parse_hidden(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"hidden sizes are integers joined by commas, e.g. "
                                         f"500 or 1000,500; got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"need at least one positive hidden size; got {text!r}")
    return sizes


def wait_for_load(max_load: float | None, poll: float = 15.0) -> float:
    """Wait until the 1-minute load average is at most ``max_load`` (if given); return it."""
    load = os.getloadavg()[0]
    while max_load is not None and load > max_load:
        print(f"load average {load:.2f} > {max_load}: waiting", flush=True)
        time.sleep(poll)
        load = os.getloadavg()[0]
    return load


def _thread_env(n: int) -> dict[str, str]:
    return {v: str(n) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def run_worker(engine: str, hidden: str, args: argparse.Namespace, x_path: Path,
               y_path: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", engine,
           "--worker-hidden", hidden, "--x-file", str(x_path), "--y-file", str(y_path),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--lr", repr(args.lr), "--reg", repr(args.reg), "--seed", str(args.seed),
           "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, **_thread_env(args.threads)})
    if proc.returncode != 0:
        raise SystemExit(f"{engine} (hidden {hidden}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for engine, results in runs.items():
        wall = [t for r in results for t in r["epoch_seconds"]]
        cpu = [t for r in results for t in r["epoch_cpu_seconds"]]
        out[engine] = {
            "median": float(np.median(wall)), "min": float(np.min(wall)),
            "max": float(np.max(wall)), "cpu_median": float(np.median(cpu)),
            "rounds": [float(np.median(r["epoch_seconds"])) for r in results],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "train_extra_mb": max(r["peak_rss_mb"] - r["rss_start_mb"] for r in results),
            "final_loss": float(np.median([r["final_loss"] for r in results])),
        }
    return out


def _ratio(s: dict[str, dict], a: str, b: str) -> str:
    """``a / b`` from the medians, and the spread of the same ratio round by round (engines run
    next to each other in a round, so the paired ratio shrugs off slow drifts of the load)."""
    paired = np.array(s[a]["rounds"]) / np.array(s[b]["rounds"])
    return (f"**{s[a]['median'] / s[b]['median']:.3f}x** (round by round {np.min(paired):.3f}"
            f"-{np.max(paired):.3f}; CPU time {s[a]['cpu_median'] / s[b]['cpu_median']:.3f}x)")


def table(hidden: str, s: dict[str, dict], steps: int) -> str:
    ref = s.get("mlplab", {}).get("median")
    head = ("| engine | epoch s (median) | min | max | ms/step | x mlplab | CPU s/epoch | "
            "peak RSS MB | training extra MB | final loss |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for engine, r in s.items():
        ratio = f"{r['median'] / ref:.2f}" if ref else "-"
        loss = "-" if np.isnan(r["final_loss"]) else f"{r['final_loss']:.4f}"
        rows.append(f"| {engine} | {r['median']:.3f} | {r['min']:.3f} | {r['max']:.3f} | "
                    f"{1e3 * r['median'] / steps:.2f} | {ratio} | {r['cpu_median']:.3f} | "
                    f"{r['peak_rss_mb']:.0f} | {r['train_extra_mb']:.0f} | {loss} |")
    lines = [f"**hidden {hidden}** ({steps} steps per epoch)\n", head + "\n".join(rows), ""]
    if "mlplab" in s and "gemm" in s:
        g, m = s["gemm"]["median"], s["mlplab"]["median"]
        lines.append(f"- mlplab / GEMM floor: {_ratio(s, 'mlplab', 'gemm')}: mlplab runs at "
                     f"{100 * g / m:.1f}% of the BLAS limit (target <= 1.15x)")
    if "mlplab" in s and "sklearn" in s:
        lines.append(f"- mlplab / scikit-learn (float32): {_ratio(s, 'mlplab', 'sklearn')} "
                     "(target <= 0.5x)")
    if "mlplab" in s and "sklearn64" in s:
        lines.append(f"- mlplab / scikit-learn (float64 input): "
                     f"{_ratio(s, 'mlplab', 'sklearn64')}")
    if "mlplab" in s and "torch" in s:
        lines.append(f"- mlplab / PyTorch: {_ratio(s, 'mlplab', 'torch')} (target <= 1.25x)")
    if "gemm" in s and "torch-gemm" in s:
        lines.append(f"- PyTorch GEMM floor / NumPy GEMM floor: "
                     f"{_ratio(s, 'torch-gemm', 'gemm')} (above 1: PyTorch's matrix products "
                     "are slower than NumPy's on this machine)")
    if "torch" in s and "torch-gemm" in s:
        lines.append(f"- PyTorch / its own GEMM floor: {_ratio(s, 'torch', 'torch-gemm')}")
    return "\n".join(lines) + "\n"


def environment(args: argparse.Namespace) -> str:
    from threadpoolctl import threadpool_info

    try:
        import sklearn
        sklearn_v = sklearn.__version__
    except ImportError:  # needed only by the sklearn engines, which main() then refuses
        sklearn_v = "not installed"

    try:
        import torch
        torch_v = torch.__version__ + (" (its own BLAS: MKL)" if torch.backends.mkl.is_available()
                                       else "")
    except ImportError:
        torch_v = "not installed"
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = "; ".join(
        f"{i.get('internal_api')} {i.get('version') or '-'} ({i.get('prefix')}"
        + (f", {i['architecture']}" if i.get("architecture") else "") + ")"
        for i in threadpool_info())
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"- machine: {os.cpu_count()} logical CPUs "
            f"({cpu}), {platform.system()} {platform.release()}\n"
            f"- Python {platform.python_version()}, NumPy {np.__version__}, scikit-learn "
            f"{sklearn_v}, PyTorch {torch_v}\n"
            f"- BLAS and OpenMP libraries (threadpoolctl.threadpool_info()): {blas}\n"
            f"- threads per engine: {args.threads}; load average before the run: {load}\n")


def write_markdown(path: Path, block: str, begin: str, end: str) -> None:
    """Replace the text between the markers ``begin`` and ``end`` of ``path`` (atomically);
    append a marked block if absent."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
    else:
        head, tail = text.rstrip() + "\n\n", "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f"{head}{begin}\n{block.strip()}\n{end}{tail}")
    os.replace(tmp, path)


def _cifar_float32(data_dir: str, seed: int):
    """CIFAR-10 training images through mlplab.data (decode cache), as float32 rows minus the
    mean image (scaled by 1/64), built in one preallocated array per split (the uint8 images
    are dropped afterwards)."""
    from mlplab.data import load_dataset

    ds = load_dataset(f"folder:{data_dir}", val_size=1000, test_size=0, seed=seed)
    out = []
    for raw in (ds.X_train, ds.X_val):
        X = np.empty((len(raw), raw[0].size), np.float32)
        X[...] = raw.reshape(len(raw), -1)
        out.append(X)
    mean = out[0].mean(axis=0, dtype=np.float64).astype(np.float32)
    for X in out:
        X -= mean
        X *= np.float32(1 / 64)  # pixel deviations of order 1, so that one lr suits all data
    return out[0], ds.y_train, out[1], ds.y_val


def _child_peak_mb(cmd: list[str], threads: int) -> float:
    """Peak resident size of ``cmd`` in a child process, measured by a small wrapper process (a
    child forked from this one would first count this process's pages, the data, as its own)."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], "
               "stdout=subprocess.DEVNULL); print(resource.getrusage("
               "resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    # PYTHONPATH: the child's mlplab is this checkout's, as the in-process half's is
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True,
                          env={**os.environ, **_thread_env(threads), "PYTHONPATH": str(ROOT)})
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return int(proc.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def memory_check(args: argparse.Namespace) -> str:
    """Peak memory of CIFAR-10 training runs against 1.5 x (float32 training set + model), for
    each network of ``--hidden``.

    1. In this process: the float32 data held once, then ``Trainer.fit`` with mlplab's defaults
       (train accuracy on a 5,000-row subset, validation every epoch); the peak resident size
       during ``fit`` above the interpreter's (imports done, no data yet).
    2. The command line, ``mlplab train`` on the same folder, in a child process: its peak
       resident size (loading, preprocessing and training) above a child that only imports.
    """
    _limiter = limit_threads(args.threads, "mlplab")  # noqa: F841
    from mlplab import MLP
    from mlplab.trainer import Trainer

    base = _proc_status_mb("VmRSS")
    X, y, X_val, y_val = _cifar_float32(args.data_dir, args.seed)
    loaded = _proc_status_mb("VmHWM") - base
    data_mb = X.nbytes / 2**20
    lines = [f"- data: {len(X)} training + {len(X_val)} validation CIFAR-10 images, float32 "
             f"training set {data_mb:.0f} MB (loading peaked at {loaded:.0f} MB above the "
             f"interpreter); {args.epochs} epoch{'s' if args.epochs != 1 else ''} of momentum SGD, "
             f"batch {args.batch_size}"]
    idle = _child_peak_mb([sys.executable, "-c", "import mlplab.cli, mlplab.trainer, "
                           "mlplab.data, mlplab.runs"], args.threads)
    for text in args.hidden:
        hidden = parse_hidden(text)
        model = MLP(INPUT_SIZE, hidden, NUM_CLASSES, seed=args.seed)
        model_mb = model.num_params * model.dtype.itemsize / 2**20
        unit = data_mb + model_mb
        start = _proc_status_mb("VmRSS") - base
        reset_peak_rss()
        t0 = time.perf_counter()
        history = Trainer(optimizer="momentum", lr=args.lr, reg=args.reg, epochs=args.epochs,
                          batch_size=args.batch_size, seed=args.seed).fit(
            model, X, y, X_val, y_val)
        seconds = time.perf_counter() - t0
        peak = _proc_status_mb("VmHWM") - base
        lines.append(
            f"- hidden {text} (model {model_mb:.1f} MB; budget 1.5 x (data + model) = "
            f"{1.5 * unit:.0f} MB), in process, `Trainer.fit` ({seconds:.0f} s, val acc "
            f"{history.val_acc[-1]:.3f}): {start:.0f} MB resident above the interpreter when "
            f"training starts (data, validation, model), peak during training {peak:.0f} MB = "
            f"**{peak / unit:.2f} x** (data + model), {'OK' if peak <= 1.5 * unit else 'OVER'}")
        del model, history
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "mlplab", "train", "--dataset",
                   f"folder:{args.data_dir}", "--val-size", "1000", "--test-size", "0",
                   "--hidden", text, "--preprocessing", "standardize", "--optimizer",
                   "momentum", "--lr", repr(args.lr), "--reg", repr(args.reg), "--epochs",
                   str(args.epochs), "--batch-size", str(args.batch_size), "--no-plots",
                   "--quiet", "--out", f"{tmp}/run"]  # the batch the report line states
            t0 = time.perf_counter()
            cli = _child_peak_mb(cmd, args.threads) - idle
            metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
        cli_unit = metrics["train_size"] * INPUT_SIZE * 4 / 2**20 + model_mb
        ok = "OK" if cli <= 1.5 * cli_unit else "OVER"
        lines.append(
            f"- hidden {text}, `mlplab train --dataset folder:... --val-size 1000 --test-size 0 "
            f"--preprocessing standardize ...` ({time.perf_counter() - t0:.0f} s, "
            f"{metrics['train_size']} training images): peak {cli:.0f} MB above an idle "
            f"interpreter ({idle:.0f} MB) = **{cli / cli_unit:.2f} x** (its float32 data + "
            f"model), loading and preprocessing included, {ok}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    from mlplab.cli._types import positive_int
    from mlplab.data import DatasetError

    p.add_argument("--hidden", nargs="+", default=["500"], type=_hidden_arg,
                   help="one network per value; a value lists its hidden sizes joined by "
                        "commas (500, or 1000,500 for two hidden layers). Default: 500")
    p.add_argument("--epochs", type=positive_int, default=3,
                   help="epochs each engine trains per round (default 3)")
    p.add_argument("--repeats", type=positive_int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--engines", default=DEFAULT_ENGINES,
                   help=f"comma-separated, from {', '.join(ENGINES)} (sklearn64: scikit-learn "
                        f"given float64 data, its usual input). Default: {DEFAULT_ENGINES}")
    p.add_argument("--threads", type=positive_int, default=2,
                   help="BLAS/OpenMP threads (default 2)")
    p.add_argument("--data", choices=("random", "cifar"), default="random",
                   help="random Gaussian rows with teacher labels (default) or CIFAR-10 images")
    p.add_argument("--data-dir", default="/tmp/mlplab-data/train",
                   help="CIFAR-10 training images, one sub-folder per class")
    p.add_argument("--n-train", type=positive_int, default=49000,
                   help="training rows (default 49000, the exercise's training split)")
    p.add_argument("--batch-size", type=positive_int, default=200,
                   help="minibatch size of every engine (default 200)")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="learning rate of every engine's momentum SGD (default 1e-3)")
    p.add_argument("--reg", type=float, default=1e-4, help="mlplab's L2 strength (default 1e-4)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data, the initial weights and the sample order (default 0)")
    p.add_argument("--max-load", type=float, metavar="LOAD",
                   help="before each round, wait until the 1-minute load average is at most "
                        "LOAD (for shared machines; the loads are reported)")
    p.add_argument("--write", type=Path, metavar="MARKDOWN",
                   help="also write the tables into this file between the bench markers")
    p.add_argument("--label", help="names the block --write replaces (default threads-N), so "
                        "that runs with different settings keep blocks of their own")
    p.add_argument("--json", type=Path, help="also save every run's raw figures as JSON")
    p.add_argument("--memory-check", action="store_true",
                   help="measure the peak memory of a CIFAR-10 training run instead")
    # internal: one engine in a fresh process
    p.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--worker-hidden", help=argparse.SUPPRESS)
    p.add_argument("--x-file", help=argparse.SUPPRESS)
    p.add_argument("--y-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.memory_check:
        try:
            text = memory_check(args)
        except DatasetError as exc:  # e.g. no such --data-dir: one line, not a traceback
            p.error(str(exc))
        print(text)
        if args.write:
            write_markdown(args.write, text, MEM_BEGIN, MEM_END)
        return None

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        p.error(f"unknown engines {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    if not engines or len(set(engines)) < len(engines):
        p.error(f"--engines must name each engine once; got {args.engines!r}")
    for module, needed_by in (("sklearn", "sklearn"), ("torch", "torch")):
        users = [e for e in engines if e.startswith(needed_by)]
        if users and importlib.util.find_spec(module) is None:
            p.error(f"{', '.join(users)} need {module}, which is not installed; install it or "
                    "leave them out of --engines")
    if args.n_train < args.batch_size:
        p.error("--n-train must be at least --batch-size")
    if args.n_train % args.batch_size:
        # scikit-learn trains the rows left over as one more, smaller batch; the others do not
        p.error(f"--n-train must be a multiple of --batch-size ({args.batch_size}), so that "
                "every engine makes the same steps")
    for name in ("lr", "reg"):  # one line here, not a worker's traceback after other engines
        value = getattr(args, name)
        if not (np.isfinite(value) and (value > 0 if name == "lr" else value >= 0)):
            p.error(f"--{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}; "
                    f"got {value}")
    if args.write is not None and not args.write.parent.is_dir():
        p.error(f"--write {args.write}: no folder {args.write.parent} to write it in")
    env_text = environment(args)
    print(env_text, flush=True)
    folder = Path(tempfile.mkdtemp(prefix="mlplab-bench-"))
    # a plain `kill` ends the run through the finally below, which removes the data files
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    steps = args.n_train // args.batch_size
    blocks, raw = [], {}
    started = time.time()
    try:
        try:
            x_path, y_path = prepare_data(args, folder)
        except DatasetError as exc:
            p.error(str(exc))
        for hidden in args.hidden:
            runs: dict[str, list[dict]] = {e: [] for e in engines}
            loads = []
            for rep in range(args.repeats):
                loads.append(wait_for_load(args.max_load))
                for engine in engines:  # interleaved: A B C D A B C D ...
                    r = run_worker(engine, hidden, args, x_path, y_path)
                    runs[engine].append(r)
                    print(f"hidden {hidden} round {rep + 1}/{args.repeats} {engine:>10}: "
                          + " ".join(f"{t:.3f}" for t in r["epoch_seconds"]) + " s/epoch",
                          flush=True)
            raw[hidden] = runs
            blocks.append(table(hidden, summarise(runs), steps)
                          + "- load average (1 min) when each round started: "
                          + ", ".join(f"{x:.2f}" for x in loads) + "\n")
            print("\n" + blocks[-1], flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    cmd = "python benchmarks/bench_train.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    block = (f"Command: `{cmd}`\n\n{env_text}- load average after the run: {load_after}; "
             f"wall time {time.time() - started:.0f} s\n- data: {args.data}, {args.n_train} rows "
             f"x {INPUT_SIZE}, batch {args.batch_size}, lr {args.lr}, reg {args.reg}, momentum "
             f"0.9, {args.epochs} epochs x {args.repeats} interleaved rounds per engine, seed "
             f"{args.seed}\n\n" + "\n".join(blocks))
    if args.write:
        label = args.label or f"threads-{args.threads}"
        write_markdown(args.write, block, f"<!-- bench:{label}:begin -->",
                       f"<!-- bench:{label}:end -->")
        print(f"wrote {args.write}")
    if args.json:
        # strict JSON: the GEMM floors compute no loss (NaN), which JSON has no word for
        args.json.write_text(json.dumps(_nan_to_null(raw), indent=1, allow_nan=False))


def _nan_to_null(obj: object) -> object:
    """``obj`` with every float that is not finite replaced by None (JSON's null)."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_null(v) for v in obj]
    return obj


if __name__ == "__main__":
    main()
