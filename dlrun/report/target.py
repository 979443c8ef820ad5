"""Time-to-target: epochs and seconds until a run's validation score is good enough.

The target is a fraction (``study.target_fraction``) of the best validation score any
run of the study reached in any epoch, read from the runs' ``history.csv``. For a score
where lower is better (a regression error) the target is the best score divided by the
fraction. A run reaches the target at the first epoch whose validation score is at
least as good; its seconds are the measured wall seconds of the epochs up to and
including that one, less the one-off graph compilation (the first epoch's excess over
the median epoch after it), which would otherwise dominate short trainings and is the
same framework cost whatever the optimizer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

HISTORY = "history.csv"


@dataclass
class Target:
    """The study-wide target: ``value`` in ``column``, from the best epoch of any run."""

    column: str
    best: float
    value: float
    fraction: float
    greater_is_better: bool

    def reached(self, scores: np.ndarray) -> np.ndarray:
        return scores >= self.value if self.greater_is_better else scores <= self.value


def read_history(run_dir: Path) -> pd.DataFrame | None:
    """A run's ``history.csv`` as a frame, or None when it has none (a failed job)."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError) as err:
        log.warning("skipping %s: unreadable (%s)", path, err)
        return None
    return frame if "epoch" in frame and len(frame) else None


def mean_curve(history: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch: the mean over folds for a k-fold run, the history itself otherwise."""
    if "fold" not in history:
        return history
    return history.drop(columns="fold").groupby("epoch", as_index=False).mean()


def score_column(histories: Iterable[pd.DataFrame], *, headline: str, fit: str | None) -> str | None:
    """The validation column to follow: ``val_<headline>``, else ``val_<fit metric>``."""
    frames = [h for h in histories if h is not None]
    for name in (f"val_{headline}", f"val_{fit}" if fit else None):
        if name and any(name in h for h in frames):
            return name
    return None


def study_target(
    histories: Iterable[pd.DataFrame], *, column: str, fraction: float, greater_is_better: bool
) -> Target | None:
    """The target from the best validation epoch of all ``histories`` (None if none has one)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"study.target_fraction must be in (0, 1], got {fraction}")
    scores = [h[column].to_numpy(dtype=float) for h in histories if h is not None and column in h]
    finite = np.concatenate([s[np.isfinite(s)] for s in scores]) if scores else np.array([])
    if finite.size == 0:
        return None
    best = float(finite.max() if greater_is_better else finite.min())
    value = best * fraction if greater_is_better else best / fraction
    return Target(column, best, value, fraction, greater_is_better)


def time_to_target(history: pd.DataFrame | None, target: Target) -> tuple[float, float]:
    """(epochs, seconds) until ``history`` first reaches ``target``; NaN, NaN if it never does."""
    if history is None or target.column not in history:
        return math.nan, math.nan
    curve = mean_curve(history)
    hit = np.flatnonzero(target.reached(curve[target.column].to_numpy(dtype=float)))
    if hit.size == 0:
        return math.nan, math.nan
    i = int(hit[0])
    if "seconds" not in curve:
        return float(curve["epoch"].iloc[i]), math.nan
    seconds = curve["seconds"].to_numpy(dtype=float)
    return float(curve["epoch"].iloc[i]), float(seconds[: i + 1].sum() - compile_seconds(seconds))


def compile_seconds(seconds: np.ndarray) -> float:
    """The first epoch's excess over the median later epoch: the one-off graph compilation."""
    if seconds.size < 2:
        return 0.0
    return max(0.0, float(seconds[0] - np.median(seconds[1:])))


def steady_seconds_per_epoch(history: pd.DataFrame | None) -> float:
    """Median seconds of an epoch after the first (which carries the graph compilation)."""
    if history is None or "seconds" not in history:
        return math.nan
    seconds = mean_curve(history)["seconds"].to_numpy(dtype=float)
    rest = seconds[1:] if seconds.size > 1 else seconds
    return float(np.median(rest)) if rest.size else math.nan
