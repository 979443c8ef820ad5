"""The ``dlrun`` command: a Hydra entrypoint over ``configs/``.

Only wiring lives here. TensorFlow is imported after the config is composed and
validated, so ``--help``, ``--cfg job`` and config errors answer quickly.
"""

from __future__ import annotations

import atexit
import gc
import logging
import math
import os
import re
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from dlrun.config import closest_key, validate
from dlrun.errors import UserError
from dlrun.launch import fit_job_to_launcher
from dlrun.paths import config_dir

log = logging.getLogger("dlrun")

# Hydra deep-copies its config repository, the ConfigStore singleton with it, for every
# group it lists (about 80 copies for --help, one per job in a sweep): half of --help's
# time. The copies are only ever read, so they may share the one store (upstream Hydra
# made the same change: structured sources re-fetch ConfigStore.instance()).
ConfigStore.__deepcopy__ = lambda self, memo: self

# At exit, freeze the heap before the interpreter's final garbage collections: they would
# walk everything TensorFlow and Keras left behind (about a second, in the dlrun process
# and in every joblib worker, which the sweep waits for). The memory goes back to the OS
# either way. atexit runs before those collections; this module is imported wherever a
# job runs, the workers included (they unpickle the task function from here).
atexit.register(gc.freeze)

EXIT_USER_ERROR = 2
EXIT_SOME_FAILED = 1
EXIT_INTERRUPTED = 130


