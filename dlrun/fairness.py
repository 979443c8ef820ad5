"""Fairness audit and mitigation (``fairness=audit|reweighing|threshold|unaware``).

Every option audits: per group of ``dataset.sensitive`` and split, the count, selection
rate, true- and false-positive rate, precision and accuracy, and the gaps between groups
(fairlearn's ``MetricFrame``): demographic-parity difference and ratio (the four-fifths
rule asks for a ratio of at least 0.8), equalized-odds difference, equal-opportunity
difference; and the training labels' own base-rate difference with its sampling standard
error, beside the gap the data's source documents where it documents one (the loader's
``documented_base_rate_difference`` note). Mitigations plug into the stages:

* ``reweighing`` (prepare): each training row weighs ``P(g) P(y) / P(g, y)`` (Kamiran and
  Calders), which makes group and label independent in the weighted training data. Only
  marginally: given the other inputs the label may still depend on the group, and the
  audit reports how much (the group's logit coefficient in a logistic regression, before
  and after reweighing), the part a proxy of the group can still carry into the network,
  and what the same weights do to a logistic regression on the same inputs (its test
  demographic-parity difference unweighted and reweighed: a yardstick for the network);
* ``threshold`` (post-process): per-group thresholds on the network's scores, chosen on the
  validation split by fairlearn's ``ThresholdOptimizer`` under ``fairness.constraint``
  (``demographic_parity`` or ``equalized_odds``), then applied to every split;
* ``unaware``: the attribute is not an input (dlrun's default anyway), plus how well the
  remaining inputs predict it, which shows why unawareness alone is not enough.

Binary tasks only: the positive outcome is class code 1.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from dlrun.capabilities import Capability, FoldContext, RunContext, register_capability
from dlrun.data.table import Part, Splits
from dlrun.errors import ConfigError
from dlrun.record import Section

log = logging.getLogger(__name__)

OPTIONS = ("none", "audit", "reweighing", "threshold", "unaware")
CONSTRAINTS = ("demographic_parity", "equalized_odds")
FOUR_FIFTHS = 0.8
_REPORTED = ("train", "val", "test")


# --- metrics ---------------------------------------------------------------------------


def group_metrics(y: np.ndarray, labels: np.ndarray, group: np.ndarray, *,
                  scores: np.ndarray | None = None) -> dict[str, Any]:
    """Per-group rates and the gaps between groups for one split (fairlearn's MetricFrame).

    Args:
        y: true class codes (1: the positive outcome).
        labels: decided class codes.
        group: each row's group.
        scores: the model's positive-class scores, when known: each group's mean score and
            the largest gap between those means are added (decisions threshold the scores,
            so equal mean scores can still give unequal selection rates). Defaults to None.
    """
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, precision_score

    def precision(y_true, y_pred):
        return precision_score(y_true, y_pred, zero_division=0)

    metrics = {"count": count, "selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
               "false_positive_rate": false_positive_rate, "precision": precision, "accuracy": accuracy_score}
    frame = MetricFrame(metrics=metrics, y_true=y, y_pred=labels, sensitive_features=group)
    by_group = {str(g): {k: float(v) for k, v in row.items()} for g, row in frame.by_group.iterrows()}
    dp_ratio = float(demographic_parity_ratio(y, labels, sensitive_features=group))
    extra: dict[str, Any] = {}
    if scores is not None:
        means = {str(g): float(np.mean(scores[group == g])) for g in np.unique(group)}
        for g, mean in means.items():
            by_group[g]["mean_score"] = mean
        extra["mean_score_difference"] = max(means.values()) - min(means.values())
    return {**extra,
        "by_group": by_group,
        "demographic_parity_difference": float(demographic_parity_difference(y, labels, sensitive_features=group)),
        "demographic_parity_ratio": dp_ratio,
        "four_fifths_rule": bool(dp_ratio >= FOUR_FIFTHS),
        "equalized_odds_difference": float(equalized_odds_difference(y, labels, sensitive_features=group)),
        "equal_opportunity_difference": float(frame.difference()["true_positive_rate"]),
    }


def base_rate_difference(y: np.ndarray, group: np.ndarray) -> float:
    """Largest minus smallest share of positive labels over groups."""
    rates = [float(np.mean(y[group == g])) for g in np.unique(group)]
    return max(rates) - min(rates)


def base_rate_standard_error(y: np.ndarray, group: np.ndarray) -> float:
    """The sampling standard error of :func:`base_rate_difference` (its two extreme groups).

    ``sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2)``: how far the measured gap may sit from
    the population's by chance alone; a documented gap within about two of these is recovered.
    """
    cells = [(float(np.mean(y[group == g])), int(np.sum(group == g))) for g in np.unique(group)]
    (p1, n1), (p2, n2) = max(cells), min(cells)
    return float(np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2))


def reweighing_weights(y: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``P(g) P(y) / P(g, y)`` per row: group and label independent once weighted."""
    weights = np.ones(len(y))
    for g in np.unique(group):
        for label in np.unique(y):
            cell = (group == g) & (y == label)
            if cell.any():
                weights[cell] = np.mean(group == g) * np.mean(y == label) / np.mean(cell)
    return weights


