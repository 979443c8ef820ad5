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


def load_weights(model, path: str):
    """Load ``path`` into the built ``model`` and return it.

    A ``.weights.h5`` file is loaded with ``model.load_weights``; a whole ``.keras`` model is
    read with ``keras.saving.load_model(..., safe_mode=True)`` (no code in the file is run)
    and its weights copied over. Either way the architecture must match the configured one.

    Raises:
        ConfigError: a missing or unreadable file, or weights whose shapes do not fit.
    """
    import warnings
    from pathlib import Path

    import keras

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"model.weights: no file at {file}; give a .weights.h5 file or a .keras model")
    try:
        with warnings.catch_warnings():
            # Keras 3 warns about an internal container of functional models that it skips;
            # the shape checks catch every real mismatch.
            warnings.filterwarnings("ignore", message="Skipping nested container")
            if file.name.endswith(".keras"):
                source = keras.saving.load_model(file, compile=False, safe_mode=True)
                shapes = [tuple(w.shape) for w in source.weights], [tuple(w.shape) for w in model.weights]
                if shapes[0] != shapes[1]:
                    raise ValueError(
                        f"its weight shapes {shapes[0][:4]}... differ from this model's {shapes[1][:4]}..."
                    )
                model.set_weights(source.get_weights())
            else:
                model.load_weights(file)
    except (ValueError, OSError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"model.weights={str(file)!r} does not fit model={model.name}: {first}; "
            "use weights saved from the same model, dataset and config"
        ) from None
    return model
