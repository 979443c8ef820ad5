"""The sweeper's config node, stored as ``hydra/sweeper: skopt``.

Only the search space lives here (``params``, as in Hydra's optuna and nevergrad
sweepers); the search itself is set by dlrun's ``tuner.*`` keys, which the ``tuner``
presets fill in (``configs/tuner/``).
"""

# No `from __future__ import annotations`: Hydra loads plugin modules outside sys.modules,
# where dataclasses cannot resolve string annotations.
from dataclasses import dataclass, field
from typing import Any, Dict, Optional  # noqa: UP035 (OmegaConf reads these annotations)

from hydra.core.config_store import ConfigStore


@dataclass
class SkoptSweeperConf:
    _target_: str = "hydra_plugins.dlrun_skopt_sweeper.skopt_sweeper.SkoptSweeper"
    # key -> spec in Hydra's override grammar, e.g. optimizer.lr: tag(log, interval(1e-4, 1e-1))
    params: Optional[Dict[str, Any]] = field(default_factory=dict)  # noqa: UP006, UP045


ConfigStore.instance().store(group="hydra/sweeper", name="skopt", node=SkoptSweeperConf,
                             provider="dlrun_skopt_sweeper")
