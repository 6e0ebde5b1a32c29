"""Scaling laws of the attention mean: time and peak memory against image size and batch.

    python benchmarks/scaling.py                       # sizes 64 128 224 384, batches 1 8 32
    python benchmarks/scaling.py --sizes 64 128 --batches 1 8   # a quicker look

Each row is one warm step of :func:`jaxmamba.attention.mean.mean_step` (the program
``attention_mean`` runs on every batch: forward pass, then the maps of all 14 blocks of
vmamba_tiny_s1l8 made a few images at a time and added to the running sums), compiled ahead and
timed on its second call (its first where that takes over 30 s) on random images. Peak memory is
XLA's own account of the compiled step (temporaries, arguments and outputs, less the donated sums
counted twice). The FLOP floor is the causal half of every route's map
(``jaxmamba.attention.cost``), its share the floor at this machine's float32 matmul rate over the
measured time. "predicted" is :func:`jaxmamba.attention.cost.mean_cost` (what ``jaxmamba explore``
prints before it starts). The fit is the growth exponent of time per image against the largest
grid's patches L over the sizes, at each batch (exact extraction's floor grows as L²; the forward
pass as L).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import jaxmamba
from jaxmamba.attention.cost import matmul_rate, mean_cost
from jaxmamba.attention.mean import mean_step, route_table, zero_sums
from jaxmamba.attention.options import DEFAULT_OPTIONS
from jaxmamba.models.model import cpu_pieces, select_blocks


def step_once(model, size, batch):
    """(seconds of one warm step, XLA peak bytes, compile seconds)."""
    names = select_blocks(model.config)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, size, size, 3)), jnp.float32)
    valid = jnp.ones(batch, bool)
    table = route_table(model.config, (size, size), None)
    pieces = cpu_pieces(model.config, x.shape)
    blocks = tuple(model.config.block(n, (size, size)) for n in names)
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    sums = zero_sums(model, blocks, table, DEFAULT_OPTIONS, mesh)
    t = time.perf_counter()
    compiled = mean_step.lower(
        model, sums, x, valid, table, names, DEFAULT_OPTIONS, None, pieces, 1
    ).compile()
    compile_s = time.perf_counter() - t
    m = compiled.memory_analysis()
    peak = (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
            - m.alias_size_in_bytes)  # fmt: skip
    t = time.perf_counter()
    sums, _ = jax.block_until_ready(compiled(model, sums, x, valid, table))
    seconds = time.perf_counter() - t
    if seconds < 30:  # the first call of an executable sets things up: time a second one
        t = time.perf_counter()
        jax.block_until_ready(compiled(model, sums, x, valid, table))
        seconds = time.perf_counter() - t
    return seconds, peak, compile_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vmamba_tiny_s1l8")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224, 384])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    model = jaxmamba.create_model(args.variant)
    rate = matmul_rate()
    print(
        f"{model.config.describe()}; all {len(model.config.block_names())} blocks, default "
        f"options; jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"matmul {rate / 1e9:.0f} GFLOP/s, load average {os.getloadavg()[0]:.2f}\n"
    )
    print(f"{'size':>5} {'batch':>5} {'L':>6} {'s/img':>8} {'pred s/img':>10} {'floor %':>7} "
          f"{'peak MiB':>9} {'pred MiB':>9} {'compile s':>9}")  # fmt: skip
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            seconds, peak, compile_s = step_once(model, size, batch)
            cost = mean_cost(model, (size, size), batch)
            per = seconds / batch
            l = model.config.block(model.config.block_names()[0], (size, size)).length
            floor = cost.map_flops / rate / per
            rows.append((size, batch, l, per, peak))
            print(
                f"{size:5d} {batch:5d} {l:6d} {per:8.3f} {cost.seconds_per_image(rate):10.3f} "
                f"{floor:7.0%} {peak / 2**20:9.0f} {cost.peak_bytes / 2**20:9.0f} "
                f"{compile_s:9.1f}",
                flush=True,
            )
    print()
    for batch in args.batches:
        pts = [(l, per) for _, b, l, per, _ in rows if b == batch]
        if len(pts) >= 2:
            slope = np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0]
            steps = ", ".join(
                f"{np.log(b[1] / a[1]) / np.log(b[0] / a[0]):.2f} ({a[0]}->{b[0]})"
                for a, b in zip(pts, pts[1:], strict=False)
            )
            print(f"batch {batch}: time per image grows as L^{slope:.2f} over L = "
                  f"{', '.join(str(p[0]) for p in pts)}; between sizes: {steps}")  # fmt: skip
    for size in args.sizes:
        pts = [(b, peak) for s, b, _, _, peak in rows if s == size]
        if len(pts) >= 2:
            (b0, p0), (b1, p1) = pts[0], pts[-1]
            print(f"size {size}: peak memory {p0 / 2**20:.0f} MiB at batch {b0}, "
                  f"{p1 / 2**20:.0f} MiB at batch {b1} ({p1 / p0:.2f}x)")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
