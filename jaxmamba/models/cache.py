"""What :func:`~jaxmamba.models.model.run_with_cache` keeps: each selected block's scan input and
output, as typed values.

A :class:`ScanCache` reads like ``{block name: BlockScan}`` (TransformerLens's
``ActivationCache`` is the model); a :class:`BlockScan` holds one VMamba block's ``x`` (the SS2D
scan input) and ``y`` (its cross-merged scan output), both ``(B, D, L)`` in row-major spatial
order; a :class:`LayerScan` one Vim layer's per-direction scan input and output and its gate.
All are pytrees (the arrays are the leaves), so they leave a ``jit`` and pass through
``jax.tree.map``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Literal

import jax
import numpy as np
from jaxtyping import Array, Float

__all__ = ["BlockScan", "LayerScan", "ScanCache"]


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


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LayerScan:
    """One Vim layer's scan inputs and outputs, in token order (CLS token at ``M // 2``).

    Attributes:
      x: ``(B, K, D, L)`` direction k's scan input (its causal conv + SiLU output), put back in
        token order (``x[:, 1]`` is the backward scan's ``u`` flipped along L); direction k's
        scan reads it along its route: ``jaxmamba.models.vim.to_scan_order(x, routes)``. Under
        soft routes ``R`` it is ``Rᵀ u`` (:func:`~jaxmamba.models.vim.to_token_order`), which
        does not give ``u`` back.
      y: ``(B, K, D, L)`` direction k's scan output (``D·u`` included, before the gate), in
        token order (``Rᵀ`` of it under soft routes ``R``).
      z: ``(B, D, L)`` the gate before its SiLU, in token order (each direction multiplies its
        output by ``SiLU(z)`` at the same token).
      u: ``None`` under hard routes (``x`` is exact); under soft routes ``(B, K, D, L)`` each
        direction's scan input in its own scan order, what the attention needs (the causal conv
        runs after the routing, so no token-order array determines it).

    The layer's merged output (the input of ``out_proj``) is ``0.5 · SiLU(z) · (y[:, 0] +
    y[:, 1])``. ``scan["x"]`` reads like ``scan.x`` (``x``, ``y``, ``z``); :meth:`scan_input` is
    the input the attention takes (``u`` where kept, else ``x``).
    """

    x: Float[Array, "b k d l"]
    y: Float[Array, "b k d l"]
    z: Float[Array, "b d l"]
    u: Float[Array, "b k d l"] | None = None

    def __getitem__(self, key: Literal["x", "y", "z"]) -> Array:
        if key in ("x", "y", "z"):
            return getattr(self, key)
        raise KeyError(key)

    def scan_input(self) -> Float[Array, "b k d l"]:
        """What :func:`~jaxmamba.attention.extract.block_attention` takes: ``x`` (token order)
        under hard routes, ``u`` (each direction's scan order) under soft ones."""
        return self.x if self.u is None else self.u


@jax.tree_util.register_pytree_with_keys_class
class ScanCache(Mapping[str, BlockScan | LayerScan]):
    """The scan input and output of each cached block, by official name, in forward order.

    ``cache["layers.0.blocks.0"]`` is a :class:`BlockScan` (VMamba), ``cache["layers.3"]`` a
    :class:`LayerScan` (Vim); :meth:`scan_input` and :meth:`scan_output` give their ``x`` and
    ``y``. A pytree whose leaves are the arrays.

    >>> import jax.numpy as jnp
    >>> x = jnp.ones((1, 8, 16))
    >>> cache = ScanCache({"layers.0.blocks.0": BlockScan(x, x)})
    >>> cache
    ScanCache(1 block, x and y (B, D, L): layers.0.blocks.0 (1, 8, 16))
    >>> cache.scan_input("layers.0.blocks.0").shape, cache["layers.0.blocks.0"]["y"].shape
    ((1, 8, 16), (1, 8, 16))
    """

    def __init__(self, scans: Mapping[str, BlockScan | LayerScan] | None = None) -> None:
        self._scans: dict[str, BlockScan | LayerScan] = dict(scans or {})

    def __getitem__(self, name: str) -> BlockScan | LayerScan:
        try:
            return self._scans[name]
        except KeyError:
            raise KeyError(f"{name!r} is not cached; the cache holds {list(self._scans)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._scans)

    def __len__(self) -> int:
        return len(self._scans)

    def scan_input(self, name: str) -> Array:
        """Block ``name``'s scan input as the attention takes it: ``x`` ``(B, D, L)`` (VMamba),
        ``(B, K, D, L)`` (Vim: ``x`` in token order, or under soft routes ``u``, each direction's
        in its own scan order; :meth:`LayerScan.scan_input`)."""
        scan = self[name]
        return scan.scan_input() if isinstance(scan, LayerScan) else scan.x

    def scan_output(self, name: str) -> Array:
        """Block ``name``'s scan output ``y``: ``(B, D, L)`` cross-merged (VMamba),
        ``(B, K, D, L)`` per direction (Vim)."""
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
        what = "x and y (B, D, L)"
        if all(isinstance(v, LayerScan) for v in self._scans.values()):
            what = "x and y (B, K, D, L), z (B, D, L)"
        return f"ScanCache({n} block{'s' if n > 1 else ''}, {what}: {shapes})"
