"""Course 3's claim check on hand-made run folders with known effects (no training).

The fixtures put every optimizer on a grid of multiples of its usual rate and give the
per-seed differences a spread, so the asserted half-widths and degrees of freedom would
come out differently with a z quantile, without pairing, or without Holm's correction.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from dlrun.report.aggregate import swept_keys
from dlrun.report.claims import optimizers as opt
from dlrun.report.runs import collect_runs
from tests.conftest import compose_config

GRID = (0.03, 0.1, 0.3, 1, 3, 10, 30)
CLAIM_GRID = [0.1, 0.3, 1, 3, 10]
EPOCHS = 12


def _run(run_dir: Path, *, name: str, scale: float, seed: int, cross: float, val: float, test: float,
         status: str = "ok") -> None:
    """A run whose validation accuracy climbs 0.01 an epoch, crossing 0.9 at epoch ``cross``: every
    run's crossing of another target moves by the same amount, so paired differences are exact."""
    hydra = run_dir / ".hydra"
    hydra.mkdir(parents=True)
    overrides = [f"optimizer={name}", f"optimizer.lr_scale={scale:g}", f"seed={seed}"]
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    epochs = np.arange(1, EPOCHS + 1)
    curve = 0.9 + 0.01 * (epochs - cross)
    if status == "diverged":
        curve = np.full(EPOCHS, np.nan)
    pd.DataFrame({"epoch": epochs, "val_accuracy": curve, "seconds": 0.1}).to_csv(run_dir / "history.csv", index=False)
    nan = status == "diverged"
    metrics = {"status": status, "headline": "accuracy", "greater_is_better": True, "fit_metric": "accuracy",
               "train": {"accuracy": 1.0}, "val": {"accuracy": None if nan else val},
               "test": {"accuracy": None if nan else test}, "diagnosis": {"gap": 0.0, "verdict": "good fit"},
               "epochs_run": EPOCHS, "best_epoch": EPOCHS, "fit_seconds": 1.2, "seconds_per_epoch": 0.1,
               "seed": seed, "overrides": overrides}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def _claims(root: Path, spec, *, seeds: int, study: dict | None = None) -> str:
    """``spec(name, scale, seed) -> dict(cross, val, test[, status])`` for every run of the sweep."""
    job = 0
    for name, scales in spec.grid.items():
        for scale in scales:
            for seed in range(seeds):
                _run(root / str(job), name=name, scale=scale, seed=seed, **spec(name, scale, seed))
                job += 1
    runs = collect_runs([root])
    lines = opt.check(runs=runs.frame, groups=pd.DataFrame(), keys=swept_keys(runs), out_dir=root,
                      study={"target_rule": "fraction", "target_fraction": 0.9, "lr_scales": CLAIM_GRID,
                             **(study or {})})
    return "\n".join(lines)


def half_width(diffs) -> float:
    d = np.asarray(diffs, dtype=float)
    return float(sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))


# --- claim 1: time to target, paired by seed --------------------------------------------------

BASE = [1.5, 4.0, 7.0, 2.5, 9.0]  # a per-seed difficulty every optimizer shares
NOISE = [0.1, -0.1, 0.2, 0.0, -0.2]


class TimeSpec:
    """Adaptive optimizers cross one epoch before the SGD family, seed by seed (+ noise)."""

    grid = {"sgd": [1], "momentum": [1], "rmsprop": [1], "adam": [1]}

    def __call__(self, name, scale, seed):
        extra = 2.0 + NOISE[seed] if name in opt.SGD_FAMILY else 1.0
        return {"cross": BASE[seed] + extra, "val": 0.95, "test": 0.95}


