"""Static matplotlib views of hidden attention: Scatterplot view, Patch view, overviews.

Every function builds a fresh :class:`matplotlib.figure.Figure` on the Agg canvas (no pyplot, so
no global figure registry, no GUI backend, nothing to close) and returns it; :func:`save` writes
a PNG. Maps are ``(L, L)`` with row p the query (output) patch and column q the source patch,
both row-major ``p = r·w + c`` on an ``(h, w)`` grid (see :mod:`jaxmamba.attention`).
Images are ``(H, W, 3)`` or ``(H, W)``, uint8 or float (floats outside [0, 1] are min-max
scaled), stretched over the grid so that patch (r, c) covers its pixels.

Colour: hidden attention is signed. Values with a negative entry are drawn on a diverging scale
centred at zero (``RdBu_r``: blue < 0 < red, white at 0, symmetric limits); non-negative values
on a sequential one. Over an image the map is alpha-ramped (opacity ∝ |value| / max|value|), so
strong values have exactly the colour bar's colours and the image shows through near zero.
Colour-bar numbers are written for reading (``2.4e-05``, ``0.0123``), without an offset.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxmamba.config import parse_block_name
from jaxmamba.errors import PlotError, require

__all__ = [
    "PlotError",
    "figure",
    "literal",
    "number",
    "scatter",
    "patch_view",
    "overview",
    "compare_orders",
    "png",
    "save",
    "scan_positions",
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


def _grid(h, w) -> tuple[int, int]:
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


def _extent(h: int, w: int):
    return (-0.5, w - 0.5, h - 0.5, -0.5)


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


def _limits(values, vmin=None, vmax=None, cmap=None):
    """``(cmap, vmin, vmax, signed)``: diverging and symmetric around 0 when any value < 0."""
    lo = float(np.min(values)) if vmin is None else vmin
    hi = float(np.max(values)) if vmax is None else vmax
    if lo < 0:
        m = max(abs(lo), abs(hi)) or 1.0
        return "RdBu_r", -m, m, True
    return cmap or "inferno", lo, hi if hi > lo else lo + 1e-12, False


def _colorbar(fig, im, ax, label: str, **kwargs):
    from matplotlib.ticker import FuncFormatter

    cb = fig.colorbar(im, ax=ax, label=label, format=FuncFormatter(lambda v, _: number(v)),
                      **kwargs)  # fmt: skip
    cb.solids.set_alpha(1)  # the bar shows the full colours even where the map is alpha-ramped
    literal(cb.ax.xaxis.label)
    literal(cb.ax.yaxis.label)
    return cb


def _heat(ax, values: np.ndarray, h: int, w: int, *, image, alpha, cmap, vmin=None, vmax=None):
    """Draw an (h, w) heat map over the optional image; returns the heat AxesImage.

    Signed values get the diverging scale centred at 0; over an image the map's opacity is
    ``alpha · |value| / max|value|`` (colours exact where strong, the image through near 0)."""
    cmap, vmin, vmax, signed = _limits(values, vmin, vmax, cmap)
    ramp = None
    if image is not None:
        img = _image(image)
        ax.imshow(img, extent=_extent(h, w), cmap="gray" if img.ndim == 2 else None)
        ref = max(abs(vmin), abs(vmax)) if signed else (vmax - vmin)
        t = np.abs(values) if signed else values - vmin
        ramp = np.clip(alpha * t / (ref or 1.0), 0.0, 1.0).reshape(h, w)
    im = ax.imshow(
        values.reshape(h, w), extent=_extent(h, w), cmap=cmap, vmin=vmin, vmax=vmax,
        alpha=ramp, interpolation="nearest",
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


def scan_positions(routes, route: int = 0) -> np.ndarray:
    """Scan position of every patch on one route: the inverse of ``routes[route]``.

    Args:
      routes: ``(K, L)`` scan position → row-major patch index (:func:`jaxmamba.make_routes`).
      route: which route k.

    Returns:
      ``(L,)`` int array, entry p the position t at which route k visits patch p.

    >>> scan_positions([[2, 0, 1]]).tolist()
    [1, 2, 0]
    """
    r = np.asarray(routes)
    if r.ndim != 2:
        raise PlotError(f"routes must be (K, L), got shape {r.shape}")
    if not 0 <= route < r.shape[0]:
        raise PlotError(f"route {route} outside 0..{r.shape[0] - 1}")
    return np.argsort(r[route], kind="stable")


def scatter(
    points,
    h: int,
    w: int,
    *,
    color_by="row",
    routes=None,
    route: int = 0,
    title: str | None = None,
    axis_labels: tuple[str, str] | None = None,
    cmap: str = "viridis",
    size: float | None = None,
    figsize=(5, 4.5),
):
    """Scatterplot view: the embedded patches, coloured by grid row, column or scan position.

    Args:
      points: ``(L, 2)`` coordinates (:func:`jaxmamba.reduce.embed`), row p for patch p.
      h, w: the block's patch grid.
      color_by: ``"row"``, ``"col"``, ``"scan"`` (position in ``routes[route]``), or ``(L,)``
        values.
      routes: ``(K, L)`` routes of the block's grid, needed for ``"scan"``.
      route: which route ``"scan"`` uses.
      title: wrapped to the figure's width; axis_labels: e.g. ``("PC 1 (31% of variance)",
        "PC 2 (12%)")`` (default: no labels, no ticks: t-SNE/UMAP axes have no units).

    Returns:
      A Figure with two axes, the scatter and its colour bar; with at most four distinct
      colour values (a 2x2 grid, say) one axes with a legend of those values instead.

    >>> import numpy as np
    >>> fig = scatter(np.random.default_rng(0).random((48, 2)), 6, 8, color_by="col")
    >>> len(fig.axes)  # the scatter and its colour bar
    2
    """
    h, w = _grid(h, w)
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (h * w, 2):
        raise PlotError(f"points must be (L, 2) with L = h·w = {h * w}, got shape {pts.shape}")
    idx = np.arange(h * w)
    if isinstance(color_by, str):
        if color_by == "row":
            values, label = idx // w, "grid row"
        elif color_by == "col":
            values, label = idx % w, "grid column"
        elif color_by == "scan":
            if routes is None:
                raise PlotError('color_by="scan" needs the routes (K, L) of the block\'s grid')
            if np.shape(routes)[-1] != h * w:
                raise PlotError(f"routes must be (K, {h * w}), got shape {np.shape(routes)}")
            values, label = scan_positions(routes, route), f"scan position (route {route})"
        else:
            raise PlotError(
                f'color_by must be "row", "col", "scan" or (L,) values, got {color_by!r}'
            )
    else:
        values, label = np.asarray(color_by, dtype=np.float64), "value"
        if values.shape != (h * w,):
            raise PlotError(f"color_by values must be (L,) = ({h * w},), got {values.shape}")
    fig = figure(figsize)
    ax = fig.add_subplot()
    s = size if size is not None else max(4.0, 2000.0 / (h * w))
    levels = np.unique(values)
    if len(levels) <= 4 and np.allclose(levels, np.round(levels)):  # discrete: a legend
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=values, cmap=cmap, s=max(s, 30), linewidths=0,
                        vmin=levels.min(), vmax=max(levels.max(), levels.min() + 1))  # fmt: skip
        handles, names = sc.legend_elements()
        legend = ax.legend(handles, [f"{label} {v:g}" for v in levels], loc="best", fontsize=8)
        for text in legend.get_texts():
            literal(text)
    else:
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=values, cmap=cmap, s=s, linewidths=0)
        cb = fig.colorbar(sc, ax=ax, label=label)
        literal(cb.ax.yaxis.label)
    _title(ax, title if title is not None else f"patches by attention row ({h}x{w})", figsize)
    if axis_labels:  # the directions matter, not their units: labels without ticks
        literal(ax.set_xlabel(axis_labels[0]))
        literal(ax.set_ylabel(axis_labels[1]))
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _title(ax, text: str, figsize, fontsize: float = 10) -> None:
    """A title wrapped to the figure's width (long titles are never clipped)."""
    chars = max(20, int(figsize[0] * 72 * 0.75 / (0.6 * fontsize)))  # the axes' share of the width
    literal(ax.set_title("\n".join(textwrap.wrap(text, chars)) or text, fontsize=fontsize))


