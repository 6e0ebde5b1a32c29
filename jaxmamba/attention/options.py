"""How hidden attention is aggregated into one map per block: :class:`AttentionOptions`.

The options say what a map means (how routes and channels are combined, whether the D skip is
included, how each map is normalised); they are one hashable value, static under ``jit``, checked
once when made and passed whole between the extraction's functions. How maps are computed (the
query tile ``chunk``, the scan ``implementation``, the batch slicing) is not an option: it does
not change the maps.
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
from collections.abc import Iterable, Mapping

import numpy as np

from jaxmamba.errors import AttentionError

__all__ = [
    "CHANNEL_MODES",
    "DEFAULT_OPTIONS",
    "MAX_CHANNELS",
    "NORMALIZE_MODES",
    "ROUTE_MODES",
    "AttentionOptions",
    "cut",
    "parse_channels",
]

ROUTE_MODES = ("sum", "each", "nall")
CHANNEL_MODES = ("mean", "abs_mean")
NORMALIZE_MODES = (None, "minmax", "abs_minmax", "absmax", "row")


@dataclasses.dataclass(frozen=True)
class AttentionOptions:
    """How hidden attention is aggregated into one map per block (hashable, static under jit).

    Attributes:
      route_mode: ``"sum"`` (routes summed in spatial coordinates, the paper's view), ``"each"``
        (one map per route) or ``"nall"`` (each route min-max normalised, then averaged, as
        VMamba's ``ret="nall"``).
      channels: ``"mean"`` (mean of α over a route's channels, the paper's view),
        ``"abs_mean"`` (mean of |α|), or a tuple of channel indices (per-channel maps).
      include_skip: add the D skip on the diagonal (per route, averaged over channels like α).
      normalize: ``None``, ``"minmax"``, ``"abs_minmax"``, ``"absmax"`` or ``"row"``, per map.

    >>> AttentionOptions(route_mode="each", channels=[0, 3]).channels
    (0, 3)
    """

    route_mode: str = "sum"
    channels: str | tuple[int, ...] = "mean"
    include_skip: bool = False
    normalize: str | None = None

    def __post_init__(self) -> None:
        if self.route_mode not in ROUTE_MODES:
            raise AttentionError(
                f"route_mode must be one of {ROUTE_MODES}, got {self.route_mode!r}"
            )
        if self.normalize not in NORMALIZE_MODES:
            raise AttentionError(
                f"normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}"
            )
        if not isinstance(self.include_skip, bool | np.bool_):
            raise AttentionError(f"include_skip must be a bool, got {self.include_skip!r}")
        object.__setattr__(self, "include_skip", bool(self.include_skip))
        object.__setattr__(self, "channels", parse_channels(self.channels))

    @property
    def signed(self) -> bool:
        """Whether maps can be negative (a signed map needs a diverging colour scale)."""
        return self.channels != "abs_mean" and self.normalize not in ("abs_minmax",)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "channels": self.channels}


MAX_CHANNELS = 65_536  # more channels than any block has (VMamba's widest: 2048)


def parse_channels(channels) -> str | tuple[int, ...]:
    """A channel mode, or a tuple of channel indices: ints (not bools), non-empty, at most
    :data:`MAX_CHANNELS` of them, each below it; checked before a long iterable is
    materialised (the range against a block's channels is checked where the block is known)."""
    if isinstance(channels, str):
        if channels not in CHANNEL_MODES:
            raise AttentionError(
                f"channels must be {CHANNEL_MODES} or a sequence of channel indices, "
                f"got {channels!r}"
            )
        return channels
    what = "channels must be a non-empty 1-D sequence of ints (channel indices)"
    if isinstance(channels, bytes | bytearray | memoryview | Mapping) or not isinstance(
        channels, Iterable
    ):
        raise AttentionError(f"{what}, got {type(channels).__name__} {cut(channels)}")
    if isinstance(channels, np.ndarray):
        if channels.ndim != 1 or not np.issubdtype(channels.dtype, np.integer):
            raise AttentionError(f"{what}, got a {channels.dtype} array of shape {channels.shape}")
    items = list(itertools.islice(iter(channels), MAX_CHANNELS + 1))
    if not items:
        raise AttentionError(f"{what}, got {cut(channels)} (non-empty, please)")
    if len(items) > MAX_CHANNELS:
        raise AttentionError(f"{what}: at most {MAX_CHANNELS} of them, got more")
    for i, c in enumerate(items):
        if isinstance(c, bool | np.bool_) or not isinstance(c, numbers.Integral):
            raise AttentionError(
                f"{what}; channels[{i}] is {type(c).__name__} {cut(c)}, not an int"
            )
    picked = tuple(int(c) for c in items)
    bad = next((c for c in picked if c >= MAX_CHANNELS), None)
    if bad is not None:
        raise AttentionError(f"channel {cut(bad)} out of range: no block has {MAX_CHANNELS}")
    return picked


def cut(value) -> str:
    """``repr(value)``, at most 60 characters (for messages)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


DEFAULT_OPTIONS = AttentionOptions()  # the paper's view: channel mean, routes summed, no skip
