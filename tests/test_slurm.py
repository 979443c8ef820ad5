"""hydra/launcher=slurm without a cluster: presets, the job-id field, marking jobs SLURM lost
(submitit's states faked), and the requeue -> resume decision. ``make test-cluster`` runs the
same paths against a real SLURM."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dlrun.record import RunRecord, from_dict, read_record
from dlrun.report.aggregate import leaderboard
from dlrun.report.runs import collect_runs
from tests.conftest import compose_config

slurm = pytest.importorskip("hydra_plugins.dlrun_launchers.slurm")

SLURM_ENV = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT")


@pytest.fixture(autouse=True)
def _outside_slurm(monkeypatch):
    for name in SLURM_ENV:
        monkeypatch.delenv(name, raising=False)


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize(("preset", "gpus"), [("slurm", 1), ("slurm_cpu", 0)])
def test_presets_select_dlrun_s_launcher(preset, gpus):
    launcher = compose_config([f"hydra/launcher={preset}", "hydra.launcher.partition=cpu"],
                              return_hydra_config=True).hydra.launcher
    assert launcher._target_ == "hydra_plugins.dlrun_launchers.slurm.SubmititSlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node) == ("cpu", gpus)
    assert launcher.max_num_timeout > 0  # a job at its time limit is requeued (and resumes)


def test_cpu_preset_asks_for_no_gpu_and_a_cpu_share():
    launcher = compose_config(["hydra/launcher=slurm_cpu"], return_hydra_config=True).hydra.launcher
    assert launcher.gpus_per_node == 0 and launcher.cpus_per_task >= 1 and launcher.mem_gb >= 1


def test_hydra_s_own_preset_name_gets_the_same_launcher():
    slurm.use_for_slurm()
    launcher = compose_config(["hydra/launcher=submitit_slurm"], return_hydra_config=True).hydra.launcher
    assert launcher._target_.endswith("dlrun_launchers.slurm.SubmititSlurmLauncher")


def test_a_signal_delay_past_the_time_limit_is_shortened():
    launcher = slurm.SubmititSlurmLauncher(submitit_folder="x", timeout_min=1, signal_delay_s=120, partition="cpu",
                                           max_num_timeout=3)
    params = launcher._executor_parameters()
    assert params["slurm_signal_delay_s"] == 10 and params["timeout_min"] == 1
    assert params["slurm_partition"] == "cpu" and "slurm_max_num_timeout" not in params
    long = slurm.SubmititSlurmLauncher(submitit_folder="x", timeout_min=60, signal_delay_s=120)
    assert long._executor_parameters()["slurm_signal_delay_s"] == 120


# ----------------------------------------------------------------------------- the job id


@pytest.mark.parametrize(("env", "expected"), [
    ({"SLURM_JOB_ID": "42", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "2"}, "40_2"),
    ({"SLURM_JOB_ID": "42"}, "42"),
    ({}, None),
])
def test_a_record_written_in_a_slurm_job_names_it(monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    record = RunRecord(status="ok")
    assert record.slurm_job_id == expected
    assert from_dict(json.loads(json.dumps(record.to_dict()))).slurm_job_id == expected


def test_a_record_read_inside_a_slurm_job_keeps_its_own_id(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    assert from_dict({"status": "ok"}).slurm_job_id is None  # written elsewhere, before the field existed
    assert from_dict({"status": "ok", "slurm_job_id": "7_1"}).slurm_job_id == "7_1"


def _run_folder(path: Path, **record) -> Path:
    path.mkdir(parents=True)
    data = {"status": "ok", "headline": "accuracy", "val": {"accuracy": 0.9}, "test": {"accuracy": 0.8}, **record}
    (path / "metrics.json").write_text(json.dumps(data))
    return path


def test_the_leaderboard_has_a_slurm_job_column_only_for_slurm_runs(tmp_path):
    _run_folder(tmp_path / "slurm" / "0", slurm_job_id="12_0")
    _run_folder(tmp_path / "slurm" / "1", slurm_job_id="12_1", status="failed", message="cancelled")
    board = leaderboard(collect_runs([tmp_path / "slurm"]))
    assert list(board["slurm_job"]) == ["12_0", "12_1"]
    _run_folder(tmp_path / "local" / "0")
    assert "slurm_job" not in leaderboard(collect_runs([tmp_path / "local"]))


# ----------------------------------------------------------------------------- jobs SLURM lost


@pytest.mark.parametrize(("state", "words"), [
    ("CANCELLED by 0", "cancelled"), ("NODE_FAIL", "node lost"), ("OUT_OF_MEMORY", "mem_gb"),
    ("TIMEOUT", "timeout_min"), ("FAILED", "exited with an error"), ("WEIRD_STATE", "WEIRD_STATE"),
    ("PREEMPTED", "not requeued"),
])
def test_an_ended_job_without_a_result_has_a_cause(state, words):
    assert words in slurm.failure_cause(state)


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "REQUEUED", "COMPLETING", "UNKNOWN", ""])
def test_a_job_that_may_still_finish_has_no_cause(state):
    assert slurm.failure_cause(state) is None


class _Watcher:
    """submitit's sacct watcher, faked: each job's state comes from ``states``."""

    def __init__(self, states: dict[str, list[str]]) -> None:
        self.states, self.updates = states, 0

    def update(self) -> None:
        self.updates += 1

    def get_state(self, job_id: str, mode: str = "standard") -> str:
        seq = self.states[job_id]
        return seq[min(self.updates - 1, len(seq) - 1)]


class _Job:
    def __init__(self, job_id: str, watcher: _Watcher, folder: Path) -> None:
        self.job_id, self.watcher = job_id, watcher
        self.paths = type("Paths", (), {"result_pickle": folder / f"{job_id}_result.pkl"})()


def test_the_sweep_marks_lost_jobs_failed_and_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm, "POLL_S", 0)
    monkeypatch.setattr(slurm, "RESULT_GRACE_S", 0)
    monkeypatch.setattr(slurm, "GONE_S", 0)
    watcher = _Watcher({
        "5_0": ["RUNNING", "COMPLETED"],  # writes its result
        "5_1": ["RUNNING", "CANCELLED by 0"],
        "5_2": ["PENDING", "RUNNING", "NODE_FAIL"],
        "5_3": ["UNKNOWN"],  # sacct cannot answer (accounting off), and squeue no longer lists it
    })
    jobs = [_Job(f"5_{i}", watcher, tmp_path) for i in range(4)]
    jobs[0].paths.result_pickle.write_bytes(b"")
    monkeypatch.setattr(slurm, "_queue_states", lambda ids: {"5_2": "RUNNING"})
    launcher = slurm.SubmititSlurmLauncher(submitit_folder=str(tmp_path))
    monkeypatch.setattr(launcher, "_collect", lambda job, idx, overrides: ("ok", idx))
    monkeypatch.setattr(launcher, "_failed", lambda idx, overrides, job_id, cause: ("failed", idx, job_id, cause))
    results = launcher._wait(jobs, [0, 1, 2, 3], [["seed=0"]] * 4)
    assert results[0] == ("ok", 0)
    assert results[1][:3] == ("failed", 1, "5_1") and "cancelled" in results[1][3]
    assert results[2][:3] == ("failed", 2, "5_2") and "node" in results[2][3]
    assert results[3][:3] == ("failed", 3, "5_3") and "left the SLURM queue" in results[3][3]


def test_a_preempted_job_gets_longer_to_come_back_than_an_ended_one():
    assert slurm._cause("PREEMPTED", None, queue_answered=True) == (slurm.CAUSES["PREEMPTED"], slurm.GONE_S)
    assert slurm._cause("UNKNOWN", "CANCELLED", queue_answered=True)[1] == slurm.RESULT_GRACE_S < slurm.GONE_S
    assert slurm._cause("UNKNOWN", "PENDING", queue_answered=True) == (None, slurm.RESULT_GRACE_S)


def test_a_job_neither_sacct_nor_squeue_can_see_is_waited_for(tmp_path, monkeypatch):
    """SLURM unreachable for a moment is not a lost job: it is waited for until its result comes."""
    monkeypatch.setattr(slurm, "POLL_S", 0)
    watcher = _Watcher({"6_0": ["UNKNOWN"]})
    job = _Job("6_0", watcher, tmp_path)
    calls = []

    def queue(ids):
        calls.append(ids)
        if len(calls) == 3:
            job.paths.result_pickle.write_bytes(b"")
        return None  # squeue does not answer

    monkeypatch.setattr(slurm, "_queue_states", queue)
    launcher = slurm.SubmititSlurmLauncher(submitit_folder=str(tmp_path))
    monkeypatch.setattr(launcher, "_collect", lambda job, idx, overrides: ("ok", idx))
    assert launcher._wait([job], [0], [[]]) == [("ok", 0)]
    assert len(calls) == 3


def test_a_lost_job_is_recorded_failed_with_its_cause_and_job_id(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1")  # the sweep itself may run inside an allocation
    launcher = slurm.SubmititSlurmLauncher(submitit_folder=str(tmp_path))
    launcher.config = compose_config([f"hydra.sweep.dir={tmp_path}", "seed=4"], return_hydra_config=True)

    class Loader:
        def load_sweep_config(self, master, overrides):
            return master.copy()

    launcher.hydra_context = type("Context", (), {"config_loader": Loader()})()
    ret = launcher._failed(3, ["seed=4"], "12_3", "cancelled (scancel, or an administrator)")
    record = read_record(tmp_path / "3")
    assert record.status == "failed" and record.seed == 4 and record.slurm_job_id == "12_3"
    assert "SLURM job 12_3" in record.message and "cancelled" in record.message
    assert ret.status.name == "COMPLETED" and ret.working_dir == str(tmp_path / "3")  # the sweep goes on


def test_submitit_s_polling_warning_is_shown_once(capsys):
    import submitit  # noqa: F401  configures its logger: a handler on stdout and one on stderr

    root = logging.getLogger()
    hydra_like = logging.StreamHandler()  # what Hydra's logging config puts on the root logger
    root.addHandler(hydra_like)
    try:
        with slurm._submitit_warnings_once():
            for call in (1, 2, 3):
                logging.getLogger("submitit").warning(
                    f"Call #{call} - Bypassing sacct error Command 'sacct' returned 1, status may be inaccurate.")
            logging.getLogger("submitit").warning("another warning")
    finally:
        root.removeHandler(hydra_like)
    printed = capsys.readouterr()
    lines = (printed.out + printed.err).splitlines()
    assert [ln for ln in lines if "Bypassing" in ln] == [
        "Bypassing sacct error Command 'sacct' returned 1, status may be inaccurate. (shown once)"]
    assert lines.count("another warning") == 1
    assert len(logging.getLogger("submitit").handlers) == 2  # given back after the sweep


# ----------------------------------------------------------------------------- requeue -> resume


@pytest.mark.parametrize(("restarts", "checkpoint", "resume"), [
    (None, True, False), ("0", True, False), ("1", False, False), ("1", True, True), ("3", True, True),
])
def test_a_restarted_job_resumes_from_its_own_checkpoint(tmp_path, restarts, checkpoint, resume):
    from dlrun.checkpoint import checkpoint_path

    if checkpoint:
        checkpoint_path(tmp_path).parent.mkdir(parents=True)
        checkpoint_path(tmp_path).write_bytes(b"x")
    env = {} if restarts is None else {"SLURM_RESTART_COUNT": restarts}
    assert slurm.resume_after_requeue(tmp_path, env) is resume


@pytest.mark.parametrize("restarted", [False, True])
def test_the_job_runs_with_trainer_resume_when_restarted(tmp_path, monkeypatch, restarted):
    """The job's own config (not its overrides) says resume, so the sweep report groups it as before."""
    import submitit
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    from dlrun.checkpoint import checkpoint_path

    config = compose_config([f"hydra.sweep.dir={tmp_path}", "seed=1"], return_hydra_config=True)
    checkpoint_path(tmp_path / "0").parent.mkdir(parents=True)
    checkpoint_path(tmp_path / "0").write_bytes(b"x")
    if restarted:
        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")

    class Loader:
        def load_sweep_config(self, master, overrides):
            return master.copy()

    seen = {}
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: type("Env", (), {"job_id": "9_0"})())
    # Hydra's plugin scan may execute the launcher's module again: patch where it imports from too.
    import hydra.core.utils

    for module in (slurm, hydra.core.utils):
        monkeypatch.setattr(module, "run_job", lambda **kw: seen.update(kw))
    launcher = slurm.SubmititSlurmLauncher(submitit_folder=str(tmp_path))
    launcher.config, launcher.task_function = config, print
    launcher.hydra_context = type("Context", (), {"config_loader": Loader()})()
    launcher(["seed=1"], "hydra.sweep.dir", 0, "job_id_for_0", Singleton.get_state())
    GlobalHydra.instance().clear()
    assert seen["config"].trainer.resume is restarted
    assert seen["config"].hydra.job.id == "9_0" and seen["config"].hydra.job.num == 0
