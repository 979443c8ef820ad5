"""The typed values that flow from data loading into training."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Table:
    """A whole dataset as loaded, before any split or scaling.

    Attributes:
        name: the dataset's name, for reports.
        x: features; a DataFrame when columns have mixed kinds, else a 2-D float array.
        y: targets; integer class codes ``0..k-1`` for classification, floats for regression.
        task: ``binary``, ``multiclass`` or ``regression``.
        class_names: the label of each class code (classification only).
        scaled: True when the loader already put features on a fixed scale (pixels / 255).
        sensitive: the sensitive attribute per row, when the config names one.
    """

    name: str
    x: pd.DataFrame | np.ndarray
    y: np.ndarray
    task: str
    class_names: list[str] = field(default_factory=list)
    scaled: bool = False
    sensitive: np.ndarray | None = None
    image_shape: tuple[int, int, int] | None = None  # (height, width, channels) of flat images

    @property
    def n_rows(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    """Model-ready arrays: float32 features, preprocessing fitted on train only.

    ``y_*`` hold class codes for classification and (standardized) targets for regression;
    ``y_mean``/``y_std`` undo the standardization when reporting regression errors.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str
    class_names: list[str]
    feature_names: list[str]
    y_mean: float = 0.0
    y_std: float = 1.0
    sensitive_test: np.ndarray | None = None
    image_shape: tuple[int, int, int] | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}
