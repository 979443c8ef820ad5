"""Trainer speed, side by side in one process: dlrun vs plain ``model.fit`` vs the limit.

Four ways to train the same network on the same arrays from the same initial weights:

* ``plain fit``: what a user writes first (``compile`` + ``fit`` with ``validation_data``);
* ``fit, steps/exec``: the same with ``compile(steps_per_execution=<batches per epoch>)``,
  Keras's own answer to per-batch overhead (one compiled call runs the whole epoch);
* ``dlrun``: :func:`dlrun.train.train`, exactly as ``dlrun`` calls it (history rows,
  validation metrics every epoch);
* ``compiled loop``: a hand-written loop where each epoch is one ``tf.function`` over
  the batches with the validation pass inside it and nothing else: the limit.

Each side's time is the wall time of training alone (graph tracing included); data
loading and model building are outside the clock. Sides run interleaved, seed by seed,
so load on the machine hits them alike. Run it through ``benchmarks/run.py``.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every dlrun seed traces its own graph, as the other sides do: this compares training loops,
# not dlrun.warm_graph's sharing of a graph between the runs of one process.
os.environ["DLRUN_FRESH_GRAPH"] = "1"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dlrun.config import DatasetConfig  # noqa: E402
from dlrun.data import load_table  # noqa: E402
from dlrun.data.split import holdout_indices, make_splits  # noqa: E402
from dlrun.data.table import Splits  # noqa: E402
from dlrun.models.cnn import build_cnn  # noqa: E402
from dlrun.models.mlp import build_mlp  # noqa: E402
from dlrun.task import TaskSpec, task_spec  # noqa: E402
from dlrun.train import predict, train  # noqa: E402

SIDES = ("plain fit", "fit, steps/exec", "dlrun", "compiled loop")


@dataclass
class Case:
    """One benchmark: a dataset, a network and how long to train it."""

    name: str
    dataset: str
    scaling: str
    model: str  # mlp | cnn
    epochs: int
    seeds: tuple[int, ...]
    batch_size: int = 32
    lr: float = 1e-3


@dataclass
class Result:
    """Every side's seconds and final test accuracy, per seed."""

    case: Case
    n_test: int = 0  # test rows: one row's worth of accuracy is 1 / n_test
    seconds: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIDES})
    accuracy: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIDES})

    def median(self, side: str) -> float:
        return statistics.median(self.seconds[side])


BREAST_CANCER = Case("breast_cancer MLP 30-128-128-1", "breast_cancer", "standard", "mlp",
                     epochs=100, seeds=(0, 1, 2, 3, 4))
MNIST_CNN = Case("mnist_5k CNN (2 conv blocks)", "mnist_5k", "none", "cnn", epochs=10, seeds=(0, 1))


def load_splits(case: Case, seed: int) -> tuple[Splits, TaskSpec]:
    """The holdout split dlrun itself would make for this dataset and seed."""
    table = load_table(DatasetConfig(name=case.dataset, scaling=case.scaling))
    train_idx, val_idx, test_idx = holdout_indices(
        table.y, task=table.task, test_size=0.2, val_size=0.2, seed=seed
    )
    splits = make_splits(table, train_idx, val_idx, test_idx, scaling=case.scaling)
    return splits, task_spec(table.task, splits.n_classes, splits.train.y)


def build(case: Case, splits: Splits, spec: TaskSpec, seed: int) -> keras.Model:
    """The network, with initial weights that depend on the seed only."""
    keras.utils.set_random_seed(seed)
    if case.model == "cnn":
        return build_cnn(splits.input_shape, spec, image_shape=splits.image_shape)
    return build_mlp(splits.input_shape, spec, width=128, depth=2)


def _accuracy(model: keras.Model, splits: Splits, spec: TaskSpec) -> float:
    pred = predict(model, splits.test.x)
    labels = (pred.reshape(-1) >= 0.5) if spec.task == "binary" else np.argmax(pred, axis=1)
    return float(np.mean(labels.astype(np.int64) == splits.test.y))


def plain_fit(model: keras.Model, splits: Splits, spec: TaskSpec, case: Case, seed: int) -> None:
    """The script a user writes first."""
    model.compile(optimizer=keras.optimizers.Adam(case.lr), loss=spec.loss, metrics=["accuracy"])
    model.fit(
        splits.train.x, splits.train.y, batch_size=case.batch_size, epochs=case.epochs,
        validation_data=(splits.val.x, splits.val.y), verbose=0,
    )


def fit_steps_per_execution(model: keras.Model, splits: Splits, spec: TaskSpec, case: Case, seed: int) -> None:
    """``model.fit`` at its best: every batch of an epoch in one compiled execution."""
    steps = math.ceil(len(splits.train.y) / case.batch_size)
    model.compile(optimizer=keras.optimizers.Adam(case.lr), loss=spec.loss, metrics=["accuracy"],
                  steps_per_execution=steps)
    model.fit(
        splits.train.x, splits.train.y, batch_size=case.batch_size, epochs=case.epochs,
        validation_data=(splits.val.x, splits.val.y), verbose=0,
    )


