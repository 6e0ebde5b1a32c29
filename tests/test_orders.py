"""Tests of jaxmamba.orders: patch orders (scan routes) for 2-D grids."""

from __future__ import annotations

import dataclasses
import doctest
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmamba.orders import (
    ORDER_NAMES,
    Order,
    OrderError,
    as_order,
    describe_routes,
    inverse_routes,
    make_routes,
    routes,
    validate_routes,
)
from jaxmamba.orders import order as order_values

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official-vmamba"
FOUR_WAY = ("cross", "diagonal", "morton", "spiral", "zigzag", "hilbert")
EXPECTED_K = {**{n: 4 for n in FOUR_WAY}, "raster": 1, "bidirectional": 2}


def _steps(route: np.ndarray, w: int) -> np.ndarray:
    """Manhattan length of each step of a route."""
    r, c = np.divmod(np.asarray(route, dtype=np.int64), w)
    return np.abs(np.diff(r)) + np.abs(np.diff(c))


def _transposed_route0(name: str, h: int, w: int) -> np.ndarray:
    """Route 0 of `name` on the w x h grid, mapped back to cells of the h x w grid."""
    t = make_routes(name, w, h)[0].astype(np.int64)
    r_t, c_t = t // h, t % h
    return c_t * w + r_t


# ------------------------------------------------------------------------------------------
# General properties
# ------------------------------------------------------------------------------------------


def test_doctests():
    for module, least in ((routes, 7), (order_values, 7)):
        result = doctest.testmod(module)
        assert result.attempted >= least, module.__name__
        assert result.failed == 0, module.__name__


def test_order_names():
    assert ORDER_NAMES == (
        "cross",
        "diagonal",
        "morton",
        "spiral",
        "zigzag",
        "hilbert",
        "raster",
        "bidirectional",
    )


def _check_routes(name: str, h: int, w: int) -> None:
    routes = make_routes(name, h, w)
    size = h * w
    assert routes.shape == (EXPECTED_K[name], size)
    assert routes.dtype == np.int32
    assert not routes.flags.writeable
    for k, route in enumerate(routes):
        assert np.array_equal(np.sort(route), np.arange(size)), (name, h, w, k)
    if EXPECTED_K[name] == 4:
        assert np.array_equal(routes[2], routes[0][::-1])
        assert np.array_equal(routes[3], routes[1][::-1])
        assert np.array_equal(routes[1], _transposed_route0(name, h, w))
    elif name == "bidirectional":
        assert np.array_equal(routes[0], np.arange(size))
        assert np.array_equal(routes[1], np.arange(size)[::-1])
    else:
        assert np.array_equal(routes[0], np.arange(size))


@pytest.mark.parametrize("name", ORDER_NAMES)
@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 24), w=st.integers(1, 24))
def test_routes_are_permutations(name, h, w):
    _check_routes(name, h, w)


@pytest.mark.parametrize("name", ORDER_NAMES)
@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (5, 3), (1, 2), (2, 1)])
def test_routes_on_degenerate_grids(name, hw):
    _check_routes(name, *hw)


def test_routes_cached_and_readonly():
    a = make_routes("hilbert", 7, 9)
    assert make_routes("hilbert", np.int64(7), 9) is a
    with pytest.raises(ValueError):
        a[0, 0] = 1


# ------------------------------------------------------------------------------------------
# cross: VMamba's cross-scan
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(4, 4), (7, 7), (16, 24), (24, 16), (3, 5), (1, 6), (6, 1)])
def test_cross_matches_formula(hw):
    h, w = hw
    size = h * w
    t = np.arange(size)
    pi0 = t
    pi1 = (t % h) * w + t // h
    expected = np.stack([pi0, pi1, pi0[size - 1 - t], pi1[size - 1 - t]])
    np.testing.assert_array_equal(make_routes("cross", h, w), expected)


