"""Seeds side by side (``trainer.parallel_seeds=true``): the jobs of a sweep that differ only
in ``seed`` train in one process, as one stacked network.

The joblib launcher (:mod:`hydra_plugins.dlrun_launchers.resilient_joblib`) sends such a
group of jobs to one worker, which calls :func:`run_group`. Each seed is prepared as
:func:`dlrun.run.run_job` prepares a job (its own config, run folder and lock, data split,
prepare stage, model built from its own seed), then every seed trains at once
(:func:`dlrun.stages.train_seeds`), and each seed's run folder is written by Hydra's own
``run_job`` (``.hydra/``, job number, callbacks) with the report stage a lone job runs: the
same files and ``metrics.json`` contract, numbers equal to a lone run's bit for bit.

A group falls back to one job per seed, with one log line saying why, when what it
asks cannot be stacked: several folds, a training plan of several phases (transfer),
``trainer.loop=fit``, images streamed from disk, a layer other than dense, activation,
dropout or flatten, mixed precision, a learning rate that changes per seed (plateau
schedule), per-variable gradient clipping, a resume (a group is not resumed as a group:
each seed resumes alone, from its own checkpoint), or seeds whose data differ in size.
A seed that fails while being prepared fails alone; the others train on.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


@dataclass
class _Seed:
    """One job of the group: its Hydra config, and what its stages produced so far."""

    idx: int
    overrides: list[str]
    config: DictConfig  # the job's whole config, ``hydra`` node included
    run_dir: Path
    cfg: Any = None  # dlrun.config.Config
    error: BaseException | None = None
    state: dict[str, Any] = field(default_factory=dict)


def _compose(idx: int, overrides: Sequence[str], hydra_context, config: DictConfig,
             like: _Seed | None = None) -> _Seed:
    """The job's config as hydra-joblib-launcher composes it (job number, output folder);
    ``like``: a composed job of the group, whose config this one's is but for the seed."""
    from hydra.core.hydra_config import HydraConfig

    job = _reseeded(like.config, overrides) if like is not None else None
    if job is None:
        job = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(job):
        job.hydra.job.id = f"{job.hydra.job.name}_{idx}"
        job.hydra.job.num = idx
    HydraConfig.instance().set_config(job)
    run_dir = Path(str(job.hydra.sweep.dir)) / str(job.hydra.sweep.subdir)
    with read_write(job.hydra.runtime), open_dict(job.hydra.runtime):
        job.hydra.runtime.output_dir = str(run_dir.absolute())
    return _Seed(idx, list(overrides), job, run_dir)


def _reseeded(config: DictConfig, overrides: Sequence[str]) -> DictConfig | None:
    """``config`` (a composed job of the group) as Hydra would compose it for ``overrides``,
    which differ from its own only in ``seed=...`` (composing costs about half a second a
    job); None when the seed is not given as a plain ``seed=value``."""
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    seeds = [o for o in parsed if o.key_or_group == "seed"]
    if len(seeds) != 1 or seeds[0].type != OverrideType.CHANGE or seeds[0].package is not None \
            or seeds[0].is_sweep_override():
        return None
    task = [o for o in parsed if not o.is_hydra_override()]
    job = copy.deepcopy(config)
    OmegaConf.set_readonly(job.hydra, False)  # as composed (HydraConfig marked the original's)
    OmegaConf.update(job, "seed", seeds[0].value(), merge=True)
    job.hydra.overrides.task = [o.input_line for o in task]
    dirname = job.hydra.job.config.override_dirname
    job.hydra.job.override_dirname = get_overrides_dirname(
        overrides=task, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)
    return job


