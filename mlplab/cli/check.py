"""``mlplab check`` and ``mlplab gradcheck``: the exercise's checks and gradient checks."""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import TYPE_CHECKING

import numpy as np

from mlplab.cli import seed_arg, usage_errors
from mlplab.cli._types import parse_sizes

if TYPE_CHECKING:
    from mlplab.models import MLP


def register(sub: argparse._SubParsersAction) -> None:
    from mlplab.models import ACTIVATIONS  # with those registered by plugins (--plugin)

    p = sub.add_parser(
        "check", help="run the exercise's own checks (Q1 forward/loss, Q2 gradients, Q3 toy SGD)",
        description="Run the exercise's checks on its toy problem (4 inputs, 10 hidden ReLU "
                    "units, 3 classes, 5 samples) in float64, printing each number the exercise "
                    "gives beside mlplab's and their difference: Q1, the forward pass's "
                    "probabilities against its correct_scores (sum of |differences| < 1e-7) and "
                    "the loss against 1.30378789133 with reg 0.05 and 1.2658570521180532 with "
                    "reg 0 (each within 1e-10); Q2, each gradient against centred differences "
                    "(max relative error < 1e-8); Q3, toy SGD training (final loss < 0.02; the "
                    "exercise's is about 0.0171). Exits 0 when every check passes, 1 if any "
                    "fails.")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON: per check its name, value (the error, or "
                        "Q3's loss), bound, passed, description, measured and expected (null "
                        "for a gradient, whose reference is computed)")
    p.set_defaults(func=run_check)

    g = sub.add_parser(
        "gradcheck", help="gradient-check an MLP of any depth on random data",
        description="Build a float64 MLP with the given hidden sizes and layers, draw random "
                    "data (standard normal inputs, uniform labels; biases drawn away from 0, so "
                    "that ReLU inputs avoid its kink at 0) and compare, for every parameter, the "
                    "gradient of the loss (softmax cross-entropy + reg * sum of squared "
                    "weights, no 0.5) from the backward pass with centred differences "
                    "(h=1e-5); dropout masks are held fixed meanwhile. Prints each parameter's "
                    "relative error; exits 0 when every one is below --tol, 1 if any is not.")
    g.add_argument("--hidden", default="32,16", metavar="H[,H...]",
                   help="comma-separated hidden sizes, e.g. 32,16, or 'none' for no hidden "
                        "layer (default: %(default)s)")
    g.add_argument("--inputs", type=int, default=12,
                   help="input features of the random data (default: %(default)s)")
    g.add_argument("--classes", type=int, default=5,
                   help="output classes, at least 2 (default: %(default)s)")
    g.add_argument("--samples", type=int, default=8,
                   help="rows of random data in the checked batch (default: %(default)s)")
    g.add_argument("--reg", type=float, default=0.05,
                   help="L2 strength: the loss adds reg * the sum of squared weights (no 0.5, "
                        "biases not penalised) (default: %(default)s)")
    g.add_argument("--seed", type=seed_arg, default=0,
                   help="seed of the weights, the data and the dropout masks: another seed "
                        "checks another draw (default: %(default)s)")
    g.add_argument("--dropout", type=float, default=0.0, metavar="P",
                   help="dropout probability after each hidden layer (default: none)")
    g.add_argument("--batchnorm", action="store_true",
                   help="add batch norm (training mode: the batch's own statistics) after each "
                        "hidden affine layer")
    g.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                   help="check the softmax cross-entropy against smoothed targets (1 - EPS) "
                        "onehot(y) + EPS / classes, as mlplab train --label-smoothing trains "
                        "with (default: 0, the exercise's one-hot targets)")
    # default None: a --hidden none check can tell a given --activation from the default
    g.add_argument("--activation", default=None, choices=list(ACTIVATIONS),
                   help="hidden activation (default: relu); one of your own is checked with "
                        "mlplab --plugin MODULE gradcheck --activation NAME, MODULE "
                        "registering it (docs/architecture.md)")
    g.add_argument("--tol", type=float, default=None,
                   help="fail above this relative error (default: 1e-7 with --metric norm, "
                        "1e-5 with --metric max; a missing term or a wrong factor gives 1e-2 "
                        "or more by either, a gradient 1%% off about 4e-3)")
    g.add_argument("--metric", choices=["norm", "max"], default="norm",
                   help="norm: ||a-n|| / (||a||+||n||) per parameter (default); max: the "
                        "exercise's element-wise max |a-n| / (|a|+|n|), which in float64 reaches "
                        "1e-7..1e-6 from rounding alone on near-zero entries of deeper nets, and "
                        "on some seeds 1e-5..1e-4 (above its default --tol)")
    g.add_argument("--json", action="store_true",
                   help="print the results as JSON")
    g.set_defaults(func=run_gradcheck)


