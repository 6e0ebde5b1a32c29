"""``study.json`` read into typed, frozen values in one place, every untrusted value checked.

:func:`parse` checks a ``study.json`` field by field (a :class:`~jaxmamba.errors.StudyError`
names the file, the field and the value at fault) and returns a :class:`StudyInfo`: the models
(:class:`ModelInfo`), orders (:class:`OrderInfo`), blocks (:class:`~jaxmamba.models.config.Block`),
images (:class:`ImageInfo`), options and findings (:class:`OrderFindings`);
:meth:`StudyInfo.to_json` writes it back.  The findings are what
:func:`jaxmamba.attention.findings.findings_of_maps` computes, stored by :func:`order_findings`:
stages keyed by their index as text, "no finding" (NaN there) as null.

>>> info = parse(Path("study.json"), {"format": FORMAT, "version": VERSION, "seed": 0,
...     "models": {"0123456789abcdef": {"description": "tiny"}}, "route_maps": False,
...     "orders": [{"name": "cross", "model": "0123456789abcdef", "routes": 4}],
...     "blocks": [{"name": "layers.0.blocks.0", "stage": 0, "index": 0, "grid": [16, 16]}],
...     "image_size": [64, 64], "images": [{"name": "a"}], "methods": ["pca"],
...     "options": {"signed": True}})
>>> info.model_of("cross").description, info.blocks[0].grid, info.signed
('tiny', (16, 16), True)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxmamba.attention.embed import METHODS
from jaxmamba.errors import ConfigError, StudyError
from jaxmamba.models.config import Block, parse_block_name
from jaxmamba.models.vim import class_last_routes
from jaxmamba.models.vim_config import parse_layer_name
from jaxmamba.orders import ORDER_NAMES, OrderError, as_order

__all__ = [
    "ImageInfo",
    "ModelInfo",
    "OrderFindings",
    "OrderInfo",
    "StudyInfo",
    "block_entry",
    "parse",
]

FORMAT = "jaxmamba-study"


VERSION = 1


SYNTHETIC_MODEL = "synthetic"  # the model id of write_synthetic_study's planted maps


MAX_PATCHES = 1 << 16  # patches of a block's grid a study may declare (a 16 GiB float32 map)


_DIGEST = re.compile(r"[0-9a-f]{16}")  # params.digest: sha256, 16 hex digits


COMPANION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a companion study's sub-folder


_MISSING = object()


def is_int(value) -> bool:
    """An integer (Python or NumPy), not a bool: what every index of a study must be."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Fields:
    """Reads checked fields of one JSON object of ``study.json``; a failure is one line naming
    the file, the field and the value at fault."""

    def __init__(self, file: Path, obj, where: str = "") -> None:
        self.file, self.obj, self.where = file, obj, where
        if not isinstance(obj, dict):
            raise self.fail("", "an object", obj)

    def fail(self, key: str, want: str, value=_MISSING) -> StudyError:
        field = f"{self.where}.{key}".strip(".") or "the top level"
        got = "it is missing" if value is _MISSING else f"got {show(value)}"
        return StudyError(f"{self.file} is damaged: {field} must be {want}; {got}")

    def get(self, key: str, ok, want: str, default=_MISSING):
        """``obj[key]`` if ``ok(value)``; ``default`` when absent (required without one)."""
        if key not in self.obj:
            if default is _MISSING:
                raise self.fail(key, want)
            return default
        value = self.obj[key]
        if not ok(value):
            raise self.fail(key, want, value)
        return value

    def items(self, key: str, want: str, default=_MISSING) -> list:
        """A list field, each item itself checked by the caller (``_Fields`` of ``key[i]``)."""
        value = self.get(key, lambda v: isinstance(v, list) and len(v) > 0, want, default)
        return [_Fields(self.file, x, f"{self.where}.{key}[{i}]".strip("."))
                if isinstance(x, dict) else x for i, x in enumerate(value)]  # fmt: skip


def _positive(value) -> bool:
    return is_int(value) and value >= 1


def _str(value) -> bool:
    return isinstance(value, str)


