"""Selective-scan timings on CPU: XLA (chunked) vs ``lax.scan`` reference vs Pallas (interpreter).

All methods get the kernel's inputs (u, dt = final Δ, A, grouped B, C) and return Σ_n C·h.

The Pallas numbers here time the Pallas *interpreter*, a correctness tool, not the kernels; see
``benchmarks/gpu_check.py`` for the GPU measurements.

    python benchmarks/scan.py            # small shapes, forward and forward+backward
    python benchmarks/scan.py --quick    # fewer repetitions
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmamba.kernels import scan_pallas, selective_scan, selective_scan_ref

__all__ = ["make_inputs", "methods", "scan_associative", "time_fn"]


def scan_associative(u, dt, A, B, C):
    """``lax.associative_scan`` over l of ``(exp(Δ A), Δ B u)`` pairs; same semantics as
    ``scan_pallas.scan``.  Materialises ``(b, d, n, l)`` decays and states."""
    u, dt, A, B, C = (x.astype(jnp.float32) for x in (u, dt, A, B, C))
    d, g = u.shape[1], B.shape[1]
    Bd = jnp.repeat(B, d // g, axis=1)  # (b, d, n, l)
    Cd = jnp.repeat(C, d // g, axis=1)
    a = jnp.exp(dt[:, :, None, :] * A[None, :, :, None])
    x = (dt * u)[:, :, None, :] * Bd

    def combine(p, q):
        a1, x1 = p
        a2, x2 = q
        return a1 * a2, a2 * x1 + x2

    _, h = lax.associative_scan(combine, (a, x), axis=-1)
    return jnp.sum(h * Cd, axis=2)


def make_inputs(b, d, n, l, g, seed=0):
    """Random float32 kernel inputs ``(u, dt, A, B, C)``, Δ ∈ [1e-3, 1], A ∈ [−8, −0.1]."""
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    dt = jnp.asarray(rng.uniform(1e-3, 1.0, (b, d, l)), jnp.float32)
    A = -jnp.asarray(rng.uniform(0.1, 8.0, (d, n)), jnp.float32)
    return f(b, d, l), dt, A, f(b, g, n, l), f(b, g, n, l)


def methods(*, interpret: bool, platform=None, block_sizes=None):
    """Name → scan function ``(u, dt, A, B, C) -> y`` (all with the kernel's semantics)."""
    pallas = functools.partial(
        scan_pallas.scan, interpret=interpret, platform=platform, block_sizes=block_sizes
    )

    def xla(u, dt, A, B, C):  # dt is the final Δ: no bias, no softplus, no D
        # an explicit chunk (√l) forces the chunked path (selective_scan's XLA default runs the
        # plain lax.scan for n = 1 or l <= 1024: the "lax_scan" row)
        chunk = math.ceil(math.sqrt(u.shape[-1]))
        return selective_scan(u, dt, A, B, C, implementation="xla", chunk=chunk)

    return {
        "pallas": pallas,
        "xla_chunked": xla,
        "lax_scan": selective_scan_ref,
        "assoc_scan": scan_associative,
    }


def fwd_and_grad(fn):
    """Jitted forward and forward+backward (grads of ``Σ y·cot`` in all five inputs)."""
    fwd = jax.jit(fn)

    def loss(u, dt, A, B, C, cot):
        return jnp.sum(fn(u, dt, A, B, C) * cot)

    return fwd, jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))


def time_fn(f, *args, reps=5, max_seconds=2.0, target_ms=20.0):
    """Device time per call in ms: the median over ``reps`` of back-to-back batches of calls.

    After one warm-up call (which includes compilation), each repetition dispatches ``k`` calls
    without waiting (JAX dispatches asynchronously, the device runs them in order) and blocks
    on the last one; ``k`` makes a batch last about ``target_ms``, so the host's dispatch
    overhead overlaps the device work instead of being added to every call.
    """
    jax.block_until_ready(f(*args))
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    one = time.perf_counter() - t
    k = int(min(50, max(1, round(target_ms / 1e3 / max(one, 1e-6)))))
    times = []
    start = time.perf_counter()
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(k - 1):
            f(*args)
        jax.block_until_ready(f(*args))
        times.append((time.perf_counter() - t) / k)
        if time.perf_counter() - start > max_seconds:
            break
    return 1e3 * float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = p.parse_args(argv)
    reps = 2 if args.quick else 5
    shapes = [(2, 96, 1, 196, 4), (2, 96, 16, 196, 4), (1, 192, 1, 784, 4)]
    rows = []
    print(f"jax {jax.__version__} on {jax.default_backend()}; Pallas runs in the interpreter")
    for b, d, n, l, g in shapes:
        x = make_inputs(b, d, n, l, g)
        cot = jnp.ones_like(x[0])
        for name, fn in methods(interpret=True).items():
            fwd, grad = fwd_and_grad(fn)
            t_f = time_fn(fwd, *x, reps=reps)
            t_b = time_fn(grad, *x, cot, reps=reps)
            rows.append((f"b={b} d={d} n={n} l={l} g={g}", name, t_f, t_b))
            print(f"  {rows[-1][0]:32s} {name:12s} fwd {t_f:9.2f} ms  fwd+bwd {t_b:9.2f} ms")
    print()
    print(f"| {'shape':32s} | {'method':12s} | {'fwd ms':>9s} | {'fwd+bwd ms':>10s} |")
    print(f"|{'-' * 34}|{'-' * 14}|{'-' * 11}|{'-' * 12}|")
    for shape, name, t_f, t_b in rows:
        print(f"| {shape:32s} | {name:12s} | {t_f:9.2f} | {t_b:10.2f} |")


if __name__ == "__main__":
    main()
