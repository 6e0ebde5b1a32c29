"""CPU time of the jitted forward pass at 224×224 (the target: ≥ 2× faster than PyTorch).

    python benchmarks/forward.py [--repeats 5] [--torch] [--whole]

Prints one row per (variant, batch): compile time, and the median wall time of the compiled
forward per call and per image.  With ``--torch`` it also times the PyTorch VMamba of the test
suite (``tests/torch_vmamba.py``: same architecture, plain-loop selective scan) on the same
weights, as a PyTorch CPU baseline measured on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxmamba


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def torch_baseline(model, images, repeats):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import torch
    from torch_vmamba import build_torch_vmamba

    from jaxmamba.models import params as P

    net = build_torch_vmamba(model.config)
    state = {
        P.path_to_key(k): torch.from_numpy(np.array(v)) for k, v in P.flatten(model.params).items()
    }
    net.load_state_dict(state, strict=True)
    x = torch.from_numpy(np.array(images))  # the test model takes NHWC, like ours
    with torch.no_grad():
        net(x[:1])
        return timed(lambda: net(x), repeats)


def whole(model, x, repeats) -> str:
    """Compile and time the forward on ``x`` with no stage cut into slices of the batch: the
    program ``forward`` runs, given ``pieces=()`` (what ``model.cpu_pieces`` gives on GPU)."""
    from jaxmamba.models.model import Model, apply
    from jaxmamba.orders import as_order

    order = as_order(None)
    fn = jax.jit(lambda p, v: apply(Model(model.config, p), v, order, None, frozenset(), ())[0])
    t = time.perf_counter()
    jax.block_until_ready(fn(model.params, x))
    compile_s = time.perf_counter() - t
    per_call = timed(lambda: fn(model.params, x), repeats)
    return f"{compile_s:9.1f} {per_call:8.3f} {per_call / x.shape[0]:8.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants", nargs="+", default=["vmamba_tiny_s1l8", "vanilla_vmamba_tiny"]
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch baseline")
    parser.add_argument(
        "--whole", action="store_true",
        help="also time each batch > 1 run whole, not cut into slices (model.cpu_pieces)",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {args.size}x{args.size}")
    header = f"{'variant':22} {'batch':>5} {'compile s':>9} {'s/call':>8} {'s/image':>8}"
    if args.torch:
        header += f" {'torch s/image':>13} {'speed-up':>8}"
    print(header)
    for name in args.variants:
        model = jaxmamba.create_model(name)
        for b in args.batches:
            x = jnp.asarray(
                np.random.default_rng(0).standard_normal((b, args.size, args.size, 3)), jnp.float32
            )
            t = time.perf_counter()
            jax.block_until_ready(jaxmamba.forward(model, x))
            compile_s = time.perf_counter() - t
            per_call = timed(lambda m=model, x=x: jaxmamba.forward(m, x), args.repeats)
            row = f"{name:22} {b:5d} {compile_s:9.1f} {per_call:8.3f} {per_call / b:8.3f}"
            if args.torch:
                ref = torch_baseline(model, x, max(1, args.repeats // 2)) / b
                row += f" {ref:13.3f} {ref / (per_call / b):7.1f}x"
            print(row, flush=True)
            if args.whole and b > 1:
                print(f"{'  (whole batch)':22} {b:5d} " + whole(model, x, args.repeats), flush=True)


if __name__ == "__main__":
    main()
