"""GPU check: the Pallas selective scan, and the 1000-image attention mean of VMamba-T.

On a machine with one GPU (from the repo root)::

    bash benchmarks/gpu_check.sh              # both parts, each under its own time limit
    bash benchmarks/gpu_check.sh --mean-only  # part "mean" alone (about 3 minutes at most)

On CPU, to check that the script runs (tiny shapes, Pallas interpreter, a tiny model)::

    python benchmarks/gpu_check.py --dry-run [--part scan|mean]

Part "scan", sections: (a) Pallas forward and gradients against the XLA path and float64 NumPy;
(b) VMamba-T (vmamba_tiny_s1l8, batch 128, 4 routes, N = 1) stage shapes, forward and
forward+backward, Pallas vs the chunked XLA path, ``lax.associative_scan`` and the step-by-step
``lax.scan``; (c) a few block sizes for the Pallas kernels.  Both Pallas GPU backends are
checked and timed, each named: "pallas" / "triton" is the Triton kernels (``platform="gpu"``,
deprecated from JAX 0.11), "pallas_mosaic" / "mosaic" the Mosaic GPU kernels
(``platform="gpu_mosaic"``, compute capability ≥ 9.0; they have no block sizes to sweep).

Part "mean", section (d): XLA's peak bytes of the mean's compiled step at batch 128, before and
after it stopped holding a batch of maps (``benchmarks/mean_memory.py``); the streamed
:func:`jaxmamba.attention_mean` of all 14 blocks of vmamba_tiny_s1l8 (random weights) over 1000
random 224² images in batches of 128 (the last one partial), default options (every route's map
computed and summed, channel mean), timed cold (compilation included) and warm, in seconds and
images/s; and the forward throughput at batch 128 in images/s next to the published 1686 img/s
(VMamba README: one A100, batch 128).

Every measurement is guarded: an error is printed and the script goes on; each part has its own
time budget (``--budget``, ``--mean-budget``).  Compact summary tables are printed last.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # the budget counts the imports too

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scan import fwd_and_grad, make_inputs, methods, time_fn  # noqa: E402

import jaxmamba  # noqa: E402
from jaxmamba.kernels import scan_pallas as sp  # noqa: E402
from jaxmamba.kernels import selective_scan  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

HBM_BYTES_PER_S = 3.0e12  # the floor: H100 SXM ≈ 3 TB/s
# name: (b, d, n, l, g) with d = 4 routes · d_inner; vmamba_tiny_s1l8, 224², batch 128.
STAGES = {
    "stage1": (128, 4 * 96, 1, 3136, 4),
    "stage2": (128, 4 * 192, 1, 784, 4),
    "stage3": (128, 4 * 384, 1, 196, 4),
    "stage4": (128, 4 * 768, 1, 49, 4),
}
STAGES_DRY = {
    "stage1": (2, 4 * 8, 1, 70, 4),
    "stage2": (2, 4 * 16, 1, 33, 4),
}
# (b, d, n, l, g): long sequence, N = 16 (v0), partial channel block (25 per group), N = 3, G = 1.
CHECKS = [(2, 384, 1, 3136, 4), (4, 96, 16, 197, 4), (3, 100, 1, 49, 4), (2, 64, 3, 300, 1)]
CHECKS_DRY = [(2, 32, 1, 45, 4), (1, 24, 16, 20, 4), (1, 12, 3, 19, 1)]
_R = dataclasses.replace
_DEF = sp.BlockSizes.get_default(1)  # the default at l > 256 (stages 1, 2)
_ALL = ("stage1", "stage2", "stage3", "stage4")
# label: (block sizes, stages); tried in this order per stage.  Dropped after H100 run 4:
# 32-step whole tiles (5-60x slower: the backward spills), prefetch and 32-channel/2-warp
# programs (within 2% of the default), the unpadded l = 49 (slower).
SWEEP = {
    "general_l8": (sp.BlockSizes(), _ALL),  # the general kernels, 8-step tiles (run 2 default)
    "tiles_d16": (_DEF, ("stage3", "stage4")),  # the l > 256 default at the short stages
    "tiles_d8": (_R(_DEF, block_d=8, block_d_bwd=8), ("stage1", "stage2")),
    "tiles_d8_l8": (_R(_DEF, block_d=8, block_d_bwd=8, block_l=8, chunk=8), _ALL),
}
CHECK_CONFIGS = {"default": None, "general": sp.BlockSizes()}  # (a) checks both n = 1 kernels
# backend label: scan_pallas platform.  Explicit, since platform=None picks Mosaic GPU on JAX 0.11.
BACKENDS = {"triton": "gpu", "mosaic": "gpu_mosaic"}
TOL_FWD, TOL_GRAD = 1e-5, 1e-4


class Budget:
    """Wall-clock budget of a part, counted from ``start`` (default: the script's start)."""

    def __init__(self, seconds: float, start: float | None = None):
        self.end = (_T0 if start is None else start) + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


_ERRORS_SHOWN = [0]


def guarded(label, budget: Budget, fn, *args, min_left=8.0, **kwargs):
    """``fn(*args, **kwargs)`` or None: errors are printed (the first two in full)."""
    if budget.left() < min_left:
        print(f"  [skip] {label}: time budget used up")
        return None
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - report and continue
        msg = f"{type(e).__name__}: {e}"
        if _ERRORS_SHOWN[0] < 2:
            _ERRORS_SHOWN[0] += 1
            tb = traceback.format_exc()
            print(f"  [error] {label}:\n{tb[-4000:]}")
        else:
            print(f"  [error] {label}: {msg.splitlines()[0][:400] if msg else type(e).__name__}")
        return None


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-30))


