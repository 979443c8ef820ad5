"""Reliability: checkpoints and resume, interruption, divergence, failure isolation,
weights files and image folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlrun.errors import ConfigError
from tests.conftest import compose_config, run_cli

TINY = ["trainer.progress=none"]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _small_model(width: int = 4):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(3,))
    hidden = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    hidden = keras.layers.Dropout(0.5)(hidden)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(hidden))


# ---------------------------------------------------------------- checkpoint unit tests


def test_checkpoint_restores_weights_optimizer_and_dropout_state(tmp_path):
    import keras

    from dlrun import checkpoint

    model = _small_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x, y = np.random.default_rng(0).normal(size=(32, 3)), np.zeros((32, 1))
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "checkpoint" / "state.npz"
    rows = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}]
    checkpoint.save(path, model, epoch=2, fold=0, history=rows, fingerprint="abc")

    fresh, optimizer = _small_model(), keras.optimizers.Adam(0.01)
    state = checkpoint.restore(path, fresh, optimizer)

    assert (state.epoch, state.fold, state.history, state.fingerprint) == (2, 0, rows, "abc")
    assert len(fresh.variables) > len(fresh.weights)  # the dropout seed state is a variable too
    for a, b in zip(model.variables, fresh.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) > 0
    for a, b in zip(model.optimizer.variables, optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not list(path.parent.glob(".*.tmp"))  # nothing half-written left behind


def test_checkpoint_of_another_model_is_refused(tmp_path):
    import keras

    from dlrun import checkpoint

    model = _small_model(width=4)
    model.compile(optimizer="adam", loss="mse")
    path = tmp_path / "state.npz"
    checkpoint.save(path, model, epoch=1, fold=0, history=[], fingerprint="")
    with pytest.raises(ConfigError, match="does not fit this model"):
        checkpoint.restore(path, _small_model(width=5), keras.optimizers.Adam())


def test_a_resume_with_other_plateau_callbacks_is_refused_and_an_old_checkpoint_is_tolerated(tmp_path, caplog):
    import keras

    from dlrun import checkpoint

    stopper = keras.callbacks.EarlyStopping(patience=3)
    stopper.on_train_begin()

    def resumed_from(states):
        return checkpoint.EpochCheckpoint(tmp_path / "state.npz", peers=[stopper],
                                          resumed=checkpoint.Checkpoint(4, 0, [], "", states))

    with pytest.raises(ConfigError, match="saved with 0 early-stopping / plateau callbacks, this run has 1"):
        resumed_from([]).on_train_begin()
    resumed_from(None).on_train_begin()  # written before callback state was saved
    assert stopper.wait == 0 and "their patience starts again" in caplog.text
    resumed_from([{"wait": 2, "best": 0.5, "best_epoch": 1}]).on_train_begin()
    assert (stopper.wait, stopper.best, stopper.best_epoch) == (2, 0.5, 1)


# ---------------------------------------------------------------- weights files


def test_weights_files_load_and_a_mismatch_is_one_clear_error(tmp_path):
    from dlrun.models import load_weights

    trained = _small_model()
    trained.save_weights(tmp_path / "w.weights.h5")
    trained.save(tmp_path / "m.keras")
    for name in ("w.weights.h5", "m.keras"):
        target = _small_model()
        load_weights(target, str(tmp_path / name))
        for a, b in zip(trained.weights, target.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    for name in ("w.weights.h5", "m.keras"):
        with pytest.raises(ConfigError, match="does not fit model"):
            load_weights(_small_model(width=7), str(tmp_path / name))


def test_a_keras_file_with_a_lambda_layer_is_refused_by_safe_mode(tmp_path):
    import keras

    from dlrun.models import load_weights

    inputs = keras.Input(shape=(3,))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    unsafe.save(tmp_path / "unsafe.keras")
    with pytest.raises(ConfigError, match="does not fit model"):
        load_weights(keras.Model(inputs, inputs), str(tmp_path / "unsafe.keras"))


@pytest.mark.slow
def test_a_run_can_start_from_a_saved_model(tmp_path):
    from dlrun.run import run_job

    base = ["dataset.max_rows=200", *TINY]
    run_job(compose_config([*base, "trainer.epochs=3", "trainer.save_model=true"]), tmp_path / "first")
    saved = tmp_path / "first" / "model.keras"
    run_job(compose_config([*base, "trainer.epochs=1", f"model.weights={saved}"]), tmp_path / "second")
    first = pd.read_csv(tmp_path / "first" / "history.csv")
    second = pd.read_csv(tmp_path / "second" / "history.csv")
    # Starting from trained weights, the first epoch is already better than the first run's last.
    assert second["loss"].iloc[0] < first["loss"].iloc[-1] < first["loss"].iloc[0]


# ---------------------------------------------------------------- image folders


def _image_folder(root: Path, *, classes=("circle", "square"), per_class: int = 6) -> Path:
    from PIL import Image, ImageDraw

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = Image.new("RGB", (20 + i, 16), (i * 20, 0, 0))
            draw = ImageDraw.Draw(img)
            (draw.ellipse if c == 0 else draw.rectangle)((3, 3, 12, 12), fill=(255, 255, 255))
            img.save(root / name / f"{i}.png")
    return root


def test_image_folder_loads_resized_flat_images_in_unit_range(tmp_path):
    from dlrun.config import DatasetConfig
    from dlrun.data import load_table

    root = _image_folder(tmp_path / "shapes")
    table = load_table(DatasetConfig(name="image_folder", path=str(root), image_size=8, scaling="none"))
    assert table.x.shape == (12, 8 * 8 * 3)
    assert table.image_shape == (8, 8, 3)
    assert table.class_names == ["circle", "square"] and table.task == "binary"
    assert np.bincount(table.y).tolist() == [6, 6]
    assert table.x.min() >= 0 and table.x.max() <= 1 and table.scaled


def test_unreadable_images_are_skipped_counted_and_named(tmp_path, caplog):
    from PIL import Image

    from dlrun.config import DatasetConfig
    from dlrun.data import load_table

    root = _image_folder(tmp_path / "shapes")
    (root / "square" / "bad.jpg").write_bytes(b"not a jpeg")
    (root / "square" / "cut.png").write_bytes((root / "square" / "0.png").read_bytes()[:60])  # truncated
    (root / "circle" / "notes.txt").write_text("not an image, and ignored by its suffix")
    limit = Image.MAX_IMAGE_PIXELS
    Image.new("L", (80, 80)).save(root / "circle" / "huge.png")
    try:
        Image.MAX_IMAGE_PIXELS = 1000  # the 6,400-pixel image trips the decompression-bomb guard
        with caplog.at_level("WARNING", logger="dlrun.data.image_folder"):
            table = load_table(DatasetConfig(name="image_folder", path=str(root), image_size=8))
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    assert np.bincount(table.y).tolist() == [6, 6]  # only the readable images
    assert "skipped 3 of 15 files" in caplog.text
    assert "square/bad.jpg: cannot be decoded" in caplog.text and "circle/huge.png: too many pixels" in caplog.text


def test_a_test_folder_becomes_the_test_split(tmp_path):
    from dlrun.config import DatasetConfig
    from dlrun.data import load_table
    from dlrun.data.split import holdout_indices

    train_root = _image_folder(tmp_path / "train", per_class=8)
    test_root = _image_folder(tmp_path / "test", per_class=3)
    table = load_table(DatasetConfig(name="image_folder", path=str(train_root), test_path=str(test_root),
                                     image_size=8))
    assert table.n_rows == 22 and table.test_rows.tolist() == list(range(16, 22))
    train, val, test = holdout_indices(table.y, task=table.task, test_size=0.2, val_size=0.25, seed=0,
                                       test=table.test_rows)
    assert test.tolist() == list(range(16, 22)) and len(train) + len(val) == 16


@pytest.mark.slow
def test_cnn_trains_on_an_image_folder(tmp_path):
    from dlrun.run import run_job

    root = _image_folder(tmp_path / "shapes", classes=("a", "b", "c"), per_class=10)
    cfg = compose_config(["dataset=image_folder", f"dataset.path={root}", "dataset.image_size=8",
                          "model=cnn", "trainer.epochs=2", *TINY])
    run_job(cfg, tmp_path / "run")
    m = _metrics(tmp_path / "run")
    assert m["status"] == "ok" and m["task"] == "multiclass" and m["sizes"]["test"] == 6


# ---------------------------------------------------------------- run folders


@pytest.mark.slow
def test_identical_runs_started_together_get_their_own_folders(tmp_path):
    # A shell loop with `&`: same config, same second. Second-resolution names used to
    # collide (the second run was refused after Hydra had overwritten the first's .hydra/).
    procs = [_start_cli(["trainer.epochs=1", "dataset.max_rows=100", *TINY], cwd=tmp_path) for _ in range(3)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr[-2000:]
    folders = sorted((tmp_path / "outputs" / "runs").iterdir())
    assert len(folders) == 3 and all((f / "metrics.json").is_file() for f in folders)


_HOLDER = """
import sys, time
from dlrun.lock import hold
hold(sys.argv[1])
print("held", flush=True)
time.sleep(120)
"""


def test_a_run_folder_held_by_a_live_process_is_refused_and_freed_when_it_is_killed(tmp_path):
    from dlrun.lock import run_folder_lock

    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"another dlrun process \(pid {holder.pid}\)"), \
                run_folder_lock(tmp_path):
            pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs; the kernel drops the lock
        holder.wait()
    assert (tmp_path / ".dlrun.lock").exists()  # left behind, and harmless
    with run_folder_lock(tmp_path):
        assert (tmp_path / ".dlrun.lock").read_text() == str(os.getpid())
        with pytest.raises(ConfigError, match="another dlrun process"), run_folder_lock(tmp_path):
            pass  # the same process cannot take a folder twice either
    assert not (tmp_path / ".dlrun.lock").exists()


@pytest.mark.slow
def test_two_runs_started_at_once_into_one_folder_one_runs_one_is_refused(tmp_path):
    args = ["trainer.epochs=30", "dataset.max_rows=100", "hydra.run.dir=shared", *TINY]
    procs = [_start_cli(args, cwd=tmp_path) for _ in range(2)]
    results = [(proc.wait(timeout=180), proc.stderr.read()) for proc in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2).strip().splitlines()
    assert len(refused) == 1 and "another dlrun process" in refused[0]
    assert (tmp_path / "shared" / "metrics.json").is_file()


# ---------------------------------------------------------------- interruption


def _add_callback(monkeypatch, callback) -> None:
    """Plug ``callback`` into every run's training, as a capability registered last."""
    from dlrun import capabilities

    class Adds(capabilities.Capability):
        def callbacks(self, ctx):
            return [callback]

    monkeypatch.setitem(capabilities._REGISTRY, "test_callback", lambda cfg: Adds())


