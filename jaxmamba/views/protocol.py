"""The questions a view asks of a study, answered from the study folder: one protocol for the
local server (:mod:`jaxmamba.views.server`, over HTTP) and the notebook widget
(:mod:`jaxmamba.views.widget`, over widget messages).

Every request is ``(method, args)`` and its answer ``(content, payload)``: ``content`` a small
JSON-able dict, ``payload`` raw little-endian bytes (float32 or int32) or PNG bytes, or
``None``.  Nothing answers with a whole ``L x L`` map: a heat map is the mean of the selected
patches' rows or columns, ``L`` numbers; a matrix is pooled to at most ``size x size``.

=========== ===================================================== ==========================
method      args                                                  payload
=========== ===================================================== ==========================
``meta``    —                                                     — (content: the study)
``coords``  order, block, method, subject                         float32 ``(L, 2)``
``routes``  order, block                                          int32 ``(K, L)``
``heat``    order, block, patches, direction, route, subject      float32 ``(L,)``
``points``  kind (joint, interblock), order, stage, method        float32 ``(n, 2)``
``image``   index                                                 PNG
``matrix``  order, block, route, coords, size                     float32 ``(n, n)``
``overview`` order, block, patches, direction, route, subject     float32 ``(Σ L_b,)``
=========== ===================================================== ==========================

Every request but ``meta`` also takes ``study``: which study answers (0, the default: the
study; ``i``: its companion ``i``, another model's study of the same images, listed by
``meta``'s ``companions``).

``matrix`` is the block's mean map in the scan order of route ``coords`` (default: ``route`` if
an integer, else 0): ``M[t, s] = A[perm[t], perm[s]]``, rows the query's scan position ``t``,
columns the source's ``s`` (lower-triangular per route), pooled on the server by the mean over
``f x f`` tiles, ``f = ceil(L / size)`` (``size``: the largest side in pixels, 16..1024, default
512), so at most ``size²`` numbers; its content adds ``f``, ``L``, ``coords``, ``route`` and
``n``.  ``overview`` maps the selection (patches of ``block``'s grid) by image area to every
block of the study and answers each block's ``heat``, concatenated; its content adds
``blocks``: ``[{"name", "stage", "grid", "offset", "length"}]``.

``subject`` is ``"mean"`` (the mean over the study's images, the default) or the position of
one of the study's single images (its map computed exactly on demand; its scatterplot is the
PCA of its rows).

Arguments arrive as JSON values (a POST body, a widget message) or as strings (a query string),
and are taken strictly: an integer argument (``patches``, ``subject``, ``stage``, ``route``,
``index``) is a JSON integer (never a float, even ``2.0``, nor ``true``) or a string of decimal
digits, within ``0..2**31 - 1``; anything else is refused with a
:class:`~jaxmamba.errors.StudyError` naming the argument.  :meth:`ViewAPI.handle` answers one
request at a time per process (``meta`` excepted): the study's cache of single-image maps is not
thread-safe, so concurrent callers (the server's worker threads) wait their turn.

>>> import numpy as np, tempfile, jaxmamba
>>> from jaxmamba.study import write_study
>>> x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
>>> s = write_study(tempfile.mkdtemp() + "/s", jaxmamba.create_model("vmamba_test"), x,
...                 blocks=[3], progress=False)
>>> api = ViewAPI(s)
>>> content, payload = api.handle("heat", {"order": "cross", "block": "layers.3.blocks.0",
...                                        "patches": [1, 2], "direction": "query"})
>>> content, np.frombuffer(payload, "<f4").shape
({'dtype': 'float32', 'shape': [4]}, (4,))
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxmamba.errors import StudyError
from jaxmamba.study import DIRECTIONS, MATRIX_SIZE, MATRIX_SIZES, Study
from jaxmamba.study.schema import OrderFindings, StudyInfo

__all__ = ["METHODS", "ViewAPI"]

METHODS = ("meta", "coords", "routes", "heat", "points", "image", "matrix", "overview")
MAX_PATCHES = 1 << 16
MAX_INT = (1 << 31) - 1  # every integer of the protocol is a position: 0..MAX_INT
_DIGITS = re.compile(r"-?[0-9]{1,12}")  # ASCII digits only (int() takes others)
_LOCK = threading.Lock()  # one request at a time touches a study (its cache is not thread-safe)


def _array(a: np.ndarray, dtype: str) -> tuple[dict, bytes]:
    a = np.ascontiguousarray(a, dtype="<f4" if dtype == "float32" else "<i4")
    return {"dtype": dtype, "shape": list(a.shape)}, a.tobytes()


def _show(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages stay one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _str(args: Mapping, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise StudyError(f"{key} must be a string, got {_show(value)}")
    return value


def _to_int(value, what: str) -> int:
    """One integer, strictly: an ``int`` (not a bool) or a string of decimal digits, in
    ``0..MAX_INT``; else a :class:`StudyError` saying ``what`` it must be."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise StudyError(f"{what}, got {_show(value)}")
    if not 0 <= number <= MAX_INT:
        raise StudyError(f"{what} in 0..{MAX_INT}, got {_show(value)}")
    return number


