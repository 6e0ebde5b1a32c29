"""The cost model of an attention mean: FLOP counts from the definition, memory against XLA's
own account of the compiled step, and the line write_study prints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import jaxmamba
from jaxmamba.attention import mean as mean_module
from jaxmamba.attention.cost import Cost, matmul_rate, mean_cost
from jaxmamba.attention.options import DEFAULT_OPTIONS, AttentionOptions
from jaxmamba.models.model import cpu_pieces, select_blocks


@pytest.fixture(scope="module")
def model():
    return jaxmamba.create_model("vmamba_test")


def test_map_flops_and_sums_follow_the_definition(model):
    cfg = model.config
    cost = mean_cost(model, (64, 64), 4)
    expected = 0.0
    for name in cfg.block_names():
        b = cfg.block(name, (64, 64))
        l = b.grid[0] * b.grid[1]
        expected += cfg.k_routes * l * (l + 1) // 2 * cfg.d_inner(b.stage) * cfg.d_state * 2
    assert cost.map_flops == expected
    one = mean_cost(model, (64, 64), 4, blocks=[0])
    assert one.map_flops < cost.map_flops and one.batch == 4
    each = mean_cost(model, (64, 64), 4, options=AttentionOptions(route_mode="each"))
    assert each.sum_bytes == cfg.k_routes * cost.sum_bytes  # one map per route and block
    # larger images: the maps grow as L² per block, the forward as L
    big = mean_cost(model, (128, 128), 4)
    assert (
        15 < big.map_flops / cost.map_flops <= 16
        and 3.5 < big.forward_flops / cost.forward_flops <= 4
    )


def test_sums_are_what_attention_mean_holds(model):
    names = select_blocks(model.config)
    blocks = tuple(model.config.block(n, (64, 64)) for n in names)
    table = mean_module.route_table(model.config, (64, 64), None)
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    sums = mean_module.zero_sums(model, blocks, table, DEFAULT_OPTIONS, mesh)
    assert mean_cost(model, (64, 64), 2).sum_bytes == sum(v.nbytes for v in sums.values())


@pytest.mark.parametrize("batch", [1, 8])
def test_predicted_peak_memory_is_within_a_factor_of_two_of_xla(model, batch):
    names = select_blocks(model.config)
    size = (128, 128)
    x = jnp.zeros((batch, *size, 3))
    table = mean_module.route_table(model.config, size, None)
    blocks = tuple(model.config.block(n, size) for n in names)
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    sums = mean_module.zero_sums(model, blocks, table, DEFAULT_OPTIONS, mesh)
    args = (model, sums, x, jnp.ones(batch, bool), table, names, DEFAULT_OPTIONS, None,
            cpu_pieces(model.config, x.shape), 1)  # fmt: skip
    m = mean_module.mean_step.lower(*args).compile().memory_analysis()
    if m is None:
        pytest.skip("this backend gives no memory analysis")
    xla = (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
           - m.alias_size_in_bytes)  # fmt: skip
    predicted = mean_cost(model, size, batch).peak_bytes
    assert 0.5 < predicted / xla < 2.0, (predicted, xla)


def test_the_printed_line_and_the_rate():
    cost = Cost(map_flops=2e9, forward_flops=1e9, param_bytes=2**30, sum_bytes=0, step_bytes=0,
                activation_bytes=2**20, batch=4)  # fmt: skip
    text = cost.describe(1000, 1e11, runs=3)
    assert "3000 images" in text and "100 GFLOP/s" in text and "1.0 GB" in text
    assert cost.seconds_per_image(2e11) == pytest.approx(cost.seconds_per_image(1e11) / 2)
    assert 1e8 < matmul_rate(n=256, repeats=1) < 1e16
