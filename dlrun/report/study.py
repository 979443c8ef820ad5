"""The sweep report: ``leaderboard.csv``, ``study.md`` and the comparison plots.

:func:`report_sweep` reads the run folders (:mod:`dlrun.report.runs`), aggregates them
(:mod:`dlrun.report.aggregate`) and writes the report; ``study.md`` has the groups with
mean ± std over seeds, the best nuisance value per scientific value, time-to-target,
the plots, the jobs that did not finish and the study kind's claim check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlrun.errors import UserError
from dlrun.report.aggregate import (
    DEFAULT_TARGET_FRACTION,
    add_time_to_target,
    best_per_value,
    group_table,
    label,
    leaderboard,
    split_keys,
    swept_keys,
)
from dlrun.report.files import write_csv, write_text
from dlrun.report.runs import Runs, collect_runs
from dlrun.report.target import Target

LR_KEY = "optimizer.lr"


@dataclass
class SweepResult:
    """What :func:`report_sweep` read: the runs (with time-to-target), the swept keys, counts."""

    runs: Runs
    swept: list[str]
    n_jobs: int
    n_failed: int


def _pm(mean: float, std: float, digits: int = 4) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    if std is None or not np.isfinite(std) or std == 0:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _num(value: float, fmt: str = ".1f") -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, fmt)


# ----------------------------------------------------------------------------- markdown


def markdown_groups(groups: pd.DataFrame, keys: list[str], *, headline: str, fit: str) -> str:
    lines = [
        f"| group | n | val {headline} | test {headline} | train {fit} | val {fit} | gap | epochs "
        "| s/epoch | to target: epochs | to target: s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in groups.iterrows():
        reached = "" if r["reached"] == r["n"] else f" ({int(r['reached'])}/{int(r['n'])} reached)"
        lines.append(
            f"| {label(r, keys)} | {int(r['n'])} | {_pm(r['val_mean'], r['val_std'])} | "
            f"{_pm(r['test_mean'], r['test_std'])} | {_pm(r['train_fit_mean'], None)} | "
            f"{_pm(r['val_fit_mean'], None)} | {_pm(r['gap_mean'], r['gap_std'])} | "
            f"{_num(r['epochs_mean'], '.0f')} | {_num(r['seconds_per_epoch'], '.3f')} | "
            f"{_num(r['target_epochs_mean'])}{reached} | {_num(r['target_seconds_mean'], '.2f')} |"
        )
    return "\n".join(lines)


def _best_per_value_lines(
    groups: pd.DataFrame, scientific: list[str], nuisance: list[str], *, headline: str
) -> list[str]:
    best = best_per_value(groups, scientific)
    if best.empty or not nuisance:
        return []
    sci, nui = ", ".join(scientific), ", ".join(nuisance)
    lines = [
        f"## Best {nui} per {sci}", "",
        f"Scientific hyperparameter: {sci}; nuisance: {nui}, tuned for each {sci} value "
        "(its best trial is compared, as in Google's tuning playbook).", "",
        f"| {sci} | best {nui} | val {headline} | to target: epochs | to target: s | tried |",
        "|---|---|---|---|---|---|",
    ]
    edges = []
    for _, r in best.iterrows():
        mask = np.logical_and.reduce([groups[k] == r[k] for k in scientific])
        tried = groups.loc[mask, nuisance[0]].tolist() if len(nuisance) == 1 else []
        lines.append(
            f"| {label(r, scientific)} | {label(r, nuisance)} | {_pm(r['val_mean'], r['val_std'])} | "
            f"{_num(r['target_epochs_mean'])} | {_num(r['target_seconds_mean'], '.2f')} | "
            f"{int(mask.sum())} |"
        )
        numeric = pd.to_numeric(pd.Series(tried), errors="coerce").dropna()
        if len(numeric) > 2 and float(r[nuisance[0]]) in (numeric.min(), numeric.max()):
            edges.append(label(r, scientific))
    if edges:
        lines += ["", f"The best {nui} sits at the edge of the range tried for {', '.join(edges)}: "
                  "widen the range before trusting that comparison."]
    return lines


def _target_lines(target: Target | None, runs: pd.DataFrame) -> list[str]:
    if target is None:
        return []
    ok = runs[runs["status"] == "ok"]
    direction = "×" if target.greater_is_better else "÷"
    return [
        "## Time to target", "",
        f"Target: {target.fraction:g} {direction} the best {target.column} of any epoch of any run "
        f"({target.best:.4f}) = **{target.value:.4f}**. {int(ok['target_epochs'].notna().sum())} of "
        f"{len(ok)} finished runs reached it. Epochs and seconds are those of the first epoch at or "
        "past the target; seconds are measured wall time less the one-off graph compilation "
        "(the first epoch's excess over the median epoch); s/epoch is the median epoch after the first.",
    ]


def _problems(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    bad = runs[runs["status"] != "ok"]
    if bad.empty:
        return []
    lines = ["", "## Jobs that did not finish", "", "| run | status | message |", "|---|---|---|"]
    for _, r in bad.iterrows():
        msg = str(r.get("message") or "").replace("|", "/")
        lines.append(f"| {Path(r['run_dir']).name} ({label(r, keys)}) | {r['status']} | {msg} |")
    return lines


# ----------------------------------------------------------------------------- plots


def _plots(
    runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], *, target: Target | None,
    histories: Mapping[str, pd.DataFrame], out_dir: Path,
) -> list[str]:
    """Write compare_curves.png (and lr_sensitivity.png when the lr is swept); markdown links."""
    from dlrun.report.compare import plot_compare_curves, plot_lr_sensitivity
    from dlrun.report.target import mean_curve

    links: list[str] = []
    ok = runs[(runs["status"] == "ok") & runs["run_dir"].isin(list(histories))]
    if target is not None and not ok.empty:
        scientific, nuisance = split_keys(keys)
        panel_keys, line_keys = (scientific, nuisance) if scientific and nuisance else ([], keys)
        curves: dict[str, dict[str, list[pd.Series]]] = {}
        for _, r in ok.iterrows():
            curve = mean_curve(histories[r["run_dir"]])
            if target.column not in curve:
                continue
            series = curve.set_index("epoch")[target.column]
            panel = label(r, panel_keys) if panel_keys else "every group"
            curves.setdefault(panel, {}).setdefault(label(r, line_keys), []).append(series)
        if curves:
            plot_compare_curves(curves, out_dir / "compare_curves.png", ylabel=target.column,
                                target=target.value)
            links.append("[compare_curves.png](compare_curves.png): validation curve per group "
                         "(mean over seeds, band from min to max; dotted: the target)")
    if LR_KEY in keys and not groups.empty:
        others = [k for k in keys if k != LR_KEY]
        points = pd.DataFrame({
            "line": [label(r, others) for _, r in groups.iterrows()],
            "lr": pd.to_numeric(groups[LR_KEY], errors="coerce"),
            "mean": groups["val_mean"], "std": groups["val_std"],
        }).dropna(subset=["lr"])
        if not points.empty:
            headline = runs["headline"].dropna().iloc[0]
            plot_lr_sensitivity(points, out_dir / "lr_sensitivity.png", ylabel=f"validation {headline}")
            links.append("[lr_sensitivity.png](lr_sensitivity.png): validation score against the "
                         "learning rate (log axis), mean ± std over seeds")
    return ["## Plots", "", *(f"- {link}" for link in links)] if links else []


# ----------------------------------------------------------------------------- report


def report_sweep(
    paths: Iterable[Path], *, out_dir: Path, study: Mapping[str, Any] | None = None,
    since: float | None = None, strict: bool = False,
) -> SweepResult:
    """Write ``leaderboard.csv``, ``study.md`` and the comparison plots into ``out_dir``.

    Args:
        paths: run folders or sweep folders (several sweeps are reported together).
        out_dir: where the report goes.
        study: the ``study`` config (``name``, ``kind``, ``claim``, ``target_fraction``).
            Defaults to a generic study named after ``out_dir``.
        since: only read run folders written after this epoch time. Defaults to None.
        strict: refuse (write nothing) when a run folder's ``metrics.json`` cannot be read
            or none is found, rather than skip it (``dlrun-report``; a sweep's own report
            at its end is lenient). Defaults to False.

    Raises:
        UserError: with ``strict``, an unreadable run record or no run folder at all.
    """
    from dlrun.report.claims import check_claim

    out_dir = Path(out_dir)
    study = dict(study or {})
    runs = collect_runs(paths, since=since, strict=strict)
    if runs.frame.empty and strict:
        raise UserError(f"no run folders (metrics.json) under {', '.join(map(str, paths))}; nothing was written")
    if runs.frame.empty:
        write_text(out_dir / "study.md", "# Study\n\nNo run folders with a metrics.json were found.\n")
        return SweepResult(runs, [], 0, 0)
    fraction = float(study.get("target_fraction") or DEFAULT_TARGET_FRACTION)
    frame, target, histories = add_time_to_target(runs.frame, fraction=fraction)
    runs = Runs(frame, runs.config_keys)
    keys = swept_keys(runs)
    write_csv(out_dir / "leaderboard.csv", leaderboard(runs))
    n_failed = int((frame["status"] == "failed").sum())
    counts = frame["status"].value_counts().to_dict()
    headline = frame["headline"].dropna().iloc[0] if frame["headline"].notna().any() else "score"
    fit = frame["fit_metric"].dropna().iloc[0] if frame["fit_metric"].notna().any() else "fit"
    groups = group_table(frame, keys)
    scientific, nuisance = split_keys(keys)
    seeds = sorted({int(s) for s in frame["seed"].dropna()})
    lines = [
        f"# Study: {study.get('name') or out_dir.name}",
        "",
        f"{len(frame)} jobs ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}); "
        f"grouped by {', '.join(keys) or 'nothing (a single group)'}; "
        f"seeds {', '.join(map(str, seeds)) or '–'} (mean ± std over seeds).",
        "",
        f"## Results, best validation {headline} first",
        "",
        markdown_groups(groups, keys, headline=headline, fit=fit) if not groups.empty else "No job finished.",
    ]
    for section in (
        _best_per_value_lines(groups, scientific, nuisance, headline=headline),
        _target_lines(target, frame),
        _plots(frame, groups, keys, target=target, histories=histories, out_dir=out_dir),
    ):
        if section:
            lines += ["", *section]
    lines += _problems(frame, keys)
    claim_lines = check_claim(study.get("kind") or "generic", runs=frame, groups=groups, keys=keys,
                              study=study, out_dir=out_dir)
    if claim_lines:
        lines += ["", *claim_lines]
    lines += ["", "Every row comes from the run folders' metrics.json and history.csv; "
              "see [leaderboard.csv](leaderboard.csv)."]
    write_text(out_dir / "study.md", "\n".join(lines) + "\n")
    return SweepResult(runs, keys, len(frame), n_failed)
