"""Interactive attention explorer: one self-contained, offline HTML file per run.

The file links the paper's two views. A scatterplot of the patches of a block (PCA/t-SNE/UMAP
coordinates computed here, in Python) and a heat map of the selected patches' attention over
the patch grid, drawn over the image. Clicking or hovering a point highlights its patch; clicking
a grid cell selects that patch; a lasso in the scatterplot (or a rectangle dragged over the grid)
selects several patches and the heat map shows their mean row (or column). Controls switch
order, stage, block, route (sum or each route, when per-route maps were given), embedding,
colouring (grid row, column, scan position), direction, image, and show the scan path.

Why a hand-written template rather than Bokeh: no new dependency, a file of a few hundred
lines of plain JS and canvas that has no loader, no CDN and no version drift; the whole page is
under a Content-Security-Policy of ``default-src 'none'`` (inline script and style, ``data:``
images), so it cannot touch the network even by accident, and it opens from disk in any
browser. Bokeh's inline resources would add about 1 MB of JS per file and a linked-selection
model that is awkward for a patch-grid heat map recomputed from the selection.

Storage (``encoding``), all little-endian base64 inside one JSON block:

* ``"uint8"`` (default): per row r, ``lo = min``, ``step = (max − min) / 255`` (float32), codes
  ``round((x − lo) / step)``; decoded ``lo + code·step``. Absolute error ≤ ``step / 2`` =
  (row max − row min) / 510, plus float32 rounding. About 1.33·L² bytes per map: 13 MB for a
  stage-1 map of a 224×224 image (L = 3136), 0.8 MB at stage 2.
* ``"float16"``: relative error ≤ 2⁻¹¹ for |x| ≥ 6.1e-5, absolute ≤ 3e-8 below; |x| > 65504
  is refused. 2.67·L² bytes.
* ``"float32"``: exact for float32 maps. 5.33·L² bytes.

Embedding coordinates are stored to 6 significant digits; scan routes as integer lists; images
as PNG data URIs.
"""

from __future__ import annotations

import base64
import html
import json
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from jaxmamba.config import parse_block_name
from jaxmamba.errors import ExplorerError
from jaxmamba.orders import ORDER_NAMES, make_routes
from jaxmamba.reduce import METHODS, embed

__all__ = [
    "ENCODINGS",
    "ExplorerError",
    "decode",
    "encode",
    "explorer_data",
    "read_explorer",
    "render_explorer",
    "write_explorer",
]

ENCODINGS = ("uint8", "float16", "float32")
FORMAT = "jaxmamba-explorer"
VERSION = 1
_DATA_RE = re.compile(r'<script type="application/json" id="jm-data">(.*?)</script>', re.DOTALL)


