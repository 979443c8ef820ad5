"""Real tables (dlrun/data/csv_table.py, split.py, notes.py): dialects, identifier columns,
bounded one-hot, missing values, and the notes that say what was done."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlrun.config import DatasetConfig
from dlrun.data import load_table
from dlrun.data.notes import summary_lines
from dlrun.data.split import holdout_indices, make_splits
from dlrun.data.table import Table
from dlrun.errors import ConfigError, DataError


def _frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(18, 80, n), "city": rng.choice(["paris", "oslo", "rome"], n),
        "score": rng.normal(size=n).round(3), "label": rng.choice(["yes", "no"], n),
    })


def _csv(tmp_path, frame: pd.DataFrame, *, sep: str = ",", encoding: str = "utf-8", name: str = "t.csv"):
    path = tmp_path / name
    path.write_bytes(frame.to_csv(index=False, sep=sep).encode(encoding))
    return path


def _load(path, **options) -> Table:
    return load_table(DatasetConfig(name="csv", path=str(path), target=options.pop("target", "label"), **options))


def _splits(table: Table, *, scaling: str = "standard", seed: int = 0):
    train, val, test = holdout_indices(table.y, task=table.task, test_size=0.2, val_size=0.2, seed=seed)
    return make_splits(table, train, val, test, scaling=scaling), (train, val, test)


# --- dialects -------------------------------------------------------------------------


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
@pytest.mark.parametrize("given", [False, True], ids=["sniffed", "given"])
def test_delimiters_are_sniffed_or_taken_from_the_config(tmp_path, sep, given):
    frame = _frame()
    frame["note"] = "a, b; c | d"  # the other delimiters inside quoted cells
    path = _csv(tmp_path, frame, sep=sep)
    table = _load(path, sep=("tab" if sep == "\t" else sep) if given else None)
    assert list(table.x.columns) == ["age", "city", "score", "note"]
    assert table.notes["delimiter"] == sep and table.notes["delimiter_detected"] is not given
    np.testing.assert_array_equal(table.x["age"], frame["age"])
    assert table.class_names == ["no", "yes"]


def test_a_semicolon_file_with_decimal_commas_keeps_its_numbers(tmp_path):
    frame = _frame()
    path = _csv(tmp_path, frame, sep=";")
    path.write_text(path.read_text().replace(".", ","))
    table = _load(path)
    assert list(table.x.columns) == ["age", "city", "score"]  # not dropped as an identifier
    np.testing.assert_allclose(table.x["score"], frame["score"])
    assert table.notes["decimal_comma_columns"] == ["score"]
    assert "- read `score` as numbers written with a decimal comma" in summary_lines(table.notes)


def test_the_wrong_delimiter_names_the_key_that_fixes_it(tmp_path):
    path = _csv(tmp_path, _frame(), sep=";")
    with pytest.raises(DataError, match=r"set dataset.sep to the file's delimiter") as info:
        _load(path, sep=",")
    assert "\n" not in str(info.value)


def test_a_latin1_file_is_refused_with_the_override_and_read_with_it(tmp_path):
    frame = _frame()
    frame["city"] = frame["city"].replace({"paris": "Montréal", "oslo": "Zürich"})
    path = _csv(tmp_path, frame, encoding="latin-1")
    with pytest.raises(DataError, match="not utf-8 text .*set dataset.encoding=latin-1") as info:
        _load(path)
    assert "\n" not in str(info.value)
    table = _load(path, encoding="latin-1")
    assert set(table.x["city"]) == {"Montréal", "Zürich", "rome"}
    assert table.notes["encoding"] == "latin-1"


def test_a_utf16_file_is_pointed_at_utf16(tmp_path):
    path = _csv(tmp_path, _frame(), sep="\t", encoding="utf-16")
    with pytest.raises(DataError, match="dataset.encoding=utf-16"):
        _load(path)
    assert _load(path, encoding="utf-16").n_rows == 120


def test_adult_style_cells_are_stripped_and_question_marks_are_missing(tmp_path):
    path = tmp_path / "adult.csv"
    rows = [f"{20 + i}, {'?' if i % 10 == 0 else 30 + i}, {' Male' if i % 2 else ' Female'}, "
            f"{'?' if i % 7 == 0 else 'Private'}, {'>50K' if i % 3 else '<=50K'}" for i in range(60)]
    path.write_text("age, hours, sex, work, income\n" + "\n".join(rows) + "\n")
    table = _load(path, target="income", na_values=["?"])
    assert list(table.x.columns) == ["age", "hours", "sex", "work"]
    assert pd.api.types.is_numeric_dtype(table.x["hours"])  # '?' no longer makes it text
    assert set(table.x["sex"]) == {"Male", "Female"} and table.class_names == ["<=50K", ">50K"]
    assert table.notes["missing_cells"] == {"hours": 6, "work": 9}


# --- identifier columns and the one-hot cap -----------------------------------------------


def test_an_identifier_column_is_dropped_and_named_while_categories_and_numbers_stay(tmp_path, caplog):
    frame = _frame(n=300)
    frame.insert(0, "id", [f"person-{i:05d}" for i in range(300)])
    frame["serial"] = np.arange(300)  # unique, but a number: never dropped this way
    table = _load(_csv(tmp_path, frame))
    assert "id" not in table.x.columns and {"city", "serial"} <= set(table.x.columns)
    assert table.notes["dropped_identifier_columns"] == ["id"]
    assert table.notes["identifier_columns"] == {"id": {"distinct": 300, "rows": 300}}
    assert "'id'" in caplog.text and "identifier" in caplog.text


@pytest.mark.parametrize(("fraction", "min_distinct", "dropped"), [(0.9, 50, True), (1.0, 50, False),
                                                                   (0.9, 301, False)])
def test_the_identifier_thresholds_come_from_the_config(tmp_path, fraction, min_distinct, dropped):
    frame = _frame(n=300)
    frame["id"] = [f"p{i}" for i in range(300)]
    table = _load(_csv(tmp_path, frame), identifier_fraction=fraction, identifier_min_distinct=min_distinct)
    assert ("id" not in table.x.columns) is dropped


@pytest.mark.parametrize("max_categories", [2, 10, 50])
def test_a_5000_category_column_is_encoded_into_at_most_max_categories_columns(tmp_path, max_categories):
    n = 10_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"code": [f"c{i}" for i in rng.integers(0, 5000, n)], "x": rng.normal(size=n),
                          "label": rng.choice([0, 1], n)})
    assert frame["code"].nunique() > 4000
    table = _load(_csv(tmp_path, frame), max_categories=max_categories, min_frequency=1)
    assert "code" in table.x.columns  # about half the rows distinct: a category, not an identifier
    splits, _ = _splits(table)
    code_columns = [n for n in splits.feature_names if n.startswith("code_")]
    assert 1 < len(code_columns) <= max_categories and "code_infrequent_sklearn" in code_columns
    assert splits.train.x.shape[1] == 1 + len(code_columns)
    seen_in_training = table.x["code"].iloc[_splits(table)[1][0]].nunique()
    assert splits.notes["infrequent_categories"]["code"] == seen_in_training - (len(code_columns) - 1)
    for part in splits.parts().values():  # every row, unseen categories included, is one-hot
        np.testing.assert_array_equal(part.x[:, 1:].sum(axis=1), 1.0)


def test_categories_rarer_than_min_frequency_share_the_infrequent_column(tmp_path):
    frame = _frame(n=200)
    frame.loc[:2, "city"] = "tiny"  # 3 rows in the whole table, fewer in training
    splits, _ = _splits(_load(_csv(tmp_path, frame), min_frequency=5))
    assert "city_tiny" not in splits.feature_names and "city_infrequent_sklearn" in splits.feature_names


@pytest.mark.parametrize(("option", "fragment"), [
    ({"max_categories": -3}, "dataset.max_categories must be at least 2"),
    ({"min_frequency": 0}, "dataset.min_frequency must be at least 1"),
    ({"missing": "nonsense"}, "dataset.missing='nonsense' is not one of: impute, drop, refuse"),
    ({"sep": ";;"}, "dataset.sep must be one character"),
    ({"encoding": "klingon"}, "dataset.encoding='klingon' is not an encoding"),
    ({"identifier_fraction": 0.0}, "dataset.identifier_fraction must be in (0, 1]"),
])
def test_bad_table_options_are_one_clear_line(tmp_path, option, fragment):
    with pytest.raises(ConfigError) as info:
        _load(_csv(tmp_path, _frame()), **option)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# --- missing values -------------------------------------------------------------------


def _with_gaps(n: int = 200, seed: int = 0) -> pd.DataFrame:
    frame = _frame(n, seed)
    frame["score"] = frame["score"].astype(float)
    frame.loc[frame.index % 9 == 0, "score"] = np.nan
    frame.loc[frame.index % 11 == 0, "city"] = np.nan
    return frame


def test_imputation_is_fitted_on_the_training_rows_only(tmp_path):
    frame = _with_gaps()
    table = _load(_csv(tmp_path, frame))
    train, val, test = holdout_indices(table.y, task=table.task, test_size=0.2, val_size=0.2, seed=0)
    table.x.loc[test, "score"] = table.x.loc[test, "score"] + 1000.0  # test values far off
    splits = make_splits(table, train, val, test, scaling="none")
    col = splits.feature_names.index("score")
    train_median = np.nanmedian(table.x["score"].to_numpy()[train])
    assert abs(train_median - np.nanmedian(table.x["score"])) > 0.1  # the whole table's differs
    for part, rows in ((splits.train, train), (splits.test, test)):
        gaps = table.x["score"].isna().to_numpy()[rows]
        assert gaps.any()
        np.testing.assert_allclose(part.x[gaps, col], train_median, rtol=1e-6)


def test_text_gaps_get_the_training_split_s_most_frequent_value(tmp_path):
    table = _load(_csv(tmp_path, _with_gaps()))
    splits, (train, _, test) = _splits(table, scaling="none")
    top = table.x["city"].iloc[train].mode()[0]
    gaps = table.x["city"].isna().to_numpy()[test]
    assert splits.test.x[gaps, splits.feature_names.index(f"city_{top}")].tolist() == [1.0] * gaps.sum()


def test_indicator_columns_mark_exactly_the_missing_cells(tmp_path):
    table = _load(_csv(tmp_path, _with_gaps()))
    splits, rows = _splits(table)
    assert splits.notes["missing_indicator_columns"] == ["city", "score"]
    for part, idx in zip(splits.parts().values(), rows, strict=True):
        for column in ("score", "city"):
            flag = part.x[:, splits.feature_names.index(f"missingindicator_{column}")]
            np.testing.assert_array_equal(flag, table.x[column].isna().to_numpy()[idx])
        assert np.isfinite(part.x).all()


def test_imputed_cells_per_split_add_up_to_the_table_s_missing_cells(tmp_path):
    table = _load(_csv(tmp_path, _with_gaps()))
    splits, _ = _splits(table)
    assert table.notes["missing_cells"] == {"score": 23, "city": 19}
    assert sum(splits.notes["imputed_cells"].values()) == 42
    assert set(splits.notes["imputed_cells"]) == {"train", "val", "test"}
    assert splits.notes["encoded_width"] == splits.train.x.shape[1] == len(splits.feature_names)


def test_a_table_without_gaps_gets_no_indicator_columns(tmp_path):
    splits, _ = _splits(_load(_csv(tmp_path, _frame())))
    assert splits.feature_names == ["age", "score", "city_oslo", "city_paris", "city_rome"]
    assert splits.notes["imputed_cells"] == {"train": 0, "val": 0, "test": 0}


def test_missing_drop_drops_and_counts_rows_and_keeps_file_positions(tmp_path, caplog):
    frame = _with_gaps()
    table = _load(_csv(tmp_path, frame), missing="drop")
    incomplete = frame[["age", "city", "score"]].isna().any(axis=1)
    assert table.n_rows == 200 - incomplete.sum()
    assert table.notes["rows_dropped_missing"] == incomplete.sum() and table.x.notna().all().all()
    np.testing.assert_array_equal(table.index, np.flatnonzero(~incomplete))
    assert "dataset.missing=drop" in caplog.text


def test_missing_refuse_names_every_column_and_count(tmp_path):
    with pytest.raises(DataError, match=r"has missing values in city \(19\), score \(23\)"):
        _load(_csv(tmp_path, _with_gaps()[["age", "city", "score", "label"]]), missing="refuse")


def test_missing_targets_are_dropped_counted_and_never_imputed(tmp_path, caplog):
    frame = _frame()
    frame["label"] = np.where(frame.index % 2, 1.0, 0.0)
    frame.loc[[3, 50, 77], "label"] = np.nan
    table = _load(_csv(tmp_path, frame))
    assert table.n_rows == 117 and table.class_names == ["0", "1"]  # integers again, not "0.0"
    assert table.notes["rows_dropped_missing_target"] == table.notes["rows_dropped_missing"] == 3
    assert not np.isin([3, 50, 77], table.index).any()
    assert "target 'label' is missing" in caplog.text


def test_infinite_values_are_refused_even_among_missing_ones(tmp_path):
    frame = _with_gaps()
    frame.loc[5, "score"] = np.inf
    with pytest.raises(DataError, match="has infinite values in score;"):
        _load(_csv(tmp_path, frame))


def test_an_empty_column_is_dropped_and_noted(tmp_path):
    frame = _frame()
    frame["blank"] = np.nan
    table = _load(_csv(tmp_path, frame))
    assert "blank" not in table.x.columns and table.notes["dropped_empty_columns"] == ["blank"]


# --- notes ----------------------------------------------------------------------------


def test_notes_survive_take_and_reach_the_splits(tmp_path):
    table = _load(_csv(tmp_path, _with_gaps()))
    small = table.take(np.arange(50))
    assert small.notes == table.notes
    splits, _ = _splits(table)
    assert {k: splits.notes[k] for k in table.notes} == table.notes


def test_summary_lines_say_what_happened_with_the_numbers(tmp_path):
    frame = _with_gaps(n=400)
    frame.insert(0, "id", [f"row-{i}" for i in range(400)])
    frame.loc[[7, 8], "label"] = np.nan
    splits, _ = _splits(_load(_csv(tmp_path, frame, sep=";")))
    text = "\n".join(summary_lines(splits.notes))
    imputed = splits.notes["imputed_cells"]
    assert all(line.startswith("- ") for line in summary_lines(splits.notes))
    assert "- read `t.csv`: 400 rows, `;`-separated (detected), utf-8 text" in text
    assert "- dropped 2 rows whose target is missing" in text
    assert "- dropped identifier-like column `id` (398 distinct values in 398 rows)" in text
    cells = splits.notes["missing_cells"]
    assert f"found {sum(cells.values())} missing cells in 2 columns" in text
    assert (f"- filled {sum(imputed.values())} missing cells (train {imputed['train']}, validation "
            f"{imputed['val']}, test {imputed['test']})") in text
    assert "; 2 indicator columns added" in text
    assert f"- the model sees {splits.train.x.shape[1]} inputs from 3 columns" in text


def test_summary_lines_format_large_numbers_and_skip_what_did_not_happen():
    notes = {"identifier_columns": {"id": {"distinct": 32_561, "rows": 32_561}},
             "imputed_cells": {"train": 2_700, "val": 700, "test": 862}, "missing_indicator_columns": ["a"],
             "infrequent_categories": {"country": 30}, "one_hot": {"max_categories": 20, "min_frequency": 5}}
    assert summary_lines(notes) == [
        "- dropped identifier-like column `id` (32,561 distinct values in 32,561 rows)",
        "- filled 4,262 missing cells (train 2,700, validation 700, test 862) with the median / most frequent "
        "value, fitted on the training split; 1 indicator column added",
        "- merged rare categories (seen in fewer than 5 training rows or beyond 19 per column) into one "
        "infrequent column in 1 text column: `country` 30",
    ]
    assert summary_lines({}) == []
    assert summary_lines({"rows_dropped_missing": 0, "imputed_cells": {"train": 0}}) == []
