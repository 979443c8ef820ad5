"""A directory of class sub-folders of images: ``dataset=image_folder dataset.path=DIR``.

``DIR/<class>/<image>``: each sub-folder is one class. Every image is converted to RGB
(or kept grey when all are grey), resized to ``dataset.image_size`` squared, scaled to
[0, 1] and flattened; ``image_shape`` lets ``model=cnn`` reshape it back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dlrun.config import DatasetConfig
from dlrun.data.table import Table
from dlrun.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"dataset.path: no folder at {root}; give a folder with one sub-folder per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root} has no class sub-folders; put each class's images in DIR/<class>/")
    return folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path, size: int, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err.__class__.__name__}; remove or replace the file") from None


def _colour_mode(files: list[Path]) -> str:
    """``L`` when every image is grey, else ``RGB``."""
    from PIL import Image, UnidentifiedImageError

    for path in files:
        try:
            with Image.open(path) as img:
                if img.mode not in ("L", "1", "I", "I;16", "LA"):
                    return "RGB"
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(
                f"cannot read image {path}: {err.__class__.__name__}; remove or replace the file"
            ) from None
    return "L"


def load(cfg: DatasetConfig) -> Table:
    """Read every image under ``cfg.path``; one class per sub-folder.

    Raises:
        DataError: no such folder, no class sub-folders, a class with no images, or an
            image that cannot be decoded (the message names the file).
    """
    if cfg.path is None:
        raise DataError("dataset=image_folder needs dataset.path=DIR (a folder of class sub-folders)")
    root = Path(str(cfg.path)).expanduser()
    folders = _class_folders(root)
    files = {f.name: _image_files(f) for f in folders}
    empty = [name for name, fs in files.items() if not fs]
    if empty:
        raise DataError(
            f"{root}: class folder(s) {', '.join(map(repr, empty))} hold no images "
            f"({', '.join(IMAGE_SUFFIXES[:4])}, ...)"
        )
    all_files = [p for fs in files.values() for p in fs]
    mode = _colour_mode(all_files)
    size = cfg.image_size
    x = np.stack([_read_image(p, size, mode).reshape(-1) for p in all_files])
    y = np.concatenate([np.full(len(fs), i, dtype=np.int64) for i, fs in enumerate(files.values())])
    channels = 1 if mode == "L" else 3
    task = cfg.task or ("binary" if len(folders) == 2 else "multiclass")
    log.info("read %d images in %d classes from %s", len(y), len(folders), root)
    return Table(
        name=root.name, x=x, y=y, task=task, class_names=list(files), scaled=True,
        image_shape=(size, size, channels),
    )