def patch_view(
    attn,
    h: int,
    w: int,
    patch,
    *,
    image=None,
    direction: str = "query",
    title: str | None = None,
    cmap: str = "inferno",
    alpha: float = 1.0,
    figsize=(5, 4.5),
):
    """Patch view: heat map over the grid of what ``patch`` attends to, or what attends to it.

    Args:
      attn: ``(L, L)`` one block's map.
      h, w: its patch grid.
      patch: row-major index p or ``(row, col)``.
      image: optional ``(H, W, 3)`` image drawn under the heat map, stretched over the grid.
      direction: ``"query"`` (row p: the sources p attends to) or ``"source"`` (column p: the
        queries that attend to p).

    Returns:
      A Figure with two axes (map, colour bar); the heat map is ``fig.axes[0].images[-1]``, the
      chosen patch outlined in red.

    >>> import numpy as np
    >>> a = np.random.default_rng(0).random((6, 6))
    >>> fig = patch_view(a, 2, 3, (1, 0))
    >>> bool(np.allclose(fig.axes[0].images[-1].get_array().ravel(), a[3]))
    True
    """
    h, w = _grid(h, w)
    a = _square(attn, h, w)
    p = _patch_index(patch, h, w)
    if direction == "query":
        values, verb = a[p], "attends to"
    elif direction == "source":
        values, verb = a[:, p], "attended by"
    else:
        raise PlotError(f'direction must be "query" or "source", got {direction!r}')
    fig = figure(figsize)
    ax = fig.add_subplot()
    im = _heat(ax, values, h, w, image=image, alpha=alpha, cmap=cmap)
    _mark(ax, p, w, color="#00a03c")
    _colorbar(fig, im, ax, "attention")
    r, c = divmod(p, w)
    _title(ax, title if title is not None else f"patch ({r}, {c}) {verb}", figsize)
    return fig


