"""One process of the multi-process tests (tests/test_multiprocess.py): a JAX process on 127.0.0.1
that streams its own shard of the images through ``attention_mean`` and saves what it got.

    python tests/multiprocess_worker.py PORT PROCESS_ID RESULT OPTIONS_JSON

Options: ``out_dir`` (resumable state, ``save_every=1``; none by default); ``kill_after``: SIGKILL
this process when it is asked for that batch (the state of the batches before it is saved by
then); ``poison``: replace the first ``poison`` images of the shard by constant ones, which a
resumed run must skip (consumed before) for its mean to be right; ``extra``: images added to the
end of the shard; ``store``: also write the mean with :func:`jaxmamba.storage.store.write` to
this folder and read it back in every process.  RESULT gets the mean, its count, or the error
raised.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np

PROCESSES = 2
LOCAL_DEVICES = 2
IMAGES = 12  # 6 per process
BATCH = 2  # per process; 4 per global batch
SIZE = 64
BLOCKS = [0, 3]  # stage 0 (16 x 16 grid) and stage 3 (2 x 2)


def all_images() -> np.ndarray:
    """The images of the run, the same in every process: ``(IMAGES, SIZE, SIZE, 3)``."""
    return np.random.default_rng(0).standard_normal((IMAGES, SIZE, SIZE, 3)).astype(np.float32)


def shard(process_id: int) -> np.ndarray:
    """The images that process ``process_id`` averages (a contiguous shard)."""
    per = IMAGES // PROCESSES
    return all_images()[process_id * per : (process_id + 1) * per]


def random_model(seed: int = 4):
    """vmamba_test with random float32 parameters (nothing to compile; the same in any process)."""
    import jaxmamba
    from jaxmamba.models import params as P
    from jaxmamba.storage.checkpoint import param_shapes

    rng = np.random.default_rng(seed)
    config = jaxmamba.get_config("vmamba_test")
    flat = {
        P.key_to_path(k): rng.standard_normal(s).astype(np.float32) * 0.2
        for k, s in param_shapes(config).items()
    }
    return jaxmamba.Model(config, P.unflatten(flat))


def main(port: int, process_id: int, result: str, options: dict) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=PROCESSES,
        process_id=process_id,
    )
    assert jax.process_count() == PROCESSES and jax.local_device_count() == LOCAL_DEVICES

    from jaxmamba.attention.mean import attention_mean
    from jaxmamba.errors import JaxmambaError
    from jaxmamba.storage import store

    images = shard(process_id)
    images[: options.get("poison", 0)] = 7.0
    images = np.concatenate([images, images[: options.get("extra", 0)]])
    kill_after = options.get("kill_after", 0)

    def batches():
        for i in range(0, len(images), BATCH):
            if kill_after and i // BATCH == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            yield images[i : i + BATCH]

    out = {}
    try:
        mean = attention_mean(
            random_model(),
            batches(),
            blocks=BLOCKS,
            out_dir=options.get("out_dir"),
            save_every=1,
            progress=False,
        )
    except JaxmambaError as e:
        out["error"] = f"{type(e).__name__}: {e}"
    else:
        out = {k: np.asarray(v) for k, v in mean.items()}
        out.update(count=mean.count, skipped=mean.skipped)
        if options.get("store"):
            store.write(options["store"], {"mean": dict(mean)})
            back, _ = store.read(options["store"], ["mean"])
            out["store_equal"] = all(np.array_equal(back["mean"][k], mean[k]) for k in mean)
    tmp = f"{result}.tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, result)


if __name__ == "__main__":
    port, process_id, result, options = sys.argv[1:]
    main(int(port), int(process_id), result, json.loads(options))
