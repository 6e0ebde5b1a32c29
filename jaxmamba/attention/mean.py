"""Aggregations of attention maps: means over many images (streamed, sharded, resumable) and
rollout across the blocks of a stage.

``attention_mean`` keeps one running sum per block, so memory is constant in the number of
images.  Each batch is split over all devices along its batch axis (a 1-D ``Mesh`` over
``jax.devices()``; XLA reduces the per-device sums).

Resuming (``out_dir``): the running sums, the number of images counted, the number of images
each process has consumed from its stream and a digest of those images (a chain of the sha256 of
each image's float32 pixels, in stream order) are saved atomically, with checksums
(:mod:`jaxmamba.storage.store`), every ``save_every`` batches.  A rerun with the same ``out_dir`` skips
exactly the images already consumed (by image, not by batch, so another batch size resumes
correctly) after checking that they are the images the saved sums hold, and refuses, naming what
differs, to continue a run made with other images (or a stream shorter than what was consumed),
other model weights (a digest of the parameters), another order, other blocks, options or image
size.  A state saved by a jaxmamba without image digests is resumed with a warning that its
images cannot be checked.

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

import dataclasses
import hashlib
import itertools
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as PS

from jaxmamba.attention.extract import AttentionMaps, AttentionOptions, compute_maps
from jaxmamba.errors import AggregateError, CheckpointError, JaxmambaError
from jaxmamba.models import params as P
from jaxmamba.models.config import parse_block_name
from jaxmamba.models.model import Model, check_images, select_blocks
from jaxmamba.orders import Order, RouteTable, as_order
from jaxmamba.storage import store

__all__ = [
    "AggregateError",
    "NONFINITE_MODES",
    "attention_mean",
    "compile_mean",
    "rollout",
    "route_table",
]

RUN_FILE = "run.json"
STATE_DIR = "state"
RUN_FORMAT = "jaxmamba-mean"
NONFINITE_MODES = ("raise", "skip")


def _batch_sum(model, images, valid, order, names, options, implementation):
    maps = compute_maps(model, images, order, names, options, implementation)
    w = valid.astype(jnp.float32)
    return {k: jnp.tensordot(w, maps[k], axes=(0, 0)) for k in names}, jnp.sum(valid)


_batch_sum_jit = jax.jit(_batch_sum, static_argnums=(4, 5, 6))


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


@dataclasses.dataclass
class _Progress:
    """What a run has done: the saved state of a resumable mean."""

    sums: dict | None = None
    count: int = 0  # images averaged, all processes together
    consumed: int = 0  # images this process has taken from its stream (counted or skipped)
    skipped: int = 0  # images with NaN/inf pixels left out, all processes together
    digests: list[str] | None = None  # per process: _ImageChain of the consumed images (or None)


class _ImageChain:
    """A digest of the images a stream has given, in order, that does not depend on how they were
    batched: ``d = sha256(d + sha256(image))`` over each image's float32 pixels."""

    def __init__(self) -> None:
        self.digest, self.count = b"", 0

    def add(self, image: np.ndarray) -> None:
        pixels = hashlib.sha256(np.ascontiguousarray(image, np.float32)).digest()
        self.digest = hashlib.sha256(self.digest + pixels).digest()
        self.count += 1


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
    order = as_order(order)
    save_every = _int_arg("save_every", save_every, 1)
    total = None if total is None else _int_arg("total", total, 0)
    if nonfinite not in NONFINITE_MODES:
        raise AggregateError(f"nonfinite must be one of {NONFINITE_MODES}, got {nonfinite!r}")
    bad = int(_nonfinite_count(model.params))
    if bad:
        raise AggregateError(f"the model's parameters hold {bad} NaN/inf values; nothing averaged")
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    many = jax.process_count() > 1
    steps, state, blocks_info, shape, table = None, _Progress(), None, None, None
    first_size, seen, since_save = 0, 0, 0
    chain = _ImageChain()
    stream = iter(batches)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"attention mean ({order.name})", unit="img")
    try:
        for index in itertools.count():
            x = finite = error = None
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
                blocks_info = [model.config.block(n, shape[:2]) for n in names]
                identity = None
                if out_dir is not None or many:
                    identity = _identity(model, order, blocks_info, options, shape, nonfinite)
                if many:
                    _agree_run(identity, out_dir is not None, save_every)
                if out_dir is not None:
                    opened = _open_everywhere if many else _open
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
            if table is None:  # the order's routes as data, once
                table = route_table(model.config, shape[:2], order)
            part, n_valid = _batch_sum_jit(model, xs, valid, table, names, options, implementation)
            n_valid = int(n_valid)
            state.sums = part if state.sums is None else {k: state.sums[k] + part[k] for k in part}
            state.count += n_valid
            state.skipped += len(x) * jax.process_count() - n_valid  # equal batches everywhere
            state.consumed = seen
            since_save += 1
            if bar is not None:
                bar.update(len(x))
            if steps is not None and since_save >= save_every:
                _save(steps, state, chain)
                since_save = 0
        if state.count == 0:
            raise AggregateError(
                "no images were averaged: batches was empty, or all its images were counted "
                "already or skipped"
            )
        if steps is not None and since_save:
            _save(steps, state, chain)
    finally:
        if bar is not None:
            bar.close()
    means = {k: v / state.count for k, v in state.sums.items()}
    label = order if isinstance(order, Order) else order.fingerprint([b.grid for b in blocks_info])
    return AttentionMaps(means, blocks_info, label, options, state.count, state.skipped)


