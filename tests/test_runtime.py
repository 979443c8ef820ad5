"""Start-up without TensorFlow, and the process-wide TensorFlow set-up (device, seed, precision)."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

import pytest

from dlrun.config import TrainerConfig
from dlrun.errors import ConfigError

# Runs the CLI in a fresh interpreter and reports whether TensorFlow got imported.
_PROBE = """
import sys
sys.argv = ["dlrun", *sys.argv[1:]]
from dlrun.cli import main
try:
    main()
except SystemExit as stop:
    code = stop.code
else:
    code = 0
print(f"PROBE exit={code} tensorflow={'tensorflow' in sys.modules}", file=sys.stderr)
"""


def _probe(args: list[str], cwd) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    line = next(ln for ln in done.stderr.splitlines() if ln.startswith("PROBE"))
    return line, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [(["--help"], 0), (["--cfg", "job"], 0), (["trainer.epochs=0"], 2), (["optimizer=warp"], 2)],
)
def test_cli_answers_without_importing_tensorflow(args, exit_code, tmp_path):
    line, output = _probe(args, tmp_path)
    assert line == f"PROBE exit={exit_code} tensorflow=False", output


def _tf_sees_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


# oneDNN on is what Intel CPUs get by default: TensorFlow then prints its own start-up
# lines to stderr before its logging exists, whatever TF_CPP_MIN_LOG_LEVEL says.
@pytest.mark.slow
@pytest.mark.parametrize("onednn", ["0", "1"])
def test_device_gpu_without_a_gpu_is_one_line_and_exit_2(dlrun_cli, onednn):
    if _tf_sees_gpu():
        pytest.skip("this machine has a GPU")
    done = dlrun_cli(["trainer.device=gpu", "trainer.epochs=1", "trainer.progress=none",
                      "hydra.run.dir=run"], env={"TF_ENABLE_ONEDNN_OPTS": onednn})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.device=gpu" in lines[0] and "no GPU" in lines[0], done.stderr


@pytest.mark.slow
def test_tensorflow_start_up_lines_go_to_run_log_not_the_terminal(dlrun_cli, tmp_path):
    done = dlrun_cli(["trainer.epochs=1", "trainer.progress=none", "hydra.run.dir=run"],
                     env={"TF_ENABLE_ONEDNN_OPTS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
    assert "oneDNN custom operations are on" in (tmp_path / "run" / "run.log").read_text()


def test_native_stderr_goes_to_the_log_not_to_stderr(capfd, caplog):
    import os

    from dlrun.runtime import native_stderr_to_log

    with caplog.at_level(logging.INFO, logger="dlrun.native"), native_stderr_to_log():
        os.write(2, b"I0000 port.cc:153] a line from C++\n\n")
    assert capfd.readouterr().err == ""
    assert [r.getMessage() for r in caplog.records] == ["I0000 port.cc:153] a line from C++"]


def test_native_stderr_is_restored_when_the_block_raises(capfd):
    import os

    from dlrun.runtime import native_stderr_to_log

    with pytest.raises(RuntimeError), native_stderr_to_log():
        raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_setup_on_cpu_uses_float32_and_reports_the_device():
    import keras

    from dlrun.runtime import setup

    device = setup(TrainerConfig(device="cpu"), seed=0)
    assert device == "cpu"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mixed_precision_without_a_gpu_warns_and_stays_float32(caplog):
    import keras

    from dlrun.runtime import setup

    if _tf_sees_gpu():
        pytest.skip("this machine has a GPU")
    with caplog.at_level(logging.WARNING, logger="dlrun.runtime"):
        setup(TrainerConfig(device="auto", mixed_precision=True), seed=0)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert "needs a GPU" in caplog.text


def test_same_seed_gives_the_same_draws():
    import keras
    import numpy as np

    from dlrun.runtime import setup

    def draws(seed: int):
        setup(TrainerConfig(device="cpu"), seed=seed)
        return np.random.rand(3), keras.ops.convert_to_numpy(keras.random.uniform((3,)))

    first, again, other = draws(5), draws(5), draws(6)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_without_its_package_says_what_to_install():
    from dlrun.runtime import setup

    with pytest.raises(ConfigError, match="pip install tensorboard"):
        setup(TrainerConfig(tensorboard=True), seed=0)
