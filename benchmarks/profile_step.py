"""Where a training step of mlplab's engine spends its time, part by part.

Replays exactly what ``Trainer`` does for one step of an ``MLP(3072, [hidden], 10)`` with momentum
SGD and L2 (gather, forward, loss, backward, update; momentum fused into the weight-gradient
product and L2 folded into the layers' scales, as ``Momentum.fused`` does), timing each part with
``time.perf_counter`` around it, over many steps after a warm-up. The two large matrix products
are timed on their own, so the table splits the step into the GEMM floor and everything else.

    python benchmarks/profile_step.py --hidden 500 --threads 2
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
    from mlplab.cli._types import positive_int

    p.add_argument("--hidden", type=positive_int, default=500,
                   help="hidden units of the 3072-H-10 net (default 500)")
    p.add_argument("--threads", type=positive_int, default=2, help="BLAS threads (default 2)")
    p.add_argument("--steps", type=positive_int, default=100,
                   help="steps timed (default 100)")
    p.add_argument("--reg", type=float, default=1e-4,
                   help="L2 strength (default 1e-4)")
    a = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(a.threads)  # noqa: F841  (kept alive for the whole run)
    from mlplab import MLP
    from mlplab.blas import gemm_tn, level1_threads
    from mlplab.optim import make_optimizer

    B, D, K, N = 200, 3072, 10, 20000
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    y = rng.integers(0, K, N)
    order = np.random.RandomState(0).permutation(N)
    model = MLP(D, [a.hidden], K, seed=0)
    opt = make_optimizer("momentum", 1e-3)
    affine1, relu, affine2 = model.layers
    x_buf = np.empty((B, D), np.float32)
    totals: dict[str, float] = {}

    def step(i: int) -> None:
        marks = [time.perf_counter()]

        def lap(name: str) -> None:
            marks.append(time.perf_counter())
            totals[name] = totals.get(name, 0.0) + marks[-1] - marks[-2]

        idx = order[(i % 100) * B:(i % 100 + 1) * B]
        xb = np.take(X, idx, axis=0, out=x_buf, mode="clip")
        yb = y[idx]
        lap("gather 200 rows")
        W1 = affine1.params["W"]
        z = affine1._buffer("out", (B, a.hidden), W1.dtype)
        np.matmul(xb, W1, out=z)  # Affine.forward, its product and its bias apart
        affine1._x = xb
        lap("GEMM X W1")
        if affine1.scale != 1:
            z *= z.dtype.type(affine1.scale)
        z += affine1.params["b"]
        relu.forward(z)
        scores = affine2.forward(z)
        model.output.forward(scores, yb)
        lap("bias, ReLU, layer 2, softmax")
        loss = model.output.loss + model.penalty(a.reg)  # noqa: F841
        lap("penalty reg ||W||^2 (reads W1)")
        d = affine2.backward(model.output.backward())
        d = relu.backward(d)
        lap("softmax, layer 2, ReLU backward")
        # Affine.backward's product, into the velocity (v = mu v + X^T dZ1: Momentum.fused)
        decay = affine1.weight_grad_decay  # None when nothing is folded (reg 0)
        gemm_tn(xb, d, affine1.grads["W"],
                beta=affine1.grad_decay if decay is None else decay)
        lap("GEMM X^T dZ1 (into the velocity)")
        db = affine1.grads["b"]
        db *= db.dtype.type(affine1.grad_decay)
        db += d.sum(axis=0)
        lap("db1")  # the L2 gradient is folded into the update (Momentum.fused with reg)
        opt.step(model.params, model.grads)
        lap("update (one pass over W1; with L2 folded, A -= (lr / s) v)")

    # as Trainer.fit does (see mlplab.blas)
    with level1_threads(), opt.fused(model, a.reg):
        for i in range(10):
            step(i)
        totals.clear()
        for i in range(a.steps):
            step(i)
    ms = {k: 1e3 * v / a.steps for k, v in totals.items()}
    gemm = sum(v for k, v in ms.items() if k.startswith("GEMM"))
    print(f"hidden {a.hidden}, {a.threads} BLAS thread(s), {a.steps} steps\n")
    print("| part | ms per step |\n| --- | --- |")
    for k, v in ms.items():
        print(f"| {k} | {v:.2f} |")
    rest = sum(ms.values()) - gemm
    print(f"| **all but the two large products** | **{rest:.2f} ({100 * rest / gemm:.0f}% of "
          f"them)** |")


if __name__ == "__main__":
    main()
