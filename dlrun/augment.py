"""Image augmentation (``augment=basic|strong``), a build-stage capability.

Keras preprocessing layers (random rotation, translation, zoom, contrast, and flips where
the images allow them) are put in front of the network. They change images only when the
model runs in training mode, so they act on training batches inside the compiled epoch
(the fast loop keeps its speed) and never on validation, test or prediction. Their random
state is a model variable: checkpoints carry it, and a resumed run draws what an
uninterrupted one would.

``augment_samples.png`` in the run folder shows training images beside augmented copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlrun.capabilities import Capability, FoldContext, RunContext, register_capability
from dlrun.errors import ConfigError
from dlrun.record import Section

# Training images shown in augment_samples.png, and augmented copies of each.
_SAMPLES, _COPIES = 6, 3


@dataclass(frozen=True)
class Augmentation:
    """Strengths of each random transformation (0 leaves it out)."""

    rotation: float = 0.0  # fraction of a full turn, either way
    translation: float = 0.0  # fraction of the height and width, either way
    zoom: float = 0.0  # fraction in or out
    contrast: float = 0.0  # factor range around 1
    flip: bool = False  # horizontal flips: only where a mirrored image is still the same class


def augmentation_layers(aug: Augmentation, *, seed: int) -> list:
    """The Keras preprocessing layers of ``aug``, each seeded from ``seed``."""
    import keras

    layers = []
    if aug.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="aug_flip"))
    if aug.rotation:
        layers.append(keras.layers.RandomRotation(aug.rotation, fill_mode="constant", seed=seed + 1,
                                                  name="aug_rotation"))
    if aug.translation:
        layers.append(keras.layers.RandomTranslation(aug.translation, aug.translation, fill_mode="constant",
                                                     seed=seed + 2, name="aug_translation"))
    if aug.zoom:
        layers.append(keras.layers.RandomZoom(aug.zoom, fill_mode="constant", seed=seed + 3, name="aug_zoom"))
    if aug.contrast:
        layers.append(keras.layers.RandomContrast(aug.contrast, seed=seed + 4, name="aug_contrast"))
    return layers


def augmented(model: Any, aug: Augmentation, *, image_shape: tuple[int, int, int], seed: int) -> Any:
    """``model`` behind the augmentation layers, taking the same flat input.

    The wrapper reshapes each flat row to its image, augments it (training mode only) and
    flattens it again for ``model``. With every strength 0, ``model`` itself.
    """
    import keras

    layers = augmentation_layers(aug, seed=seed)
    if not layers:  # every strength 0: nothing to put in front
        return model
    flat = int(np.prod(image_shape))
    inputs = keras.Input(shape=(flat,), name="features")
    x = keras.layers.Reshape(image_shape, name="aug_image")(inputs)
    block = keras.Sequential(layers, name="augmentation")
    x = keras.layers.Reshape((flat,), name="aug_flat")(block(x))
    return keras.Model(inputs, model(x), name=f"augmented_{model.name}")


class Augment(Capability):
    """``augment=basic|strong``: random transformations of training images (see the module)."""

    def __init__(self, name: str, aug: Augmentation, *, seed: int):
        self.preset, self.aug, self.seed = name, aug, seed
        self.image_shape: tuple[int, int, int] | None = None
        self.block: Any = None
        self.samples: np.ndarray | None = None

    def build(self, model: Any, ctx: FoldContext) -> Any:
        if self.image_shape is None:
            raise ConfigError(f"augment={self.preset} needs image data (a dataset with an image shape, such "
                              "as mnist_5k, digits or image_folder); use augment=none")
        wrapped = augmented(model, self.aug, image_shape=self.image_shape, seed=self.seed)
        self.block = wrapped.get_layer("augmentation") if wrapped is not model else None
        return wrapped

    def prepare(self, splits, ctx: FoldContext):
        self.image_shape = splits.image_shape
        if self.samples is None and splits.image_shape is not None:
            _, first = np.unique(splits.train.y, return_index=True)  # one image per class
            rows = np.sort(first)[:_SAMPLES]
            self.samples = splits.train.x[rows].reshape(-1, *splits.image_shape)
        return splits

    def report(self, outcomes, ctx: RunContext) -> Section | None:
        path = None
        if self.samples is not None and self.block is not None:
            path = _plot_samples(self.samples, self.block, ctx.run_dir / "augment_samples.png")
        settings = {k: v for k, v in vars(self.aug).items() if v}
        lines = [f"`augment={self.preset}` on training batches only: "
                 + (", ".join(f"{k} {v}" for k, v in settings.items()) or "no transformation") + "."]
        return Section("augment", metrics={"preset": self.preset, **vars(self.aug)}, summary=lines,
                       files=[("augmented samples", path.name)] if path else [])


def _plot_samples(images: np.ndarray, block: Any, path):
    """Each sample (left) beside augmented copies, drawn in training mode."""
    import keras

    from dlrun.report.files import save_figure
    from dlrun.report.plots import plt

    copies = [keras.ops.convert_to_numpy(block(images, training=True)) for _ in range(_COPIES)]
    fig, axes = plt.subplots(len(images), 1 + _COPIES, figsize=(1.4 * (1 + _COPIES), 1.4 * len(images)),
                             squeeze=False)
    for i, image in enumerate(images):
        for j, shown in enumerate([image, *(c[i] for c in copies)]):
            ax = axes[i, j]
            lo, hi = float(image.min()), float(image.max())  # the original's range, for every copy
            shown = np.clip((shown - lo) / (hi - lo or 1.0), 0, 1)
            ax.imshow(shown.squeeze() if shown.shape[-1] == 1 else shown,
                      cmap="gray" if shown.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"augmented {j}", fontsize=8)
    fig.suptitle("training images and augmented copies (validation and test are never augmented)", fontsize=9)
    return save_figure(path, fig)


def _from_config(cfg) -> Capability | None:
    a = cfg.augment
    if a.name == "none":
        return None
    aug = Augmentation(rotation=a.rotation, translation=a.translation, zoom=a.zoom, contrast=a.contrast,
                       flip=a.flip)
    return Augment(a.name, aug, seed=cfg.seed)


register_capability("augment", _from_config)
