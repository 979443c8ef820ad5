"""Class-imbalance treatment of the training part (``sampling=...``), a prepare-stage capability.

* ``class_weight``: every row weighs ``n / (k * n_class)`` in the loss (scikit-learn's
  "balanced" weights), so each class counts as much as the others; no row is added.
* ``oversample``: minority rows repeated at random until every class is as large as the
  largest (imbalanced-learn's ``RandomOverSampler``).
* ``undersample``: majority rows dropped at random down to the smallest class
  (``RandomUnderSampler``).
* ``smote``: synthetic minority rows interpolated between near neighbours of the same class
  (``SMOTE``, on flat features); synthetic rows carry index -1 and group ``"synthetic"``.

Only the training part changes: validation and test keep their natural class balance, so
their scores say how the model does on data as it comes. Resampled rows keep their
metadata (original index, sample weight, group).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from dlrun.capabilities import Capability, FoldContext, register_capability
from dlrun.data.image_store import is_lazy
from dlrun.data.table import Part, Splits
from dlrun.errors import ConfigError
from dlrun.record import Section

log = logging.getLogger(__name__)

METHODS = ("none", "class_weight", "oversample", "undersample", "smote")
# SMOTE interpolates towards this many same-class neighbours (imbalanced-learn's default) ...
_SMOTE_NEIGHBOURS = 5


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """``n / (k * n_class)`` per row: every class's weights sum to ``n / k``."""
    from sklearn.utils.class_weight import compute_sample_weight

    return compute_sample_weight("balanced", y)


def _smote(part: Part, seed: int) -> Part:
    from imblearn.over_sampling import SMOTE

    if is_lazy(part.x):
        raise ConfigError("sampling=smote interpolates pixel rows in memory, and this image folder is "
                          "streamed from disk: use sampling=oversample, or dataset.stream=false")

    counts = np.bincount(part.y.astype(np.int64))
    smallest = int(counts[counts > 0].min())
    if smallest < 2:
        raise ConfigError("sampling=smote needs at least 2 training rows in every class; use oversample")
    sampler = SMOTE(k_neighbors=min(_SMOTE_NEIGHBOURS, smallest - 1), random_state=seed)
    x, y = sampler.fit_resample(part.x, part.y)
    n, extra = len(part), len(y) - len(part)
    if not np.array_equal(x[:n], part.x):  # imbalanced-learn keeps the originals first, in order
        raise RuntimeError("SMOTE reordered the original rows; cannot carry their metadata")
    group = None if part.group is None else np.concatenate([part.group, np.full(extra, "synthetic")])
    return Part(x=np.ascontiguousarray(x, dtype=np.float32), y=y.astype(part.y.dtype),
                index=np.concatenate([part.index, np.full(extra, -1)]),
                weight=np.concatenate([part.weight, np.ones(extra)]), group=group)


def resample(part: Part, method: str, *, seed: int) -> Part:
    """The training part after ``method`` (see the module docstring).

    Raises:
        ConfigError: an unknown method.
    """
    if method == "none":
        return part
    if method == "class_weight":
        return replace(part, weight=part.weight * balanced_weights(part.y))
    if method in ("oversample", "undersample"):
        from imblearn.over_sampling import RandomOverSampler
        from imblearn.under_sampling import RandomUnderSampler

        cls = RandomOverSampler if method == "oversample" else RandomUnderSampler
        sampler = cls(random_state=seed)
        sampler.fit_resample(np.zeros((len(part), 1)), part.y)
        return part.take(np.asarray(sampler.sample_indices_))
    if method == "smote":
        return _smote(part, seed)
    raise ConfigError(f"sampling={method!r} is not one of: {', '.join(METHODS)}")


class Sampling(Capability):
    """``sampling=class_weight|oversample|undersample|smote`` on the training part."""

    def __init__(self, method: str, *, seed: int):
        self.method, self.seed = method, seed
        self.counts: list[dict[str, dict[str, int]]] = []

    def prepare(self, splits: Splits, ctx: FoldContext) -> Splits:
        if splits.task == "regression":
            raise ConfigError(f"sampling={self.method} applies to classification; use sampling=none "
                              "for a regression target")
        train = resample(splits.train, self.method, seed=self.seed)
        names = splits.class_names
        before = np.bincount(splits.train.y.astype(np.int64), minlength=len(names))
        after = np.bincount(train.y.astype(np.int64), minlength=len(names))
        self.counts.append({"before": dict(zip(names, map(int, before), strict=True)),
                            "after": dict(zip(names, map(int, after), strict=True))})
        return replace(splits, train=train)

    def report(self, outcomes, ctx) -> Section | None:
        first = self.counts[0]
        lines = [f"`sampling={self.method}` on the training split only (validation and test keep "
                 "their natural balance). Training rows per class, before → after"
                 + (" (weights, not rows, change)" if self.method == "class_weight" else "") + ":", ""]
        lines += [f"- {name}: {first['before'][name]} → {first['after'][name]}" for name in first["before"]]
        if len(self.counts) > 1:
            lines += ["", f"(fold 1 of {len(self.counts)}; every fold is in metrics.json)"]
        return Section("sampling", metrics={"method": self.method, "folds": self.counts}, summary=lines)


register_capability("sampling", lambda cfg: Sampling(cfg.sampling.name, seed=cfg.seed)
                    if cfg.sampling.name != "none" else None)
