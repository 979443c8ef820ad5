"""Seeds side by side (issue 17): course 1's regularization study with and without
``trainer.parallel_seeds``, in one run.

``dlrun experiment=regularization`` is 7 regularizers × 5 seeds of a 3 × 128 MLP on
breast_cancer for up to 100 epochs under the joblib launcher. Each side runs the command as
a user would (the whole command timed, TensorFlow's imports and the report included), into
its own temporary sweep folder:

* ``before issue 17``: one job per seed as dlrun ran it before issue 17: every job traces its
  own epoch graph (``DLRUN_FRESH_GRAPH=1``), fits its own reference model
  (``DLRUN_REFIT_REFERENCE=1``) and draws its plots (``trainer.defer_plots=false``), and
  Hydra's basic sweeper composes every job before the first starts;
* ``one job per seed``: ``trainer.parallel_seeds=false`` (the default);
* ``parallel seeds``: ``trainer.parallel_seeds=true``: each regularizer's 5 seeds train in
  one worker as one stacked network.

Issue 17's bar is the study's wall time with parallel seeds against before issue 17 (at least
2× less); the ratio against one job per seed today is printed beside it, since the shared
epoch graph (``dlrun.warm_graph``) made one job per seed faster too.

Then the sides are compared job by job (every number of ``metrics.json`` but clocks, and the
run folders' files) and verdict by verdict (the regularizer rows of ``study.md``). Each
stacked seed runs its own model's ops (only the elementwise optimizer update is shared), so
at the same thread count the jobs should agree bit for bit: that count is printed, and a job
*matches* when its status, epochs and best epoch are equal and every number agrees within
``TOLERANCE`` (relative, or ``ABS`` absolute); the largest relative difference is printed too.

    python benchmarks/bench_parallel_seeds.py              # the whole study, each side once
    python benchmarks/bench_parallel_seeds.py --repeats 2  # sides alternate, medians
    python benchmarks/bench_parallel_seeds.py --quick      # 3 regularizers × 5 seeds, 30 epochs

CPU time is the command's and its workers' (``RUSAGE_CHILDREN``). On a shared machine the
wall clock also measures the neighbours: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GOAL = 2.0  # issue 17: at least 2x less wall time with parallel seeds
TOLERANCE, ABS = 1e-3, 1e-6
QUICK = ("reg=none,l2,dropout", "trainer.epochs=30")
HYDRA_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
BEFORE, SOLO, GROUP = "before issue 17", "one job per seed", "parallel seeds"
# label -> (overrides, environment)
SIDES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    BEFORE: (("trainer.parallel_seeds=false", "trainer.defer_plots=false", f"hydra.sweeper._target_={HYDRA_BASIC_SWEEPER}"),
             {"DLRUN_FRESH_GRAPH": "1", "DLRUN_REFIT_REFERENCE": "1"}),
    SOLO: (("trainer.parallel_seeds=false",), {}),
    GROUP: (("trainer.parallel_seeds=true",), {}),
}
_CLOCKS = {"fit_seconds", "seconds_per_epoch", "seconds"}
_EXACT = ("status", "epochs_run", "best_epoch", "stopped_early")
_VERDICT = re.compile(r"^\| (\w+) \|.*\*\*(supported|not supported|inconclusive)\*\* \|$", re.MULTILINE)


@dataclass
class Side:
    label: str
    wall: list[float]
    cpu: list[float]
    sweep: Path  # the last run's folder

    @property
    def median(self) -> float:
        return statistics.median(self.wall)


def _run(label: str, args: tuple[str, ...], sweep: Path) -> tuple[float, float]:
    command = [sys.executable, "-c", "import sys; from dlrun.cli import main; sys.argv[0] = 'dlrun'; sys.exit(main())",
               "experiment=regularization", *SIDES[label][0], *args, f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **SIDES[label][1]}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=sweep.parent, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"the {label} sweep failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _numbers(value, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in _CLOCKS and key != "versions":
                out.update(_numbers(item, f"{prefix}{key}."))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix.rstrip(".")] = float(value)
    return out


def _jobs(sweep: Path) -> dict[tuple[str, ...], Path]:
    jobs = {}
    for file in sweep.glob("*/metrics.json"):
        overrides = json.loads(file.read_text()).get("overrides") or []
        jobs[tuple(sorted(o for o in overrides if not o.startswith(("trainer.parallel_seeds=", "trainer.defer_plots=",
                                                                   "hydra."))))] = file.parent
    return jobs


def _files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and not p.name.startswith(".dlrun")}


def compare(a: Path, b: Path) -> dict:
    """Job by job: matched, bit for bit, the largest relative difference (and where), and
    whether each pair of run folders holds the same files."""
    ja, jb = _jobs(a), _jobs(b)
    matched = exact = same_files = 0
    worst, where = 0.0, ""
    off: list[str] = []  # the jobs that do not match, with their largest difference
    for key, run_a in ja.items():
        run_b = jb.get(key)
        if run_b is None:
            continue
        ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (run_a, run_b))
        na, nb = _numbers(ma), _numbers(mb)
        ok = all(ma.get(k) == mb.get(k) for k in _EXACT) and na.keys() == nb.keys()
        bits = ok
        job_worst, job_where = 0.0, next((k for k in _EXACT if ma.get(k) != mb.get(k)), "")
        for name, x in na.items():
            y = nb.get(name, math.nan)
            if math.isnan(x) and math.isnan(y):
                continue
            bits = bits and x == y
            rel = abs(x - y) / max(abs(x), 1e-12)
            if rel > worst:
                worst, where = rel, f"{' '.join(key)}: {name}"
            if rel > job_worst and abs(x - y) > ABS:
                job_worst, job_where = rel, f"{name} {x:.6g} / {y:.6g}"
            ok = ok and (abs(x - y) <= ABS or rel <= TOLERANCE)
        if not ok:
            off.append(f"{' '.join(k for k in key if not k.startswith('experiment='))} ({job_where})")
        matched += ok
        exact += bits
        same_files += _files(run_a) == _files(run_b)
    return {"jobs": len(ja), "paired": len(ja.keys() & jb.keys()), "matched": matched, "exact": exact,
            "same_files": same_files, "worst": worst, "where": where, "off": off}


def verdicts(sweep: Path) -> dict[str, str]:
    return dict(_VERDICT.findall((sweep / "study.md").read_text()))


def measure(*, quick: bool = False, repeats: int = 1) -> tuple[list[str], dict]:
    """Run both sides; the report's markdown lines and the figures (``ratio``: wall-time
    ratio of medians, ``cpu_ratio``, ``same_verdicts``, and :func:`compare`'s counts)."""
    args = QUICK if quick else ()
    load_before = os.getloadavg()
    sides = {label: Side(label, [], [], Path()) for label in SIDES}
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-seeds-") as tmp:
        for r in range(repeats):
            order = list(SIDES) if r % 2 == 0 else list(reversed(SIDES))
            for label in order:
                sweep = Path(tmp) / f"{label.replace(' ', '-')}-{r}"
                wall, cpu = _run(label, args, sweep)
                side = sides[label]
                side.wall.append(wall)
                side.cpu.append(cpu)
                side.sweep = sweep
                print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)
        before, solo, group = sides[BEFORE], sides[SOLO], sides[GROUP]
        a = compare(solo.sweep, group.sweep)
        b = compare(before.sweep, solo.sweep)
        v_before, v_solo, v_group = verdicts(before.sweep), verdicts(solo.sweep), verdicts(group.sweep)
    load_after = os.getloadavg()
    cores = os.cpu_count() or 1
    ratio = before.median / group.median
    ratio_solo = solo.median / group.median
    cpu_ratio = statistics.median(before.cpu) / statistics.median(group.cpu)
    same = v_before == v_solo == v_group and bool(v_solo)
    lines = [
        f"## Seeds side by side: course 1's regularization study{' (quick)' if quick else ''}", "",
        f"`dlrun experiment=regularization {' '.join(args)}` as before issue 17, and with `trainer.parallel_seeds` "
        f"false and true, each side {repeats} time(s); {cores} cores; load average (1 min) before {load_before[0]:.1f}, after "
        f"{load_after[0]:.1f}{' (above the core count: other processes shared the cores)' if max(load_before[0], load_after[0]) > cores else ''}.",
        "", "| side | median wall s | each run, s | CPU s (median) |", "|---|---:|---|---:|",
        *(f"| {side.label} | {side.median:.1f} | {', '.join(f'{w:.1f}' for w in side.wall)} | "
          f"{statistics.median(side.cpu):.1f} |" for side in sides.values()),
        "",
        f"Parallel seeds take **{ratio:.2f}×** less wall time than before issue 17 (goal ≥ {GOAL:.0f}×: "
        f"{'met' if ratio >= GOAL else 'not met'}), {cpu_ratio:.2f}× less CPU time; against one job per seed today, "
        f"**{ratio_solo:.2f}×** less wall time.",
        f"One job per seed against before issue 17: {b['paired']}/{b['jobs']} paired; {b['exact']} bit for bit; "
        f"{b['same_files']}/{b['paired']} run folders hold the same files.",
        f"Parallel seeds against one job per seed: {a['paired']}/{a['jobs']} paired; {a['exact']} bit for bit; {a['matched']}/{a['paired']} match (same "
        f"status, epochs and best epoch, every number within {TOLERANCE:g} relative or {ABS:g} absolute); largest "
        f"relative difference {a['worst']:.1e} ({a['where'] or '-'}); {a['same_files']}/{a['paired']} run folders hold "
        "the same files.",
        *([f"Not matching: {'; '.join(a['off'])}."] if a["off"] else []),
        f"Verdicts: {'the same on every side' if same else 'DIFFERENT'}: "
        + ", ".join(f"{k} {v_solo.get(k)}" + ("" if v_before.get(k) == v_solo.get(k) == v_group.get(k)
                                              else f" (before {v_before.get(k)}, parallel {v_group.get(k)})")
                    for k in sorted(v_before.keys() | v_solo.keys() | v_group.keys())),
        "",
    ]
    return lines, {**a, "ratio": ratio, "ratio_solo": ratio_solo, "cpu_ratio": cpu_ratio, "same_verdicts": same,
                   "exact_before": b["exact"], "same_files_before": b["same_files"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args(argv)
    lines, result = measure(quick=opts.quick, repeats=opts.repeats)
    print("\n".join(lines))
    return 0 if result["same_verdicts"] and result["matched"] == result["paired"] == result["jobs"] else 1


if __name__ == "__main__":
    sys.exit(main())
