"""Claim checks: each study kind states its course's claim and tests it on the numbers.

A check receives the sweep's runs (one row per job) and its group table, may write
plots into ``out_dir``, and returns markdown lines for ``study.md`` that state the claim,
say whether these numbers support it, and show the numbers. Register a new kind in
:data:`CHECKS`; ``study.kind`` is validated against it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlrun.registry import Registry

if TYPE_CHECKING:  # config validation reads CHECKS: keep this module light
    import pandas as pd

ClaimCheck = Callable[..., list[str]]


def _generic(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
             out_dir: Path) -> list[str]:
    claim = study.get("claim")
    if not claim:
        return []
    return ["## Claim", "", f"> {claim}", "",
            "This study kind has no automatic check; read the table above against the claim."]


# Modules are imported only for the kind a study uses: a claim check and the statistics
# behind it (scipy.stats, over a second to import) load only when a study asks for them.
CHECKS: Registry[ClaimCheck] = Registry("study.kind", what="claim check", where="dlrun.report.claims")
CHECKS.register("generic", _generic)
CHECKS.register("capacity", "dlrun.report.claims.capacity:check")
CHECKS.register("regularization", "dlrun.report.claims.regularization:check")
CHECKS.register("optimizers", "dlrun.report.claims.optimizers:check")
CHECKS.register("imbalance", "dlrun.report.claims.imbalance:check")
CHECKS.register("tuning", "dlrun.report.claims.tuning:check")
CHECKS.register("transfer", "dlrun.report.claims.transfer:check")
CHECKS.register("fairness", "dlrun.report.claims.fairness:check")


def check_claim(kind: str, **kwargs: Any) -> list[str]:
    """The markdown lines of ``kind``'s claim check (see the module docstring)."""
    return CHECKS.get(kind)(**kwargs)
