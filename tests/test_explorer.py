"""Tests of jaxmamba.views.export: the data structure, the single offline HTML file, the page."""

from __future__ import annotations

import base64
import hashlib
import io
import re

import numpy as np
import pytest
from conftest import severe

from jaxmamba.orders import make_routes
from jaxmamba.views.export import (
    ExplorerError,
    decode,
    encode,
    explorer_data,
    read_explorer,
    render_explorer,
    write_explorer,
)

S0, S1 = "layers.0.blocks.0", "layers.1.blocks.0"


def planted(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(L, L): the top half of the grid attends to the left half, the bottom half to the right."""
    rng = np.random.default_rng(seed)
    l = h * w
    top = np.arange(l) // w < h // 2
    left = (np.arange(l) % w < w // 2).astype(float)
    rows = np.where(top[:, None], left[None], 1.0 - left[None])
    return rows + 0.3 * rng.random((l, l)) - 0.1  # some negative values too


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    route_attn = np.stack([planted(4, 4, k) for k in range(4)])  # (K, L, L)
    mine = np.stack([np.arange(16)[::-1], np.arange(16)])
    return {
        "cross": {
            S0: {"route_attn": route_attn[None].repeat(2, 0), "grid": (4, 4)},  # (B, K, L, L)
            S1: {"attn": planted(2, 2, 9), "grid": (2, 2), "coords": {"pca": rng.random((4, 2))}},
        },
        "mine": {S0: {"attn": planted(4, 4, 5), "grid": (4, 4), "routes": mine}},
        "image": rng.random((32, 32, 3)),
    }


@pytest.fixture(scope="module")
def data(inputs):
    orders = {k: v for k, v in inputs.items() if k != "image"}
    return explorer_data(orders, images=inputs["image"], methods=("pca", "tsne"))


@pytest.fixture(scope="module")
def page(data, tmp_path_factory):
    return write_explorer(tmp_path_factory.mktemp("explorer") / "explore.html", data)


def test_single_offline_file(page):
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", text, re.I)
    assert not re.search(r"@import|url\(", text)
    assert "default-src 'none'" in text  # the page's CSP forbids any network access
    assert len(list(page.parent.iterdir())) == 1
    assert page.stat().st_size < 200_000


def test_embedded_data_round_trips(inputs, data, page):
    back = read_explorer(page)
    assert back == data
    assert back["orders"] == ["cross", "mine"]
    b = back["data"]["cross"][S0]
    route_attn = inputs["cross"][S0]["route_attn"][0]
    expected = [route_attn.sum(0), *route_attn]  # summed map (batch-averaged), then each route
    for enc, m in zip([b["attn"], *b["route_attn"]], expected, strict=True):
        got = decode(enc)
        bound = (m.max(1) - m.min(1))[:, None] / 510 + 1e-6 * np.abs(m).max()
        assert np.all(np.abs(got - m) <= bound)
    assert b["routes"] == make_routes("cross", 4, 4).tolist()
    assert back["data"]["mine"][S0]["routes"] == inputs["mine"][S0]["routes"].tolist()
    assert back["data"]["mine"][S0]["stage"] == 0 and back["data"]["cross"][S1]["stage"] == 1
    assert set(b["coords"]) == {"pca", "tsne"}
    given = inputs["cross"][S1]["coords"]["pca"]
    np.testing.assert_allclose(back["data"]["cross"][S1]["coords"]["pca"], given, rtol=1e-5)


def test_image_is_a_png_data_uri(inputs, data):
    import matplotlib.image

    (im,) = data["images"]
    assert im["src"].startswith("data:image/png;base64,")
    png = base64.b64decode(im["src"].split(",", 1)[1])
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    np.testing.assert_allclose(pixels[..., :3], inputs["image"], atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize(
    ("encoding", "rtol", "atol"), [("float16", 2**-11, 3e-8), ("float32", 1e-7, 0)]
)
def test_float_encodings(encoding, rtol, atol):
    m = np.random.default_rng(0).normal(size=(9, 9)).astype(np.float32)
    np.testing.assert_allclose(decode(encode(m, encoding)), m, rtol=rtol, atol=atol)


def test_uint8_constant_rows_and_bound():
    m = np.vstack([np.full(5, 2.5), np.linspace(-1, 3, 5), np.zeros(5)])
    got = decode(encode(m))
    np.testing.assert_array_equal(got[[0, 2]], m[[0, 2]])
    assert np.max(np.abs(got[1] - m[1])) <= 4 / 510 + 1e-6


def test_unknown_order_has_no_routes_and_list_of_images():
    d = explorer_data(
        {"learned": {"b": {"attn": np.eye(4), "grid": (2, 2)}}},
        images=[np.zeros((4, 4)), np.ones((4, 4, 3), np.uint8)],
    )
    assert d["data"]["learned"]["b"]["routes"] is None
    assert [im["name"] for im in d["images"]] == ["image 0", "image 1"]


def test_script_end_inside_strings_is_escaped(tmp_path):
    name = "</script><script>alert(1)</script>"
    d = explorer_data({"cross": {name: {"attn": np.eye(4), "grid": (2, 2)}}}, title=name)
    text = render_explorer(d)
    assert text.count("</script>") == 2  # the JSON block's and the program's
    assert list(read_explorer(write_explorer(tmp_path / "e.html", d))["data"]["cross"]) == [name]


@pytest.mark.parametrize(
    ("block", "kwargs", "match"),
    [
        ({"attn": np.eye(4), "grid": (2, 3)}, {}, r"L = h·w = 6"),
        ({"grid": (2, 2)}, {}, "needs 'attn'"),
        ({"attn": np.eye(4)}, {}, "needs 'grid'"),
        ({"attn": np.eye(4), "grid": (2, 2), "routes": [[0, 0, 1, 2]]}, {}, "permutations"),
        ({"attn": np.eye(4), "grid": (2, 2), "coords": {"pca": np.zeros((3, 2))}}, {}, "coords"),
        ({"attn": np.eye(4), "grid": (2, 2), "colour": 1}, {}, "unknown keys"),
        ({"attn": np.eye(4), "grid": (2, 2)}, {"methods": ("mds",)}, "unknown methods"),
        ({"attn": np.eye(4), "grid": (2, 2)}, {"encoding": "int4"}, "encoding"),
        ({"attn": np.eye(4) * 1e6, "grid": (2, 2)}, {"encoding": "float16"}, "overflow"),
        ({"attn": np.full((4, 4), np.nan), "grid": (2, 2)}, {"methods": ()}, "NaN"),
    ],
)
def test_errors(block, kwargs, match):
    with pytest.raises(ExplorerError, match=match):
        explorer_data({"cross": {"b": block}}, **kwargs)


# ------------------------------------------------------------------------------------------------
# the page in headless Chromium
# ------------------------------------------------------------------------------------------------


def heat_hash(drv) -> str:
    url = drv.execute_script("return document.getElementById('heat').toDataURL();")
    return hashlib.sha1(url.encode()).hexdigest()


@pytest.mark.browser
def test_page_in_chromium(chromium, inputs, page):
    driver = chromium
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return !!(window.explorer && window.explorer.ready);")
    )
    assert severe(driver) == []
    heat = driver.find_element(By.ID, "heat")
    scatter = driver.find_element(By.ID, "scatter")
    assert heat.get_attribute("data-selected") == "10"  # the centre patch of the 4x4 grid
    assert heat.get_attribute("data-block") == S0

    # the page decodes the uint8 rows as Python does
    m = decode(read_explorer(page)["data"]["cross"][S0]["attn"])
    np.testing.assert_allclose(
        driver.execute_script("return explorer.row(3);"), m[3], rtol=1e-6, atol=1e-6
    )

    # click a scatter point that has no close neighbour: it becomes the selection
    pos = driver.execute_script(
        "return Array.from({length: 16}, (_, p) => explorer.pointPosition(p));"
    )
    xy = np.array([[q["x"], q["y"]] for q in pos])
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(16) * 1e9
    p = int(next(i for i in np.argsort(-dist.min(1)) if i != 10))
    assert dist[p].min() > 10
    before = heat_hash(driver)
    size = scatter.size
    ActionChains(driver).move_to_element_with_offset(
        scatter, int(round(xy[p, 0] - size["width"] / 2)), int(round(xy[p, 1] - size["height"] / 2))
    ).click().perform()
    assert heat.get_attribute("data-selected") == str(p)
    assert heat_hash(driver) != before
    np.testing.assert_allclose(
        driver.execute_script("return explorer.heatValues();"), m[p], rtol=1e-6, atol=1e-6
    )

    # click a grid cell (row 3, col 0) of the heat map: that patch is selected
    hs = heat.size
    cell = hs["width"] / 4
    ActionChains(driver).move_to_element_with_offset(
        heat, int(0.5 * cell - hs["width"] / 2), int(3.5 * cell - hs["height"] / 2)
    ).click().perform()
    assert heat.get_attribute("data-selected") == "12"

    # lasso around the whole scatterplot: all patches, heat map = mean row = column means
    w, h = size["width"], size["height"]
    chain = ActionChains(driver).move_to_element_with_offset(scatter, -w // 2 + 2, -h // 2 + 2)
    chain.click_and_hold()
    for dx, dy in ((w - 4, 0), (0, h - 4), (-(w - 4), 0), (0, -(h - 8))):
        chain.move_by_offset(dx, dy)
    chain.release().perform()
    assert len(heat.get_attribute("data-selected").split(",")) == 16
    np.testing.assert_allclose(
        driver.execute_script("return explorer.heatValues();"), m.mean(0), rtol=1e-5, atol=1e-6
    )

    # switch route, direction, block, order; no errors anywhere
    for control, value in (
        ("route", "2"),
        ("direction", "source"),
        ("colorby", "scan"),
        ("showpath", None),
        ("block", S1),
        ("order", "mine"),
        ("method", "tsne"),
    ):
        if value is None:
            driver.find_element(By.ID, control).click()
        else:
            driver.execute_script(
                "explorer.setControl(arguments[0], arguments[1]);", control, value
            )
    assert heat.get_attribute("data-block") == S0  # "mine" has only stage 0
    assert driver.execute_script("return explorer.state.order;") == "mine"
    assert severe(driver) == []


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from jaxmamba.study import write_synthetic_study

    return write_synthetic_study(tmp_path_factory.mktemp("synthetic") / "s")  # VMamba-T, 224


def test_export_refuses_above_its_budget_and_writes_nothing(synthetic, tmp_path, capsys):
    from jaxmamba.views.export import estimate_export_bytes, export

    out = tmp_path / "all.html"
    assert estimate_export_bytes(synthetic) > 100e6  # 4 orders x 14 blocks at 224x224
    with pytest.raises(ExplorerError, match=r"about \d+ MB, above --max-mb 100.*jaxmamba serve"):
        export(synthetic, out)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExplorerError, match="above --max-mb 1"):
        export(synthetic, out, blocks=[1], max_mb=1)
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_subset_holds_the_study_maps(synthetic, tmp_path, capsys):
    from jaxmamba.views.export import estimate_export_bytes, export

    out = export(synthetic, tmp_path / "small.html", orders=["spiral"], blocks=[2, 3])
    said = capsys.readouterr().out
    size = out.stat().st_size
    assert f"about {estimate_export_bytes(synthetic, ['spiral'], [2, 3]) / 1e6:.1f} MB" in said
    assert 0.8 < size / estimate_export_bytes(synthetic, ["spiral"], [2, 3]) < 1.2
    data = read_explorer(out)
    assert data["orders"] == ["spiral"] and len(data["data"]["spiral"]) == 10
    name = "layers.2.blocks.3"
    m = np.asarray(synthetic.map("spiral", name))
    step = (m.max(1) - m.min(1)) / 255
    assert np.all(
        np.abs(decode(data["data"]["spiral"][name]["attn"]) - m) <= step[:, None] / 2 + 1e-9
    )
    with pytest.raises(ExplorerError, match="exists"):
        export(synthetic, out, orders=["spiral"], blocks=[3])
    export(synthetic, out, orders=["spiral"], blocks=[3], overwrite=True)  # our page: replaced
    (tmp_path / "notes.html").write_text("<p>mine</p>")
    with pytest.raises(ExplorerError, match="not an explorer page jaxmamba wrote"):
        export(synthetic, tmp_path / "notes.html", blocks=[3], overwrite=True)
    assert (tmp_path / "notes.html").read_text() == "<p>mine</p>"
