"""The offline explorer: one self-contained HTML file holding a small subset of a study.

``jaxmamba export STUDY --out FILE.html`` (:func:`export`) writes the same front end as
``jaxmamba serve`` (:mod:`jaxmamba.views.web`) with the maps of the chosen orders and blocks
embedded in the page, for sharing: no server, no network (the page's Content-Security-Policy is
``default-src 'none'``), opens from disk in any browser.  Its size is estimated and printed
before anything is written, and a file above the budget (``max_mb``) is refused: at the paper's
scale the maps of every block are far too large for one page (a 56x56 block alone is 13 MB);
serve those instead.  :func:`explorer_data` builds the same page from maps in memory.

Storage (``encoding``, :mod:`jaxmamba.views.encoding`), base64 inside one JSON block:
``"uint8"`` (default; per row, error ≤ (row max − row min) / 510; about 1.33·L² bytes a map: 13
MB for a stage-1 map of a 224×224 image, L = 3136), ``"float16"`` (2.67·L²) or ``"float32"``
(exact, 5.33·L²).

A Vim layer's maps (an entry with ``cls``) are stored as ``"float16"`` when ``"uint8"`` is asked.

Embedding coordinates are stored to 6 significant digits; scan routes as integer lists; images
as PNG data URIs.  A study's companions (the studies of other models over the same images that
its ``study.json`` names) come with it by default, every order and block of each
(``data["companions"]``: each one's ``data``, ``meta`` and ``joint``; the page's images are
theirs), shown side by side as the server shows them.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxmamba.attention.embed import METHODS, embed
from jaxmamba.errors import ConfigError, ExplorerError, StudyError
from jaxmamba.models.config import parse_block_name
from jaxmamba.models.vim import class_last_routes
from jaxmamba.orders import ORDER_NAMES, as_order, make_routes
from jaxmamba.storage import store
from jaxmamba.storage.images import file_kind
from jaxmamba.study import Study, png_bytes
from jaxmamba.views.encoding import ENCODINGS, decode, encode
from jaxmamba.views.protocol import PageOrder, page_meta, study_meta
from jaxmamba.views.web import page

__all__ = [
    "ENCODINGS",
    "ExplorerError",
    "decode",
    "encode",
    "estimate_export_bytes",
    "explorer_data",
    "export",
    "read_explorer",
    "render_explorer",
    "write_explorer",
]

FORMAT = "jaxmamba-explorer"
VERSION = 1
BOOT = (
    "JM.mount(document.getElementById('app'), "
    "JM.embeddedSource(JSON.parse(document.getElementById('jm-data').textContent)));"
)
_DATA_RE = re.compile(r'<script type="application/json" id="jm-data">(.*?)</script>', re.DOTALL)


# ------------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------------


def _data_uri(image) -> str:
    try:
        png = png_bytes(image)
    except StudyError as e:
        raise ExplorerError(str(e)) from None
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


_VIM_LAYER = re.compile(r"layers\.([0-9]{1,6})")


def _stage_index(name: str, cls: int | None) -> tuple[int | None, int | None]:
    """A block's stage and index from its name: ``layers.i.blocks.j`` (VMamba) -> ``(i, j)``, a
    Vim layer's ``layers.i`` (with a class token) -> ``(0, i)``: one stage; ``(None, None)``
    for a name no model has.

    >>> _stage_index("layers.2.blocks.1", None), _stage_index("layers.5", 16)
    ((2, 1), (0, 5))
    """
    try:
        return parse_block_name(name)
    except ConfigError:
        m = _VIM_LAYER.fullmatch(name) if cls is not None else None
        return (0, int(m.group(1))) if m else (None, None)


def _block(order: str, name: str, spec: Mapping, methods, seed: int, encoding: str) -> dict:
    where = f"orders[{order!r}][{name!r}]"
    if not isinstance(spec, Mapping):
        raise ExplorerError(f"{where} must be a dict with 'attn' and 'grid', got {type(spec)}")
    unknown = set(spec) - {"attn", "grid", "cls", "route_attn", "routes", "coords"}
    if unknown:
        raise ExplorerError(f"{where} has unknown keys {sorted(unknown)}")
    if "grid" not in spec:
        raise ExplorerError(f"{where} needs 'grid': (h, w)")
    h, w = (int(v) for v in spec["grid"])
    if h < 1 or w < 1:
        raise ExplorerError(f"{where}: grid must be positive, got {(h, w)}")
    cls = spec.get("cls")
    if cls is not None and (isinstance(cls, bool) or cls != h * w):
        raise ExplorerError(f"{where}['cls'] must be None or h·w = {h * w} (the class token "
                            f"after the patches), got {cls!r}")  # fmt: skip
    l = h * w + (cls is not None)
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
        what = "h·w + 1" if cls is not None else "h·w"
        raise ExplorerError(
            f"{where}['attn'] must be (L, L) with L = {what} = {l}, got {attn.shape}"
        )
    routes = spec.get("routes")
    if routes is None and order in ORDER_NAMES:
        routes = (make_routes(order, h, w) if cls is None
                  else class_last_routes(as_order(order), (h, w)))  # fmt: skip
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
    stage = _stage_index(name, cls)[0]
    if cls is not None and encoding == "uint8":
        # a class token's rows and columns mix its large entries (its own, or a patch's weight
        # on it) with the patches' small ones: a row's 255 steps would flatten the patches
        encoding = "float16"
    return {
        "stage": stage,
        "h": h,
        "w": w,
        "cls": None if cls is None else int(cls),
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
        ``"cls"`` (optional): a Vim layer's class token, ``h·w`` (class-last: the row-major
        patches, then the class token; ``L = h·w + 1``; default routes: both directions with
        the class token at scan position ``h·w // 2``; stored at least as ``"float16"``: the
        class token's large entries would flatten a row's uint8 steps), or None;
        ``"route_attn"`` (optional): ``(K, L, L)`` per-route maps (or ``(B, K, L, L)``); with it
        ``"attn"`` may be left out (the route sum is used);
        ``"routes"`` (optional): ``(K, L)`` scan position → patch; made with
        :func:`~jaxmamba.make_routes` when the order is a named one;
        ``"coords"`` (optional): ``{method: (L, 2)}`` precomputed embeddings.
      images: ``None``, one image, a list of images, ``{name: image}``, or a list of
        ``(name, image)`` pairs (names may repeat); each ``(H, W, 3)`` uint8 or float (min-max
        scaled when outside [0, 1]) or PNG bytes.
      methods: embeddings computed (with :func:`jaxmamba.attention.embed.embed`) where
        ``coords`` lacks them.
      seed: embedding seed.
      encoding: map storage, ``"uint8"``, ``"float16"`` or ``"float32"`` (module docstring).

    Returns:
      A JSON-able dict: ``{"format", "version", "title", "encoding", "orders", "images":
      [{"name", "src"}], "data": {order: {block: {"stage", "h", "w", "cls", "attn",
      "route_attn", "routes", "coords"}}}}``.

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
    elif (
        isinstance(images, list | tuple)
        and images
        and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in images)
    ):
        named = list(images)
    elif isinstance(images, list | tuple):
        named = [(f"image {i}", im) for i, im in enumerate(images)]
    else:
        named = [("image", images)]
    first = {b: e for o in data.values() for b, e in o.items()}  # each block's first entry
    meta = page_meta(
        title=str(title), count=None, signed=True,
        methods=list(dict.fromkeys(m for o in data.values() for e in o.values()
                                   for m in e["coords"])),
        route_maps=any(e["route_attn"] for o in data.values() for e in o.values()),
        orders=[PageOrder(o, _route_count(blocks), blocks=tuple(blocks))
                for o, blocks in data.items()],
        blocks=[(b, e["stage"], _stage_index(b, e["cls"])[1], (e["h"], e["w"]), e["cls"])
                for b, e in first.items()],
        images=[str(n) for n, _ in named],
    )  # fmt: skip
    return {
        "format": FORMAT,
        "version": VERSION,
        "title": str(title),
        "encoding": encoding,
        "orders": list(data),
        "images": [{"name": str(n), "src": _data_uri(im)} for n, im in named],
        "data": data,
        "meta": meta,
    }


def _route_count(blocks: Mapping[str, Mapping]) -> int | None:
    """The routes of an order's blocks when they have any (one count for all), else None."""
    counts = {len(e["routes"]) for e in blocks.values() if e["routes"] is not None}
    return counts.pop() if len(counts) == 1 else None


