"""Full MNIST and Fashion-MNIST: a local file, Keras's cache, and one line when offline."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from dlrun.config import DatasetConfig
from dlrun.data import load_table
from dlrun.errors import DataError


def _npz(path, n_train=50, n_test=20):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), y_train=np.arange(n_train) % 10,
             x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), y_test=np.arange(n_test) % 10)
    return path


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_a_local_file_loads_with_the_official_test_split(tmp_path, name):
    table = load_table(DatasetConfig(name=name, path=str(_npz(tmp_path / "d.npz")), scaling="none"))
    assert table.x.shape == (70, 784) and table.image_shape == (28, 28, 1)
    assert table.test_rows.tolist() == list(range(50, 70))
    assert 0 <= table.x.min() and table.x.max() <= 1 and len(table.class_names) == 10


def test_the_keras_cache_is_read_without_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets" / "fashion-mnist").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 30), ("t10k", 10)):
        with gzip.open(tmp_path / "datasets" / "fashion-mnist" / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes(8) + bytes(np.arange(n, dtype=np.uint8) % 10))
        with gzip.open(tmp_path / "datasets" / "fashion-mnist" / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(bytes(16) + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
    import keras

    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("downloaded"))
    table = load_table(DatasetConfig(name="fashion_mnist", scaling="none"))
    assert table.n_rows == 40 and table.class_names[0] == "T-shirt/top"


def test_offline_without_the_file_is_one_line_naming_it(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno 101] Network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError) as err:
        load_table(DatasetConfig(name="mnist", scaling="none"))
    message = str(err.value)
    assert "\n" not in message and "could not be downloaded" in message
    assert f"into {tmp_path / 'datasets'}/" in message and "tf-keras-datasets/mnist.npz" in message


def test_a_file_of_another_shape_is_refused(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros(3))
    with pytest.raises(DataError, match="is not an .npz with x_train"):
        load_table(DatasetConfig(name="mnist", path=str(tmp_path / "x.npz"), scaling="none"))
