"""The training loss: one definition for both training loops and the data-loss metric."""

from __future__ import annotations

from collections.abc import Callable

import keras

from dlrun.task import TaskSpec


def per_row_loss(spec: TaskSpec) -> Callable:
    """``loss(y, pred)``: the task's loss (``spec.loss``) for each row, in float32.

    Targets arrive as one value per row (class codes or standardized targets); for a
    single-unit output they are shaped like the predictions first.
    """
    fn = keras.losses.get(spec.loss)

    def loss(y, pred):
        pred = keras.ops.cast(pred, "float32")
        y = keras.ops.cast(y, "float32")
        if spec.units == 1:
            y = keras.ops.reshape(y, (-1, 1))
        return fn(y, pred)

    return loss