_END = object()


def compile_mean(
    model: Model,
    batch_shape: tuple[int, ...],
    *,
    order=None,
    blocks=None,
    route_mode: str = "sum",
    channels="mean",
    include_skip: bool = False,
    normalize: str | None = None,
    implementation: str | None = None,
) -> bool:
    """Compile, without running it, the program that :func:`attention_mean` runs on batches of
    ``batch_shape`` ``(B, H, W, 3)`` (its first batch's size: shorter batches are padded to it).

    XLA releases Python while it compiles, so a thread can compile the next order's program
    while another order is averaged; the later :func:`attention_mean` call then finds the
    program compiled.  Only for one process on one device (elsewhere the batch is sharded over a
    mesh at call time): returns False and does nothing there, True once compiled.

    >>> import jaxmamba
    >>> m = jaxmamba.create_model("vmamba_test")
    >>> compile_mean(m, (2, 64, 64, 3), order="spiral", blocks=3)
    True
    """
    if jax.process_count() > 1 or jax.local_device_count() > 1:
        return False
    options = AttentionOptions(route_mode, channels, include_skip, normalize)
    names = select_blocks(model.config, blocks)
    xs = jnp.zeros(tuple(batch_shape), jnp.float32)  # placed as attention_mean places a batch
    valid = jnp.zeros(batch_shape[0], bool)
    table = route_table(model.config, batch_shape[1:3], order)
    _batch_sum_jit.lower(model, xs, valid, table, names, options, implementation).compile()
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
    order = as_order(order)
    if not isinstance(order, Order):
        return order
    grids = [config.stage_grid(s, int(size[0]), int(size[1])) for s in range(len(config.depths))]
    return RouteTable.of(order, grids)


def _of_process(many: bool) -> str:
    return f" in process {jax.process_index()}" if many else ""


