"""Course 5's claim, checked on a sweep over ``model.mode`` and the target's size.

*A pretrained network beats training from scratch when target data is scarce, and the gap
closes as data grows.* The sweep crosses ``model.mode`` (``scratch`` and one or more
pretrained modes: ``feature_extraction``, ``fine_tune``) with the labelled images per class
(``dataset.per_class``; or rows, ``dataset.max_rows``, for an image folder) over seeds. Two parts:

1. **Scarce data**: at the smallest size, the pretrained mode's test score minus scratch's.
2. **The gap closes**: that gap at the smallest size minus the gap at the largest, per seed.

Every difference is paired by seed (the same labelled images, split and head
initialisation) and judged by :data:`dlrun.report.claims.stats.RULE`, Holm-corrected over
every (size, mode) arm of part 1 and every mode of part 2. The scores are the test split's
(the same images at every size); the pretrained mode the verdict rests on is chosen on
validation (the higher mean validation score at the smallest size), never on test.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlrun.record import RecordError, read_record
from dlrun.report.claims.stats import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    RULE,
    SUPPORTED,
    PairedTest,
    finished,
    mean_std,
    paired_test,
    verdicts,
)
from dlrun.report.plots import figure_lines

MODE = "model.mode"
# The target's size: labelled images per class (dataset=mnist_digits), or all rows (max_rows).
SIZES = {"dataset.per_class": "per class", "dataset.max_rows": "rows"}
SIZE = "size"
SCRATCH = "scratch"
DEFAULT_CLAIM = ("A pretrained network beats training from scratch when target data is scarce, and the gap "
                 "closes as the target data grows.")


def check(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
          out_dir: Path) -> list[str]:
    """Test both parts of the module docstring's claim; markdown lines for ``study.md``."""
    lines = ["## Claim", "", f"> {study.get('claim') or DEFAULT_CLAIM}", "", RULE, ""]
    ok = finished(runs)
    size_key = next((k for k in SIZES if k in ok), None)
    if ok.empty or MODE not in ok or size_key is None:
        return lines + [f"Not checked: no finished run of this sweep varies both `{MODE}` and the target's size "
                        f"({' or '.join(f'`{k}`' for k in SIZES)})."]
    ok = ok.assign(**{MODE: ok[MODE].astype(str), SIZE: pd.to_numeric(ok[size_key], errors="coerce")})
    unit = SIZES[size_key]
    sizes = sorted(ok[SIZE].dropna().unique())
    pretrained = [m for m in dict.fromkeys(ok[MODE]) if m != SCRATCH]
    if SCRATCH not in set(ok[MODE]) or not pretrained or len(sizes) < 2:
        return lines + ["Not checked: the sweep needs model.mode=scratch, a pretrained mode, and two or more sizes."]
    lines += [*_source(ok), *_table(ok, sizes, unit)]
    chosen = _chosen(ok, pretrained, sizes[0])
    scarce, scarce_verdict = _scarce(ok, pretrained, sizes, chosen, unit)
    closing, closing_verdict = _closing(ok, pretrained, sizes, chosen, unit)
    overall = (SUPPORTED if scarce_verdict == closing_verdict == SUPPORTED
               else NOT_SUPPORTED if NOT_SUPPORTED in (scarce_verdict, closing_verdict) else INCONCLUSIVE)
    lines += ["", f"**Verdict: {overall}** (scarce data: {scarce_verdict}; the gap closes: {closing_verdict}). "
              f"The pretrained mode the verdict reads, chosen on validation at {sizes[0]:g} {unit}: "
              f"`{chosen}`.", "", *scarce, "", *closing]
    lines += figure_lines(lambda path: _plot(ok, sizes, unit, path), Path(out_dir) / "transfer_curve.png",
                          "test score against labelled images per class, per mode")
    return lines


def _source(ok: pd.DataFrame) -> list[str]:
    """A line on the saved backbone the runs start from, with its own test score when dlrun trained it."""
    try:
        section = read_record(Path(ok["run_dir"].iloc[0])).sections.get("transfer") or {}
        file = section.get("backbone_file")
        if not file:
            return [f"Backbone: `{section.get('backbone', '?')}`.", ""]
        source = read_record(Path(file).parent)
    except (OSError, RecordError, KeyError):
        return []
    return [f"Backbone: `{section.get('backbone')}`, its run folder `{Path(file).parent}`: test "
            f"{source.headline} {source.test.get(source.headline, float('nan')):.4f} on its own task.", ""]


def _score_name(ok: pd.DataFrame) -> str:
    return str(ok["headline"].dropna().iloc[0]) if "headline" in ok and ok["headline"].notna().any() else "score"


def _table(ok: pd.DataFrame, sizes: list[float], unit: str) -> list[str]:
    name = _score_name(ok)
    lines = [f"| {unit} | mode | n | validation {name} | test {name} |", "|---|---|---|---|---|"]
    for size in sizes:
        for mode, g in ok[ok[SIZE] == size].groupby(MODE, sort=False):
            lines.append(f"| {size:g} | {mode} | {len(g)} | {mean_std(g['val_score'])} | {mean_std(g['test_score'])} |")
    return lines + ["", "Mean ± standard deviation over seeds; the test split holds the same images at every size."]


