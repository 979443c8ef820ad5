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

Schedules count decay periods in epochs (``decay_epochs``), so a period does not change
meaning when the batch size does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from dlrun.config import OPTIMIZERS, SCHEDULES, OptimizerConfig
from dlrun.errors import ConfigError

LearningRate = float | keras.optimizers.schedules.LearningRateSchedule


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
    decay_steps = max(1, round(cfg.decay_epochs * steps_per_epoch))
    schedules = keras.optimizers.schedules
    if cfg.schedule == "constant":
        return float(cfg.lr)
    if cfg.schedule in ("exponential", "step"):
        return schedules.ExponentialDecay(
            cfg.lr, decay_steps=decay_steps, decay_rate=cfg.decay_rate,
            staircase=cfg.schedule == "step",
        )
    if cfg.schedule == "cosine":
        return schedules.CosineDecay(
            cfg.lr, decay_steps=max(1, epochs * steps_per_epoch), alpha=cfg.min_lr_fraction
        )
    if cfg.schedule == "inverse_time":
        return schedules.InverseTimeDecay(cfg.lr, decay_steps=decay_steps, decay_rate=cfg.decay_rate)
    raise ConfigError(f"optimizer.schedule={cfg.schedule!r} is not one of: {', '.join(SCHEDULES)}")


def _sgd(cfg: OptimizerConfig, nesterov: bool = False) -> Callable[..., keras.optimizers.Optimizer]:
    return lambda **common: keras.optimizers.SGD(
        momentum=cfg.momentum, nesterov=nesterov or cfg.nesterov, **common
    )


def _builders(cfg: OptimizerConfig) -> dict[str, Callable[..., keras.optimizers.Optimizer]]:
    opt = keras.optimizers
    adam: dict[str, Any] = {"beta_1": cfg.beta_1, "beta_2": cfg.beta_2, "epsilon": cfg.epsilon}
    return {
        "sgd": _sgd(cfg),
        "momentum": _sgd(cfg),
        "nesterov": _sgd(cfg, nesterov=True),
        "rmsprop": lambda **c: opt.RMSprop(rho=cfg.rho, momentum=cfg.momentum, epsilon=cfg.epsilon, **c),
        "adam": lambda **c: opt.Adam(**adam, **c),
        "adamw": lambda **c: opt.AdamW(weight_decay=cfg.weight_decay, **adam, **c),
        "nadam": lambda **c: opt.Nadam(**adam, **c),
    }


def build_optimizer(cfg: OptimizerConfig, *, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    """Build the Keras optimizer ``cfg.name`` names, with its schedule and clipping.

    Args:
        cfg: the optimizer config; ``clipnorm`` (None: no clipping) caps each
            gradient's norm.
        steps_per_epoch: optimizer steps in one epoch, for the schedule.
        epochs: epochs of the whole training, for the schedule.

    Raises:
        ConfigError: an unknown ``cfg.name`` or ``cfg.schedule``.
    """
    builders = _builders(cfg)
    if cfg.name not in builders:
        raise ConfigError(f"optimizer={cfg.name!r} is not one of: {', '.join(OPTIMIZERS)}")
    common: dict[str, Any] = {
        "learning_rate": build_schedule(cfg, steps_per_epoch=steps_per_epoch, epochs=epochs),
        "clipnorm": cfg.clipnorm,
    }
    if cfg.weight_decay and cfg.name != "adamw":
        common["weight_decay"] = cfg.weight_decay  # Keras applies it decoupled, as AdamW does
    return builders[cfg.name](**common)
