"""The matrix view (a block's mean map in scan order, pooled on the server) and the blocks overview
(the selection's map in every block): float64 references, strict arguments, the offline page's
JavaScript pooling against the server's, and both views served in headless Chromium, moving only
pooled data."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction

import numpy as np
import pytest
from conftest import severe, wait_idle

import jaxmamba
from jaxmamba.errors import StudyError
from jaxmamba.study import map_selection, write_study, write_synthetic_study
from jaxmamba.views.protocol import ViewAPI
from jaxmamba.views.web import web_file

S0 = "layers.0.blocks.0"  # 16 x 16 at 64 x 64 (L = 256)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """vmamba_test over 3 random images at 64 x 64, two orders, per-route maps kept."""
    x = np.random.default_rng(1).standard_normal((3, 64, 64, 3)).astype(np.float32)
    model = jaxmamba.create_model("vmamba_test")
    return write_study(tmp_path_factory.mktemp("routes") / "s", model,
                       x, orders=["cross", "spiral"], route_maps=True, single_images=[],
                       progress=False)  # fmt: skip
    # (no single images: they cost 100 s more on this CPU)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """VMamba-T sizes at 224 x 224 (14 blocks, two of 56 x 56), no per-route maps."""
    return write_synthetic_study(tmp_path_factory.mktemp("synthetic") / "s",
                                 orders=["cross", "spiral"], n_images=2)  # fmt: skip


def pooled64(a: np.ndarray, perm: np.ndarray, f: int) -> np.ndarray:
    """Reference: ``M[t, s] = a[perm[t], perm[s]]`` in float64, each f x f tile's mean taken
    tile by tile (a short last tile: the mean of the entries it has)."""
    m = np.asarray(a, np.float64)[np.ix_(perm, perm)]
    n = -(-len(m) // f)
    return np.array([[m[i * f : (i + 1) * f, j * f : (j + 1) * f].mean() for j in range(n)]
                     for i in range(n)])  # fmt: skip


def covered64(patches, src, dst) -> list[int]:
    """Reference: the patches of grid ``dst`` whose image area overlaps (with positive area)
    that of one of ``patches`` of grid ``src`` (exact fractions of the image)."""
    out = set()
    for p in patches:
        r, c = divmod(p, src[1])
        for q in range(dst[0] * dst[1]):
            rr, cc = divmod(q, dst[1])
            rows = min(Fraction(r + 1, src[0]), Fraction(rr + 1, dst[0])) > max(
                Fraction(r, src[0]), Fraction(rr, dst[0])
            )
            cols = min(Fraction(c + 1, src[1]), Fraction(cc + 1, dst[1])) > max(
                Fraction(c, src[1]), Fraction(cc, dst[1])
            )
            if rows and cols:
                out.add(q)
    return sorted(out)


@pytest.mark.parametrize("route, coords, size", [("sum", None, 512), ("sum", 1, 100),
                                                 (0, None, 100), (3, None, 16), (2, 0, 256),
                                                 (1, 3, 37)])  # fmt: skip
@pytest.mark.parametrize("order", ["cross", "spiral"])
def test_matrix_is_the_pooled_permuted_map(study, order, route, coords, size):
    api = ViewAPI(study)
    args = {"order": order, "block": S0, "route": route, "size": size}
    if coords is not None:
        args["coords"] = str(coords)  # a query string's digits are taken too
    content, payload = api.handle("matrix", args)
    used = coords if coords is not None else (0 if route == "sum" else route)
    l = 256
    f = -(-l // size)
    n = -(-l // f)
    assert content == {"dtype": "float32", "shape": [n, n], "f": f, "L": l, "coords": used,
                       "route": route, "n": n}  # fmt: skip
    assert len(payload) == 4 * n * n <= 4 * size * size
    got = np.frombuffer(payload, "<f4").reshape(n, n)
    a = study.map(order, S0, None if route == "sum" else route)
    perm = study.routes(order, S0)[used]
    ref = pooled64(a, perm, f)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    if route != "sum" and used == route:  # a causal scan: nothing above the diagonal tiles
        assert np.all(np.triu(got, 1) == 0) and np.abs(np.diag(got)).max() > 0


def test_matrix_partial_last_tile_and_cache(study):
    """L = 256, size 100: f = 3, 86 tiles of which the last holds one scan position."""
    m, f = study.matrix("spiral", S0, 1, size=100)
    assert (m.shape, f) == ((86, 86), 3)
    a = np.asarray(study.map("spiral", S0, 1), np.float64)
    perm = study.routes("spiral", S0)[1]
    last = a[perm[255], perm[255]]  # the 1 x 1 corner tile is that one entry
    assert m[85, 85] == pytest.approx(last, rel=1e-6)
    assert m[85, 0] == pytest.approx(a[perm[255], perm[:3]].mean(), rel=1e-5)
    again, _ = study.matrix("spiral", S0, 1, size=100)
    assert again is m  # served from the cache of pooled matrices, not read again


@pytest.mark.parametrize("direction", ["query", "source"])
@pytest.mark.parametrize("route", ["sum", 2])
def test_overview_is_the_mapped_selection_in_every_block(study, direction, route):
    sel = [17, 18, 33, 200]
    content, payload = ViewAPI(study).handle(
        "overview",
        {"order": "spiral", "block": S0, "patches": sel, "direction": direction, "route": route},
    )
    parts = content["blocks"]
    assert [p["name"] for p in parts] == [b.name for b in study.blocks]
    values = np.frombuffer(payload, "<f4")
    assert content["shape"] == [len(values)] == [sum(b.length for b in study.blocks)]
    assert len(payload) == 4 * sum(b.length for b in study.blocks)
    offset = 0
    for p, b in zip(parts, study.blocks, strict=True):
        assert (p["stage"], p["grid"], p["offset"], p["length"]) == (
            b.stage,
            list(b.grid),
            offset,
            b.length,
        )
        chosen = covered64(sel, (16, 16), b.grid)
        assert map_selection(sel, study.blocks[0], b) == chosen
        a = np.asarray(study.map("spiral", b.name, None if route == "sum" else route), np.float64)
        ref = a[chosen].mean(0) if direction == "query" else a[:, chosen].mean(1)
        np.testing.assert_allclose(values[offset : offset + b.length], ref, rtol=1e-5,
                                   atol=1e-6 * np.abs(ref).max())  # fmt: skip
        offset += b.length


def test_overview_takes_the_subject(study):
    """A single image's map (computed on demand) is asked of every block, as heat asks it."""
    with pytest.raises(StudyError, match="single image must be 0..-1"):
        ViewAPI(study).handle("overview", {"order": "cross", "block": S0, "patches": [5],
                                           "subject": 0})  # fmt: skip
    with pytest.raises(StudyError, match="subject must be an integer, got 'all'"):
        ViewAPI(study).handle("overview", {"order": "cross", "block": S0, "patches": [5],
                                           "subject": "all"})  # fmt: skip


