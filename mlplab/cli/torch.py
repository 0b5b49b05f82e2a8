"""``mlplab torch train`` and ``mlplab torch depth``: the exercise's PyTorch MLP (Question 4).

A thin shell over :mod:`mlplab.torch_mlp`: the options are parsed and checked here, and
:func:`mlplab.torch_mlp.train_run` and :func:`~mlplab.torch_mlp.depth_run` do the work and write
the folders. This module imports PyTorch only when a command runs, so ``mlplab --help`` works
without it and a missing install is a one-line error saying what to install.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from mlplab import interrupts
from mlplab._text import counted, duration, path_word, shell_command
from mlplab.cli import (
    STARTS_AGAIN,
    add_no_progress,
    continue_with,
    flag,
    interrupted_line,
    json_stdout,
    not_saved_advice,
    note_if_at_chance,
    print_run_result,
    resumable,
    run_folder,
    seed_arg,
    split_seed_arg,
    usage_errors,
)
from mlplab.cli._types import int_list, positive_int, user_path_arg
from mlplab.cli.data import add_dataset_arguments


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
    return int_list(text, example="100,50")  # (hidden sizes, not the depths of --layers)


#: mlplab.torch_mlp.model.MAX_DEPTH, which the parser cannot import without PyTorch
MAX_DEPTH = 1000


def _depth_list(text: str) -> list[int]:
    """``--layers "2,3,4,5"`` -> [2, 3, 4, 5]; a depth given twice is refused (it would train the
    same network twice, into two rows of the table), as a usage error naming the flag."""
    depths = int_list(text)
    too_deep = [d for d in depths if d > MAX_DEPTH]
    if too_deep:  # (a usage error under the flag, where the library's came as a runtime one)
        raise argparse.ArgumentTypeError(
            f"expected depths of at most {MAX_DEPTH:,} Linear layers (a plain MLP that deep does "
            f"not train; the exercise studies 2 to 5); got {text!r}")
    repeated = sorted({d for d in depths if depths.count(d) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(
            f"expected different depths like 2,3,4,5 (one row of the table each); got {text!r}, "
            f"which repeats {', '.join(map(str, repeated))}")
    return depths


#: the defaults of the options of both commands (the exercise's), filled in by
#: :func:`_fill_defaults` after parsing: left None by argparse, an option given can be told from
#: one not given (``--resume`` refuses the first)
_DEFAULTS = {"init": "exercise", "init_std": 1e-3, "dropout": 0.0, "epochs": 10,
             "batch_size": 200, "lr": 1e-3, "reg": 1e-3, "lr_decay": 0.95, "seed": 0,
             "data_seed": 0, "device": "cpu"}


def _add_common(p: argparse.ArgumentParser, both: bool = False) -> None:
    """Model, training and runtime options shared by ``train`` and ``depth`` (``both``: allow
    ``--init both``)."""
    d = _DEFAULTS
    m = p.add_argument_group("model")
    m.add_argument("--init", choices=["exercise", "default", *(["both"] if both else [])],
                   default=None,
                   help="exercise: every Linear weight ~ N(0, std^2) with std --init-std, biases "
                        "0; default: PyTorch's own (Kaiming-uniform)"
                        + ("; both: every depth with each, in one table" if both else "")
                        + f" (default: {d['init']})")
    m.add_argument("--init-std", "--std", dest="init_std", type=float, default=None, metavar="STD",
                   help="standard deviation of the exercise initialisation; the exercise's "
                        f"normal_(0.0, 1e-3) takes a std, not a variance (default: "
                        f"{d['init_std']:g})")
    m.add_argument("--dropout", type=float, default=None, metavar="P",
                   help="dropout after each hidden ReLU (beyond the exercise; default: none)")
    m.add_argument("--batchnorm", action="store_true",
                   help="batch norm after each hidden Linear (beyond the exercise)")
    t = p.add_argument_group("training (defaults: the exercise's)")
    t.add_argument("--epochs", type=positive_int, default=None,
                   help=f"epochs (default: {d['epochs']})")
    t.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"minibatch size (default: {d['batch_size']})")
    t.add_argument("--lr", type=float, default=None,
                   help=f"Adam learning rate (default: {d['lr']:g})")
    t.add_argument("--reg", type=float, default=None,
                   help="Adam weight_decay, as the exercise's reg: adds reg * W to every "
                        "gradient, biases included, so it is about mlplab train's --reg REG/2, "
                        f"whose loss term reg * sum W^2 spares the biases (default: {d['reg']:g})")
    t.add_argument("--lr-decay", type=float, default=None,
                   help="learning rate multiplied by this after every epoch "
                        f"(default: {d['lr_decay']:g})")
    r = p.add_argument_group("runtime")
    r.add_argument("--seed", type=seed_arg, default=None,
                   help=f"seed of the weights, the shuffling and dropout (default: {d['seed']})")
    r.add_argument("--data-seed", type=split_seed_arg, default=None,
                   help="seed of the stratified validation/test splits, kept apart from --seed "
                        f"(default: {d['data_seed']})")
    r.add_argument("--device", default=None, metavar="cpu|cuda|auto",
                   help="cpu (default), cuda or cuda:N (an error without a GPU), or auto (a GPU "
                        "when PyTorch sees one, else the CPU)")
    r.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="PyTorch CPU threads (default: every core this process may use)")
    add_no_progress(r, "progress bars (training, a download, a folder's decoding)")
    r.add_argument("--verbose", action="store_true", help="print a line per epoch")


def _fill_defaults(args: argparse.Namespace) -> list[str]:
    """Set every option of :data:`_DEFAULTS` (and ``--dataset``, ``--hidden``) not given to its
    default; the names of the model, training and data options that were given."""
    given = [k for k in (*_DEFAULTS, "dataset", "hidden", "layers", "hidden_size", "data_dir",
                         "mirror", "val_size", "test_size", "image_size", "out")
             if getattr(args, k, None) is not None]
    given += [k for k in ("batchnorm", "download", "eval_test") if getattr(args, k, False)]
    if not args.data_cache:
        given.append("no_cache")
    for k, v in (*_DEFAULTS.items(), ("dataset", "digits"), ("hidden", [50]),
                 ("layers", [2, 3, 4, 5]), ("hidden_size", 50)):
        if hasattr(args, k) and getattr(args, k) is None:  # (depth has no --hidden, train no
            # --layers)
            setattr(args, k, v)
    return given


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
                    "accuracy.png, (with a validation split) confusion.png and (with a hidden "
                    "layer) weights.png.")
    add_dataset_arguments(tr, default=None)
    tr.add_argument("--hidden", type=_hidden_list, default=None, metavar="H[,H...]",
                    help="hidden layer sizes, e.g. 50 (the exercise) or 100,50; 'none': no "
                         "hidden layer (default: 50)")
    _add_common(tr)
    o = tr.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", default=None, type=user_path_arg,
                   help="run folder to create (default: runs/torch-<timestamp>)")
    o.add_argument("--eval-test", action="store_true",
                   help="also measure the test split (do it once, for the final model)")
    o.add_argument("--no-plots", dest="plots", action="store_false", help="write no figures")
    o.add_argument("--json", action="store_true", help="print the metrics as JSON")
    o.add_argument("--resume", metavar="RUN", default=None, type=user_path_arg,
                   help="continue the run in folder RUN, stopped by Ctrl-C, a crash or a kill, "
                        "from the end of its last whole epoch, with its own settings (only "
                        "--threads, --device, --data-dir if its data moved, --no-plots, "
                        "--json, --no-progress and --verbose may be given); it ends as an "
                        "uninterrupted run would have")
    tr.set_defaults(func=run_train, unknown_hint=_train_flag_hint)

    dp = tsub.add_parser(
        "depth", help="the exercise's depth table: one network per depth",
        description="Train one network per depth ('2 layers' = one hidden layer, '5 layers' = "
                    "four) with --hidden-size units in every hidden layer, and write the "
                    "exercise's table: train and validation accuracy per depth and the test "
                    "accuracy of the best-by-validation network only (per initialisation), as "
                    "depth.md and depth.csv, a plot depth.png of accuracy against depth, and "
                    "depth.json with every number and the settings.")
    add_dataset_arguments(dp, default=None)
    dp.add_argument("--layers", type=_depth_list, default=None, metavar="D[,D...]",
                    help="depths, counted in Linear layers (default: 2,3,4,5)")
    dp.add_argument("--hidden-size", type=positive_int, default=None, metavar="H",
                    help="units in every hidden layer (default: 50, the exercise's)")
    _add_common(dp, both=True)
    o = dp.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", default=None, type=user_path_arg,
                   help="folder for the table and plot (default: runs/torch-depth-<timestamp>)")
    o.add_argument("--json", action="store_true", help="print the results as JSON")
    o.add_argument("--resume", metavar="DIR", default=None, type=user_path_arg,
                   help="continue the study in folder DIR, stopped by Ctrl-C, a crash or a kill: "
                        "its finished networks are kept and the one in training goes on from "
                        "the end of its last whole epoch, with the study's own settings (only "
                        "--threads, --device, --data-dir if its data moved, --json, "
                        "--no-progress and --verbose may be given); it ends as an uninterrupted "
                        "study would have")
    dp.set_defaults(func=run_depth, unknown_hint=_depth_flag_hint)


def _depth_flag_hint(unknown: list[str]) -> tuple[str | None, set[str]]:
    """What to say of ``torch train``'s flags given to ``torch depth`` (``--eval-test`` was
    answered "did you mean --val-size?"), and of ``mlplab train``'s."""
    flags = {u.split("=")[0] for u in unknown if u.startswith("--")}
    notes = []
    if "--eval-test" in flags:
        notes.append("the depth study always measures each initialisation's best network on "
                     "the test split; --test-size 0 for none")
    if "--no-plots" in flags:
        notes.append("a depth study writes one figure, depth.png")
    numpy_note, numpy_flags = _train_flag_hint(unknown)
    notes += [numpy_note] if numpy_note else []
    return "; ".join(notes) or None, (flags & {"--eval-test", "--no-plots"}) | numpy_flags


