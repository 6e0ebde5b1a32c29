"""A study folder is untrusted input: names from study.json never become paths outside it, no
symbolic link is followed, damaged files and fields are one StudyError, never a crash."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import jaxmamba
from jaxmamba.errors import StudyError
from jaxmamba.study import Study, write_study, write_synthetic_study

B0 = "layers.0.blocks.0"  # 16 x 16 at 64 x 64 (L = 256)
B2 = "layers.2.blocks.0"  # 4 x 4 (L = 16), stage 2 has two blocks
ROOT = Path(__file__).resolve().parents[1]  # the subprocess imports this checkout's jaxmamba


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A planted study (means, embeddings, images), written in a second."""
    path = tmp_path_factory.mktemp("synthetic") / "s"
    write_synthetic_study(path, "vmamba_test", 64, orders=["cross"], n_images=2)
    return path


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A study of the tiny model with route maps, single images and stage embeddings."""
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("real") / "s"
    write_study(path, jaxmamba.create_model("vmamba_test"), x, blocks=[2], route_maps=True,
                single_images=2, progress=False)  # fmt: skip
    return path


def copy(study: Path, tmp_path: Path) -> Path:
    """A private copy of a study (a test may damage it); ``tmp_path/"c"/"s"``."""
    out = tmp_path / "c" / "s"
    shutil.copytree(study, out)
    return out


def edit(path: Path, change) -> None:
    """Rewrite ``path/study.json`` after ``change(meta)``."""
    meta = json.loads((path / "study.json").read_text())
    change(meta)
    (path / "study.json").write_text(json.dumps(meta))


def plant(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)


# ---- names from study.json never leave the folder ------------------------------------------------


@pytest.mark.parametrize("name", ["../../outside", "ABS"])
def test_an_order_named_as_a_path_is_refused_at_open(synthetic, tmp_path, name):
    s = copy(synthetic, tmp_path)
    outside = tmp_path / "abs" if name == "ABS" else s.parent / "outside"  # means/../../outside
    name = str(outside) if name == "ABS" else name
    plant(outside / f"{B0}.npy", np.full((256, 256), 7.0, np.float32))  # what must never be read
    edit(s, lambda m: m["orders"][0].update(name=name))
    assert (s / "means" / name / f"{B0}.npy").resolve() == (outside / f"{B0}.npy").resolve()
    with pytest.raises(StudyError, match=r"orders\[0\]\.name must be a distinct order name"):
        Study(s)


def test_a_block_named_as_a_path_is_refused_at_open(synthetic, tmp_path):
    s = copy(synthetic, tmp_path)
    edit(s, lambda m: m["blocks"][0].update(name="../x"))
    with pytest.raises(StudyError, match=r"blocks\[0\]\.name must be a distinct block name"):
        Study(s)


def test_a_model_digest_that_is_a_path_is_refused_at_open(real, tmp_path):
    s = copy(real, tmp_path)

    def change(meta):
        digest = meta["orders"][0]["model"]
        meta["models"]["../../x"] = meta["models"].pop(digest)
        meta["models"]["../../x"]["params_digest"] = "../../x"
        meta["orders"][0]["model"] = "../../x"

    edit(s, change)
    with pytest.raises(StudyError, match="models must be keyed by parameter digests"):
        Study(s)


# ---- no symbolic link is followed ----------------------------------------------------------------


def _swap_for_link(target: Path, outside: Path) -> None:
    """Replace ``target`` by a symbolic link to ``outside`` (a copy of it, planted elsewhere)."""
    if target.is_dir():
        shutil.copytree(target, outside)
        shutil.rmtree(target)
    else:
        outside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, outside)
        target.unlink()
    target.symlink_to(outside)


@pytest.mark.parametrize(
    "where, read",
    [
        ("images/0.png", lambda s: s.image_png(0)),
        (f"means/cross/{B0}.npy", lambda s: s.heat("cross", B0, [0])),
        (f"means/cross/{B0}.npy", lambda s: s.map("cross", B0)),
        ("means", lambda s: s.heat("cross", B0, [0])),
        ("means/cross", lambda s: s.heat("cross", B0, [0], "source")),
        (f"embeddings/cross/{B0}.pca.npy", lambda s: s.coords("cross", B0, "pca")),
    ],
)
def test_a_symbolic_link_inside_the_study_is_refused_by_name(synthetic, tmp_path, where, read):
    s = copy(synthetic, tmp_path)
    _swap_for_link(s / where, tmp_path / "elsewhere" / Path(where).name)
    study = Study(s)
    with pytest.raises(StudyError, match=re.escape(f"{s / where} is a symbolic link")):
        read(study)


@pytest.mark.parametrize(
    "where, read",
    [
        (f"single/cross/{B2}.npy", lambda s: s.heat("cross", B2, [0], subject=1)),
        ("ops", lambda s: s.single_map("cross", B2, 0)),
        (f"routes/cross/{B2}.npy", lambda s: s.heat("cross", B2, [0], route=1)),
        ("joint/cross/stage2.pca.npy", lambda s: s.stage_points("joint", "cross", 2, "pca")),
    ],
)
def test_links_to_single_ops_routes_and_points_are_refused(real, tmp_path, where, read):
    s = copy(real, tmp_path)
    _swap_for_link(s / where, tmp_path / "elsewhere" / Path(where).name)
    with pytest.raises(StudyError, match="is a symbolic link"):
        read(Study(s))


# ---- damaged arrays: a named StudyError when read ------------------------------------------------


def _float64(shape):
    return np.zeros(shape, np.float64).tobytes()


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "is not a .npy file"),
        (b"\x93NUMPY\x01\x00garbage garbage", "is not a .npy file"),
        (b"not a numpy file at all", "is not a .npy file"),
        ("float64", "holds float64"),
        ("big-endian", "not little-endian float32"),
        ("fortran", "Fortran order"),
        ("short", "shorter than its header says"),
    ],
)
@pytest.mark.parametrize("what", ["heat", "coords"])
def test_a_damaged_npy_is_a_study_error(synthetic, tmp_path, content, match, what):
    s = copy(synthetic, tmp_path)
    study = Study(s)
    path = s / ("means" if what == "heat" else "embeddings") / "cross" / (
        f"{B0}.npy" if what == "heat" else f"{B0}.pca.npy")  # fmt: skip
    shape = (256, 256) if what == "heat" else (256, 2)
    if content == "float64":
        np.save(path, np.zeros(shape))
    elif content == "big-endian":
        np.save(path, np.zeros(shape, ">f4"))
    elif content == "fortran":
        np.save(path, np.asfortranarray(np.zeros(shape, np.float32)))
    elif content == "short":
        np.save(path, np.zeros(shape, np.float32))
        os.truncate(path, path.stat().st_size - 8)
    else:
        path.write_bytes(content)
    with pytest.raises(StudyError, match=f"{re.escape(str(path))}.*{match}"):
        study.heat("cross", B0, [1, 2]) if what == "heat" else study.coords("cross", B0, "pca")


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((256, 3), np.float32), r"holds shape \(256, 3\), not \(256, 2\)"),
        (np.full((256, 2), np.nan, np.float32), "NaN or infinite"),
        (np.full((256, 2), np.inf, np.float32), "NaN or infinite"),
    ],
)
def test_coordinates_must_be_finite_and_l_by_2(synthetic, tmp_path, array, match):
    s = copy(synthetic, tmp_path)
    np.save(s / "embeddings" / "cross" / f"{B0}.pca.npy", array)
    with pytest.raises(StudyError, match=match):
        Study(s).coords("cross", B0, "pca")


def test_non_finite_maps_and_points_are_refused(real, tmp_path):
    s = copy(real, tmp_path)
    m = np.load(s / "means" / "cross" / f"{B2}.npy")
    m[3, 5] = np.inf
    np.save(s / "means" / "cross" / f"{B2}.npy", m)
    np.save(s / "joint" / "cross" / "stage2.pca.npy", np.full((32, 2), np.nan, np.float32))
    study = Study(s)
    for read in (lambda: study.heat("cross", B2, [3]), lambda: study.map("cross", B2),
                 lambda: study.heat("cross", B2, [5], "source"),
                 lambda: study.stage_points("joint", "cross", 2, "pca")):  # fmt: skip
        with pytest.raises(StudyError, match="NaN or infinite"):
            read()
    assert np.isfinite(study.heat("cross", B2, [0, 1])).all()  # rows without the inf


def test_the_points_of_a_stage_must_have_its_shape(real, tmp_path):
    s = copy(real, tmp_path)
    np.save(s / "interblock" / "cross" / "stage2.pca.npy", np.zeros((5, 2), np.float32))
    with pytest.raises(StudyError, match=r"holds shape \(5, 2\), not \(4, 2\)"):
        Study(s).stage_points("interblock", "cross", 2, "pca")


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: p.write_bytes(b""), "unreadable"),
        (lambda p: p.write_bytes(b"PK\x03\x04 not a zip"), "unreadable"),
        (lambda p: np.savez(p, x_proj_weight=np.zeros(3, np.float32)), "unreadable"),
        (lambda p: np.savez(p, **{k: np.zeros((2, 2), np.float32) for k in (
            "x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds")}),
         "other shapes or types"),
    ],
)  # fmt: skip
def test_damaged_block_parameters_are_a_study_error(real, tmp_path, damage, match):
    s = copy(real, tmp_path)
    (path,) = (s / "ops").glob(f"*/{B2}.npz")
    damage(path)  # np.savez keeps a name that ends in .npz
    with pytest.raises(StudyError, match=match):
        Study(s).single_map("cross", B2, 0)


def test_a_single_input_of_another_shape_is_refused(real, tmp_path):
    s = copy(real, tmp_path)
    np.save(s / "single" / "cross" / f"{B2}.npy", np.zeros((2, 8, 9), np.float32))
    with pytest.raises(StudyError, match=r"holds shape \(2, 8, 9\), not \(2, n, 16\)"):
        Study(s).heat("cross", B2, [0], subject=0)


TRUNCATED = """
import os, sys
import numpy as np
from jaxmamba.errors import StudyError
from jaxmamba.study import Study

