"""Opening a study and reading its state: :func:`open_study` creates or loads a maximising study
and pins the search space and data it was created with (:data:`STUDY_ATTRS`), so that a resumed
study cannot silently mix them; :func:`finished_count` counts the finished trials and
:func:`best_so_far` picks the best one (never a diverged one) for the search loop, the progress
bar, the results and the retraining alike.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlplab._validation import setting
from mlplab.tuning.quiet import quiet_optuna_warnings
from mlplab.tuning.space import SearchSpace
from mlplab.tuning.storage import StorageSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

#: study user attributes that pin what a study searches, so a resumed study cannot silently mix;
#: the seed too, since every trial trains with it: trials of two seeds are not comparable, and the
#: best one retrained with another seed is another model; and the sampler and the pruner by name,
#: which decide what is tried and what is stopped (a search that changed them half-way reads as
#: one search in its tables); not the timeout, a limit of each invocation
STUDY_ATTRS = ("mlplab:search_space", "mlplab:seed", "mlplab:dataset", "mlplab:sampler",
               "mlplab:pruner")
_WHAT = {"mlplab:search_space": "search space", "mlplab:seed": "seed", "mlplab:dataset": "data",
         "mlplab:sampler": "sampler", "mlplab:pruner": "pruner"}

#: ``open_study``'s default for ``seed``, ``sampler_name`` and ``pruner_name``: do not check it
#: (a study opened only to be read)
_UNCHECKED = object()


def check_study_name(name: str) -> None:
    """Refuse a study name that is empty or blank (an unset shell variable: an empty one fell
    back to the default name without a word) or holds a control character (a newline, a tab),
    which no message, table or later command line shows as it is. Also run by ``mlplab tune``
    before any work, as the usage error it is (exit 2)."""
    import unicodedata

    flag = setting("--study", "study_name")
    default = f"leave out {flag} for the default name (tune-<dataset>)"
    if not isinstance(name, str):
        raise ValueError(f"{flag} must be a string; got {name!r}.")
    if not name.strip():
        unset = " (an unset shell variable?)" if name == "" else ""
        raise ValueError(f"{flag} {name!r} is blank{unset}; give a name, or {default}.")
    control = [c for c in name if unicodedata.category(c) == "Cc"]
    if control:
        raise ValueError(f"{flag} {name!r} holds a control character ({control[0]!r}); give a "
                         f"name without newlines, tabs or other control characters, or "
                         f"{default}.")


def open_study(storage: StorageSpec, study_name: str, space: SearchSpace | None = None,
               data_description: dict[str, Any] | None = None,
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None,
               seed: int | None | object = _UNCHECKED,
               sampler_name: str | object = _UNCHECKED,
               pruner_name: str | None | object = _UNCHECKED,
               same_data: Callable[[Any], bool] | None = None) -> optuna.Study:
    """Create or load ``study_name`` (maximising). A new study records its search space, the
    trials' training ``seed``, data, and the names of its sampler and pruner (None: no
    pruning); loading one that recorded different ones raises a ValueError instead of mixing
    them. A study made before the seed, sampler or pruner was recorded takes the one it is
    resumed with. ``same_data`` says whether a recorded data description that differs still
    gives this command's data (the default split size written out)."""
    import optuna

    with quiet_optuna_warnings():
        study = optuna.create_study(storage=storage.open(), study_name=study_name,
                                    direction="maximize", load_if_exists=True, sampler=sampler,
                                    pruner=pruner)
    if space is None:
        return study
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(f"study {study_name!r} in {storage.display} minimises; it is not an "
                         "mlplab tuning study. Choose another "
                         f"{setting('--study name', 'study_name')}.")
    wanted: dict[str, Any] = {"mlplab:search_space": space.to_dict()}
    if seed is not _UNCHECKED:
        wanted["mlplab:seed"] = seed
    wanted["mlplab:dataset"] = data_description
    for key, name in (("mlplab:sampler", sampler_name), ("mlplab:pruner", pruner_name)):
        if name is not _UNCHECKED:
            wanted[key] = name
    have = dict(study.user_attrs)
    if "mlplab:search_space" in have:  # as this mlplab writes it (an older one kept `step: 1`)
        have["mlplab:search_space"] = _as_written_now(have["mlplab:search_space"])
    for key, value in wanted.items():
        if key in have and _canonical(have[key]) != _canonical(value):
            if key == "mlplab:dataset" and same_data is not None and same_data(have[key]):
                continue
            raise ValueError(
                f"study {study_name!r} in {storage.display} was created with "
                f"{'' if key == 'mlplab:dataset' else 'a '}different {_WHAT[key]} "
                f"({_difference(key, have[key], value)}); resume it with "
                f"the same options or choose a new {setting('--study name', 'study_name')} "
                # an output folder holds one study's outputs: a given one is refused to another
                f"(and another {setting('--out', 'out')}, if you gave one).")
    # only once all match: a refused command must not pin what it brought (a study made before
    # the seed was recorded would otherwise refuse its own seed afterwards)
    for key, value in wanted.items():
        if key not in have:
            study.set_user_attr(key, value)
    return study