@pytest.mark.parametrize("hw", [(4, 4), (16, 24), (3, 5)])
def test_cross_index_image(hw):
    h, w = hw
    x = np.random.default_rng(0).standard_normal((h, w))
    routes = make_routes("cross", h, w)
    flat = x.reshape(-1)
    np.testing.assert_array_equal(flat[routes[0]], flat)
    np.testing.assert_array_equal(flat[routes[1]], x.T.reshape(-1))
    np.testing.assert_array_equal(routes[2], routes[0][::-1])
    np.testing.assert_array_equal(flat[routes[3]], x.T.reshape(-1)[::-1])


@pytest.mark.parametrize("layer", ["layers.0.blocks.0", "layers.3.blocks.0"])
def test_cross_matches_official_vmamba(layer):
    path = FIXTURES / "v0_small" / "scan_64x96.npz"
    if not FIXTURES.is_dir():
        pytest.skip(f"official VMamba fixtures not found at {FIXTURES}")
    with np.load(path) as data:
        u = data[f"{layer}.u"]
        h, w = int(data[f"{layer}.H"]), int(data[f"{layer}.W"])
    assert u.shape[-1] == h * w
    num_k = 4
    d = u.shape[1] // num_k
    routes = make_routes("cross", h, w)
    base = u[:, 0:d]
    for k in range(num_k):
        chunk = u[:, k * d : (k + 1) * d]
        if k > 0:  # the fixture must not be degenerate
            assert not np.array_equal(chunk, base)
        np.testing.assert_array_equal(chunk, base[..., routes[k]])


# ------------------------------------------------------------------------------------------
# Base paths on small grids
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "h", "w", "route0"),
    [
        ("raster", 2, 3, [0, 1, 2, 3, 4, 5]),
        ("zigzag", 2, 3, [0, 1, 2, 5, 4, 3]),
        ("zigzag", 3, 2, [0, 1, 3, 2, 4, 5]),
        ("spiral", 3, 3, [0, 1, 2, 5, 8, 7, 6, 3, 4]),
        ("spiral", 3, 4, [0, 1, 2, 3, 7, 11, 10, 9, 8, 4, 5, 6]),
        ("spiral", 1, 4, [0, 1, 2, 3]),
        ("spiral", 4, 1, [0, 1, 2, 3]),
        ("diagonal", 2, 2, [0, 1, 2, 3]),
        ("diagonal", 3, 3, [0, 1, 3, 2, 4, 6, 5, 7, 8]),
        ("diagonal", 2, 3, [0, 1, 3, 2, 4, 5]),
        ("morton", 4, 4, [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]),
        ("morton", 3, 3, [0, 1, 3, 4, 2, 5, 6, 7, 8]),
        ("morton", 2, 4, [0, 1, 4, 5, 2, 3, 6, 7]),
        ("hilbert", 2, 2, [0, 2, 3, 1]),
        ("hilbert", 4, 4, [0, 1, 5, 4, 8, 12, 13, 9, 10, 14, 15, 11, 7, 6, 2, 3]),
    ],
)
def test_known_route0(name, h, w, route0):
    np.testing.assert_array_equal(make_routes(name, h, w)[0], route0)


def test_zigzag_route1_is_column_snake():
    # 2x3 grid: down column 0, up column 1, down column 2
    np.testing.assert_array_equal(make_routes("zigzag", 2, 3)[1], [0, 3, 4, 1, 2, 5])


@pytest.mark.parametrize("n", [7, 14, 28, 56, 1, 2, 4, 8, 16, 32, 64, 128])
def test_hilbert_adjacent_on_squares(n):
    routes = make_routes("hilbert", n, n)
    for route in routes:
        assert np.all(_steps(route, n) == 1)


