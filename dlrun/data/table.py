"""The typed values that flow from data loading into training."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from dlrun.data.image_store import ImageRows, take_rows

PARTS = ("train", "val", "test")


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
        sensitive: the sensitive attribute per row, when the config names one; it is not
            among the features unless ``dataset.sensitive_as_feature`` put it there too.
        image_shape: (height, width, channels) of flat images.
        index: each row's position in the table as loaded (kept through subsampling).
            Defaults to ``0..n-1``.
        test_rows: positions of the rows that form the test split, for data that comes
            split (a test folder, a test file, a balanced test set); None: the test split
            is drawn at random (stratified).
        notes: what the loader did to the data, JSON-ready, for the run folder
            (``dlrun.data.notes.summary_lines`` words it). Defaults to empty.
    """

    name: str
    x: pd.DataFrame | np.ndarray
    y: np.ndarray
    task: str
    class_names: list[str] = field(default_factory=list)
    scaled: bool = False
    sensitive: np.ndarray | None = None
    image_shape: tuple[int, int, int] | None = None
    index: np.ndarray | None = None
    test_rows: np.ndarray | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = np.arange(len(self.y))

    @property
    def n_rows(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> Table:
        """The table restricted to ``rows`` (positions), metadata included."""
        x = self.x.iloc[rows].reset_index(drop=True) if isinstance(self.x, pd.DataFrame) else take_rows(self.x, rows)
        sensitive = self.sensitive[rows] if self.sensitive is not None else None
        test_rows = None if self.test_rows is None else np.flatnonzero(np.isin(rows, self.test_rows))
        return replace(self, x=x, y=self.y[rows], sensitive=sensitive, index=self.index[rows],
                       test_rows=test_rows)


@dataclass
class Part:
    """One split (train, validation or test): model-ready rows and their metadata.

    Attributes:
        x: float32 features: an array, or rows of a streamed image folder read on demand
            (:class:`dlrun.data.image_store.ImageRows`).
        y: class codes (classification) or standardized targets (regression).
        index: each row's position in the loaded table; -1 for a synthetic row (one a
            resampler made). Defaults to ``0..n-1``.
        weight: each row's sample weight in the loss. Defaults to ones.
        group: the sensitive attribute of each row, when the dataset names one.
    """

    x: np.ndarray | ImageRows
    y: np.ndarray
    index: np.ndarray | None = None
    weight: np.ndarray | None = None
    group: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.y)
        if self.index is None:
            self.index = np.arange(n)
        if self.weight is None:
            self.weight = np.ones(n)
        sizes = {"x": len(self.x), "index": len(self.index), "weight": len(self.weight)}
        if self.group is not None:
            sizes["group"] = len(self.group)
        wrong = {k: v for k, v in sizes.items() if v != n}
        if wrong:
            raise ValueError(f"a split's per-row arrays must all have {n} rows (one per target); got {wrong}")

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> Part:
        """The rows at ``rows`` (positions; repeats allowed), metadata carried along."""
        group = self.group[rows] if self.group is not None else None
        return replace(self, x=take_rows(self.x, rows), y=self.y[rows], index=self.index[rows],
                       weight=self.weight[rows], group=group)


@dataclass
class Splits:
    """Train, validation and test parts, preprocessing fitted on the training rows only.

    ``y_mean``/``y_std`` undo the standardization of regression targets when errors are
    reported in the target's own units.

    Attributes:
        input_columns: the source columns the model sees (before encoding), when the data
            is a table; ``feature_names`` are the encoded inputs.
        notes: the table's notes plus what the preprocessing did (cells imputed per split,
            encoded width), JSON-ready. Defaults to empty.
        preprocess: the scikit-learn transformer fitted on the training rows (imputation,
            scaling, encoding), or None when the loader scaled the data; kept for scoring
            new rows (``dlrun-predict``).
    """

    train: Part
    val: Part
    test: Part
    task: str
    class_names: list[str]
    feature_names: list[str]
    input_columns: list[str] | None = None
    y_mean: float = 0.0
    y_std: float = 1.0
    image_shape: tuple[int, int, int] | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    preprocess: Any = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def parts(self) -> dict[str, Part]:
        """``{"train": ..., "val": ..., "test": ...}``."""
        return {name: getattr(self, name) for name in PARTS}

    def sizes(self) -> dict[str, int]:
        return {name: len(part) for name, part in self.parts().items()}
