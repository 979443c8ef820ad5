"""A directory of class sub-folders of images: ``dataset=image_folder dataset.path=DIR``.

``DIR/<class>/<image>``: each sub-folder is one class. Every image is converted to RGB
(or kept grey when all are grey), resized to ``dataset.image_size`` squared, scaled to
[0, 1] and flattened; ``image_shape`` lets ``model=cnn`` reshape it back. A folder that
comes split (Fruits-360's ``Training``/``Test``) gives its test half as
``dataset.test_path``, with the same class sub-folders.

Files that are not images by their suffix are ignored; images that cannot be decoded
(truncated, corrupt, or too large to open safely) are skipped, counted and named in the
log, so one bad file never stops a run halfway; a class left without a readable image, or
a folder with a single class, is refused in one line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dlrun.config import DatasetConfig
from dlrun.data.image_store import ImageRows, decode_to_store, default_cache_dir
from dlrun.data.table import Table
from dlrun.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GREY_MODES = ("L", "1", "I", "I;16", "LA")
# Skipped files named in the log line (the count is always complete).
_NAMED_SKIPS = 5


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"dataset.path: no folder at {root}; give a folder with one sub-folder per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root} has no class sub-folders; put each class's images in DIR/<class>/")
    return folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _header_mode(path: Path) -> str | None:
    """The image's colour mode from its header (no pixels decoded); None when unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _pixels(path: Path, size: int, mode: str) -> np.ndarray | str:
    """The image as a flat float array in [0, 1], or the reason it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.float32).reshape(-1) / 255.0
    except Image.DecompressionBombError:
        return "too many pixels to open safely (Pillow's decompression-bomb guard)"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        return f"cannot be decoded ({type(err).__name__})"


def decode_file(path: Path, size: int, mode: str) -> np.ndarray | str:
    """One image as the model saw its training images (``dlrun-predict`` reads new ones
    with it): a flat float array in [0, 1], or the reason it cannot be read."""
    return _pixels(path, size, mode)


def _scan(root: Path, classes: list[str] | None) -> dict[str, list[Path]]:
    """Image files per class folder; ``classes`` (a training folder's) must cover them all."""
    folders = _class_folders(root)
    files = {f.name: _image_files(f) for f in folders}
    if classes is not None:
        unknown = sorted(set(files) - set(classes))
        if unknown:
            raise DataError(f"dataset.test_path {root} has class folder(s) {', '.join(map(repr, unknown))} "
                            f"that dataset.path does not; both need the same class sub-folders")
    empty = [name for name, fs in files.items() if not fs]
    if empty:
        raise DataError(
            f"{root}: class folder(s) {', '.join(map(repr, empty))} hold no images "
            f"({', '.join(IMAGE_SUFFIXES[:4])}, ...)"
        )
    return files


def _report(root: Path, n_files: int, skipped: list[tuple[Path, str]]) -> None:
    if skipped:
        named = "; ".join(f"{p.relative_to(root)}: {why}" for p, why in skipped[:_NAMED_SKIPS])
        more = f"; and {len(skipped) - _NAMED_SKIPS} more" if len(skipped) > _NAMED_SKIPS else ""
        log.warning("skipped %d of %d files in %s that are not readable images: %s%s",
                    len(skipped), n_files, root, named, more)


def _refuse_bare(root: Path, files: dict[str, list[Path]], codes: np.ndarray, keep: np.ndarray,
                 class_names: list[str], n_skipped: int) -> None:
    bare = [c for c in files if not keep[codes == class_names.index(c)].any()]
    if bare:
        raise DataError(f"{root}: class folder(s) {', '.join(map(repr, bare))} hold no readable image "
                        f"({n_skipped} file(s) skipped as unreadable); fix or remove them")


def _codes(files: dict[str, list[Path]], class_names: list[str]) -> np.ndarray:
    return np.concatenate([np.full(len(fs), class_names.index(c), dtype=np.int64) for c, fs in files.items()])


def _decode(roots: list[tuple[Path, dict[str, list[Path]]]], class_names: list[str], *, size: int, mode: str):
    """Flat pixel rows of every root (one array, filled in place: a test folder is not
    concatenated, which would hold the pixels twice), their class codes, the number of
    unreadable files dropped (each reported) and where each root's rows start."""
    n_files = sum(len(fs) for _, files in roots for fs in files.values())
    x = np.empty((n_files, size * size * (1 if mode == "L" else 3)), dtype=np.float32)
    codes_kept, n_skipped, starts, filled = [], 0, [], 0
    for root, files in roots:
        starts.append(filled)
        paths = [p for fs in files.values() for p in fs]
        codes = _codes(files, class_names)
        skipped, keep = [], np.ones(len(paths), dtype=bool)
        for i, path in enumerate(paths):
            pixels = _pixels(path, size, mode)
            if isinstance(pixels, str):
                skipped.append((path, pixels))
                keep[i] = False
            else:
                x[filled] = pixels
                filled += 1
        _report(root, len(paths), skipped)
        _refuse_bare(root, files, codes, keep, class_names, len(skipped))
        codes_kept.append(codes[keep])
        n_skipped += len(skipped)
    return x[:filled], np.concatenate(codes_kept), n_skipped, starts


def _decode_streamed(roots: list[tuple[Path, dict[str, list[Path]]]], class_names: list[str], *,
                     size: int, mode: str, cache_dir: Path):
    """Like :func:`_decode` for every folder at once, into an on-disk store (see
    :mod:`dlrun.data.image_store`): rows read on demand, their codes, the skipped count and
    where each folder's rows start."""
    paths = [p for _, files in roots for fs in files.values() for p in fs]
    store, keep, skipped = decode_to_store(paths, size=size, mode=mode, cache_dir=cache_dir, decode=_pixels)
    codes, starts, offset = [], [], 0
    for root, files in roots:
        n = sum(map(len, files.values()))
        mine = [(p, why) for p, why in skipped if p.is_relative_to(root)]
        _report(root, n, mine)
        folder_codes = _codes(files, class_names)
        _refuse_bare(root, files, folder_codes, keep[offset : offset + n], class_names, len(mine))
        codes.append(folder_codes)
        starts.append(int(keep[:offset].sum()))
        offset += n
    return ImageRows(store, np.flatnonzero(keep)), np.concatenate(codes)[keep], len(skipped), starts


def _streams(cfg: DatasetConfig, n_images: int, pixels: int) -> bool:
    """``dataset.stream``: true, false, or auto (stream when the float32 array would take
    more than a quarter of the memory available now)."""
    choice = str(cfg.stream).lower()
    if choice in ("true", "false"):
        return choice == "true"
    if choice != "auto":
        raise DataError(f"dataset.stream={cfg.stream!r} is not one of: auto, true, false")
    import psutil

    return n_images * pixels * 4 > psutil.virtual_memory().available / 4


def load(cfg: DatasetConfig) -> Table:
    """Read every image under ``cfg.path`` (and ``cfg.test_path``); one class per sub-folder.

    Raises:
        DataError: no such folder, no class sub-folders, a single class, a class with no
            (readable) images, or a test folder with classes the training folder lacks.
    """
    if cfg.path is None:
        raise DataError("dataset=image_folder needs dataset.path=DIR (a folder of class sub-folders)")
    root = Path(str(cfg.path)).expanduser()
    files = _scan(root, None)
    if len(files) < 2:
        raise DataError(f"{root} has a single class folder ({next(iter(files))!r}); classification needs "
                        "at least two, one sub-folder per class")
    class_names = list(files)
    test_root = Path(str(cfg.test_path)).expanduser() if cfg.test_path else None
    test_files = _scan(test_root, class_names) if test_root else {}
    every = [p for fs in (*files.values(), *test_files.values()) for p in fs]
    modes = [m for m in map(_header_mode, every) if m is not None]
    mode = "L" if modes and all(m in _GREY_MODES for m in modes) else "RGB"
    size = cfg.image_size
    channels = 1 if mode == "L" else 3
    stream = _streams(cfg, len(every), size * size * channels)
    roots = [(root, files)] + ([(test_root, test_files)] if test_root else [])
    if stream:
        cache_dir = Path(str(cfg.cache_dir)).expanduser() if cfg.cache_dir else default_cache_dir()
        x, y, skipped, starts = _decode_streamed(roots, class_names, size=size, mode=mode, cache_dir=cache_dir)
    else:
        x, y, skipped, starts = _decode(roots, class_names, size=size, mode=mode)
    test_rows = np.arange(starts[1], len(y)) if test_root else None
    task = cfg.task or ("binary" if len(class_names) == 2 else "multiclass")
    log.info("%s %d images in %d classes from %s%s", "streaming" if stream else "read", len(y),
             len(class_names), root, f" ({skipped} unreadable skipped)" if skipped else "")
    return Table(
        name=root.name, x=x, y=y, task=task, class_names=class_names, scaled=True,
        image_shape=(size, size, channels), test_rows=test_rows,
        notes={"images": {"streamed": stream, "skipped_files": skipped}},
    )
