"""Multi-process attention means: two JAX processes on 127.0.0.1 under
``jax.distributed.initialize`` (gloo CPU collectives, 2 simulated devices each), each streaming
its own half of the images, get the one-process mean; a pair of which one process was killed
resumes from the saved state, nothing counted twice or dropped; uneven streams stop both
processes with one error instead of a hang.  The processes run tests/multiprocess_worker.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import multiprocess_worker as worker
import numpy as np
import pytest
from conftest import rel_err

from jaxmamba.attention.mean import attention_mean
from jaxmamba.storage import store

WORKER = Path(worker.__file__)
TIMEOUT = 240  # seconds for one pair, startup and compiling included; a hang fails the test


@pytest.fixture(scope="module")
def reference():
    """The one-process mean over all images, in batches of another size."""
    x = worker.all_images()
    mean = attention_mean(
        worker.random_model(), [x[i : i + 3] for i in range(0, len(x), 3)],
        blocks=worker.BLOCKS, progress=False,
    )  # fmt: skip
    assert mean.count == worker.IMAGES
    return {k: np.asarray(v) for k, v in mean.items()}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A compilation cache shared by the pairs of this module (the later pairs start faster)."""
    return tmp_path_factory.mktemp("jax-cache")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pair(tmp_path: Path, cache: Path, tag: str, *options: dict) -> list[dict]:
    """Run the two processes (``options`` of process 0 and 1) and return what each saved.

    When a process kills itself (``kill_after``), the other one is left waiting in a collective
    or aborting: it is killed as soon as the first is gone, and nothing is returned.  No process
    outlives this call."""
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={worker.LOCAL_DEVICES}",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    port = free_port()
    results = [tmp_path / f"{tag}-{i}.npz" for i in range(worker.PROCESSES)]
    logs = [tmp_path / f"{tag}-{i}.log" for i in range(worker.PROCESSES)]
    procs = []
    try:
        for i in range(worker.PROCESSES):
            with open(logs[i], "w") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, str(WORKER), str(port), str(i), str(results[i]),
                     json.dumps(options[i])],
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                ))  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        killed = [i for i, o in enumerate(options) if o.get("kill_after")]
        waiting = killed or range(worker.PROCESSES)
        for i in waiting:
            procs[i].wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        tails = [log.read_text()[-2000:] for log in logs]
        pytest.fail(f"the pair {tag} did not finish in {TIMEOUT} s:\n" + "\n---\n".join(tails))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    if killed:  # the others were killed above
        assert [procs[i].returncode for i in killed] == [-signal.SIGKILL] * len(killed)
        return []
    out = []
    for i in range(worker.PROCESSES):
        assert procs[i].returncode == 0 and results[i].exists(), logs[i].read_text()[-3000:]
        with np.load(results[i]) as f:
            out.append({k: f[k] for k in f.files})
    return out


def assert_mean(result: dict, reference: dict) -> None:
    assert "error" not in result, result.get("error")
    assert int(result["count"]) == worker.IMAGES and int(result["skipped"]) == 0
    for k, v in reference.items():
        assert rel_err(result[k], v) < 1e-6  # measured 2.2e-7


def test_two_processes_get_the_one_process_mean(tmp_path, cache, reference):
    folder = tmp_path / "store"
    results = run_pair(tmp_path, cache, "plain", *[{"store": str(folder)}] * worker.PROCESSES)
    assert len(results) == worker.PROCESSES
    for result in results:
        assert_mean(result, reference)
        assert bool(result["store_equal"])  # process 0 wrote it, every process read it
    assert store.is_ours(folder)


@pytest.mark.parametrize(
    "shared,killed",
    [pytest.param(True, 1, marks=pytest.mark.slow), (False, 0)],  # the shared folder: -m slow
    ids=["shared-out_dir-peer-killed", "own-out_dirs-writer-killed"],
)
def test_resume_after_one_process_is_killed(tmp_path, cache, reference, shared, killed):
    """Kill one process after its pair saved 2 batches (4 images per process), then restart the
    pair with the same out_dir(s): with the consumed images of process 1 replaced by others, every
    process refuses (process 0 holds the state, process 1 checks its own images against it); with
    the same images, the resumed pair's mean is the reference (no image counted twice)."""
    dirs = [tmp_path / "run" if shared else tmp_path / f"run{i}" for i in range(worker.PROCESSES)]
    first = [{"out_dir": str(d)} for d in dirs]
    first[killed]["kill_after"] = 2
    run_pair(tmp_path, cache, "killed", *first)
    steps = store.StepStore(dirs[0] / "state")  # process 0 keeps the state, in its out_dir
    assert steps.latest_step() == 4
    meta = json.loads(steps.restore(4, [], ["meta.json"])[1]["meta.json"])
    digests = meta.pop("images_digests")  # of each process's 4 images
    assert meta == {"count": 8, "consumed": 4, "skipped": 0}
    assert len(digests) == worker.PROCESSES and len(set(digests)) == worker.PROCESSES
    if not shared:
        assert not dirs[1].exists()  # the other processes never touch theirs
    poisoned = [{"out_dir": str(d)} for d in dirs]
    poisoned[1]["poison"] = 4
    for result in run_pair(tmp_path, cache, "poisoned", *poisoned):
        assert "was started on other images" in str(result["error"]), result.get("error")
    assert steps.latest_step() == 4  # nothing saved
    second = [{"out_dir": str(d)} for d in dirs]
    for result in run_pair(tmp_path, cache, "resumed", *second):
        assert_mean(result, reference)
    assert steps.latest_step() == 6


def test_uneven_streams_stop_every_process_with_one_error(tmp_path, cache):
    results = run_pair(tmp_path, cache, "uneven", {}, {"extra": 2})
    for result in results:
        assert "streams differ in length" in str(result["error"]), result["error"]
