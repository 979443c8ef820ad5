"""Course 4's claim: model-based search beats random search at an equal budget.

The report is given run folders inside tuning folders (``make course4`` gives each
tuning's ``refit/``); each run's tuning folder is the nearest parent holding ``trials.csv``
and ``best_config.yaml`` (dlrun.tuning_folder). From every tuning it reads the method and
tuner seed, the best validation score after each trial, and its best trial's refit (trained
on train + validation, scored once on test).

Each model-based method (gp, forest, gbrt) is compared with ``random`` seed by seed: at one
tuner seed both drew the same random start (dlrun.tuning), so the difference is what the
model added. The choice is made on validation; the claim is judged on test (the refit of
each tuning's choice), with the validation comparison shown beside it. Both use
:data:`dlrun.report.claims.stats.RULE`, Holm-corrected over the three arms.
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
import yaml

from dlrun.report.claims.stats import (
    NOT_SUPPORTED,
    RULE,
    SUPPORTED,
    combine,
    mean_std,
    paired_test,
    verdicts,
)
from dlrun.report.plots import figure_lines

log = logging.getLogger(__name__)

BASELINE = "random"
MODEL_BASED = ("gp", "forest", "gbrt")
ORDER = (*MODEL_BASED, BASELINE, "grid")
TARGET_TEST_ACCURACY = 0.95  # the course's target for the tuned network on mnist_5k
DEFAULT_CLAIM = "Model-based search (GP, random forest, gradient-boosted trees) beats random search at an equal budget."
PLOT = "tuning_convergence.png"


@dataclass
class Tuning:
    """One tuning folder, as the claim reads it."""

    folder: Path
    method: str
    seed: int
    maximize: bool
    metric: str
    curve: list[float]  # best validation score so far after each trial
    best: float  # the final best validation score
    overrides: list[str]
    refit_test: float  # the best trial's refit, scored on test (NaN when it did not run)
    seconds: float  # training seconds over every trial


def _folder_of(run_dir: Path) -> Path | None:
    for folder in (run_dir, *run_dir.parents):
        if (folder / "trials.csv").is_file() and (folder / "best_config.yaml").is_file():
            return folder
    return None


def read_tuning(folder: Path) -> Tuning:
    """A tuning folder's method, seed, best-so-far curve and refit."""
    from dlrun.tuning_folder import best_so_far

    trials = pd.read_csv(folder / "trials.csv").sort_values("trial")
    with open(folder / "best_config.yaml", encoding="utf-8") as f:
        best = yaml.safe_load(f)
    maximize = "higher is better" in str(best.get("metric", ""))
    scores = [s if st == "ok" else math.nan for s, st in zip(trials["score"], trials["status"], strict=True)]
    refit = best.get("refit") or {}
    test = next((float(v) for k, v in refit.items() if k.startswith("test_")), math.nan)
    metric = str(best.get("metric", "score")).split(" (")[0].removeprefix("validation ")
    curve = best_so_far(scores, maximize=maximize)
    return Tuning(folder=folder, method=str(best["method"]), seed=int(best["tuner_seed"]), maximize=maximize,
                  metric=metric, curve=curve, best=curve[-1] if curve else math.nan,
                  overrides=list(best.get("overrides") or []), refit_test=test,
                  seconds=float(pd.to_numeric(trials["seconds"], errors="coerce").sum()))


