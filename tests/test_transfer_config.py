"""Course 5 without training: the digit subsets, model=transfer's config checks, and the
claim check on hand-made run folders with known effects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from dlrun.config import DatasetConfig, validate
from dlrun.data.digit_subsets import TEST_PER_CLASS, load
from dlrun.errors import ConfigError
from dlrun.record import RunRecord, write_record
from dlrun.report.study import report_sweep
from tests.conftest import compose_config

# --- dataset=mnist_digits --------------------------------------------------------------------


@pytest.mark.parametrize("per_class", [10, 200])
def test_digit_subsets_keep_the_digits_asked_with_the_same_test_images_at_every_size(per_class):
    table = load(DatasetConfig(name="mnist_digits", classes=[5, 6, 7, 8, 9], per_class=per_class))
    assert table.class_names == ["5", "6", "7", "8", "9"]
    test = np.zeros(table.n_rows, dtype=bool)
    test[table.test_rows] = True
    assert np.bincount(table.y[test]).tolist() == [TEST_PER_CLASS] * 5
    assert np.bincount(table.y[~test]).tolist() == [per_class] * 5
    small = load(DatasetConfig(name="mnist_digits", classes=[5, 6, 7, 8, 9], per_class=10))
    assert set(table.index[test]) == set(small.index[small.test_rows])  # one test split for every size
    assert not set(table.index[test]) & set(table.index[~test])


def test_digit_subsets_refuse_digits_and_sizes_they_cannot_serve():
    with pytest.raises(ConfigError, match="two or more different digits"):
        load(DatasetConfig(name="mnist_digits", classes=[3, 3]))
    with pytest.raises(ConfigError, match=r"per_class must be in \[2, 400\]"):
        load(DatasetConfig(name="mnist_digits", classes=[0, 1], per_class=401))


# --- model=transfer's keys -----------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.backbone=null"], "model=transfer needs model.backbone"),
    (["model.backbone=mobilenet_v2", "model.mode=partial"], "model.mode='partial' is not one of"),
    (["model.backbone=source"], "model.backbone=source needs model.source"),
    (["model.backbone=mobilenet_v2", "model.weights=/no/such.h5"], "model.weights: no file at /no/such.h5"),
    (["model.backbone=mobilenet_v2", "model.mode=fine_tune", "trainer.epochs=10", "model.fine_tune_epochs=10"],
     r"model.fine_tune_epochs must be in \[1, trainer.epochs - 1\]"),
])
def test_transfer_keys_are_checked_before_tensorflow_starts(overrides, message):
    cfg = compose_config(["dataset=mnist_digits", "model=transfer", *overrides])
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_transfer_refuses_scaled_inputs_before_it_builds_anything():
    from dlrun.capabilities import FoldContext, capabilities_for

    cfg = OmegaConf.to_object(compose_config(["dataset=mnist_digits", "model=transfer", "dataset.scaling=standard"]))
    (transfer,) = [c for c in capabilities_for(cfg) if c.name == "transfer"]
    with pytest.raises(ConfigError, match="set dataset.scaling=none"):
        transfer.prepare(None, FoldContext(cfg=cfg, run_dir=Path("."), fold=0, folds=1))


def test_the_course5_preset_composes_with_its_source_and_its_sweep():
    cfg = compose_config(["experiment=transfer"], return_hydra_config=True)
    validate(cfg)
    assert cfg.model.name == "transfer" and cfg.model.backbone == "source"
    assert "dataset.classes=[0,1,2,3,4]" in list(cfg.model.source)
    assert cfg.hydra.callbacks.prepare_source._target_ == "dlrun.transfer.PrepareSource"
    params = cfg.hydra.sweeper.params
    assert params["model.mode"] == "scratch,feature_extraction,fine_tune"
    assert params["dataset.per_class"] == "10,50,200" and params.seed == "0,1,2"


# --- the claim check -------------------------------------------------------------------------------

# (per class, mode) -> test accuracy before seed noise: pretrained far ahead at 10, level at 200.
CLOSING = {(10, "scratch"): 0.50, (10, "feature_extraction"): 0.80, (10, "fine_tune"): 0.82,
           (200, "scratch"): 0.95, (200, "feature_extraction"): 0.93, (200, "fine_tune"): 0.955}
# Pretrained ahead by the same margin at every size: the gap does not close.
STEADY = {(10, "scratch"): 0.50, (10, "feature_extraction"): 0.70, (10, "fine_tune"): 0.70,
          (200, "scratch"): 0.70, (200, "feature_extraction"): 0.90, (200, "fine_tune"): 0.90}


def _sweep(root: Path, effects: dict) -> str:
    rng = np.random.default_rng(0)
    for job, ((size, mode), score) in enumerate((k, v) for k, v in effects.items() for _ in range(4)):
        seed = job % 4
        noise = rng.normal(0, 0.005)
        run = root / str(job)
        overrides = [f"dataset.per_class={size}", f"model.mode={mode}", f"seed={seed}"]
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        write_record(run, RunRecord(
            status="ok", headline="accuracy", greater_is_better=True, fit_metric="accuracy", seed=seed,
            overrides=overrides, train={"accuracy": 1.0}, val={"accuracy": score + 0.01 + noise},
            test={"accuracy": score + noise}, diagnosis={"gap": 0.0, "verdict": "good fit"}, epochs_run=3,
            best_epoch=3, fit_seconds=1.0, seconds_per_epoch=0.3,
            sections={"transfer": {"backbone": "mobilenet_v2", "backbone_file": None}},
        ))
    report_sweep([root], out_dir=root, study={"kind": "transfer", "name": "transfer"})
    return (root / "study.md").read_text()


def test_the_course5_report_supports_a_gap_that_closes(tmp_path):
    text = _sweep(tmp_path, CLOSING)
    assert "**Verdict: supported** (scarce data: supported; the gap closes: supported)" in text
    assert "chosen on validation at 10 per class: `fine_tune`" in text
    assert "| 10 | fine_tune | 3 |" not in text and "| 10 | fine_tune | 4 |" in text
    assert (tmp_path / "transfer_curve.png").is_file()


def test_the_course5_report_does_not_support_a_gap_that_stays(tmp_path):
    text = _sweep(tmp_path, STEADY)
    assert "(scarce data: supported; the gap closes: inconclusive)" in text
    assert "**Verdict: inconclusive**" in text
