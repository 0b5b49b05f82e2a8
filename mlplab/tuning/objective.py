"""One trial: :func:`build` turns a trial's settings into a model and a training configuration,
and :class:`Objective` trains it, reports every epoch's validation accuracy to Optuna (so that a
pruner can stop it) and returns the final validation accuracy. It is the one place where tuning
meets the trainer; the search loop and the worker processes only hand it data and a space.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mlplab._text import percent
from mlplab._validation import search_space_names
from mlplab.trainer import Callback, SettingsError, TrainConfig, Trainer, TrainingDivergedError
from mlplab.tuning.data import TuningData
from mlplab.tuning.processes import worker_name
from mlplab.tuning.space import KNOBS, SearchSpace, train_config
from mlplab.tuning.storage import name_trial, release_interrupted
from mlplab.tuning.workable import never_configures

if TYPE_CHECKING:
    import optuna

    from mlplab.models import MLP


def build(settings: Mapping[str, Any], input_size: int, num_classes: int,
          seed: int | None = 0) -> tuple[MLP, TrainConfig]:
    """``(model, TrainConfig)`` for one trial's ``settings`` (knob -> value)."""
    from mlplab.models import MLP

    unknown = set(settings) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown knobs: {', '.join(sorted(unknown))}.")
    model_kw = {k: v for k, v in settings.items() if KNOBS[k].target == "model"}
    hidden = int(model_kw.pop("hidden_size", 50))  # 50: the exercise's default
    depth = int(model_kw.pop("depth", 1))
    model = MLP(input_size, [hidden] * depth, num_classes, seed=seed, **model_kw)
    return model, train_config(settings, seed)


#: the attribute of a trial that failed for a configuration no trial of its space can escape
#: (the search stops there): the space's name, as errors give it
UNWORKABLE_ATTR = "mlplab:unworkable"


class ConfigurationError(Exception):
    """A trial whose knobs cannot work together (the trainer's :class:`SettingsError`): it
    fails, and Optuna logs it as one line, its own warning "Trial N failed with parameters:
    {...} because of the following error: MESSAGE." (see :func:`mlplab.tuning.quiet.
    quiet_interrupts`, which drops its traceback and the "failed with value None." after it)."""

    def __repr__(self) -> str:
        # (Optuna writes repr(error) and a full stop: "ConfigurationError('...')." said less)
        return str(self).rstrip(".")


class FailedAsStale(Exception):
    """A trial that another process failed as stale (and re-queued) while this worker ran it,
    or before it named it: a worker suspended past the grace period (a laptop's sleep, a
    stopped process), whose sampler took longer than that, or whose clock is behind. Given up
    quietly: its settings run again in a worker of the study."""


def finished_elsewhere(trial: optuna.Trial) -> bool:
    """Whether the storage has ``trial`` finished (by another process, while this one runs it)."""
    try:
        return trial.study._storage.get_trial(trial._trial_id).state.is_finished()
    except Exception:  # (the storage unreachable: the error at hand says more)
        return False


