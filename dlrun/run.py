"""One job, top to bottom: config -> data -> model -> train -> evaluate -> report.

:func:`run_job` is what the CLI calls for each Hydra job. It converts the config to typed
objects once, then passes plain values down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from dlrun.config import Config
from dlrun.data import load_table
from dlrun.data.split import check_class_counts, fold_indices, holdout_indices, make_splits, subsample
from dlrun.data.table import Splits, Table
from dlrun.task import TaskSpec, task_spec

log = logging.getLogger(__name__)


@dataclass
class FoldOutcome:
    """Everything one training (one holdout split or one fold) produced."""

    fit: "object"  # dlrun.train.FitResult
    metrics: dict[str, dict[str, float]]
    baseline: dict[str, float]
    test_pred: np.ndarray
    splits: Splits
    params: int
    model: "object"


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


def _train_one(cfg: Config, splits: Splits, spec: TaskSpec, run_dir: Path, on_epoch) -> FoldOutcome:
    from dlrun.evaluate import baseline, evaluate_splits
    from dlrun.models import build_model
    from dlrun.optim import build_optimizer
    from dlrun.train import predict, train

    model = build_model(
        cfg.model, cfg.reg, input_shape=splits.input_shape, spec=spec, image_shape=splits.image_shape
    )
    steps = int(np.ceil(len(splits.y_train) / cfg.optimizer.batch_size))
    optimizer = build_optimizer(cfg.optimizer, steps_per_epoch=steps, epochs=cfg.trainer.epochs)
    fit = train(
        model, splits, spec, optimizer=optimizer, epochs=cfg.trainer.epochs,
        batch_size=cfg.optimizer.batch_size, callbacks=_callbacks(cfg, run_dir),
        loop=cfg.trainer.loop, on_epoch=on_epoch, seed=cfg.seed,
    )
    metrics, test_pred = evaluate_splits(lambda x: predict(model, x), splits, spec)
    return FoldOutcome(fit, metrics, baseline(splits, spec), test_pred, splits, model.count_params(), model)


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


def run_job(cfg_node: DictConfig, run_dir: Path, *, overrides: Optional[list[str]] = None) -> float:
    """Run one configured experiment and write its run folder.

    Args:
        cfg_node: the composed, validated config.
        run_dir: the Hydra output directory of this job.
        overrides: the command-line overrides, recorded in ``metrics.json``.

    Returns:
        The validation headline metric (the objective sweepers optimise); NaN when the
        run diverged or was interrupted.
    """
    from dlrun import runtime
    from dlrun.progress import epoch_progress
    from dlrun.report.run_folder import write_run_folder

    cfg: Config = OmegaConf.to_object(cfg_node)
    device = runtime.setup(cfg.trainer, seed=cfg.seed)
    table = _load(cfg)
    plan = _split_plan(cfg, table)
    outcomes: list[FoldOutcome] = []
    spec: Optional[TaskSpec] = None
    for i, (train, val, test) in enumerate(plan):
        splits = make_splits(table, train, val, test, scaling=cfg.dataset.scaling)
        spec = spec or task_spec(table.task, splits.n_classes, splits.y_train)
        label = f"fold {i + 1}/{len(plan)}" if len(plan) > 1 else table.name
        with epoch_progress(cfg.trainer.progress, cfg.trainer.epochs, spec, label=label) as on_epoch:
            outcome = _train_one(cfg, splits, spec, run_dir, on_epoch)
        outcomes.append(outcome)
        if outcome.fit.status != "ok":
            break
    summary = write_run_folder(
        run_dir, cfg=cfg, spec=spec, outcomes=outcomes, device=device,
        versions=runtime.versions(), overrides=overrides or [], dataset_name=table.name,
    )
    return summary.objective
