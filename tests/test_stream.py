"""Image folders streamed from disk (``dataset.stream``): same pixels, same batches, bounded memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY, compose_config


def _digits_folder(root: Path, *, per_class: int = 12, classes: int = 3, size: int = 10) -> Path:
    """Grey PNGs whose class is the row where a bright bar sits, plus noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size)).astype(np.uint8)
            img[2 + 3 * c : 4 + 3 * c, :] = 250
            Image.fromarray(img).save(root / f"c{c}" / f"{i}.png")
    return root


def _load(root: Path, cache: Path, stream: str, **kw):
    from dlrun.config import DatasetConfig
    from dlrun.data import load_table

    return load_table(DatasetConfig(name="image_folder", path=str(root), image_size=8, scaling="none",
                                    stream=stream, cache_dir=str(cache), **kw))


def test_streamed_rows_hold_exactly_the_in_memory_pixels_and_stay_unread_when_taken(tmp_path):
    from dlrun.data.image_store import ImageRows

    root = _digits_folder(tmp_path / "digits")
    memory = _load(root, tmp_path / "cache", "false")
    streamed = _load(root, tmp_path / "cache", "true")
    assert isinstance(streamed.x, ImageRows) and isinstance(memory.x, np.ndarray)
    assert streamed.x.shape == memory.x.shape == (36, 64)
    np.testing.assert_array_equal(np.asarray(streamed.x), memory.x)
    np.testing.assert_array_equal(streamed.y, memory.y)
    rows = np.array([30, 2, 2, 17])  # out of order, with a repeat
    taken = streamed.take(rows)
    assert isinstance(taken.x, ImageRows) and taken.x.rows.tolist() == rows.tolist()
    np.testing.assert_array_equal(taken.x[np.arange(4)], memory.x[rows])
    np.testing.assert_array_equal(taken.x[1:3], memory.x[rows[1:3]])
    assert taken.y.tolist() == memory.y[rows].tolist()
    assert streamed.notes["images"] == {"streamed": True, "skipped_files": 0}


def test_the_decoded_store_is_reused_and_a_changed_folder_is_decoded_again(tmp_path, monkeypatch):
    import dlrun.data.image_folder as image_folder

    root = _digits_folder(tmp_path / "digits", per_class=4)
    cache = tmp_path / "cache"
    _load(root, cache, "true")
    assert len(list(cache.glob("*.npy"))) == 1 and not list(cache.glob("*.tmp.*"))

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_folder, "_pixels", no_decoding)
    assert _load(root, cache, "true").n_rows == 12  # mapped, not decoded
    (root / "c0" / "0.png").write_bytes((root / "c1" / "0.png").read_bytes())  # a changed file
    with pytest.raises(AssertionError, match="decoded again"):
        _load(root, cache, "true")


def test_unreadable_files_are_skipped_and_counted_before_training_when_streamed(tmp_path, caplog):
    from dlrun.errors import DataError

    root = _digits_folder(tmp_path / "digits", per_class=5)
    (root / "c1" / "bad.png").write_bytes(b"not a png")
    (root / "c2" / "cut.png").write_bytes((root / "c2" / "0.png").read_bytes()[:40])
    with caplog.at_level("WARNING", logger="dlrun.data.image_folder"):
        table = _load(root, tmp_path / "cache", "true")
    assert np.bincount(table.y).tolist() == [5, 5, 5] and len(table.x) == 15
    assert "skipped 2 of 17 files" in caplog.text and "c1/bad.png: cannot be decoded" in caplog.text
    assert table.notes["images"]["skipped_files"] == 2
    for f in (root / "c2").glob("*.png"):
        f.write_bytes(b"broken")
    with pytest.raises(DataError, match="'c2' hold no readable image"):
        _load(root, tmp_path / "cache2", "true")


