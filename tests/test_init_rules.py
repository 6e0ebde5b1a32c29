"""The host-drawn initialisation: every parameter has its layer's rule, the NumPy draws follow the
same distributions as the JAX initialisers, and a value depends only on (seed, path, shape)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmamba
from jaxmamba.models import params as P
from jaxmamba.models.config import get_config
from jaxmamba.models.init_rules import (
    ALog,
    Constant,
    DtBias,
    TruncNormal,
    Uniform,
    declare,
    draw_params,
    trace_params,
)
from jaxmamba.models.model import _init_args, abstract_model
from jaxmamba.models.vmamba import VSSM

# One small config per family: v05_noz (downsample v3, patch embed v2), v2, v0/gated (v1).
FAMILIES = {
    "vmamba_test": {},
    "vanilla_vmamba_test": {},
    "vmamba_tiny_s2l5": dict(dims=16, depths=(1, 1, 1, 1)),
    "vmamba_tiny_s1l8": dict(dims=16, depths=(1, 2, 1, 1), num_classes=7),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_parameter_declares_a_rule_with_its_layers_shape(name):
    config = get_config(name, **FAMILIES[name])
    shapes, rules = trace_params(VSSM(config), *_init_args(config))
    flat = P.flatten(shapes)
    assert set(flat) == set(rules)
    model = jaxmamba.create_model(config, seed=5)
    got = P.flatten(model.params)
    assert {k: (v.shape, v.dtype) for k, v in got.items()} == {
        k: (v.shape, v.dtype) for k, v in flat.items()
    }
    assert jax.tree.structure(abstract_model(config).params) == jax.tree.structure(model.params)
    kinds = {type(r) for r in rules.values()}
    assert {TruncNormal, Uniform, Constant, DtBias, ALog} <= kinds


def test_numpy_draws_match_the_jax_initialisers():
    """Each rule a model declares, drawn 60 000 times by both forms: the same distribution."""
    config = get_config("vmamba_tiny_s1l8", dims=32, depths=(1, 1, 1, 1))
    _, rules = trace_params(VSSM(config), *_init_args(config))
    kinds = set()
    for i, rule in enumerate(sorted(set(rules.values()), key=repr)):
        kinds.add(type(rule))
        shape = (4, 16) if isinstance(rule, ALog) else (60_000,)
        host, ref = rule.draw(np.random.default_rng(i), shape), rule(jax.random.PRNGKey(i), shape)
        assert host.shape == ref.shape == shape and host.dtype == ref.dtype == np.float32, rule
        host, ref = np.asarray(host, np.float64), np.asarray(ref, np.float64)
        if isinstance(rule, Constant | ALog):
            np.testing.assert_array_equal(host, ref)
            continue
        tolerance = 6 * ref.std() / np.sqrt(host.size)  # 6 standard errors of the mean
        assert abs(host.mean() - ref.mean()) < tolerance, rule
        assert abs(host.std() / ref.std() - 1) < 0.02, rule
        for q in (0.1, 0.5, 0.9):  # the whole shape, not only two moments
            assert abs(np.quantile(host, q) - np.quantile(ref, q)) < 0.06 * ref.std(), rule
        for q in (0.01, 0.99):  # the tails: fewer draws, wider margin
            assert abs(np.quantile(host, q) - np.quantile(ref, q)) < 0.1 * ref.std(), rule
        if isinstance(rule, Uniform):
            bound = np.float32(rule.bound)
            assert np.abs(host).max() <= bound and np.abs(ref).max() <= bound
        if isinstance(rule, TruncNormal):
            assert np.abs(host).max() <= 2.0 and np.abs(ref).max() <= 2.0
    assert kinds == {TruncNormal, Uniform, Constant, DtBias, ALog}


def test_rules_give_the_official_distributions():
    rng = np.random.default_rng(0)
    x = TruncNormal(0.02).draw(rng, (200_000,))
    assert x.dtype == np.float32 and abs(x.std() - 0.02) < 2e-4 and abs(x.mean()) < 2e-4
    wide = TruncNormal(1.5).draw(rng, (200_000,))  # the truncation at ±2 bites: resampled
    assert np.abs(wide).max() <= 2.0 and (np.abs(wide) > 1.9).any()
    u = Uniform.torch(25).draw(rng, (100_000,))
    assert np.abs(u).max() <= 0.2 and abs(u.std() - 0.2 / np.sqrt(3)) < 1e-3
    dt = jax.nn.softplus(DtBias().draw(rng, (50_000,)))
    assert float(dt.min()) >= 1e-3 * (1 - 1e-5) and float(dt.max()) <= 0.1 * (1 + 1e-5)
    logs = np.log(np.asarray(dt))  # log-uniform in [1e-3, 0.1]
    assert abs(logs.mean() - (np.log(1e-3) + np.log(0.1)) / 2) < 0.02
    np.testing.assert_allclose(np.exp(ALog().draw(rng, (3, 4))), np.tile(np.arange(1, 5), (3, 1)))


def test_values_depend_on_seed_path_and_shape_only():
    a = jaxmamba.create_model("vmamba_test", seed=0)
    b = jaxmamba.create_model("vmamba_test", seed=0)
    c = jaxmamba.create_model("vmamba_test", seed=1)
    d = jaxmamba.create_model("vmamba_test", seed=0, num_classes=3)  # only the head differs
    fa, fb, fc, fd = (P.flatten(m.params) for m in (a, b, c, d))
    for path, value in fa.items():
        np.testing.assert_array_equal(value, fb[path])
        if path[0] != "classifier":
            np.testing.assert_array_equal(value, fd[path])
    w = ("layers_0", "blocks_0", "op", "in_proj", "weight")
    assert not np.allclose(fa[w], fc[w])
    # Two blocks of the same shapes get different values: the path seeds the generator.
    two = P.flatten(jaxmamba.create_model("vmamba_test", depths=(2, 1, 1, 1)).params)
    x0 = two[("layers_0", "blocks_0", "op", "x_proj_weight")]
    x1 = two[("layers_0", "blocks_1", "op", "x_proj_weight")]
    assert x0.shape == x1.shape and not np.allclose(x0, x1)
    np.testing.assert_array_equal(x0, fa[("layers_0", "blocks_0", "op", "x_proj_weight")])


def test_a_parameter_without_a_rule_is_refused():
    class Bare(nn.Module):
        @nn.compact
        def __call__(self, x):
            ok = declare(self, "ok", Constant(1.0), (3,))
            return x * ok + self.param("bare", nn.initializers.zeros, (3,))

    with pytest.raises(RuntimeError, match="bare declares no init rule"):
        draw_params(Bare(), 0, jnp.zeros((3,)))


def test_create_model_compiles_nothing():
    compiles = []

    def listen(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        jaxmamba.create_model(
            "vmamba_test", dims=(24, 48, 96, 192), seed=-11
        )  # shapes no test uses
        assert compiles == []
        jax.jit(lambda v: v * 3.0)(jnp.arange(7.0))  # the listener does hear a compilation
        assert compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
