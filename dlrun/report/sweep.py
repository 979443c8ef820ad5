"""Sweep-level reports built only from run folders' files.

:func:`collect_runs` reads ``metrics.json`` and ``.hydra/overrides.yaml`` of every run
folder under the given paths into one table; :func:`report_sweep` writes
``leaderboard.csv`` and ``study.md`` (grouped by the swept keys, seed excluded,
mean ± std, best first) and hands the table to the study kind's claim check.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import yaml

from dlrun.report.files import read_json, write_csv, write_text

log = logging.getLogger(__name__)

# Override keys that never define a group: the seed is averaged over, the rest is plumbing.
NON_GROUP_KEYS = ("seed", "trainer.progress", "experiment")
METRIC_COLUMNS = (
    "status", "val_score", "test_score", "train_fit", "val_fit", "gap", "best_epoch", "epochs_run",
    "fit_seconds", "seconds_per_epoch", "params", "verdict",
)


@dataclass
class SweepResult:
    runs: pd.DataFrame
    swept: list[str]
    n_jobs: int
    n_failed: int


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
            out[key] = value
    return out


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


def collect_runs(paths: Iterable[Path], *, since: Optional[float] = None) -> pd.DataFrame:
    """One row per run folder: its overrides (``cfg.*`` columns) and key metrics.

    Args:
        paths: run folders or folders that contain them (sweeps).
        since: skip run folders whose ``metrics.json`` is older than this epoch time.
    """
    rows = []
    for run_dir in find_run_dirs(paths):
        if since is not None and (run_dir / "metrics.json").stat().st_mtime < since:
            continue
        try:
            rows.append(_row(run_dir))
        except (OSError, ValueError) as err:
            log.warning("skipping %s: unreadable metrics.json (%s)", run_dir, err)
    frame = pd.DataFrame(rows)
    for col in ("val_score", "test_score", "train_fit", "val_fit", "test_fit", "gap", "fit_seconds",
                "seconds_per_epoch", "epochs_run", "best_epoch", "params"):
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


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


def _pm(mean: float, std: float, digits: int = 4) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    if std is None or not np.isfinite(std) or std == 0:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def group_table(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and std over seeds of each group of finished (``ok``) runs, best first."""
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    by = keys or (lambda _: "all")
    agg = ok.groupby(by, dropna=False).agg(
        n=("val_score", "size"),
        val_mean=("val_score", "mean"), val_std=("val_score", "std"),
        test_mean=("test_score", "mean"), test_std=("test_score", "std"),
        train_fit_mean=("train_fit", "mean"), val_fit_mean=("val_fit", "mean"),
        gap_mean=("gap", "mean"), gap_std=("gap", "std"),
        epochs_mean=("epochs_run", "mean"), seconds_mean=("fit_seconds", "mean"),
        seconds_per_epoch=("seconds_per_epoch", "mean"),
    ).reset_index()
    if not keys:
        agg = agg.rename(columns={"index": "group"})
    greater = bool(ok["greater_is_better"].iloc[0])
    return agg.sort_values("val_mean", ascending=not greater, kind="stable").reset_index(drop=True)


def _label(row: pd.Series, keys: list[str]) -> str:
    return ", ".join(f"{k[4:]}={row[k]}" for k in keys) or "all runs"


def markdown_groups(groups: pd.DataFrame, keys: list[str], *, headline: str, fit: str) -> str:
    lines = [
        f"| group | n | val {headline} | test {headline} | train {fit} | val {fit} | gap | epochs | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in groups.iterrows():
        lines.append(
            f"| {_label(r, keys)} | {int(r['n'])} | {_pm(r['val_mean'], r['val_std'])} | "
            f"{_pm(r['test_mean'], r['test_std'])} | {_pm(r['train_fit_mean'], None)} | "
            f"{_pm(r['val_fit_mean'], None)} | {_pm(r['gap_mean'], r['gap_std'])} | "
            f"{r['epochs_mean']:.0f} | {r['seconds_mean']:.2f} |"
        )
    return "\n".join(lines)


def _problems(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    bad = runs[runs["status"] != "ok"]
    if bad.empty:
        return []
    lines = ["", "## Jobs that did not finish", "", "| run | status | message |", "|---|---|---|"]
    for _, r in bad.iterrows():
        msg = str(r.get("message") or "").replace("|", "/")
        lines.append(f"| {Path(r['run_dir']).name} ({_label(r, keys)}) | {r['status']} | {msg} |")
    return lines


def leaderboard(runs: pd.DataFrame) -> pd.DataFrame:
    cfg_cols = [c for c in runs.columns if c.startswith("cfg.")]
    rest = ["headline", *METRIC_COLUMNS, "fit_metric", "test_fit", "seed", "message", "run_dir"]
    cols = cfg_cols + [c for c in rest if c in runs.columns]
    board = runs[cols].copy()
    if "val_score" in board and len(board):
        greater = bool(runs["greater_is_better"].dropna().iloc[0]) if runs["greater_is_better"].notna().any() else True
        board = board.sort_values("val_score", ascending=not greater, na_position="last", kind="stable")
    return board.rename(columns={c: c[4:] for c in cfg_cols})


def report_sweep(
    paths: Iterable[Path], *, out_dir: Path, study: Mapping[str, Any] | None = None,
    since: Optional[float] = None,
) -> SweepResult:
    """Write ``leaderboard.csv`` and ``study.md`` (plus the study kind's plots) into ``out_dir``."""
    from dlrun.report.claims import check_claim

    out_dir = Path(out_dir)
    study = dict(study or {})
    runs = collect_runs(paths, since=since)
    if runs.empty:
        write_text(out_dir / "study.md", "# Study\n\nNo run folders with a metrics.json were found.\n")
        return SweepResult(runs, [], 0, 0)
    keys = swept_keys(runs)
    write_csv(out_dir / "leaderboard.csv", leaderboard(runs))
    n_failed = int((runs["status"] == "failed").sum())
    counts = runs["status"].value_counts().to_dict()
    headline = runs["headline"].dropna().iloc[0] if runs["headline"].notna().any() else "score"
    fit = runs["fit_metric"].dropna().iloc[0] if runs["fit_metric"].notna().any() else "fit"
    groups = group_table(runs, keys)
    title = study.get("name") or out_dir.name
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    lines = [
        f"# Study: {title}",
        "",
        f"{len(runs)} jobs ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}); "
        f"grouped by {', '.join(k[4:] for k in keys) or 'nothing (a single group)'}; "
        f"seeds {', '.join(map(str, seeds)) or '–'} (mean ± std over seeds).",
        "",
        f"## Results, best validation {headline} first",
        "",
        markdown_groups(groups, keys, headline=headline, fit=fit) if not groups.empty else "No job finished.",
    ]
    lines += _problems(runs, keys)
    claim_lines = check_claim(study.get("kind", "generic"), runs=runs, groups=groups, keys=keys,
                              study=study, out_dir=out_dir)
    if claim_lines:
        lines += ["", *claim_lines]
    lines += ["", "Every row comes from the run folders' metrics.json; see [leaderboard.csv](leaderboard.csv)."]
    write_text(out_dir / "study.md", "\n".join(lines) + "\n")
    return SweepResult(runs, keys, len(runs), n_failed)
