"""Training: one entry point, two loops.

:func:`train` runs either

* the **fast** loop (default for in-memory arrays): each epoch is one compiled
  ``tf.function`` that walks the shuffled batches in-graph, with the validation
  forward pass inside the same call, so Python runs once per epoch, not once per batch;
* or Keras's own ``model.fit`` (``trainer.loop=fit``, and the path for streaming data).

Both feed the same Keras callbacks (EarlyStopping with restore_best_weights,
ReduceLROnPlateau, TensorBoard), honour sample weights, record the same history
columns, stop at the first non-finite loss (status ``diverged``) and turn Ctrl-C /
SIGTERM into status ``interrupted`` with the history so far.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from dlrun.data.table import Splits
from dlrun.metrics import compute_metrics
from dlrun.task import TaskSpec

log = logging.getLogger(__name__)

# Validation and prediction run in chunks of this many rows to bound memory.
_EVAL_BATCH = 2048


@dataclass
class FitResult:
    """What a training run produced, beside the trained model itself."""

    history: list[dict[str, float]]
    status: str  # ok | diverged | interrupted
    loop: str  # fast | fit
    fit_seconds: float
    stopped_early: bool = False
    message: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def _per_epoch_metrics(splits: Splits, spec: TaskSpec) -> Callable[[np.ndarray], dict[str, float]]:
    """A function from validation predictions to the ``val_*`` columns of history."""

    def score(pred: np.ndarray) -> dict[str, float]:
        m = compute_metrics(splits.y_val, pred, spec, y_mean=splits.y_mean, y_std=splits.y_std)
        keep = {"loss", "accuracy", spec.headline} if spec.is_classification else {"loss", "mae", spec.headline}
        return {f"val_{k}": v for k, v in m.items() if k in keep}

    return score


def current_lr(optimizer: keras.optimizers.Optimizer) -> float:
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (TypeError, ValueError):
        return float("nan")


class _EpochRunner:
    """Compiles one training epoch (and the validation pass) into a single graph call."""

    def __init__(self, model: keras.Model, spec: TaskSpec, batch_size: int, n_train: int):
        self.model = model
        self.optimizer = model.optimizer
        self.classification = spec.is_classification
        self.binary = spec.task == "binary"
        self.batch_size = batch_size
        self.n_batches = math.ceil(n_train / batch_size)
        self.train_epoch = tf.function(self._train_epoch, reduce_retracing=True)
        self.predict = tf.function(self._predict, reduce_retracing=True)

    def _batch_loss(self, y, pred, w):
        loss = self._per_example(y, pred)
        # Keras's sum_over_batch_size reduction: sum(loss * w) / batch size.
        return tf.reduce_sum(loss * w) / tf.cast(tf.shape(loss)[0], loss.dtype)

    def _per_example(self, y, pred):
        pred = tf.cast(pred, tf.float32)
        if self.binary:
            return keras.losses.binary_crossentropy(tf.reshape(y, (-1, 1)), pred)
        if self.classification:
            return keras.losses.sparse_categorical_crossentropy(y, pred)
        return tf.reduce_mean(tf.square(tf.reshape(y, (-1, 1)) - pred), axis=-1)

    def _correct(self, y, pred):
        if self.binary:
            labels = tf.cast(tf.reshape(pred, (-1,)) >= 0.5, tf.float32)
        else:
            labels = tf.cast(tf.argmax(pred, axis=-1), tf.float32)
        return tf.reduce_sum(tf.cast(tf.equal(labels, tf.cast(y, tf.float32)), tf.float32))

    def _abs_err(self, y, pred):
        return tf.reduce_sum(tf.abs(tf.reshape(y, (-1,)) - tf.reshape(tf.cast(pred, tf.float32), (-1,))))

    def _train_epoch(self, x, y, w, perm):
        n = tf.shape(perm)[0]
        bs = self.batch_size
        loss_sum = tf.constant(0.0)
        stat_sum = tf.constant(0.0)
        seen = tf.constant(0.0)
        finite = tf.constant(True)
        variables = self.model.trainable_variables
        for i in tf.range(self.n_batches):
            idx = perm[i * bs : tf.minimum((i + 1) * bs, n)]
            xb, yb, wb = tf.gather(x, idx), tf.gather(y, idx), tf.gather(w, idx)
            with tf.GradientTape() as tape:
                pred = self.model(xb, training=True)
                data_loss = self._batch_loss(yb, pred, wb)
                total = data_loss
                if self.model.losses:
                    total = total + tf.add_n([tf.cast(v, tf.float32) for v in self.model.losses])
                scaled = self.optimizer.scale_loss(total)
            grads = tape.gradient(scaled, variables)
            self.optimizer.apply(grads, variables)
            size = tf.cast(tf.shape(idx)[0], tf.float32)
            loss_sum += data_loss * size
            stat_sum += self._correct(yb, pred) if self.classification else self._abs_err(yb, pred)
            seen += size
            if not tf.math.is_finite(total):
                finite = tf.constant(False)
                break
        return loss_sum / seen, stat_sum / seen, finite

    def _predict(self, x):
        n = tf.shape(x)[0]
        chunks = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
        steps = (n + _EVAL_BATCH - 1) // _EVAL_BATCH
        for i in tf.range(steps):
            xb = x[i * _EVAL_BATCH : tf.minimum((i + 1) * _EVAL_BATCH, n)]
            chunks = chunks.write(i, tf.cast(self.model(xb, training=False), tf.float32))
        return chunks.concat()


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Raw model output for ``x`` in inference mode, in bounded chunks."""
    outs = [
        keras.ops.convert_to_numpy(model(x[i : i + _EVAL_BATCH], training=False))
        for i in range(0, len(x), _EVAL_BATCH)
    ]
    return np.concatenate(outs, axis=0).astype(np.float64)


