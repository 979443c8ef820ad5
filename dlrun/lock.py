"""One live process per run folder: ``<run>/.dlrun.lock`` held with ``fcntl.flock``.

The kernel releases the lock when its process dies, however it dies (SIGKILL, the
out-of-memory killer), so a killed run never blocks the next one; a live holder is
refused in one line naming its process id.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dlrun.errors import ConfigError

LOCK_FILE = ".dlrun.lock"


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive lock."""
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"another dlrun process (pid {_holder(path)}) is writing into {path.parent}; give each "
                "run its own hydra.run.dir"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file as we opened it: lock the new one


@contextmanager
def run_folder_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while the block runs (the folder is created if needed).

    Raises:
        ConfigError: a live process holds the folder.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = _acquire(path)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # before the release: a waiter then locks a fresh file
        os.close(fd)


def hold(run_dir: Path) -> int:
    """Lock ``run_dir`` until the returned descriptor is closed (tests and fixtures)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = _acquire(run_dir / LOCK_FILE)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
