"""mlplab: fully-connected networks with hand-derived backpropagation in NumPy."""

from mlplab.models import MLP, TwoLayerNet

__version__ = "0.1.0"
__all__ = ["MLP", "TwoLayerNet", "__version__"]
