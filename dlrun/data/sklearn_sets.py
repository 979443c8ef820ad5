"""The small real datasets that ship inside scikit-learn (no download)."""

from __future__ import annotations

import numpy as np
from sklearn import datasets

from dlrun.config import DatasetConfig
from dlrun.data.table import Table


def load_breast_cancer(cfg: DatasetConfig) -> Table:
    bunch = datasets.load_breast_cancer()
    return Table(
        name="breast_cancer",
        x=bunch.data.astype(np.float64),
        y=bunch.target.astype(np.int64),
        task="binary",
        class_names=[str(n) for n in bunch.target_names],
    )


def load_digits(cfg: DatasetConfig) -> Table:
    bunch = datasets.load_digits()
    return Table(
        name="digits",
        x=bunch.data.astype(np.float64),
        y=bunch.target.astype(np.int64),
        task="multiclass",
        class_names=[str(n) for n in bunch.target_names],
        image_shape=(8, 8, 1),
    )


def load_diabetes(cfg: DatasetConfig) -> Table:
    bunch = datasets.load_diabetes()
    return Table(
        name="diabetes",
        x=bunch.data.astype(np.float64),
        y=bunch.target.astype(np.float64),
        task="regression",
    )
