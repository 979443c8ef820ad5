"""The bad-input table (dlrun/tools/bad_inputs.py): one clear line and exit code 2 per case.

The table runs in-process through ``dlrun.cli.main`` (most cases fail before TensorFlow is
imported, so this is quick); two cases also go through a real subprocess to check what
the user sees at the terminal, with and without ``DLRUN_DEBUG``.
"""

from __future__ import annotations

import logging
import signal
import sys

import pytest

from dlrun.cli import main
from dlrun.tools.bad_inputs import CASES, Case, check, has_gpu, make_fixtures


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_fixtures(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Run the CLI in tmp_path and undo what ``main`` sets process-wide."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DLRUN_DEBUG", raising=False)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    previous = signal.getsignal(signal.SIGTERM)
    # Hydra's job logging replaces the root handlers with one bound to this test's captured
    # stderr; put pytest's handlers back so nothing logs into a closed stream afterwards.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    # absl (imported with TensorFlow by other test modules) keeps the stderr it saw at import,
    # here pytest's capture file; Hydra's dictConfig closes every handler, and absl closes any
    # stream that is not the current sys.stderr. Point it at the real one, which it never closes.
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    yield
    signal.signal(signal.SIGTERM, previous)
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def test_the_table_is_large_and_names_are_unique():
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(c.code == 2 for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_bad_input_answers_with_one_line_and_exit_code_2(case: Case, data, isolated, monkeypatch, capsys):
    if case.needs_no_gpu and has_gpu():
        pytest.skip("this machine has a GPU")
    monkeypatch.setattr(sys, "argv", ["dlrun", *case.argv(data)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    stderr = capsys.readouterr().err
    assert check(case, stderr, exit_info.value.code) is None, stderr[-500:]


def test_check_rejects_wrong_code_traceback_and_message():
    case = Case("x", (), "must be positive")
    assert check(case, "dlrun: error: optimizer.lr must be positive, got 0\n", 2) is None
    assert "exit code" in check(case, "dlrun: error: optimizer.lr must be positive\n", 1)
    assert "traceback" in check(case, "Traceback (most recent call last):\ndlrun: error: must be positive\n", 2)
    assert "not in" in check(case, "dlrun: error: something else\n", 2)


def test_a_real_process_prints_one_line_and_no_traceback(dlrun_cli):
    proc = dlrun_cli(["optimizer.lr=-1"], env={"DLRUN_DEBUG": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["dlrun: error: optimizer.lr must be positive, got -1.0"]


def test_dlrun_debug_shows_the_traceback(dlrun_cli):
    proc = dlrun_cli(["optimizer.lr=-1"], env={"DLRUN_DEBUG": "1"})
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "optimizer.lr must be positive" in proc.stderr
