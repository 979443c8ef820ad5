"""``dlrun-report PATH...``: rebuild leaderboard and study from run or sweep folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlrun.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dlrun-report",
        description="Rebuild leaderboard.csv and study.md from run or sweep folders "
        "(reads only their metrics.json and .hydra/overrides.yaml).",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="run folders or sweep folders")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help="where to write the report (default: the single path given, "
                        "else outputs/reports/latest)")
    parser.add_argument("--kind", default="generic", help="study kind whose claim to check")
    parser.add_argument("--name", default=None, help="study title")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"dlrun-report: error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    out = args.out or (args.paths[0] if len(args.paths) == 1 and args.paths[0].is_dir()
                       else Path("outputs/reports/latest"))
    from dlrun.report.sweep import report_sweep

    try:
        result = report_sweep(args.paths, out_dir=out, study={"kind": args.kind, "name": args.name})
    except UserError as err:
        print(f"dlrun-report: error: {err}", file=sys.stderr)
        return 2
    if result.n_jobs == 0:
        print(f"dlrun-report: error: no run folders (metrics.json) under {', '.join(map(str, args.paths))}",
              file=sys.stderr)
        return 2
    print(f"{result.n_jobs} runs ({result.n_failed} failed) -> {out / 'study.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
