"""Study folders: what they hold equals the library's means, resumption after a kill, refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import rel_err

import jaxmamba
from jaxmamba.errors import StudyError
from jaxmamba.study import Study, write_study

BLOCKS = [0, 3]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = jaxmamba.create_model("vmamba_test", seed=3)
    x = np.random.default_rng(0).standard_normal((5, 64, 64, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("study") / "s"
    study = write_study(path, model, x, orders=["cross", "spiral"], blocks=BLOCKS,
                        methods=["pca"], route_maps=True, batch_size=5, progress=False)  # fmt: skip
    return model, x, study


def test_maps_equal_the_streamed_means(setup):
    model, x, study = setup
    for order in ("cross", "spiral"):
        ref = jaxmamba.attention_mean(model, [x], order=order, blocks=BLOCKS, route_mode="each",
                                      progress=False)  # fmt: skip
        for name in ref:
            assert rel_err(study.map(order, name), np.asarray(ref[name]).sum(0)) < 1e-5
            for k in range(4):
                assert rel_err(study.map(order, name, k), ref[name][k]) < 1e-5
    assert study.count == 5 and study.orders == ["cross", "spiral"]
    assert [b.grid for b in study.blocks] == [(16, 16), (2, 2)]


def test_reads_rows_columns_and_selection_means(setup):
    _, _, study = setup
    m = np.asarray(study.map("spiral", "layers.0.blocks.0"))
    sel = [3, 40, 41, 200]
    np.testing.assert_allclose(study.heat("spiral", "layers.0.blocks.0", sel), m[sel].mean(0),
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(
        study.heat("spiral", "layers.0.blocks.0", sel, "source"), m[:, sel].mean(1), rtol=1e-6
    )
    np.testing.assert_allclose(
        study.heat("spiral", "layers.0.blocks.0", [7], route=2),
        np.asarray(study.map("spiral", "layers.0.blocks.0", 2))[7],
    )
    assert study.coords("cross", "layers.3.blocks.0", "pca").shape == (4, 2)
    assert study.image_png(4)[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: s.map("../../etc", "layers.0.blocks.0"), "no order"),
        (lambda s: s.map("cross", "layers.0.blocks.0/../../x"), "no block"),
        (lambda s: s.coords("cross", "layers.0.blocks.0", "../pca"), "no '../pca' embedding"),
        (lambda s: s.heat("cross", "layers.0.blocks.0", [256]), "0..255"),
        (lambda s: s.heat("cross", "layers.0.blocks.0", []), "non-empty"),
        (lambda s: s.heat("cross", "layers.0.blocks.0", [1], "sideways"), "direction"),
        (lambda s: s.map("cross", "layers.0.blocks.0", 4), "route must be"),
        (lambda s: s.image_png(5), "image must be"),
    ],
)
def test_bad_reads_are_refused_by_name(setup, call, match):
    with pytest.raises(StudyError, match=match):
        call(setup[2])


def test_a_study_of_one_model_per_order(setup, tmp_path):
    model, x, _ = setup
    other = jaxmamba.create_model("vmamba_test", seed=9)
    study = write_study(
        tmp_path / "s",
        {"cross": model, "spiral": other},
        x,
        blocks=BLOCKS,
        orders=["cross", "spiral"],
        route_maps=True,
        batch_size=5,
        progress=False,
    )  # fmt: skip (the fixture's shapes: nothing recompiles)
    ids = {o["name"]: o["model"] for o in study.meta["orders"]}
    assert ids["cross"] == jaxmamba.models.params.digest(model.params) != ids["spiral"]
    ref = jaxmamba.attention_mean(other, [x], order="spiral", blocks=BLOCKS, route_mode="each",
                                  progress=False)  # fmt: skip
    assert rel_err(study.map("spiral", "layers.3.blocks.0", 1), ref["layers.3.blocks.0"][1]) < 1e-5
    assert "layers.0.blocks.0" in study.meta["blocks"][0]["name"]


def test_refuses_another_plan_and_foreign_folders(setup, tmp_path):
    model, x, study = setup
    with pytest.raises(StudyError, match="other images, images_digest"):
        write_study(study.path, model, x[:4], orders=["cross", "spiral"], blocks=BLOCKS,
                    methods=["pca"], route_maps=True, progress=False)  # fmt: skip
    with pytest.raises(StudyError, match="other models"):
        write_study(study.path, jaxmamba.create_model("vmamba_test", seed=4), x,
                    orders=["cross", "spiral"], blocks=BLOCKS, methods=["pca"], route_maps=True,
                    progress=False)  # fmt: skip
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(StudyError, match="not a study jaxmamba wrote"):
        write_study(foreign, model, x, blocks=[3], progress=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(StudyError, match="not a study"):
        Study(foreign)


KILLED = textwrap.dedent(
    """
    import sys, numpy as np, jaxmamba
    from jaxmamba.study import write_study
    model = jaxmamba.create_model("vmamba_test", seed=3)
    x = np.random.default_rng(0).standard_normal((12, 64, 64, 3)).astype(np.float32)
    write_study(sys.argv[1], model, x, orders=["cross", "spiral"], blocks=[0, 3], route_maps=True,
                batch_size=5, save_every=1, progress=False)
    """
)


@pytest.mark.slow  # 80 s; resuming is also checked by test_resume_safety and test_reliability
def test_a_study_killed_midway_resumes_to_the_same_result(setup, tmp_path):
    model = setup[0]
    x = np.random.default_rng(0).standard_normal((12, 64, 64, 3)).astype(np.float32)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(killed)], env=env)
    saved = killed / "work" / "cross" / "state"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # kill once a save is on disk
        if saved.is_dir() and any(p.name.isdigit() for p in saved.iterdir()):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "means" / "spiral").exists(), "killed too late to test resumption"
    with pytest.raises(StudyError, match="unfinished"):
        Study(killed)
    subprocess.run([sys.executable, "-c", KILLED, str(killed)], check=True, env=env, timeout=600)
    study = Study(killed)
    assert not (killed / "work").exists() and study.count == 12
    assert study.meta["done"] == {"means/cross": 12, "means/spiral": 12}
    for order in ("cross", "spiral"):  # = an uninterrupted mean over the same 12 images
        batches = [x[:5], x[5:10], x[10:]]  # the fixture's compiled shapes
        ref = jaxmamba.attention_mean(model, batches, order=order, blocks=BLOCKS,
                                      route_mode="each", progress=False)  # fmt: skip
        for name in ref:
            assert rel_err(study.map(order, name), np.asarray(ref[name]).sum(0)) < 1e-5
        xy = study.coords(order, "layers.3.blocks.0", "pca")
        assert xy.shape == (4, 2) and np.all(np.isfinite(xy))


def test_synthetic_study_at_vmamba_t_scale(tmp_path):
    from jaxmamba.study import write_synthetic_study

    study = write_synthetic_study(tmp_path / "s", orders=["cross", "spiral"])
    assert len(study.blocks) == 14 and study.blocks[0].grid == (56, 56)
    assert abs(study.size_bytes() - 2 * 4 * sum(b.length**2 for b in study.blocks)) == 0
    assert study.heat("spiral", "layers.0.blocks.1", list(range(0, 3136, 7))).shape == (3136,)
    assert isinstance(Path(study.path / "study.json").read_text(), str)


def test_never_writes_into_the_current_or_home_folder(setup, tmp_path, monkeypatch):
    model, x, _ = setup
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("keep")
    for target in (".", str(tmp_path.parent)):
        with pytest.raises(StudyError, match="current directory"):
            write_study(target, model, x, blocks=[3], progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