# ------------------------------------------------------------------------------------------------
# encoding of maps and images
# ------------------------------------------------------------------------------------------------


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def encode(matrix, encoding: str = "uint8") -> dict:
    """Encode a ``(L, F)`` matrix as JSON-able base64 (see the module docstring for precision).

    >>> m = np.arange(6.0).reshape(2, 3)
    >>> bool(np.allclose(decode(encode(m)), m, atol=2 / 510))
    True
    """
    if encoding not in ENCODINGS:
        raise ExplorerError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ExplorerError(f"can only encode 2-D matrices, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ExplorerError(f"matrix contains {int(np.sum(~np.isfinite(m)))} NaN/inf values")
    out: dict[str, Any] = {"shape": list(m.shape), "dtype": encoding}
    if encoding == "float32":
        out["data"] = _b64(m.astype("<f4"))
    elif encoding == "float16":
        if m.size and np.max(np.abs(m)) > 65504.0:
            raise ExplorerError(
                f"values up to {np.max(np.abs(m)):.3g} overflow float16; use encoding='uint8'"
            )
        out["data"] = _b64(m.astype("<f2"))
    else:
        lo = m.min(axis=1) if m.shape[1] else np.zeros(m.shape[0])
        hi = m.max(axis=1) if m.shape[1] else np.zeros(m.shape[0])
        lo32 = lo.astype(np.float32)
        step32 = ((hi - lo) / 255.0).astype(np.float32)
        step = step32.astype(np.float64)[:, None]
        safe = np.where(step > 0, step, 1.0)
        codes = np.clip(np.rint((m - lo32.astype(np.float64)[:, None]) / safe), 0, 255)
        out["data"] = _b64(codes.astype(np.uint8))
        out["lo"] = _b64(lo32.astype("<f4"))
        out["step"] = _b64(step32.astype("<f4"))
    return out


def decode(enc: Mapping) -> np.ndarray:
    """Decode :func:`encode`'s output to a float32 ``(L, F)`` array (as the page does).

    >>> decode(encode(np.eye(2), "float32")).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    shape = tuple(enc["shape"])
    raw = base64.b64decode(enc["data"])
    dtype = enc["dtype"]
    if dtype == "float32":
        return np.frombuffer(raw, "<f4").reshape(shape).astype(np.float32)
    if dtype == "float16":
        return np.frombuffer(raw, "<f2").reshape(shape).astype(np.float32)
    if dtype != "uint8":
        raise ExplorerError(f"unknown encoding {dtype!r}")
    codes = np.frombuffer(raw, np.uint8).reshape(shape).astype(np.float32)
    lo = np.frombuffer(base64.b64decode(enc["lo"]), "<f4")[:, None]
    step = np.frombuffer(base64.b64decode(enc["step"]), "<f4")[:, None]
    return lo + codes * step


def _png(image) -> bytes:
    """Encode an ``(H, W)`` / ``(H, W, 3|4)`` uint8 or float image as PNG (stdlib only)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ExplorerError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        if not np.all(np.isfinite(f)):
            raise ExplorerError("image contains NaN/inf values")
        lo, hi = float(f.min()), float(f.max())
        if lo < 0.0 or hi > 1.0:  # e.g. mean/std-normalised network input: min-max to [0, 1]
            f = (f - lo) / (hi - lo if hi > lo else 1.0)
        img = np.rint(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)
    h, w, c = img.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, w * c)], axis=1)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6 if c == 4 else 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def _data_uri(image) -> str:
    if isinstance(image, bytes):
        if not image.startswith(b"\x89PNG"):
            raise ExplorerError("image bytes must be a PNG file")
        png = image
    else:
        png = _png(image)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ------------------------------------------------------------------------------------------------
# the data structure
# ------------------------------------------------------------------------------------------------


