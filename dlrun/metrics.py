"""Scores computed from predictions with scikit-learn (no TensorFlow here)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm
from sklearn.dummy import DummyClassifier, DummyRegressor

from dlrun.task import TaskSpec

_EPS = 1e-7  # the clipping Keras applies to probabilities in cross-entropy


def class_probabilities(pred: np.ndarray, task: str) -> np.ndarray:
    """(n, k) class probabilities from a model's raw output."""
    pred = np.asarray(pred, dtype=np.float64)
    if task == "binary":
        p1 = pred.reshape(-1)
        return np.stack([1 - p1, p1], axis=1)
    return pred


def predicted_labels(pred: np.ndarray, task: str, *, threshold: float = 0.5) -> np.ndarray:
    """Class codes from a model's raw output; binary scores at or above ``threshold`` are 1."""
    if task == "binary":
        return (np.asarray(pred).reshape(-1) >= threshold).astype(np.int64)
    return np.argmax(pred, axis=1)


def _classification(y: np.ndarray, pred: np.ndarray, spec: TaskSpec, labels: np.ndarray | None) -> dict[str, float]:
    proba = np.clip(class_probabilities(pred, spec.task), _EPS, 1 - _EPS)
    proba = proba / proba.sum(axis=1, keepdims=True)
    if labels is None:
        labels = predicted_labels(pred, spec.task, threshold=spec.threshold)
    k = proba.shape[1]
    out = {
        "loss": float(skm.log_loss(y, proba, labels=np.arange(k))),
        "accuracy": float(skm.accuracy_score(y, labels)),
        "macro_f1": float(skm.f1_score(y, labels, average="macro", labels=np.arange(k), zero_division=0)),
    }
    out["balanced_accuracy"] = float(skm.balanced_accuracy_score(y, labels))
    present = np.unique(y)
    if spec.task == "binary" and len(present) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y, proba[:, 1]))
        out["pr_auc"] = float(skm.average_precision_score(y, proba[:, 1]))
    elif spec.task == "multiclass" and len(present) == k:
        out["roc_auc"] = float(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
        out["pr_auc"] = float(skm.average_precision_score(np.eye(k)[y], proba, average="macro"))
    return out


def _regression(y: np.ndarray, pred: np.ndarray, y_mean: float, y_std: float) -> dict[str, float]:
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    out = {"loss": float(np.mean((pred - y) ** 2))}  # in the standardized units training sees
    y_orig, p_orig = y * y_std + y_mean, pred * y_std + y_mean
    out["mse"] = float(skm.mean_squared_error(y_orig, p_orig))
    out["mae"] = float(skm.mean_absolute_error(y_orig, p_orig))
    out["r2"] = float(skm.r2_score(y_orig, p_orig)) if len(y) > 1 else float("nan")
    return out


def compute_metrics(
    y: np.ndarray, pred: np.ndarray, spec: TaskSpec, *, labels: np.ndarray | None = None,
    y_mean: float = 0.0, y_std: float = 1.0,
) -> dict[str, float]:
    """Every metric of the task from labels (or targets) and the model's raw output.

    Label metrics (accuracy, macro-F1) use ``labels`` when given (the post-process stage's
    decisions), else the task's threshold or argmax; score metrics use ``pred``.
    Regression errors are reported in the target's original units.
    Non-finite predictions give NaN scores instead of an exception.
    """
    if not np.all(np.isfinite(pred)):
        names = (["loss", "accuracy", "macro_f1", "balanced_accuracy"] if spec.is_classification
                 else ["loss", "mse", "mae", "r2"])
        return {n: float("nan") for n in names}
    if spec.is_classification:
        return _classification(np.asarray(y).astype(np.int64), pred, spec, labels)
    return _regression(y, pred, y_mean, y_std)


def baseline_metrics(
    y_train: np.ndarray, y_eval: np.ndarray, spec: TaskSpec, *, y_mean: float = 0.0, y_std: float = 1.0
) -> dict[str, float]:
    """The dumb baseline's scores: class priors (majority class) or the training mean."""
    dummy_x_train, dummy_x_eval = np.zeros((len(y_train), 1)), np.zeros((len(y_eval), 1))
    if spec.is_classification:
        model = DummyClassifier(strategy="prior").fit(dummy_x_train, y_train)
        proba = np.zeros((len(y_eval), spec.units if spec.task == "multiclass" else 2))
        proba[:, model.classes_] = model.predict_proba(dummy_x_eval)
        pred = proba[:, 1] if spec.task == "binary" else proba
        return compute_metrics(y_eval, pred, spec)
    model = DummyRegressor(strategy="mean").fit(dummy_x_train, y_train)
    return compute_metrics(y_eval, model.predict(dummy_x_eval), spec, y_mean=y_mean, y_std=y_std)

