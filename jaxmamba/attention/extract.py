"""Exact hidden attention of SS2D blocks, memory-bounded and differentiable.

For route k, channel d, scan positions t ≥ s (Δ = softplus(delta + delta_bias), S = cumsum Δ)::

    α^{k,d}[t, s] = Σ_n C_t[n] · exp(A_d[n] (S_t − S_s)) · Δ_s B_s[n]

so that the route's scan output is ``y_t = Σ_s α[t, s] u_s + D u_t`` exactly.  Maps are computed
a query chunk of T rows at a time.  With ``S_b`` the prefix sum just before the chunk, keys
``s < chunk`` use the factorisation ``exp(A(S_t − S_b)) · exp(A(S_b − S_s))`` — both exponents
≤ 0, so nothing under- or overflows — and the channel (and state) sum becomes one matrix product
``(T × D·N) · (D·N × L)``; the ``T × T`` diagonal tile uses the direct form.  The
``(B, D, L, L)`` per-channel tensor is never built unless a channel subset is asked for.

Default aggregation (the paper's view, and VMamba's ``attnmap_mamba(mode="CwBdtw", ret="all")``
without its clamp): mean over the D channels of a route, Δ_s included, D skip excluded, routes
summed in spatial coordinates, no normalisation. Rows are output (query) patches p, columns
source patches q, both row-major indices ``p = r·w + c`` of the block's grid.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxmamba.attention.maps import AttentionMaps
from jaxmamba.attention.options import (
    CHANNEL_MODES,
    DEFAULT_OPTIONS,
    NORMALIZE_MODES,
    ROUTE_MODES,
    AttentionOptions,
    cut,
    parse_channels,
)
from jaxmamba.attention.sizes import map_shape, scans_at_once
from jaxmamba.attention.tiles import causal_maps, spatial_maps
from jaxmamba.errors import AttentionError
from jaxmamba.models import vim
from jaxmamba.models.config import Block, ModelConfig, VimConfig
from jaxmamba.models.layers import HIGHEST
from jaxmamba.models.model import (
    Model,
    apply,
    check_images,
    cpu_pieces,
    model_order,
    select_blocks,
)
from jaxmamba.models.ss2d import cross_scan, inverse_of, is_hard, scan_inputs
from jaxmamba.orders import Order, RouteTable, SoftOrder

__all__ = [
    "AttentionError",
    "AttentionMaps",
    "AttentionOptions",
    "CHANNEL_MODES",
    "NORMALIZE_MODES",
    "ROUTE_MODES",
    "block_attention",
    "block_maps",
    "block_params",
    "block_routes",
    "check_chunk",
    "compute_maps",
    "extract_attention",
    "map_shape",
    "route_attention",
    "scan_args",
    "shape_groups",
    "to_spatial",
]


def _default_chunk(l: int) -> int:
    return max(8, min(l, 2 ** round(math.log2(max(math.sqrt(l), 1)))))


def route_attention(
    dt: Float[Array, "k d l"],
    A: Float[Array, "k d n"],
    B: Float[Array, "k n l"],
    C: Float[Array, "k n l"],
    *,
    channels="mean",
    chunk: int | None = None,
) -> Float[Array, "k *c l l"]:
    """Hidden attention of every route in scan order (one image).

    Args:
      dt: ``(K, D, L)`` final Δ (after bias and softplus), > 0.
      A: ``(K, D, N)`` negative state matrix.
      B, C: ``(K, N, L)`` input and output projections of each route.
      channels: ``"mean"`` (mean of α over channels), ``"abs_mean"`` (mean of |α|), or a
        tuple of channel indices (per-channel maps of those channels of every route).
      chunk: query rows per tile T (default: :func:`jaxmamba.attention.tiles.chunk_plan` for
        ``"mean"``, a power of two near √L otherwise; one above L is taken as L); results do not
        depend on it.

    ``"mean"`` is computed by the chunked matrix products of :mod:`jaxmamba.attention.tiles`; the
    per-channel modes one query tile at a time, the keys before the tile by one product and the
    diagonal tile directly.  Computes in float32, or float64 when the inputs are float64 (with
    ``jax_enable_x64``).

    Returns:
      ``(K, L, L)`` for ``"mean"``/``"abs_mean"``, ``(K, C, L, L)`` for a channel subset; row t is
      the query (output) position, column s the source, both in scan order; zero above the
      diagonal.

    >>> import jax.numpy as jnp, numpy as np
    >>> dt = jnp.full((1, 2, 3), 0.5); A = -jnp.ones((1, 2, 1)); B = C = jnp.ones((1, 1, 3))
    >>> np.asarray(route_attention(dt, A, B, C)[0], float).round(3).tolist()
    [[0.5, 0.0, 0.0], [0.303, 0.5, 0.0], [0.184, 0.303, 0.5]]
    """
    k, d, l = dt.shape
    check_chunk(chunk)
    picked = parse_channels(channels)  # a mode of CHANNEL_MODES, or channel indices
    if picked == "mean":
        return causal_maps(dt, A, B, C, chunk=chunk)
    if isinstance(picked, str):
        sel = None
    else:
        if not all(0 <= c < d for c in picked):
            raise AttentionError(f"channels {cut(picked)} out of range: there are {d}")
        if len(picked) > d:
            raise AttentionError(f"{len(picked)} channels asked, there are {d}")
        sel = np.asarray(picked, dtype=np.int64)
        dt, A = dt[:, sel], A[:, sel]
    t_ = min(chunk, l) if chunk else _default_chunk(l)  # a tile longer than L pads for nothing
    nc = -(-l // t_)
    lp = nc * t_
    pad = lp - l
    f = jnp.promote_types(jnp.result_type(dt, A, B, C), jnp.float32)  # float64 stays float64
    dt = jnp.pad(dt.astype(f), ((0, 0), (0, 0), (0, pad)))
    B = jnp.pad(B.astype(f), ((0, 0), (0, 0), (0, pad)))
    C = jnp.pad(C.astype(f), ((0, 0), (0, 0), (0, pad)))
    A = A.astype(f)
    # Prefix sums kept small for float32: within each chunk (S_loc), and over whole chunks (E).
    S_loc = jnp.cumsum(dt.reshape(k, -1, nc, t_), axis=-1)  # (k, d, nc, t)
    total = S_loc[..., -1]  # (k, d, nc)
    E = jnp.cumsum(total, axis=-1)  # prefix sum at each chunk's end
    tail = total[..., None] - S_loc  # S(end of chunk j) − S_s for s in chunk j, >= 0
    dB = dt[:, :, None, :] * B[:, None]  # (k, d, n, lp): Δ_s B_s
    pos = jnp.arange(lp)
    tri = pos[:t_, None] >= pos[None, :t_]  # (t, s) causal mask within the diagonal tile
    mode = "subset" if sel is not None else picked
    scale = 1.0 / d

    def contract(q, kk):  # q (k, d, n, t), kk (k, d, n, s) -> (k, [d,] t, s)
        if mode == "mean":
            return scale * jnp.einsum("kdnt,kdns->kts", q, kk, precision=HIGHEST)
        per = jnp.einsum("kdnt,kdns->kdts", q, kk, precision=HIGHEST)
        return scale * jnp.sum(jnp.abs(per), axis=1) if mode == "abs_mean" else per

    def rows(i):
        start = i * t_
        S_q = S_loc[:, :, i]  # (k, d, t): S_t − S_b, with S_b the prefix sum before the chunk
        C_q = jax.lax.dynamic_slice_in_dim(C, start, t_, axis=-1)  # (k, n, t)
        # off-diagonal: keys s < start, reference point S_b; both exponents are <= 0
        q = C_q[:, None] * jnp.exp(A[..., None] * S_q[:, :, None])
        e_before = jnp.where(i > 0, E[..., jnp.maximum(i - 1, 0)], 0.0)  # (k, d)
        earlier = jnp.arange(nc) < i
        gap = jnp.where(earlier[:, None], (e_before[..., None] - E)[..., None] + tail, 0.0).reshape(
            k, -1, lp
        )  # S_b − S_s, masked before the exp
        before = pos < start
        kk = jnp.where(before, jnp.exp(A[..., None] * gap[:, :, None]) * dB, 0.0)
        out = contract(q, kk)
        # diagonal tile: direct form, causal mask applied to the exponent before the exp
        dB_q = jax.lax.dynamic_slice_in_dim(dB, start, t_, axis=-1)  # (k, d, n, s)
        diff = jnp.where(tri, S_q[..., :, None] - S_q[..., None, :], 0.0)  # (k, d, t, s)
        decay = jnp.where(tri, jnp.exp(A[..., None, None] * diff[:, :, None]), 0.0)
        per = jnp.einsum("knt,kdnts,kdns->kdts", C_q, decay, dB_q, precision=HIGHEST)
        if mode == "mean":
            diag = scale * jnp.sum(per, axis=1)
        elif mode == "abs_mean":
            diag = scale * jnp.sum(jnp.abs(per), axis=1)
        else:
            diag = per
        zero = jnp.zeros((), start.dtype)  # int64 under jax_enable_x64: one index type
        idx = (zero,) * (out.ndim - 1) + (start,)
        current = jax.lax.dynamic_slice(out, idx, out.shape[:-1] + (t_,))
        return jax.lax.dynamic_update_slice(out, current + diag, idx)

    blocks = jax.lax.map(rows, jnp.arange(nc))  # (nc, k, [c,] t, lp)
    blocks = jnp.moveaxis(blocks, 0, -3)  # (k, [c,] nc, t, lp)
    full = blocks.reshape(blocks.shape[:-3] + (lp, lp))
    return full[..., :l, :l]


def check_chunk(chunk) -> None:
    if chunk is not None and (
        not isinstance(chunk, int | np.integer) or isinstance(chunk, bool) or chunk < 1
    ):
        raise AttentionError(f"chunk must be None or an int >= 1, got {chunk!r}")


def to_spatial(maps, routes):
    """Scan-order route maps ``(..., K, [C,] L, L)`` → spatial row-major coordinates."""
    if is_hard(routes):
        inv = inverse_of(routes)
        out = []
        for k in range(len(routes)):
            m = jnp.take(maps[:, k], jnp.asarray(inv[k]), axis=-2)
            out.append(jnp.take(m, jnp.asarray(inv[k]), axis=-1))
        return jnp.stack(out, axis=1)
    # soft routes P[k, t, s]: spatial = Pᵀ α P
    if maps.ndim == 4:
        return jnp.einsum("ktp,bkts,ksq->bkpq", routes, maps, routes, precision=HIGHEST)
    return jnp.einsum("ktp,bkcts,ksq->bkcpq", routes, maps, routes, precision=HIGHEST)


def _normalize(m, how):
    if how is None:
        return m
    axes = (-2, -1)
    if how == "minmax":
        lo, hi = jnp.min(m, axes, keepdims=True), jnp.max(m, axes, keepdims=True)
        return (m - lo) / jnp.where(hi > lo, hi - lo, 1.0)
    if how == "abs_minmax":
        a = jnp.abs(m)
        lo, hi = jnp.min(a, axes, keepdims=True), jnp.max(a, axes, keepdims=True)
        return (a - lo) / jnp.where(hi > lo, hi - lo, 1.0)
    if how == "absmax":
        hi = jnp.max(jnp.abs(m), axes, keepdims=True)
        return m / jnp.where(hi > 0, hi, 1.0)
    # "row": each row divided by the sum of its absolute values
    s = jnp.sum(jnp.abs(m), axis=-1, keepdims=True)
    return m / jnp.where(s > 0, s, 1.0)


def _order_label(order: Order | SoftOrder):
    return order if isinstance(order, Order) else "soft"


def block_attention(
    op: dict,
    x: Float[Array, "b d l"],
    routes: Int[np.ndarray, "k l"] | Float[Array, "k l l"],
    options: AttentionOptions = DEFAULT_OPTIONS,
    *,
    chunk: int | None = None,
    groups=None,
) -> Float[Array, "b *kc l l"]:
    """Hidden attention of one SS2D block from its parameters and scan input.

    Args:
      op: the block's SS2D parameters (``model.params["layers_i"]["blocks_j"]["op"]``,
        :func:`block_params`); a Vim layer's scan parameters in the same layout.
      x: ``(B, D, L)`` the block's features after in_proj, depthwise conv and SiLU, row-major
        (``run_with_cache(...)[1].scan_input(name)``); for a Vim layer ``(B, 2, D, L)``, each
        direction's scan input in token order (its ``LayerScan.x``), or under soft routes in
        its own scan order (``LayerScan.u``); ``ScanCache.scan_input`` gives the right one.
      routes: ``(K, L)`` integer routes or soft ``(K, L, L)`` matrices of the block's grid (a
        Vim layer's two token routes, :func:`block_routes`).
      options: how the maps are aggregated (:class:`AttentionOptions`; default: the channel
        mean, routes summed, no skip, not normalised).
      chunk: query tile size (performance only).
      groups: the routes' pairs where the routes are traced (a
        :class:`~jaxmamba.orders.RouteTable`'s ``groups``); ``None`` finds them.

    Returns:
      ``(B, L, L)``; ``(B, K, L, L)`` with ``route_mode="each"``; a channel subset adds a channel
      axis after the route axis (``(B, C, L, L)`` summed, ``(B, K, C, L, L)`` each).  The routes'
      sum is the block's own merge: SS2D adds its routes, a Vim layer averages its two
      directions (:func:`merge_weight`).

    >>> import jax.numpy as jnp, jaxmamba
    >>> m = jaxmamba.create_model("vmamba_test")
    >>> x = jnp.ones((1, 256, 4))  # stage 3 of vmamba_test at 64x64: d_inner 256, a 2x2 grid
    >>> op = block_params(m, "layers.3.blocks.0")
    >>> routes = jaxmamba.make_routes("cross", 2, 2)
    >>> block_attention(op, x, routes).shape
    (1, 4, 4)
    >>> block_attention(op, x, routes, AttentionOptions(route_mode="each")).shape
    (1, 4, 4, 4)
    """
    b = x.shape[0]
    dt, A, B, C, Dk = scan_args(op, x, routes)
    weight = merge_weight(x)
    if _tiled(options, routes):
        A = jnp.broadcast_to(A, (b,) + A.shape)
        return _finish(_mean_maps(dt, A, B, C, routes, options, chunk, groups), Dk[None],
                       options, weight)  # fmt: skip
    maps = jax.lax.map(
        lambda a: route_attention(a[0], A, a[1], a[2], channels=options.channels, chunk=chunk),
        (dt, B, C),
    )  # (b, k, [c,] l, l) scan order
    if options.include_skip:
        l = x.shape[-1]
        if isinstance(options.channels, str):
            skip = jnp.mean(jnp.abs(Dk) if options.channels == "abs_mean" else Dk, axis=1)  # (k,)
            maps = maps + skip[None, :, None, None] * jnp.eye(l, dtype=maps.dtype)
        else:
            skip = Dk[:, np.asarray(options.channels)]  # (k, c)
            maps = maps + skip[None, :, :, None, None] * jnp.eye(l, dtype=maps.dtype)
    maps = to_spatial(maps, routes)
    if options.route_mode == "sum":
        return _normalize(weight * jnp.sum(maps, axis=1), options.normalize)
    if options.route_mode == "nall":
        return _normalize(jnp.mean(_normalize(maps, "minmax"), axis=1), options.normalize)
    return _normalize(maps, options.normalize)


def scan_args(op, x, routes):
    """Final Δ ``(B, K, D, L)``, A ``(K, D, N)``, B, C ``(B, K, N, L)``, D ``(K, D)`` of a block,
    from its parameters and row-major scan input ``x`` (``(B, D, L)``), or of a Vim layer from
    its scan parameters (the same layout, K = 2) and per-direction inputs ``x`` ``(B, 2, D, L)``:
    in token order under hard routes (``LayerScan.x``), in each direction's own scan order under
    soft ones (``LayerScan.u``: the causal conv runs after a soft routing, so no token-order
    input gives it; ``ScanCache.scan_input`` gives the right one). Computes in float32, or in
    float64 from a float64 ``x`` (with ``jax_enable_x64``)."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # float64 stays float64
    if x.ndim == 4:  # a Vim layer: each direction reads its own input along its route
        s = scan_inputs(op, vim.to_scan_order(x, routes) if is_hard(routes) else x)
        k, d = x.shape[1], x.shape[2]
        return s.final_delta(), s.A.reshape(k, d, -1), s.B, s.C, s.D.reshape(k, d)
    k = op["x_proj_weight"].shape[0]
    n = op["A_logs"].shape[-1]
    d = x.shape[1]
    s = scan_inputs(op, cross_scan(x, routes))
    return s.final_delta(), s.A.reshape(k, d, n), s.B, s.C, s.D.reshape(k, d)


