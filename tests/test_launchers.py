"""Hydra launcher plugins: thread sizing (unit), real joblib and submitit_local sweeps (slow)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dlrun.launch import cpu_count, job_threads, parallel_jobs
from tests.conftest import compose_config

JOBLIB = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}
SUBMITIT = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}
BASIC = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
# A sweep job small enough for tests: 2 epochs on 300 digits.
TINY_SWEEP = ["dataset=digits", "dataset.max_rows=300", "trainer.epochs=2", "trainer.progress=none"]


@pytest.mark.parametrize(("n_jobs", "cores", "expected"), [(-1, 2, 2), (-1, 16, 16), (-2, 16, 15), (4, 2, 4)])
def test_parallel_jobs_follow_joblib_semantics(n_jobs, cores, expected):
    assert parallel_jobs(n_jobs, cores=cores) == expected


@pytest.mark.parametrize(("launcher", "threads", "cores", "expected"), [
    (JOBLIB, 0, 2, 1),  # two jobs at once on two cores: one thread each
    (JOBLIB, 0, 16, 1),
    ({**JOBLIB, "n_jobs": 4}, 0, 16, 4),
    ({**JOBLIB, "n_jobs": 8}, 0, 2, 1),  # oversubscribed: never zero threads
    ({**JOBLIB, "n_jobs": 4}, 3, 16, 3),  # an explicit trainer.threads wins
    ({**SUBMITIT, "cpus_per_task": 6}, 0, 16, 6),
    ({**SUBMITIT, "cpus_per_task": None}, 0, 16, 0),
    (BASIC, 0, 16, 0),  # one job at a time: TensorFlow chooses
    (None, 0, 16, 0),
])
def test_job_threads_share_the_cores(launcher, threads, cores, expected):
    assert job_threads(threads, launcher, cores=cores) == expected


def test_slurm_preset_defaults_from_submitit_slurm():
    launcher = compose_config(["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.cpus_per_task, launcher.timeout_min) == (1, 4, 60)
    assert launcher.partition is None and launcher.signal_delay_s == 120  # the plugin's default


def test_optimizers_experiment_is_a_joblib_sweep_of_140_jobs():
    cfg = compose_config(["experiment=optimizers"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"  # `dlrun experiment=optimizers` sweeps without -m
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    params = cfg.hydra.sweeper.params
    sizes = [len(str(v).split(",")) for v in params.values()]
    assert dict(params) == {"optimizer": "sgd,momentum,rmsprop,adam",
                            "optimizer.lr_scale": "0.03,0.1,0.3,1,3,10,30", "seed": "0,1,2,3,4"}
    assert sizes == [4, 7, 5]
    assert (cfg.study.kind, cfg.dataset.name) == ("optimizers", "digits")


def _metrics(sweep: Path) -> dict[str, dict]:
    out = {}
    for file in sorted(sweep.glob("*/metrics.json")):
        m = json.loads(file.read_text())
        out[" ".join(o for o in m["overrides"] if not o.startswith("hydra"))] = m
    return out


@pytest.mark.slow
def test_joblib_sweep_runs_four_jobs_and_survives_failing_ones(dlrun_cli, tmp_path):
    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY_SWEEP if not o.startswith("trainer.progress")]  # progress: auto
    proc = dlrun_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", *tiny,
                      "optimizer=sgd,adam", "optimizer.lr=0.01,0.1,-1", "seed=0"])
    assert proc.returncode == 1, proc.stderr  # exit 1: some jobs failed
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    metrics = _metrics(sweep)
    assert len(metrics) == 6
    failed = sorted(k for k, m in metrics.items() if m["status"] == "failed")
    assert failed == sorted(k for k in metrics if "optimizer.lr=-1" in k)
    ok = [m for k, m in metrics.items() if k not in failed]
    assert len(ok) == 4 and all(m["status"] == "ok" and m["epochs_run"] == 2 for m in ok)
    assert len({(m["optimizer"], m["lr"]) for m in ok}) == 4
    board = pd.read_csv(sweep / "leaderboard.csv")
    assert list(board["status"]) == ["ok"] * 4 + ["failed"] * 2
    assert board["message"].iloc[-1].startswith("ConfigError: optimizer.lr must be positive")
    study = (sweep / "study.md").read_text()
    assert "## Jobs that did not finish" in study and "optimizer.lr must be positive" in study
    assert "## Best optimizer.lr per optimizer" in study
    # Two jobs at once: each job's TensorFlow got half the cores (trainer.threads=0).
    share = max(1, cpu_count() // 2)
    ok_dirs = [d for d in sweep.iterdir() if (d / "history.csv").is_file()]
    assert all(f"TensorFlow threads: {share} for this job" in (d / "run.log").read_text() for d in ok_dirs)
    # Parallel jobs share the terminal: plain progress lines, each tagged with its job number
    # (the job's folder name).
    assert all(f"job {d.name} · digits epoch 2/2" in (d / "run.log").read_text() for d in ok_dirs)


@pytest.mark.slow
def test_submitit_local_runs_a_real_job(dlrun_cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = dlrun_cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
                      f"hydra.sweep.dir={sweep}", *TINY_SWEEP, "optimizer=adam", "seed=0"])
    assert proc.returncode == 0, proc.stderr
    (m,) = _metrics(sweep).values()
    assert m["status"] == "ok" and m["epochs_run"] == 2 and m["val"]["macro_f1"] > 0
    assert any((sweep / ".submitit").rglob("*_result.pkl"))  # it really went through submitit
    assert (sweep / "leaderboard.csv").is_file()


def test_a_launcher_that_cannot_start_is_one_line_not_a_traceback(dlrun_cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    if shutil.which("srun"):
        pytest.skip("this machine is a SLURM cluster")
    proc = dlrun_cli(["-m", "hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY_SWEEP, "seed=0,1"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith('dlrun: error: the sweep could not run: Could not detect "srun"')
    assert "Traceback" not in proc.stderr


def test_warm_workers_acts_only_under_joblib():
    from dlrun.launch import WarmWorkers

    basic = compose_config(["hydra/launcher=basic"], return_hydra_config=True)
    assert WarmWorkers.settings(basic) is None
    settings = WarmWorkers.settings(compose_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                                   return_hydra_config=True))
    assert settings["backend"] == "loky" and settings["n_jobs"] == 2 and "_target_" not in settings


@pytest.mark.slow
def test_the_sweep_runs_in_the_workers_warmed_while_hydra_prepared_it():
    from joblib import Parallel, delayed

    from dlrun import launch

    config = compose_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], return_hydra_config=True)
    launch.WARMED.clear()
    warm = launch.WarmWorkers()
    warm.on_multirun_start(config)
    warm.on_multirun_end(config)  # waits for the warm-up
    assert len(launch.WARMED) == 2
    # The launcher's own Parallel call, with the same settings, reuses those processes.
    pids = Parallel(**launch.WarmWorkers.settings(config))(delayed(os.getpid)() for _ in range(8))
    assert set(pids) <= launch.WARMED


@pytest.mark.slow
def test_a_worker_that_dies_costs_its_job_one_retry_and_the_sweep_goes_on(dlrun_cli, tmp_path):
    sweep = tmp_path / "sweep"
    root = Path(__file__).resolve().parents[1]
    killer = ["+hydra.callbacks.killer._target_=tests.support.killer.KillWorker",
              "+hydra.callbacks.killer.always=2", "+hydra.callbacks.killer.once=1",
              f"+hydra.callbacks.killer.marker_dir={tmp_path}"]
    proc = dlrun_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}",
                      *TINY_SWEEP, "seed=0,1,2,3", *killer],
                     env={"PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert proc.returncode == 1, proc.stderr[-3000:]  # one job failed, the sweep ran to its end
    assert "a worker process died" in proc.stdout + proc.stderr
    status = {next(o for o in m["overrides"] if o.startswith("seed=")): m["status"] for m in _metrics(sweep).values()}
    assert status == {"seed=0": "ok", "seed=1": "ok", "seed=2": "failed", "seed=3": "ok"}
    board = pd.read_csv(sweep / "leaderboard.csv")
    assert len(board) == 4
    assert board.loc[board["status"] == "failed", "message"].iloc[0].startswith(
        "RuntimeError: its worker process died")
