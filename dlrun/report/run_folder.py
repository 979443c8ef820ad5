"""The run folder (DESIGN §3): history, metrics, plots and the summary of one job."""

from __future__ import annotations

import logging
import math
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlrun.capabilities import Capability, RunContext
from dlrun.config import Config
from dlrun.diagnosis import Diagnosis, diagnose
from dlrun.optim import learning_rate
from dlrun.record import RunRecord, Section, write_record
from dlrun.report.files import write_csv, write_text
from dlrun.task import TaskSpec

log = logging.getLogger(__name__)

HISTORY = "history.csv"


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN (without numpy's warning) when there are none."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _mean_std(dicts: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-key mean and std over the finite values (NaN where a key has none)."""
    mean, std = {}, {}
    for k in sorted(set().union(*dicts)) if dicts else []:
        finite = [v for v in (d.get(k) for d in dicts) if v is not None and np.isfinite(v)]
        mean[k] = float(np.mean(finite)) if finite else math.nan
        std[k] = float(np.std(finite)) if finite else math.nan
    return mean, std


def _history_frame(outcomes) -> pd.DataFrame:
    frames = []
    for i, o in enumerate(outcomes):
        frame = pd.DataFrame(o.fit.history)
        if len(outcomes) > 1:
            frame.insert(0, "fold", i + 1)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _curve_frame(history: pd.DataFrame) -> pd.DataFrame:
    """Mean curve over folds (the history itself for a holdout run)."""
    if "fold" not in history or history.empty:
        return history
    return history.drop(columns="fold").groupby("epoch", as_index=False).mean(numeric_only=True)


def describe_config(cfg: Config) -> str:
    m, r, o = cfg.model, cfg.reg, cfg.optimizer
    model = "logreg" if m.name == "logreg" else f"{m.name} (depth {m.depth}, width {m.width}, {m.activation})"
    reg_parts = [f"l1={r.l1:g}" if r.l1 else "", f"l2={r.l2:g}" if r.l2 else "",
                 f"dropout={r.dropout:g}" if r.dropout else "",
                 f"early stopping (patience {r.patience})" if r.early_stopping else ""]
    reg = ", ".join(p for p in reg_parts if p) or "none"
    return (
        f"dataset={cfg.dataset.name} · model={model} · reg={r.name} ({reg}) · "
        f"optimizer={o.name} (lr {learning_rate(o):g}, batch {o.batch_size}, {o.schedule}) · "
        f"epochs={cfg.trainer.epochs} · eval={cfg.eval.name} · seed={cfg.seed}"
    )


def _reference(outcomes) -> dict[str, Any] | None:
    """The reference model's scores, averaged over folds like the network's; None when off."""
    refs = [o.reference for o in outcomes if o.reference is not None]
    if not refs:
        return None
    mean = {s: _mean_std([r.scores[s] for r in refs])[0] for s in ("train", "val", "test")}
    return {"model": refs[0].model, **mean}


def _diagnose(cfg: Config, spec: TaskSpec, outcomes, fold_metrics, reference) -> Diagnosis:
    restored = cfg.reg.early_stopping and cfg.reg.restore_best_weights
    train_score = _nanmean([m["train"].get(spec.fit_metric, np.nan) for m in fold_metrics])
    val_score = _nanmean([m["val"].get(spec.fit_metric, np.nan) for m in fold_metrics])
    ref = (reference["model"], reference["val"].get(spec.fit_metric, math.nan)) if reference else None
    return diagnose(
        outcomes[0].fit.history, train_score=train_score, val_score=val_score,
        fit_metric=spec.fit_metric, cfg=cfg.diagnosis, restored_best=restored,
        n_val=sum(len(o.splits.val) for o in outcomes), reference=ref,
    )


def _inputs(cfg: Config, outcome) -> dict[str, Any]:
    """What the model saw: source columns (tables), encoded width, the attribute kept aside."""
    splits = outcome.splits
    kept_aside = cfg.dataset.sensitive if cfg.dataset.sensitive and not cfg.dataset.sensitive_as_feature else None
    return {"columns": splits.input_columns, "width": int(np.prod(splits.input_shape)),
            "kept_aside": kept_aside}


def _record(cfg: Config, spec: TaskSpec, outcomes, *, status: str, diagnosis: Diagnosis, device: str,
            versions: dict[str, str], overrides: list[str], dataset_name: str) -> RunRecord:
    """The run's record from its folds: metrics averaged over folds, with their spread."""
    last = outcomes[-1]
    fold_metrics = [o.metrics for o in outcomes]
    spread = {s: _mean_std([m[s] for m in fold_metrics]) for s in ("train", "val", "test")}
    mean = {s: m for s, (m, _) in spread.items()}
    fit_seconds = float(sum(o.fit.fit_seconds for o in outcomes))
    epochs_run = int(sum(o.fit.epochs_run for o in outcomes))
    objective = mean["val"].get(spec.headline, math.nan) if status == "ok" else math.nan
    record = RunRecord(
        status=status,
        message=next((o.fit.message for o in outcomes if o.fit.message), None),
        objective=objective,
        diverged_epoch=last.fit.epochs_run if status == "diverged" else None,
        dataset=dataset_name, task=spec.task, model=cfg.model.name, reg=cfg.reg.name,
        optimizer=cfg.optimizer.name, lr=learning_rate(cfg.optimizer), batch_size=cfg.optimizer.batch_size,
        headline=spec.headline, greater_is_better=spec.greater_is_better, fit_metric=spec.fit_metric,
        train=mean["train"], val=mean["val"], test=mean["test"], baseline=last.baseline,
        best_epoch=diagnosis.best_epoch, epochs_run=epochs_run,
        stopped_early=any(o.fit.stopped_early for o in outcomes),
        fit_seconds=fit_seconds, seconds_per_epoch=fit_seconds / max(epochs_run, 1),
        loop=last.fit.loop, device=device, params=last.params, sizes=last.splits.sizes(),
        eval={"protocol": cfg.eval.name, "folds": len(outcomes)}, diagnosis=diagnosis.to_dict(),
        inputs=_inputs(cfg, last), phases=last.phases or None,
        seed=cfg.seed, overrides=overrides, versions=versions,
    )
    if len(outcomes) > 1:
        record.std = {s: std for s, (_, std) in spread.items()}
        record.folds = [{"fold": i + 1, **m, "epochs_run": o.fit.epochs_run}
                        for i, (o, m) in enumerate(zip(outcomes, fold_metrics, strict=True))]
    return record


def _data_section(outcomes) -> Section | None:
    """What loading and preprocessing did (the last fold's notes: imputed cells are per fold)."""
    from dlrun.data.notes import summary_lines

    notes = outcomes[-1].splits.notes
    if not notes:
        return None
    return Section("data", metrics=notes, summary=summary_lines(notes))


def write_run_folder(
    run_dir: Path, *, cfg: Config, spec: TaskSpec, outcomes, capabilities: list[Capability],
    device: str, versions: dict[str, str], overrides: list[str], dataset_name: str,
    stopped: str | None = None,
) -> RunRecord:
    """The report stage: every file of the run-folder contract; returns the run's record.

    The core writes ``history.csv``, ``curves.png``, ``metrics.json`` and ``summary.md``;
    each capability's :meth:`~dlrun.capabilities.Capability.report` adds its own files,
    metrics (under its name in ``metrics.json``) and summary section. ``stopped`` says why a
    run whose folds all finished was cut short (status ``interrupted``). In a sweep with
    ``trainer.defer_plots``, the figures may be drawn when the sweep ends (:func:`_draws_later`).
    """
    from dlrun.report.plots import deferring

    with deferring(cfg.trainer.defer_plots and _draws_later()):
        return _write_run_folder(run_dir, cfg=cfg, spec=spec, outcomes=outcomes, capabilities=capabilities,
                                 device=device, versions=versions, overrides=overrides,
                                 dataset_name=dataset_name, stopped=stopped)


def _draws_later() -> bool:
    """Whether this job's figures wait for the end of its sweep, whose report draws them
    (:mod:`dlrun.report.plots`): a sweep whose jobs run on this machine (the basic or joblib
    launcher), so that the figures are drawn on the same cores, all of them at once. A job
    that a cluster launcher (submitit) sent elsewhere draws its own."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return False
    launcher = str((HydraConfig.get().get("launcher") or {}).get("_target_", "")).lower()
    return "basic_launcher" in launcher or "joblib" in launcher


def _write_run_folder(
    run_dir: Path, *, cfg: Config, spec: TaskSpec, outcomes, capabilities: list[Capability],
    device: str, versions: dict[str, str], overrides: list[str], dataset_name: str, stopped: str | None,
) -> RunRecord:
    from dlrun.report.plots import plot_curves
    from dlrun.report.summary import write_summary

    run_dir = Path(run_dir)
    status = next((o.fit.status for o in outcomes if o.fit.status != "ok"), "ok")
    if stopped and status == "ok":
        status = "interrupted"
    history = _history_frame(outcomes)
    write_csv(run_dir / HISTORY, history)
    reference = _reference(outcomes)
    diagnosis = _diagnose(cfg, spec, outcomes, [o.metrics for o in outcomes], reference)
    if not history.empty:
        # The per-epoch metric recorded for train and validation alike (the headline is
        # validation-only in history), so the two curves can be compared.
        plot_curves(_curve_frame(history), run_dir / "curves.png",
                    metric="accuracy" if spec.is_classification else "mae",
                    best_epoch=diagnosis.best_epoch,
                    title=f"{cfg.model.name} on {dataset_name} ({cfg.reg.name})")
    record = _record(cfg, spec, outcomes, status=status, diagnosis=diagnosis, device=device,
                     versions=versions, overrides=overrides, dataset_name=dataset_name)
    record.reference = reference
    if stopped and record.message is None:
        record.message = stopped
    ctx = RunContext(cfg=cfg, run_dir=run_dir, spec=spec, dataset=dataset_name, status=status)
    sections = [section for section in (_data_section(outcomes),
                                         *(cap.report(outcomes, ctx) for cap in capabilities)) if section]
    for section in sections:
        if section.metrics is not None:
            record.sections[section.name] = section.metrics
    write_record(run_dir, record)
    write_summary(run_dir, cfg=cfg, spec=spec, record=record, diagnosis=diagnosis,
                  config_line=describe_config(cfg), sections=sections)
    for capability in capabilities:
        try:
            capability.track(record, ctx)
        except Exception as err:  # the run folder is the record; a tracker holds a copy
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            text = text if len(text) <= 160 else text[:160] + "..."
            log.warning("%s could not record this run (%s: %s); the run folder is complete",
                        getattr(capability, "describe", capability.name), type(err).__name__, text)
    return record


def write_interrupted(run_dir: Path, *, overrides: list[str], seed: int | None, folds: int) -> None:
    """Record a run stopped before any fold finished: ``metrics.json`` with status ``interrupted``."""
    run_dir = Path(run_dir)
    message = f"stopped by the user before the first of {folds} fold(s) finished"
    write_record(run_dir, RunRecord(status="interrupted", message=message, overrides=overrides, seed=seed))
    write_text(run_dir / "summary.md", f"# Run interrupted\n\n{message}; the epochs that finished are in "
               "history.csv, and `trainer.resume=true` continues from the last checkpoint.\n")


def write_failure(run_dir: Path, error: BaseException, *, overrides: list[str], seed: int | None) -> None:
    """Record a job that raised: ``metrics.json`` with status ``failed`` and ``error.txt``."""
    run_dir = Path(run_dir)
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    write_text(run_dir / "error.txt", "".join(traceback.format_exception(error)))
    write_record(run_dir, RunRecord(status="failed", message=f"{type(error).__name__}: {message}",
                                    overrides=overrides, seed=seed))
    write_text(run_dir / "summary.md", f"# Run failed\n\n{type(error).__name__}: {message}\n\n"
               "The full traceback is in [error.txt](error.txt).\n")
