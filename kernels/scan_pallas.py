"""Pallas selective scan, forward and backward, for GPU (Mosaic GPU or Triton) and TPU (Mosaic).

:func:`scan` is the public jitted entry point: it checks the inputs, picks the backend's
kernels (:mod:`jaxmamba.kernels.pallas_mosaic`, :mod:`jaxmamba.kernels.pallas_gpu`,
:mod:`jaxmamba.kernels.pallas_tpu`) and wires them into a ``jax.custom_vjp``; :func:`scan_ref`
(the pure-jnp reference the kernels must equal) and :class:`BlockSizes` come from
:mod:`jaxmamba.kernels.pallas_common`.  The recurrence, without the D skip (``selective_scan``
adds it)::

    h_t[d, n] = exp(Δ_t[d] A[d, n]) h_{t-1}[d, n] + Δ_t[d] B_t[g(d), n] u_t[d],   h_0 = 0
    y_t[d]    = Σ_n C_t[g(d), n] h_t[d, n]

Shapes: u, dt ``(b, d, l)``; A ``(d, n)``; B, C ``(b, g, n, l)``; y ``(b, d, l)`` float32.
Inputs may be float32, bfloat16 or float16: the kernels cast to float32 on chip and accumulate
in float32.

Backward (``jax.custom_vjp``): the forward also writes the state entering every chunk of
``chunk`` steps (Triton), every tile of ``pallas_mosaic.tile_len(n)`` steps (Mosaic GPU) or
every sequence tile (TPU).  The backward walks the chunks in reverse, recomputes the chunk's
states from its boundary state (registers with Triton, an SMEM scratch with Mosaic GPU, a VMEM
scratch on TPU) and runs the adjoint recurrence ``g_t = C_t dy_t + exp(Δ_{t+1} A) g_{t+1}``.
It never divides by a decay (exp(Δ A) may underflow to 0).  dB, dC (sums over the channels of
a group) are written as per-channel-block partials and summed in XLA, dA as per-batch
partials: the reduction order is fixed, so gradients are deterministic.

Which kernels (``platform=None``, :func:`choose_platform`, a pure function of the backend, the
JAX version and the device's compute capability): ``"tpu"`` on TPU; ``"gpu_mosaic"`` (Mosaic
GPU) on a CUDA device of compute capability ≥ 9.0 (Hopper and newer: Mosaic GPU's kernels use
the TMA and warpgroups) with JAX ≥ 0.11, where the Triton backend of Pallas is deprecated and
Mosaic GPU is the supported one; ``"gpu"`` (Triton) on older GPUs or older JAX, and on CPU
(the interpreter runs the Triton-style kernels fastest).  Asking for ``platform="gpu"``
explicitly, compiled, on JAX ≥ 0.11 gives a ``DeprecationWarning`` that names Mosaic GPU.
``platform=None`` follows that rule once :data:`MOSAIC_GPU_DEFAULT` is on; until the Mosaic GPU
kernels have run on a GPU it keeps the Triton ones where the rule says ``"gpu_mosaic"``.

Route permutations (VMamba's cross-scan) are not fused into the kernels' indexing: gathered
loads would break the contiguous tiles along l that the kernels rely on.

Exactness: the forward is the same float32 recurrence as :func:`scan_ref` step for step (only
the reduction order over n differs); gradients agree with ``jax.grad`` of the reference to
float32 rounding.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp

from jaxmamba.errors import ScanError
from jaxmamba.kernels import pallas_gpu, pallas_mosaic, pallas_tpu
from jaxmamba.kernels.pallas_common import PLATFORMS, BlockSizes, scan_ref

__all__ = [
    "MOSAIC_GPU_MIN_CC",
    "MOSAIC_GPU_MIN_JAX",
    "PLATFORMS",
    "TRITON_DEPRECATION",
    "BlockSizes",
    "choose_platform",
    "default_platform",
    "scan",
    "scan_ref",
    "triton_deprecated",
]

_KERNELS = {"gpu": pallas_gpu, "gpu_mosaic": pallas_mosaic, "tpu": pallas_tpu}
MOSAIC_GPU_MIN_JAX = (0, 11)  # from here on Pallas's Triton backend is deprecated
MOSAIC_GPU_MIN_CC = (9, 0)  # Hopper: the TMA copies and warpgroups of the Mosaic GPU kernels
# Whether platform=None takes the Mosaic GPU kernels where choose_platform picks them.  Off until
# benchmarks/gpu_check.sh has compiled and checked them on a GPU: they were written and checked
# in Mosaic GPU's interpreter and by lowering for CUDA only (benchmarks/results/pallas_mosaic.md);
# until then platform=None keeps the Triton kernels, which were checked on an H100.
MOSAIC_GPU_DEFAULT = False
TRITON_DEPRECATION = (
    "the Triton backend of Pallas is deprecated from JAX 0.11 (to be removed); Mosaic GPU is "
    "the supported GPU backend: use platform='gpu_mosaic' (CUDA compute capability >= 9.0)"
)


@dataclasses.dataclass(frozen=True)
class _Config:
    platform: str
    interpret: bool
    block_sizes: BlockSizes


def _fwd_impl(cfg: _Config, u, dt, A, B, C, save):
    f = _KERNELS[cfg.platform].scan_fwd
    return f(u, dt, A, B, C, bs=cfg.block_sizes, interpret=cfg.interpret, save=save)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan_core(cfg: _Config, u, dt, A, B, C):
    return _fwd_impl(cfg, u, dt, A, B, C, save=False)[0]


def _scan_core_fwd(cfg: _Config, u, dt, A, B, C):
    y, hs = _fwd_impl(cfg, u, dt, A, B, C, save=True)
    return y, (u, dt, A, B, C, hs)


def _scan_core_bwd(cfg: _Config, res, dy):
    u, dt, A, B, C, hs = res
    f = _KERNELS[cfg.platform].scan_bwd
    grads = f(u, dt, A, B, C, hs, dy, bs=cfg.block_sizes, interpret=cfg.interpret)
    return tuple(gx.astype(x.dtype) for gx, x in zip(grads, (u, dt, A, B, C), strict=True))


_scan_core.defvjp(_scan_core_fwd, _scan_core_bwd)

_FLOATS = (jnp.float32, jnp.bfloat16, jnp.float16)


def _check(u, dt, A, B, C):
    if u.ndim != 3:
        raise ScanError(f"u must be (b, d, l), got shape {u.shape}")
    b, d, l = u.shape
    if dt.shape != u.shape:
        raise ScanError(f"dt must have u's shape {u.shape}, got {dt.shape}")
    if A.ndim != 2 or A.shape[0] != d:
        raise ScanError(f"A must be (d, n) = ({d}, n), got {A.shape}")
    n = A.shape[1]
    if B.ndim != 4 or B.shape[0] != b or B.shape[2:] != (n, l):
        raise ScanError(f"B must be (b, g, n, l) = ({b}, g, {n}, {l}), got {B.shape}")
    if C.shape != B.shape:
        raise ScanError(f"C must have B's shape {B.shape}, got {C.shape}")
    if d % B.shape[1]:
        raise ScanError(f"B, C have g={B.shape[1]} groups, which does not divide d={d}")
    for name, x in (("u", u), ("dt", dt), ("A", A), ("B", B), ("C", C)):
        if x.dtype not in _FLOATS:
            raise ScanError(f"{name} must be float32, bfloat16 or float16, got {x.dtype}")


def _version(v: str | None) -> tuple[int, ...]:
    """``"9.0"`` → ``(9, 0)``; None or anything else that is not dotted digits → ``(0,)``."""
    parts = (v or "").split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (0,)


def choose_platform(
    backend: str, jax_version: tuple[int, ...], compute_capability: str | None = None
) -> str:
    """The kernels ``platform=None`` picks, from the backend (``jax.default_backend()``), the
    JAX version (``jax.__version_info__``) and the first device's compute capability
    (``"9.0"``; None off CUDA).

    >>> choose_platform("tpu", (0, 11, 0)), choose_platform("cpu", (0, 11, 0))
    ('tpu', 'gpu')
    >>> choose_platform("gpu", (0, 11, 0), "9.0"), choose_platform("gpu", (0, 11, 0), "8.0")
    ('gpu_mosaic', 'gpu')
    >>> choose_platform("gpu", (0, 10, 2), "10.0")
    'gpu'
    """
    if backend == "tpu":
        return "tpu"
    if (
        backend in ("gpu", "cuda")
        and tuple(jax_version[:2]) >= MOSAIC_GPU_MIN_JAX
        and _version(compute_capability) >= MOSAIC_GPU_MIN_CC
    ):
        return "gpu_mosaic"
    return "gpu"


def triton_deprecated(platform: str, interpret: bool, jax_version: tuple[int, ...]) -> bool:
    """Whether asking for ``platform`` gives :data:`TRITON_DEPRECATION`: the compiled Triton
    kernels on JAX ≥ 0.11 (the interpreter does not use Triton).

    >>> triton_deprecated("gpu", False, (0, 11, 0)), triton_deprecated("gpu", True, (0, 11, 0))
    (True, False)
    >>> triton_deprecated("gpu", False, (0, 10, 2)), triton_deprecated("gpu_mosaic", False, (0, 11))
    (False, False)
    """
    return platform == "gpu" and not interpret and tuple(jax_version[:2]) >= MOSAIC_GPU_MIN_JAX


def default_platform() -> str:
    """:func:`choose_platform` for this process's backend, JAX and first device; the Triton
    kernels instead of the Mosaic GPU ones while :data:`MOSAIC_GPU_DEFAULT` is off."""
    cc = getattr(jax.devices()[0], "compute_capability", None)
    chosen = choose_platform(jax.default_backend(), jax.__version_info__, cc)
    return "gpu" if chosen == "gpu_mosaic" and not MOSAIC_GPU_DEFAULT else chosen


def _platform(platform: str | None, interpret: bool) -> str:
    if platform is None:
        return default_platform()
    if platform not in PLATFORMS:
        raise ScanError(f"platform must be one of {PLATFORMS} or None, got {platform!r}")
    if triton_deprecated(platform, interpret, jax.__version_info__):
        warnings.warn(TRITON_DEPRECATION, DeprecationWarning, stacklevel=4)
    return platform


@functools.partial(jax.jit, static_argnames=("interpret", "block_sizes", "platform"))
def scan(u, dt, A, B, C, *, interpret: bool = False, block_sizes=None, platform=None):
    """Pallas selective scan ``Σ_n C_t h_t`` (no D skip), differentiable in all inputs.

    Args:
      u, dt: ``(b, d, l)``; dt is the final Δ (> 0).
      A: ``(d, n)`` (< 0).
      B, C: ``(b, g, n, l)``; channel d uses group ``d // (d / g)``.
      interpret: run the kernels in the Pallas interpreter (CPU).
      block_sizes: :class:`BlockSizes` (default ``BlockSizes.get_default(n, l)``).
      platform: ``"gpu_mosaic"`` (Mosaic GPU kernels), ``"gpu"`` (Triton-style kernels),
        ``"tpu"`` (Mosaic TPU kernels) or ``None`` (:func:`default_platform`: Mosaic GPU on a
        CUDA device of compute capability ≥ 9.0 with JAX ≥ 0.11 once :data:`MOSAIC_GPU_DEFAULT`
        is on, TPU on TPU, else Triton-style, also for the interpreter on CPU).

    Returns:
      y: ``(b, d, l)`` float32.

    >>> import jax.numpy as jnp
    >>> u = jnp.ones((1, 2, 5)); dt = jnp.full((1, 2, 5), 0.5); Bc = jnp.ones((1, 1, 1, 5))
    >>> scan(u, dt, -jnp.ones((2, 1)), Bc, Bc, interpret=True).shape
    (1, 2, 5)
    """
    _check(u, dt, A, B, C)
    bs = block_sizes if block_sizes is not None else BlockSizes.get_default(A.shape[1], u.shape[-1])
    if not isinstance(bs, BlockSizes):
        raise ScanError(f"block_sizes must be a BlockSizes, got {type(bs).__name__}")
    bs.validate()
    cfg = _Config(_platform(platform, interpret), bool(interpret), bs)
    l = u.shape[-1]
    lp = -(-l // bs.align_l) * bs.align_l if cfg.platform == "gpu" else l
    if lp == l:
        return _scan_core(cfg, u, dt, A, B, C)
    # Padding steps (Δ = u = B = C = 0) leave the state unchanged; autodiff slices the grads.
    pad = lambda x: jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, lp - l)])
    return _scan_core(cfg, pad(u), pad(dt), A, pad(B), pad(C))[..., :l]
