"""Atomic, checksummed folders of arrays: the one way jaxmamba writes what it must read back.

A *store folder* holds named pytrees of arrays (each an Orbax ``StandardCheckpointer``
checkpoint in a sub-folder), small text files (JSON metadata), and ``checksums.json``: the
sha256 of every file in it and the marker that says jaxmamba made the folder.  Model
checkpoints (:func:`jaxmamba.save`), training checkpoints (:func:`jaxmamba.train.loop.fit`) and the
resumable state of running means (:func:`jaxmamba.attention_mean`) are all store folders.
The path checks and single-file writes (:mod:`jaxmamba.storage.files`) and the lock
(:mod:`jaxmamba.storage.lock`) are re-exported here: a writer imports ``store`` alone.

Guarantees:

* **Atomic.** Everything is written into a hidden sibling ``.NAME.tmp-<pid>-<id>`` that is
  renamed to ``NAME`` only when complete; a killed writer leaves no ``NAME``, and the next write
  in the same parent removes temporaries whose writing process is gone.
* **Verified.** :func:`read` checks every file against ``checksums.json`` first and raises
  :class:`~jaxmamba.errors.CheckpointError` naming the damaged file (a flipped byte, a truncated
  or missing file).
* **Never someone else's.** :func:`write` with ``overwrite=True`` replaces only a folder that
  :func:`is_ours` recognises; it never deletes anything else, and :func:`guard` refuses ``/``,
  the home folder, the current directory, any folder holding one of them, and any folder holding
  an input of the command, whatever they contain.
* **Interrupted cleanly.** A write stopped by an exception, Ctrl-C or ``SIGTERM`` removes its
  temporary folder (then ``SIGTERM`` ends the process as it would have); one killed outright
  (``SIGKILL``, a power cut) leaves it to the next write's cleaning, and such a dead writer's
  temporary never makes a folder look "not empty" (:func:`entries`).  A full disk is one
  :class:`~jaxmamba.errors.CheckpointError` naming the path (checked before writing where the
  size is known), not a screen of tracebacks from the writer's threads.
* **One writer.** :func:`locked` holds a lock file in a folder (the owner's pid, host, process
  start and a heartbeat: its mtime, refreshed every few seconds) and refuses a second writer by
  name; a lock not refreshed for 30 s (any host), or whose process is gone or reused (same
  host), is taken over.
* **Inside.** :func:`inside` builds a path below a folder refusing any symbolic link (or special
  file) on the way: what jaxmamba writes into a folder never lands outside it.
* **Multi-process.** With several JAX processes, process 0 checks the target and writes (the
  trees must be the same on every process, e.g. replicated sums) and every process waits for it
  and learns its outcome: a write that fails raises the same
  :class:`~jaxmamba.errors.CheckpointError` in every process, none is left waiting.  Every
  process can read on its own (a shared file system, or a copy of the folder on every host).

>>> import tempfile, numpy as np
>>> folder = tempfile.mkdtemp() + "/state"
>>> _ = write(folder, {"sums": {"a": np.arange(3.0)}}, {"meta.json": '{"count": 3}'})
>>> trees, files = read(folder, ["sums"])
>>> trees["sums"]["a"].tolist(), files["meta.json"]
([0.0, 1.0, 2.0], '{"count": 3}')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmamba.errors import CheckpointError
from jaxmamba.storage.files import (
    clean_temporaries,
    entries,
    first_line,
    guard,
    inside,
    no_space,
    parse_json,
    write_bytes_atomic,
    write_text_atomic,
)
from jaxmamba.storage.lock import LOCK_FILE, locked

# What callers reach through ``store`` (one import for a writer) is re-exported here; the lock's
# timing constants live in :mod:`jaxmamba.storage.lock`, where they are read.
__all__ = [
    "CHECKSUM_FILE",
    "LOCK_FILE",
    "StepStore",
    "entries",
    "first_line",
    "guard",
    "inside",
    "is_ours",
    "locked",
    "parse_json",
    "quiet_orbax",
    "read",
    "remove",
    "verify",
    "write",
    "write_bytes_atomic",
    "write_text_atomic",
]

CHECKSUM_FILE = "checksums.json"
FORMAT = "jaxmamba-store"


@contextlib.contextmanager
def quiet_orbax(level: int = logging.ERROR) -> Iterator[None]:
    """Silence Orbax's absl chatter below ``level`` for the duration of a save or load."""
    logger = logging.getLogger("absl")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _checkpointer():
    """An Orbax checkpointer that works in this process alone: the trees are host data, so with
    several JAX processes one writes (process 0) and each reads without waiting for the others."""
    import orbax.checkpoint as ocp

    if jax.process_count() > 1:
        me = jax.process_index()
        options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
        return ocp.StandardCheckpointer(multiprocessing_options=options)
    return ocp.StandardCheckpointer()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUM_FILE)