def check(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
          out_dir: Path) -> list[str]:
    """Test the claim of the module docstring; markdown lines for ``study.md``."""
    lines = ["## Claim", "", f"> {study.get('claim') or DEFAULT_CLAIM}", ""]
    folders = sorted({f for f in (_folder_of(Path(r)) for r in runs.get("run_dir", [])) if f is not None})
    tunings = []
    for folder in folders:
        try:
            tunings.append(read_tuning(folder))
        except (OSError, KeyError, ValueError, yaml.YAMLError) as err:
            log.warning("skipping tuning folder %s: %s", folder, err)
    if not tunings:
        return lines + ["Not checked: these runs are not in tuning folders (trials.csv and best_config.yaml)."]
    table = pd.DataFrame([t.__dict__ for t in tunings])
    methods = [m for m in ORDER if m in set(table["method"])] + sorted(set(table["method"]) - set(ORDER))
    metric, maximize = tunings[0].metric, tunings[0].maximize
    budgets = sorted({len(t.curve) for t in tunings})
    counts = ", ".join(f"{m} x {(table['method'] == m).sum()}" for m in methods)
    refits = all(Path(r).name == "refit" for r in runs["run_dir"])
    lines += [f"{len(tunings)} tuning{'s' if len(tunings) > 1 else ''} ({counts}), "
              f"{' or '.join(map(str, budgets))} trials each, scored on validation {metric} "
              f"({'higher' if maximize else 'lower'} is better). Each tuning's best trial was retrained on "
              "train + validation and scored once on test (its `refit/` folder"
              + ("; the table above lists these refits: their validation column is measured on rows they "
                 "trained on, their test column is the estimate to read)." if refits else ")."), ""]
    lines += _method_table(table, methods, metric)
    lines += figure_lines(lambda path: _plot(tunings, methods, metric, path), Path(out_dir) / PLOT,
                          f"best validation {metric} so far against trials, mean and range over tuner seeds")
    lines += ["", *_verdict(table, methods, budgets, maximize=maximize, metric=metric)]
    lines += ["", *_best_configuration(tunings, metric, maximize=maximize)]
    return lines


