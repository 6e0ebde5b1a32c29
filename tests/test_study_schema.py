"""One owner of the study format: study.json read into typed values and written back, every path
built by jaxmamba.study.layout, the page's metadata built once, the findings defined once."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import set_field as _set

import jaxmamba
from jaxmamba.attention.findings import findings_of_maps
from jaxmamba.errors import StudyError
from jaxmamba.orders import as_order
from jaxmamba.study import Study, layout, schema, write_study, write_synthetic_study
from jaxmamba.study.phases import pool_map
from jaxmamba.views.export import export, read_explorer
from jaxmamba.views.protocol import ViewAPI


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """The tiny model's study of stages 2 (two 4x4 blocks) and 3 (one 2x2 block), two orders,
    two single images."""
    x = np.random.default_rng(0).standard_normal((3, 64, 64, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("real") / "s"
    write_study(path, jaxmamba.create_model("vmamba_test"), x, orders=["cross", "spiral"],
                blocks=[2, 3], single_images=2, progress=False)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "s"
    write_synthetic_study(path, "vmamba_test", 64, orders=["cross"], n_images=2)
    return path


def _json(path: Path) -> dict:
    return json.loads((path / "study.json").read_text())


@pytest.mark.parametrize(
    "which",
    [pytest.param("real", marks=pytest.mark.slow), "synthetic"],  # real: ~30 s, -m slow
)
def test_study_json_round_trips_through_typed_values(which, request):
    path = request.getfixturevalue(which)
    raw = _json(path)
    info = schema.parse(path / "study.json", raw)
    assert info.to_json() == raw
    assert schema.parse(path / "study.json", info.to_json()) == info
    study = Study(path)
    assert study.info == info and study.blocks == list(info.blocks)
    assert all(isinstance(o, schema.OrderInfo) for o in info.orders)
    assert info.model_of(info.orders[0].name) is info.models[info.orders[0].model]


def _layout_paths(info: schema.StudyInfo) -> set[tuple[str, ...]]:
    """Every path layout builds for the study's names."""
    out = {layout.study_file(), layout.lock_file(), layout.explorer()}
    stages = {b.stage for b in info.blocks}
    for o in info.orders:
        for b in info.blocks:
            out |= {layout.mean(o.name, b.name), layout.route(o.name, b.name),
                    layout.single(o.name, b.name), layout.op(o.model, b.name)}  # fmt: skip
            out |= {layout.embedding(o.name, b.name, m) for m in info.methods}
        out |= {layout.stage_points(k, o.name, s, m)
                for k in layout.STAGE_KINDS for s in stages for m in info.methods}  # fmt: skip
    out |= {layout.image(i) for i in range(len(info.images))}
    return out


@pytest.mark.parametrize("which", ["real", "synthetic"])
def test_every_file_of_a_written_study_is_a_path_layout_builds(which, request):
    path = request.getfixturevalue(which)
    built = _layout_paths(Study(path).info)
    found = []
    for folder, _, files in os.walk(path):
        found += [Path(folder, f).relative_to(path).parts for f in files]
    assert found and all(p[0] in layout.LAYOUT for p in found)
    assert set(found) <= built, sorted(set(found) - built)
    if which == "real":  # the kinds a real study writes are all there
        assert {p[0] for p in found} >= {"means", "embeddings", "images", "single", "ops", "joint",
                                          "interblock", "study.json"}  # fmt: skip


def test_the_page_metadata_is_built_once(real, tmp_path):
    study = Study(real)
    served = ViewAPI(study).meta()
    out = export(study, tmp_path / "e.html", say=None)
    offline = read_explorer(out)["meta"]
    assert served["single_images"] and offline["single_images"] == []
    assert offline == {**served, "single_images": []}
    assert served["findings"] == study.findings and set(served["findings"]) == {"cross", "spiral"}
    # a subset: the orders and blocks exported, each order listing them
    part = read_explorer(export(study, tmp_path / "p.html", orders=["spiral"], blocks=[3],
                                say=None))["meta"]  # fmt: skip
    assert [o["name"] for o in part["orders"]] == ["spiral"]
    assert [b["name"] for b in part["blocks"]] == ["layers.3.blocks.0"]
    assert part["orders"][0]["blocks"] == ["layers.3.blocks.0"] and list(part["findings"]) == [
        "spiral"
    ]


