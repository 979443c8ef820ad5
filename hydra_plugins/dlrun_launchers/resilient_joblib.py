"""The joblib launcher, made to outlive a worker that dies (``hydra/launcher=joblib``).

hydra-joblib-launcher runs a sweep's jobs in one ``joblib.Parallel`` call. When a worker
process dies (SIGKILL, the out-of-memory killer) loky stops every worker and the call
raises ``TerminatedWorkerError``: the sweep ends there, and the jobs that were running,
the killed one and its neighbours, are lost.

:class:`ResilientJoblibLauncher` is that launcher with one change: after a worker death it
collects what finished, runs each job that was running again, alone (loky stops every
worker, so the job that died cannot be told from its neighbours), then launches the jobs
that had not started. A job whose worker dies when it runs alone is marked ``failed`` in
its run folder ("its worker process died") and the sweep goes on; the sweep then exits 1
like any sweep with a failed job. Settings are hydra-joblib-launcher's own (``n_jobs``, ...).

With ``trainer.parallel_seeds=true`` the jobs that differ only in ``seed`` go to one worker
as a group (:func:`dlrun.seed_group.run_group`), which trains them side by side in one
stacked network; each keeps its job number, run folder and failure isolation. Not under
a tuning sweeper (its trials are not seeds of one configuration). After a worker death,
the unfinished jobs of a group that was running run again one at a time, alone.

``dlrun`` puts this class behind ``hydra/launcher=joblib`` (:func:`use_for_joblib`), so
presets and command lines that name the joblib launcher get it unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)

WORKER_DIED = ("its worker process died (killed by a signal, or by the system when memory ran out), "
               "also when the job ran alone")


def use_for_joblib() -> None:
    """Make ``hydra/launcher=joblib`` select :class:`ResilientJoblibLauncher` (same settings).

    Call before Hydra composes the config; nothing happens without hydra-joblib-launcher.
    """
    from hydra_plugins.dlrun_launchers import register_over

    register_over("joblib", "hydra_plugins.hydra_joblib_launcher.config", "JobLibLauncherConf", f"{__name__}.ResilientJoblibLauncher")


def _indexed(jobs: list[tuple[int, Sequence[str]]], *args: Any) -> list[tuple[int, JobReturn]]:
    """Run one job, or a group of seeds of one configuration, in a worker."""
    if len(jobs) > 1:
        from dlrun.seed_group import run_group

        return run_group(jobs, *args)
    from hydra_plugins.hydra_joblib_launcher import _core

    ((idx, overrides),) = jobs
    return [(idx, _core.execute_job(idx, overrides, *args))]


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "yes", "on", "1")


def _grid(sweeper: str) -> bool:
    """Whether the sweeper ``_target_`` names Hydra's grid sweeper (or a subclass of it)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.utils import get_class

    try:
        return issubclass(get_class(sweeper), BasicSweeper)
    except Exception:  # an unknown sweeper is not a grid
        return False


