"""Tests of jaxmamba.views.plots: every view returns a Figure holding exactly the plotted data."""

from __future__ import annotations

import numpy as np
import pytest

from jaxmamba.orders import make_routes
from jaxmamba.views.plots import (
    PlotError,
    compare_orders,
    overview,
    patch_view,
    save,
)
from jaxmamba.views.scatter_plot import scan_positions, scatter

H, W = 3, 4
L = H * W


@pytest.fixture
def attn():
    return np.random.default_rng(0).random((L, L))


def heat_of(ax) -> np.ndarray:
    return np.asarray(ax.images[-1].get_array())


@pytest.mark.parametrize(
    ("color_by", "expected"),
    [
        ("row", np.arange(L) // W),
        ("col", np.arange(L) % W),
        (np.arange(L) * 0.5, np.arange(L) * 0.5),
    ],
)
def test_scatter_colours(color_by, expected):
    fig = scatter(np.random.default_rng(0).random((L, 2)), H, W, color_by=color_by)
    np.testing.assert_array_equal(fig.axes[0].collections[0].get_array(), expected)
    levels = np.unique(expected)
    if len(levels) <= 4:  # a few discrete values: a legend naming each, no colour bar
        assert len(fig.axes) == 1
        texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert len(texts) == len(levels) and texts[-1].endswith(f"{levels[-1]:g}")
    else:
        assert len(fig.axes) == 2  # scatter + colour bar


def test_long_titles_are_wrapped_not_clipped():
    title = "layers.0.blocks.1, order spiral: t-SNE of the 3136 patches' mean attention rows " * 2
    fig = scatter(np.zeros((L, 2)), H, W, color_by=np.arange(L) * 1.0, title=title)
    lines = fig.axes[0].get_title().splitlines()
    assert len(lines) > 1 and " ".join(lines) == title.strip()
    fig.canvas.draw()
    box = fig.axes[0].title.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width  # inside the figure


def test_scatter_scan_position():
    routes = make_routes("spiral", H, W)
    fig = scatter(np.zeros((L, 2)), H, W, color_by="scan", routes=routes, route=1)
    pos = np.asarray(fig.axes[0].collections[0].get_array())
    np.testing.assert_array_equal(routes[1][pos.astype(int)], np.arange(L))  # route visits p at t
    with pytest.raises(PlotError, match="needs the routes"):
        scatter(np.zeros((L, 2)), H, W, color_by="scan")


def test_scan_positions_is_the_inverse():
    routes = make_routes("hilbert", 4, 4)
    for k in range(4):
        np.testing.assert_array_equal(routes[k][scan_positions(routes, k)], np.arange(16))


@pytest.mark.parametrize(
    ("direction", "take"), [("query", lambda a, p: a[p]), ("source", lambda a, p: a[:, p])]
)
def test_patch_view_heat_is_the_row_or_column(attn, direction, take):
    fig = patch_view(attn, H, W, (1, 2), direction=direction)
    assert len(fig.axes) == 2
    heat = heat_of(fig.axes[0])
    assert heat.shape == (H, W)
    np.testing.assert_array_equal(heat.ravel(), take(attn, 1 * W + 2))
    (mark,) = fig.axes[0].patches  # the chosen patch outlined
    assert mark.get_xy() == (2 - 0.5, 1 - 0.5)


def test_patch_view_over_image(attn):
    image = np.random.default_rng(1).random((24, 32, 3)) * 4 - 2  # normalised-looking input
    fig = patch_view(attn, H, W, 5, image=image)
    ax = fig.axes[0]
    assert len(ax.images) == 2
    assert ax.images[0].get_extent() == ax.images[1].get_extent() == [-0.5, W - 0.5, H - 0.5, -0.5]
    np.testing.assert_array_equal(heat_of(ax).ravel(), attn[5])
    base = np.asarray(ax.images[0].get_array())
    assert base.min() >= 0 and base.max() <= 1


def test_overview_layout_and_values():
    rng = np.random.default_rng(0)
    grids = {
        "layers.0.blocks.0": (4, 4),
        "layers.0.blocks.1": (4, 4),
        "layers.0.blocks.2": (4, 4),
        "layers.1.blocks.0": (2, 2),
    }
    maps = {n: rng.random((h * w, h * w)) for n, (h, w) in grids.items()}
    fig = overview(maps, grids)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 3 and len(fig.axes) == 2 * 3 + len(grids)  # one colour bar each
    visible = [ax for ax in panels if ax.axison]
    assert [ax.get_title() for ax in visible] == [f"{n} ({h}x{w})" for n, (h, w) in grids.items()]
    np.testing.assert_allclose(heat_of(visible[3]).ravel(), maps["layers.1.blocks.0"].mean(0))
    fig = overview(maps, grids, stat="centre")
    np.testing.assert_allclose(heat_of(fig.axes[0]).ravel(), maps["layers.0.blocks.0"][2 * 4 + 2])
    assert "centre patch" in fig._suptitle.get_text()
    with pytest.raises(PlotError, match="no grid"):
        overview(maps, {})
    with pytest.raises(PlotError, match="stat must be"):
        overview(maps, grids, stat="max")


def test_overview_other_names_in_one_row():
    fig = overview({"a": np.eye(4), "b": np.eye(4)}, {"a": (2, 2), "b": (2, 2)}, stat="self")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2
    np.testing.assert_array_equal(heat_of(panels[1]).ravel(), np.ones(4))


def test_compare_orders(attn):
    other = attn * 3
    fig = compare_orders({"cross": attn, "spiral": other}, H, W, 7, direction="source")
    assert len(fig.axes) == 3  # two panels + shared colour bar
    np.testing.assert_array_equal(heat_of(fig.axes[0]).ravel(), attn[:, 7])
    np.testing.assert_array_equal(heat_of(fig.axes[1]).ravel(), other[:, 7])
    lo, hi = fig.axes[0].images[-1].get_clim()
    assert fig.axes[1].images[-1].get_clim() == (lo, hi)  # one scale, without patch 7's values
    assert lo == 0 and hi == np.delete(other[:, 7], 7).max()
    assert "order cross" in fig.axes[0].get_title() and "in each order" in fig._suptitle.get_text()


def test_save_png(tmp_path, attn):
    path = save(patch_view(attn, H, W, 0), tmp_path / "sub" / "view.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda a: patch_view(a, 4, 4, 0), r"\(L, L\) with L = h·w = 16"),
        (lambda a: patch_view(a, H, W, L), "outside"),
        (lambda a: patch_view(a, H, W, (3, 0)), "outside"),
        (lambda a: patch_view(a, H, W, 0, direction="both"), "direction"),
        (lambda a: scatter(np.zeros((L, 3)), H, W), r"\(L, 2\)"),
        (lambda a: scatter(np.zeros((L, 2)), H, W, color_by="hue"), "color_by"),
        (lambda a: compare_orders({}, H, W, 0), "non-empty"),
        (lambda a: patch_view(a, H, W, 0, image=np.zeros((4, 4, 2))), "image must be"),
    ],
)
def test_errors(attn, call, match):
    with pytest.raises(PlotError, match=match):
        call(attn)


