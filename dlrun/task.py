"""What the task type decides: output layer, loss, headline metric and threshold (DESIGN §2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dlrun.errors import ConfigError

if TYPE_CHECKING:  # numpy is imported where it is used: config validation reads HEADLINES
    import numpy as np

# A class below this share of the training rows makes the data "imbalanced".
IMBALANCE_SHARE = 0.10
# The metrics each task can lead with (task.headline); dlrun.metrics computes them all.
HEADLINES = {
    "binary": ("roc_auc", "pr_auc", "accuracy", "macro_f1", "balanced_accuracy", "loss"),
    "multiclass": ("accuracy", "macro_f1", "balanced_accuracy", "roc_auc", "pr_auc", "loss"),
    "regression": ("mae", "mse", "r2", "loss"),
}
_LOWER_IS_BETTER = ("loss", "mae", "mse")


@dataclass(frozen=True)
class TaskSpec:
    """The choices that follow from the task type.

    Attributes:
        task: ``binary``, ``multiclass`` or ``regression``.
        units: width of the output layer.
        activation: its activation.
        loss: the Keras loss name; :func:`dlrun.losses.per_row_loss` is its one definition
            for both training loops.
        headline: the metric reports lead with and sweeps rank by.
        greater_is_better: the headline's direction.
        fit_metric: the bounded score the diagnosis compares between train and
            validation (accuracy for classification, R² for regression).
        threshold: binary tasks: the score at or above which a row is predicted positive.
    """

    task: str
    units: int
    activation: str
    loss: str
    headline: str
    greater_is_better: bool
    fit_metric: str
    threshold: float = 0.5

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"


def _default_headline(task: str, n_classes: int, y_train: np.ndarray) -> str:
    import numpy as np

    if task == "regression":
        return "mae"
    shares = np.bincount(y_train.astype(int), minlength=n_classes) / max(len(y_train), 1)
    imbalanced = bool(shares.min() < IMBALANCE_SHARE)
    if task == "binary":
        return "pr_auc" if imbalanced else "roc_auc"
    return "macro_f1" if imbalanced else "accuracy"


def task_spec(
    task: str, n_classes: int, y_train: np.ndarray, *, headline: str | None = None,
    threshold: float = 0.5,
) -> TaskSpec:
    """Pick output layer, loss and headline metric for a task and its training labels.

    Args:
        task: ``binary``, ``multiclass`` or ``regression``.
        n_classes: classes of a classification task.
        y_train: the training labels (their balance picks the default headline).
        headline: ``task.headline``; None picks by task and balance. Defaults to None.
        threshold: ``task.threshold`` for binary decisions. Defaults to 0.5.

    Raises:
        ConfigError: a headline the task cannot be scored by.
    """
    if headline is not None and headline not in HEADLINES[task]:
        raise ConfigError(f"task.headline={headline!r} does not apply to a {task} task; use one of: "
                          f"{', '.join(HEADLINES[task])}")
    head = headline or _default_headline(task, n_classes, y_train)
    greater = head not in _LOWER_IS_BETTER
    if task == "regression":
        return TaskSpec(task, 1, "linear", "mse", head, greater, "r2", threshold)
    if task == "binary":
        return TaskSpec(task, 1, "sigmoid", "binary_crossentropy", head, greater, "accuracy", threshold)
    return TaskSpec(task, n_classes, "softmax", "sparse_categorical_crossentropy", head, greater,
                    "accuracy", threshold)