def _is_multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _job(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    if _is_multirun():
        from dlrun.report.runs import join_sweep

        join_sweep(Path(hc.sweep.dir), run_dir)  # the sweep's report takes exactly its own jobs
    try:
        validate(cfg)
        fit_job_to_launcher(cfg)  # threads: this job's share of the cores; progress
        from dlrun.run import run_job

        objective = run_job(cfg, run_dir, overrides=overrides)
    except KeyboardInterrupt:
        raise
    except Exception as caught:  # one failing job must not end a sweep
        err = _out_of_memory(caught) or caught
        if _is_multirun() or not isinstance(err, UserError):  # bad input alone leaves no record
            from dlrun.report.run_folder import write_failure

            write_failure(run_dir, err, overrides=overrides, seed=cfg.get("seed"))
        if not _is_multirun():
            if isinstance(err, UserError) and not _debug():
                # Raised here, Hydra would print its own banner before ours.
                print(f"dlrun: error: {one_line(err)}", file=sys.stderr)
                raise SystemExit(EXIT_USER_ERROR) from None
            raise
        log.error("job %s failed: %s", hc.job.num, one_line(err))
        return math.nan
    if not _is_multirun():
        from dlrun.report.console import print_run

        print_run(run_dir)
    return objective


def _out_of_memory(err: BaseException) -> UserError | None:
    """Running out of memory, as the user's problem to fix in one line (None otherwise)."""
    if type(err).__name__ != "ResourceExhaustedError" and not isinstance(err, MemoryError):
        return None
    import re

    found = re.search(r"OOM when allocating tensor with shape\[[^\]]*\]", str(err))
    what = found.group(0) if found else type(err).__name__
    return UserError(f"out of memory ({what}): the model or a batch is too large for this machine; lower "
                     "model.width, model.depth or optimizer.batch_size")


def one_line(err: BaseException) -> str:
    """A single line from an exception chain, with Hydra's option lists folded in."""
    parts: list[str] = []
    node: BaseException | None = err
    while node is not None:
        lines = [ln.strip() for ln in str(node).strip().splitlines() if ln.strip()]
        if lines and "$VALUE" not in lines[0] and lines[0] != "None":
            msg = lines[0]
            if isinstance(node, OverrideParseException) and getattr(node, "override", None):
                msg = f"cannot parse the override {node.override!r}: {msg} (values are data, never code)"
            if msg.startswith("In '") and "': " in msg:
                msg = msg.split("': ", 1)[1]
            if any("Available options" in ln for ln in lines):
                options = [ln for ln in lines[1:] if not ln.endswith(":") and not ln.startswith(
                    ("Config search path", "provider=", "full_key", "object_type", "Available"))]
                msg += f" (available: {', '.join(options)})"
            key = next((ln[len("full_key:"):].strip() for ln in lines[1:] if ln.startswith("full_key:")), "")
            if key:
                guess = closest_key(key) if "not in" in msg else None
                msg += f" [key: {key}]" + (f" (did you mean {guess}?)" if guess and guess != key else "")
            if not any(msg in p for p in parts):
                parts.append(msg)
            if key:
                break  # the cause below an OmegaConf error with a key adds nothing new
        # `raise ... from None` means the context adds nothing the user needs.
        node = node.__cause__ or (None if node.__suppress_context__ else node.__context__)
    return "; ".join(parts) if parts else type(err).__name__


def _debug() -> bool:
    return os.environ.get("DLRUN_DEBUG", "") not in ("", "0")


def _raise_keyboard_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def _report_unfinished_sweep() -> str:
    """Report the finished jobs of a sweep that stopped early; a note naming it, or ``""``."""
    from dlrun.report.callback import report_unfinished_sweep

    try:
        study = report_unfinished_sweep()
    except KeyboardInterrupt:  # a second Ctrl-C: stop now
        return ""
    return f"; the report of the jobs that finished is {study}" if study else ""


# Where a resumed job's ``.hydra/`` goes once its resume is accepted (see `_defer_hydra_files`).
HYDRA_SUBDIR_ENV = "DLRUN_HYDRA_SUBDIR"


def _defer_hydra_files(argv: list[str]) -> None:
    """On ``trainer.resume=true``, keep Hydra from rewriting ``.hydra/`` before the job starts.

    Hydra saves a job's config before calling it, so a resume refused for a changed config
    would already have replaced the interrupted run's record with the rejected values. The
    job writes the same files itself once the resume is accepted (:func:`dlrun.run.run_job`);
    the environment carries the folder's name to joblib workers and cluster jobs.
    """
    resume = any(re.fullmatch(r"\+*trainer\.resume=(?i:true|yes|on|1)", arg) for arg in argv)
    if resume and not any(arg.lstrip("+").startswith("hydra.output_subdir=") for arg in argv):
        argv.append("hydra.output_subdir=null")
        os.environ[HYDRA_SUBDIR_ENV] = ".hydra"


def main() -> None:
    """Run Hydra; answer bad input with one line and exit code 2 (callable in-process)."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them in one line
    _defer_hydra_files(sys.argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    from hydra_plugins.dlrun_launchers.resilient_joblib import use_for_joblib

    use_for_joblib()  # hydra/launcher=joblib survives a worker that dies
    from hydra_plugins.dlrun_covering_sweeper.covering_sweeper import use_covering_sweeper

    use_covering_sweeper()  # a grid sweep composes each job once, not twice
    from hydra_plugins.dlrun_launchers.slurm import use_for_slurm

    use_for_slurm()  # hydra/launcher=submitit_slurm marks jobs lost by SLURM failed, resumes requeued ones
    try:
        _job()
    except KeyboardInterrupt:
        print(f"dlrun: interrupted; results so far are in the run folder{_report_unfinished_sweep()}",
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except (UserError, HydraException, OmegaConfBaseException) as err:
        if _debug():
            raise
        print(f"dlrun: error: {one_line(err)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as err:  # e.g. Hydra cannot create the output folder
        if _debug() or err.filename is None:
            raise
        print(f"dlrun: error: {err.strerror}: {err.filename}; check the path "
              "(outputs go to hydra.run.dir / hydra.sweep.dir, which must be writable)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception as err:  # a job's own errors never get here: the sweep machinery failed
        from dlrun.report.callback import sweep_open

        if _debug() or not sweep_open():
            raise
        print(f"dlrun: error: the sweep could not run: {one_line(err)} (check the hydra.launcher and "
              f"hydra.sweeper settings; DLRUN_DEBUG=1 shows the traceback){_report_unfinished_sweep()}",
              file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    from dlrun.report.callback import last_sweep_failures

    if last_sweep_failures():
        sys.exit(EXIT_SOME_FAILED)
