"""One traced epoch graph for many runs in a process (issue 17).

The fast loop's epoch is a ``tf.function`` over the model's variables. Tracing it is the
fixed cost of every run: about 0.25 s of a course-3 job's 0.45 s of training. A sweep's
worker runs job after job whose networks differ only in values (initial weights, learning
rate), and each traced its own copy of the same graph.

:func:`lease` keeps, per process, a private *host* network for each graph: a clone of the
first model of that architecture, compiled with a copy of its optimizer, with its traced
:class:`dlrun.train._EpochRunner`. A later run of the same graph copies its model's
variables (weights, batch-norm statistics, random-seed states) and its optimizer's (step
count, learning rate, moments) into the host, trains the host, and copies everything back
into its own model and optimizer, even when interrupted. Callbacks see the host while it
trains. The numbers are the ones the run's own graph would give, bit for bit: the same
operations on the same values (``tests/test_warm_graph.py``).

Two runs share a graph when everything traced into it is equal: the architecture (layer
configs, names and seeds aside), the variables' shapes, the optimizer's settings (a plain
learning rate aside, which is a variable), the task (loss, threshold), the batch size and
the number of training rows. Networks of custom layers, mixed precision and networks over
:data:`MAX_PARAMS` parameters (a host doubles their memory) train on their own graph as
before. ``DLRUN_FRESH_GRAPH=1`` turns the sharing off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras

log = logging.getLogger(__name__)

# Hosts kept per process, the least recently used dropped first.
KEEP = 4
# Above this many parameters a network trains on its own graph: its host would double its memory.
MAX_PARAMS = 2_000_000
OFF = "DLRUN_FRESH_GRAPH"
# Built-in layers whose graph is not fully described by their config.
_OPAQUE = {"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"}


@dataclass
class _Host:
    model: keras.Model
    runner: Any


_HOSTS: OrderedDict[str, _Host] = OrderedDict()
_REFUSED: set[str] = set()  # graphs whose host could not be made: not tried again


def _normalized(value: Any, names: dict[str, str]) -> Any:
    """A model config without what does not reach the graph: names (layers' names become
    their positions, so wiring still counts) and seeds (their states are variables)."""
    if isinstance(value, dict):
        return {k: _normalized(v, names) for k, v in value.items() if k not in ("name", "seed")}
    if isinstance(value, list | tuple):
        return [_normalized(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


def graph_key(model: keras.Model, spec: Any, *, batch_size: int, n_train: int) -> str | None:
    """What the traced epoch of ``model`` (compiled) depends on, beside variable values;
    None when it cannot be shared."""
    if os.environ.get(OFF, "") not in ("", "0"):
        return None
    optimizer = model.optimizer
    if optimizer is None or isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None
    if type(model).__name__ not in ("Sequential", "Functional"):
        return None  # a subclassed model's call is not in its config
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    if any(not type(layer).__module__.startswith("keras.src.") or type(layer).__name__ in _OPAQUE
           or layer.dtype_policy.name != "float32" for layer in layers):
        return None
    if model.count_params() > MAX_PARAMS:
        return None
    names = {layer.name: f"#{i}" for i, layer in enumerate([model, *layers])}
    settings = {k: v for k, v in optimizer.get_config().items() if k != "name"}
    if isinstance(settings.get("learning_rate"), int | float):
        settings.pop("learning_rate")  # a variable, copied with the optimizer's state
    try:
        return json.dumps({
            "model": [type(model).__name__, _normalized(model.get_config(), names)],
            "variables": [[list(v.shape), str(v.dtype)] for v in model.variables],
            "optimizer": [type(optimizer).__name__, settings],
            "task": repr(spec), "batch_size": int(batch_size), "n_train": int(n_train),
        }, sort_keys=True, default=repr)
    except (TypeError, ValueError):  # a config that does not serialize: no sharing
        return None


def _pairs(src: keras.Model, dst: keras.Model) -> list[tuple[Any, Any]] | None:
    """Each variable of ``src`` (model, then optimizer) with its counterpart in ``dst``;
    None unless they match one to one in shape and type."""
    if (len(src.variables), len(src.optimizer.variables)) != (len(dst.variables), len(dst.optimizer.variables)):
        return None
    pairs = [*zip(src.variables, dst.variables, strict=True),
             *zip(src.optimizer.variables, dst.optimizer.variables, strict=True)]
    if any(tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype for a, b in pairs):
        return None
    return pairs


def _copy(pairs: list[tuple[Any, Any]], *, back: bool = False) -> None:
    for a, b in pairs:
        (a if back else b).assign((b if back else a).value)


def _host(model: keras.Model, loss: Callable, make_runner: Callable[[keras.Model], Any]) -> _Host:
    """A private clone of ``model``, compiled with a copy of its optimizer, and its runner."""
    clone = type(model).from_config(model.get_config())  # the architecture, not the compile settings
    optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
    clone.compile(optimizer=optimizer, loss=loss)
    return _Host(clone, make_runner(clone))


@contextlib.contextmanager
def lease(model: keras.Model, spec: Any, *, batch_size: int, n_train: int, loss: Callable,
          make_runner: Callable[[keras.Model], Any]) -> Iterator[tuple[keras.Model, Any]]:
    """``(network, runner)`` to train ``model`` (compiled with its optimizer) with: a host
    holding ``model``'s state whose graph is traced already when an earlier run had the same
    one, else ``model`` itself and a new runner. On the way out the host's state goes back
    into ``model`` and its optimizer."""
    key = graph_key(model, spec, batch_size=batch_size, n_train=n_train)
    if key in _REFUSED:
        key = None
    host = _HOSTS.pop(key, None) if key is not None else None
    if key is not None and host is None:
        try:
            host = _host(model, loss, make_runner)
        except Exception as err:  # a clone Keras cannot make: this run traces its own graph
            log.debug("no shared epoch graph (%s: %s)", type(err).__name__, err)
            _REFUSED.add(key)
    if host is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # as the runner builds it
    pairs = _pairs(model, host.model) if host is not None else None
    if host is not None and pairs is None:
        log.debug("no shared epoch graph: the clone's variables differ from the model's")
        _REFUSED.add(key)
    if pairs is None:
        yield model, make_runner(model)
        return
    _copy(pairs)
    host.model.stop_training = False
    try:
        yield host.model, host.runner
    finally:
        _copy(pairs, back=True)
        _HOSTS[key] = host
        while len(_HOSTS) > KEEP:
            _HOSTS.popitem(last=False)


def forget() -> None:
    """Drop every host (tests; a process that trains nothing more)."""
    _HOSTS.clear()
    _REFUSED.clear()
