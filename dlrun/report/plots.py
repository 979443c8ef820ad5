"""Plots of one run: learning curves and the confusion matrix."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dlrun.report.files import save_figure  # noqa: E402

log = logging.getLogger(__name__)


def figure_lines(draw: Callable[[Path], object], path: Path, alt: str) -> list[str]:
    """Markdown lines embedding the figure ``draw(path)`` writes, or none when drawing
    fails (logged): a plot must never hide a report's numbers."""
    try:
        draw(path)
    except Exception:
        log.exception("could not draw %s", path.name)
        return []
    return ["", f"![{alt}]({path.name})"]


def plot_curves(history: pd.DataFrame, path: Path, *, metric: str, best_epoch: int | None, title: str) -> Path:
    """Loss and ``metric``, train against validation, best epoch marked."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    panels = (("loss", "loss"), (metric, metric))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for prefix, style, name in (("", "-", "train"), ("val_", "--", "validation")):
            col = f"{prefix}{key}"
            if col in history:
                ax.plot(history["epoch"], history[col], style, label=name)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if "loss" in history and np.nanmax(history["loss"].to_numpy(dtype=float), initial=0) > 0:
        values = history[[c for c in ("loss", "val_loss") if c in history]].to_numpy(dtype=float)
        if np.isfinite(values).any() and np.nanmin(values) > 0 and np.nanmax(values) / np.nanmin(values) > 100:
            axes[0].set_yscale("log")
    fig.suptitle(title)
    return save_figure(path, fig)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: Path, *, title: str) -> Path:
    """Counts per (true, predicted) class with each row's share (the recall on the diagonal),
    shaded by that share so that a small class's errors show as clearly as a large one's."""
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    rows = matrix.sum(axis=1, keepdims=True)
    shade = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(matrix), strict=True):  # empty cells stay blank
        ax.text(j, i, f"{matrix[i, j]}\n{shade[i, j]:.0%}", ha="center", va="center",
                color="white" if shade[i, j] > 0.6 else "black", fontsize=7)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save_figure(path, fig)
