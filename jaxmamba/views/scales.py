"""Colour scales of hidden-attention maps: norms, ticks, labels and the image underneath.

Colour (the same contract as the explorer's): hidden attention is signed. A map with a negative
value is drawn on a diverging scale centred at zero (``RdBu_r``: blue < 0 < red, white at 0,
domain ``[-m, m]``), a non-negative one on a sequential scale (``inferno``, ``[0, m]``), with
``m = max |v|`` over the scale's data: the map's values WITHOUT the selected patch by default (it
is outlined and may be off the scale; values off the domain take the end colour). Three kinds of
scale (:data:`SCALES`, :func:`scale_norm`): ``"linear"``; ``"log"`` (the default), matplotlib's
``SymLogNorm`` with a linear band below ``1e-3·m`` and colour-bar ticks at the decades; and
``"rank"``, a value's quantile among the scale's data, ticks at the quantiles 0, ¼, ½, ¾, 1
labelled with the values there. The image under a map (:data:`UNDERLAYS`) is shown ``"grey"``
(luminance, dimmed to ``0.25 + 0.5·lum``) by default, or in ``"colour"``, or not at all
(``"none"``); over an image the map is drawn at the constant opacity :data:`OPACITY` and so is
its colour bar, over grey 0.5, so the map's colours are the bar's.
Colour-bar numbers are written for reading (``2.4e-05``, ``0.0123``), without an offset.

>>> n = scale_norm([-1.0, 0.5], "linear")
>>> float(n(0.0)), scale_label(n), number(0.000024)
(0.5, 'linear', '2.4e-05')
"""

from __future__ import annotations

import functools

import numpy as np

from jaxmamba.errors import PlotError, require

__all__ = [
    "LINEAR_BAND",
    "OPACITY",
    "SCALES",
    "UNDERLAYS",
    "check_choice",
    "check_flag",
    "number",
    "scale_label",
    "scale_norm",
    "scale_ticks",
    "underlay_rgb",
]


def _image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (1, 3, 4)):
        raise PlotError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {img.shape}")
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float64)
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    if lo < 0.0 or hi > 1.0:
        img = (img - lo) / (hi - lo if hi > lo else 1.0)
    return img


def number(v: float) -> str:
    """A colour-bar or caption number for reading: ``0``, ``0.0123``, ``12.3``, ``2.4e-05``.

    >>> number(2.4e-5), number(0.01234), number(-3.0), number(0)
    ('2.4e-05', '0.0123', '-3', '0')
    """
    if v == 0 or not np.isfinite(v):
        return "0" if v == 0 else str(v)
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        return f"{v:.1e}".replace(".0e", "e")
    return f"{v:.3g}"


SCALES = ("linear", "log", "rank")
"""The kinds of colour scale: linear, signed logarithmic (symlog), rank (quantile)."""
UNDERLAYS = ("grey", "colour", "none")
"""How the image under a map is shown: desaturated and dimmed, as it is, or not at all."""
OPACITY = 0.75
"""The map's constant opacity over an image (and its colour bar's, over grey 0.5)."""
LINEAR_BAND = 1e-3
"""The log scale is linear below this fraction of the scale's maximum m."""


def check_choice(what: str, value, allowed) -> str:
    """``value`` if it is one of the strings ``allowed``, else a PlotError naming ``what``.

    >>> check_choice("scale", "log", SCALES)
    'log'
    """
    if not isinstance(value, str) or value not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise PlotError(f"{what} must be one of {names}, got {value!r}")
    return value


def check_flag(what: str, value) -> bool:
    """``value`` as a bool if it is one (NumPy's too), else a PlotError naming ``what``."""
    if not isinstance(value, bool | np.bool_):
        raise PlotError(f"{what} must be True or False, got {value!r}")
    return bool(value)