def scan64(u, dt, A, B, C):
    """Float64 NumPy scan with the kernel's semantics."""
    u, dt, A, B, C = (np.asarray(x, np.float64) for x in (u, dt, A, B, C))
    b, d, l = u.shape
    g = B.shape[1]
    Bd, Cd = np.repeat(B, d // g, axis=1), np.repeat(C, d // g, axis=1)
    h = np.zeros((b, d, A.shape[1]))
    y = np.zeros((b, d, l))
    for t in range(l):
        h = np.exp(dt[..., t, None] * A) * h + (dt[..., t] * u[..., t])[..., None] * Bd[..., t]
        y[..., t] = np.sum(h * Cd[..., t], axis=-1)
    return y


def raw_inputs(b, d, n, l, g, seed):
    """``selective_scan`` inputs: softplus(delta + bias) log-uniform in [1e-4, 2], |A| ≤ 24."""
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    dt = np.exp(rng.uniform(np.log(1e-4), np.log(2.0), (b, d, l)))
    bias = rng.uniform(-0.5, 0.5, d)
    delta = (np.log(np.expm1(dt)) - bias[:, None]).astype(np.float32)
    A = -rng.uniform(0.05, 24.0, (d, n)).astype(np.float32)
    return dict(
        u=f(b, d, l), delta=delta, A=A, B=f(b, g, n, l), C=f(b, g, n, l),
        D=f(d), delta_bias=bias.astype(np.float32),
    )  # fmt: skip


def _pallas_selective(platform, interpret, bs):
    """``selective_scan(..., delta_softplus=True)`` on the Pallas kernels of ``platform``."""

    def f(u, delta, A, B, C, D, delta_bias):
        dt = jax.nn.softplus(delta + delta_bias[:, None])
        y = sp.scan(u, dt, A, B, C, interpret=interpret, block_sizes=bs, platform=platform)
        return y + D[:, None] * u

    return f


def check_correctness(shapes, interpret, budget):
    """(a): forward vs float64 and XLA, gradients of all inputs vs ``jax.grad`` of XLA, for
    each backend of :data:`BACKENDS`: the Triton kernels for each of :data:`CHECK_CONFIGS` (the
    n = 1 kernels only where they differ), the Mosaic GPU kernels once."""
    print("\n== (a) correctness: Pallas vs XLA path / float64 NumPy ==")
    worst = {"fwd": 0.0, "grad": 0.0}
    ok = True
    names = ["u", "delta", "A", "B", "C", "D", "delta_bias"]
    cases = [
        (backend, cfg, shape)
        for backend in BACKENDS
        for cfg, bs in CHECK_CONFIGS.items()
        for shape in shapes
        if (bs is None or shape[2] == 1) and (backend == "triton" or bs is None)
    ]
    for backend, cfg, (b, d, n, l, g) in cases:
        label = f"{backend} {cfg}: b={b} d={d} n={n} l={l} g={g}"

        def run(b=b, d=d, n=n, l=l, g=g, bs=CHECK_CONFIGS[cfg], platform=BACKENDS[backend]):
            x = raw_inputs(b, d, n, l, g, seed=b + d + n + l)
            xj = {k: jnp.asarray(v) for k, v in x.items()}

            def f(impl):
                if impl == "pallas":
                    return jax.jit(_pallas_selective(platform, interpret, bs))
                return jax.jit(
                    lambda *a: selective_scan(*a, delta_softplus=True, implementation=impl)
                )

            cot = jnp.asarray(np.random.default_rng(1).standard_normal((b, d, l)), jnp.float32)
            y_pl, vjp_pl = jax.vjp(f("pallas"), *xj.values())
            y_x, vjp_x = jax.vjp(f("xla"), *xj.values())
            ref = scan64(x["u"], _softplus64(x["delta"], x["delta_bias"]), x["A"], x["B"], x["C"])
            ref = ref + x["D"][:, None].astype(np.float64) * x["u"]
            e_f64, e_xla = rel_err(y_pl, ref), rel_err(y_pl, y_x)
            g_pl, g_x = vjp_pl(cot), vjp_x(cot)
            e_g = {k: rel_err(a, r) for k, a, r in zip(names, g_pl, g_x, strict=True)}
            finite = all(bool(jnp.all(jnp.isfinite(a))) for a in g_pl)
            g_again = vjp_pl(cot)
            det = all(bool(jnp.array_equal(a, c)) for a, c in zip(g_pl, g_again, strict=True))
            return e_f64, e_xla, e_g, finite, det

        res = guarded(f"check {label}", budget, run)
        if res is None:
            ok = False
            print(f"  {label}: FAIL (no result)")
            continue
        e_f64, e_xla, e_g, finite, det = res
        worst["fwd"] = max(worst["fwd"], e_f64)
        worst["grad"] = max(worst["grad"], max(e_g.values()))
        passed = e_f64 <= TOL_FWD and max(e_g.values()) <= TOL_GRAD and finite
        ok &= passed
        grads = " ".join(f"{k}={v:.1e}" for k, v in e_g.items())
        print(
            f"  {label}: fwd rel err vs f64 {e_f64:.2e}, vs XLA {e_xla:.2e}; grads vs XLA {grads};"
            f" finite={finite} deterministic={det} -> {'PASS' if passed else 'FAIL'}"
        )

    def bf16(platform, b=2, d=96, n=1, l=197, g=4):
        x = make_inputs(b, d, n, l, g, seed=3)
        xb = [jnp.asarray(a, jnp.bfloat16) for a in x]
        scan = lambda *a: sp.scan(*a, interpret=interpret, platform=platform)
        y = scan(*xb)
        gr = jax.grad(lambda *a: scan(*a).sum(), argnums=(0, 3))(*xb)
        dtypes_ok = y.dtype == jnp.float32 and all(a.dtype == jnp.bfloat16 for a in gr)
        return rel_err(y, scan64(*(np.asarray(a, np.float32) for a in xb))), dtypes_ok

    for backend, platform in BACKENDS.items():
        res = guarded(f"check {backend} bf16 inputs", budget, bf16, platform)
        passed = res is not None and res[0] <= TOL_FWD and res[1]
        ok &= passed
        if res is not None:
            worst["fwd"] = max(worst["fwd"], res[0])
            print(
                f"  {backend} bf16 inputs: fwd rel err vs f64 {res[0]:.2e}, dtypes ok={res[1]}"
                f" -> {'PASS' if passed else 'FAIL'}"
            )
        else:
            print(f"  {backend} bf16 inputs: FAIL (no result)")
    return ok, worst


def _softplus64(delta, bias):
    x = np.asarray(delta, np.float64) + np.asarray(bias, np.float64)[:, None]
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def floor_bytes(b, d, n, l, g, itemsize=4):
    """Bytes a perfect forward moves: read u, dt, B, C once, write y once."""
    return itemsize * (3 * b * d * l + 2 * b * g * n * l)


def _elementwise(u, dt, A, B, C):
    """What a perfect scan's memory traffic looks like to XLA: read u, dt, B, C, write y."""
    g = B.shape[1]
    bc = (B * C).reshape(B.shape[0], g, 1, -1)
    return (u * dt).reshape(u.shape[0], g, -1, u.shape[-1]).__mul__(bc).reshape(u.shape)


def time_stage(name, shape, fns, budget, reps, results):
    """(b): forward and forward+backward timings of each method at one shape, and the time of
    one fused elementwise pass over the same bytes (the bandwidth this device reaches)."""
    x = make_inputs(*shape)
    cot = jnp.ones_like(x[0])
    t_e = guarded(f"{name} elementwise", budget, time_fn, jax.jit(_elementwise), *x, reps=reps)
    results[(name, "elementwise")] = (t_e, None)
    print(f"  {name:7s} {'elementwise':12s} fwd {_ms(t_e)} ms   (same bytes as the floor)")
    for method, fn in fns.items():
        fwd, grad = fwd_and_grad(fn)
        t_f = guarded(f"{name} {method} fwd", budget, time_fn, fwd, *x, reps=reps)
        t_b = guarded(f"{name} {method} fwd+bwd", budget, time_fn, grad, *x, cot, reps=reps)
        results[(name, method)] = (t_f, t_b)
        print(f"  {name:7s} {method:12s} fwd {_ms(t_f)} ms   fwd+bwd {_ms(t_b)} ms", flush=True)


def _ms(t):
    return f"{t:9.3f}" if t is not None else "      n/a"


def sweep(stages, shapes, interpret, budget, reps, results, dry=False):
    """(c): Pallas (Triton) forward and forward+backward for each block-size setting; "default"
    (Triton) and "mosaic" (the Mosaic GPU kernels) are the section (b) measurements.  Returns
    ``{stage: [(label, fwd ms, f+b ms), ...]}``."""
    table = {}
    for name in stages:
        x = make_inputs(*shapes[name])
        cot = jnp.ones_like(x[0])
        rows = [("default", *results.get((name, "pallas"), (None, None)))]
        rows.append(("mosaic", *results.get((name, "pallas_mosaic"), (None, None))))
        for label, (bs, where) in SWEEP.items():
            if not dry and name not in where:
                continue
            fn = methods(interpret=interpret, platform="gpu", block_sizes=bs)["pallas"]
            fwd, grad = fwd_and_grad(fn)
            t_f = guarded(f"sweep {name} {label} fwd", budget, time_fn, fwd, *x, reps=reps)
            t_b = guarded(
                f"sweep {name} {label} fwd+bwd", budget, time_fn, grad, *x, cot, reps=reps
            )
            rows.append((label, t_f, t_b))
            print(f"  {name:7s} {label:12s} fwd {_ms(t_f)} ms   fwd+bwd {_ms(t_b)} ms", flush=True)
        table[name] = rows
    return table


def _best(rows, k):
    ok = [r for r in rows if r[k] is not None]
    return min(ok, key=lambda r: r[k]) if ok else None


def _table(shapes, results, pallas, title):
    """Rows of the summary table; ``pallas[stage] = (fwd label, fwd ms, f+b label, f+b ms)``."""
    xla_names = ("xla_chunked", "assoc_scan", "lax_scan")
    print(f"\n{title}")
    head = (
        "| stage  | b,d,n,l,g            | floor ms | elemwise ms | pallas fwd (config)      "
        "| %floor | %elemwise | GB/s  | best XLA fwd          | fwd x "
        "| pallas f+b (config)      | best XLA f+b          | f+b x |"
    )
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    targets = []
    for name, shape in shapes.items():
        nbytes = floor_bytes(*shape)
        floor_ms = 1e3 * nbytes / HBM_BYTES_PER_S
        te = results.get((name, "elementwise"), (None, None))[0]
        lf, pf, lb, pb = pallas.get(name, (None, None, None, None))
        xf = [(results.get((name, m), (None, None))[0], m) for m in xla_names]
        xb = [(results.get((name, m), (None, None))[1], m) for m in xla_names]
        xf = min([r for r in xf if r[0] is not None], default=(None, "-"))
        xb = min([r for r in xb if r[0] is not None], default=(None, "-"))
        pct = f"{100 * floor_ms / pf:5.1f}%" if pf else "  n/a "
        pce = f"{100 * te / pf:8.1f}%" if pf and te else "     n/a "
        gbs = f"{nbytes / pf / 1e6:5.0f}" if pf else "  n/a"
        sf = f"{xf[0] / pf:5.2f}" if pf and xf[0] else "  n/a"
        sb = f"{xb[0] / pb:5.2f}" if pb and xb[0] else "  n/a"
        print(
            f"| {name:6s} | {','.join(map(str, shape)):20s} | {floor_ms:8.3f} | {_ms(te):>11s} |"
            f" {_ms(pf)} {str(lf):14s} | {pct:6s} | {pce:9s} | {gbs} | {_ms(xf[0])} "
            f"{xf[1]:12s}| {sf} | {_ms(pb)} {str(lb):14s} | {_ms(xb[0])} {xb[1]:12s}| {sb} |"
        )
        t1 = "PASS" if pf and floor_ms / pf >= 0.6 else "FAIL"
        t2 = "PASS" if pb and xb[0] and xb[0] / pb >= 3.0 else "FAIL"
        targets.append(f"{name}: fwd ≥ 60% floor {t1}, f+b ≥ 3x best XLA {t2}")
    print("targets: " + "; ".join(targets))


def summary(shapes, results, check, table, device):
    print(f"\n== SUMMARY ({device}; jax {jax.__version__}) ==")
    tbs = HBM_BYTES_PER_S / 1e12
    print(f"floor: the bytes of a perfect forward at {tbs:.1f} TB/s (the issue's);")
    print("elemwise: one fused XLA elementwise pass over the same bytes, measured on this device")
    if check is None:
        print("correctness: skipped (--skip-pallas)")
    else:
        ok, worst = check
        print(
            f"correctness: {'PASS' if ok else 'FAIL'} (worst fwd rel err {worst['fwd']:.1e} ≤ "
            f"{TOL_FWD:.0e}; worst grad rel err {worst['grad']:.1e} ≤ {TOL_GRAD:.0e})"
        )
    default = {n: ("default", *results.get((n, "pallas"), (None, None))) for n in shapes}
    _table(shapes, results, {n: (r[0], r[1], r[0], r[2]) for n, r in default.items()},
           "Pallas, Triton kernels (platform 'gpu'), default block sizes:")  # fmt: skip
    mosaic = {n: ("mosaic", *results.get((n, "pallas_mosaic"), (None, None))) for n in shapes}
    _table(shapes, results, {n: (r[0], r[1], r[0], r[2]) for n, r in mosaic.items()},
           "Pallas, Mosaic GPU kernels (platform 'gpu_mosaic'):")  # fmt: skip
    best = {}
    for name, rows in table.items():
        bf, bb = _best(rows, 1), _best(rows, 2)
        best[name] = (bf and bf[0], bf and bf[1], bb and bb[0], bb and bb[2])
    if best:
        _table(shapes, results, best, "Pallas, the best per stage (config: sweep label or mosaic):")
    for name, rows in table.items():
        print(f"sweep {name}: " + ", ".join(f"{r[0]} {_ms(r[1]).strip()}/{_ms(r[2]).strip()}"
                                             for r in rows))  # fmt: skip


# (d): the 1000-image attention mean and the forward throughput.
MEAN = {"variant": "vmamba_tiny_s1l8", "images": 1000, "batch": 128, "size": 224}
MEAN_DRY = {"variant": "vmamba_test", "images": 10, "batch": 4, "size": 64}  # last batch partial
PUBLISHED_IMG_S = 1686.0  # VMamba README: vmamba_tiny_s1l8 throughput on one A100, batch 128
GOAL_MEAN_S = 5.0  # the goal: the 1000-image mean in < 5 s on one H100


def random_images(n, size, seed=0):
    """``(n, size, size, 3)`` float32 standard-normal host images (like normalised pixels)."""
    return np.random.default_rng(seed).standard_normal((n, size, size, 3), np.float32)


def run_mean(model, images, batch, route_mode, implementation):
    """One streamed :func:`jaxmamba.attention_mean` over the host ``images`` in batches of
    ``batch`` (the last one partial), until the result is on the device: ``(seconds, maps)``."""
    t = time.perf_counter()
    batches = (images[i : i + batch] for i in range(0, len(images), batch))
    maps = jaxmamba.attention_mean(
        model, batches, route_mode=route_mode, progress=False, implementation=implementation
    )
    jax.block_until_ready(dict(maps))
    return time.perf_counter() - t, maps


def _scan_label(implementation):
    """The scan path that ``implementation`` picks here (``selective_scan``'s rule for None)."""
    if implementation is not None:
        return implementation
    return "pallas" if jax.default_backend() in ("gpu", "cuda", "tpu") else "xla"


def _peak_memory() -> str:
    """The device's peak memory in use so far, where the backend reports it (GPU, TPU)."""
    try:
        peak = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    except Exception:  # noqa: BLE001 - not every backend has memory_stats
        peak = None
    return f"; device peak {peak / 2**30:.1f} GiB" if peak else ""


def mean_part(budget, dry, reps, route_mode, implementation):
    """(d): cold and warm 1000-image ``attention_mean``, forward images/s; returns the rows of
    the summary table ``[(what, batch, images, seconds, note)]``."""
    cfg = MEAN_DRY if dry else MEAN
    n, batch, size = cfg["images"], cfg["batch"], cfg["size"]
    print(
        f"\n== (d) attention_mean of {n} random {size}x{size} images, batch {batch}, "
        f"{cfg['variant']} (random weights), route_mode={route_mode!r}, channel mean =="
    )
    rows = []
    t = time.perf_counter()
    model = guarded("create_model", budget, jaxmamba.create_model, cfg["variant"])
    if model is None:
        return cfg, rows
    rows.append(("create_model (cold init)", None, None, time.perf_counter() - t, ""))
    print(f"  create_model {rows[-1][3]:.1f} s", flush=True)
    images = random_images(n, size)
    n_blocks, k = len(model.config.block_names()), model.config.k_routes
    what = f"attention_mean, {n_blocks} blocks x {k} routes ({route_mode})"
    impl = _scan_label(implementation)  # explicit, so that the printed path is the one taken
    if impl == "pallas":
        print(f"  pallas kernels: platform {sp.default_platform()!r} (scan_pallas's default here)")

    def mean_once(label):
        seconds, maps = run_mean(model, images, batch, route_mode, impl)
        finite = all(bool(jnp.isfinite(v).all()) for v in maps.values())
        good = maps.count == n and len(maps) == n_blocks and finite
        shapes = sorted({tuple(v.shape) for v in maps.values()}, reverse=True)
        print(
            f"  mean {label}: {seconds:.3f} s, {n / seconds:.1f} img/s; count {maps.count}, "
            f"{len(maps)} maps {shapes}, finite={finite} -> {'OK' if good else 'WRONG'}"
            f"{_peak_memory()}",
            flush=True,
        )
        return seconds if good else None

    def memory():  # the step's compiled programs at this batch, before and after
        from mean_memory import step_memory

        mem = step_memory(model, batch, size, implementation=impl)
        print(
            f"  mean step at batch {batch}, XLA's peak bytes of the compiled programs: "
            + ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in mem.items())
            + " ('before': all maps of the batch, then their sum; 'after': a few images at a "
            "time into the running sums)",
            flush=True,
        )
        return mem

    guarded("mean step memory", budget, memory, min_left=60.0)
    cold = guarded("mean (cold)", budget, mean_once, "cold", min_left=30.0)
    if cold is not None:
        rows.append((f"{what}, cold ({impl} scan)", batch, n, cold, "compilation included"))
        warm = []
        for i in range(max(1, min(reps, 3))):
            s = guarded(
                f"mean (warm {i + 1})", budget, mean_once, f"warm {i + 1}",
                min_left=min(cold, 3 * (warm[-1] if warm else cold)) + 5.0,
            )  # fmt: skip
            if s is not None:
                warm.append(s)
        if warm:
            best = min(warm)
            goal = "PASS" if best < GOAL_MEAN_S else "FAIL"
            note = "dry run" if dry else f"goal < {GOAL_MEAN_S:g} s on one H100: {goal}"
            rows.append((f"{what}, warm, best of {len(warm)}", batch, n, best, note))

    x = jnp.asarray(images[:batch])
    for label in dict.fromkeys((impl, "xla")):  # the mean's scan path first
        fwd = lambda x, i=label: jaxmamba.forward(model, x, implementation=i)
        ms = guarded(f"forward {label}", budget, time_fn, fwd, x, reps=reps, min_left=20.0)
        if ms is not None:
            rate = batch / ms * 1e3
            print(f"  forward ({label} scan), batch {batch}: {ms:.2f} ms, {rate:.0f} img/s",
                  flush=True)  # fmt: skip
            note = "dry run" if dry else (
                f"{rate / PUBLISHED_IMG_S:.2f}x the published {PUBLISHED_IMG_S:.0f} img/s "
                "(VMamba README: one A100, batch 128); ours float32"
            )  # fmt: skip
            rows.append((f"forward, time per call ({label} scan)", batch, batch, ms / 1e3, note))
    return cfg, rows


