"""Aggregations of attention maps: means over many images (streamed, sharded, resumable) and
rollout across the blocks of a stage.

``attention_mean`` keeps one running sum per block, so memory is constant in the number of
images.  Each batch is split over all devices along its batch axis (a 1-D ``Mesh`` over
``jax.devices()``; XLA reduces the per-device sums).  Multi-host: call
``jax.distributed.initialize()`` in every process first and give each process its own
``batches`` (its shard of the images, equal batch sizes); the local batches are assembled into
one global array with ``jax.make_array_from_process_local_data`` and the mean covers all hosts.
With ``out_dir`` the running sum, the image count and the number of batches consumed are saved
with Orbax every ``save_every`` batches; a rerun with the same ``out_dir`` and the same batches
skips the batches already counted, so no image is counted twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as PS

from jaxmamba.attention import _check_options, _extract
from jaxmamba.checkpoint import quiet_orbax
from jaxmamba.model import Model, _resolve_order, check_images, select_blocks

__all__ = ["AggregateError", "attention_mean", "rollout"]

STATE_FILE = "options.json"


class AggregateError(ValueError):
    """Bad input to an aggregation, or a resume whose options differ from the saved run."""


@dataclasses.dataclass(frozen=True)
class _Options:
    order: str
    blocks: tuple[str, ...]
    routes: str
    channels: object
    include_skip: bool
    normalize: str | None
    image_shape: tuple[int, ...]


def _batch_sum(
    model, images, valid, order, names, routes, channels, include_skip, normalize, soft=None
):  # fmt: skip
    maps = _extract(
        model, images, order, names, routes, channels, include_skip, normalize, None, None, soft
    )
    w = valid.astype(jnp.float32)
    return {k: jnp.tensordot(w, v, axes=(0, 0)) for k, v in maps.items()}


_batch_sum_jit = jax.jit(_batch_sum, static_argnums=tuple(range(3, 9)))


def _images_of(batch):
    if isinstance(batch, (tuple, list)) and batch and np.ndim(batch[0]) == 4:
        return batch[0]  # (images, labels, ...)
    return batch


def _global_batch(images, mesh, size: int = 0):
    """Pad the local batch to ``size`` (no recompiling for a short last batch) and to a multiple
    of the local devices, and shard it over the mesh."""
    n_local = jax.local_device_count()
    b = images.shape[0]
    pad = max(size - b, 0)
    pad += (-(b + pad)) % n_local
    images = np.concatenate(
        [np.asarray(images, np.float32), np.zeros((pad,) + images.shape[1:], np.float32)]
    )
    valid = np.arange(b + pad) < b
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
    routes: str = "sum",
    channels="mean",
    include_skip: bool = False,
    normalize: str | None = None,
    out_dir: str | os.PathLike | None = None,
    save_every: int = 10,
    progress: bool = True,
    total: int | None = None,
) -> dict:
    """Mean hidden attention over all images of ``batches``, in constant memory.

    Args:
      model: a :class:`~jaxmamba.Model`.
      batches: an iterable of ``(B, H, W, 3)`` image arrays (or ``(images, labels)`` tuples),
        all of the same H and W.  To resume, it must yield the same batches in the same order.
      order, blocks, routes, channels, include_skip, normalize: as in
        :func:`jaxmamba.attention.extract_attention` (normalisation is applied per image);
        soft routes ``{(h, w): (K, L, L)}`` too (a resumed run must use the same ones).
      out_dir: where to keep the resumable state (Orbax); ``None`` keeps nothing.
      save_every: batches between saves.
      progress: show a progress bar; total: number of batches, for the bar.

    Returns:
      ``{"layers.i.blocks.j": (L, L)}`` (``(K, L, L)`` with ``routes="each"``) float32 means, and
      the number of images under the key ``"count"``.

    >>> import jax.numpy as jnp, jaxmamba
    >>> m = jaxmamba.create_model("vmamba_test")
    >>> data = [jnp.ones((2, 64, 64, 3)), jnp.zeros((1, 64, 64, 3))]
    >>> mean = attention_mean(m, data, blocks=3, progress=False)
    >>> mean["layers.3.blocks.0"].shape, int(mean["count"])
    ((4, 4), 3)
    """
    channels = _check_options(routes, channels, normalize)
    names = select_blocks(model.config, blocks)
    order, soft = _resolve_order(model.config, order)
    order_id = _soft_id(soft) if soft is not None else _order_id(order)
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    manager, sums, count, done, options = None, None, 0, 0, None
    first_size = 0
    if save_every < 1:
        raise AggregateError(f"save_every must be >= 1, got {save_every}")
    it = iter(batches)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="attention mean", unit="batch")
    try:
        for index, batch in enumerate(it):
            images = _images_of(batch)
            check_images(model.config, images)
            if options is None:
                options = _Options(
                    order_id, names, routes, channels, include_skip, normalize,
                    tuple(images.shape[1:]),
                )  # fmt: skip
                if out_dir is not None:
                    manager, sums, count, done = _open(out_dir, options)
            elif tuple(images.shape[1:]) != options.image_shape:
                raise AggregateError(
                    f"batch {index} has images of shape {images.shape[1:]}, earlier batches "
                    f"{options.image_shape}: all images must have one size"
                )
            if bar is not None:
                bar.update(1)
            if index < done:  # counted by an earlier, interrupted run
                continue
            first_size = first_size or int(images.shape[0])
            x, valid = _global_batch(images, mesh, first_size)
            part = _batch_sum_jit(
                model, x, valid, order, names, routes, channels, include_skip, normalize, soft
            )
            sums = part if sums is None else {k: sums[k] + part[k] for k in sums}
            count += int(images.shape[0]) * jax.process_count()
            done = index + 1
            if manager is not None and done % save_every == 0:
                _save(manager, done, sums, count)
        if sums is None:
            raise AggregateError("no images: batches was empty (or all were counted already)")
        if manager is not None:
            _save(manager, done, sums, count)
            manager.close()
    finally:
        if bar is not None:
            bar.close()
    out = {k: v / count for k, v in sums.items()}
    out["count"] = count
    return out


def _order_id(order) -> str:
    """What a resumed run must match: the name of a named order (or of a callable, which has no
    content to compare), the name and a content fingerprint of route arrays and tables."""
    if order.key[0] in ("named", "callable"):
        return order.name
    return f"{order.name}:" + hashlib.sha256(repr(order.key).encode()).hexdigest()[:16]


def _soft_id(soft: dict) -> str:
    """A content fingerprint of soft routes (what a resumed run must match)."""
    digest = hashlib.sha256()
    for key in sorted(soft):
        value = np.ascontiguousarray(np.asarray(soft[key], np.float32))
        digest.update(key.encode() + value.tobytes())
    return "soft:" + digest.hexdigest()[:16]


def _open(out_dir, options: _Options):
    import orbax.checkpoint as ocp

    out_dir = Path(out_dir).expanduser().absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = out_dir / STATE_FILE
    wanted = json.dumps(dataclasses.asdict(options), sort_keys=True, default=list)
    if meta.exists():
        if meta.read_text() != wanted:
            raise AggregateError(
                f"{out_dir} holds a running mean with other options ({meta.read_text()}); "
                f"use another out_dir to average with {wanted}"
            )
    else:
        meta.write_text(wanted)
    with quiet_orbax():
        manager = ocp.CheckpointManager(
            out_dir / "state", options=ocp.CheckpointManagerOptions(max_to_keep=2)
        )
    step = manager.latest_step()
    if step is None:
        return manager, None, 0, 0
    with quiet_orbax():
        state = manager.restore(step, args=ocp.args.StandardRestore())
    sums = {k: jnp.asarray(v) for k, v in state["sums"].items()}
    return manager, sums, int(state["count"]), int(state["batches"])


def _save(manager, done, sums, count):
    import orbax.checkpoint as ocp

    if manager.latest_step() == done:
        return
    state = {"sums": dict(sums), "count": np.int64(count), "batches": np.int64(done)}
    with quiet_orbax():
        manager.save(done, args=ocp.args.StandardSave(state), force=True)
        manager.wait_until_finished()


def rollout(maps: dict, stage: int | None = None) -> dict:
    """Attention rollout across the blocks of each stage.

    Each block's map is made non-negative and row-normalised (``Â = |A| / Σ_q |A|``), mixed with
    the identity for the residual path (``M = (Â + I) / 2``), and the blocks of a stage are
    chained in forward order (``R = M_last ⋯ M_first``), rows normalised again.

    Args:
      maps: ``{"layers.i.blocks.j": (..., L, L)}``, e.g. from ``extract_attention``.
      stage: only this stage (default: every stage present).

    Returns:
      ``{"layers.i": (..., L, L)}`` per stage.

    >>> import numpy as np
    >>> r = rollout({"layers.0.blocks.0": np.eye(3), "layers.0.blocks.1": np.ones((3, 3))})
    >>> np.allclose(r["layers.0"].sum(-1), 1)
    True
    """
    by_stage: dict[str, list] = {}
    for name in sorted(maps, key=lambda n: tuple(int(p) for p in n.split(".")[1::2])):
        parts = name.split(".")
        if len(parts) != 4 or parts[0] != "layers" or parts[2] != "blocks":
            raise AggregateError(f"rollout needs block maps named layers.i.blocks.j, got {name!r}")
        if stage is None or int(parts[1]) == stage:
            by_stage.setdefault(f"layers.{parts[1]}", []).append(jnp.asarray(maps[name]))
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
