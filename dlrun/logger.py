"""Experiment tracking beside the run folder (``logger=none|csv|tensorboard|mlflow``).

The run folder is the record; a tracker holds a copy. Trackers run in the report stage's
last step (:meth:`dlrun.capabilities.Capability.track`), once ``metrics.json`` and
``summary.md`` are written, and a tracker that fails (a server that cannot be reached, a
store that cannot be written) costs a warning, never the run.

* ``csv``: one row per finished run appended to ``logger.path`` (default
  ``outputs/runs.csv``): when, where, status, the swept keys' values, every final metric.
  Runs with other columns widen the file; parallel jobs take turns (a file lock).
* ``tensorboard``: Keras's TensorBoard callback, logs in ``<run>/tensorboard``
  (what ``trainer.tensorboard=true`` did before).
* ``mlflow``: one MLflow run per job: the flattened config as params, every epoch's
  metrics (``epoch/<column>``, step = epoch), the final metrics (``test_accuracy``, ...), tags (dataset, model, status, the sweep and
  job number in a sweep, the git commit where there is one) and the run folder's files as
  artifacts. The store defaults to ``sqlite:///outputs/mlflow.db``; ``logger.tracking_uri``
  points anywhere else. ``pip install "dlrun[mlflow]"``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import math
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlrun.capabilities import Capability, RunContext, register_capability
from dlrun.record import RunRecord

log = logging.getLogger(__name__)

DEFAULT_STORE = Path("outputs") / "mlflow.db"
# MLflow's limits: params per batch, metrics per batch, a param value's length.
_PARAMS_PER_BATCH, _METRICS_PER_BATCH, _PARAM_CHARS = 100, 1000, 500
# Artifacts that are state, not results.
_NOT_ARTIFACTS = ("checkpoint", "tensorboard", ".dlrun.lock")


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = dataclasses.asdict(data)
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def final_metrics(record: RunRecord) -> dict[str, float]:
    """The record's finite numbers: ``{split}_{metric}``, the baseline's, time and epochs."""
    out: dict[str, float] = {}
    for split in ("train", "val", "test", "baseline"):
        for name, value in (getattr(record, split) or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                out[f"{split}_{name}"] = float(value)
    for name in ("fit_seconds", "epochs_run", "best_epoch", "params"):
        value = getattr(record, name)
        if isinstance(value, int | float) and math.isfinite(value):
            out[name] = float(value)
    return out


def _sweep() -> dict[str, str]:
    """The sweep folder and job number when this job is part of one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hc = HydraConfig.get()
    return {"sweep": str(Path(hc.sweep.dir).resolve()), "job": str(hc.job.num)}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class CsvLogger(Capability):
    """``logger=csv``: one row per finished run in ``logger.path``."""

    describe = "logger=csv"

    def __init__(self, path: str):
        self.path = Path(path).expanduser()

    def track(self, record: RunRecord, ctx: RunContext) -> None:
        import pandas as pd

        from dlrun.report.files import write_csv

        row = {
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "run_dir": str(ctx.run_dir.resolve()),
            "status": record.status, "dataset": record.dataset, "model": record.model, "reg": record.reg,
            "optimizer": record.optimizer, "lr": record.lr, "seed": record.seed,
            "overrides": " ".join(record.overrides), "headline": record.headline,
            **_sweep(), **final_metrics(record),
        }
        with _locked(self.path):
            old = pd.read_csv(self.path) if self.path.is_file() and self.path.stat().st_size else None
            frame = pd.DataFrame([row]) if old is None else pd.concat([old, pd.DataFrame([row])], ignore_index=True)
            write_csv(self.path, frame)


class MlflowLogger(Capability):
    """``logger=mlflow``: the run copied into an MLflow tracking store."""

    describe = "logger=mlflow"

    def __init__(self, tracking_uri: str | None, experiment: str):
        self.tracking_uri = tracking_uri or f"sqlite:///{DEFAULT_STORE.resolve()}"
        self.experiment = experiment

    def track(self, record: RunRecord, ctx: RunContext) -> None:
        # A server that does not answer: fail in seconds, not after MLflow's minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        for name in ("mlflow", "alembic", "sqlalchemy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(self.experiment)
        tags = {"dataset": record.dataset, "model": record.model, "status": record.status,
                "run_dir": str(ctx.run_dir.resolve()), **_sweep()}
        commit = _git_commit()
        if commit:
            tags["git_commit"] = commit
        run = client.create_run(experiment_id, run_name=ctx.run_dir.name,
                                tags={k: str(v) for k, v in tags.items() if v is not None})
        run_id = run.info.run_id
        try:
            params = [Param(k[:250], str(v)[:_PARAM_CHARS]) for k, v in flat(ctx.cfg).items()]
            for i in range(0, len(params), _PARAMS_PER_BATCH):
                client.log_batch(run_id, params=params[i : i + _PARAMS_PER_BATCH])
            now = int(time.time() * 1000)
            metrics = [Metric(k, v, now, 0) for k, v in final_metrics(record).items()]
            metrics += self._epochs(ctx.run_dir, now)
            for i in range(0, len(metrics), _METRICS_PER_BATCH):
                client.log_batch(run_id, metrics=metrics[i : i + _METRICS_PER_BATCH])
            for path in sorted(ctx.run_dir.iterdir()):
                if path.name in _NOT_ARTIFACTS or path.name.startswith(".") and path.name != ".hydra":
                    continue
                if path.is_dir():
                    client.log_artifacts(run_id, str(path), artifact_path=path.name)
                else:
                    client.log_artifact(run_id, str(path))
        except Exception:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED" if record.status == "ok" else "FAILED")
        log.info("tracked in MLflow: %s (experiment %r, run %s)", self.tracking_uri, self.experiment, run_id)

    @staticmethod
    def _epochs(run_dir: Path, now: int) -> list:
        import pandas as pd
        from mlflow.entities import Metric

        path = run_dir / "history.csv"
        if not path.is_file() or not path.stat().st_size:
            return []
        history = pd.read_csv(path)
        columns = [c for c in history.select_dtypes("number").columns if c not in ("epoch", "fold")]
        metrics = []
        for _, row in history.iterrows():
            fold = f"fold{int(row['fold'])}/" if "fold" in history else ""
            for c in columns:
                if math.isfinite(row[c]):
                    metrics.append(Metric(f"epoch/{fold}{c}", float(row[c]), now, int(row["epoch"])))
        return metrics


def _factory(cfg):
    name = cfg.logger.name
    if name == "csv":
        return CsvLogger(cfg.logger.path)
    if name == "mlflow":  # dlrun.config.validate has checked that MLflow is installed
        return MlflowLogger(cfg.logger.tracking_uri, cfg.logger.experiment)
    return None  # none; tensorboard is the built-in callback (dlrun.capabilities.TensorBoard)


register_capability("logger", _factory)