def is_ours(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a store folder (its ``checksums.json`` names this format), or a
    model checkpoint of an earlier jaxmamba (``config.json`` with format ``"jaxmamba"``)."""
    folder = Path(folder)
    for name, key, value in (
        (CHECKSUM_FILE, "format", FORMAT),
        ("config.json", "format", "jaxmamba"),
    ):
        try:
            table = parse_json((folder / name).read_text(), folder / name)
            if isinstance(table, dict) and table.get(key) == value:
                return True
        except (OSError, ValueError, AttributeError):  # CheckpointError is a ValueError
            continue
    return False


_MESSAGE_BYTES = 2048


def _agree(error: CheckpointError | None) -> None:
    """Wait for process 0 and raise its ``error`` (a step it did alone) in every process.

    With one process this only raises ``error``.  With several, process 0 sends its outcome to all
    (a collective, so it is also a barrier): a failure of process 0 raises the same
    :class:`~jaxmamba.errors.CheckpointError` everywhere instead of leaving the others waiting.
    """
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        text = np.zeros(_MESSAGE_BYTES, np.uint8)
        if error is not None and jax.process_index() == 0:
            raw = str(error).encode()[:_MESSAGE_BYTES]
            text[: len(raw)] = np.frombuffer(raw, np.uint8)
        text = np.asarray(multihost_utils.broadcast_one_to_all(text))
        if error is None and text.any():
            raise CheckpointError(bytes(text).rstrip(b"\0").decode(errors="replace"))
    if error is not None:
        raise error


def write(
    folder: str | os.PathLike,
    trees: Mapping[str, object],
    files: Mapping[str, str] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``trees`` (``{name: pytree of arrays}``) and text ``files`` as the store ``folder``.

    Args:
      folder: the folder to create (its parents are created too).
      trees: each written with Orbax to ``folder/<name>/``; leaves become host NumPy arrays.
      files: ``{file name: text}`` written beside them.
      overwrite: replace an existing ``folder`` if :func:`is_ours` recognises it (an empty folder
        is always replaced); anything else is refused and left untouched.

    Returns:
      The absolute path of ``folder``.
    """
    folder = guard(folder)
    files = dict(files or {})
    error = None
    if jax.process_index() == 0:  # the others wait for it (they see the folder mid-write)
        try:
            _check_target(folder, overwrite)
            host = {name: jax.tree.map(np.asarray, tree) for name, tree in trees.items()}
            _check_space(folder, host, files)
            with _terminate_cleanly():
                _write_primary(folder, host, files)
        except CheckpointError as e:
            error = e
        except Exception as e:  # e.g. a leaf that is no array: one error, in every process
            error = CheckpointError(f"could not write {folder}: {first_line(e)}")
            error.__cause__ = e
    _agree(error)
    return folder


def _check_target(folder: Path, overwrite: bool) -> None:
    if folder.exists():
        if not folder.is_dir():
            raise CheckpointError(f"{folder} exists and is not a directory; nothing was written")
        if entries(folder):
            if not overwrite:
                raise CheckpointError(
                    f"{folder} already exists and is not empty; pass overwrite=True to replace it"
                )
            if not is_ours(folder):
                raise CheckpointError(
                    f"{folder} is not a folder jaxmamba wrote, so it is not replaced; "
                    "choose another path"
                )


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _check_space(folder: Path, trees: Mapping[str, object], files: Mapping[str, str]) -> None:
    """Refuse a write that cannot fit in the free space of ``folder``'s file system."""
    need = sum(leaf.nbytes for tree in trees.values() for leaf in jax.tree.leaves(tree))
    need += sum(len(text.encode()) for text in files.values())
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder.anchor)
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    if need > free:
        raise CheckpointError(
            f"not enough space to write {folder}: it needs about {_size(need)}, the disk of "
            f"{existing} has {_size(free)} free; nothing was written"
        )


