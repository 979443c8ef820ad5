"""Transfer learning: which part of a ``model=transfer`` network trains in which phase, and
the source network a transfer study starts from.

``model.mode`` plans the train stage (:class:`Transfer`, a capability):

* ``feature_extraction``: one phase; the backbone is frozen and only the new head learns.
* ``fine_tune``: two phases. ``head`` trains the head alone (the first ``trainer.epochs -
  model.fine_tune_epochs`` epochs, at ``optimizer.lr``) so that its random weights do not
  send large gradients into the pretrained layers; ``fine_tune`` then also trains the top
  ``model.unfreeze`` weighted layers of the backbone at ``model.fine_tune_lr`` (lower).
  Batch-norm layers stay frozen, which in Keras also keeps them in inference mode: their
  ImageNet (or source) statistics are not overwritten by small target batches. Checkpoints
  record the phase, so an interrupted fold resumes in the right one.
* ``scratch``: one phase, every layer trains from random weights: the control.

A Hydra sweep cannot make one job wait for another, so a study's source network
(``model.backbone=source``, trained by the dlrun overrides in ``model.source``) is trained
once by :func:`source_model`: cached under ``$XDG_CACHE_HOME/dlrun/sources/<hash of the
composed source config>``, built under a file lock (concurrent joblib workers wait for the
first one instead of training it again), and, in a sweep, built before the jobs launch by
the :class:`PrepareSource` callback.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dlrun.capabilities import Capability, FoldContext, RunContext, register_capability
from dlrun.config import Config
from dlrun.errors import ConfigError
from dlrun.record import Section

if TYPE_CHECKING:
    from dlrun.data.table import Splits
    from dlrun.stages import FoldOutcome, Phase

log = logging.getLogger(__name__)

# Keys of a source's config that do not change the network it trains.
_NOT_HASHED = ("progress", "threads", "resume", "checkpoint_every", "save_model", "tensorboard", "device")


# --- the phases -----------------------------------------------------------------------------


def trainable_weights(model: Any) -> int:
    """Trainable parameters of ``model`` as it stands."""
    import numpy as np

    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def backbone(model: Any) -> Any:
    """The pretrained part of a transfer model, also when a wrapper (augmentation) holds it.

    Raises:
        ValueError: ``model`` holds no layer named :data:`dlrun.models.transfer.BACKBONE`.
    """
    import keras

    from dlrun.models.transfer import BACKBONE

    for layer in model.layers:
        if layer.name == BACKBONE:
            return layer
    for layer in model.layers:
        if isinstance(layer, keras.Model) and any(inner.name == BACKBONE for inner in layer.layers):
            return layer.get_layer(BACKBONE)
    raise ValueError(f"model {model.name} has no layer named {BACKBONE!r}: it is not a model=transfer network")


def freeze_backbone(model: Any) -> None:
    """Only the head trains."""
    model.trainable = True
    backbone(model).trainable = False


def head_on_features(model: Any, splits: Splits) -> tuple[Any, Splits]:
    """The head alone, and the training and validation images through the frozen backbone,
    computed once (in inference mode): each epoch then costs the head's work only.

    The head's layers are the model's own, so training it trains the model.
    """
    import keras
    import numpy as np

    from dlrun.train import predict

    base = backbone(model)
    head_layers = model.layers[model.layers.index(base) + 1:]
    features = keras.Model(model.input, head_layers[0].input)
    x = inputs = keras.Input(shape=tuple(features.output.shape[1:]), name="backbone_features")
    for layer in head_layers:  # the head is a chain: Dense layers, dropout, the output
        x = layer(x)
    head = keras.Model(inputs, x, name="head")
    parts = {name: replace(getattr(splits, name), x=predict(features, getattr(splits, name).x).astype(np.float32))
             for name in ("train", "val")}
    return head, replace(splits, **parts, image_shape=None)


def unfreeze_top(model: Any, count: int) -> None:
    """The head and the top ``count`` layers of the backbone with weights (batch norm not
    counted) train; batch norm stays frozen."""
    import keras

    freeze_backbone(model)
    base = backbone(model)
    base.trainable = True
    norm = keras.layers.BatchNormalization
    weighted = [layer for layer in base.layers if layer.weights and not isinstance(layer, norm)]
    top = {id(layer) for layer in weighted[-count:]}
    for layer in base.layers:
        layer.trainable = id(layer) in top  # batch norm never: frozen, it runs in inference mode


def train_everything(model: Any) -> None:
    model.trainable = True


class Transfer(Capability):
    """``model=transfer``: the phases of ``model.mode``, and the run folder's ``transfer`` section."""

    def __init__(self, cfg: Config):
        self.model = cfg.model
        # A frozen backbone's features are computed once, unless augmentation changes the
        # images every epoch.
        self.cached = head_on_features if cfg.augment.name == "none" else None
        self.trainable: dict[str, int] = {}  # trainable parameters per phase, as each began

    def prepare(self, splits: Splits, ctx: FoldContext) -> Splits:
        """Refuse inputs that are not pixels in [0, 1], which the backbone's preprocessing expects."""
        if ctx.cfg.dataset.scaling != "none":
            raise ConfigError(f"model=transfer feeds pixels in [0, 1] to the backbone's own preprocessing; "
                              f"set dataset.scaling=none (got {ctx.cfg.dataset.scaling})")
        return splits

    def phases(self, phases: list[Phase], ctx: FoldContext) -> list[Phase]:
        (plan,) = phases  # the single phase of trainer.epochs and the optimizer group
        m = self.model
        if m.mode == "scratch":
            return self._counted([replace(plan, trainable=train_everything)])
        if m.mode == "feature_extraction":
            return self._counted([replace(plan, trainable=freeze_backbone, fit_on=self.cached)])
        tune_epochs = m.fine_tune_epochs or max(1, plan.epochs // 2)
        tune_lr = m.fine_tune_lr if m.fine_tune_lr is not None else plan.optimizer.lr / 10
        return self._counted([
            replace(plan, name="head", epochs=plan.epochs - tune_epochs, trainable=freeze_backbone,
                    fit_on=self.cached),
            replace(plan, name="fine_tune", epochs=tune_epochs, optimizer=replace(plan.optimizer, lr=tune_lr),
                    trainable=lambda model: unfreeze_top(model, m.unfreeze)),
        ])

    def _counted(self, phases: list[Phase]) -> list[Phase]:
        """The phases, each also recording the trainable parameters of it and the phases before
        it (a run resumed in phase two records phase one's count too)."""

        def counted(last: int):
            def trainable(model: Any) -> None:
                for phase in phases[:last + 1]:  # the last one applied is this phase's
                    phase.trainable(model)
                    self.trainable[phase.name] = trainable_weights(model)

            return trainable

        return [replace(phase, trainable=counted(i)) for i, phase in enumerate(phases)]

    def report(self, outcomes: list[FoldOutcome], ctx: RunContext) -> Section | None:
        m = self.model
        name = m.backbone if m.backbone != "source" else f"source ({' '.join(m.source)})"
        weights = "random (scratch)" if m.mode == "scratch" else m.weights or "the backbone's own"
        lines = [f"Backbone `{name}`, weights: {weights}, mode `{m.mode}`."]
        lines += [f"- phase `{phase}`: {count:,} trainable parameters" for phase, count in self.trainable.items()]
        return Section("transfer", metrics={"backbone": name, "backbone_file": self._file(), "weights": weights,
                                            "mode": m.mode, "trainable_params": dict(self.trainable)}, summary=lines)

    def _file(self) -> str | None:
        """The saved backbone's file (a source's: in its cached run folder); None for an application."""
        from dlrun.models.transfer import APPLICATIONS

        if self.model.backbone == "source":
            return str(source_model(list(self.model.source)))
        return None if self.model.backbone in APPLICATIONS else str(Path(str(self.model.backbone)).resolve())


register_capability("transfer", lambda cfg: Transfer(cfg) if cfg.model.name == "transfer" else None)


# --- the source network of a study ---------------------------------------------------------


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/dlrun/sources`` (``~/.cache/dlrun/sources`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dlrun" / "sources"


def source_config(overrides: list[str]) -> DictConfig:
    """The composed config of the run that trains the source (no TensorFlow)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from dlrun.paths import config_dir

    try:
        if GlobalHydra.instance().is_initialized():  # inside a dlrun job or sweep
            return compose(config_name="config", overrides=overrides)
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    except Exception as err:
        raise ConfigError(f"model.source={overrides}: not a valid dlrun config: {str(err).splitlines()[0]}") from None


def source_key(overrides: list[str]) -> str:
    """A short hash of the composed source config (what it trains, not how it is displayed)."""
    cfg = OmegaConf.to_container(source_config(overrides), resolve=True)
    cfg["trainer"] = {k: v for k, v in cfg["trainer"].items() if k not in _NOT_HASHED}
    cfg.pop("study", None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


def source_model(overrides: list[str]) -> Path:
    """The ``model.keras`` of the run ``overrides`` describe, trained once and cached.

    The first caller trains it (``python -m dlrun OVERRIDES trainer.save_model=true``, a
    run folder of its own) while holding a file lock; any other caller, in this process or
    another, waits for the lock and then finds it done.

    Raises:
        ConfigError: overrides that do not compose, or a source run that failed (its last
            error line).
    """
    folder = cache_root() / f"source-{source_key(overrides)}"
    model = folder / "model.keras"
    if model.is_file():
        return model
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if not model.is_file():
            _train_source(overrides, folder)
    return model


def _train_source(overrides: list[str], folder: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    command = [sys.executable, "-m", "dlrun", *overrides, "trainer.save_model=true", "trainer.progress=none",
               f"hydra.run.dir={tmp}"]
    log.info("training the source network once: dlrun %s -> %s", " ".join(overrides), folder)
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if done.returncode != 0 or not (tmp / "model.keras").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        raise ConfigError(f"the source network (model.source={overrides}) did not train: "
                          f"{lines[-1] if lines else f'exit code {done.returncode}'}")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


class PrepareSource(Callback):
    """Train a sweep's source network before its jobs launch, so none of them waits on it."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        model = config.get("model") or {}
        if model.get("name") == "transfer" and model.get("backbone") == "source":
            path = source_model(list(model.get("source") or []))
            log.info("source network: %s", path)
