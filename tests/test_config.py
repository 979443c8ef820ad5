"""Schemas and composition: every group option composes; bad values fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from dlrun.config import Config, validate
from dlrun.errors import ConfigError
from dlrun.paths import config_dir, experiments_dir
from tests.conftest import compose_config

GROUPS = ["dataset", "model", "reg", "optimizer", "eval", "trainer"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUPS for o in _options(g)], ids=lambda v: str(v)
)
def test_every_group_option_composes_onto_the_schema(group, option):
    overrides = [f"{group}={option}"]
    if group == "dataset" and option == "csv":
        overrides += ["dataset.path=x.csv", "dataset.target=y"]
    if group == "dataset" and option == "image_folder":
        overrides += ["dataset.path=images"]
    cfg = compose_config(overrides)
    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, Config)
    if group not in ("trainer",):
        assert cfg[group].name in (option, cfg[group].name)
    validate(cfg)


def test_every_experiment_preset_composes():
    presets = sorted(p.stem for p in experiments_dir().glob("*.yaml"))
    assert {"capacity", "regularization", "optimizers"} <= set(presets)
    for name in presets:
        cfg = compose_config([f"experiment={name}"], return_hydra_config=True)
        validate(cfg)
        assert cfg.hydra.sweeper.params, f"experiment={name} sweeps nothing"


def test_experiment_group_is_served_from_the_experiments_folder():
    from hydra_plugins.dlrun_experiments.experiments_source import ExperimentsConfigSource

    source = ExperimentsConfigSource("dlrun", "dlrun-experiments://experiments")
    listed = source.list("experiment", None)
    assert listed == sorted(p.stem for p in Path(experiments_dir()).glob("*.yaml"))
    assert source.is_group("experiment") and not source.is_config("dataset/breast_cancer")


def test_default_config_is_the_breast_cancer_mlp():
    cfg = compose_config()
    assert (cfg.dataset.name, cfg.model.name, cfg.reg.name, cfg.optimizer.name, cfg.eval.name) == (
        "breast_cancer", "mlp", "none", "adam", "holdout")


def test_unknown_option_fails_at_composition():
    with pytest.raises(MissingConfigException):
        compose_config(["dataset=nope"])


def test_unknown_key_fails_at_composition():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_config(["model.widht=3"])


@pytest.mark.parametrize("override", ["optimizer.lr=abc", "trainer.epochs=ten", "model.batch_norm=maybe"])
def test_wrong_type_fails_at_composition(override):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_config([override])


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("trainer.epochs=-3", "trainer.epochs must be at least 1"),
        ("trainer.epochs=0", "trainer.epochs must be at least 1"),
        ("optimizer.batch_size=0", "optimizer.batch_size must be at least 1"),
        ("optimizer.lr=0", "optimizer.lr must be positive"),
        ("optimizer.lr=-0.1", "optimizer.lr must be positive"),
        ("reg.dropout=1.0", "reg.dropout must be in [0, 1)"),
        ("dataset.scaling=robust", "dataset.scaling='robust' is not one of"),
        ("trainer.device=tpu", "trainer.device='tpu' is not one of"),
        ("model.activation=nope", "model.activation='nope' is not one of"),
        ("eval.folds=1", "eval.folds must be at least 2"),
        ("dataset.test_size=1.5", "dataset.test_size must be in (0, 1)"),
    ],
)
def test_validate_names_the_key_and_the_fix(override, fragment):
    cfg = compose_config([override])
    with pytest.raises(ConfigError, match=None) as info:
        validate(cfg)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_every_key_of_the_shipped_configs_and_presets_is_known(cfg_factory):
    from pathlib import Path

    from dlrun.config import unknown_keys
    from dlrun.paths import experiments_dir

    for preset in [None, *sorted(p.stem for p in Path(experiments_dir()).glob("*.yaml"))]:
        cfg = cfg_factory([f"experiment={preset}"] if preset else [])
        assert unknown_keys(cfg) == [], preset


@pytest.mark.parametrize(("override", "unknown", "guess"), [
    ("+trainer.epoch=5", "trainer.epoch", "trainer.epochs"),
    ("+optimizer.learning_rate=0.1", "optimizer.learning_rate", None),
    ("+reg.dropuot=0.2", "reg.dropuot", "reg.dropout"),
    ("+anything=1", "anything", None),
    ("+lr=0.1", "lr", "optimizer.lr"),
])
def test_added_keys_the_schema_does_not_declare_are_refused_with_a_suggestion(cfg_factory, override, unknown, guess):
    from dlrun.config import closest_key, unknown_keys, validate

    cfg = cfg_factory([override])
    assert unknown_keys(cfg) == [unknown]
    assert closest_key(unknown) == guess
    with pytest.raises(ConfigError, match=f"unknown key {unknown}"):
        validate(cfg)
