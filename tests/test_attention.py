"""Hidden attention: float64 oracle, the exactness identity, options, and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import alpha64, rel_err

import jaxmamba
from jaxmamba.attention.extract import (
    AttentionError,
    block_attention,
    block_params,
    extract_attention,
    route_attention,
)
from jaxmamba.attention.options import AttentionOptions
from jaxmamba.attention.verify import verify


def random_route_inputs(k=2, d=6, n=1, l=45, seed=0, dt_max=2.0, a_max=24.0):
    rng = np.random.default_rng(seed)
    dt = rng.uniform(1e-4, dt_max, (k, d, l)).astype(np.float32)
    A = -rng.uniform(0.05, a_max, (k, d, n)).astype(np.float32)
    B = rng.standard_normal((k, n, l)).astype(np.float32)
    C = rng.standard_normal((k, n, l)).astype(np.float32)
    return dt, A, B, C


@pytest.mark.parametrize("n", [1, 16])
@pytest.mark.parametrize(
    "l, chunk", [(45, None), (45, 8), (64, 16), (100, 7), (5, 8), (600, None)]
)  # 600: chunks of 75, their diagonal tiles in chunks of 25
def test_route_attention_matches_float64_oracle(n, l, chunk):
    dt, A, B, C = random_route_inputs(n=n, l=l, seed=l + n)
    ref = alpha64(dt, A, B, C)  # (k, d, l, l)
    got = route_attention(dt, A, B, C, chunk=chunk)
    assert rel_err(got, ref.mean(axis=1)) < 1e-5
    got_abs = route_attention(dt, A, B, C, channels="abs_mean", chunk=chunk)
    assert rel_err(got_abs, np.abs(ref).mean(axis=1)) < 1e-5
    sub = route_attention(dt, A, B, C, channels=(4, 0), chunk=chunk)
    assert rel_err(sub, ref[:, [4, 0]]) < 1e-5


def test_strong_decay_where_vmamba_formula_breaks():
    """Cumulative decay far past −46: VMamba's exp(cumsum)/clamp formula is wrong, ours exact."""
    dt, A, B, C = random_route_inputs(n=16, l=256, dt_max=2.0, a_max=16.0, seed=7)
    ref = alpha64(dt, A, B, C).mean(axis=1)
    got = np.asarray(route_attention(dt, A, B, C))
    assert np.isfinite(got).all() and rel_err(got, ref) < 1e-5
    # the shortcut exp(S_t) * exp(-S_s) with a 1e-20 clamp (float32) is far off here
    S = np.cumsum(dt, -1)[..., None] * A[:, :, None, :]  # (k, d, l, n)
    w = np.exp(S).astype(np.float32)
    q = C.transpose(0, 2, 1)[:, None] * w
    kk = (B.transpose(0, 2, 1)[:, None] * dt[..., None]) / np.maximum(w, 1e-20)
    naive = np.tril(np.einsum("kdtn,kdsn->kdts", q, kk).mean(1))
    assert rel_err(naive, ref) > 0.1


def test_causal_and_channel_mean_structure():
    dt, A, B, C = random_route_inputs(l=30)
    m = np.asarray(route_attention(dt, A, B, C))
    assert np.all(np.triu(m, 1) == 0)
    # diagonal is exactly mean_d Δ_t (C_t · B_t)
    diag = dt.mean(axis=1) * np.einsum("knt,knt->kt", C, B)
    np.testing.assert_allclose(np.diagonal(m, axis1=-2, axis2=-1), diag, rtol=1e-5, atol=1e-6)


