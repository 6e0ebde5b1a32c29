"""The Mosaic GPU selective scan (``platform="gpu_mosaic"``): in Mosaic GPU's interpreter (CPU)
against float64 NumPy and ``jax.grad`` of the reference, lowered for CUDA without a device, and
the choice of kernels as a pure function of the backend, JAX version and device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err, scan64
from test_scan_pallas import make

from jaxmamba.kernels import ScanError
from jaxmamba.kernels import pallas_mosaic as pm
from jaxmamba.kernels import scan_pallas as sp

MOSAIC = dict(platform="gpu_mosaic", interpret=True)


def grads(f, x, seed):
    """Gradients of ``Σ f(x) · cot`` in u, dt, A, B, C (cot a fixed random cotangent)."""
    cot = np.random.default_rng(seed).standard_normal(x[0].shape).astype(np.float32)
    return jax.grad(lambda *a: jnp.sum(f(*a) * cot), argnums=(0, 1, 2, 3, 4))(*x)


class TestInterpret:
    @pytest.mark.parametrize(
        "b, d, n, l, g",
        [
            (2, 96, 1, 37, 4),  # 24 channels per group: one partial block; l not a tile multiple
            (1, 256, 16, 21, 1),  # two full blocks of 128 channels; tile 16
            (1, 160, 3, 33, 2),  # n = 3 padded to 4 in B, C; 80 channels per group
        ],
    )
    def test_forward_matches_float64(self, b, d, n, l, g):
        x = make(b=b, d=d, n=n, l=l, g=g, seed=n + g + l)
        y = sp.scan(*x, **MOSAIC)
        assert y.shape == x[0].shape and y.dtype == jnp.float32
        assert rel_err(y, scan64(*x)) < 1e-5

    @pytest.mark.parametrize(
        "b, d, n, l, g, a_max",
        [
            (2, 96, 1, 37, 4, 24.0),
            (1, 128, 16, 21, 1, 200.0),  # exp(Δ A) underflows to 0: gradients stay exact
            pytest.param(2, 300, 16, 53, 2, 24.0, marks=pytest.mark.slow),
            pytest.param(1, 200, 5, 70, 1, 200.0, marks=pytest.mark.slow),
        ],
    )
    def test_gradients_match_reference(self, b, d, n, l, g, a_max):
        x = make(b=b, d=d, n=n, l=l, g=g, seed=10 * n + g + l, a_max=a_max)
        assert rel_err(sp.scan(*x, **MOSAIC), scan64(*x)) < 1e-5
        g_pl = grads(lambda *a: sp.scan(*a, **MOSAIC), x, seed=3)
        g_ref = grads(sp.scan_ref, x, seed=3)
        for name, a, r in zip("u dt A B C".split(), g_pl, g_ref, strict=True):
            assert a.shape == r.shape and a.dtype == r.dtype, name
            assert np.all(np.isfinite(a)), name
            assert rel_err(a, r) < 1e-4, name

    def test_bf16_inputs(self):
        x = make(b=1, d=96, n=1, l=37, g=2, seed=5)
        xb = [jnp.asarray(a, jnp.bfloat16) for a in x]
        y = sp.scan(*xb, **MOSAIC)
        assert y.dtype == jnp.float32
        assert rel_err(y, scan64(*(np.asarray(a, np.float32) for a in xb))) < 1e-5
        gr = jax.grad(lambda *a: sp.scan(*a, **MOSAIC).sum(), (0, 2, 4))(*xb)
        assert all(v.dtype == jnp.bfloat16 for v in gr)
        g32 = jax.grad(lambda *a: sp.scan_ref(*a).sum(), (0, 2, 4))(*xb)
        for a, r in zip(gr, g32, strict=True):
            assert rel_err(a, r) < 1e-2  # both rounded to bfloat16

    def test_saved_states_follow_the_contract(self):
        """``hs``: the state entering every tile, ``(b, g, nc, dg, n)``, as the reference's."""
        u, dt, A, B, C = make(b=1, d=64, n=2, l=40, g=2, seed=9)
        T = pm.tile_len(2)
        y, hs = pm.scan_fwd(u, dt, A, B, C, bs=sp.BlockSizes(), interpret=True, save=True)
        assert hs is not None and hs.shape == (1, 2, 2, 32, 2)
        np.testing.assert_array_equal(np.asarray(hs[:, :, 0]), 0.0)
        # The state entering tile 1 is the state after the first T steps: y of a one-hot C.
        onehot = np.zeros_like(C)
        onehot[:, :, 1, T - 1] = 1.0
        h1 = scan64(u[..., :T], dt[..., :T], A, B[..., :T], onehot[..., :T])[..., T - 1]
        assert rel_err(hs[0, :, 1, :, 1].reshape(1, 64), h1) < 1e-5

    def test_no_races_in_the_interpreter(self, monkeypatch):
        """Mosaic GPU's interpreter with race detection: the TMA copies, the SMEM reads and
        writes and the barriers of both kernels do not race (it also checks the barriers)."""
        from jax._src.pallas.mosaic_gpu.interpret import interpret_pallas_call as ipc

        params = type(pm.interpret_params())
        monkeypatch.setattr(pm, "interpret_params", lambda: params(detect_races=True))
        u, dt, A, B, C = make(b=1, d=160, n=2, l=40, g=1, seed=8)
        bs = sp.BlockSizes()
        y, hs = pm.scan_fwd(u, dt, A, B, C, bs=bs, interpret=True, save=True)
        jax.block_until_ready(y)
        assert not ipc.get_races().races_found
        grads = pm.scan_bwd(u, dt, A, B, C, hs, np.ones_like(u), bs=bs, interpret=True)
        jax.block_until_ready(grads)
        assert not ipc.get_races().races_found


