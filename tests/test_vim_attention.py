"""Exact hidden attention of Vision Mamba (Vim) layers against the official code's float64 maps,
through the same entry points as VMamba: extract_attention, verify, attention_mean, rollout."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import VIM_SIZES, rel_err, vim_converted, vim_fixture_dir

import jaxmamba
from jaxmamba.attention.extract import block_attention, block_params, block_routes
from jaxmamba.attention.options import AttentionOptions
from jaxmamba.attention.tiles import spatial_maps
from jaxmamba.models.vim_config import patch_token_index
from jaxmamba.orders import as_order

FIXTURES = VIM_SIZES
fixture = vim_fixture_dir


@functools.cache
def converted(name: str):
    """The fixture's model and its input images ``(B, H, W, 3)``."""
    images = jnp.asarray(np.load(fixture(name) / "io.npz")["x_nhwc"])
    return vim_converted(name), images


@pytest.mark.parametrize("name", list(FIXTURES))
def test_maps_equal_the_official_float64_maps(name):
    """Every layer: the merged map (the default), and with route_mode="each" the forward map
    and the backward map in token coordinates, from our own forward, to 1e-5 (the float32
    noise floor of the fixtures is ~1e-6)."""
    model, images = converted(name)
    ref = np.load(fixture(name) / "attn.npz")
    merged = jaxmamba.extract_attention(model, images)
    each = jaxmamba.extract_attention(model, images, route_mode="each")
    assert list(merged) == [f"layers.{i}" for i in range(4)]
    for layer in merged:
        assert rel_err(merged[layer], ref[f"{layer}.merged"]) < 1e-5, layer
        assert rel_err(each[layer][:, 0], ref[f"{layer}.fwd"]) < 1e-5, layer
        assert rel_err(each[layer][:, 1], ref[f"{layer}.bwd"]) < 1e-5, layer
    block = merged.block("layers.0")  # the token layout travels with the maps
    assert block.cls == int(ref["cls_pos"][0]) and block.grid == tuple(ref["grid"])
    assert block.length == merged["layers.0"].shape[-1] == block.grid[0] * block.grid[1] + 1
    assert merged.order_name == "raster"
    tokens = patch_token_index(model.config)
    np.testing.assert_array_equal(tokens, ref["patch_token_index"])
    patch = np.asarray(merged["layers.3"])[:, tokens][:, :, tokens].reshape(
        ref["layers.3.merged_patch"].shape
    )
    assert rel_err(patch, ref["layers.3.merged_patch"]) < 1e-5


@pytest.mark.parametrize("name", ["tiny_s8", "small_p16_48x80"])  # odd M: CLS at M//2 and L−1−M//2
def test_maps_from_the_stored_scan_inputs_in_float64(name):
    """The official scans' own Δ, A, B, C (scan.npz) through the tiled products with the
    layer's two token routes, in float64: equal to the fixture's float64 maps to 1e-12."""
    model, _ = converted(name)
    scan, ref = np.load(fixture(name) / "scan.npz"), np.load(fixture(name) / "attn.npz")
    routes, _ = block_routes(model.config, as_order("raster"), model.config.grid)
    with jax.enable_x64(True):
        for layer in ("layers.0", "layers.3"):
            get = lambda d, k: np.asarray(scan[f"{layer}.{d}.{k}"], np.float64)  # noqa: B023
            dt = np.stack([np.logaddexp(get(d, "delta") + get(d, "delta_bias")[:, None], 0)
                           for d in ("fwd", "bwd")], axis=1)  # fmt: skip
            A = np.broadcast_to(
                np.stack([get(d, "A") for d in ("fwd", "bwd")]),
                (len(dt), 2) + get("fwd", "A").shape,
            )
            B = np.stack([get(d, "B") for d in ("fwd", "bwd")], axis=1)
            C = np.stack([get(d, "C") for d in ("fwd", "bwd")], axis=1)
            args = [jnp.asarray(a, jnp.float64) for a in (dt, A, B, C)]
            each = np.asarray(spatial_maps(*args, routes, each=True))
            assert each.dtype == np.float64
            assert rel_err(each[:, 0], ref[f"{layer}.fwd"]) < 1e-12
            assert rel_err(each[:, 1], ref[f"{layer}.bwd"]) < 1e-12
            assert rel_err(0.5 * each.sum(1), ref[f"{layer}.merged"]) < 1e-12


def test_verify_rebuilds_the_merged_gated_output_in_any_order():
    """The per-channel maps of both directions (with their D skips) applied to their own scan
    inputs, gated, rebuild the layer's out_proj input; under a spiral order as well, where the
    CLS token stays in the middle of both scans."""
    model, images = converted("tiny_s8")
    for order in (None, "spiral"):
        errors = jaxmamba.verify(model, images, order=order, channel_group=32)
        assert set(errors) == {f"layers.{i}" for i in range(4)}
        assert max(errors.values()) < 1e-5, (order, errors)
    # the check can fail: a map of the wrong direction order does not rebuild the output
    op = block_params(model, "layers.0")
    _, cache = jaxmamba.run_with_cache(model, images, blocks=[0])
    x = cache.scan_input("layers.0")
    good = block_attention(op, x, block_routes(model.config, as_order("raster"), (7, 7))[0])
    swapped = block_attention(
        op, x[:, ::-1], block_routes(model.config, as_order("raster"), (7, 7))[0]
    )
    assert rel_err(swapped, good) > 1e-2


