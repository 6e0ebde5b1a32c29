"""Values of a study that parse but cannot be shown or written out again (a number beyond
float range, a lone surrogate, findings of another shape, a grid no image gives), block
parameters whose header claims a huge array, and answers that cannot be sent: each is refused
as one StudyError naming the field or file, or answered, never a crash or a silent page."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import set_field
from numpy.lib import format as npy_format

import jaxmamba
from jaxmamba.cli import main
from jaxmamba.errors import StudyError
from jaxmamba.study import Study, write_study, write_synthetic_study

B2 = "layers.2.blocks.0"  # 4 x 4 at 64 x 64 (L = 16)
B3 = "layers.3.blocks.0"  # 2 x 2


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "s"
    write_synthetic_study(path, "vmamba_test", 64, orders=["cross"], n_images=2)
    return path


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The tiny model's study of two blocks of stage 2: findings, single images, parameters."""
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("real") / "s"
    write_study(path, jaxmamba.create_model("vmamba_test"), x, blocks=[2], single_images=2,
                progress=False)  # fmt: skip
    return path


def copy(study: Path, tmp_path: Path) -> Path:
    out = tmp_path / "c" / "s"
    shutil.copytree(study, out)
    return out


def edit(path: Path, change, raw: str | None = None) -> None:
    """Rewrite ``path/study.json`` after ``change(meta)``; the string ``"RAW"`` is then written
    as the JSON text ``raw`` (a number json.dumps would not write, e.g. ``1e400``)."""
    meta = json.loads((path / "study.json").read_text())
    change(meta)
    text = json.dumps(meta)  # ensure_ascii: a lone surrogate is written as \\ud800
    (path / "study.json").write_text(text if raw is None else text.replace('"RAW"', raw))


def refused(path: Path, match: str) -> str:
    with pytest.raises(StudyError, match=match) as e:
        Study(path)
    text = str(e.value)
    assert "\n" not in text and str(path / "study.json") in text
    text.encode("utf-8")  # the message itself can be printed
    return text


# ---- 1. numbers and text that cannot be written out: refused at open, naming the field ----------


def _put(*keys_value):
    """:func:`conftest.set_field` of the keys, the last argument the value."""
    *keys, value = keys_value
    return set_field(tuple(keys), value)


@pytest.mark.parametrize(
    "change, raw, match",
    [
        (_put("findings", "cross", "blocks", B2, "attention_distance", "RAW"), "1e400",
         r"findings\.cross\.blocks\['layers\.2\.blocks\.0'\]\.attention_distance is not a "
         r"finite number \(inf\)"),
        (_put("findings", "cross", "stages", "2", "block_distinctness", "RAW"), "-1e999",
         r"findings\.cross\.stages\['2'\]\.block_distinctness is not a finite number \(-inf\)"),
        (_put("extra", [1, {"x": "RAW"}]), "1E+400", r"extra\[1\]\.x is not a finite number"),
        (_put("title", "\ud800x"), None, r"title is not UTF-8 text .*'\\ud800x'"),
        (_put("images", 1, "name", "a\udfffb"), None, r"images\[1\]\.name is not UTF-8 text"),
        (_put("findings", "cross", "blocks", B2, "x\ud800", 1.0), None,
         r"findings\.cross\.blocks\['layers\.2\.blocks\.0'\] has a key that is not UTF-8 text"),
    ],
)  # fmt: skip
def test_values_that_cannot_be_written_out_are_refused_at_open(real, tmp_path, change, raw, match):
    s = copy(real, tmp_path)
    edit(s, change, raw)
    refused(s, match)


@pytest.mark.parametrize("field", ["description", "source"])
def test_a_lone_surrogate_in_a_model_entry_is_refused(real, tmp_path, field):
    s = copy(real, tmp_path)
    edit(s, lambda m: m["models"][next(iter(m["models"]))].update({field: "\udc80"}))
    refused(s, rf"models\['[0-9a-f]{{16}}'\]\.{field} is not UTF-8 text")


