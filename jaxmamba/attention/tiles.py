"""Exact channel-mean hidden attention by chunked matrix products (the SSD tiling of DESIGN §3).

For one scan route, positions t ≥ s, prefix sums ``P_t = Σ_{j≤t} Δ_j`` (per channel d)::

    ᾱ[t, s] = (1/D) Σ_{d,n} C_t[n] · exp(A_{dn} (P_t − P_s)) · Δ_s B_s[n]

Cut the sequence into chunks of T positions.  For a query in chunk i (first position b) and a
key in an earlier chunk j (last position e) the decay factorises through the chunk
boundaries, every exponent ≤ 0::

    exp(A(P_t − P_s)) = exp(A(P_t − P_{b−1})) · exp(A(P_{b−1} − P_e)) · exp(A(P_e − P_s))

so the off-diagonal tiles of query chunk i are one matrix product ``(T × D·N)·(D·N × i·T)`` with
the middle factor folded into its keys.  A diagonal tile is the same problem on a sequence of T
positions: it is solved recursively with smaller chunks, and chunks of at most 64 positions use
the direct form, a recurrence over rows whose factors are single-step decays ≤ 1
(:func:`_direct`).  Nothing ``D × L × L`` is ever built; the largest intermediate is the
``L × D·N`` key tensor of one top-level query chunk.

Route pairs: a route and its reverse (VMamba's routes 0 and 2, 1 and 3; every named order's
routes 2, 3 reverse 0, 1) fill the lower and the upper triangle of one matrix in the first
route's scan coordinates, so one product with inner size ``2·D·N`` writes both.  The route
un-permutation and the route sum are then one gather-and-add pass over the ``L × L`` output.

Everything is float32 (float64 if the inputs are float64) and differentiable; the results equal
a float64 evaluation of the definition to float32 rounding (``tests/test_attention.py``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxmamba.errors import AttentionError
from jaxmamba.models.layers import HIGHEST
from jaxmamba.orders.routes import route_groups

__all__ = ["chunk_plan", "causal_maps", "prefix_sum", "spatial_maps"]

_DIRECT = 64  # chunks of at most this many positions use the direct form
_TOP = (7, 8, 6, 5, 4)  # preferred numbers of top-level chunks, best first


def _split(t: int) -> int | None:
    """Chunks per level for a sequence of ``t`` positions, or None for the direct form: the
    fewest chunks that reach the direct size, else the most chunks (at most 8)."""
    if t <= _DIRECT:
        return None
    final = [f for f in range(2, 9) if t % f == 0 and t // f <= _DIRECT]
    if final:
        return final[0]
    return next((f for f in range(8, 1, -1) if t % f == 0), None)  # None: a prime > 8


def _sub_plan(t: int) -> tuple[int, ...]:
    sizes = []
    while (f := _split(t)) is not None:
        t //= f
        sizes.append(t)
    return tuple(sizes)


def chunk_plan(l: int, chunk: int | None = None) -> tuple[int, tuple[int, ...]]:
    """Padded length and chunk sizes (coarse to fine) used for a sequence of ``l`` positions.

    The top level cuts the (zero-padded) sequence into 4 to 8 chunks; each level below cuts a
    chunk into up to 8; chunks of at most 64 positions use the direct form.  ``chunk`` forces the
    top-level chunk size (one above ``l`` is taken as ``l``).  Results do not depend on the
    plan.  (Measured on 2 CPU cores for VMamba-T's stages, ``python benchmarks/attention.py``:
    fewer, larger direct chunks run faster, more top-level chunks compile slower.)

    >>> chunk_plan(49, chunk=10**9)
    (49, ())

    >>> chunk_plan(3136), chunk_plan(784), chunk_plan(196), chunk_plan(49)
    ((3136, (448, 64)), (784, (112, 56)), (196, (28,)), (49, ()))
    """
    if chunk is not None:
        if not isinstance(chunk, int | np.integer) or isinstance(chunk, bool) or chunk < 1:
            raise AttentionError(f"chunk must be None or an int >= 1, got {chunk!r}")
        chunk = min(int(chunk), l)  # a chunk longer than the sequence would only pad it
        lp = -(-l // chunk) * chunk
        return (lp, ()) if lp <= chunk else (lp, (chunk,) + _sub_plan(chunk))
    if l <= _DIRECT:
        return l, ()
    for lp in range(l, 2 * l + 8):
        for top in _TOP:
            if lp % top == 0 and _fully_split(lp // top):
                return lp, (lp // top,) + _sub_plan(lp // top)
    raise AssertionError(f"no chunk plan for length {l}")  # unreachable: 8·7^k forms exist


def _fully_split(t: int) -> bool:
    while (f := _split(t)) is not None:
        t //= f
    return t <= _DIRECT


def prefix_sum(x: Array, axis: int) -> Array:
    """Inclusive prefix sums of ``x`` along ``axis`` (``jnp.cumsum``), in O(n log n) work.

    XLA lowers ``cumsum`` on CPU to a ``reduce_window`` whose window is the whole axis, n²
    additions for n positions: here the axis is cut into blocks of about √n, summed within
    each block and over the block totals (recursively), then added up.  Same values up to
    float rounding.

    >>> prefix_sum(jnp.arange(1.0, 8.0), 0).tolist()
    [1.0, 3.0, 6.0, 10.0, 15.0, 21.0, 28.0]
    """
    axis = axis % x.ndim
    n = x.shape[axis]
    if n <= _SHORT_SUM:
        return jnp.cumsum(x, axis=axis)
    b = int(np.ceil(np.sqrt(n)))
    nb = -(-n // b)
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, nb * b - n)
    blocks = jnp.pad(x, widths).reshape(x.shape[:axis] + (nb, b) + x.shape[axis + 1 :])
    inner = prefix_sum(blocks, axis + 1)  # within each block
    totals = jax.lax.index_in_dim(inner, b - 1, axis + 1, keepdims=False)  # (…, nb, …)
    before = prefix_sum(totals, axis) - totals  # the sum of the blocks before each block
    out = inner + jnp.expand_dims(before, axis + 1)
    out = out.reshape(x.shape[:axis] + (nb * b,) + x.shape[axis + 1 :])
    return jax.lax.slice_in_dim(out, 0, n, axis=axis)


_SHORT_SUM = 16  # axes this short use jnp.cumsum directly


def _factors(dt, A, B, C, c: int):
    """The three factors of one level with chunks of ``c`` positions.

    dt ``(m, T, D)``, A ``(m, D, N)``, B, C ``(m, T, N)`` → ``q`` (query chunk i, position t:
    ``C_t exp(A(P_t − P_{b_i−1}))``), ``k`` (key chunk j, position s: ``exp(A(P_{e_j} − P_s))
    Δ_s B_s``), both ``(m, T/c, c, D, N)``, and ``mid[i, j] = exp(A(P_{b_i−1} − P_{e_j}))`` for
    j < i, zero otherwise, ``(m, T/c, T/c, D, N)``.  Every exponent is ≤ 0.
    """
    m, t_, d = dt.shape
    n = A.shape[-1]
    nch = t_ // c
    S = prefix_sum(dt.reshape(m, nch, c, d), 2)  # P_t − P_{b−1}, within each chunk
    tot = S[:, :, -1]  # (m, nch, d) chunk totals
    a = A[:, None, None]  # (m, 1, 1, d, n)
    q = C.reshape(m, nch, c, 1, n) * jnp.exp(a * S[..., None])
    dB = (dt[..., None] * B[:, :, None, :]).reshape(m, nch, c, d, n)
    k = jnp.exp(a * (tot[:, :, None] - S)[..., None]) * dB
    # gap[i, j] = P_{b_i−1} − P_{e_j} = Σ_{j<l<i} tot_l, summed directly (no cancellation)
    between = np.array(
        [[[j < l < i for l in range(nch)] for j in range(nch)] for i in range(nch)], np.float32
    )  # (i, j, l)
    gap = jnp.einsum("ijl,mld->mijd", between.astype(tot.dtype), tot, precision=HIGHEST)
    before = np.tril(np.ones((nch, nch), bool), -1)[None, :, :, None, None]  # j < i
    mid = jnp.where(before, jnp.exp(A[:, None, None] * gap[..., None]), 0.0)
    return q, k, mid


def _direct(dt, A, B, C):
    """Lower-triangular ``Σ_{d,n} α`` of short sequences by the direct form, ``(m, T, T)``.

    Row by row: ``W_t[s] = exp(A (P_t − P_s)) Δ_s B_s`` for s ≤ t is ``W_{t−1}[s] · exp(A Δ_t)``
    plus the new column ``W_t[t] = Δ_t B_t`` (W starts at zero, so columns s > t stay zero):
    every factor is a decay ≤ 1 (an underflow is the true limit, never an overflow) and the
    only exponentials are the T·D·N step decays.  Row t of the map is ``C_t · W_t``.
    """
    m, t_, d = dt.shape
    a = jnp.exp(A[:, None] * dt[..., None])  # (m, t, d, n): one step's decay
    k = dt[..., None] * B[:, :, None, :]  # (m, t, d, n): Δ_s B_s
    eye = jnp.eye(t_, dtype=k.dtype)

    def step(w, inputs):
        a_t, k_t, c_t, e_t = inputs
        w = w * a_t[:, None] + e_t[None, :, None, None] * k_t[:, None]
        return w, jnp.einsum("msdn,mn->ms", w, c_t, precision=HIGHEST)

    xs = (jnp.moveaxis(a, 1, 0), jnp.moveaxis(k, 1, 0), jnp.moveaxis(C, 1, 0), eye)
    _, rows = jax.lax.scan(step, jnp.zeros_like(k), xs)  # (t, m, s)
    return jnp.moveaxis(rows, 0, 1)


def _maps(dt, A, B, C, sizes: tuple[int, ...]):
    """Maps of m sequences, or of m pairs of a route and its reverse, ``(m, T, T)``.

    dt ``(m, P, T, D)``, A ``(m, P, D, N)``, B, C ``(m, P, T, N)`` with P = 1 (one route: its
    lower triangle, diagonal included) or P = 2 (a route and its reverse, each in its own scan
    order, the reverse zero-padded at its front: the first's lower triangle plus the second's
    map reversed on both axes, which fills the upper triangle).  Sums over channels and states
    (no 1/D).  ``sizes`` are the chunk sizes, coarse to fine (:func:`chunk_plan`); none: the
    direct form.

    The off-diagonal tiles of query chunk i are one product with exactly the ``i·c`` keys
    before it, for both routes of a pair; the diagonal tiles are the same problem on sequences
    of c positions (a pair's chunk i with its reverse's chunk ``nch − 1 − i``), solved with the
    next size; the map is assembled from those products, the diagonal tiles and (for a pair)
    the reverse route's products reversed, in one concatenation.
    """
    m, p, t_, d = dt.shape
    n = A.shape[-1]
    flat = lambda x: x.reshape((m * p,) + x.shape[2:])
    if not sizes:
        low = _direct(flat(dt), flat(A), flat(B), flat(C)).reshape(m, p, t_, t_)
        return low[:, 0] if p == 1 else low[:, 0] + jnp.flip(low[:, 1], (1, 2))
    c = sizes[0]
    nch = t_ // c
    q, k, mid = _factors(flat(dt), flat(A), flat(B), flat(C), c)
    left: list[Any] = [None]  # left[i]: query chunk i against the keys before it
    for i in range(1, nch):  # query chunk i against keys 0 .. i·c − 1, both routes of a pair
        kk = (mid[:, i, :i, None] * k[:, :i]).reshape(m * p, i * c, d * n)
        prod = jax.lax.dot_general(
            q[:, i].reshape(m * p, c, d * n), kk, (((2,), (2,)), ((0,), (0,))),
            precision=HIGHEST,
        )  # fmt: skip
        left.append(prod.reshape(m, p, c, i * c))
    A_tiles = jnp.broadcast_to(A[:, None], (m, nch, p, d, n)).reshape(m * nch, p, d, n)
    sub = _maps(_tiles(dt, c), A_tiles, _tiles(B, c), _tiles(C, c), sizes[1:])
    sub = sub.reshape(m, nch, c, c)
    rows = []
    for i in range(nch):
        row = ([left[i][:, 0]] if i else []) + [sub[:, i]]
        if i < nch - 1:
            rest = t_ - (i + 1) * c
            if p == 2:  # the reverse route's chunk nch − 1 − i, reversed on both axes
                row.append(jnp.flip(left[nch - 1 - i][:, 1], (1, 2)))
            else:
                row.append(jnp.zeros((m, c, rest), sub.dtype))
        rows.append(jnp.concatenate(row, axis=-1))
    return jnp.concatenate(rows, axis=1)


_BOUND = 60.0  # the largest decay exponent |A|·ΣΔ inside one chunk of the product form
_FAST_MAX = 1024  # sequences up to this long try the product form first
_FAST_CHUNK = 224  # its chunks: the longest that divide the sequence, up to this
_FAST_CHUNKS = 4  # and at most this many of them (more, smaller products ran slower)


def _fast_chunk(t: int, chunk: int | None) -> int | None:
    """The chunk size of the product form (:func:`_products`) for ``t`` positions, or None
    where it is not tried: long sequences (their tiling is product-bound already), a forced
    ``chunk``, or no divisor of ``t`` between 16 and _FAST_CHUNK that cuts it into at most
    _FAST_CHUNKS chunks.  Larger chunks run fewer,
    larger products; smaller ones exceed the decay bound less often.

    >>> _fast_chunk(49, None), _fast_chunk(196, None), _fast_chunk(784, None)
    (49, 196, 196)
    >>> _fast_chunk(3136, None), _fast_chunk(1024, None), _fast_chunk(227, None)
    (None, None, None)
    """
    if chunk is not None or t > _FAST_MAX:
        return None
    c = max(c for c in range(1, min(t, _FAST_CHUNK) + 1) if t % c == 0)
    return c if t // c <= _FAST_CHUNKS and (c == t or c >= 16) else None


def _products(dt, A, B, C, c: int):
    """Lower-triangular ``Σ_{d,n} α`` of m sequences by one product per query chunk: dt
    ``(m, D, T)``, A ``(m, D, N)``, B, C ``(m, N, T)`` → ``(m, T, T)``; exact where no chunk
    of ``c`` positions decays by more than ``exp(−_BOUND)`` in any channel (:func:`_bounded`).

    Queries and keys are referred to the start of their own chunk (``S`` the prefix sum of Δ
    inside the chunk): ``q_t = C_t exp(A S_t)`` (≤ |C_t|), ``k_s = Δ_s B_s exp(−A S_s)``
    (≤ e^_BOUND |Δ_s B_s|), and ``mid[i, j] = exp(A (P_{b_i} − P_{b_j}))`` ≤ 1 joins chunk j's
    start to chunk i's, so that row block i is the single product of ``q_i`` with the keys of
    chunks 0 … i, the last one causal-masked.  No factor leaves float32's normal range.
    """
    m, d, t_ = dt.shape
    n = A.shape[-1]
    nch = t_ // c
    f = jnp.promote_types(jnp.result_type(dt, A, B, C), jnp.float32)
    dt, B, C = (jnp.swapaxes(x.astype(f), 1, 2) for x in (dt, B, C))  # (m, T, D), (m, T, N)
    A = A.astype(f)
    S = prefix_sum(dt.reshape(m, nch, c, d), 2)[..., None]  # (m, nch, c, D, 1)
    e = A[:, None, None] * S  # (m, nch, c, D, N), ≤ 0
    q = (C.reshape(m, nch, c, 1, n) * jnp.exp(e)).reshape(m, nch, c, d * n)
    dB = dt.reshape(m, nch, c, d, 1) * B.reshape(m, nch, c, 1, n)
    k = (jnp.exp(-e) * dB).reshape(m, nch, c, d * n)
    if nch > 1:
        # gap[i, j] = P_{b_i} − P_{b_j} = Σ_{j≤l<i} tot_l, summed directly (no cancellation)
        between = np.array(
            [[[j <= l < i for l in range(nch)] for j in range(nch)] for i in range(nch)],
            np.float32,
        )  # (i, j, l)
        tot = S[:, :, -1, :, 0]  # (m, nch, D)
        gap = jnp.einsum("ijl,mld->mijd", between.astype(tot.dtype), tot, precision=HIGHEST)
        mid = jnp.exp(A[:, None, None] * gap[..., None]).reshape(m, nch, nch, 1, d * n)
    causal = np.tril(np.ones((c, c), bool))
    rows = []
    for i in range(nch):
        kk = k[:, : i + 1] * mid[:, i, : i + 1] if i else k[:, :1]
        prod = jax.lax.dot_general(
            q[:, i], kk.reshape(m, (i + 1) * c, d * n), (((2,), (2,)), ((0,), (0,))),
            precision=HIGHEST,
        )  # fmt: skip
        diag = jnp.where(causal, prod[..., i * c :], 0.0)  # selected, never multiplied
        row = [prod[..., : i * c], diag] if i else [diag]
        if i < nch - 1:
            row.append(jnp.zeros((m, c, t_ - (i + 1) * c), prod.dtype))
        rows.append(jnp.concatenate(row, axis=-1) if len(row) > 1 else row[0])
    return jnp.concatenate(rows, axis=1) if nch > 1 else rows[0]


def _bounded(dt, A, c: int):
    """Whether :func:`_products` with chunks of ``c`` is exact for Δ ``(…, D, T)`` and A
    ``(…, D, N)``: every chunk's decay exponent ``|A| Σ_chunk Δ`` is at most _BOUND (False
    where A or Δ is not finite)."""
    tot = jnp.sum(dt.reshape(dt.shape[:-1] + (dt.shape[-1] // c, c)), axis=-1)  # (…, D, nch)
    worst = jnp.max(-A, axis=-1)[..., None] * tot
    return jnp.all(worst <= _BOUND)


def _tiles(x, c: int):
    """``(m, P, T, …) → (m·T/c, P, c, …)``: the diagonal tiles' sequences, pairs kept together
    (chunk i of the first route with chunk ``T/c − 1 − i`` of the second, in its own order)."""
    m, p, t_ = x.shape[:3]
    nch = t_ // c
    x = x.reshape((m, p, nch, c) + x.shape[3:])
    if p == 2:
        x = jnp.stack([x[:, 0], jnp.flip(x[:, 1], 1)], axis=1)
    return jnp.swapaxes(x, 1, 2).reshape((m * nch, p, c) + x.shape[4:])


def _channel_last(dt, A, B, C):
    """``dt (..., D, L)``, ``B, C (..., N, L)`` → channel-last float arrays; A unchanged."""
    f = jnp.promote_types(jnp.result_type(dt, A, B, C), jnp.float32)
    args = (
        jnp.swapaxes(dt.astype(f), -1, -2),
        A.astype(f),
        jnp.swapaxes(B.astype(f), -1, -2),
        jnp.swapaxes(C.astype(f), -1, -2),
    )
    # materialised once: XLA would otherwise recompute the caller's softplus in every consumer
    return jax.lax.optimization_barrier(args)


def _pad(x, pad: int, front: bool):
    """Zero-pad axis 1 (the sequence) by ``pad`` positions at the front or the end."""
    widths = [(0, 0)] * x.ndim
    widths[1] = (pad, 0) if front else (0, pad)
    return jnp.pad(x, widths) if pad else x


def causal_maps(
    dt: Float[Array, "m d l"],
    A: Float[Array, "m d n"],
    B: Float[Array, "m n l"],
    C: Float[Array, "m n l"],
    *,
    chunk: int | None = None,
) -> Float[Array, "m l l"]:
    """Channel-mean hidden attention of m independent scans, in scan order.

    Args:
      dt: ``(M, D, L)`` final Δ (> 0); A: ``(M, D, N)`` (< 0); B, C: ``(M, N, L)``.
      chunk: top-level chunk size (performance only, see :func:`chunk_plan`).

    Returns:
      ``(M, L, L)``: ``out[m, t, s] = (1/D) Σ_{d,n} C_t exp(A (P_t − P_s)) Δ_s B_s`` for t ≥ s,
      zero above the diagonal.

    >>> import jax.numpy as jnp, numpy as np
    >>> dt = jnp.full((1, 2, 3), 0.5); A = -jnp.ones((1, 2, 1)); B = C = jnp.ones((1, 1, 3))
    >>> np.asarray(causal_maps(dt, A, B, C)[0], float).round(3).tolist()
    [[0.5, 0.0, 0.0], [0.303, 0.5, 0.0], [0.184, 0.303, 0.5]]
    """
    m, d, l = dt.shape

    def tiled(dt, A, B, C):
        dt, A, B, C = _channel_last(dt, A, B, C)
        lp, sizes = chunk_plan(l, chunk)
        dt, B, C = (_pad(x, lp - l, front=False) for x in (dt, B, C))
        one = lambda x: x[:, None]
        return _maps(one(dt), one(A), one(B), one(C), sizes)[:, :l, :l] / d

    def products(dt, A, B, C):
        return _products(dt, A, B, C, c) / d

    c = _fast_chunk(l, chunk)
    if c is None:
        out = tiled(dt, A, B, C)
    else:
        out = jax.lax.cond(_bounded(dt, A, c), products, tiled, dt, A, B, C)
    return _undefined_where_a_is_not_finite(out, A)


def spatial_maps(
    dt: Float[Array, "m k d l"],
    A: Float[Array, "m k d n"],
    B: Float[Array, "m k n l"],
    C: Float[Array, "m k n l"],
    routes: Int[np.ndarray, "k l"],
    *,
    each: bool = False,
    chunk: int | None = None,
    groups: tuple[tuple[int, ...], ...] | None = None,
) -> Float[Array, "m *k l l"]:
    """Channel-mean hidden attention of SS2D scans in row-major spatial coordinates.

    Args:
      dt: ``(M, K, D, L)`` final Δ of every route (scan order); A: ``(M, K, D, N)``;
        B, C: ``(M, K, N, L)``.
      routes: ``(K, L)`` integer routes (scan position → spatial index).
      each: return every route's map (``(M, K, L, L)``) instead of their sum (``(M, L, L)``).
      chunk: top-level chunk size (performance only).
      groups: :func:`jaxmamba.orders.route_groups` of ``routes``; needed only where the routes
        are traced (a :class:`~jaxmamba.orders.RouteTable`'s), read from them otherwise.

    Returns:
      ``Σ_k P_kᵀ ᾱ_k P_k`` (or each term): row p is the query patch, column q the source patch.

    >>> import jax.numpy as jnp
    >>> from jaxmamba.orders import make_routes
    >>> dt = jnp.full((1, 4, 2, 6), 0.5); A = -jnp.ones((1, 4, 2, 1))
    >>> B = C = jnp.ones((1, 4, 1, 6))
    >>> spatial_maps(dt, A, B, C, make_routes("cross", 2, 3)).shape
    (1, 6, 6)
    """
    m, k, d, l = dt.shape
    traced = not isinstance(routes, np.ndarray | list | tuple)
    routes = routes if traced else np.asarray(routes)
    if each:
        groups = tuple((i,) for i in range(k))
    elif groups is None:
        if traced:
            raise AttentionError("traced routes need their groups (route_groups of the routes)")
        groups = route_groups(routes)

    def spatial(maps, route):  # a route's (m, l, l) map from scan to row-major coordinates
        if traced:  # the same gathers, indices read from the traced routes
            inverse = jnp.argsort(routes[route])
            return jnp.take(jnp.take(maps, inverse, axis=1), inverse, axis=2)
        known = np.argsort(routes[route])
        if np.array_equal(known, np.arange(l)):
            return maps
        return jnp.take(jnp.take(maps, jnp.asarray(known), axis=1), jnp.asarray(known), axis=2)

    def combine(parts):
        return jnp.stack(parts, axis=1) / d if each else sum(parts[1:], parts[0]) / d

    def tiled(dt, A, B, C):
        return combine(_tiled_routes(dt, A, B, C, groups, spatial, chunk))

    def products(dt, A, B, C):
        flat = lambda x: x.reshape((m * k,) + x.shape[2:])
        low = _products(*map(flat, (dt, A, B, C)), c).reshape(m, k, l, l)
        return combine([spatial(low[:, r], r) for r in range(k)])

    c = _fast_chunk(l, chunk)
    if c is None:
        out = tiled(dt, A, B, C)
    else:  # only the branch taken runs (and is differentiated)
        out = jax.lax.cond(_bounded(dt, A, c), products, tiled, dt, A, B, C)
    return _undefined_where_a_is_not_finite(out, A)


def _tiled_routes(dt, A, B, C, groups, spatial, chunk) -> list:
    """Each group's map (a route, or a route and its reverse) by the recursive tiling, in
    row-major coordinates (``spatial``), without the 1/D."""
    m, k, d, l = dt.shape
    dt, A, B, C = _channel_last(dt, A, B, C)
    lp, sizes = chunk_plan(l, chunk)
    if lp > l:  # zero padding: at the end of a route, at the front of the second of a pair
        second = {g[1] for g in groups if len(g) == 2}
        dt, B, C = (
            jnp.stack([_pad(x[:, r], lp - l, r in second) for r in range(k)], axis=1)
            for x in (dt, B, C)
        )
    maps: dict[tuple[int, ...], Array] = {}
    for size in sorted({len(g) for g in groups}):
        same = [g for g in groups if len(g) == size]
        idx = np.asarray(same)  # (G, size) routes of every group, scans × groups batched
        picked = [x[:, idx].reshape((m * len(same), size) + x.shape[2:]) for x in (dt, A, B, C)]
        dt_g, A_g, B_g, C_g = picked
        got = _maps(dt_g, A_g, B_g, C_g, sizes)[:, :l, :l]
        maps.update(zip(same, jnp.unstack(got.reshape(m, len(same), l, l), axis=1), strict=True))
    return [spatial(maps[group], group[0]) for group in groups]


def _undefined_where_a_is_not_finite(maps, A):
    """NaN maps for the scans whose A holds ±inf or NaN (``A_logs`` ≥ 89 overflows float32):
    the decay exp(A·0) is then undefined, and the per-channel maps of :func:`verify` are NaN
    too, whatever the chunk plan.  ``maps (M, …)``, ``A (M, …)``."""
    ok = jnp.all(jnp.isfinite(A).reshape(A.shape[0], -1), axis=1)
    return jnp.where(ok.reshape((-1,) + (1,) * (maps.ndim - 1)), maps, jnp.nan)
