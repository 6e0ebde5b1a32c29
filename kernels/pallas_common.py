"""What the Pallas selective scan's kernels share: the platforms, the block sizes, the reference.

The scan computes, for channel d of group g(d), state index n and time t (Δ = ``dt`` is the
final step size, bias and softplus already applied)::

    h_t[d, n] = exp(Δ_t[d] A[d, n]) h_{t-1}[d, n] + Δ_t[d] B_t[g(d), n] u_t[d],   h_0 = 0
    y_t[d]    = Σ_n C_t[g(d), n] h_t[d, n]

without the D skip (``selective_scan`` adds it).  :func:`scan_ref` is the pure-jnp reference
the kernels must equal; :class:`BlockSizes` the frozen tile configuration the Triton and TPU
kernels read (validated when built), with ``get_default()``; the Mosaic GPU kernels
(``"gpu_mosaic"``) take their tile from n (:func:`jaxmamba.kernels.pallas_mosaic.tile_len`).
:data:`PLATFORMS`: ``"gpu"`` (Triton), ``"gpu_mosaic"`` (Mosaic GPU), ``"tpu"`` (Mosaic TPU).
Letters: b batch, g group, d channel, dg = d / g channels per group, n state, l time.

>>> BlockSizes(block_d=32).block_d, BlockSizes.get_default(1).tiles_n1
(32, True)
>>> BlockSizes(block_d=24)
Traceback (most recent call last):
...
jaxmamba.errors.ScanError: BlockSizes.block_d must be a power of 2, got 24
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
from jax import lax

from jaxmamba.errors import ScanError
from jaxmamba.kernels.selective_scan import scan_plain

__all__ = ["F32", "PLATFORMS", "BlockSizes", "iota", "next_pow2", "scan_ref"]

PLATFORMS = ("gpu", "gpu_mosaic", "tpu")  # Triton, Mosaic GPU, Mosaic TPU
F32 = jnp.float32

_POW2 = ("block_d", "block_l", "chunk", "block_d_bwd", "num_warps", "num_warps_bwd", "align_l")
_FLAGS = ("prefetch", "tiles_n1")


def _is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def next_pow2(x: int) -> int:
    """The smallest power of two ``>= x`` (1 for ``x <= 1``).

    >>> next_pow2(1), next_pow2(5), next_pow2(16)
    (1, 8, 16)
    """
    return 1 << max(0, math.ceil(math.log2(max(x, 1))))


def iota(shape, axis):
    """int32 indices along ``axis`` of an array of ``shape`` (in a kernel)."""
    return lax.broadcasted_iota(jnp.int32, shape, axis)


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Block sizes of the Pallas selective scan; the results do not depend on them.

    GPU (powers of two): ``block_d`` channels per forward program, ``block_l`` time steps per
    forward tile, ``chunk`` steps between saved states (a multiple of ``block_l``; the backward
    recomputes one chunk in registers), ``block_d_bwd`` channels per backward program,
    ``num_warps`` / ``num_warps_bwd`` / ``num_stages`` (a positive int) for Triton.
    ``align_l``: the GPU path zero-pads the sequence to a multiple of ``align_l`` (1: never) so
    that every row of u, Δ, dy starts 16-byte aligned; with unaligned rows (l = 49) Triton picks
    scalar loads and a layout that computes every state 4 times per thread.
    ``prefetch``: the GPU forward loads the next tile before computing the current one.
    ``tiles_n1``: for n = 1, GPU kernels that compute decays, inputs, outputs and gradients on
    whole tiles, so that the sequential loop only carries the state (2 column extractions per
    step instead of 4 in the forward, 4 instead of 6 plus the exponentials in the backward).
    TPU: ``tpu_block_d`` channels per block (a multiple of 8; a group with fewer channels is one
    block), ``tpu_block_l`` sequence tile (a multiple of 128; also the saved-state stride).

    Every field is checked when the value is built: a :class:`ScanError` names the field.
    """

    block_d: int = 16
    block_l: int = 8
    chunk: int = 8
    block_d_bwd: int = 16
    num_warps: int = 1
    num_warps_bwd: int = 1
    num_stages: int = 3
    tpu_block_d: int = 128
    tpu_block_l: int = 128
    align_l: int = 4
    prefetch: bool = False
    tiles_n1: bool = False

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def get_default(cls, n: int = 1, l: int | None = None) -> BlockSizes:
        """Defaults for state size ``n`` and sequence length ``l`` (None: long).

        n = 1: the whole-tile kernels (``tiles_n1``) with one-warp programs and 16-step tiles
        and chunks; 16 channels per program, 8 when l ≤ 256 (more programs when each is
        short): the fastest forward+backward settings of the H100 and H200 sweeps at VMamba-T's
        stages (see ``benchmarks/results/gpu_check_h100_run4.log`` and
        ``benchmarks/results/gpu_check_h200_run3.log``).
        """
        if n <= 1:
            bd = 8 if l is not None and l <= 256 else 16
            return cls(block_d=bd, block_l=16, chunk=16, block_d_bwd=bd, tiles_n1=True)
        return cls(
            block_d=16, block_l=8, chunk=8, block_d_bwd=16, num_warps=2, num_warps_bwd=2,
            num_stages=2,
        )  # fmt: skip

    def validate(self) -> None:
        """Raise :class:`ScanError` naming the first field that is out of its range."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in _FLAGS:
                if not isinstance(v, bool):
                    raise ScanError(f"BlockSizes.{f.name} must be True or False, got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ScanError(f"BlockSizes.{f.name} must be a positive int, got {v!r}")
        for name in _POW2:
            if not _is_pow2(getattr(self, name)):
                raise ScanError(
                    f"BlockSizes.{name} must be a power of 2, got {getattr(self, name)}"
                )
        if self.chunk % self.block_l:
            raise ScanError(
                f"BlockSizes.chunk={self.chunk} must be a multiple of block_l={self.block_l}"
            )
        if self.tpu_block_d % 8:
            raise ScanError(
                f"BlockSizes.tpu_block_d must be a multiple of 8, got {self.tpu_block_d}"
            )
        if self.tpu_block_l % 128:
            raise ScanError(
                f"BlockSizes.tpu_block_l must be a multiple of 128, got {self.tpu_block_l}"
            )


def scan_ref(u, dt, A, B, C):
    """Pure-jnp step-by-step reference of the Pallas scan: ``Σ_n C_t h_t``, ``(b, d, l)``
    float32.

    >>> import jax.numpy as jnp
    >>> u = jnp.ones((1, 2, 5)); dt = jnp.full((1, 2, 5), 0.5)
    >>> scan_ref(u, dt, -jnp.ones((2, 1)), jnp.ones((1, 1, 1, 5)), jnp.ones((1, 1, 1, 5))).shape
    (1, 2, 5)
    """
    return scan_plain(*(x.astype(F32) for x in (u, dt, A, B, C)))
