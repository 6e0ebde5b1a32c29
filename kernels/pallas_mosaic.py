"""The Pallas selective scan on GPU (Mosaic GPU): forward and backward kernels.

Mosaic GPU is the Pallas GPU backend that JAX supports from 0.11 on (Hopper, compute capability
9.0, and newer); the Triton kernels of :mod:`jaxmamba.kernels.pallas_gpu` stay the default
until these have run on a GPU (``scan_pallas.MOSAIC_GPU_DEFAULT``).
Both compute the same recurrence with the same contract (shapes, saved states, partial sums).

Layout.  A Mosaic GPU program is a warpgroup of 128 threads, and its register arrays are
distributed over them.  Each program owns ``128`` channels of one (batch, group): one thread per
channel, with the channel's ``n`` states in its registers as ``n`` arrays of shape ``(128,)``
(the warpgroup-strided layout).  To give each time step a contiguous row of 128 channels, the
wrapper passes u, Δ (and dy) time-major, ``(b, g, l', dg')`` float32, with the channels of a
group zero-padded to ``dg' = 128·⌈dg/128⌉`` and the sequence to ``l' = T·⌈l/T⌉`` (padding
steps and channels have Δ = u = 0 and A = B = C = dy = 0: the state and the adjoint stay
unchanged, and the results there are sliced off).  B, C stay ``(b, g, n', l')`` (time is their
contiguous axis; n' = n padded to a power of two with zero rows).  Grid ``(b, g, dg'/128)``;
each program walks the sequence in tiles of ``T`` steps: the tiles of u, Δ, B, C are copied
GMEM → SMEM (TMA), the state is stepped over the tile's rows (``fori_loop``) and y's tile goes
back SMEM → GMEM.  B_t, C_t are scalars read from SMEM (the same for all 128 channels).

Backward: the forward saves the state entering every tile; the backward walks the tiles in
reverse, recomputes the tile's states into an SMEM scratch ``(T, n, 128)`` and runs the adjoint
recurrence ``g_t = C_t dy_t + exp(Δ_{t+1} A) g_{t+1}`` over it.  It never divides by a decay.
dB, dC (sums over the channels of a group) are warpgroup reductions per step, written as
per-channel-block partials and summed in XLA; dA is per-thread and written per batch, summed
in XLA: the reduction order is fixed, so gradients are deterministic.

What Mosaic GPU forced (checked by lowering for CUDA, see ``tests/test_scan_mosaic.py``):

* channel blocks of exactly 128 (one warpgroup, one thread per channel); hence the padding of
  ``dg`` to a multiple of 128 (VMamba's 96 or 192 channels per group waste a quarter or a
  third of the threads);
* every GMEM ↔ SMEM copy must move a multiple of 128 bytes ("Only copies transferring a number
  of bytes divisible by the warpgroup size are supported"): a ``(n', T)`` tile of B needs
  ``n'·T`` a multiple of 32, so ``T = min(32, 256 / n')``, which also bounds the backward's
  ``(T, n', 128)`` float32 state scratch by 128 KiB of SMEM; n ≤ 64;
* the time-major layout is a choice, not a constraint: a column ``x_s[:, t]`` of a
  ``(128, T)`` SMEM tile also lowers, but with ``T = 32`` float32 steps its 128 elements sit
  in one SMEM bank (a 32-way conflict on every step), while a row is contiguous.  The price is
  that the wrapper transposes u, Δ, dy, y and the gradients in XLA (one extra pass over them);
  the channel-major variant is the alternative to measure on a GPU;
* the tile length is derived from n (:func:`tile_len`), not read from :class:`BlockSizes`,
  whose fields are the Triton and TPU kernels'.

Interpret mode runs the kernels in Mosaic GPU's own interpreter (``InterpretGPUParams``: SMEM,
TMA copies and barriers simulated on CPU), since the generic Pallas interpreter has no rule for
TMA copies.  Sources read: the API pages of ``jax.experimental.pallas.mosaic_gpu``
(``kernel``, ``InterpretGPUParams``; https://docs.jax.dev/en/latest/_autosummary/) and the
installed ``jax._src.pallas.mosaic_gpu`` (lowering rules, copy constraints, interpreter).
Letters as in :mod:`jaxmamba.kernels.pallas_common`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from jaxmamba.errors import ScanError
from jaxmamba.kernels.pallas_common import F32, BlockSizes, next_pow2

__all__ = ["WG", "interpret_params", "scan_bwd", "scan_fwd", "tile_len"]

WG = 128  # threads in a warpgroup: channels per program
_MAX_N = 64
_SMEM_BYTES = 216 * 1024  # the H100 and H200 allow 227 KiB per block; some left for Mosaic


def tile_len(n: int) -> int:
    """Time steps per tile (and between saved states) for state size ``n``.

    >>> [tile_len(n) for n in (1, 4, 8, 16, 64)]
    [32, 32, 32, 16, 4]
    """
    if not 1 <= n <= _MAX_N:
        raise ScanError(f"the Mosaic GPU kernels support 1 <= n <= {_MAX_N}, got n={n}")
    return min(32, 256 // next_pow2(n))


def interpret_params() -> Any:
    """Mosaic GPU's interpreter parameters (public from JAX 0.11, private in 0.10)."""
    cls: Any = getattr(plgpu, "InterpretGPUParams", None)
    if cls is None:  # JAX 0.10: not exported yet
        from jax._src.pallas.mosaic_gpu.interpret import params

        cls = params.InterpretGPUParams
    return cls()


