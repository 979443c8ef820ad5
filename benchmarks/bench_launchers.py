"""Sweep launchers, side by side: the same sweep under Hydra's basic and joblib launchers.

Every side runs ``dlrun -m`` as a user would, on the same jobs, each into its own
temporary sweep folder:

* ``basic``: one job after the other in one process, TensorFlow choosing its threads;
* ``basic, 1 thread``: the same with ``trainer.threads=1``, the per-job set-up joblib uses;
* ``joblib``: as many jobs at once as there are cores, each job's TensorFlow sized to its
  share of the cores (``trainer.threads=0``: ``cores // n_jobs``, here 1).

Two sweeps:

* ``course3``: course 3's own sweep, ``experiment=optimizers`` (4 optimizers × 3 learning
  rates × 3 seeds = 36 jobs of 30 epochs on digits), the sweep the 1.6× target is about;
* ``seeds``: ``N`` seeds of one Adam MLP on digits for ``EPOCHS`` epochs (default 8 × 80),
  a small sweep where each worker's one-off start-up weighs most.

The clock is the whole command's wall time, TensorFlow imports and report included.
The sides are then checked job by job. On a CPU, TensorFlow's numbers depend on its
thread count (a different split of a sum rounds differently), so joblib's jobs must
match ``basic, 1 thread`` bit for bit and ``basic`` to float32 rounding.

    python benchmarks/bench_launchers.py                  # course 3's sweep
    python benchmarks/bench_launchers.py N_JOBS [EPOCHS]  # the seeds sweep
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# label -> (launcher, trainer.threads)
SIDES = {"basic": ("basic", 0), "basic, 1 thread": ("basic", 1), "joblib": ("joblib", 0)}
TOLERANCE = 1e-6  # relative: float32 rounding of differently-threaded sums


@dataclass(frozen=True)
class Sweep:
    title: str
    description: str
    args: tuple[str, ...]
    n_jobs: int


def course3() -> Sweep:
    """Course 3's preset (it picks joblib) on 36 of its 140 jobs: three learning-rate scales and
    three seeds, so that seven timed sweeps stay within minutes."""
    return Sweep(
        "course 3's sweep (`experiment=optimizers`, 36 of its jobs)",
        "36 jobs: sgd, momentum, rmsprop and adam × learning-rate scale 0.1, 1, 10 (of each "
        "optimizer's base rate) × seeds 0–2, an MLP on digits for 30 epochs each",
        ("experiment=optimizers", "optimizer.lr_scale=0.1,1,10", "seed=0,1,2"), 36,
    )


def seeds(n_jobs: int = 8, epochs: int = 80) -> Sweep:
    """``n_jobs`` seeds of one Adam MLP on digits."""
    return Sweep(
        f"{n_jobs} seeds of one configuration ({epochs} epochs a job)",
        f"{n_jobs} jobs: an Adam MLP on digits for {epochs} epochs, seeds 0–{n_jobs - 1}",
        ("dataset=digits", "model=mlp", "optimizer=adam", f"trainer.epochs={epochs}",
         "seed=" + ",".join(str(s) for s in range(n_jobs))), n_jobs,
    )


def _run_sweep(sweep: Sweep, launcher: str, threads: int, sweep_dir: Path) -> float:
    """Run ``sweep`` under ``launcher``; return its wall seconds."""
    args = ["-m", f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}", *sweep.args,
            "trainer.progress=none", f"trainer.threads={threads}"]
    code = "import sys; from dlrun.cli import main; sys.argv[0] = 'dlrun'; sys.exit(main())"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=sweep_dir.parent, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the {launcher} sweep failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def _job_key(metrics: dict) -> tuple[str, ...]:
    """A job's identity across sides: its overrides, less those that differ by side."""
    return tuple(sorted(o for o in metrics["overrides"] if not o.startswith("trainer.threads=")))


def _metrics_by_job(sweep_dir: Path) -> dict[tuple[str, ...], dict]:
    out = {}
    for file in sweep_dir.glob("*/metrics.json"):
        m = json.loads(file.read_text())
        out[_job_key(m)] = m
    return out


def _max_relative_difference(a: dict, b: dict) -> float:
    """The largest relative difference between two runs' train/val/test metrics (inf if keys differ)."""
    if a["status"] != b["status"] or a["epochs_run"] != b["epochs_run"]:
        return math.inf
    worst = 0.0
    for split in ("train", "val", "test"):
        if set(a[split]) != set(b[split]):
            return math.inf
        for key, x in a[split].items():
            y = b[split][key]
            if x != y and not (math.isnan(x) and math.isnan(y)):
                worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-12))
    return worst


