"""A real tuning: dlrun -m tuner=gp on a small table, its folder, and the rerun of its best trial."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pandas as pd
import pytest
import yaml


def _table(path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(int)
    pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(y=y).to_csv(path, index=False)


@pytest.mark.slow
def test_a_four_trial_tuning_end_to_end_and_its_best_trial_reruns_to_the_same_score(tmp_path, dlrun_cli):
    _table(tmp_path / "T.csv")
    shrink = ["trainer.epochs=3", "trainer.progress=none", "diagnosis.reference=none"]
    done = dlrun_cli(["-m", "tuner=gp", "tuner.n_calls=4", "tuner.n_initial_points=2", "dataset=csv",
                      "dataset.path=T.csv", "dataset.target=y", "optimizer.lr=tag(log, interval(1e-3, 1e-1))",
                      "model.depth=range(1, 3)", *shrink, "hydra.sweep.dir=tune"])
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "tune"

    trials = pd.read_csv(folder / "trials.csv")
    assert list(trials["trial"]) == [0, 1, 2, 3]
    assert set(trials["status"]) == {"ok"} and set(trials["direction"]) == {"maximize"}  # ROC-AUC
    assert trials["optimizer.lr"].between(1e-3, 1e-1).all() and set(trials["model.depth"]) <= {1, 2}
    for row in trials.itertuples():  # each score is the job's own validation objective
        record = json.loads((folder / str(row.trial) / "metrics.json").read_text())
        assert record["objective"] == pytest.approx(row.score)
    assert (folder / "convergence.png").is_file() and (folder / "study.md").is_file()

    best = yaml.safe_load((folder / "best_config.yaml").read_text())
    assert best["score"] == trials["score"].max()
    refit = json.loads((folder / "refit" / "metrics.json").read_text())
    assert "eval.refit=true" in refit["overrides"]
    assert refit["sizes"]["train"] > json.loads((folder / "0" / "metrics.json").read_text())["sizes"]["train"]
    assert best["refit"]["test_roc_auc"] == pytest.approx(refit["test"]["roc_auc"])

    command, *overrides = shlex.split(best["rerun"])
    assert command == "dlrun"
    again = dlrun_cli([*overrides, "hydra.run.dir=rerun"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "rerun" / "metrics.json").read_text())["objective"] == best["score"]
