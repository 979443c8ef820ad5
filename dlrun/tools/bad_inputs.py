"""The bad-input table: what a user may get wrong, and the one line dlrun answers with.

Each :class:`Case` is a command line (``{data}`` stands for a folder of broken fixtures
that :func:`make_fixtures` writes), a substring the single ``dlrun: error:`` line must
contain, and the exit code. ``tests/test_bad_inputs.py`` runs the table in the test
suite; ``python -m dlrun.tools.bad_inputs`` (``make check-inputs``) runs every case
against the installed ``dlrun`` command and prints ``N passed, N failed``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dlrun.lock import hold

EXIT_USER_ERROR = 2
# Every case stays tiny in case it gets past its error (a regression): two epochs, no bars.
_QUIET = ("trainer.epochs=2", "trainer.progress=none")


@dataclass(frozen=True)
class Case:
    """One bad command line and how dlrun must answer it.

    Attributes:
        name: a short id.
        args: the overrides; ``{data}`` is replaced by the fixture folder.
        expect: a substring of the one-line error.
        code: the exit code. Defaults to 2.
        needs_no_gpu: the case is only bad on a machine without a GPU.
    """

    name: str
    args: tuple[str, ...]
    expect: str
    code: int = EXIT_USER_ERROR
    needs_no_gpu: bool = False

    def argv(self, data: Path) -> list[str]:
        args = [a.replace("{data}", str(data)) for a in self.args]
        flags = [a for a in args if a.startswith("-")]
        # Flags first (argparse wants them before the overrides); the case's own overrides
        # come last, so they win over the quiet defaults.
        return flags + list(_QUIET) + [a for a in args if not a.startswith("-")]


def _csv(*args: str) -> tuple[str, ...]:
    return ("dataset=csv", *args)


CASES: list[Case] = [
    # config: groups, keys, types
    Case("unknown group option", ("model=transformer",), "Could not find 'model/transformer'"),
    Case("unknown dataset option", ("dataset=imagenet",), "Could not find 'dataset/imagenet'"),
    Case("unknown experiment", ("experiment=nope",), "Could not find 'experiment/nope' (available: capacity"),
    Case("unknown key", ("trainer.epoch=3",), "Key 'epoch' not in 'TrainerConfig'"),
    Case("unknown top-level key", ("learning_rate=0.1",), "Could not override 'learning_rate'"),
    Case("added key with a typo", ("+trainer.epoch=5",), "unknown key trainer.epoch (did you mean trainer.epochs?)"),
    Case("added key of no group", ("+anything=1",), "unknown key anything"),
    Case("mistyped key gets a suggestion", ("model.widht=3",), "(did you mean model.width?)"),
    Case("text for an integer", ("trainer.epochs=ten",), "could not be converted to Integer"),
    Case("text for a float", ("optimizer.lr=fast",), "could not be converted to Float"),
    Case("text for a boolean", ("trainer.save_model=maybe",), "Value 'maybe' is not a valid bool"),
    # config: values
    Case("zero epochs", ("trainer.epochs=0",), "trainer.epochs must be at least 1"),
    Case("negative epochs", ("trainer.epochs=-3",), "trainer.epochs must be at least 1"),
    Case("zero batch size", ("optimizer.batch_size=0",), "optimizer.batch_size must be at least 1"),
    Case("negative batch size", ("optimizer.batch_size=-8",), "optimizer.batch_size must be at least 1"),
    Case("zero learning rate", ("optimizer.lr=0",), "optimizer.lr must be positive"),
    Case("negative learning rate", ("optimizer.lr=-0.1",), "optimizer.lr must be positive"),
    Case("unknown optimizer name", ("optimizer.name=adamax",), "optimizer='adamax' is not one of"),
    Case("dropout of 1", ("reg.dropout=1",), "reg.dropout must be in [0, 1)"),
    Case("test size over 1", ("dataset.test_size=1.5",), "dataset.test_size must be in (0, 1)"),
    Case("one fold", ("eval=kfold", "eval.folds=1"), "eval.folds must be at least 2"),
    Case("validation share leaving no training rows", ("dataset.test_size=0.9", "dataset.val_size=0.99"),
         "rows left after the test split with dataset.val_size=0.99: the training side would be empty"),
    Case("negative seed", ("seed=-1",), "seed must be in [0, 2**32 - 1]"),
    Case("unknown study kind", ("study.kind=astrology",), "study.kind='astrology' is not one of"),
    Case("target fraction of 0", ("study.target_fraction=0",), "study.target_fraction must be in (0, 1]"),
    Case("unknown device", ("trainer.device=tpu",), "trainer.device='tpu' is not one of"),
    Case("gpu without a gpu", ("trainer.device=gpu",), "sees no GPU", needs_no_gpu=True),
    Case("negative checkpoint interval", ("trainer.checkpoint_every=-1",), "trainer.checkpoint_every must be"),
    Case("cnn on a table", ("model=cnn",), "model=cnn needs image data"),
    Case("code in a config value", ("optimizer.name=__import__('os').getcwd()",),
         "cannot parse the override"),
    Case("quoted code in a config value", ("optimizer.name='__import__(\"os\").getcwd()'",),
         "optimizer='__import__(\"os\").getcwd()' is not one of"),
    # csv data
    Case("csv without a path", _csv("dataset.target=y"), "dataset=csv needs dataset.path=FILE"),
    Case("csv without a target", _csv("dataset.path={data}/good.csv"), "dataset=csv needs dataset.target=COLUMN"),
    Case("csv with values past float32", _csv("dataset.path={data}/huge.csv", "dataset.target=y"),
         "input column(s) a are not finite after preprocessing"),
    Case("constant regression target", _csv("dataset.path={data}/constant.csv", "dataset.target=y"),
         "the target of constant is constant (3.5 in every row)"),
    Case("csv path that does not exist", _csv("dataset.path={data}/nope.csv", "dataset.target=y"),
         "no file at"),
    Case("csv with missing values, refused",
         _csv("dataset.path={data}/missing.csv", "dataset.target=y", "dataset.missing=refuse"),
         "has missing values in a (1), b (1); fill them, or set dataset.missing=impute"),
    Case("unknown missing-value policy",
         _csv("dataset.path={data}/missing.csv", "dataset.target=y", "dataset.missing=nonsense"),
         "dataset.missing='nonsense' is not one of: impute, drop, refuse"),
    Case("negative one-hot cap", _csv("dataset.path={data}/good.csv", "dataset.target=y", "dataset.max_categories=-3"),
         "dataset.max_categories must be at least 2"),
    Case("csv delimiter of two characters", _csv("dataset.path={data}/good.csv", "dataset.target=y",
                                                 "dataset.sep=ab"), "dataset.sep must be one character"),
    Case("unknown text encoding", _csv("dataset.path={data}/good.csv", "dataset.target=y", "dataset.encoding=klingon"),
         "dataset.encoding='klingon' is not an encoding"),
    Case("latin-1 csv read as utf-8", _csv("dataset.path={data}/latin1.csv", "dataset.target=y"),
         "set dataset.encoding=latin-1"),
    Case("csv whose targets are all missing", _csv("dataset.path={data}/no_targets.csv", "dataset.target=y"),
         "every row's target 'y' is missing"),
    Case("csv without the label column", _csv("dataset.path={data}/good.csv", "dataset.target=label"),
         "dataset.target='label' is not a column"),
    Case("csv with infinite values", _csv("dataset.path={data}/infinite.csv", "dataset.target=y"),
         "has infinite values in b"),
    Case("csv with one class", _csv("dataset.path={data}/one_class.csv", "dataset.target=y"),
         "has a single class"),
    Case("empty csv", _csv("dataset.path={data}/empty.csv", "dataset.target=y"), "is empty"),
    Case("csv with a header only", _csv("dataset.path={data}/header.csv", "dataset.target=y"),
         "has a header but no rows"),
    Case("not a csv", _csv("dataset.path={data}/binary.csv", "dataset.target=y"), "could not be read as CSV"),
    Case("sensitive column the csv lacks",
         _csv("dataset.path={data}/good.csv", "dataset.target=y", "dataset.sensitive=sex"),
         "dataset.sensitive='sex' is not a column"),
    Case("sensitive attribute on a dataset without one", ("dataset.sensitive=sex",),
         "breast_cancer has no sensitive attribute"),
    # image folders
    Case("image folder without a path", ("dataset=image_folder",), "dataset.path"),
    Case("empty image folder", ("dataset=image_folder", "dataset.path={data}/images_empty"),
         "has no class sub-folders"),
    Case("image folder without class sub-folders", ("dataset=image_folder", "dataset.path={data}/images_flat"),
         "has no class sub-folders"),
    Case("class folder without images", ("dataset=image_folder", "dataset.path={data}/images_hollow"),
         "hold no images"),
    Case("class of corrupt images only", ("dataset=image_folder", "dataset.path={data}/images_corrupt"),
         "class folder(s) 'dog' hold no readable image (1 file(s) skipped as unreadable)"),
    Case("image folder with a single class", ("dataset=image_folder", "dataset.path={data}/images_single"),
         "has a single class folder ('cat')"),
    Case("test folder with another class", ("dataset=image_folder", "dataset.path={data}/images_split/train",
                                            "dataset.test_path={data}/images_split/test"),
         "class folder(s) 'owl' that dataset.path does not"),
    Case("image size too small", ("dataset=image_folder", "dataset.path={data}/images_flat",
                                  "dataset.image_size=2"), "dataset.image_size must be at least 4"),
    # weights, outputs, resume
    Case("missing weights file", ("model.weights={data}/nope.weights.h5",), "model.weights: no file at"),
    Case("weights of the wrong kind", ("model.weights={data}/good.csv",), "must be a .weights.h5 file"),
    Case("corrupt weights file", ("model.weights={data}/corrupt.weights.h5",), "does not fit model"),
    Case("corrupt .keras model", ("model.weights={data}/corrupt.keras",), "is not a Keras model file"),
    Case("a folder where metrics.json goes", ("hydra.run.dir={data}/taken_run",),
         "has a folder named metrics.json where the run writes that file"),
    Case("output folder under a file", ("hydra.run.dir={data}/good.csv/run",), "Not a directory"),
    Case("sweep folder under a file", ("-m", "seed=0,1", "hydra.sweep.dir={data}/good.csv/sweep"),
         "Not a directory"),
    Case("joblib with no workers", ("-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0",
                                    "hydra.sweep.dir={data}/sweep_n0"), "the sweep could not run: n_jobs == 0"),
    Case("run folder another process writes into", ("hydra.run.dir={data}/busy_run",),
         "another dlrun process (pid"),
    Case("resume without a checkpoint", ("trainer.resume=true", "hydra.run.dir={data}/fresh_run"),
         "trainer.resume=true but"),
    *(Case(f"resume from a {kind} checkpoint", ("trainer.resume=true", f"hydra.run.dir={{data}}/ckpt_{kind}"),
           "cannot be read") for kind in ("empty", "truncated", "garbage")),
    Case("seed past numpy's range", ("seed=4294967296",), "seed must be in [0, 2**32 - 1]"),
    Case("binary task on ten classes", ("dataset=digits", "dataset.task=binary"),
         "dataset.task=binary but the target of digits has 10 classes"),
    Case("classification of a continuous target", ("dataset=diabetes", "dataset.task=multiclass"),
         "dataset.task=multiclass but the target of diabetes is continuous"),
]


# Run-folder locks held for the cases that need a busy folder (released when this process ends).
_HELD: list[int] = []


def make_fixtures(root: Path) -> Path:
    """Write the broken files the cases point at into ``root`` and return it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(40))
    (root / "good.csv").write_text("a,b,y\n" + rows + "\n")
    (root / "missing.csv").write_text("a,b,y\n1,2,0\n,3,1\n4,,0\n" + rows + "\n")
    (root / "latin1.csv").write_bytes(("city,a,y\n" + "\n".join(f"Montréal,{i},{i % 2}" for i in range(30))
                                       + "\n").encode("latin-1"))
    (root / "no_targets.csv").write_text("a,b,y\n" + "\n".join(f"{i},{i}," for i in range(30)) + "\n")
    (root / "infinite.csv").write_text("a,b,y\n1,inf,0\n" + rows + "\n")
    (root / "huge.csv").write_text("a,b,y\n" + "\n".join(f"{(i % 7) * 1e300},{i % 5},{i % 2}" for i in range(40)) + "\n")
    (root / "constant.csv").write_text("a,b,y\n" + "\n".join(f"{i % 7},{i % 5},3.5" for i in range(40)) + "\n")
    (root / "one_class.csv").write_text("a,b,y\n" + "\n".join(f"{i},{i},0" for i in range(30)) + "\n")
    (root / "empty.csv").write_text("")
    (root / "header.csv").write_text("a,b,y\n")
    (root / "binary.csv").write_bytes(bytes(range(128, 256)) * 8)
    (root / "corrupt.weights.h5").write_bytes(b"this is not an HDF5 file")
    (root / "corrupt.keras").write_bytes(b"this is not a zip archive")
    (root / "taken_run" / "metrics.json").mkdir(parents=True, exist_ok=True)
    _HELD.append(hold(root / "busy_run"))  # held by this process until it exits
    for kind, content in (("empty", b""), ("truncated", b"PK\x03\x04" + bytes(40)), ("garbage", b"not a checkpoint")):
        (root / f"ckpt_{kind}" / "checkpoint").mkdir(parents=True, exist_ok=True)
        (root / f"ckpt_{kind}" / "checkpoint" / "state.npz").write_bytes(content)
    (root / "images_empty").mkdir(exist_ok=True)
    flat = root / "images_flat"
    flat.mkdir(exist_ok=True)
    _write_png(flat / "a.png")
    hollow = root / "images_hollow"
    for cls in ("cat", "dog"):
        (hollow / cls).mkdir(parents=True, exist_ok=True)
    _write_png(hollow / "cat" / "1.png")
    corrupt = root / "images_corrupt"
    for cls in ("cat", "dog"):
        (corrupt / cls).mkdir(parents=True, exist_ok=True)
    _write_png(corrupt / "cat" / "1.png")
    (corrupt / "dog" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "images_single" / "cat").mkdir(parents=True, exist_ok=True)
    _write_png(root / "images_single" / "cat" / "1.png")
    for half, classes in (("train", ("cat", "dog")), ("test", ("cat", "owl"))):
        for cls in classes:
            (root / "images_split" / half / cls).mkdir(parents=True, exist_ok=True)
            _write_png(root / "images_split" / half / cls / "1.png")
    return root


