"""Results that cross a seam are typed values: ScanInputs, ScanCache, AttentionMaps (a pytree that
keeps its count and skipped), AttentionOptions passed whole, the batch slicing set by the caller."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmamba
from jaxmamba.attention.extract import block_attention, block_params
from jaxmamba.attention.maps import AttentionMaps
from jaxmamba.attention.options import AttentionOptions
from jaxmamba.errors import AttentionError
from jaxmamba.kernels import selective_scan
from jaxmamba.models.cache import BlockScan, ScanCache
from jaxmamba.models.model import apply
from jaxmamba.models.ss2d import ScanInputs, cross_merge, cross_scan, scan_inputs
from jaxmamba.orders import as_order


@pytest.fixture(scope="module")
def model():
    return jaxmamba.create_model("vmamba_test", seed=3)


def _mean(skipped=3, count=7):
    blocks = [jaxmamba.Block("layers.3.blocks.0", 3, 0, (2, 2)),
              jaxmamba.Block("layers.2.blocks.1", 2, 1, (4, 3))]  # fmt: skip
    maps = {"layers.3.blocks.0": jnp.arange(16.0).reshape(4, 4),
            "layers.2.blocks.1": jnp.ones((12, 12))}  # fmt: skip
    return AttentionMaps(maps, blocks, jaxmamba.Order("spiral"), AttentionOptions(), count, skipped)


def test_tree_map_keeps_skipped_count_grid_and_order():
    mean = _mean()
    doubled = jax.tree.map(lambda a: 2 * a, mean)
    assert isinstance(doubled, AttentionMaps)
    assert doubled.skipped == 3 and doubled.count == 7
    assert doubled.grid("layers.2.blocks.1") == (4, 3) and doubled.order == jaxmamba.Order("spiral")
    assert list(doubled) == ["layers.3.blocks.0", "layers.2.blocks.1"]  # forward order kept
    np.testing.assert_array_equal(doubled["layers.3.blocks.0"], 2 * np.arange(16.0).reshape(4, 4))
    assert "3 skipped" in repr(doubled)


def test_leaves_are_the_maps_in_block_order_keyed_by_name():
    mean = _mean()
    leaves = jax.tree_util.tree_leaves_with_path(mean)
    assert [jax.tree_util.keystr(p) for p, _ in leaves] == [
        "['layers.3.blocks.0']", "['layers.2.blocks.1']"
    ]  # fmt: skip
    assert [leaf.shape for _, leaf in leaves] == [(4, 4), (12, 12)]


def test_jit_through_attention_maps_keeps_what_describes_them():
    mean = _mean(skipped=5, count=11)
    out = jax.jit(lambda m: jax.tree.map(jnp.sqrt, m))(mean)
    assert (out.skipped, out.count, out.order_name) == (5, 11, "spiral")
    assert out.options == AttentionOptions()
    np.testing.assert_allclose(out["layers.3.blocks.0"], np.sqrt(np.arange(16.0)).reshape(4, 4))
    assert out.replace(skipped=0).skipped == 0 and out.skipped == 5  # frozen: a copy


def test_a_real_mean_keeps_skipped_through_tree_map(model):
    x = np.ones((3, 64, 64, 3), np.float32)
    x[1, 0, 0, 0] = np.nan
    mean = jaxmamba.attention_mean(model, [x], blocks=3, nonfinite="skip", progress=False)
    assert (mean.count, mean.skipped) == (2, 1)
    again = jax.tree.map(lambda a: a, mean)
    assert (again.count, again.skipped, again.blocks) == (2, 1, mean.blocks)


def test_scan_inputs_is_a_named_tuple_the_scan_takes_whole(model):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 64, 64, 3)), jnp.float32)
    _, cache = jaxmamba.run_with_cache(model, x, blocks=3)
    name = "layers.3.blocks.0"
    routes = jaxmamba.make_routes("cross", 2, 2)
    s = scan_inputs(block_params(model, name), cross_scan(cache.scan_input(name), routes))
    assert isinstance(s, ScanInputs) and s._fields[0] == "u" and s._fields[-1] == "delta_bias"
    b, d, l = cache.scan_input(name).shape
    assert s.u.shape == s.delta.shape == (b, 4 * d, l) and s.D.shape == s.delta_bias.shape
    assert s.final_delta().shape == (b, 4, d, l) and bool(jnp.all(s.final_delta() > 0))
    y = selective_scan(*s, delta_softplus=True)  # the model's scan output, rebuilt
    merged = cross_merge(y.reshape(b, 4, d, l), routes)
    np.testing.assert_allclose(merged, cache.scan_output(name), rtol=1e-5, atol=1e-5)


def test_run_with_cache_gives_a_scan_cache(model):
    x = jnp.zeros((1, 64, 64, 3))
    _, cache = jaxmamba.run_with_cache(model, x, blocks=[3, 0])
    assert isinstance(cache, ScanCache)
    assert list(cache) == list(jaxmamba.select_blocks(model.config, [0, 3]))  # forward order
    entry = cache["layers.0.blocks.0"]
    assert isinstance(entry, BlockScan) and entry["x"] is entry.x and entry["y"] is entry.y
    assert entry.x.shape == entry.y.shape == (1, 32, 256)
    assert "layers.0.blocks.0 (1, 32, 256)" in repr(cache)
    with pytest.raises(KeyError, match="not cached"):
        cache["layers.1.blocks.0"]
    doubled = jax.tree.map(lambda a: 2 * a, cache)
    assert isinstance(doubled, ScanCache) and list(doubled) == list(cache)
    np.testing.assert_array_equal(doubled.scan_input("layers.0.blocks.0"), 2 * entry.x)
    _, empty = apply(model, x, as_order(None), None, frozenset())
    assert isinstance(empty, ScanCache) and len(empty) == 0


def test_pieces_are_the_callers_choice_with_the_same_results(model):
    """The batch slicing is an argument of apply: cut or whole, the logits and cache agree."""
    x = jnp.asarray(np.random.default_rng(1).standard_normal((3, 64, 64, 3)), jnp.float32)
    names = frozenset({"layers.0.blocks.0"})
    whole = apply(model, x, as_order(None), None, names, ())
    cut = apply(model, x, as_order(None), None, names, (2, 1, 3, 1))
    np.testing.assert_allclose(cut[0], whole[0], rtol=1e-5, atol=1e-5)
    name = "layers.0.blocks.0"
    got, want = cut[1].scan_output(name), whole[1].scan_output(name)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    sliced = jax.make_jaxpr(lambda v: apply(model, v, as_order(None), None, frozenset(), (2,)))(x)
    plain = jax.make_jaxpr(lambda v: apply(model, v, as_order(None), None, frozenset(), ()))(x)
    assert str(sliced).count("scan[") > str(plain).count("scan[") > 0  # stage 0 twice


def test_block_attention_takes_one_options_value(model):
    x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 256, 4)), jnp.float32)
    op = block_params(model, "layers.3.blocks.0")
    routes = jaxmamba.make_routes("cross", 2, 2)
    each = block_attention(op, x, routes, AttentionOptions(route_mode="each"))
    summed = block_attention(op, x, routes)
    assert each.shape == (1, 4, 4, 4) and summed.shape == (1, 4, 4)
    np.testing.assert_allclose(each.sum(axis=1), summed, rtol=1e-5, atol=1e-6)
    with pytest.raises(AttentionError, match="route_mode"):
        AttentionOptions(route_mode="both")