@pytest.mark.parametrize("args, message", [
    ({"size": 15}, "size must be an integer in 16..1024 (pixels), got 15"),
    ({"size": "1025"}, "size must be an integer in 16..1024 (pixels), got 1025"),
    ({"size": 64.0}, "size must be an integer, got 64.0"),
    ({"size": True}, "size must be an integer, got True"),
    ({"size": "1e3"}, "size must be an integer, got '1e3'"),
    ({"coords": 4}, "coords must be a route 0..3 (its scan order gives the axes), got 4"),
    ({"coords": "x"}, "coords must be an integer, got 'x'"),
    ({"coords": 1.5}, "coords must be an integer, got 1.5"),
    ({"coords": -1}, "coords must be an integer in 0..2147483647, got -1"),
    ({"route": 4}, "route must be 'sum' or 0..3, got 4"),
    ({"route": "all"}, "route must be an integer, got 'all'"),
    ({"block": "layers.9.blocks.0"}, "the study has no block 'layers.9.blocks.0'"),
])  # fmt: skip
def test_matrix_arguments_are_strict(study, args, message):
    with pytest.raises(StudyError) as e:
        ViewAPI(study).handle("matrix", {"order": "cross", "block": S0, **args})
    assert str(e.value) == message


def test_route_maps_are_needed_for_a_route(synthetic):
    api = ViewAPI(synthetic)
    big = "layers.0.blocks.1"
    for method, extra in [("matrix", {}), ("overview", {"patches": [0]})]:
        with pytest.raises(StudyError, match="keeps no per-route maps"):
            api.handle(method, {"order": "cross", "block": big, "route": 0, **extra})
    content, payload = api.handle("matrix", {"order": "cross", "block": big, "coords": 3})
    assert (content["f"], content["n"], content["coords"]) == (7, 448, 3)  # 3136 = 448 x 7
    with pytest.raises(StudyError, match="direction must be one of"):
        api.handle("overview", {"order": "cross", "block": big, "patches": [0], "direction": "x"})
    with pytest.raises(StudyError, match="patches must be a non-empty selection of 0..3135"):
        api.handle("overview", {"order": "cross", "block": big, "patches": [3136]})


