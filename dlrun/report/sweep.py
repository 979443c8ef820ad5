"""Sweep-level reports built only from run folders' files.

:func:`collect_runs` reads ``metrics.json``, ``.hydra/overrides.yaml`` (and, for keys a
run did not override, ``.hydra/config.yaml``) of every run folder under the given paths
into one table. :func:`report_sweep` writes ``leaderboard.csv``, ``study.md`` and the
comparison plots, and hands the tables to the study kind's claim check.

``study.md`` groups the runs by the swept keys (seed excluded) with mean ± std over
seeds, best first. Following Google's tuning playbook, the optimizer's own
hyperparameters (``optimizer.lr``, ``optimizer.batch_size``, ...) are *nuisance*
hyperparameters and every other swept key is *scientific*: when both are swept, the
report compares the best trial per scientific value. It also reports time-to-target
(see :mod:`dlrun.report.target`) and seconds per epoch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dlrun.report.files import read_json, write_csv, write_text
from dlrun.report.target import (
    Target,
    read_history,
    score_column,
    steady_seconds_per_epoch,
    study_target,
    time_to_target,
)

log = logging.getLogger(__name__)

# Override keys that never define a group: the seed is averaged over, the rest is plumbing.
NON_GROUP_KEYS = ("seed", "trainer.progress", "trainer.threads", "experiment")
# Swept keys under this prefix are nuisance hyperparameters, tuned for each scientific value.
NUISANCE_PREFIX = "optimizer."
LR_KEY = "cfg.optimizer.lr"
METRIC_COLUMNS = (
    "status", "val_score", "test_score", "train_fit", "val_fit", "gap", "best_epoch", "epochs_run",
    "fit_seconds", "seconds_per_epoch", "target_epochs", "target_seconds", "params", "verdict",
)
NUMERIC_COLUMNS = (
    "val_score", "test_score", "train_fit", "val_fit", "test_fit", "gap", "fit_seconds",
    "seconds_per_epoch", "epochs_run", "best_epoch", "params",
)
DEFAULT_TARGET_FRACTION = 0.95


@dataclass
class SweepResult:
    runs: pd.DataFrame
    swept: list[str]
    n_jobs: int
    n_failed: int


# ----------------------------------------------------------------------------- reading


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Every folder under ``paths`` (or each path itself) that holds a ``metrics.json``."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "metrics.json").is_file():
            found.append(p)
            continue
        found.extend(sorted((m.parent for m in p.rglob("metrics.json")), key=_job_order))
    return list(dict.fromkeys(found))


def _job_order(path: Path) -> tuple:
    return tuple(int(part) if part.isdigit() else math.inf for part in path.parts[-2:]) + (str(path),)


def _canonical(value: str) -> str:
    """``1e-3`` and ``0.001`` are one group: numbers are written the same way."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return f"{number:g}" if math.isfinite(number) else value


def _overrides(run_dir: Path, metrics: Mapping[str, Any]) -> dict[str, str]:
    listed = metrics.get("overrides")
    file = run_dir / ".hydra" / "overrides.yaml"
    if file.is_file():
        with open(file, encoding="utf-8") as f:
            listed = yaml.safe_load(f) or []
    out: dict[str, str] = {}
    for item in listed or []:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        if not key.startswith("hydra"):
            out[key] = _canonical(value)
    return out