#: ``mlplab train``'s flags that the PyTorch commands do not have (a test keeps the set equal to
#: the difference of the parsers); answered with a near spelling before, they got "did you mean
#: --image-size?" for --optimizer and "--lr-decay?" for --weight-decay, which is --reg here
_NUMPY_ONLY = frozenset((
    "--activation", "--augment", "--crop-fill", "--crop-padding", "--dtype", "--elastic-pixels",
    "--iters", "--label-smoothing", "--like", "--min-lr", "--momentum", "--no-batchnorm",
    "--optimizer", "--patience", "--preprocess", "--preprocessing", "--preset", "--sampling",
    "--schedule",
    "--step-epochs", "--train-acc", "--warmup-epochs", "--weight-decay"))
#: those of them with a counterpart here
_PYTORCH_SPELLING = {"--weight-decay": "Adam's weight decay is --reg here",
                     "--iters": "a run's length is --epochs here",
                     "--no-batchnorm": "batch norm is off unless --batchnorm is given"}


def _train_flag_hint(unknown: list[str]) -> tuple[str | None, set[str]]:
    """What to say of ``mlplab train``'s flags given to ``torch train`` or ``torch depth``."""
    flags = {u.split("=")[0] for u in unknown if u.startswith("--")} & _NUMPY_ONLY
    notes = [_PYTORCH_SPELLING[f] for f in sorted(flags) if f in _PYTORCH_SPELLING]
    rest = sorted(flags - _PYTORCH_SPELLING.keys())
    if rest:
        notes.append(f"{', '.join(rest)} {'is' if len(rest) == 1 else 'are'} mlplab train's; "
                     "mlplab torch trains the exercise's network as the exercise does: ReLU, "
                     "Adam, lr x 0.95 per epoch, inputs normalised with mean 0.5 / std 0.5")
    return "; ".join(notes) or None, flags