def _scores_estimator():
    """The network's scores as a fitted scikit-learn classifier, for fairlearn's post-processing."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Scores(ClassifierMixin, BaseEstimator):
        def __init__(self):
            self.classes_ = np.array([0, 1])  # fitted already: the network made the scores

        def fit(self, x, y):
            return self

        def predict_proba(self, x):
            s = np.asarray(x, dtype=float).reshape(-1)
            return np.column_stack([1 - s, s])

        def predict(self, x):
            return (np.asarray(x, dtype=float).reshape(-1) >= 0.5).astype(int)

    return Scores()


# --- the capability --------------------------------------------------------------------


class Fairness(Capability):
    """Audit, and mitigate when asked (see the module docstring)."""

    def __init__(self, option: str, *, constraint: str, seed: int):
        self.option, self.constraint, self.seed = option, constraint, seed

    def prepare(self, splits: Splits, ctx: FoldContext) -> Splits:
        if splits.task != "binary":
            raise ConfigError(f"fairness={self.option} audits binary decisions; this task is {splits.task}")
        if splits.train.group is None:
            raise ConfigError(f"fairness={self.option} needs a sensitive attribute: set dataset.sensitive=COLUMN")
        if self.option != "reweighing":
            return splits
        # Validation is weighed by its own reweighing weights: early stopping then picks the
        # epoch with the lowest loss on data where group and label are independent, not the
        # best fit to the biased labels the weights are there to undo.
        train, val = (replace(p, weight=p.weight * reweighing_weights(p.y.astype(int), p.group))
                      for p in (splits.train, splits.val))
        return replace(splits, train=train, val=val)

    def post_process(self, decide, predictions, splits: Splits, ctx: FoldContext):
        if self.option != "threshold":
            return decide
        from fairlearn.postprocessing import ThresholdOptimizer

        optimizer = ThresholdOptimizer(estimator=_scores_estimator(), constraints=self.constraint, prefit=True,
                                       predict_method="predict_proba", objective="accuracy_score")
        optimizer.fit(predictions["val"].reshape(-1, 1), splits.val.y.astype(int),
                      sensitive_features=splits.val.group)
        seed = self.seed

        def per_group(pred: np.ndarray, part: Part) -> np.ndarray:
            return optimizer.predict(pred.reshape(-1, 1), sensitive_features=part.group,
                                     random_state=seed).astype(np.int64)

        return per_group

    def evaluate(self, outcome, ctx: FoldContext) -> dict[str, Any]:
        splits = outcome.splits
        y, group = splits.train.y.astype(int), splits.train.group
        out: dict[str, Any] = {"train_base_rate_difference": base_rate_difference(y, group),
                               "train_base_rate_difference_se": base_rate_standard_error(y, group)}
        documented = splits.notes.get("documented_base_rate_difference")
        if documented is not None:  # what the data's source says the gap is (credit_synthetic: planted)
            out["documented_base_rate_difference"] = dict(documented)
        for name in _REPORTED:
            part, labels = getattr(splits, name), outcome.labels.get(name)
            if labels is not None:
                scores = np.asarray(outcome.predictions[name], dtype=float).reshape(-1)
                out[name] = group_metrics(part.y.astype(int), labels, part.group, scores=scores)
        if self.option == "unaware":
            out["group_predictability"] = _group_predictability(splits)
        if self.option == "reweighing":  # the weights the training loss used, and what they leave
            weight = splits.train.weight
            rates = [np.average(y[group == g], weights=weight[group == g]) for g in np.unique(group)]
            out["weighted_train_base_rate_difference"] = float(max(rates) - min(rates))
            out["conditional_group_effect"] = _conditional_group_effect(splits)
            out["linear_reference"] = _linear_reference(splits, threshold=ctx.spec.threshold if ctx.spec else 0.5)
        return out

    def report(self, outcomes, ctx: RunContext) -> Section | None:
        folds = [o.extra[self.name] for o in outcomes if self.name in o.extra]
        if not folds:
            return None
        metrics = _average(folds)
        metrics.update({"option": self.option, "attribute": ctx.cfg.dataset.sensitive,
                        "constraint": self.constraint if self.option == "threshold" else None})
        files = []
        if "test" in metrics:
            _plot(metrics["test"]["by_group"], ctx.run_dir / "fairness.png", attribute=metrics["attribute"])
            files.append(("per-group rates", "fairness.png"))
        lines = _summary(metrics)
        from dlrun.report.files import write_text

        write_text(ctx.run_dir / "fairness.md", "# Fairness audit\n\n" + "\n".join(lines) + "\n")
        files.append(("fairness audit", "fairness.md"))
        return Section("fairness", metrics=metrics, summary=lines, files=files)


def _group_predictability(splits: Splits) -> dict[str, float]:
    """How well the model's inputs predict the group (validation ROC-AUC; 0.5: not at all)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    groups = np.unique(splits.train.group)
    if len(groups) != 2:
        return {}
    target = (splits.train.group == groups[1]).astype(int)
    model = LogisticRegression(max_iter=1000).fit(splits.train.x, target)
    val = (splits.val.group == groups[1]).astype(int)
    return {"roc_auc": float(roc_auc_score(val, model.predict_proba(splits.val.x)[:, 1]))}


