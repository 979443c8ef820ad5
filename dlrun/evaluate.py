"""Evaluation: final metrics on every split, the dumb baseline, and per-class reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix

from dlrun.data.table import Splits
from dlrun.metrics import baseline_metrics, compute_metrics, predicted_labels
from dlrun.task import TaskSpec


def evaluate_splits(predict_fn, splits: Splits, spec: TaskSpec) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """Metrics for train, validation and test in inference mode; also the test predictions.

    Args:
        predict_fn: maps features to the model's raw output.
        splits: the data.
        spec: the task.

    Returns:
        ``({"train": {...}, "val": {...}, "test": {...}}, test_predictions)``.
    """
    out: dict[str, dict[str, float]] = {}
    test_pred = None
    for name, x, y in (
        ("train", splits.x_train, splits.y_train),
        ("val", splits.x_val, splits.y_val),
        ("test", splits.x_test, splits.y_test),
    ):
        pred = predict_fn(x)
        out[name] = compute_metrics(y, pred, spec, y_mean=splits.y_mean, y_std=splits.y_std)
        if name == "test":
            test_pred = pred
    return out, test_pred


def baseline(splits: Splits, spec: TaskSpec) -> dict[str, float]:
    """The dumb baseline (majority class / training mean) scored on the test split."""
    return baseline_metrics(splits.y_train, splits.y_test, spec, y_mean=splits.y_mean, y_std=splits.y_std)


def confusion(splits: Splits, test_pred: np.ndarray, spec: TaskSpec) -> np.ndarray:
    labels = predicted_labels(test_pred, spec.task)
    return confusion_matrix(splits.y_test, labels, labels=np.arange(splits.n_classes))


def class_report(y_true: np.ndarray, pred: np.ndarray, spec: TaskSpec, *, class_names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (rows of every fold's test split pooled)."""
    labels = predicted_labels(pred, spec.task)
    report = classification_report(
        y_true, labels, labels=np.arange(len(class_names)),
        target_names=class_names, output_dict=True, zero_division=0,
    )
    frame = pd.DataFrame(report).T
    frame.index.name = "class"
    return frame
