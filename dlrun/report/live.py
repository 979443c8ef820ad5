"""``history.csv`` while a run trains: one row appended and flushed per finished epoch.

A long run can be watched (``tail -f``, pandas) and a crash keeps every epoch that
finished. The report stage rewrites the file whole, atomically, when the run ends.
"""

from __future__ import annotations

import csv
from pathlib import Path


class LiveHistory:
    """Appends each fold's new epochs to ``path``.

    Args:
        path: the run's ``history.csv``.
        folds: the run's fold count; with several, every row starts with its 1-based ``fold``.
    """

    def __init__(self, path: Path, *, folds: int):
        self.path = Path(path)
        self.folds = folds
        self.rows: list[dict] = []
        self.columns: list[str] = []
        self.written: dict[int, int] = {}

    def update(self, fold: int, history: list[dict]) -> None:
        """Write the rows of ``history`` (the fold's rows so far, restored ones included)
        that are not in the file yet."""
        tag = {"fold": fold + 1} if self.folds > 1 else {}
        new = [{**tag, **row} for row in history[self.written.get(fold, 0) :]]
        self.written[fold] = len(history)
        if not new:
            return
        self.rows.extend(new)
        added = [key for key in dict.fromkeys(k for row in new for k in row) if key not in self.columns]
        if added or len(self.rows) == len(new):  # the first rows, or a new column: the whole file
            self.columns += added
            self._write(self.rows, mode="w")
        else:
            self._write(new, mode="a")
    def _write(self, rows: list[dict], *, mode: str) -> None:
        with open(self.path, mode, newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="")
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
