"""A study and its companion side by side in the explorer: a VMamba study with a Vim study of the
same images (its sub-folder ``vim``, recorded by ``add_companions``).  The right panel's
"study" control shows the companion: its maps are the companion's (``Study.heat`` of the
selection mapped by image area), the class token selected there has nothing on a VMamba grid,
each panel gets its own colour scale (two models), the offline export carries the companion and
answers like the server, and a page of one study shows no study control."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import js, severe, wait_idle

import jaxmamba
from jaxmamba.errors import ExplorerError
from jaxmamba.study import Study, add_companions, write_study
from jaxmamba.study.reader import map_selection
from jaxmamba.views.export import estimate_export_bytes, export, read_explorer
from jaxmamba.views.server import ServerThread

A_BLOCK = "layers.1.blocks.0"  # the VMamba study's 8 x 8 block
B_BLOCK = "layers.1"  # the Vim companion's 4 x 4 patches + its class token
CLS = 16


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """vmamba_test (stages 1 and 2: 8x8, 4x4) and vim_test (4x4 + CLS, 2 layers) over the same
    3 images at 64 x 64; the Vim study is the VMamba study's companion ``vim``."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 64, 64, 3)).astype(np.float32)
    shown = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)  # one display array for both
    root = tmp_path_factory.mktemp("pair") / "s"
    write_study(root, jaxmamba.create_model("vmamba_test"), x, shown, orders=["cross"],
                blocks=[1, 2], methods=["pca"], single_images=0, progress=False)  # fmt: skip
    write_study(root / "vim", jaxmamba.create_model("vim_test"), x, shown, orders=["raster"],
                methods=["pca"], single_images=0, route_maps=True, progress=False)  # fmt: skip
    study = add_companions(root, ["vim"])
    return study, Study(root / "vim")


def _side_by_side(drv, vim: Study, *, close: float = 0.0) -> None:
    """Open the companion beside the study (the button under the title), select a patch on the
    left, then the companion's class token on the right; check the maps and the words."""
    from selenium.webdriver.common.action_chains import ActionChains

    assert js(drv, "return !document.getElementById('companions').classList.contains('hidden')")
    js(drv, "document.querySelector('#companions button').click()")
    state = js(drv, "return explorer.state")
    assert state["mode"] == "compare" and state["B"]["study"] == 1
    assert js(drv, "return !document.getElementById('studyB-ctl').classList.contains('hidden')")
    js(drv, "explorer.setControl('block', arguments[0]);"
            "explorer.setControl('blockB', arguments[1])", A_BLOCK, B_BLOCK)  # fmt: skip
    js(drv, "return explorer.select([27])")  # patch (3, 3) of the 8 x 8 grid
    sel_b = map_selection([27], Study(vim.path.parent).block(A_BLOCK), vim.block(B_BLOCK))
    assert sel_b == [5]  # (3, 3) of 8 x 8 is (1, 1) of 4 x 4
    want = np.asarray(vim.heat("raster", B_BLOCK, sel_b))
    got = np.asarray(js(drv, "return explorer.heatValuesB()"), np.float64)
    np.testing.assert_allclose(got, want, rtol=close, atol=close * np.abs(want).max() + 1e-7)
    assert js(drv, "return explorer.perPanel()")  # two models: a colour scale each
    scales = js(drv, "return document.getElementById('comparescale').selectedOptions[0].text")
    assert "two models" in scales
    caption_b = js(drv, "return document.getElementById('caption-b').textContent")
    assert caption_b.startswith("Panel B: companion vim") and "directions averaged" in caption_b
    assert "companion vim" in js(drv, "return document.getElementById('heat-title-b').textContent")
    # the class token's cell on the right: nothing on the VMamba grid, its row on the right
    cv = drv.find_element("id", "heatB")
    p = js(drv, "return explorer.cellPosition('heatB', arguments[0])", CLS)
    w, h = cv.size["width"], cv.size["height"]
    ActionChains(drv).move_to_element_with_offset(
        cv, int(p["x"] - w / 2), int(p["y"] - h / 2)).click().perform()  # fmt: skip
    wait_idle(drv)
    assert js(drv, "return explorer.state.selection") == []
    assert all(v is None for v in js(drv, "return explorer.heatValues()"))  # NaN: nothing
    assert "nothing selected" in js(drv, "return document.getElementById('heat-title').textContent")
    want = np.asarray(vim.heat("raster", B_BLOCK, [CLS]))
    got = np.asarray(js(drv, "return explorer.heatValuesB()"), np.float64)
    np.testing.assert_allclose(got, want, rtol=close, atol=close * np.abs(want).max() + 1e-7)
    assert severe(drv) == []


def test_served_pair_side_by_side(pair, chromium):
    """The served page of the study and its study.json companion: panel B on the companion
    answers the companion's maps; its class token maps to nothing on the left."""
    study, vim = pair
    with ServerThread(study) as server:
        chromium.get(server.url)
        wait_idle(chromium)
        meta = js(chromium, "return explorer.meta()")
        assert [(c["index"], c["folder"], c["same_images"]) for c in meta["companions"]] == [
            (1, "vim", True)
        ]
        _side_by_side(chromium, vim)


def test_exported_pair_answers_like_the_server(pair, chromium, tmp_path):
    """The offline page holds the companion (every order and block, float16 Vim maps) and
    answers panel B like the server; --no-companions leaves it out; the size budget counts it."""
    study, vim = pair
    page = export(study, tmp_path / "pair.html", say=None)
    data = read_explorer(page)
    (c,) = data["companions"]
    assert c["meta"]["index"] == 1 and c["meta"]["folder"] == "vim"
    assert sorted(c["data"]["raster"]) == [b.name for b in vim.blocks]
    assert c["data"]["raster"][B_BLOCK]["attn"]["dtype"] == "float16"
    assert data["meta"]["companions"][0]["orders"][0]["name"] == "raster"
    alone = read_explorer(export(study, tmp_path / "alone.html", companions=False, say=None))
    assert "companions" not in alone and "companions" not in alone["meta"]
    without, both = estimate_export_bytes(study), estimate_export_bytes(study, companions=[vim])
    assert both > without
    with pytest.raises(ExplorerError, match="no-companions"):
        export(study, tmp_path / "big.html", max_mb=(without + both) / 2e6, say=None)
    chromium.get(page.as_uri())
    wait_idle(chromium)
    _side_by_side(chromium, vim, close=2e-3)  # float16 maps


def test_single_study_pages_have_no_study_control(pair, chromium):
    """A study served alone (companions=[]): no study control, no companion line; a Vim study's
    routes are named forward / backward and its mean is the layer's merge."""
    study, vim = pair
    for s, sum_text in ((study, "sum of routes"), (vim, "directions averaged (the layer's merge)")):
        with ServerThread(s, companions=[]) as server:
            chromium.get(server.url)
            wait_idle(chromium)
            js(chromium, "explorer.setControl('mode', 'compare')")
            assert js(chromium, "return document.getElementById('studyB-ctl').classList"
                                ".contains('hidden')")  # fmt: skip
            assert js(chromium, "return document.getElementById('companions').classList"
                                ".contains('hidden')")  # fmt: skip
            assert "companions" not in js(chromium, "return explorer.meta()")
            routes = js(chromium, "return [...document.getElementById('route').options]"
                                  ".map(o => o.text)")  # fmt: skip
            assert routes[0] == sum_text
            if s is vim:
                assert routes[1:] == ["forward", "backward"]
                caption = js(chromium, "return document.getElementById('caption').textContent")
                assert "directions averaged (the layer's merge)" in caption
    assert severe(chromium) == []
