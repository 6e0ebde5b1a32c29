"""Order values: what every ``order=`` argument becomes.

:class:`Order` is a hard order, hashable and static under ``jit`` (a name, a route array, a
``{(h, w): routes}`` mapping or a callable); :class:`SoftOrder` holds doubly-stochastic route
matrices that ``jit`` traces and gradients flow to; :class:`RouteTable` holds a hard order's routes
on some grids as traced data, so that one compiled program serves every order that pairs its
routes alike. :func:`as_order` turns any accepted spec into one of them. The routes themselves
are built by :mod:`jaxmamba.orders.routes`.

>>> as_order("spiral") == Order("spiral"), as_order(None).name
(True, 'cross')
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import types
import typing
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxmamba.errors import OrderError
from jaxmamba.orders.routes import (
    ORDER_NAMES,
    check_grid,
    make_routes,
    route_groups,
    validate_routes,
)

__all__ = ["Order", "RouteTable", "SoftOrder", "as_order", "is_soft_spec"]


class _ByIdentity:
    """Wraps an object so that it compares and hashes by identity."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def _array_key(arr: np.ndarray) -> tuple[tuple[int, ...], bytes]:
    return tuple(arr.shape), arr.tobytes()


@dataclasses.dataclass(frozen=True)
class Order:
    """A hashable, immutable patch order; equality and hash are by content (its ``key``).

    Build one with :func:`as_order` (or ``Order("cross")`` for a named order).

    Attributes:
      name: display name (an order name, ``"custom"``, or the callable's name).
      key: what equality and hashing use: ``("named", name)``, or the route arrays' bytes, or
        the identity of a callable.

    >>> Order("hilbert") == as_order("hilbert"), Order("hilbert").num_routes(7, 7)
    (True, 4)
    """

    name: str = dataclasses.field(compare=False)
    key: tuple = dataclasses.field(default=(), repr=False)
    _source: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            if self.name not in ORDER_NAMES:
                raise OrderError(
                    f"unknown order {self.name!r}; known orders: {', '.join(ORDER_NAMES)}"
                )
            object.__setattr__(self, "key", ("named", self.name))
        elif (
            self.key[0] not in ("named", "array", "mapping", "callable")
            or (self.key[0] != "named" and self._source is None)
            or (self.key[0] == "named" and self.key[1:] not in [(n,) for n in ORDER_NAMES])
        ):
            raise OrderError(
                f"invalid Order key {self.key[:1]!r}; build custom orders with as_order"
            )

    def routes(self, h: int, w: int) -> np.ndarray:
        """Validated, cached read-only int32 routes ``(K, h * w)`` of this order on ``h x w``."""
        h, w = check_grid(h, w)
        return _order_routes(self, h, w)

    def num_routes(self, h: int, w: int) -> int:
        """Number of routes K on an ``h x w`` grid."""
        return int(self.routes(h, w).shape[0])

    def fingerprint(self, grids) -> str:
        """A content digest of the routes on ``grids`` ``[(h, w), ...]`` (what a resumed run or a
        study must match; the same for two orders that scan those grids alike).

        >>> same = as_order(make_routes("cross", 4, 4))
        >>> Order("cross").fingerprint([(4, 4)]) == same.fingerprint([(4, 4)])
        True
        """
        digest = hashlib.sha256()
        for h, w in sorted({(int(h), int(w)) for h, w in grids}):
            digest.update(
                f"{h}x{w}:".encode() + np.ascontiguousarray(self.routes(h, w), "<i8").tobytes()
            )
        return digest.hexdigest()[:16]


# A hard order is a pytree without leaves: jit sees it in the tree structure, as a static value.
jax.tree_util.register_pytree_node(Order, lambda o: ((), o), lambda o, _: o)


