"""The Flax Vision Mamba (Vim) model against the official code's fixtures, its init rules, its
config registry and its input errors."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import VIM_SIZES, rel_err, vim_converted, vim_fixture_dir

import jaxmamba
from jaxmamba.errors import ConfigError, InputError, OrderError
from jaxmamba.models.cache import LayerScan
from jaxmamba.models.model import abstract_model, select_blocks
from jaxmamba.models.vim import (
    BiMamba,
    Vim,
    default_routes,
    scan_inputs,
    to_scan_order,
    vim_routes,
)
from jaxmamba.models.vim_config import VIM_VARIANTS, VimConfig, patch_token_index
from jaxmamba.orders import SoftOrder, as_order

FIXTURES = VIM_SIZES  # fixture name -> the img_size it was built with
TOL = 1e-5
fixture, converted = vim_fixture_dir, vim_converted


@functools.cache
def intermediates(name: str) -> dict:
    """Every module output of the fixture's forward (Flax ``capture_intermediates``)."""
    model = converted(name)
    x = jnp.asarray(np.load(fixture(name) / "io.npz")["x_nhwc"])
    module = Vim(model.config)
    _, state = module.apply(
        {"params": model.params}, x, default_routes(model.config),
        capture_intermediates=True, mutable=["intermediates"],
    )  # fmt: skip
    return jax.tree.map(np.asarray, state["intermediates"])


@pytest.mark.torch
@pytest.mark.parametrize("name", FIXTURES)
def test_logits_and_features_match_the_official_model(name):
    io = np.load(fixture(name) / "io.npz")
    model = converted(name)
    logits = jaxmamba.forward(model, jnp.asarray(io["x_nhwc"]))
    assert logits.shape == io["logits"].shape
    assert rel_err(logits, io["logits"]) <= TOL
    out = intermediates(name)["norm_f"]["__call__"][0]  # (B, L, E) after the final RMSNorm
    features = out[:, model.config.cls_position]
    assert rel_err(features, io["features"]) <= TOL


@pytest.mark.torch
@pytest.mark.parametrize("name", FIXTURES)
def test_scans_of_the_first_and_last_layer_match(name):
    """What each direction's selective scan received and returned, through run_with_cache and
    scan_inputs: u, delta (before bias), delta_bias, A, B, C, D, z, y, y_gated; the merged
    out_proj input; the mixer input and output; the residual stream."""
    path = fixture(name)
    io, ref = np.load(path / "io.npz"), np.load(path / "scan.npz")
    model = converted(name)
    c = model.config
    d = c.d_inner()
    routes = default_routes(c)
    logits, cache = jaxmamba.run_with_cache(model, jnp.asarray(io["x_nhwc"]), blocks=[0, 3])
    assert list(cache) == ["layers.0", "layers.3"]
    assert rel_err(logits, io["logits"]) <= TOL  # capturing changes nothing
    captured = intermediates(name)
    for i in (0, 3):
        name_i = f"layers.{i}"
        scan = cache[name_i]
        assert isinstance(scan, LayerScan)
        us = to_scan_order(scan.x, routes)  # each direction in its own scan order
        ys = np.asarray(to_scan_order(scan.y, routes))
        s = scan_inputs(model.params[f"layers_{i}"]["mixer"], us)
        z_tok = np.asarray(scan.z)
        for k, direction in enumerate(("fwd", "bwd")):
            key = f"{name_i}.{direction}."
            part = slice(k * d, (k + 1) * d)
            z = z_tok if k == 0 else z_tok[..., ::-1]
            silu_z = z / (1 + np.exp(-z))
            ours = {
                "u": s.u[:, part], "delta": s.delta[:, part], "delta_bias": s.delta_bias[part],
                "A": s.A[part], "D": s.D[part], "B": s.B[:, k], "C": s.C[:, k],
                "z": z, "y": ys[:, k], "y_gated": ys[:, k] * silu_z,
            }  # fmt: skip
            for field, value in ours.items():
                assert np.shape(value) == ref[key + field].shape, key + field
                assert rel_err(value, ref[key + field]) <= TOL, key + field
        z = z_tok / (1 + np.exp(-z_tok))
        merged = 0.5 * z * (np.asarray(scan.y[:, 0]) + np.asarray(scan.y[:, 1]))
        assert rel_err(merged, ref[f"{name_i}.merged"]) <= TOL
        layer = captured[f"layers_{i}"]
        assert rel_err(layer["norm"]["__call__"][0], ref[f"{name_i}.mixer_in"]) <= TOL
        assert rel_err(layer["mixer"]["__call__"][0], ref[f"{name_i}.mixer_out"]) <= TOL
        residual = layer["__call__"][0][1]  # VimLayer returns (h, r)
        assert rel_err(residual, ref[f"{name_i}.residual"]) <= TOL