def merge_weight(x) -> float:
    """The weight of each route in the block's merge, from the form of its scan input ``x``:
    1 for an SS2D block (``(B, D, L)``: its routes are summed), ``vim.MERGE_WEIGHT`` = ½ for a
    Vim layer (``(B, 2, D, L)``: the two directions are averaged, ``if_divide_out``)."""
    return vim.MERGE_WEIGHT if x.ndim == 4 else 1.0


def block_routes(config: ModelConfig, order: Order | SoftOrder | RouteTable, grid):
    """The routes of a block of ``config`` on ``grid`` under ``order``, and their pairs where
    the routes are traced: ``(routes, groups)``.  VMamba: the order's ``(K, h·w)`` routes of the
    grid (soft ``(K, L, L)``); Vim: the two token routes ``(2, L)``
    (:func:`jaxmamba.models.vim.vim_routes`: the order's path with the CLS token in the middle,
    forward and reversed), soft ``(2, L, L)`` for a soft order's path ``{grid: (1, M, M)}``.

    >>> from jaxmamba.models.config import get_config
    >>> from jaxmamba.orders import as_order
    >>> block_routes(get_config("vim_test"), as_order("spiral"), (4, 4))[0].shape
    (2, 17)
    >>> import jax.numpy as jnp
    >>> soft = as_order({(4, 4): jnp.full((1, 16, 16), 1 / 16)})
    >>> block_routes(get_config("vim_test"), soft, (4, 4))[0].shape
    (2, 17, 17)
    """
    if isinstance(config, VimConfig):
        if not isinstance(order, Order | SoftOrder):
            raise AttentionError(
                f"a Vim model's attention takes an Order or a SoftOrder, got {type(order).__name__}"
            )
        return vim.vim_routes(config, order), None
    routes = order.routes(*grid)
    return routes, (order.groups(*grid) if isinstance(order, RouteTable) else None)


