"""``credit_synthetic``: credit decisions generated offline, with a bias planted on purpose.

Each applicant has a group (``A`` or ``B``, the sensitive attribute; ``B`` is
``credit.share_b`` of the rows) and five features: income, debt ratio, years employed, age
and a neighbourhood score. The label (1: credit granted) follows a logistic model of the
legitimate features, **minus ``credit.label_bias`` on the logit for group B**: the
historical decisions the data records were biased against B, so its base rate is lower
for applicants who are otherwise alike. The neighbourhood score is a **proxy**: it carries
no information about repayment, but it is correlated with the group (``credit.proxy_strength``),
so a model that never sees the group can still learn the bias through it.

:func:`planted_disparity` is the population difference in base rates (A minus B) the
generator produces, computed on a million rows: an audit of the training data should
recover it within its sampling error. The table's notes carry it
(``documented_base_rate_difference``) so that the audit reports the two side by side.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from dlrun.config import DatasetConfig
from dlrun.data.table import Table
from dlrun.errors import ConfigError

# Coefficients of the legitimate features in the label's logit (standardized features).
_WEIGHTS = {"income": 1.2, "debt_ratio": -1.0, "years_employed": 0.6, "age": 0.2}
_INTERCEPT = 0.4
_POPULATION = 1_000_000  # rows behind planted_disparity
_POPULATION_SEED = 12345


def generate(n: int, *, share_b: float, label_bias: float, proxy_strength: float, seed: int) -> pd.DataFrame:
    """``n`` applicants: five features, ``group`` and ``granted`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(n) < share_b, "B", "A")
    is_b = (group == "B").astype(float)
    income = rng.normal(size=n)
    debt = rng.normal(size=n)
    years = rng.normal(size=n)
    age = rng.normal(size=n)
    # corr(neighbourhood, B) grows with proxy_strength; the score itself never enters the label.
    neighbourhood = proxy_strength * (is_b - share_b) / np.sqrt(share_b * (1 - share_b)) + rng.normal(size=n)
    logit = (_INTERCEPT + _WEIGHTS["income"] * income + _WEIGHTS["debt_ratio"] * debt
             + _WEIGHTS["years_employed"] * years + _WEIGHTS["age"] * age - label_bias * is_b)
    granted = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "income": 40_000 + 12_000 * income, "debt_ratio": 0.35 + 0.1 * debt,
        "years_employed": np.clip(6 + 4 * years, 0, None).round(1), "age": np.clip(40 + 11 * age, 18, 90).round(),
        "neighbourhood_score": 50 + 10 * neighbourhood, "group": group, "granted": granted,
    })


@functools.cache
def planted_disparity(*, share_b: float, label_bias: float, proxy_strength: float) -> float:
    """The population base-rate difference P(granted | A) - P(granted | B) of the generator."""
    frame = generate(_POPULATION, share_b=share_b, label_bias=label_bias, proxy_strength=proxy_strength,
                     seed=_POPULATION_SEED)
    rates = frame.groupby("group")["granted"].mean()
    return float(rates["A"] - rates["B"])


def load(cfg: DatasetConfig) -> Table:
    """Generate the table (seeded by ``credit.data_seed``, so every run sees the same data).

    Raises:
        ConfigError: parameters outside their range.
    """
    c = cfg.credit
    if c.rows < 100:
        raise ConfigError(f"dataset.credit.rows must be at least 100, got {c.rows}")
    if not 0 < c.share_b < 1:
        raise ConfigError(f"dataset.credit.share_b must be in (0, 1), got {c.share_b}")
    frame = generate(c.rows, share_b=c.share_b, label_bias=c.label_bias, proxy_strength=c.proxy_strength,
                     seed=c.data_seed)
    y = frame.pop("granted").to_numpy(dtype=np.int64)
    group = frame.pop("group") if not cfg.sensitive_as_feature else frame["group"]
    if cfg.sensitive is not None and cfg.sensitive != "group":
        raise ConfigError(f"dataset.sensitive={cfg.sensitive!r}: credit_synthetic's attribute is 'group'")
    planted = planted_disparity(share_b=c.share_b, label_bias=c.label_bias, proxy_strength=c.proxy_strength)
    notes = {"documented_base_rate_difference": {
        "value": round(planted, 4), "source": f"planted: the generator's population gap at label_bias={c.label_bias}"}}
    return Table(name="credit_synthetic", x=frame, y=y, task="binary", class_names=["denied", "granted"],
                 sensitive=group.astype(str).to_numpy() if cfg.sensitive else None, notes=notes)