def _batch_mean(a, ndim: int, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == ndim + 1:  # a batch axis from extract_attention: average over images
        a = a.mean(axis=0)
    if a.ndim != ndim:
        raise ExplorerError(
            f"{what} must have {ndim} (or {ndim + 1} with a batch) axes, got {a.shape}"
        )
    return a


def _short(x: np.ndarray) -> list:
    return [[float(f"{v:.6g}") for v in row] for row in np.asarray(x, np.float64)]


def _block(order: str, name: str, spec: Mapping, methods, seed: int, encoding: str) -> dict:
    where = f"orders[{order!r}][{name!r}]"
    if not isinstance(spec, Mapping):
        raise ExplorerError(f"{where} must be a dict with 'attn' and 'grid', got {type(spec)}")
    unknown = set(spec) - {"attn", "grid", "route_attn", "routes", "coords"}
    if unknown:
        raise ExplorerError(f"{where} has unknown keys {sorted(unknown)}")
    if "grid" not in spec:
        raise ExplorerError(f"{where} needs 'grid': (h, w)")
    h, w = (int(v) for v in spec["grid"])
    l = h * w
    if h < 1 or w < 1:
        raise ExplorerError(f"{where}: grid must be positive, got {(h, w)}")
    route_attn = None
    if spec.get("route_attn") is not None:
        route_attn = _batch_mean(spec["route_attn"], 3, f"{where}['route_attn']")
        if route_attn.shape[1:] != (l, l):
            raise ExplorerError(
                f"{where}['route_attn'] must be (K, L, L) with L = {l}, got {route_attn.shape}"
            )
    if spec.get("attn") is not None:
        attn = _batch_mean(spec["attn"], 2, f"{where}['attn']")
    elif route_attn is not None:
        attn = route_attn.sum(axis=0)
    else:
        raise ExplorerError(f"{where} needs 'attn' (L, L) or 'route_attn' (K, L, L)")
    if attn.shape != (l, l):
        raise ExplorerError(f"{where}['attn'] must be (L, L) with L = h·w = {l}, got {attn.shape}")
    routes = spec.get("routes")
    if routes is None and order in ORDER_NAMES:
        routes = make_routes(order, h, w)
    if routes is not None:
        routes = np.asarray(routes)
        ok = routes.ndim == 2 and routes.shape[1] == l
        ok = ok and all(np.array_equal(np.sort(r), np.arange(l)) for r in routes)
        if not ok:
            raise ExplorerError(f"{where}['routes'] must be (K, {l}) permutations of 0..{l - 1}")
        if route_attn is not None and len(routes) != len(route_attn):
            raise ExplorerError(
                f"{where}: {len(routes)} routes but route_attn has {len(route_attn)} maps"
            )
    coords = dict(spec.get("coords") or {})
    for m in methods:
        if m not in coords:
            coords[m] = embed(attn, m, seed=seed)
    for m, c in coords.items():
        c = np.asarray(c, dtype=np.float64)
        if c.shape != (l, 2) or not np.all(np.isfinite(c)):
            raise ExplorerError(f"{where}['coords'][{m!r}] must be finite (L, 2) = ({l}, 2)")
        coords[m] = c
    try:
        stage = parse_block_name(name)[0]
    except ValueError:
        stage = None
    return {
        "stage": stage,
        "h": h,
        "w": w,
        "attn": encode(attn, encoding),
        "route_attn": None if route_attn is None else [encode(a, encoding) for a in route_attn],
        "routes": None if routes is None else routes.astype(int).tolist(),
        "coords": {m: _short(c) for m, c in coords.items()},
    }


def explorer_data(
    orders: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    images=None,
    methods: Sequence[str] = ("pca",),
    seed: int = 0,
    encoding: str = "uint8",
    title: str = "jaxmamba attention explorer",
) -> dict:
    """Build the explorer's JSON-able data from NumPy (or JAX) inputs.

    Args:
      orders: ``{order name: {block name: entry}}``, each entry a dict with
        ``"attn"``: ``(L, L)`` routes summed (or ``(B, L, L)``, averaged over the batch);
        ``"grid"``: ``(h, w)``, ``L = h·w``;
        ``"route_attn"`` (optional): ``(K, L, L)`` per-route maps (or ``(B, K, L, L)``); with it
        ``"attn"`` may be left out (the route sum is used);
        ``"routes"`` (optional): ``(K, L)`` scan position → patch; made with
        :func:`~jaxmamba.make_routes` when the order is a named one;
        ``"coords"`` (optional): ``{method: (L, 2)}`` precomputed embeddings.
      images: ``None``, one image, a list of images, or ``{name: image}``; each ``(H, W, 3)``
        uint8 or float (min-max scaled when outside [0, 1]) or PNG bytes.
      methods: embeddings computed (with :func:`jaxmamba.reduce.embed`) where ``coords`` lacks
        them.
      seed: embedding seed.
      encoding: map storage, ``"uint8"``, ``"float16"`` or ``"float32"`` (module docstring).

    Returns:
      A JSON-able dict: ``{"format", "version", "title", "encoding", "orders", "images":
      [{"name", "src"}], "data": {order: {block: {"stage", "h", "w", "attn", "route_attn",
      "routes", "coords"}}}}``.

    >>> a = np.random.default_rng(0).random((4, 4))
    >>> d = explorer_data({"cross": {"layers.0.blocks.0": {"attn": a, "grid": (2, 2)}}})
    >>> d["data"]["cross"]["layers.0.blocks.0"]["routes"][1]
    [0, 2, 1, 3]
    """
    if encoding not in ENCODINGS:
        raise ExplorerError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ExplorerError(f"unknown methods {bad}; choose from {METHODS}")
    if not isinstance(orders, Mapping) or not orders:
        raise ExplorerError("orders must be a non-empty mapping {order: {block: entry}}")
    data = {}
    for order, blocks in orders.items():
        if not isinstance(blocks, Mapping) or not blocks:
            raise ExplorerError(f"orders[{order!r}] must be a non-empty mapping {{block: entry}}")
        data[str(order)] = {
            str(name): _block(str(order), str(name), spec, methods, seed, encoding)
            for name, spec in blocks.items()
        }
    if images is None:
        named = []
    elif isinstance(images, Mapping):
        named = list(images.items())
    elif isinstance(images, bytes) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)):
        named = [("image", images)]
    elif isinstance(images, list | tuple):
        named = [(f"image {i}", im) for i, im in enumerate(images)]
    else:
        named = [("image", images)]
    return {
        "format": FORMAT,
        "version": VERSION,
        "title": str(title),
        "encoding": encoding,
        "orders": list(data),
        "images": [{"name": str(n), "src": _data_uri(im)} for n, im in named],
        "data": data,
    }


