"""The examples run end to end in their smoke versions and write what they promise."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # trains and studies every order (~40 s)
def test_orders_study_smoke(tmp_path):
    study = _load("orders_study")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{study.README_START}\nold\n{study.README_END}\nafter\n")
    record = study.main(["--smoke", "--out", str(tmp_path / "res"), "--readme", str(readme)])
    md = (tmp_path / "res" / "orders_study.md").read_text()
    assert "| cross | 4 |" in md and "| raster | 1 |" in md
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{study.README_END}\nafter\n")
    assert "old" not in text and "| cross | 4 |" in text and "locality 0" in text
    assert "python examples/orders_study.py --smoke" in text
    assert "](res/orders_findings.png)" in text
    tmp_path = tmp_path / "res"
    assert "locality 0" in md and "distance 0" in md
    saved = json.loads((tmp_path / "orders_study.json").read_text())
    assert saved["summary"].keys() == {"cross", "diagonal", "raster"}
    swap = saved["order_swap"]
    assert swap.keys() == {"cross", "diagonal", "raster"}
    assert swap["cross"].keys() == {"cross", "diagonal"} and swap["raster"].keys() == {"raster"}
    assert swap["cross"]["cross"]["accuracy"] == saved["runs"][0]["test_accuracy"]
    assert "## Order swap (seed 0)" in md and "| trained \\ scanned | cross | diagonal |" in md
    for order, s in saved["summary"].items():
        acc, _ = s["test_accuracy"]
        loss, _ = s["test_loss"]
        assert 0.0 <= acc <= 1.0 and loss > 0
        dist, _ = s["stages"]["layers.0"]["attention_distance_norm"]
        assert 0.0 < dist < 1.0, order
    assert (tmp_path / "orders_findings.png").stat().st_size > 1000
    # raster trained a K = 1 model, sliced from the official K = 4 initialisation
    assert record["summary"]["raster"]["k_routes"] == 1
    assert len(record["runs"]) == 3 and all(r["epoch_seconds"] for r in record["runs"])


def test_orders_study_readme_without_markers(tmp_path, capsys):
    study = _load("orders_study")
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit):
        study.main(["--smoke", "--out", str(tmp_path / "res"), "--readme", str(readme)])
    assert "needs exactly one" in capsys.readouterr().err
    assert readme.read_text() == "# no markers\n" and not (tmp_path / "res").exists()


def test_init_model_cuts_per_route_parameters():
    study = _load("orders_study")
    cfg = study.model_config("bidirectional", depths=(1,), dims=8)
    assert cfg.k_routes == 2
    m2 = study.init_model(cfg, 0)
    m4 = study.init_model(cfg.replace(k_routes=4), 0)
    op2, op4 = m2.params["layers_0"]["blocks_0"]["op"], m4.params["layers_0"]["blocks_0"]["op"]
    np.testing.assert_array_equal(op2["x_proj_weight"], op4["x_proj_weight"][:2])
    d = op4["Ds"].shape[0] // 4
    np.testing.assert_array_equal(op2["A_logs"], op4["A_logs"][: 2 * d])
    np.testing.assert_array_equal(op2["Ds"], op4["Ds"][: 2 * d])


@pytest.mark.slow  # ~25 s
def test_learn_order_smoke(tmp_path):
    learn = _load("learn_order")
    out = tmp_path / "learned.png"
    record = learn.main(
        ["--steps", "2", "--images", "1", "--objective", "distance", "--out", str(out)]
    )
    assert out.stat().st_size > 1000 and out.with_suffix(".json").is_file()
    routes = np.asarray(record["learned_routes"])
    assert routes.shape == (4, 64)
    assert (np.sort(routes, axis=1) == np.arange(64)).all()
    assert len(record["history"]["soft"]) == len(record["history"]["hard"]) == 2
    assert all(math.isfinite(v) for v in record["history"]["soft"])
    assert 0.0 < record["hard_after_learned"] <= record["hard_before_cross"] + 1e-4 < 1.0


def test_photo_study_photos_are_the_bundled_photographs_cropped():
    photo = _load("photo_study")
    x = photo.photos(224)
    assert x.shape == (2, 224, 224, 3) and x.dtype == np.uint8
    assert len(photo.BLOCKS) == 6 and photo.BLOCKS[0] == "layers.0.blocks.0"
    from sklearn.datasets import load_sample_image

    china = load_sample_image("china.jpg")  # 427 x 640: the centre square, resized
    square = china[:, 106:533].astype(np.float64).mean(axis=(0, 1))
    np.testing.assert_allclose(x[0].astype(np.float64).mean(axis=(0, 1)), square, atol=3.0)
    assert np.abs(x[0].astype(float) - x[1].astype(float)).mean() > 20  # two different photos


@pytest.mark.slow
def test_photo_study_writes_a_paper_scale_study(tmp_path):
    from jaxmamba.study import Study

    _load("photo_study").main(str(tmp_path / "s"))
    s = Study(tmp_path / "s")
    assert s.count == 2 and [b.grid for b in s.blocks][:2] == [(56, 56), (56, 56)]
    model = s.meta["models"][s.meta["orders"][0]["model"]]
    assert "random weights" in model["source"] and "random-weight" in s.meta["title"]
    (vim,) = s.companions()  # the Vim-S study of the same photos, beside it
    assert vim.orders == ["raster"] and len(vim.blocks) == 24 and s.same_images(vim)
    assert vim.blocks[0].grid == (14, 14) and vim.blocks[0].cls == 196
