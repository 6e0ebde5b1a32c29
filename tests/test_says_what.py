"""The demo and the explorer say what they show, and nothing slow is silent.

Images named with their class; each order's model named by a short digest in the header and the
order menu (served page and offline export); findings of grids under 16 patches shown as "too
few patches"; the command's help; the no-checkpoint message; the labels of every phase,
compiles included, printed by a real (small) demo run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import severe, wait_idle

import jaxmamba
from jaxmamba.attention.embed import METHODS
from jaxmamba.attention.findings import MIN_PATCHES, too_few_patches
from jaxmamba.cli import NO_CHECKPOINT, demo_image_names, main, parser
from jaxmamba.orders import ORDER_NAMES
from jaxmamba.train.data import load_digits_images

N = 6  # held-out digits of the small demo
ORDERS = ("cross", "spiral")
TINY = "layers.3.blocks.0"  # the 2x2 grid of a 64x64 input


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``jaxmamba demo`` as a user runs it (a fresh process, an empty compile cache), small."""
    root = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k != "JAXMAMBA_NO_COMPILE_CACHE"}
    env["JAXMAMBA_CACHE_DIR"] = str(root / "xla")  # empty: the first run's compiles
    run = subprocess.run(
        [sys.executable, "-m", "jaxmamba", "demo", "--out", str(root / "demo"), "--images",
         str(N), "--order", *ORDERS, "--method", "pca"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return root / "demo", run.stdout, run.stderr


def test_demo_labels_every_phase_compiles_included(demo):
    _, out, err = demo
    said = out + err
    labels = [
        "loading the bundled digit models of orders cross, spiral",
        f"loading {N} held-out test digits at 64x64",
        "preparing the XLA programs of 2 orders in the background (2 programs, compiled on a "
        "first run, then loaded from the compile cache",
        "compiling the attention program for order cross (first run only; the other orders "
        "reuse it) ...",
        "attention mean (cross)",  # the progress bar, labelled with its order
        f"keeping the scan inputs of {N} single images (cross)",
        "attention mean (spiral)",
        f"keeping the scan inputs of {N} single images (spiral)",
        "the bundled digit Vim (vim_digits, trained in its raster path) over the same digits",
        "attention mean (raster)",
        "drawing the figures",
        "explorer.html (about",
        "done in",
    ]
    at = [said.find(label) for label in labels]
    assert all(i >= 0 for i in at), [lab for lab, i in zip(labels, at, strict=True) if i < 0]
    # in order: the out/err streams are interleaved, so compare within each stream
    for stream in (out, err):
        mine = [stream.find(label) for label in labels if label in stream]
        assert mine == sorted(mine)
    assert "compiling the attention program for order spiral" not in said  # cross's, reused
    assert not re.search(r"test digit \d", said)  # images are "test image i (class c)"


def test_demo_images_are_named_with_their_class(demo):
    path, _, _ = demo
    _, labels = load_digits_images(64, split="test")
    study = jaxmamba.Study(path)
    names = [im["name"] for im in study.meta["images"]]
    assert names == [f"test image {i} (class {int(labels[i])})" for i in range(N)]
    assert names == demo_image_names(labels[:N])
    assert len(set(int(c) for c in labels[:N])) > 1  # the classes differ: the names carry them
    # the digit Vim's study of the same digits is the demo study's companion, beside it
    (vim,) = study.companions()
    assert vim.path == path / "vim" and study.same_images(vim)
    assert vim.orders == ["raster"] and [b.cls for b in vim.blocks] == [64] * 4
    assert [im["name"] for im in vim.meta["images"]] == names


def test_findings_of_too_small_grids_are_null_not_numbers(demo):
    path, _, _ = demo
    study = jaxmamba.Study(path)
    assert study.block(TINY).grid == (2, 2) and too_few_patches((2, 2)) and MIN_PATCHES == 16
    for order in ORDERS:
        f = study.findings[order]
        assert set(f["blocks"][TINY].values()) == {None}
        assert set(f["stages"]["3"].values()) == {None}
        assert f["blocks"]["layers.0.blocks.0"]["attention_distance"] > 0  # 16x16: a number
        assert f["stages"]["2"]["attention_distance"] is not None  # 4x4 = 16 patches: enough


def _page_says(drv, stage: str) -> dict:
    drv.execute_script(f"explorer.setControl('stage', '{stage}');")
    wait_idle(drv)
    return drv.execute_script(
        "return {sub: document.querySelector('.jm-sub').textContent,"
        " orders: Array.from(document.querySelector('#order').options).map((o) => o.text),"
        " findings: document.querySelector('#findings').textContent};"
    )


def _check_header(said: dict, study) -> None:
    digests = {o["name"]: o["model"][:8] for o in study.meta["orders"]}
    assert len(set(digests.values())) == 2  # one model trained per order
    assert "2 models" in said["sub"] and "one trained per order" in said["sub"]
    for order, d in digests.items():
        assert f"{order} {d}" in said["sub"]
    assert said["orders"] == [f"{o} · its own model {digests[o]}" for o in ORDERS]


@pytest.mark.browser
def test_served_page_names_models_and_says_too_few_patches(demo, chromium, tmp_path):
    from jaxmamba.views.server import ServerThread

    path, _, _ = demo
    # a study of an earlier jaxmamba holds numbers for the 2x2 grid: still shown as too few
    old = tmp_path / "old"
    shutil.copytree(path, old)
    meta = json.loads((old / "study.json").read_text())
    meta["findings"]["cross"]["stages"]["3"]["attention_distance"] = 0.4125
    meta["findings"]["cross"]["blocks"][TINY]["sequence_locality"] = 0.655
    (old / "study.json").write_text(json.dumps(meta))
    study = jaxmamba.Study(old)  # numbers there still open (checked: finite numbers)
    with ServerThread(study) as server:
        chromium.get(server.url)
        wait_idle(chromium)
        said = _page_says(chromium, "0")
        _check_header(said, study)
        assert "block distinctness" in said["findings"] and "too few" not in said["findings"]
        said = _page_says(chromium, "3")
        assert "too few patches" in said["findings"] and "(2×2 grid)" in said["findings"]
        assert "0.41" not in said["findings"] and "0.655" not in said["findings"]
        assert not any(ch.isdigit() for ch in said["findings"].split("grid)")[1].split("(")[0])
        assert severe(chromium) == []


@pytest.mark.browser
def test_offline_export_names_models_and_says_too_few_patches(demo, chromium):
    path, _, _ = demo
    study = jaxmamba.Study(path)
    chromium.get((path / "explorer.html").as_uri())
    wait_idle(chromium)
    _check_header(_page_says(chromium, "0"), study)
    assert "too few patches" in _page_says(chromium, "3")["findings"]
    assert severe(chromium) == []


def test_help_lists_orders_reductions_and_defaults():
    top = parser().format_help()
    assert all(o in top for o in ORDER_NAMES) and all(m in top for m in METHODS)
    assert "orders:" in top and "reductions:" in top
    sub = parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse's own table
    explore = sub["explore"].format_help()
    for default in ("default 224", "(default: pca)", "(default: 8)",
                    "default: the embedded digit model", "default cross"):  # fmt: skip
        assert default in " ".join(explore.split()), default
    assert "(default: None)" not in explore and "(default: False)" not in explore
    demo = " ".join(sub["demo"].format_help().split())
    assert "(default: 200)" in demo and "(default: cross diagonal morton spiral)" in demo
    assert "(default: 8765)" in sub["serve"].format_help()
    run = subprocess.run([sys.executable, "-m", "jaxmamba", "--help"], capture_output=True,
                         text=True)  # fmt: skip
    assert run.returncode == 0 and "hilbert" in run.stdout and "umap" in run.stdout


@pytest.mark.slow  # a whole explore run (~45 s)
def test_explore_without_checkpoint_says_it_uses_the_digit_model(tmp_path, capsys):
    from PIL import Image

    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(photo)
    rc = main(["explore", "--images", str(photo), "--out", str(tmp_path / "s"), "--size", "64",
               "--blocks", "3"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith(NO_CHECKPOINT)  # the first thing it says
    assert "64x64 digits" in NO_CHECKPOINT and "not on photos" in NO_CHECKPOINT
    assert "loading 1 images at 64x64" in out and "drawing the figures" in out
    assert (
        "preparing the XLA programs of 1 order in the background (2 programs, compiled on "
        "every run: the compile cache is off)" in out
    )
    # with a checkpoint it says what it loads instead
    ckpt = jaxmamba.save(jaxmamba.create_model("vmamba_test"), tmp_path / "ckpt")
    main(["explore", "--checkpoint", str(ckpt), "--images", str(photo), "--out",
          str(tmp_path / "t"), "--size", "64", "--blocks", "3"])  # fmt: skip
    out = capsys.readouterr().out
    assert NO_CHECKPOINT not in out and f"loading {ckpt}" in out


def test_a_program_compiled_ahead_is_the_one_attention_mean_runs():
    """What the demo compiles in the background is reused, not compiled again, and the mean is
    the same to the bit (a short last batch padded to the first's size, as ever)."""
    import jax
    from jax import monitoring

    from jaxmamba.attention.mean import attention_mean, compile_mean

    model = jaxmamba.create_model("vmamba_test")
    x = np.random.default_rng(0).normal(size=(5, 64, 64, 3)).astype(np.float32)
    compiled = []
    monitoring.register_event_duration_secs_listener(
        lambda event, _, **kw: compiled.append(kw.get("fun_name"))
        if event.endswith("backend_compile_duration") else None
    )  # fmt: skip
    assert compile_mean(model, (2, 64, 64, 3), order="hilbert", blocks=(2, 3)) is True
    assert "jit(mean_step)" in compiled
    compiled.clear()
    mean = attention_mean(model, [x[:2], x[2:4], x[4:]], order="hilbert", blocks=(2, 3),
                          progress=False)  # fmt: skip
    assert "jit(mean_step)" not in compiled  # found compiled
    jax.clear_caches()  # the ordinary way: compiled by the call itself
    again = attention_mean(model, [x[:2], x[2:4], x[4:]], order="hilbert", blocks=(2, 3),
                           progress=False)  # fmt: skip
    for name in mean:
        np.testing.assert_array_equal(np.asarray(mean[name]), np.asarray(again[name]))


@pytest.mark.parametrize(
    ("route_mode", "orders"),
    [
        ("sum", ["cross", "hilbert"]),
        pytest.param("each", ["morton", "zigzag"], marks=pytest.mark.slow),
    ],  # fmt: skip
)  # each order also compiles its own program (the reference): a few orders per route mode
def test_orders_share_one_program_with_the_same_maps(route_mode, orders):
    """Routes as data (a RouteTable): one compiled program for every order of the same grids,
    maps equal to the bit to those of the order's own program (routes as constants)."""
    import jax
    from jax import monitoring

    from jaxmamba.attention.extract import compute_maps
    from jaxmamba.attention.options import AttentionOptions
    from jaxmamba.orders import Order, RouteTable

    model = jaxmamba.create_model("vmamba_test")
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype(np.float32)
    names = jaxmamba.select_blocks(model.config, [1, 2])  # two grids, one of two blocks
    options = AttentionOptions(route_mode=route_mode)
    grids = [(16, 16), (8, 8), (4, 4), (2, 2)]
    compiled = []
    monitoring.register_event_duration_secs_listener(
        lambda event, _, **kw: compiled.append(kw.get("fun_name"))
        if event.endswith("backend_compile_duration") else None
    )  # fmt: skip
    jax.clear_caches()
    for i, name in enumerate(orders):
        compiled.clear()
        shared = compute_maps(model, x, RouteTable.of(name, grids), names, options)
        assert ("jit(compute_maps)" in compiled) == (i == 0), (name, compiled)
        own = compute_maps(model, x, Order(name), names, options)
        for block in names:
            np.testing.assert_array_equal(np.asarray(shared[block]), np.asarray(own[block]))
