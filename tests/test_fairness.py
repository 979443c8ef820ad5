"""Fairness: metrics with known answers, reweighing, the planted bias, an end-to-end audit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlrun.data.credit import generate, planted_disparity
from dlrun.fairness import base_rate_difference, group_metrics, reweighing_weights

# Eight people in two groups: labels and decisions chosen so that every rate is easy by hand.
Y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
PRED = np.array([1, 0, 1, 0, 1, 1, 1, 1])
GROUP = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])


def test_group_metrics_on_a_hand_made_table():
    m = group_metrics(Y, PRED, GROUP)
    a, b = m["by_group"]["a"], m["by_group"]["b"]
    assert (a["count"], b["count"]) == (4, 4)
    assert (a["selection_rate"], b["selection_rate"]) == (0.5, 1.0)
    assert (a["true_positive_rate"], b["true_positive_rate"]) == (0.5, 1.0)
    assert (a["false_positive_rate"], b["false_positive_rate"]) == (0.5, 1.0)
    assert (a["precision"], b["precision"]) == (0.5, 0.5)
    assert (a["accuracy"], b["accuracy"]) == (0.5, 0.5)
    assert m["demographic_parity_difference"] == pytest.approx(0.5)
    assert m["demographic_parity_ratio"] == pytest.approx(0.5) and m["four_fifths_rule"] is False
    assert m["equalized_odds_difference"] == pytest.approx(0.5)  # max of the TPR and FPR gaps
    assert m["equal_opportunity_difference"] == pytest.approx(0.5)
    assert "mean_score_difference" not in m
    scored = group_metrics(Y, PRED, GROUP, scores=np.array([0.9, 0.1, 0.6, 0.2, 0.8, 0.7, 0.6, 0.9]))
    assert scored["by_group"]["a"]["mean_score"] == pytest.approx(0.45)
    assert scored["mean_score_difference"] == pytest.approx(0.3)


def test_reweighing_makes_group_and_label_independent():
    rng = np.random.default_rng(0)
    group = np.where(rng.random(2000) < 0.3, "b", "a")
    y = (rng.random(2000) < np.where(group == "b", 0.2, 0.6)).astype(int)
    w = reweighing_weights(y, group)
    rates = [np.average(y[group == g], weights=w[group == g]) for g in ("a", "b")]
    assert rates[0] == pytest.approx(rates[1]) == pytest.approx(y.mean())
    assert np.sum(w) == pytest.approx(len(y))  # the total weight is kept
    assert base_rate_difference(y, group) > 0.3


def test_the_generated_credit_data_carries_the_planted_bias_and_proxy():
    planted = planted_disparity(share_b=0.4, label_bias=1.0, proxy_strength=0.8)
    frame = generate(6000, share_b=0.4, label_bias=1.0, proxy_strength=0.8, seed=7)
    rates = frame.groupby("group")["granted"].mean()
    n = frame["group"].value_counts()
    se = np.sqrt(sum(rates[g] * (1 - rates[g]) / n[g] for g in ("A", "B")))
    assert abs((rates["A"] - rates["B"]) - planted) < 3 * se
    assert planted > 0.1
    assert abs(np.corrcoef(frame["neighbourhood_score"], frame["group"] == "B")[0, 1]) > 0.4
    unbiased = planted_disparity(share_b=0.4, label_bias=0.0, proxy_strength=0.8)
    assert abs(unbiased) < 0.005  # no label bias: no disparity, whatever the proxy


@pytest.mark.slow
@pytest.mark.parametrize("option", ["audit", "threshold", "reweighing"])
def test_an_audit_end_to_end_recovers_the_planted_disparity(dlrun_cli, tmp_path, option):
    done = dlrun_cli(["dataset=credit_synthetic", "dataset.credit.rows=6000", f"fairness={option}", "trainer.epochs=5",
                      "diagnosis.reference=none", "trainer.progress=none", "hydra.run.dir=run"])
    assert done.returncode == 0, done.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    fairness = m["fairness"]
    planted = planted_disparity(share_b=0.4, label_bias=1.0, proxy_strength=0.8)
    n = m["sizes"]["train"]
    assert abs(fairness["train_base_rate_difference"] - planted) < 3 * np.sqrt(0.25 / (0.4 * n) + 0.25 / (0.6 * n))
    assert m["inputs"]["kept_aside"] == "group" and "group" not in m["inputs"]["columns"]
    assert set(fairness["test"]["by_group"]) == {"A", "B"}
    if option == "threshold":
        assert fairness["val"]["demographic_parity_difference"] < 0.05  # what it was fitted to remove
    if option == "reweighing":  # the training part the network was fitted on carried the weights
        assert fairness["weighted_train_base_rate_difference"] == pytest.approx(0, abs=1e-9)
        linear = fairness["linear_reference"]
        assert linear["split"] == "test" and linear["reweighed"] < linear["unweighted"]
    assert (tmp_path / "run" / "fairness.png").is_file() and (tmp_path / "run" / "fairness.md").is_file()


def test_fairness_without_a_sensitive_attribute_is_refused_before_training(cfg_factory):
    from dlrun.config import validate
    from dlrun.errors import ConfigError

    with pytest.raises(ConfigError, match="fairness=audit needs a sensitive attribute"):
        validate(cfg_factory(["fairness=audit"]))
    validate(cfg_factory(["fairness=audit", "dataset=credit_synthetic"]))


def _credit_splits(n: int = 20000, *, label_bias: float = 1.0):
    """credit_synthetic rows as standardized model inputs, the group aside (every part the same rows)."""
    from dlrun.data.table import Part, Splits

    frame = generate(n, share_b=0.4, label_bias=label_bias, proxy_strength=0.8, seed=3)
    group, y = frame.pop("group").to_numpy(), frame.pop("granted").to_numpy()
    x = ((frame - frame.mean()) / frame.std()).to_numpy(dtype=np.float32)
    part = Part(x, y, group=group)
    return Splits(part, part, part, task="binary", class_names=["denied", "granted"], feature_names=list(frame))


def test_reweighing_weights_become_the_training_loss_weights():
    from dlrun.fairness import Fairness
    from dlrun.train import row_weights

    splits = _credit_splits(2000)
    prepared = Fairness("reweighing", constraint="demographic_parity", seed=0).prepare(splits, None)
    expected = reweighing_weights(splits.train.y, splits.train.group)
    np.testing.assert_allclose(row_weights(prepared), expected)  # what both training loops weigh the loss by
    assert prepared.test is splits.test
    assert len(np.unique(expected)) == 4  # one weight per (group, label) cell, none of them 1


def test_reweighing_weighs_the_validation_loss_that_early_stopping_watches():
    from dlrun import stages
    from dlrun.fairness import Fairness
    from dlrun.task import task_spec
    from dlrun.train import epoch_scorer

    splits = _credit_splits(2000)
    cap = Fairness("reweighing", constraint="demographic_parity", seed=0)
    prepared = stages.prepare(splits, [cap], None)  # the validation rows are the same; only weighed
    val = prepared.val
    assert val.x is splits.val.x and val.y is splits.val.y and val.group is splits.val.group
    y, group = val.y.astype(int), val.group
    rates = [np.average(y[group == g], weights=val.weight[group == g]) for g in np.unique(group)]
    assert abs(rates[0] - rates[1]) < 1e-12 and abs(np.mean(y[group == "A"]) - np.mean(y[group == "B"])) > 0.1

    spec = task_spec("binary", 2, prepared.train.y)
    pred = np.where(group == "A", 0.8, 0.3).astype(np.float32)  # a score that follows the group
    p_true = np.where(y == 1, pred, 1 - pred)
    assert epoch_scorer(prepared, spec)(pred)["val_loss"] == pytest.approx(-np.average(np.log(p_true), weights=val.weight))
    assert epoch_scorer(splits, spec)(pred)["val_loss"] == pytest.approx(-np.mean(np.log(p_true)))


@pytest.mark.parametrize("loop", ["fast", "fit"])
def test_reweighing_weights_reach_the_loss_of_both_training_loops(loop):
    """The group is the only input and it decides the base rate (0.8 against 0.2): fitted to
    the reweighed rows, a network scores both groups alike, at the overall base rate."""
    import keras

    from dlrun.data.table import Part, Splits
    from dlrun.fairness import Fairness
    from dlrun.task import task_spec
    from dlrun.train import predict, train

    rng = np.random.default_rng(0)
    group = np.where(np.arange(1000) % 2 == 0, "a", "b")
    y = (rng.random(1000) < np.where(group == "a", 0.8, 0.2)).astype(np.int64)
    part = Part((group == "b").astype(np.float32).reshape(-1, 1), y, group=group)
    splits = Splits(part, part, part, task="binary", class_names=["no", "yes"], feature_names=["is_b"])
    prepared = Fairness("reweighing", constraint="demographic_parity", seed=0).prepare(splits, None)
    spec = task_spec("binary", 2, y)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    train(model, prepared, spec, optimizer=keras.optimizers.Adam(0.1), epochs=15, batch_size=100, callbacks=[],
          loop=loop)
    scores = predict(model, np.array([[0.0], [1.0]], dtype=np.float32)).reshape(-1)
    assert base_rate_difference(y, group) > 0.5  # unweighted, the loss would fit the two base rates
    assert scores == pytest.approx([y.mean()] * 2, abs=0.05)


def test_reweighing_leaves_a_conditional_group_effect_that_a_proxy_can_carry():
    from dlrun.fairness import _conditional_group_effect, base_rate_standard_error

    effect = _conditional_group_effect(_credit_splits())
    # Unweighted, the group's logit coefficient is the planted penalty; reweighing removes only the
    # marginal log odds ratio (smaller: logistic odds ratios shrink when marginalized), not all of it.
    assert effect["group"] == "B" and effect["before"] == pytest.approx(-1.0, abs=0.1)
    assert -0.6 < effect["after"] < -0.15
    assert _conditional_group_effect(_credit_splits(label_bias=0.0))["after"] == pytest.approx(0, abs=0.1)
    y, group = np.array([1, 0, 1, 1, 0, 0]), np.array(list("aaabbb"))
    assert base_rate_standard_error(y, group) == pytest.approx(np.sqrt(2 * (2 / 3) * (1 / 3) / 3))
