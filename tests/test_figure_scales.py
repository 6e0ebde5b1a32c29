"""The colour scales, underlays and side-by-side scales of the static figures
(jaxmamba.views.scales, jaxmamba.views.plots), checked against a float64 numpy implementation
of the shared contract."""

from __future__ import annotations

import numpy as np
import pytest

from jaxmamba.views.plots import PlotError, compare_orders, overview, patch_view
from jaxmamba.views.scales import number, scale_norm, scale_ticks, underlay_rgb

H, W = 8, 8
L = H * W
P = 3 * W + 4  # the selected patch


def reference_t(v, data, kind):
    """The contract's t of values ``v`` on a scale over ``data`` (float64, numpy only)."""
    v = np.asarray(v, np.float64)
    d = np.asarray(data, np.float64)
    signed = bool((d < 0).any())
    m = np.abs(d).max()
    if kind == "linear":
        t = 0.5 + 0.5 * v / m if signed else v / m
    elif kind == "log":
        c, s = 1e-3 * m, 1 / (1 - 1 / 10)

        def big_t(a):
            a = np.asarray(a, np.float64)
            out = a * s
            far = np.abs(a) > c
            out[far] = np.sign(a[far]) * c * (s + np.log10(np.abs(a[far]) / c))
            return out

        t = 0.5 + 0.5 * big_t(v) / big_t(np.array([m]))[0] if signed else big_t(v) / big_t([m])[0]
    else:  # rank: average rank of ties / (n - 1); v must be among the data here
        base = np.abs(d) if signed else d
        x = np.abs(v) if signed else v
        below = (base[None, :] < x[:, None]).sum(1)
        ties = (base[None, :] == x[:, None]).sum(1)
        q = (below + (ties - 1) / 2) / (base.size - 1)
        t = 0.5 + 0.5 * np.sign(v) * q if signed else q
    return np.clip(t, 0.0, 1.0)


def decaying_row(signed: bool, seed: int = 0) -> np.ndarray:
    """An (L, L) map whose row P decays over 6 decades away from P, the patch itself far above."""
    rng = np.random.default_rng(seed)
    r, c = np.divmod(np.arange(L), W)
    dist = np.abs(r - 3) + np.abs(c - 4)
    row = 10.0 ** (-dist * 0.6) * (1 + 0.1 * rng.random(L))
    if signed:
        row *= np.where(rng.random(L) < 0.4, -1.0, 1.0)
    row[P] = 50.0  # the selected patch's own value, off any scale of the others
    a = rng.random((L, L)) * 1e-3
    a[P] = row
    return a


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("kind", ["linear", "log", "rank"])
def test_drawn_colours_are_the_contract(kind, signed):
    a = decaying_row(signed)
    fig = patch_view(a, H, W, P, scale=kind)
    im = fig.axes[0].images[-1]
    others = np.delete(a[P], P)
    np.testing.assert_allclose(np.asarray(im.norm(others)), reference_t(others, others, kind),
                               rtol=0, atol=1e-12)  # fmt: skip
    assert float(im.norm(a[P, P])) == 1.0  # the selected patch: clipped to the end colour
    assert im.get_cmap().name == ("RdBu_r" if signed else "inferno")
    rgba = im.to_rgba(a[P].reshape(H, W))
    want = im.get_cmap()(np.clip(reference_t(a[P], others, kind), 0, 1).reshape(H, W))
    np.testing.assert_allclose(rgba, want, atol=1 / 255 + 1e-9)  # the colours drawn
    label = fig.axes[1].get_ylabel()
    said = {"linear": "linear", "log": "linear below 1e-3 × max", "rank": "quantiles"}[kind]
    assert said in label


def test_rank_ties_take_their_average_rank():
    data = np.array([3.0, 1.0, 1.0, 1.0, 0.0, 7.0])
    np.testing.assert_allclose(scale_norm(data, "rank")(data), reference_t(data, data, "rank"))
    signed = np.array([-3.0, 1.0, -1.0, 0.5, 2.0])
    np.testing.assert_allclose(scale_norm(signed, "rank")(signed),
                               reference_t(signed, signed, "rank"))  # fmt: skip


