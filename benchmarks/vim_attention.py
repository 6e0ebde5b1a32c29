"""Exact Vim attention extraction vs the only public Vim attention code's formula, side by side.

    python benchmarks/vim_attention.py           # vim_small, one random 224x224 image, 24 layers
    python benchmarks/vim_attention.py --quick   # 1 layer, 1 repeat, 16 loop rows (smoke test)
    python benchmarks/vim_attention.py --error-layers 0,11,23  # layers checked against float64

The anchor is ``compute_attn_matrix_fn`` of "The Hidden Attention of Mamba Models" (Ali, Zimerman,
Wolf; github.com/AmeenAli/HiddenMambaAttn at commit 3b71b3fbd8ab8371f5d00f7b820bdb8b00b14be0,
``mamba-1p1p1/mamba_ssm/ops/selective_scan_interface.py`` L741-755, called by
``MambaInnerFnNoOutProj.forward`` L217-219 for each direction; ``mamba_ssm/modules/mamba_simple.py``
L246-248 keeps ``attn_matrix_a`` and ``attn_matrix_b = xai_b["attention_matrix"].flip([-1,-2])``).
Per direction it takes the scan's raw Δ, Δ bias, A, B, C and forms ``dt = softplus(delta + bias)``,
``dA = exp(einsum("bdl,dn->bldn", dt, A))``, ``dB = einsum("bdl,bnl->bldn", dt, B)``, then loops in
Python over rows r, columns c ≤ r and, inside, over the r − c steps between them::

    currA = 1;  for i in range(r - c): currA = currA * dA[:, r - i]
    attn[:, :, r, c] = sum(C[:, :, :, r] * currA * dB[:, c], axis=-1)       # (B, D) per channel

i.e. α^d[r, c] = Σ_n C_r[n] Π_{j=c+1..r} exp(Δ_j A_dn) Δ_c B_c[n], the exact per-channel hidden
attention: ``(B, D, L, L)`` per direction, no aggregation over channels (its notebook shows single
channels of ``|α|``, min-max normalised), stored in ``dtype=torch.float16`` by default.  Here:
(1) that loop verbatim, in float32 (the brief's precision; the float16 storage's own error is
reported separately), timed on one direction of one layer (``--loop-rows`` rows) and scaled to all
layers by the count of tensor operations (every layer and direction has the same shapes);
(2) the same formula with each row vectorised in torch float32 (row r's products for every
column at once, as one cumulative product of ``dA[r], dA[r−1], …``: the products its loop forms,
without its inner loops), both directions, the backward map flipped as its code does.  Its
channel mean, ½·(forward + backward), is our default map; ours with ``channels`` = every channel
and ``route_mode="each"`` returns exactly the anchor's output, ``(2, D, L, L)``.
(Its CLS-row vector ``compute_middle_attn_vector``, L724-738, used for its raw-attention and
rollout figures, multiplies ``dA`` only over c+1 … cls−1 and skips c = cls: not the exact row.)

Ours, measured in the same run, interleaved with the anchor: (a) the channel-mean merged maps of
all layers at once from the same scan inputs through :func:`jaxmamba.attention.tiles.spatial_maps`
as ``extract_attention`` does; (b) every channel's map of both directions from the same scan inputs
(:func:`jaxmamba.attention.extract.route_attention` with every channel); (c) ``extract_attention``
end to end, forward pass included.  Errors (max |x − ref| / max |ref| per layer) are against a
float64 NumPy evaluation of the definition (``shared/fixtures/official-vim/README.md``).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxmamba
from jaxmamba.attention.extract import extract_attention, route_attention, to_spatial
from jaxmamba.attention.tiles import spatial_maps
from jaxmamba.models import vim


def layer_inputs(model, images, names):
    """Per layer (image 0), each direction's scan arguments in its own scan order, in NumPy:
    raw Δ (2, D, L), Δ bias (2, D), A (2, D, N), B, C (2, N, L), the final Δ (2, D, L)."""
    _, cache = jaxmamba.run_with_cache(model, images)
    routes = vim.default_routes(model.config)
    out = {}
    for name in names:
        mixer = model.params[f"layers_{int(name.split('.')[1])}"]["mixer"]
        s = vim.scan_inputs(mixer, vim.to_scan_order(cache.scan_input(name), routes))
        k, (_, kd, l) = 2, s.delta.shape
        out[name] = dict(
            delta=np.asarray(s.delta[0]).reshape(k, kd // k, l),
            bias=np.asarray(s.delta_bias).reshape(k, kd // k),
            A=np.asarray(s.A).reshape(k, kd // k, -1), B=np.asarray(s.B[0]),
            C=np.asarray(s.C[0]), dt=np.asarray(s.final_delta()[0]),
        )  # fmt: skip
    return out, routes


def anchor_loop(delta, bias, A, B, C, rows):
    """``compute_attn_matrix_fn`` verbatim (one direction, batch 1), float32, its first ``rows``
    rows: ``(1, D, L, L)`` per-channel maps in scan order."""
    import torch
    import torch.nn.functional as F

    delta, bias, A = (torch.tensor(x) for x in (delta[None], bias, A))
    B, C = torch.tensor(B)[None, None], torch.tensor(C)[None, None]  # (1, 1, N, L)
    dtype = torch.float32
    dt = F.softplus(delta + bias.unsqueeze(0).unsqueeze(-1))
    dA = torch.exp(torch.einsum("bdl,dn->bldn", dt, A))
    dB = torch.einsum("bdl,bnl->bldn", dt, B.squeeze(1))
    L = delta.shape[-1]
    attn = torch.zeros((1, delta.shape[1], L, L), dtype=dtype)
    for r in range(rows):
        for c in range(r + 1):
            curr_C = C[:, :, :, r]
            currA = torch.ones((dA.shape[0], dA.shape[2], dA.shape[3]), dtype=dtype)
            if c < r:
                for i in range(r - c):
                    currA = currA * dA[:, r - i, :, :]
            currB = dB[:, c, :, :]
            attn[:, :, r, c] = torch.sum(curr_C * currA * currB, axis=-1)
    return attn


def loop_ops(rows):
    """Tensor operations of the loop's first ``rows`` rows: 6 per (r, c) pair (slices, ones,
    two products, sum, store) and one per step of the inner product."""
    return sum(6 * (r + 1) + r * (r + 1) // 2 for r in range(rows))


def anchor_vectorised(x):
    """The loop's formula with each row vectorised, torch float32, both directions: ``(2, D, L,
    L)`` in token coordinates (the backward map flipped on both axes, as ``mamba_simple.py``
    does).  Row r's ``currA`` of every column c < r at once is the cumulative product of
    ``dA[r], dA[r−1], …, dA[1]``: the products its loop forms, in its order, without the inner
    loops (and without its ``flip``s: the sequence is read reversed once)."""
    import torch
    import torch.nn.functional as F

    out = []
    for k in range(2):
        delta, bias, A = (torch.tensor(x[n][k]) for n in ("delta", "bias", "A"))
        B, C = torch.tensor(x["B"][k]), torch.tensor(x["C"][k])  # (N, L)
        dt = F.softplus(delta + bias[:, None])  # (D, L)
        dA = torch.exp(torch.einsum("dl,dn->ldn", dt, A))  # (L, D, N)
        dB = torch.einsum("dl,nl->ldn", dt, B)
        L = dt.shape[-1]
        rA, rB = dA.flip(0).contiguous(), dB.flip(0).contiguous()  # rA[j] = dA[L - 1 - j]
        maps = torch.zeros((L, L, dt.shape[0]))  # (r, c, D)
        maps[torch.arange(L), torch.arange(L)] = torch.einsum("ldn,nl->ld", dB, C)  # c = r
        for r in range(1, L):
            currA = torch.cumprod(rA[L - 1 - r : L - 1], 0)  # [k]: dA[r]···dA[r−k], c = r−1−k
            maps[r, :r] = (currA.mul_(rB[L - r :]) @ C[:, r]).flip(0)
        maps = maps.permute(2, 0, 1)
        out.append(maps if k == 0 else maps.flip([-1, -2]))
    return torch.stack(out)


def make_ours(routes, d):
    """Ours from the same scan inputs: the layers' merged channel-mean maps at once (tiles), and
    one layer's per-channel maps of both directions in token coordinates."""

    @jax.jit
    def mean(dt, A, B, C):  # (M, 2, D, L) ...: (M, L, L)
        return vim.MERGE_WEIGHT * spatial_maps(dt, A, B, C, routes)

    @jax.jit
    def channels(dt, A, B, C):  # (2, D, L) ...: (2, D, L, L)
        maps = route_attention(dt, A, B, C, channels=tuple(range(d)))
        return to_spatial(maps[None], routes)[0]

    return mean, channels


