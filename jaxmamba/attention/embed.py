"""Embed the patches of a block in 2-D by their attention rows (the paper's Scatterplot view).

Each patch p of a block with map ``attn (L, L)`` is the point ``attn[p]`` in R^L: the attention it
pays to every source patch. Patches that attend alike land together. Rows are used as they are
(no standardisation), so large-magnitude patterns dominate, as in the reference study.

* ``"pca"``: scikit-learn PCA (``svd_solver="auto"``: exact SVD for up to 500 patches, a seeded
  randomized SVD beyond; signs fixed by scikit-learn).
* ``"tsne"`` / ``"umap"``: PCA to at most ``pca_dims`` dimensions first, then t-SNE (PCA
  initialisation) or UMAP, both seeded: the same ``seed`` gives identical output.
* t-SNE is openTSNE's (a well-kept library built for speed) with its Barnes-Hut gradients, which
  at the few thousand points of a block measured fastest of scikit-learn's Barnes-Hut and
  openTSNE's FFT variant (``python benchmarks/reductions.py``; figures in
  ``benchmarks/results/reductions_cpu.md``).

Small sets: t-SNE's perplexity is clipped to ``(n - 1) / 3`` below ``3·perplexity + 1`` points,
UMAP's ``n_neighbors`` to ``n - 1``; with ``n <= n_components + 1`` points PCA already places
them exactly (isometrically), so t-SNE/UMAP fall back to PCA there. Missing components (fewer
points or features than ``n_components``) are zero.

Joint mode (:func:`embed_joint`) stacks the rows of several blocks in one embedding. Rows of
blocks with different L live in different spaces (their columns are different patch grids), and
resampling one grid onto another would invent a patch correspondence, so joint embeddings need
blocks of one L (same stage); others raise :class:`ReduceError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from jaxmamba.errors import ReduceError, require

__all__ = ["METHODS", "ReduceError", "embed", "embed_joint", "pca_variance"]

METHODS = ("pca", "tsne", "umap")


def _pca_class():
    return require("sklearn.decomposition", "plot", "PCA").PCA


def _tsne(z: np.ndarray, n_components: int, perplexity: float, seed: int) -> np.ndarray:
    # One thread: at a block's few thousand points two threads gained nothing (measured:
    # benchmarks/results/reductions_cpu.md); it is deterministic either way.
    openTSNE = require("openTSNE", "plot", "t-SNE")
    model = openTSNE.TSNE(
        n_components=n_components, perplexity=perplexity, initialization="pca",
        negative_gradient_method="bh", n_jobs=1, random_state=seed,
    )  # fmt: skip
    return np.asarray(model.fit(z), dtype=np.float32)


def _umap():
    umap = require("umap", "plot", "UMAP")
    return umap.UMAP


def _check_rows(x, what: str = "maps") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ReduceError(
            f"{what} must be one block's map (L, L) (or rows (n, F)), got shape {x.shape}; "
            "average or index the batch/route axes first"
        )
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ReduceError(f"{what} is empty: shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ReduceError(f"{what} contains {int(np.sum(~np.isfinite(x)))} NaN/inf values")
    return x


def _check_options(method: str, n_components: int, pca_dims: int) -> None:
    if method not in METHODS:
        raise ReduceError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(n_components, int | np.integer) or n_components < 1:
        raise ReduceError(f"n_components must be a positive int, got {n_components!r}")
    if not isinstance(pca_dims, int | np.integer) or pca_dims < n_components:
        raise ReduceError(f"pca_dims must be an int >= n_components, got {pca_dims!r}")


def _pca(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """PCA to ``dims`` columns, zero-padded when the data has fewer."""
    PCA = _pca_class()
    n, f = x.shape
    k = min(dims, n, f)
    out = np.zeros((n, dims))
    if n > 1:
        out[:, :k] = PCA(n_components=k, svd_solver="auto", random_state=seed).fit_transform(x)
    return out


def _embed(x: np.ndarray, method: str, n_components: int, seed: int, pca_dims: int) -> np.ndarray:
    n = x.shape[0]
    if method == "pca" or n <= n_components + 1:
        return _pca(x, n_components, seed).astype(np.float32)
    z = _pca(x, min(pca_dims, n, x.shape[1]), seed)
    if method == "tsne":
        return _tsne(z, n_components, min(30.0, (n - 1) / 3.0), seed)
    UMAP = _umap()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        model = UMAP(
            n_components=n_components, n_neighbors=min(15, n - 1), random_state=seed, n_jobs=1
        )
        return np.asarray(model.fit_transform(z), dtype=np.float32)


def embed(maps, method: str = "pca", *, n_components: int = 2, seed: int = 0, pca_dims: int = 100):
    """Embed the L patches of one block by their attention rows.

    Args:
      maps: ``(L, L)`` one block's map (row p = what patch p attends to), NumPy or JAX.
      method: ``"pca"``, ``"tsne"`` or ``"umap"``.
      n_components: output dimensions.
      seed: random seed; the same seed gives identical output.
      pca_dims: PCA dimensions before t-SNE/UMAP (also capped by L).

    Returns:
      ``(L, n_components)`` float32 coordinates, row p for patch p.

    >>> import numpy as np
    >>> embed(np.random.default_rng(0).random((16, 16))).shape
    (16, 2)
    """
    _check_options(method, n_components, pca_dims)
    return _embed(_check_rows(maps), method, int(n_components), int(seed), int(pca_dims))


def embed_joint(
    maps: Mapping[str, object],
    method: str = "pca",
    *,
    n_components: int = 2,
    seed: int = 0,
    pca_dims: int = 100,
):
    """Embed the patches of several blocks (all of one L) in one common space.

    Args:
      maps: ``{block name: (L, L)}``, every map of the same L (e.g. the blocks of one stage).
      method, n_components, seed, pca_dims: as :func:`embed`.

    Returns:
      ``(points (N·L, n_components) float32, labels (N·L,) str)``: the rows of the blocks in the
      mapping's order, ``labels[i]`` the block name of point i.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> pts, labels = embed_joint({"a": rng.random((9, 9)), "b": rng.random((9, 9))})
    >>> pts.shape, str(labels[8]), str(labels[9])
    ((18, 2), 'a', 'b')
    """
    _check_options(method, n_components, pca_dims)
    if not isinstance(maps, Mapping) or not maps:
        raise ReduceError("maps must be a non-empty mapping {block name: (L, L)}")
    rows = {name: _check_rows(m, f"maps[{name!r}]") for name, m in maps.items()}
    shapes = {name: r.shape for name, r in rows.items()}
    if len(set(shapes.values())) > 1:
        raise ReduceError(
            f"joint embedding needs maps of one shape (same L, e.g. blocks of one stage), "
            f"got {shapes}"
        )
    x = np.concatenate(list(rows.values()), axis=0)
    labels = np.concatenate([np.full(len(r), name, dtype=object) for name, r in rows.items()])
    pts = _embed(x, method, int(n_components), int(seed), int(pca_dims))
    return pts, labels.astype(str)


def pca_variance(maps, n_components: int = 2, *, seed: int = 0) -> np.ndarray:
    """Fraction of the rows' variance along each of the first ``n_components`` principal axes
    (the axes of :func:`embed` with ``"pca"``): for labelling a Scatterplot view's axes.

    >>> import numpy as np
    >>> x = np.outer(np.arange(6.0), [1.0, 2.0, 0.0])  # all variance on one line
    >>> pca_variance(x).round(3).tolist()
    [1.0, 0.0]
    """
    x = _check_rows(maps)
    PCA = _pca_class()
    k = min(n_components, x.shape[0], x.shape[1])
    out = np.zeros(n_components)
    if x.shape[0] > 1:
        pca = PCA(n_components=k, svd_solver="auto", random_state=seed).fit(x)
        out[:k] = pca.explained_variance_ratio_
    return out
