"""Process-wide TensorFlow set-up: device, threads, seed, determinism, precision.

Call :func:`setup` once per job, before any model is built.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dlrun.config import TrainerConfig
from dlrun.errors import ConfigError

log = logging.getLogger(__name__)
# TensorFlow's C++ start-up lines, kept out of the terminal; the job's logging sends this
# logger to run.log only (configs/hydra/job_logging/dlrun.yaml).
native_log = logging.getLogger("dlrun.native")


@contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """Send what native libraries write to file descriptor 2 meanwhile to :data:`native_log`.

    TensorFlow's C++ code writes some lines straight to the process's stderr before its own
    logging is set up, whatever ``TF_CPP_MIN_LOG_LEVEL`` says: on Intel CPUs (oneDNN on) an
    absl warning and a "oneDNN custom operations are on" line, twice; with oneDNN off, a
    ``cpu_feature_guard`` line; on machines with CUDA libraries but no GPU, driver lines.
    Python's own writes to stderr meanwhile are captured too and logged the same way.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode("utf-8", errors="replace").splitlines():
                if line.strip():
                    native_log.info(line.rstrip())


def import_tensorflow() -> None:
    """Import TensorFlow and Keras with their start-up lines sent to the log (once per process).

    Raises:
        ConfigError: TensorFlow is not installed (dlrun installs it through an extra).
    """
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with native_stderr_to_log():
            import keras  # noqa: F401  (imports TensorFlow, its backend)
            import tensorflow  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name not in ("tensorflow", "keras"):
            raise
        raise ConfigError(
            f"{err.name} is not installed; install dlrun with a TensorFlow extra: "
            "pip install 'dlrun[cpu]' (or 'dlrun[gpu]' on a CUDA machine)"
        ) from None


def setup(trainer: TrainerConfig, *, seed: int) -> str:
    """Configure TensorFlow for this job and return the device it will use (``cpu``/``gpu``).

    ``device=auto`` takes a GPU when TensorFlow sees one; GPUs grow their memory as needed
    instead of taking it all; mixed precision (float16 compute, float32 weights and loss)
    applies only on a GPU; the seed goes to Python, NumPy and TensorFlow at once.

    Args:
        trainer: the trainer config (device, precision, threads, determinism).
        seed: the run's root seed.

    Raises:
        ConfigError: ``trainer.device=gpu`` on a machine without a visible GPU, or
            ``trainer.tensorboard=true`` without the tensorboard package.
    """
    if trainer.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("trainer.tensorboard=true needs the tensorboard package: pip install tensorboard")
    import_tensorflow()
    import keras
    import tensorflow as tf

    with native_stderr_to_log():  # device discovery prints driver and CPU-feature lines
        gpus = tf.config.list_physical_devices("GPU")
    if trainer.device == "gpu" and not gpus:
        raise ConfigError(
            "trainer.device=gpu but TensorFlow sees no GPU on this machine; use trainer.device=auto "
            "or cpu (on a CUDA machine, install with: make install TF_EXTRA=gpu)"
        )
    if trainer.device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    if trainer.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(trainer.threads)
            tf.config.threading.set_inter_op_parallelism_threads(trainer.threads)
        except RuntimeError:
            log.debug("TF thread pools already initialised; trainer.threads ignored")
    with native_stderr_to_log():  # the first op creates the devices (after the thread pools are sized)
        tf.constant(0.0)
    device = "gpu" if gpus else "cpu"
    if trainer.mixed_precision:
        if device == "gpu":
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            log.warning("trainer.mixed_precision=true needs a GPU; training in float32 on the CPU")
            keras.mixed_precision.set_global_policy("float32")
    else:
        keras.mixed_precision.set_global_policy("float32")
    set_random_seed(seed)
    if trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    log.debug("training on %s (%d GPU visible), precision %s", device, len(gpus),
              keras.mixed_precision.global_policy().name)
    return device


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed(seed)`` (Python, NumPy, Keras and TensorFlow seeds) without
    emptying TensorFlow's kernel cache, which ``tf.random.set_seed`` does in eager mode.

    The cache holds the instantiated graphs of traced functions: emptied, the next call of a
    graph a sweep's worker keeps for its jobs (:mod:`dlrun.warm_graph`) re-optimizes it, about
    0.1 s a job. Emptying it restarts the streams of *stateful* random kernels run eagerly
    with the same seeds; dlrun's and Keras's random numbers come from stateless kernels with
    seeds from Keras's seed state, which is reset here, and the operation seeds TensorFlow
    derives from its global seed restart as ``tf.random.set_seed`` restarts them.
    """
    import random

    import keras
    import tensorflow as tf

    try:
        from tensorflow.python.eager import context

        ctx = context.context()
        if not (hasattr(ctx, "_seed") and hasattr(ctx, "_rng") and tf.executing_eagerly()):
            raise AttributeError("TensorFlow's eager context changed")
    except (ImportError, AttributeError):
        keras.utils.set_random_seed(seed)
        return

    def seed_without_clearing(value: int) -> None:
        ctx._seed = value
        ctx._rng = random.Random(value)

    real = tf.random.set_seed
    tf.random.set_seed = seed_without_clearing
    try:
        keras.utils.set_random_seed(seed)
    finally:
        tf.random.set_seed = real


def versions() -> dict[str, str]:
    import platform

    import keras
    import numpy
    import sklearn
    import tensorflow as tf

    import dlrun

    return {
        "dlrun": dlrun.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
        "numpy": numpy.__version__, "sklearn": sklearn.__version__, "python": platform.python_version(),
    }


class Interrupts:
    """Ctrl-C and SIGTERM held off while a block that must finish runs, then honoured.

    Inside :meth:`held` a signal only sets :attr:`requested`; the caller finishes what it
    was writing (a fold's predictions and metrics, the run folder) and stops afterwards, so
    a signal at any moment, or two in quick succession, never leaves finished work unwritten.
    Outside the block signals act as usual. Only the main thread can install handlers;
    elsewhere the block runs unprotected.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def held(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(signum, frame):  # noqa: ARG001
            self.requested = True

        old = {s: signal.getsignal(s) for s in self.SIGNALS}
        for s in self.SIGNALS:
            signal.signal(s, note)
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
