"""``mlplab torch train`` and ``mlplab torch depth``: the exercise's PyTorch MLP (Question 4).

A thin shell over :mod:`mlplab.torch_mlp`. This module imports PyTorch only when a command runs,
so ``mlplab --help`` works without it and a missing install is a one-line error saying what to
install.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mlplab.cli import UsageError, seed_arg, usage_errors
from mlplab.cli._types import int_list, positive_int
from mlplab.cli.data import add_dataset_arguments, load_dataset_from_args

if TYPE_CHECKING:
    import numpy as np
    import torch

    from mlplab.data import Dataset, Pipeline
    from mlplab.torch_mlp import DepthResult, MultiLayerPerceptron, TorchTrainConfig
    from mlplab.trainer import History

TORCH_CONFIG_FILE = "config.json"
TORCH_MODEL_FILE = "model.pt"
NUMPY_MODEL_FILE = "model.npz"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"


def _torch_mlp() -> ModuleType:
    """The library module, or a one-line error that says how to install PyTorch."""
    try:
        from mlplab import torch_mlp
    except ImportError as exc:
        from mlplab.cli import CLIError

        raise CLIError(str(exc)) from None
    return torch_mlp


def _hidden_list(text: str) -> list[int]:
    """``"50"`` -> [50]; ``"none"`` -> [] (softmax regression); an empty text is refused (an
    unset shell variable, not a network)."""
    if text.strip().lower() == "none":
        return []
    return int_list(text)


def _add_common(p: argparse.ArgumentParser, both: bool = False) -> None:
    """Model, training and runtime options shared by ``train`` and ``depth`` (``both``: allow
    ``--init both``)."""
    m = p.add_argument_group("model")
    m.add_argument("--init", choices=["exercise", "default", *(["both"] if both else [])],
                   default="exercise",
                   help="exercise: every Linear weight ~ N(0, std^2) with std --init-std, biases "
                        "0; default: PyTorch's own (Kaiming-uniform)"
                        + ("; both: one table per initialisation" if both else "")
                        + " (default: %(default)s)")
    m.add_argument("--init-std", type=float, default=1e-3, metavar="STD",
                   help="standard deviation of the exercise initialisation; the exercise's "
                        "normal_(0.0, 1e-3) takes a std, not a variance (default: %(default)g)")
    m.add_argument("--dropout", type=float, default=0.0, metavar="P",
                   help="dropout after each hidden ReLU (beyond the exercise; default: none)")
    m.add_argument("--batchnorm", action="store_true",
                   help="batch norm after each hidden Linear (beyond the exercise)")
    t = p.add_argument_group("training (defaults: the exercise's)")
    t.add_argument("--epochs", type=positive_int, default=10,
                   help="epochs (default: %(default)s)")
    t.add_argument("--batch-size", type=positive_int, default=200,
                   help="minibatch size (default: %(default)s)")
    t.add_argument("--lr", type=float, default=1e-3,
                   help="Adam learning rate (default: %(default)g)")
    t.add_argument("--reg", type=float, default=1e-3,
                   help="Adam weight_decay, as the exercise's reg (default: %(default)g)")
    t.add_argument("--lr-decay", type=float, default=0.95,
                   help="learning rate multiplied by this after every epoch "
                        "(default: %(default)g)")
    r = p.add_argument_group("runtime")
    r.add_argument("--seed", type=seed_arg, default=0,
                   help="seed of the weights, the shuffling and dropout (default: %(default)s)")
    r.add_argument("--data-seed", type=seed_arg, default=0,
                   help="seed of the stratified validation/test splits, kept apart from --seed "
                        "(default: %(default)s)")
    r.add_argument("--device", default="cpu", metavar="cpu|cuda|auto",
                   help="cpu (default), cuda or cuda:N (an error without a GPU), or auto (a GPU "
                        "when PyTorch sees one, else the CPU)")
    r.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="PyTorch CPU threads (default: every core this process may use)")
    r.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    r.add_argument("--verbose", action="store_true", help="print a line per epoch")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "torch", help="the exercise's PyTorch multi-layer perceptron (Question 4)",
        description="The exercise's PyTorch multi-layer perceptron: Linear + ReLU per hidden "
                    "layer, CrossEntropyLoss, Adam (lr 1e-3, weight decay 1e-3), batches of "
                    "200, 10 epochs, lr x 0.95 per epoch, inputs scaled to [0, 1] and normalised "
                    "with mean 0.5 / std 0.5 per channel. Needs PyTorch "
                    "(pip install 'mlplab[torch]').")
    tsub = p.add_subparsers(dest="torch_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    tr = tsub.add_parser(
        "train", help="train one network and write a run folder",
        description="Train one PyTorch MultiLayerPerceptron the exercise's way and write a run "
                    "folder like mlplab train's: config.json, model.pt (PyTorch), model.npz "
                    "(the same weights as an mlplab.MLP with the input preprocessing, readable "
                    "by mlplab.io.load_model), history.csv, metrics.json and the plots loss.png, "
                    "accuracy.png, confusion.png and (image data) weights.png.")
    add_dataset_arguments(tr)
    tr.add_argument("--hidden", type=_hidden_list, default=[50], metavar="H[,H...]",
                    help="hidden layer sizes, e.g. 50 (the exercise) or 100,50 "
                         "(default: 50)")
    _add_common(tr)
    o = tr.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", default=None,
                   help="run folder to create (default: runs/torch-<timestamp>)")
    o.add_argument("--eval-test", action="store_true",
                   help="also measure the test split (do it once, for the final model)")
    o.add_argument("--no-plots", dest="plots", action="store_false", help="write no figures")
    o.add_argument("--json", action="store_true", help="print the metrics as JSON")
    tr.set_defaults(func=run_train)

    dp = tsub.add_parser(
        "depth", help="the exercise's depth table: one network per depth",
        description="Train one network per depth ('2 layers' = one hidden layer, '5 layers' = "
                    "four) with --hidden-size units in every hidden layer, and write the "
                    "exercise's table: train and validation accuracy per depth and the test "
                    "accuracy of the best-by-validation network only (per initialisation), as "
                    "depth.md and depth.csv, a plot depth.png of accuracy against depth, and "
                    "depth.json with every number and the settings.")
    add_dataset_arguments(dp)
    dp.add_argument("--layers", type=int_list, default=[2, 3, 4, 5], metavar="D[,D...]",
                    help="depths, counted in Linear layers (default: 2,3,4,5)")
    dp.add_argument("--hidden-size", type=positive_int, default=50, metavar="H",
                    help="units in every hidden layer (default: %(default)s, the exercise's)")
    _add_common(dp, both=True)
    o = dp.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", default=None,
                   help="folder for the table and plot (default: runs/torch-depth-<timestamp>)")
    o.add_argument("--json", action="store_true", help="print the results as JSON")
    dp.set_defaults(func=run_depth)


# --------------------------------------------------------------------------------- helpers
def _default_dir(prefix: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = Path("runs") / f"{prefix}-{stamp}", 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{prefix}-{stamp}-{n}"
    return path


def _only_a_torch_config(path: Path) -> bool:
    """Whether run folder ``path`` holds a PyTorch run's config.json and nothing else (bar the
    hidden temporary files of interrupted writes): a run that stopped before it saved any
    result, e.g. on a diverged loss or a crash during training. Such a folder may be reused."""
    try:
        names = [p.name for p in path.iterdir() if not p.name.startswith(".")]
        if names != [TORCH_CONFIG_FILE]:
            return False
        config = json.loads((path / TORCH_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # unreadable: not ours to overwrite
    return isinstance(config, dict) and config.get("framework") == "pytorch"


def _check_out(path: Path, marker: str) -> None:
    """Refuse, in one line, an --out that cannot become a fresh run folder, before anything is
    loaded or written (mkdir's own errors would read "[Errno 17] File exists: ...")."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} exists and is a file, not a folder; choose another "
                         "--out.")
    if path.is_dir():
        if (path / marker).exists() and not (marker == TORCH_CONFIG_FILE
                                             and _only_a_torch_config(path)):
            raise ValueError(f"{path} already holds results ({marker}); choose another --out.")
        existing = path
    else:
        existing = path.parent  # the nearest folder above that exists, created from there
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing.exists() and not existing.is_dir():
            raise ValueError(f"cannot create --out {path}: {existing} is a file, not a folder; "
                             "choose another --out.")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to --out {path}: {existing} is not writable "
                         "(permission denied); choose another --out.")


