"""The saved state of a resumable attention mean (``attention_mean(out_dir=...)``).

``out_dir`` holds ``run.json`` (:func:`identity_of`: everything that changes the mean's value,
which a resumed run must match) and ``state/`` (a :class:`~jaxmamba.storage.store.StepStore` of
the running sums with the counts and the digest of the images consumed, :class:`Progress`).
:func:`open_state` reads and checks it, :func:`save_state` writes it, :func:`open_everywhere` is
the multi-process form (process 0 reads, every process receives). See
:mod:`jaxmamba.attention.mean` for how a run resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmamba.errors import AggregateError, CheckpointError, JaxmambaError
from jaxmamba.models import params as P
from jaxmamba.storage import store

__all__ = [
    "MESSAGE_BYTES",
    "RUN_FILE",
    "RUN_FORMAT",
    "STATE_DIR",
    "ImageChain",
    "Progress",
    "decode_message",
    "encode_message",
    "identity_of",
    "open_everywhere",
    "open_state",
    "save_state",
]

RUN_FILE = "run.json"
STATE_DIR = "state"
RUN_FORMAT = "jaxmamba-mean"


@dataclasses.dataclass
class Progress:
    """What a run has done: the saved state of a resumable mean."""

    sums: dict | None = None
    count: int = 0  # images averaged, all processes together
    consumed: int = 0  # images this process has taken from its stream (counted or skipped)
    skipped: int = 0  # images with NaN/inf pixels left out, all processes together
    digests: list[str] | None = None  # per process: ImageChain of the consumed images (or None)


class ImageChain:
    """A digest of the images a stream has given, in order, that does not depend on how they were
    batched: ``d = sha256(d + sha256(image))`` over each image's float32 pixels."""

    def __init__(self) -> None:
        self.digest, self.count = b"", 0

    def add(self, image: np.ndarray) -> None:
        pixels = hashlib.sha256(np.ascontiguousarray(image, np.float32).tobytes()).digest()
        self.digest = hashlib.sha256(self.digest + pixels).digest()
        self.count += 1


def open_everywhere(out_dir: Path, identity: dict):
    """Multi-process :func:`open_state`: process 0 opens ``out_dir`` and sends the saved progress
    (or its error) to every process, so that all resume from the same image and the others need no
    access to the folder."""
    from jax.experimental import multihost_utils

    names = identity["blocks"]
    head = np.zeros(5 + 5 * len(names), np.int64)  # failed, has sums, count, consumed, skipped
    digests = np.zeros((jax.process_count(), 33), np.uint8)  # saved or not, sha256 (per process)
    message = encode_message("")
    steps, state = None, Progress()
    if jax.process_index() == 0:
        try:
            steps, state = open_state(out_dir, identity)
        except (JaxmambaError, OSError) as e:
            head[0], message = 1, encode_message(store.first_line(e, MESSAGE_BYTES))
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
        raise AggregateError(decode_message(message))
    if jax.process_index() != 0:
        saved = [bytes(d[1:]).hex() for d in digests] if digests[:, 0].all() else None
        state = Progress(None, int(head[2]), int(head[3]), int(head[4]), saved)
        steps = store.StepStore(out_dir / STATE_DIR, keep=2)
    if head[1]:
        sums = {k: np.asarray(state.sums[k], np.float32) for k in names} if state.sums else {
            k: np.zeros(head[6 + 5 * i : 6 + 5 * i + head[5 + 5 * i]], np.float32)
            for i, k in enumerate(names)
        }  # fmt: skip
        sums = multihost_utils.broadcast_one_to_all(sums)
        state.sums = {k: np.asarray(v) for k, v in sums.items()}
    return steps, state


def identity_of(model, order, blocks_info, options, shape, nonfinite) -> dict:
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


def open_state(out_dir: Path, identity: dict):
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
        return steps, Progress()
    try:
        trees, files = steps.restore(latest, ["sums"], ["meta.json"])
        where = steps.directory / str(latest) / "meta.json"
        meta: Any = store.parse_json(files["meta.json"], where)
        state = Progress(
            {k: jnp.asarray(v) for k, v in trees["sums"].items()},
            int(meta["count"]), int(meta["consumed"]), int(meta["skipped"]),
            _saved_digests(meta, identity["processes"]),
        )  # fmt: skip
    except (CheckpointError, KeyError, ValueError, TypeError, OSError) as e:
        raise AggregateError(
            f"the saved running mean in {out_dir} cannot be resumed: {store.first_line(e)}"
        ) from e
    if set(state.sums or {}) != set(identity["blocks"]):
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


def save_state(steps: store.StepStore, state: Progress, chain: ImageChain) -> None:
    digest = np.frombuffer(chain.digest, np.uint8)
    if jax.process_count() > 1:  # every process saves together: gather their digests
        from jax.experimental import multihost_utils

        every = np.asarray(multihost_utils.process_allgather(digest)).reshape(-1, 32)
    else:
        every = digest[None]
    meta = {"count": state.count, "consumed": state.consumed, "skipped": state.skipped,
            "images_digests": [bytes(d).hex() for d in every]}  # fmt: skip
    sums = {k: np.asarray(v) for k, v in (state.sums or {}).items()}
    steps.save(state.consumed, {"sums": sums}, {"meta.json": json.dumps(meta)})


MESSAGE_BYTES = 1024


def encode_message(text: str) -> np.ndarray:
    raw = text.encode()[:MESSAGE_BYTES]
    out = np.zeros(MESSAGE_BYTES, np.uint8)
    out[: len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def decode_message(raw) -> str:
    return bytes(np.asarray(raw, np.uint8)).rstrip(b"\0").decode(errors="replace")
