"""A study folder: what ``jaxmamba explore`` and ``jaxmamba demo`` write and every view reads.

A study averages the exact attention of one model per scan order (or one model scanned in every
order) over a set of images, and keeps what the views need, each piece readable on its own::

    STUDY/study.json                       the plan (models with a digest of their parameters,
                                           orders, blocks and grids, images, options, library
                                           version) and what is done
    STUDY/means/<order>/<block>.npy        (L, L) float32 mean map, routes summed
    STUDY/routes/<order>/<block>.npy       (K, L, L) float32 per-route means (``route_maps``)
    STUDY/embeddings/<order>/<block>.<method>.npy   (L, 2) float32 scatterplot coordinates
    STUDY/images/<i>.png                   the images as shown (thumbnails)
    STUDY/figures/*.png                    static figures (written by the command line)
    STUDY/work/<order>/                    resumable running mean while an order is averaged

Maps are plain ``.npy`` files opened as memory maps: a view reads the few rows (12 KB each at
L = 3136) or columns it needs straight from the operating system's page cache, without loading
a 39 MB map; ``.npy`` needs nothing beyond NumPy and any tool can read it (measured warm on this
CPU: 0.02 ms a row, 1 ms a column, 1.4 ms the mean of 500 rows; chunked Zarr through
TensorStore was 5-10x slower warm without a chunk cache and saves nothing for float data).

Every file is written atomically (a temporary sibling, then a rename), entry by entry: a killed
run resumes where it stopped and never recomputes a finished entry; a running mean resumes by
image (:func:`jaxmamba.attention_mean`).  A rerun into an existing study must have the same plan
(the same models, images, orders, blocks and options) or is refused, naming what differs; only an
unfinished first run that averaged nothing yet may be planned anew.  Every argument is checked
before the first write; while a study is written, ``STUDY/.lock`` (the writer's pid and host)
refuses a second writer by name, and the temporaries and lock of a killed writer never block the
next run, which also removes a finished order's leftover running mean.

>>> import numpy as np, tempfile, jaxmamba
>>> model = jaxmamba.create_model("vmamba_test")
>>> x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
>>> study = write_study(tempfile.mkdtemp() + "/s", model, x, orders=["cross", "spiral"],
...                     blocks=[3], methods=["pca"], progress=False)
>>> study.orders, [b.name for b in study.blocks], study.count
(['cross', 'spiral'], ['layers.3.blocks.0'], 2)
>>> study.heat("spiral", "layers.3.blocks.0", [0, 1]).shape
(4,)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxmamba import params as P
from jaxmamba import store
from jaxmamba.aggregate import RUN_FILE, RUN_FORMAT, attention_mean
from jaxmamba.attention import AttentionOptions
from jaxmamba.config import Block
from jaxmamba.errors import CheckpointError, StudyError, require
from jaxmamba.model import Model, check_images, select_blocks
from jaxmamba.orders import ORDER_NAMES, as_order
from jaxmamba.reduce import METHODS, embed

__all__ = [
    "DIRECTIONS",
    "Study",
    "StudyError",
    "estimate_bytes",
    "png_bytes",
    "write_study",
    "write_synthetic_study",
]

STUDY_FILE = "study.json"
FORMAT = "jaxmamba-study"
VERSION = 1
DIRECTIONS = ("query", "source")  # rows: what the selection attends to; columns: what attends to it


def png_bytes(image, max_side: int | None = None) -> bytes:
    """An image as PNG bytes (Pillow), optionally downscaled so no side exceeds ``max_side``.

    ``image`` is ``(H, W)``, ``(H, W, 1|3|4)``, uint8 or float: floats in [0, 1] are scaled by
    255, floats outside it (e.g. normalised model inputs) are min-max scaled; PNG bytes pass.

    >>> png_bytes(np.zeros((4, 6, 3), np.uint8))[:4]
    b'\\x89PNG'
    """
    if isinstance(image, bytes):
        if not image.startswith(b"\x89PNG"):
            raise StudyError("image bytes must be a PNG file")
        return image
    Image = require("PIL.Image", "plot", "writing images")
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)) or 0 in img.shape:
        raise StudyError(f"an image must be (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        if not np.all(np.isfinite(f)):
            raise StudyError("an image to show contains NaN/inf values")
        lo, hi = float(f.min()), float(f.max())
        if lo < 0.0 or hi > 1.0:  # e.g. mean/std-normalised network input: min-max to [0, 1]
            f = (f - lo) / (hi - lo if hi > lo else 1.0)
        img = np.rint(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)
    im = Image.fromarray(img)
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _digest_array(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:16]


def _write_npy(path: Path, array) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, np.float32))
    store.write_bytes_atomic(path, buf.getvalue())


def estimate_bytes(blocks: Sequence[Block], n_orders: int, k_routes: int, route_maps: bool) -> int:
    """Bytes of the maps a study keeps (means, and per-route means when asked).

    >>> from jaxmamba import get_config
    >>> b = get_config("vmamba_tiny_s1l8").block("layers.0.blocks.0", (224, 224))
    >>> estimate_bytes([b], 1, 4, False) / 2**20  # one 56x56 block: 3136 x 3136 float32
    37.515625
    """
    per_order = sum(4 * b.length**2 for b in blocks)
    return n_orders * per_order * (1 + (k_routes if route_maps else 0))


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _model_entry(model: Model, source: str | None) -> dict:
    return {
        "description": model.config.describe(),
        "config": json.loads(json.dumps(dataclasses.asdict(model.config))),
        "params_digest": P.digest(model.params),
        "source": source,
    }


def _plan(models, sources, images, names, orders, blocks, methods, route_maps, options, seed,
          single):  # fmt: skip
    model_ids, model_table = {}, {}
    for order in orders:
        entry = _model_entry(models[order], sources.get(order))
        model_ids[order] = entry["params_digest"]
        model_table[entry["params_digest"]] = entry
    return {
        "format": FORMAT,
        "version": VERSION,
        "models": model_table,
        "orders": [
            {"name": o, "model": model_ids[o], "routes": models[o].config.k_routes} for o in orders
        ],
        "blocks": [
            {"name": b.name, "stage": b.stage, "index": b.index, "grid": list(b.grid)}
            for b in blocks
        ],  # fmt: skip
        "image_size": list(images.shape[1:3]),
        "images": [{"name": str(n)} for n in names],
        "images_digest": _digest_array(np.asarray(images, np.float32)),
        "single_images": [int(i) for i in single],
        "methods": list(methods),
        "route_maps": bool(route_maps),
        "options": {**options.to_dict(), "signed": options.signed},
        "pool_grid": POOL_GRID,
        "seed": int(seed),
    }


_PLAN_KEYS = ("models", "orders", "blocks", "image_size", "images", "images_digest",
              "single_images", "methods", "route_maps", "options", "pool_grid", "seed")  # fmt: skip
_MEAN_KEYS = ("models", "orders", "blocks", "image_size", "images_digest", "options")  # fmt: skip
_LOCK_ADVICE = "wait for it or choose another --out"


def _check_existing(out: Path, plan: dict | None) -> dict | None:
    """The saved study.json if ``out`` holds this study; None for a new or empty folder (the
    temporaries of killed writers and the lock do not count).  With ``plan`` None, only whether
    ``out`` is a study folder at all is checked.  An unfinished study that holds no result yet
    (nothing averaged) and was planned otherwise is returned too, marked ``"replan": True``."""
    if out.exists() and not out.is_dir():
        raise StudyError(f"{out} exists and is not a folder; nothing was written")
    if not store.entries(out, ignore=[store.LOCK_FILE]):
        return None
    try:
        saved = store.parse_json((out / STUDY_FILE).read_text(), out / STUDY_FILE)
    except FileNotFoundError:
        raise StudyError(
            f"{out} is not empty and holds no {STUDY_FILE}: it is not a study jaxmamba wrote, "
            "so it is neither used nor changed; choose another --out"
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise StudyError(f"{out / STUDY_FILE} is unreadable or damaged: {e}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise StudyError(f"{out / STUDY_FILE} is not a jaxmamba study")
    if plan is None:
        return saved
    differ = [k for k in _PLAN_KEYS if saved.get(k) != plan[k]]
    if differ and _holds_no_result(out, saved):
        return {**saved, "replan": differ}
    if differ:
        raise StudyError(
            f"{out} holds a study with other {', '.join(differ)}; a study is resumed only with the "
            "same models, images, orders, blocks and options. Choose another --out."
        )
    return saved


_PNG_NAME = re.compile(r"^\d+\.png$")


def _holds_no_result(out: Path, saved: dict) -> bool:
    """Whether the study folder ``out`` is an unfinished first run that averaged nothing yet: its
    study.json says nothing is done, and it holds only what write_study writes before the first
    mean (thumbnails, running means in ``work/``, the lock)."""
    if saved.get("complete") or saved.get("done") or saved.get("findings"):
        return False
    known = {STUDY_FILE, store.LOCK_FILE, "images", "work"}
    for p in store.entries(out):
        if p.name not in known or p.is_symlink():
            return False
    images, work = out / "images", out / "work"
    if images.exists() and (
        not images.is_dir() or images.is_symlink()
        or not all(_PNG_NAME.match(p.name) and p.is_file() for p in store.entries(images))
    ):  # fmt: skip
        return False
    if work.exists() and (
        not work.is_dir() or not all(_is_running_mean(p) for p in store.entries(work))
    ):
        return False
    return True


def _is_running_mean(folder: Path) -> bool:
    """Whether ``folder`` is one of the running means write_study starts in ``work/``: a real
    folder holding an ``attention_mean`` record, or nothing but temporaries of killed writers."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    if not store.entries(folder):
        return True
    try:
        record = store.parse_json((folder / RUN_FILE).read_text(), folder / RUN_FILE)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(record, dict) and record.get("format") == RUN_FORMAT


