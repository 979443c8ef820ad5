"""Splits and preprocessing: stratified where the task allows, fitted on train only."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import (
    KFold,
    RepeatedKFold,
    RepeatedStratifiedKFold,
    StratifiedKFold,
    train_test_split,
)
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from dlrun.data.table import Part, Splits, Table
from dlrun.errors import DataError

# Text columns with more distinct values than this keep the most frequent ones only.
_MAX_CATEGORIES = 50
# A class needs this many rows so every split (train, validation, test) can hold one.
_MIN_ROWS_PER_CLASS = 3


def _stratify(y: np.ndarray, task: str) -> np.ndarray | None:
    return y if task != "regression" else None


def check_class_counts(table: Table) -> None:
    """Refuse classification data that a stratified split cannot serve."""
    if table.task == "regression":
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
    try:
        if test is None:
            dev, test = train_test_split(
                idx, test_size=test_size, random_state=seed, stratify=_stratify(y, task)
            )
        else:
            dev = np.setdiff1d(idx, test)
        train, val = train_test_split(
            dev, test_size=val_size, random_state=seed, stratify=_stratify(y[dev], task)
        )
    except ValueError as err:
        raise DataError(f"cannot split {len(y)} rows as asked: {err}") from None
    return np.sort(train), np.sort(val), np.sort(test)


def fold_indices(
    y: np.ndarray, *, task: str, folds: int, repeats: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) positions into ``y`` for k-fold, repeated when ``repeats > 1``."""
    stratified = task != "regression"
    if repeats > 1:
        cls = RepeatedStratifiedKFold if stratified else RepeatedKFold
        splitter = cls(n_splits=folds, n_repeats=repeats, random_state=seed)
    else:
        cls = StratifiedKFold if stratified else KFold
        splitter = cls(n_splits=folds, shuffle=True, random_state=seed)
    try:
        yield from splitter.split(np.zeros(len(y)), y if stratified else None)
    except ValueError as err:
        raise DataError(f"cannot make {folds} folds: {err}") from None


def _transformer(x: pd.DataFrame | np.ndarray, scaling: str):
    scaler = {"standard": StandardScaler, "minmax": MinMaxScaler}.get(scaling)
    if not isinstance(x, pd.DataFrame):
        return scaler() if scaler else None
    numeric = [c for c in x.columns if pd.api.types.is_numeric_dtype(x[c]) and not pd.api.types.is_bool_dtype(x[c])]
    text = [c for c in x.columns if c not in numeric]
    parts = []
    if numeric:
        parts.append(("num", scaler() if scaler else "passthrough", numeric))
    if text:
        encoder = OneHotEncoder(
            handle_unknown="infrequent_if_exist", max_categories=_MAX_CATEGORIES, sparse_output=False
        )
        parts.append(("text", encoder, text))
    return ColumnTransformer(parts, verbose_feature_names_out=False)


def _take(x: pd.DataFrame | np.ndarray, idx: np.ndarray):
    if isinstance(x, pd.DataFrame):
        return x.iloc[idx].copy()
    return x[idx]


def _as_text(x: pd.DataFrame) -> pd.DataFrame:
    """Text-like columns as str so the encoder sees one type per column."""
    for c in x.columns:
        if not pd.api.types.is_numeric_dtype(x[c]) or pd.api.types.is_bool_dtype(x[c]):
            x[c] = x[c].astype(str)
    return x


def make_splits(
    table: Table, train: np.ndarray, val: np.ndarray, test: np.ndarray, *, scaling: str
) -> Splits:
    """Cut the table by row positions and fit scaling / encoding on the training rows only.

    Each part carries its rows' original index and sensitive attribute; sample weights
    start at one (the prepare stage may change the training part's).
    """
    x_parts = [_take(table.x, i) for i in (train, val, test)]
    if isinstance(table.x, pd.DataFrame):
        x_parts = [_as_text(p) for p in x_parts]
    transformer = None if table.scaled else _transformer(table.x, scaling)
    if transformer is not None:
        xs = [transformer.fit_transform(x_parts[0]), *(transformer.transform(p) for p in x_parts[1:])]
        names = [str(n) for n in transformer.get_feature_names_out()] if hasattr(
            transformer, "get_feature_names_out"
        ) and isinstance(table.x, pd.DataFrame) else _default_names(table.x)
    else:
        xs = [np.asarray(p, dtype=np.float32) for p in x_parts]
        names = _default_names(table.x)
    ys = [table.y[i] for i in (train, val, test)]
    y_mean, y_std = 0.0, 1.0
    if table.task == "regression":
        y_mean, y_std = float(np.mean(ys[0])), float(np.std(ys[0]) or 1.0)
        ys = [(v - y_mean) / y_std for v in ys]
    parts = [
        Part(x=np.ascontiguousarray(x, dtype=np.float32), y=y, index=table.index[rows],
             group=table.sensitive[rows] if table.sensitive is not None else None)
        for x, y, rows in zip(xs, ys, (train, val, test), strict=True)
    ]
    columns = [str(c) for c in table.x.columns] if isinstance(table.x, pd.DataFrame) else None
    return Splits(
        *parts, task=table.task, class_names=table.class_names, feature_names=names,
        input_columns=columns, y_mean=y_mean, y_std=y_std, image_shape=table.image_shape,
    )


def _default_names(x) -> list[str]:
    if isinstance(x, pd.DataFrame):
        return [str(c) for c in x.columns]
    return [f"x{i}" for i in range(int(np.prod(x.shape[1:])))]
