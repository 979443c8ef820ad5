"""Course 3's claims, checked on a sweep of optimizers × learning rates × seeds.

The optimizer is the scientific hyperparameter, its learning rate the nuisance one. Rates
are compared like with like: each optimizer's rate is read as a multiple of its usual rate
(the default in ``configs/optimizer/<name>.yaml``), so a sweep over ``optimizer.lr_scale``
(or over ``optimizer.lr``, converted) puts every optimizer on the same relative grid.

1. Adaptive optimizers (RMSprop, Adam, AdamW, Nadam) reach the target in fewer epochs than
   the SGD family (plain SGD, momentum, Nesterov), each at its usual rate (×1). The target
   follows ``study.target_rule``: ``weakest`` (the weakest optimizer's mean best validation
   score at its usual rate: every optimizer reaches it on average, the slowest late, so the
   column separates) or ``fraction`` (``study.target_fraction`` of the best epoch of any
   run). Epochs are counted on the validation curve, interpolated within the epoch that
   crosses; a run that never reaches it counts as one epoch past its last.
2. Plain SGD is the most sensitive to the learning rate: its test score spans a wider range
   across the grid than every other optimizer's, seed by seed. A diverged run counts as the
   worst score of any run. The best rate of each optimizer is chosen on validation; if it
   sits at the edge of the grid the claim is inconclusive (and the report says which way to
   extend). When the sweep has a step beyond ``study.lr_scales`` on each side, the claim is
   also read on the grid shifted one step down and up; a verdict that changes with the
   shift is inconclusive.

Every comparison is paired by seed and judged by :mod:`dlrun.report.claims.stats`: a
paired t-test per pair of optimizers, Holm's correction over the pairs of a claim, and
the claim is supported only when every pair supports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dlrun.paths import config_dir
from dlrun.report.claims.stats import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    PairedTest,
    combine,
    holm_adjusted,
    mean_std,
    paired_test,
    rule_note,
    verdicts,
)
from dlrun.report.plots import figure_lines
from dlrun.report.target import Target, read_history, score_column, study_target, time_to_target

OPT_KEY, LR_KEY, SCALE_KEY = "optimizer", "optimizer.lr", "optimizer.lr_scale"
ADAPTIVE = ("rmsprop", "adam", "adamw", "nadam")
SGD_FAMILY = ("sgd", "momentum", "nesterov")

CLAIM_TIME = ("Adaptive optimizers (RMSprop, Adam) reach the target in less time than SGD and "
              "momentum, each at its usual learning rate.")
CLAIM_SENSITIVITY = "Plain SGD is the most sensitive to the learning rate."


@cache
def usual_lr(name: str) -> float | None:
    """The learning rate ``configs/optimizer/<name>.yaml`` ships (None if there is none)."""
    path = config_dir() / "optimizer" / f"{name}.yaml"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        lr = (yaml.safe_load(f) or {}).get("lr")
    return float(lr) if lr is not None else None


def _fmt(value: float | None, fmt: str = ".2f") -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, fmt)


def _times(m: float) -> str:
    return f"×{m:g}"


# ----------------------------------------------------------------------------- per run


def _run_config(run_dir: str) -> dict:
    file = Path(run_dir) / ".hydra" / "config.yaml"
    if not file.is_file():
        return {}
    with open(file, encoding="utf-8") as f:
        return (yaml.safe_load(f) or {}).get("optimizer") or {}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _multiples(runs: pd.DataFrame) -> pd.DataFrame:
    """Add ``lr`` (the rate the run trained with) and ``multiple`` (of its optimizer's usual rate)."""
    lrs, multiples = [], []
    for _, r in runs.iterrows():
        config = _run_config(r["run_dir"])
        name = r.get(OPT_KEY)
        lr = _number(r.get(LR_KEY)) if LR_KEY in runs else math.nan
        lr = lr if math.isfinite(lr) else _number(config.get("lr", usual_lr(name) if name else None))
        scale = _number(r.get(SCALE_KEY)) if SCALE_KEY in runs else math.nan
        scale = scale if math.isfinite(scale) else _number(config.get("lr_scale", 1.0))
        usual = usual_lr(name) if isinstance(name, str) else None
        lrs.append(lr * scale)
        multiples.append(float(f"{lr * scale / usual:.4g}") if usual else math.nan)
    return runs.assign(lr=lrs, multiple=multiples)


def _scores(runs: pd.DataFrame, *, greater: bool) -> tuple[pd.DataFrame, dict[str, float]]:
    """Finished and diverged runs; a diverged run takes the worst score any run got on each split."""
    kept = runs[runs["status"].isin(["ok", "diverged"])].copy()
    worst = {}
    for split in ("val", "test"):
        col = f"{split}_score"
        kept[col] = pd.to_numeric(kept[col], errors="coerce") if col in kept else math.nan
        finite = kept.loc[kept["status"] == "ok", col].dropna()
        worst[split] = float(finite.min() if greater else finite.max()) if len(finite) else math.nan
        kept.loc[kept["status"] == "diverged", col] = worst[split]
    return kept, worst


# ----------------------------------------------------------------------------- claim 1: time


def _claim_target(ok: pd.DataFrame, histories: dict[str, pd.DataFrame], *, column: str, study: Mapping[str, Any],
                  greater: bool) -> tuple[Target | None, str]:
    """The claim's target and the sentence that says how it was set."""
    rule = str(study.get("target_rule") or "fraction")
    if rule == "weakest":
        usual = ok[np.isclose(ok["multiple"], 1.0)]
        bests = {}
        for name, g in usual.groupby(OPT_KEY):
            per_run = [_best(histories.get(d), column, greater=greater) for d in g["run_dir"]]
            per_run = [b for b in per_run if np.isfinite(b)]
            if per_run:
                bests[name] = float(np.mean(per_run))
        if not bests:
            return None, ""
        weakest = min(bests, key=bests.get) if greater else max(bests, key=bests.get)
        value = bests[weakest]
        return (Target(column, value, value, 1.0, greater),
                f"Target {column} = **{value:.4f}**: the weakest optimizer's mean best validation score at its usual "
                f"rate ({weakest}; study.target_rule=weakest), so every optimizer reaches it on average and the "
                "slowest late.")
    fraction = float(study.get("target_fraction") or 0.95)
    target = study_target([histories[d] for d in ok["run_dir"] if d in histories], column=column,
                          fraction=fraction, greater_is_better=greater)
    if target is None:
        return None, ""
    return target, (f"Target {column} = **{target.value:.4f}**: {fraction:g} of the best epoch of any run "
                    f"({target.best:.4f}; study.target_rule=fraction).")


def _best(history: pd.DataFrame | None, column: str, *, greater: bool) -> float:
    if history is None or column not in history:
        return math.nan
    scores = history[column].to_numpy(dtype=float)
    scores = scores[np.isfinite(scores)]
    return float(scores.max() if greater else scores.min()) if scores.size else math.nan


def epochs_to_target(history: pd.DataFrame | None, target: Target) -> tuple[float, bool]:
    """Epochs until ``history`` first reaches ``target``, interpolated within the crossing epoch.

    Returns:
        (epochs, reached). A run that never reaches it counts one epoch past its last
        (censored: its true time is longer); a missing history gives NaN.
    """
    if history is None or target.column not in history:
        return math.nan, False
    curve = history.groupby("epoch", as_index=False).mean(numeric_only=True) if "fold" in history else history
    epochs = curve["epoch"].to_numpy(dtype=float)
    scores = curve[target.column].to_numpy(dtype=float)
    hit = np.flatnonzero(target.reached(scores))
    if hit.size == 0:
        return float(epochs[-1] + 1) if epochs.size else math.nan, False
    i = int(hit[0])
    if i == 0 or not np.isfinite(scores[i - 1]) or scores[i] == scores[i - 1]:
        return float(epochs[i]), True
    share = (target.value - scores[i - 1]) / (scores[i] - scores[i - 1])
    return float(epochs[i - 1] + share * (epochs[i] - epochs[i - 1])), True


def _check_time(frame: pd.DataFrame, histories: dict[str, pd.DataFrame], study: Mapping[str, Any], *,
                greater: bool) -> list[str]:
    lines = [f"### 1. {CLAIM_TIME}", ""]
    usual = frame[np.isclose(frame["multiple"], 1.0)].copy()
    present = list(dict.fromkeys(usual[OPT_KEY]))
    adaptive = [n for n in present if n in ADAPTIVE]
    sgd = [n for n in present if n in SGD_FAMILY]
    if not adaptive or not sgd:
        return lines + ["Not checked: the sweep needs at least one adaptive and one SGD-family optimizer at its "
                        "usual learning rate (×1)."]
    ok = frame[frame["status"] == "ok"]
    column = score_column([histories.get(d) for d in ok["run_dir"]], headline=_headline(frame), fit=None)
    target, how = _claim_target(ok, histories, column=column, study=study, greater=greater) if column else (None, "")
    if target is None:
        return lines + ["Not checked: no run has a validation curve in history.csv."]
    reach = [epochs_to_target(histories.get(d), target) for d in usual["run_dir"]]
    usual["to_target"] = [e for e, _ in reach]
    usual["reached"] = [r for _, r in reach]
    usual["seconds"] = [time_to_target(histories.get(d), target)[1] for d in usual["run_dir"]]
    lines += [how, "", "| optimizer | usual lr | seeds at target | epochs to target | seconds to target "
              "(seeds that reach it) |", "|---|---|---|---|---|"]
    for name in present:
        g = usual[usual[OPT_KEY] == name]
        tag = " (adaptive)" if name in ADAPTIVE else ""
        lines.append(f"| {name}{tag} | {_fmt(usual_lr(name), 'g')} | {int(g['reached'].sum())}/{len(g)} | "
                     f"{_mean_std(g['to_target'], 2)} | {_mean_std(g.loc[g['reached'], 'seconds'], 3)} |")
    pairs = [(a, s) for a in adaptive for s in sgd]
    tests = [paired_test(_pair_diffs(usual, slow=s, fast=a, column="to_target")) for a, s in pairs]
    words = verdicts(tests)
    adjusted = holm_adjusted([t.p for t in tests])
    lines += ["", "| pair | epochs: SGD-family − adaptive | p (Holm-adjusted) | verdict |", "|---|---|---|---|"]
    lines += [f"| {a} vs {s} | {t.interval.text(2)} (n = {t.interval.n}) | {p:.3g} | {w} |"
              for (a, s), t, p, w in zip(pairs, tests, adjusted, words, strict=True)]
    overall = combine(words, every=True)
    faster = [f"{a} vs {s}" for (a, s), w in zip(pairs, words, strict=True) if w == SUPPORTED]
    slower = [f"{a} vs {s}" for (a, s), w in zip(pairs, words, strict=True) if w == NOT_SUPPORTED]
    level = [f"{a} vs {s}" for (a, s), w in zip(pairs, words, strict=True) if w == INCONCLUSIVE]
    text = (f"**{overall.capitalize()}**: the adaptive optimizer reaches the target in fewer epochs beyond seed noise "
            f"in {len(faster)} of {len(pairs)} pairs" + (f" ({', '.join(faster)})" if faster else "")
            + (f"; the SGD-family optimizer is faster beyond noise in {', '.join(slower)}" if slower else "")
            + (f"; within seed noise in {', '.join(level)}" if level else "")
            + ". The claim names every adaptive optimizer against every SGD-family one, so it needs every pair.")
    censored = int((~usual["reached"]).sum())
    if censored:
        text += (f" {censored} run(s) never reached the target and count one epoch past their last, which "
                 "understates how slow they are.")
    return lines + ["", text, "", "Epochs rather than seconds are tested: on a shared machine seconds measure the "
                    "load as much as the optimizer, while every optimizer here takes the same batches per epoch.",
                    "", rule_note(tests=len(pairs), split="validation curves (the only per-epoch scores); nothing "
                    "is chosen here: each optimizer runs at its usual rate", family="pairs of an adaptive and an "
                    "SGD-family optimizer")]


def _mean_std(values: pd.Series, digits: int) -> str:
    v = values.dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return "–"
    return f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _headline(frame: pd.DataFrame) -> str:
    return str(frame["headline"].dropna().iloc[0]) if frame["headline"].notna().any() else "score"


def _pair_diffs(frame: pd.DataFrame, *, slow: str, fast: str, column: str) -> np.ndarray:
    """``column`` of ``slow`` minus that of ``fast``, seed by seed."""
    a = frame[frame[OPT_KEY] == slow].groupby("seed")[column].mean()
    b = frame[frame[OPT_KEY] == fast].groupby("seed")[column].mean()
    common = a.index.intersection(b.index)
    return (a[common] - b[common]).to_numpy(dtype=float)


# ----------------------------------------------------------------------------- claim 2: sensitivity


@dataclass
class Sensitivity:
    """Claim 2 read on one grid of multiples."""

    grid: list[float]
    best: dict[str, float]  # optimizer -> best multiple on validation
    edges: dict[str, str]  # optimizer at the grid's edge -> which way to extend
    ranges: pd.DataFrame  # optimizer x seed: test-score range across the grid
    others: list[str]
    tests: list[PairedTest]  # sgd's range minus each other optimizer's, seed by seed
    words: list[str]

    @property
    def paired_verdict(self) -> str:
        return combine(self.words, every=True)

    @property
    def verdict(self) -> str:
        return INCONCLUSIVE if self.edges else self.paired_verdict

    def summary(self) -> str:
        why = (f"best rate at the edge for {', '.join(f'{n} ({w})' for n, w in self.edges.items())}"
               if self.edges else "no best rate at an edge")
        pairs = ", ".join(f"sgd − {o} {t.interval.text()} ({w})" for o, t, w in
                          zip(self.others, self.tests, self.words, strict=True))
        return f"{self.verdict} ({why}; range differences: {pairs})"


def _sensitivity(scored: pd.DataFrame, grid: list[float], *, greater: bool) -> Sensitivity:
    part = scored[scored["multiple"].isin(grid)]
    means = part.groupby([OPT_KEY, "multiple"])["val_score"].mean().unstack()
    best, edges = {}, {}
    for name, row in means.iterrows():
        row = row.dropna()
        if row.empty:
            continue
        m = float(row.idxmax() if greater else row.idxmin())
        best[name] = m
        if len(grid) > 2 and m == grid[-1]:
            edges[name] = f"×{m:g}: extend upward"
        elif len(grid) > 2 and m == grid[0]:
            edges[name] = f"×{m:g}: extend downward"
    per_seed = part.pivot_table(index=[OPT_KEY, "seed"], columns="multiple", values="test_score", aggfunc="mean")
    per_seed = per_seed.dropna()  # a seed counts only where it ran every rate of the grid
    ranges = (per_seed.max(axis=1) - per_seed.min(axis=1)).unstack(level=0)
    others = [n for n in ranges.columns if n != "sgd"]
    tests = []
    for other in others:
        both = ranges[["sgd", other]].dropna()
        tests.append(paired_test((both["sgd"] - both[other]).to_numpy(dtype=float)))
    return Sensitivity(grid, best, edges, ranges, others, tests, verdicts(tests))


def _grids(multiples: list[float], wanted: list[float] | None) -> tuple[list[float], list[float] | None,
                                                                         list[float] | None, str]:
    """The claim's grid and the grids shifted one step down and up (None where the sweep lacks them)."""
    if not wanted:
        return multiples, None, None, ("study.lr_scales is not set: the claim reads every multiple swept, and "
                                       "the shift check needs a sweep one step wider than the claim's grid.")
    grid = [m for m in multiples if any(math.isclose(m, w, rel_tol=1e-3) for w in wanted)]
    if len(grid) < len(wanted):
        missing = [w for w in wanted if not any(math.isclose(m, w, rel_tol=1e-3) for m in multiples)]
        note = f"study.lr_scales lists {', '.join(_times(w) for w in missing)}, which not every optimizer ran. "
    else:
        note = ""
    if not grid:
        return grid, None, None, note
    lo, hi = multiples.index(grid[0]), multiples.index(grid[-1])
    contiguous = multiples[lo:hi + 1] == grid
    down = multiples[lo - 1:hi] if contiguous and lo > 0 else None
    up = multiples[lo + 1:hi + 2] if contiguous and hi + 1 < len(multiples) else None
    if down is None or up is None:
        note += "The sweep has no step beyond the claim's grid on both sides, so the shift check is not run."
    return grid, down, up, note


def _check_sensitivity(scored: pd.DataFrame, worst: dict[str, float], study: Mapping[str, Any], *,
                       greater: bool, out_dir: Path) -> list[str]:
    lines = [f"### 2. {CLAIM_SENSITIVITY}", ""]
    names = list(dict.fromkeys(scored[OPT_KEY]))
    by_name = [set(scored.loc[scored[OPT_KEY] == n, "multiple"].dropna()) for n in names]
    multiples = sorted(set.intersection(*by_name)) if by_name else []
    if "sgd" not in names or len(names) < 2 or len(multiples) < 2:
        return lines + ["Not checked: the sweep needs plain SGD, another optimizer, and at least two multiples of "
                        "the usual rate that every optimizer ran."]
    grid, down, up, note = _grids(multiples, study.get("lr_scales"))
    if len(grid) < 2:
        return lines + [f"Not checked: fewer than two of study.lr_scales were run by every optimizer. {note}"]
    main = _sensitivity(scored, grid, greater=greater)
    lines += _grid_table(scored, main, worst)
    shifted = {"down": _sensitivity(scored, down, greater=greater) if down else None,
               "up": _sensitivity(scored, up, greater=greater) if up else None}
    final, why = _final(main, shifted)
    lines += ["", f"**{final.capitalize()}**: {why}", ""]
    lines += ["| sgd's range minus | Δ range (test) | p (Holm-adjusted) | verdict |", "|---|---|---|---|"]
    adjusted = holm_adjusted([t.p for t in main.tests])
    lines += [f"| {o} | {t.interval.text()} (n = {t.interval.n}) | {p:.3g} | {w} |"
              for o, t, p, w in zip(main.others, main.tests, adjusted, main.words, strict=True)]
    for side, s in shifted.items():
        if s is not None:
            lines += ["", f"Grid shifted one step {side} ({_times(s.grid[0])}–{_times(s.grid[-1])}): {s.summary()}."]
    if note:
        lines += ["", note]
    lines += ["", rule_note(tests=len(main.others), split="best rate per optimizer chosen on validation (mean over "
                            "seeds); ranges read on test", family="other optimizers sgd's range is compared with"),
              "", "Range: per seed, the best minus the worst test score across the grid (a diverged run counts as the "
              "worst score of any run); the claim needs sgd's range wider than every other optimizer's. A best rate "
              "at the grid's edge makes the claim inconclusive: the optimizer's range there is not yet known."]
    lines += figure_lines(lambda path: _plot(scored, grid, multiples, path=path), Path(out_dir) / "lr_relative.png",
                          "test (solid) and validation (dashed) score against the multiple of each optimizer's "
                          "usual rate")
    return lines


def _final(main: Sensitivity, shifted: dict[str, Sensitivity | None]) -> tuple[str, str]:
    """The claim's verdict: the main grid's, unless an edge or a grid shift unsettles it."""
    grid = f"{_times(main.grid[0])}–{_times(main.grid[-1])}"
    widest = main.ranges.mean().idxmax() if not main.ranges.empty else "–"
    wider = sum(w == SUPPORTED for w in main.words)
    text = (f"on the grid {grid} of each optimizer's usual rate, the widest mean test range is {widest}'s; paired by "
            f"seed, sgd's range is wider beyond seed noise than {wider} of the {len(main.words)} other optimizers' "
            f"(the paired tests alone: {main.paired_verdict})")
    if main.edges:
        return INCONCLUSIVE, text + (". But the best rate on validation sits at the grid's edge for "
                                     + "; ".join(f"{n} ({w})" for n, w in main.edges.items())
                                     + ", so that optimizer's range is not yet measured.")
    changed = {side: s.verdict for side, s in shifted.items() if s is not None and s.verdict != main.verdict}
    if changed:
        return INCONCLUSIVE, text + (". But the verdict changes when the grid is shifted one step ("
                                     + ", ".join(f"{side}: {v}" for side, v in changed.items())
                                     + "), so it depends on the grid chosen.")
    stable = "; the verdict is the same on the grid shifted one step either way" if all(shifted.values()) else ""
    return main.verdict, text + stable + "."


def _grid_table(scored: pd.DataFrame, main: Sensitivity, worst: dict[str, float]) -> list[str]:
    diverged = scored[scored["status"] == "diverged"].groupby(OPT_KEY).size()
    lines = ["Mean score over seeds at each multiple of the optimizer's usual rate, validation / test; the best "
             "multiple on validation is starred. Test range: per-seed best − worst test score across the grid, mean "
             f"± std. Diverged runs score the worst of any run (validation {_fmt(worst['val'], '.4f')}, test "
             f"{_fmt(worst['test'], '.4f')}).", "",
             "| optimizer | usual lr | " + " | ".join(_times(m) for m in main.grid) + " | test range | diverged |",
             "|---|---|" + "---|" * (len(main.grid) + 2)]
    part = scored[scored["multiple"].isin(main.grid)]
    means = part.groupby([OPT_KEY, "multiple"])[["val_score", "test_score"]].mean()
    for name in dict.fromkeys(part[OPT_KEY]):
        cells = []
        for m in main.grid:
            if (name, m) not in means.index:
                cells.append("–")
                continue
            v, t = means.loc[(name, m)]
            star = "*" if main.best.get(name) == m else ""
            cells.append(f"{star}{_fmt(v, '.4f')} / {_fmt(t, '.4f')}{star}")
        rng = mean_std(main.ranges[name]) if name in main.ranges else "–"
        lines.append(f"| {name} | {_fmt(usual_lr(name), 'g')} | " + " | ".join(cells)
                     + f" | {rng} | {int(diverged.get(name, 0))} |")
    return lines


def _plot(scored: pd.DataFrame, grid: list[float], multiples: list[float], *, path: Path) -> Path:
    """Test (solid) and validation (dashed) score against the multiple of the usual rate."""
    from dlrun.report.files import save_figure
    from dlrun.report.plots import plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    part = scored[scored["multiple"].isin(multiples)]
    for i, (name, g) in enumerate(part.groupby(OPT_KEY, sort=False)):
        means = g.groupby("multiple")[["val_score", "test_score"]].mean()
        c = colors[i % len(colors)]
        ax.plot(means.index, means["test_score"], "-o", color=c, label=f"{name} test")
        ax.plot(means.index, means["val_score"], "--", color=c, alpha=0.6)
    ax.axvspan(grid[0], grid[-1], color="grey", alpha=0.1, label="claim's grid")
    ax.set_xscale("log")
    ax.set_xlabel("multiple of the optimizer's usual learning rate (log scale)")
    ax.set_ylabel("score (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(path, fig)


# ----------------------------------------------------------------------------- entry point


def check(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
          out_dir: Path) -> list[str]:
    """State course 3's claims and whether these runs support each, with the numbers."""
    lines = ["## Claims"]
    if study.get("claim"):
        lines += ["", f"> {study['claim']}"]
    if OPT_KEY not in keys:
        return lines + ["", "Not checked: this study kind needs `optimizer` swept, and its rate (`optimizer.lr_scale` "
                        "or `optimizer.lr`) for the sensitivity claim (for example `dlrun experiment=optimizers`)."]
    greater = bool(runs["greater_is_better"].dropna().iloc[0]) if runs["greater_is_better"].notna().any() else True
    frame = _multiples(runs[runs[OPT_KEY].notna()])
    histories = {d: h for d in frame["run_dir"] if (h := read_history(Path(d))) is not None}
    scored, worst = _scores(frame, greater=greater)
    lines += ["", *_best_rates(scored, greater=greater)]
    lines += ["", *_check_time(frame, histories, study, greater=greater)]
    lines += ["", *_check_sensitivity(scored, worst, study, greater=greater, out_dir=Path(out_dir))]
    return lines


def _best_rates(scored: pd.DataFrame, *, greater: bool) -> list[str]:
    """Each optimizer's best multiple chosen on validation, with its test score beside it."""
    lines = ["### Best rate per optimizer (chosen on validation, read on test)", "",
             "| optimizer | usual lr | best multiple | lr | n | val score | test score |", "|---|---|---|---|---|---|---|"]
    for name, g in scored.groupby(OPT_KEY, sort=False):
        means = g.groupby("multiple")["val_score"].mean().dropna()
        if means.empty:
            continue
        m = float(means.idxmax() if greater else means.idxmin())
        mine = g[g["multiple"] == m]
        edge = " (edge of the sweep)" if len(means) > 2 and m in (means.index.min(), means.index.max()) else ""
        lines.append(f"| {name} | {_fmt(usual_lr(name), 'g')} | {_times(m)}{edge} | {_fmt(mine['lr'].iloc[0], 'g')} | "
                     f"{len(mine)} | {mean_std(mine['val_score'])} | {mean_std(mine['test_score'])} |")
    return lines
