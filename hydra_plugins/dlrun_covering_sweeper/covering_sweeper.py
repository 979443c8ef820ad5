"""Hydra's basic sweeper, checking a sweep by composing a few jobs instead of every one.

Before launching a batch, Hydra's basic sweeper composes every job's config in the main
process, one after another, to fail early on a bad override; each job then composes its
config again where it runs. In a sweep of small jobs that is a large share of the time:
course 3's 140 jobs spent about 17 s composing before the first job started (0.12 s a
job on an idle 2-core machine), with the warm workers waiting.

:class:`CoveringSweeper` composes only :func:`covering_jobs` beforehand: jobs in which
every swept value (``optimizer=adam``, ``seed=3``) appears at least once, which catches
what a grid's overrides get wrong (an unknown option, key or value type): 7 jobs for
course 3's 4 × 7 × 5 grid. A job that fails to compose only for its particular
combination of values stops the sweep when it is launched, instead of before the first.
``dlrun`` puts this class behind ``hydra/sweeper=basic`` (:func:`use_covering_sweeper`);
its settings are Hydra's (``max_batch_size``, ``params``).
"""

# No `from __future__ import annotations`: Hydra loads plugin modules outside sys.modules,
# where dataclasses cannot resolve string annotations.
import logging
from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

log = logging.getLogger(__name__)


def covering_jobs(batch: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """A few jobs of ``batch`` in which every override of the batch appears at least once.

    Greedy: the job with the most overrides not covered yet, until none is left.
    """
    jobs = [(job, set(job)) for job in batch]
    uncovered = set().union(*(overrides for _, overrides in jobs))
    chosen: list[Sequence[str]] = []
    while uncovered:
        job, overrides = max(jobs, key=lambda j: len(j[1] & uncovered))
        chosen.append(job)
        uncovered -= overrides
    return chosen


class CoveringSweeper(BasicSweeper):
    """Hydra's basic sweeper; a batch is checked by composing :func:`covering_jobs` only."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        chosen = covering_jobs(batch)
        log.debug("composing %d of %d jobs to check the sweep's values", len(chosen), len(batch))
        super().validate_batch_is_legal(chosen)


def use_covering_sweeper() -> None:
    """Make ``hydra/sweeper=basic`` (every grid sweep's default) select :class:`CoveringSweeper`.

    Call before Hydra composes the config; Hydra's plugin scan, which stores its own
    ``basic`` sweeper, runs first.
    """
    from hydra_plugins.dlrun_launchers import register_over

    register_over("basic", "hydra._internal.core_plugins.basic_sweeper", "BasicSweeperConf",
                  f"{__name__}.CoveringSweeper", group="hydra/sweeper")
