"""What every study's claim check shares: per-run extras, seed-paired differences, verdicts.

Runs of one sweep that share a seed share the data split and the initial weights, so a
difference between two settings is measured seed by seed (paired) and summarised by
its mean and a 95% Student-t interval over seeds: with 3 seeds that interval is wide,
and the reports say so rather than hide it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from dlrun.report.runs import read_metrics

# Splits whose headline metric, fit metric and loss are read from each run's metrics.json.
_SPLITS = ("train", "val")


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that ended with status ``ok``."""
    return runs[runs["status"] == "ok"].copy() if "status" in runs else runs.copy()


def add_split_metrics(runs: pd.DataFrame, *, splits: tuple[str, ...] = _SPLITS) -> pd.DataFrame:
    """Add ``{split}_{head,loss}`` and ``n_val`` columns from each run's ``metrics.json``.

    The runs table carries the headline only for validation and test; the capacity and
    regularization checks also want the training headline, the losses and the size of
    the validation split. Runs whose folder is gone keep NaN.

    Args:
        runs: one row per run, with ``run_dir``.
        splits: the splits to read. Defaults to train and validation; a split other than
            those two also adds its size as ``n_<split>``.
    """
    runs = runs.copy()
    extra: dict[str, list[float]] = {f"{s}_{k}": [] for s in splits for k in ("head", "loss")}
    sizes = ["val", *(s for s in splits if s not in _SPLITS)]
    extra.update({f"n_{s}": [] for s in sizes})
    for _, row in runs.iterrows():
        metrics = _read_metrics(row.get("run_dir"))
        head = row.get("headline") or metrics.get("headline")
        for split in splits:
            values = metrics.get(split) or {}
            extra[f"{split}_head"].append(_float(values.get(head)))
            extra[f"{split}_loss"].append(_float(values.get("loss")))
        for split in sizes:
            extra[f"n_{split}"].append(_float((metrics.get("sizes") or {}).get(split)))
    for col, values in extra.items():
        if col not in runs:
            runs[col] = values
    return runs


def _read_metrics(run_dir: str | None) -> dict:
    if not isinstance(run_dir, str):
        return {}
    try:
        return read_metrics(Path(run_dir))
    except (OSError, ValueError):
        return {}


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and the half-width of its 95% interval (NaN with one seed)."""

    mean: float
    half: float
    n: int

    @property
    def below_zero(self) -> bool:
        """The whole interval is below zero: a decrease larger than the seed noise."""
        return bool(np.isfinite(self.half) and self.mean + self.half < 0)

    @property
    def above_zero(self) -> bool:
        return bool(np.isfinite(self.half) and self.mean - self.half > 0)

    def text(self, digits: int = 4) -> str:
        if not np.isfinite(self.mean):
            return "–"
        if not np.isfinite(self.half):
            return f"{self.mean:+.{digits}f}"
        return f"{self.mean:+.{digits}f} ± {self.half:.{digits}f}"


def interval(values) -> Interval:
    """Mean and 95% Student-t half-width of ``values`` (NaNs dropped)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return Interval(math.nan, math.nan, 0)
    if len(v) == 1:
        return Interval(float(v[0]), math.nan, 1)
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return Interval(float(v.mean()), half, len(v))


def paired(runs: pd.DataFrame, *, key: str, value: str, baseline: str, column: str) -> Interval:
    """``column`` of ``key=value`` minus that of ``key=baseline``, seed by seed.

    Args:
        runs: finished runs with a ``seed`` column.
        key: the column (a config key) that tells the settings apart.
        value: the setting measured.
        baseline: the setting it is measured against.
        column: the metric column.

    Returns:
        The interval of the per-seed differences, over the seeds both settings ran.
    """
    return interval(paired_differences(runs, key=key, value=value, baseline=baseline, column=column))


def paired_differences(runs: pd.DataFrame, *, key: str, value: str, baseline: str, column: str,
                       by: tuple[str, ...] = ("seed",)) -> np.ndarray:
    """The per-seed differences behind :func:`paired`: ``column`` at ``value`` minus at ``baseline``.

    Args:
        runs: finished runs with the ``by`` columns.
        key: the column that tells the settings apart.
        value: the setting measured.
        baseline: the setting it is measured against.
        column: the metric column.
        by: the columns a pair shares. Defaults to the seed alone.

    Returns:
        One difference per ``by`` value both settings ran, in ``by`` order.
    """
    a = runs[runs[key] == value].groupby(list(by))[column].mean()
    b = runs[runs[key] == baseline].groupby(list(by))[column].mean()
    common = a.index.intersection(b.index)
    return (a[common] - b[common]).to_numpy(dtype=float)


def verdict_counts(verdicts) -> str:
    """``overfitting 2/3, good fit 1/3``: every verdict with its share, most common first."""
    clean = [str(v) for v in verdicts if isinstance(v, str) and v]
    counts = Counter(clean).most_common()
    return ", ".join(f"{v} {c}/{len(clean)}" for v, c in counts) or "–"


