"""SS2D: VMamba's 2-D selective-scan operator, with the patch order passed in as data.

Pure functions (``cross_scan``, ``cross_merge``, ``scan_inputs``) do the route bookkeeping and are
shared by the model and the attention extraction; ``SS2D`` is the Flax module whose parameters
carry the official names (``in_proj``, ``conv2d``, ``x_proj_weight``, ``dt_projs_weight``,
``dt_projs_bias``, ``A_logs``, ``Ds``, ``out_norm``, ``out_proj``).

Routes are ``(K, L)`` integer permutations (scan position → row-major spatial index), or soft
``(K, L, L)`` doubly-stochastic matrices ``P[k, t, s]`` (weight of spatial s at scan position t).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxmamba.kernels import selective_scan
from jaxmamba.models.init_rules import ALog, Constant, DtBias, Uniform, declare
from jaxmamba.models.layers import HIGHEST, Conv2d, LayerNorm, Linear

__all__ = [
    "SS2D", "ScanInputs", "cross_scan", "cross_merge", "scan_inputs", "inverse_of", "is_hard",
]  # fmt: skip


def is_hard(routes) -> bool:
    """True for integer ``(K, L)`` permutations (constants, or traced ones of a
    :class:`~jaxmamba.orders.RouteTable`), False for soft ``(K, L, L)`` matrices."""
    return isinstance(routes, np.ndarray | jax.Array) and jnp.issubdtype(routes.dtype, jnp.integer)


def inverse_of(routes):
    """``inverse[k, routes[k, t]] = t``: NumPy for constant routes, traced for traced ones."""
    if isinstance(routes, np.ndarray):
        return np.argsort(routes, axis=-1)
    return jnp.argsort(routes, axis=-1)


def cross_scan(
    x: Float[Array, "b d l"], routes: Int[np.ndarray, "k l"] | Float[Array, "k l l"]
) -> Float[Array, "b k d l"]:
    """Read a spatial sequence along every route.

    Args:
      x: ``(B, D, L)`` features in row-major spatial order.
      routes: ``(K, L)`` permutations or soft ``(K, L, L)`` matrices.

    Returns:
      ``(B, K, D, L)``: ``out[b, k, d, t] = x[b, d, routes[k, t]]``.
    """
    if is_hard(routes):
        return jnp.moveaxis(jnp.take(x, jnp.asarray(routes), axis=-1), 2, 1)
    return jnp.einsum("kts,bds->bkdt", routes, x, precision=HIGHEST)


def cross_merge(
    y: Float[Array, "b k d l"], routes: Int[np.ndarray, "k l"] | Float[Array, "k l l"]
) -> Float[Array, "b d l"]:
    """Put every route's output back in spatial order and sum over routes.

    Args:
      y: ``(B, K, D, L)`` per-route outputs in scan order.
      routes: as in :func:`cross_scan`.

    Returns:
      ``(B, D, L)`` in row-major spatial order (the transpose of :func:`cross_scan`).
    """
    if is_hard(routes):
        inverse = inverse_of(routes)
        parts = [jnp.take(y[:, k], jnp.asarray(inverse[k]), axis=-1) for k in range(len(routes))]
        return sum(parts[1:], parts[0])
    return jnp.einsum("kts,bkdt->bds", routes, y, precision=HIGHEST)


class ScanInputs(NamedTuple):
    """The selective-scan arguments of one SS2D block (K routes, D channels, N states, L patches).

    Exactly the official ``selective_scan(u, delta, A, B, C, D, delta_bias,
    delta_softplus=True)`` arguments, in that order, so ``selective_scan(*inputs)`` runs them.

    Attributes:
      u: ``(B, K·D, L)`` routed input.
      delta: ``(B, K·D, L)`` Δ before its bias and softplus.
      A: ``(K·D, N)`` negative state matrix.
      B, C: ``(B, K, N, L)`` input and output projections of each route.
      D: ``(K·D,)`` skip weights.
      delta_bias: ``(K·D,)`` Δ's bias.
    """

    u: Float[Array, "b kd l"]
    delta: Float[Array, "b kd l"]
    A: Float[Array, "kd n"]
    B: Float[Array, "b k n l"]
    C: Float[Array, "b k n l"]
    D: Float[Array, " kd"]
    delta_bias: Float[Array, " kd"]

    def final_delta(self) -> Float[Array, "b k d l"]:
        """Δ as the scan uses it: ``softplus(delta + delta_bias)``, ``(B, K, D, L)``."""
        b, k = self.B.shape[:2]
        dt = jax.nn.softplus(self.delta + self.delta_bias[:, None])
        return dt.reshape(b, k, -1, dt.shape[-1])


def scan_inputs(op, xs: Float[Array, "b k d l"]) -> ScanInputs:
    """The selective-scan arguments of one SS2D block, from its parameters and routed input.

    Args:
      op: the block's parameters (``x_proj_weight`` (K, R+2N, D), ``dt_projs_weight`` (K, D, R),
        ``dt_projs_bias`` (K, D), ``A_logs`` (K·D, N), ``Ds`` (K·D)).
      xs: ``(B, K, D, L)`` routed input (:func:`cross_scan` of the features after the depthwise
        conv and SiLU).

    Returns:
      :class:`ScanInputs` (``u``, ``delta``, ``A``, ``B``, ``C``, ``D``, ``delta_bias``).

    >>> import jax.numpy as jnp, jaxmamba
    >>> op = jaxmamba.create_model("vmamba_test").params["layers_3"]["blocks_0"]["op"]
    >>> s = scan_inputs(op, jnp.ones((1, 4, 256, 4)))  # K=4 routes, D=256, L=4 (a 2x2 grid)
    >>> s.u.shape, s.A.shape, s.B.shape, s.final_delta().shape
    ((1, 1024, 4), (1024, 1), (1, 4, 1, 4), (1, 4, 256, 4))
    """
    b, k, d, l = xs.shape
    r = op["dt_projs_weight"].shape[-1]
    n = op["A_logs"].shape[-1]
    x_dbl = jnp.einsum("bkdl,kcd->bkcl", xs, op["x_proj_weight"], precision=HIGHEST)
    dts, B, C = x_dbl[:, :, :r], x_dbl[:, :, r : r + n], x_dbl[:, :, r + n :]
    dts = jnp.einsum("bkrl,kdr->bkdl", dts, op["dt_projs_weight"], precision=HIGHEST)
    return ScanInputs(
        u=xs.reshape(b, k * d, l),
        delta=dts.reshape(b, k * d, l),
        A=-jnp.exp(op["A_logs"].astype(jnp.float32)),
        B=B,
        C=C,
        D=op["Ds"].astype(jnp.float32),
        delta_bias=op["dt_projs_bias"].reshape(-1).astype(jnp.float32),
    )


class SS2D(nn.Module):
    """VMamba's SS2D on ``(B, H, W, C)``; routes (static or soft) are an argument, not state."""

    d_model: int
    d_inner: int
    d_state: int
    dt_rank: int
    k_routes: int = 4
    gated: bool = False
    conv_bias: bool = False
    d_conv: int = 3
    eps: float = 1e-5
    implementation: str | None = None

    @nn.compact
    def __call__(self, x, routes, capture: bool = False):
        b, h, w, _ = x.shape
        k, d, n, r = self.k_routes, self.d_inner, self.d_state, self.dt_rank
        xz = Linear(d * 2 if self.gated else d, use_bias=False, name="in_proj")(x)
        if self.gated:
            x, z = xz[..., :d], jax.nn.silu(xz[..., d:])
        else:
            x = xz
        x = Conv2d(
            d, self.d_conv, padding=(self.d_conv - 1) // 2, groups=d, use_bias=self.conv_bias,
            name="conv2d",
        )(x)  # fmt: skip
        x = jax.nn.silu(x)
        op = dict(
            x_proj_weight=declare(self, "x_proj_weight", Uniform.torch(d), (k, r + 2 * n, d)),
            dt_projs_weight=declare(self, "dt_projs_weight", Uniform.torch(r), (k, d, r)),
            dt_projs_bias=declare(self, "dt_projs_bias", DtBias(), (k, d)),
            A_logs=declare(self, "A_logs", ALog(), (k * d, n)),
            Ds=declare(self, "Ds", Constant(1.0), (k * d,)),
        )
        u = jnp.moveaxis(x.reshape(b, h * w, d), 1, 2)  # (b, d, l) row-major
        s = scan_inputs(op, cross_scan(u, routes))
        y = selective_scan(*s, delta_softplus=True, implementation=self.implementation)
        y = cross_merge(y.reshape(b, k, d, h * w), routes)  # (b, d, l)
        if capture:
            self.sow("intermediates", "x", u)
            self.sow("intermediates", "y", y)
        y = jnp.moveaxis(y, 1, 2).reshape(b, h, w, d)
        y = LayerNorm(self.eps, name="out_norm")(y)
        if self.gated:
            y = y * z
        return Linear(self.d_model, use_bias=False, name="out_proj")(y)
