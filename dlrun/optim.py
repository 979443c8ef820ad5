"""Optimizers and learning-rate schedules from :class:`~dlrun.config.OptimizerConfig`."""

from __future__ import annotations

import keras

from dlrun.config import OptimizerConfig


def build_schedule(cfg: OptimizerConfig, *, steps_per_epoch: int, epochs: int):
    """The learning rate as a float (constant) or a Keras schedule counted in steps.

    Decay periods are given in epochs (``decay_epochs``) so they do not change meaning
    when the batch size does.
    """
    decay_steps = max(1, round(cfg.decay_epochs * steps_per_epoch))
    schedules = keras.optimizers.schedules
    if cfg.schedule == "constant":
        return cfg.lr
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
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def build_optimizer(cfg: OptimizerConfig, *, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    """Build the Keras optimizer ``cfg.name`` names, with its schedule and clipping."""
    lr = build_schedule(cfg, steps_per_epoch=steps_per_epoch, epochs=epochs)
    common = {"learning_rate": lr, "clipnorm": cfg.clipnorm}
    opt = keras.optimizers
    if cfg.name == "sgd":
        return opt.SGD(**common)
    if cfg.name in ("momentum", "nesterov"):
        momentum = cfg.momentum or 0.9
        return opt.SGD(momentum=momentum, nesterov=cfg.name == "nesterov" or cfg.nesterov, **common)
    if cfg.name == "rmsprop":
        return opt.RMSprop(rho=cfg.rho, momentum=cfg.momentum, epsilon=cfg.epsilon, **common)
    adam_args = {"beta_1": cfg.beta_1, "beta_2": cfg.beta_2, "epsilon": cfg.epsilon}
    if cfg.name == "adam":
        return opt.Adam(**adam_args, **common)
    if cfg.name == "adamw":
        return opt.AdamW(weight_decay=cfg.weight_decay or 4e-3, **adam_args, **common)
    if cfg.name == "nadam":
        return opt.Nadam(**adam_args, **common)
    raise ValueError(f"unknown optimizer {cfg.name!r}")
