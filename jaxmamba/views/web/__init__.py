"""The explorer's front end: one page and one script for every data source.

The script ``app.js`` mounts the explorer on an element with a *source*: the local server
(:mod:`jaxmamba.views.server`, HTTP), the notebook widget (:mod:`jaxmamba.views.widget`, widget
messages) or data embedded in the page (:mod:`jaxmamba.views.export`, the offline export).  Plain
JavaScript and canvas, no framework and nothing fetched from the network.

``app.js`` is not a file: it is the plain scripts of :data:`SCRIPTS` (one concern each: colours,
scales, the offline arithmetic, the sources, the layout, the state, the controls, the panels, the
pointer) joined in that order inside one function that returns the ``JM`` name space, so that the
page, the offline file (one self-contained HTML file) and the widget (one ESM string) each get one
script, under the same Content-Security-Policy.  ``types.js`` holds their JSDoc types only; the
types are checked by ``tsc --noEmit`` (``tsconfig.json`` at the repository root).

>>> "JM.mount" in page("t", "JM.mount(document.body, JM.httpSource('api'));")
True
>>> "<title>{{DATA}}</title>" in page("{{DATA}}", "", data="<script>1</script>")
True
>>> script = web_file("app.js")
>>> script.startswith('"use strict";') and "function mount(" in script
True
"""

from __future__ import annotations

import html
import re
from importlib import resources

__all__ = ["CSP", "OFFLINE_CSP", "SCRIPTS", "STATIC", "page", "web_file"]

SCRIPTS = (
    "colour.js",  # colour maps, CSS colours, numbers for reading
    "scales.js",  # scaleFor: the colour scales (linear, symlog, rank) and their ticks
    "offline.js",  # the offline file's arithmetic: decoding, mean rows, pooling, mapped selections
    "sources.js",  # httpSource, embeddedSource, widgetSource
    "dom.js",  # building elements and menus
    "layout.js",  # the page's elements and their ids
    "state.js",  # the one state object, read with the meta
    "controls.js",  # the controls' items and visibility; a control's change as a state change
    "scatter.js",  # the scatterplot
    "heat.js",  # the heat maps, captions, loading notes, findings
    "colorbar.js",  # a colour bar
    "matrix.js",  # the matrix view
    "overview.js",  # the selection in every block
    "explorer.js",  # mount, update (every state change), load, render (the one drawing path)
    "pointer.js",  # the controls' and the pointer's events
    "hooks.js",  # the test hooks (element.explorer)
)
_JOINED_HEAD = '"use strict";\nconst JM = (() => {\n'
_JOINED_TAIL = "return EXPORTS;\n})();\n"

STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'"
)
OFFLINE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:"
)
_PLACEHOLDER = re.compile(r"\{\{(TITLE|HEAD|SCRIPT|BOOT|DATA)\}\}")


def web_file(name: str) -> str:
    """The text of one of the front end's files (``app.js``, ``app.css``, ``page.html``).

    ``app.js`` is :data:`SCRIPTS` joined, each file's top-level names local to the ``JM``
    function; ``JM`` is the one global name the script defines."""
    if name == "app.js":
        parts = (f"// ---- {part}\n{web_file(part)}" for part in SCRIPTS)
        return _JOINED_HEAD + "\n".join(parts) + _JOINED_TAIL
    return resources.files("jaxmamba.views.web").joinpath(name).read_text("utf-8")


def page(title: str, boot: str, *, inline: bool = False, data: str = "") -> str:
    """The explorer page: ``boot`` is the script that mounts the app on ``#app`` with a source.

    ``inline=True`` puts the app's script and style into the page, under a Content-Security-
    Policy that forbids any network access (the offline export); ``data`` is an inline
    ``<script type="application/json">`` block."""
    head = (
        f'<meta http-equiv="Content-Security-Policy" content="{OFFLINE_CSP}">\n'
        f"<style>{web_file('app.css')}</style>"
        if inline
        else '<link rel="stylesheet" href="app.css">'
    )
    if inline:  # one script element: the app, then the line that mounts it
        script, boot = f"<script>{web_file('app.js')}\n{boot}</script>", ""
    else:
        script, boot = '<script src="app.js"></script>', f"<script>{boot}</script>"
    values = {"TITLE": html.escape(title), "HEAD": head, "SCRIPT": script, "BOOT": boot,
              "DATA": data}  # fmt: skip
    # one pass over the template only: a placeholder inside a value (a title "{{DATA}}", a
    # script that mentions "{{BOOT}}") stays as it is
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], web_file("page.html"))
