"""What an attention mean will cost before it runs: FLOPs, time and memory, predicted.

The time of :func:`~jaxmamba.attention.mean.attention_mean` per image is modelled as its two
FLOP counts, each at a fixed share of this machine's float32 matmul rate::

    seconds per image ≈ forward FLOPs / (FORWARD_SHARE · rate) + map FLOPs / (MAP_SHARE · rate)

where the map FLOPs are the floor of exact extraction (the multiply-adds of the causal half of
every route's map, ``Σ_blocks K · L(L+1)/2 · D · N · 2``: they grow as L² per block) and the
forward FLOPs those of the model's weights (``2 · weights · positions``, linear in L).  Memory is
the step's XLA buffers: the parameters, the running sums (one ``L × L`` map per block), the maps
of one step (at most :data:`~jaxmamba.attention.sizes.STEP_BYTES` per block group, whatever the
batch) and the forward pass's activations, which grow with the batch.  The two shares are
least-squares coefficients, not efficiencies (the forward FLOPs are a crude count, so its share
absorbs per-step overheads): they were fitted (least squares of the relative error) to every
row of ``python benchmarks/scaling.py`` on a 2-core CPU and the activation factor to its memory;
its table shows prediction and measurement side by side (``benchmarks/results/scaling_cpu.txt``).
On another machine the prediction is a rough guide.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxmamba.attention.options import DEFAULT_OPTIONS, AttentionOptions
from jaxmamba.attention.sizes import map_shape, scans_at_once, step_images
from jaxmamba.models.model import Model, select_blocks
from jaxmamba.models.vim_config import VimConfig

__all__ = [
    "FORWARD_SHARE",
    "MAP_SHARE",
    "Cost",
    "matmul_rate",
    "mean_cost",
]

FORWARD_SHARE = 0.23  # fitted: see the module docstring
MAP_SHARE = 0.25
ACTIVATION_FACTOR = 17.0  # forward activation bytes per image / (Σ_stages L · dim · 4)


@dataclasses.dataclass(frozen=True)
class Cost:
    """FLOPs and bytes of one image, and of a step of ``batch`` images, of an attention mean.

    Attributes:
      map_flops: the extraction's FLOP floor per image (causal half of every route's map).
      forward_flops: the forward pass's FLOPs per image (2 · weights · positions).
      param_bytes, sum_bytes: the parameters and the running sums (one map per block).
      step_bytes: the maps made in one step (bounded, whatever the batch).
      activation_bytes: the forward pass's activations per image (an estimate).
      batch: images per step.
    """

    map_flops: float
    forward_flops: float
    param_bytes: int
    sum_bytes: int
    step_bytes: int
    activation_bytes: int
    batch: int

    def seconds_per_image(self, rate: float) -> float:
        """Predicted seconds per image at a float32 matmul ``rate`` (FLOP/s)."""
        return (self.forward_flops / FORWARD_SHARE + self.map_flops / MAP_SHARE) / rate

    @property
    def peak_bytes(self) -> int:
        """Predicted peak memory of one step (parameters, sums, maps, activations)."""
        return (self.param_bytes + self.sum_bytes + self.step_bytes
                + self.batch * self.activation_bytes)  # fmt: skip

    def describe(self, images: int, rate: float, runs: int = 1) -> str:
        """One line: predicted time of ``runs`` means over ``images`` images, and peak memory.

        >>> c = Cost(1e9, 1e9, 0, 0, 0, 0, 8)
        >>> "about 8 s for 100 images" in c.describe(100, 1e11)
        True
        """
        seconds = self.seconds_per_image(rate) * images * runs
        return (
            f"predicted (FLOP model at {rate / 1e9:.0f} GFLOP/s matmul): about "
            f"{_duration(seconds)} for {images * runs} images (compiling aside), peak memory about "
            f"{_size(self.peak_bytes)}"
        )


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def mean_cost(
    model: Model,
    size: tuple[int, int],
    batch: int,
    *,
    blocks=None,
    options: AttentionOptions = DEFAULT_OPTIONS,
) -> Cost:
    """The :class:`Cost` of an attention mean of ``model`` (its parameters may be abstract,
    ``jax.eval_shape``) over ``size`` ``(H, W)`` images in steps of ``batch``.

    >>> import jaxmamba
    >>> m = jax.eval_shape(lambda: jaxmamba.create_model("vmamba_tiny_s1l8"))
    >>> c = mean_cost(m, (224, 224), 8)
    >>> round(c.map_flops / 1e9, 2), c.sum_bytes // 2**20
    (8.99, 80)
    >>> v = jax.eval_shape(lambda: jaxmamba.create_model("vim_small"))  # 24 layers, L = 197
    >>> round(mean_cost(v, (224, 224), 1).map_flops / 1e9, 2)
    23.01
    """
    config = model.config
    names = select_blocks(config, blocks)
    infos = [config.block(n, size) for n in names]
    k = config.k_routes
    n_state = config.d_state
    map_flops = sum(
        k * b.length * (b.length + 1) / 2 * config.d_inner(b.stage) * n_state * 2 for b in infos
    )
    forward = 0.0
    activations = 0
    params = model.params
    vim = isinstance(config, VimConfig)  # one stage of depth layers, L = M + 1 tokens
    for s in range(config.num_stages):
        gh, gw = config.stage_grid(s, *size)
        keys = [f"layers_{s}"]
        if isinstance(config, VimConfig):
            keys = [f"layers_{i}" for i in range(config.depth)]
        weights = sum(int(np.prod(x.shape)) for x in jax.tree.leaves([params[k] for k in keys]))
        positions = gh * gw + vim
        forward += 2.0 * weights * positions
        activations += positions * config.dims[s] * 4
    first = config.stage_grid(0, *size)
    other = sum(int(np.prod(x.shape)) for key, x in params.items() if not key.startswith("layers_")
                for x in jax.tree.leaves(x))  # fmt: skip
    forward += 2.0 * other * first[0] * first[1]
    c = 1 if isinstance(options.channels, str) else len(options.channels)
    kk = k if options.route_mode == "each" else 1
    sums = sum(int(np.prod(map_shape(b, k, options))) * 4 for b in infos)
    step = 0
    for grid in dict.fromkeys(b.grid for b in infos):  # mean.py's steps, extract.py's scans
        group = [b for b in infos if b.grid == grid]
        l2 = group[0].length ** 2 * 4
        scans = step_images(len(group), group[0].length, k, c, batch) * len(group)
        at_once = scans_at_once(scans, k, group[0].length)
        step = max(step, at_once * k * c * l2 + scans * kk * c * l2)  # route maps + outputs
    param_bytes = sum(int(np.prod(x.shape)) * 4 for x in jax.tree.leaves(params))
    return Cost(map_flops, forward, param_bytes, sums, step,
                int(ACTIVATION_FACTOR * activations), batch)  # fmt: skip


def matmul_rate(n: int = 1024, repeats: int = 3) -> float:
    """This machine's float32 matmul rate in FLOP/s: the best of ``repeats`` ``n × n``
    products on the default device (about a tenth of a second on a laptop CPU)."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(a))
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
