"""Finished work is never lost (issue 19): interrupts outside epochs, during scoring and the
report; checkpoints that cost the same at every save; one-line answers for resource faults."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pandas as pd
import pytest

from tests.conftest import compose_config

QUIET = ["trainer.progress=none", "diagnosis.reference=none"]


@pytest.fixture
def sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt, as ``dlrun.cli.main`` sets it up."""

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raise_interrupt)
    yield
    signal.signal(signal.SIGTERM, old)


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_an_interrupt_between_folds_keeps_the_folds_that_finished(tmp_path, monkeypatch):
    from dlrun import stages
    from dlrun.run import run_job

    real, calls = stages.prepare, []

    def prepare(splits, capabilities, ctx):
        calls.append(ctx.fold)
        if ctx.fold == 2:
            raise KeyboardInterrupt  # outside any epoch: between folds 2 and 3
        return real(splits, capabilities, ctx)

    monkeypatch.setattr(stages, "prepare", prepare)
    cfg = compose_config(["eval=kfold", "eval.folds=4", "trainer.epochs=2", *QUIET])
    with pytest.raises(KeyboardInterrupt):
        run_job(cfg, tmp_path / "run")
    m = _metrics(tmp_path / "run")
    assert m["status"] == "interrupted" and m["message"] == "stopped by the user after 2 of 4 folds"
    assert len(m["folds"]) == 2 and m["test"]["accuracy"] is not None
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 4  # 2 folds x 2 epochs


