"""Selective scan (Mamba's S6 recurrence) with mamba_ssm's layout and semantics.

For channel d, state index n and sequence position t (Δ = softplus(delta + delta_bias) if
``delta_softplus`` else delta + delta_bias)::

    h_t[d, n] = exp(Δ_t[d] A[d, n]) h_{t-1}[d, n] + Δ_t[d] B_t[g(d), n] u_t[d]
    y_t[d]    = Σ_n C_t[g(d), n] h_t[d, n] + D[d] u_t[d]

with h_0 = 0 and g(d) = d // (D / G) the channel group (VMamba's K routes are the groups).
Semantics follow ``selective_scan_fn`` of mamba_ssm (``ops/selective_scan_interface.py``) and
``selective_scan_torch`` of VMamba (``classification/models/csms6s.py``).

Shapes: u, delta ``(B, D, L)``; A ``(D, N)``; B, C ``(B, N, L)`` or grouped ``(B, G, N, L)``;
D, delta_bias ``(D,)``. Compute is float32 whatever the input dtype; the output is float32.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxmamba.errors import ScanError

__all__ = ["ScanError", "selective_scan", "selective_scan_ref", "scan_plain", "IMPLEMENTATIONS"]

IMPLEMENTATIONS = ("xla", "pallas")


def _check_shapes(u, delta, A, B, C, D, delta_bias):
    if u.ndim != 3:
        raise ScanError(f"u must be (B, D, L), got shape {u.shape}")
    b, d, l = u.shape
    if delta.shape != u.shape:
        raise ScanError(f"delta must have u's shape {u.shape}, got {delta.shape}")
    if A.ndim != 2 or A.shape[0] != d:
        raise ScanError(f"A must be (D, N) = ({d}, N), got {A.shape}")
    n = A.shape[1]
    for name, x in (("B", B), ("C", C)):
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[0] != b or x.shape[2] != n or x.shape[3] != l:
            raise ScanError(
                f"{name} must be (B, N, L) or (B, G, N, L) = ({b}, G, {n}, {l}), got {x.shape}"
            )
        if d % x.shape[1]:
            raise ScanError(f"{name} has G={x.shape[1]} groups, which does not divide D={d}")
    if B.shape[-3 if B.ndim == 4 else 0] != C.shape[-3 if C.ndim == 4 else 0] and B.ndim == C.ndim:
        raise ScanError(f"B and C must have the same number of groups, got {B.shape} and {C.shape}")
    for name, x in (("D", D), ("delta_bias", delta_bias)):
        if x is not None and x.shape != (d,):
            raise ScanError(f"{name} must be (D,) = ({d},), got {x.shape}")


def _prepare(u, delta, A, B, C, D, delta_bias, delta_softplus):
    """Cast to float32, apply bias/softplus and bring B, C to the grouped form (B, G, N, L)."""
    f32 = jnp.float32
    u, delta, A = u.astype(f32), delta.astype(f32), A.astype(f32)
    B = (B[:, None] if B.ndim == 3 else B).astype(f32)
    C = (C[:, None] if C.ndim == 3 else C).astype(f32)
    if delta_bias is not None:
        delta = delta + delta_bias.astype(f32)[:, None]
    if delta_softplus:
        delta = jax.nn.softplus(delta)
    return u, delta, A, B, C


def _default_chunk(l: int) -> int:
    return max(1, min(l, int(math.ceil(math.sqrt(l)))))


@functools.partial(jax.jit, static_argnames=("chunk",))
def _scan_xla(u, dt, A, B, C, chunk):
    """Chunked sequential scan; ``dt`` is the final Δ.  Returns Σ_n C·h (no D skip), (b, d, l).

    The sequence is cut into ``nc`` chunks of ``chunk`` steps.  One pass scans every chunk at
    once from a zero state (``chunk`` sequential steps), a short scan over the ``nc`` chunk
    boundaries carries the states across, and a last pass rescans every chunk from its true
    initial state and emits y.  Only ``2·chunk + nc`` sequential steps, each over all chunks;
    every exponent is Δ·A ≤ 0, so nothing overflows.
    """
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    dg = d // g
    nc = -(-l // chunk)
    pad = nc * chunk - l

    def to_steps(x, state_axes):  # (b, ..., l) -> (chunk, b, ..., nc) with padding dt = u = 0
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
        x = x.reshape(x.shape[:-1] + (nc, chunk))
        return jnp.moveaxis(x, -1, 0).reshape((chunk,) + state_axes)

    dt_s = to_steps(dt, (b, g, dg, nc, 1))
    du_s = to_steps(dt * u, (b, g, dg, nc, 1))
    # B, C: (b, g, n, l) -> (chunk, b, g, 1, nc, n)
    B_s = jnp.moveaxis(to_steps(B, (b, g, n, nc)), 3, 4)[:, :, :, None]
    C_s = jnp.moveaxis(to_steps(C, (b, g, n, nc)), 3, 4)[:, :, :, None]
    A_ = A.reshape(g, dg, 1, n)

    def step(h, xs):
        dt_t, du_t, B_t = xs
        return jnp.exp(dt_t * A_) * h + du_t * B_t, None

    h0 = jnp.zeros((b, g, dg, nc, n), jnp.float32)
    h_end, _ = jax.lax.scan(step, h0, (dt_s, du_s, B_s))
    decay = jnp.exp(jnp.sum(dt_s, axis=0) * A_)  # (b, g, dg, nc, n), whole-chunk decay

    def carry(h, xs):
        dec, he = xs
        return dec * h + he, h

    _, h_in = jax.lax.scan(
        carry,
        jnp.zeros((b, g, dg, n), jnp.float32),
        (jnp.moveaxis(decay, 3, 0), jnp.moveaxis(h_end, 3, 0)),
    )
    h_in = jnp.moveaxis(h_in, 0, 3)

    def emit(h, xs):
        dt_t, du_t, B_t, C_t = xs
        h = jnp.exp(dt_t * A_) * h + du_t * B_t
        return h, jnp.sum(h * C_t, axis=-1)

    _, y = jax.lax.scan(emit, h_in, (dt_s, du_s, B_s, C_s))  # (chunk, b, g, dg, nc)
    y = jnp.moveaxis(y, 0, -1).reshape(b, d, nc * chunk)
    return y[..., :l]


def selective_scan(
    u: Float[Array, "b d l"],
    delta: Float[Array, "b d l"],
    A: Float[Array, "d n"],
    B: Float[Array, "b *g n l"],
    C: Float[Array, "b *g n l"],
    D: Float[Array, " d"] | None = None,
    delta_bias: Float[Array, " d"] | None = None,
    *,
    delta_softplus: bool = False,
    implementation: str | None = None,
    chunk: int | None = None,
    interpret: bool = False,
    block_sizes=None,
) -> Float[Array, "b d l"]:
    """Selective scan ``y = S6(u)``, float32, with mamba_ssm's argument layout.

    Args:
      u: ``(B, D, L)`` input sequence.
      delta: ``(B, D, L)`` raw Δ (before ``delta_bias`` and softplus).
      A: ``(D, N)`` state matrix (negative for a stable scan).
      B, C: ``(B, N, L)`` or grouped ``(B, G, N, L)``; group g serves channels
        ``g·D/G … (g+1)·D/G − 1``.
      D: optional ``(D,)`` skip; delta_bias: optional ``(D,)``.
      delta_softplus: apply softplus to ``delta + delta_bias``.
      implementation: ``"xla"``, ``"pallas"`` or ``None`` (Pallas on GPU/TPU, XLA elsewhere).
      chunk: sequence chunk of the XLA path's chunked scan; default: a plain step-per-position
        scan when L ≤ 1024 or N = 1 (faster there on XLA:CPU), else chunks of ⌈√L⌉. Results do
        not depend on it.
      interpret: run the Pallas kernels in the Pallas interpreter (CPU tests).
      block_sizes: ``scan_pallas.BlockSizes`` of the Pallas path (default: its ``get_default``).

    Returns:
      y: ``(B, D, L)`` float32.

    >>> import jax.numpy as jnp
    >>> u = jnp.ones((1, 2, 5)); dt = jnp.full((1, 2, 5), 0.5)
    >>> A = -jnp.ones((2, 1)); Bc = jnp.ones((1, 1, 5))
    >>> selective_scan(u, dt, A, Bc, Bc).shape
    (1, 2, 5)
    """
    _check_shapes(u, delta, A, B, C, D, delta_bias)
    if implementation is None:
        implementation = "pallas" if jax.default_backend() in ("gpu", "cuda", "tpu") else "xla"
    if implementation not in IMPLEMENTATIONS:
        raise ScanError(
            f"implementation must be one of {IMPLEMENTATIONS} or None, got {implementation!r}"
        )
    u, dt, A, B, C = _prepare(u, delta, A, B, C, D, delta_bias, delta_softplus)
    if implementation == "pallas":
        try:
            from jaxmamba.kernels import scan_pallas
        except ImportError as e:  # pragma: no cover - a jax build without Pallas GPU/TPU
            raise ScanError("the Pallas selective scan is not available in this build") from e
        y = scan_pallas.scan(u, dt, A, B, C, interpret=interpret, block_sizes=block_sizes)
    else:
        l, n = u.shape[-1], A.shape[-1]
        if chunk is None and (l <= 1024 or n == 1):  # measured faster in the model on XLA:CPU
            y = scan_plain(u, dt, A, B, C)
        else:
            y = _scan_xla(u, dt, A, B, C, chunk=chunk or _default_chunk(l))
    if D is not None:
        y = y + D.astype(jnp.float32)[:, None] * u
    return y


def selective_scan_ref(u, delta, A, B, C, D=None, delta_bias=None, *, delta_softplus=False):
    """Plain step-by-step ``lax.scan`` reference of :func:`selective_scan` (same arguments).

    >>> import jax.numpy as jnp
    >>> u = jnp.ones((1, 2, 5)); dt = jnp.full((1, 2, 5), 0.5)
    >>> A = -jnp.ones((2, 1)); Bc = jnp.ones((1, 1, 5))
    >>> bool(jnp.allclose(selective_scan_ref(u, dt, A, Bc, Bc), selective_scan(u, dt, A, Bc, Bc)))
    True
    """
    _check_shapes(u, delta, A, B, C, D, delta_bias)
    u, dt, A, B, C = _prepare(u, delta, A, B, C, D, delta_bias, delta_softplus)
    y = scan_plain(u, dt, A, B, C)
    if D is not None:
        y = y + D.astype(jnp.float32)[:, None] * u
    return y


def scan_plain(u, dt, A, B, C):
    """The scan with prepared inputs (``dt`` the final Δ, no D term): one ``lax.scan`` step per
    position over the whole state.  Shared by the XLA path and the Pallas reference.

    The inputs are laid out step-major once, outside the loop, and B, C stay grouped (each
    step broadcasts its group's row to the group's channels): no ``D/G``-fold copy of B and C.
    """
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    A = A.reshape(g, d // g, n)
    dt_s = jnp.moveaxis(dt, -1, 0).reshape(l, b, g, d // g)
    du_s = jnp.moveaxis(dt * u, -1, 0).reshape(l, b, g, d // g)
    B_s, C_s = jnp.moveaxis(B, -1, 0), jnp.moveaxis(C, -1, 0)  # (l, b, g, n)

    def step(h, xs):  # h: (b, g, d/g, n)
        dt_t, du_t, B_t, C_t = xs
        h = jnp.exp(dt_t[..., None] * A) * h + du_t[..., None] * B_t[:, :, None, :]
        return h, jnp.sum(h * C_t[:, :, None, :], axis=-1)

    h0 = jnp.zeros((b, g, d // g, n), jnp.float32)
    _, y = jax.lax.scan(step, h0, (dt_s, du_s, B_s, C_s))  # (l, b, g, d/g)
    return jnp.moveaxis(y.reshape(l, b, d), 0, -1)
