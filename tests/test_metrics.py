"""Metrics of the paper's findings: planted structures give the expected numbers."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmamba
from jaxmamba.attention import findings as M
from jaxmamba.attention.findings import MetricsError


def _grid_dist(h, w):
    r, c = np.divmod(np.arange(h * w), w)
    return np.hypot(r[:, None] - r[None], c[:, None] - c[None])


# ---- attention distance ------------------------------------------------------------------------


def test_attention_distance_local_vs_global():
    h = w = 8
    d = _grid_dist(h, w)
    local = (d <= 1).astype(float)  # self and 4-neighbours
    global_ = np.ones((64, 64))
    far = (d >= 6).astype(float)
    a_local = M.attention_distance(local, h, w)
    a_global = M.attention_distance(global_, h, w)
    assert a_local < 1.0 < a_global < M.attention_distance(far, h, w)
    assert M.attention_distance(np.eye(64), h, w) == 0.0
    # the exact value of the 4-neighbourhood: 4 corners·2 + 24 edges·3 + 36 inner·4 neighbours
    neighbours = 4 * 2 + 24 * 3 + 36 * 4
    assert math.isclose(a_local, neighbours / (neighbours + 64))


def test_attention_distance_matches_a_direct_loop():
    rng = np.random.default_rng(0)
    h, w = 3, 5
    a = rng.standard_normal((15, 15))
    num = den = 0.0
    for p in range(15):
        for q in range(15):
            (rp, cp), (rq, cq) = divmod(p, w), divmod(q, w)
            num += abs(a[p, q]) * math.hypot(rp - rq, cp - cq)
            den += abs(a[p, q])
    assert math.isclose(M.attention_distance(a, h, w), num / den, rel_tol=1e-12)
    diag = math.hypot(h - 1, w - 1)
    assert math.isclose(M.attention_distance(a, h, w, normalize=True), num / den / diag)


def test_attention_distance_invariances():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((12, 12))
    ref = M.attention_distance(a, 3, 4)
    assert math.isclose(M.attention_distance(-3.0 * a, 3, 4), ref)
    assert math.isclose(M.attention_distance(jnp.asarray(a, jnp.float32), 3, 4), ref, rel_tol=1e-6)
    # transposing the grid (patch relabelling by the transpose) keeps every distance
    perm = np.arange(12).reshape(3, 4).T.ravel()
    assert math.isclose(M.attention_distance(a[np.ix_(perm, perm)], 4, 3), ref)
    assert M.attention_distance(np.ones((1, 1)), 1, 1, normalize=True) == 0.0


def test_stage_hierarchy_early_local_late_global():
    d16 = _grid_dist(4, 4)
    maps = {
        "layers.0.blocks.0": np.exp(-d16),
        "layers.0.blocks.1": np.exp(-2 * d16),
        "layers.1.blocks.0": np.ones((4, 4)),
    }
    h = M.stage_hierarchy(maps)
    assert list(h) == ["layers.0", "layers.1"]
    assert h["layers.0"] < h["layers.1"]
    expect0 = np.mean([M.attention_distance(maps[f"layers.0.blocks.{j}"], 4, 4, normalize=True)
                       for j in (0, 1)])  # fmt: skip
    assert math.isclose(h["layers.0"], expect0)
    assert math.isclose(h["layers.1"], M.attention_distance(np.ones((4, 4)), 2, 2) / 2**0.5)
    # explicit grids, by stage or block name; non-square grids need them
    rect = {"layers.2.blocks.0": np.ones((6, 6))}
    with pytest.raises(MetricsError, match="no square"):
        M.stage_hierarchy(rect)
    a = M.stage_hierarchy(rect, {2: (2, 3)}, normalize=False)["layers.2"]
    b = M.stage_hierarchy(rect, {"layers.2.blocks.0": (2, 3)}, normalize=False)["layers.2"]
    assert a == b == M.attention_distance(np.ones((6, 6)), 2, 3)


# ---- sequence locality -------------------------------------------------------------------------


def _smooth_in_scan_order(route, width=None):
    """Row p a Gaussian bump centred at p's scan position, in spatial coordinates."""
    width = len(route) / 4 if width is None else width
    t = np.argsort(route)  # scan position of each patch
    return np.exp(-(np.subtract.outer(t, t) ** 2) / (2 * width**2))


def test_sequence_locality_smooth_rows_high_shuffled_near_zero():
    route = jaxmamba.make_routes("hilbert", 8, 8)[0]
    a = _smooth_in_scan_order(route)
    assert M.sequence_locality(a, route) > 0.95
    rng = np.random.default_rng(0)
    vals = [M.sequence_locality(a[rng.permutation(64)], route) for _ in range(5)]
    assert abs(np.mean(vals)) < 0.05
    # the same rows judged against an unrelated order are much less local
    assert M.sequence_locality(a, jaxmamba.make_routes("spiral", 8, 8)[0]) < 0.2


def test_sequence_locality_min_over_routes_and_invariances():
    routes = jaxmamba.make_routes("cross", 6, 6)
    a = _smooth_in_scan_order(routes[1])  # local along the column-major route
    rho_all = M.sequence_locality(a, routes)
    assert M.sequence_locality(a, routes[1]) > 0.95
    assert rho_all > 0.5 > 0.1 > M.sequence_locality(a, routes[0])
    assert math.isclose(M.sequence_locality(4.0 * a, routes), rho_all, rel_tol=1e-6)
    perm = np.random.default_rng(2).permutation(36)  # relabel: new patch i = old patch perm[i]
    inv = np.argsort(perm)
    relabelled = M.sequence_locality(a[np.ix_(perm, perm)], inv[routes])
    assert math.isclose(relabelled, rho_all, rel_tol=1e-6)