def _int(args: Mapping, key: str, keyword: str | None = None):
    """``args[key]`` as a strict integer, or ``keyword`` (e.g. ``"mean"``, ``"sum"``) when the
    argument is absent, ``None`` or that very word.

    >>> _int({"index": "3"}, "index"), _int({}, "subject", "mean")
    (3, 'mean')
    >>> _int({"stage": 2.0}, "stage")
    Traceback (most recent call last):
    ...
    jaxmamba.errors.StudyError: stage must be an integer, got 2.0
    """
    value = args.get(key)
    if keyword is not None and (value is None or value == keyword):
        return keyword
    return _to_int(value, f"{key} must be an integer")


def _ints(args: Mapping, key: str, limit: int = MAX_PATCHES) -> list[int]:
    """``args[key]`` as a list of at most ``limit`` strict integers: a JSON list, or the
    comma-separated digits of a query string (``"1,2,3"``).

    >>> _ints({"patches": "1,2"}, "patches"), _ints({"patches": [3]}, "patches")
    ([1, 2], [3])
    >>> _ints({"patches": [1.9]}, "patches")
    Traceback (most recent call last):
    ...
    jaxmamba.errors.StudyError: patches must be integers, got 1.9
    """
    values = args.get(key)
    if isinstance(values, str):
        if len(values) > limit * 12:
            raise StudyError(f"{key} must be at most {limit} integers")
        values = [v for v in values.split(",") if v]
    if not isinstance(values, list | tuple):
        raise StudyError(f"{key} must be a list of integers, got {_show(values)}")
    if len(values) > limit:
        raise StudyError(f"{key} must be at most {limit} integers, got {len(values)}")
    return [_to_int(v, f"{key} must be integers") for v in values]


@dataclasses.dataclass(frozen=True)
class PageOrder:
    """An order as the page lists it: its routes, and the model its maps come from."""

    name: str
    routes: int | None = None
    model: str | None = None  # the model's description
    model_digest: str | None = None
    source: str | None = None
    blocks: tuple[str, ...] | None = None  # the blocks it has; None: every block


# a block as the page lists it: name, stage, index (None for names no model has), grid, and
# a Block's class-token position after them (read by index: a Block has five fields)
PageBlock = (
    tuple[str, int | None, int | None, tuple[int, int]]
    | tuple[str, int | None, int | None, tuple[int, int], int | None]
)


