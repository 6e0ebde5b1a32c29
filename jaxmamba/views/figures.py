"""The static figures of a study (matplotlib PNGs in ``STUDY/figures``), for papers and READMEs.

For every reduction the study keeps, the Scatterplot view of the last block of the first stage
(local, spatial) and of the last block (content dependent), coloured by grid row and by scan
position; the Patch view of the centre patch of that first-stage block; the stage × block
overviews of the mean attention each patch receives and of what the centre patch attends to;
and, with several orders, the same block and patch in every order.

A Vim study adds the class-token view (what the class token reads from each patch) of its
last layer and its overview over the layers; its patch views, scatterplots and overviews show
the patches (the class token left out, as each title says).

The heat maps use the figure helpers' defaults (:mod:`jaxmamba.views.plots`): a symlog colour scale
(linear below 1e-3 × max, ticks at decades) computed without the selected patch, which is
outlined; the study's first image under the maps in grey. The overview of the attention each
patch receives uses the rank scale instead: a column mean spans few decades, so on the log scale
nearly every patch falls in the top decade and only the sign shows. Every title names the block, the
order's model (its description and digest) and the image drawn under the map.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxmamba.attention import embed as reduce
from jaxmamba.storage import store
from jaxmamba.study import Study
from jaxmamba.views import plots, scatter_plot

__all__ = ["write_figures"]

_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def _display(study: Study, index: int = 0) -> np.ndarray:
    from io import BytesIO

    from jaxmamba.errors import require

    Image = require("PIL.Image", "plot", "figures")
    with Image.open(BytesIO(study.image_png(index))) as im:
        return np.asarray(im.convert("RGB"))


def write_figures(
    study: Study | str | os.PathLike, out: str | os.PathLike | None = None
) -> list[Path]:
    """Write the figures of ``study`` into ``out`` (default ``STUDY/figures``); their paths.

    Every figure is rendered first; then, before any is written, every path is checked: no
    symbolic link (nor special file) below the study folder, or below ``out`` when given (``out``
    itself may be a link), is written through
    (:class:`~jaxmamba.errors.CheckpointError` naming it).

    >>> import numpy as np, tempfile, jaxmamba
    >>> from jaxmamba.study import write_study
    >>> x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    >>> s = write_study(tempfile.mkdtemp() + "/s", jaxmamba.create_model("vmamba_test"), x,
    ...                 orders=["cross", "spiral"], blocks=[0, 3], progress=False)
    >>> sorted(p.name for p in write_figures(s))[:3]
    ['compare_orders_layers.0.blocks.0.png', 'overview_centre_cross.png', 'overview_cross.png']
    """
    study = study if isinstance(study, Study) else Study(study)
    root, sub = (Path(out), ()) if out is not None else (study.path, ("figures",))
    store.inside(root, *sub, folder=True)  # refused before anything is rendered
    rendered = _render(study)
    paths = [store.inside(root, *sub, name) for name in rendered]
    for path, data in zip(paths, rendered.values(), strict=True):
        store.write_bytes_atomic(path, data)
    return paths


def _model(study: Study, order: str) -> str:
    """``model <description> [<digest>], <source>`` of the model an order's maps come from."""
    digest = study.info.order(order).model
    entry = study.info.models[digest]
    text = f"model {entry.description or 'unnamed'} [{digest}]"
    return text + (f", {entry.source}" if entry.source else "")


def _per_order(study: Study) -> str:
    """The models of the orders, said once when they differ only in their weights."""
    digests = {o.name: o.model for o in study.info.orders}
    texts = {d: study.info.models[d].description or "unnamed" for d in digests.values()}
    if len(set(texts.values())) == 1:
        listed = ", ".join(f"{o} [{d}]" for o, d in digests.items())
        return f"one trained model per order, each {next(iter(texts.values()))}: {listed}"
    return "one trained model per order: " + "; ".join(
        f"{o}: {_model(study, o)}" for o in study.orders)  # fmt: skip


def _patch_part(block, a: np.ndarray) -> np.ndarray:
    """The patch-to-patch part of a map (a Vim layer's, class-last, without the class token)."""
    m = block.grid[0] * block.grid[1]
    return a[:m, :m] if block.cls is not None else a


def _patch_routes(block, routes: np.ndarray) -> np.ndarray:
    """The routes over the patches only (a Vim layer's without the class token)."""
    if block.cls is None:
        return routes
    return np.stack([r[r != block.cls] for r in routes])


