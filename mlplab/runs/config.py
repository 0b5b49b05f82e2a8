"""The configuration of a run: :class:`RunConfig`, every option of a run as one flat, JSON-able
dataclass whose fields match ``mlplab train``'s flags, and :func:`build_config`, which layers the
defaults, a preset and the given options into a validated one. Also the option vocabularies
(``AUGMENTATIONS``, ``CROP_FILLS``), the data-path helpers that make a config name its data by
absolute path (or a moved copy of it: :func:`relocated`), :func:`config_summary`, and
:func:`check_same_settings`, which compares a resumed run's settings with its checkpoint's record
of them (for NumPy and PyTorch runs alike). It is apart
from the rest of :mod:`mlplab.runs` because it is plain data: it reads and writes no files,
builds nothing and trains nothing; the modules that build, train and use runs all depend on
it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from mlplab._text import agree, counted
from mlplab._validation import (
    check_choice,
    check_fields,
    check_flag,
    check_hidden_sizes,
    check_positive,
    check_seed,
    is_int,
    is_number,
    setting,
)
from mlplab.init import INITS
from mlplab.models import ACTIVATIONS
from mlplab.trainer import SettingsError, TrainConfig

AUGMENTATIONS = ("flip", "crop", "elastic")

#: the key of a run's ``config.json`` (NumPy's and PyTorch's) that says whether the run was
#: started without figures: true for ``--no-plots`` (``plots=False``). How the run writes its
#: folder, not how it trains (not a :class:`RunConfig` field, nor in a checkpoint's record of
#: the settings), but what its advised resume repeats: without it, the resume drew the figures
#: the user had turned off. Not named ``plots``: ``train_run(**config, plots=False)`` would get
#: two. A config.json without it (before 4 Dec 2026) is advised without ``--no-plots``
NO_PLOTS_KEY = "no_plots"
CROP_FILLS = ("zero", "black")


def layer_sizes(hidden: object) -> list[int]:
    """``hidden`` as a list of ints: a list or tuple of integers (integral floats and digit
    strings, as JSON and YAML give them, included), an array, one int (one layer) or a text
    ``"500,250"`` read as ``--hidden`` reads it (``"none"``: no hidden layer; an empty text or
    item, an unset variable's or a typo's, is refused: ``""`` was softmax regression and
    ``"100,,50"`` [100, 50]); anything else is refused with a message (a bare int was a
    TypeError, ``"none"`` a bare int() error)."""
    example = "e.g. [500, 250], or 'none' ([]) for no hidden layer"
    if isinstance(hidden, np.ndarray):
        hidden = hidden.tolist()
    if isinstance(hidden, str):
        items = [h.strip() for h in hidden.split(",")]
        if hidden.strip().lower() == "none":
            return []
        if not all(h.isdigit() for h in items):
            raise ValueError(f"hidden must be a list of layer sizes (integers), {example}; "
                             f"got {hidden!r}.")
        hidden = items
    elif isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = [hidden]
    if not isinstance(hidden, list | tuple) or not all(
            is_int(h) or (isinstance(h, float) and h.is_integer())
            or (isinstance(h, str) and h.strip().isdigit()) for h in hidden):
        raise ValueError(f"hidden must be a list of layer sizes (integers), e.g. [500, 250]; "
                         f"got {hidden!r}.")
    return [int(h) for h in hidden]


@dataclass
class RunConfig:
    """Every option of a run, flat and JSON-able. Field names match ``mlplab train`` flags.

    Data: ``dataset`` (a :func:`mlplab.data.load_dataset` name), ``data_dir``, ``download``,
    ``val_size``, ``test_size``, ``image_size``, ``data_seed`` (seed of the split, kept apart from
    ``seed`` so that runs with different seeds see the same split), ``preprocessing`` (a
    :data:`mlplab.data.PREPROCESSING` name), ``augment`` (any of ``flip``, ``crop``,
    ``elastic``), ``crop_padding`` (pixels a ``crop`` may shift the image by; None = an eighth of
    its shorter side), ``elastic_pixels`` (the largest displacement of an ``elastic`` distortion
    along each axis),
    ``crop_fill`` (what a crop or distortion uncovers: ``"zero"``, 0 in the preprocessed space,
    i.e. the mean after standardisation or mean subtraction, or ``"black"``, the preprocessed
    all-black image).
    Model: ``hidden``, ``activation``, ``init``, ``std``, ``dropout``, ``batchnorm``, ``dtype``.
    Training: the fields of :class:`mlplab.trainer.TrainConfig`. ``seed`` seeds the weights, the
    minibatches, dropout and augmentation. ``eval_test`` also measures the test split.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    val_size: int | float | None = None
    test_size: int | float | None = None
    image_size: str | int | None = None
    data_seed: int = 0
    preprocessing: str = "standardize"
    augment: list[str] = field(default_factory=list)
    crop_padding: int | None = None
    crop_fill: str = "zero"
    elastic_pixels: float = 2.0
    hidden: list[int] = field(default_factory=lambda: [100])
    activation: str = "relu"
    init: str = "he"
    std: float = 1e-4
    dropout: float = 0.0
    batchnorm: bool = False
    dtype: str = "float32"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    schedule: str = "exp"
    lr_decay: float = 0.95
    step_epochs: int = 10
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    reg: float = 1e-4
    label_smoothing: float = 0.0
    batch_size: int = 128
    epochs: int | None = 20
    iters: int | None = None
    sampling: str = "shuffle"
    train_acc: str = "subset"
    patience: int | None = None
    restore_best: bool = True
    seed: int = 0
    eval_test: bool = False
    preset: str | None = None

    def __post_init__(self) -> None:
        self.hidden = layer_sizes(self.hidden)
        if isinstance(self.augment, str):
            self.augment = [a.strip() for a in self.augment.split(",") if a.strip()]
        self.augment = list(self.augment)
        if self.dtype is not None and not isinstance(self.dtype, str):  # (np.dtype(None): f8)
            # np.float64 or np.dtype("float64"), as MLP takes them, by name: a dtype object
            # passed the check (it equals "float64") and failed at config.json's write
            with contextlib.suppress(TypeError, ValueError):
                self.dtype = np.dtype(self.dtype).name

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option (the model is checked when built)."""
        from mlplab.data.datasets import check_dataset_name

        # its type only (train_run(dataset=5) failed on the name's .lower() in an
        # AttributeError): a run on a lent dataset records that dataset's own name
        if not isinstance(self.dataset, str) or not self.dataset:
            check_dataset_name(self.dataset)
        bad = [a for a in self.augment if a not in AUGMENTATIONS]
        if bad:
            raise ValueError(f"unknown augmentation {bad[0]!r}; choose from "
                             f"{', '.join(AUGMENTATIONS)} (e.g. flip,crop).")
        if self.crop_padding is not None and (not is_int(self.crop_padding)
                                              or self.crop_padding < 1):
            raise ValueError(f"crop_padding must be a positive integer (pixels) or None; got "
                             f"{self.crop_padding!r}.")
        if self.crop_fill not in CROP_FILLS:
            raise ValueError(f"crop_fill must be one of {', '.join(CROP_FILLS)}; got "
                             f"{self.crop_fill!r}.")
        if self.batchnorm and is_int(self.batch_size) and self.batch_size < 2:
            raise SettingsError(f"batch_size must be at least 2 with batch norm, which "
                                f"normalises each batch by its own statistics; got "
                                f"{self.batch_size}.")
        if not (is_number(self.elastic_pixels) and 0 < self.elastic_pixels <= 8):  # True is no size
            raise ValueError(f"elastic_pixels must be a number of pixels in (0, 8]; got "
                             f"{self.elastic_pixels!r}.")
        # the check (and words) of MLP's hidden_sizes, naming this setting
        check_hidden_sizes(self.hidden, setting("--hidden", "hidden"))
        if not (is_number(self.dropout) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}.")
        for name in ("batchnorm", "eval_test", "download"):
            check_flag(getattr(self, name), name)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype!r}.")
        # the model is built only after the data is loaded: check its options now
        check_choice(self.activation, ACTIVATIONS, "activation")
        check_choice(self.init, INITS, "init")
        check_positive(self.std, "std")
        check_seed(self.data_seed, "data_seed", split=True)
        from mlplab.data import PREPROCESSING

        check_choice(self.preprocessing, PREPROCESSING, "preprocessing")
        if self.patience is not None and self.val_size == 0:
            # in the words of the caller: the flags on the command line, the fields in Python
            raise ValueError(f"early stopping ({setting('--patience', 'patience')}) needs a "
                             f"validation split, and {setting('--val-size', 'val_size')} is 0: "
                             f"give {setting('--val-size N', 'val_size > 0')} or turn early "
                             f"stopping off ({setting('--patience 0', 'patience=None')}).")
        self.trainer_config().validate()

    def trainer_config(self, **runtime: Any) -> TrainConfig:
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in asdict(self).items() if k in names}, **runtime)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        d = {k: v for k, v in d.items() if k != NO_PLOTS_KEY}  # (a run's config.json has it)
        check_fields(cls, d, "run options")
        return cls(**d)


def iterations_per_epoch(batch_size: int, sampling: str, n: int) -> int:
    """The iterations of an epoch of ``n`` training rows: the exercise's ``max(N // B, 1)``,
    with the batch capped at ``n`` when each epoch shuffles the rows."""
    batch = min(batch_size, n) if sampling == "shuffle" else batch_size
    return max(n // batch, 1)


def build_config(preset: str | None = None, base: Mapping[str, Any] | None = None,
                 **options: Any) -> RunConfig:
    """A validated :class:`RunConfig`: the defaults, then preset ``preset``, then ``base`` (the
    fields of another configuration, e.g. a run's ``config.json``), then ``options``.

    Giving ``epochs`` without ``iters`` (or the reverse) in ``base`` or ``options`` replaces the
    run length of what comes before it (the preset's, ``base``'s).
    """
    from mlplab.presets import get_preset

    values: dict[str, Any] = {}
    if preset is not None:
        values.update(get_preset(preset))
        values["preset"] = preset
    if base is not None:
        _override(values, {k: v for k, v in base.items() if preset is None or k != "preset"})
    _override(values, options)
    config = RunConfig.from_dict(values)
    config.validate()
    return config


#: the augmentation options, with the augmentations that use them
AUGMENT_OPTION_USERS = {"crop_padding": ("crop",), "elastic_pixels": ("elastic",),
                        "crop_fill": ("crop", "elastic")}
#: options that only some values of another setting use: (option, setting, those values)
USED_BY = (("std", "init", ("normal",)), ("momentum", "optimizer", ("momentum", "nesterov")),
           ("lr_decay", "schedule", ("exp", "step")), ("step_epochs", "schedule", ("step",)),
           ("min_lr", "schedule", ("cosine",)))
#: the model options that a network without a hidden layer has nothing to apply to
HIDDEN_LAYER_OPTIONS = ("activation", "dropout", "batchnorm")
#: the settings :func:`check_given_options` refuses when the run would ignore them
CHECKED_OPTIONS = (*AUGMENT_OPTION_USERS, *(option for option, _, _ in USED_BY),
                   *HIDDEN_LAYER_OPTIONS)


def check_given_options(given: Mapping[str, Any], cfg: RunConfig) -> None:
    """Refuse a setting given explicitly (``given``: name -> value, the keywords of
    :func:`mlplab.runs.train_run` or the flags typed) that the resolved ``cfg`` ignores: a user
    who asked for ``std=0.01`` with He initialisation, or a crop's padding without crops,
    believes it took effect. In the caller's spelling (flags on the command line)."""
    check_augment_given(given, cfg.augment)
    for option, name, values in USED_BY:
        value = getattr(cfg, name)
        if option in given and not _uses(option, name, value, values):
            users = " or ".join(setting(v, f"{name}={v!r}") for v in values)
            raise ValueError(f"{setting(_flag(option), option)} has no effect with "
                             f"{setting(f'{_flag(name)} {value}', f'{name}={value!r}')}; it "
                             f"applies to {users}.")
    if not cfg.hidden:
        refuse_without_hidden_layer(k for k in HIDDEN_LAYER_OPTIONS if given.get(k))


def refuse_without_hidden_layer(names: Iterable[str]) -> None:
    """Refuse the settings ``names`` (of :data:`HIDDEN_LAYER_OPTIONS`) given for a network
    without a hidden layer: softmax regression has no hidden layer for them to act on, and a
    run or check that ignored them would still name them as used."""
    inert = [setting(_flag(k), k) for k in names]
    if inert:
        raise ValueError(f"{', '.join(inert)} {agree(len(inert), 'has', 'have')} no effect with "
                         f"{setting('--hidden none', 'hidden=[]')}, which has no hidden layer to "
                         "apply to.")


def check_augment_given(given: Mapping[str, Any], augment: Sequence[str]) -> None:
    """Refuse an augmentation option given explicitly (``given``: name -> value) that the list
    ``augment`` has no augmentation to use (:data:`AUGMENT_OPTION_USERS`)."""
    for option, users in AUGMENT_OPTION_USERS.items():
        if option in given and not set(users) & set(augment):
            example = setting(f"--augment flip,{users[0]}", f"augment={['flip', users[0]]!r}")
            raise ValueError(f"{setting(_flag(option), option)} has no effect without "
                             f"{' or '.join(users)} in {setting('--augment', 'augment')} "
                             f"(e.g. {example}).")


def without_inert(cfg: RunConfig, given: Mapping[str, Any]) -> RunConfig:
    """``cfg`` with the settings it took from a preset or another run's configuration that the
    settings ``given`` made inert put back to their defaults: without a hidden layer the
    activation, dropout and batch norm would do nothing, yet be named in the model ("MLP 64-10
    relu batchnorm dropout 0.2"), and without ``crop`` in ``augment`` the crop's padding would
    be recorded as if used. The same settings given explicitly are refused instead
    (:func:`check_given_options`)."""
    defaults = RunConfig()
    inert = [k for k in HIDDEN_LAYER_OPTIONS if not cfg.hidden]
    inert += [k for k, users in AUGMENT_OPTION_USERS.items() if not set(users) & set(cfg.augment)]
    # (std of a normal init kept beside --init he: train_run(**config) then refused std)
    inert += [option for option, name, values in USED_BY
              if not _uses(option, name, getattr(cfg, name), values)]
    reset = {k: getattr(defaults, k) for k in inert if k not in given}
    return replace(cfg, **reset) if reset else cfg


def _uses(option: str, name: str, value: Any, values: Sequence[str]) -> bool:
    """Whether setting ``name`` at ``value`` uses ``option`` (:data:`USED_BY`): one of
    ``values``, or a registered optimiser whose ``__init__`` takes it (the trainer passes it
    the momentum, docs/architecture.md)."""
    if value in values:
        return True
    if name != "optimizer":
        return False
    from mlplab.optim import OPTIMIZERS, _init_parameters

    cls = OPTIMIZERS.get(value)
    return cls is not None and option in _init_parameters(cls)


def _flag(option: str) -> str:
    """The command-line flag of a setting: ``label_smoothing`` -> ``--label-smoothing``."""
    return "--" + option.replace("_", "-")


def _override(values: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """``values.update(layer)``, where a run length given without the other (``epochs`` without
    ``iters``, or the reverse) replaces the one ``values`` had: a preset's 1,000 iterations
    would otherwise outlast the epochs asked for."""
    if layer.get("epochs") is not None and "iters" not in layer:
        values["iters"] = None
    if layer.get("iters") is not None and "epochs" not in layer:
        values["epochs"] = None
    values.update(layer)


def check_same_settings(recorded: Any, now: Mapping[str, Any], ckpt: str | os.PathLike,
                        config_path: str | os.PathLike, new_run: str,
                        noun: str = "run") -> None:
    """Refuse to resume from checkpoint ``ckpt``, whose record of the settings it was trained
    with is ``recorded``, under the settings ``now`` of ``config_path`` (both as JSON holds
    them), if any of those it records differ: in one line naming each and both values, and what
    to do, ``new_run`` saying how to start a new run with the new ones. Resumed, the run would go
    on under other settings than its first epochs (or config.json would name settings the run
    never had) and end as no run configured either way does. ``recorded`` None (a checkpoint
    written before runs recorded their settings) is not compared. ``noun``: what resumes (a
    depth study's finished networks and checkpoint are compared the same way)."""
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise ValueError(f"{ckpt}: its record of the run's settings is a "
                         f"{type(recorded).__name__}, not a dict; the checkpoint is damaged - "
                         f"start the run again with a new {setting('--out', 'out')}.")
    changed = [k for k in now if k in recorded and recorded[k] != now[k]]
    if not changed:
        return
    then = ", ".join(f"{k} {json.dumps(recorded[k])}" for k in changed)
    edited = ", ".join(f"{k} {json.dumps(now[k])}" for k in changed)
    value = "value" if len(changed) == 1 else "values"
    raise ValueError(f"{ckpt} was trained with {then}, but {config_path} now says {edited}: "
                     f"resumed, the {noun} would go on under other settings than it was "
                     f"trained with. Put back the original {value} in "
                     f"{os.path.basename(config_path)} to resume it, or start a new {noun} with "
                     f"the new {value} ({new_run}).")


def absolute_data_paths(dataset: str, data_dir: str | None) -> tuple[str, str | None]:
    """``dataset`` (a ``folder:PATH``) and ``data_dir`` as absolute paths, for a run's config:
    ``evaluate`` and ``--resume`` reload the data from it, maybe from another working folder."""
    from mlplab.data.base import user_path

    if dataset.lower().startswith("folder:") and dataset[len("folder:"):].strip():
        dataset = f"folder:{user_path(dataset[len('folder:'):]).resolve()}"
    if data_dir:
        data_dir = str(user_path(data_dir).resolve())
    return dataset, data_dir


def loaded_with(ds: Any) -> dict[str, Any]:
    """The config fields of a run given the loaded :class:`mlplab.data.Dataset` ``ds``: the
    options it was loaded with (``data_dir``, ``image_size``, and its split seed as
    ``data_seed``; a config's others would make evaluate load other splits), none for a dataset
    built by hand (``Dataset.load_options`` is empty)."""
    options = ds.load_options
    out = {k: options[k] for k in ("data_dir", "image_size") if k in options}
    if options.get("seed") is not None:
        out["data_seed"] = options["seed"]
    return out


def absolute_config_paths(cfg: RunConfig) -> RunConfig:
    dataset, data_dir = absolute_data_paths(cfg.dataset, cfg.data_dir)
    return replace(cfg, dataset=dataset, data_dir=data_dir)


def relocated(cfg: RunConfig, data_dir: str | os.PathLike) -> RunConfig:
    """``cfg`` with its data found in ``data_dir`` instead: for a ``folder:PATH`` dataset the
    folder itself, else the folder of the dataset's files (a run whose data was moved)."""
    if cfg.dataset.lower().startswith("folder:"):  # the folder is the dataset's name
        return absolute_config_paths(replace(cfg, dataset=f"folder:{data_dir}"))
    return absolute_config_paths(replace(cfg, data_dir=str(data_dir)))


def config_summary(cfg: RunConfig) -> str:
    """One line describing a run's configuration, for logs."""
    if cfg.iters is not None:
        length = counted(cfg.iters, "iteration")
    elif cfg.epochs is not None:
        length = counted(cfg.epochs, "epoch")
    else:  # refused when training starts (the summary said "None epochs")
        length = "no length"
    # the sizes as --hidden takes them (it printed Python's list: "hidden [512, 256]")
    hidden = ",".join(map(str, cfg.hidden)) or "none"
    return (f"{cfg.dataset}: hidden {hidden}, {cfg.optimizer} lr {cfg.lr:g} ({cfg.schedule}"
            f"), reg {cfg.reg:g}, batch {cfg.batch_size}, {length}, seed {cfg.seed}"
            + (f", preset {cfg.preset}" if cfg.preset else ""))