def page_meta(
    *,
    title: str,
    count: int | None,
    signed: bool,
    methods: Sequence[str],
    route_maps: bool,
    orders: Sequence[PageOrder],
    blocks: Sequence[PageBlock],
    images: Sequence[str],
    options: Mapping[str, Any] | None = None,
    image_size: Sequence[int] | None = None,
    single_images: Sequence[int] = (),
    pool_grid: int | None = None,
    findings: Mapping[str, OrderFindings] | None = None,
    synthetic: bool = False,
) -> dict:
    """The metadata the page shows in its controls, built here only: the server and widget send
    it (:meth:`ViewAPI.meta`), the offline export embeds it (``data["meta"]``).  Every order
    lists every block; ``single_images`` are positions among ``images``; stages come in the
    order of their first block; each order lists its blocks (default every block).  A block's
    ``cls`` is the position of its class token in its maps (a Vim layer's, class-last: ``h·w``,
    the one token after the grid's patches), None for a VMamba block.

    >>> m = page_meta(title="t", count=2, signed=True, methods=["pca"], route_maps=False,
    ...               orders=[PageOrder("cross", 4)], blocks=[("layers.0.blocks.0", 0, 0, (4, 4))],
    ...               images=["a", "b"], single_images=[1])
    >>> m["stages"]
    [{'stage': 0, 'grid': [4, 4], 'blocks': ['layers.0.blocks.0']}]
    >>> m["single_images"]
    [{'subject': 0, 'image': 1, 'name': 'b'}]
    """
    names = [b[0] for b in blocks]
    stages: dict = {}
    for b in blocks:
        name, stage, grid = b[0], b[1], b[3]
        stages.setdefault(stage, {"stage": stage, "grid": list(grid), "blocks": []})
        stages[stage]["blocks"].append(name)
    return {
        "title": title,
        "count": count,
        "signed": bool(signed),
        "methods": list(methods),
        "route_maps": bool(route_maps),
        "options": dict(options or {}),
        "image_size": None if image_size is None else list(image_size),
        "orders": [{"name": o.name, "routes": o.routes, "model": o.model,
                    "model_digest": o.model_digest, "source": o.source,
                    "blocks": list(names if o.blocks is None else o.blocks)}
                   for o in orders],
        "blocks": [{"name": b[0], "stage": b[1], "index": b[2], "grid": list(b[3]),
                    "cls": b[4] if len(b) > 4 else None} for b in blocks],
        "images": [{"name": n} for n in images],
        "single_images": [{"subject": k, "image": i, "name": images[i]}
                          for k, i in enumerate(single_images)],
        "stages": list(stages.values()),
        "pool_grid": pool_grid,
        "findings": {o: f.to_json() for o, f in (findings or {}).items()},
        "synthetic": bool(synthetic),
    }  # fmt: skip


def study_meta(
    info: StudyInfo,
    count: int,
    orders: Sequence[str] | None = None,
    blocks: Sequence[str] | None = None,
    single: bool = True,
) -> dict:
    """:func:`page_meta` of a study's typed ``study.json`` (:class:`~jaxmamba.study.StudyInfo`),
    for a subset of its orders and blocks (default all; in the study's order), with or without
    its single images."""
    chosen = [o for o in info.orders if orders is None or o.name in orders]
    return page_meta(
        title="jaxmamba" if info.title is None else info.title, count=count, signed=info.signed,
        methods=info.methods, route_maps=info.route_maps, options=info.options,
        image_size=info.image_size,
        orders=[PageOrder(o.name, o.routes, info.models[o.model].description, o.model,
                          info.models[o.model].source) for o in chosen],
        blocks=[b for b in info.blocks if blocks is None or b.name in blocks],
        images=[i.name for i in info.images],
        single_images=(info.single_images or ()) if single else (),
        pool_grid=info.pool_grid,
        findings={o.name: info.findings[o.name] for o in chosen
                  if info.findings and o.name in info.findings},
        synthetic=bool(info.synthetic),
    )  # fmt: skip


