"""Course 6's claims, checked on a sweep over ``fairness`` (and ``seed``, and maybe ``dataset``).

1. The audit finds the documented disparity: the training labels' base-rate difference
   between groups is within its sampling error (1.96 standard errors, the audit's own
   ``train_base_rate_difference_se``) of the value the data's source documents
   (credit_synthetic: the gap the generator plants; Adult by sex: 0.196). The unmitigated
   network's own decisions are shown beside it: how much of the gap it reproduces.
2. Mitigation shrinks it: each mitigation's test demographic-parity difference against the
   audited network's (``fairness=audit``, the same network unmitigated), paired by seed;
   Holm over the mitigations. A second family asks for the issue's bar, at least a halving
   (``DP(mitigated) < DP(audit) / 2``).
3. The accuracy it costs: test accuracy against the audit's, paired by seed; the claim
   checked is that the cost stays within :data:`COST_TOLERANCE` (the course's bar).

``fairness=unaware`` trains the same network as the audit (dlrun never feeds the
attribute to the model unless ``dataset.sensitive_as_feature=true``), so it is not an arm:
the report shows how well its inputs predict the group, which is why unawareness does not
remove a disparity that a proxy carries.

Choices (thresholds) are fitted on validation; claims are assessed on the test split,
and the validation numbers are shown beside them. Every comparison uses
:mod:`dlrun.report.claims.stats`.
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

log = logging.getLogger(__name__)

AUDIT, UNAWARE, REWEIGHING = "audit", "unaware", "reweighing"
COST_TOLERANCE = 0.03  # accuracy points a mitigation may cost (the bar for Adult)
Z_95 = 1.96  # a documented gap within 1.96 standard errors is recovered
DEFAULT_CLAIM = ("The audit finds the planted disparity; mitigation shrinks it; the report shows the accuracy "
                 "it costs.")


def _per_run(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per finished run with its dataset, method and fairness numbers."""
    rows = []
    for run_dir, seed in zip(runs["run_dir"], runs["seed"], strict=True):
        try:
            record = read_record(Path(run_dir))
        except (OSError, RecordError) as err:
            log.warning("skipping %s: %s", run_dir, err)
            continue
        f = record.sections.get("fairness")
        if not f or "test" not in f:
            continue
        method = f.get("option", "?")
        if method == "threshold" and f.get("constraint") not in (None, "demographic_parity"):
            method = f"threshold ({f['constraint']})"
        documented = f.get("documented_base_rate_difference") or {}
        rows.append({
            "dataset": record.dataset or "?", "attribute": f.get("attribute"), "method": method, "seed": seed,
            "val_accuracy": record.val.get("accuracy", np.nan), "test_accuracy": record.test.get("accuracy", np.nan),
            "val_dp": f["val"]["demographic_parity_difference"] if "val" in f else np.nan,
            "test_dp": f["test"]["demographic_parity_difference"],
            "test_dp_ratio": f["test"]["demographic_parity_ratio"],
            "test_eo": f["test"]["equalized_odds_difference"],
            "train_gap": f.get("train_base_rate_difference", np.nan),
            "train_gap_se": f.get("train_base_rate_difference_se", np.nan),
            "documented": documented.get("value", np.nan), "documented_source": documented.get("source"),
            "proxy_auc": (f.get("group_predictability") or {}).get("roc_auc", np.nan),
            "effect_group": (f.get("conditional_group_effect") or {}).get("group"),
            "effect_before": (f.get("conditional_group_effect") or {}).get("before", np.nan),
            "effect_after": (f.get("conditional_group_effect") or {}).get("after", np.nan),
            "weighted_gap": f.get("weighted_train_base_rate_difference", np.nan),
            "linear_split": (f.get("linear_reference") or {}).get("split"),
            "linear_unweighted": (f.get("linear_reference") or {}).get("unweighted", np.nan),
            "linear_reweighed": (f.get("linear_reference") or {}).get("reweighed", np.nan),
            "test_dp_se": _selection_gap_se(f["test"].get("by_group") or {}),
            "test_score_gap": f["test"].get("mean_score_difference", np.nan),
        })
    return pd.DataFrame(rows)


