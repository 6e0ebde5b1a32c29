"""One process of the multi-process tests (tests/test_multiprocess.py): a JAX process on 127.0.0.1
that streams its own shard of the images through ``attention_mean`` and saves the result.

    python tests/multiprocess_worker.py PORT PROCESS_ID OUT_DIR KILL_AFTER RESULT

OUT_DIR ``-`` keeps no resumable state; KILL_AFTER > 0 makes the process SIGKILL itself when it is
asked for that batch (with ``save_every=1`` the state of the batches before it is saved by then).
"""

from __future__ import annotations

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
    from jaxmamba import params as P
    from jaxmamba.checkpoint import param_shapes

    rng = np.random.default_rng(seed)
    config = jaxmamba.get_config("vmamba_test")
    flat = {
        P.key_to_path(k): rng.standard_normal(s).astype(np.float32) * 0.2
        for k, s in param_shapes(config).items()
    }
    return jaxmamba.Model(config, P.unflatten(flat))


def main(port: int, process_id: int, out_dir: str, kill_after: int, result: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=PROCESSES,
        process_id=process_id,
    )
    assert jax.process_count() == PROCESSES and jax.local_device_count() == LOCAL_DEVICES

    from jaxmamba.aggregate import attention_mean

    images = shard(process_id)

    def batches():
        for i in range(0, len(images), BATCH):
            if kill_after and i // BATCH == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            yield images[i : i + BATCH]

    mean = attention_mean(
        random_model(),
        batches(),
        blocks=BLOCKS,
        out_dir=None if out_dir == "-" else out_dir,
        save_every=1,
        progress=False,
    )
    arrays = {k: np.asarray(v) for k, v in mean.items()}
    tmp = f"{result}.tmp.npz"
    np.savez(tmp, count=mean.count, skipped=mean.skipped, **arrays)
    os.replace(tmp, result)


if __name__ == "__main__":
    port, process_id, out_dir, kill_after, result = sys.argv[1:]
    main(int(port), int(process_id), out_dir, int(kill_after), result)