def test_signed_maps_are_diverging_with_zero_at_the_centre_colour(attn):
    signed = attn - 0.7  # mostly negative
    fig = patch_view(signed, H, W, 4)
    im = fig.axes[0].images[-1]
    lo, hi = im.get_clim()
    assert lo == -hi and hi == np.abs(np.delete(signed[4], 4)).max()  # symmetric: 0 in the middle
    assert im.get_cmap().name == "RdBu_r"
    white = np.asarray(im.get_cmap()(im.norm(0.0))[:3])
    np.testing.assert_allclose(white, [0.97, 0.97, 0.97], atol=0.03)  # zero is (near) white
    positive = patch_view(attn, H, W, 4).axes[0].images[-1]
    assert positive.get_cmap().name == "inferno"  # non-negative: sequential
    ticks = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert any(t == "0" for t in ticks) and not any("1e" in t and "." in t for t in ticks)


def test_the_map_over_an_image_has_constant_opacity(attn):
    signed = attn - 0.5
    image = np.random.default_rng(1).random((24, 32, 3))
    im = patch_view(signed, H, W, 4, image=image).axes[0].images[-1]
    assert im.get_alpha() == 0.75  # one opacity, not a ramp by value
    bare = patch_view(signed, H, W, 4, underlay="none", image=image).axes[0].images[-1]
    assert bare.get_alpha() is None  # no image under it: opaque