# --------------------------------------------------------------------------------- helpers
def _check_options(args: argparse.Namespace, tm: ModuleType, given: list[str]) -> None:
    """The option values, checked as the library checks them and in its order, so that a bad
    value is a usage error (exit 2) naming the flag typed, while a GPU this machine does not
    have stays a runtime error (exit 1). Nothing is loaded or written here."""
    if "init_std" in given and args.init == "default":
        # PyTorch's own initialisation takes no std: config.json recorded one never used
        from mlplab.cli import UsageError

        raise UsageError("--init-std has no effect with --init default (PyTorch's own "
                         "initialisation); it sets the std of --init exercise.")
    with usage_errors(("device",)):  # a misspelt device; a missing GPU stays a runtime error
        tm.parse_device(args.device)
    with usage_errors(("init_std", "dropout", "batch_size")):
        tm.check_model_options(args.init_std, args.dropout, args.batchnorm, args.batch_size)
    tm.select_device(args.device)
    cfg = tm.TorchTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              reg=args.reg, lr_decay=args.lr_decay, seed=args.seed,
                              threads=args.threads)
    with usage_errors(("lr", "reg", "lr_decay", "batch_size", "epochs", "threads")):
        cfg.validate()


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The library's keyword arguments shared by ``train_run`` and ``depth_run``."""
    return {"init_std": args.init_std, "dropout": args.dropout, "batchnorm": args.batchnorm,
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "reg": args.reg, "lr_decay": args.lr_decay, "seed": args.seed,
            "device": args.device, "threads": args.threads, "data_dir": args.data_dir,
            "download": args.download, "mirror": args.mirror, "val_size": args.val_size,
            "test_size": args.test_size, "image_size": args.image_size,
            "data_seed": args.data_seed, "cache": args.data_cache,
            "progress": args.progress and sys.stderr.isatty(), "verbose": args.verbose,
            "announce": True}


