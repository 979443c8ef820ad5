"""The diagnosis on hand-made histories: verdicts, the rise epoch, Bayes error, noise."""

from __future__ import annotations

import math

import pytest

from dlrun.config import DiagnosisConfig
from dlrun.diagnosis import REMEDIES, best_epoch, diagnose, gap_noise, loss_rise_epoch


def history(val_losses: list[float], train_losses: list[float] | None = None) -> list[dict[str, float]]:
    """Rows as dlrun.train writes them; training loss falls steadily unless given."""
    train_losses = train_losses or [1.0 / (e + 1) for e in range(len(val_losses))]
    return [{"epoch": e + 1, "loss": t, "val_loss": v}
            for e, (t, v) in enumerate(zip(train_losses, val_losses, strict=True))]


# Validation loss falls to 0.20 at epoch 5, then climbs to 0.40 while training loss falls.
U_SHAPE = history([0.6, 0.4, 0.3, 0.25, 0.20, 0.22, 0.26, 0.30, 0.35, 0.40])
# Validation loss falls all the way.
FALLING = history([0.6, 0.5, 0.4, 0.35, 0.3, 0.28, 0.26, 0.25, 0.24, 0.23])


def run(hist=FALLING, *, train: float, val: float, cfg: DiagnosisConfig | None = None, **kwargs):
    return diagnose(hist, train_score=train, val_score=val, fit_metric="accuracy",
                    cfg=cfg or DiagnosisConfig(), **kwargs)


def test_big_gap_is_overfitting_with_variance_remedies():
    d = run(train=1.00, val=0.90)
    assert d.verdict == "overfitting"
    assert d.gap == pytest.approx(0.10)
    assert d.remedies == REMEDIES["overfitting"]
    assert any("gap +0.100" in e for e in d.evidence)


def test_low_train_score_is_underfitting_with_bias_remedies():
    d = run(train=0.80, val=0.79)
    assert d.verdict == "underfitting"
    assert "use a bigger network (more layers or units)" in d.remedies
    assert "train longer" in d.remedies


def test_close_and_high_scores_are_a_good_fit():
    d = run(train=0.98, val=0.975)
    assert d.verdict == "good fit"
    assert d.remedies == REMEDIES["good fit"]


def test_far_from_perfect_with_a_big_gap_is_both_with_both_gaps_and_bias_remedies_first():
    d = run(train=0.85, val=0.70)
    assert d.verdict == "high bias and high variance"
    assert d.evidence[0].startswith("train accuracy 0.850 vs validation 0.700: gap +0.150")
    assert "0.150 below a perfect score" in d.evidence[1]
    assert d.remedies[0].startswith("first the bias") and d.remedies[1].startswith("then the variance")


def test_rise_epoch_is_the_validation_minimum():
    assert best_epoch(U_SHAPE) == 5
    assert loss_rise_epoch(U_SHAPE) == 5
    assert loss_rise_epoch(FALLING) is None


def test_rising_validation_loss_is_overfitting_even_with_a_small_gap():
    d = run(U_SHAPE, train=0.99, val=0.985)
    assert d.verdict == "overfitting"
    assert d.val_loss_rise_epoch == 5
    assert any("lowest at epoch 5 of 10 and rises after it while training loss keeps falling" in e
               for e in d.evidence)


def test_rise_too_close_to_the_end_or_too_small_is_not_a_rise():
    late = history([0.6, 0.5, 0.4, 0.35, 0.3, 0.28, 0.26, 0.20, 0.30, 0.40])  # minimum 2 epochs before end
    assert loss_rise_epoch(late) is None
    flat = history([0.6, 0.4, 0.3, 0.25, 0.20, 0.21, 0.21, 0.20, 0.21, 0.21])  # +5%: noise
    assert loss_rise_epoch(flat) is None


def test_one_noisy_last_epoch_does_not_make_a_rise():
    # The last epoch is 25% above the minimum, but the mean of the last three only 8%.
    spike = history([0.6, 0.4, 0.3, 0.25, 0.20, 0.20, 0.20, 0.20, 0.20, 0.25])
    assert loss_rise_epoch(spike) is None


def test_rise_while_training_loss_also_rises_is_not_overfitting():
    rising_train = [0.1 * (e + 1) for e in range(10)]  # the whole run is getting worse
    hist = history([0.6, 0.4, 0.3, 0.25, 0.20, 0.22, 0.26, 0.30, 0.35, 0.40], rising_train)
    d = run(hist, train=0.99, val=0.985)
    assert d.val_loss_rise_epoch == 5
    assert d.verdict == "good fit"


