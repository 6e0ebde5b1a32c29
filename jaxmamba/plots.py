"""Static matplotlib views of hidden attention: Scatterplot view, Patch view, overviews.

Every function builds a fresh :class:`matplotlib.figure.Figure` on the Agg canvas (no pyplot, so
no global figure registry, no GUI backend, nothing to close) and returns it; :func:`save` writes
a PNG. Maps are ``(L, L)`` with row p the query (output) patch and column q the source patch,
both row-major ``p = r·w + c`` on an ``(h, w)`` grid (see :mod:`jaxmamba.attention`).
Images are ``(H, W, 3)`` or ``(H, W)``, uint8 or float (floats outside [0, 1] are min-max
scaled), stretched over the grid so that patch (r, c) covers its pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxmamba.config import parse_block_name
from jaxmamba.errors import PlotError, require

__all__ = [
    "PlotError",
    "scatter",
    "patch_view",
    "overview",
    "compare_orders",
    "save",
    "scan_positions",
]


def _figure(figsize):
    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "plot", "plots").FigureCanvasAgg
    Figure = require("matplotlib.figure", "plot", "plots").Figure
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


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


def _heat(ax, values: np.ndarray, h: int, w: int, *, image, alpha, cmap, vmin=None, vmax=None):
    """Draw an (h, w) heat map over the optional image; returns the heat AxesImage."""
    if image is not None:
        img = _image(image)
        ax.imshow(img, extent=_extent(h, w), cmap="gray" if img.ndim == 2 else None)
    im = ax.imshow(
        values.reshape(h, w), extent=_extent(h, w), cmap=cmap, vmin=vmin, vmax=vmax,
        alpha=alpha if image is not None else None, interpolation="nearest",
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

    Returns:
      A Figure with two axes: the scatter and its colour bar.

    >>> import numpy as np
    >>> fig = scatter(np.random.default_rng(0).random((12, 2)), 3, 4, color_by="col")
    >>> len(fig.axes)
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
    fig = _figure(figsize)
    ax = fig.add_subplot()
    s = size if size is not None else max(4.0, 2000.0 / (h * w))
    sc = ax.scatter(pts[:, 0], pts[:, 1], c=values, cmap=cmap, s=s, linewidths=0)
    fig.colorbar(sc, ax=ax, label=label)
    ax.set_title(title if title is not None else f"patches by attention row ({h}x{w})")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


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
    alpha: float = 0.6,
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
    fig = _figure(figsize)
    ax = fig.add_subplot()
    im = _heat(ax, values, h, w, image=image, alpha=alpha, cmap=cmap)
    _mark(ax, p, w)
    fig.colorbar(im, ax=ax, label="attention")
    r, c = divmod(p, w)
    ax.set_title(title if title is not None else f"patch ({r}, {c}) {verb}")
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
    alpha: float = 0.6,
    panel_size: float = 2.0,
):
    """Stage × block grid of small heat maps, one panel per block.

    Args:
      maps: ``{"layers.i.blocks.j": (L, L)}``; official names are laid out one stage per row,
        other names in one row, in the mapping's order.
      grids: ``{name: (h, w)}`` each block's grid.
      stat: per-patch value shown: ``"received"`` (column mean: mean attention each patch
        receives), ``"given"`` (row mean), ``"centre"`` (the centre patch's row), ``"self"``
        (the diagonal). Each panel has its own colour scale.
      image: optional image under every panel.

    Returns:
      A Figure with rows × cols axes (stages × most blocks in a stage; unused panels hidden).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> grids = {"layers.0.blocks.0": (4, 4), "layers.0.blocks.1": (4, 4),
    ...          "layers.1.blocks.0": (2, 2)}
    >>> maps = {n: rng.random((h * w, h * w)) for n, (h, w) in grids.items()}
    >>> len(overview(maps, grids).axes)
    4
    """
    if not isinstance(maps, Mapping) or not maps:
        raise PlotError("maps must be a non-empty mapping {block name: (L, L)}")
    missing = [n for n in maps if n not in grids]
    if missing:
        raise PlotError(f"no grid (h, w) for blocks {missing}")
    pos = _layout(list(maps))
    rows = 1 + max(r for r, _ in pos.values())
    cols = 1 + max(c for _, c in pos.values())
    fig = _figure((panel_size * cols + 0.5, panel_size * rows + 0.5))
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    for name, m in maps.items():
        h, w = _grid(*grids[name])
        a = _square(m, h, w, f"maps[{name!r}]")
        ax = axes[pos[name]]
        ax.set_axis_on()
        _heat(ax, _stat(a, h, w, stat), h, w, image=image, alpha=alpha, cmap=cmap)
        ax.set_title(name, fontsize=8)
    fig.suptitle(f"attention per block ({stat})")
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
    alpha: float = 0.6,
    panel_size: float = 3.0,
):
    """The same block under different patch orders, side by side, for one patch.

    Args:
      maps_by_order: ``{order name: (L, L)}`` the block's map under each order.
      h, w, patch, image, direction: as :func:`patch_view`.
      shared_scale: one colour scale for all panels (else one per panel).

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
    fig = _figure((panel_size * n + 1.0, panel_size + 0.6))
    axes = np.asarray(fig.subplots(1, n, squeeze=False)).ravel()
    im = None
    for ax, (name, v) in zip(axes, vals.items(), strict=True):
        im = _heat(ax, v, h, w, image=image, alpha=alpha, cmap=cmap, vmin=lo, vmax=hi)
        _mark(ax, p, w)
        ax.set_title(name)
    fig.colorbar(im, ax=list(axes), label="attention", shrink=0.8)
    r, c = divmod(p, w)
    fig.suptitle(f"patch ({r}, {c}), {direction} direction")
    return fig


def save(fig, path, *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG (parent folders created); returns the path.

    >>> import tempfile, os, numpy as np
    >>> p = save(scatter(np.zeros((4, 2)), 2, 2), os.path.join(tempfile.mkdtemp(), "s.png"))
    >>> p.stat().st_size > 0
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path
