"""The run record: what ``metrics.json`` holds, written by one function and read by one.

A run writes a :class:`RunRecord` with :func:`write_record`; every reader (the console,
sweep reports, claim checks, resume) gets it back with :func:`read_record`, which refuses
a file of another shape in one line. Capabilities add their own metrics as
:class:`Section` s: each lands under its name at the top level of ``metrics.json``
(``"fairness": {...}``) and comes back in :attr:`RunRecord.sections`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dlrun.errors import UserError

METRICS_FILE = "metrics.json"
# 1: the dict that dlrun 0.1 wrote without a version; 2: this record (same keys, plus
# schema, inputs, phases and capability sections).
SCHEMA = 2
STATUSES = ("ok", "diverged", "interrupted", "failed")
SPLITS = ("train", "val", "test")


class RecordError(UserError):
    """A ``metrics.json`` that is not a dlrun run record."""


@dataclass
class Section:
    """What one capability (or core part of the report) adds to a run folder.

    Attributes:
        name: its key in ``metrics.json`` and its heading in ``summary.md``.
        metrics: its numbers (JSON-ready), or None when it adds none to the record.
        summary: markdown lines for ``summary.md`` under the heading ``name``.
        files: ``(label, file name)`` of the files it wrote into the run folder.
    """

    name: str
    metrics: dict[str, Any] | None = None
    summary: list[str] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RunRecord:
    """One run's results (see DESIGN §3); fields a failed run never reached are None."""

    status: str
    message: str | None = None
    objective: float | None = None
    diverged_epoch: int | None = None
    dataset: str | None = None
    task: str | None = None
    model: str | None = None
    reg: str | None = None
    optimizer: str | None = None
    lr: float | None = None
    batch_size: int | None = None
    headline: str | None = None
    greater_is_better: bool | None = None
    fit_metric: str | None = None
    train: dict[str, float | None] = field(default_factory=dict)
    val: dict[str, float | None] = field(default_factory=dict)
    test: dict[str, float | None] = field(default_factory=dict)
    baseline: dict[str, float | None] = field(default_factory=dict)
    # The reference model (dlrun.reference): {"model": name, "train": {...}, "val": ..., "test": ...}.
    reference: dict[str, Any] | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    stopped_early: bool | None = None
    fit_seconds: float | None = None
    seconds_per_epoch: float | None = None
    loop: str | None = None
    device: str | None = None
    params: int | None = None
    sizes: dict[str, int] | None = None
    eval: dict[str, Any] | None = None
    diagnosis: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None  # the source columns the model saw and the encoded width
    phases: list[dict[str, Any]] | None = None  # training phases, when there were several
    seed: int | None = None
    overrides: list[str] = field(default_factory=list)
    versions: dict[str, str] | None = None
    std: dict[str, dict[str, float | None]] | None = None  # k-fold: std over folds per split
    folds: list[dict[str, Any]] | None = None  # k-fold: each fold's metrics
    sections: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA
    # The SLURM job that wrote the record (``123_4`` in a job array); None outside SLURM.
    slurm_job_id: str | None = field(default_factory=lambda: _slurm_job_id(os.environ))

    def split(self, name: str) -> dict[str, float | None]:
        """The metrics of ``train``, ``val``, ``test`` or ``baseline``."""
        return getattr(self, name) or {}

    def score(self, split: str, metric: str | None = None) -> float:
        """A split's value of ``metric`` (the headline by default); NaN when absent."""
        value = self.split(split).get(metric or self.headline or "")
        return math.nan if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        data = {"schema": self.schema}
        data.update({f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("schema", "sections")})
        for name, value in self.sections.items():
            data[name] = value
        return data


_KNOWN = {f.name for f in fields(RunRecord)} - {"sections"}
_DICT_FIELDS = ("train", "val", "test", "baseline")


def from_dict(data: Any, *, source: str = METRICS_FILE) -> RunRecord:
    """A record from parsed JSON; unknown top-level keys become sections.

    Raises:
        RecordError: the data is not a run record (not an object, no known status, or a
            split's metrics that are not an object).
    """
    if not isinstance(data, dict):
        raise RecordError(f"{source} is not a dlrun run record (a JSON object is expected, "
                          f"got {type(data).__name__})")
    status = data.get("status")
    if status not in STATUSES:
        raise RecordError(f"{source} is not a dlrun run record (status {status!r} is not one of: "
                          f"{', '.join(STATUSES)})")
    for key in _DICT_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise RecordError(f"{source} is not a dlrun run record ({key!r} should hold the split's metrics)")
    known = {k: v for k, v in data.items() if k in _KNOWN and v is not None}
    known.setdefault("schema", 1)
    known.setdefault("slurm_job_id", None)  # a record read back is not stamped with the reader's job
    for key in _DICT_FIELDS:
        known.setdefault(key, {})
    if "overrides" in known and not isinstance(known["overrides"], list):
        known["overrides"] = [str(known["overrides"])]
    sections = {k: v for k, v in data.items() if k not in _KNOWN}
    return RunRecord(**known, sections=sections)


def _slurm_job_id(environ: Any) -> str | None:
    """The SLURM job this process runs in, as ``squeue`` names it (``123_4`` in a job array)."""
    array, task = environ.get("SLURM_ARRAY_JOB_ID"), environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return environ.get("SLURM_JOB_ID") or None


def read_record(run_dir: Path) -> RunRecord:
    """The record in ``run_dir/metrics.json``.

    Raises:
        RecordError: unreadable or not a run record.
        FileNotFoundError: there is no ``metrics.json``.
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"{path} is not valid JSON ({err})") from None
    return from_dict(data, source=str(path))


def write_record(run_dir: Path, record: RunRecord) -> Path:
    """Write ``run_dir/metrics.json`` atomically."""
    from dlrun.report.files import write_json

    return write_json(Path(run_dir) / METRICS_FILE, record.to_dict())

