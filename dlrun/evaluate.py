"""Evaluation: final metrics on every split, the dumb baseline, and per-class reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix

from dlrun.data.table import Splits
from dlrun.metrics import baseline_metrics, compute_metrics
from dlrun.task import TaskSpec


def evaluate_parts(
    splits: Splits, spec: TaskSpec, predictions: dict[str, np.ndarray],
    labels: dict[str, np.ndarray | None],
) -> dict[str, dict[str, float]]:
    """Every metric of the task for each part, from its raw predictions and decided labels.

    Args:
        splits: the data.
        spec: the task.
        predictions: each part's raw model output (inference mode).
        labels: each part's class codes from the post-process stage (None for regression).

    Returns:
        ``{"train": {...}, "val": {...}, "test": {...}}``.
    """
    return {
        name: compute_metrics(part.y, predictions[name], spec, labels=labels.get(name),
                              y_mean=splits.y_mean, y_std=splits.y_std)
        for name, part in splits.parts().items()
    }


def baseline(splits: Splits, spec: TaskSpec) -> dict[str, float]:
    """The dumb baseline (majority class / training mean) scored on the test split."""
    return baseline_metrics(splits.train.y, splits.test.y, spec, y_mean=splits.y_mean, y_std=splits.y_std)


def confusion(y_true: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The confusion matrix over every class code (rows: true class)."""
    return confusion_matrix(y_true, labels, labels=np.arange(n_classes))


def class_report(y_true: np.ndarray, labels: np.ndarray, *, class_names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (rows of every fold's test split pooled)."""
    report = classification_report(
        y_true, labels, labels=np.arange(len(class_names)),
        target_names=class_names, output_dict=True, zero_division=0,
    )
    frame = pd.DataFrame(report).T
    frame.index.name = "class"
    return frame