class _Terminated(BaseException):
    """SIGTERM arrived during a write (raised by the handler of :func:`_terminate_cleanly`)."""


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """While a write runs, let ``SIGTERM`` raise so that the write removes its temporary folder;
    the process then ends by ``SIGTERM`` as it would have.  Only in the main thread, and only
    where ``SIGTERM`` has its default action (a program's own handler is left alone)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not stop the cleanup
        raise _Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the cleanup is done: end as SIGTERM ends us
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _closed_loop(report) -> bool:
    return isinstance(report.exc_value, RuntimeError) and "Event loop is closed" in str(
        report.exc_value
    )


def _drop_closed_loop_reports() -> None:
    """From now on, drop the "Event loop is closed" reports that tensorstore's callbacks keep
    sending, after a failed Orbax write, to event loops Orbax has closed (other reports pass)."""
    previous = sys.unraisablehook
    if getattr(previous, "_jaxmamba_filter", False):
        return

    def hook(report):
        if not _closed_loop(report):
            previous(report)

    hook._jaxmamba_filter = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


@contextlib.contextmanager
def _held_unraisable() -> Iterator[None]:
    """Hold the "Exception ignored" reports of a write's threads (Orbax's and tensorstore's event
    loops report a failed write dozens of times, some of them later); replay them only if the
    write succeeds."""
    held: list[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = held.append
    ok = False
    try:
        yield
        ok = True
    finally:
        sys.unraisablehook = previous
        if ok:
            for report in held:
                previous(report)
        else:
            for report in held:
                if not _closed_loop(report):
                    previous(report)
            _drop_closed_loop_reports()


def _remove_temporary(tmp: Path) -> None:
    """Remove a failed write's folder, and again if a writer thread still finishing recreates
    part of it (tensorstore may complete a pending write after Orbax gave up)."""
    for _ in range(20):
        shutil.rmtree(tmp, ignore_errors=True)
        time.sleep(0.05)
        if not tmp.exists():
            return


def _write_primary(folder: Path, trees: Mapping[str, object], files: Mapping[str, str]) -> None:
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp = folder.parent / f".{folder.name}.tmp-{tag}"
    old = folder.parent / f".{folder.name}.old-{tag}"
    new_parents = [p for p in folder.parents if not p.exists()]  # removed again on failure
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        clean_temporaries(folder.parent, folder.name)
        tmp.mkdir()
        with quiet_orbax(logging.CRITICAL), _held_unraisable():  # a failure is reported below
            checkpointer = _checkpointer()
            try:
                for name, tree in trees.items():
                    checkpointer.save(tmp / name, tree)
                checkpointer.wait_until_finished()
            finally:
                checkpointer.close()
        for name, text in files.items():
            (tmp / name).write_text(text)
        sums = {str(p.relative_to(tmp)): _sha256(p) for p in _files(tmp)}
        (tmp / CHECKSUM_FILE).write_text(json.dumps({"format": FORMAT, "files": sums}, indent=0))
        if folder.exists():
            if any(folder.iterdir()):
                folder.rename(old)  # overwrite: keep the old one until the new one is in place
            else:
                folder.rmdir()
        tmp.rename(folder)
    except BaseException as e:
        _remove_temporary(tmp)
        if old.exists() and not folder.exists():
            old.rename(folder)  # put the previous folder back
        for parent in new_parents:  # innermost first
            with contextlib.suppress(OSError):
                parent.rmdir()
        if isinstance(e, CheckpointError) or not isinstance(e, Exception):
            raise
        if no_space(e):
            raise CheckpointError(
                f"could not write {folder}: no space left on device; nothing was written"
            ) from None
        raise CheckpointError(f"could not write {folder}: {first_line(e)}") from e
    shutil.rmtree(old, ignore_errors=True)


def verify(folder: str | os.PathLike) -> dict[str, str]:
    """Check every file of the store ``folder`` against its checksums; return the file table.

    Raises :class:`~jaxmamba.errors.CheckpointError` naming the first missing or damaged file.
    Files added to the folder later (notes, a training record) are not checked.
    """
    folder = Path(folder)
    table_file = folder / CHECKSUM_FILE
    try:
        table = parse_json(table_file.read_text(), table_file)
    except FileNotFoundError:
        raise CheckpointError(
            f"{folder} has no {CHECKSUM_FILE}: not a complete jaxmamba store"
        ) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{table_file} is unreadable or damaged ({first_line(e)})") from None
    if (
        not isinstance(table, dict)
        or table.get("format") != FORMAT
        or not isinstance(table.get("files"), dict)
    ):
        raise CheckpointError(f"{table_file} is not a jaxmamba checksum table")
    listed = table["files"]
    for rel, digest in listed.items():
        path = folder / rel
        if not isinstance(digest, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise CheckpointError(f"{table_file} is not a jaxmamba checksum table")
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: the folder {folder} is incomplete")
        if _sha256(path) != digest:
            raise CheckpointError(f"{path} is damaged: its checksum does not match {table_file}")
    return listed


def read(
    folder: str | os.PathLike,
    trees: Iterable[str] | Mapping[str, object],
    files: Iterable[str] = ("meta.json",),
) -> tuple[dict, dict[str, str]]:
    """Verify and read the store ``folder``: ``({name: tree}, {file name: text})``.

    Args:
      trees: names of the trees to read, or ``{name: target}`` where a target pytree (NumPy
        arrays or ``jax.ShapeDtypeStruct``) fixes the structure, shapes and dtypes expected.
      files: text files to read (those absent are left out of the result).
    """
    folder = Path(folder).expanduser().absolute()
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder} {'is not a folder' if folder.exists() else 'does not exist'}"
        )
    verify(folder)
    targets = dict(trees) if isinstance(trees, Mapping) else dict.fromkeys(trees)
    out = {}
    try:
        with quiet_orbax():
            checkpointer = _checkpointer()
            try:
                for name, target in targets.items():
                    if not (folder / name).is_dir():
                        raise CheckpointError(f"{folder} has no tree {name!r}")
                    out[name] = checkpointer.restore(folder / name, target)
            finally:
                checkpointer.close()
    except CheckpointError:
        raise
    except Exception as e:  # orbax / tensorstore raise many types for a damaged folder
        raise CheckpointError(
            f"cannot read the arrays in {folder}: {type(e).__name__}: {first_line(e)}"
        ) from e
    texts = {name: (folder / name).read_text() for name in files if (folder / name).is_file()}
    return out, texts


def remove(folder: str | os.PathLike) -> None:
    """Delete ``folder`` if :func:`is_ours` recognises it; refuse anything else."""
    folder = guard(folder)
    if not folder.exists():
        return
    if not is_ours(folder):
        raise CheckpointError(f"{folder} is not a folder jaxmamba wrote; it is not deleted")
    shutil.rmtree(folder)


class StepStore:
    """Numbered store folders ``DIR/<step>/``, keeping the newest ``keep`` (resumable runs).

    >>> import tempfile, numpy as np
    >>> steps = StepStore(tempfile.mkdtemp() + "/ckpt", keep=2)
    >>> for step in (1, 2, 3):
    ...     _ = steps.save(step, {"x": np.full(2, step)})
    >>> steps.steps(), steps.latest_step()
    ([2, 3], 3)
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 2) -> None:
        if not isinstance(keep, int) or keep < 1:
            raise CheckpointError(f"keep must be an int >= 1, got {keep!r}")
        self.directory = guard(directory)
        self.keep = keep

    def steps(self) -> list[int]:
        """Complete steps, oldest first (a folder without checksums is not complete)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in self.directory.iterdir()
            if p.name.isdigit() and (p / CHECKSUM_FILE).is_file()
        )

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(
        self, step: int, trees: Mapping[str, object], files: Mapping[str, str] | None = None
    ) -> Path:
        """Write step ``step`` (replacing an earlier write of the same step) and prune old ones."""
        path = write(self.directory / str(int(step)), trees, files, overwrite=True)
        error = None
        if jax.process_index() == 0:
            try:
                for old in self.steps()[: -self.keep]:
                    remove(self.directory / str(old))
            except CheckpointError as e:
                error = e
            except OSError as e:
                error = CheckpointError(f"could not prune {self.directory}: {first_line(e)}")
        _agree(error)
        return path

    def restore(self, step: int, trees, files: Iterable[str] = ("meta.json",)):
        """:func:`read` of step ``step``."""
        return read(self.directory / str(int(step)), trees, files)
