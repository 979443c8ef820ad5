"""Diagnosis: is a trained model underfitting, overfitting, or a good fit?

The verdict follows the bias-variance reading taught in every deep-learning course:

* **bias** (underfitting): the training score is far from the best reachable score
  (``1 - diagnosis.bayes_error`` when given, else a perfect score);
* **variance** (overfitting): the training score beats the validation score by more than
  ``diagnosis.gap_threshold``, or the validation loss climbs well above its minimum while
  the training loss keeps falling.

Scores are the task's bounded fit metric (accuracy, or R² for regression), measured in
inference mode after training, so dropout does not distort the comparison.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

from dlrun.config import DiagnosisConfig

# Validation loss this much above its minimum (relative) counts as "rising".
_LOSS_RISE = 0.10
# ... and only when it happened at least this many epochs before the end.
_MIN_EPOCHS_AFTER_MIN = 3

REMEDIES = {
    "overfitting": [
        "get more training data (or augment it)",
        "add regularization: L2 / L1 weight penalties, dropout, early stopping",
        "use a smaller network (fewer layers or units)",
    ],
    "underfitting": [
        "use a bigger network (more layers or units)",
        "train longer",
        "use a better optimizer or tune its learning rate",
        "reduce regularization",
    ],
    "good fit": ["nothing pressing: confirm on the test split, then try more data for more gains"],
}


@dataclass
class Diagnosis:
    verdict: str  # overfitting | underfitting | underfitting and overfitting | good fit | not assessed
    evidence: list[str]
    remedies: list[str]
    fit_metric: str
    train_score: float
    val_score: float
    gap: float
    best_epoch: Optional[int] = None  # epoch of the lowest validation loss (1-based)
    val_loss_rise_epoch: Optional[int] = None  # first epoch after which validation loss rose
    avoidable_bias: Optional[float] = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def best_epoch(history: list[dict[str, float]]) -> Optional[int]:
    """The 1-based epoch with the lowest finite validation loss, or None."""
    losses = [(r.get("val_loss", math.nan), r["epoch"]) for r in history]
    finite = [(v, e) for v, e in losses if math.isfinite(v)]
    return int(min(finite)[1]) if finite else None


def loss_rise_epoch(history: list[dict[str, float]]) -> Optional[int]:
    """The epoch after which validation loss climbed more than 10% above its minimum."""
    best = best_epoch(history)
    if best is None:
        return None
    rows = [r for r in history if math.isfinite(r.get("val_loss", math.nan))]
    v_min = min(r["val_loss"] for r in rows)
    last = rows[-1]
    after = last["epoch"] - best
    if after >= _MIN_EPOCHS_AFTER_MIN and last["val_loss"] > v_min * (1 + _LOSS_RISE) + 1e-12:
        return best
    return None


def _train_loss_falling(history: list[dict[str, float]], since: int) -> bool:
    rows = [r for r in history if r["epoch"] >= since and math.isfinite(r.get("loss", math.nan))]
    return len(rows) >= 2 and rows[-1]["loss"] < rows[0]["loss"]


def diagnose(
    history: list[dict[str, float]],
    *,
    train_score: float,
    val_score: float,
    fit_metric: str,
    cfg: DiagnosisConfig,
    restored_best: bool = False,
) -> Diagnosis:
    """Name the fit of a trained model and give the evidence and remedies.

    Args:
        history: per-epoch rows with ``epoch``, ``loss`` and ``val_loss``.
        train_score: the fit metric on the training split (inference mode).
        val_score: the fit metric on the validation split.
        fit_metric: its name (``accuracy`` or ``r2``); higher is better, at most 1.
        cfg: thresholds and the optional Bayes error.
        restored_best: early stopping restored the best epoch's weights, so a late
            rise of validation loss no longer describes the final model.

    Returns:
        A :class:`Diagnosis`.
    """
    best = best_epoch(history)
    if not (math.isfinite(train_score) and math.isfinite(val_score)):
        return Diagnosis("not assessed", ["the scores are not finite (the run diverged)"],
                         ["lower the learning rate", "clip gradients (optimizer.clipnorm)"],
                         fit_metric, train_score, val_score, math.nan, best)
    gap = train_score - val_score
    reachable = 1.0 - cfg.bayes_error if cfg.bayes_error is not None else 1.0
    avoidable = reachable - train_score
    rise = loss_rise_epoch(history)
    evidence = [
        f"train {fit_metric} {train_score:.3f} vs validation {val_score:.3f}: gap {gap:+.3f} "
        f"(threshold {cfg.gap_threshold:.3f})",
    ]
    if cfg.bayes_error is not None:
        evidence.append(
            f"train error {1 - train_score:.3f} vs Bayes error {cfg.bayes_error:.3f}: "
            f"avoidable bias {avoidable:+.3f}"
        )
    else:
        evidence.append(f"train {fit_metric} is {avoidable:.3f} below a perfect score")
    curve_overfit = False
    if rise is not None:
        falling = _train_loss_falling(history, rise)
        evidence.append(
            f"validation loss is lowest at epoch {rise} and rises after it"
            + (" while training loss keeps falling" if falling else "")
        )
        curve_overfit = falling and not restored_best
        if restored_best:
            evidence.append(f"early stopping restored the weights of epoch {best}")
    elif best is not None:
        evidence.append(f"validation loss is lowest at epoch {best} of {len(history)}")

    high_variance = gap > cfg.gap_threshold or curve_overfit
    high_bias = avoidable > cfg.underfit_threshold
    if high_bias and high_variance:
        verdict = "underfitting and overfitting"
        remedies = REMEDIES["underfitting"][:2] + REMEDIES["overfitting"][:2]
    elif high_variance:
        verdict, remedies = "overfitting", REMEDIES["overfitting"]
    elif high_bias:
        verdict, remedies = "underfitting", REMEDIES["underfitting"]
    else:
        verdict, remedies = "good fit", REMEDIES["good fit"]
    return Diagnosis(
        verdict, evidence, list(remedies), fit_metric, train_score, val_score, gap, best, rise,
        avoidable if cfg.bayes_error is not None else None,
    )
