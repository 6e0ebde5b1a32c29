"""Pallas selective scan, forward and backward, for GPU (Triton) and TPU (Mosaic).

Computes, for channel d of group g(d), state index n and time t (Δ = ``dt`` is the final step
size, bias and softplus already applied)::

    h_t[d, n] = exp(Δ_t[d] A[d, n]) h_{t-1}[d, n] + Δ_t[d] B_t[g(d), n] u_t[d],   h_0 = 0
    y_t[d]    = Σ_n C_t[g(d), n] h_t[d, n]

without the D skip (``selective_scan`` adds it).  :func:`scan_ref` is the pure-jnp reference
the kernels must equal; :func:`scan` is the public jitted entry point.

Shapes: u, dt ``(b, d, l)``; A ``(d, n)``; B, C ``(b, g, n, l)``; y ``(b, d, l)`` float32.
Inputs may be float32, bfloat16 or float16: the kernels cast to float32 on chip and accumulate
in float32.

Design (letters: b batch, g group, d channel, dg = d / g channels per group, n state, l time):

- GPU (Triton backend, pinned through ``triton.CompilerParams``): grid ``(b, g, ⌈dg/bd⌉)``;
  each program owns ``bd`` channels of one (batch, group) and keeps their ``(bd, n)`` state in
  registers while a ``fori_loop`` walks the sequence in tiles of ``block_l`` steps.  A tile of
  u, Δ is loaded once (contiguous along l), its columns are taken out in registers, and y is
  written back one tile at a time.  Partial channel blocks and the sequence tail are masked
  (Δ = u = 0 leaves the state unchanged).  For n = 1 (VMamba's s1 models, the default
  ``BlockSizes.tiles_n1``) decays ``exp(Δ A)``, inputs ``Δ B u``, outputs ``C h`` and all
  gradients are computed on whole tiles; only ``h ← a h + b`` and the adjoint recurrence are
  stepped (the general kernels also step the exponentials and per-step reductions).
- TPU (Mosaic): grid ``(b, g, ⌈dg/bd⌉, ⌈l/tl⌉)`` with the sequence axis "arbitrary".  A
  ``(bd, tl)`` tile is transposed on chip so that channels lie on the 128 lanes and time on
  sublanes; the ``(n, bd)`` state is carried across sequence tiles in a VMEM scratch.
- Backward (``jax.custom_vjp``): the forward also writes the state entering every chunk of
  ``chunk`` steps (GPU) or every sequence tile (TPU).  The backward walks the chunks in reverse,
  recomputes the chunk's states from its boundary state (registers on GPU, a VMEM scratch on
  TPU) and runs the adjoint recurrence ``g_t = C_t dy_t + exp(Δ_{t+1} A) g_{t+1}``.  It never
  divides by a decay (exp(Δ A) may underflow to 0).  dB, dC (sums over the channels of a group)
  are written as per-channel-block partials and summed in XLA, dA as per-batch partials: the
  reduction order is fixed, so gradients are deterministic.
- GPU code generation (checked by compiling the kernels' Triton IR for sm_90 with ptxas): the
  backward's chunk count is read from memory, since LLVM unrolled loops with a constant small
  trip count (4 chunks at l = 49) into spilling code; and the sequence is zero-padded to a
  multiple of ``align_l`` = 4 steps, since rows of unaligned length get scalar loads and a
  register layout that repeats every state update 4 times per thread.

Limits: the GPU kernels index with int32 (b·d·l < 2³¹).  The Triton backend of Pallas is
deprecated from JAX 0.11 (a DeprecationWarning) but is the one that accepts these kernels.
Route permutations (VMamba's cross-scan) are not fused into the kernels' indexing: gathered
loads would break the contiguous tiles along l that the kernels rely on.

Exactness: the forward is the same float32 recurrence as :func:`scan_ref` step for step (only
the reduction order over n differs); gradients agree with ``jax.grad`` of the reference to
float32 rounding.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as plgpu

from jaxmamba.kernels.selective_scan import ScanError, scan_plain

__all__ = ["BlockSizes", "PLATFORMS", "scan", "scan_ref"]

PLATFORMS = ("gpu", "tpu")
_F32 = jnp.float32


def _is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def _next_pow2(x: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(x, 1))))


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Block sizes of the Pallas selective scan; the results do not depend on them.

    GPU (powers of two): ``block_d`` channels per forward program, ``block_l`` time steps per
    forward tile, ``chunk`` steps between saved states (a multiple of ``block_l``; the backward
    recomputes one chunk in registers), ``block_d_bwd`` channels per backward program,
    ``num_warps`` / ``num_warps_bwd`` / ``num_stages`` for Triton.  ``align_l``: the GPU path
    zero-pads the sequence to a multiple of ``align_l`` (1: never) so that every row of u, Δ,
    dy starts 16-byte aligned; with unaligned rows (l = 49) Triton picks scalar loads and a
    layout that computes every state 4 times per thread (3× the instructions per step).
    ``prefetch``: the GPU forward loads the next tile before computing the current one.
    ``tiles_n1``: for n = 1, GPU kernels that compute decays, inputs, outputs and gradients on
    whole tiles, so that the sequential loop only carries the state (2 column extractions per
    step instead of 4 in the forward, 4 instead of 6 plus the exponentials in the backward).
    TPU: ``tpu_block_d`` channels per block (a multiple of 8; a group with fewer channels is one
    block), ``tpu_block_l`` sequence tile (a multiple of 128; also the saved-state stride).
    """

    block_d: int = 16
    block_l: int = 8
    chunk: int = 8
    block_d_bwd: int = 16
    num_warps: int = 1
    num_warps_bwd: int = 1
    num_stages: int = 3
    tpu_block_d: int = 128
    tpu_block_l: int = 128
    align_l: int = 4
    prefetch: bool = False
    tiles_n1: bool = False

    @classmethod
    def get_default(cls, n: int = 1, l: int | None = None) -> BlockSizes:
        """Defaults for state size ``n`` and sequence length ``l`` (None: long).

        n = 1: the whole-tile kernels (``tiles_n1``) with one-warp programs and 16-step tiles
        and chunks; 16 channels per program, 8 when l ≤ 256 (more programs when each is
        short).  On the H100 (``benchmarks/results/gpu_check_h100_run4.log``) these were the
        fastest forward+backward settings of the sweep at stages 1–4 of VMamba-T (stage 1
        forward within 1% of the best); on the H200 (``gpu_check_h200_run3.log``) 16-step
        whole-tile kernels beat the general 8-step kernels at stages 2–4.
        """
        if n <= 1:
            bd = 8 if l is not None and l <= 256 else 16
            return cls(block_d=bd, block_l=16, chunk=16, block_d_bwd=bd, tiles_n1=True)
        return cls(
            block_d=16, block_l=8, chunk=8, block_d_bwd=16, num_warps=2, num_warps_bwd=2,
            num_stages=2,
        )  # fmt: skip

    def validate(self) -> None:
        names = ("block_d", "block_l", "chunk", "block_d_bwd", "num_warps", "num_warps_bwd")
        for name in names + ("align_l",):
            if not _is_pow2(getattr(self, name)):
                raise ScanError(
                    f"BlockSizes.{name} must be a power of 2, got {getattr(self, name)}"
                )
        if self.chunk % self.block_l:
            raise ScanError(
                f"BlockSizes.chunk={self.chunk} must be a multiple of block_l={self.block_l}"
            )
        if self.tpu_block_d % 8 or self.tpu_block_d <= 0:
            raise ScanError(
                f"BlockSizes.tpu_block_d must be a multiple of 8, got {self.tpu_block_d}"
            )
        if self.tpu_block_l % 128 or self.tpu_block_l <= 0:
            raise ScanError(
                f"BlockSizes.tpu_block_l must be a multiple of 128, got {self.tpu_block_l}"
            )


