"""Exact attention extraction vs VMamba's own (inexact) analysis formula, side by side.

    python benchmarks/attention.py            # vmamba_tiny_s1l8, one 224x224 image, all 14 blocks
    python benchmarks/attention.py --no-mean  # without the mean step's memory and batch-8 time
    python benchmarks/attention.py --no-errors  # skip the float64 references (about a minute)

The anchor is VMamba's ``AttnMamba.attnmap_mamba(regs, mode="CwBdtw", ret="all")``
(``analyze/utils.py`` of MzeroMiko/VMamba) as its code computes it, in torch float32, from the
block's scan inputs (its ``regs``: raw Δ, Δ bias, A_logs, B, C): ``Δ = softplus(dts + bias)``,
``w = exp(cumsum(Δ·A))``, ``Q = C·w``, ``K = B·Δ / w.clamp(min=1e-20)``, the channel mean of
``Qᵀ K``, ``tril``, the four routes un-permuted with VMamba's own view/permute/flip and summed,
then its final ``clamp(max=attn.max())``.  One deviation makes the anchor *faster* than VMamba's
code: VMamba forms the per-channel ``(B·K·D, L, L)`` tensor (``_Qs.transpose(1, 2) @ _Ks``,
15 GB at stage 0 of VMamba-T, more than this machine has) and then takes the channel mean; the
anchor contracts channels and state in the same product (``einsum("bkdnl,bkdnm->bklm") / D``),
which gives the same numbers with 1/D of the output.

Ours, measured in the same run, interleaved with the anchor: (a) from the same scan inputs, the
blocks of a stage batched through :func:`jaxmamba.attention.tiles.spatial_maps` as
``extract_attention`` does; (b) ``extract_attention`` end to end, forward pass included.  The
FLOP floor is the multiply-adds of the causal half of every route's map,
``Σ_blocks K·L(L+1)/2·D·N`` (×2 FLOP), timed at the rate a large float32 matmul reaches on this
machine; its share is floor time / our time.  Errors are against a float64 NumPy evaluation of
the definition.

Last, in the same run, the attention mean's step before and after it stopped holding a batch of
maps (``benchmarks/mean_memory.py``): XLA's peak bytes of each compiled program (the stage-0
blocks at batch 1 and 16, all blocks at batch 128, next to ``run_with_cache``) and the time per
image at batch 8, interleaved.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxmamba
from jaxmamba.attention.extract import extract_attention
from jaxmamba.attention.tiles import spatial_maps
from jaxmamba.models.ss2d import cross_scan, scan_inputs


def scan_regs(model, images):
    """Per block (image 0): VMamba's regs (raw Δ (K·D, L), bias (K·D,), A_logs (K·D, N),
    B, C (K, N, L)), the final Δ (K, D, L) and A (K, D, N) in NumPy, the routes and the grid."""
    _, cache = jaxmamba.run_with_cache(model, images)
    out = {}
    for name in model.config.block_names():
        block = model.config.block(name, images.shape[1:3])
        op = model.params[f"layers_{block.stage}"][f"blocks_{block.index}"]["op"]
        routes = jaxmamba.make_routes("cross", *block.grid)
        s = scan_inputs(op, cross_scan(cache.scan_input(name), routes))
        k, _, d = op["x_proj_weight"].shape
        l = routes.shape[1]
        dt = jax.nn.softplus(s.delta + s.delta_bias[:, None]).reshape(-1, k, d, l)[0]
        regs = dict(
            dts=np.asarray(s.delta[0]), delta_bias=np.asarray(s.delta_bias),
            A_logs=np.asarray(op["A_logs"], np.float32), Bs=np.asarray(s.B[0]),
            Cs=np.asarray(s.C[0]),
        )  # fmt: skip
        out[name] = dict(
            regs=regs, dt=np.asarray(dt), A=np.asarray(s.A).reshape(k, d, -1),
            routes=routes, grid=block.grid,
        )  # fmt: skip
    return out


def vmamba_anchor(regs, H, W):
    """``attnmap_mamba(mode="CwBdtw", ret="all")`` in torch float32 (channels contracted in the
    product; see the module docstring)."""
    import torch

    As = -torch.exp(torch.from_numpy(regs["A_logs"]))
    Bs, Cs = torch.from_numpy(regs["Bs"])[None], torch.from_numpy(regs["Cs"])[None]
    dts, delta_bias = torch.from_numpy(regs["dts"])[None], torch.from_numpy(regs["delta_bias"])
    B, G, N, L = Bs.shape
    D = As.shape[0] // G
    mask = torch.tril(dts.new_ones((L, L)))
    dts = torch.nn.functional.softplus(dts + delta_bias[:, None]).view(B, G, D, L)
    dw_logs = As.view(G, D, N)[None, :, :, :, None] * dts[:, :, :, None, :]  # (B, G, D, N, L)
    ws = torch.cumsum(dw_logs, dim=-1).exp()
    Qs = Cs[:, :, None, :, :] * ws
    Ks = Bs[:, :, None, :, :] * dts.view(B, G, D, 1, L) / ws.clamp(min=1e-20)
    attns = torch.einsum("bkdnl,bkdnm->bklm", Qs, Ks) / D
    attns = attns * mask
    # VMamba's un-permutation of the four cross-scan routes, verbatim
    attn0 = attns[:, 0, :].view(B, -1, L, L)
    attn1 = (
        attns[:, 1, :].view(-1, H, W, H, W).permute(0, 2, 1, 4, 3).contiguous().view(B, -1, L, L)
    )  # noqa: E501
    attn2 = (
        attns[:, 2, :].view(-1, L, L).flip(dims=[-2]).flip(dims=[-1]).contiguous().view(B, -1, L, L)
    )  # noqa: E501
    attn3 = (
        attns[:, 3, :].view(-1, L, L).flip(dims=[-2]).flip(dims=[-1]).contiguous().view(B, -1, L, L)
    )  # noqa: E501
    attn3 = attn3.view(-1, H, W, H, W).permute(0, 2, 1, 4, 3).contiguous().view(B, -1, L, L)
    attn = (attn0 + attn1 + attn2 + attn3).mean(dim=1)
    attn = attn.clamp(max=attn.max())
    return attn[0]


def stage_inputs(blocks):
    """The blocks of one stage stacked: raw Δ (nb, K·D, L), bias, A_logs, B, C (nb, K, N, L)."""
    return {k: jnp.asarray(np.stack([b["regs"][k] for b in blocks])) for k in blocks[0]["regs"]}


def make_ours(routes, k):
    """Our maps of a stage from the same regs as the anchor: softplus, A = −exp(A_logs), then
    :func:`jaxmamba.attention.tiles.spatial_maps` over the stage's blocks at once."""

    @jax.jit
    def ours(x):
        nb, kd, l = x["dts"].shape
        dt = jax.nn.softplus(x["dts"] + x["delta_bias"][..., None]).reshape(nb, k, kd // k, l)
        A = -jnp.exp(x["A_logs"]).reshape(nb, k, kd // k, -1)
        return spatial_maps(dt, A, x["Bs"], x["Cs"], routes)

    return ours


def exact_float64(dt, A, B, C, routes, rows=64):
    """The definition in float64 NumPy, a block of query rows at a time (exponents masked)."""
    k, d, l = dt.shape
    total = np.zeros((l, l))
    for r in range(k):
        S = np.cumsum(dt[r].astype(np.float64), axis=-1)  # (d, l)
        a = A[r].astype(np.float64)  # (d, n)
        kb = dt[r][:, None, :] * B[r][None].astype(np.float64)  # (d, n, s)
        m = np.zeros((l, l))
        for t0 in range(0, l, rows):
            t = np.arange(t0, min(t0 + rows, l))
            causal = t[:, None] >= np.arange(l)[None]
            diff = np.where(causal, S[:, t, None] - S[:, None, :], 0.0)  # (d, t, s)
            dec = np.where(causal[None, None], np.exp(a[:, :, None, None] * diff[:, None]), 0.0)
            m[t] = np.einsum("nt,dnts,dns->ts", C[r][:, t].astype(np.float64), dec, kb) / d
        inv = np.argsort(routes[r])
        total += m[inv][:, inv]
    return total


def per_element_loop(dt, A, B, C, rows):
    """α[t, s] (channel mean, route 0) one element at a time, for the first ``rows`` rows."""
    S = np.cumsum(dt[0], axis=-1)
    out = np.zeros((rows, dt.shape[-1]))
    for t in range(rows):
        for s in range(t + 1):
            decay = np.exp(A[0] * (S[:, t] - S[:, s])[:, None])  # (d, n)
            out[t, s] = np.mean(
                np.sum(C[0][:, t] * decay * dt[0][:, s, None] * B[0][:, s], axis=-1)
            )
    return out


def matmul_rate(n=2048, repeats=5):
    """FLOP/s of a float32 (n × n)·(n × n) jnp matmul on this machine (best of ``repeats``)."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best = min(_timed(lambda: f(a)) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vmamba_tiny_s1l8")
    parser.add_argument("--checkpoint", default=None, help="an Orbax checkpoint directory")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-rows", type=int, default=6)
    parser.add_argument("--no-errors", action="store_true", help="skip the float64 references")
    parser.add_argument("--no-mean", action="store_true", help="skip the mean step's section")
    args = parser.parse_args()
    import torch

    model = (
        jaxmamba.load(args.checkpoint) if args.checkpoint else jaxmamba.create_model(args.variant)
    )
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.standard_normal((1, args.size, args.size, 3)), jnp.float32)
    print(
        f"{model.config.describe()}; {args.size}x{args.size}, 1 image, jax {jax.__version__}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    tensors = scan_regs(model, images)
    stages = {}
    for name, t in tensors.items():
        stages.setdefault(t["grid"], []).append(name)
    ours_fns = {
        grid: make_ours(tensors[names[0]]["routes"], model.config.k_routes)
        for grid, names in stages.items()
    }
    inputs = {grid: stage_inputs([tensors[n] for n in names]) for grid, names in stages.items()}
    t = time.perf_counter()
    ours_maps = {grid: jax.block_until_ready(ours_fns[grid](inputs[grid])) for grid in stages}
    jax.block_until_ready(extract_attention(model, images))
    compile_s = time.perf_counter() - t

    anchor_t = {grid: [] for grid in stages}
    ours_t = {grid: [] for grid in stages}
    e2e_t = []
    anchor_maps = {}
    with torch.no_grad():
        for _ in range(args.repeats):  # interleaved, so that both see the same machine load
            for grid, names in stages.items():
                t = time.perf_counter()
                for n in names:
                    anchor_maps[n] = vmamba_anchor(tensors[n]["regs"], *grid)
                anchor_t[grid].append(time.perf_counter() - t)
                ours_t[grid].append(_timed(lambda g=grid: ours_fns[g](inputs[g])))
            e2e_t.append(_timed(lambda: extract_attention(model, images)))
    anchor_s = {g: min(v) for g, v in anchor_t.items()}
    ours_s = {g: min(v) for g, v in ours_t.items()}
    e2e_s = min(e2e_t)

    rate = matmul_rate()
    flops = {}
    for grid, names in stages.items():
        b = tensors[names[0]]
        k, d, l = b["dt"].shape
        flops[grid] = len(names) * k * l * (l + 1) // 2 * d * b["A"].shape[-1] * 2

    errors = {}
    if not args.no_errors:
        for grid, names in stages.items():
            for i, n in enumerate(names):
                b = tensors[n]
                ref = exact_float64(b["dt"], b["A"], b["regs"]["Bs"], b["regs"]["Cs"], b["routes"])
                scale = np.max(np.abs(ref))
                err_ours = np.max(np.abs(np.asarray(ours_maps[grid][i], np.float64) - ref)) / scale
                err_anchor = np.max(np.abs(anchor_maps[n].numpy().astype(np.float64) - ref)) / scale
                errors[n] = (err_ours, err_anchor)

    print(
        f"\n{'stage grid':>10} {'L':>5} {'blocks':>6} {'anchor s':>9} {'ours s':>8} "
        f"{'ours/anchor':>11} {'floor s':>8} {'err ours':>9} {'err anchor':>10} "
        f"{'min cum. decay':>14}"
    )
    for grid, names in stages.items():
        l = grid[0] * grid[1]
        decay = min(
            float(np.min(np.cumsum(tensors[n]["dt"], -1)[:, :, None] * tensors[n]["A"][..., None]))
            for n in names
        )
        errs = [errors[n] for n in names] if errors else [(np.nan, np.nan)]
        print(
            f"{grid[0]:>4}x{grid[1]:<5} {l:5d} {len(names):6d} {anchor_s[grid]:9.3f} "
            f"{ours_s[grid]:8.3f} {ours_s[grid] / anchor_s[grid]:11.2f} {flops[grid] / rate:8.3f} "
            f"{max(e[0] for e in errs):9.1e} {max(e[1] for e in errs):10.1e} {decay:14.1f}"
        )
    total_anchor, total_ours = sum(anchor_s.values()), sum(ours_s.values())
    floor_s = sum(flops.values()) / rate
    print(
        f"\nall {len(tensors)} blocks, one image, best of {args.repeats} (interleaved):\n"
        f"  VMamba formula (anchor, from the scan inputs)  {total_anchor:.3f} s\n"
        f"  ours from the same scan inputs                 {total_ours:.3f} s = "
        f"{total_ours / total_anchor:.2f}x the anchor\n"
        f"  ours end to end (extract_attention, forward)   {e2e_s:.3f} s = "
        f"{e2e_s / total_anchor:.2f}x the anchor (compile {compile_s:.1f} s)\n"
        f"  FLOP floor {sum(flops.values()) / 1e9:.2f} GFLOP at {rate / 1e9:.0f} GFLOP/s "
        f"(float32 2048^3 matmul) = {floor_s:.3f} s: {floor_s / total_ours:.0%} of ours from the "
        f"scan inputs, {floor_s / e2e_s:.0%} end to end"
    )
    if errors:
        print(
            f"  worst error vs float64: ours {max(e[0] for e in errors.values()):.1e}, "
            f"anchor {max(e[1] for e in errors.values()):.1e}"
        )
    print(f"  load average after: {os.getloadavg()[0]:.2f}")

    parts_section(tensors, stages, anchor_s, args.repeats)

    name = min(tensors, key=lambda n: abs(tensors[n]["dt"].shape[-1] - 784))  # stage 2 at 224x224
    b = tensors[name]
    dt, A, B, C = b["dt"], b["A"], b["regs"]["Bs"], b["regs"]["Cs"]
    t = time.perf_counter()
    per_element_loop(dt, A, B, C, args.loop_rows)
    loop_s = time.perf_counter() - t
    l = dt.shape[-1]
    elements = args.loop_rows * (args.loop_rows + 1) / 2
    loop_full = loop_s / elements * (l * (l + 1) / 2) * dt.shape[0]  # every route
    from jaxmamba.attention.extract import route_attention

    f = jax.jit(lambda *a: route_attention(*a))
    jax.block_until_ready(f(dt, A, B, C))
    ours_block = min(_timed(lambda: f(dt, A, B, C)) for _ in range(3))
    print(
        f"\nper-element loop at L={l} ({name}, 4 routes): {loop_s:.3f} s for {int(elements)} "
        f"elements, {loop_full:.1f} s for the whole map (scaled); ours {ours_block * 1e3:.1f} ms "
        f"-> {loop_full / ours_block:.0f}x"
    )

    if not args.no_mean:
        mean_section(model, args.size, args.repeats)


def parts_section(tensors, stages, anchor_s, repeats):
    """Where the time goes, per stage: the one product both methods need (every route's
    ``(L × D·N) · (D·N × L)``, channels and state contracted), timed alone in torch (the anchor's
    einsum on its own Q, K) and in XLA (one batched ``dot_general`` of the same shapes), and the
    softplus of Δ alone in both: a method built on that product in XLA cannot take less than the
    sum of the two XLA columns, which bounds ours/anchor from below."""
    import torch

    print(
        f"\nparts, best of {repeats}: {'stage grid':>10} {'anchor s':>9} {'torch prod':>10} "
        f"{'XLA prod':>9} {'torch softplus':>14} {'XLA softplus':>12} {'XLA parts/anchor':>16}"
    )
    for grid, names in stages.items():
        regs = [tensors[n]["regs"] for n in names]
        k, n_state, l = regs[0]["Bs"].shape
        d = regs[0]["dts"].shape[0] // k
        rng = np.random.default_rng(0)
        q = rng.standard_normal((len(names) * k, l, d * n_state)).astype(np.float32)
        qt = torch.from_numpy(  # (blocks, 1, K, D, N, L) contiguous, as the anchor's Q
            np.ascontiguousarray(
                q.reshape(len(names), 1, k, l, d, n_state).transpose(0, 1, 2, 4, 5, 3)
            )
        )
        qj = jnp.asarray(q)
        prod = jax.jit(lambda a: jax.lax.dot_general(a, a, (((2,), (2,)), ((0,), (0,)))))
        jax.block_until_ready(prod(qj))
        raw = np.stack([r["dts"] + r["delta_bias"][:, None] for r in regs])
        rawt, rawj = torch.from_numpy(raw), jnp.asarray(raw)
        soft = jax.jit(jax.nn.softplus)
        jax.block_until_ready(soft(rawj))
        times = {key: [] for key in ("tp", "xp", "ts", "xs")}
        with torch.no_grad():
            for _ in range(repeats):
                t = time.perf_counter()
                for i in range(len(names)):
                    torch.einsum("bkdnl,bkdnm->bklm", qt[i], qt[i])
                times["tp"].append(time.perf_counter() - t)
                times["xp"].append(_timed(lambda f=prod, a=qj: f(a)))
                t = time.perf_counter()
                torch.nn.functional.softplus(rawt)
                times["ts"].append(time.perf_counter() - t)
                times["xs"].append(_timed(lambda f=soft, a=rawj: f(a)))
        best = {key: min(v) for key, v in times.items()}
        print(
            f"{'':>24}{grid[0]:>4}x{grid[1]:<5} {anchor_s[grid]:9.4f} {best['tp']:10.4f} "
            f"{best['xp']:9.4f} {best['ts']:14.4f} {best['xs']:12.4f} "
            f"{(best['xp'] + best['xs']) / anchor_s[grid]:16.2f}"
        )


def mean_section(model, size, repeats):
    """The attention mean's step before and after it stopped holding a batch of maps: XLA's
    memory account (stage 0 at batch 1 and 16, all blocks at batch 128) and the time per image
    at batch 8, interleaved."""
    from mean_memory import programs, step_memory

    print("\nattention mean step, XLA's peak bytes of the compiled program (MiB):")
    print(f"{'blocks':>8} {'batch':>5} {'forward':>8} {'before':>8} {'after':>8} "
          f"{'before adds':>11} {'after adds':>10}")  # fmt: skip
    rows = {}
    for blocks, label, batch in ((0, "stage 0", 1), (0, "stage 0", 16), (None, "all", 128)):
        mem = step_memory(model, batch, size, blocks)
        rows[(label, batch)] = mem
        f, b, a = (mem[k] / 2**20 for k in ("forward", "before", "after"))
        print(f"{label:>8} {batch:5d} {f:8.0f} {b:8.0f} {a:8.0f} {b - f:11.0f} {a - f:10.0f}")
    one, many = rows[("stage 0", 1)], rows[("stage 0", 16)]
    for k in ("before", "after"):
        grow = (many[k] - many["forward"]) / (one[k] - one["forward"])
        print(f"  {k}: adds over the forward at batch 16 / at batch 1 = {grow:.2f}; "
              f"grows {(many[k] - one[k]) / 2**20:.0f} MiB from batch 1 to 16")  # fmt: skip
    progs = programs(model, 8, size)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((8, size, size, 3)), jnp.float32)
    valid = jnp.ones(8, bool)
    before_fn, before_args = progs["before"]
    after_fn, after_args = progs["after"]
    before = before_fn.lower(*before_args).compile()
    after = after_fn.lower(*after_args).compile()
    sums = {k: jnp.zeros(v.shape, v.dtype) for k, v in after_args[1].items()}
    table = before_args[3]
    jax.block_until_ready(before(model, x, valid, table))
    sums, _ = jax.block_until_ready(after(model, sums, x, valid, table))
    tb, ta = [], []
    for _ in range(max(2, repeats // 2)):
        tb.append(_timed(lambda: before(model, x, valid, table)))
        t = time.perf_counter()
        sums, _ = jax.block_until_ready(after(model, sums, x, valid, table))
        ta.append(time.perf_counter() - t)
    print(
        f"  time per image at batch 8, all blocks (best of {len(tb)}, interleaved): before "
        f"{min(tb) / 8:.3f} s, after {min(ta) / 8:.3f} s ({min(ta) / min(tb):.2f}x)"
    )


if __name__ == "__main__":
    main()
