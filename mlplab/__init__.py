"""mlplab: fully-connected networks with hand-derived backpropagation in NumPy.

The names most code needs are here, each imported on first use (so that ``import mlplab`` loads
neither NumPy nor scikit-learn until they are needed, and the command line catches a Ctrl-C
while they import): ``MLP``, ``TwoLayerNet``, ``MLPClassifier``, ``Trainer``, ``load_dataset``,
``train_run``, ``load_model`` and ``save_model``. Each also lives in its own module
(``mlplab.estimator``, ``mlplab.trainer``, ...), and the modules too are imported on first access
(``mlplab.data.load_dataset`` after a bare ``import mlplab``).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees of the names _LAZY imports at first access
    from mlplab.data import load_dataset as load_dataset
    from mlplab.estimator import MLPClassifier as MLPClassifier
    from mlplab.io import load_model as load_model
    from mlplab.io import save_model as save_model
    from mlplab.models import MLP as MLP
    from mlplab.models import TwoLayerNet as TwoLayerNet
    from mlplab.runs import train_run as train_run
    from mlplab.trainer import Trainer as Trainer

__version__ = "0.1.0"

#: names imported from their modules on first access (PEP 562)
_LAZY = {"MLP": "mlplab.models", "TwoLayerNet": "mlplab.models",
         "MLPClassifier": "mlplab.estimator", "Trainer": "mlplab.trainer",
         "load_dataset": "mlplab.data", "train_run": "mlplab.runs", "load_model": "mlplab.io",
         "save_model": "mlplab.io"}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # the next access is a plain attribute
        return value
    # a submodule on first access, as the docs write it after a bare `import mlplab`
    # (`mlplab.data.load_dataset(...)`, `mlplab.plots.plot_loss(...)`); importing it sets it
    if name.isidentifier() and not name.startswith("_") and \
            importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'mlplab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