@functools.cache
def _rank_class():
    """The rank norm's class (built on first use: matplotlib is imported only when drawing)."""
    Normalize = require("matplotlib.colors", "plot", "plots").Normalize

    class RankNorm(Normalize):
        """A value's quantile among the scale's data (see :func:`scale_norm`)."""

        def __init__(self, data, signed):
            d = np.asarray(data, np.float64).ravel()
            d = np.abs(d) if signed else d
            u, counts = np.unique(d, return_counts=True)
            start = np.concatenate([[0], np.cumsum(counts)[:-1]])
            q = (start + (counts - 1) / 2) / max(d.size - 1, 1)
            if u.size == 1:  # all tied at rank ½: a bar from u - |u| to u + |u| (or ±1 at 0)
                u, q = u[0] + np.array([-1.0, 1.0]) * (abs(u[0]) or 1.0), np.array([0.0, 1.0])
            self.quantiles, self.values, self.signed = q, u, bool(signed)
            super().__init__(vmin=-u[-1] if signed else u[0], vmax=u[-1], clip=True)

        def __call__(self, value, clip=None):
            result, is_scalar = self.process_value(value)
            v = np.ma.getdata(result).astype(np.float64)
            if self.signed:
                t = 0.5 + 0.5 * np.sign(v) * np.interp(np.abs(v), self.values, self.quantiles)
            else:
                t = np.interp(v, self.values, self.quantiles)
            t = np.ma.array(t, mask=np.ma.getmask(result))
            return t[0] if is_scalar else t

        def inverse(self, value):
            t = np.asarray(value, np.float64)
            if self.signed:
                x = 2 * t - 1
                return np.sign(x) * np.interp(np.abs(x), self.quantiles, self.values)
            return np.interp(t, self.quantiles, self.values)

    return RankNorm


def scale_norm(data, kind: str = "log", *, signed: bool | None = None):
    """The matplotlib norm of a colour scale over ``data``, the scale's values (any shape).

    ``m = max |data|`` (1 when all are 0). Non-negative (``signed`` False, default: whether
    any of ``data`` is < 0): domain ``[0, m]``; signed: ``[-m, m]``, 0 in the middle.
    ``"linear"``: ``t = v / m`` (signed ``0.5 + 0.5·v / m``); ``"log"``: ``SymLogNorm`` with
    ``linthresh = 1e-3·m``, ``linscale = 1``, base 10 (:data:`LINEAR_BAND`); ``"rank"``:
    a value's quantile among ``data``: ``t = rank / (n - 1)``, tied values at their average
    (0-based) rank, values between two of ``data`` interpolated (signed:
    ``t = 0.5 + 0.5·sign(v)·q(|v|)``, q the quantile of ``|v|`` among ``|data|``). Every norm
    clips: values off the domain take the end colour.

    >>> n = scale_norm([0.0, 1e-6, 1e-3], "log")   # linear below 1e-6, then decades
    >>> [round(float(t), 3) for t in n([0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1.0])]
    [0.0, 0.27, 0.514, 0.757, 1.0, 1.0]
    >>> float(scale_norm([-2.0, 1.0], "linear")(1.0))  # signed: [-2, 2]
    0.75
    >>> r = scale_norm([0.0, 1.0, 1.0, 4.0], "rank")  # the tied 1s share rank 1.5 of 3
    >>> r([0.0, 1.0, 4.0, 2.5, 9.0]).tolist(), float(r.inverse(0.75))
    ([0.0, 0.5, 1.0, 0.75, 1.0], 2.5)
    """
    kind = check_choice("scale", kind, SCALES)
    d = np.asarray(data, np.float64).ravel()
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise PlotError("the scale's data must be a non-empty set of finite values")
    signed = bool(np.any(d < 0)) if signed is None else check_flag("signed", signed)
    if kind == "rank":
        return _rank_class()(d, signed)
    colors = require("matplotlib.colors", "plot", "plots")
    m = float(np.max(np.abs(d))) or 1.0
    lo = -m if signed else 0.0
    if kind == "linear":
        return colors.Normalize(vmin=lo, vmax=m, clip=True)
    return colors.SymLogNorm(linthresh=LINEAR_BAND * m, linscale=1.0, base=10, vmin=lo, vmax=m,
                             clip=True)  # fmt: skip