def test_hilbert_diagonal_steps_as_documented():
    # Documented: a (single, diagonal) non-adjacent step iff the shorter side is even and > 2
    # and the longer side is odd.
    for h in range(1, 33):
        for w in range(1, 33):
            routes = make_routes("hilbert", h, w)
            short, long_ = min(h, w), max(h, w)
            expect_diag = short % 2 == 0 and short > 2 and long_ % 2 == 1
            for k, route in enumerate(routes):
                steps = _steps(route, w)
                if expect_diag:
                    assert np.count_nonzero(steps != 1) == 1, (h, w, k)
                    assert steps.max() == 2, (h, w, k)
                else:
                    assert np.all(steps == 1), (h, w, k)


HILBERT_10X10 = """\
 0  5  6  9 10 87 88 89 98 99
 1  4  7  8 11 86 91 90 97 96
 2  3 16 15 12 85 92 93 94 95
27 26 17 14 13 84 77 76 75 74
28 25 18 19 20 83 78 79 72 73
29 24 23 22 21 82 81 80 71 70
30 31 32 51 52 53 54 55 68 69
35 34 33 50 49 48 57 56 67 66
36 39 40 43 44 47 58 61 62 65
37 38 41 42 45 46 59 60 63 64"""


def test_hilbert_10x10_is_stable():
    # Pins the exact curve (route changes would silently alter models trained with it).
    assert describe_routes(make_routes("hilbert", 10, 10), 10, 10) == HILBERT_10X10


@pytest.mark.parametrize("name", ["zigzag", "spiral"])
@pytest.mark.parametrize("hw", [(5, 7), (6, 6), (1, 9), (9, 1), (4, 3)])
def test_snake_and_spiral_are_adjacent(name, hw):
    h, w = hw
    for route in make_routes(name, h, w):
        assert np.all(_steps(route, w) == 1)


# ------------------------------------------------------------------------------------------
# validate_routes, inverse_routes, describe_routes
# ------------------------------------------------------------------------------------------


def test_validate_routes_returns_readonly_int32_copy():
    src = np.array([[3, 2, 1, 0]], dtype=np.int64)
    out = validate_routes(src, 2, 2)
    assert out.dtype == np.int32 and not out.flags.writeable
    src[0, 0] = 0
    np.testing.assert_array_equal(out, [[3, 2, 1, 0]])
    np.testing.assert_array_equal(validate_routes([[0, 1], [1, 0]], 1, 2), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(validate_routes(np.array([[1, 0]], np.uint8), 2, 1), [[1, 0]])


def test_validate_routes_permutation_message():
    routes = np.tile(np.arange(16), (3, 1))
    routes[2, 3] = 5
    msg = "route 2 is not a permutation of range(16): missing [3], duplicated [5]"
    with pytest.raises(OrderError) as info:
        validate_routes(routes, 4, 4)
    assert str(info.value) == msg


@pytest.mark.parametrize(
    ("routes", "h", "w", "match"),
    [
        (np.zeros((2, 15), np.int32), 4, 4, "shape"),
        (np.zeros((0, 16), np.int32), 4, 4, "at least one route"),
        (np.arange(16), 4, 4, "2-D"),
        (np.arange(16).reshape(1, 4, 4), 4, 4, "2-D"),
        ([[0, 1, 1, 3]], 2, 2, "duplicated \\[1\\]"),
        ([[0, 1, 2, 4]], 2, 2, "out-of-range indices \\[4\\]"),
        ([[0, 1, 2, -1]], 2, 2, "out-of-range"),
        ([[0.0, 1.0, 2.0, 3.0]], 2, 2, "dtype float64"),
        ([[0.0, 1.0, 2.0, np.nan]], 2, 2, "NaN"),
        ([[True, False]], 1, 2, "dtype bool"),
        ([["a", "b"]], 1, 2, "integer dtype"),
        ([[0, 1], [0]], 1, 2, "rectangular"),
        ([[0, 1, 2, 3]], 0, 4, "positive int"),
        ([[0, 1, 2, 3]], 2.0, 2, "positive int"),
    ],
)
def test_validate_routes_errors(routes, h, w, match):
    with pytest.raises(OrderError, match=match):
        validate_routes(routes, h, w)


def test_order_error_is_value_error():
    assert issubclass(OrderError, ValueError)


@pytest.mark.parametrize("name", ORDER_NAMES)
def test_inverse_routes(name):
    h, w = 5, 7
    routes = make_routes(name, h, w)
    inv = inverse_routes(routes)
    assert inv.shape == routes.shape and inv.dtype == np.int32 and not inv.flags.writeable
    t = np.arange(h * w)
    for k in range(routes.shape[0]):
        np.testing.assert_array_equal(inv[k][routes[k]], t)
        np.testing.assert_array_equal(routes[k][inv[k]], t)


def test_inverse_routes_errors():
    with pytest.raises(OrderError, match="2-D"):
        inverse_routes([0, 1, 2])
    with pytest.raises(OrderError, match="permutation"):
        inverse_routes([[0, 0, 2]])


def test_describe_routes():
    routes = make_routes("spiral", 3, 3)
    assert describe_routes(routes, 3, 3) == "0 1 2\n7 8 3\n6 5 4"
    assert describe_routes(routes, 3, 3, k=1) == "0 7 6\n1 8 5\n2 3 4"
    assert describe_routes(make_routes("raster", 1, 11), 1, 11).startswith(" 0  1")
    with pytest.raises(OrderError, match="route 4"):
        describe_routes(routes, 3, 3, k=4)


# ------------------------------------------------------------------------------------------
# make_routes errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("snake", 4, 4), "unknown order 'snake'.*hilbert"),
        (("Cross", 4, 4), "unknown order"),
        ((None, 4, 4), "unknown order"),
        (("cross", 0, 4), "h must be a positive int"),
        (("cross", 4, -1), "w must be a positive int"),
        (("cross", 2.5, 4), "positive int"),
        (("cross", True, 4), "positive int"),
        (("cross", "4", 4), "positive int"),
    ],
)
def test_make_routes_errors(args, match):
    with pytest.raises(OrderError, match=match):
        make_routes(*args)