@jax.tree_util.register_pytree_node_class
class SoftOrder:
    """Soft routes: per grid ``(h, w)``, ``K`` doubly-stochastic ``(L, L)`` matrices.

    ``routes(h, w)[k, t, s]`` is the weight of patch ``s`` at scan position ``t`` of route ``k``;
    a hard route is the special case of a permutation matrix. A ``SoftOrder`` is a pytree whose
    leaves are the matrices, so ``jit`` traces them and gradients flow to them (for example to
    Sinkhorn logits, :mod:`jaxmamba.orders.soft`); its grids are static. Build one with
    :func:`as_order` from ``{(h, w): (K, L, L) float array}``; every function that takes
    ``order=`` accepts it.

    >>> import jax.numpy as jnp
    >>> o = as_order({(2, 2): jnp.eye(4)[None]})
    >>> o.name, o.grids, o.routes(2, 2).shape
    ('soft', ((2, 2),), (1, 4, 4))
    """

    name = "soft"

    def __init__(self, grids: tuple[tuple[int, int], ...], matrices: tuple) -> None:
        self.grids = tuple(grids)
        self.matrices = tuple(matrices)

    def routes(self, h: int, w: int):
        """The ``(K, h·w, h·w)`` soft routes of grid ``h x w``."""
        h, w = check_grid(h, w)
        if (h, w) not in self.grids:
            raise OrderError(f"soft routes have no grid {h}x{w}; they have {list(self.grids)}")
        return self.matrices[self.grids.index((h, w))]

    def num_routes(self, h: int, w: int) -> int:
        """Number of routes K on an ``h x w`` grid."""
        return int(self.routes(h, w).shape[0])

    def fingerprint(self, grids=None) -> str:
        """A content digest of the matrices (of ``grids``, default all; concrete values only)."""
        digest = hashlib.sha256()
        for g in sorted(self.grids if grids is None else {tuple(map(int, g)) for g in grids}):
            value = np.ascontiguousarray(np.asarray(self.routes(*g), np.float32), "<f4")
            digest.update(f"{g[0]}x{g[1]}:".encode() + value.tobytes())
        return "soft:" + digest.hexdigest()[:16]

    def tree_flatten(self):
        return self.matrices, self.grids

    @classmethod
    def tree_unflatten(cls, grids, matrices):
        return cls(grids, matrices)

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{h}x{w}: {tuple(np.shape(m))}"
            for (h, w), m in zip(self.grids, self.matrices, strict=True)
        )
        return f"SoftOrder({shapes})"


@jax.tree_util.register_pytree_node_class
class RouteTable:
    """A hard order's routes on some grids as data: int32 ``(K, L)`` leaves, traced under
    ``jit``, so that one compiled program serves every order of those grids whose routes pair up
    alike (route k' the reverse of route k: the tiled attention's static structure, kept here).
    What is computed is what the :class:`Order` computes (the same gathers, read from an array
    instead of a constant); only compiling is shared: ``jaxmamba demo`` compiles one attention
    program for its four orders, not four.

    >>> a = RouteTable.of("cross", [(2, 2), (4, 4)]); b = RouteTable.of("spiral", [(4, 4), (2, 2)])
    >>> jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    True
    >>> a.routes(4, 4).tolist() == Order("cross").routes(4, 4).tolist(), a.groups(4, 4)
    (True, ((0, 2), (1, 3)))
    """

    def __init__(self, grids, groups, tables, name: str = "table") -> None:
        self.grids, self.route_groups, self.tables = tuple(grids), tuple(groups), tuple(tables)
        self.name = name

    @classmethod
    def of(cls, order, grids) -> RouteTable:
        """The routes of a hard ``order`` on ``grids`` ``[(h, w), ...]``."""
        order = as_order(order)
        if not isinstance(order, Order):
            raise OrderError(f"a RouteTable holds hard routes; got {order!r}")
        grids = sorted({check_grid(*g) for g in grids})
        tables = [np.asarray(order.routes(*g), np.int32) for g in grids]
        return cls(grids, [route_groups(t) for t in tables], tables, order.name)

    def _index(self, h: int, w: int) -> int:
        h, w = check_grid(h, w)
        if (h, w) not in self.grids:
            raise OrderError(f"the route table has no grid {h}x{w}; it has {list(self.grids)}")
        return self.grids.index((h, w))

    def routes(self, h: int, w: int):
        """The ``(K, h·w)`` int32 routes of grid ``h x w`` (traced under ``jit``)."""
        return self.tables[self._index(h, w)]

    def groups(self, h: int, w: int) -> tuple[tuple[int, ...], ...]:
        """Routes paired with their reverse on grid ``h x w`` (:func:`route_groups`)."""
        return self.route_groups[self._index(h, w)]

    def num_routes(self, h: int, w: int) -> int:
        """Number of routes K on an ``h x w`` grid."""
        return int(self.routes(h, w).shape[0])

    def tree_flatten(self):  # the name is not part of the structure: one program for all
        return self.tables, (self.grids, self.route_groups)

    @classmethod
    def tree_unflatten(cls, aux, tables):
        return cls(aux[0], aux[1], tables)

    def __repr__(self) -> str:
        return f"RouteTable({self.name}: {', '.join(f'{h}x{w}' for h, w in self.grids)})"


def is_soft_spec(spec: Any) -> bool:
    """Whether ``spec`` is soft routes: a :class:`SoftOrder` or ``{(h, w): (K, L, L) float}``.

    >>> import numpy as np
    >>> is_soft_spec({(2, 2): np.eye(4)[None]}), is_soft_spec({(2, 2): [[0, 1, 2, 3]]})
    (True, False)
    """
    if isinstance(spec, SoftOrder):
        return True
    if not isinstance(spec, Mapping) or not spec:
        return False
    return all(
        hasattr(v, "dtype") and np.ndim(v) == 3 and np.issubdtype(np.dtype(v.dtype), np.floating)
        for v in spec.values()
    )