def _chosen(ok: pd.DataFrame, pretrained: list[str], size: float) -> str:
    """The pretrained mode with the best mean validation score at ``size`` (ties: the first)."""
    at = ok[ok[SIZE] == size]
    means = {m: at.loc[at[MODE] == m, "val_score"].mean() for m in pretrained}
    return max(pretrained, key=lambda m: -np.inf if np.isnan(means[m]) else means[m])


def _gap(ok: pd.DataFrame, mode: str, size: float, column: str = "test_score") -> pd.Series:
    """``column`` of ``mode`` minus scratch's at ``size``, one value per seed both ran."""
    at = ok[ok[SIZE] == size]
    a = at[at[MODE] == mode].groupby("seed")[column].mean()
    b = at[at[MODE] == SCRATCH].groupby("seed")[column].mean()
    common = a.index.intersection(b.index)
    return a[common] - b[common]


def _scarce(ok: pd.DataFrame, pretrained: list[str], sizes: list[float], chosen: str,
            unit: str) -> tuple[list[str], str]:
    arms = [(size, mode) for size in sizes for mode in pretrained]
    tests = [paired_test(_gap(ok, mode, size).to_numpy(dtype=float)) for size, mode in arms]
    per_arm = verdicts(tests)  # Holm over every size and mode
    rows = [f"| {unit} | mode | Δ validation | Δ test (95% CI) | p | verdict |", "|---|---|---|---|---|---|"]
    for (size, mode), test, verdict in zip(arms, tests, per_arm, strict=True):
        val = paired_test(_gap(ok, mode, size, "val_score").to_numpy(dtype=float))
        rows.append(f"| {size:g} | {mode} | {val.interval.text()} | {test.interval.text()} | {test.p:.3g} | {verdict} |")
    verdict = per_arm[arms.index((sizes[0], chosen))]
    test = tests[arms.index((sizes[0], chosen))]
    text = (f"### 1. Pretrained beats scratch when data is scarce\n\n**{verdict.capitalize()}**: at {sizes[0]:g} "
            f"labelled {'images per class' if unit == 'per class' else 'rows'}, `{chosen}` scores {test.interval.text()} against scratch on test over "
            f"{test.interval.n} seeds (p = {test.p:.3g}, Holm-corrected over the {len(arms)} arms below).")
    return [text, "", *rows, "", "Δ: the pretrained mode minus scratch, seed by seed."], verdict


def _closing(ok: pd.DataFrame, pretrained: list[str], sizes: list[float], chosen: str,
             unit: str) -> tuple[list[str], str]:
    small, large = sizes[0], sizes[-1]
    tests: list[PairedTest] = []
    for mode in pretrained:
        a, b = _gap(ok, mode, small), _gap(ok, mode, large)
        common = a.index.intersection(b.index)
        tests.append(paired_test((a[common] - b[common]).to_numpy(dtype=float)))
    per_mode = verdicts(tests)  # Holm over the modes
    rows = ["| mode | " + " | ".join(f"gap at {s:g}" for s in sizes) + f" | gap at {small:g} − gap at {large:g} "
            "| p | verdict |", "|---|" + "---|" * (len(sizes) + 3)]
    for mode, test, verdict in zip(pretrained, tests, per_mode, strict=True):
        gaps = " | ".join(paired_test(_gap(ok, mode, s).to_numpy(dtype=float)).interval.text() for s in sizes)
        rows.append(f"| {mode} | {gaps} | {test.interval.text()} | {test.p:.3g} | {verdict} |")
    verdict = per_mode[pretrained.index(chosen)]
    test = tests[pretrained.index(chosen)]
    text = (f"### 2. The gap closes as data grows\n\n**{verdict.capitalize()}**: `{chosen}`'s test gap over "
            f"scratch shrinks by {test.interval.text()} from {small:g} to {large:g} {unit} "
            f"(p = {test.p:.3g}, Holm-corrected over {len(pretrained)} mode(s); positive: the gap closes).")
    return [text, "", *rows, "", "Gap: the mode's test score minus scratch's, seed by seed, with its 95% interval."], \
        verdict


def _plot(ok: pd.DataFrame, sizes: list[float], unit: str, path: Path) -> Path:
    from dlrun.report.files import save_figure
    from dlrun.report.plots import plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for mode, g in ok.groupby(MODE, sort=False):
        stats = g.groupby(SIZE)["test_score"].agg(["mean", "std"]).reindex(sizes)
        ax.errorbar(sizes, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=mode)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
    ax.set_xlabel(f"labelled images {unit} (target)")
    ax.set_ylabel(f"test {_score_name(ok)}")
    ax.set_title("transfer: pretrained against scratch (mean ± std over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(path, fig)