def _conditional_group_effect(splits: Splits) -> dict[str, Any]:
    """The group's logit coefficient in a logistic regression of the training label on the
    inputs and the group, unweighted and under the reweighing weights.

    Reweighing makes group and label independent, but only marginally: given the other
    inputs the label can still depend on the group, and a network that sees a proxy of the
    group can learn that remainder. Where the inputs do not depend on the group, the
    logistic odds ratio shrinks when marginalized, so some of the conditional effect is
    left (credit_synthetic: -1.0 on the logit, -0.34 once reweighed); where the inputs
    explain the gap (COMPAS: prior counts), reweighing can overshoot. Two groups only
    (empty otherwise).
    """
    from sklearn.linear_model import LogisticRegression

    y, group = splits.train.y.astype(int), splits.train.group
    groups = np.unique(group)
    if len(groups) != 2:
        return {}
    x = np.column_stack([splits.train.x.reshape(len(y), -1), group == groups[1]])

    def coefficient(weights):
        return float(LogisticRegression(max_iter=1000).fit(x, y, sample_weight=weights).coef_[0, -1])

    return {"group": str(groups[1]), "before": coefficient(None),
            "after": coefficient(reweighing_weights(y, group))}


def _linear_reference(splits: Splits, *, threshold: float) -> dict[str, Any]:
    """What reweighing does to a logistic regression on the network's own inputs: its
    demographic-parity difference on the test split (validation without one), trained
    unweighted and under the training part's weights (the network's loss weights).

    A yardstick for the network: where the regression keeps as much of its gap as the
    network, the method falls short on this data; where it keeps much less, the network
    (its fit, the epoch early stopping chose) does. Empty for inputs that are not one
    table in memory.
    """
    from sklearn.linear_model import LogisticRegression

    if not isinstance(splits.train.x, np.ndarray):
        return {}
    name = "test" if len(splits.test) else "val"
    part = getattr(splits, name)
    y = splits.train.y.astype(int)
    x, x_eval = splits.train.x.reshape(len(y), -1), part.x.reshape(len(part), -1)

    def gap(weights):
        model = LogisticRegression(max_iter=1000).fit(x, y, sample_weight=weights)
        labels = (model.predict_proba(x_eval)[:, 1] >= threshold).astype(int)
        return float(group_metrics(part.y.astype(int), labels, part.group)["demographic_parity_difference"])

    return {"split": name, "unweighted": gap(None), "reweighed": gap(splits.train.weight)}


