"""The reference study's findings as numbers: block distinctness, sequence locality, hierarchy.

"Visual Attention Exploration in Vision-Based Mamba Models" (arXiv 2502.20764) reports, from its
views, that (1) blocks in one stage have distinct attention patterns, (2) patches close in scan
order attend alike, and (3) early stages are local and spatial, late stages content dependent.
Each finding is one pure function of attention maps (NumPy in, Python float out):

* :func:`block_distinctness` — silhouette score of the block labels of the patches of several
  blocks (of one L) embedded jointly by their attention rows
  (:func:`jaxmamba.attention.embed.embed_joint`, the paper's Scatterplot view). Near 1: each block's
  patches form their own cluster; near or
  below 0: the blocks are indistinguishable.
* :func:`sequence_locality` — Spearman rank correlation, over patch pairs, between the distance
  of two patches in scan order and the distance between their attention rows. Positive: patches
  close in scan order attend alike.
* :func:`attention_distance` — attention-weighted mean spatial distance between a query patch
  and the patches it attends to, in patches (or a fraction of the grid diagonal);
  :func:`stage_hierarchy` averages it per stage. Small: local attention.

:func:`summarize` computes all three per block and per stage on a model's mean maps over images.

Maps are ``attn (L, L)`` in row-major spatial coordinates of an ``h x w`` patch grid (row p the
query patch, column q the source patch), as
:func:`jaxmamba.attention.extract.extract_attention` returns them (one image or a mean; index or
average the batch axis first). Routes are ``(K, L)`` (scan
position → spatial index, :func:`jaxmamba.make_routes`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from jaxmamba.errors import ConfigError, MetricsError, require
from jaxmamba.models.config import parse_block_name
from jaxmamba.models.vim_config import parse_layer_name

__all__ = [
    "MIN_PATCHES",
    "MetricsError",
    "attention_distance",
    "block_distinctness",
    "scan_distance",
    "sequence_locality",
    "silhouette",
    "stage_hierarchy",
    "summarize",
    "too_few_patches",
    "block_findings",
    "findings_of_maps",
    "image_block_distinctness",
    "BLOCK_MEASURES",
    "STAGE_MEASURES",
    "IMAGE_MEASURE",
]

MIN_PATCHES = 16  # a grid of fewer patches (the 2x2 stage 3 of a 64x64 input) gives no finding


def too_few_patches(grid) -> bool:
    """Whether an ``(h, w)`` grid has too few patches (under :data:`MIN_PATCHES`) for block
    distinctness, sequence locality or attention distance to mean anything: the views show
    "too few patches" there, not a number.

    >>> too_few_patches((2, 2)), too_few_patches((4, 4))
    (True, False)
    """
    h, w = grid
    return int(h) * int(w) < MIN_PATCHES


# ---- checks ------------------------------------------------------------------------------------


def _square_map(attn, what: str = "attn") -> np.ndarray:
    a = np.asarray(attn, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise MetricsError(
            f"{what} must be one block's map (L, L), got shape {a.shape}; "
            "index or average the batch/route axes first"
        )
    if not np.all(np.isfinite(a)):
        raise MetricsError(f"{what} contains {int(np.sum(~np.isfinite(a)))} NaN/inf values")
    return a


def _check_grid(h, w, l: int) -> tuple[int, int]:
    try:
        h, w = int(h), int(w)
    except (TypeError, ValueError):
        raise MetricsError(f"grid (h, w) must be two positive ints, got {(h, w)!r}") from None
    if h < 1 or w < 1 or h * w != l:
        raise MetricsError(f"grid {h}x{w} does not match a map of L = {l} patches")
    return h, w


def _check_routes(routes, l: int) -> np.ndarray:
    r = np.asarray(routes)
    if r.ndim == 1:
        r = r[None]
    if r.ndim != 2 or r.shape[1] != l or not np.issubdtype(r.dtype, np.integer):
        raise MetricsError(
            f"routes must be integer (K, L) or (L,) with L = {l}, got {r.dtype} {r.shape}"
        )
    ok = np.sort(r, axis=1) == np.arange(l)[None]
    if not ok.all():
        bad = int(np.flatnonzero(~ok.all(axis=1))[0])
        raise MetricsError(f"route {bad} is not a permutation of range({l})")
    return r


def _sklearn_silhouette():
    silhouette_score = require("sklearn.metrics", "plot", "block_distinctness").silhouette_score
    return silhouette_score


def _spearmanr():
    spearmanr = require("scipy.stats", "plot", "sequence_locality").spearmanr
    return spearmanr


# ---- finding 1: blocks in a stage are distinct -------------------------------------------------

SCALES = (None, "absmax")


def block_distinctness(
    maps: Mapping[str, object],
    *,
    method: str = "pca",
    seed: int = 0,
    n_components: int = 2,
    scale: str | None = "absmax",
) -> float:
    """Silhouette score of the block labels in a joint embedding of several blocks' rows.

    The rows of every map (one point per patch and block) are embedded together with
    :func:`jaxmamba.attention.embed.embed_joint`; the score is scikit-learn's
    ``silhouette_score`` of the block names as cluster labels (Euclidean, in the embedding). 1:
    every block's patches form a
    tight cluster apart from the others; about 0 or below: the blocks overlap (identical blocks
    score slightly below 0).

    Args:
      maps: ``{block name: (L, L)}``, at least two blocks, all of one L (e.g. one stage).
      method, seed, n_components: of the embedding (:func:`jaxmamba.attention.embed.embed`).
      scale: ``"absmax"`` (default) divides each map by its largest absolute value first, so
        that the score is about patterns, not about one block's larger magnitude; ``None`` uses
        the maps as they are (as the paper's Scatterplot view does).

    Returns:
      The silhouette score in [-1, 1].

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> left = np.repeat([[1.0] * 4 + [0.0] * 5], 9, axis=0)  # every row on columns 0-3
    >>> a = left + 0.1 * rng.random((9, 9))
    >>> b = left[:, ::-1] + 0.1 * rng.random((9, 9))  # every row on columns 5-8
    >>> distinct, same = block_distinctness({"a": a, "b": b}), block_distinctness({"a": a, "b": a})
    >>> round(distinct, 2), round(same, 2)
    (0.97, -0.11)
    """
    from jaxmamba.attention.embed import embed_joint

    if not isinstance(maps, Mapping) or len(maps) < 2:
        raise MetricsError("block_distinctness needs a mapping of at least two blocks' maps")
    if scale not in SCALES:
        raise MetricsError(f"scale must be one of {SCALES}, got {scale!r}")
    arrays = {}
    for name, m in maps.items():
        a = _square_map(m, f"maps[{name!r}]")
        if scale == "absmax":
            top = np.max(np.abs(a))
            a = a / top if top > 0 else a
        arrays[name] = a
    sizes = {a.shape[0] for a in arrays.values()}
    if len(sizes) > 1:
        raise MetricsError(f"all maps must have one L (blocks of one stage), got L = {sizes}")
    if sizes.pop() < 2:
        raise MetricsError("block_distinctness needs maps of at least 2 patches")
    points, labels = embed_joint(arrays, method, n_components=n_components, seed=seed)
    points = np.asarray(points, np.float64)
    if np.ptp(points, axis=0).max() == 0:  # all points coincide: no structure to separate
        return 0.0
    return float(_sklearn_silhouette()(points, labels, metric="euclidean"))


def silhouette(points, labels) -> float:
    """Silhouette score (Euclidean, scikit-learn) of ``labels`` for ``points (n, dims)``: how
    well the labelled groups separate, in [-1, 1].

    >>> import numpy as np
    >>> round(silhouette(np.array([[0.0], [0.1], [5.0], [5.1]]), ["a", "a", "b", "b"]), 2)
    0.98
    """
    points = np.asarray(points, np.float64)
    labels = np.asarray(labels)
    if points.ndim != 2 or len(points) != len(labels) or len(set(labels.tolist())) < 2:
        raise MetricsError("silhouette needs (n, dims) points and at least two labels, one each")
    if np.ptp(points, axis=0).max() == 0:
        return 0.0
    return float(_sklearn_silhouette()(points, labels, metric="euclidean"))


# ---- finding 2: patches close in scan order attend alike ---------------------------------------


def scan_distance(routes) -> np.ndarray:
    """Distance in scan order of every pair of patches: ``min_k |t_k(p) − t_k(q)|``.

    ``t_k(p)`` is the position at which route k visits patch p. With several routes, two patches
    are as close as the route that brings them closest (each route is a separate scan, so a pair
    adjacent on any route exchanges information directly there).

    Args:
      routes: ``(K, L)`` or one route ``(L,)``.

    Returns:
      ``(L, L)`` int array, symmetric, zero on the diagonal.

    >>> scan_distance([[2, 0, 1]]).tolist()
    [[0, 1, 1], [1, 0, 2], [1, 2, 0]]
    """
    r = np.asarray(routes)
    r = _check_routes(r, r.shape[-1] if r.ndim else 0)
    pos = np.argsort(r, axis=1)  # (K, L): t_k(p)
    return np.min(np.abs(pos[:, :, None] - pos[:, None, :]), axis=0)


def _pairs(l: int, max_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = l * (l - 1) // 2
    if n <= max_pairs:
        return np.triu_indices(l, k=1)
    rng = np.random.default_rng(seed)
    p = rng.integers(0, l, size=2 * max_pairs)
    q = rng.integers(0, l, size=2 * max_pairs)
    keep = p != q
    return p[keep][:max_pairs], q[keep][:max_pairs]


def sequence_locality(attn, routes, *, max_pairs: int = 20_000, seed: int = 0) -> float:
    """Spearman correlation between scan-order distance and attention-row distance of patches.

    Over patch pairs (p, q), p ≠ q, correlates :func:`scan_distance` ``min_k |t_k(p) − t_k(q)|``
    with ``‖A[p] − A[q]‖`` (Euclidean distance between the two rows). Positive: patches close in
    scan order attend alike. Pairs: all ``L (L − 1) / 2`` if at most ``max_pairs``, else
    ``max_pairs`` random pairs (with replacement) drawn by ``numpy.random.default_rng(seed)``.
    Invariant to scaling ``attn`` and to relabelling the patches (in ``attn`` and ``routes``
    alike).

    Args:
      attn: ``(L, L)`` one block's map.
      routes: ``(K, L)`` the routes it was scanned with, or one route ``(L,)``.
      max_pairs: the most pairs to use; seed: their sampling seed.

    Returns:
      Spearman's rho in [-1, 1]; NaN when undefined (L < 3, or a constant distance).

    >>> import numpy as np
    >>> t = np.arange(16.0)
    >>> smooth = np.exp(-np.subtract.outer(t, t) ** 2 / 8)  # row p a bump at scan position p
    >>> round(sequence_locality(smooth, np.arange(16)), 2)
    0.88
    """
    a = _square_map(attn)
    l = a.shape[0]
    d_scan = scan_distance(_check_routes(routes, l))
    if not isinstance(max_pairs, int | np.integer) or max_pairs < 1:
        raise MetricsError(f"max_pairs must be a positive int, got {max_pairs!r}")
    if l < 3:
        return math.nan
    p, q = _pairs(l, int(max_pairs), seed)
    rows = np.linalg.norm(a[p] - a[q], axis=1)
    scan = d_scan[p, q]
    if np.ptp(rows) == 0 or np.ptp(scan) == 0:
        return math.nan
    rho = _spearmanr()(scan, rows).statistic
    return float(rho)


# ---- finding 3: early stages are local ---------------------------------------------------------


def _grid_distance(h: int, w: int) -> np.ndarray:
    r, c = np.divmod(np.arange(h * w), w)
    return np.hypot(r[:, None] - r[None], c[:, None] - c[None])


def attention_distance(attn, h: int, w: int, *, normalize: bool = False) -> float:
    """Attention-weighted mean spatial distance ``Σ_pq |A_pq| d(p, q) / Σ_pq |A_pq|``.

    ``d(p, q)`` is the Euclidean distance between the patches' grid cells, in patches. With
    ``normalize``, divided by the grid diagonal ``√((h − 1)² + (w − 1)²)``, which makes grids of
    different size comparable (0 on a 1x1 grid). Invariant to scaling and to the sign of ``A``.
    For reference, uniform attention on an n x n grid gives about 0.52 n patches (0.37 of the
    diagonal for large n).

    Args:
      attn: ``(L, L)`` one block's map, ``L = h · w``, row-major.
      h, w: the block's patch grid.
      normalize: divide by the grid diagonal.

    Returns:
      The mean distance (in patches, or as a fraction of the diagonal).

    >>> import numpy as np
    >>> attention_distance(np.eye(4), 2, 2), attention_distance(np.ones((4, 4)), 2, 2)
    (0.0, 0.8535533905932737)
    """
    a = np.abs(_square_map(attn))
    h, w = _check_grid(h, w, a.shape[0])
    total = a.sum()
    if total == 0:
        raise MetricsError("attn is all zero: the attention-weighted distance is undefined")
    mean = float(np.sum(a * _grid_distance(h, w)) / total)
    if normalize:
        diag = math.hypot(h - 1, w - 1)
        return 0.0 if diag == 0 else mean / diag
    return mean


def _block_id(name: str) -> tuple[int, int]:
    """``(stage, index)`` of a VMamba block's name, ``(0, i)`` of a Vim layer's (``layers.i``:
    an isotropic model's layers are one stage)."""
    try:
        return parse_block_name(name)
    except ConfigError:
        pass
    try:
        return 0, parse_layer_name(name)
    except ConfigError:
        raise MetricsError(
            f"block maps must be named by block (layers.i.blocks.j) or Vim layer (layers.i), got "
            f"{name!r}"
        ) from None


def _grid_of(name: str, stage: int, l: int, grids) -> tuple[int, int]:
    if grids is None:
        n = math.isqrt(l)
        if n * n != l:
            raise MetricsError(f"{name}: L = {l} is no square; pass its grid in grids")
        return n, n
    for key in (name, stage, f"layers.{stage}"):
        if key in grids:
            h, w = grids[key]
            return _check_grid(h, w, l)
    raise MetricsError(f"grids has no entry for {name!r} (keys: block name, stage index)")


def stage_hierarchy(maps: Mapping[str, object], grids=None, *, normalize: bool = True) -> dict:
    """Mean :func:`attention_distance` of the blocks of every stage.

    Args:
      maps: ``{"layers.i.blocks.j": (L, L)}``.
      grids: ``{stage index or block name: (h, w)}``; ``None`` takes square grids ``√L x √L``.
      normalize: distances as a fraction of each grid's diagonal (default, so that stages of
        different grid sizes compare), else in patches of each stage.

    Returns:
      ``{"layers.i": mean distance}`` in stage order. Local early stages give small values.

    >>> import numpy as np
    >>> local = np.eye(16) + np.eye(16, k=1)  # each patch: itself and the next in row-major order
    >>> h = stage_hierarchy({"layers.0.blocks.0": local, "layers.1.blocks.0": np.ones((4, 4))})
    >>> {k: round(v, 3) for k, v in h.items()}
    {'layers.0': 0.163, 'layers.1': 0.604}
    """
    if not isinstance(maps, Mapping) or not maps:
        raise MetricsError("maps must be a non-empty mapping {'layers.i.blocks.j': (L, L)}")
    by_stage: dict[int, list[float]] = {}
    for name in sorted(maps, key=_block_id):
        stage, _ = _block_id(name)
        a = _square_map(maps[name], f"maps[{name!r}]")
        h, w = _grid_of(name, stage, a.shape[0], grids)
        by_stage.setdefault(stage, []).append(attention_distance(a, h, w, normalize=normalize))
    return {f"layers.{s}": float(np.mean(v)) for s, v in sorted(by_stage.items())}


# ---- all of it on a model ----------------------------------------------------------------------


BLOCK_MEASURES = ("attention_distance", "attention_distance_norm", "sequence_locality")
STAGE_MEASURES = ("block_distinctness", *BLOCK_MEASURES)
IMAGE_MEASURE = "image_block_distinctness"


def block_findings(attn, grid, routes, *, max_pairs: int = 20_000, seed: int = 0) -> dict:
    """The findings of one block's map: ``{measure: float}`` for :data:`BLOCK_MEASURES`
    (attention distance in patches and as a fraction of the grid diagonal, sequence locality).

    "No finding" is NaN, and only for its named conditions: a grid under :data:`MIN_PATCHES`
    patches (every measure), an all-zero map (the distances: their weights sum to 0), an
    undefined correlation (:func:`sequence_locality`).  Any other bad input raises.

    >>> import numpy as np
    >>> f = block_findings(np.eye(16), (4, 4), np.arange(16))
    >>> f["attention_distance"], f["attention_distance_norm"]
    (0.0, 0.0)
    >>> block_findings(np.eye(4), (2, 2), np.arange(4))["attention_distance"]  # too few patches
    nan
    """
    h, w = grid
    a = _square_map(attn)
    h, w = _check_grid(h, w, a.shape[0])
    if too_few_patches((h, w)):
        return dict.fromkeys(BLOCK_MEASURES, math.nan)
    out = dict.fromkeys(BLOCK_MEASURES[:2], math.nan)
    if np.any(a):  # an all-zero map weights no distance
        out["attention_distance"] = attention_distance(a, h, w)
        out["attention_distance_norm"] = attention_distance(a, h, w, normalize=True)
    out["sequence_locality"] = sequence_locality(a, routes, max_pairs=max_pairs, seed=seed)
    return out


def image_block_distinctness(image_maps: Mapping[str, object], *, seed: int = 0) -> float:
    """Silhouette of the block labels of single-image maps of several blocks: ``image_maps``
    is ``{block name: (n, F)}`` (one row per image, e.g. pooled maps of one stage), embedded
    together by PCA.  NaN with fewer than two blocks or two images per block.

    >>> import numpy as np
    >>> x = {"a": np.zeros((3, 4)), "b": np.ones((3, 4)) + np.eye(3, 4) * 0.1}
    >>> round(image_block_distinctness(x), 2)
    0.98
    """
    from jaxmamba.attention.embed import embed

    rows = [np.asarray(v, np.float64) for v in image_maps.values()]
    if len(rows) < 2 or any(r.ndim != 2 or len(r) < 2 for r in rows):
        return math.nan
    labels = np.repeat(list(image_maps), [len(r) for r in rows])
    return silhouette(embed(np.concatenate(rows), "pca", seed=seed), labels)


def findings_of_maps(
    maps: Mapping[str, object],
    grids: Mapping[str, tuple[int, int]],
    routes: Mapping[str, object],
    *,
    image_maps: Mapping[str, object] | None = None,
    method: str = "pca",
    seed: int = 0,
    max_pairs: int = 20_000,
) -> dict:
    """The findings of mean maps, per block and per stage: the one definition :func:`summarize`
    and a study folder (:mod:`jaxmamba.study`) both report.

    Args:
      maps: ``{"layers.i.blocks.j": (L, L)}``.
      grids: ``{block name: (h, w)}``; routes: ``{block name: (K, L)}`` (hard routes).
      image_maps: ``{block name: (n, F)}`` single-image maps (a study's pooled ones): adds
        :data:`IMAGE_MEASURE` to every stage (:func:`image_block_distinctness`).
      method, seed: of :func:`block_distinctness`; max_pairs, seed: of :func:`sequence_locality`.

    Returns:
      ``{"blocks": {name: {measure: float}}, "stages": {stage index: {measure: float}}}``
      (:data:`BLOCK_MEASURES`, :data:`STAGE_MEASURES`; stage values are means over the stage's
      blocks, NaN-skipping); NaN is "no finding" (:func:`block_findings`; block distinctness
      with one block or too few patches).

    >>> import numpy as np
    >>> m = {"layers.0.blocks.0": np.eye(16), "layers.0.blocks.1": np.ones((16, 16))}
    >>> f = findings_of_maps(m, dict.fromkeys(m, (4, 4)), dict.fromkeys(m, np.arange(16)))
    >>> list(f["stages"]), round(f["stages"][0]["attention_distance"], 3)  # mean of 0 and 2.008
    ([0], 1.004)
    """
    blocks: dict[str, dict] = {}
    per_stage: dict[int, list[str]] = {}
    for name in sorted(maps, key=_block_id):
        stage, _ = _block_id(name)
        blocks[name] = block_findings(maps[name], grids[name], routes[name],
                                      max_pairs=max_pairs, seed=seed)  # fmt: skip
        per_stage.setdefault(stage, []).append(name)
    stages = {}
    for stage, members in sorted(per_stage.items()):
        few = too_few_patches(grids[members[0]])
        entry = {"block_distinctness": math.nan}
        if len(members) > 1 and not few:
            entry["block_distinctness"] = block_distinctness(
                {k: maps[k] for k in members}, method=method, seed=seed
            )
        for key in BLOCK_MEASURES:
            entry[key] = _nanmean([blocks[k][key] for k in members])
        if image_maps is not None:
            entry[IMAGE_MEASURE] = math.nan
            if len(members) > 1 and not few:
                chosen = {k: image_maps[k] for k in members}
                entry[IMAGE_MEASURE] = image_block_distinctness(chosen, seed=seed)
        stages[stage] = entry
    return {"blocks": blocks, "stages": stages}


def summarize(
    model,
    images,
    *,
    order=None,
    blocks=None,
    batch_size: int = 64,
    method: str = "pca",
    seed: int = 0,
    max_pairs: int = 20_000,
) -> dict:
    """The three findings, per block and per stage, on ``model``'s mean maps over ``images``.

    Maps: :func:`jaxmamba.attention.mean.attention_mean` (the default aggregation of
    :func:`jaxmamba.attention.extract.extract_attention`) over ``images`` in batches of
    ``batch_size``.

    Args:
      model: a :class:`~jaxmamba.Model`.
      images: ``(N, H, W, 3)`` float images.
      order: the patch order to scan in (anything :func:`jaxmamba.as_order` takes; default
        ``"cross"``); with soft routes (:class:`~jaxmamba.SoftOrder`) sequence locality uses the
        nearest hard routes (:func:`jaxmamba.orders.soft.hard_routes`).
      blocks: block selection as in ``extract_attention`` (default all).
      batch_size: images per extraction.
      method, seed: of :func:`block_distinctness`; max_pairs, seed: of :func:`sequence_locality`.

    Returns:
      ``{"order": name ("soft" for soft routes), "images": N, "blocks": {name: {"grid":
      [h, w], "attention_distance": patches, "attention_distance_norm": fraction of the
      diagonal, "sequence_locality": rho}},
      "stages": {"layers.i": {"grid", "blocks": count, "block_distinctness" (NaN with one
      block), "attention_distance", "attention_distance_norm", "sequence_locality"
      (means over the stage's blocks, NaN-skipping)}}}``: :func:`findings_of_maps` with
      the grids added; NaN is "no finding" (e.g. every measure of a grid under
      :data:`MIN_PATCHES` patches).  A Vim model: per layer ``layers.i`` on the patch-to-patch
      part of its map (the CLS token's row and column left out; sequence locality along the
      order's path and its reverse), its layers one stage ``"layers"``, and ``"depth"``: the
      measures' means over the earlier and the later half of the layers
      (:func:`depth_halves`), the hierarchy of an isotropic model.

    >>> import jax.numpy as jnp, jaxmamba
    >>> m = jaxmamba.create_model("vmamba_test")
    >>> s = summarize(m, jnp.ones((2, 64, 64, 3)), order="spiral")
    >>> sorted(s["stages"]), s["stages"]["layers.2"]["blocks"], s["images"]
    (['layers.0', 'layers.1', 'layers.2', 'layers.3'], 2, 2)
    """
    from jaxmamba.attention.mean import attention_mean
    from jaxmamba.models.model import check_images, model_order, select_blocks
    from jaxmamba.models.vim_config import VimConfig, patch_token_index
    from jaxmamba.orders import Order
    from jaxmamba.orders.soft import hard_routes

    check_images(model.config, images)
    if batch_size < 1:
        raise MetricsError(f"batch_size must be >= 1, got {batch_size}")
    order = model_order(model.config, order)
    names = select_blocks(model.config, blocks)
    n, height, width = images.shape[:3]
    batches = [images[i : i + batch_size] for i in range(0, n, batch_size)]
    mean = attention_mean(model, batches, order=order, blocks=names, progress=False)
    maps, grids, hard = {}, {}, {}
    vim = isinstance(model.config, VimConfig)
    for name in names:
        stage, _ = _block_id(name)
        grids[name] = model.config.stage_grid(stage, height, width)
        maps[name] = np.asarray(mean[name], np.float64)
        if vim:  # the patch-to-patch part, in row-major patches; the path and its reverse
            tokens = patch_token_index(model.config)
            maps[name] = maps[name][np.ix_(tokens, tokens)]
            routes = order.routes(*grids[name])
            path = (routes if isinstance(order, Order) else hard_routes(routes))[0]
            hard[name] = np.stack([path, path[::-1]])
            continue
        hard[name] = order.routes(*grids[name])
        if not isinstance(order, Order):  # soft routes: the nearest hard ones
            hard[name] = hard_routes(hard[name])
    found = findings_of_maps(maps, grids, hard, method=method, seed=seed, max_pairs=max_pairs)
    out_blocks = {k: {"grid": list(grids[k]), **v} for k, v in found["blocks"].items()}
    stages = {}
    for stage, entry in found["stages"].items():
        members = [k for k in names if _block_id(k)[0] == stage]
        key = "layers" if vim else f"layers.{stage}"
        stages[key] = {"grid": list(grids[members[0]]), "blocks": len(members), **entry}
    out = {"order": order.name, "images": int(n), "blocks": out_blocks, "stages": stages}
    if vim:
        out["depth"] = depth_halves(found["blocks"])
    return out


def depth_halves(blocks: Mapping[str, Mapping[str, float]]) -> dict:
    """An isotropic model's hierarchy: the mean of each block measure over the earlier and the
    later half of its layers (``{"early": {measure: value}, "late": ...}``; with an odd count
    the middle layer goes to the later half), where a hierarchical model compares stages.

    >>> d = depth_halves({f"layers.{i}": {"attention_distance": float(i)} for i in range(4)})
    >>> d["early"]["attention_distance"], d["late"]["attention_distance"]
    (0.5, 2.5)
    """
    order = sorted(blocks, key=_block_id)
    half = len(order) // 2
    parts = {"early": order[:half], "late": order[half:]}
    measures = sorted({k for v in blocks.values() for k in v})
    return {
        part: {k: _nanmean([blocks[n].get(k, math.nan) for n in names]) for k in measures}
        for part, names in parts.items()
    }


def _nanmean(values) -> float:
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan
