"""Course 4's claim check on hand-made tuning folders (written by the tuner's own writers)."""

from __future__ import annotations

import pandas as pd
import pytest

from dlrun.config import TunerConfig
from dlrun.report.claims import check_claim
from dlrun.tuning import Trial, Tuner
from dlrun.tuning_folder import write_best_config, write_trials
from dlrun.tuning_space import read_space

SPACE = read_space(["optimizer.lr=tag(log, interval(1e-5, 1e-1))", "dataset=mnist_5k"])
# Per method: the validation score of each trial (the last is the best), and the refit's test
# score offset from random's at the same seed. gp: a clear gain; forest: within noise; gbrt: a loss.
TEST_GAIN = {"gp": (0.020, 0.022, 0.018), "forest": (0.010, -0.012, 0.001), "gbrt": (-0.03, -0.031, -0.029),
             "random": (0.0, 0.0, 0.0)}


def _tuning(folder, method: str, seed: int, *, calls: int = 6) -> None:
    tuner = Tuner(SPACE, TunerConfig(name=method, n_calls=calls, seed=seed))
    base = 0.90 + 0.01 * seed + (0.02 if method != "random" else 0.0)
    trials = [Trial(i, [10 ** (-4 + 0.1 * i)], {"optimizer.lr": 10 ** (-4 + 0.1 * i)},
                    base - 0.01 * (calls - 1 - i), seconds=2.0, run_dir=str(folder / str(i))) for i in range(calls)]
    trials[1].score, trials[1].status = float("nan"), "diverged"
    tuner.tell(trials, greater_is_better=True)
    write_trials(folder, tuner)
    test = 0.93 + 0.005 * seed + TEST_GAIN[method][seed]
    write_best_config(folder, tuner, metric="accuracy", refit={"run_dir": str(folder / "refit"), "test_accuracy": test})


def _report(tmp_path, folders):
    runs = pd.DataFrame({"run_dir": [str(f / "refit") for f in folders], "status": "ok"})
    return "\n".join(check_claim("tuning", runs=runs, groups=pd.DataFrame(), keys=[], study={}, out_dir=tmp_path))


@pytest.fixture
def course(tmp_path):
    folders = []
    for method in ("gp", "forest", "gbrt", "random"):
        for seed in range(3):
            folder = tmp_path / f"{method}-s{seed}"
            _tuning(folder, method, seed)
            folders.append(folder)
    return folders


def test_each_arm_is_judged_on_test_against_random_seed_by_seed_with_holm(tmp_path, course):
    text = _report(tmp_path, course)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "| supported |" in rows["gp"] and "+0.0200 ±" in rows["gp"]
    assert "| inconclusive |" in rows["forest"]
    assert "| not supported |" in rows["gbrt"]
    assert "**Supported** at 6 trials: gp beats random search on test" in text
    # validation: every model-based tuner ends 0.02 above random at every seed (no spread: no test)
    assert "the verdict is inconclusive" in text
    assert (tmp_path / "tuning_convergence.png").stat().st_size > 0


def test_the_method_table_reads_the_best_so_far_and_the_refits(tmp_path, course):
    text = _report(tmp_path, course)
    gp = next(line for line in text.splitlines() if line.startswith("| gp | 3 |"))
    # final best validation 0.92 + 0.01 * seed; after half the trials (3 of 6): 0.03 lower;
    # refit test 0.93 + 0.005 * seed + gp's gain
    assert gp.startswith("| gp | 3 | 0.9300 ± 0.0100 | 0.9000 ± 0.0100 | 0.9550 ± 0.0044 | 12 |")
    # gp, forest and gbrt tie at seed 2: the first in folder order is chosen
    assert "Chosen on validation over 12 tunings: forest, tuner seed 2 (validation accuracy 0.9400)" in text
    assert f"test accuracy {0.94 + TEST_GAIN['forest'][2]:.4f}" in text


def test_unequal_budgets_are_not_compared(tmp_path):
    folders = [tmp_path / "gp-s0", tmp_path / "random-s0"]
    _tuning(folders[0], "gp", 0, calls=6)
    _tuning(folders[1], "random", 0, calls=5)
    assert "Not checked: the tunings ran different budgets (5, 6 trials)" in _report(tmp_path, folders)


def test_runs_outside_tuning_folders_are_not_checked(tmp_path):
    assert "Not checked: these runs are not in tuning folders" in _report(tmp_path, [tmp_path / "plain"])
