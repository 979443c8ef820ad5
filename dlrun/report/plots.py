"""Plots of one run: learning curves and the confusion matrix.

In a sweep the run's plots may wait for the sweep's end (``trainer.defer_plots``): inside
:func:`deferring`, :func:`plot_curves` and :func:`plot_confusion` write what the figure
needs (its numbers and titles, a small JSON file in the run folder's :data:`PENDING`)
instead of drawing it, and :func:`draw_pending`, called by the sweep's report, draws every
waiting figure at once, in parallel, into the file it would have had. A job then pays
milliseconds for its plots instead of a large share of its time (matplotlib's text layout
and PNG encoding: about 0.4 s of CPU for the two plots of a course-3 job), and the sweep's
reader, who looks at the study's plots first, waits for them less.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dlrun.report.files import save_figure, write_text  # noqa: E402

log = logging.getLogger(__name__)

# A run folder's figures waiting to be drawn: one <figure file name>.json each.
PENDING = ".plots-pending"
_DEFER: ContextVar[bool] = ContextVar("dlrun_defer_plots", default=False)
# Below this many waiting figures, a process pool's start costs more than it saves.
PARALLEL_FROM = 8


def figure_lines(draw: Callable[[Path], object], path: Path, alt: str) -> list[str]:
    """Markdown lines embedding the figure ``draw(path)`` writes, or none when drawing
    fails (logged): a plot must never hide a report's numbers."""
    try:
        draw(path)
    except Exception:
        log.exception("could not draw %s", path.name)
        return []
    return ["", f"![{alt}]({path.name})"]


@contextlib.contextmanager
def deferring(enabled: bool = True) -> Iterator[None]:
    """Meanwhile (when ``enabled``), the plots of this module are written down to be drawn
    later by :func:`draw_pending` instead of drawn."""
    token = _DEFER.set(enabled)
    try:
        yield
    finally:
        _DEFER.reset(token)


def _json_value(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON values (NaN stays NaN: Python's JSON reads it back)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _defer(path: Path, kind: str, **inputs: Any) -> bool:
    """Write down figure ``kind`` for ``path`` when deferring (True); else forget any earlier
    deferred version of that file, which would overwrite the one drawn now (False)."""
    spec = Path(path).parent / PENDING / f"{Path(path).name}.json"
    if not _DEFER.get():
        if spec.is_file():
            spec.unlink()
        return False
    write_text(spec, json.dumps({"kind": kind, "file": Path(path).name, "inputs": inputs}, default=_json_value))
    return True


def plot_curves(history: pd.DataFrame, path: Path, *, metric: str, best_epoch: int | None, title: str) -> Path:
    """Loss and ``metric``, train against validation, best epoch marked."""
    if _defer(path, "curves", history=history.to_dict(orient="list"), metric=metric,
              best_epoch=best_epoch, title=title):
        return path
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    panels = (("loss", "loss"), (metric, metric))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for prefix, style, name in (("", "-", "train"), ("val_", "--", "validation")):
            col = f"{prefix}{key}"
            if col in history:
                ax.plot(history["epoch"], history[col], style, label=name)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if "loss" in history and np.nanmax(history["loss"].to_numpy(dtype=float), initial=0) > 0:
        values = history[[c for c in ("loss", "val_loss") if c in history]].to_numpy(dtype=float)
        if np.isfinite(values).any() and np.nanmin(values) > 0 and np.nanmax(values) / np.nanmin(values) > 100:
            axes[0].set_yscale("log")
    fig.suptitle(title, wrap=True)  # fixed margins: a long title goes on two lines, not off the page
    # Margins set for the labels this figure has (numbers, "epoch", a metric's name), so that
    # it is drawn once, not twice as a cropped save draws it: a sweep draws one per run.
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.14, top=0.87, wspace=0.22)
    return save_figure(path, fig, tight=False)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: Path, *, title: str) -> Path:
    """Counts per (true, predicted) class with each row's share (the recall on the diagonal),
    shaded by that share so that a small class's errors show as clearly as a large one's."""
    if _defer(path, "confusion", matrix=np.asarray(matrix).tolist(), class_names=list(class_names), title=title):
        return path
    matrix = np.asarray(matrix)
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    rows = matrix.sum(axis=1, keepdims=True)
    shade = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(matrix), strict=True):  # empty cells stay blank
        ax.text(j, i, f"{matrix[i, j]}\n{shade[i, j]:.0%}", ha="center", va="center",
                color="white" if shade[i, j] > 0.6 else "black", fontsize=7)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save_figure(path, fig)


def pending(folders: Iterable[Path]) -> list[Path]:
    """The figures waiting to be drawn (their JSON files) under ``folders``, at any depth."""
    found: set[Path] = set()
    for folder in folders:
        folder = Path(folder)
        found.update(folder.glob(f"{PENDING}/*.json"))
        found.update(folder.rglob(f"*/{PENDING}/*.json"))
    return sorted(found)


def _draw_spec(spec_file: Path) -> bool:
    """Draw one waiting figure into its run folder, then forget it; False when it failed (logged)."""
    try:
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
        inputs, path = spec["inputs"], spec_file.parent.parent / spec["file"]
        if spec["kind"] == "curves":
            history = pd.DataFrame(inputs.pop("history"))
            plot_curves(history, path, **inputs)
        elif spec["kind"] == "confusion":
            plot_confusion(np.asarray(inputs.pop("matrix")), inputs.pop("class_names"), path, **inputs)
        else:
            raise ValueError(f"unknown figure kind {spec['kind']!r}")
    except Exception:
        log.exception("could not draw the waiting figure %s", spec_file)
        return False
    finally:
        with contextlib.suppress(OSError):  # drawn (plot_* removed it) or not: never retried forever
            spec_file.unlink()
        with contextlib.suppress(OSError):  # the folder goes once empty
            spec_file.parent.rmdir()
    return True


def _draw_specs(spec_files: list[Path]) -> int:
    with deferring(False):
        return sum(_draw_spec(f) for f in spec_files)


def draw_pending(folders: Iterable[Path], *, n_jobs: int = 1, joblib: dict[str, Any] | None = None) -> int:
    """Draw every figure waiting under ``folders`` (run or sweep folders); the number drawn.

    With ``n_jobs`` > 1 and enough figures, joblib's process pool draws them, ``n_jobs`` at a
    time; ``joblib`` gives the ``joblib.Parallel`` settings of a joblib sweep, whose workers
    (warm, matplotlib imported) then draw them. Else this process does.
    """
    files = pending(folders)
    if n_jobs > 1 and len(files) >= PARALLEL_FROM:
        try:
            from joblib import Parallel, delayed

            settings = {"backend": "loky", **(joblib or {}), "n_jobs": n_jobs}
            chunks = [files[i::n_jobs * 4] for i in range(min(len(files), n_jobs * 4))]
            return sum(Parallel(**settings)(delayed(_draw_specs)(c) for c in chunks))
        except Exception as err:  # a pool that cannot start: draw them here
            log.warning("drawing the run folders' figures in this process (%s: %s)", type(err).__name__, err)
            files = pending(folders)
    return _draw_specs(files)