def _tiled(options: AttentionOptions, routes) -> bool:
    """Whether maps come from :func:`jaxmamba.attention.tiles.spatial_maps` (channel mean, hard
    routes)."""
    return options.channels == "mean" and is_hard(routes)


def _mean_maps(dt, A, B, C, routes, options: AttentionOptions, chunk, groups=None):
    """Channel-mean maps of M scans ``dt (M, K, D, L)`` …: ``(M, L, L)``, or ``(M, K, L, L)``
    when the routes are kept apart (``route_mode`` ``"each"`` or ``"nall"``); ``groups`` the
    routes' pairs where the routes are traced (a :class:`~jaxmamba.orders.RouteTable`'s)."""
    m, k, _, l = dt.shape
    each = options.route_mode != "sum"
    step = functools.partial(spatial_maps, routes=routes, each=each, chunk=chunk, groups=groups)
    size = scans_at_once(m, k, l)  # the rest stream through lax.map
    if size >= m:
        return step(dt, A, B, C)
    return jax.lax.map(lambda a: step(*(x[None] for x in a))[0], (dt, A, B, C), batch_size=size)


def _finish(maps, Dk, options: AttentionOptions, weight: float = 1.0):
    """Skip, route mode and normalisation of channel-mean spatial maps (see :func:`_mean_maps`);
    ``Dk (M, K, D)`` are the blocks' D skips, ``weight`` each route's in the routes' sum
    (:func:`merge_weight`)."""
    eye = jnp.eye(maps.shape[-1], dtype=maps.dtype)
    skip = jnp.mean(Dk, axis=-1)  # (M, K): the channel mean, like α
    if options.route_mode == "sum":
        if options.include_skip:
            maps = maps + jnp.sum(skip, axis=1)[:, None, None] * eye
        return _normalize(weight * maps, options.normalize)
    if options.include_skip:
        maps = maps + skip[:, :, None, None] * eye
    if options.route_mode == "nall":
        maps = jnp.mean(_normalize(maps, "minmax"), axis=1)
    return _normalize(maps, options.normalize)