def _new_dir(path: Path, marker: str) -> Path:
    """Create run folder ``path``, checked again by :func:`_check_out` (the file system may have
    changed while the data loaded); any other failure is still one line naming the folder."""
    _check_out(path, marker)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create --out {path}: {exc.strerror or exc}; choose another "
                      "--out.") from None
    return path


def _check_model_options(args: argparse.Namespace, tm: ModuleType) -> None:
    """The model flags the library checks only when it builds the model, after the data has
    loaded: checked first, so that a bad value is a usage error naming its flag and nothing is
    written."""
    from mlplab._validation import check_positive

    with usage_errors(("init_std",)):
        check_positive(args.init_std, "init_std")
    if not 0 <= args.dropout < 1:
        raise UsageError(f"--dropout must be in [0, 1); got {args.dropout}.")
    if args.batchnorm:
        with usage_errors(("batch_size",)):
            tm.check_batchnorm_batches(args.batch_size)


def _load(args: argparse.Namespace, tm: ModuleType
          ) -> tuple[Dataset, Pipeline, np.ndarray, np.ndarray | None]:
    from mlplab.runs import require_classes

    ds = load_dataset_from_args(args)
    if not len(ds.y_train):
        raise ValueError(f"the dataset {ds.name} has no training images.")
    require_classes(ds)
    pre = tm.input_pipeline()
    X = pre.fit_transform(ds.X_train)
    X_val = pre.transform(ds.X_val) if len(ds.y_val) else None
    return ds, pre, X, X_val


