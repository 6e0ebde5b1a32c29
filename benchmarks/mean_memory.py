"""The attention mean's step, before and after it stopped holding a batch of maps: XLA's
memory account of each compiled program (shared by ``attention.py`` and ``gpu_check.py``).

"before" is the step ``attention_mean`` ran until maps were made a few images at a time: the
maps of every image of the batch (``compute_maps``), then their weighted sum over the batch, as
that code did it.  "after" is :func:`jaxmamba.attention.mean.mean_step`.  "forward" is
``run_with_cache`` of the same blocks, the memory the scan inputs take before any map.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxmamba.attention.extract import compute_maps
from jaxmamba.attention.mean import mean_step, route_table, zero_sums
from jaxmamba.attention.options import DEFAULT_OPTIONS
from jaxmamba.models.model import apply, cpu_pieces, select_blocks
from jaxmamba.orders import as_order


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7))
def whole_batch_step(model, images, valid, order, names, options, implementation, pieces):
    """The earlier step: all maps of the batch, then their weighted sum, and the count."""
    maps = compute_maps(model, images, order, names, options, implementation, None, pieces)
    w = valid.astype(jnp.float32)
    return {k: jnp.tensordot(w, maps[k], axes=(0, 0)) for k in names}, jnp.sum(valid)


def _bytes(compiled) -> int:
    m = compiled.memory_analysis()
    if m is None:
        return -1
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
            - m.alias_size_in_bytes)  # fmt: skip


def programs(model, batch: int, size: int, blocks=None, implementation=None):
    """The three programs' arguments at ``batch`` images of ``size``²: {name: (fn, args)}."""
    names = select_blocks(model.config, blocks)
    x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    valid = jax.ShapeDtypeStruct((batch,), jnp.bool_)
    table = route_table(model.config, (size, size), None)
    pieces = cpu_pieces(model.config, x.shape)
    infos = tuple(model.config.block(n, (size, size)) for n in names)
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    sums = jax.eval_shape(lambda: zero_sums(model, infos, table, DEFAULT_OPTIONS, mesh))
    opts = DEFAULT_OPTIONS
    return {
        "forward": (apply, (model, x, as_order(None), implementation, frozenset(names), pieces)),
        "before": (whole_batch_step, (model, x, valid, table, names, opts, implementation, pieces)),
        "after": (mean_step, (model, sums, x, valid, table, names, opts, implementation, pieces)),
    }


def step_memory(model, batch: int, size: int, blocks=None, implementation=None) -> dict:
    """XLA's peak bytes (temporaries + arguments + outputs − donated) of each compiled program:
    {"forward", "before", "after"} (compiled, never run: nothing is allocated)."""
    return {
        name: _bytes(fn.lower(*args).compile())
        for name, (fn, args) in programs(model, batch, size, blocks, implementation).items()
    }
