"""The Scatterplot view as a static figure: a block's patches embedded by their attention rows,
coloured by grid row, column or scan position (:func:`scatter`), and the scan position of every
patch on a route (:func:`scan_positions`).

The heat-map figures are in :mod:`jaxmamba.views.plots`, whose figure helpers these share.
"""

from __future__ import annotations

import numpy as np

from jaxmamba.views.plots import PlotError, axes_title, checked_grid, figure, literal

__all__ = ["scan_positions", "scatter"]


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
      points: ``(L, 2)`` coordinates (:func:`jaxmamba.attention.embed.embed`), row p for patch p.
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
    h, w = checked_grid(h, w)
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
    axes_title(ax, title if title is not None else f"patches by attention row ({h}x{w})", figsize)
    if axis_labels:  # the directions matter, not their units: labels without ticks
        literal(ax.set_xlabel(axis_labels[0]))
        literal(ax.set_ylabel(axis_labels[1]))
    ax.set_xticks([])
    ax.set_yticks([])
    return fig