def _config_value(config: Mapping[str, Any], key: str) -> str | None:
    """A key's value in a run's composed config; a group (``optimizer``) gives its name."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, Mapping):
        node = node.get("name")
    return None if node is None or isinstance(node, (Mapping, list)) else _canonical(str(node))


def _fill_from_configs(runs: pd.DataFrame) -> pd.DataFrame:
    """A run that did not override a key another run swept gets its configured value.

    This is what lets two sweeps be reported together (``dlrun-report A B``).
    """
    cfg_cols = [c for c in runs.columns if c.startswith("cfg.")]
    for i, row in runs.iterrows():
        missing = [c for c in cfg_cols if pd.isna(row[c])]
        file = Path(row["run_dir"]) / ".hydra" / "config.yaml"
        if not missing or not file.is_file():
            continue
        with open(file, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
        for col in missing:
            value = _config_value(config, col[4:])
            if value is not None:
                runs.at[i, col] = value
    return runs


def _row(run_dir: Path) -> dict[str, Any]:
    m = read_json(run_dir / "metrics.json")
    head, fit = m.get("headline"), m.get("fit_metric")
    diag = m.get("diagnosis") or {}
    row: dict[str, Any] = {
        "run_dir": str(run_dir),
        "status": m.get("status", "unknown"),
        "headline": head,
        "greater_is_better": m.get("greater_is_better", True),
        "val_score": (m.get("val") or {}).get(head),
        "test_score": (m.get("test") or {}).get(head),
        "train_fit": (m.get("train") or {}).get(fit),
        "val_fit": (m.get("val") or {}).get(fit),
        "test_fit": (m.get("test") or {}).get(fit),
        "fit_metric": fit,
        "gap": diag.get("gap"),
        "verdict": diag.get("verdict"),
        "best_epoch": m.get("best_epoch"),
        "epochs_run": m.get("epochs_run"),
        "fit_seconds": m.get("fit_seconds"),
        "seconds_per_epoch": m.get("seconds_per_epoch"),
        "params": m.get("params"),
        "seed": m.get("seed"),
        "message": m.get("message"),
    }
    for key, value in _overrides(run_dir, m).items():
        row[f"cfg.{key}"] = value
    return row


def collect_runs(paths: Iterable[Path], *, since: float | None = None) -> pd.DataFrame:
    """One row per run folder: its overrides (``cfg.*`` columns) and key metrics.

    Args:
        paths: run folders or folders that contain them (sweeps).
        since: skip run folders whose ``metrics.json`` is older than this epoch time.
            Defaults to None (keep all).
    """
    rows = []
    for run_dir in find_run_dirs(paths):
        if since is not None and (run_dir / "metrics.json").stat().st_mtime < since:
            continue
        try:
            rows.append(_row(run_dir))
        except (OSError, ValueError) as err:
            log.warning("skipping %s: unreadable metrics.json (%s)", run_dir, err)
    frame = _fill_from_configs(pd.DataFrame(rows)) if rows else pd.DataFrame()
    for col in NUMERIC_COLUMNS:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def _greater_is_better(runs: pd.DataFrame) -> bool:
    known = runs["greater_is_better"].dropna() if "greater_is_better" in runs else pd.Series(dtype=bool)
    return bool(known.iloc[0]) if len(known) else True


def add_time_to_target(
    runs: pd.DataFrame, *, fraction: float = DEFAULT_TARGET_FRACTION
) -> tuple[pd.DataFrame, Target | None, dict[str, pd.DataFrame]]:
    """Add ``target_epochs``, ``target_seconds`` and ``steady_seconds_per_epoch`` to ``runs``.

    Returns:
        The runs with the new columns, the study's target (None when no run has a
        validation curve) and each run folder's history, by ``run_dir``.
    """
    histories = {d: h for d in runs["run_dir"] if (h := read_history(Path(d))) is not None}
    ok = runs[runs["status"] == "ok"]
    headline = ok["headline"].dropna().iloc[0] if ok["headline"].notna().any() else "score"
    fit = ok["fit_metric"].dropna().iloc[0] if ok["fit_metric"].notna().any() else None
    ok_histories = [histories[d] for d in ok["run_dir"] if d in histories]
    column = score_column(ok_histories, headline=headline, fit=fit)
    target = None
    if column:
        target = study_target(ok_histories, column=column, fraction=fraction,
                              greater_is_better=_greater_is_better(runs))
    runs = runs.copy()
    reach = [time_to_target(histories.get(d), target) if target else (math.nan, math.nan)
             for d in runs["run_dir"]]
    runs["target_epochs"] = [r[0] for r in reach]
    runs["target_seconds"] = [r[1] for r in reach]
    runs["steady_seconds_per_epoch"] = [steady_seconds_per_epoch(histories.get(d)) for d in runs["run_dir"]]
    return runs, target, histories


# ----------------------------------------------------------------------------- grouping


def swept_keys(runs: pd.DataFrame) -> list[str]:
    """Override keys whose values differ between runs, seed and plumbing excluded."""
    keys = []
    for col in runs.columns:
        if not col.startswith("cfg."):
            continue
        key = col[4:]
        if key in NON_GROUP_KEYS:
            continue
        if runs[col].fillna("∅").nunique() > 1:
            keys.append(col)
    return keys


def split_keys(keys: list[str]) -> tuple[list[str], list[str]]:
    """(scientific, nuisance) swept keys: the optimizer's own hyperparameters are nuisance."""
    nuisance = [k for k in keys if k[4:].startswith(NUISANCE_PREFIX)]
    return [k for k in keys if k not in nuisance], nuisance


def _pm(mean: float, std: float, digits: int = 4) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    if std is None or not np.isfinite(std) or std == 0:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _num(value: float, fmt: str = ".1f") -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, fmt)