class TestLowering:
    @pytest.mark.parametrize("n", [1, 16])
    @pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
    def test_lowers_for_cuda_without_device(self, n, dtype):
        """The whole Mosaic GPU lowering (layouts, copies, SMEM) runs on this CPU-only jaxlib."""
        x = [jnp.asarray(a, dtype) for a in make(b=2, d=384, n=n, l=100, g=4)]
        f = lambda *a: sp.scan(*a, platform="gpu_mosaic")
        grad = jax.grad(lambda *a: f(*a).sum(), argnums=(0, 1, 2, 3, 4))
        for fn, kernels in ((f, 1), (grad, 2)):
            text = jax.jit(fn).trace(*x).lower(lowering_platforms=("cuda",)).as_text()
            assert text.count("custom_call @mosaic_gpu") == kernels
            assert "xla.gpu.triton" not in text


def _hopper() -> bool:
    dev = jax.devices()[0]
    return (
        jax.default_backend() == "gpu"
        and sp._version(getattr(dev, "compute_capability", None)) >= sp.MOSAIC_GPU_MIN_CC
    )


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs a CUDA GPU of compute capability >= 9.0")
@pytest.mark.parametrize("n, g, l", [(1, 4, 3136), (16, 4, 300)])
def test_compiled_mosaic_kernel_matches_float64(n, g, l):
    """On Hopper or newer: the compiled (not interpreted) Mosaic GPU kernels."""
    x = make(b=2, n=n, g=g, l=l)
    f = lambda *a: sp.scan(*a, platform="gpu_mosaic")
    assert rel_err(f(*x), scan64(*x)) < 1e-5
    for name, a, r in zip(
        "u dt A B C".split(), grads(f, x, 1), grads(sp.scan_ref, x, 1), strict=True
    ):
        assert rel_err(a, r) < 1e-4, name


class TestPlatformChoice:
    @pytest.mark.parametrize(
        "backend, version, cc, expected",
        [
            ("gpu", (0, 11, 0), "9.0", "gpu_mosaic"),  # H100, H200
            ("cuda", (0, 12), "10.0", "gpu_mosaic"),  # B200
            ("gpu", (0, 11, 0), "8.0", "gpu"),  # A100: no TMA / warpgroups
            ("gpu", (0, 11, 0), "8.9", "gpu"),
            ("gpu", (0, 10, 2), "9.0", "gpu"),  # Triton is still supported
            ("gpu", (0, 11, 0), None, "gpu"),
            ("gpu", (0, 11, 0), "gfx942", "gpu"),  # ROCm: Mosaic GPU is CUDA-only
            ("tpu", (0, 11, 0), None, "tpu"),
            ("cpu", (0, 11, 0), None, "gpu"),  # the interpreter runs the Triton-style kernels
            ("cpu", (1, 0), None, "gpu"),
        ],
    )
    def test_choose_platform(self, backend, version, cc, expected):
        assert sp.choose_platform(backend, version, cc) == expected

    def test_triton_deprecation_rule(self):
        assert sp.triton_deprecated("gpu", False, (0, 11, 0))
        assert sp.triton_deprecated("gpu", False, (1, 2))
        assert not sp.triton_deprecated("gpu", True, (0, 11, 0))  # the interpreter: no Triton
        assert not sp.triton_deprecated("gpu", False, (0, 10, 2))
        for p in ("gpu_mosaic", "tpu"):
            assert not sp.triton_deprecated(p, False, (0, 11, 0))

    def test_asking_for_triton_warns_on_jax_0_11(self, monkeypatch):
        monkeypatch.setattr(jax, "__version_info__", (0, 11, 0))
        with pytest.warns(DeprecationWarning, match="Mosaic GPU is the supported"):
            assert sp._platform("gpu", interpret=False) == "gpu"

    def test_the_mosaic_default_waits_for_a_gpu_run(self, monkeypatch):
        """Where the rule says Mosaic GPU, platform=None keeps Triton until the switch is on."""
        monkeypatch.setattr(sp, "choose_platform", lambda *a: "gpu_mosaic")
        assert sp.default_platform() == ("gpu_mosaic" if sp.MOSAIC_GPU_DEFAULT else "gpu")
        monkeypatch.setattr(sp, "MOSAIC_GPU_DEFAULT", True)
        assert sp.default_platform() == "gpu_mosaic"

    @pytest.mark.skipif(jax.default_backend() != "cpu", reason="the choice on CPU")
    def test_default_on_cpu(self):
        """On CPU: the Triton-style kernels, for the interpreter."""
        assert sp._platform(None, interpret=True) == sp.default_platform() == "gpu"

    def test_limits(self):
        assert [pm.tile_len(n) for n in (1, 2, 8, 16, 32, 64)] == [32, 32, 32, 16, 8, 4]
        with pytest.raises(ScanError, match="1 <= n <= 64"):
            pm.tile_len(65)
        x = make(b=1, d=8, n=65, l=5, g=1)
        with pytest.raises(ScanError, match="n <= 64"):
            sp.scan(*x, **MOSAIC)
