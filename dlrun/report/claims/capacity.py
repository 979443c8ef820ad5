"""Course 1's capacity claim, checked on a sweep over the network's depth and width.

The workflow it supports: start with a small network and add capacity until the
validation score stops improving. The check orders the swept architectures by parameter
count, draws train and validation scores against it (``capacity.png``), names where the
diagnosis turns from underfitting to overfitting, and picks the smallest network whose
validation score is within one standard error of the best (the one-standard-error rule).
Differences between two architectures are paired by seed (same split, same shuffling).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlrun.report.aggregate import label
from dlrun.report.claims.stats import (
    Interval,
    add_split_metrics,
    finished,
    majority_verdict,
    mean_std,
    overfits,
    paired,
    underfits,
    verdict_counts,
)

log = logging.getLogger(__name__)

GROUP = "_group"
DEFAULT_CLAIM = ("Validation score rises with capacity (depth, width), then falls or stops rising once "
                 "the network overfits; the smallest network at the top is the one to keep.")


def check(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
          out_dir: Path) -> list[str]:
    """Order the architectures by size, find the under/overfitting border, test the claim.

    Args:
        runs: one row per job (its config keys, ``seed``, ``status``, ``params``, ``val_score``,
            ``train_fit``, ``val_fit``, ``verdict``, ``run_dir``, ...).
        groups: the sweep's group table (unused: this check groups by architecture itself).
        keys: the swept config keys (the architecture's).
        study: the ``study`` config (``claim``).
        out_dir: where ``capacity.png`` goes.

    Returns:
        Markdown lines for ``study.md``.
    """
    head = ["## Claim", "", f"> {study.get('claim') or DEFAULT_CLAIM}", ""]
    ok = finished(runs)
    if ok.empty or not keys or "params" not in ok:
        return head + ["Not checked: no finished runs that differ in architecture."]
    ok = add_split_metrics(ok)
    ok[GROUP] = [label(r, keys) for _, r in ok.iterrows()]
    table = _by_capacity(ok)
    greater = bool(ok["greater_is_better"].dropna().iloc[0]) if ok["greater_is_better"].notna().any() else True
    headline = str(ok["headline"].dropna().iloc[0]) if ok["headline"].notna().any() else "score"
    fit = str(ok["fit_metric"].dropna().iloc[0]) if ok["fit_metric"].notna().any() else "fit"
    lines = head + _findings(ok, table, greater=greater, headline=headline)
    lines += ["", _markdown(table, headline=headline, fit=fit), ""]
    lines += [f"Architectures in order of parameter count; ± is the std over seeds. The validation loss "
              "(log-loss) shows overfitting first: an overconfident network's loss climbs while its "
              f"{fit} barely moves. Differences are paired by seed (each seed fixes the split); a "
              "difference is called real when its 95% Student-t interval over seeds excludes zero. The "
              "best of many architectures is picked after the fact and flattered by noise, so read a "
              "small drop from it as a plateau."]
    try:
        pick = table.loc[_enough(table, _best_row(table, greater=greater), greater=greater), "params"]
        _plot(table, ok, keys, headline=headline, fit=fit, pick=float(pick), path=Path(out_dir) / "capacity.png")
        lines += ["", "![train and validation scores against parameter count](capacity.png)"]
    except Exception:  # a plot must not hide the numbers
        log.exception("could not draw capacity.png")
    return lines


def _by_capacity(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per architecture, smallest first: means, stds, verdicts."""
    rows = []
    for name, g in ok.groupby(GROUP, sort=False):
        rows.append({
            "group": name, "n": len(g), "params": float(g["params"].median()),
            "train_head": g["train_head"].mean(), "val_head": g["val_score"].mean(),
            "val_head_std": g["val_score"].std(ddof=1) if len(g) > 1 else math.nan,
            "train_fit": g["train_fit"].mean(), "val_fit": g["val_fit"].mean(),
            "train_fit_std": g["train_fit"].std(ddof=1) if len(g) > 1 else math.nan,
            "val_fit_std": g["val_fit"].std(ddof=1) if len(g) > 1 else math.nan,
            "train_loss": g["train_loss"].mean(), "val_loss": g["val_loss"].mean(),
            "val_loss_std": g["val_loss"].std(ddof=1) if len(g) > 1 else math.nan,
            "val_text": mean_std(g["val_score"]), "val_fit_text": mean_std(g["val_fit"]),
            "val_loss_text": mean_std(g["val_loss"]), "gap_text": mean_std(g["gap"]),
            "verdict": majority_verdict(g["verdict"]), "verdicts": verdict_counts(g["verdict"]),
        })
    return pd.DataFrame(rows).sort_values(["params", "group"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Trend:
    """How one validation measure moves with capacity: smallest -> best -> largest network."""

    column: str  # val_score or val_loss in the runs table
    label: str
    best: int  # row of the best architecture in the capacity table
    rise: Interval  # best minus smallest, paired by seed
    fall: Interval  # largest minus best, paired by seed
    rises: bool  # the best beats the smallest beyond seed noise
    falls: bool  # the largest is worse than the best beyond seed noise
    best_is_largest: bool


def _trend(ok: pd.DataFrame, table: pd.DataFrame, *, column: str, mean_col: str, label: str,
           greater: bool) -> Trend | None:
    """Compare the best architecture on ``column`` with the smallest and the largest, by seed."""
    means = table[mean_col].to_numpy(dtype=float)
    if not np.isfinite(means).any():
        return None
    best, largest = int(np.nanargmax(means) if greater else np.nanargmin(means)), len(table) - 1

    def diff(a: int, b: int) -> Interval:
        return paired(ok, key=GROUP, value=table.loc[a, "group"], baseline=table.loc[b, "group"], column=column)

    def better(d: Interval) -> bool:  # a is better than b beyond noise (any amount, with one seed)
        if d.n < 2:
            return (d.mean > 0) if greater else (d.mean < 0)
        return d.above_zero if greater else d.below_zero

    rise, fall = diff(best, 0), diff(best, largest)
    return Trend(column, label, best, rise, Interval(-fall.mean, fall.half, fall.n), better(rise), better(fall),
                 best == largest)


def _trend_line(t: Trend, table: pd.DataFrame, text_col: str) -> str:
    smallest, largest = 0, len(table) - 1
    noise = " (one seed: the noise is unknown)" if t.rise.n < 2 else ""
    line = (f"- **{t.label} against size:** smallest network ({_name(table, smallest)}) "
            f"{table.loc[smallest, text_col]}; best ({_name(table, t.best)}) {table.loc[t.best, text_col]}; "
            f"largest ({_name(table, largest)}) {table.loc[largest, text_col]}. Best minus smallest "
            f"{t.rise.text()}" + (noise or (" (beyond seed noise)" if t.rises else " (within seed noise)")))
    if t.best_is_largest:
        return line + "; the best is the largest network tried: widen the range to reach the overfitting side."
    return line + f"; largest minus best {t.fall.text()}" + (
        noise or (" (worse, beyond seed noise)." if t.falls else " (a plateau: within seed noise)."))


def _best_row(table: pd.DataFrame, *, greater: bool) -> int:
    scores = table["val_head"].to_numpy(dtype=float)
    return int(np.nanargmax(scores) if greater else np.nanargmin(scores))


def _enough(table: pd.DataFrame, best: int, *, greater: bool) -> int:
    """The smallest architecture within one standard error of the best validation score."""
    row = table.loc[best]
    se = row["val_head_std"] / math.sqrt(row["n"]) if row["n"] > 1 else 0.0
    se = 0.0 if not np.isfinite(se) else se
    scores = table["val_head"].to_numpy(dtype=float)
    close = scores >= row["val_head"] - se if greater else scores <= row["val_head"] + se
    return int(np.flatnonzero(close)[0])


def _findings(ok: pd.DataFrame, table: pd.DataFrame, *, greater: bool, headline: str) -> list[str]:
    head = _trend(ok, table, column="val_score", mean_col="val_head", label=f"Validation {headline}",
                  greater=greater)
    loss = _trend(ok, table, column="val_loss", mean_col="val_loss", label="Validation loss", greater=False)
    enough = _enough(table, _best_row(table, greater=greater), greater=greater)
    bullets = [_trend_line(head, table, "val_text")]
    if loss is not None:
        bullets.append(_trend_line(loss, table, "val_loss_text"))
    bullets += [
        _border_line(table),
        f"- **Start small, add capacity until validation stops improving:** {_name(table, enough)} is the "
        f"smallest network within one standard error of the best validation {headline}; larger ones "
        "buy nothing measurable here.",
    ]
    return [_verdict(head, loss, headline=headline), "", *bullets]


def _verdict(head: Trend, loss: Trend | None, *, headline: str) -> str:
    trends = [t for t in (head, loss) if t is not None]
    if not any(t.rises for t in trends):
        tail = "falls for the largest networks" if any(t.falls for t in trends) else "stays flat as they grow"
        return ("**Not supported as stated:** the smallest network is already within seed noise of the best "
                f"(on {headline} and on validation loss), and the score {tail}; on this data capacity is not "
                "what limits the validation score.")
    if all(t.best_is_largest for t in trends):
        return ("**Partly supported:** validation improves with capacity, but is still best at the "
                "largest network tried, so the overfitting side is not reached.")
    how = (f"validation {headline} improves with capacity beyond seed noise" if head.rises else
           f"validation loss improves with capacity beyond seed noise (on {headline} the rise is within seed noise)")
    worse = [t.label.lower() for t in trends if t.falls and not t.best_is_largest]
    shape = (f"then gets worse for the largest networks ({' and '.join(worse)}, beyond seed noise)" if worse
             else "then stops improving")
    return f"**Supported:** {how}, {shape} as they overfit."


def _name(table: pd.DataFrame, i: int) -> str:
    return f"{table.loc[i, 'group']}, {int(table.loc[i, 'params']):,} parameters"


def _border_line(table: pd.DataFrame) -> str:
    under = [i for i, v in enumerate(table["verdict"]) if underfits(v)]
    over = [i for i, v in enumerate(table["verdict"]) if overfits(v)]
    if not under and not over:
        return "- **Underfitting / overfitting border:** every network is diagnosed a good fit."
    parts = []
    if under:
        parts.append(f"underfitting up to {_name(table, max(under))}")
    else:
        parts.append(f"no network underfits (the smallest, {_name(table, 0)}, is *{table.loc[0, 'verdict']}*)")
    if over:
        parts.append(f"overfitting from {_name(table, min(over))}")
    else:
        parts.append("no network overfits")
    text = "- **Underfitting / overfitting border (majority diagnosis over seeds):** " + "; ".join(parts) + "."
    if under and over and min(over) < max(under):
        text += " The verdicts interleave in between: the border is not sharp on this data."
    elif over and min(over) > 0:
        text += f" The border lies between {int(table.loc[min(over) - 1, 'params']):,} and " \
                f"{int(table.loc[min(over), 'params']):,} parameters."
    return text


def _markdown(table: pd.DataFrame, *, headline: str, fit: str) -> str:
    lines = [
        f"| architecture | params | n | train {fit} | val {fit} | gap | val {headline} | val loss | diagnosis |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['group']} | {int(r['params']):,} | {r['n']} | {r['train_fit']:.4f} | {r['val_fit_text']} | "
            f"{r['gap_text']} | {r['val_text']} | {r['val_loss_text']} | {r['verdicts']} |"
        )
    return "\n".join(lines)


def _series_key(keys: list[str]) -> str | None:
    """The key drawn as separate lines (depth), when the sweep has more than one key."""
    if len(keys) < 2:
        return None
    return next((k for k in keys if k.endswith(".depth")), keys[0])


def _plot(table: pd.DataFrame, ok: pd.DataFrame, keys: list[str], *, headline: str, fit: str,
          pick: float, path: Path) -> Path:
    """Train (dashed) and validation (solid) headline, fit metric and loss against parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlrun.report.files import save_figure

    series = _series_key(keys)
    labels = ok.drop_duplicates(GROUP).set_index(GROUP)
    table = table.assign(series=[str(labels.loc[g, series]) if series else "" for g in table["group"]])
    panels = ((headline, "train_head", "val_head", "val_head_std"), (fit, "train_fit", "val_fit", "val_fit_std"),
              ("loss", "train_loss", "val_loss", "val_loss_std"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (name, train_col, val_col, std_col) in zip(axes, panels, strict=True):
        for i, (s, part) in enumerate(table.groupby("series", sort=False)):
            c = colors[i % len(colors)]
            tag = f"{series}={s} " if series else ""
            ax.plot(part["params"], part[train_col], "--", color=c, marker=".", label=f"{tag}train")
            ax.errorbar(part["params"], part[val_col], yerr=part[std_col], color=c, marker="o",
                        capsize=3, label=f"{tag}validation")
        ax.axvline(pick, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("parameters (log scale)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("capacity: train (dashed) against validation (solid, ± std over seeds); "
                 "dotted: the smallest network within one standard error of the best")
    fig.tight_layout()
    return save_figure(path, fig)
