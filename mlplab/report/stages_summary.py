"""The summary: mlplab's figures next to the exercise's targets and the 2020 student report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlplab.report import reference
from mlplab.report.context import Context
from mlplab.report.document import Section, Table, Text
from mlplab.report.fmt import pct, sci
from mlplab.report.rendering import md_literal
from mlplab.report.stages_exercise import DEEP_NORM_BOUND

NOT_RUN = "not run"


def _or_not_run(ctx: Context, key: str, fmt: Callable[[dict[str, Any]], str]) -> str:
    data = ctx.data(key)
    if not data:
        return NOT_RUN
    try:
        return fmt(data)
    except (KeyError, TypeError):
        return NOT_RUN


def stage_summary(ctx: Context, section: Section) -> None:
    ds = ctx.data("data")
    cifar = reference.is_cifar10(ds.get("image_shape", ()), ds.get("classes", ()))
    if not ds:
        # no data, so no accuracy row was measured: "ran on cifar10, so not comparable" (what
        # the sentence below said) contradicts itself when CIFAR-10 was simply not found
        section.add(Text(
            "The data stage did not run, so no accuracy below was measured: there is nothing "
            "to set beside the targets and the 2020 figures (the toy checks of Q1-Q3 need no "
            "data)."))
    elif not cifar:
        section.add(Text(
            f"The targets and the 2020 figures are for CIFAR-10; this report ran on "
            f"**{md_literal(ctx.dataset)}**, so the accuracy rows are not comparable with them "
            "(the toy checks of Q1-Q3 are)."))
    sizes = ds.get("sizes", {})
    exercise_split = (sizes.get("train"), sizes.get("val")) == reference.EXERCISE_SPLIT
    if cifar and not exercise_split and sizes:
        # e.g. the shared JPEG folder, which holds only CIFAR-10's training images: the figures
        # below are then measured on other images than the exercise's
        counts = " / ".join(f"{sizes.get(k, 0):,}" for k in ("train", "val", "test"))
        section.add(Text(
            f"This run's split ({counts} train / validation / test images) is not the exercise's "
            f"({reference.EXERCISE_SPLIT[0]:,} / {reference.EXERCISE_SPLIT[1]:,}, tested on "
            "CIFAR-10's official test images), so its accuracy rows sit next to the targets and "
            "the 2020 report as a guide, not as the same measurement."))
    # written as the column's other bounds ("< 1e-8"), not as Python's 1e-07
    deep_bound = f"{DEEP_NORM_BOUND:.0e}".replace("e-0", "e-")
    rows = [
        ["Q1 toy loss (reg 0.05)", _or_not_run(ctx, "q1", lambda d: f"{d['loss']:.11f}"),
         "1.30378789133 (|diff| < 1e-10)", "—"],
        ["Q1 sum of |p − correct|", _or_not_run(ctx, "q1", lambda d: sci(d["prob_abs_diff_sum"])),
         "< 1e-7", "—"],
        ["Q2 largest gradient error, two-layer net",
         _or_not_run(ctx, "q2", lambda d: sci(max(d["two_layer"].values()))),
         "< 1e-8 (about 3e-9)", "—"],
        ["Q2 largest norm-wise gradient error, deeper net",
         _or_not_run(ctx, "q2", lambda d: sci(max(d["deep_norm"].values()))),
         f"— (beyond the exercise; mlplab's bound < {deep_bound})", "—"],
        ["Q3 toy training final loss",
         _or_not_run(ctx, "q3_toy", lambda d: f"{d['final_loss']:.4f}"),
         f"< {reference.TOY_FINAL_LOSS_BOUND} (about {reference.TOY_FINAL_LOSS_TYPICAL})", "—"],
        ["Q3 default run, validation",
         _or_not_run(ctx, "q3_default", lambda d: pct(d["val_acc"])),
         f"about {pct(reference.DEFAULT_RUN_VAL, 0)}", "—"],
        ["Q3 tuned two-layer net, validation",
         _or_not_run(ctx, "q3_tuned", lambda d: f"{pct(d['val_acc'])} ({d['selected']})"),
         f"> {pct(reference.TUNED_TARGET_VAL, 0)} (reference net > "
         f"{pct(reference.TUNED_REFERENCE_VAL, 0)})",
         " → ".join(pct(v) for v in reference.REPORT_2020_TUNING)],
        ["Q3 tuned two-layer net, test (run once)",
         _or_not_run(ctx, "q3_tuned", lambda d: pct(d["test_acc"])), "—", "—"],
    ]
    q4 = ctx.data("q4")
    for depth, (tr, te) in reference.REPORT_2020_DEPTHS.items():
        ours = NOT_RUN
        for r in q4.get("results", []):
            if r["init"] == "exercise" and r["depth"] == depth:
                ours = f"{pct(r['train_acc'])} / {pct(r['val_acc'])}"
                if r.get("test_acc") is not None:
                    ours += f" (test {pct(r['test_acc'])})"
        name = "2 layers, the default net" if depth == 2 else f"{depth} layers"
        rows.append([f"Q4 PyTorch, {name} (exercise init): train / validation", ours, "—",
                     f"{pct(tr)} / {pct(te)} (train / test)"])
    rows.append(["Q4 best PyTorch network, test",
                 _or_not_run(ctx, "q4", lambda d: f"{pct(d['best']['test_acc'])} "
                             f"({d['best']['depth']} layers, {d['best']['init']} init)"),
                 "—", f"{pct(max(te for _, te in reference.REPORT_2020_DEPTHS.values()))} "
                 "(5 layers)"])
    section.add(Table(["figure", "mlplab", "exercise target", "2020 report"], rows,
                      "mlplab against the exercise and the 2020 report"))
    section.data.update(rows=rows, comparable=cifar, exercise_split=exercise_split)
