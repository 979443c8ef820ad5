"""The CLI's own display: a rich table of one finished run (stdout)."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dlrun.report.runs import read_metrics


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"


def print_run(run_dir: Path, *, console: Console | None = None) -> str:
    """Print the scores, the verdict and the run folder; return the run's status."""
    console = console or Console()
    metrics = read_metrics(Path(run_dir))
    head = metrics.get("headline", "")
    cols = ["loss", "accuracy", head] if metrics.get("task") != "regression" else ["loss", "mae", "r2"]
    cols = list(dict.fromkeys(c for c in cols if c))
    table = Table(title=f"{metrics.get('model')} on {metrics.get('dataset')} — {metrics.get('status')}")
    table.add_column("split")
    for c in cols:
        table.add_column(c, justify="right")
    for name, key in (("train", "train"), ("validation", "val"), ("test", "test"), ("dumb baseline", "baseline")):
        row = metrics.get(key) or {}
        table.add_row(name, *(_fmt(row.get(c)) for c in cols))
    console.print(table)
    diagnosis = (metrics.get("diagnosis") or {}).get("verdict", "not assessed")
    console.print(f"diagnosis: [bold]{diagnosis}[/bold] · {metrics.get('epochs_run')} epochs in "
                  f"{metrics.get('fit_seconds', 0):.1f} s")
    if metrics.get("message"):
        console.print(f"note: {metrics['message']}")
    console.print(f"run folder: {Path(run_dir)}", soft_wrap=True)
    return str(metrics.get("status"))
