"""Patch orders (scan routes): named and user-given permutations, soft (differentiable) routes.

``routes`` holds the route arrays: the named path builders (``make_routes``), their validation,
inverse, printout and reverse pairs (``route_groups``); ``order`` the hashable
``Order``/``SoftOrder`` values every function's ``order=`` takes (``as_order``) and
``RouteTable`` (the routes of every grid of a model, passed to a compiled program as data);
``soft`` the Sinkhorn routes gradients flow through and the hard order nearest to them.

May import: :mod:`jaxmamba.errors` only. Orders are the lowest layer above the errors: models,
attention, studies and views all take them.
"""

from jaxmamba.orders.order import Order, RouteTable, SoftOrder, as_order, is_soft_spec
from jaxmamba.orders.routes import (
    ORDER_NAMES,
    OrderError,
    describe_routes,
    inverse_routes,
    make_routes,
    route_groups,
    validate_routes,
)

__all__ = [
    "ORDER_NAMES", "Order", "OrderError", "RouteTable", "SoftOrder", "as_order",
    "describe_routes", "inverse_routes", "is_soft_spec", "make_routes", "route_groups",
    "validate_routes",
]  # fmt: skip