def test_restored_best_weights_discount_the_late_rise():
    d = run(U_SHAPE, train=0.99, val=0.985, restored_best=True)
    assert d.verdict == "good fit"
    assert any("restored the weights of epoch 5" in e for e in d.evidence)


def test_bayes_error_moves_the_underfitting_line():
    # 0.85 train accuracy is far from perfect, but close to a 0.12 Bayes error (reachable 0.88).
    cfg = DiagnosisConfig(bayes_error=0.12)
    d = run(train=0.85, val=0.84, cfg=cfg)
    assert d.verdict == "good fit"
    assert d.avoidable_bias == pytest.approx(0.03)
    assert any("Bayes error 0.120" in e for e in d.evidence)
    assert run(train=0.85, val=0.84).verdict == "underfitting"
    assert run(train=0.85, val=0.84).avoidable_bias is None


def test_a_network_near_the_reference_model_is_not_underfitting():
    # UCI Adult with early stopping: train 0.866, validation 0.859; gradient boosting gets 0.870.
    d = run(train=0.866, val=0.859, reference=("histogram gradient boosting", 0.870))
    assert d.verdict == "good fit" and d.reachable_from == "reference (histogram gradient boosting)"
    assert d.avoidable_bias == pytest.approx(0.004)
    assert any("0.870 for the reference model (histogram gradient boosting" in e for e in d.evidence)
    assert run(train=0.866, val=0.859).verdict == "underfitting"  # against a perfect score


def test_a_network_well_below_the_reference_is_underfitting_and_bayes_error_wins():
    assert run(train=0.80, val=0.79, reference=("logistic regression", 0.90)).verdict == "underfitting"
    d = run(train=0.80, val=0.79, reference=("logistic regression", 0.90), cfg=DiagnosisConfig(bayes_error=0.2))
    assert d.verdict == "good fit" and d.reachable_from == "Bayes error"
    nan_reference = run(train=0.80, val=0.79, reference=("logistic regression", math.nan))
    assert nan_reference.reachable_from == "perfect score"


@pytest.mark.parametrize("train, val", [(math.nan, 0.9), (0.9, math.inf), (math.nan, math.nan)])
def test_non_finite_scores_are_not_assessed(train, val):
    d = run(train=train, val=val)
    assert d.verdict == "not assessed"
    assert "lower the learning rate" in d.remedies
    assert math.isnan(d.gap)


def test_non_finite_validation_losses_are_skipped():
    hist = history([0.6, math.nan, 0.3, 0.25, 0.20, 0.22, 0.26, 0.30, math.inf, 0.40])
    assert best_epoch(hist) == 5
    assert best_epoch(history([math.nan, math.nan])) is None
    assert run(history([math.nan, math.nan]), train=0.99, val=0.98).best_epoch is None


def test_gap_within_sampling_noise_of_a_small_validation_set_is_not_overfitting():
    # 3 points of accuracy on 91 rows (about 3 examples) is inside two standard errors.
    assert run(train=1.0, val=0.967).verdict == "overfitting"
    d = run(train=1.0, val=0.967, n_val=91)
    assert d.verdict == "good fit"
    assert d.gap_noise == pytest.approx(2 * math.sqrt(0.967 * 0.033 / 91))
    assert any("sampling noise on 91 validation rows" in e for e in d.evidence)
    # The same gap on 2,000 rows is real.
    assert run(train=1.0, val=0.967, n_val=2000).verdict == "overfitting"


def test_gap_noise_applies_to_accuracy_only_and_never_vanishes():
    assert gap_noise(0.9, None, "accuracy") is None
    assert gap_noise(0.9, 100, "r2") is None
    assert gap_noise(1.0, 100, "accuracy") > 0
    assert gap_noise(0.9, 400, "accuracy") == pytest.approx(gap_noise(0.9, 100, "accuracy") / 2)


def test_to_dict_is_json_ready():
    d = run(U_SHAPE, train=1.0, val=0.9, n_val=100).to_dict()
    assert d["verdict"] == "overfitting"
    assert d["val_loss_rise_epoch"] == 5 and d["best_epoch"] == 5
    assert isinstance(d["evidence"], list)