@pytest.mark.parametrize("kind", ["linear", "log", "rank"])
@pytest.mark.parametrize("fill", [0.0, 2.0, -2.0])
def test_constant_maps_draw_without_a_singular_bar(kind, fill, recwarn):
    fig = patch_view(np.full((L, L), fill), H, W, P, scale=kind)
    fig.canvas.draw()
    assert not [w for w in recwarn if "singular" in str(w.message)]
    im = fig.axes[0].images[-1]
    t = float(im.norm(fill))
    tied = {0.0: 0.5, 2.0: 0.5, -2.0: 0.25}[fill]  # rank ½ (signed: 0.5 - 0.5·½)
    assert t == ({0.0: 0.0, 2.0: 1.0, -2.0: 0.0}[fill] if kind != "rank" else tied)
    assert float(scale_norm([fill], kind)(fill)) == t  # one value alone: the same


def test_the_selection_is_left_out_of_the_scale_by_default():
    a = decaying_row(False)
    im = patch_view(a, H, W, P).axes[0].images[-1]
    assert im.norm.vmax == np.delete(a[P], P).max() < a[P, P]  # the max over the other cells
    assert im.norm.vmin == 0
    assert float(im.norm(a[P, P])) == 1.0
    assert patch_view(a, H, W, P, selection_in_scale=True).axes[0].images[-1].norm.vmax == 50.0
    fig = patch_view(a, H, W, P)
    assert "left out of the scale" in fig._supxlabel.get_text()
    (mark,) = fig.axes[0].patches
    assert mark.get_xy() == (4 - 0.5, 3 - 0.5)
    # the decay shows over many cells on the default scale, a handful on a linear one with the patch
    log_t = np.asarray(im.norm(np.delete(a[P], P)))
    lin = patch_view(a, H, W, P, scale="linear", selection_in_scale=True).axes[0].images[-1]
    assert (log_t > 0.2).sum() >= 30 and (np.asarray(lin.norm(np.delete(a[P], P))) > 0.2).sum() == 0


def test_grey_underlay_and_constant_opacity():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    a = decaying_row(True)
    ax = patch_view(a, H, W, P, image=image).axes[0]
    base = np.asarray(ax.images[0].get_array())
    lum = (image / 255.0) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(base, np.repeat((0.25 + 0.5 * lum)[..., None], 3, -1))
    assert np.all(base[..., 0] == base[..., 1]) and np.all(base[..., 1] == base[..., 2])
    assert ax.images[-1].get_alpha() == 0.75
    colour = patch_view(a, H, W, P, image=image, underlay="colour").axes[0]
    np.testing.assert_allclose(np.asarray(colour.images[0].get_array()), image / 255.0)
    bare = patch_view(a, H, W, P, image=image, underlay="none").axes[0]
    assert len(bare.images) == 1 and bare.images[0].get_alpha() is None
    np.testing.assert_allclose(underlay_rgb(np.full((2, 2), 0.5)), np.full((2, 2, 3), 0.5))


def _pixel(fig, ax, x, y, dy: int = 0) -> np.ndarray:
    """The rendered RGB (0..1) at data point (x, y) of ``ax`` (``dy`` pixel rows below)."""
    px, py = ax.transData.transform((x, y))
    buf = np.asarray(fig.canvas.buffer_rgba())
    return buf[int(round(buf.shape[0] - py)) + dy, int(px), :3] / 255.0


@pytest.mark.parametrize("kind", ["linear", "log", "rank"])
@pytest.mark.parametrize("underlay", ["grey", "none"])
def test_the_maps_colours_are_the_colour_bars(kind, underlay):
    """Rendered pixels: a cell over grey 0.5 has the colour of the bar at the cell's value."""
    a = decaying_row(True)
    image = np.full((32, 32, 3), 0.5)  # luminance 0.5: grey 0.25 + 0.5·0.5 = 0.5
    fig = patch_view(a, H, W, P, image=image, underlay=underlay, scale=kind, figsize=(6, 6))
    fig.canvas.draw()
    ax, bar = fig.axes
    im = ax.images[-1]
    alpha = 0.75 if underlay == "grey" else 1.0
    for q in (P + 1, P + W, 0, L - 1, 5):
        r, c = divmod(q, W)
        cell = _pixel(fig, ax, c, r)
        want = alpha * np.asarray(im.get_cmap()(float(im.norm(a[P, q])))[:3]) + (1 - alpha) * 0.5
        np.testing.assert_allclose(cell, want, atol=2.5 / 255)
        x0, x1 = bar.get_xlim()  # the bar at the value, within a pixel row (steep colour maps)
        on_bar = [_pixel(fig, bar, (x0 + x1) / 2, a[P, q], dy) for dy in (-1, 0, 1)]
        assert min(np.abs(b - cell).max() for b in on_bar) <= 3.5 / 255


