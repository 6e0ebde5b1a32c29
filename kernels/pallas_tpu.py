"""The Pallas selective scan on TPU (Mosaic): forward and backward kernels.

Grid ``(b, g, ⌈dg/bd⌉, ⌈l/tl⌉)`` with the sequence axis "arbitrary".  A ``(bd, tl)`` tile is
transposed on chip so that channels lie on the 128 lanes and time on sublanes; the ``(n, bd)``
state is carried across sequence tiles in a VMEM scratch.  The forward also writes the state
entering every sequence tile; the backward walks the tiles in reverse, recomputes each tile's
states from it in a VMEM scratch and runs the adjoint recurrence.  Letters as in
:mod:`jaxmamba.kernels.pallas_common`.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from jaxmamba.kernels.pallas_common import F32, BlockSizes, iota

__all__ = ["scan_bwd", "scan_fwd"]


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
        pad[...] = jnp.zeros(pad.shape, F32)  # lanes bd..bdp: zero channels
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
    rows = j * bd + iota(shape, 0)
    cols = i * tl + iota(shape, 1)
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
        h_scr[...] = jnp.zeros(h_scr.shape, F32)

    if save:
        hs_ref[...] = h_scr[...]
    valid = _tpu_valid(j, i, (bd, tl), bd, tl, dg, l)
    dt = jnp.where(valid, dt_ref[...].astype(F32), 0.0)
    u = jnp.where(valid, u_ref[...].astype(F32), 0.0)
    for x, dst in ((dt, dtT), (dt * u, duT)):
        _tpu_put_t(x, dst, pad, bd, bdp)
    tvalid = i * tl + iota(B_ref.shape, 1) < l
    Bt = jnp.where(tvalid, B_ref[...].astype(F32), 0.0)
    Ct = jnp.where(tvalid, C_ref[...].astype(F32), 0.0)
    A = A_ref[...]
    lane = iota(Bt.shape, 1)
    row = iota((_SUB, bdp), 0)

    def slab_step(s, h):  # time steps s·8 … s·8 + 7, loaded as aligned (8, bdp) slabs
        dts, dus = _slab(dtT, s), _slab(duT, s)
        ys = jnp.zeros((_SUB, bdp), F32)
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
        g_scr[...] = jnp.zeros(g_scr.shape, F32)
        dA_ref[...] = jnp.zeros(dA_ref.shape, F32)

    valid = _tpu_valid(j, c, (bd, tl), bd, tl, dg, l)
    u = jnp.where(valid, u_ref[...].astype(F32), 0.0)
    dt = jnp.where(valid, dt_ref[...].astype(F32), 0.0)
    dy = jnp.where(valid, dy_ref[...].astype(F32), 0.0)
    for x, dst in ((u, uT), (dt, dtT), (dt * u, duT), (dy, dyT)):
        _tpu_put_t(x, dst, pad, bd, bdp)
    tvalid = c * tl + iota(B_ref.shape, 1) < l
    Bt = jnp.where(tvalid, B_ref[...].astype(F32), 0.0)
    Ct = jnp.where(tvalid, C_ref[...].astype(F32), 0.0)
    A = A_ref[...]
    lane = iota(Bt.shape, 1)
    row = iota((_SUB, bdp), 0)
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
        du_s = jnp.zeros((_SUB, bdp), F32)
        ddt_s = jnp.zeros((_SUB, bdp), F32)
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

    zeros = jnp.zeros(Bt.shape, F32)
    g_next, dA, dB_t, dC_t = lax.fori_loop(
        0, ns, bwd_slab, (g_scr[...], jnp.zeros(A.shape, F32), zeros, zeros)
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
    A = A.astype(F32).reshape(g, dg, n)
    A = jnp.pad(A, ((0, 0), (0, nb * bd - dg), (0, 0))).reshape(g, nb, bd, n)
    return jnp.pad(jnp.swapaxes(A, 2, 3), ((0, 0), (0, 0), (0, 0), (0, bdp - bd)))


_TPU_SEM: tuple[Literal["parallel", "arbitrary"], ...] = (
    "parallel",
    "parallel",
    "parallel",
    "arbitrary",
)


def scan_fwd(u, dt, A, B, C, *, bs: BlockSizes, interpret: bool, save: bool):
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
    out_shape = [jax.ShapeDtypeStruct((b, g, dg, l), F32)]
    out_specs = [seq]
    if save:
        out_shape.append(jax.ShapeDtypeStruct((b, g, nb, nl, n, bdp), F32))
        out_specs.append(
            pl.BlockSpec((None, None, None, None, n, bdp), lambda i, j, k, s: (i, j, k, s, 0, 0))
        )
    vmem = pltpu.VMEM
    scratch = [vmem((n, bdp), F32), vmem((bdp, tl), F32)] + [vmem((tl, bdp), F32)] * 3
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


def scan_bwd(u, dt, A, B, C, hs, dy, *, bs: BlockSizes, interpret: bool):
    """TPU-style backward; same returns as :func:`jaxmamba.kernels.pallas_gpu.scan_bwd`."""
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
    f32 = lambda *s: jax.ShapeDtypeStruct(s, F32)
    vmem = pltpu.VMEM
    scratch = (
        [vmem((n, bdp), F32), vmem((bdp, tl), F32)]
        + [vmem((tl, bdp), F32)] * 4
        + [vmem((tl, n, bdp), F32)]
        + [vmem((tl, bdp), F32)] * 2
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
        dy.astype(F32).reshape(b, g, dg, l),
    )
    dA = jnp.swapaxes(dA.sum(axis=0)[..., :bd], -1, -2)  # (g, nb, bd, n)
    dA = dA.reshape(g, nb * bd, n)[:, :dg].reshape(d, n)
    return du.reshape(b, d, l), ddt.reshape(b, d, l), dA, dB.sum(axis=2), dC.sum(axis=2)
