"""Configs, parameter trees of every variant, the forward pass, and input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmamba
from jaxmamba.models import params as P
from jaxmamba.models.config import OFFICIAL_VARIANTS, ConfigError, get_config
from jaxmamba.models.model import abstract_model, apply

OFFICIAL = {
    # name: (depths, dim, d_state, ssm_ratio, gated, mlp)
    "vanilla_vmamba_tiny": ((2, 2, 9, 2), 96, 16, 2.0, True, False),
    "vanilla_vmamba_small": ((2, 2, 27, 2), 96, 16, 2.0, True, False),
    "vanilla_vmamba_base": ((2, 2, 27, 2), 128, 16, 2.0, True, False),
    "vmamba_tiny_s2l5": ((2, 2, 5, 2), 96, 1, 2.0, False, True),
    "vmamba_small_s2l15": ((2, 2, 15, 2), 96, 1, 2.0, False, True),
    "vmamba_base_s2l15": ((2, 2, 15, 2), 128, 1, 2.0, False, True),
    "vmamba_tiny_s1l8": ((2, 2, 8, 2), 96, 1, 1.0, False, True),
    "vmamba_small_s1l20": ((2, 2, 20, 2), 96, 1, 1.0, False, True),
    "vmamba_base_s1l20": ((2, 2, 20, 2), 128, 1, 1.0, False, True),
}


def test_registry_lists_every_released_variant():
    assert set(OFFICIAL) == set(OFFICIAL_VARIANTS)
    assert set(OFFICIAL) < set(jaxmamba.list_models())
    assert {"vmamba_test", "vanilla_vmamba_test"} < set(jaxmamba.list_models())


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_full_size_parameter_shapes(name):
    depths, dim, n, ratio, gated, mlp = OFFICIAL[name]
    model = abstract_model(name)
    flat = {P.path_to_key(k): v.shape for k, v in P.flatten(model.params).items()}
    dims = [dim * 2**i for i in range(4)]
    for i, depth in enumerate(depths):
        assert f"layers.{i}.blocks.{depth - 1}.op.A_logs" in flat
        assert f"layers.{i}.blocks.{depth}.op.A_logs" not in flat
        d, r = int(ratio * dims[i]), -(-dims[i] // 16)
        pre = f"layers.{i}.blocks.0"
        assert flat[f"{pre}.op.A_logs"] == (4 * d, n)
        assert flat[f"{pre}.op.Ds"] == (4 * d,)
        assert flat[f"{pre}.op.x_proj_weight"] == (4, r + 2 * n, d)
        assert flat[f"{pre}.op.dt_projs_weight"] == (4, d, r)
        assert flat[f"{pre}.op.dt_projs_bias"] == (4, d)
        assert flat[f"{pre}.op.in_proj.weight"] == ((2 * d if gated else d), dims[i])
        assert flat[f"{pre}.op.conv2d.weight"] == (d, 1, 3, 3)
        assert (f"{pre}.op.conv2d.bias" in flat) == gated
        assert (f"{pre}.mlp.fc1.weight" in flat) == mlp
        if mlp:
            assert flat[f"{pre}.mlp.fc1.weight"] == (4 * dims[i], dims[i])
    assert flat["classifier.head.weight"] == (1000, dims[3])
    if gated:
        assert flat["patch_embed.0.weight"] == (dim, 3, 4, 4)
        assert flat["layers.0.downsample.reduction.weight"] == (2 * dim, 4 * dim)
    else:
        assert flat["patch_embed.0.weight"] == (dim // 2, 3, 3, 3)
        assert flat["patch_embed.5.weight"] == (dim, dim // 2, 3, 3)
        assert flat["layers.0.downsample.1.weight"] == (2 * dim, dim, 3, 3)
    assert (
        "layers.3.downsample.1.weight" not in flat and "layers.3.downsample.norm.weight" not in flat
    )
    logits = jax.eval_shape(lambda m: jaxmamba.forward(m, jnp.zeros((2, 224, 224, 3))), model)
    assert logits.shape == (2, 1000)


def test_official_initialisation():
    m = jaxmamba.create_model("vanilla_vmamba_test", seed=3)
    op = m.params["layers_0"]["blocks_0"]["op"]
    np.testing.assert_allclose(np.exp(op["A_logs"][0]), np.arange(1, 5), rtol=1e-6)
    np.testing.assert_array_equal(op["Ds"], 1.0)
    dt = jax.nn.softplus(op["dt_projs_bias"])
    assert 1e-4 <= float(dt.min()) and float(dt.max()) <= 0.1 + 1e-6
    assert abs(float(jnp.std(op["in_proj"]["weight"])) - 0.02) < 0.005
    other = jaxmamba.create_model("vanilla_vmamba_test", seed=4)
    assert not np.allclose(
        op["in_proj"]["weight"], other.params["layers_0"]["blocks_0"]["op"]["in_proj"]["weight"]
    )


@pytest.mark.parametrize(
    "variant, hw",
    [("vmamba_test", (64, 64)), ("vmamba_test", (96, 32)), ("vanilla_vmamba_test", (64, 96))],
)
def test_forward_square_and_non_square(variant, hw):
    m = jaxmamba.create_model(variant)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, *hw, 3)), jnp.float32)
    logits = jaxmamba.forward(m, x)
    assert logits.shape == (2, 10) and np.isfinite(np.asarray(logits)).all()
    # the two images differ, so must their logits; the batch items are independent
    assert not np.allclose(logits[0], logits[1])
    np.testing.assert_allclose(jaxmamba.forward(m, x[1:]), logits[1:], rtol=1e-5, atol=1e-6)


def test_every_order_runs_the_same_weights():
    m = jaxmamba.create_model("vmamba_test")
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 64, 64, 3)), jnp.float32)
    outs = {o: np.asarray(jaxmamba.forward(m, x, order=o)) for o in ["cross", "spiral", "hilbert"]}
    assert all(v.shape == (1, 10) for v in outs.values())
    assert not np.allclose(outs["cross"], outs["spiral"])
    # a custom order given as routes per grid equals the named one
    custom = {
        (h, w): jaxmamba.make_routes("spiral", h, w) for h, w in [(16, 16), (8, 8), (4, 4), (2, 2)]
    }
    np.testing.assert_allclose(jaxmamba.forward(m, x, order=custom), outs["spiral"], rtol=1e-6)


def test_order_with_wrong_route_count_is_rejected():
    m = jaxmamba.create_model("vmamba_test")
    with pytest.raises(jaxmamba.OrderError, match="K=1"):
        jaxmamba.forward(m, jnp.zeros((1, 64, 64, 3)), order="raster")


def test_no_retracing_on_second_call():
    m = jaxmamba.create_model("vmamba_test")
    x = jnp.zeros((1, 64, 64, 3))
    jaxmamba.forward(m, x)
    before = apply._cache_size()
    jaxmamba.forward(m, x + 1.0)
    jaxmamba.forward(jaxmamba.create_model("vmamba_test", seed=1), x)  # new params, same config
    assert apply._cache_size() == before


def test_forward_and_extraction_trace_once_under_jit():
    """Pure and jit-able: a jitted wrapper traces once for new params and images of one shape."""
    import chex

    config = jaxmamba.get_config("vmamba_test")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def logits_and_map(params, images):
        model = jaxmamba.Model(config, params)
        maps = jaxmamba.extract_attention(model, images, blocks=3)
        return jaxmamba.forward(model, images), maps["layers.3.blocks.0"]

    x = jnp.zeros((1, 64, 64, 3))
    for seed in (0, 1):
        params = jaxmamba.create_model(config, seed=seed).params
        logits, a = logits_and_map(params, x + seed)
        assert logits.shape == (1, 10) and a.shape == (1, 4, 4)


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((64, 64, 3), np.float32), "must be a"),
        (np.zeros((1, 3, 64, 64), np.float32), "channel-last"),
        (np.zeros((1, 60, 64, 3), np.float32), "multiples of 32"),
        (np.zeros((1, 0, 64, 3), np.float32), "multiples of 32"),
        (np.zeros((1, 64, 64, 3), np.int32), "floating"),
        ([[1.0]], "must be a"),
    ],
)
def test_bad_images(images, match):
    m = jaxmamba.create_model("vmamba_test")
    with pytest.raises(jaxmamba.InputError, match=match):
        jaxmamba.forward(m, images)


def test_custom_configs_and_errors():
    c = get_config("vmamba_tiny_s1l8", dims=32, depths=(1, 1, 2, 1), num_classes=10)
    assert c.name == "custom" and c.dims == (32, 64, 128, 256)
    assert "custom v05_noz, dims 32, depths 1-1-2-1" in c.describe()
    m = jaxmamba.create_model("vmamba_tiny_s1l8", dims=16, depths=(1, 1, 1, 1), num_classes=3)
    assert jaxmamba.forward(m, jnp.zeros((1, 32, 32, 3))).shape == (1, 3)
    with pytest.raises(ConfigError, match="unknown variant"):
        get_config("vmamba_huge")
    with pytest.raises(ConfigError, match="unknown config fields"):
        get_config("vmamba_test", d_model=3)
    with pytest.raises(ConfigError, match="forward_type"):
        get_config("vmamba_test", forward_type="v9")
    with pytest.raises(ConfigError, match="one entry per stage"):
        get_config("vmamba_test", depths=(1, 1))


def test_config_is_hashable_static():
    a, b = get_config("vmamba_test"), get_config("vmamba_test", num_classes=10, name="vmamba_test")
    assert a == b and hash(a) == hash(b)


def test_param_paths_round_trip_to_state_dict_keys():
    m = jaxmamba.create_model("vmamba_test")
    for path in P.flatten(m.params):
        assert P.key_to_path(P.path_to_key(path)) == path
    assert P.key_to_path("layers.0.blocks.1.op.A_logs") == ("layers_0", "blocks_1", "op", "A_logs")


@pytest.mark.parametrize("k, order", [(1, "raster"), (2, "bidirectional")])
def test_models_with_fewer_routes(k, order):
    m = jaxmamba.create_model("vmamba_test", k_routes=k)
    assert m.params["layers_0"]["blocks_0"]["op"]["x_proj_weight"].shape[0] == k
    assert jaxmamba.forward(m, jnp.zeros((1, 32 * 2, 64, 3)), order=order).shape == (1, 10)
    with pytest.raises(jaxmamba.OrderError, match="K=4"):
        jaxmamba.forward(m, jnp.zeros((1, 64, 64, 3)))


@pytest.mark.skipif(
    jax.default_backend() != "cpu" or jax.device_count() > 1,
    reason="batches are cut into slices on a single CPU device only",
)
@pytest.mark.slow  # 60-100 s of compiles (a gradient, twice): in the slow run (-m slow)
def test_batch_cut_into_pieces_gives_the_same_logits_cache_and_gradient(monkeypatch):
    """On one CPU device, stages with large activations run as slices of the batch (separate
    subgraphs); forcing every stage into two uneven slices changes nothing but the program."""
    from jaxmamba.models import model as M

    m = jaxmamba.create_model("vmamba_test", seed=2)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((5, 96, 64, 3)), jnp.float32)
    whole = M.run_with_cache(m, x, blocks=[0, 3])
    loss = jax.grad(lambda p, v: jnp.sum(M.forward(M.Model(m.config, p), v) ** 2))
    grad_whole = loss(m.params, x)
    scans = lambda: str(jax.make_jaxpr(lambda v: M.forward(m, v))(x)).count("scan[")  # noqa: E731
    n_whole = scans()
    assert M.cpu_pieces(m.config, x.shape) == (1,) * m.config.num_stages  # small: not cut
    monkeypatch.setattr(M, "_SPLIT_BYTES", 0)
    monkeypatch.setattr(M, "_MAX_PIECES", 2)
    assert M.cpu_pieces(m.config, x.shape) == (2,) * m.config.num_stages  # slices of 3 and 2
    assert M.cpu_pieces(m.config, x[:1].shape) == (1,) * m.config.num_stages
    jax.clear_caches()  # the same shapes compiled again, now cut
    assert scans() == 2 * n_whole > 0  # every stage's scans twice: two subgraphs
    cut = M.run_with_cache(m, x, blocks=[0, 3])
    np.testing.assert_allclose(cut[0], whole[0], rtol=1e-5, atol=1e-5)
    assert cut[1].keys() == whole[1].keys()
    for name, entry in whole[1].items():
        for key in ("x", "y"):
            assert cut[1][name][key].shape == entry[key].shape
            np.testing.assert_allclose(cut[1][name][key], entry[key], rtol=1e-5, atol=1e-5)
    grad_cut = loss(m.params, x)
    for g_cut, g_whole in zip(jax.tree.leaves(grad_cut), jax.tree.leaves(grad_whole), strict=True):
        np.testing.assert_allclose(g_cut, g_whole, rtol=1e-4, atol=1e-6)
    jax.clear_caches()