def test_colour_bar_ticks_are_decades_or_quantiles():
    a = decaying_row(False)
    others = np.delete(a[P], P)
    m = others.max()
    fig = patch_view(a, H, W, P, scale="log")
    ticks = fig.axes[1].get_yticks()
    decades = [10.0**k for k in range(-8, 1) if 1e-3 * m <= 10.0**k <= m / 3]
    np.testing.assert_allclose(ticks, [0.0, *decades, m])
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == [number(t) for t in ticks]
    fig = patch_view(a, H, W, P, scale="rank")
    ticks = fig.axes[1].get_yticks()
    srt = np.sort(others)  # 63 distinct values: quantile q is the value at position q·62
    np.testing.assert_allclose(ticks, [srt[0], srt[15] * 0.5 + srt[16] * 0.5, srt[31],
                                       srt[46] * 0.5 + srt[47] * 0.5, srt[62]])  # fmt: skip
    np.testing.assert_allclose(scale_norm(others, "rank")(ticks), [0, 0.25, 0.5, 0.75, 1])
    signed = scale_ticks(scale_norm([-2e-5, 1e-6, 0.0], "log"))
    np.testing.assert_allclose(signed, [-2e-5, -1e-6, -1e-7, 0, 1e-7, 1e-6, 2e-5])
    assert scale_ticks(scale_norm([0.0, 1.0], "linear")) is None  # matplotlib's own


def _far_t(fig, values) -> list[np.ndarray]:
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    pairs = zip(panels, values, strict=True)
    return [np.asarray(ax.images[-1].norm(np.delete(v, P))) for ax, v in pairs]


def test_compare_orders_shared_and_per_panel_scales():
    near = decaying_row(False, seed=0)
    weak = decaying_row(False, seed=1)
    weak[P] *= 0.05  # twenty times fainter (and its own patch still far above)
    weak[P, P] = 50.0
    maps = {"cross": near, "spiral": weak}
    fig = compare_orders(maps, H, W, P)  # default: same block, same kind: one scale
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(fig.axes) == 3 and len(panels) == 2
    norms = [ax.images[-1].norm for ax in panels]
    assert norms[0].vmax == norms[1].vmax == max(np.delete(near[P], P).max(),
                                                 np.delete(weak[P], P).max())  # fmt: skip
    for t in _far_t(fig, [near[P], weak[P]]):  # no panel blank: tens of cells visible in each
        assert (t > 0.2).sum() >= 20
    with_patch = compare_orders(maps, H, W, P, scale="linear", selection_in_scale=True)
    for t in _far_t(with_patch, [near[P], weak[P]]):  # what it was: the patch set the scale
        assert (t > 0.2).sum() == 0
    assert "one symlog colour scale" in fig._supxlabel.get_text()
    per = compare_orders(maps, H, W, P, shared_scale=False)
    assert len(per.axes) == 4  # a colour bar per panel
    panels = [ax for ax in per.axes if ax.get_label() != "<colorbar>"]
    assert [ax.images[-1].norm.vmax for ax in panels] == [np.delete(near[P], P).max(),
                                                          np.delete(weak[P], P).max()]  # fmt: skip
    assert "each panel on its own" in per._supxlabel.get_text()
    shared = compare_orders(maps, H, W, P, shared_scale=True)
    assert [ax.images[-1].norm.vmax for ax in shared.axes[:2]] == [norms[0].vmax] * 2