def exact_float64(x, chunk=32):
    """α^d of both directions in float64 NumPy, token coordinates: ``(2, D, L, L)``."""
    out = []
    for k in range(2):
        dt, A = x["dt"][k].astype(np.float64), x["A"][k].astype(np.float64)
        B, C = x["B"][k].astype(np.float64), x["C"][k].astype(np.float64)
        S, L = np.cumsum(dt, -1), dt.shape[-1]
        tril = np.tril(np.ones((L, L), bool))
        maps = np.empty((dt.shape[0], L, L))
        for d0 in range(0, dt.shape[0], chunk):
            s = S[d0 : d0 + chunk]
            diff = np.where(tril, s[:, :, None] - s[:, None, :], 0.0)
            decay = np.exp(A[d0 : d0 + chunk, :, None, None] * diff[:, None]) * tril
            kb = decay * (dt[d0 : d0 + chunk, None, :] * B)[:, :, None, :]
            maps[d0 : d0 + chunk] = np.einsum("nr,dnrc->drc", C, kb)
        out.append(maps if k == 0 else maps[:, ::-1, ::-1])
    return np.stack(out)


def rel(x, ref):
    return float(np.max(np.abs(np.asarray(x, np.float64) - ref)) / np.max(np.abs(ref)))


def _timed(fn):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def stacked(inputs, names):
    """The layers' final Δ, A, B, C stacked for ours: (M, 2, D, L), (M, 2, D, N), (M, 2, N, L)."""
    return tuple(jnp.asarray(np.stack([inputs[n][k] for n in names])) for k in "dt A B C".split())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vim_small")
    parser.add_argument("--layers", type=int, default=24, help="the first N layers")
    parser.add_argument("--sets", type=int, default=4, help="layer sets timed separately")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-rows", type=int, default=None, help="default: every row")
    parser.add_argument("--error-layers", default="0,11,23", help="checked against float64")
    parser.add_argument("--quick", action="store_true", help="1 layer, 1 repeat, 16 loop rows")
    args = parser.parse_args()
    if args.quick:
        args.layers, args.sets, args.repeats, args.loop_rows = 1, 1, 1, 16
        args.error_layers = "0"
    import torch

    model = jaxmamba.create_model(args.variant)
    cfg = model.config
    size = cfg.img_size
    names = cfg.block_names()[: args.layers]
    images = jnp.asarray(np.random.default_rng(0).standard_normal((1, *size, 3)), jnp.float32)
    print(
        f"{cfg.name} (random init): depth {cfg.depth}, embed {cfg.embed_dim}, d_inner "
        f"{cfg.d_inner()}, d_state {cfg.d_state}; {size[0]}x{size[1]}, L = {cfg.seq_len} tokens "
        f"(CLS at {cfg.cls_position}), 1 image, {len(names)} layers; jax {jax.__version__}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, {os.cpu_count()} "
        f"CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    inputs, routes = layer_inputs(model, images, names)
    d, l = cfg.d_inner(), cfg.seq_len
    per = -(-len(names) // args.sets)
    sets = [names[i : i + per] for i in range(0, len(names), per)]
    mean_fn, channels_fn = make_ours(routes, d)
    args_of = {tuple(s): stacked(inputs, s) for s in sets}
    err_names = [names[int(i)] for i in args.error_layers.split(",") if int(i) < len(names)]

    t = time.perf_counter()
    ours_mean = {tuple(s): jax.block_until_ready(mean_fn(*args_of[tuple(s)])) for s in sets}
    one = stacked(inputs, names[:1])
    jax.block_until_ready(channels_fn(*(a[0] for a in one)))
    jax.block_until_ready(extract_attention(model, images, blocks=names))
    compile_s = time.perf_counter() - t

    keys = ("anchor", "ours_mean", "ours_channels")
    times = {(key, tuple(s)): [] for key in keys for s in sets}
    e2e, kept = [], {}
    with torch.no_grad():
        for _ in range(args.repeats):  # interleaved, so that all see the same machine load
            for s in sets:
                t = time.perf_counter()
                for n in s:
                    a = anchor_vectorised(inputs[n])
                    if n in err_names:
                        kept[("anchor", n)] = a.numpy()
                times[("anchor", tuple(s))].append(time.perf_counter() - t)
                times[("ours_mean", tuple(s))].append(
                    _timed(lambda s=s: mean_fn(*args_of[tuple(s)]))
                )
                t = time.perf_counter()
                for i, n in enumerate(s):
                    c = jax.block_until_ready(channels_fn(*(a[i] for a in args_of[tuple(s)])))
                    if n in err_names:
                        kept[("ours", n)] = np.asarray(c)
                times[("ours_channels", tuple(s))].append(time.perf_counter() - t)
            e2e.append(_timed(lambda: extract_attention(model, images, blocks=names)))
    best = {key: min(v) for key, v in times.items()}
    e2e_s = min(e2e)

    rows = args.loop_rows or l
    x0 = inputs[names[0]]
    with torch.no_grad():
        anchor_loop(*(x0[n][0] for n in ("delta", "bias", "A", "B", "C")), 4)  # warm up
        t = time.perf_counter()
        looped = anchor_loop(*(x0[n][0] for n in ("delta", "bias", "A", "B", "C")), rows)
        loop_s = time.perf_counter() - t
    loop_layer = loop_s * loop_ops(l) / loop_ops(rows) * 2  # both directions
    loop_all = loop_layer * len(names)

    errors, e2e_maps = {}, extract_attention(model, images, blocks=err_names)
    for n in err_names:
        ref = exact_float64(inputs[n])  # (2, D, L, L)
        merged = vim.MERGE_WEIGHT * ref.mean(axis=1).sum(axis=0)
        s = next(s for s in sets if n in s)
        ours_m = ours_mean[tuple(s)][s.index(n)]
        anchor_m = vim.MERGE_WEIGHT * kept[("anchor", n)].mean(axis=1).sum(axis=0)
        f16 = kept[("anchor", n)].astype(np.float16).astype(np.float64)
        errors[n] = dict(
            ours_mean=rel(ours_m, merged), e2e=rel(e2e_maps[n][0], merged),
            anchor_mean=rel(anchor_m, merged), ours_channels=rel(kept[("ours", n)], ref),
            anchor_channels=rel(kept[("anchor", n)], ref), anchor_f16=rel(f16, ref),
        )  # fmt: skip
        if n == names[0]:
            errors[n]["loop"] = rel(looped[0, :, :rows].numpy(), ref[0, :, :rows])

    print(
        f"\n{'layers':>12} {'anchor loop s':>13} {'anchor vec s':>12} {'ours ch s':>9} "
        f"{'ours mean s':>11} {'ch/vec':>7} {'mean/vec':>8}"
    )
    for s in sets:
        a, m, c = (best[(key, tuple(s))] for key in keys)
        label = f"{s[0].split('.')[1]}-{s[-1].split('.')[1]}"
        print(
            f"{label:>12} {loop_layer * len(s):13.1f} {a:12.3f} {c:9.3f} {m:11.3f} "
            f"{c / a:7.3f} {m / a:8.4f}"
        )
    total = {key: sum(best[(key, tuple(s))] for s in sets) for key in keys}
    vec, loop = total["anchor"], loop_all
    print(
        f"\nall {len(names)} layers (both directions), one image, best of {args.repeats} "
        f"(interleaved); seconds, and as a fraction of the vectorised anchor and of the loop:"
    )
    summary = (
        (f"anchor, its Python loop (scaled from {rows} of {l} rows, {loop_s:.2f} s)", loop),
        ("anchor, the same formula, rows vectorised (per channel)", vec),
        ("ours per channel, both directions (the anchor's output)", total["ours_channels"]),
        ("ours channel mean merged (tiles, from the scan inputs)", total["ours_mean"]),
        ("ours end to end (extract_attention, forward included)", e2e_s),
    )
    for label, sec in summary:
        print(f"  {label:<58} {sec:9.3f} s  {sec / vec:8.4f}  {sec / loop:8.1e}")
    print(f"  (compile of ours: {compile_s:.1f} s)")
    print(f"\nworst error vs float64 (max |x - ref| / max |ref|, per layer), layers {err_names}:")
    labels = dict(
        ours_mean="ours, channel mean merged (tiles)", e2e="ours end to end (extract_attention)",
        anchor_mean="anchor vectorised, its channel mean merged",
        ours_channels="ours per channel, both directions",
        anchor_channels="anchor vectorised per channel (float32)",
        anchor_f16="anchor as stored by its code (float16)",
        loop=f"anchor loop ({names[0]} forward, {rows} rows)",
    )  # fmt: skip
    for key, label in labels.items():
        vals = [e[key] for e in errors.values() if key in e]
        if vals:
            print(f"  {label:<44} {max(vals):.1e}")
    print(f"  load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
