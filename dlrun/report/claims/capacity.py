"""Course 1's capacity claim, checked on a sweep over the network's depth and width.

The workflow it supports: start with a small network and add capacity until the
validation score stops improving. The check orders the swept architectures by parameter
count, draws train, validation and test scores against it (``capacity.png``) and names
where the diagnosis turns from underfitting to overfitting.

One rule decides everything, the paired t-test of :mod:`dlrun.report.claims.stats`:

- *Choices, on validation.* The best network is the one with the best mean validation
  score; the network to keep is the smallest *adequate* one: the paired 95% Student-t
  interval of its validation score minus the best's lies above ``-study.tolerance`` × the
  best score (1% by default). This replaces the one-standard-error rule, which measured
  "within noise" another way than the tests, and it asks for evidence of closeness: a
  network too noisy to judge (a wide interval) is not kept, as "not significantly worse"
  alone would keep it. A choice, not a claim: no correction.
- *The claim, on test.* The best network's test score against the smallest network's
  (the rise) and against the largest network's (the fall or plateau), paired by seed,
  Holm's correction over the two; the test loss is read the same way as a second family.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlrun.report.aggregate import label
from dlrun.report.claims.stats import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    PairedTest,
    add_split_metrics,
    finished,
    majority_verdict,
    mean_std,
    overfits,
    paired_differences,
    paired_test,
    rule_note,
    underfits,
    verdict_counts,
    verdicts,
)
from dlrun.report.plots import figure_lines

GROUP = "_group"
SPLIT = "the best and the kept network chosen on validation, the claim read on test"
DEFAULT_CLAIM = ("Validation score rises with capacity (depth, width), then falls or stops rising once "
                 "the network overfits; the smallest network at the top is the one to keep.")


def check(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
          out_dir: Path) -> list[str]:
    """Order the architectures by size, choose on validation, test the claim on test.

    Args:
        runs: one row per job (its config keys, ``seed``, ``status``, ``params``, ``val_score``,
            ``test_score``, ``train_fit``, ``val_fit``, ``verdict``, ``run_dir``, ...).
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
    ok = add_split_metrics(ok, splits=("train", "val", "test"))
    ok["test_score"] = pd.to_numeric(ok["test_score"], errors="coerce") if "test_score" in ok else ok["test_head"]
    ok[GROUP] = [label(r, keys) for _, r in ok.iterrows()]
    table = _by_capacity(ok)
    if len(table) < 2:
        return head + ["Not checked: the finished runs have a single architecture."]
    greater = bool(ok["greater_is_better"].dropna().iloc[0]) if ok["greater_is_better"].notna().any() else True
    headline = str(ok["headline"].dropna().iloc[0]) if ok["headline"].notna().any() else "score"
    fit = str(ok["fit_metric"].dropna().iloc[0]) if ok["fit_metric"].notna().any() else "fit"
    best = _best_row(table, "val_head", greater=greater)
    tolerance = 0.01 if study.get("tolerance") is None else float(study["tolerance"])
    margin = tolerance * abs(float(table.loc[best, "val_head"]))
    kept, adequate = _kept(ok, table, best, greater=greater, margin=margin)
    score = _claim(ok, table, best, column="test_score", greater=greater, label=f"test {headline}")
    loss = _claim(ok, table, best, column="test_loss", greater=False, label="test loss")
    lines = head + [_verdict_line(score, table, headline=headline), ""]
    lines += [_trend_line(score, table), _trend_line(loss, table), _border_line(table)]
    lines += [_kept_line(ok, table, best, kept, adequate, headline=headline, greater=greater, margin=margin,
                         tolerance=tolerance)]
    lines += ["", _markdown(table, headline=headline, fit=fit, best=best, kept=kept), ""]
    lines += [f"Architectures in order of parameter count; ± is the std over seeds. The loss (log-loss) shows "
              f"overfitting first: an overconfident network's loss climbs while its {fit} barely moves. The best "
              "of many architectures is picked after the fact and flattered by validation noise; reading the "
              "claim on test removes that flattery.", "",
              rule_note(tests=2, split=SPLIT, family=f"comparisons of the claim (rise and fall of the test "
                        f"{headline}; the test loss is a second family of two); the kept network is a choice, "
                        "not a claim: each network's own 95% interval against the best, no correction")]
    lines += figure_lines(lambda path: _plot(table, ok, keys, headline=headline, fit=fit,
                                             pick=float(table.loc[kept, "params"]), path=path),
                          Path(out_dir) / "capacity.png", "train, validation and test scores against parameter count")
    return lines


