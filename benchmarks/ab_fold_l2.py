"""What folding the L2 gradient into the weights' scale saves, measured in one process.

The same training step of an ``MLP(3072, [hidden], 10)`` (momentum SGD, L2, batch 200, the
trainer's gather) runs with the L2 term folded into the layers' scales (``Momentum.fused(model,
reg)``, what ``Trainer.fit`` does) and with the L2 gradient as a pass of its own
(``Momentum.fused(model)``), alternated in blocks of 50 steps, so that the host's drift hits both
alike. Whole benchmark runs cannot show a difference of this size on a shared machine.

    python benchmarks/ab_fold_l2.py --hidden 500 --threads 2 --rounds 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH, INPUTS, CLASSES, ROWS, STEPS = 200, 3072, 10, 10000, 50


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from mlplab.cli._types import positive_int

    p.add_argument("--hidden", type=positive_int, default=500,
                   help="hidden units of the 3072-H-10 net (default 500)")
    p.add_argument("--threads", type=positive_int, default=2, help="BLAS threads (default 2)")
    p.add_argument("--rounds", type=positive_int, default=20,
                   help="alternated blocks of each (default 20)")
    p.add_argument("--reg", type=float, default=1e-4,
                   help="L2 strength (default 1e-4)")
    a = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(a.threads)  # noqa: F841  (kept alive for the whole run)
    from mlplab import MLP
    from mlplab.blas import level1_threads
    from mlplab.optim import make_optimizer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, INPUTS), dtype=np.float32)
    y = rng.integers(0, CLASSES, ROWS)
    order = np.random.RandomState(0).permutation(ROWS)
    x_buf = np.empty((BATCH, INPUTS), np.float32)
    models = {kind: MLP(INPUTS, [a.hidden], CLASSES, seed=0) for kind in ("folded", "plain")}
    optimizers = {kind: make_optimizer("momentum", 1e-3) for kind in models}

    def block(kind: str) -> float:
        """Milliseconds per step over one block of steps."""
        model, opt = models[kind], optimizers[kind]
        with opt.fused(model, a.reg) if kind == "folded" else opt.fused(model):
            start = time.perf_counter()
            for i in range(STEPS):
                idx = order[i * BATCH:(i + 1) * BATCH]
                xb = np.take(X, idx, axis=0, out=x_buf, mode="clip")
                _, grads = model._loss_and_grads(xb, y[idx], a.reg)
                opt.step(model.params, grads)
            return (time.perf_counter() - start) / STEPS * 1e3

    times: dict[str, list[float]] = {"folded": [], "plain": []}
    with level1_threads():  # as Trainer.fit does (see mlplab.blas)
        block("folded"), block("plain")  # warm-up
        for r in range(a.rounds):
            for kind in ("folded", "plain") if r % 2 else ("plain", "folded"):
                times[kind].append(block(kind))
    folded, plain = np.array(times["folded"]), np.array(times["plain"])
    ratio = folded / plain
    print(f"hidden {a.hidden}, {a.threads} thread(s), {a.rounds} rounds of {STEPS} steps: "
          f"L2 as a pass {np.median(plain):.2f} ms/step, folded {np.median(folded):.2f} ms/step; "
          f"folded / plain {np.median(ratio):.3f} (quartiles {np.percentile(ratio, 25):.3f}-"
          f"{np.percentile(ratio, 75):.3f})")


if __name__ == "__main__":
    main()
