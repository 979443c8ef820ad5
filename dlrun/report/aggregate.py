"""Aggregating a sweep's runs: swept keys, groups over seeds, best per value, leaderboard.

Groups are the runs that share every swept key (seed excluded), with mean ± std over
seeds, best first. Following Google's tuning playbook, the optimizer's own
hyperparameters (``optimizer.lr``, ``optimizer.batch_size``, ...) are *nuisance*
hyperparameters and every other swept key is *scientific*: when both are swept, the
best trial per scientific value is what gets compared. Time-to-target (see
:mod:`dlrun.report.target`) is added per run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dlrun.report.runs import Runs
from dlrun.report.target import (
    Target,
    read_history,
    score_column,
    steady_seconds_per_epoch,
    study_target,
    time_to_target,
)

# Override keys that never define a group: the seed is averaged over, the rest is plumbing.
NON_GROUP_KEYS = ("seed", "trainer.progress", "trainer.threads", "experiment")
# Swept keys under this prefix are nuisance hyperparameters, tuned for each scientific value.
NUISANCE_PREFIX = "optimizer."
# The leaderboard's columns after the config keys (those a run has).
METRIC_COLUMNS = (
    "status", "val_score", "test_score", "train_fit", "val_fit", "gap", "best_epoch", "epochs_run",
    "fit_seconds", "seconds_per_epoch", "target_epochs", "target_seconds", "params", "verdict",
)
DEFAULT_TARGET_FRACTION = 0.95


def _greater_is_better(runs: pd.DataFrame) -> bool:
    """Whether the runs' headline score is better higher (True when no run says)."""
    known = runs["greater_is_better"].dropna() if "greater_is_better" in runs else pd.Series(dtype=bool)
    return bool(known.iloc[0]) if len(known) else True


def add_time_to_target(
    runs: pd.DataFrame, *, fraction: float = DEFAULT_TARGET_FRACTION
) -> tuple[pd.DataFrame, Target | None, dict[str, pd.DataFrame]]:
    """Add ``target_epochs``, ``target_seconds`` and ``steady_seconds_per_epoch`` to ``runs``.

    Returns:
        The runs with the new columns, the study's target (None when no run has a
        validation curve) and each run folder's history, by ``run_dir``.
    """
    histories = {d: h for d in runs["run_dir"] if (h := read_history(Path(d))) is not None}
    ok = runs[runs["status"] == "ok"]
    headline = ok["headline"].dropna().iloc[0] if ok["headline"].notna().any() else "score"
    fit = ok["fit_metric"].dropna().iloc[0] if ok["fit_metric"].notna().any() else None
    ok_histories = [histories[d] for d in ok["run_dir"] if d in histories]
    column = score_column(ok_histories, headline=headline, fit=fit)
    target = None
    if column:
        target = study_target(ok_histories, column=column, fraction=fraction,
                              greater_is_better=_greater_is_better(runs))
    runs = runs.copy()
    reach = [time_to_target(histories.get(d), target) if target else (math.nan, math.nan)
             for d in runs["run_dir"]]
    runs["target_epochs"] = [r[0] for r in reach]
    runs["target_seconds"] = [r[1] for r in reach]
    runs["steady_seconds_per_epoch"] = [steady_seconds_per_epoch(histories.get(d)) for d in runs["run_dir"]]
    return runs, target, histories


def swept_keys(runs: Runs) -> list[str]:
    """Config keys whose values differ between runs, seed and plumbing excluded."""
    return [key for key in runs.config_keys
            if key not in NON_GROUP_KEYS and runs.frame[key].fillna("∅").nunique() > 1]


def split_keys(keys: list[str]) -> tuple[list[str], list[str]]:
    """(scientific, nuisance) swept keys: the optimizer's own hyperparameters are nuisance."""
    nuisance = [k for k in keys if k.startswith(NUISANCE_PREFIX)]
    return [k for k in keys if k not in nuisance], nuisance


def group_table(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and std over seeds of each group of finished (``ok``) runs, best first.

    Time-to-target means are over the runs that reached the target (``reached`` of ``n``).
    """
    ok = runs[runs["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame()
    for col in ("target_epochs", "target_seconds", "steady_seconds_per_epoch"):
        if col not in ok:
            ok[col] = math.nan
    by = keys or (lambda _: "all")
    agg = ok.groupby(by, dropna=False).agg(
        n=("val_score", "size"),
        val_mean=("val_score", "mean"), val_std=("val_score", "std"),
        test_mean=("test_score", "mean"), test_std=("test_score", "std"),
        train_fit_mean=("train_fit", "mean"), val_fit_mean=("val_fit", "mean"),
        gap_mean=("gap", "mean"), gap_std=("gap", "std"),
        epochs_mean=("epochs_run", "mean"), seconds_mean=("fit_seconds", "mean"),
        seconds_per_epoch=("steady_seconds_per_epoch", "mean"),
        reached=("target_epochs", "count"),
        target_epochs_mean=("target_epochs", "mean"), target_epochs_std=("target_epochs", "std"),
        target_seconds_mean=("target_seconds", "mean"), target_seconds_std=("target_seconds", "std"),
    ).reset_index()
    if not keys:
        agg = agg.rename(columns={"index": "group"})
    missing = agg["seconds_per_epoch"].isna()
    if missing.any():  # no history: fall back to the run's own average (first epoch included)
        fallback = ok.groupby(by, dropna=False)["seconds_per_epoch"].mean().reset_index(drop=True)
        agg.loc[missing, "seconds_per_epoch"] = fallback[missing]
    return agg.sort_values("val_mean", ascending=not _greater_is_better(ok), kind="stable").reset_index(drop=True)


def best_per_value(groups: pd.DataFrame, scientific: list[str]) -> pd.DataFrame:
    """The best group (first in ``groups``, which is sorted best first) per scientific value."""
    if groups.empty or not scientific:
        return groups.iloc[0:0]
    return groups.groupby(scientific, sort=False, dropna=False).head(1).reset_index(drop=True)


def label(row: pd.Series, keys: list[str]) -> str:
    """``optimizer=adam, optimizer.lr=0.001`` for a row with those config keys."""
    return ", ".join(f"{k}={row[k]}" for k in keys) or "all runs"


def leaderboard(runs: Runs) -> pd.DataFrame:
    """One row per job, best validation score first; failed jobs last, with their message.

    The columns: the config keys, then :data:`METRIC_COLUMNS` and the run's identity.
    """
    frame, keys = runs.frame, runs.config_keys
    rest = ["headline", *METRIC_COLUMNS, "fit_metric", "test_fit", "seed", "message", "slurm_job", "run_dir"]
    board = frame[keys + [c for c in rest if c in frame and c not in keys]].copy()
    if "val_score" in board and len(board):
        board = board.sort_values("val_score", ascending=not _greater_is_better(frame),
                                  na_position="last", kind="stable")
    return board
