"""``jaxmamba serve STUDY``: a local web app that reads a study folder row by row.

The page (:mod:`jaxmamba.views.web`) asks for what it shows: the scatterplot coordinates of a block,
the scan routes, and the heat map of the current selection (the mean of the selected patches'
rows or columns, ``L`` numbers) — kilobytes per click, never a whole ``L x L`` map, whatever the
study's size.  Answers come from :class:`jaxmamba.views.protocol.ViewAPI`.

Built on Starlette and uvicorn (well-kept, small, no hand-written HTTP; Starlette's test client
needs no socket).  The server binds 127.0.0.1 only (any other address is refused), accepts only
``Host: 127.0.0.1``/``localhost``/``[::1]`` (no DNS rebinding), serves a fixed list of files and
answers only the named requests: no path is ever taken from a request.  It answers only its own
page: a request with a foreign ``Origin`` or a ``Sec-Fetch-Site`` of ``cross-site``/``same-site``
is refused (403) before anything is computed, so another web site open in the browser cannot
make it work; a POST must be ``application/json`` (415) of at most 1 MiB (413).  Every refusal
is a 4xx with a one-line JSON reason ``{"error": ...}``; requests are answered in a worker
thread, one at a time (:meth:`jaxmamba.views.protocol.ViewAPI.handle`), so a single image's map
computed for seconds never stalls the server.

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
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence

from jaxmamba.errors import InputError, JaxmambaError, StudyError, require
from jaxmamba.storage.store import first_line, parse_json
from jaxmamba.study import Study
from jaxmamba.views.protocol import ViewAPI
from jaxmamba.views.web import CSP, STATIC, page, web_file

__all__ = ["MAX_BODY", "ServerThread", "app", "serve"]

MAX_BODY = 1 << 20  # bytes of a request body (a selection of every patch of a 56x56 grid: 20 kB)
_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
_HOST = re.compile(r"(127\.0\.0\.1|localhost|\[::1\])(?::([0-9]{1,5}))?")
_SAFE_SITES = ("same-origin", "none")  # Sec-Fetch-Site values of the page's own requests
_log = logging.getLogger(__name__)


class _Refused(Exception):
    """A request refused with an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


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