def check_meta(file: Path, meta) -> None:
    """Refuse a ``study.json`` whose fields a reader would trip on (a missing or wrong-typed
    field, a name that is no order, block or digest, a grid that is no grid)."""
    top = _Fields(file, meta)
    for key, ok, want in (("complete", lambda v: isinstance(v, bool), "true or false"),
                          ("synthetic", lambda v: isinstance(v, bool), "true or false"),
                          ("title", _str, "a string"), ("count", _positive, "a positive integer"),
                          ("pool_grid", _positive, "a positive integer"),
                          ("done", lambda v: isinstance(v, dict), "an object")):  # fmt: skip
        top.get(key, ok, want, None)
    top.get("seed", is_int, "an integer")
    top.get("route_maps", lambda v: isinstance(v, bool), "true or false")
    _Fields(file, top.get("options", lambda v: True, "an object"), "options").get(
        "signed", lambda v: isinstance(v, bool), "true or false"
    )
    top.get("methods", lambda v: isinstance(v, list) and len(v) > 0 and all(map(_str, v))
            and set(v) <= set(METHODS) and len(set(v)) == len(v),
            f"distinct names from {METHODS}")  # fmt: skip
    models = _check_models(file, top)
    size = top.get("image_size", lambda v: isinstance(v, list) and len(v) == 2
                   and all(_positive(x) and x <= MAX_PATCHES for x in v),
                   "[height, width] in pixels")  # fmt: skip
    layers = _check_blocks(top, size)
    orders = _check_orders(top, models, layers)
    images = top.items("images", "a non-empty list of {name}")
    for i, image in enumerate(images):
        if not isinstance(image, _Fields):
            raise top.fail(f"images[{i}]", "an object {name}", image)
        image.get("name", _str, "a string")
    n = len(images)
    top.get("single_images", lambda v: isinstance(v, list)
            and all(is_int(i) and 0 <= i < n for i in v) and len(set(v)) == len(v),
            f"distinct image indices 0..{n - 1}", None)  # fmt: skip
    top.get("companions", lambda v: isinstance(v, list) and len(set(map(str, v))) == len(v)
            and all(_str(c) and COMPANION.fullmatch(c) for c in v),
            "distinct names of sub-folders (letters, digits, _ and -)", None)  # fmt: skip
    _check_findings(file, top, orders, {b["name"]: b["stage"] for b in top.obj["blocks"]})


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a key shown as .key in a field's path


def _field(path: tuple) -> str:
    """The JSON path ``models['3f…'].description``, ``blocks[0].grid`` of a value of study.json
    (a key that is not a plain name is shown quoted and escaped: the path is printable)."""
    out = ""
    for key in path:
        if isinstance(key, str) and _NAME.fullmatch(key):
            out += f".{key}"
        else:
            out += f"[{key!r}]"
    return out.lstrip(".") or "the top level"


def check_values(file: Path, meta) -> None:
    """Refuse a value of ``study.json`` that cannot be written out again: a number that is not
    finite (``1e400`` parses as infinity) or a string or key that is not UTF-8 text (a lone
    surrogate such as ``"\\ud800"``).  An explicit stack: the nesting may be deep."""
    stack: list[tuple[object, tuple]] = [(meta, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise StudyError(f"{file} is damaged: {_field(path)} is not a finite number "
                             f"({value!r})")  # fmt: skip
        if isinstance(value, str) and not is_text(value):
            raise StudyError(f"{file} is damaged: {_field(path)} is not UTF-8 text (a lone "
                             f"surrogate): {show(value)}")  # fmt: skip
        if isinstance(value, dict):
            for key, item in value.items():
                if not is_text(key):
                    raise StudyError(f"{file} is damaged: {_field(path)} has a key that is not "
                                     f"UTF-8 text (a lone surrogate): {show(key)}")  # fmt: skip
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))


