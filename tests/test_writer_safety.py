"""Writer safety: a resumed study never writes or reads through a symbolic link out of
its folder (nor do its figures), a killed writer's lock never blocks a resume whatever its pid or
host (a heartbeat tells a live writer from a dead one), and arguments a reader could not read back
are refused before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import jaxmamba
from jaxmamba.errors import CheckpointError, PlotError, StudyError
from jaxmamba.storage import lock, store
from jaxmamba.study import Study, write_study

N = 2
BLOCKS = [3]  # one 2 x 2 block: the cheapest study


@pytest.fixture(scope="module")
def model():
    return jaxmamba.create_model("vmamba_test", seed=3)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).standard_normal((N, 64, 64, 3)).astype(np.float32)


def study(out, model, images, **kw):
    args = dict(orders=["cross"], blocks=BLOCKS, methods=["pca"], single_images=0,
                batch_size=N, progress=False)  # fmt: skip
    return write_study(out, model, images, **{**args, **kw})


@pytest.fixture(scope="module")
def done(model, images, tmp_path_factory):
    """A finished study (written once for the module; copy it before changing it)."""
    return study(tmp_path_factory.mktemp("done") / "s", model, images).path


def snapshot(folder: Path) -> dict:
    """Every entry below ``folder`` (links not followed): what it is, its bytes and mtime."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p.relative_to(folder))] = (p.read_bytes(), p.stat().st_mtime_ns)
        else:
            out[str(p.relative_to(folder))] = "folder"
    return out


def unfinished_copy(done: Path, tmp_path: Path) -> Path:
    """A copy of ``done`` marked unfinished, as someone's interrupted study."""
    s = tmp_path / "s"
    shutil.copytree(done, s)
    meta = json.loads((s / "study.json").read_text())
    meta.update(complete=False, done={})
    meta.pop("findings", None)
    (s / "study.json").write_text(json.dumps(meta))
    return s


# ---- 1. nothing is written or read through a symbolic link out of the study -------------------


def test_a_resume_through_linked_folders_writes_nothing_anywhere(model, images, done, tmp_path):
    s = unfinished_copy(done, tmp_path)
    means, emb = tmp_path / "outside_means", tmp_path / "outside_emb"
    (s / "means").rename(means)
    (s / "means").symlink_to(means)
    shutil.rmtree(s / "embeddings")
    emb.mkdir()
    (s / "embeddings").symlink_to(emb)
    before, outside = snapshot(s), snapshot(tmp_path)
    with pytest.raises(StudyError, match=r"/s/(means|embeddings) is a symbolic link"):
        study(s, model, images)  # main: rewrote outside_means, wrote into outside_emb
    assert snapshot(s) == before  # refused before anything was written: no lock, no study.json
    assert snapshot(tmp_path) == outside
    assert list(emb.iterdir()) == []


@pytest.mark.parametrize("link", ["means/cross/layers.3.blocks.0.npy", "study.json", "work",
                                  "images/0.png", "figures", "explorer.html", ".lock"])  # fmt: skip
def test_a_link_anywhere_a_study_writes_is_refused_before_writing(
    model, images, done, tmp_path, link
):
    s = unfinished_copy(done, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = s / link
    if target.is_dir():
        shutil.rmtree(target)
    target.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(victim)
    before = snapshot(s)
    with pytest.raises(StudyError, match=f"{target} is a symbolic link"):
        study(s, model, images)
    assert snapshot(s) == before
    assert victim.read_text() == "keep me"


def test_a_fifo_in_a_study_is_refused_unopened(model, images, done, tmp_path):
    s = unfinished_copy(done, tmp_path)
    (s / "embeddings" / "cross" / "layers.3.blocks.0.pca.npy").unlink()
    os.mkfifo(s / "embeddings" / "cross" / "layers.3.blocks.0.pca.npy")
    with pytest.raises(StudyError, match="is a FIFO, not a regular file"):
        study(s, model, images)  # an open would block


def test_the_study_folder_itself_may_be_a_link(model, images, done, tmp_path):
    s = unfinished_copy(done, tmp_path)
    (tmp_path / "named").symlink_to(s)
    assert study(tmp_path / "named", model, images).meta["complete"]
    assert Study(s).meta["complete"]


def test_figures_are_never_written_through_a_link(done, tmp_path):
    from jaxmamba.views.figures import write_figures

    s = tmp_path / "s"
    shutil.copytree(done, s)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (s / "figures").mkdir()
    (s / "figures" / "overview_cross.png").symlink_to(victim)
    with pytest.raises(CheckpointError, match="overview_cross.png is a symbolic link"):
        write_figures(Study(s))  # main: matplotlib wrote its PNG into victim.txt
    assert victim.read_text() == "keep me"
    assert [p.name for p in (s / "figures").iterdir()] == ["overview_cross.png"]  # none written
    (s / "figures" / "overview_cross.png").unlink()
    (s / "figures").rmdir()
    (s / "figures").symlink_to(tmp_path)
    with pytest.raises(CheckpointError, match="/s/figures is a symbolic link"):
        write_figures(Study(s))
    (s / "figures").unlink()
    assert {p.suffix for p in write_figures(Study(s))} == {".png"}


def test_plots_save_refuses_a_link(tmp_path):
    from jaxmamba.views import plots, scatter_plot

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "a.png").symlink_to(victim)
    with pytest.raises(PlotError, match="a.png is a symbolic link"):
        plots.save(scatter_plot.scatter(np.zeros((4, 2)), 2, 2), tmp_path / "a.png")
    assert victim.read_text() == "keep me"


