"""Same seed and config -> the same metrics.json numbers on CPU; another seed -> others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Everything in metrics.json that depends on what was learned (not on the wall clock).
LEARNED = ("train", "val", "test", "baseline", "objective", "best_epoch", "epochs_run", "diagnosis", "sizes")


def _learned(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    return {k: metrics[k] for k in LEARNED}


@pytest.mark.slow
def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path, dlrun_cli):
    args = ["-m", "seed=0,1", "reg=dropout", "trainer.epochs=3", "dataset.max_rows=200",
            "trainer.progress=none", "trainer.device=cpu"]
    sweeps = [tmp_path / "first", tmp_path / "second"]
    for sweep in sweeps:  # two processes, so nothing is shared between the runs
        proc = dlrun_cli([*args, f"hydra.sweep.dir={sweep}"])
        assert proc.returncode == 0, proc.stderr[-2000:]

    first = [_learned(sweeps[0] / str(job)) for job in (0, 1)]
    second = [_learned(sweeps[1] / str(job)) for job in (0, 1)]
    assert first == second  # bit-identical numbers, seed by seed
    assert first[0]["train"] != first[1]["train"]  # initialisation, shuffling, dropout differ
    assert first[0]["test"]["loss"] != first[1]["test"]["loss"]
