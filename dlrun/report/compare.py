"""Plots that compare the groups of a sweep: validation curves and learning-rate sensitivity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dlrun.report.files import save_figure  # noqa: E402

# panel title -> line label -> one validation curve per seed (a Series indexed by epoch)
Curves = Mapping[str, Mapping[str, Sequence[pd.Series]]]


def _band(series: Sequence[pd.Series]) -> pd.DataFrame:
    """Mean, min and max over seeds, per epoch (seeds that stopped early drop out)."""
    table = pd.concat(list(series), axis=1)
    return pd.DataFrame({"mean": table.mean(axis=1), "lo": table.min(axis=1), "hi": table.max(axis=1)})


def plot_compare_curves(
    curves: Curves, path: Path, *, ylabel: str, target: float | None = None, title: str = ""
) -> Path:
    """Validation curve per group: the mean over seeds, the band from their min to max.

    Args:
        curves: panel -> group label -> the curves of that group's runs.
        path: where to write the PNG.
        ylabel: the plotted validation column.
        target: the time-to-target score, drawn as a dotted line when given.
        title: the figure title.
    """
    panels = list(curves)
    cols = min(len(panels), 3)
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False, sharey=True)
    for ax, panel in zip(axes.flat, panels, strict=False):  # extra axes hidden below
        for label, series in curves[panel].items():
            band = _band(series)
            (line,) = ax.plot(band.index, band["mean"], label=f"{label} (n={len(series)})")
            if len(series) > 1:
                ax.fill_between(band.index, band["lo"], band["hi"], color=line.get_color(), alpha=0.2)
        if target is not None and np.isfinite(target):
            ax.axhline(target, color="grey", linestyle=":", label="target")
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title or "validation curves: mean over seeds, band = min to max")
    fig.tight_layout()
    return save_figure(path, fig)


def plot_lr_sensitivity(points: pd.DataFrame, path: Path, *, ylabel: str, title: str = "") -> Path:
    """Validation score against learning rate (log axis), one line per group.

    Args:
        points: columns ``line`` (group label), ``lr`` (float), ``mean`` and ``std`` of
            the validation score over seeds.
        path: where to write the PNG.
        ylabel: the score's name.
        title: the figure title.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, part in points.sort_values("lr").groupby("line", sort=False):
        std = part["std"].fillna(0).to_numpy(dtype=float)
        ax.errorbar(part["lr"], part["mean"], yerr=std, marker="o", capsize=3, label=str(label))
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title or "sensitivity to the learning rate (mean ± std over seeds)")
    return save_figure(path, fig)
