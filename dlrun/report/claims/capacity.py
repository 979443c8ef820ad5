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
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from dlrun.report.claims.stats import (
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
        runs: one row per job (``cfg.*`` keys, ``seed``, ``status``, ``params``, ``val_score``,
            ``train_fit``, ``val_fit``, ``verdict``, ``run_dir``, ...).
        groups: the sweep's group table (unused: this check groups by architecture itself).
        keys: the swept ``cfg.*`` keys (the architecture's).
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
    ok[GROUP] = [", ".join(f"{k[4:]}={r[k]}" for k in keys) for _, r in ok.iterrows()]
    table = _by_capacity(ok)
    greater = bool(ok["greater_is_better"].dropna().iloc[0]) if ok["greater_is_better"].notna().any() else True
    headline = str(ok["headline"].dropna().iloc[0]) if ok["headline"].notna().any() else "score"
    fit = str(ok["fit_metric"].dropna().iloc[0]) if ok["fit_metric"].notna().any() else "fit"
    lines = head + _findings(ok, table, greater=greater, headline=headline)
    lines += ["", _markdown(table, headline=headline, fit=fit), ""]
    lines += [f"Architectures in order of parameter count; ± is the std over seeds. The validation loss "
              "(log-loss) shows overfitting first: an overconfident network's loss climbs while its "
              f"{fit} barely moves. Differences are paired by seed (each seed fixes the split); a "
              "difference is called real when its 95% Student-t interval over seeds excludes zero."]
    try:
        _plot(table, ok, keys, headline=headline, fit=fit, path=Path(out_dir) / "capacity.png")
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


def _best(table: pd.DataFrame, *, greater: bool) -> int:
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
    best = _best(table, greater=greater)
    enough = _enough(table, best, greater=greater)
    smallest, largest = 0, len(table) - 1
    t, sign = table, 1 if greater else -1

    def diff(a: int, b: int, column: str = "val_score"):
        return paired(ok, key=GROUP, value=t.loc[a, "group"], baseline=t.loc[b, "group"], column=column)

    rise = diff(best, smallest)  # best minus smallest: positive (for greater) is a rise
    fall = diff(largest, best)  # largest minus best: negative (for greater) is a fall
    rises = (rise.above_zero if greater else rise.below_zero) if rise.n > 1 else sign * rise.mean > 0
    falls = (fall.below_zero if greater else fall.above_zero) if fall.n > 1 else sign * fall.mean < 0
    one_seed = " (one seed: the noise is unknown)." if rise.n < 2 else ""
    if best == largest:
        large_end = "the best is the largest network tried; widen the range to reach the overfitting side."
    else:
        large_end = f"largest minus best = {fall.text()}" + (
            one_seed or (" (a fall beyond seed noise)." if falls else " (a plateau: within seed noise)."))
    bullets = [
        f"- **Validation {headline} against size:** the smallest network ({_name(t, smallest)}) scores "
        f"{t.loc[smallest, 'val_text']}, the best ({_name(t, best)}) {t.loc[best, 'val_text']}, the "
        f"largest ({_name(t, largest)}) {t.loc[largest, 'val_text']}.",
        f"- **Rise with capacity:** best minus smallest = {rise.text()}" + (
            one_seed or (" (beyond seed noise)." if rises else
                         " (within seed noise: the small end is already near the top).")),
        f"- **At the large end:** {large_end}",
        _border_line(table),
        _loss_line(ok, table, diff),
        f"- **Start small, add capacity until validation stops improving:** {_name(t, enough)} is the "
        f"smallest network within one standard error of the best validation {headline}; larger ones "
        "buy nothing measurable here.",
    ]
    return [_verdict(rises, falls, best == largest), "", *bullets]


def _verdict(rises: bool, falls: bool, best_is_largest: bool) -> str:
    if rises and not best_is_largest:
        shape = "then falls" if falls else "then stops rising"
        return (f"**Supported:** validation score rises with capacity beyond seed noise, {shape} once "
                "the larger networks overfit.")
    if rises:
        return ("**Partly supported:** validation score rises with capacity, but is still best at the "
                "largest network tried, so the overfitting side is not reached.")
    tail = ("and falls for the largest networks" if falls else "and stays flat as the networks grow")
    return ("**Not supported as stated:** the smallest network is already within seed noise of the "
            f"best {tail}; on this data capacity is not what limits the validation score.")


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


def _loss_line(ok: pd.DataFrame, table: pd.DataFrame, diff) -> str:
    losses = table["val_loss"].to_numpy(dtype=float)
    if not np.isfinite(losses).any():
        return "- **Validation loss:** not recorded in these runs' metrics.json."
    low, largest = int(np.nanargmin(losses)), len(table) - 1
    if low == largest:
        return "- **Validation loss:** lowest at the largest network tried."
    d = diff(largest, low, "val_loss")
    real = d.above_zero if d.n > 1 else d.mean > 0
    return (f"- **Validation loss:** lowest at {_name(table, low)} ({table.loc[low, 'val_loss_text']}); the "
            f"largest network's is higher by {d.text()}" + (" (beyond seed noise)." if real else " (within noise)."))


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


def _series_key(keys: list[str]) -> Optional[str]:
    """The key drawn as separate lines (depth), when the sweep has more than one key."""
    if len(keys) < 2:
        return None
    return next((k for k in keys if k.endswith(".depth")), keys[0])


def _plot(table: pd.DataFrame, ok: pd.DataFrame, keys: list[str], *, headline: str, fit: str,
          path: Path) -> Path:
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
            tag = f"{series[4:]}={s} " if series else ""
            ax.plot(part["params"], part[train_col], "--", color=c, marker=".", label=f"{tag}train")
            ax.errorbar(part["params"], part[val_col], yerr=part[std_col], color=c, marker="o",
                        capsize=3, label=f"{tag}validation")
        ax.set_xscale("log")
        ax.set_xlabel("parameters (log scale)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("capacity: train (dashed) against validation (solid, ± std over seeds)")
    fig.tight_layout()
    return save_figure(path, fig)
