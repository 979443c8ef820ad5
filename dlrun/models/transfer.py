"""``model=transfer``: a pretrained backbone under a new head.

The backbone (``model.backbone``) is either a ``keras.applications`` network (its
convolutional base, ``include_top=False``, average-pooled), or a network an earlier dlrun
run saved (``outputs/runs/<run>/model.keras``) without its top in the same sense: a CNN's
convolutional base up to its Flatten, its Dense layers left out (the later layers of a
network are the most specific to its own classes); an MLP's hidden layers (all but the
output), or ``source``: the network ``model.source`` trains, once, cached
(:func:`dlrun.transfer.source_model`).

The data's flat pixels in [0, 1] are reshaped into the image, grey images are expanded to
three channels (a three-channel image goes to a grey source through its channel mean),
images are resized up to the backbone's minimum input size (or to a saved network's own
size), and the backbone's own preprocessing is applied, all as ordinary Keras layers, so
the saved ``model.keras`` reads without dlrun. The head: ``model.depth`` Dense layers of
``model.width`` units (0 by default), dropout when ``reg.dropout`` asks, the task's output.

The layer named ``backbone`` is the pretrained part: :mod:`dlrun.transfer` freezes and
unfreezes it per ``model.mode``. ``model.mode=scratch`` builds the same architecture with
fresh random weights, the control of a transfer study.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from dlrun.config import ModelConfig, RegConfig
from dlrun.errors import ConfigError
from dlrun.models.mlp import kernel_regularizer, output_layer
from dlrun.task import TaskSpec

log = logging.getLogger(__name__)

BACKBONE = "backbone"  # the name of the pretrained part in every transfer model

_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # ImageNet's pixel means, in the caffe models' BGR order


@dataclass(frozen=True)
class Application:
    """A ``keras.applications`` network usable as a backbone.

    Attributes:
        constructor: its name in ``keras.applications``.
        preprocessing: what its own ``preprocess_input`` does: ``tf`` (pixels to [-1, 1]),
            ``caffe`` (RGB to BGR, 0-255 less ImageNet's means) or ``raw`` (0-255: the network
            rescales them itself).
        min_size: the smallest input side it accepts.
        weights_file: the no-top ImageNet weights file Keras caches (``{size}``: the input
            side, for networks with weights per size).
    """

    constructor: str
    preprocessing: str
    min_size: int
    weights_file: str

    def weights_name(self, size: int) -> str:
        """The ImageNet weights file Keras looks for at input side ``size``."""
        return self.weights_file.format(size=size if size in (96, 128, 160, 192, 224) else 224)


APPLICATIONS: dict[str, Application] = {
    "mobilenet_v2": Application("MobileNetV2", "tf", 32,
                                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"),
    "efficientnet_b0": Application("EfficientNetB0", "raw", 32, "efficientnetb0_notop.h5"),
    "resnet50": Application("ResNet50", "caffe", 32, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "inception_resnet_v2": Application("InceptionResNetV2", "tf", 75,
                                       "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


def keras_models_dir() -> Path:
    """Where Keras caches downloaded weights: ``$KERAS_HOME/models`` (``~/.keras/models``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models"


def from_config(
    model: ModelConfig, reg: RegConfig, *, input_shape: tuple[int, ...], spec: TaskSpec,
    image_shape: tuple[int, int, int] | None = None,
) -> keras.Model:
    """``model=transfer``: the backbone ``model.backbone`` names under a new head (registered builder).

    Raises:
        ConfigError: data without an image shape, an unknown backbone, weights that cannot
            be had (ImageNet's offline), or images a saved backbone cannot take.
    """
    if image_shape is None:
        raise ConfigError("model=transfer needs image data; this dataset has no image shape")
    inputs = keras.Input(shape=input_shape, name="features")
    name = str(model.backbone)
    fresh = model.mode == "scratch"
    if name in APPLICATIONS:
        x, base = _application_input(inputs, image_shape, name, weights=None if fresh else model.weights)
    else:
        path = _saved_backbone_path(model)
        x, base = _saved_input(inputs, image_shape, path, weights=model.weights, fresh=fresh)
    x = base(x)
    x = _head(x, model, reg, spec)
    transfer = keras.Model(inputs, x, name=f"transfer_{Path(name).stem if name not in APPLICATIONS else name}")
    if not fresh:
        base.trainable = False  # the first phase trains the head alone (dlrun.transfer plans the rest)
    return transfer


def _head(x, model: ModelConfig, reg: RegConfig, spec: TaskSpec):
    regularizer = kernel_regularizer(reg.l1, reg.l2)
    for i in range(model.depth):
        x = keras.layers.Dense(model.width, activation=model.activation, kernel_initializer=model.initializer,
                               kernel_regularizer=regularizer, name=f"head_{i}")(x)
    if reg.dropout > 0:
        x = keras.layers.Dropout(reg.dropout, name="head_dropout")(x)
    return output_layer(spec, initializer=model.initializer)(x)


# --- keras.applications backbones --------------------------------------------------------


def _application_input(inputs, image_shape: tuple[int, int, int], name: str, *, weights: str | None):
    """The image resized and preprocessed for the application, and its base."""
    app = APPLICATIONS[name]
    h, w, c = image_shape
    side = max(h, w, app.min_size)
    x = keras.layers.Reshape(image_shape, name="image")(inputs)
    x = _channels(x, c, 3)
    if (h, w) != (side, side):
        x = keras.layers.Resizing(side, side, name="resize")(x)
    x = _preprocess(x, app.preprocessing)
    return x, application_base(name, weights=weights, size=side)


def application_base(name: str, *, weights: str | None, size: int) -> keras.Model:
    """The application's convolutional base, average-pooled, named :data:`BACKBONE`.

    Args:
        name: a key of :data:`APPLICATIONS`.
        weights: ``imagenet`` (also for None), ``none`` (random), or a weights file.
        size: the input side (at least the application's minimum).

    Raises:
        ConfigError: ImageNet weights neither in Keras's cache nor downloadable (offline),
            naming the file and the folder Keras looks in.
    """
    app = APPLICATIONS[name]
    constructor = getattr(keras.applications, app.constructor)
    chosen = "imagenet" if weights in (None, "imagenet") else None if weights == "none" else str(weights)
    args = {"include_top": False, "input_shape": (size, size, 3), "pooling": "avg", "name": BACKBONE}
    if chosen != "imagenet":
        try:
            return constructor(weights=chosen, **args)
        except (ValueError, OSError) as err:
            raise ConfigError(f"model.weights={weights}: cannot load it into {name}: {_first_line(err)}; "
                              "give the no-top weights file of that network") from None
    file = keras_models_dir() / app.weights_name(size)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input_shape.*")  # sizes without their own weights
            return constructor(weights="imagenet", **args)
    except Exception as err:  # Keras's downloader raises a bare Exception when offline
        if file.is_file():
            raise  # the file is there: a real failure, not a missing download
        raise ConfigError(
            f"model.weights=imagenet: {file.name} is not in Keras's cache {file.parent} and could not be "
            f"downloaded ({_first_line(err)}); put that file there, or give model.weights=PATH or none"
        ) from None


def _preprocess(x, mode: str):
    """The application's ``preprocess_input`` on pixels in [0, 1], as Keras layers."""
    if mode == "tf":
        return keras.layers.Rescaling(2.0, offset=-1.0, name="preprocess")(x)
    if mode == "raw":
        return keras.layers.Rescaling(255.0, name="preprocess")(x)
    # caffe: BGR order, 0-255, less ImageNet's means: one fixed 1x1 convolution.
    layer = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False)
    x = layer(x)
    layer.set_weights([255.0 * np.eye(3)[::-1].reshape(1, 1, 3, 3), -np.asarray(_CAFFE_BGR_MEAN)])
    return x


