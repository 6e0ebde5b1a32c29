"""The questions a view asks of a study, answered from the study folder: one protocol for the
local server (:mod:`jaxmamba.serve`, over HTTP) and the notebook widget (:mod:`jaxmamba.widget`,
over widget messages).

Every request is ``(method, args)`` and its answer ``(content, payload)``: ``content`` a small
JSON-able dict, ``payload`` raw little-endian bytes (float32 or int32) or PNG bytes, or
``None``.  Nothing answers with a whole ``L x L`` map: a heat map is the mean of the selected
patches' rows or columns, ``L`` numbers.

=========== ===================================================== ==========================
method      args                                                  payload
=========== ===================================================== ==========================
``meta``    —                                                     — (content: the study)
``coords``  order, block, method                                  float32 ``(L, 2)``
``routes``  order, block                                          int32 ``(K, L)``
``heat``    order, block, patches, direction, route              float32 ``(L,)``
``image``   index                                                 PNG
=========== ===================================================== ==========================

>>> import numpy as np, tempfile, jaxmamba
>>> from jaxmamba.study import write_study
>>> x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
>>> s = write_study(tempfile.mkdtemp() + "/s", jaxmamba.create_model("vmamba_test"), x,
...                 blocks=[3], progress=False)
>>> api = ViewAPI(s)
>>> content, payload = api.handle("heat", {"order": "cross", "block": "layers.3.blocks.0",
...                                        "patches": [1, 2], "direction": "query"})
>>> content, np.frombuffer(payload, "<f4").shape
({'dtype': 'float32', 'shape': [4]}, (4,))
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxmamba.errors import StudyError
from jaxmamba.study import DIRECTIONS, Study

__all__ = ["METHODS", "ViewAPI"]

METHODS = ("meta", "coords", "routes", "heat", "image")
MAX_PATCHES = 1 << 16


def _array(a: np.ndarray, dtype: str) -> tuple[dict, bytes]:
    a = np.ascontiguousarray(a, dtype="<f4" if dtype == "float32" else "<i4")
    return {"dtype": dtype, "shape": list(a.shape)}, a.tobytes()


def _str(args: Mapping, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise StudyError(f"{key} must be a string, got {value!r}")
    return value


class ViewAPI:
    """Answers view requests from an open :class:`~jaxmamba.study.Study`."""

    def __init__(self, study: Study) -> None:
        self.study = study

    def meta(self) -> dict:
        """What the front end shows in its controls: orders, blocks, methods, images, options."""
        s = self.study
        m = s.meta
        return {
            "title": m.get("title", "jaxmamba"),
            "count": s.count,
            "signed": s.signed,
            "methods": s.methods,
            "route_maps": bool(m["route_maps"]),
            "options": m["options"],
            "image_size": m["image_size"],
            "orders": [
                {
                    "name": o["name"],
                    "routes": o["routes"],
                    "model": m["models"][o["model"]]["description"],
                    "model_digest": o["model"],
                    "source": m["models"][o["model"]].get("source"),
                    "blocks": [b.name for b in s.blocks],
                }
                for o in m["orders"]
            ],
            "blocks": [
                {"name": b.name, "stage": b.stage, "index": b.index, "grid": list(b.grid)}
                for b in s.blocks
            ],
            "images": [{"name": i["name"]} for i in m["images"]],
        }

    def handle(self, method: str, args: Mapping) -> tuple[dict, bytes | None]:
        """Answer one request; bad requests raise :class:`~jaxmamba.errors.StudyError`."""
        if not isinstance(args, Mapping):
            raise StudyError("request arguments must be a mapping")
        s = self.study
        if method == "meta":
            return self.meta(), None
        if method == "coords":
            xy = s.coords(_str(args, "order"), _str(args, "block"), _str(args, "method"))
            return _array(xy, "float32")
        if method == "routes":
            return _array(s.routes(_str(args, "order"), _str(args, "block")), "int32")
        if method == "heat":
            patches = args.get("patches")
            if isinstance(patches, str):  # "1,2,3" from a query string
                try:
                    patches = [int(p) for p in patches.split(",") if p]
                except ValueError:
                    raise StudyError(f"patches must be integers, got {patches!r}") from None
            if not isinstance(patches, list | tuple) or len(patches) > MAX_PATCHES:
                raise StudyError("patches must be a list of patch indices")
            direction = args.get("direction", "query")
            if direction not in DIRECTIONS:
                raise StudyError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
            values = s.heat(
                _str(args, "order"), _str(args, "block"), patches, direction,
                args.get("route", "sum"),
            )  # fmt: skip
            return _array(values, "float32")
        if method == "image":
            try:
                index = int(args.get("index"))
            except (TypeError, ValueError):
                raise StudyError(f"index must be an integer, got {args.get('index')!r}") from None
            return {"media_type": "image/png"}, s.image_png(index)
        raise StudyError(f"unknown request {method!r}; requests are {METHODS}")
