"""The explorer on a Vim study (one stage of isotropic layers, each map class-last: the grid's
patches row-major, then the class token at ``cls = h·w``): the page opens with the class token
selected, its cell beside the grid is selectable and coloured on the patches' scale, the
scatterplot, overview, matrix and blocks modes take the class token, and the offline export and
the widget answer like the server.  One small ``vim_test`` study (4x4 patches + CLS, 2 layers)
for the module."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import js, served_page, severe, wait_idle

import jaxmamba
from jaxmamba.study import write_study

L0, L1 = "layers.0", "layers.1"
CLS = 16  # 4 x 4 patches, then the class token


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """vim_test over 3 random images at 64 x 64 (4 x 4 patches), orders raster and spiral, route
    maps and two single images kept."""
    x = np.random.default_rng(0).standard_normal((3, 64, 64, 3)).astype(np.float32)
    return write_study(tmp_path_factory.mktemp("vim") / "s", jaxmamba.create_model("vim_test"), x,
                       orders=["raster", "spiral"], methods=["pca"], single_images=[0, 1],
                       route_maps=True, progress=False)  # fmt: skip


def _click(drv, element, x: float, y: float, shift: bool = False) -> None:
    """A click at (x, y) CSS pixels from the element's top-left corner (shift held or not)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    w, h = element.size["width"], element.size["height"]
    chain = ActionChains(drv)
    if shift:
        chain = chain.key_down(Keys.SHIFT)
    chain = chain.move_to_element_with_offset(element, int(x - w / 2), int(y - h / 2)).click()
    if shift:
        chain = chain.key_up(Keys.SHIFT)
    chain.perform()
    wait_idle(drv)


def _heat(study, order, block, patches, subject="mean") -> np.ndarray:
    return np.asarray(study.heat(order, block, patches, subject=subject))


def test_served_vim_study_opens_on_the_class_token(study, chromium):
    """The class token selected first, its row as the server computes it; its CLS cell coloured
    on the patches' scale (which leaves it out); clicks on the cell and on a patch select them."""
    from selenium.webdriver.common.by import By

    with served_page(study, chromium) as drv:
        meta = drv.execute_script("return explorer.meta();")
        assert [b["cls"] for b in meta["blocks"]] == [CLS, CLS]
        state = drv.execute_script("return explorer.state;")
        assert (state["block"], state["selection"]) == (L0, [CLS])
        got = drv.execute_script("return explorer.heatValues();")
        assert len(got) == CLS + 1
        np.testing.assert_allclose(got, _heat(study, "raster", L0, [CLS]), rtol=1e-6, atol=1e-9)
        heat = drv.find_element(By.ID, "heat")
        assert heat.get_attribute("data-cls") == str(CLS)
        assert heat.get_attribute("data-selected") == str(CLS)
        caption = drv.find_element(By.ID, "caption").text
        assert "class token: what it reads from each patch" in caption and "Vim layer" in caption
        assert "CLS cell" in caption and "never sets it" in caption
        assert "Depth: early layers" in drv.find_element(By.ID, "findings").text
        # the scale: the patches only (the class token's own value left out), its cell on it
        sc = drv.execute_script("return explorer.scale();")
        assert sc["dataHi"] == pytest.approx(max(got[:CLS]), rel=1e-6)
        js(drv, "explorer.setControl('underlay', 'none');")
        want = drv.execute_script(f"return explorer.colourAt(explorer.heatValues()[{CLS}]);")
        drawn = drv.execute_script(f"return explorer.pixelAt('heat', {CLS});")
        assert np.abs(np.subtract(drawn, want)).max() <= 2
        # a patch, then shift-click on the class token's cell: both selected
        pos = drv.execute_script("return explorer.cellPosition('heat', 5);")
        _click(drv, heat, pos["x"], pos["y"])
        assert drv.execute_script("return explorer.state.selection;") == [5]
        np.testing.assert_allclose(drv.execute_script("return explorer.heatValues();"),
                                   _heat(study, "raster", L0, [5]), rtol=1e-6,
                                   atol=1e-9)  # fmt: skip
        pos = drv.execute_script(f"return explorer.cellPosition('heat', {CLS});")
        _click(drv, heat, pos["x"], pos["y"], shift=True)
        assert sorted(drv.execute_script("return explorer.state.selection;")) == [5, CLS]
        np.testing.assert_allclose(drv.execute_script("return explorer.heatValues();"),
                                   _heat(study, "raster", L0, [5, CLS]), rtol=1e-6,
                                   atol=1e-9)  # fmt: skip
        _click(drv, heat, pos["x"], pos["y"])
        assert drv.execute_script("return explorer.state.selection;") == [CLS]
        # the scatterplot: 17 points, the class token's pickable
        assert drv.execute_script("return explorer.pointCount();") == CLS + 1
        js(drv, "explorer.select([0]);")
        p = drv.execute_script(f"return explorer.pointPosition({CLS});")
        _click(drv, drv.find_element(By.ID, "scatter"), p["x"], p["y"])
        assert drv.execute_script("return explorer.state.selection;") == [CLS]
        # a single image's map of the class token
        js(drv, "explorer.setControl('subject', '1');")
        np.testing.assert_allclose(drv.execute_script("return explorer.heatValues();"),
                                   _heat(study, "raster", L0, [CLS], 1), rtol=1e-5,
                                   atol=1e-8)  # fmt: skip
        assert severe(drv) == []


