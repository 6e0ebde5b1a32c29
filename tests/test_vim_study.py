"""Study folders of a Vim model: written, read back and checked against the library's own maps.

A study keeps a Vim layer's maps class-last (the row-major patches, then the class token), so a
patch's index is its grid cell, as in a VMamba study; these tests pin that layout to
``extract_attention``'s token-order maps, and the stored findings to the findings of the
stored maps."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import set_field as _set

import jaxmamba
from jaxmamba.attention.findings import depth_halves, findings_of_maps
from jaxmamba.cli import main
from jaxmamba.errors import StudyError
from jaxmamba.models.vim import class_token_at, vim_routes
from jaxmamba.orders import as_order
from jaxmamba.study import Study, schema, write_study
from jaxmamba.study.phases import pool_map
from jaxmamba.study.reader import map_selection
from jaxmamba.views.figures import write_figures
from jaxmamba.views.protocol import ViewAPI

ORDERS = ("raster", "spiral")


@pytest.fixture(scope="module")
def model():
    return jaxmamba.create_model("vim_test")  # 4x4 patches of 64x64 images, CLS at token 8


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).standard_normal((3, 64, 64, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def study(tmp_path_factory, model, images) -> Study:
    path = tmp_path_factory.mktemp("vim") / "s"
    return write_study(path, model, images, orders=ORDERS, route_maps=True, single_images=2,
                       progress=False)  # fmt: skip


def _class_last(model, a: np.ndarray) -> np.ndarray:
    t = class_token_at(model.config)
    return np.take(np.take(a, t, axis=-1), t, axis=-2)


def test_the_layers_are_kept_class_last(study):
    assert study.orders == list(ORDERS)
    assert [b.name for b in study.blocks] == ["layers.0", "layers.1"]
    assert all(b.stage == 0 and b.grid == (4, 4) and b.cls == 16 and b.length == 17
               for b in study.blocks)  # fmt: skip
    raw = json.loads((study.path / "study.json").read_text())
    assert raw["blocks"][1] == {"name": "layers.1", "stage": 0, "index": 1, "grid": [4, 4],
                                "cls": 16}  # fmt: skip
    assert [o["routes"] for o in raw["orders"]] == [2, 2]
    assert schema.parse(study.path / "study.json", raw).to_json() == raw


def test_mean_and_route_maps_are_the_extracted_maps_class_last(study, model, images):
    order = "spiral"  # raster: the next test
    maps = jaxmamba.extract_attention(model, images, order=order, route_mode="each")
    for b in study.blocks:
        each = _class_last(model, np.asarray(maps[b.name], np.float64).mean(axis=0))  # (2, L, L)
        # the mean map is the layer's own merge, half the sum of its directions
        np.testing.assert_allclose(study.map(order, b.name), 0.5 * each.sum(0), rtol=1e-5,
                                   atol=1e-6 * np.abs(each).max())  # fmt: skip
        for k in range(2):
            np.testing.assert_allclose(study.map(order, b.name, k), each[k], rtol=1e-5,
                                       atol=1e-6 * np.abs(each).max())  # fmt: skip


def test_the_merged_map_is_the_layers_own_half_sum(study, model, images):
    maps = jaxmamba.extract_attention(model, images, order="raster")  # the default: merged
    b = study.blocks[0]
    merged = _class_last(model, np.asarray(maps[b.name], np.float64).mean(axis=0))
    np.testing.assert_allclose(study.map("raster", b.name), merged, rtol=1e-5,
                               atol=1e-6 * np.abs(merged).max())  # fmt: skip


def test_single_image_maps_are_exact_and_class_last(study, model, images):
    b, order = study.blocks[1], "spiral"
    for i in (0, 1):
        got = study.single_map(order, b.name, i)
        ref = jaxmamba.extract_attention(model, images[i : i + 1], order=order, blocks=[b.name])
        ref = _class_last(model, np.asarray(ref[b.name][0], np.float64))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
        each = study.single_map(order, b.name, i, route=1)  # the backward direction alone
        assert np.abs(each).max() > 0 and not np.allclose(each, got)


def test_routes_are_the_models_routes_in_the_class_last_layout(study, model):
    t = class_token_at(model.config)
    for order in ORDERS:
        routes = study.routes(order, "layers.0")
        assert routes.shape == (2, 17) and routes[0, 8] == 16  # the class token in the middle
        np.testing.assert_array_equal(t[routes], vim_routes(model.config, as_order(order)))
        np.testing.assert_array_equal(routes[1], routes[0][::-1])


def test_heat_of_the_class_token_is_its_row(study):
    b = study.blocks[1]
    a = study.map("raster", b.name)
    np.testing.assert_allclose(study.heat("raster", b.name, [16]), a[16], rtol=1e-6)
    np.testing.assert_allclose(study.heat("raster", b.name, [16], "source"), a[:, 16], rtol=1e-6)
    np.testing.assert_allclose(study.heat("raster", b.name, [3, 16]), a[[3, 16]].mean(0),
                               rtol=1e-6)  # fmt: skip


def test_a_selection_with_the_class_token_maps_to_class_tokens_only():
    from jaxmamba.models.config import Block

    vim, vmamba = Block("layers.3", 0, 3, (4, 4), 16), Block("layers.0.blocks.0", 0, 0, (8, 8))
    assert map_selection([16, 0], vim, vim) == [0, 16]
    assert map_selection([16], vim, vmamba) == []
    assert map_selection([16, 5], vim, vmamba) == [18, 19, 26, 27]
    assert map_selection([0], vmamba, vim) == [0]  # no class token where none was chosen


def test_overview_and_the_view_protocol_answer_for_vim(study):
    api = ViewAPI(study)
    meta = api.meta()
    assert [b["cls"] for b in meta["blocks"]] == [16, 16]
    assert meta["stages"] == [{"stage": 0, "grid": [4, 4], "blocks": ["layers.0", "layers.1"]}]
    content, payload = api.handle("overview", {"order": "raster", "block": "layers.0",
                                               "patches": [16]})  # fmt: skip
    values = np.frombuffer(payload, "<f4")
    assert [p["cls"] for p in content["blocks"]] == [16, 16] and values.shape == (34,)
    np.testing.assert_allclose(values[17:], study.map("raster", "layers.1")[16], rtol=1e-6)
    content, payload = api.handle("routes", {"order": "spiral", "block": "layers.1"})
    np.testing.assert_array_equal(np.frombuffer(payload, "<i4").reshape(2, 17),
                                  study.routes("spiral", "layers.1"))  # fmt: skip
    content, _ = api.handle("coords", {"order": "raster", "block": "layers.1", "method": "pca"})
    assert content["shape"] == [17, 2]  # the class token is a point too
    with pytest.raises(StudyError, match="0..16"):
        api.handle("heat", {"order": "raster", "block": "layers.1", "patches": [17]})


def _same(a, b) -> bool:
    return (a is None and math.isnan(b)) or (a is not None and math.isclose(a, b, rel_tol=1e-9))


def test_stored_findings_are_those_of_the_patch_part_of_the_stored_maps(study):
    n, m = len(study.single_images), 16
    for order in ORDERS:
        maps = {b.name: study.map(order, b.name)[:m, :m] for b in study.blocks}
        routes = {}
        for b in study.blocks:
            path = as_order(order).routes(4, 4)[0]
            routes[b.name] = np.stack([path, path[::-1]])
        image_maps = {
            b.name: np.stack([pool_map(study.single_map(order, b.name, i), 4, 4, cls=True)
                              .reshape(-1) for i in range(n)])
            for b in study.blocks
        }  # fmt: skip
        found = findings_of_maps(maps, {b.name: b.grid for b in study.blocks}, routes,
                                 image_maps=image_maps, seed=study.info.seed)  # fmt: skip
        stored = study.findings[order]
        for name, values in found["blocks"].items():
            assert all(_same(stored["blocks"][name][k], v) for k, v in values.items()), name
        assert all(_same(stored["stages"]["0"][k], v) for k, v in found["stages"][0].items())
        depth = depth_halves(found["blocks"])
        for part in ("early", "late"):
            assert all(_same(stored["depth"][part][k], v) for k, v in depth[part].items())
        assert stored["depth"]["early"] != stored["depth"]["late"]


def test_the_inter_block_points_pool_the_class_token_apart(study):
    xy = study.stage_points("interblock", "raster", 0, "pca")
    assert xy.shape == (2 * 2, 2) and np.all(np.isfinite(xy))
    a = np.arange(17.0 * 17).reshape(17, 17)
    pooled = pool_map(a, 4, 4, g=2, cls=True)
    assert pooled.shape == (5, 5) and pooled[4, 4] == a[16, 16]
    assert pooled[4, 0] == a[16, [0, 1, 4, 5]].mean()


def _json(path: Path) -> dict:
    return json.loads((path / "study.json").read_text())


@pytest.mark.parametrize(
    "change, match",
    [
        (_set(("blocks", 0, "cls"), 8), r"blocks\[0\]\.cls must be 16, the class token's position"),
        (_set(("blocks", 1, "cls"), None), r"blocks\[1\]\.cls must be 16"),
        (_set(("blocks", 1, "name"), "layers.0.blocks.1"), r"blocks\[1\]\.name must be a distinct "
         r"Vim layer name"),
        (_set(("blocks", 1, "stage"), 1), r"blocks\[1\]\.stage must be 0"),
        (_set(("blocks", 1, "grid"), [2, 8]), r"blocks\[1\]\.grid must be .*\[4, 4\] like the "
         r"other layers"),
        (_set(("orders", 0, "routes"), 4), r"orders\[0\]\.routes must be 2"),
        (_set(("orders", 1, "name"), "zorder"), r"orders\[1\]\.name must be"),
        (_set(("findings", "raster", "depth"), {"early": {}}), r"depth must be an object \{early, "
         r"late\}"),
        (_set(("findings", "raster", "depth", "late", "sequence_locality"), "x"),
         r"depth\.late\.sequence_locality must be a finite number or null"),
    ],
)  # fmt: skip
def test_a_tampered_vim_study_json_is_refused_naming_the_field(study, change, match):
    raw = copy.deepcopy(_json(study.path))
    change(raw)
    with pytest.raises(StudyError, match=match):
        schema.parse(study.path / "study.json", raw)


def test_a_vmamba_block_with_a_cls_is_refused(tmp_path):
    from jaxmamba.study import write_synthetic_study

    path = tmp_path / "s"
    write_synthetic_study(path, "vmamba_test", 64, orders=["cross"], n_images=1)
    raw = _json(path)
    raw["blocks"][1]["cls"] = 3
    with pytest.raises(StudyError, match=r"blocks\[1\]\.cls must be absent in a VMamba study"):
        schema.parse(path / "study.json", raw)


def test_a_single_input_of_another_shape_is_refused(study, tmp_path):
    import shutil

    copy_ = tmp_path / "s"
    shutil.copytree(study.path, copy_)
    target = copy_ / "single" / "raster" / "layers.0.npy"
    x = np.load(target)
    assert x.shape[:2] == (2, 2) and x.shape[-1] == 17  # (images, directions, D, L)
    np.save(target, x[:, 0])  # one direction only: the shape a VMamba block's input has
    with pytest.raises(StudyError, match="holds shape"):
        Study(copy_).single_map("raster", "layers.0", 0)


def test_figures_of_a_vim_study_show_the_class_token(study):
    names = sorted(p.name for p in write_figures(study))
    assert "class_token_layers.1.png" in names and "overview_class_token_raster.png" in names
    assert "compare_orders_layers.1.png" in names


def test_explore_a_vim_checkpoint_writes_a_study(model, tmp_path, capsys):
    from PIL import Image

    from jaxmamba.storage.checkpoint import save

    save(model, tmp_path / "ckpt")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (80, 70, 3), np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "study"
    args = ["explore", "--checkpoint", str(tmp_path / "ckpt"), "--images", str(folder)]
    assert main([*args, "--out", str(out), "--size", "224"]) == 2
    assert "--size 224: vim_test takes 64x64 images" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--out", str(out), "--img-size", "64"]) == 2
    assert "--img-size applies to .pth files" in capsys.readouterr().err
    assert main([*args, "--out", str(out)]) == 0
    s = Study(out)
    assert s.orders == ["raster"] and s.blocks[0].cls == 16 and s.count == 2
    assert (out / "figures" / "class_token_layers.1.png").exists()
