"""A tuning, batch by batch: ask points, launch their jobs, tell their scores, write the folder.

The skopt sweeper (``hydra_plugins.dlrun_skopt_sweeper``) hands :func:`tune` a ``launch``
function that runs a batch of override lists through Hydra's configured launcher (basic,
joblib, submitit alike) and returns each job's objective and run folder. Everything else
(the search, failures, resume, the tuning folder, the final refit) happens here, so it is
tested without Hydra.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dlrun.config import TunerConfig
from dlrun.errors import ConfigError
from dlrun.tuning import STATUS_OK, Trial, Tuner
from dlrun.tuning_folder import plot_convergence, read_trials, write_best_config, write_trials
from dlrun.tuning_space import SearchSpace

log = logging.getLogger(__name__)

REFIT = "eval.refit=true"  # dlrun.run: train on train + validation, score once on test
REFIT_SUBDIR = "hydra.sweep.subdir=refit"


@dataclass(frozen=True)
class JobResult:
    """What a launched job gave back: its objective (NaN when it has none) and its run folder."""

    value: float
    run_dir: Path | None


Launch = Callable[[Sequence[Sequence[str]], int], list[JobResult]]


@dataclass(frozen=True)
class _Read:
    status: str
    seconds: float
    greater_is_better: bool | None
    headline: str | None
    test: float | None = None


def _read(result: JobResult) -> _Read:
    """The status, training seconds and metric direction recorded in the job's run folder."""
    from dlrun.record import RecordError, read_record

    if result.run_dir is None or not (result.run_dir / "metrics.json").is_file():
        return _Read("failed" if not math.isfinite(result.value) else STATUS_OK, math.nan, None, None)
    try:
        record = read_record(result.run_dir)
    except (OSError, RecordError):
        return _Read("failed", math.nan, None, None)
    seconds = record.fit_seconds if record.fit_seconds is not None else math.nan
    test = record.test.get(record.headline or "") if record.test else None
    return _Read(record.status, float(seconds), record.greater_is_better, record.headline, test)


def tune(space: SearchSpace, settings: TunerConfig, *, folder: Path, launch: Launch,
         command: str = "dlrun") -> Tuner:
    """Run a tuning into ``folder`` (resuming from its ``trials.csv``) and refit the best trial.

    Args:
        space: what to search, and the overrides every trial shares.
        settings: ``tuner.*``.
        folder: the sweep folder (trials.csv, best_config.yaml, convergence.png).
        launch: runs a batch of override lists from a first job number (see the module docstring).
        command: the command named in best_config.yaml's rerun line. Defaults to "dlrun".

    Returns:
        The tuner, with every trial.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tuner = Tuner(space, settings)
    done, direction = read_trials(folder, space)
    if done:
        tuner.resume(done, direction=direction)
        log.info("resuming from %s: %d of %d trials done", folder / "trials.csv", len(done), tuner.n_calls)
    next_job = max((t.number for t in done), default=-1) + 1
    metric = None
    while tuner.remaining:
        points = tuner.ask(settings.n_jobs)
        results = launch([space.overrides(p) for p in points], next_job)
        reads = [_read(r) for r in results]
        trials = [Trial(number=next_job + i, point=p, params=space.params(p), score=_score(r, d),
                        status=d.status, seconds=d.seconds, run_dir=str(r.run_dir or ""))
                  for i, (p, r, d) in enumerate(zip(points, results, reads, strict=True))]
        next_job += len(points)
        direction_known = next((d.greater_is_better for d in reads if d.greater_is_better is not None), None)
        metric = metric or next((d.headline for d in reads if d.headline), None)
        tuner.tell(trials, greater_is_better=direction_known)
        write_trials(folder, tuner)
        _log_batch(tuner, trials)
        _stop_if_every_trial_failed(tuner, results)
    metric = metric or _metric_of(tuner)
    plot_convergence(folder, tuner, metric=metric)
    if write_best_config(folder, tuner, metric=metric, command=command) is None:
        log.warning("no trial finished: no best_config.yaml and no refit")
        return tuner
    best = tuner.best()
    log.info("best trial %d: validation %s %.4f (%s)", best.number, metric, best.score,
             ", ".join(f"{k}={v}" for k, v in best.params.items()))
    if settings.refit:
        _refit(tuner, folder=folder, launch=launch, job=next_job, metric=metric, command=command,
               epochs=settings.refit_epochs)
    return tuner


# A tuning whose first trials all raised (status failed, not diverged) has a broken config,
# not bad points: every other trial would fail the same way.
FAILED_BEFORE_STOP = 3


def _stop_if_every_trial_failed(tuner: Tuner, results: list[JobResult]) -> None:
    trials = tuner.trials
    if len(trials) < min(FAILED_BEFORE_STOP, tuner.n_calls) or any(t.status != "failed" for t in trials):
        return
    message = next((m for m in map(_failure_message, results) if m), "see the trials' run.log")
    raise ConfigError(f"the first {len(trials)} trials all failed, so the tuning stops: {message}")


def _failure_message(result: JobResult) -> str | None:
    from dlrun.record import RecordError, read_record

    try:
        return read_record(result.run_dir).message if result.run_dir else None
    except (OSError, RecordError):
        return None


def _score(result: JobResult, read: _Read) -> float:
    return result.value if read.status == STATUS_OK and math.isfinite(result.value) else math.nan


def _metric_of(tuner: Tuner) -> str:
    for t in tuner.trials:
        if t.run_dir:
            read = _read(JobResult(t.score, Path(t.run_dir)))
            if read.headline:
                return read.headline
    return "objective"


def _log_batch(tuner: Tuner, trials: list[Trial]) -> None:
    best = tuner.best()
    for t in trials:
        what = f"{t.score:.4f}" if t.finished else t.status
        log.info("trial %d/%d: %s (best %s)", len(tuner.trials) - len(trials) + trials.index(t) + 1,
                 tuner.n_calls, what, f"{best.score:.4f}" if best else "none yet")


def _refit(tuner: Tuner, *, folder: Path, launch: Launch, job: int, metric: str, command: str,
           epochs: int | None = None) -> None:
    """Retrain the best trial on train + validation (for ``epochs``, when given: ``tuner.refit_epochs``)
    and score it once on test (best_config.yaml notes it)."""
    best = tuner.best()
    longer = [f"trainer.epochs={epochs}"] if epochs is not None else []
    try:
        (result,) = launch([[*tuner.space.overrides(best.point), REFIT, REFIT_SUBDIR, *longer]], job)
    except Exception as err:  # the tuning is done and written: a failed refit must not hide it
        log.warning("the refit of the best trial could not run: %s", err)
        return
    read = _read(result)
    if read.status != STATUS_OK or read.test is None:
        log.warning("the refit of the best trial did not finish (%s); see %s", read.status, result.run_dir)
        return
    log.info("refit of the best trial on train + validation: test %s %.4f (%s)", metric, read.test,
             result.run_dir)
    write_best_config(folder, tuner, metric=metric, command=command,
                      refit={"run_dir": str(result.run_dir), f"test_{metric}": read.test,
                             **({"epochs": epochs} if epochs is not None else {})})
