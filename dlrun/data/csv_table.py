"""The user's own table: ``dataset=csv dataset.path=my.csv dataset.target=label``.

Reading. The delimiter is ``dataset.sep`` or sniffed (Python's ``csv.Sniffer`` over
``, ; tab |`` on the first 4 KB, comma when it cannot tell). Measured on a 30,000-row
file: 1 ms and right for comma, semicolon (decimal commas too), tab, pipe, quoted
delimiters and spaces after commas; 64 KB samples took 0.1-0.8 s for no gain, and pandas'
``sep=None`` (the Python engine, sniffing the header line) took 0.1 s and fails on a
one-column file. The text is ``dataset.encoding`` (UTF-8 by default); a file that is not
is refused with one line naming the override to set, not guessed: a guess would silently
change category and class names (latin-1 and cp1252 disagree on the bytes Windows
files use most), and a binary file would be "read" as garbage.

Cleaning. Cells are stripped of surrounding spaces (UCI Adult writes ``" Male"``); empty
cells, pandas' NA tokens and ``dataset.na_values`` (Adult: ``[?]``) are missing; in a
file not separated by commas, a column of decimal-comma numbers (``0,5``) is numeric. Rows
without a target are dropped (a target is never imputed); text columns with nearly one
value per row (identifiers) are dropped; missing feature cells are imputed later, on the
training split (``dataset.missing=impute``), or their rows dropped (``drop``), or the
file refused (``refuse``). Infinite numbers are always refused.

Everything done is recorded, JSON-ready, in ``Table.notes``
(:func:`dlrun.data.notes.summary_lines` words it for ``summary.md``).
"""

from __future__ import annotations

import codecs
import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dlrun.config import DatasetConfig
from dlrun.data.split import is_numeric_column, one_hot_settings
from dlrun.data.table import Table
from dlrun.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# An integer target with at most this many distinct values is read as class labels.
_MAX_CLASSES_FOR_INTEGER_TARGET = 20
MISSING_POLICIES = ("impute", "drop", "refuse")
_SNIFF_BYTES = 4096  # see the module docstring for the measurement
_DELIMITERS = ",;\t|"
_SEP_ALIASES = {"tab": "\t", "\\t": "\t"}  # the command line cannot carry a tab character
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def infer_task(y: pd.Series) -> str:
    """Guess the task from the target column.

    Text, boolean and categorical targets are classification; so are integer targets
    with few distinct values, and any target with two (0.5 and 1.5 are two labels, not a
    scale). Everything else numeric is regression.
    """
    n_unique = y.nunique()
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if numeric and n_unique != 2:
        integral = bool(np.all(np.mod(y.to_numpy(dtype=float), 1) == 0))
        if not (integral and n_unique <= _MAX_CLASSES_FOR_INTEGER_TARGET):
            return "regression"
    return "binary" if n_unique == 2 else "multiclass"


def _check_options(cfg: DatasetConfig) -> str | None:
    """Check the reading and cleaning keys; return the delimiter asked for (None: sniff).

    Raises:
        ConfigError: an unknown missing-value policy or encoding, a delimiter that is not
            one character, identifier thresholds out of range.
    """
    if cfg.missing not in MISSING_POLICIES:
        raise ConfigError(f"dataset.missing={cfg.missing!r} is not one of: {', '.join(MISSING_POLICIES)}")
    try:
        codecs.lookup(cfg.encoding)
    except LookupError:
        raise ConfigError(
            f"dataset.encoding={cfg.encoding!r} is not an encoding Python knows; try utf-8, latin-1 or cp1252"
        ) from None
    if not 0 < cfg.identifier_fraction <= 1:
        raise ConfigError(f"dataset.identifier_fraction must be in (0, 1] (1 keeps every column), "
                          f"got {cfg.identifier_fraction}")
    if cfg.identifier_min_distinct < 2:
        raise ConfigError(f"dataset.identifier_min_distinct must be at least 2, got {cfg.identifier_min_distinct}")
    if cfg.sep is None:
        return None
    sep = _SEP_ALIASES.get(cfg.sep, cfg.sep)
    if len(sep) != 1:
        raise ConfigError(f"dataset.sep must be one character, e.g. dataset.sep=';' or dataset.sep=tab; "
                          f"got {cfg.sep!r}")
    return sep