# ----------------------------------------------------------------------------------------------
# Reference.


def scan_ref(u, dt, A, B, C):
    """Pure-jnp step-by-step reference of :func:`scan`: ``Σ_n C_t h_t``, ``(b, d, l)`` float32.

    >>> import jax.numpy as jnp
    >>> u = jnp.ones((1, 2, 5)); dt = jnp.full((1, 2, 5), 0.5)
    >>> scan_ref(u, dt, -jnp.ones((2, 1)), jnp.ones((1, 1, 1, 5)), jnp.ones((1, 1, 1, 5))).shape
    (1, 2, 5)
    """
    return scan_plain(*(x.astype(_F32) for x in (u, dt, A, B, C)))


# ----------------------------------------------------------------------------------------------
# GPU (Triton) kernels.


def _col(x, iota, k):
    """Column ``k`` of the register tile ``x`` ``(r, c)`` as an ``(r,)`` vector."""
    return jnp.sum(jnp.where(iota == k, x, 0.0), axis=1)


def _put(tile, iota, k, v):
    """``tile`` with column ``k`` replaced by ``v`` ``(r,)``."""
    return jnp.where(iota == k, v[:, None], tile)


def _iota(shape, axis):
    return lax.broadcasted_iota(jnp.int32, shape, axis)


