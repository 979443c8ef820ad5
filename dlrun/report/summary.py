"""``summary.md``: what ran, the numbers, the diagnosis, and links to the plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dlrun.config import Config
from dlrun.diagnosis import Diagnosis
from dlrun.record import RunRecord, Section
from dlrun.report.files import write_text
from dlrun.task import TaskSpec

_STATUS_TEXT = {
    "ok": "finished",
    "diverged": "**diverged**: the loss became NaN or infinite and training was stopped",
    "interrupted": "**interrupted** before the last epoch; the history so far is kept",
}


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def score_table(record: RunRecord, spec: TaskSpec) -> str:
    """A markdown table: one row per split plus the dumb baseline on the test split."""
    order = ["loss", "accuracy", "macro_f1", "balanced_accuracy", "roc_auc", "pr_auc"] if spec.is_classification \
        else ["loss", "mae", "mse", "r2"]
    cols = [c for c in order if any(c in record.split(s) for s in ("train", "val", "test"))]
    lines = ["| split | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    baseline_name = "baseline: majority class" if spec.is_classification else "baseline: training mean"
    for name, key in (("train", "train"), ("validation", "val"), ("test", "test"), (baseline_name, "baseline")):
        row = record.split(key)
        lines.append(f"| {name} | " + " | ".join(_num(row.get(c)) for c in cols) + " |")
    if record.reference:
        for split, label in (("val", "validation"), ("test", "test")):
            row = record.reference.get(split) or {}
            lines.append(f"| reference ({record.reference['model']}): {label} | "
                         + " | ".join(_num(row.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def write_summary(
    run_dir: Path, *, cfg: Config, spec: TaskSpec, record: RunRecord, diagnosis: Diagnosis,
    config_line: str, sections: list[Section] = (),
) -> Path:
    """Write ``summary.md``: the run, its scores, the diagnosis, each section, the files."""
    status = record.status
    head = record.score("test", spec.headline)
    base = record.score("baseline", spec.headline)
    better = "higher" if spec.greater_is_better else "lower"
    lines = [
        f"# {cfg.model.name} on {record.dataset}: {diagnosis.verdict}",
        "",
        f"**Run:** {config_line}",
        "",
        f"**Status:** {_STATUS_TEXT.get(status, status)} · {record.epochs_run} epochs in "
        f"{record.fit_seconds:.1f} s ({record.loop} loop, {record.device}) · "
        f"{record.params:,} parameters · best epoch {_num(record.best_epoch)}",
    ]
    if record.message:
        lines += ["", f"> {record.message}"]
    if status == "interrupted" and (Path(run_dir) / "checkpoint").is_dir():
        lines += ["", "To continue from the last checkpoint, run the same command with "
                  f"`trainer.resume=true hydra.run.dir={Path(run_dir).resolve()}`."]
    lines += [
        "",
        f"**Headline:** test {spec.headline} {_num(head)} against {_num(base)} for the dumb baseline"
        + (f" and {_num((record.reference.get('test') or {}).get(spec.headline))} for the reference model "
           f"({record.reference['model']})" if record.reference else "")
        + f" ({better} is better).",
        "",
        "## Scores",
        "",
        score_table(record, spec),
    ]
    if record.std is not None:
        lines += ["", f"Means over {record.eval['folds']} folds; standard deviations are in metrics.json."]
    lines += ["", f"## Diagnosis: {diagnosis.verdict}", ""]
    lines += [f"- {e}" for e in diagnosis.evidence]
    lines += ["", "Usual remedies:", ""] + [f"- {r}" for r in diagnosis.remedies]
    for section in sections:
        if section.summary:
            lines += ["", f"## {section.name.replace('_', ' ').capitalize()}", "", *section.summary]
    lines += ["", "## Files", "", "- [learning curves](curves.png)"]
    lines += [f"- [{label}]({name})" for section in sections for label, name in section.files]
    lines += ["- [per-epoch history](history.csv)", "- [all metrics](metrics.json)"]
    return write_text(Path(run_dir) / "summary.md", "\n".join(lines) + "\n")