def _notify_divergence(history: list[dict[str, float]], epoch: int) -> str:
    return (
        f"loss became non-finite in epoch {epoch}; the learning rate is probably too high "
        "or gradients exploded (lower optimizer.lr, add optimizer.clipnorm, or use batch norm)"
    )


def _fast_loop(
    model: keras.Model,
    splits: Splits,
    spec: TaskSpec,
    *,
    epochs: int,
    batch_size: int,
    sample_weight: np.ndarray,
    callbacks: keras.callbacks.CallbackList,
    on_epoch: Callable[[int, dict[str, float]], None],
    seed: int,
    initial_epoch: int = 0,
    history: Optional[list[dict[str, float]]] = None,
) -> tuple[list[dict[str, float]], str, Optional[str]]:
    runner = _EpochRunner(model, spec, batch_size, len(splits.y_train))
    x = tf.constant(splits.x_train)
    y = tf.constant(splits.y_train.astype(np.float32))
    w = tf.constant(sample_weight.astype(np.float32))
    x_val = tf.constant(splits.x_val)
    score_val = _per_epoch_metrics(splits, spec)
    stat_name = "accuracy" if spec.is_classification else "mae"
    history = list(history or [])
    n = len(splits.y_train)
    callbacks.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callbacks.on_epoch_begin(epoch)
        start = time.perf_counter()
        # One permutation per (seed, epoch): a resumed run shuffles exactly as an uninterrupted one.
        perm = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)
        loss, stat, finite = runner.train_epoch(x, y, w, tf.constant(perm))
        val_pred = runner.predict(x_val).numpy()
        loss = float(loss)
        if not spec.is_classification:
            stat = float(stat) * splits.y_std  # mae in the target's units
        logs = {"loss": loss, stat_name: float(stat), **score_val(val_pred)}
        logs["lr"] = current_lr(model.optimizer)
        logs["seconds"] = time.perf_counter() - start
        row = {"epoch": epoch + 1, **logs}
        history.append(row)
        on_epoch(epoch + 1, row)
        if not bool(finite) or not math.isfinite(loss):
            return history, "diverged", _notify_divergence(history, epoch + 1)
        callbacks.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    callbacks.on_train_end()
    return history, "ok", None


