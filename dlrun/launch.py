"""What a job adapts to the Hydra launcher that runs it: TensorFlow threads, progress display.

``trainer.threads=0`` means "size it for me": under the joblib launcher the machine's
cores are shared evenly between the jobs that run at once (``cores // n_jobs``, at least
one), so parallel jobs do not fight over the same cores; under submitit a job gets the
``cpus_per_task`` it reserved; under the basic launcher (one job at a time) TensorFlow
chooses. A positive ``trainer.threads`` always wins.

Jobs that joblib runs at once share one terminal: ``trainer.progress=auto`` becomes
``plain`` there (log lines tagged with the job number) instead of rich bars drawn over
each other.

Under joblib, :class:`WarmWorkers` starts the worker processes and has them import
what a job needs (TensorFlow, Keras, scikit-learn, matplotlib: about 4 s) while Hydra
is still checking the sweep in the main process (it composes a few jobs' configs before
the first job starts: ``hydra_plugins.dlrun_covering_sweeper``); the jobs then run in those
same, already warm, workers, which also draw the run folders' figures when the sweep ends
(:mod:`dlrun.report.plots`).

Kept free of TensorFlow imports: it runs before the job imports it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def cpu_count() -> int:
    """Cores this process may use (CPU affinity and cgroup quotas respected, as joblib counts)."""
    try:
        import joblib

        return max(1, int(joblib.cpu_count()))
    except ImportError:  # joblib comes with hydra-joblib-launcher; be safe without it
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def parallel_jobs(n_jobs: int, *, cores: int) -> int:
    """Jobs joblib runs at once for its ``n_jobs`` (negative counts back from ``cores``)."""
    if n_jobs == 0:
        raise ValueError("hydra.launcher.n_jobs=0 runs nothing; use -1 (every core) or a positive count")
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def _is(launcher: Mapping[str, Any] | None, plugin: str) -> bool:
    """Whether ``launcher`` (a ``hydra.launcher`` node) comes from ``plugin`` (joblib, submitit)."""
    return bool(launcher) and plugin in str(launcher.get("_target_", "")).lower()


def job_threads(threads: int, launcher: Mapping[str, Any] | None, *, cores: int | None = None) -> int:
    """The TF thread-pool size for one job (0: let TensorFlow choose).

    Args:
        threads: ``trainer.threads`` as configured; a positive value is returned as is.
        launcher: the job's ``hydra.launcher`` node (None outside Hydra).
        cores: cores on this machine. Defaults to :func:`cpu_count`.
    """
    if threads > 0 or not launcher:
        return threads
    if _is(launcher, "joblib"):
        cores = cores or cpu_count()
        return max(1, cores // parallel_jobs(int(launcher.get("n_jobs", -1)), cores=cores))
    if _is(launcher, "submitit") and launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    return 0


def fit_job_to_launcher(cfg: Any) -> None:
    """Size ``trainer.threads=0`` to the launcher's share of cores and, under joblib, turn
    ``trainer.progress=auto`` into ``plain``; in place.

    Call inside a Hydra job, before the job is run. Outside a Hydra job it does nothing.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    launcher = HydraConfig.get().get("launcher")
    threads = job_threads(int(cfg.trainer.threads), launcher)
    if threads != cfg.trainer.threads:
        name = str(launcher.get("_target_", "")).rsplit(".", 1)[-1]
        log.info("TensorFlow threads: %d for this job (trainer.threads=0 under %s)", threads, name)
        cfg.trainer.threads = threads
    if cfg.trainer.progress == "auto" and _is(launcher, "joblib"):
        cfg.trainer.progress = "plain"


def _warm_up() -> int:
    """In a worker: import what every job imports (no TensorFlow op runs, so the job can
    still size TensorFlow's thread pools)."""
    from dlrun.runtime import import_tensorflow

    import_tensorflow()  # TensorFlow's start-up lines stay off the shared terminal
    import sklearn.ensemble  # noqa: F401  the reference models
    import sklearn.linear_model  # noqa: F401

    import dlrun.cli  # noqa: F401  the task function Hydra sends
    import dlrun.run  # noqa: F401
    from dlrun import checkpoint, evaluate, models, optim, reference, train  # noqa: F401
    from dlrun.report import plots, run_folder  # noqa: F401

    return os.getpid()


# The warm-up thread lives here, not on the callback: Hydra pickles its callbacks to the workers.
_WARMING: list[threading.Thread] = []
WARMED: set[int] = set()  # the process ids of the workers warmed so far


class WarmWorkers(Callback):
    """Under the joblib launcher, warm its workers while Hydra prepares the sweep.

    The warm-up is a ``joblib.Parallel`` call with the launcher's own settings, made from a
    background thread: joblib keeps one reusable pool of worker processes, so the sweep's
    own ``Parallel`` call finds the workers started and their imports done. Any failure
    here only costs the head start; the sweep reports its own errors.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        settings = self.settings(config)
        if settings is None:
            return
        thread = threading.Thread(target=self._warm, args=(settings,), name="dlrun-warm-workers", daemon=True)
        thread.start()
        _WARMING.append(thread)

    @staticmethod
    def settings(config: DictConfig) -> dict[str, Any] | None:
        """The ``joblib.Parallel`` arguments the joblib launcher will use; None for other launchers."""
        launcher = OmegaConf.to_container(config.hydra.launcher, resolve=True)
        if not _is(launcher, "joblib"):
            return None
        from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg

        settings = {k: v for k, v in launcher.items() if k != "_target_"}
        settings["backend"] = "loky"  # as the launcher does
        process_joblib_cfg(settings)
        return settings

    @staticmethod
    def _warm(settings: dict[str, Any]) -> None:
        try:
            from joblib import Parallel, delayed

            workers = parallel_jobs(int(settings.get("n_jobs", -1)), cores=cpu_count())
            WARMED.update(Parallel(**settings)(delayed(_warm_up)() for _ in range(workers)))
            log.debug("warmed joblib workers %s", sorted(WARMED))
        except Exception as err:  # only the head start is lost
            log.debug("could not warm the joblib workers: %s", err)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        while _WARMING:
            _WARMING.pop().join()