def is_text(value: str) -> bool:
    """Whether ``value`` can be encoded as UTF-8 (no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _measure(value) -> bool:
    """A finding's value: a finite number (one a browser reads as a number) or null."""
    if value is None:
        return True
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _check_findings(file: Path, top: _Fields, orders: list[str], stages: dict) -> None:
    """``findings``: per order, ``{"blocks": {block: {measure: number|null}}, "stages": {stage:
    {measure: number|null}}}`` of the study's blocks and stages (what the page draws).  A grid of
    fewer than :data:`jaxmamba.attention.findings.MIN_PATCHES` patches has null findings in a
    study written now; numbers there (an earlier jaxmamba's) are accepted, and the views show
    "too few patches" whatever the file holds (they decide from the grid)."""
    findings = top.get("findings", lambda v: isinstance(v, dict), "an object", {})
    for order, entry in findings.items():
        if order not in orders or not isinstance(entry, dict):
            raise top.fail(f"findings[{order!r}]", "an object of one of the study's orders", entry)
        f = _Fields(file, entry, f"findings[{order!r}]")
        parts = f.get("depth", lambda v: isinstance(v, dict) and set(v) == {"early", "late"},
                      "an object {early, late} of measures", {})  # fmt: skip
        for part, values in parts.items():
            row = _Fields(file, values, f"{f.where}.depth.{part}")
            for measure in values:
                row.get(measure, _measure, "a finite number or null")
        for key, names in (("blocks", set(stages)), ("stages", {str(s) for s in stages.values()})):
            want = f"an object {{{key[:-1]}: {{measure: number or null}}}}"
            for name, values in f.get(key, lambda v: isinstance(v, dict), want).items():
                if name not in names:
                    raise f.fail(key, f"keyed by the study's {key} {sorted(names)}", name)
                row = _Fields(file, values, f"{f.where}.{key}[{name!r}]")
                for measure in values:
                    row.get(measure, _measure, "a finite number or null")


def _check_models(file: Path, top: _Fields) -> dict:
    models = top.get("models", lambda v: isinstance(v, dict) and len(v) > 0, "a non-empty object")
    synthetic = top.obj.get("synthetic") is True
    for key, entry in models.items():
        if not (_DIGEST.fullmatch(key) or (synthetic and key == SYNTHETIC_MODEL)):
            raise top.fail("models", "keyed by parameter digests (16 hex digits)", key)
        model = _Fields(file, entry, f"models[{key!r}]")
        model.get("description", _str, "a string")
        model.get("source", lambda v: v is None or _str(v), "a string or null", None)
        model.get("config", lambda v: v is None or isinstance(v, dict), "an object or null", None)
        model.get("params_digest", lambda v, key=key: v is None or v == key, f"null or {key!r}",
                  None)  # fmt: skip
    return models


def _check_orders(top: _Fields, models: dict, layers: tuple[int, int] | None) -> list[str]:
    """The orders; ``layers``: the patch grid of a Vim study's layers (None for VMamba), whose
    orders must be one patch path (two routes: forward and backward)."""
    names = []
    for i, order in enumerate(top.items("orders", "a non-empty list of {name, model, routes}")):
        if not isinstance(order, _Fields):
            raise top.fail(f"orders[{i}]", "an object {name, model, routes}", order)
        name = order.get("name", lambda v: _str(v) and v in ORDER_NAMES and v not in names,
                         f"a distinct order name from {ORDER_NAMES}")  # fmt: skip
        order.get("model", lambda v: _str(v) and v in models, "the digest of one of models")
        if layers is not None:
            try:
                class_last_routes(as_order(name), layers)
            except OrderError as e:
                raise order.fail("name", "an order a Vim layer scans (one patch path)",
                                 f"{name!r}: {e}") from None  # fmt: skip
        k = 2 if layers is not None else as_order(name).num_routes(2, 2)
        order.get("routes", lambda v, k=k: is_int(v) and v == k, f"{k}, the routes of {name!r}")
        names.append(name)
    return names


def _block_name(value) -> bool:
    """Whether ``value`` is an official block name written as write_study writes it."""
    try:
        stage, index = parse_block_name(value)
    except ConfigError:  # not a block name
        return False
    return value == f"layers.{stage}.blocks.{index}"


def _layer_name(value) -> bool:
    """Whether ``value`` is an official Vim layer name written as write_study writes it."""
    try:
        index = parse_layer_name(value)
    except ConfigError:  # not a layer name
        return False
    return value == f"layers.{index}"


