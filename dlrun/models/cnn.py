"""A small convolutional network for flattened images."""

from __future__ import annotations

import keras

from dlrun.config import ModelConfig, RegConfig
from dlrun.errors import ConfigError
from dlrun.models.mlp import kernel_regularizer, layer_args, output_layer
from dlrun.task import TaskSpec


def build_cnn(
    input_shape: tuple[int, ...],
    spec: TaskSpec,
    *,
    image_shape: tuple[int, int, int],
    filters: int = 16,
    blocks: int = 2,
    width: int = 64,
    activation: str = "relu",
    initializer: str = "glorot_uniform",
    batch_norm: bool = False,
    l1: float = 0.0,
    l2: float = 0.0,
    dropout: float = 0.0,
) -> keras.Model:
    """Build ``blocks`` conv+pool blocks (filters doubling), a Dense layer and the head.

    Args:
        input_shape: shape of one flattened example.
        spec: the task's output layer and loss choices.
        image_shape: (height, width, channels) the flat input is reshaped to.
        filters: filters of the first block. Defaults to 16.
        blocks: conv blocks; each halves the spatial size. Defaults to 2.
        width: units of the Dense layer before the head. Defaults to 64.
        activation: hidden activation. Defaults to "relu".
        initializer: kernel initializer. Defaults to "glorot_uniform".
        batch_norm: BatchNormalization after each convolution. Defaults to False.
        l1: L1 penalty on every kernel. Defaults to 0.
        l2: L2 penalty on every kernel. Defaults to 0.
        dropout: dropout rate before the head. Defaults to 0.

    Returns:
        An uncompiled ``keras.Model``.
    """
    reg = kernel_regularizer(l1, l2)
    inputs = keras.Input(shape=input_shape, name="features")
    x = keras.layers.Reshape(image_shape, name="image")(inputs)
    for b in range(blocks):
        x = keras.layers.Conv2D(
            filters * 2**b, 3, padding="same", kernel_initializer=initializer,
            kernel_regularizer=reg, name=f"conv_{b}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{b}")(x)
        x = keras.layers.Activation(activation, name=f"act_{b}")(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"pool_{b}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(width, activation=activation, kernel_initializer=initializer,
                           kernel_regularizer=reg, name="dense")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = output_layer(spec, initializer=initializer)(x)
    return keras.Model(inputs, outputs, name=f"cnn_{blocks}x{filters}")


def from_config(
    model: ModelConfig, reg: RegConfig, *, input_shape: tuple[int, ...], spec: TaskSpec,
    image_shape: tuple[int, int, int] | None = None,
) -> keras.Model:
    """``model=cnn``: :func:`build_cnn` from the configs (registered builder).

    Raises:
        ConfigError: the data has no image shape.
    """
    if image_shape is None:
        raise ConfigError(f"model={model.name} needs image data; this dataset has no image shape "
                          "(use model=mlp)")
    return build_cnn(input_shape, spec, image_shape=image_shape, filters=model.filters,
                     blocks=model.blocks, **layer_args(model, reg))
