"""Claim checks: each study kind states its course's claim and tests it on the numbers.

A check receives the sweep's runs (one row per job) and its group table, may write
plots into ``out_dir``, and returns markdown lines for ``study.md`` that state the claim,
say whether these numbers support it, and show the numbers. Register a new kind in
:data:`CHECKS`.
"""

from __future__ import annotations

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


def _registry() -> dict[str, ClaimCheck]:
    checks: dict[str, ClaimCheck] = {"generic": _generic}
    try:
        from dlrun.report.claims import capacity, regularization

        checks["capacity"] = capacity.check
        checks["regularization"] = regularization.check
    except ImportError:
        pass
    try:
        from dlrun.report.claims import optimizers

        checks["optimizers"] = optimizers.check
    except ImportError:
        pass
    return checks


def check_claim(kind: str, **kwargs: Any) -> list[str]:
    checks = _registry()
    if kind not in checks:
        raise ConfigError(f"study.kind={kind!r} has no claim check; make sure it is registered in "
                          f"dlrun.report.claims (known: {', '.join(sorted(checks))})")
    return checks[kind](**kwargs)