# ------------------------------------------------------------------------------------------
# Order and as_order
# ------------------------------------------------------------------------------------------


def test_named_orders():
    a = as_order("hilbert")
    assert a == Order("hilbert") and hash(a) == hash(Order("hilbert"))
    assert a != as_order("morton")
    assert as_order(None) == Order("cross")
    assert as_order(a) is a
    assert a.name == "hilbert"
    np.testing.assert_array_equal(a.routes(6, 10), make_routes("hilbert", 6, 10))
    assert as_order("raster").num_routes(3, 3) == 1
    assert as_order("bidirectional").num_routes(3, 3) == 2
    assert as_order("cross").num_routes(3, 3) == 4
    with pytest.raises(OrderError, match="unknown order"):
        Order("nope")


def test_order_is_immutable_and_a_dict_key():
    a = as_order("zigzag")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "cross"
    table = {as_order("zigzag"): 1, as_order("cross"): 2}
    assert table[Order("zigzag")] == 1 and table[as_order(None)] == 2
    assert len({as_order("zigzag"), Order("zigzag"), as_order("spiral")}) == 2
    custom = as_order(make_routes("spiral", 2, 2))
    renamed = dataclasses.replace(custom, name="my spiral")
    assert renamed == custom and hash(renamed) == hash(custom)  # the name is for display only
    relabelled = dataclasses.replace(as_order("cross"), name="hilbert")
    np.testing.assert_array_equal(relabelled.routes(2, 3), make_routes("cross", 2, 3))
    with pytest.raises(OrderError, match="invalid Order key"):
        Order("custom", ("array", (1, 4), b""))


def test_array_order_equality_by_content():
    r = make_routes("spiral", 4, 4)
    a = as_order(np.array(r, dtype=np.int64))
    b = as_order(r.tolist())
    c = as_order(make_routes("zigzag", 4, 4))
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert a != as_order("spiral")
    assert a != as_order(r[:2])
    assert {a: "x"}[b] == "x"


