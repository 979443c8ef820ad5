"""Class-imbalance treatment: the training part only, exact proportions, metadata kept."""

from __future__ import annotations

import numpy as np
import pytest

from dlrun.data.table import Part, Splits
from dlrun.errors import ConfigError
from dlrun.sampling import Sampling, balanced_weights, resample

COUNTS = (60, 30, 6)  # an imbalanced three-class training part


def _part(seed: int = 0) -> Part:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), COUNTS)
    x = (rng.normal(size=(len(y), 4)) + y[:, None]).astype(np.float32)
    return Part(x, y, index=np.arange(100, 100 + len(y)), weight=rng.uniform(0.5, 1.5, len(y)),
                group=np.array(["f", "m"])[rng.integers(0, 2, len(y))])


def test_balanced_weights_give_each_class_the_same_total():
    part = _part()
    totals = np.bincount(part.y, weights=balanced_weights(part.y))
    np.testing.assert_allclose(totals, len(part.y) / 3)


@pytest.mark.parametrize(("method", "per_class"), [("oversample", 60), ("undersample", 6), ("smote", 60)])
def test_resampling_gives_exact_class_counts(method, per_class):
    out = resample(_part(), method, seed=0)
    assert np.bincount(out.y).tolist() == [per_class] * 3


@pytest.mark.parametrize("method", ["oversample", "undersample"])
def test_resampled_rows_keep_their_metadata(method):
    part = _part()
    out = resample(part, method, seed=1)
    pos = out.index - 100  # each row's position in the original part
    np.testing.assert_array_equal(out.x, part.x[pos])
    np.testing.assert_array_equal(out.y, part.y[pos])
    np.testing.assert_array_equal(out.weight, part.weight[pos])
    np.testing.assert_array_equal(out.group, part.group[pos])


def test_smote_keeps_the_originals_and_marks_synthetic_rows():
    part = _part()
    out = resample(part, "smote", seed=0)
    n = len(part)
    np.testing.assert_array_equal(out.x[:n], part.x)
    np.testing.assert_array_equal(out.index[:n], part.index)
    assert (out.index[n:] == -1).all() and (out.group[n:] == "synthetic").all()
    assert set(out.y[n:]) == {1, 2}  # only minority classes grow


def test_class_weight_changes_weights_not_rows():
    part = _part()
    out = resample(part, "class_weight", seed=0)
    np.testing.assert_array_equal(out.index, part.index)
    np.testing.assert_allclose(out.weight, part.weight * balanced_weights(part.y))


@pytest.mark.parametrize("method", ["class_weight", "oversample", "undersample", "smote"])
def test_sampling_changes_the_training_split_only(method):
    val, test = _part(1), _part(2)
    splits = Splits(_part(), val, test, task="multiclass", class_names=["a", "b", "c"],
                    feature_names=[f"f{i}" for i in range(4)])
    cap = Sampling(method, seed=0)
    out = cap.prepare(splits, ctx=None)
    assert out.val is val and out.test is test
    section = cap.report([], ctx=None)
    assert section.metrics["folds"][0]["before"] == {"a": 60, "b": 30, "c": 6}


def test_sampling_refuses_a_regression_target_and_an_unknown_method():
    part = Part(np.zeros((10, 2), dtype=np.float32), np.linspace(0, 1, 10))
    splits = Splits(part, part, part, task="regression", class_names=[], feature_names=["a", "b"])
    with pytest.raises(ConfigError, match="applies to classification"):
        Sampling("oversample", seed=0).prepare(splits, ctx=None)
    with pytest.raises(ConfigError, match="is not one of"):
        resample(_part(), "tomek", seed=0)


@pytest.mark.slow
def test_resampling_does_not_change_the_headline_a_sweep_ranks_by(dlrun_cli, tmp_path):
    import json

    headlines = {}
    for method in ("none", "oversample"):
        done = dlrun_cli(["dataset=mnist_imbalanced", "model=logreg", f"sampling={method}", "trainer.epochs=1",
                          "trainer.progress=none", f"hydra.run.dir={method}"])
        assert done.returncode == 0, done.stderr
        headlines[method] = json.loads((tmp_path / method / "metrics.json").read_text())["headline"]
    assert headlines == {"none": "macro_f1", "oversample": "macro_f1"}
