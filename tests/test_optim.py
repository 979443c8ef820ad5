"""Each optimizer name builds the right Keras class; schedules decay as documented."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from dlrun.config import OptimizerConfig
from dlrun.errors import ConfigError
from dlrun.optim import OPTIMIZERS, build_optimizer, build_schedule
from tests.conftest import compose_config

keras = pytest.importorskip("keras")

STEPS = 10  # steps per epoch in these tests

EXPECTED = {
    "sgd": (keras.optimizers.SGD, {"momentum": 0.0, "nesterov": False}),
    "momentum": (keras.optimizers.SGD, {"momentum": 0.9, "nesterov": False}),
    "nesterov": (keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True}),
    "rmsprop": (keras.optimizers.RMSprop, {"rho": 0.9, "momentum": 0.0}),
    "adam": (keras.optimizers.Adam, {"beta_1": 0.9, "beta_2": 0.999}),
    "adamw": (keras.optimizers.AdamW, {"beta_1": 0.9, "weight_decay": 4e-3}),
    "nadam": (keras.optimizers.Nadam, {"beta_1": 0.9, "beta_2": 0.999}),
}
DEFAULT_LR = {"sgd": 1e-2, "momentum": 1e-2, "nesterov": 1e-2, "rmsprop": 1e-3,
              "adam": 1e-3, "adamw": 1e-3, "nadam": 1e-3}


def _cfg(name: str, *overrides: str) -> OptimizerConfig:
    node = compose_config([f"optimizer={name}", *overrides]).optimizer
    return OmegaConf.to_object(node)


def _lr_at(lr, step: int) -> float:
    return float(lr) if isinstance(lr, float) else float(keras.ops.convert_to_numpy(lr(step)))


def test_every_name_has_a_test():
    assert set(EXPECTED) == set(OPTIMIZERS.names())


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_name_builds_its_keras_class_with_its_defaults(name):
    cls, params = EXPECTED[name]
    opt = build_optimizer(_cfg(name), steps_per_epoch=STEPS, epochs=5)
    assert type(opt) is cls
    config = opt.get_config()
    for key, value in params.items():
        assert config[key] == pytest.approx(value), key
    assert config["learning_rate"] == pytest.approx(DEFAULT_LR[name])
    assert config["clipnorm"] is None


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_lr_batch_size_and_clipnorm_are_sweepable(name):
    cfg = _cfg(name, "optimizer.lr=0.05", "optimizer.clipnorm=1.5", "optimizer.batch_size=64")
    assert cfg.batch_size == 64
    config = build_optimizer(cfg, steps_per_epoch=STEPS, epochs=5).get_config()
    assert config["learning_rate"] == pytest.approx(0.05)
    assert config["clipnorm"] == pytest.approx(1.5)


def test_weight_decay_reaches_non_adamw_optimizers():
    opt = build_optimizer(_cfg("adam", "optimizer.weight_decay=0.01"), steps_per_epoch=STEPS, epochs=5)
    assert opt.get_config()["weight_decay"] == pytest.approx(0.01)


def test_constant_schedule_is_a_float():
    assert build_schedule(_cfg("adam"), steps_per_epoch=STEPS, epochs=5) == pytest.approx(1e-3)


def test_exponential_halves_smoothly_every_decay_epochs():
    cfg = _cfg("sgd", "optimizer.schedule=exponential", "optimizer.decay_epochs=2", "optimizer.decay_rate=0.5")
    lr = build_schedule(cfg, steps_per_epoch=STEPS, epochs=10)
    assert _lr_at(lr, 0) == pytest.approx(1e-2)
    assert _lr_at(lr, 2 * STEPS) == pytest.approx(5e-3)
    assert _lr_at(lr, STEPS) == pytest.approx(1e-2 * math.sqrt(0.5), rel=1e-5)  # smooth in between


def test_step_decays_in_stairs():
    cfg = _cfg("sgd", "optimizer.schedule=step", "optimizer.decay_epochs=2", "optimizer.decay_rate=0.1")
    lr = build_schedule(cfg, steps_per_epoch=STEPS, epochs=10)
    assert _lr_at(lr, 2 * STEPS - 1) == pytest.approx(1e-2)
    assert _lr_at(lr, 2 * STEPS) == pytest.approx(1e-3)
    assert _lr_at(lr, 4 * STEPS) == pytest.approx(1e-4)


def test_inverse_time_divides_by_one_plus_rate_times_periods():
    cfg = _cfg("sgd", "optimizer.schedule=inverse_time", "optimizer.decay_epochs=1", "optimizer.decay_rate=1.0")
    lr = build_schedule(cfg, steps_per_epoch=STEPS, epochs=10)
    assert _lr_at(lr, 3 * STEPS) == pytest.approx(1e-2 / 4)


def test_cosine_anneals_to_the_floor_over_the_whole_training():
    cfg = _cfg("adam", "optimizer.schedule=cosine", "optimizer.min_lr_fraction=0.1")
    lr = build_schedule(cfg, steps_per_epoch=STEPS, epochs=4)
    assert _lr_at(lr, 0) == pytest.approx(1e-3)
    assert _lr_at(lr, 2 * STEPS) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5), rel=1e-5)
    assert _lr_at(lr, 4 * STEPS) == pytest.approx(1e-4, rel=1e-5)


def test_decay_period_is_in_epochs_not_steps():
    cfg = _cfg("sgd", "optimizer.schedule=step", "optimizer.decay_epochs=1", "optimizer.decay_rate=0.5")
    small_batches = build_schedule(cfg, steps_per_epoch=20, epochs=5)
    large_batches = build_schedule(cfg, steps_per_epoch=5, epochs=5)
    assert _lr_at(small_batches, 20) == pytest.approx(_lr_at(large_batches, 5)) == pytest.approx(5e-3)


def test_unknown_names_fail_with_the_options():
    cfg = _cfg("adam")
    cfg.name = "adagrad"
    with pytest.raises(ConfigError, match=r"optimizer='adagrad' has no builder; make sure it is "
                       r"registered in dlrun.optim \(known: sgd, momentum"):
        build_optimizer(cfg, steps_per_epoch=STEPS, epochs=5)
    cfg = _cfg("adam")
    cfg.schedule = "warmup"
    with pytest.raises(ConfigError, match="cosine"):
        build_schedule(cfg, steps_per_epoch=STEPS, epochs=5)