def _gpu_prologue(A_ref, *, dg, n, bd):
    """Masks of this program's channel block and its ``A`` ``(bd, n')``, n' = n padded to 2^k:
    ``(rmask (bd,), nmask (n',), hmask (bd, n'), A)``."""
    np_ = _next_pow2(n)
    rmask = pl.program_id(2) * bd + _iota((bd,), 0) < dg
    nmask = _iota((np_,), 0) < n
    hmask = rmask[:, None] & nmask[None, :]
    A = plgpu.load(A_ref.at[pl.ds(0, bd), pl.ds(0, np_)], mask=hmask, other=0.0).astype(_F32)
    return rmask, nmask, hmask, A


def _gpu_fwd_kernel(
    u_ref, dt_ref, A_ref, B_ref, C_ref, y_ref, *hs_refs, l, dg, n, bd, bl, chunk, prefetch, tiles
):  # fmt: skip
    """One (batch, group, channel block): u, dt, y refs ``(bd, l)``, B, C ``(n, l)``, optional
    states ``(nc, bd, n)``.  With ``prefetch`` the loop carries the next tile, loaded before the
    current one is computed (the tile past the end is fully masked: no memory access).  With
    ``tiles`` (n = 1 only) decays, inputs and outputs are computed on whole tiles."""
    np_ = _next_pow2(n)
    rmask, nmask, hmask, A = _gpu_prologue(A_ref, dg=dg, n=n, bd=bd)
    col = _iota((bd, bl), 1)
    ncol = _iota((np_, bl), 1)

    def masks(i):
        tmask = i * bl + _iota((bl,), 0) < l
        return rmask[:, None] & tmask[None, :], nmask[:, None] & tmask[None, :]

    def load(i):
        t0, (m, mn) = i * bl, masks(i)
        u = plgpu.load(u_ref.at[pl.ds(0, bd), pl.ds(t0, bl)], mask=m, other=0.0).astype(_F32)
        dt = plgpu.load(dt_ref.at[pl.ds(0, bd), pl.ds(t0, bl)], mask=m, other=0.0).astype(_F32)
        Bt = plgpu.load(B_ref.at[pl.ds(0, np_), pl.ds(t0, bl)], mask=mn, other=0.0).astype(_F32)
        Ct = plgpu.load(C_ref.at[pl.ds(0, np_), pl.ds(t0, bl)], mask=mn, other=0.0).astype(_F32)
        return u, dt, Bt, Ct

    def compute(i, h, x):
        u, dt, Bt, Ct = x
        du = dt * u
        y = jnp.zeros((bd, bl), _F32)
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
        hs = jnp.zeros((bd, bl), _F32)
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
        init = (jnp.zeros((bd, np_), _F32), load(0))
    else:  # carry: state
        tile = lambda i, h: compute(i, h, load(i))
        state = lambda h: h
        init = jnp.zeros((bd, np_), _F32)

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
    memory (the stage-4 backward was 3.5× slower than ``lax.scan``).
    """
    np_ = _next_pow2(n)
    rmask, nmask, hmask, A = _gpu_prologue(A_ref, dg=dg, n=n, bd=bd)
    col = _iota((bd, chunk), 1)
    ncol = _iota((np_, chunk), 1)
    nc = pl.cdiv(l, chunk)

    def load_chunk(ci):
        """Chunk ``nc − 1 − ci``: its start, masks (channels × time, states × time) and
        u, dt, dy ``(bd, chunk)``, B, C ``(n', chunk)``, the state entering it ``(bd, n')``."""
        c = nc - 1 - ci
        t0 = c * chunk
        tmask = t0 + _iota((chunk,), 0) < l
        m = rmask[:, None] & tmask[None, :]
        mn = nmask[:, None] & tmask[None, :]

        def ld(ref, rr, mask):
            x = plgpu.load(ref.at[pl.ds(0, rr), pl.ds(t0, chunk)], mask=mask, other=0.0)
            return x.astype(_F32)

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
        du_t = jnp.zeros((bd, chunk), _F32)
        ddt_t = jnp.zeros((bd, chunk), _F32)
        dB_t = jnp.zeros((np_, chunk), _F32)
        dC_t = jnp.zeros((np_, chunk), _F32)
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
        h_prev = jnp.zeros((bd, chunk), _F32)  # state before each step
        for k in range(chunk):
            h_prev = jnp.where(col == k, h, h_prev)
            h = _col(a, col, k)[:, None] * h + _col(b, col, k)[:, None]
        dyC = dy * Ct
        gs = jnp.zeros((bd, chunk), _F32)  # adjoint of the state after each step
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
    zeros = jnp.zeros((bd, np_), _F32)
    _, dA = lax.fori_loop(0, nc_ref[0], chunk_body, (zeros, zeros))
    plgpu.store(dA_ref.at[pl.ds(0, bd), pl.ds(0, np_)], dA, mask=hmask)


def _gpu_fwd(u, dt, A, B, C, *, bs: BlockSizes, interpret: bool, save: bool):
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
    out_shape = [jax.ShapeDtypeStruct((b, g, dg, l), _F32)]
    out_specs = [seq]
    if save:
        out_shape.append(jax.ShapeDtypeStruct((b, g, nc, dg, n), _F32))
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
        A.astype(_F32).reshape(g, dg, n),
        B,
        C,
    )
    y = out[0].reshape(b, d, l)
    return (y, out[1]) if save else (y, None)


def _gpu_bwd(u, dt, A, B, C, hs, dy, *, bs: BlockSizes, interpret: bool):
    """GPU-style backward: (du, ddt) ``(b, d, l)``, dA ``(d, n)``, dB, dC ``(b, g, n, l)``."""
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    dg, bd, chunk = d // g, bs.block_d_bwd, bs.chunk
    nc, nb = pl.cdiv(l, chunk), pl.cdiv(dg, bd)
    seq = pl.BlockSpec((None, None, bd, l), lambda i, j, k: (i, j, k, 0))
    bc = pl.BlockSpec((None, None, n, l), lambda i, j, k: (i, j, 0, 0))
    part = pl.BlockSpec((None, None, None, n, l), lambda i, j, k: (i, j, k, 0, 0))
    f32 = lambda *s: jax.ShapeDtypeStruct(s, _F32)
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
        A.astype(_F32).reshape(g, dg, n),
        B,
        C,
        hs,
        dy.astype(_F32).reshape(b, g, dg, l),
        jnp.full((1,), nc, jnp.int32),  # the trip count, hidden from the compiler
    )
    return (
        du.reshape(b, d, l),
        ddt.reshape(b, d, l),
        dA.sum(axis=0).reshape(d, n),
        dB.sum(axis=2),
        dC.sum(axis=2),
    )


# ----------------------------------------------------------------------------------------------
# TPU (Mosaic) kernels.


def _tpu_dims(dg: int, bs: BlockSizes):
    """(bd, bdp, tl): channel block, its lane-padded width, sequence tile."""
    bd = dg if dg <= bs.tpu_block_d else bs.tpu_block_d
    bdp = pl.cdiv(bd, 128) * 128
    tl = bs.tpu_block_l
    return bd, bdp, tl


def _tpu_put_t(x, dst, pad, bd, bdp):
    """Store the transpose of the ``(bd, tl)`` value ``x`` in ``dst`` ``(tl, bdp)``."""
    if bd == bdp:
        dst[...] = x.T
    else:
        pad[...] = jnp.zeros(pad.shape, _F32)  # lanes bd..bdp: zero channels
        pad[0:bd, :] = x
        dst[...] = pad[...].T


def _tpu_store_t(src, ref, pad, bd, bdp):
    """Store the transpose of ``src`` ``(tl, bdp)`` into the ``(bd, tl)`` block ``ref``."""
    if bd == bdp:
        ref[...] = src[...].T
    else:
        pad[...] = src[...].T
        ref[...] = pad[0:bd, :]


_SUB = 8  # TPU sublanes: time steps per aligned slab


def _slab_ix(s):
    return pl.ds(pl.multiple_of(s * _SUB, _SUB), _SUB)


def _slab(ref, s):
    """Rows ``s·8 … s·8 + 7`` of a ``(tl, bdp)`` scratch (an aligned dynamic load)."""
    return ref[_slab_ix(s), :]


def _lane(x, lane, t):
    """Column ``t`` (dynamic) of ``x`` ``(n, tl)`` as ``(n, 1)``, by a masked lane reduction."""
    return jnp.sum(jnp.where(lane == t, x, 0.0), axis=1, keepdims=True)


def _tpu_valid(j, i, shape, bd, tl, dg, l):
    rows = j * bd + _iota(shape, 0)
    cols = i * tl + _iota(shape, 1)
    return (rows < dg) & (cols < l)


def _tpu_fwd_kernel(
    u_ref, dt_ref, A_ref, B_ref, C_ref, y_ref, *rest, l, dg, bd, bdp, tl, save
):  # fmt: skip
    """Block (batch, group, channel block, sequence tile): u, dt, y ``(bd, tl)``; B, C
    ``(n, tl)``; A ``(n, bdp)``; state ``(n, bdp)`` with channels on lanes."""
    if save:
        hs_ref, h_scr, pad, duT, dtT, yT = rest
    else:
        h_scr, pad, duT, dtT, yT = rest
    j, i = pl.program_id(2), pl.program_id(3)

    @pl.when(i == 0)
    def _():
        h_scr[...] = jnp.zeros(h_scr.shape, _F32)

    if save:
        hs_ref[...] = h_scr[...]
    valid = _tpu_valid(j, i, (bd, tl), bd, tl, dg, l)
    dt = jnp.where(valid, dt_ref[...].astype(_F32), 0.0)
    u = jnp.where(valid, u_ref[...].astype(_F32), 0.0)
    for x, dst in ((dt, dtT), (dt * u, duT)):
        _tpu_put_t(x, dst, pad, bd, bdp)
    tvalid = i * tl + _iota(B_ref.shape, 1) < l
    Bt = jnp.where(tvalid, B_ref[...].astype(_F32), 0.0)
    Ct = jnp.where(tvalid, C_ref[...].astype(_F32), 0.0)
    A = A_ref[...]
    lane = _iota(Bt.shape, 1)
    row = _iota((_SUB, bdp), 0)

    def slab_step(s, h):  # time steps s·8 … s·8 + 7, loaded as aligned (8, bdp) slabs
        dts, dus = _slab(dtT, s), _slab(duT, s)
        ys = jnp.zeros((_SUB, bdp), _F32)
        for k in range(_SUB):
            t = s * _SUB + k
            h = jnp.exp(dts[k : k + 1] * A) * h + dus[k : k + 1] * _lane(Bt, lane, t)
            ys = jnp.where(row == k, jnp.sum(_lane(Ct, lane, t) * h, axis=0, keepdims=True), ys)
        yT[_slab_ix(s), :] = ys
        return h

    h_scr[...] = lax.fori_loop(0, tl // _SUB, slab_step, h_scr[...])
    _tpu_store_t(yT, y_ref, pad, bd, bdp)


def _tpu_bwd_kernel(
    u_ref, dt_ref, A_ref, B_ref, C_ref, hs_ref, dy_ref,
    du_ref, ddt_ref, dA_ref, dB_ref, dC_ref,
    g_scr, pad, uT, dtT, duT, dyT, hist, duoT, ddtoT,
    *, l, dg, bd, bdp, tl, nl,
):  # fmt: skip
    """Reverse sweep; grid step i handles sequence tile ``nl − 1 − i``."""
    j, i = pl.program_id(2), pl.program_id(3)
    c = nl - 1 - i

    @pl.when(i == 0)
    def _():
        g_scr[...] = jnp.zeros(g_scr.shape, _F32)
        dA_ref[...] = jnp.zeros(dA_ref.shape, _F32)

    valid = _tpu_valid(j, c, (bd, tl), bd, tl, dg, l)
    u = jnp.where(valid, u_ref[...].astype(_F32), 0.0)
    dt = jnp.where(valid, dt_ref[...].astype(_F32), 0.0)
    dy = jnp.where(valid, dy_ref[...].astype(_F32), 0.0)
    for x, dst in ((u, uT), (dt, dtT), (dt * u, duT), (dy, dyT)):
        _tpu_put_t(x, dst, pad, bd, bdp)
    tvalid = c * tl + _iota(B_ref.shape, 1) < l
    Bt = jnp.where(tvalid, B_ref[...].astype(_F32), 0.0)
    Ct = jnp.where(tvalid, C_ref[...].astype(_F32), 0.0)
    A = A_ref[...]
    lane = _iota(Bt.shape, 1)
    row = _iota((_SUB, bdp), 0)
    ns = tl // _SUB

    def fwd_slab(s, h):  # recompute the tile's states: hist[t] = state before step t
        dts, dus = _slab(dtT, s), _slab(duT, s)
        for k in range(_SUB):
            t = s * _SUB + k
            hist[t] = h
            h = jnp.exp(dts[k : k + 1] * A) * h + dus[k : k + 1] * _lane(Bt, lane, t)
        return h

    lax.fori_loop(0, ns, fwd_slab, hs_ref[...])

    def bwd_slab(r, carry):
        g_next, dA, dB_t, dC_t = carry
        s = ns - 1 - r
        dts, dus, dys, us = (_slab(x, s) for x in (dtT, duT, dyT, uT))
        du_s = jnp.zeros((_SUB, bdp), _F32)
        ddt_s = jnp.zeros((_SUB, bdp), _F32)
        for k in reversed(range(_SUB)):
            t = s * _SUB + k
            dt_t, du_t, dy_t, u_t = (x[k : k + 1] for x in (dts, dus, dys, us))
            B_t, C_t = _lane(Bt, lane, t), _lane(Ct, lane, t)
            h_prev = hist[t]
            a = jnp.exp(dt_t * A)
            h = a * h_prev + du_t * B_t
            g = g_next + dy_t * C_t
            sel = lane == t
            dC_t = jnp.where(sel, jnp.sum(dy_t * h, axis=1, keepdims=True), dC_t)
            dB_t = jnp.where(sel, jnp.sum(g * du_t, axis=1, keepdims=True), dB_t)
            gB = jnp.sum(g * B_t, axis=0, keepdims=True)  # (1, bdp)
            gha = g * h_prev * a
            du_s = jnp.where(row == k, gB * dt_t, du_s)
            ddt_t = gB * u_t + jnp.sum(gha * A, axis=0, keepdims=True)
            ddt_s = jnp.where(row == k, ddt_t, ddt_s)
            dA = dA + gha * dt_t
            g_next = g * a
        duoT[_slab_ix(s), :] = du_s
        ddtoT[_slab_ix(s), :] = ddt_s
        return g_next, dA, dB_t, dC_t

    zeros = jnp.zeros(Bt.shape, _F32)
    g_next, dA, dB_t, dC_t = lax.fori_loop(
        0, ns, bwd_slab, (g_scr[...], jnp.zeros(A.shape, _F32), zeros, zeros)
    )
    g_scr[...] = g_next
    dA_ref[...] += dA
    dB_ref[...] = dB_t
    dC_ref[...] = dC_t
    _tpu_store_t(duoT, du_ref, pad, bd, bdp)
    _tpu_store_t(ddtoT, ddt_ref, pad, bd, bdp)


def _tpu_A(A, g, dg, bd, bdp, nb):
    """A ``(d, n)`` → ``(g, nb, n, bdp)``: channels on lanes, zero-padded."""
    n = A.shape[1]
    A = A.astype(_F32).reshape(g, dg, n)
    A = jnp.pad(A, ((0, 0), (0, nb * bd - dg), (0, 0))).reshape(g, nb, bd, n)
    return jnp.pad(jnp.swapaxes(A, 2, 3), ((0, 0), (0, 0), (0, 0), (0, bdp - bd)))


_TPU_SEM = ("parallel", "parallel", "parallel", "arbitrary")


def _tpu_fwd(u, dt, A, B, C, *, bs: BlockSizes, interpret: bool, save: bool):
    """TPU-style forward.  Returns y ``(b, d, l)`` and, if ``save``, states
    ``(b, g, nb, nl, n, bdp)`` (the state entering every sequence tile)."""
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    dg = d // g
    bd, bdp, tl = _tpu_dims(dg, bs)
    nb, nl = pl.cdiv(dg, bd), pl.cdiv(l, tl)
    seq = pl.BlockSpec((None, None, bd, tl), lambda i, j, k, s: (i, j, k, s))
    bc = pl.BlockSpec((None, None, n, tl), lambda i, j, k, s: (i, j, 0, s))
    a_spec = pl.BlockSpec((None, None, n, bdp), lambda i, j, k, s: (j, k, 0, 0))
    out_shape = [jax.ShapeDtypeStruct((b, g, dg, l), _F32)]
    out_specs = [seq]
    if save:
        out_shape.append(jax.ShapeDtypeStruct((b, g, nb, nl, n, bdp), _F32))
        out_specs.append(
            pl.BlockSpec((None, None, None, None, n, bdp), lambda i, j, k, s: (i, j, k, s, 0, 0))
        )
    vmem = pltpu.VMEM
    scratch = [vmem((n, bdp), _F32), vmem((bdp, tl), _F32)] + [vmem((tl, bdp), _F32)] * 3
    kernel = functools.partial(_tpu_fwd_kernel, l=l, dg=dg, bd=bd, bdp=bdp, tl=tl, save=save)
    out = pl.pallas_call(
        kernel,
        grid=(b, g, nb, nl),
        in_specs=[seq, seq, a_spec, bc, bc],
        out_specs=out_specs,
        out_shape=out_shape,
        scratch_shapes=scratch,
        compiler_params=pltpu.CompilerParams(dimension_semantics=_TPU_SEM),
        interpret=interpret,
        name="selective_scan_fwd",
    )(
        u.reshape(b, g, dg, l),
        dt.reshape(b, g, dg, l),
        _tpu_A(A, g, dg, bd, bdp, nb),
        B,
        C,
    )
    y = out[0].reshape(b, d, l)
    return (y, out[1]) if save else (y, None)


def _tpu_bwd(u, dt, A, B, C, hs, dy, *, bs: BlockSizes, interpret: bool):
    """TPU-style backward; same returns as :func:`_gpu_bwd`."""
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    dg = d // g
    bd, bdp, tl = _tpu_dims(dg, bs)
    nb, nl = pl.cdiv(dg, bd), pl.cdiv(l, tl)
    rev = lambda s: nl - 1 - s
    seq = pl.BlockSpec((None, None, bd, tl), lambda i, j, k, s: (i, j, k, rev(s)))
    bc = pl.BlockSpec((None, None, n, tl), lambda i, j, k, s: (i, j, 0, rev(s)))
    a_spec = pl.BlockSpec((None, None, n, bdp), lambda i, j, k, s: (j, k, 0, 0))
    hs_spec = pl.BlockSpec(
        (None, None, None, None, n, bdp), lambda i, j, k, s: (i, j, k, rev(s), 0, 0)
    )
    dA_spec = pl.BlockSpec((None, None, None, n, bdp), lambda i, j, k, s: (i, j, k, 0, 0))
    part = pl.BlockSpec((None, None, None, n, tl), lambda i, j, k, s: (i, j, k, 0, rev(s)))
    f32 = lambda *s: jax.ShapeDtypeStruct(s, _F32)
    vmem = pltpu.VMEM
    scratch = (
        [vmem((n, bdp), _F32), vmem((bdp, tl), _F32)]
        + [vmem((tl, bdp), _F32)] * 4
        + [vmem((tl, n, bdp), _F32)]
        + [vmem((tl, bdp), _F32)] * 2
    )
    kernel = functools.partial(_tpu_bwd_kernel, l=l, dg=dg, bd=bd, bdp=bdp, tl=tl, nl=nl)
    du, ddt, dA, dB, dC = pl.pallas_call(
        kernel,
        grid=(b, g, nb, nl),
        in_specs=[seq, seq, a_spec, bc, bc, hs_spec, seq],
        out_specs=[seq, seq, dA_spec, part, part],
        out_shape=[f32(b, g, dg, l), f32(b, g, dg, l), f32(b, g, nb, n, bdp)]
        + [f32(b, g, nb, n, l)] * 2,
        scratch_shapes=scratch,
        compiler_params=pltpu.CompilerParams(dimension_semantics=_TPU_SEM),
        interpret=interpret,
        name="selective_scan_bwd",
    )(
        u.reshape(b, g, dg, l),
        dt.reshape(b, g, dg, l),
        _tpu_A(A, g, dg, bd, bdp, nb),
        B,
        C,
        hs,
        dy.astype(_F32).reshape(b, g, dg, l),
    )
    dA = jnp.swapaxes(dA.sum(axis=0)[..., :bd], -1, -2)  # (g, nb, bd, n)
    dA = dA.reshape(g, nb * bd, n)[:, :dg].reshape(d, n)
    return du.reshape(b, d, l), ddt.reshape(b, d, l), dA, dB.sum(axis=2), dC.sum(axis=2)


# ----------------------------------------------------------------------------------------------
# custom_vjp core and public entry point.


@dataclasses.dataclass(frozen=True)
class _Config:
    platform: str
    interpret: bool
    block_sizes: BlockSizes


def _fwd_impl(cfg: _Config, u, dt, A, B, C, save):
    f = _tpu_fwd if cfg.platform == "tpu" else _gpu_fwd
    return f(u, dt, A, B, C, bs=cfg.block_sizes, interpret=cfg.interpret, save=save)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan_core(cfg: _Config, u, dt, A, B, C):
    return _fwd_impl(cfg, u, dt, A, B, C, save=False)[0]


def _scan_core_fwd(cfg: _Config, u, dt, A, B, C):
    y, hs = _fwd_impl(cfg, u, dt, A, B, C, save=True)
    return y, (u, dt, A, B, C, hs)


def _scan_core_bwd(cfg: _Config, res, dy):
    u, dt, A, B, C, hs = res
    f = _tpu_bwd if cfg.platform == "tpu" else _gpu_bwd
    grads = f(u, dt, A, B, C, hs, dy, bs=cfg.block_sizes, interpret=cfg.interpret)
    return tuple(gx.astype(x.dtype) for gx, x in zip(grads, (u, dt, A, B, C), strict=True))


_scan_core.defvjp(_scan_core_fwd, _scan_core_bwd)

_FLOATS = (jnp.float32, jnp.bfloat16, jnp.float16)


def _check(u, dt, A, B, C):
    if u.ndim != 3:
        raise ScanError(f"u must be (b, d, l), got shape {u.shape}")
    b, d, l = u.shape
    if dt.shape != u.shape:
        raise ScanError(f"dt must have u's shape {u.shape}, got {dt.shape}")
    if A.ndim != 2 or A.shape[0] != d:
        raise ScanError(f"A must be (d, n) = ({d}, n), got {A.shape}")
    n = A.shape[1]
    if B.ndim != 4 or B.shape[0] != b or B.shape[2:] != (n, l):
        raise ScanError(f"B must be (b, g, n, l) = ({b}, g, {n}, {l}), got {B.shape}")
    if C.shape != B.shape:
        raise ScanError(f"C must have B's shape {B.shape}, got {C.shape}")
    if d % B.shape[1]:
        raise ScanError(f"B, C have g={B.shape[1]} groups, which does not divide d={d}")
    for name, x in (("u", u), ("dt", dt), ("A", A), ("B", B), ("C", C)):
        if x.dtype not in _FLOATS:
            raise ScanError(f"{name} must be float32, bfloat16 or float16, got {x.dtype}")


def _platform(platform: str | None, interpret: bool) -> str:
    if platform is None:
        backend = jax.default_backend()
        platform = "tpu" if backend == "tpu" else "gpu"
    if platform not in PLATFORMS:
        raise ScanError(f"platform must be one of {PLATFORMS} or None, got {platform!r}")
    return platform


@functools.partial(jax.jit, static_argnames=("interpret", "block_sizes", "platform"))
def scan(u, dt, A, B, C, *, interpret: bool = False, block_sizes=None, platform=None):
    """Pallas selective scan ``Σ_n C_t h_t`` (no D skip), differentiable in all inputs.

    Args:
      u, dt: ``(b, d, l)``; dt is the final Δ (> 0).
      A: ``(d, n)`` (< 0).
      B, C: ``(b, g, n, l)``; channel d uses group ``d // (d / g)``.
      interpret: run the kernels in the Pallas interpreter (CPU).
      block_sizes: :class:`BlockSizes` (default ``BlockSizes.get_default(n, l)``).
      platform: ``"gpu"`` (Triton-style kernels), ``"tpu"`` (Mosaic-style kernels) or ``None``
        (from ``jax.default_backend()``; GPU-style elsewhere, for the interpreter).

    Returns:
      y: ``(b, d, l)`` float32.

    >>> import jax.numpy as jnp
    >>> u = jnp.ones((1, 2, 5)); dt = jnp.full((1, 2, 5), 0.5); Bc = jnp.ones((1, 1, 1, 5))
    >>> scan(u, dt, -jnp.ones((2, 1)), Bc, Bc, interpret=True).shape
    (1, 2, 5)
    """
    _check(u, dt, A, B, C)
    bs = block_sizes if block_sizes is not None else BlockSizes.get_default(A.shape[1], u.shape[-1])
    if not isinstance(bs, BlockSizes):
        raise ScanError(f"block_sizes must be a BlockSizes, got {type(bs).__name__}")
    bs.validate()
    cfg = _Config(_platform(platform, interpret), bool(interpret), bs)
    l = u.shape[-1]
    lp = -(-l // bs.align_l) * bs.align_l if cfg.platform == "gpu" else l
    if lp == l:
        return _scan_core(cfg, u, dt, A, B, C)
    # Padding steps (Δ = u = B = C = 0) leave the state unchanged; autodiff slices the grads.
    pad = lambda x: jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, lp - l)])
    return _scan_core(cfg, pad(u), pad(dt), A, pad(B), pad(C))[..., :l]