def test_orders_change_the_maps_and_keep_the_cls_token():
    model, images = converted("tiny_p16")
    raster = jaxmamba.extract_attention(model, images, blocks=[0])
    spiral = jaxmamba.extract_attention(model, images, blocks=[0], order="spiral")
    assert spiral.order_name == "spiral" and spiral.block("layers.0").cls == 8
    assert rel_err(spiral["layers.0"], raster["layers.0"]) > 1e-3
    routes, _ = block_routes(model.config, as_order("spiral"), (4, 4))
    assert routes[0][8] == 8 and routes[1][8] == 8  # M = 16: the CLS token is read in the middle
    # the forward map is causal along the spiral path: zero where the source comes later
    each = np.asarray(jaxmamba.extract_attention(model, images, blocks=[0], order="spiral",
                                                 route_mode="each")["layers.0"])  # fmt: skip
    position = np.argsort(routes[0])  # token -> forward scan position
    later = position[None, :] > position[:, None]
    assert np.all(each[:, 0][:, later] == 0) and np.any(each[:, 1][:, later] != 0)


def test_mean_rollout_and_channel_options():
    model, images = converted("small_p16_48x80")
    maps = jaxmamba.extract_attention(model, images)
    mean = jaxmamba.attention_mean(model, [images[:1], images[1:]], progress=False)
    assert mean.count == 2
    for layer in maps:
        assert rel_err(mean[layer], np.asarray(maps[layer]).mean(0)) < 1e-5
    rolled = jaxmamba.rollout(maps)
    assert list(rolled) == ["layers"] and rolled["layers"].shape == (2, 16, 16)
    np.testing.assert_allclose(np.asarray(rolled["layers"]).sum(-1), 1, rtol=1e-5)
    # per-channel maps: their channel mean is the channel-mean map
    d = model.config.d_inner()
    subset = jaxmamba.extract_attention(model, images, blocks=[1], channels=tuple(range(d)))
    assert subset["layers.1"].shape == (2, d, 16, 16)
    assert rel_err(np.asarray(subset["layers.1"]).mean(1), maps["layers.1"]) < 1e-5
    skip = jaxmamba.extract_attention(model, images, blocks=[1], include_skip=True)
    Ds = [model.params["layers_1"]["mixer"][k] for k in ("D", "D_b")]
    diag = 0.5 * sum(float(np.mean(D)) for D in Ds)
    diff = np.asarray(skip["layers.1"]) - np.asarray(maps["layers.1"])
    np.testing.assert_allclose(diff, np.broadcast_to(diag * np.eye(16), diff.shape), atol=1e-6)


def test_a_soft_order_of_two_paths_is_refused_by_name():
    model = jaxmamba.create_model("vim_test")
    soft = {(4, 4): jnp.ones((2, 16, 16)) / 16}  # a Vim soft order is one path: (1, M, M)
    with pytest.raises(jaxmamba.OrderError, match=r"one patch path as \(1, M, M\)"):
        jaxmamba.extract_attention(model, jnp.zeros((1, 64, 64, 3)), order=soft)


def test_options_value_is_the_same_for_both_families():
    model = jaxmamba.create_model("vim_test")
    maps = jaxmamba.extract_attention(model, jnp.ones((1, 64, 64, 3)), route_mode="each")
    assert maps.options == AttentionOptions(route_mode="each")
    assert maps["layers.0"].shape == (1, 2, 17, 17)


def test_findings_on_the_patch_part_and_the_depth_halves():
    """summarize on a Vim model: per layer the findings of the patch-to-patch part of the mean
    map (the official maps' ``merged_patch`` averaged), the layers one stage, and the early /
    late halves of the layers."""
    from jaxmamba.attention.findings import block_findings, summarize

    model, images = converted("tiny_s8")
    ref = np.load(fixture("tiny_s8") / "attn.npz")
    s = summarize(model, images)
    assert s["order"] == "raster" and list(s["stages"]) == ["layers"]
    assert s["stages"]["layers"]["blocks"] == 4 and s["stages"]["layers"]["grid"] == [7, 7]
    path = np.arange(49)
    for i in range(4):
        patch = ref[f"layers.{i}.merged_patch"].mean(0).reshape(49, 49)
        expected = block_findings(patch, (7, 7), np.stack([path, path[::-1]]))
        for key, value in expected.items():
            assert s["blocks"][f"layers.{i}"][key] == pytest.approx(value, rel=1e-4), (i, key)
    early = np.mean([s["blocks"][f"layers.{i}"]["attention_distance"] for i in (0, 1)])
    assert s["depth"]["early"]["attention_distance"] == pytest.approx(early)
    late = np.mean([s["blocks"][f"layers.{i}"]["attention_distance"] for i in (2, 3)])
    assert s["depth"]["late"]["attention_distance"] == pytest.approx(late)
