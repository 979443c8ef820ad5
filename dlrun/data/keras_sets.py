"""Full MNIST and Fashion-MNIST, as Keras distributes them (60,000 training and 10,000 test
images of 28x28 pixels, 10 classes).

The files are read from Keras's cache (``~/.keras/datasets``, or ``$KERAS_HOME/datasets``)
or from ``dataset.path`` (an ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``,
as ``mnist.npz`` is); when neither has them, Keras's own downloader fetches them into the
cache. Offline, that fails in one line that names the files and where to put them. The
official test images form the test split.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrun.config import DatasetConfig
from dlrun.data.table import Table
from dlrun.errors import DataError

log = logging.getLogger(__name__)

_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_PIXEL_MAX = 255.0
_DOWNLOAD_TIMEOUT = 30  # seconds without an answer before a download counts as offline


@dataclass(frozen=True)
class KerasSet:
    name: str
    files: tuple[str, ...]  # under <cache>/<subdir>/
    subdir: str
    class_names: tuple[str, ...]


MNIST = KerasSet("mnist", ("mnist.npz",), "datasets", tuple(str(d) for d in range(10)))
FASHION_MNIST = KerasSet(
    "fashion_mnist",
    ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
     "t10k-images-idx3-ubyte.gz"),
    "datasets/fashion-mnist",
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)


def _keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()


def cache_dir(spec: KerasSet) -> Path:
    """Where Keras keeps the set's files."""
    return _keras_home() / spec.subdir


def _fetch(spec: KerasSet) -> list[Path]:
    """The set's cached files, downloaded by Keras's own ``get_file`` when missing."""
    folder = cache_dir(spec)
    paths = [folder / f for f in spec.files]
    missing = [p for p in paths if not p.is_file()]
    if not missing:
        return paths
    previous = socket.getdefaulttimeout()
    said = io.StringIO()  # Keras prints "Downloading data from ..." and a progress bar: to the log
    try:
        import keras

        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT)
        for path in missing:
            with contextlib.redirect_stdout(said):
                keras.utils.get_file(path.name, origin=_ORIGIN + path.name, cache_dir=str(_keras_home()),
                                     cache_subdir=spec.subdir)
            log.info("downloaded %s into %s", path.name, folder)
    except Exception as err:  # offline, refused, interrupted download
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        urls = ", ".join(_ORIGIN + p.name for p in missing)
        raise DataError(
            f"dataset={spec.name} is not on this machine and could not be downloaded ({reason}); fetch "
            f"{urls} into {folder}/, or give dataset.path=FILE (an .npz with x_train, y_train, x_test, y_test)"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
        log.debug("keras.utils.get_file said: %s", said.getvalue().strip())
    return paths


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"dataset.path {path} is not an .npz with x_train, y_train, x_test and y_test "
                        f"({type(err).__name__}: {err})") from None


def _read_idx(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    def labels(p: Path) -> np.ndarray:
        with gzip.open(p, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=8)

    def images(p: Path, n: int) -> np.ndarray:
        with gzip.open(p, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=16).reshape(n, 28, 28)

    y_train, y_test = labels(paths[0]), labels(paths[2])
    return images(paths[1], len(y_train)), y_train, images(paths[3], len(y_test)), y_test


def _load(spec: KerasSet, cfg: DatasetConfig) -> Table:
    if cfg.path:
        path = Path(str(cfg.path)).expanduser()
        if not path.is_file():
            raise DataError(f"dataset.path: no file at {path}; give an .npz with x_train, y_train, x_test, y_test")
        x_train, y_train, x_test, y_test = _read_npz(path)
    else:
        files = _fetch(spec)
        x_train, y_train, x_test, y_test = _read_npz(files[0]) if len(files) == 1 else _read_idx(files)
    x = np.concatenate([x_train, x_test]).reshape(len(x_train) + len(x_test), -1)
    side = int(round(np.sqrt(x.shape[1])))
    return Table(
        name=spec.name, x=(x / _PIXEL_MAX).astype(np.float32),
        y=np.concatenate([y_train, y_test]).astype(np.int64), task="multiclass",
        class_names=list(spec.class_names), scaled=True, image_shape=(side, side, 1),
        test_rows=np.arange(len(x_train), len(x_train) + len(x_test)),
    )


def load_mnist(cfg: DatasetConfig) -> Table:
    return _load(MNIST, cfg)


def load_fashion_mnist(cfg: DatasetConfig) -> Table:
    return _load(FASHION_MNIST, cfg)
