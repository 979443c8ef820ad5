"""The tuner: scikit-optimize's ask/tell ``Optimizer`` with trials that can fail and resume.

:class:`Tuner` asks for points, is told each trial's validation score, and keeps every
trial in order. Scores are told the way the optimizer minimises: negated when a higher
score is better (accuracy, ROC-AUC), as they are when lower is better (loss, MAE); the
direction comes from the jobs' own records, never from a guess. A trial that failed or
diverged has no score: it is told the worst score seen so far, so the model learns to stay
away from it and the search goes on. Told back from ``trials.csv``, the finished trials of
an interrupted tuning put the optimizer where it was; only the rest are asked.

Methods (``tuner=``): ``gp`` (Gaussian process, as ``gp_minimize``), ``forest`` (random
forest, ``forest_minimize``), ``gbrt`` (quantile gradient boosting, ``gbrt_minimize``),
``random`` (points drawn from the priors, ``dummy_minimize``) and ``grid`` (every
combination of the discrete values, intervals cut into ``tuner.grid_points`` values).
At one ``tuner.seed`` the model-based methods and ``random`` draw the same first
``tuner.n_initial_points`` points, so a comparison seed by seed isolates what the model adds.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skopt.learning import GradientBoostingQuantileRegressor
from skopt.space import Categorical, Integer

from dlrun.config import TunerConfig
from dlrun.tuning_space import SearchSpace

log = logging.getLogger(__name__)

MAXIMIZE, MINIMIZE = "maximize", "minimize"
STATUS_OK = "ok"
# skopt's own estimator choices for each method (see skopt.utils.cook_estimator)
ESTIMATORS = {"gp": "GP", "forest": "RF", "random": "GP"}
# random: no model is ever fitted, every point is an initial (random) one
_NEVER = 2**31 - 1


@dataclass
class Trial:
    """One evaluated point.

    Attributes:
        number: the trial's index, from 0 (its job number in the sweep folder).
        point: the point as the optimizer knows it.
        params: ``{key: value}`` of the point.
        score: the validation objective the job returned (NaN when it has none).
        status: ``ok``, ``diverged``, ``failed`` or ``interrupted``.
        seconds: the job's training time.
        run_dir: its run folder.
        told: the value told to the optimizer (lower is better); None until told.
    """

    number: int
    point: list[Any]
    params: dict[str, Any]
    score: float
    status: str = STATUS_OK
    seconds: float = math.nan
    run_dir: str = ""
    told: float | None = None

    @property
    def finished(self) -> bool:
        return self.status == STATUS_OK and math.isfinite(self.score)


class _QuantileGBRT(GradientBoostingQuantileRegressor):
    """skopt's quantile GBRT, mended for scikit-learn >= 1.6 and numpy >= 2.4.

    skopt 0.10 lists ``RegressorMixin`` after ``BaseEstimator``, so scikit-learn's tags
    call it no regressor and skopt's own ``Optimizer`` refuses it; and its ``predict``
    calls ``np.in1d``, which numpy 2.4 removed.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        return tags

    def predict(self, X, return_std=False, return_quantiles=False):
        if return_quantiles or not return_std:
            return super().predict(X, return_quantiles=return_quantiles)
        # As skopt's own: the median, and half the spread between the 16% and 84% quantiles.
        low, mean, high = (self.regressors_[self.quantiles.index(q)].predict(X) for q in (0.16, 0.5, 0.84))
        return mean, (high - low) / 2.0


def _estimator(name: str, dimensions: list, seed: int):
    if name == "gbrt":
        from sklearn.ensemble import GradientBoostingRegressor

        # skopt's gbrt_minimize default: 30 trees, quantile loss
        return _QuantileGBRT(base_estimator=GradientBoostingRegressor(n_estimators=30, loss="quantile"),
                             random_state=seed)
    from skopt.utils import cook_estimator

    return cook_estimator(ESTIMATORS[name], space=dimensions, random_state=seed)


def make_optimizer(space: SearchSpace, settings: TunerConfig):
    """skopt's ``Optimizer`` for ``settings.name`` (any method but ``grid``)."""
    from skopt import Optimizer
    from skopt.utils import normalize_dimensions

    # skopt sets transforms on the dimension objects it is given: each optimizer gets its own
    # copies, scaled to [0, 1] for every method (skopt does so for GP; trees do not mind), so
    # every method draws the same random points at one seed.
    dimensions = normalize_dimensions(copy.deepcopy(space.dimensions))
    estimator_seed = int(np.random.RandomState(settings.seed).randint(0, np.iinfo(np.int32).max))
    return Optimizer(
        dimensions,
        base_estimator=_estimator(settings.name, dimensions, estimator_seed),
        n_initial_points=_NEVER if settings.name == "random" else settings.n_initial_points,
        acq_func=settings.acq_func,
        acq_optimizer=settings.acq_optimizer,
        random_state=settings.seed,
    )


