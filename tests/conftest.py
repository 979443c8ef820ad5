"""Shared fixtures: compose the real config, shrink it, point outputs at tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import dlrun.config  # noqa: F401  (registers the schemas)
from dlrun.paths import config_dir

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A run small enough for tests: few epochs, plain progress.
TINY = ["trainer.epochs=2", "trainer.progress=none"]


def compose_config(overrides: list[str] | None = None, *, return_hydra_config: bool = False):
    """Compose the real primary config with overrides (no Hydra app, no TensorFlow)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides or [], return_hydra_config=return_hydra_config)


@pytest.fixture
def cfg_factory():
    return compose_config


def run_cli(args: list[str], *, cwd: Path, timeout: float = 300, env: dict | None = None,
            command: str = "dlrun.cli") -> subprocess.CompletedProcess:
    """Run ``dlrun`` (``python -m``) in ``cwd``; outputs land under ``cwd/outputs``."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CI": "1", **(env or {})}
    code = f"import sys; from {command} import main; sys.argv[0] = 'dlrun'; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=full_env, capture_output=True,
        text=True, timeout=timeout,
    )


@pytest.fixture
def dlrun_cli(tmp_path):
    """Call as ``dlrun_cli([...overrides])``; runs in a fresh tmp folder."""

    def call(args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return run_cli(args, cwd=kwargs.pop("cwd", tmp_path), **kwargs)

    return call