# the vanilla variant in the slow run only (-m slow): its attention is checked against the official
# code's float64 maps by test_parity on every run; here it doubled the module's time
MODELS = ["vmamba_test", pytest.param("vanilla_vmamba_test", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    return jaxmamba.create_model(request.param, seed=5)


def images(shape=(2, 64, 96, 3), seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize(
    "order, shape",
    [("cross", (2, 64, 96, 3)), pytest.param("hilbert", (1, 64, 64, 3), marks=pytest.mark.slow),
     ("spiral", (1, 96, 64, 3))],
)  # fmt: skip
def test_extracted_maps_reproduce_the_scan_output(model, order, shape):
    errors = verify(model, images(shape), order=order)
    assert set(errors) == set(model.config.block_names())
    assert max(errors.values()) < 1e-5, errors


def test_verify_catches_a_wrong_output(model):
    """The identity check can fail: a 1% change of the block output is reported."""
    from jaxmamba.attention.verify import _verify_block

    x = images((1, 64, 64, 3))
    _, cache = jaxmamba.run_with_cache(model, x, blocks=3)
    op = model.params["layers_3"]["blocks_0"]["op"]
    u, y = cache["layers.3.blocks.0"]["x"], cache["layers.3.blocks.0"]["y"]
    order = jaxmamba.as_order("cross")
    assert float(_verify_block(op, u, y, order, (2, 2), 8)) < 1e-5
    assert float(_verify_block(op, u, 1.01 * y, order, (2, 2), 8)) > 5e-3


def test_route_modes_and_skip(model):
    """Each route mode and the skip of two blocks, from their cached scan inputs (one small
    program per option and grid); the options carried through extract_attention: below and
    test_normalisations."""
    x = images((1, 64, 64, 3))
    names = ("layers.0.blocks.0", "layers.3.blocks.0")
    _, cache = jaxmamba.run_with_cache(model, x, blocks=[0, 3])

    def maps(**options):
        out = {}
        for name in names:
            op, u = block_params(model, name), cache.scan_input(name)
            routes = jaxmamba.make_routes("cross", *model.config.block(name, (64, 64)).grid)
            f = jax.jit(
                lambda op, u, r=routes: block_attention(op, u, r, AttentionOptions(**options))
            )
            out[name] = f(op, u)
        return out

    each, summed = maps(route_mode="each"), maps()
    skip, nall = maps(include_skip=True), maps(route_mode="nall")
    whole = extract_attention(model, x, blocks=[3], route_mode="each")["layers.3.blocks.0"]
    np.testing.assert_allclose(whole, each["layers.3.blocks.0"], rtol=1e-5, atol=1e-7)
    for name in summed:
        e, s = np.asarray(each[name]), np.asarray(summed[name])
        assert e.shape[1] == 4 and e.shape[2:] == s.shape[1:]
        np.testing.assert_allclose(e.sum(axis=1), s, rtol=1e-5, atol=1e-7)
        _, i, _, j = name.split(".")
        D = np.asarray(model.params[f"layers_{i}"][f"blocks_{j}"]["op"]["Ds"]).reshape(4, -1)
        extra = np.asarray(skip[name]) - s
        np.testing.assert_allclose(
            np.diagonal(extra, axis1=-2, axis2=-1), D.mean(1).sum(), rtol=1e-4
        )
        assert np.allclose(extra - np.eye(s.shape[-1]) * D.mean(1).sum(), 0, atol=1e-6)
        lo = e.min(axis=(-2, -1), keepdims=True)
        hi = e.max(axis=(-2, -1), keepdims=True)
        np.testing.assert_allclose(nall[name], ((e - lo) / (hi - lo)).mean(axis=1), atol=1e-6)


def test_normalisations(model):
    """Each normalisation of one block's map, from its cached scan input (one small program per
    option), and the option carried through extract_attention."""
    x = images((1, 64, 64, 3))
    name = "layers.2.blocks.0"
    _, cache = jaxmamba.run_with_cache(model, x, blocks=2)
    op, u = block_params(model, name), cache.scan_input(name)
    routes = jaxmamba.make_routes("cross", *model.config.block(name, (64, 64)).grid)

    def norm(how):
        f = jax.jit(lambda u: block_attention(op, u, routes, AttentionOptions(normalize=how)))
        return np.asarray(f(u))

    raw = norm(None)
    mm = norm("minmax")
    np.testing.assert_allclose(mm.min(), 0, atol=1e-7)
    np.testing.assert_allclose(mm.max(), 1, atol=1e-6)
    np.testing.assert_allclose(mm, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
    am = norm("absmax")
    np.testing.assert_allclose(np.abs(am).max(), 1, rtol=1e-6)
    row = norm("row")
    np.testing.assert_allclose(np.abs(row).sum(-1), 1, rtol=1e-5)
    am2 = norm("abs_minmax")
    np.testing.assert_allclose(
        am2, (np.abs(raw) - np.abs(raw).min()) / np.ptp(np.abs(raw)), atol=1e-6
    )
    whole = extract_attention(model, x, blocks=2, normalize="minmax")[name]
    np.testing.assert_allclose(np.asarray(whole), mm, atol=1e-6)


def test_channel_options_against_per_channel_maps():
    model = jaxmamba.create_model("vmamba_test", seed=2)
    x = images((1, 64, 64, 3))
    _, cache = jaxmamba.run_with_cache(model, x, blocks="layers.1.blocks.0")
    op = model.params["layers_1"]["blocks_0"]["op"]
    routes = jaxmamba.make_routes("cross", 8, 8)
    u = cache["layers.1.blocks.0"]["x"]
    d = u.shape[1]

    def maps(**kw):
        return jax.jit(lambda op, u: block_attention(op, u, routes, AttentionOptions(**kw)))(op, u)

    per = np.asarray(maps(route_mode="each", channels=tuple(range(d))))
    mean = maps(route_mode="each")
    assert rel_err(mean, per.mean(axis=2)) < 1e-5
    absm = maps(route_mode="each", channels="abs_mean")
    assert rel_err(absm, np.abs(per).mean(axis=2)) < 1e-5
    sub = maps(channels=(3, 1))
    assert rel_err(sub, per[:, :, [3, 1]].sum(axis=1)) < 1e-5


def test_block_selection():
    m = jaxmamba.create_model("vmamba_test")
    x = images((1, 64, 64, 3))
    assert set(extract_attention(m, x, blocks=2)) == {"layers.2.blocks.0", "layers.2.blocks.1"}
    assert set(extract_attention(m, x, blocks=lambda n: n.endswith("blocks.1"))) == {
        "layers.2.blocks.1"
    }
    shapes = {
        k: v.shape for k, v in extract_attention(m, x, blocks=["layers.0.blocks.0", 3]).items()
    }
    assert shapes == {"layers.0.blocks.0": (1, 256, 256), "layers.3.blocks.0": (1, 4, 4)}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(route_mode="max"), "route_mode must be"),
        (dict(channels="median"), "channels must be"),
        (dict(channels=[]), "non-empty"),
        (dict(channels=[0.5]), "ints"),
        (dict(normalize="softmax"), "normalize must be"),
        (dict(blocks="layers.9.blocks.0"), "unknown block"),
        (dict(blocks=7), "out of range"),
        (dict(blocks=lambda n: False), "empty"),
    ],
)
def test_bad_options(kwargs, match):
    m = jaxmamba.create_model("vmamba_test")
    with pytest.raises(ValueError, match=match):
        extract_attention(m, images((1, 64, 64, 3)), **kwargs)


def test_errors_are_value_errors():
    assert issubclass(AttentionError, ValueError)


def test_gradients_match_finite_differences():
    """d/dx of a scalar of the maps: directional derivative vs central differences (float32)."""
    m = jaxmamba.create_model("vmamba_test", seed=1)
    op = m.params["layers_3"]["blocks_0"]["op"]
    routes = jaxmamba.make_routes("cross", 3, 5)
    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.standard_normal((1, op["Ds"].shape[0] // 4, 15)), jnp.float32)
    v = jnp.asarray(rng.standard_normal(u.shape), jnp.float32)

    @jax.jit
    def f(u):
        a = block_attention(op, u, routes)
        return jnp.sum(jnp.sin(3.0 * a))

    g = jax.jit(jax.grad(f))(u)
    assert np.isfinite(np.asarray(g)).all()
    eps = 1e-2
    fd = (f(u + eps * v) - f(u - eps * v)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.vdot(g, v)), float(fd), rtol=2e-2)


def test_gradients_finite_under_extreme_decay():
    dt, A, B, C = random_route_inputs(n=4, l=80, dt_max=2.0, a_max=24.0, seed=3)
    loss = lambda dt, A, B, C: jnp.sum(route_attention(dt, A, B, C) ** 2)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(*map(jnp.asarray, (dt, A, B, C)))
    for g in grads:
        assert np.isfinite(np.asarray(g)).all()


def test_gradient_with_respect_to_images_and_params():
    m = jaxmamba.create_model("vmamba_test", seed=1)
    x = images((1, 64, 64, 3))

    def stat(params, x):
        maps = extract_attention(jaxmamba.Model(m.config, params), x, blocks=3)
        return jnp.mean(maps["layers.3.blocks.0"] ** 2)

    gp, gx = jax.grad(stat, argnums=(0, 1))(m.params, x)
    assert np.isfinite(np.asarray(gx)).all() and float(jnp.abs(gx).max()) > 0
    ga = gp["layers_3"]["blocks_0"]["op"]["A_logs"]
    assert np.isfinite(np.asarray(ga)).all() and float(jnp.abs(ga).max()) > 0


@pytest.mark.parametrize(
    "n, l, dt_max, a_max, fast",
    [(1, 49, 0.05, 1.0, True), (4, 49, 0.05, 1.0, True), (4, 196, 0.02, 1.0, True),
     (1, 784, 0.01, 0.5, True), pytest.param(4, 784, 0.01, 0.5, True, marks=pytest.mark.slow),
     (1, 196, 2.0, 24.0, False), (4, 49, 2.0, 24.0, False)],
)  # fmt: skip
def test_both_forms_of_the_channel_mean_equal_the_float64_oracle(n, l, dt_max, a_max, fast):
    """Short sequences take the product form where every chunk's decay is bounded (weak
    decays), the recursive tiling otherwise (strong ones); both equal float64, with gradients
    finite either way."""
    from jaxmamba.attention.tiles import _bounded, _fast_chunk, causal_maps, spatial_maps

    dt, A, B, C = random_route_inputs(n=n, l=l, dt_max=dt_max, a_max=a_max, seed=l + n)
    c = _fast_chunk(l, None)
    assert c is not None and bool(_bounded(jnp.asarray(dt), jnp.asarray(A), c)) == fast
    ref = alpha64(dt, A, B, C).mean(axis=1)
    assert rel_err(causal_maps(dt, A, B, C), ref) < 1e-5
    side = int(np.sqrt(l))
    routes = jaxmamba.make_routes("cross", side, side)[:2]  # routes 0 and 1 of the cross scan
    got = spatial_maps(dt[None], A[None], B[None], C[None], routes, each=True)[0]
    for r in range(2):
        inv = np.argsort(routes[r])
        assert rel_err(got[r], ref[r][inv][:, inv]) < 1e-5
    loss = lambda *a: jnp.sum(causal_maps(*a) ** 2)
    grads = jax.grad(loss, argnums=(0, 1, 2, 3))(*map(jnp.asarray, (dt, A, B, C)))
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)
