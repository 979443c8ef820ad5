"""Where a sweep's time goes, job by job: timers around the stages of a ``dlrun`` sweep.

:func:`environment` gives the environment variables that make a ``dlrun`` process (and the
joblib workers it starts) time the functions in :data:`TARGETS`: a generated
``sitecustomize`` installs an import hook that wraps each of them, once its module is
loaded, and appends one JSON line per call (process, job number, name, wall start and end,
CPU seconds of the process meanwhile) to a file per process. Nothing in ``dlrun`` changes;
a call costs the timer a few microseconds. :func:`breakdown` reads the lines back.

Measured per job: Hydra composing its config (in the main process to check it, then in
the worker to run it), TensorFlow's set-up, data load and split, building the model,
training (``dlrun.train.train``: the clock of ``fit_seconds``, graph tracing included),
predicting, evaluation (metrics, dumb baseline, reference model), the plots and the rest
of the run folder; in the main process, the composing before the first job, the workers'
warm-up and the sweep report at the end.
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

# module -> the functions (``Class.method`` allowed) to time when the module is loaded.
TARGETS = {
    "hydra._internal.config_loader_impl": ["ConfigLoaderImpl.load_sweep_config"],
    "hydra.plugins.sweeper": ["Sweeper.validate_batch_is_legal"],
    "hydra.core.utils": ["run_job"],
    "hydra_plugins.hydra_joblib_launcher._core": ["execute_job"],
    "dlrun.run": ["run_job", "_load", "_split_plan"],
    "dlrun.runtime": ["setup"],
    "dlrun.stages": ["build", "predict_parts", "evaluate", "train_seeds"],
    "dlrun.train": ["train", "train_together"],
    "dlrun.seed_group": ["run_group"],
    "dlrun.reference": ["fit_reference"],
    "dlrun.evaluate": ["evaluate_parts", "baseline"],
    "dlrun.report.run_folder": ["write_run_folder"],
    "dlrun.report.plots": ["plot_curves", "plot_confusion", "draw_pending"],
    "dlrun.report.study": ["report_sweep"],
    "dlrun.report.callback": ["SweepReport.on_multirun_end"],
    "dlrun.launch": ["_warm_up", "WarmWorkers._warm"],
}

_SITECUSTOMIZE = '''
import functools, importlib.abc, json, os, sys, time
_OUT = os.environ["DLRUN_SWEEP_TIMING"]
_TARGETS = json.loads(os.environ["DLRUN_SWEEP_TIMING_TARGETS"])
_file = None

def _job():
    try:
        from hydra.core.hydra_config import HydraConfig
        return int(HydraConfig.get().job.num) if HydraConfig.initialized() else None
    except Exception:
        return None

def _emit(name, t0, t1, cpu):
    global _file
    if _file is None:
        _file = open(os.path.join(_OUT, f"{os.getpid()}.jsonl"), "a", buffering=1)
    _file.write(json.dumps({"pid": os.getpid(), "job": _job(), "name": name, "t0": t0, "t1": t1,
                            "cpu": cpu}) + "\\n")

def _wrap(fn, name):
    @functools.wraps(fn)
    def timed(*args, **kwargs):
        t0, c0 = time.time(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _emit(name, t0, time.time(), time.process_time() - c0)
    timed.__dlrun_timed__ = True
    return timed

def _patch(module):
    for target in _TARGETS.get(module.__name__, []):
        owner, *path = [module, *target.split(".")[:-1]]
        for part in path:
            owner = getattr(owner, part, None)
        attr = target.split(".")[-1]
        fn = getattr(owner, attr, None) if owner is not None else None
        if fn is None or getattr(fn, "__dlrun_timed__", False):
            continue
        raw = owner.__dict__.get(attr) if isinstance(owner, type) else None
        timed = _wrap(fn, module.__name__ + "." + target)
        setattr(owner, attr, staticmethod(timed) if isinstance(raw, staticmethod) else timed)

class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner
    def create_module(self, spec):
        return self.inner.create_module(spec)
    def exec_module(self, module):
        self.inner.exec_module(module)
        _patch(module)

class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in _TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None

sys.meta_path.insert(0, _Finder())
'''


def environment(out: Path) -> dict[str, str]:
    """Environment variables that make a ``dlrun`` command time itself into ``out``."""
    out = Path(out)
    hook = out / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(textwrap.dedent(_SITECUSTOMIZE))
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    return {"DLRUN_SWEEP_TIMING": str(out), "DLRUN_SWEEP_TIMING_TARGETS": json.dumps(TARGETS), "PYTHONPATH": path}


@dataclass
class Stage:
    """One timed function: calls, wall seconds and CPU seconds (summed over its calls)."""

    name: str
    calls: int
    wall: float
    cpu: float


@dataclass
class Breakdown:
    main: dict[str, Stage]  # the ``dlrun`` process
    workers: dict[str, Stage]  # every other process (the joblib workers)
    timeline: dict[str, tuple[float, float]]  # main-process phases: (start, end) seconds from the first call

    def worker(self, short: str) -> Stage:
        return next((s for k, s in self.workers.items() if k.endswith("." + short)), Stage(short, 0, 0.0, 0.0))

    def main_stage(self, short: str) -> Stage:
        return next((s for k, s in self.main.items() if k.endswith("." + short)), Stage(short, 0, 0.0, 0.0))


def breakdown(out: Path, main_pid: int | None = None) -> Breakdown:
    """The timed calls under ``out``, summed per function and process kind."""
    events = []
    for file in Path(out).glob("*.jsonl"):
        events += [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    if not events:
        return Breakdown({}, {}, {})
    if main_pid is None:  # the process that wrote the sweep report (or checked the batch)
        main_pid = next((e["pid"] for e in events if e["name"].endswith(("report_sweep", "validate_batch_is_legal"))),
                        events[0]["pid"])
    sums: dict[bool, dict[str, list[float]]] = {True: {}, False: {}}
    for e in events:
        row = sums[e["pid"] == main_pid].setdefault(e["name"], [0, 0.0, 0.0])
        row[0] += 1
        row[1] += e["t1"] - e["t0"]
        row[2] += e["cpu"]
    start = min(e["t0"] for e in events)
    timeline = {}
    for e in events:
        if e["pid"] == main_pid:
            name = e["name"].rsplit(".", 1)[-1]
            t0, t1 = timeline.get(name, (e["t0"] - start, e["t1"] - start))
            timeline[name] = (min(t0, e["t0"] - start), max(t1, e["t1"] - start))
    jobs = [e for e in events if e["name"].endswith("execute_job")]
    if jobs:
        timeline["jobs"] = (min(e["t0"] for e in jobs) - start, max(e["t1"] for e in jobs) - start)

    def stages(table: dict[str, list[float]]) -> dict[str, Stage]:
        return {k: Stage(k, int(v[0]), v[1], v[2]) for k, v in table.items()}

    return Breakdown(stages(sums[True]), stages(sums[False]), timeline)


def first_epoch_excess(sweep_dir: Path) -> list[float]:
    """Per run: the first epoch's seconds less the median of the others (graph tracing, mostly)."""
    import csv

    out = []
    for history in Path(sweep_dir).glob("*/history.csv"):
        with open(history, encoding="utf-8") as f:
            seconds = [float(r["seconds"]) for r in csv.DictReader(f) if r.get("seconds")]
        if len(seconds) > 1:
            out.append(seconds[0] - statistics.median(seconds[1:]))
    return out


if __name__ == "__main__":  # python benchmarks/sweep_timing.py OUT: print a breakdown
    b = breakdown(Path(sys.argv[1]))
    for title, table in (("main process", b.main), ("workers", b.workers)):
        print(f"== {title}")
        for s in sorted(table.values(), key=lambda s: -s.cpu):
            print(f"  {s.name:60s} calls {s.calls:4d}  wall {s.wall:8.2f}  cpu {s.cpu:8.2f}")
    print({k: (round(a, 2), round(z, 2)) for k, (a, z) in collections.OrderedDict(sorted(b.timeline.items())).items()})
