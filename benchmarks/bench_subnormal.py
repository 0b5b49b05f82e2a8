"""Subnormal (denormal) numbers in training: how much slower they are here, and whether a real run
makes them.

x86 CPUs handle an arithmetic result (and, for some operations, an operand) below the smallest
normal number (float32: 1.2e-38, float64: 2.2e-308) in microcode, unless flush-to-zero is set,
which NumPy does not do. Three measurements, on one BLAS thread:

1. each kind of operation the training step uses, on arrays of normal numbers and on arrays of
   subnormal ones (the time ratio);
2. a real run: the estimator's defaults (Adam, lr 1e-3, reg 1e-4, batches of 200, constant
   schedule) on standardised digits (64-100-10, float32), with the number of subnormal entries in
   the parameters and the optimiser's slots as it trains, then the time of a training step
   (forward, backward, update) with the state as trained against the same state with its
   subnormal entries set to 0, alternated ``--rounds`` times (median per step);
3. a larger case of what 2. finds: 784 inputs (MNIST's size), 67 of them 0 in every training
   image as MNIST's are, the same training for ``--iters / 2`` iterations, and the same
   comparison; and the time of one pass that sets every subnormal entry of the parameters and
   slots to 0 (what the trainer's fix costs once per epoch);
4. that fix: the trainer sets those entries to 0 at each epoch's end
   (``Optimizer.flush_subnormals``); 2. and 3. train with it switched off, to show what training
   makes, and 4. times the whole training of 3. with it and without it, alternated.

    python benchmarks/bench_subnormal.py [--iters 6000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's mlplab


def best_of(fn: Callable[[], object], reps: int = 15) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def subnormal(a: np.ndarray) -> np.ndarray:
    """Where ``a`` holds subnormal numbers (not 0)."""
    x = np.abs(a)
    return (x > 0) & (x < np.finfo(a.dtype).tiny)


def _ops(t: type, out: np.ndarray) -> dict[str, Callable[[np.ndarray], object]]:
    """The element-wise operations of a step, of dtype ``t``, writing into ``out``."""
    return {"x * 0.9 (Adam's m *= b1, momentum's v *= mu)": lambda a: np.multiply(a, t(0.9),
                                                                                 out=out),
            "x / y (Adam's m / denom)": lambda a: np.divide(a, t(1.1), out=out),
            "sqrt(x) (Adam's sqrt(v))": lambda a: np.sqrt(a, out=out),
            "x * x (Adam's g * g)": lambda a: np.multiply(a, a, out=out),
            "x + 1 (an add whose result is normal)": lambda a: np.add(a, t(1.0), out=out)}


def operations() -> None:
    n = 500_000
    rng = np.random.RandomState(0)
    print("1. operations on 500,000 numbers (best of 15): normal / subnormal operands")
    for t, scale in ((np.float32, 1e-39), (np.float64, 1e-310)):
        normal = (rng.rand(n) + 0.5).astype(t)
        tiny = normal * t(scale)
        assert subnormal(tiny).all()
        for name, op in _ops(t, np.empty(n, t)).items():
            a, b = best_of(functools.partial(op, normal)), best_of(functools.partial(op, tiny))
            print(f"   {np.dtype(t).name:7s} {name:45s} {a * 1e3:7.3f} ms / {b * 1e3:7.3f} ms "
                  f"= x{b / a:5.1f}")
        W = rng.randn(500, 500).astype(t)
        X = rng.randn(200, 500).astype(t)
        a = best_of(functools.partial(np.matmul, X, W), 5)
        b = best_of(functools.partial(np.matmul, X, W * t(scale)), 5)
        print(f"   {np.dtype(t).name:7s} {'X @ W, 200x500 @ 500x500 (W subnormal)':45s} "
              f"{a * 1e3:7.3f} ms / {b * 1e3:7.3f} ms = x{b / a:5.1f}")


@contextlib.contextmanager
def without_flush() -> Iterator[None]:
    """Train as mlplab did before its trainer set subnormal entries to 0 at each epoch's end."""
    from mlplab.optim import Optimizer

    saved = Optimizer.flush_subnormals
    Optimizer.flush_subnormals = lambda self, params: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        Optimizer.flush_subnormals = saved  # type: ignore[method-assign]


def step_time(model: object, optimizer: object, X: np.ndarray, y: np.ndarray, reg: float,
              steps: int) -> float:
    """Seconds per training step on one batch (forward, backward, update), on copies."""
    model, optimizer = copy.deepcopy(model), copy.deepcopy(optimizer)
    start = time.perf_counter()
    for _ in range(steps):
        _, grads = model._loss_and_grads(X, y, reg)
        optimizer.step(model.params, grads)
    return (time.perf_counter() - start) / steps


def flushed(model: object, optimizer: object) -> tuple[object, object]:
    """Copies of ``model`` and ``optimizer`` with every subnormal entry set to 0."""
    model, optimizer = copy.deepcopy(model), copy.deepcopy(optimizer)
    arrays = [*model.params.values(), *(a for s in optimizer.state.values() for a in s.values())]
    for a in arrays:
        a[subnormal(a)] = 0
    return model, optimizer


def compare(label: str, a: tuple, b: tuple, X: np.ndarray, y: np.ndarray, reg: float,
            rounds: int, steps: int) -> None:
    times: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(rounds):  # alternated, so that the load of a shared machine hits both
        times["a"].append(step_time(*a, X, y, reg, steps))
        times["b"].append(step_time(*b, X, y, reg, steps))
    ta, tb = statistics.median(times["a"]), statistics.median(times["b"])
    fa, fb = min(times["a"]), min(times["b"])
    print(f"   {label}: median {ta * 1e6:6.0f} us / {tb * 1e6:6.0f} us per step = x{ta / tb:5.2f}"
          f"; fastest {fa * 1e6:6.0f} us / {fb * 1e6:6.0f} us = x{fa / fb:5.2f}")


