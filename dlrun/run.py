"""One job, top to bottom: config -> data -> model -> train -> evaluate -> report.

:func:`run_job` is what the CLI calls for each Hydra job. It converts the config to typed
objects once, then passes plain values down.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from dlrun import stages
from dlrun.capabilities import FoldContext, capabilities_for
from dlrun.config import Config
from dlrun.data import load_table
from dlrun.data.split import (
    check_class_counts,
    check_task,
    fold_indices,
    holdout_indices,
    make_splits,
    subsample,
)
from dlrun.data.table import Splits, Table
from dlrun.errors import ConfigError
from dlrun.lock import run_folder_lock
from dlrun.report.live import LiveHistory
from dlrun.stages import FoldOutcome
from dlrun.task import TaskSpec, task_spec

log = logging.getLogger(__name__)


def config_fingerprint(cfg: Config) -> str:
    """A short hash of everything a checkpoint depends on (not epochs, progress or resume)."""
    import hashlib
    import json
    from dataclasses import asdict

    keep = {k: asdict(getattr(cfg, k)) for k in ("dataset", "model", "reg", "optimizer", "eval")}
    keep["seed"] = cfg.seed
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _resume_fold(cfg: Config, run_dir: Path) -> int | None:
    """The fold to resume (its checkpoint is checked against this config).

    ``None`` for a sweep job that never got to write anything: resuming a sweep starts
    the jobs that had not started yet.
    """
    from dlrun import checkpoint as ckpt

    path = ckpt.checkpoint_path(run_dir)
    if not path.is_file():
        if _in_sweep() and not (run_dir / "metrics.json").exists():
            return None
        raise ConfigError(
            f"trainer.resume=true but {path} does not exist; set hydra.run.dir to the folder of the "
            "interrupted run (with trainer.checkpoint_every >= 1 when it ran)"
        )
    state = ckpt.read(path)
    if state.epoch > cfg.trainer.epochs:
        raise ConfigError(
            f"the checkpoint in {path.parent} is at epoch {state.epoch}, past trainer.epochs={cfg.trainer.epochs}; "
            f"resume with trainer.epochs={state.epoch} or more"
        )
    if state.fingerprint != config_fingerprint(cfg):
        raise ConfigError(
            f"the checkpoint in {path.parent} was written with another config; resume with the same "
            "dataset, model, reg, optimizer, eval and seed (only trainer.* may change)"
        )
    return state.fold


# Files every run writes: a folder in one's place would fail the run after training.
_OUTPUT_FILES = ("metrics.json", "history.csv", "summary.md", "curves.png")


def _check_outputs(run_dir: Path) -> None:
    """Refuse, before any work, a run folder where a result file's name is taken by a folder."""
    taken = [name for name in _OUTPUT_FILES if (run_dir / name).is_dir()]
    if taken:
        raise ConfigError(f"{run_dir} has a folder named {', '.join(taken)} where the run writes that file; "
                          "remove it or choose another hydra.run.dir")


def _finished(run_dir: Path, epochs: int):
    """The record of a run in ``run_dir`` that has nothing left to train, else None.

    A run that ended ``ok`` or ``diverged`` is finished unless it ran all its epochs and
    ``epochs`` asks for more (then a resume trains on from its checkpoint).
    """
    from dlrun.record import METRICS_FILE, RecordError, read_record

    if not (run_dir / METRICS_FILE).is_file():
        return None
    try:
        record = read_record(run_dir)
    except RecordError:
        return None
    if record.status not in ("ok", "diverged"):
        return None
    more = record.status == "ok" and not record.stopped_early and (record.epochs_run or 0) < epochs
    return None if more else record


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _sweep_job_tag() -> str:
    """``"job 7 · "`` in a sweep, so progress lines of parallel jobs can be told apart; else ``""``."""
    from hydra.core.hydra_config import HydraConfig

    return f"job {HydraConfig.get().job.num} · " if _in_sweep() else ""


