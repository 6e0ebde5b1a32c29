"""``jaxmamba serve STUDY``: a local web app that reads a study folder row by row.

The page (:mod:`jaxmamba.web`) asks for what it shows: the scatterplot coordinates of a block,
the scan routes, and the heat map of the current selection (the mean of the selected patches'
rows or columns, ``L`` numbers) — kilobytes per click, never a whole ``L x L`` map, whatever the
study's size.  Answers come from :class:`jaxmamba.views.ViewAPI`.

Built on Starlette and uvicorn (well-kept, small, no hand-written HTTP; Starlette's test client
needs no socket).  The server binds 127.0.0.1 only (any other address is refused), accepts only
``Host: 127.0.0.1``/``localhost`` (no DNS rebinding), serves a fixed list of files and answers
only the named requests: no path is ever taken from a request.

>>> import numpy as np, tempfile, jaxmamba
>>> from jaxmamba.study import write_study
>>> x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
>>> s = write_study(tempfile.mkdtemp() + "/s", jaxmamba.create_model("vmamba_test"), x,
...                 blocks=[3], progress=False)
>>> with ServerThread(s) as server:
...     import urllib.request
...     meta = urllib.request.urlopen(server.url + "/api/meta").read()
>>> b'"orders"' in meta
True
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
import time

from jaxmamba.errors import StudyError, require
from jaxmamba.study import Study
from jaxmamba.views import ViewAPI
from jaxmamba.web import CSP, STATIC, page, web_file

__all__ = ["ServerThread", "app", "serve"]


def _loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise StudyError(f"the explorer binds a loopback address only (127.0.0.1), not {host!r}")
    return host


def app(study: Study | str | os.PathLike):
    """The Starlette application serving ``study``."""
    require("starlette", "serve", "jaxmamba serve")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    study = study if isinstance(study, Study) else Study(study)
    api = ViewAPI(study)
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
    boot = "JM.mount(document.getElementById('app'), JM.httpSource('api'));"
    index_html = page(study.meta.get("title", "jaxmamba"), boot)

    async def index(request):
        return HTMLResponse(index_html, headers=headers)

    async def static(request):
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", status_code=404)
        return Response(web_file(name), media_type=STATIC[name], headers=headers)

    async def favicon(request):
        return Response(status_code=204)

    async def call(request):
        method = request.path_params["method"]
        if request.method == "POST":
            try:
                args = json.loads(await request.body() or b"{}")
            except ValueError:
                return JSONResponse({"error": "the request body is not JSON"}, status_code=400)
        else:
            args = dict(request.query_params)
        try:
            content, payload = api.handle(method, args)
        except StudyError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        if payload is None:
            return JSONResponse(content, headers=headers)
        media = content.get("media_type", "application/octet-stream")
        extra = {"X-Array": json.dumps(content)} if "dtype" in content else {}
        return Response(payload, media_type=media, headers={**headers, **extra})

    routes = [
        Route("/", index),
        Route("/favicon.ico", favicon),
        Route("/api/{method:str}", call, methods=["GET", "POST"]),
        Route("/{name:str}", static),
    ]
    hosts = ["127.0.0.1", "localhost", "[::1]", "::1", "testserver"]
    return Starlette(
        routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)]
    )


class ServerThread:
    """Serve a study from a background thread (for notebooks and tests); ``port=0`` picks one.

    Use as a context manager, or ``start()`` / ``stop()``; ``url`` is where it listens.
    """

    def __init__(self, study, port: int = 0, host: str = "127.0.0.1") -> None:
        uvicorn = require("uvicorn", "serve", "jaxmamba serve")
        self.host = _loopback(host)
        config = uvicorn.Config(
            app(study), host=self.host, port=port, log_level="warning", lifespan="off",
            access_log=False,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = None

    def start(self, timeout: float = 20.0) -> ServerThread:
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > timeout:
                raise StudyError(f"the explorer server did not start on {self.host}")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(study, port: int = 8765, *, open_browser: bool = True, host: str = "127.0.0.1") -> None:
    """Serve ``study`` until interrupted (Ctrl-C), printing the URL; opens a browser unless told
    not to.  ``port=0`` picks a free port."""
    uvicorn = require("uvicorn", "serve", "jaxmamba serve")
    host = _loopback(host)
    study = study if isinstance(study, Study) else Study(study)
    application = app(study)
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise StudyError(f"cannot listen on {host}:{port} ({e.strerror}); try --port 0") from None
    url = f"http://{host}:{sock.getsockname()[1]}/"
    print(f"serving {study.path} at {url} (Ctrl-C stops)", flush=True)
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(application, log_level="warning", lifespan="off", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