@pytest.mark.torch
@pytest.mark.parametrize("name", FIXTURES)
def test_token_layout_matches_the_fixture(name):
    attn = np.load(fixture(name) / "attn.npz")
    c = converted(name).config
    assert c.cls_position == int(np.ravel(attn["cls_pos"])[0])
    assert c.grid == tuple(int(v) for v in attn["grid"])
    np.testing.assert_array_equal(patch_token_index(c), attn["patch_token_index"])


def test_both_families_are_registered():
    names = jaxmamba.list_models()
    for vim in ("vim_tiny", "vim_tiny_s8", "vim_small", "vim_small_s8", "vim_base", "vim_test"):
        assert vim in names
        assert isinstance(jaxmamba.get_config(vim), VimConfig)
    assert "vmamba_tiny_s1l8" in names
    assert set(jaxmamba.list_models("vim")) | set(jaxmamba.list_models("vmamba")) == set(names)
    assert "vim_tiny" not in jaxmamba.list_models("vmamba")
    with pytest.raises(ConfigError, match="family must be"):
        jaxmamba.list_models("mamba")  # type: ignore[arg-type]
    assert isinstance(jaxmamba.get_config("vmamba_tiny_s1l8"), jaxmamba.VMambaConfig)
    custom = jaxmamba.get_config("vim_tiny", num_classes=10)
    assert custom.name == "custom" and custom.embed_dim == 192
    with pytest.raises(ConfigError, match="unknown config fields"):
        jaxmamba.get_config("vim_tiny", dims=(1,))


@pytest.mark.parametrize("config", [v for v in VIM_VARIANTS if v.name != "vim_test"])
def test_released_variant_shapes(config):
    """Every released variant: the official sizes and the parameter count of its structure."""
    widths = {"vim_tiny": 192, "vim_small": 384, "vim_base": 768}
    assert config.embed_dim == widths[config.name.removesuffix("_s8")]
    assert config.depth == 24 and config.d_state == 16 and config.img_size == (224, 224)
    assert config.grid == ((27, 27) if config.name.endswith("_s8") else (14, 14))
    model = abstract_model(config)  # shapes only: nothing drawn
    e, d, n, r = config.embed_dim, 2 * config.embed_dim, 16, math.ceil(config.embed_dim / 16)
    per_layer = 2 * d * e + 2 * (4 * d + d) + 2 * (r + 2 * n) * d + 2 * (d * r + d)
    per_layer += 2 * d * n + 2 * d + e * d + e
    total = 24 * per_layer + e * 3 * 256 + e + e + config.seq_len * e + e + 1000 * e + 1000
    assert model.num_params == total
    mixer = model.params["layers_23"]["mixer"]
    assert mixer["A_b_log"].shape == (d, n) and mixer["x_proj_b"]["weight"].shape == (r + 2 * n, d)
    assert model.params["pos_embed"].shape == (1, config.seq_len, e)


def test_official_init_rules():
    c = jaxmamba.get_config("vim_test")
    params = jaxmamba.create_model("vim_test", seed=3).params
    d, n = c.d_inner(), c.d_state
    for i in range(c.depth):
        m = params[f"layers_{i}"]["mixer"]
        for a in ("A_log", "A_b_log"):  # S4D-real: log(1..N) in every channel
            np.testing.assert_allclose(m[a], np.log(np.tile(np.arange(1, n + 1), (d, 1))))
        for skip in ("D", "D_b"):
            np.testing.assert_array_equal(m[skip], 1.0)
        dt = np.log1p(np.exp(np.asarray(m["dt_proj"]["bias"])))  # softplus: Δ at init
        assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
        assert np.std(np.log(dt)) > 0.5  # log-uniform over two decades, not a constant
        np.testing.assert_array_equal(m["dt_proj_b"]["bias"], 0.0)  # a plain, zeroed bias
        bound = c.dt_rank**-0.5
        for dt_proj in ("dt_proj", "dt_proj_b"):
            w = np.asarray(m[dt_proj]["weight"])
            assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
        out = np.asarray(m["out_proj"]["weight"])  # default bound / sqrt(depth)
        bound = 1 / math.sqrt(d) / math.sqrt(c.depth)
        assert np.abs(out).max() <= bound and np.abs(out).max() > 0.9 * bound
        np.testing.assert_array_equal(params[f"layers_{i}"]["norm"]["weight"], 1.0)
    np.testing.assert_array_equal(params["norm_f"]["weight"], 1.0)
    np.testing.assert_array_equal(params["head"]["bias"], 0.0)
    np.testing.assert_array_equal(params["patch_embed"]["proj"]["bias"], 0.0)
    for key in ("pos_embed", "cls_token"):
        assert np.abs(np.asarray(params[key])).max() < 0.2  # trunc_normal(0.02)
    assert 0.015 < float(np.std(params["pos_embed"])) < 0.025
    w = np.asarray(params["patch_embed"]["proj"]["weight"])  # lecun_normal: std 1/sqrt(fan_in)/.88
    assert abs(float(np.std(w)) * math.sqrt(3 * 256) * 0.8796 - 1) < 0.05
    other = jaxmamba.create_model("vim_test", seed=4).params
    assert not np.array_equal(other["pos_embed"], params["pos_embed"])


