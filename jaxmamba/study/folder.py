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

Maps are plain ``.npy`` files: a view reads the few rows (12 KB each at L = 3136) or columns it
needs with ordinary reads of just those bytes (the header is parsed and checked once), without
loading a 39 MB map; ``.npy`` needs nothing beyond NumPy and any tool can read it.  Nothing is
memory-mapped: a memory map kills the process (SIGBUS) when its file is cut short under it,
where a read names the file.  ``python benchmarks/study_reads.py`` (warm, this 2-core CPU,
L = 3136): the mean of 500 rows 1.3 ms (a lasso, 20 runs of rows) to 3.3 ms (500 scattered
rows), of 500 columns 3.7 ms, one row 0.13 ms, one column 2.1 ms; chunked Zarr through
TensorStore was 5-10x slower warm without a chunk cache and saves nothing for float data.

A study folder is untrusted input (a colleague's, a download): :class:`Study` checks every
field of ``study.json`` when it opens it, builds paths only from checked names, reads nothing
through a symbolic link or outside the folder, and checks every array it reads.

Every file is written atomically (a temporary sibling, then a rename), entry by entry: a killed
run resumes where it stopped and never recomputes a finished entry; a running mean resumes by
image (:func:`jaxmamba.attention_mean`).  A rerun into an existing study must have the same plan
(the same models, images, orders, blocks and options) or is refused, naming what differs; only an
unfinished first run that averaged nothing yet may be planned anew.  Every argument is checked
before the first write; while a study is written, ``STUDY/.lock`` (the writer's pid, host and
a heartbeat) refuses a second writer by name, and the temporaries and lock of a killed writer
never block the next run, which also removes a finished order's leftover running mean.  A study
in which anything it writes or reads back is (or passes) a symbolic link or a special file is
refused before anything is written: resuming someone else's study never writes outside it.

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
import math
import numbers
import os
import re
import shutil
import stat
import time
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.lib import format as npy_format

from jaxmamba.attention.embed import METHODS, embed
from jaxmamba.attention.extract import AttentionOptions
from jaxmamba.attention.mean import RUN_FILE, RUN_FORMAT, attention_mean, compile_mean, route_table
from jaxmamba.errors import CheckpointError, StudyError, require
from jaxmamba.models import params as P
from jaxmamba.models.config import Block, parse_block_name
from jaxmamba.models.model import Model, check_images, select_blocks
from jaxmamba.orders import ORDER_NAMES, as_order
from jaxmamba.storage import store

__all__ = [
    "DIRECTIONS",
    "MATRIX_SIZES",
    "Study",
    "StudyError",
    "estimate_bytes",
    "map_selection",
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


def _inside(out: Path, *parts: str, folder: bool = False) -> Path:
    """``out/parts…`` for writing or reading back, with no symbolic link (nor special file) below
    the study folder ``out`` (:func:`jaxmamba.storage.store.inside`); refused as a :class:`StudyError`."""
    try:
        return store.inside(out, *parts, folder=folder)
    except CheckpointError as e:
        raise StudyError(str(e)) from None


def _check_no_links(out: Path) -> None:
    """Refuse a study folder in which anything jaxmamba writes or reads back (:data:`_LAYOUT`)
    is, holds or passes a symbolic link or a special file: checked before anything is written,
    so a resumed study never writes outside its folder (the folder ``out`` itself may be a link).
    """
    try:
        _check_layout(out)
    except StudyError as e:
        raise StudyError(f"{e}; nothing was written") from None


def _check_layout(out: Path) -> None:
    if not out.is_dir():
        return
    for name in _LAYOUT:
        try:
            mode = os.lstat(out / name).st_mode
        except FileNotFoundError:
            continue
        except OSError as e:
            raise StudyError(f"cannot use {out / name}: {e.strerror or e}") from None
        if not stat.S_ISDIR(mode):
            _inside(out, name)
            continue
        for folder, dirs, files in os.walk(out / name):  # links to folders are listed, not walked
            rel = Path(folder).relative_to(out).parts
            for entry in dirs:
                _inside(out, *rel, entry, folder=True)
            for entry in files:
                _inside(out, *rel, entry)


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
# what a study folder holds: written by write_study, write_figures and the demo's explorer page
_LAYOUT = (STUDY_FILE, store.LOCK_FILE, "images", "means", "routes", "embeddings", "single", "ops",
           "joint", "interblock", "work", "figures", "explorer.html")  # fmt: skip


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
    single = [_int_arg("single_images", i, 0, n - 1) for i in single_images]
    twice = sorted({i for i in single if single.count(i) > 1})
    if twice:
        raise StudyError(f"single_images lists image {twice[0]} more than once: {single}")
    return sorted(single)


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
    for i, name in enumerate(names):
        _text_arg(f"image_names[{i}]", name)
    return [str(x) for x in names]


def _text_arg(what: str, text: str) -> str:
    """Refuse a string that is not valid Unicode text (a lone surrogate, e.g. from an undecodable
    file name): study.json could hold it, but no reader could read it back as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise StudyError(
            f"{what} is not valid text: {text!r} holds {text[e.start]!r} (a lone surrogate) at "
            f"{e.start}; nothing was written"
        ) from None
    return text


def _sources_arg(sources, orders: Sequence[str]) -> dict:
    """``{order: where its model came from (str or None)}``."""
    if not isinstance(sources, Mapping):
        sources = dict.fromkeys(orders, sources)
    bad = [(k, v) for k, v in sources.items() if not isinstance(v, str | os.PathLike | None)]
    if bad:
        raise StudyError(f"sources must be paths: the source of {bad[0][0]!r} is {bad[0][1]!r}")
    sources = {k: None if v is None else os.fspath(v) for k, v in sources.items()}
    for k, v in sources.items():
        if v is not None:
            _text_arg(f"the source of {k!r} in sources", v)
    return sources


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
    if bad or not methods or len(set(methods)) < len(methods):
        raise StudyError(f"methods must be distinct names from {METHODS}, got {methods}")
    batch_size = _int_arg("batch_size", batch_size, 1)
    save_every = _int_arg("save_every", save_every, 1)
    seed = _int_arg("seed", seed, 0, 2**32 - 1)
    if not isinstance(route_maps, bool | np.bool_):
        raise StudyError(f"route_maps must be True or False, got {route_maps!r}")
    if title is not None and not isinstance(title, str):
        raise StudyError(f"title must be a string, got {title!r}")
    if title is not None:
        _text_arg("title", title)
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
    _check_no_links(out)  # nothing it writes or reads back passes a link out of the folder
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
        held.callback(writer.stop_compiling)
        writer.compile_ahead(orders, images.shape, options, batch_size, len(single))
        for i in range(n):
            path = _inside(out, "images", f"{i}.png")
            if not path.exists():
                store.write_bytes_atomic(path, png_bytes(display[i], max_side=448))
        for order in orders:  # an order's embeddings run while later orders still compile
            writer.means(order, images, options, batch_size, save_every)
            writer.singles(order, images[single], batch_size)
            writer.embeddings([order], methods, seed)
            writer.stage_embeddings([order], methods, seed, single)
            writer.findings([order], seed)
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
        self._compiling: dict = {}  # ("means" | "singles", order) -> Future of its compilation
        self._compiler = None

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)

    def _todo(self, kind: str, order: str) -> bool:
        """Whether phase ``kind`` of ``order`` has work left (not resumed half-way)."""
        if kind == "means":
            folders = ("means", "routes") if self.meta["route_maps"] else ("means",)
            done = all(_inside(self.out, f, order, f"{b.name}.npy").exists()
                       for f in folders for b in self.blocks)  # fmt: skip
            return not done and not (self.out / "work" / order).exists()
        return not all(_inside(self.out, "single", order, f"{b.name}.npy").exists()
                       for b in self.blocks)  # fmt: skip

    def compile_ahead(self, orders, shape, options, batch_size: int, n_single: int) -> None:
        """Compile, in background threads, the programs the orders will run (the attention mean,
        the forward that keeps the single images' scan inputs) while the images are written:
        on a first run (empty compile cache) compiling is most of the time.  Orders of one
        architecture and grids share their programs (the routes are data,
        :func:`~jaxmamba.attention.mean.route_table`): each distinct program is compiled once.  The
        phases wait for theirs (:meth:`_wait`)."""
        from concurrent.futures import ThreadPoolExecutor

        import jax

        n, size = shape[0], tuple(shape[1:])
        jobs, seen = [], {}
        for o in orders:
            model, table = self.models[o], route_table(self.models[o].config, size[:2], o)
            todo = []
            if self._todo("means", o):
                batch = (min(batch_size, n), *size)
                todo.append(("means", batch, functools.partial(
                    compile_mean, model, batch, order=o, blocks=self.names,
                    route_mode=options.route_mode)))  # fmt: skip
            if n_single and self._todo("singles", o):
                for b in sorted({min(batch_size, n_single), n_single % batch_size} - {0}):
                    todo.append(
                        (
                            "singles",
                            (b, *size),
                            functools.partial(
                                _compile_forward, model, (b, *size), table, frozenset(self.names)
                            ),
                        )
                    )
            for kind, batch, job in todo:
                key = (kind, batch, jax.tree_util.tree_structure((model, table)))
                if key not in seen:
                    seen[key] = len(jobs)
                    jobs.append(job)
                self._compiling.setdefault((kind, o), []).append(seen[key])
        if not jobs:
            return
        self._compiler = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jaxmamba-compile")
        futures = [self._compiler.submit(job) for job in jobs]
        self._compiling = {k: [futures[i] for i in v] for k, v in self._compiling.items()}
        cache = _compile_cache()
        when = (f"compiled on a first run, then loaded from the compile cache {cache}" if cache
                else "compiled on every run: the compile cache is off")  # fmt: skip
        some = f"{len(orders)} orders" if len(orders) > 1 else "1 order"
        self._say(f"preparing the XLA programs of {some} in the background ({len(jobs)} "
                  f"program{'s' if len(jobs) > 1 else ''}, {when})")  # fmt: skip

    def _wait(self, kind: str, order: str) -> None:
        """Wait for the background compilation of ``kind``'s program for ``order``, saying so."""
        from concurrent.futures import wait

        futures = self._compiling.pop((kind, order), [])
        if futures and wait(futures, timeout=1.0).not_done:  # not a cache hit: a compile
            what = "attention" if kind == "means" else "single-image forward"
            when = "first run only" if _compile_cache() else "the compile cache is off"
            shared = "; the other orders reuse it" if len(self.meta["orders"]) > 1 else ""
            self._say(f"compiling the {what} program for order {order} ({when}{shared}) ...")
        for f in futures:
            try:
                f.result()
            except Exception:  # noqa: BLE001 - the phase compiles itself and reports the error
                pass

    def stop_compiling(self) -> None:
        """Cancel the compilations not started (an error or Ctrl-C stopped the study)."""
        if self._compiler is not None:
            self._compiler.shutdown(wait=False, cancel_futures=True)
            self._compiler = None

    def _bar(self, total: int, desc: str):
        if not self.progress or not total:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="step")

    def means(self, order, images, options, batch_size, save_every) -> None:
        out, route_maps = self.out, options.route_mode == "each"
        paths = [_inside(out, "means", order, f"{b.name}.npy") for b in self.blocks]
        if route_maps:
            paths += [_inside(out, "routes", order, f"{b.name}.npy") for b in self.blocks]
        n = len(images)
        work = _inside(out, "work", order, folder=True)
        if all(p.exists() for p in paths):  # averaged before (maybe killed before cleaning up)
            self._finish_means(order, n)
            return
        batches = (images[i : i + batch_size] for i in range(0, n, batch_size))
        self._wait("means", order)
        mean = attention_mean(
            self.models[order], batches, order=order, blocks=self.names,
            route_mode=options.route_mode, out_dir=work, save_every=save_every,
            progress=self.progress, total=n,
        )  # fmt: skip
        for b in self.blocks:
            m = np.asarray(mean[b.name], np.float32)
            if route_maps:
                _write_npy(_inside(out, "routes", order, f"{b.name}.npy"), m)
                m = m.sum(axis=0)
            _write_npy(_inside(out, "means", order, f"{b.name}.npy"), m)
        self._finish_means(order, mean.count)

    def _finish_means(self, order: str, count: int) -> None:
        """Record the means of ``order`` as done and remove its running mean ``work/<order>``
        (and ``work/`` once empty): a run killed between the two leaves it to the next one."""
        if self.meta["done"].get(f"means/{order}") is None:
            self.meta["done"][f"means/{order}"] = count
        _save_meta(self.out, self.meta)
        _remove_running_mean(_inside(self.out, "work", order, folder=True))
        _remove_empty(self.out / "work")

    def singles(self, order, images, batch_size) -> None:
        """The scan input of every block for the single images, and the blocks' parameters."""
        from jaxmamba.attention.extract import block_params
        from jaxmamba.models.model import run_with_cache

        if not len(images):
            return
        out, model = self.out, self.models[order]
        digest = self.meta["orders"][[o["name"] for o in self.meta["orders"]].index(order)]["model"]
        for b in self.blocks:
            path = _inside(out, "ops", digest, f"{b.name}.npz")
            if not path.exists():
                params = block_params(model, b.name)
                op = {k: np.asarray(params[k], np.float32) for k in SCAN_PARAMS}
                buf = io.BytesIO()
                np.savez(buf, **op)
                store.write_bytes_atomic(path, buf.getvalue())
        paths = {b.name: _inside(out, "single", order, f"{b.name}.npy") for b in self.blocks}
        if all(p.exists() for p in paths.values()):
            return
        self._wait("singles", order)
        some = f"{len(images)} single images" if len(images) > 1 else "1 single image"
        self._say(f"keeping the scan inputs of {some} ({order})")
        xs = {name: [] for name in self.names}
        table = route_table(model.config, images.shape[1:3], order)  # one program, all orders
        for i in range(0, len(images), batch_size):
            _, cache = run_with_cache(model, images[i : i + batch_size], order=table,
                                      blocks=self.names)  # fmt: skip
            for name in self.names:
                xs[name].append(np.asarray(cache[name]["x"], np.float32))
        for name, path in paths.items():
            _write_npy(path, np.concatenate(xs[name]))

    def embeddings(self, orders, methods, seed) -> None:
        out = self.out
        todo = [(o, b, m) for o in orders for b in self.blocks for m in methods
                if not _inside(out, "embeddings", o, f"{b.name}.{m}.npy").exists()]  # fmt: skip
        bar = self._bar(len(todo), "embeddings")
        for o, b, m in todo:
            if bar is not None:
                bar.set_description(f"{_METHOD_NAMES[m]} of {b.name} ({o}, L={b.length})")
            a = np.load(_inside(out, "means", o, f"{b.name}.npy"), mmap_mode="r")
            _write_npy(_inside(out, "embeddings", o, f"{b.name}.{m}.npy"), embed(a, m, seed=seed))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

    def stage_embeddings(self, orders, methods, seed, single) -> None:
        """Per stage with several blocks: the joint embedding of the blocks' patches (mean maps)
        and the inter-block embedding of the (image, block) single-image maps, pooled."""
        from jaxmamba.attention.embed import embed_joint

        out = self.out
        stages = sorted({b.stage for b in self.blocks})
        stages = [s for s in stages if sum(b.stage == s for b in self.blocks) > 1]
        todo = [(o, s, m, kind) for o in orders for s in stages for m in methods
                for kind in ("joint", "interblock") if kind == "joint" or single
                if not _inside(out, kind, o, f"stage{s}.{m}.npy").exists()]  # fmt: skip
        bar = self._bar(len(todo), "stage embeddings")
        for o, s, m, kind in todo:
            members = [b for b in self.blocks if b.stage == s]
            if bar is not None:
                what = "patches of" if kind == "joint" else "images x"
                bar.set_description(f"{_METHOD_NAMES[m]} of the {what} {len(members)} blocks "
                                    f"of stage {s} ({o})")  # fmt: skip
            if kind == "joint":
                maps = {b.name: np.load(_inside(out, "means", o, f"{b.name}.npy"))
                        for b in members}  # fmt: skip
                xy, _ = embed_joint(maps, m, seed=seed)
            else:
                xy = embed(self._pooled(o, members), m, seed=seed)
            _write_npy(_inside(out, kind, o, f"stage{s}.{m}.npy"), xy)
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
        from jaxmamba.attention import findings as metrics

        findings = self.meta.setdefault("findings", {})
        for o in orders:
            if o in findings:
                continue
            routes = {b.name: as_order(o).routes(*b.grid) for b in self.blocks}
            blocks, stages = {}, {}
            for b in self.blocks:
                if metrics.too_few_patches(b.grid):  # null: the views say "too few patches"
                    blocks[b.name] = {"attention_distance": None, "sequence_locality": None}
                    continue
                a = np.load(_inside(self.out, "means", o, f"{b.name}.npy"))
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
                if len(members) > 1 and not metrics.too_few_patches(members[0].grid):
                    maps = {b.name: np.load(_inside(self.out, "means", o, f"{b.name}.npy"))
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

    from jaxmamba.attention.extract import block_attention

    routes = as_order(order).routes(*grid)
    mode = "each" if each else "sum"
    return jax.jit(lambda op, x: block_attention(op, x, routes, route_mode=mode))


def _compile_forward(model, shape: tuple, order, capture: frozenset) -> None:
    """Compile (not run) the forward :meth:`_Writer.singles` runs on a batch of ``shape``."""
    import jax.numpy as jnp

    from jaxmamba.models.model import apply

    apply.lower(model, jnp.zeros(shape, jnp.float32), order, None, capture).compile()


def _compile_cache() -> str | None:
    """The folder of JAX's persistent compilation cache, or None when it is off."""
    import jax

    return jax.config.jax_compilation_cache_dir or None


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
    store.write_text_atomic(_inside(out, STUDY_FILE), json.dumps(meta, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------
# reading: a study folder is untrusted input (a colleague's, a download). study.json is checked
# field by field when the study is opened; every path is built from checked names, stays inside
# the folder and passes no symbolic link; every array is checked (dtype, shape, finite) when read.
# ------------------------------------------------------------------------------------------------

SYNTHETIC_MODEL = "synthetic"  # the model id of write_synthetic_study's planted maps
MAX_PATCHES = 1 << 16  # patches of a block's grid a study may declare (a 16 GiB float32 map)
MAX_FILE_BYTES = 64 * 2**20  # an image or a block's parameters (.npz) read whole
MAX_CHANNELS = 1 << 14  # channels of a block's scan (VMamba-B's widest: 2048)
_DIGEST = re.compile(r"[0-9a-f]{16}")  # params.digest: sha256, 16 hex digits
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # one path component a study may use
_KINDS = ("means", "routes", "embeddings", "images", "single", "ops", "joint", "interblock")
_CHUNK_BYTES = 4 * 2**20  # rows read at once for a heat map
_GAP_BYTES = 32 * 2**10  # unused rows read rather than making another read
_MISSING = object()
MATRIX_SIZES = (16, 1024)  # a pooled matrix's side in pixels: at least, at most
MATRIX_SIZE = 512  # its default
POOLED_BYTES = 64 * 2**20  # pooled matrices kept in memory by a reader (the server)


def _is_int(value) -> bool:
    """An integer (Python or NumPy), not a bool: what every index of a study must be."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _show(value) -> str:
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
        got = "it is missing" if value is _MISSING else f"got {_show(value)}"
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
    return _is_int(value) and value >= 1


def _str(value) -> bool:
    return isinstance(value, str)


def _check_meta(file: Path, meta) -> None:
    """Refuse a ``study.json`` whose fields a reader would trip on (a missing or wrong-typed
    field, a name that is no order, block or digest, a grid that is no grid)."""
    top = _Fields(file, meta)
    for key, ok, want in (("complete", lambda v: isinstance(v, bool), "true or false"),
                          ("synthetic", lambda v: isinstance(v, bool), "true or false"),
                          ("title", _str, "a string"), ("count", _positive, "a positive integer"),
                          ("pool_grid", _positive, "a positive integer"),
                          ("done", lambda v: isinstance(v, dict), "an object")):  # fmt: skip
        top.get(key, ok, want, None)
    top.get("seed", _is_int, "an integer")
    top.get("route_maps", lambda v: isinstance(v, bool), "true or false")
    _Fields(file, top.get("options", lambda v: True, "an object"), "options").get(
        "signed", lambda v: isinstance(v, bool), "true or false"
    )
    top.get("methods", lambda v: isinstance(v, list) and len(v) > 0 and all(map(_str, v))
            and set(v) <= set(METHODS) and len(set(v)) == len(v),
            f"distinct names from {METHODS}")  # fmt: skip
    models = _check_models(file, top)
    orders = _check_orders(top, models)
    size = top.get("image_size", lambda v: isinstance(v, list) and len(v) == 2
                   and all(_positive(x) and x <= MAX_PATCHES for x in v),
                   "[height, width] in pixels")  # fmt: skip
    _check_blocks(top, size)
    images = top.items("images", "a non-empty list of {name}")
    for i, image in enumerate(images):
        if not isinstance(image, _Fields):
            raise top.fail(f"images[{i}]", "an object {name}", image)
        image.get("name", _str, "a string")
    n = len(images)
    top.get("single_images", lambda v: isinstance(v, list)
            and all(_is_int(i) and 0 <= i < n for i in v) and len(set(v)) == len(v),
            f"distinct image indices 0..{n - 1}", None)  # fmt: skip
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


def _check_values(file: Path, meta) -> None:
    """Refuse a value of ``study.json`` that cannot be written out again: a number that is not
    finite (``1e400`` parses as infinity) or a string or key that is not UTF-8 text (a lone
    surrogate such as ``"\\ud800"``).  An explicit stack: the nesting may be deep."""
    stack = [(meta, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise StudyError(f"{file} is damaged: {_field(path)} is not a finite number "
                             f"({value!r})")  # fmt: skip
        if isinstance(value, str) and not _text(value):
            raise StudyError(f"{file} is damaged: {_field(path)} is not UTF-8 text (a lone "
                             f"surrogate): {_show(value)}")  # fmt: skip
        if isinstance(value, dict):
            for key, item in value.items():
                if not _text(key):
                    raise StudyError(f"{file} is damaged: {_field(path)} has a key that is not "
                                     f"UTF-8 text (a lone surrogate): {_show(key)}")  # fmt: skip
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))


def _text(value: str) -> bool:
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
    fewer than :data:`jaxmamba.attention.findings.MIN_PATCHES` patches has null findings in a study written
    now; numbers there (an earlier jaxmamba's) are accepted, and the views show "too few patches"
    whatever the file holds (they decide from the grid)."""
    findings = top.get("findings", lambda v: isinstance(v, dict), "an object", {})
    for order, entry in findings.items():
        if order not in orders or not isinstance(entry, dict):
            raise top.fail(f"findings[{order!r}]", "an object of one of the study's orders", entry)
        f = _Fields(file, entry, f"findings[{order!r}]")
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


def _check_orders(top: _Fields, models: dict) -> list[str]:
    names = []
    for i, order in enumerate(top.items("orders", "a non-empty list of {name, model, routes}")):
        if not isinstance(order, _Fields):
            raise top.fail(f"orders[{i}]", "an object {name, model, routes}", order)
        name = order.get("name", lambda v: _str(v) and v in ORDER_NAMES and v not in names,
                         f"a distinct order name from {ORDER_NAMES}")  # fmt: skip
        order.get("model", lambda v: _str(v) and v in models, "the digest of one of models")
        k = as_order(name).num_routes(2, 2)
        order.get("routes", lambda v, k=k: _is_int(v) and v == k, f"{k}, the routes of {name!r}")
        names.append(name)
    return names


def _block_name(value) -> bool:
    """Whether ``value`` is an official block name written as write_study writes it."""
    try:
        stage, index = parse_block_name(value)
    except ValueError:
        return False
    return value == f"layers.{stage}.blocks.{index}"


def _check_blocks(top: _Fields, size) -> None:
    names, grids, fits = set(), {}, np.ones(min(size), bool)  # fits: for each patch size
    listed = top.items("blocks", "a non-empty list of {name, stage, index, grid}")
    for i, block in enumerate(listed):
        if not isinstance(block, _Fields):
            raise top.fail(f"blocks[{i}]", "an object {name, stage, index, grid}", block)
        name = block.get("name", lambda v: _block_name(v) and v not in names,
                         "a distinct block name layers.i.blocks.j")  # fmt: skip
        stage, index = parse_block_name(name)
        block.get("stage", lambda v, s=stage: _is_int(v) and v == s, f"{stage}, as its name says")
        block.get("index", lambda v, j=index: _is_int(v) and v == j, f"{index}, as its name says")
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


def _grid_fits(grid, stage: int, size) -> np.ndarray:
    """For each patch size ``p`` in ``1..min(size)`` (index ``p - 1``): whether ``grid`` is the
    grid of ``stage`` of VMamba for images of ``size = [H, W]`` (:meth:`VMambaConfig.block
    <jaxmamba.models.config.VMambaConfig.block>`: the stage-0 grid ``H // p``, halved ``stage`` times,
    rounding down or up).

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


def _open_file(path: Path) -> int:
    """A descriptor of the regular file ``path`` (a symbolic link, FIFO or device is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StudyError(f"{path} is missing: the study is incomplete or damaged") from None
    except OSError as e:
        raise StudyError(f"cannot read {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StudyError(f"{path} is not a regular file; a study holds files only")
    return fd


def _read_whole(path: Path) -> bytes:
    """The bytes of a small file read whole (study.json, an image, a block's parameters), at
    most :data:`MAX_FILE_BYTES`."""
    fd = _open_file(path)
    try:
        size = os.fstat(fd).st_size
        if size > MAX_FILE_BYTES:
            raise StudyError(f"{path} is {size} bytes, more than the {MAX_FILE_BYTES} a study "
                             "reads whole")  # fmt: skip
        data = bytearray(size)
        _read_into(fd, path, data, 0)
        return bytes(data)
    finally:
        os.close(fd)


def _read_into(fd: int, path: Path, out, offset: int) -> None:
    """Fill the writable buffer ``out`` with the bytes at ``offset`` (a file cut short is an
    error naming it, not a short read)."""
    view, done = memoryview(out).cast("B"), 0
    while done < len(view):
        try:
            n = os.preadv(fd, [view[done:]], offset + done)
        except OSError as e:
            raise StudyError(f"cannot read {path}: {e.strerror or e}") from None
        if n == 0:
            raise StudyError(f"{path} is shorter than its header says (changed while read?)")
        done += n


class _Npy(NamedTuple):
    """An open ``.npy`` file of little-endian float32 in C order: descriptor, shape, data offset."""

    fd: int
    path: Path
    shape: tuple[int, ...]
    offset: int

    def read_into(self, out: np.ndarray, start: int) -> np.ndarray:
        """Fill the C-contiguous float32 ``out`` with the values from value ``start`` (flat)."""
        _read_into(self.fd, self.path, out, self.offset + 4 * start)
        return out

    def read(self, start: int, count: int) -> np.ndarray:
        """``count`` float32 values from value ``start`` (flat, C order)."""
        return self.read_into(np.empty(count, "<f4"), start)


def _read_header(f, path) -> tuple[tuple[int, ...], int]:
    """``(shape, data offset)`` of the ``.npy`` stream ``f`` (at its start), which must hold
    little-endian float32 in C order; ``path`` names it in errors."""
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ValueError(f"format version {version} is not 1.0 or 2.0")
        offset = f.tell()
    except (ValueError, TypeError, SyntaxError, OverflowError, EOFError) as e:
        raise StudyError(
            f"{path} is not a .npy file jaxmamba wrote: {store.first_line(e)}"
        ) from None
    if dtype != np.dtype("<f4") or fortran:
        raise StudyError(f"{path} holds {dtype}{' (Fortran order)' if fortran else ''}, "
                         "not little-endian float32 in C order")  # fmt: skip
    if not all(_is_int(d) and d >= 0 for d in shape):
        raise StudyError(f"{path} has a damaged header (shape {_show(shape)})")
    return tuple(int(d) for d in shape), offset


def _npy_header(fd: int, path: Path, size: int) -> tuple[tuple[int, ...], int]:
    """``(shape, data offset)`` of a ``.npy`` file of float32 (little-endian, C order) of
    ``size`` bytes, checked to hold as many values as its header says."""
    with os.fdopen(os.dup(fd), "rb") as f:
        shape, offset = _read_header(f, path)
    need = offset + 4 * int(np.prod(shape, dtype=object))
    if size < need:
        raise StudyError(f"{path} is shorter than its header says ({size} bytes of {need})")
    return shape, offset


def _shape_is(got: tuple, want: tuple) -> bool:
    """Whether shape ``got`` matches ``want`` (``None``: any size on that axis)."""
    if len(got) != len(want):
        return False
    return all(w is None or g == w for g, w in zip(got, want, strict=True))


def _npz_member(z: zipfile.ZipFile, path: Path, name: str, want: tuple, what: str) -> np.ndarray:
    """The float32 array ``name`` of the ``.npz`` ``z`` (at ``path``), whose shape must match
    ``want`` (``None``: any size on that axis; ``what`` says what it should be).  The header is
    checked, and the member's size against it, before any value is read or allocated."""
    member = f"{name}.npy"
    try:
        info = z.getinfo(member)
    except KeyError:
        raise StudyError(f"{path} is unreadable: it has no {member}") from None
    with z.open(info) as f:
        shape, offset = _read_header(f, f"{path} ({member})")
        if not _shape_is(shape, want):
            raise StudyError(f"{path} holds parameters of other shapes or types than {what}: "
                             f"{member} has shape {shape}")  # fmt: skip
        n = 4 * math.prod(shape)
        if info.file_size != offset + n:
            raise StudyError(f"{path} is damaged: {member} is {info.file_size} bytes, its header "
                             f"says {offset + n}")  # fmt: skip
        data = f.read(n)
    if len(data) != n:
        raise StudyError(f"{path} is damaged: {member} is shorter than its header says")
    return _finite_array(np.frombuffer(data, "<f4").reshape(shape), path)


def _runs(idx: np.ndarray, gap: int, longest: int) -> list[tuple[int, int, int, int]]:
    """Sorted unique indices as ranges ``(lo, hi, a, z)``: rows ``lo:hi`` (at most ``longest``)
    hold ``idx[a:z]``; indices ``gap`` or fewer apart share a range (reading a few unused rows
    costs less than another read)."""
    breaks = np.flatnonzero(np.diff(idx) > gap) + 1
    starts, stops = np.r_[0, breaks], np.r_[breaks, len(idx)]
    runs = list(zip(idx[starts].tolist(), (idx[stops - 1] + 1).tolist(), starts.tolist(),
                    stops.tolist(), strict=True))  # fmt: skip
    if all(hi - lo <= longest for lo, hi, _, _ in runs):
        return runs
    split = []
    for _, _, a, z in runs:
        while a < z:
            lo = int(idx[a])
            e = a + int(np.searchsorted(idx[a:z], lo + longest))
            split.append((lo, int(idx[e - 1]) + 1, a, e))
            a = e
    return split


def _finite_array(a: np.ndarray, path: Path) -> np.ndarray:
    if not np.all(np.isfinite(a)):
        raise StudyError(f"{path} holds NaN or infinite values")
    return a


class Study:
    """A study folder opened for reading; every read touches only what it returns.

    The folder is untrusted: opening checks every field of ``study.json`` (an
    :class:`~jaxmamba.errors.StudyError` names the field at fault), files are read only inside
    the folder and never through a symbolic link, and every array read is checked (dtype,
    shape, finite values).  Maps are read with ordinary reads, never memory-mapped: a file cut
    short or rewritten while served is an error naming it, not a crash.

    Attributes:
      path: the folder; meta: its ``study.json``; orders: order names; blocks: the
      :class:`~jaxmamba.models.config.Block` of each block; methods: reductions kept; count: images
      averaged; signed: whether maps can be negative (a diverging colour scale).
    """

    def __init__(self, path: str | os.PathLike, *, require_complete: bool = True) -> None:
        if not str(os.fspath(path)).strip():  # Path("") is the current folder
            raise StudyError("the study path is empty; name a study folder")
        self.path = Path(path).expanduser().absolute()
        file = self.path / STUDY_FILE
        if not os.path.lexists(file):
            raise StudyError(f"{self.path} is not a study: it has no {STUDY_FILE}")
        text = _read_whole(file)  # a regular file, not a link
        try:
            meta = store.parse_json(text.decode("utf-8"), file)
        except (ValueError, UnicodeDecodeError) as e:
            raise StudyError(f"{file} is unreadable or damaged: {store.first_line(e)}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StudyError(f"{file} is not a jaxmamba study")
        if not _is_int(meta.get("version")) or meta["version"] != VERSION:
            raise StudyError(f"{self.path} is a study of format version "
                             f"{_show(meta.get('version'))}; this jaxmamba reads version "
                             f"{VERSION}")  # fmt: skip
        _check_values(file, meta)
        _check_meta(file, meta)
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
        self.single_images = [int(i) for i in meta.get("single_images") or []]
        self.findings = meta.get("findings") or {}
        self._blocks = {b.name: b for b in self.blocks}
        self._order_meta = {o["name"]: o for o in meta["orders"]}
        self._root = os.path.realpath(self.path)
        self._headers: dict = {}  # path -> (file identity, shape, data offset)
        self._cache: OrderedDict = OrderedDict()  # computed single-image maps, least recent first
        self._pooled: OrderedDict = OrderedDict()  # pooled matrices, least recent first

    @classmethod
    def open(cls, path: str | os.PathLike) -> Study:
        """Open the study at ``path`` (an error names what is missing or damaged)."""
        return cls(path)

    # ---- names -> checked paths (no path is ever built from an unchecked string) ---------------
    def block(self, name: str) -> Block:
        if not isinstance(name, str) or name not in self._blocks:
            raise StudyError(f"the study has no block {_show(name)}")
        return self._blocks[name]

    def _order(self, order: str) -> str:
        if not isinstance(order, str) or order not in self.orders:
            raise StudyError(f"the study has no order {_show(order)}; it has {self.orders}")
        return order

    def _method(self, method: str) -> str:
        if not isinstance(method, str) or method not in self.methods:
            raise StudyError(f"the study has no {_show(method)} embedding; it has {self.methods}")
        return method

    def _route(self, order: str, route, single: bool = False) -> int | None:
        if route is None or (isinstance(route, str) and route == "sum"):
            return None
        k = self._order_meta[order]["routes"]
        if not self.meta["route_maps"] and not single:
            raise StudyError("the study keeps no per-route maps (explore --routes keeps them)")
        if not _is_int(route) or not 0 <= route < k:
            raise StudyError(f"route must be 'sum' or 0..{k - 1}, got {_show(route)}")
        return int(route)

    def _file(self, kind: str, *parts: str) -> Path:
        """The path of a study file ``kind/part/...``, checked: every part a plain name, no
        symbolic link anywhere below the study folder, the resolved path inside it."""
        shown = "/".join(str(p) for p in (kind, *parts))
        if kind not in _KINDS or not parts or not all(_str(p) and _PART.fullmatch(p)
                                                       for p in parts):  # fmt: skip
            raise StudyError(f"{_show(shown)} is not a file a study holds")
        path = self.path
        for part in (kind, *parts):
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                break  # a missing file: reading it says so
            except OSError as e:
                raise StudyError(f"cannot read {path}: {e.strerror or e}") from None
            if stat.S_ISLNK(mode):
                raise StudyError(f"{path} is a symbolic link; a study is read only from the "
                                 "files inside its folder")  # fmt: skip
        real = os.path.realpath(path)
        if os.path.commonpath([real, self._root]) != self._root:
            raise StudyError(f"{path} leads out of the study folder {self.path}")
        return path

    @contextlib.contextmanager
    def _npy(self, path: Path, shape: tuple):
        """The open ``.npy`` at ``path`` (from :meth:`_file`) whose shape must match ``shape``
        (``None`` for any size on that axis); the header is parsed once per file version."""
        fd = _open_file(path)
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            hit = self._headers.get(path)
            if hit is None or hit[0] != key:
                hit = (key, *_npy_header(fd, path, st.st_size))
                self._headers[path] = hit
            got = hit[1]
            if not _shape_is(got, shape):
                want = tuple("n" if w is None else w for w in shape)
                raise StudyError(f"{path} holds shape {got}, not {want}".replace("'", ""))
            yield _Npy(fd, path, got, hit[2])
        finally:
            os.close(fd)

    def _map_file(self, order: str, b: Block, r: int | None) -> tuple[Path, tuple, int]:
        """Path, expected shape and first value of the mean map (``r`` None) or route ``r``'s."""
        if r is None:
            return self._file("means", order, f"{b.name}.npy"), (b.length, b.length), 0
        k = self._order_meta[order]["routes"]
        path = self._file("routes", order, f"{b.name}.npy")
        return path, (k, b.length, b.length), r * b.length * b.length

    def map(self, order: str, block: str, route=None) -> np.ndarray:
        """The ``(L, L)`` mean map (route ``None``/"sum" or ``k``), read whole (read-only)."""
        order, b = self._order(order), self.block(block)
        path, shape, start = self._map_file(order, b, self._route(order, route))
        with self._npy(path, shape) as f:
            m = f.read(start, b.length * b.length).reshape(b.length, b.length)
        return _finite_array(m, path)

    def heat(self, order: str, block: str, patches, direction="query", route=None, subject="mean"):
        """Mean of the selected patches' rows (``"query"``: what they attend to) or columns
        (``"source"``: what attends to them): ``(L,)`` float32 over the block's grid, of the mean
        map (``subject="mean"``) or of one single image's (``subject`` its position).  Only the
        rows needed are read (the columns: the map in blocks of rows)."""
        order, b = self._order(order), self.block(block)
        idx = self._patches(block, patches)
        if direction not in DIRECTIONS:
            raise StudyError(f"direction must be one of {DIRECTIONS}, got {_show(direction)}")
        if subject is None or (isinstance(subject, str) and subject == "mean"):
            path, shape, start = self._map_file(order, b, self._route(order, route))
            with self._npy(path, shape) as f:
                values = (_rows_mean if direction == "query" else _columns_mean)(f, start, b, idx)
        else:
            m = self.single_map(order, block, subject, route)
            path = f"the map of single image {subject} ({order}, {b.name})"
            values = m[idx].mean(axis=0) if direction == "query" else m[:, idx].mean(axis=1)
        values = np.asarray(values, np.float32)
        if not np.all(np.isfinite(values)):
            raise StudyError(f"{path} holds NaN or infinite values")
        return values

    # ---- the matrix view and the blocks overview: pooled or reduced, never a whole map --------
    def matrix(self, order: str, block: str, route=None, coords=None, size: int = MATRIX_SIZE):
        """The block's mean map in scan-order coordinates, pooled to at most ``size`` pixels a
        side: ``(pooled, f)`` with ``pooled`` float32 ``(n, n)``, ``f = ceil(L / size)``,
        ``n = ceil(L / f)``.

        With ``perm = routes(order, block)[coords]`` (scan position → patch), the matrix is
        ``M[t, s] = A[perm[t], perm[s]]``: row ``t`` is what the patch at scan position ``t``
        attends to (a query), column ``s`` the source at scan position ``s``; per route
        (``route`` an integer, the axes its own scan) it is lower-triangular, as the
        hidden-attention papers draw it.  ``pooled[i, j]`` is the mean of ``M`` over the tile of
        rows ``i·f .. i·f + f - 1`` and columns ``j·f ..`` (the last tile of an axis may be
        shorter: the mean of the entries it has).  ``coords`` defaults to ``route`` if that is
        an integer, else 0.  The map is read once in blocks of rows, and pooled results are
        kept (at most :data:`POOLED_BYTES`).

        >>> import tempfile
        >>> s = write_synthetic_study(tempfile.mkdtemp() + "/s", "vmamba_test", 64,
        ...                           orders=["cross"])
        >>> m, f = s.matrix("cross", "layers.0.blocks.0", size=100)  # L = 256
        >>> m.shape, f
        ((86, 86), 3)
        """
        order, b = self._order(order), self.block(block)
        r = self._route(order, route)
        k = self._order_meta[order]["routes"]
        if coords is None:
            coords = 0 if r is None else r
        if not _is_int(coords) or not 0 <= coords < k:
            raise StudyError(f"coords must be a route 0..{k - 1} (its scan order gives the "
                             f"axes), got {_show(coords)}")  # fmt: skip
        lo, hi = MATRIX_SIZES
        if not _is_int(size) or not lo <= size <= hi:
            raise StudyError(f"size must be an integer in {lo}..{hi} (pixels), got {_show(size)}")
        f = -(-b.length // int(size))
        path, shape, start = self._map_file(order, b, r)
        with self._npy(path, shape) as file:
            key = (path, self._headers[path][0], start, int(coords), f)  # the file's version too
            if key in self._pooled:
                self._pooled.move_to_end(key)
                return self._pooled[key], f
            perm = self.routes(order, block)[int(coords)]
            pooled = _pooled_matrix(file, start, b.length, perm, f)
        if not np.all(np.isfinite(pooled)):
            raise StudyError(f"{path} holds NaN or infinite values")
        self._pooled[key] = pooled
        while sum(v.nbytes for v in self._pooled.values()) > POOLED_BYTES:
            self._pooled.popitem(last=False)
        return pooled, f

    def overview(
        self, order: str, block: str, patches, direction="query", route=None, subject="mean"
    ) -> tuple[np.ndarray, list[dict]]:
        """The selection's map in every block of the study: ``patches`` of ``block``'s grid
        mapped by image area to each block's grid (:func:`map_selection`), and the mean of
        their rows (``"query"``) or columns (``"source"``) there, as :meth:`heat`.  Returns the
        float32 concatenation of the blocks' maps and, per block, ``{"name", "stage", "grid",
        "offset", "length"}`` (its values are ``values[offset : offset + length]``).

        >>> import tempfile
        >>> s = write_synthetic_study(tempfile.mkdtemp() + "/s", "vmamba_test", 64,
        ...                           orders=["cross"])
        >>> values, parts = s.overview("cross", "layers.0.blocks.0", [0])
        >>> [(p["grid"], p["offset"]) for p in parts[:3]], values.shape
        ([([16, 16], 0), ([8, 8], 256), ([4, 4], 320)], (356,))
        """
        order, b = self._order(order), self.block(block)
        idx = self._patches(block, patches).tolist()
        if direction not in DIRECTIONS:
            raise StudyError(f"direction must be one of {DIRECTIONS}, got {_show(direction)}")
        values, parts, offset = [], [], 0
        for other in self.blocks:
            chosen = map_selection(idx, b.grid, other.grid)
            values.append(self.heat(order, other.name, chosen, direction, route, subject))
            parts.append({"name": other.name, "stage": other.stage, "grid": list(other.grid),
                          "offset": offset, "length": other.length})  # fmt: skip
            offset += other.length
        return np.concatenate(values).astype(np.float32), parts

    def _patches(self, block: str, patches) -> np.ndarray:
        b = self.block(block)
        if isinstance(patches, np.ndarray):
            ok = patches.dtype.kind in "iu"
        elif isinstance(patches, list | tuple):
            ok = all(_is_int(p) for p in patches)
        else:
            ok, patches = _is_int(patches), [patches]
        if not ok:
            raise StudyError(f"patches must be integers, got {_show(patches)}")
        flat = [int(p) for p in np.asarray(patches, dtype=object).reshape(-1)]
        if not flat or min(flat) < 0 or max(flat) >= b.length:
            raise StudyError(f"patches must be a non-empty selection of 0..{b.length - 1}")
        return np.unique(np.asarray(flat, np.int64))

    def coords(self, order: str, block: str, method: str) -> np.ndarray:
        """``(L, 2)`` float32 scatterplot coordinates of ``method``."""
        order, b, method = self._order(order), self.block(block), self._method(method)
        path = self._file("embeddings", order, f"{b.name}.{method}.npy")
        with self._npy(path, (b.length, 2)) as f:
            return _finite_array(f.read(0, 2 * b.length).reshape(b.length, 2), path)

    def routes(self, order: str, block: str) -> np.ndarray:
        """``(K, L)`` scan routes of ``order`` on the block's grid."""
        return as_order(self._order(order)).routes(*self.block(block).grid)

    def image_png(self, index: int) -> bytes:
        """PNG bytes of image ``index`` as shown."""
        n = len(self.meta["images"])
        if not _is_int(index) or not 0 <= index < n:
            raise StudyError(f"image must be 0..{n - 1}, got {_show(index)}")
        path = self._file("images", f"{int(index)}.png")
        data = _read_whole(path)
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise StudyError(f"{path} is not a PNG image")
        return data

    def has_points(self, kind: str, order: str, stage: int, method: str) -> bool:
        """Whether the study keeps the ``kind`` embedding of ``stage`` by ``method``."""
        return self._points_file(kind, order, stage, method)[0].exists()

    def _points_file(self, kind: str, order: str, stage: int, method: str) -> tuple[Path, tuple]:
        order = self._order(order)
        if not isinstance(kind, str) or kind not in ("joint", "interblock"):
            raise StudyError(f"no {_show(kind)} embedding: kinds are joint and interblock")
        method = self._method(method)
        if not _is_int(stage) or stage not in {b.stage for b in self.blocks}:
            raise StudyError(
                f"stage must be one of the study's stages "
                f"{sorted({b.stage for b in self.blocks})}, got {_show(stage)}"
            )
        members = [b for b in self.blocks if b.stage == stage]
        n = sum(b.length for b in members) if kind == "joint" else (
            len(members) * len(self.single_images))  # fmt: skip
        return self._file(kind, order, f"stage{int(stage)}.{method}.npy"), (n, 2)

    # ---- single images: maps computed exactly, on demand, from the kept scan inputs ------------
    def _single_index(self, image) -> int:
        if not _is_int(image) or not 0 <= image < len(self.single_images):
            raise StudyError(
                f"single image must be 0..{len(self.single_images) - 1} (the study keeps "
                f"{len(self.single_images)} single images), got {_show(image)}"
            )
        return int(image)

    def _single_input(self, order: str, b: Block, i: int) -> tuple[np.ndarray, dict]:
        """``(D, L)`` scan input of single image ``i`` at block ``b``, and the block's scan
        parameters: the channel count ``D`` of the input's header is checked (at most
        :data:`MAX_CHANNELS`, and that of the parameters) before the input is read."""
        path = self._file("single", order, f"{b.name}.npy")
        with self._npy(path, (len(self.single_images), None, b.length)) as f:
            d = f.shape[1]
            if not 1 <= d <= MAX_CHANNELS:
                raise StudyError(f"{path} holds inputs of {d} channels; a block has 1.."
                                 f"{MAX_CHANNELS}")  # fmt: skip
            op = self._block_op(order, b, d)
            x = f.read(i * d * b.length, d * b.length).reshape(d, b.length)
            return _finite_array(x, path), op

    def _block_op(self, order: str, b: Block, d: int) -> dict:
        """The scan parameters of block ``b`` of ``order``'s model, checked against ``d``
        channels and the order's routes: each member's header (dtype, shape) and size are
        checked before it is read, so a header claiming a huge array allocates nothing."""
        path = self._file("ops", self._order_meta[order]["model"], f"{b.name}.npz")
        data = _read_whole(path)
        k = self._order_meta[order]["routes"]
        what = f"a block of {d} channels and {k} routes"
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                if sum(i.file_size for i in z.infolist()) > MAX_FILE_BYTES:
                    raise ValueError("it unpacks to more than the limit")
                op = {"Ds": _npz_member(z, path, "Ds", (k * d,), what),
                      "dt_projs_bias": _npz_member(z, path, "dt_projs_bias", (k, d), what),
                      "A_logs": _npz_member(z, path, "A_logs", (k * d, None), what),
                      "dt_projs_weight": _npz_member(z, path, "dt_projs_weight", (k, d, None),
                                                     what)}  # fmt: skip
                n, r = op["A_logs"].shape[1], op["dt_projs_weight"].shape[2]
                if n < 1 or r < 1:
                    raise StudyError(f"{path} holds parameters of other shapes or types than "
                                     f"{what}: a state or rank of 0")  # fmt: skip
                op["x_proj_weight"] = _npz_member(z, path, "x_proj_weight", (k, r + 2 * n, d),
                                                  what)  # fmt: skip
        except (OSError, ValueError, EOFError, NotImplementedError, RuntimeError, zlib.error,
                zipfile.BadZipFile) as e:  # fmt: skip
            if isinstance(e, StudyError):
                raise
            raise StudyError(f"{path} is unreadable: {store.first_line(e)}") from None
        return op

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
        x, op = self._single_input(order, b, i)
        maps = np.asarray(_single_fn(order, b.grid, r is not None)(op, x[None]))[0]
        m = maps if r is None else maps[r]
        if not np.all(np.isfinite(m)):
            raise StudyError(f"the map of single image {i} ({order}, {b.name}) is not finite")
        self._cache[key] = m
        while sum(v.nbytes for v in self._cache.values()) > CACHE_BYTES and len(self._cache) > 1:
            self._cache.popitem(last=False)
        return m

    def single_coords(self, order: str, block: str, image) -> np.ndarray:
        """``(L, 2)`` PCA of one image's rows (computed on demand, cached)."""
        order, b = self._order(order), self.block(block)
        key = ("pca", order, b.name, self._single_index(image))
        if key not in self._cache:
            self._cache[key] = embed(self.single_map(order, block, image), "pca")
        return self._cache[key]

    def stage_points(self, kind: str, order: str, stage: int, method: str) -> np.ndarray:
        """Coordinates of a stage's ``"joint"`` embedding (its blocks' patches, block-major:
        block j's patch p is row ``j·L + p``) or ``"interblock"`` embedding ((block, image)
        pairs, block-major: row ``j·n + i`` for single image i)."""
        path, shape = self._points_file(kind, order, stage, method)
        if not path.exists():
            raise StudyError(f"the study has no {kind} embedding of stage {stage}")
        with self._npy(path, shape) as f:
            return _finite_array(f.read(0, 2 * shape[0]).reshape(shape), path)

    def size_bytes(self, orders=None, blocks=None, route_maps: bool = True) -> int:
        """Bytes of the maps of ``orders`` × ``blocks`` (default all), per-route maps included."""
        orders = self.orders if orders is None else [self._order(o) for o in orders]
        chosen = self.blocks if blocks is None else [self.block(b) for b in blocks]
        k = max(o["routes"] for o in self.meta["orders"])
        return estimate_bytes(chosen, len(orders), k, route_maps and self.meta["route_maps"])

    def __repr__(self) -> str:
        return (f"Study({self.path}, {len(self.orders)} orders, {len(self.blocks)} blocks, "
                f"{self.count} images)")  # fmt: skip


def map_selection(patches, src: tuple[int, int], dst: tuple[int, int]) -> list[int]:
    """The patches of grid ``dst`` that cover the image area of ``patches`` of grid ``src``
    (sorted; the same rule as the explorer's ``mapSelection``): a patch ``(r, c)`` covers rows
    ``floor(r·H'/H) .. max(that, ceil((r+1)·H'/H) - 1)`` of ``dst``, and likewise columns.

    >>> map_selection([0], (2, 2), (4, 4)), map_selection([5, 6], (4, 4), (2, 2))
    ([0, 1, 4, 5], [0, 1])
    """
    (h, w), (h2, w2) = src, dst
    if (h, w) == (h2, w2):
        return sorted(set(int(p) for p in patches))
    out = set()
    for p in patches:
        r, c = divmod(int(p), w)
        r0, c0 = r * h2 // h, c * w2 // w
        r1, c1 = max(r0, -(-(r + 1) * h2 // h) - 1), max(c0, -(-(c + 1) * w2 // w) - 1)
        out.update(rr * w2 + cc for rr in range(r0, r1 + 1) for cc in range(c0, c1 + 1))
    return sorted(out)


def _pooled_matrix(file: _Npy, start: int, l: int, perm: np.ndarray, f: int) -> np.ndarray:
    """The ``(L, L)`` map at value ``start`` of ``file`` permuted to scan order ``perm``
    (``M[t, s] = A[perm[t], perm[s]]``) and pooled by mean over ``f x f`` tiles (the last tile
    of an axis shorter when ``f`` does not divide ``L``): ``(n, n)`` float32, ``n = ceil(L/f)``.
    The map is read in blocks of rows (at most :data:`_CHUNK_BYTES`), summed in float64."""
    n = -(-l // f)
    tile = np.empty(l, np.int64)
    tile[perm] = np.arange(l) // f  # the pooled row of each patch's row of A
    total = np.zeros((n, n), np.float64)
    rows = np.empty((min(l, max(1, _CHUNK_BYTES // (4 * l))), l), "<f4")
    padded = np.zeros((len(rows), n * f), np.float64)
    for lo in range(0, l, len(rows)):
        hi = min(l, lo + len(rows))
        chunk = padded[: hi - lo]
        chunk[:, :l] = file.read_into(rows[: hi - lo], start + lo * l)[:, perm]
        np.add.at(total, tile[lo:hi], chunk.reshape(hi - lo, n, f).sum(axis=2))
    count = np.minimum(f, l - f * np.arange(n)).astype(np.float64)  # entries per tile, one axis
    return (total / np.outer(count, count)).astype(np.float32)


def _rows_mean(f: _Npy, start: int, b: Block, idx: np.ndarray) -> np.ndarray:
    """Mean of rows ``idx`` of the ``(L, L)`` matrix at value ``start`` of ``f``: one read per
    run of nearby rows into a buffer of at most :data:`_CHUNK_BYTES`, summed row after row in
    float32 (the same numbers as ``m[idx].mean(axis=0)``)."""
    l = b.length
    runs = _runs(idx, max(1, _GAP_BYTES // (4 * l)), max(1, _CHUNK_BYTES // (4 * l)))
    buf = np.empty((min(max(1, _CHUNK_BYTES // (4 * l)), sum(r[1] - r[0] for r in runs)), l),
                   "<f4")  # fmt: skip
    total, used, chosen = np.zeros((1, l), "<f4"), 0, []

    def add(total):
        return np.add.reduce(np.concatenate([total, buf[np.concatenate(chosen)]]), axis=0,
                             keepdims=True)  # fmt: skip

    for lo, hi, a, z in runs:
        if used + hi - lo > len(buf):
            total, used, chosen = add(total), 0, []
        f.read_into(buf[used : used + hi - lo], start + lo * l)
        chosen.append(idx[a:z] - (lo - used))
        used += hi - lo
    return add(total)[0] / np.float32(len(idx))


def _columns_mean(f: _Npy, start: int, b: Block, idx: np.ndarray) -> np.ndarray:
    """Mean of columns ``idx`` of the ``(L, L)`` matrix at value ``start`` of ``f``, read in
    blocks of rows (at most :data:`_CHUNK_BYTES` at once)."""
    l = b.length
    rows = np.empty((min(l, max(1, _CHUNK_BYTES // (4 * l))), l), "<f4")
    out = np.empty(l, np.float32)
    for lo in range(0, l, len(rows)):
        hi = min(l, lo + len(rows))
        out[lo:hi] = f.read_into(rows[: hi - lo], start + lo * l)[:, idx].mean(axis=1)
    return out


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
    from jaxmamba.models.config import get_config

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
        store.write_bytes_atomic(_inside(out, "images", f"{i}.png"), png_bytes(noise))
    for b in blocks:
        h, w = b.grid
        r, c = np.divmod(np.arange(b.length), w)
        d2 = ((r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2).astype(np.float32)
        local = np.exp(-d2 / np.float32(2.0 * (1.5 + b.stage + 0.3 * b.index) ** 2))
        for o in orders:
            pos = np.argsort(as_order(o).routes(h, w)[0]).astype(np.float32)  # scan position
            seq = np.exp(-np.abs(pos[:, None] - pos[None]) / np.float32(4.0 + 2 * b.index))
            m = (local - 0.3 * seq) / np.float32(b.length)
            _write_npy(_inside(out, "means", o, f"{b.name}.npy"), m)
            xy = np.stack([c, -r], axis=1) + rng.normal(0, 0.15, (b.length, 2))
            _write_npy(_inside(out, "embeddings", o, f"{b.name}.pca.npy"), xy)
    meta["complete"] = True
    _save_meta(out, meta)
    return Study(out)
