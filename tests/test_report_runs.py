"""Reading run folders: overrides as Hydra parses them, config keys carried as data."""

from __future__ import annotations

import pandas as pd
import pytest

from dlrun.report.aggregate import leaderboard, swept_keys
from dlrun.report.runs import collect_runs, read_override
from dlrun.report.study import report_sweep
from tests.test_sweep_report import make_run


@pytest.mark.parametrize(("text", "expected"), [
    ("optimizer=adam", ("optimizer", "adam")),
    ('dataset.path="a b.csv"', ("dataset.path", "a b.csv")),
    ("+tag='x=y z'", ("tag", "x=y z")),
    ("model.sizes=[1,2]", ("model.sizes", "[1,2]")),
    ("model.sizes=[1, 2]", ("model.sizes", "[1,2]")),
    ("+trainer.note=first", ("trainer.note", "first")),
    ("++trainer.epochs=3", ("trainer.epochs", "3")),
    ("~reg", ("reg", "")),
    ("trainer.device=cuda:0", ("trainer.device", "cuda:0")),
    ("trainer.save_model=true", ("trainer.save_model", "true")),
    ("hydra.sweep.dir=/tmp/x", (None, "/tmp/x")),
    ("hydra/launcher=joblib", (None, "joblib")),
])
def test_an_override_is_read_as_hydra_parses_it(text, expected):
    assert read_override(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("name=a=b", ("name", "a=b")),
    ("+label=é", ("label", "é")),
    ("hydra.job.name=x=y", (None, "x=y")),
])
def test_an_override_hydra_cannot_parse_is_split_on_its_first_equals(text, expected):
    assert read_override(text) == expected


def test_config_keys_come_back_as_data(tmp_path):
    for i, (opt, path, sizes) in enumerate([("sgd", '"a b.csv"', "[1,2]"), ("adam", '"c=d.csv"', "[4, 8]")]):
        make_run(tmp_path / str(i), val=[0.5 + i / 10],
                 overrides={"optimizer": opt, "+dataset.path": path, "model.sizes": sizes})
    runs = collect_runs([tmp_path])
    assert runs.config_keys == swept_keys(runs) == ["optimizer", "dataset.path", "model.sizes"]
    assert list(runs.frame["dataset.path"]) == ["a b.csv", "c=d.csv"]
    assert list(runs.frame["model.sizes"]) == ["[1,2]", "[4,8]"]
    assert not [c for c in runs.frame.columns if c.startswith("cfg.")]


def test_an_unparsable_override_does_not_stop_the_report(tmp_path):
    make_run(tmp_path / "0", val=[0.5], overrides={"name": "a=b", "seed": "0"})
    make_run(tmp_path / "1", val=[0.6], overrides={"name": "c", "seed": "1"})
    runs = collect_runs([tmp_path])
    assert list(runs.frame["name"]) == ["a=b", "c"]


def test_the_seed_override_and_the_recorded_seed_share_one_column(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path / str(seed), val=[0.5], overrides={"optimizer": "sgd", "seed": str(seed)})
    runs = collect_runs([tmp_path])
    assert runs.config_keys == ["optimizer", "seed"] and swept_keys(runs) == []
    assert list(runs.frame.columns).count("seed") == 1
    assert list(runs.frame["seed"]) == [0, 1]
    assert list(leaderboard(runs).columns[:3]) == ["optimizer", "seed", "headline"]


def test_the_leaderboard_header_names_config_keys_then_metrics(tmp_path):
    for i, lr in enumerate(["0.1", "0.01"]):
        make_run(tmp_path / str(i), val=[0.5 + i / 10], overrides={"optimizer.lr": lr, "+trainer.tag": "x"})
    report_sweep([tmp_path], out_dir=tmp_path)
    header = list(pd.read_csv(tmp_path / "leaderboard.csv").columns)
    assert header[:4] == ["optimizer.lr", "trainer.tag", "headline", "status"]
    assert header.count("seed") == 1 and not [c for c in header if c.startswith("cfg.")]


def test_a_key_named_like_a_metric_column_is_left_out(tmp_path, caplog):
    make_run(tmp_path / "0", val=[0.5], overrides={"+status": "odd", "optimizer": "sgd"})
    runs = collect_runs([tmp_path])
    assert runs.config_keys == ["optimizer"] and list(runs.frame["status"]) == ["ok"]
    assert "leaving the override(s) status out of the report" in caplog.text