def _by_capacity(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per architecture, smallest first: means, stds, verdicts."""
    rows = []
    for name, g in ok.groupby(GROUP, sort=False):
        rows.append({
            "group": name, "n": len(g), "params": float(g["params"].median()),
            "train_head": g["train_head"].mean(), "val_head": g["val_score"].mean(),
            "val_head_std": g["val_score"].std(ddof=1) if len(g) > 1 else np.nan,
            "test_head": g["test_score"].mean(),
            "train_fit": g["train_fit"].mean(), "val_fit": g["val_fit"].mean(),
            "val_fit_std": g["val_fit"].std(ddof=1) if len(g) > 1 else np.nan,
            "train_loss": g["train_loss"].mean(), "val_loss": g["val_loss"].mean(),
            "val_loss_std": g["val_loss"].std(ddof=1) if len(g) > 1 else np.nan,
            "test_loss": g["test_loss"].mean(),
            "val_text": mean_std(g["val_score"]), "test_text": mean_std(g["test_score"]),
            "val_fit_text": mean_std(g["val_fit"]), "val_loss_text": mean_std(g["val_loss"]),
            "test_loss_text": mean_std(g["test_loss"]), "gap_text": mean_std(g["gap"]),
            "verdict": majority_verdict(g["verdict"]), "verdicts": verdict_counts(g["verdict"]),
        })
    return pd.DataFrame(rows).sort_values(["params", "group"], kind="stable").reset_index(drop=True)


def _best_row(table: pd.DataFrame, column: str, *, greater: bool) -> int:
    scores = table[column].to_numpy(dtype=float)
    return int(np.nanargmax(scores) if greater else np.nanargmin(scores))


def _compare(ok: pd.DataFrame, table: pd.DataFrame, a: int, b: int, *, column: str, greater: bool) -> PairedTest:
    """Network ``a`` against network ``b`` on ``column``, seed by seed; positive: ``a`` is better."""
    diffs = paired_differences(ok, key=GROUP, value=table.loc[a, "group"], baseline=table.loc[b, "group"],
                               column=column)
    return paired_test(diffs if greater else -diffs)


def _kept(ok: pd.DataFrame, table: pd.DataFrame, best: int, *, greater: bool,
          margin: float) -> tuple[int, list[int]]:
    """The smallest adequate network and every adequate one (see the module docstring)."""
    adequate = [best]
    for i in range(len(table)):
        if i == best:
            continue
        t = _compare(ok, table, i, best, column="val_score", greater=greater).interval
        lower = t.mean - t.half if t.n > 1 else math.nan
        if np.isfinite(lower) and lower >= -margin:
            adequate.append(i)
    return min(adequate), sorted(adequate)


@dataclass(frozen=True)
class Claim:
    """The claim read on one test measure: the rise to the best network, the fall after it."""

    label: str
    column: str
    best: int  # the best network on validation
    rise: PairedTest | None  # best against the smallest (None: the best is the smallest)
    fall: PairedTest | None  # best against the largest (None: the best is the largest)
    rise_verdict: str
    fall_verdict: str

    @property
    def verdict(self) -> str:
        if NOT_SUPPORTED in (self.rise_verdict, self.fall_verdict):
            return NOT_SUPPORTED
        if self.rise is None or self.fall is None:
            return INCONCLUSIVE
        return SUPPORTED if self.rise_verdict == SUPPORTED else INCONCLUSIVE


def _claim(ok: pd.DataFrame, table: pd.DataFrame, best: int, *, column: str, greater: bool, label: str) -> Claim:
    """Test the rise (best minus smallest) and the fall (best minus largest) on ``column``."""
    largest = len(table) - 1
    rise = _compare(ok, table, best, 0, column=column, greater=greater) if best != 0 else None
    fall = _compare(ok, table, best, largest, column=column, greater=greater) if best != largest else None
    if rise is None and fall is not None:  # the best is the smallest: does capacity hurt beyond noise?
        (word,) = verdicts([fall])
        return Claim(label, column, best, None, fall, INCONCLUSIVE, NOT_SUPPORTED if word == SUPPORTED
                     else INCONCLUSIVE)
    tests = [t for t in (rise, fall) if t is not None]
    words = iter(verdicts(tests))
    rise_word = next(words) if rise is not None else INCONCLUSIVE
    fall_word = next(words) if fall is not None else INCONCLUSIVE
    # fall: positive means the best beats the largest (a fall); the largest beating it means still rising
    return Claim(label, column, best, rise, fall, rise_word, fall_word)


def _verdict_line(c: Claim, table: pd.DataFrame, *, headline: str) -> str:
    largest = len(table) - 1
    word = f"**{c.verdict.capitalize()}**"
    if c.rise is None:
        hurts = ("the smallest is better beyond seed noise: capacity hurts" if c.fall_verdict == NOT_SUPPORTED
                 else "not beyond seed noise")
        return (f"{word}: the smallest network is the best on validation, so there is no rise to read; on test, "
                f"the smallest minus the largest is {c.fall.interval.text()} ({hurts}).")
    rise = (f"the {c.label} of the best network on validation ({_name(table, c.best)}) minus the smallest's is "
            f"{c.rise.interval.text()} ({_noise(c.rise_verdict, 'higher')})")
    if c.fall is None:
        return (f"{word}: {rise}, but the best is the largest network tried, so the overfitting side is not "
                "reached: widen the range upward.")
    fall = {SUPPORTED: "falls beyond seed noise", INCONCLUSIVE: "stays within seed noise (a plateau)",
            NOT_SUPPORTED: "still rises beyond seed noise"}[c.fall_verdict]
    over = overfits(table.loc[largest, "verdict"])
    return (f"{word}: {rise}; from there to the largest network ({_name(table, largest)}) it {fall}, best minus "
            f"largest {c.fall.interval.text()}. The largest network is diagnosed *{table.loc[largest, 'verdict']}*"
            + (" (the overfitting side is reached)." if over else " (the diagnosis does not call it overfitting)."))


def _noise(word: str, direction: str) -> str:
    return {SUPPORTED: f"{direction} beyond seed noise", NOT_SUPPORTED: "the other way, beyond seed noise",
            INCONCLUSIVE: "within seed noise"}[word]


def _trend_line(c: Claim, table: pd.DataFrame) -> str:
    col = "test_text" if c.column == "test_score" else "test_loss_text"
    largest = len(table) - 1
    parts = [f"smallest ({_name(table, 0)}) {table.loc[0, col]}", f"best on validation ({_name(table, c.best)}) "
             f"{table.loc[c.best, col]}", f"largest ({_name(table, largest)}) {table.loc[largest, col]}"]
    tests = []
    if c.rise is not None:
        tests.append(f"rise {c.rise.interval.text()} ({c.rise_verdict})")
    if c.fall is not None:
        tests.append(f"best minus largest {c.fall.interval.text()} ({c.fall_verdict})")
    sign = " (signed so that + is better)" if c.column == "test_loss" else ""
    return (f"- **{c.label.capitalize()} against size:** " + "; ".join(parts) + ". Paired" + sign + ": "
            + ("; ".join(tests) or "nothing to compare") + f"; this measure's verdict: {c.verdict}.")


def _kept_line(ok: pd.DataFrame, table: pd.DataFrame, best: int, kept: int, adequate: list[int], *,
               headline: str, greater: bool, margin: float, tolerance: float) -> str:
    """The network to keep, why, and what it gives up on test."""
    rule = (f"the smallest network whose validation {headline} is, with 95% confidence, at most {margin:.4f} "
            f"({tolerance:.0%} of the best's) below the best's")
    if kept == best:
        why = f"the best itself, {rule}"
    else:
        t = _compare(ok, table, kept, best, column="val_score", greater=greater).interval
        why = f"{rule} ({_name(table, best)}; kept minus best on validation {t.text()})"
    text = (f"- **Start small, add capacity until validation stops improving:** keep {_name(table, kept)}: {why}; "
            f"{len(adequate)} of {len(table)} networks are adequate. Validation {table.loc[kept, 'val_text']}, "
            f"test {table.loc[kept, 'test_text']}")
    if kept != best:
        t = _compare(ok, table, kept, best, column="test_score", greater=greater)
        (word,) = verdicts([t])
        text += f"; on test, kept minus best {t.interval.text()} ({_noise(word, 'better')}, a single test)"
    larger = list(range(kept + 1, len(table)))
    if larger:
        tests = [_compare(ok, table, i, kept, column="test_score", greater=greater) for i in larger]
        beat = [i for i, word in zip(larger, verdicts(tests), strict=True) if word == SUPPORTED]
        text += (f". On test, {len(beat)} of the {len(larger)} larger networks beat it beyond seed noise (Holm over "
                 f"{len(larger)})" + (f": {'; '.join(table.loc[i, 'group'] for i in beat)}" if beat else ""))
    return text + "."


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
        text += (f" The border lies between {int(table.loc[min(over) - 1, 'params']):,} and "
                 f"{int(table.loc[min(over), 'params']):,} parameters.")
    return text


def _markdown(table: pd.DataFrame, *, headline: str, fit: str, best: int, kept: int) -> str:
    lines = [
        f"| architecture | params | n | train {fit} | val {fit} | gap | val {headline} | test {headline} "
        "| val loss | test loss | diagnosis |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in table.iterrows():
        tags = [t for t, j in (("best on validation", best), ("kept", kept)) if i == j]
        name = r["group"] + (f" ({', '.join(tags)})" if tags else "")
        lines.append(
            f"| {name} | {int(r['params']):,} | {r['n']} | {r['train_fit']:.4f} | {r['val_fit_text']} | "
            f"{r['gap_text']} | {r['val_text']} | {r['test_text']} | {r['val_loss_text']} | {r['test_loss_text']} "
            f"| {r['verdicts']} |"
        )
    return "\n".join(lines)


def _series_key(keys: list[str]) -> str | None:
    """The key drawn as separate lines (depth), when the sweep has more than one key."""
    if len(keys) < 2:
        return None
    return next((k for k in keys if k.endswith(".depth")), keys[0])


def _plot(table: pd.DataFrame, ok: pd.DataFrame, keys: list[str], *, headline: str, fit: str,
          pick: float, path: Path) -> Path:
    """Train (dashed), validation (solid) and test (dotted) headline, fit metric and loss against parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlrun.report.files import save_figure

    series = _series_key(keys)
    labels = ok.drop_duplicates(GROUP).set_index(GROUP)
    table = table.assign(series=[str(labels.loc[g, series]) if series else "" for g in table["group"]])
    panels = ((headline, "train_head", "val_head", "val_head_std", "test_head"),
              (fit, "train_fit", "val_fit", "val_fit_std", None),
              ("loss", "train_loss", "val_loss", "val_loss_std", "test_loss"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (name, train_col, val_col, std_col, test_col) in zip(axes, panels, strict=True):
        for i, (s, part) in enumerate(table.groupby("series", sort=False)):
            c = colors[i % len(colors)]
            tag = f"{series}={s} " if series else ""
            ax.plot(part["params"], part[train_col], "--", color=c, marker=".", label=f"{tag}train")
            ax.errorbar(part["params"], part[val_col], yerr=part[std_col], color=c, marker="o",
                        capsize=3, label=f"{tag}validation")
            if test_col:
                ax.plot(part["params"], part[test_col], ":", color=c, marker="^", label=f"{tag}test")
        ax.axvline(pick, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("parameters (log scale)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    if (table[["train_loss", "val_loss"]].to_numpy(dtype=float) > 0).any():  # NaN when metrics.json lacks losses
        axes[2].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("capacity: train (dashed), validation (solid, ± std over seeds), test (dotted); "
                 "grey line: the kept network (smallest within the tolerance of the best, 95% paired interval)")
    fig.tight_layout()
    return save_figure(path, fig)