# ------------------------------------------------------------------------------- torch train
def _resume_options(args: argparse.Namespace, given: list[str], tm: ModuleType) -> None:
    """Refuse, by flag, the options that ``--resume`` cannot change (the run or study goes on
    as it was configured); ``args.device`` None (its own) unless given."""
    # --device, as --threads, is where the run goes on, not how it is configured: a run of
    # a machine with a GPU can go on without one (its "use --device cpu" was refused);
    # --data-dir where its data is now, if it moved
    refused = [k for k in given if k not in ("device", "data_dir")]
    if refused:
        from mlplab.cli import UsageError

        what = "a run" if args.torch_command == "train" else "a study"
        flags = ", ".join("--no-cache" if k == "no_cache" else flag(k) for k in refused)
        raise UsageError(f"--resume continues {what} exactly as it was configured; drop "
                         f"{flags}.")
    if "device" not in given:
        args.device = None  # the run's own
    if args.device is not None:
        with usage_errors(("device",)):
            tm.parse_device(args.device)


def _refuse_replaced_relu() -> None:
    """Refuse, before training, a run whose model.npz a plugin's ``relu`` (one that replaces
    mlplab's) would make impossible to write at the end (``to_numpy`` refuses it): naming the
    plugin to drop, or the ``MLPLAB_PLUGINS`` that names it. (torch depth writes no model.npz.)"""
    from mlplab.torch_mlp.convert import relu_replaced  # (PyTorch: imported by _torch_mlp)

    if not relu_replaced():
        return
    from mlplab.cli import CLIError, _plugin_error_text, plugins
    from mlplab.models import ACTIVATIONS

    name = plugins.REPLACED_ACTIVATIONS.get("relu")
    cannot = ("so mlplab torch train could not write the run's model.npz (its network as an "
              "mlplab.MLP)")
    if name is None:  # replaced by no plugin this command imported (main() called in Python)
        raise CLIError(f"'relu' is registered as {ACTIVATIONS['relu']!r} in this process, "
                       f"{cannot}; leave out what replaces it.")
    text = f"plugin {name!r} replaces the activation 'relu', {cannot}"
    if name in plugins.from_environment():
        raise CLIError(_plugin_error_text(CLIError(text), from_env=True))
    raise CLIError(f"{text}; drop {shell_command(['--plugin', path_word(name)])} (the PyTorch "
                   "network is ReLU whatever a plugin registers).")


