"""How the time of a training epoch depends on the batch size, measured in one process.

Epochs of ``Trainer.fit`` on random rows, the same network, optimiser and dropout each time, with
the batch sizes given alternated round by round, so that the host's drift hits them alike. The
default is ``deep-best-fashion``'s net (784-1024-1024-10, dropout 0.2, momentum); the figure it
prints is each batch size's median epoch time as a ratio to the first's.

    python benchmarks/batch_epoch.py --batches 128 256 --rounds 3 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from mlplab.cli._types import hidden_sizes, positive_int

    p.add_argument("--batches", type=positive_int, nargs="+", default=[128, 256],
                   help="batch sizes to compare (default 128 256)")
    p.add_argument("--hidden", type=hidden_sizes, default=[1024, 1024],
                   help="hidden sizes (default 1024,1024)")
    p.add_argument("--inputs", type=positive_int, default=784,
                   help="input features (default 784, Fashion-MNIST's)")
    p.add_argument("--rows", type=positive_int, default=25600,
                   help="random rows per epoch (default 25600)")
    p.add_argument("--dropout", type=float, default=0.2,
                   help="dropout after each hidden layer, in [0, 1) (default 0.2)")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="epochs of each batch size, alternated (default 3)")
    p.add_argument("--threads", type=positive_int, default=2, help="BLAS threads (default 2)")
    a = p.parse_args(argv)
    if not 0 <= a.dropout < 1:  # a usage error, not MLP's traceback
        p.error(f"--dropout must be in [0, 1); got {a.dropout}")
    if a.rows < max(a.batches):  # the trainer would clamp the batch: the same work compared
        p.error(f"--rows must be at least the largest of --batches ({max(a.batches)}); got "
                f"{a.rows}")
    if len(set(a.batches)) < len(a.batches):
        p.error(f"--batches must differ; got {a.batches}")

    from threadpoolctl import threadpool_limits

    from mlplab import MLP, Trainer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((a.rows, a.inputs)).astype(np.float32)
    y = rng.integers(10, size=a.rows)
    seconds: dict[int, list[float]] = {b: [] for b in a.batches}
    with threadpool_limits(a.threads):
        # one untimed epoch first (allocator, BLAS and caches warmed up), so that the first
        # batch size listed does not pay for it in every comparison
        Trainer(optimizer="momentum", lr=0.01, epochs=1, batch_size=a.batches[0], reg=5e-5,
                seed=0).fit(MLP(a.inputs, a.hidden, 10, dropout=a.dropout, seed=0), X, y)
        for _ in range(a.rounds):
            for batch in a.batches:
                model = MLP(a.inputs, a.hidden, 10, dropout=a.dropout, seed=0)
                trainer = Trainer(optimizer="momentum", lr=0.01, epochs=1, batch_size=batch,
                                  reg=5e-5, seed=0)
                start = time.perf_counter()
                trainer.fit(model, X, y)
                seconds[batch].append(time.perf_counter() - start)
    first = float(np.median(seconds[a.batches[0]]))
    for batch, times in seconds.items():
        print(f"batch {batch}: epoch {', '.join(f'{t:.2f}' for t in times)} s; median "
              f"{np.median(times):.2f} s = {np.median(times) / first:.2f}x batch "
              f"{a.batches[0]}'s")


if __name__ == "__main__":
    main()