def seed_groups(job_overrides: Sequence[Sequence[str]], *, parallel_seeds: bool) -> list[list[int]]:
    """The sweep's jobs (0-based positions) as units for the workers: jobs whose overrides
    differ only in ``seed`` together, when ``trainer.parallel_seeds`` (the sweep's value, or a
    job's own override) is true; every other job alone. Units keep the jobs' order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    groups: dict[tuple, list[int]] = {}
    for i, overrides in enumerate(job_overrides):
        parsed = parser.parse_overrides(list(overrides))
        wanted = next((_flag(o.value()) for o in parsed if o.key_or_group == "trainer.parallel_seeds"),
                      parallel_seeds)
        rest = tuple(sorted(o.input_line for o in parsed if o.key_or_group != "seed"))
        groups.setdefault(rest if wanted else ("#alone", i), []).append(i)
    return list(groups.values())


class ResilientJoblibLauncher(JoblibLauncher):
    """hydra-joblib-launcher's launcher that survives a dead worker (see the module docstring)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.hydra_joblib_launcher import (
            _core,  # imports joblib: only when a sweep launches
        )
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        _core.setup_globals()
        _core.configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        settings = dict(self.joblib)
        settings["backend"] = "loky"  # as hydra-joblib-launcher does
        _core.process_joblib_cfg(settings)
        log.info("Joblib.Parallel(%s) is launching %d jobs",
                 ",".join(f"{k}={v}" for k, v in settings.items()), len(job_overrides))
        for i, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))
        state = _core.Singleton.get_state()
        results: dict[int, JobReturn] = {}

        def run(units: list[list[int]], settings: dict[str, Any]) -> None:
            for returns in Parallel(**settings, return_as="generator_unordered")(
                delayed(_indexed)([(idx, job_overrides[idx - initial_job_idx]) for idx in unit],
                                  self.hydra_context, self.config, self.task_function, state)
                for unit in units
            ):
                results.update(returns)

        queue = [[initial_job_idx + i for i in unit] for unit in self._units(job_overrides)]
        while queue:
            try:
                run(queue, settings)
                queue = []
            except TerminatedWorkerError:
                left = [idx for unit in queue for idx in unit if idx not in results]
                # loky stopped every worker: the jobs that were running cannot be told apart
                # from the one that died. Each runs again alone; one that dies alone failed.
                suspects = [idx for idx in left if self._started(idx, job_overrides[idx - initial_job_idx])]
                log.warning("a worker process died; running %s again one at a time",
                            ", ".join(f"#{i}" for i in suspects) or "no job")
                for idx in suspects:
                    try:
                        # A single job (n_jobs=1 would run it in this process, which it may kill).
                        run([[idx]], {**settings, "n_jobs": 2})
                    except TerminatedWorkerError:
                        results[idx] = self._failed(idx, job_overrides[idx - initial_job_idx])
                queue = [rest for unit in queue if (rest := [idx for idx in unit if idx not in results])]
        return [results[initial_job_idx + i] for i in range(len(job_overrides))]

    def _units(self, job_overrides: Sequence[Sequence[str]]) -> list[list[int]]:
        """:func:`seed_groups` of this sweep; every job alone under a sweeper other than a grid
        (a tuner's trials are not seeds of one configuration)."""
        alone = [[i] for i in range(len(job_overrides))]
        parallel = _flag(OmegaConf.select(self.config, "trainer.parallel_seeds", default=False))
        if not parallel and not any("trainer.parallel_seeds" in o for job in job_overrides for o in job):
            return alone
        sweeper = str(OmegaConf.select(self.config, "hydra.sweeper._target_", default=""))
        if not _grid(sweeper):
            log.info("trainer.parallel_seeds: every job runs alone under %s (its trials are not seeds of one "
                     "configuration)", sweeper.rsplit(".", 1)[-1])
            return alone
        return seed_groups(job_overrides, parallel_seeds=parallel)

    def _run_dir(self, idx: int, overrides: Sequence[str]) -> Path:
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.num = idx
            config.hydra.job.id = f"{config.hydra.job.name}_{idx}"
        return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)

    def _started(self, idx: int, overrides: Sequence[str]) -> bool:
        """Whether the job had started (its run folder exists) without finishing (no record)."""
        run_dir = self._run_dir(idx, overrides)
        return run_dir.is_dir() and not (run_dir / "metrics.json").is_file()

    def _failed(self, idx: int, overrides: Sequence[str]) -> JobReturn:
        from dlrun.report.run_folder import write_failure

        run_dir = self._run_dir(idx, overrides)
        write_failure(run_dir, RuntimeError(WORKER_DIED), overrides=list(overrides), seed=None)
        log.error("job %d failed: %s", idx, WORKER_DIED)
        # Completed as far as Hydra is concerned, like any dlrun job that failed: the sweep
        # goes on, and its report counts the job as failed from its run folder.
        return JobReturn(overrides=list(overrides), working_dir=str(run_dir), status=JobStatus.COMPLETED,
                         _return_value=math.nan)