def _agreement(reference: dict, joblib: dict) -> tuple[int, int, float]:
    """(jobs bit-identical, jobs within TOLERANCE, largest relative difference)."""
    diffs = [_max_relative_difference(m, joblib[k]) if k in joblib else math.inf for k, m in reference.items()]
    return sum(d == 0 for d in diffs), sum(d <= TOLERANCE for d in diffs), max(diffs, default=math.inf)


@dataclass
class Measured:
    sweep: Sweep
    ratio: float  # median basic wall seconds / median joblib wall seconds
    lines: list[str]  # a markdown section


def measure(sweep: Sweep, *, sides: tuple[str, ...] = tuple(SIDES), repeats: int = 1) -> Measured:
    """Run ``sweep`` under each side; ``basic`` and ``joblib`` are always run.

    ``basic`` and ``joblib`` run ``repeats`` times, alternating, so a burst of load on a
    shared machine hits both; the ratio is of their medians. Other sides run once.
    """
    chosen = {k: v for k, v in SIDES.items() if k in sides or k in ("basic", "joblib")}
    from dlrun.launch import cpu_count

    load_before = os.getloadavg()[0]
    seconds: dict[str, list[float]] = {label: [] for label in chosen}
    metrics: dict[str, list[dict]] = {label: [] for label in chosen}
    order = [label for r in range(repeats) for label in chosen if r == 0 or label in ("basic", "joblib")]
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-launchers-") as tmp:
        for i, label in enumerate(order):
            sweep_dir = Path(tmp) / str(i)
            seconds[label].append(_run_sweep(sweep, *chosen[label], sweep_dir))
            metrics[label].append(_metrics_by_job(sweep_dir))
    n = sweep.n_jobs
    median = {label: statistics.median(times) for label, times in seconds.items()}
    reference = metrics["joblib"][0]
    rows = []
    for label in chosen:
        first = metrics[label][0]
        ok = sum(1 for m in first.values() if m["status"] == "ok")
        exact, close, worst = _agreement(first, reference)
        same = "–" if label == "joblib" else f"{exact}/{n} bit for bit, {close}/{n} within {TOLERANCE:g} (max {worst:.1e})"
        rows.append(f"| {label} | {median[label]:.1f} | {', '.join(f'{t:.1f}' for t in seconds[label])} | "
                    f"{median[label] / median['joblib']:.2f}× | {len(first)}/{n} written, {ok} ok | {same} |")
    # Repeats of one side must reproduce their own metrics exactly (same seeds, same threads).
    repeatable = all(_agreement(runs[0], again)[0] == n for runs in metrics.values() for again in runs[1:])
    paired = [b / j for b, j in zip(seconds["basic"], seconds["joblib"], strict=True)]
    ratio = median["basic"] / median["joblib"]
    fit = [m["fit_seconds"] for m in metrics["basic"][0].values() if m.get("fit_seconds")]
    lines = [
        f"## Launchers: {sweep.title} under basic and joblib",
        "",
        f"{sweep.description}; {cpu_count()} cores. A job's training alone takes "
        f"{sum(fit) / max(len(fit), 1):.1f} s on average under basic; the clock is the wall time of "
        f"the whole `dlrun -m` command. basic and joblib ran {repeats} time(s) each, alternating. "
        f"Load average (1 min) before: {load_before:.1f}, after: {os.getloadavg()[0]:.1f}; above the "
        "core count, other processes shared the cores.",
        "",
        "| side | median wall s | each run, s | joblib's speed-up | jobs | metrics vs joblib, job by job |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"joblib is **{ratio:.2f}×** as fast as basic (ratio of medians; run by run: "
        f"{', '.join(f'{p:.2f}×' for p in paired)}).",
    ]
    if any(len(runs) > 1 for runs in metrics.values()):
        lines.append(f"Repeated sweeps reproduced their own metrics bit for bit: {'yes' if repeatable else '**no**'}.")
    return Measured(sweep, ratio, lines)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        chosen = seeds(int(sys.argv[1]), *(int(a) for a in sys.argv[2:3]))
    else:
        chosen = course3()
    print("\n".join(measure(chosen, repeats=2).lines))