def grid(space: SearchSpace, points: int) -> list[list[Any]]:
    """Every combination of the dimensions' values; intervals give ``points`` values each."""
    axes = []
    for d in space.dimensions:
        if isinstance(d, Categorical):
            axes.append(list(d.categories))
            continue
        log_scale = d.prior == "log-uniform"
        values = (np.geomspace if log_scale else np.linspace)(d.low, d.high, points)
        if isinstance(d, Integer):
            values = np.unique(np.round(values).astype(int))
        axes.append([v.item() for v in values])
    return [list(p) for p in itertools.product(*axes)]


@dataclass
class Tuner:
    """Asks points and is told trials (see the module docstring).

    Args:
        space: what to search.
        settings: ``tuner.*``.
    """

    space: SearchSpace
    settings: TunerConfig
    trials: list[Trial] = field(default_factory=list)
    direction: str | None = None  # maximize | minimize, from the first job that says

    def __post_init__(self) -> None:
        if self.settings.name == "grid":
            self._optimizer = None
            self._grid = grid(self.space, self.settings.grid_points)
            if len(self._grid) > self.settings.n_calls:
                # A budget smaller than the grid: a seeded sample of it, not its first corner.
                order = np.random.RandomState(self.settings.seed).permutation(len(self._grid))
                self._grid = [self._grid[i] for i in order[: self.settings.n_calls]]
                log.warning("the grid has %d points, over tuner.n_calls=%d: a random sample of it is run",
                            len(order), self.settings.n_calls)
        else:
            self._optimizer = make_optimizer(self.space, self.settings)
            self._grid = None

    @property
    def n_calls(self) -> int:
        """Trials in all: ``tuner.n_calls``, or the grid's size when that is smaller."""
        return min(self.settings.n_calls, len(self._grid)) if self._grid is not None else self.settings.n_calls

    @property
    def remaining(self) -> int:
        return max(0, self.n_calls - len(self.trials))

    def ask(self, n: int) -> list[list[Any]]:
        """Up to ``n`` new points (fewer when the budget or the grid runs out)."""
        n = min(n, self.remaining)
        if n <= 0:
            return []
        if self._grid is not None:
            done = [t.point for t in self.trials]
            return [p for p in self._grid if p not in done][:n]
        points = self._optimizer.ask(n_points=n) if n > 1 else [self._optimizer.ask()]
        return [[_plain(v) for v in p] for p in points]

    def tell(self, trials: list[Trial], *, greater_is_better: bool | None = None) -> None:
        """Record finished trials and tell the optimizer what it can be told.

        Args:
            trials: the batch's trials, scores in the metric's own units.
            greater_is_better: the metric's direction, when a job has reported it. A trial
                waits untold until the direction is known, and a failed one until some trial
                has a score (it is told the worst seen).
        """
        if self.direction is None and greater_is_better is not None:
            self.direction = MAXIMIZE if greater_is_better else MINIMIZE
        self.trials.extend(trials)
        if self.direction is None:
            return
        sign = -1.0 if self.direction == MAXIMIZE else 1.0
        seen = [sign * t.score for t in self.trials if t.finished]
        if not seen:
            return
        worst = max(seen)
        fresh = [t for t in self.trials if t.told is None]
        for t in fresh:
            t.told = sign * t.score if t.finished else worst
        if fresh and self._optimizer is not None:
            self._optimizer.tell([t.point for t in fresh], [float(t.told) for t in fresh])

    def resume(self, trials: list[Trial], *, direction: str | None) -> None:
        """Tell back the trials of an interrupted tuning (read from trials.csv).

        The optimizer's random stream is first moved past the points they drew, so the
        resumed search does not draw them again: a resumed ``random`` search, one point at a
        time, asks exactly the points the uninterrupted one would have.
        """
        if self._optimizer is not None:
            for _ in trials:
                self._optimizer.space.rvs(random_state=self._optimizer.rng)
        self.tell(trials, greater_is_better=None if direction is None else direction == MAXIMIZE)

    def best(self) -> Trial | None:
        """The finished trial with the best score (the first on ties), or None."""
        done = [t for t in self.trials if t.finished and t.told is not None]
        return min(done, key=lambda t: t.told) if done else None


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