def _write_png(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)


def has_gpu() -> bool:
    """A visible NVIDIA GPU, checked without importing TensorFlow."""
    return Path("/dev/nvidia0").exists() and os.environ.get("CUDA_VISIBLE_DEVICES", "x") not in ("", "-1")


def check(case: Case, stderr: str, code: int) -> str | None:
    """Why a result does not meet the case (``None`` when it does)."""
    if code != case.code:
        return f"exit code {code}, expected {case.code}"
    if "Traceback" in stderr:
        return "printed a traceback"
    errors = [ln for ln in stderr.splitlines() if ln.startswith("dlrun: error:")]
    if len(errors) != 1:
        return f"expected one 'dlrun: error:' line, got {len(errors)}: {stderr.strip()[-300:]!r}"
    if case.expect not in errors[0]:
        return f"{case.expect!r} not in {errors[0]!r}"
    return None


def dlrun_command() -> list[str]:
    """The installed `dlrun` command beside this Python (or on PATH), as a command list."""
    beside = Path(sys.executable).with_name("dlrun")
    found = str(beside) if beside.exists() else shutil.which("dlrun")
    if found is None:
        raise SystemExit("no installed `dlrun` command found; run `make install` first")
    return [found]


def run_case(case: Case, data: Path, cwd: Path) -> str | None:
    """Run one case against the installed ``dlrun``; the reason it failed, or ``None``."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CI": "1"}
    env.pop("DLRUN_DEBUG", None)
    proc = subprocess.run([*dlrun_command(), *case.argv(data)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return check(case, proc.stderr, proc.returncode)


def main(argv: list[str] | None = None) -> int:
    """Run every case; print failures and ``N passed, N failed``; exit 1 if any failed."""
    parser = argparse.ArgumentParser(prog="python -m dlrun.tools.bad_inputs", description=__doc__.splitlines()[0])
    parser.add_argument("-j", "--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.k in c.name and not (c.needs_no_gpu and has_gpu())]
    with tempfile.TemporaryDirectory(prefix="dlrun-bad-inputs-") as tmp:
        data = make_fixtures(Path(tmp) / "data")
        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            reasons = list(pool.map(lambda c: run_case(c, data, Path(tmp)), cases))
    for case, reason in zip(cases, reasons, strict=True):
        print(f"{'ok  ' if reason is None else 'FAIL'} {case.name}" + (f": {reason}" if reason else ""))
    failed = sum(r is not None for r in reasons)
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
