"""A study of planted maps at a real model's sizes: :func:`write_synthetic_study`.

For testing and timing the views at scale, not for science.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxmamba.attention.options import AttentionOptions
from jaxmamba.errors import StudyError
from jaxmamba.orders import as_order
from jaxmamba.storage import store
from jaxmamba.study import layout
from jaxmamba.study.files import png_bytes, save_meta, write_npy
from jaxmamba.study.layout import inside
from jaxmamba.study.reader import Study
from jaxmamba.study.schema import FORMAT, SYNTHETIC_MODEL, VERSION

__all__ = ["write_synthetic_study"]


def write_synthetic_study(
    out_dir: str | os.PathLike,
    variant: str = "vmamba_tiny_s1l8",
    image_size: int = 224,
    *,
    orders: Sequence[str] = ("cross", "diagonal", "morton", "spiral"),
    n_images: int = 4,
    seed: int = 0,
) -> Study:
    """A study of planted maps at a real model's sizes, computed in seconds: for testing and
    timing the views at scale (e.g. VMamba-T at 224²: 14 blocks, 56x56 grids), not for science.

    Each block's map is signed, local attention (a Gaussian of the grid distance whose width
    grows with the stage) minus a smaller, order-dependent term (decaying with the distance in
    scan order); the scatterplot coordinates are the patches' grid positions plus noise, and the
    images are noise.  ``study.json`` says ``"synthetic": true``.

    >>> import tempfile
    >>> s = write_synthetic_study(tempfile.mkdtemp() + "/s", "vmamba_test", 64, orders=["cross"])
    >>> [b.grid for b in s.blocks][:2], s.meta["synthetic"]
    ([(16, 16), (8, 8)], True)
    """
    from jaxmamba.models.config import get_config

    config = get_config(variant)
    out = Path(out_dir).expanduser().absolute()
    if out.exists():
        raise StudyError(f"{out} exists; a synthetic study is written into a new folder")
    rng = np.random.default_rng(seed)
    blocks = [config.block(n, (image_size, image_size)) for n in config.block_names()]
    options = AttentionOptions()
    meta = {
        "format": FORMAT, "version": VERSION, "synthetic": True,
        "title": f"synthetic study at the sizes of {variant} ({image_size}x{image_size})",
        "models": {SYNTHETIC_MODEL: {"description": f"{variant} sizes, planted maps",
                                 "config": None, "params_digest": None, "source": None}},
        "orders": [{"name": o, "model": SYNTHETIC_MODEL, "routes": config.k_routes}
                   for o in orders],
        "blocks": [{"name": b.name, "stage": b.stage, "index": b.index, "grid": list(b.grid)}
                   for b in blocks],
        "image_size": [image_size, image_size],
        "images": [{"name": f"noise {i}"} for i in range(n_images)],
        "methods": ["pca"], "route_maps": False,
        "options": {**options.to_dict(), "signed": True}, "seed": seed,
        "count": n_images, "complete": False,
    }  # fmt: skip
    out.mkdir(parents=True)
    for i in range(n_images):
        noise = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        store.write_bytes_atomic(inside(out, *layout.image(i)), png_bytes(noise))
    for b in blocks:
        h, w = b.grid
        r, c = np.divmod(np.arange(b.length), w)
        d2 = ((r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2).astype(np.float32)
        local = np.exp(-d2 / np.float32(2.0 * (1.5 + b.stage + 0.3 * b.index) ** 2))
        for o in orders:
            pos = np.argsort(as_order(o).routes(h, w)[0]).astype(np.float32)  # scan position
            seq = np.exp(-np.abs(pos[:, None] - pos[None]) / np.float32(4.0 + 2 * b.index))
            m = (local - 0.3 * seq) / np.float32(b.length)
            write_npy(inside(out, *layout.mean(o, b.name)), m)
            xy = np.stack([c, -r], axis=1) + rng.normal(0, 0.15, (b.length, 2))
            write_npy(inside(out, *layout.embedding(o, b.name, "pca")), xy)
    meta["complete"] = True
    save_meta(out, meta)
    return Study(out)
