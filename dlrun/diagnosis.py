"""Diagnosis: is a trained model underfitting, overfitting, or a good fit?

The verdict follows the bias-variance reading taught in every deep-learning course:

* **bias** (underfitting): the training score is far from the best reachable score:
  ``1 - diagnosis.bayes_error`` when given; else the validation score of the reference
  model (:mod:`dlrun.reference`, a classical model fitted on the same training split,
  which estimates what the data allows); else a perfect score;
* **variance** (overfitting): the training score beats the validation score by more than
  ``diagnosis.gap_threshold`` *and* by more than the validation split's own sampling
  noise, or the validation loss climbs well above its minimum while the training loss
  keeps falling (the learning-curve signature early stopping acts on).

Scores are the task's bounded fit metric (accuracy, or R² for regression), measured in
inference mode after training, so dropout does not distort the comparison. Each run gets
one reading; with both high bias and high variance the remedies come in the order that
works: bias first (a network that cannot fit its training data gains nothing from
regularization), then variance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dlrun.config import DiagnosisConfig

# Validation loss this much above its minimum (relative) counts as "rising" ...
_LOSS_RISE = 0.10
# ... when the minimum came at least this many epochs before the end ...
_MIN_EPOCHS_AFTER_MIN = 3
# ... judged on the mean of the last few epochs, so one noisy epoch decides nothing.
_TAIL_EPOCHS = 3
# An accuracy gap must exceed this many standard errors of the validation accuracy:
# on 91 validation rows one example is worth 0.011, and a 0.02 gap is pure chance.
_NOISE_Z = 2.0

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
    "high bias and high variance": [
        "first the bias: use a bigger network or train longer, until the training score nears the reachable one",
        "then the variance: get more data or add regularization (weight penalties, dropout, early stopping)",
    ],
    "not assessed": ["lower the learning rate", "clip gradients (optimizer.clipnorm)"],
}


@dataclass
class Diagnosis:
    verdict: str  # overfitting | underfitting | high bias and high variance | good fit | not assessed
    evidence: list[str]
    remedies: list[str]
    fit_metric: str
    train_score: float
    val_score: float
    gap: float
    best_epoch: int | None = None  # epoch of the lowest validation loss (1-based)
    val_loss_rise_epoch: int | None = None  # the minimum after which validation loss rose
    avoidable_bias: float | None = None  # reachable score minus train score (Bayes error or reference)
    gap_noise: float | None = None  # the smallest gap that is not sampling noise
    reachable_from: str = "perfect score"  # what the reachable score is: Bayes error, reference, perfect

    def to_dict(self) -> dict:
        return asdict(self)


def _val_losses(history: list[dict[str, float]]) -> list[tuple[int, float]]:
    pairs = ((int(r["epoch"]), float(r.get("val_loss", math.nan))) for r in history)
    return [(e, v) for e, v in pairs if math.isfinite(v)]


def best_epoch(history: list[dict[str, float]]) -> int | None:
    """The 1-based epoch with the lowest finite validation loss (the first, on ties), or None."""
    losses = _val_losses(history)
    return min(losses, key=lambda ev: (ev[1], ev[0]))[0] if losses else None


def loss_rise_epoch(history: list[dict[str, float]]) -> int | None:
    """The epoch after which validation loss rose for good, or None if it did not.

    Validation loss "rose" when its minimum came at least 3 epochs before the end and
    the mean of the last 3 epochs is more than 10% above that minimum.

    Args:
        history: per-epoch rows with ``epoch`` and ``val_loss``.

    Returns:
        The epoch of the minimum (the last good epoch), or None.
    """
    losses = _val_losses(history)
    best = best_epoch(history)
    if best is None:
        return None
    v_min = min(v for _, v in losses)
    after = [v for e, v in losses if e > best]
    if len(after) < _MIN_EPOCHS_AFTER_MIN:
        return None
    tail = after[-_TAIL_EPOCHS:]
    return best if sum(tail) / len(tail) > v_min * (1 + _LOSS_RISE) + 1e-12 else None


def gap_noise(val_score: float, n_val: int | None, fit_metric: str) -> float | None:
    """Two standard errors of a validation accuracy measured on ``n_val`` rows.

    Returns None where no binomial error applies (no row count, or a metric that is not
    accuracy, such as R²).
    """
    if not n_val or fit_metric != "accuracy" or not 0 <= val_score <= 1:
        return None
    # Never below half an example's worth: a perfect validation score is still a sample.
    p = min(max(val_score, 0.5 / n_val), 1 - 0.5 / n_val)
    return _NOISE_Z * math.sqrt(p * (1 - p) / n_val)


def _train_loss_falling(history: list[dict[str, float]], since: int) -> bool:
    rows = [r for r in history if r["epoch"] >= since and math.isfinite(r.get("loss", math.nan))]
    return len(rows) >= 2 and rows[-1]["loss"] < rows[0]["loss"]


def _verdict(high_bias: bool, high_variance: bool) -> tuple[str, list[str]]:
    if high_bias and high_variance:
        return "high bias and high variance", list(REMEDIES["high bias and high variance"])
    if high_variance:
        return "overfitting", list(REMEDIES["overfitting"])
    if high_bias:
        return "underfitting", list(REMEDIES["underfitting"])
    return "good fit", list(REMEDIES["good fit"])


def diagnose(
    history: list[dict[str, float]],
    *,
    train_score: float,
    val_score: float,
    fit_metric: str,
    cfg: DiagnosisConfig,
    restored_best: bool = False,
    n_val: int | None = None,
    reference: tuple[str, float] | None = None,
) -> Diagnosis:
    """Name the fit of a trained model and give the evidence and remedies.

    Args:
        history: per-epoch rows with ``epoch``, ``loss`` and ``val_loss``.
        train_score: the fit metric on the training split (inference mode).
        val_score: the fit metric on the validation split.
        fit_metric: its name (``accuracy`` or ``r2``); higher is better, at most 1.
        cfg: thresholds and the optional Bayes error.
        restored_best: early stopping restored the best epoch's weights, so a late
            rise of validation loss no longer describes the final model. Defaults to False.
        n_val: validation rows behind ``val_score`` (all folds together); an accuracy gap
            must then also exceed two standard errors of ``val_score``. Defaults to None
            (the threshold alone decides).
        reference: ``(name, validation fit score)`` of the reference model; without
            ``cfg.bayes_error`` it is the reachable score. Defaults to None (a perfect score).

    Returns:
        A :class:`Diagnosis`.
    """
    best = best_epoch(history)
    if not (math.isfinite(train_score) and math.isfinite(val_score)):
        return Diagnosis("not assessed", ["the scores are not finite (the run diverged)"],
                         list(REMEDIES["not assessed"]), fit_metric, train_score, val_score, math.nan, best)
    gap = train_score - val_score
    noise = gap_noise(val_score, n_val, fit_metric)
    threshold = max(cfg.gap_threshold, noise or 0.0)
    evidence = [_gap_line(fit_metric, train_score, val_score, gap, cfg.gap_threshold, noise, n_val)]
    use_reference = cfg.bayes_error is None and reference is not None and math.isfinite(reference[1])
    if cfg.bayes_error is not None:
        reachable, source = 1.0 - cfg.bayes_error, "Bayes error"
        evidence.append(
            f"train error {1 - train_score:.3f} vs Bayes error {cfg.bayes_error:.3f}: "
            f"avoidable bias {reachable - train_score:+.3f} (threshold {cfg.underfit_threshold:.3f})"
        )
    elif use_reference:
        reachable, source = reference[1], f"reference ({reference[0]})"
        evidence.append(
            f"train {fit_metric} {train_score:.3f} vs {reachable:.3f} for the reference model "
            f"({reference[0]}, same training split) on validation: avoidable bias "
            f"{reachable - train_score:+.3f} (threshold {cfg.underfit_threshold:.3f}; the reference "
            "estimates what this data allows; set diagnosis.bayes_error when the limit is known)"
        )
    else:
        reachable, source = 1.0, "perfect score"
        evidence.append(
            f"train {fit_metric} is {reachable - train_score:.3f} below a perfect score (threshold "
            f"{cfg.underfit_threshold:.3f}; set diagnosis.bayes_error when the best reachable is lower)"
        )
    avoidable = reachable - train_score
    rise = loss_rise_epoch(history)
    curve_overfit = False
    if rise is not None:
        falling = _train_loss_falling(history, rise)
        evidence.append(
            f"validation loss is lowest at epoch {rise} of {len(history)} and rises after it"
            + (" while training loss keeps falling" if falling else "")
        )
        curve_overfit = falling and not restored_best
    elif best is not None:
        evidence.append(f"validation loss is lowest at epoch {best} of {len(history)} and does not rise "
                        f"more than {_LOSS_RISE:.0%} after it")
    if restored_best and best is not None:
        evidence.append(f"early stopping restored the weights of epoch {best}, so the final model "
                        "is the one from before any rise")

    verdict, remedies = _verdict(avoidable > cfg.underfit_threshold, gap > threshold or curve_overfit)
    return Diagnosis(
        verdict, evidence, remedies, fit_metric, train_score, val_score, gap, best, rise,
        avoidable if source != "perfect score" else None, noise, source,
    )


def _gap_line(fit_metric: str, train: float, val: float, gap: float, threshold: float,
              noise: float | None, n_val: int | None) -> str:
    line = (f"train {fit_metric} {train:.3f} vs validation {val:.3f}: gap {gap:+.3f} "
            f"(threshold {threshold:.3f}")
    if noise is not None:
        line += f"; sampling noise on {n_val} validation rows: ±{noise:.3f}"
    return line + ")"