class ViewAPI:
    """Answers view requests from an open :class:`~jaxmamba.study.Study` and its companions.

    Companions are studies of other models over the same images, shown side by side with the
    study (a Vim study beside a VMamba one): ``companions`` (default: the studies the study's
    ``study.json`` names, :meth:`~jaxmamba.study.Study.companions`).  Every request but
    ``meta`` takes ``study``: 0 (the default) for the study, ``i`` for companion ``i``.  A
    companion named by ``study.json`` that cannot be opened is left out, and ``meta`` says why
    (``companion_errors``): it never stops the study itself from being shown."""

    def __init__(self, study: Study, companions: Sequence[Study] | None = None) -> None:
        self.study = study
        self.errors: list[dict] = []
        if companions is None:
            companions = []
            for name in study.info.companions or ():
                try:
                    companions.append(study.companion(name))
                except StudyError as e:
                    self.errors.append({"name": name, "error": str(e)})
        self.studies = [study, *companions]
        self._meta: dict | None = None

    def meta(self) -> dict:
        """What the front end shows in its controls (:func:`study_meta`): orders, blocks,
        methods, images, options, findings; with companions (or companions that failed to
        open: ``companion_errors``), ``companions``: each one's
        :func:`study_meta` plus ``index`` (its ``study``), ``folder`` and ``same_images``
        (whether it shows the same images, :meth:`~jaxmamba.study.Study.same_images`)."""
        if self._meta is None:
            out = study_meta(self.study.info, self.study.count)
            if len(self.studies) == 1 and not self.errors:
                self._meta = out  # no companion: the study's metadata alone
                return out
            out["companions"] = [
                {**study_meta(c.info, c.count), "index": i, "folder": c.path.name,
                 "same_images": self.study.same_images(c)}
                for i, c in enumerate(self.studies[1:], 1)
            ]  # fmt: skip
            out["companion_errors"] = list(self.errors)
            self._meta = out
        return self._meta

    def handle(self, method: str, args: Mapping) -> tuple[dict, bytes | None]:
        """Answer one request; bad requests raise :class:`~jaxmamba.errors.StudyError`.

        Thread-safe: requests other than ``meta`` are answered one at a time."""
        if not isinstance(method, str) or method not in METHODS:
            raise StudyError(f"unknown request {_show(method)}; requests are {METHODS}")
        if not isinstance(args, Mapping):
            raise StudyError(f"request arguments must be a mapping, got {_show(args)}")
        if method == "meta":
            return self.meta(), None
        with _LOCK:
            return self._answer(method, args)

    def _answer(self, method: str, args: Mapping) -> tuple[dict, bytes | None]:
        which = 0 if args.get("study") is None else _int(args, "study")
        if not which < len(self.studies):
            raise StudyError(f"study must be 0..{len(self.studies) - 1} (the study and its "
                             f"companions), got {which}")  # fmt: skip
        s = self.studies[which]
        if method == "coords":
            order, block = _str(args, "order"), _str(args, "block")
            subject = _int(args, "subject", "mean")
            if subject == "mean":
                return _array(s.coords(order, block, _str(args, "method")), "float32")
            return _array(s.single_coords(order, block, subject), "float32")
        if method == "points":
            xy = s.stage_points(_str(args, "kind"), _str(args, "order"), _int(args, "stage"),
                                _str(args, "method"))  # fmt: skip
            return _array(xy, "float32")
        if method == "routes":
            return _array(s.routes(_str(args, "order"), _str(args, "block")), "int32")
        if method in ("heat", "overview"):
            order, block, patches = _str(args, "order"), _str(args, "block"), _ints(args, "patches")
            direction = args.get("direction", "query")
            if not isinstance(direction, str) or direction not in DIRECTIONS:
                raise StudyError(f"direction must be one of {DIRECTIONS}, got {_show(direction)}")
            route, subject = _int(args, "route", "sum"), _int(args, "subject", "mean")
            if method == "heat":
                return _array(s.heat(order, block, patches, direction, route, subject), "float32")
            values, parts = s.overview(order, block, patches, direction, route, subject)
            content, payload = _array(values, "float32")
            return {**content, "blocks": parts}, payload
        if method == "matrix":
            return self._matrix(s, args)
        return {"media_type": "image/png"}, s.image_png(_int(args, "index"))

    def _matrix(self, s: Study, args: Mapping) -> tuple[dict, bytes]:
        """The ``matrix`` answer: the pooled scan-order matrix and how it was pooled."""
        order, block = _str(args, "order"), _str(args, "block")
        route = _int(args, "route", "sum")
        coords = None if args.get("coords") is None else _int(args, "coords")
        size = MATRIX_SIZE if args.get("size") is None else _int(args, "size")
        lo, hi = MATRIX_SIZES
        if not lo <= size <= hi:
            raise StudyError(f"size must be an integer in {lo}..{hi} (pixels), got {size}")
        pooled, f = s.matrix(order, block, route, coords, size)
        content, payload = _array(pooled, "float32")
        used = (0 if route == "sum" else route) if coords is None else coords
        return {**content, "f": f, "L": s.block(block).length, "coords": used,
                "route": route, "n": len(pooled)}, payload  # fmt: skip