def _average(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Numbers averaged over folds, key by key (the single fold's own for a holdout run)."""
    first = folds[0]
    if len(folds) == 1:
        return dict(first)
    out: dict[str, Any] = {}
    for key, value in first.items():
        values = [f[key] for f in folds if key in f]
        if isinstance(value, dict):
            out[key] = _average(values)
        elif isinstance(value, bool):
            out[key] = all(values)
        elif isinstance(value, (int, float)):
            out[key] = float(np.mean(values))
        else:
            out[key] = value
    return out


def _summary(m: dict[str, Any]) -> list[str]:
    lines = [f"`fairness={m['option']}` on `{m['attribute']}`"
             + (f" (per-group thresholds under {m['constraint']}, chosen on validation)" if m.get("constraint") else "")
             + f". Training labels: base-rate difference {m['train_base_rate_difference']:.3f} between groups "
             f"(sampling standard error {m.get('train_base_rate_difference_se', float('nan')):.3f})"
             + _documented(m) + ".", ""]
    for split in ("val", "test"):
        if split not in m:
            continue
        s = m[split]
        verdict = "passes" if s["four_fifths_rule"] else "fails"
        lines.append(f"- {'validation' if split == 'val' else 'test'}: demographic-parity difference "
                     f"{s['demographic_parity_difference']:.3f} (ratio {s['demographic_parity_ratio']:.3f}: "
                     f"{verdict} the four-fifths rule), equalized-odds difference "
                     f"{s['equalized_odds_difference']:.3f}, equal-opportunity difference "
                     f"{s['equal_opportunity_difference']:.3f}")
    if "test" in m:
        lines += ["", "| group (test) | count | selection rate | TPR | FPR | precision | accuracy |",
                  "|---|---|---|---|---|---|---|"]
        for g, r in m["test"]["by_group"].items():
            lines.append(f"| {g} | {r['count']:.0f} | {r['selection_rate']:.3f} | {r['true_positive_rate']:.3f} | "
                         f"{r['false_positive_rate']:.3f} | {r['precision']:.3f} | {r['accuracy']:.3f} |")
    effect = m.get("conditional_group_effect") or {}
    if "after" in effect:
        lines += ["", f"Given the other inputs, being in group {effect['group']} moves the label's logit by "
                  f"{effect['before']:+.3f} in the training data and by {effect['after']:+.3f} once reweighed "
                  "(logistic regression): reweighing equalizes the groups' base rates, not what is left of the "
                  "gap among otherwise alike rows, which a proxy of the group can still carry."]
    linear = m.get("linear_reference") or {}
    if "reweighed" in linear:
        lines += ["", f"For comparison, a logistic regression on the same inputs has a {linear['split']} "
                  f"demographic-parity difference of {linear['unweighted']:.3f} trained unweighted and "
                  f"{linear['reweighed']:.3f} under the same weights."]
    proxy = m.get("group_predictability") or {}
    if "roc_auc" in proxy:
        lines += ["", f"The model's inputs predict the group with validation ROC-AUC {proxy['roc_auc']:.3f} "
                  "(0.5: not at all): leaving the attribute out does not remove what the other inputs carry "
                  "about it."]
    return lines


def _documented(m: dict[str, Any]) -> str:
    documented = m.get("documented_base_rate_difference")
    if not documented:
        return ""
    return f"; documented {documented['value']:.3f} ({documented['source']})"


def _plot(by_group: dict[str, dict[str, float]], path, *, attribute: str):
    from dlrun.report.files import save_figure
    from dlrun.report.plots import plt

    rates = ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy")
    groups = list(by_group)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / len(groups)
    for i, g in enumerate(groups):
        ax.bar(np.arange(len(rates)) + i * width, [by_group[g][r] for r in rates], width, label=f"{attribute}={g}")
    ax.set_xticks(np.arange(len(rates)) + width * (len(groups) - 1) / 2, [r.replace("_", " ") for r in rates])
    ax.set_ylim(0, 1)
    ax.set_ylabel("rate on the test split")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title("per-group rates (test split)")
    return save_figure(path, fig)


def _from_config(cfg) -> Capability | None:
    f = cfg.fairness
    if f.name == "none":
        return None
    return Fairness(f.name, constraint=f.constraint, seed=cfg.seed)


register_capability("fairness", _from_config)
