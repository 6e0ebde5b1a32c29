"""Soft patch orders on a Vim model: one soft path ``{grid: (1, M, M)}``, scanned both ways.

The forward direction reads the patches through the soft matrix with the CLS token at scan
position M // 2, the backward one reads the forward scan sequence reversed; the causal conv runs
after the routing, so the attention is computed from each direction's scan-order input
(``LayerScan.u``) and read back in token coordinates as ``Rᵀ α R``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import alpha64, rel_err

import jaxmamba
from jaxmamba.attention.extract import block_attention, block_params, block_routes
from jaxmamba.attention.mean import attention_mean
from jaxmamba.orders import OrderError, RouteTable, as_order
from jaxmamba.orders import soft as so

GRID = (4, 4)  # vim_test at 64x64: 16 patches, 17 tokens, the CLS token at 8
M, L, CLS = 16, 17, 8


@pytest.fixture(scope="module")
def model_and_images():
    model = jaxmamba.create_model("vim_test", seed=3)
    images = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    return model, jnp.asarray(images)


def sinkhorn64(logits, n_iters: int = 30):
    """Log-space Sinkhorn in the logits' dtype (``so.sinkhorn`` computes in float32)."""
    log_p = logits
    for _ in range(n_iters):
        log_p = log_p - jax.nn.logsumexp(log_p, axis=-1, keepdims=True)
        log_p = log_p - jax.nn.logsumexp(log_p, axis=-2, keepdims=True)
    return jnp.exp(log_p)


def token_routes(path: np.ndarray) -> np.ndarray:
    """The two soft token routes ``(2, L, L)`` of a soft patch path ``(M, M)``, by hand: patch
    scan position t and patch p move one on from M // 2, the CLS token is scan position M // 2;
    the backward route reads the forward scan sequence reversed."""
    at = [i for i in range(L) if i != CLS]
    forward = np.zeros((L, L))
    forward[np.ix_(at, at)] = path
    forward[CLS, CLS] = 1.0
    return np.stack([forward, forward[::-1]])


def test_a_sharp_soft_order_equals_the_hard_order(model_and_images):
    """Sinkhorn routes of 50·onehot(hilbert path) give the hard order's logits, maps (merged
    and per direction), means and token routes; only the soft cache keeps the scan-order u."""
    model, images = model_and_images
    path = jaxmamba.make_routes("hilbert", *GRID)[:1]
    sharp = {GRID: so.soft_routes(so.route_logits(path, 50.0))}
    hard = as_order(path)
    soft_routes, _ = block_routes(model.config, as_order(sharp), GRID)
    hard_routes, _ = block_routes(model.config, hard, GRID)
    assert soft_routes.shape == (2, L, L) and hard_routes.shape == (2, L)
    np.testing.assert_array_equal(np.asarray(soft_routes).argmax(-1), hard_routes)
    logits = jaxmamba.forward(model, images, order=sharp)
    assert rel_err(logits, jaxmamba.forward(model, images, order=hard)) < 1e-4
    for mode in ("sum", "each"):
        a = jaxmamba.extract_attention(model, images, order=sharp, route_mode=mode)
        b = jaxmamba.extract_attention(model, images, order=hard, route_mode=mode)
        assert a.order == "soft" and a["layers.1"].shape == b["layers.1"].shape
        for name in b:
            assert rel_err(a[name], b[name]) < 1e-4, (mode, name)
    batches = [images[:1], images[1:]]
    mean_soft = attention_mean(model, batches, order=sharp, progress=False)
    mean_hard = attention_mean(model, batches, order=hard, progress=False)
    assert mean_soft.count == 2
    for name in mean_hard:
        assert rel_err(mean_soft[name], mean_hard[name]) < 1e-4
    _, soft_cache = jaxmamba.run_with_cache(model, images, order=sharp, blocks=[1])
    _, hard_cache = jaxmamba.run_with_cache(model, images, order=hard, blocks=[1])
    assert hard_cache["layers.1"].u is None
    u = soft_cache["layers.1"].u  # each direction's scan input in its own scan order
    assert u is not None and u.shape == (2, 2, model.config.d_inner(), L)
    x = hard_cache["layers.1"].x  # token order; exact for a hard order
    scan_order = np.stack([np.asarray(x)[:, k][..., hard_routes[k]] for k in range(2)], axis=1)
    assert rel_err(u, scan_order) < 1e-4


