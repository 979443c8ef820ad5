"""The statistics every study shares: paired t intervals, Holm's correction, verdicts."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from dlrun.report.claims.stats import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    holm,
    interval,
    paired_test,
    verdicts,
)


def test_the_interval_is_a_student_t_interval_with_n_minus_1_degrees_of_freedom():
    diffs = [0.010, 0.030, 0.020, 0.045, 0.015]  # mean 0.024, sample sd 0.01387
    ci = interval(diffs)
    sd = math.sqrt(sum((d - 0.024) ** 2 for d in diffs) / 4)
    assert ci.n == 5 and ci.mean == pytest.approx(0.024)
    assert ci.half == pytest.approx(sps.t.ppf(0.975, 4) * sd / math.sqrt(5))
    assert ci.half == pytest.approx(2.7764 * 0.013874 / math.sqrt(5), rel=1e-3)  # t(0.975, 4) = 2.776, not z = 1.96


def test_the_paired_test_is_two_sided_on_the_differences():
    diffs = [0.02, -0.01, 0.03, 0.015]
    assert paired_test(diffs).p == pytest.approx(sps.ttest_1samp(diffs, 0.0).pvalue)
    assert paired_test([0.01, 0.01, 0.01]).p == 1.0  # no spread: nothing to test against
    assert paired_test([0.3]).p == 1.0


def test_holm_steps_down_and_stops_at_the_first_kept_hypothesis():
    # alpha/3 = 0.0167, alpha/2 = 0.025, alpha/1 = 0.05
    assert holm([0.010, 0.020, 0.040]) == [True, True, True]
    assert holm([0.010, 0.030, 0.040]) == [True, False, False]  # 0.030 > 0.025: stop
    assert holm([0.030, 0.001, 0.026]) == [False, True, False]  # second smallest 0.026 > 0.025
    assert holm([0.04]) == [True]


def test_verdicts_follow_the_direction_of_significant_arms_only():
    up = [0.05, 0.06, 0.055, 0.052, 0.058, 0.061]
    down = [-d for d in up]
    noise = [0.02, -0.03, 0.01, -0.01, 0.025, -0.02]
    tests = [paired_test(d) for d in (up, down, noise)]
    assert verdicts(tests) == [SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE]


def test_a_correction_can_turn_a_lone_significant_arm_inconclusive():
    # p about 0.03 alone is significant, but not against alpha/2 once a second arm is tested
    diffs = [0.02, 0.05, 0.01, 0.04, 0.03, -0.005]
    alone = paired_test(diffs)
    assert 0.025 < alone.p < 0.05
    assert verdicts([alone]) == [SUPPORTED]
    assert verdicts([alone, paired_test([0.1, -0.1, 0.05, -0.05])]) == [INCONCLUSIVE, INCONCLUSIVE]


def test_holm_adjusted_p_values_give_the_same_decisions_as_holm():
    from dlrun.report.claims.stats import holm_adjusted

    ps = [0.030, 0.001, 0.026, 0.2]
    adjusted = holm_adjusted(ps)
    assert adjusted == pytest.approx([0.078, 0.004, 0.078, 0.2])  # 3 x 0.026 carries up to 0.030's
    assert [a <= 0.05 for a in adjusted] == holm(ps)


def test_combining_arms_for_claims_about_every_arm_or_some_arm():
    from dlrun.report.claims.stats import combine

    assert combine([SUPPORTED, SUPPORTED], every=True) == SUPPORTED
    assert combine([SUPPORTED, INCONCLUSIVE], every=True) == INCONCLUSIVE
    assert combine([SUPPORTED, NOT_SUPPORTED], every=True) == NOT_SUPPORTED
    assert combine([SUPPORTED, NOT_SUPPORTED], every=False) == SUPPORTED
    assert combine([NOT_SUPPORTED, NOT_SUPPORTED], every=False) == NOT_SUPPORTED
    assert combine([], every=False) == INCONCLUSIVE


def test_paired_differences_match_on_the_seed():
    import pandas as pd

    from dlrun.report.claims.stats import paired, paired_differences

    runs = pd.DataFrame({"reg": ["none", "none", "none", "l2", "l2"], "seed": [0, 1, 2, 2, 0],
                         "score": [0.90, 0.80, 0.70, 0.75, 0.93]})
    diffs = paired_differences(runs, key="reg", value="l2", baseline="none", column="score")
    assert list(diffs) == pytest.approx([0.03, 0.05])  # seeds 0 and 2; seed 1 has no pair
    ci = paired(runs, key="reg", value="l2", baseline="none", column="score")
    assert (ci.n, ci.mean) == (2, pytest.approx(0.04))
    assert ci.half == pytest.approx(sps.t.ppf(0.975, 1) * sps.tstd([0.03, 0.05]) / math.sqrt(2))  # 1 df: 12.7