@pytest.mark.slow
def test_an_interruption_before_the_first_epoch_still_writes_the_run_folder(tmp_path, monkeypatch):
    import keras

    from dlrun.run import run_job

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            raise KeyboardInterrupt

    _add_callback(monkeypatch, Interrupt())
    cfg = compose_config(["trainer.epochs=3", "dataset.max_rows=100", *TINY])
    with pytest.raises(KeyboardInterrupt):
        run_job(cfg, tmp_path / "run")
    m = _metrics(tmp_path / "run")
    assert m["status"] == "interrupted" and m["epochs_run"] == 0
    assert "interrupted" in (tmp_path / "run" / "summary.md").read_text()


@pytest.mark.slow
def test_resume_keeps_early_stopping_and_plateau_state(tmp_path, monkeypatch):
    """Patience counters, best values and best weights survive a resume: the resumed run
    stops, and lowers its learning rate, at the same epochs as an uninterrupted one."""
    import keras

    from dlrun.run import run_job

    args = ["reg=early_stopping", "reg.patience=8", "trainer.reduce_lr_on_plateau=true",
            "trainer.epochs=200", "trainer.checkpoint_every=1", "trainer.checkpoint_seconds=0", "optimizer.lr=0.01",
            "dataset.max_rows=200", *TINY]
    run_job(compose_config(args), tmp_path / "full")
    full = _metrics(tmp_path / "full")
    history = pd.read_csv(tmp_path / "full" / "history.csv")
    # Cut three epochs after the best one: both patience counters are running, and the
    # plateau callback lowers the learning rate (patience 5) and early stopping ends the
    # run (patience 8) only after the cut.
    cut = full["best_epoch"] + 3
    assert full["stopped_early"] and cut < full["epochs_run"] < 200
    lowered = history.loc[history["lr"] < history["lr"].iloc[0], "epoch"]
    assert len(lowered) and lowered.min() > cut + 1

    class InterruptAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == cut:
                raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        _add_callback(patch, InterruptAt())  # after the run's own callbacks
        with pytest.raises(KeyboardInterrupt):
            run_job(compose_config(args), tmp_path / "cut")
    assert _metrics(tmp_path / "cut")["epochs_run"] == cut
    run_job(compose_config([*args, "trainer.resume=true"]), tmp_path / "cut")
    resumed = _metrics(tmp_path / "cut")
    assert (resumed["epochs_run"], resumed["best_epoch"], resumed["stopped_early"]) == (
        full["epochs_run"], full["best_epoch"], True)
    for split in ("train", "val", "test"):
        assert resumed[split] == full[split]  # the best weights were restored at the end
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cut" / "history.csv").drop(columns="seconds"),
                                  history.drop(columns="seconds"))


