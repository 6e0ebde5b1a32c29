"""Exact attention extraction vs VMamba's own (inexact) analysis formula, on this CPU (issue 4).

    python benchmarks/attention.py            # vmamba_tiny_s1l8, one 224x224 image, all blocks
    python benchmarks/attention.py --memory   # also peak memory at batch 8 (XLA's own estimate)

Prints a table per stage and in total: our jitted extraction of every block (forward included),
VMamba's ``attnmap_mamba(mode="CwBdtw", ret="all")`` formula (analyze/utils.py: w = exp(cumsum
Δ·A), Q = C·w, K = B·Δ/w clamped at 1e-20, per-channel maps, channel mean, causal mask, routes
un-permuted and summed) re-implemented in torch float32 on the same blocks' scan inputs (its
per-channel (D, L, L) tensors are computed one route at a time so they fit in memory), the ratio,
and both errors against a float64 NumPy evaluation of the definition.  Then a per-element loop
(HiddenMambaAttn style: α[t, s] one element at a time, NumPy over channels) at L = 784, timed on a
subset of rows and scaled linearly to the whole map (the cost per element is constant).
The model is the official initialisation (seed 0) unless --checkpoint is given.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxmamba
from jaxmamba.attention import AttentionOptions, compute_maps, extract_attention
from jaxmamba.ss2d import cross_scan, scan_inputs


def scan_tensors(model, images, order):
    """Per block: (dt (K, D, L) final Δ, A (K, D, N), B, C (K, N, L)) of image 0, routes, grid."""
    _, cache = jaxmamba.run_with_cache(model, images, order=order)
    out = {}
    for name in model.config.block_names():
        _, i, _, j = name.split(".")
        op = model.params[f"layers_{i}"][f"blocks_{j}"]["op"]
        h, w = model.config.stage_grid(int(i), *images.shape[1:3])
        routes = jaxmamba.make_routes(order, h, w)
        s = scan_inputs(op, cross_scan(cache[name]["x"], routes))
        k, d = op["x_proj_weight"].shape[0], op["x_proj_weight"].shape[2]
        l = h * w
        dt = jax.nn.softplus(s["delta"] + s["delta_bias"][:, None]).reshape(-1, k, d, l)[0]
        out[name] = (
            np.asarray(dt), np.asarray(s["A"]).reshape(k, d, -1), np.asarray(s["B"][0]),
            np.asarray(s["C"][0]), routes, (h, w),
        )  # fmt: skip
    return out


def vmamba_formula_torch(dt, A, B, C, routes):
    """VMamba's attnmap_mamba(mode="CwBdtw", ret="all") in torch float32, one route at a time."""
    import torch

    k, d, l = dt.shape
    dt_t, A_t = torch.from_numpy(dt), torch.from_numpy(A)
    B_t, C_t = torch.from_numpy(B), torch.from_numpy(C)
    mask = torch.tril(torch.ones(l, l))
    total = torch.zeros(l, l)
    for r in range(k):
        w = torch.cumsum(A_t[r][:, :, None] * dt_t[r][:, None, :], dim=-1).exp()  # (d, n, l)
        q = C_t[r][None] * w
        kk = B_t[r][None] * dt_t[r][:, None, :] / w.clamp(min=1e-20)
        attn = (q.transpose(1, 2) @ kk).mean(dim=0) * mask  # (l, l) scan order
        inv = torch.from_numpy(np.argsort(routes[r]))
        total += attn[inv][:, inv]
    return total.numpy()


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vmamba_tiny_s1l8")
    parser.add_argument("--checkpoint", default=None, help="an Orbax checkpoint directory")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-rows", type=int, default=6)
    parser.add_argument("--memory", action="store_true", help="peak memory at batch 8")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = (
        jaxmamba.load(args.checkpoint) if args.checkpoint else jaxmamba.create_model(args.variant)
    )
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.standard_normal((1, args.size, args.size, 3)), jnp.float32)
    print(
        f"{model.config.describe()}; {args.size}x{args.size}, 1 image, jax {jax.__version__}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads"
    )

    t = time.perf_counter()
    ours = jax.block_until_ready(extract_attention(model, images))
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        jax.block_until_ready(extract_attention(model, images))
        times.append(time.perf_counter() - t)
    ours_s = min(times)

    tensors = scan_tensors(model, images, "cross")
    rows = []
    theirs_total = 0.0
    for name, (dt, A, B, C, routes, (h, w)) in tensors.items():
        t = time.perf_counter()
        theirs = vmamba_formula_torch(dt, A, B, C, routes)
        theirs_s = time.perf_counter() - t
        theirs_total += theirs_s
        ref = exact_float64(dt, A, B, C, routes)
        scale = np.max(np.abs(ref))
        err_ours = np.max(np.abs(np.asarray(ours[name][0], np.float64) - ref)) / scale
        err_theirs = np.max(np.abs(theirs.astype(np.float64) - ref)) / scale
        decay = float(np.min(np.cumsum(dt, -1)[..., None] * A[:, :, None, :].transpose(0, 1, 3, 2)))
        rows.append((name, f"{h}x{w}", h * w, theirs_s, err_ours, err_theirs, decay))
    print(
        f"\n{'block':18} {'grid':>6} {'L':>5} {'VMamba s':>9} {'err ours':>9} {'err VMamba':>10} "
        f"{'min cum. decay':>14}"
    )
    for name, grid, l, ts, eo, et, dec in rows:
        print(f"{name:18} {grid:>6} {l:5d} {ts:9.3f} {eo:9.1e} {et:10.1e} {dec:14.1f}")
    print(
        f"\nall {len(rows)} blocks, one image: ours {ours_s:.3f} s (jitted, forward included; "
        f"compile {compile_s:.1f} s), VMamba formula {theirs_total:.3f} s (scan inputs given); "
        f"ours is {theirs_total / ours_s:.1f}x faster"
    )
    print(
        f"worst error vs float64: ours {max(r[4] for r in rows):.1e}, "
        f"VMamba formula {max(r[5] for r in rows):.1e}"
    )

    name = min(tensors, key=lambda n: abs(tensors[n][0].shape[-1] - 784))  # stage 2 at 224x224
    dt, A, B, C, routes, _ = tensors[name]
    t = time.perf_counter()
    per_element_loop(dt, A, B, C, args.loop_rows)
    loop_s = time.perf_counter() - t
    l = dt.shape[-1]
    elements = args.loop_rows * (args.loop_rows + 1) / 2
    loop_full = loop_s / elements * (l * (l + 1) / 2) * dt.shape[0]  # every route
    from jaxmamba.attention import route_attention

    f = jax.jit(lambda *a: route_attention(*a))
    jax.block_until_ready(f(dt, A, B, C))
    t = time.perf_counter()
    jax.block_until_ready(f(dt, A, B, C))
    ours_block = time.perf_counter() - t
    print(
        f"\nper-element loop at L={l} ({name}, 4 routes): {loop_s:.3f} s for {int(elements)} "
        f"elements, {loop_full:.1f} s for the whole map (scaled); ours {ours_block * 1e3:.1f} ms "
        f"-> {loop_full / ours_block:.0f}x"
    )

    if args.memory:
        x8 = jnp.asarray(rng.standard_normal((8, args.size, args.size, 3)), jnp.float32)
        names = model.config.block_names()
        compiled = compute_maps.lower(
            model, x8, jaxmamba.as_order(None), names, AttentionOptions()
        ).compile()
        mem = compiled.memory_analysis()
        jax.block_until_ready(extract_attention(model, x8))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        if mem is not None:
            print(
                f"\nbatch 8, all blocks: XLA temp {mem.temp_size_in_bytes / 2**30:.2f} GiB, "
                f"output {mem.output_size_in_bytes / 2**30:.2f} GiB, "
                f"arguments {mem.argument_size_in_bytes / 2**30:.2f} GiB; "
                f"process peak RSS {rss:.2f} GiB"
            )
        else:
            print(f"\nbatch 8, all blocks: process peak RSS {rss:.2f} GiB")


if __name__ == "__main__":
    main()
