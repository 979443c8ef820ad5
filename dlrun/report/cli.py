"""``dlrun-report PATH...``: rebuild leaderboard, study and plots from run or sweep folders.

It reads only run-folder files (``metrics.json``, ``history.csv``, ``.hydra/``), so it
works on folders copied from another machine, and on several sweeps at once::

    dlrun-report outputs/courses/optimizers                 # rebuild one sweep's report in place
    dlrun-report outputs/sweeps/A outputs/sweeps/B -o cmp   # two sweeps compared together

The study (kind, name, claim, target fraction) defaults to the one recorded in a single
sweep's ``multirun.yaml``; the options override it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from dlrun.errors import UserError

DEFAULT_OUT = Path("outputs/reports/latest")


def recorded_study(paths: list[Path]) -> dict[str, Any]:
    """The ``study`` node of a single sweep folder's ``multirun.yaml`` ({} otherwise)."""
    if len(paths) != 1 or not (paths[0] / "multirun.yaml").is_file():
        return {}
    with open(paths[0] / "multirun.yaml", encoding="utf-8") as f:
        study = (yaml.safe_load(f) or {}).get("study") or {}
    return {k: v for k, v in study.items() if v is not None}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlrun-report",
        description="Rebuild leaderboard.csv, study.md and the comparison plots from run or sweep "
        "folders (reads only their metrics.json, history.csv and .hydra/).",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="run folders or sweep folders")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help=f"where to write the report (default: the single folder given, else {DEFAULT_OUT})")
    parser.add_argument("--kind", default=None,
                        help="study kind whose claim to check (default: the sweep's, else generic)")
    parser.add_argument("--name", default=None, help="study title")
    parser.add_argument("--target-fraction", type=float, default=None,
                        help="time-to-target: this fraction of the best validation score (default 0.95)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"dlrun-report: error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.target_fraction is not None and not 0 < args.target_fraction <= 1:
        print(f"dlrun-report: error: --target-fraction must be in (0, 1], got {args.target_fraction}",
              file=sys.stderr)
        return 2
    # A sweep's report goes into the sweep; a plain run folder is left as it is.
    single = args.paths[0] if len(args.paths) == 1 else None
    in_place = single is not None and single.is_dir() and not (single / "metrics.json").is_file()
    out = args.out or (single if in_place else DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        print(f"dlrun-report: error: -o {out} is a file; give a folder for the report", file=sys.stderr)
        return 2
    study = recorded_study(args.paths)
    overrides = {"kind": args.kind, "name": args.name, "target_fraction": args.target_fraction}
    study.update({k: v for k, v in overrides.items() if v is not None})
    from dlrun.launch import cpu_count
    from dlrun.report.plots import draw_pending
    from dlrun.report.study import report_sweep

    try:
        # Figures a sweep left waiting (it stopped before drawing them) are drawn on demand.
        draw_pending(args.paths, n_jobs=cpu_count())
        result = report_sweep(args.paths, out_dir=out, study=study, strict=True)
    except UserError as err:
        print(f"dlrun-report: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"dlrun-report: error: cannot write the report in {out}: {err.strerror or err}", file=sys.stderr)
        return 2
    if result.n_jobs == 0:
        print(f"dlrun-report: error: no run folders (metrics.json) under {', '.join(map(str, args.paths))}",
              file=sys.stderr)
        return 2
    print(f"{result.n_jobs} runs ({result.n_failed} failed) -> {out / 'study.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
