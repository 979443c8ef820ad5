"""Splits and preprocessing: stratified where the task allows, fitted on train only.

A table's preprocessing is one scikit-learn ``ColumnTransformer`` fitted on the training
rows: numeric columns get the training median where a cell is missing, then scaling;
text columns get the training split's most frequent value, then a one-hot encoding
capped at ``dataset.max_categories`` columns (rare and unseen categories share one
infrequent column); every column with a missing cell in the training split adds one 0/1
indicator column. (``SimpleImputer(add_indicator=True)`` appends the same
``MissingIndicator``; it is a part of its own here so indicators are neither scaled nor
one-hot encoded.)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.model_selection import (
    KFold,
    RepeatedKFold,
    RepeatedStratifiedKFold,
    StratifiedKFold,
    train_test_split,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from dlrun.config import DatasetConfig
from dlrun.data.image_store import is_lazy, take_rows
from dlrun.data.table import PARTS, Part, Splits, Table
from dlrun.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# A class needs this many rows so every split (train, validation, test) can hold one.
_MIN_ROWS_PER_CLASS = 3
# The one-hot cap of tables whose loader records none (see one_hot_settings).
_ONE_HOT_DEFAULTS = {"max_categories": DatasetConfig.max_categories, "min_frequency": DatasetConfig.min_frequency}


def _stratify(y: np.ndarray, task: str) -> np.ndarray | None:
    return y if task != "regression" else None


def check_task(table: Table, task: str) -> None:
    """Refuse ``dataset.task`` that the target cannot serve, before any training.

    Raises:
        DataError: binary with other than two classes; classification of a continuous
            target.
    """
    if task == table.task or task == "regression":
        return
    if table.task == "regression":
        values = np.unique(table.y)
        whole = np.all(np.equal(np.mod(values, 1), 0))
        raise DataError(
            f"dataset.task={task} but the target of {table.name} is continuous ({len(values)} distinct values"
            f"{'' if whole else ', not whole numbers'}); classification needs class labels: use dataset.task=regression"
        )
    k = len(table.class_names)
    if task == "binary" and k != 2:
        raise DataError(f"dataset.task=binary but the target of {table.name} has {k} classes; use dataset.task=multiclass")


def check_class_counts(table: Table) -> None:
    """Refuse classification data that a stratified split cannot serve, and a constant
    regression target."""
    if table.task == "regression":
        y = np.asarray(table.y, dtype=np.float64)
        if len(y) and np.all(y == y[0]):
            raise DataError(f"the target of {table.name} is constant ({y[0]:g} in every row): there is nothing "
                            "to learn, and every score would be perfect or undefined")
        return
    counts = np.bincount(table.y, minlength=len(table.class_names))
    small = [table.class_names[i] for i, c in enumerate(counts) if c < _MIN_ROWS_PER_CLASS]
    if small:
        raise DataError(
            f"class(es) {', '.join(map(repr, small))} have fewer than {_MIN_ROWS_PER_CLASS} rows; "
            "stratified splits need more examples or those classes removed"
        )


def subsample(table: Table, max_rows: int | None, *, seed: int) -> Table:
    """A stratified subsample of at most ``max_rows`` rows (the table itself if smaller)."""
    if max_rows is None or table.n_rows <= max_rows:
        return table
    idx, _ = train_test_split(
        np.arange(table.n_rows),
        train_size=max_rows,
        random_state=seed,
        stratify=_stratify(table.y, table.task),
    )
    return table.take(np.sort(idx))


def holdout_indices(
    y: np.ndarray, *, task: str, test_size: float, val_size: float, seed: int,
    test: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint train / validation / test row indices covering every row.

    Args:
        y: the targets (stratification).
        task: the task (regression is not stratified).
        test_size: the test share, when ``test`` is not given.
        val_size: the validation share of what is left.
        seed: the splitters' ``random_state``.
        test: the test rows, for data that comes split; None draws them.
    """
    idx = np.arange(len(y))
    if test is None:
        try:
            dev, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=_stratify(y, task))
        except ValueError as err:
            raise DataError(f"cannot split {len(y)} rows with dataset.test_size={test_size}: {_why(err)}") from None
    else:
        dev = np.setdiff1d(idx, test)
    try:
        train, val = train_test_split(dev, test_size=val_size, random_state=seed, stratify=_stratify(y[dev], task))
    except ValueError as err:
        raise DataError(f"cannot split the {len(dev)} rows left after the test split with dataset.val_size={val_size}: "
                        f"{_why(err)}") from None
    return np.sort(train), np.sort(val), np.sort(test)


def _why(err: ValueError) -> str:
    """scikit-learn's reason, without its own parameter names (test_size is ours to name)."""
    text = str(err)
    if "resulting train set will be empty" in text:
        return "the training side would be empty; lower it"
    return text


