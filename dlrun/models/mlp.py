"""A fully connected network; with ``depth=0`` it is logistic / linear regression."""

from __future__ import annotations

from typing import Any

import keras

from dlrun.config import ModelConfig, RegConfig
from dlrun.task import TaskSpec


def kernel_regularizer(l1: float, l2: float):
    """An L1, L2 or L1+L2 penalty, or None when both are zero."""
    if l1 > 0 or l2 > 0:
        return keras.regularizers.L1L2(l1=l1, l2=l2)
    return None


def output_layer(spec: TaskSpec, *, initializer: str) -> keras.layers.Layer:
    # float32 output keeps the loss stable under mixed precision.
    return keras.layers.Dense(
        spec.units, activation=spec.activation, kernel_initializer=initializer,
        dtype="float32", name="output",
    )


def build_mlp(
    input_shape: tuple[int, ...],
    spec: TaskSpec,
    *,
    width: int = 64,
    depth: int = 2,
    activation: str = "relu",
    initializer: str = "glorot_uniform",
    batch_norm: bool = False,
    l1: float = 0.0,
    l2: float = 0.0,
    dropout: float = 0.0,
) -> keras.Model:
    """Build ``depth`` Dense blocks of ``width`` units and the task's output layer.

    Args:
        input_shape: shape of one example (flattened when it has more than one axis).
        spec: the task's output layer and loss choices.
        width: units per hidden layer. Defaults to 64.
        depth: hidden layers; 0 gives the linear/logistic baseline. Defaults to 2.
        activation: hidden activation. Defaults to "relu".
        initializer: kernel initializer. Defaults to "glorot_uniform".
        batch_norm: BatchNormalization before each activation. Defaults to False.
        l1: L1 penalty on every kernel. Defaults to 0.
        l2: L2 penalty on every kernel. Defaults to 0.
        dropout: dropout rate after each hidden layer. Defaults to 0.

    Returns:
        An uncompiled ``keras.Model``.
    """
    inputs = keras.Input(shape=input_shape, name="features")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    reg = kernel_regularizer(l1, l2)
    for i in range(depth):
        x = keras.layers.Dense(
            width, kernel_initializer=initializer, kernel_regularizer=reg,
            use_bias=not batch_norm, name=f"dense_{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(activation, name=f"act_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = output_layer(spec, initializer=initializer)(x)
    name = "logreg" if depth == 0 else f"mlp_{depth}x{width}"
    return keras.Model(inputs, outputs, name=name)


def layer_args(model: ModelConfig, reg: RegConfig) -> dict[str, Any]:
    """The hidden-layer arguments of :func:`build_mlp` (and ``build_cnn``) from the configs."""
    return {
        "width": model.width, "activation": model.activation, "initializer": model.initializer,
        "batch_norm": model.batch_norm, "l1": reg.l1, "l2": reg.l2, "dropout": reg.dropout,
    }


def from_config(
    model: ModelConfig, reg: RegConfig, *, input_shape: tuple[int, ...], spec: TaskSpec,
    image_shape: tuple[int, int, int] | None = None,
) -> keras.Model:
    """``model=mlp``: :func:`build_mlp` with ``model.depth`` hidden layers (registered builder)."""
    return build_mlp(input_shape, spec, depth=model.depth, **layer_args(model, reg))


def logreg_from_config(
    model: ModelConfig, reg: RegConfig, *, input_shape: tuple[int, ...], spec: TaskSpec,
    image_shape: tuple[int, int, int] | None = None,
) -> keras.Model:
    """``model=logreg``: the output layer alone, whatever ``model.depth`` says (registered builder)."""
    return build_mlp(input_shape, spec, depth=0, **layer_args(model, reg))
