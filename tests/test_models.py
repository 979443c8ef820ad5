"""Model builders from the registry, and weights loaded layer by layer from a saved model."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dlrun.config import ModelConfig, RegConfig
from dlrun.errors import ConfigError
from dlrun.models import build_model, load_weights
from dlrun.task import task_spec

keras = pytest.importorskip("keras")

NO_REG = RegConfig(name="none")


def _mlp(classes: int, *, width: int = 8, features: int = 6, seed: int = 0, name: str = "mlp"):
    keras.utils.set_random_seed(seed)
    spec = task_spec("multiclass", classes, np.arange(classes))
    return build_model(ModelConfig(name=name, width=width, depth=2), NO_REG, input_shape=(features,),
                       spec=spec)


def _weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def three_class(tmp_path):
    """A 3-class MLP saved as a whole .keras model and as a .weights.h5 file."""
    model = _mlp(3, seed=1)
    model.save(tmp_path / "three.keras")
    model.save_weights(tmp_path / "three.weights.h5")
    return model


def test_a_saved_network_seeds_one_with_another_head(three_class, tmp_path, caplog):
    target = _mlp(5, seed=2)
    head = target.get_layer("output").get_weights()
    with caplog.at_level(logging.INFO, logger="dlrun.models"):
        result = load_weights(target, str(tmp_path / "three.keras"))

    assert result.loaded == ["dense_0", "dense_1"]
    assert result.skipped == {"output": "shapes (8, 5) vs (8, 3) in the source"}
    assert result.to_dict() == {"source": str(tmp_path / "three.keras"), "loaded": ["dense_0", "dense_1"],
                                "skipped": {"output": "shapes (8, 5) vs (8, 3) in the source"}}
    for name in result.loaded:
        _assert_same(target.get_layer(name).get_weights(), three_class.get_layer(name).get_weights())
    _assert_same(target.get_layer("output").get_weights(), head)
    assert "layer output keeps its initial weights (shapes (8, 5) vs (8, 3) in the source)" in caplog.text


@pytest.mark.parametrize("file", ["three.keras", "three.weights.h5"])
def test_a_matching_model_gets_every_layer(three_class, tmp_path, file):
    target = _mlp(3, seed=2)
    result = load_weights(target, str(tmp_path / file))
    assert result.loaded == ["dense_0", "dense_1", "output"] and result.skipped == {}
    for name, weights in _weights(three_class).items():
        _assert_same(target.get_layer(name).get_weights(), weights)


def test_a_model_with_nothing_in_common_is_one_clear_error(three_class, tmp_path):
    with pytest.raises(ConfigError, match=r"^model.weights='.*three.keras' does not fit model=mlp_2x4: no layer "
                                          r"matches by name and weight shapes \(dense_0: shapes \(7, 4\) vs "
                                          r"\(6, 8\) in the source; [^\n]*\)[^\n]*$"):
        load_weights(_mlp(5, width=4, features=7), str(tmp_path / "three.keras"))


def test_a_weights_file_must_fit_the_whole_model(three_class, tmp_path):
    with pytest.raises(ConfigError, match="three.weights.h5' does not fit model=mlp_2x8"):
        load_weights(_mlp(5, seed=2), str(tmp_path / "three.weights.h5"))


@pytest.mark.parametrize("name", ["logreg", "mlp", "cnn"])
def test_two_builds_of_one_config_share_every_layer_name(name):
    spec = task_spec("multiclass", 3, np.arange(3))
    model = ModelConfig(name=name, width=8, depth=2, filters=4, blocks=2)
    names = [[layer.name for layer in build_model(model, NO_REG, input_shape=(64,), spec=spec,
                                                  image_shape=(8, 8, 1)).layers] for _ in range(2)]
    assert names[0] == names[1]
    assert "output" in names[0]


def test_logreg_is_the_output_layer_alone_whatever_the_depth():
    model = _mlp(3, name="logreg")
    assert [layer.name for layer in model.layers if layer.weights] == ["output"]


def test_builders_come_from_the_registry():
    spec = task_spec("binary", 2, np.arange(2))
    with pytest.raises(ConfigError, match=r"model='rnn' has no builder; make sure it is registered in "
                                          r"dlrun.models \(known: logreg, mlp, cnn, transfer\)"):
        build_model(ModelConfig(name="rnn"), NO_REG, input_shape=(4,), spec=spec)
    with pytest.raises(ConfigError, match="model=cnn needs image data"):
        build_model(ModelConfig(name="cnn"), NO_REG, input_shape=(4,), spec=spec)
