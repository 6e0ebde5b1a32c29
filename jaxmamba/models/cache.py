"""What :func:`~jaxmamba.models.model.run_with_cache` keeps: each selected block's scan input and
output, as typed values.

A :class:`ScanCache` reads like ``{block name: BlockScan}`` (TransformerLens's
``ActivationCache`` is the model); a :class:`BlockScan` holds one block's ``x`` (the SS2D scan
input) and ``y`` (its cross-merged scan output), both ``(B, D, L)`` in row-major spatial order.
Both are pytrees (the arrays are the leaves), so they leave a ``jit`` and pass through
``jax.tree.map``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Literal

import jax
import numpy as np
from jaxtyping import Array, Float

__all__ = ["BlockScan", "ScanCache"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BlockScan:
    """One SS2D block's scan input ``x`` and cross-merged scan output ``y``, both ``(B, D, L)``.

    ``x`` is the feature map after in_proj, the depthwise conv and SiLU; ``y`` the sum over
    routes of the scan outputs put back in spatial order (the input of ``out_norm``).
    ``scan["x"]`` reads like ``scan.x``.
    """

    x: Float[Array, "b d l"]
    y: Float[Array, "b d l"]

    def __getitem__(self, key: Literal["x", "y"]) -> Float[Array, "b d l"]:
        if key == "x":
            return self.x
        if key == "y":
            return self.y
        raise KeyError(key)


@jax.tree_util.register_pytree_with_keys_class
class ScanCache(Mapping[str, BlockScan]):
    """The scan input and output of each cached block, by official name, in forward order.

    ``cache["layers.0.blocks.0"]`` is a :class:`BlockScan`; :meth:`scan_input` and
    :meth:`scan_output` give its arrays. A pytree whose leaves are the arrays.

    >>> import jax.numpy as jnp
    >>> x = jnp.ones((1, 8, 16))
    >>> cache = ScanCache({"layers.0.blocks.0": BlockScan(x, x)})
    >>> cache
    ScanCache(1 block, x and y (B, D, L): layers.0.blocks.0 (1, 8, 16))
    >>> cache.scan_input("layers.0.blocks.0").shape, cache["layers.0.blocks.0"]["y"].shape
    ((1, 8, 16), (1, 8, 16))
    """

    def __init__(self, scans: Mapping[str, BlockScan] | None = None) -> None:
        self._scans: dict[str, BlockScan] = dict(scans or {})

    def __getitem__(self, name: str) -> BlockScan:
        try:
            return self._scans[name]
        except KeyError:
            raise KeyError(f"{name!r} is not cached; the cache holds {list(self._scans)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._scans)

    def __len__(self) -> int:
        return len(self._scans)

    def scan_input(self, name: str) -> Float[Array, "b d l"]:
        """Block ``name``'s scan input ``x`` ``(B, D, L)``."""
        return self[name].x

    def scan_output(self, name: str) -> Float[Array, "b d l"]:
        """Block ``name``'s cross-merged scan output ``y`` ``(B, D, L)``."""
        return self[name].y

    def tree_flatten_with_keys(self):
        names = tuple(self._scans)
        return [(jax.tree_util.DictKey(n), self._scans[n]) for n in names], names

    @classmethod
    def tree_unflatten(cls, names, children) -> ScanCache:
        return cls(dict(zip(names, children, strict=True)))

    def __repr__(self) -> str:
        if not self._scans:
            return "ScanCache(no blocks)"
        n = len(self._scans)
        shapes = ", ".join(f"{k} {tuple(np.shape(v.x))}" for k, v in self._scans.items())
        return f"ScanCache({n} block{'s' if n > 1 else ''}, x and y (B, D, L): {shapes})"