def _channels(x, have: int, want: int):
    """Grey to three channels (copies), three to grey (their mean); else as it is."""
    if have == want:
        return x
    if have == 1 and want == 3:
        return keras.layers.Concatenate(name="rgb")([x, x, x])
    if have == 3 and want == 1:
        layer = keras.layers.Conv2D(1, 1, use_bias=False, name="grey", trainable=False)
        x = layer(x)
        layer.set_weights([np.full((1, 1, 3, 1), 1 / 3)])
        return x
    raise ConfigError(f"model=transfer: images with {have} channels cannot feed a backbone that takes {want}")


# --- a network saved by dlrun --------------------------------------------------------------


def _saved_backbone_path(model: ModelConfig) -> Path:
    if model.backbone == "source":
        from dlrun.transfer import source_model

        return source_model(list(model.source))
    path = Path(str(model.backbone)).expanduser()
    if not path.is_file():
        known = ", ".join(APPLICATIONS)
        raise ConfigError(f"model.backbone={model.backbone!r} is neither a keras.applications name ({known}) "
                          "nor a saved model file; give a run's model.keras (trainer.save_model=true) or source")
    return path


def _saved_input(inputs, image_shape: tuple[int, int, int], path: Path, *, weights: str | None, fresh: bool):
    """The target's images shaped as the saved network's input, and its hidden layers."""
    if weights not in (None, "none"):
        raise ConfigError(f"model.weights={weights}: a saved backbone brings its own weights; "
                          "leave model.weights unset (or none for random weights)")
    base = saved_base(path, fresh=fresh or weights == "none")
    wanted = _image_shape_of(base)
    if wanted is None or tuple(wanted) == tuple(image_shape):
        if base.input_shape[1:] != tuple(inputs.shape[1:]):
            raise ConfigError(f"model.backbone={path}: it takes inputs of shape {base.input_shape[1:]}, "
                              f"this data has {tuple(inputs.shape[1:])}")
        return inputs, base
    x = keras.layers.Reshape(image_shape, name="image")(inputs)
    x = _channels(x, image_shape[2], wanted[2])
    if tuple(image_shape[:2]) != tuple(wanted[:2]):
        x = keras.layers.Resizing(wanted[0], wanted[1], name="resize")(x)
    if len(base.input_shape) == 2:  # the saved network takes flat images
        x = keras.layers.Flatten(name="flat")(x)
    return x, base