def extract_attention(
    model: Model,
    images: Float[Array, "b H W 3"],
    *,
    order=None,
    blocks=None,
    route_mode: str = "sum",
    channels="mean",
    include_skip: bool = False,
    normalize: str | None = None,
    implementation: str | None = None,
    chunk: int | None = None,
) -> AttentionMaps:
    """Exact hidden attention of the selected SS2D blocks (VMamba) or layers (Vim) of ``model``.

    Args:
      model: a :class:`~jaxmamba.Model` of either family.
      images: ``(B, H, W, 3)`` float images, H and W multiples of 32 (VMamba) or the model's
        ``img_size`` (Vim).
      order: patch order, anything :func:`jaxmamba.orders.as_order` takes (default VMamba's
        cross-scan); soft routes (:class:`~jaxmamba.orders.SoftOrder`) are differentiable.
      blocks: ``None`` (all), a stage index, block names, or a predicate on names.
      route_mode, channels, include_skip, normalize: see :class:`AttentionOptions`.
      implementation: selective-scan path of the forward pass.
      chunk: query tile size of :func:`route_attention` (performance only).

    Returns:
      :class:`AttentionMaps` (``count=None``): ``maps["layers.i.blocks.j"]`` is ``(B, L, L)``
      (``(B, K, L, L)`` with ``route_mode="each"``), in row-major spatial coordinates of each
      block's grid (query patch p, source patch q).  A Vim layer's ``maps["layers.i"]`` is in
      token coordinates (``L = M + 1``, the CLS token at ``maps.block(name).cls``): the layer's
      merge ½·(forward + backward) by default, ``(B, 2, L, L)`` forward and backward with
      ``route_mode="each"``; ``order`` ``None`` is then the official raster path, and a soft
      order is one soft path ``{grid: (1, M, M)}`` (each direction's scan-order map α read
      back as ``Rᵀ α R`` with its soft token route R).

    >>> import jax.numpy as jnp, jaxmamba
    >>> m = jaxmamba.create_model("vmamba_test")
    >>> maps = extract_attention(m, jnp.ones((1, 64, 64, 3)), blocks=3)
    >>> maps["layers.3.blocks.0"].shape, maps.grid("layers.3.blocks.0")
    ((1, 4, 4), (2, 2))
    """
    check_images(model.config, images)
    check_chunk(chunk)
    options = AttentionOptions(route_mode, channels, include_skip, normalize)
    names = select_blocks(model.config, blocks)
    pieces = cpu_pieces(model.config, images.shape)
    return compute_maps(
        model,
        images,
        model_order(model.config, order),
        names,
        options,
        implementation,
        chunk,
        pieces,
    )


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def compute_maps(
    model: Model,
    images: Float[Array, "b H W 3"],
    order: Order | SoftOrder,
    names: tuple[str, ...],
    options: AttentionOptions,
    implementation: str | None = None,
    chunk: int | None = None,
    pieces: tuple[int, ...] = (),
) -> AttentionMaps:
    """:func:`extract_attention` with resolved arguments (jitted; for library code).

    ``order`` is an :class:`~jaxmamba.orders.Order` or :class:`~jaxmamba.orders.SoftOrder`,
    ``names`` a tuple of block names, ``options`` an :class:`AttentionOptions`, ``pieces`` the
    batch slicing of the forward pass (:func:`~jaxmamba.models.model.cpu_pieces` of the images'
    shape, chosen by the caller; ``()`` runs each stage whole); the images are not checked.
    """
    size = (images.shape[1], images.shape[2])
    blocks = tuple(model.config.block(name, size) for name in names)
    if not isinstance(options.channels, str):  # checked while tracing: names the block
        for block in blocks:
            d = model.config.d_inner(block.stage)
            if not all(0 <= c < d for c in options.channels):
                raise AttentionError(
                    f"channels {cut(options.channels)} out of range for {block.name}, which "
                    f"has {d} channels (0..{d - 1})"
                )
            if len(options.channels) > d:
                raise AttentionError(
                    f"{len(options.channels)} channels asked of {block.name}, which has {d}"
                )
    _, cache = apply(model, images, order, implementation, frozenset(names), pieces)
    inputs = {name: cache.scan_input(name) for name in names}
    maps = {}
    for same in shape_groups(blocks, inputs):
        maps.update(block_maps(model, inputs, same, order, options, chunk))
    return AttentionMaps(maps, blocks, _order_label(order), options)


