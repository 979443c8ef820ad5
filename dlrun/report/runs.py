"""Reading run folders: one row per run, its metrics and its config values.

:func:`collect_runs` reads ``metrics.json`` and ``.hydra/overrides.yaml`` of every run
folder under the given paths (and ``.hydra/config.yaml`` for a key another run
overrode) into a :class:`Runs`: a table whose config columns are named by the config
key itself (``optimizer.lr``), and the list of those keys beside it. Every report reads
a run's metrics through :func:`read_metrics`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from dlrun.errors import UserError
from dlrun.record import METRICS_FILE
from dlrun.report.files import read_json

log = logging.getLogger(__name__)

# Config keys that metrics.json records as well: the recorded value fills the one column.
RECORDED_KEYS = ("seed",)
NUMERIC_COLUMNS = (
    "val_score", "test_score", "train_fit", "val_fit", "test_fit", "gap", "fit_seconds",
    "seconds_per_epoch", "epochs_run", "best_epoch", "params", "seed",
)


@dataclass(frozen=True)
class Runs:
    """The runs of a report and which of their columns are config values.

    Attributes:
        frame: one row per run folder: its metrics (``status``, ``val_score``, ``seed``,
            ``run_dir``, ...) and one column per config key, named by the key.
        config_keys: the keys any run overrode, in the order first seen. A key that
            ``metrics.json`` records too (``seed``) shares its column with that metric.
    """

    frame: pd.DataFrame
    config_keys: list[str]


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``metrics.json``: the one place the reports read it.

    Raises:
        OSError: the file is missing or unreadable.
        ValueError: the file is not valid JSON, or not the shape of a run record.
    """
    metrics = read_json(Path(run_dir) / METRICS_FILE)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("status"), str):
        raise ValueError("not a dlrun run record (no status)")
    if metrics["status"] == "ok" and not all(isinstance(metrics.get(k), dict) for k in ("val", "test")):
        raise ValueError("not a dlrun run record (status ok without val and test metrics)")
    return metrics


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Every folder under ``paths`` (or each path itself) that holds a ``metrics.json``."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / METRICS_FILE).is_file():
            found.append(p)
            continue
        found.extend(sorted((m.parent for m in p.rglob(METRICS_FILE)), key=_job_order))
    return list(dict.fromkeys(found))


def _job_order(path: Path) -> tuple:
    return tuple(int(part) if part.isdigit() else math.inf for part in path.parts[-2:]) + (str(path),)


# A sweep's list of its jobs' run folders, one per line: written anew when the sweep starts,
# appended to by each job (finished jobs a resumed sweep leaves alone included).
SWEEP_JOBS = ".dlrun_jobs"


