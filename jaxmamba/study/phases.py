"""The phases of :func:`~jaxmamba.study.write_study`: means, single images, embeddings, findings.

:class:`Phases` runs each phase of an order and skips what is already on disk: a killed run
resumes where it stopped and never recomputes a finished entry.  The programs the orders run
are compiled ahead, in background threads, while the images are written.

>>> pool_map(np.ones((16, 16)), 4, 4, g=2).shape  # a 4x4 grid pooled to 2x2 groups
(4, 4)
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from jaxmamba.attention.embed import embed
from jaxmamba.attention.mean import attention_mean, compile_mean, route_table
from jaxmamba.models.vim import MERGE_WEIGHT, class_token_at
from jaxmamba.models.vim_config import VimConfig
from jaxmamba.storage import store
from jaxmamba.study import layout
from jaxmamba.study.files import save_meta, write_npy
from jaxmamba.study.layout import inside
from jaxmamba.study.reader import Study, block_routes
from jaxmamba.study.resume import remove_empty, remove_running_mean
from jaxmamba.study.schema import order_findings

POOL_GRID = 14  # inter-block points: maps pooled to at most 14 x 14 groups of patches per axis


def pool_map(a: np.ndarray, h: int, w: int, g: int = POOL_GRID, cls: bool = False) -> np.ndarray:
    """Average-pool an ``(L, L)`` map over groups of patches on both axes: the query and source
    patches of an ``h x w`` grid fall into at most ``g x g`` equal-area groups (row ``r`` into
    group ``r · gh // h``), giving ``(gh·gw, gh·gw)``; grids of at most ``g`` keep their size.
    With ``cls`` the map is class-last (``L = h·w + 1``) and the class token stays a group of
    its own, the last: ``(gh·gw + 1, gh·gw + 1)``.

    >>> pool_map(np.arange(16.0).reshape(4, 4), 2, 2, g=1).tolist()
    [[7.5]]
    >>> pool_map(np.arange(25.0).reshape(5, 5), 2, 2, g=1, cls=True).tolist()
    [[9.0, 11.5], [21.5, 24.0]]
    """
    gh, gw = min(h, g), min(w, g)
    group = (np.arange(h)[:, None] * gh // h) * gw + (np.arange(w)[None] * gw // w)
    group = group.reshape(-1)
    if cls:
        group = np.append(group, gh * gw)
    onehot = np.zeros((group.max() + 1, len(group)), np.float64)
    onehot[group, np.arange(len(group))] = 1.0
    onehot /= onehot.sum(axis=1, keepdims=True)
    return onehot @ np.asarray(a, np.float64) @ onehot.T


class Phases:
    """The phases of :func:`write_study`; each skips what is already on disk."""

    def __init__(self, out: Path, meta: dict, models, blocks, progress: bool) -> None:
        """``blocks``: the study's :class:`~jaxmamba.models.config.Block` s (a Vim layer's
        class-last, :func:`jaxmamba.study.reader.study_block`)."""
        self.out, self.meta, self.models, self.blocks, self.progress = (
            out, meta, models, blocks, progress
        )  # fmt: skip
        config = next(iter(models.values())).config
        # a Vim layer's maps and inputs are kept class-last: position i is model token tokens[i]
        self.tokens = class_token_at(config) if isinstance(config, VimConfig) else None
        self.names = tuple(b.name for b in blocks)
        self._pooled_maps: dict = {}
        self._compiling: dict = {}  # ("means" | "singles", order) -> Future of its compilation
        self._compiler: ThreadPoolExecutor | None = None

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)

    def _todo(self, kind: str, order: str) -> bool:
        """Whether phase ``kind`` of ``order`` has work left (not resumed half-way)."""
        if kind == "means":
            folders = ("means", "routes") if self.meta["route_maps"] else ("means",)
            part = lambda f, b: layout.route(order, b) if f == "routes" else layout.mean(order, b)
            done = all(inside(self.out, *part(f, b.name)).exists()
                       for f in folders for b in self.blocks)  # fmt: skip
            return not done and not self.out.joinpath(*layout.work(order)).exists()
        return not all(inside(self.out, *layout.single(order, b.name)).exists()
                       for b in self.blocks)  # fmt: skip

    def compile_ahead(self, orders, shape, options, batch_size: int, n_single: int) -> None:
        """Compile, in background threads, the programs the orders will run (the attention mean,
        the forward that keeps the single images' scan inputs) while the images are written:
        on a first run (empty compile cache) compiling is most of the time.  Orders of one
        architecture and grids share their programs (the routes are data,
        :func:`~jaxmamba.attention.mean.route_table`): each distinct program is compiled once.  The
        phases wait for theirs (:meth:`_wait`)."""
        import jax

        n, size = shape[0], tuple(shape[1:])
        jobs: list[Callable[[], object]] = []
        seen: dict = {}
        for o in orders:
            model, table = self.models[o], route_table(self.models[o].config, size[:2], o)
            todo: list[tuple[str, tuple, Callable[[], object]]] = []
            if self._todo("means", o):
                batch = (min(batch_size, n), *size)
                todo.append(("means", batch, functools.partial(
                    compile_mean, model, batch, options, order=o, blocks=self.names)))  # fmt: skip
            if n_single and self._todo("singles", o):
                for b in sorted({min(batch_size, n_single), n_single % batch_size} - {0}):
                    todo.append(
                        (
                            "singles",
                            (b, *size),
                            functools.partial(
                                compile_forward, model, (b, *size), table, frozenset(self.names)
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
        cache = compile_cache()
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
            when = "first run only" if compile_cache() else "the compile cache is off"
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
        paths = [inside(out, *layout.mean(order, b.name)) for b in self.blocks]
        if route_maps:
            paths += [inside(out, *layout.route(order, b.name)) for b in self.blocks]
        n = len(images)
        work = inside(out, *layout.work(order), folder=True)
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
            m = self._class_last(np.asarray(mean[b.name], np.float32), 2)
            if route_maps:  # the routes' maps, and the block's own merge of them
                write_npy(inside(out, *layout.route(order, b.name)), m)
                m = m.sum(axis=0) * (MERGE_WEIGHT if self.tokens is not None else 1.0)
            write_npy(inside(out, *layout.mean(order, b.name)), m)
        assert mean.count is not None  # a mean over images always carries its count
        self._finish_means(order, mean.count)

    def _class_last(self, a: np.ndarray, axes: int) -> np.ndarray:
        """``a`` with its last ``axes`` token axes put in the study's class-last layout."""
        if self.tokens is None:
            return a
        for axis in range(a.ndim - axes, a.ndim):
            a = np.take(a, self.tokens, axis=axis)
        return a

    def _finish_means(self, order: str, count: int) -> None:
        """Record the means of ``order`` as done and remove its running mean ``work/<order>``
        (and ``work/`` once empty): a run killed between the two leaves it to the next one."""
        if self.meta["done"].get(f"means/{order}") is None:
            self.meta["done"][f"means/{order}"] = count
        save_meta(self.out, self.meta)
        remove_running_mean(inside(self.out, *layout.work(order), folder=True))
        remove_empty(self.out.joinpath(*layout.work()))

    def singles(self, order, images, batch_size) -> None:
        """The scan input of every block for the single images, and the blocks' parameters."""
        from jaxmamba.attention.extract import block_params
        from jaxmamba.models.model import run_with_cache

        if not len(images):
            return
        out, model = self.out, self.models[order]
        digest = self.meta["orders"][[o["name"] for o in self.meta["orders"]].index(order)]["model"]
        for b in self.blocks:
            path = inside(out, *layout.op(digest, b.name))
            if not path.exists():
                params = block_params(model, b.name)
                op = {k: np.asarray(params[k], np.float32) for k in SCAN_PARAMS}
                buf = io.BytesIO()
                np.savez(buf, **op)  # type: ignore[arg-type]
                store.write_bytes_atomic(path, buf.getvalue())
        paths = {b.name: inside(out, *layout.single(order, b.name)) for b in self.blocks}
        if all(p.exists() for p in paths.values()):
            return
        self._wait("singles", order)
        some = f"{len(images)} single images" if len(images) > 1 else "1 single image"
        self._say(f"keeping the scan inputs of {some} ({order})")
        xs: dict[str, list[np.ndarray]] = {name: [] for name in self.names}
        table = route_table(model.config, images.shape[1:3], order)  # one program, all orders
        for i in range(0, len(images), batch_size):
            _, cache = run_with_cache(model, images[i : i + batch_size], order=table,
                                      blocks=self.names)  # fmt: skip
            for name in self.names:
                xs[name].append(self._class_last(np.asarray(cache[name]["x"], np.float32), 1))
        for name, path in paths.items():
            write_npy(path, np.concatenate(xs[name]))

    def embeddings(self, orders, methods, seed) -> None:
        out = self.out
        todo = [(o, b, m) for o in orders for b in self.blocks for m in methods
                if not inside(out, *layout.embedding(o, b.name, m)).exists()]  # fmt: skip
        bar = self._bar(len(todo), "embeddings")
        for o, b, m in todo:
            if bar is not None:
                bar.set_description(f"{METHOD_NAMES[m]} of {b.name} ({o}, L={b.length})")
            a = np.load(inside(out, *layout.mean(o, b.name)), mmap_mode="r")
            write_npy(inside(out, *layout.embedding(o, b.name, m)), embed(a, m, seed=seed))
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
                if not inside(out, *layout.stage_points(kind, o, s, m)).exists()]  # fmt: skip
        bar = self._bar(len(todo), "stage embeddings")
        for o, s, m, kind in todo:
            members = [b for b in self.blocks if b.stage == s]
            if bar is not None:
                what = "patches of" if kind == "joint" else "images x"
                bar.set_description(f"{METHOD_NAMES[m]} of the {what} {len(members)} blocks "
                                    f"of stage {s} ({o})")  # fmt: skip
            if kind == "joint":
                maps = {b.name: np.load(inside(out, *layout.mean(o, b.name)))
                        for b in members}  # fmt: skip
                xy, _ = embed_joint(maps, m, seed=seed)
            else:
                xy = embed(self._pooled(o, members), m, seed=seed)
            write_npy(inside(out, *layout.stage_points(kind, o, s, m)), xy)
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
                rows.append(pool_map(a, b.grid[0], b.grid[1], cls=b.cls is not None).reshape(-1))
        return np.stack(rows)

    def findings(self, orders, seed) -> None:
        """The findings of each order's mean maps
        (:func:`jaxmamba.attention.findings.findings_of_maps`), with the image-block
        distinctness of the pooled single-image maps, stored as
        :func:`jaxmamba.study.schema.order_findings` says."""
        from jaxmamba.attention.findings import depth_halves, findings_of_maps, too_few_patches

        findings = self.meta.setdefault("findings", {})
        n = len(self.meta["single_images"])
        vim = self.tokens is not None
        for o in orders:
            if o in findings:
                continue
            maps = {b.name: np.load(inside(self.out, *layout.mean(o, b.name)))
                    for b in self.blocks}  # fmt: skip
            routes = {b.name: block_routes(o, b) for b in self.blocks}
            if vim:  # the patch-to-patch part; the path and its reverse without the class token
                m = self.blocks[0].grid[0] * self.blocks[0].grid[1]
                maps = {k: v[:m, :m] for k, v in maps.items()}
                routes = {k: np.stack([r[r != m] for r in v]) for k, v in routes.items()}
            image_maps = {b.name: np.zeros((min(n, 1), 1)) for b in self.blocks}  # no finding
            for s in sorted({b.stage for b in self.blocks}):
                members = [b for b in self.blocks if b.stage == s]
                if n > 1 and len(members) > 1 and not too_few_patches(members[0].grid):
                    x = self._pooled(o, members)  # block-major: n rows per block
                    image_maps.update({b.name: x[j * n : (j + 1) * n]
                                       for j, b in enumerate(members)})  # fmt: skip
            found = findings_of_maps(
                maps, {b.name: b.grid for b in self.blocks},
                routes, image_maps=image_maps, seed=seed,
            )  # fmt: skip
            if vim:
                found["depth"] = depth_halves(found["blocks"])
            findings[o] = order_findings(found).to_json()
            save_meta(self.out, self.meta)


SCAN_PARAMS = ("x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds")


def compile_forward(model, shape: tuple, order, capture: frozenset) -> None:
    """Compile (not run) the forward :meth:`Phases.singles` runs on a batch of ``shape``."""
    import jax.numpy as jnp

    from jaxmamba.models.model import apply

    apply.lower(model, jnp.zeros(shape, jnp.float32), order, None, capture).compile()


def compile_cache() -> str | None:
    """The folder of JAX's persistent compilation cache, or None when it is off."""
    import jax

    return jax.config.jax_compilation_cache_dir or None  # type: ignore[attr-defined]


METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
