"""Reading real images for a model: decode, resize, centre-crop, ImageNet normalisation.

Decoding uses Pillow (installed with matplotlib, the ``[plot]`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from jaxmamba.errors import ImageError, require

__all__ = [
    "ImageError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "list_images",
    "load_image",
    "load_images",
]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def list_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files named by ``paths`` (files, or folders searched for image suffixes), sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            raise ImageError(f"no such file or folder: {p}")
    if not found:
        raise ImageError(f"no images found in {', '.join(map(str, paths))}")
    return found


def load_image(path: str | os.PathLike, size: int = 224, *, crop_ratio: float = 0.875):
    """One image as the model takes it, and as it looks.

    The shorter side is resized to ``size / crop_ratio`` (bicubic), the centre ``size × size``
    is cropped (the timm / VMamba evaluation transform), then ImageNet mean/std normalisation.

    Returns:
      ``(normalised (size, size, 3) float32, display (size, size, 3) uint8)``.
    """
    pil = require("PIL.Image", "plot", "reading images")
    Image, UnidentifiedImageError = pil, pil.UnidentifiedImageError
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = size / crop_ratio / min(im.size)
            w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
            im = im.resize((w, h), Image.BICUBIC)
            left, top = (w - size) // 2, (h - size) // 2
            display = np.asarray(im.crop((left, top, left + size, top + size)), np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from e
    normalised = (display.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return normalised, display


def load_images(paths, size: int = 224):
    """Images under ``paths`` (files or folders): ``(normalised (N, S, S, 3), display, files)``."""
    files = list_images(paths)
    pairs = [load_image(f, size) for f in files]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), files
