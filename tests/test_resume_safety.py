"""Resume safety: a killed writer never blocks the next run, arguments are checked
before anything is written, one writer at a time, a resumed mean checks its images, and a full
disk is one error naming the file."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import jaxmamba
from jaxmamba.attention.mean import attention_mean
from jaxmamba.errors import AggregateError, CheckpointError, StudyError
from jaxmamba.storage import store
from jaxmamba.study import Study, write_study

BLOCKS = [3]  # one 2 x 2 block: the cheapest study
N = 4
LOCK = ".lock"  # the lock file of a study being written (store.LOCK_FILE)


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
def dead_pid():
    """The pid of a process that has ended (reaped: no process has it now)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid():
    child = subprocess.Popen(["sleep", "30"])
    yield child.pid
    child.kill()
    child.wait()


def temporary(name: str, pid: int) -> str:
    return f".{name}.tmp-{pid}-0123456789ab"


# ---- 5. a dead process never blocks a resume --------------------------------------------------


def test_a_killed_first_write_of_study_json_does_not_block(model, images, tmp_path, dead_pid):
    out = tmp_path / "s"
    out.mkdir()
    (out / temporary("study.json", dead_pid)).write_text('{"format": "jaxm')  # killed mid-write
    s = study(out, model, images)  # on main: "is not empty and holds no study.json"
    assert s.count == N
    assert not any(".tmp-" in p.name for p in out.iterdir())
    assert not (out / LOCK).exists()  # released after success


def test_a_hidden_file_of_the_user_still_blocks_and_is_kept(model, images, tmp_path, dead_pid):
    out = tmp_path / "s"
    out.mkdir()
    mine = [".mine", f".notes.tmp-{dead_pid}-nothex", temporary("study.json", os.getpid())]
    for name in mine:  # not the library's pattern, or a live writer's (this process)
        (out / name).write_text("keep")
        with pytest.raises(StudyError, match="holds no study.json"):
            study(out, model, images)
        assert sorted(p.name for p in out.iterdir()) == [name]
        (out / name).unlink()


def test_a_killed_first_write_of_run_json_does_not_block(model, images, tmp_path, dead_pid):
    out = tmp_path / "mean"
    out.mkdir()
    (out / temporary("run.json", dead_pid)).write_text("{")
    mean = attention_mean(model, [images], blocks=BLOCKS, out_dir=out, progress=False)
    assert mean.count == N and (out / "run.json").is_file()
    assert not any(".tmp-" in p.name for p in out.iterdir())
    (out2 := tmp_path / "mine").mkdir()
    (out2 / ".mine").write_text("keep")
    with pytest.raises(AggregateError, match="holds no run.json"):
        attention_mean(model, [images], blocks=BLOCKS, out_dir=out2, progress=False)
    assert [p.name for p in out2.iterdir()] == [".mine"]


def test_store_write_replaces_a_folder_of_dead_temporaries_only(tmp_path, dead_pid):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / temporary("checksums.json", dead_pid)).write_text("{")
    store.write(folder, {"a": {"x": np.arange(3.0)}})  # on main: "already exists and is not empty"
    assert store.read(folder, ["a"])[0]["a"]["x"].tolist() == [0.0, 1.0, 2.0]


def test_leftover_work_of_finished_means_is_removed_by_the_next_run(model, images, tmp_path):
    out = tmp_path / "s"
    study(out, model, images)
    work = out / "work" / "cross"  # a run killed after the means were written, before cleaning
    attention_mean(model, [images], order="cross", blocks=BLOCKS, out_dir=work, progress=False)
    assert (work / "state").is_dir()
    s = study(out, model, images)  # the study is complete: reopened, resumed, cleaned
    assert not (out / "work").exists()  # on main: left there for ever
    assert s.count == N and s.meta["done"] == {"means/cross": N}


def test_a_foreign_folder_in_work_is_left_alone(model, images, tmp_path):
    out = tmp_path / "s"
    study(out, model, images)
    (out / "work" / "cross").mkdir(parents=True)
    (out / "work" / "cross" / "notes.txt").write_text("keep")
    study(out, model, images)
    assert (out / "work" / "cross" / "notes.txt").read_text() == "keep"


