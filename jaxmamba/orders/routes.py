"""Patch orders (scan routes) for 2-D patch grids.

An order maps an ``h x w`` patch grid to ``K`` routes, returned as an int32 array of shape
``(K, L)`` with ``L = h * w``: ``routes[k, t]`` is the row-major spatial index ``r * w + c`` of
scan position ``t`` on route ``k``. Every route is a permutation of ``range(L)``. Routes are built
with NumPy once per ``(name, h, w)``, cached, read-only, and static under ``jit``.

Named orders (:data:`ORDER_NAMES`):

* ``cross``: VMamba's cross-scan, K=4: row-major, column-major, and both reversed.
* ``diagonal``, ``morton``, ``spiral``, ``zigzag``, ``hilbert``: K=4, made from a base path by the
  same symmetries as ``cross``: route 0 = base path on the ``h x w`` grid, route 1 = base path of
  the transposed ``w x h`` grid mapped back, routes 2 and 3 = routes 0 and 1 reversed.
* ``raster``: K=1, row-major. ``bidirectional``: K=2, row-major and its reverse.

Route 0 of each base path on a 4x4 grid (the scan position written in each cell):

>>> for name in ("cross", "diagonal", "morton", "spiral", "zigzag", "hilbert"):
...     print(name)
...     print(describe_routes(make_routes(name, 4, 4), 4, 4))
cross
 0  1  2  3
 4  5  6  7
 8  9 10 11
12 13 14 15
diagonal
 0  1  3  6
 2  4  7 10
 5  8 11 13
 9 12 14 15
morton
 0  1  4  5
 2  3  6  7
 8  9 12 13
10 11 14 15
spiral
 0  1  2  3
11 12 13  4
10 15 14  5
 9  8  7  6
zigzag
 0  1  2  3
 7  6  5  4
 8  9 10 11
15 14 13 12
hilbert
 0  1 14 15
 3  2 13 12
 4  7  8 11
 5  6  9 10
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxmamba.errors import OrderError

__all__ = [
    "ORDER_NAMES",
    "OrderError",
    "check_grid",
    "describe_routes",
    "inverse_routes",
    "make_routes",
    "route_groups",
    "validate_routes",
]


ORDER_NAMES: tuple[str, ...] = (
    "cross",
    "diagonal",
    "morton",
    "spiral",
    "zigzag",
    "hilbert",
    "raster",
    "bidirectional",
)

_MAX_SHOWN = 8  # offending indices quoted in an error message


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def check_grid(h: Any, w: Any) -> tuple[int, int]:
    """Return ``(h, w)`` as Python ints, or raise OrderError unless both are positive ints.

    >>> check_grid(np.int64(3), 4)
    (3, 4)
    """
    out = []
    for label, v in (("h", h), ("w", w)):
        if isinstance(v, bool | np.bool_):
            raise OrderError(f"grid size {label} must be a positive int, got {v!r}")
        try:
            iv = operator.index(v)
        except TypeError:
            raise OrderError(f"grid size {label} must be a positive int, got {v!r}") from None
        if iv < 1:
            raise OrderError(f"grid size {label} must be a positive int, got {iv}")
        out.append(iv)
    return out[0], out[1]


def _shown(values: np.ndarray) -> str:
    """Format the first few values of a 1-D array as a list, with an ellipsis if cut."""
    vals = [int(v) for v in values[:_MAX_SHOWN]]
    text = ", ".join(str(v) for v in vals)
    return f"[{text}, ...]" if len(values) > _MAX_SHOWN else f"[{text}]"


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def validate_routes(routes: Any, h: int, w: int) -> np.ndarray:
    """Check that ``routes`` is a valid ``(K, L)`` route array for an ``h x w`` grid.

    Args:
      routes: array-like of shape ``(K, L)``, K >= 1, integer dtype; each row a permutation of
        ``range(L)`` with ``L = h * w``.
      h, w: grid height and width (positive ints).

    Returns:
      A read-only int32 copy of shape ``(K, L)``.

    Raises:
      OrderError: naming the problem (shape, dtype, NaN, the route and its bad indices).

    >>> validate_routes([[0, 1, 2, 3], [3, 2, 1, 0]], 2, 2).tolist()
    [[0, 1, 2, 3], [3, 2, 1, 0]]
    """
    h, w = check_grid(h, w)
    size = h * w
    try:
        arr = np.asarray(routes)
    except (ValueError, TypeError) as e:
        raise OrderError(f"routes are not a rectangular array: {e}") from None
    if arr.ndim != 2:
        raise OrderError(
            f"routes must be 2-D with shape (K, L) = (K, {size}) for a {h}x{w} grid, "
            f"got {arr.ndim}-D shape {arr.shape}"
        )
    if arr.dtype.kind == "f" or arr.dtype.kind == "c":
        if np.isnan(arr).any():
            raise OrderError("routes contain NaN; they must be integer indices")
        raise OrderError(f"routes must have an integer dtype, got non-integer dtype {arr.dtype}")
    if arr.dtype.kind not in "iu":
        raise OrderError(f"routes must have an integer dtype, got non-integer dtype {arr.dtype}")
    if arr.shape[0] < 1:
        raise OrderError(f"routes must hold at least one route, got shape {arr.shape}")
    if arr.shape[1] != size:
        raise OrderError(
            f"routes have the wrong shape: expected (K, {size}) for a {h}x{w} grid, got {arr.shape}"
        )
    for k, row in enumerate(arr):
        bad = np.flatnonzero((row < 0) | (row >= size))
        if bad.size:
            raise OrderError(
                f"route {k} has out-of-range indices {_shown(row[bad])} at positions "
                f"{_shown(bad)}; valid indices are 0..{size - 1}"
            )
        counts = np.bincount(row.astype(np.int64), minlength=size)
        if (counts != 1).any():
            raise OrderError(
                f"route {k} is not a permutation of range({size}): "
                f"missing {_shown(np.flatnonzero(counts == 0))}, "
                f"duplicated {_shown(np.flatnonzero(counts > 1))}"
            )
    return _readonly(arr.astype(np.int32, copy=True))


def inverse_routes(routes: Any) -> np.ndarray:
    """Invert each route: spatial index -> scan position.

    Args:
      routes: array-like ``(K, L)``, each row a permutation of ``range(L)``.

    Returns:
      Read-only int32 ``(K, L)`` array ``inv`` with ``inv[k, routes[k, t]] == t``.

    >>> inverse_routes([[2, 0, 1]]).tolist()
    [[1, 2, 0]]
    """
    try:
        arr = np.asarray(routes)
    except (ValueError, TypeError) as e:
        raise OrderError(f"routes are not a rectangular array: {e}") from None
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise OrderError(f"routes must be 2-D with shape (K, L), L >= 1, got shape {arr.shape}")
    arr = validate_routes(arr, 1, arr.shape[1])
    inv = np.empty_like(arr)
    positions = np.broadcast_to(np.arange(arr.shape[1], dtype=np.int32), arr.shape)
    np.put_along_axis(inv, arr, positions, axis=1)
    return _readonly(inv)


def describe_routes(routes: Any, h: int, w: int, k: int = 0) -> str:
    """ASCII picture of route ``k``: the scan position written in each grid cell.

    Args:
      routes: ``(K, L)`` route array for an ``h x w`` grid.
      h, w: grid size.
      k: which route to draw (default 0).

    Returns:
      ``h`` lines of ``w`` right-aligned numbers.

    >>> print(describe_routes(make_routes("zigzag", 2, 3), 2, 3))
    0 1 2
    5 4 3
    """
    arr = validate_routes(routes, h, w)
    if not 0 <= k < arr.shape[0]:
        raise OrderError(f"route {k} does not exist; there are {arr.shape[0]} routes")
    pos = inverse_routes(arr[k : k + 1])[0].reshape(h, w)
    width = len(str(h * w - 1))
    return "\n".join(" ".join(f"{int(p):>{width}d}" for p in line) for line in pos)


# --------------------------------------------------------------------------------------------
# Base paths: each returns the route-0 permutation (L,) of an h x w grid
# --------------------------------------------------------------------------------------------


def _raster_path(h: int, w: int) -> np.ndarray:
    """Row-major: rows top to bottom, each left to right."""
    return np.arange(h * w, dtype=np.int64)


def _diagonal_path(h: int, w: int) -> np.ndarray:
    """Anti-diagonals ``r + c = 0, 1, ..., h + w - 2`` in turn, each read with increasing r.

    Within an anti-diagonal the scan thus moves down-left (from the top-right end of the
    anti-diagonal to its bottom-left end).
    """
    r, c = np.divmod(np.arange(h * w, dtype=np.int64), w)
    return np.lexsort((r, r + c))


def _morton_path(h: int, w: int) -> np.ndarray:
    """Z-order: cells sorted by their interleaved-bit code, the row bit above the column bit."""
    r, c = np.divmod(np.arange(h * w, dtype=np.int64), w)
    code = np.zeros(h * w, dtype=np.int64)
    for bit in range(max(h - 1, w - 1, 1).bit_length()):
        code |= ((r >> bit) & 1) << (2 * bit + 1)
        code |= ((c >> bit) & 1) << (2 * bit)
    return np.argsort(code, kind="stable")


def _spiral_path(h: int, w: int) -> np.ndarray:
    """Clockwise spiral from the top-left corner inwards (outside-in)."""
    out: list[int] = []
    top, bottom, left, right = 0, h - 1, 0, w - 1
    while top <= bottom and left <= right:
        out.extend(top * w + c for c in range(left, right + 1))
        out.extend(r * w + right for r in range(top + 1, bottom + 1))
        if top < bottom:
            out.extend(bottom * w + c for c in range(right - 1, left - 1, -1))
        if left < right:
            out.extend(r * w + left for r in range(bottom - 1, top, -1))
        top, bottom, left, right = top + 1, bottom - 1, left + 1, right - 1
    return np.asarray(out, dtype=np.int64)


def _zigzag_path(h: int, w: int) -> np.ndarray:
    """Snake (boustrophedon): even rows left to right, odd rows right to left."""
    grid = np.arange(h * w, dtype=np.int64).reshape(h, w)
    grid[1::2] = grid[1::2, ::-1]
    return grid.reshape(-1)


def _sign(v: int) -> int:
    return (v > 0) - (v < 0)


def _hilbert_fill(
    cells: list[tuple[int, int]], x: int, y: int, ax: int, ay: int, bx: int, by: int
) -> None:
    """Append the cells of one rectangle in generalised-Hilbert order.

    The rectangle has its start corner at column ``x``, row ``y``; ``(ax, ay)`` spans its major
    side (the direction the curve travels overall) and ``(bx, by)`` its minor side. Exactly one
    component of each vector is nonzero. Cells are appended as ``(row, col)``.
    """
    major = abs(ax + ay)
    minor = abs(bx + by)
    ux, uy = _sign(ax), _sign(ay)  # unit step along the major side
    vx, vy = _sign(bx), _sign(by)  # unit step along the minor side
    if minor == 1:  # a single line along the major side
        cells.extend((y + i * uy, x + i * ux) for i in range(major))
        return
    if major == 1:  # a single line along the minor side
        cells.extend((y + i * vy, x + i * vx) for i in range(minor))
        return
    hax, hay = ax // 2, ay // 2
    hbx, hby = bx // 2, by // 2
    if 2 * major > 3 * minor:
        # Long, thin block: cut it across the major side into two blocks run one after the other.
        # Keep the first part even (when possible) so that its path ends on the far minor edge.
        if abs(hax + hay) % 2 and major > 2:
            hax, hay = hax + ux, hay + uy
        _hilbert_fill(cells, x, y, hax, hay, bx, by)
        _hilbert_fill(cells, x + hax, y + hay, ax - hax, ay - hay, bx, by)
        return
    # Squarish block: go up the first half of the minor side, across the far part, and back down,
    # i.e. three sub-blocks in a U shape (the two legs with swapped roles of major and minor).
    if abs(hbx + hby) % 2 and minor > 2:
        hbx, hby = hbx + vx, hby + vy
    _hilbert_fill(cells, x, y, hbx, hby, hax, hay)
    _hilbert_fill(cells, x + hbx, y + hby, ax, ay, bx - hbx, by - hby)
    _hilbert_fill(
        cells,
        x + (ax - ux) + (hbx - vx),
        y + (ay - uy) + (hby - vy),
        -hbx,
        -hby,
        -(ax - hax),
        -(ay - hay),
    )


def _hilbert_path(h: int, w: int) -> np.ndarray:
    """Generalised Hilbert ("gilbert") curve from the top-left corner along the longer side.

    Steps are 4-adjacent except for one diagonal step when the shorter side is even and > 2 and
    the longer side is odd (see :func:`make_routes`).
    """
    cells: list[tuple[int, int]] = []
    if w >= h:
        _hilbert_fill(cells, 0, 0, w, 0, 0, h)
    else:
        _hilbert_fill(cells, 0, 0, 0, h, w, 0)
    rc = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    return rc[:, 0] * w + rc[:, 1]


_BASE_PATHS: dict[str, Callable[[int, int], np.ndarray]] = {
    "cross": _raster_path,
    "diagonal": _diagonal_path,
    "morton": _morton_path,
    "spiral": _spiral_path,
    "zigzag": _zigzag_path,
    "hilbert": _hilbert_path,
}


def _four_routes(base: Callable[[int, int], np.ndarray], h: int, w: int) -> np.ndarray:
    """Cross-scan symmetries of a base path: (base, transposed base, reversed, reversed).

    Route 1 runs the base path on the transposed ``w x h`` grid and maps each transposed cell
    ``(r', c')`` back to the original cell ``(c', r')``, index ``c' * w + r'``.
    """
    route0 = base(h, w)
    r_t, c_t = np.divmod(base(w, h), h)  # cells (r', c') of the w x h grid
    route1 = c_t * w + r_t
    return np.stack([route0, route1, route0[::-1], route1[::-1]])


@functools.lru_cache(maxsize=256)
def _named_routes(name: str, h: int, w: int) -> np.ndarray:
    if name == "raster":
        routes = _raster_path(h, w)[None]
    elif name == "bidirectional":
        row_major = _raster_path(h, w)
        routes = np.stack([row_major, row_major[::-1]])
    else:
        routes = _four_routes(_BASE_PATHS[name], h, w)
    return validate_routes(routes, h, w)


def make_routes(name: str, h: int, w: int) -> np.ndarray:
    """Build the routes of a named order on an ``h x w`` grid.

    ``hilbert`` is a generalised Hilbert curve. Checked on all grids with ``h, w <= 64``: every
    step is 4-adjacent, except when the shorter side is even and > 2 and the longer side is odd
    (e.g. 4x5, 6x7, 8x9, 4x31); then each route has exactly one diagonal step.

    Args:
      name: one of :data:`ORDER_NAMES`.
      h, w: grid height and width (positive ints).

    Returns:
      Read-only int32 array ``(K, L)``, ``L = h * w``; K = 4, except ``raster`` (1) and
      ``bidirectional`` (2). Cached per ``(name, h, w)``.

    >>> make_routes("cross", 2, 3).tolist()
    [[0, 1, 2, 3, 4, 5], [0, 3, 1, 4, 2, 5], [5, 4, 3, 2, 1, 0], [5, 2, 4, 1, 3, 0]]
    """
    if not isinstance(name, str) or name not in ORDER_NAMES:
        raise OrderError(f"unknown order {name!r}; known orders: {', '.join(ORDER_NAMES)}")
    h, w = check_grid(h, w)
    return _named_routes(name, h, w)


# --------------------------------------------------------------------------------------------
# Order: a hashable order description, usable as a static jit argument
# --------------------------------------------------------------------------------------------


def route_groups(routes: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """Routes grouped for :func:`jaxmamba.attention.tiles.spatial_maps`: ``(k, k')`` where route
    k' is route k reversed, ``(k,)`` for a route without its reverse.

    >>> route_groups(make_routes("cross", 3, 4))
    ((0, 2), (1, 3))
    """
    routes = np.asarray(routes)
    left = list(range(len(routes)))
    groups: list[tuple[int, ...]] = []
    while left:
        k = left.pop(0)
        mate = next((j for j in left if np.array_equal(routes[j], routes[k][::-1])), None)
        if mate is None:
            groups.append((k,))
        else:
            left.remove(mate)
            groups.append((k, mate))
    return tuple(groups)
