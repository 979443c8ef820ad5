"""trainer.parallel_seeds: seeds of one configuration trained side by side, in one stacked
network, give each seed what it gets alone (bit for bit) and a complete run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from hydra_plugins.dlrun_launchers.resilient_joblib import seed_groups

# --- grouping ---------------------------------------------------------------------------


def test_jobs_that_differ_only_in_seed_are_grouped_in_order():
    jobs = [["reg=l1", "seed=0"], ["reg=l1", "seed=1"], ["reg=l2", "seed=0"], ["seed=2", "reg=l1"],
            ["reg=l2", "seed=1"]]
    assert seed_groups(jobs, parallel_seeds=True) == [[0, 1, 3], [2, 4]]
    assert seed_groups(jobs, parallel_seeds=False) == [[0], [1], [2], [3], [4]]


def test_a_jobs_own_parallel_seeds_override_wins():
    jobs = [["trainer.parallel_seeds=false", "seed=0"], ["trainer.parallel_seeds=false", "seed=1"],
            ["trainer.parallel_seeds=true", "seed=0"], ["trainer.parallel_seeds=true", "seed=1"]]
    assert seed_groups(jobs, parallel_seeds=False) == [[0], [1], [2, 3]]


@pytest.mark.parametrize(("override", "reason"), [
    ("eval=kfold", "folds"), ("trainer.resume=true", "resume"), ("trainer.loop=fit", "loop=fit"),
    ("trainer.reduce_lr_on_plateau=true", "learning rate"), ("optimizer.clipnorm=1.0", "clipnorm"),
])
def test_what_cannot_be_stacked_is_named(cfg_factory, override, reason):
    from dlrun.seed_group import config_obstacle

    assert config_obstacle(OmegaConf.to_object(cfg_factory([]))) is None
    assert reason in config_obstacle(OmegaConf.to_object(cfg_factory([override])))


def test_only_dense_chains_stack():
    from dlrun.models.mlp import build_mlp
    from dlrun.task import task_spec
    from dlrun.train import stacking_obstacle

    spec = task_spec("binary", 2, np.array([0, 1]))
    assert stacking_obstacle(build_mlp((4,), spec, l2=0.1, dropout=0.2)) is None
    assert "BatchNormalization" in stacking_obstacle(build_mlp((4,), spec, batch_norm=True))


# --- training ---------------------------------------------------------------------------


def _splits(seed: int, *, scale: float = 1.0):
    from dlrun.data.table import Part, Splits

    rng = np.random.default_rng(seed)

    def part(n):
        x = rng.normal(size=(n, 5)).astype(np.float32)
        return Part(x * scale, (x @ np.arange(5) + rng.normal(size=n)).astype(np.float64) / 5)

    return Splits(part(60), part(30), part(30), "regression", [], [f"x{i}" for i in range(5)])


def test_a_diverging_seed_stops_alone_and_the_others_train_as_alone():
    import keras

    from dlrun.models.mlp import build_mlp
    from dlrun.task import task_spec
    from dlrun.train import train, train_together

    spec = task_spec("regression", 0, np.zeros(2))
    splits = [_splits(0), _splits(1, scale=1e30), _splits(2)]  # seed 1's inputs overflow

    def model(seed):
        keras.utils.set_random_seed(seed)
        return build_mlp((5,), spec, width=8, depth=2, l1=1e-3, l2=1e-3, dropout=0.1)

    fits = train_together([model(s) for s in range(3)], splits, spec,  # L1 and L2 penalties, dropout
                          optimizers=[keras.optimizers.Adam(0.01) for _ in range(3)],
                          stacked_optimizer=keras.optimizers.Adam(0.01), epochs=6, batch_size=16,
                          callbacks=[[], [], []], seeds=[0, 1, 2])
    assert [f.status for f in fits] == ["ok", "diverged", "ok"]
    assert fits[1].epochs_run == 1 and "non-finite" in fits[1].message
    for s in (0, 2):
        alone = train(model(s), splits[s], spec, optimizer=keras.optimizers.Adam(0.01), epochs=6, batch_size=16,
                      callbacks=[], seed=s)
        assert fits[s].epochs_run == alone.epochs_run == 6
        for together, solo in zip(fits[s].history, alone.history, strict=True):
            for key in ("loss", "mae", "val_loss", "val_mae", "lr"):
                assert together[key] == solo[key], (s, key)  # bit for bit: each seed's ops are its own


# --- a sweep ----------------------------------------------------------------------------


def _numbers(record: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool) and "seconds" not in key:
            out[prefix + key] = value
    return out


def _files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and p.name != ".dlrun.lock"}


def _hydra_record(run: Path) -> list:
    """``.hydra/``'s three files, the side's own entries (job number, folder, the
    parallel_seeds override) set aside."""
    files = [OmegaConf.load(run / ".hydra" / name) for name in ("config.yaml", "overrides.yaml", "hydra.yaml")]
    config, overrides, hydra = (OmegaConf.to_container(f) for f in files)
    config["trainer"].pop("parallel_seeds")
    job = hydra["hydra"]["job"]
    for key in ("num", "id", "override_dirname"):
        job.pop(key)
    hydra["hydra"]["runtime"].pop("output_dir")
    hydra["hydra"]["overrides"]["task"] = [o for o in hydra["hydra"]["overrides"]["task"] if "parallel_seeds" not in o]
    return [config, [o for o in overrides if "parallel_seeds" not in o], hydra]


@pytest.mark.slow
def test_a_three_seed_group_matches_its_seeds_alone(dlrun_cli, tmp_path):
    """One sweep: seeds 0-2 alone (parallel_seeds=false) and as one group (true)."""
    result = dlrun_cli([
        "-m", "hydra/launcher=joblib", "dataset=breast_cancer", "reg=combined", "reg.l1=1e-4", "reg.patience=3",
        "model.width=16", "trainer.epochs=12", "trainer.progress=none", "trainer.checkpoint_every=0",
        "trainer.parallel_seeds=false,true", "seed=0,1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("train together") == 1
    sweep = tmp_path / "sweep"
    for seed in range(3):
        alone, together = sweep / str(seed), sweep / str(seed + 3)
        a = json.loads((alone / "metrics.json").read_text())
        b = json.loads((together / "metrics.json").read_text())
        assert b["status"] == a["status"] == "ok"
        for key in ("epochs_run", "best_epoch", "stopped_early", "seed"):
            assert b[key] == a[key], key
        numbers_a, numbers_b = _numbers(a), _numbers(b)
        assert numbers_b.keys() == numbers_a.keys()
        for key, value in numbers_a.items():  # bit for bit: each seed's ops are its lone run's
            assert numbers_b[key] == value or math.isnan(value) and math.isnan(numbers_b[key]), (seed, key)
        assert _files(together) == _files(alone)
        assert _hydra_record(together) == _hydra_record(alone)
        ha, hb = pd.read_csv(alone / "history.csv"), pd.read_csv(together / "history.csv")
        assert list(hb.columns) == list(ha.columns) and len(hb) == len(ha)
        assert hb.drop(columns="seconds").equals(ha.drop(columns="seconds"))
    assert len(pd.read_csv(sweep / "leaderboard.csv")) == 6


def test_each_seed_checkpoints_its_own_weights_and_optimizer_state(tmp_path):
    import keras

    from dlrun import checkpoint as ckpt
    from dlrun.models.mlp import build_mlp
    from dlrun.task import task_spec
    from dlrun.train import train_together

    spec = task_spec("regression", 0, np.zeros(2))
    splits = [_splits(0), _splits(1)]

    def model(seed):
        keras.utils.set_random_seed(seed)
        return build_mlp((5,), spec, width=8, depth=1)

    models, stacked = [model(0), model(1)], keras.optimizers.Adam(0.01)
    paths = [tmp_path / f"s{s}" / "state.npz" for s in range(2)]
    histories: list[list[dict]] = [[], []]
    callbacks = [[ckpt.EpochCheckpoint(p, every=1, history=h)] for p, h in zip(paths, histories, strict=True)]
    hooks = [lambda epoch, row, h=h: h.append(row) for h in histories]
    train_together(models, splits, spec, optimizers=[keras.optimizers.Adam(0.01) for _ in range(2)],
                   stacked_optimizer=stacked, epochs=3, batch_size=16, callbacks=callbacks, seeds=[0, 1],
                   on_epoch=hooks)
    for s in range(2):
        fresh, optimizer = model(s), keras.optimizers.Adam(0.01)
        assert ckpt.restore(paths[s], fresh, optimizer).epoch == 3
        for restored, trained in zip(fresh.variables, models[s].variables, strict=True):
            assert np.array_equal(restored.numpy(), trained.numpy())
        assert int(optimizer.iterations.numpy()) == 3 * 4  # 60 rows in batches of 16
        slots = [v for v in stacked.variables if len(v.shape) and v.shape[0] == 2]
        own = [v for v in optimizer.variables if len(v.shape)]
        assert len(slots) == len(own) > 0
        for big, mine in zip(slots, own, strict=True):
            assert np.array_equal(big.numpy()[s], mine.numpy())


@pytest.mark.slow
def test_what_cannot_stack_runs_one_job_per_seed_and_says_why(dlrun_cli, tmp_path):
    result = dlrun_cli([
        "-m", "hydra/launcher=joblib", "trainer.parallel_seeds=true", "seed=0,1", "eval=kfold", "eval.folds=2",
        "model.width=8", "trainer.epochs=1", "trainer.progress=none", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ])
    assert result.returncode == 0, result.stderr[-2000:]
    assert [line for line in result.stderr.splitlines() if "one by one" in line or "together" in line] == [
        "jobs #0, #1 run one by one: eval=kfold trains several folds"]
    for job in ("0", "1"):
        record = json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())
        assert record["status"] == "ok" and len(record["folds"]) == 2


def test_a_seed_ends_with_its_own_optimizer_state():
    import keras

    from dlrun.models.mlp import build_mlp
    from dlrun.task import task_spec
    from dlrun.train import train, train_together

    spec = task_spec("regression", 0, np.zeros(2))
    splits = [_splits(0), _splits(1)]

    def model(seed):
        keras.utils.set_random_seed(seed)
        return build_mlp((5,), spec, width=8, depth=1)

    models = [model(0), model(1)]
    train_together(models, splits, spec, optimizers=[keras.optimizers.Adam(0.01) for _ in range(2)],
                   stacked_optimizer=keras.optimizers.Adam(0.01), epochs=3, batch_size=16, callbacks=[[], []],
                   seeds=[0, 1])
    alone = model(1)
    train(alone, splits[1], spec, optimizer=keras.optimizers.Adam(0.01), epochs=3, batch_size=16, callbacks=[], seed=1)
    for mine, lone in zip(models[1].optimizer.variables, alone.optimizer.variables, strict=True):
        assert np.array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(lone))