def _zeros(interpret: bool):
    """A ``(128,)`` float32 zero array in the warpgroup-strided layout of loaded rows (the
    interpreter has no rule for ``layout_cast``, and needs none)."""
    z = jnp.zeros((WG,), F32)
    return z if interpret else plgpu.layout_cast(z, plgpu.Layout.WG_STRIDED((WG,), vec_size=1))


def _dims(u, A, B):
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    dg = d // g
    T = tile_len(n)
    return b, d, l, g, n, next_pow2(n), dg, pl.cdiv(dg, WG), pl.cdiv(l, T), T


def _time_major(x, b, g, dg, nk, lp):
    """``(b, d, l)`` → ``(b, g, l', dg')`` float32, zero-padded."""
    l = x.shape[-1]
    x = x.astype(F32).reshape(b, g, dg, l)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, nk * WG - dg), (0, lp - l)))
    return jnp.swapaxes(x, 2, 3)


def _from_time_major(x, b, d, l, dg):
    """``(b, g, l', dg')`` → ``(b, d, l)``."""
    return jnp.swapaxes(x, 2, 3)[:, :, :dg, :l].reshape(b, d, l)


def _bc(x, n_p, lp):
    """B or C ``(b, g, n, l)`` → ``(b, g, n', l')`` float32, zero-padded."""
    n, l = x.shape[2:]
    return jnp.pad(x.astype(F32), ((0, 0), (0, 0), (0, n_p - n), (0, lp - l)))


def _a(A, g, dg, nk):
    """A ``(d, n)`` → ``(g, n, dg')`` float32, zero-padded channels."""
    n = A.shape[1]
    At = jnp.pad(A.astype(F32).reshape(g, dg, n), ((0, 0), (0, nk * WG - dg), (0, 0)))
    return jnp.swapaxes(At, 1, 2)


def _check_smem(nbytes: int, what: str) -> None:
    if nbytes > _SMEM_BYTES:
        raise ScanError(f"the Mosaic GPU {what} needs {nbytes} bytes of SMEM (> {_SMEM_BYTES})")