def majority_verdict(verdicts) -> str:
    """The most common verdict (the first seen on ties), or ``not assessed``."""
    clean = [str(v) for v in verdicts if isinstance(v, str) and v]
    return Counter(clean).most_common(1)[0][0] if clean else "not assessed"


def overfits(verdict: str) -> bool:
    return "overfitting" in verdict or "high variance" in verdict


def underfits(verdict: str) -> bool:
    return "underfitting" in verdict or "high bias" in verdict


def mean_std(values) -> str:
    """``0.9712 ± 0.0101`` over seeds (sample std), or the single value."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "–"
    return f"{v.mean():.4f}" if len(v) == 1 else f"{v.mean():.4f} ± {v.std(ddof=1):.4f}"


# --- tests over several arms: one-sided paired t-tests with Holm's correction ------------

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
ALPHA = 0.05  # family-wise error rate of one claim's tests

RULE = (
    "Rule: each arm is compared with the baseline seed by seed (the same split and initial weights); "
    "the table shows the mean per-seed difference and its 95% Student-t interval. A paired two-sided "
    f"t-test per arm, with Holm's correction over every arm of the claim (family-wise {ALPHA:.0%}): "
    "a significant improvement *supports* the claim, a significant change the other way means it is "
    "*not supported*, anything else is *inconclusive* (within seed noise)."
)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison: the interval of the per-seed differences and its t-test."""

    interval: Interval
    p: float  # two-sided, H0: the mean difference is 0


def paired_test(differences) -> PairedTest:
    """A paired t-test on per-seed ``differences`` (positive: an improvement)."""
    v = np.asarray([x for x in differences if np.isfinite(x)], dtype=float)
    if len(v) < 2 or np.all(v == v[0]):
        # No spread: a t-test is undefined, and identical differences say nothing about noise.
        return PairedTest(interval(v), 1.0)
    return PairedTest(interval(v), float(stats.ttest_1samp(v, 0.0).pvalue))


def holm(pvalues: list[float], *, alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise ``alpha``."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        rejected[i] = True
    return rejected


def verdicts(tests: list[PairedTest], *, alpha: float = ALPHA) -> list[str]:
    """The verdict of each arm's test, corrected over all of them (see :data:`RULE`)."""
    rejected = holm([t.p for t in tests], alpha=alpha)
    return [(SUPPORTED if t.interval.mean > 0 else NOT_SUPPORTED) if r else INCONCLUSIVE
            for t, r in zip(tests, rejected, strict=True)]


def holm_adjusted(pvalues: list[float]) -> list[float]:
    """Holm's adjusted p-values: an arm is significant at family-wise ``alpha`` when its value is
    at most ``alpha`` (the same decisions as :func:`holm`)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [1.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def combine(arm_verdicts: list[str], *, every: bool) -> str:
    """One claim's verdict from its arms' verdicts.

    Args:
        arm_verdicts: each arm's :func:`verdicts` word.
        every: the claim is about every arm ("adaptive optimizers are faster than SGD"):
            supported only when every arm is, not supported when any arm is. Otherwise it is
            about some arm ("resampling helps"): supported when any arm is, not supported
            when every arm is.
    """
    if not arm_verdicts:
        return INCONCLUSIVE
    if every:
        if NOT_SUPPORTED in arm_verdicts:
            return NOT_SUPPORTED
        return SUPPORTED if all(v == SUPPORTED for v in arm_verdicts) else INCONCLUSIVE
    if SUPPORTED in arm_verdicts:
        return SUPPORTED
    return NOT_SUPPORTED if all(v == NOT_SUPPORTED for v in arm_verdicts) else INCONCLUSIVE


def rule_note(*, tests: int, split: str, family: str = "tests of this claim", alpha: float = ALPHA) -> str:
    """The rule, its correction and its split, printed under a claim's table.

    Args:
        tests: how many paired tests one Holm family holds.
        split: which split chose and which split assessed (``"chosen on validation, read on
            test"``).
        family: what the family's tests are. Defaults to "tests of this claim".
        alpha: the family-wise error rate. Defaults to :data:`ALPHA`.
    """
    correction = (f"Holm's step-down correction over the {tests} {family} (family-wise {alpha:.0%})"
                  if tests > 1 else f"none (a single test at {alpha:.0%})")
    return (f"*Rule:* paired by seed (a seed fixes the split and the initial weights); mean per-seed "
            "difference ± the half-width of its 95% Student-t interval (n − 1 degrees of freedom); a "
            "two-sided paired t-test per comparison: a significant change in the claimed direction "
            "*supports* it, a significant change the other way means *not supported*, anything else "
            f"is *inconclusive* (within seed noise). *Correction:* {correction}. *Split:* {split}.")
