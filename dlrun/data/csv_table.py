"""The user's own table: ``dataset=csv dataset.path=my.csv dataset.target=label``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dlrun.config import DatasetConfig
from dlrun.data.table import Table
from dlrun.errors import DataError

# An integer target with at most this many distinct values is read as class labels.
_MAX_CLASSES_FOR_INTEGER_TARGET = 20


def infer_task(y: pd.Series) -> str:
    """Guess the task from the target column.

    Text, boolean and categorical targets are classification; so are integer targets
    with few distinct values. Everything else numeric is regression.
    """
    n_unique = y.nunique()
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if numeric:
        integral = bool(np.all(np.mod(y.to_numpy(dtype=float), 1) == 0))
        if not (integral and n_unique <= _MAX_CLASSES_FOR_INTEGER_TARGET):
            return "regression"
    return "binary" if n_unique == 2 else "multiclass"


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"dataset.path: no file at {path}; give the path to a CSV file")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; a CSV with a header row and data is needed") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path} could not be read as CSV: {first}") from None
    if frame.empty:
        raise DataError(f"{path} has a header but no rows")
    return frame


def _check_missing(frame: pd.DataFrame, path: Path) -> None:
    counts = frame.isna().sum()
    bad = counts[counts > 0]
    if len(bad):
        cols = ", ".join(f"{c} ({n})" for c, n in bad.items())
        raise DataError(
            f"{path} has missing values in {cols}; fill or drop them before training"
        )
    numeric = frame.select_dtypes("number")
    infinite = numeric.columns[~np.isfinite(numeric.to_numpy(dtype=float)).all(axis=0)]
    if len(infinite):
        raise DataError(
            f"{path} has infinite values in {', '.join(map(str, infinite))}; replace them before training"
        )


def _encode_target(y: pd.Series, task: str, path: Path, target: str) -> tuple[np.ndarray, list[str]]:
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(y):
            raise DataError(f"dataset.task=regression needs a numeric target, but {target!r} holds text")
        return y.to_numpy(dtype=np.float64), []
    classes, codes = np.unique(y.astype(str).to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{path}: target {target!r} has a single class ({classes[0]!r}); nothing to learn")
    if task == "binary" and len(classes) != 2:
        raise DataError(f"dataset.task=binary but target {target!r} has {len(classes)} classes; use multiclass")
    return codes.astype(np.int64), [str(c) for c in classes]


def load(cfg: DatasetConfig) -> Table:
    """Read a CSV: numeric columns stay numeric, text columns are one-hot encoded later.

    Raises:
        DataError: missing file, unreadable CSV, missing values, an absent target column,
            a one-class target, or no feature columns.
    """
    path = Path(str(cfg.path)).expanduser()
    frame = _read(path)
    target = str(cfg.target)
    if target not in frame.columns:
        cols = ", ".join(map(str, frame.columns[:20]))
        raise DataError(f"dataset.target={target!r} is not a column of {path}; columns are: {cols}")
    _check_missing(frame, path)
    y_raw = frame.pop(target)
    sensitive = None
    if cfg.sensitive is not None:
        if cfg.sensitive not in frame.columns:
            raise DataError(f"dataset.sensitive={cfg.sensitive!r} is not a column of {path}")
        column = frame[cfg.sensitive] if cfg.sensitive_as_feature else frame.pop(cfg.sensitive)
        sensitive = column.astype(str).to_numpy()
    if frame.shape[1] == 0:
        raise DataError(f"{path} has no feature columns besides the target {target!r}")
    task = cfg.task or infer_task(y_raw)
    y, class_names = _encode_target(y_raw, task, path, target)
    return Table(
        name=path.stem, x=frame, y=y, task=task, class_names=class_names, sensitive=sensitive
    )
