"""``jaxmamba.show(study)``: the explorer inline in Jupyter, VS Code or Colab.

The same front end as ``jaxmamba serve`` (:mod:`jaxmamba.views.web`), in an anywidget (the
well-kept library for notebook widgets that runs in every modern front end): the page's requests
travel as widget messages instead of HTTP and are answered by
:class:`jaxmamba.views.protocol.ViewAPI`, so a notebook too reads only the rows a selection needs.

>>> import numpy as np, tempfile, jaxmamba
>>> from jaxmamba.study import write_study
>>> x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
>>> s = write_study(tempfile.mkdtemp() + "/s", jaxmamba.create_model("vmamba_test"), x,
...                 blocks=[3], progress=False)
>>> w = show(s)
>>> sent = []
>>> w.send = lambda content, buffers=None: sent.append((content, buffers))
>>> w.answer({"kind": "jm-request", "id": 1, "method": "coords",
...           "args": {"order": "cross", "block": "layers.3.blocks.0", "method": "pca"}})
>>> sent[0][0]["id"], np.frombuffer(sent[0][1][0], "<f4").shape
(1, (8,))

Every request gets an answer, a value or an error: a bad request (a
:class:`~jaxmamba.errors.JaxmambaError`) answers its message, anything else a one-line
``internal error: ...``, and a malformed message an error naming what is wrong with it.

>>> w.answer({"kind": "jm-request", "id": 2, "method": "image", "args": {"index": 1.5}})
>>> sent[-1][0]
{'kind': 'jm-answer', 'id': 2, 'error': 'index must be an integer, got 1.5'}
"""

from __future__ import annotations

import functools
import logging
import os

from jaxmamba.errors import JaxmambaError, StudyError, require
from jaxmamba.storage.store import first_line
from jaxmamba.study import Study
from jaxmamba.views.protocol import ViewAPI
from jaxmamba.views.web import web_file

__all__ = ["show"]

_log = logging.getLogger(__name__)

_RENDER = (
    "\nexport default { render({ model, el }) { return JM.mount(el, JM.widgetSource(model)); } };\n"
)


def _request_id(content: dict):
    """The id to echo: a request's ``id`` if it is an integer or a string, else ``None``."""
    rid = content.get("id")
    return rid if isinstance(rid, int | str) and not isinstance(rid, bool) else None


def _request(content: dict) -> tuple[str, dict]:
    """``(method, args)`` of a request message, or a StudyError naming what is malformed."""
    if _request_id(content) is None:
        raise StudyError(f"a request needs an integer or string id, got {content.get('id')!r:.60}")
    method, args = content.get("method"), content.get("args", {})
    if not isinstance(method, str):
        raise StudyError(f"a request's method must be a string, got {method!r:.60}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise StudyError(f"a request's args must be an object, got {args!r:.60}")
    return method, args


def _deliver(send, message: dict, buffers=None) -> None:
    """``send(message, buffers=buffers)``; if that fails (the kernel refusing a value), send an
    error answer with the same id instead; if that fails too, log it.  Never raises: it runs in
    the widget's message handler, and the page waits for an answer to every request.

    >>> sent = []
    >>> def send(content, buffers=None):
    ...     if "content" in content:
    ...         raise ValueError("Out of range float values are not JSON compliant")
    ...     sent.append(content)
    >>> _deliver(send, {"kind": "jm-answer", "id": 7, "content": {"x": float("nan")}})
    >>> sent
    [{'kind': 'jm-answer', 'id': 7, 'error': 'internal error: could not send the answer: ValueError: Out of range float values are not JSON compliant'}]
    """  # noqa: E501
    try:
        send(message, buffers=buffers)
        return
    except Exception as e:
        error = (f"internal error: could not send the answer: {type(e).__name__}: "
                 f"{first_line(e)}").encode("utf-8", "backslashreplace").decode()  # fmt: skip
    try:
        send({"kind": message.get("kind"), "id": message.get("id"), "error": error})
    except Exception:
        _log.error("could not send an answer to request %r", message.get("id"), exc_info=True)


@functools.cache
def _widget_class():
    anywidget = require("anywidget", "notebook", "jaxmamba.show")

    class StudyWidget(anywidget.AnyWidget):
        """The explorer of one study; its requests arrive as ``jm-request`` messages."""

        _esm = web_file("app.js") + _RENDER
        _css = web_file("app.css")

        def __init__(self, study: Study) -> None:
            super().__init__()
            self.api = ViewAPI(study)
            self.on_msg(lambda widget, content, buffers: self.answer(content))

        def answer(self, content) -> None:
            """Answer one request message (``{"kind": "jm-request", "id", "method", "args"}``);
            messages of another kind are not ours and left alone.  Never raises: an answer
            that cannot be sent is replaced by an error answer (see :func:`_deliver`)."""
            if not isinstance(content, dict) or content.get("kind") != "jm-request":
                return
            reply = {"kind": "jm-answer", "id": _request_id(content)}
            try:
                result, payload = self.api.handle(*_request(content))
            except JaxmambaError as e:
                _deliver(self.send, {**reply, "error": first_line(e)})
                return
            except Exception as e:  # a bug, not bad input: answered, and the widget lives on
                _deliver(self.send, {**reply, "error": f"internal error: {type(e).__name__}: "
                                                      f"{first_line(e)}"})  # fmt: skip
                return
            _deliver(self.send, {**reply, "content": result}, [payload] if payload else None)

    return StudyWidget


def show(study: Study | str | os.PathLike):
    """A notebook widget showing the explorer of ``study`` (a :class:`~jaxmamba.study.Study` or
    its folder); display it by leaving it last in a cell."""
    return _widget_class()(study if isinstance(study, Study) else Study(study))
