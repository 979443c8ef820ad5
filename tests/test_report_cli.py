"""dlrun-report on bad folders (issue 19): one line, exit 2, nothing written, intact rows kept."""

from __future__ import annotations

import pytest

from dlrun.report.cli import main as report_main
from tests.test_sweep_report import make_run


@pytest.fixture
def two_runs(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path / "sweep" / str(seed), val=[0.5, 0.6], overrides={"seed": str(seed)})
    return tmp_path / "sweep"


@pytest.mark.parametrize("content, why", [
    ('{"status": "ok"}', "status ok without val and test metrics"),
    ("[1, 2, 3]", "no status"),
    ('{"status": "ok", "val": {', "Expecting"),  # truncated
])
def test_a_run_record_of_another_shape_is_refused_and_the_old_report_kept(two_runs, capsys, content, why):
    assert report_main([str(two_runs)]) == 0
    before = (two_runs / "leaderboard.csv").read_text()
    (two_runs / "1" / "metrics.json").write_text(content)
    capsys.readouterr()
    assert report_main([str(two_runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{two_runs / '1' / 'metrics.json'} is not a readable run record" in err[0]
    assert why in err[0]
    assert (two_runs / "leaderboard.csv").read_text() == before  # the intact row is still there


def test_an_empty_folder_gets_one_line_and_no_files(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"dlrun-report: error: no run folders (metrics.json) under "
                                               f"{tmp_path}; nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_a_file_or_unwritable_is_one_line(two_runs, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("keep me")
    assert report_main([str(two_runs), "-o", str(target)]) == 2
    assert capsys.readouterr().err.strip() == f"dlrun-report: error: -o {target} is a file; give a folder for the report"
    assert target.read_text() == "keep me"
    assert report_main([str(two_runs), "-o", "/proc/dlrun-report-test"]) == 2
    assert capsys.readouterr().err.startswith("dlrun-report: error: cannot write the report in /proc/dlrun-report-test")


def test_a_plain_run_folder_is_left_alone(two_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = two_runs / "0"
    before = sorted(p.name for p in run.iterdir())
    assert report_main([str(run)]) == 0
    assert sorted(p.name for p in run.iterdir()) == before
    assert (tmp_path / "outputs" / "reports" / "latest" / "study.md").is_file()