def _render(study: Study) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` of the figures of ``study``."""
    main = study.orders[0]
    vim = study.blocks[0].cls is not None  # Vim layers: class-last maps
    first_stage = study.blocks[0].stage
    first = [b for b in study.blocks if b.stage == first_stage][-1]
    picks = [first] + ([study.blocks[-1]] if study.blocks[-1] != first else [])
    image = _display(study, 0)
    image_name = study.info.images[0].name
    n = study.count
    mean = f"mean over {n} images" if n > 1 else "1 image"
    under = f"drawn over image 0: {image_name}"
    figures = {}
    models = {o.model for o in study.info.orders}
    per_order = len(models) > 1  # one trained model per order
    for method in study.methods:
        for b in picks:
            h, w = b.grid
            xy = study.coords(main, b.name, method)[: h * w]  # a class token's point left out
            labels = None
            if method == "pca":
                var = reduce.pca_variance(np.asarray(study.map(main, b.name)), seed=study.info.seed)
                labels = (f"PC 1 ({var[0]:.0%} of variance)", f"PC 2 ({var[1]:.0%})")
            rows = "rows" if not vim else "rows over all tokens (the class token's point not drawn)"
            for color_by, label in (("row", "grid row"), ("scan", "scan position")):
                fig = scatter_plot.scatter(
                    xy, h, w, color_by=color_by,
                    routes=_patch_routes(b, study.routes(main, b.name)),
                    title=f"{b.name}, order {main}: {_NAMES[method]} of the {h * w} patches' "
                    f"mean attention {rows} ({n} images), coloured by {label}; "
                    f"{_model(study, main)}",
                    axis_labels=labels,
                )  # fmt: skip
                figures[f"scatter_{method}_{b.name}_{color_by}.png"] = plots.png(fig)
    h, w = first.grid
    centre = (h // 2) * w + w // 2
    a = np.asarray(study.map(main, first.name))
    among = " among the patches (the class token left out)" if vim else ""
    fig = plots.patch_view(
        _patch_part(first, a), h, w, centre, image=image, figsize=(6, 6.2),
        title=f"{first.name} ({h}x{w}), order {main}: what patch ({h // 2}, {w // 2}) attends to"
        f"{among} ({mean}; {under}); {_model(study, main)}",
    )  # fmt: skip
    figures[f"patch_view_{first.name}.png"] = plots.png(fig)
    maps = {b.name: np.asarray(study.map(main, b.name)) for b in study.blocks}
    grids = {b.name: b.grid for b in study.blocks}
    size = 2.6 if not vim else 2.0
    fig = plots.overview(
        maps, grids, image=image, panel_size=size, scale="rank", cls=vim,
        title=f"Order {main}: mean attention each patch receives (column mean{among}), {mean}, "
        f"{under}; {_model(study, main)}",
    )  # fmt: skip
    figures[f"overview_{main}.png"] = plots.png(fig)
    fig = plots.overview(
        maps, grids, stat="centre", image=image, panel_size=size, cls=vim,
        title=f"Order {main}: what the centre patch attends to in each block{among}, {mean}, "
        f"{under}; {_model(study, main)}",
    )  # fmt: skip
    figures[f"overview_centre_{main}.png"] = plots.png(fig)
    if vim:
        last = study.blocks[-1]
        fig = plots.class_token_view(
            np.asarray(study.map(main, last.name)), h, w, image=image, figsize=(6, 6.2),
            title=f"{last.name} ({h}x{w}), order {main}: what the class token reads from each "
            f"patch ({mean}; {under}); {_model(study, main)}",
        )  # fmt: skip
        figures[f"class_token_{last.name}.png"] = plots.png(fig)
        fig = plots.overview(
            maps, grids, stat="cls", image=image, panel_size=size, cls=True,
            title=f"Order {main}: what the class token reads from each patch in each layer, "
            f"{mean}, {under}; {_model(study, main)}",
        )  # fmt: skip
        figures[f"overview_class_token_{main}.png"] = plots.png(fig)
    if len(study.orders) > 1:
        if per_order:
            who = _per_order(study)
        else:
            who = f"one model scanned in each order, {_model(study, main)}"
        fig = plots.compare_orders(
            {o: _patch_part(first, np.asarray(study.map(o, first.name))) for o in study.orders},
            h, w, centre,
            image=image, panel_size=3.4,
            title=f"{first.name} ({h}x{w}): what patch ({h // 2}, {w // 2}) attends to in each "
            f"order ({mean}; {under}); {who}",
        )  # fmt: skip
        figures[f"compare_orders_{first.name}.png"] = plots.png(fig)
    return figures