def _follow(chain: _ImageChain, x, state: _Progress, out_dir, many: bool, seen: int,
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


_MESSAGE_BYTES = 1024


def _encode(text: str) -> np.ndarray:
    raw = text.encode()[:_MESSAGE_BYTES]
    out = np.zeros(_MESSAGE_BYTES, np.uint8)
    out[: len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def _decode(raw) -> str:
    return bytes(np.asarray(raw, np.uint8)).rstrip(b"\0").decode(errors="replace")


def _agree_batch(index: int, error: Exception | None, x) -> None:
    """Multi-process: all processes learn whether each has batch ``index``, of which size and
    image shape, or failed; they raise together unless all go on (or all have ended)."""
    from jax.experimental import multihost_utils

    shape = x.shape[1:3] if x is not None else (0, 0)
    head = np.array([error is not None, x is None, 0 if x is None else len(x), *shape], np.int64)
    message = _encode(f"{type(error).__name__}: {store.first_line(error)}" if error else "")
    heads, messages = (np.asarray(a) for a in multihost_utils.process_allgather((head, message)))
    if error is not None:
        raise error
    failed = np.flatnonzero(heads[:, 0])
    if failed.size:
        p = int(failed[0])
        raise AggregateError(f"process {p} failed at batch {index}: {_decode(messages[p])}")
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


def _open_everywhere(out_dir: Path, identity: dict):
    """Multi-process :func:`_open`: process 0 opens ``out_dir`` and sends the saved progress (or
    its error) to every process, so that all resume from the same image and the others need no
    access to the folder."""
    from jax.experimental import multihost_utils

    names = identity["blocks"]
    head = np.zeros(5 + 5 * len(names), np.int64)  # failed, has sums, count, consumed, skipped
    digests = np.zeros((jax.process_count(), 33), np.uint8)  # saved or not, sha256 (per process)
    message = _encode("")
    steps, state = None, _Progress()
    if jax.process_index() == 0:
        try:
            steps, state = _open(out_dir, identity)
        except (JaxmambaError, OSError) as e:
            head[0], message = 1, _encode(store.first_line(e, _MESSAGE_BYTES))
        else:
            head[1:5] = [state.sums is not None, state.count, state.consumed, state.skipped]
            for i, d in enumerate(state.digests or []):
                digests[i] = [1, *bytes.fromhex(d)]
            for i, k in enumerate(names):
                if state.sums is not None:
                    dims = np.shape(state.sums[k])  # at most (K, C, L, L)
                    head[5 + 5 * i : 10 + 5 * i] = [len(dims), *dims, *[0] * (4 - len(dims))]
    head, message, digests = (
        np.asarray(a) for a in multihost_utils.broadcast_one_to_all((head, message, digests))
    )
    if head[0]:
        raise AggregateError(_decode(message))
    if jax.process_index() != 0:
        saved = [bytes(d[1:]).hex() for d in digests] if digests[:, 0].all() else None
        state = _Progress(None, int(head[2]), int(head[3]), int(head[4]), saved)
        steps = store.StepStore(out_dir / STATE_DIR, keep=2)
    if head[1]:
        sums = {k: np.asarray(state.sums[k], np.float32) for k in names} if state.sums else {
            k: np.zeros(head[6 + 5 * i : 6 + 5 * i + head[5 + 5 * i]], np.float32)
            for i, k in enumerate(names)
        }  # fmt: skip
        sums = multihost_utils.broadcast_one_to_all(sums)
        state.sums = {k: np.asarray(v) for k, v in sums.items()}
    return steps, state


def _identity(model, order, blocks_info, options, shape, nonfinite) -> dict:
    """Everything that changes a mean's value: a resumed run must match it exactly."""
    return {
        "format": RUN_FORMAT,
        "model": model.config.describe(),
        "model_config": json.loads(json.dumps(dataclasses.asdict(model.config))),
        "params_digest": P.digest(model.params),
        "order": order.name,
        "order_digest": order.fingerprint([b.grid for b in blocks_info]),
        "blocks": [b.name for b in blocks_info],
        "options": options.to_dict(),
        "image_shape": list(shape),
        "nonfinite": nonfinite,
        "processes": jax.process_count(),
    }


def _open(out_dir: Path, identity: dict):
    """The StepStore of ``out_dir`` and the progress saved there (checked against ``identity``)."""
    try:
        out_dir = store.guard(out_dir)
    except CheckpointError as e:
        raise AggregateError(f"out_dir {e}") from None
    run_file = out_dir / RUN_FILE
    if out_dir.exists() and not out_dir.is_dir():
        raise AggregateError(f"out_dir {out_dir} exists and is not a folder")
    if store.entries(out_dir):  # a first write killed left only a temporary: still empty
        try:
            saved = store.parse_json(run_file.read_text(), run_file)
        except FileNotFoundError:
            raise AggregateError(
                f"out_dir {out_dir} is not empty and holds no {RUN_FILE}: it is not a running "
                "mean that attention_mean wrote, so it is neither used nor changed"
            ) from None
        except (OSError, ValueError) as e:  # CheckpointError (bad JSON) is a ValueError
            raise AggregateError(
                f"the running mean in {out_dir} cannot be resumed: {run_file} is unreadable or "
                f"damaged ({store.first_line(e)})"
            ) from None
        if not isinstance(saved, dict) or saved.get("format") != RUN_FORMAT:
            raise AggregateError(f"{run_file} is not a running-mean record of jaxmamba")
        differ = [k for k in identity if saved.get(k) != identity[k]]
        if differ:
            detail = "; ".join(f"{k}: {saved.get(k)!r} there, {identity[k]!r} now" for k in differ)
            raise AggregateError(
                f"{out_dir} holds a running mean made with other options, weights or images "
                f"({detail}); averaging both would mix them. Use another out_dir."
            )
        if (out_dir / STATE_DIR).exists() and not (out_dir / STATE_DIR).is_dir():
            raise AggregateError(
                f"the running mean in {out_dir} cannot be resumed: {out_dir / STATE_DIR} is not "
                "a folder"
            )
    elif jax.process_index() == 0:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            store.write_text_atomic(run_file, json.dumps(identity, indent=1) + "\n")
        except (OSError, CheckpointError) as e:
            raise AggregateError(f"cannot write out_dir {out_dir}: {e}") from None
    steps = store.StepStore(out_dir / STATE_DIR, keep=2)
    latest = steps.latest_step()
    if latest is None:
        return steps, _Progress()
    try:
        trees, files = steps.restore(latest, ["sums"], ["meta.json"])
        meta = store.parse_json(files["meta.json"], steps.directory / str(latest) / "meta.json")
        state = _Progress(
            {k: jnp.asarray(v) for k, v in trees["sums"].items()},
            int(meta["count"]), int(meta["consumed"]), int(meta["skipped"]),
            _saved_digests(meta, identity["processes"]),
        )  # fmt: skip
    except (CheckpointError, KeyError, ValueError, TypeError, OSError) as e:
        raise AggregateError(
            f"the saved running mean in {out_dir} cannot be resumed: {store.first_line(e)}"
        ) from e
    if set(state.sums) != set(identity["blocks"]):
        raise AggregateError(f"the saved running mean in {out_dir} holds other blocks")
    return steps, state


def _saved_digests(meta: dict, processes: int) -> list[str] | None:
    """The image digests of a saved state, one per process; None for a state saved without."""
    if "images_digests" not in meta:
        return None
    digests = meta["images_digests"]
    if (not isinstance(digests, list) or len(digests) != processes
            or not all(isinstance(d, str) and len(d) == 64 for d in digests)):  # fmt: skip
        raise ValueError(f"its images_digests is not {processes} sha256 digests")
    return digests


def _save(steps: store.StepStore, state: _Progress, chain: _ImageChain) -> None:
    digest = np.frombuffer(chain.digest, np.uint8)
    if jax.process_count() > 1:  # every process saves together: gather their digests
        from jax.experimental import multihost_utils

        every = np.asarray(multihost_utils.process_allgather(digest)).reshape(-1, 32)
    else:
        every = digest[None]
    meta = {"count": state.count, "consumed": state.consumed, "skipped": state.skipped,
            "images_digests": [bytes(d).hex() for d in every]}  # fmt: skip
    sums = {k: np.asarray(v) for k, v in state.sums.items()}
    steps.save(state.consumed, {"sums": sums}, {"meta.json": json.dumps(meta)})


def rollout(maps, stage: int | None = None) -> dict:
    """Attention rollout across the blocks of each stage.

    Each block's map is made non-negative and row-normalised (``Â = |A| / Σ_q |A|``), mixed with
    the identity for the residual path (``M = (Â + I) / 2``), and the blocks of a stage are
    chained in forward order (``R = M_last ⋯ M_first``), rows normalised again.

    Args:
      maps: ``{"layers.i.blocks.j": (..., L, L)}``, e.g. an :class:`~jaxmamba.AttentionMaps`.
      stage: only this stage (default: every stage present).

    Returns:
      ``{"layers.i": (..., L, L)}`` per stage.

    >>> import numpy as np
    >>> r = rollout({"layers.0.blocks.0": np.eye(3), "layers.0.blocks.1": np.ones((3, 3))})
    >>> np.allclose(r["layers.0"].sum(-1), 1)
    True
    """
    by_stage: dict[str, list] = {}
    try:
        parsed = {name: parse_block_name(name) for name in maps}
    except ValueError as e:
        raise AggregateError(f"rollout needs block maps: {e}") from None
    for name in sorted(maps, key=parsed.__getitem__):
        if stage is None or parsed[name][0] == stage:
            by_stage.setdefault(f"layers.{parsed[name][0]}", []).append(jnp.asarray(maps[name]))
    if not by_stage:
        raise AggregateError(f"no maps of stage {stage} in {sorted(maps)}")
    out = {}
    for key, chain in by_stage.items():
        result = None
        for a in chain:
            a = jnp.abs(a)
            a = a / jnp.maximum(jnp.sum(a, axis=-1, keepdims=True), 1e-30)
            m = 0.5 * (a + jnp.eye(a.shape[-1], dtype=a.dtype))
            result = m if result is None else jnp.matmul(m, result)
        out[key] = result / jnp.sum(result, axis=-1, keepdims=True)
    return out
