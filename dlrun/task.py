"""What the task type decides: output layer, loss and the headline metric (DESIGN §2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A class below this share of the training rows makes the data "imbalanced".
IMBALANCE_SHARE = 0.10


@dataclass(frozen=True)
class TaskSpec:
    """The choices that follow from the task type.

    Attributes:
        task: ``binary``, ``multiclass`` or ``regression``.
        units: width of the output layer.
        activation: its activation.
        loss: a Keras loss name.
        headline: the metric reports lead with.
        greater_is_better: the headline's direction.
        fit_metric: the bounded score the diagnosis compares between train and
            validation (accuracy for classification, R² for regression).
    """

    task: str
    units: int
    activation: str
    loss: str
    headline: str
    greater_is_better: bool
    fit_metric: str

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"


def task_spec(task: str, n_classes: int, y_train: np.ndarray) -> TaskSpec:
    """Pick output layer, loss and headline metric for a task and its training labels."""
    if task == "regression":
        return TaskSpec(task, 1, "linear", "mse", "mae", False, "r2")
    shares = np.bincount(y_train.astype(int), minlength=n_classes) / max(len(y_train), 1)
    imbalanced = bool(shares.min() < IMBALANCE_SHARE)
    if task == "binary":
        headline = "pr_auc" if imbalanced else "roc_auc"
        return TaskSpec(task, 1, "sigmoid", "binary_crossentropy", headline, True, "accuracy")
    headline = "macro_f1" if imbalanced else "accuracy"
    return TaskSpec(
        task, n_classes, "softmax", "sparse_categorical_crossentropy", headline, True, "accuracy"
    )
