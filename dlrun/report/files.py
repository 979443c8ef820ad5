"""Atomic writers: a temporary file in the same folder, then ``os.replace``.

A crash or a kill never leaves a half-written result file behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# Read once at import: os.umask is process-wide, so flipping it per write could race threads.
_UMASK = _read_umask()


def _atomic(path: Path, write: Callable[[IO], None], *, mode: str = "w") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates 0600; give the file the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _clean(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become null; numpy scalars become Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text(path: Path, text: str) -> Path:
    return _atomic(path, lambda f: f.write(text))


def write_json(path: Path, data: dict) -> Path:
    return _atomic(path, lambda f: json.dump(_clean(data), f, indent=2, sort_keys=False))


def write_csv(path: Path, frame: pd.DataFrame, *, index: bool = False) -> Path:
    return _atomic(path, lambda f: frame.to_csv(f, index=index))


def save_figure(path: Path, fig, *, tight: bool = True) -> Path:
    """Save a matplotlib figure atomically and close it.

    ``tight`` crops the page to what is drawn, which draws the figure twice (once to measure
    it); a figure whose margins were set for its labels saves in one draw with ``False``.
    """
    import matplotlib.pyplot as plt

    crop = {"bbox_inches": "tight"} if tight else {}
    try:
        return _atomic(path, lambda f: fig.savefig(f, format="png", dpi=110, **crop), mode="wb")
    finally:
        plt.close(fig)


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