# ---- 6, 9. arguments are checked before anything is written -----------------------------------


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(save_every=0), "save_every must be >= 1"),
        (dict(save_every=2.0), "save_every must be an int"),
        (dict(batch_size=True), "batch_size must be an int"),
        (dict(seed=1.5), "seed must be an int"),
        (dict(seed=-1), "seed must be in"),
        (dict(single_images=[0.7]), "single_images must be an int"),
        (dict(single_images=[True]), "single_images must be an int"),
        (dict(single_images=[N]), "single_images must be in 0..3"),
        (dict(single_images=-1), "single_images must be >= 0"),
        (dict(title=3), "title must be a string"),
        (dict(image_names=[0, 1, 2, 3]), "image_names must be strings"),
        (dict(image_names="abcd"), "image_names must be a list"),
        (dict(route_maps="yes"), "route_maps must be True or False"),
        (dict(sources=3), "sources must be paths"),
        (dict(display="wrong shape"), r"display must be \(4, 64, 64, 3\)"),
        (dict(display="int64"), "display must be uint8 or floating point"),
        (dict(display="nan"), r"display images \[2\] hold NaN"),
        (dict(images="nan"), r"images \[1\] hold NaN or inf"),
    ],
)
def test_bad_arguments_write_nothing(model, images, tmp_path, change, match):
    out = tmp_path / "s"
    kw = dict(change)
    x = images
    if kw.get("images") == "nan":
        x = images.copy()
        x[1, 5, 5, 0] = np.nan
        del kw["images"]
    if isinstance(kw.get("display"), str):
        how = kw["display"]
        kw["display"] = (
            np.zeros((N, 32, 32, 3), np.uint8) if how == "wrong shape"
            else np.zeros((N, 64, 64, 3), np.int64) if how == "int64"
            else np.where(np.arange(N)[:, None, None, None] == 2, np.nan, 0.5) * np.ones(x.shape)
        )  # fmt: skip
    with pytest.raises(StudyError, match=match):  # on main: written first, or silently coerced
        study(out, model, x, **kw)
    assert not out.exists()


def test_the_corrected_call_works_after_refusals(model, images, tmp_path):
    out = tmp_path / "s"
    for bad in (dict(save_every=0), dict(seed=1.5), dict(single_images=[0.7])):
        with pytest.raises(StudyError):
            study(out, model, images, **bad)
    assert study(out, model, images, save_every=1, single_images=[np.int64(1)]).count == N


def test_an_unfinished_first_run_that_averaged_nothing_may_be_replanned(
    model, images, tmp_path, monkeypatch
):
    import jaxmamba.study.phases as S

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    out = tmp_path / "s"
    with monkeypatch.context() as m:
        m.setattr(S, "attention_mean", broken)
        with pytest.raises(RuntimeError):
            study(out, model, images[::-1], methods=["pca"])
    assert json.loads((out / "study.json").read_text())["done"] == {}
    assert not (out / LOCK).exists()  # released after an exception
    s = study(out, model, images)  # other images now: on main "holds a study with other images"
    fresh = study(tmp_path / "fresh", model, images)
    assert s.count == N and s.meta["images_digest"] == fresh.meta["images_digest"]
    for i in range(N):  # the thumbnails are of the new images
        assert s.image_png(i) == fresh.image_png(i)
    np.testing.assert_array_equal(s.map("cross", "layers.3.blocks.0"),
                                  fresh.map("cross", "layers.3.blocks.0"))  # fmt: skip


def test_a_study_with_results_is_never_replanned(model, images, tmp_path):
    out = tmp_path / "s"
    s = study(out, model, images)
    meta = dict(s.meta, complete=False)  # unfinished, but its means are done
    (out / "study.json").write_text(json.dumps(meta))
    with pytest.raises(StudyError, match="other images"):
        study(out, model, images[::-1])
    assert (out / "means" / "cross").is_dir()


# ---- 7. one writer at a time -------------------------------------------------------------------


def write_lock(folder: Path, pid: int, host: str | None = None) -> None:
    record = {"pid": pid, "host": host or socket.gethostname(), "since": "2024-01-01 00:00:00"}
    (folder / LOCK).write_text(json.dumps(record))


def test_a_live_writer_refuses_a_second_by_name(model, images, tmp_path, live_pid):
    out = tmp_path / "s"
    study(out, model, images)
    before = (out / "study.json").read_text()
    write_lock(out, live_pid)
    with pytest.raises(StudyError, match=f"is being written by process {live_pid} .*--out"):
        study(out, model, images)  # on main: written by both at once
    assert (out / "study.json").read_text() == before
    assert json.loads((out / LOCK).read_text())["pid"] == live_pid  # left to it
    assert Study(out).count == N  # the lock does not stop readers


def test_a_lock_of_another_host_is_never_taken_over(model, images, tmp_path, dead_pid):
    out = tmp_path / "s"
    out.mkdir()
    write_lock(out, dead_pid, host="elsewhere")
    with pytest.raises(StudyError, match=f"process {dead_pid} on elsewhere"):
        study(out, model, images)


