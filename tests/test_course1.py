"""Course 1: the capacity and regularization presets compose, and their claim checks read
hand-made runs tables honestly (supported, weakly supported, not supported, not testable)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

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
    metrics.json fields the checks read (train/val headline and loss)."""
    out = []
    for i, r in enumerate(rows):
        run_dir = tmp_path / "runs" / str(i)
        run_dir.mkdir(parents=True)
        metrics = {
            "headline": "roc_auc",
            "train": {"roc_auc": r.get("train_head", 1.0), "loss": r.get("train_loss", 0.01)},
            "val": {"roc_auc": r["val_score"], "loss": r.get("val_loss", 0.1)},
            "sizes": {"train": 364, "val": 91, "test": 114},
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        row = {"status": "ok", "headline": "roc_auc", "fit_metric": "accuracy", "greater_is_better": True,
               "run_dir": str(run_dir), "val_fit": r["train_fit"] - r["gap"], **r}
        out.append({k: v for k, v in row.items() if k not in ("train_head", "train_loss", "val_loss")})
    return pd.DataFrame(out)


def reg_rows(reg: str, gaps, vals, verdict: str) -> list[dict]:
    return [{"reg": reg, "seed": s, "gap": g, "val_score": v, "train_fit": 1.0, "verdict": verdict,
             "params": 6000} for s, (g, v) in enumerate(zip(gaps, vals, strict=True))]


def run_reg(tmp_path, rows, **study):
    runs = make_runs(tmp_path, rows)
    lines = regularization.check(runs=runs, groups=pd.DataFrame(), keys=["reg"],
                                 study={"baseline": "none", **study}, out_dir=tmp_path)
    return "\n".join(lines)


BASE = reg_rows("none", [0.04, 0.05, 0.03], [0.990, 0.992, 0.988], "overfitting")


def test_regularization_supported_when_a_regularizer_shrinks_the_gap_beyond_noise(tmp_path):
    rows = BASE + reg_rows("l2", [0.01, 0.02, 0.00], [0.991, 0.993, 0.989], "good fit") \
        + reg_rows("dropout", [0.05, 0.04, 0.04], [0.990, 0.992, 0.988], "overfitting")
    text = run_reg(tmp_path, rows, claim="regularization shrinks the gap")
    assert "> regularization shrinks the gap" in text
    assert "**Supported:** reg=l2 shrinks the gap" in text
    assert "reg=dropout does not shrink the gap" in text
    assert "*overfitting* (overfitting 3/3)" in text
    l2_row = next(line for line in text.splitlines() if line.startswith("| l2 |"))
    assert "-0.0300 ±" in l2_row and "good fit 3/3" in l2_row  # paired Δgap, the diagnosis
    assert (tmp_path / "regularization.png").stat().st_size > 0


def test_regularization_within_noise_is_only_weakly_supported(tmp_path):
    rows = BASE + reg_rows("l1", [0.00, 0.06, 0.01], [0.990, 0.992, 0.988], "good fit")
    text = run_reg(tmp_path, rows)
    assert "**Only weakly supported:** reg=l1 shrinks the gap on average" in text
    assert "**Supported:**" not in text


def test_regularization_that_costs_validation_score_does_not_support_the_claim(tmp_path):
    rows = BASE + reg_rows("l1", [0.00, 0.01, 0.00], [0.950, 0.951, 0.949], "underfitting")
    text = run_reg(tmp_path, rows)
    assert "**Not supported by these numbers:**" in text
    assert "reg=l1 shrinks the gap but loses validation score beyond noise" in text


def test_regularization_is_not_testable_when_the_baseline_does_not_overfit(tmp_path):
    rows = reg_rows("none", [0.0, 0.01, 0.0], [0.99] * 3, "good fit") \
        + reg_rows("l2", [0.0, 0.0, 0.0], [0.99] * 3, "good fit")
    text = run_reg(tmp_path, rows)
    assert "**Not testable on these numbers:**" in text and "*good fit*" in text


def test_regularization_without_the_baseline_says_so(tmp_path):
    text = run_reg(tmp_path, reg_rows("l2", [0.0] * 3, [0.99] * 3, "good fit"))
    assert "Not checked" in text and "reg=none" in text


def cap_rows(width: int, params: int, train: float, vals, val_losses, verdict: str) -> list[dict]:
    return [{"model.width": str(width), "seed": s, "params": params, "train_fit": train,
             "gap": train - (v - 0.005), "val_score": v, "val_loss": loss, "verdict": verdict}
            for s, (v, loss) in enumerate(zip(vals, val_losses, strict=True))]


def run_cap(tmp_path, rows):
    runs = make_runs(tmp_path, rows)
    return "\n".join(capacity.check(runs=runs, groups=pd.DataFrame(), keys=["model.width"],
                                    study={}, out_dir=tmp_path))


def test_capacity_supported_rise_then_plateau_names_the_border(tmp_path):
    rows = (cap_rows(1, 34, 0.90, [0.90, 0.91, 0.89], [0.30, 0.31, 0.29], "underfitting")
            + cap_rows(4, 129, 0.97, [0.985, 0.990, 0.980], [0.08, 0.09, 0.07], "good fit")
            + cap_rows(64, 6000, 1.00, [0.986, 0.990, 0.982], [0.10, 0.12, 0.09], "overfitting")
            + cap_rows(256, 70000, 1.00, [0.987, 0.988, 0.982], [0.20, 0.22, 0.18], "overfitting"))
    text = run_cap(tmp_path, rows)
    # roc_auc plateaus at the large end while the validation loss climbs back.
    assert ("**Supported:** validation roc_auc improves with capacity beyond seed noise, then gets worse "
            "for the largest networks (validation loss, beyond seed noise)") in text
    assert "(a plateau: within seed noise)" in text
    assert "underfitting up to model.width=1, 34 parameters" in text
    assert "overfitting from model.width=64, 6,000 parameters" in text
    assert "between 129 and 6,000 parameters" in text
    # The smallest network within one standard error of the best is width 4, not the best (width 64).
    assert "**Start small, add capacity until validation stops improving:** model.width=4" in text
    assert "best (model.width=4, 129 parameters) 0.0800 ± 0.0100" in text
    rows_order = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| model.width=")]
    assert rows_order == ["model.width=1", "model.width=4", "model.width=64", "model.width=256"]
    assert (tmp_path / "capacity.png").stat().st_size > 0


def test_capacity_fall_beyond_noise_at_the_large_end(tmp_path):
    rows = (cap_rows(1, 34, 0.90, [0.90, 0.91, 0.89], [0.3] * 3, "underfitting")
            + cap_rows(64, 6000, 1.00, [0.985, 0.990, 0.980], [0.1] * 3, "good fit")
            + cap_rows(256, 70000, 1.00, [0.960, 0.966, 0.954], [0.4] * 3, "overfitting"))
    text = run_cap(tmp_path, rows)
    assert "then gets worse for the largest networks (validation roc_auc and validation loss" in text
    assert "(worse, beyond seed noise)" in text


def test_capacity_rise_seen_only_on_validation_loss_says_so(tmp_path):
    # One seed of the tiny network collapses: roc_auc is erratic, the loss is consistently worse.
    rows = (cap_rows(1, 34, 0.95, [0.99, 0.80, 0.985], [0.30, 0.50, 0.31], "underfitting")
            + cap_rows(64, 6000, 1.00, [0.992, 0.990, 0.988], [0.10, 0.12, 0.09], "good fit")
            + cap_rows(256, 70000, 1.00, [0.991, 0.990, 0.987], [0.11, 0.12, 0.10], "overfitting"))
    text = run_cap(tmp_path, rows)
    assert ("**Supported:** validation loss improves with capacity beyond seed noise (on roc_auc the rise "
            "is within seed noise), then stops improving") in text


def test_capacity_flat_scores_do_not_support_the_claim(tmp_path):
    rows = (cap_rows(1, 34, 0.99, [0.990, 0.985, 0.992], [0.05] * 3, "good fit")
            + cap_rows(64, 6000, 1.00, [0.991, 0.984, 0.992], [0.06] * 3, "overfitting"))
    text = run_cap(tmp_path, rows)
    assert "**Not supported as stated:**" in text
    assert "no network underfits" in text


def test_capacity_still_rising_at_the_largest_network_is_partly_supported(tmp_path):
    rows = (cap_rows(1, 34, 0.90, [0.90, 0.91, 0.89], [0.3] * 3, "underfitting")
            + cap_rows(64, 6000, 0.99, [0.98, 0.99, 0.985], [0.05] * 3, "good fit"))
    text = run_cap(tmp_path, rows)
    assert "**Partly supported:**" in text and "widen the range" in text


def test_an_unregistered_study_kind_is_refused(tmp_path):
    from dlrun.errors import ConfigError

    with pytest.raises(ConfigError, match="study.kind='fairness' has no claim check"):
        check_claim("fairness", runs=pd.DataFrame(), groups=pd.DataFrame(), keys=[], study={},
                    out_dir=tmp_path)


@pytest.mark.parametrize("kind", ["capacity", "regularization"])
def test_claim_kinds_are_registered(kind, tmp_path):
    runs = make_runs(tmp_path, reg_rows("none", [0.0], [0.99], "good fit"))
    assert check_claim(kind, runs=runs.iloc[0:0], groups=pd.DataFrame(), keys=[], study={},
                       out_dir=tmp_path)[0] == "## Claim"
