"""A search space read from Hydra's override grammar, as scikit-optimize dimensions.

The tuner reads the same sweep syntax as Hydra's optuna and nevergrad sweepers, from the
command line or from ``hydra.sweeper.params``:

==========================================  ============================================
``key=tag(log, interval(1e-4, 1e-1))``       ``Real(1e-4, 1e-1, prior="log-uniform")``
``key=interval(0.0, 0.5)``                   ``Real(0.0, 0.5)`` (uniform)
``key=int(interval(5, 512))``                ``Integer(5, 512)``, both ends included
``key=tag(log, int(interval(8, 1024)))``     ``Integer(8, 1024, prior="log-uniform")``
``key=range(1, 4)``                          ``Integer(1, 3)``: Hydra's range stops before 4
``key=range(0, 1, 0.25)``, ``range(0, 9, 2)``  ``Categorical`` of its values (skopt has no steps)
``key=relu,tanh`` or ``key=choice(a, b)``     ``Categorical(["relu", "tanh"])``
``key=value``, ``~key``, ``+key=value``       fixed: passed to every trial unchanged
==========================================  ============================================

A key given twice keeps its last spec, so the command line overrides a preset's params
(and ``key=value`` there fixes a key the preset searches). Every mistake is refused in one
line that names the override and says what to write instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.errors import HydraException
from skopt.space import Categorical, Dimension, Integer, Real

from dlrun.errors import ConfigError

LOG = "log"
KNOWN_TAGS = (LOG,)
EXAMPLE = "'optimizer.lr=tag(log, interval(1e-4, 1e-1))'"


@dataclass(frozen=True)
class SearchSpace:
    """What the tuner searches and what every trial shares.

    Attributes:
        dimensions: one skopt dimension per searched key (its ``name`` is the key).
        fixed: the other overrides, as written (passed to every trial).
    """

    dimensions: list[Dimension]
    fixed: list[str]

    @property
    def keys(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def overrides(self, point: Sequence[Any]) -> list[str]:
        """A trial's overrides: the fixed ones, then ``key=value`` for each dimension."""
        return [*self.fixed, *(f"{d.name}={value_text(v)}" for d, v in zip(self.dimensions, point, strict=True))]

    def params(self, point: Sequence[Any]) -> dict[str, Any]:
        """``{key: value}`` of a point, values as plain Python numbers and strings."""
        return {d.name: plain(v) for d, v in zip(self.dimensions, point, strict=True)}

    def point(self, params: Mapping[str, Any]) -> list[Any]:
        """The point of ``params`` (read back from trials.csv), each value typed by its dimension.

        Raises:
            ConfigError: a value outside its dimension.
        """
        point = []
        for d in self.dimensions:
            raw = params[d.name]
            value = str(raw) if isinstance(d, Categorical) else int(raw) if isinstance(d, Integer) else float(raw)
            if value not in d:
                raise ConfigError(f"{d.name}={raw} lies outside the search space ({describe(d)})")
            point.append(value)
        return point


def plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds; anything else unchanged."""
    return value.item() if hasattr(value, "item") else value


def value_text(value: Any) -> str:
    """The override text of a value: ints as ints, floats in full precision, strings as given."""
    value = plain(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def describe(d: Dimension) -> str:
    """``Real(0.0001, 0.1, log)``: a dimension in a few words, for logs and messages."""
    if isinstance(d, Categorical):
        return "one of " + ", ".join(map(str, d.categories))
    kind = "Integer" if isinstance(d, Integer) else "Real"
    scale = ", log" if d.prior == "log-uniform" else ""
    return f"{kind}({d.low}, {d.high}{scale})"


def read_space(specs: Iterable[str]) -> SearchSpace:
    """Read overrides (params first, then the command line) into a :class:`SearchSpace`.

    Args:
        specs: override strings in Hydra's grammar.

    Raises:
        ConfigError: an override that cannot be searched, or no searched key at all.
    """
    parser = OverridesParser.create()
    searched: dict[str, Dimension] = {}
    fixed: dict[str, str] = {}
    for spec in specs:
        try:
            (override,) = parser.parse_overrides([spec])
        except HydraException as err:
            raise ConfigError(f"cannot read the search space entry {spec!r}: {_first_line(err)}") from None
        key = override.get_key_element()
        searched.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            searched[key] = dimension(override)
        else:
            fixed[key] = spec
    if not searched:
        raise ConfigError(f"the tuner has no search space: give at least one key to search, e.g. {EXAMPLE} "
                          "or model.activation=relu,tanh (on the command line or in hydra.sweeper.params)")
    return SearchSpace(dimensions=list(searched.values()), fixed=list(fixed.values()))


def params_specs(params: Mapping[str, Any] | None) -> list[str]:
    """``hydra.sweeper.params`` as override strings (``{"a": "1,2"}`` -> ``["a=1,2"]``)."""
    return [f"{key}={value}" for key, value in (params or {}).items()]


def dimension(override: Override) -> Dimension:
    """The skopt dimension of one sweep override (see the module docstring's table).

    Raises:
        ConfigError: naming the override and what to write instead.
    """
    key = override.get_key_element()
    value = override.value()
    text = override.input_line or key
    tags = set(getattr(value, "tags", set()))
    unknown = tags - set(KNOWN_TAGS)
    if unknown:
        raise ConfigError(f"{text}: unknown tag {', '.join(sorted(unknown))}; the tuner knows "
                          f"tag(log, ...) for a log scale")
    log = LOG in tags
    if isinstance(value, IntervalSweep):
        return _interval(key, value, log=log, text=text)
    if isinstance(value, RangeSweep):
        return _range(key, override, value, log=log, text=text)
    if isinstance(value, ChoiceSweep):
        return _choice(key, override, value, log=log, text=text)
    raise ConfigError(f"{text}: the tuner cannot search this sweep; use interval(...), range(...), "
                      "choice(...) or a,b lists")


def _interval(key: str, value: IntervalSweep, *, log: bool, text: str) -> Dimension:
    low, high = value.start, value.end
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError(f"{text}: an interval needs a lower bound below its upper bound, got {low} and {high}")
    if log and low <= 0:
        raise ConfigError(f"{text}: a log scale needs a positive lower bound, got {low}; "
                          "drop tag(log, ...) or raise the bound")
    prior = "log-uniform" if log else "uniform"
    if isinstance(low, int) and isinstance(high, int):
        return Integer(low, high, prior=prior, name=key)
    return Real(float(low), float(high), prior=prior, name=key)


def _range(key: str, override: Override, value: RangeSweep, *, log: bool, text: str) -> Dimension:
    values = _values(override)
    if not values:
        raise ConfigError(f"{text}: this range holds no value (Hydra's range(a, b) stops before b)")
    numbers = [int(v) if isinstance(value.start, int) and isinstance(value.step, int) else float(v)
               for v in values]
    if log and min(numbers) <= 0:
        raise ConfigError(f"{text}: a log scale needs positive values, got {min(numbers)}")
    if isinstance(numbers[0], int) and abs(value.step) == 1:
        return Integer(min(numbers), max(numbers), prior="log-uniform" if log else "uniform", name=key)
    if log:
        raise ConfigError(f"{text}: tag(log, ...) applies to intervals and step-1 integer ranges; "
                          "use tag(log, interval(a, b)) for a log-scaled real")
    return _categorical(key, values, text=text)


def _choice(key: str, override: Override, value: ChoiceSweep, *, log: bool, text: str) -> Dimension:
    if log:
        raise ConfigError(f"{text}: tag(log, ...) applies to intervals and ranges, not to a list of choices")
    nested = [v for v in value.list if not isinstance(v, (str, int, float, bool, type(None)))]
    if nested:
        raise ConfigError(f"{text}: a choice lists plain values; {nested[0]} inside it cannot be searched")
    return _categorical(key, _values(override), text=text)


def _categorical(key: str, values: list[str], *, text: str) -> Dimension:
    unique = list(dict.fromkeys(values))
    if len(unique) < 2:
        raise ConfigError(f"{text}: a search needs two or more values; give {key}=VALUE to fix it instead")
    return Categorical(unique, name=key)


def _values(override: Override) -> list[str]:
    """The sweep's values as override text (Hydra's own encoding, quoting included)."""
    return [str(v) for v in override.sweep_iterator(transformer=Transformer.encode)]


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__
