"""The one rule between PyTorch state-dict names and the parameter tree, and tree utilities.

A state-dict key's numeric segments join the segment before them with ``_``:
``layers.0.blocks.1.op.A_logs`` ↔ ``("layers_0", "blocks_1", "op", "A_logs")``. Shapes are
PyTorch's unchanged. No torch needed here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["key_to_path", "path_to_key", "flatten", "unflatten", "count", "digest"]

_SEGMENT = re.compile(r"^(.*)_(\d+)$")


def key_to_path(key: str) -> tuple[str, ...]:
    """``"layers.0.blocks.1.op.A_logs"`` → ``("layers_0", "blocks_1", "op", "A_logs")``.

    >>> key_to_path("patch_embed.0.weight")
    ('patch_embed_0', 'weight')
    """
    path: list[str] = []
    for seg in key.split("."):
        if seg.isdigit() and path:
            path[-1] = f"{path[-1]}_{seg}"
        else:
            path.append(seg)
    return tuple(path)


def path_to_key(path: tuple[str, ...]) -> str:
    """Inverse of :func:`key_to_path`.

    >>> path_to_key(("layers_0", "downsample_1", "weight"))
    'layers.0.downsample.1.weight'
    """
    segs: list[str] = []
    for p in path:
        m = _SEGMENT.match(p)
        segs.extend([m.group(1), m.group(2)] if m else [p])
    return ".".join(segs)


def flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Nested dict → ``{path: leaf}`` (a leaf is whatever the tree holds: an array, a shape
    struct, Orbax metadata)."""
    out: dict[tuple[str, ...], Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def unflatten(flat: Mapping[tuple[str, ...], object]) -> dict:
    """``{path: leaf}`` → nested dict."""
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = v
    return tree


def count(tree: Mapping) -> int:
    """Number of scalar parameters in a tree."""
    return int(sum(np.prod(np.shape(v)) for v in flatten(tree).values()))


def digest(tree: Mapping) -> str:
    """A content digest of a parameter tree: its keys, shapes, dtypes and values (sha256, 16 hex).

    Two trees have the same digest exactly when they hold the same numbers under the same names;
    a study or a resumed mean records it to know which weights made its maps.

    >>> ones, zeros = {"w": np.ones((2, 2), np.float32)}, {"w": np.zeros((2, 2), np.float32)}
    >>> digest(ones) == digest({"w": np.ones((2, 2), np.float32)}), digest(ones) == digest(zeros)
    (True, False)
    """
    h = hashlib.sha256()
    for path, leaf in sorted(flatten(tree).items()):
        value = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{path_to_key(path)}:{value.dtype.str}:{value.shape};".encode())
        h.update(value.tobytes())
    return h.hexdigest()[:16]