# ------------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------------


def _template() -> str:
    return resources.files("jaxmamba").joinpath("explorer_template.html").read_text("utf-8")


def _check_data(data: Mapping) -> None:
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise ExplorerError("data must come from explorer_data (missing 'format')")
    if data.get("version") != VERSION:
        raise ExplorerError(f"data version {data.get('version')!r}, expected {VERSION}")


def render_explorer(data: Mapping) -> str:
    """The explorer page for ``data`` (:func:`explorer_data`) as one HTML string.

    >>> d = explorer_data({"cross": {"b": {"attn": np.eye(4), "grid": (2, 2)}}})
    >>> page = render_explorer(d)
    >>> page.startswith("<!DOCTYPE html>"), "https://" in page
    (True, False)
    """
    _check_data(data)
    # "<" escaped so that no "</script>" (or "<!--") inside strings can end the JSON block.
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    page = _template()
    page = page.replace("{{TITLE}}", html.escape(str(data["title"])))
    return page.replace("{{DATA}}", blob)


def write_explorer(path, data: Mapping) -> Path:
    """Write the self-contained explorer HTML for ``data`` (:func:`explorer_data`) to ``path``.

    Returns the path; parent folders are created.

    >>> import tempfile, os
    >>> d = explorer_data({"cross": {"b": {"attn": np.eye(4), "grid": (2, 2)}}})
    >>> p = write_explorer(os.path.join(tempfile.mkdtemp(), "explore.html"), d)
    >>> read_explorer(p)["orders"]
    ['cross']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_explorer(data), encoding="utf-8")
    return path


def read_explorer(path) -> dict:
    """Parse the embedded data back out of an explorer HTML file (for tests and tooling).

    >>> import tempfile, os
    >>> d = explorer_data({"cross": {"b": {"attn": np.eye(4), "grid": (2, 2)}}})
    >>> p = write_explorer(os.path.join(tempfile.mkdtemp(), "e.html"), d)
    >>> read_explorer(p)["data"]["cross"]["b"]["h"]
    2
    """
    text = Path(path).read_text(encoding="utf-8")
    m = _DATA_RE.search(text)
    if m is None:
        raise ExplorerError(f"{path} has no embedded explorer data")
    data = json.loads(m.group(1))
    _check_data(data)
    return data
