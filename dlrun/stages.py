"""The stages of one fold, each a plain function over typed values.

**prepare** (splits → training data) → **build** (the model) → **train** (one or more
:class:`Phase` s) → **predict** (raw outputs of every part) → **post-process** (raw
outputs → class codes) → **evaluate** (metrics). The report stage, over every fold, is
:func:`dlrun.report.run_folder.write_run_folder`. Capabilities
(:mod:`dlrun.capabilities`) plug into each stage through their hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dlrun.capabilities import Capability, Decide, FoldContext
from dlrun.config import OptimizerConfig
from dlrun.data.table import Part, Splits
from dlrun.task import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class Phase:
    """One training phase: which layers train, with which optimizer, for how many epochs.

    Attributes:
        name: shown in the record (``head``, ``fine_tune``, ...).
        epochs: epochs of this phase.
        optimizer: its optimizer and learning rate.
        trainable: sets ``layer.trainable`` on the model before the phase starts (None:
            leave the model as built).
        fit_on: ``(model, splits) -> (trained, data)``: the network and data the phase
            fits, sharing their weights with the model (None: the model on the splits).
            Transfer learning's frozen backbone: its head alone on the backbone's
            features, computed once.
    """

    name: str
    epochs: int
    optimizer: OptimizerConfig
    trainable: Callable[[Any], None] | None = None
    fit_on: Callable[[Any, Splits], tuple[Any, Splits]] | None = None


@dataclass
class FoldOutcome:
    """Everything one fold (or the one holdout split) produced."""

    fold: int
    splits: Splits  # after the prepare stage
    model: Any
    fit: Any  # dlrun.train.FitResult, every phase together
    predictions: dict[str, np.ndarray]
    labels: dict[str, np.ndarray | None]
    metrics: dict[str, dict[str, float]]
    baseline: dict[str, float]
    params: int
    phases: list[dict[str, Any]] = field(default_factory=list)
    reference: Any = None  # dlrun.reference.Reference, when diagnosis.reference=auto
    extra: dict[str, Any] = field(default_factory=dict)  # evaluate-stage metrics per capability


# --- prepare ----------------------------------------------------------------------------


def prepare(splits: Splits, capabilities: list[Capability], ctx: FoldContext) -> Splits:
    """Let each capability change the training part; the other parts' rows must stay untouched
    (validation may be weighed, as training is, for the loss that early stopping watches)."""
    for cap in capabilities:
        prepared = cap.prepare(splits, ctx)
        if prepared.test is not splits.test or not _same_rows(prepared.val, splits.val):
            raise RuntimeError(f"capability {cap.name!r} changed the validation or test rows in "
                               "its prepare hook; only the training part may change")
        splits = prepared
    return splits


def _same_rows(a: Part, b: Part) -> bool:
    return a is b or all(getattr(a, f) is getattr(b, f) for f in ("x", "y", "index", "group"))


# --- build ------------------------------------------------------------------------------


def build(splits: Splits, spec: TaskSpec, capabilities: list[Capability], ctx: FoldContext):
    """Build the configured model, then let capabilities adjust or wrap it (load weights,
    put augmentation in front)."""
    from dlrun.models import build_model

    cfg = ctx.cfg
    model = build_model(cfg.model, cfg.reg, input_shape=splits.input_shape, spec=spec,
                        image_shape=splits.image_shape)
    for cap in capabilities:
        model = cap.build(model, ctx)
    return model


# --- train ------------------------------------------------------------------------------


def plan_phases(capabilities: list[Capability], ctx: FoldContext) -> list[Phase]:
    """The training phases: one (``train``: every layer, the configured optimizer) unless a
    capability plans others."""
    phases = [Phase("train", ctx.cfg.trainer.epochs, ctx.cfg.optimizer)]
    for cap in capabilities:
        phases = cap.phases(phases, ctx)
    return phases


def train_phases(
    model, splits: Splits, spec: TaskSpec, phases: list[Phase], capabilities: list[Capability],
    ctx: FoldContext, *, on_epoch, fingerprint: str, resume: bool, checkpoint: bool,
    live: Callable[[list[dict]], None] | None = None,
):
    """Train phase after phase; a resumed fold restarts in the phase its checkpoint names.

    Each phase compiles its own optimizer (built for that phase's epochs) and gets fresh
    callbacks; epochs are numbered across phases, and with several phases each history
    row names its phase. Training stops at the first phase that does not end ``ok``
    (diverged, interrupted). ``live`` gets the history after every epoch (restored rows
    included), to write ``history.csv`` as training goes.

    Returns:
        ``(fit, phases_record)``: one :class:`dlrun.train.FitResult` for every phase
        together, and, with several phases, ``[{"name", "epochs", "first_epoch",
        "last_epoch"}]`` for each phase that ran.
    """
    from dlrun import checkpoint as ckpt
    from dlrun.optim import build_optimizer
    from dlrun.train import FitResult, train

    cfg = ctx.cfg
    path = ckpt.checkpoint_path(ctx.run_dir)
    done = ckpt.read(path) if resume else None
    history: list[dict[str, float]] = list(done.history) if done else []
    first = done.phase if done else 0
    start = done.phase_start if done else 0
    fits = []
    for p, phase in enumerate(phases):
        if p < first:
            continue
        if phase.trainable is not None:
            phase.trainable(model)
        trained, data = phase.fit_on(model, splits) if phase.fit_on is not None else (model, splits)
        steps = int(np.ceil(len(data.train.y) / phase.optimizer.batch_size))
        optimizer = build_optimizer(phase.optimizer, steps_per_epoch=steps, epochs=phase.epochs)
        restored = ckpt.restore(path, trained, optimizer) if done is not None and p == first else None
        callbacks = _callbacks(capabilities, ctx, checkpoint=checkpoint, phase=p, phase_start=start,
                               history=history, fingerprint=fingerprint, restored=restored)
        fit = train(
            trained, data, spec, optimizer=optimizer, epochs=start + phase.epochs,
            batch_size=phase.optimizer.batch_size, callbacks=callbacks, loop=cfg.trainer.loop,
            on_epoch=_kept(history, on_epoch, phase.name if len(phases) > 1 else None, live), seed=cfg.seed,
            initial_epoch=restored.epoch if restored else start, history=history,
        )
        fits.append(fit)
        start = len(history)
        if fit.status != "ok":
            break
    last = fits[-1]
    fit = FitResult(history, last.status, last.loop, sum(f.fit_seconds for f in fits),
                    last.stopped_early, last.message)
    return fit, _phase_record(history, phases) if len(phases) > 1 else []


def _callbacks(capabilities: list[Capability], ctx: FoldContext, *, checkpoint: bool, phase: int,
               phase_start: int, history: list[dict], fingerprint: str, restored=None) -> list:
    """A phase's callbacks: every capability's, then the epoch checkpoint when asked for
    (last: on a resume it restores the others' state)."""
    from dlrun import checkpoint as ckpt

    cfg = ctx.cfg
    callbacks = [cb for cap in capabilities for cb in cap.callbacks(ctx)]
    if checkpoint and cfg.trainer.checkpoint_every:
        callbacks.append(ckpt.EpochCheckpoint(
            ckpt.checkpoint_path(ctx.run_dir), every=cfg.trainer.checkpoint_every, fold=ctx.fold, phase=phase,
            phase_start=phase_start, history=history, fingerprint=fingerprint, peers=callbacks,
            resumed=restored, min_seconds=cfg.trainer.checkpoint_seconds,
        ))
    return callbacks


@dataclass
class SeedFold:
    """One seed's built model and prepared data, to train beside the other seeds of its
    configuration (``trainer.parallel_seeds``, :mod:`dlrun.seed_group`)."""

    model: Any
    splits: Splits
    capabilities: list[Capability]
    ctx: FoldContext
    fingerprint: str
    on_epoch: Callable[[int, dict], None]
    live: Callable[[list[dict]], None] | None = None


def train_seeds(members: list[SeedFold], spec: TaskSpec, phase: Phase) -> list:
    """The train stage of several seeds of one configuration at once: one stacked network
    (:func:`dlrun.train.train_together`), each seed with its own optimizer state, callbacks
    (early stopping, epoch checkpoints) and history, as :func:`train_phases` gives one seed.

    Returns:
        One :class:`dlrun.train.FitResult` per member.
    """
    from dlrun.optim import build_optimizer
    from dlrun.train import FitResult, train_together

    steps = int(np.ceil(len(members[0].splits.train.y) / phase.optimizer.batch_size))

    def optimizer():
        return build_optimizer(phase.optimizer, steps_per_epoch=steps, epochs=phase.epochs)

    histories: list[list[dict]] = [[] for _ in members]
    fits = train_together(
        [m.model for m in members], [m.splits for m in members], spec,
        optimizers=[optimizer() for _ in members], stacked_optimizer=optimizer(), epochs=phase.epochs,
        batch_size=phase.optimizer.batch_size, seeds=[m.ctx.cfg.seed for m in members],
        callbacks=[_callbacks(m.capabilities, m.ctx, checkpoint=True, phase=0, phase_start=0, history=h,
                              fingerprint=m.fingerprint) for m, h in zip(members, histories, strict=True)],
        on_epoch=[_kept(h, m.on_epoch, None, m.live) for m, h in zip(members, histories, strict=True)],
    )
    return [FitResult(h, f.status, f.loop, f.fit_seconds, f.stopped_early, f.message)
            for h, f in zip(histories, fits, strict=True)]


def _kept(history: list[dict], on_epoch, phase: str | None, live=None):
    """The epoch hook that also appends each row to ``history`` (the list checkpoints
    save), with the phase's name written into it first when there are several phases,
    and hands the history to ``live``."""

    def hook(epoch: int, row: dict) -> None:
        if phase is not None:
            row["phase"] = phase
        history.append(row)
        if live is not None:
            live(history)
        on_epoch(epoch, row)

    return hook


def _phase_record(history: list[dict], phases: list[Phase]) -> list[dict[str, Any]]:
    planned = {p.name: p.epochs for p in phases}
    record: list[dict[str, Any]] = []
    for row in history:
        if not record or record[-1]["name"] != row.get("phase"):
            record.append({"name": row.get("phase"), "epochs": planned.get(row.get("phase")),
                           "first_epoch": row["epoch"], "last_epoch": row["epoch"]})
        record[-1]["last_epoch"] = row["epoch"]
    return record


# --- predict, post-process, evaluate -----------------------------------------------------


def predict_parts(model, splits: Splits) -> dict[str, np.ndarray]:
    """The model's raw output for every part, in inference mode."""
    from dlrun.train import predict

    return {name: predict(model, part.x) for name, part in splits.parts().items()}


def post_process(predictions: dict[str, np.ndarray], splits: Splits, spec: TaskSpec,
                 capabilities: list[Capability], ctx: FoldContext) -> dict[str, np.ndarray | None]:
    """Class codes for every part: the task's threshold (or argmax), as capabilities adjust it."""
    if not spec.is_classification:
        return {name: None for name in predictions}
    from dlrun.metrics import predicted_labels

    def decide(pred: np.ndarray, part: Part) -> np.ndarray:
        return predicted_labels(pred, spec.task, threshold=spec.threshold)

    chosen: Decide = decide
    for cap in capabilities:
        chosen = cap.post_process(chosen, predictions, splits, ctx)
    finite = {name: bool(np.all(np.isfinite(pred))) for name, pred in predictions.items()}
    return {name: chosen(pred, getattr(splits, name)) if finite[name] else None
            for name, pred in predictions.items()}


def evaluate(outcome: FoldOutcome, spec: TaskSpec, capabilities: list[Capability],
             ctx: FoldContext) -> FoldOutcome:
    """The task's metrics on every part, the dumb baseline, the reference model, and
    capabilities' own metrics."""
    from dlrun.evaluate import baseline, evaluate_parts
    from dlrun.reference import fit_reference

    metrics = evaluate_parts(outcome.splits, spec, outcome.predictions, outcome.labels)
    reference = None
    if ctx.cfg.diagnosis.reference == "auto":
        reference = fit_reference(outcome.splits, spec, seed=ctx.cfg.seed)
    outcome = replace(outcome, metrics=metrics, baseline=baseline(outcome.splits, spec), reference=reference)
    extra = {}
    for cap in capabilities:
        info = cap.evaluate(outcome, ctx)
        if info is not None:
            extra[cap.name] = info
    return replace(outcome, extra=extra)
