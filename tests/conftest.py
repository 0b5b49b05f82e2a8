import os

import numpy as np
import pytest

# keep BLAS single-threaded and plotting headless so tests are stable on shared 2-core machines
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng() -> np.random.RandomState:
    return np.random.RandomState(0)
