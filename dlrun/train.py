"""Training: one entry point, two loops.

:func:`train` runs either

* the **fast** loop (the default): each epoch is one compiled ``tf.function`` call that
  walks the shuffled mini-batches in a ``tf.while_loop`` and then runs the validation
  forward pass, so Python runs once per epoch, not once per batch, and the graph is
  traced once per run; a streamed image folder is walked the same way a chunk of whole
  mini-batches at a time, the next chunk read from disk while one trains;
* or Keras's own ``model.fit`` (``trainer.loop=fit``).

Both feed the same Keras callbacks (EarlyStopping with restore_best_weights,
ReduceLROnPlateau, TensorBoard: epoch-level hooks; batch-level hooks fire under
``model.fit`` only), honour sample and class weights, record the same history columns,
stop at the first non-finite loss (status ``diverged``, within the epoch) and turn
Ctrl-C / SIGTERM into status ``interrupted`` with the history so far.

History columns: ``loss`` is the training data loss of the epoch's mini-batches in
training mode (sample-weighted mean, without regularization penalties, so it compares
with ``val_loss``); ``accuracy`` (or ``mae``) likewise; ``val_loss``, ``val_accuracy``
(or ``val_mae``) and ``val_<headline>`` come from the model in inference mode after the
epoch; ``lr`` is the learning rate at the end of the epoch; ``seconds`` its wall time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import keras
import numpy as np
import tensorflow as tf
from scipy.stats import rankdata

from dlrun import warm_graph
from dlrun.data.image_store import is_lazy
from dlrun.data.table import Splits
from dlrun.losses import per_row_loss
from dlrun.metrics import _EPS, class_probabilities, predicted_labels
from dlrun.task import TaskSpec

log = logging.getLogger(__name__)

# Validation and prediction run in chunks of this many rows to bound memory.
_EVAL_BATCH = 2048
# Streamed rows are read from disk this many (uint8) bytes at a time, in whole mini-batches.
_CHUNK_BYTES = 8 * 2**20
# Metrics whose larger values are better, for callbacks that watch them (mode="auto").
_GREATER_IS_BETTER = ("accuracy", "roc_auc", "pr_auc", "macro_f1", "r2")

Row = dict[str, float]
EpochHook = Callable[[int, Row], None]


@dataclass
class FitResult:
    """What a training run produced, beside the trained model itself."""

    history: list[Row]
    status: str  # ok | diverged | interrupted
    loop: str  # fast | fit
    fit_seconds: float
    stopped_early: bool = False
    message: str | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.history)


# --- validation scores, every epoch ---------------------------------------------------


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Binary ROC-AUC as the Mann-Whitney statistic (ties count one half)."""
    positive = y == 1
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    return float((rankdata(score)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """scikit-learn's average precision: sum over thresholds of recall gain × precision."""
    order = np.argsort(-score, kind="mergesort")
    s, hits = score[order], np.cumsum(y[order])
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    precision = hits[last] / (last + 1)
    recall = hits[last] / hits[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _macro_f1(y: np.ndarray, labels: np.ndarray, k: int) -> float:
    cm = np.bincount(y * k + labels, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (cm.sum(axis=1) - tp)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)))


def _balanced_accuracy(y: np.ndarray, labels: np.ndarray, k: int) -> float:
    """The mean recall over the classes present in ``y``."""
    cm = np.bincount(y * k + labels, minlength=k * k).reshape(k, k)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def epoch_scorer(splits: Splits, spec: TaskSpec) -> Callable[[np.ndarray], Row]:
    """A function from validation predictions to the ``val_*`` columns of a history row.

    The numbers equal :func:`dlrun.metrics.compute_metrics` (a test holds them to it) at a
    fraction of the cost: scikit-learn's input checks alone take longer than an epoch of
    a small network, and this runs every epoch. The loss weighs the validation rows as the
    validation part's weights say (ones, unless a capability weighs validation as it weighs
    training, as reweighing does), so early stopping and ReduceLROnPlateau watch the loss
    that is trained.
    """
    stat = "accuracy" if spec.is_classification else "mae"
    names = ["loss", stat] + ([spec.headline] if spec.headline != stat else [])
    y = np.asarray(splits.val.y)
    y_int = y.astype(np.int64)
    w = np.asarray(splits.val.weight, dtype=np.float64)
    mean = np.mean if np.all(w == 1) else partial(np.average, weights=w)
    k = spec.units if spec.task == "multiclass" else 2
    two_classes = len(np.unique(y_int)) == 2
    all_classes = len(np.unique(y_int)) == k

    def classification(pred: np.ndarray) -> Row:
        proba = np.clip(class_probabilities(pred, spec.task), _EPS, 1 - _EPS)
        proba /= proba.sum(axis=1, keepdims=True)
        labels = predicted_labels(pred, spec.task, threshold=spec.threshold)
        out = {
            "loss": float(-mean(np.log(proba[np.arange(len(y_int)), y_int]))),
            "accuracy": float(np.mean(labels == y_int)),
        }
        if spec.headline == "macro_f1":
            out["macro_f1"] = _macro_f1(y_int, labels, k)
        elif spec.headline == "balanced_accuracy":
            out["balanced_accuracy"] = _balanced_accuracy(y_int, labels, k)
        elif spec.headline in ("roc_auc", "pr_auc"):
            score = _roc_auc if spec.headline == "roc_auc" else _average_precision
            if spec.task == "binary":
                out[spec.headline] = score(y_int, proba[:, 1]) if two_classes else math.nan
            else:  # one class against the rest, averaged over classes (macro)
                out[spec.headline] = (float(np.mean([score((y_int == c).astype(np.int64), proba[:, c])
                                                     for c in range(k)])) if all_classes else math.nan)
        return out

    spread = float(np.sum((y - y.mean()) ** 2)) if len(y) > 1 else 0.0

    def regression(pred: np.ndarray) -> Row:
        err = pred.reshape(-1) - y
        out = {"loss": float(mean(err**2)), "mae": float(np.mean(np.abs(err)) * splits.y_std)}
        if spec.headline == "mse":
            out["mse"] = out["loss"] * splits.y_std**2
        elif spec.headline == "r2":
            out["r2"] = 1 - float(np.sum(err**2)) / spread if spread > 0 else math.nan
        return out

    compute = classification if spec.is_classification else regression

    def score(pred: np.ndarray) -> Row:
        pred = np.asarray(pred, dtype=np.float64)
        values = compute(pred) if np.all(np.isfinite(pred)) else {}
        return {f"val_{n}": values.get(n, math.nan) for n in names}

    return score


# --- callbacks --------------------------------------------------------------------------


def _watch_direction(callbacks: list[keras.callbacks.Callback]) -> None:
    """Give monitoring callbacks in ``mode="auto"`` the direction of dlrun's metrics.

    Keras infers it from compiled metrics, which dlrun computes itself (``val_roc_auc``),
    so EarlyStopping on anything but a loss would otherwise refuse to start.
    """
    for cb in callbacks:
        monitor = getattr(cb, "monitor", None)
        if isinstance(monitor, str) and getattr(cb, "mode", None) == "auto":
            metric = monitor.removeprefix("val_")
            cb.mode = "max" if metric in _GREATER_IS_BETTER else "min"
            if isinstance(cb, keras.callbacks.ReduceLROnPlateau):
                cb._reset()  # it fixed its comparison when built


def _divergence_message(epoch: int) -> str:
    return (
        f"loss became non-finite in epoch {epoch}; the learning rate is probably too high "
        "or gradients exploded (lower optimizer.lr, set optimizer.clipnorm, or use batch norm)"
    )


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Raw model output for ``x`` in inference mode, in bounded chunks."""
    outs = [
        keras.ops.convert_to_numpy(model(x[i : i + _EVAL_BATCH], training=False))
        for i in range(0, len(x), _EVAL_BATCH)
    ]
    return np.concatenate(outs, axis=0).astype(np.float64)


# --- the fast loop ----------------------------------------------------------------------


def _pixels(x):
    """Stored pixels (uint8) as the float32 values in [0, 1] the model sees."""
    return tf.cast(x, tf.float32) / 255.0


class _EpochRunner:
    """Compiles one training epoch and the validation pass into a single graph call.

    The graph is traced without AutoGraph (the loop is an explicit ``tf.while_loop``),
    which keeps tracing, the fixed cost of every run, short.
    """

    def __init__(self, model: keras.Model, spec: TaskSpec, *, batch_size: int, n_train: int):
        self.model = model
        self.optimizer = model.optimizer  # a LossScaleOptimizer under mixed precision
        self.spec = spec
        self.batch_size = batch_size
        self.n_batches = math.ceil(n_train / batch_size)
        self.loss = per_row_loss(spec)
        self.optimizer.build(model.trainable_variables)  # no variables may be made in the loop
        self.run = tf.function(self._epoch, autograph=False, reduce_retracing=True)
        self.run_chunk = tf.function(lambda x, y, w: self._chunk(_pixels(x), y, w), autograph=False,
                                     reduce_retracing=True)
        self.predict_chunk = tf.function(lambda x: self._predict(_pixels(x)), autograph=False,
                                         reduce_retracing=True)

    def _stat(self, y, pred):
        """Correct predictions (classification) or summed absolute error (regression)."""
        pred = tf.cast(pred, tf.float32)
        if not self.spec.is_classification:
            return tf.reduce_sum(tf.abs(y - tf.reshape(pred, (-1,))))
        if self.spec.task == "binary":
            labels = tf.cast(tf.reshape(pred, (-1,)) >= self.spec.threshold, tf.float32)
        else:
            labels = tf.cast(tf.argmax(pred, axis=-1), tf.float32)
        return tf.reduce_sum(tf.cast(tf.equal(labels, y), tf.float32))

    def _step(self, x, y, w, idx):
        """One mini-batch update; returns the batch's weighted loss sum, stat and finiteness."""
        xb, yb, wb = tf.gather(x, idx), tf.gather(y, idx), tf.gather(w, idx)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            pred = self.model(xb, training=True)
            weighted = self.loss(yb, pred) * wb
            # Keras's "sum_over_batch_size": sum(loss * weight) / rows in the batch.
            total = tf.reduce_sum(weighted) / tf.cast(tf.size(idx), tf.float32)
            if self.model.losses:
                total += tf.add_n([tf.cast(v, tf.float32) for v in self.model.losses])
            scaled = self.optimizer.scale_loss(total)
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return tf.reduce_sum(weighted), self._stat(yb, pred), tf.math.is_finite(total)

    def _predict(self, x):
        if x.shape[0] is not None and x.shape[0] <= _EVAL_BATCH:
            return tf.cast(self.model(x, training=False), tf.float32)
        n = tf.shape(x)[0]
        chunks = tf.TensorArray(tf.float32, size=(n + _EVAL_BATCH - 1) // _EVAL_BATCH, infer_shape=False)

        def chunk(i, acc):
            xb = x[i * _EVAL_BATCH : (i + 1) * _EVAL_BATCH]
            return i + 1, acc.write(i, tf.cast(self.model(xb, training=False), tf.float32))

        _, chunks = tf.while_loop(lambda i, _: i < chunks.size(), chunk, (tf.constant(0), chunks))
        return chunks.concat()

    def _walk(self, x, y, w, order, n_batches):
        """Mini-batches of the rows at ``order`` in turn, stopping at a non-finite loss: the
        batches' summed weighted loss, stat and weight, whether every loss was finite, and
        the rows seen."""
        bs = self.batch_size

        def more(i, loss_sum, stat_sum, weight_sum, finite):
            return tf.logical_and(i < n_batches, finite)

        def step(i, loss_sum, stat_sum, weight_sum, finite):
            idx = order[i * bs : (i + 1) * bs]
            batch_loss, batch_stat, batch_finite = self._step(x, y, w, idx)
            return (i + 1, loss_sum + batch_loss, stat_sum + batch_stat,
                    weight_sum + tf.reduce_sum(tf.gather(w, idx)), batch_finite)

        zero = tf.constant(0.0)
        start = (tf.constant(0), zero, zero, zero, tf.constant(True))
        i, loss_sum, stat_sum, weight_sum, finite = tf.while_loop(more, step, start)
        return loss_sum, stat_sum, weight_sum, finite, tf.minimum(i * bs, tf.shape(order)[0])

    def _chunk(self, x, y, w):
        """Every mini-batch of ``x`` in order (the rows come shuffled): the sums of an epoch's
        part, for data read from disk a chunk at a time."""
        n = tf.shape(y)[0]
        return self._walk(x, y, w, tf.range(n), (n + self.batch_size - 1) // self.batch_size)

    def _epoch(self, x, y, w, perm, x_val):
        loss_sum, stat_sum, weight_sum, finite, seen = self._walk(x, y, w, perm, self.n_batches)
        lr = tf.cast(self.optimizer.learning_rate, tf.float32)
        return loss_sum / weight_sum, stat_sum / tf.cast(seen, tf.float32), finite, self._predict(x_val), lr


def _fast_loop(
    model: keras.Model, splits: Splits, spec: TaskSpec, *, epochs: int, batch_size: int,
    sample_weight: np.ndarray, callbacks: keras.callbacks.CallbackList, on_epoch: EpochHook,
    seed: int, initial_epoch: int, history: list[Row], runner: _EpochRunner | None = None,
) -> tuple[list[Row], str, str | None]:
    runner = runner or _EpochRunner(model, spec, batch_size=batch_size, n_train=len(splits.train.y))
    streamed = is_lazy(splits.train.x) and is_lazy(splits.val.x)
    if streamed:
        run_epoch = _StreamedEpochs(runner, splits, sample_weight, batch_size=batch_size)
    else:
        x, x_val = tf.constant(splits.train.x), tf.constant(splits.val.x)
        y = tf.constant(splits.train.y.astype(np.float32))
        w = tf.constant(sample_weight.astype(np.float32))

        def run_epoch(perm):
            return runner.run(x, y, w, perm, x_val)

    score_val = epoch_scorer(splits, spec)
    stat_name = "accuracy" if spec.is_classification else "mae"
    stat_scale = 1.0 if spec.is_classification else splits.y_std  # mae in the target's units
    n = len(splits.train.y)
    status = "ok"
    callbacks.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callbacks.on_epoch_begin(epoch)
        start = time.perf_counter()
        # One permutation per (seed, epoch): a resumed run shuffles exactly as an uninterrupted one.
        perm = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)
        loss, stat, finite, val_pred, lr = run_epoch(perm)
        logs = {"loss": float(loss), stat_name: float(stat) * stat_scale, **score_val(np.asarray(val_pred))}
        logs["lr"] = float(lr)
        logs["seconds"] = time.perf_counter() - start
        row = {"epoch": epoch + 1, **logs}
        history.append(row)
        on_epoch(epoch + 1, row)
        if not bool(finite) or not math.isfinite(logs["loss"]):
            status = "diverged"  # as model.fit would, still end training: best weights come back
            break
        callbacks.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    callbacks.on_train_end()
    if streamed:
        run_epoch.pool.shutdown()
    return history, status, _divergence_message(len(history)) if status == "diverged" else None


class _StreamedEpochs:
    """One epoch of the fast loop over rows read from disk (a streamed image folder).

    The epoch's permutation is cut into chunks of whole mini-batches, so the batches are
    the ones the in-memory loop would make; each chunk is read (by a background thread,
    while the previous one trains) as stored uint8 pixels, scaled to [0, 1] inside the graph,
    and walked by one compiled call.
    """

    def __init__(self, runner: _EpochRunner, splits: Splits, sample_weight: np.ndarray, *, batch_size: int):
        self.runner = runner
        self.x, self.x_val = splits.train.x, splits.val.x
        self.y = splits.train.y.astype(np.float32)
        self.w = sample_weight.astype(np.float32)
        row_bytes = int(np.prod(self.x.shape[1:]))
        self.chunk = max(1, _CHUNK_BYTES // row_bytes // batch_size) * batch_size
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlrun-read")

    def __call__(self, perm: np.ndarray):
        starts = range(0, len(perm), self.chunk)
        pending = self.pool.submit(self.x.raw, perm[: self.chunk])
        loss_sum = stat_sum = weight_sum = 0.0
        seen, finite = 0, True
        for start in starts:
            xc = pending.result()
            rows = perm[start : start + self.chunk]
            if start + self.chunk < len(perm):
                pending = self.pool.submit(self.x.raw, perm[start + self.chunk : start + 2 * self.chunk])
            out = self.runner.run_chunk(xc, self.y[rows], self.w[rows])
            loss_sum += float(out[0])
            stat_sum += float(out[1])
            weight_sum += float(out[2])
            seen += int(out[4])
            finite = bool(out[3])
            if not finite:
                break
        val = np.concatenate([
            self.runner.predict_chunk(self.x_val.raw(slice(i, i + self.chunk))).numpy()
            for i in range(0, len(self.x_val), self.chunk)
        ])
        lr = float(keras.ops.convert_to_numpy(self.runner.optimizer.learning_rate))
        return loss_sum / weight_sum, stat_sum / max(seen, 1), finite, val, lr


# --- the model.fit loop -----------------------------------------------------------------


def _batches(x, y: np.ndarray, w: np.ndarray, *, batch_size: int, seed: int, epochs: range):
    """Shuffled mini-batches of streamed rows for ``model.fit``, epoch after epoch, one
    permutation per (seed, epoch) as in the fast loop."""
    for epoch in epochs:
        perm = np.random.default_rng([seed, epoch]).permutation(len(y))
        for i in range(0, len(y), batch_size):
            rows = perm[i : i + batch_size]
            yield x[rows], y[rows], w[rows]


class _Recorder(keras.callbacks.Callback):
    """Turns ``model.fit`` logs into dlrun's history rows and stops at a non-finite loss."""

    def __init__(self, *, on_epoch: EpochHook, score_val, x_val: np.ndarray, stat: str,
                 stat_scale: float, history: list[Row]):
        super().__init__()
        self.on_epoch, self.score_val, self.x_val = on_epoch, score_val, x_val
        self.stat, self.stat_scale = stat, stat_scale
        self.rows = history
        self.diverged = False
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if logs and not math.isfinite(float(logs.get("loss", 0.0))):
            self.diverged = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        keras_loss = float(logs.get("loss", math.nan))
        row = {"epoch": epoch + 1, "loss": float(logs.get("data_loss", math.nan)),
               self.stat: float(logs.get(self.stat, math.nan)) * self.stat_scale}
        row.update(self.score_val(predict(self.model, self.x_val)))
        row["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["seconds"] = time.perf_counter() - self._start
        self.rows.append(row)
        self.on_epoch(epoch + 1, row)
        # Keras hands this same dict to the callbacks after this one: they see dlrun's columns.
        logs.update({k: v for k, v in row.items() if k not in ("epoch", "phase")})
        if self.diverged or not math.isfinite(keras_loss):
            self.diverged = True
            self.model.stop_training = True


def _fit_loop(
    model: keras.Model, splits: Splits, spec: TaskSpec, *, epochs: int, batch_size: int,
    sample_weight: np.ndarray, callbacks: keras.callbacks.CallbackList, on_epoch: EpochHook,
    seed: int, initial_epoch: int, history: list[Row],
) -> tuple[list[Row], str, str | None]:
    stat = "accuracy" if spec.is_classification else "mae"
    recorder = _Recorder(
        on_epoch=on_epoch, score_val=epoch_scorer(splits, spec), x_val=splits.val.x, stat=stat,
        stat_scale=1.0 if spec.is_classification else splits.y_std, history=history,
    )
    loss = per_row_loss(spec)
    model.compile(optimizer=model.optimizer, loss=loss, metrics=[stat],
                  weighted_metrics=[keras.metrics.MeanMetricWrapper(loss, name="data_loss")])
    y = splits.train.y.astype(np.float32)
    if spec.units == 1:
        y = y.reshape(-1, 1)  # the data-loss metric, unlike the loss, does not reshape targets
    if is_lazy(splits.train.x):
        batches = _batches(splits.train.x, y, sample_weight.astype(np.float32), batch_size=batch_size,
                           seed=seed, epochs=range(initial_epoch, epochs))
        model.fit(batches, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
                  steps_per_epoch=math.ceil(len(y) / batch_size),
                  callbacks=[recorder, *callbacks.callbacks], verbose=0)
    else:
        model.fit(
            splits.train.x, y, sample_weight=sample_weight,
            epochs=epochs, initial_epoch=initial_epoch, batch_size=batch_size, shuffle=True,
            callbacks=[recorder, *callbacks.callbacks], verbose=0,
        )
    if recorder.diverged:
        return recorder.rows, "diverged", _divergence_message(len(recorder.rows))
    return recorder.rows, "ok", None


# --- the entry point --------------------------------------------------------------------


def row_weights(splits: Splits, *, class_weight: Mapping[int, float] | None = None) -> np.ndarray:
    """One weight per training row: the training part's sample weight times its class's weight.

    Raises:
        ValueError: class weights on a regression task.
    """
    weights = np.asarray(splits.train.weight, dtype=np.float64)
    if class_weight:
        if splits.task == "regression":
            raise ValueError("class_weight applies to classification only; set sample weights instead")
        per_class = np.ones(max(splits.n_classes, 2))
        for code, value in class_weight.items():
            per_class[int(code)] = float(value)
        weights = weights * per_class[splits.train.y.astype(np.int64)]
    return weights


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
    class_weight: Mapping[int, float] | None = None,
    on_epoch: EpochHook | None = None,
    seed: int = 0,
    initial_epoch: int = 0,
    history: list[Row] | None = None,
) -> FitResult:
    """Train ``model`` on ``splits`` and return its history and status.

    Args:
        model: an uncompiled Keras model.
        splits: in-memory train / validation arrays.
        spec: the task's loss and metrics.
        optimizer: a fresh Keras optimizer.
        epochs: the most epochs to run (counting any already done).
        batch_size: rows per gradient step.
        callbacks: Keras callbacks; EarlyStopping, ReduceLROnPlateau and TensorBoard work in
            both loops.
        loop: ``fast``, ``fit`` or ``auto`` (fast for in-memory arrays). Defaults to "auto".
        class_weight: a weight per class code, multiplied into the training part's sample
            weights (``splits.train.weight``); classes
            not named keep weight 1. Defaults to None.
        on_epoch: called after each epoch with its 1-based number and history row.
        seed: shuffling seed. Defaults to 0.
        initial_epoch: epochs already done (resuming); training continues from there.
            Defaults to 0.
        history: the history rows of those epochs, kept at the head of the result.

    Returns:
        A :class:`FitResult`; ``status`` is ``ok``, ``diverged`` or ``interrupted``.
    """
    if loop not in ("auto", "fast", "fit"):
        raise ValueError(f"loop={loop!r} is not one of: auto, fast, fit")
    chosen = "fit" if loop == "fit" else "fast"
    weights = row_weights(splits, class_weight=class_weight)
    loss = per_row_loss(spec)
    model.compile(optimizer=optimizer, loss=loss)  # wraps the optimizer for mixed precision
    _watch_direction(callbacks)
    rows: list[Row] = list(history or [])  # the loops append to it, so Ctrl-C keeps what ran
    record = on_epoch or (lambda epoch, row: None)
    start = time.perf_counter()
    if chosen == "fast":  # a graph traced by an earlier run of this process, when there is one
        network = warm_graph.lease(model, spec, batch_size=batch_size, n_train=len(splits.train.y), loss=loss,
                                   make_runner=partial(_EpochRunner, spec=spec, batch_size=batch_size,
                                                       n_train=len(splits.train.y)))
        run = _fast_loop
    else:
        network, run = contextlib.nullcontext((model, None)), _fit_loop
    with network as (net, runner):
        extra = {"runner": runner} if runner is not None else {}
        cb_list = keras.callbacks.CallbackList(callbacks, model=net)
        try:
            rows, status, message = run(
                net, splits, spec, epochs=epochs, batch_size=batch_size, sample_weight=weights,
                callbacks=cb_list, on_epoch=record, seed=seed, initial_epoch=initial_epoch, history=rows, **extra,
            )
        except KeyboardInterrupt:
            status, message = "interrupted", "stopped by the user (Ctrl-C or SIGTERM)"
    seconds = time.perf_counter() - start
    stopped_early = status == "ok" and len(rows) < epochs
    return FitResult(rows, status, chosen, seconds, stopped_early, message)


# --- seeds side by side -----------------------------------------------------------------

# Layers a stacked network reproduces; any other layer keeps its model training alone.
_STACKABLE = (keras.layers.InputLayer, keras.layers.Flatten, keras.layers.Dense,
              keras.layers.Activation, keras.layers.Dropout)
_PENALTIES = (keras.regularizers.L1, keras.regularizers.L2, keras.regularizers.L1L2)


def stacking_obstacle(model: keras.Model) -> str | None:
    """Why copies of ``model`` cannot train stacked in one network (None: they can).

    Stacking covers a chain of dense layers (any activation, L1/L2 kernel penalties),
    activations, dropout and flatten: the multi-layer perceptron and logistic regression.
    """
    for layer in model.layers:
        if not isinstance(layer, _STACKABLE):
            return f"its layer {layer.name!r} is a {type(layer).__name__} (only dense, activation, dropout " \
                   "and flatten layers stack)"
        if isinstance(layer, keras.layers.Dropout) and layer.noise_shape is not None:
            return f"its dropout layer {layer.name!r} has a noise_shape"
        if isinstance(layer, keras.layers.Dense):
            extra = [a for a in ("bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint")
                     if getattr(layer, a, None) is not None]
            if extra or getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
                return f"its dense layer {layer.name!r} has {', '.join(extra) or 'LoRA or quantization'}"
            if layer.kernel_regularizer is not None and not isinstance(layer.kernel_regularizer, _PENALTIES):
                return f"its dense layer {layer.name!r} has a {type(layer.kernel_regularizer).__name__} penalty"
    return None


class _StackedNet:
    """N copies of one dense chain whose weights live as slices of stacked variables.

    Each seed's forward pass is its own model's ops on its own slice (the same Keras ops, so
    TensorFlow's graph rewrites fuse them as they would alone, and each seed's numbers are
    its lone run's bit for bit); what is elementwise, the optimizer's update of ``(N, in,
    out)`` variables, runs once for every seed. Dropout is drawn per seed with the seed its own
    layer's SeedGenerator would give. Each seed's model keeps its own variables, copied from
    its slice by :meth:`sync`.
    """

    def __init__(self, models: list[keras.Model]):
        self.models = models
        self.n = len(models)
        self.steps: list[tuple[str, object]] = []
        self.variables: list[keras.Variable] = []
        self.solo: list[list[keras.Variable]] = []  # per stacked variable, each seed's own
        self.streams: list[tuple[tf.Variable, list]] = []  # dropout seed states: stacked, each seed's own
        for i, layer in enumerate(models[0].layers):
            peers = [m.layers[i] for m in models]
            if isinstance(layer, keras.layers.Flatten):
                self.steps.append(("flatten", None))
            elif isinstance(layer, keras.layers.Activation):
                self.steps.append(("activation", layer.activation))
            elif isinstance(layer, keras.layers.Dropout):
                state = tf.Variable(np.stack([keras.ops.convert_to_numpy(p.seed_generator.state) for p in peers]),
                                    trainable=False)
                self.steps.append(("dropout", (layer.rate, state)))
                self.streams.append((state, [p.seed_generator.state for p in peers]))
            elif isinstance(layer, keras.layers.Dense):
                kernel = self._stack([p.kernel for p in peers], f"{layer.name}_kernel")
                bias = self._stack([p.bias for p in peers], f"{layer.name}_bias") if layer.use_bias else None
                self.steps.append(("dense", (kernel, bias, layer.activation, [p.kernel_regularizer for p in peers])))

    def _stack(self, own: list[keras.Variable], name: str) -> keras.Variable:
        stacked = keras.Variable(np.stack([keras.ops.convert_to_numpy(v) for v in own]), name=name)
        self.variables.append(stacked)
        self.solo.append(own)
        return stacked

    def __call__(self, xs: list, *, training: bool) -> tuple[list, list]:
        """Each seed's inputs to its outputs (float32) and its weight penalties (Keras's
        regularizer on its own kernels, in its model's order)."""
        hs, penalties = list(xs), [[] for _ in range(self.n)]
        for kind, what in self.steps:
            if kind == "flatten":
                hs = [keras.ops.reshape(h, (-1, int(np.prod(h.shape[1:])))) for h in hs]
            elif kind == "activation":
                hs = [what(h) for h in hs]
            elif kind == "dropout" and training and what[0] > 0:
                hs = self._dropout(hs, *what)
            elif kind == "dense":
                kernel, bias, activation, regularizers = what
                kernels = tf.unstack(kernel.value)
                biases = tf.unstack(bias.value) if bias is not None else [None] * self.n
                # The penalty reads the kernel apart, as Keras does: each seed's gradient then
                # adds the data's part and the penalty's in its lone run's order.
                weighed = tf.unstack(kernel.value) if training and any(regularizers) else [None] * self.n
                for s, (k, b, reg) in enumerate(zip(kernels, biases, regularizers, strict=True)):
                    h = keras.ops.matmul(hs[s], k)  # keras.layers.Dense.call, op for op
                    if b is not None:
                        h = keras.ops.add(h, b)
                    hs[s] = activation(h) if activation is not None else h
                    if reg is not None and training:
                        penalties[s].append(reg(weighed[s]))
        return [tf.cast(h, tf.float32) for h in hs], penalties

    def _dropout(self, hs: list, rate: float, state: tf.Variable) -> list:
        """Keras's dropout of each seed's batch, with the seed its layer's SeedGenerator would
        draw (its state, then one step on; cast as Keras casts it)."""
        seeds = state.read_value()
        state.assign_add(tf.constant([[0, 1]], state.dtype) + tf.zeros_like(seeds))
        seeds = tf.cast(tf.math.floormod(seeds, tf.int32.max - 1), tf.int32)
        return [tf.nn.experimental.stateless_dropout(h, rate=rate, seed=seeds[s]) for s, h in enumerate(hs)]

    def sync(self, active):
        """Copy each active seed's slice into its own model's variables (in the graph)."""
        for stacked, own in zip(self.variables, self.solo, strict=True):
            for s, (var, value) in enumerate(zip(own, tf.unstack(stacked.value), strict=True)):
                var.assign(tf.where(active[s], value, var.value))
        for state, own in self.streams:
            for s, var in enumerate(own):
                var.assign(tf.where(active[s], state[s], var.value))


def _sync_optimizer(stacked: keras.optimizers.Optimizer, own: list[keras.optimizers.Optimizer], active, n: int):
    """Copy each active seed's slice of the stacked optimizer's state into its own optimizer
    (its moments and step count), so that the seed's checkpoints resume it alone."""
    for big, owns in zip(stacked.variables, zip(*(o.variables for o in own), strict=True), strict=True):
        for s, var in enumerate(owns):
            value = big.value[s] if tuple(big.shape) == (n, *var.shape) else big.value
            var.assign(tf.where(active[s], tf.cast(value, var.dtype), var.value))


def _copy_optimizer_state(stacked: keras.optimizers.Optimizer, own: keras.optimizers.Optimizer, s: int, n: int):
    """Seed ``s``'s slice of the stacked optimizer's state, into its own optimizer (eagerly)."""
    for big, var in zip(stacked.variables, own.variables, strict=True):
        value = keras.ops.convert_to_numpy(big)
        var.assign(value[s] if value.shape == (n, *var.shape) else value)


class _StackedEpochs:
    """One epoch of every seed in one graph call: the fast loop's walk over ``(N, ...)`` tensors.

    Each seed walks its own permutation of its own training rows; its loss, statistic and
    finiteness are its own, and a seed whose loss turned non-finite stops counting (as its
    solo loop would stop) while the others go on. Seeds that already finished keep being
    stepped (their slices are no longer read), so the graph is traced once.
    """

    def __init__(self, net: _StackedNet, optimizer: keras.optimizers.Optimizer, spec: TaskSpec, *,
                 batch_size: int, n_train: int, own_optimizers: list | None):
        self.net, self.optimizer, self.spec = net, optimizer, spec
        self.batch_size = batch_size
        self.n_batches = math.ceil(n_train / batch_size)
        self.loss = per_row_loss(spec)
        self.own_optimizers = own_optimizers
        self.optimizer.build(net.variables)
        self.run = tf.function(self._epoch, autograph=False, reduce_retracing=True)

    _stat = _EpochRunner._stat  # one seed's batch, as its lone loop counts it

    def _step(self, x, y, w, idx):
        """One mini-batch of every seed: its weighted loss sum, stat, finiteness and weight."""
        n = self.net.n
        xb, yb, wb, ib = (tf.unstack(t, num=n) for t in (*(tf.gather(t, idx, batch_dims=1) for t in (x, y, w)), idx))
        with tf.GradientTape() as tape:
            preds, penalties = self.net(xb, training=True)
            weighted = [self.loss(yb[s], preds[s]) * wb[s] for s in range(n)]
            # As one seed's loop: sum(loss * weight) / rows, plus its model's penalties.
            totals = [tf.reduce_sum(weighted[s]) / tf.cast(tf.size(ib[s]), tf.float32) for s in range(n)]
            totals = [t + tf.add_n(p) if p else t for t, p in zip(totals, penalties, strict=True)]
            objective = tf.add_n(totals)  # each seed's gradient is its own term's
        variables = self.net.variables
        self.optimizer.apply(tape.gradient(objective, variables), variables)
        return (tf.stack([tf.reduce_sum(v) for v in weighted]),
                tf.stack([self._stat(yb[s], preds[s]) for s in range(n)]),
                tf.math.is_finite(tf.stack(totals)), tf.stack([tf.reduce_sum(v) for v in wb]))

    def _predict(self, x):
        rows = x.shape[1]
        outs = [self.net(tf.unstack(x[:, i : i + _EVAL_BATCH], num=self.net.n), training=False)[0]
                for i in range(0, rows, _EVAL_BATCH)]
        return tf.stack([tf.concat([out[s] for out in outs], axis=0) for s in range(self.net.n)])

    def _epoch(self, x, y, w, perm, x_val, active):
        bs, n = self.batch_size, self.net.n
        zero = tf.zeros((n,))

        def more(i, *sums):
            return i < self.n_batches

        def step(i, loss_sum, stat_sum, weight_sum, seen, live):
            idx = perm[:, i * bs : (i + 1) * bs]
            batch_loss, batch_stat, batch_finite, batch_weight = self._step(x, y, w, idx)
            rows = tf.cast(tf.shape(idx)[1], tf.float32)
            # A seed counts the batches up to its first non-finite loss, as its own loop stops there.
            return (i + 1, tf.where(live, loss_sum + batch_loss, loss_sum),
                    tf.where(live, stat_sum + batch_stat, stat_sum),
                    tf.where(live, weight_sum + batch_weight, weight_sum),
                    tf.where(live, seen + rows, seen), tf.logical_and(live, batch_finite))

        start = (tf.constant(0), zero, zero, zero, zero, tf.ones((n,), tf.bool))
        _, loss_sum, stat_sum, weight_sum, seen, finite = tf.while_loop(more, step, start)
        self.net.sync(active)
        if self.own_optimizers:
            _sync_optimizer(self.optimizer, self.own_optimizers, active, n)
        lr = tf.cast(self.optimizer.learning_rate, tf.float32)
        return loss_sum / weight_sum, stat_sum / seen, finite, self._predict(x_val), lr


def train_together(
    models: list[keras.Model],
    splits: list[Splits],
    spec: TaskSpec,
    *,
    optimizers: list[keras.optimizers.Optimizer],
    stacked_optimizer: keras.optimizers.Optimizer,
    epochs: int,
    batch_size: int,
    callbacks: list[list[keras.callbacks.Callback]],
    seeds: list[int],
    class_weight: Mapping[int, float] | None = None,
    on_epoch: list[EpochHook] | None = None,
) -> list[FitResult]:
    """Train N models of one configuration side by side, stacked in one network.

    Each model is the one its seed would train alone, built from its own initial weights;
    it gets its own training data (``splits``), permutation per epoch, optimizer state,
    callbacks (early stopping) and status (``ok``, ``diverged``: a seed that stops leaves
    the others training). Each seed's forward and backward pass are its lone run's ops, and
    the optimizer's update is elementwise, so a seed's history equals :func:`train`'s bit for
    bit at the same thread count (a diverged seed's weights aside: its slice keeps being
    stepped to the end of that epoch).

    Args:
        models: one uncompiled model per seed, identical in structure (see
            :func:`stacking_obstacle`).
        splits: each seed's in-memory data; every seed's parts have the same sizes.
        spec: the task's loss and metrics.
        optimizers: a fresh optimizer per seed: each model's own (it holds the seed's
            state for checkpoints; the stacked optimizer does the training).
        stacked_optimizer: a fresh optimizer of the same configuration for the stack.
        epochs: the most epochs to run.
        batch_size: rows per gradient step.
        callbacks: each seed's Keras callbacks (epoch-level).
        seeds: each seed's shuffling seed.
        class_weight: a weight per class code. Defaults to None.
        on_epoch: each seed's epoch hook. Defaults to None.

    Returns:
        One :class:`FitResult` per seed; ``fit_seconds`` and each row's ``seconds`` are the
        seed's share of the group's time (each epoch's time divided among the seeds it trained).
    """
    n = len(models)
    start = time.perf_counter()
    for model, optimizer in zip(models, optimizers, strict=True):
        model.compile(optimizer=optimizer, loss=per_row_loss(spec))
        model.optimizer.build(model.trainable_variables)  # holds the seed's state once it stops
    checkpointing = any(type(cb).__name__ == "EpochCheckpoint" for cbs in callbacks for cb in cbs)
    net = _StackedNet(models)
    runner = _StackedEpochs(net, stacked_optimizer, spec, batch_size=batch_size, n_train=len(splits[0].train.y),
                            own_optimizers=[m.optimizer for m in models] if checkpointing else None)
    x = tf.constant(np.stack([s.train.x for s in splits]))
    y = tf.constant(np.stack([s.train.y for s in splits]).astype(np.float32))
    w = tf.constant(np.stack([row_weights(s, class_weight=class_weight) for s in splits]).astype(np.float32))
    x_val = tf.constant(np.stack([s.val.x for s in splits]))
    scorers = [epoch_scorer(s, spec) for s in splits]
    hooks = on_epoch or [lambda epoch, row: None] * n
    stat_name = "accuracy" if spec.is_classification else "mae"
    lists = []
    for model, cbs in zip(models, callbacks, strict=True):
        _watch_direction(cbs)
        lists.append(keras.callbacks.CallbackList(cbs, model=model))
    histories: list[list[Row]] = [[] for _ in range(n)]
    status: list[str | None] = [None] * n  # None while training
    seconds = [(time.perf_counter() - start) / n] * n
    n_train = len(splits[0].train.y)

    def finish(s: int, outcome: str) -> None:
        status[s] = outcome
        _copy_optimizer_state(stacked_optimizer, models[s].optimizer, s, n)  # as a lone run leaves it
        lists[s].on_train_end()

    try:
        for cb_list in lists:
            cb_list.on_train_begin()
        for epoch in range(epochs):
            active = [s for s in range(n) if status[s] is None]
            if not active:
                break
            for s in active:
                lists[s].on_epoch_begin(epoch)
            began = time.perf_counter()
            perm = np.stack([np.random.default_rng([seed, epoch]).permutation(n_train) for seed in seeds])
            mask = tf.constant([status[s] is None for s in range(n)])
            loss, stat, finite, val_pred, lr = runner.run(x, y, w, perm.astype(np.int32), x_val, mask)
            loss, stat, finite, val_pred = (np.asarray(t) for t in (loss, stat, finite, val_pred))
            share = (time.perf_counter() - began) / len(active)
            for s in active:
                scale = 1.0 if spec.is_classification else splits[s].y_std
                logs = {"loss": float(loss[s]), stat_name: float(stat[s]) * scale, **scorers[s](val_pred[s])}
                logs["lr"] = float(lr)
                logs["seconds"] = share
                seconds[s] += share
                row = {"epoch": epoch + 1, **logs}
                histories[s].append(row)
                hooks[s](epoch + 1, row)
                if not bool(finite[s]) or not math.isfinite(logs["loss"]):
                    finish(s, "diverged")
                    continue
                lists[s].on_epoch_end(epoch, dict(logs))
                if models[s].stop_training:
                    finish(s, "ok")
        for s in range(n):
            if status[s] is None:
                finish(s, "ok")
    except KeyboardInterrupt:
        for s in range(n):
            if status[s] is None:
                status[s] = "interrupted"
    results = []
    for s in range(n):
        rows = histories[s]
        message = {"diverged": _divergence_message(len(rows)),
                   "interrupted": "stopped by the user (Ctrl-C or SIGTERM)"}.get(status[s])
        results.append(FitResult(rows, status[s], "fast", seconds[s],
                                 status[s] == "ok" and len(rows) < epochs, message))
    return results
