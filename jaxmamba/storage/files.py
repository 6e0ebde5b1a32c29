"""Single files and the folders they go in: guarded paths, atomic file writes, JSON text.

What every writer of jaxmamba needs before it writes anything: :func:`guard` refuses a folder
that must never be replaced or cleared (``/``, the home folder, the current directory, the
command's inputs); :func:`inside` builds a path below a folder refusing any symbolic link on the
way; :func:`entries` lists a folder less the temporaries of writers that are gone (which
:func:`clean_temporaries` removes; :func:`is_stale_temporary` names them);
:func:`write_bytes_atomic` / :func:`write_text_atomic` write one file by a rename, and a failed
write is one :class:`~jaxmamba.errors.CheckpointError` naming the path (:func:`write_error`, a
full disk said as such: :func:`no_space`). :func:`parse_json` reads JSON text strictly and
:func:`first_line` shortens an exception for a one-line message.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> write_text_atomic(inside(folder, "notes", "a.txt"), "hi").read_text()
'hi'
>>> [p.name for p in entries(folder)]
['notes']
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from jaxmamba.errors import CheckpointError

__all__ = [
    "clean_temporaries",
    "entries",
    "first_line",
    "guard",
    "inside",
    "is_stale_temporary",
    "no_space",
    "parse_json",
    "process_alive",
    "write_bytes_atomic",
    "write_error",
    "write_text_atomic",
]

_TMP = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>[0-9]{1,12})-[0-9a-f]{12}$")


def first_line(e: BaseException, limit: int = 400) -> str:
    """The first line of an exception's message, shortened: for one-line error messages."""
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= limit else line[:limit] + "…"


