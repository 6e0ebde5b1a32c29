"""Every path of a study folder, built here and nowhere else, and the checks that keep them inside.

A study folder holds (each path a function below returning its parts relative to the folder)::

    study.json                              :func:`study_file` (the plan, what is done, findings)
    .lock                                   :func:`lock_file` (the writer's pid, host, heartbeat)
    means/<order>/<block>.npy               :func:`mean` (L, L) float32 mean map, routes merged
    routes/<order>/<block>.npy              :func:`route` (K, L, L) per-route means
    embeddings/<order>/<block>.<method>.npy :func:`embedding` (L, 2) scatterplot coordinates
    joint|interblock/<order>/stage<s>.<method>.npy  :func:`stage_points` a stage's embeddings
    images/<i>.png                          :func:`image` the images as shown (thumbnails)
    single/<order>/<block>.npy              :func:`single` (n, D, L) scan inputs of single images
    ops/<model digest>/<block>.npz          :func:`op` a block's scan parameters
    work/<order>/                           :func:`work` a resumable running mean
    figures/<name>.png                      :func:`figure` static figures (the command line)
    explorer.html                           :func:`explorer` the demo's offline page

A study folder is untrusted: :func:`checked` builds a path to read only from names that are
plain path parts (:data:`PART`), refusing symbolic links below the folder and paths that lead
out of it; :func:`inside` does the same for a path written, and :func:`check_no_links` refuses a
folder holding links anywhere a writer writes.

>>> mean("cross", "layers.0.blocks.0"), stage_points("joint", "cross", 2, "pca")
(('means', 'cross', 'layers.0.blocks.0.npy'), ('joint', 'cross', 'stage2.pca.npy'))
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from jaxmamba.errors import CheckpointError, StudyError
from jaxmamba.storage import store

STUDY_FILE = "study.json"
PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # one path component a study may use
KINDS = ("means", "routes", "embeddings", "images", "single", "ops", "joint", "interblock")
STAGE_KINDS = ("joint", "interblock")
PNG_NAME = re.compile(r"^\d+\.png$")  # an image's file name: images/<i>.png


def study_file() -> tuple[str, ...]:
    return (STUDY_FILE,)


def lock_file() -> tuple[str, ...]:
    return (store.LOCK_FILE,)


def mean(order: str, block: str) -> tuple[str, ...]:
    return ("means", order, f"{block}.npy")


def route(order: str, block: str) -> tuple[str, ...]:
    return ("routes", order, f"{block}.npy")


def embedding(order: str, block: str, method: str) -> tuple[str, ...]:
    return ("embeddings", order, f"{block}.{method}.npy")


def stage_points(kind: str, order: str, stage: int, method: str) -> tuple[str, ...]:
    return (kind, order, f"stage{int(stage)}.{method}.npy")


def image(index: int) -> tuple[str, ...]:
    return ("images", f"{int(index)}.png")


def single(order: str, block: str) -> tuple[str, ...]:
    return ("single", order, f"{block}.npy")


def op(digest: str, block: str) -> tuple[str, ...]:
    return ("ops", digest, f"{block}.npz")


def work(order: str | None = None) -> tuple[str, ...]:
    return ("work",) if order is None else ("work", order)


def figure(name: str) -> tuple[str, ...]:
    return ("figures", name) if name else ("figures",)


def explorer() -> tuple[str, ...]:
    return ("explorer.html",)


# what a study folder holds: written by write_study, write_figures and the demo's explorer page
LAYOUT = (STUDY_FILE, store.LOCK_FILE, *KINDS, "work", "figures", "explorer.html")


def checked(root: Path, real_root: str, kind: str, *parts: str) -> Path:
    """The path ``root/kind/parts…`` of a file to read, checked: every part a plain name, no
    symbolic link anywhere below the study folder, the resolved path inside ``real_root`` (the
    folder's real path)."""
    shown = "/".join(str(p) for p in (kind, *parts))
    if kind not in KINDS or not parts or not all(isinstance(p, str) and PART.fullmatch(p)
                                                 for p in parts):  # fmt: skip
        text = repr(shown)
        raise StudyError(f"{text if len(text) <= 60 else text[:57] + '...'} is not a file a "
                         "study holds")  # fmt: skip
    path = root
    for part in (kind, *parts):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            break  # a missing file: reading it says so
        except OSError as e:
            raise StudyError(f"cannot read {path}: {e.strerror or e}") from None
        if stat.S_ISLNK(mode):
            raise StudyError(f"{path} is a symbolic link; a study is read only from the "
                             "files inside its folder")  # fmt: skip
    real = os.path.realpath(path)
    if os.path.commonpath([real, real_root]) != real_root:
        raise StudyError(f"{path} leads out of the study folder {root}")
    return path


def inside(out: Path, *parts: str, folder: bool = False) -> Path:
    """``out/parts…`` for writing or reading back, with no symbolic link (nor special file) below
    the study folder ``out`` (:func:`jaxmamba.storage.store.inside`); refused as a
    :class:`StudyError`."""
    try:
        return store.inside(out, *parts, folder=folder)
    except CheckpointError as e:
        raise StudyError(str(e)) from None


def check_no_links(out: Path) -> None:
    """Refuse a study folder in which anything jaxmamba writes or reads back (:data:`LAYOUT`)
    is, holds or passes a symbolic link or a special file: checked before anything is written,
    so a resumed study never writes outside its folder (the folder ``out`` itself may be a link).
    """
    try:
        _check_layout(out)
    except StudyError as e:
        raise StudyError(f"{e}; nothing was written") from None


def _check_layout(out: Path) -> None:
    if not out.is_dir():
        return
    for name in LAYOUT:
        try:
            mode = os.lstat(out / name).st_mode
        except FileNotFoundError:
            continue
        except OSError as e:
            raise StudyError(f"cannot use {out / name}: {e.strerror or e}") from None
        if not stat.S_ISDIR(mode):
            inside(out, name)
            continue
        for folder, dirs, files in os.walk(out / name):  # links to folders are listed, not walked
            rel = Path(folder).relative_to(out).parts
            for entry in dirs:
                inside(out, *rel, entry, folder=True)
            for entry in files:
                inside(out, *rel, entry)