def _remove_running_mean(folder: Path) -> None:
    """Remove ``folder`` if :func:`_is_running_mean` recognises it (anything else is left)."""
    if _is_running_mean(folder):
        shutil.rmtree(folder)


def _remove_empty(folder: Path) -> None:
    if folder.is_dir() and not folder.is_symlink() and not store.entries(folder):
        folder.rmdir()


def _clear_for_replan(out: Path, differ: Sequence[str]) -> None:
    """Remove what an unfinished first run planned otherwise left (checked by
    :func:`_holds_no_result`): its thumbnails, and its running means if they average something
    else (another model, order, block, option or image)."""
    images = out / "images"
    for p in store.entries(images):
        p.unlink()
    _remove_empty(images)
    if any(k in _MEAN_KEYS for k in differ):
        for p in store.entries(out / "work"):
            _remove_running_mean(p)
        _remove_empty(out / "work")


def _int_arg(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``low..high``; a bool, a float or anything else is refused."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise StudyError(f"{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in {low}..{high}"
        raise StudyError(f"{name} must be {span}, got {value!r}")
    return int(value)


def _single_arg(single_images, n: int) -> list[int]:
    """The positions of the single images: the first ``single_images`` or those listed."""
    if isinstance(single_images, int | np.integer) and not isinstance(single_images, bool):
        return list(range(min(_int_arg("single_images", single_images, 0), n)))
    if isinstance(single_images, str | bytes) or not hasattr(single_images, "__iter__"):
        raise StudyError(
            f"single_images must be a count or a list of image indices, got {single_images!r}"
        )
    return sorted({_int_arg("single_images", i, 0, n - 1) for i in single_images})


def _check_finite(images: np.ndarray, what: str) -> None:
    """Refuse NaN/inf values in ``images``, naming the first images holding them."""
    bad = []
    for i in range(0, len(images), 64):  # a chunk at a time: no copy of the whole stack
        chunk = np.asarray(images[i : i + 64])
        bad += (i + np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(1))).tolist()
    if bad:
        raise StudyError(f"{what} {bad[:10]} hold NaN or inf values; nothing was written")


def _display_arg(display, images: np.ndarray) -> np.ndarray:
    """The images as shown: checked against ``images`` (default: ``images`` min-max scaled)."""
    if display is None:
        lo, hi = float(images.min()), float(images.max())
        return ((images - lo) / ((hi - lo) or 1.0) * 255).round().astype(np.uint8)
    try:
        display = np.asarray(display)
    except (ValueError, TypeError) as e:
        raise StudyError(f"display is not an array of images: {store.first_line(e)}") from None
    n, h, w = images.shape[:3]
    if display.shape[:3] != (n, h, w) or not (
        display.ndim == 3 or (display.ndim == 4 and display.shape[3] in (1, 3, 4))
    ):
        raise StudyError(
            f"display must be ({n}, {h}, {w}, 3) or ({n}, {h}, {w}) like images, got "
            f"{display.shape}"
        )
    if display.dtype != np.uint8 and not np.issubdtype(display.dtype, np.floating):
        raise StudyError(f"display must be uint8 or floating point, got {display.dtype}")
    if display.dtype != np.uint8:
        _check_finite(display, "display images")
    return display


def _names_arg(image_names, n: int) -> list[str]:
    if image_names is None:
        return [f"image {i}" for i in range(n)]
    if isinstance(image_names, str | bytes) or not hasattr(image_names, "__iter__"):
        raise StudyError(f"image_names must be a list of names, got {image_names!r}")
    names = list(image_names)
    if len(names) != n:
        raise StudyError(f"image_names has {len(names)} names for {n} images")
    bad = [x for x in names if not isinstance(x, str)]
    if bad:
        raise StudyError(f"image_names must be strings, got {bad[0]!r}")
    return [str(x) for x in names]


def _sources_arg(sources, orders: Sequence[str]) -> dict:
    """``{order: where its model came from (str or None)}``."""
    if not isinstance(sources, Mapping):
        sources = dict.fromkeys(orders, sources)
    bad = [(k, v) for k, v in sources.items() if not isinstance(v, str | os.PathLike | None)]
    if bad:
        raise StudyError(f"sources must be paths: the source of {bad[0][0]!r} is {bad[0][1]!r}")
    return {k: None if v is None else os.fspath(v) for k, v in sources.items()}


def write_study(
    out_dir: str | os.PathLike,
    models: Model | Mapping[str, Model],
    images,
    display=None,
    *,
    orders: Sequence[str] = ("cross",),
    blocks=None,
    methods: Sequence[str] = ("pca",),
    route_maps: bool = False,
    single_images: int | Sequence[int] = 16,
    image_names: Sequence[str] | None = None,
    sources: Mapping[str, str] | str | None = None,
    batch_size: int = 8,
    save_every: int = 10,
    seed: int = 0,
    title: str | None = None,
    progress: bool = True,
) -> Study:
    """Average attention over ``images`` in every order and write (or resume) a study folder.

    Args:
      out_dir: the study folder (created; an existing one must be this same study, which is
        then resumed).
      models: one :class:`~jaxmamba.Model` scanned in every order, or ``{order: model}`` (one
        trained model per order, the reference study's comparison).
      images: ``(N, H, W, 3)`` model inputs.
      display: ``(N, H, W, 3)`` uint8 images as shown (default: ``images`` min-max scaled).
      orders: named scan orders (:data:`jaxmamba.ORDER_NAMES`).
      blocks: block selection (:func:`jaxmamba.select_blocks`); default every block.
      methods: reductions for the scatterplots (``pca``, ``tsne``, ``umap``).
      route_maps: also keep the per-route mean maps (K times the disk of the means).
      single_images: how many images (the first ones), or which, whose single-image maps the
        study can show (their scan inputs are kept; maps are computed exactly on demand) and
        embed in the inter-block mode; 0 for none.
      image_names: one name per image (file names); default ``image 0`` ...
      sources: where the model(s) came from (a path), per order or one for all; recorded.
      batch_size: images per extraction batch.
      save_every: batches between saves of the running mean (what a killed run resumes from).
      seed: seed of the reductions.
      title: shown by the views.
      progress: progress bars (and the plan printed up front).

    Returns:
      The :class:`Study` (opened for reading).
    """
    out = Path(out_dir).expanduser().absolute()
    try:
        store.guard(out)  # never /, the home or current folder, or a folder holding them
    except ValueError as e:
        raise StudyError(str(e)) from None
    # every argument is checked before anything is written
    orders = list(orders)
    if not orders or any(o not in ORDER_NAMES for o in orders) or len(set(orders)) < len(orders):
        raise StudyError(f"orders must be distinct names from {ORDER_NAMES}, got {orders}")
    if isinstance(models, Model):
        models = dict.fromkeys(orders, models)
    if not isinstance(models, Mapping):
        raise StudyError(f"models must be a Model or {{order: Model}}, got {type(models).__name__}")
    missing = [o for o in orders if o not in models]
    if missing:
        raise StudyError(f"no model for orders {missing}; models are given for {sorted(models)}")
    methods = [methods] if isinstance(methods, str) else list(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise StudyError(f"methods must be some of {METHODS}, got {methods}")
    batch_size = _int_arg("batch_size", batch_size, 1)
    save_every = _int_arg("save_every", save_every, 1)
    seed = _int_arg("seed", seed, 0, 2**32 - 1)
    if not isinstance(route_maps, bool | np.bool_):
        raise StudyError(f"route_maps must be True or False, got {route_maps!r}")
    if title is not None and not isinstance(title, str):
        raise StudyError(f"title must be a string, got {title!r}")
    try:
        images = np.asarray(images)
    except (ValueError, TypeError) as e:
        raise StudyError(f"images is not an array of images: {store.first_line(e)}") from None
    first = models[orders[0]]
    arch = lambda m: {k: v for k, v in dataclasses.asdict(m.config).items() if k != "name"}
    for o in orders:
        if not isinstance(models[o], Model):
            raise StudyError(f"the model for order {o!r} is a {type(models[o]).__name__}")
        check_images(models[o].config, images)
        if models[o].config.k_routes != as_order(o).num_routes(2, 2):
            raise StudyError(
                f"the model for order {o!r} has {models[o].config.k_routes} per-route parameter "
                f"sets, the order {as_order(o).num_routes(2, 2)} routes"
            )
        if arch(models[o]) != arch(first):
            raise StudyError(
                f"the models of a study must share one architecture: {o!r} has "
                f"{models[o].config.describe()}, {orders[0]!r} {first.config.describe()}"
            )
    n = images.shape[0]
    if n == 0:
        raise StudyError("images holds no image")
    _check_finite(images, "images")
    names = select_blocks(first.config, blocks)
    block_info = [first.config.block(b, images.shape[1:3]) for b in names]
    display = _display_arg(display, images)
    names_list = _names_arg(image_names, n)
    single = _single_arg(single_images, n)
    sources = _sources_arg(sources, orders)
    options = AttentionOptions(route_mode="each" if route_maps else "sum")
    plan = _plan(models, sources, images, names_list, orders, block_info, methods, route_maps,
                 options, seed, single)  # fmt: skip
    _check_existing(out, None)  # a file, or a folder of someone else's: refused, nothing written
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(store.locked(out, _LOCK_ADVICE))  # one writer at a time
        except CheckpointError as e:
            raise StudyError(store.first_line(e)) from None
        saved = _check_existing(out, plan)
        if saved is not None and saved.get("replan"):  # an unfinished first run of another plan
            _clear_for_replan(out, saved["replan"])
            saved = None
        k = first.config.k_routes
        say = print if progress else (lambda *a, **k: None)
        size = estimate_bytes(block_info, len(orders), k, route_maps)
        size += len(orders) * len(single) * sum(4 * first.config.d_inner(b.stage) * b.length
                                                for b in block_info)  # fmt: skip
        say(
            f"study {out}: {n} images at {images.shape[1]}x{images.shape[2]}, "
            f"{len(orders)} orders ({', '.join(orders)}) x {len(names)} blocks, "
            f"{len(single)} single images; {_fmt_bytes(size)}; embeddings: {', '.join(methods)}"
            + (" (resuming)" if saved else "")
        )
        meta = dict(saved or plan)
        meta.update(plan)
        meta.setdefault("created", time.strftime("%Y-%m-%d %H:%M:%S"))
        meta["title"] = title or meta.get("title") or f"jaxmamba: {first.config.describe()}"
        from jaxmamba import __version__

        meta["library_version"] = __version__
        meta.setdefault("done", {})
        meta["complete"] = False
        _save_meta(out, meta)
        writer = _Writer(out, meta, models, block_info, progress)
        for i in range(n):
            path = out / "images" / f"{i}.png"
            if not path.exists():
                store.write_bytes_atomic(path, png_bytes(display[i], max_side=448))
        for order in orders:
            writer.means(order, images, options, batch_size, save_every)
            writer.singles(order, images[single], batch_size)
        writer.embeddings(orders, methods, seed)
        writer.stage_embeddings(orders, methods, seed, single)
        writer.findings(orders, seed)
        meta["count"] = n
        meta["complete"] = True
        _save_meta(out, meta)
    return Study(out)


POOL_GRID = 14  # inter-block points: maps pooled to at most 14 x 14 groups of patches per axis


def pool_map(a: np.ndarray, h: int, w: int, g: int = POOL_GRID) -> np.ndarray:
    """Average-pool an ``(L, L)`` map over groups of patches on both axes: the query and source
    patches of an ``h x w`` grid fall into at most ``g x g`` equal-area groups (row ``r`` into
    group ``r · gh // h``), giving ``(gh·gw, gh·gw)``; grids of at most ``g`` keep their size.

    >>> pool_map(np.arange(16.0).reshape(4, 4), 2, 2, g=1).tolist()
    [[7.5]]
    """
    gh, gw = min(h, g), min(w, g)
    group = (np.arange(h)[:, None] * gh // h) * gw + (np.arange(w)[None] * gw // w)
    group = group.reshape(-1)
    onehot = np.zeros((gh * gw, h * w), np.float64)
    onehot[group, np.arange(h * w)] = 1.0
    onehot /= onehot.sum(axis=1, keepdims=True)
    return onehot @ np.asarray(a, np.float64) @ onehot.T


class _Writer:
    """The phases of :func:`write_study`; each skips what is already on disk."""

    def __init__(self, out: Path, meta: dict, models, blocks, progress: bool) -> None:
        self.out, self.meta, self.models, self.blocks, self.progress = (
            out, meta, models, blocks, progress
        )  # fmt: skip
        self.names = tuple(b.name for b in blocks)
        self._pooled_maps: dict = {}

    def _bar(self, total: int, desc: str):
        if not self.progress or not total:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="step")

    def means(self, order, images, options, batch_size, save_every) -> None:
        out, route_maps = self.out, options.route_mode == "each"
        paths = [out / "means" / order / f"{b.name}.npy" for b in self.blocks]
        if route_maps:
            paths += [out / "routes" / order / f"{b.name}.npy" for b in self.blocks]
        n = len(images)
        work = out / "work" / order
        if all(p.exists() for p in paths):  # averaged before (maybe killed before cleaning up)
            self._finish_means(order, n)
            return
        batches = (images[i : i + batch_size] for i in range(0, n, batch_size))
        mean = attention_mean(
            self.models[order], batches, order=order, blocks=self.names,
            route_mode=options.route_mode, out_dir=work, save_every=save_every,
            progress=self.progress, total=n,
        )  # fmt: skip
        for b in self.blocks:
            m = np.asarray(mean[b.name], np.float32)
            if route_maps:
                _write_npy(out / "routes" / order / f"{b.name}.npy", m)
                m = m.sum(axis=0)
            _write_npy(out / "means" / order / f"{b.name}.npy", m)
        self._finish_means(order, mean.count)

    def _finish_means(self, order: str, count: int) -> None:
        """Record the means of ``order`` as done and remove its running mean ``work/<order>``
        (and ``work/`` once empty): a run killed between the two leaves it to the next one."""
        if self.meta["done"].get(f"means/{order}") is None:
            self.meta["done"][f"means/{order}"] = count
        _save_meta(self.out, self.meta)
        _remove_running_mean(self.out / "work" / order)
        _remove_empty(self.out / "work")

    def singles(self, order, images, batch_size) -> None:
        """The scan input of every block for the single images, and the blocks' parameters."""
        from jaxmamba.attention import block_params
        from jaxmamba.model import run_with_cache

        if not len(images):
            return
        out, model = self.out, self.models[order]
        digest = self.meta["orders"][[o["name"] for o in self.meta["orders"]].index(order)]["model"]
        for b in self.blocks:
            path = out / "ops" / digest / f"{b.name}.npz"
            if not path.exists():
                params = block_params(model, b.name)
                op = {k: np.asarray(params[k], np.float32) for k in SCAN_PARAMS}
                buf = io.BytesIO()
                np.savez(buf, **op)
                store.write_bytes_atomic(path, buf.getvalue())
        paths = {b.name: out / "single" / order / f"{b.name}.npy" for b in self.blocks}
        if all(p.exists() for p in paths.values()):
            return
        xs = {name: [] for name in self.names}
        for i in range(0, len(images), batch_size):
            _, cache = run_with_cache(model, images[i : i + batch_size], order=order,
                                      blocks=self.names)  # fmt: skip
            for name in self.names:
                xs[name].append(np.asarray(cache[name]["x"], np.float32))
        for name, path in paths.items():
            _write_npy(path, np.concatenate(xs[name]))

    def embeddings(self, orders, methods, seed) -> None:
        out = self.out
        todo = [(o, b, m) for o in orders for b in self.blocks for m in methods
                if not (out / "embeddings" / o / f"{b.name}.{m}.npy").exists()]  # fmt: skip
        bar = self._bar(len(todo), "embeddings")
        for o, b, m in todo:
            if bar is not None:
                bar.set_description(f"{_METHOD_NAMES[m]} of {b.name} ({o}, L={b.length})")
            a = np.load(out / "means" / o / f"{b.name}.npy", mmap_mode="r")
            _write_npy(out / "embeddings" / o / f"{b.name}.{m}.npy", embed(a, m, seed=seed))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

    def stage_embeddings(self, orders, methods, seed, single) -> None:
        """Per stage with several blocks: the joint embedding of the blocks' patches (mean maps)
        and the inter-block embedding of the (image, block) single-image maps, pooled."""
        from jaxmamba.reduce import embed_joint

        out = self.out
        stages = sorted({b.stage for b in self.blocks})
        stages = [s for s in stages if sum(b.stage == s for b in self.blocks) > 1]
        todo = [(o, s, m, kind) for o in orders for s in stages for m in methods
                for kind in ("joint", "interblock") if kind == "joint" or single
                if not (out / kind / o / f"stage{s}.{m}.npy").exists()]  # fmt: skip
        bar = self._bar(len(todo), "stage embeddings")
        for o, s, m, kind in todo:
            members = [b for b in self.blocks if b.stage == s]
            if bar is not None:
                what = "patches of" if kind == "joint" else "images x"
                bar.set_description(f"{_METHOD_NAMES[m]} of the {what} {len(members)} blocks "
                                    f"of stage {s} ({o})")  # fmt: skip
            if kind == "joint":
                maps = {b.name: np.load(out / "means" / o / f"{b.name}.npy") for b in members}
                xy, _ = embed_joint(maps, m, seed=seed)
            else:
                xy = embed(self._pooled(o, members), m, seed=seed)
            _write_npy(out / kind / o / f"stage{s}.{m}.npy", xy)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

    def _pooled(self, order: str, members) -> np.ndarray:
        """``(blocks · images, F)`` pooled single-image maps, block-major (computed once)."""
        key = (order, tuple(b.name for b in members))
        if key not in self._pooled_maps:
            self._pooled_maps[key] = self._pool(order, members)
        return self._pooled_maps[key]

    def _pool(self, order: str, members) -> np.ndarray:
        study = Study(self.out, require_complete=False)
        rows = []
        for b in members:
            for i in range(len(self.meta["single_images"])):
                a = study.single_map(order, b.name, i)
                rows.append(pool_map(a, *b.grid).reshape(-1))
        return np.stack(rows)

    def findings(self, orders, seed) -> None:
        """The reference study's findings as numbers, per order, stage and block (mean maps)."""
        from jaxmamba import metrics

        findings = self.meta.setdefault("findings", {})
        for o in orders:
            if o in findings:
                continue
            routes = {b.name: as_order(o).routes(*b.grid) for b in self.blocks}
            blocks, stages = {}, {}
            for b in self.blocks:
                a = np.load(self.out / "means" / o / f"{b.name}.npy")
                entry = {"attention_distance": _finite(metrics.attention_distance, a, *b.grid,
                                                       normalize=True)}  # fmt: skip
                entry["sequence_locality"] = (
                    _finite(metrics.sequence_locality, a, routes[b.name], seed=seed)
                    if b.length > 2 else None
                )  # fmt: skip
                blocks[b.name] = entry
            for s in sorted({b.stage for b in self.blocks}):
                members = [b for b in self.blocks if b.stage == s]
                entry = {k: _mean([blocks[b.name][k] for b in members])
                         for k in ("attention_distance", "sequence_locality")}  # fmt: skip
                entry["block_distinctness"] = None
                entry["image_block_distinctness"] = None
                if len(members) > 1 and members[0].length > 1:
                    maps = {b.name: np.load(self.out / "means" / o / f"{b.name}.npy")
                            for b in members}  # fmt: skip
                    entry["block_distinctness"] = _finite(metrics.block_distinctness, maps,
                                                          seed=seed)  # fmt: skip
                    if self.meta["single_images"] and len(self.meta["single_images"]) > 1:
                        x = self._pooled(o, members)
                        labels = np.repeat([b.name for b in members], len(x) // len(members))
                        entry["image_block_distinctness"] = _finite(
                            metrics.silhouette, embed(x, "pca", seed=seed), labels
                        )
                stages[str(s)] = entry
            findings[o] = {"blocks": blocks, "stages": stages}
            _save_meta(self.out, self.meta)


SCAN_PARAMS = ("x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds")
CACHE_BYTES = 400 * 2**20  # single-image maps kept in memory by a reader (the server)


@functools.lru_cache(maxsize=64)
def _single_fn(order: str, grid: tuple[int, int], each: bool):
    """Jitted exact map of one block for one image: ``(op, x (1, D, L)) -> (1, [K,] L, L)``."""
    import jax

    from jaxmamba.attention import block_attention

    routes = as_order(order).routes(*grid)
    mode = "each" if each else "sum"
    return jax.jit(lambda op, x: block_attention(op, x, routes, route_mode=mode))


def _finite(f, *args, **kwargs):
    try:
        v = float(f(*args, **kwargs))
    except ValueError:  # e.g. an all-zero map: the statistic is undefined
        return None
    return v if np.isfinite(v) else None


def _mean(values):
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


_METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def _save_meta(out: Path, meta: dict) -> None:
    store.write_text_atomic(out / STUDY_FILE, json.dumps(meta, indent=1) + "\n")


class Study:
    """A study folder opened for reading; every read touches only what it returns.

    Attributes:
      path: the folder; meta: its ``study.json``; orders: order names; blocks: the
      :class:`~jaxmamba.config.Block` of each block; methods: reductions kept; count: images
      averaged; signed: whether maps can be negative (a diverging colour scale).
    """

    def __init__(self, path: str | os.PathLike, *, require_complete: bool = True) -> None:
        self.path = Path(path).expanduser().absolute()
        try:
            meta = store.parse_json((self.path / STUDY_FILE).read_text(), self.path / STUDY_FILE)
        except FileNotFoundError:
            raise StudyError(f"{self.path} is not a study: it has no {STUDY_FILE}") from None
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise StudyError(f"{self.path / STUDY_FILE} is unreadable or damaged: {e}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StudyError(f"{self.path / STUDY_FILE} is not a jaxmamba study")
        if meta.get("version") != VERSION:
            raise StudyError(f"{self.path} is a study of format version {meta.get('version')}; "
                             f"this jaxmamba reads version {VERSION}")  # fmt: skip
        if require_complete and not meta.get("complete"):
            raise StudyError(
                f"{self.path} is an unfinished study; run the same explore command again to "
                "complete it"
            )
        self.meta = meta
        self.orders = [o["name"] for o in meta["orders"]]
        self.blocks = [Block(b["name"], b["stage"], b["index"], tuple(b["grid"]))
                       for b in meta["blocks"]]  # fmt: skip
        self.methods = list(meta["methods"])
        self.count = int(meta.get("count") or len(meta["images"]))
        self.signed = bool(meta["options"]["signed"])
        self.single_images = list(meta.get("single_images", []))
        self.findings = meta.get("findings", {})
        self._blocks = {b.name: b for b in self.blocks}
        self._cache: OrderedDict = OrderedDict()  # computed single-image maps, least recent first

    @classmethod
    def open(cls, path: str | os.PathLike) -> Study:
        """Open the study at ``path`` (an error names what is missing or damaged)."""
        return cls(path)

    # ---- names -> checked paths (no path is ever built from an unchecked string) ---------------
    def block(self, name: str) -> Block:
        if name not in self._blocks:
            raise StudyError(f"the study has no block {name!r}")
        return self._blocks[name]

    def _order(self, order: str) -> str:
        if order not in self.orders:
            raise StudyError(f"the study has no order {order!r}; it has {self.orders}")
        return order

    def _route(self, order: str, route, single: bool = False) -> int | None:
        if route in (None, "sum"):
            return None
        k = next(o["routes"] for o in self.meta["orders"] if o["name"] == order)
        try:
            r = int(route)
        except (TypeError, ValueError):
            r = -1
        if not self.meta["route_maps"] and not single:
            raise StudyError("the study keeps no per-route maps (explore --routes keeps them)")
        if not 0 <= r < k:
            raise StudyError(f"route must be 'sum' or 0..{k - 1}, got {route!r}")
        return r

    def map(self, order: str, block: str, route=None) -> np.ndarray:
        """The ``(L, L)`` mean map as a read-only memory map (route ``None``/"sum" or ``k``)."""
        order, b = self._order(order), self.block(block)
        r = self._route(order, route)
        path = self.path / ("means" if r is None else "routes") / order / f"{b.name}.npy"
        try:
            m = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise StudyError(f"cannot read {path}: {e}") from None
        m = m if r is None else m[r]
        if m.shape != (b.length, b.length):
            raise StudyError(
                f"{path} holds {m.shape}, not the ({b.length}, {b.length}) of {b.name}"
            )
        return m

    def heat(self, order: str, block: str, patches, direction="query", route=None, subject="mean"):
        """Mean of the selected patches' rows (``"query"``: what they attend to) or columns
        (``"source"``: what attends to them): ``(L,)`` float32 over the block's grid, of the mean
        map (``subject="mean"``) or of one single image's (``subject`` its position)."""
        if subject in (None, "mean"):
            m = self.map(order, block, route)
        else:
            m = self.single_map(order, block, subject, route)
        idx = self._patches(block, patches)
        if direction == "query":
            return np.asarray(m[idx].mean(axis=0), np.float32)
        if direction == "source":
            return np.asarray(m[:, idx].mean(axis=1), np.float32)
        raise StudyError(f"direction must be one of {DIRECTIONS}, got {direction!r}")

    def _patches(self, block: str, patches) -> np.ndarray:
        b = self.block(block)
        try:
            idx = np.unique(np.asarray(patches, dtype=np.int64).reshape(-1))
        except (TypeError, ValueError):
            raise StudyError(f"patches must be integers, got {patches!r}") from None
        if idx.size == 0 or idx[0] < 0 or idx[-1] >= b.length:
            raise StudyError(f"patches must be a non-empty selection of 0..{b.length - 1}")
        return idx

    def coords(self, order: str, block: str, method: str) -> np.ndarray:
        """``(L, 2)`` float32 scatterplot coordinates of ``method``."""
        order, b = self._order(order), self.block(block)
        if method not in self.methods:
            raise StudyError(f"the study has no {method!r} embedding; it has {self.methods}")
        path = self.path / "embeddings" / order / f"{b.name}.{method}.npy"
        try:
            return np.load(path)
        except (OSError, ValueError) as e:
            raise StudyError(f"cannot read {path}: {e}") from None

    def routes(self, order: str, block: str) -> np.ndarray:
        """``(K, L)`` scan routes of ``order`` on the block's grid."""
        return as_order(self._order(order)).routes(*self.block(block).grid)

    def image_png(self, index: int) -> bytes:
        """PNG bytes of image ``index`` as shown."""
        n = len(self.meta["images"])
        if not isinstance(index, int | np.integer) or not 0 <= index < n:
            raise StudyError(f"image must be 0..{n - 1}, got {index!r}")
        return (self.path / "images" / f"{int(index)}.png").read_bytes()

    # ---- single images: maps computed exactly, on demand, from the kept scan inputs ------------
    def _single_index(self, image) -> int:
        try:
            i = int(image)
        except (TypeError, ValueError):
            i = -1
        if not 0 <= i < len(self.single_images):
            raise StudyError(
                f"single image must be 0..{len(self.single_images) - 1} (the study keeps "
                f"{len(self.single_images)} single images), got {image!r}"
            )
        return i

    def single_map(self, order: str, block: str, image, route=None) -> np.ndarray:
        """The ``(L, L)`` map of one image (``image``: its position among ``single_images``):
        exact, computed from the block's scan input and parameters (the same code as
        :func:`jaxmamba.extract_attention`), and kept in a small cache."""
        order, b = self._order(order), self.block(block)
        r, i = self._route(order, route, single=True), self._single_index(image)
        key = (order, b.name, i, r)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        digest = next(o["model"] for o in self.meta["orders"] if o["name"] == order)
        try:
            x = np.load(self.path / "single" / order / f"{b.name}.npy", mmap_mode="r")[i]
            with np.load(self.path / "ops" / digest / f"{b.name}.npz", allow_pickle=False) as f:
                op = {k: f[k] for k in f.files}
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise StudyError(
                f"the single-image data of {order}/{b.name} is unreadable: {e}"
            ) from None
        maps = np.asarray(_single_fn(order, b.grid, r is not None)(op, np.asarray(x)[None]))[0]
        m = maps if r is None else maps[r]
        self._cache[key] = m
        while sum(v.nbytes for v in self._cache.values()) > CACHE_BYTES and len(self._cache) > 1:
            self._cache.popitem(last=False)
        return m

    def single_coords(self, order: str, block: str, image) -> np.ndarray:
        """``(L, 2)`` PCA of one image's rows (computed on demand, cached)."""
        key = ("pca", order, block, self._single_index(image))
        if key not in self._cache:
            self._cache[key] = embed(self.single_map(order, block, image), "pca")
        return self._cache[key]

    def stage_points(self, kind: str, order: str, stage: int, method: str) -> np.ndarray:
        """Coordinates of a stage's ``"joint"`` embedding (its blocks' patches, block-major:
        block j's patch p is row ``j·L + p``) or ``"interblock"`` embedding ((block, image)
        pairs, block-major: row ``j·n + i`` for single image i)."""
        order = self._order(order)
        if kind not in ("joint", "interblock") or method not in self.methods:
            raise StudyError(f"no {kind!r} embedding by {method!r}")
        try:
            stage = int(stage)
        except (TypeError, ValueError):
            raise StudyError(f"stage must be an integer, got {stage!r}") from None
        path = self.path / kind / order / f"stage{stage}.{method}.npy"
        if not path.exists():
            raise StudyError(f"the study has no {kind} embedding of stage {stage}")
        return np.load(path)

    def size_bytes(self, orders=None, blocks=None, route_maps: bool = True) -> int:
        """Bytes of the maps of ``orders`` × ``blocks`` (default all), per-route maps included."""
        orders = self.orders if orders is None else [self._order(o) for o in orders]
        chosen = self.blocks if blocks is None else [self.block(b) for b in blocks]
        k = max(o["routes"] for o in self.meta["orders"])
        return estimate_bytes(chosen, len(orders), k, route_maps and self.meta["route_maps"])

    def __repr__(self) -> str:
        return (f"Study({self.path}, {len(self.orders)} orders, {len(self.blocks)} blocks, "
                f"{self.count} images)")  # fmt: skip


def write_synthetic_study(
    out_dir: str | os.PathLike,
    variant: str = "vmamba_tiny_s1l8",
    image_size: int = 224,
    *,
    orders: Sequence[str] = ("cross", "diagonal", "morton", "spiral"),
    n_images: int = 4,
    seed: int = 0,
) -> Study:
    """A study of planted maps at a real model's sizes, computed in seconds: for testing and
    timing the views at scale (e.g. VMamba-T at 224²: 14 blocks, 56x56 grids), not for science.

    Each block's map is signed, local attention (a Gaussian of the grid distance whose width
    grows with the stage) minus a smaller, order-dependent term (decaying with the distance in
    scan order); the scatterplot coordinates are the patches' grid positions plus noise, and the
    images are noise.  ``study.json`` says ``"synthetic": true``.

    >>> import tempfile
    >>> s = write_synthetic_study(tempfile.mkdtemp() + "/s", "vmamba_test", 64, orders=["cross"])
    >>> [b.grid for b in s.blocks][:2], s.meta["synthetic"]
    ([(16, 16), (8, 8)], True)
    """
    from jaxmamba.config import get_config

    config = get_config(variant)
    out = Path(out_dir).expanduser().absolute()
    if out.exists():
        raise StudyError(f"{out} exists; a synthetic study is written into a new folder")
    rng = np.random.default_rng(seed)
    blocks = [config.block(n, (image_size, image_size)) for n in config.block_names()]
    options = AttentionOptions()
    meta = {
        "format": FORMAT, "version": VERSION, "synthetic": True,
        "title": f"synthetic study at the sizes of {variant} ({image_size}x{image_size})",
        "models": {"synthetic": {"description": f"{variant} sizes, planted maps",
                                 "config": None, "params_digest": None, "source": None}},
        "orders": [{"name": o, "model": "synthetic", "routes": config.k_routes} for o in orders],
        "blocks": [{"name": b.name, "stage": b.stage, "index": b.index, "grid": list(b.grid)}
                   for b in blocks],
        "image_size": [image_size, image_size],
        "images": [{"name": f"noise {i}"} for i in range(n_images)],
        "methods": ["pca"], "route_maps": False,
        "options": {**options.to_dict(), "signed": True}, "seed": seed,
        "count": n_images, "complete": False,
    }  # fmt: skip
    out.mkdir(parents=True)
    for i in range(n_images):
        noise = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        store.write_bytes_atomic(out / "images" / f"{i}.png", png_bytes(noise))
    for b in blocks:
        h, w = b.grid
        r, c = np.divmod(np.arange(b.length), w)
        d2 = ((r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2).astype(np.float32)
        local = np.exp(-d2 / np.float32(2.0 * (1.5 + b.stage + 0.3 * b.index) ** 2))
        for o in orders:
            pos = np.argsort(as_order(o).routes(h, w)[0]).astype(np.float32)  # scan position
            seq = np.exp(-np.abs(pos[:, None] - pos[None]) / np.float32(4.0 + 2 * b.index))
            m = (local - 0.3 * seq) / np.float32(b.length)
            _write_npy(out / "means" / o / f"{b.name}.npy", m)
            xy = np.stack([c, -r], axis=1) + rng.normal(0, 0.15, (b.length, 2))
            _write_npy(out / "embeddings" / o / f"{b.name}.pca.npy", xy)
    meta["complete"] = True
    _save_meta(out, meta)
    return Study(out)