def _train_config(args: argparse.Namespace, tm: ModuleType
                  ) -> tuple[TorchTrainConfig, int, torch.device]:
    with usage_errors(("device",)):  # a misspelt device; a missing GPU stays a runtime error
        tm.parse_device(args.device)
    _check_model_options(args, tm)
    threads = tm.set_threads(args.threads)
    device = tm.select_device(args.device)
    cfg = tm.TorchTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              reg=args.reg, lr_decay=args.lr_decay, seed=args.seed,
                              device=str(device), threads=threads,
                              progress=args.progress and sys.stderr.isatty(),
                              verbose=args.verbose)
    with usage_errors(("lr", "reg", "lr_decay", "batch_size", "epochs")):  # the flags above
        cfg.validate()
    return cfg, threads, device


def _environment(threads: int, device: torch.device) -> dict[str, Any]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "device": str(device), "threads": threads, "cpus": os.cpu_count(),
            "machine": platform.machine()}


def describe(model: MultiLayerPerceptron) -> str:
    """``"PyTorch MLP 3072-50-10 relu"`` plus batch norm / dropout when used."""
    from mlplab.runs import describe_network

    c = model.config
    return describe_network("PyTorch MLP",
                            [c["input_size"], *c["hidden_layers"], c["num_classes"]], "relu",
                            c["batchnorm"], c["dropout"])