def _start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    code = "import sys; from dlrun.cli import main; sys.argv[0] = 'dlrun'; sys.exit(main())"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CI": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigterm_then_resume_reaches_the_metrics_of_an_uninterrupted_run(tmp_path):
    # Dropout and Adam: the resumed run must restore the dropout RNG and the optimizer moments.
    args = ["trainer.epochs=25", "reg=dropout", "optimizer.batch_size=4", "dataset.max_rows=240",
            "trainer.checkpoint_seconds=0", *TINY]
    full, cut = tmp_path / "full", tmp_path / "cut"
    done = run_cli([*args, f"hydra.run.dir={full}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]

    proc = _start_cli([*args, f"hydra.run.dir={cut}"], cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not (cut / "checkpoint" / "state.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr
    stopped = _metrics(cut)
    assert stopped["status"] == "interrupted" and 1 <= stopped["epochs_run"] < 25
    assert len(pd.read_csv(cut / "history.csv")) == stopped["epochs_run"]

    resumed = run_cli([*args, f"hydra.run.dir={cut}", "trainer.resume=true"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _metrics(full), _metrics(cut)
    assert b["status"] == "ok" and b["epochs_run"] == 25
    for split in ("train", "val", "test"):
        assert a[split] == b[split]
    history_a = pd.read_csv(full / "history.csv").drop(columns="seconds")
    history_b = pd.read_csv(cut / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(history_a, history_b)


@pytest.mark.slow
def test_an_interrupted_sweep_still_reports_the_jobs_that_finished(tmp_path):
    sweep = tmp_path / "sweep"
    # Job 1 trains far longer than job 0, so that it is still training when the test, however
    # late the machine lets it look, sees its first checkpoint.
    proc = _start_cli(["-m", f"hydra.sweep.dir={sweep}", "dataset=digits", "dataset.max_rows=300",
                       "trainer.epochs=300,20000,301", "trainer.checkpoint_every=1", "trainer.checkpoint_seconds=0",
                       *TINY], cwd=tmp_path)
    # Job 0 finished and job 1 has checkpointed an epoch: stop the sweep there.
    deadline = time.monotonic() + 180
    while not (sweep / "1" / "checkpoint" / "state.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert f"the report of the jobs that finished is {sweep / 'study.md'}" in stderr
    board = pd.read_csv(sweep / "leaderboard.csv")
    assert sorted(board["status"]) == ["interrupted", "ok"]  # job 2 never started
    assert "2 jobs (1 interrupted, 1 ok)" in (sweep / "study.md").read_text()


# ---------------------------------------------------------------- divergence and failures


@pytest.mark.slow
def test_a_sweep_with_a_diverging_and_a_failing_job_finishes_and_marks_both(tmp_path, dlrun_cli):
    sweep = tmp_path / "sweep"
    # lr=1e6 with plain SGD on a regression explodes in the first epoch; lr=-1 makes its job raise.
    proc = dlrun_cli(["-m", "dataset=diabetes", "optimizer=sgd", "optimizer.lr=0.01,0.02,1e6,-1",
                      "trainer.epochs=3", *TINY, f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 1, proc.stderr[-2000:]  # some jobs failed
    board = pd.read_csv(sweep / "leaderboard.csv")
    status = dict(zip(board["optimizer.lr"].astype(float), board["status"], strict=True))
    assert status == {0.01: "ok", 0.02: "ok", 1e6: "diverged", -1.0: "failed"}

    dirs = {float(lr): Path(d) for lr, d in zip(board["optimizer.lr"], board["run_dir"], strict=True)}
    diverged = _metrics(dirs[1e6])
    assert diverged["status"] == "diverged" and diverged["diverged_epoch"] == 1
    assert diverged["epochs_run"] == 1  # stopped within the first of three epochs
    summary = (dirs[1e6] / "summary.md").read_text()
    assert "diverged" in summary and "learning rate" in summary and "exploded" in summary
    failed = _metrics(dirs[-1.0])
    assert failed["status"] == "failed" and "optimizer.lr must be positive" in failed["message"]
    assert (dirs[-1.0] / "error.txt").exists()
    for lr in (0.01, 0.02):
        assert _metrics(dirs[lr])["epochs_run"] == 3
