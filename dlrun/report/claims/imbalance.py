"""Course 2's claims, checked on a sweep over ``sampling`` (and ``augment``) on imbalanced data.

1. Accuracy hides the minority classes: on data distributed as it comes (the validation
   split), accuracy is well above the recall of the rare classes (on the test split, which
   holds every class alike, so each class's recall is measured on enough images).
2. Resampling or class weights raise the rare classes' recall and macro-F1 (test split),
   each method against ``sampling=none`` without augmentation.
3. Augmentation helps the small classes: their recall with ``augment`` on against off, at
   the same sampling method and seed.

Every comparison is paired by seed and judged by :data:`dlrun.report.claims.stats.RULE`.
The rare classes are those under 10% of the validation split (the training data's own
balance, before any resampling).
"""

from __future__ import annotations

import logging
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
    combine,
    finished,
    mean_std,
    paired_test,
    verdicts,
)
from dlrun.report.plots import figure_lines
from dlrun.task import IMBALANCE_SHARE

log = logging.getLogger(__name__)

SAMPLING, AUGMENT = "sampling", "augment"
BASELINE = "none"
DEFAULT_CLAIM = ("Accuracy hides the minority classes; resampling or class weights raise minority-class "
                 "recall and macro-F1; augmentation helps the small classes.")


def _column(runs: pd.DataFrame, keys: list[str], name: str) -> str | None:
    """The runs' column that holds the swept key ``name`` (None when it was not swept)."""
    return next((k for k in keys if k.split(".")[-1] == name and k in runs), None)


