"""Writing a study folder: :func:`write_study` (what ``jaxmamba explore`` and ``demo`` run).

A study averages the exact attention of one model per scan order (or one model scanned in every
order) over a set of images, and keeps what the views need, each piece readable on its own (the
paths: :mod:`jaxmamba.study.layout`; ``study.json``: :mod:`jaxmamba.study.schema`).

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
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxmamba.attention.cost import matmul_rate, mean_cost
from jaxmamba.attention.embed import METHODS
from jaxmamba.attention.options import AttentionOptions
from jaxmamba.errors import CheckpointError, StudyError
from jaxmamba.models import params as P
from jaxmamba.models.model import Model, check_images, model_order, select_blocks
from jaxmamba.models.vim import class_last_routes
from jaxmamba.models.vim_config import VimConfig
from jaxmamba.orders import ORDER_NAMES, OrderError, as_order
from jaxmamba.storage import store
from jaxmamba.study import layout
from jaxmamba.study.arguments import (
    check_finite,
    display_arg,
    int_arg,
    names_arg,
    single_arg,
    sources_arg,
    text_arg,
)
from jaxmamba.study.files import digest_array, estimate_bytes, fmt_bytes, png_bytes, save_meta
from jaxmamba.study.layout import check_no_links, inside
from jaxmamba.study.phases import POOL_GRID, Phases
from jaxmamba.study.reader import Study, companion_path, study_block
from jaxmamba.study.resume import LOCK_ADVICE, check_existing, clear_for_replan
from jaxmamba.study.schema import FORMAT, VERSION, block_entry

__all__ = ["add_companions", "write_study"]


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
        "blocks": [block_entry(b) for b in blocks],
        "image_size": list(images.shape[1:3]),
        "images": [{"name": str(n)} for n in names],
        "images_digest": digest_array(np.asarray(images, np.float32)),
        "single_images": [int(i) for i in single],
        "methods": list(methods),
        "route_maps": bool(route_maps),
        "options": {**options.to_dict(), "signed": options.signed},
        "pool_grid": POOL_GRID,
        "seed": int(seed),
    }


def write_study(
    out_dir: str | os.PathLike,
    models: Model | Mapping[str, Model],
    images,
    display=None,
    *,
    orders: Sequence[str] | None = None,
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
        trained model per order, the reference study's comparison); VMamba or Vim (a Vim
        layer's maps are kept class-last: its row-major patches, then the class token).
      images: ``(N, H, W, 3)`` model inputs.
      display: ``(N, H, W, 3)`` uint8 images as shown (default: ``images`` min-max scaled).
      orders: named scan orders (:data:`jaxmamba.ORDER_NAMES`); default the model's own
        (``"cross"`` for VMamba, ``"raster"`` for Vim; a Vim model takes orders of one patch
        path, scanned forward and backward).
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
    if orders is None:
        some = models if isinstance(models, Model) else next(iter(models.values()), None)
        orders = [model_order(some.config, None).name if isinstance(some, Model) else "cross"]
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
    batch_size = int_arg("batch_size", batch_size, 1)
    save_every = int_arg("save_every", save_every, 1)
    seed = int_arg("seed", seed, 0, 2**32 - 1)
    if not isinstance(route_maps, bool | np.bool_):
        raise StudyError(f"route_maps must be True or False, got {route_maps!r}")
    if title is not None and not isinstance(title, str):
        raise StudyError(f"title must be a string, got {title!r}")
    if title is not None:
        text_arg("title", title)
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
        config = models[o].config
        if isinstance(config, VimConfig):
            try:
                class_last_routes(as_order(o), config.grid)
            except OrderError as e:
                raise StudyError(f"order {o!r} for a Vim model: {e}") from None
        elif models[o].config.k_routes != as_order(o).num_routes(2, 2):
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
    check_finite(images, "images")
    names = select_blocks(first.config, blocks)
    block_info = [study_block(first.config.block(b, images.shape[1:3])) for b in names]
    display = display_arg(display, images)
    names_list = names_arg(image_names, n)
    single = single_arg(single_images, n)
    sources = sources_arg(sources, orders)
    options = AttentionOptions(route_mode="each" if route_maps else "sum")
    plan = _plan(models, sources, images, names_list, orders, block_info, methods, route_maps,
                 options, seed, single)  # fmt: skip
    check_no_links(out)  # nothing it writes or reads back passes a link out of the folder
    check_existing(out, None)  # a file, or a folder of someone else's: refused, nothing written
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        held.enter_context(_locked(out))
        saved = check_existing(out, plan)
        if saved is not None and saved.get("replan"):  # an unfinished first run of another plan
            clear_for_replan(out, saved["replan"])
            saved = None
        k = first.config.k_routes
        k_inputs = k if isinstance(first.config, VimConfig) else 1  # scan inputs kept per block
        say = print if progress else (lambda *a, **k: None)
        size = estimate_bytes(block_info, len(orders), k, route_maps)
        size += len(orders) * len(single) * k_inputs * sum(
            4 * first.config.d_inner(b.stage) * b.length for b in block_info)  # fmt: skip
        say(
            f"study {out}: {n} images at {images.shape[1]}x{images.shape[2]}, "
            f"{len(orders)} orders ({', '.join(orders)}) x {len(names)} blocks, "
            f"{len(single)} single images; {fmt_bytes(size)}; embeddings: {', '.join(methods)}"
            + (" (resuming)" if saved else "")
        )
        if progress:  # what the means will take, before they start
            cost = mean_cost(first, (images.shape[1], images.shape[2]), min(batch_size, n),
                             blocks=names, options=options)  # fmt: skip
            say(f"  {cost.describe(n, matmul_rate(), runs=len(orders))} (the attention means)")
        meta = dict(saved or plan)
        meta.update(plan)
        meta.setdefault("created", time.strftime("%Y-%m-%d %H:%M:%S"))
        meta["title"] = title or meta.get("title") or f"jaxmamba: {first.config.describe()}"
        from jaxmamba import __version__

        meta["library_version"] = __version__
        meta.setdefault("done", {})
        meta["complete"] = False
        save_meta(out, meta)
        writer = Phases(out, meta, models, block_info, progress)
        held.callback(writer.stop_compiling)
        writer.compile_ahead(orders, images.shape, options, batch_size, len(single))
        for i in range(n):
            path = inside(out, *layout.image(i))
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
        save_meta(out, meta)
    return Study(out)


@contextlib.contextmanager
def _locked(out: Path):
    """The study's lock held (one writer at a time; a held lock is a :class:`StudyError`)."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(store.locked(out, LOCK_ADVICE))
        except CheckpointError as e:
            raise StudyError(store.first_line(e)) from None
        yield


def add_companions(study_dir: str | os.PathLike, names: Sequence[str]) -> Study:
    """Record sub-folders of the study ``study_dir`` as its companions: complete studies of
    other models over the same images (the demo's Vim study in ``demo/vim``), which the views
    show beside it (:class:`~jaxmamba.views.protocol.ViewAPI`).  Each must be a plain
    sub-folder (no link) holding a complete study of the same images
    (:meth:`Study.same_images`); ``study.json`` is rewritten atomically under the study's lock.

    Returns:
      The study, opened again.
    """
    out = Path(study_dir).expanduser().absolute()
    study = Study(out)
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        path = companion_path(out, name)
        if not study.same_images(Study(path)):
            raise StudyError(f"{path} is a study of other images than {out}'s; a companion "
                             "shows the same images")  # fmt: skip
    check_no_links(out)
    with _locked(out):
        meta = check_existing(out, None)
        assert meta is not None  # Study(out) opened it
        meta["companions"] = list(dict.fromkeys([*meta.get("companions", []), *names]))
        save_meta(out, meta)
    return Study(out)
