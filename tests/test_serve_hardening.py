"""The request boundary of the local server and the notebook widget: only the server's
own page is answered, bodies are bounded JSON objects, every bad request is a 4xx with a one-line
JSON reason, integers are never coerced, heavy work runs off the event loop one request at a
time, the widget answers every request, the page template substitutes once, and ``serve``
refuses a bad port and restarts on a port in TIME_WAIT."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
from conftest import severe, wait_idle

import jaxmamba
from jaxmamba.errors import ImageError, InputError
from jaxmamba.study import write_synthetic_study
from jaxmamba.views.protocol import ViewAPI

pytest.importorskip("starlette", reason="the [serve] extra is not installed")

BLOCK = "layers.0.blocks.0"  # 16 x 16 patches
HEAT = {"order": "cross", "block": BLOCK, "patches": [1, 2], "direction": "query"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_synthetic_study(tmp_path_factory.mktemp("h") / "s", "vmamba_test", 64,
                                 orders=["cross"])  # fmt: skip


@pytest.fixture(scope="module")
def client(study):
    from starlette.testclient import TestClient

    from jaxmamba.views.server import app

    # a 500 comes back as a response (not raised), so that today's failures read as such
    return TestClient(app(study), base_url="http://127.0.0.1", raise_server_exceptions=False)


@pytest.fixture
def calls(monkeypatch):
    """Every ``ViewAPI.handle`` call, recorded (then answered as usual)."""
    seen, handle = [], ViewAPI.handle

    def recording(self, method, args):
        seen.append(method)
        return handle(self, method, args)

    monkeypatch.setattr(ViewAPI, "handle", recording)
    return seen


def refused(r, status: int) -> str:
    """The one-line JSON reason of a refusal with ``status``."""
    assert r.status_code == status, (r.status_code, r.text[:200])
    reason = r.json()["error"]
    assert isinstance(reason, str) and reason and "\n" not in reason and len(reason) < 500
    return reason


def post(client, body, path="/api/heat", **headers):
    text = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, content=text, headers={"content-type": "application/json",
                                                    **headers})  # fmt: skip


# ---- only the server's own page is answered --------------------------------------------------
@pytest.mark.parametrize("headers", [
    {"origin": "https://evil.example"},
    {"origin": "http://127.0.0.1:9999"},  # another local server: another origin
    {"origin": "null"},  # a sandboxed frame, a file:// page
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},
    {"origin": "http://127.0.0.1", "sec-fetch-site": "cross-site"},
])  # fmt: skip
def test_requests_from_another_site_compute_nothing(client, calls, headers):
    assert "own page" in refused(post(client, HEAT, **headers), 403)
    assert "own page" in refused(client.get("/api/image", params={"index": 0}, headers=headers),
                                 403)  # fmt: skip
    assert calls == []


@pytest.mark.parametrize("headers", [
    {},  # curl, a script
    {"origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"},  # the page itself
    {"origin": "http://localhost"},
    {"sec-fetch-site": "none"},  # an address typed in the browser
])  # fmt: skip
def test_requests_of_the_own_page_are_answered(client, calls, headers):
    assert post(client, HEAT, **headers).status_code == 200 and calls == ["heat"]


def test_a_link_followed_from_another_site_shows_the_page_only(client):
    nav = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    assert client.get("/", headers=nav).status_code == 200
    refused(client.get("/app.js", headers={"sec-fetch-site": "cross-site"}), 403)


@pytest.mark.parametrize("host", ["testserver", "evil.com", "evil.com:80", "127.0.0.1.evil.com",
                                  "", "localhost@evil.com"])  # fmt: skip
def test_foreign_hosts_are_refused_with_a_json_reason(client, host):
    assert "Host" in refused(client.get("/api/meta", headers={"host": host}), 400)


def test_local_hosts_are_answered(client):
    for host in ("127.0.0.1", "localhost", "[::1]", "LOCALHOST:80"):
        assert client.get("/api/meta", headers={"host": host}).status_code == 200


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


ATTACK = """
const [url, block, done] = arguments;
const body = JSON.stringify({ order: "cross", block, patches: [1] });
const image = new Promise((res) => {
  const im = new Image();
  im.onload = () => res("loaded");
  im.onerror = () => res("refused");
  im.src = url + "/api/image?index=0";
});
const plain = { "Content-Type": "text/plain" };
Promise.all([
  fetch(url + "/api/heat", { method: "POST", mode: "no-cors", headers: plain, body })
    .then((r) => r.type, (e) => "failed"),
  fetch(url + "/api/meta", { mode: "no-cors" }).then((r) => r.type, (e) => "failed"),
  image,
]).then(done, (e) => done(String(e)));
"""


@pytest.mark.browser
def test_another_site_open_in_the_browser_cannot_make_the_server_compute(
    study, calls, chromium, tmp_path
):
    """The attack of the issue, in Chromium: a page of another origin (another local port)
    posts ``text/plain`` in ``no-cors`` mode and loads an image; the server computes nothing,
    and its own page then works."""
    from jaxmamba.views.server import ServerThread

    (tmp_path / "attack.html").write_text("<!DOCTYPE html><title>another site</title>")
    other = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path))
    )
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with ServerThread(study) as server:
            chromium.set_script_timeout(30)
            chromium.get(f"http://127.0.0.1:{other.server_port}/attack.html")
            answers = chromium.execute_async_script(ATTACK, server.url, BLOCK)
            assert answers[2] == "refused" and calls == []  # nothing computed
            said = " ".join(e["message"] for e in severe(chromium))  # (and the log is read)
            assert "403 (Forbidden)" in said, said
            chromium.get(server.url)
            wait_idle(chromium)
            assert severe(chromium) == [] and "heat" in calls  # the own page is answered
    finally:
        other.shutdown()
        other.server_close()


# ---- bodies: JSON objects of at most 1 MiB -----------------------------------------------------
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_declared_json_is_refused(client, calls, ctype):
    headers = {} if ctype is None else {"content-type": ctype}
    r = client.post("/api/heat", content=json.dumps(HEAT), headers=headers)
    assert "application/json" in refused(r, 415) and calls == []


def test_a_large_body_is_refused(client, calls):
    big = json.dumps({**HEAT, "pad": "x" * (2 << 20)})
    assert "bytes" in refused(post(client, big), 413)

    def chunks():  # no Content-Length: the body itself is counted
        for _ in range(40):
            yield b" " * 65536
        yield json.dumps(HEAT).encode()

    r = client.post("/api/heat", content=chunks(), headers={"content-type": "application/json"})
    assert "bytes" in refused(r, 413) and calls == []


def raw(fields: str) -> str:
    """A heat request's JSON text with ``fields`` (JSON that Python's json would not write)."""
    return '{"order": "cross", "block": "' + BLOCK + '", ' + fields + "}"


NESTED = '{"patches": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize("body", [
    raw('"patches": [9223372036854775808]'),
    raw('"patches": [1e400]'),
    raw('"patches": [Infinity]'),
    raw('"patches": [NaN]'),
    raw('"patches": [-1]'),
    raw('"patches": 1e400'),
    raw('"patches": [1], "subject": 1e400'),
    raw('"patches": [1], "subject": -1'),
    raw('"patches": [1], "route": 18446744073709551616'),
    NESTED,
    "[1, 2]",
    '"heat"',
    "null",
    "{",
    b"\xff\xfe{}",
], ids=lambda body: body[:48] if len(body) < 1000 else "nested 100000 deep")  # fmt: skip
def test_bad_bodies_are_a_4xx_with_a_one_line_reason(client, body):
    r = post(client, body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    refused(r, r.status_code)


@pytest.mark.parametrize("path, args, field", [
    ("/api/image", {"index": 2**63}, "index"),
    ("/api/image", {"index": -1}, "index"),
    ("/api/points", {"kind": "joint", "order": "cross", "stage": 2**64, "method": "pca"}, "stage"),
])  # fmt: skip
def test_huge_and_negative_numbers_are_refused(client, path, args, field):
    assert field in refused(post(client, args, path), 400)


# ---- no silent coercion of integers ------------------------------------------------------------
@pytest.mark.parametrize("path, args, field", [
    ("/api/heat", {**HEAT, "patches": [1.9]}, "patches"),
    ("/api/heat", {**HEAT, "patches": [True]}, "patches"),
    ("/api/heat", {**HEAT, "patches": [2.0]}, "patches"),
    ("/api/heat", {**HEAT, "subject": 0.5}, "subject"),
    ("/api/heat", {**HEAT, "subject": True}, "subject"),
    ("/api/heat", {**HEAT, "route": 1.5}, "route"),
    ("/api/coords", {"order": "cross", "block": BLOCK, "method": "pca", "subject": 0.5},
     "subject"),
    ("/api/points", {"kind": "joint", "order": "cross", "stage": 2.7, "method": "pca"}, "stage"),
    ("/api/image", {"index": 1.5}, "index"),
    ("/api/image", {"index": True}, "index"),
])  # fmt: skip
def test_json_integers_are_not_coerced(client, path, args, field):
    assert f"{field} must be" in refused(post(client, args, path), 400)


@pytest.mark.parametrize("path, params, field", [
    ("/api/image", {"index": "1_0"}, "index"),  # int() reads 10
    ("/api/image", {"index": "\u0663"}, "index"),  # an Arabic-Indic 3, which int() reads
    ("/api/image", {"index": " 1"}, "index"),
    ("/api/heat", {"order": "cross", "block": BLOCK, "patches": "1,2.5"}, "patches"),
    ("/api/heat", {"order": "cross", "block": BLOCK, "patches": "1", "route": "1.5"}, "route"),
    ("/api/points", {"kind": "joint", "order": "cross", "stage": "2.7", "method": "pca"},
     "stage"),
])  # fmt: skip
def test_query_integers_are_decimal_digits_only(client, path, params, field):
    assert f"{field} must be" in refused(client.get(path, params=params), 400)


def test_strict_integers_still_answer(client):
    assert client.get("/api/image", params={"index": "1"}).content[:4] == b"\x89PNG"
    assert post(client, {"index": 1}, "/api/image").content[:4] == b"\x89PNG"
    r = client.get("/api/heat", params={"order": "cross", "block": BLOCK, "patches": "3,4"})
    assert r.status_code == 200 and len(r.content) == 4 * 256


# ---- every error is JSON -----------------------------------------------------------------------
def test_unknown_paths_and_methods_are_json_errors(client):
    refused(client.get("/nosuchfile.txt"), 404)
    refused(client.get("/a/b/c"), 404)
    refused(client.put("/api/meta"), 405)


def test_an_internal_error_is_one_json_line(client, monkeypatch):
    def broken(self, method, args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(ViewAPI, "handle", broken)
    assert refused(client.get("/api/meta"), 500) == "internal error: RuntimeError: boom"


# ---- heavy work off the event loop, one request at a time --------------------------------------
def test_a_heavy_request_does_not_stall_the_server(study, monkeypatch):
    from jaxmamba.views.server import ServerThread

    running, most, started = [0], [0], threading.Event()
    heat = study.heat

    def slow(*args, **kwargs):  # a single image's map: seconds of JAX
        running[0] += 1
        most[0] = max(most[0], running[0])
        started.set()
        time.sleep(1.5)
        running[0] -= 1
        return heat(*args, **kwargs)

    monkeypatch.setattr(study, "heat", slow)
    with ServerThread(study) as server:
        url = server.url + "/api/heat?" + "order=cross&block=" + BLOCK + "&patches=1"
        answers = []
        fetchers = [threading.Thread(target=lambda: answers.append(
            urllib.request.urlopen(url, timeout=30).status)) for _ in range(2)]  # fmt: skip
        for f in fetchers:
            f.start()
        assert started.wait(10)
        t0 = time.monotonic()
        for path in ("/app.css", "/favicon.ico", "/api/meta"):
            assert urllib.request.urlopen(server.url + path, timeout=1.0).status in (200, 204)
        assert time.monotonic() - t0 < 1.0  # answered while the map is being computed
        for f in fetchers:
            f.join(30)
    assert answers == [200, 200] and most[0] == 1  # the two maps were computed one at a time


# ---- the widget answers every request ----------------------------------------------------------
@pytest.fixture
def widget(study):
    pytest.importorskip("anywidget", reason="the [notebook] extra is not installed")
    w = jaxmamba.show(study)
    w.sent = []
    w.send = lambda content, buffers=None: w.sent.append((content, buffers))
    return w


def test_the_widget_answers_a_request_whose_handler_breaks(widget, monkeypatch):
    def broken(self, method, args):
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr(ViewAPI, "handle", broken)
        widget.answer({"kind": "jm-request", "id": 4, "method": "meta", "args": {}})
    assert widget.sent[-1][0] == {"kind": "jm-answer", "id": 4,
                                  "error": "internal error: RuntimeError: boom"}  # fmt: skip

    def bad_image(self, method, args):
        raise ImageError("image 3 is damaged")

    with monkeypatch.context() as m:
        m.setattr(ViewAPI, "handle", bad_image)
        widget.answer({"kind": "jm-request", "id": 5, "method": "image", "args": {"index": 3}})
    assert widget.sent[-1][0]["error"] == "image 3 is damaged"
    widget.answer({"kind": "jm-request", "id": 6, "method": "meta", "args": {}})  # still alive
    assert widget.sent[-1][0]["id"] == 6 and widget.sent[-1][0]["content"]["orders"]


@pytest.mark.parametrize("message, rid, words", [
    ({"kind": "jm-request", "method": "meta"}, None, "id"),
    ({"kind": "jm-request", "id": [1], "method": "meta"}, None, "id"),
    ({"kind": "jm-request", "id": 1, "method": 5}, 1, "method"),
    ({"kind": "jm-request", "id": 2}, 2, "method"),
    ({"kind": "jm-request", "id": 3, "method": "heat", "args": [1, 2]}, 3, "args"),
    ({"kind": "jm-request", "id": "x", "method": "heat", "args": "order=cross"}, "x", "args"),
    ({"kind": "jm-request", "id": 4, "method": "nosuch", "args": {}}, 4, "unknown request"),
    ({"kind": "jm-request", "id": 5, "method": "heat", "args": {**HEAT, "patches": [1.5]}}, 5,
     "patches"),
])  # fmt: skip
def test_the_widget_answers_malformed_requests(widget, message, rid, words):
    widget.answer(message)
    assert len(widget.sent) == 1
    content, buffers = widget.sent[0]
    assert content["kind"] == "jm-answer" and content["id"] == rid and buffers is None
    assert words in content["error"] and "\n" not in content["error"]


@pytest.mark.parametrize("message", [None, [1, 2], "jm-request", {"kind": "other", "id": 1}])
def test_the_widget_leaves_other_messages_alone(widget, message):
    widget.answer(message)
    assert widget.sent == []


# ---- the page template -------------------------------------------------------------------------
def test_a_title_with_a_placeholder_stays_in_the_title():
    from jaxmamba.views.web import page

    data = '<script type="application/json" id="jm-data">{"x": 1}</script>'
    for title in ("{{DATA}}", "{{BOOT}}{{SCRIPT}}{{HEAD}}", "<b>{{TITLE}}&</b>"):
        html = page(title, "boot();", data=data)
        assert html.count('id="jm-data"') == 1 and html.count("boot();") == 1
        assert html.count('<link rel="stylesheet"') == 1
        inner = html.split("<title>")[1].split("</title>")[0]
        assert inner == title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---- serve: the port ---------------------------------------------------------------------------
@pytest.mark.parametrize("port", [70000, -1, 65536, True, "8765", 80.0])
def test_serve_refuses_a_port_out_of_range(study, port):
    from jaxmamba.views.server import ServerThread, serve

    with pytest.raises(InputError, match="port must be an integer in 0..65535"):
        serve(study, port, open_browser=False)
    with pytest.raises(InputError, match="port"):
        ServerThread(study, port=port)


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_the_cli_refuses_a_port_out_of_range(study, capsys, port):
    from jaxmamba.cli import main

    with pytest.raises(SystemExit) as e:
        main(["serve", str(study.path), "--port", port, "--no-browser"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: argument --port" in err and "Traceback" not in err


def _time_wait_port() -> int:
    """A loopback port whose last connection was closed by the server side first: it lingers in
    TIME_WAIT, where binding it again needs SO_REUSEADDR (on Linux on both the old socket, as
    a previous ``serve`` sets it, and the new one)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server closes first: its side goes to TIME_WAIT
    cli.recv(1)
    cli.close()
    srv.close()
    time.sleep(0.1)
    return port