# ------------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------------


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
    return page(
        str(data["title"]), BOOT, inline=True,
        data=f'<script type="application/json" id="jm-data">{blob}</script>',
    )  # fmt: skip


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


# ------------------------------------------------------------------------------------------------
# export of a study subset
# ------------------------------------------------------------------------------------------------

_PAGE_BYTES = 60_000  # the app's script, style and page, measured at about 35 KB


def _subset(study: Study, orders, blocks) -> tuple[list[str], list[str]]:
    orders = list(study.orders if orders is None else orders)
    unknown = [o for o in orders if o not in study.orders]
    if unknown or not orders or len(set(orders)) < len(orders):
        raise ExplorerError(f"the study has orders {study.orders}; asked for {orders} (each once)")
    wanted = None if blocks is None else set(_block_names(study, blocks))
    names = [b.name for b in study.blocks if wanted is None or b.name in wanted]
    if not names:
        raise ExplorerError("the selection holds no block")
    return orders, names


def _block_names(study: Study, blocks) -> list[str]:
    names = []
    for item in [blocks] if isinstance(blocks, int | str) else list(blocks):
        if isinstance(item, str) and item.isascii() and item.isdigit():  # "²" is a digit too
            item = int(item)
        if isinstance(item, int) and not isinstance(item, bool):
            found = [b.name for b in study.blocks if b.stage == item]
            if not found:
                raise ExplorerError(f"the study has no block of stage {item}")
            names += found
        elif isinstance(item, str) and item in {b.name for b in study.blocks}:
            names.append(item)
        else:
            raise ExplorerError(f"the study has no block {item!r}")
    return names