def _fetch(copies, bar):
    """Start the GMEM → SMEM copies ``[(src, dst), ...]`` (barrier i for copy i) and wait."""
    for i, (src, dst) in enumerate(copies):
        plgpu.copy_gmem_to_smem(src, dst, bar.at[i])
    for i in range(len(copies)):
        plgpu.barrier_wait(bar.at[i])


def _fwd_kernel(u_g, dt_g, A_g, B_g, C_g, y_g, *rest, n, T, nc, save, interpret):
    """Program (batch, group, channel block): u, dt, y GMEM ``(b, g, l', dg')``, A
    ``(g, n, dg')``, B, C ``(b, g, n', l')``, states ``(b, g, nc, n, dg')`` if ``save``."""
    if save:
        hs_g, u_s, dt_s, B_s, C_s, A_s, y_s, h_s, bar = rest
    else:
        u_s, dt_s, B_s, C_s, A_s, y_s, bar = rest
    ib, ig, ik = lax.axis_index("b"), lax.axis_index("g"), lax.axis_index("k")
    ch = pl.ds(ik * WG, WG)
    _fetch([(A_g.at[ig, :, ch], A_s)], bar)
    As = [A_s[k, :] for k in range(n)]

    def tile(c, h):
        ts = pl.ds(c * T, T)
        srcs = (u_g.at[ib, ig, ts, ch], dt_g.at[ib, ig, ts, ch])
        srcs += (B_g.at[ib, ig, :, ts], C_g.at[ib, ig, :, ts])
        plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # y_s, h_s: the last tile's copies read
        if save:
            for k in range(n):
                h_s[k, :] = h[k]
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(h_s, hs_g.at[ib, ig, c, :, ch])
        _fetch(list(zip(srcs, (u_s, dt_s, B_s, C_s), strict=True)), bar)

        def step(t, h):
            dt = dt_s[t, :]
            du = dt * u_s[t, :]
            h = tuple(jnp.exp(dt * As[k]) * h[k] + du * B_s[k, t] for k in range(n))
            y = h[0] * C_s[0, t]
            for k in range(1, n):
                y = y + h[k] * C_s[k, t]
            y_s[t, :] = y
            return h

        h = lax.fori_loop(0, T, step, h)
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(y_s, y_g.at[ib, ig, ts, ch])
        return h

    lax.fori_loop(0, nc, tile, tuple(_zeros(interpret) for _ in range(n)))
    plgpu.wait_smem_to_gmem(0)


def _launch(kernel, out_type, scratch, grid, interpret: bool):
    """The Mosaic GPU kernel over ``grid`` = (b, g, channel blocks), one warpgroup each."""
    return plgpu.kernel(
        kernel,
        out_type=out_type,
        scratch_types=scratch,
        grid=grid,
        grid_names=("b", "g", "k"),
        interpret=interpret_params() if interpret else None,
    )


def _operands(u, dt, A, B, C, dims):
    """u, Δ time-major, A per channel block, B, C padded: the kernels' first five inputs;
    ``dims`` = (b, g, dg, nk, lp, n_p)."""
    b, g, dg, nk, lp, n_p = dims
    return (
        _time_major(u, b, g, dg, nk, lp),
        _time_major(dt, b, g, dg, nk, lp),
        _a(A, g, dg, nk),
        _bc(B, n_p, lp),
        _bc(C, n_p, lp),
    )


