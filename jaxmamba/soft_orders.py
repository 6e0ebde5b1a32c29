"""Differentiable patch orders: soft routes from logits, and the hard order nearest to them.

A hard route is a permutation matrix ``P[t, s] = 1`` if scan position t reads patch s.  A soft
route is a doubly-stochastic ``(L, L)`` matrix, here ``sinkhorn(logits / temperature)`` in log
space, used in place of ``P`` wherever an order is accepted: pass ``{(h, w): (K, L, L)}`` as
``order=`` to :func:`jaxmamba.forward`, :func:`jaxmamba.run_with_cache` or
:func:`jaxmamba.attention.extract_attention`, and take gradients with respect to the logits.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxmamba.orders import OrderError, validate_routes

__all__ = ["sinkhorn", "soft_routes", "hard_routes", "route_logits", "as_soft", "is_soft"]


def sinkhorn(logits, n_iters: int = 30):
    """Doubly-stochastic matrices from ``logits`` ``(..., L, L)`` by log-space Sinkhorn.

    >>> import jax.numpy as jnp
    >>> p = sinkhorn(jnp.zeros((3, 3)))
    >>> bool(jnp.allclose(p.sum(0), 1) and jnp.allclose(p.sum(1), 1))
    True
    """
    log_p = jnp.asarray(logits, jnp.float32)
    for _ in range(n_iters):
        log_p = log_p - jax.nn.logsumexp(log_p, axis=-1, keepdims=True)
        log_p = log_p - jax.nn.logsumexp(log_p, axis=-2, keepdims=True)
    return jnp.exp(log_p)


def soft_routes(logits, temperature: float = 1.0, n_iters: int = 30):
    """Soft routes ``(K, L, L)`` from ordering logits ``(K, L, L)`` (row t = scan position)."""
    return sinkhorn(jnp.asarray(logits) / temperature, n_iters)


def route_logits(routes, scale: float = 5.0):
    """Logits ``(K, L, L)`` whose soft routes start near the hard ``routes`` ``(K, L)``.

    >>> import numpy as np
    >>> from jaxmamba.orders import make_routes
    >>> r = make_routes("cross", 2, 3)
    >>> (hard_routes(soft_routes(route_logits(r))) == r).all()
    True
    """
    routes = np.asarray(routes)
    k, l = routes.shape
    out = np.zeros((k, l, l), np.float32)
    out[np.arange(k)[:, None], np.arange(l)[None], routes] = scale
    return jnp.asarray(out)


def hard_routes(soft) -> np.ndarray:
    """The permutation routes ``(K, L)`` nearest to soft ``(K, L, L)`` ones (linear assignment)."""
    from scipy.optimize import linear_sum_assignment

    soft = np.asarray(soft, np.float64)
    if soft.ndim != 3 or soft.shape[1] != soft.shape[2]:
        raise OrderError(f"soft routes must be (K, L, L), got shape {soft.shape}")
    out = []
    for p in soft:
        rows, cols = linear_sum_assignment(-p)
        route = np.empty(len(rows), np.int64)
        route[rows] = cols
        out.append(route)
    l = soft.shape[1]
    return validate_routes(np.stack(out), 1, l)


def is_soft(order) -> bool:
    """Whether ``order`` is a mapping ``{(h, w): (K, L, L) float array}`` of soft routes."""
    if not isinstance(order, Mapping) or not order:
        return False
    values = list(order.values())
    return all(
        hasattr(v, "dtype") and np.ndim(v) == 3 and jnp.issubdtype(v.dtype, jnp.floating)
        for v in values
    )


def as_soft(order, k_routes: int) -> dict:
    """Validate soft routes and key them ``"hxw"`` (a pytree that jit traces, not hashes)."""
    out = {}
    for key, value in order.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise OrderError(f"soft routes must be keyed by grid (h, w), got {key!r}")
        h, w = map(int, key)
        shape = (k_routes, h * w, h * w)
        if tuple(value.shape) != shape:
            raise OrderError(
                f"soft routes of grid {h}x{w} must be {shape}, got {tuple(value.shape)}"
            )
        out[f"{h}x{w}"] = value
    return out
