"""Resumable epoch checkpoints: model and optimizer state, history and epoch.

:class:`EpochCheckpoint` is a Keras callback that, every ``every`` epochs, writes
``<run>/checkpoint/state.npz`` atomically (temporary file, then rename): a kill in the
middle of a save leaves the previous checkpoint intact. The file holds every model
variable (weights, batch-norm statistics and the dropout layers' seed-generator state),
every optimizer variable (iteration count, moments), the epoch and how many history rows
it covers; the rows themselves are appended to ``<run>/checkpoint/history.jsonl`` before
each save, so a save costs the same at epoch 10 and at epoch 10,000. :func:`restore` puts
a freshly built model back exactly where training stopped. It also
holds what EarlyStopping and ReduceLROnPlateau keep in memory (patience counters, best
value, EarlyStopping's best weights), which Keras resets when training starts: a resumed
run stops, and lowers its learning rate, at the same epochs as an uninterrupted one.

Only numbers and one JSON string are stored; loading uses ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlrun.errors import ConfigError

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.npz"
# The fold's history rows, one JSON object per line, appended at each save; the state file
# names how many of them it covers, so a save costs the same at epoch 10 and at 10,000.
HISTORY_FILE = "history.jsonl"


# The in-memory state of the callbacks a resume must carry over, by attribute.
CALLBACK_STATE: dict[type, tuple[str, ...]] = {
    keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
}


@dataclass
class Checkpoint:
    """What a checkpoint restores besides the variables themselves."""

    epoch: int  # epochs completed
    fold: int  # 0-based fold (0 for holdout)
    history: list[dict[str, float]]
    fingerprint: str
    # One entry per stateful callback, in order: attribute -> value, plus EarlyStopping's
    # "best_weights" (a list of arrays) when it had some. None from read(), and from a
    # checkpoint written before dlrun saved callback state.
    callbacks: list[dict[str, Any]] | None = None
    phase: int = 0  # 0-based training phase (dlrun.stages.Phase) the epoch belongs to
    phase_start: int = 0  # epochs completed before that phase began


def _stateful(callbacks: list[keras.callbacks.Callback]) -> list[keras.callbacks.Callback]:
    return [cb for cb in callbacks if isinstance(cb, tuple(CALLBACK_STATE))]


def _attrs(cb: keras.callbacks.Callback) -> tuple[str, ...]:
    return next(attrs for kind, attrs in CALLBACK_STATE.items() if isinstance(cb, kind))


def _number(value: Any) -> float | int | None:
    if value is None:
        return None
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / STATE_FILE


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _history_path(path: Path) -> Path:
    return Path(path).with_name(HISTORY_FILE)


def write_history(path: Path, rows: list[dict[str, float]], *, append: bool) -> None:
    """Write (or append) history rows to the checkpoint's ``history.jsonl``, flushed."""
    target = _history_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a" if append else "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
        f.flush()


def _history(path: Path, meta: dict[str, Any]) -> list[dict[str, float]]:
    """The rows a state covers: the first ``history_rows`` of ``history.jsonl`` (a state
    written before the rows moved out of it holds them itself)."""
    if "history" in meta:
        return meta["history"]
    rows = meta["history_rows"]
    with open(_history_path(path), encoding="utf-8") as f:
        history = [json.loads(line) for _, line in zip(range(rows), f, strict=False)]
    if len(history) != rows:
        raise ValueError(f"{HISTORY_FILE} holds {len(history)} rows, the state names {rows}")
    return history