def real_run(iters: int, rounds: int) -> None:
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    from mlplab.models import MLP
    from mlplab.trainer import Callback, Trainer

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)  # 3 columns are 0 throughout
    reg = 1e-4

    class Count(Callback):
        def on_iteration_end(self, trainer: Trainer, iteration: int, loss: float) -> None:
            if iteration % (iters // 6):
                return
            params = {k: int(subnormal(p).sum()) for k, p in trainer.model.params.items()}
            slots = {f"{k}/{s}": int(subnormal(a).sum())
                     for k, d in trainer.optimizer.state.items() for s, a in d.items()}
            print(f"   iteration {iteration:6d}: subnormal entries: params "
                  f"{ {k: v for k, v in params.items() if v} or 0}, slots "
                  f"{ {k: v for k, v in slots.items() if v} or 0}")

    for optimizer in ("adam", "momentum"):
        lr = 1e-3 if optimizer == "adam" else 1e-2
        print(f"2. digits 64-100-10 float32, {optimizer}, lr {lr:g}, reg {reg:g}, batches of "
              f"200, {iters} iterations ({sum(p.size for p in MLP(64, [100], 10).params.values())}"
              " parameters)")
        model = MLP(64, [100], 10, seed=0, dtype=np.float32)
        trainer = Trainer(optimizer=optimizer, lr=lr, reg=reg, schedule="constant",
                          batch_size=200, iters=iters, epochs=None, seed=0, callbacks=[Count()])
        with without_flush():
            trainer.fit(model, X, y)
        batch = X[:200].copy(), y[:200].copy()
        state = (model, trainer.optimizer)
        arrays = [*model.params.values(), *(a for d in trainer.optimizer.state.values()
                                           for a in d.values())]
        same = not any(subnormal(a).any() for a in arrays)
        compare("step as trained / subnormals set to 0" + (
            " (none: the same state twice, so the ratio is the machine's noise)" if same else ""),
            state, flushed(*state), *batch, reg, rounds, 200)


def mnist_sized(iters: int, rounds: int) -> None:
    from mlplab.models import MLP
    from mlplab.trainer import Trainer

    rng = np.random.RandomState(0)
    reg, unused = 1e-4, rng.choice(784, 67, replace=False)
    X = rng.randn(2000, 784).astype(np.float32)
    X[:, unused] = 0
    y = rng.randint(0, 10, 2000)
    model = MLP(784, [256], 10, seed=0, dtype=np.float32)
    print(f"3. 784-256-10 float32 on random data whose 67 inputs (MNIST's count) are 0 in every "
          f"row, Adam, lr 1e-3, reg {reg:g}, {iters} iterations")
    def train(model: MLP) -> Trainer:
        trainer = Trainer(optimizer="adam", lr=1e-3, reg=reg, schedule="constant",
                          batch_size=200, iters=iters, epochs=None, seed=0)
        trainer.fit(model, X, y)
        return trainer

    untrained = copy.deepcopy(model)
    with without_flush():
        trainer = train(model)
    state = (model, trainer.optimizer)
    arrays = [*model.params.values(), *(a for d in trainer.optimizer.state.values()
                                       for a in d.values())]
    print(f"   subnormal entries: {sum(int(subnormal(a).sum()) for a in model.params.values())} "
          f"of {sum(p.size for p in model.params.values()):,} parameters, "
          f"{sum(int(subnormal(a).sum()) for a in arrays[len(model.params):])} in the slots")
    compare("step as trained / subnormals set to 0", state, flushed(*state), X[:200], y[:200],
            reg, rounds, 20)
    cost = best_of(lambda: [np.putmask(a, subnormal(a), 0) for a in arrays], 5)
    print(f"   one pass setting the subnormal entries of parameters and slots to 0: "
          f"{cost * 1e3:.1f} ms")

    print(f"4. the same training ({iters} iterations, {iters * 200 // len(X)} epochs) with the "
          f"trainer's flush at each epoch's end / without it, alternated {rounds} times")
    times: dict[bool, list[float]] = {True: [], False: []}
    left: dict[bool, int] = {}
    for _ in range(rounds):
        for flush in (True, False):
            model = copy.deepcopy(untrained)
            with contextlib.nullcontext() if flush else without_flush():
                start = time.perf_counter()
                trainer = train(model)
                times[flush].append(time.perf_counter() - start)
            left[flush] = sum(int(subnormal(a).sum()) for a in
                              [*model.params.values(),
                               *(a for d in trainer.optimizer.state.values() for a in d.values())])
    a, b = statistics.median(times[True]), statistics.median(times[False])
    print(f"   median {a:.2f} s / {b:.2f} s = x{a / b:.2f} (fastest {min(times[True]):.2f} s / "
          f"{min(times[False]):.2f} s); subnormal entries at the end: {left[True]} / "
          f"{left[False]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=6000,
                        help="iterations of the digits runs (the 784-input run: half as many)")
    parser.add_argument("--rounds", type=int, default=9,
                        help="alternated timings of each comparison (their median is shown)")
    args = parser.parse_args(argv)
    if args.iters < 12:  # the 784-input run's half, sampled every sixth of it
        parser.error(f"--iters must be at least 12; got {args.iters}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1; got {args.rounds}")
    from threadpoolctl import threadpool_limits

    warnings.simplefilter("ignore", RuntimeWarning)
    with threadpool_limits(1):
        operations()
        real_run(args.iters, args.rounds)
        mnist_sized(args.iters // 2, args.rounds)


if __name__ == "__main__":
    main()
