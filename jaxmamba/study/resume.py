"""Resuming a study: whether a folder holds this study, and what a killed or replanned run left.

A rerun into an existing study must have the same plan (the same models, images, orders,
blocks and options) or is refused, naming what differs; only an unfinished first run that
averaged nothing yet may be planned anew (:func:`clear_for_replan`).

>>> import tempfile
>>> check_existing(Path(tempfile.mkdtemp()), None) is None  # an empty folder: a new study
True
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from jaxmamba.attention.resume import RUN_FILE, RUN_FORMAT
from jaxmamba.errors import StudyError
from jaxmamba.storage import store
from jaxmamba.study.layout import PNG_NAME, STUDY_FILE
from jaxmamba.study.schema import FORMAT

_PLAN_KEYS = ("models", "orders", "blocks", "image_size", "images", "images_digest",
              "single_images", "methods", "route_maps", "options", "pool_grid", "seed")  # fmt: skip


_MEAN_KEYS = ("models", "orders", "blocks", "image_size", "images_digest", "options")  # fmt: skip


LOCK_ADVICE = "wait for it or choose another --out"
# what a study folder holds: written by write_study, write_figures and the demo's explorer page


def check_existing(out: Path, plan: dict | None) -> dict | None:
    """The saved study.json if ``out`` holds this study; None for a new or empty folder (the
    temporaries of killed writers and the lock do not count).  With ``plan`` None, only whether
    ``out`` is a study folder at all is checked.  An unfinished study that holds no result yet
    (nothing averaged) and was planned otherwise is returned too, marked ``"replan": True``."""
    if out.exists() and not out.is_dir():
        raise StudyError(f"{out} exists and is not a folder; nothing was written")
    if not store.entries(out, ignore=[store.LOCK_FILE]):
        return None
    try:
        saved = store.parse_json((out / STUDY_FILE).read_text(), out / STUDY_FILE)
    except FileNotFoundError:
        raise StudyError(
            f"{out} is not empty and holds no {STUDY_FILE}: it is not a study jaxmamba wrote, "
            "so it is neither used nor changed; choose another --out"
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise StudyError(f"{out / STUDY_FILE} is unreadable or damaged: {e}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise StudyError(f"{out / STUDY_FILE} is not a jaxmamba study")
    if plan is None:
        return saved
    differ = [k for k in _PLAN_KEYS if saved.get(k) != plan[k]]
    if differ and _holds_no_result(out, saved):
        return {**saved, "replan": differ}
    if differ:
        raise StudyError(
            f"{out} holds a study with other {', '.join(differ)}; a study is resumed only with the "
            "same models, images, orders, blocks and options. Choose another --out."
        )
    return saved


def _holds_no_result(out: Path, saved: dict) -> bool:
    """Whether the study folder ``out`` is an unfinished first run that averaged nothing yet: its
    study.json says nothing is done, and it holds only what write_study writes before the first
    mean (thumbnails, running means in ``work/``, the lock)."""
    if saved.get("complete") or saved.get("done") or saved.get("findings"):
        return False
    known = {STUDY_FILE, store.LOCK_FILE, "images", "work"}
    for p in store.entries(out):
        if p.name not in known or p.is_symlink():
            return False
    images, work = out / "images", out / "work"
    if images.exists() and (
        not images.is_dir() or images.is_symlink()
        or not all(PNG_NAME.match(p.name) and p.is_file() for p in store.entries(images))
    ):  # fmt: skip
        return False
    if work.exists() and (
        not work.is_dir() or not all(_is_running_mean(p) for p in store.entries(work))
    ):
        return False
    return True


def _is_running_mean(folder: Path) -> bool:
    """Whether ``folder`` is one of the running means write_study starts in ``work/``: a real
    folder holding an ``attention_mean`` record, or nothing but temporaries of killed writers."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    if not store.entries(folder):
        return True
    try:
        record = store.parse_json((folder / RUN_FILE).read_text(), folder / RUN_FILE)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(record, dict) and record.get("format") == RUN_FORMAT


def remove_running_mean(folder: Path) -> None:
    """Remove ``folder`` if :func:`_is_running_mean` recognises it (anything else is left)."""
    if _is_running_mean(folder):
        shutil.rmtree(folder)


def remove_empty(folder: Path) -> None:
    if folder.is_dir() and not folder.is_symlink() and not store.entries(folder):
        folder.rmdir()


def clear_for_replan(out: Path, differ: Sequence[str]) -> None:
    """Remove what an unfinished first run planned otherwise left (checked by
    :func:`_holds_no_result`): its thumbnails, and its running means if they average something
    else (another model, order, block, option or image)."""
    images = out / "images"
    for p in store.entries(images):
        p.unlink()
    remove_empty(images)
    if any(k in _MEAN_KEYS for k in differ):
        for p in store.entries(out / "work"):
            remove_running_mean(p)
        remove_empty(out / "work")