def test_inside_refuses_names_that_are_no_plain_name(tmp_path):
    for part in ("..", "a/b", "", "."):
        with pytest.raises(CheckpointError, match="is not a plain file name"):
            store.inside(tmp_path, "means", part)
    (tmp_path / "means").write_text("")
    with pytest.raises(CheckpointError, match="means is a regular file, not a folder"):
        store.inside(tmp_path, "means", "a.npy")
    assert store.inside(tmp_path, "new", "a.npy") == tmp_path / "new" / "a.npy"


# ---- 2. a killed writer's lock never blocks the resume ----------------------------------------


def lock_file(folder: Path, record, age: float = 0.0) -> Path:
    path = folder / store.LOCK_FILE
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def taken(folder: Path) -> bool:
    with store.locked(folder):
        return True


def record(pid: int, host: str | None = None, **extra) -> dict:
    return {"pid": pid, "host": host or socket.gethostname(), "since": "2024-01-01 00:00:00",
            "token": "0" * 32, **extra}  # fmt: skip


def test_a_lock_of_this_pid_not_held_here_is_taken_over(tmp_path):
    lock_file(tmp_path, record(os.getpid()))  # a container: every run is pid 1, the same pid
    assert taken(tmp_path)  # main: refused as alive
    assert not (tmp_path / store.LOCK_FILE).exists()


def test_a_nested_lock_of_this_process_is_still_refused(tmp_path):
    with store.locked(tmp_path):
        with pytest.raises(CheckpointError, match=f"being written by process {os.getpid()} "):
            taken(tmp_path)
    assert taken(tmp_path)


def test_a_lock_of_another_host_is_taken_over_once_its_heartbeat_stopped(tmp_path):
    lock_file(tmp_path, record(12345, host="elsewhere"))
    with pytest.raises(CheckpointError,
                       match=r"process 12345 on elsewhere \(since .*refreshed 0 s ago; a lock not "
                             r"refreshed for 30 s is taken over\)"):  # fmt: skip
        taken(tmp_path)
    lock_file(tmp_path, record(12345, host="elsewhere"), age=31)
    assert taken(tmp_path)  # main: never taken over (each docker run has a new hostname)


def test_a_reused_pid_is_taken_over(tmp_path):
    lock_file(tmp_path, record(1, start="0"))  # pid 1 lives, but started at another time
    assert taken(tmp_path)  # main: refused
    lock_file(tmp_path, record(1), age=31)  # an old lock (before a reboot), no start recorded
    assert taken(tmp_path)  # main: refused


def test_an_empty_lock_is_taken_over_after_a_few_seconds(tmp_path):
    lock_file(tmp_path, "", age=1)  # its writer may be between create and write
    with pytest.raises(CheckpointError, match="names no owner yet"):
        taken(tmp_path)
    lock_file(tmp_path, "", age=6)
    assert taken(tmp_path)  # main: refused for 60 s


def test_the_heartbeat_refreshes_the_lock_and_stops_on_release(tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(lock, "LOCK_HEARTBEAT_S", 0.05)
    with store.locked(tmp_path) as path:
        then = time.time() - 100
        os.utime(path, (then, then))
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 5
        assert json.loads(path.read_text())["start"] is not None  # Linux: its start recorded
    assert not path.exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("jaxmamba lock heartbeat")]


HOLDER = """
import sys, time
from jaxmamba.storage import lock
lock.LOCK_HEARTBEAT_S = 0.1
with lock.locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_live_holder_is_refused_and_its_lock_taken_over_once_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "LOCK_TIMEOUT_S", 1.0)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        time.sleep(1.5)  # longer than the timeout: only its heartbeat keeps it
        with pytest.raises(CheckpointError, match=f"being written by process {holder.pid} "):
            taken(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / store.LOCK_FILE).exists()  # left by the killed holder
    assert taken(tmp_path)  # its pid is dead: taken over at once
    assert not (tmp_path / store.LOCK_FILE).exists()


# ---- 3. what a reader could not read back is refused before writing --------------------------


@pytest.mark.parametrize("change, match", [
    (dict(title="\ud800"), "title is not valid text"),
    (dict(image_names=["\ud800", "b"]), r"image_names\[0\] is not valid text"),
    (dict(sources="/models/\udcff"), "the source of 'cross' in sources is not valid text"),
    (dict(single_images=[0, 0]), "single_images lists image 0 more than once"),
])  # fmt: skip
def test_unreadable_text_and_duplicate_singles_are_refused(model, images, tmp_path, change, match):
    with pytest.raises(StudyError, match=match):
        study(tmp_path / "s", model, images, **change)  # main: written
    assert not (tmp_path / "s").exists()


def test_a_live_process_on_this_host_keeps_its_lock_however_old_its_heartbeat(tmp_path):
    """A writer busy past the heartbeat timeout (a long GIL-holding step, Ctrl-Z) is still alive
    here: its lock is not taken over while its pid runs with the recorded start time."""
    holder = subprocess.Popen(["sleep", "30"])
    try:
        with open(f"/proc/{holder.pid}/stat", "rb") as f:
            start = f.read().rsplit(b")", 1)[1].split()[19].decode()
        lock_file(tmp_path, {"pid": holder.pid, "host": socket.gethostname(), "token": "t",
                             "start": start}, age=lock.LOCK_TIMEOUT_S + 60)  # fmt: skip
        with pytest.raises(CheckpointError, match="that process is running"):
            taken(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert taken(tmp_path)  # gone: taken over at once