def mean_summary(cfg, rows, device):
    print(f"\n== (d) SUMMARY ({device}; jax {jax.__version__}) ==")
    print(f"{cfg['variant']}, {cfg['size']}x{cfg['size']}, random weights and images")
    head = f"| {'what':60s} | batch | images |  seconds |   img/s | note"
    print(head)
    print("|" + "-" * 62 + "|-------|--------|----------|---------|" + "-" * 40)
    for what, batch, n, seconds, note in rows:
        b = f"{batch:5d}" if batch else "     "
        i = f"{n:6d}" if n else "      "
        rate = f"{n / seconds:7.1f}" if n else "       "
        print(f"| {what:60s} | {b} | {i} | {seconds:8.3f} | {rate} | {note}")
    if not any(r[0].startswith("attention_mean") and "warm" in r[0] for r in rows):
        print("the warm 1000-image mean was not measured (see the errors above)")


def scan_part(args, budget, reps, device):
    """Sections (a)-(c): the Pallas selective scan."""
    dry = args.dry_run
    interpret = dry
    shapes = STAGES_DRY if dry else STAGES

    if args.skip_pallas:
        check = None
    else:
        check = check_correctness(CHECKS_DRY if dry else CHECKS, interpret, budget)

    print(f"\n== (b) timings, batch {next(iter(shapes.values()))[0]}, ms (median of ≤ {reps}) ==")
    print("  pallas = Triton kernels (platform 'gpu'); pallas_mosaic = Mosaic GPU kernels "
          "(platform 'gpu_mosaic'); platform=None would pick "
          f"{sp.default_platform()!r} here")  # fmt: skip
    results = {}
    fns = methods(interpret=interpret, platform="gpu")
    fns["pallas_mosaic"] = methods(interpret=interpret, platform="gpu_mosaic")["pallas"]
    if args.skip_pallas:
        del fns["pallas"], fns["pallas_mosaic"]
    for i, name in enumerate(shapes):
        stage_fns = dict(fns)
        if dry and i + 1 < len(shapes):  # Mosaic GPU's interpreter is slow: the last stage only
            stage_fns.pop("pallas_mosaic", None)
        time_stage(name, shapes[name], stage_fns, budget, reps, results)

    table = {}
    if not args.skip_pallas:
        print("\n== (c) Pallas block-size sweep (fwd / fwd+bwd ms) ==")
        order = [s for s in ("stage1", "stage4", "stage2", "stage3") if s in shapes]
        table = sweep(order, shapes, interpret, budget, reps, results, dry=dry)

    summary(shapes, results, check, table, device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU: tiny shapes, Pallas interpreter")
    p.add_argument(
        "--part", choices=("all", "scan", "mean"), default="all",
        help="scan: sections (a)-(c); mean: section (d); all: both (default)",
    )  # fmt: skip
    p.add_argument("--budget", type=float, default=None, help="seconds (default 400; dry 240)")
    p.add_argument(
        "--mean-budget", type=float, default=None,
        help="seconds for part mean, counted from its start (default 180; dry 120)",
    )  # fmt: skip
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5)")
    p.add_argument("--skip-pallas", action="store_true", help="XLA timings only (no kernels)")
    p.add_argument(
        "--route-mode", default="sum", choices=("sum", "each"),
        help="route_mode of the mean (default sum: every route's map, summed)",
    )  # fmt: skip
    args = p.parse_args(argv)
    dry = args.dry_run
    reps = args.reps or (2 if dry else 5)
    device = str(jax.devices()[0].device_kind) if jax.devices() else "?"
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    if not dry and jax.default_backend() != "gpu":
        print("WARNING: no GPU backend; pass --dry-run to use the Pallas interpreter on CPU")
    if args.part in ("all", "scan"):
        scan_part(args, Budget(args.budget or (240.0 if dry else 400.0)), reps, device)
    if args.part in ("all", "mean"):
        budget = Budget(args.mean_budget or (120.0 if dry else 180.0), time.perf_counter())
        implementation = "xla" if args.skip_pallas else None
        cfg, rows = mean_part(budget, dry, reps, args.route_mode, implementation)
        mean_summary(cfg, rows, device)


if __name__ == "__main__":
    main()
