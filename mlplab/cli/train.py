"""``mlplab train``, ``mlplab evaluate`` and ``mlplab predict``: a thin shell over
:mod:`mlplab.runs`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import textwrap
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mlplab import interrupts
from mlplab._text import (
    counted,
    display_width,
    padded,
    percent,
    printable,
)
from mlplab.cli import (
    UsageError,
    add_no_progress,
    continue_with,
    flag,
    interrupted_line,
    json_stdout,
    mlplab_command,
    mlplab_words,
    note_if_at_chance,
    print_run_result,
    resumable,
    run_folder,
    seed_arg,
    split_seed_arg,
    usage_errors,
)
from mlplab.cli._console import as_written
from mlplab.cli._types import (
    data_dir_arg,
    hidden_sizes,
    non_negative_int,
    positive_int,
    user_path_arg,
)
from mlplab.cli.data import (
    add_augment_arguments,
    add_dataset_arguments,
    load_dataset_from_args,
)

if TYPE_CHECKING:
    from mlplab.data import Dataset

#: flags that map one-to-one onto RunConfig fields (dest == field name)
RUN_FIELDS = ("hidden", "activation", "init", "std", "dropout", "batchnorm", "dtype", "optimizer",
              "lr", "momentum", "weight_decay", "schedule", "lr_decay", "step_epochs",
              "warmup_epochs", "min_lr", "reg", "batch_size", "epochs", "iters", "sampling",
              "train_acc", "patience", "seed", "preprocessing", "augment", "crop_padding",
              "crop_fill", "elastic_pixels", "eval_test", "data_seed", "label_smoothing")
DATA_FIELDS = ("dataset", "data_dir", "val_size", "test_size", "image_size")


def register(sub: argparse._SubParsersAction) -> None:
    from mlplab.models import ACTIVATIONS
    from mlplab.optim import OPTIMIZERS
    from mlplab.presets import describe_presets
    from mlplab.schedules import SCHEDULES

    presets = describe_presets()
    p = sub.add_parser(
        "train", help="train a network and write a run folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Train a fully-connected network with hand-written backpropagation and write a run "
            "folder (--out): config.json, model.npz, checkpoint.npz (every epoch), history.csv, "
            "metrics.json and plots. Options not given come from --preset, else from the "
            "defaults shown. Ctrl-C stops after saving a checkpoint; --resume RUN continues a "
            "stopped or killed run to exactly the result of an uninterrupted one.", 79),
        epilog="presets:\n" + "\n".join(f"  {k}: {v}" for k, v in presets.items())
               + "\n\nexamples:\n  mlplab train --dataset digits --hidden 100 --epochs 20\n"
                 "  mlplab train --preset exercise-default --dataset cifar10 --out runs/ex\n"
                 "  mlplab train --like runs/ex --seed 1 --out runs/ex-seed1\n"
                 "  mlplab train --resume runs/ex")
    p.add_argument("--preset", choices=sorted(presets), default=None,
                   help="start from a named recipe; other flags override its fields")
    p.add_argument("--like", metavar="RUN", default=None, type=user_path_arg,
                   help="start from the settings of the run in folder RUN (its config.json: "
                        "data, network, optimiser, length, seed); other flags override them, "
                        "e.g. --like runs/a --seed 1. --eval-test is not taken from RUN")
    p.add_argument("--resume", metavar="RUN", default=None, type=user_path_arg,
                   help="continue the run in folder RUN from its last checkpoint (no other "
                        "training options allowed; --data-dir DIR if its data moved there)")
    p.add_argument("--out", metavar="DIR", default=None, type=user_path_arg,
                   help="run folder to create (default: runs/<timestamp>)")
    # default None: --resume can tell a given --dataset from the default
    add_dataset_arguments(p, default=None, val_size_note="; the Fashion-MNIST accuracy presets: "
                                                        "0, every training image",
                          dataset_default_note="digits; an accuracy preset's own: cifar10 or "
                                               "fashion-mnist")
    g = p.add_argument_group("data handling")
    g.add_argument("--data-seed", type=split_seed_arg, default=None,
                   help="seed of the digits/folder validation and test splits (default: 0, "
                        "whatever --seed is, so that runs with different seeds share a split)")
    add_augment_arguments(g)

    m = p.add_argument_group("model")
    m.add_argument("--hidden", type=hidden_sizes, default=None, metavar="500[,250,...]",
                   help="hidden layer sizes (default: 100; 'none': no hidden layer)")
    m.add_argument("--activation", choices=list(ACTIVATIONS), default=None,
                   help="hidden activation (default: relu; your own: mlplab --plugin)")
    m.add_argument("--init", choices=["he", "xavier", "normal"], default=None,
                   help="weight initialisation (default: he; normal = N(0, std^2), the "
                        "exercise's)")
    m.add_argument("--std", "--init-std", dest="std", type=float, default=None,
                   help="standard deviation for --init normal (default: 1e-4)")
    m.add_argument("--dropout", type=float, default=None, metavar="P",
                   help="inverted dropout probability after each hidden layer (default: 0)")
    m.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="batch normalisation after each hidden affine layer")
    m.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="floating-point type (default: float32)")

    t = p.add_argument_group("training")
    t.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None,
                   help="update rule (default: adam; sgd is the exercise's; your own: "
                        "mlplab --plugin)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3)")
    t.add_argument("--momentum", type=float, default=None,
                   help="momentum for momentum/nesterov (default: 0.9)")
    t.add_argument("--weight-decay", type=float, default=None,
                   help="decoupled weight decay, adam only (AdamW; default: 0)")
    t.add_argument("--schedule", choices=list(SCHEDULES), default=None,
                   help="learning-rate schedule (default: exp = lr * lr_decay^epoch, the "
                        "exercise's)")
    t.add_argument("--lr-decay", type=float, default=None,
                   help="decay factor per epoch (exp) or per --step-epochs (step) (default: 0.95)")
    t.add_argument("--step-epochs", type=int, default=None,
                   help="epochs between decays of the step schedule (default: 10)")
    t.add_argument("--warmup-epochs", type=float, default=None,
                   help="linear learning-rate warm-up, in epochs (default: 0)")
    t.add_argument("--min-lr", type=float, default=None,
                   help="final learning rate of the cosine schedule (default: 0)")
    t.add_argument("--reg", type=float, default=None,
                   help="L2 strength: loss + reg * sum ||W||^2, no 0.5 (default: 1e-4)")
    t.add_argument("--label-smoothing", type=float, default=None, metavar="EPS",
                   help="train on targets (1 - EPS) one-hot + EPS / classes; the recorded "
                        "training loss is the smoothed one, accuracies and evaluation use the "
                        "plain labels (default: 0)")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, help="epochs to train (default: 20)")
    length.add_argument("--iters", type=int, default=None,
                        help="iterations to train, instead of --epochs")
    t.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: 128)")
    t.add_argument("--sampling", choices=["shuffle", "replacement"], default=None,
                   help="shuffle: epochs without replacement (default); replacement: the "
                        "exercise's random batches")
    t.add_argument("--train-acc", choices=["subset", "batch"], default=None,
                   help="train accuracy per epoch on up to 5,000 training rows (default) or on "
                        "the last batch (the exercise)")
    t.add_argument("--patience", type=non_negative_int, default=None,
                   help="early stopping: stop after this many epochs without a better "
                        "validation accuracy, and keep the best parameters; 0 turns it off, "
                        "e.g. to run a preset to its full length (default: off; the CIFAR-10 "
                        "accuracy presets: 20)")
    t.add_argument("--seed", type=seed_arg, default=None,
                   help="seed of the weights, batches, dropout and augmentation (default: 0)")
    t.add_argument("--eval-test", action="store_true", default=None,
                   help="also measure accuracy on the test split (do this once, at the end)")

    o = p.add_argument_group("output")
    o.add_argument("--no-plots", dest="plots", action="store_false",
                   help="do not draw the PNG figures")
    add_no_progress(o, "progress bars (training, a download, a folder's decoding)")
    o.add_argument("--verbose", action="store_true",
                   help="print a line per epoch (loss, accuracies, learning rate)")
    o.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="BLAS threads for the matrix products (default: OpenBLAS's own choice, "
                        "OMP_NUM_THREADS or every core); on a machine with many cores, or one "
                        "shared with other jobs, a few threads train small nets faster")
    p.set_defaults(func=run_train, unknown_hint=_torch_flag_hint)

    e = sub.add_parser(
        "evaluate", help="accuracy of a trained run on its validation, test or training split",
        description="Load RUN/model.npz and the run's dataset (as configured when it was "
                    "trained) and print the accuracy, per-class accuracy and confusion matrix "
                    f"on one split; of more than {MATRIX_CLASSES} classes, the matrix's 10 "
                    "largest confusions in its place (--json gives it whole).")
    e.add_argument("run", metavar="RUN", type=user_path_arg,
                   help="a run folder written by mlplab train or mlplab torch train")
    e.add_argument("--split", choices=["val", "test", "train"], default="val",
                   help="split to evaluate (default: %(default)s)")
    e.add_argument("--data-dir", metavar="DIR", default=None, type=data_dir_arg,
                   help="where the dataset files are, if not where training found them (for a "
                        "folder:PATH dataset, the folder of class sub-folders itself)")
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    e.set_defaults(func=run_evaluate, unknown_hint=_run_data_hint)

    r = sub.add_parser(
        "predict", help="classify image files with a trained run",
        description="Classify each IMAGE with RUN's model (decoded and resized to the training "
                    "image size as folder datasets are, preprocessed as in training) and print "
                    "the most probable classes. A folder stands for the image files directly "
                    "inside it.")
    r.add_argument("run", metavar="RUN", type=user_path_arg,
                   help="a run folder written by mlplab train or mlplab torch train")
    r.add_argument("images", metavar="IMAGE", nargs="+", type=user_path_arg,
                   help="image files (PNG, JPEG, ...) or folders of them")
    r.add_argument("--top", type=int, default=3, help="classes to show (default: %(default)s)")
    r.add_argument("--json", action="store_true", help="print the results as JSON")
    r.add_argument("--skip-unreadable", action="store_true",
                   help="classify the images that can be read and name the others in a warning "
                        "(by default a file that cannot be read stops the command, and nothing "
                        "is classified)")
    add_no_progress(r, "progress bar while the images are read (one shows only in a "
                       "terminal, never with --json)")
    r.set_defaults(func=run_predict, unknown_hint=_image_data_hint)


def _torch_flag_hint(unknown: list[str]) -> tuple[str | None, set[str]]:
    """What to say of ``mlplab torch``'s and ``mlplab tune``'s flags given to ``mlplab train``
    (``--layers 2,3`` was answered "did you mean --lr?")."""
    flags = {u.split("=")[0] for u in unknown if u.startswith("--")}
    notes = {"--layers": "a network's depth is its hidden sizes here, e.g. --hidden 50,50; "
                         "--layers is mlplab torch depth's",
             "--device": "mlplab train computes with NumPy on the CPU, with --threads N BLAS "
                         "threads; --device is mlplab torch's",
             # (answered "did you mean --val-size?", which is something else)
             "--train-size": "a run trains on its whole training split; --val-size and "
                             "--test-size hold images out of it, --epochs or --iters make the "
                             "run short; --train-size is mlplab tune's"}
    given = sorted(flags & notes.keys())
    return "; ".join(notes[f] for f in given) or None, set(given)


#: the options that choose a dataset and its splits (``add_dataset_arguments``'s and train's)
_DATA_FLAGS = frozenset(("--dataset", "--download", "--mirror", "--val-size", "--test-size",
                         "--image-size", "--no-cache", "--data-seed", "--preprocessing",
                         "--preprocess", "--split"))


def _run_data_hint(unknown: list[str]) -> tuple[str | None, set[str]]:
    """What to say of data options given to ``evaluate``, which takes the run's own
    (``evaluate --dataset digits`` was answered "did you mean --data-dir?")."""
    flags = {u.split("=")[0] for u in unknown if u.startswith("--")} & _DATA_FLAGS
    return ("the run's config.json gives its dataset, splits and preprocessing; --data-dir DIR "
            "if its files moved") if flags else None, flags


def _image_data_hint(unknown: list[str]) -> tuple[str | None, set[str]]:
    """What to say of data options given to ``predict``, which reads only its IMAGE files."""
    flags = {u.split("=")[0] for u in unknown if u.startswith("--")} & _DATA_FLAGS
    # (its model.npz holds the fitted preprocessing, image size and class names: predict
    # reads no config.json, and classifies with one missing or damaged)
    return ("predict classifies the IMAGE files given, preprocessed as the run's model.npz "
            "says; mlplab evaluate RUN --split val|test measures a split of the run's "
            "dataset") if flags else None, flags


def _given(args: argparse.Namespace, names: Iterable[str]) -> dict:
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def run_train(args: argparse.Namespace) -> int:
    if args.threads is None:
        return _train(args)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads, user_api="blas"):
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    from mlplab.data import DatasetNotFoundError
    from mlplab.runs import (
        build_config,
        check_run_data,
        config_summary,
        resume_run,
        run_config,
        train_run,
    )
    from mlplab.runs.config import check_given_options, without_inert

    progress = args.progress and not args.json and not args.verbose
    if args.resume:
        # the data too: the run reloads its dataset exactly as it was configured
        # (--data-dir may say where the run's data was moved to)
        data_fields = tuple(f for f in DATA_FIELDS if f != "data_dir")
        extra = sorted(_given(args, (*RUN_FIELDS, *data_fields, "mirror"))) + \
            (["preset"] if args.preset else []) + (["like"] if args.like else []) + \
            (["out"] if args.out else []) + \
            (["download"] if args.download else []) + \
            (["no_cache"] if not args.data_cache else [])
        if extra:
            flags = ", ".join(flag(k) for k in extra)
            raise UsageError(f"--resume continues a run exactly as it was configured; drop "
                             f"{flags}.")
        with json_stdout(args.json), _resumable(args.resume, args):
            result = resume_run(args.resume, progress=progress, verbose=args.verbose,
                                plots=args.plots, data_dir=args.data_dir, announce=True)
    else:
        options = _given(args, RUN_FIELDS)
        if options.get("patience") == 0:
            options["patience"] = None  # no early stopping, whatever the preset says
        # data flags not given keep the preset's value (the Fashion-MNIST presets set val_size 0)
        options.update(_given(args, DATA_FIELDS))
        base = None
        if args.like:
            if args.preset:
                raise UsageError("--like takes every setting of the run, its preset's included; "
                                 "drop --preset.")
            # measuring the test split is asked for each time, not inherited
            base = {**run_config(args.like).to_dict(), "eval_test": False}
        else:
            options.setdefault("data_seed", 0)
        with usage_errors(options):
            cfg = without_inert(build_config(args.preset, base=base, **options), options)
            check_given_options(options, cfg)
        for name in (*DATA_FIELDS, "data_seed"):  # the loader reads the resolved values
            setattr(args, name, getattr(cfg, name))
        # the default folder is claimed now: runs started in the same second get their own
        with run_folder(args.out) as out:

            def load() -> Dataset:
                try:
                    data = load_dataset_from_args(args, progress)  # as the run's bar
                except DatasetNotFoundError as exc:
                    if args.preset and "dataset" not in options:
                        # "CIFAR-10 not found" named neither the preset's choice nor the flag
                        raise DatasetNotFoundError(
                            f"{exc} (--preset {args.preset} trains on {cfg.dataset}, the data it "
                            "was made for; --dataset chooses another.)") from None
                    raise
                # announced once the data is there and fits the run: a data error must not
                # name a run folder that is then removed
                check_run_data(cfg, data)
                if not args.json:
                    print(f"training {config_summary(cfg)} -> {out}", file=sys.stderr)
                return data

            # a loader, not a loaded dataset: the run then owns the data and frees the raw
            # images it no longer needs (lower peak memory)
            with json_stdout(args.json), _resumable(out, args):
                result = train_run(cfg, out=out, data=load, progress=progress,
                                   verbose=args.verbose, plots=args.plots)

    m = result.metrics
    assert result.out is not None  # the command always gives train_run a folder
    # the trainer stops between steps and checkpoints that very step: nothing is trained again
    stopped = interrupted_line("the run as it stopped, and a checkpoint of that step",
                               "goes on from that step", _resume_command(result.out, args)) \
        if result.interrupted else None
    print_run_result(m, result.out, args.json, mlplab_command(args), stopped)
    if result.interrupted:
        return interrupts.exit_status()  # 130, or 143 for SIGTERM
    note_if_at_chance(m["train_accuracy"], len(result.classes),
                      "Usual causes: initial weights too small for the depth (--init he, the "
                      "default, rather than --init normal with a small --std), a learning rate "
                      "far too low or too high (--lr), too much L2 (--reg, --weight-decay), or "
                      "too short a run.")
    return 0


def _resume_command(run: str | os.PathLike[str], args: argparse.Namespace) -> str:
    """The line that says how to continue the run in ``run`` (with this command's plugins)."""
    return continue_with(run, args, [*mlplab_words(args), "train"])


def _resumable(run: str | os.PathLike[str],
               args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """:func:`mlplab.cli.resumable` of a NumPy run."""
    from mlplab.runs.files import CHECKPOINT_FILE

    return resumable(run, CHECKPOINT_FILE, _resume_command(run, args))


def run_evaluate(args: argparse.Namespace) -> int:
    from mlplab.runs import evaluate_run

    res = evaluate_run(args.run, args.split, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(printable(f"{res['dataset']} {res['split']} ({counted(res['size'], 'image')}): "
                    f"accuracy {percent(res['accuracy'])}", one_line=True))
    # in terminal columns: a class named in CJK or with accents made of combining marks; as
    # written: a name the output's encoding lacks comes out as \u732b or ?; control characters
    # written out, as data info and mlplab runs write them (a newline broke the row, an ESC or a
    # bidirectional override reached the terminal)
    names = [as_written(printable(c, one_line=True)) for c in res["classes"]]
    width = max(5, *(display_width(c) for c in names))
    print(f"  {padded('class', width)}  accuracy")  # (the rows read as bare numbers)
    for name, acc in zip(names, res["per_class_accuracy"]):
        print(f"  {padded(name, width)}  " + ("       - (no images)" if acc is None
                                              else f"{percent(acc, 1):>8}"))
    cm = res["confusion_matrix"]
    if len(cm) > MATRIX_CLASSES:
        _print_top_confusions(cm, res["classes"])
        return 0
    cells = max(len(str(n)) for row in cm for n in row)
    print("confusion matrix (rows: true class, columns: predicted, in the order above):")
    for row in cm:
        print("  " + " ".join(f"{n:>{cells}}" for n in row))
    return 0


#: the most classes whose confusion matrix evaluate prints whole: a row of 30 counts fills a
#: wide terminal, and 1,000 classes printed 1,000 lines of 2,000 characters (2 MB of zeros)
MATRIX_CLASSES = 30


def _print_top_confusions(cm: list[list[int]], classes: list[str], top: int = 10) -> None:
    """The ``top`` largest off-diagonal cells of a confusion matrix too wide to print."""
    import numpy as np  # (evaluate_run has loaded it)

    counts = np.array(cm)
    np.fill_diagonal(counts, 0)
    order = np.argsort(-counts, axis=None, kind="stable")[:top]
    cells = [(int(i), int(j)) for i, j in zip(*np.unravel_index(order, counts.shape))
             if counts[i, j]]
    print(f"confusion matrix: {len(cm)} x {len(cm)}, too wide to print (--json gives it whole); "
          + (f"its {counted(len(cells), 'largest confusion')} (true class -> predicted):"
             if cells else "no image was taken for another class."))
    names = [as_written(printable(c, one_line=True)) for c in classes]  # (as the table's)
    width = max([display_width(names[i]) for i, _ in cells], default=0)
    for i, j in cells:
        print(f"  {padded(names[i], width)} -> {names[j]}  {counts[i, j]}")


def run_predict(args: argparse.Namespace) -> int:
    from mlplab.runs import predict_images

    if args.top < 1:
        raise UsageError(f"--top must be at least 1; got {args.top}.")
    results = predict_images(args.run, args.images, top=args.top,
                             progress=args.progress and not args.json,
                             skip_unreadable=args.skip_unreadable)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        tops = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in r["top"])
        # (the model file's class names, and file names, as evaluate writes them)
        print(printable(f"{r['image']}: {tops}", one_line=True))
    return 0
