"""The data and the dataset parts of Question 3: the default run, tuning and the tuned network.

Runs go through the library: :func:`mlplab.runs.train_run` with the presets of
:mod:`mlplab.presets`, and :func:`mlplab.tuning.tune` for the search.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplab._text import counted
from mlplab.report import figures, reference
from mlplab.report.context import Context
from mlplab.report.document import Figure, KeyValues, Section, Table, Text
from mlplab.report.fmt import pct, sci, seconds, value
from mlplab.report.rendering import md_code, md_literal

if TYPE_CHECKING:
    import numpy as np

    from mlplab.data.base import Dataset
    from mlplab.models import MLP
    from mlplab.runs.training import RunResult
    from mlplab.trainer import History
    from mlplab.tuning.space import Param

    #: a tuned network's candidate: (name, train acc, val acc, model, history, X_val, X_test,
    #: iterations per epoch (or None), train_acc setting, info)
    _Candidate = tuple[str, float, float, MLP, History, np.ndarray, np.ndarray, int | None, str,
                       dict[str, Any]]

#: tuning searches on standardised inputs (the search space's learning rates assume unit-scale
#: features); the exercise's own runs use its mean-image subtraction
TUNING_PREPROCESSING = "standardize"


def stage_data(ctx: Context, section: Section) -> None:
    from mlplab.data import load_dataset

    ds = ctx.loader() if ctx.loader is not None else load_dataset(ctx.dataset, seed=ctx.seed)
    ctx.shared["dataset"] = ds
    summary = ds.summary()
    section.add(Text(
        f"**{md_literal(ds.name)}**"
        + (f" from {md_code(ds.source)}" if ds.source else "") + ": images of "
        f"{' × '.join(map(str, ds.image_shape))} (height × width × channels), "
        f"{ds.num_classes} classes ({', '.join(map(md_literal, ds.classes))}). "
        f"The exercise's runs subtract the mean training image and flatten to "
        f"{ds.num_features} features; tuning standardises each channel instead; the PyTorch "
        "part scales to [0, 1] and normalises with mean 0.5 and std 0.5. Every statistic is "
        "fitted on the training split only."))
    rows = [[{"val": "validation"}.get(s, s), str(summary["splits"][s]["size"])]
            for s in ("train", "val", "test")]
    section.add(Table(["split", "images"], rows, "Splits"))
    if ds.notes:
        section.add(Text("Splits: " + "; ".join(ds.notes) + "."))
    path, rel = ctx.figure("data-samples.png")
    figures.sample_images(ds, path, seed=ctx.seed)
    section.add(Figure(rel, "Random training images of every class"))
    from mlplab.runs import split_record

    section.data.update(name=ds.name, source=ds.source, image_shape=list(ds.image_shape),
                        classes=list(ds.classes),
                        sizes={s: summary["splits"][s]["size"] for s in ("train", "val", "test")},
                        splits=split_record(ds))  # what --reuse checks its data against


def is_cifar_like(ds: Dataset) -> bool:
    return reference.is_cifar10(ds.image_shape, ds.classes)


def train_acc_meaning(mode: str) -> tuple[str, str]:
    """What a run's per-epoch train accuracy is measured on, by its ``train_acc`` setting: (legend
    label, caption text). "batch" (the exercise's) is one minibatch, so that curve is noisy and can
    sit well above the whole-split train accuracy in the tables next to it."""
    from mlplab.trainer import TRAIN_ACC_SUBSET, train_acc_label

    if mode == "batch":
        return (train_acc_label(mode),
                "train accuracy on each epoch's last minibatch, as the exercise records it")
    return (train_acc_label(mode),
            f"train accuracy on a fixed subset of up to {TRAIN_ACC_SUBSET:,} training images")


def _run_figures(ctx: Context, section: Section, name: str, title: str, history: History,
                 model: MLP, ds: Dataset, X_val: np.ndarray | None = None,
                 per_epoch: int | None = None, test_acc: float | None = None,
                 train_acc: str = "subset", whose: str = "") -> None:
    """The run's loss, accuracy, weight (and, with ``X_val``, confusion) figures. ``train_acc``
    is the run's setting of that name; ``whose`` names the run in every caption ("... of the
    search's best")."""
    label, meaning = train_acc_meaning(train_acc)
    of = f" of {whose}" if whose else ""
    p1, r1 = ctx.figure(f"{name}-loss.png")
    figures.loss_curve(history.loss, p1, f"{title}: training loss",
                       iterations_per_epoch=per_epoch)
    p2, r2 = ctx.figure(f"{name}-accuracy.png")
    figures.accuracy_curves(history.train_acc, history.val_acc, p2,
                            f"{title}: accuracy per epoch", test_acc=test_acc, train_label=label)
    p3, r3 = ctx.figure(f"{name}-weights.png")
    figures.weight_images(model.params["W1"], ds.image_shape, p3,
                          f"{title}: first-layer weights")
    # without a validation split (--val-size 0) the figure draws train accuracy alone
    drawn = ("Train and validation" if any(not math.isnan(v) for v in history.val_acc)
             else "Train")
    section.add(Figure(r1, f"Training loss per iteration{of} (one minibatch each)"),
                Figure(r2, f"{drawn} accuracy per epoch{of}: {meaning}"
                       + ("; dashed: the test accuracy, measured once" if test_acc is not None
                          else "")),
                Figure(r3, figures.weights_caption(model.params["W1"].shape[1], whose)))
    if X_val is not None and len(ds.y_val):  # (--val-size 0: an empty grid, not a figure)
        p4, r4 = ctx.figure(f"{name}-confusion.png")
        figures.confusion(ds.y_val, model.predict(X_val), ds.classes, p4,
                          f"{title}: confusion matrix (validation)")
        section.add(Figure(r4, f"Confusion matrix{of} on the validation split (row: true "
                               "class)"))


def _preset_run(ctx: Context, preset: str, **options: Any) -> RunResult:
    from mlplab.runs import train_run
    from mlplab.runs.training import interrupts_said_elsewhere

    ds = ctx.need("dataset", "the dataset")
    with interrupts_said_elsewhere():  # (the report stops instead, and says so)
        result = train_run(preset=preset, data=ds, seed=ctx.seed, progress=ctx.progress,
                           **options)
    if result.interrupted:  # Ctrl-C: stop the report, do not write a half-trained net into it
        raise KeyboardInterrupt
    return result


def stage_q3_default(ctx: Context, section: Section) -> None:
    from mlplab.presets import describe_presets

    ds = ctx.need("dataset", "the dataset")
    result = _preset_run(ctx, "exercise-default", iters=ctx.budget.default_iters)
    m = result.metrics
    section.add(Text(
        f"Preset `exercise-default`: {describe_presets()['exercise-default']}. Seed "
        f"{ctx.seed}. The exercise expects this run to be poor: the learning rate is too small "
        "for so few iterations. It decays once per epoch, so a training split smaller than "
        "CIFAR-10's packs more epochs into the same iterations and ends at a smaller rate (the "
        "last row but one of the Result table)."))
    cfg = result.config.to_dict()
    keys = ["preprocessing", "hidden", "init", "std", "optimizer", "lr", "lr_decay", "reg",
            "batch_size", "iters", "sampling", "train_acc", "seed", "dtype"]
    section.add(KeyValues([(k, value(cfg[k])) for k in keys], "Configuration"))
    X_val = result.preprocessing.transform(ds.X_val)
    _run_figures(ctx, section, "q3-default", "Default run", result.history, result.model, ds,
                 train_acc=result.config.train_acc)
    ref = f"about {pct(reference.DEFAULT_RUN_VAL, 0)}" + ("" if is_cifar_like(ds)
                                                          else " (on CIFAR-10)")
    # the learning rate of the last iteration: on a small training split the same 1,000
    # iterations are many epochs, and the per-epoch decay then leaves the rate near zero (on
    # digits the curves go flat after about 50 of 142 epochs), where CIFAR-10's are 4. The
    # rate decays at the end of each whole epoch, so iterations after the last whole epoch run
    # at one decay more than that epoch's (the history's last rate): theirs is the last one
    per_epoch = max(len(ds.y_train) // cfg["batch_size"], 1)
    ex_per_epoch = reference.EXERCISE_SPLIT[0] // cfg["batch_size"]
    ex_epochs = cfg["iters"] // ex_per_epoch

    def last_rate(iterations: int, per: int) -> float:
        return float(cfg["lr"] * cfg["lr_decay"] ** ((iterations - 1) // per))

    def length(iterations: int, epochs: int, per: int) -> str:
        rest = iterations - epochs * per
        return counted(epochs, "epoch") + (f" and {counted(rest, 'iteration')}" if rest else "")

    last_lr = last_rate(m["iterations"], per_epoch) if m["iterations"] else None
    section.add(Table(["quantity", "mlplab", "exercise"], [
        ["validation accuracy", pct(m["val_accuracy"]), ref],
        ["train accuracy (whole training split)", pct(m["train_accuracy"]), "—"],
        ["final minibatch loss", f"{m['final_loss']:.4f}", "—"],
        ["iterations (epochs)",
         f"{m['iterations']} ({length(m['iterations'], m['epochs'], per_epoch)})",
         f"{cfg['iters']} ({length(cfg['iters'], ex_epochs, ex_per_epoch)} of its "
         f"{reference.EXERCISE_SPLIT[0]:,} training images)"],
        ["learning rate of the last iteration", sci(last_lr),
         f"{sci(last_rate(cfg['iters'], ex_per_epoch))} (epoch "
         f"{(cfg['iters'] - 1) // ex_per_epoch + 1}, lr × {value(cfg['lr_decay'])} per epoch)"],
        ["wall time", seconds(m["seconds"]), "—"]], "Result"))
    del X_val
    section.data.update(val_acc=m["val_accuracy"], train_acc=m["train_accuracy"],
                        final_loss=m["final_loss"], iterations=m["iterations"],
                        epochs=m["epochs"], last_lr=last_lr, config=cfg)


def _read_trials(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _study_storage(out: Path) -> str | None:
    """The study's storage in the report's ``tuning/``: ``study.db`` (None, tune's default),
    or a journal file ``study.log`` where no SQLite URL can name that file (a folder name that
    is not text in the file system's encoding, a Latin-1 one or any non-ASCII one under an
    ASCII locale): the stage failed there, its error naming --storage, which reproduce lacks."""
    from mlplab.tuning.storage import sqlite_url

    try:
        sqlite_url(out / "study.db")
    except ValueError:
        return f"journal:{out / STUDY_JOURNAL}"
    return None


#: the study's journal file in the report's tuning/ where no SQLite URL can name study.db
STUDY_JOURNAL = "study.log"


def stage_q3_tuning(ctx: Context, section: Section) -> None:
    from mlplab import tuning

    ds = ctx.need("dataset", "the dataset")
    b = ctx.budget
    # a fresh study each time (resuming an old one would mix seeds and budgets), made beside the
    # report's tuning/, which it replaces when the report is written
    out = ctx.staging / "tuning"
    if out.exists():
        shutil.rmtree(out)
    space = tuning.SearchSpace.load(b.search_space())
    # the budget's cap on the trials' images: a smaller training split (digits, a small folder)
    # is searched whole, where asking tune() for more images than there are fails the stage
    cap = b.tune_max_train
    train_size = cap if cap and cap < len(ds.y_train) else None
    result = tuning.tune(ds, trials=b.tune_trials, search_space=space.to_dict(), out=out,
                         storage=_study_storage(out), seed=ctx.seed, eval_test=False,
                         progress=ctx.progress, preprocess=TUNING_PREPROCESSING,
                         train_size=train_size, sampler="tpe", prune=b.tune_prune,
                         heartbeat=None)
    if result.best_trial is None:
        raise RuntimeError(f"no tuning trial completed ({result.n_failed} failed).")
    settings = {**space.fixed, **result.best_params}
    ctx.shared["tuning"] = {"settings": settings, "result": result}

    subset = (f"a stratified subset of {train_size} training images"
              if train_size else "the whole training split")
    section.add(Text(
        f"Optuna's TPE sampler (seed {ctx.seed}) searched the exercise's knobs (hidden size, "
        f"learning rate, epochs, batch size, regularisation, learning-rate decay) for "
        f"{b.tune_trials} trials" + (f" with {b.tune_prune} pruning" if b.tune_prune else "")
        + f", each trained on {subset} with plain SGD and judged by its final validation "
        "accuracy. The rest of the pipeline is mlplab's default, not the exercise's: inputs "
        "standardised per channel (not the mean image subtracted), He-initialised weights (not "
        "N(0, 1e-4)) and epochs that visit the images in a shuffled order (not minibatches "
        "sampled with replacement); the preset `exercise-tuned` below keeps the exercise's. "
        + tuning_files_text(result, ctx.staging)))
    ranges = [[name, p.type, _range(p)] for name, p in space.params.items()]
    ranges += [[name, "fixed", value(v)] for name, v in space.fixed.items()]
    section.add(Table(["knob", "kind", "range / value"], ranges, "Search space"))

    header, trials = _read_trials(result.files["csv"])
    # results.csv has the epochs each trial trained ("epochs_run", fewer when pruned) next to
    # the knobs (older versions named that column "epochs", like the knob)
    run_col = "epochs_run" if "epochs_run" in header else "epochs"
    params = [h for h in header if h not in ("trial", "state", "val_acc", "epochs_run",
                                             "seconds", "worker", "note")
              and not (run_col == "epochs" and h == "epochs")]
    rows = []
    for t in trials:
        best = t["trial"] == str(result.best_trial)
        cells = [t["trial"], t["state"].lower(),
                 pct(float(t["val_acc"])) if t["val_acc"] else "—",
                 *[_cell(t[p]) for p in params], t.get(run_col) or "—",
                 trial_seconds(t.get("seconds", "")), t.get("note", "")]
        rows.append([f"**{c}**" if best and c else c for c in cells])
    section.add(Table(["trial", "state", "validation", *params, "epochs trained", "seconds",
                       "note"], rows,
                      f"Trials (best in bold): {result.n_complete} complete, {result.n_pruned} "
                      f"pruned, {result.n_failed} failed"))
    path, rel = ctx.figure("q3-tuning-history.png")
    figures.optimisation_history(
        [(int(t["trial"]), t["state"], float(t["val_acc"]) if t["val_acc"] else None)
         for t in trials], path)
    section.add(Figure(rel, "Optimisation history: validation accuracy of every trial and the "
                            "best so far"))
    section.add(KeyValues([(k, value(v)) for k, v in settings.items()],
                          f"Best configuration: trial {result.best_trial}, validation "
                          f"{pct(result.best_value)}"))
    section.data.update(trials=b.tune_trials, complete=result.n_complete,
                        pruned=result.n_pruned, failed=result.n_failed,
                        best_trial=result.best_trial, best_val_acc=result.best_value,
                        best_settings=settings, train_size=train_size,
                        seconds=result.wall_seconds)


def trial_seconds(text: str) -> str:
    """A trial's time as results.csv gives it (seconds, blank if none), for the trials table:
    to the tenth of a second, as other times, except below one second, where digits' trials
    of 0.03-0.2 s showed as "0.0" and "0.1" beside each other."""
    if not text:
        return "—"
    x = float(text)
    if x >= 0.995:  # what rounds to 1.00 or more: "1.0", not "1.00"
        return f"{x:.1f}"
    return f"{x:.2f}" if x >= 0.01 else "< 0.01"


#: Optuna's plots in tuning/, by their names in ``TuneResult.files``, as the report calls them
_OPTUNA_PLOTS = {"optimization_history": "optimisation history",
                 "parallel_coordinate": "parallel coordinates",
                 "param_importances": "hyperparameter importances"}


def tuning_files_text(result: Any, root: Path) -> str:
    """The sentence that links the search's files in ``tuning/`` (``result`` is the
    :class:`mlplab.tuning.TuneResult`; its paths lie under ``root``, the report folder as it
    is being made): "they are in tuning/" left the reader to find which file holds what."""

    def link(label: str, path: Path | None) -> str | None:
        if path is None or not Path(path).exists():
            return None
        rel = Path(path).relative_to(root).as_posix() + ("/" if Path(path).is_dir() else "")
        return f"[{label}]({rel})"

    files = result.files
    trials = [x for x in (link("results.csv", files.get("csv")),
                          link("results.md", files.get("markdown"))) if x]
    plots = [x for x in (link(label, files.get(key)) for key, label in _OPTUNA_PLOTS.items())
             if x]
    study = STUDY_JOURNAL if str(result.storage).startswith("journal:") else "study.db"
    parts = [f"the study (`{study}`)"]
    if trials:
        parts.append(f"every trial ({', '.join(trials)})")
    if plots:
        parts.append(f"Optuna's own plots ({', '.join(plots)})")
    best = link("best-run/", result.run_dir)
    if best:
        parts.append(f"the best trial's run folder ({best}, trained on the trials' images; the "
                     "tuned network below is trained again on the whole training split)")
    return ("Next to this report, `tuning/` holds " + ", ".join(parts[:-1])
            + (" and " if len(parts) > 1 else "") + parts[-1] + ".")


def _range(p: Param) -> str:
    if p.type == "categorical":
        return ", ".join(value(c) for c in p.choices)
    text = f"{value(p.low)} .. {value(p.high)}"
    if getattr(p, "log", False):
        text += " (log)"
    if getattr(p, "step", None):
        text += f" step {value(p.step)}"
    return text


def _cell(text: str) -> str:
    try:
        return value(float(text)) if "." in text or "e" in text.lower() else text
    except ValueError:
        return text


def choose_tuned(candidates: list[tuple]) -> tuple[tuple, str]:
    """The candidate with the best validation accuracy (``c[2]``; ties: the first listed, the
    search's best) and why it was chosen, as the report's text says it."""
    best = max(candidates, key=lambda c: c[2])
    if len(candidates) == 1:
        return best, "the only candidate"
    if any(c is not best and c[2] == best[2] for c in candidates):
        # "the better validation accuracy" was false of a tie (on digits' 180 validation
        # images two networks can easily score the same)
        return best, (f"tied on validation accuracy at {pct(best[2])}; the tie goes to the one "
                      "listed first")
    return best, "the better validation accuracy"


def stage_q3_tuned(ctx: Context, section: Section) -> None:
    """Retrain the search's best configuration on the whole training split, and train the
    hand-tuned preset next to it; the one with the better validation accuracy is the tuned
    network, and only it is evaluated on the test split, once."""
    from mlplab import tuning
    from mlplab.trainer import Trainer

    ds = ctx.need("dataset", "the dataset")
    candidates: list[_Candidate] = []
    tuned = ctx.shared.get("tuning")
    if tuned is not None:
        data = tuning.prepare(ds, TUNING_PREPROCESSING)
        model, config = tuning.build(tuned["settings"], data.num_features, data.num_classes,
                                     ctx.seed)
        trainer = Trainer(config, progress=ctx.progress)
        history = trainer.fit(model, data.X_train, data.y_train, data.X_val, data.y_val)
        if history.interrupted:
            raise KeyboardInterrupt
        candidates.append(("the search's best", model.accuracy(data.X_train, data.y_train),
                           model.accuracy(data.X_val, data.y_val), model, history, data.X_val,
                           data.X_test, max(trainer.iteration // max(trainer.epoch, 1), 1),
                           config.train_acc,
                           {"settings": tuned["settings"], "iterations": trainer.iteration}))
        section.add(Text(
            f"The search's best configuration, trained again with seed {ctx.seed} on the whole "
            f"training split ({len(data.y_train)} images, {trainer.iteration} iterations)."))
    if ctx.budget.preset_run or tuned is None:
        from mlplab.presets import describe_presets

        r = _preset_run(ctx, "exercise-tuned")
        X_val = r.preprocessing.transform(ds.X_val)
        candidates.append(("preset exercise-tuned", r.metrics["train_accuracy"],
                           r.metrics["val_accuracy"], r.model, r.history, X_val,
                           r.preprocessing.transform(ds.X_test), None, r.config.train_acc,
                           {"settings": r.config.to_dict(), "iterations": r.metrics["iterations"]}))
        # without a search result (--only without q3_tuning) the preset is the only candidate:
        # there is nothing for it to be "next to"
        lead = ("Next to it, preset `exercise-tuned` keeps the exercise's own pipeline (the mean "
                "image subtracted, N(0, 1e-4) weights, minibatches sampled with replacement)"
                if tuned is not None else
                "No search result in this report (the tuning stage did not run), so the only "
                "candidate is preset `exercise-tuned`")
        section.add(Text(f"{lead}: {describe_presets()['exercise-tuned']}."))
    if not candidates:
        raise RuntimeError("nothing to train: no tuning result and no preset run.")

    # choose by validation accuracy only; the test split is touched once, by the chosen network
    best, why = choose_tuned(candidates)
    name, train, val, model, history, X_val, X_test, per_epoch, train_acc, info = best
    test = model.accuracy(X_test, ds.y_test)
    section.add(Text(
        f"The tuned network is **{name}** ({why}); it alone is evaluated on the test split: "
        f"**{pct(test)}**. The figures below are its own."))
    _run_figures(ctx, section, "q3-tuned", f"Tuned network ({name})", history, model, ds,
                 X_val=X_val, per_epoch=per_epoch, test_acc=test, train_acc=train_acc,
                 whose=name)
    rows = [[c[0], pct(c[1]), pct(c[2]), pct(test) if c is best else "— (not selected)"]
            for c in candidates]
    target = (f"> {pct(reference.TUNED_TARGET_VAL, 0)}; the 2020 report: "
              f"{pct(reference.REPORT_2020_TWO_LAYER_VAL)}")
    section.add(Table(["network", "train", "validation", "test (once)"], rows,
                      f"Tuned two-layer networks (the exercise's validation target on CIFAR-10 "
                      f"{target})"))
    section.data.update(selected=name, val_acc=val, train_acc=train, test_acc=test, **info,
                        candidates={c[0]: {"train_acc": c[1], "val_acc": c[2]}
                                    for c in candidates})
