"""One writer per folder: a lock file with its owner and a heartbeat.

:func:`locked` holds ``folder/.lock`` (:data:`LOCK_FILE`) while a block runs. The file names its
owner (pid, host, process start, a token) and its mtime is the heartbeat, touched every
:data:`LOCK_HEARTBEAT_S` seconds by a daemon thread. A second writer is refused by name; a lock
left by a writer that is gone is taken over: at once on the same host when its pid is dead or
reused, otherwise once not touched for :data:`LOCK_TIMEOUT_S` seconds.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> with locked(folder) as path:
...     path.name, path.exists()
('.lock', True)
>>> os.listdir(folder)
[]
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from jaxmamba.errors import CheckpointError
from jaxmamba.storage.files import process_alive, write_error

__all__ = ["LOCK_FILE", "LOCK_HEARTBEAT_S", "LOCK_TIMEOUT_S", "locked"]

LOCK_FILE = ".lock"
LOCK_HEARTBEAT_S = 5.0  # how often a held lock's file is touched (its mtime: the heartbeat)
LOCK_TIMEOUT_S = 30.0  # a lock not touched for this long is stale, whatever its host or pid
_STALE_UNREADABLE_S = 5.0  # a lock file without a readable owner (its writer killed at once)
_held_tokens: set[str] = set()  # the tokens of the locks this process holds now


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (field 22 of ``/proc/<pid>/stat``, in clock ticks since
    boot), or None where that cannot be read (no such process, not Linux)."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # the name may hold spaces and ')'
        return fields[19].decode()
    except (OSError, IndexError, ValueError):
        return None


def _lock_owner(path: Path) -> dict | None:
    """The owner recorded in the lock file ``path`` (``{"pid", "host", "since", "token",
    "start"}``), or None if it cannot be read (gone, empty, damaged)."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return None
    return owner


def _lock_age(path: Path) -> float | None:
    """Seconds since the lock file ``path`` was last touched (its heartbeat); None if it is gone."""
    try:
        return max(0.0, time.time() - os.lstat(path).st_mtime)
    except FileNotFoundError:
        return None


def _lock_is_stale(path: Path, owner: dict | None) -> bool:
    """Whether the lock ``path`` of ``owner`` is left by a writer that is gone.  On this host the
    process decides: the lock is stale if its pid is dead, is this process's without being one of
    the locks it holds, or is a process started at another time than the one recorded (the pid
    reused); a live process whose start time matches keeps its lock however busy it is.  Where
    that cannot be told (another host, a container's new hostname, no start time recorded), the
    heartbeat does: stale once not touched for :data:`LOCK_TIMEOUT_S` (a live holder touches it
    every :data:`LOCK_HEARTBEAT_S`).  A lock naming no owner is stale after a few seconds."""
    age = _lock_age(path)
    if age is None:
        return True
    if owner is None:
        return age > _STALE_UNREADABLE_S
    if _verified_live(owner) is None:
        return age > LOCK_TIMEOUT_S
    return not _verified_live(owner)


def _verified_live(owner: dict) -> bool | None:
    """Whether the lock's process is alive, as far as this host can tell; None if it cannot."""
    if owner.get("host") != socket.gethostname():
        return None  # its pid cannot be checked here: only the heartbeat tells
    pid = owner["pid"]
    if pid == os.getpid():
        return owner.get("token") in _held_tokens
    if not process_alive(pid):
        return False
    start = _start_time(pid)
    if owner.get("start") is None or start is None:
        return None
    return owner["start"] == start


def _refused(path: Path, owner: dict | None, advice: str) -> CheckpointError:
    """The error for a live lock: who holds it, how fresh its heartbeat is, and when it would be
    taken over."""
    age = _lock_age(path) or 0.0
    beat = (f"its lock was refreshed {age:.0f} s ago; a lock not refreshed for "
            f"{LOCK_TIMEOUT_S:.0f} s is taken over")  # fmt: skip
    if owner is not None and _verified_live(owner):
        beat = "that process is running"
    if owner is None:
        return CheckpointError(
            f"{path.parent} is being written by another process (its lock {path} names no owner "
            f"yet; {beat}); {advice}"
        )
    host = "" if owner.get("host") == socket.gethostname() else f" on {owner.get('host')}"
    return CheckpointError(
        f"{path.parent} is being written by process {owner['pid']}{host} (since "
        f"{owner.get('since', '?')}; {beat}); {advice}"
    )


def _take_lock(path: Path, advice: str) -> str:
    """Create the lock file ``path`` (``O_CREAT | O_EXCL``), taking over a stale one; return the
    token written in it."""
    token = uuid.uuid4().hex
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S"), "token": token,
              "start": _start_time(os.getpid())}  # fmt: skip
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            if os.path.islink(path):
                raise CheckpointError(
                    f"{path} is a symbolic link; jaxmamba does not write through it"
                ) from None
            owner = _lock_owner(path)
            if _lock_is_stale(path, owner):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            raise _refused(path, owner, advice) from None
        except OSError as e:
            raise write_error(path, e) from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(record))
        except OSError as e:
            with contextlib.suppress(OSError):
                path.unlink()
            raise write_error(path, e) from None
        return token
    raise CheckpointError(f"could not take the lock {path}: other processes keep taking it")


def _heartbeat(path: Path, stop: threading.Event) -> None:
    """Touch the lock file ``path`` every :data:`LOCK_HEARTBEAT_S` until ``stop`` is set."""
    while not stop.wait(LOCK_HEARTBEAT_S):
        with contextlib.suppress(OSError):  # gone or taken over: the release will see it
            os.utime(path, follow_symlinks=False)


@contextlib.contextmanager
def locked(folder: str | os.PathLike, advice: str = "wait for it or choose another folder"):
    """Hold the lock file ``folder/.lock`` while the block runs: a second writer (another
    process, or a second call in this one) gets :class:`~jaxmamba.errors.CheckpointError` naming
    the owner's pid and start, followed by ``advice``.  The lock is removed when the block ends,
    by an exception or Ctrl-C too.  While held, a daemon thread touches it every
    :data:`LOCK_HEARTBEAT_S` seconds; a lock left by a killed process is taken over once it was
    not touched for :data:`LOCK_TIMEOUT_S` seconds (whatever its host), or at once on the same
    host when its pid is dead or reused (another start time, or this very process's pid as in a
    container where every run is pid 1).  ``folder`` must exist.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with locked(folder):
    ...     with locked(folder, "wait"):
    ...         pass
    Traceback (most recent call last):
    ...
    jaxmamba.errors.CheckpointError: ... is being written by process ... (since ...); wait
    >>> os.listdir(folder)
    []
    """
    path = Path(folder) / LOCK_FILE
    token = _take_lock(path, advice)
    _held_tokens.add(token)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, stop), daemon=True,
                            name=f"jaxmamba lock heartbeat {path}")  # fmt: skip
    beat.start()
    try:
        yield path
    finally:
        stop.set()
        beat.join()
        _held_tokens.discard(token)
        owner = _lock_owner(path)
        if owner is not None and owner.get("token") == token:  # still ours: never another's
            with contextlib.suppress(OSError):
                path.unlink()
