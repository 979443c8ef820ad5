"""One traced epoch graph for many runs in a process (dlrun.warm_graph, issue 17): a run on a
shared graph gives its own graph's numbers, bit for bit, and runs that differ in what the
graph holds do not share it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dlrun import warm_graph
from dlrun.models.mlp import build_mlp
from dlrun.task import task_spec
from dlrun.train import train
from tests.test_train import make_splits


@pytest.fixture(autouse=True)
def _no_hosts(monkeypatch):
    monkeypatch.delenv(warm_graph.OFF, raising=False)
    warm_graph.forget()
    yield
    warm_graph.forget()


def _run(splits, *, seed, lr, fresh, monkeypatch, optimizer=keras.optimizers.Adam, epochs=4, callbacks=(),
         **model_args):
    """Train one network as a sweep job would; its history, weights and optimizer state."""
    if fresh:
        monkeypatch.setenv(warm_graph.OFF, "1")
    else:
        monkeypatch.delenv(warm_graph.OFF, raising=False)
    spec = task_spec(splits.task, splits.n_classes, splits.train.y)
    keras.utils.set_random_seed(seed)
    model = build_mlp(splits.input_shape, spec, width=16, depth=2, **model_args)
    opt = optimizer(lr)
    fit = train(model, splits, spec, optimizer=opt, epochs=epochs, batch_size=32, callbacks=list(callbacks),
                seed=seed)
    return fit, [v.numpy() for v in model.variables], [v.numpy() for v in opt.variables]


def _same(a, b):
    fit_a, weights_a, opt_a = a
    fit_b, weights_b, opt_b = b
    assert fit_a.status == fit_b.status
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in fit_a.history] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in fit_b.history]
    for x, y in zip(weights_a + opt_a, weights_b + opt_b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("model_args", [{}, {"dropout": 0.3, "batch_norm": True, "l2": 1e-3}],
                         ids=["plain", "dropout-batchnorm-l2"])
def test_a_run_on_a_shared_graph_gives_its_own_graphs_numbers_bit_for_bit(monkeypatch, model_args):
    splits = make_splits()
    alone = _run(splits, seed=3, lr=3e-3, fresh=True, monkeypatch=monkeypatch, **model_args)
    _run(splits, seed=0, lr=1e-2, fresh=False, monkeypatch=monkeypatch, **model_args)  # traces the host
    assert len(warm_graph._HOSTS) == 1
    runner = next(iter(warm_graph._HOSTS.values())).runner
    shared = _run(splits, seed=3, lr=3e-3, fresh=False, monkeypatch=monkeypatch, **model_args)
    _same(alone, shared)
    assert runner.run.experimental_get_tracing_count() == 1  # the second run traced nothing


def test_early_stopping_and_a_lowered_rate_act_on_the_shared_graph_and_come_back(monkeypatch):
    splits = make_splits(noise=2.0)

    def callbacks():
        return [keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True),
                keras.callbacks.ReduceLROnPlateau(patience=1, factor=0.5)]

    alone = _run(splits, seed=1, lr=5e-2, fresh=True, monkeypatch=monkeypatch, epochs=30, callbacks=callbacks())
    _run(splits, seed=0, lr=5e-2, fresh=False, monkeypatch=monkeypatch, epochs=2)
    shared = _run(splits, seed=1, lr=5e-2, fresh=False, monkeypatch=monkeypatch, epochs=30, callbacks=callbacks())
    assert alone[0].stopped_early and len({r["lr"] for r in alone[0].history}) > 1  # both callbacks acted
    _same(alone, shared)


def test_runs_that_differ_in_the_graph_do_not_share_it(monkeypatch):
    splits = make_splits()
    _run(splits, seed=0, lr=1e-2, fresh=False, monkeypatch=monkeypatch)
    _run(splits, seed=0, lr=1e-2, fresh=False, monkeypatch=monkeypatch, l2=1e-3)  # a penalty in the loss
    _run(splits, seed=0, lr=1e-2, fresh=False, monkeypatch=monkeypatch, optimizer=keras.optimizers.SGD)
    _run(splits, seed=0, lr=1e-2, fresh=False, monkeypatch=monkeypatch, dropout=0.5)
    assert len(warm_graph._HOSTS) == 4
    sgd = _run(splits, seed=2, lr=1e-1, fresh=False, monkeypatch=monkeypatch, optimizer=keras.optimizers.SGD)
    assert len(warm_graph._HOSTS) == 4  # the SGD graph again
    _same(_run(splits, seed=2, lr=1e-1, fresh=True, monkeypatch=monkeypatch, optimizer=keras.optimizers.SGD), sgd)


def test_the_switch_and_mixed_precision_keep_a_runs_own_graph(monkeypatch):
    splits = make_splits()
    _run(splits, seed=0, lr=1e-2, fresh=True, monkeypatch=monkeypatch)
    assert not warm_graph._HOSTS
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        _run(splits, seed=0, lr=1e-2, fresh=False, monkeypatch=monkeypatch)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert not warm_graph._HOSTS


def test_graph_keys_ignore_names_and_seeds_but_not_wiring():
    splits = make_splits()
    spec = task_spec(splits.task, splits.n_classes, splits.train.y)

    def key(**model_args):
        model = build_mlp(splits.input_shape, spec, width=16, depth=2, **model_args)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        return warm_graph.graph_key(model, spec, batch_size=32, n_train=len(splits.train.y))

    keras.utils.set_random_seed(0)
    first = key()
    keras.utils.set_random_seed(1)
    assert key() == first  # other layer names (dense_3, ...), other initial values
    assert key(activation="tanh") != first
    assert key(dropout=0.2) != key(dropout=0.3)


def test_reseeding_reproduces_keras_randomness_and_the_fit_loops_shuffling(monkeypatch):
    """dlrun seeds each job without emptying TensorFlow's kernel cache (where the shared graph
    lives); every random number a run draws must still restart with the seed."""
    from dlrun.runtime import set_random_seed

    splits = make_splits()
    spec = task_spec(splits.task, splits.n_classes, splits.train.y)

    def draws():
        set_random_seed(7)
        model = build_mlp(splits.input_shape, spec, width=8, depth=1, dropout=0.5)
        noise = keras.ops.convert_to_numpy(keras.random.uniform((4,)))
        dropped = keras.ops.convert_to_numpy(keras.layers.Dropout(0.5)(np.ones((2, 8), "float32"), training=True))
        fit = train(model, splits, spec, optimizer=keras.optimizers.Adam(1e-2), epochs=2, batch_size=32,
                    callbacks=[], loop="fit", seed=7)
        return [v.numpy() for v in model.variables], noise, dropped, [r["loss"] for r in fit.history]

    first, again = draws(), draws()
    for a, b in zip(first[0], again[0], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(first[2], again[2])
    assert first[3] == again[3]


def test_a_graph_whose_host_does_not_match_trains_on_its_own_and_is_not_tried_again(monkeypatch):
    splits = make_splits()
    alone = _run(splits, seed=4, lr=1e-2, fresh=True, monkeypatch=monkeypatch)
    clones = []
    real = warm_graph._host
    monkeypatch.setattr(warm_graph, "_host", lambda *a: clones.append(1) or real(*a))
    monkeypatch.setattr(warm_graph, "_pairs", lambda src, dst: None)  # as if the clone's variables differed
    first = _run(splits, seed=4, lr=1e-2, fresh=False, monkeypatch=monkeypatch)
    _run(splits, seed=5, lr=1e-2, fresh=False, monkeypatch=monkeypatch)
    _same(alone, first)
    assert not warm_graph._HOSTS and len(warm_graph._REFUSED) == 1
    assert len(clones) == 1  # the second run did not clone again