def test_a_pre_split_test_folder_streams_as_the_test_rows(tmp_path):
    train = _digits_folder(tmp_path / "train", per_class=6)
    test = _digits_folder(tmp_path / "test", per_class=2)
    (test / "c0" / "junk.png").write_bytes(b"junk")  # skipped rows must not shift the test split
    table = _load(train, tmp_path / "cache", "true", test_path=str(test))
    assert table.n_rows == 24 and table.test_rows.tolist() == list(range(18, 24))
    assert np.bincount(table.y[table.test_rows]).tolist() == [2, 2, 2]


def test_stream_auto_keeps_a_small_folder_in_memory_and_a_wrong_value_is_refused(tmp_path):
    from dlrun.errors import DataError

    root = _digits_folder(tmp_path / "digits", per_class=3)
    assert isinstance(_load(root, tmp_path / "cache", "auto").x, np.ndarray)
    with pytest.raises(DataError, match="dataset.stream='sometimes' is not one of: auto, true, false"):
        _load(root, tmp_path / "cache", "sometimes")


def test_smote_is_refused_on_a_streamed_folder_and_oversampling_keeps_it_streamed(tmp_path):
    from dlrun.data.split import holdout_indices, make_splits
    from dlrun.errors import ConfigError
    from dlrun.sampling import resample

    table = _load(_digits_folder(tmp_path / "digits"), tmp_path / "cache", "true")
    splits = make_splits(table, *holdout_indices(table.y, task=table.task, test_size=0.2, val_size=0.25,
                                                 seed=0), scaling="none")
    with pytest.raises(ConfigError, match="sampling=smote .* streamed"):
        resample(splits.train, "smote", seed=0)
    big = resample(splits.train.take(np.r_[np.arange(len(splits.train)), [0, 0, 0]]), "oversample", seed=0)
    assert type(big.x).__name__ == "ImageRows" and len(big.x) == len(big.y)


@pytest.mark.slow
def test_a_streamed_run_trains_on_the_same_batches_as_an_in_memory_run(tmp_path):
    import pandas as pd

    from dlrun.run import run_job

    root = _digits_folder(tmp_path / "digits", per_class=20)
    out = {}
    for stream in ("false", "true"):
        cfg = compose_config([
            "dataset=image_folder", f"dataset.path={root}", "dataset.image_size=8", f"dataset.stream={stream}",
            f"dataset.cache_dir={tmp_path / 'cache'}", "model=cnn", "optimizer.batch_size=8",
            *TINY,
        ])
        run_job(cfg, tmp_path / stream)
        out[stream] = (json.loads((tmp_path / stream / "metrics.json").read_text()),
                       pd.read_csv(tmp_path / stream / "history.csv"))
    (m_mem, h_mem), (m_str, h_str) = out["false"], out["true"]
    assert m_str["status"] == "ok" and m_str["sizes"] == m_mem["sizes"]
    # Same pixels, same shuffled batches: the same weights, up to the order of float sums.
    assert m_str["test"]["loss"] == pytest.approx(m_mem["test"]["loss"], rel=1e-5)
    np.testing.assert_allclose(h_str["val_loss"], h_mem["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(h_str["loss"], h_mem["loss"], rtol=1e-5)
    assert "images streamed from disk" in (tmp_path / "true" / "summary.md").read_text()


@pytest.mark.slow
def test_a_streamed_folder_trains_under_model_fit_too(tmp_path):
    from dlrun.run import run_job

    root = _digits_folder(tmp_path / "digits", per_class=20)
    cfg = compose_config([
        "dataset=image_folder", f"dataset.path={root}", "dataset.image_size=8", "dataset.stream=true",
        f"dataset.cache_dir={tmp_path / 'cache'}", "model=cnn", "optimizer.batch_size=8", "trainer.loop=fit",
        "trainer.epochs=3", "trainer.progress=none",
    ])
    run_job(cfg, tmp_path / "run")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert m["status"] == "ok" and m["loop"] == "fit" and len(history) == 4  # header + 3 epochs