def test_array_order_routes_any_matching_grid():
    r = make_routes("spiral", 4, 4)
    order = as_order(r)
    np.testing.assert_array_equal(order.routes(4, 4), r)
    np.testing.assert_array_equal(order.routes(2, 8), r)
    assert order.num_routes(16, 1) == 4
    assert not order.routes(4, 4).flags.writeable
    with pytest.raises(OrderError, match="L=16.*3x3 has 9"):
        order.routes(3, 3)


def test_mapping_order():
    spec = {(4, 4): make_routes("morton", 4, 4), (2, 3): make_routes("zigzag", 2, 3)[:1]}
    order = as_order(spec)
    np.testing.assert_array_equal(order.routes(4, 4), spec[(4, 4)])
    assert order.num_routes(2, 3) == 1
    same = as_order({(2, 3): spec[(2, 3)].astype(np.int64), (4, 4): spec[(4, 4)]})
    assert order == same and hash(order) == hash(same)
    assert order != as_order({(4, 4): spec[(4, 4)]})
    with pytest.raises(OrderError, match=r"\(5, 5\).*\(2, 3\), \(4, 4\)"):
        order.routes(5, 5)


def test_callable_order():
    calls = []

    def my_order(h, w):
        calls.append((h, w))
        return make_routes("diagonal", h, w)[::-1]

    def twin(h, w):
        return make_routes("diagonal", h, w)[::-1]

    order = as_order(my_order)
    assert order.name == "my_order"
    assert order == as_order(my_order) and hash(order) == hash(as_order(my_order))
    assert order != as_order(twin)
    routes = order.routes(3, 5)
    np.testing.assert_array_equal(routes, make_routes("diagonal", 3, 5)[::-1])
    assert routes.dtype == np.int32 and not routes.flags.writeable
    order.routes(3, 5)
    assert calls == [(3, 5)]  # cached


def test_callable_order_output_is_validated():
    bad = as_order(lambda h, w: np.zeros((1, h * w), np.int64))
    with pytest.raises(OrderError, match="2x2.*not a permutation"):
        bad.routes(2, 2)
    wrong_size = as_order(lambda h, w: make_routes("cross", h + 1, w))
    with pytest.raises(OrderError, match="shape"):
        wrong_size.routes(2, 2)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("snake", "unknown order"),
        (3.5, "cannot make an order from float"),
        (object(), "cannot make an order"),
        (np.arange(4), "2-D"),
        ({}, "at least one grid"),
        ({(2, 2): [[0, 1, 2, 2]]}, r"grid \(2, 2\).*not a permutation"),
        ({(2, 2): [[0, 1, 2]]}, "shape"),
        ({4: [[0, 1, 2, 3]]}, "grid tuples"),
        ({(0, 4): [[0]]}, "positive int"),
        (np.array([[0.0, 1.0]]), "dtype"),
        ([[0, 1], [0]], "rectangular"),
    ],
)
def test_as_order_errors(spec, match):
    with pytest.raises(OrderError, match=match):
        as_order(spec)


def test_grid_errors_from_order():
    with pytest.raises(OrderError, match="positive int"):
        as_order("cross").routes(0, 3)


def test_order_as_static_jit_argument():
    jax = pytest.importorskip("jax")
    traces = []

    def scan0(x, order):
        traces.append(order)
        h, w = x.shape
        return x.reshape(-1)[order.routes(h, w)[1]]

    f = jax.jit(scan0, static_argnums=1)
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(f(x, as_order("cross")), x.T.reshape(-1))
    f(x, Order("cross"))
    r = make_routes("zigzag", 3, 4)
    np.testing.assert_array_equal(f(x, as_order(r)), x.reshape(-1)[r[1]])
    f(x, as_order(np.array(r, dtype=np.int64)))
    assert len(traces) == 2  # equal orders reuse the trace
