"""Means of attention maps over many images: streamed, sharded over devices and processes,
resumable (the saved state is :mod:`jaxmamba.attention.resume`).

``attention_mean`` keeps one running sum per block, so memory is constant in the number of
images.  Each batch is split over all devices along its batch axis (a 1-D ``Mesh`` over
``jax.devices()``; XLA reduces the per-device sums).

Resuming (``out_dir``): the running sums, the number of images counted, the number of images each
process has consumed from its stream and a digest of those images (a chain of the sha256 of each
image's float32 pixels, in stream order) are saved atomically, with checksums
(:mod:`jaxmamba.storage.store`), every ``save_every`` batches. A rerun with the same ``out_dir``
skips exactly the images already consumed (by image, not by batch, so another batch size resumes
correctly) after checking that they are the images the saved sums hold, and refuses, naming what
differs, to continue a run made with other images (or a stream shorter than what was consumed),
other model weights (a digest of the parameters), another order, other blocks, options or image
size. A state saved by a jaxmamba without image digests is resumed with a warning that its images
cannot be checked.

Multi-process (many hosts): call ``jax.distributed.initialize()`` in every process first and give
each process its own ``batches`` (its shard of the images): the same number of batches in every
process, batch ``i`` of the same size and image shape everywhere.  The local batches are assembled
into one global array with ``jax.make_array_from_process_local_data``; the mean covers all
processes and every process returns it.  Before each batch the processes exchange a few numbers,
so that a bad batch, an error of the caller's iterator or streams of different lengths stop every
process together (the process at fault raises its error, the others an :class:`AggregateError`
naming it) instead of leaving them waiting in a collective; processes that run other weights,
orders, blocks, options or image sizes are refused likewise.

``out_dir`` in a multi-process run is process 0's: process 0 alone reads, checks and writes it (the
sums are the same in every process; what it records as consumed is the count of every process,
their batches being equal, with the image digest of each process's stream), and sends the saved
progress to the others when the run starts, so that all resume from the same image and each
checks its own images.  The other processes never read or write their ``out_dir``
(they only check that one is given), so it needs no shared file system; on one, any host can be
process 0 when the run is restarted.  A state is saved only after every process has computed the
batches it counts, so a killed process (JAX's heartbeat then stops the others) loses at most the
batches since the last save.  Restart all processes with the same shards and ``out_dir``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as PS
from jaxtyping import Array, Bool, Float, Int

from jaxmamba.attention.extract import block_maps, block_routes, shape_groups
from jaxmamba.attention.maps import AttentionMaps
from jaxmamba.attention.options import DEFAULT_OPTIONS, AttentionOptions
from jaxmamba.attention.resume import (
    RUN_FILE,
    RUN_FORMAT,
    ImageChain,
    Progress,
    decode_message,
    encode_message,
    identity_of,
    open_everywhere,
    open_state,
    save_state,
)
from jaxmamba.attention.sizes import map_shape, step_images
from jaxmamba.errors import AggregateError
from jaxmamba.models.config import Block, VimConfig
from jaxmamba.models.model import (
    Model,
    apply,
    check_images,
    cpu_pieces,
    model_order,
    select_blocks,
)
from jaxmamba.orders import Order, RouteTable, SoftOrder
from jaxmamba.storage import store

__all__ = [
    "AggregateError",
    "NONFINITE_MODES",
    "RUN_FILE",  # re-exported: defined in jaxmamba.attention.resume
    "RUN_FORMAT",
    "attention_mean",
    "compile_mean",
    "mean_step",
    "route_table",
    "zero_sums",
]

NONFINITE_MODES = ("raise", "skip")


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8, 9), donate_argnums=(1,))
def mean_step(
    model: Model,
    sums: dict,
    images: Float[Array, "b H W 3"],
    valid: Bool[Array, " b"],
    order: Order | SoftOrder | RouteTable,
    names: tuple[str, ...],
    options: AttentionOptions,
    implementation: str | None = None,
    pieces: tuple[int, ...] = (),
    shards: int = 1,
) -> tuple[dict, Int[Array, ""]]:
    """``sums`` plus the maps of the ``valid`` images of one padded batch, and their count: the
    step :func:`attention_mean` runs on every batch (jitted; ``sums`` is donated).

    ``sums`` maps each block of ``names`` to its running float32 sum (of :func:`map_shape`);
    ``order`` is resolved (a :class:`~jaxmamba.orders.RouteTable` shares one program between
    orders), ``pieces`` the forward pass's batch plan (:func:`cpu_pieces`).

    The forward pass runs on the whole batch; the maps of each group of blocks are then made a
    few images at a time (:func:`_step_images`) and added to the running sums inside the loop,
    so no batch of ``L × L`` maps is ever held: memory does not grow with the batch.  The batch
    axis is split into ``shards`` (the devices it is sharded over), each device's images looped
    over in the same steps, so every device works on its own images.
    """
    size = (images.shape[1], images.shape[2])
    blocks = tuple(model.config.block(name, size) for name in names)
    _, cache = apply(model, images, order, implementation, frozenset(names), pieces)
    inputs = {name: cache.scan_input(name) for name in names}
    w = valid.astype(jnp.float32)
    out = dict(sums)
    for group in shape_groups(blocks, inputs):
        out.update(_group_sum(model, sums, inputs, w, group, order, options, shards))
    return out, jnp.sum(valid)


def _group_sum(model, sums, inputs, w, group, order, options, shards: int) -> dict:
    """The running sums of one group of blocks (one grid) plus the weighted maps of a batch,
    made :func:`_step_images` images of every device at a time in a ``lax.scan``."""
    per_device = w.shape[0] // shards
    k = len(block_routes(model.config, order, group[0].grid)[0])
    g = _step_images(group, k, options, per_device)
    n = -(-per_device // g)
    g = -(-per_device // n)  # the fewest padded images for n steps

    def add(acc, step):
        maps = block_maps(model, step[0], group, order, options)
        return {k: acc[k] + jnp.tensordot(step[1], maps[k], axes=(0, 0)) for k in acc}, None

    xs = ({b.name: _by_step(inputs[b.name], shards, n, g) for b in group},
          _by_step(w, shards, n, g))  # fmt: skip
    acc = {b.name: sums[b.name] for b in group}
    if n == 1:
        return add(acc, jax.tree.map(lambda x: x[0], xs))[0]
    return jax.lax.scan(add, acc, xs)[0]


def _by_step(x, shards: int, n: int, g: int):
    """``(B, …)`` → ``(n, shards·g, …)``: step i takes images ``i·g … i·g + g − 1`` of every
    device's ``B / shards`` (zero-padded to ``n·g``), so that each device works on its own.

    >>> _by_step(jnp.arange(6), 2, 2, 2).tolist()  # devices hold 0 1 2 and 3 4 5
    [[0, 1, 3, 4], [2, 0, 5, 0]]
    """
    per_device = x.shape[0] // shards
    x = x.reshape((shards, per_device) + x.shape[1:])
    x = jnp.pad(x, [(0, 0), (0, n * g - per_device)] + [(0, 0)] * (x.ndim - 2))
    x = x.reshape((shards, n, g) + x.shape[2:])
    return jnp.swapaxes(x, 0, 1).reshape((n, shards * g) + x.shape[3:])


def _step_images(group, k: int, options: AttentionOptions, images: int) -> int:
    """:func:`~jaxmamba.attention.sizes.step_images` of ``group`` (blocks of one grid, ``k``
    routes)."""
    c = 1 if isinstance(options.channels, str) else len(options.channels)
    return step_images(len(group), group[0].length, k, c, images)


def zero_sums(model, blocks, order, options: AttentionOptions, mesh) -> dict:
    """Zero running sums of ``blocks`` (:func:`~jaxmamba.attention.extract.map_shape` under
    ``options``, the routes of ``order``), float32, placed as :func:`mean_step` takes them:
    replicated over ``mesh``, a 1-D mesh of the devices."""
    k = {b.grid: len(block_routes(model.config, order, b.grid)[0]) for b in blocks}
    shapes = {b.name: map_shape(b, k[b.grid], options) for b in blocks}
    return _placed({n: np.zeros(s, np.float32) for n, s in shapes.items()}, mesh)


def _placed(sums: dict, mesh) -> dict:
    """Host arrays as device arrays the step takes (replicated over a mesh of many devices)."""
    if len(mesh.devices.reshape(-1)) == 1:
        return {k: jnp.asarray(v, jnp.float32) for k, v in sums.items()}
    sharding = NamedSharding(mesh, PS())
    make = jax.make_array_from_process_local_data
    return {k: make(sharding, np.asarray(v, np.float32)) for k, v in sums.items()}


def _nonfinite_count(tree) -> int:
    """NaN/inf values in a pytree of arrays, counted on the host (a jitted count over the
    parameter tree took seconds to compile, longer than reading it)."""
    return sum(int(np.count_nonzero(~np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


def _images_of(batch):
    if isinstance(batch, (tuple, list)) and batch and np.ndim(batch[0]) == 4:
        return batch[0]  # (images, labels, ...)
    return batch


def _global_batch(images, valid, mesh, size: int = 0):
    """Pad the local batch to ``size`` (no recompiling for a short last batch) and to a multiple
    of the local devices, and shard it over the mesh."""
    n_local = jax.local_device_count()
    b = images.shape[0]
    pad = max(size - b, 0)
    pad += (-(b + pad)) % n_local
    images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], np.float32)])
    valid = np.concatenate([valid, np.zeros(pad, bool)])
    if len(mesh.devices.reshape(-1)) == 1:
        return jnp.asarray(images), jnp.asarray(valid)
    sharding = NamedSharding(mesh, PS("batch"))
    make = jax.make_array_from_process_local_data
    return make(sharding, images), make(sharding, valid)


def attention_mean(
    model: Model,
    batches: Iterable,
    *,
    order=None,
    blocks=None,
    route_mode: str = "sum",
    channels="mean",
    include_skip: bool = False,
    normalize: str | None = None,
    out_dir: str | os.PathLike | None = None,
    save_every: int = 10,
    nonfinite: str = "raise",
    progress: bool = True,
    total: int | None = None,
    implementation: str | None = None,
) -> AttentionMaps:
    """Mean hidden attention over all images of ``batches``, in constant memory.

    Args:
      model: a :class:`~jaxmamba.Model`.
      batches: an iterable of ``(B, H, W, 3)`` image arrays (or ``(images, labels)`` tuples),
        all of the same H and W.  To resume, it must yield the same images in the same order
        (in batches of any size).
      order, blocks, route_mode, channels, include_skip, normalize: as in
        :func:`jaxmamba.extract_attention` (normalisation is applied per image); soft routes
        too (a resumed run must use the same ones).
      out_dir: where to keep the resumable state; ``None`` keeps nothing.  An existing folder
        must be one that ``attention_mean`` wrote.  With several processes, process 0's (see the
        module docstring); every process passes one or none.
      save_every: batches between saves.
      nonfinite: images with NaN or inf pixels: ``"raise"`` (an error naming them; the default)
        or ``"skip"`` (left out of the mean; how many is the result's ``skipped``).
      progress: show a progress bar (in images); total: number of images, for the bar.
      implementation: selective-scan path of the forward pass.

    Returns:
      :class:`~jaxmamba.AttentionMaps` of float32 ``(L, L)`` means (``(K, L, L)`` with
      ``route_mode="each"``) with ``count`` the number of images averaged and ``skipped`` the
      number left out.

    >>> import jax.numpy as jnp, jaxmamba
    >>> m = jaxmamba.create_model("vmamba_test")
    >>> data = [jnp.ones((2, 64, 64, 3)), jnp.zeros((1, 64, 64, 3))]
    >>> mean = attention_mean(m, data, blocks=3, progress=False)
    >>> mean["layers.3.blocks.0"].shape, mean.count
    ((4, 4), 3)
    """
    options = AttentionOptions(route_mode, channels, include_skip, normalize)
    names = select_blocks(model.config, blocks)
    order = model_order(model.config, order)
    save_every = _int_arg("save_every", save_every, 1)
    total = None if total is None else _int_arg("total", total, 0)
    if nonfinite not in NONFINITE_MODES:
        raise AggregateError(f"nonfinite must be one of {NONFINITE_MODES}, got {nonfinite!r}")
    bad = int(_nonfinite_count(model.params))
    if bad:
        raise AggregateError(f"the model's parameters hold {bad} NaN/inf values; nothing averaged")
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    many = jax.process_count() > 1
    steps: store.StepStore | None = None
    state, table = Progress(), None
    pieces: tuple[int, ...] = ()  # the batch plan (cpu_pieces), set with the table
    shards = len(mesh.devices.reshape(-1))
    sums: dict | None = None  # the running sums on the device(s)
    counts: list = []  # images counted by the batches since the last settle (device scalars)
    offered = 0  # images given to those batches
    blocks_info: tuple[Block, ...] = ()
    shape: tuple[int, ...] | None = None
    first_size, seen, since_save = 0, 0, 0
    chain = ImageChain()
    stream = iter(batches)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"attention mean ({order.name})", unit="img")
    try:
        for index in itertools.count():
            x: Any = None
            finite: Any = None
            error: Exception | None = None
            try:  # everything this process checks alone, before any collective
                batch = next(stream, _END)
                if batch is not _END:
                    x, finite = _checked(model, batch, index, shape, seen, nonfinite)
            except Exception as e:  # also what the caller's iterator raises
                error = e
            if many:  # every process stops together, on the same error or end of its stream
                _agree_batch(index, error, x)
            elif error is not None:
                raise error
            if x is None:
                if steps is not None and seen < state.consumed:  # every process alike: no wait
                    raise AggregateError(
                        f"the running mean in {out_dir} was started on other images: it has "
                        f"consumed {state.consumed} images{_of_process(many)}, this stream ends "
                        f"after {seen}; give the same images, or use another out_dir"
                    )
                break
            b = len(x)
            if shape is None:
                shape = tuple(x.shape[1:])
                blocks_info = tuple(model.config.block(n, (shape[0], shape[1])) for n in names)
                identity: dict[str, Any] = {}  # made where it is used: a digest of the weights
                if out_dir is not None or many:
                    identity = identity_of(model, order, blocks_info, options, shape, nonfinite)
                if many:
                    _agree_run(identity, out_dir is not None, save_every)
                if out_dir is not None:
                    opened = open_everywhere if many else open_state
                    steps, state = opened(Path(out_dir), identity)
                    if state.consumed and state.digests is None:
                        warnings.warn(
                            f"the running mean in {out_dir} was saved without a digest of its "
                            f"images (an earlier jaxmamba): the {state.consumed} images it "
                            "consumed cannot be checked; resuming on trust",
                            stacklevel=2,
                        )
                    if bar is not None:
                        bar.update(min(state.consumed, total or state.consumed))
            start = min(max(state.consumed - seen, 0), b)  # images consumed by an earlier run
            if steps is not None:
                _follow(chain, x, state, out_dir, many, seen, index)
            seen += b
            if start == b:
                continue
            x, finite = x[start:], finite[start:]
            if not finite.all():
                x = np.where(finite[:, None, None, None], x, 0.0).astype(np.float32)
            first_size = first_size or b
            xs, valid = _global_batch(x, finite, mesh, first_size)
            if table is None:  # the order's routes as data and the batch plan, once (every
                # batch is padded to the first one's shape)
                table = route_table(model.config, (shape[0], shape[1]), order)
                pieces = cpu_pieces(model.config, xs.shape)
                sums = (
                    zero_sums(model, blocks_info, table, options, mesh)
                    if state.sums is None
                    else _placed(state.sums, mesh)
                )
            sums, n_valid = mean_step(
                model, sums, xs, valid, table, names, options, implementation, pieces, shards
            )  # sums is donated: updated in place
            counts.append(n_valid)  # read on the host only when saving: no wait per batch
            offered += len(x) * jax.process_count()  # equal batches everywhere
            if len(counts) > _AHEAD:  # the host stays at most _AHEAD batches ahead
                counts[-_AHEAD - 1].block_until_ready()
            state.consumed = seen
            since_save += 1
            if bar is not None:
                bar.update(len(x))
            if steps is not None and since_save >= save_every:
                offered = _settle(state, sums, counts, offered)
                save_state(steps, state, chain)
                since_save = 0
        if sums is not None:
            offered = _settle(state, sums, counts, offered)
        if state.count == 0:
            raise AggregateError(
                "no images were averaged: batches was empty, or all its images were counted "
                "already or skipped"
            )
        if steps is not None and since_save:
            save_state(steps, state, chain)
    finally:
        if bar is not None:
            bar.close()
    means = {k: v / state.count for k, v in (state.sums or {}).items()}
    label = order if isinstance(order, Order) else order.fingerprint([b.grid for b in blocks_info])
    return AttentionMaps(means, blocks_info, label, options, state.count, state.skipped)


_END = object()
_AHEAD = 2


def _settle(state: Progress, sums: dict, counts: list, offered: int) -> int:
    """Bring the device's running sums and counts into ``state`` (waits for them); returns the
    images offered since (none)."""
    counted = sum(int(c) for c in counts)
    state.count += counted
    state.skipped += offered - counted
    state.sums = dict(sums)
    counts.clear()
    return 0


def compile_mean(
    model: Model,
    batch_shape: tuple[int, ...],
    options: AttentionOptions = DEFAULT_OPTIONS,
    *,
    order=None,
    blocks=None,
    implementation: str | None = None,
) -> bool:
    """Compile, without running it, the program that :func:`attention_mean` runs on batches of
    ``batch_shape`` ``(B, H, W, 3)`` (its first batch's size: shorter batches are padded to it)
    with ``options`` (an :class:`~jaxmamba.attention.options.AttentionOptions`).

    XLA releases Python while it compiles, so a thread can compile the next order's program
    while another order is averaged; the later :func:`attention_mean` call then finds the
    program compiled.  Only for one process on one device (elsewhere the batch is sharded over a
    mesh at call time): returns False and does nothing there, True once compiled.

    >>> import jaxmamba
    >>> m = jaxmamba.create_model("vmamba_test")
    >>> compile_mean(m, (2, 64, 64, 3), AttentionOptions(route_mode="each"), order="spiral",
    ...              blocks=3)
    True
    """
    if jax.process_count() > 1 or jax.local_device_count() > 1:
        return False
    names = select_blocks(model.config, blocks)
    xs = jnp.zeros(tuple(batch_shape), jnp.float32)  # placed as attention_mean places a batch
    valid = jnp.zeros(batch_shape[0], bool)
    table = route_table(model.config, batch_shape[1:3], order)
    pieces = cpu_pieces(model.config, xs.shape)
    size = (int(batch_shape[1]), int(batch_shape[2]))
    blocks_info = tuple(model.config.block(n, size) for n in names)
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    sums = zero_sums(model, blocks_info, table, options, mesh)
    mean_step.lower(
        model, sums, xs, valid, table, names, options, implementation, pieces, 1
    ).compile()
    return True


def route_table(config, size, order):
    """What the programs of :func:`attention_mean` receive as the order: a hard order's routes
    on every stage grid of a ``size`` ``(H, W)`` input as data (a
    :class:`~jaxmamba.orders.RouteTable`), so that the orders of a study share one compiled
    program; soft routes as they are.

    >>> from jaxmamba.models.config import get_config
    >>> route_table(get_config("vmamba_test"), (64, 64), "spiral")
    RouteTable(spiral: 2x2, 4x4, 8x8, 16x16)
    """
    order = model_order(config, order)
    if not isinstance(order, Order) or isinstance(config, VimConfig):
        return order  # soft routes; a Vim model's token routes are made from the order itself
    grids = [config.stage_grid(s, int(size[0]), int(size[1])) for s in range(len(config.depths))]
    return RouteTable.of(order, grids)


def _of_process(many: bool) -> str:
    return f" in process {jax.process_index()}" if many else ""


def _follow(chain: ImageChain, x, state: Progress, out_dir, many: bool, seen: int,
            index: int) -> None:  # fmt: skip
    """Add the images of a batch to ``chain``; where it reaches the images a resumed run had
    consumed, check that they were these (every process together, so that none is left waiting
    when one stream differs)."""
    mine = state.digests[jax.process_index()] if state.digests else None
    error = None
    for image in x:
        chain.add(image)
        if chain.count == state.consumed and mine is not None and chain.digest.hex() != mine:
            error = AggregateError(
                f"the running mean in {out_dir} was started on other images: the first "
                f"{state.consumed} images of this stream{_of_process(many)} differ from those it "
                "averaged; give the same images in the same order, or use another out_dir"
            )
    if many and seen < state.consumed <= seen + len(x):  # the same batch in every process
        _agree_batch(index, error, x)
    elif error is not None:
        raise error


def _checked(model, batch, index, shape, seen, nonfinite):
    """The images of ``batch`` as float32 host data and which of them are finite; raises on a
    bad batch (another image size, NaN/inf pixels with ``nonfinite="raise"``)."""
    images = _images_of(batch)
    check_images(model.config, images, allow_empty=True)  # an empty batch adds nothing
    if shape is not None and tuple(images.shape[1:]) != shape:
        raise AggregateError(
            f"batch {index} has images of shape {tuple(images.shape[1:])}, earlier "
            f"batches {shape}: all images must have one size"
        )
    x = np.asarray(images, np.float32)
    finite = np.isfinite(x).all(axis=(1, 2, 3))
    if not finite.all() and nonfinite == "raise":
        where = [seen + int(i) for i in np.flatnonzero(~finite)]
        raise AggregateError(
            f"images {where[:10]} (counted from 0 in this stream, batch {index}) hold "
            "NaN or inf pixels; pass nonfinite='skip' to leave them out"
        )
    return x, finite


def _agree_batch(index: int, error: Exception | None, x) -> None:
    """Multi-process: all processes learn whether each has batch ``index``, of which size and
    image shape, or failed; they raise together unless all go on (or all have ended)."""
    from jax.experimental import multihost_utils

    shape = x.shape[1:3] if x is not None else (0, 0)
    head = np.array([error is not None, x is None, 0 if x is None else len(x), *shape], np.int64)
    message = encode_message(f"{type(error).__name__}: {store.first_line(error)}" if error else "")
    heads, messages = (np.asarray(a) for a in multihost_utils.process_allgather((head, message)))
    if error is not None:
        raise error
    failed = np.flatnonzero(heads[:, 0])
    if failed.size:
        p = int(failed[0])
        raise AggregateError(f"process {p} failed at batch {index}: {decode_message(messages[p])}")
    ended = heads[:, 1].astype(bool)
    if ended.any() and not ended.all():
        raise AggregateError(
            f"the processes' streams differ in length: processes {np.flatnonzero(ended).tolist()} "
            f"have no batch {index}, processes {np.flatnonzero(~ended).tolist()} have one; every "
            "process must give the same number of batches"
        )
    if not ended.any() and len({tuple(h[2:]) for h in heads.tolist()}) > 1:
        detail = ", ".join(f"process {i}: {n} images of {h}x{w}" for i, (*_, n, h, w) in
                           enumerate(heads.tolist()))  # fmt: skip
        raise AggregateError(
            f"batch {index} differs between processes ({detail}); every process must give "
            "batches of equal size and image shape"
        )


def _int_arg(name: str, value, low: int) -> int:
    """``value`` as an int >= ``low``: a Python or NumPy int; a bool or a float is refused.

    >>> _int_arg("save_every", np.int64(2), 1)
    2
    >>> _int_arg("save_every", True, 1)
    Traceback (most recent call last):
    jaxmamba.errors.AggregateError: save_every must be an int >= 1, got True
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise AggregateError(f"{name} must be an int >= {low}, got {value!r}")
    if value < low:
        raise AggregateError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _agree_run(identity: dict, resumable: bool, save_every: int) -> None:
    """Multi-process: refuse, in every process, a run whose processes hold other weights,
    orders, blocks or options (their means would be mixed), or disagree on ``out_dir``."""
    from jax.experimental import multihost_utils

    plan = dict(identity, out_dir=resumable, save_every=save_every)
    keys = sorted(plan)
    mine = np.stack([
        np.frombuffer(hashlib.sha256(json.dumps(plan[k], sort_keys=True).encode()).digest()[:8],
                      np.uint8) for k in keys
    ])  # fmt: skip
    every = np.asarray(multihost_utils.process_allgather(mine))
    differ = [k for i, k in enumerate(keys) if (every[:, i] != every[0, i]).any()]
    if differ:
        raise AggregateError(
            f"the {jax.process_count()} processes do not run the same mean: they differ in "
            f"{', '.join(differ)}; every process must pass the same model, order, blocks, "
            "options, image size and out_dir (given or not)"
        )
