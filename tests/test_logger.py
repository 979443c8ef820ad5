"""logger=csv|tensorboard|mlflow: a copy of each run in a tracker, never at the run's cost (issue 16)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import TINY, compose_config, run_cli

QUIET = [*TINY, "diagnosis.reference=none"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module: a new one costs MLflow's schema migrations (~20 s)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _mlflow_runs(uri: str) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(uri)  # search_runs reads the process-wide store
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("dlrun")
    return mlflow.search_runs([experiment.experiment_id]) if experiment else pd.DataFrame()


@pytest.mark.slow
def test_mlflow_holds_the_runs_params_final_metrics_epochs_and_files(tmp_path, store):
    import mlflow

    from dlrun.run import run_job

    uri = store
    cfg = compose_config(["logger=mlflow", f"logger.tracking_uri={uri}", "trainer.epochs=3", *QUIET[1:]])
    run_job(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    runs = _mlflow_runs(uri)
    runs = runs[runs["tags.run_dir"] == str(tmp_path / "run")].reset_index(drop=True)
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    assert runs.loc[0, "metrics.test_accuracy"] == pytest.approx(record["test"]["accuracy"])
    assert runs.loc[0, "params.optimizer.lr"] == "0.001" and runs.loc[0, "tags.dataset"] == "breast_cancer"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    steps = [m.step for m in client.get_metric_history(runs.loc[0, "run_id"], "epoch/val_loss")]
    assert steps == [1, 2, 3]
    files = {a.path for a in client.list_artifacts(runs.loc[0, "run_id"])}
    assert {"metrics.json", "history.csv", "summary.md", "curves.png"} <= files


@pytest.mark.slow
def test_a_tracker_that_cannot_be_reached_is_a_warning_and_the_run_folder_is_complete(tmp_path, caplog):
    from dlrun.run import run_job

    cfg = compose_config(["logger=mlflow", "logger.tracking_uri=http://127.0.0.1:9", *QUIET])
    with caplog.at_level("WARNING", logger="dlrun.report.run_folder"):
        run_job(cfg, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "ok"
    assert (tmp_path / "run" / "summary.md").is_file()
    warned = [r.getMessage() for r in caplog.records if "could not record" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("logger=mlflow could not record this run (MlflowException")


@pytest.mark.slow
def test_each_job_of_a_sweep_is_one_mlflow_run_tagged_with_its_sweep(tmp_path, store):
    uri = store
    done = run_cli(["-m", "seed=0,1,2,3", "logger=mlflow", f"logger.tracking_uri={uri}", *QUIET,
                    f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = _mlflow_runs(uri)
    runs = runs[runs["tags.run_dir"].str.startswith(str(tmp_path / "sweep"))]
    assert len(runs) == 4 and runs["tags.sweep"].nunique() == 1
    assert sorted(runs["tags.job"].astype(int)) == [0, 1, 2, 3]
    assert str(tmp_path / "sweep") in runs["tags.sweep"].iloc[0]
    import mlflow

    artifacts = mlflow.tracking.MlflowClient(tracking_uri=uri).list_artifacts(runs["run_id"].iloc[0])
    assert ".hydra" in {a.path for a in artifacts}  # the composed config and overrides travel too


@pytest.mark.slow
def test_csv_logger_appends_one_row_per_run_and_widens_for_new_columns(tmp_path):
    from dlrun.run import run_job

    path = tmp_path / "runs.csv"
    run_job(compose_config(["logger=csv", f"logger.path={path}", *QUIET]), tmp_path / "a")
    run_job(compose_config(["logger=csv", f"logger.path={path}", "dataset=diabetes", *QUIET]), tmp_path / "b")
    frame = pd.read_csv(path)
    assert frame["run_dir"].tolist() == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert frame.loc[0, "test_accuracy"] == pytest.approx(
        json.loads((tmp_path / "a" / "metrics.json").read_text())["test"]["accuracy"])
    assert pd.isna(frame.loc[1, "test_accuracy"]) and frame.loc[1, "test_r2"] == pytest.approx(
        json.loads((tmp_path / "b" / "metrics.json").read_text())["test"]["r2"])


def test_logger_choices_are_checked_before_training(monkeypatch):
    import importlib.util

    from dlrun.capabilities import capabilities_for
    from dlrun.config import validate
    from dlrun.errors import ConfigError

    cfg = compose_config(["logger=tensorboard"])
    assert "tensorboard" in [c.name for c in capabilities_for(compose_config(["logger=tensorboard"]))]
    validate(cfg)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r'logger=mlflow needs MLflow: pip install "dlrun\[mlflow\]"'):
        validate(compose_config(["logger=mlflow"]))
