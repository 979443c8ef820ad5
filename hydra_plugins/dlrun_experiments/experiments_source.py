"""A Hydra config source that serves ``experiments/*.yaml`` as the ``experiment`` group.

The presets live in a top-level ``experiments/`` folder (not ``configs/experiment/``), so
a plain file search path cannot name them as a group. The primary config adds
``dlrun-experiments://experiments`` to its search path; this source answers for that
scheme, finding the folder in a checkout or inside an installed wheel alike.
"""

from __future__ import annotations

import builtins
import os

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

GROUP = "experiment"


class ExperimentsConfigSource(ConfigSource):
    def __init__(self, provider: str, path: str) -> None:
        super().__init__(provider=provider, path=path)
        from dlrun.paths import experiments_dir

        self._root = str(experiments_dir())

    @staticmethod
    def scheme() -> str:
        return "dlrun-experiments"

    def _file(self, config_path: str) -> str | None:
        """The preset file behind ``experiment/<name>``, or None for any other path."""
        head, _, name = config_path.strip("/").partition("/")
        if head != GROUP or not name or "/" in name:
            return None
        return os.path.join(self._root, self._normalize_file_name(name))

    def load_config(self, config_path: str) -> ConfigResult:
        full_path = self._file(config_path)
        if full_path is None or not os.path.isfile(full_path):
            raise ConfigLoadError(f"Experiment preset not found: {config_path}")
        with open(full_path, encoding="utf-8") as f:
            text = f.read()
        return ConfigResult(
            config=OmegaConf.create(text),
            path=f"{self.scheme()}://{self._root}",
            provider=self.provider,
            header=ConfigSource._get_header_dict(text[:512]),
        )

    def available(self) -> bool:
        return os.path.isdir(self._root)

    def is_group(self, config_path: str) -> bool:
        return config_path.strip("/") in ("", GROUP)

    def is_config(self, config_path: str) -> bool:
        full_path = self._file(config_path)
        return full_path is not None and os.path.isfile(full_path)

    def list(self, config_path: str, results_filter: ObjectType | None) -> builtins.list[str]:
        path = config_path.strip("/")
        if path == "":
            return [GROUP] if results_filter in (None, ObjectType.GROUP) else []
        if path != GROUP or results_filter == ObjectType.GROUP:
            return []
        return sorted(
            f[: -len(".yaml")] for f in os.listdir(self._root) if f.endswith(".yaml")
        )
