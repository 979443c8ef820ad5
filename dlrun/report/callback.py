"""The Hydra callback that writes the sweep-level comparison when a multirun ends."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

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
        self._started = time.time()
        _LAST["failed"] = 0

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from dlrun.report.sweep import report_sweep

        sweep_dir = Path(config.hydra.sweep.dir)
        study = config.get("study") or {}
        try:
            result = report_sweep([sweep_dir], out_dir=sweep_dir, study=study, since=self._started - 1)
        except Exception:  # a report bug must not hide the jobs' results
            log.exception("could not write the sweep report for %s", sweep_dir)
            _LAST["failed"] = 1
            return
        _LAST["failed"] = result.n_failed
        log.info("sweep report: %s (%d jobs, %d failed)", sweep_dir / "study.md", result.n_jobs, result.n_failed)