def _check_blocks(top: _Fields, size) -> tuple[int, int] | None:
    """The blocks (VMamba: ``layers.i.blocks.j`` on its stage's grid) or Vim layers
    (``layers.i``, stage 0, one grid, ``cls`` the class token's position: last, ``h·w``);
    returns the Vim layers' grid, or None for VMamba blocks."""
    listed = top.items("blocks", "a non-empty list of {name, stage, index, grid}")
    first = listed[0].obj if isinstance(listed[0], _Fields) else None
    if isinstance(first, dict) and "cls" in first:
        return _check_layers(top, listed, size)
    names: set[str] = set()
    grids: dict[int, list] = {}
    fits = np.ones(min(size), bool)  # fits: for each patch size
    for i, block in enumerate(listed):
        if not isinstance(block, _Fields):
            raise top.fail(f"blocks[{i}]", "an object {name, stage, index, grid}", block)
        name = block.get("name", lambda v: _block_name(v) and v not in names,
                         "a distinct block name layers.i.blocks.j")  # fmt: skip
        block.get("cls", lambda v: False, "absent in a VMamba study (only Vim layers have one)",
                  None)  # fmt: skip
        stage, index = parse_block_name(name)
        block.get("stage", lambda v, s=stage: is_int(v) and v == s, f"{stage}, as its name says")
        block.get("index", lambda v, j=index: is_int(v) and v == j, f"{index}, as its name says")
        want = grids.get(stage)
        block.get("grid", lambda v, want=want: isinstance(v, list) and len(v) == 2
                  and all(_positive(x) for x in v) and v[0] <= size[0] and v[1] <= size[1]
                  and v[0] * v[1] <= MAX_PATCHES and v == (want or v),
                  f"[h, w] of positive integers within the image size {size} and "
                  f"{MAX_PATCHES} patches" + (f", {want} like stage {stage}'s other blocks"
                                               if want else ""))  # fmt: skip
        names.add(name)
        grids[stage] = block.obj["grid"]
        fits = fits & _grid_fits(block.obj["grid"], stage, size)
        if not fits.any():
            raise block.fail("grid", f"the grid of stage {stage} for images of {size} pixels "
                             f"(the stage-0 grid, height and width ÷ the patch size, halved "
                             f"{stage} times) like the other blocks'",
                             block.obj["grid"])  # fmt: skip
    return None


def _check_layers(top: _Fields, listed: list, size) -> tuple[int, int]:
    """A Vim study's layers: ``{name: "layers.i", stage: 0, index: i, grid, cls}``, one grid
    for all within the image size, ``cls`` = ``h·w`` (the class token last)."""
    names: set[str] = set()
    grid = None
    for i, block in enumerate(listed):
        if not isinstance(block, _Fields):
            raise top.fail(f"blocks[{i}]", "an object {name, stage, index, grid, cls}", block)
        name = block.get(
            "name",
            lambda v: _layer_name(v) and v not in names,
            "a distinct Vim layer name layers.i (the study's first block has a cls)",
        )
        index = parse_layer_name(name)
        block.get("stage", lambda v: is_int(v) and v == 0, "0 (a Vim model is one stage)")
        block.get("index", lambda v, j=index: is_int(v) and v == j, f"{index}, as its name says")
        block.get(
            "grid",
            lambda v, want=grid: (
                isinstance(v, list)
                and len(v) == 2
                and all(_positive(x) for x in v)
                and v[0] <= size[0]
                and v[1] <= size[1]
                and v[0] * v[1] < MAX_PATCHES
                and v == (want or v)
            ),
            f"[h, w] of positive integers within the image size {size} and "
            f"{MAX_PATCHES} tokens" + (f", {grid} like the other layers'" if grid else ""),
        )
        grid = block.obj["grid"]
        m = grid[0] * grid[1]
        block.get("cls", lambda v, m=m: is_int(v) and v == m,
                  f"{m}, the class token's position: after the {m} patches")  # fmt: skip
        names.add(name)
    assert grid is not None  # a non-empty list
    return grid[0], grid[1]


