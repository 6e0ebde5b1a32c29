"""What a user's first lines wait for, each step timed in one fresh process.

    python benchmarks/cold_start.py                       # vmamba_tiny_s1l8, 224x224
    python benchmarks/cold_start.py --variant vmamba_tiny_s1l8 --size 224 --runs 2

Every run is a new Python process with JAX's persistent compilation cache off (a truly cold
start) and prints: ``import jaxmamba``, ``create_model`` (random init), ``load_default()`` and
``load()`` of a saved checkpoint (the same variant, saved beforehand by this script in a
temporary folder), the first ``forward`` at ``--size`` (compile + run), the second ``forward``
(run only) and the first ``extract_attention`` of every block.  The issue's target is
``create_model`` ≤ 0.5× the first forward.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import jax, jax.numpy as jnp
    import jaxmamba
    out = {"import jaxmamba": time.perf_counter() - t0}
    variant, size, ckpt = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def timed(name, fn):
        t = time.perf_counter()
        result = jax.block_until_ready(fn())
        out[name] = time.perf_counter() - t
        return result

    model = timed("create_model", lambda: jaxmamba.create_model(variant))
    timed("load_default()", lambda: jaxmamba.load_default().params)
    timed("load(checkpoint)", lambda: jaxmamba.load(ckpt).params)
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    timed("first forward", lambda: jaxmamba.forward(model, x))
    timed("second forward", lambda: jaxmamba.forward(model, x))
    timed("first extract_attention", lambda: dict(jaxmamba.extract_attention(model, x)))
    print(json.dumps(out))
    """
)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="vmamba_tiny_s1l8")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--runs", type=int, default=2, help="fresh processes (the table shows each)")
    args = p.parse_args()
    env = dict(os.environ, JAXMAMBA_NO_COMPILE_CACHE="1")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = f"{tmp}/ckpt"
        save = f"import jaxmamba; jaxmamba.save(jaxmamba.create_model({args.variant!r}), {ckpt!r})"
        subprocess.run([sys.executable, "-c", save], check=True, env=env)
        runs = []
        for _ in range(args.runs):
            load = os.getloadavg()[0]
            done = subprocess.run(
                [sys.executable, "-c", CHILD, args.variant, str(args.size), ckpt],
                check=True, env=env, capture_output=True, text=True,
            )  # fmt: skip
            runs.append((json.loads(done.stdout.strip().splitlines()[-1]), load))
    size = f"{args.size}x{args.size}"
    print(f"{args.variant}, {size}, batch 1, a fresh process per run, no compilation cache")
    names = list(runs[0][0])
    print(f"{'step':26s}" + "".join(f"  run {i + 1} s" for i in range(len(runs))))
    for name in names:
        print(f"{name:26s}" + "".join(f"  {r[name]:7.2f}" for r, _ in runs))
    ratios = "  ".join(f"{r['create_model'] / r['first forward']:.2f}" for r, _ in runs)
    print(f"create_model / first forward: {ratios}   (target <= 0.5)")
    print("load average at each start: " + "  ".join(f"{load:.2f}" for _, load in runs))


if __name__ == "__main__":
    main()