def _maps_bytes(
    study: Study, orders: Sequence[str], names: Sequence[str], route_maps: bool
) -> float:
    """Bytes of the maps of ``orders`` x ``names`` in the page (uint8 maps, a Vim layer's
    float16): 4/3 base64 of each ``L x L`` code matrix and its per-row scales, the coordinates
    and the routes."""
    k = max(o.routes for o in study.info.orders)
    total = 0.0
    for name in names:
        l = study.block(name).length
        maps = 1 + (k if route_maps and study.info.route_maps else 0)
        code = 1 if study.block(name).cls is None else 2  # a Vim layer's maps: float16
        per_block = (
            maps * (code * l * l + 8 * l) * 4 / 3 + len(study.methods) * l * 2 * 10 + k * l * 6
        )
        total += len(orders) * per_block
    return total


def estimate_export_bytes(
    study: Study,
    orders=None,
    blocks=None,
    route_maps: bool = False,
    companions: Sequence[Study] = (),
) -> int:
    """Bytes of the page :func:`export` would write for this selection (uint8 maps, a Vim
    layer's float16), before encoding anything: the maps (4/3 base64 of each ``L x L`` code
    matrix and its per-row scales, the coordinates, routes), the images, and the page itself;
    with ``companions``, every order and block of each (they show the same images: no
    images of their own)."""
    orders, names = _subset(study, orders, blocks)
    total: float = _PAGE_BYTES + _maps_bytes(study, orders, names, route_maps)
    for c in companions:
        total += _maps_bytes(c, c.orders, [b.name for b in c.blocks], route_maps)
    for i in range(len(study.info.images)):
        total += len(study.image_png(i)) * 4 / 3 + 40  # read through the study's checks
    return int(total)