def test_forward_run_with_cache_and_errors():
    model = jaxmamba.create_model("vim_test")
    images = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 64, 3))
    logits, cache = jaxmamba.run_with_cache(model, images, blocks="layers.1")
    np.testing.assert_allclose(logits, jaxmamba.forward(model, images), rtol=1e-6, atol=1e-6)
    scan = cache["layers.1"]
    assert scan.x.shape == scan.y.shape == (2, 2, 64, 17) and scan.z.shape == (2, 64, 17)
    assert "z (B, D, L)" in repr(cache)
    # the two directions read different inputs (separate convs, opposite causality)
    assert not np.allclose(scan.x[:, 0], scan.x[:, 1])
    assert select_blocks(model.config, None) == ("layers.0", "layers.1")
    assert select_blocks(model.config, lambda name: name.endswith("1")) == ("layers.1",)
    with pytest.raises(InputError, match="layer 2 out of range"):
        select_blocks(model.config, 2)
    with pytest.raises(InputError, match="takes 64x64 images only"):
        jaxmamba.forward(model, jnp.zeros((1, 96, 96, 3)))
    with pytest.raises(InputError, match="channel-last"):
        jaxmamba.forward(model, jnp.zeros((1, 64, 64, 1)))


def test_patch_orders_scan_one_path_both_ways_with_the_cls_token_in_the_middle():
    model = jaxmamba.create_model("vim_test", seed=1)
    c = model.config
    images = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 64, 3))
    official = jaxmamba.forward(model, images)
    for same in ("raster", "bidirectional", "cross"):  # their path is the row-major one
        np.testing.assert_array_equal(jaxmamba.forward(model, images, order=same), official)
    spiral = jaxmamba.forward(model, images, order="spiral")
    assert not np.allclose(spiral, official, atol=1e-4)
    routes = vim_routes(c, as_order("spiral"))
    assert routes.shape == (2, c.seq_len) and routes[0, c.num_patches // 2] == c.cls_position
    np.testing.assert_array_equal(routes[1], routes[0][::-1])
    np.testing.assert_array_equal(np.sort(routes[0]), np.arange(c.seq_len))
    # The mixer with routes R on tokens x is the official mixer on the tokens permuted by R's
    # forward path, put back in token order.
    mixer = BiMamba(c)
    params = {"params": model.params["layers_1"]["mixer"]}
    x = jax.random.normal(jax.random.PRNGKey(2), (2, c.seq_len, c.embed_dim))
    ours = mixer.apply(params, x, routes)
    permuted = mixer.apply(params, x[:, routes[0]], default_routes(c))
    np.testing.assert_allclose(ours[:, routes[0]], permuted, rtol=1e-5, atol=1e-6)
    # the cache's arrays stay in token order whatever the order
    _, cache = jaxmamba.run_with_cache(model, images, order="spiral", blocks=0)
    assert cache["layers.0"].x.shape == (2, 2, c.d_inner(), c.seq_len)
    path = np.arange(c.num_patches)
    with pytest.raises(OrderError, match="not one path"):
        jaxmamba.forward(model, images, order=np.stack([path, path]))
    with pytest.raises(OrderError, match=r"one patch path as \(1, M, M\)"):  # two soft paths
        vim_routes(c, SoftOrder((c.grid,), (jnp.ones((2, 16, 16)) / 16,)))  # type: ignore[arg-type]
    with pytest.raises(OrderError, match=r"one patch path as \(1, M, M\)"):
        jaxmamba.forward(model, images, order={c.grid: jnp.ones((2, 16, 16)) / 16})


def test_config_validation_and_layout():
    c = VimConfig(img_size=(48, 80), embed_dim=96)
    assert (c.grid, c.num_patches, c.seq_len, c.cls_position) == ((3, 5), 15, 16, 7)
    assert c.d_inner() == 192 and c.dt_rank == 6
    assert c.block("layers.3", (48, 80)).grid == (3, 5)
    assert VimConfig(img_size=224) == VimConfig()
    assert hash(VimConfig()) == hash(VimConfig())
    with pytest.raises(ConfigError, match="not a Vim layer name"):
        c.block("layers.0.blocks.0", (48, 80))
    with pytest.raises(ConfigError, match="smaller than one 16x16 patch"):
        VimConfig(img_size=(8, 64))
    with pytest.raises(ConfigError, match="stride must be a positive integer"):
        VimConfig(stride=0)
    with pytest.raises(ConfigError, match="img_size must be"):
        VimConfig(img_size=(1, 2, 3))  # type: ignore[arg-type]