def _as_written_now(recorded: Any) -> Any:
    """A recorded search space in the form this mlplab records it (unchanged if it cannot be
    read: the comparison then says how it differs)."""
    try:
        return SearchSpace.from_dict(recorded).to_dict()
    except (TypeError, ValueError):
        return recorded


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _difference(key: str, had: Any, wants: Any) -> str:
    """What differs between the recorded ``had`` and the ``wants`` of this command: for a search
    space only the knobs added, removed or changed (two whole spaces as JSON hide the one knob
    that differs); anything else, short, whole."""
    if key == "mlplab:search_space" and isinstance(had, dict) and isinstance(wants, dict):
        parts = [f"`{knob}`: {_knob_text(had[knob])} in the study, {_knob_text(wants[knob])} now"
                 for knob in had if knob in wants
                 and _canonical(had[knob]) != _canonical(wants[knob])]
        parts += [f"added `{knob}`: {_knob_text(wants[knob])}" for knob in wants
                  if knob not in had]
        parts += [f"removed `{knob}`: {_knob_text(had[knob])}" for knob in had
                  if knob not in wants]
        if parts:
            return "; ".join(parts)

    def shown(value: Any) -> str:  # no pruner is None: "null" is JSON's word, not the user's
        return "none" if value is None else json.dumps(value, default=str)

    return f"{shown(had)} vs {shown(wants)}"


def _knob_text(value: Any) -> str:
    # in the YAML flow form the search space is written in (docs/tuning.md): a searched knob
    # as {type: float, low: 0.05, high: 0.5}, a fixed one as its value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_knob_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_knob_text(v) for v in value) + "]"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


#: user attribute of a trial that its worker gave up as it began, the study's target being met
#: by the trials begun before it (:mod:`mlplab.tuning.search`): it trained nothing, is recorded
#: FAIL without settings, and the tables and counts leave it out
SURPLUS_ATTR = "mlplab:surplus"


def recorded_trials(study: optuna.Study, states: tuple[Any, ...] | None = None
                    ) -> list[optuna.trial.FrozenTrial]:
    """The study's trials (those in ``states``, or all) but the ones given up as surplus."""
    return [t for t in study.get_trials(deepcopy=False, states=states)
            if not t.user_attrs.get(SURPLUS_ATTR)]


def finished_count(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def best_so_far(study: optuna.Study) -> tuple[int | None, float | None]:
    from optuna.trial import TrialState

    # a diverged trial scores 0.0 for the sampler's sake but is never "the best"
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not t.user_attrs.get("diverged")]
    if not done:
        return None, None
    best = max(done, key=lambda t: (t.value, -t.number))
    assert best.value is not None  # a complete trial has its value
    return best.number, float(best.value)
