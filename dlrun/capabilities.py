"""Capabilities: features that plug into a job's stages instead of branching its main path.

A job runs the same stages for every fold (see :mod:`dlrun.stages`): **prepare** →
**build** → **train** (one or more phases) → **predict** → **post-process** →
**evaluate** → **report**. A capability is a :class:`Capability` subclass that overrides
the hooks of the stages it takes part in; every other hook leaves the job as it is.
It is registered under a name with a factory that reads the config and returns the
capability, or None when the config leaves it off::

    register_capability("class_weight", lambda cfg: ClassWeight() if cfg.sampling.name == "class_weight" else None)

The job asks every registered factory once (:func:`capabilities_for`), in registration
order, and calls the hooks of those that answered, in that order.

This module stays free of TensorFlow imports: Keras is imported inside the hooks.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlrun.config import Config
from dlrun.record import RunRecord, Section

if TYPE_CHECKING:
    import numpy as np

    from dlrun.data.table import Part, Splits
    from dlrun.stages import FoldOutcome, Phase
    from dlrun.task import TaskSpec

log = logging.getLogger(__name__)

# Maps one part's raw model output to class codes (the post-process stage's product).
Decide = Callable[["np.ndarray", "Part"], "np.ndarray"]


@dataclass
class FoldContext:
    """What every hook of one fold can read."""

    cfg: Config
    run_dir: Path
    fold: int
    folds: int
    spec: TaskSpec | None = None  # set once the training part is prepared


@dataclass
class RunContext:
    """What the report hooks can read: the whole run."""

    cfg: Config
    run_dir: Path
    spec: TaskSpec
    dataset: str
    status: str
    extra: dict[str, Any] = field(default_factory=dict)


class Capability:
    """A feature plugged into the job's stages. Override only the hooks it needs.

    Attributes:
        name: its registry name; also its key in ``metrics.json`` and its heading in
            ``summary.md`` when it reports.
    """

    name: str = "capability"

    def prepare(self, splits: Splits, ctx: FoldContext) -> Splits:
        """Prepare stage: change the training data (sample weights, resampling, ...).

        Return a new :class:`Splits` (``dataclasses.replace``); validation and test rows
        must stay as they are.
        """
        return splits

    def build(self, model: Any, ctx: FoldContext) -> Any:
        """Build stage: the model to train, the freshly built one adjusted or wrapped."""
        return model

    def phases(self, phases: list[Phase], ctx: FoldContext) -> list[Phase]:
        """Train stage: the training phases (which layers train, optimizer, epochs)."""
        return phases

    def callbacks(self, ctx: FoldContext) -> list[Any]:
        """Train stage: Keras callbacks for every phase (fresh ones per call)."""
        return []

    def post_process(self, decide: Decide, predictions: dict[str, np.ndarray], splits: Splits,
                     ctx: FoldContext) -> Decide:
        """Post-process stage: how raw outputs become class codes (e.g. per-group thresholds).

        ``predictions`` holds the raw output of every part; choices must be fitted on
        ``val`` only, never on ``test``.
        """
        return decide

    def evaluate(self, outcome: FoldOutcome, ctx: FoldContext) -> dict[str, Any] | None:
        """Evaluate stage: this fold's own metrics (kept in ``outcome.extra[name]``)."""
        return None

    def report(self, outcomes: list[FoldOutcome], ctx: RunContext) -> Section | None:
        """Report stage: files written into the run folder, metrics, summary lines."""
        return None

    def track(self, record: RunRecord, ctx: RunContext) -> None:
        """After the report: the run folder is complete; copy it to a tracker. An exception
        here is a warning, never a failed run."""


Factory = Callable[[Config], "Capability | None"]
_REGISTRY: dict[str, Factory] = {}
# Modules that register capabilities of their own, imported when a job first asks.
PLUGIN_MODULES = ["dlrun.sampling", "dlrun.augment", "dlrun.fairness", "dlrun.logger", "dlrun.transfer"]


def register_capability(name: str, factory: Factory) -> None:
    """Register ``factory(cfg) -> Capability | None`` under ``name`` (last registration wins)."""
    _REGISTRY[name] = factory


def capabilities_for(cfg: Config) -> list[Capability]:
    """The capabilities this config turns on, in registration order."""
    for module in PLUGIN_MODULES:
        importlib.import_module(module)  # registers on first import
    active = []
    for name, factory in _REGISTRY.items():
        capability = factory(cfg)
        if capability is not None:
            capability.name = name
            active.append(capability)
    return active


# --- the built-in capabilities ----------------------------------------------------------


class EarlyStopping(Capability):
    """``reg.early_stopping=true``: Keras's EarlyStopping, best weights restored."""

    def __init__(self, cfg: Config):
        self.reg = cfg.reg

    def callbacks(self, ctx: FoldContext) -> list[Any]:
        import keras

        r = self.reg
        return [keras.callbacks.EarlyStopping(monitor=r.monitor, patience=r.patience, min_delta=r.min_delta,
                                              restore_best_weights=r.restore_best_weights)]


class ReduceLROnPlateau(Capability):
    """``trainer.reduce_lr_on_plateau=true``: halve the learning rate after 5 flat epochs."""

    def callbacks(self, ctx: FoldContext) -> list[Any]:
        import keras

        return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5)]


class TensorBoard(Capability):
    """``logger=tensorboard`` (or ``trainer.tensorboard=true``): TensorBoard logs in ``<run>/tensorboard``."""

    def callbacks(self, ctx: FoldContext) -> list[Any]:
        import keras

        return [keras.callbacks.TensorBoard(log_dir=str(ctx.run_dir / "tensorboard"))]