def test_the_export_command_says_error_not_a_traceback(real, tmp_path, capsys):
    s = copy(real, tmp_path)
    edit(s, _put("findings", "cross", "blocks", B2, "attention_distance", "RAW"), "1e400")
    assert main(["export", str(s), "--out", str(tmp_path / "e.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "attention_distance is not a finite number" in err
    assert not (tmp_path / "e.html").exists()


# ---- findings: the shape the page draws, of the study's own orders, blocks and stages -----------


@pytest.mark.parametrize(
    "findings, match",
    [
        ({"cross": {}}, r"findings\['cross'\]\.blocks must be an object .*; it is missing"),
        ({"cross": {"blocks": {}}}, r"findings\['cross'\]\.stages must be an object"),
        ({"cross": {"blocks": [], "stages": {}}}, r"findings\['cross'\]\.blocks must be"),
        ({"cross": {"blocks": {B3: {}}, "stages": {}}},
         r"findings\['cross'\]\.blocks must be keyed by the study's blocks .*'layers\.3"),
        ({"cross": {"blocks": {}, "stages": {"7": {}}}},
         r"findings\['cross'\]\.stages must be keyed by the study's stages \['2'\]; got '7'"),
        ({"cross": {"blocks": {B2: None}, "stages": {}}},
         r"findings\['cross'\]\.blocks\['layers\.2\.blocks\.0'\] must be an object"),
        ({"cross": {"blocks": {B2: {"attention_distance": "0.5"}}, "stages": {}}},
         r"\.blocks\['layers\.2\.blocks\.0'\]\.attention_distance must be a finite number or "
         r"null; got '0\.5'"),
        ({"cross": {"blocks": {}, "stages": {"2": {"sequence_locality": True}}}},
         r"\.stages\['2'\]\.sequence_locality must be a finite number or null; got True"),
        ({"cross": {"blocks": {}, "stages": {"2": {"x": 10**400}}}},
         r"\.stages\['2'\]\.x must be a finite number or null"),
    ],
)  # fmt: skip
def test_findings_of_another_shape_are_refused(real, tmp_path, findings, match):
    s = copy(real, tmp_path)
    edit(s, _put("findings", findings))
    refused(s, match)


def test_findings_as_written_and_partial_findings_open(real, tmp_path):
    study = Study(real)
    assert set(study.findings["cross"]) == {"blocks", "stages"}
    s = copy(real, tmp_path)
    edit(s, _put("findings", {"cross": {"blocks": {B2: {"attention_distance": None}},
                                        "stages": {}}}))  # fmt: skip
    assert Study(s).findings["cross"]["blocks"][B2] == {"attention_distance": None}


# ---- grids: the grid of the block's stage for the study's image size ----------------------------


@pytest.mark.parametrize(
    "grid, block",
    [([1, 4], 4),  # layers.3.blocks.0: as many patches as [2, 2], routes of another grid
     ([16, 16], 1),  # layers.1.blocks.0 as large as stage 0
     ([2, 4], 4)],  # square images, an oblong grid
)  # fmt: skip
def test_a_grid_no_image_of_the_study_gives_is_refused(synthetic, tmp_path, grid, block):
    s = copy(synthetic, tmp_path)
    assert Study(s).blocks[block].stage == {4: 3, 1: 1}[block]
    edit(s, lambda m: m["blocks"][block].update(grid=grid))
    text = refused(s, rf"blocks\[{block}\]\.grid must be the grid of stage")
    assert f"got {grid}" in text


def test_grids_of_real_and_synthetic_studies_open(synthetic, real, tmp_path):
    assert [b.grid for b in Study(synthetic).blocks][-1] == (2, 2)
    assert {b.grid for b in Study(real).blocks} == {(4, 4)}
    s = copy(synthetic, tmp_path)  # 96 x 64 images, VMamba's grids for them
    edit(
        s,
        lambda m: (
            m.update(image_size=[96, 64]),
            [b.update(grid=[24 >> b["stage"], 16 >> b["stage"]]) for b in m["blocks"]],
        ),
    )
    assert Study(s).blocks[0].grid == (24, 16)


# ---- 2. block parameters: headers checked before anything is allocated --------------------------


def _member(header: dict, data: bytes) -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def _replace_member(path: Path, name: str, content: bytes) -> None:
    """Rewrite the .npz ``path`` with its member ``name`` replaced by ``content``."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members[name] = content
    with zipfile.ZipFile(path, "w") as z:
        for n, c in members.items():
            z.writestr(n, c)


HUGE = {"descr": "<f4", "fortran_order": False, "shape": (100_000_000_000,)}


@pytest.mark.parametrize(
    "content, match",
    [
        (_member(HUGE, bytes(64)), r"Ds\.npy has shape \(100000000000,\)"),
        (_member({**HUGE, "shape": (10**6, 10**6)}, bytes(64)), r"Ds\.npy has shape"),
        (_member({**HUGE, "descr": "<f8", "shape": (32,)}, bytes(256)), r"Ds\.npy.* holds float64"),
        (b"not a npy file at all", r"Ds\.npy\) is not a \.npy file"),
    ],
    ids=["huge", "huge-2d", "float64", "not-npy"],
)  # fmt: skip
def test_a_member_whose_header_claims_a_huge_or_other_array_is_refused_unread(
    real, tmp_path, content, match
):
    s = copy(real, tmp_path)
    (path,) = (s / "ops").glob(f"*/{B2}.npz")
    _replace_member(path, "Ds.npy", content)
    with pytest.raises(StudyError, match=match) as e:
        Study(s).heat("cross", B2, [0], subject=0)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("change", [lambda d: d + bytes(4), lambda d: d[:-4]])
def test_a_member_of_another_size_than_its_header_says_is_refused(real, tmp_path, change):
    s = copy(real, tmp_path)
    (path,) = (s / "ops").glob(f"*/{B2}.npz")
    with zipfile.ZipFile(path) as z:
        ds = z.read("Ds.npy")
    _replace_member(path, "Ds.npy", change(ds))
    with pytest.raises(
        StudyError,
        match=rf"{path.name} is damaged: Ds\.npy is {len(ds) + (4 if len(change(ds)) > len(ds) else -4)} bytes",  # noqa: E501
    ):
        Study(s).single_map("cross", B2, 0)


def test_a_compressed_npz_is_read_and_gives_the_same_map(real, tmp_path):
    s = copy(real, tmp_path)
    (path,) = (s / "ops").glob(f"*/{B2}.npz")
    with np.load(path) as f:
        op = dict(f)
    np.savez_compressed(path, **op)
    np.testing.assert_array_equal(Study(s).single_map("cross", B2, 1),
                                  Study(real).single_map("cross", B2, 1))  # fmt: skip


def test_the_server_answers_a_huge_member_with_a_400(real, tmp_path):
    from starlette.testclient import TestClient

    from jaxmamba.views.server import app

    s = copy(real, tmp_path)
    (path,) = (s / "ops").glob(f"*/{B2}.npz")
    _replace_member(path, "Ds.npy", _member(HUGE, bytes(64)))
    client = TestClient(app(s), base_url="http://127.0.0.1", raise_server_exceptions=False)
    for url in (f"/api/heat?order=cross&block={B2}&patches=0&subject=0",
                f"/api/coords?order=cross&block={B2}&method=pca&subject=0"):  # fmt: skip
        r = client.get(url)
        assert r.status_code == 400 and "Ds.npy has shape (100000000000,)" in r.json()["error"]


# ---- the server: every route answers a one-line error, the page itself too -----------------------


def test_the_page_route_answers_a_one_line_error_not_a_bare_500(synthetic):
    from starlette.testclient import TestClient

    from jaxmamba.views.server import app

    study = Study(synthetic)  # past the open-time check: what if building the page fails
    study.info = dataclasses.replace(study.info, title="\ud800x")
    client = TestClient(app(study), base_url="http://127.0.0.1", raise_server_exceptions=False)
    r = client.get("/")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error.startswith("internal error: UnicodeEncodeError") and "\n" not in error
    assert "no-store" in r.headers["cache-control"]
    assert client.get("/app.js").status_code == 200


# ---- 3. the widget: an answer that cannot be sent is replaced by an error answer ----------------


@pytest.fixture
def widget(synthetic):
    pytest.importorskip("anywidget")
    from jaxmamba.views.widget import show

    return show(Study(synthetic))


def test_an_answer_the_kernel_refuses_becomes_an_error_answer(widget):
    sent = []

    def send(content, buffers=None):
        if not sent:
            sent.append(None)
            raise ValueError("Out of range float values are not JSON compliant")
        sent.append((content, buffers))

    widget.send = send
    widget.answer({"kind": "jm-request", "id": 5, "method": "meta", "args": {}})
    assert sent[1] == ({"kind": "jm-answer", "id": 5, "error": "internal error: could not send "
                        "the answer: ValueError: Out of range float values are not JSON "
                        "compliant"}, None)  # fmt: skip


@pytest.mark.parametrize("request_", [
    {"kind": "jm-request", "id": 6, "method": "meta", "args": {}},
    {"kind": "jm-request", "id": 7, "method": "nothing", "args": {}},
])  # fmt: skip
def test_an_answer_that_cannot_be_sent_at_all_is_logged_not_raised(widget, caplog, request_):
    calls = []

    def send(content, buffers=None):
        calls.append(content)
        raise TypeError("the kernel is gone")

    widget.send = send
    with caplog.at_level(logging.ERROR, logger="jaxmamba.views.widget"):
        widget.answer(request_)  # the message handler never raises
    assert len(calls) == 2 and calls[1]["id"] == request_["id"] and "error" in calls[1]
    assert f"could not send an answer to request {request_['id']}" in caplog.text


# ---- a single image's input whose header claims huge channels: refused before it is read -------


@pytest.mark.parametrize("channels", [2**36, 2**15])
def test_a_huge_single_input_header_is_refused_before_reading(real, tmp_path, channels):
    s = copy(real, tmp_path)
    path = s / "single" / "cross" / "layers.2.blocks.0.npy"
    with open(path, "wb") as f:  # a sparse file as long as its header says
        npy_format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (2, channels, 16)}
        )
        f.truncate(f.tell() + 4 * 2 * channels * 16)
    study = Study(s)
    with pytest.raises(StudyError, match="channels"):  # main: MemoryError (1 TiB) or 2 GB read
        study.heat("cross", "layers.2.blocks.0", [0], subject=0)
    from starlette.testclient import TestClient

    from jaxmamba.views.server import app

    r = TestClient(app(study), base_url="http://127.0.0.1").post(
        "/api/heat", json={"order": "cross", "block": "layers.2.blocks.0", "patches": [0],
                           "subject": 0})  # fmt: skip
    assert r.status_code == 400 and "channels" in r.json()["error"]


def test_export_keeps_images_that_share_a_name(real, tmp_path):
    """Two folders each holding a.png: the study keeps both, and so does the exported page."""
    from jaxmamba.views.export import export, read_explorer

    s = copy(real, tmp_path)
    edit(s, lambda m: m["images"].__setitem__(slice(None), [{"name": "a.png"}] * 2))
    page = export(s, tmp_path / "e.html")
    images = read_explorer(page)["images"]
    assert [im["name"] for im in images] == ["a.png", "a.png"]  # main: one, the second
