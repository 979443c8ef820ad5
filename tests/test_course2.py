"""Course 2's claim check on hand-made run folders with known effects (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from dlrun.record import RunRecord, write_record
from dlrun.report.study import report_sweep

CLASSES = [str(c) for c in range(6)]
RARE = {"3", "4", "5"}
# (sampling, augment) -> (rare-class recall, test macro-F1) before seed noise
EFFECTS = {
    ("none", "none"): (0.80, 0.90), ("oversample", "none"): (0.90, 0.93),
    ("undersample", "none"): (0.85, 0.85), ("class_weight", "none"): (0.80, 0.90),
    ("none", "basic"): (0.85, 0.91), ("oversample", "basic"): (0.95, 0.94),
    ("undersample", "basic"): (0.90, 0.86), ("class_weight", "basic"): (0.85, 0.91),
}


def _run(run_dir: Path, *, sampling: str, augment: str, seed: int, rng) -> None:
    rare, f1 = EFFECTS[sampling, augment]
    noise = rng.normal(0, 0.004, 3)
    recall = {c: (rare if c in RARE else 0.98) + noise[0] for c in CLASSES}
    overrides = [f"sampling={sampling}", f"augment={augment}", f"seed={seed}"]
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    support = {c: 8 if c in RARE else 80 for c in CLASSES}
    matrix = np.diag([int(100 * recall[c]) for c in CLASSES]).tolist()
    write_record(run_dir, RunRecord(
        status="ok", headline="macro_f1", greater_is_better=True, fit_metric="accuracy", seed=seed,
        overrides=overrides, train={"accuracy": 0.99, "macro_f1": 0.99},
        val={"accuracy": 0.97 + noise[1], "macro_f1": f1 + noise[2]},
        test={"accuracy": 0.95, "macro_f1": f1 + noise[2]}, diagnosis={"gap": 0.02, "verdict": "good fit"},
        epochs_run=3, best_epoch=3, fit_seconds=1.0, seconds_per_epoch=0.3,
        sections={"classification": {"split": "test", "confusion_matrix": matrix, "val_support": support,
                                     "per_class": {c: {"recall": recall[c]} for c in CLASSES}}},
    ))


def _sweep(root: Path) -> str:
    rng = np.random.default_rng(0)
    job = 0
    for (sampling, augment) in EFFECTS:
        for seed in range(5):
            _run(root / str(job), sampling=sampling, augment=augment, seed=seed, rng=rng)
            job += 1
    report_sweep([root], out_dir=root, study={"kind": "imbalance", "name": "imbalance"})
    return (root / "study.md").read_text()


def test_the_course2_report_reads_each_claim_from_the_numbers(tmp_path):
    text = _sweep(tmp_path)
    assert "Rare classes (under 10% of the validation split): 3, 4, 5." in text
    hidden, resampling, augmentation = (text.split(f"### {i}.")[1] for i in (1, 2, 3))
    assert hidden.split("\n")[2].startswith("**Supported**. Without any treatment, validation accuracy")
    assert "**Supported**: oversample raises both beyond seed noise; undersample lowers at least one" in resampling
    assert "| class_weight |" in resampling and resampling.count("| inconclusive |") == 1
    verdict_line = augmentation.split("\n")[2]
    assert verdict_line.startswith("**Supported**: augment=basic: rare-class recall +")
    assert abs(float(verdict_line.split("recall +")[1].split(" ")[0]) - 0.05) < 0.005  # the planted effect
    assert "over 20 (sampling, seed) pairs" in augmentation
    assert "Holm's correction" in text
    assert (tmp_path / "confusion_matrices.png").stat().st_size > 0


def test_without_an_effect_the_claims_are_inconclusive(tmp_path, monkeypatch):
    flat = {k: (0.80, 0.90) for k in EFFECTS}
    monkeypatch.setattr(f"{__name__}.EFFECTS", flat)
    text = _sweep(tmp_path)
    resampling, augmentation = text.split("### 2.")[1], text.split("### 3.")[1]
    assert "**Inconclusive**: no method raises both beyond seed noise" in resampling
    assert augmentation.split("\n")[2].startswith("**Inconclusive**")