#: default --tol of mlplab gradcheck by --metric
TOLERANCE = {"norm": 1e-7, "max": 1e-5}


def _print_table(rows: list[tuple[str, float, float, bool]]) -> None:
    """``mlplab gradcheck``'s rows: parameter and shape, its relative error, --tol, verdict."""
    width = max(len("parameter"), *(len(r[0]) for r in rows))
    print(f"{'parameter':<{width}}  {'rel. error':>12}  {'--tol':>8}  result")
    for name, value, bound, passed in rows:
        print(f"{name:<{width}}  {value:12.3e}  {bound:8.0e}  {'PASS' if passed else 'FAIL'}")


def run_check(args: argparse.Namespace) -> int:
    from mlplab.exercise import run_checks

    results = run_checks()
    ok = all(r.passed for r in results)
    if args.json:
        # strict JSON: NaN (a failed check) as null
        checks = [{k: _json_number(v) for k, v in r.as_dict().items()} for r in results]
        print(json.dumps({"passed": ok, "checks": checks}, indent=2))
    else:
        _print_checks(results)
        failed = sum(not r.passed for r in results)
        print(f"all {len(results)} checks passed" if ok else
              f"SOME CHECKS FAILED: {failed} of {len(results)}")
    return 0 if ok else 1


def _json_number(value: object) -> object:
    """``value`` with NaN as None (strict JSON has no NaN), in nested lists too."""
    if isinstance(value, list):
        return [_json_number(v) for v in value]
    return None if isinstance(value, float) and value != value else value


def _verdict(value: float, bound: float, passed: bool) -> str:
    """``< bound  PASS`` or ``>= bound  FAIL`` (``is NaN  FAIL``): the comparison the check
    made, so that a student sees what the bound is for."""
    if value != value:
        return "is NaN  FAIL"
    return f"< {bound:g}  PASS" if passed else f">= {bound:g}  FAIL"


def _print_checks(results: list) -> None:
    """``mlplab check``'s text: each question's measured numbers beside the exercise's, their
    difference and the bound it must stay below."""
    from mlplab.exercise import (
        HIDDEN_SIZE,
        INPUT_SIZE,
        NUM_CLASSES,
        NUM_INPUTS,
        TOY_REG,
        toy_model,
    )

    by_name = {r.name: r for r in results}
    print(f"The exercise's toy problem in float64: {INPUT_SIZE} inputs, {HIDDEN_SIZE} hidden "
          f"ReLU units, {NUM_CLASSES} classes, {NUM_INPUTS} samples.")

    probs = by_name["Q1 probabilities"]
    print("\nQ1 forward pass: softmax probabilities p, one row per sample, against the "
          "exercise's\n  correct_scores (given to 8 decimals, so each entry differs by up to 5e-9)")
    width = 13 * NUM_CLASSES
    print(f"  {'sample':<7} {'p (mlplab)':<{width}} {'expected':<{11 * NUM_CLASSES}}  "
          "sum |diff|")
    for i, (row, want) in enumerate(zip(probs.measured, probs.expected)):
        diff = float(np.sum(np.abs(np.subtract(row, want))))
        print(f"  {i:<7} {' '.join(f'{v:12.10f}' for v in row):<{width}} "
              f"{' '.join(f'{v:10.8f}' for v in want):<{11 * NUM_CLASSES}}  {diff:.3e}")
    print(f"  sum of |p - expected| over all entries: {probs.value:.3e} "
          f"{_verdict(probs.value, probs.bound, probs.passed)}")

    print("\nQ1 loss J = mean of -log p[y] + reg * (||W1||^2 + ||W2||^2): no 0.5, biases not "
          "penalised")
    for name, label in (("Q1 loss", f"loss, reg {TOY_REG:g}"), ("Q1 data term",
                                                                "data term, reg 0")):
        r = by_name[name]
        print(f"  {label:<17} {r.measured!r:<19} expected {r.expected!r:<19} |diff| "
              f"{r.value:.3e} {_verdict(r.value, r.bound, r.passed)}")

    shapes = {k: v.shape for k, v in toy_model().params.items()}
    print(f"\nQ2 gradients, reg {TOY_REG:g}: the backward pass's a against centred differences "
          "n (h = 1e-5).\n  error: max over the parameter's entries of |a - n| / max(1e-8, "
          "|a| + |n|), a relative\n  error (1e-9: a and n agree to about 9 significant digits)")
    for r in results:
        if r.name.startswith("Q2 gradient "):
            param = r.name.removeprefix("Q2 gradient ")
            label = f"{param} {shapes.get(param, '')}"
            print(f"  {label:<11} error {r.value:.3e} {_verdict(r.value, r.bound, r.passed)}")

    toy = by_name["Q3 toy SGD loss"]
    print("\nQ3 toy SGD: lr 0.1, reg 5e-6, 100 iterations on batches of 200 drawn with "
          "replacement\n  from the 5 samples")
    if toy.measured != toy.measured:
        print(textwrap.fill(f"{toy.description}  FAIL", 96, initial_indent="  ",
                            subsequent_indent="  "))
    else:
        print(f"  final loss {toy.measured:.7f} (the exercise's: about {toy.expected}) "
              f"{_verdict(toy.value, toy.bound, toy.passed)}")
    print()