def sniff_delimiter(path: Path, encoding: str) -> str:
    """The delimiter of the file's first 4 KB among ``, ; tab |``; comma when unclear."""
    with path.open("rb") as handle:
        raw = handle.read(_SNIFF_BYTES)
    if len(raw) == _SNIFF_BYTES and b"\n" in raw:
        raw = raw[: raw.rfind(b"\n") + 1]  # whole lines only
    try:
        return csv.Sniffer().sniff(raw.decode(encoding, errors="replace"), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _encoding_hint(path: Path, encoding: str, err: UnicodeDecodeError) -> str:
    with path.open("rb") as handle:
        utf16 = handle.read(2) in _UTF16_BOMS
    fix = "dataset.encoding=utf-16" if utf16 else "dataset.encoding=latin-1 or the file's own encoding (cp1252, ...)"
    byte = err.object[err.start] if err.start < len(err.object) else None
    held = f" (it holds byte 0x{byte:02x})" if isinstance(byte, int) else ""
    return f"{path} could not be read as CSV: it is not {encoding} text{held}; if it is a table, set {fix}"


def _read(path: Path, *, sep: str | None, encoding: str, na_values: list[str]) -> tuple[pd.DataFrame, dict]:
    """The file as a cleaned frame (:func:`_clean_text`), and notes on how it was read."""
    if not path.is_file():
        raise DataError(f"dataset.path: no file at {path}; give the path to a CSV file")
    delimiter = sep or sniff_delimiter(path, encoding)
    shown = "tab" if delimiter == "\t" else delimiter
    try:
        frame = pd.read_csv(path, sep=delimiter, encoding=encoding, na_values=list(na_values) or None,
                            skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; a CSV with a header row and data is needed") from None
    except UnicodeDecodeError as err:
        raise DataError(_encoding_hint(path, encoding, err)) from None
    except (pd.errors.ParserError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path} could not be read as CSV ({shown!r}-separated; set dataset.sep if that is "
                        f"wrong): {first}") from None
    if frame.empty:
        raise DataError(f"{path} has a header but no rows")
    decimal = _clean_text(frame, na_values, decimal_comma=delimiter != ",")
    notes = {"file": path.name, "delimiter": delimiter, "delimiter_detected": sep is None,
             "encoding": encoding, "rows_loaded": len(frame), "decimal_comma_columns": decimal}
    return frame, notes


def read_frame(path: Path, *, sep: str | None, encoding: str, na_values: list[str]) -> tuple[pd.DataFrame, dict]:
    """A CSV read and cleaned as a training file is (delimiter, encoding, missing markers,
    decimal commas), with the notes on how; ``dlrun-predict`` reads new rows with it."""
    return _read(path, sep=sep, encoding=encoding, na_values=na_values)


def _clean_text(frame: pd.DataFrame, na_values: list[str], *, decimal_comma: bool) -> list[str]:
    """Strip text cells and column names; ``na_values`` and empty cells become missing.

    A text column that holds only numbers once cleaned (``"3 "``, ``"?"`` as missing)
    becomes numeric; so does one of decimal-comma numbers (``"0,5"``) when
    ``decimal_comma`` (a file not separated by commas, as European spreadsheets write).

    Returns:
        The columns read as decimal-comma numbers.
    """
    frame.columns = [str(c).strip() for c in frame.columns]
    tokens = {str(v).strip() for v in na_values} | {""}
    decimal = []
    for c in frame.columns:
        if is_numeric_column(frame[c]) or pd.api.types.is_bool_dtype(frame[c]):
            continue
        text = frame[c].astype(object).where(frame[c].isna(), frame[c].astype(str).str.strip())
        text = text.mask(text.isin(tokens))
        number = _numbers(text)
        if number is None and decimal_comma:
            number = _numbers(text.where(text.isna(), text.astype(str).str.replace(",", ".", regex=False)))
            decimal += [c] if number is not None else []
        frame[c] = text if number is None else number
    return decimal


def _numbers(text: pd.Series) -> pd.Series | None:
    try:
        return pd.to_numeric(text)
    except (ValueError, TypeError):
        return None


def _check_columns(frame: pd.DataFrame, cfg: DatasetConfig, path: Path, delimiter: str) -> None:
    target = str(cfg.target)
    if target not in frame.columns:
        cols = ", ".join(map(str, frame.columns[:20]))
        hint = ""
        if frame.shape[1] == 1:
            hint = (f" (one column when read as {'tab' if delimiter == chr(9) else delimiter!r}-separated: "
                    "set dataset.sep to the file's delimiter, e.g. dataset.sep=';')")
        raise DataError(f"dataset.target={target!r} is not a column of {path}; columns are: {cols}{hint}")
    if cfg.sensitive is not None and cfg.sensitive not in frame.columns:
        raise DataError(f"dataset.sensitive={cfg.sensitive!r} is not a column of {path}")


def _drop_missing_targets(frame: pd.DataFrame, target: str, path: Path) -> tuple[pd.DataFrame, int]:
    """Rows without a target dropped (never imputed); whole-number targets stay integers."""
    missing = frame[target].isna()
    dropped = int(missing.sum())
    if dropped == len(frame):
        raise DataError(f"{path}: every row's target {target!r} is missing; nothing to learn from")
    if not dropped:
        return frame, 0
    log.warning("dropped %d row(s) of %s whose target %r is missing (targets are never imputed)",
                dropped, path.name, target)
    frame = frame[~missing].copy()
    y = frame[target]
    if pd.api.types.is_float_dtype(y) and bool(np.all(np.mod(y.to_numpy(), 1) == 0)):
        frame[target] = y.astype(np.int64)  # read as float only because of the empty cells
    return frame, dropped


def _empty_columns(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    empty = [c for c in columns if frame[c].isna().all()]
    if empty:
        log.warning("dropped column(s) %s: no cell holds a value", ", ".join(map(repr, empty)))
    return empty


def identifier_columns(
    frame: pd.DataFrame, columns: list[str], *, fraction: float, min_distinct: int
) -> dict[str, dict[str, int]]:
    """Text columns with nearly one distinct value per filled cell: IDs, names, free text.

    Args:
        frame: the table.
        columns: the candidates (numeric ones are never identifiers here).
        fraction: more distinct values than this share of the column's filled cells...
        min_distinct: ...and at least this many distinct values.

    Returns:
        ``{column: {"distinct": n, "rows": filled cells}}`` for each identifier-like column.
    """
    found = {}
    for c in columns:
        if is_numeric_column(frame[c]):
            continue
        filled, distinct = int(frame[c].notna().sum()), int(frame[c].nunique())
        if distinct >= min_distinct and distinct > fraction * filled:
            found[c] = {"distinct": distinct, "rows": filled}
    return found


def _check_infinite(frame: pd.DataFrame, path: Path) -> None:
    numeric = frame[[c for c in frame.columns if is_numeric_column(frame[c])]]
    infinite = numeric.columns[np.isinf(numeric.to_numpy(dtype=float)).any(axis=0)]
    if len(infinite):
        raise DataError(
            f"{path} has infinite values in {', '.join(map(str, infinite))}; replace them before training"
        )


def _apply_missing_policy(frame: pd.DataFrame, features: list[str], policy: str, path: Path
                          ) -> tuple[pd.DataFrame, dict[str, int], int]:
    """Refuse, drop rows or keep missing cells (imputed at split time).

    Returns:
        The frame, the missing cells per feature column (those with any), the rows dropped.
    """
    counts = frame[features].isna().sum()
    missing = {str(c): int(n) for c, n in counts.items() if n > 0}
    if not missing or policy == "impute":
        return frame, missing, 0
    if policy == "refuse":
        cols = ", ".join(f"{c} ({n})" for c, n in missing.items())
        raise DataError(f"{path} has missing values in {cols}; fill them, or set dataset.missing=impute "
                        "(fitted on the training split) or dataset.missing=drop")
    complete = frame[features].notna().all(axis=1)
    if not complete.any():
        raise DataError(f"dataset.missing=drop: every row of {path} has a missing cell; "
                        "use dataset.missing=impute")
    dropped = int((~complete).sum())
    log.warning("dropped %d of %d rows of %s with missing cells (dataset.missing=drop)",
                dropped, len(frame), path.name)
    return frame[complete], missing, dropped


def _drop_identifiers(frame: pd.DataFrame, candidates: list[str], cfg: DatasetConfig) -> dict[str, dict[str, int]]:
    found = identifier_columns(frame, candidates, fraction=cfg.identifier_fraction,
                               min_distinct=cfg.identifier_min_distinct)
    for c, n in found.items():
        log.warning("dropped identifier-like column %r (%d distinct values in %d rows): it names rows, and a "
                    "model cannot learn from it; set dataset.identifier_fraction=1 to keep it",
                    c, n["distinct"], n["rows"])
    return found


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
    """Read, clean and check a CSV; numeric columns stay numeric, text is one-hot encoded later.

    Rows keep their position in the file (``Table.index``) when some are dropped.

    Raises:
        ConfigError: a reading or cleaning key out of range.
        DataError: a missing or unreadable file, an absent target column, missing values
            under ``dataset.missing=refuse``, infinite values, a one-class target, or no
            feature columns.
    """
    sep = _check_options(cfg)
    one_hot = one_hot_settings(cfg)
    path = Path(str(cfg.path)).expanduser()
    frame, notes = _read(path, sep=sep, encoding=cfg.encoding, na_values=cfg.na_values)
    _check_columns(frame, cfg, path, notes["delimiter"])
    target = str(cfg.target)
    frame, dropped_targets = _drop_missing_targets(frame, target, path)
    aside = {target} | ({cfg.sensitive} if cfg.sensitive is not None and not cfg.sensitive_as_feature else set())
    features = [c for c in frame.columns if c not in aside]
    empty = _empty_columns(frame, features)
    identifiers = _drop_identifiers(frame, [c for c in features if c not in empty and c != cfg.sensitive], cfg)
    features = [c for c in features if c not in identifiers and c not in empty]
    _check_infinite(frame[features], path)
    frame, missing, dropped_rows = _apply_missing_policy(frame, features, cfg.missing, path)
    notes |= {
        "rows_dropped_missing_target": dropped_targets, "rows_dropped_missing": dropped_targets + dropped_rows,
        "dropped_identifier_columns": list(identifiers), "identifier_columns": identifiers,
        "dropped_empty_columns": empty,
        "missing": cfg.missing, "missing_cells": missing, "one_hot": one_hot,
    }
    if not features:
        gone = [*identifiers, *empty]
        dropped = f" (dropped as identifier-like or empty: {', '.join(gone)})" if gone else ""
        raise DataError(f"{path} has no feature columns besides the target {target!r}{dropped}")
    sensitive = frame[cfg.sensitive].astype(str).to_numpy() if cfg.sensitive is not None else None
    task = cfg.task or infer_task(frame[target])
    y, class_names = _encode_target(frame[target], task, path, target)
    return Table(
        name=path.stem, x=frame[features].reset_index(drop=True), y=y, task=task, class_names=class_names,
        sensitive=sensitive, index=frame.index.to_numpy(), notes=notes,
    )
