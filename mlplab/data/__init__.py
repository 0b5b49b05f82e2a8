"""Datasets, preprocessing and augmentation (see docs/data.md).

``load_dataset(name, ...)`` returns a :class:`Dataset` of raw (N, H, W, C) ``uint8`` splits;
:mod:`mlplab.data.transforms` turns them into (N, D) float32 features fitted on the training split;
:class:`Augmenter` perturbs minibatches during training.
"""

from mlplab.data.augment import Augmenter
from mlplab.data.base import Dataset, DatasetError, DatasetNotFoundError, data_root
from mlplab.data.datasets import DATASET_NAMES, load_dataset, parse_image_size
from mlplab.data.transforms import PREPROCESSING, Pipeline, make_preprocessing

__all__ = [
    "Augmenter",
    "DATASET_NAMES",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "PREPROCESSING",
    "Pipeline",
    "data_root",
    "load_dataset",
    "make_preprocessing",
    "parse_image_size",
]