def test_explorer_data_from_arrays_builds_meta_the_same_way():
    from jaxmamba.views.export import explorer_data

    a = np.random.default_rng(0).random((16, 16))
    d = explorer_data({"cross": {"layers.1.blocks.0": {"attn": a, "grid": (4, 4)}}})
    m = d["meta"]
    assert m["orders"] == [{"name": "cross", "routes": 4, "model": None, "model_digest": None,
                            "source": None, "blocks": ["layers.1.blocks.0"]}]  # fmt: skip
    assert m["blocks"] == [{"name": "layers.1.blocks.0", "stage": 1, "index": 0, "grid": [4, 4],
                            "cls": None}]  # fmt: skip
    assert m["stages"] == [{"stage": 1, "grid": [4, 4], "blocks": ["layers.1.blocks.0"]}]
    assert m["count"] is None and m["methods"] == ["pca"] and m["findings"] == {}


def _same(stored, computed) -> bool:
    if stored is None:
        return math.isnan(computed)
    return math.isclose(stored, computed, rel_tol=1e-6, abs_tol=1e-9)


def test_stored_findings_are_the_findings_of_the_stored_maps(real):
    study = Study(real)
    n = len(study.single_images)
    assert n == 2
    for order in study.orders:
        maps = {b.name: study.map(order, b.name) for b in study.blocks}
        image_maps = {
            b.name: np.stack([pool_map(study.single_map(order, b.name, i), *b.grid).reshape(-1)
                              for i in range(n)])
            for b in study.blocks
        }  # fmt: skip
        found = findings_of_maps(
            maps, {b.name: b.grid for b in study.blocks},
            {b.name: as_order(order).routes(*b.grid) for b in study.blocks},
            image_maps=image_maps, seed=study.info.seed,
        )  # fmt: skip
        stored = study.findings[order]
        assert set(stored["blocks"]) == set(found["blocks"])
        assert set(stored["stages"]) == {str(s) for s in found["stages"]} == {"2", "3"}
        for name, values in found["blocks"].items():
            assert set(stored["blocks"][name]) == set(values)
            assert all(_same(stored["blocks"][name][k], v) for k, v in values.items()), name
        for stage, values in found["stages"].items():
            assert set(stored["stages"][str(stage)]) == set(values)
            assert all(_same(stored["stages"][str(stage)][k], v) for k, v in values.items())
        # a 2x2 grid has no finding (null), a 4x4 one has every finding (numbers)
        assert set(stored["stages"]["3"].values()) == {None}
        assert None not in stored["stages"]["2"].values()
        assert stored["blocks"]["layers.2.blocks.0"]["attention_distance"] > 0


@pytest.mark.parametrize(
    "change, match",
    [
        (_set(("title",), 5), r"title must be a string; got 5"),
        (_set(("orders", 0, "routes"), 3), r"orders\[0\]\.routes must be 4, the routes of"),
        (_set(("blocks", 0, "grid"), "x"), r"blocks\[0\]\.grid must be \[h, w\]"),
        (_set(("images", 0, "name"), 7), r"images\[0\]\.name must be a string"),
        (_set(("options", "signed"), "yes"), r"options\.signed must be true or false"),
        (_set(("methods",), ["pcb"]), r"methods must be distinct names from"),
        (_set(("findings", "cross", "stages", "2", "sequence_locality"), "high"),
         r"findings\['cross'\]\.stages\['2'\]\.sequence_locality must be a finite number or null"),
        (_set(("seed",), 1.5), r"seed must be an integer"),
        (_set(("version",), 2), r"format version 2"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_field(real, change, match):
    raw = copy.deepcopy(_json(real))
    change(raw)
    with pytest.raises(StudyError, match=match):
        schema.parse(real / "study.json", raw)
