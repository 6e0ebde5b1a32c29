"""What a study writes, file by file: PNG images, ``.npy`` maps, ``study.json``, and its size.

Every file is written atomically (a temporary sibling, then a rename:
:mod:`jaxmamba.storage.store`).

>>> png_bytes(np.zeros((4, 6, 3), np.uint8))[:4]
b'\\x89PNG'
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxmamba.errors import StudyError, require
from jaxmamba.models.config import Block
from jaxmamba.storage import store
from jaxmamba.study import layout
from jaxmamba.study.layout import inside


def png_bytes(image, max_side: int | None = None) -> bytes:
    """An image as PNG bytes (Pillow), optionally downscaled so no side exceeds ``max_side``.

    ``image`` is ``(H, W)``, ``(H, W, 1|3|4)``, uint8 or float: floats in [0, 1] are scaled by
    255, floats outside it (e.g. normalised model inputs) are min-max scaled; PNG bytes pass.

    >>> png_bytes(np.zeros((2, 2), np.uint8))[:4]
    b'\\x89PNG'
    """
    if isinstance(image, bytes):
        if not image.startswith(b"\x89PNG"):
            raise StudyError("image bytes must be a PNG file")
        return image
    Image = require("PIL.Image", "plot", "writing images")
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)) or 0 in img.shape:
        raise StudyError(f"an image must be (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        if not np.all(np.isfinite(f)):
            raise StudyError("an image to show contains NaN/inf values")
        lo, hi = float(f.min()), float(f.max())
        if lo < 0.0 or hi > 1.0:  # e.g. mean/std-normalised network input: min-max to [0, 1]
            f = (f - lo) / (hi - lo if hi > lo else 1.0)
        img = np.rint(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)
    im = Image.fromarray(img)
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def digest_array(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:16]


def write_npy(path: Path, array) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, np.float32))
    store.write_bytes_atomic(path, buf.getvalue())


def estimate_bytes(blocks: Sequence[Block], n_orders: int, k_routes: int, route_maps: bool) -> int:
    """Bytes of the maps a study keeps (means, and per-route means when asked).

    >>> from jaxmamba import get_config
    >>> b = get_config("vmamba_tiny_s1l8").block("layers.0.blocks.0", (224, 224))
    >>> estimate_bytes([b], 1, 4, False) / 2**20  # one 56x56 block: 3136 x 3136 float32
    37.515625
    """
    per_order = sum(4 * b.length**2 for b in blocks)
    return n_orders * per_order * (1 + (k_routes if route_maps else 0))


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def save_meta(out: Path, meta: dict) -> None:
    store.write_text_atomic(inside(out, *layout.study_file()), json.dumps(meta, indent=1) + "\n")