def run_gradcheck(args: argparse.Namespace) -> int:
    from mlplab import MLP
    from mlplab._validation import check_range
    from mlplab.gradcheck import check_model, offset_biases

    # MLP's and the loss layer's checks name their argument; here it is a flag
    with usage_errors(("dropout", "label_smoothing")):
        try:
            hidden = parse_sizes(args.hidden)
        except ValueError as exc:  # (the message said "hidden sizes", not which flag)
            raise ValueError(f"--hidden: {exc}") from None
        for name in ("samples", "inputs"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name} must be at least 1; got {getattr(args, name)}.")
        if args.classes < 2:
            raise ValueError(f"--classes must be at least 2; got {args.classes}.")
        if args.batchnorm and args.samples < 3:
            # one row is its own batch mean: every gradient through batch norm is zero, so a
            # wrong backward pass would pass; two rows are mapped to -1 and +1 whatever they
            # are, and a unit whose two inputs lie within about sqrt(eps) of each other gives
            # a numerical gradient of truncation error alone: correct code failed on 2 seeds
            # of 6 (3 rows: none of 10)
            raise ValueError(f"--batchnorm needs --samples of at least 3 (with 2 rows batch "
                             f"norm maps every unit to -1 and +1, and the check of a correct "
                             f"network fails on some seeds); got {args.samples}.")
        if not hidden:  # the check would pass, and print them, without having checked them
            from mlplab.runs.config import HIDDEN_LAYER_OPTIONS, refuse_without_hidden_layer

            refuse_without_hidden_layer(k for k in HIDDEN_LAYER_OPTIONS if getattr(args, k))
        args.activation = args.activation or "relu"
        if args.tol is None:
            # the element-wise figure of a correct deeper net reaches 1e-7..1e-6 from float64
            # rounding alone (near-zero entries), so 1e-7 would fail correct code; on 3 of 30
            # seeds of the default net it reaches 1.4e-5..1.2e-4, which 1e-5 fails too
            args.tol = TOLERANCE[args.metric]
        if not 0 < args.tol < float("inf"):  # inf passed every gradient: no check at all
            raise ValueError(f"--tol must be a finite number > 0; got {args.tol}.")
        if not 0 <= args.reg < float("inf"):
            raise ValueError(f"--reg must be a finite number >= 0; got {args.reg}.")
        # Xavier init keeps activations O(1) for every activation, away from saturation
        check_range(args.label_smoothing, "label_smoothing", 0, 1, high_open=True)
        model = MLP(args.inputs, hidden, args.classes, init="xavier", seed=args.seed,
                    dtype=np.float64, dropout=args.dropout, batchnorm=args.batchnorm,
                    activation=args.activation)
        # what Trainer sets for a run with label smoothing: the loss the check differentiates
        model.output.label_smoothing = args.label_smoothing
    rng = np.random.RandomState(args.seed)
    X = rng.randn(args.samples, args.inputs)
    y = rng.randint(args.classes, size=args.samples)
    offset_biases(model, rng)
    errors = check_model(model, X, y, reg=args.reg, metric=args.metric)
    ok = all(e < args.tol for e in errors.values())
    notes = [] if ok else _failure_notes(model, X, args.metric)
    has_nan = any(e != e for e in errors.values())
    if not ok and args.metric == "norm" and not has_nan:
        from mlplab.gradcheck import rounding_floor

        floor = rounding_floor(model, X, y, args.reg)
        # near --tol, rounding alone can carry a correct gradient over it; (above 1e-8: the
        # default net's floor is about 1e-9, which a --tol of 1e-30 is not failed for)
        # (and the error itself within reach of rounding: a wrong backward, or a unit on the
        # kink, gives far more, which the note must not explain away)
        near = [k for k, e in errors.items()
                if not e < args.tol and floor[k] > max(args.tol / 3, 1e-8) and e <= 10 * floor[k]]
        if near:
            notes.append(f"rounding alone can give {', '.join(near)} a relative error of up to "
                         f"about {max(floor[k] for k in near):.0e} here (float64's eps x the "
                         "loss / 2h, over the gradient's norm): the loss is large (a large "
                         "--reg) and the gradient small, so correct code can fail --tol; lower "
                         "--reg or raise --tol.")
    if has_nan:  # from the backward pass, or the loss
        from mlplab.gradcheck import nan_cause

        notes.insert(0, nan_cause(model, X, y, args.reg) + ".")
    if args.json:
        settings = {"inputs": args.inputs, "hidden": hidden, "classes": args.classes,
                    "samples": args.samples, "activation": args.activation,
                    "dropout": args.dropout, "batchnorm": args.batchnorm, "reg": args.reg,
                    "label_smoothing": args.label_smoothing, "seed": args.seed}
        print(json.dumps({"passed": ok, "tol": args.tol, "metric": args.metric,
                          "settings": settings,
                          # strict JSON: NaN as null (it fails, as the verdict says)
                          "errors": {k: None if e != e else e for k, e in errors.items()},
                          "shapes": {k: list(model.params[k].shape) for k in errors},
                          "notes": notes}, indent=2))
    else:
        # (no hidden layer: no activation, dropout or batch norm to name); in words, not
        # Python's ("dropout 0.0, batchnorm False" made the line 101 columns wide)
        dropout = f"dropout {args.dropout:g}" if args.dropout else "no dropout"
        batchnorm = "batch norm" if args.batchnorm else "no batch norm"
        layers = f"activation {args.activation}, {dropout}, {batchnorm}, " if hidden else ""
        smoothing = (f", label smoothing {args.label_smoothing:g}" if args.label_smoothing
                     else "")
        print(f"MLP {args.inputs} -> {hidden} -> {args.classes}, {layers}reg {args.reg:g}"
              f"{smoothing}")
        for line in _explanation(args, bool(hidden and args.dropout)):
            print(line)
        _print_table([(f"{k} {model.params[k].shape}", v, args.tol, v < args.tol)
                      for k, v in errors.items()])
        failed = sum(not e < args.tol for e in errors.values())  # (NaN fails)
        print(f"all {len(errors)} gradients match: every relative error is below --tol "
              f"{args.tol:g}" if ok else
              f"{failed} of {len(errors)} parameters above --tol {args.tol:g}")
        for note in notes:
            print(f"note: {note}")
    return 0 if ok else 1


