"""Per-call time of ``MLPClassifier.partial_fit``, optionally of several mlplab checkouts.

Each measurement is a fresh process on one BLAS thread: a first call (classes), 10 warm-up calls,
then ``--calls`` timed calls over chunks of 200 rows (one minibatch each), of digits (64-100-10)
or of random CIFAR-sized data (3072-500-10). With ``--checkouts A B`` the processes import
mlplab from each checkout in turn, A B A B ..., so that the load of a shared machine hits both;
the table gives the median of each process's median per call, and the sum of the final first-
layer weights, which must agree between checkouts that train alike.

    python benchmarks/bench_partial_fit.py --size digits cifar --rounds 6
    python benchmarks/bench_partial_fit.py --checkouts /tmp/old /tmp/new --optimizer momentum
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHUNK = 200
ROOT = Path(__file__).resolve().parents[1]  # the checkout measured without --checkouts


def measure(size: str, optimizer: str, calls: int) -> dict[str, float]:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from mlplab.estimator import MLPClassifier

    if size == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X, hidden = (X / 16).astype(np.float32), (100,)
    else:
        rng = np.random.RandomState(0)
        X, y = rng.randn(2000, 3072).astype(np.float32), rng.randint(0, 10, 2000)
        hidden = (500,)
    chunks = [(X[i:i + CHUNK], y[i:i + CHUNK]) for i in range(0, len(X) - CHUNK + 1, CHUNK)]
    with threadpool_limits(1):
        clf = MLPClassifier(hidden_sizes=hidden, optimizer=optimizer, random_state=0)
        clf.partial_fit(*chunks[0], classes=np.arange(10))
        for i in range(10):
            clf.partial_fit(*chunks[i % len(chunks)])
        times = []
        for i in range(calls):
            start = time.perf_counter()
            clf.partial_fit(*chunks[i % len(chunks)])
            times.append(time.perf_counter() - start)
    return {"ms": 1e3 * float(np.median(times)),
            "w1_sum": float(clf.model_.params["W1"].astype(np.float64).sum())}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs="+", choices=("digits", "cifar"),
                        default=["digits", "cifar"])
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--calls", type=_positive, default=None,
                        help="timed calls per process (default 400 digits, 60 cifar)")
    parser.add_argument("--rounds", type=_positive, default=4)
    parser.add_argument("--checkouts", nargs="+", default=None,
                        help="mlplab checkouts to alternate (default: the one this script is "
                             "in)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        size, optimizer, calls = args.worker
        print(json.dumps(measure(size, optimizer, int(calls))))
        return
    checkouts = [os.path.abspath(c) for c in args.checkouts or [ROOT]]
    missing = [c for c in checkouts if not os.path.isfile(os.path.join(c, "mlplab", "__init__.py"))]
    if missing:
        parser.error(f"not an mlplab checkout: {', '.join(missing)}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    print(f"| size | checkout | ms per call (median of {args.rounds}) | range | W1 sum |")
    print("| --- | --- | --- | --- | --- |")
    for size in args.size:
        calls = args.calls or (400 if size == "digits" else 60)
        results: dict[str, list[dict[str, float]]] = {c: [] for c in checkouts}
        for _ in range(args.rounds):
            for checkout in checkouts:
                proc = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--worker", size,
                     args.optimizer, str(calls)],
                    env={**env, "PYTHONPATH": checkout}, cwd=checkout, capture_output=True,
                    text=True)
                if proc.returncode:  # e.g. an unknown --optimizer: the worker's own message
                    last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                    raise SystemExit(f"{size} worker of {checkout} failed: {last}")
                results[checkout].append(json.loads(proc.stdout.splitlines()[-1]))
        for checkout, runs in results.items():
            ms = [r["ms"] for r in runs]
            print(f"| {size} | {checkout} | {statistics.median(ms):.3f} | "
                  f"{min(ms):.3f}-{max(ms):.3f} | {runs[-1]['w1_sum']:.10e} |")


if __name__ == "__main__":
    main()
