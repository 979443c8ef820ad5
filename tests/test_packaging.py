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


def _imported_top_level_modules() -> set[str]:
    import ast

    found: set[str] = set()
    for path in [*(ROOT / "dlrun").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"dlrun", "hydra_plugins", "__future__"}


def test_every_imported_package_is_declared():
    import re
    from importlib.metadata import packages_distributions

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # Core imports must be dependencies; a feature's extra (mlflow, tensorboard) counts for
    # the modules that import it only inside that feature.
    declared = {re.split(r"[<>=\[ ;]", req)[0].lower().replace("_", "-")
                for req in [*meta["dependencies"], *(r for reqs in meta["optional-dependencies"].values() for r in reqs)]}
    declared |= {"tensorflow"}  # tensorflow-cpu and tensorflow[and-cuda] both provide it
    distributions = packages_distributions()
    missing = {}
    for module in sorted(_imported_top_level_modules()):
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & declared and module not in declared:
            missing[module] = sorted(names)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_python_dash_m_dlrun_works_like_the_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dlrun", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dlrun: evaluate and improve a neural network" in done.stdout


_WITHOUT_TENSORFLOW = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
sys.argv = ["dlrun", *sys.argv[1:]]
from dlrun.cli import main
main()
"""


def test_without_tensorflow_a_run_says_which_extra_to_install(tmp_path):
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW, "trainer.epochs=1", "trainer.progress=none"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dlrun: error: tensorflow is not installed; install dlrun with a TensorFlow extra: "
        "pip install 'dlrun[cpu]' (or 'dlrun[gpu]' on a CUDA machine)"]
