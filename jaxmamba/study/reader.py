"""Reading a study folder: :class:`Study` (rows, columns, pooled matrices, single-image maps).

A study folder is untrusted input (a colleague's, a download): :class:`Study` checks every field
of ``study.json`` when it opens it (:func:`jaxmamba.study.schema.parse`), builds paths only from
checked names (:mod:`jaxmamba.study.layout`), reads nothing through a symbolic link or outside
the folder, and checks every array it reads (:mod:`jaxmamba.study.npy`).

Maps are plain ``.npy`` files: a view reads the few rows (12 KB each at L = 3136) or columns it
needs with ordinary reads of just those bytes (the header is parsed and checked once), without
loading a 39 MB map.  Nothing is memory-mapped: a memory map kills the process (SIGBUS) when its
file is cut short under it, where a read names the file.  Timings: see
``benchmarks/results/study_reads_cpu.txt``.

>>> import tempfile
>>> from jaxmamba.study.synthetic import write_synthetic_study
>>> s = write_synthetic_study(tempfile.mkdtemp() + "/s", "vmamba_test", 64, orders=["cross"])
>>> s.heat("cross", "layers.1.blocks.0", [0, 1]).shape, s.info.orders[0].routes
((64,), 4)
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from jaxmamba.attention.embed import embed
from jaxmamba.errors import StudyError
from jaxmamba.models.config import Block
from jaxmamba.models.vim import class_last_routes
from jaxmamba.orders import as_order
from jaxmamba.storage import store
from jaxmamba.study import layout, schema
from jaxmamba.study.files import estimate_bytes
from jaxmamba.study.layout import STUDY_FILE
from jaxmamba.study.npy import (
    MAX_FILE_BYTES,
    Npy,
    columns_mean,
    finite_array,
    npy_header,
    npz_member,
    open_file,
    pooled_matrix,
    read_whole,
    rows_mean,
    shape_is,
)
from jaxmamba.study.schema import StudyInfo, is_int, show

__all__ = [
    "DIRECTIONS",
    "MATRIX_SIZE",
    "MATRIX_SIZES",
    "Study",
    "block_routes",
    "map_selection",
    "study_block",
]

DIRECTIONS = ("query", "source")  # rows: what the selection attends to; columns: what attends to it


CACHE_BYTES = 400 * 2**20  # single-image maps kept in memory by a reader (the server)


MAX_CHANNELS = 1 << 14  # channels of a block's scan (VMamba-B's widest: 2048)


MATRIX_SIZES = (16, 1024)  # a pooled matrix's side in pixels: at least, at most


MATRIX_SIZE = 512  # its default


POOLED_BYTES = 64 * 2**20  # pooled matrices kept in memory by a reader (the server)


def study_block(block: Block) -> Block:
    """``block`` as a study keeps it: a Vim layer's tokens class-last (the row-major patches,
    then the class token, ``cls = h·w``: a patch's index is its grid index), a VMamba block as
    it is.

    >>> study_block(Block("layers.2", 0, 2, (3, 5), 7))
    Block(name='layers.2', stage=0, index=2, grid=(3, 5), cls=15)
    """
    return block if block.cls is None else block._replace(cls=block.grid[0] * block.grid[1])


def block_routes(order: str, block: Block) -> np.ndarray:
    """``(K, L)`` the scan routes of ``order`` on a study's block: a VMamba block's over its
    grid, a Vim layer's two directions in its class-last layout
    (:func:`jaxmamba.models.vim.class_last_routes`).

    >>> block_routes("raster", Block("layers.0", 0, 0, (2, 2), 4)).tolist()
    [[0, 1, 4, 2, 3], [3, 2, 4, 1, 0]]
    """
    if block.cls is not None:
        return class_last_routes(as_order(order), block.grid)
    return as_order(order).routes(*block.grid)


@functools.lru_cache(maxsize=64)
def single_fn(order: str, grid: tuple[int, int], cls: int | None, each: bool):
    """Jitted exact map of one block for one image: ``(op, x) -> (1, [K,] L, L)``, ``x`` a
    block's ``(1, D, L)`` scan input or a Vim layer's ``(1, 2, D, L)`` (class-last, ``cls``
    its class token's position); one program for the blocks of a grid."""
    import jax

    from jaxmamba.attention.extract import block_attention
    from jaxmamba.attention.options import AttentionOptions

    routes = block_routes(order, Block("", 0, 0, grid, cls))
    options = AttentionOptions(route_mode="each" if each else "sum")
    return jax.jit(lambda op, x: block_attention(op, x, routes, options))


class Study:
    """A study folder opened for reading; every read touches only what it returns.

    The folder is untrusted: opening checks every field of ``study.json`` (an
    :class:`~jaxmamba.errors.StudyError` names the field at fault), files are read only inside
    the folder and never through a symbolic link, and every array read is checked (dtype,
    shape, finite values).  Maps are read with ordinary reads, never memory-mapped: a file cut
    short or rewritten while served is an error naming it, not a crash.

    Attributes:
      path: the folder; info: its ``study.json`` as typed values (:class:`~jaxmamba.study.schema.
      StudyInfo`); meta: the checked ``study.json`` object as read; findings: per order, the
      stored findings as ``study.json`` holds them; orders: order names; blocks: the
      :class:`~jaxmamba.models.config.Block` of each block; methods: reductions kept; count: images
      averaged; signed: whether maps can be negative (a diverging colour scale).
    """

    def __init__(self, path: str | os.PathLike, *, require_complete: bool = True) -> None:
        if not str(os.fspath(path)).strip():  # Path("") is the current folder
            raise StudyError("the study path is empty; name a study folder")
        self.path = Path(path).expanduser().absolute()
        file = self.path / STUDY_FILE
        if not os.path.lexists(file):
            raise StudyError(f"{self.path} is not a study: it has no {STUDY_FILE}")
        text = read_whole(file)  # a regular file, not a link
        try:
            meta = store.parse_json(text.decode("utf-8"), file)
        except (ValueError, UnicodeDecodeError) as e:
            raise StudyError(f"{file} is unreadable or damaged: {store.first_line(e)}") from None
        info = schema.parse(file, meta)
        if require_complete and not info.complete:
            raise StudyError(
                f"{self.path} is an unfinished study; run the same explore command again to "
                "complete it"
            )
        assert isinstance(meta, dict)  # parse refuses anything else
        self.meta: dict = meta  # the checked study.json as read (the views read ``info``)
        self.info: StudyInfo = info
        self.orders = [o.name for o in info.orders]
        self.blocks = list(info.blocks)
        self.methods = list(info.methods)
        self.count = int(info.count or len(info.images))
        self.signed = info.signed
        self.single_images = list(info.single_images or ())
        self.findings = {o: f.to_json() for o, f in (info.findings or {}).items()}
        self._blocks = {b.name: b for b in self.blocks}
        self._order_meta = {o.name: o for o in info.orders}
        self._root = os.path.realpath(self.path)
        self._headers: dict = {}  # path -> (file identity, shape, data offset)
        self._cache: OrderedDict = OrderedDict()  # computed single-image maps, least recent first
        self._pooled: OrderedDict = OrderedDict()  # pooled matrices, least recent first

    @classmethod
    def open(cls, path: str | os.PathLike) -> Study:
        """Open the study at ``path`` (an error names what is missing or damaged)."""
        return cls(path)

    def companions(self) -> list[Study]:
        """The companion studies ``study.json`` names (``companions``: sub-folders holding
        studies of other models over the same images, e.g. the demo's Vim study beside its
        VMamba one), opened: each a plain sub-folder, never a symbolic link, itself complete."""
        return [self.companion(name) for name in self.info.companions or ()]

    def companion(self, name: str) -> Study:
        """The companion study ``name`` (one of ``study.json``'s ``companions``), opened."""
        if name not in (self.info.companions or ()):
            raise StudyError(f"the study has no companion {show(name)}")
        return Study(companion_path(self.path, name))

    def same_images(self, other: Study) -> bool:
        """Whether ``other`` shows the same images as this study (their names and the images as
        shown, byte for byte): what a side-by-side of the two studies needs."""
        names = [i.name for i in self.info.images]
        if names != [i.name for i in other.info.images]:
            return False
        return all(self.image_png(i) == other.image_png(i) for i in range(len(names)))

    # ---- names -> checked paths (no path is ever built from an unchecked string) ---------------
    def block(self, name: str) -> Block:
        if not isinstance(name, str) or name not in self._blocks:
            raise StudyError(f"the study has no block {show(name)}")
        return self._blocks[name]

    def _order(self, order: str) -> str:
        if not isinstance(order, str) or order not in self.orders:
            raise StudyError(f"the study has no order {show(order)}; it has {self.orders}")
        return order

    def _method(self, method: str) -> str:
        if not isinstance(method, str) or method not in self.methods:
            raise StudyError(f"the study has no {show(method)} embedding; it has {self.methods}")
        return method

    def _route(self, order: str, route, single: bool = False) -> int | None:
        if route is None or (isinstance(route, str) and route == "sum"):
            return None
        k = self._order_meta[order].routes
        if not self.info.route_maps and not single:
            raise StudyError("the study keeps no per-route maps (explore --routes keeps them)")
        if not is_int(route) or not 0 <= route < k:
            raise StudyError(f"route must be 'sum' or 0..{k - 1}, got {show(route)}")
        return int(route)

    def _file(self, *parts: str) -> Path:
        """The checked path of a study file (parts from :mod:`jaxmamba.study.layout`)."""
        return layout.checked(self.path, self._root, *parts)

    @contextlib.contextmanager
    def _npy(self, path: Path, shape: tuple):
        """The open ``.npy`` at ``path`` (from :meth:`_file`) whose shape must match ``shape``
        (``None`` for any size on that axis); the header is parsed once per file version."""
        fd = open_file(path)
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            hit = self._headers.get(path)
            if hit is None or hit[0] != key:
                hit = (key, *npy_header(fd, path, st.st_size))
                self._headers[path] = hit
            got = hit[1]
            if not shape_is(got, shape):
                want = tuple("n" if w is None else w for w in shape)
                raise StudyError(f"{path} holds shape {got}, not {want}".replace("'", ""))
            yield Npy(fd, path, got, hit[2])
        finally:
            os.close(fd)

    def _map_file(self, order: str, b: Block, r: int | None) -> tuple[Path, tuple, int]:
        """Path, expected shape and first value of the mean map (``r`` None) or route ``r``'s."""
        if r is None:
            return self._file(*layout.mean(order, b.name)), (b.length, b.length), 0
        k = self._order_meta[order].routes
        path = self._file(*layout.route(order, b.name))
        return path, (k, b.length, b.length), r * b.length * b.length

    def map(self, order: str, block: str, route=None) -> np.ndarray:
        """The ``(L, L)`` mean map (route ``None``/"sum" or ``k``), read whole (read-only)."""
        order, b = self._order(order), self.block(block)
        path, shape, start = self._map_file(order, b, self._route(order, route))
        with self._npy(path, shape) as f:
            m = f.read(start, b.length * b.length).reshape(b.length, b.length)
        return finite_array(m, path)

    def heat(self, order: str, block: str, patches, direction="query", route=None, subject="mean"):
        """Mean of the selected patches' rows (``"query"``: what they attend to) or columns
        (``"source"``: what attends to them): ``(L,)`` float32 over the block's grid, of the mean
        map (``subject="mean"``) or of one single image's (``subject`` its position).  Only the
        rows needed are read (the columns: the map in blocks of rows)."""
        order, b = self._order(order), self.block(block)
        idx = self._patches(block, patches)
        if direction not in DIRECTIONS:
            raise StudyError(f"direction must be one of {DIRECTIONS}, got {show(direction)}")
        if subject is None or (isinstance(subject, str) and subject == "mean"):
            path, shape, start = self._map_file(order, b, self._route(order, route))
            with self._npy(path, shape) as f:
                values = (rows_mean if direction == "query" else columns_mean)(f, start, b, idx)
        else:
            m = self.single_map(order, block, subject, route)
            path = Path(f"the map of single image {subject} ({order}, {b.name})")
            values = m[idx].mean(axis=0) if direction == "query" else m[:, idx].mean(axis=1)
        values = np.asarray(values, np.float32)
        if not np.all(np.isfinite(values)):
            raise StudyError(f"{path} holds NaN or infinite values")
        return values

    # ---- the matrix view and the blocks overview: pooled or reduced, never a whole map --------
    def matrix(self, order: str, block: str, route=None, coords=None, size: int = MATRIX_SIZE):
        """The block's mean map in scan-order coordinates, pooled to at most ``size`` pixels a
        side: ``(pooled, f)`` with ``pooled`` float32 ``(n, n)``, ``f = ceil(L / size)``,
        ``n = ceil(L / f)``.

        With ``perm = routes(order, block)[coords]`` (scan position → patch), the matrix is
        ``M[t, s] = A[perm[t], perm[s]]``: row ``t`` is what the patch at scan position ``t``
        attends to (a query), column ``s`` the source at scan position ``s``; per route
        (``route`` an integer, the axes its own scan) it is lower-triangular, as the
        hidden-attention papers draw it.  ``pooled[i, j]`` is the mean of ``M`` over the tile of
        rows ``i·f .. i·f + f - 1`` and columns ``j·f ..`` (the last tile of an axis may be
        shorter: the mean of the entries it has).  ``coords`` defaults to ``route`` if that is
        an integer, else 0.  The map is read once in blocks of rows, and pooled results are
        kept (at most :data:`POOLED_BYTES`).

        >>> import tempfile
        >>> from jaxmamba.study import write_synthetic_study
        >>> s = write_synthetic_study(tempfile.mkdtemp() + "/s", "vmamba_test", 64,
        ...                           orders=["cross"])
        >>> m, f = s.matrix("cross", "layers.0.blocks.0", size=100)  # L = 256
        >>> m.shape, f
        ((86, 86), 3)
        """
        order, b = self._order(order), self.block(block)
        r = self._route(order, route)
        k = self._order_meta[order].routes
        if coords is None:
            coords = 0 if r is None else r
        if not is_int(coords) or not 0 <= coords < k:
            raise StudyError(f"coords must be a route 0..{k - 1} (its scan order gives the "
                             f"axes), got {show(coords)}")  # fmt: skip
        lo, hi = MATRIX_SIZES
        if not is_int(size) or not lo <= size <= hi:
            raise StudyError(f"size must be an integer in {lo}..{hi} (pixels), got {show(size)}")
        f = -(-b.length // int(size))
        path, shape, start = self._map_file(order, b, r)
        with self._npy(path, shape) as file:
            key = (path, self._headers[path][0], start, int(coords), f)  # the file's version too
            if key in self._pooled:
                self._pooled.move_to_end(key)
                return self._pooled[key], f
            perm = self.routes(order, block)[int(coords)]
            pooled = pooled_matrix(file, start, b.length, perm, f)
        if not np.all(np.isfinite(pooled)):
            raise StudyError(f"{path} holds NaN or infinite values")
        self._pooled[key] = pooled
        while sum(v.nbytes for v in self._pooled.values()) > POOLED_BYTES:
            self._pooled.popitem(last=False)
        return pooled, f

    def overview(
        self, order: str, block: str, patches, direction="query", route=None, subject="mean"
    ) -> tuple[np.ndarray, list[dict]]:
        """The selection's map in every block of the study: ``patches`` of ``block``'s grid
        mapped by image area to each block's grid (:func:`map_selection`), and the mean of
        their rows (``"query"``) or columns (``"source"``) there, as :meth:`heat`.  Returns the
        float32 concatenation of the blocks' maps and, per block, ``{"name", "stage", "grid",
        "cls", "offset", "length"}`` (its values are ``values[offset : offset + length]``; ``cls``
        the class token's position, or None).

        >>> import tempfile
        >>> from jaxmamba.study import write_synthetic_study
        >>> s = write_synthetic_study(tempfile.mkdtemp() + "/s", "vmamba_test", 64,
        ...                           orders=["cross"])
        >>> values, parts = s.overview("cross", "layers.0.blocks.0", [0])
        >>> [(p["grid"], p["offset"]) for p in parts[:3]], values.shape
        ([([16, 16], 0), ([8, 8], 256), ([4, 4], 320)], (356,))
        """
        order, b = self._order(order), self.block(block)
        idx = self._patches(block, patches).tolist()
        if direction not in DIRECTIONS:
            raise StudyError(f"direction must be one of {DIRECTIONS}, got {show(direction)}")
        values, parts, offset = [], [], 0
        for other in self.blocks:
            chosen = map_selection(idx, b, other)
            values.append(self.heat(order, other.name, chosen, direction, route, subject))
            parts.append({"name": other.name, "stage": other.stage, "grid": list(other.grid),
                          "cls": other.cls, "offset": offset, "length": other.length})  # fmt: skip
            offset += other.length
        return np.concatenate(values).astype(np.float32), parts

    def _patches(self, block: str, patches) -> np.ndarray:
        b = self.block(block)
        if isinstance(patches, np.ndarray):
            ok = patches.dtype.kind in "iu"
        elif isinstance(patches, list | tuple):
            ok = all(is_int(p) for p in patches)
        else:
            ok, patches = is_int(patches), [patches]
        if not ok:
            raise StudyError(f"patches must be integers, got {show(patches)}")
        flat = [int(p) for p in np.asarray(patches, dtype=object).reshape(-1)]
        if not flat or min(flat) < 0 or max(flat) >= b.length:
            raise StudyError(f"patches must be a non-empty selection of 0..{b.length - 1}")
        return np.unique(np.asarray(flat, np.int64))

    def coords(self, order: str, block: str, method: str) -> np.ndarray:
        """``(L, 2)`` float32 scatterplot coordinates of ``method``."""
        order, b, method = self._order(order), self.block(block), self._method(method)
        path = self._file(*layout.embedding(order, b.name, method))
        with self._npy(path, (b.length, 2)) as f:
            return finite_array(f.read(0, 2 * b.length).reshape(b.length, 2), path)

    def routes(self, order: str, block: str) -> np.ndarray:
        """``(K, L)`` scan routes of ``order`` on the block (:func:`block_routes`)."""
        return block_routes(self._order(order), self.block(block))

    def image_png(self, index: int) -> bytes:
        """PNG bytes of image ``index`` as shown."""
        n = len(self.info.images)
        if not is_int(index) or not 0 <= index < n:
            raise StudyError(f"image must be 0..{n - 1}, got {show(index)}")
        path = self._file(*layout.image(int(index)))
        data = read_whole(path)
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise StudyError(f"{path} is not a PNG image")
        return data

    def has_points(self, kind: str, order: str, stage: int, method: str) -> bool:
        """Whether the study keeps the ``kind`` embedding of ``stage`` by ``method``."""
        return self._points_file(kind, order, stage, method)[0].exists()

    def _points_file(self, kind: str, order: str, stage: int, method: str) -> tuple[Path, tuple]:
        order = self._order(order)
        if not isinstance(kind, str) or kind not in layout.STAGE_KINDS:
            raise StudyError(f"no {show(kind)} embedding: kinds are joint and interblock")
        method = self._method(method)
        if not is_int(stage) or stage not in {b.stage for b in self.blocks}:
            raise StudyError(
                f"stage must be one of the study's stages "
                f"{sorted({b.stage for b in self.blocks})}, got {show(stage)}"
            )
        members = [b for b in self.blocks if b.stage == stage]
        n = sum(b.length for b in members) if kind == "joint" else (
            len(members) * len(self.single_images))  # fmt: skip
        return self._file(*layout.stage_points(kind, order, int(stage), method)), (n, 2)

    # ---- single images: maps computed exactly, on demand, from the kept scan inputs ------------
    def _single_index(self, image) -> int:
        if not is_int(image) or not 0 <= image < len(self.single_images):
            raise StudyError(
                f"single image must be 0..{len(self.single_images) - 1} (the study keeps "
                f"{len(self.single_images)} single images), got {show(image)}"
            )
        return int(image)

    def _single_input(self, order: str, b: Block, i: int) -> tuple[np.ndarray, dict]:
        """``(D, L)`` scan input of single image ``i`` at block ``b`` (a Vim layer's
        ``(2, D, L)``, each direction's, class-last), and the block's scan parameters: the
        channel count ``D`` of the input's header is checked (at most :data:`MAX_CHANNELS`, and
        that of the parameters) before the input is read."""
        path = self._file(*layout.single(order, b.name))
        lead = () if b.cls is None else (2,)  # a Vim layer: both directions' inputs
        with self._npy(path, (len(self.single_images), *lead, None, b.length)) as f:
            d = f.shape[-2]
            if not 1 <= d <= MAX_CHANNELS:
                raise StudyError(f"{path} holds inputs of {d} channels; a block has 1.."
                                 f"{MAX_CHANNELS}")  # fmt: skip
            op = self._block_op(order, b, d)
            size = int(np.prod(lead, dtype=np.int64)) * d * b.length
            x = f.read(i * size, size).reshape(*lead, d, b.length)
            return finite_array(x, path), op

    def _block_op(self, order: str, b: Block, d: int) -> dict:
        """The scan parameters of block ``b`` of ``order``'s model, checked against ``d``
        channels and the order's routes: each member's header (dtype, shape) and size are
        checked before it is read, so a header claiming a huge array allocates nothing."""
        path = self._file(*layout.op(self._order_meta[order].model, b.name))
        data = read_whole(path)
        k = self._order_meta[order].routes
        what = f"a block of {d} channels and {k} routes"
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                if sum(i.file_size for i in z.infolist()) > MAX_FILE_BYTES:
                    raise ValueError("it unpacks to more than the limit")
                op = {"Ds": npz_member(z, path, "Ds", (k * d,), what),
                      "dt_projs_bias": npz_member(z, path, "dt_projs_bias", (k, d), what),
                      "A_logs": npz_member(z, path, "A_logs", (k * d, None), what),
                      "dt_projs_weight": npz_member(z, path, "dt_projs_weight", (k, d, None),
                                                     what)}  # fmt: skip
                n, r = op["A_logs"].shape[1], op["dt_projs_weight"].shape[2]
                if n < 1 or r < 1:
                    raise StudyError(f"{path} holds parameters of other shapes or types than "
                                     f"{what}: a state or rank of 0")  # fmt: skip
                op["x_proj_weight"] = npz_member(z, path, "x_proj_weight", (k, r + 2 * n, d),
                                                  what)  # fmt: skip
        except (OSError, ValueError, EOFError, NotImplementedError, RuntimeError, zlib.error,
                zipfile.BadZipFile) as e:  # fmt: skip
            if isinstance(e, StudyError):
                raise
            raise StudyError(f"{path} is unreadable: {store.first_line(e)}") from None
        return op

    def single_map(self, order: str, block: str, image, route=None) -> np.ndarray:
        """The ``(L, L)`` map of one image (``image``: its position among ``single_images``):
        exact, computed from the block's scan input and parameters (the same code as
        :func:`jaxmamba.extract_attention`), and kept in a small cache."""
        order, b = self._order(order), self.block(block)
        r, i = self._route(order, route, single=True), self._single_index(image)
        key = (order, b.name, i, r)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        x, op = self._single_input(order, b, i)
        maps = np.asarray(single_fn(order, b.grid, b.cls, r is not None)(op, x[None]))[0]
        m = maps if r is None else maps[r]
        if not np.all(np.isfinite(m)):
            raise StudyError(f"the map of single image {i} ({order}, {b.name}) is not finite")
        self._cache[key] = m
        while sum(v.nbytes for v in self._cache.values()) > CACHE_BYTES and len(self._cache) > 1:
            self._cache.popitem(last=False)
        return m

    def single_coords(self, order: str, block: str, image) -> np.ndarray:
        """``(L, 2)`` PCA of one image's rows (computed on demand, cached)."""
        order, b = self._order(order), self.block(block)
        key = ("pca", order, b.name, self._single_index(image))
        if key not in self._cache:
            self._cache[key] = embed(self.single_map(order, block, image), "pca")
        return self._cache[key]

    def stage_points(self, kind: str, order: str, stage: int, method: str) -> np.ndarray:
        """Coordinates of a stage's ``"joint"`` embedding (its blocks' patches, block-major:
        block j's patch p is row ``j·L + p``) or ``"interblock"`` embedding ((block, image)
        pairs, block-major: row ``j·n + i`` for single image i)."""
        path, shape = self._points_file(kind, order, stage, method)
        if not path.exists():
            raise StudyError(f"the study has no {kind} embedding of stage {stage}")
        with self._npy(path, shape) as f:
            return finite_array(f.read(0, 2 * shape[0]).reshape(shape), path)

    def size_bytes(self, orders=None, blocks=None, route_maps: bool = True) -> int:
        """Bytes of the maps of ``orders`` × ``blocks`` (default all), per-route maps included."""
        orders = self.orders if orders is None else [self._order(o) for o in orders]
        chosen = self.blocks if blocks is None else [self.block(b) for b in blocks]
        k = max(o.routes for o in self.info.orders)
        return estimate_bytes(chosen, len(orders), k, route_maps and self.info.route_maps)

    def __repr__(self) -> str:
        return (f"Study({self.path}, {len(self.orders)} orders, {len(self.blocks)} blocks, "
                f"{self.count} images)")  # fmt: skip


def companion_path(root: Path, name: str) -> Path:
    """The folder of the companion study ``name`` of the study at ``root``: a plain sub-folder
    (``name`` one path part, :data:`jaxmamba.study.schema.COMPANION`), never a symbolic link."""
    if not isinstance(name, str) or not schema.COMPANION.fullmatch(name):
        raise StudyError(f"a companion is named by its sub-folder (letters, digits, _ and -), got "
                         f"{show(name)}")  # fmt: skip
    path = root / name
    if os.path.islink(path) or not path.is_dir():
        raise StudyError(f"the companion study {path} is a symbolic link or no folder; a "
                         "companion is a sub-folder of the study")  # fmt: skip
    return path


def map_selection(patches, src: Block, dst: Block) -> list[int]:
    """The tokens of block ``dst`` that cover the image area of ``patches`` of block ``src``
    (sorted; the same rule as the explorer's ``mapSelection``): a patch ``(r, c)`` covers rows
    ``floor(r·H'/H) .. max(that, ceil((r+1)·H'/H) - 1)`` of ``dst``'s grid, and likewise
    columns; a class token (a Vim layer's, class-last) maps to ``dst``'s class token, and to
    nothing in a block without one.

    >>> a, b = Block("a", 0, 0, (2, 2)), Block("b", 1, 0, (4, 4))
    >>> map_selection([0], a, b), map_selection([5, 6], b, a)
    ([0, 1, 4, 5], [0, 1])
    """
    (h, w), (h2, w2) = src.grid, dst.grid
    out: set[int] = set()
    if src.cls is not None and src.cls in patches:
        patches = [p for p in patches if p != src.cls]
        if dst.cls is not None:
            out.add(dst.cls)
    if (h, w) == (h2, w2):
        return sorted(out | set(int(p) for p in patches))
    for p in patches:
        r, c = divmod(int(p), w)
        r0, c0 = r * h2 // h, c * w2 // w
        r1, c1 = max(r0, -(-(r + 1) * h2 // h) - 1), max(c0, -(-(c + 1) * w2 // w) - 1)
        out.update(rr * w2 + cc for rr in range(r0, r1 + 1) for cc in range(c0, c1 + 1))
    return sorted(out)
