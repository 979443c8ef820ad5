"""model=transfer: what trains in each mode and phase, the ImageNet path offline, a resume in
the middle of fine-tuning, the user's own image folder, and course 5 end to end on a tiny target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from dlrun.errors import ConfigError
from tests.conftest import compose_config

keras = pytest.importorskip("keras")

# The tiny source CNN below: conv_0 3*3*1*4+4 = 40 weights, conv_1 3*3*4*8+8 = 296; its
# convolutional base ends in a Flatten of 7*7*8 = 392 features; a 5-class head on them
# has 392*5+5 = 1965.
CONV_0, CONV_1, HEAD = 40, 296, 1965


def _spec(classes: int = 5):
    from dlrun.task import task_spec

    return task_spec("multiclass", classes, np.arange(classes))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A saved dlrun CNN on 28x28 grey digits (untrained: what transfers is the wiring)."""
    from dlrun.models.cnn import build_cnn

    model = build_cnn((784,), _spec(), image_shape=(28, 28, 1), filters=4, blocks=2, width=8)
    path = tmp_path_factory.mktemp("source") / "model.keras"
    model.save(path)
    return path


def _plan(overrides: list[str]):
    """The config, the Transfer capability and its phases for ``overrides``."""
    from dlrun.stages import plan_phases
    from dlrun.transfer import Transfer

    cfg = OmegaConf.to_object(compose_config(["dataset=mnist_digits", "model=transfer", *overrides]))
    capability = Transfer(cfg)
    phases = plan_phases([capability], type("Ctx", (), {"cfg": cfg})())
    return cfg, capability, phases


def _build(cfg, image_shape=(28, 28, 1)):
    from dlrun.models import build_model

    return build_model(cfg.model, cfg.reg, input_shape=(int(np.prod(image_shape)),), spec=_spec(),
                       image_shape=image_shape)


def _trainable_per_phase(overrides: list[str]) -> tuple[dict[str, int], list, object]:
    cfg, capability, phases = _plan(overrides)
    model = _build(cfg)
    for phase in phases:
        phase.trainable(model)
    return capability.trainable, phases, model


def test_each_mode_trains_its_own_part_of_a_saved_cnn(source):
    base = [f"model.backbone={source}", "trainer.epochs=10"]
    counts, _, _ = _trainable_per_phase([*base, "model.mode=feature_extraction"])
    assert counts == {"train": HEAD}
    counts, _, _ = _trainable_per_phase([*base, "model.mode=fine_tune", "model.unfreeze=1"])
    assert counts == {"head": HEAD, "fine_tune": HEAD + CONV_1}
    counts, _, _ = _trainable_per_phase([*base, "model.mode=fine_tune", "model.unfreeze=2"])
    assert counts == {"head": HEAD, "fine_tune": HEAD + CONV_1 + CONV_0}
    counts, _, scratch = _trainable_per_phase([*base, "model.mode=scratch"])
    assert counts == {"train": HEAD + CONV_1 + CONV_0}
    trained = keras.saving.load_model(source).get_layer("conv_1").get_weights()[0]
    assert not np.allclose(scratch.get_layer("backbone").get_layer("conv_1").get_weights()[0], trained)
    pretrained = _build(_plan([*base, "model.mode=feature_extraction"])[0])
    assert np.array_equal(pretrained.get_layer("backbone").get_layer("conv_1").get_weights()[0], trained)


def test_fine_tuning_trains_the_head_first_then_the_top_layers_at_a_lower_rate(source):
    _, _, phases = _plan([f"model.backbone={source}", "model.mode=fine_tune", "trainer.epochs=10",
                          "optimizer.lr=0.01"])
    assert [(p.name, p.epochs) for p in phases] == [("head", 5), ("fine_tune", 5)]
    assert phases[1].optimizer.lr < phases[0].optimizer.lr == 0.01
    _, _, phases = _plan([f"model.backbone={source}", "model.mode=fine_tune", "trainer.epochs=10",
                          "model.fine_tune_epochs=3", "model.fine_tune_lr=0.0005"])
    assert [(p.name, p.epochs, p.optimizer.lr) for p in phases] == [("head", 7, 0.001), ("fine_tune", 3, 0.0005)]


