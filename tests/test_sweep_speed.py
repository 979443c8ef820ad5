"""Issue 17, a sweep's overhead: plots drawn at the sweep's end, one reference fit per split,
a few jobs composed before the sweep (benchmarks/bench_sweep.py measures the time)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlrun.report import plots
from hydra_plugins.dlrun_covering_sweeper.covering_sweeper import covering_jobs


def _grid(**values: list[str]) -> list[list[str]]:
    jobs = [[]]
    for key, options in values.items():
        jobs = [job + [f"{key}={v}"] for job in jobs for v in options]
    return jobs


def test_covering_jobs_compose_every_swept_value_with_few_jobs():
    grid = _grid(optimizer=["sgd", "momentum", "rmsprop", "adam"],
                 **{"optimizer.lr_scale": ["0.03", "0.1", "0.3", "1", "3", "10", "30"]},
                 seed=[str(s) for s in range(5)])
    chosen = covering_jobs(grid)
    assert len(grid) == 140
    assert len(chosen) == 7  # the most values of one key
    assert set().union(*map(set, chosen)) == set().union(*map(set, grid))
    assert all(job in grid for job in chosen)
    assert covering_jobs([["seed=0"]]) == [["seed=0"]]
    assert covering_jobs([]) == []


def _history() -> pd.DataFrame:
    epochs = np.arange(1, 6)
    return pd.DataFrame({"epoch": epochs, "loss": 1.0 / epochs, "accuracy": 0.5 + epochs / 20,
                         "val_loss": 1.2 / epochs, "val_accuracy": [0.5, 0.6, np.nan, 0.7, 0.72]})


def test_deferred_plots_are_written_down_then_drawn_into_the_same_files(tmp_path):
    run = tmp_path / "sweep" / "3"
    run.mkdir(parents=True)
    matrix = np.array([[5, 1], [0, 4]])
    with plots.deferring():
        plots.plot_curves(_history(), run / "curves.png", metric="accuracy", best_epoch=4, title="t")
        plots.plot_confusion(matrix, ["no", "yes"], run / "confusion_matrix.png", title="c")
    assert not list(run.glob("*.png"))
    waiting = plots.pending([tmp_path / "sweep"])
    assert [p.name for p in waiting] == ["confusion_matrix.png.json", "curves.png.json"]
    spec = json.loads(waiting[1].read_text())
    assert spec["inputs"]["best_epoch"] == 4 and np.isnan(spec["inputs"]["history"]["val_accuracy"][2])

    assert plots.draw_pending([tmp_path / "sweep"]) == 2
    assert sorted(p.name for p in run.iterdir()) == ["confusion_matrix.png", "curves.png"]  # pending folder gone
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots.draw_pending([tmp_path / "sweep"]) == 0


def test_a_figure_drawn_now_drops_an_older_deferred_one(tmp_path):
    with plots.deferring():
        plots.plot_curves(_history(), tmp_path / "curves.png", metric="accuracy", best_epoch=1, title="old")
    plots.plot_curves(_history(), tmp_path / "curves.png", metric="accuracy", best_epoch=2, title="new")
    assert plots.pending([tmp_path]) == []  # a later report will not overwrite the new figure


def test_the_reference_is_fitted_once_per_split_and_gives_the_same_numbers(monkeypatch):
    from omegaconf import OmegaConf

    from dlrun import reference
    from dlrun.data import load_table
    from dlrun.data.split import holdout_indices, make_splits
    from dlrun.task import task_spec
    from tests.conftest import compose_config

    data = OmegaConf.to_object(compose_config(["dataset=digits"])).dataset
    table = load_table(data)
    train, val, test = holdout_indices(table.y, task=table.task, test_size=data.test_size, val_size=data.val_size,
                                       seed=0, test=table.test_rows)
    splits = make_splits(table, train, val, test, scaling=data.scaling)
    spec = task_spec(table.task, splits.n_classes, splits.train.y)
    monkeypatch.delenv("DLRUN_REFIT_REFERENCE", raising=False)
    reference._FITTED.clear()
    fits = []
    real = reference._fit_reference
    monkeypatch.setattr(reference, "_fit_reference", lambda *a, **k: fits.append(1) or real(*a, **k))

    first = reference.fit_reference(splits, spec, seed=0)
    again = reference.fit_reference(splits, spec, seed=0)
    other_seed = reference.fit_reference(splits, spec, seed=1)
    assert len(fits) == 2  # seed 0 once, seed 1 once
    assert again == first and again is not first
    again.scores["val"]["accuracy"] = -1.0  # a caller's change does not reach the next job
    assert reference.fit_reference(splits, spec, seed=0) == first
    assert other_seed.model == first.model

    monkeypatch.setenv("DLRUN_REFIT_REFERENCE", "1")  # the old way: fitted in every job
    assert reference.fit_reference(splits, spec, seed=0) == first
    assert len(fits) == 3


def test_a_bad_swept_value_still_fails_before_any_job(dlrun_cli, tmp_path):
    proc = dlrun_cli(["-m", "optimizer=adam,nadamm", "seed=0,1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                     timeout=120)
    assert proc.returncode == 2
    assert "nadamm" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "sweep").glob("*/metrics.json"))


@pytest.mark.slow
def test_a_sweep_ends_with_every_run_folder_complete(dlrun_cli, tmp_path):
    sweep = tmp_path / "sweep"
    proc = dlrun_cli(["-m", "dataset=digits", "trainer.epochs=2", "trainer.progress=none", "seed=0,1",
                      f"hydra.sweep.dir={sweep}"], timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(runs) == 2
    for run in runs:
        assert (run / "curves.png").is_file() and (run / "confusion_matrix.png").is_file()
        assert not (run / plots.PENDING).exists()
        assert "](curves.png)" in (run / "summary.md").read_text()
    assert (sweep / "study.md").is_file()


@pytest.mark.parametrize(("launcher", "later"), [("basic", True), ("joblib", True), ("submitit_local", False)])
def test_figures_wait_only_in_sweeps_whose_jobs_run_on_this_machine(launcher, later):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from dlrun.report import run_folder
    from tests.conftest import compose_config

    try:
        HydraConfig.instance().set_config(compose_config([f"hydra/launcher={launcher}"], return_hydra_config=True))
        assert run_folder._draws_later() is False  # a single run draws at once
        cfg = compose_config([f"hydra/launcher={launcher}"], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.MULTIRUN
        HydraConfig.instance().set_config(cfg)
        assert run_folder._draws_later() is later
    finally:
        HydraConfig.instance().cfg = None
