"""Claim checks: each study kind states its course's claim and tests it on the numbers.

A check receives the sweep's runs (one row per job) and its group table, may write
plots into ``out_dir``, and returns markdown lines for ``study.md`` that state the claim,
say whether these numbers support it, and show the numbers. Register a new kind in
:data:`CHECKS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dlrun.errors import ConfigError

ClaimCheck = Callable[..., list[str]]


def _generic(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
             out_dir: Path) -> list[str]:
    claim = study.get("claim")
    if not claim:
        return []
    return ["## Claim", "", f"> {claim}", "",
            "This study kind has no automatic check; read the table above against the claim."]


# kind -> the module whose ``check`` tests it. Modules are imported only for the kind a
# study uses: the statistics behind capacity and regularization pull in scipy.stats
# (over a second), which an optimizers sweep never needs.
CHECKS: dict[str, str] = {
    "capacity": "dlrun.report.claims.capacity",
    "regularization": "dlrun.report.claims.regularization",
    "optimizers": "dlrun.report.claims.optimizers",
    "imbalance": "dlrun.report.claims.imbalance",
}


def _check_for(kind: str) -> ClaimCheck:
    if kind == "generic":
        return _generic
    if kind not in CHECKS:
        raise ConfigError(f"study.kind={kind!r} has no claim check; make sure it is registered in "
                          f"dlrun.report.claims (known: {', '.join(sorted({'generic', *CHECKS}))})")
    return importlib.import_module(CHECKS[kind]).check


def check_claim(kind: str, **kwargs: Any) -> list[str]:
    """The markdown lines of ``kind``'s claim check (see the module docstring)."""
    return _check_for(kind)(**kwargs)