def _explanation(args: argparse.Namespace, dropout: bool) -> list[str]:
    """What a row of ``mlplab gradcheck`` measures and what its bound means, for a reader who
    has not read --help (a student): the two gradients compared, the formula, and the figures
    correct and wrong code give."""
    if args.metric == "norm":
        formula = "||a - n|| / (||a|| + ||n||) over the parameter's whole gradient"
        scale = "correct code gives about 1e-10, a wrong term 1e-3 or more"
    else:
        formula = "max over the parameter's entries of |a - n| / max(1e-8, |a| + |n|)"
        scale = "correct code gives 1e-10..1e-6, a wrong term 1e-3 or more"
    lines = [f"{args.samples} random samples (seed {args.seed}); a: the backward pass's "
             "gradient, n: centred differences, h = 1e-5",
             f"rel. error: {formula} (no unit;",
             f"  {scale}); a parameter passes below --tol {args.tol:g}"]
    if dropout:
        lines.append("dropout masks are held fixed, so that the loss is a function of the "
                     "weights alone")
    return lines


#: a hidden unit's input nearer than this to an activation's kink at 0 may be straddled by the
#: check's centred differences (h = 1e-5 on a weight moves a unit by about 1e-5 times its inputs)
NEAR_KINK = 1e-4


def _failure_notes(model: MLP, X: np.ndarray, metric: str) -> list[str]:
    """Why correct code can fail a check, where it applies: a unit on an activation's kink, or
    rounding on near-zero entries under --metric max. A wrong backward pass fails either way."""
    from mlplab.gradcheck import nearest_kink

    notes = []
    kink = nearest_kink(model, X)
    if kink is not None and kink < NEAR_KINK:
        notes.append(f"a hidden unit's input is {kink:.1e} from the activation's kink at 0: a "
                     "centred difference (h = 1e-5) that straddles it measures neither slope, so "
                     "even a correct backward pass fails there. Rerun with another --seed: a "
                     "wrong backward pass fails on every seed.")
    if metric == "max":
        notes.append("the element-wise figure of a correct net can exceed --tol through float64 "
                     "rounding on entries whose gradient is nearly zero (about 2e-11 absolute); "
                     "--metric norm (the default) judges each parameter's whole gradient.")
    return notes
