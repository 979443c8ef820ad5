"""The job's stages: per-row metadata, the run record, and capabilities plugged into stages."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from dlrun.capabilities import Capability, capabilities_for
from dlrun.config import DatasetConfig
from dlrun.data import csv_table
from dlrun.data.split import holdout_indices, make_splits, subsample
from dlrun.data.table import Part, Table
from dlrun.record import RecordError, RunRecord, Section, from_dict, read_record, write_record
from tests.conftest import compose_config

# --------------------------------------------------------------------- per-row metadata


def _table(n: int = 200, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.arange(n, dtype=float), rng.normal(size=n)])  # column 0: the row's id
    return Table("t", x, (rng.random(n) < 0.4).astype(np.int64), "binary", ["a", "b"],
                 sensitive=np.array(["f", "m"])[rng.integers(0, 2, n)])


@pytest.mark.parametrize("max_rows", [None, 120, 60])
def test_row_index_and_group_survive_subsampling_and_splitting(max_rows):
    table = _table()
    small = subsample(table, max_rows, seed=3)
    train, val, test = holdout_indices(small.y, task="binary", test_size=0.2, val_size=0.25, seed=3)
    splits = make_splits(small, train, val, test, scaling="none")
    seen = np.concatenate([p.index for p in splits.parts().values()])
    assert len(seen) == len(set(seen)) == small.n_rows  # disjoint, covering the subsample
    for part in splits.parts().values():
        np.testing.assert_array_equal(part.x[:, 0], part.index)  # the row id column is the index
        np.testing.assert_array_equal(part.group, table.sensitive[part.index])
        np.testing.assert_array_equal(part.y, table.y[part.index])
        np.testing.assert_array_equal(part.weight, np.ones(len(part)))


def test_resampling_a_part_carries_its_metadata_along():
    part = Part(np.arange(10.0).reshape(5, 2), np.array([0, 1, 0, 1, 1]), index=np.array([7, 3, 9, 1, 4]),
                weight=np.array([1.0, 2.0, 3.0, 4.0, 5.0]), group=np.array(list("abcde")))
    over = part.take(np.array([1, 1, 3, 0]))  # a row twice, as oversampling does
    np.testing.assert_array_equal(over.index, [3, 3, 1, 7])
    np.testing.assert_array_equal(over.weight, [2.0, 2.0, 4.0, 1.0])
    np.testing.assert_array_equal(over.group, list("bbda"))
    np.testing.assert_array_equal(over.x[:, 0], [2.0, 2.0, 6.0, 0.0])


def test_a_part_refuses_per_row_arrays_of_another_length():
    with pytest.raises(ValueError, match="must all have 3 rows"):
        Part(np.zeros((3, 2)), np.zeros(3), weight=np.ones(2))


@pytest.mark.parametrize("as_feature", [False, True])
def test_the_sensitive_column_is_an_input_only_when_asked(tmp_path, as_feature):
    rows = [f"{i % 5},{'xy'[i % 2]},{'gh'[(i // 2) % 2]},{i % 3 == 0}" for i in range(60)]
    (tmp_path / "t.csv").write_text("a,b,g,y\n" + "\n".join(rows) + "\n")
    cfg = DatasetConfig(name="csv", path=str(tmp_path / "t.csv"), target="y", sensitive="g",
                        sensitive_as_feature=as_feature)
    table = csv_table.load(cfg)
    train, val, test = holdout_indices(table.y, task=table.task, test_size=0.2, val_size=0.2, seed=0)
    splits = make_splits(table, train, val, test, scaling="standard")
    assert ("g" in splits.input_columns) is as_feature
    assert any(name.startswith("g_") for name in splits.feature_names) is as_feature
    source = pd.read_csv(tmp_path / "t.csv")
    for part in splits.parts().values():
        np.testing.assert_array_equal(part.group, source["g"].to_numpy()[part.index])


# ----------------------------------------------------------------------------- the record


def test_the_run_record_round_trips_with_its_sections(tmp_path):
    record = RunRecord(status="ok", objective=0.9, dataset="d", headline="roc_auc", train={"roc_auc": 1.0},
                       val={"roc_auc": 0.9}, test={"roc_auc": None}, seed=3, overrides=["seed=3"],
                       inputs={"columns": ["a"], "width": 1, "kept_aside": "g"},
                       sections={"fairness": {"demographic_parity_difference": 0.2}})
    write_record(tmp_path, record)
    raw = json.loads((tmp_path / "metrics.json").read_text())
    assert raw["schema"] == 2 and raw["fairness"] == {"demographic_parity_difference": 0.2}
    back = read_record(tmp_path)
    assert back == record
    assert back.score("val") == 0.9 and np.isnan(back.score("test"))


def test_a_record_written_before_the_schema_reads_as_version_1():
    old = {"status": "ok", "headline": "accuracy", "val": {"accuracy": 0.5}, "overrides": ["seed=0"]}
    record = from_dict(old)
    assert record.schema == 1 and record.score("val") == 0.5 and record.sections == {}


@pytest.mark.parametrize("data", [[1, 2, 3], {"status": "fine"}, {"status": "ok", "val": [0.5]}, "ok"])
def test_a_file_of_another_shape_is_not_a_record(data):
    with pytest.raises(RecordError, match="not a dlrun run record"):
        from_dict(data, source="x/metrics.json")


def test_invalid_json_is_a_record_error(tmp_path):
    (tmp_path / "metrics.json").write_text('{"status": "ok", ')
    with pytest.raises(RecordError, match="not valid JSON"):
        read_record(tmp_path)


# ------------------------------------------------------------ capabilities plugged into stages


class _Probe(Capability):
    """Takes part in every stage, and records what it saw."""

    def __init__(self):
        self.seen: dict[str, object] = {}

    def prepare(self, splits, ctx):
        self.seen["train_index"] = splits.train.index.copy()
        return replace(splits, train=replace(splits.train, weight=np.full(len(splits.train), 2.0)))

    def post_process(self, decide, predictions, splits, ctx):
        self.seen["val_rows"] = len(predictions["val"])
        return lambda pred, part: np.zeros(len(part), dtype=np.int64)  # everyone negative

    def evaluate(self, outcome, ctx):
        return {"positives": int(sum(outcome.labels["test"])), "weights": float(outcome.splits.train.weight.mean())}

    def report(self, outcomes, ctx):
        (ctx.run_dir / "probe.txt").write_text("probe")
        return Section("probe", metrics={"folds": [o.extra["probe"] for o in outcomes]},
                       summary=["the probe ran"], files=[("probe file", "probe.txt")])


def test_capabilities_are_chosen_from_the_config():
    names = lambda overrides: [c.name for c in capabilities_for(  # noqa: E731
        __import__("omegaconf").OmegaConf.to_object(compose_config(overrides)))]
    assert names([]) == ["classification"]
    assert names(["reg=early_stopping", "trainer.save_model=true"]) == ["early_stopping", "classification", "save_model"]


@pytest.mark.slow
def test_a_registered_capability_plugs_into_every_stage(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from dlrun import capabilities
    from dlrun.run import run_job

    probe = _Probe()
    monkeypatch.setitem(capabilities._REGISTRY, "probe", lambda cfg: probe)
    rows = [f"{i % 7},{(i * 3) % 5},{'gh'[i % 2]},{int(i % 7 + (i * 3) % 5 > 5)}" for i in range(120)]
    (tmp_path / "t.csv").write_text("a,b,g,y\n" + "\n".join(rows) + "\n")
    cfg = compose_config(["dataset=csv", f"dataset.path={tmp_path / 't.csv'}", "dataset.target=y",
                          "dataset.sensitive=g", "trainer.epochs=2", "trainer.progress=none"])
    OmegaConf.set_struct(cfg, False)
    run = tmp_path / "run"
    run_job(cfg, run)

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["probe"] == {"folds": [{"positives": 0, "weights": 2.0}]}
    assert metrics["inputs"]["columns"] == ["a", "b"] and metrics["inputs"]["kept_aside"] == "g"
    assert len(probe.seen["train_index"]) == metrics["sizes"]["train"]
    assert probe.seen["val_rows"] == metrics["sizes"]["val"]
    # every test row predicted negative: accuracy is the test split's share of negatives
    report = pd.read_csv(run / "classification_report.csv", index_col=0)
    assert report.loc["1", "recall"] == 0.0
    assert metrics["test"]["accuracy"] == pytest.approx(report.loc["0", "support"] / metrics["sizes"]["test"])
    summary = (run / "summary.md").read_text()
    assert "## Probe" in summary and "the probe ran" in summary and "[probe file](probe.txt)" in summary


class _TwoPhases(Capability):
    """Head first (only the output layer trains), then everything at a tenth of the rate;
    optionally stops the run (as Ctrl-C would) after a given epoch."""

    def __init__(self, stop_after: int | None = None):
        self.stop_after = stop_after

    def phases(self, phases, ctx):
        (only,) = phases
        head = lambda model: [setattr(layer, "trainable", layer.name == "output") for layer in model.layers]  # noqa: E731
        everything = lambda model: [setattr(layer, "trainable", True) for layer in model.layers]  # noqa: E731
        return [replace(only, name="head", epochs=3, trainable=head),
                replace(only, name="tune", epochs=4, optimizer=replace(only.optimizer, lr=only.optimizer.lr / 10),
                        trainable=everything)]

    def callbacks(self, ctx):
        import keras

        stop_after = self.stop_after

        class Stop(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if stop_after is not None and epoch + 1 == stop_after:
                    raise KeyboardInterrupt

        return [Stop()]


def _two_phase_run(tmp_path, monkeypatch, name: str, *, stop_after=None, resume=False):
    from omegaconf import OmegaConf

    from dlrun import capabilities
    from dlrun.run import run_job

    monkeypatch.setitem(capabilities._REGISTRY, "two_phases", lambda cfg: _TwoPhases(stop_after))
    cfg = compose_config(["trainer.progress=none", "trainer.checkpoint_every=1", "trainer.checkpoint_seconds=0", "reg=dropout",
                          f"trainer.resume={str(resume).lower()}", "optimizer.lr=0.01"])
    OmegaConf.set_struct(cfg, False)
    run_job(cfg, tmp_path / name)
    return json.loads((tmp_path / name / "metrics.json").read_text())


@pytest.mark.slow
def test_phases_train_in_turn_and_a_resume_in_phase_two_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    full = _two_phase_run(tmp_path, monkeypatch, "full")
    assert full["phases"] == [{"name": "head", "epochs": 3, "first_epoch": 1, "last_epoch": 3},
                              {"name": "tune", "epochs": 4, "first_epoch": 4, "last_epoch": 7}]
    history = pd.read_csv(tmp_path / "full" / "history.csv")
    assert list(history["phase"]) == ["head"] * 3 + ["tune"] * 4
    assert history["lr"].iloc[3] == pytest.approx(history["lr"].iloc[0] / 10)

    with pytest.raises(KeyboardInterrupt):
        _two_phase_run(tmp_path, monkeypatch, "cut", stop_after=5)  # in phase two
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["status"] == "interrupted"
    resumed = _two_phase_run(tmp_path, monkeypatch, "cut", resume=True)
    assert resumed["phases"] == full["phases"]
    for split in ("train", "val", "test"):
        assert resumed[split] == full[split]
    resumed_history = pd.read_csv(tmp_path / "cut" / "history.csv")
    pd.testing.assert_frame_equal(resumed_history.drop(columns="seconds"), history.drop(columns="seconds"))


def test_phases_fix_which_layers_train():
    import keras

    from dlrun.models.mlp import build_mlp
    from dlrun.stages import plan_phases
    from dlrun.task import task_spec

    cfg = __import__("omegaconf").OmegaConf.to_object(compose_config([]))
    phases = plan_phases([_TwoPhases()], type("Ctx", (), {"cfg": cfg})())
    model = build_mlp((4,), task_spec("binary", 2, np.array([0, 1])), width=8, depth=2)
    phases[0].trainable(model)
    head_params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert head_params == 8 + 1  # the output layer's kernel and bias only
    phases[1].trainable(model)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == model.count_params()
    assert phases[1].optimizer.lr == pytest.approx(phases[0].optimizer.lr / 10)
    keras.backend.clear_session()


# ---------------------------------------------------------------------- the reference model


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_reference_is_fitted_on_training_rows_and_scored_on_every_part(task):
    from dlrun.reference import fit_reference
    from dlrun.task import task_spec

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = {"binary": (x[:, 0] > 0).astype(np.int64), "multiclass": np.digitize(x[:, 0], [-0.5, 0.5]),
         "regression": 2 * x[:, 0] + 0.1 * rng.normal(size=300)}[task]
    classes = {"binary": ["a", "b"], "multiclass": ["a", "b", "c"], "regression": []}[task]
    splits = make_splits(Table("t", x, y, task, classes), np.arange(200), np.arange(200, 250),
                         np.arange(250, 300), scaling="standard")
    spec = task_spec(task, splits.n_classes, splits.train.y)
    reference = fit_reference(splits, spec, seed=0)
    assert reference.model == "histogram gradient boosting"
    assert set(reference.scores) == {"train", "val", "test"}
    assert reference.scores["val"][spec.fit_metric] > 0.8  # an easy signal is learnt
    # a zero sample weight on every row of class 1 hides that class from the reference
    if task == "binary":
        hidden = replace(splits, train=replace(splits.train, weight=(splits.train.y == 0).astype(float)))
        assert fit_reference(hidden, spec, seed=0).scores["val"]["accuracy"] < 0.7