def scan_fwd(u, dt, A, B, C, *, bs: BlockSizes, interpret: bool, save: bool):
    """Mosaic GPU forward.  Returns y ``(b, d, l)`` float32 and, if ``save``, the state entering
    every tile of :func:`tile_len` steps ``(b, g, nc, dg, n)`` (else None)."""
    del bs  # the tile comes from n (see the module docstring)
    b, d, l, g, n, n_p, dg, nk, nc, T = _dims(u, A, B)
    lp = nc * T
    smem = 4 * (3 * T * WG + 2 * n_p * T + (2 if save else 1) * n * WG)
    _check_smem(smem, "forward")
    f32 = lambda *s: jax.ShapeDtypeStruct(s, F32)
    out_type = [f32(b, g, lp, nk * WG)] + ([f32(b, g, nc, n, nk * WG)] if save else [])
    scratch: list[Any] = [plgpu.SMEM((T, WG), F32)] * 2 + [plgpu.SMEM((n_p, T), F32)] * 2
    scratch += [plgpu.SMEM((n, WG), F32), plgpu.SMEM((T, WG), F32)]
    scratch += [plgpu.SMEM((n, WG), F32)] if save else []
    scratch += [plgpu.Barrier(num_arrivals=1, num_barriers=4)]
    kernel = functools.partial(
        _fwd_kernel, n=n, T=T, nc=nc, save=save, interpret=interpret
    )  # fmt: skip
    outs = _launch(kernel, out_type, scratch, (b, g, nk), interpret)(
        *_operands(u, dt, A, B, C, (b, g, dg, nk, lp, n_p))
    )
    y = _from_time_major(outs[0], b, d, l, dg)
    if not save:
        return y, None
    return y, jnp.swapaxes(outs[1], 3, 4)[..., :dg, :]


def _bwd_kernel(
    u_g, dt_g, A_g, B_g, C_g, hs_g, dy_g, du_g, ddt_g, dA_g, dB_g, dC_g,
    u_s, dt_s, dy_s, B_s, C_s, A_s, h_s, hist_s, du_s, ddt_s, dB_s, dC_s, bar,
    *, n, T, nc, interpret,
):  # fmt: skip
    """Reverse sweep of one (batch, group, channel block), one tile of ``T`` steps at a time.

    GMEM: u, dt, dy, du, ddt ``(b, g, l', dg')``; A ``(g, n, dg')``; B, C ``(b, g, n', l')``;
    states ``(b, g, nc, n, dg')``; dA ``(b, g, n, dg')``; dB, dC ``(b, g, dg'/128, n', l')``.
    SMEM ``hist_s`` ``(T, n, 128)``: the state entering every step of the tile.
    """
    ib, ig, ik = lax.axis_index("b"), lax.axis_index("g"), lax.axis_index("k")
    ch = pl.ds(ik * WG, WG)
    _fetch([(A_g.at[ig, :, ch], A_s)], bar)
    As = [A_s[k, :] for k in range(n)]

    def tile(ci, carry):
        c = nc - 1 - ci
        ts = pl.ds(c * T, T)
        srcs = [u_g.at[ib, ig, ts, ch], dt_g.at[ib, ig, ts, ch], dy_g.at[ib, ig, ts, ch]]
        srcs += [B_g.at[ib, ig, :, ts], C_g.at[ib, ig, :, ts], hs_g.at[ib, ig, c, :, ch]]
        plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the last tile's outputs are read
        _fetch(list(zip(srcs, (u_s, dt_s, dy_s, B_s, C_s, h_s), strict=True)), bar)

        def recompute(t, h):
            dt = dt_s[t, :]
            du = dt * u_s[t, :]
            for k in range(n):
                hist_s[t, k, :] = h[k]
            return tuple(jnp.exp(dt * As[k]) * h[k] + du * B_s[k, t] for k in range(n))

        lax.fori_loop(0, T, recompute, tuple(h_s[k, :] for k in range(n)))

        def step(s, carry):
            g_next, dA = carry  # g_next[k] = exp(Δ_{t+1} A) g_{t+1}: the adjoint into step t
            t = T - 1 - s
            dt, u, dy = dt_s[t, :], u_s[t, :], dy_s[t, :]
            du_in = dt * u
            gB = gA = None
            g_out, dA_out = [], []
            for k in range(n):
                h_prev, a = hist_s[t, k, :], jnp.exp(dt * As[k])
                B_k, C_k = B_s[k, t], C_s[k, t]
                g = g_next[k] + dy * C_k
                dC_s[k, t] = jnp.sum(dy * (a * h_prev + du_in * B_k))
                dB_s[k, t] = jnp.sum(g * du_in)
                gha = g * h_prev * a
                gB = g * B_k if gB is None else gB + g * B_k
                gA = gha * As[k] if gA is None else gA + gha * As[k]
                dA_out.append(dA[k] + gha * dt)
                g_out.append(g * a)
            du_s[t, :] = gB * dt
            ddt_s[t, :] = gB * u + gA
            return tuple(g_out), tuple(dA_out)

        carry = lax.fori_loop(0, T, step, carry)
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(du_s, du_g.at[ib, ig, ts, ch])
        plgpu.copy_smem_to_gmem(ddt_s, ddt_g.at[ib, ig, ts, ch])
        plgpu.copy_smem_to_gmem(dB_s, dB_g.at[ib, ig, ik, :, ts])
        plgpu.copy_smem_to_gmem(dC_s, dC_g.at[ib, ig, ik, :, ts])
        return carry

    zeros = tuple(_zeros(interpret) for _ in range(n))
    _, dA = lax.fori_loop(0, nc, tile, (zeros, zeros))
    plgpu.wait_smem_to_gmem(0, wait_read_only=True)
    for k in range(n):
        h_s[k, :] = dA[k]
    plgpu.commit_smem()
    plgpu.copy_smem_to_gmem(h_s, dA_g.at[ib, ig, :, ch])
    plgpu.wait_smem_to_gmem(0)