def _selection_gap_se(by_group: Mapping[str, Mapping[str, float]]) -> float:
    """Sampling standard error of one split's selection-rate gap (its two extreme groups)."""
    cells = sorted((g["selection_rate"], g["count"]) for g in by_group.values() if g.get("count"))
    if len(cells) < 2:
        return np.nan
    (p1, n1), (p2, n2) = cells[0], cells[-1]
    return float(np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2))


def _bold(verdict: str) -> str:
    return f"**{verdict.capitalize()}**"


def check(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
          out_dir: Path) -> list[str]:
    """Test the three claims of the module docstring per dataset; markdown lines for ``study.md``."""
    lines = ["## Claims", "", f"> {study.get('claim') or DEFAULT_CLAIM}", "", RULE, ""]
    ok = finished(runs)
    table = _per_run(ok) if not ok.empty and "run_dir" in ok else pd.DataFrame()
    if table.empty:
        return lines + ["Not checked: no finished run of this sweep has a fairness audit."]
    datasets = list(dict.fromkeys(table["dataset"]))
    for name in datasets:
        data = table[table["dataset"] == name]
        if len(datasets) > 1:
            lines += [f"## {name}", ""]
        lines += [*_claims(data), ""]
    lines += figure_lines(lambda path: _plot(table, path), Path(out_dir) / "fairness.png",
                          "accuracy against demographic-parity difference per method")
    return lines


def _claims(data: pd.DataFrame) -> list[str]:
    attribute = data["attribute"].dropna().iloc[0] if data["attribute"].notna().any() else "?"
    lines = [f"Sensitive attribute: `{attribute}`.", "", *_table(data), ""]
    audit = data[data["method"] == AUDIT]
    mitigations = [m for m in dict.fromkeys(data["method"]) if m not in (AUDIT, UNAWARE)]
    lines += [*_found(audit), ""]
    if audit.empty or not mitigations:
        return lines + ["Claims 2 and 3 not checked: the sweep needs fairness=audit and at least one mitigation."]
    lines += [*_shrinks(data, mitigations), "", *_cost(data, mitigations)]
    unaware = data[data["method"] == UNAWARE]
    if unaware["proxy_auc"].notna().any():
        lines += ["", *_unaware(unaware, audit)]
    return lines


def _table(data: pd.DataFrame) -> list[str]:
    lines = ["| method | n | val accuracy | test accuracy | val DP difference | test DP difference | test DP ratio "
             "| test EO difference |", "|---|---|---|---|---|---|---|---|"]
    for method, g in data.groupby("method", sort=False):
        lines.append(f"| {method} | {len(g)} | {mean_std(g['val_accuracy'])} | {mean_std(g['test_accuracy'])} | "
                     f"{mean_std(g['val_dp'])} | {mean_std(g['test_dp'])} | {mean_std(g['test_dp_ratio'])} | "
                     f"{mean_std(g['test_eo'])} |")
    return lines + ["", "Mean ± standard deviation over seeds. DP: demographic parity (gap in selection rates; "
                    "ratio under 0.8 fails the four-fifths rule); EO: equalized odds (the larger of the TPR and "
                    "FPR gaps). Thresholds are fitted on validation, so its DP is what they were chosen for; "
                    "the claims are judged on test."]


def _found(audit: pd.DataFrame) -> list[str]:
    head = "### 1. The audit finds the documented disparity"
    if audit.empty:
        return [head, "", "Not checked: no fairness=audit run."]
    measured, se = float(audit["train_gap"].mean()), float(audit["train_gap_se"].mean())
    network = f"The unmitigated network's test decisions differ by {mean_std(audit['test_dp'])} in selection " \
              f"rate (demographic-parity difference, over {len(audit)} seeds)."
    if audit["documented"].isna().all():
        return [head, "", f"Not checked: this data documents no disparity. Training base-rate difference "
                f"{measured:.4f} (sampling standard error {se:.4f}). {network}"]
    documented, source = float(audit["documented"].iloc[0]), audit["documented_source"].iloc[0]
    verdict = SUPPORTED if abs(measured - documented) <= Z_95 * se else NOT_SUPPORTED
    return [head, "", f"{_bold(verdict)}. Training labels' base-rate difference {measured:.4f} (mean over "
            f"{len(audit)} seeds' splits) against the documented {documented:.4f} ({source}): off by "
            f"{measured - documented:+.4f}, {'within' if verdict == SUPPORTED else 'outside'} "
            f"{Z_95} sampling standard errors (± {Z_95 * se:.4f}). {network}",
            "", "Rule: recovered when |measured − documented| ≤ 1.96 × the standard error of a difference of "
            "two proportions on the training split."]