def scale_ticks(norm, *, apart: float = 3.0) -> np.ndarray | None:
    """Colour-bar ticks of a :func:`scale_norm` norm, ``None`` for the linear one (matplotlib's).

    Log: 0, the decades ``10^k`` in ``[1e-3·m, m / apart]`` and m (mirrored when signed: a
    decade closer to m would print its label over m's; small bars want a larger ``apart``).
    Rank: the
    values at the quantiles 0, 0.25, 0.5, 0.75, 1 (signed: 0 and ± the values of ``|v|`` at
    0.25 … 1).

    >>> scale_ticks(scale_norm([0.0, 5e-5], "log")).tolist()
    [0.0, 1e-07, 1e-06, 1e-05, 5e-05]
    >>> scale_ticks(scale_norm([-2e-5, 1e-6], "log")).tolist()
    [-2e-05, -1e-06, -1e-07, 0.0, 1e-07, 1e-06, 2e-05]
    >>> scale_ticks(scale_norm([0.0, 1.0, 2.0, 3.0, 4.0], "rank")).tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0]
    """
    colors = require("matplotlib.colors", "plot", "plots")
    if isinstance(norm, colors.SymLogNorm):
        m, c = float(norm.vmax), float(norm.linthresh)
        ks = range(int(np.ceil(np.log10(c) - 1e-9)), int(np.floor(np.log10(m) + 1e-9)) + 1)
        decades = [10.0**k for k in ks if 10.0**k * apart <= m * (1 + 1e-9)]
        up = np.asarray([*decades, m])
        return np.concatenate([-up[::-1], [0.0], up]) if norm.vmin < 0 else np.r_[0.0, up]
    if isinstance(norm, _rank_class()):
        if norm.signed:
            up = norm.inverse(0.5 + 0.5 * np.array([0.25, 0.5, 0.75, 1.0]))
            return np.concatenate([-up[::-1], [0.0], up])
        return norm.inverse(np.array([0.0, 0.25, 0.5, 0.75, 1.0]))
    return None


def scale_label(norm) -> str:
    """What the colour bar's scale is, for its label.

    >>> scale_label(scale_norm([0.0, 2e-5], "log"))
    'symlog: linear below 1e-3 × max (2e-08)'
    """
    colors = require("matplotlib.colors", "plot", "plots")
    if isinstance(norm, colors.SymLogNorm):
        return f"symlog: linear below 1e-3 × max ({number(float(norm.linthresh))})"
    if isinstance(norm, _rank_class()):
        return "rank: ticks at quantiles 0, ¼, ½, ¾, 1"
    return "linear"


def underlay_rgb(image, underlay: str = "grey") -> np.ndarray | None:
    """The image as drawn under a map: ``(H, W, 3)`` float64 in [0, 1], or ``None`` (``"none"``).

    ``"grey"``: luminance ``lum = 0.299 R + 0.587 G + 0.114 B`` dimmed to ``0.25 + 0.5·lum``;
    ``"colour"``: the image (uint8 / 255; floats outside [0, 1] min-max scaled).

    >>> underlay_rgb(np.array([[[255, 0, 0]]], np.uint8))[0, 0].round(4).tolist()
    [0.3995, 0.3995, 0.3995]
    """
    underlay = check_choice("underlay", underlay, UNDERLAYS)
    if underlay == "none":
        return None
    img = _image(image)
    img = img / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3]
    if underlay == "colour":
        return img
    lum = img @ np.array([0.299, 0.587, 0.114])
    return np.repeat((0.25 + 0.5 * lum)[..., None], 3, axis=-1)
