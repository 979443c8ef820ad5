"""Data: one module per data family, each exposing ``load(cfg) -> Table``.

:func:`load_table` picks the loader that :data:`DATASETS` registers under ``dataset.name``;
:mod:`dlrun.data.split` turns a table into train / validation / test arrays with
preprocessing fitted on the training split only.
"""

from __future__ import annotations

from collections.abc import Callable

from dlrun.config import DatasetConfig
from dlrun.data.table import Splits, Table
from dlrun.errors import ConfigError
from dlrun.registry import Registry

Loader = Callable[[DatasetConfig], Table]

# The loaders are imported when a table is loaded: validation reads the names, and some
# loaders pull in TensorFlow (keras_sets) or readers a run may never need.
DATASETS: Registry[Loader] = Registry("dataset.name", what="loader", where="dlrun.data")
DATASETS.register("breast_cancer", "dlrun.data.sklearn_sets:load_breast_cancer")
DATASETS.register("digits", "dlrun.data.sklearn_sets:load_digits")
DATASETS.register("diabetes", "dlrun.data.sklearn_sets:load_diabetes")
DATASETS.register("mnist_5k", "dlrun.data.mnist:load_mnist_5k")
DATASETS.register("mnist_imbalanced", "dlrun.data.mnist:load_mnist_imbalanced")
DATASETS.register("mnist_digits", "dlrun.data.digit_subsets:load")
DATASETS.register("mnist", "dlrun.data.keras_sets:load_mnist")
DATASETS.register("fashion_mnist", "dlrun.data.keras_sets:load_fashion_mnist")
DATASETS.register("credit_synthetic", "dlrun.data.credit:load")
DATASETS.register("adult", "dlrun.data.adult:load")
DATASETS.register("compas", "dlrun.data.compas:load")
DATASETS.register("csv", "dlrun.data.csv_table:load")
DATASETS.register("image_folder", "dlrun.data.image_folder:load")


def load_table(cfg: DatasetConfig) -> Table:
    """Load the table that ``cfg.name`` names.

    Raises:
        ConfigError: when no loader is registered under that name.
        DataError: when the data cannot be read or used.
    """
    table = DATASETS.get(cfg.name)(cfg)
    if cfg.sensitive is not None and table.sensitive is None:
        raise ConfigError(
            f"dataset.sensitive={cfg.sensitive!r}: dataset {cfg.name} has no sensitive attribute; "
            "drop the option or use a dataset that has one (dataset=csv with a column of that name)"
        )
    return table


__all__ = ["DATASETS", "Splits", "Table", "load_table"]
