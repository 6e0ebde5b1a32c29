"""The local server and the notebook widget: answers from the study, refusals, and the served
page in headless Chromium at the paper's scale (a synthetic VMamba-T study at 224x224)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import severe, wait_idle

from jaxmamba.errors import StudyError
from jaxmamba.study import write_synthetic_study

pytest.importorskip("starlette", reason="the [serve] extra is not installed")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """VMamba-T sizes at 224x224: 14 blocks, two of 56x56 (L = 3136), 4 orders, 339 MB."""
    return write_synthetic_study(tmp_path_factory.mktemp("synthetic") / "s")


@pytest.fixture(scope="module")
def client(study):
    from starlette.testclient import TestClient

    from jaxmamba.views.server import app

    return TestClient(app(study), base_url="http://127.0.0.1")


BIG = "layers.0.blocks.1"


def test_meta_and_rows_on_demand(client, study):
    meta = client.get("/api/meta").json()
    assert [o["name"] for o in meta["orders"]] == ["cross", "diagonal", "morton", "spiral"]
    assert len(meta["blocks"]) == 14 and meta["blocks"][0]["grid"] == [56, 56]
    sel = [5, 900, 901, 3000]
    r = client.post("/api/heat", json={"order": "morton", "block": BIG, "patches": sel,
                                       "direction": "query", "route": "sum"})  # fmt: skip
    assert r.status_code == 200 and len(r.content) == 4 * 3136  # L numbers, never L x L
    m = np.asarray(study.map("morton", BIG))
    np.testing.assert_allclose(np.frombuffer(r.content, "<f4"), m[sel].mean(0), rtol=1e-6)
    r = client.get("/api/heat", params={"order": "morton", "block": BIG, "patches": "7,8",
                                        "direction": "source"})  # fmt: skip
    np.testing.assert_allclose(np.frombuffer(r.content, "<f4"), m[:, [7, 8]].mean(1), rtol=1e-6)
    xy = client.get("/api/coords", params={"order": "cross", "block": BIG, "method": "pca"})
    assert len(xy.content) == 3136 * 2 * 4 and json.loads(xy.headers["x-array"])["shape"] == [
        3136,
        2,
    ]
    routes = client.get("/api/routes", params={"order": "spiral", "block": BIG})
    assert np.array_equal(np.frombuffer(routes.content, "<i4").reshape(4, 3136),
                          study.routes("spiral", BIG))  # fmt: skip
    assert client.get("/api/image", params={"index": 2}).content[:4] == b"\x89PNG"
    page = client.get("/")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert client.get("/app.js").status_code == 200


@pytest.mark.parametrize(
    "path, params",
    [
        ("/api/heat", {"order": "../../../etc", "block": BIG, "patches": "1"}),
        ("/api/heat", {"order": "cross", "block": "../../study.json", "patches": "1"}),
        ("/api/coords", {"order": "cross", "block": BIG, "method": "../../../../etc/passwd"}),
        ("/api/heat", {"order": "cross", "block": BIG, "patches": "-1"}),
        ("/api/heat", {"order": "cross", "block": BIG, "patches": "1", "route": "0"}),
        ("/api/image", {"index": "../study.json"}),
        ("/api/nosuchthing", {}),
    ],
)
def test_bad_requests_are_refused_with_a_message(client, path, params):
    r = client.get(path, params=params)
    assert r.status_code == 400 and r.json()["error"]


@pytest.mark.parametrize("path", ["/..%2F..%2Fstudy.json", "/study.json", "/../../etc/passwd",
                                  "/means/cross/layers.0.blocks.0.npy", "/web/app.js"])  # fmt: skip
def test_no_file_outside_the_fixed_list_is_served(client, path):
    assert client.get(path).status_code == 404


def test_foreign_host_header_and_non_local_binding_are_refused(client, study):
    from jaxmamba.views.server import ServerThread

    assert client.get("/api/meta", headers={"host": "evil.example"}).status_code == 400
    for host in ("0.0.0.0", "192.168.1.10", "example.org"):
        with pytest.raises(StudyError, match="loopback"):
            ServerThread(study, host=host)


def test_widget_answers_requests_as_messages(study):
    pytest.importorskip("anywidget", reason="the [notebook] extra is not installed")
    import jaxmamba

    w = jaxmamba.show(study)
    sent = []
    w.send = lambda content, buffers=None: sent.append((content, buffers))
    w.answer({"kind": "jm-request", "id": 7, "method": "heat",
              "args": {"order": "diagonal", "block": BIG, "patches": [10, 11]}})  # fmt: skip
    content, buffers = sent[-1]
    assert content["id"] == 7 and content["kind"] == "jm-answer" and "error" not in content
    m = np.asarray(study.map("diagonal", BIG))
    np.testing.assert_allclose(np.frombuffer(buffers[0], "<f4"), m[[10, 11]].mean(0), rtol=1e-6)
    w.answer({"kind": "jm-request", "id": 8, "method": "meta", "args": {}})
    assert sent[-1][0]["content"]["blocks"][0]["grid"] == [56, 56] and sent[-1][1] is None
    w.answer({"kind": "jm-request", "id": 9, "method": "heat",
              "args": {"order": "../x", "block": BIG, "patches": [1]}})  # fmt: skip
    assert sent[-1][0]["id"] == 9 and "no order" in sent[-1][0]["error"]
    w.answer({"kind": "something else"})  # not ours: ignored
    assert len(sent) == 3
    assert "export default" in w._esm and "JM.widgetSource" in w._esm


@pytest.mark.browser
def test_served_page_at_full_scale(study, chromium):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from jaxmamba.views.server import ServerThread

    with ServerThread(study) as server:
        chromium.get(server.url)
        wait_idle(chromium)
        assert severe(chromium) == []
        heat = chromium.find_element(By.ID, "heat")
        assert heat.get_attribute("data-selected") == str(28 * 56 + 28)  # the centre patch
        before = chromium.execute_script("return explorer.heatValues();")
        hs = heat.size
        cell = hs["width"] / 56
        ActionChains(chromium).move_to_element_with_offset(
            heat, int(3.5 * cell - hs["width"] / 2), int(10.5 * cell - hs["height"] / 2)
        ).click().perform()
        wait_idle(chromium)
        assert heat.get_attribute("data-selected") == str(10 * 56 + 3)
        after = chromium.execute_script("return explorer.heatValues();")
        m = np.asarray(study.map("cross", "layers.0.blocks.0"))
        np.testing.assert_allclose(after, m[10 * 56 + 3], rtol=1e-5, atol=1e-9)
        assert not np.allclose(before, after)
        # a lasso-sized selection, then another stage: the selection follows the image area
        chromium.execute_script("explorer.select(arguments[0]);", list(range(0, 3136, 3)))
        wait_idle(chromium)
        chromium.execute_script("explorer.select([0]);")  # the top-left patch
        wait_idle(chromium)
        chromium.execute_script("explorer.setControl('stage', '3');")
        wait_idle(chromium)
        assert chromium.execute_script("return explorer.state.selection;") == [0]
        moved = chromium.execute_script(
            "return performance.getEntriesByType('resource')"
            ".reduce((s, e) => s + e.transferSize, 0)"
        )
        assert moved < 500_000, moved  # kilobytes per interaction, never a 39 MB map
        assert severe(chromium) == []