def test_an_application_backbone_gets_three_channels_its_size_and_frozen_batch_norm():
    counts, _, model = _trainable_per_phase(["model.backbone=mobilenet_v2", "model.weights=none",
                                             "model.mode=fine_tune", "model.unfreeze=2", "trainer.epochs=4"])
    names = [layer.name for layer in model.layers]
    assert names[:5] == ["features", "image", "rgb", "resize", "preprocess"]  # grey 28x28 -> RGB 32x32
    assert model.get_layer("backbone").input_shape[1:] == (32, 32, 3)
    base = model.get_layer("backbone")
    assert counts["head"] == 1280 * 5 + 5
    # the top two layers with weights besides batch norm: Conv_1 (320->1280) and block_16_project (960->320)
    assert counts["fine_tune"] == counts["head"] + 320 * 1280 + 960 * 320
    assert not any(layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization))
    pixels = np.random.default_rng(0).random((2, 784), dtype=np.float32)
    preprocessed = keras.Model(model.input, model.get_layer("preprocess").output)(pixels)
    assert float(np.min(preprocessed)) >= -1.0 and float(np.max(preprocessed)) <= 1.0  # MobileNetV2's [-1, 1]


def test_imagenet_weights_offline_fail_in_one_line_naming_the_file_and_keras_cache(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    from dlrun.models.transfer import APPLICATIONS, application_base

    asked = []

    def offline(fname, origin=None, **kwargs):
        asked.append(fname)
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "get_file", offline)  # never download in a test
    with pytest.raises(ConfigError) as err:
        application_base("mobilenet_v2", weights="imagenet", size=32)
    message = str(err.value)
    assert asked == [APPLICATIONS["mobilenet_v2"].weights_name(32)]  # Keras's own loader was reached
    assert asked[0] in message and str(tmp_path / "keras" / "models") in message
    assert "\n" not in message


def test_a_saved_backbone_refuses_imagenet_weights_and_an_unknown_backbone_is_named(source, tmp_path):
    cfg, _, _ = _plan([f"model.backbone={source}", "model.weights=imagenet"])
    with pytest.raises(ConfigError, match="a saved backbone brings its own weights"):
        _build(cfg)
    cfg, _, _ = _plan(["model.backbone=alexnet"])
    with pytest.raises(ConfigError, match="neither a keras.applications name"):
        _build(cfg)


# --- runs -------------------------------------------------------------------------------------


class _StopAfter:
    """A capability factory whose callback stops the run (as Ctrl-C would) after an epoch."""

    def __init__(self, epoch: int | None):
        self.epoch = epoch

    def __call__(self, cfg):
        from dlrun.capabilities import Capability

        epoch = self.epoch

        class Stop(keras.callbacks.Callback):
            def on_epoch_end(self, e, logs=None):
                if epoch is not None and e + 1 == epoch:
                    raise KeyboardInterrupt

        return type("StopAfter", (Capability,), {"callbacks": lambda self, ctx: [Stop()]})()


def _fine_tune_run(tmp_path, monkeypatch, source, name: str, *, stop_after=None, resume=False) -> dict:
    from dlrun import capabilities
    from dlrun.run import run_job

    monkeypatch.setitem(capabilities._REGISTRY, "stop_after", _StopAfter(stop_after))
    cfg = compose_config(["dataset=mnist_digits", "dataset.classes=[5,6,7,8,9]", "dataset.per_class=10",
                          "model=transfer", f"model.backbone={source}", "model.mode=fine_tune",
                          "trainer.epochs=4", "model.fine_tune_epochs=2", "trainer.checkpoint_every=1", "trainer.checkpoint_seconds=0",
                          "trainer.progress=none", "diagnosis.reference=none", "optimizer.lr=0.01",
                          f"trainer.resume={str(resume).lower()}"])
    OmegaConf.set_struct(cfg, False)
    run_job(cfg, tmp_path / name)
    return json.loads((tmp_path / name / "metrics.json").read_text())


@pytest.mark.slow
def test_a_fine_tune_resumed_in_phase_two_equals_an_uninterrupted_one(tmp_path, monkeypatch, source):
    full = _fine_tune_run(tmp_path, monkeypatch, source, "full")
    history = pd.read_csv(tmp_path / "full" / "history.csv")
    assert list(history["phase"]) == ["head"] * 2 + ["fine_tune"] * 2
    assert history["lr"].iloc[2] == pytest.approx(history["lr"].iloc[0] / 10)
    assert full["transfer"]["trainable_params"] == {"head": HEAD, "fine_tune": HEAD + CONV_1 + CONV_0}

    with pytest.raises(KeyboardInterrupt):
        _fine_tune_run(tmp_path, monkeypatch, source, "cut", stop_after=3)  # in phase two
    resumed = _fine_tune_run(tmp_path, monkeypatch, source, "cut", resume=True)
    assert resumed["phases"] == full["phases"] and resumed["transfer"] == full["transfer"]
    for split in ("train", "val", "test"):
        assert resumed[split] == full[split]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cut" / "history.csv").drop(columns="seconds"),
                                  history.drop(columns="seconds"))