def test_vim_overview_matrix_blocks_and_compare(study, chromium):
    """The overview: one panel per layer, each with its class token selected (the class token
    to the class token); the matrix of L = h·w + 1; the blocks mode over the layers; side by
    side, the right panel's class token."""
    from selenium.webdriver.common.by import By

    with served_page(study, chromium) as drv:
        js(drv, "explorer.setControl('mode', 'overview');")
        panels = drv.find_elements(By.CSS_SELECTOR, "#overview canvas")
        assert [p.get_attribute("data-block") for p in panels] == [L0, L1]
        assert [p.get_attribute("data-cls") for p in panels] == [str(CLS)] * 2
        assert [p.get_attribute("data-selected") for p in panels] == [str(CLS)] * 2
        ov = drv.execute_script("return explorer.overview();")
        values, parts = study.overview("raster", L0, [CLS])
        assert ov["blocks"] == parts
        np.testing.assert_allclose(ov["values"], values, rtol=1e-6, atol=1e-9)
        assert "class token to each layer's class token" in drv.find_element(
            By.ID, "overview-caption").text  # fmt: skip
        js(drv, "explorer.setControl('mode', 'matrix');")
        m = drv.execute_script("return explorer.matrix();")
        assert (m["L"], m["n"]) == (CLS + 1, CLS + 1)
        assert "class token (not on the grid) is at scan position 8" in drv.find_element(
            By.ID, "matrix-caption").text  # fmt: skip
        js(drv, "explorer.setControl('mode', 'blocks');")
        assert drv.execute_script("return explorer.pointCount();") == 2 * 2  # 2 layers x 2 images
        js(drv, "explorer.setControl('points', 'joint');")
        assert drv.execute_script("return explorer.pointCount();") == 2 * (CLS + 1)
        js(drv, f"explorer.pick({CLS + 1 + CLS});")  # layers.1's class token
        state = drv.execute_script("return explorer.state;")
        assert (state["mode"], state["block"], state["selection"]) == ("blocks", L1, [CLS])
        js(drv, "explorer.setControl('mode', 'compare');")
        js(drv, "explorer.setControl('blockB', arguments[0]);", L0)
        assert drv.find_element(By.ID, "heatB").get_attribute("data-selected") == str(CLS)
        np.testing.assert_allclose(drv.execute_script("return explorer.heatValuesB();"),
                                   _heat(study, "spiral", L0, [CLS]), rtol=1e-6,
                                   atol=1e-9)  # fmt: skip
        assert severe(drv) == []


def test_vim_export_answers_like_the_server(study, chromium, tmp_path):
    """The offline page of a Vim study: its entries carry cls, it opens on the class token and
    its maps are the server's (stored as float16: relative 2^-11)."""
    from selenium.webdriver.common.by import By

    from jaxmamba.views.export import decode, export, read_explorer

    page = export(study, tmp_path / "vim.html", route_maps=True, say=None)
    data = read_explorer(page)
    entry = data["data"]["raster"][L0]
    assert entry["cls"] == CLS and len(entry["routes"][0]) == CLS + 1
    assert entry["routes"] == study.routes("raster", L0).tolist()
    a, ref = decode(entry["attn"]), np.asarray(study.map("raster", L0))
    assert entry["attn"]["dtype"] == "float16"  # uint8 steps would flatten the patches' entries
    np.testing.assert_allclose(a, ref, rtol=2**-10, atol=1e-7)
    chromium.get(page.as_uri())
    wait_idle(chromium)
    assert chromium.execute_script("return explorer.state.selection;") == [CLS]
    for sel in ([CLS], [3, CLS]):
        js(chromium, "explorer.select(arguments[0]);", sel)
        got = chromium.execute_script("return explorer.heatValues();")
        np.testing.assert_allclose(got, _heat(study, "raster", L0, sel), rtol=2**-10, atol=1e-7)
    js(chromium, "explorer.setControl('mode', 'overview');")
    panels = chromium.find_elements(By.CSS_SELECTOR, "#overview canvas")
    assert [p.get_attribute("data-selected") for p in panels] == ["3," + str(CLS)] * 2
    js(chromium, "explorer.setControl('mode', 'matrix');")
    assert chromium.execute_script("return explorer.matrix().L;") == CLS + 1
    assert severe(chromium) == []


def test_vim_widget_answers_like_the_server(study):
    """The notebook widget's answers for a Vim study: the meta's cls, the class token's row."""
    pytest.importorskip("anywidget", reason="the [notebook] extra is not installed")
    from jaxmamba.views.widget import show

    w, sent = show(study), []
    w.send = lambda content, buffers=None: sent.append((content, buffers))
    w.answer({"kind": "jm-request", "id": 1, "method": "meta", "args": {}})
    assert [b["cls"] for b in sent[-1][0]["content"]["blocks"]] == [CLS, CLS]
    w.answer({"kind": "jm-request", "id": 2, "method": "heat",
              "args": {"order": "spiral", "block": L1, "patches": [CLS]}})  # fmt: skip
    got = np.frombuffer(bytes(sent[-1][1][0]), "<f4")
    np.testing.assert_array_equal(got, _heat(study, "spiral", L1, [CLS]).astype(np.float32))
