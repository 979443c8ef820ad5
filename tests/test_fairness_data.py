"""Adult, COMPAS and CSV tables with a sensitive attribute, from small files in the real formats."""

from __future__ import annotations

import json
import urllib.error

import numpy as np
import pandas as pd
import pytest

from dlrun.data import load_table
from dlrun.errors import ConfigError, DataError

ADULT_ROW = "{age}, {work}, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, {sex}, 0, 0, 40, " \
            "United-States, {label}"


def _adult_files(folder, *, n_train: int = 120, n_test: int = 60, seed: int = 0) -> None:
    """adult.data / adult.test as UCI writes them: men earn >50K more often; '?' cells; the test quirks."""
    rng = np.random.default_rng(seed)

    def rows(n, suffix):
        out = []
        for i in range(n):
            sex = "Male" if i % 2 else "Female"
            rich = rng.random() < (0.4 if sex == "Male" else 0.1)
            out.append(ADULT_ROW.format(age=20 + i % 40, work="?" if i % 7 == 0 else "Private", sex=sex,
                                        label=(">50K" if rich else "<=50K") + suffix))
        return out

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adult.data").write_text("\n".join(rows(n_train, "")) + "\n\n")
    (folder / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(rows(n_test, ".")) + "\n")


def test_adult_reads_the_uci_files_with_their_quirks(cfg_factory, tmp_path):
    _adult_files(tmp_path)
    table = load_table(cfg_factory(["dataset=adult", f"dataset.path={tmp_path}"]).dataset)
    assert table.n_rows == 180 and table.task == "binary" and table.class_names == ["<=50K", ">50K"]
    np.testing.assert_array_equal(table.test_rows, np.arange(120, 180))  # adult.test is the test split
    assert set(np.unique(table.y)) == {0, 1}  # '>50K.' read as '>50K'
    assert table.x["workclass"].isna().sum() == sum(i % 7 == 0 for i in range(120)) + sum(i % 7 == 0 for i in range(60))
    assert {"sex", "fnlwgt", "education", "income"}.isdisjoint(table.x.columns)
    assert set(table.sensitive) == {"Male", "Female"}
    assert table.notes["documented_base_rate_difference"]["value"] == pytest.approx(0.196, abs=0.001)


def test_adult_rows_dropped_for_missing_cells_keep_the_test_split(cfg_factory, tmp_path):
    _adult_files(tmp_path)
    table = load_table(cfg_factory(["dataset=adult", f"dataset.path={tmp_path}", "dataset.missing=drop"]).dataset)
    kept_train, kept_test = sum(i % 7 != 0 for i in range(120)), sum(i % 7 != 0 for i in range(60))
    assert table.n_rows == kept_train + kept_test and table.x.notna().all().all()
    np.testing.assert_array_equal(table.test_rows, np.arange(kept_train, kept_train + kept_test))


def test_adult_reads_openmls_copy_when_no_path_is_given(cfg_factory, monkeypatch):
    from sklearn.utils import Bunch

    from dlrun.data.adult import COLUMNS

    rows = [ADULT_ROW.format(age=30 + i, work="Private", sex=sex, label=label).split(", ")
            for i, (sex, label) in enumerate([("Male", ">50K"), ("Female", "<=50K")] * 10)]
    frame = pd.DataFrame(rows, columns=[*COLUMNS[:-1], "class"])  # OpenML names the target 'class'
    frame = frame.astype({c: "category" for c in ("workclass", "sex", "class")})
    monkeypatch.setattr("sklearn.datasets.fetch_openml", lambda **kwargs: Bunch(frame=frame))
    table = load_table(cfg_factory(["dataset=adult"]).dataset)
    assert table.n_rows == 20 and table.test_rows is None  # one table: the test split is drawn at random
    assert list(table.y[:2]) == [1, 0] and list(table.sensitive[:2]) == ["Male", "Female"]
    assert "sex" not in table.x.columns and "fnlwgt" not in table.x.columns


