"""The XLA selective scan against a float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err, scan64

from jaxmamba.kernels import ScanError, selective_scan, selective_scan_ref


def make_inputs(b=2, d=12, n=1, l=37, g=None, seed=0, a_max=24.0):
    rng = np.random.default_rng(seed)
    shape_bc = (b, n, l) if g is None else (b, g, n, l)
    return dict(
        u=rng.standard_normal((b, d, l)).astype(np.float32),
        delta=rng.uniform(-3, 1, (b, d, l)).astype(np.float32),
        A=-rng.uniform(0.05, a_max, (d, n)).astype(np.float32),
        B=rng.standard_normal(shape_bc).astype(np.float32),
        C=rng.standard_normal(shape_bc).astype(np.float32),
        D=rng.standard_normal(d).astype(np.float32),
        delta_bias=rng.uniform(-1, 0.5, d).astype(np.float32),
    )


@pytest.mark.parametrize("n", [1, 16])
@pytest.mark.parametrize("g", [None, 1, 4])
@pytest.mark.parametrize("l", [37, 100])
@pytest.mark.parametrize("chunk", [None, 16])  # plain scan, chunked scan
def test_xla_matches_float64(n, g, l, chunk):
    x = make_inputs(n=n, g=g, l=l, seed=n * 100 + l)
    ref = scan64(**x, delta_softplus=True)
    y = selective_scan(**x, delta_softplus=True, implementation="xla", chunk=chunk)
    assert y.dtype == jnp.float32 and y.shape == ref.shape
    assert rel_err(y, ref) < 1e-5


def test_reference_scan_matches_float64():
    x = make_inputs(n=4, g=2, l=29)
    assert (
        rel_err(selective_scan_ref(**x, delta_softplus=True), scan64(**x, delta_softplus=True))
        < 1e-5
    )


def test_without_softplus_bias_or_skip():
    x = make_inputs(n=3, g=None, l=20)
    x["delta"] = np.abs(x["delta"]) + 1e-3
    y = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"])
    ref = scan64(x["u"], x["delta"], x["A"], x["B"], x["C"])
    assert rel_err(y, ref) < 1e-5


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_result_independent_of_chunk(chunk):
    x = make_inputs(n=2, g=4, l=50)
    base = selective_scan(**x, delta_softplus=True)
    assert rel_err(selective_scan(**x, delta_softplus=True, chunk=chunk), base) < 1e-6


def test_strong_decay_stays_finite():
    x = make_inputs(n=16, g=4, l=300, a_max=24.0)
    x["delta"] = np.full_like(
        x["delta"], 5.0
    )  # softplus(5 + bias) ~ 4.5; exp(-24 * 4.5) underflows
    y = selective_scan(**x, delta_softplus=True)
    assert np.isfinite(np.asarray(y)).all()
    assert rel_err(y, scan64(**x, delta_softplus=True)) < 1e-5


def test_half_precision_inputs_compute_in_float32():
    x = make_inputs(n=2, g=4, l=40)
    xb = {k: jnp.asarray(v, jnp.bfloat16) for k, v in x.items()}
    y = selective_scan(**xb, delta_softplus=True)
    assert y.dtype == jnp.float32
    ref = scan64(
        **{k: np.asarray(v.astype(jnp.float32)) for k, v in xb.items()}, delta_softplus=True
    )
    assert rel_err(y, ref) < 1e-5


def test_gradients_match_reference_scan():
    x = {k: jnp.asarray(v) for k, v in make_inputs(n=4, g=4, l=45).items()}
    names = ("u", "delta", "A", "B", "C", "D", "delta_bias")

    def loss(fn):
        def f(*args):
            y = fn(**dict(zip(names, args, strict=True)), delta_softplus=True)
            return jnp.sum(jnp.sin(y))

        return f

    args = tuple(x[k] for k in names)
    g_xla = jax.grad(loss(selective_scan), argnums=tuple(range(7)))(*args)
    g_ref = jax.grad(loss(selective_scan_ref), argnums=tuple(range(7)))(*args)
    for name, a, b in zip(names, g_xla, g_ref, strict=True):
        assert np.isfinite(np.asarray(a)).all(), name
        assert rel_err(a, b) < 1e-4, name


def test_jit_and_vmap():
    x = make_inputs(n=2, g=4, l=33)
    f = jax.jit(lambda *a: selective_scan(*a, delta_softplus=True))
    y = f(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["delta_bias"])
    v = jax.vmap(
        lambda u, dl, B, C: selective_scan(
            u[None],
            dl[None],
            x["A"],
            B[None],
            C[None],
            x["D"],
            x["delta_bias"],
            delta_softplus=True,
        )[0]
    )(x["u"], x["delta"], x["B"], x["C"])
    assert rel_err(v, y) < 1e-6


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(u=np.zeros((2, 12))), "u must be"),
        (dict(delta=np.zeros((2, 12, 5))), "delta must have"),
        (dict(A=np.zeros((11, 1))), "A must be"),
        (dict(B=np.zeros((2, 5, 1, 37))), "does not divide"),
        (dict(C=np.zeros((2, 4, 2, 37))), "C must be"),
        (dict(D=np.zeros(3)), "D must be"),
        (dict(delta_bias=np.zeros(3)), "delta_bias must be"),
    ],
)
def test_shape_errors(change, match):
    x = make_inputs(g=4)
    x.update(change)
    with pytest.raises(ScanError, match=match):
        selective_scan(**x)


def test_unknown_implementation():
    with pytest.raises(ScanError, match="implementation"):
        selective_scan(**make_inputs(), implementation="cuda")
