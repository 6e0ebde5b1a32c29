"""Checked reads of a study's files: whole small files, ``.npy`` rows and columns, ``.npz`` members.

Every read is an ordinary read of the bytes needed (never a memory map), of a regular file opened
without following links; a ``.npy`` must hold little-endian float32 in C order, its header is
checked against the file's size before any value is read, and values read must be finite.

>>> runs = _runs(np.array([0, 1, 2, 9, 10]), gap=2, longest=8)
>>> [r[:2] for r in runs]
[(0, 3), (9, 11)]
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.lib import format as npy_format

from jaxmamba.errors import StudyError
from jaxmamba.models.config import Block
from jaxmamba.storage import store
from jaxmamba.study.schema import is_int, show

MAX_FILE_BYTES = 64 * 2**20  # an image or a block's parameters (.npz) read whole


_CHUNK_BYTES = 4 * 2**20  # rows read at once for a heat map


_GAP_BYTES = 32 * 2**10  # unused rows read rather than making another read


def open_file(path: Path) -> int:
    """A descriptor of the regular file ``path`` (a symbolic link, FIFO or device is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StudyError(f"{path} is missing: the study is incomplete or damaged") from None
    except OSError as e:
        raise StudyError(f"cannot read {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StudyError(f"{path} is not a regular file; a study holds files only")
    return fd


def read_whole(path: Path) -> bytes:
    """The bytes of a small file read whole (study.json, an image, a block's parameters), at
    most :data:`MAX_FILE_BYTES`."""
    fd = open_file(path)
    try:
        size = os.fstat(fd).st_size
        if size > MAX_FILE_BYTES:
            raise StudyError(f"{path} is {size} bytes, more than the {MAX_FILE_BYTES} a study "
                             "reads whole")  # fmt: skip
        data = bytearray(size)
        _read_into(fd, path, data, 0)
        return bytes(data)
    finally:
        os.close(fd)


def _read_into(fd: int, path: Path, out, offset: int) -> None:
    """Fill the writable buffer ``out`` with the bytes at ``offset`` (a file cut short is an
    error naming it, not a short read)."""
    view, done = memoryview(out).cast("B"), 0
    while done < len(view):
        try:
            n = os.preadv(fd, [view[done:]], offset + done)
        except OSError as e:
            raise StudyError(f"cannot read {path}: {e.strerror or e}") from None
        if n == 0:
            raise StudyError(f"{path} is shorter than its header says (changed while read?)")
        done += n


class Npy(NamedTuple):
    """An open ``.npy`` file of little-endian float32 in C order: descriptor, shape, data offset."""

    fd: int
    path: Path
    shape: tuple[int, ...]
    offset: int

    def read_into(self, out: np.ndarray, start: int) -> np.ndarray:
        """Fill the C-contiguous float32 ``out`` with the values from value ``start`` (flat)."""
        _read_into(self.fd, self.path, out, self.offset + 4 * start)
        return out

    def read(self, start: int, count: int) -> np.ndarray:
        """``count`` float32 values from value ``start`` (flat, C order)."""
        return self.read_into(np.empty(count, "<f4"), start)


def read_header(f, path) -> tuple[tuple[int, ...], int]:
    """``(shape, data offset)`` of the ``.npy`` stream ``f`` (at its start), which must hold
    little-endian float32 in C order; ``path`` names it in errors."""
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ValueError(f"format version {version} is not 1.0 or 2.0")
        offset = f.tell()
    except (ValueError, TypeError, SyntaxError, OverflowError, EOFError) as e:
        raise StudyError(
            f"{path} is not a .npy file jaxmamba wrote: {store.first_line(e)}"
        ) from None
    if dtype != np.dtype("<f4") or fortran:
        raise StudyError(f"{path} holds {dtype}{' (Fortran order)' if fortran else ''}, "
                         "not little-endian float32 in C order")  # fmt: skip
    if not all(is_int(d) and d >= 0 for d in shape):
        raise StudyError(f"{path} has a damaged header (shape {show(shape)})")
    return tuple(int(d) for d in shape), offset


def npy_header(fd: int, path: Path, size: int) -> tuple[tuple[int, ...], int]:
    """``(shape, data offset)`` of a ``.npy`` file of float32 (little-endian, C order) of
    ``size`` bytes, checked to hold as many values as its header says."""
    with os.fdopen(os.dup(fd), "rb") as f:
        shape, offset = read_header(f, path)
    need = offset + 4 * int(np.prod(shape, dtype=object))
    if size < need:
        raise StudyError(f"{path} is shorter than its header says ({size} bytes of {need})")
    return shape, offset


def shape_is(got: tuple, want: tuple) -> bool:
    """Whether shape ``got`` matches ``want`` (``None``: any size on that axis)."""
    if len(got) != len(want):
        return False
    return all(w is None or g == w for g, w in zip(got, want, strict=True))


def npz_member(z: zipfile.ZipFile, path: Path, name: str, want: tuple, what: str) -> np.ndarray:
    """The float32 array ``name`` of the ``.npz`` ``z`` (at ``path``), whose shape must match
    ``want`` (``None``: any size on that axis; ``what`` says what it should be).  The header is
    checked, and the member's size against it, before any value is read or allocated."""
    member = f"{name}.npy"
    try:
        info = z.getinfo(member)
    except KeyError:
        raise StudyError(f"{path} is unreadable: it has no {member}") from None
    with z.open(info) as f:
        shape, offset = read_header(f, f"{path} ({member})")
        if not shape_is(shape, want):
            raise StudyError(f"{path} holds parameters of other shapes or types than {what}: "
                             f"{member} has shape {shape}")  # fmt: skip
        n = 4 * math.prod(shape)
        if info.file_size != offset + n:
            raise StudyError(f"{path} is damaged: {member} is {info.file_size} bytes, its header "
                             f"says {offset + n}")  # fmt: skip
        data = f.read(n)
    if len(data) != n:
        raise StudyError(f"{path} is damaged: {member} is shorter than its header says")
    return finite_array(np.frombuffer(data, "<f4").reshape(shape), path)


def _runs(idx: np.ndarray, gap: int, longest: int) -> list[tuple[int, int, int, int]]:
    """Sorted unique indices as ranges ``(lo, hi, a, z)``: rows ``lo:hi`` (at most ``longest``)
    hold ``idx[a:z]``; indices ``gap`` or fewer apart share a range (reading a few unused rows
    costs less than another read)."""
    breaks = np.flatnonzero(np.diff(idx) > gap) + 1
    starts, stops = np.r_[0, breaks], np.r_[breaks, len(idx)]
    runs = list(zip(idx[starts].tolist(), (idx[stops - 1] + 1).tolist(), starts.tolist(),
                    stops.tolist(), strict=True))  # fmt: skip
    if all(hi - lo <= longest for lo, hi, _, _ in runs):
        return runs
    split = []
    for _, _, a, z in runs:
        while a < z:
            lo = int(idx[a])
            e = a + int(np.searchsorted(idx[a:z], lo + longest))
            split.append((lo, int(idx[e - 1]) + 1, a, e))
            a = e
    return split


def finite_array(a: np.ndarray, path: Path) -> np.ndarray:
    if not np.all(np.isfinite(a)):
        raise StudyError(f"{path} holds NaN or infinite values")
    return a


def pooled_matrix(file: Npy, start: int, l: int, perm: np.ndarray, f: int) -> np.ndarray:
    """The ``(L, L)`` map at value ``start`` of ``file`` permuted to scan order ``perm``
    (``M[t, s] = A[perm[t], perm[s]]``) and pooled by mean over ``f x f`` tiles (the last tile
    of an axis shorter when ``f`` does not divide ``L``): ``(n, n)`` float32, ``n = ceil(L/f)``.
    The map is read in blocks of rows (at most :data:`_CHUNK_BYTES`), summed in float64."""
    n = -(-l // f)
    tile = np.empty(l, np.int64)
    tile[perm] = np.arange(l) // f  # the pooled row of each patch's row of A
    total = np.zeros((n, n), np.float64)
    rows = np.empty((min(l, max(1, _CHUNK_BYTES // (4 * l))), l), "<f4")
    padded = np.zeros((len(rows), n * f), np.float64)
    for lo in range(0, l, len(rows)):
        hi = min(l, lo + len(rows))
        chunk = padded[: hi - lo]
        chunk[:, :l] = file.read_into(rows[: hi - lo], start + lo * l)[:, perm]
        np.add.at(total, tile[lo:hi], chunk.reshape(hi - lo, n, f).sum(axis=2))
    count = np.minimum(f, l - f * np.arange(n)).astype(np.float64)  # entries per tile, one axis
    return (total / np.outer(count, count)).astype(np.float32)


def rows_mean(f: Npy, start: int, b: Block, idx: np.ndarray) -> np.ndarray:
    """Mean of rows ``idx`` of the ``(L, L)`` matrix at value ``start`` of ``f``: one read per
    run of nearby rows into a buffer of at most :data:`_CHUNK_BYTES`, summed row after row in
    float32 (the same numbers as ``m[idx].mean(axis=0)``)."""
    l = b.length
    runs = _runs(idx, max(1, _GAP_BYTES // (4 * l)), max(1, _CHUNK_BYTES // (4 * l)))
    buf = np.empty((min(max(1, _CHUNK_BYTES // (4 * l)), sum(r[1] - r[0] for r in runs)), l),
                   "<f4")  # fmt: skip
    chosen: list[np.ndarray] = []
    total, used = np.zeros((1, l), "<f4"), 0

    def add(total):
        return np.add.reduce(np.concatenate([total, buf[np.concatenate(chosen)]]), axis=0,
                             keepdims=True)  # fmt: skip

    for lo, hi, a, z in runs:
        if used + hi - lo > len(buf):
            total, used, chosen = add(total), 0, []
        f.read_into(buf[used : used + hi - lo], start + lo * l)
        chosen.append(idx[a:z] - (lo - used))
        used += hi - lo
    return add(total)[0] / np.float32(len(idx))


def columns_mean(f: Npy, start: int, b: Block, idx: np.ndarray) -> np.ndarray:
    """Mean of columns ``idx`` of the ``(L, L)`` matrix at value ``start`` of ``f``, read in
    blocks of rows (at most :data:`_CHUNK_BYTES` at once)."""
    l = b.length
    rows = np.empty((min(l, max(1, _CHUNK_BYTES // (4 * l))), l), "<f4")
    out = np.empty(l, np.float32)
    for lo in range(0, l, len(rows)):
        hi = min(l, lo + len(rows))
        out[lo:hi] = f.read_into(rows[: hi - lo], start + lo * l)[:, idx].mean(axis=1)
    return out