def _grid_fits(grid, stage: int, size) -> np.ndarray:
    """For each patch size ``p`` in ``1..min(size)`` (index ``p - 1``): whether ``grid`` is the
    grid of ``stage`` of VMamba for images of ``size = [H, W]`` (:meth:`VMambaConfig.block
    <jaxmamba.models.config.VMambaConfig.block>`: the stage-0 grid ``H // p``, halved ``stage``
    times, rounding down or up).

    >>> [int(p) + 1 for p in np.flatnonzero(_grid_fits([2, 2], 3, [64, 64]))]
    [3, 4, 5, 6, 7]
    >>> bool(_grid_fits([1, 4], 3, [64, 64]).any())  # as many patches, not the grid of any p
    False
    """
    p = np.arange(1, min(size) + 1, dtype=np.int64)
    s = min(stage, 62)  # beyond, any grid of at most 2**16 patches halves to 0 (floor) or 1
    ok = np.ones(len(p), bool)
    for g, n in zip(grid, size, strict=True):
        g0 = n // p
        ok &= (g0 >= 1) & ((g == g0 >> s) | (g == -(-g0 >> s)))
    return ok


# ---- the typed values ------------------------------------------------------------------------

Measures = Mapping[str, float | None]  # {measure: a finite number, or None for no finding}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A model of the study (keyed by its parameter digest): what it is, where it came from."""

    description: str
    config: Mapping[str, Any] | None = None
    params_digest: str | None = None
    source: str | None = None


@dataclasses.dataclass(frozen=True)
class OrderInfo:
    """A scan order of the study: its name, the digest of its model, its number of routes."""

    name: str
    model: str
    routes: int


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    name: str


@dataclasses.dataclass(frozen=True)
class OrderFindings:
    """The findings of one order's mean maps: ``blocks`` ``{block name: measures}`` and
    ``stages`` ``{stage index as text: measures}`` (:mod:`jaxmamba.attention.findings`); for
    a Vim study ``depth`` ``{"early" | "late": measures}``, the means over the earlier and the
    later half of the layers (:func:`jaxmamba.attention.findings.depth_halves`)."""

    blocks: Mapping[str, Measures]
    stages: Mapping[str, Measures]
    depth: Mapping[str, Measures] | None = None

    def to_json(self) -> dict:
        out = {"blocks": {k: dict(v) for k, v in self.blocks.items()},
               "stages": {k: dict(v) for k, v in self.stages.items()}}  # fmt: skip
        if self.depth is not None:
            out["depth"] = {k: dict(v) for k, v in self.depth.items()}
        return out


def order_findings(found: Mapping) -> OrderFindings:
    """What :func:`jaxmamba.attention.findings.findings_of_maps` returns, as a study stores it:
    stages keyed by their index as text, NaN ("no finding") as None.

    >>> order_findings({"blocks": {"b": {"x": float("nan")}}, "stages": {2: {"x": 0.5}}})
    OrderFindings(blocks={'b': {'x': None}}, stages={'2': {'x': 0.5}}, depth=None)
    """

    def measures(entry: Mapping) -> dict[str, float | None]:
        return {k: None if math.isnan(v) else float(v) for k, v in entry.items()}

    depth = found.get("depth")
    return OrderFindings(
        blocks={name: measures(v) for name, v in found["blocks"].items()},
        stages={str(stage): measures(v) for stage, v in found["stages"].items()},
        depth=None if depth is None else {k: measures(v) for k, v in depth.items()},
    )