def _method_table(table: pd.DataFrame, methods: list[str], metric: str) -> list[str]:
    rows = [f"| tuner | tunings | best validation {metric} | after half the trials | refit test {metric} "
            "| training s per tuning |", "|---|---|---|---|---|---|"]
    for m in methods:
        g = table[table["method"] == m]
        half = [c[len(c) // 2 - 1] if c else math.nan for c in g["curve"]]
        rows.append(f"| {m} | {len(g)} | {mean_std(g['best'])} | {mean_std(half)} | {mean_std(g['refit_test'])} "
                    f"| {g['seconds'].mean():.0f} |")
    return ["### Each tuner's final best", "", *rows, "", "Mean ± standard deviation over tuner seeds."]


def _differences(table: pd.DataFrame, method: str, column: str, *, sign: float) -> np.ndarray:
    """``column`` of ``method`` minus that of random, tuner seed by tuner seed (positive: better)."""
    a = table[table["method"] == method].groupby("seed")[column].mean()
    b = table[table["method"] == BASELINE].groupby("seed")[column].mean()
    common = a.index.intersection(b.index)
    return sign * (a[common] - b[common]).to_numpy(dtype=float)


def _verdict(table: pd.DataFrame, methods: list[str], budgets: list[int], *, maximize: bool,
             metric: str) -> list[str]:
    head = "### Model-based search against random search, paired by tuner seed"
    arms = [m for m in MODEL_BASED if m in methods]
    if BASELINE not in methods or not arms:
        return [head, "", "Not checked: the report needs tuner=random and at least one of gp, forest, gbrt."]
    if len(budgets) > 1:
        return [head, "", f"Not checked: the tunings ran different budgets ({', '.join(map(str, budgets))} "
                "trials); the claim compares tuners at an equal budget."]
    sign = 1.0 if maximize else -1.0
    test = [paired_test(_differences(table, m, "refit_test", sign=sign)) for m in arms]
    val = [paired_test(_differences(table, m, "best", sign=sign)) for m in arms]
    test_verdicts, val_verdicts = verdicts(test), verdicts(val)
    rows = [f"| tuner | Δ refit test {metric} (the claim) | verdict | Δ best validation {metric} "
            "(what it searched) | verdict |", "|---|---|---|---|---|"]
    for m, t, tv, v, vv in zip(arms, test, test_verdicts, val, val_verdicts, strict=True):
        rows.append(f"| {m} | {t.interval.text()} (p = {t.p:.3g}, {t.interval.n} seeds) | {tv} | "
                    f"{v.interval.text()} (p = {v.p:.3g}) | {vv} |")
    overall, searched = combine(test_verdicts, every=False), combine(val_verdicts, every=False)
    better = [m for m, v in zip(arms, test_verdicts, strict=True) if v == SUPPORTED]
    worse = [m for m, v in zip(arms, test_verdicts, strict=True) if v == NOT_SUPPORTED]
    if better:
        text = f"{', '.join(better)} beat{'s' if len(better) == 1 else ''} random search on test beyond seed noise"
    elif worse:
        text = f"{', '.join(worse)} did worse than random search on test beyond seed noise"
    else:
        text = "no model-based tuner differs from random search on test beyond seed noise"
    return [head, "", RULE, "",
            f"**{overall.capitalize()}** at {budgets[0]} trials: {text}; on the validation score the search "
            f"optimised, the verdict is {searched}. Differences are tuner minus random at the same tuner "
            "seed (positive: better), each the difference between the two tunings' chosen configurations.",
            "", *rows]


def _best_configuration(tunings: list[Tuning], metric: str, *, maximize: bool) -> list[str]:
    done = [t for t in tunings if math.isfinite(t.best)]
    if not done:
        return ["### The best configuration", "", "No tuning finished a trial."]
    best = (max if maximize else min)(done, key=lambda t: t.best)
    searched = [o for o in best.overrides if o.split("=", 1)[0] in _searched_keys(best.folder)]
    lines = ["### The best configuration", "",
             f"Chosen on validation over {len(tunings)} tuning{'s' if len(tunings) > 1 else ''}: {best.method}, tuner seed {best.seed} "
             f"(validation {metric} {best.best:.4f}): `{' '.join(searched) or ' '.join(best.overrides)}`.", ""]
    if not math.isfinite(best.refit_test):
        return lines + ["Its refit did not run, so it has no test score."]
    lines.append(f"Retrained on train + validation and scored once on test: test {metric} {best.refit_test:.4f}.")
    if metric == "accuracy" and _dataset(best) == "mnist_5k":
        reached = best.refit_test >= TARGET_TEST_ACCURACY
        lines.append(f"The course's target for mnist_5k, test accuracy >= {TARGET_TEST_ACCURACY}, is "
                     f"{'reached' if reached else 'not reached'}.")
    return lines


def _searched_keys(folder: Path) -> set[str]:
    columns = pd.read_csv(folder / "trials.csv", nrows=0).columns
    return set(columns) - {"trial", "score", "status", "seconds", "told", "direction", "run_dir"}


def _dataset(tuning: Tuning) -> str | None:
    from dlrun.record import RecordError, read_record

    try:
        return read_record(tuning.folder / "refit").dataset
    except (OSError, RecordError):
        return None


def _plot(tunings: list[Tuning], methods: list[str], metric: str, path: Path) -> Path:
    """Best validation score so far against trials: each method's mean, with its range over seeds.

    Left every trial; right the last half, zoomed, where the methods part (at one tuner seed
    they share their random start).
    """
    from matplotlib.ticker import MaxNLocator

    from dlrun.report.files import save_figure
    from dlrun.report.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, m in enumerate(methods):
        curves = [t.curve for t in tunings if t.method == m]
        n = min(len(c) for c in curves)
        stack = np.array([c[:n] for c in curves], dtype=float)
        x = np.arange(1, n + 1)
        with np.errstate(all="ignore"):
            mean, low, high = np.nanmean(stack, 0), np.nanmin(stack, 0), np.nanmax(stack, 0)
        for ax, start in zip(axes, (0, n // 2), strict=True):
            ax.plot(x[start:], mean[start:], color=f"C{i}", lw=2 if m != BASELINE else 1.5,
                    ls="--" if m == BASELINE else "-", marker="." if start else None,
                    label=f"{m} ({len(curves)} seeds)")
            ax.fill_between(x[start:], low[start:], high[start:], color=f"C{i}", alpha=0.12)
    for ax, title in zip(axes, ("every trial", "the last half, zoomed"), strict=True):
        ax.set_xlabel("trial")
        ax.set_ylabel(f"best validation {metric} so far")
        ax.set_title(title, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=8)
    fig.suptitle("best so far: mean over tuner seeds, band from the worst to the best seed", fontsize=10)
    fig.tight_layout()
    return save_figure(path, fig)