def _load(cfg: Config) -> Table:
    table = subsample(load_table(cfg.dataset), cfg.dataset.max_rows, seed=cfg.seed)
    if cfg.dataset.task is not None and cfg.dataset.task != table.task:
        check_task(table, cfg.dataset.task)
        table.task = cfg.dataset.task
    check_class_counts(table)
    return table


def _split_plan(cfg: Config, table: Table) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(train, val, test) row indices: one for holdout, one per fold for k-fold."""
    d = cfg.dataset
    train, val, test = holdout_indices(
        table.y, task=table.task, test_size=d.test_size, val_size=d.val_size, seed=cfg.seed,
        test=table.test_rows,
    )
    if cfg.eval.name == "holdout":
        if cfg.eval.refit:  # a tuned configuration's final fit: every development row trains
            return [(np.sort(np.concatenate([train, val])), val, test)]
        return [(train, val, test)]
    dev = np.sort(np.concatenate([train, val]))
    repeats = cfg.eval.repeats if cfg.eval.name == "iterated_kfold" else 1
    folds = fold_indices(table.y[dev], task=table.task, folds=cfg.eval.folds, repeats=repeats, seed=cfg.seed)
    return [(dev[tr], dev[va], test) for tr, va in folds]


# Jobs whose folds were trained beside other seeds (dlrun.seed_group): run folder -> the
# function that writes it, as the rest of a job would; run_job calls it instead.
TRAINED: dict[Path, Callable[[], float]] = {}


def run_job(cfg_node: DictConfig, run_dir: Path, *, overrides: list[str] | None = None) -> float:
    """Run one configured experiment and write its run folder.

    Args:
        cfg_node: the composed, validated config.
        run_dir: the Hydra output directory of this job.
        overrides: the command-line overrides, recorded in ``metrics.json``.

    Returns:
        The validation headline metric (the objective sweepers optimise); NaN when the
        run diverged or was interrupted.
    """
    trained = TRAINED.pop(Path(run_dir).absolute(), None)
    if trained is not None:
        return trained()
    cfg: Config = OmegaConf.to_object(cfg_node)
    with run_folder_lock(run_dir):
        return _run(cfg, run_dir, overrides=overrides or [], accepted=lambda: _write_hydra_files(cfg_node, run_dir))


def _write_hydra_files(cfg_node: DictConfig, run_dir: Path) -> None:
    """Write the ``.hydra/`` files Hydra held back for a resume (``dlrun.cli._defer_hydra_files``)."""
    import os

    from hydra.core.hydra_config import HydraConfig

    from dlrun.cli import HYDRA_SUBDIR_ENV

    subdir = os.environ.get(HYDRA_SUBDIR_ENV)
    if not subdir or not HydraConfig.initialized() or HydraConfig.get().output_subdir is not None:
        return
    hydra_cfg = OmegaConf.create({"hydra": OmegaConf.to_container(HydraConfig.get())})
    hydra_cfg.hydra.output_subdir = subdir
    folder = run_dir / subdir
    folder.mkdir(parents=True, exist_ok=True)
    for name, node in (("config.yaml", cfg_node), ("hydra.yaml", hydra_cfg),
                       ("overrides.yaml", HydraConfig.get().overrides.task)):
        OmegaConf.save(node, folder / name)


def _run(cfg: Config, run_dir: Path, *, overrides: list[str], accepted=lambda: None) -> float:
    """Run the folds of one job; ``accepted`` is called once a resume is accepted (or none asked for)."""
    from dlrun import runtime
    from dlrun.report.run_folder import write_interrupted, write_run_folder

    if cfg.trainer.resume:
        done = _finished(run_dir, cfg.trainer.epochs)
        if done is not None:  # resuming a sweep, or a run twice: finished work stays as it is
            log.info("%s finished before (status %s); left as it is: nothing to resume", run_dir, done.status)
            return math.nan if done.objective is None else done.objective
    _check_outputs(run_dir)
    table = _load(cfg)  # before TensorFlow starts: bad data answers fast
    runtime.import_tensorflow()  # its start-up lines go to run.log, whichever module needs it first
    resume_fold = _resume_fold(cfg, run_dir) if cfg.trainer.resume else None
    accepted()
    device = runtime.setup(cfg.trainer, seed=cfg.seed)
    capabilities = capabilities_for(cfg)
    plan = _split_plan(cfg, table)
    live = LiveHistory(run_dir / "history.csv", folds=len(plan))
    interrupts = runtime.Interrupts()
    outcomes: list[FoldOutcome] = []
    spec: TaskSpec | None = None
    stopped = False
    try:
        for i, (train, val, test) in enumerate(plan):
            if interrupts.requested:
                break
            ctx = FoldContext(cfg=cfg, run_dir=run_dir, fold=i, folds=len(plan), spec=spec)
            splits = make_splits(table, train, val, test, scaling=cfg.dataset.scaling)
            if i == len(plan) - 1:
                table.x = None  # the splits hold their own rows: the whole table need not stay while the last fold trains
            # The headline follows the data as it comes, not as resampling leaves the training
            # split: one sweep over sampling methods ranks every job by the same metric.
            spec = ctx.spec = spec or task_spec(table.task, splits.n_classes, splits.train.y,
                                                headline=cfg.task.headline, threshold=cfg.task.threshold)
            splits = stages.prepare(splits, capabilities, ctx)
            outcome = _run_fold(splits, spec, capabilities, ctx, table_name=table.name, live=live,
                                interrupts=interrupts, resume=resume_fold == i,
                                redo=resume_fold is not None and i < resume_fold)
            outcomes.append(outcome)
            if outcome.fit.status != "ok":
                break
    except KeyboardInterrupt:  # outside an epoch (between folds, building): the folds done are kept
        stopped = True
    stopped = stopped or interrupts.requested
    with interrupts.held():  # a second signal must not cut the report short
        if not outcomes:
            write_interrupted(run_dir, overrides=overrides, seed=cfg.seed, folds=len(plan))
            raise KeyboardInterrupt
        record = write_run_folder(
            run_dir, cfg=cfg, spec=spec, outcomes=outcomes, capabilities=capabilities, device=device,
            versions=runtime.versions(), overrides=overrides, dataset_name=table.name,
            stopped=f"stopped by the user after {len(outcomes)} of {len(plan)} folds" if stopped else None,
        )
    if record.status == "interrupted" or interrupts.requested:
        raise KeyboardInterrupt  # the results so far are written; the CLI exits with 130
    return math.nan if record.objective is None else record.objective


def _run_fold(splits: Splits, spec: TaskSpec, capabilities: list, ctx: FoldContext, *, table_name: str,
              live: LiveHistory, interrupts, resume: bool, redo: bool) -> FoldOutcome:
    """build → train → predict → post-process → evaluate, for one fold.

    Folds before a checkpointed one are re-trained (deterministically) without overwriting
    the checkpoint (``redo``); the checkpointed fold continues from it (``resume``).
    """
    from dlrun.progress import epoch_progress

    cfg = ctx.cfg
    model = stages.build(splits, spec, capabilities, ctx)
    phases = stages.plan_phases(capabilities, ctx)
    label = _sweep_job_tag() + (f"fold {ctx.fold + 1}/{ctx.folds}" if ctx.folds > 1 else table_name)
    total = sum(p.epochs for p in phases)
    with epoch_progress(cfg.trainer.progress, total, spec, label=label) as on_epoch:
        fit, phase_record = stages.train_phases(
            model, splits, spec, phases, capabilities, ctx, on_epoch=on_epoch,
            fingerprint=config_fingerprint(cfg), resume=resume, checkpoint=not redo,
            live=lambda history: live.update(ctx.fold, history),
        )
    with interrupts.held():  # the fold trained: finish scoring it before stopping
        predictions = stages.predict_parts(model, splits)
        labels = stages.post_process(predictions, splits, spec, capabilities, ctx)
        outcome = FoldOutcome(
            fold=ctx.fold, splits=splits, model=model, fit=fit, predictions=predictions, labels=labels,
            metrics={}, baseline={}, params=model.count_params(),
            phases=phase_record,
        )
        return stages.evaluate(outcome, spec, capabilities, ctx)
