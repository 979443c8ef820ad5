"""The tuning folder's own files, beside the trials' run folders in the sweep folder.

* ``trials.csv``: one row per trial in order: its parameters, score (the validation
  objective in the metric's units), status, training seconds, the value told to the
  optimizer and the run folder. Rewritten (atomically) after every batch, it is what an
  interrupted tuning resumes from.
* ``best_config.yaml``: the best trial's overrides, fixed and searched, with its score and
  the command that reruns it.
* ``convergence.png``: every trial's score and the best so far against the trial number.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from dlrun.errors import ConfigError
from dlrun.report.files import save_figure, write_csv, write_text
from dlrun.tuning import MAXIMIZE, Trial, Tuner
from dlrun.tuning_space import SearchSpace, value_text

TRIALS, BEST, CONVERGENCE = "trials.csv", "best_config.yaml", "convergence.png"
_COLUMNS = ("trial", "score", "status", "seconds", "told", "direction", "run_dir")


def write_trials(folder: Path, tuner: Tuner) -> Path:
    """Write ``trials.csv`` (see the module docstring)."""
    rows = [{"trial": t.number, **{k: value_text(v) for k, v in t.params.items()}, "score": t.score,
             "status": t.status, "seconds": t.seconds, "told": t.told, "direction": tuner.direction or "",
             "run_dir": t.run_dir} for t in tuner.trials]
    frame = pd.DataFrame(rows, columns=["trial", *tuner.space.keys, *_COLUMNS[1:]])
    return write_csv(Path(folder) / TRIALS, frame)


def read_trials(folder: Path, space: SearchSpace) -> tuple[list[Trial], str | None]:
    """The trials recorded in ``folder/trials.csv`` and their direction ([] when there is none).

    Raises:
        ConfigError: the file was written for another search space.
    """
    path = Path(folder) / TRIALS
    if not path.is_file():
        return [], None
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [k for k in space.keys if k not in frame.columns]
    extra = [c for c in frame.columns if c not in space.keys and c not in _COLUMNS]
    if missing or extra:
        raise ConfigError(f"{path} was written for another search space (it has {', '.join(extra) or 'no'} "
                          f"extra and lacks {', '.join(missing) or 'no'} keys); resume with the same space, "
                          "or tune into a new hydra.sweep.dir")
    trials = []
    for row in frame.to_dict("records"):
        point = space.point(row)
        trials.append(Trial(number=int(row["trial"]), point=point, params=space.params(point),
                            score=_float(row["score"]), status=row["status"], seconds=_float(row["seconds"]),
                            run_dir=row["run_dir"]))
    directions = {d for d in frame["direction"] if d}
    return trials, (directions.pop() if len(directions) == 1 else None)


def write_best_config(folder: Path, tuner: Tuner, *, metric: str, command: str = "dlrun",
                      refit: dict[str, Any] | None = None) -> Path | None:
    """Write ``best_config.yaml``: the overrides that reproduce the best trial; None if none finished.

    Args:
        folder: the tuning folder.
        tuner: the tuning's trials.
        metric: the validation metric's name.
        command: the command of the rerun line. Defaults to "dlrun".
        refit: the best trial retrained on train + validation: its run folder and test score.
            Defaults to None (not run yet).
    """
    import yaml

    best = tuner.best()
    if best is None:
        return None
    overrides = tuner.space.overrides(best.point)
    way = "higher" if tuner.direction == MAXIMIZE else "lower"
    data: dict[str, Any] = {
        "trial": best.number,
        "score": best.score,
        "metric": f"validation {metric} ({way} is better)",
        "method": tuner.settings.name,
        "tuner_seed": tuner.settings.seed,
        "trials": len(tuner.trials),
        "run_dir": best.run_dir,
        "overrides": overrides,
    }
    if refit:
        data["refit"] = refit
    # hydra.mode=RUN: one run, even where a preset (tuner=..., an experiment) asks for a sweep
    data["rerun"] = " ".join([command, "hydra.mode=RUN", *(shlex.quote(o) for o in overrides)])
    text = ("# The best trial of this tuning: `rerun` trains it again (same split, same seed, same score).\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000))
    return write_text(Path(folder) / BEST, text)


def best_so_far(scores: list[float], *, maximize: bool) -> list[float]:
    """The running best of ``scores`` (NaN until the first finite one)."""
    out, best = [], math.nan
    for s in scores:
        if math.isfinite(s) and (math.isnan(best) or (s > best if maximize else s < best)):
            best = s
        out.append(best)
    return out


def plot_convergence(folder: Path, tuner: Tuner, *, metric: str) -> Path:
    """``convergence.png``: each trial's score (failed ones marked) and the best so far."""
    from dlrun.report.plots import plt

    trials = sorted(tuner.trials, key=lambda t: t.number)
    x = list(range(1, len(trials) + 1))
    scores = [t.score if t.finished else math.nan for t in trials]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(x, best_so_far(scores, maximize=tuner.direction == MAXIMIZE), color="C0", label="best so far")
    ax.scatter(x, scores, s=14, color="C1", label="trial")
    failed = [i for i, t in zip(x, trials, strict=True) if not t.finished]
    if failed:
        finite = [s for s in scores if math.isfinite(s)]
        floor = min(finite) if finite and tuner.direction == MAXIMIZE else max(finite) if finite else 0.0
        ax.scatter(failed, [floor] * len(failed), marker="x", color="C3", label="failed / diverged")
    if tuner.settings.n_initial_points and tuner.settings.name not in ("random", "grid"):
        ax.axvline(min(tuner.settings.n_initial_points, len(x)) + 0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"tuner={tuner.settings.name}, seed {tuner.settings.seed}: {len(trials)} trials", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(Path(folder) / CONVERGENCE, fig)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
