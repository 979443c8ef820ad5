"""Puts the experiment presets on dlrun's search path before Hydra builds its repository.

The primary config already lists ``dlrun-experiments://experiments`` in ``hydra.searchpath``,
which is enough to compose ``experiment=...``; but Hydra builds ``--help``'s group list
before it reads that entry. This plugin adds the same entry early, and only for dlrun's own
primary config, so other Hydra apps in the environment are untouched.
"""

from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

ENTRY = "dlrun-experiments://experiments"


class DlrunExperimentsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from dlrun.paths import config_dir

        ours = os.path.realpath(config_dir())
        paths = [e.path for e in search_path.get_path()]
        is_dlrun = any(os.path.realpath(p.split("://", 1)[-1]) == ours for p in paths if p)
        if is_dlrun and ENTRY not in paths:
            search_path.append(provider="dlrun", path=ENTRY)
