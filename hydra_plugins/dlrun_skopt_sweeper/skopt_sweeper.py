"""A Hydra sweeper that searches with scikit-optimize's ask/tell ``Optimizer``.

Written as Hydra's optuna and nevergrad sweepers are: the search space is read from
``hydra.sweeper.params`` and the command line in Hydra's override grammar, and every batch
of points (``tuner.n_jobs``) is launched through the configured launcher, so the joblib
and submitit launchers work unchanged. The loop itself is :func:`dlrun.tuning_sweep.tune`.
Nothing heavy is imported until a sweep starts: Hydra imports every plugin at start-up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class SkoptSweeper(Sweeper):
    def __init__(self, params: DictConfig | None = None) -> None:
        self.params = params
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> Any:
        from dlrun.config import TunerConfig, validate_tuner
        from dlrun.tuning_space import params_specs, read_space
        from dlrun.tuning_sweep import tune

        assert self.config is not None and self.launcher is not None
        node = self.config.get("tuner")
        settings = OmegaConf.to_object(node) if node is not None else TunerConfig()
        if not isinstance(settings, TunerConfig):
            settings = TunerConfig(**settings)
        if settings.name == "none":
            settings.name = "gp"  # hydra/sweeper=skopt chosen by hand, without a tuner preset
        validate_tuner(settings)
        params = OmegaConf.to_container(self.params, resolve=True) if self.params else {}
        space = read_space([*params_specs(params), *arguments])
        log.info("tuner=%s: %d trials over %s", settings.name, settings.n_calls, ", ".join(space.keys))
        return tune(space, settings, folder=Path(self.config.hydra.sweep.dir), launch=self._launch)

    def _launch(self, batch: Sequence[Sequence[str]], first_job: int) -> list:
        from dlrun.tuning_sweep import JobResult

        returns = self.launcher.launch([tuple(o) for o in batch], initial_job_idx=first_job)
        results = []
        for ret in returns:
            try:
                value = float(ret.return_value)
            except Exception as err:  # the job raised: the search goes on without its score
                log.warning("job %s failed: %s", ret.overrides, err)
                value = math.nan
            run_dir = ret.hydra_cfg.hydra.runtime.output_dir if ret.hydra_cfg is not None else None
            results.append(JobResult(value, Path(run_dir) if run_dir else None))
        return results