def _port(port) -> int:
    """``port`` if it is an integer in 0..65535 (0: any free port), else an InputError."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be an integer in 0..65535 (0: any free one), got {port!r}")
    return port


def _url(host: str, port: int | None) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; on POSIX with ``SO_REUSEADDR``, so that a restart on the
    same port does not wait for the last run's connections to leave TIME_WAIT."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        if os.name == "posix":  # on Windows SO_REUSEADDR would let two servers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise StudyError(f"cannot listen on {host}:{port} ({e.strerror}); try --port 0") from None
    return sock


def _local(authority: str, port: int | None) -> bool:
    """Whether ``authority`` (``name[:port]``) names this machine's loopback: 127.0.0.1,
    localhost or [::1]; on ``port`` (``None``: any), the port 80 being implied when absent."""
    match = _HOST.fullmatch(authority.lower())
    if match is None:
        return False
    return port is None or int(match.group(2) or 80) == port


def _refusal(headers: Mapping[str, str], port: int | None, navigation: bool) -> _Refused | None:
    """Why a request with these headers, to a server on ``port``, is refused; ``None`` if it is
    not.  The ``Host`` must name this machine's loopback (no DNS rebinding); the request must come
    from the server's own page (an ``Origin`` of ``http://127.0.0.1|localhost|[::1]:port``,
    ``Sec-Fetch-Site`` ``same-origin``) or from no page at all (curl, a typed address: no
    ``Origin``, ``Sec-Fetch-Site`` ``none`` or absent).  ``navigation``: a top-level visit of the
    page itself (a link followed from elsewhere), which computes nothing, needs only the Host.

    >>> _refusal({"host": "127.0.0.1:8765", "origin": "http://localhost:8765"}, 8765, False)
    >>> print(_refusal({"host": "127.0.0.1:8765", "sec-fetch-site": "cross-site"}, 8765, False))
    the explorer answers its own page only, not a 'cross-site' request
    """
    host = headers.get("host", "")
    if not _local(host, None):
        return _Refused(400, f"the explorer answers Host 127.0.0.1, localhost or [::1] only, "
                             f"not {host[:80]!r}")  # fmt: skip
    if navigation:
        return None
    origin = headers.get("origin")
    if origin is not None and not (origin.startswith("http://") and _local(origin[7:], port)):
        return _Refused(403, f"the explorer answers its own page only, not a request from "
                             f"{origin[:80]!r}")  # fmt: skip
    site = headers.get("sec-fetch-site")
    if site is not None and site.lower() not in _SAFE_SITES:
        return _Refused(403, f"the explorer answers its own page only, not a {site[:20]!r} "
                             "request")  # fmt: skip
    return None


def _error(status: int, reason: str, headers: Mapping[str, str] | None = None):
    """An error answer: ``{"error": reason}`` with HTTP ``status``."""
    from starlette.responses import JSONResponse

    return JSONResponse(
        {"error": reason}, status_code=status, headers={**_HEADERS, **(headers or {})}
    )


class _Guard:
    """ASGI middleware: refuses (:func:`_refusal`) before any route runs."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            from starlette.datastructures import Headers

            headers = Headers(scope=scope)
            server = scope.get("server")
            navigation = (scope["path"] == "/" and scope["method"] in ("GET", "HEAD")
                          and headers.get("sec-fetch-mode") == "navigate")  # fmt: skip
            refused = _refusal(headers, server[1] if server else None, navigation)
            if refused is not None:
                await _error(refused.status, str(refused))(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _body(request) -> bytes:
    """The request body, read up to :data:`MAX_BODY` bytes (413 beyond, whatever the
    ``Content-Length`` says); 415 unless it is ``application/json``."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise _Refused(415, f"a request body must be application/json, not {media[:60]!r}")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:  # refused unread; the stream is counted too
        raise _Refused(413, f"a request body must be at most {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _Refused(413, f"a request body must be at most {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _args(body: bytes) -> dict:
    """A POST body's arguments: a JSON object (empty body: none)."""
    if not body.strip():
        return {}
    try:
        args = parse_json(body.decode("utf-8"), "the request body")
    except UnicodeDecodeError:
        raise _Refused(400, "the request body is not UTF-8 text") from None
    except JaxmambaError as e:
        raise _Refused(400, first_line(e)) from None
    if not isinstance(args, dict):
        raise _Refused(400, f"the request body must be a JSON object, not {type(args).__name__}")
    return args


def app(study: Study | str | os.PathLike, companions: Sequence[Study] | None = None):
    """The Starlette application serving ``study`` and its companions (default: those its
    ``study.json`` names; :class:`~jaxmamba.views.protocol.ViewAPI`)."""
    require("starlette", "serve", "jaxmamba serve")
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    study = study if isinstance(study, Study) else Study(study)
    api = ViewAPI(study, companions)
    boot = "JM.mount(document.getElementById('app'), JM.httpSource('api'));"
    index_html = page("jaxmamba" if study.info.title is None else study.info.title, boot)

    async def index(request):
        return HTMLResponse(index_html, headers=_HEADERS)

    async def static(request):
        name = request.path_params["name"]
        if name not in STATIC:
            return _error(404, f"no file {name[:80]!r} here")
        return Response(web_file(name), media_type=STATIC[name], headers=_HEADERS)

    async def favicon(request):
        return Response(status_code=204)

    async def answer(request):
        if request.method == "POST":
            args = _args(await _body(request))
        else:
            args = dict(request.query_params)
        method = request.path_params["method"]
        content, payload = await run_in_threadpool(api.handle, method, args)  # off the loop
        if payload is None:
            return JSONResponse(content, headers=_HEADERS)
        media = content.get("media_type", "application/octet-stream")
        extra = {"X-Array": json.dumps(content)} if "dtype" in content else {}
        return Response(payload, media_type=media, headers={**_HEADERS, **extra})

    def answered(route):
        """``route``, whose every failure is a one-line JSON error answer, never a bare 500."""

        async def call(request):
            try:
                return await route(request)
            except _Refused as e:
                return _error(e.status, str(e))
            except JaxmambaError as e:
                return _error(400, first_line(e))
            except ClientDisconnect:  # gone while its body was read: nobody reads the answer
                return _error(400, "the client disconnected")
            except Exception as e:  # a bug, not bad input: still a one-line JSON answer
                _log.error("internal error answering %s", request.url.path, exc_info=True)
                reason = f"internal error: {type(e).__name__}: {first_line(e)}"
                return _error(500, reason.encode("utf-8", "backslashreplace").decode())

        return call

    async def http_error(request, exc):  # no route (404), a method not allowed (405)
        return _error(exc.status_code, exc.detail, exc.headers)

    routes = [
        Route("/", answered(index)),
        Route("/favicon.ico", answered(favicon)),
        Route("/api/{method:str}", answered(answer), methods=["GET", "POST"]),
        Route("/{name:str}", answered(static)),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_Guard)],
                     exception_handlers={HTTPException: http_error})  # fmt: skip


class ServerThread:
    """Serve a study from a background thread (for notebooks and tests); ``port=0`` picks one.

    Use as a context manager, or ``start()`` / ``stop()``; ``url`` is where it listens.
    """

    def __init__(self, study, port: int = 0, host: str = "127.0.0.1", companions=None) -> None:
        uvicorn = require("uvicorn", "serve", "jaxmamba serve")
        self.host = _loopback(host)
        config = uvicorn.Config(
            app(study, companions), host=self.host, port=_port(port), log_level="warning",
            lifespan="off", access_log=False,
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
        return _url(self.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(
    study,
    port: int = 8765,
    *,
    open_browser: bool = True,
    host: str = "127.0.0.1",
    companions: Sequence | None = None,
) -> None:
    """Serve ``study`` until interrupted (Ctrl-C), printing the URL; opens a browser unless told
    not to.  ``port=0`` picks a free port; a port outside 0..65535 is an
    :class:`~jaxmamba.errors.InputError`.  ``companions``: studies (or folders) of other models
    over the same images, shown beside it (default: those its ``study.json`` names)."""
    uvicorn = require("uvicorn", "serve", "jaxmamba serve")
    host, port = _loopback(host), _port(port)
    study = study if isinstance(study, Study) else Study(study)
    if companions is not None:
        companions = [c if isinstance(c, Study) else Study(c) for c in companions]
        for c in companions:
            if not study.same_images(c):
                raise StudyError(f"{c.path} is a study of other images than {study.path}; a "
                                 "study shown beside it shows the same images")  # fmt: skip
    application = app(study, companions)
    sock = _listen(host, port)
    url = _url(host, sock.getsockname()[1]) + "/"
    shown = "".join(f" with {c.path}" for c in companions or ())
    print(f"serving {study.path}{shown} at {url} (Ctrl-C stops)", flush=True)
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(application, log_level="warning", lifespan="off", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