def _soft_order(spec: Mapping) -> SoftOrder:
    grids, matrices = [], []
    for key in sorted(spec, key=lambda g: tuple(g) if isinstance(g, tuple) else (0, 0)):
        if not (isinstance(key, tuple) and len(key) == 2):
            raise OrderError(f"soft routes must be keyed by grid (h, w), got {key!r}")
        h, w = check_grid(*key)
        value = spec[key]
        shape = tuple(value.shape)
        if len(shape) != 3 or shape[1:] != (h * w, h * w) or shape[0] < 1:
            raise OrderError(
                f"soft routes of grid {h}x{w} must be (K, {h * w}, {h * w}), got {shape}"
            )
        grids.append((h, w))
        matrices.append(value)
    return SoftOrder(tuple(grids), tuple(matrices))


@functools.lru_cache(maxsize=256)
def _order_routes(order: Order, h: int, w: int) -> np.ndarray:
    kind = order.key[0]
    src = order._source
    if kind == "named":
        return make_routes(order.key[1], h, w)
    if kind == "array":
        if src.shape[1] != h * w:
            raise OrderError(
                f"routes have L={src.shape[1]} positions but the grid {h}x{w} has {h * w} cells"
            )
        return src
    if kind == "mapping":
        if (h, w) not in src:
            raise OrderError(f"no routes for grid {(h, w)}; available grids: {sorted(src)}")
        return src[(h, w)]
    try:
        return validate_routes(src(h, w), h, w)
    except OrderError as e:
        raise OrderError(f"order {order.name!r} on grid {h}x{w}: {e}") from None


def _mapping_order(spec: Mapping) -> Order:
    table: dict[tuple[int, int], np.ndarray] = {}
    for grid, routes in spec.items():
        if not (isinstance(grid, tuple) and len(grid) == 2):
            raise OrderError(f"mapping keys must be (h, w) grid tuples, got {grid!r}")
        h, w = check_grid(*grid)
        try:
            table[(h, w)] = validate_routes(routes, h, w)
        except OrderError as e:
            raise OrderError(f"routes for grid {(h, w)}: {e}") from None
    if not table:
        raise OrderError("a mapping order needs routes for at least one grid")
    key = ("mapping",) + tuple((g, *_array_key(table[g])) for g in sorted(table))
    return Order("custom", key, types.MappingProxyType(table))


@typing.overload
def as_order(spec: RouteTable) -> RouteTable: ...
@typing.overload
def as_order(spec: str) -> Order: ...
@typing.overload
def as_order(spec: Any = None) -> Order | SoftOrder: ...
def as_order(spec: Any = None) -> Order | SoftOrder | RouteTable:
    """Turn an order spec into an :class:`Order` (hard) or a :class:`SoftOrder`.

    Args:
      spec: ``None`` (-> ``"cross"``); an :class:`Order`, :class:`SoftOrder` or
        :class:`RouteTable` (returned as is);
        a name in :data:`ORDER_NAMES`; a mapping ``{(h, w): routes (K, h*w)}``; one 2-D array
        ``(K, L)`` used on every grid with ``h * w == L``; a callable ``(h, w) -> routes
        (K, h*w)`` (hashed by identity, its output validated); or soft routes
        ``{(h, w): (K, L, L) float array}`` (a :class:`SoftOrder`, traced under ``jit``).

    Returns:
      The order: hashable and static under ``jit`` when hard, a pytree of arrays when soft.

    >>> as_order([[0, 1, 2, 3]]).routes(2, 2).tolist()
    [[0, 1, 2, 3]]
    """
    if spec is None:
        return Order("cross")
    if isinstance(spec, Order | SoftOrder | RouteTable):
        return spec
    if is_soft_spec(spec):
        return _soft_order(spec)
    if isinstance(spec, str):
        if spec not in ORDER_NAMES:
            raise OrderError(f"unknown order {spec!r}; known orders: {', '.join(ORDER_NAMES)}")
        return Order(spec)
    if isinstance(spec, Mapping):
        return _mapping_order(spec)
    if isinstance(spec, np.ndarray | list | tuple):
        try:
            arr = np.asarray(spec)
        except (ValueError, TypeError) as e:
            raise OrderError(f"routes are not a rectangular array: {e}") from None
        if arr.ndim != 2:
            raise OrderError(f"an array order must be 2-D (K, L), got shape {arr.shape}")
        routes = validate_routes(arr, 1, max(arr.shape[1], 1))
        return Order("custom", ("array", *_array_key(routes)), routes)
    if callable(spec):
        name = getattr(spec, "__name__", type(spec).__name__)
        return Order(str(name), ("callable", _ByIdentity(spec)), spec)
    raise OrderError(
        f"cannot make an order from {type(spec).__name__}; expected None, an Order, a name in "
        f"{ORDER_NAMES}, a {{(h, w): routes}} mapping, a (K, L) array, or a callable (h, w)"
    )