def test_serve_restarts_on_a_port_in_time_wait(study, monkeypatch, capsys):
    import uvicorn

    from jaxmamba.views.server import serve

    bound = []  # the sockets serve hands to uvicorn (which is not run)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: bound.extend(sockets))
    port = _time_wait_port()
    serve(study, port, open_browser=False)
    try:
        assert bound[0].getsockname()[1] == port
        assert bound[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
    finally:
        bound[0].close()
    assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out


# ---- the page's requests time out (app.js run by Node, when installed) -------------------------
NODE = shutil.which("node")
SCRIPT = """
const fs = require("fs"), vm = require("vm");
vm.runInThisContext(fs.readFileSync(process.argv[1], "utf8") + "\\n;globalThis.JM = JM;");
const report = (name, p) => p.then(() => name + ": answered", (e) => name + ": " + e.message);
const http = JM.httpSource(process.argv[2], 300);
const widget = JM.widgetSource({ on() {}, send() {} }, 300);  // a kernel that never answers
Promise.all([report("heat", http.heat("cross", "BLOCK", "sum", "query", [1], "mean")),
             report("meta", http.meta()), report("widget", widget.meta()),
             report("refused", JM.httpSource(process.argv[2]).coords("cross", "nosuch", "pca"))])
  .then((lines) => console.log(JSON.stringify(lines)));
""".replace("BLOCK", BLOCK)


@pytest.mark.skipif(NODE is None, reason="needs node to run app.js")
def test_the_page_gives_up_a_request_after_its_timeout(study, monkeypatch, tmp_path):
    from jaxmamba.views.server import ServerThread
    from jaxmamba.views.web import web_file

    app_js = tmp_path / "app.js"
    app_js.write_text(web_file("app.js"), "utf-8")

    heat = study.heat
    monkeypatch.setattr(study, "heat", lambda *a, **k: time.sleep(2) or heat(*a, **k))
    with ServerThread(study) as server:
        out = subprocess.run([NODE, "-e", SCRIPT, str(app_js), server.url + "/api"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        "heat: no answer within 0.3 s; try again",
        "meta: answered",
        "widget: no answer within 0.3 s; try again",
        "refused: the study has no block 'nosuch'",
    ]
