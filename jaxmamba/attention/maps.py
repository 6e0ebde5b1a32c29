"""Attention maps per block as one typed value: :class:`AttentionMaps`, a dataclass pytree.

What :func:`jaxmamba.extract_attention` and :func:`jaxmamba.attention_mean` return: the maps
(the pytree's leaves, in the blocks' forward order) with what describes them (the blocks and
their grids, the order, the options, how many images a mean holds and how many it left out),
which is static: it survives ``jit``, ``grad`` and ``jax.tree.map`` unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np

from jaxmamba.attention.options import AttentionOptions
from jaxmamba.models.config import Block
from jaxmamba.orders import Order

__all__ = ["AttentionMaps"]


@jax.tree_util.register_pytree_with_keys_class
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class AttentionMaps(Mapping[str, Any]):
    """Attention maps per block, with what describes them; reads like ``{block name: map}``.

    Attributes:
      maps: ``{block name: map}``.
      blocks: the :class:`~jaxmamba.models.config.Block` of every map (name, stage, index, grid),
        in forward order.
      order: the :class:`~jaxmamba.orders.Order` scanned, or ``"soft:<digest>"`` / ``"soft"``
        for soft routes.
      options: the :class:`~jaxmamba.attention.options.AttentionOptions` the maps were made with.
      count: how many images each map averages (:func:`jaxmamba.attention_mean`), or ``None``
        for per-image maps, whose first axis is the batch (:func:`jaxmamba.extract_attention`).
      skipped: images left out of a mean because they held NaN or inf pixels.

    A pytree: the maps are its leaves (in forward order, keyed by block name), everything else is
    static, so it passes through ``jit``, ``grad`` and ``jax.tree.map`` whole. Each map is
    ``([B,] L, L)``, ``([B,] K, L, L)`` with ``route_mode="each"``, a channel subset adds a
    channel axis after the route axis; rows are query patches p, columns source patches q,
    row-major on the block's grid.

    >>> import jax, numpy as np
    >>> from jaxmamba.models.config import Block
    >>> maps = AttentionMaps({"layers.0.blocks.0": np.ones((4, 4))},
    ...                      [Block("layers.0.blocks.0", 0, 0, (2, 2))], "cross",
    ...                      AttentionOptions(), count=5, skipped=3)
    >>> half = jax.tree.map(lambda a: a / 2, maps)
    >>> half["layers.0.blocks.0"][0, 0], half.count, half.skipped, half.grid("layers.0.blocks.0")
    (np.float64(0.5), 5, 3, (2, 2))
    """

    maps: Mapping[str, Any]
    blocks: tuple[Block, ...]
    order: Order | str
    options: AttentionOptions
    count: int | None = None
    skipped: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "maps", dict(self.maps))
        object.__setattr__(self, "blocks", tuple(self.blocks))

    # Mapping: block name -> map
    def __getitem__(self, name: str):
        return self.maps[name]

    def __iter__(self) -> Iterator[str]:
        return iter(b.name for b in self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def block(self, name: str) -> Block:
        """The :class:`~jaxmamba.models.config.Block` of ``name``."""
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)

    def grid(self, name: str) -> tuple[int, int]:
        """The patch grid ``(h, w)`` of block ``name``."""
        return self.block(name).grid

    @property
    def order_name(self) -> str:
        """The order's display name (``"cross"``, ``"custom"``, ``"soft"`` ...)."""
        return self.order if isinstance(self.order, str) else self.order.name

    def replace(self, **changes) -> AttentionMaps:
        """A copy with ``changes`` (field name -> value)."""
        return dataclasses.replace(self, **changes)

    def tree_flatten_with_keys(self):
        children = [(jax.tree_util.DictKey(b.name), self.maps[b.name]) for b in self.blocks]
        return children, (self.blocks, self.order, self.options, self.count, self.skipped)

    @classmethod
    def tree_unflatten(cls, aux, leaves) -> AttentionMaps:
        blocks, order, options, count, skipped = aux
        maps = dict(zip((b.name for b in blocks), leaves, strict=True))
        return cls(maps, blocks, order, options, count, skipped)

    def __repr__(self) -> str:
        what = "per image" if self.count is None else f"mean of {self.count} images"
        if self.skipped:
            what += f", {self.skipped} skipped"
        shapes = ", ".join(f"{b.name}: {tuple(np.shape(self.maps[b.name]))}" for b in self.blocks)
        return f"AttentionMaps({self.order_name}, {what}; {shapes})"
