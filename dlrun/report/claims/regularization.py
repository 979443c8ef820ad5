"""Course 1's regularization claim, checked on a sweep over ``reg``.

The claim: L1/L2 penalties, dropout and early stopping shrink the train-validation gap
of an overfitting baseline without losing validation score. Validation has already
been used to choose (early stopping restores the weights of the validation minimum; the
regularizers' strengths were set on it), so the claim is read on the untouched test
split: the gap is train minus test fit, the score the test headline. Validation numbers
stand beside them.

Each regularizer is compared with the baseline seed by seed (same split, same initial
weights) with :mod:`dlrun.report.claims.stats`: a paired t-test per regularizer, Holm's
correction over the regularizers. An arm supports the claim when its gap is smaller
beyond seed noise and its score is not lower beyond seed noise (both must hold, so the
two families are corrected separately); a gap wider or a score lower beyond noise means
not supported; anything else is inconclusive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlrun.report.claims.stats import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    PairedTest,
    add_split_metrics,
    combine,
    finished,
    majority_verdict,
    mean_std,
    overfits,
    paired_differences,
    paired_test,
    rule_note,
    verdict_counts,
    verdicts,
)
from dlrun.report.plots import figure_lines

KEY = "reg"
SPLIT = "chosen on validation (the strengths, early stopping's epoch, the pick below), claim read on test"
DEFAULT_CLAIM = ("Regularization (L1/L2 penalties, dropout, early stopping) shrinks the train-validation "
                 "gap of an overfitting baseline without losing validation score.")


@dataclass
class Arm:
    """One regularizer against the baseline: paired tests on test, paired intervals on validation."""

    reg: str
    gap: PairedTest  # baseline minus reg test gap: positive = smaller gap
    score: PairedTest  # reg minus baseline test headline, signed so that positive = better
    loss_gap: PairedTest  # baseline minus reg test loss gap
    val_gap: PairedTest
    val_score: PairedTest
    gap_verdict: str = INCONCLUSIVE
    score_verdict: str = INCONCLUSIVE
    loss_gap_verdict: str = INCONCLUSIVE

    @property
    def verdict(self) -> str:
        if NOT_SUPPORTED in (self.gap_verdict, self.score_verdict):
            return NOT_SUPPORTED
        return SUPPORTED if self.gap_verdict == SUPPORTED else INCONCLUSIVE


def check(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
          out_dir: Path) -> list[str]:
    """Compare every ``reg`` value with ``study.baseline`` and say whether the claim holds.

    Args:
        runs: one row per job (``reg``, ``seed``, ``status``, ``train_fit``, ``val_fit``,
            ``test_fit``, ``val_score``, ``test_score``, ``verdict``, ``run_dir``, ...).
        groups: the sweep's group table (unused: the comparison is paired by seed).
        keys: the swept config keys.
        study: the ``study`` config (``claim``, ``baseline``).
        out_dir: where ``regularization.png`` goes.

    Returns:
        Markdown lines for ``study.md``.
    """
    head = ["## Claim", "", f"> {study.get('claim') or DEFAULT_CLAIM}", ""]
    ok = finished(runs)
    baseline = str(study.get("baseline") or "none")
    if KEY not in ok or ok.empty:
        return head + ["Not checked: no finished run of this sweep varies `reg`."]
    ok[KEY] = ok[KEY].astype(str)
    if not (ok[KEY] == baseline).any():
        return head + [f"Not checked: no finished run has the baseline reg={baseline} "
                       "(set study.baseline to one of the swept values)."]
    ok = _measures(add_split_metrics(ok, splits=("train", "val", "test")))
    values = [baseline] + [v for v in dict.fromkeys(ok[KEY]) if v != baseline]
    greater = bool(ok["greater_is_better"].dropna().iloc[0]) if ok["greater_is_better"].notna().any() else True
    arms = _arms(ok, values[1:], baseline, greater=greater)
    headline, fit = _names(ok)
    base = ok[ok[KEY] == baseline]
    lines = head + _conclusion(arms, base, baseline, fit=fit)
    lines += ["", *_table(ok, values, arms, headline=headline, fit=fit), ""]
    lines += [rule_note(tests=len(arms), split=SPLIT, family=f"regularizers, separately for the {fit} gap and "
                        f"the test {headline} (an arm needs both); the log-loss gap is its own family")]
    lines += ["", *_selected(ok, values, baseline, headline=headline, greater=greater)]
    lines += ["", *_notes(ok, keys, fit=fit)]
    lines += figure_lines(lambda path: _plot(ok, values, headline=headline, fit=fit, path=path),
                          Path(out_dir) / "regularization.png",
                          "test gap, test score and test loss gap per regularizer; validation as crosses")
    return lines


def _measures(ok: pd.DataFrame) -> pd.DataFrame:
    """Gaps against validation and against test, on the fit metric and on the log-loss."""
    ok = ok.copy()
    for col in ("train_fit", "val_fit", "test_fit", "val_score", "test_score"):
        ok[col] = pd.to_numeric(ok[col], errors="coerce") if col in ok else np.nan
    ok["val_gap"] = ok["train_fit"] - ok["val_fit"]
    ok["test_gap"] = ok["train_fit"] - ok["test_fit"]
    ok["val_loss_gap"] = ok["val_loss"] - ok["train_loss"]
    ok["test_loss_gap"] = ok["test_loss"] - ok["train_loss"]
    return ok


def _arms(ok: pd.DataFrame, values: list[str], baseline: str, *, greater: bool) -> list[Arm]:
    sign = 1.0 if greater else -1.0

    def diff(value: str, column: str) -> np.ndarray:
        return paired_differences(ok, key=KEY, value=value, baseline=baseline, column=column)

    arms = [Arm(v, gap=paired_test(-diff(v, "test_gap")), score=paired_test(sign * diff(v, "test_score")),
                loss_gap=paired_test(-diff(v, "test_loss_gap")), val_gap=paired_test(-diff(v, "val_gap")),
                val_score=paired_test(sign * diff(v, "val_score"))) for v in values]
    for attr in ("gap", "score", "loss_gap"):  # each family corrected over the regularizers
        for arm, word in zip(arms, verdicts([getattr(a, attr) for a in arms]), strict=True):
            setattr(arm, f"{attr}_verdict", word)
    return arms


def _conclusion(arms: list[Arm], base: pd.DataFrame, baseline: str, *, fit: str) -> list[str]:
    verdict = majority_verdict(base["verdict"])
    diagnosis = f"The baseline reg={baseline} is diagnosed *{verdict}* ({verdict_counts(base['verdict'])})"
    if not overfits(verdict):
        return [f"**Inconclusive** (not testable on these numbers): {diagnosis}, so there is no overfitting to "
                "cure. Make the baseline overfit (a bigger network, more epochs, or less training data) and rerun."]
    if not arms:
        return [f"**Inconclusive**: {diagnosis}, but the sweep has no regularizer to compare with it."]
    overall = combine([a.verdict for a in arms], every=False)
    parts = []
    for word, (one, many) in (
            (SUPPORTED, (f"shrinks the test {fit} gap beyond seed noise without a test score lower beyond noise",
                         f"shrink the test {fit} gap beyond seed noise without a test score lower beyond noise")),
            (NOT_SUPPORTED, ("widens the gap or loses test score beyond noise",
                             "widen the gap or lose test score beyond noise")),
            (INCONCLUSIVE, ("stays within seed noise of the baseline", "stay within seed noise of the baseline"))):
        names = [a.reg for a in arms if a.verdict == word]
        if names:
            parts.append(f"{_names_list(names)} {one if len(names) == 1 else many} ({word})")
    gap = f"{mean_std(base['test_gap'])} on test ({mean_std(base['val_gap'])} on validation)"
    shrink = [a.reg for a in arms if a.loss_gap_verdict == SUPPORTED]
    loss = (f"On the test log-loss gap (test − training loss), which registers overconfidence before the {fit} "
            f"moves, {_names_list(shrink)} {'shrinks' if len(shrink) == 1 else 'shrink'} it beyond noise."
            if shrink else "No regularizer shrinks the test log-loss gap beyond noise either.")
    return [f"**{overall.capitalize()}** for {sum(a.verdict == SUPPORTED for a in arms)} of {len(arms)} "
            f"regularizers. {diagnosis}, {fit} gap (train minus the split) {gap}. " + "; ".join(parts) + f". {loss}"]


def _selected(ok: pd.DataFrame, values: list[str], baseline: str, *, headline: str, greater: bool) -> list[str]:
    """The regularizer a practitioner would pick on validation, and what it does on test."""
    means = ok.groupby(KEY)["val_score"].mean()
    pick = (means.idxmax() if greater else means.idxmin()) if means.notna().any() else None
    if pick is None:
        return []
    mine, base = ok[ok[KEY] == pick], ok[ok[KEY] == baseline]
    text = (f"**Chosen on validation:** reg={pick} has the best mean validation {headline} "
            f"({mean_std(mine['val_score'])}); on test it scores {mean_std(mine['test_score'])} against the "
            f"baseline's {mean_std(base['test_score'])}")
    if pick == baseline:
        return [text + ": the baseline itself, so no regularizer improves the validation score."]
    sign = 1.0 if greater else -1.0
    test = paired_test(sign * paired_differences(ok, key=KEY, value=pick, baseline=baseline, column="test_score"))
    (word,) = verdicts([test])
    how = {SUPPORTED: "better beyond seed noise", NOT_SUPPORTED: "worse beyond seed noise",
           INCONCLUSIVE: "within seed noise"}[word]
    return [text + f": paired difference {test.interval.text()} over {test.interval.n} seeds (p = {test.p:.3g}, "
            f"a single test), {how}."]


def _names(ok: pd.DataFrame) -> tuple[str, str]:
    headline = ok["headline"].dropna().iloc[0] if "headline" in ok and ok["headline"].notna().any() else "score"
    fit = ok["fit_metric"].dropna().iloc[0] if "fit_metric" in ok and ok["fit_metric"].notna().any() else "fit"
    return headline, fit


def _names_list(values: list[str]) -> str:
    return ", ".join(f"reg={v}" for v in values)


def _cell(test: PairedTest, word: str | None = None) -> str:
    text = test.interval.text()
    return f"{text} ({word})" if word and text != "–" else text


def _table(ok: pd.DataFrame, values: list[str], arms: list[Arm], *, headline: str, fit: str) -> list[str]:
    """One row per reg: validation and test side by side; Δ columns are paired, signed so + = better."""
    by_reg = {a.reg: a for a in arms}
    lines = [f"| reg | n | diagnosis | {fit} gap: val / test | Δgap val | Δgap test | {headline}: val / test "
             "| Δscore val | Δscore test | Δloss gap test | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for value in values:
        mine, arm = ok[ok[KEY] == value], by_reg.get(value)
        cells = [value, str(len(mine)), verdict_counts(mine["verdict"]),
                 f"{mean_std(mine['val_gap'])} / {mean_std(mine['test_gap'])}"]
        scores = f"{mean_std(mine['val_score'])} / {mean_std(mine['test_score'])}"
        if arm is None:
            cells += ["–", "–", scores, "–", "–", "–", "baseline"]
        else:
            cells += [_cell(arm.val_gap), _cell(arm.gap, arm.gap_verdict), scores, _cell(arm.val_score),
                      _cell(arm.score, arm.score_verdict), _cell(arm.loss_gap, arm.loss_gap_verdict),
                      f"**{arm.verdict}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _notes(ok: pd.DataFrame, keys: list[str], *, fit: str) -> list[str]:
    n_test = ok["n_test"].median() if "n_test" in ok else np.nan
    grain = (f" On {n_test:.0f} test rows one example moves the test gap by {1 / n_test:.4f}."
             if fit == "accuracy" and n_test > 0 else "")
    lines = [f"gap = train {fit} − {fit} on the split named; columns with ± alone are mean ± std over seeds. "
             "Δ columns are the mean per-seed difference from the baseline ± its 95% half-width, signed so that "
             "a positive value is an improvement (a smaller gap, a better score); the word beside a test Δ is "
             "that family's Holm-corrected verdict. The validation Δs are shown, not tested: validation chose "
             f"early stopping's epoch and the strengths, so it flatters them.{grain}"]
    others = [k for k in keys if k != KEY]
    if others:
        lines += ["", f"Other swept keys ({', '.join(others)}) are averaged over within each seed."]
    return lines


def _plot(ok: pd.DataFrame, values: list[str], *, headline: str, fit: str, path: Path) -> Path:
    """Test gap, test headline and test loss gap per regularizer: seeds as dots, mean as a bar,
    the validation mean as a cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlrun.report.files import save_figure

    panels = (("test_gap", "val_gap", f"gap: train − test {fit}"), ("test_score", "val_score", f"test {headline}"),
              ("test_loss_gap", "val_loss_gap", "loss gap: test − train log-loss"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    x = range(len(values))
    for ax, (col, val_col, title) in zip(axes, panels, strict=True):
        means = [ok.loc[ok[KEY] == v, col].mean() for v in values]
        ax.bar(x, means, color=["grey"] + ["tab:blue"] * (len(values) - 1), alpha=0.5)
        for i, v in enumerate(values):
            ys = ok.loc[ok[KEY] == v, col].to_numpy(dtype=float)
            ax.plot([i] * len(ys), ys, "k.", alpha=0.7)
            ax.plot([i], [ok.loc[ok[KEY] == v, val_col].mean()], "rx")
        ax.axhline(means[0], color="grey", linestyle=":", linewidth=1)
        if col == "test_score":
            finite = pd.concat([ok[col], ok[val_col]]).dropna()
            if len(finite):
                pad = max(float(finite.max() - finite.min()), 1e-3)
                ax.set_ylim(float(finite.min()) - pad, float(finite.max()) + pad / 2)
        ax.set_xticks(list(x), values, rotation=30, ha="right")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("regularizers against the baseline (grey), test split; dots: seeds; red crosses: validation mean")
    fig.tight_layout()
    return save_figure(path, fig)
