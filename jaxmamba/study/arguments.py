"""The arguments of :func:`~jaxmamba.study.write_study`, checked before anything is written.

>>> int_arg("batch_size", 8, 1), single_arg(2, 5), names_arg(None, 2)
(8, [0, 1], ['image 0', 'image 1'])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from jaxmamba.errors import StudyError
from jaxmamba.storage import store


def int_arg(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``low..high``; a bool, a float or anything else is refused."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise StudyError(f"{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in {low}..{high}"
        raise StudyError(f"{name} must be {span}, got {value!r}")
    return int(value)


def single_arg(single_images, n: int) -> list[int]:
    """The positions of the single images: the first ``single_images`` or those listed."""
    if isinstance(single_images, int | np.integer) and not isinstance(single_images, bool):
        return list(range(min(int_arg("single_images", single_images, 0), n)))
    if isinstance(single_images, str | bytes) or not hasattr(single_images, "__iter__"):
        raise StudyError(
            f"single_images must be a count or a list of image indices, got {single_images!r}"
        )
    single = [int_arg("single_images", i, 0, n - 1) for i in single_images]
    twice = sorted({i for i in single if single.count(i) > 1})
    if twice:
        raise StudyError(f"single_images lists image {twice[0]} more than once: {single}")
    return sorted(single)


def check_finite(images: np.ndarray, what: str) -> None:
    """Refuse NaN/inf values in ``images``, naming the first images holding them."""
    bad = []
    for i in range(0, len(images), 64):  # a chunk at a time: no copy of the whole stack
        chunk = np.asarray(images[i : i + 64])
        bad += (i + np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(1))).tolist()
    if bad:
        raise StudyError(f"{what} {bad[:10]} hold NaN or inf values; nothing was written")


def display_arg(display, images: np.ndarray) -> np.ndarray:
    """The images as shown: checked against ``images`` (default: ``images`` min-max scaled)."""
    if display is None:
        lo, hi = float(images.min()), float(images.max())
        return ((images - lo) / ((hi - lo) or 1.0) * 255).round().astype(np.uint8)
    try:
        display = np.asarray(display)
    except (ValueError, TypeError) as e:
        raise StudyError(f"display is not an array of images: {store.first_line(e)}") from None
    n, h, w = images.shape[:3]
    if display.shape[:3] != (n, h, w) or not (
        display.ndim == 3 or (display.ndim == 4 and display.shape[3] in (1, 3, 4))
    ):
        raise StudyError(
            f"display must be ({n}, {h}, {w}, 3) or ({n}, {h}, {w}) like images, got "
            f"{display.shape}"
        )
    if display.dtype != np.uint8 and not np.issubdtype(display.dtype, np.floating):
        raise StudyError(f"display must be uint8 or floating point, got {display.dtype}")
    if display.dtype != np.uint8:
        check_finite(display, "display images")
    return display


def names_arg(image_names, n: int) -> list[str]:
    if image_names is None:
        return [f"image {i}" for i in range(n)]
    if isinstance(image_names, str | bytes) or not hasattr(image_names, "__iter__"):
        raise StudyError(f"image_names must be a list of names, got {image_names!r}")
    names = list(image_names)
    if len(names) != n:
        raise StudyError(f"image_names has {len(names)} names for {n} images")
    bad = [x for x in names if not isinstance(x, str)]
    if bad:
        raise StudyError(f"image_names must be strings, got {bad[0]!r}")
    for i, name in enumerate(names):
        text_arg(f"image_names[{i}]", name)
    return [str(x) for x in names]


def text_arg(what: str, text: str) -> str:
    """Refuse a string that is not valid Unicode text (a lone surrogate, e.g. from an undecodable
    file name): study.json could hold it, but no reader could read it back as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise StudyError(
            f"{what} is not valid text: {text!r} holds {text[e.start]!r} (a lone surrogate) at "
            f"{e.start}; nothing was written"
        ) from None
    return text


def sources_arg(sources, orders: Sequence[str]) -> dict:
    """``{order: where its model came from (str or None)}``."""
    if not isinstance(sources, Mapping):
        sources = dict.fromkeys(orders, sources)
    bad = [(k, v) for k, v in sources.items() if not isinstance(v, str | os.PathLike | None)]
    if bad:
        raise StudyError(f"sources must be paths: the source of {bad[0][0]!r} is {bad[0][1]!r}")
    sources = {k: None if v is None else os.fspath(v) for k, v in sources.items()}
    for k, v in sources.items():
        if v is not None:
            text_arg(f"the source of {k!r} in sources", v)
    return sources
