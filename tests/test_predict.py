"""dlrun-predict: a saved run scores raw rows and image folders as it scored its test split (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlrun.predict import main
from tests.conftest import compose_config


def _table(path, n=300):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 80, n).astype(float), "city": rng.choice(["a", "b", "c"], n),
                          "income": rng.normal(50, 10, n)})
    frame.loc[rng.choice(n, 20, replace=False), "income"] = np.nan
    frame["y"] = np.where(frame.age / 80 + (frame.city == "a") + rng.normal(0, 0.3, n) > 1, "yes", "no")
    frame.to_csv(path, sep=";", index=False)  # not a comma: the delimiter travels with the run
    return frame


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    from dlrun.run import run_job

    tmp = tmp_path_factory.mktemp("predict")
    frame = _table(tmp / "t.csv")
    cfg = compose_config(["dataset=csv", f"dataset.path={tmp / 't.csv'}", "dataset.target=y",
                          "trainer.save_model=true", "trainer.epochs=3", "trainer.progress=none",
                          "diagnosis.reference=none"])
    run_job(cfg, tmp / "run")
    return tmp, frame


@pytest.mark.slow
def test_scoring_the_runs_own_test_rows_reproduces_its_test_predictions(saved_run, capsys):
    tmp, frame = saved_run
    expected = pd.read_csv(tmp / "run" / "test_predictions.csv")
    rows = frame.iloc[expected["row"]].copy()
    rows["extra"] = "ignored"
    rows.to_csv(tmp / "new.csv", sep=";", index=False)
    assert main([str(tmp / "run"), str(tmp / "new.csv"), "-o", str(tmp / "p.csv")]) == 0
    got = pd.read_csv(tmp / "p.csv")
    assert got.columns.tolist() == ["row", "label", "probability_no", "probability_yes"]
    assert got["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(got["probability_yes"], expected["probability_yes"], atol=1e-6)
    assert f"{len(expected)} predictions" in capsys.readouterr().out


@pytest.mark.slow
def test_unseen_categories_are_scored_and_a_missing_column_is_refused_in_one_line(saved_run, capsys):
    tmp, frame = saved_run
    odd = frame.head(4).copy()
    odd.loc[0, "city"] = "never seen"
    odd.loc[1, "income"] = np.nan
    odd.drop(columns="y").to_csv(tmp / "odd.csv", sep=";", index=False)
    assert main([str(tmp / "run"), str(tmp / "odd.csv"), "-o", str(tmp / "odd_p.csv")]) == 0
    assert len(pd.read_csv(tmp / "odd_p.csv")) == 4
    frame.drop(columns=["income"]).to_csv(tmp / "short.csv", sep=";", index=False)
    capsys.readouterr()
    assert main([str(tmp / "run"), str(tmp / "short.csv"), "-o", str(tmp / "no.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dlrun-predict: error: {tmp / 'short.csv'} lacks column(s) the model reads: income "
                   "(it needs 3: age, city, income)"]
    assert not (tmp / "no.csv").exists()


def test_a_run_without_a_saved_model_is_refused_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "x.csv")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"dlrun-predict: error: {tmp_path} has no saved model (model.keras and predictor.joblib); "
        "train with trainer.save_model=true"]


@pytest.mark.slow
def test_an_image_run_scores_a_folder_of_new_images(tmp_path):
    from PIL import Image

    from dlrun.run import run_job

    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / "train" / f"c{c}").mkdir(parents=True)
        for i in range(15):
            img = rng.integers(0, 60, (10, 10)).astype(np.uint8)
            img[2 + 5 * c : 4 + 5 * c] = 250
            Image.fromarray(img).save(tmp_path / "train" / f"c{c}" / f"{i}.png")
    cfg = compose_config(["dataset=image_folder", f"dataset.path={tmp_path / 'train'}", "dataset.image_size=8",
                          "model=cnn", "trainer.save_model=true", "trainer.epochs=2", "trainer.progress=none"])
    run_job(cfg, tmp_path / "run")
    new = tmp_path / "new" / "nested"
    new.mkdir(parents=True)
    for name in ("a.png", "b.png"):
        (new / name).write_bytes((tmp_path / "train" / "c1" / "0.png").read_bytes())
    (new / "broken.png").write_bytes(b"nope")
    assert main([str(tmp_path / "run"), str(tmp_path / "new"), "-o", str(tmp_path / "p.csv")]) == 0
    got = pd.read_csv(tmp_path / "p.csv")
    assert got["file"].tolist() == ["nested/a.png", "nested/b.png"]
    assert set(got["label"]) <= {"c0", "c1"} and np.allclose(got[["probability_c0", "probability_c1"]].sum(axis=1), 1)