def test_the_time_claim_is_a_paired_t_test_with_holm_over_every_pair(tmp_path):
    text = _claims(tmp_path, TimeSpec(), seeds=5).split("### 2.")[0]
    diffs = [1.0 + n for n in NOISE]  # sgd's epochs minus adam's, seed by seed
    h = half_width(diffs)
    assert h == pytest.approx(2.7764 * np.std(diffs, ddof=1) / math.sqrt(5), rel=1e-3)  # t with 4 df, not z
    row = next(line for line in text.splitlines() if line.startswith("| adam vs sgd |"))
    assert f"+{np.mean(diffs):.2f} ± {h:.2f} (n = 5)" in row
    p = sps.ttest_1samp(diffs, 0.0).pvalue
    assert f"| {min(1.0, 4 * p):.3g} |" in row  # the smallest of four p-values, times four (Holm)
    assert row.endswith("| supported |")
    # The seeds differ by up to 7.5 epochs, so an unpaired margin of 1 epoch against the
    # seed-to-seed spread (the old rule) would call this within noise.
    assert "**Supported**: the adaptive optimizer reaches the target in fewer epochs beyond seed noise in 4 of 4" in text
    assert "Holm's step-down correction over the 4 pairs" in text and "*Split:* validation curves" in text
    assert "Target val_accuracy = **0.8955**" in text  # 0.9 x the best epoch, 0.9 + 0.01 x (12 - 2.5)


def test_a_pair_that_holm_does_not_keep_makes_the_time_claim_inconclusive(tmp_path):
    class Spec(TimeSpec):
        def __call__(self, name, scale, seed):
            out = super().__call__(name, scale, seed)
            if name == "momentum":  # momentum as fast as the adaptive ones, give or take
                out["cross"] = BASE[seed] + 1.0 + [0.3, -0.2, 0.1, -0.3, 0.2][seed]
            return out

    text = _claims(tmp_path, Spec(), seeds=5).split("### 2.")[0]
    assert "| adam vs momentum |" in text and "| inconclusive |" in text
    assert "**Inconclusive**: the adaptive optimizer reaches the target in fewer epochs beyond seed noise in 2 of 4" in text


def test_usual_rates_come_from_the_optimizer_configs():
    assert opt.usual_lr("adam") == pytest.approx(1e-3) and opt.usual_lr("sgd") == pytest.approx(1e-2)


def test_epochs_to_target_interpolate_and_censor():
    target = opt.Target("val_accuracy", 1.0, 0.9, 0.9, True)
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_accuracy": [0.5, 0.8, 1.0]})
    assert opt.epochs_to_target(history, target) == (pytest.approx(2.5), True)
    never = pd.DataFrame({"epoch": [1, 2, 3], "val_accuracy": [0.5, 0.6, 0.7]})
    assert opt.epochs_to_target(never, target) == (4.0, False)


def test_the_weakest_rule_sets_a_target_the_slowest_optimizer_reaches_late(tmp_path):
    class Spec(TimeSpec):
        def __call__(self, name, scale, seed):
            out = super().__call__(name, scale, seed)
            if name == "sgd":  # sgd tops out at 0.895, 0.910 and 0.865: 0.89 on average
                out["cross"] = [12.5, 11.0, 15.5][seed]
            return out

    text = _claims(tmp_path, Spec(), seeds=3, study={"target_rule": "weakest"}).split("### 2.")[0].split("### 1.")[1]
    assert "Target val_accuracy = **0.8900**: the weakest optimizer's mean best validation score" in text
    assert "(sgd; study.target_rule=weakest)" in text
    sgd = next(line for line in text.splitlines() if line.startswith("| sgd |"))
    # seeds 0 and 1 reach it at epochs 11.5 and 10, seed 2 never (counted as epoch 13)
    assert f"| 2/3 | {np.mean([11.5, 10, 13]):.2f} ± {np.std([11.5, 10, 13], ddof=1):.2f} |" in sgd


# --- claim 2: sensitivity over a relative grid ------------------------------------------------


def _bump(scale: float, peak: float, width: float) -> float:
    """A score that peaks at ``peak`` (a multiple) and falls off over ``width`` decades."""
    return 0.97 - 0.5 * (math.log10(scale / peak) / width) ** 2


