"""The Pallas selective scan on GPU (Triton): forward and backward kernels.

Grid ``(b, g, ⌈dg/bd⌉)``; each program owns ``bd`` channels of one (batch, group) and keeps
their ``(bd, n)`` state in registers while a ``fori_loop`` walks the sequence in tiles of
``block_l`` steps.  A tile of u, Δ is loaded once (contiguous along l), its columns are taken
out in registers, and y is written back one tile at a time.  Partial channel blocks and the
sequence tail are masked (Δ = u = 0 leaves the state unchanged).  For n = 1 (VMamba's s1
models, the default ``BlockSizes.tiles_n1``) decays ``exp(Δ A)``, inputs ``Δ B u``, outputs
``C h`` and all gradients are computed on whole tiles; only ``h ← a h + b`` and the adjoint
recurrence are stepped (the general kernels also step the exponentials and per-step
reductions).

The backward walks chunks of ``chunk`` steps in reverse from the state the forward saved at
each chunk's start, recomputing the chunk's states in registers.  Code generation (checked by
compiling the kernels' Triton IR for sm_90 with ptxas): the backward's chunk count is read from
memory, since LLVM unrolled loops with a constant small trip count (4 chunks at l = 49) into
spilling code; and the caller zero-pads the sequence to a multiple of ``align_l`` = 4 steps,
since rows of unaligned length get scalar loads and a register layout that repeats every state
update 4 times per thread (see ``benchmarks/results/pallas_gpu_codegen.md``).

Limits: the kernels index with int32 (b·d·l < 2³¹).  The Triton backend of Pallas is
deprecated from JAX 0.11 (a DeprecationWarning) but is the one that accepts these kernels.
Letters as in :mod:`jaxmamba.kernels.pallas_common`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from jaxmamba.errors import ScanError
from jaxmamba.kernels.pallas_common import F32, BlockSizes, iota, next_pow2

__all__ = ["scan_bwd", "scan_fwd"]


def _col(x, cols, k):
    """Column ``k`` of the register tile ``x`` ``(r, c)`` (``cols``: its column indices) as an
    ``(r,)`` vector."""
    return jnp.sum(jnp.where(cols == k, x, 0.0), axis=1)


def _put(tile, cols, k, v):
    """``tile`` with column ``k`` replaced by ``v`` ``(r,)``."""
    return jnp.where(cols == k, v[:, None], tile)


def _gpu_prologue(A_ref, *, dg, n, bd):
    """Masks of this program's channel block and its ``A`` ``(bd, n')``, n' = n padded to 2^k:
    ``(rmask (bd,), nmask (n',), hmask (bd, n'), A)``."""
    np_ = next_pow2(n)
    rmask = pl.program_id(2) * bd + iota((bd,), 0) < dg
    nmask = iota((np_,), 0) < n
    hmask = rmask[:, None] & nmask[None, :]
    A = plgpu.load(A_ref.at[pl.ds(0, bd), pl.ds(0, np_)], mask=hmask, other=0.0).astype(F32)
    return rmask, nmask, hmask, A


def _gpu_fwd_kernel(
    u_ref, dt_ref, A_ref, B_ref, C_ref, y_ref, *hs_refs, l, dg, n, bd, bl, chunk, prefetch, tiles
):  # fmt: skip
    """One (batch, group, channel block): u, dt, y refs ``(bd, l)``, B, C ``(n, l)``, optional
    states ``(nc, bd, n)``.  With ``prefetch`` the loop carries the next tile, loaded before the
    current one is computed (the tile past the end is fully masked: no memory access).  With
    ``tiles`` (n = 1 only) decays, inputs and outputs are computed on whole tiles."""
    np_ = next_pow2(n)
    rmask, nmask, hmask, A = _gpu_prologue(A_ref, dg=dg, n=n, bd=bd)
    col = iota((bd, bl), 1)
    ncol = iota((np_, bl), 1)

    def masks(i):
        tmask = i * bl + iota((bl,), 0) < l
        return rmask[:, None] & tmask[None, :], nmask[:, None] & tmask[None, :]

    def load(i):
        t0, (m, mn) = i * bl, masks(i)
        u = plgpu.load(u_ref.at[pl.ds(0, bd), pl.ds(t0, bl)], mask=m, other=0.0).astype(F32)
        dt = plgpu.load(dt_ref.at[pl.ds(0, bd), pl.ds(t0, bl)], mask=m, other=0.0).astype(F32)
        Bt = plgpu.load(B_ref.at[pl.ds(0, np_), pl.ds(t0, bl)], mask=mn, other=0.0).astype(F32)
        Ct = plgpu.load(C_ref.at[pl.ds(0, np_), pl.ds(t0, bl)], mask=mn, other=0.0).astype(F32)
        return u, dt, Bt, Ct

    def compute(i, h, x):
        u, dt, Bt, Ct = x
        du = dt * u
        y = jnp.zeros((bd, bl), F32)
        for k in range(bl):
            dt_k, du_k = _col(dt, col, k), _col(du, col, k)
            B_k, C_k = _col(Bt, ncol, k), _col(Ct, ncol, k)
            h = jnp.exp(dt_k[:, None] * A) * h + du_k[:, None] * B_k[None, :]
            y = _put(y, col, k, jnp.sum(h * C_k[None, :], axis=1))
        plgpu.store(y_ref.at[pl.ds(0, bd), pl.ds(i * bl, bl)], y, mask=masks(i)[0])
        return h

    def compute_tiles(i, h, x):  # n = 1: h (bd, 1); only the state update is sequential
        u, dt, Bt, Ct = x
        a, b = jnp.exp(dt * A), dt * u * Bt
        hs = jnp.zeros((bd, bl), F32)
        for k in range(bl):
            h = _col(a, col, k)[:, None] * h + _col(b, col, k)[:, None]
            hs = jnp.where(col == k, h, hs)
        plgpu.store(y_ref.at[pl.ds(0, bd), pl.ds(i * bl, bl)], hs * Ct, mask=masks(i)[0])
        return h

    if tiles:
        compute = compute_tiles
    if prefetch:  # carry: (state, tile i)

        def tile(i, carry):
            nxt = load(i + 1)
            return compute(i, carry[0], carry[1]), nxt

        state = lambda carry: carry[0]
        init = (jnp.zeros((bd, np_), F32), load(0))
    else:  # carry: state
        tile = lambda i, h: compute(i, h, load(i))
        state = lambda h: h
        init = jnp.zeros((bd, np_), F32)

    if not hs_refs:
        lax.fori_loop(0, pl.cdiv(l, bl), tile, init)
        return
    (hs_ref,) = hs_refs
    per = chunk // bl

    def chunk_body(c, carry):
        plgpu.store(hs_ref.at[c, pl.ds(0, bd), pl.ds(0, np_)], state(carry), mask=hmask)
        return lax.fori_loop(0, per, lambda k, carry: tile(c * per + k, carry), carry)

    lax.fori_loop(0, pl.cdiv(l, chunk), chunk_body, init)


def _gpu_bwd_kernel(
    u_ref, dt_ref, A_ref, B_ref, C_ref, hs_ref, dy_ref, nc_ref,
    du_ref, ddt_ref, dA_ref, dB_ref, dC_ref,
    *, l, dg, n, bd, chunk, tiles,
):  # fmt: skip
    """Reverse sweep of one (batch, group, channel block), ``chunk`` steps at a time.

    The chunk count is read from ``nc_ref`` (it equals ``⌈l / chunk⌉``) so that the loop's trip
    count is not a compile-time constant: LLVM fully unrolled loops with few trips (4 chunks at
    l = 49), and the unrolled body of the backward spilled kilobytes of registers to local
    memory, slower than ``lax.scan`` (see ``benchmarks/results/pallas_gpu_codegen.md``).
    """
    np_ = next_pow2(n)
    rmask, nmask, hmask, A = _gpu_prologue(A_ref, dg=dg, n=n, bd=bd)
    col = iota((bd, chunk), 1)
    ncol = iota((np_, chunk), 1)
    nc = pl.cdiv(l, chunk)

    def load_chunk(ci):
        """Chunk ``nc − 1 − ci``: its start, masks (channels × time, states × time) and
        u, dt, dy ``(bd, chunk)``, B, C ``(n', chunk)``, the state entering it ``(bd, n')``."""
        c = nc - 1 - ci
        t0 = c * chunk
        tmask = t0 + iota((chunk,), 0) < l
        m = rmask[:, None] & tmask[None, :]
        mn = nmask[:, None] & tmask[None, :]

        def ld(ref, rr, mask):
            x = plgpu.load(ref.at[pl.ds(0, rr), pl.ds(t0, chunk)], mask=mask, other=0.0)
            return x.astype(F32)

        u, dt, dy = (ld(r, bd, m) for r in (u_ref, dt_ref, dy_ref))
        Bt, Ct = (ld(r, np_, mn) for r in (B_ref, C_ref))
        h = plgpu.load(hs_ref.at[c, pl.ds(0, bd), pl.ds(0, np_)], mask=hmask, other=0.0)
        return t0, m, mn, (u, dt, dy, Bt, Ct, h)

    def chunk_body(ci, carry):
        g_next, dA = carry  # g_next = exp(Δ_{t+1} A) g_{t+1}: the adjoint flowing into step t
        t0, m, mn, (u, dt, dy, Bt, Ct, h) = load_chunk(ci)
        du_in = dt * u
        # Recompute the chunk's states from its boundary state: hist[k] = state before step k.
        dts = [_col(dt, col, k) for k in range(chunk)]
        dus = [_col(du_in, col, k) for k in range(chunk)]
        Bs = [_col(Bt, ncol, k) for k in range(chunk)]
        hist, decay = [], []
        for k in range(chunk):
            a = jnp.exp(dts[k][:, None] * A)
            hist.append(h)
            decay.append(a)
            h = a * h + dus[k][:, None] * Bs[k][None, :]
        du_t = jnp.zeros((bd, chunk), F32)
        ddt_t = jnp.zeros((bd, chunk), F32)
        dB_t = jnp.zeros((np_, chunk), F32)
        dC_t = jnp.zeros((np_, chunk), F32)
        for k in reversed(range(chunk)):
            dy_k, u_k, C_k = _col(dy, col, k), _col(u, col, k), _col(Ct, ncol, k)
            h_prev, a = hist[k], decay[k]
            g = g_next + dy_k[:, None] * C_k[None, :]
            dC_t = _put(dC_t, ncol, k, jnp.sum(dy_k[:, None] * h, axis=0))
            gB = jnp.sum(g * Bs[k][None, :], axis=1)
            du_t = _put(du_t, col, k, gB * dts[k])
            dB_t = _put(dB_t, ncol, k, jnp.sum(g * dus[k][:, None], axis=0))
            gha = g * h_prev * a
            ddt_t = _put(ddt_t, col, k, gB * u_k + jnp.sum(gha * A, axis=1))
            dA = dA + gha * dts[k][:, None]
            g_next = g * a
            h = h_prev
        plgpu.store(du_ref.at[pl.ds(0, bd), pl.ds(t0, chunk)], du_t, mask=m)
        plgpu.store(ddt_ref.at[pl.ds(0, bd), pl.ds(t0, chunk)], ddt_t, mask=m)
        plgpu.store(dB_ref.at[pl.ds(0, np_), pl.ds(t0, chunk)], dB_t, mask=mn)
        plgpu.store(dC_ref.at[pl.ds(0, np_), pl.ds(t0, chunk)], dC_t, mask=mn)
        return g_next, dA

    def chunk_body_tiles(ci, carry):  # n = 1: only the two recurrences are sequential
        g_next, dA = carry  # (bd, 1)
        t0, m, mn, (u, dt, dy, Bt, Ct, h) = load_chunk(ci)
        a, du_in = jnp.exp(dt * A), dt * u
        b = du_in * Bt
        h_prev = jnp.zeros((bd, chunk), F32)  # state before each step
        for k in range(chunk):
            h_prev = jnp.where(col == k, h, h_prev)
            h = _col(a, col, k)[:, None] * h + _col(b, col, k)[:, None]
        dyC = dy * Ct
        gs = jnp.zeros((bd, chunk), F32)  # adjoint of the state after each step
        for k in reversed(range(chunk)):
            g = g_next + _col(dyC, col, k)[:, None]
            gs = jnp.where(col == k, g, gs)
            g_next = g * _col(a, col, k)[:, None]
        gB = gs * Bt
        gha = gs * h_prev * a
        plgpu.store(du_ref.at[pl.ds(0, bd), pl.ds(t0, chunk)], gB * dt, mask=m)
        plgpu.store(ddt_ref.at[pl.ds(0, bd), pl.ds(t0, chunk)], gB * u + gha * A, mask=m)
        dB_t = jnp.sum(gs * du_in, axis=0, keepdims=True)
        dC_t = jnp.sum(dy * (a * h_prev + b), axis=0, keepdims=True)
        plgpu.store(dB_ref.at[pl.ds(0, 1), pl.ds(t0, chunk)], dB_t, mask=mn)
        plgpu.store(dC_ref.at[pl.ds(0, 1), pl.ds(t0, chunk)], dC_t, mask=mn)
        return g_next, dA + jnp.sum(gha * dt, axis=1, keepdims=True)

    if tiles:
        chunk_body = chunk_body_tiles
    zeros = jnp.zeros((bd, np_), F32)
    _, dA = lax.fori_loop(0, nc_ref[0], chunk_body, (zeros, zeros))
    plgpu.store(dA_ref.at[pl.ds(0, bd), pl.ds(0, np_)], dA, mask=hmask)


def scan_fwd(u, dt, A, B, C, *, bs: BlockSizes, interpret: bool, save: bool):
    """GPU-style forward.  Returns y ``(b, d, l)`` and, if ``save``, states (b, g, nc, dg, n)."""
    b, d, l = u.shape
    if b * d * l >= 2**31:
        raise ScanError(f"the GPU kernels index with int32: b·d·l must be < 2**31, got {u.shape}")
    g, n = B.shape[1], A.shape[1]
    dg, bd, chunk = d // g, bs.block_d, bs.chunk
    nc = pl.cdiv(l, chunk)
    grid = (b, g, pl.cdiv(dg, bd))
    seq = pl.BlockSpec((None, None, bd, l), lambda i, j, k: (i, j, k, 0))
    bc = pl.BlockSpec((None, None, n, l), lambda i, j, k: (i, j, 0, 0))
    out_shape = [jax.ShapeDtypeStruct((b, g, dg, l), F32)]
    out_specs = [seq]
    if save:
        out_shape.append(jax.ShapeDtypeStruct((b, g, nc, dg, n), F32))
        out_specs.append(pl.BlockSpec((None, None, nc, bd, n), lambda i, j, k: (i, j, 0, k, 0)))
    kernel = functools.partial(
        _gpu_fwd_kernel, l=l, dg=dg, n=n, bd=bd, bl=bs.block_l, chunk=chunk,
        prefetch=bs.prefetch, tiles=bs.tiles_n1 and n == 1,
    )  # fmt: skip
    out = pl.pallas_call(
        kernel,
        grid=grid,
        in_specs=[seq, seq, pl.BlockSpec((None, bd, n), lambda i, j, k: (j, k, 0)), bc, bc],
        out_specs=out_specs,
        out_shape=out_shape,
        compiler_params=plgpu.CompilerParams(num_warps=bs.num_warps, num_stages=bs.num_stages),
        interpret=interpret,
        name="selective_scan_fwd",
    )(
        u.reshape(b, g, dg, l),
        dt.reshape(b, g, dg, l),
        A.astype(F32).reshape(g, dg, n),
        B,
        C,
    )
    y = out[0].reshape(b, d, l)
    return (y, out[1]) if save else (y, None)


def scan_bwd(u, dt, A, B, C, hs, dy, *, bs: BlockSizes, interpret: bool):
    """GPU-style backward: (du, ddt) ``(b, d, l)``, dA ``(d, n)``, dB, dC ``(b, g, n, l)``."""
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    dg, bd, chunk = d // g, bs.block_d_bwd, bs.chunk
    nc, nb = pl.cdiv(l, chunk), pl.cdiv(dg, bd)
    seq = pl.BlockSpec((None, None, bd, l), lambda i, j, k: (i, j, k, 0))
    bc = pl.BlockSpec((None, None, n, l), lambda i, j, k: (i, j, 0, 0))
    part = pl.BlockSpec((None, None, None, n, l), lambda i, j, k: (i, j, k, 0, 0))
    f32 = lambda *s: jax.ShapeDtypeStruct(s, F32)
    kernel = functools.partial(
        _gpu_bwd_kernel, l=l, dg=dg, n=n, bd=bd, chunk=chunk, tiles=bs.tiles_n1 and n == 1
    )
    du, ddt, dA, dB, dC = pl.pallas_call(
        kernel,
        grid=(b, g, nb),
        in_specs=[
            seq,
            seq,
            pl.BlockSpec((None, bd, n), lambda i, j, k: (j, k, 0)),
            bc,
            bc,
            pl.BlockSpec((None, None, nc, bd, n), lambda i, j, k: (i, j, 0, k, 0)),
            seq,
            pl.BlockSpec((1,), lambda i, j, k: (0,)),
        ],
        out_specs=[seq, seq, pl.BlockSpec((None, None, bd, n), lambda i, j, k: (i, j, k, 0))]
        + [part, part],
        out_shape=[f32(b, g, dg, l), f32(b, g, dg, l), f32(b, g, dg, n)]
        + [f32(b, g, nb, n, l)] * 2,
        compiler_params=plgpu.CompilerParams(num_warps=bs.num_warps_bwd, num_stages=bs.num_stages),
        interpret=interpret,
        name="selective_scan_bwd",
    )(
        u.reshape(b, g, dg, l),
        dt.reshape(b, g, dg, l),
        A.astype(F32).reshape(g, dg, n),
        B,
        C,
        hs,
        dy.astype(F32).reshape(b, g, dg, l),
        jnp.full((1,), nc, jnp.int32),  # the trip count, hidden from the compiler
    )
    return (
        du.reshape(b, d, l),
        ddt.reshape(b, d, l),
        dA.sum(axis=0).reshape(d, n),
        dB.sum(axis=2),
        dC.sum(axis=2),
    )
