"""Course 1's regularization claim, checked on a sweep over ``reg``.

The claim: L1/L2 penalties, dropout and early stopping shrink the train-validation gap
of an overfitting baseline without losing validation score. Each regularizer is
compared with the baseline seed by seed (same split, same initial weights); a
difference counts as real only when its 95% interval over seeds excludes zero.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dlrun.report.claims.stats import (
    Interval,
    add_split_metrics,
    finished,
    majority_verdict,
    mean_std,
    overfits,
    paired,
    verdict_counts,
)

log = logging.getLogger(__name__)

KEY = "reg"
DEFAULT_CLAIM = ("Regularization (L1/L2 penalties, dropout, early stopping) shrinks the train-validation "
                 "gap of an overfitting baseline without losing validation score.")


def check(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
          out_dir: Path) -> list[str]:
    """Compare every ``reg`` value with ``study.baseline`` and say whether the claim holds.

    Args:
        runs: one row per job (``reg``, ``seed``, ``status``, ``gap``, ``val_score``,
            ``verdict``, ``run_dir``, ...).
        groups: the sweep's group table (unused: the comparison is paired by seed).
        keys: the swept config keys.
        study: the ``study`` config (``claim``, ``baseline``).
        out_dir: where ``regularization.png`` goes.

    Returns:
        Markdown lines for ``study.md``.
    """
    claim = study.get("claim") or DEFAULT_CLAIM
    head = ["## Claim", "", f"> {claim}", ""]
    ok = finished(runs)
    baseline = str(study.get("baseline") or "none")
    if KEY not in ok or ok.empty:
        return head + ["Not checked: no finished run of this sweep varies `reg`."]
    ok[KEY] = ok[KEY].astype(str)
    if not (ok[KEY] == baseline).any():
        return head + [f"Not checked: no finished run has the baseline reg={baseline} "
                       "(set study.baseline to one of the swept values)."]
    ok = add_split_metrics(ok)
    ok["loss_gap"] = ok["val_loss"] - ok["train_loss"]
    values = [baseline] + [v for v in dict.fromkeys(ok[KEY]) if v != baseline]
    rows = [_compare(ok, value, baseline) for value in values]
    headline, fit = _names(ok)
    lines = head + _conclusion(rows, baseline, n_seeds=ok["seed"].nunique())
    lines += ["", _table(rows, headline=headline, fit=fit), ""]
    lines += _notes(ok, keys, headline=headline, fit=fit)
    try:
        _plot(ok, values, headline=headline, fit=fit, path=Path(out_dir) / "regularization.png")
        lines += ["", "![gap, validation score and loss gap per regularizer](regularization.png)"]
    except Exception:  # a plot must not hide the numbers
        log.exception("could not draw regularization.png")
    return lines


def _plot(ok: pd.DataFrame, values: list[str], *, headline: str, fit: str, path: Path) -> Path:
    """Gap, validation headline and validation loss per regularizer: seeds as dots, mean as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlrun.report.files import save_figure

    panels = (("gap", f"gap: train − val {fit}"), ("val_score", f"validation {headline}"),
              ("loss_gap", "loss gap: val − train log-loss"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    x = range(len(values))
    for ax, (col, title) in zip(axes, panels, strict=True):
        means = [ok.loc[ok[KEY] == v, col].mean() for v in values]
        ax.bar(x, means, color=["grey"] + ["tab:blue"] * (len(values) - 1), alpha=0.5)
        for i, v in enumerate(values):
            ys = ok.loc[ok[KEY] == v, col].to_numpy(dtype=float)
            ax.plot([i] * len(ys), ys, "k.", alpha=0.7)
        ax.axhline(means[0], color="grey", linestyle=":", linewidth=1)
        if col == "val_score":
            finite = ok[col].dropna()
            if len(finite):
                pad = max(float(finite.max() - finite.min()), 1e-3)
                ax.set_ylim(float(finite.min()) - pad, float(finite.max()) + pad / 2)
        ax.set_xticks(list(x), values, rotation=30, ha="right")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("regularizers against the baseline (grey); dots: seeds")
    fig.tight_layout()
    return save_figure(path, fig)


def _names(ok: pd.DataFrame) -> tuple[str, str]:
    headline = ok["headline"].dropna().iloc[0] if "headline" in ok and ok["headline"].notna().any() else "score"
    fit = ok["fit_metric"].dropna().iloc[0] if "fit_metric" in ok and ok["fit_metric"].notna().any() else "fit"
    return headline, fit


def _compare(ok: pd.DataFrame, value: str, baseline: str) -> dict[str, Any]:
    mine = ok[ok[KEY] == value]
    d_gap = paired(ok, key=KEY, value=value, baseline=baseline, column="gap")
    d_val = paired(ok, key=KEY, value=value, baseline=baseline, column="val_score")
    d_loss_gap = paired(ok, key=KEY, value=value, baseline=baseline, column="loss_gap")
    return {
        "reg": value, "n": len(mine), "gap": mean_std(mine["gap"]), "d_gap": d_gap,
        "val": mean_std(mine["val_score"]), "d_val": d_val, "val_fit": mean_std(mine["val_fit"]),
        "loss_gap": mean_std(mine["loss_gap"]),
        "d_loss_gap": d_loss_gap, "verdicts": verdict_counts(mine["verdict"]),
        "verdict": majority_verdict(mine["verdict"]),
        "reading": _reading(d_gap, d_val) if value != baseline else "the baseline",
    }


def _lower(d: Interval) -> bool:
    """A loss beyond seed noise (or, with one seed, any loss)."""
    return d.below_zero if d.n > 1 else d.mean < 0


def _reading(d_gap: Interval, d_val: Interval) -> str:
    if not d_gap.mean < 0:
        return "no smaller gap"
    if _lower(d_val):
        return "smaller gap, but lower validation score"
    kept = "better validation score" if d_val.above_zero else "validation score kept"
    if d_gap.below_zero:
        return f"smaller gap beyond seed noise, {kept}"
    return f"smaller gap within seed noise, {kept}"


def _conclusion(rows: list[dict[str, Any]], baseline: str, *, n_seeds: int) -> list[str]:
    base = rows[0]
    if not overfits(base["verdict"]):
        return [f"**Not testable on these numbers:** the baseline reg={baseline} is diagnosed "
                f"*{base['verdict']}* ({base['verdicts']}), so there is no overfitting to cure. Make the "
                "baseline overfit (a bigger network, more epochs, or less training data) and rerun."]
    clear = [r["reg"] for r in rows[1:] if r["reading"].startswith("smaller gap beyond")]
    within = [r["reg"] for r in rows[1:] if r["reading"].startswith("smaller gap within")]
    costly = [r["reg"] for r in rows[1:] if r["reading"].endswith("lower validation score")]
    none = [r["reg"] for r in rows[1:] if r["reading"] == "no smaller gap"]
    lines = [f"The baseline reg={baseline} is diagnosed *{base['verdict']}* ({base['verdicts']}), "
             f"train-validation gap {base['gap']}."]
    if clear:
        lines.append(f"**Supported:** {_names_list(clear)} {_verb(clear, 'shrinks', 'shrink')} the gap by "
                     "more than the seed-to-seed "
                     "noise without a validation score below the baseline's.")
    elif within:
        lines.append(f"**Only weakly supported:** {_names_list(within)} {_verb(within, 'shrinks', 'shrink')} "
                     f"the gap on average and {_verb(within, 'keeps', 'keep')} "
                     f"the validation score, but with {n_seeds} seeds the decrease is within noise.")
    else:
        lines.append("**Not supported by these numbers:** no regularizer shrinks the gap while keeping the "
                     "validation score.")
    if clear and within:
        lines.append(f"{_names_list(within)} also {_verb(within, 'shrinks', 'shrink')} it on average, "
                     "within noise.")
    if costly:
        lines.append(f"{_names_list(costly)} {_verb(costly, 'shrinks', 'shrink')} the gap but "
                     f"{_verb(costly, 'loses', 'lose')} validation score beyond noise "
                     "(too strong at this setting).")
    if none:
        lines.append(f"{_names_list(none)} {_verb(none, 'does', 'do')} not shrink the gap at this strength.")
    lines.append(_loss_gap_sentence(rows))
    return [" ".join(lines)]


def _loss_gap_sentence(rows: list[dict[str, Any]]) -> str:
    """The same question asked of the log-loss gap, which registers overconfidence first."""
    shrink = [r["reg"] for r in rows[1:] if r["d_loss_gap"].below_zero]
    if not shrink:
        return "No regularizer shrinks the log-loss gap (validation − training loss) beyond noise either."
    return (f"On the log-loss gap (validation − training loss), which registers overconfidence before "
            f"accuracy moves, {_names_list(shrink)} {_verb(shrink, 'shrinks', 'shrink')} it beyond noise.")


def _verb(subjects: list[str], singular: str, plural: str) -> str:
    return singular if len(subjects) == 1 else plural


def _names_list(values: list[str]) -> str:
    return ", ".join(f"reg={v}" for v in values)


def _table(rows: list[dict[str, Any]], *, headline: str, fit: str) -> str:
    lines = [
        f"| reg | n | gap ({fit}) | Δgap vs baseline | val {headline} | Δval vs baseline | val {fit} "
        "| loss gap | Δloss gap | diagnosis | reading |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        base = "–" if i == 0 else ""
        lines.append(
            f"| {r['reg']} | {r['n']} | {r['gap']} | {base or r['d_gap'].text()} | {r['val']} | "
            f"{base or r['d_val'].text()} | {r['val_fit']} | {r['loss_gap']} | "
            f"{base or r['d_loss_gap'].text()} | {r['verdicts']} | {r['reading']} |"
        )
    return "\n".join(lines)


def _notes(ok: pd.DataFrame, keys: list[str], *, headline: str, fit: str) -> list[str]:
    n = ok.groupby(KEY)["seed"].nunique().min()
    n_val = ok["n_val"].median()
    grain = (f" On {n_val:.0f} validation rows one example moves the gap by {1 / n_val:.4f}."
             if fit == "accuracy" and n_val > 0 else "")
    lines = [
        f"gap = train {fit} − validation {fit} (the diagnosis' measure); columns with ± are mean ± std "
        "over seeds. Δ columns are paired by seed (each seed fixes the split and the initial weights) and "
        f"show the mean difference ± the half-width of its 95% Student-t interval over {n} seeds; a "
        "difference is called real only when that interval excludes zero. The loss gap (validation − "
        "training log-loss) is shown because overfitting shows there first: an overconfident network's "
        f"validation loss rises while its accuracy barely moves.{grain}",
    ]
    others = [k for k in keys if k != KEY]
    if others:
        lines += ["", f"Other swept keys ({', '.join(others)}) are averaged over within each seed."]
    return lines
