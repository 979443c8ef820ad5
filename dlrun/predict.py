"""Score new data with a saved run: ``dlrun-predict RUN_DIR DATA -o predictions.csv``.

A run with ``trainer.save_model=true`` writes, beside ``model.keras``, ``predictor.joblib``:
the preprocessing fitted on its training rows (imputation, scaling, one-hot encoding), the
source columns the model reads, the label names, the task and the decision threshold, and
how its CSV was read (delimiter, encoding, missing-value markers); and
``test_predictions.csv``, the run's own test rows as this command would write them.

``DATA`` is a CSV with the training table's feature columns (extra columns, the target
among them, are ignored; a missing column is refused in one line naming it; unseen
categories go where the training rows' infrequent ones went), or, for a run trained on
images, a folder of images (searched recursively; unreadable files are skipped and named).
The output has one row per input: ``row`` (its position in the file) or ``file``, the
predicted ``label`` and a ``probability_<class>`` per class, or the predicted ``value``
for regression.

``predictor.joblib`` is a pickle, as scikit-learn models are: score only with run folders
you trust. Per-group thresholds (``fairness=threshold``) are not applied here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlrun.errors import DataError, UserError

log = logging.getLogger(__name__)

PREDICTOR = "predictor.joblib"
TEST_PREDICTIONS = "test_predictions.csv"
_FORMAT = 1


def predictor_state(splits, spec, dataset_cfg, *, delimiter: str | None, post_processed: bool) -> dict[str, Any]:
    """What scoring raw rows needs, from a trained fold's splits (see the module docstring)."""
    image_shape = splits.image_shape
    return {
        "format": _FORMAT,
        "task": spec.task,
        "threshold": float(spec.threshold),
        "class_names": [str(c) for c in splits.class_names],
        "input_columns": splits.input_columns,
        "feature_names": list(splits.feature_names),
        "preprocess": splits.preprocess,
        "y_mean": float(splits.y_mean),
        "y_std": float(splits.y_std),
        "image_shape": list(image_shape) if image_shape else None,
        "csv": {"sep": delimiter, "encoding": dataset_cfg.encoding, "na_values": list(dataset_cfg.na_values)},
        "post_processed": post_processed,
    }


def output_frame(raw: np.ndarray, state: dict[str, Any], ids: pd.DataFrame) -> pd.DataFrame:
    """One row per input: ``ids``, then the label and class probabilities (or the value)."""
    from dlrun.metrics import class_probabilities, predicted_labels

    out = ids.reset_index(drop=True).copy()
    if state["task"] == "regression":
        out["value"] = raw.reshape(-1) * state["y_std"] + state["y_mean"]
        return out
    names = state["class_names"]
    codes = predicted_labels(raw, state["task"], threshold=state["threshold"])
    out["label"] = [names[c] for c in codes]
    proba = class_probabilities(raw, state["task"])
    for k, name in enumerate(names):
        out[f"probability_{name}"] = proba[:, k]
    return out


def _table_inputs(path: Path, state: dict[str, Any]) -> tuple[np.ndarray, pd.DataFrame]:
    from dlrun.data.csv_table import read_frame
    from dlrun.data.split import as_text, non_finite_columns

    if not path.is_file():
        raise DataError(f"no file at {path}; give a CSV with the training table's columns")
    csv = state["csv"]
    frame, _ = read_frame(path, sep=csv["sep"], encoding=csv["encoding"], na_values=csv["na_values"])
    columns = state["input_columns"] or state["feature_names"]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) the model reads: {', '.join(missing)} "
                        f"(it needs {len(columns)}: {', '.join(columns[:8])}{', ...' if len(columns) > 8 else ''})")
    x = frame[columns].copy()
    transformer = state["preprocess"]
    try:
        if state["input_columns"] is not None:
            x = as_text(x)
        values = transformer.transform(x) if transformer is not None else x.to_numpy(dtype=np.float32)
    except (ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: the columns cannot be prepared as the training rows were: {first}") from None
    values = np.asarray(values, dtype=np.float32)
    bad = non_finite_columns(values, state["feature_names"])
    if bad:
        raise DataError(f"{path}: values that are not finite after preprocessing in {', '.join(bad[:8])}")
    return values, pd.DataFrame({"row": np.arange(len(frame))})


def _image_inputs(path: Path, state: dict[str, Any]) -> tuple[np.ndarray, pd.DataFrame]:
    from dlrun.data.image_folder import IMAGE_SUFFIXES, decode_file

    if not path.is_dir():
        raise DataError(f"no folder at {path}; this run was trained on images: give a folder of images")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...)")
    size, _, channels = state["image_shape"]
    rows, kept, skipped = [], [], []
    for f in files:
        pixels = decode_file(f, size, "L" if channels == 1 else "RGB")
        if isinstance(pixels, str):
            skipped.append(f"{f.relative_to(path)}: {pixels}")
        else:
            rows.append(pixels)
            kept.append(str(f.relative_to(path)))
    if skipped:
        log.warning("skipped %d unreadable file(s): %s", len(skipped), "; ".join(skipped[:5]))
    if not rows:
        raise DataError(f"{path}: none of its {len(files)} image files could be read")
    return np.stack(rows).astype(np.float32), pd.DataFrame({"file": kept})


def predict_data(run_dir: Path, data: Path) -> pd.DataFrame:
    """The predictions of the run in ``run_dir`` for ``data`` (see the module docstring).

    Raises:
        DataError: no saved model in ``run_dir``, or data the model cannot read.
    """
    import joblib

    model_path, state_path = run_dir / "model.keras", run_dir / PREDICTOR
    if not model_path.is_file() or not state_path.is_file():
        raise DataError(f"{run_dir} has no saved model ({model_path.name} and {state_path.name}); "
                        "train with trainer.save_model=true")
    state = joblib.load(state_path)
    if state.get("format") != _FORMAT:
        raise DataError(f"{state_path} was written by another version of dlrun; train the run again")
    read = _image_inputs if state["image_shape"] else _table_inputs
    x, ids = read(data, state)
    if state["post_processed"]:
        log.warning("this run's labels were post-processed (e.g. fairness=threshold); "
                    "dlrun-predict applies the plain threshold %.2f", state["threshold"])
    from dlrun import runtime

    runtime.import_tensorflow()
    import keras

    from dlrun.train import predict

    model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    return output_frame(predict(model, x), state, ids)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlrun-predict",
        description="Score new data with a run saved by trainer.save_model=true: one output row per "
        "input, the predicted label and class probabilities (or value).",
    )
    parser.add_argument("run_dir", type=Path, help="the run folder (holds model.keras and predictor.joblib)")
    parser.add_argument("data", type=Path, help="a CSV with the training columns, or a folder of images")
    parser.add_argument("-o", "--out", type=Path, default=Path("predictions.csv"),
                        help="where to write the predictions (default: predictions.csv)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="dlrun-predict: %(message)s")
    try:
        frame = predict_data(args.run_dir, args.data)
        from dlrun.report.files import write_csv

        if args.out.is_dir():
            raise DataError(f"-o {args.out} is a folder; give a file name")
        write_csv(args.out, frame)
    except (UserError, OSError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"dlrun-predict: error: {text}", file=sys.stderr)
        return 2
    print(f"{len(frame)} predictions -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