def block_maps(
    model: Model,
    inputs: dict,
    blocks: tuple[Block, ...] | list[Block],
    order: Order | SoftOrder,
    options: AttentionOptions,
    chunk: int | None = None,
) -> dict:
    """Maps of ``blocks`` (all of one grid) from their scan inputs (jit-able; for library code).

    Args:
      model: the :class:`~jaxmamba.Model` whose blocks they are.
      inputs: block name -> ``(B, D, L)`` scan input (``ScanCache.scan_input``).
      blocks: blocks of one grid whose inputs share a shape (a group of :func:`shape_groups`).
      order, options, chunk: as in :func:`compute_maps`.

    Returns:
      block name -> maps of the shape :func:`map_shape` says, with the batch axis ``B`` first.
    """
    routes, groups = block_routes(model.config, order, blocks[0].grid)
    if len(blocks) == 1 or not _tiled(options, routes):
        return {
            block.name: block_attention(
                block_params(model, block.name), inputs[block.name], routes, options,
                chunk=chunk, groups=groups,
            )
            for block in blocks
        }  # fmt: skip
    # blocks of one shape: their scans go through the tiled kernel together
    b = inputs[blocks[0].name].shape[0]
    parts = [scan_args(block_params(model, blk.name), inputs[blk.name], routes) for blk in blocks]
    dt, B, C = (jnp.concatenate([p[i] for p in parts]) for i in (0, 2, 3))
    A = jnp.concatenate([jnp.broadcast_to(p[1], (b,) + p[1].shape) for p in parts])
    Dk = jnp.concatenate([jnp.broadcast_to(p[4], (b,) + p[4].shape) for p in parts])
    weight = merge_weight(inputs[blocks[0].name])
    out = _finish(_mean_maps(dt, A, B, C, routes, options, chunk, groups), Dk, options, weight)
    return {block.name: out[i * b : (i + 1) * b] for i, block in enumerate(blocks)}


def shape_groups(blocks, inputs: dict) -> list[list[Block]]:
    """``blocks`` grouped by grid and scan-input shape (``inputs``: name -> ``(B, D, L)``), in
    forward order of their first member: each group's maps are computed together."""
    groups: dict = {}
    for block in blocks:
        groups.setdefault((block.grid, inputs[block.name].shape), []).append(block)
    return list(groups.values())


def block_params(model: Model, name: str) -> dict:
    """The SS2D parameters (``op``) of block ``name`` (``layers.i.blocks.j``), or the scan
    parameters of Vim layer ``name`` (``layers.i``) in the same layout, K = 2
    (:func:`jaxmamba.models.vim.scan_params`)."""
    if isinstance(model.config, VimConfig):
        index = model.config.block(name, model.config.img_size).index
        return vim.scan_params(model.params[f"layers_{index}"]["mixer"])
    block = model.config.block(name, (0, 0))
    return model.params[f"layers_{block.stage}"][f"blocks_{block.index}"]["op"]
