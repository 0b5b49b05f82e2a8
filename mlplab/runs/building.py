"""The pieces a run is made of, built from its :class:`~mlplab.runs.config.RunConfig`: the raw
dataset it names (:func:`load_run_dataset`), the minibatch augmentation (:func:`make_augmenter`),
a preview of the images as the network sees them (:func:`make_network_view`), and the one-line
descriptions of a network (:func:`describe_network`, :func:`describe_model`). It is apart from
:mod:`mlplab.runs.training` because these pieces are also wanted without training: evaluating a
finished run reloads its dataset, and ``mlplab data show`` previews its augmentation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from mlplab._text import counted
from mlplab._validation import setting
from mlplab.models import MLP
from mlplab.runs.config import RunConfig, relocated

if TYPE_CHECKING:
    from mlplab.data import Augmenter, Dataset, Pipeline


def load_run_dataset(cfg: RunConfig, image_shape: Sequence[int] | None = None, *,
                     moved: str | None = None, progress: bool = True) -> Dataset:
    """Load the raw dataset a run config names (with its split settings). ``image_shape``: the
    run's (its model file's), whose channel count a folder is decoded to, so that a run keeps
    working where a later mlplab would decide the folder's colour otherwise (it reads grey GIFs
    and grey PNGs with alpha as one channel; mlplab before that read them as three).

    ``moved``: for a run that exists already (resumed, evaluated), what to do if its data is not
    found, which then replaces the loader's advice to add --download: such a command loads the
    data as configured and takes no --download, and the likely cause is data that moved.
    ``progress``: the bars of a download and of a folder's decoding (the run's own setting)."""
    from mlplab.data import load_dataset
    from mlplab.data.base import DatasetError, DatasetNotFoundError, SplitSizeError, download_hint
    from mlplab.data.datasets import canonical_dataset_name, check_dataset_name

    if moved is not None:
        try:
            check_dataset_name(cfg.dataset)
        except DatasetError:
            # a Dataset of the caller's own (train_run(data=Dataset("mine", ...))): no name
            # load_dataset knows, and no list of the names it knows would help
            raise DatasetError(
                f"this run was trained on a dataset given to it in Python, {cfg.dataset!r}, "
                "which load_dataset cannot load again: pass the same Dataset as data, e.g. "
                "evaluate_run(RUN, data=DATASET) or resume_run(RUN, data=DATASET).") from None
    folder = cfg.dataset.lower().startswith("folder:")
    if moved is not None and cfg.data_seed is None and (
            folder or canonical_dataset_name(cfg.dataset) == "digits"):
        # a run of an mlplab before 30 Nov 2026 (fc69ebb) on a random split: load_dataset would
        # draw another, whose validation split holds training images (evaluate reported a
        # different accuracy at each call; --resume trained on the other split)
        raise ValueError(f"this run's split of {cfg.dataset} was drawn at random, and its "
                         "config.json does not record the seed (data_seed null: written by an "
                         "mlplab from before 30 November 2026), so its validation and test "
                         "splits cannot be drawn again; any other split would hold images it "
                         "was trained on. Its model file still predicts (mlplab predict, "
                         "load_model); to measure a model, train a new run.")
    channels = int(image_shape[2]) if folder and image_shape is not None and \
        len(image_shape) == 3 and image_shape[2] in (1, 3) else None
    try:
        return load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download,
                            val_size=cfg.val_size, test_size=cfg.test_size,
                            image_size=cfg.image_size, seed=cfg.data_seed, channels=channels,
                            progress=progress)
    except DatasetNotFoundError as exc:
        if moved is None:
            raise
        raise DatasetNotFoundError(f"{str(exc).replace(download_hint(), '')} {moved}".rstrip()) \
            from None
    except SplitSizeError as exc:
        if moved is None:
            raise
        # the size is the run's recorded one, which no flag of evaluate (or --resume) sets: the
        # data is what changed, so say so rather than name a flag the command does not have
        raise DatasetError(f"the run's {exc.option}{exc.rest} This is not the data the run was "
                           "trained with: use the data as it was, or train a new run.") from None


def moved_config(cfg: RunConfig, data: object, data_dir: str | os.PathLike | None) -> RunConfig:
    """A finished run's config with its data moved to ``data_dir`` (None: where it was), for
    resuming or evaluating; given beside the loaded ``data`` it is refused as ambiguous."""
    if data_dir is None:
        return cfg
    if data is not None:
        raise ValueError("give the run's data or the folder it moved to (data_dir), not both.")
    return relocated(cfg, data_dir)


def moved_data_hint(command: str, python: str) -> str:
    """The advice for a run whose data is not where ``config.json`` says: on the command line
    ``command`` (e.g. ``mlplab train --resume runs/x``) with ``--data-dir DIR``, from Python the
    call ``python`` that gives the new place ``DIR`` (e.g. ``resume_run('runs/x',
    data_dir=DIR)``)."""
    return (f"If the run's data moved, give its new place: "
            f"{setting(f'{command} --data-dir DIR', python)} (for a folder: dataset, DIR is the "
            "folder of class sub-folders itself).")


def crop_padding(cfg: RunConfig, image_shape: Sequence[int]) -> int:
    """How far ``cfg``'s crops shift images of ``image_shape`` (0 without crops); a ValueError if
    a shift could leave nothing of the image."""
    if "crop" not in cfg.augment:
        return 0
    # by default pad by an eighth of the image's shorter side: 4 pixels on CIFAR's 32, 1 on the
    # 8x8 digits (the height alone gave images 32x3 a padding of 4, refused as too wide)
    side = min(image_shape[:2])
    pad = cfg.crop_padding or max(1, round(side / 8))
    if pad >= side:
        if not cfg.crop_padding:  # the default's: no --crop-padding to blame
            raise ValueError(f"crops cannot shift images {counted(side, 'pixel')} on a side; "
                             f"drop crop from {setting('--augment', 'augment')}.")
        raise ValueError(f"{setting(f'--crop-padding {pad}', f'crop_padding={pad}')} must be "
                         f"smaller than the images' side ({side} pixels).")
    return pad


def make_augmenter(cfg: RunConfig, image_shape: Sequence[int],
                   preprocessing: Pipeline | None = None) -> Augmenter | None:
    """The minibatch augmentation ``cfg.augment`` asks for, or None.

    ``crop_fill="black"`` needs the fitted ``preprocessing`` (a :class:`mlplab.data.Pipeline`):
    the padding is its transform of an all-zero raw image.
    """
    if not cfg.augment:
        return None
    from mlplab.data import Augmenter

    crop = crop_padding(cfg, image_shape)
    elastic = float(cfg.elastic_pixels) if "elastic" in cfg.augment else 0.0
    fill: float | np.ndarray = 0.0
    if (crop or elastic) and cfg.crop_fill == "black":
        if preprocessing is None:
            raise ValueError('crop_fill="black" needs the fitted preprocessing pipeline.')
        black = np.zeros((1, *image_shape), np.uint8)  # one raw image, as the loaders give it
        fill = np.asarray(preprocessing.transform(black), np.float64).reshape(image_shape)
        if np.all(fill == fill[:1, :1]):  # per-channel preprocessing: one value per channel
            fill = fill[0, 0]
    return Augmenter(image_shape, flip="flip" in cfg.augment, crop=crop, fill=fill,
                     elastic=elastic)


def make_network_view(cfg: RunConfig, ds: Dataset,
                      seed: int | None = 0) -> Callable[[np.ndarray], np.ndarray]:
    """A ``transform`` for :func:`mlplab.data.preview.sample_grid`: raw (n, H, W, C) images as a
    run with ``cfg`` feeds them to the network (its preprocessing, fitted on ``ds``'s training
    split, then one draw of its augmentation), each scaled to [0, 1] for display."""
    from mlplab.data import make_preprocessing
    from mlplab.data.preview import scaled_for_display

    cfg.validate()
    pre = make_preprocessing(cfg.preprocessing).fit(ds.X_train)
    augment = make_augmenter(cfg, ds.image_shape, pre)
    rng = np.random.RandomState(seed)

    def view(images: np.ndarray) -> np.ndarray:
        X = pre.transform(images)
        if augment is not None:
            X = augment(X, rng)
        return scaled_for_display(X, ds.image_shape)

    return view


def describe_network(kind: str, sizes: Sequence[int], activation: str, batchnorm: bool,
                     dropout: float) -> str:
    """``"MLP 3072-50-10 relu"`` (``kind`` first) plus batch norm / dropout when used; a net
    without a hidden layer (softmax regression: ``sizes`` of two) has no activation to name."""
    text = f"{kind} {'-'.join(str(s) for s in sizes)}" + (f" {activation}" if len(sizes) > 2
                                                          else "")
    if batchnorm:
        text += " batchnorm"
    if dropout:
        text += f" dropout {dropout:g}"
    return text


def describe_model(model: MLP) -> str:
    """``"MLP 3072-50-10 relu"`` plus batch norm / dropout when used."""
    c = model.config
    return describe_network("MLP", [c["input_size"], *c["hidden_sizes"], c["num_classes"]],
                            c["activation"], c["batchnorm"], c["dropout"])