def run_train(args: argparse.Namespace) -> int:
    given = _fill_defaults(args)
    if args.resume:
        tm = _torch_mlp()
        _resume_options(args, given, tm)
        out = Path(args.resume)
        # the folder first: a mistyped RUN is said as such, not as a plugin to drop
        tm.check_resumable(out)
        _refuse_replaced_relu()
        with json_stdout(args.json), _resumable(out, args):
            result = tm.resume_run(out, data_dir=args.data_dir, threads=args.threads,
                                   device=args.device, plots=args.plots,
                                   progress=args.progress and sys.stderr.isatty(),
                                   verbose=args.verbose, announce=True)
        return _report_train(result, out, args)
    tm = _torch_mlp()
    # everything that can fail is checked before the run folder is made (by train_run too): a
    # folder left holding only config.json would make the same command, rerun, say "already
    # holds results"
    _check_options(args, tm, given)
    _refuse_replaced_relu()
    with run_folder(args.out, prefix="torch") as out, json_stdout(args.json), \
            _resumable(out, args):
        result = tm.train_run(args.dataset, out=out, hidden=args.hidden, init=args.init,
                              eval_test=args.eval_test, plots=args.plots, **_run_options(args))
    return _report_train(result, out, args)


def _resume_command(out: Path, args: argparse.Namespace) -> str:
    """The line that says how to continue the run (``torch train``) or study (``torch depth``)
    in ``out``; with the device a resume gave, since the result is bit-identical only on it.
    Plain ``mlplab``, without this command's ``--plugin`` (as :func:`print_run_result`'s
    ``next:`` lines): a plugin adds no choice of these commands (ReLU and Adam, fixed), and
    ``torch train`` refuses one that replaces ``relu`` (:func:`_refuse_replaced_relu`)."""
    return continue_with(out, args, ["mlplab", "torch", args.torch_command],
                         args.device if args.resume else None)


