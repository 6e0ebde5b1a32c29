"""The Pallas selective scan in interpret mode (CPU) against float64 NumPy and the XLA path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err, scan64

from jaxmamba.kernels import ScanError, selective_scan
from jaxmamba.kernels import scan_pallas as sp


def make(b=2, d=96, n=1, l=37, g=4, seed=0, a_max=24.0):
    """Kernel inputs: Δ log-uniform in [1e-4, 2], A ∈ [−a_max, −0.05]."""
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    dt = np.exp(rng.uniform(np.log(1e-4), np.log(2.0), (b, d, l))).astype(np.float32)
    A = -rng.uniform(0.05, a_max, (d, n)).astype(np.float32)
    return f(b, d, l), dt, A, f(b, g, n, l), f(b, g, n, l)


def make_raw(b=2, d=96, n=1, l=37, g=4, seed=0, a_max=24.0):
    """``selective_scan`` inputs whose softplus(delta + delta_bias) spans [1e-4, 2]."""
    u, dt, A, B, C = make(b, d, n, l, g, seed, a_max)
    rng = np.random.default_rng(seed + 1)
    bias = rng.uniform(-0.5, 0.5, d).astype(np.float32)
    delta = (np.log(np.expm1(dt.astype(np.float64))) - bias[:, None]).astype(np.float32)
    D = rng.standard_normal(d).astype(np.float32)
    return dict(u=u, delta=delta, A=A, B=B, C=C, D=D, delta_bias=bias)


CASES = [(1, 4, 37), (1, 1, 100), (1, 4, 300), (16, 4, 53), (16, 1, 37)]  # (n, g, l), d = 96


class TestInterpret:
    @pytest.mark.parametrize("platform", ["gpu", "tpu"])
    @pytest.mark.parametrize("n, g, l", CASES)
    def test_forward_matches_float64(self, platform, n, g, l):
        x = make(n=n, g=g, l=l, seed=n + g + l)
        y = sp.scan(*x, interpret=True, platform=platform)
        assert y.shape == x[0].shape and y.dtype == jnp.float32
        assert rel_err(y, scan64(*x)) < 1e-5

    @pytest.mark.parametrize(
        "bs",
        [
            sp.BlockSizes(block_d=16, block_l=4, chunk=8, block_d_bwd=16),
            sp.BlockSizes(block_d=64, block_l=16, chunk=32, block_d_bwd=8),
            sp.BlockSizes(tpu_block_d=16, tpu_block_l=128),
            sp.BlockSizes(align_l=1, prefetch=True),
            sp.BlockSizes(align_l=8, prefetch=True, block_l=4, chunk=8),
        ],
        ids=["small", "large", "tpu16", "nopad-prefetch", "pad8-prefetch"],
    )
    def test_block_sizes(self, bs):
        """Partial channel blocks (24 channels per group) and other tiles give the same y."""
        x = make(n=2, g=4, l=41, seed=7)
        for platform in ("gpu", "tpu"):
            y = sp.scan(*x, interpret=True, block_sizes=bs, platform=platform)
            assert rel_err(y, scan64(*x)) < 1e-5

    @pytest.mark.parametrize(
        "platform, n, g, l, a_max",
        [("gpu", 1, 4, 37, 24.0), ("gpu", 1, 1, 100, 24.0), ("gpu", 16, 4, 53, 24.0)]
        + [("gpu", 16, 1, 37, 200.0), ("tpu", 1, 1, 100, 24.0), ("tpu", 16, 4, 53, 200.0)],
    )
    def test_gradients_match_xla(self, platform, n, g, l, a_max):
        """a_max = 200 makes exp(Δ A) underflow to 0: gradients stay finite and exact."""
        x = make_raw(n=n, g=g, l=l, seed=10 * n + g + l, a_max=a_max)
        names = list(x)

        def run(implementation, **kw):
            def f(*args):
                return selective_scan(
                    *args, delta_softplus=True, implementation=implementation, **kw
                )

            return f

        cot = np.random.default_rng(3).standard_normal(x["u"].shape).astype(np.float32)
        # selective_scan picks the GPU-style kernels off TPU; force the Mosaic-style ones.
        f_pl = run("pallas", interpret=True) if platform == "gpu" else _selective_scan_tpu
        y_pl, vjp_pl = jax.vjp(f_pl, *x.values())
        y_xla, vjp_xla = jax.vjp(run("xla"), *x.values())
        assert rel_err(y_pl, y_xla) < 1e-5
        for name, g_pl, g_xla in zip(names, vjp_pl(cot), vjp_xla(cot), strict=True):
            assert g_pl.shape == g_xla.shape and g_pl.dtype == g_xla.dtype, name
            assert np.all(np.isfinite(g_pl)), name
            assert rel_err(g_pl, g_xla) < 1e-4, name

    @pytest.mark.parametrize(
        "bs",
        [
            sp.BlockSizes(align_l=1, prefetch=True),
            sp.BlockSizes(block_d=32, chunk=16, block_d_bwd=32),  # more chunks than l allows
        ],
        ids=["nopad-prefetch", "c16"],
    )
    def test_gradients_block_sizes(self, bs):
        """Gradients without padding, with the prefetching forward, at a short l = 13."""
        x = make(b=2, d=96, n=2, l=13, g=4, seed=11)
        cot = np.random.default_rng(4).standard_normal(x[0].shape).astype(np.float32)

        def loss(f):
            return lambda *a: jnp.sum(f(*a) * cot)

        f_pl = lambda *a: sp.scan(*a, interpret=True, block_sizes=bs, platform="gpu")
        g_pl = jax.grad(loss(f_pl), argnums=(0, 1, 2, 3, 4))(*x)
        g_ref = jax.grad(loss(sp.scan_ref), argnums=(0, 1, 2, 3, 4))(*x)
        for name, a, r in zip("u dt A B C".split(), g_pl, g_ref, strict=True):
            assert rel_err(a, r) < 1e-4, name

    @pytest.mark.parametrize(
        "bs",
        [
            sp.BlockSizes(),  # the general kernels at n = 1 (the default is the whole-tile one)
            sp.BlockSizes(tiles_n1=True, prefetch=True, align_l=1, block_l=8, chunk=16),
            sp.BlockSizes(tiles_n1=True, block_d=32, block_d_bwd=8, block_l=4, chunk=4),
        ],
        ids=["general", "tiles-prefetch-nopad", "tiles-d32-l4"],
    )
    def test_n1_kernels(self, bs):
        """n = 1, 25 channels per group (partial blocks), l = 29: forward and gradients."""
        x = make(b=2, d=100, n=1, l=29, g=4, seed=13)
        f_pl = lambda *a: sp.scan(*a, interpret=True, block_sizes=bs, platform="gpu")
        assert rel_err(f_pl(*x), scan64(*x)) < 1e-5
        cot = np.random.default_rng(5).standard_normal(x[0].shape).astype(np.float32)
        loss = lambda f: lambda *a: jnp.sum(f(*a) * cot)
        g_pl = jax.grad(loss(f_pl), argnums=(0, 1, 2, 3, 4))(*x)
        g_ref = jax.grad(loss(sp.scan_ref), argnums=(0, 1, 2, 3, 4))(*x)
        for name, a, r in zip("u dt A B C".split(), g_pl, g_ref, strict=True):
            assert rel_err(a, r) < 1e-4, name

    @pytest.mark.parametrize("platform", ["gpu", "tpu"])
    def test_bf16_inputs(self, platform):
        x = make(n=1, g=4, l=37, seed=5)
        xb = [jnp.asarray(a, jnp.bfloat16) for a in x]
        y = sp.scan(*xb, interpret=True, platform=platform)
        assert y.dtype == jnp.float32
        assert rel_err(y, scan64(*(np.asarray(a, np.float32) for a in xb))) < 1e-5
        grads = jax.grad(lambda *a: sp.scan(*a, interpret=True, platform=platform).sum(), (0, 4))(
            *xb
        )
        assert all(gr.dtype == jnp.bfloat16 for gr in grads)

    def test_selective_scan_dispatch(self):
        x = make_raw(n=16, g=4, l=37, seed=2)
        y_pl = selective_scan(**x, delta_softplus=True, implementation="pallas", interpret=True)
        y_xla = selective_scan(**x, delta_softplus=True, implementation="xla")
        assert rel_err(y_pl, y_xla) < 1e-5

    def test_padding_steps_leave_state_unchanged(self):
        """dt = u = 0 on the tail of the sequence is a no-op (what the kernels pad with)."""
        u, dt, A, B, C = make(n=1, g=1, l=40, seed=4)
        y = sp.scan(u, dt, A, B, C, interpret=True)
        dt2 = dt.copy()
        dt2[..., 37:] = 0.0
        u2 = u.copy()
        u2[..., 37:] = 0.0
        y2 = sp.scan(u2, dt2, A, B, C, interpret=True)
        np.testing.assert_array_equal(np.asarray(y2)[..., :37], np.asarray(y)[..., :37])


def _selective_scan_tpu(u, delta, A, B, C, D, delta_bias):
    """``selective_scan`` semantics on the TPU-style kernels (interpreter)."""
    dt = jax.nn.softplus(delta + delta_bias[:, None])
    return sp.scan(u, dt, A, B, C, interpret=True, platform="tpu") + D[:, None] * u


class TestLowering:
    @pytest.mark.parametrize("platform, target", [("gpu", "cuda"), ("tpu", "tpu")])
    @pytest.mark.parametrize("n", [1, 16])
    @pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
    def test_lowers_without_device(self, platform, target, n, dtype):
        x = [jnp.asarray(a, dtype) for a in make(b=2, d=384, n=n, l=100, g=4)]
        f = lambda *a: sp.scan(*a, platform=platform)
        grad = jax.grad(lambda *a: f(*a).sum(), argnums=(0, 1, 2, 3, 4))
        name = "xla.gpu.triton" if target == "cuda" else "tpu_custom_call"
        for fn in (f, grad):
            text = jax.jit(fn).trace(*x).lower(lowering_platforms=(target,)).as_text()
            assert name in text


class TestErrors:
    def test_shape_errors(self):
        u, dt, A, B, C = make(b=1, d=8, n=2, l=5, g=2)
        with pytest.raises(ScanError, match="u must be"):
            sp.scan(u[0], dt, A, B, C)
        with pytest.raises(ScanError, match="dt must"):
            sp.scan(u, dt[..., :4], A, B, C)
        with pytest.raises(ScanError, match="A must"):
            sp.scan(u, dt, A[:4], B, C)
        with pytest.raises(ScanError, match="B must"):
            sp.scan(u, dt, A, B[:, :, :1], C)
        with pytest.raises(ScanError, match="C must"):
            sp.scan(u, dt, A, B, C[:, :1])
        with pytest.raises(ScanError, match="does not divide"):
            sp.scan(u, dt, A, np.ones((1, 3, 2, 5), np.float32), np.ones((1, 3, 2, 5), np.float32))
        with pytest.raises(ScanError, match="float32, bfloat16"):
            sp.scan(u.astype(np.int32), dt, A, B, C)
        with pytest.raises(ScanError, match="platform"):
            sp.scan(u, dt, A, B, C, interpret=True, platform="metal")

    def test_int32_limit(self):
        s = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
        args = (
            s(64, 4096, 8192),
            s(64, 4096, 8192),
            s(4096, 1),
            s(64, 4, 1, 8192),
            s(64, 4, 1, 8192),
        )
        with pytest.raises(ScanError, match="int32"):
            jax.eval_shape(lambda *a: sp.scan(*a, platform="gpu"), *args)

    def test_block_size_errors(self):
        x = make(b=1, d=8, n=1, l=5, g=1)
        for kwargs, match in [  # refused when built (tests/test_block_sizes.py: every field)
            (dict(block_d=24), "power of 2"),
            (dict(block_l=16, chunk=8), "multiple of block_l"),
            (dict(tpu_block_l=100), "multiple of 128"),
            (dict(tpu_block_d=12), "multiple of 8"),
            (dict(align_l=3), "power of 2"),
        ]:
            with pytest.raises(ScanError, match=match):
                sp.scan(*x, interpret=True, block_sizes=sp.BlockSizes(**kwargs))
        with pytest.raises(ScanError, match="BlockSizes"):
            sp.scan(*x, interpret=True, block_sizes=(8, 8))

    def test_default_block_sizes(self):
        d = sp.BlockSizes.get_default(1)  # the H100 sweep's best (run 4: "default")
        assert sp.BlockSizes.get_default() == d == sp.BlockSizes.get_default(1, 3136)
        assert (d.block_d, d.block_l, d.chunk, d.block_d_bwd, d.num_stages) == (16, 16, 16, 16, 3)
        assert d.tiles_n1
        short = sp.BlockSizes.get_default(1, 49)  # run 4's "tiles_d8" at stages 3 and 4
        assert short == sp.BlockSizes.get_default(1, 256)
        assert (short.block_d, short.block_d_bwd, short.block_l, short.chunk) == (8, 8, 16, 16)
        assert not sp.BlockSizes().tiles_n1  # the general kernels unless asked
        assert sp.BlockSizes.get_default(16).block_d <= sp.BlockSizes.get_default(1).block_d
        sp.BlockSizes.get_default(16).validate()


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU (compiled Triton kernels)")
@pytest.mark.parametrize("n, g, l", [(1, 4, 3136), (16, 4, 300)])
def test_compiled_gpu_kernel_matches_float64(n, g, l):
    """On a GPU: the compiled (not interpreted) kernel, forward and gradients."""
    u, dt, A, B, C = make(b=2, n=n, g=g, l=l)
    y = selective_scan(u, dt, A, B, C, implementation="pallas")
    assert rel_err(y, scan64(u, dt, A, B, C)) < 1e-5
    loss = lambda impl: lambda *a: jnp.sum(jnp.sin(selective_scan(*a, implementation=impl)))
    g_pl = jax.grad(loss("pallas"), argnums=(0, 1, 3, 4))(u, dt, A, B, C)
    g_xla = jax.grad(loss("xla"), argnums=(0, 1, 3, 4))(u, dt, A, B, C)
    for a, b in zip(g_pl, g_xla, strict=True):
        assert rel_err(a, b) < 1e-4
