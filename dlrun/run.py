"""One job, top to bottom: config -> data -> model -> train -> evaluate -> report.

:func:`run_job` is what the CLI calls for each Hydra job. It converts the config to typed
objects once, then passes plain values down.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from dlrun.config import Config
from dlrun.data import load_table
from dlrun.data.split import (
    check_class_counts,
    fold_indices,
    holdout_indices,
    make_splits,
    subsample,
)
from dlrun.data.table import Splits, Table
from dlrun.errors import ConfigError
from dlrun.task import TaskSpec, task_spec

log = logging.getLogger(__name__)


@dataclass
class FoldOutcome:
    """Everything one training (one holdout split or one fold) produced."""

    fit: object  # dlrun.train.FitResult
    metrics: dict[str, dict[str, float]]
    baseline: dict[str, float]
    test_pred: np.ndarray
    splits: Splits
    params: int
    model: object


def _callbacks(cfg: Config, run_dir: Path) -> list:
    import keras

    reg, trainer = cfg.reg, cfg.trainer
    cbs: list = []
    if reg.early_stopping:
        cbs.append(keras.callbacks.EarlyStopping(
            monitor=reg.monitor, patience=reg.patience, min_delta=reg.min_delta,
            restore_best_weights=reg.restore_best_weights,
        ))
    if trainer.reduce_lr_on_plateau:
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5))
    if trainer.tensorboard:
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    return cbs


def _train_one(
    cfg: Config, splits: Splits, spec: TaskSpec, run_dir: Path, on_epoch, *, fold: int = 0,
    resume: bool = False, checkpoint: bool = True,
) -> FoldOutcome:
    from dlrun import checkpoint as ckpt
    from dlrun.evaluate import baseline, evaluate_splits
    from dlrun.models import build_model, load_weights
    from dlrun.optim import build_optimizer
    from dlrun.train import predict, train

    model = build_model(
        cfg.model, cfg.reg, input_shape=splits.input_shape, spec=spec, image_shape=splits.image_shape
    )
    if cfg.model.weights:
        model = load_weights(model, cfg.model.weights)
    steps = int(np.ceil(len(splits.y_train) / cfg.optimizer.batch_size))
    optimizer = build_optimizer(cfg.optimizer, steps_per_epoch=steps, epochs=cfg.trainer.epochs)
    path = ckpt.checkpoint_path(run_dir)
    done = ckpt.restore(path, model, optimizer) if resume else None
    history: list[dict[str, float]] = list(done.history) if done else []

    def record(epoch: int, row: dict[str, float]) -> None:
        history.append(row)
        on_epoch(epoch, row)

    callbacks = _callbacks(cfg, run_dir)
    if checkpoint and cfg.trainer.checkpoint_every:
        callbacks.append(ckpt.EpochCheckpoint(  # last: it restores the others' state on resume
            path, every=cfg.trainer.checkpoint_every, fold=fold, history=history,
            fingerprint=config_fingerprint(cfg), peers=callbacks, resumed=done,
        ))
    fit = train(
        model, splits, spec, optimizer=optimizer, epochs=cfg.trainer.epochs,
        batch_size=cfg.optimizer.batch_size, callbacks=callbacks,
        loop=cfg.trainer.loop, on_epoch=record, seed=cfg.seed,
        initial_epoch=done.epoch if done else 0, history=done.history if done else None,
    )
    metrics, test_pred = evaluate_splits(lambda x: predict(model, x), splits, spec)
    return FoldOutcome(fit, metrics, baseline(splits, spec), test_pred, splits, model.count_params(), model)


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
    if state.fingerprint != config_fingerprint(cfg):
        raise ConfigError(
            f"the checkpoint in {path.parent} was written with another config; resume with the same "
            "dataset, model, reg, optimizer, eval and seed (only trainer.* may change)"
        )
    return state.fold


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
        table.task = cfg.dataset.task
    check_class_counts(table)
    return table


def _split_plan(cfg: Config, table: Table) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(train, val, test) row indices: one for holdout, one per fold for k-fold."""
    d = cfg.dataset
    train, val, test = holdout_indices(
        table.y, task=table.task, test_size=d.test_size, val_size=d.val_size, seed=cfg.seed
    )
    if cfg.eval.name == "holdout":
        return [(train, val, test)]
    dev = np.sort(np.concatenate([train, val]))
    repeats = cfg.eval.repeats if cfg.eval.name == "iterated_kfold" else 1
    folds = fold_indices(table.y[dev], task=table.task, folds=cfg.eval.folds, repeats=repeats, seed=cfg.seed)
    return [(dev[tr], dev[va], test) for tr, va in folds]


@contextmanager
def _claim(run_dir: Path):
    """Hold ``<run>/.dlrun.lock`` while the job runs: two live processes never share a folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".dlrun.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        holder = lock.read_text().strip()
        if holder.isdigit() and int(holder) != os.getpid() and _alive(int(holder)):
            raise ConfigError(
                f"another dlrun process (pid {holder}) is writing into {run_dir}; give each run its "
                "own hydra.run.dir"
            ) from None
        lock.unlink(missing_ok=True)  # left behind by a process that was killed
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(fd, "w") as handle:
        handle.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    cfg: Config = OmegaConf.to_object(cfg_node)
    with _claim(run_dir):
        return _run(cfg, run_dir, overrides=overrides or [])


def _run(cfg: Config, run_dir: Path, *, overrides: list[str]) -> float:
    from dlrun import runtime
    from dlrun.progress import epoch_progress
    from dlrun.report.run_folder import write_run_folder

    table = _load(cfg)  # before TensorFlow starts: bad data answers fast
    runtime.import_tensorflow()  # its start-up lines go to run.log, whichever module needs it first
    resume_fold = _resume_fold(cfg, run_dir) if cfg.trainer.resume else None
    device = runtime.setup(cfg.trainer, seed=cfg.seed)
    plan = _split_plan(cfg, table)
    job = _sweep_job_tag()
    outcomes: list[FoldOutcome] = []
    spec: TaskSpec | None = None
    for i, (train, val, test) in enumerate(plan):
        splits = make_splits(table, train, val, test, scaling=cfg.dataset.scaling)
        spec = spec or task_spec(table.task, splits.n_classes, splits.y_train)
        label = job + (f"fold {i + 1}/{len(plan)}" if len(plan) > 1 else table.name)
        # Folds before the checkpointed one are re-trained (deterministically) without
        # overwriting the checkpoint; the checkpointed fold continues from it.
        redo = resume_fold is not None and i < resume_fold
        with epoch_progress(cfg.trainer.progress, cfg.trainer.epochs, spec, label=label) as on_epoch:
            outcome = _train_one(cfg, splits, spec, run_dir, on_epoch, fold=i,
                                 resume=resume_fold == i, checkpoint=not redo)
        outcomes.append(outcome)
        if outcome.fit.status != "ok":
            break
    summary = write_run_folder(
        run_dir, cfg=cfg, spec=spec, outcomes=outcomes, device=device,
        versions=runtime.versions(), overrides=overrides, dataset_name=table.name,
    )
    if summary.status == "interrupted":
        raise KeyboardInterrupt  # the results so far are written; the CLI exits with 130
    return summary.objective
