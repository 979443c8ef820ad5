"""Registries: the one list of names for each extension point.

Each extension point (dataset loaders in :mod:`dlrun.data`, model builders in
:mod:`dlrun.models`, optimizers in :mod:`dlrun.optim`, claim checks in
:mod:`dlrun.report.claims`) keeps one :class:`Registry`. Config validation, the code that
builds things and the error messages all read it, so adding an entry is one
``register`` call.

A target may be given as a ``"module:attr"`` string, imported on first :meth:`Registry.get`:
validation and ``dlrun --help`` see every name without importing TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from dlrun.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names mapped to the objects one config key chooses between.

    Args:
        key: the config key whose value is a name here (``"optimizer"``, ``"study.kind"``).
        what: what an entry is, for messages (``"builder"``, ``"loader"``).
        where: the module that owns this registry, named in the "make sure it is
            registered in" hint.
    """

    def __init__(self, key: str, *, what: str, where: str) -> None:
        self.key = key
        self.what = what
        self.where = where
        self._targets: dict[str, T | str] = {}  # as registered
        self._loaded: dict[str, T] = {}  # the objects, once imported

    def register(self, name: str, target: T | str) -> None:
        """Register ``target`` under ``name``.

        Args:
            name: the value of the config key that picks ``target``.
            target: the object, or its ``"module:attr"`` path (imported on first use).

        Raises:
            ValueError: a path without ``:``, or a name already taken by another target.
        """
        if isinstance(target, str) and ":" not in target:
            raise ValueError(f"{self.what} {target!r} for {name!r}: give an object or a 'module:attr' path")
        known = self._targets.get(name, target)
        if known != target:
            raise ValueError(f"{self.key}={name!r} is already registered in {self.where} "
                             f"(to {known!r}); pick another name")
        self._targets[name] = target

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def get(self, name: str) -> T:
        """The object registered under ``name``, importing it if it was given as a path.

        Raises:
            ConfigError: no entry named ``name``; the message lists the known names.
        """
        if name not in self._targets:
            raise ConfigError(f"{self.key}={name!r} has no {self.what}; {self._hint()} "
                              f"(known: {', '.join(self.names())})")
        if name not in self._loaded:
            target = self._targets[name]
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                target = getattr(importlib.import_module(module), attr)
            self._loaded[name] = target
        return self._loaded[name]

    def check(self, name: str) -> None:
        """Validate a config value: raise unless ``name`` is registered (nothing is imported).

        Raises:
            ConfigError: naming the key, the known names and where to register a new one.
        """
        if name not in self._targets:
            raise ConfigError(f"{self.key}={name!r} is not one of: {', '.join(self.names())}; "
                              f"{self._hint()}")

    def _hint(self) -> str:
        return f"make sure it is registered in {self.where}"

    def __repr__(self) -> str:
        return f"Registry({self.key!r}: {', '.join(self.names())})"