def _per_run(runs: pd.DataFrame) -> pd.DataFrame:
    """Add each run's rare-class and common-class test recall and its test macro-F1."""
    rows = []
    for run_dir in runs["run_dir"]:
        try:
            record = read_record(Path(run_dir))
        except (OSError, RecordError) as err:
            log.warning("skipping %s: %s", run_dir, err)
            rows.append({})
            continue
        section = record.sections.get("classification") or {}
        support = section.get("val_support") or {}
        total = sum(support.values()) or 1
        rare = [c for c, n in support.items() if n / total < IMBALANCE_SHARE]
        recall = {c: v["recall"] for c, v in (section.get("per_class") or {}).items()}
        rows.append({
            "rare_classes": ", ".join(rare),
            "rare_recall": np.mean([recall[c] for c in rare]) if rare else np.nan,
            "common_recall": np.mean([r for c, r in recall.items() if c not in rare]) if recall else np.nan,
            "val_accuracy": record.val.get("accuracy", np.nan),
            "test_accuracy": record.test.get("accuracy", np.nan),
            "test_macro_f1": record.test.get("macro_f1", np.nan),
            "matrix": section.get("confusion_matrix"),
        })
    return pd.concat([runs.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def _differences(ok: pd.DataFrame, column: str, *, key: str, value: str, base: str, by: list[str]) -> np.ndarray:
    """``column`` at ``key=value`` minus at ``key=base``, matched on ``by`` (seed, and more)."""
    a = ok[ok[key] == value].groupby(by)[column].mean()
    b = ok[ok[key] == base].groupby(by)[column].mean()
    common = a.index.intersection(b.index)
    return (a[common] - b[common]).to_numpy(dtype=float)


def _bold(verdict: str) -> str:
    return f"**{verdict.capitalize()}**"


def check(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
          out_dir: Path) -> list[str]:
    """Test the three claims of the module docstring; markdown lines for ``study.md``."""
    lines = ["## Claims", "", f"> {study.get('claim') or DEFAULT_CLAIM}", "", RULE, ""]
    sampling, augment = _column(runs, keys, SAMPLING), _column(runs, keys, AUGMENT)
    ok = finished(runs)
    if sampling is None or ok.empty:
        return lines + ["Not checked: no finished run of this sweep varies `sampling`."]
    ok = _per_run(ok)
    ok[sampling] = ok[sampling].astype(str)
    if augment is None:
        augment = "augment (fixed)"
        ok[augment] = BASELINE
    ok[augment] = ok[augment].astype(str)
    if ok["rare_recall"].isna().all():
        return lines + ["Not checked: no class is under 10% of the validation split, so nothing is rare."]
    rare = ok["rare_classes"].dropna().iloc[0]
    lines += [f"Rare classes (under {IMBALANCE_SHARE:.0%} of the validation split): {rare}.", ""]
    lines += _table(ok, sampling, augment)
    plain = ok[(ok[augment] == BASELINE)]
    lines += ["", *_hidden(plain[plain[sampling] == BASELINE])]
    lines += ["", *_resampling(plain, sampling)]
    lines += ["", *_augmentation(ok, sampling, augment)]
    lines += figure_lines(lambda path: _plot_matrices(ok, sampling, augment, path),
                          Path(out_dir) / "confusion_matrices.png", "test confusion matrices per setting, rows normalised")
    return lines


def _table(ok: pd.DataFrame, sampling: str, augment: str) -> list[str]:
    lines = ["| sampling | augment | n | val accuracy | test accuracy | test macro-F1 | rare-class recall "
             "| common-class recall |", "|---|---|---|---|---|---|---|---|"]
    for (s, a), g in ok.groupby([sampling, augment], sort=False):
        lines.append(f"| {s} | {a} | {len(g)} | {mean_std(g['val_accuracy'])} | {mean_std(g['test_accuracy'])} | "
                     f"{mean_std(g['test_macro_f1'])} | {mean_std(g['rare_recall'])} | "
                     f"{mean_std(g['common_recall'])} |")
    return lines + ["", "Mean ± standard deviation over seeds; recalls on the test split (every class alike)."]


def _hidden(base: pd.DataFrame) -> list[str]:
    head = "### 1. Accuracy hides the minority classes"
    if len(base) < 2:
        return [head, "", "Not checked: fewer than two seeds of sampling=none without augmentation."]
    test = paired_test((base["val_accuracy"] - base["rare_recall"]).to_numpy(dtype=float))
    (verdict,) = verdicts([test])
    return [head, "", f"{_bold(verdict)}. Without any treatment, validation accuracy "
            f"{base['val_accuracy'].mean():.4f} against a rare-class recall of {base['rare_recall'].mean():.4f} "
            f"(common classes: {base['common_recall'].mean():.4f}): accuracy exceeds the rare classes' recall by "
            f"{test.interval.text()} over {test.interval.n} seeds (p = {test.p:.3g})."]


def _resampling(plain: pd.DataFrame, sampling: str) -> list[str]:
    head = "### 2. Resampling or class weights raise rare-class recall and macro-F1"
    methods = [m for m in dict.fromkeys(plain[sampling]) if m != BASELINE]
    if BASELINE not in set(plain[sampling]) or not methods:
        return [head, "", "Not checked: the sweep needs sampling=none and another method without augmentation."]
    tests = [paired_test(_differences(plain, metric, key=sampling, value=m, base=BASELINE, by=["seed"]))
             for m in methods for metric in ("rare_recall", "test_macro_f1")]
    per_test = verdicts(tests)  # Holm over every method and both metrics
    arms = []
    rows = ["| method | Δ rare-class recall | Δ test macro-F1 | verdict |", "|---|---|---|---|"]
    for i, m in enumerate(methods):
        recall, f1 = per_test[2 * i], per_test[2 * i + 1]
        arm = SUPPORTED if recall == f1 == SUPPORTED else NOT_SUPPORTED if NOT_SUPPORTED in (recall, f1) \
            else INCONCLUSIVE
        arms.append(arm)
        rows.append(f"| {m} | {tests[2 * i].interval.text()} ({recall}) | {tests[2 * i + 1].interval.text()} "
                    f"({f1}) | {arm} |")
    overall = combine(arms, every=False)
    supported = [m for m, a in zip(methods, arms, strict=True) if a == SUPPORTED]
    against = [m for m, a in zip(methods, arms, strict=True) if a == NOT_SUPPORTED]
    text = (f"{', '.join(supported)} raise{'s' if len(supported) == 1 else ''} both beyond seed noise"
            if supported else "no method raises both beyond seed noise")
    if against:
        text += f"; {', '.join(against)} lower{'s' if len(against) == 1 else ''} at least one of them"
    return [head, "", f"{_bold(overall)}: {text} (against sampling=none, without augmentation, paired by seed; "
            "an arm supports the claim only when both differences are significant improvements).", "", *rows]


def _augmentation(ok: pd.DataFrame, sampling: str, augment: str) -> list[str]:
    head = "### 3. Augmentation helps the small classes"
    others = [a for a in dict.fromkeys(ok[augment]) if a != BASELINE]
    if BASELINE not in set(ok[augment]) or not others:
        return [head, "", "Not checked: the sweep does not compare augment=none with another preset."]
    tests = [paired_test(_differences(ok, "rare_recall", key=augment, value=a, base=BASELINE, by=[sampling, "seed"]))
             for a in others]
    arms = verdicts(tests)
    parts = [f"augment={a}: rare-class recall {t.interval.text()} over {t.interval.n} (sampling, seed) pairs "
             f"(p = {t.p:.3g}, {v})" for a, t, v in zip(others, tests, arms, strict=True)]
    return [head, "", f"{_bold(combine(arms, every=False))}: " + "; ".join(parts) + "."]


def _plot_matrices(ok: pd.DataFrame, sampling: str, augment: str, path: Path) -> Path:
    """The test confusion matrix of each (sampling, augment) setting, summed over seeds."""
    from dlrun.report.files import save_figure
    from dlrun.report.plots import plt

    settings = list(ok.groupby([sampling, augment], sort=False))
    cols = min(len(settings), 4)
    rows = int(np.ceil(len(settings) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax, ((s, a), g) in zip(axes.flat, settings, strict=False):
        matrix = np.sum([np.asarray(m) for m in g["matrix"] if m is not None], axis=0)
        share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(share)):
            ax.text(i, i, f"{share[i, i]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, i] > 0.6 else "black")
        ax.set_title(f"sampling={s}, augment={a}", fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(settings):]:
        ax.set_visible(False)
    fig.suptitle("test confusion matrices (rows normalised; diagonal: each class's recall)", fontsize=9)
    fig.tight_layout()
    return save_figure(path, fig)
