"""Attention rollout: the maps of a stage's blocks chained in forward order, the residual path
included, as one map per stage (a Vim model's layers form one stage)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxmamba.errors import AggregateError, ConfigError
from jaxmamba.models.config import parse_block_name
from jaxmamba.models.vim_config import parse_layer_name

__all__ = ["rollout"]


def rollout(maps, stage: int | None = None) -> dict:
    """Attention rollout across the blocks of each stage.

    Each block's map is made non-negative and row-normalised (``Â = |A| / Σ_q |A|``), mixed with
    the identity for the residual path (``M = (Â + I) / 2``), and the blocks of a stage are
    chained in forward order (``R = M_last ⋯ M_first``), rows normalised again.

    Args:
      maps: ``{"layers.i.blocks.j": (..., L, L)}``, e.g. an :class:`~jaxmamba.AttentionMaps`; or
        a Vim model's ``{"layers.i": (..., L, L)}``, whose layers are chained as one stage.
      stage: only this stage (default: every stage present; a Vim model's is 0).

    Returns:
      ``{"layers.i": (..., L, L)}`` per stage; ``{"layers": (..., L, L)}`` for Vim layers.

    >>> import numpy as np
    >>> r = rollout({"layers.0.blocks.0": np.eye(3), "layers.0.blocks.1": np.ones((3, 3))})
    >>> np.allclose(r["layers.0"].sum(-1), 1)
    True
    >>> list(rollout({"layers.0": np.eye(3), "layers.1": np.ones((3, 3))}))
    ['layers']
    """
    by_stage: dict[str, list] = {}
    if maps and all(_is_layer(name) for name in maps):  # Vim layers: one stage, in layer order
        parsed = {name: (0, parse_layer_name(name)) for name in maps}
        prefix = "layers"
    else:
        try:
            parsed = {name: parse_block_name(name) for name in maps}
        except ConfigError as e:
            raise AggregateError(f"rollout needs block or Vim layer maps: {e}") from None
        prefix = ""
    for name in sorted(maps, key=parsed.__getitem__):
        if stage is None or parsed[name][0] == stage:
            key = prefix or f"layers.{parsed[name][0]}"
            by_stage.setdefault(key, []).append(jnp.asarray(maps[name]))
    if not by_stage:
        raise AggregateError(f"no maps of stage {stage} in {sorted(maps)}")
    out = {}
    for key, chain in by_stage.items():
        result = None
        for a in chain:
            a = jnp.abs(a)
            a = a / jnp.maximum(jnp.sum(a, axis=-1, keepdims=True), 1e-30)
            m = 0.5 * (a + jnp.eye(a.shape[-1], dtype=a.dtype))
            result = m if result is None else jnp.matmul(m, result)
        assert result is not None  # every stage in by_stage has a block
        out[key] = result / jnp.sum(result, axis=-1, keepdims=True)
    return out


def _is_layer(name) -> bool:
    try:
        parse_layer_name(name)
    except ConfigError:
        return False
    return True
