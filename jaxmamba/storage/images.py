"""Reading real images for a model: decode, resize, centre-crop, ImageNet normalisation.

Decoding uses Pillow (installed with matplotlib, the ``[plot]`` extra).
"""

from __future__ import annotations

import numbers
import os
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from jaxmamba.errors import ImageError, require

__all__ = [
    "ImageError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "file_kind",
    "list_images",
    "load_image",
    "load_images",
]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# The most pixels the resized image (short side size / crop_ratio) may have, and the most its
# area may exceed the square crop's: an aspect ratio above 16:1 (a 60000x1 strip would ask for
# gigabytes when resized) is refused before anything is decoded.
MAX_RESIZED_PIXELS = 64_000_000
MAX_ASPECT = 16


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words (for messages).

    >>> import stat
    >>> file_kind(stat.S_IFIFO), file_kind(stat.S_IFREG)
    ('a FIFO', 'a regular file')
    """
    kinds = (
        (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )  # fmt: skip
    return next((word for test, word in kinds if test(mode)), "a special file")


def list_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files named by ``paths`` (files, or folders searched for image suffixes), sorted.

    A path that is neither a regular file nor a folder (a FIFO, a device, a socket) is refused
    by name; nothing is opened.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]  # one path, not its characters
    if not isinstance(paths, Iterable):
        raise ImageError(f"image paths must be a list of paths, got {type(paths).__name__}")
    resolved = [_path(p) for p in paths]
    if not resolved:
        raise ImageError("no image paths given; name files or folders")
    found: list[Path] = []
    for p in resolved:
        try:
            mode = p.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise ImageError(f"no such file or folder: {p}") from None
        except ValueError as e:  # a NUL byte in the name
            raise ImageError(f"cannot read {str(p)!r}: {e}") from None
        except OSError as e:
            raise ImageError(f"cannot read {p}: {e.strerror or e}") from None
        if stat.S_ISDIR(mode):
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in SUFFIXES)
        elif stat.S_ISREG(mode):
            found.append(p)
        else:
            raise ImageError(f"{p} is not a regular file or folder ({file_kind(mode)})")
    if not found:
        raise ImageError(f"no images found in {', '.join(map(str, resolved))}")
    return found


def _path(item) -> Path:
    """One path of :func:`list_images` as a :class:`Path`; an empty one (``Path("")`` is the
    current folder, which was never asked for) or one that is not a ``str``/``os.PathLike`` of
    text is refused by name.

    >>> _path("")
    Traceback (most recent call last):
    jaxmamba.errors.ImageError: an image path is empty (''); name a file or folder
    """
    text = os.fspath(item) if isinstance(item, str | os.PathLike) else None
    if not isinstance(text, str):
        raise ImageError(f"an image path must be a str or path, got {type(item).__name__}")
    if not text:
        raise ImageError("an image path is empty (''); name a file or folder")
    return Path(text)


# Pillow modes of grey images with 16 bits per pixel; 16-bit RGB(A) and LA PNGs open as 8-bit
# "RGB"/"RGBA" (Pillow keeps the high byte), which is the right scale already.
_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N")


def _to_rgb(im, path: Path):
    """``im`` as an 8-bit RGB Pillow image, scaled by its real bit depth, or :class:`ImageError`.

    16-bit grey (and Pillow's 32-bit "I" mode of a 16-bit PNG) is divided by 257 (65535 → 255);
    palette images with transparency and images with alpha lose the alpha (as the timm / VMamba
    loaders do); CMYK uses Pillow's conversion.  32-bit integer or float images, whose range the
    file does not say, are refused by name.
    """
    image = require("PIL.Image", "plot", "reading images")
    mode = im.mode
    if mode in _GREY16 or (mode == "I" and im.format == "PNG"):  # a PNG holds at most 16 bits
        grey = np.asarray(im, dtype=np.float64)
        return image.fromarray(np.round(grey / 257.0).clip(0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("I", "F") or mode.startswith("I;"):
        kind = "a floating-point" if mode == "F" else "an integer"
        raise ImageError(
            f"cannot read image {path}: {kind} image (Pillow mode {mode!r}) has no fixed value "
            "range to scale from; save it as an 8- or 16-bit PNG or JPEG"
        )
    if mode == "P" and "transparency" in im.info or mode == "PA":
        im = im.convert("RGBA")  # Pillow warns when a transparent palette goes straight to RGB
    return im.convert("RGB")


def load_image(path: str | os.PathLike, size: int = 224, *, crop_ratio: float = 0.875):
    """One image as the model takes it, and as it looks.

    The image is turned upright by its EXIF orientation and made 8-bit RGB by its real bit
    depth (16-bit grey is scaled, not clipped; palette, grey, alpha and CMYK images are
    converted; 32-bit integer and float images are refused by name).  Only a regular file is
    opened (a FIFO or device is refused unopened), and an image is refused from its header when
    Pillow's decompression-bomb limit or the resize budget (:data:`MAX_ASPECT`,
    :data:`MAX_RESIZED_PIXELS`) would be exceeded.  The shorter side is
    resized to ``size / crop_ratio`` (bicubic), the centre ``size × size`` is cropped (the timm /
    VMamba evaluation transform), then ImageNet mean/std normalisation.

    Returns:
      ``(normalised (size, size, 3) float32, display (size, size, 3) uint8)``.

    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(f"{tmp}/grey16.png")
    ...     x, shown = load_image(f"{tmp}/grey16.png", size=4)
    >>> x.shape, shown.dtype, int(shown.max())
    ((4, 4, 3), dtype('uint8'), 255)
    """
    if isinstance(size, bool | np.bool_) or not isinstance(size, int | np.integer) or size < 1:
        raise ImageError(f"the image size must be an int >= 1, got {size!r}")
    size = int(size)
    real = isinstance(crop_ratio, numbers.Real) and not isinstance(crop_ratio, bool | np.bool_)
    if not real or not 0 < crop_ratio <= 1:
        raise ImageError(f"crop_ratio must be a number in (0, 1], got {crop_ratio!r}")
    crop_ratio = float(crop_ratio)
    pil = require("PIL.Image", "plot", "reading images")
    ops = require("PIL.ImageOps", "plot", "reading images")
    path = Path(path)
    try:
        with _open_regular(path) as f, _decoded(pil, f, path) as im:
            _check_size(im.size, size, crop_ratio, path)
            im = _to_rgb(ops.exif_transpose(im), path)
            scale = size / crop_ratio / min(im.size)
            w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
            im = im.resize((w, h), pil.BICUBIC)
            left, top = (w - size) // 2, (h - size) // 2
            display = np.asarray(im.crop((left, top, left + size, top + size)), np.uint8)
    except ImageError:
        raise
    except Exception as e:  # Pillow raises many types for damaged or unusual files
        raise ImageError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    normalised = (display.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return normalised, display


def _open_regular(path: Path):
    """``path`` opened for binary reading, or :class:`ImageError` unless it is a regular file.

    Opened non-blocking and checked on the open descriptor: a FIFO never blocks the loader and
    is never read; a file replaced between a check and the open cannot slip through.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ImageError(f"cannot read image {path}: no such file") from None
    except OSError as e:
        raise ImageError(f"cannot read image {path}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ImageError(f"cannot read image {path}: it is {file_kind(mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def _decoded(pil, f, path: Path):
    """Pillow's lazy image of the open file ``f`` (the header only is read); an image above
    Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is an :class:`ImageError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            return pil.open(f)
    except (pil.DecompressionBombError, pil.DecompressionBombWarning) as e:
        raise ImageError(
            f"cannot read image {path}: too many pixels for Pillow's decompression-bomb limit "
            f"(PIL.Image.MAX_IMAGE_PIXELS = {pil.MAX_IMAGE_PIXELS}): {e}"
        ) from None


def _check_size(wh: tuple[int, int], size: int, crop_ratio: float, path: Path) -> None:
    """Refuse, before decoding, an image whose resize to a short side of ``size / crop_ratio``
    would exceed :data:`MAX_RESIZED_PIXELS` or :data:`MAX_ASPECT` times the square's area."""
    w, h = wh
    if w < 1 or h < 1:
        raise ImageError(f"cannot read image {path}: it is {w}x{h} pixels")
    short = size / crop_ratio
    resized = short * short * max(w, h) / min(w, h)
    if resized > MAX_RESIZED_PIXELS or resized > MAX_ASPECT * short * short:
        raise ImageError(
            f"cannot read image {path}: it is {w}x{h} pixels, and its short side resized to "
            f"{round(short)} would make {resized / 1e6:.0f} megapixels; images up to "
            f"{MAX_ASPECT}:1 that resize to at most {MAX_RESIZED_PIXELS / 1e6:.0f} megapixels "
            "are read"
        )


def load_images(paths, size: int = 224):
    """Images under ``paths`` (files or folders): ``(normalised (N, S, S, 3), display, files)``."""
    files = list_images(paths)
    pairs = [load_image(f, size) for f in files]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), files
