"""history.csv while a run trains (issue 16)."""

from __future__ import annotations

import pandas as pd
import pytest

from dlrun.report.live import LiveHistory
from tests.conftest import compose_config


def test_live_history_appends_each_new_row_and_rewrites_when_columns_change(tmp_path):
    path = tmp_path / "history.csv"
    live = LiveHistory(path, folds=2)
    rows = [{"epoch": 1, "loss": 0.5}]
    live.update(0, rows)
    rows.append({"epoch": 2, "loss": 0.25})
    live.update(0, rows)
    assert pd.read_csv(path).to_dict("records") == [{"fold": 1, "epoch": 1, "loss": 0.5},
                                                    {"fold": 1, "epoch": 2, "loss": 0.25}]
    live.update(1, [{"epoch": 1, "loss": 0.75, "phase": "head"}])  # a new column: the file is rewritten
    frame = pd.read_csv(path)
    assert frame.columns.tolist() == ["fold", "epoch", "loss", "phase"] and len(frame) == 3
    assert frame["phase"].isna().sum() == 2 and frame["phase"].iloc[2] == "head"


@pytest.mark.slow
def test_history_csv_holds_every_finished_epoch_while_the_run_trains(tmp_path):
    import keras

    from dlrun.capabilities import _REGISTRY, Capability, register_capability
    from dlrun.run import run_job

    seen: list[tuple[int, int]] = []

    class Peek(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch + 1, len(pd.read_csv(tmp_path / "run" / "history.csv"))))

    class Watch(Capability):
        def callbacks(self, ctx):
            return [Peek()]

    register_capability("test_watch", lambda cfg: Watch())
    try:
        cfg = compose_config(["trainer.epochs=50", "trainer.progress=none", "diagnosis.reference=none"])
        run_job(cfg, tmp_path / "run")
    finally:
        _REGISTRY.pop("test_watch")
    assert len(seen) == 50 and all(rows == epoch for epoch, rows in seen)
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 50