class SensSpec:
    """sgd falls off steeply around its usual rate; momentum and adam barely move."""

    grid = {"sgd": GRID, "momentum": GRID, "adam": GRID}
    widths = {"sgd": 1.0, "momentum": 4.0, "adam": 5.0}
    peaks = {"sgd": 1.0, "momentum": 1.0, "adam": 1.0}
    jitter = (0.004, -0.003, 0.006, -0.005)

    def __call__(self, name, scale, seed):
        score = max(_bump(scale, self.peaks[name], self.widths[name]), 0.1)
        j = self.jitter[seed] * (1 + GRID.index(scale) % 3)
        return {"cross": 3.0, "val": score + j, "test": score - j}


def test_sgd_most_sensitive_on_a_relative_grid_is_supported_and_stable_under_a_shift(tmp_path):
    spec = SensSpec()
    text = _claims(tmp_path, spec, seeds=4).split("### 2.")[1]
    assert "**Supported**: on the grid ×0.1–×10" in text
    assert "the verdict is the same on the grid shifted one step either way" in text
    # sgd's per-seed test range minus adam's, seed by seed, and its t half-width (3 df)
    def ranges(name):
        return [max(spec(name, s, seed)["test"] for s in CLAIM_GRID) - min(spec(name, s, seed)["test"]
                for s in CLAIM_GRID) for seed in range(4)]
    diffs = np.subtract(ranges("sgd"), ranges("adam"))
    row = next(line for line in text.splitlines() if line.startswith("| adam |") and "n = 4" in line)
    assert f"+{diffs.mean():.4f} ± {half_width(diffs):.4f} (n = 4)" in row
    assert "Holm's step-down correction over the 2 other optimizers" in text
    assert "ranges read on test" in text and "chosen on validation" in text
    assert "Grid shifted one step down (×0.03–×3): supported" in text
    assert (tmp_path / "lr_relative.png").stat().st_size > 0


def test_a_best_rate_at_the_edge_makes_the_sensitivity_claim_inconclusive(tmp_path):
    class Spec(SensSpec):
        peaks = {"sgd": 1.0, "momentum": 1.0, "adam": 10.0}  # adam is best at x10, the grid's top

    text = _claims(tmp_path, Spec(), seeds=4).split("### 2.")[1]
    assert "**Inconclusive**" in text
    assert "sits at the grid's edge for adam (×10: extend upward)" in text


def test_diverged_runs_count_as_the_worst_score(tmp_path):
    class Spec(SensSpec):
        def __call__(self, name, scale, seed):
            out = super().__call__(name, scale, seed)
            if name == "adam" and scale >= 10:
                out["status"] = "diverged"
            return out

    text = _claims(tmp_path, Spec(), seeds=4).split("### 2.")[1]
    adam = next(line for line in text.splitlines() if line.startswith("| adam | 0.001 |"))
    assert adam.endswith("| 8 |")  # x10 and x30, four seeds each
    worst = min(SensSpec()(n, s, seed)["test"] for n in ("sgd", "momentum", "adam") for s in GRID
                for seed in range(4))
    assert f"test {worst:.4f})" in text
    # adam's range now reaches the worst score: sgd is no longer the most sensitive
    assert "**Supported**" not in text


def test_the_optimizers_preset_sweeps_a_relative_grid_one_step_wider_than_the_claim():
    cfg = compose_config(["experiment=optimizers"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    swept = [float(x) for x in str(params["optimizer.lr_scale"]).split(",")]
    claim = [float(x) for x in cfg.study.lr_scales]
    assert swept[1:-1] == claim and len(claim) >= 5 and claim[len(claim) // 2] == 1.0
    assert cfg.study.target_rule == "weakest" and len(str(params["seed"]).split(",")) >= 5


def test_lr_scale_multiplies_the_rate_the_optimizer_gets():
    from dlrun.optim import build_optimizer

    cfg = compose_config(["optimizer=adam", "optimizer.lr_scale=3"])
    optimizer = build_optimizer(cfg.optimizer, steps_per_epoch=1, epochs=1)
    assert float(optimizer.learning_rate) == pytest.approx(3e-3)


def test_a_non_positive_lr_scale_is_refused():
    from dlrun.config import validate
    from dlrun.errors import ConfigError

    with pytest.raises(ConfigError, match="optimizer.lr_scale must be positive"):
        validate(compose_config(["optimizer.lr_scale=0"]))
