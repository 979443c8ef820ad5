"""SLURM through Hydra's submitit launcher, made to end and to resume (``hydra/launcher=slurm``).

hydra-submitit-launcher submits a sweep as one job array and then waits for each job's
result file in turn. Three things go wrong on a real cluster:

- A job that ends without a result (``scancel``, a lost node, the out-of-memory killer)
  is reported by submitit as an exception, which ends the whole sweep; when ``sacct``
  cannot answer (accounting off) its state stays unknown and the sweep waits forever.
- A job requeued at its time limit or on preemption starts again from epoch 0, although
  its checkpoint is in its run folder.
- Every poll of ``sacct`` that fails prints the same warning again.

:class:`SubmititSlurmLauncher` is that launcher with these changes: it polls every job's
state itself (``sacct``, else ``squeue``), marks a job that ended without a result
``failed`` with its cause in its run folder (the sweep goes on and exits 1, like any sweep
with a failed job); a job that SLURM restarted (``SLURM_RESTART_COUNT``) continues from
its checkpoint (``trainer.resume=true``); submitit's polling warnings are shown once.

``dlrun`` puts it behind ``hydra/launcher=submitit_slurm`` as well (:func:`use_for_slurm`),
so Hydra's own preset name gets the same launcher.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
except ImportError:  # no dlrun[cluster]: nothing to launch on, and use_for_slurm does nothing
    from hydra.plugins.launcher import Launcher as SlurmLauncher

log = logging.getLogger(__name__)

POLL_S = 5.0  # between two looks at the queue (one sacct call for the whole sweep)
RESULT_GRACE_S = 15.0  # an ended job's result file may reach a shared file system this much later
GONE_S = 30.0  # a job neither queued nor known to sacct for this long has left without a result
GONE = "left the SLURM queue (sacct cannot say why: is accounting off?)"

# SLURM's end states (sacct, squeue) of a job that left no result, and what they mean.
CAUSES = {
    "CANCELLED": "cancelled (scancel, or an administrator)",
    "NODE_FAIL": "its node failed (node lost)",
    "BOOT_FAIL": "its node failed to boot",
    "OUT_OF_MEMORY": "out of memory (raise hydra.launcher.mem_gb)",
    "TIMEOUT": "time limit reached (raise hydra.launcher.timeout_min or hydra.launcher.max_num_timeout)",
    "PREEMPTED": "preempted and not requeued",
    "DEADLINE": "deadline reached",
    "FAILED": "exited with an error (its log is under hydra.sweep.dir/.submitit)",
    "COMPLETED": "exited without writing its result",
}
# States of a job that may still write its result (submitit's list, and squeue's names).
# PREEMPTED is not one: a preempted job that SLURM requeues turns REQUEUED, then PENDING,
# within GONE_S; one that stays PREEMPTED was cancelled (PreemptMode=CANCEL).
_UNFINISHED = {"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "CONFIGURING",
               "RESIZING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED"}


class JobLost(RuntimeError):
    """A SLURM job that ended without writing its result (what its run folder records)."""


def use_for_slurm() -> None:
    """Make ``hydra/launcher=submitit_slurm`` select :class:`SubmititSlurmLauncher` (same settings).

    Call before Hydra composes the config; nothing happens without hydra-submitit-launcher.
    """
    from hydra_plugins.dlrun_launchers import register_over

    register_over("submitit_slurm", "hydra_plugins.hydra_submitit_launcher.config", "SlurmQueueConf", f"{__name__}.SubmititSlurmLauncher")


def resume_after_requeue(run_dir: Path, environ: Mapping[str, str]) -> bool:
    """Whether a job should continue from its checkpoint: SLURM restarted it (a time limit,
    a preemption, a lost node) and its run folder holds the checkpoint of its earlier start."""
    from dlrun.checkpoint import checkpoint_path

    try:
        restarts = int(environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        restarts = 0
    return restarts > 0 and checkpoint_path(run_dir).is_file()


def failure_cause(state: str) -> str | None:
    """Why a job whose SLURM state is ``state`` left no result; None while it may still write one.

    ``state`` is as ``sacct`` or ``squeue`` gives it (``CANCELLED by 0``, ``NODE_FAIL``, ...).
    """
    word = (state or "UNKNOWN").split()[0].upper().rstrip("+")
    if word in _UNFINISHED:
        return None
    return CAUSES.get(word, f"ended in the SLURM state {word}")


def _cause(known: str, queued: str | None, *, queue_answered: bool) -> tuple[str | None, float]:
    """Why a job without a result has ended, and how long to wait for its result before saying so.

    ``known`` is sacct's state (``UNKNOWN`` when sacct cannot answer), ``queued`` squeue's
    (None when squeue does not list the job). ``(None, 0)`` while the job may still finish.
    """
    state = known if known != "UNKNOWN" else queued
    if state:
        return failure_cause(state), GONE_S if state.startswith("PREEMPTED") else RESULT_GRACE_S
    return (GONE, GONE_S) if queue_answered else (None, 0.0)


class _Once(logging.Filter):
    """Lets each of submitit's polling warnings through once (``Call #N - `` prefixes aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Bypassing" not in message:
            return True
        key = message.split(" - ", 1)[-1] if message.startswith("Call #") else message
        if key in self.seen:
            return False
        self.seen.add(key)
        record.msg, record.args = f"{key} (shown once)", None
        return True


