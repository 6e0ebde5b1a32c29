"""Bounded arguments, special files and user text get named errors.

Each test here failed on the code before the fix: an argument that asked for gigabytes (a chunk
beyond L, a range of channels, a 60000x1 image), a FIFO that blocked the loader or the export,
a NaN size budget that let any page through, an empty batch that divided by zero, an image name
that broke (or was set as math in) the figures, and messages that said the wrong thing.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import time

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmamba
from jaxmamba import cli
from jaxmamba.attention.extract import route_attention
from jaxmamba.attention.options import AttentionOptions
from jaxmamba.attention.tiles import causal_maps, chunk_plan
from jaxmamba.cli import main
from jaxmamba.errors import AttentionError, ExplorerError, ImageError, InputError
from jaxmamba.models.config import get_config
from jaxmamba.models.model import select_blocks
from jaxmamba.storage.images import list_images, load_image
from jaxmamba.study import write_synthetic_study
from jaxmamba.views import plots, scatter_plot
from jaxmamba.views.export import export

fifos = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


@pytest.fixture(scope="module")
def model():
    return jaxmamba.create_model("vmamba_test")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).standard_normal((1, 64, 64, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_synthetic_study(
        tmp_path_factory.mktemp("s") / "study", "vmamba_test", 64, orders=["cross"]
    )


def finishes(fn, seconds: float, fifo=None):
    """``fn()``'s exception or result if it returns within ``seconds`` (run in a thread); a
    thread still blocked opening ``fifo`` for reading is released by opening its other end."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:  # the old code blocks in open(): give it a writer, then EOF
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            thread.join(5)
        pytest.fail(f"still running after {seconds} s")
    return box


# ------------------------------------------------------------------------------------------------
# 10. bounded arguments
# ------------------------------------------------------------------------------------------------


