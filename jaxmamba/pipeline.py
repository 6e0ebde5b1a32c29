"""The pipeline for any checkpoint: extract, average, reduce, plot, and write the explorer.

``run(model, images, display, out_dir, ...)`` is what ``jaxmamba demo`` (the embedded default
model on the bundled digits) and ``jaxmamba explore`` (any checkpoint and real images) call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxmamba.aggregate import attention_mean
from jaxmamba.config import parse_block_name
from jaxmamba.model import Model, select_blocks

__all__ = ["run"]


def _batches(images: np.ndarray, batch_size: int):
    for i in range(0, len(images), batch_size):
        yield images[i : i + batch_size]


def run(
    model: Model,
    images: np.ndarray,
    display: np.ndarray,
    out_dir: str | Path,
    *,
    orders: Sequence[str] = ("cross",),
    blocks=None,
    methods: Sequence[str] = ("pca", "tsne"),
    batch_size: int = 32,
    progress: bool = True,
    seed: int = 0,
) -> dict:
    """Average the attention of ``model`` over ``images`` and write figures and the explorer.

    Args:
      model: a :class:`~jaxmamba.Model`.
      images: ``(N, H, W, 3)`` normalised model inputs; display: ``(N, H, W, 3)`` for showing.
      out_dir: output folder (created).
      orders: scan orders to extract with (the first is the main one).
      blocks: block selection (see :func:`jaxmamba.select_blocks`); default every block.
      methods: reductions for the scatterplots and the explorer (``pca``, ``tsne``, ``umap``).

    Returns:
      ``{"figures": [paths], "explorer": path, "seconds": float, "images": N}``.
    """
    from jaxmamba import explorer, plots, reduce

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = select_blocks(model.config, blocks)
    grids = {n: model.config.block(n, images.shape[1:3]).grid for n in names}
    means = {}
    for order in orders:
        m = attention_mean(
            model, _batches(images, batch_size), order=order, blocks=names, route_mode="each",
            progress=progress, total=len(images),
        )  # fmt: skip
        means[order] = {n: np.asarray(m[n]) for n in names}  # (K, L, L) per block
    main = orders[0]
    summed = {n: v.sum(axis=0) for n, v in means[main].items()}
    coords = {n: {} for n in names}
    for method in methods:
        for n in names:
            coords[n][method] = reduce.embed(summed[n], method, seed=seed)
    figures = []
    # Scatterplot view of the last block of the first stage (local, spatial) and of the last stage.
    stage0 = parse_block_name(names[0])[0]
    first = [n for n in names if parse_block_name(n)[0] == stage0][-1]
    picks = [first] + ([names[-1]] if names[-1] != first else [])
    from jaxmamba.orders import make_routes

    for n in picks:
        h, w = grids[n]
        for color_by in ("row", "scan"):
            fig = plots.scatter(
                coords[n][methods[0]], h, w, color_by=color_by, routes=make_routes(main, h, w),
                title=f"{n}: {methods[0].upper()} of attention rows, coloured by {color_by}",
            )  # fmt: skip
            figures.append(plots.save(fig, out / f"scatter_{n}_{color_by}.png"))
    h, w = grids[first]
    centre = (h // 2) * w + w // 2
    fig = plots.patch_view(
        summed[first], h, w, centre, image=display[0], title=f"{first}: patch view"
    )
    figures.append(plots.save(fig, out / f"patch_view_{first}.png"))
    fig = plots.overview(summed, grids, image=display[0])
    figures.append(plots.save(fig, out / "overview.png"))
    if len(orders) > 1:
        fig = plots.compare_orders(
            {o: means[o][first].sum(axis=0) for o in orders}, h, w, centre, image=display[0]
        )
        figures.append(plots.save(fig, out / f"compare_orders_{first}.png"))
    data = explorer.explorer_data(
        {
            o: {
                n: {"route_attn": means[o][n], "grid": grids[n],
                    **({"coords": coords[n]} if o == main else {})}
                for n in names
            }
            for o in orders
        },
        images={f"image {i}": display[i] for i in range(min(4, len(display)))},
        methods=methods,
        seed=seed,
        title=f"jaxmamba: {model.config.describe()}, mean over {len(images)} images",
    )  # fmt: skip
    page = explorer.write_explorer(out / "explorer.html", data)
    summary = {
        "figures": [str(f) for f in figures],
        "explorer": str(page),
        "images": int(len(images)),
        "orders": list(orders),
        "blocks": list(names),
        "model": model.config.describe(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
