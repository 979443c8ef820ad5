"""Sweep aggregation on hand-made run folders: grouping, mean ± std, best per group,
time-to-target, plots, claims and ``dlrun-report`` (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dlrun.report.aggregate import best_per_value, group_table, split_keys, swept_keys
from dlrun.report.cli import main as report_main
from dlrun.report.runs import collect_runs
from dlrun.report.study import report_sweep
from dlrun.report.target import study_target, time_to_target


def make_run(
    run_dir: Path, *, overrides: dict[str, str], val: list[float], seconds: list[float] | None = None,
    status: str = "ok", headline: str = "accuracy", greater: bool = True, config: dict | None = None,
    message: str | None = None,
) -> Path:
    """A run folder as dlrun writes it: metrics.json, history.csv, .hydra/overrides.yaml."""
    hydra = run_dir / ".hydra"
    hydra.mkdir(parents=True)
    listed = [f"{k}={v}" for k, v in overrides.items()]
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(listed))
    if config is not None:
        (hydra / "config.yaml").write_text(yaml.safe_dump(config))
    seed = int(overrides.get("seed", 0))
    if status == "failed":
        metrics = {"status": "failed", "message": message, "overrides": listed, "seed": seed}
    else:
        seconds = seconds or [1.0] * len(val)
        pd.DataFrame({"epoch": range(1, len(val) + 1), f"val_{headline}": val, "seconds": seconds}).to_csv(
            run_dir / "history.csv", index=False)
        final = val[-1]
        metrics = {
            "status": status, "message": message, "headline": headline, "greater_is_better": greater,
            "fit_metric": headline, "train": {headline: final + 0.01}, "val": {headline: final},
            "test": {headline: final - 0.01}, "diagnosis": {"gap": 0.01, "verdict": "good fit"},
            "best_epoch": len(val), "epochs_run": len(val), "fit_seconds": float(sum(seconds)),
            "seconds_per_epoch": float(np.mean(seconds)), "seed": seed, "overrides": listed,
        }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


# optimizer -> lr -> per-seed validation curves (3 epochs)
GRID = {
    "sgd": {"0.001": [[0.2, 0.3, 0.4], [0.2, 0.3, 0.5]], "0.1": [[0.5, 0.8, 0.9], [0.6, 0.8, 0.9]]},
    "adam": {"0.001": [[0.9, 0.95, 1.0], [0.85, 0.95, 0.96]], "0.1": [[0.7, 0.8, 0.8], [0.7, 0.8, 0.9]]},
}


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    n = 0
    for name, by_lr in GRID.items():
        for lr, curves in by_lr.items():
            for seed, curve in enumerate(curves):
                make_run(root / str(n), val=curve, seconds=[2.0, 0.5, 0.5],
                         overrides={"optimizer": name, "optimizer.lr": lr, "seed": str(seed)})
                n += 1
    return root


def test_swept_keys_exclude_the_seed(sweep):
    runs = collect_runs([sweep])
    assert len(runs.frame) == 8
    assert swept_keys(runs) == ["optimizer", "optimizer.lr"]
    assert split_keys(swept_keys(runs)) == (["optimizer"], ["optimizer.lr"])


def test_groups_average_over_seeds_best_first(sweep):
    runs = collect_runs([sweep])
    groups = group_table(runs.frame, swept_keys(runs))
    assert list(groups["n"]) == [2, 2, 2, 2]
    top = groups.iloc[0]
    assert (top["optimizer"], top["optimizer.lr"]) == ("adam", "0.001")
    assert top["val_mean"] == pytest.approx(0.98)
    assert top["val_std"] == pytest.approx(np.std([1.0, 0.96], ddof=1))
    assert list(groups["val_mean"]) == sorted(groups["val_mean"], reverse=True)


def test_best_learning_rate_per_optimizer(sweep):
    runs = collect_runs([sweep])
    best = best_per_value(group_table(runs.frame, swept_keys(runs)), ["optimizer"])
    assert dict(zip(best["optimizer"], best["optimizer.lr"], strict=True)) == {"adam": "0.001", "sgd": "0.1"}


def test_time_to_target_counts_epochs_and_seconds():
    curves = [pd.DataFrame({"epoch": [1, 2, 3], "val_accuracy": v, "seconds": [2.0, 0.5, 0.5]})
              for v in ([0.5, 0.95, 1.0], [0.1, 0.2, 0.3])]
    target = study_target(curves, column="val_accuracy", fraction=0.9, greater_is_better=True)
    assert (target.best, target.value) == (1.0, pytest.approx(0.9))
    assert time_to_target(curves[0], target) == (2.0, pytest.approx(1.0))  # 2.5 s less 1.5 s compiling
    assert all(math.isnan(x) for x in time_to_target(curves[1], target))


def test_time_to_target_where_lower_is_better():
    curve = pd.DataFrame({"epoch": [1, 2, 3], "val_mse": [4.0, 1.05, 1.0], "seconds": [1.0, 1.0, 1.0]})
    target = study_target([curve], column="val_mse", fraction=0.9, greater_is_better=False)
    assert target.value == pytest.approx(1 / 0.9)
    assert time_to_target(curve, target) == (2.0, 2.0)


def test_report_writes_study_plots_and_per_group_time_to_target(sweep):
    report_sweep([sweep], out_dir=sweep, study={"name": "opt", "target_fraction": 0.9})
    study = (sweep / "study.md").read_text()
    assert "| optimizer=adam, optimizer.lr=0.001 | 2 | 0.9800 ± 0.0283 |" in study
    assert "## Best optimizer.lr per optimizer" in study
    # target = 0.9 x 1.0; adam@0.001 reaches it at epoch 1 (seed 0) and 2 (seed 1)
    assert "**0.9000**" in study
    row = next(line for line in study.splitlines() if line.startswith("| optimizer=adam, optimizer.lr=0.001"))
    assert row.endswith("| 1.5 | 0.75 |")  # compilation (1.5 s) excluded
    sgd_slow = next(line for line in study.splitlines() if line.startswith("| optimizer=sgd, optimizer.lr=0.001"))
    assert "(0/2 reached)" in sgd_slow
    assert (sweep / "compare_curves.png").stat().st_size > 0
    assert (sweep / "lr_sensitivity.png").stat().st_size > 0


def test_leaderboard_lists_the_failed_job_with_its_error(sweep):
    make_run(sweep / "8", val=[], status="failed", message="ConfigError: optimizer.lr must be positive, got -1",
             overrides={"optimizer": "sgd", "optimizer.lr": "-1", "seed": "0"})
    result = report_sweep([sweep], out_dir=sweep)
    assert (result.n_jobs, result.n_failed) == (9, 1)
    board = pd.read_csv(sweep / "leaderboard.csv")
    failed = board[board["status"] == "failed"]
    assert len(failed) == 1 and "must be positive" in failed["message"].iloc[0]
    assert board["status"].iloc[-1] == "failed"  # sorted last
    assert "optimizer.lr must be positive" in (sweep / "study.md").read_text()


def test_numbers_written_differently_are_one_group(tmp_path):
    for i, lr in enumerate(["1e-3", "0.001", "1e-2"]):
        make_run(tmp_path / str(i), val=[0.5], overrides={"optimizer.lr": lr, "seed": str(i)})
    runs = collect_runs([tmp_path])
    assert sorted(group_table(runs.frame, swept_keys(runs))["n"]) == [1, 2]


def test_two_sweeps_together_fill_keys_one_did_not_sweep(tmp_path):
    config = {"optimizer": {"name": "adam", "lr": 0.001}, "seed": 0}
    make_run(tmp_path / "a" / "0", val=[0.9], overrides={"optimizer": "sgd"},
             config={**config, "optimizer": {"name": "sgd", "lr": 0.01}})
    make_run(tmp_path / "b" / "0", val=[0.8], overrides={"seed": "1"}, config=config)
    assert report_main([str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "both")]) == 0
    board = pd.read_csv(tmp_path / "both" / "leaderboard.csv")
    assert list(board["optimizer"]) == ["sgd", "adam"]
    assert "optimizer=adam" in (tmp_path / "both" / "study.md").read_text()


def test_report_cli_rejects_folders_without_runs(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err


def test_optimizer_claims_say_when_they_cannot_check(sweep):
    report_sweep([sweep / "0", sweep / "1"], out_dir=sweep / "one", study={"kind": "optimizers"})
    assert "Not checked" in (sweep / "one" / "study.md").read_text()


def test_a_sweeps_report_takes_exactly_its_own_jobs_even_back_to_back_into_one_folder(tmp_path):
    import os
    import shutil
    import time

    from dlrun.report.runs import join_sweep, open_sweep

    root = tmp_path / "sweep"
    open_sweep(root)  # the first sweep: jobs 0 and 1
    for n in (0, 1):
        join_sweep(root, make_run(root / str(n), val=[0.5], overrides={"seed": str(n)}))
    started = time.time()  # the second sweep starts at once: one job, into folder 0 again
    open_sweep(root)
    shutil.rmtree(root / "0")
    join_sweep(root, make_run(root / "0", val=[0.7], overrides={"seed": "2"}))
    os.utime(root / "1" / "metrics.json", (started - 0.2, started - 0.2))  # within a second of the start
    assert collect_runs([root], since=started).frame["seed"].tolist() == [2]

    # A resumed sweep lists the finished jobs it leaves alone, however old their files.
    os.utime(root / "0" / "metrics.json", (started - 3600, started - 3600))
    later = time.time()
    open_sweep(root)
    join_sweep(root, root / "0")
    assert collect_runs([root], since=later).frame["seed"].tolist() == [2]
    # A job the launcher marked failed before it could start is not listed, but new.
    make_run(root / "5", val=[], overrides={"seed": "5"}, status="failed")
    assert sorted(collect_runs([root], since=later).frame["seed"].tolist()) == [2, 5]