def _open_companions(study: Study) -> tuple[list[Study], list[dict]]:
    """The companions ``study.json`` names that open and show the same images, and why the
    others were left out (``[{"name", "error"}]``, as the server's ``companion_errors``)."""
    found: list[Study] = []
    errors: list[dict] = []
    for name in study.info.companions or ():
        try:
            c = study.companion(name)
        except StudyError as e:
            errors.append({"name": name, "error": str(e)})
            continue
        if study.same_images(c):
            found.append(c)
        else:
            errors.append({"name": name, "error": "it shows other images than the study"})
    return found, errors


def _entries(study: Study, orders: Sequence[str], names: Sequence[str], route_maps: bool) -> dict:
    """``{order: {block: entry}}`` of :func:`explorer_data` read from a study: each block's
    mean map (per-route maps with ``route_maps``), a Vim layer's class token and routes, the
    study's embeddings."""
    entries: dict[str, dict[str, dict]] = {}
    for o in orders:
        entries[o] = {}
        for name in names:
            b = study.block(name)
            entry = {"grid": b.grid, "attn": np.asarray(study.map(o, name))}
            if b.cls is not None:  # a Vim layer: class-last, its routes as the server's
                entry["cls"] = b.cls
                entry["routes"] = study.routes(o, name)
            if route_maps and study.info.route_maps:
                k = study.info.order(o).routes
                entry["route_attn"] = np.stack(
                    [np.asarray(study.map(o, name, r)) for r in range(k)]
                )
            entry["coords"] = {m: study.coords(o, name, m) for m in study.methods}
            entries[o][name] = entry
    return entries


def _joint(study: Study, orders: Sequence[str], names: Sequence[str]) -> dict:
    """The blocks mode's joint embeddings of the stages whose blocks are all in ``names``."""
    stages = sorted({study.block(n).stage for n in names})
    full = [s for s in stages if {b.name for b in study.blocks if b.stage == s} <= set(names)]
    kept = lambda o, s: study.has_points("joint", o, s, study.methods[0])
    return {
        o: {str(s): {m: _short(study.stage_points("joint", o, s, m)) for m in study.methods}
            for s in full if kept(o, s)}
        for o in orders
    }  # fmt: skip


def _companion_data(study: Study, c: Study, index: int, route_maps: bool) -> dict:
    """Companion ``index``'s part of the page: every order and block of study ``c`` (its
    ``data``, ``meta`` with ``index``, ``folder``, ``same_images``, and ``joint``); its
    images are the study's."""
    names = [b.name for b in c.blocks]
    data = explorer_data(_entries(c, c.orders, names, route_maps), methods=c.methods)["data"]
    meta = study_meta(c.info, c.count, single=False)
    meta.update(route_maps=bool(route_maps and c.info.route_maps), index=index,
                folder=c.path.name, same_images=True)  # fmt: skip
    return {"data": data, "meta": meta, "joint": _joint(c, c.orders, names)}