def test_a_chunk_beyond_the_sequence_is_taken_as_its_length(model, images):
    assert chunk_plan(49, 10**9) == chunk_plan(49, 49) == (49, ())
    rng = np.random.default_rng(1)
    dt = jnp.asarray(rng.uniform(0.1, 1.0, (2, 4, 40)), jnp.float32)
    A = -jnp.asarray(rng.uniform(0.5, 2.0, (2, 4, 3)), jnp.float32)
    B, C = (jnp.asarray(rng.standard_normal((2, 3, 40)), jnp.float32) for _ in range(2))
    base = route_attention(dt, A, B, C, channels=(3, 0))  # the per-channel tiles
    huge = route_attention(dt, A, B, C, channels=(3, 0), chunk=10**9)  # was 10**9 rows of them
    np.testing.assert_allclose(huge, base, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(causal_maps(dt, A, B, C, chunk=10**5), causal_maps(dt, A, B, C),
                               rtol=1e-5, atol=1e-7)  # fmt: skip
    start = time.perf_counter()
    maps = jaxmamba.extract_attention(model, images, blocks=1, chunk=10**9)
    base = jaxmamba.extract_attention(model, images, blocks=1)
    assert time.perf_counter() - start < 60
    np.testing.assert_allclose(maps["layers.1.blocks.0"], base["layers.1.blocks.0"],
                               rtol=1e-4, atol=1e-9)  # fmt: skip
    with pytest.raises(AttentionError, match="chunk must be"):
        chunk_plan(49, True)


@pytest.mark.parametrize(
    "channels, words",
    [
        ((True,), r"channels\[0\] is bool"),
        ([1, True], r"channels\[1\] is bool"),  # NumPy made this [1, 1]
        ((1.5,), r"channels\[0\] is float"),
        ((10**30,), "out of range"),
        (range(10**9), "at most 65536"),  # was materialised: 8 GB
        ((i for i in range(10**9)), "at most 65536"),
        (b"\x01", "got bytes"),
    ],
)
def test_channels_are_checked_before_anything_is_built(channels, words):
    start = time.perf_counter()
    with pytest.raises(AttentionError, match=words):
        AttentionOptions(channels=channels)
    assert time.perf_counter() - start < 2


def test_out_of_range_and_too_many_channels(model, images):
    with pytest.raises(AttentionError, match=r"out of range for layers\.3\.blocks\.0"):
        jaxmamba.extract_attention(model, images, blocks=3, channels=(256,))
    with pytest.raises(AttentionError, match="257 channels asked of layers.3.blocks.0"):
        jaxmamba.extract_attention(model, images, blocks=3, channels=(0,) * 257)


def test_an_empty_batch_is_a_named_error(model):
    empty = np.zeros((0, 64, 64, 3), np.float32)
    for call in (
        lambda: jaxmamba.extract_attention(model, empty, blocks=3),  # was ZeroDivisionError
        lambda: jaxmamba.forward(model, empty),
        lambda: jaxmamba.run_with_cache(model, empty, blocks=3),
    ):
        with pytest.raises(InputError, match=r"\(0, 64, 64, 3\) are an empty batch"):
            call()


def test_a_strip_image_is_refused_before_it_is_resized(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((1, 60000, 3), np.uint8)).save(tmp_path / "strip.png")
    start = time.perf_counter()  # resizing it to a short side of 256 asked for ~16 GB
    with pytest.raises(ImageError, match=r"60000x1 pixels.*up to 16:1"):
        load_image(tmp_path / "strip.png", 224)
    assert time.perf_counter() - start < 1
    Image.fromarray(np.zeros((20, 300, 3), np.uint8)).save(tmp_path / "wide.png")
    assert load_image(tmp_path / "wide.png", 32)[1].shape == (32, 32, 3)  # 15:1 is read


def test_pillows_decompression_bomb_limit_is_an_image_error(tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 pixels: the warning's range
    with pytest.raises(ImageError, match="MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "a.png", 32)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # above twice: Pillow's error
    with pytest.raises(ImageError, match="MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "a.png", 32)


# ------------------------------------------------------------------------------------------------
# FIFOs and other special files
# ------------------------------------------------------------------------------------------------


@fifos
def test_a_fifo_is_neither_listed_nor_opened_as_an_image(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"pipe\.png is not a regular file or folder \(a FIFO\)"):
        list_images([fifo])
    box = finishes(lambda: load_image(fifo, 32), 5, fifo)  # Pillow's open blocked here
    assert isinstance(box.get("error"), ImageError) and "a FIFO" in str(box["error"])
    with pytest.raises(ImageError, match="no such file or folder"):
        list_images([tmp_path / "missing"])


@fifos
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_export_onto_a_fifo_refuses_at_once(study, tmp_path, capsys, overwrite):
    fifo = tmp_path / "page.html"
    os.mkfifo(fifo)
    start = time.perf_counter()
    box = finishes(lambda: main(["export", str(study.path), "--out", str(fifo), *overwrite]),
                   5, fifo)  # fmt: skip
    assert time.perf_counter() - start < 1 and box.get("result") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "a FIFO, not a regular file" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # untouched


def test_export_into_a_missing_folder_or_under_a_file(study, tmp_path, capsys):
    page = tmp_path / "new" / "sub" / "page.html"
    assert main(["export", str(study.path), "--out", str(page)]) == 0 and page.is_file()
    (tmp_path / "file").write_text("mine")
    assert main(["export", str(study.path), "--out", str(tmp_path / "file" / "p.html")]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: ") and "not a folder" in err
    assert (tmp_path / "file").read_text() == "mine"


# ------------------------------------------------------------------------------------------------
# 9, 8. the export's budget and the CLI's errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_mb", ["nan", "inf", "-1", "0", "-inf"])
def test_export_refuses_a_budget_that_is_not_a_positive_size(study, tmp_path, capsys, max_mb):
    page = tmp_path / "page.html"
    assert main(["export", str(study.path), "--out", str(page), f"--max-mb={max_mb}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --max-mb must be a finite number") and "Traceback" not in err
    assert not page.exists()
    for bad in (float("nan"), True, "5"):
        with pytest.raises(ExplorerError, match="--max-mb"):
            export(study, page, max_mb=bad)


def test_an_interrupted_export_says_so(study, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("jaxmamba.views.export.export", interrupted)
    assert main(["export", str(study.path), "--out", str(tmp_path / "p.html")]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_resource_refusals_show_sizes_in_a_unit_that_shows_them(tmp_path, monkeypatch):
    config = get_config("vmamba_test")
    pages = {"SC_AVPHYS_PAGES": 2, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    with pytest.raises(InputError, match=r"needs about 9\.0 KB of memory, 8\.2 KB are free"):
        cli._check_resources(config, 64, 1, 1000, tmp_path / "s", False)  # was "0.0 GiB"
    monkeypatch.setattr(os, "sysconf", lambda name: 2**40 if name == "SC_AVPHYS_PAGES" else 4096)
    usage = shutil.disk_usage(tmp_path)._replace(free=100)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage)
    with pytest.raises(InputError, match=r"needs about 3\.0 KB of disk .* 100 B are free"):
        cli._check_resources(config, 64, 1, 1000, tmp_path / "s", False)


# ------------------------------------------------------------------------------------------------
# 13. block selections of the wrong type
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "blocks, words",
    [
        (b"12", "got bytes b'12'"),  # was "stage 49 out of range"
        (bytearray(b"1"), "got bytearray"),
        (True, "got bool True"),
        (1.0, "got float 1.0"),
        ([0, None], r"blocks\[1\] must be a stage index \(int\) or a block name \(str\), got None"),
        ([True], r"blocks\[0\] .* got bool True"),
        (range(10**9), "more than 10000 items"),
        (-1, r"stage -1 out of range 0\.\.3"),
    ],
)
def test_select_blocks_names_a_selection_of_the_wrong_type(blocks, words):
    with pytest.raises(InputError, match=words):
        select_blocks(get_config("vmamba_test"), blocks)


def test_select_blocks_still_takes_sets_arrays_and_iterators():
    config = get_config("vmamba_test")
    assert select_blocks(config, {3, 0}) == ("layers.0.blocks.0", "layers.3.blocks.0")
    assert select_blocks(config, np.array([3])) == select_blocks(config, iter([3]))


# ------------------------------------------------------------------------------------------------
# 11. user text in figures is drawn literally
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [r"$\nope{$.png", "cost $5 vs $10.png"])
def test_figures_draw_image_names_literally(tmp_path, monkeypatch, name):
    from jaxmamba.views.figures import write_figures

    s = write_synthetic_study(tmp_path / "s", "vmamba_test", 64, orders=["cross", "spiral"])
    meta_file = s.path / "study.json"
    meta = json.loads(meta_file.read_text())
    meta["images"][0]["name"] = name
    meta_file.write_text(json.dumps(meta))
    drawn = []
    render = plots.png  # write_figures renders every figure with plots.png

    def keep(fig, **kwargs):
        drawn.append(fig)
        return render(fig, **kwargs)  # renders: mathtext raised on "$\nope{$"

    monkeypatch.setattr(plots, "png", keep)
    paths = write_figures(jaxmamba.Study(s.path))
    assert paths and all(p.stat().st_size > 0 for p in paths)
    texts = [t for fig in drawn for t in fig.findobj(lambda a: hasattr(a, "get_parse_math"))]
    named = [t for t in texts if name in t.get_text().replace("\n", " ")]
    assert len(named) >= 3  # the patch view, the overview and the comparison of orders
    assert all(not t.get_parse_math() and not t.get_usetex() for t in named)
    for fn in (lambda: scatter_plot.scatter(np.zeros((4, 2)), 2, 2, title=name,
                                            axis_labels=(name, name)),
               lambda: plots.overview({name: np.eye(4)}, {name: (2, 2)}, title=name),
               lambda: plots.compare_orders({name: np.eye(4)}, 2, 2, 0, title=name)):  # fmt: skip
        fig = fn()
        fig.canvas.draw()
        shown = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_parse_math"))
                 if name in t.get_text() and not t.get_parse_math()]  # fmt: skip
        assert shown
