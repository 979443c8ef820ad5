"""The trainer: both loops, callbacks, weights, divergence, determinism, per-epoch scores."""

from __future__ import annotations

import math
from dataclasses import replace

import keras
import numpy as np
import pytest

from dlrun.data.table import Part, Splits
from dlrun.metrics import compute_metrics
from dlrun.models.mlp import build_mlp
from dlrun.task import HEADLINES, task_spec
from dlrun.train import epoch_scorer, predict, row_weights, train

LOOPS = ["fast", "fit"]


def make_splits(task: str = "binary", *, n: int = 300, seed: int = 0, noise: float = 0.5) -> Splits:
    """A small learnable table, split 60/20/20 by hand."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    signal = x[:, :3] + noise * rng.normal(size=(n, 3))
    if task == "binary":
        y, classes = (signal[:, 0] + signal[:, 1] > 0).astype(np.int64), ["no", "yes"]
    elif task == "multiclass":
        y, classes = np.argmax(signal, axis=1).astype(np.int64), ["a", "b", "c"]
    else:
        y, classes = signal.sum(axis=1).astype(np.float64), []
    a, b = int(0.6 * n), int(0.8 * n)
    return Splits(
        Part(x[:a], y[:a]), Part(x[a:b], y[a:b]), Part(x[b:], y[b:]),
        task=task, class_names=classes, feature_names=[f"f{i}" for i in range(6)],
    )


def fit(splits: Splits, *, loop: str = "fast", epochs: int = 3, callbacks=(), lr: float = 1e-2,
        optimizer=None, seed: int = 0, **kwargs):
    spec = task_spec(splits.task, splits.n_classes, splits.train.y)
    keras.utils.set_random_seed(seed)
    model = build_mlp(splits.input_shape, spec, width=16, depth=1, **kwargs.pop("model_args", {}))
    result = train(
        model, splits, spec, optimizer=optimizer or keras.optimizers.Adam(lr), epochs=epochs,
        batch_size=32, callbacks=list(callbacks), loop=loop, seed=seed, **kwargs,
    )
    return model, result, spec


# --- per-epoch scores and weights (no training) ---------------------------------------


@pytest.mark.parametrize(
    ("task", "imbalanced"), [("binary", False), ("binary", True), ("multiclass", False),
                             ("multiclass", True), ("regression", False)],
)
def test_epoch_scores_equal_scikit_learn_metrics(task, imbalanced):
    rng = np.random.default_rng(1)
    splits = make_splits(task, n=400)
    if imbalanced:  # few rows of class 1 make pr_auc / macro_f1 the headline
        keep = (splits.train.y != 1) | (rng.random(len(splits.train.y)) < 0.1)
        splits.train.y = splits.train.y[keep]
    spec = task_spec(task, splits.n_classes, splits.train.y)
    n = len(splits.val.y)
    if task == "binary":
        pred = np.round(rng.random((n, 1)), 1)  # rounding makes ties, which AUCs must handle
    elif task == "multiclass":
        pred = rng.dirichlet(np.ones(3), size=n)
    else:
        pred = rng.normal(size=(n, 1))
    splits.y_mean, splits.y_std = 3.0, 2.5
    fast = epoch_scorer(splits, spec)(pred)
    slow = compute_metrics(splits.val.y, pred, spec, y_mean=3.0, y_std=2.5)
    assert set(fast) == {"val_loss", f"val_{'accuracy' if spec.is_classification else 'mae'}",
                         f"val_{spec.headline}"}
    for name, value in fast.items():
        assert value == pytest.approx(slow[name.removeprefix("val_")], rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize(("task", "headline"), [
    (task, headline) for task in ("binary", "multiclass", "regression") for headline in HEADLINES[task]])
def test_every_headline_is_scored_each_epoch_as_scikit_learn_scores_it(task, headline):
    rng = np.random.default_rng(2)
    splits = make_splits(task, n=400)
    spec = task_spec(task, splits.n_classes, splits.train.y, headline=headline, threshold=0.4)
    n = len(splits.val.y)
    pred = {"binary": np.round(rng.random((n, 1)), 1), "multiclass": rng.dirichlet(np.ones(3), size=n),
            "regression": rng.normal(size=(n, 1))}[task]
    splits.y_mean, splits.y_std = 3.0, 2.5
    fast = epoch_scorer(splits, spec)(pred)
    slow = compute_metrics(splits.val.y, pred, spec, y_mean=3.0, y_std=2.5)
    assert fast[f"val_{headline}"] == pytest.approx(slow[headline], rel=1e-9, abs=1e-12)
    stat = "accuracy" if spec.is_classification else "mae"  # accuracy at threshold 0.4 in both
    assert fast[f"val_{stat}"] == pytest.approx(slow[stat])


def test_epoch_scores_are_nan_for_non_finite_predictions():
    splits = make_splits()
    spec = task_spec("binary", 2, splits.train.y)
    pred = np.full((len(splits.val.y), 1), np.nan)
    assert all(math.isnan(v) for v in epoch_scorer(splits, spec)(pred).values())


def test_class_weights_multiply_the_training_parts_sample_weights():
    splits = make_splits()
    splits = replace(splits, train=replace(splits.train, weight=np.full(len(splits.train), 2.0)))
    weights = row_weights(splits, class_weight={1: 5.0})
    expected = np.where(splits.train.y == 1, 10.0, 2.0)
    np.testing.assert_array_equal(weights, expected)


def test_class_weights_are_refused_for_regression():
    with pytest.raises(ValueError, match="classification only"):
        row_weights(make_splits("regression"), class_weight={0: 2.0})


def test_unknown_loop_is_refused():
    with pytest.raises(ValueError, match="loop='turbo'"):
        fit(make_splits(), loop="turbo")


# --- training (slow) ----------------------------------------------------------------


class Counter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls: list[str] = []
        self.logs: list[dict] = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch}")
        self.logs.append(dict(logs))

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


@pytest.mark.slow
@pytest.mark.parametrize("loop", LOOPS)
def test_callbacks_fire_with_validation_logs(loop):
    counter = Counter()
    _, result, _ = fit(make_splits(), loop=loop, epochs=2, callbacks=[counter])
    assert counter.calls == ["train_begin", "epoch_begin 0", "epoch_end 0", "epoch_begin 1",
                             "epoch_end 1", "train_end"]
    assert {"loss", "val_loss", "val_accuracy", "val_roc_auc"} <= set(counter.logs[-1])
    assert result.loop == loop and result.status == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("loop", LOOPS)
def test_history_has_every_column_each_epoch(loop):
    _, result, _ = fit(make_splits("multiclass"), loop=loop, epochs=2)
    columns = {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert [set(row) for row in result.history] == [columns, columns]
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert all(math.isfinite(v) for row in result.history for v in row.values())


@pytest.mark.slow
def test_fast_and_fit_loops_reach_comparable_scores():
    splits = make_splits(n=400, noise=0.3)
    scores = {}
    for loop in LOOPS:
        model, result, spec = fit(splits, loop=loop, epochs=8)
        last = result.history[-1]
        test = compute_metrics(splits.test.y, predict(model, splits.test.x), spec)
        scores[loop] = (last["loss"], last["val_loss"], test["accuracy"])
    (fast_loss, fast_val, fast_acc), (fit_loss, fit_val, fit_acc) = scores["fast"], scores["fit"]
    assert fast_loss == pytest.approx(fit_loss, rel=0.25)
    assert fast_val == pytest.approx(fit_val, rel=0.25)
    assert abs(fast_acc - fit_acc) <= 0.06
    assert fast_acc > 0.8 and fit_acc > 0.8  # both learned the rule, not just agreed


@pytest.mark.slow
def test_same_seed_gives_identical_history():
    runs = [fit(make_splits(), epochs=3, model_args={"dropout": 0.3}, seed=7)[1] for _ in range(2)]
    strip = [[{k: v for k, v in row.items() if k != "seconds"} for row in r.history] for r in runs]
    assert strip[0] == strip[1]


@pytest.mark.slow
@pytest.mark.parametrize("loop", LOOPS)
def test_non_finite_loss_stops_the_run_in_its_first_epoch(loop):
    _, result, _ = fit(make_splits("regression"), loop=loop, epochs=20,
                       optimizer=keras.optimizers.SGD(learning_rate=1e12))
    assert result.status == "diverged"
    assert result.epochs_run == 1
    assert not math.isfinite(result.history[-1]["loss"])
    assert "optimizer.lr" in result.message


@pytest.mark.slow
@pytest.mark.parametrize("loop", LOOPS)
def test_early_stopping_restores_the_best_weights(loop):
    # Few noisy rows and a high learning rate: validation loss bottoms out, then climbs.
    splits = make_splits(n=120, noise=2.0)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    model, result, spec = fit(splits, loop=loop, epochs=60, lr=0.05, callbacks=[stopper])
    assert result.stopped_early and result.epochs_run < 60
    val_losses = [row["val_loss"] for row in result.history]
    restored = compute_metrics(splits.val.y, predict(model, splits.val.x), spec)["loss"]
    assert restored == pytest.approx(min(val_losses), rel=1e-5)
    assert restored < val_losses[-1]


@pytest.mark.slow
def test_early_stopping_on_a_score_watches_it_rising():
    stopper = keras.callbacks.EarlyStopping(monitor="val_roc_auc", patience=2)
    fit(make_splits(), epochs=2, callbacks=[stopper])
    assert stopper.mode == "max"


@pytest.mark.slow
@pytest.mark.parametrize("loop", LOOPS)
def test_reduce_lr_on_plateau_lowers_the_recorded_rate(loop):
    # min_delta so large that no epoch after the first counts as an improvement: from the
    # second epoch on, the rate halves after every epoch.
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=1e9)
    _, result, _ = fit(make_splits(), loop=loop, epochs=4, lr=0.01, callbacks=[plateau])
    assert [row["lr"] for row in result.history] == pytest.approx([0.01, 0.01, 0.005, 0.0025], rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("loop", LOOPS)
def test_class_weights_change_the_loss_and_the_model(loop):
    splits = make_splits(noise=1.5)
    plain_model, plain, _ = fit(splits, loop=loop, epochs=2)
    heavy_model, heavy, _ = fit(splits, loop=loop, epochs=2, class_weight={1: 8.0})
    assert heavy.history[0]["loss"] != pytest.approx(plain.history[0]["loss"], rel=1e-3)
    # Weighting class 1 up makes the model call class 1 more often.
    share = lambda m: float(np.mean(predict(m, splits.val.x) >= 0.5))  # noqa: E731
    assert share(heavy_model) > share(plain_model)


@pytest.mark.slow
def test_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard", reason="trainer.tensorboard needs the tensorboard package")
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb"))
    _, result, _ = fit(make_splits(), epochs=2, callbacks=[board])
    assert result.status == "ok"
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_ctrl_c_keeps_the_history_so_far():
    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    _, result, _ = fit(make_splits(), epochs=10, callbacks=[StopAfterTwo()])
    assert result.status == "interrupted"
    assert [row["epoch"] for row in result.history] == [1, 2]


@pytest.mark.slow
def test_resuming_continues_the_epoch_count():
    splits = make_splits()
    model, first, spec = fit(splits, epochs=2)
    again = train(model, splits, spec, optimizer=keras.optimizers.Adam(1e-2), epochs=4, batch_size=32,
                  callbacks=[], initial_epoch=2, history=first.history)
    assert [row["epoch"] for row in again.history] == [1, 2, 3, 4]
    assert again.history[:2] == first.history


@pytest.mark.slow
def test_the_epoch_graph_is_traced_once_per_run():
    from dlrun.train import _EpochRunner

    splits = make_splits()
    spec = task_spec("binary", 2, splits.train.y)
    model = build_mlp(splits.input_shape, spec, width=8, depth=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=spec.loss)
    runner = _EpochRunner(model, spec, batch_size=32, n_train=len(splits.train.y))
    y = splits.train.y.astype(np.float32)
    for epoch in range(3):  # a new permutation every epoch, as in training
        perm = np.random.default_rng(epoch).permutation(len(y)).astype(np.int32)
        runner.run(splits.train.x, y, np.ones_like(y), perm, splits.val.x)
    assert runner.run.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_mixed_precision_scales_the_loss_and_still_learns():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, result, _ = fit(make_splits(noise=0.3), epochs=4)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert result.status == "ok"
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]


@pytest.mark.slow
def test_batch_norm_and_dropout_train_in_training_mode_only():
    splits = make_splits()
    model, result, _ = fit(splits, epochs=2, model_args={"batch_norm": True, "dropout": 0.5})
    moving_mean = model.get_layer("bn_0").moving_mean
    assert result.status == "ok"
    assert np.any(keras.ops.convert_to_numpy(moving_mean) != 0.0)  # updated by training steps
    np.testing.assert_array_equal(predict(model, splits.val.x), predict(model, splits.val.x))


@pytest.mark.slow
def test_validation_larger_than_one_chunk_is_predicted_whole():
    from dlrun.train import _EVAL_BATCH, _EpochRunner

    splits = make_splits()
    splits.val.x = np.random.default_rng(0).normal(size=(_EVAL_BATCH + 300, 6)).astype(np.float32)
    spec = task_spec("binary", 2, splits.train.y)
    model = build_mlp(splits.input_shape, spec, width=8, depth=1)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=spec.loss)  # weights stay put
    runner = _EpochRunner(model, spec, batch_size=32, n_train=len(splits.train.y))
    y = splits.train.y.astype(np.float32)
    perm = np.arange(len(y), dtype=np.int32)
    val_pred = runner.run(splits.train.x, y, np.ones_like(y), perm, splits.val.x)[3].numpy()
    np.testing.assert_allclose(val_pred, predict(model, splits.val.x), rtol=1e-5)
