"""Per-epoch progress: a rich bar on a terminal, plain log lines elsewhere (CI, files, sweeps)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator

from dlrun.task import TaskSpec

log = logging.getLogger("dlrun.progress")

EpochHook = Callable[[int, dict[str, float]], None]

# Plain mode logs about this many lines per run, plus the last epoch, and a line at least
# this often on a long run whatever its epoch count.
_PLAIN_LINES = 10
_PLAIN_SECONDS = 10.0


def resolve_mode(mode: str) -> str:
    """``auto`` becomes ``rich`` on an interactive terminal outside CI, else ``plain``."""
    if mode != "auto":
        return mode
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    return "rich" if interactive else "plain"


def _fmt(row: dict[str, float], keys: list[str]) -> str:
    parts = []
    for k in keys:
        v = row.get(k)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)


@contextlib.contextmanager
def epoch_progress(mode: str, epochs: int, spec: TaskSpec, *, label: str) -> Iterator[EpochHook]:
    """Yield a hook to call after every epoch with its number and history row."""
    keys = ["loss", "val_loss", f"val_{spec.headline}"]
    mode = resolve_mode(mode)
    if mode == "none":
        yield lambda epoch, row: None
        return
    if mode == "plain":
        every = max(1, epochs // _PLAIN_LINES)
        last = [time.monotonic()]

        def plain(epoch: int, row: dict[str, float]) -> None:
            now = time.monotonic()
            if epoch == 1 or epoch % every == 0 or epoch == epochs or now - last[0] >= _PLAIN_SECONDS:
                last[0] = now
                log.info("%s epoch %d/%d  %s", label, epoch, epochs, _fmt(row, keys))

        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[stats]}"))
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=epochs, stats="")

        def fancy(epoch: int, row: dict[str, float]) -> None:
            bar.update(task, completed=epoch, stats=_fmt(row, keys))

        yield fancy
