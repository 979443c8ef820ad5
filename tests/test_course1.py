"""Course 1: the capacity and regularization presets compose, and their claim checks read
hand-made runs honestly: choices on validation, verdicts on test, paired t intervals with
the asserted half-width and degrees of freedom, Holm's correction over the arms."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy import stats as sps

from dlrun.paths import config_dir
from dlrun.report.claims import capacity, check_claim, regularization
from tests.conftest import compose_config

REGS = ("none", "l1", "l2", "l1_l2", "dropout", "early_stopping", "combined")


def sweep_params(preset: str) -> dict[str, list[str]]:
    cfg = compose_config([f"experiment={preset}"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    return {k: [v.strip() for v in str(v).split(",")] for k, v in cfg.hydra.sweeper.params.items()}


def test_capacity_preset_sweeps_depth_and_width_over_three_seeds():
    params = sweep_params("capacity")
    assert len(params["model.depth"]) >= 2 and len(params["model.width"]) >= 3
    assert min(int(w) for w in params["model.width"]) <= 2  # a tiny network shows the small end
    assert len(params["seed"]) >= 3
    cfg = compose_config(["experiment=capacity"])
    assert cfg.study.kind == "capacity" and cfg.study.claim
    assert (cfg.dataset.name, cfg.model.name, cfg.reg.name) == ("breast_cancer", "mlp", "none")


def test_regularization_preset_sweeps_every_reg_option_against_none():
    params = sweep_params("regularization")
    assert sorted(params["reg"]) == sorted(REGS)
    assert len(params["seed"]) >= 3
    cfg = compose_config(["experiment=regularization"])
    assert cfg.study.kind == "regularization" and cfg.study.baseline == "none" and cfg.study.claim
    assert cfg.dataset.name == "breast_cancer" and cfg.reg.name == "none"


def test_every_swept_reg_option_is_a_config():
    shipped = {p.stem for p in (config_dir() / "reg").glob("*.yaml")}
    assert set(REGS) <= shipped
    for name in REGS:
        reg = OmegaConf.load(config_dir() / "reg" / f"{name}.yaml")
        assert reg.name == name


# ----------------------------------------------------------------------------- hand-made runs


def make_runs(tmp_path: Path, rows: list[dict]) -> pd.DataFrame:
    """A runs frame as dlrun.report.runs.collect_runs returns it, with run folders holding the
    metrics.json fields the checks read (train/val/test headline and loss)."""
    out = []
    for i, r in enumerate(rows):
        run_dir = tmp_path / "runs" / str(i)
        run_dir.mkdir(parents=True)
        r = {"test_score": r["val_score"], "test_gap": r["gap"], **r}
        metrics = {
            "status": "ok", "headline": "roc_auc",
            "train": {"roc_auc": r.get("train_head", 1.0), "loss": r.get("train_loss", 0.01)},
            "val": {"roc_auc": r["val_score"], "loss": r.get("val_loss", 0.1)},
            "test": {"roc_auc": r["test_score"], "loss": r.get("test_loss", r.get("val_loss", 0.1))},
            "sizes": {"train": 227, "val": 228, "test": 114},
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        row = {"status": "ok", "headline": "roc_auc", "fit_metric": "accuracy", "greater_is_better": True,
               "run_dir": str(run_dir), "val_fit": r["train_fit"] - r["gap"],
               "test_fit": r["train_fit"] - r["test_gap"], **r}
        out.append({k: v for k, v in row.items()
                    if k not in ("train_head", "train_loss", "val_loss", "test_loss", "test_gap")})
    return pd.DataFrame(out)


def half_width(diffs) -> float:
    d = np.asarray(diffs, dtype=float)
    return float(sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))


def reg_rows(reg: str, test_gaps, test_scores, verdict: str, *, gaps=None, vals=None) -> list[dict]:
    """Five seeds (or as many as given) of one regularizer; validation equals test unless given."""
    gaps = test_gaps if gaps is None else gaps
    vals = test_scores if vals is None else vals
    return [{"reg": reg, "seed": s, "gap": g, "val_score": v, "test_gap": tg, "test_score": ts, "train_fit": 1.0,
             "verdict": verdict, "params": 37000}
            for s, (g, v, tg, ts) in enumerate(zip(gaps, vals, test_gaps, test_scores, strict=True))]


def run_reg(tmp_path, rows, **study):
    runs = make_runs(tmp_path, rows)
    lines = regularization.check(runs=runs, groups=pd.DataFrame(), keys=["reg"],
                                 study={"baseline": "none", **study}, out_dir=tmp_path)
    return "\n".join(lines)


def row_of(text: str, first: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {first} |"))


BASE_GAPS = [0.060, 0.050, 0.070, 0.040, 0.065]
BASE_SCORES = [0.990, 0.985, 0.992, 0.988, 0.991]
BASE = reg_rows("none", BASE_GAPS, BASE_SCORES, "overfitting")
SHRINK = [0.030, 0.025, 0.035, 0.030, 0.020]  # how much l2 shrinks the test gap, seed by seed


def test_regularization_supported_when_a_regularizer_shrinks_the_test_gap_beyond_noise(tmp_path):
    rows = BASE + reg_rows("l2", np.subtract(BASE_GAPS, SHRINK), np.add(BASE_SCORES, [.001, 0, -.001, .002, 0]),
                           "good fit") \
        + reg_rows("dropout", np.add(BASE_GAPS, [.01, -.01, .005, -.005, 0]), BASE_SCORES, "overfitting")
    text = run_reg(tmp_path, rows, claim="regularization shrinks the gap")
    assert "> regularization shrinks the gap" in text
    assert "**Supported** for 1 of 2 regularizers" in text
    assert "reg=l2 shrinks the test accuracy gap beyond seed noise" in text
    assert "reg=dropout stays within seed noise of the baseline (inconclusive)" in text
    assert "*overfitting* (overfitting 5/5)" in text
    l2 = row_of(text, "l2")
    # paired Δgap on test, signed so that + is a smaller gap, with a t interval on 4 degrees of freedom
    assert f"+{np.mean(SHRINK):.4f} ± {half_width(SHRINK):.4f} (supported)" in l2
    assert half_width(SHRINK) == pytest.approx(2.7764 * np.std(SHRINK, ddof=1) / math.sqrt(5), rel=1e-3)
    assert "good fit 5/5" in l2 and l2.endswith("| **supported** |")
    assert "Holm's step-down correction over the 2 regularizers" in text and "claim read on test" in text
    assert (tmp_path / "regularization.png").stat().st_size > 0


def test_holm_keeps_a_lone_significant_regularizer_from_supporting_the_claim(tmp_path):
    # l1's test gap shrinks with p about 0.03: significant alone, not against 0.05/6
    shrink = [0.02, 0.05, 0.01, 0.04, 0.03]
    assert 0.05 / 6 < sps.ttest_1samp(shrink, 0.0).pvalue < 0.05
    rows = BASE + reg_rows("l1", np.subtract(BASE_GAPS, shrink), BASE_SCORES, "good fit")
    for i, reg in enumerate(("l2", "l1_l2", "dropout", "early_stopping", "combined")):
        noise = np.roll([0.01, -0.012, 0.004, -0.006, 0.003], i)
        rows += reg_rows(reg, np.add(BASE_GAPS, noise), BASE_SCORES, "overfitting")
    text = run_reg(tmp_path, rows)
    l1 = row_of(text, "l1")
    assert f"+{np.mean(shrink):.4f} ± {half_width(shrink):.4f} (inconclusive)" in l1
    assert np.mean(shrink) - half_width(shrink) > 0  # the interval alone excludes zero: the old rule said "real"
    assert "**Inconclusive** for 0 of 6 regularizers" in text
    assert "Holm's step-down correction over the 6 regularizers" in text


def test_a_validation_gain_that_does_not_reach_test_is_not_a_verdict(tmp_path):
    # early stopping looks better on validation (it chose its epoch there) but not on test
    val_gain = [0.004, 0.005, 0.003, 0.006, 0.004]
    rows = BASE + reg_rows("early_stopping", np.add(BASE_GAPS, [.004, -.003, .002, -.002, 0]),
                           np.add(BASE_SCORES, [.002, -.003, .001, -.001, .002]), "overfitting",
                           gaps=np.subtract(BASE_GAPS, 0.02), vals=np.add(BASE_SCORES, val_gain))
    text = run_reg(tmp_path, rows)
    es = row_of(text, "early_stopping")
    assert f"+{np.mean(val_gain):.4f} ± {half_width(val_gain):.4f}" in es  # validation Δscore, shown
    assert es.endswith("| **inconclusive** |")
    assert "**Chosen on validation:** reg=early_stopping has the best mean validation roc_auc" in text
    assert "within seed noise." in text.split("**Chosen on validation:**")[1].split("\n")[0]


def test_regularization_that_costs_test_score_does_not_support_the_claim(tmp_path):
    rows = BASE + reg_rows("l1", np.subtract(BASE_GAPS, SHRINK), np.subtract(BASE_SCORES, [.04, .035, .042, .038, .04]),
                           "underfitting")
    text = run_reg(tmp_path, rows)
    assert "**Not supported** for 0 of 1 regularizers" in text
    assert "reg=l1 widens the gap or loses test score beyond noise (not supported)" in text
    assert row_of(text, "l1").endswith("| **not supported** |")


def test_regularization_is_not_testable_when_the_baseline_does_not_overfit(tmp_path):
    rows = reg_rows("none", [0.0, 0.01, 0.0], [0.99] * 3, "good fit") \
        + reg_rows("l2", [0.0, 0.0, 0.0], [0.99] * 3, "good fit")
    text = run_reg(tmp_path, rows)
    assert "**Inconclusive** (not testable on these numbers)" in text and "*good fit*" in text


def test_regularization_without_the_baseline_says_so(tmp_path):
    text = run_reg(tmp_path, reg_rows("l2", [0.0] * 3, [0.99] * 3, "good fit"))
    assert "Not checked" in text and "reg=none" in text


def cap_rows(width: int, params: int, train: float, vals, tests, verdict: str, *, val_losses=None,
             test_losses=None) -> list[dict]:
    val_losses = val_losses or [0.1] * len(vals)
    test_losses = test_losses or val_losses
    return [{"model.width": str(width), "seed": s, "params": params, "train_fit": train,
             "gap": train - (v - 0.005), "test_gap": train - (t - 0.005), "val_score": v, "test_score": t,
             "val_loss": vl, "test_loss": tl, "verdict": verdict}
            for s, (v, t, vl, tl) in enumerate(zip(vals, tests, val_losses, test_losses, strict=True))]


def run_cap(tmp_path, rows):
    runs = make_runs(tmp_path, rows)
    return "\n".join(capacity.check(runs=runs, groups=pd.DataFrame(), keys=["model.width"],
                                    study={}, out_dir=tmp_path))


SEEDS = np.array([0.95, 0.99, 0.97, 0.96, 0.98])  # a per-seed difficulty every network shares
TINY = SEEDS - 0.08 + np.array([0.01, -0.01, 0.005, 0.0, -0.005])


def test_capacity_supported_rise_then_plateau_on_test(tmp_path):
    rows = (cap_rows(1, 34, 0.90, TINY, TINY, "underfitting")
            + cap_rows(64, 6000, 1.00, SEEDS + 0.004, SEEDS + 0.003, "good fit")
            + cap_rows(256, 70000, 1.00, SEEDS + [0.003, 0.002, 0.005, 0.001, 0.004],
                       SEEDS + [0.004, 0.001, 0.006, 0.0, 0.003], "overfitting"))
    text = run_cap(tmp_path, rows)
    rise = SEEDS + 0.003 - TINY
    assert text.split("\n")[4].startswith(
        f"**Supported**: the test roc_auc of the best network on validation (model.width=64, 6,000 parameters) "
        f"minus the smallest's is +{rise.mean():.4f} ± {half_width(rise):.4f} (higher beyond seed noise)")
    assert "it stays within seed noise (a plateau)" in text
    assert "The largest network is diagnosed *overfitting* (the overfitting side is reached)." in text
    assert "underfitting up to model.width=1, 34 parameters" in text
    assert "overfitting from model.width=256, 70,000 parameters" in text
    assert "Holm's step-down correction over the 2 comparisons of the claim" in text
    rows_order = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| model.width=")]
    assert rows_order == ["model.width=1", "model.width=64 (best on validation, kept)", "model.width=256"]
    assert (tmp_path / "capacity.png").stat().st_size > 0


def test_the_kept_network_needs_a_paired_interval_close_to_the_best(tmp_path):
    # width 4 is 0.003 below the best on average but noisy: within one standard error of the
    # best (the old rule keeps it), yet its paired interval reaches below -1% of the best score.
    # Width 16 is 0.001 below on every seed, give or take 0.0005: adequate, so it is kept.
    best = SEEDS + 0.004
    noisy = best - 0.003 + np.array([0.012, -0.010, 0.008, -0.011, 0.001])
    close = best - 0.001 + np.array([0.0005, -0.0005, 0.0, 0.0003, -0.0003])
    rows = (cap_rows(1, 34, 0.90, TINY, TINY, "underfitting")
            + cap_rows(4, 129, 0.97, noisy, noisy, "good fit")
            + cap_rows(16, 1000, 0.99, close, best + [0.001, -0.001, 0.0005, -0.0005, 0.0], "good fit")
            + cap_rows(64, 6000, 1.00, best, best, "good fit")
            + cap_rows(256, 70000, 1.00, best - [0.001, 0.0, 0.002, 0.001, 0.0], best, "overfitting"))
    assert best.mean() - noisy.mean() < best.std(ddof=1) / math.sqrt(5)  # one standard error keeps width 4
    diffs = noisy - best
    margin = 0.01 * best.mean()
    assert diffs.mean() - half_width(diffs) < -margin  # its 95% interval reaches below the tolerance
    text = run_cap(tmp_path, rows)
    assert (f"keep model.width=16, 1,000 parameters: the smallest network whose validation roc_auc is, with 95% "
            f"confidence, at most {margin:.4f} (1% of the best's) below the best's") in text
    assert "3 of 5 networks are adequate" in text  # widths 16, 64 and 256
    assert "0 of the 2 larger networks beat it beyond seed noise (Holm over 2)" in text


def test_capacity_fall_beyond_noise_on_test(tmp_path):
    rows = (cap_rows(1, 34, 0.90, TINY, TINY, "underfitting")
            + cap_rows(64, 6000, 1.00, SEEDS + 0.004, SEEDS + 0.004, "good fit")
            + cap_rows(256, 70000, 1.00, SEEDS - 0.03 + [0.003, -0.002, 0.001, 0.0, -0.001],
                       SEEDS - 0.03 + [0.002, -0.003, 0.0, 0.001, -0.002], "overfitting"))
    text = run_cap(tmp_path, rows)
    assert "**Supported**" in text and "it falls beyond seed noise" in text


def test_a_rise_seen_only_on_validation_is_inconclusive(tmp_path):
    noise = np.array([0.01, -0.012, 0.004, -0.006, 0.003])
    rows = (cap_rows(1, 34, 0.95, SEEDS - 0.02, SEEDS, "underfitting")
            + cap_rows(64, 6000, 1.00, SEEDS, SEEDS + noise, "good fit")
            + cap_rows(256, 70000, 1.00, SEEDS - 0.001, SEEDS - noise, "overfitting"))
    text = run_cap(tmp_path, rows)
    assert text.split("\n")[4].startswith("**Inconclusive**: the test roc_auc of the best network")
    assert "(within seed noise)" in text.split("\n")[4]


def test_capacity_still_rising_at_the_largest_network_is_inconclusive(tmp_path):
    rows = (cap_rows(1, 34, 0.90, TINY, TINY, "underfitting")
            + cap_rows(64, 6000, 0.99, SEEDS, SEEDS, "good fit"))
    text = run_cap(tmp_path, rows)
    assert "**Inconclusive**" in text and "widen the range upward" in text


def test_an_unregistered_study_kind_is_refused(tmp_path):
    from dlrun.errors import ConfigError

    with pytest.raises(ConfigError, match="study.kind='no_such_kind' has no claim check"):
        check_claim("no_such_kind", runs=pd.DataFrame(), groups=pd.DataFrame(), keys=[], study={},
                    out_dir=tmp_path)


@pytest.mark.parametrize("kind", ["capacity", "regularization"])
def test_claim_kinds_are_registered(kind, tmp_path):
    runs = make_runs(tmp_path, reg_rows("none", [0.0], [0.99], "good fit"))
    assert check_claim(kind, runs=runs.iloc[0:0], groups=pd.DataFrame(), keys=[], study={},
                       out_dir=tmp_path)[0] == "## Claim"
