"""Image folders larger than memory: decoded once into a file, read back a batch at a time.

A streamed folder (``dataset.stream=true``, or ``auto`` when its float32 array would not fit
comfortably in memory) is decoded once, with the same Pillow code and the same pixels as
an in-memory folder, into a uint8 ``.npy`` file under ``dataset.cache_dir`` (a quarter of
the float32 array's size). The file is named by what it holds (every image's path, size
and modification time, the image size and colour mode), so later runs and every job of a
sweep map it instead of decoding again. Training then reads shuffled chunks of rows from
the mapped file as float32 (:class:`ImageRows`); the operating system's page cache, not
the process, holds the bytes, and gives them back under memory pressure.

Decoding everything before the first epoch, rather than inside a ``tf.data`` map, means an
unreadable file is found, skipped and counted before training starts, never mid-epoch,
and a streamed run sees exactly the pixels an in-memory run sees.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Bump when the decoding changes, so stale stores are not reused.
_FORMAT = 1
# Rows decoded per thread-pool round (bounds the decoded rows held before they are written).
_DECODE_CHUNK = 1024
# Materializing more than this many bytes of a streamed split as float32 is worth a warning.
_LARGE = 256 * 2**20


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dlrun/images`` (``~/.cache/dlrun/images`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dlrun" / "images"


class ImageRows:
    """Rows of a uint8 image store, read on demand as float32 in [0, 1].

    Behaves like a read-only 2-D float32 array for what training and evaluation do with
    one: ``len``, ``shape``, slicing and integer-array indexing (which return ordinary
    arrays of just those rows), and ``take(rows)``, which selects rows without reading them.

    Attributes:
        store: the mapped ``(n_images, pixels)`` uint8 array.
        rows: the store rows this object stands for, in order.
    """

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, store: np.ndarray, rows: np.ndarray):
        self.store = store
        self.rows = np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.rows), int(self.store.shape[1]))

    @property
    def float_bytes(self) -> int:
        """The size of these rows as one float32 array."""
        return len(self.rows) * int(self.store.shape[1]) * 4

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, rows) -> ImageRows:
        """The rows at ``rows`` (positions; repeats allowed), still unread."""
        return ImageRows(self.store, self.rows[np.asarray(rows, dtype=np.int64)])

    def __getitem__(self, key) -> np.ndarray:
        wanted = self.rows[key]
        if np.ndim(wanted) == 0:
            return self.store[int(wanted)].astype(np.float32) / np.float32(255.0)
        out = self.raw(key).astype(np.float32)
        out /= np.float32(255.0)
        return out

    def raw(self, key) -> np.ndarray:
        """The rows at ``key`` as stored (uint8, 0-255): a quarter of the bytes to move;
        dividing by 255 in float32 gives exactly what indexing gives."""
        wanted = np.atleast_1d(self.rows[key])
        # A mapped file reads fastest in order; ask in order and put the rows back.
        order = np.argsort(wanted, kind="stable")
        out = np.empty((len(wanted), self.store.shape[1]), dtype=np.uint8)
        out[order] = self.store[wanted[order]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self.float_bytes > _LARGE:
            log.warning("reading %d streamed images into memory at once (%.0f MiB as float32)",
                        len(self), self.float_bytes / 2**20)
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype, copy=False)


def is_lazy(x) -> bool:
    """Whether ``x`` is rows read on demand (a streamed image folder) rather than an array."""
    return isinstance(x, ImageRows)


def take_rows(x, rows: np.ndarray):
    """``x[rows]`` that keeps streamed rows unread."""
    return x.take(rows) if is_lazy(x) else x[rows]


def sample_rows(x, *, max_bytes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """All of ``x`` as an array, or for streamed rows a random subset of at most
    ``max_bytes`` as float32 with the positions chosen (None when all are kept)."""
    if not is_lazy(x) or x.float_bytes <= max_bytes:
        return np.asarray(x), None
    keep = max(1, int(max_bytes // (x.shape[1] * 4)))
    chosen = np.sort(np.random.default_rng(seed).choice(len(x), size=keep, replace=False))
    return x[chosen], chosen


def _key(paths: Sequence[Path], size: int, mode: str) -> str:
    digest = hashlib.sha256(f"{_FORMAT}|{size}|{mode}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def decode_to_store(
    paths: Sequence[Path], *, size: int, mode: str, cache_dir: Path,
    decode: Callable[[Path, int, str], np.ndarray | str],
) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
    """Decode ``paths`` once into a uint8 store in ``cache_dir`` (or map the one already there).

    Args:
        paths: the image files, in row order.
        size: images are resized to ``size`` x ``size``.
        mode: Pillow colour mode, ``L`` or ``RGB``.
        cache_dir: where stores live.
        decode: the in-memory loader's decoder: a flat float array in [0, 1], or the
            reason the file cannot be read.

    Returns:
        The mapped ``(len(paths), pixels)`` uint8 array, a mask of the readable rows, and
        the unreadable files with their reasons.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _key(paths, size, mode)
    data, meta = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if data.exists() and meta.exists():
        unreadable = json.loads(meta.read_text())["skipped"]
        keep = np.ones(len(paths), dtype=bool)
        keep[[i for i, _ in unreadable]] = False
        skipped = [(paths[i], why) for i, why in unreadable]
        log.info("mapped %d decoded images from %s", int(keep.sum()), data)
        return np.load(data, mmap_mode="r"), keep, skipped
    pixels = size * size * (1 if mode == "L" else 3)
    tmp = data.with_name(f"{key}.{os.getpid()}.tmp.npy")
    store = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), pixels))
    keep = np.ones(len(paths), dtype=bool)
    skipped: list[tuple[int, str]] = []
    log.info("decoding %d images once into %s (%.0f MiB)", len(paths), data, store.nbytes / 2**20)
    try:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for start in range(0, len(paths), _DECODE_CHUNK):
                chunk = paths[start : start + _DECODE_CHUNK]
                for i, result in enumerate(pool.map(lambda p: decode(p, size, mode), chunk), start):
                    if isinstance(result, str):
                        keep[i] = False
                        skipped.append((i, result))
                        store[i] = 0
                    else:
                        store[i] = np.rint(result * 255.0).astype(np.uint8)
        store.flush()
        del store
        os.replace(tmp, data)  # a store is complete or absent, never half-written
    finally:
        tmp.unlink(missing_ok=True)
    meta_tmp = meta.with_name(f"{key}.{os.getpid()}.tmp.json")
    meta_tmp.write_text(json.dumps({"skipped": skipped}))
    os.replace(meta_tmp, meta)
    return np.load(data, mmap_mode="r"), keep, [(paths[i], why) for i, why in skipped]
