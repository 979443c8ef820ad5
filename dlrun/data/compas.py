"""``compas``: ProPublica's COMPAS recidivism data (Broward County, Florida, 2013-2014).

The file is ``compas-scores-two-years.csv`` from ProPublica's analysis
(https://github.com/propublica/compas-analysis), read from ``dataset.path`` (the file,
or a folder holding it). The target is ``two_year_recid`` (1: charged with a new crime
within two years); a positive decision here is "predicted to reoffend", the adverse one,
so the false-positive-rate gap (inside the equalized-odds difference) is the one
ProPublica reported.

Rows: ProPublica's own filters (its notebook "Compas Analysis"): the COMPAS screening
within 30 days of the arrest (``days_b_screening_arrest`` in [-30, 30]), a known
recidivism outcome (``is_recid != -1``), no ordinary traffic offence
(``c_charge_degree != 'O'``) and a COMPAS score present: 6,172 of 7,214 rows. Race is
the sensitive attribute. The file holds six race values, three of them small (Asian 31,
Native American 11, Other 343 rows): a gap measured on 11 people is noise, and a
per-group threshold fitted on a handful of validation rows is arbitrary. So, as
ProPublica's group comparisons did, only ``dataset.compas.races`` are kept
(African-American and Caucasian, 5,278 rows, by default); an empty list keeps all six.

Inputs: sex, age, the juvenile felony / misdemeanour / other counts, the prior-offence
count and the charge degree (felony or misdemeanour): what COMPAS itself was given about
the history. Never inputs: race (kept aside per row unless
``dataset.sensitive_as_feature``), the COMPAS scores (``decile_score``, ``score_text``,
``v_*``), anything recorded after the screening (``is_recid``, ``r_*``, ``vr_*``,
``is_violent_recid``, ``event``, ``end``, custody dates) which leaks the target, and
identifiers, names, dates and case numbers. ``c_charge_desc`` (over 400 free-text
charge names) is left out as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dlrun.config import DatasetConfig
from dlrun.data.split import one_hot_settings
from dlrun.data.table import Table
from dlrun.errors import ConfigError, DataError

FILE = "compas-scores-two-years.csv"
URL = "https://github.com/propublica/compas-analysis"
TARGET = "two_year_recid"
INPUTS = ("sex", "age", "juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count", "c_charge_degree")
ATTRIBUTES = ("race", "sex")  # dataset.sensitive may name either
_FILTER_COLUMNS = ("days_b_screening_arrest", "is_recid", "c_charge_degree", "score_text")
_SCREENING_DAYS = 30


def _path(cfg: DatasetConfig) -> Path:
    if not cfg.path:
        raise DataError(f"dataset=compas needs its file: download {FILE} from {URL} and set "
                        f"dataset.path=/path/to/{FILE}")
    path = Path(str(cfg.path)).expanduser()
    path = path / FILE if path.is_dir() else path
    if not path.is_file():
        raise DataError(f"dataset.path: no file at {path}; download {FILE} from {URL} and point "
                        "dataset.path at it (or at its folder)")
    return path


def propublica_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """ProPublica's row filters (see the module docstring); ``score_text`` 'N/A' reads as missing."""
    days = pd.to_numeric(frame["days_b_screening_arrest"], errors="coerce")
    keep = (days.abs() <= _SCREENING_DAYS) & (frame["is_recid"] != -1) & (frame["c_charge_degree"] != "O") \
        & frame["score_text"].notna()
    return frame[keep]


def load(cfg: DatasetConfig) -> Table:
    """The filtered COMPAS table (see the module docstring).

    Raises:
        ConfigError: a sensitive attribute other than race or sex; races not in the file.
        DataError: the file missing or without ProPublica's columns; no row left.
    """
    if cfg.sensitive is not None and cfg.sensitive not in ATTRIBUTES:
        raise ConfigError(f"dataset.sensitive={cfg.sensitive!r}: compas's attributes are race and sex")
    path = _path(cfg)
    frame = pd.read_csv(path, low_memory=False)
    absent = [c for c in dict.fromkeys((*INPUTS, *ATTRIBUTES, TARGET, *_FILTER_COLUMNS)) if c not in frame.columns]
    if absent:
        raise DataError(f"{path} is not ProPublica's {FILE}: no column {', '.join(absent)}")
    loaded = len(frame)
    frame = propublica_rows(frame)
    filtered = len(frame)
    races = list(cfg.compas.races)
    if races:
        unknown = sorted(set(races) - set(frame["race"]))
        if unknown:
            raise ConfigError(f"dataset.compas.races: {', '.join(unknown)} not in {path.name} "
                              f"(races: {', '.join(sorted(frame['race'].unique()))})")
        frame = frame[frame["race"].isin(races)]
    if frame.empty:
        raise DataError(f"{path}: no row left after ProPublica's filters")
    aside = {cfg.sensitive} if cfg.sensitive and not cfg.sensitive_as_feature else set()
    features = [c for c in INPUTS if c not in aside]
    if cfg.sensitive == "race" and cfg.sensitive_as_feature:
        features.append("race")
    notes = {"file": path.name, "rows_loaded": loaded, "rows_after_propublica_filters": filtered,
             "races_kept": races or "all", "rows_kept": len(frame), "one_hot": one_hot_settings(cfg)}
    sensitive = frame[cfg.sensitive].astype(str).to_numpy() if cfg.sensitive else None
    return Table(name="compas", x=frame[features].reset_index(drop=True),
                 y=frame[TARGET].to_numpy(dtype=np.int64), task="binary", class_names=["no", "recidivism"],
                 sensitive=sensitive, index=frame.index.to_numpy(), notes=notes)