# ------------------------------------------------------------------------------- torch train
def run_train(args: argparse.Namespace) -> int:
    tm = _torch_mlp()
    from mlplab import io, plots
    from mlplab.runs import absolute_data_paths, require_test_split, split_record, write_history

    # everything that can fail is checked before the run folder is made: a folder left holding
    # only config.json would make the same command, rerun, say "already holds results"
    cfg, threads, device = _train_config(args, tm)
    out = Path(args.out) if args.out else _default_dir("torch")
    _check_out(out, TORCH_CONFIG_FILE)
    ds, pre, X, X_val = _load(args, tm)
    if args.eval_test:
        require_test_split(ds)
    if args.batchnorm:
        tm.check_batchnorm_batches(cfg.batch_size, len(ds.y_train))
    model = tm.build_model(X.shape[1], args.hidden, ds.num_classes, init=args.init,
                           std=args.init_std, dropout=args.dropout, batchnorm=args.batchnorm,
                           seed=args.seed)
    dataset, data_dir = absolute_data_paths(args.dataset, args.data_dir)  # as mlplab train's
    config = {
        "framework": "pytorch", "dataset": dataset, "data_dir": data_dir,
        "val_size": args.val_size, "test_size": args.test_size, "image_size": args.image_size,
        "data_seed": args.data_seed, "preprocessing": "torch", "hidden": args.hidden,
        "init": args.init, "init_std": args.init_std, "dropout": args.dropout,
        "batchnorm": args.batchnorm, **{k: v for k, v in cfg.to_dict().items()
                                         if k not in ("progress", "verbose", "threads")},
        "device": args.device, "threads": args.threads, "eval_test": args.eval_test,
    }
    _new_dir(out, TORCH_CONFIG_FILE)
    io.write_json(out / TORCH_CONFIG_FILE, config)
    print(f"training {describe(model)} on {ds.name} ({len(ds.y_train)} train, "
          f"{len(ds.y_val)} val), {cfg.epochs} epochs, device {device}, {threads} threads",
          file=sys.stderr, flush=True)
    start = time.perf_counter()
    history = tm.fit(model, X, ds.y_train, X_val, ds.y_val if X_val is not None else None, cfg)
    seconds = time.perf_counter() - start

    metrics: dict[str, Any] = {
        "status": "interrupted" if history.interrupted else "completed",
        "train_accuracy": tm.accuracy(model, X, ds.y_train),
        "val_accuracy": tm.accuracy(model, X_val, ds.y_val) if X_val is not None else None,
    }
    if args.eval_test and not history.interrupted:
        metrics["test_accuracy"] = tm.accuracy(model, pre.transform(ds.X_test), ds.y_test)
    per_epoch = tm.batches_per_epoch(len(ds.y_train), cfg.batch_size, args.batchnorm)
    metrics.update({
        "best_val_accuracy": history.best_val_acc if history.best_epoch > 0 else None,
        "best_epoch": history.best_epoch if history.best_epoch > 0 else None,
        "stopped_early": False,
        "epochs": len(history.val_acc),
        "iterations": len(history.loss),
        "seconds": round(seconds, 3),
        "final_loss": history.loss[-1] if history.loss else None,
        "dataset": ds.name,
        "model": describe(model),
        "num_params": int(sum(p.numel() for p in model.parameters())),
        "preset": None,
        "seed": args.seed,
        **split_record(ds),
        "framework": "pytorch",
        "init": args.init,
        **_environment(threads, device),
    })
    extra = {"classes": list(ds.classes), "dataset": ds.name,
             "image_shape": list(ds.image_shape), "framework": "pytorch"}
    model.cpu()
    tm.save_torch_model(out / TORCH_MODEL_FILE, model, extra)
    # the same weights as an mlplab.MLP, with the preprocessing, for the NumPy side of mlplab
    io.save_model(out / NUMPY_MODEL_FILE, tm.to_numpy(model), pre, {**extra, "metrics": metrics})
    write_history(out / HISTORY_FILE, history, per_epoch)
    if args.plots:
        _train_plots(out, model, history, ds, X_val, tm, plots)
    io.write_json(out / METRICS_FILE, metrics)  # last: its presence marks a finished run

    if args.json:
        print(json.dumps({**metrics, "out": str(out)}, indent=2))
    else:
        line = f"train {metrics['train_accuracy']:.4f}"
        if metrics["val_accuracy"] is not None:
            line += f", val {metrics['val_accuracy']:.4f}"
        if "test_accuracy" in metrics:
            line += f", test {metrics['test_accuracy']:.4f}"
        print(f"{metrics['status']}: {line} after {metrics['epochs']} epochs "
              f"({seconds:.1f}s); run folder {out}")
    return 130 if history.interrupted else 0