# ---- the offline page: the same pooling and overview computed in JavaScript ----------------------
def _run_node(script: str) -> dict:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("needs Node.js to run app.js outside a browser")
    src = web_file("app.js")
    run = subprocess.run([node, "-e", src + "\n" + script], capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _same_matrices(api, asks, matrices) -> None:
    """The page's pooled matrices ``matrices`` equal the server's answers to ``asks`` (order,
    block, route, coords, size)."""
    for (o, b, r, c, size), js in zip(asks, matrices, strict=True):
        args = {"order": o, "block": b, "route": r, "size": size}
        if c is not None:
            args["coords"] = c
        content, payload = api.handle("matrix", args)
        content["route"] = str(content["route"])
        assert js["content"] == content
        want = np.frombuffer(payload, "<f4")
        np.testing.assert_allclose(js["values"], want, rtol=2e-7, atol=1e-7 * np.abs(want).max())


def test_offline_pooling_equals_the_servers(study, tmp_path):
    from jaxmamba.views.export import explorer_data

    entries = {o: {b.name: {"grid": b.grid, "attn": study.map(o, b.name),
                            "route_attn": np.stack([study.map(o, b.name, r) for r in range(4)])}
                   for b in study.blocks} for o in study.orders}  # fmt: skip
    data = explorer_data(entries, encoding="float32")  # the study's float32 values exactly
    (tmp_path / "d.json").write_text(json.dumps(data))
    asks = [
        ("cross", S0, "sum", None, 100),
        ("spiral", S0, "2", None, 37),
        ("spiral", S0, "1", 3, 512),
    ]
    got = _run_node(f"""
      const file = {json.dumps(str(tmp_path / "d.json"))};
      const D = JSON.parse(require("fs").readFileSync(file, "utf8"));
      const src = JM.embeddedSource(D);
      (async () => {{
        const out = {{matrices: [], overview: null, errors: []}};
        for (const [o, b, r, c, size] of {json.dumps(asks)}) {{
          const m = await src.matrix(o, b, r, c === null ? undefined : c, size);
          out.matrices.push({{content: m.content, values: Array.from(m.values)}});
        }}
        const v = await src.overview("spiral", {json.dumps(S0)}, "sum", "source", [17, 18, 200]);
        out.overview = {{content: v.content, values: Array.from(v.values)}};
        for (const bad of [["sum", undefined, 15], ["0", 9, 64]])
          try {{ await src.matrix("cross", {json.dumps(S0)}, ...bad); out.errors.push(null); }}
          catch (e) {{ out.errors.push(e.message); }}
        console.log(JSON.stringify(out));
      }})();
    """)  # fmt: skip
    api = ViewAPI(study)
    _same_matrices(api, asks, got["matrices"])
    content, payload = api.handle("overview", {"order": "spiral", "block": S0,
                                               "patches": [17, 18, 200],
                                               "direction": "source"})  # fmt: skip
    assert got["overview"]["content"] == content
    np.testing.assert_allclose(got["overview"]["values"], np.frombuffer(payload, "<f4"), rtol=1e-6,
                               atol=1e-7 * np.abs(np.frombuffer(payload, "<f4")).max())  # fmt: skip
    assert got["errors"] == [
        "size must be an integer in 16..1024 (pixels), got 15",
        "coords must be a route 0..3 (its scan order gives the axes), got 9",
    ]


# ---- in the browser ---------------------------------------------------------------------------
def _sizes(driver) -> dict:
    """Bytes of each answer the page fetched so far (the last of each method)."""
    return {e[0].split("/api/")[1].split("?")[0]: e[1] for e in driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/'))"
        ".map(e => [e.name, e.encodedBodySize]);")}  # fmt: skip


