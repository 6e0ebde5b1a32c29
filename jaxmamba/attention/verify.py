"""Check extracted attention against the model: rebuild each block's scan output from its maps.

:func:`verify` applies every channel's exact map (with the D skip) to the block's scan input and
compares the result with the block's actual cross-merged scan output; the worst relative error
per block is the measure of how exact the extraction is (float32 rounding for a correct one).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxmamba.attention.extract import (
    block_params,
    block_routes,
    route_attention,
    scan_args,
    to_spatial,
)
from jaxmamba.errors import AttentionError
from jaxmamba.models import vim
from jaxmamba.models.cache import LayerScan
from jaxmamba.models.config import VimConfig
from jaxmamba.models.layers import HIGHEST
from jaxmamba.models.model import (
    Model,
    apply,
    check_images,
    cpu_pieces,
    model_order,
    select_blocks,
)
from jaxmamba.models.ss2d import is_hard
from jaxmamba.orders import Order, SoftOrder

__all__ = ["verify"]


def verify(
    model: Model,
    images: Float[Array, "b H W 3"],
    *,
    order=None,
    blocks=None,
    channel_group: int = 8,
) -> dict[str, float]:
    """Worst relative error of rebuilding each block's scan output from its extracted maps.

    For every channel d, ``M^d = Σ_k P_kᵀ α^{k,d} P_k + (Σ_k D_{k,d}) I`` (the per-channel maps of
    :func:`~jaxmamba.attention.extract.block_attention` with the skip) is applied to the block's
    scan input and compared with the block's actual cross-merged scan output:
    ``max|M u − y| / max|y|`` per block.  Channels go ``channel_group`` at a time, so memory is
    ``B·K·channel_group·L²``.  Any order works, soft routes too (``P_k`` is then the soft
    matrix).

    A Vim layer is checked on its merged, gated output (the input of ``out_proj``): each
    direction's per-channel maps (with its D skip), in token coordinates, applied to that
    direction's scan input, summed, times ``½ SiLU(z)``, against ``½ SiLU(z) (y_fwd + y_bwd)``.
    Under a soft order (routes ``R``) each direction's scan-order maps α act on its scan-order
    input ``u`` (``LayerScan.u``) and ``Rᵀ`` reads the result back in token coordinates:
    ``½ SiLU(z) Σ_k R_kᵀ (α_k + D_k) u_k``.

    A block whose maps, rebuilt output or scan output hold a NaN or an infinity gets ``nan``:
    never a small number (XLA's max reduction may skip NaNs, so finiteness is checked on its own).

    >>> import jax.numpy as jnp, jaxmamba
    >>> m = jaxmamba.create_model("vmamba_test")
    >>> err = verify(m, jnp.ones((1, 64, 64, 3)), blocks=3)
    >>> bool(err["layers.3.blocks.0"] < 1e-5)
    True
    """
    check_images(model.config, images, allow_empty=True)
    if images.shape[0] == 0:
        raise AttentionError("verify needs at least one image, got a batch of 0")
    if not isinstance(channel_group, int) or isinstance(channel_group, bool) or channel_group < 1:
        raise AttentionError(f"channel_group must be an int >= 1, got {channel_group!r}")
    names = select_blocks(model.config, blocks)
    resolved = model_order(model.config, order)
    pieces = cpu_pieces(model.config, images.shape)
    _, cache = apply(model, images, resolved, None, frozenset(names), pieces)
    errors = {}
    for name in names:
        block = model.config.block(name, (images.shape[1], images.shape[2]))
        scan = cache[name]
        op = block_params(model, name)
        if isinstance(model.config, VimConfig) and isinstance(scan, LayerScan):
            group = min(channel_group, scan.x.shape[2])
            x = scan.scan_input()  # token order, or each direction's scan order (soft routes)
            err = _verify_layer(op, x, scan.y, scan.z, resolved, model.config, group)
        else:
            x, y = cache.scan_input(name), cache.scan_output(name)
            group = min(channel_group, x.shape[1])
            err = _verify_block(op, x, y, resolved, block.grid, group)
        errors[name] = float(err)
    return errors


@functools.partial(jax.jit, static_argnums=(4, 5))
def _verify_block(op, x, y, order: Order | SoftOrder, grid, group):
    """:func:`verify` of one SS2D block: ``x``, ``y`` ``(B, D, L)`` its row-major scan input and
    cross-merged scan output."""
    return _rebuild_error(op, x, y, order.routes(*grid), None, group)


@functools.partial(jax.jit, static_argnums=(5, 6))
def _verify_layer(op, x, y, z, order: Order | SoftOrder, config: VimConfig, group: int):
    """:func:`verify` of one Vim layer of ``config``: ``x`` ``(B, 2, D, L)`` each direction's
    scan input (token order; its own scan order under soft routes), ``y`` ``(B, 2, D, L)`` its
    scan output in token order, ``z`` ``(B, D, L)`` the gate."""
    routes = block_routes(config, order, config.grid)[0]
    gate = vim.MERGE_WEIGHT * jax.nn.silu(z.astype(jnp.float32))
    return _rebuild_error(op, x, gate * jnp.sum(y, axis=1), routes, gate, group)


def _rebuild_error(op, x, target, routes, gate, group: int):
    """Worst relative error of ``target`` ``(B, D, L)`` rebuilt from the per-channel maps (with
    the D skip) of every route applied to its input: ``x`` ``(B, D, L)`` read by every route
    (SS2D), or ``(B, K, D, L)`` each route's own (Vim), in spatial/token order; the sum over
    routes times ``gate`` ``(B, D, L)`` where given.  Channels go ``group`` at a time.

    A Vim layer under soft routes ``R`` gives ``x`` in each route's scan order: its maps α then
    act on it there and ``Rᵀ`` takes the result to token order (``Rᵀ (α + D) u``; the token map
    ``Rᵀ (α + D) R`` acts on ``R``-routed token vectors, which a scan input after the causal conv
    is not)."""
    own = x.ndim == 4  # each route its own input
    scan_order = own and not is_hard(routes)  # a Vim layer's inputs under soft routes
    b, d, l = x.shape[0], x.shape[-2], x.shape[-1]
    group = max(g for g in range(1, group + 1) if d % g == 0)
    dt, A, B, C, Dk = scan_args(op, x, routes)

    def rebuild(lo):  # channels lo .. lo + group − 1 of every image
        take = lambda a, axis: jax.lax.dynamic_slice_in_dim(a, lo, group, axis=axis)
        maps = jax.vmap(
            lambda dt_b, B_b, C_b: route_attention(
                dt_b, take(A, 1), B_b, C_b, channels=tuple(range(group))
            )
        )(take(dt, 2), B, C)  # (b, k, group, l, l) scan order
        maps = maps + take(Dk, 1)[None, :, :, None, None] * jnp.eye(l, dtype=maps.dtype)
        inputs = take(x, x.ndim - 2)
        if scan_order:  # Rᵀ (α + D) u, summed over routes
            bad = jnp.sum(~jnp.isfinite(maps))
            scanned = jnp.einsum("bkcts,bkcs->bkct", maps, inputs, precision=HIGHEST)
            out = jnp.einsum("ktp,bkct->bcp", routes, scanned, precision=HIGHEST)
            return (out if gate is None else out * take(gate, 1)), bad
        maps = to_spatial(maps, routes)  # (b, k, group, l, l) spatial / token coordinates
        bad = jnp.sum(~jnp.isfinite(maps))
        how = "bkcpq,bkcq->bcp" if own else "bkcpq,bcq->bcp"
        out = jnp.einsum(how, maps, inputs, precision=HIGHEST)
        return (out if gate is None else out * take(gate, 1)), bad

    rebuilt, bad = jax.lax.map(rebuild, jnp.arange(0, d, group))  # (d / group, b, group, l)
    rebuilt = jnp.moveaxis(rebuilt, 0, 1).reshape(b, d, l)
    finite = (jnp.sum(bad) == 0) & jnp.all(jnp.isfinite(rebuilt)) & jnp.all(jnp.isfinite(target))
    err = jnp.max(jnp.abs(rebuilt - target)) / jnp.max(jnp.abs(target))
    return jnp.where(finite, err, jnp.nan)
