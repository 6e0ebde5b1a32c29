"""The static figures of a study (matplotlib PNGs in ``STUDY/figures``), for papers and READMEs.

For every reduction the study keeps, the Scatterplot view of the last block of the first stage
(local, spatial) and of the last block (content dependent), coloured by grid row and by scan
position; the Patch view of the centre patch of that first-stage block; the stage × block
overview; and, with several orders, the same block and patch in every order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxmamba import plots
from jaxmamba.study import Study

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

    >>> import numpy as np, tempfile, jaxmamba
    >>> from jaxmamba.study import write_study
    >>> x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    >>> s = write_study(tempfile.mkdtemp() + "/s", jaxmamba.create_model("vmamba_test"), x,
    ...                 orders=["cross", "spiral"], blocks=[0, 3], progress=False)
    >>> sorted(p.name for p in write_figures(s))[:2]
    ['compare_orders_layers.0.blocks.0.png', 'overview_cross.png']
    """
    study = study if isinstance(study, Study) else Study(study)
    out = Path(out) if out is not None else study.path / "figures"
    main = study.orders[0]
    first_stage = study.blocks[0].stage
    first = [b for b in study.blocks if b.stage == first_stage][-1]
    picks = [first] + ([study.blocks[-1]] if study.blocks[-1] != first else [])
    image = _display(study, 0)
    image_name = study.meta["images"][0]["name"]
    n = study.count
    figures = []
    for method in study.methods:
        for b in picks:
            h, w = b.grid
            xy = study.coords(main, b.name, method)
            for color_by, label in (("row", "grid row"), ("scan", "scan position")):
                fig = plots.scatter(
                    xy, h, w, color_by=color_by, routes=study.routes(main, b.name),
                    title=f"{b.name}, order {main}: {_NAMES[method]} of the {h * w} patches' "
                    f"attention rows, coloured by {label}",
                )  # fmt: skip
                figures.append(plots.save(fig, out / f"scatter_{method}_{b.name}_{color_by}.png"))
    h, w = first.grid
    centre = (h // 2) * w + w // 2
    a = np.asarray(study.map(main, first.name))
    fig = plots.patch_view(
        a, h, w, centre, image=image,
        title=f"{first.name}, order {main}: what patch ({h // 2}, {w // 2}) attends to\n"
        f"(mean over {n} images; drawn over {image_name})",
    )  # fmt: skip
    figures.append(plots.save(fig, out / f"patch_view_{first.name}.png"))
    maps = {b.name: np.asarray(study.map(main, b.name)) for b in study.blocks}
    fig = plots.overview(maps, {b.name: b.grid for b in study.blocks}, image=image)
    figures.append(plots.save(fig, out / f"overview_{main}.png"))
    if len(study.orders) > 1:
        fig = plots.compare_orders(
            {o: np.asarray(study.map(o, first.name)) for o in study.orders}, h, w, centre,
            image=image,
        )  # fmt: skip
        figures.append(plots.save(fig, out / f"compare_orders_{first.name}.png"))
    return figures