def test_adult_without_its_files_says_what_to_download_and_where(cfg_factory, tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"no adult.data or adult.test there; download .* into that folder"):
        load_table(cfg_factory(["dataset=adult", f"dataset.path={tmp_path}"]).dataset)
    for name in ("adult.data", "adult.test"):
        (tmp_path / name).write_text("a,b\n1,2\n")  # some other table under the right names
    with pytest.raises(DataError, match=r"adult.data is not a UCI Adult file \(15 comma-separated columns"):
        load_table(cfg_factory(["dataset=adult", f"dataset.path={tmp_path}"]).dataset)

    def offline(**kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("sklearn.datasets.fetch_openml", offline)  # never touch the network in a test
    with pytest.raises(DataError, match=r"OpenML is unreachable .*set dataset.path=FOLDER") as err:
        load_table(cfg_factory(["dataset=adult"]).dataset)
    assert "\n" not in str(err.value)


def _compas_file(path) -> pd.DataFrame:
    """A few rows with ProPublica's columns: some the filters drop, every leakage column present."""
    base = {"id": 1, "name": "a b", "first": "a", "last": "b", "compas_screening_date": "2013-08-14", "sex": "Male",
            "dob": "1970-01-01", "age": 40, "age_cat": "25 - 45", "race": "Caucasian", "juv_fel_count": 0,
            "decile_score": 3, "juv_misd_count": 0, "juv_other_count": 0, "priors_count": 1,
            "days_b_screening_arrest": 0, "c_jail_in": "", "c_jail_out": "", "c_case_number": "x",
            "c_charge_degree": "F", "c_charge_desc": "Battery", "is_recid": 1, "r_charge_degree": "M",
            "violent_recid": "", "is_violent_recid": 0, "score_text": "Low", "v_decile_score": 2,
            "v_score_text": "Low", "event": 1, "two_year_recid": 1}
    changes = [{}, {"race": "African-American", "two_year_recid": 0}, {"race": "Hispanic"},
               {"days_b_screening_arrest": 31}, {"is_recid": -1}, {"c_charge_degree": "O"},
               {"score_text": "N/A"}, {"race": "African-American", "sex": "Female"}]
    frame = pd.DataFrame([{**base, **c, "id": i} for i, c in enumerate(changes)])
    frame.to_csv(path, index=False)
    return frame


def test_compas_keeps_propublicas_rows_and_never_the_scores(cfg_factory, tmp_path):
    _compas_file(tmp_path / "compas-scores-two-years.csv")
    table = load_table(cfg_factory(["dataset=compas", f"dataset.path={tmp_path}"]).dataset)
    np.testing.assert_array_equal(table.index, [0, 1, 7])  # filters, then African-American and Caucasian
    assert list(table.sensitive) == ["Caucasian", "African-American", "African-American"]
    assert list(table.y) == [1, 0, 1]
    assert set(table.x.columns) == {"sex", "age", "juv_fel_count", "juv_misd_count", "juv_other_count",
                                    "priors_count", "c_charge_degree"}
    every = load_table(cfg_factory(["dataset=compas", f"dataset.path={tmp_path}", "dataset.compas.races=[]"]).dataset)
    np.testing.assert_array_equal(every.index, [0, 1, 2, 7])
    with pytest.raises(ConfigError, match="dataset.compas.races: Klingon not in"):
        load_table(cfg_factory(["dataset=compas", f"dataset.path={tmp_path}",
                                "dataset.compas.races=[Klingon]"]).dataset)
    with pytest.raises(DataError, match="download compas-scores-two-years.csv from"):
        load_table(cfg_factory(["dataset=compas", f"dataset.path={tmp_path / 'nowhere.csv'}"]).dataset)


def test_any_csv_names_its_sensitive_column(cfg_factory, tmp_path):
    path = tmp_path / "loans.csv"
    pd.DataFrame({"income": [1.0, 2.0, 3.0, 4.0], "region": ["n", "s", "n", "s"], "ok": [0, 1, 1, 0]}).to_csv(
        path, index=False)
    table = load_table(cfg_factory(["dataset=csv", f"dataset.path={path}", "dataset.target=ok",
                                    "dataset.sensitive=region"]).dataset)
    assert list(table.sensitive) == ["n", "s", "n", "s"] and list(table.x.columns) == ["income"]


@pytest.mark.slow
def test_an_adult_audit_end_to_end(dlrun_cli, tmp_path):
    _adult_files(tmp_path / "adult", n_train=300, n_test=100)
    done = dlrun_cli(["dataset=adult", "dataset.path=adult", "fairness=reweighing", "trainer.epochs=2",
                      "trainer.progress=none", "diagnosis.reference=none", "hydra.run.dir=run"])
    assert done.returncode == 0, done.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["sizes"]["test"] == 100  # adult.test
    fairness = m["fairness"]
    assert fairness["attribute"] == "sex" and set(fairness["test"]["by_group"]) == {"Female", "Male"}
    assert fairness["train_base_rate_difference"] > 0.1  # the files' built-in gap (0.4 against 0.1)
    assert fairness["documented_base_rate_difference"]["value"] == pytest.approx(0.1963)
