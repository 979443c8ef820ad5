"""The skopt tuner: the space reader, ask/tell with failures, resume, the tuning folder, presets.

Everything here runs without TensorFlow: the tuning loop is fed a cheap objective through
a fake launcher that writes the run records a real job would.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from skopt.space import Categorical, Integer, Real

from dlrun.config import TunerConfig, validate
from dlrun.errors import ConfigError
from dlrun.record import RunRecord, write_record
from dlrun.tuning import MAXIMIZE, MINIMIZE, Trial, Tuner
from dlrun.tuning_folder import best_so_far, read_trials, write_trials
from dlrun.tuning_space import read_space
from dlrun.tuning_sweep import JobResult, tune

# --- the space reader ----------------------------------------------------------------------


@pytest.mark.parametrize("spec, kind, low, high, prior", [
    ("optimizer.lr=tag(log, interval(1e-4, 1e-1))", Real, 1e-4, 1e-1, "log-uniform"),
    ("reg.dropout=interval(0.0, 0.5)", Real, 0.0, 0.5, "uniform"),
    ("model.width=int(interval(5, 512))", Integer, 5, 512, "uniform"),
    ("model.width=tag(log, int(interval(8, 1024)))", Integer, 8, 1024, "log-uniform"),
    ("model.depth=range(1, 4)", Integer, 1, 3, "uniform"),  # Hydra's range stops before 4
    ("model.depth=shuffle(range(1, 4))", Integer, 1, 3, "uniform"),
    ("optimizer.batch_size=tag(log, range(16, 129))", Integer, 16, 128, "log-uniform"),
])
def test_numeric_dimensions(spec, kind, low, high, prior):
    (d,) = read_space([spec]).dimensions
    assert type(d) is kind
    assert (d.low, d.high, d.prior) == (low, high, prior)
    assert d.name == spec.split("=")[0]


@pytest.mark.parametrize("spec, categories", [
    ("model.activation=relu,tanh", ("relu", "tanh")),
    ("model.activation=choice(relu, sigmoid, tanh)", ("relu", "sigmoid", "tanh")),
    ("optimizer=sgd,adam", ("sgd", "adam")),
    ("reg.dropout=range(0, 0.3, 0.1)", ("0.0", "0.1", "0.2")),  # a stepped float range
    ("model.width=range(16, 65, 16)", ("16", "32", "48", "64")),  # a stepped integer range
])
def test_categorical_dimensions(spec, categories):
    (d,) = read_space([spec]).dimensions
    assert isinstance(d, Categorical)
    assert tuple(d.categories) == categories


def test_fixed_overrides_pass_through_and_the_last_spec_of_a_key_wins():
    space = read_space([
        "optimizer.lr=tag(log, interval(1e-4, 1e-1))",  # a preset's params...
        "model.depth=range(1, 4)",
        "dataset=csv", "~seed", "+trainer.tensorboard=true",
        "model.depth=2",  # ...fixed on the command line
        "optimizer.lr=interval(0.01, 0.02)",  # ...or searched differently
    ])
    (lr,) = space.dimensions
    assert (lr.low, lr.high, lr.prior) == (0.01, 0.02, "uniform")
    assert space.fixed == ["dataset=csv", "~seed", "+trainer.tensorboard=true", "model.depth=2"]
    assert space.overrides([0.015]) == [*space.fixed, "optimizer.lr=0.015"]


@pytest.mark.parametrize("spec, says", [
    ("optimizer.lr=tag(log, interval(0, 1))", "positive lower bound"),
    ("optimizer.lr=interval(0.5, 0.1)", "lower bound below"),
    ("model.depth=range(5, 1)", "holds no value"),
    ("model.activation=tag(log, choice(relu, tanh))", "not to a list"),
    ("optimizer.lr=tag(lgo, interval(1e-4, 1e-1))", "unknown tag lgo"),
    ("model.width=interval(1, 2),3", "plain values"),
    ("model.activation=choice(relu)", "two or more values"),
    ("optimizer.lr=interval(1e-4", "cannot read"),
    ("reg.dropout=tag(log, range(0, 0.5, 0.1))", "positive values"),
])
def test_bad_specs_are_refused_in_one_line(spec, says):
    with pytest.raises(ConfigError) as err:
        read_space([spec])
    message = str(err.value)
    assert says in message and "\n" not in message
    assert spec.split("=")[0] in message


def test_a_space_with_nothing_to_search_is_refused():
    with pytest.raises(ConfigError, match="no search space.*tag\\(log"):
        read_space(["dataset=csv", "optimizer.lr=0.01"])


# --- ask / tell -----------------------------------------------------------------------------

SPACE = ["optimizer.lr=tag(log, interval(1e-5, 1e-1))", "model.depth=range(1, 4)", "model.activation=relu,tanh"]


def _accuracy(params: dict) -> float:
    """A cheap objective, best at lr=1e-3, depth 2, relu (higher is better)."""
    return (1.0 - 0.1 * (math.log10(params["optimizer.lr"]) + 3) ** 2 - 0.05 * abs(params["model.depth"] - 2)
            - (0.1 if params["model.activation"] == "tanh" else 0.0))


def _run(tuner: Tuner, objective, *, batch: int = 1, greater_is_better: bool = True) -> Tuner:
    number = 0
    while tuner.remaining:
        points = tuner.ask(batch)
        trials = []
        for p in points:
            params = tuner.space.params(p)
            trials.append(Trial(number, p, params, objective(params)))
            number += 1
        tuner.tell(trials, greater_is_better=greater_is_better)
    return tuner


@pytest.mark.parametrize("method", ["gp", "forest", "gbrt", "random"])
def test_ask_tell_round_trip_finds_a_good_point(method):
    settings = TunerConfig(name=method, n_calls=8, n_initial_points=4, seed=3)
    tuner = _run(Tuner(read_space(SPACE), settings), _accuracy, batch=2)
    assert len(tuner.trials) == 8 and tuner.direction == MAXIMIZE
    # told values are negated scores: skopt minimises
    assert all(t.told == -t.score for t in tuner.trials)
    best = tuner.best()
    assert best.score == max(t.score for t in tuner.trials)
    assert best.score > 0.7  # 8 trials of a smooth 3-D objective whose best is 1


def test_after_its_random_start_the_model_proposes_points_nearer_the_optimum_than_chance():
    def distance(params: dict) -> float:  # decades from the best learning rate
        return abs(math.log10(params["optimizer.lr"]) + 3.3)

    def proposed(method: str, seed: int) -> float:
        settings = TunerConfig(name=method, n_calls=10, n_initial_points=4, seed=seed)
        space = read_space(["optimizer.lr=tag(log, interval(1e-6, 1))"])
        trials = _run(Tuner(space, settings), lambda p: -distance(p) ** 2).trials
        return float(np.mean([distance(t.params) for t in trials[4:]]))

    for seed in range(3):
        assert proposed("gp", seed) < proposed("random", seed)


def test_a_loss_is_told_as_it_is():
    settings = TunerConfig(name="forest", n_calls=5, n_initial_points=3, seed=0)
    tuner = _run(Tuner(read_space(SPACE), settings), lambda p: 1 - _accuracy(p), greater_is_better=False)
    assert tuner.direction == MINIMIZE
    assert all(t.told == t.score for t in tuner.trials)
    assert tuner.best().score == min(t.score for t in tuner.trials)


def test_every_method_draws_the_same_initial_points_at_one_seed():
    firsts = {}
    for method in ("gp", "forest", "gbrt", "random"):
        tuner = Tuner(read_space(SPACE), TunerConfig(name=method, n_calls=4, n_initial_points=4, seed=7))
        firsts[method] = [t.point for t in _run(tuner, _accuracy).trials[:4]]
    assert firsts["gp"] == firsts["forest"] == firsts["gbrt"] == firsts["random"]
    other = Tuner(read_space(SPACE), TunerConfig(name="gp", n_calls=4, n_initial_points=4, seed=8))
    assert [t.point for t in _run(other, _accuracy).trials] != firsts["gp"]


def test_failed_trials_are_told_the_worst_score_seen():
    tuner = Tuner(read_space(SPACE), TunerConfig(name="gp", n_calls=10, n_initial_points=3, seed=0))
    a, b, c = tuner.ask(3)
    space = tuner.space
    # a failure before any score waits: there is no worst value to tell yet
    tuner.tell([Trial(0, a, space.params(a), math.nan, status="failed")], greater_is_better=None)
    assert tuner.trials[0].told is None and tuner._optimizer.Xi == []
    tuner.tell([Trial(1, b, space.params(b), 0.9), Trial(2, c, space.params(c), 0.6)], greater_is_better=True)
    assert [t.told for t in tuner.trials] == [-0.6, -0.9, -0.6]
    assert len(tuner._optimizer.Xi) == 3
    assert tuner.best().number == 1


def test_grid_runs_every_combination_once_and_caps_at_n_calls():
    specs = ["optimizer.lr=tag(log, interval(1e-4, 1e-2))", "model.activation=relu,tanh"]
    tuner = _run(Tuner(read_space(specs), TunerConfig(name="grid", n_calls=100, grid_points=3)), _accuracy_2d)
    points = [tuple(t.point) for t in tuner.trials]
    assert len(points) == 6 == len(set(points))
    assert {round(p[0], 12) for p in points} == {1e-4, 1e-3, 1e-2}
    capped = Tuner(read_space(specs), TunerConfig(name="grid", n_calls=4, grid_points=3))
    assert capped.n_calls == 4 and len(_run(capped, _accuracy_2d).trials) == 4


def _accuracy_2d(params: dict) -> float:
    return 1.0 - abs(math.log10(params["optimizer.lr"]) + 3)


def test_best_so_far_follows_the_direction_and_skips_failures():
    assert best_so_far([0.5, math.nan, 0.7, 0.6], maximize=True) == [0.5, 0.5, 0.7, 0.7]
    assert best_so_far([math.nan, 0.5, 0.7, 0.4], maximize=False)[1:] == [0.5, 0.5, 0.4]


# --- the tuning loop, its folder and resume ---------------------------------------------------


class FakeLaunch:
    """Runs each trial as a cheap objective and writes the run record a real job would."""

    def __init__(self, root: Path, *, fail: tuple[int, ...] = (), status: str = "failed") -> None:
        self.root, self.fail, self.status = root, fail, status
        self.jobs: list[tuple[int, list[str]]] = []

    def __call__(self, batch, first_job):
        results = []
        for i, overrides in enumerate(batch):
            job = first_job + i
            self.jobs.append((job, list(overrides)))
            params = dict(o.split("=", 1) for o in overrides if "=" in o)
            run_dir = self.root / ("refit" if "eval.refit=true" in overrides else str(job))
            if job in self.fail:
                write_record(run_dir, RunRecord(status=self.status, message="boom"))
                results.append(JobResult(math.nan, run_dir))
                continue
            score = _accuracy({"optimizer.lr": float(params["optimizer.lr"]),
                               "model.depth": int(params["model.depth"]),
                               "model.activation": params["model.activation"]})
            write_record(run_dir, RunRecord(status="ok", objective=score, headline="accuracy",
                                            greater_is_better=True, fit_seconds=0.5,
                                            val={"accuracy": score}, test={"accuracy": score - 0.01}))
            results.append(JobResult(score, run_dir))
        return results


def test_tune_writes_the_tuning_folder_and_refits_the_best_trial(tmp_path):
    launch = FakeLaunch(tmp_path, fail=(2,))
    space = read_space([*SPACE, "dataset=csv"])
    tuner = tune(space, TunerConfig(name="gbrt", n_calls=6, n_initial_points=4, n_jobs=2), folder=tmp_path,
                 launch=launch)
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert list(trials["trial"]) == list(range(6))
    assert list(trials.columns[1:4]) == ["optimizer.lr", "model.depth", "model.activation"]
    assert trials.loc[2, "status"] == "failed" and math.isnan(trials.loc[2, "score"])
    assert trials.loc[2, "told"] == trials["told"].max()  # the worst value seen when it was told
    assert (tmp_path / "convergence.png").stat().st_size > 0
    best = yaml.safe_load((tmp_path / "best_config.yaml").read_text())
    assert best["score"] == tuner.best().score == trials["score"].max()
    assert best["overrides"] == space.overrides(tuner.best().point)
    assert best["rerun"].startswith("dlrun hydra.mode=RUN dataset=csv ")
    assert best["refit"]["test_accuracy"] == pytest.approx(best["score"] - 0.01)
    refit_job, refit_overrides = launch.jobs[-1]
    assert refit_job == 6 and "eval.refit=true" in refit_overrides
    assert len(launch.jobs) == 7


def test_an_interrupted_tuning_resumes_from_trials_csv(tmp_path):
    space = read_space(SPACE)
    settings = TunerConfig(name="gp", n_calls=6, n_initial_points=3, refit=False)
    first = FakeLaunch(tmp_path)
    tune(space, TunerConfig(name="gp", n_calls=4, n_initial_points=3, refit=False), folder=tmp_path, launch=first)
    done = pd.read_csv(tmp_path / "trials.csv")
    assert len(done) == 4

    again = FakeLaunch(tmp_path)
    tuner = tune(space, settings, folder=tmp_path, launch=again)
    assert [job for job, _ in again.jobs] == [4, 5]  # only the rest are asked, numbered on
    assert len(tuner.trials) == 6
    assert tuner._optimizer.Xi[:4] == [space.point(r) for r in done.astype(str).to_dict("records")]
    resumed, direction = read_trials(tmp_path, space)
    assert [t.number for t in resumed] == list(range(6)) and direction == MAXIMIZE
    assert len({tuple(t.point) for t in resumed}) == 6


def test_a_resumed_random_search_asks_what_the_uninterrupted_one_would_have(tmp_path):
    space = read_space(SPACE)
    whole = tune(space, TunerConfig(name="random", n_calls=6, refit=False), folder=tmp_path / "whole",
                 launch=FakeLaunch(tmp_path / "whole"))
    tune(space, TunerConfig(name="random", n_calls=3, refit=False), folder=tmp_path / "cut",
         launch=FakeLaunch(tmp_path / "cut"))
    resumed = tune(space, TunerConfig(name="random", n_calls=6, refit=False), folder=tmp_path / "cut",
                   launch=FakeLaunch(tmp_path / "cut"))
    assert [t.point for t in resumed.trials] == [t.point for t in whole.trials]


def test_trials_csv_of_another_space_is_refused(tmp_path):
    tuner = _run(Tuner(read_space(SPACE), TunerConfig(name="random", n_calls=2)), _accuracy)
    write_trials(tmp_path, tuner)
    with pytest.raises(ConfigError, match="another search space"):
        read_trials(tmp_path, read_space(["optimizer.lr=tag(log, interval(1e-5, 1e-1))"]))


def test_a_tuning_whose_first_trials_all_fail_stops_with_their_error(tmp_path):
    launch = FakeLaunch(tmp_path, fail=tuple(range(10)))
    with pytest.raises(ConfigError, match="first 3 trials all failed.*boom"):
        tune(read_space(SPACE), TunerConfig(name="gp", n_calls=10), folder=tmp_path, launch=launch)
    assert len(launch.jobs) == 3


def test_diverged_trials_do_not_stop_the_tuning(tmp_path):
    launch = FakeLaunch(tmp_path, fail=(0, 1, 2, 3), status="diverged")
    tuner = tune(read_space(SPACE), TunerConfig(name="random", n_calls=6, refit=False),
                 folder=tmp_path, launch=launch)
    assert [t.status for t in tuner.trials][:4] == ["diverged"] * 4
    assert tuner.best().number in (4, 5)


# --- config: the tuner group, its keys and the sweeper -------------------------------------


@pytest.mark.parametrize("method", ["gp", "forest", "gbrt", "random", "grid"])
def test_every_tuner_preset_selects_the_skopt_sweeper(cfg_factory, method):
    cfg = cfg_factory([f"tuner={method}"], return_hydra_config=True)
    assert cfg.tuner.name == method
    assert cfg.hydra.sweeper._target_.endswith("SkoptSweeper")
    assert cfg.hydra.mode.name == "MULTIRUN"
    validate(cfg)


def test_the_tuning_course_preset_composes_with_the_tutorial_space(cfg_factory):
    cfg = cfg_factory(["experiment=tuning", "tuner=random", "tuner.seed=2"], return_hydra_config=True)
    assert (cfg.tuner.name, cfg.tuner.seed, cfg.dataset.name, cfg.study.kind) == ("random", 2, "mnist_5k", "tuning")
    space = read_space([f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()])
    lr, depth, width, activation = space.dimensions
    assert (lr.low, lr.high, lr.prior) == (1e-6, 1e-2, "log-uniform")
    assert (depth.low, depth.high, width.low, width.high) == (1, 5, 5, 512)
    assert tuple(activation.categories) == ("relu", "sigmoid")
    validate(cfg)


@pytest.mark.parametrize("override, says", [
    ("tuner.n_calls=0", "tuner.n_calls"),
    ("tuner.n_jobs=0", "tuner.n_jobs"),
    ("tuner.acq_func=XI", "tuner.acq_func"),
    ("tuner.name=bayes", "tuner="),
    ("tuner.acq_optimizer=lbfgs", "needs tuner=gp"),
])
def test_bad_tuner_settings_are_refused(cfg_factory, override, says):
    with pytest.raises(ConfigError, match=says):
        validate(cfg_factory(["tuner=forest", override]))


def test_the_refit_trains_for_tuner_refit_epochs_when_given(tmp_path):
    launch = FakeLaunch(tmp_path)
    space = read_space([*SPACE, "trainer.epochs=5"])
    tune(space, TunerConfig(name="random", n_calls=3, refit_epochs=20), folder=tmp_path, launch=launch)
    trial_overrides, refit_overrides = launch.jobs[0][1], launch.jobs[-1][1]
    assert "trainer.epochs=5" in trial_overrides and "trainer.epochs=20" not in trial_overrides
    assert refit_overrides[-1] == "trainer.epochs=20"  # last: it wins over the trials' value
    assert yaml.safe_load((tmp_path / "best_config.yaml").read_text())["refit"]["epochs"] == 20
