"""Streaming, resumable, sharded attention means; rollout."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

import jaxmamba
from jaxmamba.attention import mean as mean_module
from jaxmamba.attention.extract import extract_attention, map_shape
from jaxmamba.attention.mean import AggregateError, attention_mean, mean_step
from jaxmamba.attention.options import DEFAULT_OPTIONS, AttentionOptions
from jaxmamba.attention.rollout import rollout
from jaxmamba.models.model import select_blocks
from jaxmamba.orders import as_order

BLOCKS = [0, 3]


@pytest.fixture(scope="module")
def setup():
    model = jaxmamba.create_model("vmamba_test", seed=4)
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((b, 64, 64, 3)).astype(np.float32) for b in (3, 3, 2, 3)]
    full = extract_attention(model, jnp.asarray(np.concatenate(data)), blocks=BLOCKS)
    return model, data, {k: np.asarray(v).mean(0) for k, v in full.items()}


def test_mean_over_uneven_batches(setup):
    model, data, ref = setup
    mean = attention_mean(model, data, blocks=BLOCKS, progress=False)
    assert mean.count == 11
    for k, v in ref.items():
        assert rel_err(mean[k], v) < 1e-5


def test_accepts_image_label_tuples(setup):
    model, data, ref = setup
    mean = attention_mean(
        model, [(x, np.zeros(len(x))) for x in data], blocks=BLOCKS, progress=False
    )
    assert rel_err(mean["layers.3.blocks.0"], ref["layers.3.blocks.0"]) < 1e-5


def test_resume_counts_no_image_twice(setup, tmp_path):
    model, data, ref = setup

    class Interrupt(Exception):
        pass

    def interrupted():
        for i, x in enumerate(data):
            if i == 3:
                raise Interrupt
            yield x

    with pytest.raises(Interrupt):
        attention_mean(
            model, interrupted(), blocks=BLOCKS, out_dir=tmp_path, save_every=1, progress=False
        )
    resumed = attention_mean(
        model, data, blocks=BLOCKS, out_dir=tmp_path, save_every=1, progress=False
    )
    assert resumed.count == 11
    for k, v in ref.items():
        assert rel_err(resumed[k], v) < 1e-5
    again = attention_mean(model, data, blocks=BLOCKS, out_dir=tmp_path, progress=False)
    assert again.count == 11
    with pytest.raises(AggregateError, match="options"):
        attention_mean(
            model, data, blocks=BLOCKS, route_mode="each", out_dir=tmp_path, progress=False
        )


def test_resume_refuses_other_custom_routes(setup, tmp_path):
    model, data, _ = setup
    routes = {
        g: jaxmamba.make_routes(name, *g)
        for g, name in [
            ((16, 16), "cross"),
            ((8, 8), "cross"),
            ((4, 4), "cross"),
            ((2, 2), "cross"),
        ]
    }
    attention_mean(model, data[:1], order=routes, blocks=3, out_dir=tmp_path, progress=False)
    again = attention_mean(
        model, data[:1], order=dict(routes), blocks=3, out_dir=tmp_path, progress=False
    )  # same content, another object: resumes
    assert again.count == 3
    routes[(2, 2)] = jaxmamba.make_routes("spiral", 2, 2)
    with pytest.raises(AggregateError, match="order_digest"):
        attention_mean(model, data[:1], order=routes, blocks=3, out_dir=tmp_path, progress=False)


def test_errors(setup):
    model, data, _ = setup
    with pytest.raises(AggregateError, match="no images"):
        attention_mean(model, [], progress=False)
    with pytest.raises(AggregateError, match="one size"):
        attention_mean(
            model, [data[0], np.zeros((1, 96, 64, 3), np.float32)], blocks=3, progress=False
        )
    with pytest.raises(AggregateError, match="save_every"):
        attention_mean(model, data, save_every=0, progress=False)
    with pytest.raises(jaxmamba.InputError):
        attention_mean(model, [np.zeros((1, 60, 64, 3), np.float32)], progress=False)


SHARDED = textwrap.dedent(
    """
    import json, numpy as np, jax, jax.numpy as jnp, jaxmamba
    from jaxmamba.attention.mean import attention_mean, _global_batch
    from jax.sharding import Mesh
    assert jax.device_count() == 8, jax.devices()
    model = jaxmamba.create_model("vmamba_test", seed=4)
    rng = np.random.default_rng(1)
    data = [rng.standard_normal((b, 64, 64, 3)).astype(np.float32) for b in (8, 5)]
    x, valid = _global_batch(data[1], np.ones(5, bool), Mesh(np.asarray(jax.devices()), ("batch",)))
    sharded = attention_mean(model, data, blocks=[0, 3], progress=False)
    one = jax.devices()[0]
    ref = jaxmamba.attention.extract.extract_attention(
        model, jax.device_put(jnp.asarray(np.concatenate(data)), one), blocks=[0, 3])
    err = max(float(np.max(np.abs(np.asarray(sharded[k]) - np.asarray(ref[k]).mean(0)))
                    / np.max(np.abs(np.asarray(ref[k])))) for k in ref)
    print(json.dumps(dict(devices=len(x.sharding.device_set), padded=int(x.shape[0]),
                          valid=int(valid.sum()), count=sharded.count, err=err)))
    """
)


def test_sharded_over_8_devices_equals_single_device():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    out = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8 and result["padded"] == 8 and result["valid"] == 5
    assert result["count"] == 13
    assert result["err"] < 1e-5


def test_rollout_properties():
    rng = np.random.default_rng(0)
    a1, a2 = rng.standard_normal((2, 6, 6))
    r = rollout({"layers.1.blocks.1": a2, "layers.1.blocks.0": a1, "layers.0.blocks.0": a1})
    assert set(r) == {"layers.0", "layers.1"}

    def m(a):
        a = np.abs(a) / np.abs(a).sum(-1, keepdims=True)
        return 0.5 * (a + np.eye(6))

    expected = m(a2) @ m(a1)  # later block applied after the earlier one
    np.testing.assert_allclose(r["layers.1"], expected / expected.sum(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(r["layers.1"]).sum(-1), 1, rtol=1e-6)
    np.testing.assert_allclose(rollout({"layers.0.blocks.0": np.eye(4)})["layers.0"], np.eye(4))
    assert set(rollout({"layers.0.blocks.0": a1, "layers.1.blocks.0": a2}, stage=1)) == {"layers.1"}
    with pytest.raises(AggregateError, match="layers.i.blocks.j"):
        rollout({"stage0": a1})
    with pytest.raises(AggregateError, match="no maps"):
        rollout({"layers.0.blocks.0": a1}, stage=2)


# The batch step of the 1000-image GPU run (`bash benchmarks/gpu_check.sh --mean-only`):
# checked to lower for CUDA on this CPU, from abstract shapes only (nothing is allocated).


def zero_sums(model, names, size, options=DEFAULT_OPTIONS):
    blocks = [model.config.block(n, size) for n in names]
    return {b.name: jnp.zeros(map_shape(b, 4, options), jnp.float32) for b in blocks}


def test_mean_step_is_what_attention_mean_adds(setup):
    model, data, _ = setup
    names = select_blocks(model.config, BLOCKS)
    padded = np.concatenate([data[0], np.full((1, 64, 64, 3), 7.0, np.float32)])  # 3 + 1 pad
    valid = jnp.asarray([True, True, True, False])
    start = zero_sums(model, names, (64, 64))
    sums, n = mean_step(model, start, padded, valid, as_order(None), names, AttentionOptions())
    mean = attention_mean(model, [data[0]], blocks=BLOCKS, progress=False)
    assert int(n) == 3 and set(sums) == set(mean) == set(names)
    for k in names:
        assert rel_err(sums[k] / 3, mean[k]) < 1e-5
    assert all(v.is_deleted() for v in start.values())  # donated: summed in place


@pytest.mark.parametrize(
    ("route_mode", "channels"),
    [("sum", "mean"), pytest.param("each", (1, 5), marks=pytest.mark.slow)],
)
def test_mean_step_in_steps_of_a_few_images_per_device(setup, monkeypatch, route_mode, channels):
    """The maps made two images of each device at a time, with padding, in a lax.scan: the
    running sums plus the weighted sum of every image's maps, whatever the steps."""
    model, data, _ = setup
    options = AttentionOptions(route_mode, channels)
    names = select_blocks(model.config, BLOCKS)
    x = np.concatenate(data[:2])  # 6 images: 2 "devices" of 3, steps of 2 (one padded)
    valid = np.array([True, False, True, True, True, False])
    maps = extract_attention(model, jnp.asarray(x), blocks=BLOCKS, route_mode=route_mode,
                             channels=channels)  # fmt: skip
    monkeypatch.setattr(mean_module, "_step_images", lambda group, k, options, n: min(n, 2))
    rng = np.random.default_rng(2)
    start = {k: jnp.asarray(rng.standard_normal(v.shape), jnp.float32)
             for k, v in zero_sums(model, names, (64, 64), options).items()}  # fmt: skip
    expected = {k: np.asarray(start[k]) + np.asarray(maps[k])[valid].sum(0) for k in names}
    # a fresh program (no donation): the patched step size is read when it is traced
    step = jax.jit(mean_step.__wrapped__, static_argnums=(5, 6, 7, 8, 9))
    shards = 2  # two "devices": the one-device plan is every other mean test's
    sums, n = step(model, dict(start), jnp.asarray(x), jnp.asarray(valid), as_order(None),
                   names, options, None, (), shards)  # fmt: skip
    assert int(n) == 4
    for k in names:
        assert rel_err(sums[k], expected[k]) < 1e-5, (shards, k)