def test_scan_distance():
    d = M.scan_distance(jaxmamba.make_routes("cross", 3, 3))
    assert d[0, 1] == 1 and d[0, 3] == 1 and d[0, 4] == 4  # row- and column-major neighbours
    assert (d == d.T).all() and (np.diag(d) == 0).all()


def test_sequence_locality_subsampling_is_seeded():
    route = np.arange(400)
    a = _smooth_in_scan_order(route, 10.0)
    full = M.sequence_locality(a, route, max_pairs=10**6)
    s1 = M.sequence_locality(a, route, max_pairs=2000, seed=1)
    assert s1 == M.sequence_locality(a, route, max_pairs=2000, seed=1)
    assert s1 != M.sequence_locality(a, route, max_pairs=2000, seed=2)
    assert abs(s1 - full) < 0.05


def test_sequence_locality_undefined_cases_are_nan():
    assert math.isnan(M.sequence_locality(np.eye(2), [0, 1]))
    assert math.isnan(M.sequence_locality(np.ones((5, 5)), np.arange(5)))


# ---- block distinctness ------------------------------------------------------------------------


def test_block_distinctness_planted_vs_identical():
    rng = np.random.default_rng(0)
    l = 16
    cols = np.arange(l)
    a = np.where(cols < 8, 1.0, 0.0)[None] + 0.05 * rng.random((l, l))
    b = np.where(cols >= 8, 1.0, 0.0)[None] + 0.05 * rng.random((l, l))
    distinct = M.block_distinctness({"x": a, "y": b})
    same = M.block_distinctness({"x": a, "y": a.copy()})
    assert distinct > 0.9
    assert same <= 0.0
    # invariant to each block's scale by default; raw scale can still be asked for
    assert math.isclose(M.block_distinctness({"x": a, "y": 100 * a}), same, abs_tol=1e-9)
    assert M.block_distinctness({"x": a, "y": 100 * a}, scale=None) > 0.9


def test_block_distinctness_is_seeded_with_tsne():
    rng = np.random.default_rng(3)
    maps = {"x": rng.random((12, 12)), "y": rng.random((12, 12)) + np.eye(12)}
    r1 = M.block_distinctness(maps, method="tsne", seed=4)
    assert r1 == M.block_distinctness(maps, method="tsne", seed=4)


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.attention_distance(np.ones((2, 4, 4)), 2, 2), r"\(L, L\)"),
        (lambda: M.attention_distance(np.ones((4, 4)), 3, 2), "does not match"),
        (lambda: M.attention_distance(np.zeros((4, 4)), 2, 2), "all zero"),
        (lambda: M.attention_distance(np.full((4, 4), np.nan), 2, 2), "NaN"),
        (lambda: M.sequence_locality(np.ones((4, 4)), [0, 1, 2]), "routes must be"),
        (lambda: M.sequence_locality(np.ones((4, 4)), [0, 1, 1, 2]), "not a permutation"),
        (lambda: M.sequence_locality(np.ones((4, 4)), [0.0, 1, 2, 3]), "routes must be"),
        (lambda: M.sequence_locality(np.ones((4, 4)), np.arange(4), max_pairs=0), "max_pairs"),
        (lambda: M.block_distinctness({"x": np.eye(4)}), "at least two"),
        (lambda: M.block_distinctness({"x": np.eye(4), "y": np.eye(3)}), "one L"),
        (lambda: M.block_distinctness({"x": np.eye(4), "y": np.eye(4)}, scale="z"), "scale"),
        (lambda: M.stage_hierarchy({"blocks.0": np.eye(4)}), "layers.i.blocks.j"),
        (lambda: M.stage_hierarchy({}), "non-empty"),
        (lambda: M.stage_hierarchy({"layers.0.blocks.0": np.eye(4)}, {1: (2, 2)}), "no entry"),
    ],
)
def test_errors(call, match):
    with pytest.raises(MetricsError, match=match):
        call()
    assert issubclass(MetricsError, ValueError)


# ---- on a model --------------------------------------------------------------------------------


def test_summarize_on_a_tiny_model():
    m = jaxmamba.create_model("vmamba_test", seed=1)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 64, 64, 3)), jnp.float32)
    s = M.summarize(m, x, order="spiral", blocks=[1, 2], batch_size=2)
    assert s["order"] == "spiral" and s["images"] == 3
    assert list(s["stages"]) == ["layers.1", "layers.2"]
    st = s["stages"]["layers.2"]
    assert st["grid"] == [4, 4] and st["blocks"] == 2
    assert -1 <= st["block_distinctness"] <= 1
    assert math.isnan(s["stages"]["layers.1"]["block_distinctness"])  # one block
    # the per-block numbers are the metrics of the mean maps
    from jaxmamba.attention.extract import extract_attention

    maps = extract_attention(m, x, order="spiral", blocks=1)["layers.1.blocks.0"]
    mean = np.asarray(maps).mean(0)
    b = s["blocks"]["layers.1.blocks.0"]
    assert math.isclose(b["attention_distance"], M.attention_distance(mean, 8, 8), rel_tol=1e-4)
    routes = jaxmamba.make_routes("spiral", 8, 8)
    assert math.isclose(b["sequence_locality"], M.sequence_locality(mean, routes), abs_tol=1e-3)
    with pytest.raises(MetricsError, match="batch_size"):
        M.summarize(m, x, batch_size=0)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(M, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