def test_a_dead_writers_lock_is_taken_over_and_released(model, images, tmp_path, dead_pid):
    out = tmp_path / "s"
    out.mkdir()
    write_lock(out, dead_pid)
    assert study(out, model, images).count == N
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_the_lock_is_released_after_ctrl_c(model, images, tmp_path, monkeypatch):
    import jaxmamba.study.phases as S

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(S, "attention_mean", interrupted)
    with pytest.raises(KeyboardInterrupt):
        study(tmp_path / "s", model, images)
    assert not (tmp_path / "s" / LOCK).exists()


# ---- 12. a resumed mean checks its images ------------------------------------------------------


@pytest.fixture
def saved_mean(model, images, tmp_path):
    out = tmp_path / "mean"
    batches = [images[:2], images[2:]]
    mean = attention_mean(model, batches, blocks=BLOCKS, out_dir=out, save_every=1, progress=False)
    return out, mean


def test_a_resume_on_other_images_is_refused(model, images, saved_mean):
    out, _ = saved_mean
    before = sorted(p.name for p in (out / "state").iterdir())
    other = images.copy()
    other[3] += 1.0  # one image differs
    with pytest.raises(AggregateError, match="was started on other images: the first 4 images"):
        attention_mean(model, [other], blocks=BLOCKS, out_dir=out, progress=False)  # main: mixed
    with pytest.raises(AggregateError, match="consumed 4 images, this stream ends after 2"):
        attention_mean(model, [images[:2]], blocks=BLOCKS, out_dir=out, progress=False)
    assert sorted(p.name for p in (out / "state").iterdir()) == before


def test_a_resume_on_the_same_images_in_other_batches_and_more(model, images, saved_mean):
    out, mean = saved_mean
    again = attention_mean(model, [images[:1], images[1:]], blocks=BLOCKS, out_dir=out,
                           progress=False)  # fmt: skip
    assert again.count == N
    np.testing.assert_array_equal(again[again.blocks[0].name], mean[mean.blocks[0].name])
    more = attention_mean(model, [images, images[:1]], blocks=BLOCKS, out_dir=out,
                          progress=False)  # fmt: skip
    assert more.count == N + 1


def test_a_state_of_an_older_jaxmamba_is_resumed_with_a_warning(model, images, saved_mean):
    out, mean = saved_mean
    steps = store.StepStore(out / "state")
    step = steps.latest_step()
    trees, files = steps.restore(step, ["sums"], ["meta.json"])
    meta = json.loads(files["meta.json"])
    del meta["images_digests"]  # as saved by earlier versions
    store.write(out / "state" / str(step), trees, {"meta.json": json.dumps(meta)}, overwrite=True)
    with pytest.warns(UserWarning, match="cannot be checked"):
        again = attention_mean(model, [images], blocks=BLOCKS, out_dir=out, progress=False)
    assert again.count == N


# ---- 13. a full disk is one named error ---------------------------------------------------------


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "study.json"

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(CheckpointError) as raised:
        store.write_text_atomic(target, "{}")
    message = str(raised.value)
    assert message.startswith(f"could not write {target}: the disk is full")
    assert "\n" not in message
    assert [p.name for p in target.parent.iterdir()] == []  # no temporary left


def test_no_warning_from_a_fresh_resume(model, images, saved_mean):
    out, _ = saved_mean
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attention_mean(model, [images], blocks=BLOCKS, out_dir=out, progress=False)


def test_a_pid_no_process_can_have_is_a_dead_writer(model, images, tmp_path):
    """A temporary or lock naming a pid beyond the C range (tampered, or another system's)."""
    out = tmp_path / "s"
    out.mkdir()
    (out / ".study.json.tmp-99999999999-0123456789ab").write_text("")
    (out / store.LOCK_FILE).write_text(json.dumps({"pid": 10**30, "host": socket.gethostname()}))
    write_study(out, model, images[:2], blocks=[3], single_images=0, progress=False)  # main:
    assert not (out / store.LOCK_FILE).exists()  # OverflowError from os.kill
    assert not (out / ".study.json.tmp-99999999999-0123456789ab").exists()


def test_repeated_methods_are_refused_before_writing(model, images, tmp_path):
    with pytest.raises(StudyError, match="distinct"):  # main: a study nothing could open
        write_study(tmp_path / "s", model, images[:2], blocks=[3], methods=["pca", "pca"],
                    progress=False)  # fmt: skip
    assert not (tmp_path / "s").exists()