def parse_json(text: str, source: str | os.PathLike) -> object:
    """``json.loads(text)``, refusing what Python's json accepts but JSON does not.

    ``NaN``/``Infinity`` constants and nesting deep enough to exhaust the recursion limit raise
    :class:`~jaxmamba.errors.CheckpointError` naming ``source``, like any malformed text.

    >>> parse_json('{"eps": 1e-5}', "config.json")
    {'eps': 1e-05}
    >>> parse_json('{"eps": Infinity}', "config.json")
    Traceback (most recent call last):
    ...
    jaxmamba.errors.CheckpointError: config.json is not valid JSON: Infinity is not a JSON number
    """

    def constant(name):
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text, parse_constant=constant)
    except RecursionError:
        raise CheckpointError(f"{source} is not valid JSON: nested too deeply") from None
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{source} is not valid JSON: {first_line(e)}") from None


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def guard(folder: str | os.PathLike, protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse ``folder`` as a place to replace or clear; return its absolute path if it is safe.

    Raises :class:`~jaxmamba.errors.CheckpointError` if ``folder`` (symbolic links resolved) is
    ``/``, the home folder, the current directory, a folder that contains one of them, or a
    folder that is or contains one of the paths in ``protect`` (the inputs of a command) —
    whatever it holds, even a jaxmamba checkpoint.

    >>> guard("/")
    Traceback (most recent call last):
    ...
    jaxmamba.errors.CheckpointError: / is the root folder; jaxmamba never replaces or clears it
    """
    real = _real(folder)
    shown = Path(folder).expanduser().absolute()
    never = "; jaxmamba never replaces or clears it"
    if real == real.parent:
        raise CheckpointError(f"{shown} is the root folder{never}")
    places = []
    with contextlib.suppress(OSError):  # a deleted current directory has no path
        places.append(("the current directory", _real(os.getcwd())))
    with contextlib.suppress(RuntimeError, KeyError):  # no home folder known
        places.append(("your home folder", _real(Path.home())))
    for what, place in places:
        if real == place:
            raise CheckpointError(f"{shown} is {what}{never}")
    for what, place in places:
        if real in place.parents:
            raise CheckpointError(f"{shown} contains {what} ({place}){never}")
    for path in protect:
        path = _real(path)
        if real == path or real in path.parents:
            raise CheckpointError(
                f"{shown} {'is' if real == path else 'contains'} the input {path}; "
                "choose another folder"
            )
    return shown


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a pid no process can have: no)."""
    if not 0 < pid < 2**31:  # what a recorded name or lock file claims is not trusted
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def is_stale_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temporary that a jaxmamba writer now gone left behind: its name is
    ``.NAME.tmp-<pid>-<id>`` or ``.NAME.old-<pid>-<id>`` and no process ``<pid>`` is alive.

    >>> is_stale_temporary(f".study.json.tmp-{os.getpid()}-0123456789ab")  # this process: alive
    False
    >>> is_stale_temporary(".study.json.tmp-12-nothex")  # not the library's pattern
    False
    """
    m = _TMP.match(Path(path).name)
    if m is None:
        return False
    pid = int(m.group("pid"))
    return pid != os.getpid() and not process_alive(pid)


def _remove_stale(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:  # a file of write_bytes_atomic
        with contextlib.suppress(OSError):
            p.unlink()


def clean_temporaries(parent: Path, name: str | None = None) -> None:
    """Remove ``.NAME.tmp-*`` / ``.NAME.old-*`` siblings left by writers that are gone (of every
    name when ``name`` is None); nothing else is touched."""
    if not Path(parent).is_dir():
        return
    for p in Path(parent).iterdir():
        m = _TMP.match(p.name)
        if m and (name is None or m.group("name") == name) and is_stale_temporary(p):
            _remove_stale(p)


def entries(folder: str | os.PathLike, ignore: Iterable[str] = ()) -> list[Path]:
    """What ``folder`` holds, sorted, less the names in ``ignore`` and less the temporaries of
    jaxmamba writers that are gone (which are removed): a folder where a first write was killed
    is still empty.  A missing folder holds nothing."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    clean_temporaries(folder)
    ignore = set(ignore)
    return sorted(p for p in folder.iterdir() if p.name not in ignore)


def no_space(e: BaseException | None) -> bool:
    """Whether ``e`` (or an exception it was raised from) says the disk is full.

    >>> no_space(OSError(errno.ENOSPC, "No space left on device")), no_space(ValueError("x"))
    (True, False)
    """
    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        text = str(e)
        if "No space left on device" in text or "os_error_code='28'" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


def write_error(path: Path, e: OSError) -> CheckpointError:
    """One line naming ``path`` for a failed file write: a full disk says so."""
    if no_space(e) or e.errno == getattr(errno, "EDQUOT", None):
        why = "the disk is full"
    else:
        why = e.strerror or first_line(e)
    return CheckpointError(f"could not write {path}: {why}; it was left as it was")


def inside(root: str | os.PathLike, *parts: str, folder: bool = False) -> Path:
    """``root/parts…``, checked for writing (or reading back) inside the folder ``root``.

    Every part must be one plain name (no ``/``, ``..`` or empty name); every existing component
    below ``root`` must be a real folder (``os.lstat``: a symbolic link is refused, not
    followed) and the last, if it exists, a regular file (a real folder with ``folder=True``).
    ``root`` itself may be a symbolic link (the user named it).  Raises
    :class:`~jaxmamba.errors.CheckpointError` naming the offending path; nothing is created.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> os.symlink("/tmp", root / "figures")
    >>> inside(root, "figures", "a.png")
    Traceback (most recent call last):
    ...
    jaxmamba.errors.CheckpointError: .../figures is a symbolic link; ... never through a link
    >>> inside(root, "means", "x.npy") == root / "means" / "x.npy"
    True
    """
    import stat

    from jaxmamba.storage.images import file_kind

    root = Path(root)
    for part in parts:
        if (not isinstance(part, str) or part in ("", ".", "..") or "/" in part
                or os.sep in part or "\x00" in part):  # fmt: skip
            raise CheckpointError(f"{part!r} is not a plain file name inside {root}")
    path = root
    for i, part in enumerate(parts):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return root.joinpath(*parts)  # nothing below exists: nothing to follow
        except OSError as e:
            raise CheckpointError(f"cannot use {path}: {e.strerror or e}") from None
        last = i == len(parts) - 1
        want = stat.S_ISDIR if not last or folder else stat.S_ISREG
        if not want(mode):
            if stat.S_ISLNK(mode):
                raise CheckpointError(
                    f"{path} is a symbolic link; jaxmamba reads and writes only the files "
                    f"inside {root}, never through a link"
                )
            need = "a folder" if want is stat.S_ISDIR else "a regular file"
            raise CheckpointError(f"{path} is {file_kind(mode)}, not {need}; it is left alone")
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to the file ``path`` atomically (a temporary sibling, then a rename);
    missing parent folders are created.  A failure (a full disk, no permission) raises
    :class:`~jaxmamba.errors.CheckpointError` naming ``path``, which keeps its old content.

    >>> import tempfile
    >>> write_bytes_atomic(tempfile.mkdtemp() + "/a.txt", b"hi").read_bytes()
    b'hi'
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_temporaries(path.parent, path.name)
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to the file ``path`` atomically (as :func:`write_bytes_atomic`)."""
    return write_bytes_atomic(path, text.encode("utf-8"))