class _ReportCallback(Callback):
    """Reports each epoch's validation accuracy to the trial; raises ``TrialPruned`` when the
    pruner says so (the trainer lets it propagate, ending the trial)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        import optuna

        self.trial.report(float(logs["val_acc"]), epoch)
        cfg = trainer.config
        if cfg.iters is None and cfg.epochs is not None and epoch >= cfg.epochs:
            return  # the trial is finished: pruning it now would only throw its result away
        if trainer.stop:
            # finished as well: early stopping (patience) ended it, its best epoch restored
            # (the trainer decides that before this callback); a Ctrl-C is seen by the search
            return
        if self.trial.should_prune():
            self.trial.set_user_attr("epochs", epoch)
            raise optuna.TrialPruned(f"validation accuracy {percent(logs['val_acc'])} after epoch "
                                     f"{epoch} is hopeless next to the other trials")


class Objective:
    """The trial function: build, train, return the final validation accuracy.

    A run whose loss diverges is a legitimate (bad) outcome, not a failure: it returns 0.0 so the
    sampler learns to avoid that region, and the trial is flagged ``diverged``. A trial whose
    knobs cannot work together raises :class:`ConfigurationError` (a study's ``optimize`` goes
    on past it with ``catch=(ConfigurationError,)``, as the search's does).
    """

    def __init__(self, data: TuningData, space: SearchSpace, seed: int | None = 0,
                 worker: str | None = None) -> None:
        self.data = data
        self.space = space
        # None trains with seed 0, as the retrain of the best trial does: trials drawn from
        # random seeds were retrained with seed 0, and best-run/ was another (worse) model
        self.seed = 0 if seed is None else seed
        self.worker = worker or worker_name()
        # whether no point of the space gets past its configuration: asked at the first trial
        # that fails so (see mlplab.tuning.workable), the same for every later one
        self._never_configures: bool | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except KeyboardInterrupt as exc:
            # Optuna catches it and records the trial FAIL at once: a Ctrl-C inside one of the
            # trial's queries (its settings, its attributes, a report) must first let go of the
            # statement whose lock that write would wait for (see release_interrupted)
            release_interrupted(exc)
            raise
        except Exception:
            # a report or attribute written to a trial that another process has failed (Optuna's
            # UpdateFinishedTrialError; a RuntimeError before Optuna 4.3): its traceback of "has
            # already finished", 60 lines a trial, said nothing the user can act on
            if finished_elsewhere(trial):
                raise FailedAsStale from None
            raise

    def _run(self, trial: optuna.Trial) -> float:
        import optuna

        # named before its settings are drawn (which takes a while with TPE): see
        # mlplab.tuning.search._WithinTarget
        name_trial(trial, self.worker)
        settings = self.space.suggest(trial)
        start = time.perf_counter()
        try:
            # its messages name the knobs as the search space does: on the command line they
            # said `mlplab train`'s "--weight-decay ... use --reg", which no space can set
            with search_space_names():
                model, config = build(settings, self.data.num_features, self.data.num_classes,
                                      self.seed)
                trainer = Trainer(config, callbacks=[_ReportCallback(trial)])
            # a diverging trial is expected now and then; the trainer detects it, so NumPy's
            # overflow warnings would only be noise
            with np.errstate(over="ignore", invalid="ignore"), search_space_names():
                history = trainer.fit(model, self.data.X_train, self.data.y_train,
                                      self.data.X_val, self.data.y_val)
        except TrainingDivergedError:
            trial.set_user_attr("diverged", True)
            trial.set_user_attr("epochs", trainer.epoch)
            return 0.0
        except SettingsError as exc:
            # knobs each in range but not together (min_lr above lr, batch norm on one-row
            # batches): this trial fails, the search goes on, unless no trial can do better.
            # (It returned NaN, which Optuna logged as two warnings, "The value nan is not
            # acceptable" and "failed with value nan", neither of which said why.)
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:300])
            if self._never_configures is None:
                self._never_configures = never_configures(self.space, len(self.data.X_train))
            where = self.space.where  # (its file: the message says where to change them)
            if self._never_configures:
                trial.set_user_attr(UNWORKABLE_ATTR, where)
                raise ConfigurationError(f"{where}: no trial can run, whatever values the "
                                         f"search draws: {exc}") from None
            raise ConfigurationError(f"{where}: these settings cannot work together: "
                                     f"{exc}") from None
        except Exception as exc:
            if isinstance(exc, optuna.TrialPruned) and trainer.stop_requested:
                # a Ctrl-C in the epoch end that pruned it: the search was asked to stop
                raise KeyboardInterrupt from None
            if not isinstance(exc, optuna.TrialPruned):
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:300])
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        # (also a Ctrl-C in the last epoch's end, the validation pass or the report: the run
        # is complete, but the search was asked to stop and this trial is re-queued as any
        # other interrupted one; the request was swallowed, and the search ran on to its end)
        if history.interrupted or trainer.stop_requested:
            raise KeyboardInterrupt
        trial.set_user_attr("epochs", len(history.val_acc))
        trial.set_user_attr("train_acc", float(history.train_acc[-1]))
        # the model the settings produce: with early stopping the best epoch's parameters are
        # restored, and a run of `iters` may end between epochs, after its last evaluation
        return float(model.accuracy(self.data.X_val, self.data.y_val))
