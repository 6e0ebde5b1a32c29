"""Soft (Sinkhorn) orders: doubly stochastic, reduce to hard orders, and carry gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

import jaxmamba
from jaxmamba.attention.extract import extract_attention
from jaxmamba.orders import soft as so

GRIDS = [(16, 16), (8, 8), (4, 4), (2, 2)]


def test_sinkhorn_is_doubly_stochastic():
    logits = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 7)) * 3
    p = np.asarray(so.sinkhorn(logits, 200))
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(-1), 1, atol=1e-4)
    np.testing.assert_allclose(p.sum(-2), 1, atol=1e-4)


def test_hard_routes_recovers_every_named_order():
    for name in ["cross", "spiral", "hilbert", "morton"]:
        r = jaxmamba.make_routes(name, 5, 6)
        np.testing.assert_array_equal(so.hard_routes(so.soft_routes(so.route_logits(r))), r)


@pytest.fixture(scope="module")
def model_and_images():
    m = jaxmamba.create_model("vmamba_test", seed=2)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 64, 64, 3)), jnp.float32)
    return m, x


@pytest.mark.slow  # ~30 s; the gradient test below runs by default
def test_sharp_soft_routes_equal_the_hard_order(model_and_images):
    m, x = model_and_images
    soft = {
        g: so.soft_routes(so.route_logits(jaxmamba.make_routes("spiral", *g), 40.0)) for g in GRIDS
    }
    assert (
        rel_err(jaxmamba.forward(m, x, order=soft), jaxmamba.forward(m, x, order="spiral")) < 1e-5
    )
    a = extract_attention(m, x, order=soft, blocks=[1, 3])
    b = extract_attention(m, x, order="spiral", blocks=[1, 3])
    for k in b:
        assert rel_err(a[k], b[k]) < 1e-4


def test_soft_routes_in_attention_mean_and_summarize(model_and_images, tmp_path):
    """Sharp soft spiral routes average and summarize like the hard spiral order; a resumed mean
    refuses other soft routes."""
    from jaxmamba.attention.findings import summarize
    from jaxmamba.attention.mean import AggregateError, attention_mean

    m, x = model_and_images
    x2 = jnp.concatenate([x, -x])
    soft = {
        g: so.soft_routes(so.route_logits(jaxmamba.make_routes("spiral", *g), 40.0)) for g in GRIDS
    }
    mean_soft = attention_mean(m, [x2[:1], x2[1:]], order=soft, blocks=1, progress=False,
                               out_dir=tmp_path / "mean")  # fmt: skip
    mean_hard = attention_mean(m, [x2[:1], x2[1:]], order="spiral", blocks=1, progress=False)
    assert mean_soft.count == 2
    assert rel_err(mean_soft["layers.1.blocks.0"], mean_hard["layers.1.blocks.0"]) < 1e-4
    other = {g: so.soft_routes(so.route_logits(jaxmamba.make_routes("cross", *g), 40.0))
             for g in GRIDS}  # fmt: skip
    with pytest.raises(AggregateError, match="other options"):
        attention_mean(m, [x2], order=other, blocks=1, progress=False,
                       out_dir=tmp_path / "mean")  # fmt: skip
    s_soft = summarize(m, x2, order=soft, blocks=2)  # 4x4 grid, two blocks
    s_hard = summarize(m, x2, order="spiral", blocks=2)
    assert s_soft["order"] == "soft" and s_hard["order"] == "spiral"
    for name, block in s_hard["blocks"].items():
        for key, value in block.items():
            assert s_soft["blocks"][name][key] == pytest.approx(value, rel=1e-3, abs=1e-6), key


def test_gradient_wrt_ordering_logits_matches_finite_differences(model_and_images):
    m, x = model_and_images
    x = x[:, :32, :32]  # grids 8, 4, 2, 1: the soft routes of a 16x16 grid cost the most
    grids = [(8, 8), (4, 4), (2, 2), (1, 1)]
    base = {g: so.route_logits(jaxmamba.make_routes("cross", *g), 2.0) for g in grids}
    direction = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16))

    def stat(t):
        logits = dict(base)
        logits[(4, 4)] = base[(4, 4)] + t * direction  # the grid of layers.1 at 32x32
        soft = {g: so.soft_routes(v, n_iters=10) for g, v in logits.items()}
        maps = extract_attention(m, x, order=soft, blocks=1)["layers.1.blocks.0"]
        return jnp.sum(maps * jnp.cos(jnp.arange(maps.size).reshape(maps.shape)))

    g = jax.jit(jax.grad(stat))(0.0)
    eps = 1e-2
    f = jax.jit(stat)  # one program for both points
    fd = (f(eps) - f(-eps)) / (2 * eps)
    assert np.isfinite(float(g)) and abs(float(g)) > 0
    np.testing.assert_allclose(float(g), float(fd), rtol=3e-2)


def test_soft_route_errors(model_and_images):
    m, x = model_and_images
    with pytest.raises(jaxmamba.OrderError, match="must be"):
        jaxmamba.forward(m, x, order={(16, 16): jnp.ones((4, 9, 9))})
    with pytest.raises(jaxmamba.OrderError, match="no grid"):
        jaxmamba.forward(m, x, order={(16, 16): jnp.ones((4, 256, 256)) / 256})
    with pytest.raises(jaxmamba.OrderError, match="\\(K, L, L\\)"):
        so.hard_routes(np.ones((3, 4)))