def export(
    study: Study | str | os.PathLike,
    out: str | os.PathLike,
    *,
    orders: Sequence[str] | None = None,
    blocks=None,
    route_maps: bool = False,
    max_mb: float = 100.0,
    overwrite: bool = False,
    companions: bool = True,
    say=print,
) -> Path:
    """Write the offline explorer of a subset of ``study`` to the HTML file ``out``.

    Args:
      study: a :class:`~jaxmamba.study.Study` or its folder.
      out: the ``.html`` file to write.
      orders: orders to include (default all); blocks: stage indices or block names (default
        all).
      route_maps: include the per-route maps (K times more).
      max_mb: refuse (writing nothing) when the page would exceed this many megabytes (a
        finite number above 0).
      overwrite: replace an existing ``out`` only if it is an explorer page jaxmamba wrote; a
        folder, FIFO, device or other non-regular ``out`` is refused without being opened.
      companions: include the companion studies its ``study.json`` names (other models over
        the same images, shown side by side): every order and block of each, mean maps (and
        per-route maps with ``route_maps``), counted in ``max_mb``; one that does not open or
        shows other images is left out (said, and listed in the page).
      say: where the size is reported before writing (``print``; ``None`` for silence).

    Returns:
      The path written.
    """
    _check_max_mb(max_mb)
    study = study if isinstance(study, Study) else Study(study)
    out = Path(out).expanduser().absolute()
    _check_out(out, overwrite)
    orders, names = _subset(study, orders, blocks)
    others, errors = _open_companions(study) if companions else ([], [])
    estimate = estimate_export_bytes(study, orders, names, route_maps, others)
    what = f"{len(orders)} orders x {len(names)} blocks" + "".join(
        f", companion {c.path.name}: {len(c.orders)} orders x {len(c.blocks)} blocks"
        for c in others
    )
    if say:
        for e in errors:
            say(f"left out companion {e['name']}: {e['error']}")
    if estimate > max_mb * 1e6:
        raise ExplorerError(
            f"the explorer of {what} would be about {estimate / 1e6:.0f} MB, above --max-mb "
            f"{max_mb:g}; nothing was written. Serve the study instead (jaxmamba serve "
            f"{study.path}), or export fewer blocks or orders (e.g. --blocks 2 3)"
            + (" or leave its companions out (--no-companions)" if others else "")
        )
    if say:
        say(f"writing {out} (about {estimate / 1e6:.1f} MB: {what})")
    images = [(im.name, study.image_png(i)) for i, im in enumerate(study.info.images)]
    info = study.info
    data = explorer_data(_entries(study, orders, names, route_maps), images=images,
                         methods=study.methods,
                         title="jaxmamba" if info.title is None else info.title)  # fmt: skip
    data["meta"] = study_meta(info, study.count, orders, names, single=False)
    data["joint"] = _joint(study, orders, names)
    if others or errors:
        data["companions"] = [_companion_data(study, c, i, route_maps)
                              for i, c in enumerate(others, 1)]  # fmt: skip
        data["meta"]["companions"] = [c["meta"] for c in data["companions"]]
        data["meta"]["companion_errors"] = errors
    text = render_explorer(data)
    size = len(text.encode("utf-8"))
    if size > max_mb * 1e6:
        raise ExplorerError(f"the page is {size / 1e6:.1f} MB, above --max-mb {max_mb:g}; "
                            "nothing was written")  # fmt: skip
    _check_out(out, overwrite)  # again: the check above was before the maps were read
    out.parent.mkdir(parents=True, exist_ok=True)
    store.write_text_atomic(out, text)
    return out


def _check_max_mb(max_mb) -> None:
    """Refuse a size budget that is not a finite number of megabytes above 0."""
    ok = isinstance(max_mb, int | float | np.integer | np.floating) and not isinstance(
        max_mb, bool | np.bool_
    )
    if not ok or not math.isfinite(max_mb) or max_mb <= 0:
        raise ExplorerError(f"--max-mb must be a finite number of megabytes > 0, got {max_mb!r}")


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that is a folder, a FIFO, a device or any other non-regular file, or an
    existing file that is not an explorer page jaxmamba wrote (or without ``overwrite``).

    Only ``os.stat`` looks at ``out`` first: a FIFO is never opened (an open would block), and
    only a regular file is read to see whether jaxmamba wrote it.
    """
    try:
        mode = os.stat(out).st_mode
    except (FileNotFoundError, NotADirectoryError):
        folder = next(p for p in out.parents if os.path.lexists(p))  # the root exists
        if not folder.is_dir():
            raise ExplorerError(f"cannot write --out {out}: {folder} is not a folder") from None
        return
    except OSError as e:
        raise ExplorerError(f"cannot write --out {out}: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise ExplorerError(f"--out {out} is a folder; give the .html file to write")
    if not stat.S_ISREG(mode):
        raise ExplorerError(
            f"--out {out} is {file_kind(mode)}, not a regular file; nothing was written"
        )
    if not overwrite:
        raise ExplorerError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    try:
        read_explorer(out)
    except (ExplorerError, OSError, ValueError, UnicodeDecodeError):
        raise ExplorerError(f"{out} is not an explorer page jaxmamba wrote; not replaced") from None