def open_sweep(sweep_dir: Path) -> None:
    """Start the job list of a sweep into ``sweep_dir`` (a sweep before it into the same folder is not listed)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_JOBS).write_text("")


def join_sweep(sweep_dir: Path, run_dir: Path) -> None:
    """List ``run_dir`` as a job of the sweep running into ``sweep_dir`` (nothing if none was opened)."""
    jobs = sweep_dir / SWEEP_JOBS
    if jobs.is_file():
        with jobs.open("a") as out:  # one short append: whole lines even from parallel jobs
            out.write(f"{run_dir.resolve()}\n")


def _sweep_members(paths: Iterable[Path]) -> set[Path]:
    members: set[Path] = set()
    for jobs in (Path(p) / SWEEP_JOBS for p in paths):
        if jobs.is_file():
            members.update(Path(line) for line in jobs.read_text().splitlines() if line)
    return members


def collect_runs(paths: Iterable[Path], *, since: float | None = None, strict: bool = False) -> Runs:
    """One row per run folder: its config values and key metrics.

    Args:
        paths: run folders or folders that contain them (sweeps).
        since: keep only this sweep's jobs: those listed by :func:`join_sweep` since it
            started at this epoch time, and run folders whose ``metrics.json`` was written
            since (a job the launcher marked failed before it could start). Defaults to None
            (keep all).
        strict: an unreadable ``metrics.json`` stops the report (so that a leaderboard
            already written keeps that job's row) instead of being skipped with a warning.

    Raises:
        UserError: with ``strict``, a ``metrics.json`` that is not a readable run record.
    """
    paths = list(paths)
    members = _sweep_members(paths) if since is not None else set()
    rows, overrides = [], []
    for run_dir in find_run_dirs(paths):
        if since is not None and run_dir.resolve() not in members and (run_dir / METRICS_FILE).stat().st_mtime < since:
            continue
        try:
            metrics = read_metrics(run_dir)
            row, listed = _metrics_row(run_dir, metrics), _overrides(run_dir, metrics)
        except (OSError, ValueError, AttributeError, TypeError) as err:
            if strict:
                raise UserError(f"{run_dir / METRICS_FILE} is not a readable run record ({err}); fix or "
                                "remove that run folder (nothing was written)") from None
            log.warning("skipping %s: unreadable metrics.json (%s)", run_dir, err)
            continue
        rows.append(row)
        overrides.append(listed)
    keys = _config_keys(overrides, taken=set(rows[0]) if rows else set())
    for row, listed in zip(rows, overrides, strict=True):
        for key, value in _config_values(Path(row["run_dir"]), listed, keys).items():
            if row.get(key) is None:  # the recorded seed wins over its text; a gap takes the text
                row[key] = value
    frame = pd.DataFrame(rows)
    for col in NUMERIC_COLUMNS:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return Runs(frame, keys)


def _config_keys(overrides: list[dict[str, str]], *, taken: set[str]) -> list[str]:
    """The keys any run overrode, first seen first, less those named like a metric column
    (in ``taken``) that are not :data:`RECORDED_KEYS`."""
    keys = list(dict.fromkeys(key for listed in overrides for key in listed))
    clashes = [k for k in keys if k in taken and k not in RECORDED_KEYS]
    if clashes:
        log.warning("leaving the override(s) %s out of the report: each names a metric column",
                    ", ".join(clashes))
    return [k for k in keys if k not in clashes]


def _metrics_row(run_dir: Path, m: Mapping[str, Any]) -> dict[str, Any]:
    head, fit = m.get("headline"), m.get("fit_metric")
    diag = m.get("diagnosis") or {}
    return {
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
        # Only runs that ran under SLURM get the column: other leaderboards stay as they were.
        **({"slurm_job": m["slurm_job_id"]} if m.get("slurm_job_id") else {}),
    }


def _config_values(run_dir: Path, overrides: Mapping[str, str], keys: list[str]) -> dict[str, str]:
    """The run's value of each of ``keys``: as overridden, else as composed (when known).

    A run that did not override a key another run swept gets its configured value: this
    is what lets two sweeps be reported together (``dlrun-report A B``).
    """
    values = {k: overrides[k] for k in keys if k in overrides}
    missing = [k for k in keys if k not in values]
    file = run_dir / ".hydra" / "config.yaml"
    if missing and file.is_file():
        with open(file, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
        configured = {k: _config_value(config, k) for k in missing}
        values.update({k: v for k, v in configured.items() if v is not None})
    return values


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


# ----------------------------------------------------------------------------- overrides


def _overrides(run_dir: Path, metrics: Mapping[str, Any]) -> dict[str, str]:
    """The run's command-line overrides (``hydra.*`` left out), key -> value as text."""
    listed = metrics.get("overrides")
    file = run_dir / ".hydra" / "overrides.yaml"
    if file.is_file():
        with open(file, encoding="utf-8") as f:
            listed = yaml.safe_load(f) or []
    parsed = (read_override(str(item)) for item in listed or [])
    return {key: _canonical(value) for key, value in parsed if key is not None}


def read_override(text: str) -> tuple[str | None, str]:
    """``(key, value)`` of one override as Hydra reads it; the key is None for ``hydra.*``.

    The ``+``, ``++`` and ``~`` prefixes are dropped, and a quoted or escaped string value
    comes back as the string itself (``'dataset.path="a b.csv"'`` gives ``a b.csv``).
    An override Hydra cannot parse is split on its first ``=``.
    """
    try:
        (override,) = _parser().parse_overrides([text])
        value = _value_text(override)
    except HydraException:
        log.debug("reading the override %r as key=value: Hydra cannot parse it", text)
        key, _, value = text.partition("=")
        key = key.lstrip("+~")
        return (None if key.startswith(("hydra.", "hydra/")) else key), value
    if override.is_hydra_override():
        return None, value
    key = override.key_or_group
    return (key if override.package is None else f"{key}@{override.package}"), value


@cache
def _parser() -> OverridesParser:
    return OverridesParser.create()


def _value_text(override: Override) -> str:
    """An override's value as text, numbers and lists as Hydra writes them back."""
    value = override.value()
    if isinstance(value, str):
        return value  # without the quotes and escapes that get_value_element_as_str keeps
    if isinstance(value, bool):
        return "true" if value else "false"  # as typed, not Python's True
    if value is None and override.is_delete():
        return ""  # ~key deletes: nothing is assigned
    return override.get_value_element_as_str()


def _canonical(value: str) -> str:
    """``1e-3`` and ``0.001`` are one group: numbers are written the same way."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return f"{number:g}" if math.isfinite(number) else value