def test_overview_each_block_on_its_own_scale():
    rng = np.random.default_rng(0)
    grids = {"layers.0.blocks.0": (4, 4), "layers.1.blocks.0": (2, 2)}
    maps = {
        "layers.0.blocks.0": rng.random((16, 16)) * 1e-6,
        "layers.1.blocks.0": rng.random((4, 4)),
    }
    fig = overview(maps, grids, stat="centre")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]
    vmax = [ax.images[-1].norm.vmax for ax in panels]
    centre = {n: (h // 2) * w + w // 2 for n, (h, w) in grids.items()}
    assert vmax == [np.delete(maps[n][centre[n]], centre[n]).max() for n in grids]
    assert all(len(ax.patches) == 1 for ax in panels)  # the centre patch outlined
    assert "own symlog colour scale" in fig._supxlabel.get_text()
    received = overview(maps, grids, scale="rank")
    panels = [ax for ax in received.axes if ax.get_label() != "<colorbar>" and ax.axison]
    v = maps["layers.0.blocks.0"].mean(0)
    np.testing.assert_allclose(panels[0].images[-1].norm(v), reference_t(v, v, "rank"))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda a: patch_view(a, H, W, P, scale="sqrt"),
         r"scale must be one of 'linear', 'log', 'rank', got 'sqrt'"),
        (lambda a: patch_view(a, H, W, P, underlay="sepia"),
         r"underlay must be one of 'grey', 'colour', 'none', got 'sepia'"),
        (lambda a: patch_view(a, H, W, P, selection_in_scale=1),
         "selection_in_scale must be True or False, got 1"),
        (lambda a: compare_orders({"cross": a}, H, W, P, shared_scale="yes"),
         "shared_scale must be True or False, got 'yes'"),
        (lambda a: overview({"b": a}, {"b": (H, W)}, scale="Log"), "scale must be one of"),
        (lambda a: compare_orders({"cross": a}, H, W, P, underlay=None), "underlay must be"),
        (lambda a: scale_norm([], "log"), "non-empty set of finite values"),
        (lambda a: scale_norm([1.0, np.nan], "rank"), "non-empty set of finite values"),
        (lambda a: underlay_rgb(np.zeros((4, 4, 2))), "image must be"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(call, match):
    with pytest.raises(PlotError, match=match):
        call(decaying_row(False))


def test_study_figures_name_block_model_and_image(tmp_path, monkeypatch):
    from jaxmamba.study import write_synthetic_study
    from jaxmamba.views import plots
    from jaxmamba.views.figures import write_figures

    s = write_synthetic_study(tmp_path / "s", "vmamba_test", 64, orders=["cross", "spiral"])
    drawn = {}
    render = plots.png

    def keep(fig, **kwargs):
        drawn[len(drawn)] = fig
        return render(fig, **kwargs)

    monkeypatch.setattr(plots, "png", keep)
    names = [p.name for p in write_figures(s)]
    figs = dict(zip(names, drawn.values(), strict=True))
    (digest,) = s.meta["models"]
    model = s.meta["models"][digest]["description"]
    image = s.meta["images"][0]["name"]
    block = [b for b in s.blocks if b.stage == s.blocks[0].stage][-1]
    for name in (f"patch_view_{block.name}.png", f"compare_orders_{block.name}.png",
                 "overview_cross.png"):  # fmt: skip
        title = figs[name]._suptitle.get_text().replace("\n", " ")
        assert model in title and digest in title and f"image 0: {image}" in title, title
        if name != "overview_cross.png":
            assert f"{block.name} ({block.grid[0]}x{block.grid[1]})" in title

    def heat_of(figures):
        return [ax.images[-1] for f in figures for ax in f.axes
                if ax.images and ax.get_label() != "<colorbar>"]  # fmt: skip

    heat = heat_of(figs.values())
    received = heat_of([figs["overview_cross.png"]])  # a column mean spans few decades: rank
    others = heat_of(f for n, f in figs.items() if n != "overview_cross.png")
    assert received and all(type(im.norm).__name__ != "SymLogNorm" for im in received)
    assert "rank" in figs["overview_cross.png"].texts[-1].get_text()
    assert others and all(type(im.norm).__name__ == "SymLogNorm" for im in others)  # the default
    assert all(im.get_alpha() == 0.75 for im in heat)  # over the grey image
    pv = figs[f"patch_view_{block.name}.png"].axes[0].images[-1]
    h, w = block.grid
    centre = (h // 2) * w + w // 2
    row = np.asarray(s.map("cross", block.name))[centre]
    assert pv.norm.vmax == pytest.approx(np.abs(np.delete(row, centre)).max())
