"""Models: pure builders returning uncompiled Keras models, registered by name.

Every builder in :data:`MODELS` has :class:`ModelBuilder`'s signature; ``model=<name>``
picks one. :func:`register_model` adds a model to the command line: it registers the
builder and stores a :class:`~dlrun.config.ModelConfig` node for it in Hydra's
ConfigStore, so ``dlrun model=<name>`` composes and ``dlrun --help`` lists it without a
YAML file. The built-in models keep their YAML files in ``configs/model/``.

This module imports no TensorFlow: validation reads :data:`MODELS` before the run starts.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hydra.core.config_store import ConfigStore

from dlrun.config import ModelConfig, RegConfig
from dlrun.errors import ConfigError
from dlrun.registry import Registry
from dlrun.task import TaskSpec

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


class ModelBuilder(Protocol):
    """The signature every registered builder has (:func:`build_model`'s)."""

    def __call__(self, model: ModelConfig, reg: RegConfig, *, input_shape: tuple[int, ...],
                 spec: TaskSpec, image_shape: tuple[int, int, int] | None) -> keras.Model: ...


MODELS: Registry[ModelBuilder] = Registry("model", what="builder", where="dlrun.models")
MODELS.register("logreg", "dlrun.models.mlp:logreg_from_config")
MODELS.register("mlp", "dlrun.models.mlp:from_config")
MODELS.register("cnn", "dlrun.models.cnn:from_config")
MODELS.register("transfer", "dlrun.models.transfer:from_config")


def register_model(name: str, builder: ModelBuilder | str, **defaults: Any) -> None:
    """Make ``model=<name>`` build with ``builder``.

    Args:
        name: the model's name on the command line.
        builder: a function with :class:`ModelBuilder`'s signature, or its
            ``"module:function"`` path (imported when the model is first built).
        **defaults: :class:`~dlrun.config.ModelConfig` fields of the stored config node
            (``width=8``, ``depth=1``); the schema's defaults for the rest.

    Raises:
        TypeError: a default that is not a ``ModelConfig`` field.
        ValueError: ``name`` already registered to another builder.
    """
    node = ModelConfig(name=name, **defaults)
    MODELS.register(name, builder)
    ConfigStore.instance().store(group="model", name=name, node=node)


def build_model(
    model: ModelConfig, reg: RegConfig, *, input_shape: tuple[int, ...], spec: TaskSpec,
    image_shape: tuple[int, int, int] | None = None,
) -> keras.Model:
    """Build the network ``model.name`` names, with ``reg`` applied to every hidden layer.

    Raises:
        ConfigError: for an unregistered model, or one the data does not suit (a CNN on
            data that has no image shape).
    """
    builder = MODELS.get(model.name)
    return builder(model, reg, input_shape=input_shape, spec=spec, image_shape=image_shape)


@dataclass
class LoadedWeights:
    """Which layers :func:`load_weights` filled from a file.

    Attributes:
        source: the file.
        loaded: the layers that got the file's weights.
        skipped: every other layer with weights, and why it kept its own.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mismatch(layer: keras.layers.Layer, source: keras.layers.Layer | None) -> str | None:
    """Why ``source``'s weights cannot go into ``layer``, or None when they fit."""
    if source is None:
        return "not in the source"
    ours, theirs = [tuple(w.shape) for w in layer.weights], [tuple(w.shape) for w in source.weights]
    if len(ours) != len(theirs):
        return f"{len(ours)} weights vs {len(theirs)} in the source"
    return next((f"shapes {a} vs {b} in the source" for a, b in zip(ours, theirs, strict=True) if a != b),
                None)


def _copy_by_name(model: keras.Model, source: keras.Model, result: LoadedWeights) -> None:
    theirs = {layer.name: layer for layer in source.layers}
    for layer in model.layers:
        if not layer.weights:
            continue
        why = _mismatch(layer, theirs.get(layer.name))
        if why is None:
            layer.set_weights(theirs[layer.name].get_weights())
            result.loaded.append(layer.name)
        else:
            result.skipped[layer.name] = why


def load_weights(model: keras.Model, path: str) -> LoadedWeights:
    """Fill the built ``model`` (in place) with the weights saved at ``path``.

    A whole ``.keras`` model is read with ``keras.saving.load_model(..., safe_mode=True)``
    (no code in the file is run) and copied layer by layer: each layer of ``model`` whose
    name is in the source with weights of the same shapes gets them, every other one keeps
    its own (logged, and listed in the result). So a trained network can seed one with
    another head. A ``.weights.h5`` file holds no layer names worth trusting: Keras's
    ``model.load_weights`` loads it whole or not at all.

    Raises:
        ConfigError: a missing or unreadable file, or one of which no layer fits.
    """
    import keras

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"model.weights: no file at {file}; give a .weights.h5 file or a .keras model")
    if file.name.endswith(".keras") and not zipfile.is_zipfile(file):
        raise ConfigError(f"model.weights={path!r} is not a Keras model file (a .keras file is a zip archive, "
                          "this one is not: truncated or something else); save it again with trainer.save_model=true")
    result = LoadedWeights(source=str(file))
    try:
        with warnings.catch_warnings():
            # Keras 3 warns about an internal container of functional models that it skips;
            # the shape checks catch every real mismatch.
            warnings.filterwarnings("ignore", message="Skipping nested container")
            if file.name.endswith(".keras"):
                source = keras.saving.load_model(file, compile=False, safe_mode=True)
                _copy_by_name(model, source, result)
                if not result.loaded:
                    reasons = [f"{name}: {why}" for name, why in result.skipped.items()][:3]
                    raise ValueError("no layer matches by name and weight shapes"
                                     + (f" ({'; '.join(reasons)})" if reasons else ""))
            else:
                model.load_weights(file)
                result.loaded = [layer.name for layer in model.layers if layer.weights]
    except (ValueError, OSError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"model.weights={str(file)!r} does not fit model={model.name}: {first}; "
            "use weights saved from the same model (a .keras model: one with layers of the same names)"
        ) from None
    for name, why in result.skipped.items():
        log.info("model.weights: layer %s keeps its initial weights (%s)", name, why)
    return result
