"""The explorer's modes in headless Chromium, served from a real study with single images:
patches of a block (mean or one image), blocks of a stage (inter-block and joint embeddings),
side by side; selection linked by image area across stages; honest colour."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import js, served_page, severe

import jaxmamba
from jaxmamba.study import write_study

pytest.importorskip("starlette", reason="the [serve] extra is not installed")
B2, B2b, B3 = "layers.2.blocks.0", "layers.2.blocks.1", "layers.3.blocks.0"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    models = {
        o: jaxmamba.create_model("vmamba_test", seed=s) for o, s in (("cross", 1), ("spiral", 2))
    }
    x = np.random.default_rng(0).standard_normal((6, 64, 64, 3)).astype(np.float32)
    out = tmp_path_factory.mktemp("modes") / "s"
    return write_study(out, models, x, orders=["cross", "spiral"], blocks=[2, 3], single_images=4,
                       batch_size=6, progress=False)  # fmt: skip


@pytest.fixture
def page(study, chromium):
    with served_page(study, chromium) as drv:
        yield drv


@pytest.mark.browser
def test_patches_mode_mean_and_single_image(page, study):
    assert js(page, "return explorer.state.mode;") == "patches"
    assert page.find_element("id", "heat").get_attribute("data-block") == B2
    js(page, "explorer.select([5]);")
    mean_row = np.asarray(js(page, "return explorer.heatValues();"))
    np.testing.assert_allclose(mean_row, np.asarray(study.map("cross", B2))[5], rtol=1e-5)
    js(page, "explorer.setControl('subject', '2');")  # the third single image
    one = np.asarray(js(page, "return explorer.heatValues();"))
    np.testing.assert_allclose(one, study.single_map("cross", B2, 2)[5], rtol=1e-5, atol=1e-12)
    assert not np.allclose(one, mean_row)
    caption = page.find_element("id", "caption").text
    assert "single image “image 2”" in caption and "Drawn over that image" in caption
    assert js(page, "return explorer.pointCount();") == 16  # this image's rows, embedded
    js(page, "explorer.setControl('subject', 'mean');")
    caption = page.find_element("id", "caption").text
    assert "Mean attention over 6 images" in caption and "“image 0”" in caption  # which image
    assert severe(page) == []


@pytest.mark.browser
def test_blocks_mode_opens_the_clicked_map(page, study):
    js(page, "explorer.setControl('mode', 'blocks');")
    assert js(page, "return explorer.pointCount();") == 2 * 4  # 2 blocks x 4 single images
    assert "Inter-block" in page.find_element("id", "scatter-title").text
    assert "block distinctness" in page.find_element("id", "findings").text
    js(page, "explorer.pick(7);")  # block-major: block 1 (layers.2.blocks.1), image 3
    state = js(
        page, "return [explorer.state.block, explorer.state.subject, explorer.state.selection];"
    )
    assert state[:2] == [B2b, "3"]
    values = np.asarray(js(page, "return explorer.heatValues();"))
    np.testing.assert_allclose(values, study.single_map("cross", B2b, 3)[state[2][0]], rtol=1e-5,
                               atol=1e-12)  # fmt: skip
    js(page, "explorer.setControl('points', 'joint');")
    assert js(page, "return explorer.pointCount();") == 2 * 16  # 2 blocks x 16 patches
    js(page, "explorer.pick(16 + 9);")  # block 1, patch 9, mean map
    values = np.asarray(js(page, "return explorer.heatValues();"))
    np.testing.assert_allclose(values, np.asarray(study.map("cross", B2b))[9], rtol=1e-5)
    assert severe(page) == []


@pytest.mark.browser
def test_side_by_side_shares_one_scale_and_links_by_area(page, study):
    js(page, "explorer.setControl('mode', 'compare');")
    js(page, "explorer.setControl('orderB', 'spiral'); ")
    js(page, "explorer.setControl('blockB', arguments[0]);", B3)
    js(page, "explorer.select([2 * 4 + 3]);")  # stage 2 (4x4): patch (2, 3)
    right = np.asarray(js(page, "return explorer.heatValuesB();"))
    # stage 3 is 2x2: the same image area is patch (1, 1); the right panel is spiral's model
    np.testing.assert_allclose(right, np.asarray(study.map("spiral", B3))[3], rtol=1e-5)
    assert page.find_element("id", "heatB").get_attribute("data-selected") == "3"
    left = np.asarray(js(page, "return explorer.heatValues();"))
    # different stages: a scale per panel by default; one shared scale when asked
    assert js(page, "return explorer.perPanel();") is True
    js(page, "explorer.setControl('comparescale', 'shared');")
    scale = js(page, "return explorer.scale();")
    # the selected patches (left 11, right 3) are left out of the scale
    top = max(np.abs(np.delete(left, 11)).max(), np.abs(np.delete(right, 3)).max())
    assert (
        scale["signed"]
        and np.isclose(scale["hi"], top)
        and scale["lo"] == -scale["hi"]
        and js(page, "return explorer.scaleB().hi;") == scale["hi"]
    )
    # the same stage: shared by default, unless one panel is a single image's map
    js(page, "explorer.setControl('comparescale', 'auto');")
    js(page, "explorer.setControl('blockB', arguments[0]);", B2b)
    assert js(page, "return explorer.perPanel();") is False
    js(page, "explorer.setControl('subjectB', '1');")
    assert js(page, "return explorer.perPanel();") is True
    assert "a mean map beside a single image" in page.find_element("id", "caption-b").text
    assert severe(page) == []


@pytest.mark.browser
def test_stage_switch_keeps_the_image_area(page):
    js(page, "explorer.select([1 * 4 + 1]);")  # stage 2 (4x4): patch (1, 1)
    js(page, "explorer.setControl('stage', '3');")
    assert js(page, "return explorer.state.selection;") == [0]  # 2x2: the patch covering it
    js(page, "explorer.setControl('stage', '2');")
    assert js(page, "return explorer.state.selection;") == [5]  # back: the patch chosen, not (0, 3)
    js(page, "explorer.select([0]);")  # a coarse-grid choice covers several fine patches
    js(page, "explorer.setControl('stage', '3');")
    js(page, "explorer.select([3]);")
    js(page, "explorer.setControl('stage', '2');")
    assert js(page, "return explorer.state.selection;") == [10, 11, 14, 15]
    assert severe(page) == []


@pytest.mark.browser
def test_a_signed_map_draws_zero_at_the_centre_colour(page):
    scale = js(page, "return explorer.scale();")
    assert scale["signed"] and scale["lo"] == -scale["hi"]
    assert js(page, "return explorer.colourAt(0);") == [247, 247, 247]  # white
    both = "return [explorer.colourAt(arguments[0]), explorer.colourAt(-arguments[0])];"
    red, blue = js(page, both, scale["hi"])
    assert red[0] > red[2] and blue[2] > blue[0]
    ticks = page.find_element("id", "ticks").text.split()
    z = ticks.index("0")  # negative labels left of 0, positive ones right of it
    assert z > 0 and all(t.startswith("-") for t in ticks[:z])
    assert not any(t.startswith("-") for t in ticks[z + 1 :])