def test_matrix_and_overview_served_move_only_pooled_data(synthetic, chromium):
    """A 224 x 224 VMamba-T-sized study: the matrix of a 56 x 56 block is 448² pooled numbers
    (f = 7), not 3136²; the overview is one row per block."""
    pytest.importorskip("starlette", reason="the [serve] extra is not installed")
    from selenium.webdriver.common.by import By

    from jaxmamba.views.server import ServerThread

    big = "layers.0.blocks.1"
    with ServerThread(synthetic) as server:
        chromium.get(server.url)
        wait_idle(chromium)
        chromium.execute_script(f"explorer.setControl('block', '{big}');")
        wait_idle(chromium)
        chromium.execute_script("explorer.setControl('mode', 'matrix');")
        wait_idle(chromium)
        m = chromium.execute_script("return explorer.matrix();")
        l, size = 3136, 448
        assert (m["L"], m["f"], m["n"], m["coords"]) == (l, 7, 448, 0)
        got = _sizes(chromium)
        assert got["matrix"] == 4 * m["n"] ** 2 <= 4 * size**2 < 4 * l * l // 40
        ref = pooled64(synthetic.map("cross", big), synthetic.routes("cross", big)[0], 7)
        np.testing.assert_allclose(np.reshape(m["values"], (448, 448)), ref, rtol=1e-5,
                                   atol=1e-6 * np.abs(ref).max())  # fmt: skip
        assert chromium.find_element(By.ID, "matrix-panel").is_displayed()
        assert not chromium.find_element(By.ID, "scatter-panel").is_displayed()
        # the centre patch (28, 28) is at scan position 28 * 56 + 28 of the row-major route 0
        matrix = chromium.find_element(By.ID, "matrix")
        assert matrix.get_attribute("data-rows") == str((28 * 56 + 28) // 7)
        caption = chromium.find_element(By.ID, "matrix-caption").text
        assert "Pooled 7×7: each pixel is the mean of 49 entries" in caption
        assert "Signed values: blue < 0 < red." in caption
        # the axes in the scan order of another route: column-major route 1 of cross
        chromium.execute_script("explorer.setControl('matrix-coords', '1');")
        wait_idle(chromium)
        m1 = chromium.execute_script("return explorer.matrix();")
        ref = pooled64(synthetic.map("cross", big), synthetic.routes("cross", big)[1], 7)
        assert m1["coords"] == 1 and matrix.get_attribute("data-rows") == str((28 * 56 + 28) // 7)
        np.testing.assert_allclose(np.reshape(m1["values"], (448, 448)), ref, rtol=1e-5,
                                   atol=1e-6 * np.abs(ref).max())  # fmt: skip
        chromium.execute_script("explorer.select([5 * 56 + 9]);")  # (5, 9): position 9 * 56 + 5
        wait_idle(chromium)
        assert matrix.get_attribute("data-rows") == str((9 * 56 + 5) // 7)
        chromium.execute_script("explorer.setControl('matrix-coords', 'auto');")
        wait_idle(chromium)
        assert chromium.execute_script("return explorer.matrix().coords;") == 0
        assert matrix.get_attribute("data-rows") == str((5 * 56 + 9) // 7)
        # a click on pooled row 100 (one canvas pixel high) selects scan positions 700..706
        chromium.execute_script(
            """
          const cv = arguments[0], r = cv.getBoundingClientRect(), k = r.width / cv.width;
          cv.dispatchEvent(new MouseEvent("click", {bubbles: true,
            clientX: r.left + (58 + 200) * k, clientY: r.top + (6 + 100.5) * k}));""",
            matrix,
        )
        wait_idle(chromium)
        assert sorted(chromium.execute_script("return explorer.state.selection;")) == list(
            range(700, 707)
        )
        assert chromium.execute_script("return explorer.heatValues().length;") == l

        chromium.execute_script("explorer.setControl('mode', 'overview');")
        wait_idle(chromium)
        chromium.execute_script("explorer.select([28 * 56 + 28]);")
        wait_idle(chromium)
        ov = chromium.execute_script("return explorer.overview();")
        lengths = [b.length for b in synthetic.blocks]
        assert [b["length"] for b in ov["blocks"]] == lengths and len(ov["values"]) == sum(lengths)
        assert _sizes(chromium)["overview"] == 4 * sum(lengths)
        values, _ = synthetic.overview("cross", big, [28 * 56 + 28])
        np.testing.assert_allclose(ov["values"], values, rtol=1e-6)
        panels = chromium.find_elements(By.CSS_SELECTOR, "#overview canvas")
        assert [p.get_attribute("data-block") for p in panels] == [b.name for b in synthetic.blocks]
        scales = chromium.find_elements(By.CSS_SELECTOR, "#overview .jm-ov-scale")
        assert [e.text.split(",")[0] for e in scales] == ["log scale"] * len(panels)  # the default
        assert all(e.text.split(", ")[1].startswith("±") for e in scales)  # signed maps
        stage3 = panels[-1]
        assert stage3.get_attribute("data-selected") == str(3 * 7 + 3)  # (28, 28) -> (3, 3) of 7x7
        stage3.click()
        wait_idle(chromium)
        state = chromium.execute_script("return explorer.state;")
        last = synthetic.blocks[-1].name  # layers.3.blocks.1
        assert (state["mode"], state["block"]) == ("patches", last)
        assert chromium.find_element(By.ID, "heat").get_attribute("data-block") == last
        assert severe(chromium) == []


def test_offline_page_matrix_in_chromium(study, chromium, tmp_path):
    """The exported page pools its embedded (uint8-encoded) maps in JavaScript as the server
    pools a map: compared with the float64 reference of the decoded map."""
    from selenium.webdriver.common.by import By

    from jaxmamba.views.export import decode, export, read_explorer

    page = export(study, tmp_path / "e.html", route_maps=True, say=None)
    chromium.get(page.as_uri())
    wait_idle(chromium)
    for route in ("sum", "2"):
        chromium.execute_script("explorer.setControl('mode', 'matrix');")
        chromium.execute_script(f"explorer.setControl('route', '{route}');")
        wait_idle(chromium)
        m = chromium.execute_script("return explorer.matrix();")
        entry = read_explorer(page)["data"]["cross"][S0]
        a = decode(entry["attn"] if route == "sum" else entry["route_attn"][int(route)])
        ref = pooled64(a, np.asarray(entry["routes"][int(route) if route != "sum" else 0]), m["f"])
        assert (m["L"], m["f"], m["n"]) == (256, 1, 256)  # 448 px: no pooling needed
        np.testing.assert_allclose(np.reshape(m["values"], ref.shape), ref, rtol=1e-5,
                                   atol=1e-6 * np.abs(ref).max())  # fmt: skip
    chromium.execute_script("explorer.setControl('mode', 'overview');")
    wait_idle(chromium)
    panels = chromium.find_elements(By.CSS_SELECTOR, "#overview canvas")
    assert len(panels) == len(study.blocks)
    assert severe(chromium) == []


def test_matrix_and_overview_over_http_and_widget_messages(study):
    """The server answers GET (query strings) and POST; the content travels in X-Array; bad
    arguments are a 400 with a one-line reason; the widget answers the same."""
    pytest.importorskip("starlette", reason="the [serve] extra is not installed")
    from starlette.testclient import TestClient

    from jaxmamba.views.server import app

    client = TestClient(app(study), base_url="http://127.0.0.1")
    r = client.get("/api/matrix", params={"order": "spiral", "block": S0, "route": "1",
                                          "size": "100"})  # fmt: skip
    assert r.status_code == 200
    head = json.loads(r.headers["x-array"])
    assert (head["f"], head["n"], head["coords"], head["route"]) == (3, 86, 1, 1)
    m, _ = study.matrix("spiral", S0, 1, size=100)
    assert r.content == m.tobytes()
    r = client.get("/api/matrix", params={"order": "spiral", "block": S0, "size": "2000"})
    assert r.status_code == 400
    assert r.json() == {"error": "size must be an integer in 16..1024 (pixels), got 2000"}
    r = client.post("/api/overview", json={"order": "cross", "block": S0, "patches": [3, 4]})
    assert r.status_code == 200
    head = json.loads(r.headers["x-array"])
    values, parts = study.overview("cross", S0, [3, 4])
    assert head["blocks"] == parts and r.content == values.tobytes()

    pytest.importorskip("anywidget", reason="the [notebook] extra is not installed")
    from jaxmamba.views.widget import show

    w, sent = show(study), []
    w.send = lambda content, buffers=None: sent.append((content, buffers))
    w.answer({"kind": "jm-request", "id": 1, "method": "matrix",
              "args": {"order": "cross", "block": S0, "size": 64}})  # fmt: skip
    assert sent[-1][0]["content"]["f"] == 4 and len(sent[-1][1][0]) == 4 * 64 * 64
    w.answer({"kind": "jm-request", "id": 2, "method": "matrix",
              "args": {"order": "cross", "block": S0, "coords": 7}})  # fmt: skip
    assert sent[-1][0]["error"] == (
        "coords must be a route 0..3 (its scan order gives the axes), got 7"
    )


def test_a_damaged_map_is_named_not_pooled(tmp_path):
    s = write_synthetic_study(tmp_path / "s", "vmamba_test", 64, orders=["cross"], n_images=1)
    path = tmp_path / "s" / "means" / "cross" / f"{S0}.npy"
    m = np.load(path)
    m[3, 7] = np.nan
    np.save(path, m)
    with pytest.raises(StudyError, match=f"{path} holds NaN or infinite values"):
        s.matrix("cross", S0)
    with pytest.raises(StudyError, match="holds NaN or infinite values"):
        s.overview("cross", S0, [3])


@pytest.fixture(scope="module")
def vim_study(tmp_path_factory):
    """vim_test over 2 random images at 64 x 64 (4 x 4 patches + the class token, 2 layers),
    orders raster and spiral, per-route maps kept."""
    x = np.random.default_rng(2).standard_normal((2, 64, 64, 3)).astype(np.float32)
    return write_study(tmp_path_factory.mktemp("vim") / "s", jaxmamba.create_model("vim_test"), x,
                       orders=["raster", "spiral"], route_maps=True, single_images=[],
                       progress=False)  # fmt: skip


def test_offline_pooling_equals_the_servers_vim(vim_study, tmp_path):
    """A Vim study's offline data (class-last maps, cls = h·w, the study's routes) pooled and
    mapped in JavaScript as the server does: the matrix (L = h·w + 1) and the overview (the
    class token to each layer's class token)."""
    from jaxmamba.views.export import explorer_data

    s = vim_study
    entries = {o: {b.name: {"grid": b.grid, "cls": b.cls, "attn": s.map(o, b.name),
                            "route_attn": np.stack([s.map(o, b.name, r) for r in range(2)])}
                   for b in s.blocks} for o in s.orders}  # fmt: skip
    data = explorer_data(entries, encoding="float32")
    assert data["data"]["spiral"]["layers.1"]["routes"] == s.routes("spiral", "layers.1").tolist()
    (tmp_path / "d.json").write_text(json.dumps(data))
    asks = [("raster", "layers.0", "sum", None, 100), ("spiral", "layers.1", "1", 0, 16)]
    overviews = [("raster", "layers.1", "query", [16]), ("spiral", "layers.0", "source", [3, 16])]
    got = _run_node(f"""
      const file = {json.dumps(str(tmp_path / "d.json"))};
      const D = JSON.parse(require("fs").readFileSync(file, "utf8"));
      const src = JM.embeddedSource(D);
      (async () => {{
        const out = {{matrices: [], overviews: []}};
        for (const [o, b, r, c, size] of {json.dumps(asks)}) {{
          const m = await src.matrix(o, b, r, c === null ? undefined : c, size);
          out.matrices.push({{content: m.content, values: Array.from(m.values)}});
        }}
        for (const [o, b, d, ps] of {json.dumps(overviews)}) {{
          const v = await src.overview(o, b, "sum", d, ps);
          out.overviews.push({{content: v.content, values: Array.from(v.values)}});
        }}
        console.log(JSON.stringify(out));
      }})();
    """)  # fmt: skip
    api = ViewAPI(s)
    _same_matrices(api, asks, got["matrices"])
    assert all(m["content"]["L"] == 17 for m in got["matrices"])
    for (o, b, d, ps), js in zip(overviews, got["overviews"], strict=True):
        content, payload = api.handle("overview", {"order": o, "block": b, "patches": ps,
                                                   "direction": d})  # fmt: skip
        assert js["content"] == content
        assert [p["cls"] for p in content["blocks"]] == [16, 16]
        want = np.frombuffer(payload, "<f4")
        np.testing.assert_allclose(js["values"], want, rtol=1e-6, atol=1e-7 * np.abs(want).max())
