"""The command line: explore on a real image file, and clear errors that write nothing."""

import subprocess
import sys

import numpy as np
import pytest

import jaxmamba
from jaxmamba.cli import main
from jaxmamba.storage.images import ImageError, load_image


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (80, 120, 3), np.uint8)).save(folder / "a.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_load_image_resizes_crops_and_normalises(photo):
    x, shown = load_image(photo / "a.png", 64)
    assert x.shape == (64, 64, 3) and shown.shape == (64, 64, 3) and shown.dtype == np.uint8
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x, (shown / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)


def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(bad)


@pytest.mark.slow  # ~35 s; explore and export are run by test_says_what and test_explorer
def test_explore_on_an_orbax_checkpoint_then_export(photo, tmp_path, capsys):
    ckpt = jaxmamba.save(jaxmamba.create_model("vmamba_test"), tmp_path / "ckpt")
    out = tmp_path / "out"
    rc = main([
        "explore", "--checkpoint", str(ckpt), "--images", str(photo / "a.png"), "--out", str(out),
        "--size", "64", "--blocks", "2", "3", "--method", "pca", "tsne", "--order", "cross",
        "spiral",
    ])  # fmt: skip
    assert rc == 0
    said = capsys.readouterr().out
    assert "2 orders (cross, spiral) x 3 blocks" in said and f"jaxmamba serve {out}" in said
    study = jaxmamba.Study(out)
    assert study.orders == ["cross", "spiral"] and study.meta["images"] == [{"name": "a.png"}]
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert sum("pca" in n for n in pngs) == sum("tsne" in n for n in pngs) == 4  # every method
    assert len(pngs) >= 10
    page = tmp_path / "e.html"
    assert main(["export", str(out), "--out", str(page), "--orders", "spiral"]) == 0
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and page.stat().st_size > 10_000
    assert main(["export", str(out), "--out", str(tmp_path / "f.html"), "--max-mb", "0.01"]) == 2
    assert "above --max-mb" in capsys.readouterr().err and not (tmp_path / "f.html").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--images", "missing.png"], "no such file"),
        (["--checkpoint", "nowhere.pth"], "error:"),
        (["--size", "60"], "multiple of 32"),
        (["--variant", "vmamba_tiny_s1l8"], "--variant applies to .pth files"),
        (["--order", "snail"], "orders must be distinct names"),
        (["--checkpoint", "snail=a"], "distinct orders"),
    ],
)
def test_explore_errors_write_nothing(photo, tmp_path, capsys, args, message):
    ckpt = jaxmamba.save(jaxmamba.create_model("vmamba_test"), tmp_path / "ckpt")
    argv = {
        "--checkpoint": str(ckpt),
        "--images": str(photo / "a.png"),
        "--out": str(tmp_path / "o"),
    }
    argv.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = ["explore"] + [a for kv in argv.items() for a in kv]
    assert main(flat) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_module_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "jaxmamba", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for command in ("demo", "explore", "serve", "export", "convert"):
        assert command in out.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["explore", "--images", "x.png", "--out", "o", "--batch-size", "0"], "at least 1"),
        (["explore", "--images", "x.png", "--out", "o", "--size", "0"], "at least 1"),
        (["demo", "--out", "o", "--images", "0"], "at least 1"),
    ],
)
def test_bad_numbers_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_out_that_is_a_file_or_a_foreign_folder(photo, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    argv = ["explore", "--images", str(photo / "a.png"), "--size", "64", "--blocks", "3"]
    assert main([*argv, "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "file").read_text() == "mine"
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    assert main([*argv, "--out", str(tmp_path / "folder")]) == 2
    assert "not a study jaxmamba wrote" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["notes.txt"]


def test_serve_of_a_missing_study(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nothing"), "--no-browser"]) == 2
    assert "not a study" in capsys.readouterr().err


def test_explore_refuses_up_front_what_cannot_fit(photo, tmp_path, capsys):
    out = tmp_path / "big"
    argv = ["explore", "--images", str(photo / "a.png"), "--out", str(out), "--size", "2048"]
    assert main([*argv, "--blocks", "0"]) == 2  # a 512x512 grid: 275 GB per map
    err = capsys.readouterr().err
    assert "GB of memory" in err and "lower --batch-size" in err and err.count("\n") == 1
    assert not out.exists()
