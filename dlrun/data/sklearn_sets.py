"""The small real datasets that ship inside scikit-learn (no download)."""

from __future__ import annotations

import numpy as np
from sklearn import datasets
from sklearn.utils import Bunch

from dlrun.config import DatasetConfig
from dlrun.data.table import Table


def _table(name: str, bunch: Bunch, task: str, *, image_shape: tuple[int, int, int] | None = None) -> Table:
    classes = task != "regression"
    return Table(
        name=name,
        x=bunch.data.astype(np.float64),
        y=bunch.target.astype(np.int64 if classes else np.float64),
        task=task,
        class_names=[str(n) for n in bunch.target_names] if classes else [],
        image_shape=image_shape,
    )


def load_breast_cancer(cfg: DatasetConfig) -> Table:
    return _table("breast_cancer", datasets.load_breast_cancer(), "binary")


def load_digits(cfg: DatasetConfig) -> Table:
    return _table("digits", datasets.load_digits(), "multiclass", image_shape=(8, 8, 1))


def load_diabetes(cfg: DatasetConfig) -> Table:
    return _table("diabetes", datasets.load_diabetes(), "regression")
