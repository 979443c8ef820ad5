"""Data: splits are disjoint and cover the data, preprocessing sees only training rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlrun.config import DatasetConfig
from dlrun.data import load_table
from dlrun.data.csv_table import infer_task
from dlrun.data.split import (
    check_class_counts,
    fold_indices,
    holdout_indices,
    make_splits,
    subsample,
)
from dlrun.data.table import Table
from dlrun.errors import ConfigError, DataError


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("seed", [0, 7])
def test_holdout_splits_are_disjoint_and_cover_every_row(task, seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=300) if task == "regression" else rng.integers(0, 2 if task == "binary" else 4, 300)
    train, val, test = holdout_indices(y, task=task, test_size=0.2, val_size=0.25, seed=seed)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(300))
    assert len(test) == 60 and len(val) == 60


def test_holdout_is_stratified_for_classification():
    y = np.array([0] * 270 + [1] * 30)
    train, val, test = holdout_indices(y, task="binary", test_size=0.2, val_size=0.25, seed=0)
    for part in (train, val, test):
        assert abs(y[part].mean() - 0.1) < 0.02


@pytest.mark.parametrize("repeats", [1, 3])
def test_folds_partition_the_development_rows(repeats):
    y = np.array([0, 1, 2] * 40)
    folds = list(fold_indices(y, task="multiclass", folds=4, repeats=repeats, seed=0))
    assert len(folds) == 4 * repeats
    for r in range(repeats):
        vals = np.concatenate([va for _, va in folds[4 * r : 4 * r + 4]])
        assert sorted(vals.tolist()) == list(range(120))
    for tr, va in folds:
        assert not set(tr) & set(va)


def test_scaling_is_fitted_on_the_training_split_only():
    x = np.arange(100, dtype=float).reshape(-1, 1)
    y = np.array([0, 1] * 50)
    table = Table("t", x, y, "binary", ["a", "b"])
    train, val, test = np.arange(0, 60), np.arange(60, 80), np.arange(80, 100)
    splits = make_splits(table, train, val, test, scaling="standard")
    assert abs(splits.train.x.mean()) < 1e-5 and abs(splits.train.x.std() - 1) < 1e-4
    # Validation and test rows lie above every training row, so they stay far from 0 if not refitted.
    assert splits.val.x.min() > 1.5 and splits.test.x.min() > splits.val.x.max()


def test_minmax_scaling_uses_training_range():
    x = np.linspace(0, 10, 50).reshape(-1, 1)
    table = Table("t", x, np.array([0, 1] * 25), "binary", ["a", "b"])
    splits = make_splits(table, np.arange(25), np.arange(25, 35), np.arange(35, 50), scaling="minmax")
    assert splits.train.x.min() == 0 and splits.train.x.max() == 1
    assert splits.test.x.max() > 1


def test_regression_targets_are_standardized_with_training_statistics():
    x = np.random.default_rng(0).normal(size=(40, 2))
    y = np.arange(40, dtype=float)
    splits = make_splits(Table("t", x, y, "regression"), np.arange(30), np.arange(30, 35),
                         np.arange(35, 40), scaling="none")
    assert splits.y_mean == pytest.approx(14.5)
    assert splits.train.y.mean() == pytest.approx(0, abs=1e-9)
    np.testing.assert_allclose(splits.test.y * splits.y_std + splits.y_mean, y[35:])


@pytest.mark.parametrize(
    ("name", "task", "rows", "features"),
    [("breast_cancer", "binary", 569, 30), ("digits", "multiclass", 1797, 64),
     ("diabetes", "regression", 442, 10), ("mnist_5k", "multiclass", 5000, 784)],
)
def test_bundled_datasets_load_offline(name, task, rows, features):
    table = load_table(DatasetConfig(name=name))
    assert (table.task, table.n_rows, table.x.shape[1]) == (task, rows, features)
    assert np.isfinite(np.asarray(table.x, dtype=float)).all()


def test_mnist_pixels_are_in_unit_range():
    table = load_table(DatasetConfig(name="mnist_5k"))
    assert table.x.min() >= 0 and table.x.max() <= 1 and table.image_shape == (28, 28, 1)


def test_unknown_dataset_name_says_how_to_fix():
    with pytest.raises(ConfigError, match="registered"):
        load_table(DatasetConfig(name="nope"))


def test_subsample_keeps_class_shares():
    table = load_table(DatasetConfig(name="breast_cancer"))
    small = subsample(table, 100, seed=0)
    assert small.n_rows == 100
    assert abs(small.y.mean() - table.y.mean()) < 0.02


@pytest.mark.parametrize(
    ("values", "task"),
    [(["a", "b", "a"], "binary"), (["x", "y", "z"], "multiclass"), ([0, 1, 1], "binary"),
     ([1, 2, 3, 4, 5], "multiclass"), ([0.5, 1.2, 3.3], "regression"), (list(range(100)), "regression"),
     ([True, False, True], "binary"), ([0.5, 1.5, 1.5, 0.5], "binary"), ([0.5, 1.5, 2.5], "regression")],
)
def test_infer_task(values, task):
    assert infer_task(pd.Series(values)) == task


def _write(tmp_path, frame, name="data.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_csv_mixes_numeric_and_text_columns(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, 60), "city": rng.choice(["paris", "oslo", "rome"], 60),
        "score": rng.normal(size=60), "label": rng.choice(["yes", "no"], 60),
    })
    path = _write(tmp_path, frame)
    table = load_table(DatasetConfig(name="csv", path=str(path), target="label"))
    assert table.task == "binary" and table.class_names == ["no", "yes"]
    train, val, test = holdout_indices(table.y, task="binary", test_size=0.2, val_size=0.2, seed=0)
    splits = make_splits(table, train, val, test, scaling="standard")
    assert splits.train.x.shape[1] == 2 + 3  # two numeric columns, three one-hot city columns
    assert set(np.unique(splits.train.x[:, 2:])) <= {0.0, 1.0}
    assert "city_oslo" in splits.feature_names


@pytest.mark.parametrize(
    ("frame", "target", "options", "fragment"),
    [
        (pd.DataFrame({"a": [1, 2, None, 4], "label": [0, 1, 0, 1]}), "label", {"missing": "refuse"},
         "missing values in a (1)"),
        (pd.DataFrame({"a": [1, 2, 3, 4], "label": [0, 1, 0, 1]}), "y", {}, "is not a column"),
        (pd.DataFrame({"a": [1, 2, 3, 4], "label": ["x"] * 4}), "label", {}, "single class"),
        (pd.DataFrame({"label": [0, 1, 0, 1]}), "label", {}, "no feature columns"),
        (pd.DataFrame({"a": [1.0, np.inf, 3, 4], "label": [0, 1, 0, 1]}), "label", {}, "infinite values in a"),
    ],
)
def test_csv_errors_are_one_clear_line(tmp_path, frame, target, options, fragment):
    path = _write(tmp_path, frame)
    with pytest.raises(DataError) as info:
        load_table(DatasetConfig(name="csv", path=str(path), target=target, **options))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_csv_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no file at"):
        load_table(DatasetConfig(name="csv", path=str(tmp_path / "nope.csv"), target="y"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_table(DatasetConfig(name="csv", path=str(empty), target="y"))


def test_tiny_classes_are_refused_before_splitting():
    table = Table("t", np.zeros((10, 1)), np.array([0] * 9 + [1]), "binary", ["a", "b"])
    with pytest.raises(DataError, match="fewer than 3 rows"):
        check_class_counts(table)


@pytest.mark.parametrize("fraction", [0.05, 0.09, 0.2])
def test_mnist_imbalanced_has_rare_classes_in_training_and_a_balanced_test_split(fraction):
    from dlrun.config import DatasetConfig
    from dlrun.data.mnist import MINORITY_CLASSES, load_mnist_imbalanced

    table = load_mnist_imbalanced(DatasetConfig(name="mnist_imbalanced", minority_fraction=fraction))
    assert np.bincount(table.y[table.test_rows]).tolist() == [100] * 6
    train, val, test = holdout_indices(table.y, task="multiclass", test_size=0.2, val_size=0.2, seed=3,
                                       test=table.test_rows)
    np.testing.assert_array_equal(test, np.sort(table.test_rows))
    counts = np.bincount(table.y[train], minlength=6)
    share = counts[list(MINORITY_CLASSES)].sum() / counts.sum()
    assert share <= fraction and share > fraction - 0.01  # at most the fraction, and close to it
    assert len({*train, *val, *test}) == table.n_rows  # disjoint and covering


def test_fixed_test_rows_survive_subsampling():
    from dlrun.data.split import subsample

    y = np.repeat([0, 1], 50)
    table = Table("t", np.arange(100.0).reshape(-1, 1), y, "binary", ["a", "b"], test_rows=np.arange(0, 100, 5))
    small = subsample(table, 40, seed=0)
    np.testing.assert_array_equal(np.sort(small.index[small.test_rows]),
                                  np.intersect1d(small.index, np.arange(0, 100, 5)))


def test_a_class_rarer_than_the_folds_is_said_in_one_line_not_in_scikit_learns_warning(caplog):
    import warnings

    y = np.array([0] * 40 + [1] * 38 + [2] * 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = list(fold_indices(y, task="multiclass", folds=5, repeats=1, seed=0))
    assert len(pairs) == 5 and not caught
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == ["a class has only 2 row(s) in the development split, fewer than eval.folds=5: "
                    "some folds validate without it"]