def test_verify_rebuilds_the_merged_gated_output_under_a_soft_order(model_and_images):
    """Sinkhorn routes of random logits at temperature 1 (far from any permutation): the maps of
    both directions applied to their scan-order inputs, read back with Rᵀ and gated, rebuild
    each layer's out_proj input; the same maps applied to the token-order x do not."""
    model, images = model_and_images
    logits = jax.random.normal(jax.random.PRNGKey(4), (1, M, M))
    routes = so.soft_routes(logits, temperature=1.0)
    assert float(jnp.max(routes)) < 0.9  # genuinely soft
    order = {GRID: routes}
    errors = jaxmamba.verify(model, images, order=order, channel_group=16)
    assert set(errors) == {"layers.0", "layers.1"}
    assert max(errors.values()) < 1e-5, errors
    # the maps differ from those of the nearest hard order, and from the raster path's
    soft = jaxmamba.extract_attention(model, images, order=order)
    near = jaxmamba.extract_attention(model, images, order=so.hard_routes(routes))
    assert rel_err(soft["layers.1"], near["layers.1"]) > 1e-2
    # the scan-order input is what the maps need: Rᵀ u (the token-order x) gives other maps
    _, cache = jaxmamba.run_with_cache(model, images, order=order, blocks=[1])
    token_routes_, _ = block_routes(model.config, as_order(order), GRID)
    op = block_params(model, "layers.1")
    right = block_attention(op, cache.scan_input("layers.1"), token_routes_)
    wrong = block_attention(op, cache["layers.1"].x, token_routes_)
    assert rel_err(right, soft["layers.1"]) < 1e-5
    assert rel_err(wrong, right) > 1e-2


def test_soft_maps_equal_the_float64_definition(model_and_images):
    """Under jax_enable_x64 with float64 routes, each direction's scan-order map α evaluated
    from the definition in NumPy float64 (Δ, B, C from the layer's parameters and its scan-order
    input u), read back as Rᵀ α R and merged ½(fwd + bwd), equals the extracted maps to 1e-10;
    layer 0's u equals SiLU(causal conv(R x)) of the layer's routed in_proj output."""
    model, images = model_and_images
    c = model.config
    d, n, r = c.d_inner(), c.d_state, c.dt_rank
    with jax.enable_x64(True):
        logits = jax.random.normal(jax.random.PRNGKey(5), (1, M, M), jnp.float64)
        routes = sinkhorn64(logits)
        order = {GRID: routes}
        each = jaxmamba.extract_attention(model, images, order=order, route_mode="each")
        merged = jaxmamba.extract_attention(model, images, order=order)
        _, cache = jaxmamba.run_with_cache(model, images, order=order)
        assert each["layers.0"].dtype == np.float64
        R = token_routes(np.asarray(routes, np.float64)[0])
        for name in ("layers.0", "layers.1"):
            mixer = model.params[f"layers_{name[-1]}"]["mixer"]
            u = np.asarray(cache[name].u, np.float64)  # (b, 2, d, l) scan order
            ref = np.zeros((len(u), 2, L, L))
            for k, (xp, dt, a_log) in enumerate(
                [("x_proj", "dt_proj", "A_log"), ("x_proj_b", "dt_proj_b", "A_b_log")]
            ):
                w = lambda key: np.asarray(mixer[key]["weight"], np.float64)  # noqa: B023
                x_dbl = np.einsum("cd,bdl->bcl", w(xp), u[:, k])
                delta = np.einsum("dr,brl->bdl", w(dt), x_dbl[:, :r])
                bias = np.asarray(mixer[dt]["bias"], np.float64)
                dts = np.logaddexp(delta + bias[:, None], 0.0)  # softplus
                # A as the scan receives it: -exp(A_log) in float32
                A = np.asarray(-jnp.exp(jnp.asarray(mixer[a_log], jnp.float32)), np.float64)
                for b in range(len(u)):
                    B, C = x_dbl[b, r : r + n], x_dbl[b, r + n :]
                    alpha = alpha64(dts[b][None], A[None], B[None], C[None])[0].mean(0)
                    ref[b, k] = R[k].T @ alpha @ R[k]
            assert rel_err(each[name], ref) < 1e-10, name
            assert rel_err(merged[name], 0.5 * ref.sum(1)) < 1e-10, name
        # layer 0's scan input from the images by hand: SiLU(causal conv(R_k · in_proj x))
        p = model.params
        patches = np.asarray(images, np.float64).reshape(2, 4, 16, 4, 16, 3)
        w = np.asarray(p["patch_embed"]["proj"]["weight"], np.float64)  # (e, c, 16, 16)
        tokens = np.einsum("bhiwjc,ecij->bhwe", patches, w).reshape(2, M, -1)
        tokens = tokens + np.asarray(p["patch_embed"]["proj"]["bias"], np.float64)
        cls = np.broadcast_to(np.asarray(p["cls_token"], np.float64), (2, 1, c.embed_dim))
        tokens = np.concatenate([tokens[:, :CLS], cls, tokens[:, CLS:]], 1)
        tokens = tokens + np.asarray(p["pos_embed"], np.float64)
        norm = np.asarray(p["layers_0"]["norm"]["weight"], np.float64)
        normed = tokens / np.sqrt(np.mean(tokens**2, -1, keepdims=True) + c.eps) * norm
        mixer = p["layers_0"]["mixer"]
        x = np.einsum("ble,de->bdl", normed, np.asarray(mixer["in_proj"]["weight"])[:d])
        for k, conv in enumerate(("conv1d", "conv1d_b")):
            routed = np.einsum("ts,bds->bdt", R[k], x)
            cw = np.asarray(mixer[conv]["weight"], np.float64)[:, 0]  # (d, 4)
            padded = np.pad(routed, ((0, 0), (0, 0), (3, 0)))
            pre = np.asarray(mixer[conv]["bias"], np.float64)[:, None] + sum(
                padded[..., j : j + L] * cw[:, j, None] for j in range(4)
            )
            u0 = pre / (1 + np.exp(-pre))
            assert rel_err(cache["layers.0"].u[:, k], u0) < 1e-5, conv


