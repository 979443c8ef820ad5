"""Data: one module per data family, each exposing ``load(cfg) -> Table``.

:func:`load_table` picks the loader by ``dataset.name``; :mod:`dlrun.data.split` turns a
table into train / validation / test arrays with preprocessing fitted on the training
split only.
"""

from __future__ import annotations

from collections.abc import Callable

from dlrun.config import DatasetConfig
from dlrun.data.table import Splits, Table
from dlrun.errors import ConfigError


def _registry() -> dict[str, Callable[[DatasetConfig], Table]]:
    from dlrun.data import csv_table, image_folder, keras_sets, mnist, sklearn_sets

    return {
        "breast_cancer": sklearn_sets.load_breast_cancer,
        "digits": sklearn_sets.load_digits,
        "diabetes": sklearn_sets.load_diabetes,
        "mnist_5k": mnist.load_mnist_5k,
        "mnist_imbalanced": mnist.load_mnist_imbalanced,
        "mnist": keras_sets.load_mnist,
        "fashion_mnist": keras_sets.load_fashion_mnist,
        "csv": csv_table.load,
        "image_folder": image_folder.load,
    }


def load_table(cfg: DatasetConfig) -> Table:
    """Load the table that ``cfg.name`` names.

    Raises:
        ConfigError: when no loader is registered under that name.
        DataError: when the data cannot be read or used.
    """
    loaders = _registry()
    if cfg.name not in loaders:
        raise ConfigError(
            f"dataset.name={cfg.name!r} has no loader; make sure it is registered in "
            f"dlrun.data (known: {', '.join(sorted(loaders))})"
        )
    table = loaders[cfg.name](cfg)
    if cfg.sensitive is not None and table.sensitive is None:
        raise ConfigError(
            f"dataset.sensitive={cfg.sensitive!r}: dataset {cfg.name} has no sensitive attribute; "
            "drop the option or use a dataset that has one (dataset=csv with a column of that name)"
        )
    return table


__all__ = ["Splits", "Table", "load_table"]
