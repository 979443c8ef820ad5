"""``adult``: UCI Adult (the 1994 US census extract), who earns over $50K a year.

Where the rows come from:

* ``dataset.path``, a folder holding ``adult.data`` (32,561 rows) and ``adult.test``
  (16,281 rows) as UCI distributes them (https://archive.ics.uci.edu/dataset/2/adult);
  ``adult.test`` is the test split, as in every published result on this set;
* otherwise OpenML's copy (data id 1590: both files' 48,842 rows in one table, so the
  test split is drawn at random), through scikit-learn's ``fetch_openml``, which reads
  its cache (``~/scikit_learn_data``, or ``$SCIKIT_LEARN_DATA``) and downloads into it
  when the copy is missing. Offline without either, one line says what to fetch and
  where to put it.

The UCI files: no header, a comma and a space between cells, ``?`` for a missing cell
(workclass, occupation, native-country); ``adult.test`` starts with a junk line
(``|1x3 Cross validator``) and writes its labels with a trailing full stop (``>50K.``).
Missing cells are kept missing (``dataset.missing``: imputed on the training split by
default, as ``dataset=csv`` does); dropping those rows (``dataset.missing=drop``) moves
the base rates a little.

Inputs: every column but ``fnlwgt`` (the census sampling weight: how many people a row
stands for, not a trait of the person), ``education`` (``education-num`` codes it one to
one) and the sensitive attribute, ``sex`` by default (``dataset.sensitive=race`` works
too), which is kept aside per row. ``relationship`` (Husband / Wife) still carries sex:
the reason ``fairness=unaware`` is not a mitigation.

The documented disparity: in ``adult.data``, 30.6% of men and 10.9% of women earn over
$50K, a base-rate difference of 0.196; the run's notes carry it so the audit can be
compared with it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from dlrun.config import DatasetConfig
from dlrun.data.csv_table import _apply_missing_policy
from dlrun.data.split import one_hot_settings
from dlrun.data.table import Table
from dlrun.errors import ConfigError, DataError

log = logging.getLogger(__name__)

COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
           "income")
FILES = ("adult.data", "adult.test")
TARGET, POSITIVE = "income", ">50K"
NOT_INPUTS = ("fnlwgt", "education")  # see the module docstring
OPENML_ID = 1590
UCI_URL = "https://archive.ics.uci.edu/dataset/2/adult"
# P(>50K | Male) - P(>50K | Female) over the 32,561 rows of adult.data.
DOCUMENTED = {"sex": {"value": 0.1963, "source": "adult.data: 30.6% of men and 10.9% of women earn over $50K"}}
_DOWNLOAD_TIMEOUT = 30  # seconds without an answer before OpenML counts as unreachable


def read_uci(path: Path) -> pd.DataFrame:
    """One UCI file as a frame: junk first line skipped, ``?`` missing, labels without the full stop."""
    with path.open(encoding="utf-8") as handle:
        junk = handle.readline().startswith("|")
    try:
        frame = pd.read_csv(path, header=None, names=list(COLUMNS), skipinitialspace=True, na_values=["?"],
                            skiprows=1 if junk else 0, skip_blank_lines=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path} is not a UCI Adult file ({len(COLUMNS)} comma-separated columns): {first}") from None
    frame = frame.dropna(subset=[TARGET])
    frame[TARGET] = frame[TARGET].astype(str).str.strip().str.rstrip(".")
    labels = set(frame[TARGET])
    if not labels <= {POSITIVE, "<=50K"} or frame.empty:
        held = f"holds {', '.join(sorted(labels)[:4])}" if labels else "is empty"
        raise DataError(f"{path} is not a UCI Adult file ({len(COLUMNS)} comma-separated columns, the last "
                        f"<=50K or >50K): its {len(COLUMNS)}th column {held}")
    return frame


def _from_folder(folder: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Both files, stacked; the positions of ``adult.test``'s rows."""
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise DataError(f"dataset.path={folder}: no {' or '.join(missing)} there; download adult.data and "
                        f"adult.test from {UCI_URL} into that folder")
    train, test = read_uci(folder / FILES[0]), read_uci(folder / FILES[1])
    frame = pd.concat([train, test], ignore_index=True)
    return frame, np.arange(len(train), len(frame))


def _from_openml() -> pd.DataFrame:
    """OpenML's copy through scikit-learn's cache (downloaded when missing and online)."""
    from sklearn.datasets import fetch_openml, get_data_home

    previous = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT)
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")  # "network error ... retrying": the line below says it
            bunch = fetch_openml(data_id=OPENML_ID, as_frame=True, n_retries=1, delay=0.1)
    except (OSError, ValueError) as err:  # URLError is an OSError; a broken cache file a ValueError
        raise DataError(
            f"adult: not in scikit-learn's cache ({get_data_home()}) and OpenML is unreachable "
            f"({type(err).__name__}); download adult.data and adult.test from {UCI_URL} into a folder and "
            "set dataset.path=FOLDER") from None
    finally:
        socket.setdefaulttimeout(previous)
    frame = bunch.frame.rename(columns={"class": TARGET})
    for c in frame.columns:
        if isinstance(frame[c].dtype, pd.CategoricalDtype):
            frame[c] = frame[c].astype(object).where(frame[c].notna(), np.nan)
    frame[TARGET] = frame[TARGET].astype(str).str.strip().str.rstrip(".")
    return frame


def load(cfg: DatasetConfig) -> Table:
    """The Adult table (see the module docstring).

    Raises:
        ConfigError: a sensitive attribute that is not a column.
        DataError: files missing, unreadable or not Adult's; offline without a cached copy.
    """
    one_hot = one_hot_settings(cfg)
    if cfg.sensitive is not None and cfg.sensitive not in COLUMNS[:-1]:
        raise ConfigError(f"dataset.sensitive={cfg.sensitive!r} is not a column of adult; try sex or race")
    if cfg.path:
        folder = Path(str(cfg.path)).expanduser()
        frame, test_rows = _from_folder(folder)
        source = {"file": f"{folder}/{{adult.data, adult.test}}", "rows_loaded": len(frame)}
    else:
        frame, test_rows = _from_openml(), None
        source = {"file": f"OpenML data id {OPENML_ID} (scikit-learn's cache)", "rows_loaded": len(frame)}
    aside = {TARGET, *NOT_INPUTS} | ({cfg.sensitive} if cfg.sensitive and not cfg.sensitive_as_feature else set())
    features = [c for c in COLUMNS if c not in aside]
    kept = len(frame)
    frame, missing, dropped = _apply_missing_policy(frame, features, cfg.missing, Path("adult"))
    if test_rows is not None and dropped:  # positions move when rows go
        is_test = np.zeros(kept, dtype=bool)
        is_test[test_rows] = True
        test_rows = np.flatnonzero(is_test[frame.index.to_numpy()])
    frame = frame.reset_index(drop=True)
    notes = {**source, "missing": cfg.missing, "missing_cells": missing, "rows_dropped_missing": dropped,
             "one_hot": one_hot, "not_inputs": list(NOT_INPUTS)}
    if cfg.sensitive in DOCUMENTED:
        notes["documented_base_rate_difference"] = DOCUMENTED[cfg.sensitive]
    y = (frame[TARGET] == POSITIVE).to_numpy(dtype=np.int64)
    sensitive = frame[cfg.sensitive].astype(str).to_numpy() if cfg.sensitive else None
    return Table(name="adult", x=frame[features], y=y, task="binary", class_names=["<=50K", ">50K"],
                 sensitive=sensitive, test_rows=test_rows, notes=notes)