def _stat(a: np.ndarray, h: int, w: int, stat) -> np.ndarray:
    if stat == "received":
        return a.mean(axis=0)
    if stat == "given":
        return a.mean(axis=1)
    if stat == "centre":
        return a[(h // 2) * w + w // 2]
    if stat == "self":
        return np.diagonal(a).copy()
    raise PlotError(f'stat must be "received", "given", "centre" or "self", got {stat!r}')


def _layout(names) -> dict[str, tuple[int, int]]:
    """Panel (row, col) per block: stage × block for official names, else one row."""
    try:
        parsed = {n: parse_block_name(n) for n in names}
    except ValueError:
        return {n: (0, i) for i, n in enumerate(names)}
    stages = sorted({stage for stage, _ in parsed.values()})
    out, per_stage = {}, dict.fromkeys(stages, 0)
    for n, (stage, _) in parsed.items():
        out[n] = (stages.index(stage), per_stage[stage])
        per_stage[stage] += 1
    return out


def overview(
    maps: Mapping[str, object],
    grids: Mapping[str, tuple[int, int]],
    *,
    stat: str = "received",
    image=None,
    cmap: str = "inferno",
    alpha: float = 1.0,
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
        (the diagonal). Each panel has its own colour scale and colour bar (diverging around 0
        when the panel has negative values).
      image: optional image under every panel.
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
    pos = _layout(list(maps))
    rows = 1 + max(r for r, _ in pos.values())
    cols = 1 + max(c for _, c in pos.values())
    size = (panel_size * 1.35 * cols + 0.5, panel_size * rows + 0.8)
    fig = figure(size)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    for name, m in maps.items():
        h, w = _grid(*grids[name])
        a = _square(m, h, w, f"maps[{name!r}]")
        ax = axes[pos[name]]
        ax.set_axis_on()
        im = _heat(ax, _stat(a, h, w, stat), h, w, image=image, alpha=alpha, cmap=cmap)
        _colorbar(fig, im, ax, "", shrink=0.85).ax.tick_params(labelsize=6)
        literal(ax.set_title(name, fontsize=8))
    words = {
        "received": "mean attention each patch receives (column mean)",
        "given": "mean attention each patch pays (row mean)",
        "centre": "what the centre patch attends to",
        "self": "self-attention (diagonal)",
    }
    text = title if title is not None else f"attention per block: {words[stat]}"
    literal(fig.suptitle("\n".join(textwrap.wrap(text, int(size[0] * 11))), fontsize=10))
    return fig


def compare_orders(
    maps_by_order: Mapping[str, object],
    h: int,
    w: int,
    patch,
    *,
    image=None,
    direction: str = "query",
    shared_scale: bool = True,
    cmap: str = "inferno",
    alpha: float = 1.0,
    panel_size: float = 3.0,
    title: str | None = None,
):
    """The same block under different patch orders, side by side, for one patch.

    Args:
      maps_by_order: ``{order name: (L, L)}`` the block's map under each order.
      h, w, patch, image, direction: as :func:`patch_view`.
      shared_scale: one colour scale for all panels (else one per panel).
      title: the figure's title (name the block and the images in it).

    Returns:
      A Figure with one axes per order plus one colour bar.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = compare_orders({"cross": rng.random((9, 9)), "spiral": rng.random((9, 9))}, 3, 3, 4)
    >>> len(fig.axes)
    3
    """
    h, w = _grid(h, w)
    if not isinstance(maps_by_order, Mapping) or not maps_by_order:
        raise PlotError("maps_by_order must be a non-empty mapping {order name: (L, L)}")
    if direction not in ("query", "source"):
        raise PlotError(f'direction must be "query" or "source", got {direction!r}')
    p = _patch_index(patch, h, w)
    vals = {}
    for name, m in maps_by_order.items():
        a = _square(m, h, w, f"maps_by_order[{name!r}]")
        vals[name] = a[p] if direction == "query" else a[:, p]
    lo = min(float(v.min()) for v in vals.values()) if shared_scale else None
    hi = max(float(v.max()) for v in vals.values()) if shared_scale else None
    n = len(vals)
    fig = figure((panel_size * n + 1.0, panel_size + 0.9))
    axes = np.asarray(fig.subplots(1, n, squeeze=False)).ravel()
    im = None
    for ax, (name, v) in zip(axes, vals.items(), strict=True):
        im = _heat(ax, v, h, w, image=image, alpha=alpha, cmap=cmap, vmin=lo, vmax=hi)
        _mark(ax, p, w, color="#00a03c")
        literal(ax.set_title(f"order {name}", fontsize=10))
        if not shared_scale:
            _colorbar(fig, im, ax, "attention", shrink=0.8)
    if shared_scale:
        _colorbar(fig, im, list(axes), "attention (one scale)", shrink=0.8)
    r, c = divmod(p, w)
    verb = "attends to" if direction == "query" else "is attended by"
    text = title if title is not None else f"what patch ({r}, {c}) {verb}, in each order"
    literal(fig.suptitle(text, fontsize=10))
    return fig


def png(fig, *, dpi: int = 100) -> bytes:
    """``fig`` rendered as PNG bytes (nothing is written).

    >>> png(scatter(np.zeros((4, 2)), 2, 2))[:4]
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
    >>> p = save(scatter(np.zeros((4, 2)), 2, 2), os.path.join(tempfile.mkdtemp(), "s.png"))
    >>> p.stat().st_size > 0
    True
    """
    from jaxmamba import store

    path = Path(path)
    data = png(fig, dpi=dpi)
    if path.is_symlink():
        raise PlotError(f"{path} is a symbolic link; a figure is not written through it")
    return store.write_bytes_atomic(path, data)
