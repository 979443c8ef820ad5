"""Process-wide TensorFlow set-up: device, threads, seed, determinism, precision.

Call :func:`setup` once per job, before any model is built.
"""

from __future__ import annotations

import importlib.util
import logging
import os

from dlrun.config import TrainerConfig
from dlrun.errors import ConfigError

log = logging.getLogger(__name__)


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    _quiet_tensorflow()
    import keras
    import tensorflow as tf

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
    device = "gpu" if gpus else "cpu"
    if trainer.mixed_precision:
        if device == "gpu":
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            log.warning("trainer.mixed_precision=true needs a GPU; training in float32 on the CPU")
            keras.mixed_precision.set_global_policy("float32")
    else:
        keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(seed)
    if trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    log.debug("training on %s (%d GPU visible), precision %s", device, len(gpus),
              keras.mixed_precision.global_policy().name)
    return device


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
