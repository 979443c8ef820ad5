"""Where the shipped configs and experiment presets live.

From a checkout (or an editable install) they are the top-level ``configs/`` and
``experiments/`` folders; from a built wheel they are copied inside the package as
``dlrun/configs`` and ``dlrun/experiments`` (see ``pyproject.toml``).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _first_existing(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"dlrun's {name}/ folder is missing from {_PACKAGE} and {_PACKAGE.parent}: reinstall dlrun"
    )


def config_dir() -> Path:
    """The folder that holds ``config.yaml`` and one sub-folder per config group."""
    return _first_existing("configs")


def experiments_dir() -> Path:
    """The folder that holds the experiment presets (the ``experiment`` group)."""
    return _first_existing("experiments")