def save(
    path: Path, model: keras.Model, *, epoch: int, fold: int, history: list[dict[str, float]],
    fingerprint: str, callbacks: list[keras.callbacks.Callback] = (), phase: int = 0,
    phase_start: int = 0, rows_written: int | None = None,
) -> None:
    """Write one checkpoint atomically; see the module docstring for what it holds.

    ``rows_written``: how many of ``history``'s rows ``history.jsonl`` already holds from
    this training (only the rest are appended); None writes them all.
    """
    write_history(path, history[rows_written or 0 :], append=rows_written is not None)
    arrays: dict[str, Any] = {f"model_{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    opt = model.optimizer
    if opt is not None and opt.built:
        arrays.update({f"opt_{i}": np.asarray(v.numpy()) for i, v in enumerate(opt.variables)})
    states = []
    for j, cb in enumerate(_stateful(list(callbacks))):
        state = {attr: _number(getattr(cb, attr, None)) for attr in _attrs(cb)}
        best = getattr(cb, "best_weights", None)
        state["n_best_weights"] = 0 if best is None else len(best)
        arrays.update({f"cb{j}_best_{i}": np.asarray(w) for i, w in enumerate(best or [])})
        states.append(state)
    meta = {"epoch": epoch, "fold": fold, "phase": phase, "phase_start": phase_start,
            "history_rows": len(history), "fingerprint": fingerprint,
            "n_model": len(model.variables), "n_opt": len(opt.variables) if opt is not None and opt.built else 0,
            "callbacks": states}
    arrays["meta"] = np.array(json.dumps(meta))
    _atomic_savez(Path(path), arrays)


def read(path: Path) -> Checkpoint:
    """The epoch, fold, history and fingerprint of a checkpoint, without its variables.

    Raises:
        ConfigError: a checkpoint that cannot be read (empty, truncated, not dlrun's).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
        for key in ("epoch", "fold", "fingerprint", "n_model", "n_opt"):
            meta[key]  # noqa: B018  (a KeyError names what is missing)
        history = _history(path, meta)
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as err:
        raise ConfigError(
            f"the checkpoint {path} cannot be read ({type(err).__name__}: it is empty, truncated or not "
            "dlrun's); delete the checkpoint folder and run again without trainer.resume"
        ) from None
    return Checkpoint(meta["epoch"], meta["fold"], history, meta["fingerprint"],
                      phase=meta.get("phase", 0), phase_start=meta.get("phase_start", 0))


def restore(path: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> Checkpoint:
    """Load a checkpoint into a freshly built ``model`` and an unused ``optimizer``.

    The optimizer is built on the model's trainable variables first, so the one passed to
    training keeps the restored iteration count and moments.

    Raises:
        ConfigError: when the checkpoint does not fit the model (another config wrote it).
    """
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta["n_model"] != len(model.variables):
            raise ConfigError(
                f"the checkpoint in {path.parent} holds {meta['n_model']} model variables, this model has "
                f"{len(model.variables)}; resume with the config that wrote it"
            )
        try:
            for i, var in enumerate(model.variables):
                var.assign(data[f"model_{i}"])
            if meta["n_opt"]:
                optimizer.build(model.trainable_variables)
                for i, var in enumerate(optimizer.variables):
                    var.assign(data[f"opt_{i}"])
            states = None if "callbacks" not in meta else []
            for j, saved in enumerate(meta.get("callbacks", [])):
                state = {k: v for k, v in saved.items() if k != "n_best_weights"}
                if saved["n_best_weights"]:
                    state["best_weights"] = [data[f"cb{j}_best_{i}"] for i in range(saved["n_best_weights"])]
                states.append(state)
        except (ValueError, KeyError) as err:
            raise ConfigError(
                f"the checkpoint in {path.parent} does not fit this model ({err}); resume with the config "
                "that wrote it"
            ) from None
    log.info("resumed from %s at epoch %d", path, meta["epoch"])
    return Checkpoint(meta["epoch"], meta["fold"], _history(path, meta), meta["fingerprint"], states,
                      phase=meta.get("phase", 0), phase_start=meta.get("phase_start", 0))


class EpochCheckpoint(keras.callbacks.Callback):
    """Save a resumable checkpoint every ``every`` epochs.

    Put it after the callbacks it saves: on a resume, its ``on_train_begin`` puts their
    state back after theirs has reset it.

    Args:
        path: the checkpoint file, usually :func:`checkpoint_path` of the run folder.
        every: epochs between saves. Defaults to 1.
        fold: the 0-based fold being trained. Defaults to 0.
        phase: the 0-based training phase. Defaults to 0.
        phase_start: epochs completed before this phase began. Defaults to 0.
        history: the list the training loop appends its history rows to; it is saved as
            it stands at each epoch end.
        fingerprint: identifies the config, so a resume with another config is refused.
        peers: the other callbacks of this training; the state of those in
            :data:`CALLBACK_STATE` is saved and, from ``resumed``, restored.
        resumed: the checkpoint this training resumes from, if any.
        min_seconds: an epoch due for a save is skipped when the last save (or the start of
            training) is more recent than this. Defaults to 0 (never skipped).
    """

    def __init__(
        self, path: Path, *, every: int = 1, fold: int = 0, phase: int = 0, phase_start: int = 0,
        history: list[dict[str, float]] | None = None, fingerprint: str = "",
        peers: list[keras.callbacks.Callback] = (), resumed: Checkpoint | None = None,
        min_seconds: float = 0.0,
    ):
        super().__init__()
        self.path, self.every, self.fold = Path(path), every, fold
        self.min_seconds = min_seconds
        self._last_save = time.monotonic()
        self.phase, self.phase_start = phase, phase_start
        self.history = history if history is not None else []
        self.fingerprint = fingerprint
        self.peers = _stateful(list(peers))
        self.resumed = resumed
        self._saved_rows: int | None = None  # rows this callback has put in history.jsonl

    def on_train_begin(self, logs=None):
        if self.resumed is None or not self.peers:
            return
        if self.resumed.callbacks is None:
            log.warning("the checkpoint in %s holds no early-stopping / plateau state (an older dlrun "
                        "wrote it): their patience starts again from here", self.path.parent)
            return
        if len(self.resumed.callbacks) != len(self.peers):
            raise ConfigError(
                f"the checkpoint in {self.path.parent} was saved with {len(self.resumed.callbacks)} "
                f"early-stopping / plateau callbacks, this run has {len(self.peers)}; resume with the "
                "config that wrote it"
            )
        for cb, state in zip(self.peers, self.resumed.callbacks, strict=True):
            for attr, value in state.items():
                setattr(cb, attr, value)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if self.every and done % self.every == 0 and time.monotonic() - self._last_save >= self.min_seconds:
            # The first save of this training writes the fold's rows so far (a resume, a new
            # phase, a new fold); later ones append only what is new.
            save(self.path, self.model, epoch=done, fold=self.fold, history=self.history,
                 rows_written=self._saved_rows,
                 fingerprint=self.fingerprint, callbacks=self.peers, phase=self.phase,
                 phase_start=self.phase_start)
            self._saved_rows = len(self.history)
            self._last_save = time.monotonic()