@contextmanager
def _submitit_warnings_once() -> Iterator[None]:
    """While a sweep waits: each submitit warning once, printed once (by Hydra's log handlers when
    it has them; submitit's own two handlers, stdout and stderr, would print it twice more)."""
    logger, once = logging.getLogger("submitit"), _Once()
    own = list(logger.handlers) if logging.getLogger().handlers else []
    for handler in own:
        logger.removeHandler(handler)
    logger.addFilter(once)
    try:
        yield
    finally:
        logger.removeFilter(once)
        for handler in own:
            logger.addHandler(handler)


class SubmititSlurmLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher that ends and resumes (see the module docstring)."""

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: dict[type, Singleton]) -> JobReturn:
        """Run one job on its node: the plugin's job, continued from its checkpoint when restarted."""
        import submitit

        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        Singleton.set_state(singleton_state)
        setup_globals()
        config = self.hydra_context.config_loader.load_sweep_config(self.config, sweep_overrides)
        with open_dict(config.hydra.job):
            config.hydra.job.id = submitit.JobEnvironment().job_id
            config.hydra.job.num = job_num
        run_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        if "trainer" in config and resume_after_requeue(run_dir, os.environ):
            log.info("SLURM restarted job %s: continuing from its checkpoint in %s", job_num, run_dir)
            with open_dict(config):
                config.trainer.resume = True
        return run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=config,
                       job_dir_key=job_dir_key, job_subdir_key="hydra.sweep.subdir")

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        executor = submitit.AutoExecutor(cluster="slurm", folder=self.params["submitit_folder"],
                                         slurm_max_num_timeout=self.params.get("max_num_timeout", 0))
        executor.update_parameters(**self._executor_parameters())
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info("Submitit 'slurm' sweep output dir : %s", sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        state = Singleton.get_state()
        numbers = [initial_job_idx + i for i in range(len(job_overrides))]
        for idx, overrides in zip(numbers, job_overrides, strict=True):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        args = [(list(o), "hydra.sweep.dir", idx, f"job_id_for_{idx}", state)
                for idx, o in zip(numbers, job_overrides, strict=True)]
        with _submitit_warnings_once():
            jobs = executor.map_array(self, *zip(*args, strict=True))
            return self._wait(jobs, numbers, job_overrides)

    def _executor_parameters(self) -> dict[str, Any]:
        """The plugin's settings as submitit's executor names them (``slurm_partition``, ...)."""
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        params = {k: v for k, v in self.params.items() if k not in ("submitit_folder", "max_num_timeout")}
        limit_s = int(params.get("timeout_min") or 0) * 60
        if limit_s and int(params.get("signal_delay_s") or 0) >= limit_s:
            # The warning would come as soon as a job starts (slurmctld sends it up to 30 s
            # early, at its next check) and requeue the job before it did any work.
            delay = max(limit_s // 6, 5)
            log.info("hydra.launcher.signal_delay_s=%s is not below the time limit (%d s): using %d s",
                     params["signal_delay_s"], limit_s, delay)
            params["signal_delay_s"] = delay
        return {k if k in shared else f"slurm_{k}": v for k, v in params.items()}

    def _wait(self, jobs: Sequence[Any], numbers: list[int], job_overrides: Sequence[Sequence[str]]
              ) -> list[JobReturn]:
        """Each job's return, as jobs end in any order; a job that left no result is marked failed."""
        results: dict[int, JobReturn] = {}
        ended: dict[int, float] = {}  # when a job was first seen ended (or gone) without a result
        while len(results) < len(jobs):
            jobs[0].watcher.update()  # one sacct call for every job of the sweep
            waiting = [i for i in range(len(jobs)) if i not in results]
            queue = _queue_states([jobs[i].job_id for i in waiting])
            for i in waiting:
                job = jobs[i]
                if job.paths.result_pickle.exists():
                    results[i] = self._collect(job, numbers[i], job_overrides[i])
                    continue
                cause, grace = _cause(job.watcher.get_state(job.job_id, mode="cache"),
                                      (queue or {}).get(job.job_id), queue_answered=queue is not None)
                if cause is None:
                    ended.pop(i, None)
                elif time.monotonic() - ended.setdefault(i, time.monotonic()) >= grace:
                    results[i] = self._failed(numbers[i], job_overrides[i], job.job_id, cause)
            if len(results) < len(jobs):
                time.sleep(POLL_S)
        return [results[i] for i in range(len(jobs))]

    def _collect(self, job: Any, idx: int, overrides: Sequence[str]) -> JobReturn:
        """The return of a job that wrote its result; an exception in it marks the job failed."""
        from submitit.core.utils import FailedJobError, UncompletedJobError

        try:
            return job.results()[0]
        except (FailedJobError, UncompletedJobError) as err:
            lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.startswith("-")]
            last = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines
                        else type(err).__name__)
            return self._failed(idx, overrides, job.job_id, f"raised outside dlrun's job ({last})")

    def _job_config(self, idx: int, overrides: Sequence[str]) -> DictConfig:
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.num = idx
            config.hydra.job.id = f"{config.hydra.job.name}_{idx}"
        return config

    def _failed(self, idx: int, overrides: Sequence[str], job_id: str, cause: str) -> JobReturn:
        """Mark the job ``failed`` in its run folder, with its SLURM job id and the cause."""
        from dlrun.record import read_record, write_record
        from dlrun.report.run_folder import write_failure

        config = self._job_config(idx, overrides)
        run_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        run_dir.mkdir(parents=True, exist_ok=True)
        message = f"SLURM job {job_id} ended without a result: {cause}"
        write_failure(run_dir, JobLost(message), overrides=list(overrides), seed=config.get("seed"))
        record = read_record(run_dir)
        record.slurm_job_id = job_id  # not this process's own id, when it runs inside an allocation
        write_record(run_dir, record)
        log.error("job %d failed: %s", idx, message)
        # Completed as far as Hydra is concerned, like any dlrun job that failed: the sweep
        # goes on, and its report counts the job as failed from its run folder.
        return JobReturn(overrides=list(overrides), working_dir=str(run_dir), status=JobStatus.COMPLETED,
                         _return_value=math.nan)


def _queue_states(job_ids: Sequence[str]) -> dict[str, str] | None:
    """``squeue``'s state of each job it still lists (finished ones too, for a few minutes);
    None when ``squeue`` does not answer."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(arrays)],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)