def _task_config(seed: _Seed) -> DictConfig:
    task = copy.deepcopy(seed.config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def config_obstacle(cfg) -> str | None:
    """Why a job with this (typed) config cannot train beside its other seeds; None if it can."""
    t = cfg.trainer
    reasons = [
        (t.resume, "trainer.resume=true (a group is not resumed as a group: each seed resumes alone)"),
        (cfg.eval.name != "holdout", f"eval={cfg.eval.name} trains several folds"),
        (t.loop == "fit", "trainer.loop=fit"),
        (t.mixed_precision, "trainer.mixed_precision=true (one loss scale would serve every seed)"),
        (t.reduce_lr_on_plateau, "trainer.reduce_lr_on_plateau=true (each seed's learning rate would change alone)"),
        (cfg.optimizer.clipnorm, "optimizer.clipnorm (a norm over every seed's gradient)"),
    ]
    return next((why for found, why in reasons if found), None)


def _fold_obstacle(seeds: list[_Seed]) -> str | None:
    """Why these prepared seeds cannot train stacked; None if they can."""
    import keras

    from dlrun.data.image_store import is_lazy
    from dlrun.train import stacking_obstacle

    first = seeds[0].state
    phases = first["phases"]
    if len(phases) != 1 or phases[0].trainable is not None or phases[0].fit_on is not None:
        return f"a capability plans the training as {len(phases)} phase(s) with their own layers or data"
    if is_lazy(first["splits"].train.x):
        return "images are streamed from disk"
    why = stacking_obstacle(first["model"])
    if why:
        return f"the model cannot be stacked: {why}"
    shapes = {(s.state["splits"].train.x.shape, s.state["splits"].val.x.shape) for s in seeds}
    if len(shapes) > 1:
        return "the seeds' training or validation parts differ in size"
    callbacks = [cb for cap in first["capabilities"] for cb in cap.callbacks(first["ctx"])]
    moving = [type(cb).__name__ for cb in callbacks
              if isinstance(cb, keras.callbacks.ReduceLROnPlateau | keras.callbacks.LearningRateScheduler)]
    if moving:
        return f"{moving[0]} changes each seed's learning rate alone"
    return None


def _prepare(seed: _Seed, hydra_context, locks: contextlib.ExitStack) -> None:
    """What :func:`dlrun.run.run_job` does before training, for one seed, in its order (so
    its random draws, and so its initial weights, are a lone job's)."""
    from hydra.core.hydra_config import HydraConfig

    from dlrun import runtime, stages
    from dlrun.capabilities import FoldContext, capabilities_for
    from dlrun.config import validate
    from dlrun.data.split import make_splits
    from dlrun.launch import fit_job_to_launcher
    from dlrun.lock import run_folder_lock
    from dlrun.report.live import LiveHistory
    from dlrun.run import _check_outputs, _load, _split_plan
    from dlrun.task import task_spec

    HydraConfig.instance().set_config(seed.config)
    task = _task_config(seed)
    validate(task)
    fit_job_to_launcher(task)
    cfg = seed.cfg = OmegaConf.to_object(task)
    seed.run_dir.mkdir(parents=True, exist_ok=True)
    locks.enter_context(run_folder_lock(seed.run_dir))
    _check_outputs(seed.run_dir)
    table = _load(cfg)
    runtime.import_tensorflow()
    device = runtime.setup(cfg.trainer, seed=cfg.seed)
    capabilities = capabilities_for(cfg)
    ((train, val, test),) = _split_plan(cfg, table)
    ctx = FoldContext(cfg=cfg, run_dir=seed.run_dir, fold=0, folds=1)
    splits = make_splits(table, train, val, test, scaling=cfg.dataset.scaling)
    spec = ctx.spec = task_spec(table.task, splits.n_classes, splits.train.y, headline=cfg.task.headline,
                                threshold=cfg.task.threshold)
    splits = stages.prepare(splits, capabilities, ctx)
    model = stages.build(splits, spec, capabilities, ctx)
    phases = stages.plan_phases(capabilities, ctx)
    seed.state.update(table=table.name, device=device, capabilities=capabilities, ctx=ctx, splits=splits,
                      spec=spec, model=model, phases=phases,
                      live=LiveHistory(seed.run_dir / "history.csv", folds=1))


def _train(seeds: list[_Seed]) -> None:
    """Every prepared seed at once; each gets its ``fit``."""
    from dlrun import stages
    from dlrun.progress import epoch_progress
    from dlrun.run import config_fingerprint

    spec, phase = seeds[0].state["spec"], seeds[0].state["phases"][0]
    with contextlib.ExitStack() as bars:
        members = []
        for seed in seeds:
            st = seed.state
            label = f"job {seed.idx} · {st['table']}"
            hook = bars.enter_context(epoch_progress(seed.cfg.trainer.progress, phase.epochs, spec, label=label))
            members.append(stages.SeedFold(
                model=st["model"], splits=st["splits"], capabilities=st["capabilities"], ctx=st["ctx"],
                fingerprint=config_fingerprint(seed.cfg), on_epoch=hook,
                live=lambda history, live=st["live"]: live.update(0, history),
            ))
        for seed, fit in zip(seeds, stages.train_seeds(members, spec, phase), strict=True):
            seed.state["fit"] = fit


def _report(seed: _Seed) -> float:
    """predict → post-process → evaluate → report, as a lone job ends; returns its objective."""
    from dlrun import runtime, stages
    from dlrun.report.run_folder import write_run_folder
    from dlrun.stages import FoldOutcome

    if seed.error is not None:
        raise seed.error
    st = seed.state
    model, splits, spec, caps, ctx = st["model"], st["splits"], st["spec"], st["capabilities"], st["ctx"]
    predictions = stages.predict_parts(model, splits)
    labels = stages.post_process(predictions, splits, spec, caps, ctx)
    outcome = FoldOutcome(fold=0, splits=splits, model=model, fit=st["fit"], predictions=predictions,
                          labels=labels, metrics={}, baseline={}, params=model.count_params())
    outcome = stages.evaluate(outcome, spec, caps, ctx)
    record = write_run_folder(seed.run_dir, cfg=seed.cfg, spec=spec, outcomes=[outcome], capabilities=caps,
                              device=st["device"], versions=runtime.versions(), overrides=seed.overrides,
                              dataset_name=st["table"])
    return math.nan if record.objective is None else record.objective


def run_group(jobs: Sequence[tuple[int, Sequence[str]]], hydra_context, config: DictConfig, task_function,
              singleton_state: dict) -> list[tuple[int, Any]]:
    """Run the jobs of one configuration that differ only in ``seed``: together when they can
    be stacked, else one after another. Called in a joblib worker.

    Returns:
        ``(job number, JobReturn)`` for every job, in the order given.
    """
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    setup_globals()
    Singleton.set_state(singleton_state)
    from dlrun.cli import one_line

    try:
        seeds: list[_Seed] = []
        for idx, overrides in jobs:
            seeds.append(_compose(idx, overrides, hydra_context, config, like=seeds[0] if seeds else None))
        _log_to(seeds[0])  # the group's own lines (set-up, training) go to its first job's run.log
        why = _group_obstacle(seeds)
        if why is None:
            returns, why = _together(seeds, hydra_context, task_function)
            if returns is not None:
                return returns
    except Exception as err:  # the group's own machinery: its jobs still run, one by one
        why = f"the group could not run ({one_line(err)})"
    log.info("jobs %s run one by one: %s", ", ".join(f"#{idx}" for idx, _ in jobs), why)
    from hydra_plugins.hydra_joblib_launcher import _core

    return [(idx, _core.execute_job(idx, overrides, hydra_context, config, task_function, singleton_state))
            for idx, overrides in jobs]


def _together(seeds: list[_Seed], hydra_context, task_function) -> tuple[list | None, str | None]:
    """Prepare, train and report the seeds as one group: ``(returns, None)``, or ``(None, why)``
    when they must run one by one instead (nothing of theirs written but partial histories,
    which a lone job rewrites)."""
    from dlrun import runtime
    from dlrun.cli import one_line

    interrupts = runtime.Interrupts()
    with contextlib.ExitStack() as locks:
        for seed in seeds:
            try:
                _prepare(seed, hydra_context, locks)
            except Exception as err:  # this seed fails alone: its own job records why
                seed.error = err
        ready = [s for s in seeds if s.error is None]
        why = _fold_obstacle(ready) if ready else None
        if why is not None:
            return None, why
        log.info("jobs %s: seeds %s train together (trainer.parallel_seeds)",
                 ", ".join(f"#{s.idx}" for s in seeds), ", ".join(str(s.cfg.seed) for s in ready))
        try:
            if ready:
                _train(ready)
        except Exception as err:  # e.g. out of memory for the stack: each seed gets its own try
            return None, f"training them together failed ({one_line(err)})"
        returns = []
        with interrupts.held():  # every seed's folder is written before an interrupt stops us
            for seed in seeds:
                returns.append((seed.idx, _finish(seed, hydra_context, task_function)))
    if interrupts.requested or any(s.state["fit"].status == "interrupted" for s in ready):
        raise KeyboardInterrupt
    return returns, None


def _finish(seed: _Seed, hydra_context, task_function):
    """The job as Hydra runs it (``.hydra/``, its log, callbacks, the ``dlrun`` task function's
    bookkeeping and failure handling), with :func:`dlrun.run.run_job` writing the run folder
    of the seed's finished training instead of training it."""
    from hydra.core.utils import run_job

    from dlrun.run import TRAINED

    key = seed.run_dir.absolute()
    TRAINED[key] = lambda: _report(seed)
    try:
        return run_job(hydra_context=hydra_context, config=seed.config, task_function=task_function,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    finally:
        TRAINED.pop(key, None)


def _log_to(seed: _Seed) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import configure_log

    HydraConfig.instance().set_config(seed.config)
    seed.run_dir.mkdir(parents=True, exist_ok=True)
    configure_log(seed.config.hydra.job_logging, seed.config.hydra.verbose)


def _group_obstacle(seeds: list[_Seed]) -> str | None:
    """Why these jobs cannot train together, judged from the first one's config (the launcher
    grouped jobs whose overrides differ only in ``seed``); None if they can."""
    from hydra.core.hydra_config import HydraConfig

    from dlrun.config import validate

    if len(seeds) < 2:
        return "a single seed"
    HydraConfig.instance().set_config(seeds[0].config)
    task = _task_config(seeds[0])
    try:
        validate(task)
        cfg = OmegaConf.to_object(task)
    except Exception:  # each job reports its own bad config, alone
        return "the config is refused"
    return config_obstacle(cfg)
