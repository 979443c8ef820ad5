"""Models: pure ``build_*`` functions returning uncompiled Keras models."""

from __future__ import annotations

from dlrun.config import ModelConfig, RegConfig
from dlrun.errors import ConfigError
from dlrun.task import TaskSpec


def build_model(
    model: ModelConfig, reg: RegConfig, *, input_shape: tuple[int, ...], spec: TaskSpec,
    image_shape: tuple[int, int, int] | None = None,
):
    """Build the network ``model.name`` names, with ``reg`` applied to every hidden layer.

    Raises:
        ConfigError: for an unknown model, or a CNN on data that has no image shape.
    """
    from dlrun.models import cnn, mlp

    if model.name in ("logreg", "mlp"):
        depth = 0 if model.name == "logreg" else model.depth
        return mlp.build_mlp(
            input_shape, spec, width=model.width, depth=depth, activation=model.activation,
            initializer=model.initializer, batch_norm=model.batch_norm,
            l1=reg.l1, l2=reg.l2, dropout=reg.dropout,
        )
    if model.name == "cnn":
        if image_shape is None:
            raise ConfigError("model=cnn needs image data; this dataset has no image shape (use model=mlp)")
        return cnn.build_cnn(
            input_shape, spec, image_shape=image_shape, filters=model.filters, blocks=model.blocks,
            width=model.width, activation=model.activation, initializer=model.initializer,
            batch_norm=model.batch_norm, l1=reg.l1, l2=reg.l2, dropout=reg.dropout,
        )
    raise ConfigError(f"model={model.name!r} is not a known model; make sure it is registered in dlrun.models")