@pytest.mark.slow
def test_a_users_image_folder_learns_on_a_saved_runs_backbone(tmp_path, source):
    """The user's own case: target images in class folders (other digits, 32x32 grey PNGs),
    augmented (the augmentation wraps the transfer model; the backbone stays frozen)."""
    from PIL import Image

    from dlrun.data.mnist import load_mnist_5k
    from dlrun.run import run_job

    digits = load_mnist_5k(None)
    for d in (5, 6, 7):
        (tmp_path / "target" / f"d{d}").mkdir(parents=True)
        for i, row in enumerate(np.flatnonzero(digits.y == d)[:12]):
            pixels = (digits.x[row].reshape(28, 28) * 255).astype(np.uint8)
            Image.fromarray(pixels).resize((32, 32)).save(tmp_path / "target" / f"d{d}" / f"{i}.png")
    cfg = compose_config(["dataset=image_folder", f"dataset.path={tmp_path / 'target'}", "model=transfer",
                          f"model.backbone={source}", "model.mode=feature_extraction", "trainer.epochs=3",
                          "augment=basic",
                          "trainer.progress=none", "diagnosis.reference=none"])
    run_job(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "ok"
    assert record["transfer"]["trainable_params"] == {"train": 392 * 3 + 3}  # the head alone, 3 classes
    assert list(record["classification"]["per_class"]) == ["d5", "d6", "d7"]


@pytest.mark.slow
def test_course5_end_to_end_on_a_tiny_target(tmp_path, dlrun_cli):
    """The preset, shrunk: the source trained once (cached), two sizes, scratch and feature
    extraction (fine-tuning's two phases are run by the resume test), two seeds."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    source = ["dataset=mnist_digits", "dataset.classes=[0,1,2,3,4]", "dataset.per_class=10", "model=cnn",
              "model.filters=4", "trainer.epochs=1", "diagnosis.reference=none", "seed=0"]
    args = ["experiment=transfer", "model.source=[" + ",".join(f"'{o}'" for o in source) + "]",
            "trainer.epochs=2", "dataset.per_class=5,10", "seed=0,1", "model.mode=scratch,feature_extraction",
            "hydra/launcher=basic", "hydra.sweep.dir=sweep"]
    done = dlrun_cli(args, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "sweep" / "study.md").read_text()
    assert "### 1. Pretrained beats scratch when data is scarce" in text
    assert "### 2. The gap closes as data grows" in text
    verdict = next(line for line in text.splitlines() if line.startswith("**Verdict: "))
    assert verdict.split(":")[1].split("**")[0].strip() in ("supported", "not supported", "inconclusive")
    assert "| 5 | feature_extraction | 2 |" in text and "| 10 | scratch | 2 |" in text
    (cached,) = (tmp_path / "cache" / "dlrun" / "sources").glob("source-*/model.keras")
    assert f"its run folder `{cached.parent}`" in text
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(runs) == 8 and all(json.loads(r.read_text())["status"] == "ok" for r in runs)


def test_a_frozen_backbone_computes_its_features_once_unless_augmentation_changes_the_images(source):
    from dlrun.data.table import Part, Splits
    from dlrun.transfer import head_on_features

    base = [f"model.backbone={source}", "trainer.epochs=4"]
    _, _, phases = _plan([*base, "model.mode=fine_tune"])
    assert phases[0].fit_on is head_on_features and phases[1].fit_on is None  # phase 2 trains the backbone
    assert _plan([*base, "augment=basic"])[2][0].fit_on is None
    cfg, _, (phase,) = _plan([*base, "model.mode=feature_extraction"])
    model = _build(cfg)
    phase.trainable(model)
    rng = np.random.default_rng(0)
    part = lambda n: Part(rng.random((n, 784), dtype=np.float32), rng.integers(0, 5, n))  # noqa: E731
    splits = Splits(part(6), part(4), part(3), "multiclass", list("abcde"), [], image_shape=(28, 28, 1))
    head, features = head_on_features(model, splits)
    assert features.train.x.shape == (6, 392) and features.test is splits.test
    np.testing.assert_allclose(head(features.val.x), model(splits.val.x), atol=1e-5)
    assert [w.name for w in head.trainable_weights] == [w.name for w in model.trainable_weights]
