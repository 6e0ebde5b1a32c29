"""Static matplotlib views of hidden attention: Scatterplot view, Patch view, overviews.

Every function builds a fresh :class:`matplotlib.figure.Figure` on the Agg canvas (no pyplot, so
no global figure registry, no GUI backend, nothing to close) and returns it; :func:`save` writes
a PNG. Maps are ``(L, L)`` with row p the query (output) patch and column q the source patch,
both row-major ``p = r·w + c`` on an ``(h, w)`` grid (see :mod:`jaxmamba.attention.extract`).
Images are ``(H, W, 3)`` or ``(H, W)``, uint8 or float (floats outside [0, 1] are min-max
scaled), stretched over the grid so that patch (r, c) covers its pixels.

Colours follow the contract of :mod:`jaxmamba.views.scales` (the same as the explorer's): a
signed map on a diverging scale centred at zero, a non-negative one on a sequential scale, a
linear, log or rank scale, the image under it in grey, in colour or not at all.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxmamba.errors import ConfigError, PlotError, require
from jaxmamba.models.config import parse_block_name
from jaxmamba.models.vim_config import parse_layer_name
from jaxmamba.views.scales import (
    OPACITY,
    SCALES,
    UNDERLAYS,
    check_choice,
    check_flag,
    number,
    scale_label,
    scale_norm,
    scale_ticks,
    underlay_rgb,
)

__all__ = [
    "PlotError",
    "figure",
    "literal",
    "patch_view",
    "class_token_view",
    "overview",
    "compare_orders",
    "png",
    "axes_title",
    "checked_grid",
    "save",
]


def figure(figsize):
    """A new matplotlib Figure on the Agg canvas, with constrained layout (no pyplot)."""
    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "plot", "plots").FigureCanvasAgg
    Figure = require("matplotlib.figure", "plot", "plots").Figure
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def literal(text):
    """Draw the matplotlib ``Text`` artist ``text`` exactly as written; returns it.

    Mathtext (``$...$``) and LaTeX (``text.usetex``) are turned off for it, so image names,
    titles, order and block names of a study show literally: ``cost $5 vs $10.png`` is not
    set as math, and ``$\\nope{$.png`` does not fail the figure.  Every text this module draws
    goes through it.

    >>> fig = figure((2, 2))
    >>> t = literal(fig.add_subplot().set_title("$\\nope{$"))
    >>> t.get_text(), t.get_parse_math()
    ('$\\nope{$', False)
    """
    text.set_parse_math(False)
    text.set_usetex(False)
    return text


def checked_grid(h, w) -> tuple[int, int]:
    """``(h, w)`` as ints, or a :class:`PlotError` unless both are positive."""
    if int(h) < 1 or int(w) < 1:
        raise PlotError(f"grid (h, w) must be positive, got {(h, w)}")
    return int(h), int(w)


def _square(attn, h: int, w: int, what: str = "attn") -> np.ndarray:
    a = np.asarray(attn, dtype=np.float64)
    if a.shape != (h * w, h * w):
        raise PlotError(f"{what} must be (L, L) with L = h·w = {h * w}, got shape {a.shape}")
    return a


def _patch_index(patch, h: int, w: int) -> int:
    if isinstance(patch, tuple | list):
        r, c = (int(v) for v in patch)
        if not (0 <= r < h and 0 <= c < w):
            raise PlotError(f"patch (row, col) {patch} outside the {h}x{w} grid")
        return r * w + c
    p = int(patch)
    if not 0 <= p < h * w:
        raise PlotError(f"patch {patch} outside 0..{h * w - 1} of the {h}x{w} grid")
    return p


def _extent(h: int, w: int):
    return (-0.5, w - 0.5, h - 0.5, -0.5)


def _panels_norm(panels, selection, kind: str, in_scale: bool):
    """One norm over the values of every panel (``(L,)`` each), without ``selection`` unless
    ``in_scale`` (all the values when that leaves nothing, or only zeros); signed when any
    value of any panel is < 0."""
    full = np.concatenate([np.asarray(v, np.float64).ravel() for v in panels])
    keep = []
    for v in panels:
        mask = np.ones(v.size, bool)
        if not in_scale:
            mask[list(selection)] = False
        keep.append(np.asarray(v, np.float64).ravel()[mask])
    data = np.concatenate(keep)
    if data.size == 0 or not np.any(data):
        data = full
    return scale_norm(data, kind, signed=bool(np.any(full < 0)))


def _colorbar(fig, im, ax, label: str, apart: float = 3.0, **kwargs):
    from matplotlib.ticker import FixedLocator, FuncFormatter

    cb = fig.colorbar(im, ax=ax, label=label, format=FuncFormatter(lambda v, _: number(v)),
                      **kwargs)  # fmt: skip
    ticks = scale_ticks(im.norm, apart=apart)
    if ticks is not None:
        cb.set_ticks(FixedLocator(ticks.tolist()))
        cb.minorticks_off()
    alpha = im.get_alpha()
    cb.solids.set_alpha(1.0 if alpha is None else alpha)
    cb.ax.set_facecolor((0.5, 0.5, 0.5))  # under a translucent bar, the grey of the contract
    literal(cb.ax.xaxis.label)
    literal(cb.ax.yaxis.label)
    return cb


def _heat(ax, values: np.ndarray, h: int, w: int, *, norm, image, underlay, cmap):
    """Draw an (h, w) heat map with ``norm`` over the image shown as ``underlay``; returns the
    heat AxesImage (constant opacity :data:`OPACITY` over an image, opaque without one)."""
    base = underlay_rgb(image, underlay) if image is not None else None
    if base is not None:
        ax.imshow(base, extent=_extent(h, w), interpolation="antialiased")
    cmap = "RdBu_r" if norm.vmin < 0 else cmap
    im = ax.imshow(
        values.reshape(h, w), extent=_extent(h, w), cmap=cmap, norm=norm,
        alpha=None if base is None else OPACITY, interpolation="nearest",
    )  # fmt: skip
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _mark(ax, p: int, w: int, color: str = "red") -> None:
    from matplotlib.patches import Rectangle

    r, c = divmod(p, w)
    ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=2))


def axes_title(ax, text: str, figsize, fontsize: float = 10) -> None:
    """A title wrapped to the figure's width (long titles are never clipped)."""
    chars = max(20, int(figsize[0] * 72 * 0.75 / (0.6 * fontsize)))  # the axes' share of the width
    literal(ax.set_title("\n".join(textwrap.wrap(text, chars)) or text, fontsize=fontsize))


def _selection_note(p: int, w: int, in_scale: bool) -> str:
    r, c = divmod(p, w)
    if in_scale:
        return f"patch ({r}, {c}) outlined, its value in the scale"
    return f"patch ({r}, {c}) outlined, left out of the scale: it may be off the bar"


def _options(scale, underlay, selection_in_scale) -> None:
    check_choice("scale", scale, SCALES)
    check_choice("underlay", underlay, UNDERLAYS)
    check_flag("selection_in_scale", selection_in_scale)


def patch_view(
    attn,
    h: int,
    w: int,
    patch,
    *,
    image=None,
    underlay: str = "grey",
    scale: str = "log",
    selection_in_scale: bool = False,
    direction: str = "query",
    title: str | None = None,
    cmap: str = "inferno",
    figsize=(5, 4.8),
):
    """Patch view: heat map over the grid of what ``patch`` attends to, or what attends to it.

    Args:
      attn: ``(L, L)`` one block's map.
      h, w: its patch grid.
      patch: row-major index p or ``(row, col)``.
      image: optional ``(H, W, 3)`` image drawn under the heat map, stretched over the grid.
      underlay: how the image is shown (:data:`UNDERLAYS`): ``"grey"`` (default), ``"colour"``,
        ``"none"``.
      scale: the colour scale (:data:`SCALES`): ``"log"`` (default), ``"linear"``, ``"rank"``.
      selection_in_scale: whether the patch's own value is part of the scale's data (default
        not: it is outlined and may be off the bar, as the caption under the map says).
      direction: ``"query"`` (row p: the sources p attends to) or ``"source"`` (column p: the
        queries that attend to p).

    Returns:
      A Figure with two axes (map, colour bar); the heat map is ``fig.axes[0].images[-1]`` (its
      ``norm`` the scale, :func:`scale_norm`), the chosen patch outlined in green.

    >>> import numpy as np
    >>> a = np.random.default_rng(0).random((6, 6))
    >>> im = patch_view(a, 2, 3, (1, 0)).axes[0].images[-1]
    >>> bool(np.allclose(im.get_array().ravel(), a[3]))
    True
    >>> float(im.norm.vmax) == float(np.delete(a[3], 3).max())  # the patch left out of the scale
    True
    """
    h, w = checked_grid(h, w)
    a = _square(attn, h, w)
    p = _patch_index(patch, h, w)
    _options(scale, underlay, selection_in_scale)
    if direction == "query":
        values, verb = a[p], "attends to"
    elif direction == "source":
        values, verb = a[:, p], "attended by"
    else:
        raise PlotError(f'direction must be "query" or "source", got {direction!r}')
    fig = figure(figsize)
    ax = fig.add_subplot()
    norm = _panels_norm([values], [p], scale, selection_in_scale)
    im = _heat(ax, values, h, w, norm=norm, image=image, underlay=underlay, cmap=cmap)
    _mark(ax, p, w, color="#00a03c")
    _colorbar(fig, im, ax, f"attention ({scale_label(norm)})")
    r, c = divmod(p, w)
    text = title if title is not None else f"patch ({r}, {c}) {verb}"
    literal(fig.suptitle("\n".join(textwrap.wrap(text, int(figsize[0] * 12))) or text,
                         fontsize=10))  # fmt: skip
    note = "\n".join(textwrap.wrap(_selection_note(p, w, selection_in_scale), int(figsize[0] * 14)))
    literal(fig.supxlabel(note, fontsize=8))
    return fig


def _class_last(attn, h: int, w: int, what: str = "attn") -> np.ndarray:
    """A class-last map ``(M + 1, M + 1)`` of an ``h x w`` grid (a Vim layer's as a study
    keeps it: the row-major patches, then the class token), checked."""
    a = np.asarray(attn, dtype=np.float64)
    m = h * w
    if a.shape != (m + 1, m + 1):
        raise PlotError(f"{what} must be class-last (L, L) with L = h·w + 1 = {m + 1}, got shape "
                        f"{a.shape}")  # fmt: skip
    return a


def class_token_view(
    attn,
    h: int,
    w: int,
    *,
    image=None,
    underlay: str = "grey",
    scale: str = "log",
    direction: str = "query",
    title: str | None = None,
    cmap: str = "inferno",
    figsize=(5, 4.8),
):
    """Class-token view of a Vim layer: heat map over the grid of what its class token reads
    from each patch (``"query"``: its row), or how much each patch reads from it
    (``"source"``: its column).

    Args:
      attn: ``(M + 1, M + 1)`` the layer's map, class-last (patches row-major, then the class
        token; :func:`jaxmamba.study.reader.study_block`).
      h, w: its patch grid (``M = h·w``).
      image, underlay, scale, cmap: as :func:`patch_view`; the scale is over the ``M`` patch
        values (the class token's own entry, not on the grid, is in the caption).

    >>> import numpy as np
    >>> a = np.random.default_rng(0).random((5, 5))
    >>> im = class_token_view(a, 2, 2).axes[0].images[-1]
    >>> bool(np.allclose(im.get_array().ravel(), a[4, :4]))
    True
    """
    h, w = checked_grid(h, w)
    a = _class_last(attn, h, w)
    m = h * w
    _options(scale, underlay, False)
    if direction == "query":
        values, text = a[m, :m], "what the class token reads from each patch"
    elif direction == "source":
        values, text = a[:m, m], "how much each patch reads from the class token"
    else:
        raise PlotError(f'direction must be "query" or "source", got {direction!r}')
    fig = figure(figsize)
    ax = fig.add_subplot()
    norm = _panels_norm([values], [], scale, True)
    im = _heat(ax, values, h, w, norm=norm, image=image, underlay=underlay, cmap=cmap)
    _colorbar(fig, im, ax, f"attention ({scale_label(norm)})")
    text = title if title is not None else text
    literal(fig.suptitle("\n".join(textwrap.wrap(text, int(figsize[0] * 12))) or text,
                         fontsize=10))  # fmt: skip
    note = (f"the class token is not on the grid: its weight on itself is {number(a[m, m])}; "
            f"the scale is over the {m} patches")  # fmt: skip
    literal(fig.supxlabel("\n".join(textwrap.wrap(note, int(figsize[0] * 14))), fontsize=8))
    return fig


def _stat(a: np.ndarray, h: int, w: int, stat) -> np.ndarray:
    if stat == "cls":  # a class-last map: the class token's row over the patches
        return a[h * w, : h * w]
    a = a[: h * w, : h * w]  # a class-last map's patch part
    if stat == "received":
        return a.mean(axis=0)
    if stat == "given":
        return a.mean(axis=1)
    if stat == "centre":
        return a[(h // 2) * w + w // 2]
    if stat == "self":
        return np.diagonal(a).copy()
    raise PlotError(f'stat must be "received", "given", "centre", "self" or "cls", got {stat!r}')


LAYERS_PER_ROW = 6  # an isotropic model's layers: panels in rows of this many


def _layout(names) -> dict[str, tuple[int, int]]:
    """Panel (row, col) per block: stage × block for official names, Vim layers in rows of
    :data:`LAYERS_PER_ROW`, else one row."""
    if all(_is_layer(n) for n in names):
        return {n: divmod(i, LAYERS_PER_ROW) for i, n in enumerate(names)}
    try:
        parsed = {n: parse_block_name(n) for n in names}
    except ConfigError:
        return {n: (0, i) for i, n in enumerate(names)}
    stages = sorted({stage for stage, _ in parsed.values()})
    out, per_stage = {}, dict.fromkeys(stages, 0)
    for n, (stage, _) in parsed.items():
        out[n] = (stages.index(stage), per_stage[stage])
        per_stage[stage] += 1
    return out


def _is_layer(name: str) -> bool:
    try:
        parse_layer_name(name)
    except ConfigError:
        return False
    return True


def overview(
    maps: Mapping[str, object],
    grids: Mapping[str, tuple[int, int]],
    *,
    stat: str = "received",
    cls: bool = False,
    image=None,
    underlay: str = "grey",
    scale: str = "log",
    selection_in_scale: bool = False,
    cmap: str = "inferno",
    panel_size: float = 2.0,
    title: str | None = None,
):
    """Stage × block grid of small heat maps, one panel per block, each with its colour bar.

    Args:
      maps: ``{"layers.i.blocks.j": (L, L)}``; official names are laid out one stage per row,
        other names in one row, in the mapping's order.
      grids: ``{name: (h, w)}`` each block's grid.
      stat: per-patch value shown: ``"received"`` (column mean: mean attention each patch
        receives), ``"given"`` (row mean), ``"centre"`` (the centre patch's row), ``"self"``
        (the diagonal), ``"cls"`` (what the class token reads from each patch; ``cls`` maps).
        Each panel has its own colour scale and colour bar (diverging around 0 when the panel
        has negative values).
      cls: the maps are class-last (a Vim study's, ``L = h·w + 1``): the patch statistics are
        of their patch-to-patch part.
      image, underlay: optional image under every panel and how it is shown (as
        :func:`patch_view`).
      scale: every panel's kind of scale (:data:`SCALES`, default ``"log"``), each over its own
        values.
      selection_in_scale: for ``stat="centre"``, whether the centre patch's own value is part
        of its panel's scale (default not; it is outlined).
      title: the figure's title (default says the statistic); name the order and images in it.

    Returns:
      A Figure with rows × cols panel axes (stages × most blocks in a stage; unused panels
      hidden), plus one colour-bar axes per drawn panel.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> grids = {"layers.0.blocks.0": (4, 4), "layers.0.blocks.1": (4, 4),
    ...          "layers.1.blocks.0": (2, 2)}
    >>> maps = {n: rng.random((h * w, h * w)) for n, (h, w) in grids.items()}
    >>> len(overview(maps, grids).axes)  # 2 x 2 panels (one hidden) and 3 colour bars
    7
    """
    if not isinstance(maps, Mapping) or not maps:
        raise PlotError("maps must be a non-empty mapping {block name: (L, L)}")
    missing = [n for n in maps if n not in grids]
    if missing:
        raise PlotError(f"no grid (h, w) for blocks {missing}")
    _options(scale, underlay, selection_in_scale)
    pos = _layout(list(maps))
    rows = 1 + max(r for r, _ in pos.values())
    cols = 1 + max(c for _, c in pos.values())
    size = (panel_size * 1.35 * cols + 0.5, panel_size * rows + 0.8)
    fig = figure(size)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    for name, m in maps.items():
        h, w = checked_grid(*grids[name])
        if stat == "cls" and not cls:
            raise PlotError('stat "cls" needs class-last maps (cls=True)')
        a = _class_last(m, h, w, f"maps[{name!r}]") if cls else _square(m, h, w, f"maps[{name!r}]")
        ax = axes[pos[name]]
        ax.set_axis_on()
        values = _stat(a, h, w, stat)
        selected = [(h // 2) * w + w // 2] if stat == "centre" else []
        norm = _panels_norm([values], selected, scale, selection_in_scale)
        im = _heat(ax, values, h, w, norm=norm, image=image, underlay=underlay, cmap=cmap)
        for q in selected:
            _mark(ax, q, w, color="#00a03c")
        _colorbar(fig, im, ax, "", apart=6.0, shrink=0.85).ax.tick_params(labelsize=6)
        literal(ax.set_title(f"{name} ({h}x{w})", fontsize=8))
    words = {
        "received": "mean attention each patch receives (column mean)",
        "given": "mean attention each patch pays (row mean)",
        "centre": "what the centre patch attends to",
        "self": "self-attention (diagonal)",
        "cls": "what the class token reads from each patch",
    }
    text = title if title is not None else f"attention per block: {words[stat]}"
    literal(fig.suptitle("\n".join(textwrap.wrap(text, int(size[0] * 11))), fontsize=10))
    note = f"each block on its own {_scale_words(scale)}"
    if stat == "centre":
        note += "; the centre patch outlined" + (
            "" if selection_in_scale else ", left out of the scale: it may be off the bar"
        )
    literal(fig.supxlabel("\n".join(textwrap.wrap(note, int(size[0] * 13))), fontsize=8))
    return fig


def _scale_words(scale: str) -> str:
    return {
        "linear": "linear colour scale",
        "log": "symlog colour scale (linear below 1e-3 × max, ticks at decades)",
        "rank": "rank colour scale (ticks at the quantiles 0, ¼, ½, ¾, 1)",
    }[scale]


def compare_orders(
    maps_by_order: Mapping[str, object],
    h: int,
    w: int,
    patch,
    *,
    image=None,
    underlay: str = "grey",
    direction: str = "query",
    scale: str = "log",
    shared_scale: bool | None = None,
    selection_in_scale: bool = False,
    cmap: str = "inferno",
    panel_size: float = 3.0,
    title: str | None = None,
):
    """The same block under different patch orders, side by side, for one patch.

    Args:
      maps_by_order: ``{order name: (L, L)}`` the block's map under each order.
      h, w, patch, image, underlay, direction, scale, selection_in_scale: as
        :func:`patch_view`.
      shared_scale: one colour scale over all panels' values (one colour bar), or one per
        panel; ``None`` (default) applies the side-by-side rule: shared when the panels are of
        the same block and kind of map, as here, so shared.
      title: the figure's title (name the block and the images in it).

    Returns:
      A Figure with one axes per order plus one colour bar (one per panel when not shared).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = compare_orders({"cross": rng.random((9, 9)), "spiral": rng.random((9, 9))}, 3, 3, 4)
    >>> len(fig.axes)
    3
    """
    h, w = checked_grid(h, w)
    if not isinstance(maps_by_order, Mapping) or not maps_by_order:
        raise PlotError("maps_by_order must be a non-empty mapping {order name: (L, L)}")
    if direction not in ("query", "source"):
        raise PlotError(f'direction must be "query" or "source", got {direction!r}')
    _options(scale, underlay, selection_in_scale)
    shared = True if shared_scale is None else check_flag("shared_scale", shared_scale)
    p = _patch_index(patch, h, w)
    vals = {}
    for name, m in maps_by_order.items():
        a = _square(m, h, w, f"maps_by_order[{name!r}]")
        vals[name] = a[p] if direction == "query" else a[:, p]
    one = _panels_norm(list(vals.values()), [p], scale, selection_in_scale) if shared else None
    n = len(vals)
    fig = figure((panel_size * n + 1.2, panel_size + 1.3))
    axes = np.asarray(fig.subplots(1, n, squeeze=False)).ravel()
    im = None
    for ax, (name, v) in zip(axes, vals.items(), strict=True):
        norm = one or _panels_norm([v], [p], scale, selection_in_scale)
        im = _heat(ax, v, h, w, norm=norm, image=image, underlay=underlay, cmap=cmap)
        _mark(ax, p, w, color="#00a03c")
        literal(ax.set_title(f"order {name}", fontsize=10))
        if not shared:
            _colorbar(fig, im, ax, "attention", shrink=0.8).ax.tick_params(labelsize=7)
    if shared:
        _colorbar(fig, im, list(axes), "attention (one scale)", shrink=0.8)
    r, c = divmod(p, w)
    verb = "attends to" if direction == "query" else "is attended by"
    text = title if title is not None else f"what patch ({r}, {c}) {verb}, in each order"
    width = int((panel_size * n + 1.2) * 11)
    literal(fig.suptitle("\n".join(textwrap.wrap(text, width)) or text, fontsize=10))
    note = (f"{'one' if shared else 'each panel on its own'} {_scale_words(scale)}; "
            f"{_selection_note(p, w, selection_in_scale)}")  # fmt: skip
    literal(fig.supxlabel("\n".join(textwrap.wrap(note, int(width * 1.2))), fontsize=8))
    return fig


def png(fig, *, dpi: int = 100) -> bytes:
    """``fig`` rendered as PNG bytes (nothing is written).

    >>> png(patch_view(np.eye(4), 2, 2, 0))[:4]
    b'\\x89PNG'
    """
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save(fig, path, *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG, atomically (parent folders created); returns the path.  A
    ``path`` that is a symbolic link is refused (:class:`PlotError`), never written through.

    >>> import tempfile, os, numpy as np
    >>> p = save(patch_view(np.eye(4), 2, 2, 0), os.path.join(tempfile.mkdtemp(), "s.png"))
    >>> p.stat().st_size > 0
    True
    """
    from jaxmamba.storage import store

    path = Path(path)
    data = png(fig, dpi=dpi)
    if path.is_symlink():
        raise PlotError(f"{path} is a symbolic link; a figure is not written through it")
    return store.write_bytes_atomic(path, data)