# the optional top-level fields, written only when set
_OPTIONAL = ("title", "count", "complete", "synthetic", "single_images", "pool_grid", "companions",
             "images_digest", "created", "library_version", "done")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class StudyInfo:
    """``study.json`` as typed values (checked by :func:`parse`); optional fields are None
    when the file does not hold them."""

    models: Mapping[str, ModelInfo]
    orders: tuple[OrderInfo, ...]
    blocks: tuple[Block, ...]
    image_size: tuple[int, int]
    images: tuple[ImageInfo, ...]
    methods: tuple[str, ...]
    route_maps: bool
    options: Mapping[str, Any]  # AttentionOptions.to_dict() and "signed"
    seed: int
    title: str | None = None
    count: int | None = None
    complete: bool | None = None
    synthetic: bool | None = None
    single_images: tuple[int, ...] | None = None
    companions: tuple[str, ...] | None = None
    pool_grid: int | None = None
    images_digest: str | None = None
    created: str | None = None
    library_version: str | None = None
    done: Mapping[str, Any] | None = None
    findings: Mapping[str, OrderFindings] | None = None

    @property
    def signed(self) -> bool:
        """Whether maps can be negative (a diverging colour scale)."""
        return bool(self.options["signed"])

    def order(self, name: str) -> OrderInfo:
        return next(o for o in self.orders if o.name == name)

    def model_of(self, order: str) -> ModelInfo:
        """The model an order's maps come from."""
        return self.models[self.order(order).model]

    def to_json(self) -> dict:
        """The ``study.json`` object (:func:`parse` reads it back to an equal value)."""
        out: dict[str, Any] = {
            "format": FORMAT, "version": VERSION,
            "models": {k: dataclasses.asdict(m) for k, m in self.models.items()},
            "orders": [dataclasses.asdict(o) for o in self.orders],
            "blocks": [block_entry(b) for b in self.blocks],
            "image_size": list(self.image_size),
            "images": [{"name": i.name} for i in self.images],
            "methods": list(self.methods), "route_maps": self.route_maps,
            "options": dict(self.options), "seed": self.seed,
        }  # fmt: skip
        for key in _OPTIONAL:
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        if self.findings is not None:
            out["findings"] = {k: f.to_json() for k, f in self.findings.items()}
        return out


def block_entry(block: Block) -> dict:
    """A block as ``study.json`` lists it: ``{name, stage, index, grid}``, and ``cls`` (the
    class token's position in its maps, class-last) for a Vim layer.

    >>> block_entry(Block("layers.3", 0, 3, (2, 2), 4))
    {'name': 'layers.3', 'stage': 0, 'index': 3, 'grid': [2, 2], 'cls': 4}
    """
    out: dict[str, Any] = {"name": block.name, "stage": block.stage, "index": block.index,
                           "grid": list(block.grid)}  # fmt: skip
    if block.cls is not None:
        out["cls"] = block.cls
    return out


def parse(file: Path, meta: object) -> StudyInfo:
    """The :class:`StudyInfo` of the ``study.json`` object ``meta`` (read from ``file``), every
    field checked: a :class:`~jaxmamba.errors.StudyError` names the field at fault."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StudyError(f"{file} is not a jaxmamba study")
    if not is_int(meta.get("version")) or meta["version"] != VERSION:
        raise StudyError(f"{file.parent} is a study of format version "
                         f"{show(meta.get('version'))}; this jaxmamba reads version "
                         f"{VERSION}")  # fmt: skip
    check_values(file, meta)
    check_meta(file, meta)
    single = meta.get("single_images")
    return StudyInfo(
        models={k: ModelInfo(m["description"], m.get("config"), m.get("params_digest"),
                             m.get("source")) for k, m in meta["models"].items()},
        orders=tuple(OrderInfo(o["name"], o["model"], int(o["routes"])) for o in meta["orders"]),
        blocks=tuple(Block(b["name"], b["stage"], b["index"], tuple(b["grid"]), b.get("cls"))
                     for b in meta["blocks"]),
        image_size=(int(meta["image_size"][0]), int(meta["image_size"][1])),
        images=tuple(ImageInfo(i["name"]) for i in meta["images"]),
        methods=tuple(meta["methods"]), route_maps=meta["route_maps"],
        options=dict(meta["options"]), seed=meta["seed"],
        title=meta.get("title"), count=meta.get("count"), complete=meta.get("complete"),
        synthetic=meta.get("synthetic"),
        single_images=None if single is None else tuple(int(i) for i in single),
        companions=None if "companions" not in meta else tuple(meta["companions"]),
        pool_grid=meta.get("pool_grid"), images_digest=meta.get("images_digest"),
        created=meta.get("created"), library_version=meta.get("library_version"),
        done=meta.get("done"),
        findings=None if "findings" not in meta else {
            o: OrderFindings(dict(f["blocks"]), dict(f["stages"]),
                             None if "depth" not in f else dict(f["depth"]))
            for o, f in meta["findings"].items()},
    )  # fmt: skip