def dlrun_fit(model: keras.Model, splits: Splits, spec: TaskSpec, case: Case, seed: int) -> None:
    """dlrun's trainer, called the way ``dlrun`` calls it."""
    result = train(
        model, splits, spec, optimizer=keras.optimizers.Adam(case.lr), epochs=case.epochs,
        batch_size=case.batch_size, callbacks=[], seed=seed,
    )
    if result.status != "ok":
        raise RuntimeError(f"dlrun's trainer ended with status {result.status}: {result.message}")


def compiled_loop(model: keras.Model, splits: Splits, spec: TaskSpec, case: Case, seed: int) -> None:
    """The limit: one ``tf.function`` per epoch, batches and validation inside it."""
    optimizer = keras.optimizers.Adam(case.lr)
    loss_fn = keras.losses.get(spec.loss)
    x, y = tf.constant(splits.train.x), tf.constant(splits.train.y.astype(np.float32))
    x_val, y_val = tf.constant(splits.val.x), tf.constant(splits.val.y.astype(np.float32))
    if spec.task == "binary":
        y, y_val = tf.reshape(y, (-1, 1)), tf.reshape(y_val, (-1, 1))
    n, bs = len(splits.train.y), case.batch_size
    variables = model.trainable_variables

    @tf.function
    def epoch(perm):
        for i in tf.range(math.ceil(n / bs)):
            idx = perm[i * bs:(i + 1) * bs]
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(loss_fn(tf.gather(y, idx), model(tf.gather(x, idx), training=True)))
            optimizer.apply(tape.gradient(loss, variables), variables)
        return tf.reduce_mean(loss_fn(y_val, model(x_val, training=False)))

    rng = np.random.default_rng(seed)
    for _ in range(case.epochs):
        epoch(tf.constant(rng.permutation(n).astype(np.int32))).numpy()


TRAINERS = {"plain fit": plain_fit, "fit, steps/exec": fit_steps_per_execution, "dlrun": dlrun_fit,
            "compiled loop": compiled_loop}


def warm_up(case: Case) -> None:
    """One untimed epoch of every side: process-wide one-off costs (TensorFlow's runtime,
    Keras's lazy imports) must not land on whichever side happens to go first."""
    short = replace(case, epochs=1)
    splits, spec = load_splits(short, short.seeds[0])
    for side in SIDES:
        TRAINERS[side](build(short, splits, spec, 0), splits, spec, short, 0)
    keras.backend.clear_session()


def measure_case(case: Case, *, log=print) -> Result:
    """Train every side on every seed of ``case``, interleaved, and time the training."""
    result = Result(case)
    for seed in case.seeds:
        splits, spec = load_splits(case, seed)
        result.n_test = len(splits.test.y)
        for side in SIDES:
            model = build(case, splits, spec, seed)
            start = time.perf_counter()
            TRAINERS[side](model, splits, spec, case, seed)
            seconds = time.perf_counter() - start
            result.seconds[side].append(seconds)
            result.accuracy[side].append(_accuracy(model, splits, spec))
            log(f"  {case.name} seed {seed} {side:14s} {seconds:7.2f} s  test acc {result.accuracy[side][-1]:.3f}")
            keras.backend.clear_session()
    return result


def measure_help(*, repeats: int = 5) -> list[float]:
    """Wall seconds of ``dlrun --help`` in fresh processes (the console script)."""
    exe = Path(sys.executable).with_name("dlrun")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "dlrun.cli"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([*command, "--help"], check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return times


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def markdown(result: Result) -> list[str]:
    """A table of one case: median seconds, ratios and test accuracy per side."""
    c = result.case
    dl = result.median("dlrun")
    lines = [
        f"### {c.name}",
        "",
        f"{c.epochs} epochs, batch {c.batch_size}, Adam lr {c.lr:g}, validation every epoch, "
        f"seeds {', '.join(map(str, c.seeds))}; median wall seconds of training.",
        "",
        "| side | median s | per-seed s | vs dlrun | test accuracy (mean ± sd) |",
        "|---|---:|---|---:|---|",
    ]
    for side in SIDES:
        per_seed = ", ".join(f"{s:.2f}" for s in result.seconds[side])
        lines.append(f"| {side} | {result.median(side):.2f} | {per_seed} | "
                     f"{result.median(side) / dl:.2f}× | {_mean_sd(result.accuracy[side])} |")
    lines += [
        "",
        f"- dlrun is **{result.median('plain fit') / dl:.1f}×** faster than plain `model.fit`, and "
        f"**{result.median('fit, steps/exec') / dl:.2f}×** faster than `model.fit` with "
        "`steps_per_execution` set to the epoch's batch count.",
        f"- dlrun takes **{dl / result.median('compiled loop'):.2f}×** the time of the hand-written "
        "compiled-epoch loop (which pays AutoGraph's source conversion when it traces; dlrun "
        "builds its epoch from `tf.while_loop` directly).",
        "",
    ]
    return lines