study, path = Study(sys.argv[1]), sys.argv[2]
m = study.map("cross", "layers.0.blocks.0")
before = study.heat("cross", "layers.0.blocks.0", [0, 1])
os.truncate(path, os.path.getsize(path) // 2)  # cut short in place while served
print("whole map still readable:", float(np.asarray(m).sum()) != 0.0, flush=True)
for direction in ("query", "source"):
    try:
        study.heat("cross", "layers.0.blocks.0", [255], direction)
    except StudyError as e:
        print("StudyError:", e, flush=True)
fifo = os.path.join(sys.argv[1], "embeddings", "cross", "layers.0.blocks.0.pca.npy")
os.remove(fifo)
os.mkfifo(fifo)  # opening a FIFO to read waits for a writer: never, here
try:
    study.coords("cross", "layers.0.blocks.0", "pca")
except StudyError as e:
    print("StudyError:", e, flush=True)
"""


def test_a_map_cut_short_while_served_is_an_error_not_a_crash(synthetic, tmp_path):
    """A memory map of a file truncated under it dies of SIGBUS: the study reads with ordinary
    reads, so the process lives and names the file; a FIFO is refused, not waited on (run in a
    subprocess, which would die or hang)."""
    s = copy(synthetic, tmp_path)
    path = s / "means" / "cross" / f"{B0}.npy"
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(TRUNCATED), str(s), str(path)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert "whole map still readable: True" in r.stdout
    assert r.stdout.count(f"StudyError: {path} is shorter than its header says") == 2, r.stdout
    assert "layers.0.blocks.0.pca.npy is not a regular file" in r.stdout


def test_a_map_rewritten_in_place_is_read_anew(synthetic, tmp_path):
    s = copy(synthetic, tmp_path)
    study = Study(s)
    path = s / "means" / "cross" / f"{B0}.npy"
    study.heat("cross", B0, [0])
    np.save(path, np.full((256, 256), 2.0, np.float32))
    assert study.heat("cross", B0, [0, 9]).tolist() == [2.0] * 256
    np.save(path, np.zeros((16, 16), np.float32))  # another header, the same file
    with pytest.raises(StudyError, match=r"holds shape \(16, 16\), not \(256, 256\)"):
        study.heat("cross", B0, [0])


@pytest.mark.parametrize("chunk", [4 * 256 * 3, 4 * 256 * 1000])  # 3 rows a read; the whole map
def test_heat_reads_equal_the_whole_map(synthetic, monkeypatch, chunk):
    """Rows are read in runs, columns in blocks of rows: the means are those of the whole map
    (the rows' exactly: summed row after row in float32 like ``m[idx].mean(axis=0)``)."""
    monkeypatch.setattr("jaxmamba.study.npy._CHUNK_BYTES", chunk)
    study = Study(synthetic)
    m = np.load(synthetic / "means" / "cross" / f"{B0}.npy")
    rng = np.random.default_rng(0)
    for sel in ([0], [255], list(range(40, 90)), rng.choice(256, 100, replace=False), range(256)):
        idx = np.unique(np.asarray(list(sel)))
        assert np.array_equal(study.heat("cross", B0, list(sel)), m[idx].mean(axis=0))
        np.testing.assert_allclose(
            study.heat("cross", B0, list(sel), "source"), m[:, idx].mean(axis=1), rtol=1e-6
        )  # summed in another order


# ---- study.json: every field checked when the study is opened ------------------------------------


def _set(*keys_value):
    *keys, value = keys_value

    def change(meta):
        obj = meta
        for k in keys[:-1]:
            obj = obj[k]
        if value is KeyError:
            del obj[keys[-1]]
        else:
            obj[keys[-1]] = value

    return change


@pytest.mark.parametrize(
    "change, match",
    [
        (_set("orders", "cross"), "orders must be a non-empty list"),
        (_set("orders", 0, "name", KeyError), r"orders\[0\]\.name must be .*; it is missing"),
        (_set("orders", 0, "name", "snake"), r"orders\[0\]\.name must be"),
        (_set("orders", 0, "routes", "4"), r"orders\[0\]\.routes must be 4"),
        (_set("orders", 0, "model", "0123456789abcdef"), r"orders\[0\]\.model must be the digest"),
        (_set("blocks", 0, "grid", [0, -1]), r"blocks\[0\]\.grid must be \[h, w\]"),
        (_set("blocks", 0, "grid", [1.5, 16]), r"blocks\[0\]\.grid must be"),
        (_set("blocks", 0, "grid", [4096, 4096]), r"blocks\[0\]\.grid must be"),
        (_set("blocks", 0, "stage", 2), r"blocks\[0\]\.stage must be 0, as its name says"),
        (_set("blocks", 0, "name", "layers.00.blocks.0"), r"blocks\[0\]\.name must be"),
        (_set("blocks", []), "blocks must be a non-empty list"),
        (_set("images", "x.png"), "images must be a non-empty list"),
        (_set("images", 0, {"nom": "x"}), r"images\[0\]\.name must be a string; it is missing"),
        (_set("count", "five"), "count must be a positive integer"),
        (_set("count", True), "count must be a positive integer"),
        (_set("options", "signed", KeyError), "options.signed must be true or false"),
        (_set("options", []), "options must be an object"),
        (_set("methods", ["pca", "magic"]), "methods must be distinct names from"),
        (_set("methods", "pca"), "methods must be distinct names from"),
        (_set("route_maps", "yes"), "route_maps must be true or false"),
        (_set("seed", KeyError), "seed must be an integer; it is missing"),
        (_set("single_images", [9]), "single_images must be distinct image indices 0..1"),
        (_set("image_size", [64]), r"image_size must be \[height, width\]"),
        (_set("models", "synthetic", "description", KeyError), "description must be a string"),
        (_set("synthetic", False), "models must be keyed by parameter digests"),
        (_set("findings", ["x"]), "findings must be an object"),
        (_set("version", True), "format version True"),
        (_set("title", ["x"]), "title must be a string"),
    ],
)
def test_a_tampered_study_json_is_refused_at_open_naming_the_field(synthetic, tmp_path, change,
                                                                    match):  # fmt: skip
    s = copy(synthetic, tmp_path)
    edit(s, change)
    with pytest.raises(StudyError, match=match) as e:
        Study(s)
    assert "\n" not in str(e.value) and (str(s / "study.json") in str(e.value)
                                         or "version" in str(e.value))  # fmt: skip


def test_the_synthetic_and_real_studies_still_open(synthetic, real):
    assert Study(synthetic).meta["synthetic"] and Study(real).single_images == [0, 1]


# ---- no silent coercion of indices ---------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.heat("cross", B2, [1.9]),
        lambda s: s.heat("cross", B2, [True]),
        lambda s: s.heat("cross", B2, [1, True]),
        lambda s: s.heat("cross", B2, np.array([1.0, 2.0])),
        lambda s: s.heat("cross", B2, "1"),
        lambda s: s.heat("cross", B2, [0], subject=0.5),
        lambda s: s.heat("cross", B2, [0], subject=True),
        lambda s: s.single_map("cross", B2, 1.0),
        lambda s: s.single_coords("cross", B2, True),
        lambda s: s.heat("cross", B2, [0], route=1.5),
        lambda s: s.map("cross", B2, route=True),
        lambda s: s.stage_points("joint", "cross", 2.7, "pca"),
        lambda s: s.stage_points("joint", "cross", True, "pca"),
        lambda s: s.image_png(True),
        lambda s: s.image_png(1.5),
        lambda s: s.heat(["cross"], B2, [0]),
        lambda s: s.heat("cross", [B2], [0]),
        lambda s: s.coords("cross", B2, ["pca"]),
    ],
)
def test_non_integer_indices_are_refused(real, call):
    with pytest.raises(StudyError):
        call(Study(real))


def test_integer_valued_numpy_indices_are_accepted(real):
    study = Study(real)
    a = study.heat("cross", B2, np.array([1, 2], np.int32), route=np.int64(1),
                   subject=np.int16(1))  # fmt: skip
    b = study.heat("cross", B2, [1, 2], route=1, subject=1)
    assert np.array_equal(a, b)
    assert study.image_png(np.int64(1))[:4] == b"\x89PNG"
    assert study.stage_points("joint", "cross", np.int64(2), "pca").shape == (32, 2)