def _paired(data: pd.DataFrame, method: str, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed by seed: the audit's ``column`` minus ``method``'s, the audit's, and ``method``'s."""
    a = data[data["method"] == AUDIT].groupby("seed")[column].mean()
    m = data[data["method"] == method].groupby("seed")[column].mean()
    common = a.index.intersection(m.index)
    return (a[common] - m[common]).to_numpy(dtype=float), a[common].to_numpy(dtype=float), \
        m[common].to_numpy(dtype=float)


def _shrinks(data: pd.DataFrame, mitigations: list[str]) -> list[str]:
    head = "### 2. Mitigation shrinks the disparity"
    shrink, halve, ratios = [], [], []
    for m in mitigations:
        drop, audit, mitigated = _paired(data, m, "test_dp")
        shrink.append(paired_test(drop))
        halve.append(paired_test(audit / 2 - mitigated))
        ratios.append(float(np.mean(mitigated) / np.mean(audit)) if np.mean(audit) > 0 else np.nan)
    shrinks, halves = verdicts(shrink), verdicts(halve)  # Holm over the mitigations, one family each
    rows = ["| mitigation | test DP, audit − mitigated | shrinks | DP kept (mitigated / audit) | "
            "audit / 2 − mitigated | halves |", "|---|---|---|---|---|---|"]
    for m, s, h, sv, hv, r in zip(mitigations, shrink, halve, shrinks, halves, ratios, strict=True):
        rows.append(f"| {m} | {s.interval.text()} (p = {s.p:.3g}) | {sv} | {r:.0%} | {h.interval.text()} "
                    f"(p = {h.p:.3g}) | {hv} |")
    text = "; ".join(f"{m}: {r:.0%} of the audit's gap left ({sv}; halved: {hv})"
                     for m, r, sv, hv in zip(mitigations, ratios, shrinks, halves, strict=True))
    se = data.loc[data["method"] == AUDIT, "test_dp_se"].mean()
    noise = (f" One test split measures a DP difference to within ± {Z_95 * se:.3f} (1.96 sampling standard "
             "errors, from its group sizes and selection rates), before any seed-to-seed spread."
             if np.isfinite(se) else "")
    lines = [head, "", f"{_bold(combine(shrinks, every=True))} (every mitigation), at least halved: "
             f"{combine(halves, every=True)}. {text}. Paired by seed against fairness=audit on the test split.{noise}",
             "", *rows]
    if REWEIGHING in mitigations and halves[mitigations.index(REWEIGHING)] != SUPPORTED:
        lines += ["", *_why_reweighing_falls_short(data)]
    return lines


def _why_reweighing_falls_short(data: pd.DataFrame) -> list[str]:
    """What reweighing leaves, from the runs' own numbers (see ``dlrun.fairness``)."""
    runs = data[data["method"] == REWEIGHING]
    if runs["effect_after"].isna().all():
        return []
    before, after = runs["effect_before"].mean(), runs["effect_after"].mean()
    group = runs["effect_group"].iloc[0]
    auc = data.loc[data["method"] == UNAWARE, "proxy_auc"].mean()
    carried = f"; the inputs predict the group with validation ROC-AUC {auc:.3f} (fairness=unaware's runs)" \
        if np.isfinite(auc) else ""
    if np.sign(after) == np.sign(before) and abs(after) < abs(before):
        left = (f"part of it is left given the other inputs: being in group {group} moves the training label's "
                f"logit by {before:+.3f}, and still by {after:+.3f} once reweighed (logistic regression, mean over "
                f"seeds){carried}, so the network can learn that remainder through them")
    else:
        left = (f"given the other inputs, being in group {group} moves the training label's logit by {before:+.3f}, "
                f"and by {after:+.3f} once reweighed (logistic regression, mean over seeds): the gap lies mostly in "
                "inputs whose distribution differs between the groups, which weights on (group, label) cells do not "
                f"change{carried}")
    lines = [f"Why reweighing does not clearly halve it: its weights make the groups' base rates equal in the "
             f"training labels (the rows as the loss weighed them differ by {runs['weighted_gap'].max():.4f}, the "
             f"largest over seeds), which is not the same as equal decisions. First, {left}."]
    if runs["test_score_gap"].notna().any():
        scores, decisions = runs["test_score_gap"].mean(), runs["test_dp"].mean()
        how = "thresholding the scores widens the gap" if decisions > scores else \
            "the gap is in the scores themselves, not made by the threshold"
        lines[0] += (f" Second, the reweighed network's mean test score differs by {scores:.3f} between groups and "
                     f"its selection rate by {decisions:.3f}: {how}.")
    linear = runs[runs["linear_split"] == "test"]
    if not linear.empty and linear["linear_unweighted"].mean() > 0:
        plain, weighed = linear["linear_unweighted"].mean(), linear["linear_reweighed"].mean()
        kept = weighed / plain
        network = np.mean(runs["test_dp"]) / data.loc[data["method"] == AUDIT, "test_dp"].mean()
        if kept >= 0.5:
            verdict = "the weights alone fall short on this data, not only the network"
        elif network > kept:
            verdict = ("the weights can halve the gap on this data, and what the network keeps beyond that comes "
                       "from how it was trained (its fit, the epoch kept)")
        else:
            verdict = "the weights can halve the gap on this data, and the network keeps no more of it than the regression"
        ordinal = "Third" if " Second," in lines[0] else "Second"
        lines[0] += (f" {ordinal}, a logistic regression on the same inputs under the same weights keeps {kept:.0%} of "
                     f"its own test gap ({plain:.3f} → {weighed:.3f}, mean over seeds) where the network keeps "
                     f"{network:.0%}: {verdict}.")
    return lines


def _cost(data: pd.DataFrame, mitigations: list[str]) -> list[str]:
    head = f"### 3. The accuracy it costs (at most {COST_TOLERANCE:.2f})"
    costs, within = [], []
    for m in mitigations:
        cost, _, _ = _paired(data, m, "test_accuracy")
        costs.append(paired_test(-cost))  # positive: the mitigation is more accurate
        within.append(paired_test(COST_TOLERANCE - cost))
    cost_verdicts, within_verdicts = verdicts(costs), verdicts(within)
    rows = ["| mitigation | test accuracy, mitigated − audit | change | tolerance − cost | within tolerance |",
            "|---|---|---|---|---|"]
    for m, c, w, cv, wv in zip(mitigations, costs, within, cost_verdicts, within_verdicts, strict=True):
        change = "costs accuracy" if cv == NOT_SUPPORTED else "gains accuracy" if cv == SUPPORTED \
            else "within seed noise"
        rows.append(f"| {m} | {c.interval.text()} (p = {c.p:.3g}) | {change} | {w.interval.text()} | {wv} |")
    return [head, "", f"{_bold(combine(within_verdicts, every=True))}: the cost of each mitigation in test accuracy, paired by "
            f"seed against fairness=audit; 'within tolerance' is supported when the cost is significantly under "
            f"{COST_TOLERANCE:.2f} (Holm over the mitigations).", "", *rows]


def _unaware(unaware: pd.DataFrame, audit: pd.DataFrame) -> list[str]:
    auc = float(unaware["proxy_auc"].mean())
    same = "" if audit.empty else (f" Its test DP difference is {mean_std(unaware['test_dp'])}, against the "
                                   f"audit's {mean_std(audit['test_dp'])}: the same network, trained alike.")
    return ["### Why unawareness is not a mitigation", "",
            f"fairness=unaware leaves the attribute out of the inputs, as every run here does. The remaining "
            f"inputs predict the group with validation ROC-AUC {auc:.3f} (0.5: not at all; logistic regression), "
            f"so a network can learn the disparity through them.{same}"]


def _plot(table: pd.DataFrame, path: Path) -> Path:
    """Test accuracy against test DP difference, one point per run, per dataset."""
    from dlrun.report.files import save_figure
    from dlrun.report.plots import plt

    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8), squeeze=False)
    for ax, name in zip(axes.flat, datasets, strict=True):
        data = table[table["dataset"] == name]
        for method, g in data.groupby("method", sort=False):
            ax.scatter(g["test_dp"], g["test_accuracy"], label=method, alpha=0.8)
        ax.set_xlabel("test demographic-parity difference")
        ax.set_ylabel("test accuracy")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(path, fig)
