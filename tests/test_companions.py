"""Companion studies: another model's study of the same images, recorded beside a study and
answered by the same view protocol (a Vim study beside a VMamba one)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import jaxmamba
from jaxmamba.cli import main
from jaxmamba.errors import StudyError
from jaxmamba.study import Study, add_companions, write_study
from jaxmamba.study.reader import map_selection
from jaxmamba.views.protocol import ViewAPI


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A VMamba study of three images with the Vim study of the same images as its companion
    ``vim``, and a Vim study of other images (``other``)."""
    root = tmp_path_factory.mktemp("pair")
    x = np.random.default_rng(0).standard_normal((3, 64, 64, 3)).astype(np.float32)
    main_ = write_study(root / "s", jaxmamba.create_model("vmamba_test"), x, blocks=[2, 3],
                        single_images=1, progress=False)  # fmt: skip
    vim = jaxmamba.create_model("vim_test")
    write_study(root / "s" / "vim", vim, x, orders=["spiral"], single_images=0, progress=False)
    write_study(root / "other", vim, x[::-1], orders=["spiral"], blocks=[0], single_images=0,
                progress=False)  # fmt: skip
    return add_companions(main_.path, ["vim"]), root


def test_a_companion_is_recorded_and_opened(pair):
    study, root = pair
    assert json.loads((study.path / "study.json").read_text())["companions"] == ["vim"]
    assert study.info.companions == ("vim",)
    (vim,) = study.companions()
    assert vim.path == study.path / "vim" and vim.blocks[0].cls == 16
    assert study.same_images(vim) and not study.same_images(Study(root / "other"))
    assert add_companions(study.path, "vim").info.companions == ("vim",)  # recorded once


def test_the_protocol_answers_for_each_study(pair):
    study, _ = pair
    api = ViewAPI(study)
    meta = api.meta()
    (c,) = meta["companions"]
    assert (c["index"], c["folder"], c["same_images"]) == (1, "vim", True)
    assert [o["name"] for o in c["orders"]] == ["spiral"]
    assert [b["cls"] for b in c["blocks"]] == [16, 16] and meta["companion_errors"] == []
    assert [o["name"] for o in meta["orders"]] == ["cross"]
    vim = study.companion("vim")
    args = {"order": "spiral", "block": "layers.1", "patches": [16, 2], "study": 1}
    content, payload = api.handle("heat", args)
    np.testing.assert_array_equal(np.frombuffer(payload, "<f4"),
                                  vim.heat("spiral", "layers.1", [2, 16]))  # fmt: skip
    _, payload = api.handle("heat", {**args, "study": "0", "order": "cross",
                                     "block": "layers.2.blocks.0", "patches": [3]})  # fmt: skip
    np.testing.assert_array_equal(np.frombuffer(payload, "<f4"),
                                  study.heat("cross", "layers.2.blocks.0", [3]))  # fmt: skip
    content, _ = api.handle("matrix", {"order": "spiral", "block": "layers.0", "study": 1})
    assert content["L"] == 17
    content, payload = api.handle("image", {"index": 2, "study": 1})
    assert payload == study.image_png(2)
    with pytest.raises(StudyError, match=r"study must be 0\.\.1"):
        api.handle("heat", {**args, "study": 2})
    with pytest.raises(StudyError, match="study must be an integer"):
        api.handle("heat", {**args, "study": True})
    with pytest.raises(StudyError, match="no order 'spiral'"):  # the study's own orders only
        api.handle("heat", {**args, "study": 0, "order": "spiral"})


def test_a_selection_moves_between_the_families_by_image_area(pair):
    study, _ = pair
    vim = study.companion("vim")
    a, b = study.block("layers.2.blocks.0"), vim.block("layers.0")  # 4x4 and 4x4 + class token
    assert map_selection([16, 5], b, a) == [5]
    assert map_selection([5], a, b) == [5]


def test_a_single_study_has_no_companions_in_its_meta(pair):
    _, root = pair
    meta = ViewAPI(Study(root / "other")).meta()
    assert "companions" not in meta and "companion_errors" not in meta


def test_a_broken_companion_is_said_not_fatal(pair, tmp_path):
    study, _ = pair
    copy = tmp_path / "s"
    shutil.copytree(study.path, copy)
    (copy / "vim" / "study.json").write_text("{")
    api = ViewAPI(Study(copy))  # the study still opens and answers
    meta = api.meta()
    assert meta["companions"] == [] and meta["companion_errors"][0]["name"] == "vim"
    assert "unreadable or damaged" in meta["companion_errors"][0]["error"]
    api.handle("heat", {"order": "cross", "block": "layers.3.blocks.0", "patches": [0]})
    with pytest.raises(StudyError, match=r"study must be 0\.\.0"):
        api.handle("heat", {"order": "spiral", "block": "layers.0", "patches": [0], "study": 1})


def test_a_companion_link_is_refused(pair, tmp_path):
    study, root = pair
    copy = tmp_path / "s"
    shutil.copytree(study.path, copy, ignore=shutil.ignore_patterns("vim"))
    os.symlink(root / "other", copy / "vim")
    meta = ViewAPI(Study(copy)).meta()
    assert "symbolic link" in meta["companion_errors"][0]["error"]
    with pytest.raises(StudyError, match="symbolic link"):
        add_companions(copy, ["vim"])


@pytest.mark.parametrize(
    "names, match",
    [(["../other"], "named by its sub-folder"), (["missing"], "no folder"),
     (["images"], "not a study"), ([3], "named by its sub-folder")],
)  # fmt: skip
def test_add_companions_refuses_what_is_no_companion(pair, tmp_path, names, match):
    study, _ = pair
    copy = tmp_path / "s"
    shutil.copytree(study.path, copy)
    before = (copy / "study.json").read_bytes()
    with pytest.raises(StudyError, match=match):
        add_companions(copy, names)
    assert (copy / "study.json").read_bytes() == before  # nothing written


def test_a_companion_of_other_images_is_refused(pair, tmp_path):
    study, root = pair
    copy = tmp_path / "s"
    shutil.copytree(study.path, copy)
    shutil.copytree(root / "other", copy / "other")
    with pytest.raises(StudyError, match="other images"):
        add_companions(copy, ["other"])


def test_a_tampered_companions_field_is_refused(pair, tmp_path):
    study, _ = pair
    raw = json.loads((study.path / "study.json").read_text())
    from jaxmamba.study import schema

    for bad in (["../x"], ["vim", "vim"], "vim", [".hidden"]):
        with pytest.raises(StudyError, match="companions must be distinct names of sub-folders"):
            schema.parse(study.path / "study.json", {**raw, "companions": bad})


def test_serve_with_a_study_of_other_images_is_refused(pair, capsys):
    study, root = pair
    code = main(["serve", str(study.path), "--with", str(root / "other"), "--no-browser",
                 "--port", "0"])  # fmt: skip
    assert code == 2
    assert "is a study of other images than" in capsys.readouterr().err
