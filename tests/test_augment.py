"""Augmentation: active on training batches only, part of the model, reported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlrun.augment import Augmentation, augmented
from dlrun.errors import ConfigError

STRONG = Augmentation(rotation=0.1, translation=0.2, zoom=0.2, contrast=0.3)


def _identity(flat: int):
    import keras

    inputs = keras.Input(shape=(flat,))
    return keras.Model(inputs, keras.layers.Identity()(inputs), name="identity")


def test_augmentation_changes_images_in_training_mode_only():
    import keras

    rng = np.random.default_rng(0)
    x = rng.random((8, 12 * 12)).astype(np.float32)
    model = augmented(_identity(144), STRONG, image_shape=(12, 12, 1), seed=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x, training=False)), x)
    trained = keras.ops.convert_to_numpy(model(x, training=True))
    assert trained.shape == x.shape and not np.allclose(trained, x)


def test_an_empty_augmentation_is_the_identity_even_in_training():
    import keras

    x = np.random.default_rng(1).random((4, 16)).astype(np.float32)
    model = augmented(_identity(16), Augmentation(), image_shape=(4, 4, 1), seed=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x, training=True)), x)


@pytest.mark.slow
def test_augment_on_images_trains_and_shows_samples(dlrun_cli, tmp_path):
    done = dlrun_cli(["dataset=digits", "model=cnn", "augment=basic", "trainer.epochs=2", "trainer.progress=none",
                      "hydra.run.dir=run"])
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["augment"]["preset"] == "basic" and metrics["augment"]["rotation"] > 0
    assert (tmp_path / "run" / "augment_samples.png").stat().st_size > 0
    assert "[augmented samples](augment_samples.png)" in (tmp_path / "run" / "summary.md").read_text()


@pytest.mark.slow
def test_augment_on_a_table_is_one_line(dlrun_cli):
    done = dlrun_cli(["augment=basic", "trainer.epochs=1", "trainer.progress=none"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dlrun: error: augment=basic needs image data (a dataset with an image shape, such as mnist_5k, "
        "digits or image_folder); use augment=none"]


def test_the_augment_capability_refuses_data_without_an_image_shape():
    from dlrun.augment import Augment

    with pytest.raises(ConfigError, match="needs image data"):
        Augment("basic", STRONG, seed=0).build(object(), ctx=None)