def test_gradient_wrt_the_logits_matches_finite_differences(model_and_images):
    """jax.grad of a scalar of layer 0's maps with respect to the ordering logits, in float64
    (float64 routes keep everything from the routing to layer 0's maps in float64), equals a
    central finite difference, both points in one jitted program."""
    model, images = model_and_images
    path = jaxmamba.make_routes("hilbert", *GRID)[:1]
    with jax.enable_x64(True):
        base = jnp.asarray(so.route_logits(path, 2.0), jnp.float64)
        direction = jax.random.normal(jax.random.PRNGKey(6), (1, M, M), jnp.float64)
        weights = jnp.cos(jnp.arange(L * L, dtype=jnp.float64)).reshape(L, L)

        def stat(t):
            routes = sinkhorn64(base + t * direction, 10)
            maps = jaxmamba.extract_attention(model, images[:1], order={GRID: routes}, blocks=0)
            return jnp.sum(maps["layers.0"][0] * weights)

        grad = float(jax.jit(jax.grad(stat))(jnp.float64(0.0)))
        eps = 1e-4
        fd = float(jax.jit(lambda: (stat(eps) - stat(-eps)) / (2 * eps))())
    assert np.isfinite(grad) and abs(grad) > 1e-6
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_wrong_soft_orders_are_named_errors(model_and_images):
    model, images = model_and_images
    both = {GRID: jnp.ones((2, M, M)) / M}  # K = 2: a Vim model scans one path
    with pytest.raises(OrderError, match=r"one patch path as \(1, M, M\) = \(1, 16, 16\)"):
        jaxmamba.forward(model, images, order=both)
    with pytest.raises(OrderError, match="one patch path"):
        jaxmamba.extract_attention(model, images, order=both)
    with pytest.raises(OrderError, match="one patch path"):
        jaxmamba.verify(model, images, order=both)
    with pytest.raises(OrderError, match="no grid 4x4"):
        jaxmamba.forward(model, images, order={(2, 2): jnp.ones((1, 4, 4)) / 4})
    with pytest.raises(OrderError, match=r"must be \(K, 16, 16\)"):
        jaxmamba.forward(model, images, order={GRID: jnp.ones((1, 9, 9))})
    with pytest.raises(jaxmamba.attention.extract.AttentionError, match="Order or a SoftOrder"):
        block_routes(model.config, RouteTable.of("spiral", [GRID]), GRID)


def test_summarize_under_a_sharp_soft_order(model_and_images):
    from jaxmamba.attention.findings import summarize

    model, images = model_and_images
    path = jaxmamba.make_routes("hilbert", *GRID)[:1]
    sharp = {GRID: so.soft_routes(so.route_logits(path, 50.0))}
    s_soft = summarize(model, images, order=sharp)
    s_hard = summarize(model, images, order=as_order(path))
    assert s_soft["order"] == "soft"
    for name, block in s_hard["blocks"].items():
        for key, value in block.items():
            assert s_soft["blocks"][name][key] == pytest.approx(value, rel=1e-3, abs=1e-6), key
