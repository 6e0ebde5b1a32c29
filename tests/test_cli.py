"""The command line: explore on a real image file, and clear errors that write nothing."""

import subprocess
import sys

import numpy as np
import pytest

import jaxmamba
from jaxmamba.cli import main
from jaxmamba.images import ImageError, load_image


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


def test_explore_on_an_orbax_checkpoint(photo, tmp_path):
    ckpt = jaxmamba.save(jaxmamba.create_model("vmamba_test"), tmp_path / "ckpt")
    out = tmp_path / "out"
    rc = main([
        "explore", "--checkpoint", str(ckpt), "--images", str(photo / "a.png"), "--out", str(out),
        "--size", "64", "--blocks", "2", "3", "--method", "pca",
    ])  # fmt: skip
    assert rc == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) >= 3 and (out / "explorer.html").stat().st_size > 10_000
    html = (out / "explorer.html").read_text()
    assert "http://" not in html and "https://" not in html


@pytest.mark.parametrize(
    "args, message",
    [
        (["--images", "missing.png"], "no such file"),
        (["--checkpoint", "nowhere.pth"], "error:"),
        (["--size", "60"], "multiple of 32"),
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
    assert out.returncode == 0 and "demo" in out.stdout and "explore" in out.stdout