class InitialWeights(Capability):
    """``model.weights=FILE``: start from saved weights, layer by layer where names and shapes match."""

    def __init__(self, path: str):
        self.path = path
        self.loaded: dict[str, Any] | None = None

    def build(self, model: Any, ctx: FoldContext) -> Any:
        from dlrun.models import load_weights

        self.loaded = load_weights(model, self.path).to_dict()
        return model

    def report(self, outcomes: list[FoldOutcome], ctx: RunContext) -> Section | None:
        if self.loaded is None:
            return None
        skipped = self.loaded.get("skipped") or {}
        lines = [f"Started from `{self.loaded.get('source', self.path)}`: "
                 f"{len(self.loaded.get('loaded') or [])} layer(s) loaded, {len(skipped)} skipped."]
        lines += [f"- skipped `{layer}`: {why}" for layer, why in skipped.items()]
        return Section("weights", metrics=self.loaded, summary=lines)


class ClassificationReport(Capability):
    """Classification runs: the test confusion matrix and the per-class report."""

    def report(self, outcomes: list[FoldOutcome], ctx: RunContext) -> Section | None:
        import numpy as np

        from dlrun.evaluate import class_report, confusion
        from dlrun.report.files import write_csv
        from dlrun.report.plots import plot_confusion

        if ctx.status != "ok" or not ctx.spec.is_classification:
            return None
        names = outcomes[-1].splits.class_names
        matrix = sum(confusion(o.splits.test.y, o.labels["test"], len(names)) for o in outcomes)
        plot_confusion(matrix, names, ctx.run_dir / "confusion_matrix.png",
                       title=f"test confusion matrix ({ctx.dataset})")
        report = class_report(np.concatenate([o.splits.test.y for o in outcomes]),
                              np.concatenate([o.labels["test"] for o in outcomes]), class_names=names)
        write_csv(ctx.run_dir / "classification_report.csv", report, index=True)
        per_class = {name: {"precision": float(report.loc[name, "precision"]),
                            "recall": float(report.loc[name, "recall"]),
                            "f1": float(report.loc[name, "f1-score"]),
                            "support": int(report.loc[name, "support"])} for name in names}
        val_support = np.bincount(np.concatenate([o.splits.val.y for o in outcomes]).astype(np.int64),
                                  minlength=len(names))
        return Section("classification", metrics={"split": "test", "per_class": per_class,
                                                  "confusion_matrix": matrix.tolist(),
                                                  "val_support": dict(zip(names, map(int, val_support), strict=True))},
                       files=[("confusion matrix", "confusion_matrix.png"),
                              ("per-class report", "classification_report.csv")])


class SaveModel(Capability):
    """``trainer.save_model=true``: ``model.keras`` of the last fold, written atomically."""

    def report(self, outcomes: list[FoldOutcome], ctx: RunContext) -> Section | None:
        if ctx.status != "ok":
            return None
        path = ctx.run_dir / "model.keras"
        tmp = path.with_name(f".{path.stem}.tmp.keras")
        model = outcomes[-1].model
        # Saved with the loss by its Keras name, so keras.saving.load_model reads the file
        # without dlrun (training compiled dlrun's own function of that loss).
        model.compile(optimizer=model.optimizer, loss=ctx.spec.loss)
        model.save(tmp)
        tmp.replace(path)
        return Section("model", files=[("model", "model.keras"), *_predictor_files(outcomes[-1], ctx)])


def _predictor_files(outcome: FoldOutcome, ctx: RunContext) -> list[tuple[str, str]]:
    """``predictor.joblib`` (what ``dlrun-predict`` needs to score raw data) and
    ``test_predictions.csv`` (the test rows as ``dlrun-predict`` would score them)."""
    import joblib
    import numpy as np
    import pandas as pd

    from dlrun.metrics import predicted_labels
    from dlrun.predict import PREDICTOR, TEST_PREDICTIONS, output_frame, predictor_state
    from dlrun.report.files import write_csv

    splits, spec = outcome.splits, ctx.spec
    plain = {name: predicted_labels(outcome.predictions[name], spec.task, threshold=spec.threshold)
             for name in ("val", "test")} if spec.is_classification else {}
    post_processed = any(outcome.labels.get(n) is not None and not np.array_equal(plain[n], outcome.labels[n])
                         for n in plain)
    state = predictor_state(splits, spec, ctx.cfg.dataset, delimiter=splits.notes.get("delimiter"),
                            post_processed=post_processed)
    tmp = ctx.run_dir / f".{PREDICTOR}.tmp"
    joblib.dump(state, tmp)
    tmp.replace(ctx.run_dir / PREDICTOR)
    ids = pd.DataFrame({"row": splits.test.index})
    write_csv(ctx.run_dir / TEST_PREDICTIONS, output_frame(outcome.predictions["test"], state, ids))
    return [("scoring new data", PREDICTOR), ("test predictions", TEST_PREDICTIONS)]


# model=transfer reads model.weights as its backbone's (imagenet, none, a file): dlrun.models.transfer loads them.
register_capability("weights", lambda cfg: InitialWeights(str(cfg.model.weights))
                    if cfg.model.weights and cfg.model.name != "transfer" else None)
register_capability("early_stopping", lambda cfg: EarlyStopping(cfg) if cfg.reg.early_stopping else None)
register_capability("reduce_lr", lambda cfg: ReduceLROnPlateau() if cfg.trainer.reduce_lr_on_plateau else None)
register_capability("tensorboard", lambda cfg: TensorBoard()
                    if cfg.trainer.tensorboard or cfg.logger.name == "tensorboard" else None)
register_capability("classification", lambda cfg: ClassificationReport())
register_capability("save_model", lambda cfg: SaveModel() if cfg.trainer.save_model else None)
