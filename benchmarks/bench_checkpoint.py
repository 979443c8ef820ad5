"""What resumable checkpoints cost a long run: ``dlrun trainer.epochs=8000`` with the default
``trainer.checkpoint_every`` against ``trainer.checkpoint_every=0``, side by side.

Each side runs in its own process, alternating, ``--repeats`` times; the figure compared is
the run's ``fit_seconds`` (training, the checkpoint saves included) and the wall time. Issue
19 asks for at most 10 % more with checkpoints on. Before the history moved out of the
state file (``checkpoint/history.jsonl``), each save rewrote every row so far, and 8000
epochs cost 80.8 s against 50.7 s.

    python benchmarks/bench_checkpoint.py [--epochs 8000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BAR = 1.10


def run(out: Path, *, epochs: int, every: int | None) -> tuple[float, float, int]:
    args = [sys.executable, "-m", "dlrun", f"trainer.epochs={epochs}", "trainer.progress=none",
            "diagnosis.reference=none", f"hydra.run.dir={out}"]
    if every is not None:
        args.append(f"trainer.checkpoint_every={every}")
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - start
    fit = json.loads((out / "metrics.json").read_text())["fit_seconds"]
    state = out / "checkpoint" / "state.npz"
    return fit, wall, state.stat().st_size if state.exists() else 0


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    sides = {"checkpoints on (default)": None, "checkpoint_every=0": 0}
    fits: dict[str, list[float]] = {s: [] for s in sides}
    walls: dict[str, list[float]] = {s: [] for s in sides}
    size = 0
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-ckpt-") as tmp:
        for r in range(args.repeats):
            for name, every in sides.items():
                fit, wall, bytes_ = run(Path(tmp) / f"{r}-{every}", epochs=args.epochs, every=every)
                fits[name].append(fit)
                walls[name].append(wall)
                size = max(size, bytes_)
    on, off = (statistics.median(fits[s]) for s in sides)
    ratio = on / off
    lines = [
        f"## Checkpoint cost ({args.epochs} epochs of the breast_cancer MLP, {args.repeats} alternating runs each)",
        "",
        "| side | fit seconds (median) | wall seconds (median) |",
        "|---|---:|---:|",
        *(f"| {s} | {statistics.median(fits[s]):.1f} | {statistics.median(walls[s]):.1f} |" for s in sides),
        "",
        f"- checkpoints on / off: {ratio:.2f}x ({'meets' if ratio <= BAR else 'MISSES'} the bar: at most "
        f"{BAR:.2f}x); state.npz {size / 1024:.0f} KiB at the end",
        "",
    ]
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
