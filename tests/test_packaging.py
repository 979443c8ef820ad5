"""The configs and experiment presets are found from a checkout and from a wheel's layout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_maps_configs_and_experiments_into_the_package():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = meta["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert include == {"configs": "dlrun/configs", "experiments": "dlrun/experiments"}
    assert "hydra_plugins" in meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]


def test_installed_layout_finds_configs_and_presets(tmp_path):
    """Lay the package out as the wheel does and ask dlrun --help from elsewhere."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "dlrun", site / "dlrun", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", site / "dlrun" / "configs")
    shutil.copytree(ROOT / "experiments", site / "dlrun" / "experiments")
    shutil.copytree(ROOT / "hydra_plugins", site / "hydra_plugins")
    code = ("import sys, dlrun.paths as p; print('CONFIGS', p.config_dir()); "
            "sys.argv = ['dlrun', '--help']; from dlrun.cli import main; main()")
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"CONFIGS {site / 'dlrun' / 'configs'}" in result.stdout
    presets = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("experiment:"))
    assert [s.strip() for s in line.split(":", 1)[1].split(",")] == presets


def test_search_path_plugin_only_touches_dlrun_apps(tmp_path):
    from hydra._internal.config_search_path_impl import ConfigSearchPathImpl

    from dlrun.paths import config_dir
    from hydra_plugins.dlrun_experiments.experiments_searchpath import (
        ENTRY,
        DlrunExperimentsSearchPath,
    )

    other = ConfigSearchPathImpl()
    other.append("main", f"file://{tmp_path}")
    DlrunExperimentsSearchPath().manipulate_search_path(other)
    assert ENTRY not in [e.path for e in other.get_path()]

    ours = ConfigSearchPathImpl()
    ours.append("main", f"file://{config_dir()}")
    DlrunExperimentsSearchPath().manipulate_search_path(ours)
    DlrunExperimentsSearchPath().manipulate_search_path(ours)
    assert [e.path for e in ours.get_path()].count(ENTRY) == 1