def _train_plots(out: Path, model: MultiLayerPerceptron, history: History, ds: Dataset,
                 X_val: np.ndarray | None, tm: ModuleType, plots: ModuleType) -> None:
    plots.save(plots.plot_loss(history.loss, title="Training loss (PyTorch MLP)"),
               out / "loss.png")
    from mlplab.trainer import train_acc_label

    # as mlplab train's accuracy.png: the curve is fit's per-epoch train accuracy, on a fixed
    # subset, not the whole-split figure in metrics.json
    plots.save(plots.plot_accuracy(history.train_acc, history.val_acc,
                                   title="Classification accuracy (PyTorch MLP)",
                                   train_label=train_acc_label("subset")),
               out / "accuracy.png")
    if X_val is not None:
        cm = plots.confusion_matrix(ds.y_val, tm.predict(model, X_val), ds.num_classes)
        plots.save(plots.plot_confusion(cm, ds.classes, title="Confusion matrix (validation)"),
                   out / "confusion.png")
    if model.config["hidden_layers"]:
        W1 = model.linears[0].weight.detach().cpu().numpy().T  # (D, H), mlplab's layout
        plots.save(plots.plot_first_layer_weights(W1, ds.image_shape), out / "weights.png")


# ------------------------------------------------------------------------------- torch depth
def run_depth(args: argparse.Namespace) -> int:
    tm = _torch_mlp()
    from mlplab import io, plots

    cfg, threads, device = _train_config(args, tm)
    inits = ["exercise", "default"] if args.init == "both" else [args.init]
    out = Path(args.out) if args.out else _default_dir("torch-depth")
    _check_out(out, "depth.json")
    ds, pre, X, X_val = _load(args, tm)
    if X_val is None:
        raise ValueError("the depth table picks the best network by validation accuracy; the "
                         "dataset has no validation split (set --val-size).")
    if args.batchnorm:
        tm.check_batchnorm_batches(cfg.batch_size, len(ds.y_train))
    _new_dir(out, "depth.json")  # before the networks train: a bad --out fails now, not later
    X_test = pre.transform(ds.X_test) if len(ds.y_test) else None
    total = len(inits) * len(args.layers)
    print(f"{total} networks on {ds.name} ({len(ds.y_train)} train, {len(ds.y_val)} val, "
          f"{len(ds.y_test)} test), hidden size {args.hidden_size}, {cfg.epochs} epochs each, "
          f"device {device}, {threads} threads", file=sys.stderr, flush=True)
    done = []

    def report(r: DepthResult) -> None:
        done.append(r)
        print(f"[{len(done)}/{total}] {r.init} init, {r.depth} layers: train "
              f"{100 * r.train_acc:.1f}%, val {100 * r.val_acc:.1f}% ({r.seconds:.0f}s)",
              file=sys.stderr, flush=True)

    start = time.perf_counter()
    results = tm.depth_study(X, ds.y_train, X_val, ds.y_val, X_test,
                             ds.y_test if X_test is not None else None, depths=args.layers,
                             hidden_size=args.hidden_size, inits=inits, std=args.init_std,
                             dropout=args.dropout, batchnorm=args.batchnorm, config=cfg,
                             num_classes=ds.num_classes, on_result=report)
    seconds = time.perf_counter() - start
    md = tm.depth_table_markdown(results)
    if X_test is None:
        md += "\nNo test split: test accuracy not measured.\n"
    io.write_text(out / "depth.md", md)
    io.write_text(out / "depth.csv", tm.depth_table_csv(results))
    plots.save(tm.plot_depth(results), out / "depth.png")
    summary = {
        "dataset": ds.name, "train_size": int(len(ds.y_train)), "val_size": int(len(ds.y_val)),
        "test_size": int(len(ds.y_test)), "notes": list(ds.notes),
        "layers": args.layers, "hidden_size": args.hidden_size, "inits": inits,
        "init_std": args.init_std, "dropout": args.dropout, "batchnorm": args.batchnorm,
        "training": {k: v for k, v in cfg.to_dict().items() if k not in ("progress", "verbose")},
        "data_seed": args.data_seed, "seconds": round(seconds, 1),
        "environment": _environment(threads, device),
        "results": [r.to_dict() for r in results],
    }
    io.write_json(out / "depth.json", summary)
    if args.json:
        print(json.dumps({**summary, "out": str(out)}, indent=2))
    else:
        print(md, end="")
        print(f"\n{len(results)} networks in {seconds:.0f}s; table, CSV and plot in {out}")
    return 0