def _resumable(run: Path, args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """:func:`mlplab.cli.resumable` of a PyTorch run."""
    from mlplab.runs.files import TORCH_CHECKPOINT_FILE

    return resumable(run, TORCH_CHECKPOINT_FILE, _resume_command(run, args))


def _report_train(result: Any, out: Path, args: argparse.Namespace) -> int:
    """The result of a ``torch train`` (or its ``--resume``): a line, or the metrics as JSON;
    the exit status."""
    metrics = result.metrics
    stopped = None
    if result.interrupted:
        from mlplab.runs.files import TORCH_CHECKPOINT_FILE

        # the checkpoint is of the last whole epoch (the epoch in progress is trained again);
        # stopped in its first epoch, a run has none yet
        if (out / TORCH_CHECKPOINT_FILE).is_file():
            saved, goes_on = ("the run as it stopped, and a checkpoint of its last whole epoch",
                              "goes on from the end of that epoch")
        else:
            saved, goes_on = "the run as it stopped, before its first checkpoint", STARTS_AGAIN
        stopped = interrupted_line(saved, goes_on, _resume_command(out, args))
    # mlplab train's lines, advising plain mlplab commands (see _resume_command)
    print_run_result(metrics, out, args.json, stopped=stopped)
    if result.interrupted:
        return interrupts.exit_status()  # 130, or 143 for SIGTERM
    note_if_at_chance(metrics["train_accuracy"], len(result.classes),
                      "Usual causes: the exercise's N(0, 1e-3) initialisation with 3 or more "
                      "hidden layers (--init default), a learning rate far too low or too high "
                      "(--lr), too much weight decay (--reg), or too short a run.")
    return 0


# ------------------------------------------------------------------------------- torch depth
def run_depth(args: argparse.Namespace) -> int:
    given = _fill_defaults(args)
    tm = _torch_mlp()
    if args.resume:
        _resume_options(args, given, tm)
        out = Path(args.resume)
        with json_stdout(args.json), _study_resumable(out, args):
            res = tm.resume_depth_run(out, data_dir=args.data_dir, threads=args.threads,
                                      device=args.device,
                                      progress=args.progress and sys.stderr.isatty(),
                                      verbose=args.verbose, announce=True)
    else:
        _check_options(args, tm, given)
        with run_folder(args.out, prefix="torch-depth") as out, json_stdout(args.json), \
                _study_resumable(out, args):
            res = tm.depth_run(args.dataset, out=out, layers=args.layers,
                               hidden_size=args.hidden_size, init=args.init,
                               **_run_options(args))
    if args.json:
        print(json.dumps({**res.summary, "out": str(out)}, indent=2))
    else:
        print(res.table, end="")
        print(f"\n{counted(len(res.results), 'network')} in {duration(res.seconds)}; table, "
              f"CSV and plot in {out}")
    return 0


#: what an error after a depth study saved progress adds to its reason, before the resume line
STUDY_NOT_SAVED = "the study was not saved, but what it finished (its networks, and its last " \
    "whole epoch's checkpoint) is kept."


@contextlib.contextmanager
def _study_resumable(out: Path, args: argparse.Namespace) -> Iterator[None]:
    """A Ctrl-C that stops a study (a network half-trained does not enter its table) leaves
    its finished networks and its last epoch's checkpoint: say how to go on from them; and so
    for an error after the study saved one of them (a write of depth.md that failed, memory
    that ran out), which ended with the reason alone."""
    from mlplab.runs.files import DEPTH_CHECKPOINT_FILE, DEPTH_FILE
    from mlplab.torch_mlp.runs import NETWORKS_DIR

    try:
        with not_saved_advice(out, (DEPTH_CHECKPOINT_FILE, NETWORKS_DIR), DEPTH_FILE,
                              _resume_command(out, args), STUDY_NOT_SAVED):
            yield
    except KeyboardInterrupt:
        from mlplab.runs.files import DEPTH_CONFIG_FILE, diverged_study

        # a new study stopped before it took a diverged study's folder leaves that study,
        # which --resume refuses
        if (out / DEPTH_CONFIG_FILE).is_file() and not diverged_study(out):
            print(interrupted_line(*_study_saved(out), _resume_command(out, args)),
                  file=sys.stderr)
        raise


def _study_saved(out: Path) -> tuple[str, str]:
    """What a depth study stopped by Ctrl-C has saved in ``out``, and where ``--resume`` goes on
    (:func:`mlplab.cli.interrupted_line`): its finished networks, and the checkpoint of the
    network in training, which is removed as that network is saved whole; either may be
    missing (it said both were kept whenever it had one)."""
    from mlplab.runs.files import DEPTH_CHECKPOINT_FILE
    from mlplab.torch_mlp.runs import NETWORKS_DIR, every_network_saved

    networks = out / NETWORKS_DIR
    # (not a hidden temporary file of a network that the stop cut short)
    finished = networks.is_dir() and any(p.suffix == ".pt" and not p.name.startswith(".")
                                         for p in networks.iterdir())
    checkpoint = (out / DEPTH_CHECKPOINT_FILE).is_file()
    if finished and every_network_saved(out):
        # stopped as it wrote its table: there is no next network (a checkpoint beside them is
        # of the last one, which --resume sees is finished)
        return "every network of the study, before its table", "writes the table, training nothing"
    if finished and checkpoint:
        return ("the study's finished networks, and a checkpoint of its last whole epoch",
                "goes on from the end of that epoch")
    if checkpoint:
        return "a checkpoint of the study's last whole epoch", "goes on from the end of that epoch"
    if finished:
        return ("the study's finished networks, before a checkpoint of the next one",
                "trains the next one from its first epoch")
    return "nothing trained (the study stopped in its first epoch)", STARTS_AGAIN
