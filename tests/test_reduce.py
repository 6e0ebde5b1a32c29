"""Tests of jaxmamba.attention.embed: patch embeddings by attention rows."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from jaxmamba.attention.embed import METHODS, ReduceError, embed, embed_joint


def planted(h: int = 4, w: int = 8, noise: float = 0.02, seed: int = 0):
    """(L, L) map whose top half attends to the left columns, the bottom half to the right ones."""
    rng = np.random.default_rng(seed)
    l = h * w
    labels = (np.arange(l) // w >= h // 2).astype(int)
    left = (np.arange(l) % w < w // 2).astype(float)
    rows = np.where(labels[:, None] == 0, left[None], 1.0 - left[None])
    return rows / rows.sum(1, keepdims=True) + noise * rng.random((l, l)), labels


def silhouette(points, labels) -> float:
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(points, labels))


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_shape_dtype_and_planted_clusters(method):
    attn, labels = planted()
    pts = embed(attn, method)
    assert pts.shape == (32, 2) and pts.dtype == np.float32
    assert np.all(np.isfinite(pts))
    assert silhouette(pts, labels) > 0.5


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_same_seed_same_output(method):
    attn, _ = planted(seed=1)
    np.testing.assert_array_equal(embed(attn, method, seed=3), embed(attn, method, seed=3))


def test_pca_is_the_top_principal_plane():
    attn, _ = planted()
    pts = embed(attn, "pca").astype(np.float64)
    x = attn - attn.mean(0)
    s = np.linalg.svd(x, compute_uv=False)
    np.testing.assert_allclose(np.linalg.svd(pts, compute_uv=False), s[:2], rtol=1e-4)


def test_n_components_and_jax_input():
    import jax.numpy as jnp

    attn, _ = planted()
    assert embed(jnp.asarray(attn), "pca", n_components=3).shape == (32, 3)


def test_small_sets():
    rng = np.random.default_rng(0)
    assert embed(rng.random((6, 6)), "tsne").shape == (6, 2)  # perplexity clipped to 5/3
    three = rng.random((3, 3))
    np.testing.assert_array_equal(embed(three, "tsne"), embed(three, "pca"))  # exact already
    np.testing.assert_array_equal(embed(rng.random((1, 1)), "tsne"), np.zeros((1, 2)))
    assert embed(rng.random((2, 2)), "pca").shape == (2, 2)


def test_joint_labels_and_order():
    a, _ = planted(seed=0)
    b, _ = planted(seed=1)
    pts, labels = embed_joint({"layers.1.blocks.0": a, "layers.1.blocks.1": b}, "pca")
    assert pts.shape == (64, 2)
    assert list(labels[:32]) == ["layers.1.blocks.0"] * 32
    assert list(labels[32:]) == ["layers.1.blocks.1"] * 32
    # the same map twice: both copies land on the same points
    pts, _ = embed_joint({"x": a, "y": a}, "pca")
    np.testing.assert_allclose(pts[:32], pts[32:], atol=1e-5)


def test_joint_needs_one_L():
    with pytest.raises(ReduceError, match="same L"):
        embed_joint({"a": np.eye(16), "b": np.eye(4)})
    with pytest.raises(ReduceError, match="non-empty"):
        embed_joint({})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"maps": np.eye(4), "method": "lda"}, "method must be one of"),
        ({"maps": np.ones((2, 4, 4))}, r"\(L, L\)"),
        ({"maps": np.full((4, 4), np.nan)}, "NaN"),
        ({"maps": np.eye(4), "n_components": 0}, "n_components"),
        ({"maps": np.eye(4), "pca_dims": 1}, "pca_dims"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ReduceError, match=match):
        embed(**kwargs)
    assert issubclass(ReduceError, ValueError)


def test_missing_umap_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ImportError, match=r"jaxmamba\[plot\]"):
        embed(np.random.default_rng(0).random((8, 8)), "umap")


@pytest.mark.slow
def test_umap_shape_determinism_clusters():
    """~25 s on a cold numba cache (JIT of umap-learn), hence slow."""
    attn, labels = planted()
    t = time.time()
    pts = embed(attn, "umap", seed=0)
    assert pts.shape == (32, 2)
    np.testing.assert_array_equal(pts, embed(attn, "umap", seed=0))
    assert silhouette(pts, labels) > 0.5
    print(f"umap: {time.time() - t:.1f} s")


def test_methods_constant():
    assert METHODS == ("pca", "tsne", "umap")
