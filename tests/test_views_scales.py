"""The explorer's colour scales, images under maps and side-by-side scales, in headless
Chromium on a served synthetic VMamba-T study at 224x224 (56x56 stage-0 grids, signed maps):
scaleFor against float64 NumPy references of the shared contract (and matplotlib's SymLogNorm),
the drawn pixels against the scale's colours, the selection left out of the scale, grey images
under the maps, shared or per-panel scales, and the note over a map while it loads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import js, served_page, severe, wait_idle

from jaxmamba.study import write_synthetic_study

pytest.importorskip("starlette", reason="the [serve] extra is not installed")

S0, S0b, S2 = "layers.0.blocks.0", "layers.0.blocks.1", "layers.2.blocks.0"
CENTRE = 28 * 56 + 28  # the default selection of a 56x56 grid
SYMLOG_S = 1 / (1 - 1 / 10)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_synthetic_study(tmp_path_factory.mktemp("scales") / "s", orders=["cross"])


@pytest.fixture
def page(study, chromium):
    with served_page(study, chromium) as drv:
        yield drv


# ------------------------------------------------------------------------------------------------
# float64 references of the shared contract
# ------------------------------------------------------------------------------------------------


def ref_scale(values, signed, skip, kind):
    """(t(v) for any v, m, signed, the ticks' (value, position) pairs), by the contract."""
    data = np.delete(np.asarray(values, np.float64), sorted(skip))
    sgn = bool(signed) or data.min() < 0
    m = float(np.abs(data).max()) or 1.0
    if kind == "linear":
        f = lambda v: v / m  # noqa: E731
    elif kind == "log":
        c = 1e-3 * m

        def T(a):
            a = np.asarray(a, np.float64)
            big = np.sign(a) * c * (SYMLOG_S + np.log10(np.maximum(np.abs(a), c) / c))
            return np.where(np.abs(a) <= c, a * SYMLOG_S, big)

        f = lambda v: T(v) / T(m)  # noqa: E731
    else:
        xs = np.sort(np.abs(data) if sgn else data)
        u, start, count = np.unique(xs, return_index=True, return_counts=True)
        rank = start + (count - 1) / 2  # the average (0-based) rank of ties
        q = lambda v: np.interp(v, u, rank) / max(len(xs) - 1, 1)  # noqa: E731
        f = (lambda v: np.sign(v) * q(np.abs(v))) if sgn else q
    t = (lambda v: 0.5 + 0.5 * f(np.asarray(v, np.float64))) if sgn else f
    return t, m, sgn


def rdbu_r(t):
    """matplotlib's RdBu_r (the same eleven ColorBrewer colours) at t, 0..255."""
    cm = pytest.importorskip("matplotlib").colormaps["RdBu_r"]
    return 255 * np.asarray(cm(np.clip(t, 0, 1)))[..., :3]


# ------------------------------------------------------------------------------------------------
# scaleFor itself
# ------------------------------------------------------------------------------------------------


@pytest.mark.browser
def test_scale_for_matches_the_float64_contract(page):
    rng = np.random.default_rng(3)
    heavy = np.exp(rng.uniform(-18, -9, 400))  # values over 4 decades and more, like a 56x56 map
    heavy[::7] = heavy[3]  # ties
    cases = {
        "unsigned": heavy,
        "signed": heavy * np.where(rng.random(400) < 0.4, -1.0, 1.0),
        "uniform": rng.uniform(0, 2, 50),
    }
    probes_rel = np.array([-2, -1, -0.3, -1e-3, -4e-4, 0, 1e-5, 4e-4, 1e-3, 0.02, 0.5, 1, 3])
    for name, values in cases.items():
        skip = [5, 17, 200] if len(values) > 200 else [1]
        for signed in (False, True):
            for kind in ("linear", "log", "rank"):
                t_ref, m, sgn = ref_scale(values, signed, skip, kind)
                probes = np.concatenate([values, probes_rel * m])
                got = page.execute_script(
                    "const s = JM.scaleFor(arguments[0], arguments[1], new Set(arguments[2]),"
                    " arguments[3]); return [s.kind, s.signed, s.lo, s.hi, s.band,"
                    " arguments[4].map(s.t), s.ticks];",
                    values.tolist(),
                    signed,
                    skip,
                    kind,
                    probes.tolist(),
                )
                what = f"{name}, signed={signed}, {kind}"
                assert got[0] == kind and got[1] == sgn, what
                assert got[3] == pytest.approx(m, rel=1e-15) and got[2] == (-m if sgn else 0)
                assert (got[4] is None) == (kind != "log"), what
                if kind == "log":
                    assert got[4] == pytest.approx(1e-3 * m, rel=1e-12)
                np.testing.assert_allclose(got[5], t_ref(probes), rtol=0, atol=1e-12, err_msg=what)
                ticks = got[6]
                tv = np.array([k["v"] for k in ticks])
                assert all(k["pos"] == pytest.approx(np.clip(t_ref(k["v"]), 0, 1), abs=1e-9)
                           for k in ticks), what  # fmt: skip
                if kind == "log":  # 0 and the decades in [c, m], and m (mirrored when signed)
                    dec = [10.0**k for k in range(-30, 30) if 1e-3 * m <= 10.0**k < m]
                    want = [0.0, *dec, m]
                    if sgn:
                        want = [-v for v in reversed(want[1:])] + want
                    np.testing.assert_allclose(tv, want, rtol=1e-12, err_msg=what)
                    labels = [k["label"] for k in ticks if k["v"] in dec]
                    assert all(
                        lab.lstrip("-") in (f"1e{round(np.log10(abs(v)))}", f"{abs(v):g}")
                        for lab, v in zip(labels, dec, strict=False)
                    ), labels
                if kind == "rank":  # labelled with the values at quantiles 0, 1/4, 1/2, 3/4, 1
                    data = np.delete(values, skip)
                    if sgn:
                        a = np.quantile(np.abs(data), [1, 0.5])
                        want, pos = [-a[0], -a[1], 0, a[1], a[0]], [0, 0.25, 0.5, 0.75, 1]
                    else:
                        pos = [0, 0.25, 0.5, 0.75, 1]
                        want = np.quantile(data, pos)
                    np.testing.assert_allclose(tv, want, rtol=1e-12, err_msg=what)
                    if name == "uniform":  # no ties: the ticks sit at the quantiles they name
                        np.testing.assert_allclose([k["pos"] for k in ticks], pos, atol=1e-12)
    # the log kind is matplotlib's SymLogNorm(linthresh=1e-3 m, linscale=1, base=10)
    colors = pytest.importorskip("matplotlib.colors")
    for values, lo in ((cases["unsigned"], 0.0), (cases["signed"], None)):
        m = np.abs(values).max()
        norm = colors.SymLogNorm(
            1e-3 * m, linscale=1, vmin=-m if lo is None else 0, vmax=m, base=10
        )
        got = page.execute_script(
            "const s = JM.scaleFor(arguments[0], false, null); return arguments[0].map(s.t);",
            values.tolist(),
        )
        np.testing.assert_allclose(got, norm(values), atol=1e-9)
    assert severe(page) == []


# ------------------------------------------------------------------------------------------------
# the drawn maps
# ------------------------------------------------------------------------------------------------


@pytest.mark.browser
def test_the_log_default_shows_a_far_patch_the_linear_scale_hides(page, study):
    assert js(page, "return explorer.state.scale;") == "log"
    assert js(page, "return explorer.state.underlay;") == "grey"
    assert page.find_element("id", "heat").get_attribute("data-selected") == str(CENTRE)
    js(page, "explorer.setControl('underlay', 'none');")  # opaque: the drawn colours are exact
    row = np.asarray(study.map("cross", S0), np.float64)[CENTRE]
    m = np.abs(np.delete(row, CENTRE)).max()
    far = 28 * 56 + 48  # 20 patches along the scan (cross, route 0: row-major)
    assert 1e-4 < abs(row[far]) / m < 1e-2  # faint: below 1 % of the scale's top
    background = js(page, "return explorer.colourAt(0);")
    drawn = {}
    for kind in ("linear", "log", "rank"):
        js(page, "explorer.setControl('scale', arguments[0]);", kind)
        drawn[kind] = np.asarray(js(page, "return explorer.pixelAt('heat', arguments[0]);", far))
        t_ref = ref_scale(row, True, [CENTRE], kind)[0]
        want = rdbu_r(t_ref(row[far]))
        np.testing.assert_allclose(drawn[kind], want, atol=3, err_msg=kind)  # matplotlib's RdBu_r
        for p in (far, CENTRE - 1, 5, 3000):  # the drawn pixel is the scale's colour
            assert (
                np.abs(
                    np.subtract(
                        js(page, "return explorer.pixelAt('heat', arguments[0]);", p),
                        js(page, "return explorer.colourAt(arguments[0]);", row[p]),
                    )
                ).max()
                <= 1
            )
    assert np.abs(drawn["linear"] - background).max() <= 4  # the background colour
    assert np.abs(drawn["log"] - background).max() > 60  # a visibly different colour
    assert np.abs(drawn["rank"] - background).max() > 60
    js(page, "explorer.setControl('scale', 'log');")
    note = page.find_element("id", "colorbar-note").text
    assert "linear below 1e-3 × max" in note
    labels = page.find_element("id", "ticks").text.split()
    assert "0" in labels and labels[0].startswith("-") and any(x.startswith("1e-") for x in labels)
    # the bar's colours are the map's: its pixel at a tick's position is that value's colour
    ticks = js(page, "return explorer.scale().ticks;")
    width = js(page, "return document.getElementById('colorbar').width;")
    for k in ticks:
        x = min(int(round(k["pos"] * (width - 1))), width - 1)
        bar = js(page, "return Array.from(document.getElementById('colorbar').getContext('2d')"
                 ".getImageData(arguments[0], 6, 1, 1).data.slice(0, 3));", x)  # fmt: skip
        assert np.abs(np.subtract(bar, js(page, "return explorer.colourAt(arguments[0]);",
                                          k["v"]))).max() <= 6, k  # fmt: skip
    assert severe(page) == []


@pytest.mark.browser
def test_the_default_scale_leaves_the_selection_out(page, study):
    assert js(page, "return explorer.state.noSelf;") is True
    assert page.find_element("id", "noself").is_selected()
    sel = [r * 56 + c for r in range(10, 13) for c in range(10, 13)]  # a 3x3 square
    js(page, "explorer.select(arguments[0]);", sel)
    row = np.asarray(study.map("cross", S0), np.float64)[sel].mean(0)  # their mean row
    np.testing.assert_allclose(
        js(page, "return explorer.heatValues();"), row, rtol=1e-5, atol=1e-12
    )
    scale = js(page, "return explorer.scale();")
    others = np.abs(np.delete(row, sel)).max()
    top = sel[int(np.argmax(np.abs(row[sel])))]
    assert abs(row[top]) > 1.5 * others  # the selection's own values are far above the others
    assert scale["hi"] == pytest.approx(others, rel=1e-6) and scale["lo"] == -scale["hi"]
    caption = page.find_element("id", "caption").text
    assert "The selected patches are outlined and may be off the scale" in caption
    # off the scale: the selected cell is drawn in the end colour (clipped)
    js(page, "explorer.setControl('underlay', 'none');")
    end = js(page, "return explorer.colourAt(arguments[0]);", scale["hi"])
    assert js(page, "return explorer.colourAt(arguments[0]);", row[top]) == end
    px = js(page, "return explorer.pixelAt('heat', arguments[0]);", top)
    assert np.abs(np.subtract(px, end)).max() <= 1  # the outline leaves the cell's colour seen
    js(page, "explorer.setControl('noself', false);")  # the checkbox puts it back in
    assert js(page, "return explorer.scale().hi;") == pytest.approx(np.abs(row).max(), rel=1e-6)
    assert "includes the selected patches" in page.find_element("id", "caption").text
    assert severe(page) == []


@pytest.mark.browser
def test_a_grey_image_under_the_map(page, study):
    """Over the grey image a pixel is 0.75 x the scale's colour + 0.25 x a grey in [0.25, 0.75];
    over the image in colour (noise) the part under the map is not grey."""
    cells = list(range(0, 3136, 97))
    row = np.asarray(study.map("cross", S0), np.float64)[CENTRE]

    def residual(alpha=0.75):
        px = np.asarray(js(page, "return arguments[0].map((p) => explorer.pixelAt('heat', p));",
                           cells), np.float64)  # fmt: skip
        col = np.asarray(js(page, "return arguments[0].map((v) => explorer.colourAt(v));",
                            row[cells].tolist()), np.float64)  # fmt: skip
        return (px - alpha * np.floor(col)) / (1 - alpha) / 255

    from selenium.webdriver.support.ui import WebDriverWait

    heat = page.find_element("id", "heat")  # drawn over the image once it has loaded
    WebDriverWait(page, 20).until(lambda d: heat.get_attribute("data-underlay") == "grey:0")
    grey = residual()
    assert np.abs(grey - grey.mean(1, keepdims=True)).max() < 0.03  # R = G = B
    assert grey.min() > 0.25 - 0.03 and grey.max() < 0.75 + 0.03  # dimmed
    assert grey.std() > 0.01  # the image, not a flat fill
    caption = page.find_element("id", "caption").text
    assert "Drawn over image “noise 0”" in caption and "in grey (desaturated, dimmed)" in caption
    assert "opacity 0.75" in caption
    js(page, "explorer.setControl('opacity', '0.5');")  # more of the image shows through
    half = residual(0.5)
    assert np.abs(half - grey).max() < 0.03  # the same grey image under a map at opacity 0.5
    assert "opacity 0.5" in page.find_element("id", "caption").text
    js(page, "explorer.setControl('opacity', '0.75');")
    js(page, "explorer.setControl('underlay', 'colour');")
    assert heat.get_attribute("data-underlay") == "colour:0"
    colour = residual()
    assert np.abs(colour - colour.mean(1, keepdims=True)).max() > 0.2  # the noise's colours
    assert "shown in colour" in page.find_element("id", "caption").text
    js(page, "explorer.setControl('underlay', 'none');")
    assert heat.get_attribute("data-underlay") == "none"
    assert "No image under the map" in page.find_element("id", "caption").text
    assert severe(page) == []


# ------------------------------------------------------------------------------------------------
# side by side
# ------------------------------------------------------------------------------------------------


@pytest.mark.browser
def test_side_by_side_scales_shared_or_per_panel(page, study):
    js(page, "explorer.setControl('mode', 'compare');")
    js(page, "explorer.setControl('blockB', arguments[0]);", S2)  # stage 0 beside stage 2
    a = np.asarray(js(page, "return explorer.heatValues();"))
    b = np.asarray(js(page, "return explorer.heatValuesB();"))
    sel_b = [
        int(p) for p in page.find_element("id", "heatB").get_attribute("data-selected").split(",")
    ]
    top_a, top_b = np.abs(np.delete(a, CENTRE)).max(), np.abs(np.delete(b, sel_b)).max()
    assert top_b > 5 * top_a  # the stage-2 map is larger: one scale would blank the left panel

    def scales():
        return js(page, "return [explorer.perPanel(), explorer.scale().hi, explorer.scaleB().hi];")

    # the default: per panel, as the panels are of different stages
    assert js(page, "return explorer.state.compareScale;") == "auto"
    per, ha, hb = scales()
    assert per and ha == pytest.approx(top_a, rel=1e-6) and hb == pytest.approx(top_b, rel=1e-6)
    assert page.find_element("id", "colorbar-b").is_displayed()
    assert "Each panel on its own colour scale" in page.find_element("id", "caption-b").text
    assert "different stages" in page.find_element("id", "caption-b").text
    js(page, "explorer.setControl('comparescale', 'shared');")
    per, ha, hb = scales()
    assert not per and ha == hb == pytest.approx(max(top_a, top_b), rel=1e-6)
    assert not page.find_element("id", "colorbar-b").is_displayed()
    assert "One colour scale for both panels" in page.find_element("id", "caption-b").text
    # the same stage: shared by default
    js(page, "explorer.setControl('comparescale', 'auto');")
    js(page, "explorer.setControl('blockB', arguments[0]);", S0b)
    b = np.asarray(js(page, "return explorer.heatValuesB();"))
    per, ha, hb = scales()
    both = max(top_a, np.abs(np.delete(b, CENTRE)).max())
    assert not per and ha == hb == pytest.approx(both, rel=1e-6)
    js(page, "explorer.setControl('comparescale', 'panel');")
    per, ha, hb = scales()
    assert per and ha == pytest.approx(top_a, rel=1e-6)
    assert hb == pytest.approx(np.abs(np.delete(b, CENTRE)).max(), rel=1e-6)
    # each panel drawn on its own scale: the right panel's pixel is its own scale's colour
    js(page, "explorer.setControl('underlay', 'none');")
    p = CENTRE + 3
    px = js(page, "return explorer.pixelAt('heatB', arguments[0]);", p)
    want = js(page, "return explorer.colourAt(arguments[0], 'B');", b[p])
    assert np.abs(np.subtract(px, want)).max() <= 1
    assert severe(page) == []


# ------------------------------------------------------------------------------------------------
# never stale
# ------------------------------------------------------------------------------------------------


@pytest.mark.browser
def test_the_panel_says_a_map_is_loading_and_shows_errors(page, monkeypatch):
    from selenium.webdriver.support.ui import WebDriverWait

    from jaxmamba.views.protocol import ViewAPI

    gate, fail = threading.Event(), []
    handle = ViewAPI.handle

    def held(self, method, args):
        if method == "heat":
            gate.wait(60)
            if fail:
                raise ValueError("planted failure")
        return handle(self, method, args)

    monkeypatch.setattr(ViewAPI, "handle", held)
    overlay = page.find_element("id", "loading")
    page.execute_script("explorer.setControl('block', arguments[0]);", S0b)
    WebDriverWait(page, 20).until(lambda d: overlay.is_displayed())
    assert page.execute_script("return explorer.loading;") is True
    assert overlay.text.startswith(f"loading the mean map of {S0b}")
    assert (
        page.execute_script("return getComputedStyle(document.getElementById('heat')).opacity;")
        == "0.3"
    )
    assert page.find_element("id", "heat").get_attribute("data-block") == S0  # still the old map
    gate.set()
    wait_idle(page)
    assert not overlay.is_displayed() and page.execute_script("return explorer.loading;") is False
    assert page.find_element("id", "heat").get_attribute("data-block") == S0b
    # a failure: said over the dimmed map and in the status line
    gate.clear()
    fail.append(1)
    page.execute_script("explorer.setControl('stage', '2');")  # a map not asked for before
    gate.set()
    WebDriverWait(page, 20).until(lambda d: d.execute_script("return explorer.error;"))
    WebDriverWait(page, 20).until(lambda d: not d.execute_script("return explorer.loading;"))
    assert overlay.is_displayed() and "planted failure" in overlay.text
    assert "planted failure" in page.find_element("id", "status").text
    assert page.find_element("id", "heat").get_attribute("data-block") == S0b  # the old map, dimmed