def saved_base(path: Path, *, fresh: bool = False) -> keras.Model:
    """The hidden layers of a saved dlrun network, named :data:`BACKBONE`.

    Args:
        path: a ``model.keras`` (read with ``safe_mode=True``: no code in it runs).
        fresh: the same architecture with new random weights (``model.mode=scratch``).

    Raises:
        ConfigError: an unreadable file, or a network with no layer before its output.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Skipping nested container")
            source = keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, OSError, TypeError, KeyError) as err:
        raise ConfigError(f"model.backbone={path}: cannot read it as a Keras model: {_first_line(err)}") from None
    features = _top_input(source)
    if isinstance(features._keras_history.operation, keras.layers.InputLayer):
        raise ConfigError(f"model.backbone={path}: the network has no hidden layer to transfer")
    base = keras.Model(source.inputs, features, name=BACKBONE)
    if fresh:
        clone = keras.models.clone_model(base)  # new layers, initialized afresh
        base = keras.Model(clone.input, clone.output, name=BACKBONE)
    return base


# The layers of a network's fully connected top (its classifier), left out of a backbone.
_TOP = (keras.layers.Dense, keras.layers.Dropout, keras.layers.Activation, keras.layers.BatchNormalization)


def _top_input(source: keras.Model):
    """What feeds the network's top: its convolutional features, as ``include_top=False``
    keeps them; for a network without convolutions (an MLP), its last hidden layer."""
    output = source.layers[-1]
    features = output.input
    below = features
    while isinstance(below._keras_history.operation, _TOP):
        below = below._keras_history.operation.input
    if not isinstance(below._keras_history.operation, keras.layers.InputLayer):
        return below  # a convolutional base (its Flatten or pooling)
    producer = features._keras_history.operation
    return producer.input if isinstance(producer, keras.layers.Dropout) else features


def _image_shape_of(base: keras.Model) -> tuple[int, int, int] | None:
    """The image a saved network sees: its input's shape, or its first Reshape's for flat input."""
    if len(base.input_shape) == 4:
        return tuple(base.input_shape[1:])
    reshape = next((layer for layer in base.layers if isinstance(layer, keras.layers.Reshape)), None)
    return tuple(reshape.target_shape) if reshape is not None and len(reshape.target_shape) == 3 else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