def scan_bwd(u, dt, A, B, C, hs, dy, *, bs: BlockSizes, interpret: bool):
    """Mosaic GPU backward from :func:`scan_fwd`'s states ``hs`` ``(b, g, nc, dg, n)``:
    (du, ddt) ``(b, d, l)``, dA ``(d, n)``, dB, dC ``(b, g, n, l)``, all float32."""
    del bs
    b, d, l, g, n, n_p, dg, nk, nc, T = _dims(u, A, B)
    lp, dgp = nc * T, nk * WG
    smem = 4 * (5 * T * WG + 4 * n_p * T + 2 * n * WG + T * n * WG)
    _check_smem(smem, "backward")
    f32 = lambda *s: jax.ShapeDtypeStruct(s, F32)
    seq = f32(b, g, lp, dgp)
    out_type = [seq, seq, f32(b, g, n, dgp), f32(b, g, nk, n_p, lp), f32(b, g, nk, n_p, lp)]
    tile = plgpu.SMEM((T, WG), F32)
    bc = plgpu.SMEM((n_p, T), F32)
    nw = plgpu.SMEM((n, WG), F32)
    scratch: list[Any] = [tile] * 3 + [bc] * 2 + [nw] * 2 + [plgpu.SMEM((T, n, WG), F32)]
    scratch += [tile] * 2 + [bc] * 2 + [plgpu.Barrier(num_arrivals=1, num_barriers=6)]
    hs_t = jnp.pad(jnp.swapaxes(hs, 3, 4), ((0, 0),) * 4 + ((0, dgp - dg),))
    kernel = functools.partial(_bwd_kernel, n=n, T=T, nc=nc, interpret=interpret)
    du, ddt, dA, dB, dC = _launch(kernel, out_type, scratch, (b, g, nk), interpret)(
        *_operands(u, dt, A, B, C, (b, g, dg, nk, lp, n_p)), hs_t,
        _time_major(dy, b, g, dg, nk, lp),
    )  # fmt: skip
    dA = jnp.swapaxes(dA.sum(axis=0), 1, 2)[:, :dg, :].reshape(d, n)
    return (
        _from_time_major(du, b, d, l, dg),
        _from_time_major(ddt, b, d, l, dg),
        dA,
        dB.sum(axis=2)[:, :, :n, :l],
        dC.sum(axis=2)[:, :, :n, :l],
    )
