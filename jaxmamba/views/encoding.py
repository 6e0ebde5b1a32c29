"""The offline explorer's storage of maps: a ``(L, F)`` matrix as JSON-able base64
(:func:`encode`) and back (:func:`decode`, as the page's ``decodeMatrix`` does).

Encodings (little-endian):

* ``"uint8"``: per row r, ``lo = min``, ``step = (max − min) / 255`` (float32), codes
  ``round((x − lo) / step)``; decoded ``lo + code·step``. Absolute error ≤ ``step / 2`` =
  (row max − row min) / 510, plus float32 rounding. About 1.33·L² bytes per map.
* ``"float16"``: relative error ≤ 2⁻¹¹ for |x| ≥ 6.1e-5, absolute ≤ 3e-8 below; |x| > 65504
  is refused. 2.67·L² bytes.
* ``"float32"``: exact for float32 maps. 5.33·L² bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxmamba.errors import ExplorerError

__all__ = ["ENCODINGS", "decode", "encode"]

ENCODINGS = ("uint8", "float16", "float32")


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def encode(matrix, encoding: str = "uint8") -> dict:
    """Encode a ``(L, F)`` matrix as JSON-able base64 (see the module docstring for precision).

    >>> m = np.arange(6.0).reshape(2, 3)
    >>> bool(np.allclose(decode(encode(m)), m, atol=2 / 510))
    True
    """
    if encoding not in ENCODINGS:
        raise ExplorerError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ExplorerError(f"can only encode 2-D matrices, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ExplorerError(f"matrix contains {int(np.sum(~np.isfinite(m)))} NaN/inf values")
    out: dict[str, Any] = {"shape": list(m.shape), "dtype": encoding}
    if encoding == "float32":
        out["data"] = _b64(m.astype("<f4"))
    elif encoding == "float16":
        if m.size and np.max(np.abs(m)) > 65504.0:
            raise ExplorerError(
                f"values up to {np.max(np.abs(m)):.3g} overflow float16; use encoding='uint8'"
            )
        out["data"] = _b64(m.astype("<f2"))
    else:
        lo = m.min(axis=1) if m.shape[1] else np.zeros(m.shape[0])
        hi = m.max(axis=1) if m.shape[1] else np.zeros(m.shape[0])
        lo32 = lo.astype(np.float32)
        step32 = ((hi - lo) / 255.0).astype(np.float32)
        step = step32.astype(np.float64)[:, None]
        safe = np.where(step > 0, step, 1.0)
        codes = np.clip(np.rint((m - lo32.astype(np.float64)[:, None]) / safe), 0, 255)
        out["data"] = _b64(codes.astype(np.uint8))
        out["lo"] = _b64(lo32.astype("<f4"))
        out["step"] = _b64(step32.astype("<f4"))
    return out


def decode(enc: Mapping) -> np.ndarray:
    """Decode :func:`encode`'s output to a float32 ``(L, F)`` array (as the page does).

    >>> decode(encode(np.eye(2), "float32")).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    shape = tuple(enc["shape"])
    raw = base64.b64decode(enc["data"])
    dtype = enc["dtype"]
    if dtype == "float32":
        return np.frombuffer(raw, "<f4").reshape(shape).astype(np.float32)
    if dtype == "float16":
        return np.frombuffer(raw, "<f2").reshape(shape).astype(np.float32)
    if dtype != "uint8":
        raise ExplorerError(f"unknown encoding {dtype!r}")
    codes = np.frombuffer(raw, np.uint8).reshape(shape).astype(np.float32)
    lo = np.frombuffer(base64.b64decode(enc["lo"]), "<f4")[:, None]
    step = np.frombuffer(base64.b64decode(enc["step"]), "<f4")[:, None]
    return lo + codes * step
