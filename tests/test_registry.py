"""Registries: one list of names per extension point, read by validation and ``--help``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dlrun.config import validate
from dlrun.data import DATASETS
from dlrun.errors import ConfigError
from dlrun.models import MODELS
from dlrun.optim import OPTIMIZERS
from dlrun.registry import Registry
from dlrun.report.claims import CHECKS
from tests.conftest import compose_config

SHIPPED = {"dataset": DATASETS, "model": MODELS, "optimizer": OPTIMIZERS, "claim": CHECKS}


@pytest.fixture
def scratch(monkeypatch):
    """Register into a shipped registry for one test only."""

    def make(registry: Registry) -> Registry:
        monkeypatch.setattr(registry, "_targets", dict(registry._targets))
        monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
        return registry

    return make


def _colours() -> Registry:
    colours: Registry = Registry("paint.colour", what="pigment", where="tests.paint")
    colours.register("red", "os.path:join")
    colours.register("blue", len)
    return colours


def test_unknown_names_fail_naming_the_known_ones_and_where_to_register():
    with pytest.raises(ConfigError, match=r"^paint.colour='green' has no pigment; make sure it is registered "
                                          r"in tests.paint \(known: red, blue\)$"):
        _colours().get("green")
    with pytest.raises(ConfigError, match=r"^paint.colour='green' is not one of: red, blue; make sure it "
                                          r"is registered in tests.paint$"):
        _colours().check("green")


def test_a_path_is_imported_on_first_get_and_names_are_known_before():
    import os.path

    colours = _colours()
    colours.register("ghost", "dlrun.no_such_module:thing")
    colours.check("ghost")  # validation imports nothing
    assert colours.names() == ("red", "blue", "ghost") and "ghost" in colours
    assert colours.get("red") is os.path.join and colours.get("blue") is len
    with pytest.raises(ModuleNotFoundError):
        colours.get("ghost")


def test_a_name_cannot_be_taken_twice_and_a_target_is_an_object_or_a_path():
    colours = _colours()
    colours.register("blue", len)  # the same target again: nothing changes
    with pytest.raises(ValueError, match="'blue' is already registered in tests.paint"):
        colours.register("blue", "builtins:len")
    with pytest.raises(ValueError, match="'module:attr' path"):
        colours.register("green", "os.path.join")
    assert colours.names() == ("red", "blue")


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, r in SHIPPED.items() for n in r.names()])
def test_every_shipped_name_resolves_to_a_function(kind, name):
    assert callable(SHIPPED[kind].get(name))


@pytest.mark.parametrize(
    ("override", "registry", "message"),
    [
        ("optimizer.name=lion", OPTIMIZERS, "optimizer='lion' is not one of: sgd, momentum"),
        ("model.name=tiny", MODELS, "model='tiny' is not one of: logreg, mlp, cnn"),
        ("study.kind=astrology", CHECKS, "study.kind='astrology' is not one of: generic, capacity"),
        ("dataset.name=iris", DATASETS, "dataset.name='iris' is not one of: breast_cancer"),
    ],
)
def test_validation_accepts_exactly_the_registered_names(scratch, override, registry, message):
    cfg = compose_config([override])
    with pytest.raises(ConfigError, match=f"{message}.*; make sure it is registered in {registry.where}"):
        validate(cfg)
    scratch(registry).register(override.split("=")[1], "dlrun.no_such_module:thing")
    validate(cfg)


def _cli(code: str, *args: str, cwd) -> subprocess.CompletedProcess:
    """Run ``code`` (which registers something), then ``dlrun args`` in a fresh interpreter."""
    main = f"import sys; sys.argv = ['dlrun', *{list(args)!r}]; from dlrun.cli import main; main()"
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code) + "\n" + main], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


_TINY = """
import dlrun.models
dlrun.models.register_model("tiny", "dlrun.models.mlp:from_config", width=4, depth=1)
"""


def test_a_registered_model_is_listed_by_help_and_composes_without_a_yaml_file(tmp_path):
    helped = _cli(_TINY, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "model: cnn, logreg, mlp, tiny, transfer\n" in helped.stdout

    job = _cli(_TINY, "model=tiny", "trainer.epochs=1", "--cfg", "job", cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    model = job.stdout.split("\nmodel:\n", 1)[1]
    assert "  name: tiny\n  width: 4\n  depth: 1\n" in model
    assert "\n  epochs: 1\n" in job.stdout


def test_register_model_refuses_a_field_the_schema_lacks(scratch):
    from dlrun.models import register_model

    scratch(MODELS)
    with pytest.raises(TypeError, match="widht"):
        register_model("tiny", "dlrun.models.mlp:from_config", widht=4)
    assert "tiny" not in MODELS