def test_mean_step_memory_does_not_grow_with_the_maps_of_the_batch():
    """XLA's buffers for one step at batch 8 hold less than batch 1's plus the maps of 7 more
    images (the old step, all maps of a batch before the weighted sum, held them all)."""
    model = jaxmamba.create_model("vmamba_test")
    names = select_blocks(model.config, 0)  # two 64x64 grids' blocks at 256x256: L = 4096
    size = (256, 256)

    def bytes_at(b):
        args = (model, zero_sums(model, names, size), jnp.zeros((b, *size, 3)),
                jnp.ones(b, bool), as_order(None), names, AttentionOptions())  # fmt: skip
        m = mean_step.lower(*args).compile().memory_analysis()
        return m.temp_size_in_bytes + m.output_size_in_bytes

    one_image_maps = len(names) * 4096**2 * 4
    assert bytes_at(8) - bytes_at(1) < 7 * one_image_maps


# "pallas" is what implementation=None picks on a GPU; on this CPU None resolves to "xla" while
# tracing, so the GPU's program is lowered by naming it.
@pytest.mark.parametrize("implementation", ["pallas", "xla"])
def test_mean_step_of_the_gpu_run_lowers_for_cuda(implementation):
    model = jax.eval_shape(lambda: jaxmamba.create_model("vmamba_tiny_s1l8"))
    assert all(isinstance(p, jax.ShapeDtypeStruct) for p in jax.tree.leaves(model.params))
    names = select_blocks(model.config)
    images = jax.ShapeDtypeStruct((128, 224, 224, 3), jnp.float32)  # batch 128, 224²
    valid = jax.ShapeDtypeStruct((128,), jnp.bool_)
    sums = jax.eval_shape(lambda: zero_sums(model, names, (224, 224)))
    args = (model, sums, images, valid, as_order(None), names, AttentionOptions(), implementation)
    lowered = mean_step.trace(*args).lower(lowering_platforms=("cuda",))
    sums, count = lowered.out_info
    side = {0: 56, 1: 28, 2: 14, 3: 7}  # patch grid of each stage at 224²
    assert len(names) == 14 and model.config.k_routes == 4
    expected = {n: (side[int(n.split(".")[1])] ** 2,) * 2 for n in names}
    assert {k: v.shape for k, v in sums.items()} == expected
    assert all(v.dtype == jnp.float32 for v in sums.values()) and count.shape == ()
    text = lowered.as_text()
    assert ("xla.gpu.triton" in text) == (implementation == "pallas")  # the Pallas scan kernels
