"""End to end: short real trainings write every file of the run-folder contract (DESIGN §3)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY, compose_config

CLASSIFICATION_FILES = {"history.csv", "metrics.json", "curves.png", "summary.md",
                        "confusion_matrix.png", "classification_report.csv"}
REGRESSION_FILES = {"history.csv", "metrics.json", "curves.png", "summary.md"}


def _run(tmp_path, overrides):
    from dlrun.config import validate
    from dlrun.run import run_job

    cfg = compose_config([*TINY, *overrides])
    validate(cfg)
    objective = run_job(cfg, tmp_path, overrides=overrides)
    return objective, json.loads((tmp_path / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "task"),
    [
        (["dataset=breast_cancer"], "binary"),
        (["dataset=digits"], "multiclass"),
        (["dataset=diabetes"], "regression"),
        (["dataset=mnist_5k", "dataset.max_rows=600"], "multiclass"),
        (["dataset=breast_cancer", "model=logreg"], "binary"),
        (["dataset=digits", "model=cnn", "model.filters=4", "dataset.max_rows=300"], "multiclass"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v),
)
def test_every_dataset_writes_the_run_folder(tmp_path, overrides, task):
    objective, metrics = _run(tmp_path, overrides)
    expected = REGRESSION_FILES if task == "regression" else CLASSIFICATION_FILES
    assert expected <= {p.name for p in tmp_path.iterdir()}
    assert metrics["status"] == "ok" and metrics["task"] == task
    assert metrics["epochs_run"] == 2 and metrics["best_epoch"] in (1, 2)
    for split in ("train", "val", "test", "baseline"):
        assert np.isfinite(metrics[split]["loss"])
    assert metrics["objective"] == pytest.approx(metrics["val"][metrics["headline"]])
    assert objective == pytest.approx(metrics["objective"])
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"loss", "val_loss", "lr", "seconds"} <= set(history.columns)
    assert metrics["diagnosis"]["verdict"] in {
        "overfitting", "underfitting", "underfitting and overfitting", "good fit"}
    summary = (tmp_path / "summary.md").read_text()
    assert "## Diagnosis" in summary and "Usual remedies" in summary and "curves.png" in summary


@pytest.mark.slow
def test_a_trained_model_beats_the_dumb_baseline(tmp_path):
    _, metrics = _run(tmp_path, ["trainer.epochs=15"])
    assert metrics["test"]["accuracy"] > metrics["baseline"]["accuracy"] + 0.2
    assert metrics["baseline"]["roc_auc"] == pytest.approx(0.5)


@pytest.mark.slow
def test_kfold_reports_per_fold_metrics_and_spread(tmp_path):
    _, metrics = _run(tmp_path, ["eval=kfold", "eval.folds=3"])
    assert metrics["eval"] == {"protocol": "kfold", "folds": 3}
    assert len(metrics["folds"]) == 3
    val_acc = [f["val"]["accuracy"] for f in metrics["folds"]]
    assert metrics["val"]["accuracy"] == pytest.approx(np.mean(val_acc))
    assert metrics["std"]["val"]["accuracy"] == pytest.approx(np.std(val_acc))
    history = pd.read_csv(tmp_path / "history.csv")
    assert sorted(history["fold"].unique()) == [1, 2, 3]


@pytest.mark.slow
def test_save_model_writes_a_loadable_model(tmp_path):
    import keras

    _run(tmp_path, ["trainer.save_model=true"])
    model = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert model.output_shape == (None, 1)


@pytest.mark.slow
def test_cli_trains_on_a_csv_with_text_columns(tmp_path, dlrun_cli):
    rng = np.random.default_rng(0)
    n = 120
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(size=n)
    label = np.where((colour == "red") | (size > 0.5), "good", "bad")
    pd.DataFrame({"colour": colour, "size": size, "label": label}).to_csv(tmp_path / "my.csv", index=False)
    result = dlrun_cli(["dataset=csv", "dataset.path=my.csv", "dataset.target=label", *TINY])
    assert result.returncode == 0, result.stderr
    assert "run folder:" in result.stdout
    run_dirs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(run_dirs) == 1
    assert CLASSIFICATION_FILES <= {p.name for p in run_dirs[0].iterdir()}
    assert (run_dirs[0] / ".hydra" / "config.yaml").is_file()
    metrics = json.loads((run_dirs[0] / "metrics.json").read_text())
    assert metrics["dataset"] == "my" and metrics["task"] == "binary"


@pytest.mark.slow
def test_two_job_multirun_writes_the_leaderboard(tmp_path, dlrun_cli):
    result = dlrun_cli(["-m", "reg=none,dropout", *TINY, "hydra.sweep.dir=sweep"])
    assert result.returncode == 0, result.stderr
    board = pd.read_csv(tmp_path / "sweep" / "leaderboard.csv")
    assert sorted(board["reg"]) == ["dropout", "none"]
    assert set(board["status"]) == {"ok"}
    study = (tmp_path / "sweep" / "study.md").read_text()
    assert "reg=dropout" in study and "reg=none" in study


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["dataset=nope"], "Could not find 'dataset/nope'"),
     (["trainer.epochs=-3"], "trainer.epochs must be at least 1"),
     (["optimizer.lr=abc"], "could not be converted to Float")],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, dlrun_cli, args, fragment):
    result = dlrun_cli(args)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr
