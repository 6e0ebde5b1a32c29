"""Differentiable patch orders: soft routes from logits, and the hard order nearest to them.

A hard route is a permutation matrix ``P[t, s] = 1`` if scan position t reads patch s.  A soft
route is a doubly-stochastic ``(L, L)`` matrix, here ``sinkhorn(logits / temperature)`` in log
space, used in place of ``P`` wherever an order is accepted: pass ``{(h, w): (K, L, L)}`` (or
the :class:`~jaxmamba.orders.SoftOrder` that :func:`~jaxmamba.orders.as_order` makes of it) as
``order=`` to :func:`jaxmamba.forward`, :func:`jaxmamba.extract_attention`,
:func:`jaxmamba.verify`, :func:`jaxmamba.attention_mean` or
:func:`jaxmamba.attention.findings.summarize`, and take gradients with respect to the logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmamba.orders import OrderError, validate_routes

__all__ = ["sinkhorn", "soft_routes", "hard_routes", "route_logits"]


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
    >>> bool((hard_routes(soft_routes(route_logits(r))) == r).all())
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
