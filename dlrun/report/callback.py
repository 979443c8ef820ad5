"""The Hydra callback that writes the sweep-level comparison when a multirun ends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

if TYPE_CHECKING:
    from dlrun.report.study import SweepResult

log = logging.getLogger(__name__)

_LAST: dict[str, Any] = {"failed": 0}


def last_sweep_failures() -> int:
    """How many jobs failed in the last sweep this process ran (0 if none ran)."""
    return int(_LAST.get("failed", 0))


class SweepReport(Callback):
    """Writes ``leaderboard.csv``, ``study.md`` and comparison plots into the sweep folder.

    Only run folders written during this sweep are read, so re-running a preset into
    the same stable folder does not mix in stale jobs.
    """

    def __init__(self) -> None:
        self._started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from dlrun.launch import WarmWorkers
        from dlrun.report.runs import open_sweep

        self._started = time.time()
        try:
            open_sweep(Path(config.hydra.sweep.dir))
        except OSError:  # a folder that cannot be made: the launcher says so in one line
            pass
        _LAST["failed"] = 0
        # A joblib sweep's pool of warm workers draws the run folders' figures at the end.
        _LAST["joblib"] = WarmWorkers.settings(config)
        # What a Ctrl-C needs to report the jobs that finished (Hydra then skips the end).
        _LAST["open"] = (Path(config.hydra.sweep.dir), dict(config.get("study") or {}), self._started)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _LAST.pop("open", None)
        result = _report(Path(config.hydra.sweep.dir), dict(config.get("study") or {}), self._started)
        _LAST["failed"] = 1 if result is None else result.n_failed


def _report(sweep_dir: Path, study: dict[str, Any], started: float) -> SweepResult | None:
    """Write the sweep report of this sweep's jobs (see ``collect_runs``); None if it failed.

    The figures the jobs left to draw (``trainer.defer_plots``) are drawn meanwhile by a
    pool of worker processes, so every run folder is complete when this returns.
    """
    from dlrun.report.study import report_sweep

    drawing = _draw_run_figures(sweep_dir)
    try:
        result = report_sweep([sweep_dir], out_dir=sweep_dir, study=study, since=started)
    except Exception:  # a report bug must not hide the jobs' results
        log.exception("could not write the sweep report for %s", sweep_dir)
        return None
    finally:
        drawing()
    log.info("sweep report: %s (%d jobs, %d failed)", sweep_dir / "study.md", result.n_jobs, result.n_failed)
    return result


def _draw_run_figures(sweep_dir: Path) -> Callable[[], None]:
    """Start drawing the run folders' waiting figures; returns the call that waits for the end.

    Worker processes draw them while this process writes the report (matplotlib is not
    thread-safe, so the report's own plots stay in this process alone); with one core, or
    few figures, they are drawn here once the report is written.
    """
    from dlrun.launch import cpu_count, parallel_jobs
    from dlrun.report.plots import PARALLEL_FROM, draw_pending, pending

    settings = _LAST.get("joblib")
    cores = cpu_count()
    try:
        n_jobs = parallel_jobs(int(settings.get("n_jobs", -1)), cores=cores) if settings else cores
    except ValueError:  # a launcher setting the sweep itself refused (n_jobs=0): draw them here
        n_jobs = 1
    if n_jobs < 2 or len(pending([sweep_dir])) < PARALLEL_FROM:
        return lambda: draw_pending([sweep_dir])
    thread = threading.Thread(target=draw_pending, args=([sweep_dir],),
                              kwargs={"n_jobs": n_jobs, "joblib": settings},
                              name="dlrun-draw-run-figures", daemon=True)
    thread.start()
    return thread.join


def sweep_open() -> bool:
    """Whether a sweep started in this process and has not ended (its report is not written)."""
    return "open" in _LAST


def report_unfinished_sweep() -> Path | None:
    """Report the jobs that wrote their run folders in a sweep that stopped before its end.

    Hydra skips ``on_multirun_end`` when Ctrl-C or a failing launcher stops a sweep; the CLI
    calls this instead, which also closes the sweep for this process.
    Returns the sweep's ``study.md``, or None when no sweep was running or nothing was written.
    """
    opened = _LAST.pop("open", None)
    if opened is None:
        return None
    result = _report(*opened)
    return opened[0] / "study.md" if result is not None and result.n_jobs else None