def group_table(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and std over seeds of each group of finished (``ok``) runs, best first.

    Time-to-target means are over the runs that reached the target (``reached`` of ``n``).
    """
    ok = runs[runs["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame()
    for col in ("target_epochs", "target_seconds", "steady_seconds_per_epoch"):
        if col not in ok:
            ok[col] = math.nan
    by = keys or (lambda _: "all")
    agg = ok.groupby(by, dropna=False).agg(
        n=("val_score", "size"),
        val_mean=("val_score", "mean"), val_std=("val_score", "std"),
        test_mean=("test_score", "mean"), test_std=("test_score", "std"),
        train_fit_mean=("train_fit", "mean"), val_fit_mean=("val_fit", "mean"),
        gap_mean=("gap", "mean"), gap_std=("gap", "std"),
        epochs_mean=("epochs_run", "mean"), seconds_mean=("fit_seconds", "mean"),
        seconds_per_epoch=("steady_seconds_per_epoch", "mean"),
        reached=("target_epochs", "count"),
        target_epochs_mean=("target_epochs", "mean"), target_epochs_std=("target_epochs", "std"),
        target_seconds_mean=("target_seconds", "mean"), target_seconds_std=("target_seconds", "std"),
    ).reset_index()
    if not keys:
        agg = agg.rename(columns={"index": "group"})
    missing = agg["seconds_per_epoch"].isna()
    if missing.any():  # no history: fall back to the run's own average (first epoch included)
        fallback = ok.groupby(by, dropna=False)["seconds_per_epoch"].mean().reset_index(drop=True)
        agg.loc[missing, "seconds_per_epoch"] = fallback[missing]
    greater = _greater_is_better(ok)
    return agg.sort_values("val_mean", ascending=not greater, kind="stable").reset_index(drop=True)


def best_per_value(groups: pd.DataFrame, scientific: list[str]) -> pd.DataFrame:
    """The best group (first in ``groups``, which is sorted best first) per scientific value."""
    if groups.empty or not scientific:
        return groups.iloc[0:0]
    return groups.groupby(scientific, sort=False, dropna=False).head(1).reset_index(drop=True)


def label(row: pd.Series, keys: list[str]) -> str:
    """``optimizer=adam, optimizer.lr=0.001`` for a row with those ``cfg.*`` keys."""
    return ", ".join(f"{k[4:]}={row[k]}" for k in keys) or "all runs"



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
    sci, nui = ", ".join(k[4:] for k in scientific), ", ".join(k[4:] for k in nuisance)
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


def leaderboard(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per job, best validation score first; failed jobs last, with their message."""
    cfg_cols = [c for c in runs.columns if c.startswith("cfg.")]
    rest = ["headline", *METRIC_COLUMNS, "fit_metric", "test_fit", "message", "run_dir"]
    if "cfg.seed" not in cfg_cols:
        rest.insert(-2, "seed")
    cols = cfg_cols + [c for c in rest if c in runs.columns]
    board = runs[cols].copy()
    if "val_score" in board and len(board):
        board = board.sort_values("val_score", ascending=not _greater_is_better(runs),
                                  na_position="last", kind="stable")
    return board.rename(columns={c: c[4:] for c in cfg_cols})


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
    since: float | None = None,
) -> SweepResult:
    """Write ``leaderboard.csv``, ``study.md`` and the comparison plots into ``out_dir``.

    Args:
        paths: run folders or sweep folders (several sweeps are reported together).
        out_dir: where the report goes.
        study: the ``study`` config (``name``, ``kind``, ``claim``, ``target_fraction``).
            Defaults to a generic study named after ``out_dir``.
        since: only read run folders written after this epoch time. Defaults to None.
    """
    from dlrun.report.claims import check_claim

    out_dir = Path(out_dir)
    study = dict(study or {})
    runs = collect_runs(paths, since=since)
    if runs.empty:
        write_text(out_dir / "study.md", "# Study\n\nNo run folders with a metrics.json were found.\n")
        return SweepResult(runs, [], 0, 0)
    fraction = float(study.get("target_fraction") or DEFAULT_TARGET_FRACTION)
    runs, target, histories = add_time_to_target(runs, fraction=fraction)
    keys = swept_keys(runs)
    write_csv(out_dir / "leaderboard.csv", leaderboard(runs))
    n_failed = int((runs["status"] == "failed").sum())
    counts = runs["status"].value_counts().to_dict()
    headline = runs["headline"].dropna().iloc[0] if runs["headline"].notna().any() else "score"
    fit = runs["fit_metric"].dropna().iloc[0] if runs["fit_metric"].notna().any() else "fit"
    groups = group_table(runs, keys)
    scientific, nuisance = split_keys(keys)
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    lines = [
        f"# Study: {study.get('name') or out_dir.name}",
        "",
        f"{len(runs)} jobs ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}); "
        f"grouped by {', '.join(k[4:] for k in keys) or 'nothing (a single group)'}; "
        f"seeds {', '.join(map(str, seeds)) or '–'} (mean ± std over seeds).",
        "",
        f"## Results, best validation {headline} first",
        "",
        markdown_groups(groups, keys, headline=headline, fit=fit) if not groups.empty else "No job finished.",
    ]
    for section in (
        _best_per_value_lines(groups, scientific, nuisance, headline=headline),
        _target_lines(target, runs),
        _plots(runs, groups, keys, target=target, histories=histories, out_dir=out_dir),
    ):
        if section:
            lines += ["", *section]
    lines += _problems(runs, keys)
    claim_lines = check_claim(study.get("kind") or "generic", runs=runs, groups=groups, keys=keys,
                              study=study, out_dir=out_dir)
    if claim_lines:
        lines += ["", *claim_lines]
    lines += ["", "Every row comes from the run folders' metrics.json and history.csv; "
              "see [leaderboard.csv](leaderboard.csv)."]
    write_text(out_dir / "study.md", "\n".join(lines) + "\n")
    return SweepResult(runs, keys, len(runs), n_failed)