@pytest.mark.slow
def test_signals_while_a_fold_is_scored_and_the_report_written_wait_for_both(tmp_path, monkeypatch,
                                                                              sigterm_interrupts):
    from dlrun import stages
    from dlrun.report import summary
    from dlrun.run import run_job

    real_predict, real_summary = stages.predict_parts, summary.write_summary

    def predict_parts(model, splits):
        os.kill(os.getpid(), signal.SIGTERM)  # the fold has trained; it is being scored
        return real_predict(model, splits)

    def write_summary(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal, in the middle of the report
        return real_summary(*args, **kwargs)

    monkeypatch.setattr(stages, "predict_parts", predict_parts)
    monkeypatch.setattr(summary, "write_summary", write_summary)
    cfg = compose_config(["eval=kfold", "eval.folds=3", "trainer.epochs=2", *QUIET])
    with pytest.raises(KeyboardInterrupt):
        run_job(cfg, tmp_path / "run")
    m = _metrics(tmp_path / "run")
    # The scored fold is kept, no other starts, and the report was written to the end.
    assert m["status"] == "interrupted" and m["test"]["accuracy"] is not None
    assert m["message"] == "stopped by the user after 1 of 3 folds"
    assert (tmp_path / "run" / "summary.md").read_text().strip()


@pytest.mark.slow
def test_an_interrupt_before_any_fold_finished_still_leaves_a_record(tmp_path, monkeypatch):
    from dlrun import stages
    from dlrun.run import run_job

    def prepare(splits, capabilities, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "prepare", prepare)
    with pytest.raises(KeyboardInterrupt):
        run_job(compose_config(["trainer.epochs=2", *QUIET]), tmp_path / "run")
    m = _metrics(tmp_path / "run")
    assert m["status"] == "interrupted" and "before the first of 1 fold(s) finished" in m["message"]


def test_a_checkpoint_costs_the_same_at_every_save(tmp_path):
    import keras

    from dlrun import checkpoint

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    path = checkpoint.checkpoint_path(tmp_path)
    history, written, sizes = [], None, []
    for epoch in range(1, 301):
        history.append({"epoch": epoch, "loss": 1.0 / epoch, "val_loss": np.nan})
        if epoch % 50 == 0:
            checkpoint.save(path, model, epoch=epoch, fold=0, history=history, fingerprint="f",
                            rows_written=written)
            written = len(history)
            sizes.append(path.stat().st_size)
    assert max(sizes) - min(sizes) <= 16  # the state file does not grow with the history (digits aside)
    state = checkpoint.read(path)
    assert state.epoch == 300 and len(state.history) == 300 and state.history[-1]["loss"] == 1 / 300
    # A crash after the rows were appended but before the state was replaced: the state's count wins.
    checkpoint.write_history(path, [{"epoch": 301, "loss": 0.0}], append=True)
    assert len(checkpoint.read(path).history) == 300


def test_plain_progress_speaks_at_least_every_few_seconds_on_a_long_run(monkeypatch, caplog):
    from dlrun import progress
    from dlrun.task import task_spec

    spec = task_spec("binary", 2, np.array([0, 1, 0, 1]))
    clock = iter([0.0, 1.0, 2.0, 13.0, 14.0, 30.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    with caplog.at_level("INFO", logger="dlrun.progress"):
        with progress.epoch_progress("plain", 10**9, spec, label="run") as hook:
            for epoch in range(1, 6):
                hook(epoch, {"loss": 0.5})
    assert [r.getMessage().split()[2] for r in caplog.records] == ["1/1000000000", "3/1000000000",
                                                                    "5/1000000000"]


def test_running_out_of_memory_is_one_line_naming_what_to_lower():
    from dlrun.cli import _out_of_memory, one_line

    class ResourceExhaustedError(Exception):
        pass

    err = _out_of_memory(ResourceExhaustedError(
        "{{function_node __wrapped__X}} OOM when allocating tensor with shape[100000,100000] and type float"))
    assert one_line(err) == ("out of memory (OOM when allocating tensor with shape[100000,100000]): the model or "
                             "a batch is too large for this machine; lower model.width, model.depth or "
                             "optimizer.batch_size")
    assert _out_of_memory(ValueError("x")) is None


@pytest.mark.slow
def test_resuming_a_finished_run_leaves_it_as_it_is_and_a_short_resume_is_refused(tmp_path):
    from dlrun.errors import ConfigError
    from dlrun.run import run_job

    args = ["trainer.epochs=6", "trainer.checkpoint_every=2", "trainer.checkpoint_seconds=0", *QUIET]
    run_job(compose_config(args), tmp_path / "run")
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    run_job(compose_config([*args, "trainer.resume=true"]), tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before
    # An unfinished run checkpointed at epoch 6 cannot be resumed to end at epoch 4.
    record = _metrics(tmp_path / "run")
    record["status"] = "interrupted"
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"is at epoch 6, past trainer.epochs=4; resume with trainer.epochs=6"):
        run_job(compose_config(["trainer.epochs=4", "trainer.checkpoint_every=2", "trainer.checkpoint_seconds=0", "trainer.resume=true",
                                *QUIET]), tmp_path / "run")


def test_a_refused_resume_leaves_the_runs_hydra_record_and_an_accepted_one_rewrites_it(dlrun_cli, tmp_path):
    import yaml

    base = ["hydra.run.dir=run", "trainer.checkpoint_every=1", "trainer.checkpoint_seconds=0", *QUIET]
    assert dlrun_cli([*base, "trainer.epochs=3"]).returncode == 0
    record = tmp_path / "run" / ".hydra"
    before = {name: (record / name).read_bytes() for name in ("config.yaml", "hydra.yaml", "overrides.yaml")}

    refused = dlrun_cli([*base, "trainer.epochs=5", "trainer.resume=true", "optimizer.lr=0.5"])
    assert refused.returncode == 2, refused.stderr
    assert "was written with another config" in refused.stderr
    assert {name: (record / name).read_bytes() for name in before} == before

    accepted = dlrun_cli([*base, "trainer.epochs=5", "trainer.resume=true"])
    assert accepted.returncode == 0, accepted.stderr
    assert "trainer.resume=true" in yaml.safe_load((record / "overrides.yaml").read_text())
    assert yaml.safe_load((record / "config.yaml").read_text())["trainer"]["epochs"] == 5
    assert yaml.safe_load((record / "hydra.yaml").read_text())["hydra"]["output_subdir"] == ".hydra"
    assert _metrics(tmp_path / "run")["epochs_run"] == 5
