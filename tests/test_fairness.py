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
@pytest.mark.parametrize("option", ["audit", "threshold"])
def test_an_audit_end_to_end_recovers_the_planted_disparity(dlrun_cli, tmp_path, option):
    done = dlrun_cli(["dataset=credit_synthetic", f"fairness={option}", "trainer.epochs=10",
                      "trainer.progress=none", "hydra.run.dir=run"])
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
    assert (tmp_path / "run" / "fairness.png").is_file() and (tmp_path / "run" / "fairness.md").is_file()


def test_fairness_without_a_sensitive_attribute_is_refused_before_training(cfg_factory):
    from dlrun.config import validate
    from dlrun.errors import ConfigError

    with pytest.raises(ConfigError, match="fairness=audit needs a sensitive attribute"):
        validate(cfg_factory(["fairness=audit"]))
    validate(cfg_factory(["fairness=audit", "dataset=credit_synthetic"]))
