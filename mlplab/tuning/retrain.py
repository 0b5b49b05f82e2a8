"""Retraining the best trial as a normal run folder (:func:`retrain_best`, through
:func:`mlplab.runs.train_run`), built beside an older one and swapped in place so that an
interrupted retraining loses nothing. It is the only step of tuning that may evaluate the test
split, so it stands apart from the search, which never sees it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplab._validation import setting
from mlplab.tuning.data import DataSource, TuningData
from mlplab.tuning.objective import build
from mlplab.tuning.processes import process_alive
from mlplab.tuning.space import SearchSpace
from mlplab.tuning.study import best_so_far

if TYPE_CHECKING:
    import optuna

    from mlplab.runs.training import RunResult


#: the note in ``best-run/`` saying which trial of which study it retrains
TUNING_NOTE = "tuning.json"


def finished_best_run(study: optuna.Study, out: Path, seed: int | None = 0,
                      eval_test: bool = False, best: tuple[int, float] | None = None
                      ) -> dict[str, Any] | None:
    """The metrics of the run folder ``out`` if it already holds the study's best trial (or
    ``best``, a trial's number and value), retrained to completion with this seed (and
    evaluated on the test split if ``eval_test``), else None. A rerun of a finished search then
    keeps it: retraining would give the same model again, at the cost of a whole training run
    (and a further look at the test split)."""
    from mlplab.io import read_json
    from mlplab.runs.files import CONFIG_FILE, METRICS_FILE, MODEL_FILE

    number, value = best if best is not None else best_so_far(study)
    try:
        note, config, metrics = (read_json(out / name) for name in
                                 (TUNING_NOTE, CONFIG_FILE, METRICS_FILE))
    except (OSError, ValueError):  # none yet, or damaged: retrain
        return None
    same = (isinstance(note, dict) and isinstance(config, dict) and isinstance(metrics, dict)
            and note.get("study") == study.study_name and note.get("trial") == number
            and note.get("value") == value and config.get("seed") == (seed or 0)
            and metrics.get("status") == "completed"
            and isinstance(metrics.get("val_accuracy"), float)
            and (not eval_test or isinstance(metrics.get("test_accuracy"), float))
            and (out / MODEL_FILE).is_file())
    return metrics if same else None


def retrain_best(study: optuna.Study, data: TuningData, out: Path, seed: int | None = 0,
                 eval_test: bool = False, source: DataSource | None = None,
                 trial: int | None = None) -> RunResult:
    """Train the best trial's settings (or trial number ``trial``'s) again with
    :func:`mlplab.runs.train_run` (same data, preprocessing and seed, so the same model) into
    the run folder ``out``, replacing an older one; returns the :class:`~mlplab.runs.RunResult`.

    The test split is evaluated only here, only with ``eval_test``, and only once. ``source``
    is no longer used (the run records the name, split and loading options of ``data``'s
    dataset itself); it is kept so that existing calls still work.
    """
    import shutil

    from mlplab.io import write_json
    from mlplab.runs import train_run
    from mlplab.runs.training import interrupts_said_elsewhere

    number = trial if trial is not None else best_so_far(study)[0]
    if number is None:
        raise RuntimeError("no trial completed, so there is no best trial to retrain.")
    if data.dataset is None:
        raise ValueError("retraining the best trial needs the raw dataset (TuningData made by "
                         "mlplab.tuning.prepare); pass a dataset name or Dataset to tune().")
    chosen = study.trials[number]
    space_dict = study.user_attrs.get("mlplab:search_space")
    fixed = SearchSpace.from_dict(space_dict).fixed if space_dict else {}
    settings = {**fixed, **chosen.params}
    model, config = build(settings, data.num_features, data.num_classes, seed)
    options: dict[str, Any] = {k: v for k, v in config.to_dict().items()
                               if k not in ("seed", "verbose", "progress")}
    mc = model.config
    options.update(hidden=mc["hidden_sizes"], activation=mc["activation"], init=mc["init"],
                   std=mc["std"], dropout=mc["dropout"], batchnorm=mc["batchnorm"],
                   seed=0 if seed is None else seed, eval_test=eval_test,
                   preprocessing=(data.preprocessing_name or "standardize"))
    # no dataset, split or loading options: train_run records those of the dataset it is lent
    # (its name, split sizes, and Dataset.load_options), and refuses any that differ
    from mlplab import interrupts

    # train beside the old folder, then swap, so an interrupted retraining loses nothing
    for stale in out.parent.glob(f".{out.name}.*.*"):  # .tmp and .old of killed processes
        pid, _, kind = stale.name[len(out.name) + 2:].partition(".")
        if kind in ("tmp", "old") and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    old = out.parent / f".{out.name}.{os.getpid()}.old"
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    try:
        # (a whole configuration, not keywords: its unused settings are not asked for)
        # (no RunInterruptedWarning: it would offer to resume tmp, removed below)
        with interrupts_said_elsewhere():
            result = train_run(options, out=tmp, data=data.dataset)
        if result.interrupted:  # Ctrl-C: keep the older best-run, and stop as a search does
            raise KeyboardInterrupt
        write_json(tmp / TUNING_NOTE, {
            "study": study.study_name, "trial": number, "value": chosen.value,
            "settings": settings,
            "train_size": len(data.y_train),
            "note": ("trained on the same training images as the trials; config.json describes "
                     f"the dataset without any {setting('--train-size', 'train_size')} subset, "
                     "so replaying it trains on all training images")})
        with interrupts.deferred():  # the old folder out of the way, the new one in place
            if out.exists():
                os.replace(out, old)
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    result.out = out
    return result