class _Recorder(keras.callbacks.Callback):
    """Collects ``model.fit`` logs into dlrun's history rows and stops on NaN."""

    def __init__(self, on_epoch, score_val, x_val, spec: TaskSpec):
        super().__init__()
        self.rows: list[dict[str, float]] = []
        self.on_epoch, self.score_val, self.x_val, self.spec = on_epoch, score_val, x_val, spec
        self.diverged = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if logs and not math.isfinite(float(logs.get("loss", 0.0))):
            self.diverged = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        val_pred = predict(self.model, self.x_val)
        row = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan")))}
        stat = "accuracy" if self.spec.is_classification else "mae"
        if stat in logs:
            row[stat] = float(logs[stat])
        row.update(self.score_val(val_pred))
        row["lr"] = current_lr(self.model.optimizer)
        row["seconds"] = time.perf_counter() - self._start
        self.rows.append(row)
        self.on_epoch(epoch + 1, row)
        if not math.isfinite(row["loss"]):
            self.diverged = True
            self.model.stop_training = True


def _fit_loop(
    model, splits, spec, *, epochs, batch_size, sample_weight, callbacks, on_epoch, seed,
    initial_epoch=0, history=None,
):
    recorder = _Recorder(on_epoch, _per_epoch_metrics(splits, spec), splits.x_val, spec)
    recorder.rows = list(history or [])
    metric = ["accuracy"] if spec.is_classification else ["mae"]
    model.compile(optimizer=model.optimizer, loss=spec.loss, metrics=metric)
    model.fit(
        splits.x_train, splits.y_train.astype(np.float32), sample_weight=sample_weight,
        validation_data=(splits.x_val, splits.y_val.astype(np.float32)),
        epochs=epochs, initial_epoch=initial_epoch, batch_size=batch_size, shuffle=True,
        callbacks=[recorder, *callbacks.callbacks], verbose=0,
    )
    if recorder.diverged:
        return recorder.rows, "diverged", _notify_divergence(recorder.rows, len(recorder.rows))
    return recorder.rows, "ok", None


def train(
    model: keras.Model,
    splits: Splits,
    spec: TaskSpec,
    *,
    optimizer: keras.optimizers.Optimizer,
    epochs: int,
    batch_size: int,
    callbacks: list[keras.callbacks.Callback],
    loop: str = "auto",
    sample_weight: Optional[np.ndarray] = None,
    on_epoch: Optional[Callable[[int, dict[str, float]], None]] = None,
    seed: int = 0,
    initial_epoch: int = 0,
    history: Optional[list[dict[str, float]]] = None,
) -> FitResult:
    """Train ``model`` on ``splits`` and return its history and status.

    Args:
        model: an uncompiled Keras model.
        splits: in-memory train / validation arrays.
        spec: the task's loss and metrics.
        optimizer: a fresh Keras optimizer.
        epochs: the most epochs to run.
        batch_size: rows per gradient step.
        callbacks: Keras callbacks; EarlyStopping and ReduceLROnPlateau work in both loops.
        loop: ``fast``, ``fit`` or ``auto`` (fast for in-memory arrays). Defaults to "auto".
        sample_weight: one weight per training row (class weights folded in). Defaults to ones.
        on_epoch: called after each epoch with its 1-based number and history row.
        seed: shuffling seed. Defaults to 0.
        initial_epoch: epochs already done (resuming); training continues from there.
            Defaults to 0.
        history: the history rows of those epochs, kept at the head of the result.

    Returns:
        A :class:`FitResult`; ``status`` is ``ok``, ``diverged`` or ``interrupted``.
    """
    chosen = "fast" if loop in ("auto", "fast") else "fit"
    model.compile(optimizer=optimizer, loss=spec.loss)
    weights = np.ones(len(splits.y_train)) if sample_weight is None else np.asarray(sample_weight)
    cb_list = keras.callbacks.CallbackList(callbacks, model=model)
    run = _fast_loop if chosen == "fast" else _fit_loop
    done = list(history or [])
    sink: list[dict[str, float]] = list(done)

    def record(epoch: int, row: dict[str, float]) -> None:
        sink.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)

    start = time.perf_counter()
    try:
        rows, status, message = run(
            model, splits, spec, epochs=epochs, batch_size=batch_size, sample_weight=weights,
            callbacks=cb_list, on_epoch=record, seed=seed, initial_epoch=initial_epoch, history=done,
        )
    except KeyboardInterrupt:
        rows, status, message = list(sink), "interrupted", "stopped by the user (Ctrl-C or SIGTERM)"
    seconds = time.perf_counter() - start
    stopped_early = status == "ok" and len(rows) < epochs
    return FitResult(rows, status, chosen, seconds, stopped_early, message)