def fold_indices(
    y: np.ndarray, *, task: str, folds: int, repeats: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) positions into ``y`` for k-fold, repeated when ``repeats > 1``.

    A class with fewer rows than folds is allowed (some folds validate without it), said
    in one line instead of scikit-learn's warning.
    """
    stratified = task != "regression"
    if stratified and len(y):
        counts = np.bincount(np.asarray(y, dtype=np.int64))
        fewest = int(counts[counts > 0].min())
        if fewest < folds:
            log.warning("a class has only %d row(s) in the development split, fewer than eval.folds=%d: "
                        "some folds validate without it", fewest, folds)
    if repeats > 1:
        cls = RepeatedStratifiedKFold if stratified else RepeatedKFold
        splitter = cls(n_splits=folds, n_repeats=repeats, random_state=seed)
    else:
        cls = StratifiedKFold if stratified else KFold
        splitter = cls(n_splits=folds, shuffle=True, random_state=seed)
    pairs = splitter.split(np.zeros(len(y)), y if stratified else None)
    while True:
        with warnings.catch_warnings():  # said above, in one line
            warnings.filterwarnings("ignore", message="The least populated class in y", category=UserWarning)
            try:
                pair = next(pairs)
            except StopIteration:
                return
            except ValueError as err:
                raise DataError(f"cannot make {folds} folds: {err}") from None
        yield pair


def is_numeric_column(column: pd.Series) -> bool:
    """Numbers (not booleans): imputed with the median and scaled; the rest is text."""
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def one_hot_settings(cfg: DatasetConfig) -> dict[str, int | None]:
    """``dataset.max_categories`` and ``dataset.min_frequency``, checked, for ``Table.notes``.

    A loader of text columns records them as ``notes["one_hot"]``; :func:`make_splits`
    encodes with them (with the config's defaults where a table has none).

    Raises:
        ConfigError: a cap under 2 or a frequency under 1.
    """
    if cfg.max_categories is not None and cfg.max_categories < 2:
        raise ConfigError(
            f"dataset.max_categories must be at least 2 (one category and the infrequent bucket), "
            f"or null for no cap; got {cfg.max_categories}"
        )
    if cfg.min_frequency < 1:
        raise ConfigError(
            f"dataset.min_frequency must be at least 1 (1 keeps every category); got {cfg.min_frequency}"
        )
    return {"max_categories": cfg.max_categories, "min_frequency": cfg.min_frequency}


def _transformer(
    x: pd.DataFrame | np.ndarray, scaling: str, *, missing: list[str] | None = None,
    one_hot: dict[str, Any] | None = None,
):
    """The unfitted preprocessing of ``x`` (see the module docstring).

    Args:
        x: the features (a frame: the training rows, whose dtypes decide the column kinds).
        scaling: ``standard``, ``minmax`` or ``none``.
        missing: the columns that get a missing-value indicator. Defaults to none.
        one_hot: ``max_categories`` and ``min_frequency`` (see :func:`one_hot_settings`).
            Defaults to the config's defaults.
    """
    scaler = {"standard": StandardScaler, "minmax": MinMaxScaler}.get(scaling)
    if not isinstance(x, pd.DataFrame):
        return scaler() if scaler else None
    numeric = [c for c in x.columns if is_numeric_column(x[c])]
    text = [c for c in x.columns if c not in numeric]
    one_hot = {**_ONE_HOT_DEFAULTS, **(one_hot or {})}
    parts = []
    if numeric:
        steps = [SimpleImputer(strategy="median"), *([scaler()] if scaler else [])]
        parts.append(("num", make_pipeline(*steps), numeric))
    if text:
        encoder = OneHotEncoder(
            handle_unknown="infrequent_if_exist", sparse_output=False, dtype=np.float32, **one_hot
        )
        parts.append(("text", make_pipeline(SimpleImputer(strategy="most_frequent"), encoder), text))
    if missing:
        parts.append(("missing", MissingIndicator(features="all", error_on_new=False), missing))
    return ColumnTransformer(parts, verbose_feature_names_out=False)


def _take(x: pd.DataFrame | np.ndarray, idx: np.ndarray):
    if isinstance(x, pd.DataFrame):
        return x.iloc[idx].copy()
    return take_rows(x, idx)


def as_text(x: pd.DataFrame) -> pd.DataFrame:
    """Text-like columns as Python str (missing cells stay NaN), one type per column."""
    for c in x.columns:
        if not is_numeric_column(x[c]):
            column = x[c]
            x[c] = column.astype(object).where(column.isna(), column.astype(str)).astype(object)
    return x


def make_splits(
    table: Table, train: np.ndarray, val: np.ndarray, test: np.ndarray, *, scaling: str
) -> Splits:
    """Cut the table by row positions and fit imputation / scaling / encoding on the training rows only.

    Each part carries its rows' original index and sensitive attribute; sample weights
    start at one (the prepare stage may change the training part's). The splits' notes
    are the table's plus what the preprocessing did (:func:`_preprocessing_notes`).
    """
    x_parts = [_take(table.x, i) for i in (train, val, test)]
    frame = isinstance(table.x, pd.DataFrame)
    if frame:
        x_parts = [as_text(p) for p in x_parts]
    missing = [c for c in x_parts[0].columns if x_parts[0][c].isna().any()] if frame else []
    transformer = None if table.scaled else _transformer(
        x_parts[0] if frame else table.x, scaling, missing=missing, one_hot=table.notes.get("one_hot")
    )
    notes = dict(table.notes)
    if transformer is not None:
        # Overflowing values (1e300 squared) are refused by name just below, not in warnings.
        with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            xs = [transformer.fit_transform(x_parts[0]), *(transformer.transform(p) for p in x_parts[1:])]
        names = [str(n) for n in transformer.get_feature_names_out()] if hasattr(
            transformer, "get_feature_names_out"
        ) and frame else _default_names(table.x)
        if frame:
            notes.update(_preprocessing_notes(transformer, x_parts, missing=missing, width=len(names)))
    else:
        xs = [p if is_lazy(p) else np.asarray(p, dtype=np.float32) for p in x_parts]
        names = _default_names(table.x)
    _refuse_non_finite(xs, names)
    ys = [table.y[i] for i in (train, val, test)]
    y_mean, y_std = 0.0, 1.0
    if table.task == "regression":
        y_mean, y_std = float(np.mean(ys[0])), float(np.std(ys[0]) or 1.0)
        ys = [(v - y_mean) / y_std for v in ys]
    parts = [
        Part(x=x if is_lazy(x) else np.ascontiguousarray(x, dtype=np.float32), y=y, index=table.index[rows],
             group=table.sensitive[rows] if table.sensitive is not None else None)
        for x, y, rows in zip(xs, ys, (train, val, test), strict=True)
    ]
    columns = [str(c) for c in table.x.columns] if frame else None
    return Splits(
        *parts, task=table.task, class_names=table.class_names, feature_names=names,
        input_columns=columns, y_mean=y_mean, y_std=y_std, image_shape=table.image_shape, notes=notes,
        preprocess=transformer,
    )


def non_finite_columns(x: np.ndarray, names: list[str]) -> list[str]:
    """The names of the columns of ``x`` holding a value that is not finite as float32."""
    bad = ~np.isfinite(np.asarray(x, dtype=np.float32)).all(axis=0)
    return [names[j] if j < len(names) else f"x{j}" for j in np.flatnonzero(bad)]


def _refuse_non_finite(xs: list, names: list[str]) -> None:
    """Refuse inputs that are not finite once prepared (values past float32's range, or a
    scaling that overflows), naming the columns: training on them gives NaN everywhere."""
    for part, x in zip(PARTS, xs, strict=True):
        columns = [] if is_lazy(x) else non_finite_columns(x, names)
        if columns:
            shown = ", ".join(columns[:8]) + (f" and {len(columns) - 8} more" if len(columns) > 8 else "")
            raise DataError(f"input column(s) {shown} are not finite after preprocessing (in the {part} split): "
                            "values past float32's range (about 3.4e38) or a scaling that overflows; rescale "
                            "them in the file")


def _preprocessing_notes(
    transformer: ColumnTransformer, x_parts: list[pd.DataFrame], *, missing: list[str], width: int
) -> dict[str, Any]:
    """JSON-ready facts about a fitted table transformer, for the run folder.

    ``imputed_cells`` counts the missing cells of each split (every one is filled);
    ``infrequent_categories`` maps each text column whose rare or surplus categories
    share the infrequent column to how many categories it merged.
    """
    notes: dict[str, Any] = {
        "imputed_cells": {name: int(p.isna().to_numpy().sum()) for name, p in zip(PARTS, x_parts, strict=True)},
        "missing_indicator_columns": [str(c) for c in missing],
        "encoded_width": width,
        "source_columns": int(x_parts[0].shape[1]),
    }
    for name, pipeline, columns in transformer.transformers_:
        if name == "text":
            encoder = pipeline[-1]
            merged = zip(columns, encoder.infrequent_categories_, strict=True)
            notes["infrequent_categories"] = {str(c): len(cats) for c, cats in merged if cats is not None}
            notes["one_hot"] = {"max_categories": encoder.max_categories, "min_frequency": encoder.min_frequency}
    return notes


def _default_names(x) -> list[str]:
    if isinstance(x, pd.DataFrame):
        return [str(c) for c in x.columns]
    return [f"x{i}" for i in range(int(np.prod(x.shape[1:])))]
