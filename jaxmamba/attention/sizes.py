"""How large attention maps are and how many are made at once: the one owner of the byte rules.

:func:`map_shape` is the shape of one image's map of a block; :data:`STEP_BYTES` the budget for
the maps made at once, which :func:`scans_at_once` (scans whose maps the tiled products make
together, :mod:`jaxmamba.attention.extract`) and :func:`step_images` (images per step of the
streamed mean, :mod:`jaxmamba.attention.mean`) apply, and :mod:`jaxmamba.attention.cost` predicts
memory from.
"""

from __future__ import annotations

from jaxmamba.attention.options import AttentionOptions
from jaxmamba.models.config import Block

__all__ = ["STEP_BYTES", "map_shape", "scans_at_once", "step_images"]

STEP_BYTES = 2**28  # what the maps made at once (one step of a block group) may hold


def map_shape(block: Block, k: int, options: AttentionOptions) -> tuple[int, ...]:
    """The shape of one image's map of ``block`` under ``options`` with ``k`` routes:
    ``(L, L)`` (L the block's tokens, :attr:`~jaxmamba.models.config.Block.length`),
    ``(K, L, L)`` with ``route_mode="each"``, a channel subset's axis ``C`` before ``L, L``.

    >>> from jaxmamba.models.config import get_config
    >>> block = get_config("vmamba_test").block("layers.3.blocks.0", (64, 64))
    >>> map_shape(block, 4, AttentionOptions(route_mode="each", channels=(0, 1, 2)))
    (4, 3, 4, 4)
    """
    l = block.length
    shape: tuple[int, ...] = (l, l)
    if not isinstance(options.channels, str):
        shape = (len(options.channels),) + shape
    return (k,) + shape if options.route_mode == "each" else shape


def scans_at_once(scans: int, k: int, length: int) -> int:
    """How many of ``scans`` scans (one image's block each) of ``k`` routes over ``length``
    positions the tiled products make the channel-mean maps of together: as many as fit
    :data:`STEP_BYTES` (the routes' maps, their sum and the top-level key tensors), at least one.

    >>> scans_at_once(16, 4, 3136), scans_at_once(16, 4, 784), scans_at_once(16, 4, 196)
    (1, 10, 16)
    """
    per_scan = (2 * k + 2) * length * length * 4
    return max(1, min(scans, STEP_BYTES // per_scan))


def step_images(blocks: int, length: int, k: int, channels: int, images: int) -> int:
    """How many images of one device a step of :func:`~jaxmamba.attention.mean.mean_step` makes
    the maps of a group of ``blocks`` blocks of ``length`` patches for: as many as fit
    :data:`STEP_BYTES` (each of the ``k`` routes' maps of ``channels`` channels, their sum and
    the tiled products' keys, per block and image), at least one, at most ``images``.

    >>> step_images(2, 3136, 4, 1, 8), step_images(8, 196, 4, 1, 8)
    (1, 8)
    """
    per_image = blocks * (2 * k * channels + 2) * length * length * 4
    return max(1, min(images, STEP_BYTES // per_image))
