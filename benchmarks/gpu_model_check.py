"""Model-level GPU check: the official fixtures' logits and attention with the Pallas scan.

    python benchmarks/gpu_model_check.py DIR [DIR ...]

Each DIR is an Orbax checkpoint (``python -m jaxmamba.convert ckpt.pth --out DIR``) holding also
the fixture's ``io_64x96.npz`` and ``attn_64x96.npz`` (see ``../shared/fixtures``).  Prints, per
fixture and scan implementation, the relative error of the logits and the worst attention map
against the official values, then times ``forward`` and ``extract_attention`` of
``vmamba_tiny_s1l8`` at 224x224 (batch 8) on the current backend.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxmamba
from jaxmamba.attention.extract import extract_attention


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def timed(fn, repeats=5):
    jax.block_until_ready(fn())
    t = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return (time.perf_counter() - t) / repeats


def main(dirs):
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0]}")
    ok = True
    impls = ("xla",) if jax.default_backend() == "cpu" else ("pallas", "xla")  # CPU: a dry run
    for d in map(Path, dirs):
        model = jaxmamba.load(d)
        io, ref = np.load(d / "io_64x96.npz"), np.load(d / "attn_64x96.npz")
        x = jnp.asarray(io["x_nhwc"])
        for impl in impls:
            logits = jaxmamba.forward(model, x, implementation=impl)
            maps = extract_attention(model, x, implementation=impl)
            err_l = rel(logits, io["logits"])
            err_a = max(rel(maps[k], ref[k]) for k in maps)
            good = err_l <= 1e-5 and err_a <= 1e-5
            ok &= good
            print(f"{d.name:10} {impl:6} logits {err_l:.1e}  attention {err_a:.1e}  "
                  f"{'PASS' if good else 'FAIL'}")  # fmt: skip
    print("model check:", "PASS" if ok else "FAIL")
    if jax.default_backend() == "cpu":
        return
    model = jaxmamba.create_model("vmamba_tiny_s1l8")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 224, 224, 3)), jnp.float32)
    for impl in impls:
        f = timed(lambda i=impl: jaxmamba.forward(model, x, implementation=i))
        a = timed(lambda i=impl: extract_attention(model, x, implementation=i), repeats=2)
        print(f"vmamba_tiny_s1l8 224x224 batch 8, {impl}: forward {f * 1e3:.1f} ms, "
              f"all-block attention {a * 1e3:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
