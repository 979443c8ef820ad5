"""Optimizers and learning-rate schedules from :class:`~dlrun.config.OptimizerConfig`.

Every optimizer is a Keras class with the config's hyperparameters passed through
unchanged (the defaults live in ``configs/optimizer/<name>.yaml``, one file per name):

==========  =============================================================
sgd         plain mini-batch gradient descent (``momentum`` 0 unless set)
momentum    SGD with heavy-ball momentum
nesterov    SGD with Nesterov momentum
rmsprop     RMSprop (``rho``, optional ``momentum``)
adam        Adam (``beta_1``, ``beta_2``)
adamw       Adam with decoupled weight decay (``weight_decay``)
nadam       Adam with Nesterov momentum
==========  =============================================================

:data:`OPTIMIZERS` holds the names; ``OPTIMIZERS.register(name, builder)`` adds one (a
builder takes the config and the ``learning_rate``, ``clipnorm`` and ``weight_decay``
arguments every Keras optimizer accepts), selected with ``optimizer.name=<name>``.

Schedules count decay periods in epochs (``decay_epochs``), so a period does not change
meaning when the batch size does. The rate is ``lr × lr_scale`` (:func:`learning_rate`):
``optimizer.lr_scale=0.1,1,10`` sweeps every optimizer around its own usual rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dlrun.config import SCHEDULES, OptimizerConfig
from dlrun.errors import ConfigError
from dlrun.registry import Registry

if TYPE_CHECKING:  # Keras is imported when an optimizer is built: validation reads OPTIMIZERS
    import keras

    LearningRate = float | keras.optimizers.schedules.LearningRateSchedule

OptimizerBuilder = Callable[..., "keras.optimizers.Optimizer"]  # (cfg, **common) -> optimizer


def _keras_optimizer(class_name: str, *keys: str, **fixed: Any) -> OptimizerBuilder:
    """A builder of ``keras.optimizers.<class_name>`` given the config's ``keys`` and ``fixed``."""

    def build(cfg: OptimizerConfig, **common: Any) -> keras.optimizers.Optimizer:
        import keras

        own = {key: getattr(cfg, key) for key in keys}
        return getattr(keras.optimizers, class_name)(**{**common, **own, **fixed})

    return build


_ADAM = ("beta_1", "beta_2", "epsilon")

OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer", what="builder", where="dlrun.optim")
OPTIMIZERS.register("sgd", _keras_optimizer("SGD", "momentum", "nesterov"))
OPTIMIZERS.register("momentum", _keras_optimizer("SGD", "momentum", "nesterov"))
OPTIMIZERS.register("nesterov", _keras_optimizer("SGD", "momentum", nesterov=True))
OPTIMIZERS.register("rmsprop", _keras_optimizer("RMSprop", "rho", "momentum", "epsilon"))
OPTIMIZERS.register("adam", _keras_optimizer("Adam", *_ADAM))
OPTIMIZERS.register("adamw", _keras_optimizer("AdamW", "weight_decay", *_ADAM))
OPTIMIZERS.register("nadam", _keras_optimizer("Nadam", *_ADAM))


def learning_rate(cfg: OptimizerConfig) -> float:
    """The (initial) learning rate: ``lr`` times ``lr_scale``, so that a sweep over ``lr_scale``
    tries each optimizer at multiples of its own usual rate."""
    return float(cfg.lr) * float(getattr(cfg, "lr_scale", 1.0))


def build_schedule(cfg: OptimizerConfig, *, steps_per_epoch: int, epochs: int) -> LearningRate:
    """The learning rate: a float (``constant``) or a Keras schedule counted in steps.

    ``exponential`` multiplies the rate by ``decay_rate`` every ``decay_epochs`` epochs,
    smoothly; ``step`` does the same in stairs; ``inverse_time`` divides it by
    ``1 + decay_rate * epoch / decay_epochs``; ``cosine`` anneals it from ``lr`` to
    ``lr * min_lr_fraction`` over the whole training.

    Args:
        cfg: the optimizer config.
        steps_per_epoch: optimizer steps in one epoch (``ceil(train rows / batch size)``).
        epochs: epochs of the whole training (the cosine period).

    Raises:
        ConfigError: an unknown ``cfg.schedule``.
    """
    import keras

    decay_steps = max(1, round(cfg.decay_epochs * steps_per_epoch))
    schedules = keras.optimizers.schedules
    lr = learning_rate(cfg)
    if cfg.schedule == "constant":
        return lr
    if cfg.schedule in ("exponential", "step"):
        return schedules.ExponentialDecay(
            lr, decay_steps=decay_steps, decay_rate=cfg.decay_rate,
            staircase=cfg.schedule == "step",
        )
    if cfg.schedule == "cosine":
        return schedules.CosineDecay(
            lr, decay_steps=max(1, epochs * steps_per_epoch), alpha=cfg.min_lr_fraction
        )
    if cfg.schedule == "inverse_time":
        return schedules.InverseTimeDecay(lr, decay_steps=decay_steps, decay_rate=cfg.decay_rate)
    raise ConfigError(f"optimizer.schedule={cfg.schedule!r} is not one of: {', '.join(SCHEDULES)}")


def build_optimizer(cfg: OptimizerConfig, *, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    """Build the Keras optimizer ``cfg.name`` names, with its schedule and clipping.

    Args:
        cfg: the optimizer config; ``clipnorm`` (None: no clipping) caps each
            gradient's norm.
        steps_per_epoch: optimizer steps in one epoch, for the schedule.
        epochs: epochs of the whole training, for the schedule.

    Raises:
        ConfigError: an unregistered ``cfg.name``, or an unknown ``cfg.schedule``.
    """
    builder = OPTIMIZERS.get(cfg.name)
    common: dict[str, Any] = {
        "learning_rate": build_schedule(cfg, steps_per_epoch=steps_per_epoch, epochs=epochs),
        "clipnorm": cfg.clipnorm,
    }
    if cfg.weight_decay:
        common["weight_decay"] = cfg.weight_decay  # Keras applies it decoupled, as AdamW does
    return builder(cfg, **common)
